// The packed encoding's own numbers (issue #3): exact sizes, bytes per page on the real traces
// against range_list and the scatterlist layout, build speed against a memcpy of the same pfn
// array in the same iteration, and decode speed. The phyr-vs-scatterlist comparison rows for
// packed_list live in build_bench.cpp, walk_bench.cpp, blocks_bench.cpp and memory_bench.cpp.
//
// Every benchmark checks its result (sizes against the expected table, round trips, sums of
// lengths) and reports an error instead of a number when it is wrong.
//
//   packed_size/<case>            one iteration; counters entry_bytes, expected_bytes,
//                                 object_bytes (sizeof packed_list: header + open tail),
//                                 header_bytes (the stored packed_header)
//   packed_trace_bytes/<trace>    bytes per page: packed (entries; and everything incl. object
//                                 and segment slack), range_list (bytes_used), scatterlist
//                                 layout (32 B per entry + chain slots), and the ratio
//   packed_build_vs_memcpy/<wl>   per iteration: 8 memcpys of the pfn array, then 8 builds of
//                                 a fresh packed_list from it (CPU time); ns/page of each and
//                                 their ratio
//   packed_walk/<wl>/<how>        items per ns: ranges by iterator and for_each; 4 KiB blocks
//                                 by the try_blocks(4096) view and by try_for_each_block(4096)

#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "phyr/container/range_list.hpp"
#include "phyr/packed/packed_list.hpp"
#include "workloads.hpp"

