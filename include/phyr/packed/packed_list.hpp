/// `packed_list<Space, Alloc>`: the dense long-term form of a list of ranges (DESIGN.md, "The
/// packed encoding"; the entry format and the smallest-entry rule are in packed/encoding.hpp).
///
///   phyr::packed_list<phyr::cpu_phys> pl;
///   if (auto r = pl.try_append_pages(pfns, /*first_offset=*/0, /*total_len=*/bytes); !r)
///     return r.error();                       // invalid_argument, overflow, misaligned, oom
///   pl.for_each([](phyr::phys_range r) { program(r); });  // exactly the ranges that went in
///   for (phyr::phys_range r : pl) program(r);             // the same, as an iterator
///   pl.entry_bytes();                         // 8 per discontiguous page, 8 per 2 MiB block
///   pl.try_for_each_block(4096, [](phyr::phys_addr a) { mr_page(a); });  // random-access HW
///   auto rl = pl.try_to_range_list();             // and back: packed_list::from_ranges(*rl)
///
/// What it holds. A header {first_offset, total_len, min_alignment, entry count} and entries
/// of 8, 12 or 16 bytes in chained segments of 32-bit words (256 bytes, doubling to 4 KiB; an
/// entry never straddles two segments, so segments end with at most 12 unused bytes). The
/// first entry's front is trimmed by `first_offset` and the last entry's back by what
/// `total_len` leaves over, so the ends of a buffer may be encoded as whole (even widened,
/// naturally aligned) pages while interior entries are exact. Ranges whose interior
/// boundaries are not page aligned (512-byte direct-I/O chunks, arbitrary lists) take
/// byte-granular entries: every `range` round-trips.
///
/// Semantics. Appending coalesces with the tail exactly like a `range_list` with default
/// limits (adjacent and same flags; past `max_len` the tail is filled and the rest starts a
/// new range), so both hold the same ranges and converting either way is lossless. A list
/// built from a `range_list` with a `max_segment` limit holds the merged ranges (same bytes
/// and flags); `try_to_range_list` into a list with the same limit splits them again.
///
/// The streaming encoder. The last range (the tail) is kept open, as a plain range inside
/// the object, while appends can still grow it; when a non-adjacent range arrives it is
/// closed: encoded once, to the smallest entry, knowing whether it is the list's first
/// range. The open tail is counted in `entry_bytes()` with the encoding it would get as the
/// last range, and exported that way by `try_copy_words`. `try_append_pages` writes runs of
/// discontiguous pages 8 at a time without a per-page branch (see there).
///
/// Walking. `for_each` and `try_for_each_block` are tight loops per segment with modes 0, 1
/// and 2 decoded inline from the words, and with no per-entry mode test at all on lists whose
/// entries share one mode (all pages, all byte-granular chunks): use them on hot paths. The
/// iterators (`begin`/`end`, `try_blocks()`) carry more state and are slower (see
/// bench/packed_bench.cpp).
///
/// Alignment. `alignment()` is the largest power of two dividing every interior boundary
/// (the end of each range but the last, the start of each but the first), tracked in O(1):
/// the largest block size random-access hardware can use (`try_blocks()`). `try_set_min_alignment`
/// makes it a promise: an append that would break it fails with `errc::misaligned`.
///
/// Errors and guarantees. Every `try_*` is strong: on failure the list is as before and
/// nothing leaks. Bad input is an `errc`, never a crash: zero length or a pfn at or above
/// 2^52 (invalid_argument), total bytes past 2^64 (overflow), a boundary breaking the
/// promised alignment (misaligned), an allocator returning null (out_of_memory).
/// `from_words` validates arbitrary words and header values without undefined behaviour.
#pragma once

#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <span>
#include <type_traits>
#include <utility>

#include <phyr/config.hpp>
#include <phyr/container/pfn_runs.hpp>
#include <phyr/container/range_list.hpp>
#include <phyr/container/range_source.hpp>
#include <phyr/core/address.hpp>
#include <phyr/core/address_space.hpp>
#include <phyr/core/allocator.hpp>
#include <phyr/core/error.hpp>
#include <phyr/core/range.hpp>
#include <phyr/packed/encoding.hpp>

namespace phyr::inline v0 {

/// The list header as stored and exchanged with `try_copy_words` / `from_words`.
struct packed_header {
  std::uint64_t first_offset = 0;   ///< bytes of the first entry before the data
  std::uint64_t total_len = 0;      ///< bytes of data in all ranges
  std::uint64_t entry_count = 0;    ///< entries in the words (each escape piece counts)
  std::uint8_t min_align_log2 = 0;  ///< promised: interior boundaries are multiples of 2^this
  friend constexpr bool operator==(const packed_header&, const packed_header&) noexcept = default;
};

namespace detail {

/// Segment header; `capacity` 32-bit words follow it in the same block.
struct packed_segment {
  packed_segment* next;
  std::uint32_t capacity;  // words
  std::uint32_t used;      // words holding whole entries
};
static_assert(sizeof(packed_segment) == 16);

[[nodiscard]] inline std::uint32_t* seg_words(packed_segment* s) noexcept {
  return reinterpret_cast<std::uint32_t*>(s + 1);
}
[[nodiscard]] inline const std::uint32_t* seg_words(const packed_segment* s) noexcept {
  return reinterpret_cast<const std::uint32_t*>(s + 1);
}

/// Walks untrusted words + header and hands each range to `emit(addr, len, flags)`;
/// succeeds when everything is consistent. Checks: every entry well formed
/// (validate_entry), escape chains contiguous with equal flags, the header's first_offset
/// and total_len inside the first/last entries, every range 1..max_len bytes, no two
/// neighbours mergeable (an encoder always merges them), interior boundaries at the promised
/// alignment, and entry_count. Overflow-free for any input.
template <class Emit>
[[nodiscard]] constexpr result<void> parse_packed(const packed_header& h,
                                                  std::span<const std::uint32_t> w,
                                                  Emit&& emit) noexcept {
  using namespace packed_format;
  constexpr std::uint64_t max_len = range<cpu_phys>::max_len;
  if (h.min_align_log2 > 63) return errc::invalid_argument;
  if (w.empty()) {
    if (h.entry_count == 0 && h.total_len == 0 && h.first_offset == 0) return {};
    return errc::invalid_argument;
  }
  if (h.total_len == 0) return errc::invalid_argument;
  const std::uint64_t align_mask = (std::uint64_t{1} << h.min_align_log2) - 1;

  struct extent {
    std::uint64_t start, len;
    std::uint8_t flags;
  };
  std::uint64_t pos = 0, entries = 0, emitted = 0, sum = 0;
  extent pending{};
  bool have_pending = false;
  std::uint64_t prev_start = 0, prev_len = 0;
  std::uint8_t prev_flags = 0;

  // Turns the pending extent into a range (first/last trims), checks it against the range
  // before it, and emits it.
  auto finish = [&](bool last) -> result<void> {
    std::uint64_t start = pending.start, len = pending.len;
    if (emitted == 0) {
      if (h.first_offset >= len) return errc::invalid_argument;
      start += h.first_offset;
      len -= h.first_offset;
    }
    if (last) {
      if (h.total_len < sum) return errc::invalid_argument;
      const std::uint64_t want = h.total_len - sum;
      if (want == 0 || want > len) return errc::invalid_argument;
      len = want;
    }
    if (len > max_len) return errc::invalid_argument;
    if (emitted != 0) {
      const std::uint64_t prev_last = prev_start + (prev_len - 1);
      const bool adjacent = prev_last != ~std::uint64_t{0} && prev_last + 1 == start;
      if (adjacent && prev_flags == pending.flags && prev_len != max_len)
        return errc::invalid_argument;  // an encoder would have merged them
      if (((prev_last + 1) | start) & align_mask) return errc::misaligned;
    }
    if (len > ~sum) return errc::invalid_argument;
    sum += len;
    prev_start = start;
    prev_len = len;
    prev_flags = pending.flags;
    ++emitted;
    emit(start, len, pending.flags);
    return {};
  };

  while (pos < w.size()) {
    checked_entry c = validate_entry(w.data() + pos, w.size() - pos);
    if (c.error != entry_error::none) return errc::invalid_argument;
    pos += c.entry.words;
    ++entries;
    extent x{c.entry.start, c.entry.len, c.entry.flags};
    while (c.entry.continued) {
      c = validate_entry(w.data() + pos, w.size() - pos);
      if (c.error != entry_error::none || c.entry.mode != packed_mode::escape)
        return errc::invalid_argument;
      pos += c.entry.words;
      ++entries;
      const std::uint64_t x_last = x.start + (x.len - 1);
      if (x_last == ~std::uint64_t{0} || x_last + 1 != c.entry.start ||
          c.entry.flags != x.flags || c.entry.len > max_len - x.len)
        return errc::invalid_argument;
      x.len += c.entry.len;
    }
    if (have_pending) {
      if (result<void> r = finish(false); !r) return r;
    }
    pending = x;
    have_pending = true;
  }
  if (result<void> r = finish(true); !r) return r;
  if (entries != h.entry_count) return errc::invalid_argument;
  return {};
}

}  // namespace detail

template <address_space Space, segment_allocator Alloc = default_allocator>
class packed_list {
  using seg = detail::packed_segment;

