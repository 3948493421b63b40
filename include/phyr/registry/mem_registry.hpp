/// `mem_registry<Target>`: register buffers of this process once, translate them per I/O.
///
///   phyr::phys_registry reg;                                   // virtual -> CPU physical
///   auto va = phyr::virt_range_of(buf, len);
///   if (auto r = reg.try_register(*va, pinned.ranges()); !r) return r.error();
///
///   auto rd = reg.reader();                                    // per I/O (or per batch)
///   auto t = rd.translate(phyr::virt_addr{io_va}, io_len);     // not_mapped if unregistered
///   if (!t) return t.error();
///   program(t->addr, t->len);                                  // t->len <= io_len: contiguous part
///
///   phyr::range_list<phyr::phys_range> sgl;                    // an iovec in one pass
///   if (auto r = rd.try_translate(iov, sgl); !r) return r.error();
///
///   (void)reg.try_unregister(*va);                             // whole registrations only
///
/// The user-space driver pattern (SPDK spdk_mem_register/spdk_mem_map, DPDK memsegs): pay for
/// pinning and IOMMU mapping once per buffer, then answer "which device address is this
/// pointer" with a lookup, without a system call. `Target` is the space translations land in:
/// `cpu_phys` for pinned memory, `dma_space<Bus>` for IOVAs from a mapper. The registry only
/// remembers what it is told: it does not pin or map (see os/linux/registry_glue.hpp).
///
/// Rules (each has a test in tests/unit/registry/mem_registry_test.cpp):
/// - Granularity: bytes. Any [va, va + len) with len > 0 may be registered; phyr imposes no
///   page or 2 MiB unit (SPDK did), so two buffers sharing a page register separately.
/// - The translation is a list of target ranges whose lengths add up to the virtual length
///   (a pinned buffer's physical pieces, a mapping's DMA ranges), or one target address for
///   the whole range (a linear translation the caller knows). Else invalid_argument.
/// - Overlap with a registered byte: errc::overlaps (phyr's name for SPDK's EBUSY; errc::busy
///   is reserved for the OS refusing a resource).
/// - Unregister takes whole registrations: [va, va + len) must start at a registration's start,
///   end at a registration's end (else straddles_boundary, SPDK's ERANGE), and have no
///   unregistered byte inside (else not_mapped); not_found when it touches no registration.
///   Several adjacent registrations may go in one call; each is notified separately.
/// - Translation runs on across a piece or registration boundary when the next byte is
///   registered, its target address follows on exactly and its flags are equal: the device
///   sees the same bytes either way, and unlike SPDK's opaque per-2 MiB values the registry
///   knows the target space, so it checks contiguity itself instead of asking a callback.
///   Give registrations different flags (e.g. a driver bit) to keep them apart.
/// - Addresses: the end of a registration must not pass `va_limit` (default 2^56, the top of
///   user space with 5-level paging; pass `user_va_limit_4level` = 2^47 for 4-level paging):
///   out_of_range. Translating there is simply not_mapped.
///
/// Hooks: `Hooks::on_register(va, targets)` runs under the writer mutex after validation and
/// allocation and before the registration becomes visible; an error from it rolls everything
/// back (nothing half-registered, nothing leaked) and is returned. `on_unregister` runs after
/// the registration stopped being visible, once per registration, in address order.
///
/// Concurrency (RCU-like, as map/p2p/p2p_registry.hpp): the registrations live in an immutable
/// sorted snapshot (virtual starts, target ranges, owner starts: three arrays in one allocator
/// block) published through an atomic pointer; writers take a mutex, build a new snapshot,
/// publish it and retire the old one. Readers never wait and see the old or the new snapshot,
/// never a mix. A `reader()` guard costs two atomic read-modify-writes (its count up and down);
/// a translation under it is one binary search (O(log n)).
/// Reclamation is SRCU's two-counter scheme: a guard counts itself in the counter of the
/// current epoch (0 or 1) for its lifetime. A writer (or `try_reclaim`) that finds the other
/// counter at zero flips the epoch: a grace period has passed. A snapshot retired before two
/// grace periods is freed: each counter has been seen at zero since it was retired, so no guard
/// that could have loaded it is left. With one registry-wide count (this registry's first form)
/// guards that always overlap (a server with I/O always in flight) kept it from ever reading
/// zero, and retired snapshots piled up without bound; with two, new guards go to the other
/// counter, so the old one drains as soon as the guards in it end (short guards: within a
/// write or two). p2p_registry pins each snapshot in its own count instead (a hard bound of one
/// retired snapshot per live guard, for four read-modify-writes per guard, not two: tried here,
/// a 4 KiB I/O's guard and translation took 28-29 ns that way against 16.4 ns with two counters
/// and 15.8 with one). A guard held forever holds reclamation back, as in any RCU.
/// Caveat: a reader that loaded the old snapshot may still hand out a translation of a buffer
/// being unregistered; the caller must not unregister a buffer with I/O in flight (as SPDK).
///
/// Invariants: segments sorted by virtual start, pairwise disjoint, each non-empty, and within
/// one registration consecutive (owner start = the registration's first byte).
#pragma once

