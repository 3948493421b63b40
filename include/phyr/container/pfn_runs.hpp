/// Scanning page-frame arrays for physically contiguous runs (shared by range_list and
/// packed_list, the two builders that take pinned-page arrays).
///
///   std::size_t j = phyr::detail::pfn_run_end(pfns.data(), i + 1, pfns.size());
///   // pfns[i .. j) are consecutive frames; j == n or pfns[j] != pfns[j - 1] + 1
#pragma once

#include <cstddef>
#include <cstdint>

namespace phyr::inline v0::detail {

/// The first j >= i (i >= 1) with p[j] != p[j - 1] + 1, or n. Long runs are skipped eight
/// frames per step with a branch-free OR of differences that compilers vectorise, which is
/// what lets a contiguous or hugepage-backed buffer be scanned at close to memory speed
/// instead of one compare-and-branch per page.
[[nodiscard]] inline std::size_t pfn_run_end(const std::uint64_t* p, std::size_t i,
                                             std::size_t n) noexcept {
  while (n - i >= 8) {
    std::uint64_t x = 0;
    for (std::size_t k = 0; k < 8; ++k) x |= p[i + k] - p[i + k - 1] - 1;
    if (x != 0) break;
    i += 8;
  }
  while (i < n && p[i] == p[i - 1] + 1) ++i;
  return i;
}

/// The number of runs of consecutive frames in p[0, n) (n >= 1): a run starts at every frame
/// that does not follow its predecessor. Branch-free, four frames per step (SSE2 has no 64-bit
/// compare to vectorise it with).
[[nodiscard]] inline std::size_t pfn_run_count(const std::uint64_t* p, std::size_t n) noexcept {
  std::size_t runs = 1;
  std::size_t i = 1;
  for (; i + 4 <= n; i += 4) {
    runs += static_cast<std::size_t>(p[i] - p[i - 1] != 1) +
            static_cast<std::size_t>(p[i + 1] - p[i] != 1) +
            static_cast<std::size_t>(p[i + 2] - p[i + 1] != 1) +
            static_cast<std::size_t>(p[i + 3] - p[i + 2] != 1);
  }
  for (; i < n; ++i) runs += static_cast<std::size_t>(p[i] - p[i - 1] != 1);
  return runs;
}

}  // namespace phyr::detail
