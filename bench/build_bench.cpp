// build: a list from the input, released again, every iteration.
//   phyr_range_list  range_list::try_append_pages (pages) or try_append_all (dio512)
//   phyr_packed      packed_list::try_append_pages / try_append_all
//   scatterlist      sg_alloc_table_from_pages_segment(UINT_MAX) (Linux 6.1's order: each
//                    array allocated when the fill reaches it), or sg_alloc_table + sg_set_page
//                    per chunk for dio512; then sg_free_table
// All sides allocate from one warm recycling heap (bench/workloads.hpp). Each result is checked
// once untimed (entries, bytes, a walk) and its bytes per page recorded.

#include "compare.hpp"

namespace {

using namespace phyr_bench;

// One timed build of a phyr list type: checked once untimed (contents and bytes per page),
// then built fresh every iteration.
template <class List, class Build, class Ok>
void bm_build_phyr(benchmark::State& state, const input& in, Build build, Ok ok, const char* what) {
  double bytes_per_page = 0;
  {
    List l;
    if (!check(state, build(l, in) && ok(l, in), what)) return;
    bytes_per_page = static_cast<double>(l.bytes_used()) / in.pages_of_data();
  }
  std::size_t entries = 0;
  cpu_stopwatch watch;
  for (auto _ : state) {
    List l;
    const bool built = build(l, in);
    benchmark::DoNotOptimize(built);
    entries = l.size();
    benchmark::DoNotOptimize(l);
    benchmark::ClobberMemory();
  }
  watch.stop();
  if (!check(state, entries == in.runs, "entries changed while timed")) return;
  set_counters(state, watch, in, static_cast<double>(entries), bytes_per_page);
}

void bm_build_range_list(benchmark::State& state, std::string wl, std::string size) {
  bm_build_phyr<cpu_list>(
      state, get_input(wl, size), [](cpu_list& l, const input& in) { return build_list(l, in); },
      [](const cpu_list& l, const input& in) { return list_ok(l, in); },
      "range_list build is wrong");
}

void bm_build_packed(benchmark::State& state, std::string wl, std::string size) {
  bm_build_phyr<packed>(
      state, get_input(wl, size), [](packed& l, const input& in) { return build_packed(l, in); },
      [](const packed& l, const input& in) { return packed_ok(l, in); },
      "packed_list build is wrong");
}

void bm_build_scatterlist(benchmark::State& state, std::string wl, std::string size) {
  const input& in = get_input(wl, size);
  bench_allocator a;
  double bytes_per_page = 0;
  {
    sg::sg_table t;
    const bool ok = build_sg(t, in, a) && sg_ok(t, in);
    bytes_per_page =
        static_cast<double>(sg_table_bytes(t) + sizeof(sg::sg_table)) / in.pages_of_data();
    sg::sg_free_table(t, a);
    if (!check(state, ok, "scatterlist build is wrong")) return;
  }
  std::size_t entries = 0;
  cpu_stopwatch watch;
  for (auto _ : state) {
    sg::sg_table t;
    const bool ok = build_sg(t, in, a);
    benchmark::DoNotOptimize(ok);
    entries = t.nents;
    benchmark::DoNotOptimize(t);
    benchmark::ClobberMemory();
    sg::sg_free_table(t, a);
  }
  watch.stop();
  if (!check(state, entries == in.sg_entries, "scatterlist entries changed while timed")) return;
  set_counters(state, watch, in, static_cast<double>(entries), bytes_per_page);
}

[[maybe_unused]] const bool registered = [] {
  for_each_workload({"16MiB", "1GiB", "8GiB"}, [](const std::string& wl, const std::string& s) {
    register_compare("build", wl, s, "phyr_range_list", bm_build_range_list);
    register_compare("build", wl, s, "phyr_packed", bm_build_packed);
    register_compare("build", wl, s, "scatterlist", bm_build_scatterlist);
  });
  return true;
}();

}  // namespace