#include <atomic>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <new>
#include <span>
#include <utility>

#include <phyr/config.hpp>
#include <phyr/container/range_list.hpp>
#include <phyr/core/address.hpp>
#include <phyr/core/address_space.hpp>
#include <phyr/core/allocator.hpp>
#include <phyr/core/detail/snapshot_store.hpp>
#include <phyr/core/error.hpp>
#include <phyr/core/range.hpp>

namespace phyr::inline v0 {

/// One past the highest user-space virtual address with 4-level paging (x86-64, arm64 48-bit).
inline constexpr std::uint64_t user_va_limit_4level = std::uint64_t{1} << 47;
/// The same with 5-level paging (x86-64 LA57, arm64 52-bit VA rounds below it).
inline constexpr std::uint64_t user_va_limit_5level = std::uint64_t{1} << 56;

/// What a translation answers: the target address of the first byte and how many bytes from
/// there are contiguous in the target space (at most the length asked for), with their flags.
template <address_space Target>
struct translation {
  address<Target> addr{};
  std::uint64_t len = 0;
  range_flags flags = range_flags::none;
  [[nodiscard]] constexpr range<Target> as_range() const noexcept {
    return range<Target>{addr, len, flags};
  }
  friend constexpr bool operator==(const translation&, const translation&) noexcept = default;
};

/// A type `H` is a hook set for a registry translating into `Target` if:
///  1. `h.on_register(va, targets)` is noexcept and returns `result<void>` (an error vetoes the
///     registration), and
///  2. `h.on_unregister(va, targets)` is noexcept (it cannot veto: the registration is gone).
/// `targets` are the registration's target pieces in virtual order (merged where contiguous).
template <class H, class Target>
concept registry_hooks =
    requires(H& h, const virt_range& va, std::span<const range<Target>> t) {
      { h.on_register(va, t) } noexcept -> std::same_as<result<void>>;
      { h.on_unregister(va, t) } noexcept;
    };

/// Hooks that do nothing.
struct no_registry_hooks {
  template <class T>
  result<void> on_register(const virt_range&, std::span<const T>) noexcept {
    return {};
  }
  template <class T>
  void on_unregister(const virt_range&, std::span<const T>) noexcept {}
};

namespace detail {

/// One immutable registry state, one allocator block:
/// `[header][u64 va_starts[n]][range<Target> targets[n]][u64 owners[n]]`.
/// Segment i covers virtual [va_starts[i], va_starts[i] + targets[i].len()); owners[i] is the
/// first virtual byte of the registration it belongs to. The starts are apart from the rest so
/// the binary search touches 8 bytes per step.
template <address_space Target>
struct registry_snapshot : snapshot_header<registry_snapshot<Target>> {
  using header = snapshot_header<registry_snapshot<Target>>;
  using header::count;
  using header::starts;
  using header::upper_bound;
  using target_range = range<Target>;

  mutable std::uint64_t retired_at = 0;  ///< grace periods completed when it was retired

  registry_snapshot(std::size_t n, std::size_t block_bytes) noexcept : header(n, block_bytes) {
    for (std::size_t i = 0; i < n; ++i) ::new (static_cast<void*>(targets() + i)) target_range{};
  }

