/// `bounce_mapper`: a decorator over any mapper that copies what the device cannot reach
/// through a pool of memory it can (swiotlb, busdma's bounce pages, Windows' map registers).
///
///   struct dev32 {};                                   // a 32-bit device, RAM above 4 GiB
///   phyr::identity_mapper<dev32> direct;               // no IOMMU
///   auto pool = phyr::bounce_pool<>::create(low_memory, low_accessor);  // reachable, fixed size
///   auto bm = phyr::bounce_mapper<phyr::identity_mapper<dev32>>::create(
///       direct, *pool, ram_accessor, phyr::dma_constraints{.dma_mask = 0xffffffff});
///   auto mp = bm->try_map(buffer, phyr::dma_direction::from_device);
///   if (!mp) return mp.error();                        // bounce_exhausted, out_of_memory, ...
///   for (phyr::dma_range<dev32> r : *mp) post_rx(r);   // low pages as they are, high bounced
///   /* ... the device writes ... */
///   phyr::must(bm->try_sync_for_cpu(*mp));             // or try_unmap, which copies back too
///
/// What bounces. `reach` (the mapper's dma_constraints) is written in CPU physical addresses:
/// what the device reaches through the inner mapper. Each piece of an input range the device
/// can reach as it is (under the mask, in no excluded window, starting on `alignment`) goes to
/// the inner mapper unchanged: no copy. A range is cut where reachability changes, so the low
/// pages of a buffer straddling a 32-bit mask pass through and only the high ones bounce. Every
/// other piece is replaced by pool slots holding a copy of its bytes, from the start of a fresh
/// slot (so alignment up to the slot size holds); a range that starts misaligned bounces
/// whole. With a virtual boundary (`virt_boundary_mask != 0`) replacing single ranges would
/// leave gaps the device cannot describe, so if any range must bounce, or any junction
/// violates the boundary, the whole I/O is packed into consecutive slots instead (the Linux
/// block layer bounces a whole bio for the same reason). The transfer unit and the segment
/// limits are not the bounce mapper's business: split() handles those on the DMA list.
///
/// The pool (`bounce_pool`) is memory the caller provides, with its own phys list and its own
/// accessor, cut into fixed-size slots and never grown. When an I/O needs more slots than are
/// free the map fails with `errc::bounce_exhausted` and holds nothing. There is no deferral
/// hook (busdma queues the load and answers EINPROGRESS): the caller retries after an unmap
/// has given slots back.
///
/// Copies. Bounced bytes are copied in at try_map for every direction (Linux's swiotlb has done
/// the same since 5.17, commits ddbd89deb7d3 and aa6f8dcbab47: a device that writes only part
/// of a from_device buffer must not make the CPU read the pool's stale bytes back), to the device again by `try_sync_for_device` for
/// to_device and bidirectional mappings, and back by `try_sync_for_cpu` and `try_unmap` for
/// from_device and bidirectional ones. All copies go through `phys_memory_accessor`s: one for
/// the caller's memory, the pool's own for the slots. `Cache` is the cache-maintenance policy
/// (coherent_cache on x86: nothing); a non-coherent one is called on every range the device
/// sees, bounced or not, with the direction.
///
/// Lifetimes. A mapping holds what it must give back to (the pool) and its inner mapping; it
/// never points to the mapper. The pool, the inner mapper's back end and the caller's list must
/// outlive it. Destroying a live mapping releases it as try_unmap would (copy back included);
/// the pool asserts in debug builds if it dies with slots out.
///
/// Thread safety: none. try_map and try_unmap change the pool; serialise them, or give each
/// queue its own pool and mapper.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <new>
#include <type_traits>
#include <utility>

#include <phyr/config.hpp>
#include <phyr/container/range_list.hpp>
#include <phyr/core/accessor.hpp>
#include <phyr/core/allocator.hpp>
#include <phyr/core/error.hpp>
#include <phyr/core/page.hpp>
#include <phyr/core/range.hpp>
#include <phyr/device/constraints.hpp>
#include <phyr/map/mapper.hpp>

