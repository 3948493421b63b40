// The process-virtual address space (cpu_virt), mappers that say which CPU space they take,
// and result<T, sys_error> (an errc with the errno kept) for OS back ends.
#include <catch2/catch.hpp>
#include <cerrno>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <phyr/container/range_list.hpp>
#include <phyr/core/accessor.hpp>
#include <phyr/core/address_space.hpp>
#include <phyr/core/error.hpp>
#include <phyr/core/range.hpp>
#include <phyr/map/identity_mapper.hpp>
#include <phyr/map/iommu/iommu_mapper.hpp>
#include <phyr/map/mapper.hpp>
#include <phyr/map/offset_mapper.hpp>
#include <type_traits>
#include <utility>

#include "../map/toy_mapper.hpp"

using namespace phyr;

namespace {

struct bus_a {};

// A hand-written mapper of virtual lists: the shape of a back end that pins and translates in
// the kernel (VFIO). Maps nothing; only the types matter here.
using toy_virt_mapping = test_mappers::toy_mapping<bus_a>;
using toy_virt_mapper = test_mappers::toy_mapper<cpu_virt, bus_a>;
// Says it takes virtual lists but only offers try_map for physical ones.
struct lies_about_source : test_mappers::toy_mapper<cpu_phys, bus_a> {
  using source_space = cpu_virt;
};
// Everything a phys mapper needs but `source_space`.
struct unnamed_source {
  using mapper_concept = dma_mapper_tag;
  using bus_type = bus_a;
  using space_type = dma_space<bus_a>;
  using mapping = toy_virt_mapping;
  result<mapping> try_map(const range_list<phys_range>&, dma_direction) noexcept {
    return errc::not_supported;
  }
  result<mapping> try_map(range_list_view<phys_range>, dma_direction) noexcept {
    return errc::not_supported;
  }
  result<void> try_unmap(mapping&&) noexcept { return errc::foreign_mapping; }
};
// A "mapper" from a DMA space: DMA addresses are never mapped again.
struct maps_from_dma : toy_virt_mapper {
  using source_space = dma_space<bus_a>;
};

template <class M, class L>
concept can_map = requires(M& m, const L& l) { m.try_map(l, dma_direction::to_device); };
template <class L, class R>
concept can_append = requires(L& l, const R& r) { l.try_append(r); };
template <class Acc, class R>
concept can_copy_from = requires(const Acc& a, const R& r, void* p) { a.try_copy_from(r, 0, p, 1); };

}  // namespace

TEST_CASE("cpu_virt is a CPU-accessible space distinct from cpu_phys and every DMA space",
          "[core][virt]") {
  STATIC_REQUIRE(address_space<cpu_virt>);
  STATIC_REQUIRE(cpu_accessible_space<cpu_virt>);
  STATIC_REQUIRE_FALSE(dma_address_space<cpu_virt>);
  STATIC_REQUIRE_FALSE(std::same_as<cpu_virt, cpu_phys>);
  STATIC_REQUIRE(sizeof(virt_range) == 16);
  STATIC_REQUIRE(std::same_as<virt_range::space_type, cpu_virt>);
  STATIC_REQUIRE(std::same_as<virt_addr, address<cpu_virt>>);
  STATIC_REQUIRE_FALSE(std::is_convertible_v<virt_addr, phys_addr>);
  STATIC_REQUIRE_FALSE(std::is_convertible_v<phys_addr, virt_addr>);
  STATIC_REQUIRE_FALSE(std::is_convertible_v<virt_range, phys_range>);
  STATIC_REQUIRE_FALSE(std::is_convertible_v<virt_range, dma_range<bus_a>>);
  STATIC_REQUIRE_FALSE(can_append<range_list<phys_range>, virt_range>);
  STATIC_REQUIRE_FALSE(can_append<range_list<virt_range>, phys_range>);
  STATIC_REQUIRE(can_append<range_list<virt_range>, virt_range>);
}

TEST_CASE("virt_range_of names a buffer and rejects null, empty and wrapping ones", "[core][virt]") {
  alignas(64) static std::byte buf[256];
  auto r = virt_range_of(buf, sizeof buf);
  REQUIRE(r);
  CHECK(r->addr().value() == reinterpret_cast<std::uintptr_t>(buf));
  CHECK(r->len() == sizeof buf);
  CHECK(virt_range_of(buf, 0).error() == errc::invalid_argument);
  CHECK(virt_range_of(nullptr, 16).error() == errc::invalid_argument);
  const void* top = reinterpret_cast<const void*>(~std::uintptr_t{0} - 7);
  CHECK(virt_range_of(top, 16).error() == errc::overflow);
  CHECK(virt_range_of(top, 8));
}

