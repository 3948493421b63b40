/// What a device accepts: `dma_constraints`, `checked_constraints`, `try_combine`.
///
///   phyr::dma_constraints c{.max_segment_size = 1u << 20,      // 1 MiB per descriptor
///                           .segment_boundary_mask = 0xffffffff, // no segment crosses 4 GiB
///                           .alignment = 4,                      // dword-aligned starts
///                           .virt_boundary_mask = phyr::page_mask, // PRP / MR: no gaps
///                           .dma_mask = 0xffffffffffff,          // 48 address bits
///                           .max_segments = 256};                // descriptor ring slots
///   if (auto v = c.check(); !v) return v.error();                // invalid_argument
///   auto bridge = phyr::dma_constraints{.dma_mask = 0xffffffff};  // a 32-bit bridge above it
///   auto both = phyr::try_combine(bridge, c);                    // what reaches the device
///
/// The first five fields are the Linux kernel's per-device DMA limits, so a driver can copy its
/// numbers: `max_segment_size` (dma_get_max_seg_size; the kernel's default when a driver sets
/// nothing is 64 KiB, and so is ours), `segment_boundary_mask` (dma_get_seg_boundary: no segment
/// may cross a multiple of mask + 1; default 0xffffffff, the historical kernel and block-layer
/// default), `alignment` (every segment starts at a multiple of it), `virt_boundary_mask` (the
/// block layer's "no gaps" rule for devices that take page lists, NVMe PRPs and RDMA MRs; 0 =
/// none) and `dma_mask` (the highest address the device can drive; default all 64 bits).
///
/// The rest complete the description the way FreeBSD's bus_dma_tag_create and Windows'
/// DMA adapter do: `max_segments` (busdma's nsegments: more segments than that is
/// `errc::too_many_segments`, busdma's EFBIG), `max_total_bytes` (busdma's maxsize:
/// `errc::too_long`), `excluded` (address windows the device cannot reach although they are
/// below the mask: busdma's (lowaddr, highaddr] window, generalised to several) and
/// `min_transfer_unit` (every segment's length is a multiple of it). All default to "no limit".
///
/// `try_combine(parent, child)` gives the constraints of a device behind a bridge: the
/// intersection of both, then busdma's clamp of the max segment size to the boundary (see its
/// comment for the exact rules and where they differ from busdma's tag inheritance).
///
/// `checked_constraints` is a `dma_constraints` that passed `check()`; only
/// `checked_constraints::create` makes one. `split()` takes it, so constraints that contradict
/// themselves cannot reach the lazy splitter unchecked (issue 10: it used to yield nothing).
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>

#include <phyr/config.hpp>
#include <phyr/container/range_list.hpp>
#include <phyr/container/range_source.hpp>
#include <phyr/core/error.hpp>
#include <phyr/core/page.hpp>
#include <phyr/core/range.hpp>

namespace phyr::inline v0 {

/// One address window, [addr, addr + len). Lengths are > 0 and the window does not wrap past
/// 2^64 (checked by `dma_constraints::check()`).
struct address_window {
  std::uint64_t addr = 0;
  std::uint64_t len = 0;
  /// The last byte of the window (meaningful for len > 0).
  [[nodiscard]] constexpr std::uint64_t last() const noexcept { return addr + (len - 1); }
  /// Whether [a, last] shares a byte with the window.
  [[nodiscard]] constexpr bool overlaps(std::uint64_t a, std::uint64_t last_byte) const noexcept {
    return a <= this->last() && addr <= last_byte;
  }
  friend constexpr bool operator==(const address_window&, const address_window&) noexcept = default;
};

/// Up to `capacity` address windows a device cannot reach, kept in a fixed array so
/// `dma_constraints` stays a constexpr aggregate that allocates nothing. Four is more than any
/// description in use (busdma has one window; typical uses are the PCI hole and one BAR).
class address_windows {
 public:
  static constexpr std::size_t capacity = 4;

