// A user-space NVMe driver in a few hundred lines, on phyr: bind a controller through VFIO,
// bring it up, READ into scattered pages described by a phyr list (PRP), write the same bytes
// back from differently split pieces (SGL), read again and compare, FLUSH, shut down.
//
//   nvme_vfio BDF [LBA]     e.g. nvme_vfio 0000:00:02.0 0
//
// The controller must already belong to vfio-pci (echo vfio-pci > .../driver_override, then
// drivers_probe) and sit behind an IOMMU. The write puts back exactly what was read, so the disk
// is left as it was. tests/vm/run.sh runs this in a QEMU VM on every CI run.
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
  if (int e = s.open(argv[1])) {
    std::fprintf(stderr, "nvme_vfio: cannot bring up %s: %s\n", argv[1],
                 e < 0 ? std::strerror(-e) : "NVMe error status");
    return 1;
  }
  const identity& id = s.id();
  std::printf("nvme_vfio: %s serial %s, namespace 1: %" PRIu64 " blocks of %u bytes, SGL %s\n",
              id.model, id.serial, id.ns_blocks, id.block_size, (id.sgls & 3) ? "yes" : "no");
  if (id.block_size == 0 || (4 * page) % id.block_size != 0 || lba + 4 * page / id.block_size > id.ns_blocks) {
    std::fprintf(stderr, "nvme_vfio: LBA %" PRIu64 " is out of range for this namespace\n", lba);
    return 1;
  }
  const std::uint32_t blocks = static_cast<std::uint32_t>(4 * page / id.block_size);

  // Eight pages; the data goes into every other one, in reverse order: a list of 4 ranges.
  auto* mem = static_cast<std::uint8_t*>(mmap(nullptr, 8 * page, PROT_READ | PROT_WRITE,
                                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (mem == MAP_FAILED) return 1;
  const vchunk scattered[] = {{mem + 6 * page, page}, {mem + 4 * page, page},
                              {mem + 2 * page, page}, {mem, page}};
  mapping in;
  data_pointer dp;
  int e = s.map(scattered, direction::from_device, in);
  if (e == 0) e = s.prp(in.dma, dp);
  if (e == 0) e = s.ctrl().rw(io_read, lba, blocks, dp);
  if (e != 0) {
    std::fprintf(stderr, "nvme_vfio: read failed: %d\n", e);
    return 1;
  }
  std::printf("nvme_vfio: read %u blocks at LBA %" PRIu64 " into %zu scattered pages by PRP list;"
              " first bytes", blocks, lba, in.dma.size());
  for (int i = 0; i < 8; ++i) std::printf(" %02x", mem[6 * page + i]);
  std::printf("\n");

  // The same bytes, gathered from pieces of odd sizes for the write (SGL), or the same pages
  // when the controller has no SGL support (PRP).
  std::vector<std::uint8_t> copy(4 * page);
  for (int i = 0; i < 4; ++i) std::memcpy(copy.data() + i * page, scattered[i].p, page);
  auto* out = static_cast<std::uint8_t*>(mmap(nullptr, 8 * page, PROT_READ | PROT_WRITE,
                                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (out == MAP_FAILED) return 1;
  const bool sgl = (id.sgls & 3) != 0;
  const vchunk pieces[] = {{out + 0x104, 0x1234 + 0x8}, {out + 3 * page, 0x2000}, {out + 6 * page + 0x40, 4 * page - 0x323c}};
  std::size_t done = 0;
  for (const vchunk& p : pieces) {
    std::memcpy(p.p, copy.data() + done, p.len);
    done += p.len;
  }
  mapping wm;
  e = sgl ? s.map(pieces, direction::to_device, wm) : s.map(scattered, direction::to_device, wm);
  if (e == 0) e = sgl ? s.sgl(wm.dma, dp) : s.prp(wm.dma, dp);
  if (e == 0) e = s.ctrl().rw(io_write, lba, blocks, dp);
  if (e == 0) e = s.ctrl().flush();
  if (e != 0) {
    std::fprintf(stderr, "nvme_vfio: write failed: %d\n", e);
    return 1;
  }
  std::printf("nvme_vfio: wrote them back from %zu pieces by %s, flushed\n", wm.dma.size(),
              sgl ? "SGL" : "PRP");

  std::memset(mem, 0, 8 * page);
  e = s.prp(in.dma, dp);
  if (e == 0) e = s.ctrl().rw(io_read, lba, blocks, dp);
  bool same = e == 0;
  for (int i = 0; same && i < 4; ++i)
    same = std::memcmp(copy.data() + i * page, scattered[i].p, page) == 0;
  s.unmap(in);
  s.unmap(wm);
  const int sd = s.shutdown();
  std::printf("nvme_vfio: read back %s; shutdown %s\n", same ? "identical" : "DIFFERENT",
              sd == 0 ? "complete" : "failed");
  return same && sd == 0 ? 0 : 1;
}
