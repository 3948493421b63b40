// p2p_mapper: RAM through the Inner mapper, peers by bus address or through the host bridge,
// refusals with nothing mapped. Inner is a recording fake IOMMU, identity_mapper or
// iommu_mapper.
#include <atomic>
#include <catch2/catch.hpp>
#include <cstdint>
#include <optional>
#include <phyr/map/identity_mapper.hpp>
#include <phyr/map/iommu/iommu_mapper.hpp>
#include <phyr/map/p2p/p2p_mapper.hpp>
#include <phyr/os/linux/pci_sysfs.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "support/phys_ranges.hpp"
#include "support/threads.hpp"

using phyr::dma_direction;
using phyr::host_bridge_p2p;
using phyr::p2p_policy;
using phyr::pci_bdf;
using phyr::pci_device_kind;

namespace {
using namespace phyr_test;
struct nvme_bus {};
using dma = phyr::dma_range<nvme_bus>;
using daddr = phyr::dma_addr<nvme_bus>;

constexpr std::uint64_t KiB = 1024, MiB = 1024 * KiB;

/// A stand-in IOMMU that satisfies the mapper spec: each try_map gets one contiguous IOVA
/// block and returns ONE entry covering all its bytes (as an IOMMU does for page-aligned
/// pieces), and records what it was asked to map.
class fake_iommu {
 public:
  using mapper_concept = phyr::dma_mapper_tag;
  using source_space = phyr::cpu_phys;
  using bus_type = nvme_bus;
  using space_type = phyr::dma_space<nvme_bus>;

  class mapping {
   public:
    using value_type = dma;
    mapping() noexcept = default;
    mapping(mapping&& o) noexcept : out_(std::move(o.out_)), owner_(o.owner_) { o.owner_ = 0; }
    mapping& operator=(mapping&& o) noexcept {
      out_ = std::move(o.out_);
      owner_ = o.owner_;
      o.owner_ = 0;
      return *this;
    }
    [[nodiscard]] auto begin() const noexcept { return out_.begin(); }
    [[nodiscard]] auto end() const noexcept { return out_.end(); }
    [[nodiscard]] std::size_t size() const noexcept { return out_.size(); }
    [[nodiscard]] std::uint64_t total_bytes() const noexcept {
      std::uint64_t t = 0;
      for (const auto& d : out_) t += d.len();
      return t;
    }

   private:
    friend class fake_iommu;
    std::vector<dma> out_;
    const fake_iommu* owner_ = nullptr;
  };

  template <phyr::segment_allocator A>
  phyr::result<mapping> try_map(const phyr::range_list<phys_range, A>& l,
                                dma_direction d) noexcept {
    return try_map(l.view(), d);
  }
  phyr::result<mapping> try_map(phyr::range_list_view<phys_range> v, dma_direction) noexcept {
    ++calls;
    if (fail_next) {
      const errc e = *fail_next;
      fail_next.reset();
      return e;
    }
    inputs.emplace_back();
    std::uint64_t total = 0;
    for (const phys_range r : v) {
      inputs.back().push_back(r);
      total += r.len();
    }
    mapping m;
    m.out_.push_back(dma{daddr{next_iova}, total});
    m.owner_ = this;
    next_iova += 0x1000'0000;
    ++live;
    return m;
  }
  phyr::result<void> try_unmap(mapping&& m) noexcept {
    if (m.owner_ != this) return errc::foreign_mapping;
    m.owner_ = nullptr;
    m.out_.clear();
    --live;
    return {};
  }