namespace phyr::inline v0 {

template <phys_memory_accessor Accessor = phys_accessor, segment_allocator Alloc = default_allocator>
class bounce_pool;
template <class Inner, phys_memory_accessor Accessor, segment_allocator Alloc>
class bounce_mapping;
template <phys_dma_mapper Inner, phys_memory_accessor Accessor = phys_accessor,
          cache_policy Cache = coherent_cache, segment_allocator Alloc = default_allocator>
class bounce_mapper;

/// A fixed pool of device-reachable memory cut into `slot_size()` slots. Made once by
/// `create` from the memory's phys list; allocates its slot table then, never again.
template <phys_memory_accessor Accessor, segment_allocator Alloc>
class bounce_pool {
 public:
  /// What a pool has done so far (for benchmarks and leak checks).
  struct pool_stats {
    std::uint64_t slots_out = 0;      ///< slots held by live mappings
    std::uint64_t bytes_copied = 0;   ///< bytes copied in and out, all directions
    std::uint64_t exhausted = 0;      ///< maps that failed with bounce_exhausted
  };

  /// A pool over `memory` (seen by the CPU through `acc`), in slots of `slot_size` bytes.
  /// Errors: invalid_argument (slot_size not a power of two, an empty list, an entry whose
  /// address or length is not a multiple of slot_size), not_mapped (`acc` cannot reach some of
  /// the memory), out_of_memory (the slot table).
  template <segment_allocator A>
  [[nodiscard]] static result<bounce_pool> create(const range_list<phys_range, A>& memory,
                                                  Accessor acc,
                                                  std::uint64_t slot_size = page_size,
                                                  Alloc alloc = Alloc{}) noexcept {
    if (slot_size == 0 || !std::has_single_bit(slot_size) || memory.empty())
      return errc::invalid_argument;
    std::uint64_t n = 0;
    for (const phys_range& r : memory) {
      if (((r.addr().value() | r.len()) & (slot_size - 1)) != 0) return errc::invalid_argument;
      if (auto p = acc.try_cpu_pointer(r); !p) return p.error();
      n += r.len() / slot_size;
    }
    bounce_pool p{acc, slot_size, alloc};
    if (auto r = p.allocate_table(n); !r) return r.error();
    std::uint64_t i = 0;
    for (const phys_range& r : memory) {
      std::byte* cpu = *acc.try_cpu_pointer(r);
      for (std::uint64_t off = 0; off < r.len(); off += slot_size, ++i) {
        p.slots_[i] = slot{r.addr().value() + off, cpu + off};
      }
    }
    return p;
  }

  bounce_pool(bounce_pool&& o) noexcept
      : acc_(o.acc_), alloc_(o.alloc_), slot_size_(o.slot_size_), slots_(o.slots_),
        free_(o.free_), count_(o.count_), free_count_(o.free_count_), stats_(o.stats_) {
    PHYR_ASSERT(o.stats_.slots_out == 0, "bounce_pool moved with slots out");
    o.slots_ = nullptr;
    o.free_ = nullptr;
    o.count_ = o.free_count_ = 0;
  }
  bounce_pool& operator=(bounce_pool&&) = delete;
  bounce_pool(const bounce_pool&) = delete;
  bounce_pool& operator=(const bounce_pool&) = delete;
  ~bounce_pool() {
    PHYR_ASSERT(stats_.slots_out == 0, "bounce_pool destroyed while mappings hold its slots");
    release_table();
  }

  [[nodiscard]] std::uint64_t slot_size() const noexcept { return slot_size_; }
  [[nodiscard]] std::uint64_t capacity() const noexcept { return count_; }
  [[nodiscard]] std::uint64_t free_slots() const noexcept { return free_count_; }
  [[nodiscard]] const pool_stats& stats() const noexcept { return stats_; }
  /// The accessor of the pool's memory: how the CPU (or a test playing the device) sees it.
  [[nodiscard]] const Accessor& accessor() const noexcept { return acc_; }

 private:
  template <phys_dma_mapper I, phys_memory_accessor Ac, cache_policy C, segment_allocator Al>
  friend class bounce_mapper;
  template <class I, phys_memory_accessor Ac, segment_allocator Al>
  friend class bounce_mapping;

