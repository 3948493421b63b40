// Issue #6's numbers: classifying a list against the P2P provider registry per range (phyr)
// versus per 4 KiB page (what a struct page -> pgmap check per page does).
//
//   classify/<frag|2m>/1GiB/phyr_p2p_registry   one registry lookup per list entry
//   classify/<frag|2m>/1GiB/per_page            one registry lookup per 4 KiB page of the
//                                               page array the list was built from
//   check/<frag|2m>/1GiB/phyr_p2p_vs_per_page   both loops in one process, best of 9 rounds:
//                                               counters ns_per_range_list, ns_per_page_loop,
//                                               ratio; fails when the two classifications
//                                               disagree, and on 2m when ratio < 50
//
// Set-up: 64 providers (8 MiB windows every 32 MiB over [1 GiB, 3 GiB), where the workloads'
// frames lie), so about a quarter of the data is provider memory and the rest RAM; the two
// methods must agree on every byte. `frag` has one entry per page (no gain possible: the
// check shows the per-range cost is the per-page cost), `2m` one entry per 2 MiB run (512
// pages per lookup).
//
//   cmake --workflow --preset bench   or   build/bench/bench/phyr_bench
//   --benchmark_filter=p2p\|classify
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <string>

#include "phyr/container/range_list.hpp"
#include "phyr/map/p2p/p2p_registry.hpp"
#include "workloads.hpp"

