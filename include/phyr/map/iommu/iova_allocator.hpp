/// IOVA allocator: size-aligned blocks of an I/O virtual address space, thread-safe, with a
/// per-thread cache of recently freed small blocks (the magazine "rcache" of Linux's iova.c).
///
///   phyr::iova_allocator<> iova{/*first_pfn=*/1, /*end_pfn=*/std::uint64_t{1} << 36};
///   auto b = iova.try_alloc(3);          // 3 pages -> a 4-page block, 4-page aligned
///   if (!b) return b.error();            // errc::exhausted or errc::out_of_memory
///   use(b->pfn << 12);
///   iova.free(*b);                       // parked in this thread's cache; reused first
///
/// Units are granules ("pages", pfn = iova >> granule shift); the allocator never sees bytes.
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
#include <phyr/core/error.hpp>

namespace phyr::inline v0 {

/// A block handed out by `iova_allocator::try_alloc`.
struct iova_block {
  std::uint64_t pfn = 0;    ///< first granule
  std::uint64_t pages = 0;  ///< as requested (the allocator re-derives any rounding)
  bool from_cache = false;  ///< served by the per-thread cache (lets `undo` put it back)
};

struct iova_allocator_stats {
  std::uint64_t live_blocks = 0;     ///< handed out, not freed
  std::uint64_t cached_blocks = 0;   ///< freed, parked in the cache (still taken from the tree)
  std::uint64_t free_extents = 0;    ///< nodes of the free-extent tree
  std::uint64_t free_pages = 0;      ///< pages in the tree (cached blocks excluded)
  std::uint64_t cache_hits = 0;      ///< small allocations served by the cache
  std::uint64_t cache_misses = 0;    ///< small allocations that went to the tree
  std::uint64_t magazines = 0;       ///< magazines allocated
  std::uint64_t metadata_bytes = 0;  ///< tree nodes + magazines held from the allocator
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
  static bool fits(const iova_node* e, std::uint64_t n, std::uint64_t align) noexcept {
    const std::uint64_t s = (e->start + align - 1) & ~(align - 1);
    return s - e->start <= e->len && e->len - (s - e->start) >= n;
  }
  /// Lowest-address extent that holds an `align`-aligned block of n.
  static iova_node* find_fit(iova_node* t, std::uint64_t n, std::uint64_t align) noexcept {
    if (t == nullptr || t->max_len < n) return nullptr;
    if (iova_node* f = find_fit(t->left, n, align)) return f;
    if (fits(t, n, align)) return t;
    return find_fit(t->right, n, align);
  }
};

/// The cache slot of the calling thread: threads are dealt round-robin over the slots on first
/// use, so two threads of a two-core machine never share one.
inline unsigned iova_cache_slot_of_this_thread() noexcept {
  static std::atomic<unsigned> next{0};
  thread_local const unsigned mine = next.fetch_add(1, std::memory_order_relaxed);
  return mine;
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
  static constexpr std::uint64_t max_align_pages = std::uint64_t{1} << 18;
  static constexpr unsigned cache_slots = 8;
  /// Full magazines kept per size class in the shared depot.
  static constexpr unsigned depot_max = 32;

  /// The space is [first_pfn, end_pfn). Allocates nothing.
  iova_allocator(std::uint64_t first_pfn,
                 std::uint64_t end_pfn) noexcept requires std::default_initializable<Alloc>
      : iova_allocator(first_pfn, end_pfn, Alloc{}) {}
  iova_allocator(std::uint64_t first_pfn, std::uint64_t end_pfn, Alloc a) noexcept
      : alloc_(a), first_(first_pfn), end_(end_pfn) {
    PHYR_ASSERT(first_pfn < end_pfn, "empty IOVA space");
    PHYR_ASSERT(end_pfn <= (std::uint64_t{1} << 52), "IOVA space wider than 64-bit addresses");
  }
  iova_allocator(const iova_allocator&) = delete;
  iova_allocator& operator=(const iova_allocator&) = delete;

  /// Returns every metadata block. Blocks still out become invalid.
  ~iova_allocator() {
    flush_caches();
    destroy_tree(root_);
    while (spare_ != nullptr) {
      node* n = spare_;
      spare_ = n->right;
      release_node(n);
    }
  }

  /// Pages a request of n really occupies (the power-of-two round-up of small requests).
  [[nodiscard]] static constexpr std::uint64_t block_pages(std::uint64_t n) noexcept {
    return n <= max_cached_pages ? std::bit_ceil(n) : n;
  }
  /// Alignment, in pages, of the block serving a request of n.
  [[nodiscard]] static constexpr std::uint64_t block_align(std::uint64_t n) noexcept {
    return n <= max_cached_pages ? std::bit_ceil(n) : std::min(std::bit_ceil(n), max_align_pages);
  }

  [[nodiscard]] std::uint64_t first_pfn() const noexcept { return first_; }
  [[nodiscard]] std::uint64_t end_pfn() const noexcept { return end_; }

  /// A block of n pages aligned as `block_align(n)`. invalid_argument for n == 0; exhausted
  /// when no aligned hole is left even after flushing the caches; out_of_memory when a tree
  /// node cannot be allocated. Strong guarantee.
  [[nodiscard]] result<iova_block> try_alloc(std::uint64_t n) noexcept {
    if (n == 0) return errc::invalid_argument;
    if (n > end_ - first_) return errc::exhausted;
    if (n <= max_cached_pages) {
      if (auto pfn = cache_pop(order_of(n))) {
        live_.fetch_add(1, std::memory_order_relaxed);
        hits_.fetch_add(1, std::memory_order_relaxed);
        return iova_block{*pfn, n, true};
      }
      misses_.fetch_add(1, std::memory_order_relaxed);
    }
    result<std::uint64_t> r = tree_alloc(block_pages(n), block_align(n));
    if (!r) return r.error();
    live_.fetch_add(1, std::memory_order_relaxed);
    return iova_block{*r, n, false};
  }

  /// Gives a block back (size as requested). Small blocks go to this thread's cache; free
  /// never fails and never needs memory it has not reserved (a magazine it cannot allocate
  /// just sends the block to the tree).
  void free(std::uint64_t pfn, std::uint64_t n) noexcept {
    PHYR_ASSERT(n != 0 && pfn >= first_ && pfn < end_, "freeing a block this allocator never gave");
    live_.fetch_sub(1, std::memory_order_relaxed);
    if (n <= max_cached_pages && cache_push(order_of(n), pfn, /*may_allocate=*/true)) return;
    std::lock_guard lk(mu_);
    tree_free_locked(pfn, block_pages(n));
  }
  void free(const iova_block& b) noexcept { free(b.pfn, b.pages); }

  /// Returns a block just taken and never used, so that the allocator's memory is as before
  /// the `try_alloc` (rollback paths: a failed map must not leave a magazine behind).
  void undo(const iova_block& b) noexcept {
    live_.fetch_sub(1, std::memory_order_relaxed);
    if (b.from_cache && cache_push(order_of(b.pages), b.pfn, /*may_allocate=*/false)) return;
    std::lock_guard lk(mu_);
    tree_free_locked(b.pfn, block_pages(b.pages));
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
        cached_.fetch_sub(m->count, std::memory_order_relaxed);
        release_magazine(m);
        m = next;
      }
    }
    while (empties_ != nullptr) {
      magazine* m = empties_;
      empties_ = m->next;
      release_magazine(m);
    }
  }

  [[nodiscard]] iova_allocator_stats stats() const noexcept {
    iova_allocator_stats s;
    std::lock_guard lk(mu_);
    s.live_blocks = live_.load(std::memory_order_relaxed);
    s.cached_blocks = cached_.load(std::memory_order_relaxed);
    s.free_extents = extents_;
    s.free_pages = tree_live_ == 0 ? end_ - first_ : free_pages_;
    s.cache_hits = hits_.load(std::memory_order_relaxed);
    s.cache_misses = misses_.load(std::memory_order_relaxed);
    s.magazines = magazines_.load(std::memory_order_relaxed);
    s.metadata_bytes = (extents_ + spare_count_) * sizeof(node) + s.magazines * sizeof(magazine);
    return s;
  }

 private:
  struct alignas(64) slot {
    std::mutex mu;
    magazine* loaded[cache_orders] = {};
    magazine* prev[cache_orders] = {};
  };
  struct depot_list {
    magazine* head = nullptr;
    unsigned count = 0;
  };

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

  [[nodiscard]] result<std::uint64_t> tree_alloc(std::uint64_t size, std::uint64_t align) noexcept {
    {
      std::lock_guard lk(mu_);
      result<std::uint64_t> r = tree_alloc_locked(size, align);
      if (r || r.error() != errc::exhausted || cached_.load(std::memory_order_relaxed) == 0)
        return r;
    }
    flush_caches();  // takes the slot locks, so never under mu_
    std::lock_guard lk(mu_);
    return tree_alloc_locked(size, align);
  }

  [[nodiscard]] result<std::uint64_t> tree_alloc_locked(std::uint64_t size,
                                                        std::uint64_t align) noexcept {
    // No block out means no node at all (root_ is also null when every page is out).
    const bool fresh = tree_live_ == 0;
    if (fresh) {
      PHYR_ASSERT(root_ == nullptr, "IOVA tree left behind with no block out");
      node* all = make_node();
      if (all == nullptr) return errc::out_of_memory;
      all->start = first_;
      all->len = all->max_len = end_ - first_;
      root_ = all;
      extents_ = 1;
      free_pages_ = end_ - first_;
    }
    node* e = treap::find_fit(root_, size, align);
    if (e == nullptr) {
      if (fresh) drop_pristine_tree();
      return errc::exhausted;
    }
    const std::uint64_t s = (e->start + align - 1) & ~(align - 1);
    const std::uint64_t head = s - e->start;
    const std::uint64_t tail = e->start + e->len - (s + size);
    // Nodes: one per remaining piece plus the reservation for this block's return; `e`
    // itself serves as one of them.
    const unsigned need = (head != 0 ? 1u : 0u) + (tail != 0 ? 1u : 0u);
    node* fresh_nodes[2] = {};
    for (unsigned i = 0; i < need; ++i) {
      fresh_nodes[i] = make_node();
      if (fresh_nodes[i] == nullptr) {
        for (unsigned j = 0; j < i; ++j) release_node(fresh_nodes[j]);
        if (fresh) drop_pristine_tree();
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
    // `e` becomes the reservation.
    e->left = nullptr;
    e->right = spare_;
    spare_ = e;
    ++spare_count_;
    ++tree_live_;
    return s;
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
  slot& my_slot() noexcept {
    return slots_[detail::iova_cache_slot_of_this_thread() % cache_slots];
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
    cached_.fetch_sub(1, std::memory_order_relaxed);
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
          cached_.fetch_sub(l->count, std::memory_order_relaxed);
          l->count = 0;
          if (fresh != nullptr) {
            fresh->next = empties_;
            empties_ = fresh;
          }
        }
      }
    }
    l->pfns[l->count++] = pfn;
    cached_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }

  [[no_unique_address]] Alloc alloc_;
  std::uint64_t first_;
  std::uint64_t end_;

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

  std::atomic<std::uint64_t> live_{0};
  std::atomic<std::uint64_t> cached_{0};
  std::atomic<std::uint64_t> hits_{0};
  std::atomic<std::uint64_t> misses_{0};
  std::atomic<std::uint64_t> magazines_{0};
};

}  // namespace phyr
