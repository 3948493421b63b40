/// Hardware segments for streaming DMA engines: `try_plan_split`, `split`, `try_split`.
///
///   // At device setup: the limits, checked once (split() takes checked limits only).
///   auto ok = phyr::checked_constraints::create({.max_segment_size = 64 * 1024,
///                                                .alignment = 512, .max_segments = ring_slots});
///   // Per I/O:
///   std::uint64_t needed = 0;
///   auto plan = phyr::try_plan_split(mapping, *ok, {}, &needed);  // one pass, O(entries)
///   if (!plan && plan.error() == phyr::errc::too_many_segments) grow_ring(needed);
///   if (!plan) return plan.error();                  // misaligned, not_addressable, ...
///   for (phyr::dma_range<nic0> seg : phyr::split(mapping, *ok))
///     post_descriptor(seg.addr().value(), seg.len());
///   // or both steps at once: auto segs = phyr::try_split(mapping, *ok);
///
/// `split` cuts each input range where the device needs it and nowhere else, the way the Linux
/// block layer builds segments from a bio (get_max_segment_size in block/blk-merge.c) and
/// FreeBSD's busdma loads a buffer (_bus_dmamap_addseg in sys/x86/x86/busdma_bounce.c): a
/// segment ends at `segment_limit()` bytes or at the next multiple of `segment_boundary_mask +
/// 1`, whichever comes first. It is lazy: no allocation, a few words of state, and each step
/// is a handful of integer operations.
///
/// Merging (`merge_policy`). By default split never merges input ranges: their flags may
/// differ, range_list has already coalesced what it could, and an entry within the limits
/// comes out unchanged, flags included. With `merge_policy::merge_contiguous` a run of entries
/// that follow each other contiguously (the next starts at the byte after the previous) with
/// equal flags is split as one range, as busdma merges physically contiguous chunks into one
/// segment. The two differ only for sources that were not coalesced (a span, a mapping made
/// of pages); both are property-tested against a byte-level model.
///
/// `try_plan_split` checks in one pass, per entry (or run) and never per page or per segment,
/// everything split() cannot fix: reachability (the DMA mask and the excluded windows), start
/// alignment, the transfer unit, the virtual boundary, the total size and the segment count.
/// The count is closed form per entry, so a driver learns before mapping anything how many
/// descriptors an I/O needs, and, when that is more than `max_segments`, gets
/// `errc::too_many_segments` plus the number it would need (busdma finds out half way through
/// a load and answers EFBIG).
///
/// The virtual-boundary rule is checked at gaps: a junction where the next range does not start
/// at the byte after the previous one. There the previous range must end, and the next start,
/// on a multiple of `virt_boundary_mask + 1` (the block layer's bvec_gap_to_prev). A junction
/// with no gap needs nothing (a PRP or MR page list describes it as it stands), so split()'s own
/// cuts never violate the rule. The first range may start anywhere and the last end anywhere.
/// With `gap_policy::report` a gap is counted in `split_plan::gaps` instead of failing, so a
/// caller can decide to bounce the I/O (map/bounce_mapper.hpp) or use another descriptor format.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <type_traits>
#include <utility>

#include <phyr/config.hpp>
#include <phyr/container/range_source.hpp>
#include <phyr/core/address.hpp>
#include <phyr/core/error.hpp>
#include <phyr/core/range.hpp>
#include <phyr/device/constraints.hpp>

namespace phyr::inline v0 {

/// What `try_plan_split` does with a virtual-boundary gap.
enum class gap_policy : std::uint8_t {
  reject,  ///< fail with `errc::misaligned`
  report,  ///< count it in `split_plan::gaps` ("bounce needed") and go on
};

/// Whether split() and try_plan_split treat contiguous entries as one range (file comment).
enum class merge_policy : std::uint8_t {
  keep_entries,      ///< every entry is split on its own (the default)
  merge_contiguous,  ///< runs of contiguous entries with equal flags are split as one range
};

/// How `try_plan_split` and `try_split` read the list.
struct split_options {
  gap_policy gaps = gap_policy::reject;
  merge_policy merge = merge_policy::keep_entries;
};

/// What `try_plan_split` found.
struct split_plan {
  std::uint64_t entries = 0;    ///< input ranges
  std::uint64_t segments = 0;   ///< hardware segments split() yields for these constraints
  std::uint64_t bytes = 0;      ///< total length
  std::uint64_t gaps = 0;       ///< virtual-boundary gaps (non-zero only with gap_policy::report)
  std::uint64_t first_gap = 0;  ///< index of the entry after the first gap (when gaps != 0)

