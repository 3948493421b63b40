/// `p2p_registry`: which device owns a physical range (PCI BARs: GPU memory, NVMe CMBs, NIC
/// BARs), found per range and never per page.
///
///   phyr::p2p_registry<> reg;
///   auto w = phyr::p2p_window::create(phyr::phys_addr{0x40'0000'0000}, 256 << 20,
///                                     phyr::p2p_provider_id{gpu_id}, /*bus_offset=*/0);
///   if (auto r = reg.try_register(*w); !r) return r.error();   // overlaps, out_of_memory
///
///   auto rd = reg.reader();                        // one snapshot for a whole list
///   for (const phyr::phys_range& r : list) {
///     auto o = rd.lookup(r);                       // O(log P)
///     if (!o) return o.error();                    // straddles_boundary
///     if (o->is_ram()) ...; else dma = o->window().bus_address(r.addr());
///   }
///
/// Why this shape (Gunthorpe 2019: "a small hash table of the upper phys addr bits, or an
/// interval tree"; Logan: with a range instead of pages "it's relatively easy to check that the
/// whole range belongs to a specific pci_dev"): BAR windows never overlap, so a sorted array of
/// window starts answers "who owns [a, a+len)" with one binary search, and the whole range is
/// checked against the owner's end, not page by page.
///
/// Concurrency: read-mostly, RCU-like. The windows live in an immutable snapshot (sorted
/// starts, then the windows, in one allocator block) published through an atomic pointer.
/// A reader pins the snapshot it loads in that snapshot's own reader count; a registration
/// builds a new snapshot under a mutex, publishes it, retires the old one, and frees every
/// retired snapshot whose count is zero. Why per-snapshot counts (not one count for the whole
/// registry): with overlapping read guards a registry-wide count never reaches zero, and
/// retired snapshots piled up without bound (6,865 pending with 2 readers and 1 writer). Now,
/// when any writer returns, the retired snapshots still held are at most the read guards alive
/// (each pins one). The one race, a reader between loading the pointer and pinning what it
/// loaded, is closed by a registry-wide "entering" count that the writer waits on before
/// freeing: a few instructions wide, it never waits for a guard's lifetime. Readers never
/// wait. A reader costs four atomic read-modify-writes per `reader()` guard (not per lookup):
/// take one guard per list, not per range.
///
/// Invariants: windows in a snapshot are sorted by start and pairwise disjoint; every window's
/// bus addresses [start + offset, last + offset] lie in [0, 2^64) so `bus_address` never wraps.
#pragma once

#include <atomic>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <new>
#include <phyr/config.hpp>
#include <phyr/core/address.hpp>
#include <phyr/core/allocator.hpp>
#include <phyr/core/detail/snapshot_store.hpp>
#include <phyr/core/error.hpp>
#include <phyr/core/range.hpp>
#include <span>
#include <thread>

namespace phyr::inline v0 {

/// Identifies the device that provides a window. PCI users take it from
/// `pci_bdf::provider_id()` (pci_topology.hpp); any other 64-bit identity works too.
struct p2p_provider_id {
  std::uint64_t value = 0;
  friend constexpr bool operator==(p2p_provider_id, p2p_provider_id) noexcept = default;
  friend constexpr auto operator<=>(p2p_provider_id, p2p_provider_id) noexcept = default;
};

/// One registered window: CPU physical range, owner, and the PCI bus offset
/// (bus address - CPU physical address; 0 on x86, where they are equal).
class p2p_window {
 public:
  constexpr p2p_window() noexcept = default;

  /// Checked factory. Errors: invalid_argument (len 0), too_long (above phys_range::max_len),
  /// overflow (the CPU range or its bus-address image would pass 2^64 or go below 0).
  [[nodiscard]] static constexpr result<p2p_window> create(phys_addr addr, byte_count len,
                                                           p2p_provider_id provider,
                                                           std::int64_t bus_offset) noexcept {
    auto r = phys_range::create(addr, len);
    if (!r) return r.error();
    const std::uint64_t first = r->addr().value();
    const std::uint64_t last = r->last().value();
    if (bus_offset >= 0) {
      const auto off = static_cast<std::uint64_t>(bus_offset);
      if (off > ~last) return errc::overflow;
    } else {
      // -(INT64_MIN) is not representable; do the negation in unsigned arithmetic.
      const std::uint64_t neg = std::uint64_t{0} - static_cast<std::uint64_t>(bus_offset);
      if (neg > first) return errc::overflow;
    }
    p2p_window w;
    w.range_ = *r;
    w.provider_ = provider;
    w.bus_offset_ = bus_offset;
    return w;
  }

