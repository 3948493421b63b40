// packed_list round trips: seeded random lists mixing every mode, flags, huge and tiny ranges,
// checked against a plain std::vector model and against range_list in both directions; the
// streaming page encoder against range_list::try_append_pages; fault injection at every
// allocation; the real pagemap traces when present.
#include <catch2/catch.hpp>

#include <cstdint>
#include <cstdio>
#include <phyr/container/range_list.hpp>
#include <phyr/packed/packed_list.hpp>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "packed_model.hpp"
#include "support/phys_ranges.hpp"

namespace {
using namespace phyr_test;
using list = phyr::packed_list<phyr::cpu_phys>;
using flist = phyr::packed_list<phyr::cpu_phys, phyr::fault_injecting_allocator>;

constexpr std::uint64_t page = 4096;
constexpr std::uint64_t max_len = phys_range::max_len;
using packed_model::expected_entry_bytes;
using packed_model::model_append;
using packed_model::ranges_of;

template <class L>
std::vector<std::uint32_t> words_of(const L& l) {
  std::vector<std::uint32_t> w(l.word_count());
  REQUIRE(l.try_copy_words(w).value() == w.size());
  return w;
}

// Random ranges that hit every mode: aligned blocks of every order, order-aligned runs (up to
// counts near 2^32), byte-granular chunks, unaligned escapes, max_len chains, ranges touching
// 2^64, and ranges adjacent to the previous one (merging or not, by flags).
struct range_gen {
  std::mt19937_64 rng;
  phys_range prev{};

  std::uint64_t below(std::uint64_t n) { return n == 0 ? 0 : rng() % n; }
  range_flags flags() {
    const std::uint64_t k = below(10);
    if (k < 2 && prev.len() != 0) return prev.flags();
    if (k < 3) return static_cast<range_flags>(0x20u << below(3) | below(32));  // escape flags
    return static_cast<range_flags>(below(32));
  }
  phys_range clamp(std::uint64_t a, std::uint64_t len, range_flags f) {
    if (len == 0) len = 1;
    if (len > max_len) len = max_len;
    if (len - 1 > ~a) len = ~a + 1;  // end exactly at 2^64
    return phys_range{phys_addr{a}, len, f};
  }
  phys_range next() {
    const range_flags f = flags();
    phys_range r;
    switch (below(12)) {
      case 0: {  // aligned block of any order
        const unsigned k = static_cast<unsigned>(below(32));
        const std::uint64_t pfn = (below(std::uint64_t{1} << (51 - k))) << k;
        r = clamp(pfn * page, page << k, f);
        break;
      }
      case 1: {  // order-aligned run
        const unsigned k = static_cast<unsigned>(below(20));
        const std::uint64_t count = below(8) == 0 ? 0xffffffffull - below(3) : 2 + below(1000);
        const std::uint64_t pfn = (below(std::uint64_t{1} << 20)) << k;
        r = clamp(pfn * page, (count << k) * page, f);
        break;
      }
      case 2:  // single page
        r = clamp(below(std::uint64_t{1} << 52) * page, page, f);
        break;
      case 3:  // tiny byte-granular
        r = clamp(below(std::uint64_t{1} << 40), 1 + below(4096), f);
        break;
      case 4:  // up to the mode-2 limit and just past it
        r = clamp(below(std::uint64_t{1} << 40), (std::uint64_t{1} << 25) - 2 + below(4), f);
        break;
      case 5:  // unaligned and large: escape
        r = clamp(rng(), (std::uint64_t{1} << 26) + below(std::uint64_t{1} << 50), f);
        break;
      case 6:  // rare: longer than one escape (a chain)
        r = below(4) == 0 ? clamp(below(std::uint64_t{1} << 60), max_len - below(1u << 20), f)
                          : clamp(below(std::uint64_t{1} << 40), page * (1 + below(64)), f);
        break;
      case 7:  // touching the end of the address space
        r = clamp(~std::uint64_t{0} - below(std::uint64_t{1} << 30), std::uint64_t{1} << 31, f);
        break;
      case 8:
      case 9: {  // adjacent to the previous range (merges when flags match)
        if (prev.len() == 0 || prev.last().value() == ~std::uint64_t{0}) {
          r = clamp(below(std::uint64_t{1} << 44) * page, page, f);
        } else {
          const std::uint64_t len = below(2) ? page * (1 + below(600)) : 1 + below(1 << 20);
          r = clamp(prev.last().value() + 1, len, f);
        }
        break;
      }
      default: {  // page-aligned, random page count
        r = clamp(below(std::uint64_t{1} << 40) * page, page * (1 + below(5000)), f);
        break;
      }
    }
    prev = r;
    return r;
  }
};

template <class L>
void check_round_trip(const L& l, const std::vector<phys_range>& model) {
  REQUIRE(ranges_of(l) == model);
  std::vector<phys_range> fe;
  l.for_each([&](phys_range r) { fe.push_back(r); });
  REQUIRE(fe == model);
  REQUIRE(l.size() == model.size());
  REQUIRE(l.entry_bytes() == expected_entry_bytes(model));
  // Stored form: header + words decode to the same ranges and re-encode identically.
  const auto w = words_of(l);
  auto back = list::from_words(l.header(), w);
  REQUIRE(back);
  REQUIRE(ranges_of(*back) == model);
  REQUIRE(words_of(*back) == w);
  REQUIRE(back->header() == l.header());
}

}  // namespace

