// sg_bridge_mapper: a legacy map_sg callback run on a temporary scatterlist, its result
// converted back; map_sg/unmap_sg pairing under every failure.
#include <catch2/catch.hpp>
#include <cstdint>
#include <phyr/compat/scatterlist.hpp>
#include <phyr/container/range_list.hpp>
#include <phyr/map/sg_bridge_mapper.hpp>
#include <utility>
#include <vector>

using namespace phyr;
using compat::scatterlist;

namespace {

struct legacy {};
constexpr auto to_dev = dma_direction::to_device;

// What the legacy layer saw, for checking pairing and arguments.
struct calls {
  int maps = 0;
  int unmaps = 0;
  int last_nents = -1;
  int unmap_nents = -1;
  dma_direction last_dir = dma_direction::bidirectional;
  std::vector<std::pair<std::uint64_t, unsigned>> seen;  // phys, length as handed to map_sg
};

// dma-direct: identity, honouring a mask.
struct direct {
  calls* c;
  std::uint64_t mask = ~std::uint64_t{0};
  int operator()(scatterlist* sgl, int nents, dma_direction d) const noexcept {
    ++c->maps;
    c->last_nents = nents;
    c->last_dir = d;
    c->seen.clear();
    compat::for_each_sg(sgl, static_cast<unsigned>(nents), [&](scatterlist& sg, unsigned) {
      c->seen.emplace_back(compat::sg_phys(&sg), sg.length);
    });
    return compat::dma_direct_map_sg(sgl, nents, mask);
  }
};
struct count_unmap {
  calls* c;
  void operator()(scatterlist*, int nents, dma_direction) const noexcept {
    ++c->unmaps;
    c->unmap_nents = nents;
  }
};

// An IOMMU that maps everything into one contiguous IOVA block: returns 1.
struct linear_iommu {
  calls* c;
  std::uint64_t iova;
  int operator()(scatterlist* sgl, int nents, dma_direction) const noexcept {
    ++c->maps;
    std::uint64_t total = 0;
    compat::for_each_sg(sgl, static_cast<unsigned>(nents),
                        [&](scatterlist& sg, unsigned) { total += sg.length; });
    sgl->dma_address = iova;
    sgl->dma_length = static_cast<unsigned>(total);
    if (nents > 1) compat::sg_next(sgl)->dma_length = 0;  // the kernel's end-of-mapped marker
    return 1;
  }
};

// Returns a fixed code.
struct fixed_rc {
  calls* c;
  int rc;
  int operator()(scatterlist* sgl, int nents, dma_direction) const noexcept {
    ++c->maps;
    (void)compat::dma_direct_map_sg(sgl, nents, ~0ull);
    return rc;
  }
};

range_list<phys_range> scattered(std::size_t n, std::uint64_t base = 0x100000) {
  range_list<phys_range> l;
  for (std::size_t i = 0; i < n; ++i)
    must(l.try_append(phys_range{phys_addr{base + i * 0x3000 + 0x10}, 0x1800}));
  return l;
}

}  // namespace

TEST_CASE("bridge over dma-direct returns the CPU ranges as DMA ranges") {
  calls c;
  sg_bridge_mapper<legacy, direct, count_unmap> m{direct{&c}, count_unmap{&c}};
  const auto cpu = scattered(300);  // 300 entries: three chained arrays
  auto mp = m.try_map(cpu, dma_direction::from_device);
  REQUIRE(mp);
  CHECK(c.maps == 1);
  CHECK(c.last_nents == 300);
  CHECK(c.last_dir == dma_direction::from_device);
  CHECK(mp->table().orig_nents == 300);
  CHECK(mp->table().nents == 300);
  REQUIRE(mp->size() == 300);
  auto it = cpu.begin();
  for (const dma_range<legacy>& r : *mp) {
    CHECK(r.addr().value() == it->addr().value());
    CHECK(r.len() == it->len());
    ++it;
  }
  CHECK(mp->total_bytes() == cpu.total_bytes());
  must(m.try_unmap(std::move(*mp)));
  CHECK(c.unmaps == 1);
  CHECK(c.unmap_nents == 300);
}