 public:
  using space_type = Space;
  using value_type = range<Space>;
  using range_type = range<Space>;
  using allocator_type = Alloc;
  using address_type = address<Space>;

  static constexpr std::uint64_t page_size = packed_format::page_size;
  /// Segment sizes: the first is small (a short list stays small), then each doubles.
  static constexpr std::size_t first_segment_bytes = 256;
  static constexpr std::size_t max_segment_bytes = ::phyr::page_size;

 private:
  // Position in the segment chain while decoding.
  struct cursor {
    const seg* s;
    const std::uint32_t* w;  // next word to decode
    const std::uint32_t* e;  // end of s's entries
  };

 public:
  /// Forward iterator over the ranges, by value (the first is trimmed by the header).
  class const_iterator {
   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = range_type;
    using difference_type = std::ptrdiff_t;
    using reference = range_type;
    using pointer = void;

    constexpr const_iterator() noexcept = default;
    [[nodiscard]] range_type operator*() const noexcept { return cur_; }
    const_iterator& operator++() noexcept {
      // rem_ counts the ranges from the current one to the end; the open tail is the last.
      if (--rem_ > 1) {
        next_committed();
      } else if (rem_ == 1) {
        cur_ = tail_;
      }
      return *this;
    }
    const_iterator operator++(int) noexcept {
      const_iterator t = *this;
      ++*this;
      return t;
    }
    friend bool operator==(const const_iterator& a, const const_iterator& b) noexcept {
      return a.rem_ == b.rem_;
    }

   private:
    friend class packed_list;
    cursor c_{};
    std::uint64_t rem_ = 0;
    range_type tail_{};
    range_type cur_{};

    void next_committed() noexcept {
      if (PHYR_UNLIKELY(c_.w == c_.e)) {
        c_.s = c_.s->next;
        c_.w = detail::seg_words(c_.s);
        c_.e = c_.w + c_.s->used;
      }
      const std::uint64_t head = detail::get_u64(c_.w);
      if (PHYR_LIKELY(detail::head_mode(head) == packed_mode::block)) {  // decoded inline
        c_.w += 2;
        cur_ = range_type{address_type{detail::head_page_addr(head)}, detail::block_len(head),
                          static_cast<range_flags>(detail::head_flags(head))};
        return;
      }
      const decoded st = decode_at(c_);
      c_ = st.c;
      cur_ = range_type{address_type{st.x.start}, st.x.len, static_cast<range_flags>(st.x.flags)};
    }
  };
  using iterator = const_iterator;

  /// The list cut into `block_size()` blocks (random-access hardware: RDMA MR page lists,
  /// IOMMU/GPU page tables, NVMe PRPs): yields each block's address, decoded on the fly.
  /// The data starts `first_offset()` bytes into the first block; `size()` blocks in all.
  /// Valid while the list is alive and unmodified.
  class block_view {
   public:
    class iterator {
     public:
      using iterator_category = std::forward_iterator_tag;
      using value_type = address_type;
      using difference_type = std::ptrdiff_t;
      using reference = address_type;
      using pointer = void;

      constexpr iterator() noexcept = default;
      [[nodiscard]] address_type operator*() const noexcept { return address_type{cur_}; }
      iterator& operator++() noexcept {
        ++idx_;
        if (--left_ == 0) {
          ++it_;
          if (idx_ < count_) enter(*it_);
        } else {
          cur_ += bs_;
        }
        return *this;
      }
      iterator operator++(int) noexcept {
        iterator t = *this;
        ++*this;
        return t;
      }
      friend bool operator==(const iterator& a, const iterator& b) noexcept {
        return a.idx_ == b.idx_;
      }

     private:
      friend class block_view;
      const_iterator it_{};
      std::uint64_t cur_ = 0, left_ = 0, idx_ = 0, count_ = 0, bs_ = 0;
      unsigned shift_ = 0;
      void enter(const range_type& r) noexcept {
        const std::uint64_t first = r.addr().value() & ~(bs_ - 1);
        const std::uint64_t last = r.last().value() & ~(bs_ - 1);
        cur_ = first;
        left_ = ((last - first) >> shift_) + 1;
      }
    };

    [[nodiscard]] iterator begin() const noexcept {
      iterator i;
      i.it_ = first_;
      i.count_ = count_;
      i.bs_ = bs_;
      i.shift_ = static_cast<unsigned>(std::countr_zero(bs_));
      if (count_ != 0) i.enter(*first_);
      return i;
    }
    [[nodiscard]] iterator end() const noexcept {
      iterator i;
      i.idx_ = count_;
      return i;
    }
    [[nodiscard]] std::uint64_t size() const noexcept { return count_; }
    [[nodiscard]] bool empty() const noexcept { return count_ == 0; }
    [[nodiscard]] std::uint64_t block_size() const noexcept { return bs_; }
    /// Where the data starts inside the first block.
    [[nodiscard]] std::uint64_t first_offset() const noexcept { return offset_; }

   private:
    friend class packed_list;
    const_iterator first_{};
    std::uint64_t count_ = 0, bs_ = 0, offset_ = 0;
  };

  packed_list() noexcept
    requires std::is_nothrow_default_constructible_v<Alloc>
      : alloc_() {}
  explicit packed_list(Alloc a) noexcept : alloc_(a) {}
  packed_list(packed_list&& o) noexcept : alloc_(o.alloc_) { steal(o); }
  packed_list& operator=(packed_list&& o) noexcept {
    if (this != &o) {
      release();
      alloc_ = o.alloc_;
      steal(o);
    }
    return *this;
  }
  packed_list(const packed_list&) = delete;
  packed_list& operator=(const packed_list&) = delete;
  ~packed_list() { release(); }

  /// A copy with its own segments (only the used words are copied). Strong guarantee.
  [[nodiscard]] result<packed_list> try_clone() const noexcept {
    packed_list c{alloc_};
    for (const seg* s = head_; s != nullptr && s->used != 0; s = s->next) {
      seg* d = c.add_segment(sizeof(seg) + std::size_t{s->capacity} * 4);
      if (d == nullptr) return errc::out_of_memory;
      std::memcpy(detail::seg_words(d), detail::seg_words(s), std::size_t{s->used} * 4);
      d->used = s->used;
    }
    c.n_ = n_;
    c.min_align_log2_ = min_align_log2_;
    return result<packed_list>{std::move(c)};
  }

  // ---- appending -----------------------------------------------------------------------------