TEST_CASE("packed round trip: random mixed lists decode to exactly the ranges appended",
          "[packed][property]") {
  for (std::uint64_t seed = 1; seed <= 60; ++seed) {
    range_gen g{std::mt19937_64(seed)};
    list l;
    std::vector<phys_range> model;
    std::uint64_t total = 0;
    const int n = static_cast<int>(1 + g.below(seed % 5 == 0 ? 2000 : 120));
    for (int i = 0; i < n; ++i) {
      const phys_range r = g.next();
      auto res = l.try_append(r);
      if (r.len() > ~total) {
        REQUIRE(res.error() == errc::overflow);
        continue;
      }
      REQUIRE(res);
      total += r.len();
      model_append(model, r);
    }
    CAPTURE(seed);
    REQUIRE(l.total_bytes() == total);
    check_round_trip(l, model);
  }
}

TEST_CASE("packed round trip: try_append_all, try_append and the plan_entry rule give equal words",
          "[packed][property]") {
  // The append fast paths (direct-I/O chunks, single pages, aligned blocks) must pick exactly
  // plan_entry's entry: build the same input three ways and compare words with the encoding
  // the rule gives each model range. Chunk-heavy inputs cross many segment boundaries.
  for (std::uint64_t seed = 1; seed <= 40; ++seed) {
    CAPTURE(seed);
    range_gen g{std::mt19937_64(seed * 7919)};
    std::vector<phys_range> in;
    std::vector<phys_range> model;
    std::uint64_t total = 0;
    const int n = static_cast<int>(1 + g.below(seed % 4 == 0 ? 3000 : 300));
    for (int i = 0; i < n; ++i) {
      phys_range r;
      switch (g.below(4)) {
        case 0:  // a 512-byte sector in its own 1 KiB slot, maybe adjacent to the last one
          r = phys_range{phys_addr{(g.below(std::uint64_t{1} << 30) * 1024) |
                                   (g.below(2) ? 512 : 0)},
                         512, seed % 3 == 0 ? g.flags() : range_flags::none};
          break;
        case 1:  // one page, or an aligned block
          r = g.clamp(g.below(std::uint64_t{1} << 30) * page * 4, page << g.below(3),
                      seed % 3 == 0 ? g.flags() : range_flags::none);
          break;
        default:
          r = g.next();
      }
      g.prev = r;
      if (r.len() > ~total) continue;
      total += r.len();
      in.push_back(r);
      model_append(model, r);
    }
    std::vector<std::uint32_t> want;
    for (std::size_t i = 0; i < model.size(); ++i) {
      const auto p = phyr::packed_format::plan_entry(model[i].addr().value(), model[i].len(),
                                              static_cast<std::uint8_t>(model[i].flags()),
                                              i == 0, i + 1 == model.size());
      const std::size_t at = want.size();
      want.resize(at + p.words);
      phyr::packed_format::write_plan(p, want.data() + at);
    }
    list all;
    REQUIRE(all.try_append_all(in));
    list one;
    for (const phys_range& r : in) REQUIRE(one.try_append(r));
    // And in pieces, so try_append_all starts from a list with a tail and committed entries.
    list split;
    REQUIRE(split.try_append_all(std::span(in).first(in.size() / 2)));
    REQUIRE(split.try_append_all(std::span(in).subspan(in.size() / 2)));
    for (const list* l : {&all, &one, &split}) {
      REQUIRE(words_of(*l) == want);
      check_round_trip(*l, model);
    }
  }
}

