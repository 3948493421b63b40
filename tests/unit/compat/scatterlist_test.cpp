// The scatterlist model: kernel layout, chaining, and the semantics of
// sg_alloc_table_from_pages_segment / dma_direct_map_sg, checked against a plain model.
#include <catch2/catch.hpp>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <new>
#include <phyr/compat/scatterlist.hpp>
#include <random>
#include <vector>

using namespace phyr::compat;
using phyr::errc;
using phyr::fault_injecting_allocator;
using phyr::fault_state;

namespace {

constexpr std::uint64_t pg = page_size;

std::vector<page*> pages_of(const std::vector<std::uint64_t>& pfns) {
  std::vector<page*> v;
  v.reserve(pfns.size());
  for (auto p : pfns) v.push_back(pfn_to_page(p));
  return v;
}

// Calls `build(table, allocator)` failing its 1st, 2nd, ... allocation until it succeeds.
// Every failure must be out_of_memory and leave the table empty with nothing allocated; the
// success is checked by `ok(table, fault_state, k)`, then freed, again leaving nothing.
template <class Build, class Ok>
void build_failing_each_allocation(Build build, Ok ok) {
  for (std::uint64_t k = 1;; ++k) {
    fault_state fs{.fail_at = k};
    fault_injecting_allocator a{&fs};
    sg_table t;
    auto r = build(t, a);
    if (r) {
      ok(t, fs, k);
      sg_free_table(t, a);
      CHECK(fs.live == 0);
      return;
    }
    CHECK(r.error() == errc::out_of_memory);
    CHECK(t.sgl == nullptr);
    CHECK(t.orig_nents == 0);
    CHECK(fs.live == 0);
  }
}

struct entry {
  std::uint64_t phys;
  std::uint64_t len;
  bool operator==(const entry&) const = default;
};

std::vector<entry> walk(const sg_table& t) {
  std::vector<entry> out;
  for_each_sg(t.sgl, t.orig_nents, [&](scatterlist& sg, unsigned) {
    out.push_back({sg_phys(&sg), sg.length});
  });
  return out;
}

// Straightforward model of the builder: merge consecutive pfns, cut at max_segment pages.
std::vector<entry> model(const std::vector<std::uint64_t>& pfns, unsigned offset,
                         std::uint64_t size, unsigned max_segment) {
  const std::uint64_t max_pages = (max_segment & ~(pg - 1)) / pg;
  std::vector<entry> out;
  std::size_t i = 0;
  while (i < pfns.size()) {
    std::size_t j = i + 1;
    while (j < pfns.size() && pfns[j] == pfns[j - 1] + 1 && j - i < max_pages) ++j;
    const std::uint64_t start = pfns[i] * pg + (i == 0 ? offset : 0);
    const std::uint64_t len = (j - i) * pg - (i == 0 ? offset : 0);
    out.push_back({start, len});
    i = j;
  }
  // The pages cover offset + size exactly; only the last entry is trimmed.
  std::uint64_t total = 0;
  for (auto& e : out) total += e.len;
  out.back().len -= total - size;
  return out;
}

std::size_t arrays_for(unsigned n) {
  return n <= sg_max_single_alloc ? 1 : 1 + (n - sg_max_single_alloc + 126) / 127;
}

}  // namespace

TEST_CASE("an entry has the kernel's 64-bit layout and a table array holds 128 entries") {
  STATIC_REQUIRE(sizeof(scatterlist) == 32);
  STATIC_REQUIRE(offsetof(scatterlist, page_link) == 0);
  STATIC_REQUIRE(offsetof(scatterlist, offset) == 8);
  STATIC_REQUIRE(offsetof(scatterlist, length) == 12);
  STATIC_REQUIRE(offsetof(scatterlist, dma_address) == 16);
  STATIC_REQUIRE(offsetof(scatterlist, dma_length) == 24);
  STATIC_REQUIRE(offsetof(scatterlist, dma_flags) == 28);
  STATIC_REQUIRE(sg_max_single_alloc == 128);
  STATIC_REQUIRE(sg_chain_bit == 0x01 && sg_end_bit == 0x02);
}

