/// Reads the PCI tree and BARs from Linux sysfs into a `pci_topology` and a `p2p_registry`.
///
///   phyr::pci_topology<> topo;
///   phyr::p2p_registry<> reg;
///   phyr::pci_sysfs_error err;
///   const phyr::pci_host_bridge_rule allow[] = {{0x8086, 0x2020, phyr::host_bridge_p2p::any}};
///   phyr::pci_sysfs_options opt{.allowlist = allow};
///   if (auto r = phyr::load_pci_sysfs("/sys", topo, reg, opt, &err); !r)
///     fprintf(stderr, "%s:%u: %s (%s)\n", err.path, err.line, err.message, to_string(err.code));
///
/// What it reads, under `root` (normally "/sys"; tests pass fixture trees shaped the same way):
///  - `bus/pci/devices/<dddd:bb:dd.f>`: one symlink per function into `devices/`. The link's
///    target spells the parent chain: `devices/pci0000:00/0000:00:01.0/0000:01:00.0` is
///    01:00.0 below bridge 00:01.0 below host bridge pci0000:00. The last `pciDDDD:BB`
///    component names the host bridge (VMD-style domains nest one inside a PCI device).
///  - `resource`: lines "0x%016llx 0x%016llx 0x%016llx" (start, end, flags); the first six are
///    the BARs; all-zero lines are unused. `class` ("0x030000"); `vendor`, `device` when present.
///  - `config`, when readable: the PCI Express capability's port type (root/upstream/downstream
///    port), and the ACS control register (redirect bits RR, CR, EC). Unprivileged readers see
///    only 64 bytes: then the port kind is inferred from the tree (a bridge on the root bus is a
///    root port, below it an upstream port, below that downstream ports) and ACS counts as off.
///
/// Bus offsets: sysfs shows CPU physical addresses, not PCI bus addresses. On x86 the two are
/// equal (offset 0). Where a host bridge translates (some arm64/powerpc hosts, per the device
/// tree's `ranges`), pass the offsets in `pci_sysfs_options::bus_offsets`; every BAR below that
/// host bridge is registered with it.
///
/// Errors are values with a fixed-size detail record (`pci_sysfs_error`: code, errno, the
/// offending path and line, a message): missing files -> not_found, unreadable ->
/// permission_denied / io_error, malformed text -> parse_error. Nothing throws, nothing
/// allocates but through the allocator, and `load_pci_sysfs` changes nothing on failure.
/// Uses POSIX (opendir, realpath, open, read).
///
/// Layout: pci_sysfs_parse.hpp holds the pure parsers (resource, class, config, names),
/// pci_sysfs_io.hpp the file reads; this header walks the tree and builds from them.
#pragma once

#include <dirent.h>
#include <limits.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <phyr/config.hpp>
#include <phyr/core/allocator.hpp>
#include <phyr/core/detail/try_vector.hpp>
#include <phyr/core/error.hpp>
#include <phyr/map/p2p/p2p_registry.hpp>
#include <phyr/map/p2p/pci_topology.hpp>
#include <phyr/os/linux/fd.hpp>
#include <phyr/os/linux/pci_sysfs_io.hpp>
#include <phyr/os/linux/pci_sysfs_parse.hpp>
#include <span>
#include <utility>

