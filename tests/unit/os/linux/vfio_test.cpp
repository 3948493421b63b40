// os/linux/vfio against a recorded fake of the type1v2 kernel interface (vfio_fake.hpp): the
// bring-up sequence, the capability-chain parser, BAR/config access, the mapper's layout,
// permissions and rollback, every call failing in turn, and the RAII lifetimes. The fake is a
// model of the kernel's checks, not the kernel: the VM test drives a real IOMMU.
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <phyr/core/allocator.hpp>
#include <phyr/map/iommu/iova_reservation.hpp>
#include <phyr/os/linux/vfio.hpp>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "vfio_fake.hpp"
#include "vfio_rig.hpp"

using namespace phyr;
using vfio_fake::kernel;
using u64 = std::uint64_t;
using u32 = std::uint32_t;
using u16 = std::uint16_t;

namespace {

struct nvme0 {};
struct nic0 {};

constexpr u64 page = 4096;
constexpr u64 va0 = 0x7f12'3450'0000;  // synthetic process addresses (the fake pins nothing)

range_list<virt_range> vlist(std::initializer_list<std::pair<u64, u64>> rs,
                             range_flags f = range_flags::none) {
  range_list<virt_range> l;
  for (auto [a, n] : rs) must(l.try_append(virt_range{virt_addr{a}, n, f}));
  return l;
}

std::vector<dma_range<nvme0>> dma_of(const vfio_mapping<nvme0>& m) {
  std::vector<dma_range<nvme0>> v;
  for (const dma_range<nvme0> r : m) v.push_back(r);
  return v;
}

// The usual bring-up, REQUIRE'd step by step.
using vfio_fake::rig;

bool in_msi_window(u64 first, u64 last) {
  return first <= vfio_fake::msi_last && vfio_fake::msi_first <= last;
}

// `r` failed with `code` and with the errno the (fake) kernel gave, 0 when no call failed.
template <class R>
void require_failed(const R& r, errc code, int sys_errno) {
  REQUIRE_FALSE(r);
  CHECK(r.error() == code);
  CHECK(r.error().sys_errno == sys_errno);
}

}  // namespace

// ---- types ------------------------------------------------------------------------------------

TEST_CASE("vfio_mapper maps virtual lists only and returns errors with the errno kept", "[vfio]") {
  STATIC_REQUIRE(virt_dma_mapper<vfio_mapper<nvme0>>);
  STATIC_REQUIRE(virt_dma_mapper<vfio_mapper<nvme0, fault_injecting_allocator>>);
  STATIC_REQUIRE_FALSE(phys_dma_mapper<vfio_mapper<nvme0>>);
  STATIC_REQUIRE(std::same_as<decltype(std::declval<vfio_mapper<nvme0>&>().try_map(
                                  std::declval<const range_list<virt_range>&>(),
                                  dma_direction::to_device)),
                              result<vfio_mapping<nvme0>, sys_error>>);
  STATIC_REQUIRE(dma_mapping<vfio_mapping<nvme0>, dma_space<nvme0>>);
  STATIC_REQUIRE_FALSE(dma_mapping<vfio_mapping<nvme0>, dma_space<nic0>>);
  STATIC_REQUIRE_FALSE(std::is_copy_constructible_v<vfio::container>);
  STATIC_REQUIRE_FALSE(std::is_copy_constructible_v<vfio_mapping<nvme0>>);
  STATIC_REQUIRE_FALSE(std::is_move_constructible_v<vfio_mapper<nvme0>>);
}

// ---- bring-up -----------------------------------------------------------------------------------

TEST_CASE("vfio: container, group and device come up in the kernel's order and close every fd",
          "[vfio]") {
  kernel k;
  {
    auto c = vfio::container::try_open(k.ops());
    REQUIRE(c);
    CHECK_FALSE(c->has_iommu());
    auto g = c->try_attach_group(12);
    REQUIRE(g);
    CHECK(g->number() == 12);
    REQUIRE(c->has_iommu());
    CHECK(k.iommu_set());
    const vfio::iommu_info& info = c->iommu();
    CHECK(info.page_sizes() == (vfio_fake::page_4k | vfio_fake::page_2m | vfio_fake::page_1g));
    CHECK(info.min_page_size() == 4096);
    REQUIRE(info.has_iova_ranges());
    REQUIRE(info.windows().size() == 2);
    CHECK(info.windows()[0] == vfio::iova_window{0, 0xfedfffff});
    CHECK(info.windows()[1] == vfio::iova_window{0xfef00000, (u64{1} << 39) - 1});
    CHECK(info.has_dma_avail());
    CHECK(info.dma_avail() == 65535);
    auto d = g->try_open_device("0000:00:04.0");
    REQUIRE(d);
    CHECK(d->is_pci());
    CHECK(d->num_regions() == 9);
    CHECK(k.open_fds() == 3);
  }
  CHECK(k.open_fds() == 0);
  std::vector<std::string> ops;
  for (const auto& c : k.log) ops.push_back(c.op);
  const std::vector<std::string> want = {
      "open:/dev/vfio/vfio",         "VFIO_GET_API_VERSION",     "VFIO_CHECK_EXTENSION",
      "open:/dev/vfio/12",           "VFIO_GROUP_GET_STATUS",    "VFIO_GROUP_SET_CONTAINER",
      "VFIO_SET_IOMMU",              "VFIO_IOMMU_GET_INFO",      "VFIO_GROUP_GET_DEVICE_FD",
      "VFIO_DEVICE_GET_INFO",        "VFIO_DEVICE_GET_REGION_INFO", "close",
      "close",                       "close"};
  CHECK(ops == want);
}

TEST_CASE("vfio: without /dev/vfio the container reports not_found with ENOENT", "[vfio]") {
  kernel k;
  k.fail_at = 1;
  k.fail_errno = ENOENT;
  auto c = vfio::container::try_open(k.ops());
  require_failed(c, errc::not_found, ENOENT);
  CHECK(std::string{c.error().op} == "open(/dev/vfio/vfio)");
  // The real calls on this host: either VFIO is there or the same error comes back.
  if (::access("/dev/vfio/vfio", F_OK) != 0) {
    auto real = vfio::container::try_open();
    require_failed(real, errc::not_found, ENOENT);
  }
}

