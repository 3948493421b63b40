/// Allocation that may fail: the `segment_allocator` concept and three allocators.
///
///   phyr::range_list<phyr::phys_range> a;                          // default_allocator (heap)
///
///   phyr::segment_pool<512, 64> pool;                              // 64 blocks, no heap at all
///   phyr::range_list<phyr::phys_range, phyr::pool_allocator> b{pool.allocator()};
///
///   phyr::fault_state fs{.fail_at = 3};                            // tests: 3rd call fails
///   phyr::range_list<phyr::phys_range, phyr::fault_injecting_allocator> c{
///       phyr::fault_injecting_allocator{&fs}};
///
/// Every allocator returns null on failure; containers turn that into `errc::out_of_memory`
/// and keep their strong guarantee. Allocators are cheap handles: copyable, and equal when
/// memory from one may be returned to the other (containers relink segments only then).
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <new>

#include <phyr/config.hpp>

namespace phyr::inline v0 {

/// A type `A` is a segment allocator if:
///  1. `a.allocate(bytes, align)` is noexcept and returns `void*`, null on failure;
///  2. `a.deallocate(p, bytes, align)` is noexcept and takes back what allocate returned,
///     with the same size and alignment;
///  3. it is nothrow copyable and equality comparable (equal handles share one heap).
/// It does not check thread safety; each allocator documents its own.
template <class A>
concept segment_allocator =
    std::is_nothrow_copy_constructible_v<A> && std::equality_comparable<A> &&
    requires(A& a, std::size_t n, std::size_t align, void* p) {
      { a.allocate(n, align) } noexcept -> std::same_as<void*>;
      { a.deallocate(p, n, align) } noexcept;
    };

/// The heap, through the nothrow aligned `operator new`. Stateless, thread-safe.
struct default_allocator {
  [[nodiscard]] void* allocate(std::size_t n, std::size_t align) noexcept {
    return ::operator new(n, std::align_val_t{align}, std::nothrow);
  }
  void deallocate(void* p, std::size_t, std::size_t align) noexcept {
    ::operator delete(p, std::align_val_t{align}, std::nothrow);
  }
  friend constexpr bool operator==(default_allocator, default_allocator) noexcept { return true; }
};

/// Shared bookkeeping of a `fault_injecting_allocator` (lives in the test).
struct fault_state {
  std::uint64_t fail_at = 0;      ///< 1-based allocate() call that fails; 0 = never
  bool fail_after = false;        ///< also fail every call after fail_at
  std::uint64_t calls = 0;        ///< allocate() calls so far (failed ones included)
  std::uint64_t failures = 0;     ///< allocate() calls that returned null
  std::int64_t live = 0;          ///< blocks allocated and not yet freed
  std::int64_t live_bytes = 0;    ///< their bytes
};

/// Heap allocator that fails on the k-th call and counts outstanding blocks, so tests can
/// drive every allocation failure path (k = 1, 2, ...) and check that nothing leaks.
/// Not thread-safe unless the test serialises its use.
class fault_injecting_allocator {
 public:
  constexpr explicit fault_injecting_allocator(fault_state* s) noexcept : s_(s) {}
  [[nodiscard]] void* allocate(std::size_t n, std::size_t align) noexcept {
    const std::uint64_t k = ++s_->calls;
    if (s_->fail_at != 0 && (k == s_->fail_at || (s_->fail_after && k > s_->fail_at))) {
      ++s_->failures;
      return nullptr;
    }
    void* p = ::operator new(n, std::align_val_t{align}, std::nothrow);
    if (p != nullptr) {
      ++s_->live;
      s_->live_bytes += static_cast<std::int64_t>(n);
    }
    return p;
  }
  void deallocate(void* p, std::size_t n, std::size_t align) noexcept {
    if (p == nullptr) return;
    --s_->live;
    s_->live_bytes -= static_cast<std::int64_t>(n);
    ::operator delete(p, std::align_val_t{align}, std::nothrow);
  }
  [[nodiscard]] fault_state* state() const noexcept { return s_; }
  friend constexpr bool operator==(fault_injecting_allocator a,
                                   fault_injecting_allocator b) noexcept {
    return a.s_ == b.s_;
  }