  /// Appends `r`, merging with the tail when adjacent with equal flags (up to max_len bytes,
  /// then the rest starts a new range).
  /// Errors: invalid_argument (zero length), overflow (total bytes past 2^64), misaligned
  /// (a boundary below `min_alignment()`), out_of_memory. Strong guarantee.
  result<void> try_append(const range_type& r) noexcept {
    const std::uint64_t a = r.addr().value(), len = r.len();
    const std::uint8_t fl = flag_bits(r.flags());
    if (len == 0) return errc::invalid_argument;
    if (len > ~n_.total) return errc::overflow;
    // Fast paths that change nothing until they can no longer fail, so need no mark: growing
    // the tail within max_len, and closing it into the room left in the current segment.
    if (has_tail()) {
      const std::uint64_t t_addr = n_.tail.addr().value(), t_len = n_.tail.len();
      const std::uint8_t t_fl = flag_bits(n_.tail.flags());
      const std::uint64_t t_end = t_addr + t_len;  // 0 when the tail ends at 2^64
      if (t_end == a && t_end != 0 && fl == t_fl) {
        if (len <= range_type::max_len - t_len) {
          n_.tail = range_type::make_unchecked(t_addr, t_len + len, n_.tail.flags());
          n_.total += len;
          return {};
        }
      } else if (n_.ranges != 0 && cur_ != nullptr && cur_->capacity - cur_->used >= 3) {
        const std::uint64_t b = t_end | a;
        if ((b & ((std::uint64_t{1} << min_align_log2_) - 1)) != 0) return errc::misaligned;
        if (const std::uint32_t k =
                close_fast(detail::seg_words(cur_) + cur_->used, t_addr, t_len, t_fl);
            k != 0) {
          cur_->used += k;
          n_.words += k;
          ++n_.entries;
          ++n_.ranges;
          n_.align_acc |= b;
          n_.flags_seen |= fl;
          n_.modes_seen |= close_fast_mode_bit(k);
          n_.tail = r;
          n_.total += len;
          return {};
        }
      }
    }
    const mark m = save();
    if (result<void> r = append_one(a, len, fl); !r) return fail(m, r.error());
    return {};
  }

  /// Appends the 4 KiB pages `pfns` of a virtually contiguous buffer whose data starts
  /// `first_offset` bytes into the first page and is `total_len` bytes long (every page holds
  /// data: range_list::try_append_pages' contract). Physically consecutive pages form one
  /// range. Errors: invalid_argument (empty span, first_offset >= 4096, total_len not ending
  /// in the last page, a pfn >= 2^52), too_long (more than 2^43 pages), overflow, misaligned,
  /// out_of_memory. Strong guarantee.
  ///
  /// Hot path: after the first run (which may merge with the tail), each run closes the open
  /// tail. Fully fragmented stretches go 8 pages at a time: one branch-free check (no pfn
  /// continues its predecessor, none >= 2^52) and 8 mode-0 words written with vector ORs
  /// and stores, no division, no allocation check beyond "segment full". Other runs take a
  /// scalar loop (one compare per page to find the run's end, one entry per run). The
  /// promised alignment is folded into an accumulator checked once at the end (the whole call
  /// is rolled back if it fails).
  result<void> try_append_pages(std::span<const std::uint64_t> pfns, std::uint64_t first_offset,
                                std::uint64_t total_len,
                                range_flags flags = range_flags::none) noexcept {
    constexpr std::uint64_t page = page_size;
    const std::size_t n = pfns.size();
    if (n == 0 || first_offset >= page || total_len == 0) return errc::invalid_argument;
    // Runs of at most 2^43 pages keep every length far below max_len; a larger span could
    // not be in memory anyway (it would be 64 TiB of pfns).
    if (static_cast<std::uint64_t>(n) > (std::uint64_t{1} << 43)) return errc::too_long;
    const std::uint64_t span_bytes = static_cast<std::uint64_t>(n) * page;
    if (total_len > span_bytes - first_offset || total_len + first_offset <= span_bytes - page)
      return errc::invalid_argument;
    if (total_len > ~n_.total) return errc::overflow;

    const std::uint64_t* p = pfns.data();
    const std::uint64_t tail_cut = span_bytes - first_offset - total_len;
    const std::uint8_t fl = flag_bits(flags);
    const mark m = save();
    n_.flags_seen |= fl;

    // First run: may merge with the current tail, so it takes the general path.
    std::size_t i = run_end(p, 1, n);
    // A run's pfns are consecutive, so its ends bound all of it.
    if ((p[0] | p[i - 1]) >> pfn_bits) return errc::invalid_argument;
    {
      const std::uint64_t addr = pfn_to_addr(p[0]) + first_offset;
      std::uint64_t len = static_cast<std::uint64_t>(i) * page - first_offset;
      if (i == n) len -= tail_cut;
      if (result<void> r = append_one(addr, len, fl); !r) return fail(m, r.error());
    }
    if (i == n) return {};

    // Later runs start at a discontinuity: each closes the tail [t_addr, t_end).
    std::uint64_t t_addr = n_.tail.addr().value();
    std::uint64_t t_end = t_addr + n_.tail.len();  // page aligned (wraps to 0 at 2^64)
    bool generic = n_.ranges == 0 || (fl & ~compact_flag_mask) != 0;
    const std::uint64_t fbits = detail::make_head(packed_mode::block, 0, 0, fl);
    std::uint64_t bnd_acc = 0;  // OR of the interior boundaries, in pages
    std::uint64_t entries = 0;
    std::uint32_t* wp = cur_ == nullptr ? nullptr : detail::seg_words(cur_) + cur_->used;
    std::uint32_t* wend = cur_ == nullptr ? nullptr : detail::seg_words(cur_) + cur_->capacity;
    result<void> err;  // the first failure; the loop stops there
    while (i < n) {
      // A fully fragmented stretch: the open tail is one aligned page (it is p[i - 1]) and
      // none of the next 8 pfns continues its predecessor or leaves the 52-bit space. Then
      // the tail and 7 pages become 8 one-page mode-0 words and p[i + 7] the new tail: an
      // OR-and-copy with no per-page branch, which compilers vectorize.
      if (t_end - t_addr == page && !generic) {
        const std::size_t i0 = i;
        while (n - i >= 8 && wend - wp >= 16 && write_fragmented(wp, p + i, fbits)) {
          wp += 16;
          i += 8;
        }
        if (i != i0) {
          entries += i - i0;
          bnd_acc |= 1;  // a one-page run has an odd boundary: only 4 KiB alignment is left
          // The new tail starts at p[i - 1] and takes in the pages that continue it.
          const std::size_t j = run_end(p, i, n);
          if (PHYR_UNLIKELY(p[j - 1] >> pfn_bits)) {
            err = errc::invalid_argument;
            break;
          }
          t_addr = pfn_to_addr(p[i - 1]);
          t_end = pfn_to_addr(p[j - 1] + 1);
          i = j;
          continue;
        }
      }
      const std::uint64_t s = p[i];
      const std::size_t j = run_end(p, i + 1, n);
      const std::uint64_t last = p[j - 1];
      // Checked before the run is encoded (it is, when the next run closes it). The run's
      // pfns are consecutive, so its ends bound all of it.
      if (PHYR_UNLIKELY((s | last) >> pfn_bits)) {
        err = errc::invalid_argument;
        break;
      }
      bnd_acc |= pfn_of(t_end) | s;
      if (PHYR_LIKELY(t_end - t_addr == page && !generic)) {
        if (PHYR_UNLIKELY(wend - wp < 2)) {
          sync(wp, entries);
          if (reserve(2) == nullptr) {
            err = errc::out_of_memory;
            break;
          }
          wp = detail::seg_words(cur_) + cur_->used;
          wend = detail::seg_words(cur_) + cur_->capacity;
        }
        const std::uint64_t head = pfn_of(t_addr) | fbits;
        detail::put_u64(wp, head);
        wp += 2;
        ++entries;
      } else {
        sync(wp, entries);
        if (!commit_range(t_addr, t_end - t_addr, fl, n_.ranges == 0)) {
          err = errc::out_of_memory;
          break;
        }
        wp = detail::seg_words(cur_) + cur_->used;
        wend = detail::seg_words(cur_) + cur_->capacity;
        generic = (fl & ~compact_flag_mask) != 0;
      }
      t_addr = pfn_to_addr(s);
      t_end = pfn_to_addr(last + 1);
      i = j;
    }
    if (err) {
      sync(wp, entries);
      // Boundaries are page multiples, so only promises above 4 KiB can fail here.
      if (pfn_to_addr(bnd_acc) & ((std::uint64_t{1} << min_align_log2_) - 1))
        err = errc::misaligned;
    }
    if (!err) return fail(m, err.error());
    // The boundary between the old tail and the first run was accounted by append_one.
    n_.align_acc |= pfn_to_addr(bnd_acc);
    n_.tail = range_type{address_type{t_addr}, t_end - t_addr - tail_cut,
                       static_cast<range_flags>(fl)};
    n_.total = m.n.total + total_len;
    return {};
  }

