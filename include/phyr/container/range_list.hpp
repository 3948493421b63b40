/// `range_list<Range, Alloc>`: a list of ranges in chained fixed-size segments.
///
///   phyr::range_list<phyr::phys_range> l;               // empty; allocates nothing
///   if (auto r = l.try_append_pages(pfns, /*first_offset=*/0x200, /*total_len=*/len); !r)
///     return r.error();                                  // out_of_memory, invalid_argument, ...
///   for (const phyr::phys_range& r : l) program(r);      // one entry per contiguous chunk
///   l.size(); l.total_bytes(); l.lowest(); l.highest();  // all O(1)
///
/// Why this shape:
/// - Heap segments are linked like a chained scatterlist, so a list of millions of entries
///   never needs one large allocation nor a reallocation copy, and appending never moves an
///   entry (views and aliasing mappings stay valid).
/// - The first four entries live inside the object: a list of up to four (a scattered 16 KiB
///   I/O, any contiguous one) never touches the allocator. Heap segments then grow
///   geometrically from 96 bytes (5 entries) by 1.25x up to one page (255 entries), so a list
///   of a few dozen entries costs no more than the kernel's exactly sized scatterlist (32
///   bytes per entry: built by try_append_pages, 0.97x at 8 entries, 1.04x at 7, 1.25x at 5;
///   appended entry by entry, 1.18x at worst from 8 entries on), and a long one is almost all
///   full 4 KiB segments. On a `pool_allocator` every segment is one pool block (up to a
///   page), since a pool hands out whole blocks anyway.
/// - Page arrays that are one physical run, or no more pages than inline entries, go straight
///   into the inline entries of an empty list (no checkpoint, no general scan): the per-I/O
///   case of building, mapping and dropping one list per I/O.
/// - Appending coalesces with the tail: adjacent, same flags, merged length within
///   `max_segment()`, and not crossing a multiple of `segment_boundary()`. Ranges longer than
///   the limits are split greedily (fill the tail, then full-size pieces), which never gives
///   more entries than the kernel's sg_alloc_table_from_pages_segment on the same pages.
/// - Limits are at least one page (the block layer's rule: blk_queue_max_segment_size and
///   blk_queue_segment_boundary raise smaller values to PAGE_SIZE; here they are rejected),
///   and the boundary is a power of two. So one append makes at most len / 4096 + 2 entries
///   (16 bytes per 4 KiB described, 0.4%): a byte-sized limit cannot turn one long range into
///   billions of entries, and every whole page fits one entry, which keeps the page-array
///   build on its fast path whatever the limits.
/// - Every `try_*` gives the strong guarantee: on failure the list is exactly as before and
///   nothing leaks (tested with `fault_injecting_allocator` at every allocation).
/// - `clear()` keeps segments for reuse, so a per-I/O list reaches a steady state with no
///   allocation at all.
///
/// Invariants: every segment in the live chain holds at least one entry (the inline head may
/// be empty only when the list is); the last live segment's `next` is null; spare segments sit
/// on a separate stack.
#pragma once

#include <atomic>
#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <span>
#include <type_traits>
#include <utility>

#include <phyr/config.hpp>
#include <phyr/core/address.hpp>
#include <phyr/core/allocator.hpp>
#include <phyr/core/error.hpp>
#include <phyr/core/page.hpp>
#include <phyr/core/range.hpp>
#include <phyr/container/pfn_runs.hpp>

