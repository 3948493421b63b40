/// The packed 8/12/16-byte entry format (DESIGN.md, "The packed encoding"): field layout,
/// the rule that picks the smallest entry for a range, and single-entry encode/decode.
///
///   namespace pf = phyr::packed_format;
///   auto p = pf::plan_entry(addr, len, flags, /*front_open=*/false, /*back_open=*/false);
///   p.bytes();                          // 8, 12, 16 (or 16 per piece of a long escape)
///   std::uint32_t w[4];
///   pf::write_plan(p, w);               // words as stored in a packed_list segment
///   auto e = pf::decode_entry(w);       // back: start, length, flags
///
/// Most users want `packed_list` (packed/packed_list.hpp); this header is the format itself.
///
/// Every entry starts with a 64-bit head word, stored as two 32-bit words, low half first
/// (so the format is the same on any host and is read with plain 32-bit loads):
///
///   head  [51:0] pfn (address >> 12) | [56:52] order | [61:57] flags 0..4 | [63:62] mode
///
///   mode 0  8 bytes   a naturally aligned block of 2^order pages at pfn
///   mode 1 12 bytes   + u32 count: count blocks of 2^order pages, pfn aligned to 2^order
///   mode 2 12 bytes   + u32 [11:0] byte offset in the page | [31:12] length bits 19..0;
///                     `order` holds length bits 24..20: 1 .. 2^25 - 1 bytes, any alignment
///   mode 3 16 bytes   + u64 [11:0] byte offset | [14:12] flags 5..7 | [15] continued |
///                     [63:16] length bits 47..0; `order` holds length bits 52..48
///
/// Mode 3 carries the whole 64-bit address, all 8 flag bits and up to 2^53 - 1 bytes. A range
/// needs 64 + 56 + 8 = 128 bits of information and a 16-byte entry has 126 once its mode is
/// spent, so no 16-byte layout holds every `range` (max_len 2^56 - 1). The longest ranges
/// (>= 8 PiB) are therefore a chain of escapes: each but the last has `continued` set, and
/// the pieces are contiguous with equal flags, so the decoder yields them as one range.
///
/// Choosing an entry (`plan_entry`). A range is one entry (chains aside); its first and last
/// page may be widened only where the list header slices them (`front_open`: this is the
/// list's first range, so `first_offset` trims its front; `back_open`: the last range, so
/// `total_len` trims its back). Then, in order:
///   1. flags 5..7 in use -> mode 3 (nothing else keeps them);
///   2. page granular (start page aligned or front open, end page aligned or back open):
///      a. mode 0 if one naturally aligned block of <= 2^31 pages covers the pages, taking
///         the smallest such block (least widening);
///      b. mode 1 if some order aligns both ends with a count below 2^32 (the exact extent at
///         the largest order that divides both ends; widening only if that count overflows);
///   3. length < 32 MiB -> mode 2 (exact bytes);
///   4. mode 3 (exact bytes; a chain of ceil(len / (2^53 - 1)) entries).
/// Why this is the smallest list: entries cannot be shared between ranges (a range boundary
/// is a gap, a flag change or the max_len limit, none of which one entry can express), so
/// the list's size is the sum over ranges of each range's own entries, and each range can
/// be chosen alone. For one range, any split into k >= 2 entries costs >= 16 bytes while
/// steps 2-4 never cost more than 16 bytes, and split pieces would decode as separate ranges
/// anyway. The steps try 8 bytes (only mode 0 is 8), then 12 (modes 1 and 2), then 16, so
/// the first that applies is the minimum. The one exception, chains of escapes, is forced:
/// no single entry holds 2^53 bytes of byte-granular data, and a chain uses the fewest
/// 16-byte pieces.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include <phyr/core/page.hpp>
#include <phyr/config.hpp>
#include <phyr/core/range.hpp>
#include <phyr/packed/bitfield.hpp>

