/// IOMMU mapping: `iommu_domain` (an IOVA allocator plus a 4-level I/O page table) and
/// `iommu_mapper<Bus>`, the `dma_mapper` that maps CPU lists through it.
///
///   struct gpu0 {};
///   phyr::iommu_domain dom;            // 48-bit IOVA, 4 KiB granule; allocates nothing yet
///   phyr::iommu_mapper<gpu0> m{dom};
///   auto mp = m.try_map(cpu_list, phyr::dma_direction::bidirectional);
///   if (!mp) return mp.error();        // out_of_memory, exhausted, not_addressable, ...
///   mp->size();                        // 1 for a page list: one contiguous IOVA range
///   m.translate(mp->begin()->addr());  // walks the page table back to the CPU address
///   phyr::must(m.try_unmap(std::move(*mp)));  // clears the PTEs, frees tables and IOVA
///
/// How a list is mapped (the approach of Linux's iommu_dma_map_sg): the whole list gets ONE
/// size-aligned IOVA block. Consecutive ranges whose shared boundary is granule-aligned on both
/// sides (or that are physically adjacent) form a group, mapped at consecutive IOVA offsets; a
/// group's DMA range starts at its IOVA page plus the first range's offset in its page. A page
/// list (every interior boundary aligned, only the first start and last end ragged) is one
/// group: one output entry, whatever its length. A boundary unaligned on either side cannot be
/// made contiguous in IOVA space (one IOVA page maps one physical page), so each such boundary
/// starts a new group on the next IOVA page and costs exactly one more entry: the fewest
/// possible. The page table uses 2 MiB and 1 GiB leaves wherever IOVA and physical address
/// agree on that alignment; to make them agree, a group of 2 MiB or more starts congruent to
/// its first physical page modulo 2 MiB (the block's first group: modulo 1 GiB when it spans
/// 1 GiB), so a buffer that begins mid-hugepage still gets huge leaves. The padding costs IOVA
/// space only, never page-table memory.
///
/// Output entries keep each range's flags (ranges with different flags inside one group give
/// adjacent entries). Failure anywhere (IOVA exhausted, a table or list segment not allocated,
/// a physical address above 2^52) unmaps and frees everything the call did: the domain, its
/// memory and its IOVA space are as before. Empty lists and invalid directions are
/// `invalid_argument`. One block per list (not one per group) keeps unmap O(1) in bookkeeping,
/// the rollback exact and the IOVA allocator out of the per-group path; the price is that a
/// list needs one hole the size of all its groups.
///
/// Device limits: the IOVA block honours the domain's limits, the intersection of every device
/// attached with `iommu_domain::try_attach` (DMA mask, allowed windows, boundary, alignment),
/// and the domain's guard-page setting. Several devices of one domain can use one mapping:
/// `try_share` presents a mapping made for bus A as addresses of bus B (same domain checked).
/// Partial unmap: a mapping is released whole; mapping pieces that come and go separately is
/// what `iova_reservation` (map/iommu/iova_reservation.hpp) is for: its links are the chunks
/// that can be unlinked one by one (DPDK's rule: cutting inside a chunk is not_supported).
///
/// Memory: page tables, IOVA metadata and output lists come from the domain's
/// `segment_allocator`. Unmapping keeps emptied page tables for the next map under them;
/// `iommu_domain::trim()` frees them (and the IOVA caches): an idle domain holds no memory
/// after a trim. A failed map leaves nothing mapped and no IOVA taken; tables it created stay
/// until the next trim (exactly as before the call after it).
/// Thread safety: any number of threads may map, unmap and translate through one domain at
/// once, given a thread-safe allocator (default_allocator is; fault_injecting_allocator and
/// pools are not). No domain-wide lock: the IOVA block comes from the allocator's per-thread
/// caches (or its tree, under its own lock), the page-table entries are installed lock-free
/// (compare-exchange from empty, map/iommu/io_page_table.hpp), so maps and unmaps of disjoint
/// IOVA ranges (every mapping's block is its own) proceed in parallel; see iommu_domain for
/// the rule that keeps tables alive while they may be walked.
/// Lifetime (the rule of map/mapper.hpp): a mapping points to its domain, not to its mapper,
/// and destroying a still-mapped mapping unmaps it exactly as `try_unmap` does, so dropping
/// one cannot leak IOVA space or page-table entries. The domain must outlive its mappings; it
/// counts them (`stats().live_mappings`) and asserts in debug builds when destroyed with any
/// alive. The mapper itself may be moved or destroyed while its mappings live.
#pragma once

