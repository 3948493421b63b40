// io: the per-I/O path a driver runs millions of times a second (issue 14 item 4), for 4 KiB,
// 16 KiB, 128 KiB and 1 MiB I/Os on contiguous pages (`contig`: one run) and scattered pages
// (`frag`: every page its own run). Each iteration is one whole I/O, from the page frames to
// the released list, as bench/io_path.hpp defines it for each side: build, map, split to the
// device's limits with every segment read (split_view::for_each), the NVMe PRP data pointer (try_build_prp against
// the kernel's nvme_pci_setup_prps walking the mapped scatterlist), unmap, free.
// Both sides read the same segments and produce the same PRP entries (count, bytes and sums are
// checked against each other and against the input, the PRP lists read back once before
// timing) and allocate from the same recycling heap.
// Counters: ns_per_io (CPU ns per I/O), allocs_per_io (heap allocations per I/O: calls into the
// structures' allocator plus global operator new calls, both counted over the timed loop),
// segments, prp_entries, entries (list entries: runs for phyr, table entries for the
// scatterlist), inline_entries (the entries a range_list holds without a heap segment).
//
// io_paired/<wl>/<size>/phyr_range_list: the same two I/Os timed in alternation, batch against
// batch (workloads.hpp's time_paired), for a ratio that the VM's changes of pace between rows
// do not move. Counters: ns_per_io_phyr, ns_per_io_scatterlist (medians over the batches),
// speedup (the median of the batches' scatterlist / phyr time ratios), calls_per_batch.

#include "compare.hpp"
#include "io_path.hpp"

namespace {

using namespace phyr_bench;

/// One timed I/O as both bm_io and bm_io_paired make it: the result built in place, forced to
/// memory, and compared field by field with `want`. (Assigning it to a variable declared
/// outside the loop made GCC copy it with 16-byte loads of the fields the I/O had just stored 8
/// bytes at a time; such a load cannot take its data from the pending stores and waits for
/// them, which held the 4 KiB I/O at ~18 ns against ~12 ns without the copy.)
template <class Io>
[[nodiscard]] PHYR_ALWAYS_INLINE bool timed_io(const Io& io, const io_tally& want) noexcept {
  io_tally got = io();
  benchmark::DoNotOptimize(got);
  return got == want;
}

/// Runs `io()` per iteration; checks `verify()` (the same I/O, reading its PRP list back) once
/// against the input, and every timed I/O's result; counts allocations while timed.
template <class Verify, class Io>
void bm_io(benchmark::State& state, const input& in, Verify verify, Io io, double list_entries,
           double bytes_of_structure) {
  io_tally want = expected(in);
  if (!check(state, verify() == want, "the I/O's segments or PRPs differ from the input's"))
    return;
  want.prp_sum = 0;  // not read back while timed
  auto& heap = recycling_heap::instance();
  const std::uint64_t heap0 = heap.allocations();
  const std::uint64_t new0 = operator_new_calls();
  bool same = true;
  cpu_stopwatch watch;
  for (auto _ : state) same = timed_io(io, want) && same;
  watch.stop();
  const std::uint64_t allocs = heap.allocations() - heap0 + operator_new_calls() - new0;
  if (!check(state, same, "the I/O's segments changed while timed")) return;
  const double iters = static_cast<double>(state.iterations());
  set_counters(state, watch, in, list_entries, bytes_of_structure / in.pages_of_data());
  state.counters["ns_per_io"] = iters > 0 ? watch.elapsed_ns() / iters : 0;
  state.counters["allocs_per_io"] = iters > 0 ? static_cast<double>(allocs) / iters : 0;
  state.counters["segments"] = static_cast<double>(want.segments);
  state.counters["prp_entries"] = static_cast<double>(want.prp_entries);
  state.counters["inline_entries"] = cpu_list::inline_capacity;
}

void bm_io_phyr(benchmark::State& state, std::string wl, std::string size) {
  const input& in = get_input(wl, size);
  const phyr::identity_mapper<bench_bus> m;
  double bytes = 0;
  {
    cpu_list l;
    if (!check(state, build_list(l, in) && list_ok(l, in), "range_list build is wrong")) return;
    bytes = static_cast<double>(l.bytes_used());
  }
  prp_page page;
  const auto verify = [&]() noexcept { return phyr_io<true>(in, m, page); };
  const auto io = [&]() noexcept { return phyr_io<false>(in, m, page); };
  bm_io(state, in, verify, io, static_cast<double>(in.runs), bytes);
}

void bm_io_scatterlist(benchmark::State& state, std::string wl, std::string size) {
  const input& in = get_input(wl, size);
  bench_allocator a;
  double bytes = 0;
  double entries = 0;
  {
    sg::sg_table t;
    if (!check(state,
               static_cast<bool>(sg::sg_alloc_table_from_pages_segment(
                   t, in.pages, 0, in.bytes, probed.max_segment,
                   a)),
               "scatterlist build failed"))
      return;
    bytes = static_cast<double>(sg_table_bytes(t) + sizeof(sg::sg_table));
    entries = static_cast<double>(t.nents);
    sg::sg_free_table(t, a);
  }
  const auto verify = [&]() noexcept { return scatterlist_io<true>(in, a); };
  const auto io = [&]() noexcept { return scatterlist_io<false>(in, a); };
  bm_io(state, in, verify, io, entries, bytes);
}

void bm_io_paired(benchmark::State& state, std::string wl, std::string size) {
  const input& in = get_input(wl, size);
  const phyr::identity_mapper<bench_bus> m;
  bench_allocator a;
  prp_page page;
  const io_tally want = expected(in);
  if (!check(state, phyr_io<true>(in, m, page) == want && scatterlist_io<true>(in, a) == want,
             "the I/O's segments or PRPs differ from the input's"))
    return;
  io_tally quick = want;
  quick.prp_sum = 0;  // not read back while timed
  paired_times t;
  const auto phyr_side = [&]() noexcept { return phyr_io<false>(in, m, page); };
  const auto sg_side = [&]() noexcept { return scatterlist_io<false>(in, a); };
  for (auto _ : state) {
    t = time_paired([&]() noexcept { return timed_io(phyr_side, quick); },
                    [&]() noexcept { return timed_io(sg_side, quick); });
  }
  if (!check(state, t.ok, "an I/O's segments changed while timed")) return;
  state.counters["ns_per_io_phyr"] = t.a_ns;
  state.counters["ns_per_io_scatterlist"] = t.b_ns;
  state.counters["speedup"] = t.b_over_a;
  state.counters["calls_per_batch"] = static_cast<double>(t.calls_per_batch);
}

[[maybe_unused]] const bool registered = [] {
  for (const char* wl : {"contig", "frag"}) {
    for (const char* size : {"4KiB", "16KiB", "128KiB", "1MiB"}) {
      using bench_fn = void (*)(benchmark::State&, std::string, std::string);
      for (auto [impl, fn] : {std::pair<const char*, bench_fn>{"phyr_range_list", bm_io_phyr},
                              std::pair<const char*, bench_fn>{"scatterlist", bm_io_scatterlist}}) {
        auto* b = benchmark::RegisterBenchmark(bench_name("io", wl, size, impl).c_str(), fn,
                                               std::string(wl), std::string(size));
        apply_settings(b);
        b->Unit(benchmark::kNanosecond);
      }
      apply_paired_settings(benchmark::RegisterBenchmark(
          bench_name("io_paired", wl, size, "phyr_range_list").c_str(), bm_io_paired,
          std::string(wl), std::string(size)));
    }
  }
  return true;
}();

}  // namespace