  [[nodiscard]] static constexpr std::size_t bytes_for(std::size_t n) noexcept {
    return sizeof(registry_snapshot) + n * (2 * sizeof(std::uint64_t) + sizeof(target_range));
  }
  [[nodiscard]] target_range* targets() noexcept {
    return reinterpret_cast<target_range*>(starts() + count);
  }
  [[nodiscard]] const target_range* targets() const noexcept {
    return reinterpret_cast<const target_range*>(starts() + count);
  }
  [[nodiscard]] std::uint64_t* owners() noexcept {
    return reinterpret_cast<std::uint64_t*>(targets() + count);
  }
  [[nodiscard]] const std::uint64_t* owners() const noexcept {
    return reinterpret_cast<const std::uint64_t*>(targets() + count);
  }
  [[nodiscard]] std::uint64_t va_last(std::size_t i) const noexcept {
    return starts()[i] + (targets()[i].len() - 1);
  }

  [[nodiscard]] result<translation<Target>> translate(std::uint64_t va,
                                                      std::uint64_t len) const noexcept {
    if (len == 0) return errc::invalid_argument;
    if (len - 1 > ~va) return errc::overflow;
    std::size_t i = upper_bound(va);
    if (i == 0) return errc::not_mapped;
    --i;
    const std::uint64_t off = va - starts()[i];
    const target_range& t = targets()[i];
    if (off >= t.len()) return errc::not_mapped;
    std::uint64_t avail = t.len() - off;
    // Run on while the next segment follows on both virtually and in the target space.
    for (std::size_t j = i + 1; avail < len && j < count; ++j) {
      const target_range& p = targets()[j - 1];
      const target_range& q = targets()[j];
      if (starts()[j] != starts()[j - 1] + p.len() || !p.adjacent(q) || p.flags() != q.flags())
        break;
      avail += q.len();
    }
    return translation<Target>{address<Target>{t.addr().value() + off}, avail < len ? avail : len,
                               t.flags()};
  }
};

}  // namespace detail

/// Options of a registry.
struct registry_options {
  /// Registrations must end at or below this address (see the rules above).
  std::uint64_t va_limit = user_va_limit_5level;
};

/// The registry. `Hooks` are notified of (and may veto) registrations; `Alloc` allocates the
/// snapshots (writers only) and nothing else.
template <address_space Target, class Hooks = no_registry_hooks,
          segment_allocator Alloc = default_allocator>
  requires registry_hooks<Hooks, Target>
class mem_registry {
  using snapshot = detail::registry_snapshot<Target>;

 public:
  using target_space = Target;
  using target_range = range<Target>;
  using allocator_type = Alloc;
  using hooks_type = Hooks;

  /// A read-side critical section pinning one snapshot: every translation made through it
  /// sees the same registrations. Take one per I/O or per batch, and drop it soon (retired
  /// snapshots wait for it). Move-only.
  class read_guard {
   public:
    read_guard(const read_guard&) = delete;
    read_guard& operator=(const read_guard&) = delete;
    read_guard(read_guard&& o) noexcept
        : count_(std::exchange(o.count_, nullptr)), snap_(o.snap_) {}
    read_guard& operator=(read_guard&&) = delete;
    ~read_guard() {
      // release: this guard's reads of the snapshot happen before a writer frees it.
      if (count_ != nullptr) count_->fetch_sub(1, std::memory_order_release);
    }

    /// The target address of `va` and the number of bytes from it, at most `len`, that are
    /// registered and contiguous in the target space with equal flags. Errors: not_mapped (`va`
    /// is not registered), invalid_argument (len 0), overflow ([va, va + len) wraps).
    [[nodiscard]] result<translation<Target>> translate(virt_addr va,
                                                        std::uint64_t len) const noexcept {
      if (snap_ == nullptr) return len == 0 ? errc::invalid_argument : errc::not_mapped;
      return snap_->translate(va.value(), len);
    }

    /// Appends the target ranges of every byte of `iov`, in order, to `out`; adjacent results
    /// coalesce as in `range_list::try_append` (also across iovec pieces and registrations).
    /// Errors: not_mapped (a byte of `iov` is not registered), out_of_memory. Strong
    /// guarantee: on failure `out` holds the same ranges as before. Fast path: an empty `out`
    /// (e.g. cleared and reused per I/O) is filled in place and cleared again on failure, which
    /// keeps its spare segments; a non-empty one is extended through a scratch list that is
    /// spliced on (one segment allocation per call).
    template <segment_allocator A>
    result<void> try_translate(std::span<const virt_range> iov,
                               range_list<target_range, A>& out) const noexcept {
      if (out.empty()) {
        if (auto r = append_all(iov, out); !r) {
          out.clear();
          return r;
        }
        return {};
      }
      range_list<target_range, A> tmp{out.get_allocator()};
      // `out` already holds valid limits, so copying them cannot fail; pass it on if it does.
      if (auto r = tmp.try_set_max_segment(out.max_segment()); !r) return r;
      if (auto r = tmp.try_set_segment_boundary(out.segment_boundary()); !r) return r;
      if (auto r = append_all(iov, tmp); !r) return r;
      return out.try_splice_back(std::move(tmp));
    }

