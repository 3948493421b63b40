/// Hardware segments for streaming DMA engines: `try_validate`, `split`, `try_split`.
///
///   phyr::dma_constraints c{.max_segment_size = 64 * 1024, .alignment = 512};
///   auto st = phyr::try_validate(mapping, c);        // one pass over the entries, O(entries)
///   if (!st) return st.error();                      // misaligned, not_addressable, ...
///   reserve_descriptors(st->segments);               // exactly what split() will yield
///   for (phyr::dma_range<nic0> seg : phyr::split(mapping, c))
///     post_descriptor(seg.addr().value(), seg.len());
///
/// `split` cuts each input range where the device needs it and nowhere else, the way the Linux
/// block layer builds segments from a bio (get_max_segment_size in block/blk-merge.c): a segment
/// ends at `segment_limit()` bytes or at the next multiple of `segment_boundary_mask + 1`,
/// whichever comes first. It never merges adjacent input ranges (their flags may differ, and
/// range_list has already coalesced what can be), so an entry that is within the limits comes
/// out unchanged, flags included. It is lazy: no allocation, a few words of state, and each
/// step is a handful of integer operations.
///
/// `try_validate` checks in one pass, per entry and never per page or per segment, everything
/// split() cannot fix: start alignment, the DMA mask, and the virtual boundary. It also counts
/// the segments split() will produce (closed form per entry), so a driver can size its ring.
///
/// The virtual-boundary rule is checked at gaps: a junction where the next range does not start
/// at the byte after the previous one. There the previous range must end, and the next start,
/// on a multiple of `virt_boundary_mask + 1` (the block layer's bvec_gap_to_prev). A junction
/// with no gap needs nothing (a PRP or MR page list describes it as it stands), so split()'s own
/// cuts never violate the rule. The first range may start anywhere and the last end anywhere.
/// With `gap_policy::report` a gap is counted in `split_stats::gaps` instead of failing, so a
/// caller can decide to bounce the I/O or fall back to another descriptor format.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <type_traits>
#include <utility>

#include <phyr/config.hpp>
#include <phyr/core/address.hpp>
#include <phyr/core/error.hpp>
#include <phyr/core/range.hpp>
#include <phyr/device/constraints.hpp>

namespace phyr::inline v0 {

/// What `try_validate` does with a virtual-boundary gap.
enum class gap_policy : std::uint8_t {
  reject,  ///< fail with `errc::misaligned`
  report,  ///< count it in `split_stats::gaps` ("bounce needed") and go on
};

/// What `try_validate` found.
struct split_stats {
  std::uint64_t entries = 0;    ///< input ranges
  std::uint64_t segments = 0;   ///< hardware segments split() yields for these constraints
  std::uint64_t bytes = 0;      ///< total length
  std::uint64_t gaps = 0;       ///< virtual-boundary gaps (non-zero only with gap_policy::report)
  std::uint64_t first_gap = 0;  ///< index of the entry after the first gap (when gaps != 0)

  /// The list cannot go to a device with a virtual boundary as it is: bounce or use another
  /// descriptor format.
  [[nodiscard]] constexpr bool needs_bounce() const noexcept { return gaps != 0; }
  friend constexpr bool operator==(const split_stats&, const split_stats&) noexcept = default;
};

namespace detail {

/// Segments split() makes of [a, a + len): greedy pieces of at most `limit` bytes, restarted at
/// every multiple of mask + 1. Windows between two boundaries are independent, so the count is
/// the partial first window, the full windows, and the partial last one.
[[nodiscard]] constexpr std::uint64_t segments_in(std::uint64_t a, std::uint64_t len,
                                                  std::uint64_t limit,
                                                  std::uint64_t mask) noexcept {
  const std::uint64_t room_m1 = boundary_room_m1(a, mask);
  if (len - 1 <= room_m1) return ceil_div(len, limit);
  // A boundary lies inside the range, so mask + 1 is a real (non-wrapping) window size.
  const std::uint64_t head = room_m1 + 1;
  const std::uint64_t rest = len - head;
  const std::uint64_t window = mask + 1;
  return ceil_div(head, limit) + (rest / window) * ceil_div(window, limit) +
         ceil_div(rest % window, limit);
}

}  // namespace detail

/// Checks `list` against `c` in one pass and counts the segments split() will yield.
/// Errors, for the first offending entry in list order: invalid_argument (constraints fail
/// `validate()`, an empty list, a zero-length entry, a policy outside the enumeration),
/// not_addressable (a byte above `c.dma_mask`), misaligned (a start not a multiple of
/// `c.alignment`, or a virtual-boundary gap under gap_policy::reject), overflow (total length
/// past 2^64 - 1).
template <range_source L>
[[nodiscard]] constexpr result<split_stats> try_validate(
    const L& list, const dma_constraints& c, gap_policy policy = gap_policy::reject) noexcept {
  if (auto v = c.validate(); !v) return v.error();
  if (policy != gap_policy::reject && policy != gap_policy::report) return errc::invalid_argument;
  const std::uint64_t limit = c.segment_limit();
  const std::uint64_t amask = c.alignment - 1;
  const std::uint64_t vmask = c.virt_boundary_mask;
  split_stats s;
  std::uint64_t prev_last = 0;
  for (const source_range_t<L> r : list) {
    const std::uint64_t a = r.addr().value();
    const std::uint64_t len = r.len();
    if (len == 0) return errc::invalid_argument;
    const std::uint64_t last = r.last().value();
    if (last > c.dma_mask) return errc::not_addressable;
    if ((a & amask) != 0) return errc::misaligned;
    if (len > ~s.bytes) return errc::overflow;
    if (s.entries != 0 && vmask != 0) {
      // prev_last + 1 wraps to 0 for a range ending at 2^64: that end is aligned, and no range
      // can follow it contiguously.
      const std::uint64_t prev_end = prev_last + 1;
      const bool gap = prev_last == ~std::uint64_t{0} || a != prev_end;
      if (gap && ((prev_end | a) & vmask) != 0) {
        if (policy == gap_policy::reject) return errc::misaligned;
        if (s.gaps++ == 0) s.first_gap = s.entries;
      }
    }
    s.segments += detail::segments_in(a, len, limit, c.segment_boundary_mask);
    s.bytes += len;
    ++s.entries;
    prev_last = last;
  }
  if (s.entries == 0) return errc::invalid_argument;
  return s;
}

/// The lazy range split() returns: a forward range of `range<Space>` values (the source's range
/// type, flags kept). Holds two source iterators and the limits; cheap to copy. Valid while the
/// source's storage is alive and unchanged.
template <class It>
class split_view {
 public:
  using range_type = std::remove_cvref_t<decltype(*std::declval<const It&>())>;
  using space_type = typename range_type::space_type;
  static_assert(any_range<range_type>);

