/// `vfio_mapper<Bus>`: the `virt_dma_mapper` that maps process memory for one device through a
/// VFIO type1v2 container, at IOVAs phyr allocates, and `vfio_mapping<Bus>`, the RAII mapping.
///
///   struct nvme0 {};
///   phyr::vfio_mapper<nvme0> m{container, {.dma_bits = 64}};
///   phyr::range_list<phyr::virt_range> bufs;
///   phyr::must(bufs.try_append(*phyr::virt_range_of(buf, len)));
///   auto mp = m.try_map(bufs, phyr::dma_direction::from_device);   // device may only write
///   if (!mp) return mp.error();        // sys_error: errc, errno of the failing MAP_DMA, name
///   for (phyr::dma_range<nvme0> r : *mp) program_prp(r.addr().value(), r.len());
///   // ~vfio_mapping (or m.try_unmap(std::move(*mp))) issues one VFIO_IOMMU_UNMAP_DMA per chunk
///
/// IOVA space: at construction the mapper claims from the container one window: the largest
/// part of the reported usable windows (VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE: the MSI window
/// and other reserved regions are already cut out) inside [max(min_iova, one IOMMU page), the
/// device's DMA mask], rounded inward to the IOMMU's smallest page, not claimed by another
/// mapper of the container (at most `limits.iova_bytes` of it), and allocates in it with
/// phyr's `iova_allocator` (size-aligned blocks, per-thread cache). The claim is given back
/// when the mapper goes. Disjoint claims are what keep two mappers of one container (one IOMMU
/// context) from handing out the same IOVA. One window per mapper is a simplification: on the
/// usual x86 layout (below and above the MSI window) a lone 64-bit device leaves the lower
/// 4 GiB unused, a 32-bit one the 17 MiB above the MSI window.
///
/// Layout of a list (the iommu_mapper's, at IOMMU-page granularity): the list gets ONE IOVA
/// block. Consecutive ranges whose boundary is page-aligned on both sides, or that are
/// virtually adjacent, share a group at consecutive IOVAs: one DMA entry per group (a
/// virtually contiguous buffer, or a page-aligned iovec, is one DMA range). An unaligned
/// boundary starts a new group on the next IOVA page. Each run of virtually adjacent ranges is
/// one MAP_DMA chunk covering its whole pages; a group of 2 MiB or more starts at an IOVA
/// congruent to its virtual address modulo 2 MiB (1 GiB for 1 GiB groups) when the IOMMU has
/// that page size, so the kernel can use huge IOMMU pages for huge-page-backed memory.
///
/// Permissions follow the direction: to_device -> VFIO_DMA_MAP_FLAG_READ only (the device may
/// only read), from_device -> WRITE only, bidirectional -> both.
///
/// Failure: validation, IOVA allocation and every allocation (chunk table, DMA list) happen
/// before the first MAP_DMA; a MAP_DMA that fails unmaps the chunks this call mapped, gives
/// the IOVA block back and returns the MAP_DMA's errno. If one of those rollback unmaps fails
/// too (the kernel refusing to unmap what it just mapped), the IOVA block is quarantined
/// (never reused) and counted in `stats().quarantined_blocks`.
///
/// Lifetime (RAII): a `vfio_mapping` unmaps exactly the chunks it mapped, exactly once: on
/// `m.try_unmap(std::move(mp))` (which reports the first UNMAP_DMA error with its errno) or on
/// destruction (errors counted in `stats().unmap_failures`). It points to its mapper, because
/// the IOVA allocator of the mapper's claimed window lives there: the mapper must outlive its
/// mappings and the container its mappers (debug builds assert both; `stats().live_mappings`
/// says how many are out), and the mapper does not move. A failed unmap also quarantines the
/// block: the kernel's state is unknown, so the IOVA is not handed out again.
///
/// Thread safety: any number of threads may map and unmap through one mapper given a
/// thread-safe allocator (default_allocator is); the kernel serialises the container.
///
/// What is real and what is modelled: the calls are the real VFIO type1 ioctls from
/// <linux/vfio.h>, made through the `vfio::sys_ops` seam. The host unit tests
/// (tests/unit/os/linux/vfio_test.cpp) replace the seam with a recorded fake that models the
/// kernel's checks (alignment to the smallest IOMMU page, usable windows, overlaps, v2 unmap
/// rules); only the VM test drives a real IOMMU and device.
#pragma once

