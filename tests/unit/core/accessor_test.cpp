// phys_accessor: CPU copies through physical ranges, only where the CPU may access the space.
#include <catch2/catch.hpp>

#include <array>
#include <cstring>
#include <phyr/core/accessor.hpp>

namespace {
struct nic {};
using phyr::phys_addr;
using phyr::phys_range;

template <class Acc, class R>
concept can_copy_from = requires(const Acc& a, R r, char* d) { a.try_copy_from(r, 0, d, 1); };
template <class S>
concept has_accessor = requires { typename phyr::basic_phys_accessor<S>; };
}  // namespace

TEST_CASE("phys_accessor copies to and from the bytes a range names", "[accessor]") {
  std::array<char, 0x3000> ram{};  // stands in for physical [0x10000, 0x13000)
  phyr::phys_accessor acc{ram.data(), phys_addr{0x10000}, ram.size()};
  const phys_range r{phys_addr{0x11000}, 0x1000};
  REQUIRE(acc.try_copy_to(r, 0x10, "hello", 5));
  CHECK(std::memcmp(ram.data() + 0x1010, "hello", 5) == 0);
  char out[5];
  REQUIRE(acc.try_copy_from(r, 0x10, out, 5));
  CHECK(std::memcmp(out, "hello", 5) == 0);
  REQUIRE(acc.try_copy_from(r, 0xfff, out, 1));  // last byte
}

TEST_CASE("phys_accessor rejects bytes outside the range or the mapped window", "[accessor]") {
  std::array<char, 0x2000> ram{};
  phyr::phys_accessor acc{ram.data(), phys_addr{0x10000}, ram.size()};
  char out[16];
  const phys_range r{phys_addr{0x11000}, 0x1000};
  CHECK(acc.try_copy_from(r, 0xff8, out, 16).error() == phyr::errc::out_of_range);
  CHECK(acc.try_copy_from(r, ~0ull, out, 1).error() == phyr::errc::out_of_range);
  const phys_range outside{phys_addr{0x11800}, 0x1000};  // runs past the window
  CHECK(acc.try_copy_from(outside, 0x7f8, out, 16).error() == phyr::errc::not_mapped);
  CHECK(acc.try_copy_from(phys_range{phys_addr{0x1000}, 0x10}, 0, out, 1).error() ==
        phyr::errc::not_mapped);
  phyr::phys_accessor none;
  CHECK(none.try_copy_from(r, 0, out, 1).error() == phyr::errc::not_mapped);
}

TEST_CASE("CPU copies through a DMA range do not compile", "[accessor][compile-fail]") {
  STATIC_REQUIRE(can_copy_from<phyr::phys_accessor, phys_range>);
  STATIC_REQUIRE_FALSE(can_copy_from<phyr::phys_accessor, phyr::dma_range<nic>>);
  STATIC_REQUIRE_FALSE(has_accessor<phyr::dma_space<nic>>);
  STATIC_REQUIRE(has_accessor<phyr::cpu_phys>);
}
