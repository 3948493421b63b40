/// The kernel's IOMMU DMA path for scatterlists (Linux 6.1, drivers/iommu/dma-iommu.c), the
/// baseline of the `map_iommu` / `unmap_iommu` benchmarks and the legacy code phyr's
/// sg_bridge_mapper runs: iommu_dma_map_sg (pad every entry to whole IOVA granules, allocate one
/// IOVA block for the total, map each physically contiguous stretch with one page-table call as
/// iommu_map_sg does, then __finalise_sg merges entries into DMA segments and restores the CPU
/// fields) and iommu_dma_unmap_sg (one IOVA span from the first to the last mapped segment,
/// unmapped and freed). It runs on phyr's IOMMU domain model (map/iommu/: the same IOVA allocator
/// and I/O page table that iommu_mapper uses), so in the comparison only the lists differ. Left
/// out: swiotlb bouncing of untrusted devices, P2P bus addresses, cache maintenance.
///
///   domain d{bench_allocator{}};
///   int n = legacy_iommu{&d}(t.sgl, t.nents, phyr::dma_direction::bidirectional);  // segments
///   legacy_iommu_unmap{&d}(t.sgl, t.nents, phyr::dma_direction::bidirectional);
#pragma once

#include <cstdint>

#include "phyr/compat/scatterlist.hpp"
#include "phyr/map/iommu/iommu_mapper.hpp"
#include "workloads.hpp"

namespace phyr_bench::baseline {

namespace sg = phyr::compat;

using domain = phyr::basic_iommu_domain<bench_allocator>;
/// The IOVA granule: 4 KiB, as on x86-64.
inline constexpr std::uint64_t granule = 4096;

/// iommu_dma_map_sg for a coherent device with
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
    auto blk = d->iova().try_alloc(iova_len);
    if (!blk) return -12;
    const std::uint64_t iova = blk->addr;
    // iommu_map_sg: one page-table call per physically contiguous stretch.
    bool failed = false;
    std::uint64_t mapped = 0;
    d->with_page_table([&](auto& pt) noexcept {
      std::uint64_t start = 0;
      std::uint64_t len = 0;
      auto flush = [&]() noexcept {
        if (len == 0 || failed) return;
        if (!pt.try_map(iova + mapped, phyr::phys_addr{start}, len, phyr::io_perm::read_write))
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
    d->iova().free(base, size);
  }
};

}  // namespace phyr_bench::baseline
