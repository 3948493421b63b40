// range_list: coalescing, page arrays, limits, views, splicing, strong guarantee.
#include <catch2/catch.hpp>

#include <cstdint>
#include <phyr/container/range_list.hpp>
#include <random>
#include <span>
#include <utility>
#include <vector>

#include "support/phys_ranges.hpp"

namespace {
using namespace phyr_test;
using list = phyr::range_list<phys_range>;
using flist = phyr::range_list<phys_range, phyr::fault_injecting_allocator>;
struct bus_a {};
struct bus_b {};
// requires-expressions on concrete types must sit in a template to be SFINAE-friendly.
template <class L, class R>
concept can_append = requires(L l, R r) { l.try_append(r); };
template <class L, class M>
concept can_splice = requires(L l, M m) { l.try_splice_back(std::move(m)); };
template <class R>
concept can_hold = requires { typename phyr::range_list<R>; };

template <class L>
std::vector<phys_range> to_vec(const L& l) {
  std::vector<phys_range> v;
  for (const auto& r : l) v.push_back(r);
  return v;
}

// Everything a failed call must leave as it was: the entries, the O(1) counters, the gap
// bits and the heap bytes.
struct list_state {
  std::vector<phys_range> entries;
  std::size_t size = 0;
  std::uint64_t total = 0, lowest = 0, highest = 0, gaps = 0, heap = 0;
  bool operator==(const list_state&) const = default;
};
template <class L>
list_state state_of(const L& l) {
  return {to_vec(l),
          l.size(),
          l.total_bytes(),
          l.empty() ? 0 : l.lowest().value(),
          l.empty() ? 0 : l.highest().value(),
          l.gap_bits(),
          l.heap_bytes()};
}

// After a call that failed under fault injection: out_of_memory, the list as it was, and the
// list still usable once memory is back.
template <class L>
void check_failed_cleanly(L& l, const list_state& before, const phyr::result<void>& r,
                          phyr::fault_state& fs) {
  CHECK(r.error() == errc::out_of_memory);
  CHECK(state_of(l) == before);
  fs.fail_at = 0;
  REQUIRE(l.try_append(phys_range{phys_addr{1ull << 45}, 4096}));
}

// The reference model: the same greedy merge/split rule on a std::vector.
struct model {
  std::vector<phys_range> v;
  std::uint64_t max_seg = phys_range::max_len;
  std::uint64_t boundary = 0;

  std::uint64_t room_at(std::uint64_t a) const {
    return boundary == 0 ? ~0ull : boundary - a % boundary;
  }
  void append(phys_range r) {
    std::uint64_t a = r.addr().value(), len = r.len();
    if (!v.empty()) {
      phys_range& b = v.back();
      std::uint64_t end = b.addr().value() + b.len();
      bool wraps = b.last().value() == ~0ull;
      if (!wraps && end == a && b.flags() == r.flags() && b.len() < max_seg) {
        std::uint64_t room = max_seg - b.len();
        if (boundary != 0) {
          std::uint64_t in = end % boundary;
          room = in == 0 ? 0 : std::min(room, boundary - in);
        }
        std::uint64_t take = std::min(len, room);
        if (take) {
          b = phys_range{b.addr(), b.len() + take, b.flags()};
          a += take;
          len -= take;
        }
      }
    }
    while (len) {
      std::uint64_t take = std::min({len, max_seg, room_at(a)});
      v.push_back(phys_range{phys_addr{a}, take, r.flags()});
      a += take;
      len -= take;
    }
  }
};

// Entry count of the kernel's sg_alloc_table_from_pages_segment for the same input: a new
// chunk starts at a pfn discontinuity or when the chunk already holds max_segment bytes of
// whole pages (max_segment aligned down to the page size).
std::size_t kernel_chunks(const std::vector<std::uint64_t>& pfns, std::uint64_t max_segment) {
  max_segment &= ~0xfffull;
  std::size_t chunks = 1;
  std::uint64_t seg_len = 0;
  for (std::size_t i = 1; i < pfns.size(); ++i) {
    seg_len += 4096;
    if (seg_len >= max_segment || pfns[i] != pfns[i - 1] + 1) {
      ++chunks;
      seg_len = 0;
    }
  }
  return chunks;
}

std::vector<std::uint64_t> random_pfns(std::mt19937_64& rng, std::size_t n) {
  std::vector<std::uint64_t> p(n);
  std::uint64_t cur = rng() % (1ull << 30);
  for (auto& x : p) {
    switch (rng() % 4) {
      case 0: cur = rng() % (1ull << 30); break;  // jump
      default: ++cur; break;                       // contiguous
    }
    x = cur;
  }
  return p;
}
}  // namespace

TEST_CASE("range_list: an empty and a one-entry list allocate nothing", "[range_list]") {
  phyr::fault_state fs;
  flist l{phyr::fault_injecting_allocator{&fs}};
  CHECK(l.empty());
  CHECK(l.size() == 0);
  CHECK(l.total_bytes() == 0);
  CHECK(l.begin() == l.end());
  REQUIRE(l.try_append(phys_range{phys_addr{0x1000}, 0x1000}));
  REQUIRE(l.try_append(phys_range{phys_addr{0x9000}, 0x1000}));
  CHECK(fs.calls == 0);
  CHECK(l.size() == 2);
  CHECK(l.heap_bytes() == 0);
}

TEST_CASE("range_list: coalesces adjacent same-flag ranges and tracks totals in O(1)",
          "[range_list]") {
  list l;
  REQUIRE(l.try_append(phys_range{phys_addr{0x1000}, 0x1000}));
  REQUIRE(l.try_append(phys_range{phys_addr{0x2000}, 0x1000}));  // merges
  REQUIRE(l.try_append(phys_range{phys_addr{0x3000}, 0x1000, range_flags::pinned}));  // flags differ
  REQUIRE(l.try_append(phys_range{phys_addr{0x100}, 0x100, range_flags::pinned}));    // not adjacent
  auto v = to_vec(l);
  REQUIRE(v.size() == 3);
  CHECK(v[0] == phys_range{phys_addr{0x1000}, 0x2000});
  CHECK(v[1] == phys_range{phys_addr{0x3000}, 0x1000, range_flags::pinned});
  CHECK(v[2] == phys_range{phys_addr{0x100}, 0x100, range_flags::pinned});
  CHECK(l.size() == 3);
  CHECK(l.total_bytes() == 0x3100);
  CHECK(l.lowest() == phys_addr{0x100});
  CHECK(l.highest() == phys_addr{0x3fff});
  CHECK(l.front() == v.front());
  CHECK(l.back() == v.back());
}

TEST_CASE("range_list: zero-length input and byte-count overflow are errors that change nothing",
          "[range_list]") {
  list l;
  REQUIRE(l.try_append(phys_range{phys_addr{0}, phys_range::max_len}));
  CHECK(l.try_append(phys_range{}).error() == errc::invalid_argument);
  for (int i = 0; i < 255; ++i)
    REQUIRE(l.try_append(phys_range{phys_addr{1ull << 60}, phys_range::max_len}));
  // 256 * (2^56 - 1) bytes fit; one more max-length range would pass 2^64.
  const auto before = to_vec(l);
  CHECK(l.try_append(phys_range{phys_addr{1ull << 61}, phys_range::max_len}).error() ==
        errc::overflow);
  CHECK(to_vec(l) == before);
}

TEST_CASE("range_list: max_segment splits greedily and never exceeds the limit", "[range_list]") {
  list l;
  REQUIRE(l.try_set_max_segment(0x3000));
  CHECK(l.max_segment() == 0x3000);
  REQUIRE(l.try_append(phys_range{phys_addr{0x1000}, 0x2000}));
  REQUIRE(l.try_append(phys_range{phys_addr{0x3000}, 0x5000}));  // fills the tail, then splits
  auto v = to_vec(l);
  REQUIRE(v.size() == 3);
  CHECK(v[0] == phys_range{phys_addr{0x1000}, 0x3000});
  CHECK(v[1] == phys_range{phys_addr{0x4000}, 0x3000});
  CHECK(v[2] == phys_range{phys_addr{0x7000}, 0x1000});
  REQUIRE(l.try_set_max_segment(0));  // back to unlimited
  CHECK(l.max_segment() == phys_range::max_len);
}