  /// The list cannot go to a device with a virtual boundary as it is: bounce or use another
  /// descriptor format.
  [[nodiscard]] constexpr bool needs_bounce() const noexcept { return gaps != 0; }
  friend constexpr bool operator==(const split_plan&, const split_plan&) noexcept = default;
};

namespace detail {

/// Segments split() makes of [a, a + len): greedy pieces of at most `limit` bytes, restarted at
/// every multiple of mask + 1. Windows between two boundaries are independent, so the count is
/// the partial first window, the full windows, and the partial last one.
[[nodiscard]] constexpr std::uint64_t segments_in(std::uint64_t a, std::uint64_t len,
                                                  std::uint64_t limit,
                                                  std::uint64_t mask) noexcept {
  const std::uint64_t room_m1 = boundary_room_m1(a, mask);
  if (len - 1 <= room_m1) return len <= limit ? 1 : ceil_div(len, limit);  // most: one, no divide
  // A boundary lies inside the range, so mask + 1 is a real (non-wrapping) window size.
  const std::uint64_t head = room_m1 + 1;
  const std::uint64_t rest = len - head;
  const std::uint64_t window = mask + 1;
  return ceil_div(head, limit) + (rest / window) * ceil_div(window, limit) +
         ceil_div(rest % window, limit);
}

/// The transfer-unit rule for one range split() will cut, [a, a + len): every piece is a whole
/// number of units when the length is, and the range either starts on a unit or is never cut
/// at a boundary (cuts at the limit keep whole units: the limit is a multiple of the unit).
[[nodiscard]] constexpr bool whole_units(std::uint64_t a, std::uint64_t len, std::uint64_t unit_m1,
                                         std::uint64_t mask) noexcept {
  if ((len & unit_m1) != 0) return false;
  return (a & unit_m1) == 0 || len - 1 <= boundary_room_m1(a, mask);
}

}  // namespace detail

namespace detail {

// try_plan_split's pass; on success (errc{}) the plan is in `out`. Merge is a template
// parameter so the default (no merging) keeps the tight one-entry-at-a-time loop: with Merge
// false the run bookkeeping compiles away. The plan goes out through a reference, not in a
// result: try_split, the per-I/O caller, only needs to know the list fits, and copying a
// result that was just written field by field costs a failed store-to-load forward (config.hpp).
template <bool Merge, class L>
[[nodiscard]] PHYR_NOINLINE constexpr errc plan_split_pass(const L& list,
                                                         const dma_constraints& c,
                                                         gap_policy gaps,
                                                         std::uint64_t* segments_needed,
                                                         split_plan& out) noexcept {
  const std::uint64_t limit = c.segment_limit();
  const std::uint64_t bmask = c.segment_boundary_mask;
  const std::uint64_t amask = c.alignment - 1;
  const std::uint64_t umask = c.min_transfer_unit - 1;
  const std::uint64_t vmask = c.virt_boundary_mask;
  const bool windows = !c.excluded.empty();
  split_plan s;
  std::uint64_t prev_last = 0;
  [[maybe_unused]] std::uint64_t run_a = 0;  // with merging: the run split() will cut as one
  [[maybe_unused]] std::uint64_t run_len = 0;
  [[maybe_unused]] range_flags run_flags = range_flags::none;
  errc err{};
  auto fail = [&err](errc e) noexcept {
    err = e;
    return false;
  };
  // A device whose only limits are the segment size and boundary (no DMA mask below 2^64, no
  // excluded window, alignment, transfer unit or virtual boundary): nothing but a zero length
  // or an overflow can fail, so the pass only counts.
  const bool counts_only = !Merge && amask == 0 && umask == 0 && vmask == 0 && !windows &&
                           c.dma_mask == ~std::uint64_t{0};
  const bool done = counts_only ? for_each_range(list, [&](const source_range_t<L>& r) noexcept {
    const std::uint64_t len = r.len();
    if (len == 0) return fail(errc::invalid_argument);
    if (len > ~s.bytes) return fail(errc::overflow);
    s.segments += segments_in(r.addr().value(), len, limit, bmask);
    s.bytes += len;
    ++s.entries;
    return true;
  }) : for_each_range(list, [&](const source_range_t<L>& r) noexcept {
    const std::uint64_t a = r.addr().value();
    const std::uint64_t len = r.len();
    if (len == 0) return fail(errc::invalid_argument);
    const std::uint64_t last = r.last().value();
    // prev_last + 1 wraps to 0 for a range ending at 2^64: no range can follow it contiguously.
    // Without merging only the virtual-boundary check needs to know, so it is tested there.
    auto contiguous = [&] { return s.entries != 0 && prev_last != ~std::uint64_t{0} && a == prev_last + 1; };
    if constexpr (Merge) {
      if (contiguous() && r.flags() == run_flags) {  // part of the current run
        if (last > c.dma_mask || (windows && c.excluded.hits(a, last)))
          return fail(errc::not_addressable);
        if (len > ~s.bytes) return fail(errc::overflow);
        run_len += len;
        s.bytes += len;
        ++s.entries;
        prev_last = last;
        return true;
      }
      if (run_len != 0) {
        if (!whole_units(run_a, run_len, umask, bmask)) return fail(errc::misaligned);
        s.segments += segments_in(run_a, run_len, limit, bmask);
      }
    }
    if (last > c.dma_mask) return fail(errc::not_addressable);
    if (windows && c.excluded.hits(a, last)) [[unlikely]] return fail(errc::not_addressable);
    if ((a & amask) != 0) return fail(errc::misaligned);
    if (len > ~s.bytes) return fail(errc::overflow);
    if (vmask != 0 && s.entries != 0 && (((prev_last + 1) | a) & vmask) != 0 && !contiguous()) {
      if (gaps == gap_policy::reject) return fail(errc::misaligned);
      if (s.gaps++ == 0) s.first_gap = s.entries;
    }
    if constexpr (Merge) {
      run_a = a;
      run_len = len;
      run_flags = r.flags();
    } else {
      if (umask != 0 && !whole_units(a, len, umask, bmask)) return fail(errc::misaligned);
      s.segments += segments_in(a, len, limit, bmask);
    }
    s.bytes += len;
    ++s.entries;
    prev_last = last;
    return true;
  });
  if (!done) return err;
  if (s.entries == 0) return errc::invalid_argument;
  if constexpr (Merge) {
    if (!whole_units(run_a, run_len, umask, bmask)) return errc::misaligned;
    s.segments += segments_in(run_a, run_len, limit, bmask);
  }
  if (s.bytes > c.max_total_bytes) return errc::too_long;
  if (s.segments > c.max_segments) {
    if (segments_needed != nullptr) *segments_needed = s.segments;
    return errc::too_many_segments;
  }
  // Field by field: the loop may have spilled them to the stack one at a time
  // (detail::keep_scalar).
  out.entries = detail::keep_scalar(s.entries);
  out.segments = detail::keep_scalar(s.segments);
  out.bytes = detail::keep_scalar(s.bytes);
  out.gaps = detail::keep_scalar(s.gaps);
  out.first_gap = detail::keep_scalar(s.first_gap);
  return errc{};
}

// The pass for a list of one entry, which is a run on its own under either merge policy and
// has no junction: its checks in the pass's order, without the pass's setup and loop (every
// 4 KiB I/O and every physically contiguous one: 57 of a 4 KiB I/O's 425 instructions). The
// pass stays out of line (PHYR_NOINLINE) so that callers inline this instead.
template <class R>
[[nodiscard]] constexpr errc plan_one_entry(const R& r, const dma_constraints& c,
                                            std::uint64_t* segments_needed,
                                            split_plan& out) noexcept {
  const std::uint64_t a = r.addr().value();
  const std::uint64_t len = r.len();
  if (len == 0) return errc::invalid_argument;
  const std::uint64_t last = r.last().value();
  if (last > c.dma_mask) return errc::not_addressable;
  if (!c.excluded.empty() && c.excluded.hits(a, last)) [[unlikely]]
    return errc::not_addressable;
  if ((a & (c.alignment - 1)) != 0) return errc::misaligned;
  if (!whole_units(a, len, c.min_transfer_unit - 1, c.segment_boundary_mask))
    return errc::misaligned;
  const std::uint64_t segments = segments_in(a, len, c.segment_limit(), c.segment_boundary_mask);
  if (len > c.max_total_bytes) return errc::too_long;
  if (segments > c.max_segments) {
    if (segments_needed != nullptr) *segments_needed = segments;
    return errc::too_many_segments;
  }
  out.entries = 1;
  out.segments = segments;
  out.bytes = len;
  out.gaps = 0;
  out.first_gap = 0;
  return errc{};
}

// try_plan_split without the result: the policies checked, then the pass for the merge policy
// (a list that knows its size and holds one entry skips the pass).
template <class L>
[[nodiscard]] PHYR_ALWAYS_INLINE constexpr errc plan_split_into(const L& list,
                                                               const dma_constraints& c,
                                                               split_options opt,
                                                               std::uint64_t* segments_needed,
                                                               split_plan& out) noexcept {
  if (opt.gaps != gap_policy::reject && opt.gaps != gap_policy::report)
    return errc::invalid_argument;
  if (opt.merge != merge_policy::keep_entries && opt.merge != merge_policy::merge_contiguous)
    return errc::invalid_argument;
  if constexpr (requires {
                  { list.size() } -> std::convertible_to<std::size_t>;
                }) {
    if (list.size() == 1) return plan_one_entry(*list.begin(), c, segments_needed, out);
  }
  return opt.merge == merge_policy::keep_entries
             ? plan_split_pass<false>(list, c, opt.gaps, segments_needed, out)
             : plan_split_pass<true>(list, c, opt.gaps, segments_needed, out);
}

}  // namespace detail

/// Checks `list` against `c` in one pass and counts the segments split() will yield (with the
/// same merge policy). Errors, for the first offending entry in list order (a run's transfer
/// unit is checked at its last entry): invalid_argument (constraints fail `check()`, an empty
/// list, a zero-length entry, a policy outside its enumeration), not_addressable (a byte above
/// `c.dma_mask` or in an excluded window), misaligned (a segment start not a multiple of
/// `c.alignment`, a segment length not a multiple of `c.min_transfer_unit`, or a
/// virtual-boundary gap under gap_policy::reject), overflow (total length past 2^64 - 1); then,
/// for the whole list, too_long (more than `c.max_total_bytes`) and too_many_segments (more
/// than `c.max_segments`; `*segments_needed`, when given, receives the count split() would
/// yield, so a caller can grow its ring or fall back). Nothing is written through
/// `segments_needed` on any other outcome.
/// With limits checked once up front (`checked_constraints`, e.g. at device setup, as a
/// driver validates its queue limits at probe), the per-I/O call skips `check()`.
template <range_source L>
[[nodiscard]] constexpr result<split_plan> try_plan_split(
    const L& list, const checked_constraints& c, split_options opt = {},
    std::uint64_t* segments_needed = nullptr) noexcept {
  // The pass writes the plan into the result's value, field by field.
  result<split_plan> r{split_plan{}};
  if (const errc e = detail::plan_split_into(list, c.get(), opt, segments_needed, *r); e != errc{})
    return e;
  return r;
}
template <range_source L>
[[nodiscard]] constexpr result<split_plan> try_plan_split(
    const L& list, const dma_constraints& c, split_options opt = {},
    std::uint64_t* segments_needed = nullptr) noexcept {
  auto ok = checked_constraints::create(c);
  if (!ok) return ok.error();
  return try_plan_split(list, *ok, opt, segments_needed);
}

/// The lazy range split() returns: a forward range of `range<Space>` values (the source's range
/// type, flags kept). Holds two source iterators and the limits; cheap to copy. Valid while the
/// source's storage is alive and unchanged.
template <class It, merge_policy Merge = merge_policy::keep_entries>
class split_view {
 public:
  using range_type = std::remove_cvref_t<decltype(*std::declval<const It&>())>;
  using space_type = typename range_type::space_type;
  static_assert(any_range<range_type>);
  static constexpr bool merging = Merge == merge_policy::merge_contiguous;

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
        if constexpr (merging) {
          src_ = next_;
        } else {
          ++src_;
        }
        load();
      }
      return *this;
    }
    constexpr iterator operator++(int) noexcept {
      iterator t = *this;
      ++*this;
      return t;
    }
    /// Same entry (or run) and same bytes left in it: the same segment.
    friend constexpr bool operator==(const iterator& a, const iterator& b) noexcept {
      return a.left_ == b.left_ && a.src_ == b.src_;
    }
    /// for_each_range's walk (container/range_source.hpp): to the end of the view, the source
    /// is read with its own segment walk and each entry cut in a local loop; anything else
    /// steps.
    template <class F>
    PHYR_ALWAYS_INLINE friend constexpr bool walk_segments(const iterator& first,
                                                           const iterator& last, F& f) noexcept {
      if constexpr (!merging) {
        if (last.left_ == 0 && last.src_ == first.end_) {
          if (first.left_ == 0) return true;
          // The rest of the current entry, then the entries after it.
          if (!first.cut_all(first.pos_, first.left_, first.piece_, first.flags_, f))
            return false;
          It next = first.src_;
          ++next;
          return first.cut_source(next, first.end_, f);
        }
      }
      for (iterator it = first; it != last; ++it) {
        if (!detail::call_continue(f, *it)) return false;
      }
      return true;
    }

   private:
    friend class split_view;
    constexpr iterator(It src, It end, std::uint64_t limit, std::uint64_t mask) noexcept
        : src_(src), next_(src), end_(end), limit_(limit), mask_(mask) {
      load();
    }
    // The end: no range loaded (left_ == 0), so it equals an iterator that ran off the end
    // without reading the source.
    struct at_end {};
    constexpr iterator(It last, at_end) noexcept : src_(last), next_(last), end_(last) {}
    // An end that knows the limits: split_view::for_each cuts with it.
    constexpr iterator(It last, at_end, std::uint64_t limit, std::uint64_t mask) noexcept
        : src_(last), next_(last), end_(last), limit_(limit), mask_(mask) {}

    // Loads the range starting at src_: one entry, or with merging the run of contiguous
    // entries with equal flags; next_ is the entry after it. Zero-length entries (possible in
    // a span the caller never planned) are skipped, so a piece is never empty and the loop
    // always advances.
    constexpr void load() noexcept {
      for (; src_ != end_; ++src_) {
        const range_type r = *src_;
        if (r.len() == 0) continue;
        pos_ = r.addr().value();
        left_ = r.len();
        flags_ = r.flags();
        if constexpr (merging) {
          next_ = src_;
          ++next_;
          extend(r.last().value());
        }
        piece_ = cut(pos_, left_);
        return;
      }
      left_ = 0;
      piece_ = 0;
    }
    constexpr void extend(std::uint64_t last) noexcept {
      for (; next_ != end_; ++next_) {
        const range_type n = *next_;
        if (n.len() == 0) continue;
        if (last == ~std::uint64_t{0} || n.addr().value() != last + 1 || n.flags() != flags_ ||
            n.len() > ~left_)
          return;
        left_ += n.len();
        last = n.last().value();
      }
    }
    // Calls f on the segments of every entry of [from, to), read with the source's segment
    // walk; zero-length entries (an unplanned span) are skipped.
    template <class F>
    PHYR_ALWAYS_INLINE constexpr bool cut_source(It from, It to, F& f) const noexcept {
      const cut_each<F> g{this, f};
      return for_each_range(from, to, g);
    }
    // cut_source's per-entry step. A segment walk hands it a one-entry source without its
    // loop (walk_one_alone): a one-page or one-run I/O is nearly all such fixed cost.
    template <class F>
    struct cut_each {
      static constexpr bool walk_one_alone = true;
      const iterator* self;
      F& f;
      PHYR_ALWAYS_INLINE constexpr bool operator()(const range_type& r) const noexcept {
        const std::uint64_t a = r.addr().value();
        const std::uint64_t len = r.len();
        // Most entries are one segment: passed on as they are, with no piece computed and no
        // range rebuilt (a zero length wraps here, and is skipped below).
        if (PHYR_LIKELY(len - 1 < self->limit_ &&
                        len - 1 <= detail::boundary_room_m1(a, self->mask_)))
          return detail::call_continue(f, r);
        if (len == 0) return true;
        return self->cut_all(a, len, self->cut(a, len), r.flags(), f);
      }
    };
    // Calls f on the segments of [a, a + left), the first `piece` bytes long.
    template <class F>
    PHYR_ALWAYS_INLINE constexpr bool cut_all(std::uint64_t a, std::uint64_t left,
                                              std::uint64_t piece, range_flags fl,
                                              F& f) const noexcept {
      for (;;) {
        if (!detail::call_continue(f, range_type::make_unchecked(a, piece, fl))) return false;
        left -= piece;
        if (PHYR_LIKELY(left == 0)) return true;
        a += piece;
        piece = cut(a, left);
      }
    }
    [[nodiscard]] constexpr std::uint64_t cut(std::uint64_t a, std::uint64_t left) const noexcept {
      std::uint64_t n = left < limit_ ? left : limit_;
      const std::uint64_t room_m1 = detail::boundary_room_m1(a, mask_);
      if (n - 1 > room_m1) n = room_m1 + 1;
      return n;
    }

    It src_{};   // first entry of the current range
    // With merging: the entry after the current run. Without, nothing: iterators are copied
    // several times per I/O, so they carry no word they do not use.
    struct no_next {
      constexpr no_next() noexcept = default;
      constexpr explicit no_next(const It&) noexcept {}
    };
    [[no_unique_address]] std::conditional_t<merging, It, no_next> next_{};
    It end_{};
    std::uint64_t pos_ = 0;    // start of the current segment
    std::uint64_t left_ = 0;   // bytes from pos_ to the end of the current range; 0 at the end
    std::uint64_t piece_ = 0;  // length of the current segment
    std::uint64_t limit_ = 1;
    std::uint64_t mask_ = ~std::uint64_t{0};
    range_flags flags_ = range_flags::none;
  };
  using const_iterator = iterator;

  constexpr split_view() noexcept = default;
  /// Segments of [first, last) under `c` (merging contiguous entries if `Merge` says so).
  constexpr split_view(It first, It last, const checked_constraints& c) noexcept
      : first_(first), last_(last), limit_(c.segment_limit()), mask_(c->segment_boundary_mask) {}

  [[nodiscard]] constexpr iterator begin() const noexcept {
    return iterator{first_, last_, limit_, mask_};
  }
  [[nodiscard]] constexpr iterator end() const noexcept {
    return iterator{last_, typename iterator::at_end{}};
  }
  /// Calls `f(segment)` for each segment in order, stopping early when `f` returns false (f may
  /// return void); returns whether it reached the end. The same segments as iterating, read
  /// with the source's segment walk (for_each_range): the fast way to post descriptors.
  template <class F>
  PHYR_ALWAYS_INLINE constexpr bool for_each(F&& f) const noexcept {
    if constexpr (merging) {
      return for_each_range(begin(), end(), f);
    } else {
      // Straight from the source, with no iterator built: the per-I/O form.
      const iterator cutter{last_, typename iterator::at_end{}, limit_, mask_};
      return cutter.cut_source(first_, last_, f);
    }
  }
  /// True when no segment would be yielded. O(entries) in the worst case (skips zero-length
  /// entries), O(1) for planned input.
  [[nodiscard]] constexpr bool empty() const noexcept { return begin() == end(); }

 private:
  It first_{};
  It last_{};
  std::uint64_t limit_ = 1;
  std::uint64_t mask_ = ~std::uint64_t{0};
};