  struct slot {
    std::uint64_t addr;
    std::byte* cpu;
  };
  static constexpr std::uint64_t npos = ~std::uint64_t{0};

  bounce_pool(Accessor acc, std::uint64_t slot_size, Alloc alloc) noexcept
      : acc_(acc), alloc_(alloc), slot_size_(slot_size) {}

  [[nodiscard]] result<void> allocate_table(std::uint64_t n) noexcept {
    const std::uint64_t words = (n + 63) / 64;
    auto* s = static_cast<slot*>(alloc_.allocate(n * sizeof(slot), alignof(slot)));
    if (s == nullptr) return errc::out_of_memory;
    auto* f = static_cast<std::uint64_t*>(
        alloc_.allocate(words * sizeof(std::uint64_t), alignof(std::uint64_t)));
    if (f == nullptr) {
      alloc_.deallocate(s, n * sizeof(slot), alignof(slot));
      return errc::out_of_memory;
    }
    for (std::uint64_t w = 0; w < words; ++w) f[w] = ~std::uint64_t{0};  // 1 = free
    if (n % 64 != 0) f[words - 1] = (std::uint64_t{1} << (n % 64)) - 1;
    slots_ = s;
    free_ = f;
    count_ = free_count_ = n;
    return {};
  }
  void release_table() noexcept {
    if (slots_ == nullptr) return;
    alloc_.deallocate(slots_, count_ * sizeof(slot), alignof(slot));
    alloc_.deallocate(free_, (count_ + 63) / 64 * sizeof(std::uint64_t), alignof(std::uint64_t));
    slots_ = nullptr;
    free_ = nullptr;
  }

  // The lowest free slot, so consecutive takes from a fresh pool are physically adjacent and
  // the DMA list coalesces them. Callers have checked free_slots() first.
  [[nodiscard]] std::uint64_t take() noexcept {
    for (std::uint64_t w = 0; w * 64 < count_; ++w) {
      if (free_[w] == 0) continue;
      const auto b = static_cast<unsigned>(std::countr_zero(free_[w]));
      free_[w] &= ~(std::uint64_t{1} << b);
      --free_count_;
      ++stats_.slots_out;
      return w * 64 + b;
    }
    return npos;
  }
  void give(std::uint64_t i) noexcept {
    PHYR_ASSERT(i < count_ && (free_[i / 64] >> (i % 64) & 1) == 0, "bounce slot freed twice");
    free_[i / 64] |= std::uint64_t{1} << (i % 64);
    ++free_count_;
    --stats_.slots_out;
  }

  Accessor acc_;
  Alloc alloc_;
  std::uint64_t slot_size_ = page_size;
  slot* slots_ = nullptr;
  std::uint64_t* free_ = nullptr;
  std::uint64_t count_ = 0;
  std::uint64_t free_count_ = 0;
  pool_stats stats_{};
};

namespace detail {

/// One bounced piece: `len` bytes of the caller's memory at `cpu`, copied at `bounce` (inside
/// pool slot `slot`), `io_offset` bytes into the mapping's data.
struct bounce_record {
  std::byte* cpu;
  std::byte* bounce;
  std::uint64_t len;
  std::uint64_t io_offset;
  std::uint64_t slot;
};

}  // namespace detail

/// What `bounce_mapper::try_map` returns: the inner mapper's DMA ranges (bounced pieces at pool
/// addresses), plus what the mapping must copy and give back. Move-only; RAII (see the file
/// comment); an empty (default-built, moved-from or unmapped) mapping is foreign to every
/// mapper.
template <class Inner, phys_memory_accessor Accessor, segment_allocator Alloc>
class bounce_mapping {
  using inner_mapping = slice_mapping_t<Inner>;  // the inner mapper maps views
  using pool_type = bounce_pool<Accessor, Alloc>;
  using list_type = range_list<phys_range, Alloc>;

 public:
  using space_type = typename Inner::space_type;
  using value_type = range<space_type>;
  using const_iterator = decltype(std::declval<const inner_mapping&>().begin());
  using iterator = const_iterator;

