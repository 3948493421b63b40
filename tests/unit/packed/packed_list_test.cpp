// packed_list: exact sizes, slicing, errors (list unchanged), alignment, blocks, stored form.
#include <catch2/catch.hpp>

#include <cstdint>
#include <phyr/packed/packed_list.hpp>
#include <vector>

#include "packed_model.hpp"
#include "support/phys_ranges.hpp"

namespace {
using namespace phyr_test;
using list = phyr::packed_list<phyr::cpu_phys>;
using packed_model::ranges_of;

constexpr std::uint64_t page = 4096;
constexpr std::uint64_t pg(std::uint64_t pfn) { return pfn * page; }

std::vector<std::uint32_t> words_of(const list& l) {
  std::vector<std::uint32_t> w(l.word_count());
  REQUIRE(l.try_copy_words(w).value() == w.size());
  return w;
}

// Everything observable, to check that a failed call changed nothing.
struct snapshot {
  std::vector<phys_range> ranges;
  std::vector<std::uint32_t> words;
  phyr::packed_header header;
  std::uint64_t total, alignment;
  std::size_t bytes_used;
  bool operator==(const snapshot&) const = default;
};
snapshot snap(const list& l) {
  return {ranges_of(l), words_of(l), l.header(), l.total_bytes(), l.alignment(), l.bytes_used()};
}

}  // namespace

TEST_CASE("packed_list: an empty list allocates nothing and decodes to nothing", "[packed_list]") {
  list l;
  CHECK(l.empty());
  CHECK(l.size() == 0);
  CHECK(l.begin() == l.end());
  CHECK(l.entry_bytes() == 0);
  CHECK(l.bytes_used() == sizeof(list));
  CHECK(l.segment_count() == 0);
  CHECK(l.header() == phyr::packed_header{});
  auto b = l.try_blocks(4096);
  REQUIRE(b);
  CHECK(b->size() == 0);
  CHECK(b->begin() == b->end());
  // A one-range list still allocates nothing: the open tail lives in the object.
  REQUIRE(l.try_append(pr(pg(3), 100)));
  CHECK(l.segment_count() == 0);
  CHECK(l.bytes_used() == sizeof(list));
  CHECK(ranges_of(l) == std::vector{pr(pg(3), 100)});
}

TEST_CASE("packed_list: N discontiguous 4 KiB pages cost exactly 8 bytes each", "[packed_list][size]") {
  for (std::size_t n : {1u, 2u, 3u, 61u, 1000u}) {
    std::vector<std::uint64_t> pfns;
    for (std::size_t i = 0; i < n; ++i) pfns.push_back(1000 + 2 * i);
    list l;
    REQUIRE(l.try_append_pages(pfns, 0, n * page));
    CAPTURE(n);
    CHECK(l.size() == n);
    CHECK(l.entry_bytes() == 8 * n);
    CHECK(l.entry_count() == n);
    CHECK(l.alignment() == (n > 1 ? page : std::uint64_t{1} << 63));  // page ends are odd pfns
    std::size_t i = 0;
    for (phys_range r : l) CHECK(r == pr(pg(pfns[i++]), page));
  }
}

TEST_CASE("packed_list: a 2 MiB-aligned 2 MiB run and an aligned 1 GiB page are 8 bytes",
          "[packed_list][size]") {
  std::vector<std::uint64_t> pfns(512);
  for (std::size_t i = 0; i < 512; ++i) pfns[i] = 512 * 7 + i;
  list two;
  REQUIRE(two.try_append_pages(pfns, 0, 512 * page));
  CHECK(two.size() == 1);
  CHECK(two.entry_bytes() == 8);
  list gig;
  REQUIRE(gig.try_append(pr(std::uint64_t{3} << 30, std::uint64_t{1} << 30)));
  CHECK(gig.entry_bytes() == 8);
  // Both still 8 bytes each when they are interior entries.
  list mid;
  REQUIRE(mid.try_append(pr(pg(1), page)));
  REQUIRE(mid.try_append(pr(std::uint64_t{3} << 30, std::uint64_t{1} << 30)));
  REQUIRE(mid.try_append(pr(std::uint64_t{7} << 21, std::uint64_t{1} << 21)));
  REQUIRE(mid.try_append(pr(pg(5), page)));
  CHECK(mid.entry_bytes() == 32);
}

