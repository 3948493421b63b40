// container/range_source.hpp: for_each_range reads every source exactly as its iterators do
// (segment walks of range_list, its views and slices, the identity mapping and split()), stops
// when asked, and is what the device/ passes now read lists with.
#include <catch2/catch.hpp>

#include <array>
#include <cstdint>
#include <phyr/container/range_list.hpp>
#include <phyr/container/range_source.hpp>
#include <phyr/device/nvme/prp.hpp>
#include <phyr/device/split.hpp>
#include <phyr/map/identity_mapper.hpp>
#include <random>
#include <span>
#include <vector>

#include "support/phys_ranges.hpp"

namespace {
using namespace phyr_test;
using list = phyr::range_list<phys_range>;
struct bus0 {};
using dma = phyr::dma_range<bus0>;

template <class It>
std::vector<typename std::iterator_traits<It>::value_type> stepped(It first, It last) {
  std::vector<typename std::iterator_traits<It>::value_type> v;
  for (; first != last; ++first) v.push_back(*first);
  return v;
}

template <class It>
std::vector<typename std::iterator_traits<It>::value_type> walked(It first, It last) {
  std::vector<typename std::iterator_traits<It>::value_type> v;
  const bool done = phyr::for_each_range(first, last, [&](const auto& r) { v.push_back(r); });
  CHECK(done);
  return v;
}

// Walks until `stop` ranges were seen; the callback returns false at the last of them.
template <class It>
std::size_t walked_until(It first, It last, std::size_t stop, bool& done) {
  std::size_t seen = 0;
  done = phyr::for_each_range(first, last, [&](const auto&) { return ++seen < stop; });
  return seen;
}

// A list of `n` entries, none coalescing (gaps between them), so it spans heap segments.
list random_list(std::mt19937_64& g, std::size_t n) {
  list l;
  std::uint64_t a = 0x1000;
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint64_t len = 1 + g() % 0x3000;
    phyr::must(l.try_append(pr(a, len, (g() & 1) != 0 ? range_flags::pinned : range_flags::none)));
    a += len + 1 + g() % 0x1000;
  }
  return l;
}

}  // namespace

TEST_CASE("for_each_range walks a range_list, its views and slices exactly as their iterators") {
  std::mt19937_64 g(0xf0eac4ull);
  for (int iter = 0; iter < 300; ++iter) {
    INFO("iteration " << iter);
    const std::size_t n = 1 + g() % 700;  // up to several heap segments
    const list l = random_list(g, n);
    REQUIRE(l.size() == n);
    CHECK(walked(l.begin(), l.end()) == stepped(l.begin(), l.end()));
    const auto v = l.view();
    CHECK(walked(v.begin(), v.end()) == stepped(v.begin(), v.end()));

    // Sub-ranges [i, j) of the list's and the view's iterators, across segment ends.
    const std::size_t i = g() % n, j = i + g() % (n - i + 1);
    auto li = l.begin(), lj = l.begin();
    auto vi = v.begin(), vj = v.begin();
    for (std::size_t k = 0; k < i; ++k) ++li, ++vi;
    for (std::size_t k = 0; k < j; ++k) ++lj, ++vj;
    CHECK(walked(li, lj) == stepped(li, lj));
    CHECK(walked(vi, vj) == stepped(vi, vj));
    CHECK(walked(li, l.end()) == stepped(li, l.end()));

    // A trimmed slice: its first and last entries are cut.
    const std::uint64_t off = g() % l.total_bytes();
    const std::uint64_t len = 1 + g() % (l.total_bytes() - off);
    const auto s = phyr::must(l.try_slice(off, len));
    const auto want = stepped(s.begin(), s.end());
    CHECK(walked(s.begin(), s.end()) == want);
    std::uint64_t bytes = 0;
    for (const phys_range& r : want) bytes += r.len();
    CHECK(bytes == len);
  }
}

