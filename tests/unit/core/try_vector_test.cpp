// core/detail/try_vector: the fallible growable array behind phyr's bookkeeping tables.
#include <catch2/catch.hpp>
#include <cstdint>
#include <phyr/core/detail/try_vector.hpp>
#include <random>
#include <vector>

namespace {
using phyr::errc;
using phyr::fault_injecting_allocator;
using phyr::fault_state;
using vec = phyr::detail::try_vector<std::uint64_t, fault_injecting_allocator>;

std::vector<std::uint64_t> to_std(const vec& v) { return {v.begin(), v.end()}; }
}  // namespace

TEST_CASE("try_vector: push_back and insert match std::vector (seeded)", "[try_vector]") {
  std::mt19937_64 rng(11);
  fault_state fs;
  {
    vec v{fault_injecting_allocator{&fs}};
    std::vector<std::uint64_t> model;
    for (int i = 0; i < 2000; ++i) {
      const std::uint64_t x = rng();
      if (rng() % 3 == 0 && !model.empty()) {
        const std::size_t at = rng() % (model.size() + 1);
        REQUIRE(v.try_insert(at, x));
        model.insert(model.begin() + static_cast<std::ptrdiff_t>(at), x);
      } else if (rng() % 7 == 0 && !model.empty()) {
        v.pop_back();
        model.pop_back();
      } else {
        REQUIRE(v.try_push_back(x));
        model.push_back(x);
      }
      REQUIRE(to_std(v) == model);
      REQUIRE(v.size() <= v.capacity());
    }
    v.clear();
    CHECK(v.empty());
    CHECK(v.capacity() >= 8);
  }
  CHECK(fs.live == 0);
}

TEST_CASE("try_vector: every allocation failure is out_of_memory and changes nothing",
          "[try_vector][alloc]") {
  for (std::uint64_t k = 1; k <= 6; ++k) {
    fault_state fs{.fail_at = k};
    {
      vec v{fault_injecting_allocator{&fs}};
      std::vector<std::uint64_t> model;
      bool failed = false;
      for (std::uint64_t i = 0; i < 300; ++i) {
        const auto cap = v.capacity();
        const auto live = fs.live;
        if (auto r = v.try_push_back(i); !r) {
          CHECK(r.error() == errc::out_of_memory);
          CHECK(to_std(v) == model);  // contents, size, capacity and live blocks unchanged
          CHECK(v.capacity() == cap);
          CHECK(fs.live == live);
          failed = true;
          continue;
        }
        model.push_back(i);
      }
      CHECK(failed);
      CHECK(to_std(v) == model);
    }
    CHECK(fs.live == 0);
  }
}

TEST_CASE("try_vector: try_reserve above max_size is too_long and allocates nothing",
          "[try_vector]") {
  fault_state fs;
  vec v{fault_injecting_allocator{&fs}};
  CHECK(v.try_reserve(vec::max_size + 1).error() == errc::too_long);
  CHECK(fs.calls == 0);
  REQUIRE(v.try_reserve(100));
  CHECK(v.capacity() == 100);
  vec w = std::move(v);
  CHECK(w.capacity() == 100);
  CHECK(v.capacity() == 0);  // NOLINT(bugprone-use-after-move): moved-from is empty
}
