/// IOVA allocator: size-aligned blocks of an I/O virtual address space, thread-safe, with a
/// per-thread cache of recently freed small blocks (the magazine "rcache" of Linux's iova.c).
///
///   phyr::iova_allocator<> iova{/*base=*/0x1000, /*end=*/std::uint64_t{1} << 48};
///   auto b = iova.try_alloc(3 * phyr::page_size);  // 3 pages -> a 4-page block, 4-page aligned
///   if (!b) return b.error();            // errc::exhausted or errc::out_of_memory
///   use(b->addr, b->len);
///   iova.free(*b);                       // parked in this thread's cache; reused first
///
///   phyr::iova_limits lim;               // what one device can reach
///   lim.max_addr = 0xffff'ffff;          // a 32-bit DMA mask
///   lim.boundary = 1 << 16;              // no block crosses a 64 KiB line
///   phyr::must(lim.try_allow(0x1000, 0xfee0'0000 - 0x1000));  // below the MSI window
///   auto c = iova.try_alloc(8 * phyr::page_size, lim);
///
/// Addresses and lengths are bytes; the granule is phyr's base page (core/page.hpp), so every
/// block starts and ends on a page. Inside, the allocator works in pages (pfn = addr >> 12).
///
/// Alignment policy (the Linux choice, with one cap):
///  - n <= `max_cached_pages` (32): the block is rounded up to a power of two and aligned to
///    it. All blocks of one size class are then interchangeable, which is what lets the cache
///    hand a freed block to any later request of the class (Linux rounds for the same reason).
///  - larger n: exactly n pages, aligned to the next power of two of n but at most to
///    `max_align_pages` (1 GiB of 4 KiB pages). Size alignment is what lets an I/O page table
///    use 2 MiB and 1 GiB leaves; aligning beyond the largest leaf buys nothing and would
///    waste up to half the space on huge requests.
///
/// Structure: free extents [start, start + len) in a treap keyed by start and augmented with
/// the largest extent of each subtree (lowest-address fit in O(log n) expected, or O(k) when
/// k large extents fail on alignment). Each block handed out reserves one tree node up front,
/// so `free` never allocates and never fails. The cache: `cache_slots` slots, each thread
/// bound to one by a thread_local index (per-CPU in spirit: no per-thread state outlives a
/// thread or an allocator), holding a loaded and a previous magazine of 126 pfns per size
/// class, plus a shared depot of full magazines. Allocation tries the slot, then the depot,
/// then the tree; when the tree is exhausted every cache is flushed and the tree tried again.
///
/// Bad frees: every block handed out is recorded (pfn and size) in a small sharded hash set of
/// live blocks, so a free of a block that is not out (a double free, through the cache path as
/// well as the tree path, or a free with the wrong size) is detected whichever way the first
/// free went: it asserts in debug builds and, in release builds, is ignored and counted
/// (`stats().rejected_frees`), never corrupting the tree or entering a magazine twice. The set
/// costs one shard lock and a probe per allocation and free (and a small table allocation the
/// first time a shard is used; an emptied shard keeps its table until `flush_caches`); 64
/// shards keep threads apart. The counters every call updates (live, cached, cache hits and
/// misses) live in the calling thread's cache slot, so two threads allocating in parallel
/// write no common cache line on the cached path.
///
/// Device constraints (`iova_limits`, per request): a highest address (the DMA mask), a list of
/// allowed windows (iommufd's IOVA_RANGES, the holes around VFIO's reserved MSI window), a
/// boundary no block may cross and a minimum alignment. The lowest fitting block is returned;
/// a constrained request may still be served by the cache when the cached block happens to
/// satisfy the limits. `iova_limits::try_intersect` gives what a domain shared by several
/// devices must honour. Fixed placement (`try_alloc_at`, iommufd's FIXED_IOVA) takes exactly
/// the block asked for or fails with `overlaps` and changes nothing.
///
/// Guard pages (`iova_guard::page`, for the whole allocator, FreeBSD iommu_gas's rule): every
/// block keeps at least one free page before and after it, so an access running off either
/// end faults instead of reaching a neighbour. With base 0x1000 one-page blocks then land at
/// 0x2000, 0x4000, 0x6000, as in an empty FreeBSD domain (whose page 0 is a placeholder).
/// Guards are free pages that no block of this allocator can ever take, so they cost IOVA
/// space only; the cache keeps working (a cached block sits where guarded allocation put it).
///
/// Invariants: with no block out and the caches flushed, the allocator holds no memory at all
/// (construction cannot fail and allocates nothing); a failed `try_alloc` leaves the allocator
/// as it was; `undo` of the block just allocated restores its memory exactly.
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <new>
#include <utility>

#include <phyr/config.hpp>
#include <phyr/core/allocator.hpp>
#include <phyr/core/detail/thread_slot.hpp>
#include <phyr/core/error.hpp>
#include <phyr/core/page.hpp>

namespace phyr::inline v0 {

/// A block handed out by `iova_allocator::try_alloc`: [addr, addr + len).
struct iova_block {
  std::uint64_t addr = 0;   ///< first byte (page-aligned)
  std::uint64_t len = 0;    ///< as requested, rounded up to whole pages (the allocator
                            ///< re-derives any further rounding of small blocks)
  bool from_cache = false;  ///< served by the per-thread cache (lets `undo` put it back)
};

/// Whether an allocator keeps a free guard page on each side of every block.
enum class iova_guard : bool { none, page };

/// One allowed IOVA window [addr, addr + len).
struct iova_window {
  std::uint64_t addr = 0;
  std::uint64_t len = 0;
  [[nodiscard]] constexpr std::uint64_t last() const noexcept { return addr + (len - 1); }
  friend constexpr bool operator==(const iova_window&, const iova_window&) noexcept = default;
};

/// What one device (or the devices sharing a domain) can use. Default: no limit at all.
struct iova_limits {
  static constexpr std::size_t max_windows = 16;
  std::uint64_t max_addr = ~std::uint64_t{0};  ///< highest byte a block may hold (the DMA mask)
  std::uint64_t boundary = 0;  ///< power of two: no block crosses a multiple of it; 0 = none
  std::uint64_t align = 0;     ///< power of two: least block alignment in bytes; 0 = none
  iova_window windows[max_windows] = {};  ///< sorted, disjoint; none = the whole space
  std::size_t window_count = 0;

