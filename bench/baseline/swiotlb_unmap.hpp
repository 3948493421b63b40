/// The kernel's dma_direct_unmap_sg for a coherent device (Linux 6.1, kernel/dma/direct.c and
/// kernel/dma/direct.h), the baseline of the `unmap` and per-I/O benchmarks: every mapped entry
/// is visited; an entry marked as a PCI bus address only has its mark cleared
/// (sg_dma_unmark_bus_address), every other one goes through dma_direct_unmap_page, which turns
/// the DMA address back into a physical one (dma_to_phys: the identity without a bus offset
/// table) and tests it against the swiotlb pool (is_swiotlb_buffer) to know whether to bounce
/// data back. On a coherent device nothing else happens (no cache maintenance).
///
///   const swiotlb_pool pool{0x8000000, 0xc000000};
///   unsigned bounced = dma_direct_unmap_sg_walk(t.sgl, mapped, pool);   // 0: nothing bounced
#pragma once

#include <cstdint>

#include "phyr/compat/scatterlist.hpp"

namespace phyr_bench::baseline {

/// The physical range of the swiotlb bounce pool (io_tlb_mem's start/end).
struct swiotlb_pool {
  std::uint64_t start = 0;
  std::uint64_t end = 0;
};

/// Unmaps the first `nents` mapped entries; returns how many were bounce buffers (whose data the
/// kernel would copy back). Not inlined, as the kernel's is an out-of-line call per unmap.
[[gnu::noinline]] inline unsigned dma_direct_unmap_sg_walk(phyr::compat::scatterlist* sgl,
                                                           int nents,
                                                           const swiotlb_pool& pool) noexcept {
  namespace sg = phyr::compat;
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

}  // namespace phyr_bench::baseline
