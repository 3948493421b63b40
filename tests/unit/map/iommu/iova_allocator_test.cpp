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

// The allocator speaks bytes; these tests think in pages.
constexpr std::uint64_t P = phyr::page_size;
constexpr std::uint64_t pg(std::uint64_t n) { return n * P; }
std::uint64_t pfn(const iova_block& b) { return b.addr / P; }
std::uint64_t pages(const iova_block& b) { return b.len / P; }

bool disjoint(const std::vector<iova_block>& live) {
  std::vector<std::pair<std::uint64_t, std::uint64_t>> v;
  for (const auto& b : live)
    v.emplace_back(pfn(b), pfn(b) + phyr::iova_allocator<>::block_pages(pages(b)));
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

  A iova{pg(1), pg(std::uint64_t{1} << 36)};
  std::vector<iova_block> live;
  for (std::uint64_t n : {1ull, 3ull, 5ull, 17ull, 32ull, 33ull, 100ull, 513ull, 262145ull, 7ull}) {
    auto b = iova.try_alloc(pg(n));
    REQUIRE(b.has_value());
    CHECK(pages(*b) == n);
    CHECK(pfn(*b) % A::block_align(n) == 0);
    CHECK(pfn(*b) >= 1);
    live.push_back(*b);
  }
  CHECK(disjoint(live));
  CHECK(iova.stats().live_blocks == live.size());
  for (const auto& b : live) iova.free(b);
  CHECK(iova.stats().live_blocks == 0);
}

TEST_CASE("iova_allocator: zero pages is invalid_argument and more than the space is exhausted",
          "[iova_allocator]") {
  phyr::iova_allocator<> iova{pg(16), pg(80)};
  CHECK(iova.try_alloc(pg(0)).error() == errc::invalid_argument);
  CHECK(iova.try_alloc(pg(65)).error() == errc::exhausted);
  // 64 pages from pfn 16: a 64-aligned block of 64 cannot fit, 48 aligned to 64 neither.
  CHECK(iova.try_alloc(pg(64)).error() == errc::exhausted);
  auto b = iova.try_alloc(pg(48));
  CHECK(b.error() == errc::exhausted);
  auto c = iova.try_alloc(pg(32));
  REQUIRE(c.has_value());
  CHECK(pfn(*c) == 32);
}

TEST_CASE("iova_allocator: recently freed small blocks come back from the cache first",
          "[iova_allocator]") {
  phyr::iova_allocator<> iova{pg(1), pg(1 << 20)};
  auto a = iova.try_alloc(pg(4));
  auto b = iova.try_alloc(pg(3));  // same class (4 pages)
  REQUIRE(a.has_value());
  REQUIRE(b.has_value());
  CHECK_FALSE(a->from_cache);
  iova.free(*a);
  CHECK(iova.stats().cached_blocks == 1);
  CHECK(iova.stats().magazines == 1);
  auto c = iova.try_alloc(pg(4));
  REQUIRE(c.has_value());
  CHECK(c->from_cache);
  CHECK(pfn(*c) == pfn(*a));
  CHECK(iova.stats().cache_hits == 1);
  iova.free(*b);
  iova.free(*c);
  // Large blocks bypass the cache.
  auto big = iova.try_alloc(pg(1000));
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
  phyr::iova_allocator<> iova{pg(1), pg(1 << 22)};
  std::vector<iova_block> live;
  for (int i = 0; i < 2000; ++i) live.push_back(phyr::must(iova.try_alloc(pg(1))));
  for (const auto& b : live) iova.free(b);
  auto s = iova.stats();
  CHECK(s.cached_blocks == 2000);
  CHECK(s.magazines >= 2000 / 126);
  // They all come back from the cache (loaded, prev, then full magazines of the depot).
  std::vector<iova_block> again;
  for (int i = 0; i < 2000; ++i) again.push_back(phyr::must(iova.try_alloc(pg(1))));
  CHECK(std::all_of(again.begin(), again.end(), [](const iova_block& b) { return b.from_cache; }));
  CHECK(disjoint(again));
  for (const auto& b : again) iova.free(b);
}

