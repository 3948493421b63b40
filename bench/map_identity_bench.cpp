// Issue #4's numbers for the identity mapper, checked where they are measured:
//
//   check/frag/1entry_vs_1e6entries/phyr_identity
//       identity try_map + unmap of a 1-entry and a 1,000,000-entry list. Both are timed in the
//       same process (best of 15 rounds of 20,000 map+unmap pairs each, the two lists' rounds
//       alternating; a ratio above 2 is measured again, up to three times); counters ns_1entry,
//       ns_1e6entries, ratio, heap_allocs (every operator new in the process while mapping,
//       iterating one entry and unmapping) and list_allocs (calls into the list's allocator).
//       Fails unless ratio <= 2 and both allocation counts are 0.
//   check/frag/1GiB/phyr_identity_memory  and  check/trace_4k/256MiB/phyr_identity_memory
//       bytes held per 4 KiB page of data by the CPU list plus the DMA list after an identity
//       map: phyr (range_list + aliasing mapping) against the scatterlist baseline (table
//       built by sg_alloc_table_from_pages_segment and filled by dma_direct_map_sg). `frag` has
//       every page its own physical run (the worst case: one entry per page on both sides);
//       trace_4k is the real 256 MiB layout from tests/data/pagemap. Counters
//       phyr_bytes_per_page, sg_bytes_per_page, ratio. `frag` fails unless phyr <= half the
//       baseline; on the trace both are tiny and phyr's 4 KiB segment granularity dominates.
//
// Heap allocations are counted by phyr_bench's replacement operator new (bench/main.cpp).

#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <numeric>
#include <string>
#include <vector>

#include "phyr/compat/scatterlist.hpp"
#include "phyr/container/range_list.hpp"
#include "phyr/core/allocator.hpp"
#include "phyr/core/range.hpp"
#include "phyr/map/identity_mapper.hpp"
#include "workloads.hpp"

namespace {

struct bench_dev {};
using identity = phyr::identity_mapper<bench_dev>;
namespace sg = phyr::compat;
constexpr std::uint64_t page = 4096;

/// `n` discontiguous pages at scattered frames (every page its own run).
std::vector<std::uint64_t> fragmented_pfns(std::uint64_t n) {
  std::vector<std::uint64_t> pfns(n);
  std::uint64_t m = 0x9e3779b97f4a7c15ull % n;  // i -> i*m mod n, m coprime to n: a bijection
  if (m == 0) m = 1;
  while (std::gcd(m, n) != 1) ++m;
  for (std::uint64_t i = 0; i < n; ++i) pfns[i] = (1ull << 18) + 2 * ((i * m) % n);
  return pfns;
}


/// ns per identity map+unmap of `l`, over one round of 20,000 pairs; adds heap and allocator
/// calls to the tallies.
template <class List>
double time_map_unmap(const identity& m, const List& l, const phyr::fault_state& fs,
                      std::uint64_t& heap_allocs, std::uint64_t& list_allocs, bool& ok) {
  constexpr int pairs = 20000;
  const std::uint64_t heap0 = phyr_bench::operator_new_calls();
  const std::uint64_t list0 = fs.calls;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < pairs; ++i) {
    auto mp = m.try_map(l, phyr::dma_direction::to_device);
    ok &= mp.has_value();
    if (!mp) break;
    const phyr::dma_range<bench_dev> first = *mp->begin();
    benchmark::DoNotOptimize(first);
    ok &= m.try_unmap(std::move(*mp)).has_value();
    benchmark::ClobberMemory();
  }
  const auto t1 = std::chrono::steady_clock::now();
  heap_allocs += phyr_bench::operator_new_calls() - heap0;
  list_allocs += fs.calls - list0;
  return std::chrono::duration<double, std::nano>(t1 - t0).count() / pairs;
}