TEST_CASE("packed_list: an interior run of 3 pages costs 12 bytes, 8 at the list's ends",
          "[packed_list][size]") {
  list l;
  REQUIRE(l.try_append(pr(pg(100), page)));
  REQUIRE(l.try_append(pr(pg(9), 3 * page)));
  REQUIRE(l.try_append(pr(pg(200), page)));
  CHECK(l.entry_bytes() == 8 + 12 + 8);
  // Alone, the run is sliced out of a 4-page block by the header.
  list alone;
  REQUIRE(alone.try_append(pr(pg(9), 3 * page)));
  CHECK(alone.entry_bytes() == 8);
  CHECK(alone.header().first_offset == page);
  CHECK(ranges_of(alone) == std::vector{pr(pg(9), 3 * page)});
}

TEST_CASE("packed_list: 512-byte direct-I/O chunks cost 12 bytes each and keep 512 alignment",
          "[packed_list][size]") {
  list l;
  std::vector<phys_range> want;
  for (std::uint64_t i = 0; i < 50; ++i) {
    want.push_back(pr(pg(10 + 3 * i) + 512 * (i % 8), 512));
    REQUIRE(l.try_append(want.back()));
  }
  CHECK(l.entry_bytes() == 12 * 50);
  CHECK(l.alignment() == 512);
  CHECK(ranges_of(l) == want);
  auto b = l.try_blocks(512);
  REQUIRE(b);
  CHECK(b->size() == 50);
  std::size_t i = 0;
  for (phys_addr a : *b) CHECK(a == want[i++].addr());
  CHECK(l.try_blocks(1024).error() == errc::misaligned);
}

TEST_CASE("packed_list: appends coalesce adjacent ranges with equal flags only", "[packed_list]") {
  list l;
  REQUIRE(l.try_append(pr(pg(1), page, range_flags::pinned)));
  REQUIRE(l.try_append(pr(pg(2), 2 * page, range_flags::pinned)));
  REQUIRE(l.try_append(pr(pg(4), page, range_flags::bus_addr)));
  REQUIRE(l.try_append(pr(pg(5) + 10, 10, range_flags::bus_addr)));  // not adjacent: a gap
  CHECK(ranges_of(l) == std::vector{pr(pg(1), 3 * page, range_flags::pinned),
                                    pr(pg(4), page, range_flags::bus_addr),
                                    pr(pg(5) + 10, 10, range_flags::bus_addr)});
  CHECK(l.total_bytes() == 4 * page + 10);
}

TEST_CASE("packed_list: merging past max_len fills the tail and starts a new range, like range_list",
          "[packed_list]") {
  constexpr std::uint64_t max = phys_range::max_len;
  list l;
  REQUIRE(l.try_append(pr(0, max - 10)));
  REQUIRE(l.try_append(pr(max - 10, 100)));
  CHECK(ranges_of(l) == std::vector{pr(0, max), pr(max, 90)});
  phyr::range_list<phys_range> rl;
  REQUIRE(rl.try_append(pr(0, max - 10)));
  REQUIRE(rl.try_append(pr(max - 10, 100)));
  CHECK(ranges_of(rl) == ranges_of(l));
  auto back = list::from_words(l.header(), words_of(l));  // adjacent, equal flags: valid here
  REQUIRE(back);
  CHECK(ranges_of(*back) == ranges_of(l));
}

TEST_CASE("packed_list: try_append_pages slices the first and last page like range_list",
          "[packed_list]") {
  const std::vector<std::uint64_t> pfns = {10, 20, 21, 22, 30, 40, 41, 42, 43, 100};
  const std::uint64_t total = 10 * page - 0x10 - 0x20;
  list l;
  REQUIRE(l.try_append_pages(pfns, 0x10, total, range_flags::pinned));
  phyr::range_list<phys_range> rl;
  REQUIRE(rl.try_append_pages(pfns, 0x10, total, range_flags::pinned));
  CHECK(ranges_of(l) == ranges_of(rl));
  CHECK(l.total_bytes() == total);
  CHECK(l.entry_bytes() == 8 + 12 + 8 + 8 + 8);
  // Appending more pages continues the same list; pfn 101 merges with the open tail only
  // when the tail ended on the page boundary (it did not: 0x20 bytes were cut).
  REQUIRE(l.try_append_pages(std::vector<std::uint64_t>{101, 102}, 0, 2 * page,
                             range_flags::pinned));
  REQUIRE(rl.try_append_pages(std::vector<std::uint64_t>{101, 102}, 0, 2 * page,
                              range_flags::pinned));
  CHECK(ranges_of(l) == ranges_of(rl));
}

