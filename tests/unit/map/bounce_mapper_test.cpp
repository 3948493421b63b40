// map/bounce_mapper.hpp: what bounces and what passes through, byte-exact copies in every
// direction through a fake physical memory, pool exhaustion, sub-range sync, cache hooks, and
// fault injection at every allocation.
#include <catch2/catch.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <phyr/container/range_list.hpp>
#include <phyr/core/allocator.hpp>
#include <phyr/map/bounce_mapper.hpp>
#include <phyr/map/identity_mapper.hpp>
#include <phyr/map/offset_mapper.hpp>
#include <utility>
#include <vector>

#include "support/phys_ranges.hpp"

namespace {
using namespace phyr_test;
using phyr::dma_direction;
struct dev32 {};

// The byte at position `k` of the pattern of `seed` (what fill and device_writes write).
std::byte pattern(std::uint8_t seed, std::uint64_t k) {
  return std::byte(static_cast<std::uint8_t>(seed + k * 7));
}

// Fake physical memory: windows of host bytes standing in for RAM at given physical
// addresses. A model, not real memory: it only lets the tests see every copy byte by byte.
class fake_memory {
 public:
  void add(std::uint64_t base, std::size_t len) { w_.push_back({base, std::vector<std::byte>(len)}); }
  [[nodiscard]] std::byte* find(std::uint64_t a, std::uint64_t n) {
    for (auto& w : w_)
      if (a >= w.base && a - w.base <= w.bytes.size() && n <= w.bytes.size() - (a - w.base))
        return w.bytes.data() + (a - w.base);
    return nullptr;
  }
  void fill(std::uint64_t a, std::uint64_t n, std::uint8_t seed) {
    std::byte* p = find(a, n);
    REQUIRE(p != nullptr);
    for (std::uint64_t i = 0; i < n; ++i) p[i] = pattern(seed, i);
  }
  [[nodiscard]] bool holds(std::uint64_t a, std::uint64_t n, std::uint8_t seed) {
    const std::byte* p = find(a, n);
    if (p == nullptr) return false;
    for (std::uint64_t i = 0; i < n; ++i)
      if (p[i] != pattern(seed, i)) return false;
    return true;
  }

 private:
  struct window {
    std::uint64_t base;
    std::vector<std::byte> bytes;
  };
  std::vector<window> w_;
};

// The test accessor: where the CPU "sees" a physical range of the fake memory.
struct fake_accessor {
  fake_memory* mem = nullptr;
  [[nodiscard]] phyr::result<std::byte*> try_cpu_pointer(const phys_range& r) const noexcept {
    std::byte* p = mem->find(r.addr().value(), r.len());
    if (p == nullptr) return errc::not_mapped;
    return p;
  }
};
static_assert(phyr::phys_memory_accessor<fake_accessor>);

using fault_alloc = phyr::fault_injecting_allocator;
using inner_t = phyr::identity_mapper<dev32>;
using pool_t = phyr::bounce_pool<fake_accessor, fault_alloc>;
using mapper_t = phyr::bounce_mapper<inner_t, fake_accessor, phyr::coherent_cache, fault_alloc>;

constexpr std::uint64_t ram_base = 0xffff0000;  // 64 KiB below 4 GiB, 64 KiB above
constexpr std::uint64_t pool_base = 0x01000000;

// Visits the bytes of one I/O in order, `visit(byte, position in the I/O)`: through the
// caller's list, or through a mapping (on this identity-mapped bus its DMA addresses are
// fake-memory addresses too).
template <class Ranges, class F>
void for_each_io_byte(fake_memory& mem, const Ranges& ranges, F visit) {
  std::uint64_t io = 0;
  for (const auto r : ranges) {
    std::byte* p = mem.find(r.addr().value(), r.len());
    REQUIRE(p != nullptr);
    for (std::uint64_t i = 0; i < r.len(); ++i) visit(p[i], io + i);
    io += r.len();
  }
}

// The "device": DMA ranges of an identity-mapped bus are physical addresses, so a device write
// lands in the fake memory at those addresses (RAM for pass-through pieces, the pool for
// bounced ones, which the test reaches through the pool's own accessor).
template <class Mp>
void device_writes(const Mp& mp, fake_memory& mem, std::uint8_t seed) {
  for_each_io_byte(mem, mp, [&](std::byte& b, std::uint64_t k) { b = pattern(seed, k); });
}

// Whether the caller's buffer holds, in list order, what device_writes(..., seed) wrote.
template <class L>
bool holds_device_write(fake_memory& mem, const L& list, std::uint8_t seed) {
  bool same = true;
  for_each_io_byte(mem, list,
                   [&](std::byte b, std::uint64_t k) { same = same && b == pattern(seed, k); });
  return same;
}

// The I/O's bytes in order as the caller's list names them, and as the device sees them.
template <class L>
std::vector<std::byte> cpu_bytes(fake_memory& mem, const L& list) {
  std::vector<std::byte> out;
  for_each_io_byte(mem, list, [&](std::byte b, std::uint64_t) { out.push_back(b); });
  return out;
}

fake_memory make_memory(std::uint64_t nslots) {
  fake_memory m;
  m.add(ram_base, 0x20000);
  m.add(pool_base, nslots * phyr::page_size);
  return m;
}

pool_t make_pool(fake_memory& mem, std::uint64_t nslots, phyr::fault_state& fs) {
  phyr::range_list<phys_range> pool_mem;
  phyr::must(pool_mem.try_append(pr(pool_base, nslots * phyr::page_size)));
  return phyr::must(pool_t::create(pool_mem, fake_accessor{&mem}, phyr::page_size, fault_alloc{&fs}));
}

// The same pool on the default allocator, for the tests that build their mapper by hand.
phyr::bounce_pool<fake_accessor> plain_pool(fake_memory& mem, std::uint64_t nslots) {
  return phyr::must(phyr::bounce_pool<fake_accessor>::create(
      list_of({pr(pool_base, nslots * phyr::page_size)}), fake_accessor{&mem}));
}

// The whole setting: RAM straddling 4 GiB, a pool low in memory, a 32-bit identity-mapped bus.
struct rig {
  std::uint64_t slots;
  fake_memory mem;
  phyr::fault_state fs;
  inner_t inner;
  pool_t pool;
  mapper_t bm;

