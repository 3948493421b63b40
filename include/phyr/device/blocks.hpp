/// Fixed-size aligned blocks for random-access engines (RDMA MR page lists, IOMMU and GPU page
/// tables, NVMe PRP lists): `try_blocks`.
///
///   auto b = phyr::try_blocks(mapping, phyr::page_size);  // checks once, O(entries)
///   if (!b) return b.error();                        // misaligned: a gap not on a block boundary
///   mr.first_offset = b->first_offset();             // where the data starts in the first block
///   mr.npages = b->size();
///   std::size_t i = 0;
///   for (phyr::dma_addr<nic0> blk : *b) mr.pages[i++] = blk.value();   // block-aligned addresses
///
/// Semantics (those of the kernel's rdma_umem_for_each_dma_block over a umem accepted by
/// ib_umem_find_best_pgsz): the blocks are the block-aligned windows that hold the list's bytes,
/// in list order. The first block is the one holding the first byte, and `first_offset()` says
/// where in it the data starts; the last block is the one holding the last byte, and may extend
/// past the data. Ranges that follow each other contiguously (the next starts at the byte after
/// the previous one, whatever their flags) are one run, so a block straddling such a junction
/// is listed once. Between runs there must be no partial block: the run before a gap must end,
/// and the run after it start, on a block boundary (else `errc::misaligned`), which is what lets
/// a device address every byte as (block index, offset) with the offset known only for the
/// first block. `best_page_size` (page_size.hpp) picks a block size for which this holds.
///
/// Two block views, two rules. This header's `run_block_view` works on runs: a junction
/// between contiguous entries needs no alignment, whatever the entries' flags, as in the
/// kernel. `packed_list::block_view` (packed/packed_list.hpp) works on entries: every interior
/// entry boundary must be a multiple of the block size (it answers `misaligned` otherwise), so
/// for two contiguous entries that differ only in flags and meet mid-block, try_blocks succeeds
/// and packed_list::try_blocks fails. Both give the same blocks wherever both succeed.
///
/// Iteration is the hot loop of MR registration and page-table fill, so a step is one compare
/// and one add within a range; the source is only touched when a range is exhausted, and the
/// end test is a countdown (the block count is known from validation).
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <type_traits>
#include <utility>

#include <phyr/config.hpp>
#include <phyr/container/range_source.hpp>
#include <phyr/core/address.hpp>
#include <phyr/core/error.hpp>
#include <phyr/core/page.hpp>
#include <phyr/core/range.hpp>
#include <phyr/device/constraints.hpp>

namespace phyr::inline v0 {

namespace detail {
/// What try_blocks learned in its pass: where iteration starts and how many blocks there are.
struct block_layout {
  std::uint64_t first_block = 0;  // block holding the first byte
  std::uint64_t first_stop = 0;   // last block of the first range
  std::uint64_t block_size = 1;
  std::uint64_t count = 0;
  std::uint64_t first_offset = 0;
  std::uint64_t bytes = 0;
};
}  // namespace detail

/// The lazy range try_blocks returns: a forward range of `address<Space>` values, each the
/// start of one block of the source's contiguous runs (see the file comment for how this
/// differs from `packed_list::block_view`). Cheap to copy; valid while the source's storage is alive and unchanged.
template <class It>
class run_block_view {
 public:
  using range_type = std::remove_cvref_t<decltype(*std::declval<const It&>())>;
  using space_type = typename range_type::space_type;
  using address_type = address<space_type>;
  static_assert(any_range<range_type>);

  class iterator {
   public:
    using iterator_concept = std::forward_iterator_tag;
    using iterator_category = std::input_iterator_tag;  // reference is a value
    using value_type = address_type;
    using reference = address_type;
    using difference_type = std::ptrdiff_t;

    constexpr iterator() noexcept = default;

    [[nodiscard]] constexpr address_type operator*() const noexcept { return address_type{cur_}; }
    constexpr iterator& operator++() noexcept {
      PHYR_ASSERT(left_ != 0, "block iterator incremented past the end");
      --left_;
      if (PHYR_LIKELY(cur_ != stop_)) {
        cur_ += size_;
      } else if (left_ != 0) {
        next_range();
      }
      return *this;
    }
    constexpr iterator operator++(int) noexcept {
      iterator t = *this;
      ++*this;
      return t;
    }
    /// Blocks left to visit identify the position (both iterators come from one view).
    friend constexpr bool operator==(const iterator& a, const iterator& b) noexcept {
      return a.left_ == b.left_;
    }

   private:
    friend class run_block_view;

    // The current range's last block has been visited and more blocks remain, so a later range
    // holds them (validation counted them): move to it. After a gap a range starts on a block
    // boundary (validated), so its first block is its start; a range continuing the previous
    // one contiguously shares the junction block, already visited, so its first new block is
    // its start rounded up. Both are the start rounded up. A short contiguous range may lie
    // wholly inside the junction block (rounding up passes its end) and is passed over; so is
    // one starting inside the last block of the address space, where rounding up would wrap.
    constexpr void next_range() noexcept {
      const std::uint64_t m = size_ - 1;
      for (;;) {
        ++src_;
        const range_type r = *src_;
        const std::uint64_t a = r.addr().value();
        if (PHYR_UNLIKELY(a > ~m)) continue;
        cur_ = (a + m) & ~m;
        stop_ = r.last().value() & ~m;
        if (PHYR_LIKELY(cur_ <= stop_)) return;
      }
    }