TEST_CASE("range_list: no entry crosses the segment boundary", "[range_list]") {
  list l;
  REQUIRE(l.try_set_segment_boundary(0x10000));
  REQUIRE(l.try_append(phys_range{phys_addr{0xe000}, 0x4000}));
  REQUIRE(l.try_append(phys_range{phys_addr{0x12000}, 0x20000}));
  for (const auto& r : l) {
    CHECK(r.addr().value() / 0x10000 == r.last().value() / 0x10000);
  }
  auto v = to_vec(l);
  REQUIRE(v.size() == 4);
  CHECK(v[0] == phys_range{phys_addr{0xe000}, 0x2000});
  CHECK(v[1] == phys_range{phys_addr{0x10000}, 0x10000});
  CHECK(v[2] == phys_range{phys_addr{0x20000}, 0x10000});
  CHECK(v[3] == phys_range{phys_addr{0x30000}, 0x2000});
}

TEST_CASE("range_list: try_append_pages coalesces runs and slices the ends", "[range_list]") {
  list l;
  const std::vector<std::uint64_t> pfns{10, 11, 12, 20, 30, 31};
  REQUIRE(l.try_append_pages(pfns, 0x200, 6 * 4096 - 0x200 - 0x100, range_flags::pinned));
  auto v = to_vec(l);
  REQUIRE(v.size() == 3);
  CHECK(v[0] == phys_range{phys_addr{(10ull << 12) + 0x200}, 3 * 4096 - 0x200, range_flags::pinned});
  CHECK(v[1] == phys_range{phys_addr{20ull << 12}, 4096, range_flags::pinned});
  CHECK(v[2] == phys_range{phys_addr{30ull << 12}, 2 * 4096 - 0x100, range_flags::pinned});
  CHECK(l.total_bytes() == 6 * 4096 - 0x300);
  CHECK(l.lowest() == phys_addr{(10ull << 12) + 0x200});
  CHECK(l.highest() == phys_addr{(32ull << 12) - 0x101});

  // a single page with both ends trimmed
  list one;
  const std::vector<std::uint64_t> p1{7};
  REQUIRE(one.try_append_pages(p1, 0x10, 0x20));
  CHECK(one.front() == phys_range{phys_addr{(7ull << 12) + 0x10}, 0x20});
  // appending more pages coalesces with the tail when physically adjacent
  const std::vector<std::uint64_t> p2{33, 34};
  REQUIRE(l.try_append_pages(p2, 0, 2 * 4096, range_flags::pinned));
  CHECK(l.size() == 4);  // tail ended mid-page, so no merge
  list m;
  REQUIRE(m.try_append_pages(std::vector<std::uint64_t>{1, 2}, 0, 8192));
  REQUIRE(m.try_append_pages(std::vector<std::uint64_t>{3, 9}, 0, 8192));
  CHECK(m.size() == 2);
  CHECK(m.front() == phys_range{phys_addr{0x1000}, 0x3000});
}

TEST_CASE("range_list: try_append_pages rejects bad input and leaves the list unchanged",
          "[range_list]") {
  list l;
  REQUIRE(l.try_append(phys_range{phys_addr{0x5000}, 0x100}));
  const auto before = to_vec(l);
  const std::vector<std::uint64_t> pfns{1, 2, 3};
  CHECK(l.try_append_pages({}, 0, 1).error() == errc::invalid_argument);
  CHECK(l.try_append_pages(pfns, 4096, 1).error() == errc::invalid_argument);  // offset >= page
  CHECK(l.try_append_pages(pfns, 0, 0).error() == errc::invalid_argument);
  CHECK(l.try_append_pages(pfns, 0, 3 * 4096 + 1).error() == errc::invalid_argument);  // too long
  CHECK(l.try_append_pages(pfns, 0, 2 * 4096).error() == errc::invalid_argument);  // unused page
  CHECK(l.try_append_pages(pfns, 0x800, 3 * 4096 - 0x7ff).error() == errc::invalid_argument);
  // pfns beyond the 52-bit space, at the start, the middle and the end of the array
  std::vector<std::uint64_t> bad{1, 2, 1ull << 52, 9};
  CHECK(l.try_append_pages(bad, 0, 4 * 4096).error() == errc::invalid_argument);
  std::vector<std::uint64_t> bad2(600, 0);
  for (std::size_t i = 0; i < bad2.size(); ++i) bad2[i] = 2 * i;  // fragmented: uses heap
  bad2.back() = ~0ull;
  CHECK(l.try_append_pages(bad2, 0, bad2.size() * 4096).error() == errc::invalid_argument);
  std::vector<std::uint64_t> bad3{~0ull, 0};
  CHECK(l.try_append_pages(bad3, 0, 2 * 4096).error() == errc::invalid_argument);
  CHECK(to_vec(l) == before);
  CHECK(l.size() == 1);
  CHECK(l.total_bytes() == 0x100);
  CHECK(l.highest() == phys_addr{0x50ff});
}

TEST_CASE("range_list: never more entries than the kernel's sg_alloc_table_from_pages_segment",
          "[range_list][property]") {
  std::mt19937_64 rng{20221103};
  for (int iter = 0; iter < 300; ++iter) {
    const std::size_t n = 1 + rng() % 2000;
    auto pfns = random_pfns(rng, n);
    const std::uint64_t max_seg = std::uint64_t{4096} << (rng() % 10);  // 4 KiB .. 2 MiB
    list l;
    REQUIRE(l.try_set_max_segment(max_seg));
    REQUIRE(l.try_append_pages(pfns, 0, n * 4096));
    CHECK(l.size() <= kernel_chunks(pfns, max_seg));
    std::uint64_t sum = 0;
    for (const auto& r : l) {
      CHECK(r.len() <= max_seg);
      sum += r.len();
    }
    CHECK(sum == n * 4096);
    CHECK(l.total_bytes() == sum);
  }
}

TEST_CASE("range_list: random append sequences match the std::vector model",
          "[range_list][property]") {
  std::mt19937_64 rng{42};
  for (int iter = 0; iter < 200; ++iter) {
    list l;
    model m;
    if (rng() % 2) {
      m.max_seg = 4096 + rng() % 100000;
      REQUIRE(l.try_set_max_segment(m.max_seg));
    }
    if (rng() % 3 == 0) {
      m.boundary = std::uint64_t{4096} << (rng() % 6);
      REQUIRE(l.try_set_segment_boundary(m.boundary));
    }
    std::uint64_t cur = rng() % (1ull << 40);
    const int n = static_cast<int>(rng() % 1500);
    for (int i = 0; i < n; ++i) {
      if (rng() % 3 == 0) cur = rng() % (1ull << 40);
      const std::uint64_t len = 1 + rng() % (rng() % 2 ? 300000 : 5000);
      const auto f = (rng() % 5 == 0) ? range_flags::pinned : range_flags::none;
      phys_range r{phys_addr{cur}, len, f};
      if (rng() % 2) {
        REQUIRE(l.try_append(r));
        m.append(r);
      } else {
        // the same bytes as whole pages when aligned
        REQUIRE(l.try_append(r));
        m.append(r);
      }
      cur += len;
    }
    REQUIRE(to_vec(l) == m.v);
    REQUIRE(l.size() == m.v.size());
    if (!m.v.empty()) {
      std::uint64_t lo = ~0ull, hi = 0, tot = 0;
      for (auto& r : m.v) {
        lo = std::min(lo, r.addr().value());
        hi = std::max(hi, r.last().value());
        tot += r.len();
      }
      CHECK(l.lowest().value() == lo);
      CHECK(l.highest().value() == hi);
      CHECK(l.total_bytes() == tot);
    }
  }
}

