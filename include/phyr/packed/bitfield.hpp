/// Bit-field descriptors in the LLVM `Bitfields` style: constexpr get/set on a plain unsigned
/// integer, with the width, fit and overlap of every field checked at compile time.
///
///   using pfn   = phyr::bitfield<std::uint64_t, 0, 52>;
///   using order = phyr::bitfield<std::uint8_t, 52, 5>;
///   using mode  = phyr::bitfield<my_mode, 62, 2>;          // unsigned enums work too
///   static_assert(phyr::bit_layout<std::uint64_t, pfn, order, mode>::valid);
///
///   std::uint64_t w = 0;
///   phyr::set<pfn>(w, 0x12345);                            // asserts the value fits
///   if (auto r = phyr::try_set<order>(w, 40); !r) ...      // errc::too_long: 40 needs 6 bits
///   std::uint8_t o = phyr::get<order>(w);
///
/// Why not C++ bit-fields: their layout is implementation-defined (allocation order, straddling,
/// padding), so they cannot describe a format stored in memory for hours and read back by a
/// different build. Descriptors make the layout explicit, keep it `constexpr`, and turn a
/// mistake (a field past the storage, two fields on the same bit) into a constraint failure
/// that can itself be tested (`requires { typename bitfield<std::uint32_t, 30, 4>; }` is false).
#pragma once

#include <concepts>
#include <cstdint>
#include <limits>
#include <type_traits>

#include <phyr/config.hpp>
#include <phyr/core/error.hpp>

namespace phyr::inline v0 {

namespace detail {
template <class T>
struct field_value_traits {
  using raw = T;
};
template <class T>
  requires std::is_enum_v<T>
struct field_value_traits<T> {
  using raw = std::underlying_type_t<T>;
};

/// A field may hold an unsigned integer, bool, or an enum whose underlying type is unsigned.
template <class T>
concept field_value = std::unsigned_integral<T> ||
                      (std::is_enum_v<T> && std::unsigned_integral<std::underlying_type_t<T>>);

template <class T>
inline constexpr unsigned bits_of = static_cast<unsigned>(std::numeric_limits<T>::digits);

/// `Width` bits starting at `Offset` fit an unsigned 64-bit word and the value type `T`.
template <class T, unsigned Offset, unsigned Width>
concept valid_field = field_value<T> && Width > 0 && Width <= 64 && Offset < 64 &&
                      Offset + Width <= 64 &&
                      Width <= bits_of<typename field_value_traits<T>::raw>;

[[nodiscard]] constexpr std::uint64_t low_mask(unsigned width) noexcept {
  return width >= 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << width) - 1;
}
}  // namespace detail

/// Describes `Width` bits at `Offset` of some unsigned storage word, read and written as `T`.
/// The descriptor holds no data; it is a type used with `get`, `set` and `try_set`.
template <class T, unsigned Offset, unsigned Width>
  requires detail::valid_field<T, Offset, Width>
struct bitfield {
  using value_type = T;
  using raw_type = typename detail::field_value_traits<T>::raw;
  static constexpr unsigned offset = Offset;
  static constexpr unsigned width = Width;
  /// One past the field's highest bit: the storage must have at least this many bits.
  static constexpr unsigned end_bit = Offset + Width;
  /// Largest raw value the field can hold.
  static constexpr std::uint64_t max = detail::low_mask(Width);
  /// The field's bits in place.
  static constexpr std::uint64_t mask = max << Offset;

  [[nodiscard]] static constexpr bool fits(T v) noexcept {
    return static_cast<std::uint64_t>(static_cast<raw_type>(v)) <= max;
  }
};

namespace detail {
template <class F>
inline constexpr bool is_bitfield_v = false;
template <class T, unsigned O, unsigned W>
inline constexpr bool is_bitfield_v<bitfield<T, O, W>> = true;
}  // namespace detail

/// Any `bitfield<...>` descriptor.
template <class F>
concept bitfield_descriptor = detail::is_bitfield_v<F>;

/// Field `F` lies inside storage type `S`.
template <class F, class S>
concept bitfield_fits_in =
    bitfield_descriptor<F> && std::unsigned_integral<S> && F::end_bit <= detail::bits_of<S>;

/// Two fields share at least one bit.
template <bitfield_descriptor A, bitfield_descriptor B>
inline constexpr bool bitfields_overlap = (A::mask & B::mask) != 0;

namespace detail {
template <class... F>
struct pairwise_disjoint;
template <>
struct pairwise_disjoint<> : std::true_type {};
template <class H, class... T>
struct pairwise_disjoint<H, T...>
    : std::bool_constant<(!bitfields_overlap<H, T> && ...) && pairwise_disjoint<T...>::value> {};
}  // namespace detail

/// A set of fields that all fit `Storage` and never share a bit. Instantiating a layout whose
/// fields collide is a constraint failure, so a format change that breaks the layout does
/// not compile.
template <std::unsigned_integral Storage, bitfield_descriptor... Fields>
  requires(bitfield_fits_in<Fields, Storage> && ...) &&
          detail::pairwise_disjoint<Fields...>::value
struct bit_layout {
  using storage_type = Storage;
  static constexpr bool valid = true;
  /// The bits some field uses.
  static constexpr std::uint64_t used_mask = (std::uint64_t{0} | ... | Fields::mask);
  /// Every bit of the storage belongs to a field (no reserved bits to keep zero).
  static constexpr bool complete = used_mask == detail::low_mask(detail::bits_of<Storage>);
};

/// Reads field `F` of `packed`.
template <bitfield_descriptor F, std::unsigned_integral S>
  requires bitfield_fits_in<F, S>
[[nodiscard]] constexpr typename F::value_type get(S packed) noexcept {
  const std::uint64_t raw = (static_cast<std::uint64_t>(packed) >> F::offset) & F::max;
  return static_cast<typename F::value_type>(static_cast<typename F::raw_type>(raw));
}

/// Writes field `F` of `packed`, leaving every other bit alone. The value must fit (asserted);
/// use `try_set` where it comes from outside.
template <bitfield_descriptor F, std::unsigned_integral S>
  requires bitfield_fits_in<F, S>
constexpr void set(S& packed, typename F::value_type v) noexcept {
  PHYR_ASSERT(F::fits(v), "value does not fit the bit-field");
  const std::uint64_t raw = static_cast<std::uint64_t>(static_cast<typename F::raw_type>(v));
  const std::uint64_t cleared = static_cast<std::uint64_t>(packed) & ~F::mask;
  packed = static_cast<S>(cleared | ((raw & F::max) << F::offset));
}

/// Checked write: `errc::too_long` (and `packed` unchanged) when `v` needs more bits than `F`.
template <bitfield_descriptor F, std::unsigned_integral S>
  requires bitfield_fits_in<F, S>
[[nodiscard]] constexpr result<void> try_set(S& packed, typename F::value_type v) noexcept {
  if (!F::fits(v)) return errc::too_long;
  set<F>(packed, v);
  return {};
}

/// `v` placed in field `F` of an otherwise zero word: for building a word in one expression,
/// `make<A>(a) | make<B>(b)`.
template <bitfield_descriptor F, std::unsigned_integral S = std::uint64_t>
  requires bitfield_fits_in<F, S>
[[nodiscard]] constexpr S make(typename F::value_type v) noexcept {
  S w = 0;
  set<F>(w, v);
  return w;
}

}  // namespace phyr