namespace {

using phyr_bench::gib;
using phyr_bench::mib;
using phyr_bench::page_size;

constexpr std::uint64_t providers = 64;
constexpr std::uint64_t window_stride = 32 * mib;
constexpr std::uint64_t window_size = 8 * mib;

const phyr::p2p_registry<phyr_bench::bench_allocator>& registry() {
  static phyr::p2p_registry<phyr_bench::bench_allocator> reg;
  static const bool filled = [] {
    for (std::uint64_t i = 0; i < providers; ++i) {
      auto w = phyr::p2p_window::create(phyr::phys_addr{gib + i * window_stride}, window_size,
                                        phyr::p2p_provider_id{i + 1}, 0);
      if (!w || !reg.try_register(*w)) std::abort();
    }
    return true;
  }();
  (void)filled;
  return reg;
}

struct prepared {
  const phyr_bench::input* in = nullptr;
  phyr::range_list<phyr::phys_range, phyr_bench::bench_allocator> list;
};

const prepared& prepare(const std::string& wl) {
  static std::map<std::string, std::unique_ptr<prepared>> cache;
  auto& p = cache[wl];
  if (p) return *p;
  p = std::make_unique<prepared>();
  p->in = &phyr_bench::get_input(wl, "1GiB");
  if (!p->list.try_append_pages(p->in->pfns, 0, p->in->bytes)) std::abort();
  return *p;
}

struct tally {
  std::uint64_t provider_bytes = 0;
  std::uint64_t provider_hash = 0;  // which provider, so a wrong owner cannot hide
  std::uint64_t errors = 0;
};

template <class Guard>
tally classify_ranges(const Guard& rd, const prepared& p) {
  tally t;
  for (const phyr::phys_range& r : p.list) {
    auto o = rd.lookup(r);
    if (!o) {
      ++t.errors;
      continue;
    }
    if (o->is_provider()) {
      t.provider_bytes += r.len();
      t.provider_hash += o->window().provider().value * r.len();
    }
  }
  return t;
}

template <class Guard>
tally classify_pages(const Guard& rd, const prepared& p) {
  tally t;
  for (const std::uint64_t pfn : p.in->pfns) {
    auto o = rd.lookup(phyr::phys_range{phyr::phys_addr{pfn * page_size}, page_size});
    if (!o) {
      ++t.errors;
      continue;
    }
    if (o->is_provider()) {
      t.provider_bytes += page_size;
      t.provider_hash += o->window().provider().value * page_size;
    }
  }
  return t;
}

/// What the model says: bytes of the workload inside a window, by page arithmetic.
tally expected(const prepared& p) {
  tally t;
  for (const std::uint64_t pfn : p.in->pfns) {
    const std::uint64_t a = pfn * page_size;
    if (a < gib) continue;
    const std::uint64_t i = (a - gib) / window_stride;
    if (i < providers && (a - gib) % window_stride < window_size) {
      t.provider_bytes += page_size;
      t.provider_hash += (i + 1) * page_size;
    }
  }
  return t;
}

bool same(const tally& a, const tally& b) {
  return a.errors == 0 && b.errors == 0 && a.provider_bytes == b.provider_bytes &&
         a.provider_hash == b.provider_hash;
}

void bm_classify(benchmark::State& state, std::string wl, bool per_page) {
  const prepared& p = prepare(wl);
  const auto& reg = registry();
  const tally want = expected(p);
  tally got;
  phyr_bench::cpu_stopwatch w;
  for (auto _ : state) {
    auto rd = reg.reader();
    got = per_page ? classify_pages(rd, p) : classify_ranges(rd, p);
    benchmark::DoNotOptimize(got);
  }
  w.stop();
  if (!phyr_bench::check(state, same(got, want), "classification disagrees with the model")) return;
  const double lookups =
      per_page ? static_cast<double>(p.in->pfns.size()) : static_cast<double>(p.list.size());
  phyr_bench::set_counters(state, w, *p.in, lookups, 0);
  state.counters["provider_fraction"] =
      static_cast<double>(want.provider_bytes) / static_cast<double>(p.in->bytes);
}

void bm_check(benchmark::State& state, std::string wl, double min_ratio) {
  const prepared& p = prepare(wl);
  const auto& reg = registry();
  const tally want = expected(p);
  using clk = std::chrono::steady_clock;
  double best_range = 1e300, best_page = 1e300;
  bool ok = true;
  for (auto _ : state) {
    for (int round = 0; round < 9; ++round) {
      auto rd = reg.reader();
      auto t0 = clk::now();
      const tally a = classify_ranges(rd, p);
      auto t1 = clk::now();
      const tally b = classify_pages(rd, p);
      auto t2 = clk::now();
      benchmark::DoNotOptimize(a);
      benchmark::DoNotOptimize(b);
      ok = ok && same(a, want) && same(b, want);
      best_range = std::min(best_range, std::chrono::duration<double, std::nano>(t1 - t0).count());
      best_page = std::min(best_page, std::chrono::duration<double, std::nano>(t2 - t1).count());
    }
  }
  if (!phyr_bench::check(state, ok, "per-range and per-page classifications disagree")) return;
  const double ratio = best_page / best_range;
  state.counters["ns_per_range_list"] = best_range;
  state.counters["ns_per_page_loop"] = best_page;
  state.counters["ratio"] = ratio;
  state.counters["entries"] = static_cast<double>(p.list.size());
  state.counters["pages"] = p.in->pages_of_data();
  std::printf(
      "p2p classify %s 1GiB: per-range %.0f ns (%zu lookups), per-page %.0f ns (%zu "
      "lookups), ratio %.1fx\n",
      wl.c_str(), best_range, p.list.size(), best_page, p.in->pfns.size(), ratio);
  if (min_ratio > 0 && ratio < min_ratio) {
    state.SkipWithError("per-range classification is less than 50x faster than per page");
  }
}

[[maybe_unused]] const bool registered = [] {
  for (const char* wl : {"frag", "2m"}) {
    const std::string w = wl;
    phyr_bench::apply_settings(benchmark::RegisterBenchmark(
        phyr_bench::bench_name("classify", w, "1GiB", "phyr_p2p_registry").c_str(),
        [w](benchmark::State& s) { bm_classify(s, w, false); }));
    phyr_bench::apply_settings(benchmark::RegisterBenchmark(
        phyr_bench::bench_name("classify", w, "1GiB", "per_page").c_str(),
        [w](benchmark::State& s) { bm_classify(s, w, true); }));
    phyr_bench::apply_settings(
        benchmark::RegisterBenchmark(
            phyr_bench::bench_name("check", w, "1GiB", "phyr_p2p_vs_per_page").c_str(),
            [w](benchmark::State& s) { bm_check(s, w, w == "2m" ? 50.0 : 0.0); }),
        /*once=*/true);
  }
  return true;
}();

}  // namespace