  /// Appends every range of `ranges` (anything iterable yielding `range_type`: a range_list,
  /// a view, a vector). All or nothing: strong guarantee.
  ///
  /// Hot path: a range that does not continue the tail closes it, and when the closed range
  /// is not the list's first and fits one page-aligned block or one byte-granular entry with
  /// room left in the segment (the common case: direct-I/O chunks, scattered pages), its
  /// entry is written in place from state held in locals; everything else (merging, escapes,
  /// a new segment, the first range) takes append_one. One mark covers the whole call.
  template <range_source Ranges>
    requires std::same_as<source_range_t<Ranges>, range_type>
  result<void> try_append_all(const Ranges& ranges) noexcept {
    const mark m = save();
    const std::uint64_t amask = (std::uint64_t{1} << min_align_log2_) - 1;
    append_state st = load_append_state();
    for (const range_type r : ranges) {
      const std::uint64_t a = r.addr().value(), len = r.len();
      const std::uint8_t fl = flag_bits(r.flags());
      if (len == 0) return fail(m, errc::invalid_argument);
      if (len > ~st.total) return fail(m, errc::overflow);
      const std::uint64_t t_end = st.t_addr + st.t_len;  // 0 when the tail ends at 2^64
      const std::uint64_t b = t_end | a;
      if (st.t_len != 0 && !st.first && (t_end != a || t_end == 0 || fl != st.t_fl) &&
          (b & amask) == 0 && st.wend - st.wp >= 3) {
        if (const std::uint32_t k = close_fast(st.wp, st.t_addr, st.t_len, st.t_fl); k != 0) {
          st.wp += k;
          ++st.closed;
          st.modes |= close_fast_mode_bit(k);
          st.acc |= b;
          st.seen |= fl;
          st.t_addr = a;
          st.t_len = len;
          st.t_fl = fl;
          st.total += len;
          continue;
        }
      }
      if (result<void> r = append_generic(st, a, len, fl); !r) return fail(m, r.error());
      st = load_append_state();
    }
    store_append_state(st);
    return {};
  }

  /// Promises that every interior boundary is a multiple of `align` (a power of two), now and
  /// for every later append (which fails with misaligned otherwise). Errors: invalid_argument
  /// (not a power of two), misaligned (the list already breaks it).
  result<void> try_set_min_alignment(std::uint64_t align) noexcept {
    if (align == 0 || !std::has_single_bit(align)) return errc::invalid_argument;
    if (align > alignment()) return errc::misaligned;
    min_align_log2_ = static_cast<std::uint8_t>(std::countr_zero(align));
    return {};
  }
  [[nodiscard]] std::uint64_t min_alignment() const noexcept {
    return std::uint64_t{1} << min_align_log2_;
  }
  /// Largest power of two (at most 2^63) dividing every interior boundary; 2^63 with none.
  [[nodiscard]] std::uint64_t alignment() const noexcept {
    const std::uint64_t low = n_.align_acc & (~n_.align_acc + 1);  // lowest set bit
    return low == 0 ? std::uint64_t{1} << 63 : low;
  }

  /// Empties the list; segments stay for reuse, the alignment promise stays.
  void clear() noexcept {
    for (seg* s = head_; s != nullptr; s = s->next) s->used = 0;
    cur_ = head_;
    n_ = counters{};
  }

  // ---- observers -----------------------------------------------------------------------------

  /// Ranges (an escape chain is one range).
  [[nodiscard]] std::size_t size() const noexcept {
    return static_cast<std::size_t>(n_.ranges + (has_tail() ? 1 : 0));
  }
  [[nodiscard]] bool empty() const noexcept { return !has_tail(); }
  [[nodiscard]] std::uint64_t total_bytes() const noexcept { return n_.total; }
  /// Entries of the complete encoding (the header's entry count).
  [[nodiscard]] std::uint64_t entry_count() const noexcept {
    return n_.entries + (has_tail() ? tail_plan().pieces : 0);
  }
  /// Bytes of entries only: 8/12/16 each, the open tail as it would be stored last.
  [[nodiscard]] std::uint64_t entry_bytes() const noexcept { return word_count() * 4; }
  /// 32-bit words `try_copy_words` writes.
  [[nodiscard]] std::uint64_t word_count() const noexcept {
    return n_.words + (has_tail() ? tail_plan().words : 0);
  }
  /// Everything the list costs: the object (header and open tail) plus its segments
  /// (including unused space at their ends and spares kept by clear()).
  [[nodiscard]] std::size_t bytes_used() const noexcept { return sizeof(*this) + seg_bytes_; }
  /// Segments held.
  [[nodiscard]] std::size_t segment_count() const noexcept {
    std::size_t k = 0;
    for (const seg* s = head_; s != nullptr; s = s->next) ++k;
    return k;
  }
  [[nodiscard]] packed_header header() const noexcept {
    packed_header h;
    h.min_align_log2 = min_align_log2_;
    if (!has_tail()) return h;
    const packed_format::packed_plan tp = tail_plan();
    h.first_offset = n_.ranges == 0 ? tp.front_trim : n_.first_offset;
    h.total_len = n_.total;
    h.entry_count = n_.entries + tp.pieces;
    return h;
  }
  [[nodiscard]] Alloc get_allocator() const noexcept { return alloc_; }

  [[nodiscard]] const_iterator begin() const noexcept {
    const_iterator it;
    it.rem_ = size();
    it.tail_ = n_.tail;
    if (n_.ranges == 0) {
      it.cur_ = n_.tail;
      return it;
    }
    it.c_ = cursor{head_, detail::seg_words(head_), detail::seg_words(head_) + head_->used};
    const packed_format::packed_entry x = next_entry(it.c_);
    it.cur_ = range_type{address_type{x.start + n_.first_offset}, x.len - n_.first_offset,
                         static_cast<range_flags>(x.flags)};
    return it;
  }
  [[nodiscard]] const_iterator end() const noexcept {
    const_iterator it;
    it.rem_ = 0;
    return it;
  }
  [[nodiscard]] range_type front() const noexcept {
    PHYR_ASSERT(has_tail(), "front() of an empty packed_list");
    return *begin();
  }
  [[nodiscard]] range_type back() const noexcept {
    PHYR_ASSERT(has_tail(), "back() of an empty packed_list");
    return n_.tail;
  }

