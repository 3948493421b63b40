/// Shared inputs for phyr's benchmarks: the page-frame workloads of issue #5, the real pagemap
/// traces, a warm recycling allocator, the benchmark naming convention and the per-page
/// counters that bench/report.py reads.
///
///   const phyr_bench::input& in = phyr_bench::get_input("frag", "1GiB");
///   phyr::range_list<phyr::phys_range, phyr_bench::bench_allocator> l;
///   (void)l.try_append_pages(in.pfns, 0, in.bytes);     // in.runs entries
///   phyr_bench::set_counters(state, in, l.size(), bytes_per_page);
///
/// Naming convention (report.py pairs rows by it; keep the two in sync):
///
///   <op>/<workload>/<size>/<impl>
///
///   op        io, build, walk, blocks4k, blocks64k, map, unmap, map_iommu, unmap_iommu, memory;
///             io_paired, build_limited_paired: two sides timed in alternation (time_paired),
///             whose counters, not their own time, are the result
///   workload  frag       every 4 KiB page its own physical chunk (no two frames adjacent)
///             contig     one physically contiguous run
///             2m         2 MiB-aligned runs of 512 pages, runs not adjacent
///             1g         1 GiB-aligned runs of 262144 pages (1 GiB hugepages)
///             dio512     512-byte direct-I/O chunks at discontiguous addresses (not pages)
///             trace_4k   tests/data/pagemap/pagemap-256MiB-4k.u64  (real layout, 1556 runs)
///             trace_thp  tests/data/pagemap/pagemap-256MiB-thp.u64 (real layout, THP, 49 runs)
///   size      16MiB, 1GiB, 8GiB (bytes of data), 256MiB (the traces), 4KiB..1MiB (io), or an
///             entry count such as 1entry / 1e6entries for the O(1) identity-map check
///   impl      phyr_*       a phyr implementation (phyr_range_list, phyr_packed, phyr_identity,
///                          phyr_iommu, phyr_sg_bridge, ...)
///             scatterlist  the baseline twin (compat/scatterlist.hpp, kernel semantics)
///             memcpy       memcpy of the input (the page-frame array), the bandwidth floor;
///                          registered under op `build` and used as the floor for every op
///
/// Counters (on every benchmark): ns_per_page (CPU ns per 4 KiB of data), pages (4 KiB pages of
/// data per iteration), entries (entries of the result), bytes_per_page (bytes of the structure the
/// benchmark built or read, per page); `memory` rows add cpu_bytes_per_page, dma_bytes_per_page and
/// total_bytes_per_page.
///
/// Both phyr and the baseline allocate through `bench_allocator`, a recycling heap that keeps
/// freed blocks, as the kernel's slab caches do: without it, glibc returns freed memory to
/// the OS between iterations and both sides would be timed mostly on page faults.
#pragma once

#include <benchmark/benchmark.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>
#include <new>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "phyr/compat/scatterlist.hpp"
#include "phyr/core/allocator.hpp"
#include "phyr/core/range.hpp"

// The committed traces (tests/data/pagemap/); bench/CMakeLists.txt passes the directory and
// the top-level CMakeLists.txt refuses to configure without them.
#ifndef PHYR_PAGEMAP_TRACE_DIR
#  error "phyr bench: build through CMake, which defines PHYR_PAGEMAP_TRACE_DIR"
#endif

