// device/nvme/prp.hpp: try_build_prp against SPDK's published cases, the spec's chaining rule,
// a page-level model on seeded random lists, and a canary around the descriptor memory.
#include <algorithm>
#include <array>
#include <catch2/catch.hpp>
#include <cstdint>
#include <phyr/container/range_list.hpp>
#include <phyr/device/nvme.hpp>
#include <phyr/map/identity_mapper.hpp>
#include <random>
#include <span>
#include <utility>
#include <vector>

#include "nvme_test_pool.hpp"

namespace {
using phyr::errc;
namespace nvme = phyr::nvme;
struct other_bus {};
using namespace nvme_test;

// What the controller reads back from the command and the pool.
phyr::result<std::vector<piece>> walk(const nvme::prp_result<nvme0>& r, std::uint64_t page,
                                      const pool& p) {
  std::vector<piece> v;
  auto w = nvme::walk_prp(
      r.prp1.value(), r.prp2.value(), r.bytes, page, [&](std::uint64_t a) { return p.read(a); },
      [&](std::uint64_t a, std::uint64_t n) { push_coalesced(v, a, n); });
  if (!w) return w.error();
  return v;
}

// try_build_prp of `l` with 4 KiB controller pages, its list going to pool `p`.
phyr::result<nvme::prp_result<nvme0>> build_prp(const dlist& l, pool& p) {
  return nvme::try_build_prp(l, 4096, p.span(), p.at());
}

template <class L, class Addr = dma>
concept prp_buildable = requires(const L& l, std::span<std::uint64_t> w) {
  nvme::try_build_prp(l, 4096, w, Addr{0});
};
}  // namespace

// ---- SPDK test/unit/lib/nvme/nvme_pcie.c/nvme_pcie_ut.c, test_prp_list_append -----------------
// Each SPDK case appends virtually contiguous buffers (identity-translated in the test) with a
// 4 KiB page; `prp_index` is the number of PRP entries (our `entries`), tr->u.prp[] the list.
// SPDK's fake list address 0xDEADBEEF is not quadword aligned, which a PRP list pointer must be
// (phyr checks); the cases use 0xDEADBEE8 instead. NVME_MAX_PRP_LIST_ENTRIES is 503: the list
// lives in the 4 KiB tracker after a 72-byte header, so a 503-word pool at offset 72 of a page.

TEST_CASE("prp: SPDK test_prp_list_append, non-dword-aligned buffer is refused") {
  pool p(503, 0xDEADBEE8);
  const dlist l{dr(0x100001, 0x1000)};
  auto r = nvme::try_build_prp(l, 4096, p.span(), p.at());
  REQUIRE_FALSE(r);
  CHECK(r.error() == errc::misaligned);
  CHECK(p.untouched_from(0) == 0);
}

TEST_CASE("prp: SPDK test_prp_list_append, buffers that need PRP1 only or PRP1 + PRP2") {
  pool p(503, 0xDEADBEE8);
  struct spdk_case {
    std::uint64_t addr, len, prp_index, prp1, prp2;
  };
  const spdk_case cases[] = {
      {0x100000, 0x200, 1, 0x100000, 0},          // 512-byte buffer, 4K aligned
      {0x108000, 0x200, 1, 0x108000, 0},          // 512-byte buffer, "non-4K-aligned" (sic)
      {0x100000, 0x1000, 1, 0x100000, 0},         // 4K buffer, 4K aligned
      {0x100800, 0x1000, 2, 0x100800, 0x101000},  // 4K buffer, non-4K aligned
      {0x100000, 0x2000, 2, 0x100000, 0x101000},  // 8K buffer, 4K aligned
  };
  for (const spdk_case& c : cases) {
    CAPTURE(c.addr, c.len);
    auto r = build_prp(dlist{dr(c.addr, c.len)}, p);
    REQUIRE(r);
    CHECK(r->entries == c.prp_index);
    CHECK(r->prp1.value() == c.prp1);
    CHECK(r->prp2.value() == c.prp2);
    CHECK(r->words_used == 0);
  }
  CHECK(p.untouched_from(0) == 0);
}