namespace {

using phyr::phys_addr;
using phyr::phys_range;
using phyr_bench::bench_allocator;
using phyr_bench::check;
using phyr_bench::get_input;
using phyr_bench::input;
using packed = phyr::packed_list<phyr::cpu_phys, bench_allocator>;

constexpr std::uint64_t page = 4096;

// ---- exact sizes ---------------------------------------------------------------------------------

struct size_case {
  const char* name;
  std::uint64_t (*build)(packed&);  // returns the expected entry bytes, 0 if the build failed
};

std::uint64_t frag_pages(packed& l) {
  const input& in = get_input("frag", "256MiB");
  if (!l.try_append_pages(in.pfns, 0, in.bytes)) return 0;
  return 8 * in.pfns.size();
}
std::uint64_t run_2m(packed& l) {
  std::vector<std::uint64_t> pfns(512);
  for (std::uint64_t i = 0; i < 512; ++i) pfns[i] = 512 * 9 + i;
  return l.try_append_pages(pfns, 0, 512 * page) ? 8 : 0;
}
std::uint64_t page_1g(packed& l) {
  return l.try_append(phys_range{phys_addr{std::uint64_t{5} << 30}, std::uint64_t{1} << 30}) ? 8
                                                                                               : 0;
}
std::uint64_t block_8t(packed& l) {  // order 31
  return l.try_append(phys_range{phys_addr{std::uint64_t{3} << 43}, std::uint64_t{1} << 43}) ? 8
                                                                                               : 0;
}
// Interior entries: a lone range is sliced out of a block by the header (8 bytes), so these
// sit between two single pages (8 + 8 bytes).
std::uint64_t between(packed& l, phys_range r, std::uint64_t expect) {
  const bool ok = l.try_append(phys_range{phys_addr{page}, page}) && l.try_append(r) &&
                  l.try_append(phys_range{phys_addr{page * 3}, page});
  return ok ? expect + 16 : 0;
}
std::uint64_t run_3(packed& l) { return between(l, phys_range{phys_addr{page * 9}, 3 * page}, 12); }
std::uint64_t run_max_count(packed& l) {  // mode 1, count 2^32-1
  return between(l, phys_range{phys_addr{page * 17}, page * 0xffffffffull}, 12);
}
std::uint64_t bytes_max(packed& l) {  // mode 2, 25-bit length
  return between(l, phys_range{phys_addr{page * 40 + 8}, (std::uint64_t{1} << 25) - 1}, 12);
}
std::uint64_t bytes_over(packed& l) {  // one byte past mode 2: escape
  return between(l, phys_range{phys_addr{page * 40 + 8}, std::uint64_t{1} << 25}, 16);
}
std::uint64_t escape_max_len(packed& l) {  // max_len: a chain of 9 escapes
  return between(l, phys_range{phys_addr{page * 40 + 8}, phys_range::max_len}, 144);
}
std::uint64_t dio512(packed& l) {
  const input& in = get_input("dio512", "16MiB");
  if (!l.try_append_all(in.chunks)) return 0;
  // 12 bytes per chunk; the last may start on a page and be cut from a one-page block (8).
  const auto& last = in.chunks.back();
  const bool page_start = last.addr().is_aligned(page);
  return 12 * in.chunks.size() - (page_start ? 4 : 0);
}

void bm_size(benchmark::State& state, size_case c) {
  std::uint64_t got = 0, want = 0, ranges = 0;
  for (auto _ : state) {
    packed l;
    want = c.build(l);
    got = l.entry_bytes();
    ranges = l.size();
    // The stored form must round-trip too.
    std::vector<std::uint32_t> w(l.word_count());
    const auto n = l.try_copy_words(w);
    auto back = packed::from_words(l.header(), w);
    if (!n || !back || back->size() != l.size() || back->entry_bytes() != got) want = ~got;
  }
  if (!check(state, want != 0 && got == want, "packed size differs from the expected table"))
    return;
  state.counters["entry_bytes"] = static_cast<double>(got);
  state.counters["expected_bytes"] = static_cast<double>(want);
  state.counters["ranges"] = static_cast<double>(ranges);
  state.counters["object_bytes"] = static_cast<double>(sizeof(packed));
  state.counters["header_bytes"] = static_cast<double>(sizeof(phyr::packed_header));
}

// ---- traces: bytes per page ------------------------------------------------------------------------

/// Slots of the scatterlist layout for `n` entries: chained 128-entry arrays whose last slot
/// links to the next array (k arrays hold 127 k + 1 entries).
std::uint64_t sg_slots(std::uint64_t n) {
  if (n <= 128) return n;
  const std::uint64_t arrays = (n - 1 + 126) / 127;
  return n + arrays - 1;
}

void bm_trace_bytes(benchmark::State& state, std::string wl) {
  const input& in = get_input(wl, "256MiB");
  if (!check(state, in.present, phyr_bench::trace_missing)) return;
  double pk_entries = 0, pk_all = 0, rl_all = 0, sg = 0;
  bool ok = true;
  for (auto _ : state) {
    packed l;
    phyr::range_list<phys_range, bench_allocator> rl;
    ok = l.try_append_pages(in.pfns, 0, in.bytes) && rl.try_append_pages(in.pfns, 0, in.bytes);
    ok = ok && l.size() == in.runs && rl.size() == in.runs;
    // lossless: the same ranges as range_list
    auto it = rl.begin();
    l.for_each([&](const phys_range& r) noexcept {
      ok = ok && it != rl.end() && *it == r;
      ++it;
    });
    const double pages = in.pages_of_data();
    pk_entries = static_cast<double>(l.entry_bytes()) / pages;
    pk_all = static_cast<double>(l.bytes_used()) / pages;
    rl_all = static_cast<double>(rl.bytes_used()) / pages;
    sg = 32.0 * static_cast<double>(sg_slots(in.sg_entries)) / pages;
  }
  if (!check(state, ok, "packed_list differs from range_list on the trace")) return;
  state.counters["runs"] = static_cast<double>(in.runs);
  state.counters["packed_entry_B_per_page"] = pk_entries;
  state.counters["packed_total_B_per_page"] = pk_all;
  state.counters["range_list_B_per_page"] = rl_all;
  state.counters["sg_B_per_page"] = sg;
  state.counters["packed_entries_over_sg"] = pk_entries / sg;  // target <= 0.25
  state.counters["packed_total_over_sg"] = pk_all / sg;
}

// ---- build speed against memcpy --------------------------------------------------------------------

void bm_build_vs_memcpy(benchmark::State& state, std::string wl, std::string size) {
  const input& in = get_input(wl, size);
  if (!check(state, in.present, phyr_bench::trace_missing)) return;
  std::vector<std::uint64_t> dst(in.pfns.size());
  const std::size_t bytes = in.pfns.size() * sizeof(std::uint64_t);
  // Each iteration times `reps` memcpys, then `reps` builds, each batch bracketed by one
  // read of the process CPU clock (so a loaded machine's waiting is not counted and the
  // clock's own cost is spread over the batch).
  constexpr int reps = 8;
  double t_copy = 0, t_build = 0;
  bool ok = true;
  for (auto _ : state) {
    const std::int64_t t0 = phyr_bench::cpu_now_ns();
    for (int k = 0; k < reps; ++k) {
      std::memcpy(dst.data(), in.pfns.data(), bytes);
      benchmark::DoNotOptimize(dst.data());
      benchmark::ClobberMemory();
    }
    const std::int64_t t1 = phyr_bench::cpu_now_ns();
    for (int k = 0; k < reps; ++k) {
      packed l;
      ok &= static_cast<bool>(l.try_append_pages(in.pfns, 0, in.bytes));
      benchmark::DoNotOptimize(l);
      benchmark::ClobberMemory();
      ok &= l.size() == in.runs && l.total_bytes() == in.bytes;
    }
    const std::int64_t t2 = phyr_bench::cpu_now_ns();
    ok &= dst.back() == in.pfns.back() && dst.front() == in.pfns.front();
    t_copy += static_cast<double>(t1 - t0);
    t_build += static_cast<double>(t2 - t1);
  }
  if (!check(state, ok, "packed_list build is wrong")) return;
  const double per = static_cast<double>(state.iterations()) * reps * in.pages_of_data();
  state.counters["build_ns_per_page"] = t_build / per;
  state.counters["memcpy_ns_per_page"] = t_copy / per;
  state.counters["build_over_memcpy"] = t_build / t_copy;  // target <= 4
  state.counters["pages"] = in.pages_of_data();
}

// ---- decode speed ----------------------------------------------------------------------------------

enum class walk_how { iterator, for_each, blocks4k, for_each_block4k };

void bm_walk(benchmark::State& state, std::string wl, std::string size, walk_how how) {
  const input& in = get_input(wl, size);
  if (!check(state, in.present, phyr_bench::trace_missing)) return;
  packed l;
  if (!check(state, static_cast<bool>(l.try_append_pages(in.pfns, 0, in.bytes)),
             "packed_list build failed"))
    return;
  const auto blocks = l.try_blocks(page);
  if (!check(state, blocks && blocks->size() == in.pfns.size(), "blocks(4096) is wrong")) return;
  std::uint64_t sum = 0, want = 0, pfn_sum = 0;
  for (const std::uint64_t p : in.pfns) pfn_sum += p;
  for (auto _ : state) {
    // A local accumulator: `sum` has its address taken by DoNotOptimize, and summing into
    // memory would time a store-forwarding chain instead of the decoder.
    std::uint64_t acc = 0;
    switch (how) {
      case walk_how::iterator:
        for (const phys_range r : l) acc += r.len();
        want = in.bytes;
        break;
      case walk_how::for_each:
        l.for_each([&acc](const phys_range& r) noexcept { acc += r.len(); });
        want = in.bytes;
        break;
      case walk_how::blocks4k:
        // Sum of pfns: equals the input's, so every block address is checked.
        for (const phys_addr a : *blocks) acc += a.value() >> 12;
        want = pfn_sum;
        break;
      case walk_how::for_each_block4k:
        (void)l.try_for_each_block(page, [&acc](phys_addr a) noexcept { acc += a.value() >> 12; });
        want = pfn_sum;
        break;
    }
    sum = acc;
    benchmark::DoNotOptimize(sum);
  }
  if (!check(state, sum == want, "packed_list walk is wrong")) return;
  const bool per_block = how == walk_how::blocks4k || how == walk_how::for_each_block4k;
  const double items = per_block ? static_cast<double>(in.pfns.size())
                                 : static_cast<double>(l.size());
  // items per ns = rate / 1e9
  state.counters["items"] = items;
  state.counters["items_per_ns"] =
      benchmark::Counter(items / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}

// ---- registration ----------------------------------------------------------------------------------

[[maybe_unused]] const bool registered = [] {
  const size_case sizes[] = {
      {"frag_4k_pages_65536", frag_pages}, {"run_2MiB_aligned", run_2m},
      {"page_1GiB_aligned", page_1g},      {"block_8TiB_order31", block_8t},
      {"run_3_pages_interior", run_3},     {"run_count_2^32-1", run_max_count},
      {"bytes_2^25-1", bytes_max},         {"bytes_2^25_escape", bytes_over},
      {"escape_chain_max_len", escape_max_len}, {"dio512_chunks_32768", dio512},
  };
  for (const size_case& c : sizes)
    benchmark::RegisterBenchmark((std::string("packed_size/") + c.name).c_str(), bm_size, c)
        ->Iterations(1);
  for (const char* wl : {"trace_4k", "trace_thp"}) {
    benchmark::RegisterBenchmark((std::string("packed_trace_bytes/") + wl).c_str(),
                                 bm_trace_bytes, std::string(wl))
        ->Iterations(1);
  }
  struct wl_size {
    const char* wl;
    const char* size;
  };
  for (wl_size w : {wl_size{"frag", "256MiB"}, wl_size{"frag", "1GiB"},
                    wl_size{"trace_4k", "256MiB"}, wl_size{"trace_thp", "256MiB"},
                    wl_size{"2m", "1GiB"}}) {
    const std::string tag = std::string(w.wl) + "/" + w.size;
    benchmark::RegisterBenchmark(("packed_build_vs_memcpy/" + tag).c_str(), bm_build_vs_memcpy,
                                 std::string(w.wl), std::string(w.size))
        ->Unit(benchmark::kMicrosecond)
        ->MinTime(phyr_bench::min_time(0.3));
    for (auto [how, name] : {std::pair{walk_how::iterator, "iterator"},
                             std::pair{walk_how::for_each, "for_each"},
                             std::pair{walk_how::blocks4k, "blocks4k"},
                             std::pair{walk_how::for_each_block4k, "for_each_block4k"}}) {
      benchmark::RegisterBenchmark(("packed_walk/" + tag + "/" + name).c_str(), bm_walk,
                                   std::string(w.wl), std::string(w.size), how)
          ->Unit(benchmark::kMicrosecond)
          ->MinTime(phyr_bench::min_time(0.2));
    }
  }
  return true;
}();

}  // namespace
