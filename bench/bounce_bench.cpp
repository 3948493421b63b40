// Issue 15's benchmarks: planning and splitting with the complete constraints, and the bounce
// mapper's cost per I/O.
//
//   plan_split/frag4k_1GiB/legacy       try_validate and split_view as they were before issue
//                                       15 (verbatim copies, below), default limits: "today"
//   plan_split/frag4k_1GiB/current      try_plan_split + a split() walk, same limits
//   plan_split/frag4k_1GiB/all_limits   the same with every new limit set (segment count, total,
//                                       two excluded windows, a 512-byte transfer unit)
//   plan_split/frag4k_1GiB/merge        all limits and merge_policy::merge_contiguous
//   bounce/64KiB/<n>_of_16_pages        bounce_mapper map + sync_for_cpu + unmap of a 64 KiB
//                                       from_device I/O with n of its 16 pages above a 32-bit
//                                       mask (0, 1, 16), over an identity mapper
//
// The 1 GiB list is 262144 separate 4 KiB pages (every other frame), the worst case for a
// per-entry planner. Each plan_split row checks the segment count it computed against the
// expected one and sums the segment lengths of the walk, so a wrong answer cannot look fast.
// Counters: ns_per_entry (plan_split), ns_per_io and bytes_copied per I/O (bounce).
#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "phyr/container/range_list.hpp"
#include "phyr/core/accessor.hpp"
#include "phyr/device/split.hpp"
#include "phyr/map/bounce_mapper.hpp"
#include "phyr/map/identity_mapper.hpp"

namespace {

using phyr::phys_addr;
using phyr::phys_range;

constexpr std::uint64_t one_gib = std::uint64_t{1} << 30;

const phyr::range_list<phys_range>& fragmented_gib() {
  static const phyr::range_list<phys_range> l = [] {
    phyr::range_list<phys_range> x;
    for (std::uint64_t i = 0; i < one_gib / phyr::page_size; ++i)
      (void)x.try_append(phys_range{phys_addr{0x100000000 + 2 * i * phyr::page_size},
                                    phyr::page_size});
    return x;
  }();
  return l;
}

// ---- the "today" baseline: try_validate and split as they were before issue 15 ---------------
namespace legacy {

struct stats {
  std::uint64_t entries = 0, segments = 0, bytes = 0, gaps = 0;
};

template <class L>
bool try_validate(const L& list, const phyr::dma_constraints& c, stats& s) noexcept {
  const std::uint64_t limit = c.max_segment_size & ~(c.alignment - 1);
  const std::uint64_t amask = c.alignment - 1;
  const std::uint64_t vmask = c.virt_boundary_mask;
  std::uint64_t prev_last = 0;
  for (const phys_range r : list) {
    const std::uint64_t a = r.addr().value();
    const std::uint64_t len = r.len();
    if (len == 0) return false;
    const std::uint64_t last = r.last().value();
    if (last > c.dma_mask) return false;
    if ((a & amask) != 0) return false;
    if (len > ~s.bytes) return false;
    if (s.entries != 0 && vmask != 0) {
      const std::uint64_t prev_end = prev_last + 1;
      const bool gap = prev_last == ~std::uint64_t{0} || a != prev_end;
      if (gap && ((prev_end | a) & vmask) != 0) return false;
    }
    s.segments += phyr::detail::segments_in(a, len, limit, c.segment_boundary_mask);
    s.bytes += len;
    ++s.entries;
    prev_last = last;
  }
  return s.entries != 0;
}

// The split view as it was (device/split.hpp before issue 15), verbatim but for the names.
template <class It>
class split_view_v1 {
 public:
  using range_type = std::remove_cvref_t<decltype(*std::declval<const It&>())>;
  using space_type = typename range_type::space_type;
  static_assert(phyr::any_range<range_type>);

  class iterator {
   public:
    using iterator_concept = std::forward_iterator_tag;
    using iterator_category = std::input_iterator_tag;  // reference is a value
    using value_type = range_type;
    using reference = range_type;
    using difference_type = std::ptrdiff_t;

    constexpr iterator() noexcept = default;

    [[nodiscard]] constexpr range_type operator*() const noexcept {
      return range_type{phyr::address<space_type>{pos_}, piece_, flags_};
    }
    constexpr iterator& operator++() noexcept {
      left_ -= piece_;
      if (left_ != 0) {
        pos_ += piece_;
        piece_ = cut(pos_, left_);
      } else {
        ++src_;
        load();
      }
      return *this;
    }
    constexpr iterator operator++(int) noexcept {
      iterator t = *this;
      ++*this;
      return t;
    }
    /// Same entry and same bytes left in it: the same segment.
    friend constexpr bool operator==(const iterator& a, const iterator& b) noexcept {
      return a.left_ == b.left_ && a.src_ == b.src_;
    }

