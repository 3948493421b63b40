// packed/encoding.hpp: the entry layout at compile time, the size of every mode boundary, and
// a brute-force check that plan_entry picks the smallest entry.
#include <catch2/catch.hpp>

#include <cstdint>
#include <phyr/packed/encoding.hpp>
#include <random>

namespace {

namespace pf = phyr::packed_format;
using phyr::packed_mode;
using phyr::packed_format::plan_entry;

constexpr std::uint64_t page = 4096;
constexpr std::uint64_t pg(std::uint64_t pfn) { return pfn * page; }

// Encodes then decodes in a constant expression: {start, len, flags, words} of the entry.
struct rt {
  std::uint64_t start, len;
  std::uint8_t flags;
  unsigned words;
  packed_mode mode;
};
constexpr rt roundtrip(std::uint64_t addr, std::uint64_t len, std::uint8_t flags, bool f = false,
                       bool b = false) {
  const auto p = plan_entry(addr, len, flags, f, b);
  std::uint32_t w[4] = {};
  phyr::packed_format::write_plan(p, w);
  const auto e = phyr::packed_format::decode_entry(w);
  return {e.start, e.len, e.flags, e.words, e.mode};
}

}  // namespace

TEST_CASE("packed format: the head word is pfn 51..0, order 56..52, flags 61..57, mode 63..62",
          "[packed][format][static]") {
  STATIC_REQUIRE(pf::pfn::offset == 0 && pf::pfn::width == 52);
  STATIC_REQUIRE(pf::order::offset == 52 && pf::order::width == 5);
  STATIC_REQUIRE(pf::flags::offset == 57 && pf::flags::width == 5);
  STATIC_REQUIRE(pf::mode::offset == 62 && pf::mode::width == 2);
  STATIC_REQUIRE(pf::head_layout::complete);
  STATIC_REQUIRE(pf::run_layout::complete);
  STATIC_REQUIRE(pf::bytes_layout::complete);
  STATIC_REQUIRE(pf::escape_layout::complete);
  STATIC_REQUIRE(pf::bytes_offset::width == 12 && pf::bytes_len_low::width == 20);
  STATIC_REQUIRE(pf::max_bytes_len == (std::uint64_t{1} << 25) - 1);
  STATIC_REQUIRE(pf::max_escape_len == (std::uint64_t{1} << 53) - 1);
  STATIC_REQUIRE(pf::max_order == 31);
  STATIC_REQUIRE(pf::max_run_count == 0xffffffffu);
  STATIC_REQUIRE(pf::entry_words(packed_mode::block) == 2);
  STATIC_REQUIRE(pf::entry_words(packed_mode::run) == 3);
  STATIC_REQUIRE(pf::entry_words(packed_mode::bytes) == 3);
  STATIC_REQUIRE(pf::entry_words(packed_mode::escape) == 4);
  // The five head flag bits are exactly range_flags' compact bits.
  STATIC_REQUIRE(pf::flags::max == phyr::compact_flag_mask);
}

TEST_CASE("packed format: entries round-trip in constant expressions", "[packed][format][static]") {
  // mode 0: one page; a 2 MiB block with flags
  STATIC_REQUIRE(roundtrip(pg(7), page, 0).words == 2);
  STATIC_REQUIRE(roundtrip(pg(512), 512 * page, 0x1f).mode == packed_mode::block);
  STATIC_REQUIRE(roundtrip(pg(512), 512 * page, 0x1f).len == 512 * page);
  STATIC_REQUIRE(roundtrip(pg(512), 512 * page, 0x1f).flags == 0x1f);
  // mode 1: three pages
  STATIC_REQUIRE(roundtrip(pg(9), 3 * page, 1).mode == packed_mode::run);
  STATIC_REQUIRE(roundtrip(pg(9), 3 * page, 1).len == 3 * page);
  // mode 2: 512 bytes at offset 0x200 of the highest page
  constexpr std::uint64_t top = ~std::uint64_t{0} - 0xfff;
  STATIC_REQUIRE(roundtrip(top + 0x200, 512, 2).start == top + 0x200);
  STATIC_REQUIRE(roundtrip(top + 0x200, 512, 2).len == 512);
  STATIC_REQUIRE(roundtrip(top + 0x200, 512, 2).mode == packed_mode::bytes);
  // mode 3: high flag bits, odd address and length
  STATIC_REQUIRE(roundtrip(0x123456789abcdef1, 0x987654321, 0xe5).mode == packed_mode::escape);
  STATIC_REQUIRE(roundtrip(0x123456789abcdef1, 0x987654321, 0xe5).start == 0x123456789abcdef1);
  STATIC_REQUIRE(roundtrip(0x123456789abcdef1, 0x987654321, 0xe5).len == 0x987654321);
  STATIC_REQUIRE(roundtrip(0x123456789abcdef1, 0x987654321, 0xe5).flags == 0xe5);
  // The last byte of the 64-bit space is reachable (extent ending at 2^64).
  STATIC_REQUIRE(roundtrip(~std::uint64_t{0}, 1, 0).start == ~std::uint64_t{0});
  STATIC_REQUIRE(roundtrip(pg(pf::pfn_limit - 1), page, 0).start == pg(pf::pfn_limit - 1));
}