  std::uint64_t next_iova = 0x1'0000'0000;
  int live = 0;
  int calls = 0;
  std::optional<errc> fail_next;
  std::vector<std::vector<phys_range>> inputs;
};
static_assert(phyr::dma_mapper<fake_iommu>);

constexpr pci_bdf bdf(std::uint8_t bus, std::uint8_t dev, std::uint8_t fn = 0) {
  return pci_bdf{0, bus, dev, fn};
}
constexpr pci_bdf gpu = bdf(3, 0), nvme = bdf(4, 0), nic = bdf(5, 0), nvme2 = bdf(6, 0),
                  ghost = bdf(0x77, 0);

phyr::pci_device_info dev(pci_bdf b, pci_device_kind k = pci_device_kind::endpoint) {
  phyr::pci_device_info i;
  i.bdf = b;
  i.kind = k;
  return i;
}

// 00:01.0 root port - 01:00.0 switch - 02:00.0 -> GPU 03:00.0
//                                    - 02:01.0 -> NVMe 04:00.0 (the client)
//                                    - 02:02.0 -> NIC 05:00.0
// 00:03.0 root port - NVMe 06:00.0
// Windows (bus offset -0x30'0000'0000, a translating host bridge): GPU VRAM 256 MiB, the
// client's own CMB 64 MiB, NVMe2's CMB 16 MiB, the NIC 1 MiB; a "ghost" provider the topology
// does not know.
constexpr std::uint64_t gpu_base = 0x38'0000'0000, cmb_base = 0x38'2000'0000,
                        cmb2_base = 0x38'6000'0000, nic_base = 0x38'7000'0000,
                        ghost_base = 0x39'0000'0000;
constexpr std::int64_t bus_off = -0x30'0000'0000;

struct world {
  phyr::pci_topology<> topo;
  phyr::p2p_registry<> reg;
  std::uint32_t hb = 0;
  world() {
    hb = phyr::must(topo.try_add_host_bridge(0, 0));
    (void)phyr::must(topo.try_add_device(hb, dev(bdf(0, 1), pci_device_kind::root_port)));
    (void)phyr::must(topo.try_add_device(hb, dev(bdf(0, 3), pci_device_kind::root_port)));
    (void)phyr::must(
        topo.try_add_device_below(bdf(0, 1), dev(bdf(1, 0), pci_device_kind::upstream_port)));
    for (std::uint8_t d = 0; d < 3; ++d)
      (void)phyr::must(
          topo.try_add_device_below(bdf(1, 0), dev(bdf(2, d), pci_device_kind::downstream_port)));
    (void)phyr::must(topo.try_add_device_below(bdf(2, 0), dev(gpu)));
    (void)phyr::must(topo.try_add_device_below(bdf(2, 1), dev(nvme)));
    (void)phyr::must(topo.try_add_device_below(bdf(2, 2), dev(nic)));
    (void)phyr::must(topo.try_add_device_below(bdf(0, 3), dev(nvme2)));
    for (auto [base, size, who] :
         {std::tuple{gpu_base, 256 * MiB, gpu}, std::tuple{cmb_base, 64 * MiB, nvme},
          std::tuple{cmb2_base, 16 * MiB, nvme2}, std::tuple{ghost_base, 1 * MiB, ghost}}) {
      phyr::must(reg.try_register(
          phyr::must(phyr::p2p_window::create(phys_addr{base}, size, who.provider_id(), bus_off))));
    }
  }
};

template <class M>
std::vector<dma> entries(const M& m) {
  std::vector<dma> v;
  for (const dma d : m) v.push_back(d);
  return v;
}
dma bus(std::uint64_t phys, std::uint64_t len, range_flags f = range_flags::none) {
  return dma{daddr{phys + static_cast<std::uint64_t>(bus_off)}, len, f | range_flags::bus_addr};
}

using fake_p2p = phyr::p2p_mapper<nvme_bus, fake_iommu>;
// Over the identity mapper: RAM keeps its address.
using id_p2p = phyr::p2p_mapper<nvme_bus, phyr::identity_mapper<nvme_bus>>;
// The world with the client's p2p mapper `m` over an identity mapper `id`.
struct identity_world : world {
  phyr::identity_mapper<nvme_bus> id;
  id_p2p m = phyr::must(id_p2p::create(id, reg, topo, nvme));
};
// The same allocating through fault_injecting_allocator, for the no-leak and strong-guarantee
// cases.
using faulty_p2p = phyr::p2p_mapper<nvme_bus, fake_iommu, phyr::p2p_registry<>,
                                    phyr::pci_topology<>, phyr::fault_injecting_allocator>;
faulty_p2p make_faulty_p2p(fake_iommu& inner, world& w, phyr::fault_state& fs) {
  return phyr::must(faulty_p2p::create(inner, w.reg, w.topo, nvme, p2p_policy::mixed,
                                       phyr::fault_injecting_allocator{&fs}));
}

// Maps `l`, failing its 1st, 2nd, ... allocation until the map succeeds (checked by `ok`, then
// unmapped); every failure must be out_of_memory with nothing mapped and nothing allocated.
// Returns the number of failed attempts; more than `max_attempts` is a test failure.
template <class Check>
std::uint64_t map_failing_each_allocation(faulty_p2p& m, const fake_iommu& inner,
                                          phyr::fault_state& fs,
                                          const phyr::range_list<phys_range>& l,
                                          std::uint64_t max_attempts, Check ok) {
  std::uint64_t failures = 0;
  for (std::uint64_t k = 1;; ++k) {
    fs.fail_at = fs.calls + k;
    auto mp = m.try_map(l, dma_direction::to_device);
    if (mp) {
      ok(*mp);
      REQUIRE(m.try_unmap(std::move(*mp)));
      return failures;
    }
    ++failures;
    CHECK(mp.error() == errc::out_of_memory);
    CHECK(inner.live == 0);
    CHECK(fs.live == 0);
    REQUIRE(k < max_attempts);
  }
}

template <class M>
concept maps_a_temporary = requires(M& m) {
  m.try_map(phyr::range_list<phys_range>{}, dma_direction::to_device);
};

}  // namespace

