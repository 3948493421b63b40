// Core types: address spaces, addresses, ranges, result, allocators.
#include <catch2/catch.hpp>

#include <cstdint>
#include <string_view>
#include <phyr/core.hpp>
#include <type_traits>

namespace {
struct bus_a {};
struct bus_b {};
using phys = phyr::phys_addr;
using dma_a = phyr::dma_addr<bus_a>;
using dma_b = phyr::dma_addr<bus_b>;
// Has the members of a space but does not opt in.
struct not_a_space {
  static constexpr bool cpu_accessible = true;
  static constexpr const char* name = "x";
};
static_assert(not_a_space::cpu_accessible && not_a_space::name != nullptr);

template <class A, class B>
concept addable = requires(A a, B b) { a + b; };
template <class A, class B>
concept comparable = requires(A a, B b) { a == b; };
template <class A, class B>
concept subtractable = requires(A a, B b) { a - b; };
template <class To, class... Args>
concept brace_constructible = requires(Args... a) { To{a...}; };
}  // namespace

TEST_CASE("address spaces are opt-in tags that say whether the CPU may access them", "[core]") {
  STATIC_REQUIRE(phyr::address_space<phyr::cpu_phys>);
  STATIC_REQUIRE(phyr::address_space<phyr::dma_space<bus_a>>);
  STATIC_REQUIRE(phyr::cpu_accessible_space<phyr::cpu_phys>);
  STATIC_REQUIRE_FALSE(phyr::cpu_accessible_space<phyr::dma_space<bus_a>>);
  STATIC_REQUIRE(phyr::dma_address_space<phyr::dma_space<bus_a>>);
  STATIC_REQUIRE_FALSE(phyr::dma_address_space<phyr::cpu_phys>);
  STATIC_REQUIRE_FALSE(phyr::address_space<not_a_space>);
  STATIC_REQUIRE_FALSE(phyr::address_space<int>);
}

TEST_CASE("address: explicit construction, no conversion between spaces", "[core][compile-fail]") {
  STATIC_REQUIRE(sizeof(phys) == 8);
  STATIC_REQUIRE(std::is_trivially_copyable_v<phys>);
  STATIC_REQUIRE_FALSE(std::is_convertible_v<std::uint64_t, phys>);
  STATIC_REQUIRE_FALSE(std::is_convertible_v<phys, dma_a>);
  STATIC_REQUIRE_FALSE(std::is_constructible_v<dma_a, phys>);
  STATIC_REQUIRE_FALSE(std::is_convertible_v<dma_a, dma_b>);
  STATIC_REQUIRE_FALSE(std::is_convertible_v<phys, std::uint64_t>);
  // points do not add, and never compare across spaces
  STATIC_REQUIRE_FALSE(addable<phys, phys>);
  STATIC_REQUIRE_FALSE(comparable<phys, dma_a>);
  STATIC_REQUIRE_FALSE(comparable<dma_a, dma_b>);
  STATIC_REQUIRE_FALSE(subtractable<phys, dma_a>);
  STATIC_REQUIRE(addable<phys, std::uint64_t>);
  STATIC_REQUIRE(subtractable<phys, phys>);
  STATIC_REQUIRE(std::is_same_v<decltype(phys{} - phys{}), std::uint64_t>);
}

TEST_CASE("address: arithmetic is exact and checked variants report overflow", "[core]") {
  STATIC_REQUIRE((phys{0x1000} + 0x2000).value() == 0x3000);
  STATIC_REQUIRE(phys{0x3000} - phys{0x1000} == 0x2000);
  STATIC_REQUIRE(phys{0x1fff}.align_down(0x1000) == phys{0x1000});
  STATIC_REQUIRE(*phys{0x1001}.try_align_up(0x1000) == phys{0x2000});
  STATIC_REQUIRE(phys{0x2000}.is_aligned(0x1000));
  STATIC_REQUIRE(phys{~0ull}.try_add(1).error() == phyr::errc::overflow);
  STATIC_REQUIRE(phys{0}.try_sub(1).error() == phyr::errc::overflow);
  STATIC_REQUIRE(phys{~0ull - 1}.try_add(1).value() == phys{~0ull});
  STATIC_REQUIRE(phys{~0ull}.try_align_up(0x1000).error() == phyr::errc::overflow);
  STATIC_REQUIRE(phys{1} < phys{2});
  auto r = phys{5}.try_add(7);
  REQUIRE(r);
  CHECK(r->value() == 12);
}

