/// One IOMMU translation context: `iommu_domain` = an IOVA allocator plus a 4-level I/O
/// page table (an in-process model of the hardware's tables, not a real IOMMU).
///
///   phyr::iommu_domain dom;                 // 48-bit IOVA, 4 KiB granule; allocates nothing yet
///   phyr::iommu_mapper<gpu0> m{dom};        // see map/iommu/iommu_mapper.hpp
///   dom.translate(iova);                    // walks the page table back to the CPU address
///   dom.stats().page_table.leaves_4k;       // what the mappers built
///   phyr::must(dom.try_attach(nic_limits));  // a device's DMA mask, windows, boundary
///   auto r = phyr::iova_reservation<gpu0, phyr::iommu_domain>::try_create(dom, 1 << 30);
///   dom.trim();                             // frees the page tables that map nothing
///
/// The domain is also the page-table model's IOMMU back end (`iommu_backend`, see
/// map/iommu/iova_reservation.hpp): reserve IOVA, link and unlink pages, sync (an IOTLB
/// flush, counted in `stats().iotlb_syncs`: the model has no IOTLB to flush).
///
/// Thread safety: any number of threads may map, unmap, link, unlink and translate through
/// one domain at once, given a thread-safe allocator (default_allocator is;
/// fault_injecting_allocator and pools are not). Nothing on those paths takes a domain-wide
/// lock: IOVA allocation has its own locks and per-thread caches, the page table is updated
/// lock-free (map/iommu/io_page_table.hpp: tables published and leaves installed with
/// compare-exchange, so maps of disjoint IOVA ranges proceed in parallel), and the domain's
/// counters live in one cache line per thread slot. Each page-table operation marks itself
/// in flight in its thread's slot (one uncontended atomic increment and decrement), which is
/// what `trim()` waits for.
///
/// Memory and reclamation: unmapping clears page-table entries but keeps the tables (freeing
/// one while another thread may be walking or installing under it is the hazard this avoids,
/// as Linux's io-pgtable does), so a domain's table memory follows the IOVA span it has mapped.
/// `trim()` takes it back: it holds new page-table operations back, waits for those in flight
/// and frees every table that maps nothing. It is safe to call at any time from any thread
/// (operations that meet it wait, for as long as it walks the tables). After the last mapping
/// is gone, `trim()` plus `flush_iova_caches()` leave the domain holding no memory at all.
/// Lifetime: the domain must outlive its mappings and reservations (each points to it and gives
/// its IOVA back on destruction, see map/mapper.hpp). It counts them: `stats().live_mappings`
/// is the leak check a test can query, and destroying a domain that still has live mappings
/// asserts in debug builds (release builds free every table and all IOVA metadata anyway).
#pragma once

#include <atomic>
#include <concepts>
#include <cstdint>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>

#include <phyr/core/page.hpp>
#include <phyr/config.hpp>
#include <phyr/core/allocator.hpp>
#include <phyr/core/error.hpp>
#include <phyr/core/range.hpp>
#include <phyr/map/iommu/io_page_table.hpp>
#include <phyr/map/iommu/iova_allocator.hpp>

namespace phyr::inline v0 {

/// The IOVA space of a domain: [iova_base, 2^iova_bits).
struct iommu_domain_config {
  unsigned iova_bits = 48;  ///< 13..48: the 4-level table reaches 48 bits
  /// Lowest IOVA handed out (a page multiple). Page 0 is kept out by default so that no
  /// mapping ever has DMA address 0, which drivers often treat as "none".
  std::uint64_t iova_base = page_size;
  /// A free guard page on each side of every IOVA block (FreeBSD's rule; see iova_allocator).
  iova_guard guard = iova_guard::none;
};

struct iommu_domain_stats {
  io_page_table_stats page_table;  ///< tables and leaves by size
  iova_allocator_stats iova;       ///< blocks out, cached, tree extents, cache hits
  std::uint64_t maps = 0;          ///< successful try_map calls
  std::uint64_t unmaps = 0;        ///< successful unmap calls
  std::uint64_t failed_maps = 0;   ///< try_map calls that failed (bad input included)
  std::uint64_t live_mappings = 0; ///< mappings and reservations alive now (the leak check)
  std::uint64_t iotlb_syncs = 0;   ///< sync calls of reservations (an IOTLB flush each)
  std::uint64_t devices = 0;       ///< devices attached with try_attach
};

template <class Bus, segment_allocator Alloc>
class iommu_mapper;
template <class Bus, segment_allocator Alloc>
class iommu_mapping;

/// One IOMMU translation context (what a device or group is attached to): IOVA allocator and
/// page table. Default-constructible (48-bit IOVA space, 4 KiB granule) and never fails to
/// construct: the root table and allocator metadata appear on the first map. Not copyable or
/// movable (mappers point to it).
template <segment_allocator Alloc = default_allocator>
class basic_iommu_domain {
 public:
  using allocator_type = Alloc;
  using page_table_type = io_page_table<Alloc>;
  using iova_allocator_type = iova_allocator<Alloc>;
  static constexpr std::uint64_t granule = page_size;
  static constexpr unsigned granule_shift = page_shift;

