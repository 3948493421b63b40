// A recorded fake of the VFIO type1v2 kernel interface, behind phyr::vfio::sys_ops, for host
// unit tests (no /dev/vfio here). It is a model: it applies the checks Linux 6.1's
// drivers/vfio/vfio_main.c, vfio_iommu_type1.c and vfio_pci_core.c apply to the calls phyr
// makes (argsz, API version, viability, one container per group, IOMMU set only with a group,
// MAP_DMA alignment to the smallest IOMMU page and inside a usable window, EEXIST on overlap,
// ENOSPC past dma_entry_limit, v2 unmap rules, the capability chain layout with 8-byte aligned
// capabilities), records every call, and fails the k-th call on request. It is not the kernel:
// nothing is pinned, no device moves a byte; the VM test is the real thing.
#pragma once

#include <fcntl.h>
#include <linux/vfio.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <phyr/os/linux/vfio/sys.hpp>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace vfio_fake {

using u64 = std::uint64_t;
using u32 = std::uint32_t;

struct region_cfg {
  u64 size = 0;
  u32 flags = 0;
};

struct device_cfg {
  u32 flags = VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET;
  u32 num_irqs = 5;
  // Regions 0..8 (BAR0..5, ROM, config, VGA), vfio-pci's layout: region i at i << 40.
  std::vector<region_cfg> regions = {
      {0x4000, VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE | VFIO_REGION_INFO_FLAG_MMAP},
      {},
      {},
      {},
      {},
      {},
      {},
      {4096, VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE},
      {},
  };
};

struct group_cfg {
  bool viable = true;
  std::map<std::string, device_cfg> devices;
};

struct mapping {
  u64 vaddr = 0;
  u64 size = 0;
  u32 flags = 0;
};

struct call {
  std::string op;  // "open", "close", "mmap", "munmap", "pread", "pwrite", or the ioctl name
  int fd = -1;
  u64 a = 0, b = 0, c = 0;  // op-specific: MAP_DMA vaddr/iova/size, UNMAP iova/size, ...
  u32 flags = 0;
  long ret = 0;
};

inline constexpr u64 page_4k = u64{1} << 12;
inline constexpr u64 page_2m = u64{1} << 21;
inline constexpr u64 page_1g = u64{1} << 30;
inline constexpr u64 msi_first = 0xfee00000;
inline constexpr u64 msi_last = 0xfeefffff;

class kernel {
 public:
  // ---- configuration (what VFIO_IOMMU_GET_INFO etc. report) ---------------------------------
  long api_version = VFIO_API_VERSION;
  bool type1v2 = true;
  std::map<unsigned, group_cfg> groups;
  u64 pgsizes = page_4k | page_2m | page_1g;
  // The x86 picture under VT-d with a 39-bit address width: the MSI window cut out.
  std::vector<std::pair<u64, u64>> iova_ranges = {{0, msi_first - 1},
                                                   {msi_last + 1, (u64{1} << 39) - 1}};
  bool report_iova_ranges = true;
  bool report_dma_avail = true;
  u32 dma_entry_limit = 65535;
  /// Replaces the capability chain with these bytes (placed at offset 24, cap_offset = 24)
  /// for malformed-chain tests; the fixed header is still the model's.
  std::optional<std::vector<std::byte>> raw_caps;
  /// Virtual ranges MAP_DMA cannot pin (EFAULT), modelling unmapped process memory.
  std::vector<std::pair<u64, u64>> bad_vaddrs;

  // ---- fault injection -----------------------------------------------------------------------
  /// 1-based index of the call to fail (counting open/ioctl/mmap/pread/pwrite; close and munmap
  /// always succeed, as on Linux); 0 = never.
  std::size_t fail_at = 0;
  int fail_errno = EIO;

  // ---- observation ---------------------------------------------------------------------------
  std::vector<call> log;
  std::size_t failable_calls = 0;

