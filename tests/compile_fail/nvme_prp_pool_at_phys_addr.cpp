// Descriptor memory is named by the controller's DMA address: a CPU physical address for the
// PRP list pool does not convert.
#include "nvme_prp_control.hpp"

int main() {
  const bool ok = control_builds();
#ifdef PHYR_COMPILE_FAIL
  auto bad = phyr::nvme::try_build_prp(dma_list, 4096, prp_pool, phyr::phys_addr{0x9000});
#endif
  return ok ? 0 : 1;
}