TEST_CASE("packed_list: bad input is an errc and leaves the list unchanged", "[packed_list][errors]") {
  list l;
  REQUIRE(l.try_append_pages(std::vector<std::uint64_t>{5, 9, 10}, 0x100, 3 * page - 0x100));
  const snapshot before = snap(l);
  const std::uint64_t bad = std::uint64_t{1} << 52;
  CHECK(l.try_append(phys_range{}).error() == errc::invalid_argument);  // zero length
  CHECK(l.try_append_pages({}, 0, 1).error() == errc::invalid_argument);
  CHECK(l.try_append_pages(std::vector<std::uint64_t>{1}, 4096, 1).error() ==
        errc::invalid_argument);
  CHECK(l.try_append_pages(std::vector<std::uint64_t>{1, 2}, 0, page).error() ==
        errc::invalid_argument);  // last page carries no data
  CHECK(l.try_append_pages(std::vector<std::uint64_t>{1}, 0, page + 1).error() ==
        errc::invalid_argument);
  // pfns beyond the 52-bit space, first / middle / last / inside a contiguous run
  for (auto pfns : {std::vector<std::uint64_t>{bad, 1, 2}, std::vector<std::uint64_t>{1, bad, 3},
                    std::vector<std::uint64_t>{1, 3, 5, 7, bad},
                    std::vector<std::uint64_t>{1, bad - 1, bad, 9},
                    std::vector<std::uint64_t>{~std::uint64_t{0}, 0, 1},
                    // past a vectorised 8-page chunk, inside it, and in the run it hands on
                    std::vector<std::uint64_t>{1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, bad, 25},
                    std::vector<std::uint64_t>{1, 3, 5, bad, 9, 11, 13, 15, 17, 19, 21, 23},
                    std::vector<std::uint64_t>{1, 3, 5, 7, 9, 11, 13, 15, bad - 1, bad, 30}}) {
    CHECK(l.try_append_pages(pfns, 0, pfns.size() * page).error() == errc::invalid_argument);
    CHECK(snap(l) == before);
  }
  // Total length past 2^64.
  list big;
  for (int i = 0; i < 256; ++i) REQUIRE(big.try_append(pr(0, phys_range::max_len)));
  const std::uint64_t left = ~big.total_bytes();
  CHECK(left == 255);
  CHECK(big.try_append(pr(0, left + 1)).error() == errc::overflow);
  CHECK(big.try_append_pages(std::vector<std::uint64_t>(2000, 7), 0, 2000 * page).error() ==
        errc::overflow);
  CHECK(snap(l) == before);
}