void bm_identity_o1(benchmark::State& state) {
  phyr::fault_state fs;  // never fails: counts the list allocator's calls
  using list = phyr::range_list<phyr::phys_range, phyr::fault_injecting_allocator>;
  list one{phyr::fault_injecting_allocator{&fs}};
  list million{phyr::fault_injecting_allocator{&fs}};
  phyr::must(one.try_append(phyr::phys_range{phyr::phys_addr{0x10'0000}, page}));
  const auto pfns = fragmented_pfns(1'000'000);
  phyr::must(million.try_append_pages(pfns, 0, pfns.size() * page));
  if (million.size() != 1'000'000) {
    state.SkipWithError("the 1e6-entry list does not have 1e6 entries");
    return;
  }
  const identity m;
  double ns1 = 0, ns1m = 0;
  std::uint64_t heap_allocs = 0, list_allocs = 0;
  bool ok = true;
  double ratio = 0;
  for (auto _ : state) {
    // The two lists alternate, round by round, so a slow stretch of a shared VM (they last
    // milliseconds: long enough to cover every round of one list timed after the other) slows
    // both alike. A map that walked its list would be ~10^5 times slower for 10^6 entries, so
    // re-measuring a ratio above 2 (up to three times) cannot hide one; it only keeps a noisy
    // moment from failing the run.
    for (int attempt = 0; attempt < 3; ++attempt) {
      ns1 = ns1m = 1e30;
      for (int r = 0; r < 15; ++r) {
        ns1 = std::min(ns1, time_map_unmap(m, one, fs, heap_allocs, list_allocs, ok));
        ns1m = std::min(ns1m, time_map_unmap(m, million, fs, heap_allocs, list_allocs, ok));
      }
      ratio = std::max(ns1, ns1m) / std::min(ns1, ns1m);
      if (!ok || ratio <= 2.0) break;
    }
  }
  state.counters["ns_1entry"] = ns1;
  state.counters["ns_1e6entries"] = ns1m;
  state.counters["ratio"] = ratio;
  state.counters["heap_allocs"] = static_cast<double>(heap_allocs);
  state.counters["list_allocs"] = static_cast<double>(list_allocs);
  state.counters["entries"] = static_cast<double>(million.size());
  if (!ok)
    state.SkipWithError("an identity map or unmap failed");
  else if (ratio > 2.0)
    state.SkipWithError("identity map is not O(1): ratio above 2");
  else if (heap_allocs != 0 || list_allocs != 0)
    state.SkipWithError("identity map allocated");
}

struct memory_result {
  double phyr = 0;  // bytes per page, CPU list + DMA mapping
  double sg = 0;    // bytes per page, the scatterlist table (both halves live in one entry)
  double entries = 0;
  bool ok = false;
};

memory_result measure_memory(const std::vector<std::uint64_t>& pfns) {
  memory_result out;
  const double pages = static_cast<double>(pfns.size());
  const std::uint64_t bytes = pfns.size() * page;

  phyr::fault_state pfs;
  phyr::range_list<phyr::phys_range, phyr::fault_injecting_allocator> cpu{
      phyr::fault_injecting_allocator{&pfs}};
  if (!cpu.try_append_pages(pfns, 0, bytes)) return out;
  const std::int64_t cpu_heap = pfs.live_bytes;
  const identity m;
  auto mp = m.try_map(cpu, phyr::dma_direction::to_device);
  if (!mp) return out;
  const std::int64_t dma_heap = pfs.live_bytes - cpu_heap;  // 0: the mapping aliases
  out.phyr = (static_cast<double>(cpu_heap + dma_heap) + sizeof(cpu) + sizeof(*mp)) / pages;
  out.entries = static_cast<double>(mp->size());
  const bool phyr_ok = dma_heap == 0 && mp->total_bytes() == bytes;
  (void)m.try_unmap(std::move(*mp));

  phyr::fault_state sfs;
  phyr::fault_injecting_allocator a{&sfs};
  std::vector<sg::page*> pg(pfns.size());
  for (std::size_t i = 0; i < pfns.size(); ++i) pg[i] = sg::pfn_to_page(pfns[i]);
  sg::sg_table t;
  if (!sg::sg_alloc_table_from_pages_segment(t, pg, 0, bytes, ~0u, a)) return out;
  const int n = sg::dma_direct_map_sg(t.sgl, static_cast<int>(t.nents), ~std::uint64_t{0});
  out.sg = (static_cast<double>(sfs.live_bytes) + sizeof(t)) / pages;
  sg::sg_free_table(t, a);
  out.ok = phyr_ok && n > 0 && sfs.live == 0;
  return out;
}

void bm_identity_memory(benchmark::State& state, const std::vector<std::uint64_t>* pfns,
                        bool enforce_half) {
  if (pfns->empty()) {
    state.SkipWithError(phyr_bench::trace_missing);
    return;
  }
  memory_result r;
  for (auto _ : state) r = measure_memory(*pfns);
  state.counters["phyr_bytes_per_page"] = r.phyr;
  state.counters["sg_bytes_per_page"] = r.sg;
  state.counters["ratio"] = r.phyr / r.sg;
  state.counters["entries"] = r.entries;
  if (!r.ok)
    state.SkipWithError("memory measurement failed");
  else if (enforce_half && r.phyr > r.sg / 2)
    state.SkipWithError("phyr uses more than half the baseline");
}

const std::vector<std::uint64_t>& frag_1gib() {
  static const auto v = fragmented_pfns((1ull << 30) / page);
  return v;
}
const std::vector<std::uint64_t>& trace_4k() {
  static const auto v = phyr_bench::detail::read_trace(phyr_bench::trace_path("trace_4k"));
  return v;
}

const bool registered = [] {
  benchmark::RegisterBenchmark("check/frag/1entry_vs_1e6entries/phyr_identity", bm_identity_o1)
      ->Iterations(1)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("check/frag/1GiB/phyr_identity_memory", bm_identity_memory,
                               &frag_1gib(), true)
      ->Iterations(1)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("check/trace_4k/256MiB/phyr_identity_memory", bm_identity_memory,
                               &trace_4k(), false)
      ->Iterations(1)
      ->Unit(benchmark::kMillisecond);
  return true;
}();

}  // namespace
