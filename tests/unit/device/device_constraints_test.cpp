// device/constraints.hpp: dma_constraints and the range_source / viewable_source concepts.
#include <catch2/catch.hpp>

#include <array>
#include <cstdint>
#include <phyr/container/range_list.hpp>
#include <phyr/device/constraints.hpp>
#include <phyr/map/identity_mapper.hpp>
#include <span>
#include <type_traits>
#include <vector>

namespace {
using phyr::dma_constraints;
using phyr::errc;
using phyr::phys_range;
using list = phyr::range_list<phys_range>;
struct nic0 {};
struct not_a_list {
  int begin() const { return 0; }
  int end() const { return 0; }
};
struct mixed_iterators {  // begin and end of different types: not a common range
  const phys_range* begin() const { return nullptr; }
  int end() const { return 0; }
};
}  // namespace

TEST_CASE("dma_constraints default to the kernel's limits for a device that sets none") {
  constexpr dma_constraints c;
  STATIC_REQUIRE(c.max_segment_size == 65536);
  STATIC_REQUIRE(c.segment_boundary_mask == 0xffffffff);
  STATIC_REQUIRE(c.alignment == 1);
  STATIC_REQUIRE(c.virt_boundary_mask == 0);
  STATIC_REQUIRE(c.dma_mask == ~0ull);
  STATIC_REQUIRE(c.check().has_value());
}


TEST_CASE("dma_constraints::check rejects contradictory limits with invalid_argument") {
  STATIC_REQUIRE(dma_constraints{.max_segment_size = 0}.check().error() ==
                 errc::invalid_argument);
  STATIC_REQUIRE(dma_constraints{.alignment = 0}.check().error() == errc::invalid_argument);
  STATIC_REQUIRE(dma_constraints{.alignment = 24}.check().error() == errc::invalid_argument);
  STATIC_REQUIRE(dma_constraints{.segment_boundary_mask = 0}.check().error() ==
                 errc::invalid_argument);
  STATIC_REQUIRE(dma_constraints{.segment_boundary_mask = 0x1000}.check().error() ==
                 errc::invalid_argument);
  STATIC_REQUIRE(dma_constraints{.virt_boundary_mask = 0x1000}.check().error() ==
                 errc::invalid_argument);
  // Boundary cuts would start misaligned; a limit below one aligned unit is useless.
  STATIC_REQUIRE(dma_constraints{.segment_boundary_mask = 0xff, .alignment = 512}
                     .check()
                     .error() == errc::invalid_argument);
  STATIC_REQUIRE(dma_constraints{.max_segment_size = 256, .alignment = 512}.check().error() ==
                 errc::invalid_argument);
  STATIC_REQUIRE(dma_constraints{.segment_boundary_mask = ~0ull, .virt_boundary_mask = ~0ull}
                     .check()
                     .has_value());
}


TEST_CASE("dma_constraints::check rejects bad counts, transfer units and excluded windows") {
  STATIC_REQUIRE(dma_constraints{.max_segments = 0}.check().error() == errc::invalid_argument);
  STATIC_REQUIRE(dma_constraints{.max_total_bytes = 0}.check().error() == errc::invalid_argument);
  STATIC_REQUIRE(dma_constraints{.min_transfer_unit = 0}.check().error() ==
                 errc::invalid_argument);
  STATIC_REQUIRE(dma_constraints{.min_transfer_unit = 48}.check().error() ==
                 errc::invalid_argument);
  // A unit larger than the boundary window or the max segment could never be whole.
  STATIC_REQUIRE(dma_constraints{.segment_boundary_mask = 0xff, .min_transfer_unit = 512}
                     .check()
                     .error() == errc::invalid_argument);
  STATIC_REQUIRE(dma_constraints{.max_segment_size = 256, .min_transfer_unit = 512}
                     .check()
                     .error() == errc::invalid_argument);
  STATIC_REQUIRE(dma_constraints{.excluded = {{0x1000, 0}}}.check().error() ==
                 errc::invalid_argument);
  STATIC_REQUIRE(dma_constraints{.excluded = {{~0ull, 2}}}.check().error() ==
                 errc::invalid_argument);
  STATIC_REQUIRE(dma_constraints{.excluded = {{~0ull, 1}}}.check().has_value());
  STATIC_REQUIRE(dma_constraints::unlimited().check().has_value());
  STATIC_REQUIRE(dma_constraints{.max_segment_size = 1000, .alignment = 8, .min_transfer_unit = 64}
                     .segment_limit() == 960);
}

TEST_CASE("address_windows holds up to four windows and refuses a fifth without changing") {
  phyr::address_windows w;
  for (std::uint64_t i = 0; i < phyr::address_windows::capacity; ++i)
    REQUIRE(w.try_add({i * 0x10000, 0x1000}));
  const phyr::address_windows before = w;
  CHECK(w.try_add({0x100000, 1}).error() == errc::out_of_range);
  CHECK(w.try_add({0x100000, 0}).error() == errc::invalid_argument);
  CHECK(w == before);
  CHECK(w.hits(0x30fff, 0x30fff));
  CHECK_FALSE(w.hits(0x31000, 0x3ffff));
  CHECK(w.hits(0x2f000, 0x30000));
}