#include <atomic>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <type_traits>
#include <utility>

#include <phyr/config.hpp>
#include <phyr/container/range_list.hpp>
#include <phyr/core/address.hpp>
#include <phyr/core/allocator.hpp>
#include <phyr/core/error.hpp>
#include <phyr/core/page.hpp>
#include <phyr/core/range.hpp>
#include <phyr/map/iommu/domain.hpp>
#include <phyr/map/mapper.hpp>

namespace phyr::inline v0 {

/// What `iommu_mapper` returns: the DMA ranges (owned) plus what the mapper needs to undo them.
/// Move-only; an empty (default-built, moved-from or unmapped) mapping is foreign to every
/// mapper.
template <class Bus, segment_allocator Alloc = default_allocator>
class iommu_mapping : public detail::owned_dma_list<Bus, Alloc> {
  using base = detail::owned_dma_list<Bus, Alloc>;

 public:
  iommu_mapping() noexcept = default;
  iommu_mapping(iommu_mapping&& o) noexcept : base(std::move(o)) { take(o); }
  iommu_mapping& operator=(iommu_mapping&& o) noexcept {
    if (this != &o) {
      release();
      base::operator=(std::move(o));
      take(o);
    }
    return *this;
  }
  /// Unmaps what is still mapped (RAII; see map/mapper.hpp).
  ~iommu_mapping() { release(); }

  /// The IOVA block behind the mapping: its first address and its length in bytes (padding
  /// between groups and before the first one included). 0 when not mapped.
  [[nodiscard]] dma_addr<Bus> iova_addr() const noexcept { return dma_addr<Bus>{iova_addr_}; }
  [[nodiscard]] std::uint64_t iova_len() const noexcept { return iova_len_; }
  /// IOVA blocks behind the mapping: 1 (a whole list shares one block), 0 when not mapped.
  [[nodiscard]] std::uint64_t iova_ranges() const noexcept { return this->mapped() ? 1 : 0; }

 private:
  template <class, segment_allocator>
  friend class iommu_mapper;
  using domain_type = basic_iommu_domain<Alloc>;
  template <class, class, segment_allocator>
  friend class iommu_shared_view;
  iommu_mapping(typename base::list_type&& l, std::uint64_t owner, domain_type* d,
                std::uint64_t addr, std::uint64_t len) noexcept
      : base(std::move(l), owner), dom_(d), iova_addr_(addr), iova_len_(len) {}
  /// The domain and IOVA block of `o`, whose list and stamp the base took; `o` keeps none.
  void take(iommu_mapping& o) noexcept {
    dom_ = std::exchange(o.dom_, nullptr);
    iova_addr_ = std::exchange(o.iova_addr_, 0);
    iova_len_ = std::exchange(o.iova_len_, 0);
  }
  void forget() noexcept {
    this->owner_ = 0;
    dom_ = nullptr;
    iova_addr_ = 0;
    iova_len_ = 0;
  }
  /// Gives everything back to the domain, once: the body of try_unmap and of the destructor.
  void release() noexcept {
    if (dom_ == nullptr) return;
    dom_->release_block(iova_addr_, iova_len_);
    this->drop_list();
    forget();
  }