namespace phyr_bench {

inline constexpr std::uint64_t page_size = 4096;
inline constexpr std::uint64_t kib = 1024;
inline constexpr std::uint64_t mib = 1024 * kib;
inline constexpr std::uint64_t gib = 1024 * mib;

// ---- allocation ------------------------------------------------------------------------------

/// Calls to the global operator new (every form) since the process started: phyr_bench replaces
/// operator new (bench/main.cpp) to count them, so a benchmark can report heap allocations per
/// operation. Exact on the single benchmark thread.
[[nodiscard]] std::uint64_t operator_new_calls() noexcept;

/// A process-wide heap that never gives memory back: freed blocks go on a free list per
/// (size, alignment) and are handed out again. New blocks are carved from 32 MiB arenas
/// backed by transparent huge pages where the kernel allows (madvise): the kernel's own
/// allocations live in its direct map, mapped with 2 MiB / 1 GiB pages, so giving both the
/// phyr structures and the scatterlist 4 KiB-page memory would charge them TLB misses the
/// kernel never pays, and make results depend on where the C heap happened to put blocks.
/// Single-threaded, like the benchmarks. It also counts the bytes held by live blocks, which
/// is how `memory` rows measure a structure.
class recycling_heap {
 public:
  [[nodiscard]] void* allocate(std::size_t n, std::size_t align) noexcept {
    ++allocations_;
    if (n < sizeof(node)) n = sizeof(node);
    if (align < alignof(node)) align = alignof(node);
    bucket* b = fresh_ != 0 ? nullptr : find(n, align);
    if (b != nullptr && b->head != nullptr) {
      node* p = b->head;
      b->head = p->next;
      live_bytes_ += static_cast<std::int64_t>(n);
      return p;
    }
    void* p = carve(n, align);
    if (p != nullptr) live_bytes_ += static_cast<std::int64_t>(n);
    return p;
  }
  void deallocate(void* p, std::size_t n, std::size_t align) noexcept {
    if (n < sizeof(node)) n = sizeof(node);
    if (align < alignof(node)) align = alignof(node);
    live_bytes_ -= static_cast<std::int64_t>(n);
    bucket* b = find(n, align);
    if (b == nullptr && count_ < max_buckets) {
      b = &buckets_[count_++];
      b->size = n;
      b->align = align;
    }
    if (b == nullptr) return;  // more distinct sizes than buckets: the block is dropped
    node* q = static_cast<node*>(p);
    q->next = b->head;
    b->head = q;
  }
  /// Bytes in blocks handed out and not yet returned.
  [[nodiscard]] std::int64_t live_bytes() const noexcept { return live_bytes_; }
  /// allocate() calls so far: the heap allocations of every structure built on bench_allocator
  /// (the kernel model's kmalloc calls on the scatterlist side).
  [[nodiscard]] std::uint64_t allocations() const noexcept { return allocations_; }

  /// While a `fresh_memory` scope is open, blocks come from untouched arena memory in address
  /// order instead of the free lists (whose order depends on what ran before). Structures
  /// built once and then read by many benchmarks use it, so a walk's speed does not depend on
  /// how scattered recycled blocks happened to be.
  void begin_fresh() noexcept { ++fresh_; }
  void end_fresh() noexcept { --fresh_; }

  static recycling_heap& instance() noexcept {
    static recycling_heap h;
    return h;
  }

 private:
  struct node {
    node* next;
  };
  struct bucket {
    std::size_t size = 0;
    std::size_t align = 0;
    node* head = nullptr;
  };
  static constexpr std::size_t max_buckets = 512;
  static constexpr std::size_t arena_bytes = 32u << 20;
  static constexpr std::size_t huge_page = 2u << 20;

  [[nodiscard]] bucket* find(std::size_t n, std::size_t align) noexcept {
    // One-entry cache: a build asks for the same segment size over and over.
    if (last_ != nullptr && last_->size == n && last_->align == align) return last_;
    for (std::size_t i = 0; i < count_; ++i) {
      if (buckets_[i].size == n && buckets_[i].align == align) return last_ = &buckets_[i];
    }
    return nullptr;
  }

  [[nodiscard]] static void* map_huge(std::size_t bytes) noexcept {
    void* p = std::aligned_alloc(huge_page, (bytes + huge_page - 1) / huge_page * huge_page);
    if (p != nullptr) (void)madvise(p, bytes, MADV_HUGEPAGE);  // a hint; 4 KiB pages if refused
    return p;
  }

