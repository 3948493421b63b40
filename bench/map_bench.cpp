// map / unmap: identity_mapper (aliases the CPU list, O(1)) against dma_direct_map_sg (fills
// the DMA half of every entry) and the dma_direct_unmap_sg walk (per entry: bus-address flag,
// dma_to_phys, swiotlb range test; bench/baseline/swiotlb_unmap.hpp). map/frag/1entry and
// map/frag/1e6entries show that the identity map is O(1).
//
// map_iommu / unmap_iommu: phyr_iommu (iommu_mapper), phyr_sg_bridge (sg_bridge_mapper running
// the kernel-style iommu_dma_map_sg of bench/baseline/legacy_iommu.hpp) and scatterlist (that
// same iommu_dma_map_sg / iommu_dma_unmap_sg on a table built beforehand). All three share one
// domain type (IOVA allocator + page table), so the lists are what differs. Each map is undone
// outside the timed region of `map_iommu`, and each unmap's map outside that of `unmap_iommu`.

#include <algorithm>
#include <type_traits>

#include "baseline/legacy_iommu.hpp"
#include "baseline/swiotlb_unmap.hpp"
#include "compare.hpp"
#include "phyr/map/identity_mapper.hpp"
#include "phyr/map/iommu/iommu_mapper.hpp"
#include "phyr/map/sg_bridge_mapper.hpp"