TEST_CASE("range: 16 bytes, 2^40+ lengths, 8 flag bits", "[core]") {
  STATIC_REQUIRE(sizeof(phyr::phys_range) == 16);
  STATIC_REQUIRE(sizeof(phyr::dma_range<bus_a>) == 16);
  STATIC_REQUIRE(std::is_trivially_copyable_v<phyr::phys_range>);
  STATIC_REQUIRE(phyr::phys_range::max_len >= (1ull << 40));
  constexpr auto all = static_cast<phyr::range_flags>(0xff);
  constexpr auto r = phyr::phys_range{phys{0x1000}, phyr::phys_range::max_len, all};
  STATIC_REQUIRE(r.len() == phyr::phys_range::max_len);
  STATIC_REQUIRE(r.flags() == all);
  STATIC_REQUIRE(r.addr() == phys{0x1000});
  STATIC_REQUIRE(r.with_flags(phyr::range_flags::pinned).len() == r.len());
  STATIC_REQUIRE(r.with_flags(phyr::range_flags::pinned).flags() == phyr::range_flags::pinned);
}

TEST_CASE("range::create rejects zero, too long and wrapping ranges", "[core]") {
  using phyr::errc;
  using phyr::phys_range;
  STATIC_REQUIRE(phys_range::create(phys{0}, 0).error() == errc::invalid_argument);
  STATIC_REQUIRE(phys_range::create(phys{0}, phys_range::max_len + 1).error() == errc::too_long);
  STATIC_REQUIRE(phys_range::create(phys{~0ull - 0xfff}, 0x1001).error() == errc::overflow);
  // A range may end exactly at 2^64.
  constexpr auto top = phys_range::create(phys{~0ull - 0xfff}, 0x1000);
  STATIC_REQUIRE(top.has_value());
  STATIC_REQUIRE(top->last() == phys{~0ull});
  STATIC_REQUIRE(phys_range::create(phys{0x1000}, 1, phyr::range_flags::bus_addr)->flags() ==
                 phyr::range_flags::bus_addr);
}

TEST_CASE("range: contains, overlaps, adjacent, can_merge, ordering", "[core]") {
  using phyr::phys_range;
  using phyr::range_flags;
  constexpr phys_range a{phys{0x1000}, 0x1000};
  constexpr phys_range b{phys{0x2000}, 0x1000};
  constexpr phys_range c{phys{0x1800}, 0x1000};
  constexpr phys_range bp{phys{0x2000}, 0x1000, range_flags::pinned};
  STATIC_REQUIRE(a.end() == phys{0x2000});
  STATIC_REQUIRE(a.contains(phys{0x1fff}));
  STATIC_REQUIRE_FALSE(a.contains(phys{0x2000}));
  STATIC_REQUIRE(a.contains(phys_range{phys{0x1100}, 0x100}));
  STATIC_REQUIRE_FALSE(a.contains(c));
  STATIC_REQUIRE(a.overlaps(c));
  STATIC_REQUIRE_FALSE(a.overlaps(b));
  STATIC_REQUIRE(a.adjacent(b));
  STATIC_REQUIRE_FALSE(b.adjacent(a));
  STATIC_REQUIRE(a.can_merge(b));
  STATIC_REQUIRE_FALSE(a.can_merge(bp));
  STATIC_REQUIRE(a.try_merge(b)->len() == 0x2000);
  STATIC_REQUIRE(a.try_merge(c).error() == phyr::errc::invalid_argument);
  STATIC_REQUIRE(a < b);
  STATIC_REQUIRE(a < phys_range{phys{0x1000}, 0x2000});
  STATIC_REQUIRE(b < bp);
  STATIC_REQUIRE(a == phys_range{phys{0x1000}, 0x1000});
  STATIC_REQUIRE(a.try_subrange(0x800, 0x800)->addr() == phys{0x1800});
  STATIC_REQUIRE(a.try_subrange(0x800, 0x801).error() == phyr::errc::out_of_range);
  // a range ending at 2^64 has no successor
  constexpr phys_range top{phys{~0ull - 0xfff}, 0x1000};
  STATIC_REQUIRE_FALSE(top.adjacent(phys_range{phys{0}, 0x1000}));
  // merging must not exceed max_len
  constexpr phys_range big{phys{0}, phys_range::max_len};
  STATIC_REQUIRE_FALSE(big.can_merge(phys_range{phys{phys_range::max_len}, 1}));
}

TEST_CASE("range: ranges of two spaces are distinct types", "[core][compile-fail]") {
  STATIC_REQUIRE_FALSE(std::is_convertible_v<phyr::phys_range, phyr::dma_range<bus_a>>);
  STATIC_REQUIRE_FALSE(std::is_constructible_v<phyr::dma_range<bus_a>, phyr::phys_range>);
  STATIC_REQUIRE_FALSE(std::is_convertible_v<phyr::dma_range<bus_a>, phyr::dma_range<bus_b>>);
  STATIC_REQUIRE_FALSE(brace_constructible<phyr::dma_range<bus_a>, phyr::phys_range>);
  STATIC_REQUIRE_FALSE(
      brace_constructible<phyr::dma_range<bus_a>, phyr::phys_addr, std::uint64_t>);
  STATIC_REQUIRE(brace_constructible<phyr::dma_range<bus_a>, dma_a, std::uint64_t>);
}