  [[nodiscard]] void* carve(std::size_t n, std::size_t align) noexcept {
    if (n > arena_bytes / 4 || align > huge_page) {
      return ::operator new (n, std::align_val_t{align}, std::nothrow);
    }
    std::uintptr_t at = (cur_ + align - 1) & ~(static_cast<std::uintptr_t>(align) - 1);
    if (cur_ == 0 || at + n > end_) {
      void* a = map_huge(arena_bytes);
      if (a == nullptr) return ::operator new (n, std::align_val_t{align}, std::nothrow);
      cur_ = reinterpret_cast<std::uintptr_t>(a);
      end_ = cur_ + arena_bytes;
      at = (cur_ + align - 1) & ~(static_cast<std::uintptr_t>(align) - 1);
    }
    cur_ = at + n;
    return reinterpret_cast<void*>(at);
  }

  bucket buckets_[max_buckets];
  std::size_t count_ = 0;
  bucket* last_ = nullptr;
  std::uintptr_t cur_ = 0;  // next free byte of the current arena
  std::uintptr_t end_ = 0;
  std::int64_t live_bytes_ = 0;
  std::uint64_t allocations_ = 0;
  int fresh_ = 0;
};

/// RAII: allocations in this scope take fresh, address-ordered memory (see begin_fresh).
class fresh_memory {
 public:
  fresh_memory() noexcept { recycling_heap::instance().begin_fresh(); }
  ~fresh_memory() { recycling_heap::instance().end_fresh(); }
  fresh_memory(const fresh_memory&) = delete;
  fresh_memory& operator=(const fresh_memory&) = delete;
};

/// The `segment_allocator` every benchmarked structure uses, phyr and baseline alike.
struct bench_allocator {
  [[nodiscard]] void* allocate(std::size_t n, std::size_t align) noexcept {
    return recycling_heap::instance().allocate(n, align);
  }
  void deallocate(void* p, std::size_t n, std::size_t align) noexcept {
    recycling_heap::instance().deallocate(p, n, align);
  }
  friend constexpr bool operator==(bench_allocator, bench_allocator) noexcept { return true; }
};
static_assert(phyr::segment_allocator<bench_allocator>);

// ---- inputs ----------------------------------------------------------------------------------

/// One workload at one size. Page workloads fill `pfns` and `pages` (the same frames as the
/// kernel builder's `struct page*` input); dio512 fills `chunks`.
struct input {
  std::string workload;
  std::string size;
  std::vector<std::uint64_t> pfns;
  std::vector<phyr::compat::page*> pages;
  std::vector<phyr::phys_range> chunks;
  std::uint64_t bytes = 0;       ///< bytes of data
  std::uint64_t runs = 0;        ///< physically contiguous runs: phyr's entry count
  std::uint64_t sg_entries = 0;  ///< entries sg_alloc_table_from_pages_segment(UINT_MAX) makes
  bool present = true;           ///< false when a trace file is unreadable (a broken checkout)

  [[nodiscard]] bool is_pages() const noexcept { return !pfns.empty(); }
  /// 4 KiB pages of data (the unit of every per-page counter, also for dio512).
  [[nodiscard]] double pages_of_data() const noexcept {
    return static_cast<double>(bytes) / static_cast<double>(page_size);
  }
  /// Bytes of the raw input (what the memcpy floor copies).
  [[nodiscard]] std::size_t input_bytes() const noexcept {
    return is_pages() ? pfns.size() * sizeof(std::uint64_t)
                      : chunks.size() * sizeof(phyr::phys_range);
  }
};

/// The kernel builder with max_segment = UINT_MAX (what sg_alloc_table_from_pages passes)
/// aligns it down to whole pages: 0xfffff000 bytes, so a run is cut every 1048575 pages.
inline constexpr std::uint64_t sg_max_segment_pages = 0xfffff000ull / page_size;

namespace detail {

/// A bijection of [0, n): i -> (i * m) mod n with m coprime to n. Scatters runs over the
/// physical space deterministically, so fragmented inputs are not a sorted staircase.
class scatter {
 public:
  explicit scatter(std::uint64_t n) noexcept : n_(n == 0 ? 1 : n) {
    if (n_ >= (std::uint64_t{1} << 32)) std::abort();  // inputs here stay far below
    m_ = 0x9e3779b97f4a7c15ull % n_;
    if (m_ == 0) m_ = 1;
    while (std::gcd(m_, n_) != 1) ++m_;
  }
  [[nodiscard]] std::uint64_t operator()(std::uint64_t i) const noexcept {
    return (i * m_) % n_;  // i, m < n < 2^32: the product fits 64 bits
  }

