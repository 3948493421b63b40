/// `address<Space>`: a 64-bit point in one address space (chrono's time_point idea).
///
///   using phys = phyr::address<phyr::cpu_phys>;
///   phys a{0x1000};                  // explicit from an integer
///   phys b = a + 0x2000;             // point + displacement -> point
///   std::uint64_t d = b - a;         // point - point (same space) -> displacement
///   auto c = a.try_add(~0ull);       // result: errc::overflow instead of wrapping
///   // a + b;                        // does not compile: points do not add
///   // phyr::address<phyr::dma_space<X>> x = a;   // does not compile: spaces never convert
///
/// Byte counts are plain `std::uint64_t` displacements (`byte_count`). Unchecked arithmetic
/// asserts on wrap-around in debug builds; `try_add`/`try_sub` report it as a value.
#pragma once

#include <compare>
#include <cstdint>

#include <phyr/config.hpp>
#include <phyr/core/address_space.hpp>
#include <phyr/core/error.hpp>

namespace phyr::inline v0 {

/// A displacement in bytes; untagged, like chrono's duration rep.
using byte_count = std::uint64_t;

template <address_space Space>
class address {
 public:
  using space_type = Space;

  constexpr address() noexcept = default;
  constexpr explicit address(std::uint64_t v) noexcept : v_(v) {}

  [[nodiscard]] constexpr std::uint64_t value() const noexcept { return v_; }

  /// Checked advance: `errc::overflow` when the result would pass 2^64 - 1.
  [[nodiscard]] constexpr result<address> try_add(byte_count n) const noexcept {
    if (n > ~v_) return errc::overflow;
    return address{v_ + n};
  }
  /// Checked retreat: `errc::overflow` when the result would go below 0.
  [[nodiscard]] constexpr result<address> try_sub(byte_count n) const noexcept {
    if (n > v_) return errc::overflow;
    return address{v_ - n};
  }

  /// Aligned down/up to `align` (a power of two). align_up reports overflow as a value.
  [[nodiscard]] constexpr address align_down(std::uint64_t align) const noexcept {
    PHYR_ASSERT(align != 0 && (align & (align - 1)) == 0, "alignment must be a power of two");
    return address{v_ & ~(align - 1)};
  }
  [[nodiscard]] constexpr result<address> try_align_up(std::uint64_t align) const noexcept {
    PHYR_ASSERT(align != 0 && (align & (align - 1)) == 0, "alignment must be a power of two");
    const std::uint64_t down = v_ & ~(align - 1);
    if (down == v_) return *this;
    if (down > ~std::uint64_t{0} - align) return errc::overflow;
    return address{down + align};
  }
  [[nodiscard]] constexpr bool is_aligned(std::uint64_t align) const noexcept {
    PHYR_ASSERT(align != 0 && (align & (align - 1)) == 0, "alignment must be a power of two");
    return (v_ & (align - 1)) == 0;
  }

  constexpr address& operator+=(byte_count n) noexcept {
    PHYR_ASSERT(n <= ~v_, "address arithmetic wrapped");
    v_ += n;
    return *this;
  }
  constexpr address& operator-=(byte_count n) noexcept {
    PHYR_ASSERT(n <= v_, "address arithmetic wrapped");
    v_ -= n;
    return *this;
  }

  friend constexpr address operator+(address a, byte_count n) noexcept { return a += n; }
  friend constexpr address operator-(address a, byte_count n) noexcept { return a -= n; }
  /// Distance between two points of the same space. Asserts `a >= b`.
  friend constexpr byte_count operator-(address a, address b) noexcept {
    PHYR_ASSERT(a.v_ >= b.v_, "negative address difference");
    return a.v_ - b.v_;
  }
  friend constexpr bool operator==(address, address) noexcept = default;
  friend constexpr auto operator<=>(address, address) noexcept = default;

 private:
  std::uint64_t v_ = 0;
};

using phys_addr = address<cpu_phys>;
/// A process-virtual address (`cpu_virt`): a pointer as a typed value.
using virt_addr = address<cpu_virt>;
template <class Bus>
using dma_addr = address<dma_space<Bus>>;

}  // namespace phyr