TEST_CASE("range_list: page arrays match the model fed page by page", "[range_list][property]") {
  std::mt19937_64 rng{7};
  for (int iter = 0; iter < 200; ++iter) {
    const std::size_t n = 1 + rng() % 1500;
    auto pfns = random_pfns(rng, n);
    const std::uint64_t off = rng() % 4096;
    const std::uint64_t cut = rng() % 4096;
    std::uint64_t total = n * 4096 - off - cut;
    if (total == 0) total = 1;
    if (n == 1 && off + total > 4096) total = 4096 - off;
    list l;
    model m;
    switch (rng() % 3) {  // page-multiple limits, arbitrary byte limits, none
      case 0:
        m.max_seg = std::uint64_t{4096} << (rng() % 8);
        break;
      case 1:
        m.max_seg = 4096 + rng() % 70000;
        break;
      default:
        break;
    }
    if (m.max_seg != phys_range::max_len) REQUIRE(l.try_set_max_segment(m.max_seg));
    if (rng() % 3 == 0) {
      m.boundary = std::uint64_t{4096} << (rng() % 7);
      REQUIRE(l.try_set_segment_boundary(m.boundary));
    }
    REQUIRE(l.try_append_pages(pfns, off, total, range_flags::pinned));
    std::uint64_t left = total;
    for (std::size_t i = 0; i < n; ++i) {
      std::uint64_t a = (pfns[i] << 12) + (i == 0 ? off : 0);
      std::uint64_t len = std::min<std::uint64_t>(left, 4096 - (i == 0 ? off : 0));
      m.append(phys_range{phys_addr{a}, len, range_flags::pinned});
      left -= len;
    }
    REQUIRE(to_vec(l) == m.v);
  }
}

TEST_CASE("range_list: every allocation failure leaves the list exactly as it was",
          "[range_list][alloc]") {
  std::mt19937_64 rng{99};
  auto pfns = random_pfns(rng, 3000);
  for (int op = 0; op < 4; ++op) {
    bool completed = false;
    for (std::uint64_t k = 1; !completed; ++k) {
      phyr::fault_state fs;
      {
        flist l{phyr::fault_injecting_allocator{&fs}};
        REQUIRE(l.try_set_max_segment(op == 2 ? 8192 : op == 1 ? 4096 : 0));
        // a prefix that already spans a few segments
        REQUIRE(l.try_append_pages(std::span{pfns}.first(700), 0, 700 * 4096));
        const list_state before = state_of(l);
        fs.fail_at = fs.calls + k;
        phyr::result<void> r;
        if (op == 0 || op == 2) {
          r = l.try_append_pages(std::span{pfns}.subspan(700), 0x10, (3000 - 700) * 4096 - 0x20);
        } else if (op == 1) {
          // one range split into 600 max_segment pieces: the split path allocates
          r = l.try_append(phys_range{phys_addr{1ull << 41}, 600 * 4096});
        } else {
          auto c = l.try_clone();
          if (c) {
            CHECK(to_vec(*c) == before.entries);
          } else {
            CHECK(c.error() == errc::out_of_memory);
          }
          r = c ? phyr::result<void>{} : phyr::result<void>{c.error()};
        }
        if (r) {
          completed = true;
        } else {
          check_failed_cleanly(l, before, r, fs);
        }
      }
      CHECK(fs.live == 0);
      CHECK(fs.live_bytes == 0);
    }
  }
}

TEST_CASE("range_list: clear keeps segments for reuse without allocating", "[range_list][alloc]") {
  phyr::fault_state fs;
  flist l{phyr::fault_injecting_allocator{&fs}};
  std::vector<std::uint64_t> pfns(2000);
  for (std::size_t i = 0; i < pfns.size(); ++i) pfns[i] = 3 * i;
  REQUIRE(l.try_append_pages(pfns, 0, pfns.size() * 4096));
  const auto calls = fs.calls;
  const auto heap = l.heap_bytes();
  CHECK(heap > 0);
  for (int round = 0; round < 3; ++round) {
    l.clear();
    CHECK(l.empty());
    CHECK(l.begin() == l.end());
    REQUIRE(l.try_append_pages(pfns, 0, pfns.size() * 4096));
    CHECK(l.size() == 2000);
  }
  CHECK(fs.calls == calls);
  CHECK(l.heap_bytes() == heap);
  l.clear();
  l.shrink_to_fit();
  CHECK(l.heap_bytes() == 0);
  CHECK(fs.live == 0);
}

TEST_CASE("range_list: segment pool backs a list without the heap and reports exhaustion",
          "[range_list][alloc]") {
  phyr::segment_pool<4096, 2> pool;
  phyr::range_list<phys_range, phyr::pool_allocator> l{pool.allocator()};
  // The inline entries and two full pool segments of 255 entries each.
  std::vector<std::uint64_t> pfns(list::inline_capacity + 2 * 255);
  for (std::size_t i = 0; i < pfns.size(); ++i) pfns[i] = 2 * i;
  REQUIRE(l.try_append_pages(pfns, 0, pfns.size() * 4096));
  CHECK(pool.available() == 0);
  const auto before = to_vec(l);
  CHECK(l.try_append(phys_range{phys_addr{1ull << 40}, 4096}).error() == errc::out_of_memory);
  CHECK(to_vec(l) == before);
  l.clear();
  l.shrink_to_fit();
  CHECK(pool.available() == 2);
}

TEST_CASE("range_list: move transfers everything, including inline entries", "[range_list]") {
  list a;
  REQUIRE(a.try_append(phys_range{phys_addr{0x1000}, 0x10}));
  list b{std::move(a)};
  CHECK(a.empty());  // NOLINT(bugprone-use-after-move): moved-from is empty by contract
  CHECK(b.size() == 1);
  REQUIRE(b.try_append(phys_range{phys_addr{0x9000}, 0x10}));
  std::vector<std::uint64_t> pfns(1000);
  for (std::size_t i = 0; i < pfns.size(); ++i) pfns[i] = 5 * i;
  REQUIRE(b.try_append_pages(pfns, 0, pfns.size() * 4096));
  const auto v = to_vec(b);
  list c;
  c = std::move(b);
  CHECK(to_vec(c) == v);
  REQUIRE(c.try_append(phys_range{phys_addr{1ull << 50}, 1}));  // tail fixed up after move
  CHECK(c.back() == phys_range{phys_addr{1ull << 50}, 1});
  CHECK(c.size() == v.size() + 1);
  // a moved list with only inline entries keeps appending into its own head
  list d;
  REQUIRE(d.try_append(phys_range{phys_addr{0x1000}, 0x10}));
  list e{std::move(d)};
  REQUIRE(e.try_append(phys_range{phys_addr{0x1010}, 0x10}));
  CHECK(e.size() == 1);
  CHECK(e.front().len() == 0x20);
}

TEST_CASE("range_list: try_clone is a deep, equal copy", "[range_list]") {
  list a;
  REQUIRE(a.try_set_max_segment(8192));
  std::vector<std::uint64_t> pfns(777);
  for (std::size_t i = 0; i < pfns.size(); ++i) pfns[i] = i % 3 == 0 ? 7 * i : i;
  REQUIRE(a.try_append_pages(pfns, 0, pfns.size() * 4096));
  auto c = a.try_clone();
  REQUIRE(c);
  CHECK(to_vec(*c) == to_vec(a));
  CHECK(c->max_segment() == 8192);
  CHECK(c->lowest() == a.lowest());
  CHECK(c->highest() == a.highest());
  a.clear();
  CHECK(c->size() > 0);
}