  bounce_mapping() noexcept = default;
  bounce_mapping(bounce_mapping&& o) noexcept { take(o); }
  bounce_mapping& operator=(bounce_mapping&& o) noexcept {
    if (this != &o) {
      release();
      take(o);
    }
    return *this;
  }
  bounce_mapping(const bounce_mapping&) = delete;
  bounce_mapping& operator=(const bounce_mapping&) = delete;
  ~bounce_mapping() { release(); }

  [[nodiscard]] const_iterator begin() const noexcept { return inner_.begin(); }
  [[nodiscard]] const_iterator end() const noexcept { return inner_.end(); }
  [[nodiscard]] std::size_t size() const noexcept { return inner_.size(); }
  // size(), not the inner mapping's empty(): dma_mapping promises only size().
  [[nodiscard]] bool empty() const noexcept { return inner_.size() == 0; }
  [[nodiscard]] std::uint64_t total_bytes() const noexcept { return inner_.total_bytes(); }
  /// True from a successful `try_map` until `try_unmap`, destruction or a move away.
  [[nodiscard]] bool mapped() const noexcept { return owner_ != 0; }
  /// Bytes of the I/O that went through the pool (0: everything passed through).
  [[nodiscard]] std::uint64_t bounced_bytes() const noexcept { return bounced_bytes_; }
  /// Pool slots this mapping holds.
  [[nodiscard]] std::uint64_t bounce_slots() const noexcept { return nslots_; }
  [[nodiscard]] dma_direction direction() const noexcept { return dir_; }
  /// The mapping of the inner mapper (over the caller's list, or the list with bounce slots).
  [[nodiscard]] const inner_mapping& inner() const noexcept { return inner_; }

 private:
  template <phys_dma_mapper I, phys_memory_accessor Ac, cache_policy C, segment_allocator Al>
  friend class bounce_mapper;

  void take(bounce_mapping& o) noexcept {
    inner_ = std::move(o.inner_);
    device_list_ = o.device_list_;
    records_ = o.records_;
    nrecords_ = o.nrecords_;
    cap_records_ = o.cap_records_;
    nslots_ = o.nslots_;
    bounced_bytes_ = o.bounced_bytes_;
    pool_ = o.pool_;
    dir_ = o.dir_;
    src_ = o.src_;
    owner_ = o.owner_;
    o.device_list_ = nullptr;
    o.records_ = nullptr;
    o.nrecords_ = o.cap_records_ = o.nslots_ = o.bounced_bytes_ = 0;
    o.pool_ = nullptr;
    o.src_ = range_list_view<phys_range>{};
    o.owner_ = 0;
  }

  // Copies the part of every record inside [off, off + len) of the I/O, one way or the other.
  void copy(std::uint64_t off, std::uint64_t len, bool to_bounce) const noexcept {
    std::uint64_t moved = 0;
    for (std::size_t i = 0; i < nrecords_; ++i) {
      const detail::bounce_record& r = records_[i];
      const std::uint64_t lo = r.io_offset > off ? r.io_offset : off;
      const std::uint64_t r_end = r.io_offset + r.len;
      const std::uint64_t end = off + len < r_end ? off + len : r_end;
      if (lo >= end) continue;
      const std::uint64_t skip = lo - r.io_offset;
      const auto n = static_cast<std::size_t>(end - lo);
      if (to_bounce) {
        __builtin_memcpy(r.bounce + skip, r.cpu + skip, n);
      } else {
        __builtin_memcpy(r.cpu + skip, r.bounce + skip, n);
      }
      moved += n;
    }
    if (pool_ != nullptr) pool_->stats_.bytes_copied += moved;
  }

  // What the device sees, in CPU physical terms: the list with bounce slots, or the caller's.
  template <class F>
  void for_each_device_range(std::uint64_t off, std::uint64_t len, F&& f) const noexcept {
    std::uint64_t pos = 0;
    auto visit = [&](const phys_range& r) {
      const std::uint64_t lo = pos > off ? pos : off;
      const std::uint64_t end = off + len < pos + r.len() ? off + len : pos + r.len();
      if (lo < end)
        f(phys_range{phys_addr{r.addr().value() + (lo - pos)}, end - lo, r.flags()});
      pos += r.len();
    };
    if (device_list_ != nullptr) {
      for (const phys_range& r : *device_list_) visit(r);
    } else {
      for (const phys_range& r : src_) visit(r);
    }
  }