TEST_CASE("page pointers follow the vmemmap model and leave the two link bits free") {
  for (std::uint64_t pfn : {std::uint64_t{0}, std::uint64_t{1}, std::uint64_t{0x12345}, max_pfn}) {
    page* p = pfn_to_page(pfn);
    CHECK(reinterpret_cast<std::uintptr_t>(p) == vmemmap_base + pfn * 64);
    CHECK((reinterpret_cast<std::uintptr_t>(p) & sg_page_link_mask) == 0);
    CHECK(page_to_pfn(p) == pfn);
    CHECK(page_to_phys(p) == pfn << 12);
  }
  scatterlist sg{};
  sg_mark_end(&sg);
  sg_set_page(&sg, pfn_to_page(7), 100, 12);
  CHECK(sg_is_last(&sg));
  CHECK(sg_page(&sg) == pfn_to_page(7));
  CHECK(sg_phys(&sg) == 7 * pg + 12);
}

TEST_CASE("sg_alloc_table chains arrays of 128 with the chain entry in the last slot") {
  for (unsigned n : {1u, 2u, 127u, 128u, 129u, 254u, 255u, 256u, 1000u, 4097u}) {
    fault_state fs;
    fault_injecting_allocator a{&fs};
    sg_table t;
    REQUIRE(sg_alloc_table(t, n, a));
    CHECK(t.nents == n);
    CHECK(t.orig_nents == n);
    CHECK(static_cast<std::size_t>(fs.live) == arrays_for(n));
    CHECK(sg_nents(t.sgl) == n);
    // Walk by hand: every array but the last is full and ends with a chain link.
    scatterlist* arr = t.sgl;
    unsigned seen = 0;
    while (n - seen > sg_max_single_alloc) {
      scatterlist* link = &arr[sg_max_single_alloc - 1];
      REQUIRE(sg_is_chain(link));
      CHECK_FALSE(sg_is_last(link));
      CHECK(link->offset == 0);
      CHECK(link->length == 0);
      seen += sg_max_single_alloc - 1;
      arr = sg_chain_ptr(link);
    }
    CHECK(sg_is_last(&arr[n - seen - 1]));
    for (unsigned i = 0; i + 1 < n - seen; ++i) CHECK_FALSE(sg_is_last(&arr[i]));
    sg_free_table(t, a);
    CHECK(fs.live == 0);
    CHECK(t.sgl == nullptr);
  }
}

TEST_CASE("sg_alloc_table rejects zero entries and frees everything when an array fails") {
  fault_state fs;
  fault_injecting_allocator a{&fs};
  sg_table t;
  auto r = sg_alloc_table(t, 0, a);
  REQUIRE_FALSE(r);
  CHECK(r.error() == errc::invalid_argument);
  CHECK(fs.calls == 0);

  const unsigned n = 1000;  // 8 arrays
  build_failing_each_allocation(
      [&](sg_table& ft, fault_injecting_allocator fa) { return sg_alloc_table(ft, n, fa); },
      [&](const sg_table&, const fault_state&, std::uint64_t k) {
        CHECK(k == arrays_for(n) + 1);
      });
}

TEST_CASE("from_pages merges consecutive frames and cuts at max_segment like the kernel") {
  struct tc {
    std::vector<std::uint64_t> pfns;
    std::uint64_t size;
    unsigned max_segment;
    unsigned expected_entries;
  };
  const unsigned sgmax = ~0u;
  const std::vector<tc> cases = {
      {{0}, pg, static_cast<unsigned>(pg + 1), 1},
      {{0}, pg, sgmax, 1},
      {{0}, 1, sgmax, 1},
      {{0, 1}, 2 * pg, sgmax, 1},
      {{1, 0}, 2 * pg, sgmax, 2},
      {{0, 1, 2}, 3 * pg, sgmax, 1},
      {{0, 1, 3}, 3 * pg, sgmax, 2},
      {{0, 2, 1}, 3 * pg, sgmax, 3},
      {{0, 1, 3, 4}, 4 * pg, sgmax, 2},
      {{0, 1, 3, 4, 5}, 5 * pg, sgmax, 2},
      {{0, 1, 3, 4, 6}, 5 * pg, sgmax, 3},
      {{0, 1, 2, 3, 4}, 5 * pg, sgmax, 1},
      {{0, 1, 2, 3, 4}, 5 * pg, static_cast<unsigned>(2 * pg), 3},
      {{0, 1, 2, 3, 4, 5}, 6 * pg, static_cast<unsigned>(2 * pg), 3},
      {{0, 2, 3, 4, 5, 6}, 6 * pg, static_cast<unsigned>(2 * pg), 4},
      {{0, 1, 3, 4, 5, 6}, 6 * pg, static_cast<unsigned>(2 * pg), 3},
      // max_segment is aligned down to whole pages: 2.5 pages act as 2.
      {{0, 1, 2, 3, 4}, 5 * pg, static_cast<unsigned>(2 * pg + pg / 2), 3},
  };
  for (const auto& c : cases) {
    fault_state fs;
    fault_injecting_allocator a{&fs};
    sg_table t;
    auto pages = pages_of(c.pfns);
    REQUIRE(sg_alloc_table_from_pages_segment(t, pages, 0, c.size, c.max_segment, a));
    CHECK(t.orig_nents == c.expected_entries);
    CHECK(walk(t) == model(c.pfns, 0, c.size, c.max_segment));
    sg_free_table(t, a);
    CHECK(fs.live == 0);
  }
}