  basic_iommu_domain() noexcept requires std::default_initializable<Alloc>
      : basic_iommu_domain(Alloc{}, iommu_domain_config{}) {}
  explicit basic_iommu_domain(
      iommu_domain_config c) noexcept requires std::default_initializable<Alloc>
      : basic_iommu_domain(Alloc{}, c) {}
  /// A bad config (iova_bits outside 13..48, a misaligned base, no room above the base) is a
  /// programming error: asserted, then clamped to something usable.
  explicit basic_iommu_domain(Alloc a, iommu_domain_config c = {}) noexcept
      : alloc_(a),
        cfg_(checked(c)),
        iova_(cfg_.iova_base, std::uint64_t{1} << cfg_.iova_bits, a, cfg_.guard),
        pt_(a) {}
  basic_iommu_domain(const basic_iommu_domain&) = delete;
  basic_iommu_domain& operator=(const basic_iommu_domain&) = delete;
  ~basic_iommu_domain() {
    PHYR_ASSERT(sum(&stripe::live) == 0, "iommu_domain destroyed while mappings of it are alive");
  }

  [[nodiscard]] const iommu_domain_config& config() const noexcept { return cfg_; }
  [[nodiscard]] Alloc get_allocator() const noexcept { return alloc_; }

  /// Walks the page table: the CPU physical address an IOVA reaches, or not_mapped. Lock-free
  /// (a concurrent unmap of the address gives either the old translation or not_mapped).
  [[nodiscard]] result<phys_addr> translate(std::uint64_t iova) const noexcept {
    in_flight op{*this};
    return pt_.translate(iova);
  }
  /// Like translate, with the leaf size and permissions.
  [[nodiscard]] result<io_translation> lookup(std::uint64_t iova) const noexcept {
    in_flight op{*this};
    return pt_.lookup(iova);
  }

  /// Counters summed over the thread slots: exact when nothing runs concurrently.
  [[nodiscard]] iommu_domain_stats stats() const noexcept {
    iommu_domain_stats s;
    s.page_table = pt_.stats();
    s.maps = sum(&stripe::maps);
    s.unmaps = sum(&stripe::unmaps);
    s.failed_maps = sum(&stripe::failed_maps);
    s.live_mappings = sum(&stripe::live);
    s.iotlb_syncs = sum(&stripe::syncs);
    s.devices = devices_;
    s.iova = iova_.stats();
    return s;
  }

  /// Frees every page table that maps nothing (see the file comment) and returns how many.
  /// Waits for the page-table operations in flight and holds new ones back meanwhile, so it
  /// may run at any time, from any thread, but not from inside `with_page_table`'s function.
  std::uint64_t trim() noexcept {
    std::lock_guard lk(trim_mu_);
    trimming_.store(true, std::memory_order_seq_cst);
    for (const stripe& s : stripes_)
      while (s.active.load(std::memory_order_seq_cst) != 0) std::this_thread::yield();
    const std::uint64_t freed = pt_.trim();
    trimming_.store(false, std::memory_order_seq_cst);
    return freed;
  }

  /// Attaches a device: from now on every IOVA block of this domain also satisfies `dev`
  /// (the domain allocates inside the intersection of its devices' limits). Errors from
  /// iova_limits::try_intersect (not_addressable when nothing would be left; the domain is
  /// unchanged then). Not to be called concurrently with maps or reservations.
  [[nodiscard]] result<void> try_attach(const iova_limits& dev) noexcept {
    auto r = limits_.try_intersect(dev);
    if (!r) return r.error();
    limits_ = *r;
    ++devices_;
    return {};
  }
  /// What every block of this domain honours (the intersection of the attached devices).
  [[nodiscard]] const iova_limits& limits() const noexcept { return limits_; }

