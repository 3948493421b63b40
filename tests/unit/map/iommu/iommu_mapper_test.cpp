#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <cstdint>
#include <numeric>
#include <phyr/map/iommu/iommu_mapper.hpp>
#include <random>
#include <thread>
#include <vector>

#include "support/phys_ranges.hpp"

namespace {
using namespace phyr_test;
using phyr::dma_direction;

struct bus_a {};
struct bus_b {};

constexpr std::uint64_t k4 = 4096;
constexpr std::uint64_t m2 = std::uint64_t{1} << 21;

using cpu_list = phyr::range_list<phys_range>;
// The fault-injection tests' allocator and domain: every allocation goes through one fault_state.
using fault_alloc = phyr::fault_injecting_allocator;
using fault_domain = phyr::basic_iommu_domain<fault_alloc>;

/// Walks the input and the mapping as two byte streams in step and checks that every page of
/// every input range (and its last byte) translates to the right CPU address.
template <class Mapper, class List, class Mapping>
void require_translates(const Mapper& m, const List& in, const Mapping& mp) {
  auto out = mp.begin();
  std::uint64_t out_off = 0;
  std::uint64_t bytes = 0;
  for (const phys_range r : in) {
    REQUIRE(out != mp.end());
    if (out_off == out->len()) {
      ++out;
      out_off = 0;
      REQUIRE(out != mp.end());
    }
    REQUIRE(out->len() - out_off >= r.len());  // an input range never straddles two entries
    const std::uint64_t dma = out->addr().value() + out_off;
    REQUIRE(dma % k4 == r.addr().value() % k4);
    for (std::uint64_t off = 0; off < r.len(); off += k4 - (off == 0 ? dma % k4 : 0)) {
      auto t = m.translate(phyr::dma_addr<typename Mapper::bus_type>{dma + off});
      REQUIRE(t.has_value());
      REQUIRE(t->value() == r.addr().value() + off);
    }
    auto t = m.translate(phyr::dma_addr<typename Mapper::bus_type>{dma + r.len() - 1});
    REQUIRE(t.has_value());
    REQUIRE(t->value() == r.last().value());
    out_off += r.len();
    bytes += r.len();
  }
  REQUIRE(bytes == mp.total_bytes());
}

/// Unmaps `mp` and checks the domain is back to nothing: no leaf, and no table after a trim.
template <class Mapper, class Mapping>
void unmap_to_empty(Mapper& m, phyr::iommu_domain& dom, Mapping&& mp) {
  phyr::must(m.try_unmap(std::move(mp)));
  CHECK(dom.stats().page_table.leaves() == 0);
  dom.trim();
  CHECK(dom.stats().page_table.tables == 0);
}

/// Empties the domain's IOVA caches and checks that nothing it allocated is still held (its
/// tables are the caller's to trim and check first).
void check_all_freed(fault_domain& dom, const phyr::fault_state& fs) {
  dom.flush_iova_caches();
  CHECK(fs.live == 0);
}

/// A page list of n distinct, shuffled (so never coalescing) frames below 2^36.
cpu_list page_list(std::mt19937_64& rng, std::size_t n, std::uint64_t first_offset,
                   std::uint64_t tail_cut) {
  std::vector<std::uint64_t> pfns(n);
  const std::uint64_t base = (rng() % (std::uint64_t{1} << 20)) * 64;
  for (std::size_t i = 0; i < n; ++i) pfns[i] = base + 2 * i;
  std::shuffle(pfns.begin(), pfns.end(), rng);
  cpu_list l;
  phyr::must(l.try_append_pages(pfns, first_offset, n * k4 - first_offset - tail_cut));
  return l;
}

/// A random list: page runs, 2 MiB runs, ragged ends, occasional unaligned interior boundaries.
cpu_list random_list(std::mt19937_64& rng) {
  cpu_list l;
  const int n = 1 + static_cast<int>(rng() % 24);
  for (int i = 0; i < n; ++i) {
    const bool huge = rng() % 6 == 0;
    const std::uint64_t unit = huge ? m2 : k4;
    const std::uint64_t a = (rng() % (std::uint64_t{1} << 38)) / unit * unit;
    std::uint64_t len = (1 + rng() % (huge ? 3 : 40)) * unit;
    std::uint64_t head = 0;
    if (rng() % 5 == 0) head = rng() % k4;
    if (rng() % 5 == 0) len -= rng() % k4;
    if (head >= len) head = 0;
    phyr::must(l.try_append(
        pr(a + head, len - head, rng() % 7 == 0 ? range_flags::pinned : range_flags::none)));
  }
  return l;
}

}  // namespace

