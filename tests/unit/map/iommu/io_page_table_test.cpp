#include <array>
#include <catch2/catch.hpp>
#include <cstdint>
#include <map>
#include <phyr/map/iommu/io_page_table.hpp>
#include <random>
#include <vector>

namespace {

using phyr::errc;
using phyr::io_perm;
using phyr::phys_addr;

constexpr std::uint64_t k4 = 4096;
constexpr std::uint64_t m2 = std::uint64_t{1} << 21;
constexpr std::uint64_t g1 = std::uint64_t{1} << 30;

template <class PT>
void require_maps(const PT& pt, std::uint64_t iova, std::uint64_t phys, std::uint64_t len) {
  for (std::uint64_t off = 0; off < len; off += k4) {
    auto r = pt.translate(iova + off + (off / k4) % k4);
    REQUIRE(r.has_value());
    REQUIRE(r->value() == phys + off + (off / k4) % k4);
  }
}

}  // namespace

TEST_CASE("io_page_table: an empty table holds no memory and translates nothing",
          "[io_page_table]") {
  phyr::io_page_table<> pt;
  CHECK(pt.empty());
  CHECK(pt.stats() == phyr::io_page_table_stats{});
  CHECK(pt.translate(0).error() == errc::not_mapped);
  CHECK(pt.translate(std::uint64_t{1} << 48).error() == errc::not_mapped);
  CHECK(pt.unmap(0, g1) == 0);
}