TEST_CASE("packed_list: a promised alignment rejects misaligned boundaries, list unchanged",
          "[packed_list][errors][align]") {
  list l;
  REQUIRE(l.try_set_min_alignment(4096));
  CHECK(l.min_alignment() == 4096);
  REQUIRE(l.try_append(pr(pg(1) + 0x80, page - 0x80)));  // the first start may be anywhere
  REQUIRE(l.try_append(pr(pg(7), 2 * page)));
  const snapshot before = snap(l);
  CHECK(l.try_append(pr(pg(20) + 512, 512)).error() == errc::misaligned);
  CHECK(snap(l) == before);
  // The open tail may end anywhere; the boundary is checked when something follows it.
  REQUIRE(l.try_append(pr(pg(20), 512)));
  CHECK(l.try_append(pr(pg(30), page)).error() == errc::misaligned);
  // 2 MiB promise with 4 KiB-fragmented pages: rolled back after the fast path ran.
  list h;
  REQUIRE(h.try_set_min_alignment(std::uint64_t{1} << 21));
  std::vector<std::uint64_t> ok, pfns;  // 2 MiB blocks, one of them off by a page
  for (std::uint64_t b = 0; b < 20; ++b)
    for (std::uint64_t i = 0; i < 512; ++i) ok.push_back(1024 * b + i);
  for (std::uint64_t b = 20; b < 40; ++b)
    for (std::uint64_t i = 0; i < 512; ++i) pfns.push_back(1024 * b + i + (b == 30 ? 1 : 0));
  REQUIRE(h.try_append_pages(ok, 0, ok.size() * page));
  CHECK(h.entry_bytes() == 20 * 8);
  const snapshot hb = snap(h);
  CHECK(h.try_append_pages(pfns, 0, pfns.size() * page).error() == errc::misaligned);
  CHECK(snap(h) == hb);
  // try_set_min_alignment refuses a promise the list already breaks, and non-powers of two.
  CHECK(h.try_set_min_alignment(3).error() == errc::invalid_argument);
  CHECK(h.try_set_min_alignment(0).error() == errc::invalid_argument);
  list g;
  REQUIRE(g.try_append(pr(pg(2), 2 * page)));  // boundaries at pfn 4 and 6
  REQUIRE(g.try_append(pr(pg(6), page)));
  CHECK(g.alignment() == 2 * page);
  CHECK(g.try_set_min_alignment(4 * page).error() == errc::misaligned);
  CHECK(g.try_set_min_alignment(2 * page));
}

TEST_CASE("packed_list: alignment() is the largest block size that fits every interior boundary",
          "[packed_list][align]") {
  list l;
  CHECK(l.alignment() == std::uint64_t{1} << 63);
  REQUIRE(l.try_append(pr(pg(512) + 0x40, pg(512) - 0x40)));  // ends at 4 MiB
  CHECK(l.alignment() == std::uint64_t{1} << 63);          // no interior boundary yet
  REQUIRE(l.try_append(pr(pg(2048), pg(512))));
  CHECK(l.alignment() == std::uint64_t{1} << 22);  // 4 MiB and 8 MiB
  REQUIRE(l.try_append(pr(pg(512 * 9), pg(512))));
  CHECK(l.alignment() == std::uint64_t{1} << 21);
}

TEST_CASE("packed_list: blocks() yields every block address and the first block's offset",
          "[packed_list][blocks]") {
  list l;
  REQUIRE(l.try_append(pr(pg(512) + 0x1234, pg(1024) - 0x1234)));  // up to pfn 1536
  REQUIRE(l.try_append(pr(pg(4096), pg(512))));
  REQUIRE(l.try_append(pr(pg(8192), pg(100) + 7)));
  for (std::uint64_t bs : {std::uint64_t{512}, page, 16 * page, std::uint64_t{1} << 21}) {
    auto b = l.try_blocks(bs);
    REQUIRE(b);
    // Model: expand each range into its blocks.
    std::vector<std::uint64_t> want;
    for (phys_range r : l)
      for (std::uint64_t a = r.addr().value() & ~(bs - 1); a <= r.last().value(); a += bs)
        want.push_back(a);
    std::vector<std::uint64_t> got;
    for (phys_addr a : *b) got.push_back(a.value());
    CAPTURE(bs);
    CHECK(got == want);
    CHECK(b->size() == want.size());
    CHECK(b->first_offset() == ((pg(512) + 0x1234) & (bs - 1)));
    CHECK(b->block_size() == bs);
    std::vector<std::uint64_t> fe;
    REQUIRE(l.try_for_each_block(bs, [&](phys_addr a) { fe.push_back(a.value()); }));
    CHECK(fe == want);
  }
  CHECK(l.try_for_each_block(std::uint64_t{1} << 22, [](phys_addr) {}).error() == errc::misaligned);
  CHECK(l.try_for_each_block(48, [](phys_addr) {}).error() == errc::invalid_argument);
  // A range ending at 2^64 ends the walk (counted, not compared against an end address).
  list top;
  REQUIRE(top.try_append(pr(~std::uint64_t{0} - 3 * page + 1, 3 * page)));
  std::vector<std::uint64_t> tb;
  REQUIRE(top.try_for_each_block(page, [&](phys_addr a) { tb.push_back(a.value()); }));
  CHECK(tb.size() == 3);
  auto tv = top.try_blocks(page);
  REQUIRE(tv);
  CHECK(tv->size() == 3);
  CHECK(l.try_blocks(std::uint64_t{1} << 22).error() == errc::misaligned);
  CHECK(l.try_blocks(3000).error() == errc::invalid_argument);
  CHECK(l.try_blocks(0).error() == errc::invalid_argument);
}