    It src_{};                // the range holding cur_
    std::uint64_t cur_ = 0;   // current block
    std::uint64_t stop_ = 0;  // last block of the current range
    std::uint64_t size_ = 1;  // block size
    std::uint64_t left_ = 0;  // blocks from this one to the end; 0 = end
  };
  using const_iterator = iterator;

  /// An empty view.
  constexpr run_block_view() noexcept = default;
  /// The blocks of a source starting at `first` with layout `l`, as computed by try_blocks
  /// (which is how views are meant to be made).
  constexpr run_block_view(It first, const detail::block_layout& l) noexcept : first_(first), l_(l) {}

  [[nodiscard]] constexpr iterator begin() const noexcept {
    iterator it;
    it.src_ = first_;
    it.cur_ = l_.first_block;
    it.stop_ = l_.first_stop;
    it.size_ = l_.block_size;
    it.left_ = l_.count;
    return it;
  }
  [[nodiscard]] constexpr iterator end() const noexcept {
    iterator it;
    it.size_ = l_.block_size;
    return it;
  }
  /// Number of blocks.
  [[nodiscard]] constexpr std::uint64_t size() const noexcept { return l_.count; }
  [[nodiscard]] constexpr bool empty() const noexcept { return l_.count == 0; }
  [[nodiscard]] constexpr std::uint64_t block_size() const noexcept { return l_.block_size; }
  /// Offset of the first byte of data within the first block.
  [[nodiscard]] constexpr std::uint64_t first_offset() const noexcept { return l_.first_offset; }
  /// Bytes of data (the list's total length).
  [[nodiscard]] constexpr std::uint64_t total_bytes() const noexcept { return l_.bytes; }

 private:
  It first_{};
  detail::block_layout l_{};
};

/// The `block_size`-aligned blocks covering `list` (see the file comment for the exact rule).
/// One pass over the entries, no allocation. Errors: invalid_argument (block_size not a power
/// of two, an empty list, a zero-length entry), misaligned (a gap between two runs where the
/// earlier run does not end, or the later one does not start, on a block boundary), overflow
/// (total length past 2^64 - 1). `list` must be an lvalue or a borrowed view.
template <class L>
  requires viewable_source<L>
[[nodiscard]] constexpr result<run_block_view<detail::source_iterator_t<std::remove_cvref_t<L>>>>
try_blocks(L&& list, std::uint64_t block_size) noexcept {
  using view = run_block_view<detail::source_iterator_t<std::remove_cvref_t<L>>>;
  if (block_size == 0 || (block_size & (block_size - 1)) != 0) return errc::invalid_argument;
  const std::uint64_t m = block_size - 1;
  detail::block_layout v;
  v.block_size = block_size;
  std::uint64_t prev_last = 0;  // last byte of the previous range
  bool first = true;
  errc err{};
  // for_each_range: a segmented source (a list, a mapping) is read a heap segment at a time.
  const bool done =
      for_each_range(list, [&](const source_range_t<std::remove_cvref_t<L>>& r) noexcept {
        const std::uint64_t a = r.addr().value();
        const std::uint64_t len = r.len();
        if (first) {
          if (len == 0) {
            err = errc::invalid_argument;
            return false;
          }
          first = false;
          prev_last = r.last().value();
          v.first_block = a & ~m;
          v.first_stop = prev_last & ~m;
          v.first_offset = a & m;
          v.bytes = len;
          return true;
        }
        // One test for both a zero length (len - 1 wraps to ~0) and a total past 2^64 - 1.
        if (PHYR_UNLIKELY(len - 1 >= ~v.bytes)) {
          err = len == 0 ? errc::invalid_argument : errc::overflow;
          return false;
        }
        v.bytes += len;
        // At a gap the run before must end on a boundary (prev_last + 1 wraps to 0 at 2^64,
        // which is one) and the next must start on one. Tested in the cheap order: page lists
        // rarely have an unaligned junction at all.
        if ((((prev_last + 1) | a) & m) != 0 &&
            (prev_last == ~std::uint64_t{0} || a != prev_last + 1)) {
          err = errc::misaligned;
          return false;
        }
        prev_last = a + (len - 1);
        return true;
      });
  if (!done) return err;
  if (first) return errc::invalid_argument;
  // With every gap on a boundary the runs tile whole blocks, except for the offset in the
  // first block and the tail of the last: the count is ceil((first_offset + bytes) / size),
  // computed without forming a sum that could pass 2^64.
  const int shift = std::countr_zero(block_size);
  const std::uint64_t tail = v.first_offset + (v.bytes & m);  // both below block_size
  v.count = (v.bytes >> shift) + (tail >> shift) + ((tail & m) != 0 ? 1 : 0);
  return view{list.begin(), v};
}

}  // namespace phyr