namespace phyr::inline v0 {

namespace detail {

/// Segment header; `capacity` entries of the range type follow it in the same block.
struct segment_header {
  segment_header* next;
  std::uint32_t count;
  std::uint32_t capacity;
};
static_assert(sizeof(segment_header) == 16);

/// One step of an iterator over the segment chain: the next entry, in the next segment after
/// the last entry of this one.
inline void seg_step(const segment_header*& s, std::uint32_t& idx) noexcept {
  if (++idx == s->count) {
    s = s->next;
    idx = 0;
  }
}

/// Calls `f(r)`; true unless `f` returns a bool and it is false (f may return void). The
/// callback protocol of for_each_range (container/range_source.hpp) and `walk_segments`.
template <class F, class R>
PHYR_ALWAYS_INLINE constexpr bool call_continue(F& f, const R& r) noexcept {
  if constexpr (std::is_void_v<decltype(f(r))>) {
    f(r);
    return true;
  } else {
    return static_cast<bool>(f(r));
  }
}

/// A segment-walk callback that declares `static constexpr bool walk_one_alone = true` gets
/// a walk of one entry as a plain call, without the loop. Opt-in, because the test changes how
/// the compiler lays out the loop: split's pass-through (one-page and one-run I/Os) gains ~40
/// instructions from it, while the PRP writer's per-page loop lost ~7 per entry.
template <class F>
concept walk_one_alone = requires { requires std::remove_cvref_t<F>::walk_one_alone; };

/// Calls f on the `n` entries that start at entry `i` of segment `s` (n >= 1, all in the
/// chain): one tight loop per segment.
template <class Range, class F>
PHYR_ALWAYS_INLINE bool walk_chain(const segment_header* s, std::uint32_t i, std::size_t n,
                                   F& f) noexcept {
  if constexpr (walk_one_alone<F>) {
    // With the loop, its state stays live beside f's and the compiler saves some of both on
    // the stack; a single entry needs none of it.
    if (n == 1) return call_continue(f, reinterpret_cast<const Range*>(s + 1)[i]);
  }
  for (;;) {
    const Range* e = reinterpret_cast<const Range*>(s + 1);
    const std::size_t here = s->count - i;
    const std::size_t m = here < n ? here : n;
    for (std::size_t k = 0; k < m; ++k) {
      if (!call_continue(f, e[i + k])) return false;
    }
    n -= m;
    if (n == 0) return true;
    s = s->next;
    i = 0;
  }
}

template <class Range>
[[nodiscard]] inline Range* seg_entries(segment_header* h) noexcept {
  return reinterpret_cast<Range*>(h + 1);
}
template <class Range>
[[nodiscard]] inline const Range* seg_entries(const segment_header* h) noexcept {
  return reinterpret_cast<const Range*>(h + 1);
}

/// Count of live borrows (aliasing mappings, views handed to devices) when
/// PHYR_ENABLE_BORROW_CHECKS is on: mutating or destroying a borrowed list is a bug that
/// corrupts a device's view of memory, so such builds trap on it. Atomic, because borrowing
/// only reads the list: two mappers may map one const list from two threads at once. The
/// count itself orders nothing (relaxed increments); the checks read it with acquire so a
/// release on another thread that happened before is seen. Otherwise stores and checks nothing.
// The inline namespace changes with PHYR_ENABLE_BORROW_CHECKS (config.hpp): the two layouts
// of range_list get different mangled names, so mixing them fails to link.
inline namespace PHYR_BORROW_ABI_NAMESPACE {
#if PHYR_ENABLE_BORROW_CHECKS
struct borrow_counter {
  mutable std::atomic<std::uint32_t> n{0};
  void acquire() const noexcept { n.fetch_add(1, std::memory_order_relaxed); }
  void release() const noexcept {
    const std::uint32_t before = n.fetch_sub(1, std::memory_order_release);
    PHYR_ASSERT(before > 0, "borrow released twice");
  }
  [[nodiscard]] bool borrowed() const noexcept {
    return n.load(std::memory_order_acquire) != 0;
  }
};
#else
struct borrow_counter {
  void acquire() const noexcept {}
  void release() const noexcept {}
  [[nodiscard]] constexpr bool borrowed() const noexcept { return false; }
};
#endif
}  // namespace PHYR_BORROW_ABI_NAMESPACE

/// What a range_list knows about its entries, in one aggregate so that clearing, moving,
/// checkpointing and rolling back are single assignments.
struct list_counters {
  std::size_t size = 0;
  std::uint64_t total = 0;
  std::uint64_t lowest = ~std::uint64_t{0};
  std::uint64_t highest = 0;
  std::uint64_t gaps = 0;  // gap_bits(): see range_list
  std::size_t live_heap_bytes = 0;  // heap segments in the chain (the rest are spares)
};

/// The bits a junction from a range whose last byte is `prev_last` to one starting at `next`
/// adds to gap_bits(): none when the next range continues the previous one.
[[nodiscard]] constexpr std::uint64_t gap_at(std::uint64_t prev_last, std::uint64_t next) noexcept {
  return prev_last != ~std::uint64_t{0} && prev_last + 1 == next ? 0 : (prev_last + 1) | next;
}

/// Where a whole list's entries and counters live, whatever its allocator: what an aliasing
/// user that must stay small (an identity mapping, two words) keeps instead of a view.
struct list_core_ref {
  const segment_header* head = nullptr;
  const list_counters* n = nullptr;
  const borrow_counter* borrows = nullptr;
};

}  // namespace detail

inline namespace PHYR_BORROW_ABI_NAMESPACE {

/// A non-owning, allocator-independent view of (part of) a range_list. The first and last
/// entries may be trimmed (a byte slice), so iteration yields ranges by value. Valid while
/// the list it came from is alive and unmodified.
template <any_range Range>
class range_list_view {
 public:
  using value_type = Range;
  using space_type = typename Range::space_type;

  class iterator {
   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = Range;
    using difference_type = std::ptrdiff_t;
    using reference = Range;
    using pointer = void;

    constexpr iterator() noexcept = default;
    [[nodiscard]] Range operator*() const noexcept {
      Range r = detail::seg_entries<Range>(seg_)[idx_];
      // Whole-list views (what identity mappings hold) never trim: one predictable branch.
      if (PHYR_LIKELY(last_len_ == 0)) return r;
      if (head_trim_ != 0) r = Range{r.addr() + head_trim_, r.len() - head_trim_, r.flags()};
      if (left_ == 1) r = Range{r.addr(), last_len_, r.flags()};
      return r;
    }
    iterator& operator++() noexcept {
      --left_;
      head_trim_ = 0;  // only the first entry is cut at its start
      detail::seg_step(seg_, idx_);
      return *this;
    }
    iterator operator++(int) noexcept {
      iterator t = *this;
      ++*this;
      return t;
    }
    /// Iterators of one view are equal when as many entries are left after them.
    friend bool operator==(const iterator& a, const iterator& b) noexcept {
      return a.left_ == b.left_;
    }
    /// for_each_range's segment walk (container/range_source.hpp).
    template <class F>
    PHYR_ALWAYS_INLINE friend bool walk_segments(const iterator& first, const iterator& last,
                                                 F& f) noexcept {
      if (first.left_ == last.left_) return true;
      if (PHYR_LIKELY(first.last_len_ == 0))
        return detail::walk_chain<Range>(first.seg_, first.idx_, first.left_ - last.left_, f);
      // A trimmed slice: its first and last entries are cut, so step entry by entry.
      for (iterator it = first; it != last; ++it) {
        if (!detail::call_continue(f, *it)) return false;
      }
      return true;
    }

   private:
    friend class range_list_view;
    // Five words, copied wherever a lazy device/ view or a mapping holds iterators: the
    // position, the entries left (end: 0), and for trimmed views only the cut at the first
    // entry's start and the last entry's length (last_len_ == 0: not trimmed).
    const detail::segment_header* seg_ = nullptr;
    std::uint32_t idx_ = 0;
    std::size_t left_ = 0;
    std::uint64_t head_trim_ = 0;
    std::uint64_t last_len_ = 0;
  };
  using const_iterator = iterator;

  constexpr range_list_view() noexcept = default;

  [[nodiscard]] iterator begin() const noexcept {
    iterator it;
    it.seg_ = seg_;
    it.idx_ = idx_;
    it.left_ = count_;
    if (trimmed_) {
      it.head_trim_ = head_trim_;
      it.last_len_ = last_len_;
    }
    return it;
  }
  [[nodiscard]] iterator end() const noexcept { return iterator{}; }
  [[nodiscard]] std::size_t size() const noexcept { return count_; }
  [[nodiscard]] bool empty() const noexcept { return count_ == 0; }
  [[nodiscard]] std::uint64_t total_bytes() const noexcept { return total_; }
  /// As range_list::gap_bits, for the view's entries.
  [[nodiscard]] std::uint64_t gap_bits() const noexcept { return gaps_; }
  /// Smallest start address; the view must not be empty.
  [[nodiscard]] address<space_type> lowest() const noexcept {
    PHYR_ASSERT(count_ != 0, "lowest() of an empty view");
    return address<space_type>{lowest_};
  }
  /// Largest last-byte address; the view must not be empty.
  [[nodiscard]] address<space_type> highest() const noexcept {
    PHYR_ASSERT(count_ != 0, "highest() of an empty view");
    return address<space_type>{highest_};
  }
  [[nodiscard]] Range front() const noexcept {
    PHYR_ASSERT(count_ != 0, "front() of an empty view");
    return *begin();
  }
  [[nodiscard]] Range back() const noexcept {
    PHYR_ASSERT(count_ != 0, "back() of an empty view");
    return Range{address<space_type>{back_addr_}, last_len_, back_flags_};
  }

  /// The first entry of the whole list behind `c` (an aliasing user's core_ref), as an
  /// iterator of this view type; `end()` is its end.
  [[nodiscard]] static iterator begin_of(const detail::list_core_ref& c) noexcept {
    iterator it;
    if (c.n == nullptr) return it;
    it.seg_ = c.head;
    it.left_ = c.n->size;
    return it;
  }
  /// The whole list behind `c` as a view. O(heap segments): the last entry is found by
  /// following the chain.
  [[nodiscard]] static range_list_view whole(const detail::list_core_ref& c) noexcept {
    range_list_view v;
    v.borrows_ = c.borrows;
    if (c.n == nullptr || c.n->size == 0) return v;
    // The segment holding entry size - 1: counted, not assumed to end the chain.
    const detail::segment_header* last = c.head;
    for (std::size_t seen = last->count; seen < c.n->size; seen += last->count) last = last->next;
    const Range& b = detail::seg_entries<Range>(last)[last->count - 1];
    v.seg_ = c.head;
    v.count_ = c.n->size;
    v.last_len_ = b.len();
    v.back_addr_ = b.addr().value();
    v.back_flags_ = b.flags();
    v.total_ = c.n->total;
    v.lowest_ = c.n->lowest;
    v.highest_ = c.n->highest;
    v.gaps_ = c.n->gaps;
    return v;
  }

  /// Borrow tracking for aliasing users (identity mappings); no-ops without
  /// PHYR_ENABLE_BORROW_CHECKS. Safe to call from several threads at once.
  void debug_acquire_borrow() const noexcept {
    if (borrows_ != nullptr) borrows_->acquire();
  }
  void debug_release_borrow() const noexcept {
    if (borrows_ != nullptr) borrows_->release();
  }

 private:
  template <any_range R, segment_allocator A>
  friend class range_list;

  const detail::segment_header* seg_ = nullptr;
  std::uint32_t idx_ = 0;
  std::size_t count_ = 0;
  std::uint64_t head_trim_ = 0;
  std::uint64_t last_len_ = 0;
  std::uint64_t back_addr_ = 0;
  range_flags back_flags_ = range_flags::none;
  bool trimmed_ = false;  // first or last entry is cut (slices only)
  std::uint64_t total_ = 0;
  std::uint64_t lowest_ = 0;
  std::uint64_t highest_ = 0;
  std::uint64_t gaps_ = 0;
  const detail::borrow_counter* borrows_ = nullptr;
};

template <any_range Range, segment_allocator Alloc = default_allocator>
class range_list {
 public:
  using value_type = Range;
  using space_type = typename Range::space_type;
  using allocator_type = Alloc;
  using view_type = range_list_view<Range>;

  /// Entries held in the list object itself: a scattered 16 KiB I/O (four pages) allocates
  /// nothing. Each costs 16 bytes in every list, so a one-entry list is 32 bytes larger than
  /// with two, while lists of three or more entries need less heap.
  static constexpr std::uint32_t inline_capacity = 4;
  /// Heap segment sizes: each 1.25x the one before (the inline head, 80 bytes, counts as the
  /// first), rounded down to whole entries, up to one page; `capacity_of(b)`: the entries a
  /// `b`-byte segment holds.
  static constexpr std::size_t first_segment_bytes = 96;
  static constexpr std::size_t max_segment_bytes = page_size;
  [[nodiscard]] static constexpr std::uint32_t capacity_of(std::size_t b) noexcept {
    return static_cast<std::uint32_t>((b - sizeof(detail::segment_header)) / sizeof(Range));
  }
  static_assert(sizeof(Range) == 16 && alignof(Range) <= 16);

  class iterator {
   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = Range;
    using difference_type = std::ptrdiff_t;
    using reference = const Range&;
    using pointer = const Range*;

    constexpr iterator() noexcept = default;
    [[nodiscard]] const Range& operator*() const noexcept {
      return detail::seg_entries<Range>(seg_)[idx_];
    }
    [[nodiscard]] const Range* operator->() const noexcept { return &**this; }
    iterator& operator++() noexcept {
      detail::seg_step(seg_, idx_);
      return *this;
    }
    iterator operator++(int) noexcept {
      iterator t = *this;
      ++*this;
      return t;
    }
    friend bool operator==(const iterator&, const iterator&) noexcept = default;
    /// for_each_range's segment walk (container/range_source.hpp).
    template <class F>
    PHYR_ALWAYS_INLINE friend bool walk_segments(const iterator& first, const iterator& last,
                                                 F& f) noexcept {
      const detail::segment_header* s = first.seg_;
      std::uint32_t i = first.idx_;
      for (; s != last.seg_; s = s->next, i = 0) {
        const Range* e = detail::seg_entries<Range>(s);
        for (std::uint32_t k = i; k < s->count; ++k) {
          if (!detail::call_continue(f, e[k])) return false;
        }
      }
      if (s != nullptr) {
        const Range* e = detail::seg_entries<Range>(s);
        for (std::uint32_t k = i; k < last.idx_; ++k) {
          if (!detail::call_continue(f, e[k])) return false;
        }
      }
      return true;
    }

   private:
    friend class range_list;
    constexpr iterator(const detail::segment_header* s, std::uint32_t i) noexcept
        : seg_(s), idx_(i) {}
    const detail::segment_header* seg_ = nullptr;
    std::uint32_t idx_ = 0;
  };
  using const_iterator = iterator;

  range_list() noexcept { reset_head(); }
  explicit range_list(Alloc a) noexcept : alloc_(a) { reset_head(); }

  range_list(const range_list&) = delete;
  range_list& operator=(const range_list&) = delete;

  range_list(range_list&& o) noexcept : alloc_(o.alloc_) {
    reset_head();
    take(o);
  }
  range_list& operator=(range_list&& o) noexcept {
    if (this != &o) {
      PHYR_ASSERT(!borrows_.borrowed(), "range_list assigned while a mapping borrows it");
      release_all();
      alloc_ = o.alloc_;
      reset_head();
      take(o);
    }
    return *this;
  }
  ~range_list() {
    PHYR_ASSERT(!borrows_.borrowed(), "range_list destroyed while a mapping borrows it");
    // A list that never left its inline entries (a short I/O) owns nothing to give back.
    if (head_.h.next != nullptr || spare_ != nullptr) release_all();
  }

  /// A deep copy with the same allocator and limits; out_of_memory leaves nothing behind.
  [[nodiscard]] result<range_list> try_clone() const noexcept {
    range_list c{alloc_};
    c.max_segment_ = max_segment_;
    c.boundary_shift_ = boundary_shift_;
    for (const Range& r : *this) {
      if (!c.push_raw(r)) return errc::out_of_memory;
    }
    return result<range_list>{std::move(c)};
  }

  /// Appends `r`, coalescing with the tail and splitting at `max_segment()` and
  /// `segment_boundary()`. Errors: invalid_argument (zero length), overflow (total bytes
  /// would pass 2^64), out_of_memory. Strong guarantee.
  result<void> try_append(const Range& r) noexcept {
    assert_unborrowed();
    if (r.len() == 0) return errc::invalid_argument;
    if (r.len() > ~n_.total) return errc::overflow;
    // Fast path (no limits set, the common case for building from ranges one at a time):
    // grow the tail entry or write into free room of the tail segment, no checkpoint.
    if (PHYR_LIKELY(max_segment_ == Range::max_len && boundary_shift_ == 0)) {
      const std::uint32_t c = tail_->count;
      if (c != 0) {
        Range& b = detail::seg_entries<Range>(tail_)[c - 1];
        if (b.adjacent(r) && b.flags() == r.flags()) {
          // Past max_len the greedy rule fills the tail first: the slow path does that.
          if (r.len() > Range::max_len - b.len()) return append_slow(r);
          b = Range{b.addr(), b.len() + r.len(), b.flags()};
          n_.total += r.len();
          if (r.last().value() > n_.highest) n_.highest = r.last().value();
          return {};
        }
      }
      if (c != tail_->capacity) {
        n_.gaps |= gap_after_back(r.addr().value());
        ::new (static_cast<void*>(detail::seg_entries<Range>(tail_) + c)) Range(r);
        tail_->count = c + 1;
        ++n_.size;
        n_.total += r.len();
        if (r.addr().value() < n_.lowest) n_.lowest = r.addr().value();
        if (r.last().value() > n_.highest) n_.highest = r.last().value();
        return {};
      }
    }
    return append_slow(r);
  }

  /// Appends every range of `ranges` (anything iterable that yields `Range`: an array of
  /// chunks, a vector, a view), in order, exactly as try_append on each would. Errors as
  /// try_append's; all or nothing: on any error the list is as before (strong guarantee), and
  /// appending a list to itself is invalid_argument.
  ///
  /// Why it exists: try_append updates the list's counters in the object for every range, so
  /// a loop of them is a chain of store-to-load round trips through those counters (4.5 ns a
  /// 512-byte chunk, against 1.6 here). Here, with no limits set, the counters and the write
  /// position live in locals for the whole call and reach the object once per segment; with
  /// limits, every range takes the general split under one checkpoint.
  template <class Ranges>
    requires requires(const Ranges& rs) {
      { *std::begin(rs) } -> std::convertible_to<Range>;
      std::end(rs);
    }
  result<void> try_append_all(const Ranges& ranges) noexcept {
    assert_unborrowed();
    if constexpr (std::is_same_v<Ranges, range_list>) {
      if (&ranges == this) return errc::invalid_argument;
    }
    const checkpoint cp = save();
    if (max_segment_ != Range::max_len || boundary_shift_ != 0) {
      for (const Range r : ranges) {
        if (r.len() == 0) return fail(cp, errc::invalid_argument);
        if (r.len() > ~n_.total) return fail(cp, errc::overflow);
        if (!append_split(r.addr().value(), r.len(), r.flags()))
          return fail(cp, errc::out_of_memory);
      }
      return {};
    }
    bulk_state st = load_bulk();
    for (const Range r : ranges) {
      const std::uint64_t a = r.addr().value();
      const std::uint64_t len = r.len();
      if (len == 0) return fail(cp, errc::invalid_argument);
      if (len > ~st.total) return fail(cp, errc::overflow);
      const std::uint64_t last = a + (len - 1);  // a valid range does not wrap
      // The tail entry is wp[-1] whenever the list is not empty: a segment in the chain is
      // never left empty between two ranges (grow() is called only to push one). It is read
      // back from the segment rather than kept in locals: the loads only feed the branches,
      // and the registers are worth more holding the counters.
      if (st.wp != st.first) {
        Range& b = st.wp[-1];
        if (b.adjacent(r) && b.flags() == r.flags()) {
          if (PHYR_UNLIKELY(len > Range::max_len - b.len())) {
            // Past max_len the greedy rule fills the tail first: the general split.
            store_bulk(st);
            if (!append_split(a, len, r.flags())) return fail(cp, errc::out_of_memory);
            st = load_bulk();
            continue;
          }
          b = Range::make_unchecked(b.addr().value(), b.len() + len, b.flags());
          st.total += len;
          if (last > st.highest) st.highest = last;
          continue;
        }
        st.gaps |= detail::gap_at(b.last().value(), a);
      }
      if (PHYR_UNLIKELY(st.wp == st.end)) {
        store_bulk(st);
        if (!grow()) return fail(cp, errc::out_of_memory);
        st = load_bulk();
      }
      *st.wp++ = r;
      st.total += len;
      if (a < st.lowest) st.lowest = a;
      if (last > st.highest) st.highest = last;
    }
    store_bulk(st);
    return {};
  }

  /// Appends the 4 KiB pages `pfns` of a virtually contiguous buffer: the data starts
  /// `first_offset` bytes into the first page and is `total_len` bytes long, so every page is
  /// used (the kernel's sg_alloc_table_from_pages contract). Physically consecutive pages
  /// coalesce, then split at the limits. Errors: invalid_argument (empty span, first_offset
  /// >= 4096, a total_len that does not end in the last page, a pfn above 2^52 - 1), overflow,
  /// out_of_memory. Strong guarantee.
  result<void> try_append_pages(std::span<const std::uint64_t> pfns, std::uint64_t first_offset,
                                std::uint64_t total_len,
                                range_flags flags = range_flags::none) noexcept {
    assert_unborrowed();
    const std::size_t n = pfns.size();
    // One page into an empty list (every 4 KiB I/O): one entry, as the general path makes it
    // (a piece of one page never meets a limit: both are at least a page, the boundary a
    // power of two), with the checks a single page needs and nothing else.
    if (n == 1 && n_.size == 0 && first_offset < page_size && total_len - 1 < page_size - first_offset &&
        (pfns[0] >> pfn_bits) == 0) {
      put_only_entry(pfn_to_addr(pfns[0]) + first_offset, total_len, flags);
      return {};
    }
    // A few pages into an empty list (the per-I/O cases up to 64 KiB): one pass page by page.
    if (n <= short_max_pages && n_.size == 0 &&
        append_pages_short(pfns.data(), n, first_offset, total_len, flags))
      return {};
    return append_pages_general(pfns, first_offset, total_len, flags);
  }

  /// Longest entry that later appends may produce (bytes); 0 restores the default (no limit:
  /// `Range::max_len`). Errors: invalid_argument below one page (4096), which would let one
  /// append make an entry per few bytes (see the file comment). Larger values need not be
  /// page multiples (e.g. 0xffff). Affects later appends only.
  result<void> try_set_max_segment(std::uint64_t bytes) noexcept {
    assert_unborrowed();
    if (bytes != 0 && bytes < page_size) return errc::invalid_argument;
    max_segment_ = (bytes == 0 || bytes > Range::max_len) ? Range::max_len : bytes;
    return {};
  }
  [[nodiscard]] std::uint64_t max_segment() const noexcept { return max_segment_; }

 private:
  // try_append_pages past its one-page case, out of line: the caller's inlined fast path then
  // carries none of this path's register saves.
  result<void> append_pages_general(std::span<const std::uint64_t> pfns,
                                    std::uint64_t first_offset, std::uint64_t total_len,
                                    range_flags flags) noexcept {
    const std::size_t n = pfns.size();
    if (n == 0 || first_offset >= page_size || total_len == 0) return errc::invalid_argument;
    // Every page must carry data: (first_offset + total_len) rounds up to exactly n pages.
    if (n > (~std::uint64_t{0} >> page_shift)) return errc::too_long;
    const std::uint64_t span_bytes = static_cast<std::uint64_t>(n) * page_size;
    if (total_len > span_bytes - first_offset ||
        total_len + first_offset <= span_bytes - page_size)
      return errc::invalid_argument;
    if (total_len > ~n_.total) return errc::overflow;
    // Into an empty list, pages that are physically one run within the limits (a contiguous
    // I/O past append_pages_short's 16 pages) become the first inline entry with no
    // checkpoint. Anything else falls through to the general path with nothing changed; the
    // tests before the scan keep fragmented input, and a run the limits cut, from being
    // scanned twice.
    if (n_.size == 0 && pfns[n - 1] - pfns[0] == n - 1 &&
        fits_one_entry(pfn_to_addr(pfns[0]) + first_offset, total_len) &&
        append_pages_one_run(pfns.data(), n, first_offset, total_len, flags))
      return {};

    // A short input into an empty list without limits or spare segments (a fresh per-I/O
    // list) with more runs than inline entries: one pass to count, one allocation, one pass to
    // write, no checkpoint. It saves the general path's fixed cost (about 260 instructions for
    // 4 scattered pages) but writes a run in about 15 instructions against append_runs' 10,
    // so past fresh_max_pages the general path is the faster one.
    if (n <= fresh_max_pages && n_.size == 0 && spare_ == nullptr &&
        max_segment_ == Range::max_len && boundary_shift_ == 0) {
      const fresh f = append_pages_fresh(pfns.data(), n, first_offset,
                                         span_bytes - first_offset - total_len, flags);
      if (f == fresh::done) {
        n_.total = total_len;
        return {};
      }
      if (f == fresh::bad_frame) return errc::invalid_argument;
      if (f == fresh::no_memory) return errc::out_of_memory;
    }

    const checkpoint cp = save();
    const std::uint64_t* p = pfns.data();
    const std::uint64_t tail_cut = span_bytes - first_offset - total_len;
    // A segment sized from the input (see reserve_for_runs); given back if the call fails, so
    // a failure leaves the allocator balance as it found it.
    const bool hinted = spare_ == nullptr && reserve_for_runs(p, n);
    auto fail = [&](errc e) noexcept {
      rollback(cp);
      if (hinted) shrink_to_fit();  // the spare stack was empty before: only the hint is there
      return e;
    };

    // First run: may coalesce with the current tail, so it takes the general path.
    // A first run of one page (every scattered input) is settled by one compare, not by
    // pfn_run_end's sixteen-frame setup (about 80 instructions per call).
    std::size_t i = n == 1 || p[1] != p[0] + 1 ? 1 : detail::pfn_run_end(p, 2, n);
    // A run's pfns are consecutive, so checking its ends checks all of it (pfn < 2^52,
    // so the byte address fits 64 bits).
    if ((p[0] | p[i - 1]) >> pfn_bits) return fail(errc::invalid_argument);
    {
      std::uint64_t addr = pfn_to_addr(p[0]) + first_offset;
      std::uint64_t len = static_cast<std::uint64_t>(i) * page_size - first_offset;
      if (i == n) len -= tail_cut;
      // Into an empty list, a first run within the limits is its only entry so far: no tail
      // to merge with and nothing to cut (append_split's checks, ~40 instructions).
      if (n_.size == 0 && fits_one_entry(addr, len)) {
        put_only_entry(addr, len, flags);
      } else if (!append_split(addr, len, flags)) {
        return fail(errc::out_of_memory);
      }
    }
    // Later runs start on a discontinuity, so they never merge with what precedes them.
    if (i < n) {
      const result<void> r = max_segment_ == Range::max_len && boundary_shift_ == 0
                                 ? append_runs<false>(p, i, n, tail_cut, flags)
                                 : append_runs<true>(p, i, n, tail_cut, flags);
      if (!r) return fail(r.error());
      // every byte of the input is in the list now; the first run counted its own
      n_.total = cp.n.total + total_len;
    }
    return {};
  }

 public:
  /// No entry produced by later appends crosses a multiple of `bytes`; 0 removes the
  /// boundary. Errors: invalid_argument unless a power of two of at least one page (the
  /// hardware rule is a mask, and the block layer's minimum is PAGE_SIZE).
  result<void> try_set_segment_boundary(std::uint64_t bytes) noexcept {
    assert_unborrowed();
    if (bytes != 0 && (bytes < page_size || (bytes & (bytes - 1)) != 0))
      return errc::invalid_argument;
    boundary_shift_ = bytes == 0 ? std::uint8_t{0} : static_cast<std::uint8_t>(std::countr_zero(bytes));
    return {};
  }
  /// The boundary in bytes; 0 when there is none.
  [[nodiscard]] std::uint64_t segment_boundary() const noexcept {
    return boundary_shift_ == 0 ? 0 : std::uint64_t{1} << boundary_shift_;
  }

  [[nodiscard]] std::size_t size() const noexcept { return n_.size; }
  [[nodiscard]] bool empty() const noexcept { return n_.size == 0; }
  [[nodiscard]] std::uint64_t total_bytes() const noexcept { return n_.total; }
  /// A summary of how the list's gaps are aligned (a gap: a range that does not start where
  /// the previous one ended; its address pair is that end and that start). Each gap ORs in
  /// its address pair, or, from a page array, the page size (its runs meet at frame
  /// boundaries), so each contributes at least the lowest set bit of its pair:
  /// `(gap_bits() & (2^k - 1)) == 0` proves every gap 2^k aligned; the converse may not hold.
  /// O(1): what lets a PRP list or a virtual-boundary check skip its pass over the entries
  /// (device/).
  [[nodiscard]] std::uint64_t gap_bits() const noexcept { return n_.gaps; }
  /// Smallest start address. The list must not be empty.
  [[nodiscard]] address<space_type> lowest() const noexcept {
    PHYR_ASSERT(n_.size != 0, "lowest() of an empty list");
    return address<space_type>{n_.lowest};
  }
  /// Largest last-byte address (inclusive, so a range ending at 2^64 is representable).
  [[nodiscard]] address<space_type> highest() const noexcept {
    PHYR_ASSERT(n_.size != 0, "highest() of an empty list");
    return address<space_type>{n_.highest};
  }
  [[nodiscard]] const Range& front() const noexcept {
    PHYR_ASSERT(n_.size != 0, "front() of an empty list");
    return detail::seg_entries<Range>(&head_.h)[0];
  }
  [[nodiscard]] const Range& back() const noexcept {
    PHYR_ASSERT(n_.size != 0, "back() of an empty list");
    return detail::seg_entries<Range>(tail_)[tail_->count - 1];
  }
  [[nodiscard]] iterator begin() const noexcept {
    return n_.size == 0 ? iterator{} : iterator{&head_.h, 0};
  }
  [[nodiscard]] iterator end() const noexcept { return iterator{}; }
  [[nodiscard]] Alloc get_allocator() const noexcept { return alloc_; }
  /// Bytes of heap segments held (live and spare): what the list costs beyond its object.
  [[nodiscard]] std::size_t heap_bytes() const noexcept { return heap_bytes_; }
  /// Bytes this list occupies: the object plus its heap segments.
  [[nodiscard]] std::size_t bytes_used() const noexcept { return sizeof(*this) + heap_bytes_; }

  /// Empties the list; heap segments stay for reuse by later appends.
  void clear() noexcept {
    assert_unborrowed();
    segment_header* s = head_.h.next;
    while (s != nullptr) {
      segment_header* next = s->next;
      s->next = spare_;
      spare_ = s;
      s = next;
    }
    head_.h.next = nullptr;
    head_.h.count = 0;
    tail_ = &head_.h;
    n_ = counters{};
  }

  /// Returns spare segments (kept by clear() or a failed append) to the allocator.
  void shrink_to_fit() noexcept {
    while (spare_ != nullptr) {
      segment_header* s = spare_;
      spare_ = s->next;
      free_segment(s);
    }
  }

  /// The whole list as a view.
  [[nodiscard]] view_type view() const noexcept {
    view_type v;
    if (n_.size == 0) {
      v.borrows_ = &borrows_;
      return v;
    }
    v.seg_ = &head_.h;
    v.idx_ = 0;
    v.count_ = n_.size;
    v.head_trim_ = 0;
    const Range& b = back();
    v.last_len_ = b.len();
    v.back_addr_ = b.addr().value();
    v.back_flags_ = b.flags();
    // Read one by one: an append has just written them one by one (detail::keep_scalar).
    v.total_ = detail::keep_scalar(n_.total);
    v.lowest_ = detail::keep_scalar(n_.lowest);
    v.highest_ = detail::keep_scalar(n_.highest);
    v.gaps_ = detail::keep_scalar(n_.gaps);
    v.borrows_ = &borrows_;
    return v;
  }
  // NOLINTNEXTLINE(google-explicit-constructor): a list is usable wherever a view is.
  operator view_type() const noexcept { return view(); }

  /// Where the entries and counters live, for an aliasing user that keeps pointers instead of
  /// a view (the identity mapping); valid while the list is alive and unchanged.
  [[nodiscard]] detail::list_core_ref core_ref() const noexcept {
    return {&head_.h, &n_, &borrows_};
  }

  /// The bytes [byte_offset, byte_offset + len) of the list's concatenated ranges, as a
  /// view with its first and last entries trimmed. O(entries up to the slice end).
  /// Errors: invalid_argument (len == 0), out_of_range (past total_bytes()).
  [[nodiscard]] result<view_type> try_slice(std::uint64_t byte_offset,
                                            std::uint64_t len) const noexcept {
    if (len == 0) return errc::invalid_argument;
    if (byte_offset >= n_.total || len > n_.total - byte_offset) return errc::out_of_range;
    view_type v;
    v.borrows_ = &borrows_;
    v.total_ = len;
    v.lowest_ = ~std::uint64_t{0};
    v.highest_ = 0;
    std::uint64_t pos = 0;  // byte offset of the current entry's start
    const std::uint64_t stop = byte_offset + len;
    bool started = false;
    std::uint64_t prev_last = 0;  // last byte of the previous entry in the slice (untrimmed:
                                  // a trim moves only the slice's outer ends, never a junction)
    for (const segment_header* s = &head_.h; s != nullptr; s = s->next) {
      const Range* e = detail::seg_entries<Range>(s);
      for (std::uint32_t i = 0; i < s->count; ++i) {
        const std::uint64_t l = e[i].len();
        if (!started) {
          if (byte_offset >= pos + l) {
            pos += l;
            continue;
          }
          started = true;
          v.seg_ = s;
          v.idx_ = i;
          v.head_trim_ = byte_offset - pos;
        }
        ++v.count_;
        const std::uint64_t from = v.count_ == 1 ? v.head_trim_ : 0;
        const std::uint64_t to = stop - pos < l ? stop - pos : l;  // exclusive, within entry
        const std::uint64_t a = e[i].addr().value();
        if (v.count_ != 1) v.gaps_ |= detail::gap_at(prev_last, a);
        prev_last = e[i].last().value();
        if (a + from < v.lowest_) v.lowest_ = a + from;
        if (a + to - 1 > v.highest_) v.highest_ = a + to - 1;
        if (pos + l >= stop) {
          v.last_len_ = to - (v.count_ == 1 ? v.head_trim_ : 0);
          v.back_addr_ = a + (v.count_ == 1 ? v.head_trim_ : 0);
          v.back_flags_ = e[i].flags();
          v.trimmed_ = v.head_trim_ != 0 || v.last_len_ != l;
          return v;
        }
        pos += l;
      }
    }
    PHYR_ASSERT(false, "range_list totals out of sync");
    return errc::out_of_range;
  }

  /// Moves all of `other`'s entries to the end of this list by relinking its segments: O(1)
  /// (at most its two inline entries are copied). The junction coalesces like try_append.
  /// Both lists must use equal allocators and the same limits (else invalid_argument);
  /// out_of_memory only when this list's tail segment has no room for the inline entries.
  /// Strong guarantee; on success `other` is empty.
  result<void> try_splice_back(range_list&& other) noexcept {
    assert_unborrowed();
    other.assert_unborrowed();
    if (&other == this) return errc::invalid_argument;
    if (!(alloc_ == other.alloc_) || max_segment_ != other.max_segment_ ||
        boundary_shift_ != other.boundary_shift_)
      return errc::invalid_argument;
    if (other.n_.size == 0) return {};
    if (other.n_.total > ~n_.total) return errc::overflow;
    const checkpoint cp = save();
    const Range* oe = detail::seg_entries<Range>(&other.head_.h);
    for (std::uint32_t i = 0; i < other.head_.h.count; ++i) {
      if (!append_split(oe[i].addr().value(), oe[i].len(), oe[i].flags()))
        return fail(cp, errc::out_of_memory);
    }
    // Relink other's heap chain after our tail; totals combine.
    if (other.head_.h.next != nullptr) {
      tail_->next = other.head_.h.next;
      tail_ = other.tail_;
      n_.size += other.n_.size - other.head_.h.count;
      // Segments move with their entries; spare segments stay with `other`.
      heap_bytes_ += other.n_.live_heap_bytes;
      n_.live_heap_bytes += other.n_.live_heap_bytes;
      other.heap_bytes_ -= other.n_.live_heap_bytes;
      other.head_.h.next = nullptr;
    }
    // The inline entries went through append_split, which already counted them.
    n_.total = cp.n.total + other.n_.total;
    if (other.n_.lowest < n_.lowest) n_.lowest = other.n_.lowest;
    if (other.n_.highest > n_.highest) n_.highest = other.n_.highest;
    // The junction with this list went through append_split; other's own gaps come along.
    n_.gaps |= other.n_.gaps;
    other.head_.h.count = 0;
    other.tail_ = &other.head_.h;
    other.n_ = counters{};
    return {};
  }

  /// Borrow tracking for aliasing users (identity mappings); no-ops without
  /// PHYR_ENABLE_BORROW_CHECKS. Safe to call from several threads at once.
  void debug_acquire_borrow() const noexcept { borrows_.acquire(); }
  void debug_release_borrow() const noexcept { borrows_.release(); }

 private:
  using segment_header = detail::segment_header;

  struct inline_segment {
    segment_header h;
    Range e[inline_capacity];
  };
  static_assert(offsetof(inline_segment, e) == sizeof(segment_header),
                "entries must follow the header as in heap segments");

  using counters = detail::list_counters;

  struct checkpoint {
    segment_header* tail;
    std::uint32_t tail_count;
    Range back;
    counters n;
  };

  void reset_head() noexcept {
    head_.h.next = nullptr;
    head_.h.count = 0;
    head_.h.capacity = inline_capacity;
    tail_ = &head_.h;
  }

  void assert_unborrowed() const noexcept {
    PHYR_ASSERT(!borrows_.borrowed(), "range_list modified while a mapping borrows it");
  }

  // Steals o's contents; *this must be empty with a reset head.
  void take(range_list& o) noexcept {
    PHYR_ASSERT(!o.borrows_.borrowed(), "range_list moved while a mapping borrows it");
    head_.h.count = o.head_.h.count;
    head_.h.next = o.head_.h.next;
    for (std::uint32_t i = 0; i < o.head_.h.count; ++i) head_.e[i] = o.head_.e[i];
    tail_ = o.tail_ == &o.head_.h ? &head_.h : o.tail_;
    spare_ = std::exchange(o.spare_, nullptr);
    n_ = std::exchange(o.n_, counters{});
    max_segment_ = o.max_segment_;
    boundary_shift_ = o.boundary_shift_;
    heap_bytes_ = std::exchange(o.heap_bytes_, 0);
    o.reset_head();
  }

  void release_all() noexcept {
    clear();
    shrink_to_fit();
  }

  [[nodiscard]] static constexpr std::size_t bytes_of(const segment_header* s) noexcept {
    return sizeof(segment_header) + std::size_t{s->capacity} * sizeof(Range);
  }

  void free_segment(segment_header* s) noexcept {
    const std::size_t b = bytes_of(s);
    heap_bytes_ -= b;
    alloc_.deallocate(s, b, alignof(segment_header));
  }

  [[nodiscard]] checkpoint save() noexcept {
    spares_taken_ = 0;
    checkpoint cp{tail_, tail_->count, Range{}, n_};
    if (tail_->count != 0) cp.back = detail::seg_entries<Range>(tail_)[tail_->count - 1];
    return cp;
  }

  // Undoes everything since `cp`: segments linked after cp.tail go back to the spare stack
  // (those taken from it) or to the allocator (those allocated since), so a failed call
  // leaves the allocator balance as it found it.
  void rollback(const checkpoint& cp) noexcept {
    segment_header* s = cp.tail->next;
    std::uint32_t reused = spares_taken_;
    while (s != nullptr) {
      segment_header* next = s->next;
      if (reused > 0) {
        --reused;
        s->next = spare_;
        spare_ = s;
      } else {
        free_segment(s);
      }
      s = next;
    }
    cp.tail->next = nullptr;
    tail_ = cp.tail;
    tail_->count = cp.tail_count;
    if (cp.tail_count != 0) detail::seg_entries<Range>(tail_)[cp.tail_count - 1] = cp.back;
    n_ = cp.n;
    spares_taken_ = 0;
  }

  [[nodiscard]] errc fail(const checkpoint& cp, errc e) noexcept {
    rollback(cp);
    return e;
  }

  // The size of the heap segment after one of `b` bytes (the inline head counts as its 80).
  [[nodiscard]] static constexpr std::size_t next_segment_bytes(std::size_t b) noexcept {
    if (b < first_segment_bytes) return first_segment_bytes;
    const std::size_t grown = (b + b / 4) & ~(sizeof(Range) - 1);
    const std::size_t next = grown > b ? grown : b + sizeof(Range);
    return next < max_segment_bytes ? next : max_segment_bytes;
  }
  static_assert(next_segment_bytes(sizeof(inline_segment)) == first_segment_bytes);

  static constexpr bool on_pool = requires(const Alloc& a) {
    { a.pool().block_size() } -> std::convertible_to<std::size_t>;
  };

  // Inputs of at most this many pages (2 MiB: an I/O) are counted before they are appended
  // (reserve_for_runs). The count reads every page, while the build skips long runs sixteen
  // frames per step: at 4096 it doubled the build of a 16 MiB buffer in 2 MiB runs and cost a
  // scattered one 23%, for one allocation saved.
  static constexpr std::size_t hint_max_pages = 512;
  // Inputs of at most this many pages into a fresh list take append_pages_fresh.
  static constexpr std::size_t fresh_max_pages = 16;
  // Inputs up to this many pages into an empty list try append_pages_short first: 64 KiB,
  // where a fragmented input's runs outgrow the inline entries anyway.
  static constexpr std::size_t short_max_pages = 16;

  // For try_append_pages of a small input (an I/O) into a list with no spare segment: counts
  // the input's runs (the entries it makes without limits; a lower bound with them) and, when
  // they overflow the tail segment, allocates one segment for the rest (up to a page) as a
  // spare, which grow() then takes. A per-I/O list then makes one allocation of the size it
  // needs instead of a geometric series (1 MiB of scattered pages: 1 instead of 15). The
  // count costs about one instruction per page; longer inputs, pools (fixed blocks) and a failed
  // allocation (the append then allocates as usual, and fails there if memory is short) keep
  // the geometric sizes. True when a segment was added.
  [[nodiscard]] bool reserve_for_runs(const std::uint64_t* p, std::size_t n) noexcept {
    if constexpr (on_pool) {
      return false;
    } else {
      if (n > hint_max_pages) return false;
      const std::size_t room = tail_->capacity - tail_->count;
      const std::size_t most = capacity_of(max_segment_bytes);
      const std::size_t runs = detail::pfn_run_count(p, n);
      if (runs <= room) return false;
      const std::size_t want = runs - room < most ? runs - room : most;
      const std::size_t b = sizeof(segment_header) + want * sizeof(Range);
      void* q = alloc_.allocate(b, alignof(segment_header));
      if (q == nullptr) return false;
      auto* sp = static_cast<segment_header*>(q);
      sp->next = nullptr;
      sp->count = 0;
      sp->capacity = static_cast<std::uint32_t>(want);
      spare_ = sp;
      heap_bytes_ += b;
      return true;
    }
  }

  // A pool hands out blocks of one size whatever is asked, so a list on a pool uses whole
  // blocks (up to a page) from the start; other allocators get the geometric sizes.
  [[nodiscard]] std::size_t new_segment_bytes() const noexcept {
    if constexpr (on_pool) {
      const std::size_t b = alloc_.pool().block_size();
      return b < max_segment_bytes ? b & ~(sizeof(Range) - 1) : max_segment_bytes;
    } else {
      return next_segment_bytes(bytes_of(tail_));
    }
  }

  // Links a fresh segment after the tail: a spare one if any, else a new allocation 1.25x
  // the tail's size. False when the allocator fails (nothing changed then).
  [[gnu::cold, gnu::noinline]] bool grow() noexcept {
    segment_header* s = spare_;
    std::size_t b = 0;
    if (s != nullptr) {
      spare_ = s->next;
      ++spares_taken_;
      b = bytes_of(s);
    } else {
      b = new_segment_bytes();
      if (capacity_of(b) == 0) return false;
      void* p = alloc_.allocate(b, alignof(segment_header));
      if (p == nullptr) return false;
      s = static_cast<segment_header*>(p);
      heap_bytes_ += b;
    }
    s->next = nullptr;
    s->count = 0;
    s->capacity = capacity_of(b);
    tail_->next = s;
    tail_ = s;
    n_.live_heap_bytes += b;
    return true;
  }

  // What a range starting at `next` after the last entry adds to gap_bits() (nothing into an
  // empty list).
  [[nodiscard]] std::uint64_t gap_after_back(std::uint64_t next) const noexcept {
    return n_.size == 0 ? 0 : detail::gap_at(back().last().value(), next);
  }

  // Appends without coalescing (the caller knows it cannot merge or does not want it).
  [[nodiscard]] bool push_raw(const Range& r) noexcept {
    const std::uint64_t gap = gap_after_back(r.addr().value());  // before grow() moves the tail
    if (PHYR_UNLIKELY(tail_->count == tail_->capacity) && !grow()) return false;
    n_.gaps |= gap;
    ::new (static_cast<void*>(detail::seg_entries<Range>(tail_) + tail_->count)) Range(r);
    ++tail_->count;
    ++n_.size;
    n_.total += r.len();
    const std::uint64_t a = r.addr().value();
    if (a < n_.lowest) n_.lowest = a;
    if (r.last().value() > n_.highest) n_.highest = r.last().value();
    return true;
  }

  // Bytes from `a` to the next boundary multiple (all of the address space without one).
  [[nodiscard]] std::uint64_t boundary_room(std::uint64_t a) const noexcept {
    if (boundary_shift_ == 0) return ~std::uint64_t{0};
    const std::uint64_t b = std::uint64_t{1} << boundary_shift_;
    return b - (a & (b - 1));
  }

  // The general append: grow the tail entry as far as the limits allow, then push pieces of
  // at most max_segment bytes that do not cross a boundary. Greedy filling is optimal: every
  // piece but the last is as long as the limits permit at its start address. False when the
  // allocator fails (the caller rolls back).
  [[nodiscard]] bool append_split(std::uint64_t a, std::uint64_t len, range_flags f) noexcept {
    if (tail_->count != 0) {
      Range& b = detail::seg_entries<Range>(tail_)[tail_->count - 1];
      const std::uint64_t b_last = b.last().value();
      if (b.flags() == f && b_last != ~std::uint64_t{0} && b_last + 1 == a &&
          b.len() < max_segment_) {
        std::uint64_t room = max_segment_ - b.len();
        const std::uint64_t to_boundary = boundary_room(a);
        // A boundary exactly at `a` leaves no room (to_boundary is then a whole boundary).
        if (boundary_shift_ != 0)
          room = to_boundary == (std::uint64_t{1} << boundary_shift_) ? 0
                 : to_boundary < room                                 ? to_boundary
                                                                      : room;
        const std::uint64_t take = len < room ? len : room;
        if (take != 0) {
          b = Range{b.addr(), b.len() + take, f};
          n_.total += take;
          if (b_last + take > n_.highest) n_.highest = b_last + take;
          a += take;
          len -= take;
        }
      }
    }
    while (len != 0) {
      std::uint64_t take = len < max_segment_ ? len : max_segment_;
      const std::uint64_t room = boundary_room(a);
      if (room < take) take = room;
      if (!push_raw(Range{address<space_type>{a}, take, f})) return false;
      a += take;
      len -= take;
    }
    return true;
  }

  // What try_append_all's loop keeps in locals: the tail segment's entries and write
  // position, and the counters (the size as the entries before this segment plus those in it).
  struct bulk_state {
    Range* first;  // the tail segment's first entry
    Range* wp;     // where the next entry goes
    Range* end;    // past the tail segment's last slot
    std::size_t before;  // entries in the segments before the tail
    std::uint64_t total, lowest, highest, gaps;
  };
  // Field by field through general registers (detail::keep_scalar): left alone, GCC pairs the
  // neighbouring counters into vector registers, carries those through the loop and unpacks
  // them for every range, spilling two of the counters to the stack on the way (3.9 ns a
  // 512-byte chunk instead of 1.6).
  [[nodiscard]] bulk_state load_bulk() const noexcept {
    Range* e = detail::seg_entries<Range>(tail_);
    return bulk_state{e,
                      e + tail_->count,
                      e + tail_->capacity,
                      detail::keep_scalar(n_.size) - tail_->count,
                      detail::keep_scalar(n_.total),
                      detail::keep_scalar(n_.lowest),
                      detail::keep_scalar(n_.highest),
                      detail::keep_scalar(n_.gaps)};
  }
  void store_bulk(const bulk_state& st) noexcept {
    const auto count = static_cast<std::uint32_t>(st.wp - st.first);
    tail_->count = count;
    n_.size = detail::keep_scalar(st.before + count);
    n_.total = detail::keep_scalar(st.total);
    n_.lowest = detail::keep_scalar(st.lowest);
    n_.highest = detail::keep_scalar(st.highest);
    n_.gaps = detail::keep_scalar(st.gaps);
  }

  [[gnu::noinline]] result<void> append_slow(const Range& r) noexcept {
    const checkpoint cp = save();
    if (!append_split(r.addr().value(), r.len(), r.flags())) return fail(cp, errc::out_of_memory);
    return {};
  }

  // Whether [a, a + len) may be one entry under the limits (len >= 1, no wrap past 2^64).
  [[nodiscard]] bool fits_one_entry(std::uint64_t a, std::uint64_t len) const noexcept {
    const std::uint64_t bmask =
        boundary_shift_ == 0 ? ~std::uint64_t{0} : (std::uint64_t{1} << boundary_shift_) - 1;
    return len <= max_segment_ && (a & bmask) + (len - 1) <= bmask;
  }

  // The counters of an empty list that now holds c inline entries of pages (runs meet at
  // frame boundaries, so every gap is a multiple of the page).
  void set_inline_counters(std::uint32_t c, std::uint64_t total, std::uint64_t lo,
                           std::uint64_t hi) noexcept {
    head_.h.count = c;
    n_.size = c;
    n_.total = total;
    n_.lowest = lo;
    n_.highest = hi;
    n_.gaps = c > 1 ? page_size : 0;
  }

  // try_append_pages into an empty list of pages whose ends are n - 1 frames apart and whose
  // span fits one entry within the limits (the caller checked both): if they are one run, as
  // a contiguous buffer's are, writes its entry and returns true. Otherwise returns false with
  // the list untouched, and the general path takes over, which also reports bad frames.
  [[nodiscard]] bool append_pages_one_run(const std::uint64_t* p, std::size_t n,
                                          std::uint64_t first_offset, std::uint64_t total_len,
                                          range_flags flags) noexcept {
    // One run from p[0] to p[n - 1] = p[0] + n - 1: both below 2^52 puts every frame there.
    if (detail::pfn_run_end(p, 1, n) != n || ((p[0] | p[n - 1]) >> pfn_bits) != 0) return false;
    put_only_entry(pfn_to_addr(p[0]) + first_offset, total_len, flags);
    return true;
  }

  // An empty list's first and only entry, [a, a + len), with its counters.
  void put_only_entry(std::uint64_t a, std::uint64_t len, range_flags flags) noexcept {
    head_.e[0] = Range::make_unchecked(a, len, flags);
    set_inline_counters(1, len, a, a + (len - 1));
  }

  // try_append_pages for 2..short_max_pages pages into an empty list, when the runs fit the
  // inline entries and the limits: one pass page by page (a short input gains nothing from
  // pfn_run_end's sixteen-frame steps and loses its per-run setup), writing each run as it ends,
  // then the frames, the lengths and the limits checked once for the whole input. Makes the
  // entries the general path makes (one per run). Returns false with the list untouched
  // (entries written past the count are not part of it) for anything else, bad arguments
  // included: the general path then takes it, or reports the error.
  [[gnu::noinline]] bool append_pages_short(const std::uint64_t* p, std::size_t n,
                                            std::uint64_t first_offset, std::uint64_t total_len,
                                            range_flags flags) noexcept {
    const std::uint64_t span = static_cast<std::uint64_t>(n) * page_size;  // n is small
    if (n == 0 || total_len == 0 || first_offset >= page_size || total_len > span - first_offset ||
        total_len + first_offset <= span - page_size)
      return false;
    Range* e = head_.e;
    std::uint32_t c = 0;
    std::uint64_t start = p[0];
    std::uint64_t prev = p[0];
    std::uint64_t frames = p[0];
    std::uint64_t off = first_offset;  // cut from the first run only
    std::uint64_t lo = ~std::uint64_t{0}, hi = 0;  // of the entries, as they are written
    auto put = [&](std::uint64_t a, std::uint64_t len) noexcept {
      e[c++] = Range::make_unchecked(a, len, flags);
      lo = a < lo ? a : lo;
      hi = a + (len - 1) > hi ? a + (len - 1) : hi;
    };
    for (std::size_t k = 1; k < n; ++k) {
      const std::uint64_t x = p[k];
      frames |= x;
      if (x != prev + 1) {
        if (c == inline_capacity - 1) return false;
        // Garbage from a frame >= 2^52 is written unchecked and never counted (below).
        put(pfn_to_addr(start) + off, pfn_to_addr(prev - start + 1) - off);
        off = 0;
        start = x;
      }
      prev = x;
    }
    // Every frame below 2^52: no address wraps, and a run that seemed to wrap (2^64 - 1
    // followed by 0) had a frame above.
    if ((frames >> pfn_bits) != 0) return false;
    const std::uint64_t tail_cut = span - first_offset - total_len;  // < page_size (checked)
    put(pfn_to_addr(start) + off, pfn_to_addr(prev - start + 1) - off - tail_cut);
    // No entry is longer than the input's span, so without a boundary a max_segment of at
    // least the span admits them all unchecked (a per-I/O list with no limits set).
    if (boundary_shift_ != 0 || max_segment_ < span) {
      for (std::uint32_t k = 0; k < c; ++k) {
        // A limit cuts a run: the general path splits it.
        if (!fits_one_entry(e[k].addr().value(), e[k].len())) return false;
      }
    }
    set_inline_counters(c, total_len, lo, hi);
    return true;
  }

  enum class fresh : std::uint8_t { done, bad_frame, no_memory, not_here };

  // try_append_pages into an empty list with no limits and no spare segment, for an input of
  // at most fresh_max_pages pages: counts the runs (and ORs the frames, so a frame >= 2^52 is
  // found before anything is allocated), allocates one segment for the runs past the inline
  // entries, and writes one entry per run. The list is untouched until it succeeds (entries
  // written past the count are not part of it). not_here: more runs than inline entries plus
  // one page-sized segment hold (the general path takes those). Sets all counters but the
  // byte total (the caller's). Makes the same entries as the general path: one per run.
  [[nodiscard]] fresh append_pages_fresh(const std::uint64_t* p, std::size_t n,
                                         std::uint64_t first_offset, std::uint64_t tail_cut,
                                         range_flags flags) noexcept {
    std::size_t runs = 1;
    std::uint64_t frames = p[0];
    for (std::size_t i = 1; i < n; ++i) {
      runs += static_cast<std::size_t>(p[i] - p[i - 1] != 1);
      frames |= p[i];
    }
    if ((frames >> pfn_bits) != 0) return fresh::bad_frame;
    if (runs <= inline_capacity || runs - inline_capacity > capacity_of(max_segment_bytes))
      return fresh::not_here;
    const std::size_t rest = runs - inline_capacity;
    const std::size_t b = sizeof(segment_header) + rest * sizeof(Range);
    void* q = alloc_.allocate(b, alignof(segment_header));
    if (q == nullptr) return fresh::no_memory;
    auto* seg = static_cast<segment_header*>(q);
    seg->next = nullptr;
    seg->count = static_cast<std::uint32_t>(rest);
    seg->capacity = static_cast<std::uint32_t>(rest);
    std::uint64_t lo = ~std::uint64_t{0}, hi = 0;
    std::size_t i = 0;
    // The run from p[i] as an entry; a one-page run (fragmented memory's every one) needs
    // no scan.
    auto put = [&](Range& dst) noexcept {
      std::size_t j = i + 1;
      if (j < n && p[j] == p[i] + 1) j = detail::pfn_run_end(p, j + 1, n);
      const std::uint64_t a = pfn_to_addr(p[i]) + (i == 0 ? first_offset : 0);
      const std::uint64_t len = pfn_to_addr(p[j - 1]) + page_size - (j == n ? tail_cut : 0) - a;
      dst = Range::make_unchecked(a, len, flags);
      lo = a < lo ? a : lo;
      hi = a + (len - 1) > hi ? a + (len - 1) : hi;
      i = j;
    };
    for (std::uint32_t c = 0; c < inline_capacity; ++c) put(head_.e[c]);
    Range* more = detail::seg_entries<Range>(seg);
    for (std::size_t c = 0; c < rest; ++c) put(more[c]);
    head_.h.count = inline_capacity;
    head_.h.next = seg;
    tail_ = seg;
    heap_bytes_ += b;
    n_.live_heap_bytes += b;
    n_.size = runs;
    n_.lowest = lo;
    n_.highest = hi;
    n_.gaps = page_size;  // more than one run, meeting at frame boundaries
    return fresh::done;
  }

  // Runs p[i..n) of try_append_pages after the first (each starts at a discontinuity, so
  // none merges with what precedes it). Entries go straight into the tail segment with the
  // bookkeeping in locals (written back once). The per-page work on fragmented input is one
  // compare, two stores and a min/max of the frame number; long runs are skipped sixteen frames
  // per step. `Limited` (a max_segment or boundary is set) changes only what a run of two
  // pages or more becomes: pieces cut at the limits. A single page is always one entry, as
  // both limits are at least a page and the boundary is a power of two, so fragmented input
  // costs the same with limits as without. Frames >= 2^52 are detected from the maximum
  // after the loop, so the loop has no per-run range check (a bad frame yields garbage
  // entries, bounded in number by the pages, and the caller rolls back). Totals: the caller
  // sets the byte total; the entry count and extremes are updated here.
  template <bool Limited>
  [[nodiscard]] result<void> append_runs(const std::uint64_t* p, std::size_t i, std::size_t n,
                                         std::uint64_t tail_cut, range_flags flags) noexcept {
    segment_header* seg = tail_;
    Range* e = detail::seg_entries<Range>(seg);
    std::uint32_t cnt = seg->count;
    std::uint32_t cap = seg->capacity;
    std::size_t added = 0;  // entries in segments already left behind (minus start count)
    const std::uint32_t start_cnt = cnt;
    const bool has_full = n - i >= 2;  // every page but the final one is fully used
    std::uint64_t mn = ~std::uint64_t{0}, mx = 0;  // frames; mx over fully used pages
    const std::uint64_t max_seg = max_segment_;
    const std::uint64_t bmask =
        boundary_shift_ == 0 ? ~std::uint64_t{0} : (std::uint64_t{1} << boundary_shift_) - 1;
    auto next_segment = [&]() noexcept {
      seg->count = cnt;
      added += cnt;
      if (!grow()) return false;
      seg = tail_;
      e = detail::seg_entries<Range>(seg);
      cnt = 0;
      cap = seg->capacity;
      return true;
    };
    auto put = [&](std::uint64_t addr, std::uint64_t len) noexcept {
      if (PHYR_UNLIKELY(cnt == cap) && !next_segment()) return false;
      ::new (static_cast<void*>(e + cnt)) Range(Range::make_unchecked(addr, len, flags));
      ++cnt;
      return true;
    };
    // A run of pages from `addr`: one entry, or with limits greedy pieces (as append_split).
    auto put_run = [&](std::uint64_t addr, std::uint64_t len) noexcept {
      if constexpr (Limited) {
        while (len > max_seg || ((addr & bmask) + len - 1) > bmask) {
          std::uint64_t take = max_seg;
          const std::uint64_t room = bmask - (addr & bmask) + 1;  // 0 when there is no boundary
          if (room != 0 && room < take) take = room;
          if (!put(addr, take)) return false;
          addr += take;
          len -= take;
        }
      }
      return put(addr, len);
    };
    const std::size_t last = n - 1;
    while (i < last) {
      // One-page runs (the fragmented case) in a tight loop bounded by the room left in the
      // tail segment, so the loop body has no capacity check.
      if (PHYR_UNLIKELY(cnt == cap) && !next_segment()) return errc::out_of_memory;
      const std::size_t room = cap - cnt;
      const std::size_t lim = last - i < room ? last : i + room;
      // Two one-page runs per step while both are: halves the loop overhead. Pointers, not
      // indices: the step is then two pointer increments, not two scaled address sums.
      {
        const std::uint64_t* q = p + i;
        const std::uint64_t* const q_lim = p + lim;
        Range* o = e + cnt;
        while (q + 2 <= q_lim) {
          const std::uint64_t a0 = q[0], a1 = q[1];
          if (a1 == a0 + 1 || q[2] == a1 + 1) break;
          ::new (static_cast<void*>(o))
              Range(Range::make_unchecked(pfn_to_addr(a0), page_size, flags));
          ::new (static_cast<void*>(o + 1))
              Range(Range::make_unchecked(pfn_to_addr(a1), page_size, flags));
          o += 2;
          q += 2;
          const std::uint64_t lo2 = a0 < a1 ? a0 : a1, hi2 = a0 < a1 ? a1 : a0;
          mn = lo2 < mn ? lo2 : mn;
          mx = hi2 > mx ? hi2 : mx;
        }
        i = static_cast<std::size_t>(q - p);
        cnt = static_cast<std::uint32_t>(o - e);
      }
      while (i < lim && p[i + 1] != p[i] + 1) {
        const std::uint64_t a = p[i];
        ::new (static_cast<void*>(e + cnt))
            Range(Range::make_unchecked(pfn_to_addr(a), page_size, flags));
        ++cnt;
        mn = a < mn ? a : mn;
        mx = a > mx ? a : mx;
        ++i;
      }
      if (i == lim) continue;
      const std::uint64_t a = p[i];
      const std::size_t j = detail::pfn_run_end(p, i + 2, n);
      if (j == n) break;  // the run holds the final page: done below
      if (!put_run(pfn_to_addr(a), static_cast<std::uint64_t>(j - i) * page_size))
        return errc::out_of_memory;
      // Both ends: a "run" may wrap past 2^64 - 1, and then its start is the largest frame.
      const std::uint64_t b = p[j - 1];
      mn = a < mn ? a : mn;
      mn = b < mn ? b : mn;
      mx = a > mx ? a : mx;
      mx = b > mx ? b : mx;
      i = j;
    }
    // The final run [i, n): its last page is cut by tail_cut.
    const std::uint64_t a = p[i];
    if (!put_run(pfn_to_addr(a), static_cast<std::uint64_t>(n - i) * page_size - tail_cut))
      return errc::out_of_memory;
    seg->count = cnt;
    mn = a < mn ? a : mn;
    if (n - i >= 2) {
      mx = a > mx ? a : mx;
      mx = p[n - 2] > mx ? p[n - 2] : mx;
    }
    if ((mx | a | p[last]) >> pfn_bits) return errc::invalid_argument;
    n_.size += added + cnt - start_cnt;
    const std::uint64_t lo = pfn_to_addr(mn);
    std::uint64_t hi = pfn_to_addr(p[last]) + (page_mask - tail_cut);
    if (has_full && pfn_to_addr(mx) + page_mask > hi) hi = pfn_to_addr(mx) + page_mask;
    if (lo < n_.lowest) n_.lowest = lo;
    if (hi > n_.highest) n_.highest = hi;
    // Every run here starts a page after a discontinuity, so each gap it makes is a multiple
    // of the page (the first run's junction with the list went through append_split).
    n_.gaps |= page_size;
    return {};
  }

  inline_segment head_;
  segment_header* tail_ = nullptr;
  segment_header* spare_ = nullptr;
  counters n_;
  std::uint64_t max_segment_ = Range::max_len;
  std::size_t heap_bytes_ = 0;          // live + spare
  std::uint32_t spares_taken_ = 0;      // by the current operation, for rollback
  std::uint8_t boundary_shift_ = 0;     // log2 of the segment boundary; 0: none
  [[no_unique_address]] Alloc alloc_{};
  [[no_unique_address]] detail::borrow_counter borrows_;
};

}  // namespace PHYR_BORROW_ABI_NAMESPACE
}  // namespace phyr::inline v0