  kernel() {
    groups[12].devices["0000:00:04.0"] = device_cfg{};
    ops_.ctx = this;
    ops_.open = [](void* k, const char* p, int f) noexcept { return self(k).do_open(p, f); };
    ops_.close = [](void* k, int fd) noexcept { return self(k).do_close(fd); };
    ops_.ioctl = [](void* k, int fd, unsigned long r, void* a) noexcept {
      return self(k).do_ioctl(fd, r, a);
    };
    ops_.mmap = [](void* k, void** out, std::size_t len, int prot, int flags, int fd,
                   std::uint64_t off) noexcept { return self(k).do_mmap(out, len, prot, flags, fd, off); };
    ops_.munmap = [](void* k, void* p, std::size_t len) noexcept { return self(k).do_munmap(p, len); };
    ops_.pread = [](void* k, int fd, void* b, std::size_t n, std::uint64_t off) noexcept {
      return self(k).do_pread(fd, b, n, off);
    };
    ops_.pwrite = [](void* k, int fd, const void* b, std::size_t n, std::uint64_t off) noexcept {
      return self(k).do_pwrite(fd, b, n, off);
    };
    ops_.readlink = [](void* k, const char* p, char* b, std::size_t n) noexcept {
      return self(k).do_readlink(p, b, n);
    };
  }
  kernel(const kernel&) = delete;
  kernel& operator=(const kernel&) = delete;

  [[nodiscard]] const phyr::vfio::sys_ops& ops() const { return ops_; }

  [[nodiscard]] std::size_t open_fds() const {
    std::lock_guard lk(mu_);
    return fds_.size();
  }
  [[nodiscard]] std::size_t live_mmaps() const {
    std::lock_guard lk(mu_);
    return mmaps_.size();
  }
  /// DMA mappings of the (single) container, keyed by IOVA.
  [[nodiscard]] std::map<u64, mapping> mappings() const {
    std::lock_guard lk(mu_);
    return maps_;
  }
  [[nodiscard]] bool iommu_set() const {
    std::lock_guard lk(mu_);
    return iommu_set_;
  }
  [[nodiscard]] std::vector<std::byte>& config_space(const std::string& dev) { return config_[dev]; }
  [[nodiscard]] std::size_t count(const std::string& op) const {
    std::lock_guard lk(mu_);
    std::size_t n = 0;
    for (const call& c : log) n += c.op == op ? 1 : 0;
    return n;
  }

 private:
  enum class kind { container, group, device };
  struct fd_obj {
    kind k = kind::container;
    unsigned group = 0;
    std::string device{};
  };
  struct bar_map {
    std::vector<std::byte> mem;
    std::string device;
  };

  static kernel& self(void* k) { return *static_cast<kernel*>(k); }

  // Records the call; true when it is the one to fail.
  bool enter(call c, bool failable) {
    log.push_back(std::move(c));
    if (!failable) return false;
    ++failable_calls;
    return fail_at != 0 && failable_calls == fail_at;
  }
  long ret(long r) {
    log.back().ret = r;
    return r;
  }

  int do_open(const char* path, int flags) {
    std::lock_guard lk(mu_);
    if (enter({std::string{"open:"} + path}, true)) return static_cast<int>(ret(-fail_errno));
    if ((flags & O_RDWR) == 0) return static_cast<int>(ret(-EINVAL));
    const std::string p{path};
    if (p == "/dev/vfio/vfio") {
      if (container_open_) return static_cast<int>(ret(-EMFILE));  // the model has one container
      container_open_ = true;
      return static_cast<int>(ret(new_fd({kind::container})));
    }
    const std::string prefix = "/dev/vfio/";
    if (p.rfind(prefix, 0) != 0) return static_cast<int>(ret(-ENOENT));
    const unsigned no = static_cast<unsigned>(std::stoul(p.substr(prefix.size())));
    if (groups.count(no) == 0) return static_cast<int>(ret(-ENOENT));
    for (const auto& [fd, o] : fds_)
      if (o.k == kind::group && o.group == no) return static_cast<int>(ret(-EBUSY));
    return static_cast<int>(ret(new_fd({kind::group, no})));
  }

  int do_close(int fd) {
    std::lock_guard lk(mu_);
    enter({"close", fd}, false);
    auto it = fds_.find(fd);
    if (it == fds_.end()) return static_cast<int>(ret(-EBADF));
    const fd_obj o = it->second;
    fds_.erase(it);
    if (o.k == kind::container) {
      container_open_ = false;
      attached_.clear();
      iommu_set_ = false;
      maps_.clear();
    } else if (o.k == kind::group) {
      if (attached_.erase(o.group) != 0 && attached_.empty()) {
        iommu_set_ = false;  // the last group takes the IOMMU context with it
        maps_.clear();
        avail_used_ = 0;
      }
    } else {
      open_devices_.erase(o.device);
    }
    return static_cast<int>(ret(0));
  }