TEST_CASE("vfio: a foreign API version or no type1v2 is not_supported and closes the container",
          "[vfio]") {
  kernel k;
  k.api_version = 1;
  auto c = vfio::container::try_open(k.ops());
  require_failed(c, errc::not_supported, 0);
  CHECK(k.open_fds() == 0);
  kernel k2;
  k2.type1v2 = false;
  auto c2 = vfio::container::try_open(k2.ops());
  REQUIRE_FALSE(c2);
  CHECK(c2.error() == errc::not_supported);
  CHECK(k2.open_fds() == 0);
}

TEST_CASE("vfio: a group that is not viable is busy, its fd closed, the container unchanged",
          "[vfio]") {
  kernel k;
  k.groups[7].viable = false;
  k.groups[7].devices["0000:01:00.0"] = {};
  auto c = vfio::container::try_open(k.ops());
  REQUIRE(c);
  auto g = c->try_attach_group(7);
  require_failed(g, errc::busy, 0);
  CHECK(k.open_fds() == 1);
  CHECK_FALSE(c->has_iommu());
  CHECK(k.count("VFIO_GROUP_SET_CONTAINER") == 0);
  // The container still works with a viable group.
  auto g12 = c->try_attach_group(12);
  REQUIRE(g12);
  CHECK(c->has_iommu());
  // No such group; a group already open.
  auto none = c->try_attach_group(99);
  require_failed(none, errc::not_found, ENOENT);
  auto again = c->try_attach_group(12);
  require_failed(again, errc::busy, EBUSY);
}

TEST_CASE("vfio: a second group joins the IOMMU context of the first without resetting it",
          "[vfio]") {
  rig r;
  r.k.groups[13].devices["0000:00:05.0"] = {};
  r.open();
  auto g13 = r.c->try_attach_group(13);
  REQUIRE(g13);
  CHECK(r.c->groups() == 2);
  CHECK(r.k.count("VFIO_SET_IOMMU") == 1);
  CHECK(r.k.count("VFIO_IOMMU_GET_INFO") == 2);  // asked again: the windows may have narrowed
  r.g.reset();  // not the last group: the IOMMU stays
  CHECK(r.c->has_iommu());
  CHECK(r.k.iommu_set());
}

TEST_CASE("vfio: a group attached later that narrows the windows is seen by the container",
          "[vfio]") {
  rig r;
  r.k.groups[13].devices["0000:00:05.0"] = {};
  r.open();
  CHECK(r.c->iommu().windows().size() == 2);
  r.k.iova_ranges = {{0, vfio_fake::msi_first - 1}, {vfio_fake::msi_last + 1, 0xefffffffff}};
  auto g13 = r.c->try_attach_group(13);
  REQUIRE(g13);
  CHECK(r.c->iommu().windows()[1].last == 0xefffffffff);
  // A failing GET_INFO on a later attach detaches that group and keeps what the container knew.
  r.k.groups[14].devices["0000:00:06.0"] = {};
  r.k.iova_ranges = {{0x1000, 0x1fff}};
  r.k.fail_at = r.k.failable_calls + 4;  // open, GET_STATUS, SET_CONTAINER, GET_INFO
  auto g14 = r.c->try_attach_group(14);
  REQUIRE_FALSE(g14);
  CHECK(g14.error().op == std::string{"VFIO_IOMMU_GET_INFO"});
  CHECK(r.c->iommu().windows()[1].last == 0xefffffffff);
  CHECK(r.c->groups() == 2);
  r.k.fail_at = 0;
}

TEST_CASE("vfio: try_iommu_group_of reads the group number from sysfs", "[vfio]") {
  kernel k;
  k.groups[3].devices["0000:03:00.0"] = {};
  auto g = vfio::try_iommu_group_of("0000:00:04.0", k.ops());
  REQUIRE(g);
  CHECK(*g == 12);
  CHECK(*vfio::try_iommu_group_of("0000:03:00.0", k.ops()) == 3);
  auto none = vfio::try_iommu_group_of("0000:09:00.0", k.ops());
  require_failed(none, errc::not_found, ENOENT);
  CHECK(vfio::try_iommu_group_of("", k.ops()).error() == errc::invalid_argument);
  // The real sysfs of this host: a device that does not exist.
  CHECK(vfio::try_iommu_group_of("ffff:ff:1f.7").error() == errc::not_found);
}

// ---- device ---------------------------------------------------------------------------------------

