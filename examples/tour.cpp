// The README's tour, compiled and run as a test so the README cannot rot.
// Build a CPU list from pinned pages, keep it packed, map it for a device (identity and
// IOMMU), and hand the device what it wants: segments within its limits or fixed blocks.
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <phyr/device.hpp>
#include <phyr/map/identity_mapper.hpp>
#include <phyr/map/iommu/iommu_mapper.hpp>
#include <phyr/packed/packed_list.hpp>
#include <phyr/phyr.hpp>

struct nvme0 {};  // one tag per device: its DMA addresses are a type of their own

int main() {
  // 1. Pages behind a buffer (what pinning returns): 0x200 bytes into the first page,
  //    five frames of which three are physically consecutive.
  const std::uint64_t pfns[] = {0x80010, 0x80011, 0x80012, 0x90000, 0xa0000};
  phyr::range_list<phyr::phys_range> cpu;
  if (auto r = cpu.try_append_pages(pfns, 0x200, 5 * 4096 - 0x200, phyr::range_flags::pinned);
      !r) {
    std::printf("append: %s\n", phyr::to_string(r.error()));  // out_of_memory, invalid_argument
    return 1;
  }
  std::printf("cpu: %zu ranges, %" PRIu64 " bytes\n", cpu.size(), cpu.total_bytes());  // 3

  // 2. Long-lived? Keep it packed: 8 bytes per chunk instead of 16 (32 for a scatterlist).
  auto packed = phyr::packed_list<phyr::cpu_phys>::from_ranges(cpu);
  if (!packed) return 1;
  std::printf("packed: %" PRIu64 " entry bytes\n", packed->entry_bytes());

  // 3. Map for one device. No IOMMU: the DMA list aliases the CPU list (no copy, O(1)).
  phyr::identity_mapper<nvme0> direct;  // 64-bit DMA mask; try_set_dma_mask(32) for old HW
  auto dma = direct.try_map(cpu, phyr::dma_direction::to_device);
  if (!dma) return 1;  // not_addressable if the list is above the mask
  for (phyr::dma_range<nvme0> r : *dma)  // dma_range<nvme0>, never a phys_range
    std::printf("  dma 0x%" PRIx64 " +0x%" PRIx64 "\n", r.addr().value(), r.len());

  // 4. What the hardware wants: segments within its limits ...
  phyr::dma_constraints lim;
  lim.max_segment_size = 0x1000;
  auto segs = phyr::try_split(*dma, lim);  // checks lim and the mapping, then splits lazily
  if (!segs) return 1;
  for (phyr::dma_range<nvme0> seg : *segs)
    std::printf("  seg 0x%" PRIx64 " +0x%" PRIx64 "\n", seg.addr().value(), seg.len());
  // ... or fixed-size blocks (NVMe PRP, RDMA MR, GPU page tables).
  auto blocks = phyr::try_blocks(*dma, 4096);
  if (!blocks) return 1;  // misaligned if a gap is not on a block boundary
  std::printf("  %zu blocks, first offset 0x%" PRIx64 "\n", blocks->size(),
              blocks->first_offset());
  if (!direct.try_unmap(std::move(*dma))) return 1;

  // 5. Behind an IOMMU the same list becomes ONE contiguous IOVA range.
  phyr::iommu_domain domain;  // 48-bit IOVA space, 4 KiB granule
  phyr::iommu_mapper<nvme0> iommu{domain};
  auto iova = iommu.try_map(cpu, phyr::dma_direction::bidirectional);
  if (!iova || iova->size() != 1) return 1;
  const auto first = *iova->begin();
  auto back = iommu.translate(first.addr());  // walks the I/O page table
  std::printf("iommu: 1 range 0x%" PRIx64 " +0x%" PRIx64 " -> phys 0x%" PRIx64 "\n",
              first.addr().value(), first.len(), back ? back->value() : 0);
  return iommu.try_unmap(std::move(*iova)) ? 0 : 1;
}
