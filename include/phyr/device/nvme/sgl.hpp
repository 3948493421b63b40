/// NVMe SGL builder: SGL1 and descriptor segments for a DMA list (`nvme::try_build_sgl`).
///
///   phyr::nvme::sgl_config cfg{.dword_granularity = (id_ctrl.sgls & 3) == 2};
///   auto r = phyr::nvme::try_build_sgl(mapping, cfg, pool_words, pool_dma);
///   if (!r) return r.error();   // misaligned, too_many_descriptors, too_long, exhausted, ...
///   const auto w = r->sgl1.to_words();           // DPTR: command dwords 6..9
///   cmd.dptr[0] = w[0]; cmd.dptr[1] = w[1];
///   cmd.cdw0 |= phyr::nvme::cdw0_psdt_bits(r->psdt);
///
/// Semantics (NVMe base specification, "Scatter Gather List"; Linux nvme_pci_setup_sgls and
/// nvme_pci_sgl_set_data/set_seg; SPDK nvme_pcie_qpair_build_hw_sgl_request):
/// - Each range becomes a Data Block descriptor (type 0h, sub type 0h: address). Ranges that
///   follow each other contiguously are merged into one descriptor (as SPDK does unless
///   disable_pcie_sgl_merge), up to the 32-bit Length field; longer ranges are split.
/// - One descriptor: it goes inline into SGL1 and no descriptor memory is used.
/// - More: SGL1 is a Last Segment descriptor (type 3h) pointing at the only segment, or a
///   Segment descriptor (type 2h) when more segments follow. A full segment's last slot
///   becomes the Segment/Last Segment descriptor for the next segment and the data descriptor
///   that would have gone there moves on (Linux's chaining); the last segment holds no segment
///   descriptor. Segment descriptor lengths are the next segment's size in bytes.
/// - `dword_granularity` (Identify Controller SGLS bits 1:0 = 10b): every data block's address
///   and length must have the low two bits clear, else `errc::misaligned` (checked on the merged
///   descriptors, which is what the controller sees).
/// - `max_descriptors` caps the data block descriptors (e.g. SPDK's NVME_MAX_SGL_DESCRIPTORS =
///   250): `errc::too_many_descriptors`; `max_transfer` (MDTS) caps the bytes: `errc::too_long`.
/// - Segments are cut from descriptor memory (common.hpp) with at most `segment_descriptors`
///   descriptors each (Linux uses one 4 KiB page: 256); a chunk's tail too small to hold a
///   segment is skipped; memory that cannot hold them all: `errc::exhausted`.
///
/// Guarantees as for PRPs: validation before any write, so a failed call writes nothing; a
/// successful one writes exactly `words_used` words, the leading words of the chunks taken in
/// order except for skipped chunk tails (see `words_used`). No allocation, constexpr.
#pragma once

#include <array>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <phyr/config.hpp>
#include <phyr/core/address.hpp>
#include <phyr/core/error.hpp>
#include <phyr/core/range.hpp>
#include <phyr/device/constraints.hpp>
#include <phyr/device/nvme/common.hpp>
#include <span>

namespace phyr::inline v0::nvme {

/// SGL descriptor types (byte 15, bits 7:4).
enum class sgl_type : std::uint8_t {
  data_block = 0x0,
  bit_bucket = 0x1,
  segment = 0x2,
  last_segment = 0x3,
  keyed_data_block = 0x4,
  transport_data_block = 0x5,
};

/// One 16-byte SGL descriptor: bytes 0..7 address, 8..11 length, 12..14 reserved, byte 15 the
/// SGL identifier (type in bits 7:4, sub type in bits 3:0; sub type 0h = address).
struct sgl_descriptor {
  std::uint64_t address = 0;
  std::uint32_t length = 0;
  std::uint8_t id = 0;

  [[nodiscard]] constexpr sgl_type type() const noexcept { return static_cast<sgl_type>(id >> 4); }
  [[nodiscard]] constexpr std::uint8_t subtype() const noexcept { return id & 0x0f; }