    /// Segments now registered (pieces after merging; observability and tests).
    [[nodiscard]] std::size_t segments() const noexcept {
      return snap_ == nullptr ? 0 : snap_->count;
    }

   private:
    friend class mem_registry;
    template <segment_allocator A>
    result<void> append_all(std::span<const virt_range> iov,
                            range_list<target_range, A>& out) const noexcept {
      for (const virt_range& piece : iov) {
        std::uint64_t va = piece.addr().value();
        std::uint64_t left = piece.len();
        while (left != 0) {
          auto t = translate(virt_addr{va}, left);
          if (!t) return t.error();
          if (auto r = out.try_append(t->as_range()); !r) return r.error();
          va += t->len;
          left -= t->len;
        }
      }
      return {};
    }
    explicit read_guard(const mem_registry* reg) noexcept
        : count_(&reg->readers_[reg->epoch_.load(std::memory_order_seq_cst)]) {
      // seq_cst here and in advance(): the store-buffer pattern. A writer that reads a counter
      // as zero after a snapshot was unpublished knows every guard counted there loaded a
      // newer one; a guard whose count it missed comes later in the total order and loads a
      // newer one too. Which counter a guard picks does not matter: both are read before a
      // snapshot is freed.
      count_->fetch_add(1, std::memory_order_seq_cst);
      snap_ = reg->store_.current(std::memory_order_seq_cst);
    }
    std::atomic<std::size_t>* count_;
    const snapshot* snap_ = nullptr;
  };

  mem_registry() noexcept = default;
  explicit mem_registry(registry_options o, Hooks h = {}, Alloc a = {}) noexcept
      : store_(a), opt_(o), hooks_(std::move(h)) {}
  mem_registry(const mem_registry&) = delete;
  mem_registry& operator=(const mem_registry&) = delete;

  /// No reader may be active. Registrations left are dropped without notification.
  ~mem_registry() {
    PHYR_ASSERT(readers_[0].load(std::memory_order_relaxed) == 0 &&
                    readers_[1].load(std::memory_order_relaxed) == 0,
                "mem_registry destroyed while a read_guard is alive");
  }

  [[nodiscard]] read_guard reader() const noexcept { return read_guard{this}; }

  /// One-shot translation (takes and drops a guard).
  [[nodiscard]] result<translation<Target>> translate(virt_addr va,
                                                      std::uint64_t len) const noexcept {
    return reader().translate(va, len);
  }
  /// One-shot iovec translation (one guard for the whole iovec).
  template <segment_allocator A>
  result<void> try_translate(std::span<const virt_range> iov,
                             range_list<target_range, A>& out) const noexcept {
    return reader().try_translate(iov, out);
  }

  /// Registers `va` translating linearly to [target, target + va.len()) with `flags`.
  /// Errors: overflow (the target range wraps), plus those of the list form.
  result<void> try_register(const virt_range& va, address<Target> target,
                            range_flags flags = range_flags::none) noexcept {
    auto t = target_range::create(target, va.len(), flags);
    if (!t) return t.error();
    return try_register(va, std::span<const target_range>{&*t, 1});
  }

