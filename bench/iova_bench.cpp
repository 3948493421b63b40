// Issue 13's IOVA numbers (map/iommu/iova_reservation.hpp, iova_allocator limits and guards,
// concurrency on one domain). All on the in-process page-table model, heap allocator.
//
//   iova/link_1GiB/two_step       reserve 1 GiB once, link 262144 scattered 4 KiB pages one
//                                 try_link each (the reservation is made and dropped outside
//                                 the timed region). Counter ns_per_page.
//   iova/link_1GiB/one_shot_map   iommu_mapper::try_map of the same 262144 pages as one list
//                                 (the unmap is outside the timed region). ns_per_page.
//   iova/io_64KiB/standing_link   one 64 KiB I/O (16 scattered pages) linked into a standing
//                                 reservation with try_link_all, synced, unlinked (the slot
//                                 moves through 1024 slots). ns per I/O.
//   iova/io_64KiB/map_unmap       the same I/O through try_map + try_unmap (IOVA allocated and
//                                 freed per I/O). ns per I/O. The ratio of the two is why the
//                                 kernel added dma_iova_link.
//   iova/alloc/{plain,guard,limits,guard_limits}  1024 allocations of 1..16 pages then their
//                                 frees (the second half of each round is served by the
//                                 cache). ns per allocation+free.
//   iova/map_unmap_64KiB/threads:N  map + unmap of a 64 KiB list per iteration, N threads on
//                                 ONE domain, each its own list. items_per_second is the
//                                 aggregate throughput: 2 threads / 1 thread is the scaling.
//   iova/link_unlink_64KiB/threads:N  the same with a standing reservation per thread.
//   iova/scaling_reference/threads:N  no phyr code: each thread runs a loop over its own
//                                 4 KiB array (nothing shared). Its 2-thread / 1-thread
//                                 ratio is what this machine gives two threads that share
//                                 nothing, the ceiling for the two rows above.

#include <benchmark/benchmark.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "phyr/container/range_list.hpp"
#include "phyr/core/page.hpp"
#include "phyr/core/range.hpp"
#include "phyr/map/iommu/iommu_mapper.hpp"
#include "phyr/map/iommu/iova_reservation.hpp"

