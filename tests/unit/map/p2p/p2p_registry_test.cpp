// p2p_registry: per-range provider lookup, overlap rejection, RCU-style snapshots.
#include <atomic>
#include <catch2/catch.hpp>
#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <phyr/map/p2p/p2p_registry.hpp>
#include <random>
#include <thread>
#include <vector>

#include "support/phys_ranges.hpp"
#include "support/threads.hpp"

using phyr::p2p_provider_id;
using phyr::p2p_registry;
using phyr::p2p_window;

namespace {
using namespace phyr_test;
constexpr std::uint64_t MiB = 1ull << 20;

p2p_window win(std::uint64_t start, std::uint64_t size, std::uint64_t id, std::int64_t off = 0) {
  return phyr::must(p2p_window::create(phys_addr{start}, size, p2p_provider_id{id}, off));
}

}  // namespace

TEST_CASE("p2p_window::create rejects empty, wrapping and unrepresentable bus windows",
          "[p2p_registry]") {
  const p2p_provider_id id{1};
  CHECK(p2p_window::create(phys_addr{0x1000}, 0, id, 0).error() == errc::invalid_argument);
  CHECK(p2p_window::create(phys_addr{~0ull - 0xfff}, 0x2000, id, 0).error() == errc::overflow);
  CHECK(p2p_window::create(phys_addr{0}, phys_range::max_len + 1, id, 0).error() == errc::too_long);
  // The bus image [start + off, last + off] must stay inside [0, 2^64).
  CHECK(p2p_window::create(phys_addr{0x1000}, 0x1000, id, -0x1001).error() == errc::overflow);
  CHECK(p2p_window::create(phys_addr{0x1000}, 0x1000, id, -0x1000).has_value());
  CHECK(p2p_window::create(phys_addr{~0ull - 0x1fff}, 0x1000, id, 0x1000).has_value());
  CHECK(p2p_window::create(phys_addr{~0ull - 0x1fff}, 0x1000, id, 0x1001).error() ==
        errc::overflow);
  CHECK(p2p_window::create(phys_addr{0x1000}, 0x1000, id, INT64_MIN).error() == errc::overflow);
  STATIC_REQUIRE(p2p_window::create(phys_addr{0x1000}, 0x1000, p2p_provider_id{2}, 0x10)
                     ->bus_address(phys_addr{0x1800}) == 0x1810);
}