  long do_ioctl(int fd, unsigned long req, void* arg) {
    std::lock_guard lk(mu_);
    call c{name_of(req), fd};
    if (req == VFIO_IOMMU_MAP_DMA) {
      vfio_iommu_type1_dma_map m;
      std::memcpy(&m, arg, sizeof m);
      c.a = m.vaddr;
      c.b = m.iova;
      c.c = m.size;
      c.flags = m.flags;
    } else if (req == VFIO_IOMMU_UNMAP_DMA) {
      vfio_iommu_type1_dma_unmap u;
      std::memcpy(&u, arg, sizeof u);
      c.b = u.iova;
      c.c = u.size;
      c.flags = u.flags;
    }
    if (enter(std::move(c), true)) return ret(-fail_errno);
    auto it = fds_.find(fd);
    if (it == fds_.end()) return ret(-EBADF);
    switch (it->second.k) {
      case kind::container:
        return ret(container_ioctl(req, arg));
      case kind::group:
        return ret(group_ioctl(it->second.group, req, arg));
      case kind::device:
        return ret(device_ioctl(it->second.device, req, arg));
    }
    return ret(-ENOTTY);
  }

  long container_ioctl(unsigned long req, void* arg) {
    switch (req) {
      case VFIO_GET_API_VERSION:
        return api_version;
      case VFIO_CHECK_EXTENSION:
        return (reinterpret_cast<std::uintptr_t>(arg) == VFIO_TYPE1v2_IOMMU && type1v2) ? 1 : 0;
      case VFIO_SET_IOMMU:
        if (attached_.empty() || iommu_set_) return -EINVAL;
        if (reinterpret_cast<std::uintptr_t>(arg) != VFIO_TYPE1v2_IOMMU || !type1v2) return -ENODEV;
        iommu_set_ = true;
        return 0;
      case VFIO_IOMMU_GET_INFO:
        return get_info(static_cast<std::byte*>(arg));
      case VFIO_IOMMU_MAP_DMA:
        return map_dma(static_cast<vfio_iommu_type1_dma_map*>(arg));
      case VFIO_IOMMU_UNMAP_DMA:
        return unmap_dma(static_cast<vfio_iommu_type1_dma_unmap*>(arg));
      default:
        return -ENOTTY;
    }
  }

  // The kernel's vfio_iommu_type1_get_info with vfio_info_cap_add's 8-byte alignment.
  long get_info(std::byte* user) {
    if (!iommu_set_) return -EINVAL;
    vfio_iommu_type1_info info;
    std::memcpy(&info, user, sizeof info);
    const std::size_t minsz = offsetof(vfio_iommu_type1_info, iova_pgsizes) + sizeof(u64);
    if (info.argsz < minsz) return -EINVAL;
    const std::size_t capsz = offsetof(vfio_iommu_type1_info, cap_offset) + sizeof(u32);
    const std::size_t argsz = info.argsz;
    info.flags = VFIO_IOMMU_INFO_PGSIZES;
    info.iova_pgsizes = pgsizes;
    std::vector<std::byte> caps;
    if (raw_caps) {
      caps = *raw_caps;
    } else {
      auto add = [&](const void* p, std::size_t n) {
        const std::size_t at = caps.size();
        const std::size_t aligned = (n + 7) & ~std::size_t{7};
        caps.resize(at + aligned);
        std::memcpy(caps.data() + at, p, n);
        return at;
      };
      std::vector<std::size_t> starts;
      if (report_iova_ranges) {
        std::vector<std::byte> cap(sizeof(vfio_iommu_type1_info_cap_iova_range) +
                                   iova_ranges.size() * sizeof(vfio_iova_range));
        // Field by field: the struct ends in a flexible array, which C++ cannot value-init.
        const vfio_info_cap_header h{VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, 1, 0};
        const u32 nr = static_cast<u32>(iova_ranges.size());
        std::memcpy(cap.data(), &h, sizeof h);
        std::memcpy(cap.data() + offsetof(vfio_iommu_type1_info_cap_iova_range, nr_iovas), &nr,
                    sizeof nr);
        for (std::size_t i = 0; i < iova_ranges.size(); ++i) {
          const vfio_iova_range r{iova_ranges[i].first, iova_ranges[i].second};
          std::memcpy(cap.data() + sizeof(vfio_iommu_type1_info_cap_iova_range) + i * sizeof r, &r,
                      sizeof r);
        }
        starts.push_back(add(cap.data(), cap.size()));
      }
      if (report_dma_avail) {
        vfio_iommu_type1_info_dma_avail a{};
        a.header.id = VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL;
        a.header.version = 1;
        a.avail = dma_entry_limit - avail_used_;
        starts.push_back(add(&a, sizeof a));
      }
      // Chain them with offsets relative to the reply (caps start at sizeof(info)).
      for (std::size_t i = 0; i < starts.size(); ++i) {
        vfio_info_cap_header h;
        std::memcpy(&h, caps.data() + starts[i], sizeof h);
        h.next = i + 1 < starts.size() ? static_cast<u32>(sizeof info + starts[i + 1]) : 0;
        std::memcpy(caps.data() + starts[i], &h, sizeof h);
      }
    }
    std::size_t copy = minsz;
    if (argsz >= capsz) {
      copy = capsz;
      info.cap_offset = 0;
    }
    if (!caps.empty()) {
      info.flags |= VFIO_IOMMU_INFO_CAPS;
      if (argsz < sizeof info + caps.size()) {
        info.argsz = static_cast<u32>(sizeof info + caps.size());
      } else {
        std::memcpy(user + sizeof info, caps.data(), caps.size());
        info.cap_offset = sizeof info;
      }
      copy = capsz;
    }
    std::memcpy(user, &info, copy);
    // argsz is part of the copied prefix
    return 0;
  }