  [[nodiscard]] constexpr const phys_range& range() const noexcept { return range_; }
  [[nodiscard]] constexpr phys_addr addr() const noexcept { return range_.addr(); }
  [[nodiscard]] constexpr byte_count len() const noexcept { return range_.len(); }
  [[nodiscard]] constexpr p2p_provider_id provider() const noexcept { return provider_; }
  [[nodiscard]] constexpr std::int64_t bus_offset() const noexcept { return bus_offset_; }

  /// The PCI bus address of CPU physical address `a`, which must lie in the window.
  [[nodiscard]] constexpr std::uint64_t bus_address(phys_addr a) const noexcept {
    PHYR_ASSERT(range_.contains(a), "bus_address of an address outside the window");
    // Modular add: create() proved the image neither wraps nor goes negative.
    return a.value() + static_cast<std::uint64_t>(bus_offset_);
  }

  friend constexpr bool operator==(const p2p_window&, const p2p_window&) noexcept = default;

 private:
  phys_range range_{};
  p2p_provider_id provider_{};
  std::int64_t bus_offset_ = 0;
};
static_assert(sizeof(p2p_window) == 32);

/// What owns a looked-up range: ordinary memory (no provider), or one provider window that
/// holds all of it.
class p2p_owner {
 public:
  [[nodiscard]] static constexpr p2p_owner ram() noexcept { return p2p_owner{}; }
  [[nodiscard]] static constexpr p2p_owner provider(const p2p_window& w) noexcept {
    p2p_owner o;
    o.window_ = w;
    o.ram_ = false;
    return o;
  }
  [[nodiscard]] constexpr bool is_ram() const noexcept { return ram_; }
  [[nodiscard]] constexpr bool is_provider() const noexcept { return !ram_; }
  /// The owning window; only for `is_provider()`.
  [[nodiscard]] constexpr const p2p_window& window() const noexcept {
    PHYR_ASSERT(!ram_, "p2p_owner::window() of RAM");
    return window_;
  }

 private:
  p2p_window window_{};
  bool ram_ = true;
};

namespace detail {

/// One immutable registry state. Layout in a single allocator block:
/// [p2p_snapshot][std::uint64_t starts[count]][p2p_window windows[count]].
/// The starts are kept apart from the windows so the binary search touches 8 bytes per step
/// (64 providers = one 512-byte array) and reads a window only once, at the end.
struct p2p_snapshot : snapshot_header<p2p_snapshot> {
  mutable std::atomic<std::size_t> readers{0};  ///< live read guards pinning this snapshot

  p2p_snapshot(std::size_t n, std::size_t block_bytes) noexcept : snapshot_header(n, block_bytes) {
    // Windows are trivially copyable; give the array live objects before assigning to them.
    for (std::size_t i = 0; i < n; ++i) ::new (static_cast<void*>(windows() + i)) p2p_window{};
  }

  [[nodiscard]] static constexpr std::size_t bytes_for(std::size_t n) noexcept {
    return sizeof(p2p_snapshot) + n * (sizeof(std::uint64_t) + sizeof(p2p_window));
  }
  [[nodiscard]] p2p_window* windows() noexcept {
    return reinterpret_cast<p2p_window*>(starts() + count);
  }
  [[nodiscard]] const p2p_window* windows() const noexcept {
    return reinterpret_cast<const p2p_window*>(starts() + count);
  }

  [[nodiscard]] result<p2p_owner> lookup(const phys_range& r) const noexcept {
    const std::uint64_t a = r.addr().value();
    const std::uint64_t last = r.last().value();
    const std::size_t i = upper_bound(a);
    if (i > 0) {
      const p2p_window& w = windows()[i - 1];
      const std::uint64_t wlast = w.range().last().value();
      if (a <= wlast) {
        if (last <= wlast) return p2p_owner::provider(w);
        return errc::straddles_boundary;  // runs off the end of its window
      }
    }
    // Starts in RAM: it must end before the next window begins.
    if (i < count && starts()[i] <= last) return errc::straddles_boundary;
    return p2p_owner::ram();
  }
};

}  // namespace detail

/// Provider registry: the interval structure of DESIGN.md's PCI P2P mapper.
/// `Alloc` allocates the snapshots (writers only, under the registry's mutex).
template <segment_allocator Alloc = default_allocator>
class p2p_registry {
  using snapshot = detail::p2p_snapshot;