TEST_CASE("result: value or errc, spelled like std::expected", "[core]") {
  constexpr phyr::result<int> ok{42};
  constexpr phyr::result<int> bad{phyr::errc::overflow};
  STATIC_REQUIRE(ok.has_value());
  STATIC_REQUIRE(*ok == 42);
  STATIC_REQUIRE_FALSE(bad.has_value());
  STATIC_REQUIRE(bad.error() == phyr::errc::overflow);
  STATIC_REQUIRE(bad.value_or(7) == 7);
  STATIC_REQUIRE(std::is_trivially_copyable_v<phyr::result<phyr::phys_range>>);
  STATIC_REQUIRE(std::is_trivially_destructible_v<phyr::result<int>>);
  constexpr phyr::result<void> v{};
  STATIC_REQUIRE(v.has_value());
  STATIC_REQUIRE(phyr::result<void>{phyr::errc::exhausted}.error() == phyr::errc::exhausted);
  STATIC_REQUIRE_FALSE(std::is_convertible_v<phyr::result<int>, bool>);  // explicit bool only
  CHECK(std::string_view{phyr::to_string(phyr::errc::out_of_memory)} == "out_of_memory");
  CHECK(std::string_view{phyr::to_string(phyr::errc::p2p_not_supported)} == "p2p_not_supported");
}

namespace {
struct tracked {
  static inline int live = 0;
  int v;
  explicit tracked(int x) noexcept : v(x) { ++live; }
  tracked(tracked&& o) noexcept : v(o.v) { ++live; }
  tracked(const tracked& o) noexcept : v(o.v) { ++live; }
  ~tracked() { --live; }
};
}  // namespace

TEST_CASE("result: owns non-trivial payloads and destroys them exactly once", "[core]") {
  {
    phyr::result<tracked> r{tracked{3}};
    CHECK(tracked::live == 1);
    phyr::result<tracked> m{std::move(r)};
    CHECK(tracked::live == 2);
    CHECK(m->v == 3);
    phyr::result<tracked> e{phyr::errc::not_found};
    phyr::result<tracked> e2{e};
    CHECK(tracked::live == 2);
    CHECK(e2.error() == phyr::errc::not_found);
  }
  CHECK(tracked::live == 0);
}

TEST_CASE("allocators: default, pool and fault-injecting satisfy segment_allocator", "[core][alloc]") {
  STATIC_REQUIRE(phyr::segment_allocator<phyr::default_allocator>);
  STATIC_REQUIRE(phyr::segment_allocator<phyr::pool_allocator>);
  STATIC_REQUIRE(phyr::segment_allocator<phyr::fault_injecting_allocator>);
  STATIC_REQUIRE_FALSE(phyr::segment_allocator<int>);

  phyr::default_allocator d;
  void* p = d.allocate(4096, 64);
  REQUIRE(p != nullptr);
  CHECK(reinterpret_cast<std::uintptr_t>(p) % 64 == 0);
  d.deallocate(p, 4096, 64);
}

TEST_CASE("segment_pool hands out exactly K blocks and takes them back", "[core][alloc]") {
  phyr::segment_pool<4096, 3> pool;
  auto a = pool.allocator();
  CHECK(pool.available() == 3);
  void* b1 = a.allocate(4096, 16);
  void* b2 = a.allocate(100, 16);
  void* b3 = a.allocate(4096, 64);
  REQUIRE(b1 != nullptr);
  REQUIRE(b2 != nullptr);
  REQUIRE(b3 != nullptr);
  CHECK(a.allocate(16, 16) == nullptr);  // exhausted: null, not a crash
  CHECK(pool.available() == 0);
  CHECK(pool.owns(b2));
  a.deallocate(b2, 100, 16);
  CHECK(pool.available() == 1);
  CHECK(a.allocate(8192, 16) == nullptr);  // larger than a block
  CHECK(a.allocate(64, 128) == nullptr);   // stricter alignment than the pool's
  void* again = a.allocate(64, 16);
  CHECK(again == b2);  // reuse
  a.deallocate(again, 64, 16);
  a.deallocate(b1, 4096, 16);
  a.deallocate(b3, 4096, 64);
  CHECK(pool.available() == 3);
}

TEST_CASE("fault_injecting_allocator fails on the k-th call and counts live blocks",
          "[core][alloc]") {
  phyr::fault_state fs{.fail_at = 2};
  phyr::fault_injecting_allocator a{&fs};
  void* p1 = a.allocate(64, 16);
  void* p2 = a.allocate(64, 16);
  void* p3 = a.allocate(64, 16);
  CHECK(p1 != nullptr);
  CHECK(p2 == nullptr);
  CHECK(p3 != nullptr);
  CHECK(fs.calls == 3);
  CHECK(fs.failures == 1);
  CHECK(fs.live == 2);
  CHECK(fs.live_bytes == 128);
  a.deallocate(p1, 64, 16);
  a.deallocate(p3, 64, 16);
  CHECK(fs.live == 0);
  fs.fail_at = 1;
  fs.fail_after = true;
  fs.calls = 0;
  CHECK(a.allocate(8, 8) == nullptr);
  CHECK(a.allocate(8, 8) == nullptr);
}