   private:
    friend class split_view_v1;
    constexpr iterator(It src, It end, std::uint64_t limit, std::uint64_t mask) noexcept
        : src_(src), end_(end), limit_(limit), mask_(mask) {
      load();
    }

    // Zero-length entries (possible in a span the caller never validated) are skipped, so a
    // piece is never empty and the loop always advances.
    constexpr void load() noexcept {
      for (; src_ != end_; ++src_) {
        const range_type r = *src_;
        if (r.len() == 0) continue;
        pos_ = r.addr().value();
        left_ = r.len();
        flags_ = r.flags();
        piece_ = cut(pos_, left_);
        return;
      }
      left_ = 0;
      piece_ = 0;
    }
    [[nodiscard]] constexpr std::uint64_t cut(std::uint64_t a, std::uint64_t left) const noexcept {
      std::uint64_t n = left < limit_ ? left : limit_;
      const std::uint64_t room_m1 = phyr::detail::boundary_room_m1(a, mask_);
      if (n - 1 > room_m1) n = room_m1 + 1;
      return n;
    }

    It src_{};
    It end_{};
    std::uint64_t pos_ = 0;    // start of the current segment
    std::uint64_t left_ = 0;   // bytes from pos_ to the end of the current entry; 0 at the end
    std::uint64_t piece_ = 0;  // length of the current segment
    std::uint64_t limit_ = 1;
    std::uint64_t mask_ = ~std::uint64_t{0};
    phyr::range_flags flags_ = phyr::range_flags::none;
  };
  using const_iterator = iterator;

  constexpr split_view_v1() noexcept = default;
  constexpr split_view_v1(It first, It last, const phyr::dma_constraints& c) noexcept
      : first_(first), last_(last), limit_(c.segment_limit()), mask_(c.segment_boundary_mask) {}

  [[nodiscard]] constexpr iterator begin() const noexcept {
    return iterator{first_, last_, limit_, mask_};
  }
  [[nodiscard]] constexpr iterator end() const noexcept {
    return iterator{last_, last_, limit_, mask_};
  }
  /// True when no segment would be yielded. O(entries) in the worst case (skips zero-length
  /// entries), O(1) for validated input.
  [[nodiscard]] constexpr bool empty() const noexcept { return begin() == end(); }