#include <linux/vfio.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <new>
#include <span>
#include <utility>

#include <phyr/config.hpp>
#include <phyr/container/range_list.hpp>
#include <phyr/core/address.hpp>
#include <phyr/core/allocator.hpp>
#include <phyr/core/error.hpp>
#include <phyr/core/range.hpp>
#include <phyr/core/page.hpp>
#include <phyr/map/iommu/io_page_table.hpp>
#include <phyr/map/iommu/iova_allocator.hpp>
#include <phyr/map/mapper.hpp>
#include <phyr/os/linux/vfio/container.hpp>

namespace phyr::inline v0 {

/// What the device can reach, for `vfio_mapper`.
struct vfio_mapper_limits {
  unsigned dma_bits = 64;      ///< the device's DMA mask width (1..64)
  std::uint64_t min_iova = 0;  ///< lowest IOVA to hand out; never below one IOMMU page
  /// Most IOVA space this mapper claims from the container (0: the whole largest free part of
  /// a usable window). Set it when several mappers share a container and the first should not
  /// take a whole window.
  std::uint64_t iova_bytes = 0;
};

struct vfio_mapper_stats {
  std::uint64_t maps = 0;                ///< successful try_map calls
  std::uint64_t unmaps = 0;              ///< mappings released (unmap or destruction)
  std::uint64_t failed_maps = 0;         ///< try_map calls that failed
  std::uint64_t map_calls = 0;           ///< VFIO_IOMMU_MAP_DMA ioctls issued
  std::uint64_t unmap_calls = 0;         ///< VFIO_IOMMU_UNMAP_DMA ioctls issued
  std::uint64_t unmap_failures = 0;      ///< UNMAP_DMA calls that failed (rollback included)
  std::uint64_t quarantined_blocks = 0;  ///< IOVA blocks never reused after a failed unmap
  std::uint64_t live_mappings = 0;       ///< mapped now
};

template <class Bus, segment_allocator Alloc = default_allocator>
class vfio_mapper;

/// One MAP_DMA call of a mapping: [vaddr, vaddr + size) at [iova, iova + size).
struct vfio_chunk {
  std::uint64_t iova = 0;
  std::uint64_t vaddr = 0;
  std::uint64_t size = 0;
};

/// What `vfio_mapper::try_map` returns: the DMA ranges (owned), the MAP_DMA chunks behind them
/// and the IOVA block. Move-only; unmaps on destruction (see the file comment).
template <class Bus, segment_allocator Alloc = default_allocator>
class vfio_mapping : public detail::owned_dma_list<Bus, Alloc> {
  using base = detail::owned_dma_list<Bus, Alloc>;

 public:
  vfio_mapping() noexcept = default;
  vfio_mapping(vfio_mapping&& o) noexcept
      : base(std::move(o)),
        mapper_(std::exchange(o.mapper_, nullptr)),
        chunks_(std::exchange(o.chunks_, nullptr)),
        nchunks_(std::exchange(o.nchunks_, 0)),
        block_(std::exchange(o.block_, iova_block{})),
        dir_(o.dir_) {}
  vfio_mapping& operator=(vfio_mapping&& o) noexcept {
    if (this != &o) {
      reset();
      base::operator=(std::move(o));
      mapper_ = std::exchange(o.mapper_, nullptr);
      chunks_ = std::exchange(o.chunks_, nullptr);
      nchunks_ = std::exchange(o.nchunks_, 0);
      block_ = std::exchange(o.block_, iova_block{});
      dir_ = o.dir_;
    }
    return *this;
  }
  vfio_mapping(const vfio_mapping&) = delete;
  vfio_mapping& operator=(const vfio_mapping&) = delete;
  ~vfio_mapping() { reset(); }

