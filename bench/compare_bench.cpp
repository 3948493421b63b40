// phyr against the scatterlist baseline, twin by twin: every phyr benchmark here has a
// `scatterlist` twin on the same input in the same process, and every workload/size a `memcpy`
// of its input as the memory-bandwidth floor. Names and counters follow bench/workloads.hpp;
// bench/report.py turns the JSON into the comparison tables.
//
// What each side does, per op (the baseline side follows the kernel's code paths):
//   build        phyr_range_list: range_list::try_append_pages (pages) or try_append per chunk
//                (dio512); phyr_packed: packed_list::try_append_pages / try_append_all.
//                scatterlist: sg_alloc_table_from_pages_segment(UINT_MAX) from the same frames
//                as page pointers, or sg_alloc_table + sg_set_page per chunk for dio512 (the
//                block layer's blk_rq_map_sg, which knows its entry count in advance).
//                Every side includes releasing the result; all allocate from one warm heap.
//   walk         sum of entry lengths: range_list iteration, packed_list::for_each, for_each_sg.
//   blocks4k/64k block-aligned DMA addresses for a random-access engine: phyr try_blocks over
//                the identity mapping, packed_list::blocks; scatterlist: ib_umem_find_best_pgsz
//                style validation walk + rdma_for_each_block iteration of the mapped table.
//   map, unmap   identity_mapper (aliases the CPU list, O(1)) vs dma_direct_map_sg (fills the
//                DMA half of every entry) and the dma_direct_unmap_sg walk (per entry: bus
//                address flag, dma_to_phys, swiotlb range test).
//   map_iommu,   phyr_iommu: iommu_mapper; phyr_sg_bridge: sg_bridge_mapper running the
//   unmap_iommu  kernel-style iommu_dma_map_sg below; scatterlist: that same iommu_dma_map_sg /
//                iommu_dma_unmap_sg on a table built beforehand. All three share one domain
//                type (IOVA allocator + page table), so the lists are what differs.
//   memory       bytes held by the CPU list, the DMA list, and both, after an identity map.
//
// Structures that a benchmark only reads are built once per workload and size (shared_*), and
// every benchmark checks its result (entries, bytes, sums) once, so a broken build cannot
// look fast.

#include <benchmark/benchmark.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "phyr/compat/scatterlist.hpp"
#include "phyr/container/range_list.hpp"
#include "phyr/core/range.hpp"
#include "phyr/device/blocks.hpp"
#include "phyr/map/identity_mapper.hpp"
#include "phyr/map/iommu/iommu_mapper.hpp"
#include "phyr/map/sg_bridge_mapper.hpp"
#include "phyr/packed/packed_list.hpp"
#include "workloads.hpp"