TEST_CASE("packed format: an aligned block of 2^order pages is 8 bytes for every order 0..31",
          "[packed][format][size]") {
  for (unsigned k = 0; k <= 31; ++k) {
    const std::uint64_t pages = std::uint64_t{1} << k;
    const std::uint64_t pfn = pages * 3;  // aligned to 2^k, not to 2^(k+2)
    const auto p = plan_entry(pg(pfn), pages * page, 0, false, false);
    CAPTURE(k);
    CHECK(p.mode == packed_mode::block);
    CHECK(p.order == k);
    CHECK(p.bytes() == 8);
    // One page off the alignment: an order-aligned run of 2^k single pages (12 bytes).
    const auto q = plan_entry(pg(pfn + 1), pages * page, 0, false, false);
    if (k == 0) {
      CHECK(q.bytes() == 8);
    } else {
      CHECK(q.mode == packed_mode::run);
      CHECK(q.bytes() == 12);
    }
  }
  // 2^32 aligned pages exceed order 31: two order-31 blocks in one mode-1 entry.
  const auto big = plan_entry(0, page << 32, 0, false, false);
  CHECK(big.mode == packed_mode::run);
  CHECK(big.order == 31);
  CHECK(big.count == 2);
  CHECK(big.bytes() == 12);
}

TEST_CASE("packed format: the 1 GiB page, 2 MiB run and 3-page run sizes", "[packed][format][size]") {
  CHECK(plan_entry(std::uint64_t{5} << 30, std::uint64_t{1} << 30, 0, false, false).bytes() == 8);
  CHECK(plan_entry(std::uint64_t{7} << 21, std::uint64_t{1} << 21, 0, false, false).bytes() == 8);
  CHECK(plan_entry(pg(9), 3 * page, 0, false, false).bytes() == 12);
  // At the ends of a list the header trims, so a block that covers the run is enough.
  CHECK(plan_entry(pg(8), 3 * page, 0, false, true).bytes() == 8);  // back widened to 4 pages
  CHECK(plan_entry(pg(9), 3 * page, 0, true, false).bytes() == 8);  // front widened from pfn 8
  CHECK(plan_entry(pg(9), 3 * page, 0, false, true).bytes() == 12);  // 9 is not 4-aligned
  const auto both = plan_entry(pg(9) + 100, 3 * page, 0, true, true);
  CHECK(both.bytes() == 8);
  CHECK(both.front_trim == pg(9) + 100 - both.start);
}

