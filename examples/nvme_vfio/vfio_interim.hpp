// INTERIM: the few raw VFIO calls the VM harness needs until phyr's os/linux/vfio.hpp is on main.
#pragma once

#include <fcntl.h>
#include <linux/vfio.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace nvme_vfio::interim {

struct vfio_pci {
  int container = -1, group = -1, device = -1;
  void* bar0 = nullptr;
  std::size_t bar0_size = 0;

  int open_bdf(const char* bdf) {
    char path[256], link[256];
    std::snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/iommu_group", bdf);
    ssize_t n = readlink(path, link, sizeof link - 1);
    if (n < 0) return -errno;
    link[n] = 0;
    const char* g = std::strrchr(link, '/');
    container = ::open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
    if (container < 0) return -errno;
    if (ioctl(container, VFIO_GET_API_VERSION) != VFIO_API_VERSION) return -EINVAL;
    if (ioctl(container, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) != 1) return -ENOTSUP;
    std::snprintf(path, sizeof path, "/dev/vfio/%s", g + 1);
    group = ::open(path, O_RDWR | O_CLOEXEC);
    if (group < 0) return -errno;
    vfio_group_status st{};
    st.argsz = sizeof st;
    if (ioctl(group, VFIO_GROUP_GET_STATUS, &st) < 0) return -errno;
    if (!(st.flags & VFIO_GROUP_FLAGS_VIABLE)) return -EBUSY;
    if (ioctl(group, VFIO_GROUP_SET_CONTAINER, &container) < 0) return -errno;
    if (ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) < 0) return -errno;
    device = ioctl(group, VFIO_GROUP_GET_DEVICE_FD, bdf);
    if (device < 0) return -errno;
    vfio_region_info ri{};
    ri.argsz = sizeof ri;
    ri.index = VFIO_PCI_BAR0_REGION_INDEX;
    if (ioctl(device, VFIO_DEVICE_GET_REGION_INFO, &ri) < 0) return -errno;
    bar0_size = ri.size;
    bar0 = mmap(nullptr, ri.size, PROT_READ | PROT_WRITE, MAP_SHARED, device, ri.offset);
    if (bar0 == MAP_FAILED) return -errno;
    ri = vfio_region_info{};
    ri.argsz = sizeof ri;
    ri.index = VFIO_PCI_CONFIG_REGION_INDEX;
    if (ioctl(device, VFIO_DEVICE_GET_REGION_INFO, &ri) < 0) return -errno;
    std::uint16_t cmd = 0;
    if (pread(device, &cmd, 2, ri.offset + 4) != 2) return -EIO;
    cmd |= 0x6;  // memory space, bus master
    if (pwrite(device, &cmd, 2, ri.offset + 4) != 2) return -EIO;
    return 0;
  }
  int map(void* va, std::uint64_t iova, std::uint64_t len, bool dev_reads, bool dev_writes) {
    vfio_iommu_type1_dma_map m{};
    m.argsz = sizeof m;
    m.flags = (dev_reads ? VFIO_DMA_MAP_FLAG_READ : 0) | (dev_writes ? VFIO_DMA_MAP_FLAG_WRITE : 0);
    m.vaddr = reinterpret_cast<std::uintptr_t>(va);
    m.iova = iova;
    m.size = len;
    return ioctl(container, VFIO_IOMMU_MAP_DMA, &m) < 0 ? -errno : 0;
  }
  int unmap(std::uint64_t iova, std::uint64_t len) {
    vfio_iommu_type1_dma_unmap u{};
    u.argsz = sizeof u;
    u.iova = iova;
    u.size = len;
    return ioctl(container, VFIO_IOMMU_UNMAP_DMA, &u) < 0 ? -errno : 0;
  }
};

}  // namespace nvme_vfio::interim