namespace {

using phyr_bench::bench_allocator;
using phyr_bench::check;
using phyr_bench::get_input;
using phyr_bench::input;
using phyr_bench::set_counters;
namespace sg = phyr::compat;

using cpu_list = phyr::range_list<phyr::phys_range, bench_allocator>;
using packed = phyr::packed_list<phyr::cpu_phys, bench_allocator>;

struct bench_bus {};

// ---- the two builders on one input -------------------------------------------------------------

[[nodiscard]] bool build_list(cpu_list& l, const input& in) noexcept {
  if (in.is_pages()) return static_cast<bool>(l.try_append_pages(in.pfns, 0, in.bytes));
  for (const phyr::phys_range& c : in.chunks) {
    if (!l.try_append(c)) return false;
  }
  return true;
}

[[nodiscard]] bool build_sg(sg::sg_table& t, const input& in, bench_allocator& a) noexcept {
  if (in.is_pages()) {
    return static_cast<bool>(
        sg::sg_alloc_table_from_pages_segment(t, in.pages, 0, in.bytes, UINT_MAX, a));
  }
  if (!sg::sg_alloc_table(t, static_cast<unsigned>(in.chunks.size()), a)) return false;
  sg::scatterlist* s = t.sgl;
  for (const phyr::phys_range& c : in.chunks) {
    const std::uint64_t addr = c.addr().value();
    sg::sg_set_page(s, sg::pfn_to_page(addr >> sg::page_shift), static_cast<unsigned>(c.len()),
                    static_cast<unsigned>(addr & (sg::page_size - 1)));
    s = sg::sg_next(s);
  }
  return true;
}

[[nodiscard]] std::uint64_t list_sum(const cpu_list& l) noexcept {
  std::uint64_t sum = 0;
  for (const phyr::phys_range& r : l) sum += r.len();
  return sum;
}

[[nodiscard]] bool build_packed(packed& l, const input& in) noexcept {
  if (in.is_pages()) return static_cast<bool>(l.try_append_pages(in.pfns, 0, in.bytes));
  return static_cast<bool>(l.try_append_all(in.chunks));
}

[[nodiscard]] std::uint64_t packed_sum(const packed& l) noexcept {
  std::uint64_t sum = 0;
  l.for_each([&](const phyr::phys_range& r) noexcept { sum += r.len(); });
  return sum;
}

[[nodiscard]] bool packed_ok(const packed& l, const input& in) noexcept {
  return l.size() == in.runs && l.total_bytes() == in.bytes && packed_sum(l) == in.bytes;
}

[[nodiscard]] std::uint64_t sg_sum(const sg::sg_table& t) noexcept {
  std::uint64_t sum = 0;
  sg::for_each_sg(t.sgl, t.nents, [&](sg::scatterlist& s, unsigned) { sum += s.length; });
  return sum;
}

/// Checks a phyr list against the input: entry count, total bytes, and a walk.
[[nodiscard]] bool list_ok(const cpu_list& l, const input& in) noexcept {
  return l.size() == in.runs && l.total_bytes() == in.bytes && list_sum(l) == in.bytes;
}
[[nodiscard]] bool sg_ok(const sg::sg_table& t, const input& in) noexcept {
  return t.nents == in.sg_entries && sg_sum(t) == in.bytes;
}

// ---- shared prebuilt inputs ------------------------------------------------------------------
// Google Benchmark calls a benchmark function several times (iteration ramp-up, repetitions),
// and building a list of millions of entries each time would dominate the suite's run time.
// Benchmarks that only read a structure (walk, map, blocks, ...) share one built and checked
// copy per workload and size; one slot per type, so at most one large input of each is alive.
// They are built in fresh, address-ordered memory so that every side gets the same layout.

template <class T>
struct shared_slot {
  std::string key;
  std::unique_ptr<T> value;
  bool ok = false;
};

[[nodiscard]] const cpu_list* shared_list(const input& in) {
  static shared_slot<cpu_list> s;
  const std::string key = in.workload + "/" + in.size;
  if (s.key != key) {
    s.value.reset();
    const phyr_bench::fresh_memory fresh;
    s.value = std::make_unique<cpu_list>();
    s.ok = build_list(*s.value, in) && list_ok(*s.value, in);
    s.key = key;
  }
  return s.ok ? s.value.get() : nullptr;
}

[[nodiscard]] const packed* shared_packed(const input& in) {
  static shared_slot<packed> s;
  const std::string key = in.workload + "/" + in.size;
  if (s.key != key) {
    s.value.reset();
    const phyr_bench::fresh_memory fresh;
    s.value = std::make_unique<packed>();
    s.ok = build_packed(*s.value, in) && packed_ok(*s.value, in);
    s.key = key;
  }
  return s.ok ? s.value.get() : nullptr;
}

/// The table's CPU fields are what every user checks; users that map it (dma-direct, the
/// legacy IOMMU path) rewrite the DMA fields first, and the IOMMU path restores the CPU ones.
[[nodiscard]] sg::sg_table* shared_sg(const input& in) {
  static shared_slot<sg::unique_sg_table<bench_allocator>> s;
  const std::string key = in.workload + "/" + in.size;
  if (s.key != key) {
    s.value.reset();
    const phyr_bench::fresh_memory fresh;
    s.value = std::make_unique<sg::unique_sg_table<bench_allocator>>(bench_allocator{});
    s.ok = build_sg(s.value->table(), in, s.value->allocator()) && sg_ok(s.value->table(), in);
    s.key = key;
  }
  return s.ok ? &s.value->table() : nullptr;
}

/// Bytes of a table's arrays (chain slots included), sized as sg_alloc_table sizes them: while
/// more than 128 entries are left, an array of 128 slots takes 127 of them and chains on.
[[nodiscard]] std::uint64_t sg_table_bytes(const sg::sg_table& t) noexcept {
  const std::uint64_t max = sg::sg_max_single_alloc;
  const std::uint64_t n = t.orig_nents;
  const std::uint64_t full = n <= max ? 0 : (n - max + (max - 2)) / (max - 1);
  const std::uint64_t last = n - full * (max - 1);
  return (full * max + last) * sizeof(sg::scatterlist);
}

/// The kernel's dma_direct_unmap_sg for a coherent device: every entry is visited; a
/// bus-address entry only has its mark cleared, the others go through dma_direct_unmap_page,
/// which translates the address back and tests it against the swiotlb pool.
struct swiotlb_pool {
  std::uint64_t start = 0;
  std::uint64_t end = 0;
};
[[gnu::noinline]] unsigned dma_direct_unmap_sg_walk(sg::scatterlist* sgl, int nents,
                                                    const swiotlb_pool& pool) noexcept {
  unsigned bounced = 0;
  sg::for_each_sg(sgl, static_cast<unsigned>(nents), [&](sg::scatterlist& s, unsigned) {
    if ((s.dma_flags & sg::sg_dma_bus_address_flag) != 0) {
      s.dma_flags &= ~sg::sg_dma_bus_address_flag;
      return;
    }
    const std::uint64_t phys = sg::sg_dma_address(&s);  // dma_to_phys: identity here
    if (PHYR_UNLIKELY(phys >= pool.start && phys < pool.end)) ++bounced;
  });
  return bounced;
}

// ---- build -------------------------------------------------------------------------------------

// One timed build of a phyr list type: checked once untimed (contents and bytes per page),
// then built fresh every iteration.
template <class List, class Build, class Ok>
void bm_build_phyr(benchmark::State& state, const input& in, Build build, Ok ok,
                   const char* what) {
  double bytes_per_page = 0;
  {
    List l;
    if (!check(state, build(l, in) && ok(l, in), what)) return;
    bytes_per_page = static_cast<double>(l.bytes_used()) / in.pages_of_data();
  }
  std::size_t entries = 0;
  phyr_bench::cpu_stopwatch watch;
  for (auto _ : state) {
    List l;
    const bool built = build(l, in);
    benchmark::DoNotOptimize(built);
    entries = l.size();
    benchmark::DoNotOptimize(l);
    benchmark::ClobberMemory();
  }
  watch.stop();
  if (!check(state, entries == in.runs, "entries changed while timed")) return;
  set_counters(state, watch, in, static_cast<double>(entries), bytes_per_page);
}

void bm_build_range_list(benchmark::State& state, std::string wl, std::string size) {
  bm_build_phyr<cpu_list>(
      state, get_input(wl, size), [](cpu_list& l, const input& in) { return build_list(l, in); },
      [](const cpu_list& l, const input& in) { return list_ok(l, in); },
      "range_list build is wrong");
}

void bm_build_packed(benchmark::State& state, std::string wl, std::string size) {
  bm_build_phyr<packed>(
      state, get_input(wl, size), [](packed& l, const input& in) { return build_packed(l, in); },
      [](const packed& l, const input& in) { return packed_ok(l, in); },
      "packed_list build is wrong");
}

void bm_build_scatterlist(benchmark::State& state, std::string wl, std::string size) {
  const input& in = get_input(wl, size);
  bench_allocator a;
  double bytes_per_page = 0;
  {
    sg::sg_table t;
    const bool ok = build_sg(t, in, a) && sg_ok(t, in);
    bytes_per_page =
        static_cast<double>(sg_table_bytes(t) + sizeof(sg::sg_table)) / in.pages_of_data();
    sg::sg_free_table(t, a);
    if (!check(state, ok, "scatterlist build is wrong")) return;
  }
  std::size_t entries = 0;
  phyr_bench::cpu_stopwatch watch;
  for (auto _ : state) {
    sg::sg_table t;
    const bool ok = build_sg(t, in, a);
    benchmark::DoNotOptimize(ok);
    entries = t.nents;
    benchmark::DoNotOptimize(t);
    benchmark::ClobberMemory();
    sg::sg_free_table(t, a);
  }
  watch.stop();
  if (!check(state, entries == in.sg_entries, "scatterlist entries changed while timed")) return;
  set_counters(state, watch, in, static_cast<double>(entries), bytes_per_page);
}

void bm_memcpy(benchmark::State& state, std::string wl, std::string size) {
  const input& in = get_input(wl, size);
  const void* src = in.is_pages() ? static_cast<const void*>(in.pfns.data())
                                  : static_cast<const void*>(in.chunks.data());
  const std::size_t n = in.input_bytes();
  std::vector<unsigned char> dst(n);
  std::memcpy(dst.data(), src, n);  // fault the destination in before timing
  phyr_bench::cpu_stopwatch watch;
  for (auto _ : state) {
    std::memcpy(dst.data(), src, n);
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  watch.stop();
  if (!check(state, std::memcmp(dst.data(), src, n) == 0, "memcpy copy differs")) return;
  set_counters(state, watch, in,
               static_cast<double>(in.is_pages() ? in.pfns.size() : in.chunks.size()),
               static_cast<double>(n) / in.pages_of_data());
}

// ---- walk --------------------------------------------------------------------------------------

// One timed walk (sum of lengths) over a list built once per input; the sum is checked.
template <class List, class Sum>
void bm_walk_phyr(benchmark::State& state, const input& in, const List* lp, Sum sum_of,
                  const char* what) {
  if (!check(state, lp != nullptr, what)) return;
  const List& l = *lp;
  std::uint64_t sum = 0;
  phyr_bench::cpu_stopwatch watch;
  for (auto _ : state) {
    sum = sum_of(l);
    benchmark::DoNotOptimize(sum);
  }
  watch.stop();
  if (!check(state, sum == in.bytes, "walk sum is wrong")) return;
  set_counters(state, watch, in, static_cast<double>(l.size()),
               static_cast<double>(l.bytes_used()) / in.pages_of_data());
}

void bm_walk_range_list(benchmark::State& state, std::string wl, std::string size) {
  const input& in = get_input(wl, size);
  bm_walk_phyr(state, in, shared_list(in), [](const cpu_list& l) { return list_sum(l); },
               "range_list build is wrong");
}

void bm_walk_packed(benchmark::State& state, std::string wl, std::string size) {
  const input& in = get_input(wl, size);
  bm_walk_phyr(state, in, shared_packed(in), [](const packed& l) { return packed_sum(l); },
               "packed_list build is wrong");
}

void bm_walk_scatterlist(benchmark::State& state, std::string wl, std::string size) {
  const input& in = get_input(wl, size);
  sg::sg_table* tp = shared_sg(in);
  if (!check(state, tp != nullptr, "scatterlist build is wrong")) return;
  sg::sg_table& t = *tp;
  std::uint64_t sum = 0;
  phyr_bench::cpu_stopwatch watch;
  for (auto _ : state) {
    sum = sg_sum(t);
    benchmark::DoNotOptimize(sum);
  }
  watch.stop();
  if (!check(state, sum == in.bytes, "scatterlist walk sum is wrong")) return;
  set_counters(state, watch, in, static_cast<double>(t.nents),
               static_cast<double>(sg_table_bytes(t) + sizeof(sg::sg_table)) / in.pages_of_data());
}

// ---- map / unmap (identity vs dma-direct) ---------------------------------------------------

void bm_map_identity(benchmark::State& state, std::string wl, std::string size) {
  const input& in = get_input(wl, size);
  const cpu_list* lp = shared_list(in);
  if (!check(state, lp != nullptr, "range_list build is wrong")) return;
  const cpu_list& l = *lp;
  phyr::identity_mapper<bench_bus> m;
  std::size_t entries = 0;
  std::uint64_t total = 0;
  phyr_bench::cpu_stopwatch watch;
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
  phyr_bench::cpu_stopwatch watch;
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
  phyr_bench::cpu_stopwatch watch;
  for (auto _ : state) {
    // Mapping is O(1) (measured by map/); timing it here is cheaper than pausing the timer.
    auto mp = m.try_map(l, phyr::dma_direction::to_device);
    benchmark::DoNotOptimize(mp);
    ok &= mp && static_cast<bool>(m.unmap(std::move(*mp)));
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
  const swiotlb_pool pool{0x8000000, 0xc000000};
  unsigned bounced = 0;
  phyr_bench::cpu_stopwatch watch;
  for (auto _ : state) {
    bounced = dma_direct_unmap_sg_walk(t.sgl, mapped, pool);
    benchmark::DoNotOptimize(bounced);
    benchmark::ClobberMemory();
  }
  watch.stop();
  if (!check(state, bounced == 0, "unmap found bounce buffers")) return;
  set_counters(state, watch, in, static_cast<double>(mapped), 0.0);
}

// ---- memory ------------------------------------------------------------------------------------

void set_memory_counters(benchmark::State& state, const phyr_bench::cpu_stopwatch& watch,
                         const input& in, double entries, double cpu, double dma,
                         double entry_bytes) {
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
  auto& heap = phyr_bench::recycling_heap::instance();
  phyr::identity_mapper<bench_bus> m;
  double cpu = 0;
  double dma = 0;
  double entries = 0;
  double entry_bytes = 0;
  bool ok = true;
  phyr_bench::cpu_stopwatch watch;
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
    if (mp) ok &= static_cast<bool>(m.unmap(std::move(*mp)));
  }
  watch.stop();
  if (!check(state, ok, "range_list memory measurement is inconsistent")) return;
  set_memory_counters(state, watch, in, entries, cpu, dma, entry_bytes);
}

void bm_memory_scatterlist(benchmark::State& state, std::string wl, std::string size) {
  const input& in = get_input(wl, size);
  auto& heap = phyr_bench::recycling_heap::instance();
  bench_allocator a;
  double cpu = 0;
  double dma = 0;
  double entries = 0;
  double entry_bytes = 0;
  bool ok = true;
  phyr_bench::cpu_stopwatch watch;
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
  auto& heap = phyr_bench::recycling_heap::instance();
  double cpu = 0;
  double entries = 0;
  double entry_bytes = 0;
  bool ok = true;
  phyr_bench::cpu_stopwatch watch;
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

// ---- blocks (random-access engines: RDMA MR page lists, PRPs, page tables) --------------------

/// The kernel's ib_umem_find_best_pgsz for one candidate size: walks the DMA segments and
/// accumulates every bit where the buffer's VA and the DMA address disagree, plus every
/// interior segment end; returns `pgsz` when its low bits stay clear, else 0.
[[gnu::noinline]] std::uint64_t find_best_pgsz(sg::scatterlist* sgl, unsigned nents,
                                               std::uint64_t pgsz, std::uint64_t virt) noexcept {
  std::uint64_t va = virt;
  std::uint64_t mask = 0;
  sg::for_each_sg(sgl, nents, [&](sg::scatterlist& s, unsigned i) {
    mask |= sg::sg_dma_address(&s) ^ va;
    va += sg::sg_dma_len(&s);
    if (i != nents - 1) mask |= va;
  });
  return (mask & (pgsz - 1)) == 0 ? pgsz : 0;
}

/// The kernel's ib_block_iter (rdma_for_each_block): one DMA-aligned block per step, moving
/// to the next segment when the current one is used up.
struct rdma_block_iter {
  sg::scatterlist* sg = nullptr;
  unsigned nents = 0;
  unsigned pg_bit = 0;
  unsigned sg_advance = 0;
  std::uint64_t dma_addr = 0;

  rdma_block_iter(sg::scatterlist* sgl, unsigned n, std::uint64_t pgsz) noexcept
      : sg(sgl), nents(n), pg_bit(static_cast<unsigned>(__builtin_ctzll(pgsz))) {}
  [[nodiscard]] bool next() noexcept {
    if (nents == 0 || sg == nullptr) return false;
    dma_addr = sg::sg_dma_address(sg) + sg_advance;
    const unsigned block_offset =
        static_cast<unsigned>(dma_addr & ((std::uint64_t{1} << pg_bit) - 1));
    const unsigned delta = static_cast<unsigned>((std::uint64_t{1} << pg_bit) - block_offset);
    if (sg::sg_dma_len(sg) - sg_advance > delta) {
      sg_advance += delta;
    } else {
      sg_advance = 0;
      sg = sg::sg_next(sg);
      --nents;
    }
    return true;
  }
  [[nodiscard]] std::uint64_t block() const noexcept {
    return dma_addr & ~((std::uint64_t{1} << pg_bit) - 1);
  }
};

/// Blocks of `bs` bytes expected from a page input whose runs are all `bs`-aligned: their
/// count and the sum of their addresses, straight from the frames.
struct block_expect {
  std::uint64_t count = 0;
  std::uint64_t sum = 0;
};
[[nodiscard]] block_expect expected_blocks(const input& in, std::uint64_t bs) noexcept {
  block_expect e;
  for (const std::uint64_t pfn : in.pfns) {
    const std::uint64_t a = pfn << 12;
    if ((a & (bs - 1)) == 0) {
      ++e.count;
      e.sum += a;
    }
  }
  return e;
}

void bm_blocks_range_list(benchmark::State& state, std::string wl, std::string size,
                          std::uint64_t bs) {
  const input& in = get_input(wl, size);
  const cpu_list* lp = shared_list(in);
  if (!check(state, lp != nullptr, "range_list build is wrong")) return;
  const cpu_list& l = *lp;
  phyr::identity_mapper<bench_bus> m;
  auto mp = m.try_map(l, phyr::dma_direction::from_device);
  if (!check(state, static_cast<bool>(mp), "identity map failed")) return;
  const block_expect want = expected_blocks(in, bs);
  block_expect got;
  bool ok = true;
  phyr_bench::cpu_stopwatch watch;
  for (auto _ : state) {
    auto b = phyr::try_blocks(*mp, bs);
    ok &= static_cast<bool>(b);
    // Locals, not `got`: its address escapes, which would keep it in memory in the loop.
    std::uint64_t sum = 0;
    std::uint64_t count = 0;
    if (b) {
      for (const phyr::dma_addr<bench_bus> a : *b) {
        sum += a.value();
        ++count;
      }
    }
    got = {count, sum};
    benchmark::DoNotOptimize(got);
  }
  watch.stop();
  if (!check(state, ok && got.count == want.count && got.sum == want.sum,
             "range_list blocks are wrong"))
    return;
  set_counters(state, watch, in, static_cast<double>(got.count),
               static_cast<double>(l.bytes_used()) / in.pages_of_data());
}

void bm_blocks_packed(benchmark::State& state, std::string wl, std::string size, std::uint64_t bs) {
  const input& in = get_input(wl, size);
  const packed* lp = shared_packed(in);
  if (!check(state, lp != nullptr, "packed_list build is wrong")) return;
  const packed& l = *lp;
  const block_expect want = expected_blocks(in, bs);
  block_expect got;
  bool ok = true;
  phyr_bench::cpu_stopwatch watch;
  for (auto _ : state) {
    auto b = l.try_blocks(bs);
    ok &= static_cast<bool>(b);
    // Locals, not `got`: its address escapes, which would keep it in memory in the loop.
    std::uint64_t sum = 0;
    std::uint64_t count = 0;
    if (b) {
      for (const phyr::phys_addr a : *b) {
        sum += a.value();
        ++count;
      }
    }
    got = {count, sum};
    benchmark::DoNotOptimize(got);
  }
  watch.stop();
  if (!check(state, ok && got.count == want.count && got.sum == want.sum,
             "packed_list blocks are wrong"))
    return;
  set_counters(state, watch, in, static_cast<double>(got.count),
               static_cast<double>(l.bytes_used()) / in.pages_of_data());
}

void bm_blocks_scatterlist(benchmark::State& state, std::string wl, std::string size,
                           std::uint64_t bs) {
  const input& in = get_input(wl, size);
  sg::sg_table* tp = shared_sg(in);
  if (!check(state, tp != nullptr, "scatterlist build is wrong")) return;
  sg::sg_table& t = *tp;
  const int mapped = sg::dma_direct_map_sg(t.sgl, static_cast<int>(t.nents), ~std::uint64_t{0});
  if (!check(state, static_cast<unsigned>(mapped) == t.nents, "dma_direct_map_sg failed")) return;
  const block_expect want = expected_blocks(in, bs);
  const std::uint64_t virt = sg::sg_dma_address(t.sgl);  // a VA with the same offset
  block_expect got;
  bool ok = true;
  phyr_bench::cpu_stopwatch watch;
  for (auto _ : state) {
    ok &= find_best_pgsz(t.sgl, t.nents, bs, virt) == bs;
    std::uint64_t sum = 0;
    std::uint64_t count = 0;
    rdma_block_iter it(t.sgl, t.nents, bs);
    while (it.next()) {
      sum += it.block();
      ++count;
    }
    got = {count, sum};
    benchmark::DoNotOptimize(got);
  }
  watch.stop();
  if (!check(state, ok && got.count == want.count && got.sum == want.sum,
             "scatterlist blocks are wrong"))
    return;
  set_counters(state, watch, in, static_cast<double>(got.count),
               static_cast<double>(sg_table_bytes(t) + sizeof(sg::sg_table)) / in.pages_of_data());
}

// ---- IOMMU: phyr's mapper, phyr's sg bridge, and the kernel's iommu_dma_map_sg ---------------

using domain = phyr::basic_iommu_domain<bench_allocator>;
constexpr std::uint64_t granule = 4096;

/// The kernel's iommu_dma_map_sg / iommu_dma_unmap_sg for a coherent device with
/// dma_set_max_seg_size(UINT_MAX) and the default 4 GiB segment boundary, on a phyr domain
/// (same IOVA allocator and page table as phyr's mapper): pad every entry to whole granules
/// (stashing its offset and length in the DMA fields), allocate one IOVA block for the total,
/// map physically contiguous entries together (iommu_map_sg), then __finalise_sg merges the
/// entries into DMA segments and restores the CPU fields.
struct legacy_iommu {
  domain* d;

  int operator()(sg::scatterlist* sgl, int nents, phyr::dma_direction) const noexcept {
    constexpr std::uint64_t seg_mask = 0xffffffffull;
    constexpr std::uint64_t max_len = 0xffffffffull;
    std::uint64_t iova_len = 0;
    sg::scatterlist* prev = nullptr;
    sg::for_each_sg(sgl, static_cast<unsigned>(nents), [&](sg::scatterlist& s, unsigned) {
      const std::uint64_t off = s.offset & (granule - 1);
      const std::uint64_t pad = (seg_mask - iova_len + 1) & seg_mask;
      s.dma_address = off;
      s.dma_length = s.length;
      s.offset -= static_cast<unsigned>(off);
      const std::uint64_t len = (s.length + off + granule - 1) & ~(granule - 1);
      s.length = static_cast<unsigned>(len);
      if (pad != 0 && pad < len - 1 && prev != nullptr) {
        prev->length += static_cast<unsigned>(pad);
        iova_len += pad;
      }
      iova_len += len;
      prev = &s;
    });
    auto blk = d->iova().try_alloc(iova_len / granule);
    if (!blk) return -12;
    const std::uint64_t iova = blk->pfn * granule;
    // iommu_map_sg: one page-table call per physically contiguous stretch.
    bool failed = false;
    std::uint64_t mapped = 0;
    d->with_page_table([&](auto& pt) noexcept {
      std::uint64_t start = 0;
      std::uint64_t len = 0;
      auto flush = [&]() noexcept {
        if (len == 0 || failed) return;
        if (!pt.map(iova + mapped, phyr::phys_addr{start}, len, phyr::io_perm::read_write))
          failed = true;
        else
          mapped += len;
        len = 0;
      };
      sg::for_each_sg(sgl, static_cast<unsigned>(nents), [&](sg::scatterlist& s, unsigned) {
        const std::uint64_t phys = sg::sg_phys(&s);
        if (len != 0 && phys != start + len) flush();
        if (len != 0) {
          len += s.length;
        } else {
          start = phys;
          len = s.length;
        }
      });
      flush();
      if (failed && mapped != 0) (void)pt.unmap(iova, mapped);
    });
    if (failed) {
      d->iova().free(*blk);
      return -12;
    }
    // __finalise_sg
    sg::scatterlist* cur = sgl;
    std::uint64_t cur_len = 0;
    std::uint64_t dma = iova;
    int count = 0;
    sg::for_each_sg(sgl, static_cast<unsigned>(nents), [&](sg::scatterlist& s, unsigned i) {
      const std::uint64_t off = s.dma_address;
      const unsigned s_length = s.dma_length;
      const unsigned s_iova_len = s.length;
      s.dma_address = sg::dma_mapping_error;
      s.dma_length = 0;
      s.offset += static_cast<unsigned>(off);
      s.length = s_length;
      if (cur_len != 0 && off == 0 && (dma & seg_mask) != 0 && max_len - cur_len >= s_length) {
        cur_len += s_length;
      } else {
        if (i > 0) cur = sg::sg_next(cur);
        cur_len = s_length;
        ++count;
        cur->dma_address = dma + off;
      }
      cur->dma_length = static_cast<unsigned>(cur_len);
      dma += s_iova_len;
      if (s_length + off < s_iova_len) cur_len = 0;
    });
    return count;
  }
};

/// iommu_dma_unmap_sg: the IOVA span from the first to the last mapped segment, unmapped from
/// the page table and returned to the allocator.
struct legacy_iommu_unmap {
  domain* d;

  void operator()(sg::scatterlist* sgl, int nents, phyr::dma_direction) const noexcept {
    std::uint64_t start = 0;
    std::uint64_t end = 0;
    bool first = true;
    sg::scatterlist* s = sgl;
    for (int i = 0; i < nents && s != nullptr; ++i, s = sg::sg_next(s)) {
      if (s->dma_length == 0) break;
      if (first) start = s->dma_address;
      first = false;
      end = s->dma_address + s->dma_length;
    }
    if (end == 0) return;
    const std::uint64_t off = start & (granule - 1);
    const std::uint64_t base = start - off;
    const std::uint64_t size = (end - base + granule - 1) & ~(granule - 1);
    d->with_page_table([&](auto& pt) noexcept { (void)pt.unmap(base, size); });
    d->iova().free(base / granule, size / granule);
  }
};

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
  phyr_bench::cpu_stopwatch watch;
  for (auto _ : state) {
    if (time_unmap) watch.pause(state);
    auto mp = m.try_map(l, phyr::dma_direction::bidirectional);
    if (time_unmap) {
      watch.resume(state);
    } else {
      benchmark::DoNotOptimize(mp);
      watch.pause(state);
    }
    ok &= static_cast<bool>(mp);
    if (mp) {
      entries = mp->size();
      ok &= static_cast<bool>(m.unmap(std::move(*mp)));
    }
    if (!time_unmap) watch.resume(state);
    benchmark::ClobberMemory();
  }
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
    if (mp) (void)m.unmap(std::move(*mp));
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
  phyr_bench::cpu_stopwatch watch;
  for (auto _ : state) {
    if (time_unmap) watch.pause(state);
    n = map(t.sgl, nents, phyr::dma_direction::bidirectional);
    if (time_unmap) {
      watch.resume(state);
    } else {
      benchmark::DoNotOptimize(n);
      watch.pause(state);
    }
    if (n > 0) unmap(t.sgl, nents, phyr::dma_direction::bidirectional);
    if (!time_unmap) watch.resume(state);
    benchmark::ClobberMemory();
  }
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

// ---- registration ------------------------------------------------------------------------------

using bench_fn = void (*)(benchmark::State&, std::string, std::string);

struct registrar {
  std::set<std::pair<std::string, std::string>> floors;

  void add(const char* op, const std::string& wl, const std::string& size, const char* impl,
           bench_fn fn, bool once = false) {
    const std::string name = phyr_bench::bench_name(op, wl, size, impl);
    auto* b = benchmark::RegisterBenchmark(name.c_str(), fn, wl, size);
    phyr_bench::apply_settings(b, once);
    floors.emplace(wl, size);
  }

  void add_blocks(const char* op, const std::string& wl, const std::string& size, const char* impl,
                  void (*fn)(benchmark::State&, std::string, std::string, std::uint64_t),
                  std::uint64_t bs) {
    const std::string name = phyr_bench::bench_name(op, wl, size, impl);
    auto* b = benchmark::RegisterBenchmark(name.c_str(), fn, wl, size, bs);
    phyr_bench::apply_settings(b);
    floors.emplace(wl, size);
  }

  void add_floors() {
    for (const auto& [wl, size] : floors) {
      auto* b = benchmark::RegisterBenchmark(
          phyr_bench::bench_name("build", wl, size, "memcpy").c_str(), bm_memcpy, wl, size);
      phyr_bench::apply_settings(b);
    }
  }
};

[[maybe_unused]] const bool registered = [] {
  static const char* const synthetic[] = {"frag", "contig", "2m", "1g", "dio512"};
  static const char* const traces[] = {"trace_4k", "trace_thp"};
  registrar r;
  auto each = [&](std::initializer_list<const char*> sizes, auto&& fn) {
    for (const char* wl : synthetic) {
      for (const char* s : sizes) fn(std::string(wl), std::string(s));
    }
    for (const char* wl : traces) fn(std::string(wl), std::string("256MiB"));
  };

  each({"16MiB", "1GiB", "8GiB"}, [&](const std::string& wl, const std::string& s) {
    r.add("build", wl, s, "phyr_range_list", bm_build_range_list);
    r.add("build", wl, s, "phyr_packed", bm_build_packed);
    r.add("build", wl, s, "scatterlist", bm_build_scatterlist);
  });
  each({"1GiB", "8GiB"}, [&](const std::string& wl, const std::string& s) {
    r.add("walk", wl, s, "phyr_range_list", bm_walk_range_list);
    r.add("walk", wl, s, "phyr_packed", bm_walk_packed);
    r.add("walk", wl, s, "scatterlist", bm_walk_scatterlist);
  });
  // Blocks need every gap on a block boundary: all page inputs at 4 KiB; at 64 KiB the
  // inputs whose runs are 64 KiB-aligned (trace_thp is: THP runs are 2 MiB-aligned).
  for (const auto& [op, bs, wls] :
       {std::tuple{"blocks4k", std::uint64_t{4096},
                   std::vector<std::string>{"frag", "contig", "2m", "1g", "trace_4k", "trace_thp"}},
        std::tuple{"blocks64k", std::uint64_t{65536},
                   std::vector<std::string>{"contig", "2m", "1g", "trace_thp"}}}) {
    for (const std::string& wl : wls) {
      const std::string s = wl.rfind("trace", 0) == 0 ? "256MiB" : "1GiB";
      r.add_blocks(op, wl, s, "phyr_range_list", bm_blocks_range_list, bs);
      r.add_blocks(op, wl, s, "phyr_packed", bm_blocks_packed, bs);
      r.add_blocks(op, wl, s, "scatterlist", bm_blocks_scatterlist, bs);
    }
  }
  each({"1GiB"}, [&](const std::string& wl, const std::string& s) {
    const std::string sz = wl == "dio512" ? "16MiB" : s;  // one IOVA block per chunk: keep it short
    r.add("map_iommu", wl, sz, "phyr_iommu", bm_map_iommu_phyr);
    r.add("map_iommu", wl, sz, "phyr_sg_bridge", bm_map_iommu_bridge);
    r.add("map_iommu", wl, sz, "scatterlist", bm_map_iommu_scatterlist);
    r.add("unmap_iommu", wl, sz, "phyr_iommu", bm_unmap_iommu_phyr);
    r.add("unmap_iommu", wl, sz, "phyr_sg_bridge", bm_unmap_iommu_bridge);
    r.add("unmap_iommu", wl, sz, "scatterlist", bm_unmap_iommu_scatterlist);
  });
  each({"1GiB"}, [&](const std::string& wl, const std::string& s) {
    r.add("map", wl, s, "phyr_identity", bm_map_identity);
    r.add("map", wl, s, "scatterlist", bm_map_scatterlist);
    r.add("unmap", wl, s, "phyr_identity", bm_unmap_identity);
    r.add("unmap", wl, s, "scatterlist", bm_unmap_scatterlist);
  });
  // O(1): one entry and a million entries (fragmented pages).
  for (const char* s : {"1entry", "1e6entries"}) {
    r.add("map", "frag", s, "phyr_identity", bm_map_identity);
    r.add("map", "frag", s, "scatterlist", bm_map_scatterlist);
  }
  each({"16MiB", "1GiB"}, [&](const std::string& wl, const std::string& s) {
    r.add("memory", wl, s, "phyr_range_list", bm_memory_range_list, true);
    r.add("memory", wl, s, "phyr_packed", bm_memory_packed, true);
    r.add("memory", wl, s, "scatterlist", bm_memory_scatterlist, true);
  });
  r.add_floors();
  return true;
}();

}  // namespace
