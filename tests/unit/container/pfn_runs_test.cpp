// container/pfn_runs.hpp: pfn_run_end and pfn_run_count against a plain frame-by-frame model,
// at every start, on seeded arrays whose runs end at every position relative to the scan's
// sixteen-frame steps, including frames that wrap past 2^64.
#include <catch2/catch.hpp>

#include <cstddef>
#include <cstdint>
#include <phyr/container/pfn_runs.hpp>
#include <random>
#include <vector>

namespace {

std::size_t model_run_end(const std::vector<std::uint64_t>& p, std::size_t i) {
  while (i < p.size() && p[i] == p[i - 1] + 1) ++i;
  return i;
}

std::size_t model_run_count(const std::vector<std::uint64_t>& p) {
  std::size_t runs = 1;
  for (std::size_t i = 1; i < p.size(); ++i) runs += p[i] != p[i - 1] + 1 ? 1 : 0;
  return runs;
}

// Runs of 1..max_run frames, each starting anywhere (now and then right below 2^64, so the
// run wraps to 0 and on, which is consecutive in the modular sense the scan uses).
std::vector<std::uint64_t> runs_of(std::mt19937_64& rng, std::size_t n, std::size_t max_run) {
  std::vector<std::uint64_t> p;
  while (p.size() < n) {
    std::uint64_t f = rng() % 8 == 0 ? ~std::uint64_t{0} - rng() % 20 : rng() % (1ull << 40);
    const std::size_t len = 1 + rng() % max_run;
    for (std::size_t k = 0; k < len && p.size() < n; ++k) p.push_back(f++);
    // Now and then a frame that differs from the run's next by one bit, high or low: the
    // scan must see a difference anywhere in the word.
    if (rng() % 4 == 0 && p.size() < n) p.push_back(f ^ (std::uint64_t{1} << (rng() % 64)));
  }
  return p;
}

}  // namespace

TEST_CASE("pfn_run_end: agrees with the frame-by-frame model from every start") {
  std::mt19937_64 rng{0x5eed'0016};
  for (int iter = 0; iter < 400; ++iter) {
    const std::size_t n = 1 + rng() % 140;
    const std::size_t max_run = iter % 2 == 0 ? 70 : 6;
    const std::vector<std::uint64_t> p = runs_of(rng, n, max_run);
    for (std::size_t i = 1; i <= n; ++i) {
      CAPTURE(iter, n, i);
      REQUIRE(phyr::detail::pfn_run_end(p.data(), i, n) == model_run_end(p, i));
    }
    CHECK(phyr::detail::pfn_run_count(p.data(), n) == model_run_count(p));
  }
}

TEST_CASE("pfn_run_end: one long run ends exactly where it ends, at every length") {
  // Runs of every length up to 80 frames followed by a break (or by the end of the array): the
  // sixteen-frame steps, the last overlapping step and the frame-by-frame tail all meet here.
  for (std::size_t len = 1; len <= 80; ++len) {
    for (const bool tail : {false, true}) {
      std::vector<std::uint64_t> p;
      for (std::size_t k = 0; k < len; ++k) p.push_back(1000 + k);
      if (tail) {
        p.push_back(5);
        p.push_back(6);
      }
      CAPTURE(len, tail);
      CHECK(phyr::detail::pfn_run_end(p.data(), 1, p.size()) == len);
      if (len > 17) CHECK(phyr::detail::pfn_run_end(p.data(), 17, p.size()) == len);
    }
  }
}
