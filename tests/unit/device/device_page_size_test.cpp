// device/page_size.hpp: try_best_page_size / best_page_size against the kernel's rules and a
// brute-force byte-level reference.
#include <catch2/catch.hpp>

#include <array>
#include <bit>
#include <cstdint>
#include <phyr/container/range_list.hpp>
#include <phyr/device/blocks.hpp>
#include <phyr/device/page_size.hpp>
#include <phyr/map/identity_mapper.hpp>
#include <random>
#include <span>
#include <utility>
#include <vector>

#include "support/phys_ranges.hpp"

namespace {
using namespace phyr_test;
using list = phyr::range_list<phys_range>;
struct rnic {};

constexpr std::uint64_t kib4 = 1ull << 12;
constexpr std::uint64_t kib64 = 1ull << 16;
constexpr std::uint64_t mib2 = 1ull << 21;
constexpr std::uint64_t gib1 = 1ull << 30;
constexpr std::uint64_t nic_sizes = kib4 | kib64 | mib2 | gib1;

// ---- the brute-force reference -----------------------------------------------------------------

// Page size p works when every byte k (DMA address d[k], IOVA iova + k) keeps its offset within
// a page (d[k] and iova + k agree modulo p) and every byte that does not follow its predecessor
// in DMA space starts a page of the IOVA. Among the supported sizes that would cover the whole
// IOVA range with one page (at least 2 bytes: the kernel computes bits_per(0) as 1), only the
// smallest may be used. The answer is the largest supported size left that works.
std::uint64_t brute_best(const std::vector<phys_range>& in, std::uint64_t sizes,
                         std::uint64_t iova) {
  std::vector<std::uint64_t> d;
  for (const phys_range& r : in)
    for (std::uint64_t k = 0; k < r.len(); ++k) d.push_back(r.addr().value() + k);
  const std::uint64_t total = d.size();
  std::uint64_t cap = 0;
  for (int bit = 1; bit < 64; ++bit) {
    const std::uint64_t p = 1ull << bit;
    if ((sizes & p) != 0 && iova / p == (iova + total - 1) / p) {
      cap = p;
      break;
    }
  }
  std::uint64_t best = 0;
  for (int bit = 0; bit < 64; ++bit) {
    const std::uint64_t p = 1ull << bit;
    if ((sizes & p) == 0 || (cap != 0 && p > cap)) continue;
    bool works = true;
    for (std::uint64_t k = 0; k < total && works; ++k) {
      if (((d[k] ^ (iova + k)) & (p - 1)) != 0) works = false;
      if (k != 0 && d[k] != d[k - 1] + 1 && (iova + k) % p != 0) works = false;
    }
    if (works) best = p;
  }
  return best;
}

std::uint64_t pick(std::mt19937_64& g, std::uint64_t lo, std::uint64_t hi) {
  return std::uniform_int_distribution<std::uint64_t>{lo, hi}(g);
}

// Chunks whose addresses have random numbers of trailing zeros, so many page sizes are in play;
// neighbours sometimes contiguous.
std::vector<phys_range> random_list(std::mt19937_64& g) {
  std::vector<phys_range> v;
  const std::size_t n = pick(g, 1, 5);
  std::uint64_t a = pick(g, 1, 1ull << 40) << pick(g, 0, 12);
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint64_t len = pick(g, 0, 1) == 0 ? (1ull << pick(g, 0, 9)) : pick(g, 1, 700);
    v.push_back(pr(a, len, pick(g, 0, 1) == 0 ? range_flags::pinned : range_flags::none));
    if (pick(g, 0, 2) == 0) {
      a += len;  // contiguous neighbour
    } else {
      a = pick(g, 1, 1ull << 40) << pick(g, 0, 12);
    }
  }
  return v;
}

}  // namespace

TEST_CASE("a buffer on 2 MiB hugepages mapped at a 2 MiB-aligned IOVA gets 2 MiB pages") {
  list l;
  phyr::must(l.try_append(pr(0x140000000, mib2)));
  phyr::must(l.try_append(pr(0x2c0000000, mib2)));
  phyr::must(l.try_append(pr(0x100e00000, mib2)));
  CHECK(phyr::try_best_page_size(l, nic_sizes, 0x7f0000000000).value() == mib2);
  // The same memory at an IOVA 4 KiB off: only 4 KiB keeps offsets equal.
  CHECK(phyr::try_best_page_size(l, nic_sizes, 0x7f0000001000).value() == kib4);
  // 64 KiB off: 64 KiB pages.
  CHECK(phyr::try_best_page_size(l, nic_sizes, 0x7f0000010000).value() == kib64);
  // Without 2 MiB support the next size down.
  CHECK(phyr::try_best_page_size(l, kib4 | kib64 | gib1, 0x7f0000000000).value() == kib64);
}

TEST_CASE("a page larger than the buffer needs is not used: the smallest covering size caps") {
  // 8 KiB at a 2 MiB-aligned IOVA and address: one 64 KiB page covers it, so not 2 MiB or 1 GiB.
  const std::array l{pr(0x40000000, 0x2000)};
  CHECK(phyr::try_best_page_size(l, nic_sizes, 0x200000).value() == kib64);
  // Straddling a 64 KiB boundary of the IOVA: 64 KiB pages would take two, 2 MiB takes one.
  const std::array s{pr(0x4000f000, 0x2000)};
  CHECK(phyr::try_best_page_size(s, nic_sizes, 0x20f000).value() == mib2);
}

