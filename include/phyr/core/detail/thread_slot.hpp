/// `detail::this_thread_slot<N>()`: a per-thread index in [0, N) that no two live threads
/// share while at most N threads hold one (the per-thread caches and counter stripes of the
/// IOVA allocator and the IOMMU domain are indexed by it).
///
///   struct alignas(64) stripe { std::atomic<std::int64_t> maps{0}; };
///   stripe stripes[8];
///   stripes[phyr::detail::this_thread_slot<8>()].maps.fetch_add(1, std::memory_order_relaxed);
///
/// Why not a global counter modulo N: programs create and destroy threads (thread pools grow
/// and shrink; Google Benchmark starts new threads for every run), so the Nth new thread would
/// land on the slot of a thread that is still alive, and the two would then share one cache
/// slot's lock, magazines and counter lines. Here a thread claims a free slot at its first use
/// (one compare-and-swap on an occupancy mask) and gives it back when it exits. With more than
/// N live threads the extra ones share slots round-robin: still correct (every slot has its
/// lock and atomic counters), just no longer private.
#pragma once

#include <atomic>
#include <bit>
#include <cstdint>

namespace phyr::inline v0::detail {

template <unsigned N>
class thread_slot_table {
  static_assert(N >= 1 && N <= 64, "at most 64 private slots");
  static constexpr std::uint64_t all = N == 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << N) - 1;

 public:
  static constexpr unsigned shared_bit = 1u << 31;  // marks a slot taken without a claim

  /// A free slot, claimed; or, when all are taken, a shared one (marked with shared_bit).
  static unsigned claim() noexcept {
    std::uint64_t m = mask_.load(std::memory_order_relaxed);
    for (;;) {
      const std::uint64_t free = ~m & all;
      if (free == 0)
        return (overflow_.fetch_add(1, std::memory_order_relaxed) % N) | shared_bit;
      const unsigned i = static_cast<unsigned>(std::countr_zero(free));
      if (mask_.compare_exchange_weak(m, m | (std::uint64_t{1} << i), std::memory_order_acquire,
                                      std::memory_order_relaxed))
        return i;
    }
  }
  static void release(unsigned s) noexcept {
    if ((s & shared_bit) == 0)
      mask_.fetch_and(~(std::uint64_t{1} << s), std::memory_order_release);
  }
  /// Slots claimed now (for tests).
  [[nodiscard]] static std::uint64_t claimed() noexcept {
    return mask_.load(std::memory_order_acquire);
  }

 private:
  inline static std::atomic<std::uint64_t> mask_{0};
  inline static std::atomic<unsigned> overflow_{0};
};

/// The calling thread's slot in [0, N). The slot itself sits in a trivially destructible
/// thread_local, so code that runs during thread exit after the claim was returned (another
/// thread_local's destructor unmapping, say) still reads a valid index; it then shares a slot.
template <unsigned N>
[[nodiscard]] inline unsigned this_thread_slot() noexcept {
  using table = thread_slot_table<N>;
  thread_local unsigned slot = ~0u;
  if (slot == ~0u) [[unlikely]] {
    struct claim_holder {
      unsigned s = table::claim();
      ~claim_holder() {
        table::release(s);
        slot = (s & ~table::shared_bit) | table::shared_bit;  // keeps working, unclaimed
      }
    };
    thread_local const claim_holder holder;
    slot = holder.s;
  }
  return slot & ~table::shared_bit;
}

}  // namespace phyr::inline v0::detail