TEST_CASE("iommu_mapper: satisfies dma_mapper for every allocator", "[iommu]") {
  STATIC_REQUIRE(phyr::dma_mapper<phyr::iommu_mapper<bus_a>>);
  STATIC_REQUIRE(phyr::dma_mapper<phyr::iommu_mapper<bus_b, phyr::fault_injecting_allocator>>);
  STATIC_REQUIRE(std::is_default_constructible_v<phyr::iommu_domain>);
  STATIC_REQUIRE(std::is_constructible_v<phyr::iommu_mapper<bus_a>, phyr::iommu_domain&>);
  STATIC_REQUIRE_FALSE(std::is_copy_constructible_v<phyr::iommu_mapping<bus_a>>);
  STATIC_REQUIRE(std::is_same_v<decltype(std::declval<phyr::iommu_mapper<bus_a>&>().translate(
                                    phyr::dma_addr<bus_a>{0})),
                                phyr::result<phys_addr>>);
}

// requires-expressions must sit in a template for an ill-formed call to be "false" rather
// than an error, hence these concepts.
template <class M, class Mp>
concept can_unmap = requires(M& m, Mp& mp) {
  m.try_unmap(std::move(mp));
};
template <class M, class Addr>
concept can_translate = requires(M& m, Addr a) {
  m.translate(a);
};
template <class M, class L>
concept can_map = requires(M& m, const L& l) {
  m.try_map(l, dma_direction::to_device);
};

TEST_CASE("iommu_mapper: a mapping of bus A cannot be unmapped or translated by bus B",
          "[iommu][static]") {
  STATIC_REQUIRE(can_unmap<phyr::iommu_mapper<bus_a>, phyr::iommu_mapping<bus_a>>);
  STATIC_REQUIRE_FALSE(can_unmap<phyr::iommu_mapper<bus_b>, phyr::iommu_mapping<bus_a>>);
  STATIC_REQUIRE(can_translate<phyr::iommu_mapper<bus_a>, phyr::dma_addr<bus_a>>);
  STATIC_REQUIRE_FALSE(can_translate<phyr::iommu_mapper<bus_b>, phyr::dma_addr<bus_a>>);
  STATIC_REQUIRE_FALSE(can_translate<phyr::iommu_mapper<bus_b>, phys_addr>);
  // Only CPU lists map: a DMA list of another bus cannot be fed back in.
  STATIC_REQUIRE(can_map<phyr::iommu_mapper<bus_b>, cpu_list>);
  STATIC_REQUIRE_FALSE(
      can_map<phyr::iommu_mapper<bus_b>, phyr::range_list<phyr::dma_range<bus_a>>>);
}