  class iterator {
   public:
    using iterator_concept = std::forward_iterator_tag;
    using iterator_category = std::input_iterator_tag;  // reference is a value
    using value_type = range_type;
    using reference = range_type;
    using difference_type = std::ptrdiff_t;

    constexpr iterator() noexcept = default;

    [[nodiscard]] constexpr range_type operator*() const noexcept {
      return range_type{address<space_type>{pos_}, piece_, flags_};
    }
    constexpr iterator& operator++() noexcept {
      left_ -= piece_;
      if (left_ != 0) {
        pos_ += piece_;
        piece_ = cut(pos_, left_);
      } else {
        ++src_;
        load();
      }
      return *this;
    }
    constexpr iterator operator++(int) noexcept {
      iterator t = *this;
      ++*this;
      return t;
    }
    /// Same entry and same bytes left in it: the same segment.
    friend constexpr bool operator==(const iterator& a, const iterator& b) noexcept {
      return a.left_ == b.left_ && a.src_ == b.src_;
    }

   private:
    friend class split_view;
    constexpr iterator(It src, It end, std::uint64_t limit, std::uint64_t mask) noexcept
        : src_(src), end_(end), limit_(limit), mask_(mask) {
      load();
    }

    // Zero-length entries (possible in a span the caller never validated) are skipped, so a
    // piece is never empty and the loop always advances.
    constexpr void load() noexcept {
      for (; src_ != end_; ++src_) {
        const range_type r = *src_;
        if (r.len() == 0) continue;
        pos_ = r.addr().value();
        left_ = r.len();
        flags_ = r.flags();
        piece_ = cut(pos_, left_);
        return;
      }
      left_ = 0;
      piece_ = 0;
    }
    [[nodiscard]] constexpr std::uint64_t cut(std::uint64_t a, std::uint64_t left) const noexcept {
      std::uint64_t n = left < limit_ ? left : limit_;
      const std::uint64_t room_m1 = detail::boundary_room_m1(a, mask_);
      if (n - 1 > room_m1) n = room_m1 + 1;
      return n;
    }

    It src_{};
    It end_{};
    std::uint64_t pos_ = 0;    // start of the current segment
    std::uint64_t left_ = 0;   // bytes from pos_ to the end of the current entry; 0 at the end
    std::uint64_t piece_ = 0;  // length of the current segment
    std::uint64_t limit_ = 1;
    std::uint64_t mask_ = ~std::uint64_t{0};
    range_flags flags_ = range_flags::none;
  };
  using const_iterator = iterator;

  constexpr split_view() noexcept = default;
  /// Segments of [first, last) under `c`. Constraints that fail `validate()` give an empty
  /// range (try_split reports why).
  constexpr split_view(It first, It last, const dma_constraints& c) noexcept
      : first_(first), last_(last), limit_(c.segment_limit()), mask_(c.segment_boundary_mask) {
    if (!c.validate()) first_ = last_;
  }

  [[nodiscard]] constexpr iterator begin() const noexcept {
    return iterator{first_, last_, limit_, mask_};
  }
  [[nodiscard]] constexpr iterator end() const noexcept {
    return iterator{last_, last_, limit_, mask_};
  }
  /// True when no segment would be yielded. O(entries) in the worst case (skips zero-length
  /// entries), O(1) for validated input.
  [[nodiscard]] constexpr bool empty() const noexcept { return begin() == end(); }

 private:
  It first_{};
  It last_{};
  std::uint64_t limit_ = 1;
  std::uint64_t mask_ = ~std::uint64_t{0};
};

/// Lazily yields `list`'s ranges cut to `c`'s max segment size and segment boundary. Checks
/// nothing about the list (call try_validate first, or use try_split); constraints that fail
/// `validate()` give an empty range. `list` must be an lvalue or a borrowed view
/// (`enable_borrowed_source`): the result keeps iterators into it.
template <class L>
  requires viewable_source<L>
[[nodiscard]] constexpr split_view<detail::source_iterator_t<std::remove_cvref_t<L>>> split(
    L&& list, const dma_constraints& c) noexcept {
  return {list.begin(), list.end(), c};
}

/// try_validate, then split: the segments of a list the device can take as it is.
/// Errors are try_validate's (gap_policy::reject).
template <class L>
  requires viewable_source<L>
[[nodiscard]] constexpr result<split_view<detail::source_iterator_t<std::remove_cvref_t<L>>>>
try_split(L&& list, const dma_constraints& c) noexcept {
  if (auto s = try_validate(list, c); !s) return s.error();
  return split_view<detail::source_iterator_t<std::remove_cvref_t<L>>>{list.begin(), list.end(), c};
}

}  // namespace phyr
