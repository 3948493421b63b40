// Two-step IOVA mapping (map/iommu/iova_reservation.hpp): reserve once, link and unlink
// physical ranges at chosen offsets, sync; fixed-IOVA reservation; partial unlink at link
// edges; RAII release; the rules' error cases leave every piece of state as it was.
#include <atomic>
#include <catch2/catch.hpp>
#include <cstdint>
#include <phyr/map/iommu/iommu_mapper.hpp>
#include <phyr/map/iommu/iova_reservation.hpp>
#include <random>
#include <thread>
#include <vector>

#include "support/phys_ranges.hpp"

namespace {
using namespace phyr_test;
using phyr::dma_direction;

struct nvme0 {};
struct nic0 {};
constexpr std::uint64_t P = phyr::page_size;
using resv = phyr::iova_reservation<nvme0, phyr::iommu_domain>;
// The fault-injection tests' domain and reservation: every allocation goes through one
// fault_state.
using fault_alloc = phyr::fault_injecting_allocator;
using fdom = phyr::basic_iommu_domain<fault_alloc>;
using fresv = phyr::iova_reservation<nvme0, fdom, fault_alloc>;

/// Everything a failed call must leave as it was.
struct snapshot {
  phyr::iommu_domain_stats dom;
  std::uint64_t linked;
  bool operator==(const snapshot& o) const {
    return dom.page_table == o.dom.page_table && dom.iova.live_blocks == o.dom.iova.live_blocks &&
           dom.iova.free_extents == o.dom.iova.free_extents &&
           dom.live_mappings == o.dom.live_mappings && linked == o.linked;
  }
};
snapshot snap(const phyr::iommu_domain& d, const resv& r) { return {d.stats(), r.linked_pages()}; }

}  // namespace

TEST_CASE("iova_reservation: the page-table domain is an iommu_backend", "[iova_reservation]") {
  STATIC_REQUIRE(phyr::iommu_backend<phyr::iommu_domain>);
  STATIC_REQUIRE(phyr::iommu_backend<fdom>);
  STATIC_REQUIRE_FALSE(phyr::iommu_backend<int>);
  STATIC_REQUIRE_FALSE(std::is_copy_constructible_v<resv>);
  STATIC_REQUIRE(std::is_nothrow_move_constructible_v<resv>);
}

