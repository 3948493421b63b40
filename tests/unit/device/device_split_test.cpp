// device/split.hpp: try_plan_split, split, try_split against the rules and a byte-level model,
// and FreeBSD busdma's splitting numbers.
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cstdint>
#include <iterator>
#include <phyr/container/range_list.hpp>
#include <phyr/device/split.hpp>
#include <phyr/map/identity_mapper.hpp>
#include <random>
#include <ranges>
#include <span>
#include <utility>
#include <vector>

#include "support/phys_ranges.hpp"

namespace {
using namespace phyr_test;
using phyr::dma_constraints;
using phyr::gap_policy;
using phyr::merge_policy;
using list = phyr::range_list<phys_range>;
struct nvme0 {};

phyr::checked_constraints ok(const dma_constraints& c) {
  return phyr::must(phyr::checked_constraints::create(c));
}

template <class L>
std::vector<phys_range> segments(const L& l, const dma_constraints& c,
                                 merge_policy m = merge_policy::keep_entries) {
  // Iterated, and walked with for_each (which cuts straight from the source's walk and passes
  // uncut entries on as they are): both must yield the same segments.
  std::vector<phys_range> out, walked;
  auto keep = [&](const phys_range& s) { walked.push_back(s); };
  if (m == merge_policy::merge_contiguous) {
    const auto v = phyr::split<merge_policy::merge_contiguous>(l, ok(c));
    for (const phys_range s : v) out.push_back(s);
    CHECK(v.for_each(keep));
  } else {
    const auto v = phyr::split(l, ok(c));
    for (const phys_range s : v) out.push_back(s);
    CHECK(v.for_each(keep));
  }
  CHECK(walked == out);
  return out;
}

// A requires-expression on concrete types must sit in a template to be SFINAE-friendly.
template <class L, class C = phyr::checked_constraints>
concept splittable = requires(L&& l, const C& c) {
  phyr::split(std::forward<L>(l), c);
};

// ---- the byte-level model -----------------------------------------------------------------------

// Runs split() cuts as one range: every entry alone, or contiguous equal-flag entries merged.
std::vector<phys_range> model_runs(const std::vector<phys_range>& in, merge_policy m) {
  std::vector<phys_range> runs;
  for (const phys_range& r : in) {
    if (m == merge_policy::merge_contiguous && !runs.empty() &&
        runs.back().last().value() != ~0ull && runs.back().last().value() + 1 == r.addr().value() &&
        runs.back().flags() == r.flags()) {
      runs.back() = pr(runs.back().addr().value(), runs.back().len() + r.len(), r.flags());
    } else {
      runs.push_back(r);
    }
  }
  return runs;
}

// Walks every byte: a segment ends before a byte that sits on a (mask + 1) boundary or would
// make it longer than the limit (max segment size rounded down to alignment and unit).
std::vector<phys_range> model_split(const std::vector<phys_range>& in, const dma_constraints& c,
                                    merge_policy m = merge_policy::keep_entries) {
  const std::uint64_t unit = std::max(c.alignment, c.min_transfer_unit);
  const std::uint64_t limit = c.max_segment_size / unit * unit;
  std::vector<phys_range> out;
  for (const phys_range& r : model_runs(in, m)) {
    std::uint64_t start = r.addr().value();
    for (std::uint64_t i = 1; i < r.len(); ++i) {
      const std::uint64_t b = r.addr().value() + i;
      if ((b & c.segment_boundary_mask) == 0 || b - start == limit) {
        out.push_back(pr(start, b - start, r.flags()));
        start = b;
      }
    }
    out.push_back(pr(start, r.last().value() + 1 - start, r.flags()));
  }
  return out;
}

bool model_reaches(const phys_range& r, const dma_constraints& c) {
  for (std::uint64_t k = 0; k < r.len(); ++k) {
    const std::uint64_t b = r.addr().value() + k;
    if (b > c.dma_mask) return false;
    for (const phyr::address_window& w : c.excluded)
      if (b >= w.addr && b - w.addr < w.len) return false;
  }
  return true;
}

// The planning rules, byte by byte and entry by entry (a run's transfer unit at its end).
phyr::result<phyr::split_plan> model_plan(const std::vector<phys_range>& in,
                                          const dma_constraints& c, phyr::split_options o,
                                          std::uint64_t* needed = nullptr) {
  phyr::split_plan s;
  std::vector<phys_range> run;  // entries of the current run
  auto run_units_ok = [&] {
    for (const phys_range& x : model_split(run, c, merge_policy::merge_contiguous))
      if (x.len() % c.min_transfer_unit != 0) return false;
    return true;
  };
  for (std::size_t i = 0; i < in.size(); ++i) {
    const phys_range& r = in[i];
    const bool contiguous = i != 0 && in[i - 1].last().value() != ~0ull &&
                            in[i - 1].last().value() + 1 == r.addr().value();
    const bool joins = o.merge == merge_policy::merge_contiguous && contiguous &&
                       r.flags() == run.back().flags();
    if (!joins) {
      if (!run.empty() && !run_units_ok()) return errc::misaligned;
      run.clear();
    }
    if (!model_reaches(r, c)) return errc::not_addressable;
    if (!joins) {
      if (r.addr().value() % c.alignment != 0) return errc::misaligned;
      if (i != 0 && c.virt_boundary_mask != 0 && !contiguous) {
        const std::uint64_t prev_next = in[i - 1].last().value() + 1;
        const std::uint64_t unit = c.virt_boundary_mask + 1;
        if (prev_next % unit != 0 || r.addr().value() % unit != 0) {
          if (o.gaps == gap_policy::reject) return errc::misaligned;
          if (s.gaps++ == 0) s.first_gap = i;
        }
      }
    }
    run.push_back(r);
    s.bytes += r.len();
    ++s.entries;
  }
  if (!run_units_ok()) return errc::misaligned;
  s.segments = model_split(in, c, o.merge).size();
  if (s.bytes > c.max_total_bytes) return errc::too_long;
  if (s.segments > c.max_segments) {
    if (needed != nullptr) *needed = s.segments;
    return errc::too_many_segments;
  }
  return s;
}

std::uint64_t pick(std::mt19937_64& g, std::uint64_t lo, std::uint64_t hi) {
  return std::uniform_int_distribution<std::uint64_t>{lo, hi}(g);
}

dma_constraints random_constraints(std::mt19937_64& g) {
  dma_constraints c;
  c.alignment = std::uint64_t{1} << pick(g, 0, 5);
  const unsigned k = static_cast<unsigned>(pick(g, 5, 12));
  c.segment_boundary_mask = pick(g, 0, 4) == 0 ? ~0ull : (std::uint64_t{1} << k) - 1;
  c.max_segment_size = pick(g, c.alignment, 900);
  c.virt_boundary_mask = pick(g, 0, 2) == 0 ? 0 : (std::uint64_t{1} << pick(g, 2, 9)) - 1;
  c.dma_mask = pick(g, 0, 3) == 0 ? pick(g, 0, 1 << 16) : ~0ull;
  c.min_transfer_unit = pick(g, 0, 2) == 0 ? std::uint64_t{1} << pick(g, 1, 4) : 1;
  c.max_segment_size = pick(g, std::max(c.alignment, c.min_transfer_unit), 900);
  if (pick(g, 0, 3) == 0) c.max_segments = pick(g, 1, 12);
  if (pick(g, 0, 4) == 0) c.max_total_bytes = pick(g, 1, 8000);
  for (std::uint64_t n = pick(g, 0, 2); n != 0; --n) {
    if (pick(g, 0, 1) == 0) continue;
    (void)c.excluded.try_add({pick(g, 0, 1 << 18), pick(g, 1, 1 << 14)});
  }
  return c;
}

// Entries near a random base: sometimes adjacent, sometimes on page-ish boundaries, near the
// top of the address space now and then.
std::vector<phys_range> random_list(std::mt19937_64& g) {
  std::vector<phys_range> v;
  const std::size_t n = pick(g, 1, 7);
  std::uint64_t base = pick(g, 0, 3) == 0 ? ~0ull - (1 << 20) : pick(g, 0, 1 << 18);
  base &= ~((std::uint64_t{1} << pick(g, 0, 10)) - 1);
  for (std::size_t i = 0; i < n; ++i) {
    std::uint64_t len = pick(g, 1, 2500);
    if (pick(g, 0, 1) == 0) len = (len + 15) & ~15ull;  // whole transfer units now and then
    v.push_back(pr(base, len, pick(g, 0, 3) == 0 ? range_flags::pinned : range_flags::none));
    const std::uint64_t next = base + len;
    switch (pick(g, 0, 3)) {
      case 0: base = next; break;                                      // contiguous
      case 1: base = (next + 4095) & ~4095ull; break;                  // next page
      case 2: base = next + pick(g, 1, 3000); break;                   // a gap anywhere
      default: base = (next & ~511ull) + 512 * pick(g, 1, 8); break;   // 512-aligned
    }
    if (base > ~0ull - 4096) break;
  }
  return v;
}

// The same entries without size(): try_plan_split cannot tell a one-entry list, so it runs the
// pass (the sized list of one entry skips it).
struct sizeless {
  const std::vector<phys_range>* v;
  [[nodiscard]] auto begin() const { return v->begin(); }
  [[nodiscard]] auto end() const { return v->end(); }
};

}  // namespace