TEST_CASE("dma_constraints::reaches: under the mask and in no excluded window") {
  constexpr dma_constraints c{.dma_mask = 0xffffffff, .excluded = {{0xfec00000, 0x1400000}}};
  STATIC_REQUIRE(c.reaches(0, 0xfebfffff));
  STATIC_REQUIRE_FALSE(c.reaches(0xfebff000, 0xfec00000));
  STATIC_REQUIRE_FALSE(c.reaches(0xfffff000, 0x100000000));
}

TEST_CASE("try_combine intersects parent and child with busdma's clamp") {
  constexpr dma_constraints bridge{.max_segment_size = 0x100000,
                                   .segment_boundary_mask = 0xffff,
                                   .alignment = 4,
                                   .dma_mask = 0xffffffff,
                                   .max_segments = 64,
                                   .excluded = {{0xa0000, 0x60000}}};
  constexpr dma_constraints dev{.max_segment_size = 0x20000,
                                .segment_boundary_mask = 0xffffffff,
                                .alignment = 512,
                                .virt_boundary_mask = 0xfff,
                                .dma_mask = 0xffffffffffff,
                                .max_segments = 256,
                                .max_total_bytes = 1 << 20,
                                .excluded = {{0xfec00000, 0x1400000}},
                                .min_transfer_unit = 512};
  constexpr auto c = phyr::try_combine(bridge, dev);
  STATIC_REQUIRE(c.has_value());
  // lowaddr = min (busdma), boundary = the smaller one, and maxsegsz clamped to the boundary.
  STATIC_REQUIRE(c->dma_mask == 0xffffffff);
  STATIC_REQUIRE(c->segment_boundary_mask == 0xffff);
  STATIC_REQUIRE(c->max_segment_size == 0x10000);
  // Everything else intersects: phyr does not keep the child's own value as busdma does.
  STATIC_REQUIRE(c->alignment == 512);
  STATIC_REQUIRE(c->virt_boundary_mask == 0xfff);
  STATIC_REQUIRE(c->max_segments == 64);
  STATIC_REQUIRE(c->max_total_bytes == 1 << 20);
  STATIC_REQUIRE(c->min_transfer_unit == 512);
  STATIC_REQUIRE(c->excluded.size() == 2);
  STATIC_REQUIRE(c->excluded.hits(0xa0000, 0xa0000));
  STATIC_REQUIRE(c->excluded.hits(0xfec00000, 0xfec00000));
  // Order does not matter but for the window order; unlimited() is neutral; a child with no
  // boundary (busdma's 0) takes the parent's.
  STATIC_REQUIRE(phyr::try_combine(dev, bridge)->max_segment_size == c->max_segment_size);
  STATIC_REQUIRE(*phyr::try_combine(dma_constraints::unlimited(), dev) == dev);
  STATIC_REQUIRE(phyr::try_combine(bridge, dma_constraints::unlimited())->segment_boundary_mask ==
                 0xffff);
}

TEST_CASE("try_combine fails when the intersection contradicts itself or has too many windows") {
  // A parent alignment larger than the child's max segment size.
  STATIC_REQUIRE(phyr::try_combine(dma_constraints{.alignment = 0x1000},
                                   dma_constraints{.max_segment_size = 0x800})
                     .error() == errc::invalid_argument);
  STATIC_REQUIRE(phyr::try_combine(dma_constraints{.max_segment_size = 0}, dma_constraints{})
                     .error() == errc::invalid_argument);
  constexpr dma_constraints a{.excluded = {{0x1000, 1}, {0x2000, 1}, {0x3000, 1}}};
  constexpr dma_constraints b{.excluded = {{0x4000, 1}, {0x5000, 1}}};
  STATIC_REQUIRE(phyr::try_combine(a, b).error() == errc::out_of_range);
  STATIC_REQUIRE(phyr::try_combine(a, a)->excluded.size() == 3);  // duplicates count once
}

TEST_CASE("checked_constraints exists only for constraints that pass check()") {
  STATIC_REQUIRE(phyr::checked_constraints::create(dma_constraints{}).has_value());
  STATIC_REQUIRE(phyr::checked_constraints::create(dma_constraints{.alignment = 3}).error() ==
                 errc::invalid_argument);
  STATIC_REQUIRE_FALSE(std::is_default_constructible_v<phyr::checked_constraints>);
  STATIC_REQUIRE_FALSE(std::is_constructible_v<phyr::checked_constraints, dma_constraints>);
  STATIC_REQUIRE(phyr::checked_constraints::create(dma_constraints{.max_segment_size = 7})
                     ->get()
                     .max_segment_size == 7);
}

