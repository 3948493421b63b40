// os/linux/pagemap: what resolving pages through pagemap costs beside building the list from a
// page-frame array. Names and counters follow bench/workloads.hpp.
//
//   pagemap/<trace>/256MiB/phyr_from_pfns    range_list::try_append_pages on the frames (the
//                                            floor: what any source of frames costs)
//   pagemap/<trace>/256MiB/phyr_from_words   try_list_from_pagemap_entries on the same frames
//                                            as pagemap words (classify, batch, append)
//   pin/live_4k/16MiB/phyr_pinned_buffer     pinned_buffer::try_pin + unpin of a real buffer:
//   pin/live_thp/16MiB/phyr_pinned_buffer    mlock, pread of /proc/self/pagemap, munlock
//                                            (skipped with a message when PFNs are hidden)

#include <benchmark/benchmark.h>
#include <sys/mman.h>

#include <cstdint>
#include <string>
#include <vector>

#include "phyr/container/range_list.hpp"
#include "phyr/os/linux/pagemap.hpp"
#include "workloads.hpp"

namespace {

using phyr_bench::bench_allocator;
using phyr_bench::check;
using phyr_bench::cpu_stopwatch;
using phyr_bench::get_input;
using phyr_bench::input;
using phyr_bench::set_counters;
using cpu_list = phyr::range_list<phyr::phys_range, bench_allocator>;

double bytes_per_page(const cpu_list& l, double pages) {
  return static_cast<double>(l.bytes_used()) / pages;
}

void bm_from_pfns(benchmark::State& state, const std::string& workload) {
  const input& in = get_input(workload, "256MiB");
  if (!check(state, in.present, phyr_bench::trace_missing)) return;
  std::size_t entries = 0;
  double bpp = 0;
  cpu_stopwatch w;
  for (auto _ : state) {
    cpu_list l;
    if (!l.try_append_pages(in.pfns, 0, in.bytes, phyr::range_flags::pinned)) {
      state.SkipWithError("try_append_pages failed");
      return;
    }
    entries = l.size();
    bpp = bytes_per_page(l, in.pages_of_data());
    benchmark::DoNotOptimize(entries);
  }
  w.stop();
  if (!check(state, entries == in.runs, "entry count differs from the trace's runs")) return;
  set_counters(state, w, in, static_cast<double>(entries), bpp);
}

void bm_from_words(benchmark::State& state, const std::string& workload) {
  const input& in = get_input(workload, "256MiB");
  if (!check(state, in.present, phyr_bench::trace_missing)) return;
  std::vector<std::uint64_t> words(in.pfns.size());
  // Typical flag bits of an exclusively mapped anonymous page, as the kernel reports them.
  for (std::size_t i = 0; i < words.size(); ++i)
    words[i] = phyr::pagemap_present | (std::uint64_t{1} << 56) | in.pfns[i];
  std::size_t entries = 0;
  double bpp = 0;
  cpu_stopwatch w;
  for (auto _ : state) {
    auto l = phyr::try_list_from_pagemap_entries(words, 0, in.bytes, phyr::range_flags::pinned,
                                                 bench_allocator{});
    if (!l) {
      state.SkipWithError("try_list_from_pagemap_entries failed");
      return;
    }
    entries = l->size();
    bpp = bytes_per_page(*l, in.pages_of_data());
    benchmark::DoNotOptimize(entries);
  }
  w.stop();
  if (!check(state, entries == in.runs, "entry count differs from the trace's runs")) return;
  set_counters(state, w, in, static_cast<double>(entries), bpp);
}

void bm_pin(benchmark::State& state, bool thp) {
  constexpr std::size_t len = 16 << 20, huge = 2 << 20;
  void* m = ::mmap(nullptr, len + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (!check(state, m != MAP_FAILED, "mmap failed")) return;
  char* const buf = reinterpret_cast<char*>((reinterpret_cast<std::uintptr_t>(m) + huge - 1) &
                                            ~std::uintptr_t{huge - 1});
  (void)::madvise(buf, len, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
  // The first pin faults the pages in; the timed ones measure lock + resolve + unlock only.
  {
    auto first = phyr::pinned_buffer<bench_allocator>::try_pin(buf, len);
    if (!first) {
      state.SkipWithError(first.error() == phyr::errc::permission_denied
                              ? "PFNs hidden from this process (needs CAP_SYS_ADMIN)"
                              : phyr::to_string(first.error()));
      ::munmap(m, len + huge);
      return;
    }
  }
  std::size_t entries = 0;
  double bpp = 0;
  const double pages = static_cast<double>(len) / 4096.0;
  cpu_stopwatch w;
  for (auto _ : state) {
    auto pb = phyr::pinned_buffer<bench_allocator>::try_pin(buf, len);
    if (!pb) {
      state.SkipWithError(phyr::to_string(pb.error()));
      break;
    }
    entries = pb->ranges().size();
    bpp = bytes_per_page(pb->ranges(), pages);
    benchmark::DoNotOptimize(entries);
  }
  w.stop();
  ::munmap(m, len + huge);
  set_counters(state, w.elapsed_ns(), pages, static_cast<double>(entries), bpp);
}

[[maybe_unused]] const bool registered = [] {
  for (const char* wl : {"trace_4k", "trace_thp"}) {
    const std::string workload = wl;
    phyr_bench::apply_settings(benchmark::RegisterBenchmark(
        phyr_bench::bench_name("pagemap", workload, "256MiB", "phyr_from_pfns").c_str(),
        [workload](benchmark::State& s) { bm_from_pfns(s, workload); }));
    phyr_bench::apply_settings(benchmark::RegisterBenchmark(
        phyr_bench::bench_name("pagemap", workload, "256MiB", "phyr_from_words").c_str(),
        [workload](benchmark::State& s) { bm_from_words(s, workload); }));
  }
  for (const bool thp : {false, true}) {
    phyr_bench::apply_settings(benchmark::RegisterBenchmark(
        phyr_bench::bench_name("pin", thp ? "live_thp" : "live_4k", "16MiB", "phyr_pinned_buffer")
            .c_str(),
        [thp](benchmark::State& s) { bm_pin(s, thp); }));
  }
  return true;
}();

}  // namespace
