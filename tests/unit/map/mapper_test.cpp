// The dma_mapper / dma_mapping concepts, their opt-in and type safety, and generic code that
// works on every phyr mapper.
#include <catch2/catch.hpp>
#include <cstdint>
#include <phyr/compat/scatterlist.hpp>
#include <phyr/container/range_list.hpp>
#include <phyr/map/identity_mapper.hpp>
#include <phyr/map/mapper.hpp>
#include <phyr/map/offset_mapper.hpp>
#include <phyr/map/sg_bridge_mapper.hpp>
#include <utility>

#include "toy_mapper.hpp"

using namespace phyr;

namespace {

struct bus_a {};
struct bus_b {};

struct direct_map_sg {
  int operator()(compat::scatterlist* sgl, int nents, dma_direction) const noexcept {
    return compat::dma_direct_map_sg(sgl, nents, ~std::uint64_t{0});
  }
};
using bridge_a = sg_bridge_mapper<bus_a, direct_map_sg>;

// A hand-written mapper that follows the concept: the minimum a third party must provide.
using toy_mapper = test_mappers::toy_mapper<cpu_phys, bus_a>;

// The same, minus one requirement each.
struct no_tag : toy_mapper {
  using mapper_concept = void;
};
struct wrong_space : toy_mapper {
  using space_type = dma_space<bus_b>;
};
struct throwing_map : toy_mapper {
  result<mapping> try_map(const range_list<phys_range>&, dma_direction) { return errc::io_error; }
  result<mapping> try_map(range_list_view<phys_range>, dma_direction) { return errc::io_error; }
};
struct void_unmap : toy_mapper {
  void try_unmap(mapping&&) noexcept {}
};
// Its mapping holds bus B addresses.
using maps_to_other_bus =
    test_mappers::toy_mapper<cpu_phys, bus_a, test_mappers::toy_mapping<bus_b>>;

template <class M, class Mp>
concept can_unmap = requires(M& m, Mp& mp) {
  m.try_unmap(std::move(mp));
};
template <class M, class L>
concept can_map = requires(M& m, const L& l) {
  m.try_map(l, dma_direction::to_device);
};
template <class M>
concept can_map_temporary = requires(M& m) {
  m.try_map(range_list<phys_range>{}, dma_direction::to_device);
};
template <class L, class R>
concept can_append = requires(L& l, const R& r) {
  l.try_append(r);
};

// Generic driver code: map, walk, unmap, with any mapper of physical lists.
template <phys_dma_mapper M>
result<std::uint64_t> map_walk_unmap(M& m, const range_list<phys_range>& cpu) {
  auto mp = m.try_map(cpu, dma_direction::to_device);
  if (!mp) return mp.error();
  std::uint64_t bytes = 0;
  for (const dma_range<typename M::bus_type> r : *mp) bytes += r.len();
  if (bytes != mp->total_bytes()) return errc::io_error;
  if (auto u = m.try_unmap(std::move(*mp)); !u) return u.error();
  return bytes;
}

range_list<phys_range> sample_list() {
  range_list<phys_range> l;
  must(l.try_append(phys_range{phys_addr{0x10000}, 0x3000}));
  must(l.try_append(phys_range{phys_addr{0x20000}, 0x1000}));
  must(l.try_append(phys_range{phys_addr{0x40000}, 0x800}));
  return l;
}

}  // namespace

TEST_CASE("dma_direction has the three kernel directions and rejects anything else") {
  CHECK(to_string(dma_direction::to_device) == std::string_view{"to_device"});
  CHECK(to_string(dma_direction::from_device) == std::string_view{"from_device"});
  CHECK(to_string(dma_direction::bidirectional) == std::string_view{"bidirectional"});
  STATIC_REQUIRE(is_valid(dma_direction::to_device));
  STATIC_REQUIRE(is_valid(dma_direction::bidirectional));
  STATIC_REQUIRE_FALSE(is_valid(static_cast<dma_direction>(7)));
  STATIC_REQUIRE(sizeof(dma_direction) == 1);
}