TEST_CASE("split passes a range within the limits through unchanged, flags included") {
  list l;
  phyr::must(l.try_append(pr(0x10200, 0x3000, range_flags::pinned)));
  const auto s = segments(l, dma_constraints{});
  REQUIRE(s.size() == 1);
  CHECK(s[0] == pr(0x10200, 0x3000, range_flags::pinned));
}

TEST_CASE("an entry as long as the limit, or ending at a boundary, is one segment, a byte more is cut") {
  const dma_constraints c{.max_segment_size = 0x1000, .segment_boundary_mask = 0xffff};
  // At the limit, one byte short of it, one byte past it; ending at the boundary and crossing it
  // by one byte; and an entry the size of the limit that crosses the boundary.
  const std::array in{pr(0x2000, 0x1000, range_flags::pinned), pr(0x4000, 0xfff),
                      pr(0x6000, 0x1001),  pr(0xff00, 0x100),  pr(0x1ff00, 0x101),
                      pr(0x2f800, 0x1000)};
  const std::vector<phys_range> want{
      pr(0x2000, 0x1000, range_flags::pinned), pr(0x4000, 0xfff), pr(0x6000, 0x1000),
      pr(0x7000, 0x1),  pr(0xff00, 0x100),  pr(0x1ff00, 0x100), pr(0x20000, 0x1),
      pr(0x2f800, 0x800), pr(0x30000, 0x800)};
  CHECK(segments(in, c) == want);  // a span: no counters
  list l;
  for (const phys_range& r : in) phyr::must(l.try_append(r));
  REQUIRE(l.size() == in.size());
  CHECK(segments(l, c) == want);  // a counted list, also through try_split
  const auto t = phyr::try_split(l, ok(c));
  REQUIRE(t);
  std::vector<phys_range> got;
  CHECK(t->for_each([&](const phys_range& s) { got.push_back(s); }));
  CHECK(got == want);
}

