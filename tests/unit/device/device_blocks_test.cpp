// device/blocks.hpp: try_blocks against the rules and a byte-level model.
#include <catch2/catch.hpp>

#include <array>
#include <cstdint>
#include <iterator>
#include <phyr/container/range_list.hpp>
#include <phyr/device/blocks.hpp>
#include <phyr/packed/packed_list.hpp>
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
using list = phyr::range_list<phys_range>;
struct rnic {};

template <class V>
std::vector<std::uint64_t> addrs(const V& v) {
  std::vector<std::uint64_t> out;
  for (const auto a : v) out.push_back(a.value());
  return out;
}

template <class L>
concept blockable = requires(L&& l) { phyr::try_blocks(std::forward<L>(l), 4096); };

// ---- the byte-level model -----------------------------------------------------------------------

struct model_result {
  bool ok = false;
  std::vector<std::uint64_t> blocks;
  std::uint64_t first_offset = 0;
};

// Walks every byte in order: a byte opens a new block when it is not in the block last listed,
// or when it does not follow the previous byte (a gap); at a gap both sides must sit on block
// boundaries.
model_result model_blocks(const std::vector<phys_range>& in, std::uint64_t bs) {
  model_result m;
  bool first = true;
  std::uint64_t prev = 0;
  for (const phys_range& r : in) {
    for (std::uint64_t k = 0; k < r.len(); ++k) {
      const std::uint64_t b = r.addr().value() + k;
      const std::uint64_t blk = b / bs * bs;
      if (first) {
        m.blocks.push_back(blk);
        m.first_offset = b % bs;
        first = false;
      } else if (prev == ~0ull || b != prev + 1) {
        if ((prev + 1) % bs != 0 || b % bs != 0) return m;
        m.blocks.push_back(blk);
      } else if (blk != m.blocks.back()) {
        m.blocks.push_back(blk);
      }
      prev = b;
    }
  }
  m.ok = true;
  return m;
}

std::uint64_t pick(std::mt19937_64& g, std::uint64_t lo, std::uint64_t hi) {
  return std::uniform_int_distribution<std::uint64_t>{lo, hi}(g);
}

// Runs of block-aligned chunks (so most lists are valid), each run cut into adjacent entries
// at arbitrary points, with unaligned ends and stray offsets now and then.
std::vector<phys_range> random_list(std::mt19937_64& g, std::uint64_t bs) {
  std::vector<phys_range> v;
  const std::size_t runs = pick(g, 1, 5);
  std::uint64_t base = pick(g, 0, 3) == 0 ? ~0ull - 64 * bs : pick(g, 0, 1 << 20) / bs * bs;
  for (std::size_t i = 0; i < runs; ++i) {
    std::uint64_t start = base;
    std::uint64_t len = pick(g, 1, 6) * bs;
    if (i == 0) {
      const std::uint64_t off = pick(g, 0, bs - 1);
      start += off;
      len -= off;
    }
    if (i + 1 == runs || pick(g, 0, 9) == 0) len -= pick(g, 0, len - 1);  // unaligned end
    if (pick(g, 0, 9) == 0) start += pick(g, 1, bs - 1);                   // unaligned start
    // Cut the run into adjacent entries with different flags.
    std::uint64_t a = start;
    std::uint64_t left = len;
    while (left != 0) {
      const std::uint64_t piece = pick(g, 0, 2) == 0 ? left : pick(g, 1, left);
      v.push_back(pr(a, piece, pick(g, 0, 1) == 0 ? range_flags::pinned : range_flags::none));
      a += piece;
      left -= piece;
    }
    const std::uint64_t end = (a + bs - 1) / bs * bs;
    if (end < a || end > ~0ull - 16 * bs) break;
    base = end + pick(g, 1, 8) * bs;
  }
  return v;
}

}  // namespace

TEST_CASE("try_blocks lists the block of the first byte first and reports the offset in it") {
  list l;
  phyr::must(l.try_append(pr(0x10234, 0x2000)));  // ends at 0x12233
  const auto b = phyr::try_blocks(l, 0x1000);
  REQUIRE(b);
  CHECK(b->first_offset() == 0x234);
  CHECK(b->size() == 3);
  CHECK(b->block_size() == 0x1000);
  CHECK(b->total_bytes() == 0x2000);
  CHECK(addrs(*b) == std::vector<std::uint64_t>{0x10000, 0x11000, 0x12000});
}

