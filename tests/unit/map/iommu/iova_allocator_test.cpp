#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <cstdint>
#include <memory>
#include <phyr/map/iommu/iova_allocator.hpp>
#include <random>
#include <thread>
#include <vector>

namespace {

using phyr::errc;
using phyr::iova_block;

using fault_iova = phyr::iova_allocator<phyr::fault_injecting_allocator>;

bool disjoint(const std::vector<iova_block>& live) {
  std::vector<std::pair<std::uint64_t, std::uint64_t>> v;
  for (const auto& b : live)
    v.emplace_back(b.pfn, b.pfn + phyr::iova_allocator<>::block_pages(b.pages));
  std::sort(v.begin(), v.end());
  for (std::size_t i = 1; i < v.size(); ++i)
    if (v[i].first < v[i - 1].second) return false;
  return true;
}

}  // namespace

TEST_CASE("iova_allocator: blocks are size-aligned and small ones round up to a power of two",
          "[iova_allocator]") {
  using A = phyr::iova_allocator<>;
  STATIC_REQUIRE(A::block_pages(1) == 1);
  STATIC_REQUIRE(A::block_pages(3) == 4);
  STATIC_REQUIRE(A::block_pages(32) == 32);
  STATIC_REQUIRE(A::block_pages(33) == 33);  // above the cached sizes: exact
  STATIC_REQUIRE(A::block_align(33) == 64);
  STATIC_REQUIRE(A::block_align(262144) == 262144);
  STATIC_REQUIRE(A::block_align(262145) == 262144);  // capped at 1 GiB of pages

  A iova{1, std::uint64_t{1} << 36};
  std::vector<iova_block> live;
  for (std::uint64_t n : {1ull, 3ull, 5ull, 17ull, 32ull, 33ull, 100ull, 513ull, 262145ull, 7ull}) {
    auto b = iova.try_alloc(n);
    REQUIRE(b.has_value());
    CHECK(b->pages == n);
    CHECK(b->pfn % A::block_align(n) == 0);
    CHECK(b->pfn >= 1);
    live.push_back(*b);
  }
  CHECK(disjoint(live));
  CHECK(iova.stats().live_blocks == live.size());
  for (const auto& b : live) iova.free(b);
  CHECK(iova.stats().live_blocks == 0);
}

TEST_CASE("iova_allocator: zero pages is invalid_argument and more than the space is exhausted",
          "[iova_allocator]") {
  phyr::iova_allocator<> iova{16, 80};
  CHECK(iova.try_alloc(0).error() == errc::invalid_argument);
  CHECK(iova.try_alloc(65).error() == errc::exhausted);
  // 64 pages from pfn 16: a 64-aligned block of 64 cannot fit, 48 aligned to 64 neither.
  CHECK(iova.try_alloc(64).error() == errc::exhausted);
  auto b = iova.try_alloc(48);
  CHECK(b.error() == errc::exhausted);
  auto c = iova.try_alloc(32);
  REQUIRE(c.has_value());
  CHECK(c->pfn == 32);
}

TEST_CASE("iova_allocator: recently freed small blocks come back from the cache first",
          "[iova_allocator]") {
  phyr::iova_allocator<> iova{1, 1 << 20};
  auto a = iova.try_alloc(4);
  auto b = iova.try_alloc(3);  // same class (4 pages)
  REQUIRE(a.has_value());
  REQUIRE(b.has_value());
  CHECK_FALSE(a->from_cache);
  iova.free(*a);
  CHECK(iova.stats().cached_blocks == 1);
  CHECK(iova.stats().magazines == 1);
  auto c = iova.try_alloc(4);
  REQUIRE(c.has_value());
  CHECK(c->from_cache);
  CHECK(c->pfn == a->pfn);
  CHECK(iova.stats().cache_hits == 1);
  iova.free(*b);
  iova.free(*c);
  // Large blocks bypass the cache.
  auto big = iova.try_alloc(1000);
  REQUIRE(big.has_value());
  CHECK_FALSE(big->from_cache);
  iova.free(*big);
  CHECK(iova.stats().cached_blocks == 2);
  iova.flush_caches();
  const auto s = iova.stats();
  CHECK(s.cached_blocks == 0);
  CHECK(s.magazines == 0);
  CHECK(s.free_extents == 0);  // nothing out: the tree dissolves
  CHECK(s.metadata_bytes == 0);
}