TEST_CASE("a one-entry view anywhere in a list splits as that entry, cut or passed through") {
  // An exact slice of entry k is an untrimmed view of one entry at index k of its segment,
  // which the segment walk hands to split's for_each without its loop: it must read entry k
  // (not the segment's first), in the inline part and in heap segments alike.
  const dma_constraints c{.max_segment_size = 0x2000, .segment_boundary_mask = 0xffff};
  list l;
  std::vector<phys_range> in;
  std::uint64_t offset = 0;
  for (std::uint64_t k = 0; k < 40; ++k) {
    // Lengths 0x1000..0x5000: some entries pass through, some are cut (and some cross 64K).
    in.push_back(pr(0x100000 + k * 0x13000 + (k % 3) * 0xf000, 0x1000 * (1 + k % 5)));
    phyr::must(l.try_append(in.back()));
  }
  REQUIRE(l.size() == in.size());
  for (std::size_t k = 0; k < in.size(); ++k) {
    const auto v = l.try_slice(offset, in[k].len());
    REQUIRE(v);
    REQUIRE(v->size() == 1);
    const std::vector<phys_range> want = segments(std::array{in[k]}, c);
    CHECK(segments(*v, c) == want);
    offset += in[k].len();
  }
}

TEST_CASE("split cuts a long range into max_segment_size pieces and a remainder") {
  list l;
  phyr::must(l.try_append(pr(0x100000, 0x25000)));
  const auto s = segments(l, dma_constraints{});
  REQUIRE(s.size() == 3);
  CHECK(s[0] == pr(0x100000, 0x10000));
  CHECK(s[1] == pr(0x110000, 0x10000));
  CHECK(s[2] == pr(0x120000, 0x5000));
}

TEST_CASE("split never lets a segment cross a multiple of segment_boundary_mask + 1") {
  list l;
  phyr::must(l.try_append(pr(0xffffe000, 0x3000)));  // crosses 4 GiB
  const auto s = segments(l, dma_constraints{});
  REQUIRE(s.size() == 2);
  CHECK(s[0] == pr(0xffffe000, 0x2000));
  CHECK(s[1] == pr(0x100000000, 0x1000));

  // The boundary restarts the max-size count: 0x800 before it, then full pieces.
  const dma_constraints c{.max_segment_size = 0x1000, .segment_boundary_mask = 0xffff};
  const auto t = segments(std::array{pr(0xf800, 0x2900)}, c);
  REQUIRE(t.size() == 4);
  CHECK(t[0] == pr(0xf800, 0x800));
  CHECK(t[1] == pr(0x10000, 0x1000));
  CHECK(t[2] == pr(0x11000, 0x1000));
  CHECK(t[3] == pr(0x12000, 0x100));
}

TEST_CASE("split handles a range ending at 2^64 with no boundary and no size limit") {
  const dma_constraints c{.max_segment_size = phys_range::max_len, .segment_boundary_mask = ~0ull};
  const auto s = segments(std::array{pr(~0ull - 0xfff, 0x1000)}, c);
  REQUIRE(s.size() == 1);
  CHECK(s[0].last().value() == ~0ull);
  const auto st = phyr::try_plan_split(std::array{pr(~0ull - 0xfff, 0x1000)}, c);
  REQUIRE(st);
  CHECK(st->segments == 1);
}

