// The io_steps/... cases of phyr_bench_ir (bench/ir_driver.cpp): bench/io_path.hpp's 4 KiB
// contiguous I/O and its scattered I/Os of every size run up to each step, so the difference
// between consecutive cases is that step's instructions. Also the walk/... cases:
// walk_bench.cpp's sums (packed_sum, sg_sum) over the same shared lists, counted per walk.

#include <benchmark/benchmark.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "compare.hpp"
#include "io_path.hpp"
#include "ir_driver.hpp"

namespace phyr_bench {

namespace {

// Walks per run: about 2^22 entries in all, so short lists (1 to 49 entries, a few ns per walk)
// are repeated enough that the driver's per-run call vanishes from the count.
std::uint64_t walks_for(std::uint64_t entries) {
  const std::uint64_t k = (std::uint64_t{1} << 22) / (entries == 0 ? 1 : entries);
  return k == 0 ? 1 : k;
}

// walk/<wl>/<size>/{phyr_packed,scatterlist}: walk_bench.cpp's loop body, `k` walks per run,
// each sum checked against the input's bytes; the unit is one walk.
template <class List, class Sum>
std::function<bool()> walk_run(const input* in, const List* l, Sum sum_of, double& units,
                               std::uint64_t entries) {
  if (l == nullptr) return [] { return false; };
  const std::uint64_t k = walks_for(entries);
  units = static_cast<double>(k);
  return [in, l, sum_of, k] {
    bool ok = true;
    for (std::uint64_t i = 0; i < k; ++i) {
      std::uint64_t sum = sum_of(*l);
      benchmark::DoNotOptimize(sum);
      ok = ok && sum == in->bytes;
    }
    return ok;
  };
}

void add_walk_cases(std::vector<ir_case>& out) {
  const std::pair<const char*, const char*> shapes[] = {
      {"frag", "1GiB"}, {"contig", "1GiB"}, {"2m", "1GiB"},         {"1g", "1GiB"},
      {"1g", "8GiB"},   {"dio512", "1GiB"}, {"trace_4k", "256MiB"}, {"trace_thp", "256MiB"}};
  for (const auto& [wl, sz] : shapes) {
    const std::string w = wl, size = sz;
    const std::string stem = "walk/" + w + "/" + size + "/";
    out.push_back({stem + "phyr_packed", "walk", [w, size](double& units) {
                     const input* in = &get_input(w, size);
                     const packed* l = shared_packed(*in);
                     return walk_run(
                         in, l, [](const packed& p) { return packed_sum(p); }, units,
                         l == nullptr ? 1 : l->size());
                   }});
    out.push_back({stem + "scatterlist", "walk", [w, size](double& units) {
                     const input* in = &get_input(w, size);
                     const sg::sg_table* t = shared_sg(*in);
                     return walk_run(
                         in, t, [](const sg::sg_table& x) { return sg_sum(x); }, units,
                         t == nullptr ? 1 : t->nents);
                   }});
  }
}

}  // namespace

void add_step_cases(std::vector<ir_case>& out) {
  add_walk_cases(out);
  // The per-I/O path step by step (4 KiB contiguous, every scattered size): each case runs the path up to a step, so the
  // difference between consecutive cases is that step's cost (io_steps/<wl>/<size>/<impl>_<n>).
  for (const auto& [wl, sz] : {std::pair{"contig", "4KiB"}, std::pair{"frag", "4KiB"},
                               std::pair{"frag", "16KiB"}, std::pair{"frag", "128KiB"},
                               std::pair{"frag", "1MiB"}}) {
    const std::string w = wl, size = sz;
    const std::string stem = "io_steps/" + w + "/" + size + "/";
    auto phyr_case = [&]<int Upto>(std::integral_constant<int, Upto>) {
      out.push_back({stem + "phyr_range_list_" + std::to_string(Upto), "io",
                     [w, size](double& units) -> std::function<bool()> {
                       units = 1;
                       const input* in = &get_input(w, size);
                       auto m = std::make_shared<phyr::identity_mapper<bench_bus>>();
                       auto page = std::make_shared<prp_page>();
                       // The tally kept alive: unused, the compiler drops the segment loop.
                       return [in, m, page] {
                         io_tally t = phyr_io<false, Upto>(*in, *m, *page);
                         benchmark::DoNotOptimize(t);
                         return t.ok;
                       };
                     }});
    };
    auto sg_case = [&]<int Upto>(std::integral_constant<int, Upto>) {
      out.push_back({stem + "scatterlist_" + std::to_string(Upto), "io",
                     [w, size](double& units) -> std::function<bool()> {
                       units = 1;
                       const input* in = &get_input(w, size);
                       return [in] {
                         bench_allocator b;
                         io_tally t = scatterlist_io<false, Upto>(*in, b);
                         benchmark::DoNotOptimize(t);
                         return t.ok;
                       };
                     }});
    };
    phyr_case(std::integral_constant<int, 0>{});
    phyr_case(std::integral_constant<int, 1>{});
    phyr_case(std::integral_constant<int, 2>{});
    phyr_case(std::integral_constant<int, 3>{});
    phyr_case(std::integral_constant<int, 4>{});
    sg_case(std::integral_constant<int, 0>{});
    sg_case(std::integral_constant<int, 1>{});
    sg_case(std::integral_constant<int, 2>{});
    sg_case(std::integral_constant<int, 3>{});
    sg_case(std::integral_constant<int, 4>{});
  }
}

}  // namespace phyr_bench