  domain_type* dom_ = nullptr;
  std::uint64_t iova_addr_ = 0;
  std::uint64_t iova_len_ = 0;
};

/// A mapping made for bus `From`, seen as addresses of bus `Bus`: two devices attached to one
/// domain share its IOVA space, so one mapping serves both (map once, hand to two buses).
/// Built only by `iommu_mapper<Bus>::try_share`, which checks that the domain is the same; the
/// ranges it yields are `dma_range<Bus>`, so the type system still keeps each device's
/// addresses apart. It borrows the mapping: the mapping must outlive it and stay mapped.
template <class Bus, class From, segment_allocator Alloc = default_allocator>
class iommu_shared_view {
  using source = typename iommu_mapping<From, Alloc>::const_iterator;

 public:
  using space_type = dma_space<Bus>;
  using value_type = dma_range<Bus>;

  class iterator {
   public:
    using value_type = dma_range<Bus>;
    using reference = dma_range<Bus>;
    using difference_type = std::ptrdiff_t;
    iterator() noexcept = default;
    [[nodiscard]] dma_range<Bus> operator*() const noexcept {
      // The entry is a valid range already (as in identity_mapping's walk): no re-check.
      const dma_range<From> r = *it_;
      return dma_range<Bus>::make_unchecked(r.addr().value(), r.len(), r.flags());
    }
    iterator& operator++() noexcept {
      ++it_;
      return *this;
    }
    iterator operator++(int) noexcept {
      iterator t = *this;
      ++it_;
      return t;
    }
    friend bool operator==(const iterator& a, const iterator& b) noexcept { return a.it_ == b.it_; }

   private:
    friend class iommu_shared_view;
    explicit iterator(source it) noexcept : it_(it) {}
    source it_{};
  };
  using const_iterator = iterator;

  [[nodiscard]] iterator begin() const noexcept { return iterator{m_->begin()}; }
  [[nodiscard]] iterator end() const noexcept { return iterator{m_->end()}; }
  [[nodiscard]] std::size_t size() const noexcept { return m_->size(); }
  [[nodiscard]] std::uint64_t total_bytes() const noexcept { return m_->total_bytes(); }

 private:
  template <class, segment_allocator>
  friend class iommu_mapper;
  explicit iommu_shared_view(const iommu_mapping<From, Alloc>& m) noexcept : m_(&m) {}
  const iommu_mapping<From, Alloc>* m_;
};

/// The `dma_mapper` of a device on bus `Bus` attached to a domain. Cheap to copy (a copy is a
/// new mapper: it cannot unmap the original's mappings); any number may share a domain.
template <class Bus, segment_allocator Alloc = default_allocator>
class iommu_mapper : public detail::mapper_names<Bus, cpu_phys> {
 public:
  using mapping = iommu_mapping<Bus, Alloc>;
  using domain_type = basic_iommu_domain<Alloc>;
  static constexpr std::uint64_t granule = domain_type::granule;
  static constexpr unsigned granule_shift = domain_type::granule_shift;

  explicit iommu_mapper(domain_type& d) noexcept : d_(&d) {}

  [[nodiscard]] domain_type& domain() const noexcept { return *d_; }

  /// Maps `list` (see the file comment). Errors: empty list or invalid direction ->
  /// invalid_argument; a range reaching above 2^52 -> not_addressable; no IOVA block big
  /// enough -> exhausted; out_of_memory. Strong guarantee: on error nothing stays mapped,
  /// allocated or reserved.
  template <segment_allocator A>
  [[nodiscard]] result<mapping> try_map(const range_list<phys_range, A>& list,
                                        dma_direction dir) noexcept {
    return map_impl(list, dir);
  }
  [[nodiscard]] result<mapping> try_map(range_list_view<phys_range> view,
                                        dma_direction dir) noexcept {
    return map_impl(view, dir);
  }

  /// Clears the page-table entries of `m` and frees its IOVA block (tables: `trim`) (what
  /// destroying `m` would do, now). foreign_mapping (and `m` left as it was) for a mapping
  /// another mapper made, or one already unmapped.
  [[nodiscard]] result<void> try_unmap(mapping&& m) noexcept {
    return id_.try_release(m.owner_, [&] { m.release(); });
  }
  /// Whether `m` is a live mapping this mapper made (what try_unmap checks).
  [[nodiscard]] bool owns(const mapping& m) const noexcept { return id_.owns(m.owner_); }

