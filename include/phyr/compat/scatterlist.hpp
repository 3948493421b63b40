/// A faithful user-space model of the Linux scatterlist: the same 32-byte entry, the same
/// chained tables of 128 entries, the same builder and walk semantics. It exists for two jobs:
/// feeding legacy `map_sg`-style code (see `map/sg_bridge_mapper.hpp`) and being the honest
/// baseline that phyr's benchmarks are measured against, so it does the kernel's work, no more
/// and no less.
///
///   using namespace phyr::compat;
///   std::vector<page*> pages = ...;                       // pfn_to_page(pfn) for each page
///   sg_table t;
///   default_allocator a;
///   if (auto r = sg_alloc_table_from_pages_segment(t, pages, 0, n * 4096, ~0u, a); !r)
///     return r.error();                                   // invalid_argument, out_of_memory
///   int n = dma_direct_map_sg(t.sgl, static_cast<int>(t.nents), dma_mask);   // 0 = failed
///   for_each_sg(t.sgl, static_cast<unsigned>(n), [](scatterlist& sg, unsigned) {
///     program(sg_dma_address(&sg), sg_dma_len(&sg));
///   });
///   sg_free_table(t, a);
///
/// The model of `struct page`: the kernel's sparse vmemmap, where the page of frame `pfn` sits at
/// `vmemmap + pfn` and `page_to_phys` is pointer arithmetic. Here `page*` is an opaque,
/// never-dereferenced pointer into a virtual vmemmap at `vmemmap_base` (x86-64's 5-level
/// VMEMMAP_START) with 64-byte pages, so a `page_link` holds exactly the value the kernel would and
/// every conversion costs what it costs there. Frames up to 2^40 (52-bit physical addresses) fit.
///
/// Differences from the kernel, all on bad input: errors are `result` values instead of negative
/// errnos, and inputs the kernel would WARN on or silently mis-handle (no pages, size not covered
/// by the pages, offset past the first page) are rejected with a clear `errc`. Allocation goes
/// through a phyr `segment_allocator`; a failed build frees everything it took.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>

#include <phyr/core/page.hpp>
#include <phyr/config.hpp>
#include <phyr/container/range_source.hpp>
#include <phyr/core/allocator.hpp>
#include <phyr/core/error.hpp>
#include <phyr/core/range.hpp>