/// Lazily yields `list`'s ranges cut to `c`'s max segment size and segment boundary (merging
/// contiguous entries first with `split<merge_policy::merge_contiguous>`; the policy is a
/// template argument so the default loop carries no merge state). Takes `checked_constraints`
/// only, so contradictory limits cannot get here (make them with
/// `checked_constraints::create`, or call try_split). Checks nothing about the list: call
/// try_plan_split first for reachability, alignment, counts. `list` must be an lvalue or a
/// borrowed view (`enable_borrowed_source`): the result keeps iterators into it.
template <merge_policy Merge = merge_policy::keep_entries, class L>
  requires viewable_source<L>
[[nodiscard]] constexpr split_view<detail::source_iterator_t<std::remove_cvref_t<L>>, Merge> split(
    L&& list, const checked_constraints& c) noexcept {
  return {list.begin(), list.end(), c};
}

/// try_plan_split, then split: the segments of a list the device can take as it is.
/// Errors are try_plan_split's (gap_policy::reject: split() cannot fix a gap). The per-I/O
/// form takes `checked_constraints` (limits checked once, at setup); the other checks `c`
/// first, once. O(1) for a counted source (`enable_counted_source`: phyr's lists, views and
/// identity mappings) when the device limits only the segment size and boundary, the DMA mask,
/// the total length and a virtual boundary the list's gap_bits() shows every gap respects (no
/// segment count, alignment, transfer unit or excluded window); otherwise one pass over the
/// list (one check for a list of one range).
template <merge_policy Merge = merge_policy::keep_entries, class L>
  requires viewable_source<L>