  /// The MAP_DMA chunks, in list order (empty when not mapped).
  [[nodiscard]] std::span<const vfio_chunk> chunks() const noexcept { return {chunks_, nchunks_}; }
  [[nodiscard]] dma_direction direction() const noexcept { return dir_; }
  /// The IOVA block behind the mapping (padding included): first address and size in bytes.
  [[nodiscard]] dma_addr<Bus> iova_base() const noexcept;
  [[nodiscard]] std::uint64_t iova_bytes() const noexcept;

  /// Unmaps now, as the destructor would (errors are counted in the mapper's stats). Use
  /// `mapper.try_unmap(std::move(mapping))` to see them.
  void reset() noexcept;

 private:
  template <class, segment_allocator>
  friend class vfio_mapper;
  vfio_mapping(typename base::list_type&& l, std::uint64_t owner, vfio_mapper<Bus, Alloc>* m,
               vfio_chunk* chunks, std::size_t n, iova_block b, dma_direction d) noexcept
      : base(std::move(l), owner), mapper_(m), chunks_(chunks), nchunks_(n), block_(b), dir_(d) {}

  vfio_mapper<Bus, Alloc>* mapper_ = nullptr;
  vfio_chunk* chunks_ = nullptr;
  std::size_t nchunks_ = 0;
  iova_block block_{};
  dma_direction dir_ = dma_direction::bidirectional;
};

/// The mapper of a device on bus `Bus` whose group is attached to a VFIO container. Neither
/// copyable nor movable (mappings point to it). Construction cannot fail; a container without
/// an IOMMU (no group attached), an IOMMU that reports no page size, or no usable IOVA under
/// the device's mask leaves it unusable: `status()` and every `try_map` say why.
template <class Bus, segment_allocator Alloc>
class vfio_mapper : public detail::mapper_names<Bus, cpu_virt> {
 public:
  using mapping = vfio_mapping<Bus, Alloc>;

  explicit vfio_mapper(vfio::container& c, vfio_mapper_limits limits = {},
                       Alloc a = Alloc{}) noexcept
      : c_(&c), alloc_(a), geo_(geometry_of(c, limits)),
        // The allocator counts in phyr pages; one of its pages stands for one IOMMU granule
        // here (the top granule of a 2^64 space is left out: the allocator's end is a byte
        // address).
        iova_(geo_.status == errc{} ? pfn_to_addr(geo_.first_pfn) : 0,
              geo_.status == errc{} ? pfn_to_addr(std::min(geo_.end_pfn, pfn_limit - 1))
                                    : page_size,
              a) {
    c.add_user();
    c.add_mapper();
  }
  vfio_mapper(const vfio_mapper&) = delete;
  vfio_mapper& operator=(const vfio_mapper&) = delete;
  ~vfio_mapper() {
    PHYR_ASSERT(live_.load(std::memory_order_relaxed) == 0,
                "vfio_mapper destroyed while its mappings are alive");
    if (geo_.claimed) c_->release_iova(window());
    c_->drop_mapper();
    c_->drop_user();
  }

  /// Why the mapper cannot map, or success: not_supported (no IOMMU set on the container, or
  /// no page-size bitmap), invalid_argument (dma_bits outside 1..64), not_addressable (no
  /// usable IOVA window under the DMA mask and above min_iova).
  [[nodiscard]] result<void, sys_error> status() const noexcept {
    if (geo_.status != errc{}) return sys_error{geo_.status, 0, geo_.why};
    return {};
  }
  /// The IOMMU page everything is aligned to (the smallest reported, at least 4 KiB).
  [[nodiscard]] std::uint64_t granule() const noexcept { return std::uint64_t{1} << geo_.shift; }
  /// The IOVA window this mapper allocates in (inclusive), when usable.
  [[nodiscard]] vfio::iova_window window() const noexcept {
    return {geo_.first_pfn << geo_.shift, (geo_.end_pfn << geo_.shift) - 1};
  }
  [[nodiscard]] vfio::container& container() const noexcept { return *c_; }

