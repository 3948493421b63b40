// Prints this machine's PCI tree and BARs as phyr reads them from sysfs, then the P2P map type
// between every pair of devices that have memory BARs.
//
//   ./pci_topology                                  # the real /sys
//   ./pci_topology tests/data/sysfs/workstation     # any sysfs-shaped tree
//
// Works unprivileged (config space is then 64 bytes: port kinds are inferred from the tree and
// ACS counts as off) and exits 0 when there is no PCI bus at all (containers, some VMs).
#include <cstdio>
#include <cstring>
#include <phyr/os/linux/pci_sysfs.hpp>

namespace {

using scan_t = phyr::pci_sysfs_scan<>;

const char* class_name(std::uint32_t cls) {
  switch (cls >> 16) {
    case 0x01:
      return "storage";
    case 0x02:
      return "network";
    case 0x03:
      return "display";
    case 0x04:
      return "multimedia";
    case 0x05:
      return "memory";
    case 0x06:
      return "bridge";
    case 0x07:
      return "communication";
    case 0x08:
      return "system";
    case 0x0c:
      return "serial bus";
    case 0x12:
      return "accelerator";
    case 0xff:
      return "unassigned";
    default:
      return "other";
  }
}

void print_size(std::uint64_t n) {
  static const char* const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (u < 4 && n >= 1024 && n % 1024 == 0) {
    n /= 1024;
    ++u;
  }
  std::printf("%llu %s", static_cast<unsigned long long>(n), unit[u]);
}

void print_device(const scan_t& s, const phyr::pci_sysfs_device& d, int indent) {
  char name[24];
  (void)d.info.bdf.format(name, sizeof name);
  std::printf("%*s%s  %-15s %04x:%04x class %06x (%s)%s%s\n", indent, "", name,
              phyr::to_string(d.info.kind), d.info.vendor, d.info.device, d.info.class_code,
              class_name(d.info.class_code),
              d.acs_known && d.info.acs_redirect ? "  ACS-redirect" : "",
              d.owns_host_bridge ? "  hosts a PCI domain" : "");
  for (std::size_t i = 0; i < phyr::pci_sysfs_device::bar_count; ++i) {
    const phyr::pci_bar& b = d.bars[i];
    if (!b.used()) continue;
    std::printf("%*s  BAR%zu %s [0x%012llx, +", indent, "", i, b.is_memory() ? "mem" : "io ",
                static_cast<unsigned long long>(b.start));
    print_size(b.size);
    std::printf(")%s%s\n", b.is_64bit() ? " 64-bit" : "",
                b.is_prefetchable() ? " prefetchable" : "");
  }
  for (const auto& c : s.devices()) {
    if (c.has_parent && c.parent == d.info.bdf) print_device(s, c, indent + 2);
  }
}

bool has_memory_bar(const phyr::pci_sysfs_device& d) {
  if (phyr::is_bridge(d.info.kind) || d.owns_host_bridge) return false;
  for (const auto& b : d.bars) {
    if (b.is_assigned_memory()) return true;
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  const char* root = argc > 1 ? argv[1] : "/sys";
  phyr::pci_sysfs_error err;
  auto s = scan_t::try_scan(root, &err);
  if (!s) {
    std::printf("no PCI topology under %s: %s (%s: %s)\n", root, phyr::to_string(s.error()),
                err.path, err.message);
    // No PCI bus, or not allowed to look: nothing to show, and not a failure of this example.
    return s.error() == phyr::errc::not_found || s.error() == phyr::errc::permission_denied ? 0 : 1;
  }
  if (s->devices().empty()) {
    std::printf("%s/bus/pci/devices is empty: no PCI devices\n", root);
    return 0;
  }
  std::printf("%zu PCI functions below %zu host bridge(s) in %s\n\n", s->devices().size(),
              s->host_bridges().size(), root);
  for (std::uint32_t h = 0; h < s->host_bridges().size(); ++h) {
    const auto& hb = s->host_bridges()[h];
    std::printf("pci%04x:%02x", hb.domain, hb.root_bus);
    if (hb.has_owner) {
      char owner[24];
      (void)hb.owner.format(owner, sizeof owner);
      std::printf("  (nested below %s)", owner);
    }
    std::printf("\n");
    for (const auto& d : s->devices()) {
      if (!d.has_parent && d.host_bridge == h) print_device(*s, d, 2);
    }
  }

  auto topo = s->try_build_topology(phyr::pci_sysfs_options{}, &err);
  if (!topo) {
    std::printf("\ncannot build the topology: %s (%s: %s)\n", phyr::to_string(topo.error()),
                err.path, err.message);
    return 1;
  }
  phyr::p2p_registry<> reg;
  if (auto r = s->try_register_bars(reg, phyr::pci_sysfs_options{}, &err); !r) {
    std::printf("\ncannot register BARs: %s (%s)\n", phyr::to_string(r.error()), err.message);
    return 1;
  }
  std::printf("\n%zu provider windows registered (memory BARs of endpoints)\n", reg.size());

  std::printf("\nP2P map types (provider -> client), no host bridge allowlisted:\n");
  int shown = 0;
  for (const auto& p : s->devices()) {
    if (!has_memory_bar(p)) continue;
    for (const auto& c : s->devices()) {
      if (&p == &c || phyr::is_bridge(c.info.kind) || c.owns_host_bridge) continue;
      if (++shown > 64) break;
      auto path = topo->path(p.info.bdf, c.info.bdf);
      char a[24], b[24];
      (void)p.info.bdf.format(a, sizeof a);
      (void)c.info.bdf.format(b, sizeof b);
      std::printf("  %s -> %s  %-19s distance %u%s\n", a, b, phyr::to_string(path->type),
                  path->distance, path->acs_redirect ? " (ACS redirect)" : "");
    }
  }
  if (shown == 0) std::printf("  (no endpoint with a memory BAR and another endpoint)\n");
  if (shown > 64) std::printf("  ... (first 64 pairs)\n");
  return 0;
}