namespace phyr::inline v0::compat {

static_assert(sizeof(void*) == 8, "the scatterlist model describes a 64-bit kernel");

using ::phyr::page_shift;  // the kernel's PAGE_SHIFT on x86-64 (core/page.hpp)
using ::phyr::page_size;

/// Opaque stand-in for `struct page`; only pointers to it exist, never objects.
struct page;

/// Where the virtual vmemmap starts and how big a `struct page` is (x86-64, 5-level paging).
inline constexpr std::uintptr_t vmemmap_base = 0xffd4000000000000ull;
inline constexpr std::size_t struct_page_size = 64;
/// The highest frame the vmemmap model can express (52-bit physical addresses).
inline constexpr std::uint64_t max_pfn = (std::uint64_t{1} << 40) - 1;

[[nodiscard]] inline page* pfn_to_page(std::uint64_t pfn) noexcept {
  PHYR_ASSERT(pfn <= max_pfn, "pfn beyond the vmemmap model");
  return reinterpret_cast<page*>(vmemmap_base + pfn * struct_page_size);
}
[[nodiscard]] inline std::uint64_t page_to_pfn(const page* p) noexcept {
  return (reinterpret_cast<std::uintptr_t>(p) - vmemmap_base) / struct_page_size;
}
[[nodiscard]] inline std::uint64_t page_to_phys(const page* p) noexcept {
  return page_to_pfn(p) << page_shift;
}

/// One entry, laid out as the kernel's with CONFIG_NEED_SG_DMA_LENGTH and the 64-bit padding
/// used for dma_flags (CONFIG_NEED_SG_DMA_FLAGS).
struct scatterlist {
  std::uintptr_t page_link;   ///< page pointer | chain/end bits, or next array | chain bit
  unsigned int offset;        ///< byte offset into the page
  unsigned int length;        ///< bytes
  std::uint64_t dma_address;  ///< set by map_sg
  unsigned int dma_length;    ///< set by map_sg (may differ from length when an IOMMU merges)
  unsigned int dma_flags;     ///< sg_dma_bus_address etc.
};
static_assert(sizeof(scatterlist) == 32);

/// The table header: first entry, entries mapped, entries built.
struct sg_table {
  scatterlist* sgl = nullptr;
  unsigned int nents = 0;
  unsigned int orig_nents = 0;
};

inline constexpr std::uintptr_t sg_chain_bit = 0x01;
inline constexpr std::uintptr_t sg_end_bit = 0x02;
inline constexpr std::uintptr_t sg_page_link_mask = sg_chain_bit | sg_end_bit;
/// Entries per allocation: one 4 KiB page of entries; the last slot of a full, non-final array
/// is the chain entry, so such an array holds 127 data entries.
inline constexpr unsigned int sg_max_single_alloc =
    static_cast<unsigned int>(page_size / sizeof(scatterlist));
static_assert(sg_max_single_alloc == 128);

/// DMA flag bits (kernel values).
inline constexpr unsigned int sg_dma_bus_address_flag = 1u << 0;
inline constexpr unsigned int sg_dma_swiotlb_flag = 1u << 1;

[[nodiscard]] inline bool sg_is_chain(const scatterlist* sg) noexcept {
  return (sg->page_link & sg_chain_bit) != 0;
}
[[nodiscard]] inline bool sg_is_last(const scatterlist* sg) noexcept {
  return (sg->page_link & sg_end_bit) != 0;
}
[[nodiscard]] inline scatterlist* sg_chain_ptr(const scatterlist* sg) noexcept {
  return reinterpret_cast<scatterlist*>(sg->page_link & ~sg_page_link_mask);
}
/// The entry after `sg`, following a chain link; null after the end-marked entry.
[[nodiscard]] inline scatterlist* sg_next(scatterlist* sg) noexcept {
  if (sg_is_last(sg)) return nullptr;
  ++sg;
  if (PHYR_UNLIKELY(sg_is_chain(sg))) sg = sg_chain_ptr(sg);
  return sg;
}
[[nodiscard]] inline page* sg_page(const scatterlist* sg) noexcept {
  return reinterpret_cast<page*>(sg->page_link & ~sg_page_link_mask);
}
[[nodiscard]] inline std::uint64_t sg_phys(const scatterlist* sg) noexcept {
  return page_to_phys(sg_page(sg)) + sg->offset;
}
[[nodiscard]] inline std::uint64_t sg_dma_address(const scatterlist* sg) noexcept {
  return sg->dma_address;
}
[[nodiscard]] inline unsigned int sg_dma_len(const scatterlist* sg) noexcept {
  return sg->dma_length;
}

/// Points `sg` at `p`, keeping its chain/end bits.
inline void sg_assign_page(scatterlist* sg, page* p) noexcept {
  const auto v = reinterpret_cast<std::uintptr_t>(p);
  PHYR_ASSERT((v & sg_page_link_mask) == 0, "page pointer must be 4-byte aligned");
  sg->page_link = (sg->page_link & sg_page_link_mask) | v;
}
inline void sg_set_page(scatterlist* sg, page* p, unsigned int len, unsigned int offset) noexcept {
  sg_assign_page(sg, p);
  sg->offset = offset;
  sg->length = len;
}
inline void sg_mark_end(scatterlist* sg) noexcept {
  sg->page_link = (sg->page_link | sg_end_bit) & ~sg_chain_bit;
}
inline void sg_unmark_end(scatterlist* sg) noexcept { sg->page_link &= ~sg_end_bit; }

/// Turns the last slot of `prv` (an array of `prv_nents`) into a link to `next`.
inline void sg_chain(scatterlist* prv, unsigned int prv_nents, scatterlist* next) noexcept {
  scatterlist* link = &prv[prv_nents - 1];
  link->offset = 0;
  link->length = 0;
  link->page_link = (reinterpret_cast<std::uintptr_t>(next) | sg_chain_bit) & ~sg_end_bit;
}

/// Zeroes `n` entries and end-marks the last.
inline void sg_init_table(scatterlist* sgl, unsigned int n) noexcept {
  std::memset(static_cast<void*>(sgl), 0, sizeof(scatterlist) * n);
  sg_mark_end(&sgl[n - 1]);
}

/// Calls `f(scatterlist&, unsigned index)` for the first `nents` entries (the kernel's
/// for_each_sg: the count bounds the walk, sg_next follows chains).
template <class F>
inline void for_each_sg(scatterlist* sgl, unsigned int nents, F&& f) noexcept {
  scatterlist* sg = sgl;
  for (unsigned int i = 0; i < nents; ++i, sg = sg_next(sg)) f(*sg, i);
}

/// Entries reachable from `sg` (walks the list).
[[nodiscard]] inline unsigned int sg_nents(scatterlist* sg) noexcept {
  unsigned int n = 0;
  for (; sg != nullptr; sg = sg_next(sg)) ++n;
  return n;
}

namespace detail {

template <segment_allocator A>
[[nodiscard]] inline scatterlist* sg_alloc_array(A& a, unsigned int n) noexcept {
  return static_cast<scatterlist*>(a.allocate(sizeof(scatterlist) * n, alignof(scatterlist)));
}
template <segment_allocator A>
inline void sg_free_array(A& a, scatterlist* p, unsigned int n) noexcept {
  a.deallocate(p, sizeof(scatterlist) * n, alignof(scatterlist));
}

/// Frees arrays holding `entries` entries (chain slots not counted) starting at `sgl`: the
/// array sizes follow from the count alone, as in the kernel's __sg_free_table.
template <segment_allocator A>
inline void sg_free_chain(A& a, scatterlist* sgl, unsigned int entries) noexcept {
  while (entries != 0 && sgl != nullptr) {
    if (entries > sg_max_single_alloc) {
      scatterlist* next = sg_chain_ptr(&sgl[sg_max_single_alloc - 1]);
      sg_free_array(a, sgl, sg_max_single_alloc);
      entries -= sg_max_single_alloc - 1;
      sgl = next;
    } else {
      sg_free_array(a, sgl, entries);
      entries = 0;
    }
  }
}

}  // namespace detail

/// Releases every array of `t` and resets it. A table that owns nothing is left alone.
template <segment_allocator A>
inline void sg_free_table(sg_table& t, A& a) noexcept {
  if (t.sgl != nullptr) detail::sg_free_chain(a, t.sgl, t.orig_nents);
  t = sg_table{};
}

/// Allocates a table of `nents` zeroed entries, chained in arrays of `sg_max_single_alloc`,
/// with the last entry end-marked (the kernel's sg_alloc_table). `nents == 0` is
/// `invalid_argument`; an allocator failure is `out_of_memory` with nothing kept.
template <segment_allocator A>
[[nodiscard]] inline result<void> sg_alloc_table(sg_table& t, unsigned int nents, A& a) noexcept {
  t = sg_table{};
  if (nents == 0) return errc::invalid_argument;
  unsigned int left = nents;
  scatterlist* prv = nullptr;
  do {
    unsigned int alloc_size = left;
    unsigned int used = left;
    if (alloc_size > sg_max_single_alloc) {
      alloc_size = sg_max_single_alloc;
      used = alloc_size - 1;
    }
    scatterlist* sg = detail::sg_alloc_array(a, alloc_size);
    if (PHYR_UNLIKELY(sg == nullptr)) {
      // The previous array's last slot is an entry, not yet a link: count it so the free
      // walk sizes that array correctly.
      if (prv != nullptr) ++t.orig_nents;
      sg_free_table(t, a);
      return errc::out_of_memory;
    }
    left -= used;
    sg_init_table(sg, alloc_size);
    t.orig_nents += used;
    t.nents = t.orig_nents;
    if (prv != nullptr) {
      sg_chain(prv, sg_max_single_alloc, sg);
    } else {
      t.sgl = sg;
    }
    if (left == 0) sg_mark_end(&sg[used - 1]);
    prv = sg;
  } while (left != 0);
  return {};
}

namespace detail {

/// The kernel's get_next_sg (Linux 6.1, lib/scatterlist.c) while a table is filled in order:
/// the slot after `cur`, unless that slot ends its array (end-marked by sg_init_table) and more
/// than one entry is still `needed`; then a new array of min(needed, 128) entries is allocated,
/// zeroed and end-marked, and chained from that slot. `cur == nullptr` allocates the first
/// array. `slots` counts what sg_free_chain must free, as sg_append_table::total_nents does.
/// Null when the allocator fails (the table is then still freeable with `slots`).
template <segment_allocator A>
[[nodiscard]] inline scatterlist* sg_next_or_grow(sg_table& t, unsigned int& slots,
                                                  scatterlist* cur, std::uint64_t needed,
                                                  A& a) noexcept {
  scatterlist* next = nullptr;
  if (cur != nullptr) {
    next = sg_next(cur);
    if (!sg_is_last(next) || needed == 1) return next;
  }
  const auto alloc_size =
      static_cast<unsigned int>(needed < sg_max_single_alloc ? needed : sg_max_single_alloc);
  scatterlist* fresh = sg_alloc_array(a, alloc_size);
  if (PHYR_UNLIKELY(fresh == nullptr)) return nullptr;
  sg_init_table(fresh, alloc_size);
  if (cur != nullptr) {
    slots += alloc_size - 1;
    next->offset = 0;  // __sg_chain: the end slot becomes the link
    next->length = 0;
    next->page_link = (reinterpret_cast<std::uintptr_t>(fresh) | sg_chain_bit) & ~sg_end_bit;
  } else {
    t.sgl = fresh;
    slots = alloc_size;
  }
  return fresh;
}

}  // namespace detail

/// The kernel's sg_alloc_table_from_pages_segment as Linux 6.1 implements it (through
/// sg_alloc_append_table_from_pages with no previous table and left_pages 0): one entry per run
/// of physically consecutive pages, a run cut whenever it would pass `max_segment` (aligned down
/// to whole pages), the first entry starting `offset` bytes into its page and the entries summing
/// to `size` bytes. Two passes over `pages`: the first counts the entries; the second fills them,
/// allocating each array of up to 128 entries (get_next_sg) when the fill reaches it, so an array
/// is zeroed just before it is written. (Kernels before 5.15 allocated and zeroed the whole table
/// first; the entries, arrays, chaining and end mark are the same either way.)
///
/// Errors: `max_segment` below one page, no pages, `offset` not inside the first page, or
/// `size` zero -> `invalid_argument`; pages that do not exactly cover offset + size ->
/// `out_of_range`; allocation -> `out_of_memory`. On error `t` is empty and nothing is held.
template <segment_allocator A>
[[nodiscard]] inline result<void> sg_alloc_table_from_pages_segment(
    sg_table& t, std::span<page* const> pages, unsigned int offset, std::uint64_t size,
    unsigned int max_segment, A& a) noexcept {
  t = sg_table{};
  max_segment &= ~static_cast<unsigned int>(page_size - 1);
  if (max_segment < page_size || pages.empty() || offset >= page_size || size == 0)
    return errc::invalid_argument;
  if (pages.size() > std::numeric_limits<unsigned int>::max()) return errc::too_long;
  const auto n_pages = static_cast<unsigned int>(pages.size());
  if (size > std::uint64_t{n_pages} * page_size - offset ||
      ((offset + size + page_size - 1) >> page_shift) != n_pages)
    return errc::out_of_range;

  const auto mergeable = [](const page* next, const page* prev) noexcept {
    return page_to_pfn(next) == page_to_pfn(prev) + 1;
  };

  unsigned int chunks = 1;
  std::uint64_t seg_len = 0;
  for (unsigned int i = 1; i < n_pages; ++i) {
    seg_len += page_size;
    if (seg_len >= max_segment || !mergeable(pages[i], pages[i - 1])) {
      ++chunks;
      seg_len = 0;
    }
  }

  unsigned int slots = 0;
  scatterlist* s = nullptr;
  unsigned int cur = 0;
  std::uint64_t left = size;
  for (unsigned int i = 0; i < chunks; ++i) {
    unsigned int j = cur + 1;
    seg_len = 0;
    for (; j < n_pages; ++j) {
      seg_len += page_size;
      if (seg_len >= max_segment || !mergeable(pages[j], pages[j - 1])) break;
    }
    s = detail::sg_next_or_grow(t, slots, s, chunks - i, a);
    if (PHYR_UNLIKELY(s == nullptr)) {
      t.orig_nents = slots;  // sg_free_append_table frees by total_nents
      sg_free_table(t, a);
      return errc::out_of_memory;
    }
    const std::uint64_t chunk = (std::uint64_t{j - cur} << page_shift) - offset;
    const std::uint64_t len = chunk < left ? chunk : left;
    sg_set_page(s, pages[cur], static_cast<unsigned int>(len), offset);
    left -= len;
    offset = 0;
    cur = j;
  }
  t.nents = chunks;
  t.orig_nents = chunks;
  sg_mark_end(s);
  return {};
}

/// Builds a table from physical ranges (any forward range of `phys_range`, e.g. a
/// `range_list_view<phys_range>`), one entry per range, cutting a range longer than
/// `max_segment` bytes into `max_segment`-sized pieces. Each entry's page is the frame of its
/// first byte and its offset the byte's offset in that frame. `count` is the number of ranges
/// (the builder's first pass needs only the lengths).
/// Errors: `max_segment` zero, no ranges -> `invalid_argument`; a range above the vmemmap model
/// (52-bit) -> `out_of_range`; more than 2^32 - 1 entries -> `too_long`; `out_of_memory`.
template <range_source Ranges, segment_allocator A>
  requires std::same_as<source_range_t<Ranges>, phys_range>
[[nodiscard]] inline result<void> sg_alloc_table_from_ranges(sg_table& t, const Ranges& ranges,
                                                             unsigned int max_segment,
                                                             A& a) noexcept {
  t = sg_table{};
  if (max_segment == 0) return errc::invalid_argument;
  std::uint64_t entries = 0;
  for (const phys_range r : ranges) {
    if (r.last().value() >> page_shift > max_pfn) return errc::out_of_range;
    entries += (r.len() + max_segment - 1) / max_segment;
    if (entries > std::numeric_limits<unsigned int>::max()) return errc::too_long;
  }
  if (entries == 0) return errc::invalid_argument;
  if (auto r = sg_alloc_table(t, static_cast<unsigned int>(entries), a); !r) return r;

  scatterlist* s = t.sgl;
  for (const phys_range r : ranges) {
    std::uint64_t addr = r.addr().value();
    std::uint64_t left = r.len();
    while (left != 0) {
      const std::uint64_t piece = left < max_segment ? left : max_segment;
      sg_set_page(s, pfn_to_page(addr >> page_shift), static_cast<unsigned int>(piece),
                  static_cast<unsigned int>(addr & (page_size - 1)));
      addr += piece;
      left -= piece;
      s = sg_next(s);
    }
  }
  return {};
}

/// One window of a bus offset table (the kernel's struct bus_dma_region); a table ends at the
/// first entry with `size == 0`.
struct bus_dma_region {
  std::uint64_t cpu_start;
  std::uint64_t dma_start;
  std::uint64_t size;
};

/// The kernel's "no translation" marker.
inline constexpr std::uint64_t dma_mapping_error = ~std::uint64_t{0};

/// translate_phys_to_dma: the window holding `phys`, else `dma_mapping_error`. A null table is
/// the identity (no dma_range_map).
[[nodiscard]] inline std::uint64_t phys_to_dma(const bus_dma_region* map,
                                               std::uint64_t phys) noexcept {
  if (map == nullptr) return phys;
  for (const bus_dma_region* m = map; m->size != 0; ++m) {
    const std::uint64_t off = phys - m->cpu_start;
    if (phys >= m->cpu_start && off < m->size) return m->dma_start + off;
  }
  return dma_mapping_error;
}

/// The kernel's dma_direct_map_sg for a coherent device without swiotlb: each entry's DMA
/// address is its physical address translated through `map` (null = identity), checked against
/// `dma_mask` as dma_capable does (last byte <= mask). Returns `nents`, or 0 when an entry cannot
/// be reached (nothing to undo: direct mapping holds no resources).
[[nodiscard]] inline int dma_direct_map_sg(scatterlist* sgl, int nents, std::uint64_t dma_mask,
                                           const bus_dma_region* map = nullptr) noexcept {
  scatterlist* sg = sgl;
  for (int i = 0; i < nents; ++i, sg = sg_next(sg)) {
    const std::uint64_t dma = phys_to_dma(map, sg_phys(sg));
    if (PHYR_UNLIKELY(dma == dma_mapping_error || sg->length == 0 || dma + (sg->length - 1) < dma ||
                      dma + (sg->length - 1) > dma_mask))
      return 0;
    sg->dma_address = dma;
    sg->dma_length = sg->length;
  }
  return nents;
}

/// The matching unmap: direct mapping holds nothing, so this only exists for symmetry (the
/// kernel's version syncs caches on non-coherent devices).
inline void dma_direct_unmap_sg(scatterlist*, int) noexcept {}

/// Move-only owner of an `sg_table` and the allocator its arrays came from.
template <segment_allocator A = default_allocator>
class unique_sg_table {
 public:
  unique_sg_table() noexcept = default;
  explicit unique_sg_table(A a) noexcept : a_(a) {}
  unique_sg_table(unique_sg_table&& o) noexcept : t_(o.t_), a_(o.a_) { o.t_ = sg_table{}; }
  unique_sg_table& operator=(unique_sg_table&& o) noexcept {
    if (this != &o) {
      reset();
      t_ = o.t_;
      a_ = o.a_;
      o.t_ = sg_table{};
    }
    return *this;
  }
  unique_sg_table(const unique_sg_table&) = delete;
  unique_sg_table& operator=(const unique_sg_table&) = delete;
  ~unique_sg_table() { reset(); }

  [[nodiscard]] sg_table& table() noexcept { return t_; }
  [[nodiscard]] const sg_table& table() const noexcept { return t_; }
  [[nodiscard]] A& allocator() noexcept { return a_; }
  void reset() noexcept { sg_free_table(t_, a_); }

 private:
  sg_table t_{};
  A a_{};
};

}  // namespace phyr::compat