 private:
  std::uint64_t n_;
  std::uint64_t m_ = 1;
};

/// Counts runs of consecutive frames and the entries the kernel builder makes: computed here,
/// independently of phyr and of compat/, so each benchmark can check its result against it.
inline void count_runs(input& in) noexcept {
  in.runs = 0;
  in.sg_entries = 0;
  std::uint64_t run = 0;
  for (std::size_t i = 0; i < in.pfns.size(); ++i) {
    if (i != 0 && in.pfns[i] == in.pfns[i - 1] + 1) {
      ++run;
      continue;
    }
    if (run != 0) {
      ++in.runs;
      in.sg_entries += (run + sg_max_segment_pages - 1) / sg_max_segment_pages;
    }
    run = 1;
  }
  if (run != 0) {
    ++in.runs;
    in.sg_entries += (run + sg_max_segment_pages - 1) / sg_max_segment_pages;
  }
}

/// `n` pages in runs of `run_pages` (the last may be short), run r at a `run_pages`-aligned
/// frame chosen by a scatter over twice as many slots, so no two runs ever touch.
inline void fill_runs(input& in, std::uint64_t n, std::uint64_t run_pages) {
  constexpr std::uint64_t base_pfn = gib / page_size;  // 1 GiB: aligned for every run size
  const std::uint64_t n_runs = (n + run_pages - 1) / run_pages;
  const scatter perm(n_runs);
  in.pfns.resize(n);
  for (std::uint64_t r = 0; r < n_runs; ++r) {
    const std::uint64_t start = base_pfn + 2 * perm(r) * run_pages;
    const std::uint64_t first = r * run_pages;
    const std::uint64_t count = n - first < run_pages ? n - first : run_pages;
    for (std::uint64_t k = 0; k < count; ++k) in.pfns[first + k] = start + k;
  }
}

inline void make_pages(input& in) {
  in.pages.resize(in.pfns.size());
  for (std::size_t i = 0; i < in.pfns.size(); ++i)
    in.pages[i] = phyr::compat::pfn_to_page(in.pfns[i]);
  in.bytes = in.pfns.size() * page_size;
  count_runs(in);
}

/// Little-endian u64 frames, as in tests/data/pagemap/README.md. Empty when unreadable.
inline std::vector<std::uint64_t> read_trace(const std::string& path) {
  std::vector<std::uint64_t> out;
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return out;
  unsigned char b[8];
  while (std::fread(b, 1, 8, f) == 8) {
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | b[i];
    out.push_back(v);
  }
  std::fclose(f);
  return out;
}

}  // namespace detail

/// The trace file of a trace workload, or "" for a synthetic one.
inline std::string trace_path(const std::string& workload) {
  if (workload == "trace_4k") return PHYR_PAGEMAP_TRACE_DIR "/pagemap-256MiB-4k.u64";
  if (workload == "trace_thp") return PHYR_PAGEMAP_TRACE_DIR "/pagemap-256MiB-thp.u64";
  return {};
}

/// What a benchmark reports when its trace cannot be read (only a broken checkout does that).
inline constexpr const char* trace_missing =
    "trace file unreadable: tests/data/pagemap/ is part of the repository";

/// Bytes of data named by a size token ("16MiB", "1GiB", "8GiB", "4KiB"); 0 if not a size.
inline std::uint64_t size_bytes(const std::string& s) {
  char* end = nullptr;
  const unsigned long long v = std::strtoull(s.c_str(), &end, 10);
  const std::string unit = end;
  if (unit == "KiB") return v * kib;
  if (unit == "MiB") return v * mib;
  if (unit == "GiB") return v * gib;
  return 0;
}

/// Builds (once, then cached for the life of the process) the input of a workload at a size.
/// Sizes are byte sizes, or "<n>entries" / "1entry" for a fragmented list of n pages.
inline const input& get_input(const std::string& workload, const std::string& size) {
  static std::map<std::pair<std::string, std::string>, std::unique_ptr<input>> cache;
  auto& slot = cache[{workload, size}];
  if (slot) return *slot;
  slot = std::make_unique<input>();
  input& in = *slot;
  in.workload = workload;
  in.size = size;

  std::uint64_t bytes = size_bytes(size);
  if (size == "1entry") bytes = page_size;
  if (size == "1e6entries") bytes = 1000000 * page_size;
  const std::uint64_t n = bytes / page_size;

  if (workload == "frag") {
    detail::fill_runs(in, n, 1);
  } else if (workload == "contig") {
    detail::fill_runs(in, n, n);
  } else if (workload == "2m") {
    detail::fill_runs(in, n, 2 * mib / page_size);
  } else if (workload == "1g") {
    detail::fill_runs(in, n, gib / page_size);
  } else if (workload == "dio512") {
    // 512-byte sectors, each in its own 1 KiB slot of a scattered layout: never adjacent.
    const std::uint64_t count = bytes / 512;
    const detail::scatter perm(count);
    in.chunks.reserve(count);
    for (std::uint64_t k = 0; k < count; ++k) {
      in.chunks.emplace_back(phyr::phys_addr{gib + perm(k) * 1024}, 512);
    }
    in.bytes = bytes;
    in.runs = count;
    in.sg_entries = count;
    return in;
  } else if (workload == "trace_4k" || workload == "trace_thp") {
    in.pfns = detail::read_trace(trace_path(workload));
    if (in.pfns.empty()) {
      in.present = false;
      return in;
    }
  }
  detail::make_pages(in);
  return in;
}

// ---- names, settings, counters ---------------------------------------------------------------

[[nodiscard]] inline std::string bench_name(const std::string& op, const std::string& workload,
                                            const std::string& size, const std::string& impl) {
  return op + "/" + workload + "/" + size + "/" + impl;
}

/// How long the suite runs, from the environment:
///   quick     PHYR_BENCH_QUICK=1: every benchmark once, one short repetition (CI's check that
///             the README's bench command works; the numbers are indicative only)
///   standard  (default) 3 repetitions of >= 0.05 s each, the median reported: minutes on 2 cores
///   full      PHYR_BENCH_FULL=1: 7 repetitions of >= 0.5 s, for publication-grade numbers
enum class run_mode { quick, standard, full };

[[nodiscard]] inline bool env_flag(const char* name) noexcept {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' && std::strcmp(v, "0") != 0;
}

[[nodiscard]] inline run_mode mode() noexcept {
  if (env_flag("PHYR_BENCH_QUICK")) return run_mode::quick;
  if (env_flag("PHYR_BENCH_FULL")) return run_mode::full;
  return run_mode::standard;
}

[[nodiscard]] inline const char* mode_name() noexcept {
  switch (mode()) {
    case run_mode::quick:
      return "quick";
    case run_mode::full:
      return "full";
    default:
      return "standard";
  }
}

/// A benchmark's minimum time: `standard` seconds, or the quick/full mode's own.
[[nodiscard]] inline double min_time(double standard) noexcept {
  switch (mode()) {
    case run_mode::quick:
      return 0.001;
    case run_mode::full:
      return standard > 0.5 ? standard : 0.5;
    default:
      return standard;
  }
}

/// Run settings for the comparison suite (see run_mode). `once`: a single iteration and no
/// repetitions (measurements that do not time anything).
inline void apply_settings(benchmark::internal::Benchmark* b, bool once = false) {
  b->Unit(benchmark::kMicrosecond);
  if (once) {
    b->Iterations(1)->Repetitions(1);
    return;
  }
  b->MinTime(min_time(0.05));
  switch (mode()) {
    case run_mode::quick:
      b->Repetitions(1);
      break;
    case run_mode::full:
      b->Repetitions(7);
      break;
    default:
      b->Repetitions(3);
      break;
  }
  b->DisplayAggregatesOnly(true);
}

/// Process CPU time in ns, the clock Google Benchmark's CPU column uses.
[[nodiscard]] inline std::int64_t cpu_now_ns() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

/// Brackets a benchmark's timed loop with the CPU clock, for the ns_per_page counter.
/// (Google Benchmark's own inverted rate counters print as seconds on the console, which
/// reads wrong for a per-page figure; report.py recomputes ns/page from cpu_time anyway.)
class cpu_stopwatch {
 public:
  cpu_stopwatch() noexcept : start_(cpu_now_ns()) {}
  /// Call right after the timed loop; later work (checks) is then not counted.
  void stop() noexcept {
    if (running_) elapsed_ += cpu_now_ns() - start_;
    running_ = false;
  }
  /// Untimed work inside the loop: pauses this watch and the benchmark's timer together.
  void pause(benchmark::State& state) noexcept {
    state.PauseTiming();
    stop();
  }
  void resume(benchmark::State& state) noexcept {
    start_ = cpu_now_ns();
    running_ = true;
    state.ResumeTiming();
  }
  [[nodiscard]] double elapsed_ns() const noexcept {
    return static_cast<double>(elapsed_ + (running_ ? cpu_now_ns() - start_ : 0));
  }

