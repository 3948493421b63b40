/// A VFIO device (a PCI function bound to vfio-pci): region info, BAR mmap, config space,
/// bus mastering, reset.
///
///   auto d = group.try_open_device("0000:00:04.0");   // VFIO_GROUP_GET_DEVICE_FD + GET_INFO
///   if (!d) return d.error();
///   auto bar0 = d->try_map_bar(0);                     // region info, mmap of the whole BAR
///   if (!bar0) return bar0.error();
///   std::uint64_t cap = bar0->load64(0x0);             // volatile MMIO loads and stores
///   if (auto r = d->try_enable_bus_master(); !r) return r.error();
///   auto id = d->try_read_config<std::uint16_t>(0x0);  // vendor ID through the config region
///
/// vfio-pci exposes each BAR as region 0..5 and config space as region 7
/// (VFIO_PCI_CONFIG_REGION_INDEX), each at an offset of the device fd that
/// VFIO_DEVICE_GET_REGION_INFO reports; BARs flagged VFIO_REGION_INFO_FLAG_MMAP can be mapped,
/// config space is read and written with pread/pwrite at its offset. The region's own
/// capability chain (sparse mmap areas) is not parsed: `try_map_bar` maps the whole BAR, which
/// Linux >= 4.16 allows even over an MSI-X table; where the kernel refuses, the mmap error
/// comes back with its errno.
///
/// `mapped_bar` is RAII: it munmaps on destruction. A device closes its fd on destruction;
/// BAR mappings stay valid after that (the kernel keeps a mapped region alive), but a driver
/// normally drops them first. Errors are `sys_error` values (errc, errno, call name).
#pragma once

#include <linux/vfio.h>
#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

#include <phyr/config.hpp>
#include <phyr/core/error.hpp>
#include <phyr/os/linux/vfio/container.hpp>
#include <phyr/os/linux/vfio/sys.hpp>

namespace phyr::inline v0::vfio {

/// VFIO_DEVICE_GET_REGION_INFO, decoded.
struct region_info {
  std::uint32_t index = 0;
  std::uint32_t flags = 0;    ///< VFIO_REGION_INFO_FLAG_{READ,WRITE,MMAP,CAPS}
  std::uint64_t size = 0;     ///< 0 for an unimplemented BAR
  std::uint64_t offset = 0;   ///< where the region starts in the device fd
  [[nodiscard]] bool readable() const noexcept { return (flags & VFIO_REGION_INFO_FLAG_READ) != 0; }
  [[nodiscard]] bool writable() const noexcept {
    return (flags & VFIO_REGION_INFO_FLAG_WRITE) != 0;
  }
  [[nodiscard]] bool mappable() const noexcept { return (flags & VFIO_REGION_INFO_FLAG_MMAP) != 0; }
};

/// A BAR mapped into this process (shared, read-write). Move-only; munmaps on destruction.
class mapped_bar {
 public:
  mapped_bar() noexcept = default;
  mapped_bar(mapped_bar&& o) noexcept
      : sys_(o.sys_), p_(std::exchange(o.p_, nullptr)), len_(std::exchange(o.len_, 0)),
        bar_(o.bar_) {}
  mapped_bar& operator=(mapped_bar&& o) noexcept {
    if (this != &o) {
      reset();
      sys_ = o.sys_;
      p_ = std::exchange(o.p_, nullptr);
      len_ = std::exchange(o.len_, 0);
      bar_ = o.bar_;
    }
    return *this;
  }
  mapped_bar(const mapped_bar&) = delete;
  mapped_bar& operator=(const mapped_bar&) = delete;
  ~mapped_bar() { reset(); }

  [[nodiscard]] void* data() const noexcept { return p_; }
  [[nodiscard]] std::size_t size() const noexcept { return len_; }
  [[nodiscard]] unsigned bar() const noexcept { return bar_; }

  /// Volatile MMIO accesses at byte offset `off` (naturally aligned, inside the BAR: asserted).
  [[nodiscard]] std::uint32_t load32(std::size_t off) const noexcept { return load<std::uint32_t>(off); }
  [[nodiscard]] std::uint64_t load64(std::size_t off) const noexcept { return load<std::uint64_t>(off); }
  void store32(std::size_t off, std::uint32_t v) const noexcept { store(off, v); }
  void store64(std::size_t off, std::uint64_t v) const noexcept { store(off, v); }

  /// munmap now (also done by the destructor).
  void reset() noexcept {
    if (p_ != nullptr) (void)sys_->munmap(sys_->ctx, p_, len_);
    p_ = nullptr;
    len_ = 0;
  }

