/// The Linux NVMe PCI driver's PRP builder over a DMA-mapped scatterlist (Linux 6.1,
/// drivers/nvme/host/pci.c: nvme_pci_setup_prps, and nvme_free_prps for the list pages), the
/// baseline of the `nvme_prp` rows and of the PRP step of the per-I/O path. Our transcription of
/// the loop, over compat/scatterlist.hpp entries:
/// - PRP1 is the first entry's DMA address; when the rest of the transfer fits PRP1's page,
///   PRP2 is 0; when it ends in the next page, PRP2 is that page; otherwise PRP2 points at a
///   list page, and every further 4 KiB of the transfer is one list entry, walking the sg list
///   with sg_next as each entry's DMA length runs out.
/// - A list page that fills moves its last entry to the next list page and becomes the chain
///   pointer.
/// - List pages come from dma_pool_alloc (the driver's 256-byte pool while the transfer needs at
///   most 32 entries, else its page pool) and go back with dma_pool_free when the I/O completes.
///   Here `alloc_page(index, bytes)` stands for dma_pool_alloc and returns the list memory and
///   its DMA address; freeing is the caller's (nvme_free_prps walks the chain pointers).
/// Not modelled: the driver's single-segment fast path (nvme_map_data calls
/// nvme_setup_prp_simple, which skips the scatterlist entirely, for a request of one physical
/// segment ending within two controller pages), and the "bad_sgl" diagnostics (here PRP1 == 0).
///
///   auto r = nvme_pci_setup_prps(t.sgl, bytes, [&](std::size_t i, std::size_t b) {
///     return prp_list_page{pool + i * 512, pool_dma + i * 4096}; });
#pragma once

#include <cstddef>
#include <cstdint>

#include "phyr/compat/scatterlist.hpp"

namespace phyr_bench::baseline {

/// NVME_CTRL_PAGE_SIZE: the driver programs a 4 KiB controller page.
inline constexpr std::uint64_t nvme_ctrl_page = 4096;

/// What dma_pool_alloc hands back: list memory and its DMA address (null: allocation failed).
struct prp_list_page {
  std::uint64_t* words = nullptr;
  std::uint64_t dma = 0;
};

/// The command's data pointer, and the list pages taken (for nvme_free_prps).
struct prp_out {
  std::uint64_t prp1 = 0;  ///< 0 when the sg list did not cover the transfer (bad_sgl)
  std::uint64_t prp2 = 0;
  unsigned list_pages = 0;
  std::size_t list_bytes = 0;  ///< size of each list allocation (256 or 4096)
};

/// nvme_pci_setup_prps for a transfer of `total` bytes described by the mapped list `s`.
template <class AllocPage>
[[nodiscard]] prp_out nvme_pci_setup_prps(phyr::compat::scatterlist* s, std::uint64_t total,
                                          AllocPage&& alloc_page) noexcept {
  namespace sg = phyr::compat;
  const std::int64_t page = static_cast<std::int64_t>(nvme_ctrl_page);
  std::int64_t length = static_cast<std::int64_t>(total);
  std::uint64_t dma_addr = sg::sg_dma_address(s);
  std::int64_t dma_len = sg::sg_dma_len(s);
  const std::int64_t offset = static_cast<std::int64_t>(dma_addr & (nvme_ctrl_page - 1));
  prp_out out;
  out.prp1 = dma_addr;
  length -= page - offset;
  if (length <= 0) return out;
  dma_len -= page - offset;
  if (dma_len != 0) {
    dma_addr += static_cast<std::uint64_t>(page - offset);
  } else {
    s = sg::sg_next(s);
    dma_addr = sg::sg_dma_address(s);
    dma_len = sg::sg_dma_len(s);
  }
  if (length <= page) {
    out.prp2 = dma_addr;
    return out;
  }
  const std::int64_t nprps = (length + page - 1) / page;
  out.list_bytes = nprps <= 256 / 8 ? 256 : nvme_ctrl_page;
  prp_list_page list = alloc_page(std::size_t{0}, out.list_bytes);
  if (list.words == nullptr) return prp_out{};
  out.list_pages = 1;
  out.prp2 = list.dma;
  std::size_t i = 0;
  for (;;) {
    if (i == nvme_ctrl_page / 8) {
      const prp_list_page old = list;
      list = alloc_page(std::size_t{out.list_pages}, out.list_bytes);
      if (list.words == nullptr) return prp_out{0, 0, out.list_pages, out.list_bytes};
      ++out.list_pages;
      list.words[0] = old.words[i - 1];
      old.words[i - 1] = list.dma;
      i = 1;
    }
    list.words[i++] = dma_addr;
    dma_len -= page;
    dma_addr += nvme_ctrl_page;
    length -= page;
    if (length <= 0) break;
    if (dma_len > 0) continue;
    if (dma_len < 0) return prp_out{0, 0, out.list_pages, out.list_bytes};  // bad_sgl
    s = sg::sg_next(s);
    dma_addr = sg::sg_dma_address(s);
    dma_len = sg::sg_dma_len(s);
  }
  return out;
}

}  // namespace phyr_bench::baseline
