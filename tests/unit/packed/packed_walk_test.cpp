// packed_list::for_each's walk variants (a list of one range, single-mode lists of pages or of
// byte-granular chunks, mixed modes, flags, escapes), each checked against a plain model on
// seeded random inputs, across segment boundaries, after clear() and after a failed append;
// and the checked path (from_words) still rejecting a corrupted word of such lists. In this
// Debug build every decoded entry is also asserted to have a mode the list recorded
// (PHYR_ASSERT in walk_from / walk_loop), so a list whose recorded modes were wrong aborts.
#include <catch2/catch.hpp>
#include <cstdint>
#include <phyr/packed/packed_list.hpp>
#include <random>
#include <span>
#include <vector>

#include "packed_model.hpp"
#include "support/phys_ranges.hpp"

namespace {
using namespace phyr_test;
using list = phyr::packed_list<phyr::cpu_phys>;
using flist = phyr::packed_list<phyr::cpu_phys, phyr::fault_injecting_allocator>;
using packed_model::model_append;
using packed_model::ranges_of;

constexpr std::uint64_t page = 4096;

template <class L>
std::vector<std::uint32_t> words_of(const L& l) {
  std::vector<std::uint32_t> w(l.word_count());
  REQUIRE(l.try_copy_words(w).value() == w.size());
  return w;
}

// The modes of the committed entries (all but the last entry) as the stored words say.
std::vector<phyr::packed_mode> committed_modes(const list& l) {
  const auto w = words_of(l);
  std::vector<phyr::packed_mode> m;
  for (std::size_t i = 0; i < w.size();) {
    const auto e = phyr::packed_format::decode_entry(w.data() + i);
    m.push_back(e.mode);
    i += e.words;
  }
  if (!m.empty()) m.pop_back();  // the open tail is not a committed entry
  return m;
}

// for_each agrees with the model both when `f` keeps whole ranges and when it only sums
// lengths and addresses (the two compile to different loops: the second keeps its
// accumulators in registers).
template <class L>
void check_walk(const L& l, const std::vector<phys_range>& model) {
  std::vector<phys_range> fe;
  l.for_each([&](phys_range r) { fe.push_back(r); });
  REQUIRE(fe == model);
  REQUIRE(ranges_of(l) == model);
  std::uint64_t len_sum = 0, addr_sum = 0, want_len = 0, want_addr = 0;
  l.for_each([&](const phys_range& r) {
    len_sum += r.len();
    addr_sum += r.addr().value();
  });
  for (const phys_range& r : model) {
    want_len += r.len();
    want_addr += r.addr().value();
  }
  REQUIRE(len_sum == want_len);
  REQUIRE(addr_sum == want_addr);
  REQUIRE(len_sum == l.total_bytes());
}

struct gen {
  std::mt19937_64 rng;
  std::uint64_t below(std::uint64_t n) { return rng() % n; }
  // A naturally aligned block of 2^k pages, k < 12, never adjacent to the previous one
  // (addresses grow with gaps).
  std::uint64_t next_addr = std::uint64_t{1} << 32;
  phys_range block(range_flags f = range_flags::none) {
    const unsigned k = static_cast<unsigned>(below(12));
    const std::uint64_t size = page << k;
    const std::uint64_t a = ((next_addr + size) / size + 1) * size;  // at least one gap
    next_addr = a + size;
    return pr(a, size, f);
  }
  // A byte-granular chunk, not adjacent to the previous. Neither end is page aligned, so it is
  // a mode 2 entry wherever it sits (also first or last, where the header could trim a page).
  phys_range chunk(range_flags f = range_flags::none) {
    std::uint64_t len = 1 + below(3 * page);
    std::uint64_t a = next_addr + 1 + below(page);
    if (a % page == 0) ++a;
    if ((a + len) % page == 0) ++len;
    next_addr = a + len;
    return pr(a, len, f);
  }
  // Order-aligned run of 3..40 pages (mode 1 inside the list).
  phys_range run(range_flags f = range_flags::none) {
    const std::uint64_t pages = 3 + below(38);
    const std::uint64_t a = (next_addr / page + 2) * page;
    next_addr = a + pages * page;
    return pr(a, pages * page, f);
  }
  // A non-page-granular range too long for mode 2: an escape.
  phys_range escape(range_flags f = range_flags::none) {
    const std::uint64_t len = (std::uint64_t{1} << 25) + 1 + below(1000);
    const std::uint64_t a = next_addr + 3;
    next_addr = a + len;
    return pr(a, len, f);
  }
};

enum class shape { blocks, chunks, mixed, mixed_flags, escapes, escapes_flags };

std::vector<phys_range> make(gen& g, shape s, std::size_t n) {
  std::vector<phys_range> v;
  for (std::size_t i = 0; i < n; ++i) {
    const range_flags f = (s == shape::mixed_flags || s == shape::escapes_flags) && g.below(3) == 0
                              ? static_cast<range_flags>(1 + g.below(31))
                              : range_flags::none;
    switch (s) {
      case shape::blocks:
        v.push_back(g.block());
        break;
      case shape::chunks:
        v.push_back(g.chunk());
        break;
      case shape::mixed:
      case shape::mixed_flags: {
        const auto k = g.below(3);
        v.push_back(k == 0 ? g.block(f) : k == 1 ? g.chunk(f) : g.run(f));
        break;
      }
      case shape::escapes:
      case shape::escapes_flags: {
        const auto k = g.below(8);
        v.push_back(k == 0 ? g.escape(f) : k < 3 ? g.block(f) : k < 6 ? g.chunk(f) : g.run(f));
        break;
      }
    }
  }
  return v;
}

}  // namespace