 public:
  using allocator_type = Alloc;

  /// A read-side critical section: pins one snapshot so a whole list is classified against
  /// one consistent set of windows. Cheap to create; do not keep it for long (the snapshot it
  /// pins is not freed while it lives). Move-only.
  class read_guard {
   public:
    read_guard(const read_guard&) = delete;
    read_guard& operator=(const read_guard&) = delete;
    read_guard(read_guard&& o) noexcept : snap_(o.snap_) { o.snap_ = nullptr; }
    read_guard& operator=(read_guard&&) = delete;
    ~read_guard() {
      // release: this guard's reads of the snapshot happen before a writer frees it.
      if (snap_ != nullptr) snap_->readers.fetch_sub(1, std::memory_order_release);
    }

    /// The owner of all of `r`: RAM, or the one window containing it; straddles_boundary when
    /// `r` crosses a window's start or end (part provider, part RAM or another provider).
    /// O(log P).
    [[nodiscard]] result<p2p_owner> lookup(const phys_range& r) const noexcept {
      if (snap_ == nullptr) return p2p_owner::ram();
      return snap_->lookup(r);
    }
    /// The registered windows in address order.
    [[nodiscard]] std::span<const p2p_window> windows() const noexcept {
      if (snap_ == nullptr) return {};
      return {snap_->windows(), snap_->count};
    }
    [[nodiscard]] std::size_t size() const noexcept { return snap_ == nullptr ? 0 : snap_->count; }

   private:
    friend class p2p_registry;
    explicit read_guard(const p2p_registry* reg) noexcept {
      // seq_cst here and in reclaim() is the store-buffer pattern: a writer that sees nobody
      // entering after it unpublished a snapshot knows every reader that loaded it has pinned
      // it already, and every later reader loads a newer one.
      reg->entering_.fetch_add(1, std::memory_order_seq_cst);
      snap_ = reg->store_.current(std::memory_order_seq_cst);
      if (snap_ != nullptr) snap_->readers.fetch_add(1, std::memory_order_seq_cst);
      reg->entering_.fetch_sub(1, std::memory_order_seq_cst);
    }
    const snapshot* snap_ = nullptr;
  };

  p2p_registry() noexcept = default;
  explicit p2p_registry(Alloc a) noexcept : store_(a) {}
  p2p_registry(const p2p_registry&) = delete;
  p2p_registry& operator=(const p2p_registry&) = delete;

  /// No reader or writer may be active.
  ~p2p_registry() {
    const snapshot* cur = store_.current(std::memory_order_relaxed);
    PHYR_ASSERT(cur == nullptr || cur->readers.load() == 0,
                "p2p_registry destroyed while a read_guard is alive");
    (void)store_.free_retired_if([](const snapshot& s) noexcept {
      PHYR_ASSERT(s.readers.load() == 0, "p2p_registry destroyed while a read_guard is alive");
      return true;
    });
  }

  /// Pins the current snapshot for a batch of lookups.
  [[nodiscard]] read_guard reader() const noexcept { return read_guard{this}; }

  /// One-shot lookup (takes and drops a guard; prefer `reader()` for lists).
  [[nodiscard]] result<p2p_owner> lookup(const phys_range& r) const noexcept {
    return reader().lookup(r);
  }

  /// Adds one window. Errors: overlaps (with a registered window), out_of_memory.
  /// Strong guarantee; safe concurrently with readers and other writers.
  result<void> try_register(const p2p_window& w) noexcept {
    return try_register_all(std::span<const p2p_window>{&w, 1});
  }