TEST_CASE("prp: SPDK test_prp_list_append, buffers that need a PRP list") {
  struct spdk_case {
    std::uint64_t addr, len, prp_index;
    std::vector<std::uint64_t> list;
  };
  const spdk_case cases[] = {
      {0x100800, 0x2000, 3, {0x101000, 0x102000}},            // 8K buffer, non-4K aligned
      {0x100000, 0x3000, 3, {0x101000, 0x102000}},            // 12K buffer, 4K aligned
      {0x100800, 0x3000, 4, {0x101000, 0x102000, 0x103000}},  // 12K buffer, non-4K aligned
  };
  for (const spdk_case& c : cases) {
    pool p(503, 0xDEADBEE8);
    auto r = build_prp(dlist{dr(c.addr, c.len)}, p);
    REQUIRE(r);
    CHECK(r->entries == c.prp_index);
    CHECK(r->prp1.value() == c.addr);
    CHECK(r->prp2.value() == 0xDEADBEE8);  // tr.prp_sgl_bus_addr
    CHECK(r->prp2_kind == nvme::prp2_use::list);
    REQUIRE(r->words_used == c.list.size());
    for (std::size_t i = 0; i < c.list.size(); ++i) CHECK(p.words[i] == c.list[i]);
    CHECK(p.untouched_from(c.list.size()) == 0);
  }
}

TEST_CASE("prp: SPDK test_prp_list_append, two buffers") {
  pool p(503, 0xDEADBEE8);
  // Two 4K buffers, both 4K aligned: PRP1 + PRP2 as data.
  auto a = build_prp(dlist{dr(0x100000, 0x1000), dr(0x900000, 0x1000)}, p);
  REQUIRE(a);
  CHECK(a->entries == 2);
  CHECK(a->prp1.value() == 0x100000);
  CHECK(a->prp2.value() == 0x900000);
  // "First non-4K aligned, second 4K aligned": SPDK's prp_list_append accepts 0x100800+0x1000
  // then 0x900000 and lists 0x101000, 0x900000, because its caller
  // (nvme_pcie_qpair_build_prps_sgl_request) asserts that every SGE but the last ends on a page
  // boundary. This first buffer ends at 0x101800, so a controller would read all of page
  // 0x101000: phyr enforces that rule itself and refuses the pair as a page_gap.
  pool q0(503, 0xDEADBEE8);
  auto b0 = build_prp(dlist{dr(0x100800, 0x1000), dr(0x900000, 0x1000)}, q0);
  REQUIRE_FALSE(b0);
  CHECK(b0.error() == errc::page_gap);
  CHECK(q0.untouched_from(0) == 0);
  // With the first buffer ending on the boundary, SPDK's expected list comes out.
  auto b = build_prp(dlist{dr(0x100800, 0x1800), dr(0x900000, 0x1000)}, p);
  REQUIRE(b);
  CHECK(b->entries == 3);
  CHECK(b->prp1.value() == 0x100800);
  CHECK(b->prp2.value() == 0xDEADBEE8);
  CHECK(p.words[0] == 0x101000);
  CHECK(p.words[1] == 0x900000);
  CHECK(p.untouched_from(2) == 0);
  // Both non-4K aligned: invalid (SPDK: -EFAULT); phyr says why and writes nothing.
  pool q(503, 0xDEADBEE8);
  auto c = build_prp(dlist{dr(0x100800, 0x1000), dr(0x900800, 0x1000)}, q);
  REQUIRE_FALSE(c);
  CHECK(c.error() == errc::page_gap);
  CHECK(q.untouched_from(0) == 0);
}

TEST_CASE("prp: SPDK test_prp_list_append, the largest buffers 503 list entries describe") {
  constexpr std::uint64_t max_entries = 503;  // NVME_MAX_PRP_LIST_ENTRIES
  // A tracker page at 0x7000: the list starts 72 bytes in and ends at the page end, no chain.
  pool p(max_entries, 0x7000 + 72);
  auto a = build_prp(dlist{dr(0x100000, (max_entries + 1) * 0x1000)}, p);
  REQUIRE(a);
  CHECK(a->entries == max_entries + 1);
  CHECK(a->list_pages == 1);
  CHECK(a->words_used == max_entries);
  for (std::uint64_t i = 0; i < max_entries; ++i) CHECK(p.words[i] == 0x101000 + i * 0x1000);

  auto b = build_prp(dlist{dr(0x100800, max_entries * 0x1000)}, p);
  REQUIRE(b);
  CHECK(b->entries == max_entries + 1);

  pool q(max_entries, 0x7000 + 72);
  auto c = build_prp(dlist{dr(0x100000, (max_entries + 2) * 0x1000)}, q);
  REQUIRE_FALSE(c);
  CHECK(c.error() == errc::exhausted);
  auto d = build_prp(dlist{dr(0x100800, (max_entries + 1) * 0x1000)}, q);
  REQUIRE_FALSE(d);
  CHECK(d.error() == errc::exhausted);
  CHECK(q.untouched_from(0) == 0);
}

// ---- the specification's rules ---------------------------------------------------------------