  /// `m`, made for another device on this mapper's domain, as addresses of this device (see
  /// iommu_shared_view). foreign_mapping when `m` is not mapped or belongs to another domain.
  template <class From>
  [[nodiscard]] result<iommu_shared_view<Bus, From, Alloc>> try_share(
      const iommu_mapping<From, Alloc>& m) const noexcept {
    if (!m.mapped() || m.dom_ != d_) return errc::foreign_mapping;
    return iommu_shared_view<Bus, From, Alloc>{m};
  }

  /// The CPU address a DMA address of this bus reaches: not_mapped when nothing translates it.
  [[nodiscard]] result<phys_addr> translate(dma_addr<Bus> a) const noexcept {
    return d_->translate(a.value());
  }
  /// Like translate, with the leaf size and permissions.
  [[nodiscard]] result<io_translation> lookup(dma_addr<Bus> a) const noexcept {
    return d_->lookup(a.value());
  }

 private:
  static constexpr std::uint64_t phys_limit = std::uint64_t{1} << io_page_table<Alloc>::phys_bits;

  [[nodiscard]] static constexpr io_perm perm_of(dma_direction d) noexcept {
    return d == dma_direction::to_device     ? io_perm::read
           : d == dma_direction::from_device ? io_perm::write
                                             : io_perm::read_write;
  }

  // ---- the layout of a list in its IOVA block --------------------------------------------------
  // Consecutive ranges stay in one group (contiguous in IOVA) when the boundary between them
  // is granule-aligned on both sides or they are physically adjacent.
  [[nodiscard]] static constexpr bool continues(std::uint64_t prev_end, std::uint64_t a) noexcept {
    return ((prev_end | a) & (granule - 1)) == 0 || a == prev_end;
  }
  // Padding (bytes) before a group at block offset `off` whose first range starts at `a` and
  // is `len` long: a group that could hold a 2 MiB leaf starts congruent to its physical
  // address modulo 2 MiB, so its aligned runs line up (later groups are decided on their
  // first range, so both passes agree without looking ahead).
  [[nodiscard]] static constexpr std::uint64_t pad_for(std::uint64_t off, std::uint64_t a,
                                                       std::uint64_t len) noexcept {
    if (len < io_page_table<Alloc>::size_2m) return 0;
    constexpr std::uint64_t m = io_page_table<Alloc>::size_2m - 1;
    return ((a & m & ~(granule - 1)) - (off & m)) & m;
  }

  [[nodiscard]] errc failed(errc e) noexcept {
    d_->count(&domain_type::stripe::failed_maps, 1);
    return e;
  }

