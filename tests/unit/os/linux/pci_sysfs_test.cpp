// pci_sysfs: reading fixture sysfs trees (tests/data/sysfs, made by generate.py) and the
// machine's own /sys into a topology and a provider registry.
#include <catch2/catch.hpp>
#include <cstring>
#include <phyr/os/linux/pci_sysfs.hpp>
#include <string>

using phyr::errc;
using phyr::host_bridge_p2p;
using phyr::p2p_map_type;
using phyr::pci_bdf;
using phyr::pci_device_kind;
using phyr::pci_sysfs_error;
using phyr::pci_sysfs_options;
using phyr::pci_sysfs_scan;

namespace {

std::string tree(const char* name) { return std::string(PHYR_TEST_DATA_DIR) + "/sysfs/" + name; }

pci_bdf b(const char* s) { return phyr::must(pci_bdf::parse(s, std::strlen(s))); }

bool ends_with(const char* s, const char* suffix) {
  const std::size_t n = std::strlen(s), m = std::strlen(suffix);
  return n >= m && std::strcmp(s + n - m, suffix) == 0;
}

pci_sysfs_scan<> scan_ok(const char* name) {
  pci_sysfs_error err;
  auto s = pci_sysfs_scan<>::try_scan(tree(name).c_str(), &err);
  INFO(err.path << ": " << err.message);
  REQUIRE(s);
  return std::move(*s);
}

}  // namespace

TEST_CASE("p2p sysfs: a workstation tree gives every function, its parent chain and BARs",
          "[pci_sysfs]") {
  const auto s = scan_ok("workstation");
  CHECK(s.devices().size() == 16);
  REQUIRE(s.host_bridges().size() == 2);
  CHECK(s.host_bridges()[0].domain == 0);
  CHECK_FALSE(s.host_bridges()[0].has_owner);
  CHECK(s.host_bridges()[1].domain == 0x10000);
  CHECK(s.host_bridges()[1].root_bus == 0xe0);
  CHECK(s.host_bridges()[1].has_owner);
  CHECK(s.host_bridges()[1].owner == b("0000:00:0e.0"));

  // Parents precede children.
  for (std::size_t i = 1; i < s.devices().size(); ++i)
    CHECK(s.devices()[i - 1].depth <= s.devices()[i].depth);

  const auto* gpu = s.find(b("0000:03:00.0"));
  REQUIRE(gpu != nullptr);
  CHECK(gpu->info.kind == pci_device_kind::endpoint);
  CHECK(gpu->info.class_code == 0x030000);
  CHECK(gpu->info.vendor == 0x10de);
  CHECK(gpu->info.device == 0x1db6);
  CHECK(gpu->has_parent);
  CHECK(gpu->parent == b("0000:02:08.0"));
  CHECK(gpu->depth == 3);
  CHECK(gpu->bars[0].start == 0xde000000);
  CHECK(gpu->bars[0].size == 16u << 20);
  CHECK_FALSE(gpu->bars[0].is_prefetchable());
  CHECK(gpu->bars[1].start == 0x38'0000'0000);
  CHECK(gpu->bars[1].size == 256u << 20);
  CHECK(gpu->bars[1].is_prefetchable());
  CHECK(gpu->bars[1].is_64bit());
  CHECK_FALSE(gpu->bars[2].used());  // upper half of the 64-bit BAR1
  CHECK(gpu->bars[5].used());
  CHECK_FALSE(gpu->bars[5].is_memory());  // I/O ports
  CHECK_FALSE(gpu->kind_from_config);
  CHECK_FALSE(gpu->acs_known);

  // Without config space the port kinds come from the tree's shape.
  CHECK(s.find(b("0000:00:01.0"))->info.kind == pci_device_kind::root_port);
  CHECK(s.find(b("0000:01:00.0"))->info.kind == pci_device_kind::upstream_port);
  CHECK(s.find(b("0000:02:08.0"))->info.kind == pci_device_kind::downstream_port);
  CHECK(s.find(b("0000:00:00.0"))->info.kind == pci_device_kind::endpoint);
  CHECK_FALSE(s.find(b("0000:00:01.0"))->has_parent);
  CHECK(s.find(b("0000:00:0e.0"))->owns_host_bridge);
  const auto* vmd_nvme = s.find(b("10000:e1:00.0"));
  REQUIRE(vmd_nvme != nullptr);
  CHECK(vmd_nvme->parent == b("10000:e0:06.0"));
  CHECK(s.host_bridges()[vmd_nvme->host_bridge].domain == 0x10000);
  CHECK_FALSE(s.find(b("10000:e0:06.0"))->has_parent);  // on the VMD domain's root bus
}