TEST_CASE("for_each_range stops at the range whose callback returns false, and says so") {
  std::mt19937_64 g(0x570bull);
  const list l = random_list(g, 600);
  for (const std::size_t stop : {std::size_t{1}, std::size_t{2}, std::size_t{3}, std::size_t{255},
                                 std::size_t{256}, std::size_t{599}}) {
    INFO("stop " << stop);
    bool done = true;
    CHECK(walked_until(l.begin(), l.end(), stop, done) == stop);
    CHECK_FALSE(done);
    const auto v = l.view();
    CHECK(walked_until(v.begin(), v.end(), stop, done) == stop);
    CHECK_FALSE(done);
  }
  bool done = false;
  CHECK(walked_until(l.begin(), l.end(), 600, done) == 600);
  CHECK_FALSE(done);  // the 600th call returned false, even though it was the last range
  CHECK(walked_until(l.begin(), l.end(), 601, done) == 600);
  CHECK(done);
  const list empty;
  CHECK(walked_until(empty.begin(), empty.end(), 1, done) == 0);
  CHECK(done);
}

TEST_CASE("for_each_range reads an identity mapping as DMA ranges, and spans by their pointers") {
  std::mt19937_64 g(0x1de7ull);
  const list l = random_list(g, 500);
  const phyr::identity_mapper<bus0> m;
  auto mp = phyr::must(m.try_map(l, phyr::dma_direction::to_device));
  const std::vector<dma> want = stepped(mp.begin(), mp.end());
  REQUIRE(want.size() == 500);
  std::vector<dma> got;
  CHECK(phyr::for_each_range(mp, [&](const dma& r) { got.push_back(r); }));
  CHECK(got == want);
  CHECK(want.front().addr().value() == l.front().addr().value());
  CHECK(want.back().flags() == l.back().flags());

  const std::vector<phys_range> vec = stepped(l.begin(), l.end());
  const std::span<const phys_range> sp{vec};
  CHECK(walked(sp.begin(), sp.end()) == vec);
  phyr::must(m.try_unmap(std::move(mp)));
}

TEST_CASE("split's for_each yields the segments its iterators yield, from any source") {
  std::mt19937_64 g(0x5b117ull);
  const phyr::identity_mapper<bus0> m;
  for (int iter = 0; iter < 200; ++iter) {
    INFO("iteration " << iter);
    const list l = random_list(g, 1 + g() % 400);
    const auto c = phyr::must(phyr::checked_constraints::create(phyr::dma_constraints{
        .max_segment_size = std::uint64_t{0x200} << (g() % 6),
        .segment_boundary_mask = (std::uint64_t{0x1000} << (g() % 5)) - 1}));
    const auto sv = phyr::split(l, c);
    const auto want = stepped(sv.begin(), sv.end());
    std::vector<phys_range> got;
    CHECK(sv.for_each([&](const phys_range& r) { got.push_back(r); }));
    CHECK(got == want);
    // From a position inside an entry: the rest of that entry, then the others.
    auto it = sv.begin();
    const std::size_t skip = g() % want.size();
    for (std::size_t k = 0; k < skip; ++k) ++it;
    CHECK(walked(it, sv.end()) == std::vector<phys_range>(want.begin() + static_cast<long>(skip),
                                                          want.end()));
    // To a position that is not the end: stepped, same segments.
    CHECK(walked(sv.begin(), it) ==
          std::vector<phys_range>(want.begin(), want.begin() + static_cast<long>(skip)));
    // Early stop.
    std::size_t seen = 0;
    const bool all = sv.for_each([&](const phys_range&) { return ++seen < 2; });
    CHECK(all == (want.size() < 2));
    CHECK(seen == (want.size() < 2 ? want.size() : 2));

    // Through a mapping and a slice.
    auto mp = phyr::must(m.try_map(l, phyr::dma_direction::from_device));
    const auto dv = phyr::split(mp, c);
    std::vector<dma> dgot;
    dv.for_each([&](const dma& r) { dgot.push_back(r); });
    CHECK(dgot == stepped(dv.begin(), dv.end()));
    phyr::must(m.try_unmap(std::move(mp)));
    const std::uint64_t off = g() % l.total_bytes();
    const auto s = phyr::must(l.try_slice(off, l.total_bytes() - off));
    const auto ss = phyr::split(s, c);
    std::vector<phys_range> sgot;
    ss.for_each([&](const phys_range& r) { sgot.push_back(r); });
    CHECK(sgot == stepped(ss.begin(), ss.end()));
  }
}