TEST_CASE("iova_allocator: caches are flushed before a full space reports exhausted",
          "[iova_allocator]") {
  phyr::iova_allocator<> iova{pg(0), pg(64)};
  std::vector<iova_block> q;
  for (int i = 0; i < 4; ++i) q.push_back(phyr::must(iova.try_alloc(pg(16))));
  CHECK(iova.try_alloc(pg(1)).error() == errc::exhausted);
  iova.free(q[0]);
  iova.free(q[1]);  // both cached (16 pages is a cached size)
  CHECK(iova.stats().cached_blocks == 2);
  auto big = iova.try_alloc(pg(32));  // needs the two cached blocks merged in the tree
  REQUIRE(big.has_value());
  CHECK(pfn(*big) == 0);
  CHECK(iova.stats().cached_blocks == 0);
  CHECK(iova.try_alloc(pg(1)).error() == errc::exhausted);
  iova.free(*big);
  iova.free(q[2]);
  iova.free(q[3]);
  iova.flush_caches();
  auto all = iova.try_alloc(pg(64));
  REQUIRE(all.has_value());
  CHECK(pfn(*all) == 0);
  iova.free(*all);
}

TEST_CASE("iova_allocator: allocations never overlap and freed space is reused (model)",
          "[iova_allocator][property]") {
  std::mt19937_64 rng(0x1ba5eba11);
  phyr::fault_state fs;
  {
    fault_iova iova{pg(100), pg(100 + (1 << 14)), phyr::fault_injecting_allocator{&fs}};
    std::vector<iova_block> live;
    std::uint64_t exhausted = 0;
    for (int step = 0; step < 20000; ++step) {
      if (live.empty() || rng() % 5 < 3) {
        const std::uint64_t n = rng() % 4 == 0 ? 1 + rng() % 600 : 1 + rng() % 40;
        auto b = iova.try_alloc(pg(n));
        if (!b) {
          REQUIRE(b.error() == errc::exhausted);
          ++exhausted;
          continue;
        }
        REQUIRE(pfn(*b) >= 100);
        REQUIRE(pfn(*b) + fault_iova::block_pages(n) <= 100 + (1 << 14));
        REQUIRE(pfn(*b) % fault_iova::block_align(n) == 0);
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
    auto all = iova.try_alloc(pg(1 << 14));  // 2^14 aligned: pfn 100 is not, so it must not fit
    CHECK(all.error() == errc::exhausted);
    auto most = iova.try_alloc(pg((1 << 14) - 100 - 28));  // exact size, 2^14-aligned start 16384
    CHECK(most.error() == errc::exhausted);
    auto half = iova.try_alloc(pg(1 << 13));
    REQUIRE(half.has_value());
    CHECK(pfn(*half) == 1 << 13);
    iova.free(*half);
  }
  CHECK(fs.live == 0);
}

TEST_CASE("iova_allocator: out_of_memory at every metadata allocation leaves it unchanged",
          "[iova_allocator][alloc]") {
  phyr::fault_state fs;
  fault_iova iova{pg(1), pg(1 << 20), phyr::fault_injecting_allocator{&fs}};
  std::vector<iova_block> live;
  for (std::uint64_t n : {5ull, 40ull, 1ull, 300ull}) live.push_back(phyr::must(iova.try_alloc(pg(n))));
  iova.free(live[1]);  // a hole in the middle: later fits split extents in two
  live.erase(live.begin() + 1);
  for (std::uint64_t n : {1ull, 3ull, 8ull, 33ull, 64ull, 4096ull}) {
    bool done = false;
    for (std::uint64_t k = 1; k < 16 && !done; ++k) {
      const auto before = iova.stats();
      const auto live_blocks = fs.live;
      fs.fail_at = fs.calls + k;
      auto b = iova.try_alloc(pg(n));
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
  fault_iova iova{pg(1), pg(1 << 20), phyr::fault_injecting_allocator{&fs}};
  for (std::uint64_t k = 1; k <= 2; ++k) {
    fs.fail_at = fs.calls + k;
    CHECK(iova.try_alloc(pg(100)).error() == errc::out_of_memory);
    CHECK(fs.live == 0);
  }
  fs.fail_at = 0;
  auto b = iova.try_alloc(pg(100));
  REQUIRE(b.has_value());
  iova.free(*b);
  iova.flush_caches();  // the live-block set keeps its (empty) table until then, like magazines
  CHECK(fs.live == 0);
}

TEST_CASE("iova_allocator: undo returns a block with the memory as before the allocation",
          "[iova_allocator]") {
  phyr::fault_state fs;
  fault_iova iova{pg(1), pg(1 << 20), phyr::fault_injecting_allocator{&fs}};
  auto keep = phyr::must(iova.try_alloc(pg(2)));
  auto cached = phyr::must(iova.try_alloc(pg(2)));
  iova.free(cached);
  for (std::uint64_t n : {2ull, 2ull, 7ull, 500ull}) {
    const auto live = fs.live;
    const auto before = iova.stats();
    auto b = phyr::must(iova.try_alloc(pg(n)));
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
    fault_iova iova{pg(1), pg(1 << 20), phyr::fault_injecting_allocator{&fs}};
    for (int i = 0; i < 300; ++i) {
      auto b = phyr::must(iova.try_alloc(pg(1 + static_cast<std::uint64_t>(i % 50))));
      if (i % 3 != 0) iova.free(b);  // some cached, some in the tree, a third still out
    }
    CHECK(fs.live > 0);
  }
  CHECK(fs.live == 0);
}

TEST_CASE("iova_allocator: concurrent alloc and free never hand out a page twice",
          "[iova_allocator][concurrent]") {
  constexpr std::uint64_t space = 1 << 15;
  phyr::iova_allocator<> iova{pg(0), pg(space)};
  auto owner = std::make_unique<std::atomic<std::uint8_t>[]>(space);
  std::atomic<bool> bad{false};
  auto worker = [&](unsigned seed) {
    std::mt19937_64 rng(seed);
    std::vector<iova_block> mine;
    for (int step = 0; step < 6000; ++step) {
      if (mine.empty() || rng() % 2 == 0) {
        const std::uint64_t n = rng() % 8 == 0 ? 33 + rng() % 200 : 1 + rng() % 32;
        auto b = iova.try_alloc(pg(n));
        if (!b) {
          if (b.error() != errc::exhausted) bad = true;
          continue;
        }
        for (std::uint64_t p = pfn(*b); p < pfn(*b) + n; ++p)
          if (owner[p].exchange(1, std::memory_order_acq_rel) != 0) bad = true;
        mine.push_back(*b);
      } else {
        const std::size_t i = rng() % mine.size();
        for (std::uint64_t p = pfn(mine[i]); p < pfn(mine[i]) + pages(mine[i]); ++p)
          owner[p].store(0, std::memory_order_release);
        iova.free(mine[i]);
        mine[i] = mine.back();
        mine.pop_back();
      }
    }
    for (const auto& b : mine) {
      for (std::uint64_t p = pfn(b); p < pfn(b) + pages(b); ++p)
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

TEST_CASE("iova_allocator: with guard pages, one-page blocks land at 0x2000, 0x4000, 0x6000 like "
          "FreeBSD's iommu_gas", "[iova_allocator][guard]") {
  phyr::iova_allocator<> iova{0x1000, std::uint64_t{1} << 32, phyr::iova_guard::page};
  CHECK(iova.guarded());
  const auto a = phyr::must(iova.try_alloc(P));
  const auto b = phyr::must(iova.try_alloc(P));
  const auto c = phyr::must(iova.try_alloc(P));
  CHECK(a.addr == 0x2000);
  CHECK(b.addr == 0x4000);
  CHECK(c.addr == 0x6000);
  const auto d = phyr::must(iova.try_alloc(pg(2)));  // 2-page aligned, a page after 0x7000
  CHECK(d.addr == 0x8000);
  // Without guards the same requests pack from the base.
  phyr::iova_allocator<> plain{0x1000, std::uint64_t{1} << 32};
  CHECK(phyr::must(plain.try_alloc(P)).addr == 0x1000);
  CHECK(phyr::must(plain.try_alloc(P)).addr == 0x2000);
  for (const auto& x : {a, b, c, d}) iova.free(x);
  iova.flush_caches();
  CHECK(iova.stats().metadata_bytes == 0);
}

namespace {

// The model: pages taken (by blocks out), and the lowest place a request fits, by brute force.
struct gas_model {
  std::uint64_t first, end;  // pages
  bool guard;
  std::vector<bool> taken;
  gas_model(std::uint64_t f, std::uint64_t e, bool g) : first(f), end(e), guard(g), taken(e, false) {}
  bool free_run(std::uint64_t s, std::uint64_t n) const {
    for (std::uint64_t i = s; i < s + n; ++i)
      if (taken[i]) return false;
    return true;
  }
  std::uint64_t lowest(std::uint64_t n, const phyr::iova_limits& lim) const {
    using A = phyr::iova_allocator<>;
    const std::uint64_t size = A::block_pages(n);
    std::uint64_t align = A::block_align(n);
    if (lim.align / P > align) align = lim.align / P;
    const std::uint64_t g = guard ? 1 : 0;
    for (std::uint64_t s = first; s + size + g <= end; s += 1) {
      if (s % align != 0 || s < first + g) continue;
      if (!lim.admits(s * P, size * P)) continue;
      if (free_run(s - g, size + 2 * g)) return s;
    }
    return ~std::uint64_t{0};
  }
};

}  // namespace

TEST_CASE("iova_allocator: limited and guarded allocation takes the lowest place a brute-force "
          "model finds (property)", "[iova_allocator][property][guard]") {
  std::mt19937_64 rng(0x6a5'11'1117);
  for (bool guard : {false, true}) {
    const std::uint64_t first = 1, end = 3000;
    phyr::iova_allocator<> iova{pg(first), pg(end), guard ? phyr::iova_guard::page
                                                          : phyr::iova_guard::none};
    gas_model model{first, end, guard};
    std::vector<iova_block> live;
    int fits = 0, refusals = 0;
    for (int step = 0; step < 1500; ++step) {
      if (!live.empty() && rng() % 3 == 0) {
        const std::size_t i = rng() % live.size();
        const auto& b = live[i];
        for (std::uint64_t p = pfn(b); p < pfn(b) + phyr::iova_allocator<>::block_pages(pages(b)); ++p)
          model.taken[p] = false;
        iova.free(b);
        live[i] = live.back();
        live.pop_back();
        continue;
      }
      phyr::iova_limits lim;
      if (rng() % 2) lim.max_addr = pg(500 + rng() % 2500) - 1;
      if (rng() % 3 == 0) lim.boundary = pg(std::uint64_t{1} << (4 + rng() % 4));
      if (rng() % 4 == 0) lim.align = pg(std::uint64_t{1} << (rng() % 6));
      if (rng() % 3 == 0) {
        std::uint64_t at = rng() % 800;
        for (int w = 0; w < 3; ++w) {
          const std::uint64_t len = 50 + rng() % 400;
          REQUIRE(lim.try_allow(pg(at), pg(len)));
          at += len + 1 + rng() % 300;
        }
      }
      const std::uint64_t n = rng() % 5 == 0 ? 33 + rng() % 60 : 1 + rng() % 12;
      iova.flush_caches();  // the model has no cache: compare tree placement exactly
      const std::uint64_t want = model.lowest(n, lim);
      auto b = iova.try_alloc(pg(n), lim);
      if (lim.boundary != 0 && pg(phyr::iova_allocator<>::block_pages(n)) > lim.boundary) {
        REQUIRE(b.error() == errc::straddles_boundary);
        continue;
      }
      if (want == ~std::uint64_t{0}) {
        REQUIRE(b.error() == errc::exhausted);
        ++refusals;
        continue;
      }
      REQUIRE(b.has_value());
      REQUIRE(pfn(*b) == want);
      REQUIRE(lim.admits(b->addr, pg(phyr::iova_allocator<>::block_pages(n))));
      for (std::uint64_t p = want; p < want + phyr::iova_allocator<>::block_pages(n); ++p)
        model.taken[p] = true;
      live.push_back(*b);
      ++fits;
    }
    CHECK(fits > 300);
    CHECK(refusals > 0);
    for (const auto& b : live) iova.free(b);
    iova.flush_caches();
    CHECK(iova.stats().metadata_bytes == 0);
  }
}

TEST_CASE("iova_allocator: a cached block is used for a limited request only if it fits the "
          "limits", "[iova_allocator]") {
  phyr::iova_allocator<> iova{pg(1), pg(1 << 20)};
  auto low = phyr::must(iova.try_alloc(pg(1)));
  iova.free(low);  // cached
  phyr::iova_limits lim;
  REQUIRE(lim.try_allow(pg(1000), pg(100)));
  auto b = phyr::must(iova.try_alloc(pg(1), lim));
  CHECK_FALSE(b.from_cache);
  CHECK(pfn(b) == 1000);
  CHECK(iova.stats().cached_blocks == 1);  // the cached block went back
  auto c = phyr::must(iova.try_alloc(pg(1)));
  CHECK(c.from_cache);
  CHECK(pfn(c) == pfn(low));
  iova.free(b);
  iova.free(c);
}

TEST_CASE("iova_limits: bad limits are refused and the intersection of two devices is what both "
          "allow", "[iova_allocator]") {
  phyr::iova_limits a;
  CHECK(a.try_allow(0x1000, 0).error() == errc::invalid_argument);
  CHECK(a.try_allow(0x1001, 0x1000).error() == errc::misaligned);
  REQUIRE(a.try_allow(0x1000, 0xfee0'0000 - 0x1000));  // below an MSI window
  REQUIRE(a.try_allow(0xfef0'0000, 0x1'0000'0000 - 0xfef0'0000));
  CHECK(a.try_allow(0x2000, 0x1000).error() == errc::overlaps);
  a.max_addr = 0xffff'ffff;
  phyr::iova_limits b;
  b.max_addr = (std::uint64_t{1} << 36) - 1;
  b.boundary = 1 << 16;
  REQUIRE(b.try_allow(0x1000'0000, 0x2'0000'0000));
  auto both = phyr::must(a.try_intersect(b));
  CHECK(both.max_addr == 0xffff'ffff);
  CHECK(both.boundary == 1 << 16);
  REQUIRE(both.window_count == 2);
  CHECK(both.windows[0] == phyr::iova_window{0x1000'0000, 0xfee0'0000 - 0x1000'0000});
  CHECK(both.windows[1] == phyr::iova_window{0xfef0'0000, 0x1'0000'0000 - 0xfef0'0000});
  phyr::iova_limits far;
  REQUIRE(far.try_allow(0x10'0000'0000, 0x1000));
  CHECK(a.try_intersect(far).error() == errc::not_addressable);
  phyr::iova_limits bad;
  bad.boundary = 3 * P;
  CHECK(a.try_intersect(bad).error() == errc::invalid_argument);
  phyr::iova_allocator<> iova{pg(1), pg(1 << 20)};
  CHECK(iova.try_alloc(P, bad).error() == errc::invalid_argument);
  phyr::iova_limits small;
  small.boundary = pg(16);
  CHECK(iova.try_alloc(pg(17), small).error() == errc::straddles_boundary);
}

TEST_CASE("iova_allocator: a fixed block is taken exactly or not at all", "[iova_allocator]") {
  phyr::fault_state fs;
  fault_iova iova{pg(1), pg(1 << 20), phyr::fault_injecting_allocator{&fs}};
  auto a = phyr::must(iova.try_alloc_at(pg(100), pg(3)));
  CHECK(a.addr == pg(100));
  CHECK(a.len == pg(3));
  const auto before = iova.stats();
  CHECK(iova.try_alloc_at(pg(102), pg(5)).error() == errc::overlaps);  // its last page is taken
  CHECK(iova.try_alloc_at(pg(90), pg(11)).error() == errc::overlaps);  // its first page
  CHECK(iova.try_alloc_at(pg(100) + 1, pg(1)).error() == errc::misaligned);
  CHECK(iova.try_alloc_at(0, pg(1)).error() == errc::out_of_range);
  CHECK(iova.try_alloc_at(pg((1 << 20) - 1), pg(2)).error() == errc::out_of_range);
  CHECK(iova.stats().live_blocks == before.live_blocks);
  CHECK(iova.stats().free_extents == before.free_extents);
  CHECK(iova.stats().free_pages == before.free_pages);
  // A block parked in a cache is only cached, not taken: the fixed request flushes and wins.
  auto c = phyr::must(iova.try_alloc(pg(1)));
  iova.free(c);
  auto d = phyr::must(iova.try_alloc_at(c.addr, pg(1)));
  CHECK(d.addr == c.addr);
  // Freed fixed blocks go back to the tree exactly (a 3-page block is not a cache class).
  iova.free(a);
  iova.free(d);
  iova.flush_caches();
  CHECK(iova.stats().metadata_bytes == 0);
  CHECK(fs.live == 0);
}

TEST_CASE("iova_allocator: a steady alloc/free cycle needs no memory after the first round, and a "
          "flush returns what it kept (cached sizes)",
          "[iova_allocator]") {
  phyr::fault_state fs;
  fault_iova iova{pg(1), pg(1 << 20), phyr::fault_injecting_allocator{&fs}};
  // Blocks of more than max_cached_pages take a tree node per allocation, as Linux's struct
  // iova does; the cached classes reuse everything.
  for (const std::uint64_t n : {1, 16, 17, 32}) {
    iova.free(phyr::must(iova.try_alloc(pg(n))));  // warms the cache and the live-set shard
    const std::uint64_t calls = fs.calls;
    for (int i = 0; i < 100; ++i) iova.free(phyr::must(iova.try_alloc(pg(n))));
    CHECK(fs.calls == calls);  // a map per I/O must not mean a malloc per I/O
  }
  CHECK(iova.stats().live_blocks == 0);
  CHECK(fs.live > 0);  // magazines, the emptied live-set tables, tree nodes
  iova.flush_caches();
  CHECK(iova.stats().metadata_bytes == 0);
  CHECK(fs.live == 0);
}

TEST_CASE("iova_allocator: counts stay exact when one thread allocates and another frees",
          "[iova_allocator][concurrent]") {
  phyr::iova_allocator<> iova{pg(1), pg(1 << 20)};
  std::vector<iova_block> blocks;
  std::thread producer([&] {
    for (int i = 0; i < 200; ++i) blocks.push_back(phyr::must(iova.try_alloc(pg(1 + i % 8))));
  });
  producer.join();
  CHECK(iova.stats().live_blocks == 200);
  std::thread consumer([&] {
    for (std::size_t i = 0; i < 150; ++i) iova.free(blocks[i]);
  });
  consumer.join();
  // The producer's slot counted +200, the consumer's -150: only the sum means anything.
  const auto s = iova.stats();
  CHECK(s.live_blocks == 50);
  CHECK(s.cached_blocks == 150);
  for (std::size_t i = 150; i < blocks.size(); ++i) iova.free(blocks[i]);
  CHECK(iova.stats().live_blocks == 0);
  iova.flush_caches();
  CHECK(iova.stats().cached_blocks == 0);
  CHECK(iova.stats().metadata_bytes == 0);
}