  constexpr address_windows() noexcept = default;
  /// The windows `w`; more than `capacity` is a programmer error (asserts).
  constexpr address_windows(std::initializer_list<address_window> w) noexcept {
    PHYR_ASSERT(w.size() <= capacity, "address_windows: more than capacity windows");
    for (const address_window& x : w) {
      if (n_ == capacity) break;
      w_[n_++] = x;
    }
  }

  /// Adds one window. Errors: invalid_argument (zero length, or it wraps past 2^64),
  /// out_of_range (already `capacity` windows). On error nothing changes.
  [[nodiscard]] constexpr result<void> try_add(address_window w) noexcept {
    if (w.len == 0 || w.len - 1 > ~w.addr) return errc::invalid_argument;
    if (n_ == capacity) return errc::out_of_range;
    w_[n_++] = w;
    return {};
  }

  [[nodiscard]] constexpr std::size_t size() const noexcept { return n_; }
  [[nodiscard]] constexpr bool empty() const noexcept { return n_ == 0; }
  [[nodiscard]] constexpr const address_window* begin() const noexcept { return w_; }
  [[nodiscard]] constexpr const address_window* end() const noexcept { return w_ + n_; }

  /// Whether any window shares a byte with [a, last_byte]. Linear in size() (at most 4).
  [[nodiscard]] constexpr bool hits(std::uint64_t a, std::uint64_t last_byte) const noexcept {
    for (std::size_t i = 0; i < n_; ++i) {
      if (w_[i].overlaps(a, last_byte)) return true;
    }
    return false;
  }

  friend constexpr bool operator==(const address_windows& a, const address_windows& b) noexcept {
    if (a.n_ != b.n_) return false;
    for (std::size_t i = 0; i < a.n_; ++i) {
      if (!(a.w_[i] == b.w_[i])) return false;
    }
    return true;
  }

 private:
  address_window w_[capacity]{};
  std::size_t n_ = 0;
};

/// A device's DMA limits. An aggregate, so designated initializers name what differs from the
/// defaults. Check it with `check()`; every fallible device/ function does so itself, and the
/// lazy `split()` takes only `checked_constraints`.
struct dma_constraints {
  /// Longest segment, in bytes (> 0).
  std::uint64_t max_segment_size = std::uint64_t{1} << 16;
  /// No segment crosses a multiple of mask + 1. Of the form 2^k - 1 (k >= 1); ~0 = no boundary.
  std::uint64_t segment_boundary_mask = 0xffffffff;
  /// Every segment starts at a multiple of this (a power of two; 1 = any byte).
  std::uint64_t alignment = 1;
  /// 0, or 2^k - 1: at every gap between two ranges (the next one does not start where the
  /// previous ended) the previous must end and the next must start on a multiple of mask + 1.
  std::uint64_t virt_boundary_mask = 0;
  /// Highest address the device can reach; a byte above it is `errc::not_addressable`.
  std::uint64_t dma_mask = ~std::uint64_t{0};
  /// Most segments one I/O may have (busdma's nsegments; > 0). ~0 = no limit.
  std::uint64_t max_segments = ~std::uint64_t{0};
  /// Most bytes one I/O may carry (busdma's maxsize; > 0). ~0 = no limit.
  std::uint64_t max_total_bytes = ~std::uint64_t{0};
  /// Windows below the mask the device cannot reach; a byte in one is `errc::not_addressable`.
  address_windows excluded{};
  /// Every segment's length is a multiple of this (a power of two, at most the max segment
  /// size and the boundary window; 1 = any length).
  std::uint64_t min_transfer_unit = 1;

  /// No limit at all (every mask open, every count unbounded): the neutral element of
  /// `try_combine`, and the constraints of a bus that adds none. The defaults above are the
  /// kernel's for a device that sets nothing, which is not the same thing.
  [[nodiscard]] static constexpr dma_constraints unlimited() noexcept {
    return dma_constraints{.max_segment_size = ~std::uint64_t{0},
                           .segment_boundary_mask = ~std::uint64_t{0}};
  }