  /// Adds an allowed window (page-aligned). invalid_argument for len 0 or a wrapping end,
  /// misaligned, overlaps with a window already there, too_long past `max_windows`.
  [[nodiscard]] constexpr result<void> try_allow(std::uint64_t addr, std::uint64_t len) noexcept {
    if (len == 0 || len - 1 > ~addr) return errc::invalid_argument;
    if (((addr | len) & page_mask) != 0) return errc::misaligned;
    const iova_window w{addr, len};
    std::size_t pos = 0;
    while (pos < window_count && windows[pos].addr < addr) ++pos;
    if (pos > 0 && windows[pos - 1].last() >= addr) return errc::overlaps;
    if (pos < window_count && windows[pos].addr <= w.last()) return errc::overlaps;
    if (window_count == max_windows) return errc::too_long;
    for (std::size_t i = window_count; i > pos; --i) windows[i] = windows[i - 1];
    windows[pos] = w;
    ++window_count;
    return {};
  }
  /// invalid_argument unless boundary and align are 0 or powers of two (page multiples).
  [[nodiscard]] constexpr result<void> check() const noexcept {
    for (std::uint64_t v : {boundary, align})
      if (v != 0 && (!std::has_single_bit(v) || v < page_size)) return errc::invalid_argument;
    return {};
  }
  /// Whether [addr, addr + len) satisfies every limit.
  [[nodiscard]] constexpr bool admits(std::uint64_t addr, std::uint64_t len) const noexcept {
    if (len == 0 || len - 1 > max_addr || addr > max_addr - (len - 1)) return false;
    if (align != 0 && (addr & (align - 1)) != 0) return false;
    if (boundary != 0 && (addr & ~(boundary - 1)) != ((addr + len - 1) & ~(boundary - 1)))
      return false;
    if (window_count == 0) return true;
    for (std::size_t i = 0; i < window_count; ++i)
      if (addr >= windows[i].addr && addr + (len - 1) <= windows[i].last()) return true;
    return false;
  }
  /// The limits of two devices at once: the lower mask, the smaller boundary, the larger
  /// alignment and the windows both allow. not_addressable when nothing is left; too_long
  /// when the intersection has more than `max_windows` windows; invalid_argument from check().
  [[nodiscard]] constexpr result<iova_limits> try_intersect(const iova_limits& o) const noexcept {
    if (auto c = check(); !c) return c.error();
    if (auto c = o.check(); !c) return c.error();
    iova_limits r;
    r.max_addr = max_addr < o.max_addr ? max_addr : o.max_addr;
    r.boundary = boundary == 0 ? o.boundary
                 : o.boundary == 0 ? boundary
                 : boundary < o.boundary ? boundary : o.boundary;
    r.align = align > o.align ? align : o.align;
    if (window_count == 0 && o.window_count == 0) return r;
    const iova_window all{0, 0};
    const iova_window* a = window_count != 0 ? windows : &all;
    const iova_window* b = o.window_count != 0 ? o.windows : &all;
    const std::size_t na = window_count != 0 ? window_count : 1;
    const std::size_t nb = o.window_count != 0 ? o.window_count : 1;
    auto last_of = [](const iova_window& w) { return w.len == 0 ? ~std::uint64_t{0} : w.last(); };
    for (std::size_t i = 0, j = 0; i < na && j < nb;) {
      const std::uint64_t lo = a[i].addr > b[j].addr ? a[i].addr : b[j].addr;
      const std::uint64_t la = last_of(a[i]);
      const std::uint64_t lb = last_of(b[j]);
      const std::uint64_t hi = la < lb ? la : lb;
      if (lo <= hi) {
        if (r.window_count == max_windows) return errc::too_long;
        r.windows[r.window_count++] = iova_window{lo, hi - lo + 1};
      }
      if (la < lb) ++i; else ++j;
    }
    if (r.window_count == 0) return errc::not_addressable;
    return r;
  }
};

struct iova_allocator_stats {
  std::uint64_t live_blocks = 0;     ///< handed out, not freed
  std::uint64_t cached_blocks = 0;   ///< freed, parked in the cache (still taken from the tree)
  std::uint64_t free_extents = 0;    ///< nodes of the free-extent tree
  std::uint64_t free_pages = 0;      ///< pages in the tree (cached blocks excluded)
  std::uint64_t cache_hits = 0;      ///< small allocations served by the cache
  std::uint64_t cache_misses = 0;    ///< small allocations that went to the tree
  std::uint64_t magazines = 0;       ///< magazines allocated
  std::uint64_t metadata_bytes = 0;  ///< tree nodes + magazines + live-set tables held
  std::uint64_t rejected_frees = 0;  ///< frees of blocks that were not out (double frees)
};

namespace detail {

struct iova_node {
  std::uint64_t start;
  std::uint64_t len;
  std::uint64_t max_len;  // largest len in this subtree
  iova_node* left;
  iova_node* right;
  std::uint32_t prio;
};

/// 1 KiB, like Linux's: a count, a depot link and 126 pfns.
struct iova_magazine {
  static constexpr std::uint32_t capacity = 126;
  std::uint32_t count;
  iova_magazine* next;
  std::uint64_t pfns[capacity];
};
static_assert(sizeof(iova_magazine) == 1024);

/// One tree search, in pages: a block of `size` aligned to `align` inside [lo, hi), not
/// crossing a multiple of `boundary` (0: no boundary), `guard` free pages kept on each side.
struct iova_search {
  std::uint64_t lo;
  std::uint64_t hi;
  std::uint64_t size;
  std::uint64_t align;
  std::uint64_t boundary;
  std::uint64_t guard;
};

/// Treap primitives (split/merge). Recursion depth is the treap depth: O(log n) expected.
struct iova_treap {
  static std::uint64_t max_of(const iova_node* n) noexcept { return n ? n->max_len : 0; }
  static void pull(iova_node* n) noexcept {
    n->max_len = std::max({n->len, max_of(n->left), max_of(n->right)});
  }
  /// a: start < key, b: start >= key.
  static void split(iova_node* t, std::uint64_t key, iova_node*& a, iova_node*& b) noexcept {
    if (t == nullptr) {
      a = b = nullptr;
      return;
    }
    if (t->start < key) {
      split(t->right, key, t->right, b);
      a = t;
      pull(a);
    } else {
      split(t->left, key, a, t->left);
      b = t;
      pull(b);
    }
  }
  /// Every key of a below every key of b.
  static iova_node* merge(iova_node* a, iova_node* b) noexcept {
    if (a == nullptr) return b;
    if (b == nullptr) return a;
    if (a->prio > b->prio) {
      a->right = merge(a->right, b);
      pull(a);
      return a;
    }
    b->left = merge(a, b->left);
    pull(b);
    return b;
  }
  static iova_node* pop_min(iova_node*& t) noexcept {
    if (t->left == nullptr) {
      iova_node* m = t;
      t = t->right;
      m->right = nullptr;
      return m;
    }
    iova_node* m = pop_min(t->left);
    pull(t);
    return m;
  }
  static iova_node* pop_max(iova_node*& t) noexcept {
    if (t->right == nullptr) {
      iova_node* m = t;
      t = t->left;
      m->left = nullptr;
      return m;
    }
    iova_node* m = pop_max(t->right);
    pull(t);
    return m;
  }
  static const iova_node* peek_min(const iova_node* t) noexcept {
    if (t != nullptr)
      while (t->left != nullptr) t = t->left;
    return t;
  }
  static const iova_node* peek_max(const iova_node* t) noexcept {
    if (t != nullptr)
      while (t->right != nullptr) t = t->right;
    return t;
  }
  static constexpr std::uint64_t npos = ~std::uint64_t{0};
  /// Where in extent e the request fits (its first page), or npos.
  static std::uint64_t place(const iova_node* e, const iova_search& q) noexcept {
    std::uint64_t beg = e->start + q.guard;
    std::uint64_t end = e->start + e->len;
    if (end - e->start < 2 * q.guard) return npos;
    end -= q.guard;
    if (beg < q.lo) beg = q.lo;
    if (end > q.hi) end = q.hi;
    if (beg >= end) return npos;
    std::uint64_t s = (beg + q.align - 1) & ~(q.align - 1);
    if (s < beg || s >= end || end - s < q.size) return npos;
    if (q.boundary != 0 && s / q.boundary != (s + q.size - 1) / q.boundary) {
      // Skip to the next boundary line (FreeBSD does the same); the block then starts on a
      // line and, being no larger than the boundary, cannot cross the next one.
      s = ((s / q.boundary + 1) * q.boundary + q.align - 1) & ~(q.align - 1);
      if (s >= end || end - s < q.size) return npos;
    }
    return s;
  }
  /// Lowest-address extent that can hold the request; `at` gets the block's first page.
  static iova_node* find_fit(iova_node* t, const iova_search& q, std::uint64_t& at) noexcept {
    if (t == nullptr || t->max_len < q.size + 2 * q.guard) return nullptr;
    if (t->start >= q.hi) return find_fit(t->left, q, at);  // the right subtree starts higher
    if (iova_node* f = find_fit(t->left, q, at)) return f;
    if (const std::uint64_t s = place(t, q); s != npos) {
      at = s;
      return t;
    }
    return find_fit(t->right, q, at);
  }
};

/// One shard of the live-block set: open addressing, linear probing, backward-shift deletion
/// (no tombstones), grown at half load. `pages == 0` marks an empty slot.
struct iova_live_entry {
  std::uint64_t pfn;
  std::uint64_t pages;  // as requested; the top bit marks a fixed (try_alloc_at) block
};
inline constexpr std::uint64_t iova_fixed_bit = std::uint64_t{1} << 63;
struct alignas(64) iova_live_shard {
  std::mutex mu;
  iova_live_entry* tab = nullptr;
  std::uint32_t cap = 0;  // 0 or a power of two
  std::uint32_t count = 0;
  // When the last insert grew the table, the table before it (kept, unchanged, so that undoing
  // that insert restores the memory exactly) and the pfn inserted.
  iova_live_entry* prev = nullptr;
  std::uint32_t prev_cap = 0;
  bool grew = false;
  std::uint64_t last_pfn = 0;
};
inline constexpr unsigned iova_live_shard_bits = 6;
[[nodiscard]] constexpr std::uint64_t iova_live_hash(std::uint64_t pfn) noexcept {
  return pfn * 0x9e37'79b9'7f4a'7c15ull;
}

}  // namespace detail

template <segment_allocator Alloc = default_allocator>
class iova_allocator {
  using node = detail::iova_node;
  using magazine = detail::iova_magazine;
  using treap = detail::iova_treap;