namespace phyr::inline v0 {

/// One function found in sysfs.
struct pci_sysfs_device {
  static constexpr std::size_t bar_count = 6;
  pci_device_info info{};   ///< kind resolved (from config, else inferred)
  pci_bdf parent{};         ///< upstream bridge, when `has_parent`
  bool has_parent = false;  ///< false: on its host bridge's root bus
  bool kind_from_config = false;
  bool acs_known = false;         ///< the ACS control register could be read
  bool owns_host_bridge = false;  ///< a host bridge sits below it (VMD): its BARs are apertures
  std::uint8_t depth = 0;         ///< bridges between it and its host bridge
  std::uint32_t host_bridge = 0;  ///< index into `pci_sysfs_scan::host_bridges()`
  pci_bar bars[bar_count]{};
};

/// A host bridge ("pciDDDD:BB" in the device path).
struct pci_sysfs_host_bridge {
  std::uint32_t domain = 0;
  std::uint8_t root_bus = 0;
  bool has_owner = false;  ///< nested below a PCI function (Intel VMD), named by `owner`
  pci_bdf owner{};
};

/// Allowlist entry: host bridges whose representative function (00.0 on the root bus, else
/// the first root port, as in the kernel) matches vendor and device (0xffff = any device) get
/// `policy`. The first matching rule wins.
struct pci_host_bridge_rule {
  std::uint16_t vendor = 0;
  std::uint16_t device = 0xffff;
  host_bridge_p2p policy = host_bridge_p2p::any;
};

/// Bus offset (PCI bus address - CPU physical address) for every BAR below one host bridge.
struct pci_host_bridge_offset {
  std::uint32_t domain = 0;
  std::uint8_t root_bus = 0;
  std::int64_t bus_offset = 0;
};

struct pci_sysfs_options {
  std::span<const pci_host_bridge_rule> allowlist{};
  std::span<const pci_host_bridge_offset> bus_offsets{};
  bool platform_p2p = false;       ///< every host bridge forwards P2P (e.g. AMD Zen)
  bool prefetchable_only = false;  ///< register only prefetchable memory BARs
  /// Skip the BARs of bridges and of functions that host a nested PCI domain (VMD): their
  /// apertures contain other devices' BARs and are not P2P memory.
  bool endpoints_only = true;
};

/// The result of reading sysfs: every PCI function with its BARs, parent and host bridge.
/// Devices are sorted by depth, then bdf (so parents come before children).
template <segment_allocator Alloc = default_allocator>
class pci_sysfs_scan {
 public:
  pci_sysfs_scan(const pci_sysfs_scan&) = delete;
  pci_sysfs_scan& operator=(const pci_sysfs_scan&) = delete;
  pci_sysfs_scan(pci_sysfs_scan&& o) noexcept
      : devs_(std::move(o.devs_)), hosts_(std::move(o.hosts_)), alloc_(o.alloc_) {}
  pci_sysfs_scan& operator=(pci_sysfs_scan&&) = delete;
  ~pci_sysfs_scan() = default;

  /// Reads `root`/bus/pci/devices. A missing directory is not_found; an empty one is a scan
  /// with no devices. Any malformed or missing file fails the whole scan (no partial
  /// results), with details in `*err` when given.
  [[nodiscard]] static result<pci_sysfs_scan> try_scan(const char* root,
                                                       pci_sysfs_error* err = nullptr,
                                                       Alloc alloc = Alloc{}) noexcept {
    pci_sysfs_scan s{alloc};
    if (auto r = s.scan(root, err); !r) return r.error();
    return result<pci_sysfs_scan>{std::move(s)};
  }

  [[nodiscard]] std::span<const pci_sysfs_device> devices() const noexcept {
    return {devs_.data(), devs_.size()};
  }
  [[nodiscard]] std::span<const pci_sysfs_host_bridge> host_bridges() const noexcept {
    return {hosts_.data(), hosts_.size()};
  }
  [[nodiscard]] const pci_sysfs_device* find(pci_bdf b) const noexcept {
    for (std::size_t i = 0; i < devs_.size(); ++i) {
      if (devs_[i].info.bdf == b) return devs_.data() + i;
    }
    return nullptr;
  }

  /// The bus offset `opt` gives for host bridge `h` (0 when not listed).
  [[nodiscard]] std::int64_t bus_offset(std::uint32_t h,
                                        const pci_sysfs_options& opt) const noexcept {
    for (const auto& o : opt.bus_offsets) {
      if (o.domain == hosts_[h].domain && o.root_bus == hosts_[h].root_bus) return o.bus_offset;
    }
    return 0;
  }