namespace phyr::inline v0 {

/// The two mode bits of a packed entry.
enum class packed_mode : std::uint8_t {
  block = 0,   ///< 8 bytes: a naturally aligned block of 2^order pages
  run = 1,     ///< 12 bytes: `count` order-aligned blocks
  bytes = 2,   ///< 12 bytes: byte-granular, < 32 MiB
  escape = 3,  ///< 16 bytes: anything (long ranges chain)
};

/// The field layout of packed entries. Changing any of these changes the stored format.
namespace packed_format {

using ::phyr::page_shift;  // the frame field counts base pages (core/page.hpp)
using ::phyr::page_size;
using ::phyr::pfn_bits;
using ::phyr::pfn_limit;

// Head word (every mode).
using pfn = bitfield<std::uint64_t, 0, pfn_bits>;
using order = bitfield<std::uint8_t, pfn_bits, 5>;
using flags = bitfield<std::uint8_t, order::offset + order::width, 5>;
using mode = bitfield<packed_mode, 62, 2>;
using head_layout = bit_layout<std::uint64_t, pfn, order, flags, mode>;

// Mode 1: the 32-bit word after the head.
using run_count = bitfield<std::uint32_t, 0, 32>;
using run_layout = bit_layout<std::uint32_t, run_count>;

// Mode 2: the 32-bit word after the head. Length bits 24..20 live in the head's `order`.
using bytes_offset = bitfield<std::uint16_t, 0, page_shift>;
using bytes_len_low = bitfield<std::uint32_t, 12, 20>;
using bytes_layout = bit_layout<std::uint32_t, bytes_offset, bytes_len_low>;

// Mode 3: the 64-bit word after the head. Length bits 52..48 live in the head's `order`.
using escape_offset = bitfield<std::uint16_t, 0, page_shift>;
using escape_flags_high = bitfield<std::uint8_t, 12, 3>;
using escape_continued = bitfield<bool, 15, 1>;
using escape_len_low = bitfield<std::uint64_t, 16, 48>;
using escape_layout =
    bit_layout<std::uint64_t, escape_offset, escape_flags_high, escape_continued, escape_len_low>;

static_assert(head_layout::complete && run_layout::complete && bytes_layout::complete &&
                  escape_layout::complete,
              "every bit of every packed word has a meaning (no reserved bits to validate)");

inline constexpr unsigned max_order = static_cast<unsigned>(order::max);              // 31
inline constexpr std::uint64_t max_run_count = run_count::max;                         // 2^32-1
inline constexpr std::uint64_t max_bytes_len = (bytes_len_low::max << order::width) | order::max;
inline constexpr std::uint64_t max_escape_len =
    (escape_len_low::max << order::width) | order::max;                                // 2^53-1
// Flag bits kept in the head are range.hpp's compact_flag_mask (bits 0..4 of range_flags);
// the rest need mode 3.
/// Longest extent (in pages) a valid entry may describe: a range of max_len bytes plus what
/// widening can add. Bounding it keeps every byte count in 64 bits.
inline constexpr std::uint64_t max_extent_pages = std::uint64_t{1} << 45;

static_assert(max_order == 31);
static_assert(max_bytes_len == (std::uint64_t{1} << 25) - 1);
static_assert(max_escape_len == (std::uint64_t{1} << 53) - 1);
static_assert(flags::max == compact_flag_mask, "range.hpp and the format agree on flags");

/// Words (32-bit) an entry of mode `m` occupies.
[[nodiscard]] constexpr unsigned entry_words(packed_mode m) noexcept {
  return m == packed_mode::block ? 2u : m == packed_mode::escape ? 4u : 3u;
}

}  // namespace packed_format

// The documented encoding API (packed_plan, plan_entry, write_plan, packed_entry,
// decode_entry, validate_entry) is public: packed_list::from_words and try_copy_words expose
// the format, so tools that read or write it may use these directly.
namespace packed_format {

/// How one range is stored: the entry (or escape chain) and the header trims it needs.
struct packed_plan {
  packed_mode mode = packed_mode::block;
  std::uint8_t order = 0;         ///< modes 0/1
  std::uint8_t flags = 0;         ///< all 8 flag bits
  std::uint64_t start = 0;        ///< first byte of the extent (page aligned for modes 0/1)
  std::uint64_t count = 0;        ///< mode 1: blocks
  std::uint64_t len = 0;          ///< modes 2/3: exact bytes
  std::uint64_t front_trim = 0;   ///< extent bytes before the range (becomes first_offset)
  std::uint64_t back_trim = 0;    ///< extent bytes after the range
  std::uint32_t pieces = 1;       ///< mode 3: escapes in the chain
  std::uint32_t words = 2;        ///< 32-bit words of all pieces

