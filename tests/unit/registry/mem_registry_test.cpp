#include <phyr/registry.hpp>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <cstdint>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "registry_model.hpp"
#include "support/phys_ranges.hpp"

namespace {
using namespace phyr_test;
using phyr::virt_addr;
using phyr::virt_range;

virt_range vr(std::uint64_t a, std::uint64_t n) { return virt_range{virt_addr{a}, n}; }

// Every segment as (va, len, target, flags, owner): what "unchanged" compares.
struct seg {
  std::uint64_t va, len, target;
  range_flags flags;
  std::uint64_t owner;
  friend bool operator==(const seg&, const seg&) = default;
};
template <class Reg>
std::vector<seg> dump(const Reg& r) {
  std::vector<seg> out;
  r.for_each_segment([&](const virt_range& v, const auto& t, virt_addr owner) {
    out.push_back(seg{v.addr().value(), v.len(), t.addr().value(), t.flags(), owner.value()});
  });
  return out;
}

struct recording_hooks {
  struct event {
    bool reg;
    std::uint64_t va, len;
    std::size_t pieces;
  };
  std::vector<event>* log = nullptr;
  int fail_register = 0;  // fail the n-th on_register (1-based), 0 never
  int calls = 0;
  phyr::result<void> on_register(const virt_range& va,
                                 std::span<const phys_range> t) noexcept {
    ++calls;
    if (calls == fail_register) return errc::busy;
    log->push_back({true, va.addr().value(), va.len(), t.size()});
    return {};
  }
  void on_unregister(const virt_range& va, std::span<const phys_range> t) noexcept {
    log->push_back({false, va.addr().value(), va.len(), t.size()});
  }
};

}  // namespace