TEST_CASE("iova_allocator: many frees of one size spill through full magazines into the depot",
          "[iova_allocator]") {
  phyr::iova_allocator<> iova{1, 1 << 22};
  std::vector<iova_block> live;
  for (int i = 0; i < 2000; ++i) live.push_back(phyr::must(iova.try_alloc(1)));
  for (const auto& b : live) iova.free(b);
  auto s = iova.stats();
  CHECK(s.cached_blocks == 2000);
  CHECK(s.magazines >= 2000 / 126);
  // They all come back from the cache (loaded, prev, then full magazines of the depot).
  std::vector<iova_block> again;
  for (int i = 0; i < 2000; ++i) again.push_back(phyr::must(iova.try_alloc(1)));
  CHECK(std::all_of(again.begin(), again.end(), [](const iova_block& b) { return b.from_cache; }));
  CHECK(disjoint(again));
  for (const auto& b : again) iova.free(b);
}

TEST_CASE("iova_allocator: caches are flushed before a full space reports exhausted",
          "[iova_allocator]") {
  phyr::iova_allocator<> iova{0, 64};
  std::vector<iova_block> q;
  for (int i = 0; i < 4; ++i) q.push_back(phyr::must(iova.try_alloc(16)));
  CHECK(iova.try_alloc(1).error() == errc::exhausted);
  iova.free(q[0]);
  iova.free(q[1]);  // both cached (16 pages is a cached size)
  CHECK(iova.stats().cached_blocks == 2);
  auto big = iova.try_alloc(32);  // needs the two cached blocks merged in the tree
  REQUIRE(big.has_value());
  CHECK(big->pfn == 0);
  CHECK(iova.stats().cached_blocks == 0);
  CHECK(iova.try_alloc(1).error() == errc::exhausted);
  iova.free(*big);
  iova.free(q[2]);
  iova.free(q[3]);
  iova.flush_caches();
  auto all = iova.try_alloc(64);
  REQUIRE(all.has_value());
  CHECK(all->pfn == 0);
  iova.free(*all);
}

TEST_CASE("iova_allocator: allocations never overlap and freed space is reused (model)",
          "[iova_allocator][property]") {
  std::mt19937_64 rng(0x1ba5eba11);
  phyr::fault_state fs;
  {
    fault_iova iova{100, 100 + (1 << 14), phyr::fault_injecting_allocator{&fs}};
    std::vector<iova_block> live;
    std::uint64_t exhausted = 0;
    for (int step = 0; step < 20000; ++step) {
      if (live.empty() || rng() % 5 < 3) {
        const std::uint64_t n = rng() % 4 == 0 ? 1 + rng() % 600 : 1 + rng() % 40;
        auto b = iova.try_alloc(n);
        if (!b) {
          REQUIRE(b.error() == errc::exhausted);
          ++exhausted;
          continue;
        }
        REQUIRE(b->pfn >= 100);
        REQUIRE(b->pfn + fault_iova::block_pages(n) <= 100 + (1 << 14));
        REQUIRE(b->pfn % fault_iova::block_align(n) == 0);
        live.push_back(*b);
        if (step % 97 == 0) REQUIRE(disjoint(live));
      } else {
        const std::size_t i = rng() % live.size();
        iova.free(live[i]);
        live[i] = live.back();
        live.pop_back();
      }
      if (step % 5000 == 4999) iova.flush_caches();
    }
    CHECK(disjoint(live));
    CHECK(exhausted > 0);  // the space was small enough to fill up
    CHECK(iova.stats().live_blocks == live.size());
    for (const auto& b : live) iova.free(b);
    iova.flush_caches();
    CHECK(iova.stats().metadata_bytes == 0);
    CHECK(fs.live == 0);
    // Everything merged back: the whole space is one block again.
    auto all = iova.try_alloc(1 << 14);  // 2^14 aligned: pfn 100 is not, so it must not fit
    CHECK(all.error() == errc::exhausted);
    auto most = iova.try_alloc((1 << 14) - 100 - 28);  // exact size, 2^14-aligned start 16384
    CHECK(most.error() == errc::exhausted);
    auto half = iova.try_alloc(1 << 13);
    REQUIRE(half.has_value());
    CHECK(half->pfn == 1 << 13);
    iova.free(*half);
  }
  CHECK(fs.live == 0);
}

TEST_CASE("iova_allocator: out_of_memory at every metadata allocation leaves it unchanged",
          "[iova_allocator][alloc]") {
  phyr::fault_state fs;
  fault_iova iova{1, 1 << 20, phyr::fault_injecting_allocator{&fs}};
  std::vector<iova_block> live;
  for (std::uint64_t n : {5ull, 40ull, 1ull, 300ull}) live.push_back(phyr::must(iova.try_alloc(n)));
  iova.free(live[1]);  // a hole in the middle: later fits split extents in two
  live.erase(live.begin() + 1);
  for (std::uint64_t n : {1ull, 3ull, 8ull, 33ull, 64ull, 4096ull}) {
    bool done = false;
    for (std::uint64_t k = 1; k < 16 && !done; ++k) {
      const auto before = iova.stats();
      const auto live_blocks = fs.live;
      fs.fail_at = fs.calls + k;
      auto b = iova.try_alloc(n);
      fs.fail_at = 0;
      if (b) {
        done = true;
        live.push_back(*b);
        break;
      }
      REQUIRE(b.error() == errc::out_of_memory);
      CHECK(fs.live == live_blocks);
      const auto after = iova.stats();
      CHECK(after.live_blocks == before.live_blocks);
      CHECK(after.free_extents == before.free_extents);
      CHECK(after.free_pages == before.free_pages);
    }
    REQUIRE(done);
  }
  CHECK(disjoint(live));
  for (const auto& b : live) iova.free(b);
  iova.flush_caches();
  CHECK(fs.live == 0);
}

