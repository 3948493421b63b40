// pci_topology: the kernel's P2PDMA map-type rules on hand-built trees.
#include <atomic>
#include <catch2/catch.hpp>
#include <cstring>
#include <phyr/map/p2p/pci_topology.hpp>
#include <thread>
#include <vector>

#include "support/threads.hpp"

using phyr::errc;
using phyr::host_bridge_p2p;
using phyr::p2p_map_type;
using phyr::pci_bdf;
using phyr::pci_device_info;
using phyr::pci_device_kind;
using phyr::pci_topology;

namespace {

constexpr pci_bdf bdf(std::uint32_t d, std::uint8_t b, std::uint8_t dev, std::uint8_t fn) {
  return pci_bdf{d, b, dev, fn};
}
pci_device_info dev(pci_bdf b, pci_device_kind k = pci_device_kind::endpoint) {
  pci_device_info i;
  i.bdf = b;
  i.kind = k;
  return i;
}

// Host bridge 0 (0000:00):
//   00:00.0 host bridge function
//   00:01.0 root port -- 01:00.0 switch upstream -+- 02:00.0 downstream -- 03:00.0 GPU
//                                                 +- 02:01.0 downstream -- 04:00.0 NVMe
//   00:02.0 root port -- 05:00.0 / 05:00.1 multi-function NIC
//   00:03.0 root port -- 06:00.0 NVMe (other root port)
//   00:1f.0 integrated endpoint on the root bus
// Host bridge 1 (0001:00):
//   0001:00:01.0 root port -- 0001:01:00.0 GPU
constexpr pci_bdf gpu = bdf(0, 3, 0, 0), nvme = bdf(0, 4, 0, 0), nic0 = bdf(0, 5, 0, 0),
                  nic1 = bdf(0, 5, 0, 1), nvme2 = bdf(0, 6, 0, 0), rcie = bdf(0, 0, 0x1f, 0),
                  gpu2 = bdf(1, 1, 0, 0), usp = bdf(0, 1, 0, 0), dsp0 = bdf(0, 2, 0, 0),
                  dsp1 = bdf(0, 2, 1, 0), rp1 = bdf(0, 0, 1, 0);

struct fixture {
  pci_topology<> t;
  std::uint32_t hb0 = 0, hb1 = 0;
  fixture() {
    hb0 = phyr::must(t.try_add_host_bridge(0, 0));
    hb1 = phyr::must(t.try_add_host_bridge(1, 0));
    (void)phyr::must(t.try_add_device(hb0, dev(bdf(0, 0, 0, 0))));
    (void)phyr::must(t.try_add_device(hb0, dev(rp1, pci_device_kind::root_port)));
    (void)phyr::must(t.try_add_device(hb0, dev(bdf(0, 0, 2, 0), pci_device_kind::root_port)));
    (void)phyr::must(t.try_add_device(hb0, dev(bdf(0, 0, 3, 0), pci_device_kind::root_port)));
    (void)phyr::must(t.try_add_device(hb0, dev(rcie)));
    (void)phyr::must(t.try_add_device_below(rp1, dev(usp, pci_device_kind::upstream_port)));
    (void)phyr::must(t.try_add_device_below(usp, dev(dsp0, pci_device_kind::downstream_port)));
    (void)phyr::must(t.try_add_device_below(usp, dev(dsp1, pci_device_kind::downstream_port)));
    (void)phyr::must(t.try_add_device_below(dsp0, dev(gpu)));
    (void)phyr::must(t.try_add_device_below(dsp1, dev(nvme)));
    (void)phyr::must(t.try_add_device_below(bdf(0, 0, 2, 0), dev(nic0)));
    (void)phyr::must(t.try_add_device_below(bdf(0, 0, 2, 0), dev(nic1)));
    (void)phyr::must(t.try_add_device_below(bdf(0, 0, 3, 0), dev(nvme2)));
    (void)phyr::must(t.try_add_device(hb1, dev(bdf(1, 0, 1, 0), pci_device_kind::root_port)));
    (void)phyr::must(t.try_add_device_below(bdf(1, 0, 1, 0), dev(gpu2)));
  }
  phyr::p2p_path path(pci_bdf p, pci_bdf c) const { return phyr::must(t.path(p, c)); }
};

}  // namespace