  [[nodiscard]] u64 min_page() const { return pgsizes & (~pgsizes + 1); }

  long map_dma(vfio_iommu_type1_dma_map* m) {
    if (!iommu_set_) return -EINVAL;
    if (m->argsz < sizeof *m) return -EINVAL;
    if ((m->flags & ~u32{VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE}) != 0) return -EINVAL;
    const u64 mask = min_page() - 1;
    if ((m->flags & (VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE)) == 0 || m->size == 0 ||
        ((m->size | m->iova | m->vaddr) & mask) != 0)
      return -EINVAL;
    if (m->iova + m->size - 1 < m->iova || m->vaddr + m->size - 1 < m->vaddr) return -EINVAL;
    const u64 last = m->iova + m->size - 1;
    bool inside = false;
    for (const auto& [lo, hi] : iova_ranges) inside = inside || (m->iova >= lo && last <= hi);
    if (!inside) return -EINVAL;
    for (const auto& [iova, mp] : maps_)
      if (iova <= last && m->iova <= iova + mp.size - 1) return -EEXIST;
    if (avail_used_ >= dma_entry_limit) return -ENOSPC;
    for (const auto& [lo, len] : bad_vaddrs)
      if (lo <= m->vaddr + m->size - 1 && m->vaddr <= lo + len - 1) return -EFAULT;
    maps_[m->iova] = mapping{m->vaddr, m->size, m->flags};
    ++avail_used_;
    return 0;
  }

  // type1 v2: no unmap may split a mapping; every mapping inside goes; size says how much.
  long unmap_dma(vfio_iommu_type1_dma_unmap* u) {
    if (!iommu_set_) return -EINVAL;
    if (u->argsz < sizeof *u || u->flags != 0) return -EINVAL;
    const u64 mask = min_page() - 1;
    if (u->size == 0 || ((u->iova | u->size) & mask) != 0) return -EINVAL;
    const u64 last = u->iova + u->size - 1;
    if (last < u->iova) return -EINVAL;
    // The kernel refuses a split before changing anything.
    for (const auto& [lo, mp] : maps_) {
      const u64 hi = lo + mp.size - 1;
      if (hi < u->iova || lo > last) continue;
      if (lo < u->iova || hi > last) return -EINVAL;
    }
    u64 unmapped = 0;
    for (auto it = maps_.begin(); it != maps_.end();) {
      const u64 lo = it->first;
      if (lo + it->second.size - 1 < u->iova || lo > last) {
        ++it;
        continue;
      }
      unmapped += it->second.size;
      it = maps_.erase(it);
      --avail_used_;
    }
    u->size = unmapped;
    return 0;
  }