  // Gives everything back; copies back first when the device may have written.
  void release() noexcept {
    if (owner_ == 0) return;
    if (dir_ != dma_direction::to_device) copy(0, ~std::uint64_t{0}, false);
    finish();
  }
  // Frees without copying (the last step of unmap and of a failed map). The inner mapping
  // goes first: it may borrow the device list.
  void finish() noexcept {
    { [[maybe_unused]] const inner_mapping dead = std::move(inner_); }
    for (std::size_t i = 0; i < nrecords_; ++i) {
      // Records of one slot are consecutive; give each slot back once.
      if (i == 0 || records_[i - 1].slot != records_[i].slot) pool_->give(records_[i].slot);
    }
    if (device_list_ != nullptr) {
      Alloc a = device_list_->get_allocator();
      device_list_->~list_type();
      a.deallocate(device_list_, sizeof(list_type), alignof(list_type));
      device_list_ = nullptr;
    }
    if (records_ != nullptr) {
      Alloc a = pool_->alloc_;
      a.deallocate(records_, cap_records_ * sizeof(detail::bounce_record),
                   alignof(detail::bounce_record));
      records_ = nullptr;
    }
    nrecords_ = cap_records_ = nslots_ = bounced_bytes_ = 0;
    src_ = range_list_view<phys_range>{};
    owner_ = 0;
  }

  inner_mapping inner_{};
  list_type* device_list_ = nullptr;  // the list given to the inner mapper when something bounced
  detail::bounce_record* records_ = nullptr;
  std::size_t nrecords_ = 0;
  std::size_t cap_records_ = 0;
  std::uint64_t nslots_ = 0;
  std::uint64_t bounced_bytes_ = 0;
  pool_type* pool_ = nullptr;
  dma_direction dir_ = dma_direction::to_device;
  range_list_view<phys_range> src_{};  // the caller's list (borrowed)
  std::uint64_t owner_ = 0;            // detail::mapper_id of the mapper that made it; 0 = none
};

/// The bounce decorator over `Inner` (any mapper of physical lists). Holds pointers to the inner mapper and
/// the pool, which must outlive it; its mappings point to the pool only.
template <phys_dma_mapper Inner, phys_memory_accessor Accessor, cache_policy Cache,
          segment_allocator Alloc>
class bounce_mapper {
 public:
  using mapper_concept = dma_mapper_tag;
  using source_space = cpu_phys;
  using bus_type = typename Inner::bus_type;
  using space_type = typename Inner::space_type;
  using mapping = bounce_mapping<Inner, Accessor, Alloc>;
  using pool_type = bounce_pool<Accessor, Alloc>;

  /// A bounce mapper for a device with constraints `reach`, whose CPU-side memory is seen
  /// through `cpu`. Errors: invalid_argument (`reach` fails check(); the pool's slots are
  /// smaller than `reach.alignment`, or not a multiple of `virt_boundary_mask + 1`, so bounced
  /// data could not meet them), not_addressable (some pool slot is one the device cannot
  /// reach: the pool would not help).
  [[nodiscard]] static result<bounce_mapper> create(Inner& inner, pool_type& pool, Accessor cpu,
                                                    const dma_constraints& reach) noexcept {
    if (auto r = reach.check(); !r) return r.error();
    if (pool.slot_size() < reach.alignment) return errc::invalid_argument;
    if (reach.virt_boundary_mask != 0 && (pool.slot_size() & reach.virt_boundary_mask) != 0)
      return errc::invalid_argument;
    for (std::uint64_t i = 0; i < pool.count_; ++i) {
      const std::uint64_t a = pool.slots_[i].addr;
      if (!reach.reaches(a, a + (pool.slot_size() - 1))) return errc::not_addressable;
    }
    return bounce_mapper{inner, pool, cpu, reach};
  }