  /// `errc::invalid_argument` when the limits contradict themselves: zero max segment size,
  /// segment count or total; an alignment or transfer unit that is not a power of two or is
  /// larger than the max segment size, the boundary window (cuts there could not start
  /// aligned, or end on a whole unit) or the longest range (`phys_range::max_len`); a mask not of the form 2^k - 1; an excluded window of
  /// zero length or wrapping past 2^64.
  [[nodiscard]] constexpr result<void> check() const noexcept {
    if (max_segment_size == 0 || max_segments == 0 || max_total_bytes == 0)
      return errc::invalid_argument;
    if (!is_pow2(alignment) || !is_pow2(min_transfer_unit)) return errc::invalid_argument;
    if (segment_boundary_mask == 0 || (segment_boundary_mask & (segment_boundary_mask + 1)) != 0)
      return errc::invalid_argument;
    if ((virt_boundary_mask & (virt_boundary_mask + 1)) != 0) return errc::invalid_argument;
    if (alignment - 1 > segment_boundary_mask || min_transfer_unit - 1 > segment_boundary_mask)
      return errc::invalid_argument;
    if (max_segment_size < alignment || max_segment_size < min_transfer_unit)
      return errc::invalid_argument;
    // No segment could be cut: even the longest range is shorter than one unit.
    if (alignment > phys_range::max_len || min_transfer_unit > phys_range::max_len)
      return errc::invalid_argument;
    for (const address_window& w : excluded) {
      if (w.len == 0 || w.len - 1 > ~w.addr) return errc::invalid_argument;
    }
    return {};
  }

  /// The longest segment split() cuts: `max_segment_size`, at most the longest range phyr can
  /// hold (`phys_range::max_len`: a merged run of entries can be longer than any one of them),
  /// rounded down to `alignment` and to `min_transfer_unit`, so a cut inside an aligned range
  /// starts the next segment aligned and leaves whole units on both sides. Meaningful once
  /// checked.
  [[nodiscard]] constexpr std::uint64_t segment_limit() const noexcept {
    const std::uint64_t unit = alignment > min_transfer_unit ? alignment : min_transfer_unit;
    const std::uint64_t most =
        max_segment_size < phys_range::max_len ? max_segment_size : phys_range::max_len;
    return most & ~(unit - 1);
  }

  /// Whether the device can reach every byte of [a, last_byte]: under the mask and in no
  /// excluded window. (Alignment and boundaries are about segments, not reachability.)
  [[nodiscard]] constexpr bool reaches(std::uint64_t a, std::uint64_t last_byte) const noexcept {
    return last_byte <= dma_mask && !excluded.hits(a, last_byte);
  }

  friend constexpr bool operator==(const dma_constraints&,
                                   const dma_constraints&) noexcept = default;

