// Concurrency of the page table and the domain (the tsan preset runs this file: its name says
// "concurrency"). Every thread checks what it does against a model it owns; races that the
// API allows (overlapping maps of the raw page table, unmaps of one range from two threads,
// translations of addresses being unmapped, trims at any time) are provoked on purpose.

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <phyr/container/range_list.hpp>
#include <phyr/map/iommu/io_page_table.hpp>
#include <phyr/map/iommu/iommu_mapper.hpp>
#include <phyr/map/iommu/iova_reservation.hpp>
#include <random>
#include <thread>
#include <vector>

namespace {

using phyr::dma_direction;
using phyr::errc;
using phyr::io_perm;
using phyr::phys_addr;
using phyr::phys_range;

constexpr std::uint64_t k4 = phyr::page_size;
constexpr std::uint64_t m2 = std::uint64_t{1} << 21;

struct bus_a {};
using cpu_list = phyr::range_list<phys_range>;
using resv = phyr::iova_reservation<bus_a, phyr::iommu_domain>;

/// The physical page a thread maps at IOVA page `vpn`: the thread id sits in bits 40..47, so
/// any translation names the thread that mapped it and the IOVA page it was mapped for.
constexpr std::uint64_t phys_of(unsigned tid, std::uint64_t vpn) {
  return (std::uint64_t{tid + 1} << 40) | (vpn * k4);
}

/// What the threads racing on one io_page_table share: the model (who owns each IOVA page
/// from `base`), counts of failed checks and of won and lost maps, and the start line.
struct page_race {
  static constexpr unsigned threads = 3;

  page_race(std::uint64_t iova_base, std::size_t pages) : base(iova_base), owner(pages) {
    for (auto& o : owner) o.store(-1);
  }

  /// Maps `n` pages from page `first` at `phys` for thread `tid`. A map that lost to an
  /// overlapping one (overlaps) counts as a loss; a won map claims its pages in the model,
  /// and a page someone else still holds there is a failed check.
  bool try_claim(phyr::io_page_table<>& pt, unsigned tid, std::uint64_t first, std::uint64_t n,
                 std::uint64_t phys) {
    auto r = pt.try_map(base + first * k4, phys_addr{phys}, n * k4, io_perm::read);
    if (!r) {
      if (r.error() != errc::overlaps) ++bad;
      ++losses;
      return false;
    }
    ++wins;
    for (std::uint64_t p = first; p < first + n; ++p) {
      int none = -1;
      if (!owner[p].compare_exchange_strong(none, static_cast<int>(tid))) ++bad;
    }
    return true;
  }
  /// Gives the pages back in the model, then unmaps them.
  void release(phyr::io_page_table<>& pt, std::uint64_t first, std::uint64_t n) {
    for (std::uint64_t p = first; p < first + n; ++p) owner[p].store(-1);
    if (pt.unmap(base + first * k4, n * k4) != n * k4) ++bad;
  }
  /// Whether a thread in round `round` goes on: the rounds asked for, then more until a
  /// collision was seen (threads of a loaded machine may not overlap at first), within 20 s.
  bool more_rounds(int round, int rounds) const {
    return round < rounds || (losses.load() == 0 && std::chrono::steady_clock::now() < deadline);
  }
  /// What every race must end with: no failed check, wins and losses both seen (the races
  /// really happened), no leaf left and consistent tables.
  void check_outcome(const phyr::io_page_table<>& pt) const {
    CHECK(bad.load() == 0);
    CHECK(wins.load() > 0);
    CHECK(losses.load() > 0);
    CHECK(pt.stats().leaves() == 0);
    CHECK(pt.check_invariants());
  }
  /// Runs `worker(tid)` on every thread, started together, and waits for them.
  template <class F>
  void run(F worker) {
    std::vector<std::thread> ts;
    for (unsigned t = 0; t < threads; ++t)
      ts.emplace_back([&, t] {
        ready.fetch_add(1);
        while (ready.load() < threads) std::this_thread::yield();
        worker(t);
      });
    for (auto& t : ts) t.join();
  }