TEST_CASE("packed format: run counts 1 and 2^32-1 and the first count that does not fit",
          "[packed][format][size]") {
  // count 2^32-1 single pages at an odd pfn: mode 1 order 0.
  const std::uint64_t n = pf::max_run_count;
  auto p = plan_entry(pg(1), n * page, 0, false, false);
  CHECK(p.mode == packed_mode::run);
  CHECK(p.order == 0);
  CHECK(p.count == n);
  CHECK(p.bytes() == 12);
  // 2^32 pages at an odd pfn: no order fits in the middle of a list -> 16-byte escape...
  p = plan_entry(pg(1), (n + 1) * page, 0, false, false);
  CHECK(p.mode == packed_mode::escape);
  CHECK(p.bytes() == 16);
  // ...but at the front the header may trim: pages [1, 2^32 + 2) widen to [0, 2^32 + 2),
  // 2^31 + 1 blocks of order 1: still 12 bytes.
  p = plan_entry(pg(1), (n + 2) * page, 0, true, false);
  CHECK(plan_entry(pg(1), (n + 2) * page, 0, false, false).bytes() == 16);
  CHECK(p.mode == packed_mode::run);
  CHECK(p.order == 1);
  CHECK(p.bytes() == 12);
  CHECK(p.front_trim == page);
  // A stored count of 1 is a valid (if never written) entry; count 0 is not.
  std::uint32_t w[3];
  phyr::detail::put_u64(w, phyr::detail::make_head(packed_mode::run, 64, 6, 0));
  w[2] = 1;
  auto c = phyr::packed_format::validate_entry(w, 3);
  CHECK(c.error == phyr::packed_format::entry_error::none);
  CHECK(c.entry.start == pg(64));
  CHECK(c.entry.len == 64 * page);
  w[2] = 0;
  CHECK(phyr::packed_format::validate_entry(w, 3).error == phyr::packed_format::entry_error::zero_length);
  w[2] = 1;
  CHECK(phyr::packed_format::validate_entry(w, 2).error == phyr::packed_format::entry_error::truncated);
  phyr::detail::put_u64(w, phyr::detail::make_head(packed_mode::run, 65, 6, 0));
  CHECK(phyr::packed_format::validate_entry(w, 3).error == phyr::packed_format::entry_error::misaligned_pfn);
  phyr::detail::put_u64(w, phyr::detail::make_head(packed_mode::block, pf::pfn_limit - 1, 1, 0));
  CHECK(phyr::packed_format::validate_entry(w, 2).error == phyr::packed_format::entry_error::misaligned_pfn);
  phyr::detail::put_u64(w, phyr::detail::make_head(packed_mode::block, pf::pfn_limit - 2, 1, 0));
  CHECK(phyr::packed_format::validate_entry(w, 2).error == phyr::packed_format::entry_error::none);
  phyr::detail::put_u64(w, phyr::detail::make_head(packed_mode::run, pf::pfn_limit - 2, 1, 0));
  w[2] = 2;
  CHECK(phyr::packed_format::validate_entry(w, 3).error == phyr::packed_format::entry_error::past_space);
}

TEST_CASE("packed format: byte-granular entries hold up to 2^25-1 bytes, then escape",
          "[packed][format][size]") {
  const std::uint64_t a = pg(77) + 0x200;
  CHECK(plan_entry(a, 512, 0, false, false).mode == packed_mode::bytes);
  CHECK(plan_entry(a, 512, 0, false, false).bytes() == 12);
  CHECK(plan_entry(a, pf::max_bytes_len, 0, false, false).mode == packed_mode::bytes);
  CHECK(plan_entry(a, pf::max_bytes_len, 0, false, false).bytes() == 12);
  CHECK(plan_entry(a, pf::max_bytes_len + 1, 0, false, false).mode == packed_mode::escape);
  CHECK(plan_entry(a, pf::max_bytes_len + 1, 0, false, false).bytes() == 16);
  std::uint32_t w[3];
  phyr::packed_format::write_plan(plan_entry(a, pf::max_bytes_len, 3, false, false), w);
  const auto e = phyr::packed_format::decode_entry(w);
  CHECK(e.start == a);
  CHECK(e.len == pf::max_bytes_len);
  CHECK(e.flags == 3);
  // Zero length and a wrap past 2^64 are rejected when decoding untrusted words.
  phyr::detail::put_u64(w, phyr::detail::make_head(packed_mode::bytes, 5, 0, 0));
  w[2] = 0x10;  // offset 0x10, length 0
  CHECK(phyr::packed_format::validate_entry(w, 3).error == phyr::packed_format::entry_error::zero_length);
  phyr::detail::put_u64(w, phyr::detail::make_head(packed_mode::bytes, pf::pfn_limit - 1, 0, 0));
  w[2] = 0xfff | (2u << 12);  // last byte of the space + 1 more
  CHECK(phyr::packed_format::validate_entry(w, 3).error == phyr::packed_format::entry_error::past_space);
  w[2] = 0xfff | (1u << 12);
  CHECK(phyr::packed_format::validate_entry(w, 3).error == phyr::packed_format::entry_error::none);
}