TEST_CASE("virt_accessor copies through virtual ranges inside its window only", "[core][virt]") {
  std::byte buf[64] = {};
  const virt_addr base{reinterpret_cast<std::uintptr_t>(buf)};
  const virt_accessor acc{buf, base, sizeof buf};
  const virt_range r{base + 16, 16};
  const unsigned char in[4] = {1, 2, 3, 4};
  REQUIRE(acc.try_copy_to(r, 4, in, sizeof in));
  CHECK(buf[20] == std::byte{1});
  CHECK(buf[23] == std::byte{4});
  unsigned char out[4] = {};
  REQUIRE(acc.try_copy_from(r, 4, out, sizeof out));
  CHECK(out[3] == 4);
  CHECK(acc.try_copy_from(r, 14, out, 4).error() == errc::out_of_range);
  const virt_range outside{base + 60, 16};
  CHECK(acc.try_copy_from(outside, 0, out, 4));  // the last 4 bytes of the window
  CHECK(acc.try_copy_from(outside, 2, out, 4).error() == errc::not_mapped);
  // The accessor of one space takes no range of another.
  STATIC_REQUIRE(can_copy_from<virt_accessor, virt_range>);
  STATIC_REQUIRE_FALSE(can_copy_from<virt_accessor, phys_range>);
  STATIC_REQUIRE_FALSE(can_copy_from<phys_accessor, virt_range>);
}

TEST_CASE("mappers name their source space; phys and virt mappers are told apart",
          "[mapper][virt]") {
  STATIC_REQUIRE(std::same_as<mapper_source_space_t<identity_mapper<bus_a>>, cpu_phys>);
  STATIC_REQUIRE(phys_dma_mapper<identity_mapper<bus_a>>);
  STATIC_REQUIRE(phys_dma_mapper<offset_mapper<bus_a>>);
  STATIC_REQUIRE(phys_dma_mapper<iommu_mapper<bus_a>>);
  STATIC_REQUIRE_FALSE(virt_dma_mapper<identity_mapper<bus_a>>);
  STATIC_REQUIRE_FALSE(virt_dma_mapper<iommu_mapper<bus_a>>);
  STATIC_REQUIRE(dma_mapper<toy_virt_mapper>);
  STATIC_REQUIRE(virt_dma_mapper<toy_virt_mapper>);
  STATIC_REQUIRE(dma_mapper_from<toy_virt_mapper, cpu_virt>);
  STATIC_REQUIRE_FALSE(phys_dma_mapper<toy_virt_mapper>);
  STATIC_REQUIRE(std::same_as<mapper_source_space_t<toy_virt_mapper>, cpu_virt>);
}

TEST_CASE("a mapper must name a CPU source space and map lists of exactly that space",
          "[mapper][virt]") {
  STATIC_REQUIRE_FALSE(dma_mapper<unnamed_source>);
  STATIC_REQUIRE_FALSE(dma_mapper<maps_from_dma>);
  STATIC_REQUIRE_FALSE(dma_mapper<lies_about_source>);
}

TEST_CASE("a physical list does not map through a virtual mapper, nor the reverse",
          "[mapper][virt]") {
  STATIC_REQUIRE(can_map<toy_virt_mapper, range_list<virt_range>>);
  STATIC_REQUIRE(can_map<toy_virt_mapper, range_list_view<virt_range>>);
  STATIC_REQUIRE_FALSE(can_map<toy_virt_mapper, range_list<phys_range>>);
  STATIC_REQUIRE_FALSE(can_map<toy_virt_mapper, range_list_view<phys_range>>);
  STATIC_REQUIRE_FALSE(can_map<toy_virt_mapper, range_list<dma_range<bus_a>>>);
  STATIC_REQUIRE_FALSE(can_map<identity_mapper<bus_a>, range_list<virt_range>>);
  STATIC_REQUIRE_FALSE(can_map<offset_mapper<bus_a>, range_list<virt_range>>);
  STATIC_REQUIRE_FALSE(can_map<iommu_mapper<bus_a>, range_list<virt_range>>);
  STATIC_REQUIRE_FALSE(can_map<iommu_mapper<bus_a>, range_list_view<virt_range>>);
}

TEST_CASE("result<T, sys_error> keeps the errno and the failing call, result<T> stays small",
          "[core][error]") {
  STATIC_REQUIRE(sizeof(result<std::uint64_t>) == 16);
  STATIC_REQUIRE(sizeof(result<void>) == 1);
  STATIC_REQUIRE(std::is_trivially_copyable_v<result<std::uint64_t, sys_error>>);

  const result<int, sys_error> e{sys_error{errc::permission_denied, EPERM, "VFIO_SET_IOMMU"}};
  REQUIRE_FALSE(e);
  CHECK(e.error() == errc::permission_denied);
  CHECK(e.error().sys_errno == EPERM);
  CHECK(std::string_view{e.error().op} == "VFIO_SET_IOMMU");

  // phyr's own checks: a plain errc, errno 0.
  const result<void, sys_error> own{errc::invalid_argument};
  CHECK(own.error() == errc::invalid_argument);
  CHECK(own.error().sys_errno == 0);
  CHECK(own.error().op == nullptr);
  CHECK(result<void, sys_error>{}.has_value());

  // Into a plain result<U>: the errc survives, so `return r.error();` crosses the two.
  auto forward = [](const result<int, sys_error>& r) -> result<double> {
    if (!r) return r.error();
    return 1.0;
  };
  CHECK(forward(e).error() == errc::permission_denied);
  auto forward_void = [](const result<int, sys_error>& r) -> result<void> {
    if (!r) return r.error();
    return {};
  };
  CHECK(forward_void(e).error() == errc::permission_denied);
  CHECK(must(result<int, sys_error>{7}) == 7);
}
