// memory: bytes held per 4 KiB page of data by the CPU list, the DMA list and both, after an
// identity map (range_list: the mapping aliases the list; scatterlist: one 32-byte entry holds
// both halves, 16 bytes each; packed_list: the list a device is given as it stands, no DMA
// side). Measured from the recycling heap's live bytes, and checked against each structure's
// own bytes_used(). One iteration: nothing here is timed.

#include "compare.hpp"
#include "phyr/map/identity_mapper.hpp"

namespace {

using namespace phyr_bench;

/// What one measurement found: the bytes on each side and the entries (bytes are doubles,
/// like the counters they become).
struct memory_sample {
  double cpu = 0;
  double dma = 0;
  double entries = 0;
  double entry_bytes = 0;  // the entries alone, without segment headers, slack or the list
};

/// Calls `measure(heap, sample)` once per iteration: it builds its structure, records what the
/// recycling heap says it holds, frees it, and returns whether that agrees with the
/// structure's own accounting. Then reports the last sample per page of data.
template <class Measure>
void bm_memory(benchmark::State& state, const input& in, const char* what, Measure measure) {
  auto& heap = recycling_heap::instance();
  memory_sample s;
  bool ok = true;
  cpu_stopwatch watch;
  for (auto _ : state) ok &= measure(heap, s);
  watch.stop();
  if (!check(state, ok, what)) return;
  const double p = in.pages_of_data();
  set_counters(state, watch, in, s.entries, (s.cpu + s.dma) / p);
  state.counters["entry_bytes_per_page"] = s.entry_bytes / p;
  state.counters["cpu_bytes_per_page"] = s.cpu / p;
  state.counters["dma_bytes_per_page"] = s.dma / p;
  state.counters["total_bytes_per_page"] = (s.cpu + s.dma) / p;
}

void bm_memory_range_list(benchmark::State& state, std::string wl, std::string size) {
  const input& in = get_input(wl, size);
  phyr::identity_mapper<bench_bus> m;
  bm_memory(
      state, in, "range_list memory measurement is inconsistent",
      [&](recycling_heap& heap, memory_sample& s) {
        const std::int64_t before = heap.live_bytes();
        cpu_list l;
        bool ok = build_list(l, in) && list_ok(l, in);
        const std::int64_t after_cpu = heap.live_bytes();
        auto mp = m.try_map(l, phyr::dma_direction::to_device);
        ok &= mp && mp->size() == in.runs;
        const std::int64_t after_dma = heap.live_bytes();
        s.cpu = static_cast<double>(after_cpu - before) + static_cast<double>(sizeof(cpu_list));
        s.dma = static_cast<double>(after_dma - after_cpu) +
                static_cast<double>(sizeof(phyr::identity_mapping<bench_bus>));
        s.entries = static_cast<double>(l.size());
        s.entry_bytes = s.entries * static_cast<double>(sizeof(phyr::phys_range));
        ok &= static_cast<std::size_t>(after_cpu - before) + sizeof(cpu_list) == l.bytes_used();
        if (mp) ok &= static_cast<bool>(m.try_unmap(std::move(*mp)));
        return ok;
      });
}

void bm_memory_scatterlist(benchmark::State& state, std::string wl, std::string size) {
  const input& in = get_input(wl, size);
  bench_allocator a;
  bm_memory(state, in, "scatterlist memory measurement is inconsistent",
            [&](recycling_heap& heap, memory_sample& s) {
              const std::int64_t before = heap.live_bytes();
              sg::sg_table t;
              bool ok = build_sg(t, in, a) && sg_ok(t, in);
              ok &= sg::dma_direct_map_sg(t.sgl, static_cast<int>(t.nents), ~std::uint64_t{0}) ==
                    static_cast<int>(t.nents);
              const auto table = static_cast<double>(heap.live_bytes() - before);
              ok &= table == static_cast<double>(sg_table_bytes(t));
              // One struct holds both halves: page_link/offset/length for the CPU, dma_address/
              // dma_length/dma_flags for the device, 16 bytes each (chain slots split alike).
              s.cpu = table / 2.0 + static_cast<double>(sizeof(sg::sg_table));
              s.dma = table / 2.0;
              s.entries = static_cast<double>(t.nents);
              s.entry_bytes = s.entries * static_cast<double>(sizeof(sg::scatterlist));
              sg::sg_free_table(t, a);
              return ok;
            });
}

// identity_mapper maps range_lists only; with no IOMMU the packed list is itself the list a
// device is given (its blocks() are DMA addresses), so the DMA side adds nothing.
void bm_memory_packed(benchmark::State& state, std::string wl, std::string size) {
  const input& in = get_input(wl, size);
  bm_memory(state, in, "packed_list memory measurement is inconsistent",
            [&](recycling_heap& heap, memory_sample& s) {
              const std::int64_t before = heap.live_bytes();
              packed l;
              bool ok = build_packed(l, in) && packed_ok(l, in);
              s.cpu = static_cast<double>(heap.live_bytes() - before) +
                      static_cast<double>(sizeof(packed));
              ok &= s.cpu == static_cast<double>(l.bytes_used());
              s.entries = static_cast<double>(l.size());
              s.entry_bytes = static_cast<double>(l.entry_bytes());
              return ok;
            });
}

[[maybe_unused]] const bool registered = [] {
  for_each_workload({"16MiB", "1GiB"}, [](const std::string& wl, const std::string& s) {
    register_compare("memory", wl, s, "phyr_range_list", bm_memory_range_list, true);
    register_compare("memory", wl, s, "phyr_packed", bm_memory_packed, true);
    register_compare("memory", wl, s, "scatterlist", bm_memory_scatterlist, true);
  });
  return true;
}();

}  // namespace
