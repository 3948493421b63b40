/// What a device accepts (`dma_constraints`) and what device-side code reads (`range_source`).
///
///   phyr::dma_constraints c{.max_segment_size = 1u << 20,      // 1 MiB per descriptor
///                           .segment_boundary_mask = 0xffffffff, // no segment crosses 4 GiB
///                           .alignment = 4,                      // dword-aligned starts
///                           .virt_boundary_mask = 4095,          // NVMe PRP / RDMA MR: no gaps
///                           .dma_mask = 0xffffffffffff};         // 48 address bits
///   if (auto v = c.validate(); !v) return v.error();             // invalid_argument
///   static_assert(phyr::range_source<phyr::range_list<phyr::phys_range>>);
///
/// The fields are the Linux kernel's per-device DMA limits, so a driver can copy its numbers:
/// `max_segment_size` (dma_get_max_seg_size; the kernel's default when a driver sets nothing is
/// 64 KiB, and so is ours), `segment_boundary_mask` (dma_get_seg_boundary: no segment may cross a
/// multiple of mask + 1; default 0xffffffff, the historical kernel and block-layer default),
/// `alignment` (every segment starts at a multiple of it), `virt_boundary_mask` (the block
/// layer's "no gaps" rule for devices that take page lists, NVMe PRPs and RDMA MRs; 0 = none) and
/// `dma_mask` (the highest address the device can drive; default all 64 bits, since a mapper has
/// normally checked the real mask already).
///
/// Everything in device/ takes any `range_source`: a type whose const `begin()`/`end()` walk
/// `range<Space>` values (by value or by reference). `range_list`, `range_list_view`, a mapper's
/// DMA mapping, a `std::span` or `std::array` of ranges all qualify, so the same code serves a
/// CPU list and a DMA mapping, and the address space of the output follows the input's.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>
#include <utility>

#include <phyr/config.hpp>
#include <phyr/container/range_list.hpp>
#include <phyr/container/range_source.hpp>
#include <phyr/core/error.hpp>
#include <phyr/core/range.hpp>

namespace phyr::inline v0 {

/// A device's DMA limits. An aggregate, so designated initializers name what differs from the
/// defaults. Check it with `validate()`; every device/ function does so itself.
struct dma_constraints {
  /// Longest segment, in bytes (> 0).
  std::uint64_t max_segment_size = std::uint64_t{1} << 16;
  /// No segment crosses a multiple of mask + 1. Of the form 2^k - 1 (k >= 1); ~0 = no boundary.
  std::uint64_t segment_boundary_mask = 0xffffffff;
  /// Every segment starts at a multiple of this (a power of two; 1 = any byte).
  std::uint64_t alignment = 1;
  /// 0, or 2^k - 1: at every gap between two ranges (the next one does not start where the
  /// previous ended) the previous must end and the next must start on a multiple of mask + 1.
  std::uint64_t virt_boundary_mask = 0;
  /// Highest address the device can reach; a byte above it is `errc::not_addressable`.
  std::uint64_t dma_mask = ~std::uint64_t{0};

  /// `errc::invalid_argument` when the limits contradict themselves: zero max segment size, an
  /// alignment that is not a power of two or is larger than the max segment size or the
  /// segment boundary (cuts there could not start aligned), or a mask not of the form 2^k - 1.
  [[nodiscard]] constexpr result<void> validate() const noexcept {
    if (max_segment_size == 0) return errc::invalid_argument;
    if (alignment == 0 || (alignment & (alignment - 1)) != 0) return errc::invalid_argument;
    if (segment_boundary_mask == 0 || (segment_boundary_mask & (segment_boundary_mask + 1)) != 0)
      return errc::invalid_argument;
    if ((virt_boundary_mask & (virt_boundary_mask + 1)) != 0) return errc::invalid_argument;
    if (alignment - 1 > segment_boundary_mask) return errc::invalid_argument;
    if (max_segment_size < alignment) return errc::invalid_argument;
    return {};
  }

  /// The longest segment split() cuts: `max_segment_size` rounded down to `alignment`, so a cut
  /// inside an aligned range starts the next segment aligned too. Meaningful once validated.
  [[nodiscard]] constexpr std::uint64_t segment_limit() const noexcept {
    return max_segment_size & ~(alignment - 1);
  }

  friend constexpr bool operator==(const dma_constraints&,
                                   const dma_constraints&) noexcept = default;
};

namespace detail {

/// Round up a / b for b > 0 (no overflow: never forms a + b).
[[nodiscard]] constexpr std::uint64_t ceil_div(std::uint64_t a, std::uint64_t b) noexcept {
  return a / b + (a % b != 0 ? 1 : 0);
}

/// Bytes from `a` to the next multiple of mask + 1, minus one (so mask = ~0 needs no 2^64).
[[nodiscard]] constexpr std::uint64_t boundary_room_m1(std::uint64_t a,
                                                       std::uint64_t mask) noexcept {
  return mask - (a & mask);
}

}  // namespace detail

}  // namespace phyr