TEST_CASE("split rounds max_segment_size down to the alignment so every cut starts aligned") {
  const dma_constraints c{.max_segment_size = 1000, .alignment = 512};
  STATIC_REQUIRE(dma_constraints{.max_segment_size = 1000, .alignment = 512}.segment_limit() ==
                 512);
  const auto s = segments(std::array{pr(0x1000, 1300)}, c);
  REQUIRE(s.size() == 3);
  CHECK(s[1].addr().value() == 0x1200);
  CHECK(s[2] == pr(0x1400, 276));
}

TEST_CASE("try_plan_split counts the segments split yields, per entry in closed form") {
  list l;
  phyr::must(l.try_append(pr(0xffff0000, 0x30000)));  // 0x10000 below 4 GiB, 0x20000 above
  phyr::must(l.try_append(pr(0x200000000, 0x1234)));
  const auto st = phyr::try_plan_split(l, dma_constraints{});
  REQUIRE(st);
  CHECK(st->entries == 2);
  CHECK(st->bytes == 0x31234);
  CHECK(st->segments == 4);
  CHECK(st->segments == segments(l, dma_constraints{}).size());
  CHECK_FALSE(st->needs_bounce());

  // A 1 GiB hugepage at 64 KiB per segment: 16384 segments, counted without walking them.
  const auto big = phyr::try_plan_split(std::array{pr(0x40000000, 1ull << 30)}, dma_constraints{});
  REQUIRE(big);
  CHECK(big->segments == 16384);
}

TEST_CASE("try_plan_split reports bad lists with the errc of the first offending entry") {
  const dma_constraints c{.alignment = 512, .dma_mask = 0xffffffff};
  SECTION("constraints that fail check()") {
    CHECK(phyr::try_plan_split(std::array{pr(0, 512)}, dma_constraints{.alignment = 3}).error() ==
          errc::invalid_argument);
  }
  SECTION("an empty list") {
    list empty;
    CHECK(phyr::try_plan_split(empty, c).error() == errc::invalid_argument);
  }
  SECTION("a zero-length entry (a default range in a span)") {
    const std::array<phys_range, 2> a{pr(0x1000, 512), phys_range{}};
    CHECK(phyr::try_plan_split(std::span{a}, c).error() == errc::invalid_argument);
    // and with only a segment size and boundary (the pass's counting-only loop)
    CHECK(phyr::try_plan_split(std::span{a}, dma_constraints{}).error() == errc::invalid_argument);
  }
  SECTION("a byte above the DMA mask") {
    CHECK(phyr::try_plan_split(std::array{pr(0xfffffe00, 512)}, c).has_value());
    CHECK(phyr::try_plan_split(std::array{pr(0xfffffe00, 513)}, c).error() ==
          errc::not_addressable);
  }
  SECTION("a start not aligned to the required alignment") {
    CHECK(phyr::try_plan_split(std::array{pr(0x1000, 512), pr(0x2100, 512)}, c).error() ==
          errc::misaligned);
  }
  SECTION("a total length past 2^64 - 1") {
    const std::vector<phys_range> v(257, pr(0, phys_range::max_len));
    CHECK(phyr::try_plan_split(v, dma_constraints{.segment_boundary_mask = ~0ull}).error() ==
          errc::overflow);
  }
  SECTION("a policy outside the enumeration") {
    CHECK(phyr::try_plan_split(std::array{pr(0, 512)}, c, {.gaps = static_cast<gap_policy>(7)})
              .error() == errc::invalid_argument);
    CHECK(phyr::try_plan_split(std::array{pr(0, 512)}, c,
                               {.merge = static_cast<merge_policy>(7)})
              .error() == errc::invalid_argument);
  }
}

TEST_CASE("the virtual boundary allows an unaligned first start and last end, not a gap") {
  const dma_constraints nvme{.max_segment_size = 0xffffffff, .alignment = 4,
                             .virt_boundary_mask = 4095};
  // First starts mid-page, last ends mid-page, every gap is page aligned on both sides.
  const std::array ok{pr(0x10200, 0xe00), pr(0x30000, 0x2000), pr(0x50000, 0x10)};
  const auto st = phyr::try_plan_split(ok, nvme);
  REQUIRE(st);
  CHECK_FALSE(st->needs_bounce());

  // A middle entry ending mid-page leaves a gap the device cannot describe.
  const std::array bad{pr(0x10200, 0xe00), pr(0x30000, 0x1800), pr(0x50000, 0x1000)};
  CHECK(phyr::try_plan_split(bad, nvme).error() == errc::misaligned);
  // A middle entry starting mid-page, likewise.
  const std::array bad2{pr(0x10000, 0x1000), pr(0x30200, 0xe00), pr(0x50000, 0x1000)};
  CHECK(phyr::try_plan_split(bad2, nvme).error() == errc::misaligned);
}