TEST_CASE("range_list: try_slice returns a trimmed view without copying", "[range_list]") {
  list l;
  REQUIRE(l.try_append(phys_range{phys_addr{0x10000}, 0x1000}));
  REQUIRE(l.try_append(phys_range{phys_addr{0x30000}, 0x2000}));
  REQUIRE(l.try_append(phys_range{phys_addr{0x50000}, 0x1000}));
  auto s = l.try_slice(0x800, 0x2000);  // [0x800, 0x2800)
  REQUIRE(s);
  std::vector<phys_range> got(s->begin(), s->end());
  REQUIRE(got.size() == 2);
  CHECK(got[0] == phys_range{phys_addr{0x10800}, 0x800});
  CHECK(got[1] == phys_range{phys_addr{0x30000}, 0x1800});
  CHECK(s->size() == 2);
  CHECK(s->total_bytes() == 0x2000);
  CHECK(s->lowest() == phys_addr{0x10800});
  CHECK(s->highest() == phys_addr{0x317ff});
  CHECK(s->front() == got.front());
  CHECK(s->back() == got.back());
  // within one entry
  auto one = l.try_slice(0x1100, 0x100);
  REQUIRE(one);
  REQUIRE(one->size() == 1);
  CHECK(one->front() == phys_range{phys_addr{0x30100}, 0x100});
  CHECK(one->back() == one->front());
  // the whole list
  auto all = l.try_slice(0, l.total_bytes());
  REQUIRE(all);
  CHECK(std::vector<phys_range>(all->begin(), all->end()) == to_vec(l));
  CHECK(l.try_slice(0, 0).error() == errc::invalid_argument);
  CHECK(l.try_slice(0x4000, 1).error() == errc::out_of_range);
  CHECK(l.try_slice(0x3000, 0x1001).error() == errc::out_of_range);
  CHECK(l.try_slice(~0ull, 2).error() == errc::out_of_range);
}

TEST_CASE("range_list: slices agree with a byte-level model", "[range_list][property]") {
  std::mt19937_64 rng{5};
  list l;
  std::uint64_t cur = 0;
  for (int i = 0; i < 900; ++i) {
    cur += 4096 * (1 + rng() % 3);
    REQUIRE(l.try_append(phys_range{phys_addr{cur}, 1 + rng() % 9000}));
  }
  const auto v = to_vec(l);
  for (int t = 0; t < 300; ++t) {
    const std::uint64_t off = rng() % l.total_bytes();
    const std::uint64_t len = 1 + rng() % (l.total_bytes() - off);
    auto s = l.try_slice(off, len);
    REQUIRE(s);
    // model: walk the entries, cut [off, off+len)
    std::vector<phys_range> want;
    std::uint64_t pos = 0;
    for (const auto& r : v) {
      const std::uint64_t b = std::max(pos, off), e = std::min(pos + r.len(), off + len);
      if (b < e) want.push_back(phys_range{r.addr() + (b - pos), e - b, r.flags()});
      pos += r.len();
    }
    REQUIRE(std::vector<phys_range>(s->begin(), s->end()) == want);
    CHECK(s->size() == want.size());
    CHECK(s->total_bytes() == len);
  }
}

TEST_CASE("range_list: try_splice_back relinks in O(1) and coalesces at the junction",
          "[range_list]") {
  phyr::fault_state fs;
  flist a{phyr::fault_injecting_allocator{&fs}};
  flist b{phyr::fault_injecting_allocator{&fs}};
  std::vector<std::uint64_t> pa(600), pb(600);
  for (std::size_t i = 0; i < 600; ++i) {
    pa[i] = 2 * i;
    pb[i] = 10000 + 2 * i;
  }
  pb[0] = 2 * 599 + 1;  // b's first page follows a's last page
  REQUIRE(a.try_append_pages(pa, 0, 600 * 4096));
  REQUIRE(b.try_append_pages(pb, 0, 600 * 4096));
  auto want = to_vec(a);
  auto vb = to_vec(b);
  want.back() = phys_range{want.back().addr(), want.back().len() + 4096};
  want.insert(want.end(), vb.begin() + 1, vb.end());
  const auto calls = fs.calls;
  const auto total = a.total_bytes() + b.total_bytes();
  REQUIRE(a.try_splice_back(std::move(b)));
  CHECK(fs.calls == calls);  // relinked, nothing allocated
  CHECK(b.empty());
  CHECK(to_vec(a) == want);
  CHECK(a.size() == want.size());
  CHECK(a.total_bytes() == total);
  CHECK(a.highest() == phys_addr{((10000ull + 2 * 599) << 12) + 4095});
  REQUIRE(a.try_append(phys_range{phys_addr{1ull << 40}, 1}));  // tail is b's old tail
  CHECK(a.back() == phys_range{phys_addr{1ull << 40}, 1});
  // b stays usable
  REQUIRE(b.try_append(phys_range{phys_addr{0x1000}, 1}));
  CHECK(b.size() == 1);
}

TEST_CASE("range_list: try_splice_back refuses mismatched lists and self", "[range_list]") {
  list a, b;
  REQUIRE(a.try_append(phys_range{phys_addr{0x1000}, 1}));
  REQUIRE(b.try_append(phys_range{phys_addr{0x2000}, 1}));
  REQUIRE(b.try_set_max_segment(4096));
  CHECK(a.try_splice_back(std::move(b)).error() == errc::invalid_argument);
  CHECK(b.size() == 1);
  CHECK(a.size() == 1);
  CHECK(a.try_splice_back(std::move(a)).error() == errc::invalid_argument);
  phyr::fault_state f1, f2;
  flist x{phyr::fault_injecting_allocator{&f1}}, y{phyr::fault_injecting_allocator{&f2}};
  REQUIRE(y.try_append(phys_range{phys_addr{0x2000}, 1}));
  CHECK(x.try_splice_back(std::move(y)).error() == errc::invalid_argument);
  list empty;
  REQUIRE(a.try_splice_back(std::move(empty)));
  CHECK(a.size() == 1);
}

TEST_CASE("range_list: try_splice_back into a full tail fails cleanly when memory runs out",
          "[range_list][alloc]") {
  phyr::fault_state fs;
  flist a{phyr::fault_injecting_allocator{&fs}};
  flist b{phyr::fault_injecting_allocator{&fs}};
  constexpr std::uint64_t k = flist::inline_capacity;
  for (std::uint64_t i = 0; i < k; ++i)
    REQUIRE(a.try_append(phys_range{phys_addr{0x1000 + 0x2000 * i}, 1}));  // inline head full
  REQUIRE(b.try_append(phys_range{phys_addr{0x100000}, 1}));
  fs.fail_at = fs.calls + 1;
  CHECK(a.try_splice_back(std::move(b)).error() == errc::out_of_memory);
  CHECK(a.size() == k);
  CHECK(b.size() == 1);
  fs.fail_at = 0;
  REQUIRE(a.try_splice_back(std::move(b)));
  CHECK(a.size() == k + 1);
}

TEST_CASE("range_list: the list type fixes the address space", "[range_list][compile-fail]") {
  using dlist_a = phyr::range_list<phyr::dma_range<bus_a>>;
  using dlist_b = phyr::range_list<phyr::dma_range<bus_b>>;
  STATIC_REQUIRE(can_append<dlist_a, phyr::dma_range<bus_a>>);
  // mixing two buses' ranges in one list does not compile
  STATIC_REQUIRE_FALSE(can_append<dlist_a, phyr::dma_range<bus_b>>);
  STATIC_REQUIRE_FALSE(can_append<dlist_a, phys_range>);
  STATIC_REQUIRE_FALSE(can_append<list, phyr::dma_range<bus_a>>);
  STATIC_REQUIRE_FALSE(can_splice<dlist_a, dlist_b>);
  STATIC_REQUIRE(can_splice<dlist_a, dlist_a>);
  STATIC_REQUIRE_FALSE(std::is_copy_constructible_v<list>);
  STATIC_REQUIRE(std::is_nothrow_move_constructible_v<list>);
  STATIC_REQUIRE_FALSE(can_hold<int>);
  STATIC_REQUIRE(can_hold<phys_range>);
}

TEST_CASE("range_list: with no limits set, merging past max_len fills the tail first",
          "[range_list]") {
  list l;
  const std::uint64_t big = phys_range::max_len - 0x1000;
  REQUIRE(l.try_append(phys_range{phys_addr{0}, big}));
  REQUIRE(l.try_append(phys_range{phys_addr{big}, 0x3000}));
  const auto v = to_vec(l);
  REQUIRE(v.size() == 2);
  CHECK(v[0] == phys_range{phys_addr{0}, phys_range::max_len});
  CHECK(v[1] == phys_range{phys_addr{phys_range::max_len}, 0x2000});
  CHECK(l.total_bytes() == big + 0x3000);
  CHECK(l.highest() == phys_addr{big + 0x2fff});
}