TEST_CASE("p2p_mapper is a dma_mapper over any Inner mapper", "[p2p_mapper]") {
  STATIC_REQUIRE(phyr::dma_mapper<fake_p2p>);
  STATIC_REQUIRE(phyr::dma_mapper<phyr::p2p_mapper<nvme_bus, phyr::identity_mapper<nvme_bus>>>);
  STATIC_REQUIRE(phyr::dma_mapper<phyr::p2p_mapper<nvme_bus, phyr::iommu_mapper<nvme_bus>>>);
  STATIC_REQUIRE_FALSE(maps_a_temporary<fake_p2p>);
}

TEST_CASE("p2p_mapper::create needs a client the topology knows", "[p2p_mapper]") {
  world w;
  fake_iommu inner;
  CHECK(fake_p2p::create(inner, w.reg, w.topo, bdf(0x42, 0)).error() == errc::not_found);
  auto m = fake_p2p::create(inner, w.reg, w.topo, nvme);
  REQUIRE(m);
  CHECK(m->client() == nvme);
  CHECK(m->policy() == p2p_policy::mixed);
}

TEST_CASE("p2p_mapper maps a mixed list entry by entry, in input order, with one Inner call",
          "[p2p_mapper]") {
  world w;
  fake_iommu inner;
  auto m = phyr::must(fake_p2p::create(inner, w.reg, w.topo, nvme));
  const auto l = list_of({pr(0x10'0000, 8 * KiB, range_flags::pinned),  // RAM
                          pr(gpu_base + 0x1000, 64 * KiB),              // GPU VRAM (same switch)
                          pr(0x20'0000, 4 * KiB, range_flags::pinned),  // RAM
                          pr(cmb_base, 16 * KiB),                       // the client's own CMB
                          pr(0x30'0000, 4 * KiB, range_flags::pinned)});
  auto mp = m.try_map(l, dma_direction::to_device);
  REQUIRE(mp);
  const std::uint64_t iova = 0x1'0000'0000;
  const std::vector<dma> want = {dma{daddr{iova}, 8 * KiB}, bus(gpu_base + 0x1000, 64 * KiB),
                                 dma{daddr{iova + 8 * KiB}, 4 * KiB}, bus(cmb_base, 16 * KiB),
                                 dma{daddr{iova + 12 * KiB}, 4 * KiB}};
  CHECK(entries(*mp) == want);
  CHECK(mp->total_bytes() == l.total_bytes());
  // Inner saw the RAM pieces, in order, once.
  REQUIRE(inner.calls == 1);
  CHECK(inner.inputs[0] == std::vector<phys_range>{pr(0x10'0000, 8 * KiB, range_flags::pinned),
                                                   pr(0x20'0000, 4 * KiB, range_flags::pinned),
                                                   pr(0x30'0000, 4 * KiB, range_flags::pinned)});
  REQUIRE(mp->inner_part() != nullptr);
  CHECK(inner.live == 1);
  REQUIRE(m.try_unmap(std::move(*mp)));
  CHECK(inner.live == 0);
  CHECK_FALSE(mp->mapped());
  CHECK(m.try_unmap(std::move(*mp)).error() == errc::foreign_mapping);
}

TEST_CASE("p2p_mapper: bus-address entries keep input flags, gain bus_addr, and coalesce",
          "[p2p_mapper]") {
  world w;
  fake_iommu inner;
  auto m = phyr::must(fake_p2p::create(inner, w.reg, w.topo, nvme));
  // Two input entries that differ in flags, then two that the output list merges.
  const auto l = list_of({pr(gpu_base, 4 * KiB, range_flags::driver0),
                          pr(gpu_base + 4 * KiB, 4 * KiB), pr(gpu_base + 64 * KiB, 4 * KiB)});
  auto mp = phyr::must(m.try_map(l, dma_direction::from_device));
  CHECK(entries(mp) == std::vector<dma>{bus(gpu_base, 4 * KiB, range_flags::driver0),
                                        bus(gpu_base + 4 * KiB, 4 * KiB),
                                        bus(gpu_base + 64 * KiB, 4 * KiB)});
  CHECK(mp.inner_part() == nullptr);  // no RAM: Inner was never called
  CHECK(inner.calls == 0);
  REQUIRE(m.try_unmap(std::move(mp)));
}

TEST_CASE("p2p_mapper sends host-bridge peers and all-RAM lists to Inner as a whole",
          "[p2p_mapper]") {
  world w;
  REQUIRE(w.topo.try_set_host_bridge_policy(w.hb, host_bridge_p2p::same_host_bridge));
  fake_iommu inner;
  auto m = phyr::must(fake_p2p::create(inner, w.reg, w.topo, nvme));
  const auto l = list_of({pr(cmb2_base, 8 * KiB), pr(0x40'0000, 4 * KiB)});
  auto mp = phyr::must(m.try_map(l, dma_direction::to_device));
  CHECK(entries(mp) == std::vector<dma>{dma{daddr{0x1'0000'0000}, 12 * KiB}});
  CHECK(inner.inputs.at(0) ==
        std::vector<phys_range>{pr(cmb2_base, 8 * KiB), pr(0x40'0000, 4 * KiB)});
  REQUIRE(m.try_unmap(std::move(mp)));

  // Mixed host-bridge peer + bus-address peer + RAM.
  const auto l2 = list_of({pr(cmb2_base, 4 * KiB), pr(gpu_base, 4 * KiB), pr(0x40'0000, 4 * KiB)});
  auto mp2 = phyr::must(m.try_map(l2, dma_direction::to_device));
  CHECK(entries(mp2) == std::vector<dma>{dma{daddr{0x1'1000'0000}, 4 * KiB}, bus(gpu_base, 4 * KiB),
                                         dma{daddr{0x1'1000'1000}, 4 * KiB}});
  REQUIRE(m.try_unmap(std::move(mp2)));
  CHECK(inner.live == 0);
}

TEST_CASE(
    "p2p_mapper refuses unsupported paths, straddling and unknown providers with nothing "
    "mapped",
    "[p2p_mapper]") {
  world w;
  fake_iommu inner;
  phyr::fault_state fs;
  auto m = make_faulty_p2p(inner, w, fs);
  struct bad {
    phys_range r;
    errc e;
  };
  for (const bad& c : {bad{pr(cmb2_base, 4 * KiB), errc::p2p_not_supported},  // other root port
                       bad{pr(gpu_base + 256 * MiB - 4 * KiB, 8 * KiB), errc::straddles_boundary},
                       bad{pr(gpu_base - 4 * KiB, 8 * KiB), errc::straddles_boundary},
                       bad{pr(ghost_base, 4 * KiB), errc::not_found}}) {
    // The bad range last, after RAM and a good peer: still nothing mapped.
    const auto l = list_of({pr(0x10'0000, 4 * KiB), pr(gpu_base, 4 * KiB), c.r});
    auto mp = m.try_map(l, dma_direction::to_device);
    REQUIRE_FALSE(mp);
    CHECK(mp.error() == c.e);
    CHECK(inner.calls == 0);
    CHECK(fs.live == 0);
  }
  const phyr::range_list<phys_range> empty;
  CHECK(m.try_map(empty, dma_direction::to_device).error() == errc::invalid_argument);
  const auto one = list_of({pr(0x10'0000, 4 * KiB)});
  CHECK(m.try_map(one, static_cast<dma_direction>(9)).error() == errc::invalid_argument);
}

TEST_CASE("p2p_mapper single_source: all RAM or all one provider, nothing else", "[p2p_mapper]") {
  world w;
  fake_iommu inner;
  auto m = phyr::must(fake_p2p::create(inner, w.reg, w.topo, nvme, p2p_policy::single_source));
  const auto gpu_only = list_of({pr(gpu_base, 4 * KiB), pr(gpu_base + MiB, 4 * KiB)});
  auto a = phyr::must(m.try_map(gpu_only, dma_direction::to_device));
  CHECK(entries(a) == std::vector<dma>{bus(gpu_base, 4 * KiB), bus(gpu_base + MiB, 4 * KiB)});
  const auto ram_only = list_of({pr(0x10'0000, 4 * KiB), pr(0x30'0000, 4 * KiB)});
  auto b = phyr::must(m.try_map(ram_only, dma_direction::to_device));
  CHECK(b.size() == 1);
  const auto ram_then_peer = list_of({pr(0x10'0000, 4 * KiB), pr(gpu_base, 4 * KiB)});
  const auto peer_then_ram = list_of({pr(gpu_base, 4 * KiB), pr(0x10'0000, 4 * KiB)});
  const auto two_peers = list_of({pr(gpu_base, 4 * KiB), pr(cmb_base, 4 * KiB)});
  CHECK(m.try_map(ram_then_peer, dma_direction::to_device).error() == errc::invalid_argument);
  CHECK(m.try_map(peer_then_ram, dma_direction::to_device).error() == errc::invalid_argument);
  CHECK(m.try_map(two_peers, dma_direction::to_device).error() == errc::invalid_argument);
  CHECK(inner.calls == 1);
  REQUIRE(m.try_unmap(std::move(a)));
  REQUIRE(m.try_unmap(std::move(b)));
}

TEST_CASE("p2p_mapper checks bus addresses against the client's DMA mask", "[p2p_mapper]") {
  world w;
  fake_iommu inner;
  auto m = phyr::must(fake_p2p::create(inner, w.reg, w.topo, nvme));
  REQUIRE(m.try_set_dma_mask(32));
  const auto l = list_of({pr(gpu_base, 4 * KiB)});  // bus address 0x8'0000'0000
  CHECK(m.try_map(l, dma_direction::to_device).error() == errc::not_addressable);
  REQUIRE(m.try_set_dma_mask(36));
  CHECK(m.try_map(l, dma_direction::to_device).has_value() == true);
  CHECK(m.try_set_dma_mask(65).error() == errc::invalid_argument);
}

TEST_CASE("p2p_mapper::unmap refuses mappings it did not make", "[p2p_mapper]") {
  world w;
  fake_iommu inner;
  auto m1 = phyr::must(fake_p2p::create(inner, w.reg, w.topo, nvme));
  auto m2 = phyr::must(fake_p2p::create(inner, w.reg, w.topo, nvme));
  const auto l = list_of({pr(0x10'0000, 4 * KiB), pr(gpu_base, 4 * KiB)});
  auto mp = phyr::must(m1.try_map(l, dma_direction::to_device));
  CHECK(m2.try_unmap(std::move(mp)).error() == errc::foreign_mapping);
  CHECK(mp.mapped());
  CHECK(mp.size() == 2);
  fake_p2p::mapping none;
  CHECK(m1.try_unmap(std::move(none)).error() == errc::foreign_mapping);
  fake_p2p::mapping moved{std::move(mp)};
  CHECK_FALSE(mp.mapped());
  CHECK(m1.try_unmap(std::move(mp)).error() == errc::foreign_mapping);
  REQUIRE(m1.try_unmap(std::move(moved)));
  CHECK(inner.live == 0);
}

TEST_CASE("p2p_mapper passes Inner's failure on and leaves nothing behind", "[p2p_mapper]") {
  world w;
  fake_iommu inner;
  phyr::fault_state fs;
  auto m = make_faulty_p2p(inner, w, fs);
  const auto mixed = list_of({pr(0x10'0000, 4 * KiB), pr(gpu_base, 4 * KiB)});
  const auto ram = list_of({pr(0x10'0000, 4 * KiB)});
  for (const auto* l : {&mixed, &ram}) {
    inner.fail_next = errc::exhausted;
    CHECK(m.try_map(*l, dma_direction::to_device).error() == errc::exhausted);
    CHECK(inner.live == 0);
    CHECK(fs.live == 0);
  }
}

TEST_CASE("p2p_mapper: allocation failure at any point maps nothing and leaks nothing",
          "[p2p_mapper][alloc]") {
  world w;
  fake_iommu inner;
  phyr::fault_state fs;
  auto m = make_faulty_p2p(inner, w, fs);
  // Long enough that the output and scratch lists need heap segments.
  phyr::range_list<phys_range> l;
  for (std::uint64_t i = 0; i < 600; ++i) {
    REQUIRE(l.try_append(pr(0x100'0000 + i * 8 * KiB, 4 * KiB)));
    REQUIRE(l.try_append(pr(gpu_base + i * 8 * KiB, 4 * KiB)));
  }
  const std::uint64_t failures = map_failing_each_allocation(
      m, inner, fs, l, 100, [](const faulty_p2p::mapping& mp) { CHECK(mp.size() == 1200); });
  CHECK(failures >= 4);  // scratch block, scratch segments, output segments
  CHECK(fs.live == 0);
  CHECK(inner.live == 0);
}

TEST_CASE("p2p_mapper: a list touching more providers than the inline memo holds",
          "[p2p_mapper][alloc]") {
  world w;
  // 40 more endpoints below the GPU's downstream port, one 1 MiB window each.
  constexpr std::uint64_t base = 0x3a'0000'0000;
  phyr::range_list<phys_range> l;
  for (std::uint8_t i = 0; i < 40; ++i) {
    const pci_bdf b = bdf(static_cast<std::uint8_t>(0x40 + i), 0);
    (void)phyr::must(w.topo.try_add_device_below(bdf(2, 0), dev(b)));
    REQUIRE(w.reg.try_register(
        phyr::must(phyr::p2p_window::create(phys_addr{base + i * MiB}, MiB, b.provider_id(), 0))));
    REQUIRE(l.try_append(pr(base + i * MiB + 0x1000, 4 * KiB)));
    REQUIRE(l.try_append(pr(0x100'0000 + i * 8 * KiB, 4 * KiB)));
  }
  fake_iommu inner;
  phyr::fault_state fs;
  auto m = make_faulty_p2p(inner, w, fs);
  const std::uint64_t failures =
      map_failing_each_allocation(m, inner, fs, l, 50, [&](const faulty_p2p::mapping& mp) {
        const auto e = entries(mp);
        REQUIRE(e.size() == 80);
        for (std::size_t i = 0; i < 40; ++i) {
          CHECK(e[2 * i] == dma{daddr{base + i * MiB + 0x1000}, 4 * KiB, range_flags::bus_addr});
          // RAM: consecutive bytes of the one IOVA block (failed attempts used earlier blocks).
          CHECK(e[2 * i + 1] == dma{e[1].addr() + i * 4 * KiB, 4 * KiB});
        }
      });
  CHECK(failures >= 2);  // at least the memo's spill block and the output list
  CHECK(fs.live == 0);
}

TEST_CASE("p2p_mapper keeps working when its topology is replaced and renumbered", "[p2p_mapper]") {
  world w;
  fake_iommu inner;
  auto m = phyr::must(fake_p2p::create(inner, w.reg, w.topo, nvme));
  const auto l = list_of({pr(gpu_base, 4 * KiB)});
  {
    auto mp = phyr::must(m.try_map(l, dma_direction::to_device));
    REQUIRE(m.try_unmap(std::move(mp)));
  }
  // The same tree built in another order: every index differs.
  phyr::pci_topology<> t;
  const auto hb = phyr::must(t.try_add_host_bridge(0, 0));
  (void)phyr::must(t.try_add_device(hb, dev(bdf(0, 3), pci_device_kind::root_port)));
  (void)phyr::must(t.try_add_device_below(bdf(0, 3), dev(nvme2)));
  (void)phyr::must(t.try_add_device(hb, dev(bdf(0, 1), pci_device_kind::root_port)));
  (void)phyr::must(
      t.try_add_device_below(bdf(0, 1), dev(bdf(1, 0), pci_device_kind::upstream_port)));
  for (std::uint8_t d = 3; d-- > 0;)
    (void)phyr::must(
        t.try_add_device_below(bdf(1, 0), dev(bdf(2, d), pci_device_kind::downstream_port)));
  (void)phyr::must(t.try_add_device_below(bdf(2, 1), dev(nvme)));
  (void)phyr::must(t.try_add_device_below(bdf(2, 0), dev(gpu)));
  w.topo = std::move(t);
  auto mp = phyr::must(m.try_map(l, dma_direction::to_device));
  CHECK(entries(mp) == std::vector<dma>{bus(gpu_base, 4 * KiB)});
  REQUIRE(m.try_unmap(std::move(mp)));
  const auto l2 = list_of({pr(cmb2_base, 4 * KiB)});
  CHECK(m.try_map(l2, dma_direction::to_device).error() == errc::p2p_not_supported);
  // A topology without the client: peers are refused as unknown, RAM still maps.
  w.topo = phyr::pci_topology<>{};
  CHECK(m.try_map(l, dma_direction::to_device).error() == errc::not_found);
  const auto ram = list_of({pr(0x10'0000, 4 * KiB)});
  auto mr = phyr::must(m.try_map(ram, dma_direction::to_device));
  REQUIRE(m.try_unmap(std::move(mr)));
}

TEST_CASE("p2p_mapper over identity_mapper: RAM keeps its address, peers get bus addresses",
          "[p2p_mapper]") {
  identity_world w;
  const auto l = list_of({pr(0x10'0000, 8 * KiB), pr(gpu_base + 0x2000, 4 * KiB),
                          pr(0x20'0000, 4 * KiB), pr(0x20'1000, 4 * KiB, range_flags::pinned)});
  {
    auto mp = phyr::must(w.m.try_map(l, dma_direction::bidirectional));
    CHECK(entries(mp) == std::vector<dma>{dma{daddr{0x10'0000}, 8 * KiB},
                                          bus(gpu_base + 0x2000, 4 * KiB),
                                          dma{daddr{0x20'0000}, 4 * KiB},
                                          dma{daddr{0x20'1000}, 4 * KiB, range_flags::pinned}});
    REQUIRE(mp.inner_part() != nullptr);
    CHECK(mp.inner_part()->size() == 3);  // identity aliases the mapping's own RAM list
    REQUIRE(w.m.try_unmap(std::move(mp)));
  }
  {
    // All RAM: identity aliases the caller's list; unmapping ends the borrow.
    const auto ram = list_of({pr(0x10'0000, 8 * KiB), pr(0x30'0000, 4 * KiB)});
    auto mp = phyr::must(w.m.try_map(ram, dma_direction::to_device));
    CHECK(entries(mp) ==
          std::vector<dma>{dma{daddr{0x10'0000}, 8 * KiB}, dma{daddr{0x30'0000}, 4 * KiB}});
    REQUIRE(w.m.try_unmap(std::move(mp)));
  }
  REQUIRE(w.id.try_set_dma_mask(20));  // identity refuses RAM above 1 MiB ...
  CHECK(w.m.try_map(l, dma_direction::to_device).error() == errc::not_addressable);
  const auto peer = list_of({pr(gpu_base, 4 * KiB)});  // ... but peers are not its business
  auto mp = phyr::must(w.m.try_map(peer, dma_direction::to_device));
  REQUIRE(w.m.try_unmap(std::move(mp)));
}

TEST_CASE("p2p_mapper over iommu_mapper: all RAM pieces share one IOVA block", "[p2p_mapper]") {
  world w;
  phyr::iommu_domain dom;
  phyr::iommu_mapper<nvme_bus> io{dom};
  using mapper = phyr::p2p_mapper<nvme_bus, phyr::iommu_mapper<nvme_bus>>;
  auto m = phyr::must(mapper::create(io, w.reg, w.topo, nvme));
  const auto l = list_of({pr(0x10'0000, 8 * KiB), pr(gpu_base, 64 * KiB), pr(0x50'0000, 4 * KiB),
                          pr(cmb_base + 0x1000, 4 * KiB), pr(0x70'3000, 4 * KiB)});
  auto mp = phyr::must(m.try_map(l, dma_direction::to_device));
  const auto e = entries(mp);
  REQUIRE(e.size() == 5);
  REQUIRE(mp.inner_part() != nullptr);
  CHECK(mp.inner_part()->iova_ranges() == 1);
  CHECK(e[1] == bus(gpu_base, 64 * KiB));
  CHECK(e[3] == bus(cmb_base + 0x1000, 4 * KiB));
  // RAM entries are consecutive in IOVA space and translate back to their pages.
  CHECK(e[2].addr() == e[0].addr() + 8 * KiB);
  CHECK(e[4].addr() == e[2].addr() + 4 * KiB);
  CHECK_FALSE(has_flags(e[0].flags(), range_flags::bus_addr));
  CHECK(io.translate(e[0].addr()).value() == phys_addr{0x10'0000});
  CHECK(io.translate(e[0].addr() + 4 * KiB).value() == phys_addr{0x10'1000});
  CHECK(io.translate(e[2].addr()).value() == phys_addr{0x50'0000});
  CHECK(io.translate(e[4].addr()).value() == phys_addr{0x70'3000});
  REQUIRE(m.try_unmap(std::move(mp)));
  CHECK(dom.stats().unmaps == 1);
  CHECK(io.translate(e[0].addr()).error() == errc::not_mapped);
}

TEST_CASE("p2p_mapper on the sysfs workstation fixture", "[p2p_mapper][pci_sysfs]") {
  const std::string root = std::string(PHYR_TEST_DATA_DIR) + "/sysfs/workstation";
  phyr::pci_topology<> topo;
  phyr::p2p_registry<> reg;
  phyr::pci_sysfs_error err;
  REQUIRE(phyr::load_pci_sysfs(root.c_str(), topo, reg, {}, &err));
  phyr::identity_mapper<nvme_bus> id;
  auto m = phyr::must(id_p2p::create(id, reg, topo, pci_bdf{0, 4, 0, 0}));
  // GPU VRAM (same switch) + RAM: bus address (offset 0 on x86) and identity.
  const auto ok = list_of({pr(0x38'0000'0000, 2 * MiB), pr(0x10'0000, 4 * KiB)});
  auto mp = phyr::must(m.try_map(ok, dma_direction::from_device));
  CHECK(entries(mp) == std::vector<dma>{dma{daddr{0x38'0000'0000}, 2 * MiB, range_flags::bus_addr},
                                        dma{daddr{0x10'0000}, 4 * KiB}});
  REQUIRE(m.try_unmap(std::move(mp)));
  // The NIC on another root port: refused until the host bridge is allowlisted.
  const auto nic_list = list_of({pr(0x38'4000'0000, 4 * KiB)});
  CHECK(m.try_map(nic_list, dma_direction::to_device).error() == errc::p2p_not_supported);
  REQUIRE(topo.try_set_host_bridge_policy(0, host_bridge_p2p::same_host_bridge));
  auto mp2 = phyr::must(m.try_map(nic_list, dma_direction::to_device));
  CHECK(entries(mp2) == std::vector<dma>{dma{daddr{0x38'4000'0000}, 4 * KiB}});
  REQUIRE(m.try_unmap(std::move(mp2)));
}

TEST_CASE("p2p_mapper: concurrent maps while a provider window comes and goes",
          "[p2p_mapper][concurrent]") {
  identity_world w;
  const auto nic_win =
      phyr::must(phyr::p2p_window::create(phys_addr{nic_base}, MiB, nic.provider_id(), bus_off));
  std::atomic<int> bad{0};
  std::atomic<int> maps{0};
  auto th = phyr_test::start_threads(3, [&](std::stop_token stop, int) {
    // Each thread its own list: identity's debug borrow count is per list.
    const auto l =
        list_of({pr(0x10'0000, 4 * KiB), pr(nic_base + 0x1000, 4 * KiB), pr(gpu_base, 4 * KiB)});
    while (!stop.stop_requested()) {
      auto mp = w.m.try_map(l, dma_direction::to_device);
      if (!mp) {
        ++bad;
        continue;
      }
      const auto e = entries(*mp);
      // The NIC range is RAM (identity) or the NIC's window (bus address), never else.
      const bool as_ram = e.size() == 3 && e[1] == dma{daddr{nic_base + 0x1000}, 4 * KiB};
      const bool as_peer = e.size() == 3 && e[1] == bus(nic_base + 0x1000, 4 * KiB);
      if (!(as_ram || as_peer) || e[0] != dma{daddr{0x10'0000}, 4 * KiB} ||
          e[2] != bus(gpu_base, 4 * KiB))
        ++bad;
      if (!w.m.try_unmap(std::move(*mp))) ++bad;
      ++maps;
    }
  });
  // Churn until the readers have done real work (thread start-up can outlast 300 rounds).
  for (int i = 0; i < 300 || maps.load() < 300; ++i) {
    REQUIRE(w.reg.try_register(nic_win));
    REQUIRE(w.reg.try_unregister(nic.provider_id()));
    if ((i & 15) == 0) std::this_thread::yield();
  }
  th.clear();  // stop and join
  CHECK(bad.load() == 0);
  CHECK(maps.load() > 0);
}

TEST_CASE(
    "p2p_mapper over iommu_mapper: an allocation failure after classification leaves the "
    "domain as it was (no map, no unmap, no cached IOVA block, no live allocation)",
    "[p2p_mapper][alloc]") {
  // The domain counts its own allocations (never failing); the p2p mapper's fail one by one.
  phyr::fault_state dom_fs;
  phyr::basic_iommu_domain<phyr::fault_injecting_allocator> dom{
      phyr::fault_injecting_allocator{&dom_fs}};
  phyr::iommu_mapper<nvme_bus, phyr::fault_injecting_allocator> io{dom};
  world w;
  phyr::fault_state fs;
  using mapper =
      phyr::p2p_mapper<nvme_bus, phyr::iommu_mapper<nvme_bus, phyr::fault_injecting_allocator>,
                       phyr::p2p_registry<>, phyr::pci_topology<>, phyr::fault_injecting_allocator>;
  auto m = phyr::must(mapper::create(io, w.reg, w.topo, nvme, p2p_policy::mixed,
                                     phyr::fault_injecting_allocator{&fs}));
  // Mixed lists long enough that the output needs heap segments, and an all-RAM one.
  phyr::range_list<phys_range> mixed, ram;
  for (std::uint64_t i = 0; i < 600; ++i) {
    REQUIRE(mixed.try_append(pr(0x100'0000 + i * 8 * KiB, 4 * KiB)));
    REQUIRE(mixed.try_append(pr(gpu_base + i * 8 * KiB, 4 * KiB)));
    REQUIRE(ram.try_append(pr(0x400'0000 + i * 8 * KiB, 4 * KiB)));
  }
  {
    auto direct = io.try_map(ram, dma_direction::to_device);
    INFO("direct: " << (direct ? "ok" : phyr::to_string(direct.error())));
    REQUIRE(direct);
    REQUIRE(io.try_unmap(std::move(*direct)));
  }
  for (const auto* l : {&mixed, &ram}) {
    // Warm the domain (page tables, per-thread cache) so a later map allocates nothing there.
    {
      auto warm = m.try_map(*l, dma_direction::to_device);
      INFO("warm-up: " << (warm ? "ok" : phyr::to_string(warm.error())));
      REQUIRE(warm);
      REQUIRE(m.try_unmap(std::move(*warm)));
    }
    std::uint64_t failures = 0;
    for (std::uint64_t k = 1;; ++k) {
      const auto before = dom.stats();
      const auto dom_live = dom_fs.live;
      fs.fail_at = fs.calls + k;
      auto mp = m.try_map(*l, dma_direction::to_device);
      if (mp) {
        fs.fail_at = 0;
        REQUIRE(m.try_unmap(std::move(*mp)));
        break;
      }
      ++failures;
      INFO("list " << (l == &mixed ? "mixed" : "all RAM") << ", allocation " << k << " fails");
      CHECK(mp.error() == errc::out_of_memory);
      CHECK(fs.live == 0);
      CHECK(dom_fs.live == dom_live);
      CHECK(dom.stats().maps == before.maps);
      CHECK(dom.stats().unmaps == before.unmaps);
      REQUIRE(k < 100);
    }
    CHECK(failures >= 2);
  }
  CHECK(fs.live == 0);
}