  explicit rig(std::uint64_t nslots = 8, phyr::dma_constraints c = {.dma_mask = 0xffffffff})
      : slots(nslots),
        mem(make_memory(nslots)),
        inner(phyr::must(inner_t::create(32))),
        pool(make_pool(mem, nslots, fs)),
        bm(phyr::must(mapper_t::create(inner, pool, fake_accessor{&mem}, c))) {}

  // The caller's buffer `r`, holding the pattern of `seed` (what the caller had before the I/O).
  phyr::range_list<phys_range> buffer(phys_range r, std::uint8_t seed) {
    mem.fill(r.addr().value(), r.len(), seed);
    return list_of({r});
  }
  // A from_device mapping of `buf` after the device wrote the pattern of `seed` into it.
  mapper_t::mapping device_wrote(const phyr::range_list<phys_range>& buf, std::uint8_t seed) {
    auto mp = phyr::must(bm.try_map(buf, dma_direction::from_device));
    device_writes(mp, mem, seed);
    return mp;
  }
};

}  // namespace

TEST_CASE("bounce_mapper is a dma_mapper whose mappings need sync; identity's never do") {
  STATIC_REQUIRE(phyr::dma_mapper<mapper_t>);
  STATIC_REQUIRE(phyr::dma_mapper<phyr::bounce_mapper<inner_t>>);
  STATIC_REQUIRE(phyr::needs_dma_sync<mapper_t>);
  STATIC_REQUIRE_FALSE(phyr::needs_dma_sync<inner_t>);
  STATIC_REQUIRE_FALSE(phyr::needs_dma_sync<phyr::offset_mapper<dev32>>);
}

