// The CPU cannot copy through a DMA range: a bus address means nothing to the CPU.
#include <phyr/core/accessor.hpp>

struct nic {};

int main() {
  char ram[64] = {};
  phyr::phys_accessor acc{ram, phyr::phys_addr{0}, sizeof ram};
  char out[4];
  auto ok = acc.try_copy_from(phyr::phys_range{phyr::phys_addr{0}, 64}, 0, out, 4);  // control
#ifdef PHYR_COMPILE_FAIL
  auto bad = acc.try_copy_from(phyr::dma_range<nic>{phyr::dma_addr<nic>{0}, 64}, 0, out, 4);
  (void)bad;
#endif
  return ok ? 0 : 1;
}