TEST_CASE("packed_list: header and words round-trip through from_words", "[packed_list][words]") {
  list l;
  REQUIRE(l.try_append(pr(pg(3) + 0x10, pg(5) - 0x10, range_flags::pinned)));
  REQUIRE(l.try_append(pr(pg(100) + 7, 512, range_flags::driver5)));
  REQUIRE(l.try_append(pr(std::uint64_t{1} << 40, std::uint64_t{1} << 30)));
  REQUIRE(l.try_append(pr(pg(77), pg(3) - 9, range_flags::driver2)));
  const auto h = l.header();
  CHECK(h.total_len == l.total_bytes());
  CHECK(h.entry_count == 4);
  const auto w = words_of(l);
  CHECK(w.size() * 4 == l.entry_bytes());
  CHECK(l.entry_bytes() == 12 + 16 + 8 + 8);
  auto back = list::from_words(h, w);
  REQUIRE(back);
  CHECK(ranges_of(*back) == ranges_of(l));
  CHECK(back->header() == h);
  CHECK(words_of(*back) == w);
  std::vector<std::uint32_t> small(w.size() - 1);
  CHECK(l.try_copy_words(small).error() == errc::out_of_range);
}

TEST_CASE("packed_list: from_words rejects malformed words and inconsistent headers",
          "[packed_list][words][errors]") {
  list l;
  REQUIRE(l.try_append(pr(pg(3), pg(2))));
  REQUIRE(l.try_append(pr(pg(9), pg(1))));
  REQUIRE(l.try_append(pr(pg(20), pg(4))));
  const auto h = l.header();
  const auto w = words_of(l);
  REQUIRE(list::from_words(h, w));
  auto bad = [&](phyr::packed_header hh, std::vector<std::uint32_t> ww) {
    return list::from_words(hh, ww).error();
  };
  auto hh = h;
  hh.entry_count = 2;
  CHECK(bad(hh, w) == errc::invalid_argument);
  hh = h;
  hh.total_len += 1;  // more than the entries hold
  CHECK(bad(hh, w) == errc::invalid_argument);
  hh = h;
  hh.total_len = pg(3);  // leaves the last entry empty
  CHECK(bad(hh, w) == errc::invalid_argument);
  hh = h;
  hh.first_offset = pg(2);  // trims the whole first entry
  CHECK(bad(hh, w) == errc::invalid_argument);
  hh = h;
  hh.min_align_log2 = 14;  // pfn 9 is not 16 KiB aligned
  CHECK(bad(hh, w) == errc::misaligned);
  hh.min_align_log2 = 64;
  CHECK(bad(hh, w) == errc::invalid_argument);
  CHECK(bad(h, std::vector<std::uint32_t>(w.begin(), w.end() - 1)) == errc::invalid_argument);
  CHECK(bad(h, {}) == errc::invalid_argument);
  CHECK(list::from_words({}, {}));
  // Two adjacent entries with equal flags: an encoder would have merged them.
  list m;
  REQUIRE(m.try_append(pr(pg(4), page)));
  REQUIRE(m.try_append(pr(pg(6), page)));
  auto mw = words_of(m);
  phyr::detail::put_u64(mw.data() + 2, phyr::detail::make_head(phyr::packed_mode::block, 5, 0, 0));
  CHECK(bad(m.header(), mw) == errc::invalid_argument);
  // A continued escape followed by something that does not continue it.
  std::vector<std::uint32_t> cw(8);
  phyr::detail::write_escape(cw.data(), 0x100, 0x1000, 0xe0, true);
  phyr::detail::write_escape(cw.data() + 4, 0x2000, 0x1000, 0xe0, false);  // gap
  phyr::packed_header ch{0, 0x2000, 2, 0};
  CHECK(bad(ch, cw) == errc::invalid_argument);
  phyr::detail::write_escape(cw.data() + 4, 0x1100, 0x1000, 0xe0, false);  // contiguous
  auto ok = list::from_words(ch, cw);
  REQUIRE(ok);
  CHECK(ranges_of(*ok) == std::vector{pr(0x100, 0x2000, static_cast<range_flags>(0xe0))});
}

