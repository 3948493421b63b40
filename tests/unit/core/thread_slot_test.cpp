#include <catch2/catch.hpp>
#include <phyr/core/detail/thread_slot.hpp>
#include <set>
#include <thread>
#include <atomic>
#include <vector>

namespace {
// The slots of `count` threads that are all alive at once (each stays until all have one).
template <unsigned N>
std::vector<unsigned> slots_of_live_threads(int count) {
  std::vector<unsigned> got(static_cast<std::size_t>(count), 99);
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> ts;
  for (int i = 0; i < count; ++i)
    ts.emplace_back([&, i] {
      got[static_cast<std::size_t>(i)] = phyr::detail::this_thread_slot<N>();
      ready.fetch_add(1);
      while (!go.load()) std::this_thread::yield();
    });
  while (ready.load() != count) std::this_thread::yield();
  if constexpr (N == 8) CHECK(phyr::detail::thread_slot_table<8>::claimed() == 0xff);
  go = true;
  for (auto& t : ts) t.join();
  return got;
}
}  // namespace


TEST_CASE("thread_slot: live threads never share a slot, however many threads came and went",
          "[thread_slot][concurrent]") {
  const unsigned main_slot = phyr::detail::this_thread_slot<8>();
  // A global counter modulo 8 put the 8th new thread on the main thread's slot; claims do not.
  for (int round = 0; round < 40; ++round) {
    unsigned other = 99;
    std::thread t([&] { other = phyr::detail::this_thread_slot<8>(); });
    t.join();
    CHECK(other < 8);
    CHECK(other != main_slot);
  }
  // Seven more live threads at once: eight distinct slots in all (all eight claimed).
  const std::vector<unsigned> got = slots_of_live_threads<8>(7);
  std::set<unsigned> distinct(got.begin(), got.end());
  distinct.insert(main_slot);
  CHECK(distinct.size() == 8);
  // Their claims are back: only the main thread's remains.
  CHECK(phyr::detail::thread_slot_table<8>::claimed() == (std::uint64_t{1} << main_slot));
}

TEST_CASE("thread_slot: with more live threads than slots the extra ones share, in range",
          "[thread_slot][concurrent]") {
  (void)phyr::detail::this_thread_slot<2>();
  for (unsigned s : slots_of_live_threads<2>(5)) CHECK(s < 2);
}