TEST_CASE("try_blocks walks discontiguous runs whose gaps sit on block boundaries") {
  const std::array l{pr(0x10800, 0x800), pr(0x40000, 0x2000), pr(0x90000, 0x10)};
  const auto b = phyr::try_blocks(l, 0x1000);
  REQUIRE(b);
  CHECK(addrs(*b) == std::vector<std::uint64_t>{0x10000, 0x40000, 0x41000, 0x90000});
  CHECK(b->first_offset() == 0x800);
}

TEST_CASE("try_blocks refuses a gap that leaves a partial block with misaligned") {
  // The middle run ends mid-block.
  const std::array ends_mid{pr(0x10000, 0x1000), pr(0x40000, 0x1800), pr(0x90000, 0x10)};
  CHECK(phyr::try_blocks(ends_mid, 0x1000).error() == errc::misaligned);
  // The second run starts mid-block.
  const std::array starts_mid{pr(0x10000, 0x1000), pr(0x40800, 0x800)};
  CHECK(phyr::try_blocks(starts_mid, 0x1000).error() == errc::misaligned);
  // Both are fine with a smaller block.
  CHECK(phyr::try_blocks(ends_mid, 0x800).has_value());
  CHECK(phyr::try_blocks(starts_mid, 0x800).has_value());
}

TEST_CASE("try_blocks treats contiguous neighbours as one run and lists a shared block once") {
  // Three entries (different flags) meeting mid-block; the middle one lies inside one block.
  const std::array l{pr(0x10000, 0x1234), pr(0x11234, 0x10, range_flags::pinned),
                     pr(0x11244, 0x1dbc)};
  const auto b = phyr::try_blocks(l, 0x1000);
  REQUIRE(b);
  CHECK(addrs(*b) == std::vector<std::uint64_t>{0x10000, 0x11000, 0x12000});
  CHECK(b->size() == 3);
}

TEST_CASE("try_blocks reports bad input with invalid_argument or overflow") {
  const std::array l{pr(0x1000, 0x1000)};
  CHECK(phyr::try_blocks(l, 0).error() == errc::invalid_argument);
  CHECK(phyr::try_blocks(l, 3000).error() == errc::invalid_argument);
  list empty;
  CHECK(phyr::try_blocks(empty, 4096).error() == errc::invalid_argument);
  const std::array<phys_range, 2> z{pr(0x1000, 0x1000), phys_range{}};
  CHECK(phyr::try_blocks(std::span{z}, 4096).error() == errc::invalid_argument);
  const std::vector<phys_range> huge(257, pr(0, phys_range::max_len));
  CHECK(phyr::try_blocks(huge, 1).error() == errc::overflow);
}

TEST_CASE("try_blocks covers a range ending at 2^64 and blocks of one byte") {
  const std::array top{pr(~0ull - 0x1fff, 0x2000)};
  const auto b = phyr::try_blocks(top, 0x1000);
  REQUIRE(b);
  CHECK(addrs(*b) == std::vector<std::uint64_t>{~0ull - 0x1fff, ~0ull - 0xfff});
  const std::array bytes{pr(0x10, 3), pr(0x20, 2)};
  const auto one = phyr::try_blocks(bytes, 1);
  REQUIRE(one);
  CHECK(addrs(*one) == std::vector<std::uint64_t>{0x10, 0x11, 0x12, 0x20, 0x21});
  // A block as large as the address space allows.
  const std::array small{pr(0x1234, 10)};
  const auto big = phyr::try_blocks(small, 1ull << 63);
  REQUIRE(big);
  CHECK(addrs(*big) == std::vector<std::uint64_t>{0});
  CHECK(big->first_offset() == 0x1234);
}

TEST_CASE("try_blocks of a DMA mapping yields DMA addresses of that bus") {
  list cpu;
  phyr::must(cpu.try_append(pr(0x200000, 0x400000)));
  phyr::identity_mapper<rnic> m;
  auto mp = phyr::must(m.try_map(cpu, phyr::dma_direction::bidirectional));
  const auto b = phyr::try_blocks(mp, 2 << 20);
  REQUIRE(b);
  STATIC_REQUIRE(std::same_as<decltype(*b->begin()), phyr::dma_addr<rnic>>);
  STATIC_REQUIRE_FALSE(std::equality_comparable_with<decltype(*b->begin()), phys_addr>);
  CHECK(addrs(*b) == std::vector<std::uint64_t>{0x200000, 0x400000});
  phyr::must(m.try_unmap(std::move(mp)));
}