  template <class List>
  [[nodiscard]] result<mapping> map_impl(const List& list, dma_direction dir) noexcept {
    if (!is_valid(dir) || list.empty()) return errc::invalid_argument;
    const io_perm perm = perm_of(dir);
    const std::uint64_t space = (std::uint64_t{1} << d_->cfg_.iova_bits) - d_->cfg_.iova_base;

    // Pass 1: validate and size the block. The first group's span picks the block's phase:
    // starting it congruent to the first page modulo 2 MiB (1 GiB for a group of 1 GiB or
    // more) lets a buffer that begins mid-hugepage still get large leaves.
    const std::uint64_t first_page = (*list.begin()).addr().value() & ~(granule - 1);
    auto phase_for = [first_page](std::uint64_t span) noexcept -> std::uint64_t {
      if (span >= io_page_table<Alloc>::size_1g)
        return first_page & (io_page_table<Alloc>::size_1g - 1);
      if (span >= io_page_table<Alloc>::size_2m)
        return first_page & (io_page_table<Alloc>::size_2m - 1);
      return 0;
    };
    std::uint64_t phase = 0;
    std::uint64_t off = 0;  // block bytes before the current group (granule multiple)
    std::uint64_t group_bytes = 0;
    std::uint64_t prev_end = 0;
    bool first = true;
    bool phased = false;
    for (const phys_range r : list) {
      const std::uint64_t a = r.addr().value();
      if (r.last().value() >= phys_limit) return failed(errc::not_addressable);
      if (first || !continues(prev_end, a)) {
        if (!first) {
          if (!phased) off = phase = phase_for(group_bytes);  // closing the first group
          phased = true;
          off += (group_bytes + granule - 1) & ~(granule - 1);
          off += pad_for(off, a, r.len());
        }
        group_bytes = a & (granule - 1);
        first = false;
      }
      if (r.len() > space || group_bytes > space - r.len() || off > space) {
        return failed(errc::exhausted);  // more than the whole IOVA space
      }
      group_bytes += r.len();
      prev_end = a + r.len();
    }
    if (!phased) off = phase = phase_for(group_bytes);  // a single group
    off += (group_bytes + granule - 1) & ~(granule - 1);
    if (off > space) return failed(errc::exhausted);
    const std::uint64_t pages = off >> granule_shift;

    typename mapping::list_type out{d_->alloc_};
    auto& pt = d_->pt_;
    // The IOVA block first (the allocator has its own locks and per-thread caches); the block
    // is this call's alone, so its page-table writes race with nobody's.
    result<iova_block> block = d_->iova_.try_alloc(pfn_to_addr(pages), d_->limits_);
    if (!block) return failed(block.error());
    const std::uint64_t base = block->addr;
    std::optional<typename domain_type::in_flight> op{std::in_place, *d_};
    typename domain_type::page_table_type::walk_cache wc;

    // Pass 2: map each range at its offset; one output entry per group (or flag change).
    errc err{};
    off = phase;
    std::uint64_t dma = 0;        // DMA address of the current range
    std::uint64_t mapped_to = 0;  // the page table is filled up to here in the current group
    std::uint64_t run_start = 0;  // the output entry being grown
    range_flags run_flags = range_flags::none;
    first = true;
    for (const phys_range r : list) {
      const std::uint64_t a = r.addr().value();
      const std::uint64_t len = r.len();
      const bool new_group = first || !continues(prev_end, a);
      if (new_group || r.flags() != run_flags) {
        if (!first) {
          if (auto x = out.try_append(
                  dma_range<Bus>{dma_addr<Bus>{run_start}, dma - run_start, run_flags});
              !x) {
            err = x.error();
            break;
          }
        }
        if (new_group) {
          if (!first) {
            off = mapped_to - base;
            off += pad_for(off, a, len);
          }
          dma = base + off + (a & (granule - 1));
          mapped_to = base + off;
        }
        run_start = dma;
        run_flags = r.flags();
        first = false;
      }
      std::uint64_t lo = dma & ~(granule - 1);
      const std::uint64_t hi = (dma + len + granule - 1) & ~(granule - 1);
      std::uint64_t plo = a & ~(granule - 1);
      if (lo < mapped_to) {  // first page shared with the previous (adjacent) range
        plo += mapped_to - lo;
        lo = mapped_to;
      }
      if (lo < hi) {
        if (auto m = pt.try_map_owned(lo, phys_addr{plo}, hi - lo, perm, wc); !m) {
          err = m.error();
          break;
        }
        mapped_to = hi;
      }
      dma += len;
      prev_end = a + len;
    }
    if (err == errc{}) {
      op.reset();
      if (auto x =
              out.try_append(dma_range<Bus>{dma_addr<Bus>{run_start}, dma - run_start, run_flags});
          !x)
        err = x.error();
    }
    if (err != errc{}) {
      // Everything this call mapped lies in its own block: clear the block, give it back.
      if (!op) op.emplace(*d_);
      pt.unmap_owned(base, pfn_to_addr(pages));
      op.reset();
      d_->iova_.undo(*block);
      return failed(err);
    }
    d_->count(&domain_type::stripe::maps, 1);
    d_->count(&domain_type::stripe::live, 1);
    return mapping{std::move(out), id_.value(), d_, block->addr, block->len};
  }

  domain_type* d_;
  detail::mapper_id id_{};
};

}  // namespace phyr
