/// NVMe PRP builder: PRP1/PRP2 and PRP lists for a DMA list (`nvme::try_build_prp`).
///
///   auto r = phyr::nvme::try_build_prp(mapping, 4096, pool_words, pool_dma);
///   if (!r) return r.error();      // misaligned, page_gap, too_long, exhausted, invalid_argument
///   cmd.prp1 = r->prp1.value();    // first byte, dword aligned, may have an offset
///   cmd.prp2 = r->prp2.value();    // 0, the second page, or the first PRP list page
///   cmd.cdw0 |= phyr::nvme::cdw0_psdt_bits(phyr::nvme::psdt::prp);
///   auto pages = phyr::nvme::prp_list_pages(r->entries, 4096);   // what the pool must hold
///
/// The rules are the NVMe base specification's ("Physical Region Page Entry and List"), as Linux
/// (nvme_pci_setup_prps) and SPDK (nvme_pcie_prp_list_append) build them:
/// - PRP1 is the address of the first byte; only its offset into the memory page may be
///   non-zero, and it must be dword aligned (else `errc::misaligned`).
/// - Every further entry names one whole memory page (offset 0). So inside the transfer, where
///   one range is not followed contiguously by the next, the earlier one must end and the later
///   one start on a page boundary (else `errc::page_gap`); ranges that follow each other
///   contiguously are one run whatever their flags, and a page they share is named once.
/// - Two entries: PRP2 is the second page. More: PRP2 points at a PRP list (quadword aligned);
///   when a list page fills and entries remain, its last slot points at the next list page.
/// - The transfer may not exceed `max_transfer` (the controller's MDTS in bytes; 0 = none),
///   else `errc::too_long`. An empty list or a zero-length range is `errc::invalid_argument`, as
///   is a page size that is not a power of two in 4 KiB..128 MiB.
///
/// Descriptor memory (common.hpp) is cut into list pages at controller page boundaries of its
/// DMA address. The first list page may start anywhere quadword aligned, e.g. inside a
/// per-command tracker as SPDK does, but only a full, page-aligned list page may chain: the spec
/// chains at the end of the memory page, while QEMU's NVMe model reads a page's worth of entries
/// from PRP2 whatever its offset, so a list that starts mid-page and chains would be read
/// differently by the two. When the memory cannot hold the list, `errc::exhausted`.
///
/// Guarantees: validation happens before any write, so a failed call writes nothing; a
/// successful one writes exactly `words_used` words, the leading words of the chunks taken in
/// order (chunks are filled front to back, one after the other), and nothing else. O(ranges +
/// pages), no allocation, constexpr.
#pragma once

#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <phyr/config.hpp>
#include <phyr/container/range_source.hpp>
#include <phyr/core/address.hpp>
#include <phyr/core/error.hpp>
#include <phyr/core/range.hpp>
#include <phyr/device/constraints.hpp>
#include <phyr/device/nvme/common.hpp>
#include <span>