TEST_CASE("try_blocks composes with split: blocks of the hardware segments") {
  list l;
  phyr::must(l.try_append(pr(0x100000, 0x30000)));
  const auto c = phyr::must(phyr::checked_constraints::create(phyr::dma_constraints{}));
  const auto segs = phyr::split(l, c);  // three 64 KiB-or-less pieces
  const auto b = phyr::try_blocks(segs, 0x10000);
  REQUIRE(b);
  CHECK(b->size() == 3);
}

TEST_CASE("block iteration is a multi-pass forward range and works at compile time") {
  using view = decltype(phyr::try_blocks(std::declval<const list&>(), 4096).value());
  STATIC_REQUIRE(std::forward_iterator<typename std::remove_cvref_t<view>::iterator>);
  STATIC_REQUIRE(std::ranges::forward_range<std::remove_cvref_t<view>>);

  constexpr auto sum = [] {
    constexpr std::array l{phys_range{phys_addr{0x1800}, 0x800},
                           phys_range{phys_addr{0x8000}, 0x2000}};
    std::uint64_t s = 0;
    const auto b = phyr::try_blocks(l, 0x1000).value();  // a copy: the result is a temporary
    for (const auto a : b) s += a.value();
    return s;
  }();
  STATIC_REQUIRE(sum == 0x1000 + 0x8000 + 0x9000);

  list l;
  phyr::must(l.try_append(pr(0, 0x4000)));
  const auto b = phyr::must(phyr::try_blocks(l, 0x1000));
  CHECK(addrs(b) == addrs(b));
  auto x = b.begin();
  auto y = x;
  CHECK((*x++).value() == 0);
  CHECK(x != y);
  CHECK((*++y).value() == 0x1000);
  CHECK(x == y);
  CHECK(std::distance(b.begin(), b.end()) == 4);
}

TEST_CASE("try_blocks keeps iterators only into lvalues or borrowed views") {
  STATIC_REQUIRE(blockable<const list&>);
  STATIC_REQUIRE(blockable<phyr::range_list_view<phys_range>>);
  STATIC_REQUIRE_FALSE(blockable<list>);
  STATIC_REQUIRE_FALSE(blockable<std::vector<phys_range>>);
}

TEST_CASE("try_blocks matches the byte-level model on seeded random lists") {
  std::mt19937_64 g(0xb10c5ull);
  int valid = 0;
  int invalid = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    const std::uint64_t bs = std::uint64_t{1} << pick(g, 0, 9);
    const std::vector<phys_range> in = random_list(g, bs);
    INFO("iteration " << iter << " block size " << bs);
    const model_result want = model_blocks(in, bs);
    const auto got = phyr::try_blocks(in, bs);
    REQUIRE(got.has_value() == want.ok);
    if (!want.ok) {
      CHECK(got.error() == errc::misaligned);
      ++invalid;
      continue;
    }
    ++valid;
    CHECK(addrs(*got) == want.blocks);
    CHECK(got->size() == want.blocks.size());
    CHECK(got->first_offset() == want.first_offset);
  }
  CHECK(valid > 1000);
  CHECK(invalid > 100);
}

TEST_CASE("run_block_view joins contiguous entries whatever their flags; packed_list's "
          "block_view needs every entry boundary on a block") {
  // Two contiguous entries that differ only in flags and meet mid-block.
  const std::array l{pr(0x10000, 0x1800), pr(0x11800, 0x800, phyr::range_flags::pinned)};
  const auto b = phyr::try_blocks(l, 0x1000);
  REQUIRE(b);
  CHECK(addrs(*b) == std::vector<std::uint64_t>{0x10000, 0x11000});
  phyr::packed_list<phyr::cpu_phys> pl;
  for (const phys_range& r : l) phyr::must(pl.try_append(r));
  REQUIRE(pl.size() == 2);  // the flags keep them apart
  CHECK(pl.try_blocks(0x1000).error() == phyr::errc::misaligned);
  // Where both succeed they agree.
  CHECK(pl.try_blocks(0x800).has_value());
  std::vector<std::uint64_t> packed;
  for (const auto a : *pl.try_blocks(0x800)) packed.push_back(a.value());
  CHECK(packed == addrs(*phyr::try_blocks(l, 0x800)));
}
