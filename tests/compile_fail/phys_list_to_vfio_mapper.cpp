// A physical list never goes to the VFIO mapper: VFIO pins and translates process-virtual
// memory, so physical addresses handed to it would be taken for virtual ones.
#include <phyr/container/range_list.hpp>
#include <phyr/os/linux/vfio.hpp>

struct nvme {};

int main() {
  auto c = phyr::vfio::container::try_open();
  if (!c) return 0;
  phyr::vfio_mapper<nvme> m{*c};
  phyr::range_list<phyr::virt_range> virt;  // control: a virtual list maps
  auto ok = m.try_map(virt, phyr::dma_direction::to_device);
#ifdef PHYR_COMPILE_FAIL
  phyr::range_list<phyr::phys_range> phys;
  auto bad = m.try_map(phys, phyr::dma_direction::to_device);
#endif
  return ok ? 1 : 0;
}
