// fmt formatters: one fixed, greppable shape per type.
#include <catch2/catch.hpp>

#include <phyr/fmt.hpp>
#include <phyr/map.hpp>
#include <string>

#include "support/phys_ranges.hpp"

namespace {
struct gpu_bus {};
struct named_bus {
  static constexpr const char* name = "nvme0";
};
using phyr::phys_addr;
using phyr::phys_range;
using phyr::range_flags;
}  // namespace

TEST_CASE("fmt: addresses name their space", "[fmt]") {
  CHECK(fmt::format("{}", phys_addr{0x1000}) == "phys:0x1000");
  CHECK(fmt::format("{}", phyr::dma_addr<gpu_bus>{0xff}) == "dma<gpu_bus>:0xff");
  CHECK(fmt::format("{}", phyr::dma_addr<named_bus>{0xff}) == "dma<nvme0>:0xff");
}

TEST_CASE("fmt: ranges print start, length and flags", "[fmt]") {
  CHECK(fmt::format("{}", phys_range{phys_addr{0x1000}, 0x2000, range_flags::pinned}) ==
        "phys[0x1000, +0x2000) pinned");
  CHECK(fmt::format("{}", phys_range{phys_addr{0x1000}, 0x2000}) == "phys[0x1000, +0x2000)");
  CHECK(fmt::format("{}", phyr::dma_range<gpu_bus>{phyr::dma_addr<gpu_bus>{0x10}, 1,
                                                   range_flags::bus_addr | range_flags::driver0}) ==
        "dma<gpu_bus>[0x10, +0x1) bus_addr|driver0");
  CHECK(fmt::format("{}", range_flags::none) == "none");
  CHECK(fmt::format("{}", range_flags::pinned | range_flags::driver5) == "pinned|driver5");
}

TEST_CASE("fmt: errors print their names", "[fmt]") {
  CHECK(fmt::format("{}", phyr::errc::out_of_memory) == "out_of_memory");
  CHECK(fmt::format("{}", phyr::errc::not_addressable) == "not_addressable");
}

TEST_CASE("fmt: lists print count, bytes and the first entries", "[fmt]") {
  phyr::range_list<phys_range> l;
  CHECK(fmt::format("{}", l) == "range_list<phys>{0 entries, 0x0 bytes}");
  for (std::uint64_t i = 0; i < 6; ++i)
    REQUIRE(l.try_append(phys_range{phys_addr{0x10000 * (i + 1)}, 0x1000}));
  CHECK(fmt::format("{}", l) ==
        "range_list<phys>{6 entries, 0x6000 bytes: phys[0x10000, +0x1000), phys[0x20000, "
        "+0x1000), phys[0x30000, +0x1000), phys[0x40000, +0x1000), ...}");
  auto s = l.try_slice(0x800, 0x1000);
  REQUIRE(s);
  CHECK(fmt::format("{}", *s) ==
        "range_list_view<phys>{2 entries, 0x1000 bytes: phys[0x10800, +0x800), phys[0x20000, "
        "+0x800)}");
}

TEST_CASE("fmt: DMA directions print their names", "[fmt]") {
  CHECK(fmt::format("{}", phyr::dma_direction::to_device) == "to_device");
  CHECK(fmt::format("{}", phyr::dma_direction::from_device) == "from_device");
  CHECK(fmt::format("{}", phyr::dma_direction::bidirectional) == "bidirectional");
}

TEST_CASE("fmt: packed lists print like range lists", "[fmt]") {
  phyr::range_list<phys_range> l;
  REQUIRE(l.try_append(phys_range{phys_addr{0x200000}, 0x200000}));
  REQUIRE(l.try_append(phys_range{phys_addr{0x800000}, 0x1000}));
  auto p = phyr::packed_list<phyr::cpu_phys>::from_ranges(l);
  REQUIRE(p);
  CHECK(fmt::format("{}", *p) ==
        "packed_list<phys>{2 entries, 0x201000 bytes: phys[0x200000, +0x200000), "
        "phys[0x800000, +0x1000)}");
}