TEST_CASE("a 32-bit device maps a buffer straddling 4 GiB: low pages pass through, high pages "
          "bounce, and after a from_device transfer and sync the caller's buffer holds the data") {
  rig t;
  // 4 pages below 4 GiB, 4 above, physically contiguous.
  auto buf = t.buffer(pr(0xffffc000, 0x8000), 1);

  auto mp = t.bm.try_map(buf, dma_direction::from_device);
  REQUIRE(mp);
  std::vector<phyr::dma_range<dev32>> dma(mp->begin(), mp->end());
  REQUIRE(dma.size() == 2);
  CHECK(dma[0].addr().value() == 0xffffc000);  // untouched: same address, no copy
  CHECK(dma[0].len() == 0x4000);
  CHECK(dma[1].addr().value() == pool_base);  // four pool slots, adjacent, one range
  CHECK(dma[1].len() == 0x4000);
  CHECK(mp->bounced_bytes() == 0x4000);
  CHECK(t.pool.free_slots() == t.slots - 4);

  // The device writes every byte of the I/O: the low half straight into RAM, the high half
  // into the pool (seen through the pool's own accessor).
  device_writes(*mp, t.mem, 9);
  std::byte* slot = *t.pool.accessor().try_cpu_pointer(pr(pool_base, 0x4000));
  CHECK(slot[0] == std::byte(static_cast<std::uint8_t>(9 + 0x4000 * 7)));
  CHECK(t.mem.holds(0xffffc000, 0x4000, 9));
  CHECK(t.mem.holds(0x100000000, 0x4000, 1 + 0));  // not yet: the caller's high pages are old
  CHECK_FALSE(t.mem.holds(0xffffc000, 0x8000, 9));

  REQUIRE(t.bm.try_sync_for_cpu(*mp));
  CHECK(t.mem.holds(0xffffc000, 0x8000, 9));  // the whole buffer, byte for byte
  REQUIRE(t.bm.try_unmap(std::move(*mp)));
  CHECK(t.pool.free_slots() == t.slots);
  CHECK(t.pool.stats().slots_out == 0);
}

TEST_CASE("bounce round trips in every direction, with a failure injected at every allocation") {
  for (const dma_direction dir :
       {dma_direction::to_device, dma_direction::from_device, dma_direction::bidirectional}) {
    INFO(phyr::to_string(dir));
    bool succeeded = false;
    int failed = 0;
    for (std::uint64_t k = 1; !succeeded && k < 64; ++k) {
      INFO("allocation " << k);
      rig t;
      // Three pieces: one low, one high and contiguous with nothing, one high after a gap.
      phyr::range_list<phys_range> buf;
      phyr::must(buf.try_append(pr(0xffffe000, 0x1000)));
      phyr::must(buf.try_append(pr(0x100001000, 0x1800)));
      phyr::must(buf.try_append(pr(0x100004200, 0x900)));
      t.mem.fill(ram_base, 0x20000, 3);
      const std::int64_t live = t.fs.live;
      t.fs.fail_at = t.fs.calls + k;

      auto mp = t.bm.try_map(buf, dir);
      if (!mp) {
        CHECK(mp.error() == errc::out_of_memory);
        ++failed;
        CHECK(t.fs.live == live);                     // leaks nothing
        CHECK(t.pool.free_slots() == t.slots);       // holds no slot
        CHECK(t.mem.holds(ram_base, 0x20000, 3));     // touched no byte
        continue;
      }
      succeeded = true;
      t.fs.fail_at = 0;
      CHECK(mp->bounced_bytes() == 0x1800 + 0x900);
      CHECK(t.pool.free_slots() == t.slots - 3);

      // Map copied in, whatever the direction: the device reads the caller's bytes.
      CHECK(cpu_bytes(t.mem, buf) == cpu_bytes(t.mem, *mp));

      if (dir != dma_direction::from_device) {
        // The CPU changes its buffer; sync_for_device carries it to the bounce slots.
        t.mem.fill(0x100001000, 0x1800, 77);
        REQUIRE(t.bm.try_sync_for_device(*mp));
        const std::byte* s = *t.pool.accessor().try_cpu_pointer(pr(pool_base, 0x1800));
        CHECK(std::memcmp(s, t.mem.find(0x100001000, 0x1800), 0x1800) == 0);
      } else {
        // from_device: sync_for_device copies nothing to the device.
        const std::uint64_t copied = t.pool.stats().bytes_copied;
        REQUIRE(t.bm.try_sync_for_device(*mp));
        CHECK(t.pool.stats().bytes_copied == copied);
      }

      device_writes(*mp, t.mem, 200);
      REQUIRE(t.bm.try_unmap(std::move(*mp)));
      CHECK(t.pool.free_slots() == t.slots);
      // Only the high pieces went through the pool; the low page was written in place.
      const bool back = holds_device_write(t.mem, buf, 200);
      if (dir == dma_direction::to_device) {
        CHECK_FALSE(back);  // unmap copies nothing back for to_device
        CHECK(t.mem.holds(0x100001000, 0x1800, 77));
      } else {
        CHECK(back);
      }
      CHECK(t.fs.live == live);
    }
    CHECK(succeeded);
    CHECK(failed >= 2);  // the device list and the bounce records, at least
  }
}

