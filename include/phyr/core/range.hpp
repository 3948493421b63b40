/// `range<Space>`: one contiguous chunk [addr, addr + len) of an address space, with flags.
///
///   using phyr::phys_range;
///   auto r = phys_range::create(phyr::phys_addr{0x1000}, 0x2000, phyr::range_flags::pinned);
///   if (!r) return r.error();            // zero length, too long, or end past 2^64
///   r->end();                            // phys_addr{0x3000}
///   r->can_merge(next);                  // adjacent and same flags
///
/// Exactly 16 bytes: the address, then one word holding a 56-bit length (64 PiB, far above
/// the 2^40 bytes required) and 8 flag bits. No range past 2^64, of length 0 or of length
/// above `max_len` can be built by accident: `create` returns an errc for them, and the
/// constructor traps on them in every build (release included, whatever PHYR_ASSERT is),
/// since a wrapped end or a length spilling into the flag bits would send DMA to the wrong
/// place silently. The one way around the check is `make_unchecked`, named so that it cannot
/// be reached by accident; it is for phyr's batch builders, which validate afterwards.
#pragma once

#include <compare>
#include <cstdint>
#include <phyr/config.hpp>
#include <phyr/core/address.hpp>
#include <phyr/core/address_space.hpp>
#include <phyr/core/error.hpp>

namespace phyr::inline v0 {

/// Per-entry flag bits. Bits 0..4 survive in every packed encoding (the five spare bits of
/// DESIGN.md's packed word); bits 5..7 are kept too but force the 16-byte packed escape.
enum class range_flags : std::uint8_t {
  none = 0,
  pinned = 1u << 0,    ///< pages pinned for DMA (unpinned when their owner goes away)
  bus_addr = 1u << 1,  ///< a PCI bus address (P2P through a switch): no IOMMU involved
  driver0 = 1u << 2,   ///< reserved for drivers, e.g. "GPU-local"
  driver1 = 1u << 3,   ///< reserved for drivers, e.g. "interconnect"
  driver2 = 1u << 4,
  driver3 = 1u << 5,
  driver4 = 1u << 6,
  driver5 = 1u << 7,
};
/// The flag bits that every packed mode carries inline.
inline constexpr std::uint8_t compact_flag_mask = 0x1f;

[[nodiscard]] constexpr range_flags operator|(range_flags a, range_flags b) noexcept {
  return static_cast<range_flags>(static_cast<std::uint8_t>(a) | static_cast<std::uint8_t>(b));
}
[[nodiscard]] constexpr range_flags operator&(range_flags a, range_flags b) noexcept {
  return static_cast<range_flags>(static_cast<std::uint8_t>(a) & static_cast<std::uint8_t>(b));
}
[[nodiscard]] constexpr range_flags operator~(range_flags a) noexcept {
  return static_cast<range_flags>(static_cast<std::uint8_t>(~static_cast<std::uint8_t>(a)));
}
constexpr range_flags& operator|=(range_flags& a, range_flags b) noexcept { return a = a | b; }
constexpr range_flags& operator&=(range_flags& a, range_flags b) noexcept { return a = a & b; }
/// True when every bit of `bits` is set in `f`.
[[nodiscard]] constexpr bool has_flags(range_flags f, range_flags bits) noexcept {
  return (f & bits) == bits;
}

template <address_space Space>
class range {
 public:
  using space_type = Space;
  using address_type = address<Space>;

  static constexpr unsigned len_bits = 56;
  /// The longest representable range, in bytes.
  static constexpr std::uint64_t max_len = (std::uint64_t{1} << len_bits) - 1;

  /// An empty-looking placeholder (length 0) so arrays of ranges can be default-built;
  /// every range handed out by phyr has a non-zero length.
  constexpr range() noexcept = default;

  /// The caller guarantees 0 < len <= max_len and an end at or below 2^64; a violation traps
  /// in every build (two compares: `len - 1` wraps to the maximum when len is 0). For input
  /// not known to be valid use `create`.
  constexpr range(address_type a, std::uint64_t len, range_flags f = range_flags::none) noexcept
      : addr_(a.value()), meta_(len | (std::uint64_t{static_cast<std::uint8_t>(f)} << len_bits)) {
    if (PHYR_UNLIKELY(len - 1 >= max_len || len - 1 > ~addr_))
      detail::assert_fail(__FILE__, __LINE__,
                          "range: zero length, length above max_len, or end past 2^64");
  }

  /// No checks, not even debug asserts: for batch builders that validate a whole batch after
  /// writing it and discard it on failure, so a bad input must not trap halfway.
  [[nodiscard]] static constexpr range make_unchecked(std::uint64_t addr, std::uint64_t len,
                                                      range_flags f) noexcept {
    range r;
    r.addr_ = addr;
    r.meta_ = len | (std::uint64_t{static_cast<std::uint8_t>(f)} << len_bits);
    return r;
  }