TEST_CASE("range_list: page arrays with frames that wrap past 2^64 are rejected unchanged",
          "[range_list]") {
  list l;
  REQUIRE(l.try_append(phys_range{phys_addr{0x1000}, 0x1000}));
  // consecutive as integers, wrapping from 2^64 - 1 to 0, in the middle and at the end
  const std::vector<std::uint64_t> wrap_mid{5, ~0ull - 1, ~0ull, 0, 1, 9};
  CHECK(l.try_append_pages(wrap_mid, 0, 6 * 4096).error() == errc::invalid_argument);
  const std::vector<std::uint64_t> wrap_end{5, 7, ~0ull, 0};
  CHECK(l.try_append_pages(wrap_end, 0, 4 * 4096).error() == errc::invalid_argument);
  const std::vector<std::uint64_t> big_last{5, 7, 1ull << 52};
  CHECK(l.try_append_pages(big_last, 0, 3 * 4096).error() == errc::invalid_argument);
  CHECK(l.size() == 1);
  CHECK(l.total_bytes() == 0x1000);
  CHECK(l.highest() == phys_addr{0x1fff});
}

TEST_CASE("range_list: limits below one page are rejected, so one append stays bounded",
          "[range_list]") {
  // Issue 11 item 6: a 1-byte max_segment made one 1 TiB append allocate until out of
  // memory (an entry per byte). Limits now start at one page, boundaries are powers of two.
  list l;
  CHECK(l.try_set_max_segment(1).error() == errc::invalid_argument);
  CHECK(l.try_set_max_segment(4095).error() == errc::invalid_argument);
  CHECK(l.try_set_segment_boundary(1).error() == errc::invalid_argument);
  CHECK(l.try_set_segment_boundary(2048).error() == errc::invalid_argument);
  CHECK(l.try_set_segment_boundary(3 * 4096).error() == errc::invalid_argument);
  CHECK(l.max_segment() == phys_range::max_len);  // unchanged by the failures
  CHECK(l.segment_boundary() == 0);
  REQUIRE(l.try_append(phys_range{phys_addr{0}, std::uint64_t{1} << 40}));  // 1 TiB
  CHECK(l.size() == 1);
  CHECK(l.heap_bytes() == 0);

  // The smallest legal limits: at most len / 4096 + 2 entries per append, for any alignment.
  std::mt19937_64 rng{11};
  for (int iter = 0; iter < 200; ++iter) {
    list s;
    REQUIRE(s.try_set_max_segment(4096 + rng() % 3 * (rng() % 9000)));
    if (rng() % 2) REQUIRE(s.try_set_segment_boundary(std::uint64_t{4096} << (rng() % 4)));
    const std::uint64_t a = rng() % (std::uint64_t{1} << 40);
    const std::uint64_t len = 1 + rng() % (1u << 22);
    REQUIRE(s.try_append(phys_range{phys_addr{a}, len}));
    CHECK(s.size() <= len / 4096 + 2);
    CHECK(s.total_bytes() == len);
  }
  // 0 still means "no limit" for both.
  REQUIRE(l.try_set_max_segment(0));
  REQUIRE(l.try_set_segment_boundary(0));
  CHECK(l.max_segment() == phys_range::max_len);
}

TEST_CASE("range_list: limits keep fragmented page arrays entry-for-page and split runs",
          "[range_list]") {
  // Every whole page fits one entry under any legal limit, so the page-array fast path
  // applies with limits too; runs of pages are cut into limit-sized pieces.
  std::vector<std::uint64_t> pfns = {10, 20, 21, 22, 23, 24, 40, 41, 50};
  list l;
  REQUIRE(l.try_set_max_segment(0x2000));
  REQUIRE(l.try_set_segment_boundary(0x4000));
  REQUIRE(l.try_append_pages(pfns, 0, pfns.size() * 4096 - 0x800));
  const std::vector<phys_range> want = {
      phys_range{phys_addr{10 * 4096}, 0x1000}, phys_range{phys_addr{20 * 4096}, 0x2000},
      phys_range{phys_addr{22 * 4096}, 0x2000}, phys_range{phys_addr{24 * 4096}, 0x1000},
      phys_range{phys_addr{40 * 4096}, 0x2000}, phys_range{phys_addr{50 * 4096}, 0x800}};
  CHECK(to_vec(l) == want);
  CHECK(l.lowest().value() == 10 * 4096);
  CHECK(l.highest().value() == 50 * 4096 + 0x7ff);
}

TEST_CASE("range_list: heap segments grow geometrically from a small first one",
          "[range_list][alloc]") {
  phyr::fault_state fs;
  flist l{phyr::fault_injecting_allocator{&fs}};
  constexpr std::uint64_t k = flist::inline_capacity;
  STATIC_REQUIRE(flist::first_segment_bytes == 96);  // 1.25x the 80-byte inline head
  for (std::uint64_t i = 0; i < k + 1; ++i) REQUIRE(l.try_append(pr(i * 0x2000, 0x1000)));
  // the inline entries + one in the first heap segment
  CHECK(l.heap_bytes() == flist::first_segment_bytes);
  const std::uint64_t first = flist::capacity_of(flist::first_segment_bytes);
  CHECK(first == 5);
  for (std::uint64_t i = k + 1; i < k + first + 1; ++i)
    REQUIRE(l.try_append(pr(i * 0x2000, 0x1000)));
  // the first segment full, then one of 112 bytes (1.25x, rounded down to whole entries)
  CHECK(l.heap_bytes() == flist::first_segment_bytes + 112);
}

TEST_CASE("range_list: try_append_pages of an I/O takes one heap segment sized to its runs",
          "[range_list][alloc]") {
  phyr::fault_state fs;
  flist l{phyr::fault_injecting_allocator{&fs}};
  constexpr std::size_t ki = flist::inline_capacity;
  // Up to the inline capacity, a scattered I/O allocates nothing.
  std::vector<std::uint64_t> pfns(ki);
  for (std::size_t i = 0; i < pfns.size(); ++i) pfns[i] = 2 * i;
  REQUIRE(l.try_append_pages(pfns, 0, pfns.size() * 4096));
  CHECK(l.heap_bytes() == 0);
  CHECK(fs.calls == 0);
  l.clear();
  pfns.push_back(2 * ki);
  REQUIRE(l.try_append_pages(pfns, 0, pfns.size() * 4096));
  // the inline entries + one in a heap segment of exactly one entry
  CHECK(l.heap_bytes() == 16 + 16);
  CHECK(fs.calls == 1);
  // 256 scattered pages (a 1 MiB I/O): the entries past the inline ones, one allocation
  flist io{phyr::fault_injecting_allocator{&fs}};
  std::vector<std::uint64_t> mib(256);
  for (std::size_t i = 0; i < mib.size(); ++i) mib[i] = 3 * i;
  REQUIRE(io.try_append_pages(mib, 0x10, mib.size() * 4096 - 0x20));
  CHECK(io.size() == 256);
  CHECK(io.heap_bytes() == 16 + (256 - ki) * 16);
  CHECK(fs.calls == 2);
  // 49 entries (the THP trace's count): 32 bytes per entry is what an exactly sized
  // scatterlist costs; the list stays within 1.1x of that.
  flist m{phyr::fault_injecting_allocator{&fs}};
  std::vector<std::uint64_t> frag(49);
  for (std::size_t i = 0; i < frag.size(); ++i) frag[i] = 2 * i;
  REQUIRE(m.try_append_pages(frag, 0, frag.size() * 4096));
  CHECK(m.bytes_used() == sizeof(flist) + 16 + (49 - ki) * 16);
  CHECK(m.bytes_used() <= (32 * 49 + 16) * 11 / 10);
  // A long list (no count: more than 512 pages) is almost all full page-sized segments:
  // under 16.3 bytes per entry.
  std::vector<std::uint64_t> huge(100000);
  for (std::size_t i = 0; i < huge.size(); ++i) huge[i] = 2 * i;
  flist h{phyr::fault_injecting_allocator{&fs}};
  REQUIRE(h.try_append_pages(huge, 0, huge.size() * 4096));
  CHECK(static_cast<double>(h.bytes_used()) / 100000 < 16.3);
  // More runs than a page holds: the first segment is a page, the rest grow as usual.
  flist big{phyr::fault_injecting_allocator{&fs}};
  std::vector<std::uint64_t> two(500);
  for (std::size_t i = 0; i < two.size(); ++i) two[i] = 3 * i;
  REQUIRE(big.try_append_pages(two, 0, two.size() * 4096));
  CHECK(big.size() == 500);
  // If that allocation fails, the append still succeeds with the geometric sizes...
  fs.fail_at = fs.calls + 1;
  flist fb{phyr::fault_injecting_allocator{&fs}};
  REQUIRE(fb.try_append_pages(mib, 0, mib.size() * 4096));
  CHECK(fb.size() == 256);
  CHECK(fb.heap_bytes() > 16 + (256 - ki) * 16);
  fs.fail_at = 0;
  // ...and an append that fails after taking it (500 runs after one entry: the page-sized
  // first segment, then one more) gives it back: the list is as it was and the allocator even.
  std::uint64_t k = 2;
  for (;; ++k) {
    phyr::fault_state f2;
    flist x{phyr::fault_injecting_allocator{&f2}};
    REQUIRE(x.try_append(pr(0x10000000, 0x1000)));
    f2.fail_at = f2.calls + k;
    const auto r = x.try_append_pages(two, 0, two.size() * 4096);
    INFO("failing allocation " << k);
    if (r) {
      CHECK(x.size() == 501);
      break;
    }
    CHECK(r.error() == errc::out_of_memory);
    CHECK(x.size() == 1);
    CHECK(x.heap_bytes() == 0);
    CHECK(f2.live_bytes == 0);
  }
  CHECK(k == 3);  // the allocation after the first one failed
}