TEST_CASE("an exhausted pool fails the map with bounce_exhausted and holds nothing") {
  rig t{2};
  phyr::range_list<phys_range> three, two;
  phyr::must(three.try_append(pr(0x100000000, 0x3000)));
  phyr::must(two.try_append(pr(0x100004000, 0x2000)));
  const std::int64_t live = t.fs.live;
  auto a = t.bm.try_map(three, dma_direction::to_device);
  REQUIRE_FALSE(a);
  CHECK(a.error() == errc::bounce_exhausted);
  CHECK(t.pool.free_slots() == 2);
  CHECK(t.fs.live == live);
  CHECK(t.pool.stats().exhausted == 1);
  auto b = t.bm.try_map(two, dma_direction::to_device);
  REQUIRE(b);
  CHECK(t.bm.try_map(two, dma_direction::to_device).error() == errc::bounce_exhausted);
  REQUIRE(t.bm.try_unmap(std::move(*b)));
  CHECK(t.bm.try_map(two, dma_direction::to_device).has_value());  // dropped at once: RAII
  CHECK(t.pool.free_slots() == 2);
}

TEST_CASE("a list the device reaches as it is passes through without touching the pool") {
  rig t;
  phyr::range_list<phys_range> low;
  phyr::must(low.try_append(pr(0xffff0000, 0x3000)));
  const std::int64_t live = t.fs.live;
  auto mp = t.bm.try_map(low, dma_direction::bidirectional);
  REQUIRE(mp);
  CHECK(mp->bounced_bytes() == 0);
  CHECK(t.fs.live == live);  // no allocation at all over an identity mapper
  CHECK((*mp->begin()).addr().value() == 0xffff0000);
  REQUIRE(t.bm.try_sync_for_cpu(*mp));
  REQUIRE(t.bm.try_sync_for_device(*mp));
  CHECK(t.pool.stats().bytes_copied == 0);
  REQUIRE(t.bm.try_unmap(std::move(*mp)));
}

TEST_CASE("sync takes a byte sub-range of the mapping and rejects one past its end") {
  rig t;
  auto buf = t.buffer(pr(0x100000000, 0x3000), 5);
  auto mp = t.device_wrote(buf, 50);
  const std::uint64_t before = t.pool.stats().bytes_copied;
  REQUIRE(t.bm.try_sync_for_cpu(mp, {.offset = 0x1800, .len = 0x1000}));
  CHECK(t.pool.stats().bytes_copied - before == 0x1000);
  // Bytes outside the sub-range are still the caller's old ones.
  std::byte* p = t.mem.find(0x100000000, 0x3000);
  CHECK(p[0x17ff] == pattern(5, 0x17ff));
  CHECK(p[0x1800] == pattern(50, 0x1800));
  CHECK(p[0x27ff] == pattern(50, 0x27ff));
  CHECK(p[0x2800] == pattern(5, 0x2800));

  CHECK(t.bm.try_sync_for_cpu(mp, {.offset = 0x3000, .len = 1}).error() == errc::out_of_range);
  CHECK(t.bm.try_sync_for_cpu(mp, {.offset = 0x2000, .len = 0x1001}).error() ==
        errc::out_of_range);
  CHECK(t.bm.try_sync_for_device(mp, {.offset = 0x3001}).error() == errc::out_of_range);
  CHECK(t.bm.try_sync_for_cpu(mp, {.offset = 0x3000, .len = 0}).has_value());

  // Another mapper's mapping, and an unmapped one, are foreign.
  auto other = mapper_t::create(t.inner, t.pool, fake_accessor{&t.mem},
                                {.dma_mask = 0xffffffff});
  REQUIRE(other);
  CHECK(other->try_sync_for_cpu(mp).error() == errc::foreign_mapping);
  CHECK(other->try_unmap(std::move(mp)).error() == errc::foreign_mapping);
  CHECK(mp.mapped());
  REQUIRE(t.bm.try_unmap(std::move(mp)));
  CHECK(t.bm.try_sync_for_cpu(mp).error() == errc::foreign_mapping);
  CHECK(t.bm.try_unmap(std::move(mp)).error() == errc::foreign_mapping);
}

