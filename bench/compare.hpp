/// What the comparison benchmarks (build_bench.cpp, walk_bench.cpp, blocks_bench.cpp,
/// map_bench.cpp, memory_bench.cpp, io_bench.cpp) share: the list types, one builder and one
/// checker per side on the same input, the structures built once and read by many benchmarks,
/// and registration with the memcpy floor. Every phyr benchmark has a `scatterlist` twin on the
/// same input in the same process; names and counters follow bench/workloads.hpp, and
/// bench/report.py turns the JSON into the comparison.
///
///   const input& in = get_input("frag", "1GiB");
///   const cpu_list* l = shared_list(in);               // built once, checked, then shared
///   register_compare("walk", "frag", "1GiB", "phyr_range_list", bm_walk_range_list);
///
/// The baseline side follows the kernel's code paths: compat/scatterlist.hpp (Linux 6.1's
/// lib/scatterlist.c and dma-direct) and the kernel models in bench/baseline/.
#pragma once

#include <benchmark/benchmark.h>

#include <climits>
#include <cstdint>
#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "phyr/compat/scatterlist.hpp"
#include "phyr/container/range_list.hpp"
#include "phyr/core/range.hpp"
#include "phyr/packed/packed_list.hpp"
#include "workloads.hpp"

namespace phyr_bench {

namespace sg = phyr::compat;

using cpu_list = phyr::range_list<phyr::phys_range, bench_allocator>;
using packed = phyr::packed_list<phyr::cpu_phys, bench_allocator>;

/// The bus every benchmark's DMA addresses belong to.
struct bench_bus {};

// ---- one builder and one checker per side ----------------------------------------------------

[[nodiscard]] inline bool build_list(cpu_list& l, const input& in) noexcept {
  if (in.is_pages()) return static_cast<bool>(l.try_append_pages(in.pfns, 0, in.bytes));
  return static_cast<bool>(l.try_append_all(in.chunks));
}

[[nodiscard]] inline bool build_packed(packed& l, const input& in) noexcept {
  if (in.is_pages()) return static_cast<bool>(l.try_append_pages(in.pfns, 0, in.bytes));
  return static_cast<bool>(l.try_append_all(in.chunks));
}

/// sg_alloc_table_from_pages_segment(UINT_MAX) from the same frames as page pointers; for
/// dio512, sg_alloc_table + sg_set_page per chunk (the block layer's blk_rq_map_sg, which knows
/// its entry count in advance).
[[nodiscard]] inline bool build_sg(sg::sg_table& t, const input& in, bench_allocator& a) noexcept {
  if (in.is_pages()) {
    return static_cast<bool>(
        sg::sg_alloc_table_from_pages_segment(t, in.pages, 0, in.bytes, UINT_MAX, a));
  }
  if (!sg::sg_alloc_table(t, static_cast<unsigned>(in.chunks.size()), a)) return false;
  sg::scatterlist* s = t.sgl;
  for (const phyr::phys_range& c : in.chunks) {
    const std::uint64_t addr = c.addr().value();
    sg::sg_set_page(s, sg::pfn_to_page(addr >> sg::page_shift), static_cast<unsigned>(c.len()),
                    static_cast<unsigned>(addr & (sg::page_size - 1)));
    s = sg::sg_next(s);
  }
  return true;
}

[[nodiscard]] inline std::uint64_t list_sum(const cpu_list& l) noexcept {
  std::uint64_t sum = 0;
  for (const phyr::phys_range& r : l) sum += r.len();
  return sum;
}

[[nodiscard]] inline std::uint64_t packed_sum(const packed& l) noexcept {
  std::uint64_t sum = 0;
  l.for_each([&](const phyr::phys_range& r) noexcept { sum += r.len(); });
  return sum;
}

[[nodiscard]] inline std::uint64_t sg_sum(const sg::sg_table& t) noexcept {
  std::uint64_t sum = 0;
  sg::for_each_sg(t.sgl, t.nents, [&](sg::scatterlist& s, unsigned) { sum += s.length; });
  return sum;
}

/// A list against its input: entry count, total bytes, and a walk.
[[nodiscard]] inline bool list_ok(const cpu_list& l, const input& in) noexcept {
  return l.size() == in.runs && l.total_bytes() == in.bytes && list_sum(l) == in.bytes;
}
[[nodiscard]] inline bool packed_ok(const packed& l, const input& in) noexcept {
  return l.size() == in.runs && l.total_bytes() == in.bytes && packed_sum(l) == in.bytes;
}
[[nodiscard]] inline bool sg_ok(const sg::sg_table& t, const input& in) noexcept {
  return t.nents == in.sg_entries && sg_sum(t) == in.bytes;
}

/// Bytes of a table's arrays (chain slots included), sized as the kernel sizes them: while
/// more than 128 entries are left, an array of 128 slots takes 127 of them and chains on.
[[nodiscard]] inline std::uint64_t sg_table_bytes(const sg::sg_table& t) noexcept {
  const std::uint64_t max = sg::sg_max_single_alloc;
  const std::uint64_t n = t.orig_nents;
  const std::uint64_t full = n <= max ? 0 : (n - max + (max - 2)) / (max - 1);
  const std::uint64_t last = n - full * (max - 1);
  return (full * max + last) * sizeof(sg::scatterlist);
}

// ---- structures built once and read by many benchmarks ---------------------------------------
// Google Benchmark calls a benchmark function several times (iteration ramp-up, repetitions),
// and building a list of millions of entries each time would dominate the suite's run time.
// Benchmarks that only read a structure (walk, map, blocks, ...) share one built and checked
// copy per workload and size; one slot per type, so at most one large input of each is alive.
// They are built in fresh, address-ordered memory so that every side gets the same layout.

template <class T>
struct shared_slot {
  std::string key;
  std::unique_ptr<T> value;
  bool ok = false;

