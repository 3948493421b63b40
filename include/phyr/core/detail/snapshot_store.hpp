/// `detail::snapshot_store<Snapshot, Alloc>`: the writer's half of phyr's RCU-like registries
/// (map/p2p/p2p_registry.hpp, registry/mem_registry.hpp). Each registry state is an immutable
/// snapshot in one allocator block, published through an atomic pointer; the one it replaces
/// goes on a retired list and is freed once the registry's reader accounting allows.
///
///   struct my_snapshot : phyr::detail::snapshot_header<my_snapshot> {
///     my_snapshot(std::size_t n, std::size_t bytes) noexcept : snapshot_header(n, bytes) {}
///     static constexpr std::size_t bytes_for(std::size_t n) noexcept {
///       return sizeof(my_snapshot) + n * sizeof(std::uint64_t);   // just the sorted starts
///     }
///   };
///   phyr::detail::snapshot_store<my_snapshot, phyr::default_allocator> store;
///   my_snapshot* next = store.try_allocate(n);          // nullptr: out of memory
///   ...fill next->starts()..., then, under the writer mutex:
///   (void)store.publish(next);                          // the old one is retired, not freed
///   store.free_retired_if([](const my_snapshot& s) { return no_reader_can_hold(s); });
///
/// The store knows nothing about readers: that is the registry's policy (p2p_registry pins
/// each snapshot in a count of its own; mem_registry tags each with the grace period it was
/// retired in), passed in as the predicate of `free_retired_if`.
/// Every call but `current()` runs under the registry's writer mutex. Snapshots are trivially
/// destructible (headers, integers and trivially copyable ranges), so freeing one is returning
/// its block.
///
/// Layout: `[Snapshot][std::uint64_t starts[count]][whatever Snapshot adds]`. The sorted starts
/// come first and apart from the rest, so a binary search touches 8 bytes per step.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>
#include <phyr/config.hpp>
#include <phyr/core/allocator.hpp>
#include <type_traits>

namespace phyr::inline v0::detail {

/// The first member of every snapshot (a CRTP base: `Derived` is the snapshot type).
template <class Derived>
struct snapshot_header {
  Derived* next_retired = nullptr;  ///< the retired list (writer mutex)
  std::size_t count;                ///< entries in each array
  std::size_t bytes;                ///< size of the whole block, for deallocate

  constexpr snapshot_header(std::size_t n, std::size_t block_bytes) noexcept
      : count(n), bytes(block_bytes) {}

  [[nodiscard]] std::uint64_t* starts() noexcept {
    return reinterpret_cast<std::uint64_t*>(static_cast<Derived*>(this) + 1);
  }
  [[nodiscard]] const std::uint64_t* starts() const noexcept {
    return reinterpret_cast<const std::uint64_t*>(static_cast<const Derived*>(this) + 1);
  }

  /// Number of entries whose start is <= a (the upper bound in the sorted starts).
  [[nodiscard]] std::size_t upper_bound(std::uint64_t a) const noexcept {
    const std::uint64_t* s = starts();
    std::size_t lo = 0;
    std::size_t len = count;
    while (len > 0) {
      const std::size_t half = len / 2;
      if (s[lo + half] <= a) {
        lo += half + 1;
        len -= half + 1;
      } else {
        len = half;
      }
    }
    return lo;
  }
};

/// The current snapshot, the retired ones, and the allocator both come from. `Snapshot` derives
/// from `snapshot_header<Snapshot>`, has `static bytes_for(n)` and a noexcept constructor
/// `Snapshot(n, bytes)` that starts the lifetime of its array elements.
template <class Snapshot, segment_allocator Alloc>
class snapshot_store {
  static_assert(std::is_base_of_v<snapshot_header<Snapshot>, Snapshot>);
  static_assert(std::is_trivially_destructible_v<Snapshot>,
                "freeing a snapshot returns its block without running destructors");

 public:
  snapshot_store() noexcept = default;
  explicit snapshot_store(Alloc a) noexcept : alloc_(a) {}
  snapshot_store(const snapshot_store&) = delete;
  snapshot_store& operator=(const snapshot_store&) = delete;

  /// Frees every snapshot; the registry has checked that no reader is left.
  ~snapshot_store() {
    (void)free_retired_if([](const Snapshot&) noexcept { return true; });
    free(current_.load(std::memory_order_relaxed));
  }

  /// The published snapshot, nullptr while the registry is empty. Readers choose the order.
  [[nodiscard]] Snapshot* current(std::memory_order order) const noexcept {
    return current_.load(order);
  }

  /// A snapshot of `n` entries, its arrays alive but unset; nullptr when the allocator fails.
  [[nodiscard]] Snapshot* try_allocate(std::size_t n) noexcept {
    const std::size_t bytes = Snapshot::bytes_for(n);
    void* p = alloc_.allocate(bytes, alignof(Snapshot));
    if (p == nullptr) return nullptr;
    return ::new (p) Snapshot(n, bytes);
  }

  /// Returns `s`'s block (nullptr: nothing); `s` must not be published or retired.
  void free(const Snapshot* s) noexcept {
    if (s == nullptr) return;
    alloc_.deallocate(const_cast<Snapshot*>(s), s->bytes, alignof(Snapshot));
  }

  /// Makes `next` (nullptr: empty) the current snapshot and retires the one it replaces, which
  /// it returns still allocated (nullptr if there was none). seq_cst: the registries' readers
  /// rely on it (the store-buffer pattern with their reader counts).
  Snapshot* publish(Snapshot* next) noexcept {
    Snapshot* old = current_.exchange(next, std::memory_order_seq_cst);
    if (old != nullptr) {
      old->next_retired = retired_;
      retired_ = old;
    }
    return old;
  }

  [[nodiscard]] bool has_retired() const noexcept { return retired_ != nullptr; }

  /// Retired snapshots waiting to be freed (walks the list).
  [[nodiscard]] std::size_t retired_count() const noexcept {
    std::size_t n = 0;
    for (const Snapshot* s = retired_; s != nullptr; s = s->next_retired) ++n;
    return n;
  }

  /// Frees, newest first, every retired snapshot for which `unpinned(s)` is true and keeps
  /// the others in order; returns how many it freed.
  template <class Pred>
  std::size_t free_retired_if(Pred unpinned) noexcept {
    std::size_t n = 0;
    Snapshot** link = &retired_;
    while (*link != nullptr) {
      Snapshot* s = *link;
      if (unpinned(static_cast<const Snapshot&>(*s))) {
        *link = s->next_retired;
        free(s);
        ++n;
      } else {
        link = &s->next_retired;
      }
    }
    return n;
  }

  [[nodiscard]] Alloc get_allocator() const noexcept { return alloc_; }

 private:
  std::atomic<Snapshot*> current_{nullptr};
  Snapshot* retired_ = nullptr;
  [[no_unique_address]] Alloc alloc_{};
};

}  // namespace phyr::inline v0::detail