TEST_CASE("prp: a full list page chains through its last slot, the moved entry leads the next") {
  for (std::uint64_t page : {4096ull, 8192ull, 16384ull, 65536ull}) {
    CAPTURE(page);
    const std::uint64_t slots = page / 8;
    // PRP1 + slots + 1 list entries: one more than a page holds.
    const std::uint64_t len = (slots + 2) * page;
    pool p(2 * slots + 5, 0x4000'0000);
    auto r = nvme::try_build_prp(dlist{dr(0x1'0000'0000, len)}, page, p.span(), p.at());
    REQUIRE(r);
    CHECK(r->entries == slots + 2);
    CHECK(r->list_pages == 2);
    CHECK(r->list_pages == nvme::prp_list_pages(r->entries, page));
    // Page 0: slots - 1 data entries and the chain; page 1: the remaining two.
    for (std::uint64_t i = 0; i + 1 < slots; ++i)
      CHECK(p.words[i] == 0x1'0000'0000 + (i + 1) * page);
    CHECK(p.words[slots - 1] == 0x4000'0000 + page);
    CHECK(p.words[slots] == 0x1'0000'0000 + slots * page);
    CHECK(p.words[slots + 1] == 0x1'0000'0000 + (slots + 1) * page);
    CHECK(r->words_used == slots + 2);
    CHECK(p.untouched_from(slots + 2) == 0);
    auto seen = walk(*r, page, p);
    REQUIRE(seen);
    CHECK(*seen == std::vector<piece>{{0x1'0000'0000, len}});
  }
}

TEST_CASE("prp: exactly a page of list entries needs no chain") {
  const std::uint64_t len = 513 * 4096;  // PRP1 + 512 list entries
  pool p(512, 0x8000);
  auto r = build_prp(dlist{dr(0x200000, len)}, p);
  REQUIRE(r);
  CHECK(r->list_pages == 1);
  CHECK(p.words[511] == 0x200000 + 512 * 4096);
}

TEST_CASE("prp: an inner boundary off a page boundary is a page_gap, distinct from misaligned") {
  pool p(64, 0x8000);
  // End of the first range not page aligned.
  CHECK(build_prp(dlist{dr(0x10000, 0x800), dr(0x20000, 0x1000)}, p).error() == errc::page_gap);
  // Start of a later range not page aligned.
  CHECK(build_prp(dlist{dr(0x10000, 0x1000), dr(0x20200, 0x1000)}, p).error() == errc::page_gap);
  // Contiguous ranges may meet anywhere: they are one run.
  auto ok = build_prp(dlist{dr(0x10000, 0x800), dr(0x10800, 0x1000)}, p);
  REQUIRE(ok);
  CHECK(ok->entries == 2);
  CHECK(ok->prp2.value() == 0x11000);
  // With 8 KiB controller pages a 4 KiB-aligned boundary is not enough.
  CHECK(nvme::try_build_prp(dlist{dr(0x10000, 0x1000), dr(0x20000, 0x1000)}, 8192, p.span(), p.at())
            .error() == errc::page_gap);
  CHECK(p.untouched_from(0) == 0);
}

TEST_CASE("prp: MDTS limits the transfer with too_long, checked before any write") {
  pool p(64, 0x8000);
  const nvme::prp_config cfg{.page_size = 4096, .max_transfer = nvme::mdts_bytes(5, 4096)};
  CHECK(cfg.max_transfer == 128 * 1024);
  CHECK(nvme::try_build_prp(dlist{dr(0x100000, 128 * 1024)}, cfg, p.span(), p.at()));
  pool q(64, 0x8000);
  auto r = nvme::try_build_prp(dlist{dr(0x100000, 128 * 1024 + 4)}, cfg, q.span(), q.at());
  REQUIRE_FALSE(r);
  CHECK(r.error() == errc::too_long);
  CHECK(q.untouched_from(0) == 0);
}

TEST_CASE("prp: bad arguments are invalid_argument") {
  pool p(64, 0x8000);
  CHECK(build_prp(dlist{}, p).error() == errc::invalid_argument);
  for (std::uint64_t bad : {0ull, 2048ull, 4095ull, 12288ull, 1ull << 28})
    CHECK(nvme::try_build_prp(dlist{dr(0x1000, 0x1000)}, bad, p.span(), p.at()).error() ==
          errc::invalid_argument);
  // Descriptor memory not quadword aligned.
  CHECK(nvme::try_build_prp(dlist{dr(0x1000, 0x3000)}, 4096, p.span(), dma{0x8004}).error() ==
        errc::invalid_argument);
  // A second chunk that does not start on a page boundary.
  std::vector<std::uint64_t> w0(512, canary), w1(512, canary);
  const nvme::descriptor_chunk<nvme0> chunks[] = {{w0, dma{0x10000}}, {w1, dma{0x20100}}};
  CHECK(nvme::try_build_prp<nvme0>(dlist{dr(0x1000, 0x3000)}, nvme::prp_config{}, chunks).error() ==
        errc::invalid_argument);
  CHECK(p.untouched_from(0) == 0);
}

TEST_CASE("prp: no descriptor memory is needed for up to two entries, exhausted beyond") {
  auto a = nvme::try_build_prp(dlist{dr(0x1000, 0x2000)}, 4096, {}, dma{0});
  REQUIRE(a);
  CHECK(a->prp2_kind == nvme::prp2_use::data);
  CHECK(nvme::try_build_prp(dlist{dr(0x1000, 0x3000)}, 4096, {}, dma{0}).error() ==
        errc::exhausted);
}

TEST_CASE("prp: a list page that starts mid-page holds what fits before the page end, no chain") {
  // 16 words at offset 0xf80 of a page: the first list page has 16 slots. 17 entries exhaust it
  // even though the chunk is long enough: only a whole, aligned page may chain.
  pool p(600, 0x10000 + 0xf80);
  auto ok = build_prp(dlist{dr(0x100000, 17 * 4096)}, p);
  REQUIRE(ok);
  CHECK(ok->words_used == 16);
  pool q(600, 0x10000 + 0xf80);
  CHECK(build_prp(dlist{dr(0x100000, 18 * 4096)}, q).error() == errc::exhausted);
  CHECK(q.untouched_from(0) == 0);
}

TEST_CASE("prp: separate pool pages are chained in the order given") {
  std::vector<std::uint64_t> w0(512, canary), w1(512, canary), w2(512, canary);
  const nvme::descriptor_chunk<nvme0> chunks[] = {
      {w0, dma{0x30000}}, {w1, dma{0x10000}}, {w2, dma{0x50000}}};
  // 1200 list entries: 511 + 511 + 178.
  const std::uint64_t len = 1201 * 4096;
  auto r = nvme::try_build_prp<nvme0>(dlist{dr(0x4000'0000, len)}, nvme::prp_config{}, chunks);
  REQUIRE(r);
  CHECK(r->list_pages == 3);
  CHECK(r->prp2.value() == 0x30000);
  CHECK(w0[511] == 0x10000);
  CHECK(w1[511] == 0x50000);
  CHECK(w2[177] == 0x4000'0000 + 1200 * 4096);
  CHECK(w2[178] == canary);
  CHECK(r->words_used == 512 + 512 + 178);
}

TEST_CASE("prp: works on range_list and an identity mapping, and in constant expressions") {
  phyr::range_list<phyr::phys_range> cpu;
  REQUIRE(cpu.try_append(phyr::phys_range{phyr::phys_addr{0x10'0200}, 0x2e00}));
  REQUIRE(cpu.try_append(phyr::phys_range{phyr::phys_addr{0x80'0000}, 0x1800}));
  phyr::identity_mapper<nvme0> m;
  auto map = phyr::must(m.try_map(cpu, phyr::dma_direction::from_device));
  pool p(512, 0x9000);
  auto r = nvme::try_build_prp(map, 4096, p.span(), p.at());
  REQUIRE(r);
  CHECK(r->entries == 5);
  CHECK(r->prp1.value() == 0x10'0200);
  CHECK(std::vector<std::uint64_t>(p.words.begin(), p.words.begin() + 4) ==
        std::vector<std::uint64_t>{0x10'1000, 0x10'2000, 0x80'0000, 0x80'1000});
  phyr::must(m.try_unmap(std::move(map)));

  phyr::range_list<drange> dl;
  REQUIRE(dl.try_append(dr(0x20'0000, 0x3000)));
  CHECK(nvme::try_build_prp(dl, 4096, p.span(), p.at())->entries == 3);

  constexpr auto built = [] {
    std::array<drange, 2> l{drange{dma{0x1000}, 0x1000}, drange{dma{0x5000}, 0x2000}};
    std::array<std::uint64_t, 8> mem{};
    auto res = nvme::try_build_prp(l, 4096, std::span<std::uint64_t>(mem), dma{0x9000});
    return std::pair{res->prp2.value(), mem[1]};
  }();
  STATIC_REQUIRE(built.first == 0x9000);
  STATIC_REQUIRE(built.second == 0x6000);
  STATIC_REQUIRE(nvme::prp_list_pages(2, 4096) == 0);
  STATIC_REQUIRE(nvme::prp_list_pages(513, 4096) == 1);
  STATIC_REQUIRE(nvme::prp_list_pages(514, 4096) == 2);
  STATIC_REQUIRE(nvme::prp_list_pages_max(128 * 1024, 4096) == 1);
}

TEST_CASE("prp: only DMA lists of the descriptor memory's bus are accepted") {
  STATIC_REQUIRE(prp_buildable<dlist>);
  STATIC_REQUIRE_FALSE(prp_buildable<std::vector<phyr::phys_range>>);
  STATIC_REQUIRE_FALSE(prp_buildable<std::vector<phyr::dma_range<other_bus>>>);
  // A CPU physical address for the descriptor memory does not convert either.
  STATIC_REQUIRE_FALSE(prp_buildable<dlist, phyr::phys_addr>);
  STATIC_REQUIRE_FALSE(prp_buildable<dlist, phyr::dma_addr<other_bus>>);
}

TEST_CASE("prp: the closed-form page count matches what the builder uses") {
  for (std::uint64_t page : {4096ull, 16384ull, 65536ull}) {
    const std::uint64_t slots = page / 8;
    const std::uint64_t counts[] = {
        1, 2, 3, slots, slots + 1, slots + 2, 2 * slots - 1, 2 * slots, 3 * slots + 7};
    for (std::uint64_t entries : counts) {
      CAPTURE(page, entries);
      pool p(static_cast<std::size_t>(4 * slots), 0x100'0000);
      const std::uint64_t len = entries * page - 4;  // starts at offset 4: `entries` pages
      auto r = nvme::try_build_prp(dlist{dr(0x1'0000'0004, len)}, page, p.span(), p.at());
      REQUIRE(r);
      CHECK(r->entries == entries);
      CHECK(r->list_pages == nvme::prp_list_pages(entries, page));
      CHECK(r->list_pages <= nvme::prp_list_pages_max(len, page));
      CHECK(r->words_used == (entries <= 2 ? 0 : entries - 1 + r->list_pages - 1));
      CHECK(p.untouched_from(static_cast<std::size_t>(r->words_used)) == 0);
    }
  }
}

TEST_CASE("prp: prp_entry_count is the number of pages the bytes touch, at any valid page size") {
  // The model, by division: the pages touched by [o, o + bytes) from the start of a page,
  // o = off % page, as whole pages of bytes plus what the remainder and o span (under three
  // pages, so nothing wraps). Page sizes come from a volatile read, so the count is computed
  // for a page size the compiler does not know (a driver's CC.MPS).
  const auto model = [](std::uint64_t off, std::uint64_t bytes, std::uint64_t page) {
    if (bytes == 0) return std::uint64_t{0};
    const std::uint64_t o = off % page;
    return bytes / page + (o + bytes % page + page - 1) / page;
  };
  std::mt19937_64 rng(0x9e3779b97f4a7c15ull);
  for (unsigned shift = 12; shift <= 27; ++shift) {
    volatile std::uint64_t page_v = std::uint64_t{1} << shift;
    const std::uint64_t page = page_v;
    REQUIRE(nvme::valid_page_size(page));
    const std::uint64_t edge_bytes[] = {1, 2, page - 1, page, page + 1, 2 * page - 1, 2 * page,
                                        ~std::uint64_t{0}, ~std::uint64_t{0} - page,
                                        ~std::uint64_t{0} - page + 1};
    const std::uint64_t edge_offs[] = {0, 1, 4, page - 4, page - 1, page, ~std::uint64_t{0}};
    for (std::uint64_t off : edge_offs) {
      for (std::uint64_t bytes : edge_bytes) {
        CAPTURE(page, off, bytes);
        CHECK(nvme::prp_entry_count(off, bytes, page) == model(off, bytes, page));
      }
    }
    for (int i = 0; i < 2000; ++i) {
      const std::uint64_t off = rng();
      const std::uint64_t bytes = rng() >> (rng() % 64);
      CAPTURE(page, off, bytes);
      CHECK(nvme::prp_entry_count(off, bytes, page) == model(off, bytes, page));
    }
  }
}

// ---- property test against a page-level model ------------------------------------------------

namespace {
// The model: the rules restated per page. Returns the expected entries or the error.
struct model_out {
  errc err{};
  std::vector<std::uint64_t> entries;  // PRP1 first, then page addresses
};
model_out model(const dlist& l, std::uint64_t page, std::uint64_t mdts) {
  model_out o;
  if (l.empty()) return {errc::invalid_argument, {}};
  if ((l[0].addr().value() & 3) != 0) return {errc::misaligned, {}};
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < l.size(); ++i) {
    total += l[i].len();
    if (i == 0) continue;
    const std::uint64_t prev_end = l[i - 1].addr().value() + l[i - 1].len();
    if (prev_end != l[i].addr().value() &&
        (prev_end % page != 0 || l[i].addr().value() % page != 0))
      return {errc::page_gap, {}};
  }
  if (mdts != 0 && total > mdts) return {errc::too_long, {}};
  // Every range's pages in order; PRP1 names the first page, and a page a contiguous range
  // shares with its predecessor is named once.
  o.entries.push_back(l[0].addr().value());
  std::uint64_t last_page = 0;
  for (std::size_t i = 0; i < l.size(); ++i) {
    const std::uint64_t a = l[i].addr().value();
    const std::uint64_t first_pg = a / page, end_pg = (a + l[i].len() - 1) / page;
    const bool contiguous = i > 0 && l[i - 1].addr().value() + l[i - 1].len() == a;
    for (std::uint64_t pg = first_pg; pg <= end_pg; ++pg) {
      if (i == 0 && pg == first_pg) {
        last_page = pg;
        continue;
      }
      if (contiguous && pg == first_pg && pg == last_page) continue;
      o.entries.push_back(pg * page);
      last_page = pg;
    }
  }
  return o;
}

dlist random_list(std::mt19937_64& rng, std::uint64_t page) {
  dlist l;
  const int n = 1 + static_cast<int>(rng() % 6);
  std::uint64_t at = (rng() % 4096) * page + (rng() % 4 == 0 ? (rng() % page) & ~3ull : 0);
  for (int i = 0; i < n; ++i) {
    std::uint64_t len = 1 + rng() % (3 * page);
    if (rng() % 3 != 0 && i + 1 < n)
      len = ((at + len + page - 1) / page) * page - at;  // end on page
    l.push_back(dr(at, len));
    const std::uint64_t end = at + len;
    switch (rng() % 5) {
      case 0:
        at = end;
        break;  // contiguous
      case 1:
        at = end + (rng() % 7) * 4;
        break;  // probably a bad gap
      default:
        at = (rng() % 8192 + 1) * page;
        break;  // page-aligned jump
    }
  }
  if (rng() % 16 == 0) l[0] = dr(l[0].addr().value() | 1, l[0].len());  // misaligned start
  return l;
}
}  // namespace

namespace {
// Builds `l` into `words` words of page-aligned memory and checks everything against the
// model: the error, or the entries as a controller reads them (chain slots skipped), the words
// used and nothing written past them, and the bytes the entries walk back to. True if built.
bool agrees_with_model(const dlist& l, std::uint64_t page, std::uint64_t mdts, std::size_t words) {
  const model_out want = model(l, page, mdts);
  pool p(words, 0x7'0000'0000);
  auto r = nvme::try_build_prp(l, nvme::prp_config{.page_size = page, .max_transfer = mdts},
                               p.span(), p.at());
  CAPTURE(page, l.size(), mdts, words);
  if (want.err != errc{}) {
    REQUIRE_FALSE(r);
    CHECK(r.error() == want.err);
    CHECK(p.untouched_from(0) == 0);
    return false;
  }
  const std::uint64_t list_entries = want.entries.size() > 2 ? want.entries.size() - 1 : 0;
  const std::uint64_t need_words =
      list_entries == 0 ? 0 : list_entries + nvme::prp_list_pages(want.entries.size(), page) - 1;
  if (need_words > words) {
    REQUIRE_FALSE(r);
    CHECK(r.error() == errc::exhausted);
    CHECK(p.untouched_from(0) == 0);
    return false;
  }
  REQUIRE(r);
  CHECK(r->entries == want.entries.size());
  CHECK(r->prp1.value() == want.entries[0]);
  CHECK(r->words_used == need_words);
  CHECK(p.untouched_from(static_cast<std::size_t>(r->words_used)) == 0);
  // Collect the entries the way a controller reads them.
  std::vector<std::uint64_t> got{r->prp1.value()};
  if (r->prp2_kind == nvme::prp2_use::data) got.push_back(r->prp2.value());
  if (r->prp2_kind == nvme::prp2_use::list) {
    const std::uint64_t slots = page / 8;
    for (std::uint64_t i = 0; got.size() < want.entries.size(); ++i) {
      if (i % slots == slots - 1 && want.entries.size() - got.size() > 1) continue;  // chain
      got.push_back(p.words[i]);
    }
  }
  CHECK(got == want.entries);
  auto seen = walk(*r, page, p);
  REQUIRE(seen);
  CHECK(*seen == bytes_of(l));
  return true;
}
}  // namespace

TEST_CASE("prp: seeded random lists agree with the page model, walk back to the same bytes") {
  std::mt19937_64 rng(20261201);
  int built = 0, refused = 0;
  for (int iter = 0; iter < 4000; ++iter) {
    const std::uint64_t page = std::uint64_t{4096} << (rng() % 5);
    const dlist l = random_list(rng, page);
    const std::uint64_t mdts = rng() % 4 == 0 ? page * (1 + rng() % 8) : 0;
    // Memory: sometimes too small, always page-aligned so chaining is allowed.
    const std::size_t words = rng() % 8 == 0 ? rng() % 4 : page / 8 * 4;
    CAPTURE(iter);
    if (agrees_with_model(l, page, mdts, words)) ++built;
    else ++refused;
  }
  CHECK(built > 1000);
  CHECK(refused > 200);
}

TEST_CASE("prp: lists of hundreds of ranges agree with the page model, in one list page or chained") {
  // A list that fits its first list page is written without the chaining writer; one that
  // does not is chained. Both, from lists of many short ranges whose junctions are page
  // aligned or contiguous (mid-page too), as a fragmented I/O of up to a few MiB is.
  std::mt19937_64 rng(0x9a95'0002ull);
  int one_page = 0, chained = 0;
  for (int iter = 0; iter < 300; ++iter) {
    const std::uint64_t page = iter % 4 == 0 ? 8192 : 4096;
    dlist l;
    const std::size_t n = 40 + rng() % 700;
    std::uint64_t at = (1 + rng() % 4096) * page + (rng() % 2 == 0 ? (rng() % page) & ~3ull : 0);
    for (std::size_t i = 0; i < n; ++i) {
      std::uint64_t len = 1 + rng() % (2 * page);
      if (rng() % 4 != 0 && i + 1 < n) len = ((at + len + page - 1) / page) * page - at;
      l.push_back(dr(at, len));
      // Contiguous (the next range goes on where this one ended, mid-page or not) or a jump
      // to a page boundary; ranges that end mid-page are always followed contiguously.
      const bool ends_on_page = (at + len) % page == 0;
      at = !ends_on_page || rng() % 4 == 0 ? at + len : (1 + rng() % 100000) * page;
    }
    const std::uint64_t slots = page / 8;
    const model_out want = model(l, page, 0);
    REQUIRE(want.err == errc{});
    CAPTURE(iter, n, want.entries.size());
    REQUIRE(agrees_with_model(l, page, 0, slots * 8));
    if (want.entries.size() - 1 <= slots) ++one_page;
    else ++chained;
  }
  CHECK(one_page > 50);
  CHECK(chained > 50);
}

namespace {
// The same ranges with no size(): try_build_prp then always takes its general path.
struct sizeless {
  const dlist* l;
  [[nodiscard]] auto begin() const { return l->begin(); }
  [[nodiscard]] auto end() const { return l->end(); }
};

// Every field of two builds of the same list by different paths.
void check_same(const nvme::prp_result<nvme0>& a, const nvme::prp_result<nvme0>& b) {
  CHECK(a.prp1 == b.prp1);
  CHECK(a.prp2 == b.prp2);
  CHECK(a.prp2_kind == b.prp2_kind);
  CHECK(a.entries == b.entries);
  CHECK(a.list_pages == b.list_pages);
  CHECK(a.words_used == b.words_used);
  CHECK(a.bytes == b.bytes);
}
}  // namespace

TEST_CASE("a one-range list takes the no-walk path with the general path's results and errors") {
  std::mt19937_64 g(0x0e4a9eull);
  const nvme::prp_config cfgs[] = {{.page_size = 4096}, {.page_size = 4096, .max_transfer = 0x8000},
                                   {.page_size = 16384}};
  int one = 0, two = 0, list = 0, errors = 0;
  for (int iter = 0; iter < 20000; ++iter) {
    INFO("iteration " << iter);
    const nvme::prp_config cfg = cfgs[g() % 3];
    const std::uint64_t a = (std::uint64_t{1} << 32) + (g() % 0x40000) * (g() % 4 == 0 ? 1 : 4);
    const std::uint64_t len = 1 + g() % (g() % 2 == 0 ? 0x3000 : 0x20000);
    const dlist l{drange{dma{a}, len}};
    pool p1(2 * 512, 0x10000), p2(2 * 512, 0x10000);
    const auto fast = nvme::try_build_prp<nvme0>(l, cfg, p1.span(), p1.at());
    const auto general = nvme::try_build_prp<nvme0>(sizeless{&l}, cfg, p2.span(), p2.at());
    REQUIRE(fast.has_value() == general.has_value());
    CHECK(p1.words == p2.words);
    if (!fast) {
      CHECK(fast.error() == general.error());
      ++errors;
      continue;
    }
    check_same(*fast, *general);
    if (fast->entries == 1) ++one;
    else if (fast->entries == 2) ++two;
    else ++list;
  }
  CHECK(one > 1000);
  CHECK(two > 1000);
  CHECK(list > 1000);
  CHECK(errors > 1000);  // misaligned starts and transfers past max_transfer
  // A zero-length range (an unvalidated span) is refused the same way.
  const dlist zero{drange{}};
  pool p(512, 0x10000);
  CHECK(nvme::try_build_prp<nvme0>(zero, nvme::prp_config{}, p.span(), p.at()).error() ==
        errc::invalid_argument);
}

TEST_CASE("a mapping whose gaps are page aligned is planned from its counters, as the pass plans") {
  STATIC_REQUIRE(phyr::enable_counted_source<phyr::identity_mapping<nvme0>>);
  std::mt19937_64 g(0x9a95'0001ull);
  auto pick = [&](std::uint64_t lo, std::uint64_t hi) {
    return std::uniform_int_distribution<std::uint64_t>{lo, hi}(g);
  };
  const phyr::identity_mapper<nvme0> m;
  int counted = 0, walked = 0, errors = 0, lists = 0;
  for (int iter = 0; iter < 4000; ++iter) {
    INFO("iteration " << iter);
    phyr::range_list<phyr::phys_range> cpu;
    // Page arrays (gaps on 4 KiB frames) and now and then a range anywhere.
    for (int op = static_cast<int>(pick(1, 4)); op > 0; --op) {
      if (pick(0, 4) != 0) {
        std::vector<std::uint64_t> pfns(pick(1, 40));
        std::uint64_t f = pick(1, 1 << 20) * (pick(0, 1) == 0 ? 1 : 16);
        for (auto& p : pfns) {
          p = f;
          f += pick(0, 2) == 0 ? 1 : pick(2, 50) * (pick(0, 1) == 0 ? 1 : 16);
        }
        // Mostly an offset only into the first page of the I/O and a cut only of its last, as
        // one buffer's pages come; now and then anywhere (unaligned gaps: the pass decides).
        const bool any = pick(0, 5) == 0;
        const std::uint64_t off = (cpu.empty() || any) && pick(0, 1) == 0 ? pick(0, 1023) * 4 : 0;
        const std::uint64_t cut = (op == 1 || any) && pick(0, 1) == 0
                                      ? pick(0, 4095 - (pfns.size() == 1 ? off : 0))
                                      : 0;
        (void)cpu.try_append_pages(pfns, off, pfns.size() * 4096 - off - cut);
      } else {
        (void)cpu.try_append(phyr::phys_range{phyr::phys_addr{pick(1, 1ull << 36)}, pick(1, 20000)});
      }
    }
    if (cpu.size() < 2) continue;
    const std::uint64_t page = pick(0, 2) == 0 ? std::uint64_t{4096} << pick(1, 2) : 4096;
    const std::uint64_t mdts = pick(0, 3) == 0 ? page * pick(1, 64) : 0;
    const nvme::prp_config cfg{.page_size = page, .max_transfer = mdts};
    auto mp = phyr::must(m.try_map(cpu, phyr::dma_direction::to_device));
    const dlist entries(mp.begin(), mp.end());  // the same ranges, through the general pass
    pool p1(page / 8 * 3, 0x7'0000'0000), p2(page / 8 * 3, 0x7'0000'0000);
    const auto fast = nvme::try_build_prp<nvme0>(mp, cfg, p1.span(), p1.at());
    const auto general = nvme::try_build_prp<nvme0>(sizeless{&entries}, cfg, p2.span(), p2.at());
    if ((mp.gap_bits() & (page - 1)) == 0) ++counted;
    else ++walked;
    REQUIRE(fast.has_value() == general.has_value());
    CHECK(p1.words == p2.words);
    if (!fast) {
      CHECK(fast.error() == general.error());
      ++errors;
    } else {
      check_same(*fast, *general);
      if (fast->prp2_kind == nvme::prp2_use::list) ++lists;
    }
    phyr::must(m.try_unmap(std::move(mp)));
  }
  CHECK(counted > 1000);
  CHECK(walked > 300);
  CHECK(errors > 300);  // page gaps, misaligned starts, past MDTS, out of list memory
  CHECK(lists > 1000);
}