 private:
  std::int64_t start_;
  std::int64_t elapsed_ = 0;
  bool running_ = true;
};

/// Two ways of doing one job timed in alternation, for their ratio (the `paired` rows of
/// io_bench.cpp and limits_bench.cpp). On a shared VM one benchmark row can run 10-50% slower
/// than the next as the host's load comes and goes, so a ratio of two rows timed seconds apart
/// carries that swing; here each pair is a batch of `a()` calls and a batch of as many `b()`
/// calls back to back (the order swapped every pair, so neither side always goes first), and
/// the ratio is the median of the pairs' ratios. `a` and `b` return whether their call gave the
/// right answer; a wrong answer from either fails the whole measurement (`ok` false).
///
///   const paired_times t = time_paired([&] { return phyr_way(); }, [&] { return sg_way(); });
///   if (t.ok) state.counters["speedup"] = t.b_over_a;
struct paired_times {
  double a_ns = 0;      ///< median CPU ns per call of `a` over the pairs
  double b_ns = 0;      ///< median CPU ns per call of `b`
  double b_over_a = 0;  ///< median over the pairs of b's batch time / a's batch time
  std::uint64_t calls_per_batch = 0;
  bool ok = false;
};

/// The median of a non-empty vector of an odd number of values (reorders it).
[[nodiscard]] inline double median_of(std::vector<double>& v) {
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
  return v[v.size() / 2];
}

/// `pairs` is made odd, so the median ratio is one pair's. A batch lasts about `batch_ns` (at
/// least one call of each side): long enough that the clock's own cost (a system call) is under
/// 1% of it, short enough that the machine rarely changes pace inside a pair.
template <class A, class B>
[[nodiscard]] paired_times time_paired(A&& a, B&& b, int pairs = 21,
                                       std::int64_t batch_ns = 200'000) {
  paired_times out;
  const auto batch = [](auto& f, std::uint64_t n, bool& ok) {
    const std::int64_t t0 = cpu_now_ns();
    for (std::uint64_t i = 0; i < n; ++i) ok = f() && ok;
    return static_cast<double>(cpu_now_ns() - t0);
  };
  bool ok = true;
  std::uint64_t n = 1;
  while (ok && n < (std::uint64_t{1} << 24)) {  // calls per batch, from both sides together
    const double t = batch(a, n, ok) + batch(b, n, ok);
    if (t >= 2 * static_cast<double>(batch_ns)) break;
    n *= 2;
  }
  std::vector<double> ta, tb, r;
  for (int p = 0; ok && p < (pairs | 1); ++p) {
    double x, y;
    if (p % 2 == 0) {
      x = batch(a, n, ok);
      y = batch(b, n, ok);
    } else {
      y = batch(b, n, ok);
      x = batch(a, n, ok);
    }
    ta.push_back(x / static_cast<double>(n));
    tb.push_back(y / static_cast<double>(n));
    r.push_back(x > 0 ? y / x : 0);
  }
  if (!ok || r.empty()) return out;
  out.a_ns = median_of(ta);
  out.b_ns = median_of(tb);
  out.b_over_a = median_of(r);
  out.calls_per_batch = n;
  out.ok = out.b_over_a > 0;
  return out;
}

/// Settings of a `paired` row: one call of the benchmark function per repetition (the call is
/// a whole time_paired measurement; its counters are the result, its own time is not).
inline void apply_paired_settings(benchmark::internal::Benchmark* b) {
  b->Unit(benchmark::kMillisecond)->Iterations(1);
  b->Repetitions(mode() == run_mode::quick ? 1 : mode() == run_mode::full ? 7 : 3);
  b->DisplayAggregatesOnly(true);
}

/// One map and one unmap per iteration with only one of them timed: `map()` when `time_unmap`
/// is false, `unmap(mapping)` when it is true (the other runs with the timer paused). `unmap`
/// gets what `map` returned, failed or not, and checks it.
template <class Map, class Unmap>
void time_map_or_unmap(benchmark::State& state, cpu_stopwatch& watch, bool time_unmap, Map map,
                       Unmap unmap) {
  for (auto _ : state) {
    if (time_unmap) watch.pause(state);
    auto mp = map();
    if (time_unmap) {
      watch.resume(state);
    } else {
      benchmark::DoNotOptimize(mp);
      watch.pause(state);
    }
    unmap(mp);
    if (!time_unmap) watch.resume(state);
    benchmark::ClobberMemory();
  }
}

/// The counters every benchmark carries. `cpu_ns`: CPU time of the whole timed loop.
inline void set_counters(benchmark::State& state, double cpu_ns, double pages, double entries,
                         double bytes_per_page) {
  using benchmark::Counter;
  const double iters = static_cast<double>(state.iterations());
  state.counters["ns_per_page"] = Counter(iters > 0 && pages > 0 ? cpu_ns / (iters * pages) : 0);
  state.counters["pages"] = Counter(pages);
  state.counters["entries"] = Counter(entries);
  state.counters["bytes_per_page"] = Counter(bytes_per_page);
}
inline void set_counters(benchmark::State& state, const cpu_stopwatch& w, const input& in,
                         double entries, double bytes_per_page) {
  set_counters(state, w.elapsed_ns(), in.pages_of_data(), entries, bytes_per_page);
}

/// Stops a benchmark whose result is wrong, so a broken build cannot look fast.
/// Returns false (the caller returns) when `ok` is false.
inline bool check(benchmark::State& state, bool ok, const char* what) {
  if (!ok) state.SkipWithError(what);
  return ok;
}

}  // namespace phyr_bench