 private:
  It first_{};
  It last_{};
  std::uint64_t limit_ = 1;
  std::uint64_t mask_ = ~std::uint64_t{0};
};


template <class L>
std::uint64_t split_sum(const L& list, const phyr::dma_constraints& c) noexcept {
  std::uint64_t sum = 0;
  for (const phys_range seg : split_view_v1<decltype(list.begin())>{list.begin(), list.end(), c})
    sum += seg.len();
  return sum;
}

}  // namespace legacy

phyr::dma_constraints all_limits() {
  phyr::dma_constraints c{.max_segments = 1u << 20,
                          .max_total_bytes = 2 * one_gib,
                          .min_transfer_unit = 512};
  (void)c.excluded.try_add({0xa0000, 0x60000});
  (void)c.excluded.try_add({0xfec00000, 0x1400000});
  return c;
}

// The limits as a driver has them: values read at run time, not constants the compiler can fold
// into the loop (every row gets them this way, so the comparison is fair).
phyr::dma_constraints at_run_time(phyr::dma_constraints c) {
  benchmark::DoNotOptimize(&c);
  benchmark::ClobberMemory();
  return c;
}

void report(benchmark::State& state, std::uint64_t entries) {
  state.counters["ns_per_entry"] = benchmark::Counter(
      static_cast<double>(entries), benchmark::Counter::kIsIterationInvariantRate |
                                        benchmark::Counter::kInvert);
  state.counters["entries"] = static_cast<double>(entries);
}

void plan_split_legacy(benchmark::State& state) {
  const auto& l = fragmented_gib();
  const phyr::dma_constraints c = at_run_time({});
  for (auto _ : state) {
    legacy::stats s;
    if (!legacy::try_validate(l, c, s) || s.segments != l.size()) state.SkipWithError("wrong");
    const std::uint64_t sum = legacy::split_sum(l, c);
    if (sum != one_gib) state.SkipWithError("wrong sum");
    benchmark::DoNotOptimize(sum);
  }
  report(state, l.size());
}

// One instantiation per merge policy, as a driver would write it: the policy is a compile-time
// choice of split(), and a runtime switch here would put both loops in one function.
template <phyr::merge_policy Merge>
void plan_split_with(benchmark::State& state, const phyr::dma_constraints& limits) {
  const auto& l = fragmented_gib();
  const phyr::dma_constraints c = at_run_time(limits);
  const auto ok = phyr::must(phyr::checked_constraints::create(c));
  for (auto _ : state) {
    auto s = phyr::try_plan_split(l, c, {.merge = Merge});
    if (!s || s->segments != l.size()) state.SkipWithError("wrong");
    std::uint64_t sum = 0;
    for (const phys_range seg : phyr::split<Merge>(l, ok)) sum += seg.len();
    if (sum != one_gib) state.SkipWithError("wrong sum");
    benchmark::DoNotOptimize(sum);
  }
  report(state, l.size());
}

void plan_split_current(benchmark::State& state) {
  plan_split_with<phyr::merge_policy::keep_entries>(state, phyr::dma_constraints{});
}
void plan_split_all_limits(benchmark::State& state) {
  plan_split_with<phyr::merge_policy::keep_entries>(state, all_limits());
}
void plan_split_merge(benchmark::State& state) {
  plan_split_with<phyr::merge_policy::merge_contiguous>(state, all_limits());
}

// ---- bounce ------------------------------------------------------------------------------------

struct dev32 {};
constexpr std::uint64_t io_bytes = 64 * 1024;
constexpr std::uint64_t ram_base = 0xfff00000;  // 1 MiB below 4 GiB, 1 MiB above
constexpr std::uint64_t pool_base = 0x01000000;

void bounce_io(benchmark::State& state) {
  const auto bounced_pages = static_cast<std::uint64_t>(state.range(0));
  static std::vector<std::byte> ram(2 << 20), low(32 * phyr::page_size);
  const phyr::phys_accessor ram_acc{ram.data(), phys_addr{ram_base}, ram.size()};
  const phyr::phys_accessor pool_acc{low.data(), phys_addr{pool_base}, low.size()};
  phyr::range_list<phys_range> pool_mem;
  (void)pool_mem.try_append(phys_range{phys_addr{pool_base}, low.size()});
  auto pool = phyr::must(phyr::bounce_pool<>::create(pool_mem, pool_acc));
  auto inner = phyr::must(phyr::identity_mapper<dev32>::create(32));
  auto bm = phyr::must(phyr::bounce_mapper<phyr::identity_mapper<dev32>>::create(
      inner, pool, ram_acc, {.dma_mask = 0xffffffff}));
  // 16 pages ending at 4 GiB + bounced_pages pages: the last `bounced_pages` are above.
  phyr::range_list<phys_range> io;
  (void)io.try_append(phys_range{
      phys_addr{0x100000000 - (16 - bounced_pages) * phyr::page_size}, io_bytes});
  std::uint64_t copied_before = pool.stats().bytes_copied;
  for (auto _ : state) {
    auto mp = bm.try_map(io, phyr::dma_direction::from_device);
    if (!mp) {
      state.SkipWithError("map failed");
      break;
    }
    if (!bm.try_sync_for_cpu(*mp)) state.SkipWithError("sync failed");
    if (!bm.try_unmap(std::move(*mp))) state.SkipWithError("unmap failed");
  }
  const double per_io =
      static_cast<double>(pool.stats().bytes_copied - copied_before) /
      static_cast<double>(state.iterations() == 0 ? 1 : state.iterations());
  state.counters["bytes_copied"] = per_io;
  state.counters["ns_per_io"] = benchmark::Counter(
      1, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

}  // namespace

BENCHMARK(plan_split_legacy)->Name("plan_split/frag4k_1GiB/legacy")->Unit(benchmark::kMillisecond);
BENCHMARK(plan_split_current)->Name("plan_split/frag4k_1GiB/current")->Unit(benchmark::kMillisecond);
BENCHMARK(plan_split_all_limits)
    ->Name("plan_split/frag4k_1GiB/all_limits")
    ->Unit(benchmark::kMillisecond);
BENCHMARK(plan_split_merge)->Name("plan_split/frag4k_1GiB/merge")->Unit(benchmark::kMillisecond);
BENCHMARK(bounce_io)->Name("bounce/64KiB/0_of_16_pages")->Arg(0);
BENCHMARK(bounce_io)->Name("bounce/64KiB/1_of_16_pages")->Arg(1);
BENCHMARK(bounce_io)->Name("bounce/64KiB/16_of_16_pages")->Arg(16);
