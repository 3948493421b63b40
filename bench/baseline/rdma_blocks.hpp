/// How an RDMA driver turns a DMA-mapped scatterlist into fixed-size blocks for its memory
/// region's page list (Linux 6.1), the baseline of the `blocks4k` / `blocks64k` benchmarks:
///   find_best_pgsz   ib_umem_find_best_pgsz (drivers/infiniband/core/umem.c) for one candidate
///                    size: walk the DMA segments, OR together every bit where the buffer's
///                    virtual address and the DMA address disagree and every interior segment
///                    end; the size is usable when its low bits stay clear
///   rdma_block_iter  __rdma_block_iter_start / __rdma_block_iter_next (drivers/infiniband/core/
///                    verbs.c, the rdma_for_each_block loop): one block-aligned DMA address per
///                    step, moving to the next segment when the current one is used up
///
///   if (find_best_pgsz(t.sgl, t.nents, 4096, va) == 4096)
///     for (rdma_block_iter it(t.sgl, t.nents, 4096); it.next();) write_pte(it.block());
#pragma once

#include <cstdint>

#include "phyr/compat/scatterlist.hpp"

namespace phyr_bench::baseline {

/// `pgsz` if every DMA segment of the table agrees with the virtual address `virt` below
/// `pgsz` and every interior segment boundary falls on a multiple of it, else 0.
[[gnu::noinline]] inline std::uint64_t find_best_pgsz(phyr::compat::scatterlist* sgl,
                                                      unsigned nents, std::uint64_t pgsz,
                                                      std::uint64_t virt) noexcept {
  namespace sg = phyr::compat;
  std::uint64_t va = virt;
  std::uint64_t mask = 0;
  sg::for_each_sg(sgl, nents, [&](sg::scatterlist& s, unsigned i) {
    mask |= sg::sg_dma_address(&s) ^ va;
    va += sg::sg_dma_len(&s);
    if (i != nents - 1) mask |= va;
  });
  return (mask & (pgsz - 1)) == 0 ? pgsz : 0;
}

/// ib_block_iter: `next()` steps to the next block (false at the end), `block()` is its
/// block-aligned DMA address.
struct rdma_block_iter {
  phyr::compat::scatterlist* sg = nullptr;
  unsigned nents = 0;
  unsigned pg_bit = 0;
  unsigned sg_advance = 0;
  std::uint64_t dma_addr = 0;

  rdma_block_iter(phyr::compat::scatterlist* sgl, unsigned n, std::uint64_t pgsz) noexcept
      : sg(sgl), nents(n), pg_bit(static_cast<unsigned>(__builtin_ctzll(pgsz))) {}

  [[nodiscard]] bool next() noexcept {
    namespace c = phyr::compat;
    if (nents == 0 || sg == nullptr) return false;
    dma_addr = c::sg_dma_address(sg) + sg_advance;
    const unsigned block_offset =
        static_cast<unsigned>(dma_addr & ((std::uint64_t{1} << pg_bit) - 1));
    const unsigned delta = static_cast<unsigned>((std::uint64_t{1} << pg_bit) - block_offset);
    if (c::sg_dma_len(sg) - sg_advance > delta) {
      sg_advance += delta;
    } else {
      sg_advance = 0;
      sg = c::sg_next(sg);
      --nents;
    }
    return true;
  }
  [[nodiscard]] std::uint64_t block() const noexcept {
    return dma_addr & ~((std::uint64_t{1} << pg_bit) - 1);
  }
};

}  // namespace phyr_bench::baseline