  /// The allowlist policy `opt` gives host bridge `h`.
  [[nodiscard]] host_bridge_p2p host_policy(std::uint32_t h,
                                            const pci_sysfs_options& opt) const noexcept {
    // Representative function: the lowest devfn on the root bus, when it is 00.0 or a root port.
    const pci_sysfs_device* rep = nullptr;
    for (std::size_t i = 0; i < devs_.size(); ++i) {
      const pci_sysfs_device& d = devs_[i];
      if (d.host_bridge != h || d.has_parent) continue;
      if (rep == nullptr || d.info.bdf.devfn() < rep->info.bdf.devfn()) rep = &d;
    }
    if (rep == nullptr ||
        (rep->info.bdf.devfn() != 0 && rep->info.kind != pci_device_kind::root_port))
      return host_bridge_p2p::deny;
    for (const auto& rule : opt.allowlist) {
      if (rule.vendor == rep->info.vendor &&
          (rule.device == 0xffff || rule.device == rep->info.device))
        return rule.policy;
    }
    return host_bridge_p2p::deny;
  }

  /// A topology of every device, with the allowlist applied. Errors: invalid_argument (a
  /// device below a non-bridge), out_of_memory, exhausted.
  template <segment_allocator A = default_allocator>
  [[nodiscard]] result<pci_topology<A>> try_build_topology(const pci_sysfs_options& opt,
                                                           pci_sysfs_error* err = nullptr,
                                                           A alloc = A{}) const noexcept {
    pci_topology<A> t{alloc};
    for (std::uint32_t h = 0; h < hosts_.size(); ++h) {
      auto r = t.try_add_host_bridge(hosts_[h].domain, hosts_[h].root_bus, host_policy(h, opt));
      if (!r) {
        detail::sysfs_set_error(err, r.error(), 0, "", 0, "cannot add host bridge %04x:%02x",
                                hosts_[h].domain, hosts_[h].root_bus);
        return r.error();
      }
    }
    t.set_platform_p2p(opt.platform_p2p);
    for (std::size_t i = 0; i < devs_.size(); ++i) {
      const pci_sysfs_device& d = devs_[i];
      auto r = d.has_parent ? t.try_add_device_below(d.parent, d.info)
                            : t.try_add_device(d.host_bridge, d.info);
      if (!r) {
        char name[24], parent[24];
        (void)d.info.bdf.format(name, sizeof name);
        (void)d.parent.format(parent, sizeof parent);
        detail::sysfs_set_error(err, r.error(), 0, name, 0,
                                r.error() == errc::invalid_argument
                                    ? "device %s sits below %s, which is not a bridge"
                                    : "cannot add device %s (parent %s)",
                                name, d.has_parent ? parent : "root bus");
        return r.error();
      }
    }
    return result<pci_topology<A>>{std::move(t)};
  }