TEST_CASE("gap_policy::report counts virtual-boundary gaps as 'bounce needed' instead of failing") {
  const dma_constraints nvme{.max_segment_size = 0xffffffff, .virt_boundary_mask = 4095};
  const std::array bad{pr(0x10000, 0x1000), pr(0x30000, 0x1800), pr(0x50000, 0x1000),
                       pr(0x70100, 0x100)};
  const auto st = phyr::try_plan_split(bad, nvme, {.gaps = gap_policy::report});
  REQUIRE(st);
  CHECK(st->needs_bounce());
  CHECK(st->gaps == 2);
  CHECK(st->first_gap == 2);
  CHECK(st->entries == 4);
  // Other errors still fail under report.
  CHECK(phyr::try_plan_split(bad, dma_constraints{.virt_boundary_mask = 4095, .dma_mask = 0xffff},
                               {.gaps = gap_policy::report})
            .error() == errc::not_addressable);
}

TEST_CASE("a junction without a gap is not a virtual-boundary violation") {
  // Adjacent entries with different flags meet mid-page: the bytes are contiguous.
  const dma_constraints c{.max_segment_size = 0x800, .virt_boundary_mask = 4095};
  const std::array l{pr(0x10000, 0x1234), pr(0x11234, 0xdcc, range_flags::pinned)};
  const auto st = phyr::try_plan_split(l, c);
  REQUIRE(st);
  CHECK(st->gaps == 0);
  // split's own cuts (every 0x800 bytes, mid-page) are contiguous too.
  CHECK(st->segments == segments(l, c).size());
}

TEST_CASE("try_split plans then splits; split takes only checked constraints") {
  const std::array l{pr(0x1000, 0x3000)};
  const auto v = phyr::try_split(l, dma_constraints{.max_segment_size = 0x1000});
  REQUIRE(v);
  CHECK(std::distance(v->begin(), v->end()) == 3);
  CHECK(phyr::try_split(l, dma_constraints{.alignment = 0x2000}).error() == errc::misaligned);
  CHECK(phyr::try_split(l, dma_constraints{.max_segment_size = 0}).error() ==
        errc::invalid_argument);
  // Contradictory limits cannot reach split(): there is no checked_constraints for them, and a
  // plain dma_constraints does not convert.
  CHECK(phyr::checked_constraints::create(dma_constraints{.max_segment_size = 0}).error() ==
        errc::invalid_argument);
  STATIC_REQUIRE_FALSE(splittable<decltype((l)), dma_constraints>);
  STATIC_REQUIRE(splittable<decltype((l)), phyr::checked_constraints>);
}

TEST_CASE("split skips zero-length entries of an unvalidated span instead of looping") {
  const std::array<phys_range, 4> a{phys_range{}, pr(0x1000, 0x10), phys_range{}, phys_range{}};
  const auto s = segments(std::span{a}, dma_constraints{});
  REQUIRE(s.size() == 1);
  CHECK(s[0] == pr(0x1000, 0x10));
}

TEST_CASE("split of a DMA mapping yields DMA ranges of that bus") {
  list cpu;
  phyr::must(cpu.try_append(pr(0x80000, 0x30000, range_flags::pinned)));
  phyr::identity_mapper<nvme0> m;
  auto mp = phyr::must(m.try_map(cpu, phyr::dma_direction::to_device));
  auto v = phyr::split(mp, ok(dma_constraints{}));
  STATIC_REQUIRE(std::same_as<decltype(*v.begin()), phyr::dma_range<nvme0>>);
  std::vector<phyr::dma_range<nvme0>> out(v.begin(), v.end());
  REQUIRE(out.size() == 3);
  CHECK(out[2].addr().value() == 0xa0000);
  CHECK(out[2].flags() == range_flags::pinned);
  const auto st = phyr::try_plan_split(mp, dma_constraints{});
  REQUIRE(st);
  CHECK(st->segments == 3);
  phyr::must(m.try_unmap(std::move(mp)));
}

TEST_CASE("split's result is a multi-pass forward range and works at compile time") {
  using view = decltype(phyr::split(std::declval<const list&>(), ok(dma_constraints{})));
  STATIC_REQUIRE(std::forward_iterator<view::iterator>);
  STATIC_REQUIRE(std::ranges::forward_range<view>);
  STATIC_REQUIRE(phyr::range_source<view>);  // split output feeds other device/ functions

  constexpr auto count = [] {
    constexpr std::array l{phys_range{phys_addr{0xfff0}, 0x30}, phys_range{phys_addr{0x20000}, 9}};
    const auto c = phyr::checked_constraints::create(
        dma_constraints{.max_segment_size = 0x10, .segment_boundary_mask = 0xffff});
    std::size_t n = 0;
    for (const phys_range s : phyr::split(l, *c)) n += s.len() != 0 ? 1 : 0;
    return n;
  }();
  STATIC_REQUIRE(count == 4);
  constexpr auto st = phyr::try_plan_split(
      std::array{phys_range{phys_addr{0xfff0}, 0x30}, phys_range{phys_addr{0x20000}, 9}},
      dma_constraints{.max_segment_size = 0x10, .segment_boundary_mask = 0xffff});
  STATIC_REQUIRE(st.value().segments == 4);

  list l;
  phyr::must(l.try_append(pr(0, 0x30000)));
  const auto v = phyr::split(l, ok(dma_constraints{}));
  auto a = v.begin();
  auto b = a;
  CHECK(*a++ == *b);
  CHECK(a != b);
  CHECK(*++b == *a);
  CHECK(a == b);
}