TEST_CASE("contiguous neighbours are one run, so only gaps constrain the page size") {
  // Adjacent entries (different flags) meeting mid-page, then a gap at a 2 MiB boundary.
  const std::array l{pr(0x40000000, 0x123), pr(0x40000123, mib2 - 0x123, range_flags::pinned),
                     pr(0x80000000, mib2)};
  CHECK(phyr::try_best_page_size(l, nic_sizes, 0x600000).value() == mib2);
  // The IOVA where the gap falls must be page aligned too: shift the second run by 4 KiB.
  const std::array m{pr(0x40000000, mib2 + 0x1000), pr(0x80001000, mib2 - 0x1000)};
  CHECK(phyr::try_best_page_size(m, nic_sizes, 0x600000).value() == kib4);
}

TEST_CASE("try_best_page_size reports not_supported when no supported size fits") {
  // 4 KiB pages scattered; the device only does 2 MiB.
  const std::array l{pr(0x10000, kib4), pr(0x50000, kib4)};
  CHECK(phyr::try_best_page_size(l, mib2, 0).error() == errc::not_supported);
  CHECK(phyr::best_page_size(l, mib2, 0) == 0);
  CHECK(phyr::try_best_page_size(l, 0, 0).error() == errc::not_supported);
  // Sizes below 4 KiB are legitimate for byte-exact lists.
  const std::array sectors{pr(0x10200, 512), pr(0x7000, 512)};
  CHECK(phyr::try_best_page_size(sectors, 512 | kib4, 0x200).value() == 512);
}

TEST_CASE("try_best_page_size rejects empty lists, zero-length entries and wrapping IOVAs") {
  list empty;
  CHECK(phyr::try_best_page_size(empty, nic_sizes, 0).error() == errc::invalid_argument);
  const std::array<phys_range, 2> z{pr(0x1000, 0x1000), phys_range{}};
  CHECK(phyr::try_best_page_size(std::span{z}, nic_sizes, 0).error() == errc::invalid_argument);
  const std::array l{pr(0x1000, 0x2000)};
  CHECK(phyr::try_best_page_size(l, nic_sizes, ~0ull - 0x1000).error() == errc::overflow);
  CHECK(phyr::try_best_page_size(l, nic_sizes, ~0ull - 0x1fff).has_value());  // ends at 2^64
  const std::vector<phys_range> huge(257, pr(0, phys_range::max_len));
  CHECK(phyr::try_best_page_size(huge, nic_sizes, 0).error() == errc::overflow);
  CHECK(phyr::best_page_size(empty, nic_sizes, 0) == 0);
}

TEST_CASE("a one-byte buffer never gets a 1-byte page when a 2-byte one exists (bits_per(0))") {
  const std::array l{pr(0x1000, 1)};
  CHECK(phyr::try_best_page_size(l, 1 | 2, 0x1000).value() == 2);
  CHECK(phyr::try_best_page_size(l, 1, 0x1000).value() == 1);
  CHECK(phyr::try_best_page_size(l, 1, 0x1001).value() == 1);  // 1-byte pages always fit
  CHECK(phyr::try_best_page_size(l, 2, 0x1001).error() == errc::not_supported);
}

TEST_CASE("best page size works on DMA mappings and at compile time") {
  list cpu;
  phyr::must(cpu.try_append(pr(0x200000, 4 * mib2)));
  phyr::identity_mapper<rnic> m;
  auto mp = phyr::must(m.try_map(cpu, phyr::dma_direction::bidirectional));
  CHECK(phyr::try_best_page_size(mp, nic_sizes, 0x10200000).value() == mib2);
  phyr::must(m.try_unmap(std::move(mp)));

  constexpr std::array l{phys_range{phys_addr{0x40000000}, mib2},
                         phys_range{phys_addr{0x80000000}, mib2}};
  STATIC_REQUIRE(phyr::best_page_size(l, nic_sizes, 0x200000) == mib2);
  STATIC_REQUIRE(phyr::best_page_size(l, nic_sizes, 0x201000) == kib4);
  STATIC_REQUIRE(phyr::try_best_page_size(l, mib2, 0x201000).error() == errc::not_supported);
}

TEST_CASE("try_best_page_size matches the brute-force reference, and its answer always blocks") {
  std::mt19937_64 g(0x9a9e51ceull);
  int fitted = 0;
  for (int iter = 0; iter < 4000; ++iter) {
    const std::vector<phys_range> in = random_list(g);
    std::uint64_t sizes = pick(g, 0, ~0ull);
    if (pick(g, 0, 1) == 0) sizes &= 0xffffffff;  // realistic sizes more often
    if (pick(g, 0, 3) == 0) sizes = nic_sizes | (1ull << pick(g, 0, 11));
    // IOVA congruent to the first address modulo a random power of two, or anything.
    std::uint64_t iova = pick(g, 0, 1ull << 47);
    if (pick(g, 0, 2) != 0) {
      const std::uint64_t m = (1ull << pick(g, 0, 24)) - 1;
      iova = (iova & ~m) | (in.front().addr().value() & m);
    }
    INFO("iteration " << iter << " sizes " << sizes << " iova " << iova);
    const std::uint64_t want = brute_best(in, sizes, iova);
    const auto got = phyr::try_best_page_size(in, sizes, iova);
    if (want == 0) {
      REQUIRE_FALSE(got);
      CHECK(got.error() == errc::not_supported);
      continue;
    }
    REQUIRE(got);
    CHECK(*got == want);
    ++fitted;
    // The answer describes the list as whole pages of the IOVA: blocks succeed, start at the
    // IOVA's offset, and there is one per IOVA page.
    const auto b = phyr::try_blocks(in, *got);
    REQUIRE(b);
    std::uint64_t total = 0;
    for (const phys_range& r : in) total += r.len();
    CHECK(b->first_offset() == (iova & (*got - 1)));
    CHECK(b->size() == (iova + total - 1) / *got - iova / *got + 1);
  }
  CHECK(fitted > 1000);
}
