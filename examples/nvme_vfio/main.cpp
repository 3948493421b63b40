// A user-space NVMe driver in a few hundred lines, on phyr: bind a controller through VFIO,
// bring it up, READ into scattered pages described by a phyr list (PRP), write the same bytes
// back from differently split pieces (SGL), read again and compare, FLUSH, shut down.
//
//   nvme_vfio BDF [LBA]     e.g. nvme_vfio 0000:00:02.0 0
//
// The controller must already belong to vfio-pci (echo vfio-pci > .../driver_override, then
// echo BDF > /sys/bus/pci/drivers_probe) and sit behind an IOMMU. The write puts back exactly
// what was read, so the disk is left as it was. tests/vm/run.sh runs this in a QEMU VM against
// QEMU's NVMe controller on every CI run.
//
// The flow, and which part is phyr:
//   session::open     phyr::vfio container/group/device, BAR0 mmap, bus master, vfio_mapper;
//                     then nvme.hpp: reset, admin queue, enable, Identify, one I/O queue pair
//   session::map      buffer pieces -> range_list<virt_range> -> vfio_mapper::try_map: the DMA
//                     list, mapped with the permission the direction gives the device
//   session::prp/sgl  phyr::nvme::try_build_prp / try_build_sgl -> the command's DPTR
//   controller::rw    READ / WRITE, polled completion; the mapping unmaps when it goes away
#include <sys/mman.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "driver.hpp"

using namespace nvme_vfio;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: nvme_vfio BDF [LBA]\n");
    return 2;
  }
  const std::uint64_t lba = argc > 2 ? std::strtoull(argv[2], nullptr, 0) : 0;
  session s;
  if (!s.open(argv[1])) {
    std::printf("nvme_vfio: cannot bring up %s: ", argv[1]);
    s.error().print("open");
    return 1;
  }
  const identity& id = s.id();
  std::printf("nvme_vfio: %s serial %s, namespace 1: %" PRIu64 " blocks of %u bytes, SGL %s\n",
              id.model, id.serial, id.ns_blocks, id.block_size, (id.sgls & 3) ? "yes" : "no");
  constexpr std::uint64_t bytes = 4 * page;
  if (id.block_size == 0 || bytes % id.block_size != 0 || lba + bytes / id.block_size > id.ns_blocks) {
    std::printf("nvme_vfio: LBA %" PRIu64 " is out of range for this namespace\n", lba);
    return 1;
  }
  const auto blocks = static_cast<std::uint32_t>(bytes / id.block_size);

  // Eight pages; the data goes into every other one, in reverse order.
  auto* in_mem = static_cast<std::uint8_t*>(
      mmap(nullptr, 8 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  auto* out_mem = static_cast<std::uint8_t*>(
      mmap(nullptr, 8 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (in_mem == MAP_FAILED || out_mem == MAP_FAILED) return 1;
  const vchunk scattered[] = {{in_mem + 6 * page, page}, {in_mem + 4 * page, page},
                              {in_mem + 2 * page, page}, {in_mem, page}};
  auto in = s.map(scattered, dma_direction::from_device);
  data_pointer dp;
  if (!in || !s.prp(*in, dp) || !s.nvme_ok(s.ctrl().rw(io_read, lba, blocks, dp))) {
    s.error().print("nvme_vfio: read");
    return 1;
  }
  std::printf("nvme_vfio: read %u blocks at LBA %" PRIu64 " into 4 scattered pages (%zu IOVA "
              "range, PRP list); first bytes", blocks, lba, in->size());
  for (int i = 0; i < 8; ++i) std::printf(" %02x", in_mem[6 * page + i]);
  std::printf("\n");

  // The same bytes gathered from three pieces of odd sizes for the write (SGL), or from the
  // same pages when the controller has no SGL support (PRP needs whole pages inside).
  std::vector<std::uint8_t> copy(bytes);
  for (int i = 0; i < 4; ++i) std::memcpy(copy.data() + i * page, scattered[i].p, page);
  const bool sgl = (id.sgls & 3) != 0;
  const vchunk pieces[] = {{out_mem + 0x104, 0x123c},
                           {out_mem + 3 * page, 0x2000},
                           {out_mem + 6 * page + 0x40, bytes - 0x323c}};
  std::size_t done = 0;
  for (const vchunk& p : pieces) {
    std::memcpy(p.p, copy.data() + done, p.len);
    done += p.len;
  }
  auto out = sgl ? s.map(pieces, dma_direction::to_device)
                 : s.map(scattered, dma_direction::to_device);
  if (!out || !(sgl ? s.sgl(*out, dp) : s.prp(*out, dp)) ||
      !s.nvme_ok(s.ctrl().rw(io_write, lba, blocks, dp)) || !s.nvme_ok(s.ctrl().flush())) {
    s.error().print("nvme_vfio: write");
    return 1;
  }
  std::printf("nvme_vfio: wrote them back from %zu IOVA ranges by %s, flushed\n", out->size(),
              sgl ? "SGL" : "PRP");

  std::memset(in_mem, 0, 8 * page);
  bool same = s.prp(*in, dp) && s.nvme_ok(s.ctrl().rw(io_read, lba, blocks, dp));
  for (int i = 0; same && i < 4; ++i)
    same = std::memcmp(copy.data() + i * page, scattered[i].p, page) == 0;
  in.reset();  // unmapped here (VFIO_IOMMU_UNMAP_DMA), before the controller goes down
  out.reset();
  const bool down = s.shutdown();
  std::printf("nvme_vfio: read back %s; shutdown %s\n", same ? "identical" : "DIFFERENT",
              down ? "complete" : "failed");
  return same && down ? 0 : 1;
}
