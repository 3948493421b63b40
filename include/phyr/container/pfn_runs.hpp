/// Scanning page-frame arrays for physically contiguous runs (shared by range_list and
/// packed_list, the two builders that take pinned-page arrays).
///
///   std::size_t j = phyr::detail::pfn_run_end(pfns.data(), i + 1, pfns.size());
///   // pfns[i .. j) are consecutive frames; j == n or pfns[j] != pfns[j - 1] + 1
#pragma once

#include <cstddef>
#include <cstdint>

namespace phyr::inline v0::detail {

/// The first j >= i (i >= 1) with p[j] != p[j - 1] + 1, or n. Long runs are skipped sixteen
/// frames per step, each frame compared with what the run predicts there (its base plus its
/// distance, one load per frame) and the differences ORed branch-free, two frames per vector
/// operation where the compiler has vector types (GCC and Clang): a contiguous or
/// hugepage-backed buffer is scanned at about three instructions per page instead of one
/// compare-and-branch per page.
[[nodiscard]] inline std::size_t pfn_run_end(const std::uint64_t* p, std::size_t i,
                                             std::size_t n) noexcept {
#if defined(__GNUC__)
  if (n - i >= 16) {
    using v2 = std::uint64_t __attribute__((vector_size(16)));
    constexpr v2 k2 = {2, 2}, k4 = {4, 4}, k6 = {6, 6}, k8 = {8, 8}, k10 = {10, 10},
                 k12 = {12, 12}, k14 = {14, 14};
    // Whether q[0..16) are `want[0]` and its fifteen successors.
    auto consecutive = [](const std::uint64_t* q, v2 want) noexcept {
      v2 a[8];
      __builtin_memcpy(a, q, sizeof a);  // unaligned loads
      const v2 x = ((a[0] - want) | (a[1] - (want + k2))) |
                   ((a[2] - (want + k4)) | (a[3] - (want + k6))) |
                   ((a[4] - (want + k8)) | (a[5] - (want + k10))) |
                   ((a[6] - (want + k12)) | (a[7] - (want + k14)));
      return (x[0] | x[1]) == 0;
    };
    const std::uint64_t b = p[i - 1] + 1 - i;  // the run predicts p[j] == b + j
    const std::uint64_t* const last = p + (n - 16);  // the last start of a whole step
    const std::uint64_t* q = p + i;
    v2 want = {b + i, b + i + 1};
    constexpr v2 k16 = {16, 16};
    for (;;) {
      if (!consecutive(q, want)) break;  // the run ends in this step: the scalar loop finds where
      q += 16;
      want += k16;
      if (q > last) {
        // Fewer than 16 frames left: one more step over the last 16 (overlapping ones known
        // consecutive) settles a run that goes on to the end.
        const std::size_t j = static_cast<std::size_t>(last - p);
        if (q == p + n || consecutive(last, v2{b + j, b + j + 1})) return n;
        break;
      }
    }
    i = static_cast<std::size_t>(q - p);
  }
#else
  while (n - i >= 8) {
    std::uint64_t x = 0;
    for (std::size_t k = 0; k < 8; ++k) x |= p[i + k] - p[i + k - 1] - 1;
    if (x != 0) break;
    i += 8;
  }
#endif
  while (i < n && p[i] == p[i - 1] + 1) ++i;
  return i;
}

/// The number of runs of consecutive frames in p[0, n) (n >= 1): a run starts at every frame
/// that does not follow its predecessor, so the count is n less the frames that do. Exact for
/// any input (append_pages_fresh allocates by it). With GCC/Clang vector types, four frames per
/// step, two per vector operation: SSE2 has no 64-bit compare, so the difference is compared
/// with 1 as two 32-bit halves and the halves ANDed; a scalar loop otherwise and for the last
/// few frames.
[[nodiscard]] inline std::size_t pfn_run_count(const std::uint64_t* p, std::size_t n) noexcept {
  std::size_t i = 1;
  std::size_t follow = 0;  // frames that follow their predecessor
#if defined(__GNUC__)
  using v2 = std::uint64_t __attribute__((vector_size(16)));
  using w4 = std::uint32_t __attribute__((vector_size(16)));
  using m4 = std::int32_t __attribute__((vector_size(16)));
  using m2 = std::int64_t __attribute__((vector_size(16)));
  constexpr v2 one = {1, 1};
  // -1 in each 64-bit lane whose frame follows the one before it, else 0.
  auto follows = [](const std::uint64_t* q) noexcept {
    v2 cur, prev;
    __builtin_memcpy(&cur, q, sizeof cur);  // unaligned loads
    __builtin_memcpy(&prev, q - 1, sizeof prev);
    const m4 eq = reinterpret_cast<w4>(cur - prev) == reinterpret_cast<w4>(one);
    return reinterpret_cast<m2>(eq & __builtin_shufflevector(eq, eq, 1, 0, 3, 2));
  };
  m2 acc = {0, 0};
  for (; i + 4 <= n; i += 4) acc += follows(p + i) + follows(p + i + 2);
  follow = static_cast<std::size_t>(-(acc[0] + acc[1]));
#endif
  for (; i < n; ++i) follow += static_cast<std::size_t>(p[i] - p[i - 1] == 1);
  return n - follow;
}

}  // namespace phyr::detail
