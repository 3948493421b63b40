// A CPU physical range never becomes a DMA range except through a mapper.
#include <phyr/core/range.hpp>

struct nic {};

int main() {
  const phyr::phys_range p{phyr::phys_addr{0x1000}, 0x1000};
  phyr::dma_range<nic> d{phyr::dma_addr<nic>{0x1000}, 0x1000};  // control
#ifdef PHYR_COMPILE_FAIL
  d = p;
#endif
  return p.len() == d.len() ? 0 : 1;
}