TEST_CASE("misaligned starts and excluded windows bounce; the reachable rest passes through") {
  phyr::dma_constraints c{.alignment = 512, .dma_mask = 0xffffffff};
  REQUIRE(c.excluded.try_add({0xffff4000, 0x1000}));
  rig t{8, c};
  phyr::range_list<phys_range> buf;
  phyr::must(buf.try_append(pr(0xffff0100, 0x200)));  // misaligned: bounces whole
  phyr::must(buf.try_append(pr(0xffff3000, 0x3000)));  // a page before the window, in, after
  t.mem.fill(ram_base, 0x10000, 11);
  auto mp = t.bm.try_map(buf, dma_direction::to_device);
  REQUIRE(mp);
  std::vector<phyr::dma_range<dev32>> dma(mp->begin(), mp->end());
  REQUIRE(dma.size() == 4);
  CHECK(dma[0].addr().value() == pool_base);
  CHECK(dma[0].len() == 0x200);
  CHECK(dma[1].addr().value() == 0xffff3000);
  CHECK(dma[1].len() == 0x1000);
  CHECK(dma[2].addr().value() == pool_base + phyr::page_size);  // a fresh slot, aligned
  CHECK(dma[2].len() == 0x1000);
  CHECK(dma[3].addr().value() == 0xffff5000);
  CHECK(dma[3].len() == 0x1000);
  CHECK(mp->bounced_bytes() == 0x1200);
  CHECK(cpu_bytes(t.mem, buf) == cpu_bytes(t.mem, *mp));
}

TEST_CASE("with a virtual boundary a violating I/O is packed whole into consecutive slots") {
  rig t{8, {.virt_boundary_mask = 0xfff, .dma_mask = 0xffffffff}};
  phyr::range_list<phys_range> buf;  // reachable, but a mid-page gap: a PRP list cannot say it
  phyr::must(buf.try_append(pr(0xffff0000, 0x1800)));
  phyr::must(buf.try_append(pr(0xffff3000, 0x1000)));
  t.mem.fill(ram_base, 0x10000, 21);
  auto mp = t.bm.try_map(buf, dma_direction::bidirectional);
  REQUIRE(mp);
  std::vector<phyr::dma_range<dev32>> dma(mp->begin(), mp->end());
  REQUIRE(dma.size() == 1);  // one contiguous piece of the pool: no gap left
  CHECK(dma[0].addr().value() == pool_base);
  CHECK(dma[0].len() == 0x2800);
  CHECK(cpu_bytes(t.mem, buf) == cpu_bytes(t.mem, *mp));  // the caller's bytes, packed
  device_writes(*mp, t.mem, 99);
  REQUIRE(t.bm.try_unmap(std::move(*mp)));
  CHECK(holds_device_write(t.mem, buf, 99));

  // Page-aligned gaps are fine: nothing bounces.
  phyr::range_list<phys_range> fine;
  phyr::must(fine.try_append(pr(0xffff0800, 0x800)));
  phyr::must(fine.try_append(pr(0xffff3000, 0x1000)));
  auto f = t.bm.try_map(fine, dma_direction::to_device);
  REQUIRE(f);
  CHECK(f->bounced_bytes() == 0);
}

TEST_CASE("dropping a live bounce mapping releases it as try_unmap would, copy back included") {
  rig t;
  auto buf = t.buffer(pr(0x100000000, 0x1000), 1);
  {
    auto mp = t.device_wrote(buf, 42);
    auto moved = std::move(mp);  // moves keep one owner
    CHECK_FALSE(mp.mapped());
    CHECK(moved.mapped());
  }
  CHECK(t.pool.free_slots() == t.slots);
  CHECK(t.mem.holds(0x100000000, 0x1000, 42));
}

namespace {
struct counting_cache {
  static constexpr bool coherent = false;
  static inline int device_calls = 0, cpu_calls = 0;
  static inline std::uint64_t device_bytes = 0, cpu_bytes = 0;
  static void for_device(const phys_range& r, dma_direction) noexcept {
    ++device_calls;
    device_bytes += r.len();
  }
  static void for_cpu(const phys_range& r, dma_direction) noexcept {
    ++cpu_calls;
    cpu_bytes += r.len();
  }
};
}  // namespace