  /// Maps `list` (see the file comment). Errors: invalid_argument (empty list, bad direction),
  /// the status() error, overflow (a range ending within one page of 2^64), exhausted (no IOVA
  /// block that large), out_of_memory, and a failing MAP_DMA with its errno (EFAULT ->
  /// not_mapped for memory the process has not mapped, ENOMEM -> out_of_memory when pinning
  /// exceeds RLIMIT_MEMLOCK, ENOSPC -> exhausted past the container's mapping limit). Strong
  /// guarantee: on error nothing stays mapped or allocated (but see quarantine).
  template <segment_allocator A>
  [[nodiscard]] result<mapping, sys_error> try_map(const range_list<virt_range, A>& list,
                                                   dma_direction dir) noexcept {
    return map_impl(list, dir);
  }
  [[nodiscard]] result<mapping, sys_error> try_map(range_list_view<virt_range> view,
                                                   dma_direction dir) noexcept {
    return map_impl(view, dir);
  }

  /// Unmaps `m` now: one VFIO_IOMMU_UNMAP_DMA per chunk, then the IOVA block goes back.
  /// foreign_mapping (m untouched) for a mapping another mapper made or one already released.
  /// Otherwise `m` is released whatever happens; the first failing UNMAP_DMA is reported with
  /// its errno (and the block quarantined).
  [[nodiscard]] result<void, sys_error> try_unmap(mapping&& m) noexcept {
    if (m.mapper_ != this || !id_.owns(m.owner_)) return errc::foreign_mapping;
    return release(m);
  }

  /// Returns the IOVA blocks parked in the allocator's per-thread caches to its tree and frees
  /// the cache's and live-block set's memory: with no mapping alive, the mapper then holds
  /// nothing (the allocator keeps that memory between I/Os, so that a map per I/O is not a
  /// malloc per I/O).
  void flush_iova_caches() noexcept { iova_.flush_caches(); }

  [[nodiscard]] vfio_mapper_stats stats() const noexcept {
    vfio_mapper_stats s;
    s.maps = maps_.load(std::memory_order_relaxed);
    s.unmaps = unmaps_.load(std::memory_order_relaxed);
    s.failed_maps = failed_maps_.load(std::memory_order_relaxed);
    s.map_calls = map_calls_.load(std::memory_order_relaxed);
    s.unmap_calls = unmap_calls_.load(std::memory_order_relaxed);
    s.unmap_failures = unmap_failures_.load(std::memory_order_relaxed);
    s.quarantined_blocks = quarantined_.load(std::memory_order_relaxed);
    s.live_mappings = live_.load(std::memory_order_relaxed);
    return s;
  }

  // ---- the iommu_backend interface (map/iommu/iova_reservation.hpp) ---------------------------
  // Two-step IOVA over the real IOMMU: an iova_reservation<Bus, vfio_mapper<Bus>> takes its
  // IOVA from this mapper's window and links virtual ranges with one VFIO_IOMMU_MAP_DMA each.
  // type1v2 never splits a DMA mapping on unmap; a reservation only unlinks whole links or runs
  // of whole links, so its unlinks always satisfy that rule. Reservations count as live
  // mappings (the mapper must outlive them). They need the IOMMU page to be phyr's 4 KiB page
  // (x86 VT-d and AMD-Vi): with a larger smallest page, try_reserve_iova is not_supported.