  const std::uint64_t base;
  std::vector<std::atomic<int>> owner;
  std::atomic<int> bad{0};
  std::atomic<std::uint64_t> wins{0};
  std::atomic<std::uint64_t> losses{0};
  std::atomic<unsigned> ready{0};
  const std::chrono::steady_clock::time_point deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(20);
};

}  // namespace

TEST_CASE(
    "io_page_table concurrency: threads racing for overlapping ranges never both claim a page, "
    "and a loser rolls back only its own leaves",
    "[io_page_table][concurrency]") {
  phyr::io_page_table<> pt;
  // 4 MiB of IOVA (two leaf tables, one 2 MiB block slot each) fought over by 3 threads.
  constexpr std::uint64_t pages = 2 * m2 / k4;
  page_race race(std::uint64_t{5} << 30, pages);
  race.run([&](unsigned tid) {
    std::mt19937_64 rng(77 + tid);
    struct held {
      std::uint64_t first, n, phys;
    };
    std::vector<held> mine;  // what this thread has mapped now (at most 4 runs)
    auto drop = [&](std::size_t i) {
      race.release(pt, mine[i].first, mine[i].n);
      mine.erase(mine.begin() + static_cast<long>(i));
    };
    for (int round = 0; race.more_rounds(round, 600); ++round) {
      if (mine.size() == 4 || (!mine.empty() && rng() % 3 == 0)) {
        drop(rng() % mine.size());
        continue;
      }
      // Mostly short 4 KiB runs; now and then a whole aligned 2 MiB (a block leaf if its slot
      // is free of tables, else 4 KiB leaves in the table that stands there).
      std::uint64_t first = 0;
      std::uint64_t n = 0;
      if (rng() % 8 == 0) {
        first = (rng() % 2) * (m2 / k4);
        n = m2 / k4;
      } else {
        first = rng() % pages;
        n = 1 + rng() % 64;
        if (first + n > pages) n = pages - first;
      }
      const std::uint64_t phys = phys_of(tid, first) + (std::uint64_t{1} << 39);
      if (!race.try_claim(pt, tid, first, n, phys)) continue;
      mine.push_back({first, n, phys});
      // Ours stay ours while others fight around them.
      for (const held& h : mine) {
        const std::uint64_t p = h.first + rng() % h.n;
        auto t = pt.translate(race.base + p * k4 + 0x123);
        if (!t || t->value() != h.phys + (p - h.first) * k4 + 0x123) ++race.bad;
      }
    }
    while (!mine.empty()) drop(0);
  });
  race.check_outcome(pt);
  pt.trim();
  CHECK(pt.empty());
}

TEST_CASE(
    "io_page_table concurrency: threads hammering the same few pages: each page has at most "
    "one owner at any time",
    "[io_page_table][concurrency]") {
  phyr::io_page_table<> pt;
  constexpr std::uint64_t pages = 4;
  page_race race(std::uint64_t{3} << 30, pages);
  race.run([&](unsigned tid) {
    std::mt19937_64 rng(500 + tid);
    for (int round = 0; race.more_rounds(round, 20000); ++round) {
      const std::uint64_t first = rng() % pages;
      const std::uint64_t n = first + 2 <= pages && rng() % 2 ? 2 : 1;
      if (race.try_claim(pt, tid, first, n, phys_of(tid, first))) race.release(pt, first, n);
    }
  });
  race.check_outcome(pt);
}