TEST_CASE("p2p pci_bdf parses and formats sysfs names", "[p2p_topology]") {
  constexpr const char name[] = "0000:3b:1f.7";
  STATIC_REQUIRE(pci_bdf::parse(name, sizeof(name) - 1)->key() ==
                 ((0x3bull << 8) | (0x1f << 3) | 7));
  auto vmd = pci_bdf::parse("10000:e0:06.0", 13);
  REQUIRE(vmd);
  CHECK(vmd->domain == 0x10000);
  CHECK(vmd->bus == 0xe0);
  CHECK(vmd->device == 6);
  char buf[24];
  CHECK(vmd->format(buf, sizeof buf) == 13);
  CHECK(std::strcmp(buf, "10000:e0:06.0") == 0);
  CHECK(bdf(0, 0x3b, 0x1f, 7).format(buf, sizeof buf) == 12);
  CHECK(std::strcmp(buf, "0000:3b:1f.7") == 0);
  CHECK(bdf(0, 1, 2, 3).format(buf, 12) == 0);  // no room for the NUL
  for (const char* bad :
       {"", "0000:00:00", "000:00:00.0", "0000:0:00.0", "0000:00:20.0", "0000:00:00.8",
        "0000:00:00.0 ", "0000-00:00.0", "zzzz:00:00.0", "123456789:00:00.0"}) {
    INFO(bad);
    auto r = pci_bdf::parse(bad, std::strlen(bad));
    REQUIRE_FALSE(r);
    CHECK(r.error() == errc::parse_error);
  }
  CHECK(pci_bdf::from_provider_id(gpu.provider_id()) == gpu);
  CHECK(pci_bdf::from_key(gpu2.key()) == gpu2);
}

TEST_CASE("p2p map type: devices below one switch use bus addresses at distance 4",
          "[p2p_topology]") {
  fixture f;
  const auto p = f.path(gpu, nvme);
  CHECK(p.type == p2p_map_type::bus_address);
  CHECK(p.distance == 4);
  CHECK(p.common_bridge);
  CHECK_FALSE(p.acs_redirect);
  CHECK(f.path(nvme, gpu) == p);
}

TEST_CASE("p2p map type: the same function is distance 0, two functions of one device 2",
          "[p2p_topology]") {
  fixture f;
  CHECK(f.path(gpu, gpu).type == p2p_map_type::bus_address);
  CHECK(f.path(gpu, gpu).distance == 0);
  CHECK(f.path(nic0, nic1).type == p2p_map_type::bus_address);
  CHECK(f.path(nic0, nic1).distance == 2);
  // A device and its own upstream bridge share that bridge.
  CHECK(f.path(gpu, dsp0).type == p2p_map_type::bus_address);
  CHECK(f.path(gpu, dsp0).distance == 1);
}

TEST_CASE("p2p map type: devices on different root ports need an allowlisted host bridge",
          "[p2p_topology]") {
  fixture f;
  auto p = f.path(gpu, nvme2);
  CHECK(p.type == p2p_map_type::not_supported);
  CHECK_FALSE(p.common_bridge);
  CHECK(p.distance == 6);  // 4 hops up from the GPU's chain, 2 from the NVMe's
  CHECK(f.path(gpu, rcie).type == p2p_map_type::not_supported);
  CHECK(f.path(nic0, nvme2).type == p2p_map_type::not_supported);

  REQUIRE(f.t.try_set_host_bridge_policy(f.hb0, host_bridge_p2p::same_host_bridge));
  CHECK(f.path(gpu, nvme2).type == p2p_map_type::through_host_bridge);
  CHECK(f.path(gpu, rcie).type == p2p_map_type::through_host_bridge);
  CHECK(f.path(gpu, nvme).type == p2p_map_type::bus_address);  // the switch still wins

  REQUIRE(f.t.try_set_host_bridge_policy(f.hb0, host_bridge_p2p::any));
  CHECK(f.path(nvme2, gpu).type == p2p_map_type::through_host_bridge);
  REQUIRE(f.t.try_set_host_bridge_policy(f.hb0, host_bridge_p2p::deny));
  CHECK(f.path(nvme2, gpu).type == p2p_map_type::not_supported);
}

TEST_CASE("p2p map type: across host bridges both must allow cross-bridge forwarding",
          "[p2p_topology]") {
  fixture f;
  CHECK(f.path(gpu, gpu2).type == p2p_map_type::not_supported);
  REQUIRE(f.t.try_set_host_bridge_policy(f.hb0, host_bridge_p2p::any));
  CHECK(f.path(gpu, gpu2).type == p2p_map_type::not_supported);
  REQUIRE(f.t.try_set_host_bridge_policy(f.hb1, host_bridge_p2p::same_host_bridge));
  CHECK(f.path(gpu, gpu2).type == p2p_map_type::not_supported);
  REQUIRE(f.t.try_set_host_bridge_policy(f.hb1, host_bridge_p2p::any));
  CHECK(f.path(gpu, gpu2).type == p2p_map_type::through_host_bridge);
  CHECK(f.path(gpu2, gpu).type == p2p_map_type::through_host_bridge);
  CHECK(f.t.try_set_host_bridge_policy(7, host_bridge_p2p::any).error() == errc::not_found);
}