namespace phyr::inline v0::nvme {

/// What a controller accepts for PRP transfers.
struct prp_config {
  /// The controller's memory page size (CC.MPS), a power of two in 4 KiB..128 MiB.
  std::uint64_t page_size = 4096;
  /// Largest transfer in bytes (Identify Controller MDTS, see mdts_bytes); 0 = no limit.
  std::uint64_t max_transfer = 0;
};

/// What PRP2 holds.
enum class prp2_use : std::uint8_t {
  none,  ///< the transfer fits in PRP1's page; PRP2 is 0
  data,  ///< the transfer ends in the second page; PRP2 is that page
  list,  ///< PRP2 points at the first PRP list page
};

/// The command's DPTR for a PRP transfer, and what the builder used.
template <class Bus>
struct prp_result {
  // The words in pairs at offsets 0, 16 and 32, the byte last: the builder writes a pair with
  // one store, and a caller reading a pair (PRP1 and PRP2 into the command, the entry count)
  // gets it forwarded from that store; a pair straddling two stores waits for both to retire.
  dma_addr<Bus> prp1{};
  dma_addr<Bus> prp2{};
  /// PRP entries describing data: PRP1 plus one per further page (SPDK's `prp_index`).
  std::uint64_t entries = 0;
  /// PRP list pages used (0 unless prp2_kind == list).
  std::uint64_t list_pages = 0;
  /// Descriptor words written: data entries in the lists plus one chain pointer per extra page.
  std::uint64_t words_used = 0;
  /// Bytes the entries describe (the transfer length).
  std::uint64_t bytes = 0;
  prp2_use prp2_kind = prp2_use::none;
};

/// Data entries that fit in one list page of `page_size` bytes.
[[nodiscard]] constexpr std::uint64_t prp_slots_per_page(std::uint64_t page_size) noexcept {
  return page_size / sizeof(std::uint64_t);
}

/// PRP entries (PRP1 included) for `bytes` starting `first_offset` bytes into a memory page.
/// Exact for any list try_build_prp accepts, since every inner boundary is page aligned.
[[nodiscard]] constexpr std::uint64_t prp_entry_count(std::uint64_t first_offset,
                                                      std::uint64_t bytes,
                                                      std::uint64_t page_size) noexcept {
  if (bytes == 0) return 0;
  const std::uint64_t off = first_offset & (page_size - 1);
  // ceil((off + bytes) / page_size) without forming off + bytes (it may wrap).
  const std::uint64_t first_room = page_size - off;
  if (bytes <= first_room) return 1;
  // The page size is a power of two: a shift, not a 64-bit divide, when a driver's page size
  // is a runtime value (CC.MPS). ceil(x / page_size) = ((x - 1) >> log2) + 1 for x >= 1.
  return 2 + ((bytes - first_room - 1) >> std::countr_zero(page_size));
}

/// PRP list pages needed for a transfer of `entries` PRP entries, in closed form: none for up
/// to two entries (PRP1 and PRP2 hold them); otherwise the list holds entries - 1, each page
/// but the last gives one slot to the chain pointer, so n pages hold n * (S - 1) + 1 entries
/// (S slots per page) and n = ceil((entries - 2) / (S - 1)).
[[nodiscard]] constexpr std::uint64_t prp_list_pages(std::uint64_t entries,
                                                     std::uint64_t page_size) noexcept {
  if (entries <= 2) return 0;
  return phyr::detail::ceil_div(entries - 2, prp_slots_per_page(page_size) - 1);
}

/// The worst case over every start offset for transfers up to `max_bytes`: the list pages a
/// descriptor pool must provide per command (e.g. for MDTS).
[[nodiscard]] constexpr std::uint64_t prp_list_pages_max(std::uint64_t max_bytes,
                                                         std::uint64_t page_size) noexcept {
  // The last dword-aligned offset in a page leaves the least room in PRP1's page; a shorter
  // transfer never needs more entries than a longer one.
  return prp_list_pages(prp_entry_count(page_size - 4, max_bytes, page_size), page_size);
}

namespace detail {

/// One list page carved out of descriptor memory.
struct prp_page_slot {
  std::size_t chunk = 0;
  std::size_t word = 0;     // index of the page's first slot in the chunk
  std::uint64_t slots = 0;  // slots available in this page
  std::uint64_t dma = 0;    // DMA address of the first slot
  bool full = false;        // page aligned and a whole page: may chain
};

/// Walks descriptor memory page by page, as the builder fills it.
template <class Bus>
class prp_page_cursor {
 public:
  constexpr prp_page_cursor(std::span<const descriptor_chunk<Bus>> chunks,
                            std::uint64_t page_size) noexcept
      : chunks_(chunks), page_size_(page_size) {}

  /// The next list page, or false when the memory is used up.
  [[nodiscard]] constexpr bool next(prp_page_slot& out) noexcept {
    while (chunk_ < chunks_.size() && word_ == chunks_[chunk_].words.size()) {
      ++chunk_;
      word_ = 0;
    }
    if (chunk_ == chunks_.size()) return false;
    const descriptor_chunk<Bus>& c = chunks_[chunk_];
    const std::uint64_t dma = c.dma.value() + word_ * 8;
    const std::uint64_t to_boundary = (page_size_ - (dma & (page_size_ - 1))) / 8;
    const std::uint64_t avail = c.words.size() - word_;
    const std::uint64_t slots = avail < to_boundary ? avail : to_boundary;
    out = prp_page_slot{chunk_, word_, slots, dma,
                        (dma & (page_size_ - 1)) == 0 && slots == page_size_ / 8};
    word_ += static_cast<std::size_t>(slots);
    return true;
  }