  /// Calls `f(range_type)` for every range: the fastest walk (a tight loop per segment).
  /// A list of one range costs a few instructions and no call, a short list of blocks one
  /// inline loop; other lists, the open tail included, are walked by walk_committed (see
  /// there for why it is out of line and how `f`'s accumulator still stays in a register).
  template <class F>
  PHYR_ALWAYS_INLINE void for_each(F&& f) const noexcept {
    // Tested first: for one range (or none) the walk is this branch and at most one call of
    // `f`, and a sum over it folds the emptiness test away (an empty tail adds 0).
    if (PHYR_LIKELY(n_.ranges == 0)) {
      if (has_tail()) f(n_.tail);
      return;
    }
    // A short list of aligned blocks (hugepages, a few pinned pages: every committed entry
    // mode 0, no flags, all in the head segment) is walked here, inline, its accumulator in a
    // register. Out of line, the call puts `f`'s state and the return address on the stack
    // right before the walk loads the segment, and whether those loads then wait on the
    // stores depends on the two addresses' low 12 bits: the 8-entry 1 GiB-page list took 6.3
    // to 11.6 ns by where its segment sat in a page, 6.5 to 7.7 ns inline (bench
    // walk/1g/8GiB: 0.88-1.08x of for_each_sg out of line, 1.47-1.55x inline). A loop of its
    // own rather than walk_from's body inlined, whose segment steps this list never takes:
    // 91 instructions per walk against 103, and 1.35-1.66x against 1.20-1.27x.
    if (cur_ == head_ && n_.modes_seen == mode_bit(packed_mode::block) && n_.flags_seen == 0) {
      const std::uint32_t* w = detail::seg_words(head_);
      const std::uint32_t* const e = w + head_->used;
      std::uint64_t head = load_head(w);
      f(range_type::make_unchecked(detail::head_page_addr(head) + n_.first_offset,
                                   detail::block_len(head) - n_.first_offset, range_flags::none));
      for (w += 2; w != e; w += 2) {
        head = load_head(w);
        PHYR_ASSERT(detail::head_mode(head) == packed_mode::block,
                    "packed_list: modes_seen disagrees with the stored entries");
        f(range_type::make_unchecked(detail::head_page_addr(head), detail::block_len(head),
                                     range_flags::none));
      }
      f(n_.tail);
      return;
    }
    walk_committed(f);
  }

  /// Fixed-size blocks (see block_view). Errors: invalid_argument (not a power of two),
  /// misaligned (an interior boundary is not a multiple of `block_size`: the hardware cannot
  /// describe the list with blocks that big).
  [[nodiscard]] result<block_view> try_blocks(std::uint64_t block_size) const noexcept {
    if (block_size == 0 || !std::has_single_bit(block_size)) return errc::invalid_argument;
    if (block_size > alignment()) return errc::misaligned;
    block_view v;
    v.bs_ = block_size;
    if (!has_tail()) return v;
    v.first_ = begin();
    v.offset_ = (*v.first_).addr().value() & (block_size - 1);
    // ceil((offset + total) / bs) without overflow: interior boundaries are bs multiples.
    const std::uint64_t rem = v.offset_ + (n_.total & (block_size - 1));
    v.count_ = n_.total / block_size + (rem == 0 ? 0 : rem <= block_size ? 1 : 2);
    return v;
  }

  /// Calls `f(address_type)` for every block of try_blocks(block_size), in order: the fast
  /// way to fill a page list (one tight loop, no iterator state). Same errors as try_blocks().
  template <class F>
  result<void> try_for_each_block(std::uint64_t block_size, F&& f) const noexcept {
    if (block_size == 0 || !std::has_single_bit(block_size)) return errc::invalid_argument;
    if (block_size > alignment()) return errc::misaligned;
    const std::uint64_t mask = block_size - 1;
    const unsigned shift = static_cast<unsigned>(std::countr_zero(block_size));
    for_each([&](const range_type& r) noexcept {
      std::uint64_t a = r.addr().value() & ~mask;
      // Counted, so a range ending at 2^64 cannot wrap the loop.
      for (std::uint64_t n = (((r.last().value() & ~mask) - a) >> shift) + 1; n != 0; --n) {
        f(address_type{a});
        a += block_size;
      }
    });
    return {};
  }

  // ---- the stored form -----------------------------------------------------------------------

  /// Writes the complete encoding (committed entries, then the tail as the last entry) to
  /// `out`; returns the words written. out_of_range when `out` has fewer than word_count().
  [[nodiscard]] result<std::size_t> try_copy_words(std::span<std::uint32_t> out) const noexcept {
    const std::uint64_t need = word_count();
    if (out.size() < need) return errc::out_of_range;
    std::uint32_t* o = out.data();
    std::uint64_t left = n_.words;
    for (const seg* s = head_; left != 0; s = s->next) {
      std::memcpy(o, detail::seg_words(s), std::size_t{s->used} * 4);
      o += s->used;
      left -= s->used;
    }
    if (has_tail()) packed_format::write_plan(tail_plan(), o);
    return static_cast<std::size_t>(need);
  }

  /// Rebuilds a list from a header and words (`header()` + `try_copy_words()`, or bytes from
  /// anywhere). Everything is validated first, so arbitrary input gives an errc, never
  /// undefined behaviour: invalid_argument (malformed entry, inconsistent header, mergeable
  /// neighbours), misaligned (a boundary below the header's promise), out_of_memory.
  [[nodiscard]] static result<packed_list> from_words(const packed_header& h,
                                                      std::span<const std::uint32_t> words,
                                                      Alloc a = Alloc{}) noexcept {
    if (result<void> r = detail::parse_packed(
            h, words, [](std::uint64_t, std::uint64_t, std::uint8_t) noexcept {});
        !r)
      return r.error();
    packed_list l{a};
    l.min_align_log2_ = h.min_align_log2;
    result<void> appended;  // the first append failure (out_of_memory) stops the rest
    (void)detail::parse_packed(h, words,
                               [&](std::uint64_t addr, std::uint64_t len, std::uint8_t f) noexcept {
                                 if (appended) appended = l.append_one(addr, len, f);
                               });
    if (!appended) return appended.error();
    return result<packed_list>{std::move(l)};
  }

  // ---- conversions ---------------------------------------------------------------------------

  /// A packed copy of `ranges` (a range_list, a view, or anything iterable over range_type).
  template <range_source Ranges>
    requires std::same_as<source_range_t<Ranges>, range_type>
  [[nodiscard]] static result<packed_list> from_ranges(const Ranges& ranges,
                                                       Alloc a = Alloc{}) noexcept {
    packed_list l{a};
    if (auto r = l.try_append_all(ranges); !r) return r.error();
    return result<packed_list>{std::move(l)};
  }

  /// The same ranges as a range_list (default limits, so nothing is merged or split).
  template <segment_allocator A2 = default_allocator>
  [[nodiscard]] result<range_list<range_type, A2>> try_to_range_list(A2 a = A2{}) const noexcept {
    range_list<range_type, A2> out{a};
    result<void> appended;  // the first failure stops the rest
    for_each([&](const range_type& r) noexcept {
      if (appended) appended = out.try_append(r);
    });
    if (!appended) return appended.error();
    return result<range_list<range_type, A2>>{std::move(out)};
  }

 private:
  // Everything the list knows besides its segments, in one aggregate so that clearing,
  // moving, cloning, marking and rolling back are single assignments.
  struct counters {
    std::uint64_t words = 0;         // committed words (not counting segment slack)
    std::uint64_t entries = 0;       // committed entries
    std::uint64_t ranges = 0;        // committed ranges (all but the open tail)
    std::uint64_t first_offset = 0;  // header trim of the first committed range
    std::uint64_t total = 0;         // bytes of all ranges, the open tail included
    std::uint64_t align_acc = 0;     // OR of every interior boundary address
    range_type tail{};               // the open last range; len 0 when the list is empty
    // OR of the flags of every range appended since the list was last empty (a superset of
    // the committed entries' flags): when it is 0, for_each builds ranges with constant flags.
    std::uint8_t flags_seen = 0;
    // Bit (1 << mode) of each mode among the committed entries: exactly the modes present,
    // since entries leave only through clear() and rollback, which reset or restore this whole
    // aggregate. for_each walks a single-mode list with no per-entry mode test.
    std::uint8_t modes_seen = 0;
  };

  struct mark {
    seg* cur;
    seg* last;
    std::uint32_t cur_used;
    counters n;
  };

  [[no_unique_address]] Alloc alloc_;
  seg* head_ = nullptr;  // first segment
  seg* cur_ = nullptr;   // segment being filled; those after it are empty spares
  seg* last_ = nullptr;  // last segment of the chain
  std::uint64_t seg_bytes_ = 0;
  counters n_;
  std::uint8_t min_align_log2_ = 0;