  /// Maps `list`: reachable ranges as they are, the rest through pool slots (file comment).
  /// Errors: invalid_argument (empty list, bad direction), bounce_exhausted (not enough free
  /// slots), not_mapped (the CPU accessor cannot reach a range that must be copied),
  /// out_of_memory, and whatever the inner mapper reports. A failure holds nothing.
  template <segment_allocator A>
  [[nodiscard]] result<mapping> try_map(const range_list<phys_range, A>& list,
                                        dma_direction dir) const noexcept {
    return try_map(list.view(), dir);
  }
  /// A mapping borrows the caller's list, so a temporary list cannot be mapped.
  template <segment_allocator A>
  result<mapping> try_map(range_list<phys_range, A>&&, dma_direction) const noexcept = delete;
  template <segment_allocator A>
  result<mapping> try_map(const range_list<phys_range, A>&&, dma_direction) const noexcept = delete;

  /// The same for a view; the borrow is on the list behind it.
  [[nodiscard]] result<mapping> try_map(range_list_view<phys_range> view,
                                        dma_direction dir) const noexcept {
    if (!is_valid(dir) || view.empty()) return errc::invalid_argument;
    const plan p = make_plan(view);
    mapping mp;
    mp.pool_ = pool_;
    mp.dir_ = dir;
    mp.src_ = view;
    if (p.slots == 0) {
      auto in = inner_->try_map(view, dir);
      if (!in) return in.error();
      mp.inner_ = std::move(*in);
      mp.owner_ = id_.value();
      run_cache_for_device(mp, {});
      return mp;
    }
    if (p.slots > pool_->free_slots()) {
      ++pool_->stats_.exhausted;
      return errc::bounce_exhausted;
    }
    if (auto r = fill(mp, view, p); !r) {
      mp.finish();
      return r.error();
    }
    mp.copy(0, ~std::uint64_t{0}, true);
    auto in = inner_->try_map(mp.device_list_->view(), dir);
    if (!in) {
      mp.finish();
      return in.error();
    }
    mp.inner_ = std::move(*in);
    mp.owner_ = id_.value();
    run_cache_for_device(mp, {});
    return mp;
  }

  /// Copies the caller's bytes in `r` to their bounce slots (to_device and bidirectional
  /// mappings; nothing for from_device) and runs the cache policy. Errors: foreign_mapping (not
  /// ours, or already unmapped), out_of_range (`r` past the mapping's bytes).
  [[nodiscard]] result<void> try_sync_for_device(const mapping& mp,
                                                 dma_sync_range r = {}) const noexcept {
    auto span = check_sync(mp, r);
    if (!span) return span.error();
    if (mp.dir_ != dma_direction::from_device) mp.copy(span->offset, span->len, true);
    run_cache_for_device(mp, *span);
    return {};
  }
  /// Runs the cache policy and copies the bounce slots' bytes in `r` back to the caller's
  /// memory (from_device and bidirectional mappings; nothing for to_device). Errors as
  /// try_sync_for_device.
  [[nodiscard]] result<void> try_sync_for_cpu(const mapping& mp,
                                              dma_sync_range r = {}) const noexcept {
    auto span = check_sync(mp, r);
    if (!span) return span.error();
    if constexpr (!Cache::coherent) {
      mp.for_each_device_range(span->offset, span->len,
                               [&](const phys_range& x) { Cache::for_cpu(x, mp.dir_); });
    }
    if (mp.dir_ != dma_direction::to_device) mp.copy(span->offset, span->len, false);
    return {};
  }

  /// Copies back (from_device, bidirectional), unmaps the inner mapping and gives the slots
  /// back. Errors: foreign_mapping (not ours, or already unmapped; `m` is left as it was), or
  /// the inner mapper's unmap error (`m` is left mapped, nothing copied).
  [[nodiscard]] result<void> try_unmap(mapping&& m) const noexcept {
    if (!id_.owns(m.owner_)) return errc::foreign_mapping;
    if (auto r = unmap_inner(m.inner_); !r) return r.error();
    if constexpr (!Cache::coherent) {
      m.for_each_device_range(0, ~std::uint64_t{0},
                              [&](const phys_range& x) { Cache::for_cpu(x, m.dir_); });
    }
    if (m.dir_ != dma_direction::to_device) m.copy(0, ~std::uint64_t{0}, false);
    m.finish();
    return {};
  }
  /// The name the mapper concept asks for today; try_unmap is the one to call.
  [[nodiscard]] result<void> unmap(mapping&& m) const noexcept { return try_unmap(std::move(m)); }