  /// Registers every assigned memory BAR (filtered by `opt`) as a provider window of its
  /// function (`pci_bdf::provider_id()`), atomically. Errors: overlaps (two BARs overlap, or
  /// one overlaps a window already registered: `*err` names the device), out_of_memory,
  /// overflow (a bus offset that does not fit). Strong guarantee.
  template <segment_allocator A>
  [[nodiscard]] result<void> try_register_bars(p2p_registry<A>& reg, const pci_sysfs_options& opt,
                                               pci_sysfs_error* err = nullptr) const noexcept {
    std::size_t n = 0;
    for (std::size_t i = 0; i < devs_.size(); ++i) {
      for (const pci_bar& b : devs_[i].bars) n += wanted(devs_[i], b, opt);
    }
    if (n == 0) return {};
    detail::try_vector<p2p_window, Alloc> ws{alloc_};
    if (auto r = ws.try_reserve(n); !r) return r.error();
    for (const pci_sysfs_device& d : devs_) {
      for (std::size_t bi = 0; bi < pci_sysfs_device::bar_count; ++bi) {
        const pci_bar& b = d.bars[bi];
        if (!wanted(d, b, opt)) continue;
        auto w = p2p_window::create(phys_addr{b.start}, b.size, d.info.bdf.provider_id(),
                                    bus_offset(d.host_bridge, opt));
        if (!w) {
          char name[24];
          (void)d.info.bdf.format(name, sizeof name);
          detail::sysfs_set_error(err, w.error(), 0, name, 0,
                                  "BAR %zu [0x%llx, +0x%llx) does not fit with its bus offset", bi,
                                  static_cast<unsigned long long>(b.start),
                                  static_cast<unsigned long long>(b.size));
          return w.error();
        }
        must(ws.try_push_back(*w));  // reserved above
      }
    }
    auto r = reg.try_register_all(std::span<const p2p_window>{ws.data(), ws.size()});
    if (!r) {
      if (r.error() == errc::overlaps)
        describe_overlap(reg, ws.data(), ws.size(), err);
      else
        detail::sysfs_set_error(err, r.error(), 0, "", 0, "registering %zu BARs failed", ws.size());
      return r.error();
    }
    return {};
  }

 private:
  explicit pci_sysfs_scan(Alloc a) noexcept : devs_(a), hosts_(a), alloc_(a) {}

  // Buffers, not pages: a PCIe function's configuration space is 4 KiB (PCIe base spec,
  // extended config space), and 4 KiB is far above a resource file (17 lines of 57 bytes).
  static constexpr std::size_t pci_config_space_bytes = 4096;
  static constexpr std::size_t resource_file_bytes = 4096;

  [[nodiscard]] static bool wanted(const pci_sysfs_device& d, const pci_bar& b,
                                   const pci_sysfs_options& opt) noexcept {
    if (!b.is_assigned_memory()) return false;
    if (opt.prefetchable_only && !b.is_prefetchable()) return false;
    if (opt.endpoints_only && (is_bridge(d.info.kind) || d.owns_host_bridge)) return false;
    return true;
  }

  template <segment_allocator A>
  void describe_overlap(const p2p_registry<A>& reg, const p2p_window* ws, std::size_t k,
                        pci_sysfs_error* err) const noexcept {
    auto rd = reg.reader();
    for (std::size_t i = 0; i < k; ++i) {
      char a[24], b[24];
      (void)pci_bdf::from_provider_id(ws[i].provider()).format(a, sizeof a);
      for (std::size_t j = i + 1; j < k; ++j) {
        if (ws[i].range().overlaps(ws[j].range())) {
          (void)pci_bdf::from_provider_id(ws[j].provider()).format(b, sizeof b);
          detail::sysfs_set_error(err, errc::overlaps, 0, a, 0,
                                  "BAR at 0x%llx of %s overlaps BAR at 0x%llx of %s",
                                  static_cast<unsigned long long>(ws[i].addr().value()), a,
                                  static_cast<unsigned long long>(ws[j].addr().value()), b);
          return;
        }
      }
      for (const p2p_window& w : rd.windows()) {
        if (ws[i].range().overlaps(w.range())) {
          detail::sysfs_set_error(err, errc::overlaps, 0, a, 0,
                                  "BAR at 0x%llx of %s overlaps an already registered window",
                                  static_cast<unsigned long long>(ws[i].addr().value()), a);
          return;
        }
      }
    }
    detail::sysfs_set_error(err, errc::overlaps, 0, "", 0, "BARs overlap registered windows");
  }

  [[nodiscard]] result<std::uint32_t> host_index(const pci_sysfs_host_bridge& hb) noexcept {
    for (std::size_t i = 0; i < hosts_.size(); ++i) {
      if (hosts_[i].domain == hb.domain && hosts_[i].root_bus == hb.root_bus)
        return static_cast<std::uint32_t>(i);
    }
    if (auto r = hosts_.try_push_back(hb); !r) return r.error();
    return static_cast<std::uint32_t>(hosts_.size() - 1);
  }