  /// Checked factory: zero length -> invalid_argument, length above `max_len` -> too_long,
  /// an end past 2^64 -> overflow.
  [[nodiscard]] static constexpr result<range> create(address_type a, std::uint64_t len,
                                                      range_flags f = range_flags::none) noexcept {
    if (len == 0) return errc::invalid_argument;
    if (len > max_len) return errc::too_long;
    if (len - 1 > ~a.value()) return errc::overflow;
    return range{a, len, f};
  }

  [[nodiscard]] constexpr address_type addr() const noexcept { return address_type{addr_}; }
  [[nodiscard]] constexpr std::uint64_t len() const noexcept { return meta_ & max_len; }
  [[nodiscard]] constexpr range_flags flags() const noexcept {
    return static_cast<range_flags>(meta_ >> len_bits);
  }
  /// One past the last byte. A range ending exactly at 2^64 reports end() == 0; use `last()`
  /// where that matters.
  [[nodiscard]] constexpr address_type end() const noexcept { return address_type{addr_ + len()}; }
  /// The last byte (never wraps).
  [[nodiscard]] constexpr address_type last() const noexcept {
    return address_type{addr_ + (len() - 1)};
  }

  [[nodiscard]] constexpr range with_flags(range_flags f) const noexcept {
    range r = *this;
    r.meta_ = (meta_ & max_len) | (std::uint64_t{static_cast<std::uint8_t>(f)} << len_bits);
    return r;
  }

  [[nodiscard]] constexpr bool contains(address_type a) const noexcept {
    return a.value() >= addr_ && a.value() - addr_ < len();
  }
  [[nodiscard]] constexpr bool contains(const range& o) const noexcept {
    return o.addr_ >= addr_ && o.last().value() <= last().value();
  }
  [[nodiscard]] constexpr bool overlaps(const range& o) const noexcept {
    return addr_ <= o.last().value() && o.addr_ <= last().value();
  }
  /// `o` starts exactly where this range ends (no wrap: a range ending at 2^64 has no successor).
  [[nodiscard]] constexpr bool adjacent(const range& o) const noexcept {
    return last().value() != ~std::uint64_t{0} && last().value() + 1 == o.addr_;
  }
  /// Adjacent, equal flags, and the merged length still fits `max_len`.
  [[nodiscard]] constexpr bool can_merge(const range& o) const noexcept {
    return adjacent(o) && flags() == o.flags() && o.len() <= max_len - len();
  }
  /// Checked merge of an adjacent successor.
  [[nodiscard]] constexpr result<range> try_merge(const range& o) const noexcept {
    if (!can_merge(o)) return errc::invalid_argument;
    return range{addr(), len() + o.len(), flags()};
  }
  /// Sub-range [addr + offset, addr + offset + n); out_of_range unless it lies inside.
  [[nodiscard]] constexpr result<range> try_subrange(std::uint64_t offset,
                                                     std::uint64_t n) const noexcept {
    if (n == 0) return errc::invalid_argument;
    if (offset >= len() || n > len() - offset) return errc::out_of_range;
    return range{address_type{addr_ + offset}, n, flags()};
  }

  /// Ordered by address, then length, then flags.
  friend constexpr bool operator==(const range&, const range&) noexcept = default;
  friend constexpr std::strong_ordering operator<=>(const range& a, const range& b) noexcept {
    if (auto c = a.addr_ <=> b.addr_; c != 0) return c;
    if (auto c = a.len() <=> b.len(); c != 0) return c;
    return a.flags() <=> b.flags();
  }

 private:
  std::uint64_t addr_ = 0;
  std::uint64_t meta_ = 0;  // [55:0] length, [63:56] flags
};

static_assert(sizeof(range<cpu_phys>) == 16);

using phys_range = range<cpu_phys>;
/// A range of this process's virtual memory (a buffer), e.g. for the VFIO mapper.
using virt_range = range<cpu_virt>;
template <class Bus>
using dma_range = range<dma_space<Bus>>;

/// The virtual range of `n` bytes at `p` in this process: invalid_argument for n == 0 (or a
/// null `p`), overflow when it would wrap past 2^64.
[[nodiscard]] inline result<virt_range> virt_range_of(const void* p, std::uint64_t n,
                                                      range_flags f = range_flags::none) noexcept {
  if (p == nullptr) return errc::invalid_argument;
  return virt_range::create(virt_addr{reinterpret_cast<std::uintptr_t>(p)}, n, f);
}

template <class R>
inline constexpr bool is_range_v = false;
template <class S>
inline constexpr bool is_range_v<range<S>> = true;

/// Any `range<Space>`.
template <class R>
concept any_range = is_range_v<R>;

}  // namespace phyr::inline v0