  // ---- the iommu_backend interface (map/iommu/iova_reservation.hpp) ---------------------------
  using source_space = cpu_phys;

  /// Reserves `len` bytes of IOVA inside the domain's limits and `extra` (a reservation's own).
  [[nodiscard]] result<iova_block> try_reserve_iova(std::uint64_t len,
                                                    const iova_limits& extra) noexcept {
    auto lim = limits_.try_intersect(extra);
    if (!lim) return lim.error();
    auto b = iova_.try_alloc(len, *lim);
    if (b) count(&stripe::live, 1);
    return b;
  }
  /// Reserves exactly [addr, addr + len): overlaps when any of it is taken; not_addressable
  /// when the domain's limits forbid it.
  [[nodiscard]] result<iova_block> try_reserve_iova_at(std::uint64_t addr,
                                                       std::uint64_t len) noexcept {
    if (len != 0 && !limits_.admits(addr, len)) return errc::not_addressable;
    auto b = iova_.try_alloc_at(addr, len);
    if (b) count(&stripe::live, 1);
    return b;
  }
  /// Unmaps whatever is still linked in the block and gives it back (its tables stay until
  /// `trim`).
  void release_iova(const iova_block& b) noexcept {
    {
      in_flight op{*this};
      (void)pt_.unmap_owned(b.addr, b.len);
    }
    iova_.free(b);
    count(&stripe::live, -1);
  }
  /// Maps page-aligned `src` at page-aligned `iova` (all-or-nothing; overlaps if taken).
  /// Like every link and unlink call, for a range inside a block the caller reserved, which
  /// no other thread links or unlinks in at the same time (what iova_reservation guarantees):
  /// the leaves are written as the range's owner's (io_page_table::try_map_owned).
  [[nodiscard]] result<void> try_link_iova(std::uint64_t iova, phys_range src,
                                           io_perm perm) noexcept {
    in_flight op{*this};
    typename page_table_type::walk_cache wc;
    return pt_.try_map_owned(iova, src.addr(), src.len(), perm, wc);
  }
  /// Unmaps [iova, iova + len); returns the bytes that were mapped. The page tables stay for
  /// the reservation's next links.
  std::uint64_t unlink_iova(std::uint64_t iova, std::uint64_t len) noexcept {
    in_flight op{*this};
    return pt_.unmap_owned(iova, len);
  }
  /// Runs `f(link)` as one page-table operation, where `link(iova, src, perm)` is
  /// try_link_iova sharing one walk cache: how a reservation links a whole list in one step.
  template <class F>
  decltype(auto) link_batch(F&& f) noexcept {
    in_flight op{*this};
    typename page_table_type::walk_cache wc;
    auto link = [this, &wc](std::uint64_t iova, phys_range src, io_perm perm) noexcept {
      return pt_.try_map_owned(iova, src.addr(), src.len(), perm, wc);
    };
    return std::forward<F>(f)(link);
  }
  /// The model's IOTLB flush: counted, since the model has no IOTLB.
  void sync_iova(std::uint64_t, std::uint64_t) noexcept { count(&stripe::syncs, 1); }

  /// Returns the IOVA blocks parked in the per-thread caches to the allocator's tree and frees
  /// the magazines (the page tables' counterpart is `trim`).
  void flush_iova_caches() noexcept { iova_.flush_caches(); }

  /// The IOVA allocator, for code that manages its own IOVA (legacy map_sg emulations, bridges).
  /// Thread-safe on its own.
  [[nodiscard]] iova_allocator_type& iova() noexcept { return iova_; }

  /// Runs `f(page_table_type&)` as one page-table operation and returns what it returns: the
  /// way for such code to map and unmap pages (`try_map`, `unmap`, `lookup`, all safe to call
  /// concurrently) consistently with mappers. `trim` waits until `f` returns, so `f` must
  /// not call `trim` (nor `page_table_type::trim`).
  template <class F>
  decltype(auto) with_page_table(F&& f) noexcept(
      std::is_nothrow_invocable_v<F&&, page_table_type&>) {
    in_flight op{*this};
    return std::forward<F>(f)(pt_);
  }