  result<void> scan(const char* root, pci_sysfs_error* err) noexcept {
    detail::sysfs_path dir;
    if (!dir.set(root, "/bus/pci/devices")) {
      detail::sysfs_set_error(err, errc::too_long, 0, root, 0, "sysfs root path too long");
      return errc::too_long;
    }
    DIR* d = ::opendir(dir.buf);
    if (d == nullptr) {
      const int e = errno;
      detail::sysfs_set_error(err, detail::errc_from_errno(e), e, dir.buf, 0, "no PCI bus here: %s",
                              std::strerror(e));
      return detail::errc_from_errno(e);
    }
    result<void> r;
    for (;;) {
      errno = 0;
      const dirent* ent = ::readdir(d);
      if (ent == nullptr) {
        if (errno != 0) {
          const int e = errno;
          detail::sysfs_set_error(err, errc::io_error, e, dir.buf, 0, "readdir failed: %s",
                                  std::strerror(e));
          r = errc::io_error;
        }
        break;
      }
      if (ent->d_name[0] == '.') continue;  // ".", "..", and dotfiles (e.g. a git .keep)
      r = read_device(dir.buf, ent->d_name, err);
      if (!r) break;
    }
    ::closedir(d);
    if (!r) return r;
    std::sort(devs_.begin(), devs_.end(), [](const pci_sysfs_device& a, const pci_sysfs_device& b) {
      return a.depth != b.depth ? a.depth < b.depth : a.info.bdf.key() < b.info.bdf.key();
    });
    return resolve_kinds(err);
  }

  result<void> read_device(const char* dir, const char* name, pci_sysfs_error* err) noexcept {
    detail::sysfs_path entry;
    if (!entry.set(dir, "/", name)) {
      detail::sysfs_set_error(err, errc::too_long, 0, dir, 0, "path too long for %s", name);
      return errc::too_long;
    }
    auto bdf = pci_bdf::parse(name, std::strlen(name));
    if (!bdf) {
      detail::sysfs_set_error(err, errc::parse_error, 0, entry.buf, 0,
                              "entry name is not a PCI address dddd:bb:dd.f");
      return errc::parse_error;
    }
    pci_sysfs_device dev;
    dev.info.bdf = *bdf;

    // The parent chain, from the link target.
    char real[PATH_MAX];
    if (::realpath(entry.buf, real) == nullptr) {
      const int e = errno;
      detail::sysfs_set_error(err, detail::errc_from_errno(e), e, entry.buf, 0,
                              "cannot resolve device link: %s", std::strerror(e));
      return detail::errc_from_errno(e);
    }
    if (auto r = parse_chain(real, dev, err); !r) return r;

    detail::sysfs_path f;
    if (!f.set(entry.buf, "/resource")) return path_too_long(err, entry.buf);
    char text[resource_file_bytes];
    auto n = detail::sysfs_read_file(f.buf, text, sizeof text, err, false);
    if (!n) return n.error();
    if (auto r = detail::sysfs_parse_resource(text, *n, f.buf, dev.bars, err); !r) return r;

    if (!f.set(entry.buf, "/class")) return path_too_long(err, entry.buf);
    auto cls = detail::sysfs_read_hex_file(f.buf, 0xffffff, err, false);
    if (!cls) return cls.error();
    dev.info.class_code = static_cast<std::uint32_t>(*cls);

    // vendor/device are informational (and feed the allowlist): optional.
    if (!f.set(entry.buf, "/vendor")) return path_too_long(err, entry.buf);
    if (auto v = detail::sysfs_read_hex_file(f.buf, 0xffff, err, true)) {
      dev.info.vendor = static_cast<std::uint16_t>(*v);
    } else if (v.error() == errc::parse_error) {
      return v.error();
    }
    if (!f.set(entry.buf, "/device")) return path_too_long(err, entry.buf);
    if (auto v = detail::sysfs_read_hex_file(f.buf, 0xffff, err, true)) {
      dev.info.device = static_cast<std::uint16_t>(*v);
    } else if (v.error() == errc::parse_error) {
      return v.error();
    }

    // config: optional and often truncated to 64 bytes for unprivileged readers.
    if (!f.set(entry.buf, "/config")) return path_too_long(err, entry.buf);
    unsigned char cfg[pci_config_space_bytes];
    if (auto c = detail::sysfs_read_file(f.buf, reinterpret_cast<char*>(cfg), sizeof cfg, nullptr,
                                         true)) {
      const auto ci = detail::sysfs_parse_config(cfg, *c);
      if (ci.port_type >= 0) {
        dev.kind_from_config = true;
        switch (ci.port_type) {
          case 0x4:
            dev.info.kind = pci_device_kind::root_port;
            break;
          case 0x5:
            dev.info.kind = pci_device_kind::upstream_port;
            break;
          case 0x6:
            dev.info.kind = pci_device_kind::downstream_port;
            break;
          case 0x7:
          case 0x8:
            dev.info.kind = pci_device_kind::pci_bridge;
            break;
          default:
            dev.info.kind = pci_device_kind::endpoint;
            break;
        }
      }
      if (ci.acs_redirect >= 0) {
        dev.acs_known = true;
        dev.info.acs_redirect = ci.acs_redirect != 0;
      }
    }

    if (auto r = devs_.try_push_back(dev); !r) {
      detail::sysfs_set_error(err, r.error(), 0, entry.buf, 0, "out of memory");
      return r.error();
    }
    return {};
  }

