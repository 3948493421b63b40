/// The largest page size a device can use for a list: `try_best_page_size`, `best_page_size`.
///
///   // An RDMA NIC that supports 4 KiB, 64 KiB, 2 MiB and 1 GiB MR pages:
///   constexpr std::uint64_t sizes = phyr::page_size | (1u << 16) | (1u << 21) | (1ull << 30);
///   auto pg = phyr::try_best_page_size(mapping, sizes, /*iova=*/user_va);
///   if (!pg) return pg.error();                        // not_supported: no size fits
///   auto mr_pages = phyr::try_blocks(mapping, *pg);    // always succeeds for *pg
///
/// The semantics are those of the Linux kernel's ib_umem_find_best_pgsz (in its current form,
/// which treats DMA-contiguous neighbours as one run) for a list mapped at IOVA `iova`:
/// - a page size fits when, for every run of contiguous ranges, the run's first address and
///   the IOVA it is mapped at agree modulo the page size, and every IOVA where a new run starts
///   (but the first) is page aligned; the fitting sizes are exactly those up to the lowest bit
///   where these addresses disagree;
/// - sizes larger than needed to cover [iova, iova + total) with one page are not used: among
///   the supported sizes that do (2 bytes or more, the kernel's bits_per(0) == 1), only the
///   smallest remains a candidate, since a larger page would only map memory the buffer does
///   not own;
/// - the answer is the largest supported size that remains, or `errc::not_supported`.
/// One pass over the entries, a few bit operations each. Unlike the kernel, sizes below
/// `page_size` (4 KiB) are not filtered out: phyr lists are byte exact, so 512-byte or 1 KiB
/// pages are valid answers when the device declares them.
#pragma once

#include <bit>
#include <cstdint>

#include <phyr/config.hpp>
#include <phyr/container/range_source.hpp>
#include <phyr/core/error.hpp>
#include <phyr/core/page.hpp>
#include <phyr/core/range.hpp>
#include <phyr/device/constraints.hpp>

namespace phyr::inline v0 {

/// Largest page size in the bitmap `supported_sizes` (bit k set = 2^k bytes supported) with
/// which `list`, mapped at IOVA `iova`, can be described as whole pages (see the file comment).
/// Errors: invalid_argument (an empty list, a zero-length entry), overflow (the total length
/// past 2^64 - 1, or iova + total - 1 past 2^64 - 1), not_supported (no supported size fits,
/// including an empty bitmap).
template <range_source L>
[[nodiscard]] constexpr result<std::uint64_t> try_best_page_size(const L& list,
                                                                 std::uint64_t supported_sizes,
                                                                 std::uint64_t iova) noexcept {
  std::uint64_t mask = 0;  // a 1 wherever some address pair disagrees
  std::uint64_t va = iova;
  std::uint64_t total = 0;
  std::uint64_t prev_last = 0;
  bool any = false;
  errc err{};
  // for_each_range: a segmented source (a list, a mapping) is read a heap segment at a time.
  const bool done = for_each_range(list, [&](const source_range_t<L>& r) noexcept {
    const std::uint64_t a = r.addr().value();
    const std::uint64_t len = r.len();
    if (len == 0 || len > ~total) {
      err = len == 0 ? errc::invalid_argument : errc::overflow;
      return false;
    }
    const bool contiguous = any && prev_last != ~std::uint64_t{0} && a == prev_last + 1;
    if (!contiguous) {
      mask |= a ^ va;
      if (any) mask |= va;
    }
    // Wraps only when iova + total does, which is reported below; the mask is then unused.
    va += len;
    total += len;
    prev_last = r.last().value();
    any = true;
    return true;
  });
  if (!done) return err;
  if (!any) return errc::invalid_argument;
  if (total - 1 > ~iova) return errc::overflow;
  // The smallest supported size covering the whole IOVA range caps the answer.
  const std::uint64_t span = (iova + (total - 1)) ^ iova;
  const int bits = span < 2 ? 1 : static_cast<int>(std::bit_width(span));
  if (bits < 64) mask |= supported_sizes & (~std::uint64_t{0} << bits);
  std::uint64_t fit = supported_sizes;
  if (mask != 0) {
    const int tz = std::countr_zero(mask);
    fit &= tz == 63 ? ~std::uint64_t{0} : (std::uint64_t{2} << tz) - 1;
  }
  if (fit == 0) return errc::not_supported;
  return std::bit_floor(fit);
}

/// The kernel's contract: the page size, or 0 when none fits or the input is invalid
/// (try_best_page_size says which).
template <range_source L>
[[nodiscard]] constexpr std::uint64_t best_page_size(const L& list, std::uint64_t supported_sizes,
                                                     std::uint64_t iova) noexcept {
  const result<std::uint64_t> r = try_best_page_size(list, supported_sizes, iova);
  return r ? *r : 0;
}

}  // namespace phyr