TEST_CASE("range_list: the borrow-check setting is part of the type's mangled name",
          "[range_list]") {
  // PHYR_ENABLE_BORROW_CHECKS changes sizeof(range_list) (the counter); the inline ABI
  // namespace makes translation units built with different settings fail to link instead
  // of reading one layout as the other.
#if PHYR_ENABLE_BORROW_CHECKS
  STATIC_REQUIRE(std::is_same_v<list, phyr::v0::borrow_checked::range_list<phys_range>>);
#else
  STATIC_REQUIRE(std::is_same_v<list, phyr::v0::borrow_unchecked::range_list<phys_range>>);
#endif
  STATIC_REQUIRE(std::is_same_v<phyr::range_list_view<phys_range>,
                                phyr::v0::PHYR_BORROW_ABI_NAMESPACE::range_list_view<phys_range>>);
}

TEST_CASE("range_list: short page arrays into an empty list match the model and allocate nothing",
          "[range_list][property][alloc]") {
  // The per-I/O shapes: one physically contiguous run, or no more pages than inline entries,
  // go straight into the inline entries; every other shape (more runs, a run past the limits,
  // the same span in another order) must give what the general path gives.
  std::mt19937_64 rng{14};
  for (int iter = 0; iter < 3000; ++iter) {
    const std::size_t n = 1 + rng() % 40;
    std::vector<std::uint64_t> pfns(n);
    const std::uint64_t base = rng() % (1ull << 30);
    const unsigned shape = rng() % 4;
    for (std::size_t i = 0; i < n; ++i) {
      switch (shape) {
        case 0: pfns[i] = base + i; break;                                   // one run
        case 1: pfns[i] = rng() % (1ull << 30); break;                       // scattered
        case 2: pfns[i] = base + (i ^ 1); break;                             // same span, swapped
        default: pfns[i] = base + i + (i >= n / 2 ? 1 + rng() % 3 : 0); break;  // two runs
      }
    }
    const std::uint64_t off = rng() % 4096;
    const std::uint64_t cut = rng() % 4096;
    std::uint64_t total = n * 4096 - off - cut;
    if (n == 1) total = 1 + rng() % (4096 - off);
    phyr::fault_state fs;
    flist l{phyr::fault_injecting_allocator{&fs}};
    model m;
    if (rng() % 2 == 0) {
      m.max_seg = std::uint64_t{4096} << (rng() % 6);
      REQUIRE(l.try_set_max_segment(m.max_seg));
    }
    if (rng() % 3 == 0) {
      m.boundary = std::uint64_t{4096} << (rng() % 6);
      REQUIRE(l.try_set_segment_boundary(m.boundary));
    }
    REQUIRE(l.try_append_pages(pfns, off, total, range_flags::pinned));
    std::uint64_t left = total;
    std::uint64_t lo = ~0ull, hi = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint64_t a = (pfns[i] << 12) + (i == 0 ? off : 0);
      const std::uint64_t len = std::min<std::uint64_t>(left, 4096 - (i == 0 ? off : 0));
      m.append(phys_range{phys_addr{a}, len, range_flags::pinned});
      lo = std::min(lo, a);
      hi = std::max(hi, a + len - 1);
      left -= len;
    }
    REQUIRE(to_vec(l) == m.v);
    CHECK(l.size() == m.v.size());
    CHECK(l.total_bytes() == total);
    CHECK(l.lowest() == phys_addr{lo});
    CHECK(l.highest() == phys_addr{hi});
    if (m.v.size() <= list::inline_capacity) {
      CHECK(fs.calls == 0);
      CHECK(l.heap_bytes() == 0);
    }
  }
}

TEST_CASE("range_list: a short page array that does not fit inline fails cleanly at every "
          "allocation",
          "[range_list][alloc]") {
  // Ends n - 1 frames apart as one run's are, but six runs: more than the inline entries, so
  // the short pass and the one-run test give up and the general path allocates a segment;
  // each failure leaves the empty list empty and leaks nothing.
  const std::vector<std::uint64_t> pfns{10, 12, 11, 14, 13, 15};
  STATIC_REQUIRE(list::inline_capacity < 6);
  int failures = 0;
  for (std::uint64_t k = 1;; ++k) {
    phyr::fault_state fs;
    bool done = false;
    {
      flist l{phyr::fault_injecting_allocator{&fs}};
      fs.fail_at = k;
      const auto r = l.try_append_pages(pfns, 0x20, 6 * 4096 - 0x40);
      if (r) {
        done = true;
        CHECK(to_vec(l) == std::vector<phys_range>{phys_range{phys_addr{0xa020}, 0xfe0},
                                                   phys_range{phys_addr{0xc000}, 0x1000},
                                                   phys_range{phys_addr{0xb000}, 0x1000},
                                                   phys_range{phys_addr{0xe000}, 0x1000},
                                                   phys_range{phys_addr{0xd000}, 0x1000},
                                                   phys_range{phys_addr{0xf000}, 0xfe0}});
      } else {
        ++failures;
        CHECK(r.error() == errc::out_of_memory);
        CHECK(l.empty());
        CHECK(l.begin() == l.end());
        CHECK(l.total_bytes() == 0);
        CHECK(l.heap_bytes() == 0);
        REQUIRE(l.try_append(phys_range{phys_addr{0x1000}, 0x1000}));  // still usable
        CHECK(to_vec(l) == std::vector<phys_range>{phys_range{phys_addr{0x1000}, 0x1000}});
      }
    }
    CHECK(fs.live == 0);
    CHECK(fs.live_bytes == 0);
    if (done) break;
  }
  CHECK(failures > 0);  // the input did reach an allocation
}

