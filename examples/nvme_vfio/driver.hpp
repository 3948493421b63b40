// The VFIO half of the user-space NVMe driver example: bind the controller, give it memory, map
// buffers described by phyr lists, and describe them to the controller as PRP or SGL.
#pragma once

#include <sys/mman.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <phyr/container/range_list.hpp>
#include <phyr/device.hpp>
#include <span>
#include <utility>
#include <vector>

#include "nvme.hpp"
#include "vfio_interim.hpp"

namespace nvme_vfio {

struct nvme_bus {};  // the controller's DMA space: its addresses are IOVAs of our container
using iova_list = phyr::range_list<phyr::dma_range<nvme_bus>>;

constexpr std::uint64_t page = 4096;

/// A piece of a buffer in this process's memory.
struct vchunk {
  std::uint8_t* p;
  std::size_t len;
};

enum class direction { to_device, from_device, bidirectional };

/// What one map call did: the DMA list handed to descriptors, and the IOMMU mappings to undo.
struct mapping {
  iova_list dma;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> maps;  // (iova, bytes)
};

class session {
 public:
  session() = default;
  session(const session&) = delete;
  session& operator=(const session&) = delete;

  /// Binds `bdf` (already owned by vfio-pci), enables the controller, identifies it and creates
  /// one I/O queue pair. 0 or a negative errno / positive NVMe status.
  int open(const char* bdf) {
    if (int e = vfio_.open_bdf(bdf)) return e;
    ctrl_ = controller(vfio_.bar0);
    void* mem = mmap(nullptr, 8 * page, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (mem == MAP_FAILED) return -errno;
    // Queues, Identify data and descriptor lists: one mapping, both directions, first IOVAs.
    if (int e = vfio_.map(mem, next_iova_, 8 * page, true, true)) return e;
    for (int i = 0; i < 8; ++i) {
      pages_[i] = dma_page{static_cast<std::uint8_t*>(mem) + i * page, next_iova_ + i * page};
    }
    next_iova_ += 9 * page;
    if (int e = ctrl_.enable(pages_[0], pages_[1])) return e;
    if (int s = ctrl_.identify(pages_[2], id_)) return s;
    return ctrl_.create_io_queues(pages_[3], pages_[4]);
  }

  [[nodiscard]] const identity& id() const { return id_; }
  [[nodiscard]] controller& ctrl() { return ctrl_; }
  [[nodiscard]] interim::vfio_pci& vfio() { return vfio_; }

  /// Maps every chunk for the controller with the permission `dir` asks for, at fresh IOVAs.
  int map(std::span<const vchunk> chunks, direction dir, mapping& out) {
    const bool dev_reads = dir != direction::from_device;
    const bool dev_writes = dir != direction::to_device;
    for (const vchunk& c : chunks) {
      const auto va = reinterpret_cast<std::uintptr_t>(c.p);
      const std::uintptr_t first = va & ~(page - 1);
      const std::uint64_t bytes = ((va + c.len + page - 1) & ~(page - 1)) - first;
      if (int e = vfio_.map(reinterpret_cast<void*>(first), next_iova_, bytes, dev_reads, dev_writes)) {
        unmap(out);
        return e;
      }
      out.maps.emplace_back(next_iova_, bytes);
      auto r = phyr::dma_range<nvme_bus>::create(phyr::dma_addr<nvme_bus>{next_iova_ + (va - first)},
                                                 c.len);
      if (!r || !out.dma.try_append(*r)) {
        unmap(out);
        return -ENOMEM;
      }
      next_iova_ += bytes + page;  // a guard page between mappings
    }
    return 0;
  }

  void unmap(mapping& m) {
    for (auto [iova, bytes] : m.maps) vfio_.unmap(iova, bytes);
    m.maps.clear();
    m.dma.clear();
  }

  /// PRP1/PRP2 (and a PRP list in this session's list page) for `dma`.
  int prp(const iova_list& dma, data_pointer& dp) {
    auto b = phyr::try_blocks(dma, page);
    if (!b) return -EINVAL;
    auto it = b->begin();
    dp = data_pointer{};
    dp.dptr[0] = (*it).value() + b->first_offset();
    ++it;
    const std::uint64_t first_len = page - b->first_offset();
    const std::uint64_t len = dma.total_bytes();
    if (len <= first_len) return 0;
    if (len - first_len <= page) {
      dp.dptr[1] = (*it).value();
      return 0;
    }
    auto* slot = static_cast<std::uint64_t*>(pages_[5].cpu);
    std::size_t i = 0;
    for (; it != b->end(); ++it) {
      if (i == page / 8) return -E2BIG;  // one list page is enough for this example
      slot[i++] = (*it).value();
    }
    dp.dptr[1] = pages_[5].iova;
    return 0;
  }

  /// One SGL data block descriptor inline, or a last-segment descriptor pointing at a list of
  /// data block descriptors in this session's SGL page.
  int sgl(const iova_list& dma, data_pointer& dp) {
    dp = data_pointer{};
    dp.sgl = true;
    if (dma.size() == 1) {
      dp.dptr[0] = dma.front().addr().value();
      dp.dptr[1] = dma.front().len();  // type 0 (data block) in byte 15
      return 0;
    }
    if (dma.size() > page / 16) return -E2BIG;
    auto* d = static_cast<std::uint64_t*>(pages_[6].cpu);
    std::size_t i = 0;
    for (const auto& r : dma) {
      if (r.len() > 0xffffffffu) return -E2BIG;
      d[2 * i] = r.addr().value();
      d[2 * i + 1] = r.len();
      ++i;
    }
    dp.dptr[0] = pages_[6].iova;
    dp.dptr[1] = (i * 16) | (std::uint64_t{0x30} << 56);  // last segment descriptor
    return 0;
  }

  int shutdown() { return ctrl_.shutdown(); }

 private:
  interim::vfio_pci vfio_;
  controller ctrl_{nullptr};
  identity id_;
  dma_page pages_[8];
  std::uint64_t next_iova_ = 0x100000;
};

}  // namespace nvme_vfio