  [[nodiscard]] constexpr std::uint64_t bytes() const noexcept { return std::uint64_t{words} * 4; }
};

}  // namespace packed_format

namespace detail {

[[nodiscard]] constexpr unsigned ctz64(std::uint64_t v) noexcept {
  return v == 0 ? 64u : static_cast<unsigned>(std::countr_zero(v));
}
/// Smallest k with 2^k >= n (n >= 1).
[[nodiscard]] constexpr unsigned ceil_log2(std::uint64_t n) noexcept {
  return static_cast<unsigned>(std::bit_width(n - 1));
}

/// Mode 0 for pages [s, e): the smallest naturally aligned block of <= 2^31 pages that equals
/// the pages, or covers them where the header may trim (front: may start below s; back: may
/// end above e). Returns the order, or 64 when none exists.
[[nodiscard]] constexpr unsigned block_order(std::uint64_t s, std::uint64_t e, bool front,
                                             bool back) noexcept {
  const std::uint64_t n = e - s;
  unsigned k = 0;
  if (front && back) {
    k = static_cast<unsigned>(std::bit_width(s ^ (e - 1)));  // same 2^k block holds both ends
  } else if (front) {
    k = ceil_log2(n);
    if (ctz64(e) < k) return 64;  // the block must end exactly at e
  } else if (back) {
    k = ceil_log2(n);
    if (ctz64(s) < k) return 64;  // the block must start exactly at s
  } else {
    if (!std::has_single_bit(n)) return 64;
    k = static_cast<unsigned>(std::countr_zero(n));
    if (ctz64(s) < k) return 64;
  }
  return k <= packed_format::max_order ? k : 64;
}

/// Smallest entry for the range [addr, addr + len) with `flags`; `front_open`/`back_open` say
/// whether the list header trims this range's front/back (see the file comment for the rule
/// and why it is minimal). Preconditions: 1 <= len <= range max_len, no wrap past 2^64.
}  // namespace detail

namespace packed_format {

[[nodiscard]] constexpr packed_plan plan_entry(std::uint64_t addr, std::uint64_t len,
                                               std::uint8_t flags, bool front_open,
                                               bool back_open) noexcept {
  using namespace packed_format;
  PHYR_ASSERT(len != 0 && len - 1 <= ~addr, "plan_entry: empty or wrapping range");
  packed_plan p;
  p.flags = flags;
  const std::uint64_t last = addr + (len - 1);
  if ((flags & ~compact_flag_mask) == 0) {
    const bool start_ok = front_open || (addr & (page_size - 1)) == 0;
    const bool end_ok = back_open || (last & (page_size - 1)) == page_size - 1;
    if (start_ok && end_ok) {
      const std::uint64_t s = addr >> page_shift;        // first page
      const std::uint64_t e = (last >> page_shift) + 1;  // one past the last page, <= 2^52
      if (const unsigned k = detail::block_order(s, e, front_open, back_open); k != 64) {
        const std::uint64_t b = front_open ? (s >> k) << k : s;
        p.mode = packed_mode::block;
        p.order = static_cast<std::uint8_t>(k);
        p.start = b << page_shift;
        p.front_trim = addr - p.start;
        p.back_trim = (((b + (std::uint64_t{1} << k)) << page_shift) - 1) - last;
        p.words = 2;
        return p;
      }
      // Mode 1 on the exact pages at the largest order dividing both ends.
      unsigned k = detail::ctz64(s) < detail::ctz64(e) ? detail::ctz64(s) : detail::ctz64(e);
      if (k > max_order) k = max_order;
      std::uint64_t b = s, f = e;
      bool found = ((e - s) >> k) <= max_run_count;
      // Only runs of >= 2^32 poorly aligned pages (16 TiB) get here: widen where the header
      // trims, at the smallest order whose count fits.
      for (unsigned w = k + 1; !found && w <= max_order && (front_open || back_open); ++w) {
        const std::uint64_t m = (std::uint64_t{1} << w) - 1;
        if (!front_open && (s & m) != 0) break;  // larger orders need even more alignment
        if (!back_open && (e & m) != 0) break;
        const std::uint64_t wb = s & ~m;
        const std::uint64_t we = (e + m) & ~m;
        if (we > pfn_limit) break;
        if (((we - wb) >> w) <= max_run_count) {
          k = w;
          b = wb;
          f = we;
          found = true;
        }
      }
      if (found) {
        p.mode = packed_mode::run;
        p.order = static_cast<std::uint8_t>(k);
        p.start = b << page_shift;
        p.count = (f - b) >> k;
        p.front_trim = addr - p.start;
        p.back_trim = ((f << page_shift) - 1) - last;
        p.words = 3;
        return p;
      }
    }
    if (len <= max_bytes_len) {
      p.mode = packed_mode::bytes;
      p.start = addr;
      p.len = len;
      p.words = 3;
      return p;
    }
  }
  p.mode = packed_mode::escape;
  p.start = addr;
  p.len = len;
  p.pieces = static_cast<std::uint32_t>((len - 1) / max_escape_len + 1);
  p.words = 4 * p.pieces;
  return p;
}

}  // namespace packed_format

namespace detail {

[[nodiscard]] constexpr std::uint64_t make_head(packed_mode m, std::uint64_t pfn_value,
                                                std::uint8_t order_value,
                                                std::uint8_t flags_value) noexcept {
  using namespace packed_format;
  return make<packed_format::pfn>(pfn_value) | make<packed_format::order>(order_value) |
         make<packed_format::flags>(static_cast<std::uint8_t>(flags_value & compact_flag_mask)) |
         make<packed_format::mode>(m);
}

constexpr void put_u64(std::uint32_t* w, std::uint64_t v) noexcept {
  if (!std::is_constant_evaluated() && std::endian::native == std::endian::little) {
    std::memcpy(w, &v, sizeof v);  // one 8-byte store; words are only 4-byte aligned
    return;
  }
  w[0] = static_cast<std::uint32_t>(v);
  w[1] = static_cast<std::uint32_t>(v >> 32);
}
[[nodiscard]] constexpr std::uint64_t get_u64(const std::uint32_t* w) noexcept {
  if (!std::is_constant_evaluated() && std::endian::native == std::endian::little) {
    std::uint64_t v;
    std::memcpy(&v, w, sizeof v);
    return v;
  }
  return std::uint64_t{w[0]} | (std::uint64_t{w[1]} << 32);
}

// Hot-path helpers: encode and decode modes 0 and 2 straight from the head word and the
// 32-bit word after it, with the shifts spelled out so a walk loop needs no packed_entry.
// Shifting the head left by page_shift drops the mode, flags and order (the top 12 bits) and
// leaves the page's byte address, so no mask is needed for the start.

/// The mode of a head word.
[[nodiscard]] constexpr packed_mode head_mode(std::uint64_t head) noexcept {
  return get<packed_format::mode>(head);
}
/// Whether a head word is mode 0: the mode is the top two bits, so one compare.
[[nodiscard]] constexpr bool is_block_head(std::uint64_t head) noexcept {
  static_assert(packed_format::mode::offset == 62 && packed_format::mode::width == 2 &&
                static_cast<unsigned>(packed_mode::block) == 0);
  return head < (std::uint64_t{1} << packed_format::mode::offset);
}
/// Byte address of the page a head word names.
[[nodiscard]] constexpr std::uint64_t head_page_addr(std::uint64_t head) noexcept {
  static_assert(packed_format::pfn::offset == 0 &&
                packed_format::pfn::width + packed_format::page_shift == 64);
  return head << packed_format::page_shift;
}
/// Flag bits 0..4 of a head word.
[[nodiscard]] constexpr std::uint8_t head_flags(std::uint64_t head) noexcept {
  return get<packed_format::flags>(head);
}
/// Mode 0: bytes of the block.
[[nodiscard]] constexpr std::uint64_t block_len(std::uint64_t head) noexcept {
  return packed_format::page_size << get<packed_format::order>(head);
}
/// Mode 1: bytes of `count` blocks (the word after the head). Trusted entries only: their
/// extent is at most max_extent_pages, so the shifts cannot overflow.
[[nodiscard]] constexpr std::uint64_t run_len(std::uint64_t head, std::uint32_t w2) noexcept {
  return (std::uint64_t{get<packed_format::run_count>(w2)} << get<packed_format::order>(head))
         << packed_format::page_shift;
}
/// Mode 2: start and length, from the head and the word after it. The head's `order` holds
/// length bits 24..20, which is where they already sit once the head is shifted down by 32.
[[nodiscard]] constexpr std::uint64_t bytes_start(std::uint64_t head, std::uint32_t w2) noexcept {
  return head_page_addr(head) | (w2 & (packed_format::page_size - 1));
}
[[nodiscard]] constexpr std::uint64_t bytes_len(std::uint64_t head, std::uint32_t w2) noexcept {
  using namespace packed_format;
  static_assert(order::offset - 32 == bytes_len_low::width && bytes_len_low::offset == 12 &&
                bytes_offset::offset == 0 && bytes_offset::width == page_shift);
  constexpr std::uint64_t high_bits = std::uint64_t{order::max} << bytes_len_low::width;
  return ((head >> 32) & high_bits) | (w2 >> bytes_len_low::offset);
}

/// Mode 2: the length from the head's high word (w[1]) and the word after the head (w[2]).
[[nodiscard]] constexpr std::uint64_t bytes_len_words(std::uint32_t w1,
                                                      std::uint32_t w2) noexcept {
  using namespace packed_format;
  static_assert(order::offset - 32 == bytes_len_low::width && bytes_len_low::offset == 12);
  constexpr std::uint32_t high_bits = std::uint32_t{order::max} << bytes_len_low::width;
  return std::uint64_t{(w1 & high_bits) | (w2 >> bytes_len_low::offset)};
}

/// Writes a mode 0 entry: the block of 2^order pages at byte address `start` (aligned to it).
constexpr void write_block(std::uint32_t* w, std::uint64_t start, unsigned order_value,
                           std::uint8_t flags) noexcept {
  put_u64(w, make_head(packed_mode::block, start >> packed_format::page_shift,
                       static_cast<std::uint8_t>(order_value), flags));
}
/// Writes a mode 2 entry for [addr, addr + len), 1 <= len <= max_bytes_len.
constexpr void write_bytes(std::uint32_t* w, std::uint64_t addr, std::uint64_t len,
                           std::uint8_t flags) noexcept {
  using namespace packed_format;
  put_u64(w, make_head(packed_mode::bytes, addr >> page_shift,
                       static_cast<std::uint8_t>(len >> bytes_len_low::width), flags));
  w[2] = make<bytes_offset, std::uint32_t>(static_cast<std::uint16_t>(addr & (page_size - 1))) |
         make<bytes_len_low, std::uint32_t>(static_cast<std::uint32_t>(len & bytes_len_low::max));
}

/// Writes one escape entry (a piece of a chain when `continued`).
constexpr void write_escape(std::uint32_t* w, std::uint64_t addr, std::uint64_t len,
                            std::uint8_t flags, bool continued) noexcept {
  using namespace packed_format;
  put_u64(w, make_head(packed_mode::escape, addr >> page_shift,
                       static_cast<std::uint8_t>(len >> escape_len_low::width), flags));
  put_u64(w + 2,
          make<escape_offset>(static_cast<std::uint16_t>(addr & (page_size - 1))) |
              make<escape_flags_high>(static_cast<std::uint8_t>(flags >> flags::width)) |
              make<escape_continued>(continued) |
              make<escape_len_low>(len & escape_len_low::max));
}

/// Writes the entry (or chain) `p` describes into `w`, which has room for `p.words` words.
}  // namespace detail

namespace packed_format {

constexpr void write_plan(const packed_plan& p, std::uint32_t* w) noexcept {
  using namespace packed_format;
  switch (p.mode) {
    case packed_mode::block:
      detail::write_block(w, p.start, p.order, p.flags);
      return;
    case packed_mode::run:
      detail::put_u64(w, detail::make_head(packed_mode::run, p.start >> page_shift, p.order, p.flags));
      w[2] = make<run_count, std::uint32_t>(static_cast<std::uint32_t>(p.count));
      return;
    case packed_mode::bytes:
      detail::write_bytes(w, p.start, p.len, p.flags);
      return;
    case packed_mode::escape: {
      std::uint64_t a = p.start, left = p.len;
      for (std::uint32_t i = 0; i < p.pieces; ++i, w += 4) {
        const std::uint64_t take = left < max_escape_len ? left : max_escape_len;
        detail::write_escape(w, a, take, p.flags, i + 1 < p.pieces);
        a += take;
        left -= take;
      }
      return;
    }
  }
}

/// One entry read back: its extent [start, start + len), flags, and size.
struct packed_entry {
  std::uint64_t start = 0;
  std::uint64_t len = 0;
  std::uint8_t flags = 0;
  bool continued = false;  ///< mode 3 piece followed by the rest of its range
  packed_mode mode = packed_mode::block;
  std::uint8_t words = 2;
};

/// Decodes a trusted entry (one this library wrote, or one `validate_entry` accepted).
/// Mode 0 (the common case of page lists) is tested first and costs a handful of shifts.
[[nodiscard]] constexpr packed_entry decode_entry(const std::uint32_t* w) noexcept {
  using namespace packed_format;
  const std::uint64_t head = detail::get_u64(w);
  const std::uint64_t pfn_value = head & pfn::max;
  const unsigned ord = static_cast<unsigned>((head >> order::offset) & order::max);
  packed_entry e;
  e.flags = static_cast<std::uint8_t>((head >> flags::offset) & flags::max);
  e.mode = static_cast<packed_mode>(head >> mode::offset);
  if (PHYR_LIKELY(e.mode == packed_mode::block)) {
    e.start = pfn_value << page_shift;
    e.len = page_size << ord;
    e.words = 2;
    return e;
  }
  if (e.mode == packed_mode::run) {
    e.start = pfn_value << page_shift;
    e.len = (std::uint64_t{get<run_count>(w[2])} << ord) << page_shift;
    e.words = 3;
  } else if (e.mode == packed_mode::bytes) {
    e.start = (pfn_value << page_shift) | get<bytes_offset>(w[2]);
    e.len = (std::uint64_t{ord} << bytes_len_low::width) | get<bytes_len_low>(w[2]);
    e.words = 3;
  } else {
    const std::uint64_t x = detail::get_u64(w + 2);
    e.start = (pfn_value << page_shift) | get<escape_offset>(x);
    e.len = (std::uint64_t{ord} << escape_len_low::width) | get<escape_len_low>(x);
    e.flags = static_cast<std::uint8_t>(e.flags | (get<escape_flags_high>(x) << flags::width));
    e.continued = get<escape_continued>(x);
    e.words = 4;
  }
  return e;
}

/// Why an entry was rejected (all map to errc::invalid_argument for callers).
enum class entry_error : std::uint8_t {
  none,
  truncated,       ///< fewer words left than the mode needs
  misaligned_pfn,  ///< modes 0/1: pfn not a multiple of 2^order
  zero_length,     ///< mode 1 count 0, or modes 2/3 length 0
  past_space,      ///< the extent runs past 2^64 bytes
  too_large,       ///< extent above max_extent_pages
};

struct checked_entry {
  packed_entry entry;
  entry_error error = entry_error::none;
};

/// Decodes an untrusted entry from `avail` words: never reads past them, never overflows.
[[nodiscard]] constexpr checked_entry validate_entry(const std::uint32_t* w,
                                                     std::uint64_t avail) noexcept {
  using namespace packed_format;
  checked_entry c;
  if (avail < 2) {
    c.error = entry_error::truncated;
    return c;
  }
  const std::uint64_t head = detail::get_u64(w);
  const packed_mode m = get<packed_format::mode>(head);
  if (avail < entry_words(m)) {
    c.error = entry_error::truncated;
    return c;
  }
  const std::uint64_t pfn_value = get<packed_format::pfn>(head);
  const unsigned ord = get<packed_format::order>(head);
  if (m == packed_mode::block || m == packed_mode::run) {
    const std::uint64_t count = m == packed_mode::block ? 1 : get<run_count>(w[2]);
    if (count == 0) {
      c.error = entry_error::zero_length;
      return c;
    }
    if ((pfn_value & ((std::uint64_t{1} << ord) - 1)) != 0) {
      c.error = entry_error::misaligned_pfn;
      return c;
    }
    const std::uint64_t pages = count << ord;  // < 2^63
    if (pages > max_extent_pages) {
      c.error = entry_error::too_large;
      return c;
    }
    if (pages > pfn_limit - pfn_value) {
      c.error = entry_error::past_space;
      return c;
    }
  }
  c.entry = decode_entry(w);
  if (m == packed_mode::bytes || m == packed_mode::escape) {
    if (c.entry.len == 0) {
      c.error = entry_error::zero_length;
      return c;
    }
    if (c.entry.len - 1 > ~c.entry.start) c.error = entry_error::past_space;
  }
  return c;
}

}  // namespace packed_format
}  // namespace phyr