TEST_CASE("range_list: bad frames into an empty list are rejected unchanged, the top page is fine",
          "[range_list]") {
  list l;
  const std::vector<std::uint64_t> big_one{1ull << 52};
  CHECK(l.try_append_pages(big_one, 0, 4096).error() == errc::invalid_argument);
  const std::vector<std::uint64_t> big_run{(1ull << 52) - 1, 1ull << 52};
  CHECK(l.try_append_pages(big_run, 0, 2 * 4096).error() == errc::invalid_argument);
  const std::vector<std::uint64_t> wrap{~0ull, 0};
  CHECK(l.try_append_pages(wrap, 0, 2 * 4096).error() == errc::invalid_argument);
  // More runs than inline entries (the counting path): the bad frame is found before anything
  // is allocated, wherever it is.
  for (std::size_t at = 0; at < 5; ++at) {
    phyr::fault_state fs;
    flist f{phyr::fault_injecting_allocator{&fs}};
    std::vector<std::uint64_t> runs{5, 9, 13, 17, 21};
    runs[at] = 1ull << 52;
    CHECK(f.try_append_pages(runs, 0, 5 * 4096).error() == errc::invalid_argument);
    CHECK(f.empty());
    CHECK(fs.calls == 0);
  }
  CHECK(l.empty());
  CHECK(l.total_bytes() == 0);
  // The last page below 2^64: its entry ends exactly at 2^64.
  const std::vector<std::uint64_t> top{(1ull << 52) - 2, (1ull << 52) - 1};
  REQUIRE(l.try_append_pages(top, 0x10, 2 * 4096 - 0x10));
  CHECK(to_vec(l) == std::vector<phys_range>{phys_range{phys_addr{~0ull - 0x1fff + 0x10},
                                                        2 * 4096 - 0x10}});
  CHECK(l.highest() == phys_addr{~0ull});
}

TEST_CASE("range_list: an empty page array is invalid whatever the lengths claim",
          "[range_list]") {
  // No frame to read: the short-input pass must not look at p[0] even when the lengths would
  // pass its arithmetic (an offset and a length that wrap the empty span's size).
  const std::vector<std::uint64_t> none;
  for (const auto& [off, len] : {std::pair<std::uint64_t, std::uint64_t>{0, 4096},
                                 {50, ~0ull - 99},
                                 {4095, ~0ull - 4094},
                                 {1, 1}}) {
    list l;
    CAPTURE(off, len);
    CHECK(l.try_append_pages(std::span<const std::uint64_t>(none.data(), 0), off, len).error() ==
          errc::invalid_argument);
    CHECK(l.empty());
  }
}

TEST_CASE("range_list: a bad frame anywhere in a short page array is rejected unchanged",
          "[range_list]") {
  // Up to 16 pages into an empty list take one pass that checks the frames at its end: a
  // frame >= 2^52, or a run that wraps past 2^64, must be refused wherever it sits, in one run
  // or between runs, with or without limits, and nothing may be left behind.
  for (std::size_t n = 2; n <= 16; ++n) {
    for (std::size_t at = 0; at < n; ++at) {
      for (const int shape : {0, 1, 2}) {
        std::vector<std::uint64_t> pfns(n);
        for (std::size_t i = 0; i < n; ++i) pfns[i] = shape == 0 ? 100 + i : 100 + 7 * (i / 4) + i;
        if (shape == 2) {
          pfns[at] = ~0ull;  // followed by 0: consecutive modulo 2^64, still a bad frame
          if (at + 1 < n) pfns[at + 1] = 0;
        } else {
          pfns[at] = shape == 0 ? (1ull << 52) + at : (1ull << 63) | pfns[at];
        }
        for (const bool limited : {false, true}) {
          CAPTURE(n, at, shape, limited);
          phyr::fault_state fs;
          flist l{phyr::fault_injecting_allocator{&fs}};
          if (limited) REQUIRE(l.try_set_max_segment(8 * 4096));
          const auto r = l.try_append_pages(pfns, 0x40, n * 4096 - 0x80);
          REQUIRE_FALSE(r);
          CHECK(r.error() == errc::invalid_argument);
          CHECK(l.empty());
          CHECK(l.total_bytes() == 0);
          CHECK(l.gap_bits() == 0);
          CHECK(l.begin() == l.end());
          CHECK(fs.live == 0);
        }
      }
    }
  }
}

namespace {
// The gaps of a sequence of entries, exactly: the address pair of every junction where a range
// does not start right after the previous one.
std::vector<std::uint64_t> model_gaps(const std::vector<phys_range>& v) {
  std::vector<std::uint64_t> g;
  for (std::size_t i = 1; i < v.size(); ++i) {
    const std::uint64_t pl = v[i - 1].last().value();
    if (pl == ~0ull || pl + 1 != v[i].addr().value()) g.push_back((pl + 1) | v[i].addr().value());
  }
  return g;
}
// gap_bits' promise: for every 2^k, a summary with no bit below 2^k means every gap is 2^k
// aligned. Returns the first k it fails for, or 64.
template <class L>
unsigned gap_bits_broken_at(const L& l) {
  const std::vector<std::uint64_t> gaps = model_gaps(to_vec(l));
  for (unsigned k = 1; k < 64; ++k) {
    const std::uint64_t m = (std::uint64_t{1} << k) - 1;
    if ((l.gap_bits() & m) != 0) continue;
    for (const std::uint64_t x : gaps)
      if ((x & m) != 0) return k;
  }
  return 64;
}
}  // namespace

TEST_CASE("range_list: gap_bits covers every gap through appends, page arrays, splices, slices",
          "[range_list]") {
  std::mt19937_64 g(0x9a95ull);
  auto pick = [&](std::uint64_t lo, std::uint64_t hi) {
    return std::uniform_int_distribution<std::uint64_t>{lo, hi}(g);
  };
  int exact = 0, page_lists = 0, spliced = 0, sliced = 0;
  for (int iter = 0; iter < 2000; ++iter) {
    INFO("iteration " << iter);
    list l, other;
    const bool limited = pick(0, 2) == 0;
    if (limited) {
      REQUIRE(l.try_set_max_segment(4096 * pick(1, 4)));
      REQUIRE(other.try_set_max_segment(l.max_segment()));
    }
    std::uint64_t a = pick(0, 3) == 0 ? ~0ull - (1 << 20) : pick(0, 1 << 24);
    bool pages_used = false;
    for (int op = static_cast<int>(pick(1, 12)); op > 0; --op) {
      list& dst = pick(0, 3) == 0 ? other : l;
      if (pick(0, 2) == 0) {
        // A page array: scattered or consecutive frames, a first offset and a cut last page.
        std::vector<std::uint64_t> pfns(pick(1, 9));
        std::uint64_t f = pick(1, 1 << 20);
        for (auto& p : pfns) {
          p = f;
          f += pick(0, 1) == 0 ? 1 : pick(2, 50);
        }
        const std::uint64_t off = pick(0, 1) == 0 ? 0 : pick(0, 4095);
        const std::uint64_t span = pfns.size() * 4096 - off;
        const std::uint64_t len = span - (pick(0, 1) == 0 ? 0 : pick(0, 4095 - (pfns.size() == 1 ? off : 0)));
        if (dst.try_append_pages(pfns, off, len)) pages_used = true;
      } else {
        const std::uint64_t len = pick(1, 9000);
        if (a > ~0ull - len) a = pick(0, 1 << 24);
        (void)dst.try_append(pr(a, len, pick(0, 3) == 0 ? range_flags::pinned : range_flags::none));
        switch (pick(0, 3)) {
          case 0: a += len; break;                               // contiguous
          case 1: a = ((a + len) | 4095) + 1; break;             // next page
          case 2: a += len + pick(1, 5000); break;               // anywhere
          default: a = ((a + len) & ~511ull) + 512 * pick(1, 8);  // 512-aligned
        }
      }
      CHECK(gap_bits_broken_at(dst) == 64);
    }
    if (!pages_used && !limited) {
      // Built by try_append alone the summary is exact: the OR of the gaps.
      std::uint64_t want = 0;
      for (const std::uint64_t x : model_gaps(to_vec(l))) want |= x;
      CHECK(l.gap_bits() == want);
      ++exact;
    }
    if (pages_used) ++page_lists;
    if (pick(0, 1) == 0 && l.try_splice_back(std::move(other))) {
      ++spliced;
      CHECK(gap_bits_broken_at(l) == 64);
    }
    CHECK(gap_bits_broken_at(l.view()) == 64);
    CHECK(l.view().gap_bits() == l.gap_bits());
    if (l.total_bytes() > 1) {
      const std::uint64_t off = pick(0, l.total_bytes() - 1);
      const auto s = l.try_slice(off, pick(1, l.total_bytes() - off));
      REQUIRE(s);
      CHECK(gap_bits_broken_at(*s) == 64);
      ++sliced;
    }
    l.clear();
    CHECK(l.gap_bits() == 0);
  }
  CHECK(exact > 100);
  CHECK(page_lists > 300);
  CHECK(spliced > 300);
  CHECK(sliced > 1000);
  // Page arrays certify page-aligned gaps: one summary bit per page run, never lower bits.
  list p;
  const std::uint64_t frames[] = {0x100, 0x101, 0x200, 0x305, 0x306};
  REQUIRE(p.try_append_pages(frames, 0x80, 5 * 4096 - 0x80 - 0x10));
  CHECK((p.gap_bits() & 0xfff) == 0);
  CHECK(p.gap_bits() != 0);
}