  /// Reserves `len` bytes of IOVA in this mapper's window, honouring `lim` (mask, windows,
  /// boundary, alignment). Errors: the status() error, not_supported (IOMMU page above 4 KiB),
  /// exhausted, invalid_argument, out_of_memory. Nothing is mapped yet.
  [[nodiscard]] result<iova_block> try_reserve_iova(std::uint64_t len,
                                                    const iova_limits& lim) noexcept {
    if (geo_.status != errc{}) return geo_.status;
    if (geo_.shift != page_shift) return errc::not_supported;
    auto b = iova_.try_alloc(len, lim);
    if (b) live_.fetch_add(1, std::memory_order_relaxed);
    return b;
  }
  /// Reserves exactly [addr, addr + len) (iommufd's FIXED_IOVA): overlaps when any of it is
  /// taken, out_of_range outside this mapper's window, misaligned off a page.
  [[nodiscard]] result<iova_block> try_reserve_iova_at(std::uint64_t addr,
                                                       std::uint64_t len) noexcept {
    if (geo_.status != errc{}) return geo_.status;
    if (geo_.shift != page_shift) return errc::not_supported;
    auto b = iova_.try_alloc_at(addr, len);
    if (b) live_.fetch_add(1, std::memory_order_relaxed);
    return b;
  }
  /// Unmaps whatever is still mapped in the block (one UNMAP_DMA over it, which takes whole
  /// mappings only) and gives the IOVA back; when the kernel refuses, the block is quarantined
  /// (counted, never reused) because its state is unknown.
  void release_iova(const iova_block& b) noexcept {
    vfio_iommu_type1_dma_unmap u{};
    u.argsz = sizeof u;
    u.iova = b.addr;
    u.size = b.len;
    unmap_calls_.fetch_add(1, std::memory_order_relaxed);
    if (c_->ioctl(VFIO_IOMMU_UNMAP_DMA, &u, "VFIO_IOMMU_UNMAP_DMA")) {
      iova_.free(b);
    } else {
      unmap_failures_.fetch_add(1, std::memory_order_relaxed);
      quarantined_.fetch_add(1, std::memory_order_relaxed);
    }
    unmaps_.fetch_add(1, std::memory_order_relaxed);
    live_.fetch_sub(1, std::memory_order_relaxed);
  }
  /// Maps page-aligned virtual `src` at page-aligned `iova` with one MAP_DMA (the kernel pins
  /// the pages): all-or-nothing. The errno is lost in the concept's plain `result`; the kernel's
  /// EEXIST (overlaps), EFAULT (not_mapped), ENOMEM (out_of_memory) become their errc.
  [[nodiscard]] result<void> try_link_iova(std::uint64_t iova, virt_range src,
                                           io_perm perm) noexcept {
    vfio_iommu_type1_dma_map m{};
    m.argsz = sizeof m;
    m.flags = ((perm & io_perm::read) != io_perm::none ? VFIO_DMA_MAP_FLAG_READ : 0u) |
              ((perm & io_perm::write) != io_perm::none ? VFIO_DMA_MAP_FLAG_WRITE : 0u);
    m.vaddr = src.addr().value();
    m.iova = iova;
    m.size = src.len();
    map_calls_.fetch_add(1, std::memory_order_relaxed);
    if (auto r = c_->ioctl(VFIO_IOMMU_MAP_DMA, &m, "VFIO_IOMMU_MAP_DMA"); !r) return r.error().code;
    return {};
  }
  /// Unmaps the whole links in [iova, iova + len) with one UNMAP_DMA; returns the bytes the
  /// kernel unmapped (0 when it refused: counted in stats().unmap_failures).
  std::uint64_t unlink_iova(std::uint64_t iova, std::uint64_t len) noexcept {
    vfio_iommu_type1_dma_unmap u{};
    u.argsz = sizeof u;
    u.iova = iova;
    u.size = len;
    unmap_calls_.fetch_add(1, std::memory_order_relaxed);
    if (!c_->ioctl(VFIO_IOMMU_UNMAP_DMA, &u, "VFIO_IOMMU_UNMAP_DMA")) {
      unmap_failures_.fetch_add(1, std::memory_order_relaxed);
      return 0;
    }
    return u.size;
  }
  /// Nothing to do: type1's MAP_DMA returns with the IOMMU programmed and UNMAP_DMA with the
  /// IOTLB flushed, so a link is visible to the device as soon as try_link_iova returns.
  void sync_iova(std::uint64_t, std::uint64_t) noexcept {}

 private:
  friend class vfio_mapping<Bus, Alloc>;

  struct geometry {
    errc status{};
    const char* why = nullptr;
    unsigned shift = 12;
    std::uint64_t first_pfn = 0;
    std::uint64_t end_pfn = 1;
    std::uint64_t huge_sizes = 0;  // 2 MiB / 1 GiB, when the IOMMU has them
    bool claimed = false;          // [first_pfn, end_pfn) is claimed from the container
  };