TEST_CASE("p2p map type: a platform that forwards P2P everywhere allows every pair",
          "[p2p_topology]") {
  fixture f;
  f.t.set_platform_p2p(true);
  CHECK(f.path(gpu, gpu2).type == p2p_map_type::through_host_bridge);
  CHECK(f.path(gpu, nvme2).type == p2p_map_type::through_host_bridge);
  CHECK(f.path(gpu, nvme).type == p2p_map_type::bus_address);
  f.t.set_platform_p2p(false);
  CHECK(f.path(gpu, gpu2).type == p2p_map_type::not_supported);
}

TEST_CASE("p2p map type: ACS redirect on the path sends traffic through the host bridge",
          "[p2p_topology]") {
  fixture f;
  REQUIRE(f.t.try_set_acs_redirect(dsp1, true));  // client side, below the common bridge
  auto p = f.path(gpu, nvme);
  CHECK(p.type == p2p_map_type::not_supported);
  CHECK(p.acs_redirect);
  CHECK(p.common_bridge);
  CHECK(p.distance == 4);
  REQUIRE(f.t.try_set_host_bridge_policy(f.hb0, host_bridge_p2p::same_host_bridge));
  CHECK(f.path(gpu, nvme).type == p2p_map_type::through_host_bridge);
  CHECK(f.path(nvme, gpu).type == p2p_map_type::through_host_bridge);  // provider side too
  REQUIRE(f.t.try_set_acs_redirect(dsp1, false));
  CHECK(f.path(gpu, nvme).type == p2p_map_type::bus_address);

  // The common bridge itself counts (the kernel checks it on the provider's walk) ...
  REQUIRE(f.t.try_set_acs_redirect(usp, true));
  CHECK(f.path(gpu, nvme).acs_redirect);
  REQUIRE(f.t.try_set_acs_redirect(usp, false));
  // ... a bridge above the common one does not.
  REQUIRE(f.t.try_set_acs_redirect(rp1, true));
  CHECK(f.path(gpu, nvme).type == p2p_map_type::bus_address);
  CHECK(f.t.try_set_acs_redirect(bdf(0, 9, 0, 0), true).error() == errc::not_found);
}

TEST_CASE("p2p map type decisions are cached per pair and recomputed after policy changes",
          "[p2p_topology]") {
  fixture f;
  const auto before = f.t.decisions_computed();
  (void)f.path(gpu, nvme);
  (void)f.path(gpu, nvme);
  (void)f.path(gpu, nvme);
  CHECK(f.t.decisions_computed() == before + 1);
  (void)f.path(nvme, gpu);  // a different (ordered) pair
  CHECK(f.t.decisions_computed() == before + 2);
  REQUIRE(f.t.try_set_host_bridge_policy(f.hb0, host_bridge_p2p::any));
  (void)f.path(gpu, nvme);
  CHECK(f.t.decisions_computed() == before + 3);
  // Many policy flips (past the 12-bit generation wrap) never resurrect a stale decision.
  for (int i = 0; i < 5000; ++i) {
    REQUIRE(f.t.try_set_host_bridge_policy(
        f.hb0, (i & 1) != 0 ? host_bridge_p2p::deny : host_bridge_p2p::same_host_bridge));
    const auto want =
        (i & 1) != 0 ? p2p_map_type::not_supported : p2p_map_type::through_host_bridge;
    REQUIRE(f.path(gpu, nvme2).type == want);
  }
}