namespace {
// Random ranges for try_append_all: runs that continue the previous range (to merge), jumps,
// pinned flags now and then, lengths from one byte to a few hundred KiB.
std::vector<phys_range> random_ranges(std::mt19937_64& rng, std::size_t n) {
  std::vector<phys_range> v;
  std::uint64_t cur = rng() % (1ull << 40);
  for (std::size_t i = 0; i < n; ++i) {
    if (rng() % 3 == 0) cur = rng() % (1ull << 40);
    const std::uint64_t len = 1 + rng() % (rng() % 2 ? 300000 : 5000);
    const auto f = (rng() % 5 == 0) ? range_flags::pinned : range_flags::none;
    v.push_back(phys_range{phys_addr{cur}, len, f});
    cur += len;
  }
  return v;
}

template <class L>
void require_same_list(const L& got, const L& want) {
  REQUIRE(to_vec(got) == to_vec(want));
  REQUIRE(state_of(got) == state_of(want));
}
}  // namespace

TEST_CASE("range_list: try_append_all equals try_append one by one, with and without limits",
          "[range_list][property]") {
  std::mt19937_64 rng{2026};
  for (int iter = 0; iter < 300; ++iter) {
    list bulk, single;
    model m;
    if (iter % 3 == 1) {
      m.max_seg = 4096 + rng() % 100000;
      REQUIRE(bulk.try_set_max_segment(m.max_seg));
      REQUIRE(single.try_set_max_segment(m.max_seg));
    }
    if (iter % 5 == 2) {
      m.boundary = std::uint64_t{4096} << (rng() % 6);
      REQUIRE(bulk.try_set_segment_boundary(m.boundary));
      REQUIRE(single.try_set_segment_boundary(m.boundary));
    }
    // A prefix appended one by one, so the bulk call starts on a list in any state: empty,
    // inline, a part-filled heap segment.
    const auto prefix = random_ranges(rng, rng() % 40);
    for (const auto& r : prefix) {
      REQUIRE(bulk.try_append(r));
      REQUIRE(single.try_append(r));
      m.append(r);
    }
    const auto rs = random_ranges(rng, rng() % 1500);
    REQUIRE(bulk.try_append_all(rs));
    for (const auto& r : rs) {
      REQUIRE(single.try_append(r));
      m.append(r);
    }
    require_same_list(bulk, single);
    REQUIRE(to_vec(bulk) == m.v);
  }
}

TEST_CASE("range_list: try_append_all takes any iterable of ranges, a range_list too",
          "[range_list]") {
  list src;
  REQUIRE(src.try_append(phys_range{phys_addr{0x10000}, 0x1000}));
  REQUIRE(src.try_append(phys_range{phys_addr{0x30000}, 0x200}));
  list dst;
  REQUIRE(dst.try_append(phys_range{phys_addr{0xf000}, 0x1000}));  // src's first continues it
  REQUIRE(dst.try_append_all(src));
  REQUIRE(to_vec(dst) == std::vector<phys_range>{phys_range{phys_addr{0xf000}, 0x2000},
                                                 phys_range{phys_addr{0x30000}, 0x200}});
  const phys_range arr[] = {phys_range{phys_addr{0x30200}, 0x100}};
  REQUIRE(dst.try_append_all(arr));
  REQUIRE(dst.size() == 2);
  REQUIRE(dst.total_bytes() == 0x2300);
  // Appending a list to itself would read what it writes.
  const auto before = to_vec(dst);
  auto self = dst.try_append_all(dst);
  REQUIRE(!self);
  REQUIRE(self.error() == errc::invalid_argument);
  REQUIRE(to_vec(dst) == before);
  // An empty input changes nothing.
  REQUIRE(dst.try_append_all(std::vector<phys_range>{}));
  REQUIRE(to_vec(dst) == before);
}

TEST_CASE("range_list: try_append_all rejects a bad range anywhere and changes nothing",
          "[range_list]") {
  std::mt19937_64 rng{11};
  for (int limits = 0; limits < 2; ++limits) {
    for (const std::size_t at : {std::size_t{0}, std::size_t{3}, std::size_t{400}}) {
      list l;
      if (limits != 0) REQUIRE(l.try_set_max_segment(65536));
      REQUIRE(l.try_append_all(random_ranges(rng, 30)));
      const list_state before = state_of(l);
      auto rs = random_ranges(rng, 500);
      // A zero length (only make_unchecked builds one) ...
      auto bad = rs;
      bad[at] = phys_range::make_unchecked(0x5000, 0, range_flags::none);
      auto r = l.try_append_all(bad);
      REQUIRE(!r);
      CHECK(r.error() == errc::invalid_argument);
      CHECK(state_of(l) == before);
      // ... and a byte total past 2^64: 256 ranges of max_len (2^56 - 1) bytes, one byte
      // apart so none merges, pass it with what the list already holds (without limits:
      // under a 64 KiB limit each would first be cut into 2^40 entries).
      if (limits != 0) continue;
      auto big = rs;
      std::vector<phys_range> huge;
      for (std::uint64_t k = 0; k < 256; ++k)
        huge.push_back(phys_range{phys_addr{k << 56}, phys_range::max_len});
      big.insert(big.begin() + static_cast<std::ptrdiff_t>(at), huge.begin(), huge.end());
      r = l.try_append_all(big);
      REQUIRE(!r);
      CHECK(r.error() == errc::overflow);
      CHECK(state_of(l) == before);
    }
  }
}

TEST_CASE("range_list: try_append_all leaves the list as it was at every allocation failure",
          "[range_list][alloc]") {
  std::mt19937_64 rng{5};
  const auto prefix = random_ranges(rng, 300);
  const auto rs = random_ranges(rng, 2000);
  for (int limits = 0; limits < 2; ++limits) {
    bool completed = false;
    for (std::uint64_t k = 1; !completed; ++k) {
      phyr::fault_state fs;
      {
        flist l{phyr::fault_injecting_allocator{&fs}};
        if (limits != 0) REQUIRE(l.try_set_max_segment(8192));
        REQUIRE(l.try_append_all(prefix));
        const list_state before = state_of(l);
        fs.fail_at = fs.calls + k;
        auto r = l.try_append_all(rs);
        if (r) {
          completed = true;
          list want;
          if (limits != 0) REQUIRE(want.try_set_max_segment(8192));
          for (const auto& x : prefix) REQUIRE(want.try_append(x));
          for (const auto& x : rs) REQUIRE(want.try_append(x));
          REQUIRE(to_vec(l) == to_vec(want));
        } else {
          check_failed_cleanly(l, before, r, fs);
        }
      }
      CHECK(fs.live == 0);
      CHECK(fs.live_bytes == 0);
    }
  }
}

TEST_CASE("range_list: try_append_all merging past max_len fills the tail first",
          "[range_list]") {
  list bulk, single;
  const phys_range rs[] = {phys_range{phys_addr{0}, phys_range::max_len - 4096},
                           phys_range{phys_addr{phys_range::max_len - 4096}, 3 * 4096},
                           phys_range{phys_addr{phys_range::max_len + 2 * 4096}, 4096}};
  REQUIRE(bulk.try_append_all(rs));
  for (const auto& r : rs) REQUIRE(single.try_append(r));
  require_same_list(bulk, single);
  REQUIRE(bulk.size() == 2);
}