  static geometry geometry_of(vfio::container& c, const vfio_mapper_limits& l) noexcept {
    geometry g;
    if (!c.has_iommu()) {
      g.status = errc::not_supported;
      g.why = "vfio_mapper: container has no IOMMU (attach a group first)";
      return g;
    }
    const std::uint64_t sizes = c.iommu().page_sizes();
    if (sizes == 0) {
      g.status = errc::not_supported;
      g.why = "vfio_mapper: IOMMU reported no page sizes";
      return g;
    }
    auto mask = dma_mask_from_bits(l.dma_bits);
    if (!mask) {
      g.status = errc::invalid_argument;
      g.why = "vfio_mapper: dma_bits outside 1..64";
      return g;
    }
    const std::uint64_t min_page = c.iommu().min_page_size();
    g.shift = static_cast<unsigned>(std::countr_zero(min_page < 4096 ? std::uint64_t{4096} : min_page));
    const std::uint64_t gsz = std::uint64_t{1} << g.shift;
    g.huge_sizes = sizes & ((std::uint64_t{1} << 21) | (std::uint64_t{1} << 30)) & ~(gsz - 1);
    const std::uint64_t lo_limit = l.min_iova > gsz ? l.min_iova : gsz;
    // The allocator counts granules below 2^64 exclusive: leave the top granule out.
    const std::uint64_t hi_limit = *mask < ~(gsz - 1) ? *mask : ~(gsz - 1) - 1;
    auto w = c.try_claim_iova(lo_limit, hi_limit, gsz, l.iova_bytes);
    if (!w) {
      g.status = w.error();
      g.why = w.error() == errc::exhausted
                  ? "vfio_mapper: every usable IOVA window under the DMA mask is claimed by "
                    "other mappers of this container"
                  : "vfio_mapper: no usable IOVA window under the DMA mask";
      return g;
    }
    g.first_pfn = w->first >> g.shift;
    g.end_pfn = (w->last >> g.shift) + 1;
    g.claimed = true;
    return g;
  }

  [[nodiscard]] sys_error failed(sys_error e) noexcept {
    failed_maps_.fetch_add(1, std::memory_order_relaxed);
    return e;
  }

  // ---- layout ------------------------------------------------------------------------------------
  // One walk serves both passes: `emit_chunk(va, iova_off, size)` and
  // `emit_run(dma_off, len, flags)` receive offsets from the block start; the walk returns the
  // block bytes used. Errors: overflow (a page rounding past 2^64), exhausted (larger than the
  // window), or whatever the sink reports.
  template <class List, class Chunk, class Run>
  [[nodiscard]] result<std::uint64_t> walk(const List& list, Chunk&& emit_chunk,
                                           Run&& emit_run) const noexcept {
    const std::uint64_t gm = granule() - 1;
    const std::uint64_t space = (geo_.end_pfn - geo_.first_pfn) << geo_.shift;
    std::uint64_t dma = 0;        // offset of the next byte's DMA address
    std::uint64_t mapped_to = 0;  // end of the current chunk (offset)
    std::uint64_t chunk_va = 0;   // current chunk: first page
    std::uint64_t chunk_iova = 0;
    std::uint64_t chunk_va_end = 0;
    std::uint64_t run_start = 0;
    range_flags run_flags = range_flags::none;
    std::uint64_t prev_end = 0;
    bool first = true;
    for (const virt_range r : list) {
      const std::uint64_t a = r.addr().value();
      const std::uint64_t len = r.len();
      if (r.last().value() > ~std::uint64_t{0} - gm) return errc::overflow;
      const std::uint64_t end = a + len;
      const bool new_group = first || !(((prev_end | a) & gm) == 0 || a == prev_end);
      const bool adjacent = !first && a == prev_end;
      if (!first && (new_group || r.flags() != run_flags)) {
        if (auto e = emit_run(run_start, dma - run_start, run_flags); !e) return e.error();
      }
      if (new_group || !adjacent) {
        if (!first) {
          if (auto e = emit_chunk(chunk_va, chunk_iova, chunk_va_end - chunk_va); !e)
            return e.error();
        }
        std::uint64_t off = mapped_to;
        if (new_group) {
          const std::uint64_t pad = pad_for(off, a, len);
          if (pad > space || off > space - pad) return errc::exhausted;
          off += pad;
          dma = off + (a & gm);
        }
        chunk_va = a & ~gm;
        chunk_iova = off;
      }
      if (first || new_group || r.flags() != run_flags) {
        run_start = dma;
        run_flags = r.flags();
      }
      chunk_va_end = (end + gm) & ~gm;  // no wrap: checked above
      const std::uint64_t chunk_len = chunk_va_end - chunk_va;
      if (chunk_len > space || chunk_iova > space - chunk_len) return errc::exhausted;
      mapped_to = chunk_iova + chunk_len;
      dma += len;
      prev_end = end;
      first = false;
    }
    if (auto e = emit_run(run_start, dma - run_start, run_flags); !e) return e.error();
    if (auto e = emit_chunk(chunk_va, chunk_iova, chunk_va_end - chunk_va); !e) return e.error();
    return mapped_to;
  }

