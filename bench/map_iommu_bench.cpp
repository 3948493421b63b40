// Issue #4's IOMMU numbers, checked where they are measured (the phyr-vs-scatterlist
// comparison rows map_iommu/... and unmap_iommu/... live in map_bench.cpp):
//
//   check/frag/1GiB/phyr_iommu_map     iommu_mapper::try_map of 1 GiB of 4 KiB pages, no two
//                                      adjacent (262144 list entries). Fails unless the mapping
//                                      is 1 entry over 1 IOVA block and the page table holds
//                                      262144 4 KiB leaves in 1 + 1 + 1 + 512 tables.
//   check/2m/1GiB/phyr_iommu_map       the same for 512 scattered 2 MiB-aligned runs. Fails
//                                      unless 1 entry and 512 2 MiB leaves, no 4 KiB leaf, in
//                                      3 tables (root, PDPT, PD).
//   check/<wl>/1GiB/phyr_iommu_unmap   unmap of those mappings (PTE clearing, table freeing,
//                                      IOVA return).
//   check/frag/16KiB/phyr_iommu_map_unmap  a 4-page map + unmap pair: the small-I/O path
//                                      (IOVA from the per-thread cache, page table kept warm
//                                      by nothing: the root is freed and reallocated each
//                                      time).
//
// Counters: ns_per_page, pages, entries (DMA entries of the mapping), iova_ranges,
// leaves_4k / leaves_2m / leaves_1g and tables (page table after the map).

#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>
#include <utility>

#include "phyr/container/range_list.hpp"
#include "phyr/core/range.hpp"
#include "phyr/map/iommu/iommu_mapper.hpp"
#include "workloads.hpp"

namespace {

struct iommu_bench_bus {};
using phyr_bench::bench_allocator;
using domain = phyr::basic_iommu_domain<bench_allocator>;
using mapper = phyr::iommu_mapper<iommu_bench_bus, bench_allocator>;
using cpu_list = phyr::range_list<phyr::phys_range, bench_allocator>;

struct expect {
  std::uint64_t leaves_4k, leaves_2m, tables;
};

/// What every row maps: the workload's list (`built`: as expected) and a mapper over a domain
/// of its own.
struct setup {
  explicit setup(const phyr_bench::input& in)
      : built(l.try_append_pages(in.pfns, 0, in.bytes).has_value() && l.size() == in.runs) {}
  cpu_list l;
  bool built;
  domain d{bench_allocator{}};
  mapper m{d};
};

void report(benchmark::State& state, const phyr_bench::cpu_stopwatch& w,
            const phyr_bench::input& in, const mapper::mapping& mp,
            const phyr::iommu_domain_stats& st) {
  phyr_bench::set_counters(state, w, in, static_cast<double>(mp.size()), 0.0);
  state.counters["iova_ranges"] = static_cast<double>(mp.iova_ranges());
  state.counters["leaves_4k"] = static_cast<double>(st.page_table.leaves_4k);
  state.counters["leaves_2m"] = static_cast<double>(st.page_table.leaves_2m);
  state.counters["leaves_1g"] = static_cast<double>(st.page_table.leaves_1g);
  state.counters["tables"] = static_cast<double>(st.page_table.tables);
}

/// Times try_map (time_unmap = false) or unmap (true) of a whole workload.
void bm_iommu(benchmark::State& state, std::string wl, std::string size, expect want,
              bool time_unmap) {
  const phyr_bench::input& in = phyr_bench::get_input(wl, size);
  setup s(in);
  if (!phyr_bench::check(state, s.built, "range_list build is wrong")) return;
  bool ok = true;
  phyr_bench::cpu_stopwatch watch;
  phyr_bench::time_map_or_unmap(
      state, watch, time_unmap,
      [&] { return s.m.try_map(s.l, phyr::dma_direction::bidirectional); },
      [&](auto& mp) {
        ok &= mp.has_value();
        if (mp) ok &= s.m.try_unmap(std::move(*mp)).has_value();
      });
  watch.stop();
  // One more map, untimed, to check and describe what the timed ones built.
  auto mp = s.m.try_map(s.l, phyr::dma_direction::bidirectional);
  if (!phyr_bench::check(state, ok && mp.has_value(), "iommu map/unmap failed")) return;
  const auto st = s.d.stats();
  const bool right = mp->size() == 1 && mp->iova_ranges() == 1 && mp->total_bytes() == in.bytes &&
                     st.page_table.leaves_4k == want.leaves_4k &&
                     st.page_table.leaves_2m == want.leaves_2m && st.page_table.leaves_1g == 0 &&
                     st.page_table.tables == want.tables &&
                     s.d.translate(mp->begin()->addr().value() + in.bytes - 1)->value() ==
                         (in.pfns.back() << 12) + 4095;
  report(state, watch, in, *mp, st);
  (void)s.m.try_unmap(std::move(*mp));
  phyr_bench::check(state, right, "iommu mapping is not 1 entry with the expected leaves");
}

/// A small map + unmap pair, the per-I/O path of a storage or network driver.
void bm_small(benchmark::State& state) {
  const phyr_bench::input& in = phyr_bench::get_input("frag", "16KiB");
  setup s(in);
  if (!phyr_bench::check(state, s.built, "range_list build is wrong")) return;
  bool ok = true;
  phyr_bench::cpu_stopwatch watch;
  for (auto _ : state) {
    auto mp = s.m.try_map(s.l, phyr::dma_direction::to_device);
    ok &= mp.has_value();
    if (mp) ok &= s.m.try_unmap(std::move(*mp)).has_value();
  }
  watch.stop();
  auto mp = s.m.try_map(s.l, phyr::dma_direction::to_device);
  if (!phyr_bench::check(state, ok && mp.has_value() && mp->size() == 1, "small map failed"))
    return;
  report(state, watch, in, *mp, s.d.stats());
  state.counters["cache_hit_rate"] =
      static_cast<double>(s.d.stats().iova.cache_hits) /
      static_cast<double>(s.d.stats().iova.cache_hits + s.d.stats().iova.cache_misses);
  (void)s.m.try_unmap(std::move(*mp));
}

[[maybe_unused]] const bool registered = [] {
  const expect frag{262144, 0, 1 + 1 + 1 + 512};
  const expect runs{0, 512, 3};
  for (const auto& [wl, want] : {std::pair{"frag", frag}, std::pair{"2m", runs}}) {
    for (const bool unmap : {false, true}) {
      const std::string name = phyr_bench::bench_name(
          "check", wl, "1GiB", unmap ? "phyr_iommu_unmap" : "phyr_iommu_map");
      auto* b = benchmark::RegisterBenchmark(name.c_str(), bm_iommu, std::string{wl},
                                             std::string{"1GiB"}, want, unmap);
      phyr_bench::apply_settings(b);
    }
  }
  auto* b = benchmark::RegisterBenchmark("check/frag/16KiB/phyr_iommu_map_unmap", bm_small);
  phyr_bench::apply_settings(b);
  b->Unit(benchmark::kNanosecond);
  return true;
}();

}  // namespace