TEST_CASE("vfio device: BAR0 maps whole and unmaps on destruction; bad BARs say why", "[vfio]") {
  rig r;
  r.open();
  auto d = r.g->try_open_device("0000:00:04.0");
  REQUIRE(d);
  {
    auto bar = d->try_map_bar(0);
    REQUIRE(bar);
    CHECK(bar->size() == 0x4000);
    CHECK(r.k.live_mmaps() == 1);
    bar->store32(0x14, 0x460001);
    bar->store64(0x28, 0x1234'5678'9abc'def0);
    CHECK(bar->load32(0x14) == 0x460001);
    CHECK(bar->load64(0x28) == 0x1234'5678'9abc'def0);
    vfio::mapped_bar moved = std::move(*bar);
    CHECK(bar->data() == nullptr);
    CHECK(r.k.live_mmaps() == 1);
  }
  CHECK(r.k.live_mmaps() == 0);
  auto b1 = d->try_map_bar(1);
  REQUIRE_FALSE(b1);
  CHECK(b1.error() == errc::not_found);
  auto b6 = d->try_map_bar(6);
  REQUIRE_FALSE(b6);
  CHECK(b6.error() == errc::out_of_range);
  auto ri = d->try_region_info(VFIO_PCI_CONFIG_REGION_INDEX);
  REQUIRE(ri);
  CHECK(ri->size == 4096);
  CHECK_FALSE(ri->mappable());
  CHECK(d->try_region_info(9).error() == errc::out_of_range);
}

TEST_CASE("vfio device: config space reads and writes; bus mastering is set once, other bits kept",
          "[vfio]") {
  rig r;
  r.open();
  auto d = r.g->try_open_device("0000:00:04.0");
  REQUIRE(d);
  auto vendor = d->try_read_config<std::uint16_t>(0);
  REQUIRE(vendor);
  CHECK(*vendor == 0x8086);
  REQUIRE(d->try_enable_bus_master());
  auto cmd = d->try_read_config<std::uint16_t>(vfio::pci_command_offset);
  REQUIRE(cmd);
  CHECK(*cmd == (vfio::pci_command_memory | vfio::pci_command_master));
  const std::size_t writes = r.k.count("pwrite");
  REQUIRE(d->try_enable_bus_master());  // already on: no write
  CHECK(r.k.count("pwrite") == writes);
  std::byte buf[8];
  CHECK(d->try_read_config(4090, buf, 8).error() == errc::out_of_range);
  CHECK(d->try_read_config(0, buf, 0).error() == errc::out_of_range);
  REQUIRE(d->try_reset());
  auto missing = r.g->try_open_device("0000:00:09.0");
  require_failed(missing, errc::not_found, ENODEV);
  auto twice = r.g->try_open_device("0000:00:04.0");
  REQUIRE_FALSE(twice);
  CHECK(twice.error() == errc::busy);
}

// ---- the capability chain ---------------------------------------------------------------------

namespace {
struct reply {
  std::vector<std::byte> b;
  explicit reply(u32 flags = VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS, u64 pg = 0x40201000,
                 u32 cap_offset = 24)
      : b(24) {
    vfio_iommu_type1_info i{};
    i.argsz = 24;
    i.flags = flags;
    i.iova_pgsizes = pg;
    i.cap_offset = cap_offset;
    std::memcpy(b.data(), &i, sizeof i);
  }
  // add(), for building a reply in one expression.
  reply& with(u16 id, u16 version, u32 next, const std::vector<std::byte>& body) {
    add(id, version, next, body);
    return *this;
  }
  // The reply cut (or padded with zeros) to `n` bytes.
  reply& resized(std::size_t n) {
    b.resize(n);
    return *this;
  }
  // Appends a capability (8-byte aligned like the kernel) and returns its offset.
  std::size_t add(u16 id, u16 version, u32 next, const std::vector<std::byte>& body) {
    const std::size_t at = b.size();
    vfio_info_cap_header h{id, version, next};
    b.resize(at + ((sizeof h + body.size() + 7) & ~std::size_t{7}));
    std::memcpy(b.data() + at, &h, sizeof h);
    if (!body.empty()) std::memcpy(b.data() + at + sizeof h, body.data(), body.size());
    return at;
  }
  static std::vector<std::byte> ranges(std::initializer_list<std::pair<u64, u64>> rs,
                                       u32 nr_override = 0) {
    std::vector<std::byte> v(8 + rs.size() * 16);
    const u32 nr = nr_override != 0 ? nr_override : static_cast<u32>(rs.size());
    std::memcpy(v.data(), &nr, 4);
    std::size_t i = 0;
    for (auto [s, e] : rs) {
      std::memcpy(v.data() + 8 + i * 16, &s, 8);
      std::memcpy(v.data() + 16 + i * 16, &e, 8);
      ++i;
    }
    return v;
  }
  static std::vector<std::byte> avail(u32 n) {
    std::vector<std::byte> v(4);
    std::memcpy(v.data(), &n, 4);
    return v;
  }
  [[nodiscard]] result<vfio::iommu_info> parse() const {
    return vfio::parse_iommu_info(std::span<const std::byte>{b.data(), b.size()});
  }
  // What every malformed reply must give.
  [[nodiscard]] bool malformed() const { return parse().error() == errc::parse_error; }
};
}  // namespace

TEST_CASE("parse_iommu_info reads page sizes, IOVA windows and DMA_AVAIL; skips unknown caps",
          "[vfio][parser]") {
  reply r;
  r.add(VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, 1, 24 + 48,
        reply::ranges({{0, 0xfedfffff}, {0xfef00000, 0x7fffffffff}}));
  r.add(VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION, 1, 24 + 48 + 32, std::vector<std::byte>(20));
  r.add(VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, 1, 0, reply::avail(777));
  auto i = r.parse();
  REQUIRE(i);
  CHECK(i->page_sizes() == 0x40201000);
  CHECK(i->min_page_size() == 4096);
  REQUIRE(i->windows().size() == 2);
  CHECK(i->windows()[1].last == 0x7fffffffff);
  CHECK(i->dma_avail() == 777);

  // No capability flag: page sizes only, every IOVA presented as usable.
  reply plain{VFIO_IOMMU_INFO_PGSIZES, 0x1000, 0};
  auto p = plain.parse();
  REQUIRE(p);
  CHECK_FALSE(p->has_iova_ranges());
  REQUIRE(p->windows().size() == 1);
  CHECK(p->windows()[0] == vfio::iova_window{0, ~u64{0}});
  CHECK_FALSE(p->has_dma_avail());
  // No page-size flag: 0, which the mapper refuses.
  reply nopg{VFIO_IOMMU_INFO_CAPS, 0x1000, 0};
  CHECK(nopg.parse()->page_sizes() == 0);
  // The chain flag with cap_offset 0 (buffer was too small): no chain, not an error.
  reply zero{VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS, 0x1000, 0};
  CHECK(zero.parse());
}

TEST_CASE("parse_iommu_info: malformed chains are parse_error, never a crash or a hang",
          "[vfio][parser]") {
  constexpr u16 iova_range = VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE;
  constexpr u16 dma_avail = VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL;
  constexpr u32 caps = VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS;
  SECTION("shorter than the fixed header") { CHECK(reply{}.resized(15).malformed()); }
  SECTION("first capability past the end") { CHECK(reply{caps, 0x1000, 4000}.malformed()); }
  SECTION("capability inside the fixed header") {
    CHECK(reply{caps, 0x1000, 8}.with(99, 1, 0, {}).malformed());
  }
  SECTION("header cut by the end") { CHECK(reply{}.resized(24 + 6).malformed()); }
  SECTION("a capability pointing at itself") { CHECK(reply{}.with(99, 1, 24, {}).malformed()); }
  SECTION("a loop through an earlier capability") {
    CHECK(reply{}.with(99, 1, 32, {}).with(98, 1, 24, {}).malformed());
  }
  SECTION("next past the end") { CHECK(reply{}.with(99, 1, 0x10000, {}).malformed()); }
  SECTION("nr_iovas larger than the bytes present, including a wrapping count") {
    CHECK(reply{}.with(iova_range, 1, 0, reply::ranges({{0, 0xfff}}, 3)).malformed());
    CHECK(reply{}.with(iova_range, 1, 0, reply::ranges({{0, 0xfff}}, 0xffffffffu)).malformed());
  }
  SECTION("empty, inverted, unsorted or overlapping windows") {
    CHECK(reply{}.with(iova_range, 1, 0, reply::ranges({})).malformed());
    CHECK(reply{}.with(iova_range, 1, 0, reply::ranges({{0x2000, 0x1000}})).malformed());
    CHECK(reply{}
              .with(iova_range, 1, 0, reply::ranges({{0x10000, 0x1ffff}, {0x0, 0xfff}}))
              .malformed());
    CHECK(reply{}
              .with(iova_range, 1, 0, reply::ranges({{0x0, 0x1fff}, {0x1000, 0x2fff}}))
              .malformed());
  }
  SECTION("the same capability twice, or version 0") {
    CHECK(reply{}
              .with(dma_avail, 1, 40, reply::avail(1))
              .with(dma_avail, 1, 0, reply::avail(2))
              .malformed());
    CHECK(reply{}.with(dma_avail, 0, 0, reply::avail(1)).malformed());
  }
  SECTION("DMA_AVAIL cut short") {
    reply r;
    r.add(99, 1, 0, {});
    // Overwrite the id of a header-only capability: no room for `avail`.
    const u16 id = VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL;
    std::memcpy(r.b.data() + 24, &id, 2);
    CHECK(r.resized(24 + 8).malformed());
  }
  SECTION("more windows than the parser keeps is too_long, not truncation") {
    std::vector<std::byte> body(8 + 65 * 16);
    const u32 nr = 65;
    std::memcpy(body.data(), &nr, 4);
    for (u64 i = 0; i < 65; ++i) {
      const u64 s = i * 0x10000, e = s + 0xfff;
      std::memcpy(body.data() + 8 + i * 16, &s, 8);
      std::memcpy(body.data() + 16 + i * 16, &e, 8);
    }
    reply r;
    r.add(VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, 1, 0, body);
    CHECK(r.parse().error() == errc::too_long);
  }
}

TEST_CASE("vfio: a malformed chain from the kernel fails the attach and leaves nothing set",
          "[vfio][parser]") {
  kernel k;
  // A capability whose `next` points back at itself (offsets count from the reply start).
  std::vector<std::byte> caps(8);
  const vfio_info_cap_header h{VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, 1, 24};
  std::memcpy(caps.data(), &h, sizeof h);
  k.raw_caps = caps;
  auto c = vfio::container::try_open(k.ops());
  REQUIRE(c);
  auto g = c->try_attach_group(12);
  REQUIRE_FALSE(g);
  CHECK(g.error() == errc::parse_error);
  CHECK_FALSE(c->has_iommu());
  CHECK_FALSE(k.iommu_set());  // closing the only group reset the container
  CHECK(k.open_fds() == 1);
}

// ---- the mapper -------------------------------------------------------------------------------

TEST_CASE("vfio_mapper: a virtually contiguous buffer is one IOVA range, one MAP_DMA, unmapped "
          "exactly",
          "[vfio][mapper]") {
  rig r;
  auto m = r.open_mapper<nvme0>();
  REQUIRE(m.status());
  CHECK(m.granule() == 4096);
  CHECK(m.window().first == 0xfef00000);  // the larger window, above the MSI hole
  auto l = vlist({{va0 + 0x234, 3 * page}});
  auto mp = m.try_map(l, dma_direction::bidirectional);
  REQUIRE(mp);
  REQUIRE(mp->size() == 1);
  const dma_range<nvme0> d = *mp->begin();
  CHECK(d.len() == 3 * page);
  CHECK((d.addr().value() & 0xfff) == 0x234);
  CHECK_FALSE(in_msi_window(d.addr().value(), d.last().value()));
  REQUIRE(mp->chunks().size() == 1);
  const vfio_chunk ch = mp->chunks()[0];
  CHECK(ch.vaddr == va0);
  CHECK(ch.size == 4 * page);  // the pages behind 3 pages at offset 0x234
  CHECK(ch.iova == (d.addr().value() & ~u64{0xfff}));
  auto maps = r.k.mappings();
  REQUIRE(maps.size() == 1);
  CHECK(maps.begin()->first == ch.iova);
  CHECK(maps.begin()->second.vaddr == va0);
  CHECK(maps.begin()->second.size == 4 * page);
  REQUIRE(m.try_unmap(std::move(*mp)));
  CHECK(r.k.mappings().empty());
  CHECK(r.k.count("VFIO_IOMMU_UNMAP_DMA") == 1);
  CHECK(r.k.log.back().b == ch.iova);
  CHECK(r.k.log.back().c == ch.size);
  CHECK(m.stats().live_mappings == 0);
}

TEST_CASE("vfio_mapper: direction becomes the MAP_DMA permission", "[vfio][mapper]") {
  rig r;
  auto m = r.open_mapper<nvme0>();
  auto l = vlist({{va0, page}});
  const std::pair<dma_direction, u32> cases[] = {
      {dma_direction::to_device, VFIO_DMA_MAP_FLAG_READ},
      {dma_direction::from_device, VFIO_DMA_MAP_FLAG_WRITE},
      {dma_direction::bidirectional, VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE}};
  for (auto [dir, flags] : cases) {
    auto mp = m.try_map(l, dir);
    REQUIRE(mp);
    CHECK(mp->direction() == dir);
    CHECK(r.k.mappings().begin()->second.flags == flags);
  }  // each mapping unmaps itself at the end of its iteration
  CHECK(r.k.mappings().empty());
  CHECK(m.try_map(l, static_cast<dma_direction>(9)).error() == errc::invalid_argument);
  CHECK(m.try_map(range_list<virt_range>{}, dma_direction::to_device).error() ==
        errc::invalid_argument);
  CHECK(m.stats().failed_maps == 2);
}

TEST_CASE("vfio_mapper: page-aligned buffers share one IOVA range with one MAP_DMA each",
          "[vfio][mapper]") {
  rig r;
  auto m = r.open_mapper<nvme0>();
  // An iovec of three page-aligned buffers scattered in the address space.
  auto l = vlist({{va0 + 0x10000, 2 * page}, {va0 + 0x40000, page}, {va0 + 0x7000, 3 * page}});
  auto mp = m.try_map(l, dma_direction::to_device);
  REQUIRE(mp);
  REQUIRE(mp->size() == 1);
  CHECK(mp->begin()->len() == 6 * page);
  REQUIRE(mp->chunks().size() == 3);
  CHECK(mp->chunks()[1].iova == mp->chunks()[0].iova + 2 * page);
  CHECK(mp->chunks()[2].iova == mp->chunks()[1].iova + page);
  CHECK(mp->chunks()[2].vaddr == va0 + 0x7000);
  CHECK(r.k.mappings().size() == 3);
}

TEST_CASE("vfio_mapper: an unaligned boundary starts a new IOVA range on the next page; adjacent "
          "ranges with other flags share a chunk",
          "[vfio][mapper]") {
  rig r;
  auto m = r.open_mapper<nvme0>();
  auto l = vlist({{va0 + 0x100, 0x800}, {va0 + 0x5000, page}});
  auto mp = m.try_map(l, dma_direction::to_device);
  REQUIRE(mp);
  auto v = dma_of(*mp);
  REQUIRE(v.size() == 2);
  CHECK((v[0].addr().value() & 0xfff) == 0x100);
  CHECK(v[1].addr().value() == (v[0].addr().value() & ~u64{0xfff}) + page);
  CHECK(mp->chunks().size() == 2);

  range_list<virt_range> mixed;
  must(mixed.try_append(virt_range{virt_addr{va0 + 0x100}, 0x200, range_flags::driver0}));
  must(mixed.try_append(virt_range{virt_addr{va0 + 0x300}, 0x1000, range_flags::none}));
  auto mm = m.try_map(mixed, dma_direction::to_device);
  REQUIRE(mm);
  auto w = dma_of(*mm);
  REQUIRE(w.size() == 2);
  CHECK(w[0].flags() == range_flags::driver0);
  CHECK(w[1].addr() == w[0].end());
  REQUIRE(mm->chunks().size() == 1);
  CHECK(mm->chunks()[0].size == 2 * page);
}

TEST_CASE("vfio_mapper: a 2 MiB buffer gets an IOVA congruent to its address modulo 2 MiB",
          "[vfio][mapper]") {
  rig r;
  auto m = r.open_mapper<nvme0>();
  const u64 va = 0x7f00'0020'3000;  // 0x3000 into a 2 MiB page
  auto small = vlist({{va0, page}});
  auto first = m.try_map(small, dma_direction::to_device);  // something already in the window
  REQUIRE(first);
  auto l = vlist({{va, 4 * vfio_fake::page_2m}});
  auto mp = m.try_map(l, dma_direction::from_device);
  REQUIRE(mp);
  REQUIRE(mp->size() == 1);
  CHECK((mp->begin()->addr().value() & (vfio_fake::page_2m - 1)) == 0x3000);
  CHECK(mp->chunks()[0].size == 4 * vfio_fake::page_2m);
}

TEST_CASE("vfio_mapper: IOVAs stay under the DMA mask and inside the windows, above min_iova",
          "[vfio][mapper]") {
  rig r;
  r.open();
  vfio_mapper<nvme0> m32{*r.c, {.dma_bits = 32}};
  REQUIRE(m32.status());
  CHECK(m32.window().first == 4096);  // page 0 never handed out
  CHECK(m32.window().last == 0xfedfffff);
  auto l = vlist({{va0, 64 * page}});
  auto mp = m32.try_map(l, dma_direction::to_device);
  REQUIRE(mp);
  CHECK(mp->begin()->last().value() <= 0xffffffff);
  CHECK_FALSE(in_msi_window(mp->begin()->addr().value(), mp->begin()->last().value()));

  vfio_mapper<nic0> hi{*r.c, {.dma_bits = 64, .min_iova = u64{1} << 36}};
  CHECK(hi.window().first == u64{1} << 36);
  vfio_mapper<nic0> bad_bits{*r.c, {.dma_bits = 0}};
  CHECK(bad_bits.status().error() == errc::invalid_argument);
  vfio_mapper<nic0> tiny{*r.c, {.dma_bits = 12}};  // [4096, 4095]: nothing
  CHECK(tiny.status().error() == errc::not_addressable);
  CHECK(tiny.try_map(l, dma_direction::to_device).error() == errc::not_addressable);
}

TEST_CASE("vfio_mapper: mappers of one container claim disjoint IOVA windows and never collide",
          "[vfio][mapper]") {
  rig r;
  r.open();
  auto l = vlist({{va0, 4 * page}});
  {
    vfio_mapper<nvme0> a{*r.c};
    vfio_mapper<nic0> b{*r.c};
    REQUIRE(a.status());
    REQUIRE(b.status());
    CHECK(a.window() == vfio::iova_window{0xfef00000, (u64{1} << 39) - 1});  // the largest
    CHECK(b.window() == vfio::iova_window{0x1000, 0xfedfffff});              // what is left
    auto ma = a.try_map(l, dma_direction::to_device);
    auto mb = b.try_map(l, dma_direction::to_device);
    REQUIRE(ma);
    REQUIRE(mb);  // with one window each, the two lowest-fit blocks would have been the same
    CHECK(ma->chunks()[0].iova != mb->chunks()[0].iova);
    CHECK(r.k.mappings().size() == 2);
    // A third finds everything under its mask claimed.
    vfio_mapper<nic0> c{*r.c};
    CHECK(c.status().error() == errc::exhausted);
  }
  // Claims go back with their mappers.
  vfio_mapper<nvme0> again{*r.c};
  CHECK(again.window().first == 0xfef00000);
  vfio_mapper<nic0> next{*r.c};
  CHECK(next.window().first == 0x1000);
}

TEST_CASE("vfio_mapper: iova_bytes caps the claim to the lowest part of the free window",
          "[vfio][mapper]") {
  rig r;
  r.open();
  vfio_mapper<nvme0> a{*r.c, {.dma_bits = 64, .min_iova = 0, .iova_bytes = u64{1} << 30}};
  CHECK(a.window() == vfio::iova_window{0xfef00000, 0xfef00000 + (u64{1} << 30) - 1});
  vfio_mapper<nic0> b{*r.c};
  CHECK(b.window() == vfio::iova_window{0xfef00000 + (u64{1} << 30), (u64{1} << 39) - 1});
  vfio_mapper<nic0> c{*r.c, {.dma_bits = 32}};
  CHECK(c.window() == vfio::iova_window{0x1000, 0xfedfffff});
  auto l = vlist({{va0, 2 * page}});
  auto ma = a.try_map(l, dma_direction::to_device);
  auto mb = b.try_map(l, dma_direction::to_device);
  auto mc = c.try_map(l, dma_direction::to_device);
  REQUIRE(ma);
  REQUIRE(mb);
  REQUIRE(mc);
  CHECK(r.k.mappings().size() == 3);
}

TEST_CASE("vfio_mapper: a container without a group cannot map", "[vfio][mapper]") {
  kernel k;
  auto c = vfio::container::try_open(k.ops());
  REQUIRE(c);
  vfio_mapper<nvme0> m{*c};
  CHECK(m.status().error() == errc::not_supported);
  auto l = vlist({{va0, page}});
  CHECK(m.try_map(l, dma_direction::to_device).error() == errc::not_supported);
  CHECK(k.count("VFIO_IOMMU_MAP_DMA") == 0);
}

TEST_CASE("vfio_mapper: a failing MAP_DMA unmaps the chunks already mapped and keeps the errno",
          "[vfio][mapper]") {
  rig r;
  auto m = r.open_mapper<nvme0>();
  auto l = vlist({{va0, page}, {va0 + 0x10000, page}, {va0 + 0x20000, page}, {va0 + 0x30000, page}});
  for (std::size_t bad = 0; bad < 4; ++bad) {
    r.k.fail_at = r.k.failable_calls + 1 + bad;  // the (bad+1)-th MAP_DMA of this call
    r.k.fail_errno = ENOMEM;
    auto mp = m.try_map(l, dma_direction::to_device);
    require_failed(mp, errc::out_of_memory, ENOMEM);
    CHECK(std::string{mp.error().op} == "VFIO_IOMMU_MAP_DMA");
    CHECK(r.k.mappings().empty());
  }
  r.k.fail_at = 0;
  CHECK(m.stats().quarantined_blocks == 0);
  // The IOVA given back is reused: the next map lands where the failed ones did.
  auto ok = m.try_map(l, dma_direction::to_device);
  REQUIRE(ok);
  CHECK(ok->begin()->addr().value() == 0xfef00000);
  // Unpinnable memory: EFAULT -> not_mapped.
  r.k.bad_vaddrs.push_back({va0 + 0x80000, page});
  auto hole = m.try_map(vlist({{va0 + 0x70000, page}, {va0 + 0x80000, page}}), dma_direction::to_device);
  require_failed(hole, errc::not_mapped, EFAULT);
  CHECK(r.k.mappings().size() == ok->chunks().size());  // only `ok` is left
}

TEST_CASE("vfio_mapper: past the container's mapping limit MAP_DMA is ENOSPC, rolled back",
          "[vfio][mapper]") {
  rig r;
  r.k.dma_entry_limit = 2;
  r.open();
  CHECK(r.c->iommu().dma_avail() == 2);
  vfio_mapper<nvme0> m{*r.c};
  auto l = vlist({{va0, page}, {va0 + 0x10000, page}, {va0 + 0x20000, page}});
  auto mp = m.try_map(l, dma_direction::to_device);
  require_failed(mp, errc::exhausted, ENOSPC);
  CHECK(r.k.mappings().empty());
}

TEST_CASE("vfio_mapper: a rollback unmap that fails quarantines the IOVA block", "[vfio][mapper]") {
  rig r;
  auto m = r.open_mapper<nvme0>();
  auto l = vlist({{va0, page}, {va0 + 0x10000, page}});
  // The calls of this map: MAP_DMA #1, MAP_DMA #2 (unpinnable memory: EFAULT), then the
  // rollback UNMAP_DMA of #1, which is made to fail.
  r.k.fail_at = r.k.failable_calls + 3;
  r.k.fail_errno = EIO;
  r.k.bad_vaddrs.push_back({va0 + 0x10000, page});
  auto mp = m.try_map(l, dma_direction::to_device);
  REQUIRE_FALSE(mp);
  CHECK(mp.error().sys_errno == EFAULT);  // the MAP_DMA error, not the rollback's
  CHECK(m.stats().unmap_failures == 1);
  CHECK(m.stats().quarantined_blocks == 1);
  r.k.fail_at = 0;
}

TEST_CASE("vfio_mapping: dropped without unmap it unmaps itself; moved-from, foreign and "
          "released mappings are refused",
          "[vfio][mapper][lifetime]") {
  rig r;
  auto m = r.open_mapper<nvme0>();
  vfio_mapper<nvme0> other{*r.c};
  auto l = vlist({{va0, 2 * page}});
  {
    auto mp = m.try_map(l, dma_direction::to_device);
    REQUIRE(mp);
    CHECK(m.stats().live_mappings == 1);
    CHECK(r.k.mappings().size() == 1);
  }  // dropped: RAII unmaps
  CHECK(r.k.mappings().empty());
  CHECK(m.stats().live_mappings == 0);
  CHECK(m.stats().unmaps == 1);

  auto mp = m.try_map(l, dma_direction::to_device);
  REQUIRE(mp);
  CHECK(other.try_unmap(std::move(*mp)).error() == errc::foreign_mapping);
  CHECK(mp->mapped());
  vfio_mapping<nvme0> moved = std::move(*mp);
  CHECK_FALSE(mp->mapped());
  CHECK(mp->chunks().empty());
  CHECK(m.try_unmap(std::move(*mp)).error() == errc::foreign_mapping);
  REQUIRE(m.try_unmap(std::move(moved)));
  CHECK(m.try_unmap(std::move(moved)).error() == errc::foreign_mapping);
  CHECK(r.k.mappings().empty());

  // Move-assigning over a live mapping releases the old one first.
  auto a = m.try_map(l, dma_direction::to_device);
  auto b = m.try_map(vlist({{va0 + 0x10000, page}}), dma_direction::to_device);
  REQUIRE(a);
  REQUIRE(b);
  CHECK(r.k.mappings().size() == 2);
  *a = std::move(*b);
  CHECK(r.k.mappings().size() == 1);
  a->reset();
  CHECK(r.k.mappings().empty());
  CHECK(m.stats().live_mappings == 0);
}

TEST_CASE("vfio_mapper: a failing UNMAP_DMA is reported with its errno and counted on drop",
          "[vfio][mapper][lifetime]") {
  rig r;
  auto m = r.open_mapper<nvme0>();
  auto l = vlist({{va0, page}, {va0 + 0x10000, page}});
  auto mp = m.try_map(l, dma_direction::to_device);
  REQUIRE(mp);
  r.k.fail_at = r.k.failable_calls + 1;
  r.k.fail_errno = EINVAL;
  auto u = m.try_unmap(std::move(*mp));
  require_failed(u, errc::invalid_argument, EINVAL);
  CHECK(r.k.mappings().size() == 1);  // the other chunk was still unmapped
  CHECK(m.stats().quarantined_blocks == 1);
  CHECK_FALSE(mp->mapped());
  {
    auto dropped = m.try_map(vlist({{va0 + 0x40000, page}}), dma_direction::to_device);
    REQUIRE(dropped);
    r.k.fail_at = r.k.failable_calls + 1;
  }
  CHECK(m.stats().unmap_failures == 2);
  r.k.fail_at = 0;
}

TEST_CASE("vfio_mapper: every allocation failing in turn leaves nothing mapped and nothing "
          "allocated",
          "[vfio][mapper][alloc]") {
  rig r;
  r.open();
  fault_state fs;
  vfio_mapper<nvme0, fault_injecting_allocator> m{*r.c, {}, fault_injecting_allocator{&fs}};
  // Enough unaligned pieces that the DMA list needs a heap segment.
  range_list<virt_range> l;
  for (u64 i = 0; i < 40; ++i) must(l.try_append(virt_range{virt_addr{va0 + i * 0x10000 + 0x80}, 0x100}));
  std::size_t failures = 0;
  for (std::uint64_t k = 1;; ++k) {
    fs = fault_state{.fail_at = k};
    auto mp = m.try_map(l, dma_direction::to_device);
    if (mp) {
      CHECK(mp->size() == 40);
      break;
    }
    ++failures;
    CHECK(mp.error() == errc::out_of_memory);
    CHECK(mp.error().sys_errno == 0);
    CHECK(fs.live == 0);
    CHECK(r.k.mappings().empty());
    CHECK(r.k.count("VFIO_IOMMU_MAP_DMA") == 0);  // allocation happens before any ioctl
    REQUIRE(k < 50);
  }
  CHECK(failures >= 3);  // chunk table, IOVA metadata, DMA list segment
  CHECK(r.k.mappings().empty());
  m.flush_iova_caches();  // the IOVA allocator keeps its live-set table between I/Os
  CHECK(fs.live == 0);
}

// ---- every call failing in turn -----------------------------------------------------------------

namespace {
// A driver's whole session: open, attach, device, BAR, bus master, map three buffers, unmap.
// Returns the first error (or success); everything is released on return.
result<void, sys_error> session(kernel& k) {
  auto c = vfio::container::try_open(k.ops());
  if (!c) return c.error();
  auto g = c->try_attach_group(12);
  if (!g) return g.error();
  auto d = g->try_open_device("0000:00:04.0");
  if (!d) return d.error();
  auto bar = d->try_map_bar(0);
  if (!bar) return bar.error();
  if (auto b = d->try_enable_bus_master(); !b) return b.error();
  vfio_mapper<nvme0> m{*c, {.dma_bits = 48}};
  auto l = vlist({{va0, page}, {va0 + 0x10000, 2 * page}, {va0 + 0x30000 + 0x10, 0x100}});
  auto mp = m.try_map(l, dma_direction::bidirectional);
  if (!mp) return mp.error();
  return m.try_unmap(std::move(*mp));
}
}  // namespace

TEST_CASE("vfio: every system call failing in turn gives its errno back and leaks nothing",
          "[vfio][faults]") {
  std::size_t calls = 0;
  {
    kernel k;
    REQUIRE(session(k));
    calls = k.failable_calls;
    CHECK(k.open_fds() == 0);
  }
  REQUIRE(calls >= 15);
  const int errnos[] = {EIO, ENOMEM, EINVAL, EPERM};
  for (std::size_t i = 1; i <= calls; ++i) {
    kernel k;
    k.fail_at = i;
    k.fail_errno = errnos[i % 4];
    auto r = session(k);
    std::string failed_op;
    for (std::size_t j = 0, n = 0; j < k.log.size(); ++j)
      if (k.log[j].op != "close" && k.log[j].op != "munmap" && ++n == i) failed_op = k.log[j].op;
    INFO("failing call " << i << ": " << failed_op);
    REQUIRE_FALSE(r);
    CHECK(r.error().sys_errno == k.fail_errno);
    CHECK(r.error() == vfio::errc_from_errno(k.fail_errno));
    CHECK(r.error().op != nullptr);
    CHECK(k.open_fds() == 0);
    CHECK(k.live_mmaps() == 0);
    CHECK(k.mappings().empty());
  }
}

// ---- threads ------------------------------------------------------------------------------------

TEST_CASE("vfio_mapper: concurrent map and unmap from two threads (thread safety)",
          "[vfio][mapper][thread]") {
  rig r;
  auto m = r.open_mapper<nvme0>();
  std::atomic<int> errors{0};
  auto work = [&](u64 base) {
    for (int i = 0; i < 300; ++i) {
      auto l = vlist({{base + static_cast<u64>(i % 7) * page, page}, {base + 0x100000, 3 * page}});
      auto mp = m.try_map(l, dma_direction::to_device);
      if (!mp) {
        ++errors;
        continue;
      }
      if (i % 2 == 0 && !m.try_unmap(std::move(*mp))) ++errors;  // odd ones unmap on destruction
    }
  };
  std::thread t1{work, va0};
  std::thread t2{work, va0 + 0x1000'0000};
  t1.join();
  t2.join();
  CHECK(errors == 0);
  CHECK(r.k.mappings().empty());
  CHECK(m.stats().maps == 600);
  CHECK(m.stats().unmaps == 600);
  CHECK(m.stats().live_mappings == 0);
}

// ---- iova_reservation over VFIO (the iommu_backend interface of vfio_mapper) -----------------

TEST_CASE("iova_reservation over vfio_mapper: each link is one MAP_DMA at its offset, unlink "
          "and destruction unmap exactly what was linked",
          "[vfio][reservation]") {
  rig r;
  auto m = r.open_mapper<nvme0>();
  using resv = iova_reservation<nvme0, vfio_mapper<nvme0>>;
  static_assert(iommu_backend<vfio_mapper<nvme0>>);
  auto q = resv::try_create(m, 64 * page);
  REQUIRE(q);
  const u64 base = q->addr().value();
  CHECK(base >= m.window().first);
  CHECK((base & 0xfff) == 0);
  CHECK(r.k.mappings().empty());  // reserving maps nothing
  CHECK(m.stats().live_mappings == 1);

  auto a = q->try_link(0, virt_range{virt_addr{va0}, 2 * page}, dma_direction::to_device);
  REQUIRE(a);
  CHECK(a->addr().value() == base);
  auto b = q->try_link(0x4000, virt_range{virt_addr{va0 + 0x100000}, 3 * page},
                       dma_direction::from_device);
  REQUIRE(b);
  CHECK(b->addr().value() == base + 0x4000);
  q->sync();
  auto maps = r.k.mappings();
  REQUIRE(maps.size() == 2);
  CHECK(maps.at(base).vaddr == va0);
  CHECK(maps.at(base).size == 2 * page);
  CHECK(maps.at(base).flags == VFIO_DMA_MAP_FLAG_READ);  // to_device: the device reads
  CHECK(maps.at(base + 0x4000).vaddr == va0 + 0x100000);
  CHECK(maps.at(base + 0x4000).flags == VFIO_DMA_MAP_FLAG_WRITE);

  // The reservation's own rules hold before the kernel is asked.
  const std::size_t calls = r.k.log.size();
  CHECK(q->try_link(0x5000, virt_range{virt_addr{va0}, page}, dma_direction::to_device).error() ==
        errc::overlaps);
  CHECK(q->try_unlink(0x5000, page).error() == errc::not_supported);  // inside link b
  CHECK(q->try_link(63 * page, virt_range{virt_addr{va0}, 2 * page}, dma_direction::to_device)
            .error() == errc::out_of_range);
  CHECK(r.k.log.size() == calls);

  REQUIRE(q->try_unlink(0, 2 * page));
  maps = r.k.mappings();
  REQUIRE(maps.size() == 1);  // what remains stays mapped
  CHECK(maps.count(base + 0x4000) == 1);
  CHECK(r.k.log.back().op == "VFIO_IOMMU_UNMAP_DMA");
  CHECK(r.k.log.back().b == base);
  CHECK(r.k.log.back().c == 2 * page);

  q->reset();  // dma_iova_destroy: the rest goes, the IOVA comes back
  CHECK(r.k.mappings().empty());
  CHECK(m.stats().live_mappings == 0);
  auto again = resv::try_create(m, 64 * page);
  REQUIRE(again);
  CHECK(again->addr().value() == base);
}

TEST_CASE("iova_reservation over vfio_mapper: fixed IOVA, kernel refusals keep the state",
          "[vfio][reservation]") {
  rig r;
  auto m = r.open_mapper<nvme0>();
  using resv = iova_reservation<nvme0, vfio_mapper<nvme0>>;
  const u64 at = m.window().first + 0x100000;
  auto q = resv::try_create_at(m, dma_addr<nvme0>{at}, 16 * page);
  REQUIRE(q);
  CHECK(q->addr().value() == at);
  // Any part taken: overlaps, nothing reserved. Outside the window: out_of_range.
  CHECK(resv::try_create_at(m, dma_addr<nvme0>{at + 8 * page}, 16 * page).error() ==
        errc::overlaps);
  CHECK(resv::try_create_at(m, dma_addr<nvme0>{0x1000}, page).error() == errc::out_of_range);
  CHECK(m.stats().live_mappings == 1);

  // Memory the kernel cannot pin: EFAULT -> not_mapped, nothing linked, the pages stay free.
  r.k.bad_vaddrs.push_back({va0, page});
  CHECK(q->try_link(0, virt_range{virt_addr{va0}, page}, dma_direction::to_device).error() ==
        errc::not_mapped);
  CHECK(q->linked_pages() == 0);
  CHECK(r.k.mappings().empty());
  REQUIRE(q->try_link(0, virt_range{virt_addr{va0 + 0x10000}, page}, dma_direction::to_device));

  // UNMAP_DMA refused: io_error, the link is still there and still unlinkable later.
  r.k.fail_at = r.k.failable_calls + 1;
  r.k.fail_errno = EIO;
  CHECK(q->try_unlink(0, page).error() == errc::io_error);
  CHECK(q->linked_pages() == 1);
  CHECK(r.k.mappings().size() == 1);
  CHECK(m.stats().unmap_failures == 1);
  REQUIRE(q->try_unlink(0, page));
  CHECK(r.k.mappings().empty());

  // A release the kernel refuses quarantines the IOVA: never handed out again.
  REQUIRE(q->try_link(page, virt_range{virt_addr{va0 + 0x20000}, page}, dma_direction::to_device));
  r.k.fail_at = r.k.failable_calls + 1;
  q->reset();
  r.k.fail_at = 0;
  CHECK(m.stats().quarantined_blocks == 1);
  CHECK(m.stats().live_mappings == 0);
  CHECK(resv::try_create_at(m, dma_addr<nvme0>{at}, page).error() == errc::overlaps);
}

TEST_CASE("iova_reservation over vfio_mapper: a mapper without an IOMMU reserves nothing",
          "[vfio][reservation]") {
  rig r;
  auto cr = vfio::container::try_open(r.k.ops());
  REQUIRE(cr);
  vfio_mapper<nvme0> m{*cr};
  using resv = iova_reservation<nvme0, vfio_mapper<nvme0>>;
  CHECK(resv::try_create(m, page).error() == errc::not_supported);
  CHECK(m.stats().live_mappings == 0);
}