 private:
  fault_state* s_;
};

/// Fixed-capacity block pool (a mempool): storage and free list set up once so an I/O path
/// can always make progress without the heap. Blocks have one size; a request above it, or
/// with stricter alignment than the pool's, fails (null). Not thread-safe: give each queue
/// its own pool, or serialise.
class segment_pool_base {
 public:
  segment_pool_base(const segment_pool_base&) = delete;
  segment_pool_base& operator=(const segment_pool_base&) = delete;

  [[nodiscard]] void* allocate(std::size_t n, std::size_t align) noexcept {
    if (n > block_size_ || align > block_align || free_ == nullptr) return nullptr;
    node* b = free_;
    free_ = b->next;
    --available_;
    return b;
  }
  void deallocate(void* p, std::size_t, std::size_t) noexcept {
    if (p == nullptr) return;
    PHYR_ASSERT(owns(p), "block returned to the wrong pool");
    node* b = static_cast<node*>(p);
    b->next = free_;
    free_ = b;
    ++available_;
  }
  [[nodiscard]] bool owns(const void* p) const noexcept {
    const auto a = reinterpret_cast<std::uintptr_t>(p);
    const auto lo = reinterpret_cast<std::uintptr_t>(storage_);
    return a >= lo && a < lo + block_size_ * capacity_ && (a - lo) % block_size_ == 0;
  }
  [[nodiscard]] std::size_t block_size() const noexcept { return block_size_; }
  [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }
  [[nodiscard]] std::size_t available() const noexcept { return available_; }

  static constexpr std::size_t block_align = 64;

 protected:
  struct node {
    node* next;
  };
  segment_pool_base(std::byte* storage, std::size_t block_size, std::size_t count) noexcept
      : storage_(storage), block_size_(block_size), capacity_(count), available_(count) {
    for (std::size_t i = count; i-- > 0;) {
      node* b = ::new (static_cast<void*>(storage + i * block_size)) node{free_};
      free_ = b;
    }
  }
  ~segment_pool_base() {
    PHYR_ASSERT(available_ == capacity_, "segment_pool destroyed while blocks are in use");
  }

 private:
  std::byte* storage_;
  std::size_t block_size_;
  std::size_t capacity_;
  std::size_t available_;
  node* free_ = nullptr;
};

/// `Count` blocks of `BlockSize` bytes held inline (put the pool itself where it may live:
/// static storage, a per-queue object).
template <std::size_t BlockSize, std::size_t Count>
class segment_pool : public segment_pool_base {
  static_assert(BlockSize >= sizeof(void*) && BlockSize % segment_pool_base::block_align == 0,
                "block size must be a non-zero multiple of 64 bytes");
  static_assert(Count > 0);

 public:
  segment_pool() noexcept : segment_pool_base(storage_, BlockSize, Count) {}
  /// A handle that satisfies `segment_allocator`; the pool must outlive every user.
  [[nodiscard]] class pool_allocator allocator() noexcept;

 private:
  alignas(block_align) std::byte storage_[BlockSize * Count];
};

/// `segment_allocator` handle to a pool of any size.
class pool_allocator {
 public:
  constexpr explicit pool_allocator(segment_pool_base& p) noexcept : p_(&p) {}
  [[nodiscard]] void* allocate(std::size_t n, std::size_t align) noexcept {
    return p_->allocate(n, align);
  }
  void deallocate(void* p, std::size_t n, std::size_t align) noexcept {
    p_->deallocate(p, n, align);
  }
  [[nodiscard]] segment_pool_base& pool() const noexcept { return *p_; }
  friend constexpr bool operator==(pool_allocator a, pool_allocator b) noexcept {
    return a.p_ == b.p_;
  }

 private:
  segment_pool_base* p_;
};

template <std::size_t BlockSize, std::size_t Count>
pool_allocator segment_pool<BlockSize, Count>::allocator() noexcept {
  return pool_allocator{*this};
}

static_assert(segment_allocator<default_allocator>);
static_assert(segment_allocator<fault_injecting_allocator>);
static_assert(segment_allocator<pool_allocator>);

}  // namespace phyr
