// Block iteration (device/blocks.hpp) over a CPU range_list, 4 KiB and 64 KiB blocks (NVMe
// PRPs, RDMA MR and IOMMU page lists), against the kernel's rdma_for_each_block over a mapped
// scatterlist:
//
//   blocks4k/<wl>/<size>/phyr_device_blocks        try_blocks on the range_list (its validation
//                                                  pass) and a visit of every block; the
//                                                  scatterlist twin is blocks_bench.cpp's row
//                                                  (ib_umem_find_best_pgsz pass + block walk)
//   blocks4k_iter/<wl>/<size>/phyr_device_blocks   the visit alone, view made beforehand: the
//                                                  per-block cost
//   blocks4k_iter/<wl>/<size>/scatterlist          its twin: __rdma_block_iter_next alone
//
// (and the same with blocks64k on the layouts made of 64 KiB-aligned runs). Every row visits
// every block and sums the block addresses; the sum and the count are checked against values
// computed from the page frames alone, so a wrong result cannot look fast. Counters:
// ns_per_page (per 4 KiB of data, as everywhere), ns_per_block, blocks, entries, bytes_per_page
// (of the list walked).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "phyr/compat/scatterlist.hpp"
#include "phyr/container/range_list.hpp"
#include "phyr/device/blocks.hpp"
#include "workloads.hpp"