TEST_CASE("io_page_table: 4 KiB pages translate at every byte offset and carry permissions",
          "[io_page_table]") {
  phyr::io_page_table<> pt;
  REQUIRE(pt.try_map(0x10000, phys_addr{0x7654'3000}, 3 * k4, io_perm::read).has_value());
  CHECK(pt.stats().leaves_4k == 3);
  CHECK(pt.stats().tables == 4);  // root, PDPT, PD, PT
  require_maps(pt, 0x10000, 0x7654'3000, 3 * k4);
  auto t = pt.lookup(0x10fff);
  REQUIRE(t.has_value());
  CHECK(t->phys.value() == 0x7654'3fff);
  CHECK(t->leaf_size == k4);
  CHECK(t->perm == io_perm::read);
  CHECK(pt.translate(0x13000).error() == errc::not_mapped);
  CHECK(pt.translate(0xf000).error() == errc::not_mapped);

  REQUIRE(pt.try_map(0x20000, phys_addr{0x1000}, k4, io_perm::write).has_value());
  CHECK(pt.lookup(0x20000)->perm == io_perm::write);
  REQUIRE(pt.try_map(0x30000, phys_addr{0x2000}, k4, io_perm::read_write).has_value());
  CHECK(pt.lookup(0x30000)->perm == io_perm::read_write);
}

TEST_CASE("io_page_table: 1 GiB and 2 MiB leaves are used whenever iova and phys align",
          "[io_page_table]") {
  phyr::io_page_table<> pt;
  SECTION("one 1 GiB leaf") {
    REQUIRE(pt.try_map(g1, phys_addr{3 * g1}, g1, io_perm::read_write).has_value());
    CHECK(pt.stats().leaves_1g == 1);
    CHECK(pt.stats().leaves() == 1);
    CHECK(pt.stats().tables == 2);  // root + PDPT
    CHECK(pt.lookup(g1 + 12345)->leaf_size == g1);
    CHECK(pt.translate(g1 + 12345)->value() == 3 * g1 + 12345);
  }
  SECTION("2 MiB leaves when phys is only 2 MiB aligned") {
    REQUIRE(pt.try_map(g1, phys_addr{3 * g1 + m2}, g1, io_perm::read).has_value());
    CHECK(pt.stats().leaves_2m == 512);
    CHECK(pt.stats().leaves() == 512);
    CHECK(pt.stats().tables == 3);  // root + PDPT + PD
    require_maps(pt, g1, 3 * g1 + m2, 8 * m2);
  }
  SECTION("the largest leaf at every step of a misaligned start") {
    // 8 KiB to the next 2 MiB boundary, one 2 MiB leaf, then 16 KiB.
    const std::uint64_t iova = 5 * m2 - 2 * k4;
    const std::uint64_t phys = 9 * m2 - 2 * k4;
    REQUIRE(pt.try_map(iova, phys_addr{phys}, m2 + 6 * k4, io_perm::read).has_value());
    CHECK(pt.stats().leaves_4k == 6);
    CHECK(pt.stats().leaves_2m == 1);
    require_maps(pt, iova, phys, m2 + 6 * k4);
    CHECK(pt.stats().mapped_bytes() == m2 + 6 * k4);
  }
  SECTION("no large leaf when iova and phys disagree modulo 2 MiB") {
    REQUIRE(pt.try_map(4 * m2, phys_addr{4 * m2 + k4}, 2 * m2, io_perm::read).has_value());
    CHECK(pt.stats().leaves_4k == 1024);
    CHECK(pt.stats().leaves_2m == 0);
  }
  const std::uint64_t mapped = pt.stats().mapped_bytes();
  CHECK(pt.unmap(0, std::uint64_t{1} << 48) == mapped);
  CHECK(pt.stats().leaves() == 0);
  CHECK(pt.trim() > 0);
  CHECK(pt.empty());
}

TEST_CASE("io_page_table: unmap keeps emptied tables for reuse and trim frees them, the root too",
          "[io_page_table]") {
  phyr::io_page_table<> pt;
  REQUIRE(pt.try_map(0, phys_addr{0}, 4 * m2 + 3 * k4, io_perm::read).has_value());
  REQUIRE(pt.try_map(5 * g1 + k4, phys_addr{g1}, k4, io_perm::read).has_value());
  const auto tables = pt.stats().tables;
  CHECK(pt.unmap(5 * g1, m2) == k4);
  CHECK(pt.stats().tables == tables);  // kept, empty: the next map there allocates nothing
  CHECK(pt.check_invariants());
  CHECK(!pt.check_invariants(/*allow_empty=*/false));
  const auto allocated = pt.stats().tables_allocated;
  REQUIRE(pt.try_map(5 * g1 + 7 * k4, phys_addr{g1}, k4, io_perm::read).has_value());
  CHECK(pt.stats().tables_allocated == allocated);
  CHECK(pt.unmap(5 * g1, m2) == k4);
  CHECK(pt.trim() == 2);  // the PT and PD of the lone page
  CHECK(pt.stats().tables == tables - 2);
  CHECK(pt.check_invariants(/*allow_empty=*/false));
  CHECK(pt.unmap(0, k4) == 0);  // inside a 2 MiB leaf: left mapped
  CHECK(pt.check_invariants());
  CHECK(pt.translate(0x800).has_value());
  CHECK(pt.unmap(0, 4 * m2) == 4 * m2);
  CHECK(pt.stats().leaves_4k == 3);
  CHECK(pt.unmap(4 * m2, 3 * k4) == 3 * k4);
  CHECK(!pt.empty());
  CHECK(pt.trim() == tables - 2);
  CHECK(pt.empty());
  CHECK(pt.stats().tables == 0);
  CHECK(pt.stats().leaves() == 0);
  CHECK(pt.trim() == 0);
}

TEST_CASE(
    "io_page_table: mapping over an existing translation reports overlaps and changes "
    "nothing",
    "[io_page_table]") {
  phyr::fault_state fs;
  phyr::io_page_table<phyr::fault_injecting_allocator> pt{phyr::fault_injecting_allocator{&fs}};
  REQUIRE(pt.try_map(m2 + 10 * k4, phys_addr{0x100000}, k4, io_perm::read).has_value());
  REQUIRE(pt.try_map(4 * m2, phys_addr{0}, m2, io_perm::read).has_value());
  const auto before = pt.stats();
  const auto live = fs.live;
  // Ends on the mapped page, starts far before it (new tables would be needed on the way).
  CHECK(pt.try_map(0, phys_addr{g1}, m2 + 11 * k4, io_perm::read).error() == errc::overlaps);
  // Runs into a 2 MiB leaf from 4 KiB pages.
  CHECK(pt.try_map(3 * m2 + 4 * k4, phys_addr{g1}, m2, io_perm::read).error() == errc::overlaps);
  // A 2 MiB leaf over a table of 4 KiB leaves, and a 1 GiB leaf over both.
  CHECK(pt.try_map(m2, phys_addr{g1}, m2, io_perm::read).error() == errc::overlaps);
  CHECK(pt.try_map(0, phys_addr{g1}, g1, io_perm::read).error() == errc::overlaps);
  CHECK(pt.check_invariants());
  CHECK(pt.stats().leaves_4k == before.leaves_4k);
  CHECK(pt.stats().leaves_2m == before.leaves_2m);
  pt.trim();  // the tables the failed maps created (nothing else is mapped under them)
  CHECK(pt.check_invariants(/*allow_empty=*/false));
  CHECK(pt.stats().tables == before.tables);
  CHECK(fs.live == live);
  CHECK(pt.translate(0).error() == errc::not_mapped);
  CHECK(pt.translate(m2 + 10 * k4)->value() == 0x100000);
}

TEST_CASE("io_page_table: bad arguments are rejected with a clear errc", "[io_page_table]") {
  phyr::io_page_table<> pt;
  CHECK(pt.try_map(0, phys_addr{0}, 0, io_perm::read).error() == errc::invalid_argument);
  CHECK(pt.try_map(0, phys_addr{0}, k4, io_perm::none).error() == errc::invalid_argument);
  CHECK(pt.try_map(1, phys_addr{0}, k4, io_perm::read).error() == errc::misaligned);
  CHECK(pt.try_map(0, phys_addr{1}, k4, io_perm::read).error() == errc::misaligned);
  CHECK(pt.try_map(0, phys_addr{0}, 100, io_perm::read).error() == errc::misaligned);
  CHECK(pt.try_map(std::uint64_t{1} << 48, phys_addr{0}, k4, io_perm::read).error() ==
        errc::out_of_range);
  CHECK(pt.try_map((std::uint64_t{1} << 48) - k4, phys_addr{0}, 2 * k4, io_perm::read).error() ==
        errc::out_of_range);
  CHECK(pt.try_map(0, phys_addr{std::uint64_t{1} << 52}, k4, io_perm::read).error() ==
        errc::not_addressable);
  CHECK(pt.try_map(0, phys_addr{(std::uint64_t{1} << 52) - k4}, 2 * k4, io_perm::read).error() ==
        errc::not_addressable);
  CHECK(pt.empty());
  // The very top page of both spaces is fine.
  REQUIRE(pt.try_map((std::uint64_t{1} << 48) - k4, phys_addr{(std::uint64_t{1} << 52) - k4}, k4,
                 io_perm::read)
              .has_value());
  CHECK(pt.translate((std::uint64_t{1} << 48) - 1)->value() == (std::uint64_t{1} << 52) - 1);
}

TEST_CASE(
    "io_page_table: out_of_memory at every table allocation leaves no mapping, and after trim "
    "the memory as it was",
    "[io_page_table][alloc]") {
  phyr::fault_state fs;
  phyr::io_page_table<phyr::fault_injecting_allocator> pt{phyr::fault_injecting_allocator{&fs}};
  // A page in the PD the big map will share.
  REQUIRE(pt.try_map(g1 + 2 * m2 + 7 * k4, phys_addr{0x5000}, k4, io_perm::read).has_value());
  const auto before = pt.stats();
  // Crosses a 1 GiB boundary (a second PDPT entry), several PTs and one 2 MiB leaf.
  const std::uint64_t iova = g1 - 3 * m2 - 5 * k4;
  const std::uint64_t phys = 7 * g1 - 3 * m2 - 5 * k4;
  const std::uint64_t len = 3 * m2 + 5 * k4 + m2 + 9 * k4;
  bool done = false;
  for (std::uint64_t k = 1; k < 64 && !done; ++k) {
    const auto live = fs.live;
    fs.fail_at = fs.calls + k;
    auto r = pt.try_map(iova, phys_addr{phys}, len, io_perm::read);
    fs.fail_at = 0;
    if (r) {
      done = true;
      break;
    }
    REQUIRE(r.error() == errc::out_of_memory);
    CHECK(pt.check_invariants());
    CHECK(pt.stats().leaves() == before.leaves());
    // Tables made before the failure stay (a concurrent map could be using them) until trim.
    pt.trim();
    CHECK(fs.live == live);
    CHECK(pt.stats().tables == before.tables);
    CHECK(pt.translate(iova).error() == errc::not_mapped);
    CHECK(pt.translate(g1 + 2 * m2 + 7 * k4)->value() == 0x5000);
  }
  REQUIRE(done);
  CHECK(fs.failures >= 3);
  CHECK(pt.check_invariants());
  require_maps(pt, iova, phys, len);
  CHECK(pt.unmap(iova, len) == len);
  pt.trim();
  CHECK(pt.stats().tables == before.tables);
  CHECK(pt.unmap(g1, g1) == k4);
  pt.trim();
  CHECK(fs.live == 0);
}

TEST_CASE("io_page_table: random maps translate page by page and unmap back to nothing",
          "[io_page_table][property]") {
  std::mt19937_64 rng(0x10b7ab1e);
  phyr::fault_state fs;
  phyr::io_page_table<phyr::fault_injecting_allocator> pt{phyr::fault_injecting_allocator{&fs}};
  struct extent {
    std::uint64_t phys, len;
  };
  std::map<std::uint64_t, extent> model;  // iova -> mapping; disjoint by construction
  auto overlaps = [&](std::uint64_t iova, std::uint64_t len) {
    auto it = model.upper_bound(iova);
    if (it != model.end() && it->first < iova + len) return true;
    if (it != model.begin()) {
      --it;
      if (it->first + it->second.len > iova) return true;
    }
    return false;
  };
  for (int round = 0; round < 400; ++round) {
    if (model.empty() || rng() % 3 != 0) {
      // Pick the alignment class of the map so every leaf size gets exercised.
      const std::uint64_t unit = std::array<std::uint64_t, 3>{k4, m2, k4 * 512 * 3}[rng() % 3];
      const std::uint64_t iova =
          (rng() % (std::uint64_t{1} << 36)) / unit * unit + (rng() % 2 ? 0 : (rng() % 512) * k4);
      const std::uint64_t phys = (rng() % (std::uint64_t{1} << 40)) / unit * unit +
                                 (iova % m2 == 0 && rng() % 2 ? 0 : (rng() % 512) * k4);
      const std::uint64_t len = (1 + rng() % 1200) * k4 + (rng() % 4 == 0 ? m2 : 0);
      auto r = pt.try_map(iova, phys_addr{phys}, len, io_perm::read);
      if (overlaps(iova, len)) {
        REQUIRE(!r.has_value());
        CHECK(r.error() == errc::overlaps);
      } else {
        REQUIRE(r.has_value());
        model[iova] = {phys, len};
      }
    } else {
      auto it = model.begin();
      std::advance(it, static_cast<long>(rng() % model.size()));
      CHECK(pt.unmap(it->first, it->second.len) == it->second.len);
      CHECK(pt.translate(it->first).error() == errc::not_mapped);
      model.erase(it);
    }
    std::uint64_t bytes = 0;
    for (const auto& [iova, e] : model) bytes += e.len;
    REQUIRE(pt.stats().mapped_bytes() == bytes);
    REQUIRE(pt.check_invariants());
    if (round % 50 == 49) {  // now and then give the emptied tables back
      pt.trim();
      REQUIRE(pt.check_invariants(/*allow_empty=*/false));
      REQUIRE(pt.stats().mapped_bytes() == bytes);
    }
  }
  for (const auto& [iova, e] : model) require_maps(pt, iova, e.phys, e.len);
  for (const auto& [iova, e] : model) CHECK(pt.unmap(iova, e.len) == e.len);
  CHECK(pt.stats().leaves() == 0);
  pt.trim();
  CHECK(pt.empty());
  CHECK(pt.stats().tables == 0);
  CHECK(fs.live == 0);
}