TEST_CASE("a non-coherent cache policy is called on every range the device sees") {
  STATIC_REQUIRE(phyr::cache_policy<counting_cache>);
  fake_memory mem = make_memory(4);
  auto pool = plain_pool(mem, 4);
  inner_t inner = phyr::must(inner_t::create(32));
  using bm_t = phyr::bounce_mapper<inner_t, fake_accessor, counting_cache>;
  auto bm = bm_t::create(inner, pool, fake_accessor{&mem}, {.dma_mask = 0xffffffff});
  REQUIRE(bm);
  phyr::range_list<phys_range> buf;
  phyr::must(buf.try_append(pr(0xfffff000, 0x2000)));  // one page low, one high
  auto mp = bm->try_map(buf, dma_direction::bidirectional);
  REQUIRE(mp);
  CHECK(counting_cache::device_calls == 2);
  CHECK(counting_cache::device_bytes == 0x2000);
  REQUIRE(bm->try_sync_for_cpu(*mp, {.offset = 0x800, .len = 0x1000}));
  CHECK(counting_cache::cpu_calls == 2);
  CHECK(counting_cache::cpu_bytes == 0x1000);
  REQUIRE(bm->try_unmap(std::move(*mp)));
  CHECK(counting_cache::cpu_calls == 4);
}

TEST_CASE("bounce_pool::create and bounce_mapper::create reject what cannot work") {
  fake_memory mem;
  mem.add(pool_base, 0x4000);
  phyr::fault_state fs;
  phyr::range_list<phys_range> ok_mem, odd, unmapped;
  phyr::must(ok_mem.try_append(pr(pool_base, 0x4000)));
  phyr::must(odd.try_append(pr(pool_base + 0x800, 0x1000)));
  phyr::must(unmapped.try_append(pr(0x2000000, 0x1000)));
  CHECK(pool_t::create(odd, fake_accessor{&mem}, 0x1000, fault_alloc{&fs}).error() ==
        errc::invalid_argument);
  CHECK(pool_t::create(ok_mem, fake_accessor{&mem}, 3000, fault_alloc{&fs}).error() ==
        errc::invalid_argument);
  CHECK(pool_t::create(unmapped, fake_accessor{&mem}, 0x1000, fault_alloc{&fs}).error() ==
        errc::not_mapped);
  for (std::uint64_t k = 1; k <= 2; ++k) {
    fs.fail_at = fs.calls + k;
    CHECK(pool_t::create(ok_mem, fake_accessor{&mem}, 0x1000, fault_alloc{&fs}).error() ==
          errc::out_of_memory);
    CHECK(fs.live == 0);
  }
  fs.fail_at = 0;
  auto pool = pool_t::create(ok_mem, fake_accessor{&mem}, 0x1000, fault_alloc{&fs});
  REQUIRE(pool);
  CHECK(pool->capacity() == 4);
  inner_t inner;
  // A pool the device cannot reach would not help; slots smaller than the alignment neither.
  CHECK(mapper_t::create(inner, *pool, fake_accessor{&mem}, {.dma_mask = 0xffffff}).error() ==
        errc::not_addressable);
  CHECK(mapper_t::create(inner, *pool, fake_accessor{&mem}, {.alignment = 0x2000}).error() ==
        errc::invalid_argument);
  CHECK(mapper_t::create(inner, *pool, fake_accessor{&mem}, {.max_segment_size = 0}).error() ==
        errc::invalid_argument);
  CHECK(mapper_t::create(inner, *pool, fake_accessor{&mem}, {.virt_boundary_mask = 0x1fff})
            .error() == errc::invalid_argument);
}

TEST_CASE("bounce_mapper decorates an offset mapper too: bounced pieces get the bus offset") {
  fake_memory mem = make_memory(4);
  auto pool = plain_pool(mem, 4);
  phyr::offset_mapper<dev32> off;
  phyr::must(off.try_add_window(phys_addr{0}, phyr::dma_addr<dev32>{0x80000000}, 1ull << 33));
  using bm_t = phyr::bounce_mapper<phyr::offset_mapper<dev32>, fake_accessor>;
  auto bm = bm_t::create(off, pool, fake_accessor{&mem}, {.dma_mask = 0xffffffff});
  REQUIRE(bm);
  phyr::range_list<phys_range> buf;
  phyr::must(buf.try_append(pr(0x100000000, 0x1000)));
  auto mp = bm->try_map(buf, dma_direction::to_device);
  REQUIRE(mp);
  REQUIRE(mp->size() == 1);
  CHECK((*mp->begin()).addr().value() == 0x80000000 + pool_base);
  REQUIRE(bm->try_unmap(std::move(*mp)));
}