 private:
  template <class, segment_allocator>
  friend class iommu_mapper;
  template <class, segment_allocator>
  friend class iommu_mapping;

  /// What one thread slot counts (one cache line each, so threads do not share the lines they
  /// write). `active`: page-table operations in flight; the other counters may go negative
  /// in one slot (a mapping made by one thread and released by another).
  struct alignas(64) stripe {
    std::atomic<std::uint64_t> active{0};
    std::atomic<std::int64_t> maps{0};
    std::atomic<std::int64_t> unmaps{0};
    std::atomic<std::int64_t> failed_maps{0};
    std::atomic<std::int64_t> live{0};
    std::atomic<std::int64_t> syncs{0};
  };

  /// One page-table operation in flight (a scope): `trim` frees tables only when no thread is
  /// inside one. Entering increments the thread's slot and then checks that no trim is
  /// running (both sequentially consistent, against trim's flag store and slot loads: either
  /// the trim sees the increment and waits, or the operation sees the flag and steps back
  /// until the trim is done).
  class in_flight {
   public:
    explicit in_flight(const basic_iommu_domain& d) noexcept
        : s_(&d.stripes_[detail::this_thread_slot<detail::io_stripes>()]) {
      for (;;) {
        s_->active.fetch_add(1, std::memory_order_seq_cst);
        if (!d.trimming_.load(std::memory_order_seq_cst)) return;
        s_->active.fetch_sub(1, std::memory_order_seq_cst);
        std::lock_guard wait(d.trim_mu_);  // held by the trim until it is done
      }
    }
    in_flight(const in_flight&) = delete;
    in_flight& operator=(const in_flight&) = delete;
    ~in_flight() { s_->active.fetch_sub(1, std::memory_order_release); }

   private:
    stripe* s_;
  };

  void count(std::atomic<std::int64_t> stripe::*c, std::int64_t n) noexcept {
    (stripes_[detail::this_thread_slot<detail::io_stripes>()].*c).fetch_add(n, std::memory_order_relaxed);
  }
  [[nodiscard]] std::uint64_t sum(std::atomic<std::int64_t> stripe::*c) const noexcept {
    std::int64_t n = 0;
    for (const stripe& s : stripes_) n += (s.*c).load(std::memory_order_relaxed);
    return static_cast<std::uint64_t>(n);
  }

  /// Clears the page-table entries of an IOVA block and gives the block back: the release step
  /// of a mapping, whoever triggers it (try_unmap or the mapping's destructor).
  void release_block(std::uint64_t addr, std::uint64_t len) noexcept {
    {
      in_flight op{*this};
      [[maybe_unused]] const std::uint64_t bytes = pt_.unmap_owned(addr, len);
      PHYR_ASSERT(bytes != 0, "an IOMMU mapping with nothing in the page table");
    }
    iova_.free(addr, len);
    count(&stripe::unmaps, 1);
    count(&stripe::live, -1);
  }

  static iommu_domain_config checked(iommu_domain_config c) noexcept {
    PHYR_ASSERT(c.iova_bits >= 13 && c.iova_bits <= 48, "iova_bits must be 13..48");
    PHYR_ASSERT(c.iova_base % granule == 0, "iova_base must be a page multiple");
    if (c.iova_bits < 13) c.iova_bits = 13;
    if (c.iova_bits > 48) c.iova_bits = 48;
    c.iova_base &= ~(granule - 1);
    const std::uint64_t top = std::uint64_t{1} << c.iova_bits;
    PHYR_ASSERT(c.iova_base < top, "iova_base above the IOVA space");
    if (c.iova_base >= top) c.iova_base = top - granule;
    return c;
  }

  [[no_unique_address]] Alloc alloc_;
  iommu_domain_config cfg_;
  iova_allocator_type iova_;
  page_table_type pt_;
  mutable stripe stripes_[detail::io_stripes];
  std::atomic<bool> trimming_{false};
  mutable std::mutex trim_mu_;  // one trim at a time; operations that meet a trim wait on it
  iova_limits limits_{};
  std::uint64_t devices_ = 0;
};

/// The domain type outside code names: heap-backed.
using iommu_domain = basic_iommu_domain<>;

}  // namespace phyr