TEST_CASE("checked_constraints keeps the segment limit and whether counters suffice") {
  constexpr auto limit = [](const dma_constraints& c) {
    return phyr::checked_constraints::create(c)->segment_limit();
  };
  constexpr auto suffice = [](const dma_constraints& c) {
    return phyr::checked_constraints::create(c)->counters_suffice();
  };
  STATIC_REQUIRE(limit(dma_constraints{}) == dma_constraints{}.segment_limit());
  STATIC_REQUIRE(limit(dma_constraints{.max_segment_size = 0x11ff, .alignment = 0x100}) == 0x1100);
  STATIC_REQUIRE(limit(dma_constraints{.max_segment_size = 0x3000, .min_transfer_unit = 0x2000}) ==
                 0x2000);
  // A mask, a total and a virtual boundary are O(1) checks against a counted list's counters;
  // each of the others needs the pass over the entries.
  STATIC_REQUIRE(suffice(dma_constraints{}));
  STATIC_REQUIRE(suffice(dma_constraints{.virt_boundary_mask = 0xfff,
                                         .dma_mask = 0xffff'ffff,
                                         .max_total_bytes = 1 << 20}));
  STATIC_REQUIRE_FALSE(suffice(dma_constraints{.alignment = 4}));
  STATIC_REQUIRE_FALSE(suffice(dma_constraints{.min_transfer_unit = 512}));
  STATIC_REQUIRE_FALSE(suffice(dma_constraints{.max_segments = 128}));
  STATIC_REQUIRE_FALSE(suffice(dma_constraints{.excluded = phyr::address_windows{
                                                   {{.addr = 0xfee0'0000, .len = 0x10'0000}}}}));
}

TEST_CASE("segment_limit is max_segment_size, at most a range's max_len, rounded down to the "
          "alignment") {
  STATIC_REQUIRE(dma_constraints{}.segment_limit() == 65536);
  STATIC_REQUIRE(dma_constraints{.max_segment_size = 0x11ff, .alignment = 0x100}.segment_limit() ==
                 0x1100);
  STATIC_REQUIRE(dma_constraints{.max_segment_size = ~0ull, .alignment = 4096}.segment_limit() ==
                 phys_range::max_len - 4095);
  STATIC_REQUIRE(dma_constraints{.max_segment_size = 7} == dma_constraints{.max_segment_size = 7});
  STATIC_REQUIRE(dma_constraints{.max_segment_size = 7} != dma_constraints{});
}

TEST_CASE("range_source accepts lists, views, spans, arrays, vectors and DMA mappings") {
  STATIC_REQUIRE(phyr::range_source<list>);
  STATIC_REQUIRE(phyr::range_source<phyr::range_list_view<phys_range>>);
  STATIC_REQUIRE(phyr::range_source<std::span<const phys_range>>);
  STATIC_REQUIRE(phyr::range_source<std::array<phys_range, 3>>);
  STATIC_REQUIRE(phyr::range_source<std::vector<phyr::dma_range<nic0>>>);
  STATIC_REQUIRE(phyr::range_source<phyr::identity_mapping<nic0>>);
  STATIC_REQUIRE(std::same_as<phyr::source_range_t<list>, phys_range>);
  STATIC_REQUIRE(std::same_as<phyr::source_space_t<phyr::identity_mapping<nic0>>,
                              phyr::dma_space<nic0>>);
}

TEST_CASE("range_source rejects containers of anything but ranges and non-common ranges") {
  STATIC_REQUIRE_FALSE(phyr::range_source<int>);
  STATIC_REQUIRE_FALSE(phyr::range_source<std::vector<int>>);
  STATIC_REQUIRE_FALSE(phyr::range_source<std::vector<phyr::phys_addr>>);
  STATIC_REQUIRE_FALSE(phyr::range_source<not_a_list>);
  STATIC_REQUIRE_FALSE(phyr::range_source<mixed_iterators>);
}

TEST_CASE("viewable_source admits lvalues and borrowed temporaries, never a temporary list") {
  STATIC_REQUIRE(phyr::viewable_source<list&>);
  STATIC_REQUIRE(phyr::viewable_source<const list&>);
  STATIC_REQUIRE(phyr::viewable_source<std::vector<phys_range>&>);
  STATIC_REQUIRE(phyr::viewable_source<phyr::range_list_view<phys_range>>);
  STATIC_REQUIRE(phyr::viewable_source<std::span<const phys_range>>);
  STATIC_REQUIRE(phyr::viewable_source<std::span<phys_range, 4>>);
  STATIC_REQUIRE_FALSE(phyr::viewable_source<list>);
  STATIC_REQUIRE_FALSE(phyr::viewable_source<list&&>);
  STATIC_REQUIRE_FALSE(phyr::viewable_source<std::vector<phys_range>>);
  STATIC_REQUIRE_FALSE(phyr::viewable_source<std::array<phys_range, 2>>);
  STATIC_REQUIRE_FALSE(phyr::viewable_source<std::vector<int>&>);
}