TEST_CASE("packed walk: every shape, every length from 1 range up, equals the model",
          "[packed][walk][property]") {
  for (const shape s : {shape::blocks, shape::chunks, shape::mixed, shape::mixed_flags,
                        shape::escapes, shape::escapes_flags}) {
    for (std::uint64_t seed = 1; seed <= 12; ++seed) {
      gen g{std::mt19937_64(seed * 31 + static_cast<unsigned>(s))};
      // Lengths 1, 2, 3 (a list of one range, one committed entry, two), then long lists
      // crossing segment boundaries (segments of 256 bytes doubling to 4 KiB).
      const std::size_t n = seed <= 3 ? seed : 1 + g.below(seed % 4 == 0 ? 3000 : 200);
      const auto in = make(g, s, n);
      std::vector<phys_range> model;
      for (const phys_range& r : in) model_append(model, r);
      CAPTURE(static_cast<int>(s), seed, n);
      list one;
      for (const phys_range& r : in) REQUIRE(one.try_append(r));
      check_walk(one, model);
      list all;
      REQUIRE(all.try_append_all(in));
      check_walk(all, model);
      auto clone = all.try_clone();
      REQUIRE(clone);
      check_walk(*clone, model);
      auto back = list::from_words(all.header(), words_of(all));
      REQUIRE(back);
      check_walk(*back, model);
      // The shapes meant to be single-mode are.
      const auto modes = committed_modes(all);
      if (s == shape::blocks)
        for (auto m : modes) REQUIRE(m == phyr::packed_mode::block);
      if (s == shape::chunks)
        for (auto m : modes) REQUIRE(m == phyr::packed_mode::bytes);
    }
  }
}

TEST_CASE("packed walk: page lists with a trimmed first page and a cut last page",
          "[packed][walk][property]") {
  for (std::uint64_t seed = 1; seed <= 40; ++seed) {
    std::mt19937_64 rng(seed);
    std::vector<std::uint64_t> pfns;
    const std::size_t n = 1 + rng() % (seed % 5 == 0 ? 5000 : 40);
    std::uint64_t p = 1000 + rng() % 1000;
    for (std::size_t i = 0; i < n; ++i) {
      pfns.push_back(p);
      p += (seed % 3 == 0 && rng() % 2 == 0) ? 1 : 2 + rng() % 5;  // some runs, mostly gaps
    }
    const std::uint64_t first = rng() % page;
    const std::uint64_t cut = rng() % page;
    const std::uint64_t total = n * page - first - cut;
    if (total == 0) continue;
    list l;
    REQUIRE(l.try_append_pages(pfns, first, total));
    phyr::range_list<phys_range> rl;
    REQUIRE(rl.try_append_pages(pfns, first, total));
    std::vector<phys_range> model;
    for (const phys_range& r : rl) model.push_back(r);
    CAPTURE(seed, n, first, cut);
    check_walk(l, model);
  }
}

