// phyr_bench_ir: runs one benchmark case a fixed number of times, for callgrind. Instruction
// counts do not move when the machine is busy, so they show what a change did where timings on
// a shared machine cannot. bench/ir.py runs every case under
//   valgrind --tool=callgrind --collect-atstart=no
// and divides the instructions collected by the pages (or I/Os) processed; this program turns
// collection on around the measured loop only (after one untimed warm-up round that fills the
// recycling heap, as Google Benchmark's first iterations do), so input generation, the warm-up
// and the check after are not counted.
//
//   phyr_bench_ir --list
//   phyr_bench_ir build_limited/frag/1GiB/phyr_range_list 4    # 4 builds, prints the units
//
// Cases use the names of the phyr_bench rows they mirror (bench/workloads.hpp's convention) and
// run the same code: the builds of build_bench.cpp and limits_bench.cpp, the per-I/O paths of
// bench/io_path.hpp. Output, one line: "<case> units=<pages or I/Os> unit=<page|io> ok=<0|1>".
// Without valgrind it runs the same loop uncounted.

#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "compare.hpp"
#include "io_path.hpp"
#include "ir_driver.hpp"

#if __has_include(<valgrind/callgrind.h>)
#  include <valgrind/callgrind.h>
#  define PHYR_IR_TOGGLE() CALLGRIND_TOGGLE_COLLECT
#else
#  define PHYR_IR_TOGGLE() ((void)0)
#endif

// workloads.hpp declares the count that bench/main.cpp's operator new keeps; nothing here reads
// it, but the declaration needs a definition to link where it is odr-used.
std::uint64_t phyr_bench::operator_new_calls() noexcept { return 0; }

namespace {

using namespace phyr_bench;

constexpr std::uint64_t limit = 64 * kib;

std::uint64_t limited_entries(const input& in) {
  std::uint64_t n = 0, run = 0;
  const std::uint64_t per = limit / page_size;
  for (std::size_t i = 0; i < in.pfns.size(); ++i) {
    if (i != 0 && in.pfns[i] == in.pfns[i - 1] + 1) {
      ++run;
      continue;
    }
    n += (run + per - 1) / per;
    run = 1;
  }
  return n + (run + per - 1) / per;
}

std::vector<ir_case> cases() {
  std::vector<ir_case> out;
  // The harness alone: what every count below includes per run (a call through
  // std::function and the loop).
  out.push_back({"noop", "io", [](double& units) -> std::function<bool()> {
                   units = 1;
                   return [] { return true; };
                 }});
  for (const char* wl : {"frag", "contig", "2m"}) {
    const std::string w = wl;
    const std::string size = "1GiB";
    const std::string stem = "/" + w + "/" + size + "/";
    // build/<wl>/1GiB/phyr_range_list: no limits (build_bench.cpp).
    out.push_back({"build" + stem + "phyr_range_list", "page",
                   [w, size](double& units) -> std::function<bool()> {
                     const input* in = &get_input(w, size);
                     units = in->pages_of_data();
                     return [in] {
                       cpu_list l;
                       return build_list(l, *in) && l.size() == in->runs;
                     };
                   }});
    // build_limited rows (limits_bench.cpp): 64 KiB, and 64 KiB with a 4 GiB boundary.
    for (const std::uint64_t boundary : {std::uint64_t{0}, std::uint64_t{4} * gib}) {
      out.push_back({"build_limited" + stem +
                         (boundary == 0 ? "phyr_range_list" : "phyr_range_list_b4g"),
                     "page", [w, size, boundary](double& units) -> std::function<bool()> {
                       const input* in = &get_input(w, size);
                       units = in->pages_of_data();
                       const std::uint64_t want = limited_entries(*in);
                       return [in, boundary, want] {
                         cpu_list l;
                         const bool ok = l.try_set_max_segment(limit) &&
                                         l.try_set_segment_boundary(boundary) &&
                                         l.try_append_pages(in->pfns, 0, in->bytes);
                         return ok && l.size() == want;
                       };
                     }});
    }
    out.push_back({"build_limited" + stem + "scatterlist", "page",
                   [w, size](double& units) -> std::function<bool()> {
                     const input* in = &get_input(w, size);
                     units = in->pages_of_data();
                     const std::uint64_t want = limited_entries(*in);
                     return [in, want] {
                       bench_allocator a;
                       sg::sg_table t;
                       const bool ok = static_cast<bool>(sg::sg_alloc_table_from_pages_segment(
                           t, in->pages, 0, in->bytes, limit, a));
                       const bool right = ok && t.nents == want;
                       if (ok) sg::sg_free_table(t, a);
                       return right;
                     };
                   }});
    out.push_back({"build" + stem + "scatterlist", "page",
                   [w, size](double& units) -> std::function<bool()> {
                     const input* in = &get_input(w, size);
                     units = in->pages_of_data();
                     return [in] {
                       bench_allocator a;
                       sg::sg_table t;
                       const bool ok = build_sg(t, *in, a);
                       const bool right = ok && t.nents == in->sg_entries;
                       if (ok) sg::sg_free_table(t, a);
                       return right;
                     };
                   }});
  }
  for (const char* wl : {"contig", "frag"}) {
    for (const char* sz : {"4KiB", "16KiB", "128KiB", "1MiB"}) {
      const std::string w = wl, size = sz;
      const std::string stem = "io/" + w + "/" + size + "/";
      out.push_back({stem + "phyr_range_list", "io",
                     [w, size](double& units) -> std::function<bool()> {
                       units = 1;
                       const input* in = &get_input(w, size);
                       auto m = std::make_shared<phyr::identity_mapper<bench_bus>>();
                       auto page = std::make_shared<prp_page>();
                       io_tally want = expected(*in);
                       if (!(phyr_io<true>(*in, *m, *page) == want)) return [] { return false; };
                       want.prp_sum = 0;
                       return [in, m, page, want] { return phyr_io<false>(*in, *m, *page) == want; };
                     }});
      out.push_back({stem + "scatterlist", "io",
                     [w, size](double& units) -> std::function<bool()> {
                       units = 1;
                       const input* in = &get_input(w, size);
                       io_tally want = expected(*in);
                       bench_allocator a;
                       if (!(scatterlist_io<true>(*in, a) == want)) return [] { return false; };
                       want.prp_sum = 0;
                       return [in, want] {
                         bench_allocator b;
                         return scatterlist_io<false>(*in, b) == want;
                       };
                     }});
    }
  }
  add_step_cases(out);  // ir_steps.cpp
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<ir_case> all = cases();
  if (argc < 2 || std::strcmp(argv[1], "--list") == 0) {
    for (const ir_case& c : all) std::printf("%s\n", c.name.c_str());
    return argc < 2 ? 2 : 0;
  }
  const std::string want = argv[1];
  const long reps = argc > 2 ? std::strtol(argv[2], nullptr, 10) : 1;
  for (ir_case& c : all) {
    if (c.name != want) continue;
    double units = 0;
    const std::function<bool()> run = c.prepare(units);
    bool ok = run();  // warm-up: first allocations fill the recycling heap (not counted)
    // The measured loop, and nothing else, is collected.
    PHYR_IR_TOGGLE();
    for (long i = 0; i < reps; ++i) ok = run() && ok;
    PHYR_IR_TOGGLE();
    std::printf("%s units=%.0f unit=%s ok=%d\n", c.name.c_str(),
                units * static_cast<double>(reps), c.unit.c_str(), ok ? 1 : 0);
    return ok ? 0 : 1;
  }
  std::fprintf(stderr, "phyr_bench_ir: no case %s (--list)\n", want.c_str());
  return 2;
}
