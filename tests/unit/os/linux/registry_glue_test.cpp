#include <sys/mman.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <phyr/os/linux/registry_glue.hpp>
#include <phyr/os/linux/vfio.hpp>
#include <utility>

#include "vfio_rig.hpp"

using namespace phyr;
using u64 = std::uint64_t;

namespace {
struct nvme0 {};
constexpr u64 page = 4096;
constexpr u64 va0 = 0x7f12'3450'0000;  // synthetic: the fake kernel pins nothing
using vfio_fake::rig;
}  // namespace

TEST_CASE("map_and_register maps into the container, registers the IOVA; unregister unmaps",
          "[vfio][registry]") {
  rig r;
  r.open();
  vfio_mapper<nvme0> m{*r.c};
  REQUIRE(m.status());
  dma_registry<nvme0> reg;
  void* buf = reinterpret_cast<void*>(va0 + 0x100);
  auto vr = try_map_and_register(reg, m, buf, 3 * page, dma_direction::bidirectional);
  REQUIRE(vr);
  REQUIRE(r.k.mappings().size() == 1);
  const dma_range<nvme0> d = *vr->mapping().begin();
  auto t = reg.translate(virt_addr{va0 + 0x100 + page}, page);
  REQUIRE(t);
  CHECK(t->addr.value() == d.addr().value() + page);
  CHECK(t->len == page);

  // The same buffer again overlaps: the second mapping is undone before returning.
  auto again = try_map_and_register(reg, m, buf, page, dma_direction::to_device);
  REQUIRE_FALSE(again);
  CHECK(again.error() == errc::overlaps);
  CHECK(r.k.mappings().size() == 1);
  CHECK(m.stats().live_mappings == 1);

  auto un = vr->try_unregister();
  INFO((un ? "ok" : to_string(un.error().code)) << " errno " << (un ? 0 : un.error().sys_errno));
  REQUIRE(un);
  CHECK_FALSE(vr->registered());
  CHECK(r.k.mappings().empty());
  CHECK(reg.translate(virt_addr{va0 + 0x100}, 1).error() == errc::not_mapped);
  REQUIRE(vr->try_unregister());  // a second call is a no-op
}

TEST_CASE("a vfio_registration going out of scope unregisters and unmaps", "[vfio][registry]") {
  rig r;
  r.open();
  vfio_mapper<nvme0> m{*r.c};
  dma_registry<nvme0> reg;
  {
    auto vr = try_map_and_register(reg, m, reinterpret_cast<void*>(va0), page,
                                   dma_direction::from_device);
    REQUIRE(vr);
    CHECK(reg.segments() == 1);
  }
  CHECK(reg.segments() == 0);
  CHECK(r.k.mappings().empty());
  CHECK(m.stats().live_mappings == 0);
}

TEST_CASE("pin_and_register registers the pagemap frames; unregister unpins", "[pagemap][registry]") {
  const std::size_t len = 4 * page;
  void* p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(p != MAP_FAILED);
  phys_registry reg;
  {
    auto pr = try_pin_and_register(reg, p, len);
    if (!pr) {
      // Without CAP_SYS_ADMIN (or an mlock budget) pinning fails; nothing is registered then.
      CHECK((pr.error() == errc::permission_denied || pr.error() == errc::exhausted));
      CHECK(reg.segments() == 0);
      WARN("pagemap PFNs not readable here: " << to_string(pr.error()));
    } else {
      const auto& ranges = pr->buffer().ranges();
      u64 off = 0;
      for (const phys_range& x : ranges) {
        auto t = reg.translate(virt_addr{reinterpret_cast<u64>(p) + off}, x.len());
        REQUIRE(t);
        CHECK(t->addr == x.addr());
        CHECK(has_flags(t->flags, range_flags::pinned));
        off += x.len();
      }
      CHECK(off == len);
      auto dup = try_pin_and_register(reg, p, page);
      REQUIRE_FALSE(dup);
      CHECK(dup.error() == errc::overlaps);
      REQUIRE(pr->try_unregister());
      CHECK_FALSE(pr->buffer().pinned());
      CHECK(reg.segments() == 0);
    }
  }
  ::munmap(p, len);
}