  /// The value for `in`, rebuilt by `build(T&)` when the input changed; null if it failed.
  template <class Build>
  T* get(const input& in, Build build) {
    const std::string k = in.workload + "/" + in.size;
    if (key != k) {
      value.reset();
      const fresh_memory fresh;
      value = std::make_unique<T>();
      ok = build(*value);
      key = k;
    }
    return ok ? value.get() : nullptr;
  }
};

[[nodiscard]] inline const cpu_list* shared_list(const input& in) {
  static shared_slot<cpu_list> s;
  return s.get(in, [&](cpu_list& l) { return build_list(l, in) && list_ok(l, in); });
}

[[nodiscard]] inline const packed* shared_packed(const input& in) {
  static shared_slot<packed> s;
  return s.get(in, [&](packed& l) { return build_packed(l, in) && packed_ok(l, in); });
}

/// The table's CPU fields are what every user checks; users that map it (dma-direct, the
/// legacy IOMMU path) rewrite the DMA fields first, and the IOMMU path restores the CPU ones.
[[nodiscard]] inline sg::sg_table* shared_sg(const input& in) {
  static shared_slot<sg::unique_sg_table<bench_allocator>> s;
  auto* owner = s.get(in, [&](sg::unique_sg_table<bench_allocator>& t) {
    return build_sg(t.table(), in, t.allocator()) && sg_ok(t.table(), in);
  });
  return owner != nullptr ? &owner->table() : nullptr;
}

// ---- the memcpy floor ------------------------------------------------------------------------

/// memcpy of the input (the page-frame array, or the chunk array): the bandwidth floor.
inline void bm_memcpy(benchmark::State& state, std::string wl, std::string size) {
  const input& in = get_input(wl, size);
  const void* src = in.is_pages() ? static_cast<const void*>(in.pfns.data())
                                  : static_cast<const void*>(in.chunks.data());
  const std::size_t n = in.input_bytes();
  std::vector<unsigned char> dst(n);
  std::memcpy(dst.data(), src, n);  // fault the destination in before timing
  cpu_stopwatch watch;
  for (auto _ : state) {
    std::memcpy(dst.data(), src, n);
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  watch.stop();
  if (!check(state, std::memcmp(dst.data(), src, n) == 0, "memcpy copy differs")) return;
  set_counters(state, watch, in,
               static_cast<double>(in.is_pages() ? in.pfns.size() : in.chunks.size()),
               static_cast<double>(n) / in.pages_of_data());
}

// ---- registration ----------------------------------------------------------------------------

/// Every synthetic workload, and the two real traces (always at their own 256 MiB).
inline constexpr const char* synthetic_workloads[] = {"frag", "contig", "2m", "1g", "dio512"};
inline constexpr const char* trace_workloads[] = {"trace_4k", "trace_thp"};

/// Calls `fn(workload, size)` for every synthetic workload at each of `sizes`, then for each
/// trace at 256MiB.
template <class Fn>
void for_each_workload(std::initializer_list<const char*> sizes, Fn&& fn) {
  for (const char* wl : synthetic_workloads) {
    for (const char* s : sizes) fn(std::string(wl), std::string(s));
  }
  for (const char* wl : trace_workloads) fn(std::string(wl), std::string("256MiB"));
}

/// Registers `build/<wl>/<size>/memcpy` once per workload and size, whichever op asks first.
inline void register_floor(const std::string& wl, const std::string& size) {
  static std::set<std::pair<std::string, std::string>> done;
  if (!done.emplace(wl, size).second) return;
  apply_settings(benchmark::RegisterBenchmark(bench_name("build", wl, size, "memcpy").c_str(),
                                              bm_memcpy, wl, size));
}

/// Registers `<op>/<wl>/<size>/<impl>` as `fn(state, wl, size, args...)` with the suite's
/// settings (`once`: one iteration, for rows that measure sizes, not time), and its floor.
template <class Fn, class... Args>
void register_compare(const char* op, const std::string& wl, const std::string& size,
                      const char* impl, Fn fn, bool once, Args... args) {
  auto* b =
      benchmark::RegisterBenchmark(bench_name(op, wl, size, impl).c_str(), fn, wl, size, args...);
  apply_settings(b, once);
  register_floor(wl, size);
}
template <class Fn>
void register_compare(const char* op, const std::string& wl, const std::string& size,
                      const char* impl, Fn fn) {
  register_compare(op, wl, size, impl, fn, false);
}

}  // namespace phyr_bench