  // Bytes of padding before a group at block offset `off` that starts at virtual address `a`
  // and is at least `len` long, so that IOVA and vaddr agree modulo the largest huge IOMMU
  // page the group could use (the block is aligned to at least that: see iova_allocator).
  [[nodiscard]] std::uint64_t pad_for(std::uint64_t off, std::uint64_t a,
                                      std::uint64_t len) const noexcept {
    std::uint64_t m = 0;
    for (std::uint64_t s = geo_.huge_sizes; s != 0; s &= s - 1) {
      const std::uint64_t size = s & (~s + 1);
      if (len >= size) m = size - 1;
    }
    if (m == 0) return 0;
    return ((a & m & ~(granule() - 1)) - (off & m)) & m;
  }

  [[nodiscard]] static constexpr std::uint32_t perm_of(dma_direction d) noexcept {
    return d == dma_direction::to_device     ? VFIO_DMA_MAP_FLAG_READ
           : d == dma_direction::from_device ? VFIO_DMA_MAP_FLAG_WRITE
                                             : VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;
  }

  template <class List>
  [[nodiscard]] result<mapping, sys_error> map_impl(const List& list, dma_direction dir) noexcept {
    if (geo_.status != errc{}) return failed(sys_error{geo_.status, 0, geo_.why});
    if (!is_valid(dir) || list.empty()) return failed(errc::invalid_argument);

    // Pass 1: count chunks, size the block.
    std::size_t nchunks = 0;
    auto total = walk(
        list,
        [&](std::uint64_t, std::uint64_t, std::uint64_t) noexcept -> result<void> {
          ++nchunks;
          return {};
        },
        [](std::uint64_t, std::uint64_t, range_flags) noexcept -> result<void> { return {}; });
    if (!total) return failed(total.error());
    const std::uint64_t pages = *total >> geo_.shift;
    if (nchunks > SIZE_MAX / sizeof(vfio_chunk)) return failed(errc::out_of_memory);

    // Everything that can fail without the kernel's help, before the first MAP_DMA.
    void* mem = alloc_.allocate(nchunks * sizeof(vfio_chunk), alignof(vfio_chunk));
    if (mem == nullptr) return failed(errc::out_of_memory);
    auto* chunks = static_cast<vfio_chunk*>(mem);
    auto free_chunks = [&]() noexcept {
      alloc_.deallocate(mem, nchunks * sizeof(vfio_chunk), alignof(vfio_chunk));
    };
    result<iova_block> block = iova_.try_alloc(pfn_to_addr(pages));
    if (!block) {
      free_chunks();
      return failed(block.error());
    }
    const std::uint64_t base = pfn_of(block->addr) << geo_.shift;
    typename mapping::list_type out{alloc_};
    std::size_t k = 0;
    auto filled = walk(
        list,
        [&](std::uint64_t va, std::uint64_t off, std::uint64_t size) noexcept -> result<void> {
          chunks[k++] = vfio_chunk{base + off, va, size};
          return {};
        },
        [&](std::uint64_t off, std::uint64_t len, range_flags f) noexcept -> result<void> {
          return out.try_append(dma_range<Bus>{dma_addr<Bus>{base + off}, len, f});
        });
    if (!filled) {
      iova_.undo(*block);
      free_chunks();
      return failed(filled.error());
    }

    // The kernel: one MAP_DMA per chunk; roll back on the first failure.
    const std::uint32_t perm = perm_of(dir);
    for (std::size_t i = 0; i < nchunks; ++i) {
      vfio_iommu_type1_dma_map m{};
      m.argsz = sizeof m;
      m.flags = perm;
      m.vaddr = chunks[i].vaddr;
      m.iova = chunks[i].iova;
      m.size = chunks[i].size;
      map_calls_.fetch_add(1, std::memory_order_relaxed);
      if (auto r = c_->ioctl(VFIO_IOMMU_MAP_DMA, &m, "VFIO_IOMMU_MAP_DMA"); !r) {
        const bool clean = unmap_chunks(chunks, i).has_value();
        if (clean) {
          iova_.undo(*block);
        } else {
          quarantined_.fetch_add(1, std::memory_order_relaxed);
        }
        free_chunks();
        return failed(r.error());
      }
    }
    maps_.fetch_add(1, std::memory_order_relaxed);
    live_.fetch_add(1, std::memory_order_relaxed);
    return mapping{std::move(out), id_.value(), this, chunks, nchunks, *block, dir};
  }