  /// Registers `va` with `targets`: any forward range of `range<Target>` (a span, a
  /// range_list, a mapping) whose lengths add up to va.len(), covering va in order.
  /// Errors: invalid_argument (empty, or lengths do not add up), out_of_range (past va_limit),
  /// overlaps, out_of_memory, or the error `on_register` returned. Strong guarantee.
  template <class List>
    requires requires(const List& l) {
      { *l.begin() } -> std::convertible_to<const target_range&>;
      l.end();
    }
  result<void> try_register(const virt_range& va, const List& targets) noexcept {
    if (va.len() == 0) return errc::invalid_argument;
    if (va.addr().value() >= opt_.va_limit || va.len() > opt_.va_limit - va.addr().value())
      return errc::out_of_range;
    std::size_t pieces = 0;
    std::uint64_t sum = 0;
    {
      const target_range* prev = nullptr;
      for (const target_range& t : targets) {
        if (t.len() == 0 || t.len() > va.len() - sum) return errc::invalid_argument;
        sum += t.len();
        if (prev == nullptr || !prev->can_merge(t)) ++pieces;
        prev = &t;
      }
    }
    if (sum != va.len()) return errc::invalid_argument;

    std::lock_guard<std::mutex> lock(write_mutex_);
    const snapshot* cur = store_.current(std::memory_order_relaxed);
    const std::size_t old_n = cur == nullptr ? 0 : cur->count;
    const std::uint64_t a = va.addr().value();
    const std::uint64_t last = va.last().value();
    std::size_t at = 0;  // insertion index
    if (cur != nullptr) {
      at = cur->upper_bound(a);
      if (at > 0 && cur->va_last(at - 1) >= a) return errc::overlaps;
      if (at < old_n && cur->starts()[at] <= last) return errc::overlaps;
    }
    if (pieces > (~std::size_t{0} / 64) - old_n) return errc::out_of_memory;
    snapshot* next = store_.try_allocate(old_n + pieces);
    if (next == nullptr) return errc::out_of_memory;
    copy_segments(cur, 0, at, next, 0);
    std::size_t k = at;
    std::uint64_t v = a;
    for (const target_range& t : targets) {
      if (k > at && next->targets()[k - 1].can_merge(t)) {
        next->targets()[k - 1] = range<Target>{next->targets()[k - 1].addr(),
                                               next->targets()[k - 1].len() + t.len(),
                                               t.flags()};
      } else {
        next->starts()[k] = v;
        next->targets()[k] = t;
        next->owners()[k] = a;
        ++k;
      }
      v += t.len();
    }
    PHYR_ASSERT(k == at + pieces, "piece count changed between passes");
    copy_segments(cur, at, old_n, next, k);
    if (auto r = hooks_.on_register(va, std::span<const target_range>{next->targets() + at,
                                                                      pieces});
        !r) {
      store_.free(next);
      return r.error();
    }
    publish(next);
    return {};
  }

  /// Unregisters the whole registrations making up `va` (rules above), then calls
  /// `on_unregister` for each. Errors: not_found, straddles_boundary, not_mapped,
  /// out_of_memory. Strong guarantee (no hook runs on failure).
  result<void> try_unregister(const virt_range& va) noexcept {
    if (va.len() == 0) return errc::invalid_argument;
    std::lock_guard<std::mutex> lock(write_mutex_);
    const snapshot* cur = store_.current(std::memory_order_relaxed);
    if (cur == nullptr) return errc::not_found;
    const std::uint64_t a = va.addr().value();
    const std::uint64_t last = va.last().value();
    // Segments [lo, hi) intersect va.
    std::size_t lo = cur->upper_bound(a);
    if (lo > 0 && cur->va_last(lo - 1) >= a) --lo;
    std::size_t hi = lo;
    while (hi < cur->count && cur->starts()[hi] <= last) ++hi;
    if (lo == hi) return errc::not_found;
    if (cur->starts()[lo] < a || cur->owners()[lo] != cur->starts()[lo] ||
        cur->va_last(hi - 1) > last || (hi < cur->count && cur->owners()[hi] != cur->starts()[hi]))
      return errc::straddles_boundary;
    if (cur->starts()[lo] != a || cur->va_last(hi - 1) != last) return errc::not_mapped;
    for (std::size_t i = lo + 1; i < hi; ++i) {
      if (cur->starts()[i] != cur->starts()[i - 1] + cur->targets()[i - 1].len())
        return errc::not_mapped;
    }
    const std::size_t keep = cur->count - (hi - lo);
    snapshot* next = nullptr;
    if (keep != 0) {
      next = store_.try_allocate(keep);
      if (next == nullptr) return errc::out_of_memory;
      copy_segments(cur, 0, lo, next, 0);
      copy_segments(cur, hi, cur->count, next, lo);
    }
    // Retire without freeing: the hooks read the old snapshot's segments.
    const snapshot* old = store_.publish(next);
    old->retired_at = grace_periods_;
    for (std::size_t i = lo; i < hi;) {
      std::size_t j = i + 1;
      while (j < hi && old->owners()[j] == old->owners()[i]) ++j;
      const std::uint64_t len = old->va_last(j - 1) - old->starts()[i] + 1;
      hooks_.on_unregister(virt_range{virt_addr{old->starts()[i]}, len},
                           std::span<const target_range>{old->targets() + i, j - i});
      i = j;
    }
    (void)reclaim();
    return {};
  }