TEST_CASE("a registration is byte-granular: one byte at an odd address, two buffers in a page") {
  phyr::phys_registry reg;
  REQUIRE(reg.try_register(vr(0x10001, 1), phys_addr{0x9000'0003}));
  REQUIRE(reg.try_register(vr(0x10002, 0x100), phys_addr{0x7000'0000}));
  auto t = reg.translate(virt_addr{0x10001}, 1);
  REQUIRE(t);
  CHECK(t->addr == phys_addr{0x9000'0003});
  CHECK(t->len == 1);
  t = reg.translate(virt_addr{0x10002 + 0x10}, 0x20);
  REQUIRE(t);
  CHECK(t->addr == phys_addr{0x7000'0010});
  CHECK(t->len == 0x20);
  CHECK(reg.translate(virt_addr{0x10000}, 1).error() == errc::not_mapped);
  CHECK(reg.translate(virt_addr{0x10102}, 1).error() == errc::not_mapped);
}

TEST_CASE("translate answers the contiguous part only: a piece boundary or the end shortens it") {
  phyr::phys_registry reg;
  const phys_range pieces[] = {pr(0x20000, 0x1000), pr(0x50000, 0x1000)};
  REQUIRE(reg.try_register(vr(0x40000, 0x2000), std::span<const phys_range>{pieces}));
  auto t = reg.translate(virt_addr{0x40800}, 0x1000);
  REQUIRE(t);
  CHECK(t->addr == phys_addr{0x20800});
  CHECK(t->len == 0x800);  // the next page is elsewhere
  t = reg.translate(virt_addr{0x41800}, 0x1000);
  REQUIRE(t);
  CHECK(t->addr == phys_addr{0x50800});
  CHECK(t->len == 0x800);  // the registration ends
  CHECK(reg.translate(virt_addr{0x40000}, 0).error() == errc::invalid_argument);
  CHECK(reg.translate(virt_addr{~std::uint64_t{0}}, 2).error() == errc::overflow);
}

TEST_CASE("pieces that are contiguous in the target are merged into one segment") {
  phyr::phys_registry reg;
  const phys_range pieces[] = {pr(0x20000, 0x1000), pr(0x21000, 0x1000), pr(0x9000, 0x10)};
  REQUIRE(reg.try_register(vr(0x40000, 0x2010), std::span<const phys_range>{pieces}));
  CHECK(reg.segments() == 2);
  auto t = reg.translate(virt_addr{0x40000}, 0x3000);
  REQUIRE(t);
  CHECK(t->len == 0x2000);
}

TEST_CASE("a translation list must cover the virtual range exactly, else invalid_argument") {
  phyr::phys_registry reg;
  REQUIRE(reg.try_register(vr(0x1000, 0x1000), phys_addr{0x1000}));
  const auto before = dump(reg);
  const phys_range short_list[] = {pr(0x20000, 0x800)};
  const phys_range long_list[] = {pr(0x20000, 0x1000), pr(0x30000, 0x1000)};
  CHECK(reg.try_register(vr(0x8000, 0x1000), std::span<const phys_range>{short_list}).error() ==
        errc::invalid_argument);
  CHECK(reg.try_register(vr(0x8000, 0x1000), std::span<const phys_range>{long_list}).error() ==
        errc::invalid_argument);
  CHECK(reg.try_register(vr(0x8000, 0x1000), std::span<const phys_range>{}).error() ==
        errc::invalid_argument);
  CHECK(reg.try_register(vr(0x8000, 0x1000), phys_addr{~std::uint64_t{0} - 0x10}).error() ==
        errc::overflow);
  CHECK(dump(reg) == before);
}

TEST_CASE("registering over a registered byte fails with overlaps and changes nothing") {
  phyr::phys_registry reg;
  REQUIRE(reg.try_register(vr(0x10000, 0x1000), phys_addr{0x100000}));
  const auto before = dump(reg);
  CHECK(reg.try_register(vr(0x10fff, 1), phys_addr{0}).error() == errc::overlaps);
  CHECK(reg.try_register(vr(0xf000, 0x1001), phys_addr{0}).error() == errc::overlaps);
  CHECK(reg.try_register(vr(0xf000, 0x3000), phys_addr{0}).error() == errc::overlaps);
  CHECK(dump(reg) == before);
  CHECK(reg.try_register(vr(0xf000, 0x1000), phys_addr{0}));  // touching is fine
  CHECK(reg.try_register(vr(0x11000, 0x1000), phys_addr{0}));
}

TEST_CASE("unregister takes whole registrations: cutting one is straddles_boundary") {
  phyr::phys_registry reg;
  REQUIRE(reg.try_register(vr(0x10000, 0x2000), phys_addr{0x100000}));
  const auto before = dump(reg);
  CHECK(reg.try_unregister(vr(0x10000, 0x1000)).error() == errc::straddles_boundary);
  CHECK(reg.try_unregister(vr(0x11000, 0x1000)).error() == errc::straddles_boundary);
  CHECK(reg.try_unregister(vr(0x10800, 0x3000)).error() == errc::straddles_boundary);
  CHECK(reg.try_unregister(vr(0x20000, 0x1000)).error() == errc::not_found);
  CHECK(reg.try_unregister(vr(0xf000, 0x3000)).error() == errc::not_mapped);  // a gap before
  CHECK(dump(reg) == before);
  REQUIRE(reg.try_unregister(vr(0x10000, 0x2000)));
  CHECK(reg.segments() == 0);
  CHECK(reg.translate(virt_addr{0x10000}, 1).error() == errc::not_mapped);
}

TEST_CASE("adjacent registrations go in one unregister call, each notified in its own unit") {
  std::vector<recording_hooks::event> log;
  phyr::mem_registry<phyr::cpu_phys, recording_hooks> reg{{}, recording_hooks{&log}};
  REQUIRE(reg.try_register(vr(0x10000, 0x1000), phys_addr{0x100000}));
  REQUIRE(reg.try_register(vr(0x11000, 0x2000), phys_addr{0x101000}));
  REQUIRE(reg.try_register(vr(0x14000, 0x1000), phys_addr{0x200000}));
  log.clear();
  CHECK(reg.try_unregister(vr(0x10000, 0x5000)).error() == errc::not_mapped);  // gap 0x13000
  CHECK(log.empty());
  REQUIRE(reg.try_unregister(vr(0x10000, 0x3000)));
  REQUIRE(log.size() == 2);
  CHECK((!log[0].reg && log[0].va == 0x10000 && log[0].len == 0x1000));
  CHECK((!log[1].reg && log[1].va == 0x11000 && log[1].len == 0x2000));
  CHECK(reg.segments() == 1);
}

TEST_CASE("adjacent registrations contiguous in the target translate as one range") {
  phyr::phys_registry reg;
  REQUIRE(reg.try_register(vr(0x10000, 0x1000), phys_addr{0x100000}));
  REQUIRE(reg.try_register(vr(0x11000, 0x1000), phys_addr{0x101000}));
  auto t = reg.translate(virt_addr{0x10800}, 0x1000);
  REQUIRE(t);
  CHECK(t->addr == phys_addr{0x100800});
  CHECK(t->len == 0x1000);
  CHECK(reg.segments() == 2);  // still two registrations
  REQUIRE(reg.try_unregister(vr(0x11000, 0x1000)));
  t = reg.translate(virt_addr{0x10800}, 0x1000);
  REQUIRE(t);
  CHECK(t->len == 0x800);
}

TEST_CASE("adjacent registrations with a target gap or different flags translate as two") {
  phyr::phys_registry reg;
  REQUIRE(reg.try_register(vr(0x10000, 0x1000), phys_addr{0x100000}));
  REQUIRE(reg.try_register(vr(0x11000, 0x1000), phys_addr{0x102000}));
  REQUIRE(reg.try_register(vr(0x20000, 0x1000), phys_addr{0x300000}));
  REQUIRE(reg.try_register(vr(0x21000, 0x1000), phys_addr{0x301000}, range_flags::driver0));
  auto t = reg.translate(virt_addr{0x10800}, 0x1000);
  REQUIRE(t);
  CHECK(t->len == 0x800);
  t = reg.translate(virt_addr{0x20800}, 0x1000);
  REQUIRE(t);
  CHECK(t->len == 0x800);
  t = reg.translate(virt_addr{0x21000}, 0x10);
  REQUIRE(t);
  CHECK(t->flags == range_flags::driver0);
}

TEST_CASE("registrations must end below the user-space limit (2^56 default, 2^47 optional)") {
  phyr::phys_registry reg;
  const std::uint64_t top = phyr::user_va_limit_5level;
  CHECK(reg.try_register(vr(top - 0x1000, 0x1000), phys_addr{0x1000}));
  CHECK(reg.try_register(vr(top - 0x800, 0x1000), phys_addr{0x1000}).error() == errc::out_of_range);
  CHECK(reg.try_register(vr(top, 0x1000), phys_addr{0x1000}).error() == errc::out_of_range);
  CHECK(reg.try_register(vr(0xffff'8000'0000'0000, 0x1000), phys_addr{0x1000}).error() ==
        errc::out_of_range);  // a kernel address
  CHECK(reg.translate(virt_addr{top}, 1).error() == errc::not_mapped);

  phyr::phys_registry four{{.va_limit = phyr::user_va_limit_4level}};
  CHECK(four.try_register(vr(phyr::user_va_limit_4level - 0x1000, 0x1000), phys_addr{0}));
  CHECK(four.try_register(vr(phyr::user_va_limit_4level, 0x1000), phys_addr{0}).error() ==
        errc::out_of_range);
}

TEST_CASE("a failing on_register hook rolls the registration back and its error is returned") {
  std::vector<recording_hooks::event> log;
  phyr::fault_state fs;
  phyr::mem_registry<phyr::cpu_phys, recording_hooks, phyr::fault_injecting_allocator> reg{
      {}, recording_hooks{&log, /*fail_register=*/2}, phyr::fault_injecting_allocator{&fs}};
  REQUIRE(reg.try_register(vr(0x10000, 0x1000), phys_addr{0x100000}));
  const auto before = dump(reg);
  const auto live = fs.live;
  CHECK(reg.try_register(vr(0x11000, 0x1000), phys_addr{0x101000}).error() == errc::busy);
  CHECK(dump(reg) == before);
  CHECK(fs.live == live);
  CHECK(reg.translate(virt_addr{0x11000}, 1).error() == errc::not_mapped);
  REQUIRE(log.size() == 1);
  CHECK((log[0].reg && log[0].va == 0x10000 && log[0].pieces == 1));
  CHECK(reg.try_register(vr(0x11000, 0x1000), phys_addr{0x101000}));  // the third call passes
}

TEST_CASE("an iovec of 32 pieces becomes one coalesced list in one pass") {
  phyr::dma_registry<struct bus0> reg;
  using dr = phyr::dma_range<bus0>;
  // 64 KiB registered as one linear IOVA range, and a second buffer elsewhere.
  REQUIRE(reg.try_register(vr(0x100000, 0x10000), phyr::dma_addr<bus0>{0x8000'0000}));
  REQUIRE(reg.try_register(vr(0x200000, 0x1000), phyr::dma_addr<bus0>{0x9000'0000}));
  std::vector<virt_range> iov;
  for (std::uint64_t i = 0; i < 32; ++i) iov.push_back(vr(0x100000 + i * 0x800, 0x800));
  phyr::range_list<dr> out;
  REQUIRE(reg.try_translate(std::span<const virt_range>{iov}, out));
  REQUIRE(out.size() == 1);
  CHECK(out.front() == dr{phyr::dma_addr<bus0>{0x8000'0000}, 0x10000});

  iov.push_back(vr(0x200100, 0x100));
  phyr::range_list<dr> two;
  REQUIRE(reg.try_translate(std::span<const virt_range>{iov}, two));
  REQUIRE(two.size() == 2);
  CHECK(two.back() == dr{phyr::dma_addr<bus0>{0x9000'0100}, 0x100});

  // An unregistered byte anywhere: not_mapped and the output is untouched.
  iov.push_back(vr(0x200f00, 0x200));
  CHECK(reg.try_translate(std::span<const virt_range>{iov}, two).error() == errc::not_mapped);
  CHECK(two.size() == 2);
  CHECK(two.total_bytes() == 0x10100);
}

TEST_CASE("random register/unregister/translate sequences agree exactly with the byte model") {
  for (std::uint32_t seed = 1; seed <= 40; ++seed) {
    CAPTURE(seed);
    std::mt19937_64 rng{seed};
    const std::uint64_t base = 0x7f00'0000'0000;
    const std::uint64_t size = 2048;
    registry_model::model m{base, size};
    phyr::phys_registry reg;
    auto pick = [&](std::uint64_t lo, std::uint64_t hi) {
      return std::uniform_int_distribution<std::uint64_t>{lo, hi}(rng);
    };
    std::uint64_t next_target = 0x1000'0000;
    for (int step = 0; step < 400; ++step) {
      const std::uint64_t op = pick(0, 9);
      const std::uint64_t va = base + pick(0, size - 1);
      const std::uint64_t len = pick(1, std::min<std::uint64_t>(160, base + size - va));
      if (op < 3) {  // register 1..3 pieces; sometimes contiguous with the previous target
        std::vector<registry_model::model::piece> mp;
        std::vector<phys_range> rp;
        std::uint64_t left = len;
        while (left != 0) {
          const std::uint64_t n = pick(0, 2) == 0 ? left : pick(1, left);
          if (pick(0, 2) != 0) next_target += pick(1, 64);
          const range_flags f = pick(0, 5) == 0 ? range_flags::driver0 : range_flags::none;
          mp.push_back({next_target, n, f});
          rp.push_back(pr(next_target, n, f));
          next_target += n;
          left -= n;
        }
        const auto want = m.reg(va, len, mp);
        const auto got = reg.try_register(vr(va, len), std::span<const phys_range>{rp});
        REQUIRE(got.has_value() == !want.has_value());
        if (want) REQUIRE(got.error() == *want);
      } else if (op < 5) {
        const auto want = m.unreg(va, len);
        const auto got = reg.try_unregister(vr(va, len));
        REQUIRE(got.has_value() == !want.has_value());
        if (want) REQUIRE(got.error() == *want);
      } else {
        registry_model::answer a;
        const auto want = m.translate(va, len, a);
        const auto got = reg.translate(virt_addr{va}, len);
        REQUIRE(got.has_value() == !want.has_value());
        if (want) {
          REQUIRE(got.error() == *want);
        } else {
          CHECK(got->addr.value() == a.addr);
          CHECK(got->len == a.len);
          CHECK(got->flags == a.flags);
        }
      }
    }
    // Every registered byte translates to what the model says.
    for (std::uint64_t v = base; v < base + size; ++v) {
      registry_model::answer a;
      const auto want = m.translate(v, 1, a);
      const auto got = reg.translate(virt_addr{v}, 1);
      REQUIRE(got.has_value() == !want.has_value());
      if (got) REQUIRE(got->addr.value() == a.addr);
    }
  }
}

TEST_CASE("an allocation failure at any point of register, unregister or translate changes nothing") {
  phyr::fault_state fs;
  using reg_t = phyr::mem_registry<phyr::cpu_phys, phyr::no_registry_hooks,
                                   phyr::fault_injecting_allocator>;
  reg_t reg{{}, {}, phyr::fault_injecting_allocator{&fs}};
  for (std::uint64_t i = 0; i < 8; ++i)
    REQUIRE(reg.try_register(vr(0x10000 + i * 0x2000, 0x1000), phys_addr{0x100000 + i * 0x1000}));
  const auto before = dump(reg);
  for (std::uint64_t k = 1; k <= 3; ++k) {
    CAPTURE(k);
    fs.fail_at = fs.calls + k;
    const std::int64_t live = fs.live;
    auto r = reg.try_register(vr(0x40000, 0x1000), phys_addr{0x900000});
    if (r) {
      fs.fail_at = 0;
      REQUIRE(reg.try_unregister(vr(0x40000, 0x1000)));
      CHECK(k > 1);  // the first allocation is the only one
    } else {
      CHECK(r.error() == errc::out_of_memory);
    }
    CHECK(dump(reg) == before);
    CHECK(fs.live == live);
  }
  fs.fail_at = fs.calls + 1;
  CHECK(reg.try_unregister(vr(0x10000, 0x1000)).error() == errc::out_of_memory);
  CHECK(dump(reg) == before);

  // Translates `iov` into `out`, failing its 1st, 2nd, ... allocation until it succeeds
  // (true) or 31 failures (false); each failure must be out_of_memory with `out` unchanged.
  auto translate_failing_each = [&](const std::vector<virt_range>& iov, auto& out,
                                    auto out_unchanged) {
    for (std::uint64_t k = 1; k < 32; ++k) {
      CAPTURE(k);
      fs.fail_at = fs.calls + k;
      auto r = reg.try_translate(std::span<const virt_range>{iov}, out);
      if (r) return true;
      CHECK(r.error() == errc::out_of_memory);
      out_unchanged();
    }
    return false;
  };

  // The iovec list: fail each of its allocations in turn; `out` keeps its old contents.
  std::vector<virt_range> iov;
  for (std::uint64_t i = 0; i < 8; ++i) iov.push_back(vr(0x10000 + i * 0x2000, 0x1000));
  phyr::range_list<phys_range, phyr::fault_injecting_allocator> out{
      phyr::fault_injecting_allocator{&fs}};
  REQUIRE(out.try_append(pr(0x1, 0x10)));
  CHECK(translate_failing_each(iov, out, [&] {
    CHECK(out.size() == 1);
    CHECK(out.total_bytes() == 0x10);
  }));
  CHECK(out.size() == 2);  // 0x1 and the 8 contiguous pages

  // The in-place path (an empty list): a failure leaves it empty.
  phyr::range_list<phys_range, phyr::fault_injecting_allocator> empty{
      phyr::fault_injecting_allocator{&fs}};
  std::vector<virt_range> scattered;
  for (std::uint64_t i = 0; i < 8; i += 2) scattered.push_back(vr(0x10000 + i * 0x2000, 0x1000));
  scattered.push_back(vr(0x10000, 0x1000));  // 5 entries: past the two inline ones
  CHECK(translate_failing_each(scattered, empty, [&] { CHECK(empty.empty()); }));
  CHECK(empty.size() == 5);
  fs.fail_at = 0;
}

TEST_CASE("concurrent readers on other threads see the old or the new state, never a torn one") {
  // Each registration k covers [base + k * page, +page) and translates to k * 2^32 + offset,
  // so a reader can check any answer without knowing which snapshot it got.
  phyr::phys_registry reg;
  const std::uint64_t base = 0x10'0000;
  const std::uint64_t page = 0x1000;
  const std::uint64_t n = 64;
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> bad{0};
  std::atomic<std::uint64_t> hits{0};
  std::size_t most_retired = 0;  // a reader preempted inside its guard holds them back
  auto reader = [&](std::uint64_t salt) {
    std::mt19937_64 rng{salt};
    while (!stop.load(std::memory_order_relaxed)) {
      const std::uint64_t k = rng() % n;
      const std::uint64_t off = rng() % page;
      auto g = reg.reader();
      auto t = g.translate(virt_addr{base + k * page + off}, page);
      if (t) {
        hits.fetch_add(1, std::memory_order_relaxed);
        if (t->addr.value() != ((k + 1) << 32) + off || t->len != page - off) bad.fetch_add(1);
      } else if (t.error() != errc::not_mapped) {
        bad.fetch_add(1);
      }
    }
  };
  std::thread r1{reader, 1};
  std::thread r2{reader, 2};
  for (int round = 0; round < 200; ++round) {
    for (std::uint64_t k = 0; k < n; k += 1 + (round % 3)) {
      auto r = reg.try_register(vr(base + k * page, page), phys_addr{(k + 1) << 32});
      if (!r) CHECK(r.error() == errc::overlaps);
    }
    for (std::uint64_t k = round % 2; k < n; k += 2) {
      auto r = reg.try_unregister(vr(base + k * page, page));
      if (!r) CHECK(r.error() == errc::not_found);
      const std::size_t held = reg.retired_snapshots();
      if (held > most_retired) most_retired = held;
    }
  }
  stop = true;
  r1.join();
  r2.join();
  CHECK(bad.load() == 0);
  (void)reg.try_reclaim();
  CHECK(reg.retired_snapshots() == 0);
  INFO("most snapshots retired at once " << most_retired);
  INFO("hits " << hits.load());
}

TEST_CASE("a live reader holds back its snapshot; overlapping readers never pile them up") {
  phyr::fault_state fs;
  phyr::mem_registry<phyr::cpu_phys, phyr::no_registry_hooks, phyr::fault_injecting_allocator> reg{
      {}, {}, phyr::fault_injecting_allocator{&fs}};
  const std::uint64_t page = 0x1000;
  REQUIRE(reg.try_register(vr(0x10'0000, page), phys_addr{0x1'0000'0000}));
  {
    auto rd = reg.reader();
    REQUIRE(reg.try_register(vr(0x20'0000, page), phys_addr{0x2'0000'0000}));
    REQUIRE(reg.try_unregister(vr(0x10'0000, page)));
    // The guard still sees the registrations as they were when it was taken.
    CHECK(rd.segments() == 1);
    CHECK(rd.translate(virt_addr{0x10'0000}, page));
    CHECK(rd.translate(virt_addr{0x20'0000}, page).error() == errc::not_mapped);
    // Its counter is not drained: both retired snapshots wait (one grace period has passed,
    // the one that would free them needs that counter at zero).
    CHECK(reg.retired_snapshots() == 2);
    CHECK(reg.try_reclaim() == 0);
    CHECK(reg.translate(virt_addr{0x10'0000}, page).error() == errc::not_mapped);
  }
  CHECK(reg.try_reclaim() == 2);
  CHECK(reg.retired_snapshots() == 0);
  CHECK(fs.live == 1);

  // Guards that always overlap (one is always alive, as with I/O always in flight), two at a
  // time, each living for two writes. New guards count in the other counter, so the old one
  // drains and every write or two ends a grace period: at most 4 snapshots wait at any time.
  // With one registry-wide reader count no write could free anything: all 100 piled up.
  std::optional<decltype(reg.reader())> a, b;
  a.emplace(reg.reader());
  std::size_t most = 0;
  for (int k = 0; k < 100; ++k) {
    (k % 2 == 0 ? b : a).reset();
    (k % 2 == 0 ? b : a).emplace(reg.reader());
    const std::uint64_t va = 0x100'0000 + static_cast<std::uint64_t>(k) * page;
    REQUIRE(reg.try_register(vr(va, page), phys_addr{0x3'0000'0000 + va}));
    most = std::max(most, reg.retired_snapshots());
  }
  CHECK(most <= 4);
  a.reset();
  b.reset();
  (void)reg.try_reclaim();
  CHECK(reg.retired_snapshots() == 0);
  CHECK(fs.live == 1);
}