TEST_CASE("from_pages places the offset in the first entry and trims the last to size") {
  fault_state fs;
  fault_injecting_allocator a{&fs};
  sg_table t;
  auto pages = pages_of({10, 11, 20, 21, 22});
  const unsigned offset = 100;
  const std::uint64_t size = 4 * pg + 50 - offset;  // ends 50 bytes into the fifth page
  REQUIRE(sg_alloc_table_from_pages_segment(t, pages, offset, size, ~0u, a));
  const std::vector<entry> expect = {{10 * pg + offset, 2 * pg - offset}, {20 * pg, 2 * pg + 50}};
  CHECK(walk(t) == expect);
  CHECK(t.sgl[0].offset == offset);
  sg_free_table(t, a);
  CHECK(fs.live == 0);
}

TEST_CASE("from_pages matches the plain model on random page arrays") {
  std::mt19937_64 rng(0x5ca77e4);
  for (int iter = 0; iter < 300; ++iter) {
    const std::size_t n = 1 + rng() % 600;
    std::vector<std::uint64_t> pfns;
    std::uint64_t pfn = rng() % (1u << 20);
    for (std::size_t i = 0; i < n; ++i) {
      pfns.push_back(pfn);
      pfn = (rng() % 4 == 0) ? rng() % (1u << 20) : pfn + 1;  // runs of consecutive frames
    }
    const unsigned offset = static_cast<unsigned>(rng() % pg);
    const std::uint64_t min_size = (n - 1) * pg + 1 > offset ? (n - 1) * pg + 1 - offset : 1;
    const std::uint64_t size = min_size + rng() % (n * pg - offset - min_size + 1);
    const unsigned max_segment =
        (rng() % 3 == 0) ? ~0u : static_cast<unsigned>(pg * (1 + rng() % 8) + rng() % pg);
    fault_state fs;
    fault_injecting_allocator a{&fs};
    sg_table t;
    auto pages = pages_of(pfns);
    REQUIRE(sg_alloc_table_from_pages_segment(t, pages, offset, size, max_segment, a));
    const auto expect = model(pfns, offset, size, max_segment);
    REQUIRE(t.orig_nents == expect.size());
    CHECK(walk(t) == expect);
    CHECK(static_cast<std::size_t>(fs.live) == arrays_for(t.orig_nents));
    sg_free_table(t, a);
    CHECK(fs.live == 0);
  }
}

