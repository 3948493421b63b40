// A process-virtual list never goes to a mapper of physical lists: the IOMMU model would
// program virtual addresses as if they were physical.
#include <phyr/container/range_list.hpp>
#include <phyr/map/iommu/iommu_mapper.hpp>

struct gpu {};

int main() {
  phyr::iommu_domain dom;
  phyr::iommu_mapper<gpu> m{dom};
  phyr::range_list<phyr::phys_range> phys;  // control: a physical list maps
  auto ok = m.try_map(phys, phyr::dma_direction::to_device);
#ifdef PHYR_COMPILE_FAIL
  phyr::range_list<phyr::virt_range> virt;
  auto bad = m.try_map(virt, phyr::dma_direction::to_device);
#endif
  return ok ? 1 : 0;
}