namespace {

struct iova_bench_bus {};
constexpr std::uint64_t P = phyr::page_size;
using resv = phyr::iova_reservation<iova_bench_bus, phyr::iommu_domain>;
using mapper = phyr::iommu_mapper<iova_bench_bus>;

/// Page i of a scattered buffer: no two pages physically adjacent (the worst case for
/// coalescing, the common case for user memory).
constexpr std::uint64_t scattered_page(std::uint64_t base, std::uint64_t i) {
  return base + i * 2 * P;
}

phyr::range_list<phyr::phys_range> scattered_list(std::uint64_t base, std::uint64_t pages) {
  phyr::range_list<phyr::phys_range> l;
  for (std::uint64_t i = 0; i < pages; ++i)
    if (!l.try_append(phyr::phys_range{phyr::phys_addr{scattered_page(base, i)}, P})) break;
  return l;
}

constexpr std::uint64_t pages_1g = (std::uint64_t{1} << 30) / P;

void bm_link_1g_two_step(benchmark::State& state) {
  phyr::iommu_domain dom;
  for (auto _ : state) {
    state.PauseTiming();
    auto r = resv::try_create(dom, pages_1g * P);
    if (!r) {
      state.SkipWithError("reserve failed");
      break;
    }
    state.ResumeTiming();
    for (std::uint64_t i = 0; i < pages_1g; ++i) {
      auto d = r->try_link(i * P, phyr::phys_range{phyr::phys_addr{scattered_page(1ull << 40, i)}, P},
                           phyr::dma_direction::to_device);
      if (!d) {
        state.SkipWithError("link failed");
        break;
      }
    }
    r->sync();
    state.PauseTiming();
    r->reset();
    state.ResumeTiming();
  }
  state.counters["ns_per_page"] = benchmark::Counter(
      static_cast<double>(state.iterations() * pages_1g),
      benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

void bm_link_1g_one_shot(benchmark::State& state) {
  phyr::iommu_domain dom;
  mapper m{dom};
  const auto l = scattered_list(1ull << 40, pages_1g);
  if (l.size() != pages_1g) {
    state.SkipWithError("list build failed");
    return;
  }
  for (auto _ : state) {
    auto mp = m.try_map(l, phyr::dma_direction::to_device);
    if (!mp) {
      state.SkipWithError("map failed");
      break;
    }
    state.PauseTiming();
    (void)m.try_unmap(std::move(*mp));
    state.ResumeTiming();
  }
  state.counters["ns_per_page"] = benchmark::Counter(
      static_cast<double>(state.iterations() * pages_1g),
      benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

constexpr std::uint64_t io_pages = (std::uint64_t{64} << 10) / P;

void bm_io_standing_link(benchmark::State& state) {
  phyr::iommu_domain dom;
  auto r = resv::try_create(dom, 1024 * io_pages * P);
  if (!r) {
    state.SkipWithError("reserve failed");
    return;
  }
  const auto l = scattered_list(1ull << 36, io_pages);
  std::uint64_t slot = 0;
  for (auto _ : state) {
    const std::uint64_t off = (slot++ % 1024) * io_pages * P;
    if (!r->try_link_all(off, l, phyr::dma_direction::to_device)) {
      state.SkipWithError("link failed");
      return;
    }
    r->sync();
    if (!r->try_unlink(off, io_pages * P)) {
      state.SkipWithError("unlink failed");
      return;
    }
  }
  state.counters["ns_per_io"] = benchmark::Counter(
      static_cast<double>(state.iterations()),
      benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

void bm_io_map_unmap(benchmark::State& state) {
  phyr::iommu_domain dom;
  mapper m{dom};
  const auto l = scattered_list(1ull << 36, io_pages);
  for (auto _ : state) {
    auto mp = m.try_map(l, phyr::dma_direction::to_device);
    if (!mp || !m.try_unmap(std::move(*mp))) {
      state.SkipWithError("map/unmap failed");
      return;
    }
  }
  state.counters["ns_per_io"] = benchmark::Counter(
      static_cast<double>(state.iterations()),
      benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

void bm_alloc(benchmark::State& state, bool guard, bool limited) {
  phyr::iova_allocator<> iova{P, std::uint64_t{1} << 40,
                              guard ? phyr::iova_guard::page : phyr::iova_guard::none};
  phyr::iova_limits lim;
  if (limited) {
    lim.max_addr = 0xffff'ffff;
    lim.boundary = std::uint64_t{1} << 20;
    (void)lim.try_allow(P, 0xfee0'0000 - P);
    (void)lim.try_allow(0xfef0'0000, 0x1'0000'0000 - 0xfef0'0000);
  }
  std::vector<phyr::iova_block> live;
  live.reserve(1024);
  for (auto _ : state) {
    for (std::uint64_t i = 0; i < 1024; ++i) {
      auto b = iova.try_alloc((1 + i % 16) * P, lim);
      if (!b) {
        state.SkipWithError("alloc failed");
        return;
      }
      live.push_back(*b);
    }
    for (const auto& b : live) iova.free(b);
    live.clear();
  }
  state.counters["ns_per_alloc_free"] = benchmark::Counter(
      static_cast<double>(state.iterations() * 1024),
      benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

// One domain shared by every thread of a multi-threaded run (set up before any thread runs).
phyr::iommu_domain& shared_domain() {
  static phyr::iommu_domain d;
  return d;
}

void bm_threads_map_unmap(benchmark::State& state) {
  mapper m{shared_domain()};
  const auto l =
      scattered_list((std::uint64_t{1} << 38) + static_cast<std::uint64_t>(state.thread_index()) *
                                                     (std::uint64_t{1} << 34),
                     io_pages);
  for (auto _ : state) {
    auto mp = m.try_map(l, phyr::dma_direction::to_device);
    if (!mp || !m.try_unmap(std::move(*mp))) {
      state.SkipWithError("map/unmap failed");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
}

void bm_threads_link_unlink(benchmark::State& state) {
  const std::uint64_t base = (std::uint64_t{1} << 38) +
                       static_cast<std::uint64_t>(state.thread_index()) * (std::uint64_t{1} << 34);
  auto made = resv::try_create(shared_domain(), 1024 * io_pages * P);
  if (!made) {
    state.SkipWithError("reserve failed");
    return;
  }
  auto r = std::make_unique<resv>(std::move(*made));
  const auto l = scattered_list(base, io_pages);
  for (auto _ : state) {
    (void)r->try_link_all(0, l, phyr::dma_direction::to_device);
    r->sync();
    (void)r->try_unlink(0, io_pages * P);
  }
  r.reset();
  state.SetItemsProcessed(state.iterations());
}

// The same shape of work as an I/O (a few hundred dependent loads and stores) with no shared
// memory at all.
void bm_scaling_reference(benchmark::State& state) {
  std::uint64_t a[512] = {};
  std::uint64_t x = 1 + static_cast<std::uint64_t>(state.thread_index());
  for (auto _ : state) {
    for (std::uint64_t i = 0; i < 256; ++i) {
      a[i & 511] += x;
      x = x * 6364136223846793005ull + a[(i * 7) & 511];
    }
    benchmark::DoNotOptimize(x);
  }
  state.SetItemsProcessed(state.iterations());
}

}  // namespace

BENCHMARK(bm_link_1g_two_step)->Name("iova/link_1GiB/two_step")->Unit(benchmark::kMillisecond)->Iterations(3);
BENCHMARK(bm_link_1g_one_shot)->Name("iova/link_1GiB/one_shot_map")->Unit(benchmark::kMillisecond)->Iterations(3);
BENCHMARK(bm_io_standing_link)->Name("iova/io_64KiB/standing_link");
BENCHMARK(bm_io_map_unmap)->Name("iova/io_64KiB/map_unmap");
BENCHMARK_CAPTURE(bm_alloc, plain, false, false)->Name("iova/alloc/plain");
BENCHMARK_CAPTURE(bm_alloc, guard, true, false)->Name("iova/alloc/guard");
BENCHMARK_CAPTURE(bm_alloc, limits, false, true)->Name("iova/alloc/limits");
BENCHMARK_CAPTURE(bm_alloc, guard_limits, true, true)->Name("iova/alloc/guard_limits");
BENCHMARK(bm_threads_map_unmap)->Name("iova/map_unmap_64KiB")->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(bm_threads_link_unlink)->Name("iova/link_unlink_64KiB")->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(bm_scaling_reference)->Name("iova/scaling_reference")->Threads(1)->Threads(2)->UseRealTime();
