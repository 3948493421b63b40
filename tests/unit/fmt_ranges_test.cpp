// <fmt/ranges.h> and <phyr/fmt.hpp> together: phyr's formatters win, nothing is ambiguous,
// whichever header comes first (this file includes fmt's first on purpose).
#include <fmt/ranges.h>

#include <catch2/catch.hpp>

#include <vector>

#include <phyr/fmt.hpp>
#include <phyr/map/identity_mapper.hpp>

#include "support/phys_ranges.hpp"

namespace {
using namespace phyr_test;
struct nic {};
}  // namespace

TEST_CASE("fmt/ranges.h: a range_list prints with phyr's formatter, not as a sequence",
          "[fmt]") {
  const auto l = list_of({pr(0x1000, 0x1000)});
  CHECK(fmt::format("{}", l) == "range_list<phys>{1 entries, 0x1000 bytes: phys[0x1000, +0x1000)}");
  auto v = l.try_slice(0, 0x800);
  REQUIRE(v);
  CHECK(fmt::format("{}", *v) ==
        "range_list_view<phys>{1 entries, 0x800 bytes: phys[0x1000, +0x800)}");
}

TEST_CASE("fmt/ranges.h: containers of phyr values still format as ranges", "[fmt]") {
  const std::vector<phys_range> v{phys_range{phys_addr{0x1000}, 0x10},
                                  phys_range{phys_addr{0x3000}, 0x20}};
  CHECK(fmt::format("{}", v) == "[phys[0x1000, +0x10), phys[0x3000, +0x20)]");
  CHECK(fmt::format("{}", fmt::join(v, " ")) == "phys[0x1000, +0x10) phys[0x3000, +0x20)");
}

TEST_CASE("fmt/ranges.h: mappings print with phyr's formatter", "[fmt]") {
  const auto l = list_of({pr(0x1000, 0x1000)});
  phyr::identity_mapper<nic> m;
  const auto mp = phyr::must(m.try_map(l, phyr::dma_direction::from_device));
  CHECK(fmt::format("{}", mp) ==
        "mapping<dma<nic>>{1 entries, 0x1000 bytes: dma<nic>[0x1000, +0x1000)}");
}
