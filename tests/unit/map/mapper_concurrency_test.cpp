// Concurrency of the mappers documented as safe to call from several threads (run under the
// tsan preset): offset_mapper maps from many threads; one iommu_domain serves mappers of two
// buses, a thread using its IOVA allocator directly, and a stats reader, all at once.
// (identity_mapper's concurrent maps of one list are issue 11 item 1, tested with its fix.)
#include <atomic>
#include <catch2/catch.hpp>
#include <cstdint>
#include <phyr/map/iommu/iommu_mapper.hpp>
#include <phyr/map/offset_mapper.hpp>
#include <random>
#include <thread>
#include <vector>

using phyr::dma_direction;
using phyr::phys_addr;
using phyr::phys_range;

namespace {
struct soc_bus {};
struct bus_a {};
struct bus_b {};
constexpr std::uint64_t page = 4096;

phyr::range_list<phys_range> random_list(std::mt19937_64& rng) {
  phyr::range_list<phys_range> l;
  const int n = 1 + static_cast<int>(rng() % 40);
  for (int i = 0; i < n; ++i) {
    const std::uint64_t a = (0x8000'0000 + (rng() % (1u << 18)) * page);
    // Called from worker threads: Catch2 assertions are not thread-safe, so fail hard instead.
    phyr::must(l.try_append(phys_range{phys_addr{a}, page * (1 + rng() % 3)}));
  }
  return l;
}
}  // namespace

TEST_CASE("offset_mapper: concurrent maps and unmaps of one shared list from several threads",
          "[offset_mapper][concurrent]") {
  phyr::offset_mapper<soc_bus> m;
  REQUIRE(
      m.try_add_window(phys_addr{0x8000'0000}, phyr::dma_addr<soc_bus>{0x1000'0000}, 1ull << 31));
  std::mt19937_64 rng(7);
  const auto shared = random_list(rng);
  std::vector<std::uint64_t> want;
  for (const phys_range r : shared) want.push_back(r.addr().value() - 0x7000'0000);
  std::atomic<int> bad{0};
  std::vector<std::thread> th;
  for (int t = 0; t < 3; ++t) {
    th.emplace_back([&] {
      for (int i = 0; i < 300; ++i) {
        auto mp = m.try_map(shared, dma_direction::to_device);
        if (!mp || mp->total_bytes() != shared.total_bytes()) {
          ++bad;
          continue;
        }
        if (mp->begin()->addr().value() != want.front()) ++bad;
        if (!m.try_unmap(std::move(*mp))) ++bad;
      }
    });
  }
  for (auto& x : th) x.join();
  CHECK(bad.load() == 0);
}

TEST_CASE(
    "iommu_domain: concurrent mappers of two buses, direct IOVA allocation and stats reads "
    "through one domain",
    "[iommu][concurrent]") {
  phyr::iommu_domain dom;
  std::atomic<int> bad{0};
  std::atomic<bool> stop{false};
  auto mapper_thread = [&](auto bus_tag, unsigned seed) {
    using bus = decltype(bus_tag);
    phyr::iommu_mapper<bus> m{dom};
    std::mt19937_64 rng(seed);
    for (int round = 0; round < 150; ++round) {
      const auto in = random_list(rng);
      auto mp = m.try_map(in, dma_direction::bidirectional);
      if (!mp) {
        ++bad;
        continue;
      }
      // The first byte of the list translates back to its page.
      auto t = m.translate(mp->begin()->addr());
      if (!t || t->value() != in.begin()->addr().value()) ++bad;
      if (!m.try_unmap(std::move(*mp))) ++bad;
    }
  };
  std::vector<std::thread> th;
  th.emplace_back(mapper_thread, bus_a{}, 1u);
  th.emplace_back(mapper_thread, bus_b{}, 2u);
  th.emplace_back([&] {
    std::mt19937_64 rng(3);
    for (int i = 0; i < 400; ++i) {
      auto b = dom.iova().try_alloc(1 + rng() % 64);
      if (!b) {
        ++bad;
        continue;
      }
      dom.iova().free(*b);
    }
  });
  th.emplace_back([&] {
    std::uint64_t last_maps = 0;
    while (!stop.load(std::memory_order_relaxed)) {
      const auto s = dom.stats();
      if (s.maps < last_maps) ++bad;  // counters only grow
      last_maps = s.maps;
      std::this_thread::yield();
    }
  });
  for (std::size_t i = 0; i < 3; ++i) th[i].join();
  stop = true;
  th[3].join();
  CHECK(bad.load() == 0);
  CHECK(dom.stats().maps == 300);
  CHECK(dom.stats().unmaps == 300);
}