TEST_CASE("bridge cuts ranges longer than max_segment and the output merges them back") {
  calls c;
  sg_bridge_mapper<legacy, direct, count_unmap> m{direct{&c}, count_unmap{&c}, {}, 0x10000};
  range_list<phys_range> cpu;
  must(cpu.try_append(phys_range{phys_addr{0x200000 + 0x80}, 0x25000}));
  auto mp = m.try_map(cpu, to_dev);
  REQUIRE(mp);
  const std::vector<std::pair<std::uint64_t, unsigned>> handed = {
      {0x200080, 0x10000}, {0x210080, 0x10000}, {0x220080, 0x5000}};
  CHECK(c.seen == handed);
  CHECK(mp->table().orig_nents == 3);
  REQUIRE(mp->size() == 1);  // bus-contiguous pieces coalesce
  CHECK(*mp->begin() == dma_range<legacy>{dma_addr<legacy>{0x200080}, 0x25000});
  CHECK(m.set_max_segment(0).error() == errc::invalid_argument);
  must(m.set_max_segment(0x1000));
  CHECK(m.max_segment() == 0x1000);
  must(m.try_unmap(std::move(*mp)));
}

TEST_CASE("a legacy IOMMU that merges everything yields a single-entry mapping") {
  calls c;
  sg_bridge_mapper<legacy, linear_iommu, count_unmap> m{linear_iommu{&c, 0xfe00'0000},
                                                        count_unmap{&c}};
  const auto cpu = scattered(1000);
  auto mp = m.try_map(cpu, to_dev);
  REQUIRE(mp);
  REQUIRE(mp->size() == 1);
  CHECK(*mp->begin() == dma_range<legacy>{dma_addr<legacy>{0xfe00'0000}, cpu.total_bytes()});
  CHECK(mp->table().nents == 1);
  CHECK(mp->table().orig_nents == 1000);
  must(m.try_unmap(std::move(*mp)));
  CHECK(c.unmap_nents == 1000);  // unmap_sg gets the count map_sg was given
}

TEST_CASE("the legacy return code becomes a phyr error, with unmap_sg only after success") {
  const auto cpu = scattered(5);
  struct tc {
    int rc;
    errc e;
    int unmaps;
  };
  for (const tc t :
       {tc{0, errc::not_mapped, 0}, tc{-5, errc::not_mapped, 0}, tc{-12, errc::out_of_memory, 0},
        tc{-22, errc::invalid_argument, 0}, tc{-121, errc::p2p_not_supported, 0},
        tc{-1, errc::not_mapped, 0}, tc{6, errc::io_error, 1}}) {
    calls c;
    sg_bridge_mapper<legacy, fixed_rc, count_unmap> m{fixed_rc{&c, t.rc}, count_unmap{&c}};
    auto mp = m.try_map(cpu, to_dev);
    REQUIRE_FALSE(mp);
    CHECK(mp.error() == t.e);
    CHECK(c.maps == 1);
    CHECK(c.unmaps == t.unmaps);
  }
}

TEST_CASE("a mask refusal in dma-direct comes back as not_mapped") {
  calls c;
  sg_bridge_mapper<legacy, direct, count_unmap> m{direct{&c, 0xffff'ffff}, count_unmap{&c}};
  range_list<phys_range> cpu;
  must(cpu.try_append(phys_range{phys_addr{0x1000}, 0x1000}));
  must(cpu.try_append(phys_range{phys_addr{0x1'0000'0000}, 0x1000}));
  auto mp = m.try_map(cpu, to_dev);
  REQUIRE_FALSE(mp);
  CHECK(mp.error() == errc::not_mapped);
  CHECK(c.unmaps == 0);
}

TEST_CASE("entries the legacy layer marks as bus addresses carry range_flags::bus_addr") {
  struct p2p_marking {
    int operator()(scatterlist* sgl, int nents, dma_direction) const noexcept {
      const int n = compat::dma_direct_map_sg(sgl, nents, ~0ull);
      compat::sg_next(sgl)->dma_flags |= compat::sg_dma_bus_address_flag;
      return n;
    }
  };
  sg_bridge_mapper<legacy, p2p_marking> m{p2p_marking{}};
  const auto cpu = scattered(3);
  auto mp = must(m.try_map(cpu, to_dev));
  std::vector<range_flags> flags;
  for (const auto& r : mp) flags.push_back(r.flags());
  CHECK(flags ==
        std::vector<range_flags>{range_flags::none, range_flags::bus_addr, range_flags::none});
  must(m.try_unmap(std::move(mp)));
}

TEST_CASE("bridge map pairs map_sg with unmap_sg and frees all when any allocation fails") {
  const auto cpu = scattered(600);  // 5 scatterlist arrays, 3 output segments
  bool succeeded = false;
  for (std::uint64_t k = 1; k < 100 && !succeeded; ++k) {
    calls c;
    fault_state fs{.fail_at = k};
    sg_bridge_mapper<legacy, direct, count_unmap, fault_injecting_allocator> m{
        direct{&c}, count_unmap{&c}, fault_injecting_allocator{&fs}};
    auto mp = m.try_map(cpu, to_dev);
    if (mp) {
      succeeded = true;
      CHECK(fs.failures == 0);
      CHECK(k > 5);
      must(m.try_unmap(std::move(*mp)));
      CHECK(c.maps == 1);
      CHECK(c.unmaps == 1);
      CHECK(fs.live == 0);
      break;
    }
    CHECK(mp.error() == errc::out_of_memory);
    CHECK(c.maps == c.unmaps);  // every successful map_sg was undone
    CHECK(fs.live == 0);
  }
  CHECK(succeeded);
}

TEST_CASE("bridge unmap rejects foreign and already-unmapped mappings") {
  calls c;
  sg_bridge_mapper<legacy, direct, count_unmap> a{direct{&c}, count_unmap{&c}};
  sg_bridge_mapper<legacy, direct, count_unmap> b{direct{&c}, count_unmap{&c}};
  const auto cpu = scattered(4);
  auto mp = must(a.try_map(cpu, to_dev));
  CHECK(b.try_unmap(std::move(mp)).error() == errc::foreign_mapping);
  CHECK(mp.mapped());
  CHECK(c.unmaps == 0);
  must(a.try_unmap(std::move(mp)));
  CHECK(c.unmaps == 1);
  CHECK(a.try_unmap(std::move(mp)).error() == errc::foreign_mapping);
  CHECK(c.unmaps == 1);
  sg_bridge_mapping<legacy, count_unmap> none;
  CHECK(a.try_unmap(std::move(none)).error() == errc::foreign_mapping);
}

TEST_CASE("bridge: a mapping dropped without unmap calls unmap_sg once, even after its mapper "
          "is gone") {
  calls c;
  const auto cpu = scattered(4);
  {
    sg_bridge_mapping<legacy, count_unmap> kept;
    {
      sg_bridge_mapper<legacy, direct, count_unmap> a{direct{&c}, count_unmap{&c}};
      auto mp = must(a.try_map(cpu, to_dev));
      auto moved = std::move(mp);   // the moved-from one releases nothing
      kept = std::move(moved);      // nor does this one after being moved from
      CHECK(a.owns(kept));
    }                               // the mapper dies first: the mapping keeps its callback
    CHECK(c.unmaps == 0);
    CHECK(kept.mapped());
  }
  CHECK(c.maps == 1);
  CHECK(c.unmaps == 1);
  CHECK(c.unmap_nents == 4);

  // Move-assigning over a live mapping releases the old one first.
  sg_bridge_mapper<legacy, direct, count_unmap> b{direct{&c}, count_unmap{&c}};
  auto m1 = must(b.try_map(cpu, to_dev));
  auto m2 = must(b.try_map(cpu, to_dev));
  m1 = std::move(m2);
  CHECK(c.unmaps == 2);
  CHECK(m1.mapped());
  CHECK(!b.owns(m2));
}

TEST_CASE("bridge refuses ranges the scatterlist model cannot describe") {
  calls c;
  sg_bridge_mapper<legacy, direct> m{direct{&c}};
  range_list<phys_range> cpu;
  must(cpu.try_append(phys_range{phys_addr{std::uint64_t{1} << 52}, 0x1000}));
  auto mp = m.try_map(cpu, to_dev);
  REQUIRE_FALSE(mp);
  CHECK(mp.error() == errc::out_of_range);
  CHECK(c.maps == 0);
}