TEST_CASE("packed round trip: for_each reports flags once any range had them, also after clear",
          "[packed]") {
  list l;
  for (std::uint64_t i = 0; i < 500; ++i) REQUIRE(l.try_append(phys_range{phys_addr{i * 2048}, 512}));
  REQUIRE(l.try_append(phys_range{phys_addr{0x100000000}, 512, range_flags::driver0}));
  REQUIRE(l.try_append(phys_range{phys_addr{0x200000000}, page}));
  REQUIRE(l.try_append(phys_range{phys_addr{0x300000000}, page, range_flags::pinned}));
  REQUIRE(l.try_append(phys_range{phys_addr{0x400000000}, 100}));
  std::vector<phys_range> fe;
  l.for_each([&](phys_range r) { fe.push_back(r); });
  REQUIRE(fe == ranges_of(l));
  REQUIRE(fe[500].flags() == range_flags::driver0);
  REQUIRE(fe[502].flags() == range_flags::pinned);
  l.clear();
  for (std::uint64_t i = 0; i < 3; ++i) REQUIRE(l.try_append(phys_range{phys_addr{i * 8192}, page}));
  fe.clear();
  l.for_each([&](phys_range r) { fe.push_back(r); });
  REQUIRE(fe == ranges_of(l));
  REQUIRE(fe.size() == 3);
}

TEST_CASE("packed round trip: range_list -> packed_list -> range_list is lossless",
          "[packed][property][range_list]") {
  for (std::uint64_t seed = 100; seed < 140; ++seed) {
    range_gen g{std::mt19937_64(seed)};
    phyr::range_list<phys_range> rl;
    std::vector<phys_range> model;
    std::uint64_t total = 0;
    for (int i = 0; i < 150; ++i) {
      const phys_range r = g.next();
      if (r.len() > ~total) continue;
      total += r.len();
      REQUIRE(rl.try_append(r));
      model_append(model, r);
    }
    CAPTURE(seed);
    REQUIRE(ranges_of(rl) == model);
    auto pl = list::from_ranges(rl);
    REQUIRE(pl);
    check_round_trip(*pl, model);
    auto back = pl->try_to_range_list();
    REQUIRE(back);
    REQUIRE(ranges_of(*back) == model);
    REQUIRE(back->total_bytes() == rl.total_bytes());
    // Views work as sources too.
    auto pv = list::from_ranges(rl.view());
    REQUIRE(pv);
    REQUIRE(ranges_of(*pv) == model);
  }
}

TEST_CASE("packed round trip: try_append_pages matches range_list::try_append_pages",
          "[packed][property][pages]") {
  for (std::uint64_t seed = 200; seed < 260; ++seed) {
    std::mt19937_64 rng(seed);
    list l;
    phyr::range_list<phys_range> rl;
    const int calls = 1 + static_cast<int>(rng() % 6);
    for (int c = 0; c < calls; ++c) {
      // Runs of random length, sometimes continuing the previous call's last page.
      std::vector<std::uint64_t> pfns;
      const std::size_t n = 1 + rng() % (seed % 4 == 0 ? 3000 : 200);
      std::uint64_t pfn = (c > 0 && rng() % 2) ? 0 : rng() % (std::uint64_t{1} << 40);
      if (pfn == 0 && rl.size() != 0) pfn = (rl.back().end().value() >> 12);
      while (pfns.size() < n) {
        const std::uint64_t run = 1 + (rng() % 3 == 0 ? rng() % 700 : 0);
        for (std::uint64_t k = 0; k < run && pfns.size() < n; ++k) pfns.push_back(pfn + k);
        pfn = (rng() % 4 == 0) ? ((pfn + run + 512) & ~std::uint64_t{511})
                               : rng() % (std::uint64_t{1} << 40);
      }
      const std::uint64_t off = rng() % 3 == 0 ? rng() % page : 0;
      const std::uint64_t cut = rng() % 3 == 0 ? rng() % page : 0;
      std::uint64_t total = n * page - off - cut;
      if (total == 0) total = 1;
      const auto f = static_cast<range_flags>(rng() % 5 == 0 ? 0x40 : rng() % 4);
      auto a = l.try_append_pages(pfns, off, total, f);
      auto b = rl.try_append_pages(pfns, off, total, f);
      REQUIRE(a.has_value() == b.has_value());
    }
    CAPTURE(seed);
    const auto model = ranges_of(rl);
    check_round_trip(l, model);
    REQUIRE(l.total_bytes() == rl.total_bytes());
  }
}