  [[nodiscard]] bool has_tail() const noexcept { return n_.tail.len() != 0; }

  [[nodiscard]] static std::size_t run_end(const std::uint64_t* p, std::size_t i,
                                           std::size_t n) noexcept {
    return detail::pfn_run_end(p, i, n);
  }

  // Eight one-page mode-0 words for p[0..8) when none of them is its predecessor + 1 and
  // all are below 2^52; false (and `w` beyond the committed words possibly scribbled on,
  // which is free space) otherwise. Branch-free so it vectorizes: with x = p[k] - p[k-1] - 1,
  // zero exactly for consecutive frames, (x - 1) & ~x has its top bit set exactly when x is
  // 0, and OR-ing in the pfns themselves puts any pfn >= 2^52 in bits 52..63 as well. A
  // non-zero x sets bits 52..63 only if it is a multiple of 2^52, impossible for two pfns
  // below 2^52 (and a false alarm would only send the chunk down the scalar path).
  [[nodiscard]] static bool write_fragmented(std::uint32_t* w, const std::uint64_t* p,
                                             std::uint64_t fbits) noexcept {
#if defined(__GNUC__) && !defined(PHYR_NO_VECTOR_EXTENSIONS)
    if constexpr (std::endian::native == std::endian::little) {
      typedef std::uint64_t v2 __attribute__((vector_size(16)));
      v2 z = {0, 0};
      for (std::size_t k = 0; k < 8; k += 2) {
        v2 prev, cur;
        std::memcpy(&prev, p + k - 1, sizeof prev);
        std::memcpy(&cur, p + k, sizeof cur);
        const v2 x = cur - prev - 1;
        z |= ((x - 1) & ~x) | cur;
        const v2 out = prev | fbits;
        std::memcpy(w + 2 * k, &out, sizeof out);
      }
      return ((z[0] | z[1]) >> pfn_bits) == 0;
    }
#endif
    std::uint64_t z = 0;
    for (std::size_t k = 0; k < 8; ++k) {
      const std::uint64_t x = p[k] - p[k - 1] - 1;
      z |= ((x - 1) & ~x) | p[k];
      detail::put_u64(w + 2 * k, p[k - 1] | fbits);
    }
    return (z >> pfn_bits) == 0;
  }

  struct decoded {
    packed_format::packed_entry x;
    cursor c;
  };

  // for_each over a list with committed entries: those, then the open tail.
  //
  // Trust. The words decoded here were all written by this class's own encoder (appends,
  // clones of such words; from_words validates its input completely and then re-encodes it
  // through append_one, never copying foreign words in), and no word changes after it is
  // committed. So they are well formed by construction and are decoded without checks;
  // untrusted words go through from_words / detail::parse_packed, which checks every one.
  //
  // Shape. One of five variants (walk_from), chosen once per walk from the list's counters;
  // each decodes the first entry (trimmed by the header) on its own, so its loop carries no
  // "first" test. When no range ever had flags (`Flags` false: the ranges get constant flags
  // and the compiler drops the flag packing when `f` reads only the length or the address)
  // and every committed entry has one mode (counters::modes_seen), a loop for mode 0 only
  // (page lists) or mode 2 only (byte-granular chunks) with a fixed stride and no mode test;
  // otherwise the general loop, which decodes modes 0, 1 and 2 inline (the branches on the
  // mode predict well on real lists, so the next entry's address never waits for this
  // entry's load), with or without flags. Lists holding mode 3 take the general loop with a
  // test for it, which leaves the inner loop to decode the escape out of line (a chain may
  // end in a later segment).
  //
  // Out of line, while for_each itself is short: a list of one range (the open tail: one
  // contiguous buffer, one hugepage) and a short list of blocks in the head segment are walked
  // without a call, and callers such as a sum stay small enough for the compiler to inline.
  // In here `f`'s captures are reached through a pointer, so the inner loops contain no call
  // and load the words as 32-bit values (never through memcpy, whose accesses may alias
  // anything): then nothing in an inner loop can alias an accumulator of another type, and the
  // compiler keeps it in a register for the whole segment.
  template <class F>
  [[gnu::noinline]] void walk_committed(F& f) const noexcept {
    constexpr std::uint8_t block_only = mode_bit(packed_mode::block);
    constexpr std::uint8_t bytes_only = mode_bit(packed_mode::bytes);
    constexpr std::uint8_t no_escape = 0xf & ~mode_bit(packed_mode::escape);
    // Each variant is a function of its own, entered by a jump: the ones without escapes
    // make no call and need few registers, so a short list pays little to enter them.
    if (PHYR_UNLIKELY((n_.modes_seen & ~no_escape) != 0)) return walk_from<true, 0xf>(f);
    if (n_.flags_seen != 0) return walk_from<true, no_escape>(f);
    if (n_.modes_seen == block_only) return walk_from<false, block_only>(f);
    if (n_.modes_seen == bytes_only) return walk_from<false, bytes_only>(f);
    return walk_from<false, no_escape>(f);
  }

  // One variant of walk_committed: the first entry, trimmed by the header, the loop, then the
  // open tail. The tail is called for in here, not by for_each after the return: an
  // accumulator of `f` then goes through memory once per walk (read at the first entry,
  // written back at the end) instead of being written here and read back and written again
  // by the caller, a store-to-load round trip on every walk (bench walk/trace_thp, 49
  // entries: 1.55-1.62x of for_each_sg with it, 1.94-2.09x without).
  template <bool Flags, std::uint8_t Modes, class F>
  [[gnu::noinline]] void walk_from(F& f) const noexcept {
    cursor c{head_, detail::seg_words(head_), detail::seg_words(head_) + head_->used};
    std::uint64_t start, len;
    std::uint8_t fl = 0;
    if constexpr ((Modes & mode_bit(packed_mode::escape)) != 0) {
      const packed_format::packed_entry x = next_entry(c);
      start = x.start;
      len = x.len;
      fl = x.flags;
    } else {
      if (PHYR_UNLIKELY(c.w == c.e)) {  // not reached: the first commit lands in head_
        c.s = c.s->next;
        c.w = detail::seg_words(c.s);
        c.e = c.w + c.s->used;
      }
      const std::uint64_t head = load_head(c.w);
      PHYR_ASSERT((Modes & mode_bit(detail::head_mode(head))) != 0,
                  "packed_list: modes_seen disagrees with the stored entries");
      if constexpr (Modes == mode_bit(packed_mode::block)) {
        start = detail::head_page_addr(head);
        len = detail::block_len(head);
        c.w += 2;
      } else if constexpr (Modes == mode_bit(packed_mode::bytes)) {
        start = detail::bytes_start(head, c.w[2]);
        len = detail::bytes_len_words(c.w[1], c.w[2]);
        c.w += 3;
      } else {
        c.w += decode_inline(c.w, head, start, len);
      }
      if constexpr (Flags) fl = detail::head_flags(head);
    }
    f(range_type::make_unchecked(start + n_.first_offset, len - n_.first_offset,
                                 static_cast<range_flags>(fl)));
    walk_loop<Flags, Modes>(f, c);
    f(n_.tail);
  }

  // A head word as two 32-bit loads (compilers merge them into one 64-bit load), typed as
  // the words are: see walk_committed.
  [[nodiscard]] PHYR_ALWAYS_INLINE static std::uint64_t load_head(
      const std::uint32_t* w) noexcept {
    if constexpr (std::endian::native == std::endian::little) {
      return std::uint64_t{w[0]} | (std::uint64_t{w[1]} << 32);
    } else {
      return detail::get_u64(w);
    }
  }