TEST_CASE("split keeps iterators only into lvalues or borrowed views, never a temporary list") {
  STATIC_REQUIRE(splittable<const list&>);
  STATIC_REQUIRE(splittable<list&>);
  STATIC_REQUIRE(splittable<phyr::range_list_view<phys_range>>);  // a temporary view is fine
  STATIC_REQUIRE(splittable<std::span<const phys_range>>);
  STATIC_REQUIRE_FALSE(splittable<list>);  // its segments die with it
  STATIC_REQUIRE_FALSE(splittable<std::vector<phys_range>>);
  STATIC_REQUIRE_FALSE(splittable<std::vector<int>&>);
}

TEST_CASE("split and try_plan_split match the byte-level model on seeded random lists") {
  std::mt19937_64 g(0x5eed5117ull);
  int planned = 0, merged_differs = 0, too_many = 0, counts_only = 0, one_entry = 0;
  for (int iter = 0; iter < 4000; ++iter) {
    const dma_constraints c = random_constraints(g);
    REQUIRE(c.check());
    const std::vector<phys_range> in = random_list(g);
    const phyr::split_options o{
        .gaps = pick(g, 0, 1) == 0 ? gap_policy::reject : gap_policy::report,
        .merge = pick(g, 0, 1) == 0 ? merge_policy::keep_entries : merge_policy::merge_contiguous};
    INFO("iteration " << iter);
    // The pass's counting-only loop (only the segment size and boundary limit the device):
    // the same model must hold for it.
    if (o.merge == merge_policy::keep_entries && c.alignment == 1 && c.min_transfer_unit == 1 &&
        c.virt_boundary_mask == 0 && c.excluded.empty() && c.dma_mask == ~0ull)
      ++counts_only;

    const auto want = model_split(in, c, o.merge);
    CHECK(segments(in, c, o.merge) == want);
    if (want.size() != model_split(in, c, merge_policy::keep_entries).size()) ++merged_differs;

    std::uint64_t needed = 0, want_needed = 0;
    const auto got = phyr::try_plan_split(in, c, o, &needed);
    const auto exp = model_plan(in, c, o, &want_needed);
    REQUIRE(got.has_value() == exp.has_value());
    CHECK(needed == want_needed);
    // One entry: the sized list's shortcut against the pass over the same entry.
    if (in.size() == 1) {
      ++one_entry;
      std::uint64_t pass_needed = 0;
      const auto pass = phyr::try_plan_split(sizeless{&in}, c, o, &pass_needed);
      REQUIRE(pass.has_value() == got.has_value());
      CHECK(pass_needed == needed);
      if (pass) CHECK(*pass == *got);
      else CHECK(pass.error() == got.error());
    }
    if (!exp) {
      CHECK(got.error() == exp.error());
      if (exp.error() == errc::too_many_segments) {
        ++too_many;
        CHECK(needed == want.size());
      }
      continue;
    }
    ++planned;
    CHECK(*got == *exp);
    for (const phys_range& s : want) {
      CHECK(s.addr().value() % c.alignment == 0);
      CHECK(s.len() <= c.max_segment_size);
      CHECK(s.len() % c.min_transfer_unit == 0);
      CHECK((s.addr().value() & ~c.segment_boundary_mask) ==
            (s.last().value() & ~c.segment_boundary_mask));
    }
  }
  CHECK(planned > 300);  // the generator reaches the success path often enough
  CHECK(merged_differs > 50);
  CHECK(too_many > 50);
  CHECK(counts_only > 30);
  CHECK(one_entry > 300);
}