namespace {

// The order sg_alloc_table_from_pages_segment had before Linux 5.15 (and this model before it
// followed 6.1): allocate and zero the whole table, then fill it. Kept here as the reference the
// 6.1 order must match slot for slot.
template <class A>
bool build_prealloc_order(sg_table& t, const std::vector<page*>& pages, unsigned offset,
                          std::uint64_t size, unsigned max_segment, A& a) {
  max_segment &= ~static_cast<unsigned>(pg - 1);
  const auto n = static_cast<unsigned>(pages.size());
  auto cut = [&](unsigned j, std::uint64_t seg_len) {
    return seg_len >= max_segment || page_to_pfn(pages[j]) != page_to_pfn(pages[j - 1]) + 1;
  };
  unsigned chunks = 1;
  std::uint64_t seg_len = 0;
  for (unsigned i = 1; i < n; ++i) {
    seg_len += pg;
    if (cut(i, seg_len)) {
      ++chunks;
      seg_len = 0;
    }
  }
  if (!sg_alloc_table(t, chunks, a)) return false;
  scatterlist* s = t.sgl;
  unsigned cur = 0;
  for (unsigned i = 0; i < chunks; ++i) {
    unsigned j = cur + 1;
    seg_len = 0;
    for (; j < n; ++j) {
      seg_len += pg;
      if (cut(j, seg_len)) break;
    }
    const std::uint64_t chunk = (std::uint64_t{j - cur} * pg) - offset;
    sg_set_page(s, pages[cur], static_cast<unsigned>(chunk < size ? chunk : size), offset);
    size -= chunk < size ? chunk : size;
    offset = 0;
    cur = j;
    s = sg_next(s);
  }
  return true;
}

// Heap allocator that logs the size of every array it hands out, in order.
struct logging_allocator {
  std::vector<std::size_t>* sizes;
  std::int64_t* live;
  void* allocate(std::size_t n, std::size_t align) noexcept {
    sizes->push_back(n);
    ++*live;
    return ::operator new(n, std::align_val_t{align}, std::nothrow);
  }
  void deallocate(void* p, std::size_t, std::size_t align) noexcept {
    --*live;
    ::operator delete(p, std::align_val_t{align}, std::nothrow);
  }
  // Any two can free each other's blocks (operator new underneath). A member, not a hidden
  // friend: clang flags an internal friend used only by a concept check as unneeded.
  bool operator==(const logging_allocator&) const noexcept { return true; }
};

// Every slot of every array, in chain order, with chain links written as "next array" (their
// pointer values differ between two tables) and everything else as stored.
struct slot {
  std::uintptr_t page_link;
  unsigned offset;
  unsigned length;
  std::uint64_t dma_address;
  unsigned dma_length;
  unsigned dma_flags;
  bool operator==(const slot&) const = default;
};
std::vector<slot> slots_of(const sg_table& t, const std::vector<std::size_t>& array_bytes) {
  std::vector<slot> out;
  scatterlist* arr = t.sgl;
  for (std::size_t k = 0; k < array_bytes.size() && arr != nullptr; ++k) {
    const std::size_t n = array_bytes[k] / sizeof(scatterlist);
    scatterlist* next = nullptr;
    for (std::size_t i = 0; i < n; ++i) {
      const scatterlist& e = arr[i];
      slot x{e.page_link, e.offset, e.length, e.dma_address, e.dma_length, e.dma_flags};
      if (sg_is_chain(&e)) {
        next = sg_chain_ptr(&e);
        x.page_link = sg_chain_bit;  // "chained to the next array"
      }
      out.push_back(x);
    }
    arr = next;
  }
  return out;
}

}  // namespace

TEST_CASE("from_pages (the 6.1 fill-as-you-go order) builds the very table the allocate-first "
          "order builds") {
  std::mt19937_64 rng(0x61f111);
  for (int iter = 0; iter < 400; ++iter) {
    // Up to ~700 entries: zero, one, two and more chained arrays, and the boundary counts
    // 127, 128, 129, 254, 255, 256 that decide whether the end slot becomes a link.
    static constexpr std::size_t edge[] = {1, 2, 127, 128, 129, 254, 255, 256, 381, 382, 383};
    const bool at_edge = iter < 2 * static_cast<int>(std::size(edge));
    const std::size_t runs_wanted = at_edge ? edge[iter % std::size(edge)] : 1 + rng() % 700;
    const bool long_runs = !at_edge && rng() % 3 == 0;
    std::vector<std::uint64_t> pfns;
    std::uint64_t base = 1 + rng() % (1u << 20);
    for (std::size_t r = 0; r < runs_wanted; ++r) {
      const std::size_t len = at_edge ? 1 : 1 + rng() % (long_runs ? 40 : 3);
      for (std::size_t k = 0; k < len; ++k) pfns.push_back(base + k);
      base += len + 1 + rng() % 64;  // a gap: the next run starts a new entry
    }
    const std::size_t n = pfns.size();
    const unsigned offset = static_cast<unsigned>(rng() % pg);
    const std::uint64_t min_size = (n - 1) * pg + 1 > offset ? (n - 1) * pg + 1 - offset : 1;
    const std::uint64_t size = min_size + rng() % (n * pg - offset - min_size + 1);
    const unsigned max_segment =
        at_edge || rng() % 3 == 0 ? ~0u : static_cast<unsigned>(pg * (1 + rng() % 8) + rng() % pg);
    const auto pages = pages_of(pfns);
    CAPTURE(iter, n, offset, size, max_segment);

    std::vector<std::size_t> old_sizes, new_sizes;
    std::int64_t old_live = 0, new_live = 0;
    logging_allocator old_a{&old_sizes, &old_live}, new_a{&new_sizes, &new_live};
    sg_table old_t, new_t;
    REQUIRE(build_prealloc_order(old_t, pages, offset, size, max_segment, old_a));
    REQUIRE(sg_alloc_table_from_pages_segment(new_t, pages, offset, size, max_segment, new_a));
    CHECK(new_t.nents == old_t.nents);
    CHECK(new_t.orig_nents == old_t.orig_nents);
    CHECK(new_sizes == old_sizes);  // the same arrays, allocated in the same order
    CHECK(slots_of(new_t, new_sizes) == slots_of(old_t, old_sizes));
    CHECK(sg_nents(new_t.sgl) == new_t.orig_nents);  // one end mark, on the last entry
    sg_free_table(old_t, old_a);
    sg_free_table(new_t, new_a);
    CHECK(old_live == 0);
    CHECK(new_live == 0);
  }
}