  /// Adds several windows atomically: readers see all of them or none. Errors: overlaps (with
  /// each other or with a registered window), invalid_argument (a default-constructed window),
  /// out_of_memory. Strong guarantee.
  result<void> try_register_all(std::span<const p2p_window> ws) noexcept {
    for (const p2p_window& w : ws) {
      if (w.len() == 0) return errc::invalid_argument;
    }
    if (ws.empty()) return {};
    std::lock_guard<std::mutex> lock(write_mutex_);
    const snapshot* cur = store_.current(std::memory_order_relaxed);
    const std::size_t old_n = cur == nullptr ? 0 : cur->count;
    if (ws.size() > (~std::size_t{0} / 64) - old_n) return errc::out_of_memory;
    const std::size_t n = old_n + ws.size();
    snapshot* next = store_.try_allocate(n);
    if (next == nullptr) return errc::out_of_memory;
    p2p_window* out = next->windows();
    for (std::size_t i = 0; i < old_n; ++i) out[i] = cur->windows()[i];
    // Insertion sort of the (few) new windows into the sorted old ones.
    for (std::size_t k = 0; k < ws.size(); ++k) {
      std::size_t j = old_n + k;
      const std::uint64_t s = ws[k].addr().value();
      while (j > 0 && out[j - 1].addr().value() > s) {
        out[j] = out[j - 1];
        --j;
      }
      out[j] = ws[k];
    }
    for (std::size_t i = 0; i < n; ++i) {
      next->starts()[i] = out[i].addr().value();
      if (i > 0 && out[i - 1].range().overlaps(out[i].range())) {
        store_.free(next);
        return errc::overlaps;
      }
    }
    publish(next);
    return {};
  }

  /// Removes every window of `provider` (device removal). Errors: not_found (none registered),
  /// out_of_memory. Strong guarantee. Readers holding an older guard keep seeing the window
  /// until they drop it, as with RCU.
  result<void> try_unregister(p2p_provider_id provider) noexcept {
    std::lock_guard<std::mutex> lock(write_mutex_);
    const snapshot* cur = store_.current(std::memory_order_relaxed);
    if (cur == nullptr) return errc::not_found;
    std::size_t keep = 0;
    for (std::size_t i = 0; i < cur->count; ++i) keep += cur->windows()[i].provider() != provider;
    if (keep == cur->count) return errc::not_found;
    snapshot* next = nullptr;
    if (keep != 0) {
      next = store_.try_allocate(keep);
      if (next == nullptr) return errc::out_of_memory;
      std::size_t j = 0;
      for (std::size_t i = 0; i < cur->count; ++i) {
        const p2p_window& w = cur->windows()[i];
        if (w.provider() == provider) continue;
        next->windows()[j] = w;
        next->starts()[j] = w.addr().value();
        ++j;
      }
    }
    publish(next);
    return {};
  }

  /// Frees the retired snapshots no read guard pins any more; returns how many were freed.
  /// Writers do this on their own after each publish; call it to reclaim once the last guards
  /// of a quiet registry are gone.
  std::size_t try_reclaim() noexcept {
    std::lock_guard<std::mutex> lock(write_mutex_);
    return reclaim();
  }

  /// Snapshots waiting for their read guards to end (observability and tests): when a writer
  /// or try_reclaim returns, at most the number of read guards alive at that moment.
  [[nodiscard]] std::size_t retired_snapshots() const noexcept {
    std::lock_guard<std::mutex> lock(write_mutex_);
    return store_.retired_count();
  }

  /// Windows registered now (a racing writer may change it right after).
  [[nodiscard]] std::size_t size() const noexcept { return reader().size(); }
  [[nodiscard]] Alloc get_allocator() const noexcept { return store_.get_allocator(); }

 private:
  // Caller holds write_mutex_. Frees every retired snapshot no guard pins.
  std::size_t reclaim() noexcept {
    if (!store_.has_retired()) return 0;
    // A reader between loading the current snapshot and pinning it may hold a retired one not
    // yet counted; the window is a few instructions, so wait it out rather than keep the
    // snapshot (yield: the reader may be preempted inside it).
    while (entering_.load(std::memory_order_seq_cst) != 0) std::this_thread::yield();
    // acquire: pairs with the guard's release, so its reads happen before the free.
    return store_.free_retired_if(
        [](const snapshot& s) noexcept { return s.readers.load(std::memory_order_acquire) == 0; });
  }

  // Caller holds write_mutex_.
  void publish(snapshot* next) noexcept {
    (void)store_.publish(next);
    (void)reclaim();
  }

  detail::snapshot_store<snapshot, Alloc> store_;  // retired list guarded by write_mutex_
  mutable std::atomic<std::size_t> entering_{0};   // readers between load and pin
  mutable std::mutex write_mutex_;
};

}  // namespace phyr::inline v0