TEST_CASE("dma_mask_from_bits gives the kernel's DMA_BIT_MASK for 1 to 64 bits") {
  CHECK(*dma_mask_from_bits(1) == 1);
  CHECK(*dma_mask_from_bits(32) == 0xffffffffull);
  CHECK(*dma_mask_from_bits(48) == 0xffffffffffffull);
  CHECK(*dma_mask_from_bits(64) == ~std::uint64_t{0});
  CHECK(dma_mask_from_bits(0).error() == errc::invalid_argument);
  CHECK(dma_mask_from_bits(65).error() == errc::invalid_argument);
}

TEST_CASE("every phyr mapper and a hand-written one satisfy dma_mapper") {
  STATIC_REQUIRE(dma_mapper<identity_mapper<bus_a>>);
  STATIC_REQUIRE(dma_mapper<offset_mapper<bus_a>>);
  STATIC_REQUIRE(dma_mapper<offset_mapper<bus_a, fault_injecting_allocator, 4>>);
  STATIC_REQUIRE(dma_mapper<bridge_a>);
  STATIC_REQUIRE(dma_mapper<toy_mapper>);
  STATIC_REQUIRE(std::same_as<mapping_t<identity_mapper<bus_a>>, identity_mapping<bus_a>>);
  STATIC_REQUIRE(dma_mapping<identity_mapping<bus_a>, dma_space<bus_a>>);
  STATIC_REQUIRE(dma_mapping<offset_mapping<bus_a>, dma_space<bus_a>>);
  STATIC_REQUIRE(dma_mapping<sg_bridge_mapping<bus_a>, dma_space<bus_a>>);
  // An owned DMA list is itself a mapping shape.
  STATIC_REQUIRE(dma_mapping<range_list<dma_range<bus_a>>, dma_space<bus_a>>);
}

TEST_CASE("dma_mapper needs the opt-in tag and every member with the exact signature") {
  STATIC_REQUIRE_FALSE(dma_mapper<int>);
  STATIC_REQUIRE_FALSE(dma_mapper<no_tag>);
  STATIC_REQUIRE_FALSE(dma_mapper<wrong_space>);
  STATIC_REQUIRE_FALSE(dma_mapper<throwing_map>);
  STATIC_REQUIRE_FALSE(dma_mapper<void_unmap>);
  STATIC_REQUIRE_FALSE(dma_mapper<maps_to_other_bus>);
  STATIC_REQUIRE_FALSE(dma_mapping<identity_mapping<bus_a>, dma_space<bus_b>>);
  STATIC_REQUIRE_FALSE(dma_mapping<range_list<phys_range>, dma_space<bus_a>>);
  STATIC_REQUIRE_FALSE(dma_mapping<int, dma_space<bus_a>>);
}

TEST_CASE("a mapping of bus A cannot be used where bus B is expected") {
  // Not unmappable by bus B's mappers.
  STATIC_REQUIRE_FALSE(can_unmap<identity_mapper<bus_b>, identity_mapping<bus_a>>);
  STATIC_REQUIRE_FALSE(can_unmap<offset_mapper<bus_b>, offset_mapping<bus_a>>);
  STATIC_REQUIRE_FALSE(can_unmap<sg_bridge_mapper<bus_b, direct_map_sg>, sg_bridge_mapping<bus_a>>);
  STATIC_REQUIRE(can_unmap<identity_mapper<bus_a>, identity_mapping<bus_a>>);
  // Its entries are bus A ranges: not bus B ranges, not physical ranges.
  using entry = decltype(*std::declval<const identity_mapping<bus_a>&>().begin());
  STATIC_REQUIRE(std::same_as<std::remove_cvref_t<entry>, dma_range<bus_a>>);
  STATIC_REQUIRE_FALSE(std::is_convertible_v<dma_range<bus_a>, dma_range<bus_b>>);
  STATIC_REQUIRE_FALSE(std::is_convertible_v<dma_range<bus_a>, phys_range>);
  STATIC_REQUIRE_FALSE(can_append<range_list<dma_range<bus_b>>, dma_range<bus_a>>);
  STATIC_REQUIRE(can_append<range_list<dma_range<bus_a>>, dma_range<bus_a>>);
}