 private:
  friend class device;
  mapped_bar(const sys_ops& sys, void* p, std::size_t len, unsigned bar) noexcept
      : sys_(&sys), p_(p), len_(len), bar_(bar) {}
  template <class T>
  [[nodiscard]] T load(std::size_t off) const noexcept {
    PHYR_ASSERT(off % sizeof(T) == 0 && off < len_ && len_ - off >= sizeof(T), "MMIO outside BAR");
    return *reinterpret_cast<const volatile T*>(static_cast<const std::byte*>(p_) + off);
  }
  template <class T>
  void store(std::size_t off, T v) const noexcept {
    PHYR_ASSERT(off % sizeof(T) == 0 && off < len_ && len_ - off >= sizeof(T), "MMIO outside BAR");
    *reinterpret_cast<volatile T*>(static_cast<std::byte*>(p_) + off) = v;
  }

  const sys_ops* sys_ = &linux_sys();
  void* p_ = nullptr;
  std::size_t len_ = 0;
  unsigned bar_ = 0;
};

/// PCI config-space offsets and bits phyr uses.
inline constexpr std::uint64_t pci_command_offset = 0x04;
inline constexpr std::uint16_t pci_command_memory = 0x2;  ///< memory-space decoding
inline constexpr std::uint16_t pci_command_master = 0x4;  ///< bus mastering (device may DMA)

/// A device fd. Move-only; closes on destruction.
class device {
 public:
  device(device&&) noexcept = default;
  device& operator=(device&&) noexcept = default;
  device(const device&) = delete;
  device& operator=(const device&) = delete;
  ~device() = default;

  /// VFIO_DEVICE_FLAGS_* (PCI, RESET, ...) and counts from VFIO_DEVICE_GET_INFO.
  [[nodiscard]] std::uint32_t flags() const noexcept { return flags_; }
  [[nodiscard]] std::uint32_t num_regions() const noexcept { return num_regions_; }
  [[nodiscard]] std::uint32_t num_irqs() const noexcept { return num_irqs_; }
  [[nodiscard]] bool is_pci() const noexcept { return (flags_ & VFIO_DEVICE_FLAGS_PCI) != 0; }
  [[nodiscard]] int native_handle() const noexcept { return fd_.get(); }

  /// VFIO_DEVICE_GET_REGION_INFO for region `index`. out_of_range for an index at or above
  /// num_regions() (errno 0).
  [[nodiscard]] result<region_info, sys_error> try_region_info(std::uint32_t index) const noexcept {
    if (index >= num_regions_) return sys_error{errc::out_of_range, 0, "VFIO_DEVICE_GET_REGION_INFO"};
    vfio_region_info ri{};
    ri.argsz = sizeof ri;
    ri.index = index;
    if (auto r = fd_.ioctl(VFIO_DEVICE_GET_REGION_INFO, &ri, "VFIO_DEVICE_GET_REGION_INFO"); !r)
      return r.error();
    return region_info{index, ri.flags, ri.size, ri.offset};
  }

  /// Maps BAR `bar` (0..5) whole, shared, read-write. Errors: out_of_range (bar > 5),
  /// not_found (BAR not implemented: size 0), not_supported (region not mappable, e.g. an
  /// I/O-port BAR), too_long (larger than the address space), and the mmap errno.
  [[nodiscard]] result<mapped_bar, sys_error> try_map_bar(unsigned bar) const noexcept {
    if (bar > VFIO_PCI_BAR5_REGION_INDEX) return sys_error{errc::out_of_range, 0, "BAR index"};
    auto ri = try_region_info(VFIO_PCI_BAR0_REGION_INDEX + bar);
    if (!ri) return ri.error();
    if (ri->size == 0) return sys_error{errc::not_found, 0, "BAR not implemented (size 0)"};
    if (!ri->mappable()) return sys_error{errc::not_supported, 0, "BAR not mappable"};
    if (ri->size > SIZE_MAX) return sys_error{errc::too_long, 0, "BAR larger than the address space"};
    void* p = nullptr;
    const auto len = static_cast<std::size_t>(ri->size);
    const int r = fd_.sys().mmap(fd_.sys().ctx, &p, len, PROT_READ | PROT_WRITE, MAP_SHARED,
                                 fd_.get(), ri->offset);
    if (r < 0) return failed_call(r, "mmap(BAR)");
    return mapped_bar{fd_.sys(), p, len, bar};
  }

