/// The page vocabulary every layer shares: the 4 KiB base page and 52-bit page frame numbers.
///
///   std::uint64_t pfn = addr >> phyr::page_shift;            // frame of a CPU address
///   bool aligned = (addr & phyr::page_mask) == 0;            // page-aligned?
///   static_assert(phyr::page_size == 4096);
///
/// phyr's page is the unit of /proc/self/pagemap, of the packed encoding's frame field and of
/// the IOMMU model's smallest leaf: 4 KiB on every platform phyr targets. Devices with other
/// page sizes (NVMe CC.MPS, RDMA MR pages, IOMMU superpages) take them as parameters; this
/// header is only the base unit. A 64-bit byte address has 52 bits of frame number.
#pragma once

#include <cstdint>

#include <phyr/config.hpp>

namespace phyr::inline v0 {

/// log2 of the base page size.
inline constexpr unsigned page_shift = 12;
/// The base page size in bytes.
inline constexpr std::uint64_t page_size = std::uint64_t{1} << page_shift;
/// Offset bits inside a page.
inline constexpr std::uint64_t page_mask = page_size - 1;
/// Width of a page frame number: the frames of the whole 64-bit byte space.
inline constexpr unsigned pfn_bits = 64 - page_shift;
/// One past the largest page frame number.
inline constexpr std::uint64_t pfn_limit = std::uint64_t{1} << pfn_bits;

/// The frame holding byte address `a`, and the first byte of frame `pfn`.
[[nodiscard]] constexpr std::uint64_t pfn_of(std::uint64_t a) noexcept { return a >> page_shift; }
[[nodiscard]] constexpr std::uint64_t pfn_to_addr(std::uint64_t pfn) noexcept {
  return pfn << page_shift;
}

}  // namespace phyr::inline v0