  long group_ioctl(unsigned no, unsigned long req, void* arg) {
    switch (req) {
      case VFIO_GROUP_GET_STATUS: {
        vfio_group_status st;
        std::memcpy(&st, arg, sizeof st);
        if (st.argsz < sizeof st) return -EINVAL;
        st.flags = (groups[no].viable ? VFIO_GROUP_FLAGS_VIABLE : 0u) |
                   (attached_.count(no) != 0 ? VFIO_GROUP_FLAGS_CONTAINER_SET : 0u);
        std::memcpy(arg, &st, sizeof st);
        return 0;
      }
      case VFIO_GROUP_SET_CONTAINER: {
        int cfd;
        std::memcpy(&cfd, arg, sizeof cfd);
        auto it = fds_.find(cfd);
        if (it == fds_.end() || it->second.k != kind::container) return -EBADF;
        if (attached_.count(no) != 0) return -EINVAL;
        if (!groups[no].viable) return -EPERM;
        attached_.insert(no);
        return 0;
      }
      case VFIO_GROUP_GET_DEVICE_FD: {
        if (attached_.count(no) == 0 || !iommu_set_) return -EINVAL;
        const std::string name{static_cast<const char*>(arg)};
        if (groups[no].devices.count(name) == 0) return -ENODEV;
        if (open_devices_.count(name) != 0) return -EBUSY;
        open_devices_.insert(name);
        auto& cfg = config_[name];
        if (cfg.empty()) {
          cfg.resize(4096);
          cfg[0] = std::byte{0x86};  // vendor 0x8086
          cfg[1] = std::byte{0x80};
          cfg[4] = std::byte{0x02};  // command: memory space on, bus master off
        }
        return new_fd({kind::device, no, name});
      }
      default:
        return -ENOTTY;
    }
  }

  [[nodiscard]] const device_cfg& dev(const std::string& name) const {
    for (const auto& [no, g] : groups) {
      auto it = g.devices.find(name);
      if (it != g.devices.end()) return it->second;
    }
    static const device_cfg none{};
    return none;
  }

  long device_ioctl(const std::string& name, unsigned long req, void* arg) {
    const device_cfg& d = dev(name);
    switch (req) {
      case VFIO_DEVICE_GET_INFO: {
        vfio_device_info di;
        std::memcpy(&di, arg, sizeof di);
        if (di.argsz < offsetof(vfio_device_info, cap_offset)) return -EINVAL;
        di.flags = d.flags;
        di.num_regions = static_cast<u32>(d.regions.size());
        di.num_irqs = d.num_irqs;
        std::memcpy(arg, &di, offsetof(vfio_device_info, cap_offset));
        return 0;
      }
      case VFIO_DEVICE_GET_REGION_INFO: {
        vfio_region_info ri;
        std::memcpy(&ri, arg, sizeof ri);
        if (ri.argsz < sizeof ri || ri.index >= d.regions.size()) return -EINVAL;
        ri.flags = d.regions[ri.index].flags;
        ri.size = d.regions[ri.index].size;
        ri.offset = u64{ri.index} << 40;
        ri.cap_offset = 0;
        std::memcpy(arg, &ri, sizeof ri);
        return 0;
      }
      case VFIO_DEVICE_RESET:
        return (d.flags & VFIO_DEVICE_FLAGS_RESET) != 0 ? 0 : -EINVAL;
      default:
        return -ENOTTY;
    }
  }

  int do_mmap(void** out, std::size_t len, int prot, int flags, int fd, u64 off) {
    std::lock_guard lk(mu_);
    if (enter({"mmap", fd, len, off}, true)) return static_cast<int>(ret(-fail_errno));
    auto it = fds_.find(fd);
    if (it == fds_.end() || it->second.k != kind::device) return static_cast<int>(ret(-EBADF));
    if ((flags & MAP_SHARED) == 0 || (prot & PROT_READ) == 0) return static_cast<int>(ret(-EINVAL));
    const device_cfg& d = dev(it->second.device);
    const u64 index = off >> 40;
    if (index >= d.regions.size() || (off & ((u64{1} << 40) - 1)) != 0 ||
        (d.regions[index].flags & VFIO_REGION_INFO_FLAG_MMAP) == 0 || len > d.regions[index].size)
      return static_cast<int>(ret(-EINVAL));
    bar_map b{std::vector<std::byte>(len), it->second.device};
    void* p = b.mem.data();
    mmaps_[p] = std::move(b);
    *out = p;
    return static_cast<int>(ret(0));
  }

  int do_munmap(void* p, std::size_t len) {
    std::lock_guard lk(mu_);
    enter({"munmap", -1, len}, false);
    auto it = mmaps_.find(p);
    if (it == mmaps_.end() || it->second.mem.size() != len) return static_cast<int>(ret(-EINVAL));
    mmaps_.erase(it);
    return static_cast<int>(ret(0));
  }