TEST_CASE("p2p sysfs: map types for every pair class of the workstation tree", "[pci_sysfs]") {
  const auto s = scan_ok("workstation");
  const pci_bdf gpu = b("0000:03:00.0"), nvme = b("0000:04:00.0"), nic0 = b("0000:05:00.0"),
                nic1 = b("0000:05:00.1"), nvme2 = b("0000:06:00.0"), vmd_nvme = b("10000:e1:00.0"),
                sata = b("0000:00:1f.2");
  SECTION("no allowlist: only the switch and the multi-function device are peers") {
    auto t = phyr::must(s.try_build_topology(pci_sysfs_options{}));
    CHECK(t.size() == 16);
    CHECK(t.host_bridge_count() == 2);
    auto p = phyr::must(t.path(gpu, nvme));
    CHECK(p.type == p2p_map_type::bus_address);
    CHECK(p.distance == 4);
    CHECK(t.path(nic0, nic1)->type == p2p_map_type::bus_address);
    CHECK(t.path(nic0, nic1)->distance == 2);
    CHECK(t.path(gpu, gpu)->distance == 0);
    CHECK(t.path(gpu, nvme2)->type == p2p_map_type::not_supported);
    CHECK(t.path(nvme, nic0)->type == p2p_map_type::not_supported);
    CHECK(t.path(sata, gpu)->type == p2p_map_type::not_supported);
    CHECK(t.path(gpu, vmd_nvme)->type == p2p_map_type::not_supported);
  }
  SECTION("host bridge 8086:2020 allowlisted for its own root ports") {
    const phyr::pci_host_bridge_rule allow[] = {
        {0x8086, 0x2020, host_bridge_p2p::same_host_bridge}};
    auto t = phyr::must(s.try_build_topology(pci_sysfs_options{.allowlist = allow}));
    CHECK(t.host_bridge(0).policy == host_bridge_p2p::same_host_bridge);
    CHECK(t.host_bridge(1).policy == host_bridge_p2p::deny);
    CHECK(t.path(gpu, nvme2)->type == p2p_map_type::through_host_bridge);
    CHECK(t.path(sata, gpu)->type == p2p_map_type::through_host_bridge);
    CHECK(t.path(gpu, nvme)->type == p2p_map_type::bus_address);
    CHECK(t.path(gpu, vmd_nvme)->type == p2p_map_type::not_supported);
  }
  SECTION("every Intel host bridge allowlisted across bridges (VMD's by its root port)") {
    const phyr::pci_host_bridge_rule allow[] = {{0x8086, 0xffff, host_bridge_p2p::any}};
    auto t = phyr::must(s.try_build_topology(pci_sysfs_options{.allowlist = allow}));
    CHECK(t.host_bridge(1).policy == host_bridge_p2p::any);
    CHECK(t.path(gpu, vmd_nvme)->type == p2p_map_type::through_host_bridge);
  }
  SECTION("a platform that forwards everywhere") {
    auto t = phyr::must(s.try_build_topology(pci_sysfs_options{.platform_p2p = true}));
    CHECK(t.path(gpu, vmd_nvme)->type == p2p_map_type::through_host_bridge);
    CHECK(t.path(gpu, nvme)->type == p2p_map_type::bus_address);
  }
}