TEST_CASE("a DMA range or DMA list cannot be mapped again") {
  STATIC_REQUIRE_FALSE(can_map<identity_mapper<bus_a>, range_list<dma_range<bus_a>>>);
  STATIC_REQUIRE_FALSE(can_map<offset_mapper<bus_a>, range_list<dma_range<bus_a>>>);
  STATIC_REQUIRE_FALSE(can_map<bridge_a, range_list<dma_range<bus_b>>>);
  STATIC_REQUIRE_FALSE(can_map<identity_mapper<bus_a>, range_list_view<dma_range<bus_a>>>);
  STATIC_REQUIRE_FALSE(can_map<offset_mapper<bus_a>, range_list_view<dma_range<bus_a>>>);
  // Nor can a mapping's own output be fed back in.
  STATIC_REQUIRE_FALSE(can_map<identity_mapper<bus_a>, identity_mapping<bus_a>>);
  STATIC_REQUIRE_FALSE(can_map<offset_mapper<bus_a>, offset_mapping<bus_a>>);
  // The CPU list and its views map fine.
  STATIC_REQUIRE(can_map<identity_mapper<bus_a>, range_list<phys_range>>);
  STATIC_REQUIRE(can_map<identity_mapper<bus_a>, range_list<phys_range, pool_allocator>>);
  STATIC_REQUIRE(can_map<offset_mapper<bus_a>, range_list_view<phys_range>>);
  STATIC_REQUIRE(can_map<bridge_a, range_list<phys_range>>);
}

TEST_CASE("an aliasing mapper cannot map a temporary list, owning mappers can") {
  STATIC_REQUIRE_FALSE(can_map_temporary<identity_mapper<bus_a>>);
  STATIC_REQUIRE(can_map_temporary<offset_mapper<bus_a>>);
  STATIC_REQUIRE(can_map_temporary<bridge_a>);
}

TEST_CASE("generic code written against dma_mapper runs unchanged on every mapper") {
  const auto cpu = sample_list();
  const std::uint64_t total = cpu.total_bytes();

  identity_mapper<bus_a> id;
  CHECK(*map_walk_unmap(id, cpu) == total);

  offset_mapper<bus_a> off;
  must(off.try_add_window(phys_addr{0}, dma_addr<bus_a>{0x8000'0000}, 1 << 20));
  CHECK(*map_walk_unmap(off, cpu) == total);

  bridge_a bridge{direct_map_sg{}};
  CHECK(*map_walk_unmap(bridge, cpu) == total);

  toy_mapper toy;
  CHECK(map_walk_unmap(toy, cpu).error() == errc::not_supported);
}

TEST_CASE("every mapper rejects an empty list and an invalid direction") {
  const range_list<phys_range> empty;
  const auto cpu = sample_list();
  const auto bad = static_cast<dma_direction>(42);
  identity_mapper<bus_a> id;
  offset_mapper<bus_a> off;
  must(off.try_add_window(phys_addr{0}, dma_addr<bus_a>{0}, 1 << 20));
  bridge_a bridge{direct_map_sg{}};
  CHECK(id.try_map(empty, dma_direction::to_device).error() == errc::invalid_argument);
  CHECK(off.try_map(empty, dma_direction::to_device).error() == errc::invalid_argument);
  CHECK(bridge.try_map(empty, dma_direction::to_device).error() == errc::invalid_argument);
  CHECK(id.try_map(cpu, bad).error() == errc::invalid_argument);
  CHECK(off.try_map(cpu, bad).error() == errc::invalid_argument);
  CHECK(bridge.try_map(cpu, bad).error() == errc::invalid_argument);
}

TEST_CASE("mapper identities are unique, survive a move and are not shared by a copy") {
  detail::mapper_id a;
  detail::mapper_id b;
  CHECK(a.value() != 0);
  CHECK(a.value() != b.value());
  const std::uint64_t av = a.value();
  detail::mapper_id moved{std::move(a)};
  CHECK(moved.value() == av);
  CHECK(a.value() != av);  // NOLINT(bugprone-use-after-move): the source gets a fresh identity
  detail::mapper_id copy{moved};
  CHECK(copy.value() != moved.value());
  b = std::move(moved);
  CHECK(b.value() == av);
}