TEST_CASE("packed walk: a list changing shape (clear, then other modes) walks right each time",
          "[packed][walk]") {
  gen g{std::mt19937_64(77)};
  list l;
  std::vector<phys_range> model;
  auto add = [&](const phys_range& r) {
    REQUIRE(l.try_append(r));
    model_append(model, r);
  };
  for (int i = 0; i < 300; ++i) add(g.chunk());  // bytes only
  check_walk(l, model);
  l.clear();
  model.clear();
  for (int i = 0; i < 300; ++i) add(g.block());  // blocks only, in the reused segments
  check_walk(l, model);
  add(g.chunk());  // the block list gains one chunk (the tail), still block-only committed
  check_walk(l, model);
  add(g.block());  // now a committed chunk: mixed
  check_walk(l, model);
  add(g.block(range_flags::driver0));  // flags
  add(g.block());
  check_walk(l, model);
  l.clear();
  model.clear();
  add(g.escape());
  add(g.chunk());
  check_walk(l, model);
}

TEST_CASE("packed walk: a failed append leaves a single-mode list walking as before",
          "[packed][walk][alloc]") {
  // A list of pages whose next append (byte-granular chunks that need a new segment) fails:
  // the rolled-back list must still walk as the block list it was.
  for (std::uint64_t k = 1; k <= 3; ++k) {
    phyr::fault_state fs;
    {
      flist l{phyr::fault_injecting_allocator{&fs}};
      gen g{std::mt19937_64(k)};
      std::vector<phys_range> model, chunks;
      for (int i = 0; i < 40; ++i) {
        const phys_range r = g.block();
        REQUIRE(l.try_append(r));
        model_append(model, r);
      }
      for (int i = 0; i < 2000; ++i) chunks.push_back(g.chunk());
      fs.fail_at = fs.calls + k;
      REQUIRE(l.try_append_all(chunks).error() == errc::out_of_memory);
      check_walk(l, model);
      // And the same list then takes the chunks.
      fs.fail_at = 0;
      REQUIRE(l.try_append_all(chunks));
      for (const phys_range& r : chunks) model_append(model, r);
      check_walk(l, model);
    }
    REQUIRE(fs.live == 0);
  }
}

TEST_CASE("packed walk: from_words still rejects a corrupted word of a single-mode list",
          "[packed][walk][words][errors]") {
  gen g{std::mt19937_64(5)};
  list blocks, chunks;
  for (int i = 0; i < 50; ++i) REQUIRE(blocks.try_append(g.block()));
  for (int i = 0; i < 50; ++i) REQUIRE(chunks.try_append(g.chunk()));
  REQUIRE(list::from_words(blocks.header(), words_of(blocks)));
  REQUIRE(list::from_words(chunks.header(), words_of(chunks)));
  {
    // A block whose pfn is not a multiple of its size (order 3 at an odd pfn).
    auto w = words_of(blocks);
    phyr::detail::put_u64(w.data() + 20,
                          phyr::detail::make_head(phyr::packed_mode::block, 7, 3, 0));
    CHECK(list::from_words(blocks.header(), w).error() == errc::invalid_argument);
  }
  {
    // A byte-granular entry of length 0.
    auto w = words_of(chunks);
    w[30 + 2] &= 0xfff;  // clear length bits 19..0 (entry 10 starts at word 30)
    w[30 + 1] &= ~(std::uint32_t{31} << 20);  // and bits 24..20 in the head
    CHECK(list::from_words(chunks.header(), w).error() == errc::invalid_argument);
  }
  {
    // A mode flipped from bytes to escape: the list now ends mid-entry.
    auto w = words_of(chunks);
    w[w.size() - 3 + 1] |= std::uint32_t{3} << 30;
    CHECK(list::from_words(chunks.header(), w).error() == errc::invalid_argument);
  }
}