TEST_CASE("p2p sysfs: BARs become provider windows, apertures and I/O ports do not",
          "[pci_sysfs]") {
  const auto s = scan_ok("workstation");
  SECTION("default: memory BARs of endpoints") {
    phyr::p2p_registry<> reg;
    REQUIRE(s.try_register_bars(reg, pci_sysfs_options{}));
    CHECK(reg.size() == 11);
    auto cmb = reg.lookup(phyr::phys_range{phyr::phys_addr{0x38'2000'1000}, 0x1000});
    REQUIRE(cmb);
    REQUIRE(cmb->is_provider());
    CHECK(cmb->window().provider() == b("0000:04:00.0").provider_id());
    CHECK(cmb->window().len() == 64u << 20);
    CHECK(cmb->window().bus_offset() == 0);
    // The VMD child's BAR is registered; the VMD aperture around it is not.
    auto v = reg.lookup(phyr::phys_range{phyr::phys_addr{0xdc00'0000}, 0x1000});
    REQUIRE(v);
    CHECK(v->window().provider() == b("10000:e1:00.0").provider_id());
    // A range running from the GPU's VRAM BAR into its next BAR straddles.
    CHECK(reg.lookup(phyr::phys_range{phyr::phys_addr{0x38'0fff'f000}, 0x2000}).error() ==
          errc::straddles_boundary);
  }
  SECTION("prefetchable only") {
    phyr::p2p_registry<> reg;
    REQUIRE(s.try_register_bars(reg, pci_sysfs_options{.prefetchable_only = true}));
    CHECK(reg.size() == 6);
  }
  SECTION("per-host-bridge bus offsets") {
    const phyr::pci_host_bridge_offset offs[] = {{0, 0, -0x30'0000'0000}};
    phyr::p2p_registry<> reg;
    REQUIRE(s.try_register_bars(reg,
                                pci_sysfs_options{.bus_offsets = offs, .prefetchable_only = true}));
    auto w = reg.lookup(phyr::phys_range{phyr::phys_addr{0x38'0000'0000}, 0x1000});
    REQUIRE(w);
    CHECK(w->window().bus_address(phyr::phys_addr{0x38'0000'0000}) == 0x8'0000'0000);
  }
  SECTION("an offset that would push a BAR below bus address 0 is refused") {
    const phyr::pci_host_bridge_offset offs[] = {{0, 0, -0x40'0000'0000}};
    phyr::p2p_registry<> reg;
    pci_sysfs_error err;
    auto r = s.try_register_bars(reg, pci_sysfs_options{.bus_offsets = offs}, &err);
    REQUIRE_FALSE(r);
    CHECK(r.error() == errc::overflow);
    CHECK(std::strstr(err.message, "bus offset") != nullptr);
    CHECK(reg.size() == 0);
  }
  SECTION("counting apertures too makes the VMD BAR overlap its child: named in the error") {
    phyr::p2p_registry<> reg;
    pci_sysfs_error err;
    auto r = s.try_register_bars(reg, pci_sysfs_options{.endpoints_only = false}, &err);
    REQUIRE_FALSE(r);
    CHECK(r.error() == errc::overlaps);
    CHECK(err.code == errc::overlaps);
    CHECK(std::strstr(err.message, "0000:00:0e.0") != nullptr);
    CHECK(std::strstr(err.message, "10000:e1:00.0") != nullptr);
    CHECK(reg.size() == 0);
  }
}

TEST_CASE(
    "p2p sysfs: config space gives port types and ACS, and ACS redirect forces the host bridge",
    "[pci_sysfs]") {
  const auto s = scan_ok("acs_switch");
  const auto* rp = s.find(b("0000:00:01.1"));
  REQUIRE(rp != nullptr);
  CHECK(rp->kind_from_config);
  CHECK(rp->info.kind == pci_device_kind::root_port);
  CHECK(s.find(b("0000:01:00.0"))->info.kind == pci_device_kind::upstream_port);
  const auto* d0 = s.find(b("0000:02:00.0"));
  CHECK(d0->info.kind == pci_device_kind::downstream_port);
  CHECK(d0->acs_known);
  CHECK(d0->info.acs_redirect);
  CHECK(s.find(b("0000:02:01.0"))->acs_known);
  CHECK_FALSE(s.find(b("0000:02:01.0"))->info.acs_redirect);
  const auto* gpu = s.find(b("0000:03:00.0"));
  CHECK_FALSE(gpu->acs_known);  // 64 bytes of config: what an unprivileged reader sees
  CHECK_FALSE(gpu->kind_from_config);
  CHECK(s.find(b("0000:04:00.0"))->acs_known);
  CHECK_FALSE(s.find(b("0000:04:00.0"))->info.acs_redirect);

  const pci_bdf g = b("0000:03:00.0"), n = b("0000:04:00.0");
  auto t = phyr::must(s.try_build_topology(pci_sysfs_options{}));
  auto p = phyr::must(t.path(g, n));
  CHECK(p.type == p2p_map_type::not_supported);
  CHECK(p.acs_redirect);
  CHECK(p.common_bridge);
  CHECK(t.path(n, g)->type == p2p_map_type::not_supported);
  const phyr::pci_host_bridge_rule amd[] = {{0x1022, 0x1480, host_bridge_p2p::same_host_bridge}};
  auto t2 = phyr::must(s.try_build_topology(pci_sysfs_options{.allowlist = amd}));
  CHECK(t2.path(g, n)->type == p2p_map_type::through_host_bridge);
  auto t3 = phyr::must(s.try_build_topology(pci_sysfs_options{.platform_p2p = true}));
  CHECK(t3.path(n, g)->type == p2p_map_type::through_host_bridge);
}

TEST_CASE("p2p sysfs: broken trees give an errc and a message naming the file and line",
          "[pci_sysfs]") {
  struct expect {
    const char* tree;
    errc code;
    const char* path_suffix;
    unsigned line;
    const char* message_part;
  };
  const expect cases[] = {
      {"broken_missing_resource", errc::not_found, "0000:00:03.0/resource", 0, "cannot open"},
      {"broken_garbage_resource", errc::parse_error, "0000:00:02.0/resource", 2, "not a hex"},
      {"broken_start_gt_end", errc::parse_error, "0000:00:02.0/resource", 2, "above end"},
      {"broken_class", errc::parse_error, "0000:00:02.0/class", 1, "hex number"},
      {"broken_orphan", errc::not_found, "0000:01:00.0", 0, "not listed"},
      {"broken_dangling_link", errc::not_found, "0000:00:09.0", 0, "resolve"},
      {"broken_name", errc::parse_error, "not-a-device", 0, "not a PCI address"},
      {"does_not_exist", errc::not_found, "bus/pci/devices", 0, "no PCI bus"},
  };
  for (const expect& e : cases) {
    INFO(e.tree);
    pci_sysfs_error err;
    auto s = pci_sysfs_scan<>::try_scan(tree(e.tree).c_str(), &err);
    INFO(err.path << ":" << err.line << ": " << err.message);
    REQUIRE_FALSE(s);
    CHECK(s.error() == e.code);
    CHECK(err.code == e.code);
    CHECK(ends_with(err.path, e.path_suffix));
    CHECK(err.line == e.line);
    CHECK(std::strstr(err.message, e.message_part) != nullptr);
  }
  // Also fine without an error record.
  CHECK(pci_sysfs_scan<>::try_scan(tree("broken_class").c_str()).error() == errc::parse_error);
}

TEST_CASE("p2p sysfs: a device below a non-bridge is refused when building the topology",
          "[pci_sysfs]") {
  const auto s = scan_ok("broken_endpoint_parent");
  pci_sysfs_error err;
  auto t = s.try_build_topology(pci_sysfs_options{}, &err);
  REQUIRE_FALSE(t);
  CHECK(t.error() == errc::invalid_argument);
  CHECK(std::strstr(err.message, "not a bridge") != nullptr);
}

TEST_CASE("p2p sysfs: an empty bus is an empty scan", "[pci_sysfs]") {
  const auto s = scan_ok("empty");
  CHECK(s.devices().empty());
  CHECK(s.host_bridges().empty());
  phyr::pci_topology<> t;
  phyr::p2p_registry<> reg;
  CHECK(phyr::load_pci_sysfs(tree("empty").c_str(), t, reg).has_value());
  CHECK(t.size() == 0);
  CHECK(reg.size() == 0);
}

TEST_CASE("p2p sysfs: load_pci_sysfs changes nothing when any step fails", "[pci_sysfs]") {
  phyr::pci_topology<> t;
  phyr::p2p_registry<> reg;
  REQUIRE(phyr::load_pci_sysfs(tree("workstation").c_str(), t, reg));
  CHECK(t.size() == 16);
  CHECK(reg.size() == 11);
  pci_sysfs_error err;
  // Overlapping BARs: the registry refuses, the topology stays the workstation's.
  auto r = phyr::load_pci_sysfs(tree("broken_overlap").c_str(), t, reg, {}, &err);
  REQUIRE_FALSE(r);
  CHECK(r.error() == errc::overlaps);
  CHECK(std::strstr(err.message, "0000:00:02.0") != nullptr);
  CHECK(std::strstr(err.message, "0000:00:03.0") != nullptr);
  CHECK(t.size() == 16);
  CHECK(reg.size() == 11);
  // Loading the same tree again collides with its own windows.
  r = phyr::load_pci_sysfs(tree("workstation").c_str(), t, reg, {}, &err);
  CHECK(r.error() == errc::overlaps);
  CHECK(std::strstr(err.message, "already registered") != nullptr);
  CHECK(reg.size() == 11);
  // A parse error stops before anything is touched.
  CHECK(phyr::load_pci_sysfs(tree("broken_start_gt_end").c_str(), t, reg).error() ==
        errc::parse_error);
  CHECK(t.contains(b("0000:03:00.0")));
}

TEST_CASE("p2p sysfs: allocation failure anywhere in a scan fails cleanly and leaks nothing",
          "[pci_sysfs][alloc]") {
  phyr::fault_state fs;
  for (std::uint64_t k = 1;; ++k) {
    fs.fail_at = k;
    fs.calls = 0;
    bool done = false;
    {
      auto s = pci_sysfs_scan<phyr::fault_injecting_allocator>::try_scan(
          tree("workstation").c_str(), nullptr, phyr::fault_injecting_allocator{&fs});
      if (s) {
        auto t = s->try_build_topology(pci_sysfs_options{}, nullptr,
                                       phyr::fault_injecting_allocator{&fs});
        phyr::p2p_registry<phyr::fault_injecting_allocator> reg{
            phyr::fault_injecting_allocator{&fs}};
        auto r = s->try_register_bars(reg, pci_sysfs_options{});
        if (t && r) {
          CHECK(t->size() == 16);
          CHECK(reg.size() == 11);
          done = true;
        } else {
          CHECK((t ? r.error() : t.error()) == errc::out_of_memory);
          if (!r) CHECK(reg.size() == 0);
        }
      } else {
        CHECK(s.error() == errc::out_of_memory);
      }
    }
    CHECK(fs.live == 0);
    if (done) break;
    REQUIRE(k < 200);
  }
}

TEST_CASE("p2p sysfs: resource parsing accepts the kernel's format and rejects the rest",
          "[pci_sysfs]") {
  using phyr::detail::sysfs_parse_resource;
  auto parse = [](const char* text, phyr::pci_bar(&bars)[6]) {
    return sysfs_parse_resource(text, std::strlen(text), "resource", bars, nullptr);
  };
  phyr::pci_bar bars[6];
  CHECK(parse("0x0000000000001000 0x0000000000001000 0x0000000000000200", bars));  // no '\n'
  CHECK(bars[0].size == 1);
  CHECK(parse("0x1000 0x1fff 0x200  \n0x0 0x0 0x0\n", bars));  // short hex, trailing blanks
  CHECK(bars[0].size == 0x1000);
  CHECK_FALSE(bars[1].used());
  CHECK(parse("0x0 0x0 0x200\n", bars));  // unassigned: flags but no range
  CHECK_FALSE(bars[0].used());
  phyr::pci_sysfs_error err;
  auto bad = [&](const char* text) {
    return sysfs_parse_resource(text, std::strlen(text), "resource", bars, &err);
  };
  CHECK(bad("").error() == errc::parse_error);
  CHECK(bad("0x1000 0x1fff\n").error() == errc::parse_error);
  CHECK(bad("0x1000 0x1fff 0x200 0x1\n").error() == errc::parse_error);
  CHECK(bad("1000 1fff 200\n").error() == errc::parse_error);
  CHECK(bad("0x00000000000000001 0x2 0x3\n").error() == errc::parse_error);  // 17 digits
  CHECK(bad("0x0 0xffffffffffffffff 0x200\n").error() == errc::parse_error);
  CHECK(bad("0x0 0x0 0x0\n0x2000 0x1fff 0x200\n").error() == errc::parse_error);
  CHECK(err.line == 2);
}

TEST_CASE("p2p sysfs: this machine's /sys scans, or reports why not", "[pci_sysfs]") {
  pci_sysfs_error err;
  auto s = pci_sysfs_scan<>::try_scan("/sys", &err);
  if (!s) {
    INFO(err.path << ": " << err.message);
    CHECK((s.error() == errc::not_found || s.error() == errc::permission_denied));
    return;
  }
  auto t = s->try_build_topology(pci_sysfs_options{}, &err);
  INFO(err.path << ": " << err.message);
  REQUIRE(t);
  CHECK(t->size() == s->devices().size());
  phyr::p2p_registry<> reg;
  CHECK(s->try_register_bars(reg, pci_sysfs_options{}, &err));
}