  // Start and length of the committed mode 0, 1 or 2 entry at `w` with head word `head`;
  // returns the words it takes.
  PHYR_ALWAYS_INLINE static unsigned decode_inline(const std::uint32_t* w, std::uint64_t head,
                                                   std::uint64_t& start,
                                                   std::uint64_t& len) noexcept {
    const packed_mode mode = detail::head_mode(head);
    start = detail::head_page_addr(head);
    if (PHYR_LIKELY(detail::is_block_head(head))) {
      len = detail::block_len(head);
      return 2;
    }
    const std::uint32_t w2 = w[2];
    if (mode == packed_mode::bytes) {
      start = detail::bytes_start(head, w2);
      len = detail::bytes_len(head, w2);
    } else {
      len = detail::run_len(head, w2);
    }
    return 3;
  }

  // The entries from `c` to the end of cur_'s words. `Modes` is the set of modes that may
  // occur (bits 1 << mode); a mode outside it is never tested for.
  template <bool Flags, std::uint8_t Modes, class F>
  PHYR_ALWAYS_INLINE void walk_loop(F& f, cursor c) const noexcept {
    constexpr bool single = (Modes & (Modes - 1)) == 0;
    const seg* s = c.s;
    const std::uint32_t* w = c.w;
    const std::uint32_t* e = c.e;
    for (;;) {
      if constexpr (single) {
        constexpr packed_mode m = static_cast<packed_mode>(std::countr_zero(Modes));
        static_assert(m == packed_mode::block || m == packed_mode::bytes);
        while (w != e) {
          PHYR_ASSERT(detail::head_mode(load_head(w)) == m,
                      "packed_list: modes_seen disagrees with the stored entries");
          if constexpr (m == packed_mode::block) {
            const std::uint64_t head = load_head(w);
            w += 2;
            f(range_type::make_unchecked(
                detail::head_page_addr(head), detail::block_len(head),
                Flags ? static_cast<range_flags>(detail::head_flags(head)) : range_flags::none));
          } else {
            // The length needs only words 1 and 2 (a walk that reads lengths never loads
            // word 0), and no load crosses a cache line (a 12-byte entry's 8-byte head does,
            // every 16 entries).
            const std::uint32_t w1 = w[1], w2 = w[2];
            const std::uint64_t head = std::uint64_t{w[0]} | (std::uint64_t{w1} << 32);
            w += 3;
            f(range_type::make_unchecked(
                detail::bytes_start(head, w2), detail::bytes_len_words(w1, w2),
                Flags ? static_cast<range_flags>(detail::head_flags(head)) : range_flags::none));
          }
        }
      } else {
        // do-while under an if: as a plain while, compilers fold this loop and the segment
        // loop into one, and then no longer keep an accumulator in a register.
        if (w != e) {
          do {
            const std::uint64_t head = load_head(w);
            PHYR_ASSERT((Modes & mode_bit(detail::head_mode(head))) != 0,
                        "packed_list: modes_seen disagrees with the stored entries");
            if constexpr ((Modes & mode_bit(packed_mode::escape)) != 0) {
              if (PHYR_UNLIKELY(detail::head_mode(head) == packed_mode::escape)) break;
            }
            const range_flags fl =
                Flags ? static_cast<range_flags>(detail::head_flags(head)) : range_flags::none;
            // Each mode advances `w` and calls `f` on its own path, so the stride is a
            // constant on each (no select between 2 and 3 words after the branches join).
            if (PHYR_LIKELY(detail::is_block_head(head))) {
              w += 2;
              f(range_type::make_unchecked(detail::head_page_addr(head), detail::block_len(head),
                                           fl));
            } else {
              std::uint64_t start, len;
              w += decode_inline(w, head, start, len);
              f(range_type::make_unchecked(start, len, fl));
            }
          } while (w != e);
        }
        if ((Modes & mode_bit(packed_mode::escape)) != 0 && w != e) {  // an escape at w
          const decoded st = decode_at(cursor{s, w, e});
          s = st.c.s;
          w = st.c.w;
          e = st.c.e;
          f(range_type::make_unchecked(st.x.start, st.x.len,
                                       static_cast<range_flags>(st.x.flags)));
          continue;
        }
      }
      if (s == cur_) break;
      s = s->next;
      w = detail::seg_words(s);
      e = w + s->used;
    }
  }
  // next_entry by value, out of line: the iterator calls it for modes 1-3 and its cursor
  // never has its address taken, so it stays in registers.
  [[gnu::noinline]] static decoded decode_at(cursor c) noexcept {
    const packed_format::packed_entry x = next_entry(c);
    return {x, c};
  }
  // The entry at `c` (moving to the next segment first if `c` is at the end of one), joined
  // with the rest of its escape chain; `c` moves past it.
  static packed_format::packed_entry next_entry(cursor& c) noexcept {
    if (c.w == c.e) {
      c.s = c.s->next;
      c.w = detail::seg_words(c.s);
      c.e = c.w + c.s->used;
    }
    packed_format::packed_entry x = packed_format::decode_entry(c.w);
    c.w += x.words;
    if (PHYR_UNLIKELY(x.continued)) x = join_chain(c, x);
    return x;
  }
  // The rest of an escape chain (ranges >= 8 PiB), possibly across segments.
  [[gnu::cold, gnu::noinline]] static packed_format::packed_entry join_chain(
      cursor& c, packed_format::packed_entry x) noexcept {
    while (x.continued) {
      if (c.w == c.e) {
        c.s = c.s->next;
        c.w = detail::seg_words(c.s);
        c.e = c.w + c.s->used;
      }
      const packed_format::packed_entry n = packed_format::decode_entry(c.w);
      c.w += n.words;
      x.len += n.len;
      x.continued = n.continued;
    }
    return x;
  }

  // What try_append_all's loop keeps in registers: the tail, counters and write position.
  struct append_state {
    std::uint64_t t_addr, t_len, total, acc, closed;
    std::uint32_t* wp;
    std::uint32_t* wend;
    std::uint8_t t_fl, seen, modes;
    bool first;  // the tail is the list's first range
  };
  [[nodiscard]] append_state load_append_state() const noexcept {
    append_state st;
    st.t_addr = n_.tail.addr().value();
    st.t_len = n_.tail.len();
    st.t_fl = flag_bits(n_.tail.flags());
    st.total = n_.total;
    st.acc = n_.align_acc;
    st.closed = 0;
    st.seen = n_.flags_seen;
    st.modes = n_.modes_seen;
    st.first = n_.ranges == 0;
    st.wp = cur_ == nullptr ? nullptr : detail::seg_words(cur_) + cur_->used;
    st.wend = cur_ == nullptr ? nullptr : detail::seg_words(cur_) + cur_->capacity;
    return st;
  }
  void store_append_state(const append_state& st) noexcept {
    if (cur_ != nullptr) {
      const auto used = static_cast<std::uint32_t>(st.wp - detail::seg_words(cur_));
      n_.words += used - cur_->used;
      cur_->used = used;
    }
    n_.entries += st.closed;
    n_.ranges += st.closed;
    n_.total = st.total;
    n_.align_acc = st.acc;
    n_.flags_seen = st.seen;
    n_.modes_seen = st.modes;
    n_.tail = range_type::make_unchecked(st.t_addr, st.t_len, static_cast<range_flags>(st.t_fl));
  }
  // Out of line so the fast loop's state stays in registers.
  [[gnu::noinline]] result<void> append_generic(append_state st, std::uint64_t addr,
                                        std::uint64_t len, std::uint8_t fl) noexcept {
    store_append_state(st);
    return append_one(addr, len, fl);
  }

  // Writes the entry of the closed range [addr, addr + len) (not the list's first) at `w`
  // (room for 3 words) when plan_entry's choice for it is one page-aligned mode 0 block or a
  // mode 2 entry, decided here in a few instructions; returns the words written, or 0 (and
  // writes nothing) when plan_entry must decide.
  [[nodiscard]] static std::uint32_t close_fast(std::uint32_t* w, std::uint64_t addr,
                                                std::uint64_t len, std::uint8_t fl) noexcept {
    using namespace packed_format;
    if ((fl & ~compact_flag_mask) != 0) return 0;
    const std::uint64_t end = addr + len;  // 0 when the range ends at 2^64
    if (((addr | end) & (page_size - 1)) != 0) {  // not page granular: mode 2 or 3
      if (len > max_bytes_len) return 0;
      detail::write_bytes(w, addr, len, fl);
      return 3;
    }
    // Page granular, both ends exact: mode 0 iff the pages are one naturally aligned block.
    // len is not 0 here; (len & (len - 1)) rather than has_single_bit, which is a libcall
    // without -mpopcnt.
    if ((len & (len - 1)) != 0 || (addr & (len - 1)) != 0 || len > (page_size << max_order))
      return 0;
    detail::write_block(w, addr, static_cast<unsigned>(std::countr_zero(len)) - page_shift, fl);
    return 2;
  }