  long config_access(int fd, void* rd, const void* wr, std::size_t n, u64 off) {
    auto it = fds_.find(fd);
    if (it == fds_.end() || it->second.k != kind::device) return -EBADF;
    const u64 base = u64{VFIO_PCI_CONFIG_REGION_INDEX} << 40;
    auto& cfg = config_[it->second.device];
    if (off < base || off - base > cfg.size() || n > cfg.size() - (off - base)) return -EINVAL;
    if (rd != nullptr) std::memcpy(rd, cfg.data() + (off - base), n);
    if (wr != nullptr) std::memcpy(cfg.data() + (off - base), wr, n);
    return static_cast<long>(n);
  }
  long do_pread(int fd, void* buf, std::size_t n, u64 off) {
    std::lock_guard lk(mu_);
    if (enter({"pread", fd, n, off}, true)) return ret(-fail_errno);
    return ret(config_access(fd, buf, nullptr, n, off));
  }
  long do_pwrite(int fd, const void* buf, std::size_t n, u64 off) {
    std::lock_guard lk(mu_);
    if (enter({"pwrite", fd, n, off}, true)) return ret(-fail_errno);
    return ret(config_access(fd, nullptr, buf, n, off));
  }

  // sysfs: /sys/bus/pci/devices/<name>/iommu_group -> ../../../kernel/iommu_groups/<no>
  long do_readlink(const char* path, char* buf, std::size_t n) {
    std::lock_guard lk(mu_);
    if (enter({std::string{"readlink:"} + path}, true)) return ret(-fail_errno);
    const std::string p{path};
    const std::string prefix = "/sys/bus/pci/devices/", suffix = "/iommu_group";
    if (p.rfind(prefix, 0) != 0 || p.size() <= prefix.size() + suffix.size() ||
        p.compare(p.size() - suffix.size(), suffix.size(), suffix) != 0)
      return ret(-ENOENT);
    const std::string dev = p.substr(prefix.size(), p.size() - prefix.size() - suffix.size());
    for (const auto& [no, g] : groups) {
      if (g.devices.count(dev) == 0) continue;
      const std::string link = "../../../kernel/iommu_groups/" + std::to_string(no);
      const std::size_t len = link.size() < n ? link.size() : n;
      std::memcpy(buf, link.data(), len);
      return ret(static_cast<long>(len));
    }
    return ret(-ENOENT);
  }

  int new_fd(fd_obj o) {
    const int fd = next_fd_++;
    fds_[fd] = std::move(o);
    return fd;
  }

  static std::string name_of(unsigned long req) {
    switch (req) {
      case VFIO_GET_API_VERSION: return "VFIO_GET_API_VERSION";
      case VFIO_CHECK_EXTENSION: return "VFIO_CHECK_EXTENSION";
      case VFIO_SET_IOMMU: return "VFIO_SET_IOMMU";
      case VFIO_GROUP_GET_STATUS: return "VFIO_GROUP_GET_STATUS";
      case VFIO_GROUP_SET_CONTAINER: return "VFIO_GROUP_SET_CONTAINER";
      case VFIO_GROUP_GET_DEVICE_FD: return "VFIO_GROUP_GET_DEVICE_FD";
      case VFIO_DEVICE_GET_INFO: return "VFIO_DEVICE_GET_INFO";
      case VFIO_DEVICE_GET_REGION_INFO: return "VFIO_DEVICE_GET_REGION_INFO";
      case VFIO_DEVICE_RESET: return "VFIO_DEVICE_RESET";
      case VFIO_IOMMU_GET_INFO: return "VFIO_IOMMU_GET_INFO";
      case VFIO_IOMMU_MAP_DMA: return "VFIO_IOMMU_MAP_DMA";
      case VFIO_IOMMU_UNMAP_DMA: return "VFIO_IOMMU_UNMAP_DMA";
      default: return "ioctl?";
    }
  }

  mutable std::mutex mu_;
  phyr::vfio::sys_ops ops_{};
  std::map<int, fd_obj> fds_;
  int next_fd_ = 100;
  bool container_open_ = false;
  std::set<unsigned> attached_;
  bool iommu_set_ = false;
  std::map<u64, mapping> maps_;
  u32 avail_used_ = 0;
  std::set<std::string> open_devices_;
  std::map<std::string, std::vector<std::byte>> config_;
  std::map<void*, bar_map> mmaps_;
};

}  // namespace vfio_fake