  static errc path_too_long(pci_sysfs_error* err, const char* p) noexcept {
    detail::sysfs_set_error(err, errc::too_long, 0, p, 0, "path too long");
    return errc::too_long;
  }

  // Finds the last "pciDDDD:BB" component of the resolved path; every component after it
  // must be a PCI address, the last being the device itself.
  result<void> parse_chain(const char* real, pci_sysfs_device& dev, pci_sysfs_error* err) noexcept {
    const std::size_t n = std::strlen(real);
    std::size_t host_end = 0;
    pci_sysfs_host_bridge hb;
    bool found = false;
    std::size_t prev_start = 0, prev_end = 0;  // the component before the current one
    for (std::size_t i = 0; i < n;) {
      while (i < n && real[i] == '/') ++i;
      std::size_t j = i;
      while (j < n && real[j] != '/') ++j;
      std::uint32_t dd;
      std::uint8_t bb;
      if (j > i && detail::parse_host_component(real + i, j - i, dd, bb)) {
        found = true;
        hb = pci_sysfs_host_bridge{dd, bb, false, {}};
        if (auto o = pci_bdf::parse(real + prev_start, prev_end - prev_start)) {
          hb.has_owner = true;
          hb.owner = *o;
        }
        host_end = j;
      }
      prev_start = i;
      prev_end = j;
      i = j;
    }
    if (!found) {
      detail::sysfs_set_error(err, errc::parse_error, 0, real, 0,
                              "device path has no host bridge component pciDDDD:BB");
      return errc::parse_error;
    }
    pci_bdf prev{};
    unsigned count = 0;
    for (std::size_t i = host_end; i < n;) {
      while (i < n && real[i] == '/') ++i;
      std::size_t j = i;
      while (j < n && real[j] != '/') ++j;
      if (j == i) break;
      auto b = pci_bdf::parse(real + i, j - i);
      if (!b) {
        detail::sysfs_set_error(err, errc::parse_error, 0, real, 0,
                                "component %u below the host bridge is not a PCI address",
                                count + 1);
        return errc::parse_error;
      }
      if (count > 0) {
        dev.parent = prev;
        dev.has_parent = true;
      }
      prev = *b;
      ++count;
      i = j;
    }
    if (count == 0 || prev != dev.info.bdf) {
      detail::sysfs_set_error(err, errc::parse_error, 0, real, 0,
                              "link target does not end in the device's own address");
      return errc::parse_error;
    }
    if (count > 256) {
      detail::sysfs_set_error(err, errc::parse_error, 0, real, 0, "implausibly deep PCI tree");
      return errc::parse_error;
    }
    dev.depth = static_cast<std::uint8_t>(count - 1);
    if (dev.info.bdf.domain != hb.domain) {
      detail::sysfs_set_error(err, errc::parse_error, 0, real, 0,
                              "device domain differs from its host bridge's");
      return errc::parse_error;
    }
    auto h = host_index(hb);
    if (!h) {
      detail::sysfs_set_error(err, h.error(), 0, real, 0, "out of memory");
      return h.error();
    }
    dev.host_bridge = *h;
    return {};
  }