  // Unmaps chunks[0, n) (last first); the first error, after trying every chunk.
  [[nodiscard]] result<void, sys_error> unmap_chunks(const vfio_chunk* chunks,
                                                     std::size_t n) noexcept {
    result<void, sys_error> first_error{};
    for (std::size_t i = n; i-- > 0;) {
      vfio_iommu_type1_dma_unmap u{};
      u.argsz = sizeof u;
      u.iova = chunks[i].iova;
      u.size = chunks[i].size;
      unmap_calls_.fetch_add(1, std::memory_order_relaxed);
      auto r = c_->ioctl(VFIO_IOMMU_UNMAP_DMA, &u, "VFIO_IOMMU_UNMAP_DMA");
      if (r && u.size != chunks[i].size)  // the kernel reports what it unmapped
        r = sys_error{errc::io_error, 0, "VFIO_IOMMU_UNMAP_DMA: unmapped size differs"};
      if (!r) {
        unmap_failures_.fetch_add(1, std::memory_order_relaxed);
        if (first_error) first_error = r.error();
      }
    }
    return first_error;
  }

  [[nodiscard]] result<void, sys_error> release(mapping& m) noexcept {
    result<void, sys_error> r = unmap_chunks(m.chunks_, m.nchunks_);
    if (r) {
      iova_.free(m.block_);
    } else {
      quarantined_.fetch_add(1, std::memory_order_relaxed);
    }
    alloc_.deallocate(m.chunks_, m.nchunks_ * sizeof(vfio_chunk), alignof(vfio_chunk));
    m.chunks_ = nullptr;
    m.nchunks_ = 0;
    m.block_ = iova_block{};
    m.mapper_ = nullptr;
    m.drop_list();
    unmaps_.fetch_add(1, std::memory_order_relaxed);
    live_.fetch_sub(1, std::memory_order_relaxed);
    return r;
  }

  vfio::container* c_;
  [[no_unique_address]] Alloc alloc_;
  geometry geo_;
  iova_allocator<Alloc> iova_;
  detail::mapper_id id_{};
  std::atomic<std::uint64_t> maps_{0};
  std::atomic<std::uint64_t> unmaps_{0};
  std::atomic<std::uint64_t> failed_maps_{0};
  std::atomic<std::uint64_t> map_calls_{0};
  std::atomic<std::uint64_t> unmap_calls_{0};
  std::atomic<std::uint64_t> unmap_failures_{0};
  std::atomic<std::uint64_t> quarantined_{0};
  std::atomic<std::uint64_t> live_{0};
};

template <class Bus, segment_allocator Alloc>
dma_addr<Bus> vfio_mapping<Bus, Alloc>::iova_base() const noexcept {
  return mapper_ == nullptr ? dma_addr<Bus>{0}
                            : dma_addr<Bus>{pfn_of(block_.addr) * mapper_->granule()};
}
template <class Bus, segment_allocator Alloc>
std::uint64_t vfio_mapping<Bus, Alloc>::iova_bytes() const noexcept {
  return mapper_ == nullptr ? 0 : pfn_of(block_.len) * mapper_->granule();
}
template <class Bus, segment_allocator Alloc>
void vfio_mapping<Bus, Alloc>::reset() noexcept {
  if (mapper_ != nullptr) (void)mapper_->release(*this);
}

}  // namespace phyr::inline v0