TEST_CASE(
    "io_page_table concurrency: two threads unmapping one range count each page once, and "
    "racing table publication leaks nothing",
    "[io_page_table][concurrency]") {
  phyr::io_page_table<> pt;
  std::uint64_t total = 0;
  for (int round = 0; round < 40; ++round) {
    // Two threads map disjoint pages under tables neither has yet (a new 1 GiB slot each
    // round): both race to publish the same PDPT/PD/PT entries; the losers free theirs.
    const std::uint64_t iova =
        (std::uint64_t{1} << 32) + static_cast<std::uint64_t>(round) * (std::uint64_t{1} << 30);
    std::atomic<int> bad{0};
    std::thread a([&] {
      if (!pt.try_map(iova, phys_addr{0x1000'0000}, 8 * k4, io_perm::read)) ++bad;
    });
    std::thread b([&] {
      if (!pt.try_map(iova + 8 * k4, phys_addr{0x2000'0000}, 8 * k4, io_perm::write)) ++bad;
    });
    a.join();
    b.join();
    REQUIRE(bad.load() == 0);
    REQUIRE(pt.check_invariants());
    // Then both unmap all 16 pages at once: each page is reported by exactly one of them.
    std::uint64_t got_a = 0;
    std::uint64_t got_b = 0;
    std::thread c([&] { got_a = pt.unmap(iova, 16 * k4); });
    std::thread d([&] { got_b = pt.unmap(iova, 16 * k4); });
    c.join();
    d.join();
    REQUIRE(got_a + got_b == 16 * k4);
    total += got_a + got_b;
  }
  CHECK(total == 40 * 16 * k4);
  const auto st = pt.stats();
  CHECK(st.leaves() == 0);
  CHECK(st.tables == 1 + 40 * 2 + (40 / 512 + 1));  // root, a PD and PT per round, PDPTs
  CHECK(pt.check_invariants());
  CHECK(pt.trim() == st.tables);
  CHECK(pt.stats().tables == 0);
}

TEST_CASE(
    "iommu_domain concurrency: map, unmap, link, unlink, translate and trim on one domain, "
    "each thread checked against its own model",
    "[iommu][concurrency]") {
  phyr::iommu_domain dom;
  std::atomic<int> bad{0};
  std::atomic<bool> stop{false};

  // Mappers: random page lists (some with 2 MiB runs), mapped, checked page by page while
  // alive, unmapped in random order.
  auto mapper_thread = [&](unsigned tid) {
    std::mt19937_64 rng(1000 + tid);
    phyr::iommu_mapper<bus_a> m{dom};
    struct live {
      std::vector<std::uint64_t> vpns;  // the physical pages, in list order
      phyr::iommu_mapping<bus_a> mp;
    };
    std::vector<live> maps;
    for (int round = 0; round < 150; ++round) {
      if (maps.size() < 5 && rng() % 3 != 0) {
        cpu_list l;
        std::vector<std::uint64_t> vpns;
        const std::uint64_t n = 1 + rng() % 40;
        const std::uint64_t start = (rng() % 100000) * 2;
        for (std::uint64_t i = 0; i < n; ++i) {
          vpns.push_back(start + 2 * i);  // scattered: one entry, one leaf per page
          if (!l.try_append(phys_range{phys_addr{phys_of(tid, start + 2 * i)}, k4})) ++bad;
        }
        if (rng() % 6 == 0) {  // and a 2 MiB run: a block leaf where IOVA allows
          if (!l.try_append(phys_range{phys_addr{(std::uint64_t{tid + 1} << 40) + 64 * m2}, m2}))
            ++bad;
        }
        auto mp = m.try_map(l, dma_direction::to_device);
        if (!mp) {
          ++bad;
          continue;
        }
        maps.push_back({std::move(vpns), std::move(*mp)});
      } else if (!maps.empty()) {
        const std::size_t i = rng() % maps.size();
        const std::uint64_t dma = maps[i].mp.begin()->addr().value();
        for (std::size_t k = 0; k < maps[i].vpns.size(); ++k) {
          auto t = m.translate(phyr::dma_addr<bus_a>{dma + k * k4 + 7});
          if (!t || t->value() != phys_of(tid, maps[i].vpns[k]) + 7) ++bad;
        }
        if (!m.try_unmap(std::move(maps[i].mp))) ++bad;
        maps.erase(maps.begin() + static_cast<long>(i));
      }
    }
    for (auto& x : maps)
      if (!m.try_unmap(std::move(x.mp))) ++bad;
  };

  // A reservation owner: links and unlinks random slots; its block is its own, so every page
  // of it must translate exactly as its model says, linked or not.
  auto reservation_thread = [&](unsigned tid) {
    std::mt19937_64 rng(2000 + tid);
    constexpr std::uint64_t slots = 32;
    constexpr std::uint64_t slot_pages = 4;
    auto made = resv::try_create(dom, slots * slot_pages * k4);
    if (!made) {
      ++bad;
      return;
    }
    resv r = std::move(*made);
    std::vector<std::uint64_t> linked(slots, 0);  // 0 or the slot's first physical vpn + 1
    for (int round = 0; round < 300; ++round) {
      const std::uint64_t s = rng() % slots;
      const std::uint64_t off = s * slot_pages * k4;
      if (linked[s] == 0) {
        const std::uint64_t vpn = 1 + (rng() % 100000) * 8;
        cpu_list l;
        for (std::uint64_t p = 0; p < slot_pages; ++p)
          if (!l.try_append(phys_range{phys_addr{phys_of(tid, vpn + 2 * p)}, k4})) ++bad;
        const auto dir = rng() % 2 == 0 ? dma_direction::bidirectional : dma_direction::to_device;
        if (!r.try_link_all(off, l, dir)) ++bad;
        r.sync();
        linked[s] = vpn + 1;
      } else {
        if (!r.try_unlink(off, slot_pages * k4)) ++bad;
        linked[s] = 0;
      }
      for (std::uint64_t c = 0; c < slots; ++c) {  // the whole reservation, against the model
        const std::uint64_t a = r.addr().value() + c * slot_pages * k4 + k4 + 5;
        auto t = dom.translate(a);
        if (linked[c] == 0) {
          if (t) ++bad;
        } else if (!t || t->value() != phys_of(tid, linked[c] - 1 + 2) + 5) {
          ++bad;
        }
      }
    }
  };

  // Readers and the trimmer: translations of anything (results must be well-formed leaves),
  // trims at any moment (the gate makes them wait for the walks in flight).
  auto reader_thread = [&] {
    std::mt19937_64 rng(3000);
    std::uint64_t n = 0;
    while (!stop.load(std::memory_order_relaxed)) {
      const std::uint64_t a = k4 + rng() % (std::uint64_t{1} << 28);
      auto t = dom.lookup(a);
      if (t && t->leaf_size != k4 && t->leaf_size != m2 && t->leaf_size != (std::uint64_t{1} << 30))
        ++bad;
      if (++n % 64 == 0) (void)dom.stats();
    }
  };
  auto trim_thread = [&] {
    while (!stop.load(std::memory_order_relaxed)) {
      (void)dom.trim();
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  };

  std::vector<std::thread> workers;
  workers.emplace_back(mapper_thread, 0);
  workers.emplace_back(mapper_thread, 1);
  workers.emplace_back(reservation_thread, 2);
  workers.emplace_back(reservation_thread, 3);
  std::thread reader(reader_thread);
  std::thread trimmer(trim_thread);
  for (auto& t : workers) t.join();
  stop = true;
  reader.join();
  trimmer.join();

  CHECK(bad.load() == 0);
  const auto st = dom.stats();
  CHECK(st.live_mappings == 0);
  CHECK(st.maps == st.unmaps);
  CHECK(st.page_table.leaves() == 0);
  CHECK(st.iova.live_blocks == 0);
  CHECK(dom.with_page_table([](const auto& pt) { return pt.check_invariants(); }));
  dom.trim();
  CHECK(dom.stats().page_table.tables == 0);
}