namespace {

using namespace phyr_bench;
using baseline::domain;
using baseline::legacy_iommu;
using baseline::legacy_iommu_unmap;

// ---- identity vs dma-direct --------------------------------------------------------------------

void bm_map_identity(benchmark::State& state, std::string wl, std::string size) {
  const input& in = get_input(wl, size);
  const cpu_list* lp = shared_list(in);
  if (!check(state, lp != nullptr, "range_list build is wrong")) return;
  const cpu_list& l = *lp;
  phyr::identity_mapper<bench_bus> m;
  std::size_t entries = 0;
  std::uint64_t total = 0;
  cpu_stopwatch watch;
  for (auto _ : state) {
    auto mp = m.try_map(l, phyr::dma_direction::to_device);
    benchmark::DoNotOptimize(mp);
    entries = mp ? mp->size() : 0;
    total = mp ? mp->total_bytes() : 0;
  }
  watch.stop();
  if (!check(state, entries == in.runs && total == in.bytes, "identity map is wrong")) return;
  {
    auto mp = m.try_map(l, phyr::dma_direction::to_device);
    std::uint64_t sum = 0;
    if (mp) {
      for (const phyr::dma_range<bench_bus> r : *mp) sum += r.len();
    }
    if (!check(state, sum == in.bytes, "identity mapping walk is wrong")) return;
  }
  // The DMA list is the CPU list: the mapping object is all it adds.
  set_counters(state, watch, in, static_cast<double>(entries),
               static_cast<double>(sizeof(phyr::identity_mapping<bench_bus>)) / in.pages_of_data());
}

void bm_map_scatterlist(benchmark::State& state, std::string wl, std::string size) {
  const input& in = get_input(wl, size);
  sg::sg_table* tp = shared_sg(in);
  if (!check(state, tp != nullptr, "scatterlist build is wrong")) return;
  sg::sg_table& t = *tp;
  int mapped = 0;
  cpu_stopwatch watch;
  for (auto _ : state) {
    mapped = sg::dma_direct_map_sg(t.sgl, static_cast<int>(t.nents), ~std::uint64_t{0});
    benchmark::DoNotOptimize(mapped);
    benchmark::ClobberMemory();
  }
  watch.stop();
  std::uint64_t sum = 0;
  sg::for_each_sg(t.sgl, t.nents, [&](sg::scatterlist& s, unsigned) {
    if (sg::sg_dma_address(&s) == sg::sg_phys(&s)) sum += sg::sg_dma_len(&s);
  });
  if (!check(state, static_cast<unsigned>(mapped) == in.sg_entries && sum == in.bytes,
             "dma_direct_map_sg result is wrong"))
    return;
  // The DMA half of the entries is what mapping writes.
  set_counters(state, watch, in, static_cast<double>(mapped),
               static_cast<double>(sg_table_bytes(t)) / 2.0 / in.pages_of_data());
}

void bm_unmap_identity(benchmark::State& state, std::string wl, std::string size) {
  const input& in = get_input(wl, size);
  const cpu_list* lp = shared_list(in);
  if (!check(state, lp != nullptr, "range_list build is wrong")) return;
  const cpu_list& l = *lp;
  phyr::identity_mapper<bench_bus> m;
  bool ok = true;
  cpu_stopwatch watch;
  for (auto _ : state) {
    // Mapping is O(1) (measured by map/); timing it here is cheaper than pausing the timer.
    auto mp = m.try_map(l, phyr::dma_direction::to_device);
    benchmark::DoNotOptimize(mp);
    ok &= mp && static_cast<bool>(m.try_unmap(std::move(*mp)));
    benchmark::ClobberMemory();
  }
  watch.stop();
  if (!check(state, ok, "identity unmap failed")) return;
  set_counters(state, watch, in, static_cast<double>(l.size()), 0.0);
}

void bm_unmap_scatterlist(benchmark::State& state, std::string wl, std::string size) {
  const input& in = get_input(wl, size);
  sg::sg_table* tp = shared_sg(in);
  if (!check(state, tp != nullptr, "scatterlist build is wrong")) return;
  sg::sg_table& t = *tp;
  const int mapped = sg::dma_direct_map_sg(t.sgl, static_cast<int>(t.nents), ~std::uint64_t{0});
  if (!check(state, static_cast<unsigned>(mapped) == in.sg_entries, "dma_direct_map_sg failed"))
    return;
  // A 64 MiB bounce pool below 4 GiB, where x86-64 puts the default swiotlb; no input is there.
  const baseline::swiotlb_pool pool{0x8000000, 0xc000000};
  unsigned bounced = 0;
  cpu_stopwatch watch;
  for (auto _ : state) {
    bounced = baseline::dma_direct_unmap_sg_walk(t.sgl, mapped, pool);
    benchmark::DoNotOptimize(bounced);
    benchmark::ClobberMemory();
  }
  watch.stop();
  if (!check(state, bounced == 0, "unmap found bounce buffers")) return;
  set_counters(state, watch, in, static_cast<double>(mapped), 0.0);
}

// ---- IOMMU: phyr's mapper, phyr's sg bridge, and the kernel's iommu_dma_map_sg ---------------

using bridge = phyr::sg_bridge_mapper<bench_bus, legacy_iommu, legacy_iommu_unmap, bench_allocator>;

/// Expected DMA entries: a page list maps to one IOVA block, so one entry; dio512 chunks are
/// each ragged at both ends, so one entry each.
[[nodiscard]] std::size_t iommu_entries(const input& in) noexcept {
  return in.is_pages() ? 1 : in.chunks.size();
}

/// Checks a mapping against the domain: every entry translates back through the page table
/// to the CPU bytes at the same offset of the buffer (probing each entry's first byte).
template <class Mapping>
[[nodiscard]] bool mapping_ok(const Mapping& mp, const cpu_list& l, domain& d) noexcept {
  std::uint64_t bytes = 0;
  auto cpu = l.begin();
  std::uint64_t cpu_off = 0;  // bytes of *cpu already matched
  for (const phyr::dma_range<bench_bus> r : mp) {
    auto t = d.translate(r.addr().value());
    if (!t || cpu == l.end() || t->value() != cpu->addr().value() + cpu_off) return false;
    bytes += r.len();
    std::uint64_t left = r.len();
    while (left != 0 && cpu != l.end()) {
      const std::uint64_t take = std::min(left, cpu->len() - cpu_off);
      left -= take;
      cpu_off += take;
      if (cpu_off == cpu->len()) {
        ++cpu;
        cpu_off = 0;
      }
    }
  }
  return bytes == l.total_bytes();
}

template <class Mapper>
void run_map_iommu(benchmark::State& state, const input& in, const cpu_list& l, Mapper& m,
                   bool time_unmap) {
  std::size_t entries = 0;
  bool ok = true;
  cpu_stopwatch watch;
  time_map_or_unmap(
      state, watch, time_unmap, [&] { return m.try_map(l, phyr::dma_direction::bidirectional); },
      [&](auto& mp) {
        ok &= static_cast<bool>(mp);
        if (mp) {
          entries = mp->size();
          ok &= static_cast<bool>(m.try_unmap(std::move(*mp)));
        }
      });
  watch.stop();
  if (!check(state, ok && entries == iommu_entries(in), "iommu map/unmap went wrong")) return;
  set_counters(state, watch, in, static_cast<double>(entries), 0.0);
}

template <class Mapper>
void bm_iommu_phyr(benchmark::State& state, std::string wl, std::string size, bool time_unmap) {
  const input& in = get_input(wl, size);
  const cpu_list* lp = shared_list(in);
  if (!check(state, lp != nullptr, "range_list build is wrong")) return;
  const cpu_list& l = *lp;
  domain d{bench_allocator{}};
  auto make = [&]() {
    if constexpr (std::is_same_v<Mapper, bridge>) {
      return bridge{legacy_iommu{&d}, legacy_iommu_unmap{&d}, bench_allocator{}, 0x80000000u};
    } else {
      return Mapper{d};
    }
  };
  Mapper m = make();
  {
    auto mp = m.try_map(l, phyr::dma_direction::bidirectional);
    const bool ok = mp && mp->size() == iommu_entries(in) && mapping_ok(*mp, l, d);
    if (mp) (void)m.try_unmap(std::move(*mp));
    if (!check(state, ok && d.stats().page_table.leaves() == 0, "iommu mapping is wrong")) return;
  }
  run_map_iommu(state, in, l, m, time_unmap);
}

void bm_map_iommu_phyr(benchmark::State& s, std::string wl, std::string size) {
  bm_iommu_phyr<phyr::iommu_mapper<bench_bus, bench_allocator>>(s, wl, size, false);
}
void bm_unmap_iommu_phyr(benchmark::State& s, std::string wl, std::string size) {
  bm_iommu_phyr<phyr::iommu_mapper<bench_bus, bench_allocator>>(s, wl, size, true);
}
void bm_map_iommu_bridge(benchmark::State& s, std::string wl, std::string size) {
  bm_iommu_phyr<bridge>(s, wl, size, false);
}
void bm_unmap_iommu_bridge(benchmark::State& s, std::string wl, std::string size) {
  bm_iommu_phyr<bridge>(s, wl, size, true);
}

/// The baseline: a table built once from the pages (as a driver holds it), mapped and unmapped
/// by the kernel's IOMMU path.
void bm_iommu_scatterlist(benchmark::State& state, std::string wl, std::string size,
                          bool time_unmap) {
  const input& in = get_input(wl, size);
  sg::sg_table* tp = shared_sg(in);
  if (!check(state, tp != nullptr, "scatterlist build is wrong")) return;
  sg::sg_table& t = *tp;
  domain d{bench_allocator{}};
  const legacy_iommu map{&d};
  const legacy_iommu_unmap unmap{&d};
  const int nents = static_cast<int>(t.nents);
  {
    const int n = map(t.sgl, nents, phyr::dma_direction::bidirectional);
    bool ok = n == static_cast<int>(iommu_entries(in));
    std::uint64_t bytes = 0;
    sg::for_each_sg(t.sgl, static_cast<unsigned>(n > 0 ? n : 0), [&](sg::scatterlist& s, unsigned) {
      bytes += s.dma_length;
      ok &= static_cast<bool>(d.translate(s.dma_address));
    });
    ok &= bytes == in.bytes && sg_ok(t, in);  // CPU fields restored
    if (n > 0) unmap(t.sgl, nents, phyr::dma_direction::bidirectional);
    if (!check(state, ok && d.stats().page_table.leaves() == 0, "legacy iommu map is wrong"))
      return;
  }
  int n = 0;
  cpu_stopwatch watch;
  time_map_or_unmap(
      state, watch, time_unmap,
      [&] { return n = map(t.sgl, nents, phyr::dma_direction::bidirectional); },
      [&](int mapped) {
        if (mapped > 0) unmap(t.sgl, nents, phyr::dma_direction::bidirectional);
      });
  watch.stop();
  if (!check(state, n == static_cast<int>(iommu_entries(in)), "legacy iommu map failed")) return;
  set_counters(state, watch, in, static_cast<double>(n), 0.0);
}
void bm_map_iommu_scatterlist(benchmark::State& s, std::string wl, std::string size) {
  bm_iommu_scatterlist(s, wl, size, false);
}
void bm_unmap_iommu_scatterlist(benchmark::State& s, std::string wl, std::string size) {
  bm_iommu_scatterlist(s, wl, size, true);
}

[[maybe_unused]] const bool registered = [] {
  for_each_workload({"1GiB"}, [](const std::string& wl, const std::string& s) {
    register_compare("map", wl, s, "phyr_identity", bm_map_identity);
    register_compare("map", wl, s, "scatterlist", bm_map_scatterlist);
    register_compare("unmap", wl, s, "phyr_identity", bm_unmap_identity);
    register_compare("unmap", wl, s, "scatterlist", bm_unmap_scatterlist);
  });
  // O(1): one entry and a million entries (fragmented pages).
  for (const char* s : {"1entry", "1e6entries"}) {
    register_compare("map", "frag", s, "phyr_identity", bm_map_identity);
    register_compare("map", "frag", s, "scatterlist", bm_map_scatterlist);
  }
  for_each_workload({"1GiB"}, [](const std::string& wl, const std::string& s) {
    const std::string sz = wl == "dio512" ? "16MiB" : s;  // one IOVA block per chunk: keep it short
    register_compare("map_iommu", wl, sz, "phyr_iommu", bm_map_iommu_phyr);
    register_compare("map_iommu", wl, sz, "phyr_sg_bridge", bm_map_iommu_bridge);
    register_compare("map_iommu", wl, sz, "scatterlist", bm_map_iommu_scatterlist);
    register_compare("unmap_iommu", wl, sz, "phyr_iommu", bm_unmap_iommu_phyr);
    register_compare("unmap_iommu", wl, sz, "phyr_sg_bridge", bm_unmap_iommu_bridge);
    register_compare("unmap_iommu", wl, sz, "scatterlist", bm_unmap_iommu_scatterlist);
  });
  return true;
}();

}  // namespace
