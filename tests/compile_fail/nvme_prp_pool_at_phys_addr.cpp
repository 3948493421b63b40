// Descriptor memory is named by the controller's DMA address: a CPU physical address for the
// PRP list pool does not convert.
#include <array>
#include <cstdint>
#include <phyr/device/nvme.hpp>

struct nvme0 {};

int main() {
  std::array<std::uint64_t, 8> mem{};
  const std::array<phyr::dma_range<nvme0>, 1> dma{
      phyr::dma_range<nvme0>{phyr::dma_addr<nvme0>{0x1000}, 0x3000}};
  auto ok = phyr::nvme::try_build_prp(dma, 4096, mem, phyr::dma_addr<nvme0>{0x9000});  // control
#ifdef PHYR_COMPILE_FAIL
  auto bad = phyr::nvme::try_build_prp(dma, 4096, mem, phyr::phys_addr{0x9000});
#endif
  return ok ? 0 : 1;
}