  [[nodiscard]] const dma_constraints& constraints() const noexcept { return reach_; }
  [[nodiscard]] const pool_type& pool() const noexcept { return *pool_; }

 private:
  struct plan {
    std::uint64_t slots = 0;    // pool slots the I/O needs (0: nothing bounces)
    std::uint64_t records = 0;  // upper bound of bounce records
    bool whole = false;         // pack the whole I/O (virtual boundary)
  };

  bounce_mapper(Inner& inner, pool_type& pool, Accessor cpu, const dma_constraints& reach) noexcept
      : inner_(&inner), pool_(&pool), cpu_(cpu), reach_(reach) {}

  // Calls f(piece, bounce) for the pieces of `r` in order: what the device reaches as it is
  // (bounce = false) and what it does not (above the mask, in an excluded window, or starting
  // off `alignment`). A range that starts misaligned bounces whole.
  template <class F>
  void for_each_piece(const phys_range& r, F&& f) const noexcept {
    const std::uint64_t a = r.addr().value();
    const std::uint64_t last = r.last().value();
    const std::uint64_t amask = reach_.alignment - 1;
    if ((a & amask) != 0) {
      f(r, true);
      return;
    }
    for (std::uint64_t pos = a;;) {
      std::uint64_t end = last;
      bool bounce = false;
      if (pos > reach_.dma_mask) {
        bounce = true;
      } else {
        if (reach_.dma_mask < end) end = reach_.dma_mask;
        for (const address_window& w : reach_.excluded) {
          if (w.addr <= pos && pos <= w.last()) {
            bounce = true;
            if (w.last() < end) end = w.last();
          }
        }
        if (!bounce) {
          for (const address_window& w : reach_.excluded) {
            if (w.addr > pos && w.addr - 1 < end) end = w.addr - 1;
          }
          bounce = (pos & amask) != 0;  // a piece after a window starts a new segment
        }
      }
      f(phys_range{phys_addr{pos}, end - pos + 1, r.flags()}, bounce);
      if (end == last) return;
      pos = end + 1;
    }
  }

  // One pass: which pieces bounce and how many slots that takes.
  [[nodiscard]] plan make_plan(range_list_view<phys_range> view) const noexcept {
    const std::uint64_t s = pool_->slot_size();
    const std::uint64_t vmask = reach_.virt_boundary_mask;
    plan p;
    bool gap_violation = false;
    bool first = true;
    std::uint64_t prev_last = 0;
    for (const phys_range& r : view) {
      for_each_piece(r, [&](const phys_range& x, bool bounce) {
        if (bounce) p.slots += detail::ceil_div(x.len(), s);
      });
      if (vmask != 0 && !first) {
        const std::uint64_t a = r.addr().value();
        const bool contiguous = prev_last != ~std::uint64_t{0} && a == prev_last + 1;
        if (!contiguous && (((prev_last + 1) | a) & vmask) != 0) gap_violation = true;
      }
      prev_last = r.last().value();
      first = false;
    }
    p.records = p.slots;
    if (vmask != 0 && (p.slots != 0 || gap_violation)) {
      p.whole = true;
      p.slots = detail::ceil_div(view.total_bytes(), s);
      p.records = p.slots + view.size();  // a piece ends at a slot end or a range end
    }
    return p;
  }

