// bitfield.hpp: descriptors, layouts, get/set/try_set — mostly at compile time.
#include <catch2/catch.hpp>

#include <cstdint>
#include <phyr/packed/bitfield.hpp>

namespace {

enum class color : std::uint8_t { red = 0, green = 1, blue = 2, white = 3 };
enum class wide_enum : std::uint32_t { a = 0, b = 0x12345 };
enum class signed_enum : int { a = 0 };

using lo = phyr::bitfield<std::uint64_t, 0, 52>;
using mid = phyr::bitfield<std::uint8_t, 52, 5>;
using hue = phyr::bitfield<color, 62, 2>;
using top = phyr::bitfield<std::uint64_t, 57, 7>;
using whole = phyr::bitfield<std::uint64_t, 0, 64>;
using flag = phyr::bitfield<bool, 7, 1>;

// Requires-expressions only turn an ill-formed type into `false` when it depends on a template
// parameter, so the compile-fail checks go through these.
template <class T, unsigned Offset, unsigned Width>
concept field_exists = requires { typename phyr::bitfield<T, Offset, Width>; };
template <class S, class... F>
concept layout_exists = requires { typename phyr::bit_layout<S, F...>; };
template <class F, class S>
concept gettable = requires(S w) { phyr::get<F>(w); };
template <class F, class S>
concept settable = requires(S w, typename F::value_type v) { phyr::set<F>(w, v); };

constexpr std::uint64_t roundtrip_word() {
  std::uint64_t w = 0;
  phyr::set<lo>(w, 0xfffffffffffffull);
  phyr::set<mid>(w, 17);
  phyr::set<hue>(w, color::blue);
  return w;
}

}  // namespace

TEST_CASE("bitfield: descriptor constants describe the field's bits", "[bitfield][static]") {
  STATIC_REQUIRE(lo::offset == 0 && lo::width == 52 && lo::end_bit == 52);
  STATIC_REQUIRE(lo::max == (std::uint64_t{1} << 52) - 1);
  STATIC_REQUIRE(mid::mask == (std::uint64_t{0x1f} << 52));
  STATIC_REQUIRE(hue::mask == (std::uint64_t{3} << 62));
  STATIC_REQUIRE(whole::max == ~std::uint64_t{0});
  STATIC_REQUIRE(whole::mask == ~std::uint64_t{0});
  STATIC_REQUIRE(flag::mask == 0x80);
}

TEST_CASE("bitfield: get and set round-trip in constant expressions without touching other bits",
          "[bitfield][static]") {
  constexpr std::uint64_t w = roundtrip_word();
  STATIC_REQUIRE(phyr::get<lo>(w) == 0xfffffffffffffull);
  STATIC_REQUIRE(phyr::get<mid>(w) == 17);
  STATIC_REQUIRE(phyr::get<hue>(w) == color::blue);
  STATIC_REQUIRE((w & ~(lo::mask | mid::mask | hue::mask)) == 0);
  // Overwriting one field leaves its neighbours alone.
  constexpr std::uint64_t w2 = [] {
    std::uint64_t x = roundtrip_word();
    phyr::set<mid>(x, 0);
    return x;
  }();
  STATIC_REQUIRE(phyr::get<mid>(w2) == 0);
  STATIC_REQUIRE(phyr::get<lo>(w2) == 0xfffffffffffffull);
  STATIC_REQUIRE(phyr::get<hue>(w2) == color::blue);
  STATIC_REQUIRE(phyr::make<hue>(color::white) == (std::uint64_t{3} << 62));
  STATIC_REQUIRE(phyr::get<flag>(std::uint8_t{0x80}) == true);
  STATIC_REQUIRE(phyr::make<flag, std::uint8_t>(true) == 0x80);
}

TEST_CASE("bitfield: all-ones and the top bit survive in the widest fields", "[bitfield]") {
  std::uint64_t w = 0;
  phyr::set<whole>(w, ~std::uint64_t{0});
  CHECK(phyr::get<whole>(w) == ~std::uint64_t{0});
  phyr::set<top>(w, 0);
  CHECK(w == (std::uint64_t{1} << 57) - 1);
  phyr::set<top>(w, 0x7f);
  CHECK(phyr::get<top>(w) == 0x7f);
  CHECK(w == ~std::uint64_t{0});
  std::uint32_t small = 0;
  phyr::set<phyr::bitfield<std::uint32_t, 31, 1>>(small, 1u);
  CHECK(small == 0x80000000u);
}

TEST_CASE("bitfield: try_set rejects a value wider than the field and leaves the word alone",
          "[bitfield]") {
  std::uint64_t w = roundtrip_word();
  const std::uint64_t before = w;
  auto r = phyr::try_set<mid>(w, 32);
  REQUIRE_FALSE(r);
  CHECK(r.error() == phyr::errc::too_long);
  CHECK(w == before);
  CHECK(phyr::try_set<mid>(w, 31));
  CHECK(phyr::get<mid>(w) == 31);
  CHECK_FALSE(mid::fits(32));
  CHECK(mid::fits(31));
}

TEST_CASE("bitfield: a field past its storage or wider than its value type does not exist",
          "[bitfield][static]") {
  STATIC_REQUIRE(field_exists<std::uint64_t, 60, 4>);
  STATIC_REQUIRE_FALSE(field_exists<std::uint64_t, 60, 5>);
  STATIC_REQUIRE_FALSE(field_exists<std::uint64_t, 0, 0>);
  STATIC_REQUIRE_FALSE(field_exists<std::uint8_t, 0, 9>);
  STATIC_REQUIRE_FALSE(field_exists<int, 0, 4>);
  STATIC_REQUIRE_FALSE(field_exists<signed_enum, 0, 4>);
  STATIC_REQUIRE(field_exists<wide_enum, 0, 20>);
  STATIC_REQUIRE(field_exists<bool, 63, 1>);
  STATIC_REQUIRE_FALSE(field_exists<bool, 0, 2>);
  // get/set on a storage word too narrow for the field do not compile.
  STATIC_REQUIRE(gettable<mid, std::uint64_t>);
  STATIC_REQUIRE(settable<mid, std::uint64_t>);
  STATIC_REQUIRE_FALSE(gettable<mid, std::uint32_t>);
  STATIC_REQUIRE_FALSE(settable<mid, std::uint32_t>);
  STATIC_REQUIRE(phyr::bitfield_fits_in<mid, std::uint64_t>);
  STATIC_REQUIRE_FALSE(phyr::bitfield_fits_in<mid, std::uint32_t>);
}

TEST_CASE("bitfield: layouts reject overlapping fields and report completeness",
          "[bitfield][static]") {
  STATIC_REQUIRE(phyr::bitfields_overlap<top, hue>);
  STATIC_REQUIRE_FALSE(phyr::bitfields_overlap<lo, mid>);
  using ok = phyr::bit_layout<std::uint64_t, lo, mid, hue>;
  STATIC_REQUIRE(ok::valid);
  STATIC_REQUIRE_FALSE(ok::complete);  // bits 57..61 are unused
  STATIC_REQUIRE(phyr::bit_layout<std::uint64_t, lo, mid, top>::complete);
  STATIC_REQUIRE(layout_exists<std::uint64_t, lo, mid, hue>);
  STATIC_REQUIRE_FALSE(layout_exists<std::uint64_t, lo, top, hue>);
  STATIC_REQUIRE_FALSE(layout_exists<std::uint32_t, mid>);
  STATIC_REQUIRE_FALSE(layout_exists<std::uint64_t, lo, phyr::bitfield<std::uint8_t, 51, 2>>);
}