 private:
  [[nodiscard]] static constexpr bool is_pow2(std::uint64_t x) noexcept {
    return x != 0 && (x & (x - 1)) == 0;
  }
};

/// The constraints of a device whose DMA also passes `parent` (a bridge, a bus, an IOMMU
/// aperture): what both accept. Per field: the smaller max segment size, segment count, total
/// and DMA mask; the larger alignment, transfer unit and virtual boundary; the smaller segment
/// boundary (~0, "none", is the largest mask, so "the smaller non-zero one" of busdma falls
/// out); the union of the excluded windows. Then busdma's clamp: a max segment size above the
/// boundary window is cut to the window (bus_dma_tag_create: `if (boundary != 0 && boundary <
/// maxsegsz) maxsegsz = boundary`).
///
/// Where this differs from FreeBSD's tag inheritance (common_bus_dma_tag_create in
/// sys/x86/x86/busdma_machdep.c): busdma inherits only lowaddr (min), highaddr (max) and the
/// boundary, applies the maxsegsz clamp with the child's own boundary before inheriting, and
/// keeps the child's alignment, maxsize and nsegments. An intersection must not accept what
/// either side refuses, so phyr combines every field and clamps after combining.
///
/// Errors: invalid_argument (either input fails `check()`, or the intersection does, e.g. a
/// parent alignment above the child's max segment size), out_of_range (more than
/// `address_windows::capacity` distinct windows).
[[nodiscard]] constexpr result<dma_constraints> try_combine(const dma_constraints& parent,
                                                            const dma_constraints& child) noexcept {
  if (auto r = parent.check(); !r) return r.error();
  if (auto r = child.check(); !r) return r.error();
  auto lo = [](std::uint64_t a, std::uint64_t b) { return a < b ? a : b; };
  auto hi = [](std::uint64_t a, std::uint64_t b) { return a < b ? b : a; };
  dma_constraints c;
  c.max_segment_size = lo(parent.max_segment_size, child.max_segment_size);
  c.segment_boundary_mask = lo(parent.segment_boundary_mask, child.segment_boundary_mask);
  c.alignment = hi(parent.alignment, child.alignment);
  c.virt_boundary_mask = hi(parent.virt_boundary_mask, child.virt_boundary_mask);
  c.dma_mask = lo(parent.dma_mask, child.dma_mask);
  c.max_segments = lo(parent.max_segments, child.max_segments);
  c.max_total_bytes = lo(parent.max_total_bytes, child.max_total_bytes);
  c.min_transfer_unit = hi(parent.min_transfer_unit, child.min_transfer_unit);
  c.excluded = child.excluded;
  for (const address_window& w : parent.excluded) {
    bool dup = false;
    for (const address_window& x : c.excluded) dup = dup || x == w;
    if (dup) continue;
    if (auto r = c.excluded.try_add(w); !r) return r.error();
  }
  // The clamp; a mask of ~0 has no window to clamp to (mask + 1 would wrap).
  if (c.segment_boundary_mask != ~std::uint64_t{0} &&
      c.max_segment_size > c.segment_boundary_mask + 1)
    c.max_segment_size = c.segment_boundary_mask + 1;
  if (auto r = c.check(); !r) return r.error();
  return c;
}

/// A `dma_constraints` that passed `check()`. The only way to make one is `create`, so a
/// function taking it (the lazy `split()`) never sees contradictory limits and needs no error
/// path. Converts to `const dma_constraints&` for reading. It also keeps what every I/O would
/// otherwise recompute from the limits (a driver makes it once, at probe, and its limits are
/// then runtime values the compiler cannot fold): the segment limit, and whether a counted
/// list can be checked from its counters alone.
class checked_constraints {
 public:
  /// `c` if it passes `check()`, else its error (invalid_argument).
  [[nodiscard]] static constexpr result<checked_constraints> create(
      const dma_constraints& c) noexcept {
    if (auto r = c.check(); !r) return r.error();
    return checked_constraints{c};
  }
  [[nodiscard]] constexpr const dma_constraints& get() const noexcept { return c_; }
  constexpr operator const dma_constraints&() const noexcept { return c_; }
  constexpr const dma_constraints* operator->() const noexcept { return &c_; }
  /// `get().segment_limit()`, computed once.
  [[nodiscard]] constexpr std::uint64_t segment_limit() const noexcept { return limit_; }
  /// True when the limits are only a segment size and boundary, a DMA mask, a total and a
  /// virtual boundary (no alignment, transfer unit, excluded window or segment count): what a
  /// list's O(1) counters can check without a pass over its entries (try_split).
  [[nodiscard]] constexpr bool counters_suffice() const noexcept { return counters_suffice_; }

 private:
  constexpr explicit checked_constraints(const dma_constraints& c) noexcept
      : c_(c),
        limit_(c.segment_limit()),
        counters_suffice_(c.alignment == 1 && c.min_transfer_unit == 1 && c.excluded.empty() &&
                          c.max_segments == ~std::uint64_t{0}) {}
  dma_constraints c_;
  std::uint64_t limit_;
  bool counters_suffice_;
};

namespace detail {

/// Round up a / b for b > 0 (no overflow: never forms a + b).
[[nodiscard]] constexpr std::uint64_t ceil_div(std::uint64_t a, std::uint64_t b) noexcept {
  return a / b + (a % b != 0 ? 1 : 0);
}

/// Bytes from `a` to the next multiple of mask + 1, minus one (so mask = ~0 needs no 2^64).
[[nodiscard]] constexpr std::uint64_t boundary_room_m1(std::uint64_t a,
                                                       std::uint64_t mask) noexcept {
  return mask - (a & mask);
}

}  // namespace detail

}  // namespace phyr::inline v0
