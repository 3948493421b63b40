/// VFIO type1v2 for user-space drivers: container, group and device as RAII objects, and
/// `vfio_mapper<Bus>`, the mapper of process-virtual lists through the container's IOMMU.
///
///   namespace vfio = phyr::vfio;
///   struct nvme0 {};
///   auto c = vfio::container::try_open();                 // /dev/vfio/vfio
///   if (!c) return c.error();                             // errc + errno + call name
///   auto g = c->try_attach_group(12);                     // /dev/vfio/12, type1v2 IOMMU set
///   auto d = g->try_open_device("0000:00:04.0");          // device fd
///   auto bar0 = d->try_map_bar(0);                        // registers, mmap'ed
///   phyr::must(d->try_enable_bus_master());
///   phyr::vfio_mapper<nvme0> m{*c, {.dma_bits = 64}};     // IOVAs inside the usable windows
///   auto mp = m.try_map(virt_list, phyr::dma_direction::from_device);
///   for (phyr::dma_range<nvme0> r : *mp) program(r);      // ~mapping unmaps, exactly once
///
/// Files: vfio/sys.hpp (the system-call seam and errno -> errc), vfio/iommu_info.hpp (the
/// VFIO_IOMMU_GET_INFO capability-chain parser), vfio/container.hpp (container, group),
/// vfio/device.hpp (device, regions, BAR mmap, config space), vfio/mapper.hpp (the mapper).
///
/// What is real and what is modelled: the objects make the real ioctls of <linux/vfio.h>
/// through `vfio::sys_ops` (`linux_sys()` by default). On a host without VFIO
/// (/dev/vfio/vfio absent) `container::try_open` fails with not_found and its errno. The unit
/// tests run every path against a recorded fake kernel that models type1's checks; the VM test
/// (QEMU with an emulated VT-d IOMMU and NVMe controller) is where a real IOMMU and device are
/// driven. Errors are `result<T, sys_error>`: `if (!r) return r.error();` also works in a
/// function returning a plain `phyr::result<U>` (the errno is then dropped).
#pragma once

#include <phyr/os/linux/vfio/container.hpp>
#include <phyr/os/linux/vfio/device.hpp>
#include <phyr/os/linux/vfio/iommu_info.hpp>
#include <phyr/os/linux/vfio/mapper.hpp>
#include <phyr/os/linux/vfio/sys.hpp>