TEST_CASE(
    "iommu_domain: holds no memory until the first map, keeps its tables after the last unmap "
    "and none after trim",
    "[iommu]") {
  phyr::fault_state fs;
  fault_domain dom{fault_alloc{&fs}};
  phyr::iommu_mapper<bus_a, fault_alloc> m{dom};
  CHECK(fs.calls == 0);
  CHECK(dom.stats().page_table.tables == 0);
  CHECK(dom.config().iova_bits == 48);
  const auto l = list_of({pr(0x1234'5000, 3 * k4)});
  auto mp = phyr::must(m.try_map(l, dma_direction::to_device));
  CHECK(dom.stats().page_table.tables == 4);
  CHECK(dom.stats().maps == 1);
  CHECK(mp.begin()->addr().value() >= 4096);  // IOVA page 0 is never handed out
  CHECK(fs.live > 0);
  phyr::must(m.try_unmap(std::move(mp)));
  CHECK(dom.stats().page_table.leaves() == 0);
  CHECK(dom.stats().page_table.tables == 4);  // kept for the next map there
  CHECK(dom.stats().unmaps == 1);
  auto again = phyr::must(m.try_map(l, dma_direction::to_device));  // same block, same tables
  CHECK(dom.stats().page_table.tables_allocated == 4);
  phyr::must(m.try_unmap(std::move(again)));
  CHECK(dom.trim() == 4);
  CHECK(dom.stats().page_table.tables == 0);
  check_all_freed(dom, fs);
}

TEST_CASE("iommu_mapper: a page list maps to one entry that keeps the first-page offset",
          "[iommu]") {
  std::mt19937_64 rng(42);
  phyr::iommu_domain dom;
  phyr::iommu_mapper<bus_a> m{dom};
  const auto l = page_list(rng, 4096 + 17, 0x234, 0x100);  // 16 MiB of scattered pages
  REQUIRE(l.size() > 4000);
  auto mp = phyr::must(m.try_map(l, dma_direction::bidirectional));
  CHECK(mp.size() == 1);
  CHECK(mp.iova_ranges() == 1);
  CHECK(mp.iova_len() >= (4096 + 17) * phyr::page_size);
  CHECK(mp.iova_addr().value() % m2 == 0);
  // Phased: the first page sits at its physical offset modulo 2 MiB.
  CHECK((mp.begin()->addr().value() - l.begin()->addr().value()) % m2 == 0);
  CHECK(mp.total_bytes() == l.total_bytes());
  CHECK(mp.begin()->addr().value() % k4 == 0x234);
  CHECK(mp.mapped());
  CHECK(dom.stats().page_table.leaves_4k == 4096 + 17);
  require_translates(m, l, mp);
  const auto dma = mp.begin()->addr();
  phyr::must(m.try_unmap(std::move(mp)));
  CHECK_FALSE(mp.mapped());
  CHECK(m.translate(dma).error() == errc::not_mapped);
  CHECK(dom.stats().page_table.leaves() == 0);
}

TEST_CASE("iommu_mapper: each unaligned interior boundary costs exactly one more entry",
          "[iommu]") {
  phyr::iommu_domain dom;
  phyr::iommu_mapper<bus_a> m{dom};
  const auto l = list_of({
      pr(0x10000, 0x2000),   // ends aligned
      pr(0x50100, 0x1f00),   // starts unaligned: new entry; ends aligned
      pr(0x90000, 0x1000),   // aligned on both sides: same entry
      pr(0xa0000, 0x800),    // ends unaligned
      pr(0xc0000, 0x1000),   // new entry
      pr(0xd0000, 0x10000),  // same entry
  });
  auto mp = phyr::must(m.try_map(l, dma_direction::from_device));
  CHECK(mp.size() == 3);
  CHECK(mp.iova_ranges() == 1);  // one IOVA block, three groups in it
  CHECK(mp.iova_len() == (2 + 4 + 17) * phyr::page_size);
  std::vector<std::uint64_t> lens;
  for (const auto& e : mp) lens.push_back(e.len());
  CHECK(lens == std::vector<std::uint64_t>{0x2000, 0x1f00 + 0x1000 + 0x800, 0x11000});
  CHECK(std::next(mp.begin())->addr().value() % k4 == 0x100);
  require_translates(m, l, mp);
  CHECK(m.lookup(mp.begin()->addr())->perm == phyr::io_perm::write);
  unmap_to_empty(m, dom, std::move(mp));
  CHECK(dom.stats().iova.live_blocks == 0);
}

TEST_CASE("iommu_mapper: physically adjacent ranges share an IOVA page and keep their flags",
          "[iommu]") {
  phyr::iommu_domain dom;
  phyr::iommu_mapper<bus_a> m{dom};
  const auto l = list_of({
      pr(0x10000, 0x800, range_flags::pinned),
      pr(0x10800, 0x1800),  // same page, different flags: the list kept them apart
      pr(0x40000, 0x1000, range_flags::driver0),
  });
  REQUIRE(l.size() == 3);
  auto mp = phyr::must(m.try_map(l, dma_direction::to_device));
  CHECK(mp.iova_ranges() == 1);
  CHECK(mp.iova_len() == 3 * phyr::page_size);
  REQUIRE(mp.size() == 3);
  auto it = mp.begin();
  const auto e0 = *it++;
  const auto e1 = *it++;
  const auto e2 = *it++;
  CHECK(e0.flags() == range_flags::pinned);
  CHECK(e1.flags() == range_flags::none);
  CHECK(e2.flags() == range_flags::driver0);
  CHECK(e0.end() == e1.addr());
  CHECK(e1.end() == e2.addr());
  CHECK(e0.addr().value() % k4 == 0);
  CHECK(dom.stats().page_table.leaves_4k == 3);  // the shared page mapped once
  require_translates(m, l, mp);
  CHECK(m.lookup(e0.addr())->perm == phyr::io_perm::read);
  unmap_to_empty(m, dom, std::move(mp));
}

TEST_CASE("iommu_mapper: 2 MiB runs map as one entry built from 2 MiB leaves", "[iommu]") {
  std::mt19937_64 rng(7);
  phyr::iommu_domain dom;
  phyr::iommu_mapper<bus_a> m{dom};
  std::vector<std::uint64_t> runs(64);
  std::iota(runs.begin(), runs.end(), 100);
  std::shuffle(runs.begin(), runs.end(), rng);
  cpu_list l;
  for (std::uint64_t r : runs) phyr::must(l.try_append(pr(r * 2 * m2, m2)));
  REQUIRE(l.size() == 64);
  auto mp = phyr::must(m.try_map(l, dma_direction::bidirectional));
  CHECK(mp.size() == 1);
  CHECK(mp.begin()->addr().value() % m2 == 0);
  const auto st = dom.stats().page_table;
  CHECK(st.leaves_2m == 64);
  CHECK(st.leaves_4k == 0);
  CHECK(st.tables == 3);  // root, PDPT, PD
  require_translates(m, l, mp);
  CHECK(m.lookup(mp.begin()->addr())->leaf_size == m2);
  unmap_to_empty(m, dom, std::move(mp));
}

TEST_CASE("iommu_mapper: a buffer starting mid-hugepage still gets 2 MiB leaves", "[iommu]") {
  phyr::iommu_domain dom;
  phyr::iommu_mapper<bus_a> m{dom};
  const auto l = list_of({
      pr(100 * m2 + m2 - 3 * k4, 3 * k4),                // the last 3 pages of a hugepage
      pr(300 * m2, m2),                                  // then aligned 2 MiB runs
      pr(200 * m2, 2 * m2), pr(10 * m2 + 0x100, 0x200),  // a ragged chunk: its own group
      pr(700 * m2, m2),  // a later group that starts with a 2 MiB run
  });
  auto mp = phyr::must(m.try_map(l, dma_direction::to_device));
  CHECK(mp.size() == 3);
  const auto st = dom.stats().page_table;
  CHECK(st.leaves_2m == 4);
  CHECK(st.leaves_4k == 3 + 1);
  require_translates(m, l, mp);
  CHECK(dom.with_page_table([](const auto& pt) { return pt.check_invariants(); }));
  unmap_to_empty(m, dom, std::move(mp));
}

TEST_CASE("iommu_mapper: views and slices map like lists", "[iommu]") {
  phyr::iommu_domain dom;
  phyr::iommu_mapper<bus_a> m{dom};
  const auto l = list_of({pr(0x10000, 0x3000), pr(0x80000, 0x2000), pr(0x20000, 0x1000)});
  auto v = phyr::must(l.try_slice(0x1800, 0x3000));  // 0x11800.. + all of the second + 0x800
  auto mp = phyr::must(m.try_map(v, dma_direction::to_device));
  CHECK(mp.size() == 1);
  CHECK(mp.total_bytes() == 0x3000);
  CHECK(mp.begin()->addr().value() % k4 == 0x800);
  require_translates(m, v, mp);
  phyr::must(m.try_unmap(std::move(mp)));
}

TEST_CASE("iommu_mapper: bad input is rejected and changes nothing", "[iommu]") {
  phyr::iommu_domain dom;
  phyr::iommu_mapper<bus_a> m{dom};
  const cpu_list empty;
  CHECK(m.try_map(empty, dma_direction::to_device).error() == errc::invalid_argument);
  const auto l = list_of({pr(0x1000, 0x1000)});
  CHECK(m.try_map(l, static_cast<dma_direction>(7)).error() == errc::invalid_argument);
  // A later group above the 52-bit physical reach: the first group is rolled back.
  const auto high = list_of({pr(0x1000, 0x1800), pr(std::uint64_t{1} << 52, 0x1000)});
  CHECK(m.try_map(high, dma_direction::to_device).error() == errc::not_addressable);
  const auto high2 = list_of({pr(0x1000, 0x1000), pr((std::uint64_t{1} << 52) - 0x1000, 0x2000)});
  CHECK(m.try_map(high2, dma_direction::to_device).error() == errc::not_addressable);
  const auto st = dom.stats();
  CHECK(st.page_table.tables == 0);
  CHECK(st.iova.live_blocks == 0);
  CHECK(st.failed_maps == 2);
  CHECK(st.maps == 0);
}

TEST_CASE("iommu_mapper: unmap rejects a foreign or already-unmapped mapping and leaves it intact",
          "[iommu]") {
  phyr::iommu_domain d1;
  phyr::iommu_domain d2;
  phyr::iommu_mapper<bus_a> m1{d1};
  phyr::iommu_mapper<bus_a> m1_again{d1};  // same domain, another mapper
  phyr::iommu_mapper<bus_a> other{d2};
  const auto l = list_of({pr(0x7000'0000, 0x4000)});
  auto mp = phyr::must(m1.try_map(l, dma_direction::to_device));
  const auto dma = mp.begin()->addr();
  CHECK(other.try_unmap(std::move(mp)).error() == errc::foreign_mapping);
  CHECK(m1_again.try_unmap(std::move(mp)).error() == errc::foreign_mapping);
  CHECK(mp.mapped());
  CHECK(mp.size() == 1);
  CHECK(m1.translate(dma)->value() == 0x7000'0000);
  CHECK(d1.stats().iova.live_blocks == 1);

  auto moved = std::move(mp);
  CHECK(m1.try_unmap(std::move(mp)).error() == errc::foreign_mapping);  // moved-from
  REQUIRE(m1.try_unmap(std::move(moved)).has_value());
  CHECK(m1.try_unmap(std::move(moved)).error() == errc::foreign_mapping);  // already unmapped
  CHECK(m1.translate(dma).error() == errc::not_mapped);
  phyr::iommu_mapping<bus_a> none;
  CHECK(m1.try_unmap(std::move(none)).error() == errc::foreign_mapping);
  CHECK(d1.stats().unmaps == 1);
  CHECK(d1.stats().iova.live_blocks == 0);
}

TEST_CASE("iommu_mapper: 1,000 mappings dropped without unmap give back every IOVA block and "
          "page table", "[iommu][lifetime]") {
  phyr::iommu_domain dom;
  std::vector<phyr::dma_addr<bus_a>> starts;
  {
    std::vector<phyr::iommu_mapping<bus_a>> kept;
    {
      phyr::iommu_mapper<bus_a> m{dom};
      for (std::uint64_t i = 0; i < 1000; ++i) {
        auto mp = phyr::must(m.try_map(list_of({pr(0x1'0000'0000 + i * 0x3000, 0x2000)}),
                                       dma_direction::to_device));
        starts.push_back(mp.begin()->addr());
        if (i % 2 == 0) kept.push_back(std::move(mp));  // the rest die right here
      }
      CHECK(dom.stats().live_mappings == 500);
      CHECK(dom.stats().unmaps == 500);
    }  // the mapper goes first: its mappings point to the domain, not to it
    CHECK(dom.stats().live_mappings == 500);
    CHECK(dom.translate(starts[0].value())->value() == 0x1'0000'0000);
    CHECK(dom.translate(starts[999].value()).error() == errc::not_mapped);  // dropped last
  }
  const auto s = dom.stats();
  CHECK(s.live_mappings == 0);
  CHECK(s.maps == 1000);
  CHECK(s.unmaps == 1000);
  CHECK(s.iova.live_blocks == 0);
  CHECK(s.page_table.leaves() == 0);
  CHECK(dom.trim() == s.page_table.tables);  // the emptied tables come back on trim
  CHECK(dom.stats().page_table.tables == 0);
  for (auto a : starts) CHECK(dom.translate(a.value()).error() == errc::not_mapped);
}

TEST_CASE("iommu_mapper: move-assigning over a live mapping unmaps the old one", "[iommu][lifetime]") {
  phyr::iommu_domain dom;
  phyr::iommu_mapper<bus_a> m{dom};
  const auto l1 = list_of({pr(0x7000'0000, 0x4000)});
  const auto l2 = list_of({pr(0x9000'0000, 0x4000)});
  auto a = phyr::must(m.try_map(l1, dma_direction::to_device));
  auto b = phyr::must(m.try_map(l2, dma_direction::to_device));
  const auto old = a.begin()->addr();
  a = std::move(b);
  CHECK(dom.translate(old.value()).error() == errc::not_mapped);
  CHECK(dom.translate(a.begin()->addr().value())->value() == 0x9000'0000);
  CHECK(dom.stats().live_mappings == 1);
  CHECK(!b.mapped());
  CHECK(m.owns(a));
  CHECK(!m.owns(b));
}

TEST_CASE("iommu_mapper: translate() matches every page of random maps", "[iommu][property]") {
  std::mt19937_64 rng(0xd0e5'1e55);
  phyr::fault_state fs;
  {
    fault_domain dom{fault_alloc{&fs}};
    phyr::iommu_mapper<bus_a, fault_alloc> m{dom};
    struct live {
      cpu_list in;
      phyr::iommu_mapping<bus_a, fault_alloc> mp;
    };
    std::vector<live> maps;
    std::uint64_t entries = 0;
    std::uint64_t inputs = 0;
    for (int round = 0; round < 150; ++round) {
      if (maps.empty() || rng() % 3 != 0) {
        auto in = random_list(rng);
        auto mp = phyr::must(m.try_map(in, dma_direction::bidirectional));
        require_translates(m, in, mp);
        entries += mp.size();
        inputs += in.size();
        maps.push_back({std::move(in), std::move(mp)});
      } else {
        const std::size_t i = rng() % maps.size();
        std::vector<phyr::dma_addr<bus_a>> starts;
        for (const auto& e : maps[i].mp) starts.push_back(e.addr());
        phyr::must(m.try_unmap(std::move(maps[i].mp)));
        for (auto a : starts) CHECK(m.translate(a).error() == errc::not_mapped);
        maps.erase(maps.begin() + static_cast<long>(i));
      }
      REQUIRE(dom.with_page_table([](const auto& pt) { return pt.check_invariants(); }));
    }
    CHECK(entries < inputs);  // groups really formed
    for (auto& x : maps) require_translates(m, x.in, x.mp);
    for (auto& x : maps) phyr::must(m.try_unmap(std::move(x.mp)));
    const auto st = dom.stats();
    CHECK(st.page_table.leaves() == 0);
    CHECK(st.iova.live_blocks == 0);
    maps.clear();
    dom.trim();
    CHECK(dom.stats().page_table.tables == 0);
    check_all_freed(dom, fs);
  }
  CHECK(fs.live == 0);
}

TEST_CASE(
    "iommu_mapper: out_of_memory at every allocation inside map rolls back completely (its "
    "empty tables at the next trim)",
    "[iommu][alloc]") {
  std::mt19937_64 rng(99);
  phyr::fault_state fs;
  fault_domain dom{fault_alloc{&fs}};
  phyr::iommu_mapper<bus_a, fault_alloc> m{dom};
  const auto keep_in = list_of({pr(0x3000'0000, 5 * k4)});
  auto keep = phyr::must(m.try_map(keep_in, dma_direction::to_device));

  // Many groups (unaligned boundaries: one IOVA block and one entry each, 2+ list segments),
  // a page run crossing 2 MiB boundaries, and 2 MiB runs.
  cpu_list in;
  for (int i = 0; i < 300; ++i)
    phyr::must(in.try_append(pr(0x1'0000'0000 + static_cast<std::uint64_t>(i) * 0x10000 + 0x80,
                                0x1000 + (i % 3 == 0 ? 0x3000 : 0))));
  const auto pages = page_list(rng, 1100, 0, 0);
  for (const phys_range r : pages) phyr::must(in.try_append(r));
  for (int i = 0; i < 3; ++i)
    phyr::must(in.try_append(pr((40 + 2 * static_cast<std::uint64_t>(i)) * m2, m2)));

  const auto before = dom.stats();
  bool done = false;
  std::uint64_t failures = 0;
  for (std::uint64_t k = 1; k < 2000 && !done; ++k) {
    const auto live = fs.live;
    fs.fail_at = fs.calls + k;
    auto r = m.try_map(in, dma_direction::to_device);
    fs.fail_at = 0;
    if (r) {
      done = true;
      require_translates(m, in, *r);
      CHECK(r->size() == 300 + 1);  // 300 unaligned groups; the pages and runs join the last
      phyr::must(m.try_unmap(std::move(*r)));
      break;
    }
    ++failures;
    REQUIRE(r.error() == errc::out_of_memory);
    REQUIRE(dom.stats().page_table.leaves() == before.page_table.leaves());
    dom.trim();  // the tables the failed map created: kept until a trim, then all gone
    REQUIRE(fs.live == live);
    const auto now = dom.stats();
    REQUIRE(now.page_table.tables == before.page_table.tables);
    REQUIRE(now.page_table.leaves() == before.page_table.leaves());
    REQUIRE(now.iova.live_blocks == before.iova.live_blocks);
    REQUIRE(now.iova.free_extents == before.iova.free_extents);
    REQUIRE(dom.with_page_table([](const auto& pt) { return pt.check_invariants(); }));
  }
  REQUIRE(done);
  CHECK(failures >= 5);
  require_translates(m, keep_in, keep);
  phyr::must(m.try_unmap(std::move(keep)));
  dom.trim();
  check_all_freed(dom, fs);
}

TEST_CASE("iommu_mapper: out_of_memory with the IOVA served from the cache rolls back exactly",
          "[iommu][alloc]") {
  phyr::fault_state fs;
  fault_domain dom{fault_alloc{&fs}};
  phyr::iommu_mapper<bus_a, fault_alloc> m{dom};
  // Three ragged chunks: three groups and entries (a list segment), 3 pages of IOVA (cached).
  const auto in =
      list_of({pr(0x5000'0100, 0x100), pr(0x6000'0200, 0x100), pr(0x7000'0300, 0x100)});
  const auto warm_in = list_of({pr(0x9000'0000, 4 * k4)});
  auto keep = phyr::must(m.try_map(list_of({pr(0x3000'0000, k4)}), dma_direction::to_device));
  phyr::must(m.try_unmap(phyr::must(m.try_map(warm_in, dma_direction::to_device))));
  REQUIRE(dom.stats().iova.cached_blocks == 1);
  bool done = false;
  for (std::uint64_t k = 1; k < 50 && !done; ++k) {
    const auto live = fs.live;
    const auto before = dom.stats();
    fs.fail_at = fs.calls + k;
    auto r = m.try_map(in, dma_direction::to_device);
    fs.fail_at = 0;
    if (r) {
      done = true;
      CHECK(r->size() == 3);
      require_translates(m, in, *r);
      phyr::must(m.try_unmap(std::move(*r)));
      break;
    }
    REQUIRE(r.error() == errc::out_of_memory);
    REQUIRE(fs.live == live);
    REQUIRE(dom.stats().iova.cached_blocks == before.iova.cached_blocks);
    REQUIRE(dom.stats().page_table == before.page_table);
  }
  REQUIRE(done);
  CHECK(dom.stats().iova.cache_hits >= 1);
  phyr::must(m.try_unmap(std::move(keep)));
  dom.trim();
  check_all_freed(dom, fs);
}

TEST_CASE("iommu_mapper: IOVA exhaustion mid-map rolls back completely", "[iommu]") {
  // 2^20 bytes of IOVA: pages 1..255.
  phyr::iommu_domain dom{phyr::iommu_domain_config{.iova_bits = 20}};
  phyr::iommu_mapper<bus_a> m{dom};
  const auto a = list_of({pr(0x100'0000, 100 * k4)});
  auto ma = phyr::must(m.try_map(a, dma_direction::to_device));  // 128-aligned: pages 128..227
  CHECK(ma.begin()->addr().value() == 128 * k4);
  // Two groups, 30 + 60 pages: one 90-page block, 128-aligned: no hole left.
  const auto b = list_of({pr(0x200'0000, 30 * k4 - 1), pr(0x300'0000, 60 * k4)});
  const auto before = dom.stats();
  CHECK(m.try_map(b, dma_direction::to_device).error() == errc::exhausted);
  const auto after = dom.stats();
  CHECK(after.page_table == before.page_table);
  CHECK(after.iova.live_blocks == before.iova.live_blocks);
  CHECK(after.iova.free_pages == before.iova.free_pages);
  CHECK(m.translate(phyr::dma_addr<bus_a>{64 * k4}).error() == errc::not_mapped);
  // More than the whole space in one group.
  const auto huge = list_of({pr(0, 256 * k4)});
  CHECK(m.try_map(huge, dma_direction::to_device).error() == errc::exhausted);
  phyr::must(m.try_unmap(std::move(ma)));
  auto mb = phyr::must(m.try_map(b, dma_direction::to_device));
  CHECK(mb.size() == 2);
  require_translates(m, b, mb);
  unmap_to_empty(m, dom, std::move(mb));
}

TEST_CASE("iommu_mapper: concurrent map and unmap from several threads", "[iommu][concurrent]") {
  phyr::iommu_domain dom;
  std::atomic<int> bad{0};
  auto worker = [&](unsigned seed) {
    std::mt19937_64 rng(seed);
    phyr::iommu_mapper<bus_a> m{dom};
    struct live {
      cpu_list in;
      phyr::iommu_mapping<bus_a> mp;
    };
    std::vector<live> maps;
    for (int round = 0; round < 120; ++round) {
      if (maps.size() < 6 && rng() % 3 != 0) {
        auto in = random_list(rng);
        auto mp = m.try_map(in, dma_direction::bidirectional);
        if (!mp) {
          ++bad;
          continue;
        }
        maps.push_back({std::move(in), std::move(*mp)});
      } else if (!maps.empty()) {
        const std::size_t i = rng() % maps.size();
        // Still ours: the first and last byte of each input range translate correctly.
        auto out = maps[i].mp.begin();
        std::uint64_t off = 0;
        for (const phys_range r : maps[i].in) {
          if (off == out->len()) {
            ++out;
            off = 0;
          }
          const std::uint64_t d = out->addr().value() + off;
          auto t0 = m.translate(phyr::dma_addr<bus_a>{d});
          auto t1 = m.translate(phyr::dma_addr<bus_a>{d + r.len() - 1});
          if (!t0 || !t1 || t0->value() != r.addr().value() || t1->value() != r.last().value())
            ++bad;
          off += r.len();
        }
        if (!m.try_unmap(std::move(maps[i].mp))) ++bad;
        maps.erase(maps.begin() + static_cast<long>(i));
      }
    }
    for (auto& x : maps)
      if (!m.try_unmap(std::move(x.mp))) ++bad;
  };
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < 3; ++t) threads.emplace_back(worker, 500 + t);
  for (auto& t : threads) t.join();
  CHECK(bad.load() == 0);
  CHECK(dom.with_page_table([](const auto& pt) { return pt.check_invariants(); }));
  const auto st = dom.stats();
  CHECK(st.page_table.leaves() == 0);
  CHECK(st.iova.live_blocks == 0);
  CHECK(st.maps == st.unmaps);
  dom.trim();
  CHECK(dom.stats().page_table.tables == 0);
}

TEST_CASE("iommu_domain: a domain shared by two devices maps inside the intersection of their "
          "limits", "[iommu][limits]") {
  phyr::iommu_domain dom;
  phyr::iova_limits nic;  // 32-bit device, MSI window 0xfee00000.. reserved
  nic.max_addr = 0xffff'ffff;
  REQUIRE(nic.try_allow(0x1000, 0xfee0'0000 - 0x1000));
  phyr::iova_limits gpu;  // wants IOVA at or above 256 MiB, never crossing 1 MiB lines
  gpu.boundary = std::uint64_t{1} << 20;
  REQUIRE(gpu.try_allow(0x1000'0000, std::uint64_t{1} << 40));
  REQUIRE(dom.try_attach(nic));
  REQUIRE(dom.try_attach(gpu));
  CHECK(dom.stats().devices == 2);
  phyr::iova_limits far;  // a device that can only reach what neither allows
  REQUIRE(far.try_allow(std::uint64_t{1} << 41, 0x1000));
  CHECK(dom.try_attach(far).error() == errc::not_addressable);
  CHECK(dom.stats().devices == 2);  // refused: the domain's limits are unchanged
  phyr::iommu_mapper<bus_a> m{dom};
  std::vector<phyr::iommu_mapping<bus_a>> keep;
  for (int i = 0; i < 50; ++i) {
    auto mp = phyr::must(m.try_map(list_of({pr(0x8'0000'0000 + i * 0x10'0000, 0x3'0000)}),
                                   dma_direction::to_device));
    const auto a = mp.iova_addr().value();
    CHECK(a >= 0x1000'0000);
    CHECK(a + mp.iova_len() - 1 <= 0xfedf'ffff);
    CHECK(a >> 20 == (a + mp.iova_len() - 1) >> 20);  // no 1 MiB line crossed
    keep.push_back(std::move(mp));
  }
}

TEST_CASE("iommu_mapper: one mapping serves two devices of one domain, each with its own "
          "address type", "[iommu][share]") {
  phyr::iommu_domain dom;
  phyr::iommu_domain other;
  phyr::iommu_mapper<bus_a> ma{dom};
  phyr::iommu_mapper<bus_b> mb{dom};
  phyr::iommu_mapper<bus_b> mb_elsewhere{other};
  const auto l = list_of({pr(0x7000'0000, 0x4000), pr(0x9000'0000, 0x2000)});
  const auto mp = phyr::must(ma.try_map(l, dma_direction::to_device));
  auto view = phyr::must(mb.try_share(mp));
  STATIC_REQUIRE(std::is_same_v<decltype(*view.begin()), phyr::dma_range<bus_b>>);
  STATIC_REQUIRE(phyr::dma_mapping<decltype(view), phyr::dma_space<bus_b>>);
  CHECK(view.size() == mp.size());
  auto a = mp.begin();
  for (const phyr::dma_range<bus_b> r : view) {
    CHECK(r.addr().value() == a->addr().value());
    CHECK(mb.translate(r.addr())->value() == ma.translate(a->addr())->value());
    ++a;
  }
  CHECK(mb_elsewhere.try_share(mp).error() == errc::foreign_mapping);  // another domain
  phyr::iommu_mapping<bus_a> none;
  CHECK(mb.try_share(none).error() == errc::foreign_mapping);
}

TEST_CASE("iommu_mapper: a domain with guard pages keeps a free page between mappings",
          "[iommu][guard]") {
  phyr::iommu_domain_config c;
  c.guard = phyr::iova_guard::page;
  phyr::iommu_domain dom{c};
  phyr::iommu_mapper<bus_a> m{dom};
  auto a = phyr::must(m.try_map(list_of({pr(0x7000'0000, k4)}), dma_direction::to_device));
  auto b = phyr::must(m.try_map(list_of({pr(0x7100'0000, k4)}), dma_direction::to_device));
  CHECK(a.iova_addr().value() == 0x2000);  // FreeBSD's placement: base page, guard, block
  CHECK(b.iova_addr().value() == 0x4000);
  CHECK(m.translate(phyr::dma_addr<bus_a>{0x3000}).error() == errc::not_mapped);  // the guard
}