  // Bridges whose PCIe port type could not be read: a bridge on the root bus is a root port;
  // below a root or downstream port, an upstream port; below an upstream port, a downstream
  // port; below a conventional bridge, a conventional bridge. Parents are sorted first.
  result<void> resolve_kinds(pci_sysfs_error* err) noexcept {
    for (std::size_t h = 0; h < hosts_.size(); ++h) {
      if (!hosts_[h].has_owner) continue;
      for (std::size_t i = 0; i < devs_.size(); ++i) {
        if (devs_[i].info.bdf == hosts_[h].owner) devs_[i].owns_host_bridge = true;
      }
    }
    for (std::size_t i = 0; i < devs_.size(); ++i) {
      pci_sysfs_device& d = devs_[i];
      if (d.has_parent && find(d.parent) == nullptr) {
        char name[24], parent[24];
        (void)d.info.bdf.format(name, sizeof name);
        (void)d.parent.format(parent, sizeof parent);
        detail::sysfs_set_error(err, errc::not_found, 0, name, 0,
                                "parent %s of %s is not listed in bus/pci/devices", parent, name);
        return errc::not_found;
      }
      if (d.kind_from_config) continue;
      if (!detail::class_is_bridge(d.info.class_code)) {
        d.info.kind = pci_device_kind::endpoint;
        continue;
      }
      if (!d.has_parent) {
        d.info.kind = pci_device_kind::root_port;
        continue;
      }
      switch (find(d.parent)->info.kind) {
        case pci_device_kind::root_port:
        case pci_device_kind::downstream_port:
          d.info.kind = pci_device_kind::upstream_port;
          break;
        case pci_device_kind::upstream_port:
          d.info.kind = pci_device_kind::downstream_port;
          break;
        default:
          d.info.kind = pci_device_kind::pci_bridge;
          break;
      }
    }
    return {};
  }

  detail::try_vector<pci_sysfs_device, Alloc> devs_;  // sorted by depth, then bdf, after scan
  detail::try_vector<pci_sysfs_host_bridge, Alloc> hosts_;
  [[no_unique_address]] Alloc alloc_{};
};

/// Scans `root`, builds the topology and registers the BARs. On success `topo` is replaced by
/// the new topology and the BAR windows are added to `reg` atomically; on failure neither
/// changes. Errors: see `pci_sysfs_scan::try_scan`, `try_build_topology`, `try_register_bars`.
template <segment_allocator TA, segment_allocator RA>
[[nodiscard]] result<void> load_pci_sysfs(const char* root, pci_topology<TA>& topo,
                                          p2p_registry<RA>& reg, const pci_sysfs_options& opt = {},
                                          pci_sysfs_error* err = nullptr) noexcept {
  auto scan = pci_sysfs_scan<TA>::try_scan(root, err, topo.get_allocator());
  if (!scan) return scan.error();
  auto t = scan->try_build_topology(opt, err, topo.get_allocator());
  if (!t) return t.error();
  if (auto r = scan->try_register_bars(reg, opt, err); !r) return r;
  topo = std::move(*t);
  return {};
}

}  // namespace phyr::inline v0