 public:
  using allocator_type = Alloc;

  /// Size classes 1, 2, 4, ..., 32 pages are cached (Linux: IOVA_RANGE_CACHE_MAX_SIZE = 6).
  static constexpr unsigned cache_orders = 6;
  static constexpr std::uint64_t max_cached_pages = std::uint64_t{1} << (cache_orders - 1);
  /// Alignment cap for large blocks: 2^18 pages = 1 GiB of 4 KiB granules.
  static constexpr std::uint64_t max_align_pages = (std::uint64_t{1} << 30) >> page_shift;
  static constexpr unsigned cache_slots = 8;
  /// Full magazines kept per size class in the shared depot.
  static constexpr unsigned depot_max = 32;

  /// The space is [base, end) in bytes (both page-aligned, base < end <= 2^64 - 1 page).
  /// Allocates nothing.
  iova_allocator(std::uint64_t base, std::uint64_t end,
                 iova_guard g = iova_guard::none) noexcept requires std::default_initializable<Alloc>
      : iova_allocator(base, end, Alloc{}, g) {}
  iova_allocator(std::uint64_t base, std::uint64_t end, Alloc a,
                 iova_guard g = iova_guard::none) noexcept
      : alloc_(a), first_(pfn_of(base)), end_(pfn_of(end)), guard_(g == iova_guard::page ? 1 : 0) {
    PHYR_ASSERT(((base | end) & page_mask) == 0, "IOVA space not page-aligned");
    PHYR_ASSERT(base < end, "empty IOVA space");
  }
  iova_allocator(const iova_allocator&) = delete;
  iova_allocator& operator=(const iova_allocator&) = delete;

