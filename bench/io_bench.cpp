// io: the per-I/O path a driver runs millions of times a second (issue 14 item 4), for 4 KiB,
// 16 KiB, 128 KiB and 1 MiB I/Os on contiguous pages (`contig`: one run) and scattered pages
// (`frag`: every page its own run). Each iteration is one whole I/O, from the page frames to
// the released list:
//   phyr_range_list  range_list::try_append_pages -> identity_mapper::try_map -> try_split to
//                    the device's limits (dma_constraints' defaults: 64 KiB segments, no segment
//                    across 4 GiB), every segment read -> unmap -> the list released
//   scatterlist      sg_alloc_table_from_pages_segment(max_segment = 64 KiB, the device's
//                    dma_get_max_seg_size) -> dma_direct_map_sg -> for_each_sg, every segment
//                    read -> dma_direct_unmap_sg (bench/baseline/swiotlb_unmap.hpp) ->
//                    sg_free_table
// Both sides read the same segments (count, bytes and the sum of their DMA addresses are checked
// against each other and against the input) and allocate from the same recycling heap.
// Counters: ns_per_io (CPU ns per I/O), allocs_per_io (heap allocations per I/O: calls into the
// structures' allocator plus global operator new calls, both counted over the timed loop),
// segments, entries (list entries: runs for phyr, table entries for the scatterlist),
// inline_entries (the entries a range_list holds without a heap segment).
// NVMe PRP lists are not part of this family yet: device/nvme/ landed after it was written.

#include "baseline/swiotlb_unmap.hpp"
#include "compare.hpp"
#include "phyr/device/constraints.hpp"
#include "phyr/device/split.hpp"
#include "phyr/map/identity_mapper.hpp"

namespace {

using namespace phyr_bench;

/// What one I/O handed the device.
struct io_tally {
  std::uint64_t segments = 0;
  std::uint64_t bytes = 0;
  std::uint64_t addr_sum = 0;  // sum of the segments' DMA addresses
  bool ok = false;
  friend bool operator==(const io_tally&, const io_tally&) = default;
};

/// The device limits both sides honour.
constexpr phyr::dma_constraints device_limits{};
static_assert(device_limits.max_segment_size == 64 * 1024);

/// The segments expected from the input: each run cut every 64 KiB (the inputs' runs start
/// aligned and never cross 4 GiB, so the boundary never cuts).
[[nodiscard]] io_tally expected(const input& in) noexcept {
  io_tally t;
  const std::uint64_t seg = device_limits.max_segment_size;
  std::uint64_t start = 0;
  std::uint64_t len = 0;
  auto flush = [&] {
    for (std::uint64_t off = 0; off < len; off += seg) {
      ++t.segments;
      t.bytes += len - off < seg ? len - off : seg;
      t.addr_sum += start + off;
    }
  };
  for (std::size_t i = 0; i < in.pfns.size(); ++i) {
    const std::uint64_t a = in.pfns[i] << phyr::page_shift;
    if (len != 0 && a == start + len) {
      len += phyr::page_size;
      continue;
    }
    flush();
    start = a;
    len = phyr::page_size;
  }
  flush();
  t.ok = true;
  return t;
}

[[nodiscard]] io_tally phyr_io(const input& in,
                               const phyr::identity_mapper<bench_bus>& m) noexcept {
  io_tally t;
  cpu_list l;
  if (!l.try_append_pages(in.pfns, 0, in.bytes)) return t;
  auto mp = m.try_map(l, phyr::dma_direction::to_device);
  if (!mp) return t;
  if (auto segs = phyr::try_split(*mp, device_limits)) {
    for (const phyr::dma_range<bench_bus> s : *segs) {
      ++t.segments;
      t.bytes += s.len();
      t.addr_sum += s.addr().value();
    }
    t.ok = true;
  }
  (void)m.try_unmap(std::move(*mp));
  return t;
}

/// A 64 MiB bounce pool below 4 GiB, where x86-64 puts the default swiotlb; no input is there.
constexpr baseline::swiotlb_pool bounce_pool{0x8000000, 0xc000000};

[[nodiscard]] io_tally scatterlist_io(const input& in, bench_allocator& a) noexcept {
  io_tally t;
  sg::sg_table table;
  if (!sg::sg_alloc_table_from_pages_segment(
          table, in.pages, 0, in.bytes, static_cast<unsigned>(device_limits.max_segment_size), a))
    return t;
  const int n = sg::dma_direct_map_sg(table.sgl, static_cast<int>(table.nents), ~std::uint64_t{0});
  sg::for_each_sg(table.sgl, static_cast<unsigned>(n), [&](sg::scatterlist& s, unsigned) {
    ++t.segments;
    t.bytes += sg::sg_dma_len(&s);
    t.addr_sum += sg::sg_dma_address(&s);
  });
  t.ok = n > 0 && baseline::dma_direct_unmap_sg_walk(table.sgl, n, bounce_pool) == 0;
  sg::sg_free_table(table, a);
  return t;
}

/// Runs `io()` per iteration; checks it once against the input; counts allocations while timed.
template <class Io>
void bm_io(benchmark::State& state, const input& in, Io io, double list_entries,
           double bytes_of_structure) {
  const io_tally want = expected(in);
  if (!check(state, io() == want, "the I/O's segments differ from the input's")) return;
  auto& heap = recycling_heap::instance();
  const std::uint64_t heap0 = heap.allocations();
  const std::uint64_t new0 = operator_new_calls();
  io_tally got;
  cpu_stopwatch watch;
  for (auto _ : state) {
    got = io();
    benchmark::DoNotOptimize(got);
  }
  watch.stop();
  const std::uint64_t allocs = heap.allocations() - heap0 + operator_new_calls() - new0;
  if (!check(state, got == want, "the I/O's segments changed while timed")) return;
  const double iters = static_cast<double>(state.iterations());
  set_counters(state, watch, in, list_entries, bytes_of_structure / in.pages_of_data());
  state.counters["ns_per_io"] = iters > 0 ? watch.elapsed_ns() / iters : 0;
  state.counters["allocs_per_io"] = iters > 0 ? static_cast<double>(allocs) / iters : 0;
  state.counters["segments"] = static_cast<double>(want.segments);
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
  const auto io = [&]() noexcept { return phyr_io(in, m); };
  bm_io(state, in, io, static_cast<double>(in.runs), bytes);
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
                   t, in.pages, 0, in.bytes, static_cast<unsigned>(device_limits.max_segment_size),
                   a)),
               "scatterlist build failed"))
      return;
    bytes = static_cast<double>(sg_table_bytes(t) + sizeof(sg::sg_table));
    entries = static_cast<double>(t.nents);
    sg::sg_free_table(t, a);
  }
  const auto io = [&]() noexcept { return scatterlist_io(in, a); };
  bm_io(state, in, io, entries, bytes);
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
    }
  }
  return true;
}();

}  // namespace