  /// Ends the grace periods it can and frees the retired snapshots no read guard can hold any
  /// more; returns how many were freed. Writers do this on their own after each publish; call
  /// it to reclaim once the last guards of a quiet registry are gone.
  std::size_t try_reclaim() noexcept {
    std::lock_guard<std::mutex> lock(write_mutex_);
    return reclaim();
  }
  /// Snapshots waiting for the guards that could hold them (observability and tests).
  [[nodiscard]] std::size_t retired_snapshots() const noexcept {
    std::lock_guard<std::mutex> lock(write_mutex_);
    return store_.retired_count();
  }
  /// Segments registered now.
  [[nodiscard]] std::size_t segments() const noexcept { return reader().segments(); }
  [[nodiscard]] const registry_options& options() const noexcept { return opt_; }
  [[nodiscard]] Hooks& hooks() noexcept { return hooks_; }
  [[nodiscard]] Alloc get_allocator() const noexcept { return store_.get_allocator(); }

  /// Calls f(virt_range segment, const target_range&, virt_addr owner) for every segment in
  /// address order, on one snapshot (tests and diagnostics).
  template <class F>
  void for_each_segment(F&& f) const noexcept {
    auto g = reader();
    if (g.snap_ == nullptr) return;
    for (std::size_t i = 0; i < g.snap_->count; ++i)
      f(virt_range{virt_addr{g.snap_->starts()[i]}, g.snap_->targets()[i].len()},
        g.snap_->targets()[i], virt_addr{g.snap_->owners()[i]});
  }

 private:
  static void copy_segments(const snapshot* from, std::size_t b, std::size_t e, snapshot* to,
                            std::size_t at) noexcept {
    for (std::size_t i = b; i < e; ++i, ++at) {
      to->starts()[at] = from->starts()[i];
      to->targets()[at] = from->targets()[i];
      to->owners()[at] = from->owners()[i];
    }
  }
  // Caller holds write_mutex_. Ends grace periods while the counter new guards no longer
  // use reads zero (at most two in a row: after two flips the counter that had the guards
  // alive before is the idle one again), then frees every snapshot retired two grace periods
  // ago or more.
  std::size_t reclaim() noexcept {
    if (!store_.has_retired()) return 0;
    for (int i = 0; i < 2; ++i) {
      const unsigned e = epoch_.load(std::memory_order_relaxed);  // only writers store it
      // seq_cst (an acquire too): pairs with the guards' release, so their reads of a
      // snapshot happen before it is freed, and with their seq_cst count (see read_guard).
      if (readers_[e ^ 1u].load(std::memory_order_seq_cst) != 0) break;
      epoch_.store(e ^ 1u, std::memory_order_seq_cst);
      ++grace_periods_;
    }
    const std::uint64_t done = grace_periods_;
    return store_.free_retired_if(
        [done](const snapshot& s) noexcept { return done - s.retired_at >= 2; });
  }
  void publish(snapshot* next) noexcept {
    const snapshot* old = store_.publish(next);
    if (old != nullptr) old->retired_at = grace_periods_;
    (void)reclaim();
  }

  detail::snapshot_store<snapshot, Alloc> store_;  // retired list guarded by write_mutex_
  mutable std::atomic<std::size_t> readers_[2] = {};  // guards alive, by epoch
  std::atomic<unsigned> epoch_{0};                    // the counter new guards use
  std::uint64_t grace_periods_ = 0;                   // epoch flips (write_mutex_)
  mutable std::mutex write_mutex_;
  registry_options opt_{};
  [[no_unique_address]] Hooks hooks_{};
};

/// Virtual -> CPU physical (pinned memory).
using phys_registry = mem_registry<cpu_phys>;
/// Virtual -> DMA addresses of bus `Bus` (IOVAs of a VFIO container, an IOMMU domain).
template <class Bus>
using dma_registry = mem_registry<dma_space<Bus>>;

}  // namespace phyr::inline v0