TEST_CASE("try_split answers from a counted source's counters when only size and boundary limit") {
  STATIC_REQUIRE(phyr::enable_counted_source<list>);
  STATIC_REQUIRE(phyr::enable_counted_source<phyr::range_list_view<phys_range>>);
  STATIC_REQUIRE(phyr::enable_counted_source<phyr::identity_mapping<nvme0>>);
  STATIC_REQUIRE_FALSE(phyr::enable_counted_source<std::vector<phys_range>>);
  STATIC_REQUIRE_FALSE(phyr::enable_counted_source<std::span<const phys_range>>);
  const phyr::identity_mapper<nvme0> m;
  std::mt19937_64 g(0xc0a7edull);
  int counted_ok = 0, counted_errors = 0, other = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    INFO("iteration " << iter);
    dma_constraints c = random_constraints(g);
    // Half the time the family the counters answer for: any size, boundary, mask, total and
    // virtual boundary (answered when the gap summary shows it kept), nothing else.
    const bool counted = pick(g, 0, 1) == 0;
    if (counted) {
      c.alignment = 1;
      c.min_transfer_unit = 1;
      c.excluded = {};
      c.max_segments = ~0ull;
      c.max_segment_size = pick(g, 1, 900);
    }
    REQUIRE(c.check());
    list l;
    bool appended = true;
    for (const phys_range& r : random_list(g)) appended = appended && l.try_append(r).has_value();
    if (!appended) continue;
    // The same entries (appending may have merged some) as a source with no counters: the pass.
    const std::vector<phys_range> entries(l.begin(), l.end());
    const auto want = phyr::try_plan_split(sizeless{&entries}, c);
    const auto got = phyr::try_split(l, ok(c));
    REQUIRE(got.has_value() == want.has_value());
    auto mp = phyr::must(m.try_map(l, phyr::dma_direction::to_device));
    const auto got_dma = phyr::try_split(mp, ok(c));
    REQUIRE(got_dma.has_value() == want.has_value());
    if (!want) {
      CHECK(got.error() == want.error());
      CHECK(got_dma.error() == want.error());
      if (counted) ++counted_errors;
    } else {
      std::vector<phys_range> segs, dma_segs;
      got->for_each([&](const phys_range& x) { segs.push_back(x); });
      got_dma->for_each([&](const phyr::dma_range<nvme0>& x) {
        dma_segs.push_back(pr(x.addr().value(), x.len(), x.flags()));
      });
      CHECK(segs == model_split(entries, c));
      CHECK(dma_segs == segs);
      if (counted) ++counted_ok;
    }
    if (!counted) ++other;
    phyr::must(m.try_unmap(std::move(mp)));
  }
  CHECK(counted_ok > 300);
  CHECK(counted_errors > 100);  // above the DMA mask, over the total, a virtual-boundary gap
  CHECK(other > 1000);
  // An empty list is refused as the pass refuses it.
  const list empty;
  CHECK(phyr::try_split(empty, ok(dma_constraints{})).error() == errc::invalid_argument);
}

// ---- FreeBSD busdma anchors (sys/x86/x86/busdma_bounce.c, sys/x86/x86/busdma_machdep.c) -------

TEST_CASE("busdma: boundary 64K / maxsegsz 64K cuts 0x1F000+0x3000 at the 64K line") {
  const dma_constraints c{.max_segment_size = 0x10000, .segment_boundary_mask = 0xffff};
  const auto s = segments(std::array{pr(0x1f000, 0x3000)}, c);
  REQUIRE(s.size() == 2);
  CHECK(s[0] == pr(0x1f000, 0x1000));
  CHECK(s[1] == pr(0x20000, 0x2000));
  CHECK(phyr::try_plan_split(std::array{pr(0x1f000, 0x3000)}, c)->segments == 2);
}

TEST_CASE("busdma: a 4K boundary clamps maxsegsz, so 0xFF0+0x20 becomes two 0x10 segments") {
  const dma_constraints dev{.max_segment_size = 0x10000, .segment_boundary_mask = 0xfff};
  // bus_dma_tag_create's clamp: maxsegsz = min(maxsegsz, boundary).
  const auto tag = phyr::must(phyr::try_combine(dma_constraints::unlimited(), dev));
  CHECK(tag.max_segment_size == 0x1000);
  const auto s = segments(std::array{pr(0xff0, 0x20)}, tag);
  REQUIRE(s.size() == 2);
  CHECK(s[0] == pr(0xff0, 0x10));
  CHECK(s[1] == pr(0x1000, 0x10));
}

TEST_CASE("busdma: three separated pages with nsegments 2 are too_many_segments (EFBIG), "
          "reported with the count needed before anything is mapped") {
  const dma_constraints c{.max_segments = 2};
  const std::array pages{pr(0x10000, 0x1000), pr(0x30000, 0x1000), pr(0x50000, 0x1000)};
  std::uint64_t needed = 0;
  const auto st = phyr::try_plan_split(pages, c, {}, &needed);
  REQUIRE_FALSE(st);
  CHECK(st.error() == errc::too_many_segments);
  CHECK(needed == 3);
  // Merging cannot help separated pages; it does help contiguous ones, as busdma's coalescing.
  CHECK(phyr::try_plan_split(pages, c, {.merge = merge_policy::merge_contiguous}).error() ==
        errc::too_many_segments);
  const std::array adjacent{pr(0x10000, 0x1000), pr(0x11000, 0x1000), pr(0x12000, 0x1000)};
  CHECK(phyr::try_plan_split(adjacent, c).error() == errc::too_many_segments);
  const auto merged = phyr::try_plan_split(adjacent, c, {.merge = merge_policy::merge_contiguous});
  REQUIRE(merged);
  CHECK(merged->segments == 1);
  CHECK(phyr::try_split<merge_policy::merge_contiguous>(adjacent, c).has_value());
}