[[nodiscard]] PHYR_ALWAYS_INLINE constexpr result<
    split_view<detail::source_iterator_t<std::remove_cvref_t<L>>, Merge>>
try_split(L&& list, const checked_constraints& c) noexcept {
  using view = split_view<detail::source_iterator_t<std::remove_cvref_t<L>>, Merge>;
  // A device that limits only the segment size and boundary (with any DMA mask and total, and
  // a virtual boundary every gap of the list provably respects) and a list whose counters are
  // exact and whose ranges are never empty: the pass could fail only on an empty list, a byte
  // above the mask or the total, in that order, and those are O(1).
  if constexpr (enable_counted_source<std::remove_cvref_t<L>>) {
    const dma_constraints& d = c.get();
    if (c.counters_suffice() && (list.gap_bits() & d.virt_boundary_mask) == 0) {
      if (list.size() == 0) return errc::invalid_argument;
      if (list.highest().value() > d.dma_mask) return errc::not_addressable;
      if (list.total_bytes() > d.max_total_bytes) return errc::too_long;
      return view{list.begin(), list.end(), c};
    }
  }
  split_plan unused;
  if (const errc e = detail::plan_split_into(list, c.get(), split_options{.merge = Merge}, nullptr,
                                             unused);
      e != errc{})
    return e;
  return view{list.begin(), list.end(), c};
}
template <merge_policy Merge = merge_policy::keep_entries, class L>
  requires viewable_source<L>
[[nodiscard]] constexpr result<split_view<detail::source_iterator_t<std::remove_cvref_t<L>>, Merge>>
try_split(L&& list, const dma_constraints& c) noexcept {
  auto ok = checked_constraints::create(c);
  if (!ok) return ok.error();
  return try_split<Merge>(std::forward<L>(list), *ok);
}

}  // namespace phyr::inline v0
