// NVMe descriptors name DMA addresses of one controller: a CPU physical list (not mapped) does
// not build a PRP list.
#include "nvme_prp_control.hpp"

int main() {
  const bool ok = control_builds();
#ifdef PHYR_COMPILE_FAIL
  const std::array<phyr::phys_range, 1> phys{phyr::phys_range{phyr::phys_addr{0x1000}, 0x3000}};
  auto bad = phyr::nvme::try_build_prp(phys, 4096, prp_pool, prp_pool_dma);
#endif
  return ok ? 0 : 1;
}
