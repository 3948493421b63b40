// walk: the sum of entry lengths over a list built once per input (shared_*), checked against
// the input's byte count. One template for the three sides:
//   phyr_range_list  range_list iteration
//   phyr_packed      packed_list::for_each
//   scatterlist      for_each_sg

#include "compare.hpp"

namespace {

using namespace phyr_bench;

/// One timed walk, `sum_of(list)`, over the shared list `lp`; the counters take the list's
/// `entries_of` and `bytes_of` (what the walk reads).
template <class List, class Sum, class Entries, class Bytes>
void bm_walk(benchmark::State& state, const input& in, List* lp, Sum sum_of, Entries entries_of,
             Bytes bytes_of, const char* what) {
  if (!check(state, lp != nullptr, what)) return;
  List& l = *lp;
  std::uint64_t sum = 0;
  cpu_stopwatch watch;
  for (auto _ : state) {
    sum = sum_of(l);
    benchmark::DoNotOptimize(sum);
  }
  watch.stop();
  if (!check(state, sum == in.bytes, "walk sum is wrong")) return;
  set_counters(state, watch, in, static_cast<double>(entries_of(l)),
               static_cast<double>(bytes_of(l)) / in.pages_of_data());
}

void bm_walk_range_list(benchmark::State& state, std::string wl, std::string size) {
  const input& in = get_input(wl, size);
  bm_walk(
      state, in, shared_list(in), [](const cpu_list& l) { return list_sum(l); },
      [](const cpu_list& l) { return l.size(); }, [](const cpu_list& l) { return l.bytes_used(); },
      "range_list build is wrong");
}

void bm_walk_packed(benchmark::State& state, std::string wl, std::string size) {
  const input& in = get_input(wl, size);
  bm_walk(
      state, in, shared_packed(in), [](const packed& l) { return packed_sum(l); },
      [](const packed& l) { return l.size(); }, [](const packed& l) { return l.bytes_used(); },
      "packed_list build is wrong");
}

void bm_walk_scatterlist(benchmark::State& state, std::string wl, std::string size) {
  const input& in = get_input(wl, size);
  bm_walk(
      state, in, shared_sg(in), [](const sg::sg_table& t) { return sg_sum(t); },
      [](const sg::sg_table& t) { return t.nents; },
      [](const sg::sg_table& t) { return sg_table_bytes(t) + sizeof(sg::sg_table); },
      "scatterlist build is wrong");
}

[[maybe_unused]] const bool registered = [] {
  for_each_workload({"1GiB", "8GiB"}, [](const std::string& wl, const std::string& s) {
    register_compare("walk", wl, s, "phyr_range_list", bm_walk_range_list);
    register_compare("walk", wl, s, "phyr_packed", bm_walk_packed);
    register_compare("walk", wl, s, "scatterlist", bm_walk_scatterlist);
  });
  return true;
}();

}  // namespace