TEST_CASE("p2p pci_topology rejects bad devices and unknown pairs without changing",
          "[p2p_topology]") {
  fixture f;
  const auto n = f.t.size();
  CHECK(f.t.try_add_host_bridge(0, 0).error() == errc::overlaps);
  CHECK(f.t.try_add_device(9, dev(bdf(0, 0, 9, 0))).error() == errc::not_found);
  CHECK(f.t.try_add_device(f.hb0, dev(bdf(1, 0, 9, 0))).error() == errc::invalid_argument);
  CHECK(f.t.try_add_device(f.hb0, dev(gpu)).error() == errc::overlaps);
  CHECK(f.t.try_add_device(f.hb0, dev(bdf(0, 0, 32, 0))).error() == errc::invalid_argument);
  CHECK(f.t.try_add_device_below(bdf(0, 9, 9, 0), dev(bdf(0, 10, 0, 0))).error() ==
        errc::not_found);
  CHECK(f.t.try_add_device_below(gpu, dev(bdf(0, 10, 0, 0))).error() == errc::invalid_argument);
  CHECK(f.t.try_add_device_below(dsp0, dev(bdf(1, 10, 0, 0))).error() == errc::invalid_argument);
  CHECK(f.t.size() == n);
  CHECK(f.t.path(gpu, bdf(0, 0x77, 0, 0)).error() == errc::not_found);
  CHECK(f.t.map_type(bdf(0, 0x77, 0, 0), gpu).error() == errc::not_found);
  CHECK(f.t.map_type(gpu, nvme).value() == p2p_map_type::bus_address);
  // The tree is as built.
  const auto g = f.t.find(gpu);
  REQUIRE(g != pci_topology<>::npos);
  CHECK(f.t.device(f.t.upstream(g)).bdf == dsp0);
  CHECK(f.t.upstream(f.t.find(rp1)) == pci_topology<>::npos);
  CHECK(f.t.host_bridge_of(f.t.find(gpu2)) == f.hb1);
  CHECK(f.t.find_host_bridge(1, 0) == f.hb1);
  CHECK(f.t.find_host_bridge(2, 0) == pci_topology<>::npos);
}

TEST_CASE("p2p pci_topology: allocation failure while adding leaves it unchanged",
          "[p2p_topology][alloc]") {
  phyr::fault_state fs;
  {
    pci_topology<phyr::fault_injecting_allocator> t{phyr::fault_injecting_allocator{&fs}};
    const auto hb = phyr::must(t.try_add_host_bridge(0, 0));
    (void)phyr::must(t.try_add_device(hb, dev(bdf(0, 0, 1, 0), pci_device_kind::root_port)));
    // Grow past several capacity doublings, failing each allocation once.
    std::uint8_t next_bus = 1;
    for (int i = 0; i < 40; ++i) {
      const pci_bdf b = bdf(0, next_bus, 0, 0);
      for (std::uint64_t k = 1;; ++k) {
        fs.fail_at = fs.calls + k;
        const auto before = t.size();
        auto r = t.try_add_device_below(bdf(0, 0, 1, 0), dev(b));
        if (r) break;
        CHECK(r.error() == errc::out_of_memory);
        CHECK(t.size() == before);
        CHECK_FALSE(t.contains(b));
      }
      ++next_bus;
    }
    fs.fail_at = 0;
    CHECK(t.size() == 41);
    CHECK(t.path(bdf(0, 1, 0, 0), bdf(0, 40, 0, 0))->distance == 2);
    pci_topology<phyr::fault_injecting_allocator> moved{std::move(t)};
    CHECK(moved.size() == 41);
    CHECK(t.size() == 0);  // NOLINT(bugprone-use-after-move): moved-from is empty by contract
    CHECK(moved.map_type(bdf(0, 1, 0, 0), bdf(0, 40, 0, 0)).value() == p2p_map_type::bus_address);
  }
  CHECK(fs.live == 0);
}

TEST_CASE("p2p pci_topology: concurrent queries while the allowlist changes",
          "[p2p_topology][concurrent]") {
  fixture f;
  std::atomic<int> bad{0};
  std::atomic<int> queries{0};
  auto th = phyr_test::start_threads(3, [&](std::stop_token stop, int) {
    while (!stop.stop_requested()) {
      if (f.t.path(gpu, nvme)->type != p2p_map_type::bus_address) ++bad;
      const auto ty = f.t.path(gpu, nvme2)->type;
      if (ty != p2p_map_type::not_supported && ty != p2p_map_type::through_host_bridge) ++bad;
      if (f.t.path(nic0, nic1)->distance != 2) ++bad;
      queries.fetch_add(1, std::memory_order_relaxed);
    }
  });
  for (int i = 0; i < 2000 || queries.load() < 2000; ++i) {
    REQUIRE(f.t.try_set_host_bridge_policy(
        f.hb0, (i & 1) != 0 ? host_bridge_p2p::deny : host_bridge_p2p::any));
  }
  th.clear();  // stop and join
  CHECK(bad.load() == 0);
  REQUIRE(f.t.try_set_host_bridge_policy(f.hb0, host_bridge_p2p::deny));
  CHECK(f.path(gpu, nvme2).type == p2p_map_type::not_supported);
}
