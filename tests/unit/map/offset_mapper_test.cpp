// offset_mapper: per-window translation, window/mask errors, coalesced owned output, fault
// injection at every allocation, foreign-unmap rejection.
#include <catch2/catch.hpp>
#include <cstdint>
#include <phyr/container/range_list.hpp>
#include <phyr/map/offset_mapper.hpp>
#include <random>
#include <utility>
#include <vector>

using namespace phyr;

namespace {

struct soc {};
constexpr auto to_dev = dma_direction::to_device;
using window = dma_window<soc>;

range_list<phys_range> list_of(std::initializer_list<phys_range> rs) {
  range_list<phys_range> l;
  for (const auto& r : rs) must(l.try_append(r));
  return l;
}

std::vector<dma_range<soc>> entries(const offset_mapping<soc>& m) { return {m.begin(), m.end()}; }

}  // namespace

TEST_CASE("each range is translated by the offset of the window that holds it") {
  offset_mapper<soc> m;
  must(m.try_add_window(phys_addr{0x8000'0000}, dma_addr<soc>{0x0}, 0x4000'0000));
  must(m.try_add_window(phys_addr{0x1'0000'0000}, dma_addr<soc>{0x4000'0000}, 0x1000'0000));
  const auto cpu = list_of({phys_range{phys_addr{0x8000'1000}, 0x2000, range_flags::pinned},
                            phys_range{phys_addr{0x1'0000'8000}, 0x100},
                            phys_range{phys_addr{0xbfff'f000}, 0x1000}});
  auto mp = m.try_map(cpu, to_dev);
  REQUIRE(mp);
  const std::vector<dma_range<soc>> expect = {
      dma_range<soc>{dma_addr<soc>{0x1000}, 0x2000, range_flags::pinned},
      dma_range<soc>{dma_addr<soc>{0x4000'8000}, 0x100},
      dma_range<soc>{dma_addr<soc>{0x3fff'f000}, 0x1000}};
  CHECK(entries(*mp) == expect);
  CHECK(mp->size() == 3);
  CHECK(mp->total_bytes() == cpu.total_bytes());
  CHECK(*m.translate(phys_addr{0x1'0000'0010}) == dma_addr<soc>{0x4000'0010});
  CHECK(m.translate(phys_addr{0x7fff'ffff}).error() == errc::not_mapped);
  must(m.try_unmap(std::move(*mp)));
}

TEST_CASE("outputs that become adjacent on the bus are coalesced, unless flags differ") {
  offset_mapper<soc> m;
  // Two CPU areas far apart that sit back to back on the bus.
  must(m.try_add_window(phys_addr{0x10'0000}, dma_addr<soc>{0x1'0000}, 0x1000));
  must(m.try_add_window(phys_addr{0x90'0000}, dma_addr<soc>{0x1'1000}, 0x1000));
  auto same = m.try_map(
      list_of({phys_range{phys_addr{0x10'0000}, 0x1000}, phys_range{phys_addr{0x90'0000}, 0x1000}}),
      to_dev);
  REQUIRE(same);
  CHECK(entries(*same) ==
        std::vector<dma_range<soc>>{dma_range<soc>{dma_addr<soc>{0x1'0000}, 0x2000}});
  auto differ = m.try_map(list_of({phys_range{phys_addr{0x10'0000}, 0x1000, range_flags::pinned},
                                   phys_range{phys_addr{0x90'0000}, 0x1000}}),
                          to_dev);
  REQUIRE(differ);
  CHECK(differ->size() == 2);
}

TEST_CASE("a range outside every window, across a window end, or above the mask is refused") {
  offset_mapper<soc> m;
  must(m.try_add_window(phys_addr{0x10000}, dma_addr<soc>{0xffff'0000}, 0x10000));
  // A neighbour with the very same offset: still a different window.
  must(m.try_add_window(phys_addr{0x20000}, dma_addr<soc>{0x1'0000'0000}, 0x10000));

  auto outside = m.try_map(
      list_of({phys_range{phys_addr{0x10000}, 0x100}, phys_range{phys_addr{0x40000}, 0x100}}),
      to_dev);
  CHECK(outside.error() == errc::not_mapped);
  auto below = m.try_map(list_of({phys_range{phys_addr{0xf000}, 0x100}}), to_dev);
  CHECK(below.error() == errc::not_mapped);
  auto straddle = m.try_map(list_of({phys_range{phys_addr{0x1f000}, 0x2000}}), to_dev);
  CHECK(straddle.error() == errc::straddles_boundary);

  must(m.try_set_dma_mask(32));
  auto ok = m.try_map(list_of({phys_range{phys_addr{0x1f000}, 0x1000}}), to_dev);  // ends at 2^32-1
  REQUIRE(ok);
  CHECK(ok->begin()->last().value() == 0xffff'ffff);
  auto high = m.try_map(list_of({phys_range{phys_addr{0x20000}, 0x10}}), to_dev);
  CHECK(high.error() == errc::not_addressable);
  CHECK(m.translate(phys_addr{0x20000}).error() == errc::not_addressable);
  CHECK(m.try_set_dma_mask(0).error() == errc::invalid_argument);
  CHECK(m.dma_mask() == 0xffff'ffff);

  offset_mapper<soc> none;  // no windows at all
  CHECK(none.try_map(list_of({phys_range{phys_addr{0}, 1}}), to_dev).error() == errc::not_mapped);
}

TEST_CASE("windows are validated: size, wrap-around, overlap in either space, capacity") {
  offset_mapper<soc, default_allocator, 2> m;
  CHECK(m.try_add_window(phys_addr{0}, dma_addr<soc>{0}, 0).error() == errc::invalid_argument);
  CHECK(m.try_add_window(phys_addr{~0ull - 0xfff}, dma_addr<soc>{0}, 0x2000).error() ==
        errc::overflow);
  CHECK(m.try_add_window(phys_addr{0}, dma_addr<soc>{~0ull - 0xfff}, 0x2000).error() ==
        errc::overflow);
  must(m.try_add_window(phys_addr{~0ull - 0xfff}, dma_addr<soc>{0x5000}, 0x1000));  // to 2^64
  must(m.try_add_window(phys_addr{0x1000}, dma_addr<soc>{0x1000}, 0x1000));
  CHECK(m.windows().size() == 2);
  CHECK(m.windows()[0].cpu_addr == phys_addr{0x1000});  // kept sorted
  offset_mapper<soc, default_allocator, 2> n;
  must(n.try_add_window(phys_addr{0x1000}, dma_addr<soc>{0x1000}, 0x1000));
  CHECK(n.try_add_window(phys_addr{0x1fff}, dma_addr<soc>{0x9000}, 0x10).error() == errc::overlaps);
  CHECK(n.try_add_window(phys_addr{0x9000}, dma_addr<soc>{0x0}, 0x1001).error() == errc::overlaps);
  must(n.try_add_window(phys_addr{0x2000}, dma_addr<soc>{0x2000}, 0x1000));
  CHECK(n.try_add_window(phys_addr{0x8000}, dma_addr<soc>{0x8000}, 0x1000).error() ==
        errc::exhausted);
  CHECK(n.windows().size() == 2);

  const window ws[] = {{phys_addr{0x1000}, dma_addr<soc>{0}, 0x1000},
                       {phys_addr{0x1800}, dma_addr<soc>{0x8000}, 0x1000}};
  CHECK(offset_mapper<soc>::create(ws).error() == errc::overlaps);
  CHECK(offset_mapper<soc>::create(std::span<const window>{ws, 1}, 99).error() ==
        errc::invalid_argument);
  auto c = must(offset_mapper<soc>::create(std::span<const window>{ws, 1}, 32));
  CHECK(c.windows().size() == 1);
  CHECK(c.dma_mask() == 0xffff'ffff);
}

TEST_CASE("offset map frees everything when any allocation inside it fails") {
  offset_mapper<soc> probe;
  must(probe.try_add_window(phys_addr{0}, dma_addr<soc>{0x1'0000'0000}, 1ull << 40));
  range_list<phys_range> cpu;
  for (std::uint64_t i = 0; i < 2000; ++i)
    must(cpu.try_append(phys_range{phys_addr{i * 0x3000}, 0x1000}));  // 2000 entries, 8 segments
  bool succeeded = false;
  for (std::uint64_t k = 1; k < 100 && !succeeded; ++k) {
    fault_state fs{.fail_at = k};
    offset_mapper<soc, fault_injecting_allocator> m{fault_injecting_allocator{&fs}};
    must(m.try_add_window(phys_addr{0}, dma_addr<soc>{0x1'0000'0000}, 1ull << 40));
    auto mp = m.try_map(cpu, to_dev);
    if (mp) {
      succeeded = true;
      CHECK(mp->size() == 2000);
      CHECK(fs.failures == 0);  // the k-th allocation was never reached
      CHECK(fs.live > 0);
      must(m.try_unmap(std::move(*mp)));
      CHECK(fs.live == 0);
      break;
    }
    CHECK(mp.error() == errc::out_of_memory);
    CHECK(fs.live == 0);
    CHECK(cpu.size() == 2000);
  }
  CHECK(succeeded);
}

TEST_CASE("offset unmap rejects foreign and already-unmapped mappings and frees on unmap") {
  fault_state fs;
  offset_mapper<soc, fault_injecting_allocator> a{fault_injecting_allocator{&fs}};
  offset_mapper<soc, fault_injecting_allocator> b{fault_injecting_allocator{&fs}};
  must(a.try_add_window(phys_addr{0}, dma_addr<soc>{0}, 1ull << 32));
  must(b.try_add_window(phys_addr{0}, dma_addr<soc>{0}, 1ull << 32));
  range_list<phys_range> cpu;
  for (std::uint64_t i = 0; i < 600; ++i)
    must(cpu.try_append(phys_range{phys_addr{i * 0x2000}, 0x1000}));
  auto mp = must(a.try_map(cpu, to_dev));
  CHECK(fs.live > 0);
  CHECK(b.try_unmap(std::move(mp)).error() == errc::foreign_mapping);
  CHECK(mp.mapped());
  CHECK(mp.size() == 600);
  must(a.try_unmap(std::move(mp)));
  CHECK(fs.live == 0);
  CHECK(a.try_unmap(std::move(mp)).error() == errc::foreign_mapping);
  offset_mapping<soc, fault_injecting_allocator> moved_to{must(a.try_map(cpu, to_dev))};
  {
    auto dropped = must(a.try_map(cpu, to_dev));  // dropped: its list is freed anyway
  }
  must(a.try_unmap(std::move(moved_to)));
  CHECK(fs.live == 0);
}

TEST_CASE("offset mapping of random lists matches a plain model") {
  std::mt19937_64 rng(0x0ff5e7);
  int mapped = 0, refused = 0;
  for (int iter = 0; iter < 200; ++iter) {
    offset_mapper<soc> m;
    std::vector<window> ws;
    std::uint64_t cpu = 0, dma = 0x1000'0000;
    for (int w = 0; w < 4; ++w) {
      cpu += (rng() % 16) << 20;
      const std::uint64_t size = (1 + rng() % 16) << 20;
      ws.push_back({phys_addr{cpu}, dma_addr<soc>{dma}, size});
      must(m.try_add_window(phys_addr{cpu}, dma_addr<soc>{dma}, size));
      cpu += size;
      dma += size + ((rng() % 2) << 20);  // sometimes bus-contiguous with the previous one
    }
    const unsigned bits = (rng() % 4 == 0) ? 28 : 64;
    must(m.try_set_dma_mask(bits));
    range_list<phys_range> l;
    const std::size_t n = 1 + rng() % 40;
    for (std::size_t i = 0; i < n; ++i) {
      const window& w = ws[rng() % ws.size()];
      std::uint64_t a = w.cpu_addr.value() + rng() % w.len;
      if (rng() % 64 == 0) a = rng() % (cpu + (1 << 20));  // anywhere: maybe outside
      const std::uint64_t len = 1 + rng() % 0x8000;        // may run past the window's end
      must(l.try_append(phys_range{phys_addr{a}, len}));
    }
    // Model: translate entry by entry, merge bus-adjacent results.
    errc err{};
    std::vector<std::pair<std::uint64_t, std::uint64_t>> model;
    for (const phys_range& r : l) {
      const window* hit = nullptr;
      for (const auto& w : ws)
        if (r.addr().value() >= w.cpu_addr.value() && r.addr().value() <= w.cpu_last()) hit = &w;
      if (hit == nullptr) {
        err = errc::not_mapped;
        break;
      }
      if (r.last().value() > hit->cpu_last()) {
        err = errc::straddles_boundary;
        break;
      }
      const std::uint64_t d = hit->device_addr.value() + (r.addr().value() - hit->cpu_addr.value());
      if (d + r.len() - 1 > *dma_mask_from_bits(bits)) {
        err = errc::not_addressable;
        break;
      }
      if (!model.empty() && model.back().first + model.back().second == d)
        model.back().second += r.len();
      else
        model.emplace_back(d, r.len());
    }
    auto mp = m.try_map(l, to_dev);
    if (err != errc{}) {
      REQUIRE_FALSE(mp);
      CHECK(mp.error() == err);
      ++refused;
      continue;
    }
    REQUIRE(mp);
    std::vector<std::pair<std::uint64_t, std::uint64_t>> got;
    for (const auto& r : *mp) got.emplace_back(r.addr().value(), r.len());
    CHECK(got == model);
    must(m.try_unmap(std::move(*mp)));
    ++mapped;
  }
  CHECK(mapped >= 20);  // the seed exercises both outcomes
  CHECK(refused >= 20);
}