  [[nodiscard]] static constexpr sgl_descriptor make(sgl_type t, std::uint64_t addr,
                                                     std::uint32_t len) noexcept {
    return sgl_descriptor{addr, len, static_cast<std::uint8_t>(static_cast<std::uint8_t>(t) << 4)};
  }
  /// The two little-endian quadwords as they sit in memory (or in command dwords 6..9).
  [[nodiscard]] constexpr std::array<std::uint64_t, 2> to_words() const noexcept {
    return {detail::to_le64(address),
            detail::to_le64(std::uint64_t{length} | (std::uint64_t{id} << 56))};
  }
  /// Reads a descriptor back; the reserved bytes are ignored.
  [[nodiscard]] static constexpr sgl_descriptor from_words(std::uint64_t w0,
                                                           std::uint64_t w1) noexcept {
    const std::uint64_t v = detail::from_le64(w1);
    return sgl_descriptor{detail::from_le64(w0), static_cast<std::uint32_t>(v),
                          static_cast<std::uint8_t>(v >> 56)};
  }
  friend constexpr bool operator==(const sgl_descriptor&, const sgl_descriptor&) noexcept = default;
};

/// Size of one descriptor in bytes and in 64-bit words.
inline constexpr std::uint64_t sgl_descriptor_bytes = 16;
inline constexpr std::uint64_t sgl_descriptor_words = 2;

/// What a controller (and the caller) accepts for SGL transfers.
struct sgl_config {
  /// SGLS bits 1:0 = 10b: data block addresses and lengths must be dword multiples.
  bool dword_granularity = false;
  /// Merge contiguous ranges into one descriptor (SPDK's default; Linux merges in the block
  /// layer before it builds SGLs).
  bool merge = true;
  /// Most data block descriptors per command; 0 = no limit.
  std::uint64_t max_descriptors = 0;
  /// Most descriptors per segment, including the trailing segment descriptor (>= 2).
  std::uint64_t segment_descriptors = 256;
  /// Largest transfer in bytes (MDTS, see mdts_bytes); 0 = no limit.
  std::uint64_t max_transfer = 0;
  /// Controller page size, only used to check descriptor memory (chunks after the first start
  /// on a page boundary, as for PRP lists).
  std::uint64_t page_size = 4096;
};

/// The command's DPTR for an SGL transfer, and what the builder used.
template <class Bus>
struct sgl_result {
  sgl_descriptor sgl1{};
  nvme::psdt psdt = nvme::psdt::sgl_mptr_contig;
  /// Data block descriptors (after merging and splitting).
  std::uint64_t data_descriptors = 0;
  /// Segments in descriptor memory (0 when SGL1 holds the only data block).
  std::uint64_t segments = 0;
  /// Descriptor words written (2 per descriptor, data and segment descriptors alike). They are
  /// the leading words of the chunks in order, except that a chunk tail too small for a
  /// segment is skipped (never with one chunk).
  std::uint64_t words_used = 0;
  /// Bytes the data blocks describe.
  std::uint64_t bytes = 0;
};

/// Descriptor segments a transfer of `data_descriptors` data blocks needs when every segment
/// holds `per_segment` descriptors (closed form): none for one (SGL1 holds it); otherwise each
/// segment but the last gives a slot to the next segment's descriptor, so n segments hold
/// n * (per - 1) + 1 data blocks and n = ceil((d - 1) / (per - 1)).
[[nodiscard]] constexpr std::uint64_t sgl_segments(std::uint64_t data_descriptors,
                                                   std::uint64_t per_segment) noexcept {
  if (data_descriptors <= 1 || per_segment < 2) return 0;
  return phyr::detail::ceil_div(data_descriptors - 1, per_segment - 1);
}

/// Descriptors (data and segment) written to memory for `data_descriptors` data blocks.
[[nodiscard]] constexpr std::uint64_t sgl_memory_descriptors(std::uint64_t data_descriptors,
                                                             std::uint64_t per_segment) noexcept {
  const std::uint64_t s = sgl_segments(data_descriptors, per_segment);
  return s == 0 ? 0 : data_descriptors + s - 1;
}

namespace detail {

/// The largest data block one descriptor carries (32-bit Length; a dword multiple when the
/// controller wants dword granularity, so a split keeps the next piece aligned).
[[nodiscard]] constexpr std::uint64_t sgl_block_max(bool dword) noexcept {
  return dword ? 0xffff'fffcull : 0xffff'ffffull;
}

/// Data blocks of a source: merged across contiguous ranges and split at the length limit.
template <class L>
class sgl_block_source {
 public:
  constexpr sgl_block_source(const L& list, const sgl_config& cfg) noexcept
      : it_(list.begin()),
        end_(list.end()),
        max_(sgl_block_max(cfg.dword_granularity)),
        merge_(cfg.merge) {
    load();
  }