TEST_CASE("from_pages frees every array it took when an allocation fails mid-fill") {
  std::mt19937_64 rng(0xfa11);
  for (int iter = 0; iter < 20; ++iter) {
    const std::size_t n = 128 + rng() % 600;
    std::vector<std::uint64_t> pfns;
    for (std::size_t i = 0; i < n; ++i) pfns.push_back(2 * i + (rng() % 2));  // scattered
    const auto pages = pages_of(pfns);
    build_failing_each_allocation(
        [&](sg_table& t, fault_injecting_allocator a) {
          return sg_alloc_table_from_pages_segment(t, pages, 0, n * pg, ~0u, a);
        },
        [](const sg_table& t, const fault_state& fs, std::uint64_t) {
          CHECK(static_cast<std::size_t>(fs.live) == arrays_for(t.orig_nents));
        });
  }
}

TEST_CASE("from_pages rejects malformed input without allocating") {
  fault_state fs;
  fault_injecting_allocator a{&fs};
  sg_table t;
  auto pages = pages_of({1, 2, 3});
  auto expect_error = [&](auto r, errc e) {
    REQUIRE_FALSE(r);
    CHECK(r.error() == e);
    CHECK(t.sgl == nullptr);
  };
  expect_error(sg_alloc_table_from_pages_segment(t, std::span<page* const>{}, 0, pg, ~0u, a),
               errc::invalid_argument);
  expect_error(sg_alloc_table_from_pages_segment(t, pages, 0, 3 * pg, pg - 1, a),
               errc::invalid_argument);
  expect_error(sg_alloc_table_from_pages_segment(t, pages, 0, 0, ~0u, a), errc::invalid_argument);
  expect_error(sg_alloc_table_from_pages_segment(t, pages, static_cast<unsigned>(pg), pg, ~0u, a),
               errc::invalid_argument);
  expect_error(sg_alloc_table_from_pages_segment(t, pages, 0, 3 * pg + 1, ~0u, a),
               errc::out_of_range);  // more bytes than the pages hold
  expect_error(sg_alloc_table_from_pages_segment(t, pages, 0, 2 * pg, ~0u, a),
               errc::out_of_range);  // third page unused
  CHECK(fs.calls == 0);
}

TEST_CASE("from_pages frees every array when any allocation fails") {
  std::vector<std::uint64_t> pfns;
  for (std::uint64_t i = 0; i < 400; ++i) pfns.push_back(i * 2);  // 400 entries, 4 arrays
  auto pages = pages_of(pfns);
  build_failing_each_allocation(
      [&](sg_table& t, fault_injecting_allocator a) {
        return sg_alloc_table_from_pages_segment(t, pages, 0, 400 * pg, ~0u, a);
      },
      [](const sg_table& t, const fault_state&, std::uint64_t k) {
        CHECK(t.orig_nents == 400);
        CHECK(k == 5);
      });
}

TEST_CASE("from_ranges makes one entry per range and cuts long ranges at max_segment") {
  using phyr::phys_addr;
  using phyr::phys_range;
  fault_state fs;
  fault_injecting_allocator a{&fs};
  const std::vector<phys_range> ranges = {
      phys_range{phys_addr{0x1000 + 0x10}, 0x100},
      phys_range{phys_addr{0x100000}, 0x25000},  // 0x10000 + 0x10000 + 0x5000
      phys_range{phys_addr{0x7fff0}, 0x20},
  };
  sg_table t;
  REQUIRE(sg_alloc_table_from_ranges(t, ranges, 0x10000, a));
  const std::vector<entry> expect = {{0x1010, 0x100},
                                     {0x100000, 0x10000},
                                     {0x110000, 0x10000},
                                     {0x120000, 0x5000},
                                     {0x7fff0, 0x20}};
  CHECK(walk(t) == expect);
  CHECK(t.sgl[0].offset == 0x10);
  CHECK(t.sgl[4].offset == 0xff0);
  sg_free_table(t, a);
  CHECK(fs.live == 0);

  const std::vector<phys_range> too_high = {phys_range{phys_addr{std::uint64_t{1} << 52}, 4096}};
  auto r = sg_alloc_table_from_ranges(t, too_high, 0x10000, a);
  REQUIRE_FALSE(r);
  CHECK(r.error() == errc::out_of_range);
  auto z = sg_alloc_table_from_ranges(t, ranges, 0, a);
  REQUIRE_FALSE(z);
  CHECK(z.error() == errc::invalid_argument);
  CHECK(fs.live == 0);
}