  // Takes the slots, records every piece and builds the list the inner mapper sees. On error
  // the caller calls mp.finish(), which gives back whatever was taken.
  [[nodiscard]] result<void> fill(mapping& mp, range_list_view<phys_range> view,
                                  const plan& p) const noexcept {
    using list_type = typename mapping::list_type;
    Alloc a = pool_->alloc_;
    void* lm = a.allocate(sizeof(list_type), alignof(list_type));
    if (lm == nullptr) return errc::out_of_memory;
    mp.device_list_ = ::new (lm) list_type(a);
    auto* rec = static_cast<detail::bounce_record*>(
        a.allocate(p.records * sizeof(detail::bounce_record), alignof(detail::bounce_record)));
    if (rec == nullptr) return errc::out_of_memory;
    mp.records_ = rec;
    mp.cap_records_ = p.records;
    const std::uint64_t s = pool_->slot_size();
    std::uint64_t io = 0;         // offset of the current piece in the I/O
    std::uint64_t used = s;       // bytes used in the current slot (s: take a new one)
    std::uint64_t slot_i = 0;
    errc err{};
    auto bounce_piece = [&](const phys_range& x) -> bool {
      auto cpu = cpu_.try_cpu_pointer(x);
      if (!cpu) {
        err = cpu.error();
        return false;
      }
      if (!p.whole) used = s;  // each piece starts a fresh slot, so it starts aligned
      for (std::uint64_t off = 0; off < x.len();) {
        if (used == s) {
          slot_i = pool_->take();
          PHYR_ASSERT(slot_i != pool_type::npos, "bounce pool ran dry after the count");
          // Record the slot at once, so finish() gives it back even if nothing lands in it.
          mp.records_[mp.nrecords_++] =
              detail::bounce_record{*cpu + off, pool_->slots_[slot_i].cpu, 0, io + off, slot_i};
          ++mp.nslots_;
          used = 0;
        } else if (mp.records_[mp.nrecords_ - 1].len != 0) {
          // A new piece in a packed slot: a new record in the same slot.
          mp.records_[mp.nrecords_++] = detail::bounce_record{
              *cpu + off, pool_->slots_[slot_i].cpu + used, 0, io + off, slot_i};
        }
        const std::uint64_t n = x.len() - off < s - used ? x.len() - off : s - used;
        mp.records_[mp.nrecords_ - 1].len = n;
        const phys_range piece{phys_addr{pool_->slots_[slot_i].addr + used}, n,
                               p.whole ? range_flags::none : x.flags()};
        if (auto r = mp.device_list_->try_append(piece); !r) {
          err = r.error();
          return false;
        }
        used += n;
        off += n;
        mp.bounced_bytes_ += n;
      }
      return true;
    };
    for (const phys_range& r : view) {
      bool ok = true;
      if (p.whole) {
        ok = bounce_piece(r);
        io += r.len();
      } else {
        for_each_piece(r, [&](const phys_range& x, bool bounce) {
          if (!ok) return;
          if (bounce) {
            ok = bounce_piece(x);
          } else if (auto e = mp.device_list_->try_append(x); !e) {
            err = e.error();
            ok = false;
          }
          io += x.len();
        });
      }
      if (!ok) return err;
    }
    return {};
  }

  [[nodiscard]] result<dma_sync_range> check_sync(const mapping& mp,
                                                  dma_sync_range r) const noexcept {
    if (!id_.owns(mp.owner_)) return errc::foreign_mapping;
    const std::uint64_t total = mp.total_bytes();
    if (r.offset > total) return errc::out_of_range;
    if (r.len == ~std::uint64_t{0}) r.len = total - r.offset;
    if (r.len > total - r.offset) return errc::out_of_range;
    return r;
  }

  void run_cache_for_device(const mapping& mp, dma_sync_range r) const noexcept {
    if constexpr (!Cache::coherent) {
      mp.for_each_device_range(r.offset, r.len,
                               [&](const phys_range& x) { Cache::for_device(x, mp.dir_); });
    } else {
      (void)mp, (void)r;
    }
  }

  [[nodiscard]] result<void> unmap_inner(typename mapping::inner_mapping& in) const noexcept {
    if (auto r = inner_->try_unmap(std::move(in)); !r) return r.error();
    return {};
  }

  Inner* inner_;
  pool_type* pool_;
  Accessor cpu_;
  dma_constraints reach_;
  detail::mapper_id id_{};
};

}  // namespace phyr::inline v0