TEST_CASE("packed_list: ranges of max_len chain escapes and decode as one range",
          "[packed_list][escape]") {
  list l;
  std::vector<phys_range> want;
  // Enough chains (9 pieces, 144 bytes each) to cross several segment boundaries.
  for (std::uint64_t i = 0; i < 40; ++i) {
    want.push_back(pr(0x10 + i, phys_range::max_len, static_cast<range_flags>(0x80 | (i & 0x1f))));
    REQUIRE(l.try_append(want.back()));
  }
  CHECK(l.size() == 40);
  CHECK(l.entry_count() == 40 * 9);
  CHECK(l.entry_bytes() == 40 * 144);
  CHECK(ranges_of(l) == want);
  std::vector<phys_range> fe;
  l.for_each([&](phys_range r) { fe.push_back(r); });
  CHECK(fe == want);
  auto back = list::from_words(l.header(), words_of(l));
  REQUIRE(back);
  CHECK(ranges_of(*back) == want);
}

TEST_CASE("packed_list: clone, move and clear-for-reuse", "[packed_list]") {
  list l;
  std::vector<std::uint64_t> pfns;
  for (std::uint64_t i = 0; i < 5000; ++i) pfns.push_back(3 * i);
  REQUIRE(l.try_append_pages(pfns, 0, pfns.size() * page));
  const auto r = ranges_of(l);
  auto c = l.try_clone();
  REQUIRE(c);
  CHECK(ranges_of(*c) == r);
  CHECK(c->header() == l.header());
  list m = std::move(l);
  CHECK(ranges_of(m) == r);
  CHECK(l.empty());  // NOLINT: moved-from is empty by contract
  const std::size_t used = m.bytes_used();
  const std::size_t segs = m.segment_count();
  m.clear();
  CHECK(m.empty());
  CHECK(m.bytes_used() == used);
  REQUIRE(m.try_append_pages(pfns, 0, pfns.size() * page));
  CHECK(m.segment_count() == segs);  // reused, nothing allocated
  CHECK(ranges_of(m) == r);
  // Segments grow from 256 bytes to 4 KiB: bytes_used is the object plus those blocks.
  CHECK(m.bytes_used() > sizeof(list) + m.entry_bytes());
  CHECK(m.bytes_used() < sizeof(list) + m.entry_bytes() + m.entry_bytes() / 50 + 4096);
}

TEST_CASE("packed_list: fragmented stretches followed by contiguous pages stay one range each",
          "[packed_list]") {
  // The encoder writes 8 one-page entries at a time; the page after such a stretch may
  // continue the last one.
  for (std::size_t singles = 1; singles < 40; ++singles) {
    std::vector<std::uint64_t> pfns;
    for (std::size_t i = 0; i < singles; ++i) pfns.push_back(10 * i + 100);
    for (std::uint64_t k = 1; k < 4; ++k) pfns.push_back(pfns.back() + 1);
    for (std::size_t i = 0; i < 9; ++i) pfns.push_back(5000 + 3 * i);
    list l;
    REQUIRE(l.try_append_pages(pfns, 0, pfns.size() * page));
    phyr::range_list<phys_range> rl;
    REQUIRE(rl.try_append_pages(pfns, 0, pfns.size() * page));
    CAPTURE(singles);
    CHECK(ranges_of(l) == ranges_of(rl));
  }
}

TEST_CASE("packed_list: for_each visits the same ranges as the iterator", "[packed_list]") {
  list l;
  std::vector<std::uint64_t> pfns;
  for (std::uint64_t i = 0; i < 3000; ++i) pfns.push_back((i % 7 == 0) ? 5 * i + 1 : 5 * i);
  REQUIRE(l.try_append_pages(pfns, 0x300, pfns.size() * page - 0x300 - 0x10));
  std::vector<phys_range> fe;
  l.for_each([&](phys_range r) { fe.push_back(r); });
  CHECK(fe == ranges_of(l));
  CHECK(fe.size() == l.size());
}