  [[nodiscard]] static constexpr std::uint8_t mode_bit(packed_mode m) noexcept {
    return static_cast<std::uint8_t>(1u << static_cast<unsigned>(m));
  }
  // The mode of the entry close_fast wrote, from the words it returned (2: block, 3: bytes).
  [[nodiscard]] static constexpr std::uint8_t close_fast_mode_bit(std::uint32_t words) noexcept {
    return mode_bit(words == 2 ? packed_mode::block : packed_mode::bytes);
  }

  [[nodiscard]] static constexpr std::uint8_t flag_bits(range_flags f) noexcept {
    return static_cast<std::uint8_t>(f);
  }
  [[nodiscard]] packed_format::packed_plan tail_plan() const noexcept {
    return packed_format::plan_entry(n_.tail.addr().value(), n_.tail.len(), flag_bits(n_.tail.flags()),
                              n_.ranges == 0, true);
  }

  // Appends without the total/zero checks (callers did them). Not atomic
  // by itself: callers hold a mark.
  result<void> append_one(std::uint64_t addr, std::uint64_t len, std::uint8_t fl) noexcept {
    n_.flags_seen |= fl;
    if (has_tail()) {
      std::uint64_t t_last = n_.tail.last().value();
      if (flag_bits(n_.tail.flags()) == fl && t_last != ~std::uint64_t{0} && t_last + 1 == addr) {
        // Merge; past max_len fill the tail and start a new range (range_list's greedy rule).
        const std::uint64_t room = range_type::max_len - n_.tail.len();
        const std::uint64_t take = len < room ? len : room;
        n_.tail = range_type{n_.tail.addr(), n_.tail.len() + take, n_.tail.flags()};
        n_.total += take;
        if (take == len) return {};
        addr += take;
        len -= take;
        t_last += take;
      }
      const std::uint64_t b = (t_last + 1) | addr;
      if (b & ((std::uint64_t{1} << min_align_log2_) - 1)) return errc::misaligned;
      if (!commit_range(n_.tail.addr().value(), n_.tail.len(), flag_bits(n_.tail.flags()),
                        n_.ranges == 0))
        return errc::out_of_memory;
      n_.align_acc |= b;
    }
    n_.tail = range_type{address_type{addr}, len, static_cast<range_flags>(fl)};
    n_.total += len;
    return {};
  }

  // Encodes the closed range [addr, addr + len) (not the list's last) into the segments.
  // Returns false on allocation failure, possibly after writing part of an escape chain:
  // callers roll back.
  bool commit_range(std::uint64_t addr, std::uint64_t len, std::uint8_t fl, bool first) noexcept {
    const packed_format::packed_plan p = packed_format::plan_entry(addr, len, fl, first, false);
    if (p.pieces == 1) {
      std::uint32_t* w = reserve(p.words);
      if (w == nullptr) return false;
      packed_format::write_plan(p, w);
      cur_->used += p.words;
    } else {
      std::uint64_t a = p.start, left = p.len;
      for (std::uint32_t i = 0; i < p.pieces; ++i) {
        std::uint32_t* w = reserve(4);
        if (w == nullptr) return false;
        const std::uint64_t take =
            left < packed_format::max_escape_len ? left : packed_format::max_escape_len;
        detail::write_escape(w, a, take, p.flags, i + 1 < p.pieces);
        cur_->used += 4;
        a += take;
        left -= take;
      }
    }
    n_.words += p.words;
    n_.entries += p.pieces;
    n_.modes_seen |= mode_bit(p.mode);
    if (first) n_.first_offset = p.front_trim;
    ++n_.ranges;
    return true;
  }

  // Room for `n` words in the current segment, moving to a spare or a new segment when the
  // current one is full. Null when the allocator fails (nothing changed then).
  std::uint32_t* reserve(std::uint32_t n) noexcept {
    if (cur_ != nullptr && cur_->capacity - cur_->used >= n)
      return detail::seg_words(cur_) + cur_->used;
    if (cur_ != nullptr && cur_->next != nullptr) {  // a spare (from clear); all are >= 60 words
      cur_ = cur_->next;
      return detail::seg_words(cur_);
    }
    std::size_t bytes = first_segment_bytes;
    if (last_ != nullptr) {
      const std::size_t prev = sizeof(seg) + std::size_t{last_->capacity} * 4;
      bytes = prev * 2 > max_segment_bytes ? max_segment_bytes : prev * 2;
    }
    seg* s = add_segment(bytes);
    return s == nullptr ? nullptr : detail::seg_words(s);
  }

  // Links a new empty segment of `bytes` at the end of the chain and makes it current.
  seg* add_segment(std::size_t bytes) noexcept {
    void* mem = alloc_.allocate(bytes, alignof(seg));
    if (mem == nullptr) return nullptr;
    seg* s = ::new (mem) seg{nullptr, static_cast<std::uint32_t>((bytes - sizeof(seg)) / 4), 0};
    if (last_ == nullptr) {
      head_ = s;
    } else {
      last_->next = s;
    }
    last_ = s;
    cur_ = s;
    seg_bytes_ += bytes;
    return s;
  }

  void sync(std::uint32_t* wp, std::uint64_t& entries) noexcept {
    if (cur_ != nullptr) {
      const auto used = static_cast<std::uint32_t>(wp - detail::seg_words(cur_));
      n_.words += used - cur_->used;
      cur_->used = used;
    }
    // Every entry try_append_pages writes itself (not through commit_range) is a mode 0 block.
    if (entries != 0) n_.modes_seen |= mode_bit(packed_mode::block);
    n_.entries += entries;
    n_.ranges += entries;
    entries = 0;
  }

  [[nodiscard]] mark save() const noexcept {
    return mark{cur_, last_, cur_ == nullptr ? 0u : cur_->used, n_};
  }

  result<void> fail(const mark& m, errc e) noexcept {
    // Segments allocated since the mark are freed; spares used since are emptied again.
    seg* fresh = m.last == nullptr ? head_ : m.last->next;
    while (fresh != nullptr) {
      seg* next = fresh->next;
      free_segment(fresh);
      fresh = next;
    }
    if (m.last == nullptr) {
      head_ = nullptr;
    } else {
      m.last->next = nullptr;
      for (seg* s = m.cur == nullptr ? head_ : m.cur->next; s != nullptr; s = s->next) s->used = 0;
      if (m.cur != nullptr) m.cur->used = m.cur_used;
    }
    cur_ = m.cur;
    last_ = m.last;
    n_ = m.n;
    return e;
  }

  void free_segment(seg* s) noexcept {
    const std::size_t bytes = sizeof(seg) + std::size_t{s->capacity} * 4;
    seg_bytes_ -= bytes;
    s->~seg();
    alloc_.deallocate(s, bytes, alignof(seg));
  }

  void release() noexcept {
    seg* s = head_;
    while (s != nullptr) {
      seg* next = s->next;
      free_segment(s);
      s = next;
    }
    head_ = cur_ = last_ = nullptr;
  }

  void steal(packed_list& o) noexcept {
    head_ = std::exchange(o.head_, nullptr);
    cur_ = std::exchange(o.cur_, nullptr);
    last_ = std::exchange(o.last_, nullptr);
    seg_bytes_ = std::exchange(o.seg_bytes_, 0);
    n_ = std::exchange(o.n_, counters{});
    min_align_log2_ = o.min_align_log2_;
  }
};

}  // namespace phyr