TEST_CASE("split's for_each skips the zero-length entries of an unvalidated span") {
  const std::array in{pr(0x1000, 0x100), phys_range{}, pr(0x3000, 0x2000), phys_range{}};
  const auto c = phyr::must(
      phyr::checked_constraints::create(phyr::dma_constraints{.max_segment_size = 0x1000}));
  std::vector<phys_range> got;
  phyr::split(in, c).for_each([&](const phys_range& r) { got.push_back(r); });
  CHECK(got == std::vector<phys_range>{pr(0x1000, 0x100), pr(0x3000, 0x1000), pr(0x4000, 0x1000)});
}

TEST_CASE("plans and PRP lists of a multi-segment list equal those of the same ranges in a span") {
  // The device passes read lists through for_each_range: a list (segment walk) and a vector of
  // the same ranges (pointer steps) must give the same answers, errors included.
  std::mt19937_64 g(0x9a7eull);
  const phyr::identity_mapper<bus0> m;
  for (int iter = 0; iter < 200; ++iter) {
    INFO("iteration " << iter);
    list l;
    std::vector<dma> same;
    const std::size_t n = 1 + g() % 600;
    std::uint64_t a = 0x100000;
    for (std::size_t k = 0; k < n; ++k) {
      // Mostly whole pages (PRP-able), sometimes an odd piece that makes a page_gap.
      const std::uint64_t len = (g() % 50 == 0) ? 0x800 : 0x1000 * (1 + g() % 3);
      phyr::must(l.try_append(pr(a, len)));
      a += len + 0x1000;
    }
    for (const phys_range& r : l) same.push_back(dma{phyr::dma_addr<bus0>{r.addr().value()}, r.len()});
    auto mp = phyr::must(m.try_map(l, phyr::dma_direction::to_device));

    const auto c = phyr::must(phyr::checked_constraints::create(
        phyr::dma_constraints{.max_segments = 1 + g() % 1200}));
    std::uint64_t need_a = 0, need_b = 0;
    const auto pa = phyr::try_plan_split(mp, c, {}, &need_a);
    const auto pb = phyr::try_plan_split(std::span<const dma>{same}, c, {}, &need_b);
    REQUIRE(pa.has_value() == pb.has_value());
    CHECK(need_a == need_b);
    if (pa) CHECK(*pa == *pb);
    else CHECK(pa.error() == pb.error());

    std::vector<std::uint64_t> wa(8 * 512, 0), wb(8 * 512, 0);
    const auto ra = phyr::nvme::try_build_prp<bus0>(mp, 4096, wa, phyr::dma_addr<bus0>{0x10000});
    const auto rb = phyr::nvme::try_build_prp<bus0>(std::span<const dma>{same}, 4096, wb,
                                                     phyr::dma_addr<bus0>{0x10000});
    REQUIRE(ra.has_value() == rb.has_value());
    if (ra) {
      CHECK(ra->prp1 == rb->prp1);
      CHECK(ra->prp2 == rb->prp2);
      CHECK(ra->entries == rb->entries);
      CHECK(ra->words_used == rb->words_used);
    } else {
      CHECK(ra.error() == rb.error());
    }
    CHECK(wa == wb);
    phyr::must(m.try_unmap(std::move(mp)));
  }
}
