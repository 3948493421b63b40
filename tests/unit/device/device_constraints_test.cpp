// device/constraints.hpp: dma_constraints and the range_source / viewable_source concepts.
#include <catch2/catch.hpp>

#include <array>
#include <cstdint>
#include <phyr/container/range_list.hpp>
#include <phyr/device/constraints.hpp>
#include <phyr/map/identity_mapper.hpp>
#include <span>
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
  STATIC_REQUIRE(c.validate().has_value());
}


TEST_CASE("dma_constraints::validate rejects contradictory limits with invalid_argument") {
  STATIC_REQUIRE(dma_constraints{.max_segment_size = 0}.validate().error() ==
                 errc::invalid_argument);
  STATIC_REQUIRE(dma_constraints{.alignment = 0}.validate().error() == errc::invalid_argument);
  STATIC_REQUIRE(dma_constraints{.alignment = 24}.validate().error() == errc::invalid_argument);
  STATIC_REQUIRE(dma_constraints{.segment_boundary_mask = 0}.validate().error() ==
                 errc::invalid_argument);
  STATIC_REQUIRE(dma_constraints{.segment_boundary_mask = 0x1000}.validate().error() ==
                 errc::invalid_argument);
  STATIC_REQUIRE(dma_constraints{.virt_boundary_mask = 0x1000}.validate().error() ==
                 errc::invalid_argument);
  // Boundary cuts would start misaligned; a limit below one aligned unit is useless.
  STATIC_REQUIRE(dma_constraints{.segment_boundary_mask = 0xff, .alignment = 512}
                     .validate()
                     .error() == errc::invalid_argument);
  STATIC_REQUIRE(dma_constraints{.max_segment_size = 256, .alignment = 512}.validate().error() ==
                 errc::invalid_argument);
  STATIC_REQUIRE(dma_constraints{.segment_boundary_mask = ~0ull, .virt_boundary_mask = ~0ull}
                     .validate()
                     .has_value());
}


TEST_CASE("segment_limit is max_segment_size rounded down to the alignment") {
  STATIC_REQUIRE(dma_constraints{}.segment_limit() == 65536);
  STATIC_REQUIRE(dma_constraints{.max_segment_size = 0x11ff, .alignment = 0x100}.segment_limit() ==
                 0x1100);
  STATIC_REQUIRE(dma_constraints{.max_segment_size = ~0ull, .alignment = 4096}.segment_limit() ==
                 ~0ull - 4095);
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