TEST_CASE("fmt: mappings name their bus and say when they are unmapped", "[fmt]") {
  const auto l = phyr_test::list_of({phyr_test::pr(0x1000, 0x3000)});
  phyr::identity_mapper<named_bus> m;
  const auto mp = phyr::must(m.try_map(l, phyr::dma_direction::to_device));
  CHECK(fmt::format("{}", mp) == "mapping<dma<nvme0>>{1 entries, 0x3000 bytes: "
                                  "dma<nvme0>[0x1000, +0x3000)}");
  decltype(m)::mapping empty;
  CHECK(fmt::format("{}", empty) == "mapping<dma<nvme0>>{unmapped}");
}

TEST_CASE("fmt: device limits print every field, 'none' where there is no limit", "[fmt]") {
  CHECK(fmt::format("{}", phyr::dma_constraints{}) ==
        "dma_constraints{max_segment 0x10000, boundary 0xffffffff, alignment 0x1, "
        "virt_boundary none, dma_mask none, max_segments none, max_total none, "
        "transfer_unit 0x1}");
  const phyr::dma_constraints c{.max_segment_size = 0x1000,
                                .dma_mask = 0xffffffff,
                                .max_segments = 2,
                                .excluded = {{0xfee00000, 0x100000}}};
  auto ok = phyr::checked_constraints::create(c);
  REQUIRE(ok);
  CHECK(fmt::format("{}", *ok) ==
        "dma_constraints{max_segment 0x1000, boundary 0xffffffff, alignment 0x1, "
        "virt_boundary none, dma_mask 0xffffffff, max_segments 0x2, max_total none, "
        "transfer_unit 0x1, excluded [0xfee00000, +0x100000)}");
}

TEST_CASE("fmt: a split plan prints its counts, and its gaps when there are any", "[fmt]") {
  phyr::split_plan p{.entries = 3, .segments = 5, .bytes = 0x5000};
  CHECK(fmt::format("{}", p) == "split_plan{3 entries, 5 segments, 0x5000 bytes}");
  p.gaps = 1;
  p.first_gap = 2;
  CHECK(fmt::format("{}", p) ==
        "split_plan{3 entries, 5 segments, 0x5000 bytes, 1 gaps from entry 2 (bounce needed)}");
}

TEST_CASE("fmt: an IOVA reservation names its bus, its range and what is linked", "[fmt]") {
  phyr::iommu_domain dom;
  using resv = phyr::iova_reservation<named_bus, phyr::iommu_domain>;
  auto q = resv::try_create(dom, 0x4000);
  REQUIRE(q);
  const std::string base = fmt::format("{:#x}", q->addr().value());
  CHECK(fmt::format("{}", *q) == "iova_reservation<dma<nvme0>>{[" + base + ", +0x4000), 0 pages linked}");
  REQUIRE(q->try_link(0, phys_range{phys_addr{0x10000}, 0x2000}, phyr::dma_direction::to_device));
  CHECK(fmt::format("{}", *q) ==
        "iova_reservation<dma<nvme0>>{[" + base + ", +0x4000), 2 pages linked, sync pending}");
  q->reset();
  CHECK(fmt::format("{}", *q) == "iova_reservation<dma<nvme0>>{released}");
}

TEST_CASE("fmt: every mapper's mapping type is formatted as a mapping", "[fmt]") {
  using inner = phyr::identity_mapper<named_bus>;
  STATIC_REQUIRE(phyr::detail::formattable_mapping<inner::mapping>);
  STATIC_REQUIRE(phyr::detail::formattable_mapping<phyr::offset_mapper<named_bus>::mapping>);
  STATIC_REQUIRE(phyr::detail::formattable_mapping<phyr::iommu_mapper<named_bus>::mapping>);
  STATIC_REQUIRE(phyr::detail::formattable_mapping<phyr::bounce_mapper<inner>::mapping>);
}