TEST_CASE("packed round trip: blocks() matches expanding the model's ranges",
          "[packed][property][blocks]") {
  std::mt19937_64 rng(77);
  for (int t = 0; t < 40; ++t) {
    list l;
    std::vector<phys_range> model;
    const unsigned shift = 9 + static_cast<unsigned>(rng() % 13);  // 512 B .. 2 MiB blocks
    const std::uint64_t bs = std::uint64_t{1} << shift;
    const int n = 1 + static_cast<int>(rng() % 60);
    for (int i = 0; i < n; ++i) {
      // interior boundaries on bs; the first start and the last end anywhere
      std::uint64_t a = (rng() % (std::uint64_t{1} << 30)) << shift;
      std::uint64_t len = bs * (1 + rng() % 8);
      if (i == 0) {
        const std::uint64_t o = rng() % bs;
        a += o;
        len -= o;
      }
      if (i + 1 == n) len -= rng() % bs;
      if (len == 0) len = 1;
      const phys_range r{phys_addr{a}, len, static_cast<range_flags>(rng() % 3)};
      REQUIRE(l.try_append(r));
      model_append(model, r);
    }
    auto b = l.try_blocks(bs);
    REQUIRE(b);
    std::vector<std::uint64_t> want;
    for (const phys_range& r : model)
      for (std::uint64_t a = r.addr().value() & ~(bs - 1); a <= r.last().value(); a += bs)
        want.push_back(a);
    std::vector<std::uint64_t> got;
    for (phys_addr a : *b) got.push_back(a.value());
    REQUIRE(got == want);
    REQUIRE(b->size() == want.size());
    std::vector<std::uint64_t> fe;
    REQUIRE(l.try_for_each_block(bs, [&](phys_addr a) { fe.push_back(a.value()); }));
    REQUIRE(fe == want);
  }
}

TEST_CASE("packed fault injection: every allocation failure leaves the list unchanged, no leaks",
          "[packed][alloc]") {
  std::vector<std::uint64_t> pfns;
  for (std::uint64_t i = 0; i < 4000; ++i) pfns.push_back(i % 5 == 0 ? 3 * i + 1 : 3 * i);
  range_gen g{std::mt19937_64(9)};
  std::vector<phys_range> extra;
  for (int i = 0; i < 400; ++i) extra.push_back(g.next());
  extra.push_back(phys_range{phys_addr{0x10}, max_len, range_flags::driver5});  // a chain
  extra.push_back(phys_range{phys_addr{0x20}, page});

  phyr::fault_state fs;
  bool done = false;
  std::uint64_t k = 1;
  for (; !done; ++k) {
    REQUIRE(k < 10000);
    fs = phyr::fault_state{};
    {
      flist l{phyr::fault_injecting_allocator{&fs}};
      REQUIRE(l.try_append_pages(std::span(pfns).first(100), 0, 100 * page));
      const auto before = ranges_of(l);
      const auto words = words_of(l);
      const std::int64_t live = fs.live;
      fs.fail_at = fs.calls + k;  // the k-th allocation from here on fails
      auto r = l.try_append_pages(pfns, 0x80, pfns.size() * page - 0x80);
      if (r) {
        auto t = l.try_append_all(extra);
        if (t) {
          // Clone and conversions allocate too.
          auto c = l.try_clone();
          if (c) {
            auto rl = l.try_to_range_list(phyr::fault_injecting_allocator{&fs});
            if (rl) {
              auto back = flist::from_ranges(*rl, phyr::fault_injecting_allocator{&fs});
              if (back) {
                auto w = words_of(l);
                auto fw = flist::from_words(l.header(), w, phyr::fault_injecting_allocator{&fs});
                if (fw) {
                  done = fs.failures == 0;
                  REQUIRE(ranges_of(*fw) == ranges_of(l));
                } else {
                  REQUIRE(fw.error() == errc::out_of_memory);
                }
                if (!done) REQUIRE(fs.failures == 1);
                if (back) REQUIRE(ranges_of(*back) == ranges_of(l));
              } else {
                REQUIRE(back.error() == errc::out_of_memory);
              }
            } else {
              REQUIRE(rl.error() == errc::out_of_memory);
            }
            REQUIRE(ranges_of(*c) == ranges_of(l));
          } else {
            REQUIRE(c.error() == errc::out_of_memory);
          }
        } else {
          REQUIRE(t.error() == errc::out_of_memory);  // state checked in the next test case
        }
      } else {
        REQUIRE(r.error() == errc::out_of_memory);
        REQUIRE(ranges_of(l) == before);
        REQUIRE(words_of(l) == words);
        REQUIRE(fs.live == live);
      }
    }
    REQUIRE(fs.live == 0);
    REQUIRE(fs.live_bytes == 0);
  }
  CHECK(k > 20);  // every segment of pages, batch, clone, conversions and from_words failed once
}