TEST_CASE("iova_allocator: out_of_memory on the very first allocation leaves nothing behind",
          "[iova_allocator][alloc]") {
  phyr::fault_state fs;
  fault_iova iova{1, 1 << 20, phyr::fault_injecting_allocator{&fs}};
  for (std::uint64_t k = 1; k <= 2; ++k) {
    fs.fail_at = fs.calls + k;
    CHECK(iova.try_alloc(100).error() == errc::out_of_memory);
    CHECK(fs.live == 0);
  }
  fs.fail_at = 0;
  auto b = iova.try_alloc(100);
  REQUIRE(b.has_value());
  iova.free(*b);
  CHECK(fs.live == 0);
}

TEST_CASE("iova_allocator: undo returns a block with the memory as before the allocation",
          "[iova_allocator]") {
  phyr::fault_state fs;
  fault_iova iova{1, 1 << 20, phyr::fault_injecting_allocator{&fs}};
  auto keep = phyr::must(iova.try_alloc(2));
  auto cached = phyr::must(iova.try_alloc(2));
  iova.free(cached);
  for (std::uint64_t n : {2ull, 2ull, 7ull, 500ull}) {
    const auto live = fs.live;
    const auto before = iova.stats();
    auto b = phyr::must(iova.try_alloc(n));
    iova.undo(b);
    CHECK(fs.live == live);
    CHECK(iova.stats().cached_blocks == before.cached_blocks);
    CHECK(iova.stats().free_extents == before.free_extents);
    CHECK(iova.stats().live_blocks == before.live_blocks);
  }
  iova.free(keep);
  iova.flush_caches();
  CHECK(fs.live == 0);
}

TEST_CASE("iova_allocator: destruction returns every block of metadata", "[iova_allocator]") {
  phyr::fault_state fs;
  {
    fault_iova iova{1, 1 << 20, phyr::fault_injecting_allocator{&fs}};
    for (int i = 0; i < 300; ++i) {
      auto b = phyr::must(iova.try_alloc(1 + static_cast<std::uint64_t>(i % 50)));
      if (i % 3 != 0) iova.free(b);  // some cached, some in the tree, a third still out
    }
    CHECK(fs.live > 0);
  }
  CHECK(fs.live == 0);
}

TEST_CASE("iova_allocator: concurrent alloc and free never hand out a page twice",
          "[iova_allocator][concurrent]") {
  constexpr std::uint64_t space = 1 << 15;
  phyr::iova_allocator<> iova{0, space};
  auto owner = std::make_unique<std::atomic<std::uint8_t>[]>(space);
  std::atomic<bool> bad{false};
  auto worker = [&](unsigned seed) {
    std::mt19937_64 rng(seed);
    std::vector<iova_block> mine;
    for (int step = 0; step < 6000; ++step) {
      if (mine.empty() || rng() % 2 == 0) {
        const std::uint64_t n = rng() % 8 == 0 ? 33 + rng() % 200 : 1 + rng() % 32;
        auto b = iova.try_alloc(n);
        if (!b) {
          if (b.error() != errc::exhausted) bad = true;
          continue;
        }
        for (std::uint64_t p = b->pfn; p < b->pfn + n; ++p)
          if (owner[p].exchange(1, std::memory_order_acq_rel) != 0) bad = true;
        mine.push_back(*b);
      } else {
        const std::size_t i = rng() % mine.size();
        for (std::uint64_t p = mine[i].pfn; p < mine[i].pfn + mine[i].pages; ++p)
          owner[p].store(0, std::memory_order_release);
        iova.free(mine[i]);
        mine[i] = mine.back();
        mine.pop_back();
      }
    }
    for (const auto& b : mine) {
      for (std::uint64_t p = b.pfn; p < b.pfn + b.pages; ++p)
        owner[p].store(0, std::memory_order_release);
      iova.free(b);
    }
  };
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < 4; ++t) threads.emplace_back(worker, 1234 + t);
  for (auto& t : threads) t.join();
  CHECK_FALSE(bad.load());
  CHECK(iova.stats().live_blocks == 0);
  iova.flush_caches();
  CHECK(iova.stats().metadata_bytes == 0);
}