TEST_CASE("iova_reservation: page-aligned links at chosen offsets form one contiguous DMA range",
          "[iova_reservation]") {
  phyr::iommu_domain dom;
  auto r = phyr::must(resv::try_create(dom, 64 * P));
  CHECK(r.reserved());
  CHECK(r.len() == 64 * P);
  CHECK(dom.stats().live_mappings == 1);
  CHECK(dom.stats().page_table.leaves() == 0);  // reserving maps nothing
  // Scattered pages, linked out of order.
  const std::uint64_t phys[4] = {0x7'0000'0000, 0x1234'5000, 0x9'9999'9000, 0x4000};
  for (int i : {2, 0, 3, 1}) {
    auto d = phyr::must(r.try_link(static_cast<std::uint64_t>(i) * P, pr(phys[i], P),
                                   dma_direction::to_device));
    CHECK(d.addr().value() == r.addr().value() + static_cast<std::uint64_t>(i) * P);
    CHECK(d.len() == P);
  }
  CHECK(r.linked_pages() == 4);
  CHECK(r.needs_sync());
  r.sync();
  CHECK_FALSE(r.needs_sync());
  CHECK(dom.stats().iotlb_syncs == 1);
  r.sync();  // nothing new: no flush
  CHECK(dom.stats().iotlb_syncs == 1);
  // One DMA range [addr, addr + 4 pages) reaches all four pages.
  for (int i = 0; i < 4; ++i) {
    const std::uint64_t a = r.addr().value() + static_cast<std::uint64_t>(i) * P + 0x123;
    CHECK(dom.translate(a)->value() == phys[i] + 0x123);
    CHECK(dom.lookup(a)->perm == phyr::io_perm::read);
  }
  CHECK(dom.translate(r.addr().value() + 4 * P).error() == errc::not_mapped);
}

TEST_CASE("iova_reservation: the first link may start inside a page at the offset fixed at "
          "creation; later ones must start on a page", "[iova_reservation]") {
  phyr::iommu_domain dom;
  auto r = phyr::must(resv::try_create(dom, 3 * P, /*first_offset=*/0x200));
  CHECK((r.addr().value() & phyr::page_mask) == 0x200);
  const auto before = snap(dom, r);
  // In-page offsets that disagree with the reservation's: misaligned.
  CHECK(r.try_link(0, pr(0x10'0300, P), dma_direction::to_device).error() == errc::misaligned);
  CHECK(snap(dom, r) == before);
  auto d0 = phyr::must(r.try_link(0, pr(0x10'0200, P - 0x200), dma_direction::to_device));
  CHECK(d0.addr() == r.addr());
  // Offset P - 0x200 is the next IOVA page: page-aligned memory links there.
  CHECK(r.try_link(P - 0x200, pr(0x50'0100, P), dma_direction::to_device).error() ==
        errc::misaligned);  // memory not on a page
  CHECK(r.try_link(P - 0x100, pr(0x50'0000, P), dma_direction::to_device).error() ==
        errc::misaligned);  // IOVA not on a page
  auto d1 = phyr::must(r.try_link(P - 0x200, pr(0x50'0000, 2 * P), dma_direction::to_device));
  CHECK(d1.addr().value() == d0.addr().value() + d0.len());  // contiguous with the first
  CHECK(dom.translate(d0.addr().value())->value() == 0x10'0200);
  CHECK(dom.translate(d1.addr().value() + P + 5)->value() == 0x50'1005);
}

TEST_CASE("iova_reservation: linking twice, past the end, or unlinking what was never linked "
          "is an error that changes nothing", "[iova_reservation]") {
  phyr::iommu_domain dom;
  auto r = phyr::must(resv::try_create(dom, 8 * P));
  (void)phyr::must(r.try_link(2 * P, pr(0x20'0000, 2 * P), dma_direction::bidirectional));
  const auto before = snap(dom, r);
  CHECK(r.try_link(2 * P, pr(0x30'0000, P), dma_direction::to_device).error() == errc::overlaps);
  CHECK(r.try_link(P, pr(0x30'0000, 2 * P), dma_direction::to_device).error() == errc::overlaps);
  CHECK(r.try_link(7 * P, pr(0x30'0000, 2 * P), dma_direction::to_device).error() ==
        errc::out_of_range);
  CHECK(r.try_link(9 * P, pr(0x30'0000, P), dma_direction::to_device).error() ==
        errc::out_of_range);
  CHECK(r.try_link(0, pr(0x30'0000, P), static_cast<dma_direction>(9)).error() ==
        errc::invalid_argument);
  CHECK(r.try_unlink(5 * P, P).error() == errc::not_mapped);
  CHECK(r.try_unlink(P, 2 * P).error() == errc::not_mapped);  // half of it never linked
  CHECK(r.try_unlink(6 * P, 3 * P).error() == errc::out_of_range);
  CHECK(snap(dom, r) == before);
  CHECK(dom.translate(r.addr().value() + 2 * P)->value() == 0x20'0000);
  phyr::must(r.try_unlink(2 * P, 2 * P));
  CHECK(r.try_unlink(2 * P, 2 * P).error() == errc::not_mapped);  // already unlinked
  CHECK(dom.stats().page_table.leaves() == 0);
  CHECK(dom.stats().page_table.tables == 4);  // kept for the next link
  REQUIRE(dom.with_page_table([](const auto& pt) { return pt.check_invariants(true); }));
  r.reset();  // releasing the reservation unlinks; the tables go back on trim
  CHECK(dom.stats().live_mappings == 0);
  CHECK(dom.trim() == 4);
  CHECK(dom.stats().page_table.tables == 0);
}

TEST_CASE("iova_reservation: try_link_all links a list back to back as one link and one DMA "
          "range", "[iova_reservation]") {
  phyr::iommu_domain dom;
  auto r = phyr::must(resv::try_create(dom, 64 * P, /*first_offset=*/0x300));
  phyr::range_list<phys_range> l;
  REQUIRE(l.try_append(pr(0x10'0300, P - 0x300)));  // ragged start, page-aligned end
  REQUIRE(l.try_append(pr(0x80'0000, 3 * P)));
  REQUIRE(l.try_append(pr(0x20'0000, 0x800)));       // ragged end: the last range
  auto d = phyr::must(r.try_link_all(0, l, dma_direction::to_device));
  CHECK(d.addr() == r.addr());
  CHECK(d.len() == l.total_bytes());
  CHECK(r.linked_pages() == 5);
  CHECK(dom.translate(d.addr().value())->value() == 0x10'0300);
  CHECK(dom.translate(d.addr().value() + (P - 0x300))->value() == 0x80'0000);
  CHECK(dom.translate(d.addr().value() + (P - 0x300) + 3 * P + 0x7ff)->value() == 0x20'07ff);
  // One chunk: unlinking a part of it is not supported; the whole is.
  CHECK(r.try_unlink(P - 0x300, P).error() == errc::not_supported);
  const auto before = snap(dom, r);
  // Rule violations change nothing: an unaligned interior boundary, overlap, past the end.
  phyr::range_list<phys_range> bad;
  REQUIRE(bad.try_append(pr(0x90'0000, 0x800)));  // ends mid-page ...
  REQUIRE(bad.try_append(pr(0x91'0000, P)));      // ... and something follows
  CHECK(r.try_link_all(8 * P - 0x300, bad, dma_direction::to_device).error() == errc::misaligned);
  CHECK(r.try_link_all(2 * P - 0x300, l.try_slice(P - 0x300, 3 * P).value(),
                       dma_direction::to_device).error() == errc::overlaps);
  phyr::range_list<phys_range> four;
  REQUIRE(four.try_append(pr(0x90'0000, 4 * P)));
  CHECK(r.try_link_all(62 * P - 0x300, four, dma_direction::to_device).error() ==
        errc::out_of_range);  // 2 pages left there
  CHECK(r.try_link_all(62 * P - 0x300, l, dma_direction::to_device).error() ==
        errc::misaligned);    // only offset 0 may start inside a page
  CHECK(snap(dom, r) == before);
  phyr::must(r.try_unlink(0, d.len()));
  CHECK(r.linked_pages() == 0);
}

TEST_CASE("iova_reservation: out_of_memory inside try_link_all leaves nothing of the list "
          "linked", "[iova_reservation][alloc]") {
  phyr::fault_state fs;
  fdom dom{fault_alloc{&fs}};
  auto r = phyr::must(fresv::try_create(dom, 8192 * P, 0, {}, fault_alloc{&fs}));
  phyr::range_list<phys_range> l;  // pages spread over several leaf tables
  for (std::uint64_t i = 0; i < 8; ++i) REQUIRE(l.try_append(pr(0x4000'0000 + i * 0x40'0000, 600 * P)));
  int failures = 0;
  for (std::uint64_t k = 1;; ++k) {
    const auto leaves = dom.stats().page_table.leaves();
    fs.fail_at = fs.calls + k;
    auto d = r.try_link_all(0, l, dma_direction::to_device);
    fs.fail_at = 0;
    if (d) break;
    ++failures;
    CHECK(d.error() == errc::out_of_memory);
    CHECK(dom.stats().page_table.leaves() == leaves);
    CHECK(r.linked_pages() == 0);
    CHECK(dom.translate(r.addr().value()).error() == errc::not_mapped);
    REQUIRE(k < 100);
  }
  CHECK(failures > 1);
  CHECK(r.linked_pages() == 8 * 600);
  r.reset();
  dom.trim();
  dom.flush_iova_caches();
  CHECK(fs.live == 0);
}

TEST_CASE("iova_reservation: partial unlink works at link edges and is not_supported inside a "
          "link; what remains stays translatable", "[iova_reservation]") {
  phyr::iommu_domain dom;
  auto r = phyr::must(resv::try_create(dom, 16 * P));
  // Three links: [0, 4), [4, 6), [6, 10) pages.
  (void)phyr::must(r.try_link(0, pr(0x100'0000, 4 * P), dma_direction::to_device));
  (void)phyr::must(r.try_link(4 * P, pr(0x200'0000, 2 * P), dma_direction::to_device));
  (void)phyr::must(r.try_link(6 * P, pr(0x300'0000, 4 * P), dma_direction::to_device));
  const auto before = snap(dom, r);
  CHECK(r.try_unlink(P, 3 * P).error() == errc::not_supported);      // starts inside link 1
  CHECK(r.try_unlink(0, 3 * P).error() == errc::not_supported);      // ends inside link 1
  CHECK(r.try_unlink(4 * P, 3 * P).error() == errc::not_supported);  // ends inside link 3
  CHECK(snap(dom, r) == before);
  phyr::must(r.try_unlink(4 * P, 2 * P));  // the middle link, exactly
  CHECK(dom.translate(r.addr().value() + 4 * P).error() == errc::not_mapped);
  CHECK(dom.translate(r.addr().value() + 3 * P)->value() == 0x100'3000);
  CHECK(dom.translate(r.addr().value() + 6 * P)->value() == 0x300'0000);
  // Re-link the hole with other memory, then take two whole links at once.
  (void)phyr::must(r.try_link(4 * P, pr(0x400'0000, 2 * P), dma_direction::to_device));
  phyr::must(r.try_unlink(0, 6 * P));
  CHECK(r.linked_pages() == 4);
  CHECK(dom.translate(r.addr().value() + 9 * P)->value() == 0x300'3000);
}

TEST_CASE("iova_reservation: a fixed IOVA is reserved exactly, or not at all when any page of "
          "it is taken", "[iova_reservation]") {
  phyr::iommu_domain dom;
  const phyr::dma_addr<nvme0> at{0x4000'0000};
  auto a = phyr::must(resv::try_create_at(dom, at, 16 * P));
  CHECK(a.addr() == at);
  const auto s0 = dom.stats();
  CHECK(resv::try_create_at(dom, phyr::dma_addr<nvme0>{0x4000'0000 + 15 * P}, 4 * P).error() ==
        errc::overlaps);
  CHECK(resv::try_create_at(dom, phyr::dma_addr<nvme0>{0x4000'0000 - 2 * P}, 3 * P).error() ==
        errc::overlaps);
  CHECK(resv::try_create_at(dom, phyr::dma_addr<nvme0>{0x4000'0800}, P).error() ==
        errc::misaligned);
  CHECK(resv::try_create_at(dom, phyr::dma_addr<nvme0>{std::uint64_t{1} << 48}, P).error() ==
        errc::out_of_range);
  CHECK(dom.stats().live_mappings == s0.live_mappings);
  CHECK(dom.stats().iova.live_blocks == s0.iova.live_blocks);
  CHECK(dom.stats().iova.free_extents == s0.iova.free_extents);
  // Right after it is free.
  auto b = phyr::must(resv::try_create_at(dom, phyr::dma_addr<nvme0>{0x4000'0000 + 16 * P}, P));
  CHECK(b.addr().value() == 0x4000'0000 + 16 * P);
  // A fixed IOVA the attached devices cannot reach is refused too.
  phyr::iommu_domain small;
  phyr::iova_limits lim;
  lim.max_addr = 0xffff'ffff;
  REQUIRE(small.try_attach(lim));
  CHECK(resv::try_create_at(small, phyr::dma_addr<nvme0>{0x1'0000'0000}, P).error() ==
        errc::not_addressable);
}

TEST_CASE("iova_reservation: a reservation dropped with links in place unlinks them and gives "
          "its IOVA back", "[iova_reservation][lifetime]") {
  phyr::iommu_domain dom;
  {
    auto r = phyr::must(resv::try_create(dom, 1024 * P));
    for (std::uint64_t i = 0; i < 1024; i += 2)
      (void)phyr::must(r.try_link(i * P, pr(0x1'0000'0000 + i * P, P), dma_direction::to_device));
    auto moved = std::move(r);  // the moved-from one releases nothing
    CHECK_FALSE(r.reserved());
    CHECK(moved.linked_pages() == 512);
    CHECK(dom.stats().live_mappings == 1);
  }
  const auto s = dom.stats();
  CHECK(s.live_mappings == 0);
  CHECK(s.page_table.leaves() == 0);
  CHECK(s.iova.live_blocks == 0);
  CHECK(dom.trim() == s.page_table.tables);
  CHECK(dom.stats().page_table.tables == 0);
}

TEST_CASE("iova_reservation: out_of_memory at every allocation of create and link changes "
          "nothing", "[iova_reservation][alloc]") {
  phyr::fault_state fs;
  fdom dom{fault_alloc{&fs}};
  {
    bool made = false;
    for (std::uint64_t k = 1; k < 20 && !made; ++k) {
      fs.fail_at = fs.calls + k;
      auto r = fresv::try_create(dom, 4096 * P, 0, {}, fault_alloc{&fs});
      fs.fail_at = 0;
      if (r) {
        made = true;
        break;
      }
      CHECK(r.error() == errc::out_of_memory);
      dom.flush_iova_caches();  // the IOVA allocator's (empty) live-block table goes here
      CHECK(fs.live == 0);
      CHECK(dom.stats().live_mappings == 0);
    }
    REQUIRE(made);
  }
  auto r = phyr::must(fresv::try_create(dom, 4096 * P, 0, {}, fault_alloc{&fs}));
  int failures = 0;
  for (std::uint64_t i = 0; i < 4096; i += 700) {
    for (std::uint64_t k = 1;; ++k) {
      const auto live = fs.live;
      const auto pt = dom.stats().page_table;
      fs.fail_at = fs.calls + k;
      auto d = r.try_link(i * P, pr(0x8000'0000 + i * P, 3 * P), dma_direction::to_device);
      fs.fail_at = 0;
      if (d) break;
      ++failures;
      CHECK(d.error() == errc::out_of_memory);
      CHECK(dom.stats().page_table.leaves() == pt.leaves());
      dom.trim();  // tables made before the failure stay until a trim
      CHECK(fs.live == live);
      CHECK(dom.stats().page_table.tables == pt.tables);
      CHECK(dom.translate(r.addr().value() + i * P).error() == errc::not_mapped);
    }
  }
  CHECK(failures > 0);
  r.reset();
  dom.trim();
  dom.flush_iova_caches();
  CHECK(fs.live == 0);
}

TEST_CASE("iova_reservation: works over any iommu_backend (a recording back end of another "
          "source space)", "[iova_reservation]") {
  // A stand-in for another back end (VFIO's links virtual ranges; this one records calls).
  struct recording_backend {
    using source_space = phyr::cpu_phys;
    std::vector<std::pair<std::uint64_t, std::uint64_t>> links;  // iova, src
    int syncs = 0, unlinks = 0, released = 0;
    std::uint64_t next = 0x10'0000;
    phyr::result<phyr::iova_block> try_reserve_iova(std::uint64_t len,
                                                   const phyr::iova_limits&) noexcept {
      phyr::iova_block b{next, len, false};
      next += len;
      return b;
    }
    phyr::result<phyr::iova_block> try_reserve_iova_at(std::uint64_t a,
                                                      std::uint64_t len) noexcept {
      return phyr::iova_block{a, len, false};
    }
    void release_iova(const phyr::iova_block&) noexcept { ++released; }
    phyr::result<void> try_link_iova(std::uint64_t iova, phys_range src,
                                     phyr::io_perm) noexcept {
      links.emplace_back(iova, src.addr().value());
      return {};
    }
    std::uint64_t unlink_iova(std::uint64_t, std::uint64_t len) noexcept {
      ++unlinks;
      return len;
    }
    void sync_iova(std::uint64_t, std::uint64_t) noexcept { ++syncs; }
  };
  STATIC_REQUIRE(phyr::iommu_backend<recording_backend>);
  recording_backend be;
  {
    auto r = phyr::must(phyr::iova_reservation<nic0, recording_backend>::try_create(be, 4 * P));
    (void)phyr::must(r.try_link(P, pr(0xabc000, 2 * P), dma_direction::from_device));
    r.sync();
    phyr::must(r.try_unlink(P, 2 * P));
  }
  REQUIRE(be.links.size() == 1);
  CHECK(be.links[0] == std::pair<std::uint64_t, std::uint64_t>{0x10'0000 + P, 0xabc000});
  CHECK(be.syncs == 1);
  CHECK(be.unlinks == 1);
  CHECK(be.released == 1);
}

TEST_CASE("iova_reservation: concurrent link/unlink, map/unmap and translate on one domain",
          "[iova_reservation][concurrent]") {
  phyr::iommu_domain dom;
  phyr::iommu_mapper<nvme0> m{dom};
  std::atomic<bool> stop{false};
  std::atomic<int> errors{0};
  auto linker = [&](std::uint64_t phys_base) {
    auto r = phyr::must(resv::try_create(dom, 256 * P));
    for (int round = 0; round < 300; ++round) {
      for (std::uint64_t i = 0; i < 256; i += 16) {
        if (!r.try_link(i * P, pr(phys_base + i * P, 16 * P), dma_direction::to_device))
          ++errors;
      }
      r.sync();
      for (std::uint64_t i = 0; i < 256; i += 16) {
        auto t = dom.translate(r.addr().value() + i * P + 8);
        if (!t || t->value() != phys_base + i * P + 8) ++errors;
      }
      for (std::uint64_t i = 0; i < 256; i += 16)
        if (!r.try_unlink(i * P, 16 * P)) ++errors;
    }
  };
  auto mapper = [&] {
    phyr::range_list<phys_range> l;
    phyr::must(l.try_append(pr(0x9000'0000, 64 * P)));
    for (int round = 0; round < 2000; ++round) {
      auto mp = m.try_map(l, dma_direction::from_device);
      if (!mp) {
        ++errors;
        continue;
      }
      auto t = m.translate(mp->begin()->addr());
      if (!t || t->value() != 0x9000'0000) ++errors;
      // every other mapping is dropped instead of unmapped: RAII does the same work
      if (round % 2 == 0 && !m.try_unmap(std::move(*mp))) ++errors;
    }
  };
  auto reader = [&] {
    std::mt19937_64 rng(7);
    while (!stop.load()) (void)dom.translate(rng() % (std::uint64_t{1} << 40));
  };
  std::thread t1(linker, 0x1'0000'0000), t2(linker, 0x2'0000'0000), t3(mapper), t4(reader);
  t1.join();
  t2.join();
  t3.join();
  stop = true;
  t4.join();
  CHECK(errors == 0);
  const auto s = dom.stats();
  CHECK(s.live_mappings == 0);
  CHECK(s.page_table.leaves() == 0);
  CHECK(s.iova.live_blocks == 0);
}