TEST_CASE("p2p_window::bus_address adds a negative bus offset", "[p2p_registry]") {
  const p2p_window w = win(0x8000'0000, 16 * MiB, 7, -0x4000'0000);
  CHECK(w.bus_address(phys_addr{0x8000'1000}) == 0x4000'1000);
  CHECK(w.provider() == p2p_provider_id{7});
}

TEST_CASE("p2p_registry: an empty registry says RAM for everything", "[p2p_registry]") {
  p2p_registry<> reg;
  CHECK(reg.size() == 0);
  auto o = reg.lookup(pr(0, phys_range::max_len));
  REQUIRE(o);
  CHECK(o->is_ram());
}

TEST_CASE("p2p_registry: lookup returns the provider owning all of a range, RAM, or straddles",
          "[p2p_registry]") {
  p2p_registry<> reg;
  // Two adjacent windows of different providers, a gap, a third window.
  REQUIRE(reg.try_register(win(0x1000'0000, 16 * MiB, 1, 0)));
  REQUIRE(reg.try_register(win(0x1100'0000, 16 * MiB, 2, 0x100)));
  REQUIRE(reg.try_register(win(0x4000'0000, 256 * MiB, 3, 0)));
  CHECK(reg.size() == 3);
  auto rd = reg.reader();

  SECTION("inside a window, including its exact first and last bytes") {
    for (auto r : {pr(0x1000'0000, 4096), pr(0x1000'0000, 16 * MiB), pr(0x10ff'ffff, 1),
                   pr(0x1080'0000, 0x1000)}) {
      auto o = rd.lookup(r);
      REQUIRE(o);
      REQUIRE(o->is_provider());
      CHECK(o->window().provider() == p2p_provider_id{1});
    }
    auto o = rd.lookup(pr(0x1100'0000, 4096));
    REQUIRE(o);
    CHECK(o->window().provider() == p2p_provider_id{2});
    CHECK(o->window().bus_address(phys_addr{0x1100'0000}) == 0x1100'0100);
  }
  SECTION("RAM below, between and above windows") {
    for (auto r : {pr(0, 0x1000'0000), pr(0x1200'0000, 0x4000'0000 - 0x1200'0000),
                   pr(0x5000'0000, 4096), pr(~0ull - 4095, 4096)}) {
      auto o = rd.lookup(r);
      REQUIRE(o);
      CHECK(o->is_ram());
    }
  }
  SECTION("straddling a window's start, its end, two adjacent providers, or a whole window") {
    for (auto r : {pr(0x0fff'f000, 0x2000), pr(0x4fff'f000, 0x2000), pr(0x10ff'f000, 0x2000),
                   pr(0x3000'0000, 0x4000'0000), pr(0, phys_range::max_len)}) {
      auto o = rd.lookup(r);
      REQUIRE_FALSE(o);
      CHECK(o.error() == errc::straddles_boundary);
    }
  }
  SECTION("windows() lists them in address order") {
    auto ws = rd.windows();
    REQUIRE(ws.size() == 3);
    CHECK(ws[0].provider() == p2p_provider_id{1});
    CHECK(ws[1].provider() == p2p_provider_id{2});
    CHECK(ws[2].provider() == p2p_provider_id{3});
  }
}

TEST_CASE("p2p_registry: overlapping registration is an error and changes nothing",
          "[p2p_registry]") {
  p2p_registry<> reg;
  REQUIRE(reg.try_register(win(0x1000'0000, 16 * MiB, 1)));
  CHECK(reg.try_register(win(0x1000'0000, 4096, 2)).error() == errc::overlaps);
  CHECK(reg.try_register(win(0x0fff'f000, 0x2000, 2)).error() == errc::overlaps);
  CHECK(reg.try_register(win(0x10ff'ffff, 1, 2)).error() == errc::overlaps);
  CHECK(reg.try_register(win(0x0800'0000, 0x1000'0000, 2)).error() == errc::overlaps);
  CHECK(reg.size() == 1);
  // Touching is fine.
  CHECK(reg.try_register(win(0x0fff'f000, 0x1000, 2)));
  CHECK(reg.try_register(win(0x1100'0000, 0x1000, 3)));
  CHECK(reg.size() == 3);
}

TEST_CASE("p2p_registry::try_register_all adds all windows or none", "[p2p_registry]") {
  p2p_registry<> reg;
  REQUIRE(reg.try_register(win(0x9000'0000, MiB, 9)));
  const p2p_window bad[] = {win(0x1000'0000, MiB, 1), win(0x2000'0000, MiB, 2),
                            win(0x1008'0000, MiB, 3)};
  CHECK(reg.try_register_all(bad).error() == errc::overlaps);
  CHECK(reg.size() == 1);
  const p2p_window clash[] = {win(0x1000'0000, MiB, 1), win(0x9000'0000, 4096, 2)};
  CHECK(reg.try_register_all(clash).error() == errc::overlaps);
  CHECK(reg.size() == 1);
  const p2p_window good[] = {win(0x3000'0000, MiB, 3), win(0x1000'0000, MiB, 1),
                             win(0x2000'0000, MiB, 2)};
  REQUIRE(reg.try_register_all(good));
  auto ws = reg.reader().windows();
  REQUIRE(ws.size() == 4);
  for (std::size_t i = 1; i < ws.size(); ++i) CHECK(ws[i - 1].addr() < ws[i].addr());
  CHECK(reg.try_register_all({}).has_value());
  const p2p_window empty[] = {p2p_window{}};
  CHECK(reg.try_register_all(empty).error() == errc::invalid_argument);
}

TEST_CASE("p2p_registry::try_unregister removes every window of a provider", "[p2p_registry]") {
  p2p_registry<> reg;
  REQUIRE(reg.try_register(win(0x1000'0000, MiB, 1)));
  REQUIRE(reg.try_register(win(0x2000'0000, MiB, 2)));
  REQUIRE(reg.try_register(win(0x3000'0000, MiB, 1)));  // provider 1's second BAR
  REQUIRE(reg.try_unregister(p2p_provider_id{1}));
  CHECK(reg.size() == 1);
  CHECK(reg.lookup(pr(0x1000'0000, 4096))->is_ram());
  CHECK(reg.lookup(pr(0x2000'0000, 4096))->is_provider());
  CHECK(reg.try_unregister(p2p_provider_id{1}).error() == errc::not_found);
  REQUIRE(reg.try_unregister(p2p_provider_id{2}));
  CHECK(reg.size() == 0);
  CHECK(reg.try_unregister(p2p_provider_id{2}).error() == errc::not_found);
}

TEST_CASE("p2p_registry: allocation failure leaves the registry unchanged and leaks nothing",
          "[p2p_registry][alloc]") {
  phyr::fault_state fs;
  {
    p2p_registry<phyr::fault_injecting_allocator> reg{phyr::fault_injecting_allocator{&fs}};
    for (std::uint64_t i = 0; i < 5; ++i) REQUIRE(reg.try_register(win((i + 1) << 32, MiB, i)));
    // Registration and unregistration each allocate exactly one snapshot: fail it.
    fs.fail_at = fs.calls + 1;
    CHECK(reg.try_register(win(0x1000, 4096, 99)).error() == errc::out_of_memory);
    CHECK(reg.size() == 5);
    CHECK(reg.lookup(pr(0x1000, 4096))->is_ram());
    fs.fail_at = fs.calls + 1;
    CHECK(reg.try_unregister(p2p_provider_id{0}).error() == errc::out_of_memory);
    CHECK(reg.size() == 5);
    CHECK(reg.lookup(pr(1ull << 32, 4096))->is_provider());
    fs.fail_at = 0;
    // Retired snapshots were reclaimed as soon as no reader was in flight: one live block.
    CHECK(reg.retired_snapshots() == 0);
    CHECK(fs.live == 1);
  }
  CHECK(fs.live == 0);
}

TEST_CASE("p2p_registry: a live reader keeps its snapshot and reclaim frees it afterwards",
          "[p2p_registry]") {
  phyr::fault_state fs;
  p2p_registry<phyr::fault_injecting_allocator> reg{phyr::fault_injecting_allocator{&fs}};
  REQUIRE(reg.try_register(win(0x1000'0000, MiB, 1)));
  {
    auto rd = reg.reader();
    REQUIRE(reg.try_register(win(0x2000'0000, MiB, 2)));
    REQUIRE(reg.try_unregister(p2p_provider_id{1}));
    // The guard still sees the world as it was when it was taken.
    CHECK(rd.size() == 1);
    CHECK(rd.lookup(pr(0x1000'0000, 4096))->is_provider());
    CHECK(rd.lookup(pr(0x2000'0000, 4096))->is_ram());
    // Only the pinned snapshot waits; the one in between, never pinned, is freed already.
    CHECK(reg.retired_snapshots() == 1);
    CHECK(reg.try_reclaim() == 0);
    // A new reader sees the new world.
    CHECK(reg.lookup(pr(0x1000'0000, 4096))->is_ram());
  }
  CHECK(reg.try_reclaim() == 1);
  CHECK(reg.retired_snapshots() == 0);
  CHECK(fs.live == 1);
}

TEST_CASE("p2p_registry: lookups match a linear-scan model on random windows",
          "[p2p_registry][property]") {
  std::mt19937_64 rng(0x5eed'0002);
  for (int round = 0; round < 20; ++round) {
    p2p_registry<> reg;
    std::vector<p2p_window> model;
    const int n = 1 + static_cast<int>(rng() % 64);
    for (int i = 0; i < n; ++i) {
      const std::uint64_t start = (rng() % (1ull << 24)) << 12;
      const std::uint64_t size = (1 + rng() % 64) << 12;
      const p2p_window w = win(start, size, static_cast<std::uint64_t>(i));
      bool clash = false;
      for (const auto& m : model) clash |= m.range().overlaps(w.range());
      auto r = reg.try_register(w);
      if (clash) {
        CHECK(r.error() == errc::overlaps);
      } else {
        REQUIRE(r);
        model.push_back(w);
      }
    }
    for (int q = 0; q < 2000; ++q) {
      const std::uint64_t a = rng() % ((1ull << 36) + (1ull << 20));
      const std::uint64_t len = 1 + rng() % (1ull << 18);
      const phys_range r = pr(a, len);
      int touching = 0;
      const p2p_window* owner = nullptr;
      for (const auto& m : model) {
        if (m.range().overlaps(r)) {
          ++touching;
          if (m.range().contains(r)) owner = &m;
        }
      }
      auto o = reg.lookup(r);
      if (touching == 0) {
        REQUIRE(o);
        CHECK(o->is_ram());
      } else if (touching == 1 && owner != nullptr) {
        REQUIRE(o);
        REQUIRE(o->is_provider());
        CHECK(o->window() == *owner);
      } else {
        REQUIRE_FALSE(o);
        CHECK(o.error() == errc::straddles_boundary);
      }
    }
  }
}

TEST_CASE("p2p_registry: concurrent lookups while another thread registers and unregisters",
          "[p2p_registry][concurrent]") {
  p2p_registry<> reg;
  // Fixed windows every reader must always see; churned windows appear and disappear.
  for (std::uint64_t i = 0; i < 16; ++i) REQUIRE(reg.try_register(win((i + 1) << 32, MiB, i)));
  std::atomic<std::uint64_t> bad{0};
  std::atomic<std::uint64_t> lookups{0};
  auto readers = phyr_test::start_threads(3, [&](std::stop_token stop, int t) {
    std::mt19937_64 rng(static_cast<std::uint64_t>(t));
    while (!stop.stop_requested()) {
      auto rd = reg.reader();
      for (int k = 0; k < 64; ++k) {
        const std::uint64_t i = rng() % 16;
        auto fixed = rd.lookup(pr(((i + 1) << 32) + 0x1000, 4096));
        if (!fixed || !fixed->is_provider() || fixed->window().provider().value != i) ++bad;
        // Churned windows: RAM or their own provider, never an error or another owner.
        const std::uint64_t j = rng() % 8;
        auto churn = rd.lookup(pr(0x8000'0000 + j * MiB, 4096));
        if (!churn || (churn->is_provider() && churn->window().provider().value != 100 + j))
          ++bad;
        lookups.fetch_add(2, std::memory_order_relaxed);
      }
    }
  });
  bool registered[8] = {};
  std::mt19937_64 wrng(42);
  // Churn until the readers have done real work (thread start-up can outlast 400 rounds).
  for (int round = 0; round < 400 || lookups.load() < 20000; ++round) {
    const std::uint64_t j = wrng() % 8;
    if (registered[j]) {
      REQUIRE(reg.try_unregister(p2p_provider_id{100 + j}));
    } else {
      REQUIRE(reg.try_register(win(0x8000'0000 + j * MiB, MiB, 100 + j)));
    }
    registered[j] = !registered[j];
  }
  readers.clear();  // stop and join
  CHECK(bad.load() == 0);
  CHECK(lookups.load() > 0);
  (void)reg.try_reclaim();
  CHECK(reg.retired_snapshots() == 0);
}

TEST_CASE(
    "p2p_registry: with read guards always overlapping, retired snapshots stay bounded by "
    "the guards alive",
    "[p2p_registry]") {
  phyr::fault_state fs;
  p2p_registry<phyr::fault_injecting_allocator> reg{phyr::fault_injecting_allocator{&fs}};
  REQUIRE(reg.try_register(win(0x1000'0000, MiB, 1)));
  // Hand over hand: a new guard is taken before the old one is dropped, so some reader is
  // always in flight, and a writer runs between every step.
  auto a = std::make_unique<p2p_registry<phyr::fault_injecting_allocator>::read_guard>(reg.reader());
  std::size_t most = 0;
  for (int i = 0; i < 1000; ++i) {
    auto b =
        std::make_unique<p2p_registry<phyr::fault_injecting_allocator>::read_guard>(reg.reader());
    REQUIRE(reg.try_register(win(0x2000'0000, MiB, 2)));
    a = std::move(b);
    REQUIRE(reg.try_unregister(p2p_provider_id{2}));
    most = std::max(most, reg.retired_snapshots());
    REQUIRE(reg.retired_snapshots() <= 2);  // at most the two guards alive
  }
  a.reset();
  CHECK(reg.try_reclaim() <= 2);
  CHECK(reg.retired_snapshots() == 0);
  CHECK(fs.live == 1);
  CHECK(most >= 1);
}

TEST_CASE(
    "p2p_registry: concurrent overlapping readers and a writer keep retired snapshots "
    "bounded by the guards alive",
    "[p2p_registry][concurrent]") {
  p2p_registry<> reg;
  REQUIRE(reg.try_register(win(0x1000'0000, MiB, 1)));
  std::atomic<int> bad{0};
  std::atomic<long> rounds{0};
  auto readers = phyr_test::start_threads(2, [&](std::stop_token stop, int) {
    // Each reader holds up to two guards at once (hand over hand).
    std::optional<p2p_registry<>::read_guard> held{reg.reader()};
    while (!stop.stop_requested()) {
      std::optional<p2p_registry<>::read_guard> next{reg.reader()};
      auto o = next->lookup(pr(0x1000'0000, 4096));
      if (!o || !o->is_provider()) bad.fetch_add(1);
      auto p = next->lookup(pr(0x2000'0000, 4096));
      if (!p) bad.fetch_add(1);  // provider 2 or RAM, never straddling
      held.reset();
      held.emplace(std::move(*next));
      rounds.fetch_add(1, std::memory_order_relaxed);
    }
  });
  std::size_t most = 0;
  for (int i = 0; i < 4000 || rounds.load() < 2000; ++i) {
    REQUIRE(reg.try_register(win(0x2000'0000, MiB, 2)));
    most = std::max(most, reg.retired_snapshots());
    REQUIRE(reg.try_unregister(p2p_provider_id{2}));
    most = std::max(most, reg.retired_snapshots());
    if (i > 1'000'000) break;
  }
  readers.clear();  // stop and join
  CHECK(bad.load() == 0);
  // 2 readers x 2 guards. (A registry-wide reader count that never reaches 0 let thousands
  // pile up here.)
  CHECK(most <= 4);
  WARN("most retired snapshots pending at once: " << most << " (reader rounds " << rounds.load()
                                                   << ")");
  (void)reg.try_reclaim();
  CHECK(reg.retired_snapshots() == 0);
}