namespace {

using phyr_bench::bench_allocator;
using phyr_bench::input;
namespace sg = phyr::compat;

// ---- the baseline: the kernel's block iterator (drivers/infiniband/core, current form) --------

struct ib_block_iter {
  sg::scatterlist* sg = nullptr;
  unsigned int nents = 0;
  unsigned int pg_bit = 0;
  std::uint64_t dma_addr = 0;
  std::uint64_t sg_advance = 0;
};

void rdma_block_iter_start(ib_block_iter& it, sg::scatterlist* sgl, unsigned int nents,
                           std::uint64_t pgsz) noexcept {
  it = ib_block_iter{};
  it.sg = sgl;
  it.nents = nents;
  it.pg_bit = static_cast<unsigned int>(63 - __builtin_clzll(pgsz));
}

// One block per call; a block that spans the rest of an entry consumes the following entries
// it covers, as the kernel does since blocks may straddle contiguous sg entries.
bool rdma_block_iter_next(ib_block_iter& it) noexcept {
  if (it.nents == 0 || it.sg == nullptr) return false;
  it.dma_addr = sg::sg_dma_address(it.sg) + it.sg_advance;
  const std::uint64_t block_offset = it.dma_addr & ((std::uint64_t{1} << it.pg_bit) - 1);
  std::uint64_t delta = (std::uint64_t{1} << it.pg_bit) - block_offset;
  while (it.nents != 0 && it.sg != nullptr && sg::sg_dma_len(it.sg) - it.sg_advance <= delta) {
    delta -= sg::sg_dma_len(it.sg) - it.sg_advance;
    it.sg_advance = 0;
    it.sg = sg::sg_next(it.sg);
    --it.nents;
  }
  it.sg_advance += delta;
  return true;
}

std::uint64_t rdma_block_iter_dma_address(const ib_block_iter& it) noexcept {
  return it.dma_addr & ~((std::uint64_t{1} << it.pg_bit) - 1);
}

// ---- inputs, built once per (workload, size) ---------------------------------------------------

struct lists {
  phyr::range_list<phyr::phys_range, bench_allocator> phyr_list;
  sg::unique_sg_table<bench_allocator> table;
  int mapped = 0;
  bool ok = false;
};

lists& get_lists(const input& in) {
  static std::vector<std::pair<const input*, std::unique_ptr<lists>>> cache;
  for (auto& [k, v] : cache)
    if (k == &in) return *v;
  auto l = std::make_unique<lists>();
  l->ok = static_cast<bool>(l->phyr_list.try_append_pages(in.pfns, 0, in.bytes)) &&
          static_cast<bool>(sg::sg_alloc_table_from_pages_segment(
              l->table.table(), in.pages, 0, in.bytes, ~0u, l->table.allocator()));
  if (l->ok) {
    // No IOMMU: DMA address = physical address, a 64-bit mask.
    l->mapped = sg::dma_direct_map_sg(l->table.table().sgl,
                                      static_cast<int>(l->table.table().nents), ~0ull);
    l->ok = l->mapped == static_cast<int>(l->table.table().nents);
  }
  cache.emplace_back(&in, std::move(l));
  return *cache.back().second;
}

// The blocks of a page-frame input computed from the frames alone: every block-aligned group of
// frames must be physically contiguous for the layout to have blocks of this size.
struct expected_blocks {
  bool valid = true;
  std::uint64_t count = 0;
  std::uint64_t sum = 0;
};

expected_blocks expect(const input& in, std::uint64_t block) {
  expected_blocks e;
  const std::uint64_t per = block / phyr_bench::page_size;
  for (std::size_t i = 0; i < in.pfns.size(); i += per) {
    const std::uint64_t first = in.pfns[i];
    if ((first % per) != 0) e.valid = false;
    for (std::size_t k = 1; k < per && i + k < in.pfns.size(); ++k)
      if (in.pfns[i + k] != first + k) e.valid = false;
    ++e.count;
    e.sum += first * phyr_bench::page_size;
  }
  return e;
}

void set_block_counters(benchmark::State& state, const phyr_bench::cpu_stopwatch& w,
                        const input& in, double blocks, double entries, double structure_bytes) {
  phyr_bench::set_counters(state, w, in, entries, structure_bytes / in.pages_of_data());
  const double iters = static_cast<double>(state.iterations());
  state.counters["ns_per_block"] =
      benchmark::Counter(iters > 0 && blocks > 0 ? w.elapsed_ns() / (iters * blocks) : 0);
  state.counters["blocks"] = benchmark::Counter(blocks);
}

void bench_phyr(benchmark::State& state, const input& in, std::uint64_t block,
                bool with_validation) {
  if (!phyr_bench::check(state, in.present, phyr_bench::trace_missing)) return;
  lists& l = get_lists(in);
  if (!phyr_bench::check(state, l.ok, "building the inputs failed")) return;
  const expected_blocks e = expect(in, block);
  if (!phyr_bench::check(state, e.valid, "layout has no blocks of this size")) return;
  const auto prebuilt = phyr::try_blocks(l.phyr_list, block);
  if (!phyr_bench::check(state, static_cast<bool>(prebuilt), "try_blocks failed")) return;
  std::uint64_t count = 0;
  std::uint64_t sum = 0;
  bool ok = true;
  phyr_bench::cpu_stopwatch w;
  if (with_validation) {
    for (auto _ : state) {
      const auto b = phyr::try_blocks(l.phyr_list, block);
      ok &= static_cast<bool>(b);
      count = 0;
      sum = 0;
      if (b) {
        for (const phyr::phys_addr a : *b) {
          sum += a.value();
          ++count;
        }
      }
      benchmark::DoNotOptimize(sum);
    }
  } else {
    const auto& b = *prebuilt;
    for (auto _ : state) {
      count = 0;
      sum = 0;
      for (const phyr::phys_addr a : b) {
        sum += a.value();
        ++count;
      }
      benchmark::DoNotOptimize(sum);
    }
  }
  w.stop();
  if (!phyr_bench::check(state, ok && count == e.count && sum == e.sum, "wrong blocks")) return;
  set_block_counters(state, w, in, static_cast<double>(count),
                     static_cast<double>(l.phyr_list.size()),
                     static_cast<double>(l.phyr_list.bytes_used()));
}

void bench_sg(benchmark::State& state, const input& in, std::uint64_t block) {
  if (!phyr_bench::check(state, in.present, phyr_bench::trace_missing)) return;
  lists& l = get_lists(in);
  if (!phyr_bench::check(state, l.ok, "building the inputs failed")) return;
  const expected_blocks e = expect(in, block);
  if (!phyr_bench::check(state, e.valid, "layout has no blocks of this size")) return;
  sg::sg_table& t = l.table.table();
  std::uint64_t count = 0;
  std::uint64_t sum = 0;
  phyr_bench::cpu_stopwatch w;
  for (auto _ : state) {
    count = 0;
    sum = 0;
    ib_block_iter it;
    rdma_block_iter_start(it, t.sgl, static_cast<unsigned int>(l.mapped), block);
    while (rdma_block_iter_next(it)) {
      sum += rdma_block_iter_dma_address(it);
      ++count;
    }
    benchmark::DoNotOptimize(sum);
  }
  w.stop();
  if (!phyr_bench::check(state, count == e.count && sum == e.sum, "wrong blocks")) return;
  // Entries plus one chain link per 128-entry array, 32 bytes each.
  const double sg_bytes = static_cast<double>(t.orig_nents + t.orig_nents / 127) * 32.0;
  set_block_counters(state, w, in, static_cast<double>(count), static_cast<double>(t.nents),
                     sg_bytes);
}

struct registrar {
  registrar() {
    struct workload {
      const char* name;
      const char* size;
      bool blocks64k;  // the layout is made of 64 KiB-aligned runs
    };
    const workload workloads[] = {
        {"frag", "1GiB", false},     {"contig", "1GiB", true},     {"2m", "1GiB", true},
        {"1g", "1GiB", true},        {"trace_4k", "256MiB", false}, {"trace_thp", "256MiB", true},
    };
    for (const workload& w : workloads) {
      for (const std::uint64_t block : {std::uint64_t{4096}, std::uint64_t{65536}}) {
        if (block == 65536 && !w.blocks64k) continue;
        const std::string op = block == 4096 ? "blocks4k" : "blocks64k";
        const std::string name = w.name;
        const std::string size = w.size;
        phyr_bench::apply_settings(benchmark::RegisterBenchmark(
            phyr_bench::bench_name(op, name, size, "phyr_device_blocks").c_str(),
            [name, size, block](benchmark::State& s) {
              bench_phyr(s, phyr_bench::get_input(name, size), block, true);
            }));
        phyr_bench::apply_settings(benchmark::RegisterBenchmark(
            phyr_bench::bench_name(op + "_iter", name, size, "phyr_device_blocks").c_str(),
            [name, size, block](benchmark::State& s) {
              bench_phyr(s, phyr_bench::get_input(name, size), block, false);
            }));
        phyr_bench::apply_settings(benchmark::RegisterBenchmark(
            phyr_bench::bench_name(op + "_iter", name, size, "scatterlist").c_str(),
            [name, size, block](benchmark::State& s) {
              bench_sg(s, phyr_bench::get_input(name, size), block);
            }));
      }
    }
  }
} const registered;

}  // namespace