  /// The next block; false at the end or on a zero-length range (then `bad()` is true).
  [[nodiscard]] constexpr bool next(std::uint64_t& addr, std::uint64_t& len) noexcept {
    if (rem_ == 0) return false;
    addr = pos_;
    len = rem_ < max_ ? rem_ : max_;
    pos_ += len;
    rem_ -= len;
    if (rem_ == 0) {
      // Pull in following contiguous ranges while the block has room.
      while (true) {
        load();
        if (rem_ == 0 || !merge_ || bad_) break;
        // Not contiguous (a block ending at 2^64 has no successor), or full.
        if (addr + len != pos_ || addr + len == 0 || len == max_) break;
        const std::uint64_t take = rem_ < max_ - len ? rem_ : max_ - len;
        len += take;
        pos_ += take;
        rem_ -= take;
        if (rem_ != 0) break;
      }
    }
    return true;
  }
  [[nodiscard]] constexpr bool bad() const noexcept { return bad_; }

 private:
  constexpr void load() noexcept {
    if (it_ == end_) {
      rem_ = 0;
      return;
    }
    const auto& r = *it_;
    ++it_;
    pos_ = r.addr().value();
    rem_ = r.len();
    if (rem_ == 0) bad_ = true;
  }

  phyr::detail::source_iterator_t<L> it_;
  phyr::detail::source_iterator_t<L> end_;
  std::uint64_t max_;
  bool merge_;
  bool bad_ = false;
  std::uint64_t pos_ = 0;
  std::uint64_t rem_ = 0;
};

/// One segment carved out of descriptor memory.
struct sgl_segment_slot {
  std::size_t chunk = 0;
  std::size_t word = 0;
  std::uint64_t count = 0;  // descriptors in this segment
  std::uint64_t dma = 0;
};

/// Walks descriptor memory segment by segment. `left` is the number of data descriptors still
/// to place; a segment takes all of them if they fit, else as many as fit minus the slot for
/// the next segment's descriptor.
template <class Bus>
class sgl_segment_cursor {
 public:
  constexpr sgl_segment_cursor(std::span<const descriptor_chunk<Bus>> chunks,
                               std::uint64_t per_segment) noexcept
      : chunks_(chunks), per_(per_segment) {}

  /// The next segment for `left` data descriptors (count includes a trailing segment
  /// descriptor when not all fit); false when memory is used up. `skipped` counts words of
  /// chunk tails passed over.
  [[nodiscard]] constexpr bool next(std::uint64_t left, sgl_segment_slot& out) noexcept {
    while (chunk_ < chunks_.size()) {
      const std::uint64_t avail = (chunks_[chunk_].words.size() - word_) / sgl_descriptor_words;
      const std::uint64_t cap = avail < per_ ? avail : per_;
      // Usable: everything fits, or room for at least one data block plus the pointer.
      if (cap != 0 && (left <= cap || cap >= 2)) {
        out.chunk = chunk_;
        out.word = word_;
        out.dma = chunks_[chunk_].dma.value() + word_ * 8;
        out.count = left <= cap ? left : cap;
        word_ += static_cast<std::size_t>(out.count * sgl_descriptor_words);
        return true;
      }
      skipped_ += chunks_[chunk_].words.size() - word_;
      ++chunk_;
      word_ = 0;
    }
    return false;
  }
  /// Data descriptors a segment of `count` descriptors carries when `left` remain.
  [[nodiscard]] static constexpr std::uint64_t data_in(std::uint64_t count,
                                                       std::uint64_t left) noexcept {
    return left <= count ? left : count - 1;
  }