 private:
  std::span<const descriptor_chunk<Bus>> chunks_;
  std::uint64_t page_size_;
  std::size_t chunk_ = 0;
  std::size_t word_ = 0;
};

/// What the validation pass learned.
struct prp_plan {
  std::uint64_t first_addr = 0;
  std::uint64_t bytes = 0;
  std::uint64_t entries = 0;
};

/// Checks a source against the PRP rules without writing anything.
template <class L>
[[nodiscard]] constexpr result<prp_plan> plan_prp(const L& list, const prp_config& cfg) noexcept {
  const std::uint64_t mask = cfg.page_size - 1;
  prp_plan p;
  bool first = true;
  std::uint64_t prev_last = 0;  // last byte of the previous range
  errc err{};
  const bool done = for_each_range(list, [&](const auto& r) noexcept {
    const std::uint64_t a = r.addr().value();
    const std::uint64_t len = r.len();
    if (len == 0) {
      err = errc::invalid_argument;
      return false;
    }
    if (first) {
      if ((a & 3) != 0) {
        err = errc::misaligned;
        return false;
      }
      p.first_addr = a;
      first = false;
    } else {
      // A junction is fine when both sides are on page boundaries (one test: the usual case)
      // or the ranges are contiguous (a range ending at 2^64 has no contiguous successor).
      if ((((prev_last + 1) | a) & mask) != 0 &&
          !(prev_last != ~std::uint64_t{0} && prev_last + 1 == a)) {
        err = errc::page_gap;
        return false;
      }
    }
    if (len > ~std::uint64_t{0} - p.bytes) {
      err = errc::too_long;
      return false;
    }
    p.bytes += len;
    prev_last = a + (len - 1);
    return true;
  });
  if (!done) return err;
  if (first) return errc::invalid_argument;
  if (cfg.max_transfer != 0 && p.bytes > cfg.max_transfer) return errc::too_long;
  // Field by field into the result: the walk kept them on the stack (detail::keep_scalar).
  const std::uint64_t first_addr = phyr::detail::keep_scalar(p.first_addr);
  const std::uint64_t bytes = phyr::detail::keep_scalar(p.bytes);
  return prp_plan{first_addr, bytes, prp_entry_count(first_addr, bytes, cfg.page_size)};
}

/// Checks that descriptor memory holds a list of `list_entries` entries, starting in `pg` (the
/// first list page) and going on with the pages `cur` yields after it; returns the pages. The
/// cursor is a copy, so the writer can take the same pages from its own.
template <class Bus>
[[nodiscard]] constexpr result<std::uint64_t> plan_prp_pages(prp_page_cursor<Bus> cur,
                                                             prp_page_slot pg,
                                                             std::uint64_t list_entries) noexcept {
  std::uint64_t left = list_entries;
  std::uint64_t pages = 1;
  for (;;) {
    if (left <= pg.slots) return pages;
    if (!pg.full) return errc::exhausted;  // only a whole aligned page may chain
    left -= pg.slots - 1;
    if (!cur.next(pg)) return errc::exhausted;
    ++pages;
  }
}

/// Calls f(first_page, last_page) for the pages after PRP1, in order, run by run: each range's
/// pages, a page shared by two contiguous ranges once; stops early when f returns false. Only
/// valid on a source plan_prp accepted, whose plan gives `a0`, the first range's address
/// (PRP1). One pass over the ranges (for_each_range's segment walk), with no per-page call.
template <class L, class F>
PHYR_ALWAYS_INLINE constexpr void for_each_prp_page_run(const L& list, std::uint64_t page_size,
                                                       std::uint64_t a0, F&& f) noexcept {
  const std::uint64_t mask = page_size - 1;
  // A range's first page is named already when the range continues the previous one (starts at
  // `follow`) inside the page that one ended in (`named_page`); set up so that the first
  // range's first page, which PRP1 names, counts too. A range that seems to continue one ending
  // at 2^64 - 1 (follow wrapped to 0) starts in page 0, never the top page it ended in.
  std::uint64_t follow = a0;
  std::uint64_t named_page = a0 & ~mask;
  (void)for_each_range(list, [&](const auto& r) noexcept {
    const std::uint64_t a = r.addr().value();
    const std::uint64_t end = a + (r.len() - 1);
    std::uint64_t page = a & ~mask;
    const std::uint64_t stop = end & ~mask;
    // (page < stop when skipping the named page, so the step cannot wrap.)
    const bool named = a == follow && page == named_page;
    follow = end + 1;
    named_page = stop;
    if (named) {
      if (page == stop) return true;
      page += page_size;
    }
    return f(page, stop);
  });
}

// Writes the pages after PRP1 of a source plan_prp accepted (first range at `a0`) into
// consecutive slots from `slot` (the caller checked they fit one list page), in
// for_each_prp_page_run's order.
template <class L>
PHYR_ALWAYS_INLINE constexpr void write_prp_run_in_page(const L& list, std::uint64_t page_size,
                                                        std::uint64_t a0,
                                                        std::uint64_t* slot) noexcept {
  for_each_prp_page_run(list, page_size, a0, [&](std::uint64_t page, std::uint64_t stop) noexcept {
    for (;;) {  // compared before the step, so a last page at the top of DMA space cannot wrap
      *slot++ = to_le64(page);
      if (page == stop) return true;
      page += page_size;
    }
  });
}

// The answers without a list, built in the returned object from registers: built in a local
// and copied, GCC reads the local back with 16-byte loads over its 8-byte stores, which the CPU
// cannot forward (a stall on every 4 KiB I/O).
template <class Bus>
[[nodiscard]] PHYR_ALWAYS_INLINE constexpr result<prp_result<Bus>> prp_without_list(
    std::uint64_t prp1, std::uint64_t prp2, std::uint64_t entries, std::uint64_t bytes) noexcept {
  return result<prp_result<Bus>>{std::in_place,
                                 dma_addr<Bus>{prp1},
                                 dma_addr<Bus>{prp2},
                                 entries,
                                 std::uint64_t{0},
                                 std::uint64_t{0},
                                 bytes,
                                 entries == 1 ? prp2_use::none : prp2_use::data};
}

// What try_build_prp checks of a transfer it plans without the pass (one range, or a counted
// source with page-aligned gaps): the first byte's dword alignment, then MDTS.
[[nodiscard]] constexpr errc check_direct_plan(std::uint64_t first_addr, std::uint64_t bytes,
                                               const prp_config& cfg) noexcept {
  if ((first_addr & 3) != 0) return errc::misaligned;
  if (cfg.max_transfer != 0 && bytes > cfg.max_transfer) return errc::too_long;
  return errc{};
}

// Writes the list's data entries (the pages after PRP1's) into consecutive slots from `slot`,
// known to hold them: no chain. OneRange: the list is one range, whose pages after PRP1's are
// one run known from the plan, so no walk.
template <bool OneRange, class L>
PHYR_ALWAYS_INLINE constexpr void write_list_in_page(const L& list, std::uint64_t page_size,
                                                     const prp_plan& plan,
                                                     std::uint64_t* slot) noexcept {
  if constexpr (OneRange) {
    std::uint64_t p = (plan.first_addr & ~(page_size - 1)) + page_size;
    for (std::uint64_t k = 1; k < plan.entries; ++k, p += page_size) *slot++ = to_le64(p);
  } else {
    write_prp_run_in_page(list, page_size, plan.first_addr, slot);
  }
}

// The answer for a list in `pages` list pages from `list_dma` (chain words included in
// words_used), built in the returned object (see prp_without_list).
template <class Bus>
[[nodiscard]] PHYR_ALWAYS_INLINE constexpr result<prp_result<Bus>> prp_list_answer(
    const prp_plan& plan, std::uint64_t list_dma, std::uint64_t pages) noexcept {
  return result<prp_result<Bus>>{std::in_place,
                                 dma_addr<Bus>{plan.first_addr},
                                 dma_addr<Bus>{list_dma},
                                 plan.entries,
                                 pages,
                                 (plan.entries - 1) + (pages - 1),  // data entries + chain words
                                 plan.bytes,
                                 prp2_use::list};
}

// write_prp_list past its one-chunk case: descriptor memory in several chunks, or a list that
// does not fit the one chunk's first list page. Out of line, so the usual caller's inlined
// path carries none of the page cursor and chaining writer.
// The plan comes as three words (see build_prp_planned).
template <class Bus, bool OneRange, class L>
[[nodiscard]] PHYR_NOINLINE constexpr result<prp_result<Bus>> write_prp_list_paged(
    const L& list, const prp_config& cfg, std::span<const descriptor_chunk<Bus>> mem,
    std::uint64_t first_addr, std::uint64_t bytes, std::uint64_t entries) noexcept {
  const prp_plan plan{first_addr, bytes, entries};
  const std::uint64_t list_entries = plan.entries - 1;
  const std::uint64_t mask = cfg.page_size - 1;
  if (auto c = check_chunks(mem, cfg.page_size); !c) return c.error();
  // The first list page is found once, for the check and for the writer.
  prp_page_cursor<Bus> cur(mem, cfg.page_size);
  prp_page_slot pg;
  if (!cur.next(pg)) return errc::exhausted;
  // The list fits the first list page: no chain, so the pages go straight into consecutive
  // slots, with none of the chaining writer's bookkeeping.
  if (list_entries <= pg.slots) {
    write_list_in_page<OneRange>(list, cfg.page_size, plan, mem[pg.chunk].words.data() + pg.word);
    return prp_list_answer<Bus>(plan, pg.dma, 1);
  }
  auto pages = plan_prp_pages(cur, pg, list_entries);
  if (!pages) return pages.error();

  // Everything checked: write. The state lives in locals (a store through `slot` cannot alias
  // them), and a run is written page by page with no check per entry.
  const std::uint64_t list_dma = pg.dma;
  const unsigned shift = static_cast<unsigned>(std::countr_zero(cfg.page_size));
  std::uint64_t left = list_entries;  // data entries not yet written
  std::uint64_t* slot = mem[pg.chunk].words.data() + pg.word;
  // Data slots left in this page: all of them in the last page, else all but the chain slot.
  std::uint64_t room = left <= pg.slots ? left : pg.slots - 1;
  auto write = [&](std::uint64_t p, std::uint64_t stop) {
    if (p == stop && room != 0) {  // one page with a free slot: fragmented memory's every step
      *slot++ = to_le64(p);
      --left;
      --room;
      return true;
    }
    std::uint64_t todo = ((stop - p) >> shift) + 1;
    for (;;) {
      if (room == 0) {  // this page's data slots are full and entries remain: chain
        prp_page_slot next;
        (void)cur.next(next);
        *slot = to_le64(next.dma);
        slot = mem[next.chunk].words.data() + next.word;
        room = left <= next.slots ? left : next.slots - 1;
      }
      const std::uint64_t n = todo < room ? todo : room;
      for (std::uint64_t k = 0; k < n; ++k, p += cfg.page_size) slot[k] = to_le64(p);
      slot += n;
      left -= n;
      room -= n;
      todo -= n;
      if (todo == 0) return true;
    }
  };
  if constexpr (OneRange) {
    (void)write((plan.first_addr & ~mask) + cfg.page_size,
                (plan.first_addr + (plan.bytes - 1)) & ~mask);
  } else {
    for_each_prp_page_run(list, cfg.page_size, plan.first_addr, write);
  }
  return prp_list_answer<Bus>(plan, list_dma, *pages);
}

// The list case of try_build_prp: `plan` accepted, more than two entries.
template <class Bus, bool OneRange, class L>
[[nodiscard]] PHYR_ALWAYS_INLINE constexpr result<prp_result<Bus>> write_prp_list(
    const L& list, const prp_config& cfg, std::span<const descriptor_chunk<Bus>> mem,
    prp_plan plan) noexcept {
  // The usual caller: one piece of descriptor memory (the command's own list page) that holds
  // the whole list (up to 512 entries in a 4 KiB page: every I/O up to 2 MiB). check_chunks'
  // tests for that one chunk, then the entries, with no page cursor and no chain.
  if (mem.size() == 1) {
    const std::uint64_t a = mem[0].dma.value();
    const std::uint64_t words = mem[0].words.size();
    if (words == 0 || (a & 7) != 0 || words > (~a >> 3)) return errc::invalid_argument;
    const std::uint64_t to_boundary = (cfg.page_size - (a & (cfg.page_size - 1))) / 8;
    if (plan.entries - 1 <= (words < to_boundary ? words : to_boundary)) {
      write_list_in_page<OneRange>(list, cfg.page_size, plan, mem[0].words.data());
      return prp_list_answer<Bus>(plan, a, 1);
    }
  }
  return write_prp_list_paged<Bus, OneRange>(list, cfg, mem, plan.first_addr, plan.bytes,
                                             plan.entries);
}

// try_build_prp's answer for the plan of a list of several ranges (or of one that does not
// know its size).
template <class Bus, class L>
[[nodiscard]] PHYR_ALWAYS_INLINE constexpr result<prp_result<Bus>> build_prp_answer(
    const L& list, const prp_config& cfg, std::span<const descriptor_chunk<Bus>> mem,
    prp_plan plan) noexcept {
  if (plan.entries == 1) return prp_without_list<Bus>(plan.first_addr, 0, 1, plan.bytes);
  if (plan.entries == 2) {
    // The second page: the one after PRP1's, or the next range's first.
    std::uint64_t prp2 = 0;
    for_each_prp_page_run(list, cfg.page_size, plan.first_addr,
                          [&](std::uint64_t pg, std::uint64_t) {
                            prp2 = pg;
                            return false;  // the first page after PRP1's is all PRP2 needs
                          });
    return prp_without_list<Bus>(plan.first_addr, prp2, 2, plan.bytes);
  }
  return write_prp_list<Bus, false>(list, cfg, mem, plan);
}

// try_build_prp for such a list: the pass that plans, then the answer.
template <class Bus, class L>
[[nodiscard]] PHYR_NOINLINE constexpr result<prp_result<Bus>> build_prp_walk(
    const L& list, const prp_config& cfg, std::span<const descriptor_chunk<Bus>> mem) noexcept {
  auto p = plan_prp(list, cfg);
  if (!p) return p.error();
  return build_prp_answer<Bus>(list, cfg, mem, *p);
}

// The same for a plan read off a counted source's counters (try_build_prp). The plan comes
// as three words, not as a prp_plan by value: a 24-byte argument goes through the stack, where
// GCC stored it 16 + 8 bytes and read it back 8 + 16, a load that spans two pending stores
// and waits for both (a stall on every I/O with a PRP list). The entries are counted by the
// inlined caller, where a driver's fixed prp_config makes the page size a constant (no
// divide); out of line it is a variable, and the count would be a 64-bit divide.
template <class Bus, class L>
[[nodiscard]] PHYR_NOINLINE constexpr result<prp_result<Bus>> build_prp_planned(
    const L& list, const prp_config& cfg, std::span<const descriptor_chunk<Bus>> mem,
    std::uint64_t first_addr, std::uint64_t bytes, std::uint64_t entries) noexcept {
  return build_prp_answer<Bus>(list, cfg, mem, prp_plan{first_addr, bytes, entries});
}

// The list case for one range. Out of line (as is build_prp_walk), so try_build_prp's callers
// inline the short answers (every 4 KiB I/O) without the list case's setup. The plan as for
// build_prp_planned.
template <class Bus, class L>
[[nodiscard]] PHYR_NOINLINE constexpr result<prp_result<Bus>> build_prp_list(
    const L& list, const prp_config& cfg, std::span<const descriptor_chunk<Bus>> mem,
    std::uint64_t first_addr, std::uint64_t bytes, std::uint64_t entries) noexcept {
  return write_prp_list<Bus, true>(list, cfg, mem, prp_plan{first_addr, bytes, entries});
}

}  // namespace detail

/// Builds PRP1/PRP2 and, when needed, PRP list pages in `mem` for the DMA list `list`.
/// See the file comment for the rules and errors. Strong guarantee: on failure nothing is
/// written.
template <class Bus, range_source L>
requires std::same_as<source_space_t<L>, dma_space<Bus>>
[[nodiscard]] PHYR_ALWAYS_INLINE constexpr result<prp_result<Bus>> try_build_prp(
    const L& list, const prp_config& cfg, std::span<const descriptor_chunk<Bus>> mem) noexcept {
  if (!valid_page_size(cfg.page_size)) return errc::invalid_argument;
  // One range (every 4 KiB I/O, any physically contiguous one): the plan follows from its
  // address and length, with plan_prp's checks in its order, and no walk; the answers for one
  // or two entries are inlined into the caller.
  if constexpr (requires {
                  { list.size() } -> std::convertible_to<std::size_t>;
                }) {
    if (list.size() == 1) {
      const auto r = *list.begin();
      const std::uint64_t a = r.addr().value();
      const std::uint64_t bytes = r.len();
      if (bytes == 0) return errc::invalid_argument;
      if (const errc e = detail::check_direct_plan(a, bytes, cfg); e != errc{}) return e;
      const std::uint64_t entries = prp_entry_count(a, bytes, cfg.page_size);
      if (entries == 1) return detail::prp_without_list<Bus>(a, 0, 1, bytes);
      if (entries == 2) {
        return detail::prp_without_list<Bus>(a, (a & ~(cfg.page_size - 1)) + cfg.page_size, 2,
                                             bytes);
      }
      return detail::build_prp_list<Bus>(list, cfg, mem, a, bytes, entries);
    }
  }
  // Several ranges of a counted source whose gap summary puts every gap on a page boundary
  // (a list built from page arrays): nothing the pass checks can fail but the first range's
  // dword alignment and the length, so the plan is read off the counters.
  if constexpr (enable_counted_source<L>) {
    if (list.size() > 1 && (list.gap_bits() & (cfg.page_size - 1)) == 0) {
      const std::uint64_t a = (*list.begin()).addr().value();
      const std::uint64_t bytes = list.total_bytes();
      if (const errc e = detail::check_direct_plan(a, bytes, cfg); e != errc{}) return e;
      return detail::build_prp_planned<Bus>(list, cfg, mem, a, bytes,
                                            prp_entry_count(a, bytes, cfg.page_size));
    }
  }
  return detail::build_prp_walk<Bus>(list, cfg, mem);
}

/// As above, with the limits given as a page size only (no MDTS check).
template <class Bus, range_source L>
requires std::same_as<source_space_t<L>, dma_space<Bus>>
[[nodiscard]] PHYR_ALWAYS_INLINE constexpr result<prp_result<Bus>> try_build_prp(
    const L& list, std::uint64_t page_size, std::span<std::uint64_t> words,
    dma_addr<Bus> words_dma) noexcept {
  const detail::single_chunk<Bus> one{{words, words_dma}};
  return try_build_prp<Bus>(list, prp_config{.page_size = page_size}, one.chunks());
}

/// One contiguous piece of descriptor memory, with full limits.
template <class Bus, range_source L>
requires std::same_as<source_space_t<L>, dma_space<Bus>>
[[nodiscard]] PHYR_ALWAYS_INLINE constexpr result<prp_result<Bus>> try_build_prp(
    const L& list, const prp_config& cfg, std::span<std::uint64_t> words,
    dma_addr<Bus> words_dma) noexcept {
  const detail::single_chunk<Bus> one{{words, words_dma}};
  return try_build_prp<Bus>(list, cfg, one.chunks());
}

}  // namespace phyr::inline v0::nvme
