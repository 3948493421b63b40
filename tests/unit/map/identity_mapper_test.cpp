// identity_mapper: aliasing, O(1) mask check, zero allocations, foreign-unmap rejection, and
// debug-build borrow detection.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <iterator>
#include <new>
#include <phyr/container/range_list.hpp>
#include <phyr/container/range_source.hpp>
#include <phyr/map/identity_mapper.hpp>
#include <phyr/map/mapper.hpp>
#include <random>
#include <type_traits>
#include <utility>
#include <vector>

using namespace phyr;

// ---- every heap allocation in this executable is counted -------------------------------------
namespace {
std::atomic<std::uint64_t> g_heap_allocs{0};
void* counted_alloc(std::size_t n, std::size_t align) noexcept {
  g_heap_allocs.fetch_add(1, std::memory_order_relaxed);
  if (n == 0) n = 1;
  if (align <= alignof(std::max_align_t)) return std::malloc(n);
  return std::aligned_alloc(align, (n + align - 1) / align * align);
}
}  // namespace

void* operator new(std::size_t n) {
  if (void* p = counted_alloc(n, alignof(std::max_align_t))) return p;
  std::abort();
}
void* operator new(std::size_t n, std::align_val_t a) {
  if (void* p = counted_alloc(n, static_cast<std::size_t>(a))) return p;
  std::abort();
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  return counted_alloc(n, alignof(std::max_align_t));
}
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return counted_alloc(n, static_cast<std::size_t>(a));
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }

namespace {

struct nic {};
struct gpu {};
constexpr auto to_dev = dma_direction::to_device;

range_list<phys_range> fragmented(std::size_t n, std::uint64_t base = 0x100000) {
  range_list<phys_range> l;
  for (std::size_t i = 0; i < n; ++i)
    must(l.try_append(phys_range{phys_addr{base + i * 0x2000}, 0x1000, range_flags::pinned}));
  return l;
}

// Runs `f` in a child process; true when the child died from a signal (a trapped assert).
template <class F>
bool dies(F f) {
  const pid_t pid = fork();
  if (pid == 0) {
    // Catch's handlers would report the trap as a failure of this test; let it kill the child.
    std::signal(SIGILL, SIG_DFL);
    std::signal(SIGTRAP, SIG_DFL);
    std::signal(SIGABRT, SIG_DFL);
    f();
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFSIGNALED(status);
}

}  // namespace

TEST_CASE("identity mapping presents every CPU range as the same DMA range") {
  range_list<phys_range> cpu;
  must(cpu.try_append(phys_range{phys_addr{0x1000}, 0x3000, range_flags::pinned}));
  must(cpu.try_append(phys_range{phys_addr{0x10000}, 0x10, range_flags::driver0}));
  must(cpu.try_append(phys_range{phys_addr{0xfff'ffff'f000}, 0x1000}));
  identity_mapper<nic> m;
  auto mp = m.try_map(cpu, to_dev);
  REQUIRE(mp);
  CHECK(mp->mapped());
  CHECK(mp->size() == cpu.size());
  CHECK(mp->total_bytes() == cpu.total_bytes());
  CHECK(mp->lowest() == dma_addr<nic>{0x1000});
  CHECK(mp->highest() == dma_addr<nic>{0xfff'ffff'ffff});
  std::vector<dma_range<nic>> got;
  for (dma_range<nic> r : *mp) got.push_back(r);
  REQUIRE(got.size() == 3);
  auto c = cpu.begin();
  for (const auto& d : got) {
    CHECK(d.addr().value() == c->addr().value());
    CHECK(d.len() == c->len());
    CHECK(d.flags() == c->flags());
    ++c;
  }
  must(m.try_unmap(std::move(*mp)));
  CHECK_FALSE(mp->mapped());
  CHECK(mp->size() == 0);
}

TEST_CASE("identity map and unmap allocate nothing, for 1 entry as for 100000") {
  for (std::size_t n : {std::size_t{1}, std::size_t{2}, std::size_t{100000}}) {
    fault_state fs;
    range_list<phys_range, fault_injecting_allocator> cpu{fault_injecting_allocator{&fs}};
    for (std::size_t i = 0; i < n; ++i)
      must(cpu.try_append(phys_range{phys_addr{0x100000 + i * 0x2000}, 0x1000}));
    const std::uint64_t list_calls = fs.calls;
    identity_mapper<nic> m;
    const std::uint64_t before = g_heap_allocs.load();
    auto mp = m.try_map(cpu, to_dev);
    REQUIRE(mp);
    std::uint64_t bytes = 0;
    for (dma_range<nic> r : *mp) bytes += r.len();
    auto u = m.try_unmap(std::move(*mp));
    const std::uint64_t after = g_heap_allocs.load();
    REQUIRE(u);
    CHECK(after == before);
    CHECK(fs.calls == list_calls);
    CHECK(bytes == n * 0x1000);
  }
}

TEST_CASE("the DMA mask check uses the highest byte: at the mask maps, one above is refused") {
  range_list<phys_range> cpu;
  must(cpu.try_append(phys_range{phys_addr{0x1000}, 0x1000}));
  must(cpu.try_append(phys_range{phys_addr{0xffff'f000}, 0x1000}));  // last byte 2^32 - 1
  must(cpu.try_append(phys_range{phys_addr{0x2000'0000}, 0x1000}));  // not the last entry
  auto m = must(identity_mapper<nic>::create(32));
  CHECK(m.dma_mask() == 0xffff'ffff);
  auto ok = m.try_map(cpu, to_dev);
  REQUIRE(ok);
  must(m.try_unmap(std::move(*ok)));

  must(cpu.try_append(phys_range{phys_addr{0x1'0000'0000}, 0x1000}));  // first byte above
  auto above = m.try_map(cpu, to_dev);
  REQUIRE_FALSE(above);
  CHECK(above.error() == errc::not_addressable);
  CHECK(cpu.size() == 4);  // untouched, and not borrowed: it can still change
  must(cpu.try_append(phys_range{phys_addr{0x5000}, 0x1000}));

  identity_mapper<nic> wide;
  CHECK(wide.dma_mask() == ~std::uint64_t{0});
  auto w = wide.try_map(cpu, to_dev);
  REQUIRE(w);
  must(wide.try_unmap(std::move(*w)));
}

TEST_CASE("try_set_dma_mask accepts 1 to 64 bits and keeps the old mask otherwise") {
  identity_mapper<nic> m;
  must(m.try_set_dma_mask(40));
  CHECK(m.dma_mask() == (std::uint64_t{1} << 40) - 1);
  CHECK(m.try_set_dma_mask(0).error() == errc::invalid_argument);
  CHECK(m.try_set_dma_mask(65).error() == errc::invalid_argument);
  CHECK(m.dma_mask() == (std::uint64_t{1} << 40) - 1);
  CHECK(identity_mapper<nic>::create(0).error() == errc::invalid_argument);
  STATIC_REQUIRE(std::is_nothrow_default_constructible_v<identity_mapper<nic>>);
}

TEST_CASE("a view or slice maps, and its mask check uses the slice's own highest byte") {
  range_list<phys_range> cpu;
  must(cpu.try_append(phys_range{phys_addr{0x1000}, 0x1000}));
  must(cpu.try_append(phys_range{phys_addr{0x1'0000'0000}, 0x1000}));
  auto m = must(identity_mapper<nic>::create(32));
  CHECK(m.try_map(cpu, to_dev).error() == errc::not_addressable);
  auto low = must(cpu.try_slice(0x100, 0x200));
  auto mp = m.try_map(low, to_dev);
  REQUIRE(mp);
  REQUIRE(mp->size() == 1);
  CHECK(*mp->begin() == dma_range<nic>{dma_addr<nic>{0x1100}, 0x200});
  CHECK(mp->total_bytes() == 0x200);
  must(m.try_unmap(std::move(*mp)));
}

TEST_CASE("a whole list maps to two pointers into it, a view to a copy of the view") {
  // Release layout: head pointer, counters pointer, owner stamp; borrow checks add a pointer.
  STATIC_REQUIRE(sizeof(identity_mapping<nic>) == (PHYR_ENABLE_BORROW_CHECKS ? 32 : 24));
  STATIC_REQUIRE(sizeof(identity_slice_mapping<nic>) > sizeof(range_list_view<phys_range>));
  STATIC_REQUIRE(std::is_same_v<mapping_t<identity_mapper<nic>>, identity_mapping<nic>>);
  STATIC_REQUIRE(
      std::is_same_v<slice_mapping_t<identity_mapper<nic>>, identity_slice_mapping<nic>>);
  STATIC_REQUIRE(dma_mapper<identity_mapper<nic>>);

  // 600 entries: the inline ones and several heap segments, so cpu_ranges() must follow the
  // chain to find the last entry.
  auto cpu = fragmented(600);
  identity_mapper<nic> m;
  auto whole = must(m.try_map(cpu, to_dev));
  auto viewed = must(m.try_map(cpu.view(), to_dev));
  STATIC_REQUIRE(std::is_same_v<decltype(viewed), identity_slice_mapping<nic>>);
  CHECK(whole.size() == 600);
  CHECK(whole.total_bytes() == cpu.total_bytes());
  CHECK(whole.lowest().value() == cpu.lowest().value());
  CHECK(whole.highest().value() == cpu.highest().value());
  const auto v = whole.cpu_ranges();
  const auto w = cpu.view();
  CHECK(v.size() == w.size());
  CHECK(v.total_bytes() == w.total_bytes());
  CHECK(v.back() == w.back());
  CHECK(v.front() == w.front());
  CHECK(std::equal(whole.begin(), whole.end(), viewed.begin(), viewed.end()));
  std::size_t n = 0;
  CHECK(for_each_range(whole, [&](const dma_range<nic>& r) noexcept {
    const phys_range& c = *std::next(cpu.begin(), static_cast<std::ptrdiff_t>(n++));
    return r.addr().value() == c.addr().value() && r.len() == c.len();
  }));
  CHECK(n == 600);

  // Each type unmaps with its own overload, and a mapping of either is foreign to another
  // mapper.
  identity_mapper<nic> other;
  CHECK(other.try_unmap(std::move(viewed)).error() == errc::foreign_mapping);
  CHECK(m.owns(viewed));
  CHECK(m.owns(whole));
  must(try_sync_for_device(m, viewed));  // coherent: nothing to do, for either type
  must(try_sync_for_cpu(m, whole));
  must(m.try_unmap(std::move(viewed)));
  must(m.try_unmap(std::move(whole)));
  CHECK_FALSE(whole.mapped());
  CHECK(whole.size() == 0);
  CHECK(whole.begin() == whole.end());
  CHECK(whole.cpu_ranges().size() == 0);
}

TEST_CASE("identity unmap rejects foreign, unmapped, moved-from and empty mappings") {
  auto cpu = fragmented(10);
  identity_mapper<nic> a;
  identity_mapper<nic> b;
  auto mp = must(a.try_map(cpu, to_dev));

  CHECK(b.try_unmap(std::move(mp)).error() == errc::foreign_mapping);
  CHECK(mp.mapped());  // left untouched
  CHECK(mp.size() == 10);

  identity_mapper<nic> copy_of_a{a};  // a copy is another mapper
  CHECK(copy_of_a.try_unmap(std::move(mp)).error() == errc::foreign_mapping);

  identity_mapping<nic> moved{std::move(mp)};
  CHECK(a.try_unmap(std::move(mp)).error() == errc::foreign_mapping);  // moved-from
  must(a.try_unmap(std::move(moved)));
  CHECK(a.try_unmap(std::move(moved)).error() == errc::foreign_mapping);  // already unmapped

  identity_mapping<nic> none;
  CHECK(a.try_unmap(std::move(none)).error() == errc::foreign_mapping);
}

TEST_CASE("a moved mapper still unmaps the mappings it made") {
  auto cpu = fragmented(3);
  identity_mapper<nic> a;
  auto mp = must(a.try_map(cpu, to_dev));
  identity_mapper<nic> b{std::move(a)};
  must(b.try_unmap(std::move(mp)));
  auto mp2 = must(a.try_map(cpu, to_dev));  // the moved-from mapper still works, as a new one
  CHECK(b.try_unmap(std::move(mp2)).error() == errc::foreign_mapping);
  must(a.try_unmap(std::move(mp2)));
}

TEST_CASE("several mappings may borrow one list and dropping a mapping ends its borrow") {
  auto cpu = fragmented(4);
  identity_mapper<nic> m;
  identity_mapper<gpu> g;
  {
    auto a = must(m.try_map(cpu, to_dev));
    auto b = must(m.try_map(cpu, dma_direction::bidirectional));
    auto c = must(g.try_map(cpu, dma_direction::from_device));
    must(m.try_unmap(std::move(a)));
    CHECK(b.size() == 4);
    CHECK(c.size() == 4);
    // b and c are dropped without unmap: nothing to undo, the borrow ends with them.
  }
  must(cpu.try_append(phys_range{phys_addr{0x9000'0000}, 0x1000}));  // free to change again
  CHECK(cpu.size() == 5);

  identity_mapping<nic> target;
  {
    auto a = must(m.try_map(cpu, to_dev));
    target = std::move(a);
  }
  CHECK(target.size() == 5);
  target = identity_mapping<nic>{};  // move-assigning over a live mapping ends its borrow
  cpu.clear();
}

TEST_CASE("identity mapping of random lists matches the list entry for entry") {
  std::mt19937_64 rng(0x1d3417);
  for (int iter = 0; iter < 50; ++iter) {
    range_list<phys_range> cpu;
    std::vector<phys_range> model;
    std::uint64_t a = rng() % (1ull << 40);
    const std::size_t n = 1 + rng() % 700;
    for (std::size_t i = 0; i < n; ++i) {
      a += 1 + rng() % 0x10000;  // a gap: never coalesces
      const std::uint64_t len = 1 + rng() % 0x8000;
      const phys_range r{phys_addr{a}, len, static_cast<range_flags>(rng() % 4)};
      must(cpu.try_append(r));
      model.push_back(r);
      a += len;
    }
    const unsigned bits = 36 + static_cast<unsigned>(rng() % 8);
    auto m = must(identity_mapper<nic>::create(bits));
    auto mp = m.try_map(cpu, to_dev);
    const bool fits = model.back().last().value() <= m.dma_mask();
    REQUIRE(mp.has_value() == fits);
    if (!fits) {
      CHECK(mp.error() == errc::not_addressable);
      continue;
    }
    std::size_t i = 0;
    for (dma_range<nic> r : *mp) {
      REQUIRE(i < model.size());
      CHECK(r.addr().value() == model[i].addr().value());
      CHECK(r.len() == model[i].len());
      CHECK(r.flags() == model[i].flags());
      ++i;
    }
    CHECK(i == model.size());
    must(m.try_unmap(std::move(*mp)));
  }
}

#if PHYR_DEBUG
TEST_CASE("debug builds trap when a borrowed CPU list is changed or destroyed") {
  identity_mapper<nic> m;
  CHECK(dies([&] {
    auto cpu = fragmented(3);
    auto mp = must(m.try_map(cpu, to_dev));
    (void)cpu.try_append(phys_range{phys_addr{0x9000'0000}, 0x1000});
  }));
  CHECK(dies([&] {
    auto cpu = fragmented(3);
    auto mp = must(m.try_map(cpu, to_dev));
    cpu.clear();
  }));
  CHECK(dies([&] {
    auto* cpu = new range_list<phys_range>(fragmented(300));
    auto mp = must(m.try_map(*cpu, to_dev));
    delete cpu;  // the list dies first
  }));
  CHECK(dies([&] {
    auto cpu = fragmented(3);
    auto mp = must(m.try_map(cpu, to_dev));
    range_list<phys_range> thief{std::move(cpu)};
  }));
  CHECK(dies([&] {  // a slice mapping borrows the list behind the view just the same
    auto cpu = fragmented(3);
    auto mp = must(m.try_map(must(cpu.try_slice(0, 0x1000)), to_dev));
    cpu.clear();
  }));
  // Control: the same steps after unmap do not trap.
  CHECK_FALSE(dies([&] {
    auto* cpu = new range_list<phys_range>(fragmented(300));
    auto mp = must(m.try_map(*cpu, to_dev));
    must(m.try_unmap(std::move(mp)));
    must(cpu->try_append(phys_range{phys_addr{0x9000'0000}, 0x1000}));
    delete cpu;
  }));
}
#endif
