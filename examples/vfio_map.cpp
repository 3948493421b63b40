// Bring up a PCI device through VFIO and map a scattered buffer for it: container, group,
// device, BAR0, bus mastering, then the vfio_mapper turns a virtual list into the device's DMA
// list at IOVAs phyr allocates inside the windows the kernel reports.
//
//   $ ./vfio_map                          # no VFIO here: says so and exits 0
//   vfio_map: VFIO is not available here (open(/dev/vfio/vfio): errno 2, not_found); nothing to do.
//   $ ./vfio_map 12 0000:00:04.0          # group 12, its device bound to vfio-pci; output shaped
//                                         # like this (illustrative values: a QEMU NVMe):
//   IOMMU: page sizes 0x40201000, 2 usable IOVA window(s), 65535 mappings available
//     window [0x0, 0xfedfffff]
//     window [0xfef00000, 0x7fffffffff]
//   device: vendor 0x1b36 device 0x0010, 9 regions, BAR0 0x4000 bytes
//   mapped 3 buffer(s) from_device: 2 DMA range(s) in 3 MAP_DMA chunk(s)
//     dma 0xfef00000 + 0x3000
//     dma 0xfef03100 + 0x200
//
// Without arguments on a host with VFIO it opens the container and stops (attaching a group
// needs one bound to vfio-pci). Every failure prints the errc, the errno and the failing call.
#include <sys/mman.h>

#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <phyr/os/linux/vfio.hpp>

namespace {

struct dev0 {};  // the bus tag of the one device this program drives

int fail(const char* what, const phyr::sys_error& e) {
  std::printf("vfio_map: %s failed: %s (errno %d, %s)\n", what, phyr::to_string(e.code),
              e.sys_errno, e.op != nullptr ? e.op : "-");
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  auto c = phyr::vfio::container::try_open();
  if (!c) {
    if (c.error() == phyr::errc::not_found || c.error() == phyr::errc::permission_denied) {
      std::printf("vfio_map: VFIO is not available here (%s: errno %d, %s); nothing to do.\n",
                  c.error().op, c.error().sys_errno, phyr::to_string(c.error().code));
      return 0;
    }
    return fail("opening the container", c.error());
  }
  if (argc < 3) {
    std::printf("vfio_map: container open (type1v2 supported). Usage: %s <group> <device>\n",
                argv[0]);
    return 0;
  }
  const unsigned group_no = static_cast<unsigned>(std::strtoul(argv[1], nullptr, 10));
  auto g = c->try_attach_group(group_no);
  if (!g) return fail("attaching the group", g.error());
  const phyr::vfio::iommu_info& info = c->iommu();
  std::printf("IOMMU: page sizes 0x%" PRIx64 ", %zu usable IOVA window(s), %u mappings available\n",
              info.page_sizes(), info.windows().size(), info.dma_avail());
  for (const phyr::vfio::iova_window& w : info.windows())
    std::printf("  window [0x%" PRIx64 ", 0x%" PRIx64 "]\n", w.first, w.last);

  auto d = g->try_open_device(argv[2]);
  if (!d) return fail("opening the device", d.error());
  auto ids = d->try_read_config<std::uint32_t>(0);
  if (!ids) return fail("reading config space", ids.error());
  auto bar0 = d->try_map_bar(0);
  if (!bar0) return fail("mapping BAR0", bar0.error());
  std::printf("device: vendor 0x%04x device 0x%04x, %u regions, BAR0 0x%zx bytes\n",
              *ids & 0xffff, *ids >> 16, d->num_regions(), bar0->size());
  if (auto b = d->try_enable_bus_master(); !b) return fail("enabling bus mastering", b.error());

  // Three pieces of one page-aligned allocation: two whole pages apart, then a small piece.
  constexpr std::size_t len = 8 * 4096;
  void* mem = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return 1;
  auto* p = static_cast<unsigned char*>(mem);
  phyr::range_list<phyr::virt_range> bufs;
  for (auto [off, n] : {std::pair<std::size_t, std::size_t>{0, 2 * 4096}, {5 * 4096, 4096},
                        {7 * 4096 + 0x100, 0x200}})
    phyr::must(bufs.try_append(*phyr::virt_range_of(p + off, n)));

  int rc = 0;
  {
    phyr::vfio_mapper<dev0> m{*c, {.dma_bits = 64}};
    auto mp = m.try_map(bufs, phyr::dma_direction::from_device);
    if (!mp) {
      rc = fail("mapping the buffers", mp.error());
    } else {
      std::printf("mapped %zu buffer(s) from_device: %zu DMA range(s) in %zu MAP_DMA chunk(s)\n",
                  bufs.size(), mp->size(), mp->chunks().size());
      for (const phyr::dma_range<dev0> r : *mp)
        std::printf("  dma 0x%" PRIx64 " + 0x%" PRIx64 "\n", r.addr().value(), r.len());
      if (auto u = m.try_unmap(std::move(*mp)); !u) rc = fail("unmapping", u.error());
    }
  }
  ::munmap(mem, len);
  return rc;
}