  /// Returns every metadata block. Blocks still out become invalid.
  ~iova_allocator() {
    flush_caches();
    for (live_shard& sh : live_) release_live_table(sh);
    destroy_tree(root_);
    while (spare_ != nullptr) {
      node* n = spare_;
      spare_ = n->right;
      release_node(n);
    }
  }

  /// Pages a request of n pages really occupies (the power-of-two round-up of small ones).
  [[nodiscard]] static constexpr std::uint64_t block_pages(std::uint64_t n) noexcept {
    return n <= max_cached_pages ? std::bit_ceil(n) : n;
  }
  /// Alignment, in pages, of the block serving a request of n pages.
  [[nodiscard]] static constexpr std::uint64_t block_align(std::uint64_t n) noexcept {
    return n <= max_cached_pages ? std::bit_ceil(n) : std::min(std::bit_ceil(n), max_align_pages);
  }

  /// The space: [base(), end()).
  [[nodiscard]] std::uint64_t base() const noexcept { return pfn_to_addr(first_); }
  [[nodiscard]] std::uint64_t end() const noexcept { return pfn_to_addr(end_); }
  [[nodiscard]] bool guarded() const noexcept { return guard_ != 0; }

  /// A block of `len` bytes (rounded up to pages) aligned as `block_align` says, inside
  /// `lim`. invalid_argument for len 0 or bad limits (see iova_limits::check), straddles_boundary
  /// for a block larger than the boundary, exhausted when no hole fits even after flushing the
  /// caches, out_of_memory when metadata cannot be allocated. Strong guarantee.
  [[nodiscard]] result<iova_block> try_alloc(std::uint64_t len,
                                             const iova_limits& lim = {}) noexcept {
    if (len == 0) return errc::invalid_argument;
    if (len > end() - base()) return errc::exhausted;
    const std::uint64_t n = pfn_of(len + page_mask);
    const bool plain = lim.max_addr == ~std::uint64_t{0} && lim.boundary == 0 &&
                       lim.align == 0 && lim.window_count == 0;
    if (!plain) {
      if (auto c = lim.check(); !c) return c.error();
      if (lim.boundary != 0 && pfn_to_addr(block_pages(n)) > lim.boundary)
        return errc::straddles_boundary;
    }
    if (n <= max_cached_pages) {
      if (auto pfn = cache_pop(order_of(n))) {
        if (plain || lim.admits(pfn_to_addr(*pfn), pfn_to_addr(block_pages(n)))) {
          if (auto ins = live_insert(*pfn, n); !ins) {
            put_back(*pfn, n);
            return ins.error();
          }
          count(&slot_counts::live, 1);
          count(&slot_counts::hits, 1);
          return iova_block{pfn_to_addr(*pfn), pfn_to_addr(n), true};
        }
        put_back(*pfn, n);  // a block these limits cannot use: the tree finds one
      }
      count(&slot_counts::misses, 1);
    }
    result<std::uint64_t> r = plain ? tree_alloc(n, lim, 0, 0) : tree_alloc_limited(n, lim);
    if (!r) return r.error();
    if (auto ins = live_insert(*r, n); !ins) {
      std::lock_guard lk(mu_);
      tree_free_locked(*r, block_pages(n));
      return ins.error();
    }
    count(&slot_counts::live, 1);
    return iova_block{pfn_to_addr(*r), pfn_to_addr(n), false};
  }

  /// Exactly [addr, addr + len) (iommufd's IOMMU_IOAS_MAP with FIXED_IOVA): misaligned unless
  /// both are page multiples, invalid_argument for len 0, out_of_range outside the space,
  /// overlaps when any page of it is taken (after the caches were flushed), out_of_memory.
  /// Guard pages do not apply (the caller chose the place). Strong guarantee.
  [[nodiscard]] result<iova_block> try_alloc_at(std::uint64_t addr, std::uint64_t len) noexcept {
    if (len == 0) return errc::invalid_argument;
    if (((addr | len) & page_mask) != 0) return errc::misaligned;
    if (addr < base() || addr >= end() || len > end() - addr) return errc::out_of_range;
    const std::uint64_t p = pfn_of(addr);
    const std::uint64_t n = pfn_of(len);
    result<std::uint64_t> r = errc::overlaps;
    {
      std::lock_guard lk(mu_);
      r = tree_take_locked(p, n);
    }
    if (!r && r.error() == errc::overlaps && sum(&slot_counts::cached) != 0) {
      flush_caches();
      std::lock_guard lk(mu_);
      r = tree_take_locked(p, n);
    }
    if (!r) return r.error();
    if (auto ins = live_insert(p, n | detail::iova_fixed_bit); !ins) {
      std::lock_guard lk(mu_);
      tree_free_locked(p, n);
      return ins.error();
    }
    count(&slot_counts::live, 1);
    return iova_block{addr, len, false};
  }