  /// Reads `n` bytes of PCI config space at `off` (pread on the config region). Errors:
  /// not_supported (not a PCI device), out_of_range (past the config region), the pread errno,
  /// io_error for a short read.
  [[nodiscard]] result<void, sys_error> try_read_config(std::uint64_t off, void* buf,
                                                        std::size_t n) const noexcept {
    if (auto c = check_config(off, n); !c) return c.error();
    return config_io_result(fd_.sys().pread(fd_.sys().ctx, fd_.get(), buf, n, config_offset_ + off),
                            n, "pread(config)", "pread(config): short");
  }
  /// Writes `n` bytes of PCI config space at `off`. Errors as try_read_config.
  [[nodiscard]] result<void, sys_error> try_write_config(std::uint64_t off, const void* buf,
                                                         std::size_t n) const noexcept {
    if (auto c = check_config(off, n); !c) return c.error();
    return config_io_result(fd_.sys().pwrite(fd_.sys().ctx, fd_.get(), buf, n, config_offset_ + off),
                            n, "pwrite(config)", "pwrite(config): short");
  }
  /// One little-endian config register of 1, 2 or 4 bytes (x86 and arm64 hosts: native order).
  template <class T>
    requires(std::is_same_v<T, std::uint8_t> || std::is_same_v<T, std::uint16_t> ||
             std::is_same_v<T, std::uint32_t>)
  [[nodiscard]] result<T, sys_error> try_read_config(std::uint64_t off) const noexcept {
    T v{};
    if (auto r = try_read_config(off, &v, sizeof v); !r) return r.error();
    return v;
  }
  template <class T>
    requires(std::is_same_v<T, std::uint8_t> || std::is_same_v<T, std::uint16_t> ||
             std::is_same_v<T, std::uint32_t>)
  [[nodiscard]] result<void, sys_error> try_write_config(std::uint64_t off, T v) const noexcept {
    return try_write_config(off, &v, sizeof v);
  }

  /// Sets the Bus Master bit in the PCI command register (read-modify-write), so the device
  /// may issue DMA. Memory decoding is left as vfio-pci set it (enabled).
  [[nodiscard]] result<void, sys_error> try_enable_bus_master() const noexcept {
    auto cmd = try_read_config<std::uint16_t>(pci_command_offset);
    if (!cmd) return cmd.error();
    if ((*cmd & pci_command_master) != 0) return {};
    return try_write_config<std::uint16_t>(pci_command_offset,
                                           static_cast<std::uint16_t>(*cmd | pci_command_master));
  }

  /// VFIO_DEVICE_RESET (function-level or bus reset chosen by the kernel). not_supported
  /// (errno 0) when the device does not advertise VFIO_DEVICE_FLAGS_RESET.
  [[nodiscard]] result<void, sys_error> try_reset() const noexcept {
    if ((flags_ & VFIO_DEVICE_FLAGS_RESET) == 0)
      return sys_error{errc::not_supported, 0, "VFIO_DEVICE_RESET"};
    if (auto r = fd_.ioctl(VFIO_DEVICE_RESET, nullptr, "VFIO_DEVICE_RESET"); !r) return r.error();
    return {};
  }

 private:
  friend class group;
  explicit device(owned_fd fd) noexcept : fd_(std::move(fd)) {}

  [[nodiscard]] result<void, sys_error> check_config(std::uint64_t off, std::size_t n) const noexcept {
    if (!is_pci()) return sys_error{errc::not_supported, 0, "config space of a non-PCI device"};
    if (n == 0 || off > config_size_ || n > config_size_ - off)
      return sys_error{errc::out_of_range, 0, "config space access"};
    return {};
  }
  /// What a config pread/pwrite of `n` bytes returned (`r`), as a result: the errno of a
  /// failed `call`, io_error (`short_call`) for fewer bytes than asked.
  [[nodiscard]] static result<void, sys_error> config_io_result(long r, std::size_t n,
                                                                const char* call,
                                                                const char* short_call) noexcept {
    if (r < 0) return failed_call(r, call);
    if (static_cast<std::size_t>(r) != n) return sys_error{errc::io_error, 0, short_call};
    return {};
  }

  owned_fd fd_;
  std::uint32_t flags_ = 0;
  std::uint32_t num_regions_ = 0;
  std::uint32_t num_irqs_ = 0;
  std::uint64_t config_offset_ = 0;
  std::uint64_t config_size_ = 0;
};

inline result<device, sys_error> group::try_open_device(const char* name) const noexcept {
  if (name == nullptr || *name == '\0')
    return sys_error{errc::invalid_argument, 0, "VFIO_GROUP_GET_DEVICE_FD"};
  auto fdr = fd_.ioctl(VFIO_GROUP_GET_DEVICE_FD, const_cast<char*>(name), "VFIO_GROUP_GET_DEVICE_FD");
  if (!fdr) return fdr.error();
  device d{owned_fd{fd_.sys(), static_cast<int>(*fdr)}};  // closes on every error below
  vfio_device_info di{};
  di.argsz = sizeof di;
  if (auto r = d.fd_.ioctl(VFIO_DEVICE_GET_INFO, &di, "VFIO_DEVICE_GET_INFO"); !r) return r.error();
  d.flags_ = di.flags;
  d.num_regions_ = di.num_regions;
  d.num_irqs_ = di.num_irqs;
  if (d.is_pci() && d.num_regions_ > VFIO_PCI_CONFIG_REGION_INDEX) {
    auto cfg = d.try_region_info(VFIO_PCI_CONFIG_REGION_INDEX);
    if (!cfg) return cfg.error();
    d.config_offset_ = cfg->offset;
    d.config_size_ = cfg->size;
  }
  return d;
}

}  // namespace phyr::inline v0::vfio