TEST_CASE("packed format: high flag bits force the escape, which keeps all eight",
          "[packed][format][size]") {
  for (unsigned bit = 0; bit < 8; ++bit) {
    const auto f = static_cast<std::uint8_t>(1u << bit);
    const auto p = plan_entry(pg(4), page, f, false, false);
    CAPTURE(bit);
    CHECK(p.bytes() == (bit < 5 ? 8u : 16u));
    std::uint32_t w[4];
    phyr::packed_format::write_plan(p, w);
    CHECK(phyr::packed_format::decode_entry(w).flags == f);
  }
}

TEST_CASE("packed format: escapes chain past 2^53-1 bytes and cover max_len", "[packed][format][size]") {
  constexpr std::uint64_t max_len = phyr::phys_range::max_len;
  CHECK(plan_entry(0x10, pf::max_escape_len, 0, false, false).pieces == 1);
  CHECK(plan_entry(0x10, pf::max_escape_len + 1, 0, false, false).pieces == 2);
  const auto p = plan_entry(0x10, max_len, 0xff, false, false);
  CHECK(p.pieces == 9);
  CHECK(p.bytes() == 9 * 16);
  std::uint32_t w[36];
  phyr::packed_format::write_plan(p, w);
  std::uint64_t sum = 0, next = 0x10;
  for (unsigned i = 0; i < p.pieces; ++i) {
    const auto e = phyr::packed_format::decode_entry(w + 4 * i);
    CHECK(e.start == next);
    CHECK(e.flags == 0xff);
    CHECK(e.continued == (i + 1 < p.pieces));
    sum += e.len;
    next = e.start + e.len;
  }
  CHECK(sum == max_len);
  // Page-aligned, compact flags and well aligned: huge ranges stay in one 12-byte run.
  CHECK(plan_entry(std::uint64_t{1} << 55, std::uint64_t{1} << 55, 0, false, false).bytes() == 12);
}

// Brute force over every entry whose extent lies in a small window: the smallest entry whose
// extent equals the range (or covers it where the header trims) must be what plan_entry picks.
TEST_CASE("packed format: plan_entry is the smallest entry (brute force over small windows)",
          "[packed][format][size][property]") {
  std::mt19937_64 rng(0x5eed0001);
  constexpr std::uint64_t window = 64;  // pages
  auto brute = [&](std::uint64_t a, std::uint64_t len, std::uint8_t flags, bool f, bool b) {
    const std::uint64_t end = a + len;
    if ((flags & ~phyr::compact_flag_mask) != 0) return 16u;
    auto ok = [&](std::uint64_t es, std::uint64_t ee) {
      return (f ? es <= a : es == a) && (b ? ee >= end : ee == end);
    };
    for (unsigned k = 0; k <= 7; ++k)
      for (std::uint64_t s = 0; s < 2 * window; s += std::uint64_t{1} << k)
        if (ok(pg(s), pg(s + (std::uint64_t{1} << k)))) return 8u;
    for (unsigned k = 0; k <= 7; ++k)
      for (std::uint64_t s = 0; s < 2 * window; s += std::uint64_t{1} << k)
        for (std::uint64_t c = 1; s + (c << k) <= 2 * window; ++c)
          if (ok(pg(s), pg(s + (c << k)))) return 12u;
    if (len <= pf::max_bytes_len) return 12u;  // exact bytes
    return 16u;
  };
  for (int i = 0; i < 3000; ++i) {
    const std::uint64_t s = rng() % window;
    const std::uint64_t a = pg(s) + ((rng() & 1) ? 0 : rng() % page);
    const std::uint64_t max = pg(window) - a;
    std::uint64_t len = 1 + rng() % max;
    if (rng() & 1) len = ((len + page - 1) / page) * page;  // often whole pages
    if (len > max) len = max;
    const auto flags = static_cast<std::uint8_t>((rng() % 8) == 0 ? 0x20 : rng() & 0x1f);
    const bool f = rng() & 1, b = rng() & 1;
    const auto p = plan_entry(a, len, flags, f, b);
    CAPTURE(a, len, flags, f, b);
    REQUIRE(p.bytes() == brute(a, len, flags, f, b));
    // And the planned entry decodes to an extent the header can trim to the range.
    std::uint32_t w[4];
    phyr::packed_format::write_plan(p, w);
    const auto e = phyr::packed_format::decode_entry(w);
    REQUIRE(e.start + p.front_trim == a);
    REQUIRE(e.len == p.front_trim + len + p.back_trim);
    REQUIRE((f || p.front_trim == 0));
    REQUIRE((b || p.back_trim == 0));
    REQUIRE(e.flags == flags);
  }
}