TEST_CASE("dma_direct_map_sg fills dma_address and dma_length and honours the mask") {
  std::vector<std::uint64_t> pfns;
  for (std::uint64_t i = 0; i < 300; ++i) pfns.push_back(0x100 + i * 3);
  auto pages = pages_of(pfns);
  phyr::default_allocator a;
  sg_table t;
  REQUIRE(sg_alloc_table_from_pages_segment(t, pages, 0, 300 * pg, ~0u, a));
  const int n = static_cast<int>(t.orig_nents);
  REQUIRE(dma_direct_map_sg(t.sgl, n, ~std::uint64_t{0}) == n);
  for_each_sg(t.sgl, t.orig_nents, [](scatterlist& sg, unsigned) {
    CHECK(sg_dma_address(&sg) == sg_phys(&sg));
    CHECK(sg_dma_len(&sg) == sg.length);
  });
  // The last page ends at (0x100 + 299 * 3 + 1) * 4096 - 1: a mask one below fails.
  const std::uint64_t last = (0x100 + 299 * 3 + 1) * pg - 1;
  CHECK(dma_direct_map_sg(t.sgl, n, last) == n);
  CHECK(dma_direct_map_sg(t.sgl, n, last - 1) == 0);
  sg_free_table(t, a);
}

TEST_CASE("dma_direct_map_sg translates through a bus_dma_region table") {
  const bus_dma_region map[] = {
      {0x100000, 0x80000000, 0x100000}, {0x400000, 0x10000, 0x10000}, {0, 0, 0}};
  CHECK(phys_to_dma(map, 0x100010) == 0x80000010);
  CHECK(phys_to_dma(map, 0x40ffff) == 0x1ffff);
  CHECK(phys_to_dma(map, 0x300000) == dma_mapping_error);
  CHECK(phys_to_dma(nullptr, 0x300000) == 0x300000);

  phyr::default_allocator a;
  sg_table t;
  auto pages = pages_of({0x100, 0x101, 0x400});
  REQUIRE(sg_alloc_table_from_pages_segment(t, pages, 0, 3 * pg, ~0u, a));
  REQUIRE(dma_direct_map_sg(t.sgl, 2, ~0ull, map) == 2);
  CHECK(sg_dma_address(&t.sgl[0]) == 0x80000000);
  CHECK(sg_dma_len(&t.sgl[0]) == 2 * pg);
  CHECK(sg_dma_address(&t.sgl[1]) == 0x10000);
  CHECK(dma_direct_map_sg(t.sgl, 2, 0xffffffff, map) == 2);
  CHECK(dma_direct_map_sg(t.sgl, 2, 0x7fffffff, map) == 0);  // first window is above 2^31
  sg_free_table(t, a);

  auto outside = pages_of({0x300});
  REQUIRE(sg_alloc_table_from_pages_segment(t, outside, 0, pg, ~0u, a));
  CHECK(dma_direct_map_sg(t.sgl, 1, ~0ull, map) == 0);
  sg_free_table(t, a);
}

TEST_CASE("unique_sg_table frees its arrays when it goes away or is reassigned") {
  fault_state fs;
  {
    unique_sg_table<fault_injecting_allocator> u{fault_injecting_allocator{&fs}};
    REQUIRE(sg_alloc_table(u.table(), 500, u.allocator()));
    CHECK(fs.live == 4);
    unique_sg_table<fault_injecting_allocator> v{std::move(u)};
    CHECK(u.table().sgl == nullptr);
    CHECK(v.table().orig_nents == 500);
    unique_sg_table<fault_injecting_allocator> w{fault_injecting_allocator{&fs}};
    REQUIRE(sg_alloc_table(w.table(), 10, w.allocator()));
    CHECK(fs.live == 5);
    w = std::move(v);
    CHECK(fs.live == 4);
  }
  CHECK(fs.live == 0);
}
