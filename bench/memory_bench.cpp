// memory: bytes held per 4 KiB page of data by the CPU list, the DMA list and both, after an
// identity map (range_list: the mapping aliases the list; scatterlist: one 32-byte entry holds
// both halves, 16 bytes each; packed_list: the list a device is given as it stands, no DMA
// side). Measured from the recycling heap's live bytes, and checked against each structure's
// own bytes_used(). One iteration: nothing here is timed.

#include "compare.hpp"
#include "phyr/map/identity_mapper.hpp"

namespace {

using namespace phyr_bench;

void set_memory_counters(benchmark::State& state, const cpu_stopwatch& watch, const input& in,
                         double entries, double cpu, double dma, double entry_bytes) {
  const double p = in.pages_of_data();
  set_counters(state, watch, in, entries, (cpu + dma) / p);
  // The entries alone, without segment headers, slack or the list object.
  state.counters["entry_bytes_per_page"] = entry_bytes / p;
  state.counters["cpu_bytes_per_page"] = cpu / p;
  state.counters["dma_bytes_per_page"] = dma / p;
  state.counters["total_bytes_per_page"] = (cpu + dma) / p;
}

void bm_memory_range_list(benchmark::State& state, std::string wl, std::string size) {
  const input& in = get_input(wl, size);
  auto& heap = recycling_heap::instance();
  phyr::identity_mapper<bench_bus> m;
  double cpu = 0;
  double dma = 0;
  double entries = 0;
  double entry_bytes = 0;
  bool ok = true;
  cpu_stopwatch watch;
  for (auto _ : state) {
    const std::int64_t before = heap.live_bytes();
    cpu_list l;
    ok &= build_list(l, in) && list_ok(l, in);
    const std::int64_t after_cpu = heap.live_bytes();
    auto mp = m.try_map(l, phyr::dma_direction::to_device);
    ok &= mp && mp->size() == in.runs;
    const std::int64_t after_dma = heap.live_bytes();
    cpu = static_cast<double>(after_cpu - before) + static_cast<double>(sizeof(cpu_list));
    dma = static_cast<double>(after_dma - after_cpu) +
          static_cast<double>(sizeof(phyr::identity_mapping<bench_bus>));
    entries = static_cast<double>(l.size());
    entry_bytes = entries * static_cast<double>(sizeof(phyr::phys_range));
    ok &= static_cast<std::size_t>(after_cpu - before) + sizeof(cpu_list) == l.bytes_used();
    if (mp) ok &= static_cast<bool>(m.try_unmap(std::move(*mp)));
  }
  watch.stop();
  if (!check(state, ok, "range_list memory measurement is inconsistent")) return;
  set_memory_counters(state, watch, in, entries, cpu, dma, entry_bytes);
}

void bm_memory_scatterlist(benchmark::State& state, std::string wl, std::string size) {
  const input& in = get_input(wl, size);
  auto& heap = recycling_heap::instance();
  bench_allocator a;
  double cpu = 0;
  double dma = 0;
  double entries = 0;
  double entry_bytes = 0;
  bool ok = true;
  cpu_stopwatch watch;
  for (auto _ : state) {
    const std::int64_t before = heap.live_bytes();
    sg::sg_table t;
    ok &= build_sg(t, in, a) && sg_ok(t, in);
    ok &= sg::dma_direct_map_sg(t.sgl, static_cast<int>(t.nents), ~std::uint64_t{0}) ==
          static_cast<int>(t.nents);
    const auto table = static_cast<double>(heap.live_bytes() - before);
    ok &= table == static_cast<double>(sg_table_bytes(t));
    // One struct holds both halves: page_link/offset/length for the CPU, dma_address/
    // dma_length/dma_flags for the device, 16 bytes each (chain slots split alike).
    cpu = table / 2.0 + static_cast<double>(sizeof(sg::sg_table));
    dma = table / 2.0;
    entries = static_cast<double>(t.nents);
    entry_bytes = entries * static_cast<double>(sizeof(sg::scatterlist));
    sg::sg_free_table(t, a);
  }
  watch.stop();
  if (!check(state, ok, "scatterlist memory measurement is inconsistent")) return;
  set_memory_counters(state, watch, in, entries, cpu, dma, entry_bytes);
}

void bm_memory_packed(benchmark::State& state, std::string wl, std::string size) {
  const input& in = get_input(wl, size);
  auto& heap = recycling_heap::instance();
  double cpu = 0;
  double entries = 0;
  double entry_bytes = 0;
  bool ok = true;
  cpu_stopwatch watch;
  for (auto _ : state) {
    const std::int64_t before = heap.live_bytes();
    packed l;
    ok &= build_packed(l, in) && packed_ok(l, in);
    cpu = static_cast<double>(heap.live_bytes() - before) + static_cast<double>(sizeof(packed));
    ok &= cpu == static_cast<double>(l.bytes_used());
    entries = static_cast<double>(l.size());
    entry_bytes = static_cast<double>(l.entry_bytes());
  }
  watch.stop();
  if (!check(state, ok, "packed_list memory measurement is inconsistent")) return;
  // identity_mapper maps range_lists only; with no IOMMU the packed list is itself the list a
  // device is given (its blocks() are DMA addresses), so the DMA side adds nothing.
  set_memory_counters(state, watch, in, entries, cpu, 0.0, entry_bytes);
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