  /// Gives a block back ([addr, addr + len) as handed out). Small blocks go to this thread's
  /// cache; free never fails and never needs memory it has not reserved (a magazine it cannot
  /// allocate just sends the block to the tree). A free of a block that is not out (freed
  /// already, never handed out, or with another length) asserts in debug builds; release
  /// builds ignore it and count it in `rejected_frees`.
  void free(std::uint64_t addr, std::uint64_t len) noexcept {
    const std::uint64_t pfn = pfn_of(addr);
    const std::uint64_t n = pfn_of(len + page_mask);
    bool fixed = false;
    if (!live_erase(pfn, n, /*shrink=*/false, fixed)) {
      PHYR_ASSERT(false, "IOVA double free (or a free of a block this allocator never gave)");
      rejected_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    count(&slot_counts::live, -1);
    if (!fixed && n <= max_cached_pages && cache_push(order_of(n), pfn, /*may_allocate=*/true))
      return;
    std::lock_guard lk(mu_);
    tree_free_locked(pfn, fixed ? n : block_pages(n));
  }
  void free(const iova_block& b) noexcept { free(b.addr, b.len); }

  /// Returns a block just taken and never used, so that the allocator's memory is as before
  /// the `try_alloc` (rollback paths: a failed map must not leave a magazine behind).
  void undo(const iova_block& b) noexcept {
    const std::uint64_t pfn = pfn_of(b.addr);
    const std::uint64_t n = pfn_of(b.len + page_mask);
    bool fixed = false;
    if (!live_erase(pfn, n, /*shrink=*/true, fixed)) {
      PHYR_ASSERT(false, "IOVA undo of a block that is not out");
      rejected_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    count(&slot_counts::live, -1);
    if (b.from_cache && cache_push(order_of(n), pfn, /*may_allocate=*/false)) return;
    std::lock_guard lk(mu_);
    tree_free_locked(pfn, fixed ? n : block_pages(n));
  }

  /// Sends every cached block back to the tree and frees every magazine (Linux does this
  /// before failing an allocation, and when a CPU goes offline).
  void flush_caches() noexcept {
    magazine* lists[cache_orders] = {};
    for (slot& s : slots_) {
      std::lock_guard lk(s.mu);
      for (unsigned c = 0; c < cache_orders; ++c) {
        for (magazine** m : {&s.loaded[c], &s.prev[c]}) {
          if (*m == nullptr) continue;
          (*m)->next = lists[c];
          lists[c] = *m;
          *m = nullptr;
        }
      }
    }
    std::lock_guard lk(mu_);
    for (unsigned c = 0; c < cache_orders; ++c) {
      magazine* m = lists[c];
      if (m == nullptr) {
        m = depot_[c].head;
      } else {
        magazine* tail = m;
        while (tail->next != nullptr) tail = tail->next;
        tail->next = depot_[c].head;
      }
      depot_[c] = {};
      while (m != nullptr) {
        magazine* next = m->next;
        for (std::uint32_t i = 0; i < m->count; ++i)
          tree_free_locked(m->pfns[i], std::uint64_t{1} << c);
        count(&slot_counts::cached, -static_cast<std::int64_t>(m->count));
        release_magazine(m);
        m = next;
      }
    }
    while (empties_ != nullptr) {
      magazine* m = empties_;
      empties_ = m->next;
      release_magazine(m);
    }
    for (live_shard& sh : live_) {
      std::lock_guard sk(sh.mu);
      release_prev_table(sh);
      if (sh.count == 0) release_live_table(sh);
    }
  }

  [[nodiscard]] iova_allocator_stats stats() const noexcept {
    iova_allocator_stats s;
    std::lock_guard lk(mu_);
    s.live_blocks = sum(&slot_counts::live);
    s.rejected_frees = rejected_.load(std::memory_order_relaxed);
    s.cached_blocks = sum(&slot_counts::cached);
    s.free_extents = extents_;
    s.free_pages = tree_live_ == 0 ? end_ - first_ : free_pages_;
    s.cache_hits = sum(&slot_counts::hits);
    s.cache_misses = sum(&slot_counts::misses);
    s.magazines = magazines_.load(std::memory_order_relaxed);
    s.metadata_bytes = (extents_ + spare_count_) * sizeof(node) + s.magazines * sizeof(magazine) +
                       live_table_bytes_.load(std::memory_order_relaxed);
    return s;
  }

 private:
  /// The counters every allocation and free updates live in the calling thread's slot, not
  /// in one shared line: two threads allocating in parallel would otherwise bounce that line
  /// between their cores on every call (measured: map+unmap on one domain ran slower with two
  /// threads than with one). A slot's counts may go negative (a block allocated by one thread
  /// and freed by another); only their sums mean something.
  struct slot_counts {
    std::atomic<std::int64_t> live{0};
    std::atomic<std::int64_t> cached{0};
    std::atomic<std::int64_t> hits{0};
    std::atomic<std::int64_t> misses{0};
  };
  struct alignas(64) slot {
    std::mutex mu;
    magazine* loaded[cache_orders] = {};
    magazine* prev[cache_orders] = {};
    slot_counts n;
  };
  struct depot_list {
    magazine* head = nullptr;
    unsigned count = 0;
  };

  using live_shard = detail::iova_live_shard;
  using live_entry = detail::iova_live_entry;

  // ---- the live-block set ------------------------------------------------------------------
  static live_shard& shard_of(live_shard* shards, std::uint64_t h) noexcept {
    return shards[h >> (64 - detail::iova_live_shard_bits)];
  }
  static std::uint32_t home_of(std::uint64_t h, std::uint32_t cap) noexcept {
    return static_cast<std::uint32_t>(h >> 20) & (cap - 1);
  }
  void release_table(live_entry*& t, std::uint32_t& cap) noexcept {
    if (t == nullptr) return;
    alloc_.deallocate(t, sizeof(live_entry) * cap, alignof(live_entry));
    live_table_bytes_.fetch_sub(sizeof(live_entry) * cap, std::memory_order_relaxed);
    t = nullptr;
    cap = 0;
  }
  void release_prev_table(live_shard& sh) noexcept {
    release_table(sh.prev, sh.prev_cap);
    sh.grew = false;
  }
  /// Drops the shard's tables (only when it holds nothing).
  void release_live_table(live_shard& sh) noexcept {
    release_prev_table(sh);
    release_table(sh.tab, sh.cap);
  }
  /// Records a block handed out; out_of_memory when the shard cannot grow (nothing changed).
  [[nodiscard]] result<void> live_insert(std::uint64_t pfn, std::uint64_t pages) noexcept {
    const std::uint64_t h = detail::iova_live_hash(pfn);
    live_shard& sh = shard_of(live_, h);
    std::lock_guard lk(sh.mu);
    if ((sh.count + 1) * 2 > sh.cap) {
      const std::uint32_t cap = sh.cap == 0 ? 16 : sh.cap * 2;
      void* p = alloc_.allocate(sizeof(live_entry) * cap, alignof(live_entry));
      if (p == nullptr) return errc::out_of_memory;
      auto* tab = static_cast<live_entry*>(p);
      for (std::uint32_t i = 0; i < cap; ++i) ::new (&tab[i]) live_entry{0, 0};
      for (std::uint32_t i = 0; i < sh.cap; ++i) {
        if (sh.tab[i].pages == 0) continue;
        std::uint32_t j = home_of(detail::iova_live_hash(sh.tab[i].pfn), cap);
        while (tab[j].pages != 0) j = (j + 1) & (cap - 1);
        tab[j] = sh.tab[i];
      }
      release_prev_table(sh);
      sh.prev = sh.tab;  // kept until the next insert: an undo of this one goes back to it
      sh.prev_cap = sh.cap;
      sh.grew = true;
      sh.tab = tab;
      sh.cap = cap;
      live_table_bytes_.fetch_add(sizeof(live_entry) * cap, std::memory_order_relaxed);
    } else {
      release_prev_table(sh);
    }
    sh.last_pfn = pfn;
    std::uint32_t j = home_of(h, sh.cap);
    while (sh.tab[j].pages != 0) {
      PHYR_ASSERT(sh.tab[j].pfn != pfn, "IOVA block handed out twice");
      j = (j + 1) & (sh.cap - 1);
    }
    sh.tab[j] = live_entry{pfn, pages};
    ++sh.count;
    return {};
  }
  /// Forgets a block given back: false when it is not out with this size. `shrink` (undo of
  /// the insert just made) goes back to the table from before that insert if it grew one, so
  /// the memory is exactly as before the allocation; a shard left empty frees its table.
  [[nodiscard]] bool live_erase(std::uint64_t pfn, std::uint64_t pages, bool shrink,
                                bool& fixed) noexcept {
    const std::uint64_t h = detail::iova_live_hash(pfn);
    live_shard& sh = shard_of(live_, h);
    std::lock_guard lk(sh.mu);
    if (sh.cap == 0) return false;
    const std::uint32_t mask = sh.cap - 1;
    std::uint32_t j = home_of(h, sh.cap);
    while (sh.tab[j].pages != 0 && sh.tab[j].pfn != pfn) j = (j + 1) & mask;
    if (sh.tab[j].pages == 0 || (sh.tab[j].pages & ~detail::iova_fixed_bit) != pages) return false;
    fixed = (sh.tab[j].pages & detail::iova_fixed_bit) != 0;
    if (shrink && sh.grew && sh.last_pfn == pfn) {
      // Undo of the insert that grew the table: the table before it is that state exactly.
      release_table(sh.tab, sh.cap);
      sh.tab = sh.prev;
      sh.cap = sh.prev_cap;
      sh.prev = nullptr;
      sh.prev_cap = 0;
      sh.grew = false;
      --sh.count;
      return true;
    }
    release_prev_table(sh);  // any other change makes the kept table stale
    // Backward-shift deletion: pull later entries of the probe run into the hole.
    std::uint32_t hole = j;
    for (std::uint32_t k = (j + 1) & mask; sh.tab[k].pages != 0; k = (k + 1) & mask) {
      const std::uint32_t home = home_of(detail::iova_live_hash(sh.tab[k].pfn), sh.cap);
      // k may move to the hole when its home is not cyclically in (hole, k].
      const bool stays = hole <= k ? (hole < home && home <= k) : (hole < home || home <= k);
      if (stays) continue;
      sh.tab[hole] = sh.tab[k];
      hole = k;
    }
    sh.tab[hole] = live_entry{0, 0};
    // An emptied shard keeps its table: a thread that maps and unmaps one I/O at a time would
    // otherwise allocate and free a table per I/O (measured: a heap allocation per map and
    // the two threads of a 2-thread run writing one shared byte count). flush_caches() drops
    // empty tables, so an idle allocator (no block out, caches flushed) still holds nothing.
    --sh.count;
    return true;
  }

  static unsigned order_of(std::uint64_t n) noexcept {
    return static_cast<unsigned>(std::bit_width(n - 1));
  }

  // ---- metadata
  // ----------------------------------------------------------------------------------
  node* make_node() noexcept {
    void* p = alloc_.allocate(sizeof(node), alignof(node));
    if (p == nullptr) return nullptr;
    rng_ ^= rng_ << 13;
    rng_ ^= rng_ >> 17;
    rng_ ^= rng_ << 5;
    return ::new (p) node{0, 0, 0, nullptr, nullptr, rng_};
  }
  void release_node(node* n) noexcept { alloc_.deallocate(n, sizeof(node), alignof(node)); }
  magazine* make_magazine() noexcept {
    void* p = alloc_.allocate(sizeof(magazine), alignof(magazine));
    if (p == nullptr) return nullptr;
    magazines_.fetch_add(1, std::memory_order_relaxed);
    return ::new (p) magazine{0, nullptr, {}};
  }
  void release_magazine(magazine* m) noexcept {
    magazines_.fetch_sub(1, std::memory_order_relaxed);
    alloc_.deallocate(m, sizeof(magazine), alignof(magazine));
  }
  void destroy_tree(node* t) noexcept {
    if (t == nullptr) return;
    destroy_tree(t->left);
    destroy_tree(t->right);
    release_node(t);
  }

  // ---- the tree (mu_ held) ----------------------------------------------------------------------
  // Canonical state: tree_live_ blocks are out of the tree (handed out or cached) and exactly
  // tree_live_ spare nodes are held for their return; with none out, no node exists at all.

  /// A cache-popped block the request cannot use goes back where it came from.
  void put_back(std::uint64_t pfn, std::uint64_t n) noexcept {
    if (cache_push(order_of(n), pfn, /*may_allocate=*/false)) return;
    std::lock_guard lk(mu_);
    tree_free_locked(pfn, block_pages(n));
  }

  /// A request of n pages inside [lo, hi) pages under `lim`'s boundary and alignment.
  [[nodiscard]] detail::iova_search search_for(std::uint64_t n, const iova_limits& lim,
                                               std::uint64_t lo, std::uint64_t hi) const noexcept {
    std::uint64_t align = block_align(n);
    if (lim.align != 0 && pfn_of(lim.align) > align) align = pfn_of(lim.align);
    return detail::iova_search{lo < first_ ? first_ : lo, hi > end_ ? end_ : hi, block_pages(n),
                               align, pfn_of(lim.boundary), guard_};
  }

  /// The lowest block fitting `lim`: tried window by window (they are sorted, so the first
  /// hit is the lowest).
  [[nodiscard]] result<std::uint64_t> tree_alloc_limited(std::uint64_t n,
                                                         const iova_limits& lim) noexcept {
    // Pages [0, top) are below the mask (a mask's last page is whole: masks end in ...fff).
    const std::uint64_t top =
        lim.max_addr >= pfn_to_addr(end_) - 1 ? end_ : pfn_of(lim.max_addr + 1);
    if (lim.window_count == 0) return tree_alloc(n, lim, 0, top);
    errc last = errc::exhausted;
    for (std::size_t i = 0; i < lim.window_count; ++i) {
      const iova_window& w = lim.windows[i];
      const std::uint64_t lo = pfn_of(w.addr);
      std::uint64_t hi = pfn_of(w.last()) + 1;
      if (hi > top) hi = top;
      if (lo >= hi) continue;
      result<std::uint64_t> r = tree_alloc(n, lim, lo, hi);
      if (r || r.error() != errc::exhausted) return r;
      last = r.error();
    }
    return last;
  }

  [[nodiscard]] result<std::uint64_t> tree_alloc(std::uint64_t n, const iova_limits& lim,
                                                 std::uint64_t lo, std::uint64_t hi) noexcept {
    const detail::iova_search q = search_for(n, lim, lo, hi == 0 ? end_ : hi);
    {
      std::lock_guard lk(mu_);
      result<std::uint64_t> r = tree_alloc_locked(q);
      if (r || r.error() != errc::exhausted || sum(&slot_counts::cached) == 0)
        return r;
    }
    flush_caches();  // takes the slot locks, so never under mu_
    std::lock_guard lk(mu_);
    return tree_alloc_locked(q);
  }

  /// Makes sure the tree exists (no block out means no node at all). False: out_of_memory.
  [[nodiscard]] bool ensure_tree_locked() noexcept {
    if (tree_live_ != 0) return true;
    PHYR_ASSERT(root_ == nullptr, "IOVA tree left behind with no block out");
    node* all = make_node();
    if (all == nullptr) return false;
    all->start = first_;
    all->len = all->max_len = end_ - first_;
    root_ = all;
    extents_ = 1;
    free_pages_ = end_ - first_;
    return true;
  }

  [[nodiscard]] result<std::uint64_t> tree_alloc_locked(const detail::iova_search& q) noexcept {
    if (q.lo >= q.hi) return errc::exhausted;
    const bool fresh = tree_live_ == 0;
    if (!ensure_tree_locked()) return errc::out_of_memory;
    std::uint64_t at = 0;
    node* e = treap::find_fit(root_, q, at);
    if (e == nullptr) {
      if (fresh) drop_pristine_tree();
      return errc::exhausted;
    }
    if (auto r = carve_locked(e, at, q.size); !r) {
      if (fresh) drop_pristine_tree();
      return r.error();
    }
    return at;
  }

  /// Takes exactly [p, p + n) if it is all free.
  [[nodiscard]] result<std::uint64_t> tree_take_locked(std::uint64_t p, std::uint64_t n) noexcept {
    const bool fresh = tree_live_ == 0;
    if (!ensure_tree_locked()) return errc::out_of_memory;
    // The extent starting at or below p, if any, is the only one that can hold it.
    node* a;
    node* b;
    treap::split(root_, p + 1, a, b);
    node* e = const_cast<node*>(treap::peek_max(a));
    root_ = treap::merge(a, b);
    if (e == nullptr || e->start + e->len < p + n) {
      if (fresh) drop_pristine_tree();
      return errc::overlaps;
    }
    if (auto r = carve_locked(e, p, n); !r) {
      if (fresh) drop_pristine_tree();
      return r.error();
    }
    return p;
  }

  /// Takes [s, s + size) out of extent e (which holds it): the head and tail left over become
  /// extents, and e itself becomes the node reserved for this block's return.
  [[nodiscard]] result<void> carve_locked(node* e, std::uint64_t s, std::uint64_t size) noexcept {
    const std::uint64_t head = s - e->start;
    const std::uint64_t tail = e->start + e->len - (s + size);
    const unsigned need = (head != 0 ? 1u : 0u) + (tail != 0 ? 1u : 0u);
    node* fresh_nodes[2] = {};
    for (unsigned i = 0; i < need; ++i) {
      fresh_nodes[i] = make_node();
      if (fresh_nodes[i] == nullptr) {
        for (unsigned j = 0; j < i; ++j) release_node(fresh_nodes[j]);
        return errc::out_of_memory;
      }
    }
    node* a;
    node* b;
    treap::split(root_, e->start, a, b);
    node* taken = treap::pop_min(b);
    PHYR_ASSERT(taken == e, "IOVA tree corrupted");
    const std::uint64_t e_start = e->start;
    const std::uint64_t e_len = e->len;
    unsigned used = 0;
    node* pieces[2] = {};
    unsigned npieces = 0;
    if (head != 0) {
      node* h = fresh_nodes[used++];
      h->start = e_start;
      h->len = head;
      pieces[npieces++] = h;
    }
    if (tail != 0) {
      node* t = fresh_nodes[used++];
      t->start = s + size;
      t->len = e_start + e_len - (s + size);
      pieces[npieces++] = t;
    }
    for (unsigned i = 0; i < npieces; ++i) {
      pieces[i]->left = pieces[i]->right = nullptr;
      treap::pull(pieces[i]);
      a = treap::merge(a, pieces[i]);
    }
    root_ = treap::merge(a, b);
    extents_ = extents_ - 1 + npieces;
    free_pages_ -= size;
    e->left = nullptr;
    e->right = spare_;
    spare_ = e;
    ++spare_count_;
    ++tree_live_;
    return {};
  }

  void tree_free_locked(std::uint64_t pfn, std::uint64_t size) noexcept {
    PHYR_ASSERT(tree_live_ > 0 && spare_count_ == tree_live_, "IOVA free without a reservation");
    node* a;
    node* b;
    treap::split(root_, pfn, a, b);
    const node* left = treap::peek_max(a);
    const node* right = treap::peek_min(b);
    const bool overlap = (left != nullptr && left->start + left->len > pfn) ||
                         (right != nullptr && right->start < pfn + size);
    PHYR_ASSERT(!overlap, "IOVA double free");
    if (overlap) {  // release builds: ignore the bad free rather than corrupt the tree
      root_ = treap::merge(a, b);
      return;
    }
    const bool join_left = left != nullptr && left->start + left->len == pfn;
    const bool join_right = right != nullptr && right->start == pfn + size;
    node* n;
    if (join_left) {
      n = treap::pop_max(a);
      n->len += size;
      if (join_right) {
        node* r = treap::pop_min(b);
        n->len += r->len;
        release_node(r);
        --extents_;
      }
    } else if (join_right) {
      n = treap::pop_min(b);
      n->start = pfn;
      n->len += size;
    } else {
      n = spare_;
      spare_ = n->right;
      --spare_count_;
      n->start = pfn;
      n->len = size;
      n->left = n->right = nullptr;
      ++extents_;
    }
    treap::pull(n);
    root_ = treap::merge(treap::merge(a, n), b);
    free_pages_ += size;
    --tree_live_;
    while (spare_count_ > tree_live_) {
      node* s = spare_;
      spare_ = s->right;
      --spare_count_;
      release_node(s);
    }
    if (tree_live_ == 0) drop_pristine_tree();
  }

  void drop_pristine_tree() noexcept {
    PHYR_ASSERT(root_ != nullptr && root_->left == nullptr && root_->right == nullptr &&
                    root_->start == first_ && root_->len == end_ - first_,
                "IOVA tree not whole with no block out");
    release_node(root_);
    root_ = nullptr;
    extents_ = 0;
  }

  // ---- the cache
  // ------------------------------------------------------------------------------------
  // The calling thread's slot: one it claimed (core/detail/thread_slot.hpp), so no two live
  // threads share one while at most cache_slots are alive.
  slot& my_slot() noexcept { return slots_[detail::this_thread_slot<cache_slots>()]; }
  void count(std::atomic<std::int64_t> slot_counts::*c, std::int64_t d) noexcept {
    (my_slot().n.*c).fetch_add(d, std::memory_order_relaxed);
  }
  [[nodiscard]] std::uint64_t sum(std::atomic<std::int64_t> slot_counts::*c) const noexcept {
    std::int64_t t = 0;
    for (const slot& s : slots_) t += (s.n.*c).load(std::memory_order_relaxed);
    return static_cast<std::uint64_t>(t);
  }

  /// A pfn of class c from this thread's slot or the depot.
  [[nodiscard]] result<std::uint64_t> cache_pop(unsigned c) noexcept {
    slot& s = my_slot();
    std::lock_guard lk(s.mu);
    magazine*& l = s.loaded[c];
    magazine*& p = s.prev[c];
    if (l == nullptr || l->count == 0) {
      if (p != nullptr && p->count != 0) {
        std::swap(l, p);
      } else {
        std::lock_guard dk(mu_);
        depot_list& d = depot_[c];
        if (d.head == nullptr) return errc::not_found;
        magazine* full = d.head;
        d.head = full->next;
        --d.count;
        if (l != nullptr) {  // kept, not freed: the next free in this class reuses it
          l->next = empties_;
          empties_ = l;
        }
        l = full;
      }
    }
    s.n.cached.fetch_sub(1, std::memory_order_relaxed);
    return l->pfns[--l->count];
  }

  /// Parks pfn in this thread's slot. False when it could not (the caller frees to the tree).
  [[nodiscard]] bool cache_push(unsigned c, std::uint64_t pfn, bool may_allocate) noexcept {
    slot& s = my_slot();
    std::lock_guard lk(s.mu);
    magazine*& l = s.loaded[c];
    magazine*& p = s.prev[c];
    if (l != nullptr && l->count == magazine::capacity && p != nullptr && p->count == 0)
      std::swap(l, p);
    if (l == nullptr || l->count == magazine::capacity) {
      std::lock_guard dk(mu_);
      magazine* fresh = empties_;
      if (fresh != nullptr) {
        empties_ = fresh->next;
      } else if (may_allocate) {
        fresh = make_magazine();
      }
      if (l == nullptr) {
        if (fresh == nullptr) return false;
        l = fresh;
      } else if (p == nullptr && fresh != nullptr) {
        p = l;
        l = fresh;
      } else {
        depot_list& d = depot_[c];
        if (d.count < depot_max && fresh != nullptr) {
          l->next = d.head;
          d.head = l;
          ++d.count;
          l = fresh;
        } else {
          if (!may_allocate) {  // rollback: leave the cache as it is
            if (fresh != nullptr) {
              fresh->next = empties_;
              empties_ = fresh;
            }
            return false;
          }
          // Depot full (or no magazine to spare): drain the loaded one into the tree, as
          // Linux does, and keep using it.
          for (std::uint32_t i = 0; i < l->count; ++i)
            tree_free_locked(l->pfns[i], std::uint64_t{1} << c);
          s.n.cached.fetch_sub(l->count, std::memory_order_relaxed);
          l->count = 0;
          if (fresh != nullptr) {
            fresh->next = empties_;
            empties_ = fresh;
          }
        }
      }
    }
    l->pfns[l->count++] = pfn;
    s.n.cached.fetch_add(1, std::memory_order_relaxed);
    return true;
  }

  [[no_unique_address]] Alloc alloc_;
  std::uint64_t first_;  // pages
  std::uint64_t end_;
  std::uint64_t guard_;  // free pages kept on each side of a block: 0 or 1

  mutable std::mutex mu_;  // the tree, spares, depot and empties
  node* root_ = nullptr;
  node* spare_ = nullptr;  // linked through `right`
  std::uint64_t spare_count_ = 0;
  std::uint64_t tree_live_ = 0;
  std::uint64_t extents_ = 0;
  std::uint64_t free_pages_ = 0;
  std::uint32_t rng_ = 0x9e3779b9u;
  depot_list depot_[cache_orders];
  magazine* empties_ = nullptr;

  slot slots_[cache_slots];
  live_shard live_[std::size_t{1} << detail::iova_live_shard_bits];

  std::atomic<std::uint64_t> rejected_{0};
  std::atomic<std::uint64_t> live_table_bytes_{0};
  std::atomic<std::uint64_t> magazines_{0};
};

}  // namespace phyr