TEST_CASE("packed fault injection: try_append of chunk after chunk fails cleanly at every allocation",
          "[packed][alloc]") {
  for (std::uint64_t k = 1; k <= 6; ++k) {
    phyr::fault_state fs;
    {
      flist l{phyr::fault_injecting_allocator{&fs}};
      fs.fail_at = k;
      std::vector<phys_range> model;
      bool failed = false;
      for (std::uint64_t i = 0; i < 1500 && !failed; ++i) {
        const phys_range r{phys_addr{i * 3072 + (i % 3 == 0 ? 0 : 512)}, 512};
        const auto words = words_of(l);
        const auto header = l.header();
        const auto res = l.try_append(r);
        if (!res) {
          REQUIRE(res.error() == errc::out_of_memory);
          REQUIRE(words_of(l) == words);
          REQUIRE(l.header() == header);
          REQUIRE(ranges_of(l) == model);
          failed = true;
        } else {
          model_append(model, r);
        }
      }
      REQUIRE(failed);
      REQUIRE(ranges_of(l) == model);
    }
    REQUIRE(fs.live == 0);
  }
}

TEST_CASE("packed fault injection: a failed try_append_all restores the exact prior state",
          "[packed][alloc]") {
  range_gen g{std::mt19937_64(31)};
  std::vector<phys_range> first, batch;
  for (int i = 0; i < 50; ++i) first.push_back(g.next());
  for (int i = 0; i < 300; ++i) batch.push_back(g.next());
  std::vector<phys_range> more = batch;  // longer than batch: needs spares and new segments
  for (int i = 0; i < 300; ++i) more.push_back(g.next());
  phyr::fault_state fs;
  for (std::uint64_t k = 1;; ++k) {
    REQUIRE(k < 2000);
    fs = phyr::fault_state{};
    bool ok = false;
    {
      flist l{phyr::fault_injecting_allocator{&fs}};
      if (k % 2 == 0) {  // every other round: a reused list, with spare segments
        REQUIRE(l.try_append_all(batch));
        l.clear();
      }
      REQUIRE(l.try_append_all(first));
      const auto before = ranges_of(l);
      const auto words = words_of(l);
      const auto header = l.header();
      const auto used = l.bytes_used();
      const auto live = fs.live;
      fs.fail_at = fs.calls + (k + 1) / 2;
      auto r = l.try_append_all(more);
      if (r) {
        ok = fs.failures == 0 && k % 2 == 1;
      } else {
        REQUIRE(r.error() == errc::out_of_memory);
        REQUIRE(ranges_of(l) == before);
        REQUIRE(words_of(l) == words);
        REQUIRE(l.header() == header);
        REQUIRE(l.bytes_used() == used);
        REQUIRE(fs.live == live);
      }
    }
    REQUIRE(fs.live == 0);
    if (ok) break;
  }
}

TEST_CASE("packed traces: the pagemap traces encode losslessly and densely", "[packed][trace]") {
  struct trace {
    const char* file;
    std::size_t runs;
  };
  for (trace t : {trace{"pagemap-256MiB-4k.u64", 1556}, trace{"pagemap-256MiB-thp.u64", 49}}) {
    const std::string path = std::string(PHYR_TEST_DATA_DIR) + "/pagemap/" + t.file;
    CAPTURE(path);
    std::FILE* f = std::fopen(path.c_str(), "rb");
    REQUIRE(f != nullptr);
    std::vector<std::uint64_t> pfns(65536);
    const std::size_t got = std::fread(pfns.data(), 8, pfns.size(), f);
    std::fclose(f);
    REQUIRE(got == pfns.size());
    list l;
    REQUIRE(l.try_append_pages(pfns, 0, pfns.size() * page));
    phyr::range_list<phys_range> rl;
    REQUIRE(rl.try_append_pages(pfns, 0, pfns.size() * page));
    CAPTURE(t.file);
    CHECK(l.size() == t.runs);
    check_round_trip(l, ranges_of(rl));
    // Scatterlist layout: 32 bytes per entry plus one chain slot per full 128-entry array.
    const std::uint64_t sg = 32 * (t.runs + (t.runs - 1) / 127);
    CHECK(l.entry_bytes() * 3 < sg);
  }
}