 private:
  std::span<const descriptor_chunk<Bus>> chunks_;
  std::uint64_t per_;
  std::size_t chunk_ = 0;
  std::size_t word_ = 0;
  std::uint64_t skipped_ = 0;
};

struct sgl_plan {
  std::uint64_t first_addr = 0;
  std::uint64_t first_len = 0;
  std::uint64_t blocks = 0;
  std::uint64_t bytes = 0;
};

template <class L>
[[nodiscard]] constexpr result<sgl_plan> plan_sgl(const L& list, const sgl_config& cfg) noexcept {
  sgl_block_source<L> src(list, cfg);
  sgl_plan p;
  std::uint64_t a = 0, n = 0;
  while (src.next(a, n)) {
    if (cfg.dword_granularity && ((a | n) & 3) != 0) return errc::misaligned;
    if (p.blocks == 0) {
      p.first_addr = a;
      p.first_len = n;
    }
    ++p.blocks;
    if (n > ~std::uint64_t{0} - p.bytes) return errc::too_long;
    p.bytes += n;
  }
  if (src.bad() || p.blocks == 0) return errc::invalid_argument;
  if (cfg.max_transfer != 0 && p.bytes > cfg.max_transfer) return errc::too_long;
  if (cfg.max_descriptors != 0 && p.blocks > cfg.max_descriptors) return errc::too_many_descriptors;
  return p;
}

}  // namespace detail

/// Builds SGL1 and, for more than one data block, the descriptor segments in `mem`.
/// See the file comment for the rules and errors. Strong guarantee: on failure nothing is
/// written.
template <class Bus, range_source L>
requires std::same_as<source_space_t<L>, dma_space<Bus>>
[[nodiscard]] constexpr result<sgl_result<Bus>> try_build_sgl(
    const L& list, const sgl_config& cfg, std::span<const descriptor_chunk<Bus>> mem) noexcept {
  // A segment's byte length must fit the 32-bit Length field of the descriptor naming it.
  if (cfg.segment_descriptors < 2 || cfg.segment_descriptors > 0x0fff'ffff ||
      !valid_page_size(cfg.page_size))
    return errc::invalid_argument;
  auto plan = detail::plan_sgl(list, cfg);
  if (!plan) return plan.error();
  sgl_result<Bus> out;
  out.data_descriptors = plan->blocks;
  out.bytes = plan->bytes;
  if (plan->blocks == 1) {
    out.sgl1 = sgl_descriptor::make(sgl_type::data_block, plan->first_addr,
                                    static_cast<std::uint32_t>(plan->first_len));
    return out;
  }
  if (auto c = detail::check_chunks(mem, cfg.page_size); !c) return c.error();
  {  // Does the memory hold every segment?
    detail::sgl_segment_cursor<Bus> cur(mem, cfg.segment_descriptors);
    detail::sgl_segment_slot seg;
    std::uint64_t left = plan->blocks;
    while (left != 0) {
      if (!cur.next(left, seg)) return errc::exhausted;
      left -= detail::sgl_segment_cursor<Bus>::data_in(seg.count, left);
    }
  }

  // Everything checked: write.
  detail::sgl_block_source<L> src(list, cfg);
  detail::sgl_segment_cursor<Bus> cur(mem, cfg.segment_descriptors);
  detail::sgl_segment_slot seg;
  std::uint64_t left = plan->blocks;
  (void)cur.next(left, seg);
  const auto pointer_to = [](const detail::sgl_segment_slot& s, bool last) noexcept {
    return sgl_descriptor::make(last ? sgl_type::last_segment : sgl_type::segment, s.dma,
                                static_cast<std::uint32_t>(s.count * sgl_descriptor_bytes));
  };
  out.sgl1 = pointer_to(seg, left <= seg.count);
  std::uint64_t words = 0;
  std::uint64_t segments = 0;
  while (true) {
    ++segments;
    std::uint64_t* w = mem[seg.chunk].words.data() + seg.word;
    const std::uint64_t data = detail::sgl_segment_cursor<Bus>::data_in(seg.count, left);
    for (std::uint64_t i = 0; i < data; ++i) {
      std::uint64_t a = 0, n = 0;
      (void)src.next(a, n);
      const auto d =
          sgl_descriptor::make(sgl_type::data_block, a, static_cast<std::uint32_t>(n)).to_words();
      w[2 * i] = d[0];
      w[2 * i + 1] = d[1];
    }
    words += seg.count * sgl_descriptor_words;
    left -= data;
    if (left == 0) break;
    detail::sgl_segment_slot next_seg;
    (void)cur.next(left, next_seg);
    const auto p = pointer_to(next_seg, left <= next_seg.count).to_words();
    w[2 * data] = p[0];
    w[2 * data + 1] = p[1];
    seg = next_seg;
  }
  out.segments = segments;
  out.words_used = words;
  return out;
}

/// One contiguous piece of descriptor memory.
template <class Bus, range_source L>
requires std::same_as<source_space_t<L>, dma_space<Bus>>
[[nodiscard]] constexpr result<sgl_result<Bus>> try_build_sgl(const L& list, const sgl_config& cfg,
                                                              std::span<std::uint64_t> words,
                                                              dma_addr<Bus> words_dma) noexcept {
  const detail::single_chunk<Bus> one{{words, words_dma}};
  return try_build_sgl<Bus>(list, cfg, one.chunks());
}

}  // namespace phyr::inline v0::nvme
