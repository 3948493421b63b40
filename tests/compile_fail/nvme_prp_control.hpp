// The well-formed half of the NVMe compile-fail cases (not a case itself: the harness builds
// only *.cpp). A DMA list of controller nvme0 and descriptor memory named by one of nvme0's
// DMA addresses build a PRP list; each case changes one of the two and must not compile.
#pragma once

#include <array>
#include <cstdint>
#include <phyr/device/nvme.hpp>

struct nvme0 {};

inline std::array<std::uint64_t, 8> prp_pool{};
inline const std::array<phyr::dma_range<nvme0>, 1> dma_list{
    phyr::dma_range<nvme0>{phyr::dma_addr<nvme0>{0x1000}, 0x3000}};
inline const phyr::dma_addr<nvme0> prp_pool_dma{0x9000};

inline bool control_builds() {
  return phyr::nvme::try_build_prp(dma_list, 4096, prp_pool, prp_pool_dma).has_value();
}