TEST_CASE("merging is off by default and merges only contiguous entries with equal flags") {
  const std::array l{pr(0x10000, 0x800), pr(0x10800, 0x800), pr(0x11000, 0x800, range_flags::pinned),
                     pr(0x20000, 0x100)};
  const auto keep = segments(l, dma_constraints{});
  REQUIRE(keep.size() == 4);
  const auto merged = segments(l, dma_constraints{}, merge_policy::merge_contiguous);
  REQUIRE(merged.size() == 3);
  CHECK(merged[0] == pr(0x10000, 0x1000));
  CHECK(merged[1] == pr(0x11000, 0x800, range_flags::pinned));
  CHECK(merged[2] == pr(0x20000, 0x100));
  // A merged run is still cut at the limit and the boundary.
  const dma_constraints small{.max_segment_size = 0xc00, .segment_boundary_mask = 0xffff};
  const auto cut = segments(std::array{pr(0xf800, 0x400), pr(0xfc00, 0x800)}, small,
                            merge_policy::merge_contiguous);
  REQUIRE(cut.size() == 2);
  CHECK(cut[0] == pr(0xf800, 0x800));
  CHECK(cut[1] == pr(0x10000, 0x400));
}

TEST_CASE("a merged run longer than the longest range is cut at max_len, never into a range "
          "that cannot exist") {
  // Found by device_fuzz: with no size limit a run of two contiguous max_len entries would
  // have been one segment of 2 * max_len bytes, a phys_range that cannot be represented.
  constexpr std::uint64_t m = phys_range::max_len;
  const std::array l{pr(0, m), pr(m, m)};
  const dma_constraints none = dma_constraints::unlimited();
  const auto merged = segments(l, none, merge_policy::merge_contiguous);
  REQUIRE(merged.size() == 2);
  CHECK(merged[0] == pr(0, m));
  CHECK(merged[1] == pr(m, m));
  auto plan = phyr::try_plan_split(l, none, {.merge = merge_policy::merge_contiguous});
  REQUIRE(plan);
  CHECK(plan->segments == 2);
  CHECK(none.segment_limit() == m);
  // An alignment above the longest range leaves nothing to cut: refused.
  CHECK(dma_constraints{.max_segment_size = ~std::uint64_t{0},
                        .segment_boundary_mask = ~std::uint64_t{0},
                        .alignment = std::uint64_t{1} << 60}
            .check()
            .error() == errc::invalid_argument);
}

TEST_CASE("try_plan_split enforces max_total_bytes, excluded windows and the transfer unit") {
  SECTION("more bytes than max_total_bytes is too_long") {
    const dma_constraints c{.max_total_bytes = 0x2000};
    CHECK(phyr::try_plan_split(std::array{pr(0, 0x2000)}, c).has_value());
    CHECK(phyr::try_plan_split(std::array{pr(0, 0x1000), pr(0x5000, 0x1001)}, c).error() ==
          errc::too_long);
  }
  SECTION("a byte in an excluded window is not_addressable, a byte beside it is fine") {
    const dma_constraints c{.excluded = {{0xa0000, 0x60000}}};  // the legacy VGA/BIOS hole
    CHECK(phyr::try_plan_split(std::array{pr(0x9f000, 0x1000)}, c).has_value());
    CHECK(phyr::try_plan_split(std::array{pr(0x9f000, 0x1001)}, c).error() ==
          errc::not_addressable);
    CHECK(phyr::try_plan_split(std::array{pr(0xfffff, 2)}, c).error() == errc::not_addressable);
    CHECK(phyr::try_plan_split(std::array{pr(0x100000, 1)}, c).has_value());
  }
  SECTION("segment lengths must be whole transfer units") {
    const dma_constraints c{.segment_boundary_mask = 0xfff, .min_transfer_unit = 512};
    CHECK(phyr::try_plan_split(std::array{pr(0x200, 0x400)}, c).has_value());
    CHECK(phyr::try_plan_split(std::array{pr(0x200, 0x300)}, c).error() == errc::misaligned);
    // Unaligned start but no boundary cut: one segment of whole units.
    CHECK(phyr::try_plan_split(std::array{pr(0x10, 0x400)}, c).has_value());
    // Unaligned start cut at the 4K boundary: 0xf0 bytes before it, not a whole unit.
    CHECK(phyr::try_plan_split(std::array{pr(0xf10, 0x400)}, c).error() == errc::misaligned);
  }
}
