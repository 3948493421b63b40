// blocks4k / blocks64k: the block-aligned DMA addresses a random-access engine is given (RDMA MR
// page lists, NVMe PRPs, IOMMU and GPU page tables), counted and summed, and checked against the
// blocks expected straight from the frames. One template for the three sides:
//   phyr_range_list  phyr::try_blocks over the identity mapping of a range_list
//   phyr_packed      packed_list::try_blocks
//   scatterlist      the table mapped by dma_direct_map_sg, then ib_umem_find_best_pgsz's
//                    validation walk and rdma_for_each_block (bench/baseline/rdma_blocks.hpp)
// Blocks need every gap on a block boundary: every page input at 4 KiB; at 64 KiB the inputs
// whose runs are 64 KiB-aligned (trace_thp is: THP runs are 2 MiB-aligned).

#include <optional>
#include <tuple>

#include "baseline/rdma_blocks.hpp"
#include "compare.hpp"
#include "phyr/device/blocks.hpp"
#include "phyr/map/identity_mapper.hpp"

namespace {

using namespace phyr_bench;

/// Blocks of `bs` bytes: how many, and the sum of their addresses.
struct block_tally {
  std::uint64_t count = 0;
  std::uint64_t sum = 0;
  friend bool operator==(const block_tally&, const block_tally&) = default;
};

/// The blocks of a page input whose runs are all `bs`-aligned, straight from the frames.
[[nodiscard]] block_tally expected_blocks(const input& in, std::uint64_t bs) noexcept {
  block_tally e;
  for (const std::uint64_t pfn : in.pfns) {
    const std::uint64_t a = pfn << phyr::page_shift;
    if ((a & (bs - 1)) == 0) {
      ++e.count;
      e.sum += a;
    }
  }
  return e;
}

// The three sides: `prepare(in)` finds (or maps) the shared structure, `tally(bs, ok)` lists
// its blocks once, `bytes_per_page(in)` is what it reads.

struct range_list_side {
  static constexpr const char* what = "range_list build or identity map is wrong";
  const cpu_list* l = nullptr;
  std::optional<phyr::identity_mapping<bench_bus>> mp;

  bool prepare(const input& in) {
    l = shared_list(in);
    if (l == nullptr) return false;
    auto m = phyr::identity_mapper<bench_bus>{}.try_map(*l, phyr::dma_direction::from_device);
    if (!m) return false;
    mp.emplace(std::move(*m));
    return true;
  }
  block_tally tally(std::uint64_t bs, bool& ok) const noexcept {
    auto b = phyr::try_blocks(*mp, bs);
    ok &= static_cast<bool>(b);
    // Locals, not a member: an escaping address would keep them in memory in the loop.
    std::uint64_t sum = 0;
    std::uint64_t count = 0;
    if (b) {
      for (const phyr::dma_addr<bench_bus> a : *b) {
        sum += a.value();
        ++count;
      }
    }
    return {count, sum};
  }
  double bytes_per_page(const input& in) const noexcept {
    return static_cast<double>(l->bytes_used()) / in.pages_of_data();
  }
};

struct packed_side {
  static constexpr const char* what = "packed_list build is wrong";
  const packed* l = nullptr;

  bool prepare(const input& in) {
    l = shared_packed(in);
    return l != nullptr;
  }
  block_tally tally(std::uint64_t bs, bool& ok) const noexcept {
    auto b = l->try_blocks(bs);
    ok &= static_cast<bool>(b);
    std::uint64_t sum = 0;
    std::uint64_t count = 0;
    if (b) {
      for (const phyr::phys_addr a : *b) {
        sum += a.value();
        ++count;
      }
    }
    return {count, sum};
  }
  double bytes_per_page(const input& in) const noexcept {
    return static_cast<double>(l->bytes_used()) / in.pages_of_data();
  }
};

struct scatterlist_side {
  static constexpr const char* what = "scatterlist build or dma_direct_map_sg is wrong";
  sg::sg_table* t = nullptr;
  std::uint64_t virt = 0;

  bool prepare(const input& in) {
    t = shared_sg(in);
    if (t == nullptr) return false;
    const int mapped = sg::dma_direct_map_sg(t->sgl, static_cast<int>(t->nents), ~std::uint64_t{0});
    virt = sg::sg_dma_address(t->sgl);  // a virtual address with the same offset
    return static_cast<unsigned>(mapped) == t->nents;
  }
  block_tally tally(std::uint64_t bs, bool& ok) const noexcept {
    ok &= baseline::find_best_pgsz(t->sgl, t->nents, bs, virt) == bs;
    std::uint64_t sum = 0;
    std::uint64_t count = 0;
    baseline::rdma_block_iter it(t->sgl, t->nents, bs);
    while (it.next()) {
      sum += it.block();
      ++count;
    }
    return {count, sum};
  }
  double bytes_per_page(const input& in) const noexcept {
    return static_cast<double>(sg_table_bytes(*t) + sizeof(sg::sg_table)) / in.pages_of_data();
  }
};

template <class Side>
void bm_blocks(benchmark::State& state, std::string wl, std::string size, std::uint64_t bs) {
  const input& in = get_input(wl, size);
  Side side;
  if (!check(state, side.prepare(in), Side::what)) return;
  const block_tally want = expected_blocks(in, bs);
  block_tally got;
  bool ok = true;
  cpu_stopwatch watch;
  for (auto _ : state) {
    got = side.tally(bs, ok);
    benchmark::DoNotOptimize(got);
  }
  watch.stop();
  if (!check(state, ok && got == want, "blocks are wrong")) return;
  set_counters(state, watch, in, static_cast<double>(got.count), side.bytes_per_page(in));
}

[[maybe_unused]] const bool registered = [] {
  for (const auto& [op, bs, wls] :
       {std::tuple{"blocks4k", std::uint64_t{4096},
                   std::vector<std::string>{"frag", "contig", "2m", "1g", "trace_4k", "trace_thp"}},
        std::tuple{"blocks64k", std::uint64_t{65536},
                   std::vector<std::string>{"contig", "2m", "1g", "trace_thp"}}}) {
    for (const std::string& wl : wls) {
      const std::string s = wl.rfind("trace", 0) == 0 ? "256MiB" : "1GiB";
      register_compare(op, wl, s, "phyr_range_list", bm_blocks<range_list_side>, false, bs);
      register_compare(op, wl, s, "phyr_packed", bm_blocks<packed_side>, false, bs);
      register_compare(op, wl, s, "scatterlist", bm_blocks<scatterlist_side>, false, bs);
    }
  }
  return true;
}();

}  // namespace
