// phyr_bench's main(): the console shows progress (benchmark k of N, elapsed time, errors as they
// happen) instead of Google Benchmark's table of raw rows; the rows still go, complete, to the
// file given by --benchmark_out (results.json under ctest), which bench/report.py reads.
//
// Passing --benchmark_format=... or --benchmark_list_tests (or setting PHYR_BENCH_RAW=1) brings
// back Google Benchmark's own console output, e.g. to look at one benchmark:
//   build/bench/bench/phyr_bench --benchmark_filter='^build/frag/1GiB/' --benchmark_format=console
//
// The console reporter is also what prints Debian's "Library was built as DEBUG" warning; this
// reporter prints a one-line context instead, and the README's "Benchmarks" section says why
// that warning does not affect the numbers.

#include <benchmark/benchmark.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <new>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "workloads.hpp"

// ---- heap allocation count ------------------------------------------------------------------
// The replacement operator new that phyr_bench::operator_new_calls() reads. A relaxed load and
// store, not a read-modify-write: no locked instruction on every allocation of the process.

namespace {
std::atomic<std::uint64_t> g_operator_new_calls{0};

void* counted_new(std::size_t n, std::size_t align) noexcept {
  g_operator_new_calls.store(g_operator_new_calls.load(std::memory_order_relaxed) + 1,
                             std::memory_order_relaxed);
  if (n == 0) n = 1;
  if (align <= __STDCPP_DEFAULT_NEW_ALIGNMENT__) return std::malloc(n);
  return std::aligned_alloc(align, (n + align - 1) / align * align);
}
}  // namespace

std::uint64_t phyr_bench::operator_new_calls() noexcept {
  return g_operator_new_calls.load(std::memory_order_relaxed);
}

// libstdc++'s operator delete forms release with free(), which matches malloc/aligned_alloc.
[[gnu::noinline]] void* operator new(std::size_t n) {
  if (void* p = counted_new(n, __STDCPP_DEFAULT_NEW_ALIGNMENT__)) return p;
  std::abort();
}
[[gnu::noinline]] void* operator new(std::size_t n, std::align_val_t a) {
  if (void* p = counted_new(n, static_cast<std::size_t>(a))) return p;
  std::abort();
}
[[gnu::noinline]] void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  return counted_new(n, __STDCPP_DEFAULT_NEW_ALIGNMENT__);
}
[[gnu::noinline]] void* operator new(std::size_t n, std::align_val_t a,
                                     const std::nothrow_t&) noexcept {
  return counted_new(n, static_cast<std::size_t>(a));
}

// ---- progress on the console -----------------------------------------------------------------

namespace {

/// Prints "[k/N mm:ss] name" progress, every error, and a closing summary.
class progress_reporter final : public benchmark::BenchmarkReporter {
 public:
  explicit progress_reporter(std::size_t total) noexcept
      : total_(total), tty_(isatty(STDOUT_FILENO) == 1), start_(clock::now()) {}

  bool ReportContext(const Context& c) override {
    const auto& cpu = c.cpu_info;
    std::printf("phyr_bench: %zu benchmarks, %s mode, %d CPUs at %.0f MHz%s\n", total_,
                phyr_bench::mode_name(), cpu.num_cpus, cpu.cycles_per_second / 1e6,
                phyr_bench::mode() == phyr_bench::run_mode::quick
                    ? " (quick: every benchmark once, numbers indicative only)"
                    : "");
    std::fflush(stdout);
    return true;
  }

  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& r : runs) {
      // The family name without Google Benchmark's /min_time:.../repeats:... suffixes.
      std::string name = r.run_name.function_name;
      if (!r.run_name.args.empty()) name += "/" + r.run_name.args;
      // The 1- and 2-thread runs of one family are two benchmarks of the listing's count.
      if (r.threads > 1) name += "/threads:" + std::to_string(r.threads);
      const bool is_new = seen_.insert(name).second;
      if (r.error_occurred) {
        ++errors_;
        clear_line();
        std::printf("phyr_bench: ERROR in %s: %s\n", name.c_str(), r.error_message.c_str());
      }
      if (is_new) show(name);
    }
    std::fflush(stdout);
  }

  void Finalize() override {
    clear_line();
    std::printf(
        "phyr_bench: ran %zu of %zu benchmarks in %s, %zu error(s); raw rows in the "
        "--benchmark_out file\n",
        seen_.size(), total_, elapsed().c_str(), errors_);
    std::fflush(stdout);
  }

  [[nodiscard]] std::size_t errors() const noexcept { return errors_; }

 private:
  using clock = std::chrono::steady_clock;

  [[nodiscard]] std::string elapsed() const {
    const auto s = std::chrono::duration_cast<std::chrono::seconds>(clock::now() - start_).count();
    char buf[32];
    std::snprintf(buf, sizeof buf, "%lld:%02lld", static_cast<long long>(s / 60),
                  static_cast<long long>(s % 60));
    return buf;
  }

  void show(const std::string& name) {
    const std::size_t k = seen_.size();
    if (tty_) {
      std::printf("\r\033[K[%zu/%zu %s] %s", k, total_, elapsed().c_str(), name.c_str());
      dirty_ = true;
      return;
    }
    // Not a terminal (ctest, CI logs): a line every 10 s or every tenth of the suite.
    const auto now = clock::now();
    const std::size_t step = total_ >= 10 ? total_ / 10 : 1;
    if (k == 1 || k == total_ || k % step == 0 || now - last_line_ >= std::chrono::seconds(10)) {
      std::printf("[%zu/%zu %s] %s\n", k, total_, elapsed().c_str(), name.c_str());
      last_line_ = now;
    }
  }

  void clear_line() {
    if (tty_ && dirty_) std::printf("\r\033[K");
    dirty_ = false;
  }

  std::size_t total_;
  bool tty_;
  bool dirty_ = false;
  clock::time_point start_;
  clock::time_point last_line_{};
  std::set<std::string> seen_;
  std::size_t errors_ = 0;
};

/// Reporter that only counts: the listing pass writes the names here.
class null_reporter final : public benchmark::BenchmarkReporter {
 public:
  bool ReportContext(const Context&) override { return true; }
  void ReportRuns(const std::vector<Run>&) override {}
};

/// Google Benchmark's Initialize takes argc/argv by pointer and strips what it parses, and keeps
/// a pointer to argv[0] (the JSON context's "executable"): each pass gets its own copy, kept
/// alive until the process ends.
std::size_t initialize(const std::vector<std::string>& args, const char* extra) {
  static std::deque<std::vector<std::string>> kept;  // a deque never moves its elements
  std::vector<std::string>& a = kept.emplace_back(args);
  if (extra != nullptr) a.emplace_back(extra);
  static std::deque<std::vector<char*>> kept_argv;
  std::vector<char*>& argv = kept_argv.emplace_back();
  for (std::string& s : a) argv.push_back(s.data());
  argv.push_back(nullptr);
  int argc = static_cast<int>(a.size());
  benchmark::Initialize(&argc, argv.data());
  return static_cast<std::size_t>(argc);
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv, argv + argc);
  bool raw = phyr_bench::env_flag("PHYR_BENCH_RAW");
  for (const std::string& a : args) {
    if (a.rfind("--benchmark_format", 0) == 0 || a.rfind("--benchmark_list_tests", 0) == 0)
      raw = true;
  }
  if (raw) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
  }

  // Pass 1 lists the benchmarks (into a string, unseen) to learn N; pass 2 runs them.
  std::size_t total = 0;
  {
    if (initialize(args, "--benchmark_list_tests=true") > 1) {
      std::fprintf(stderr, "phyr_bench: unrecognized arguments (see --help)\n");
      return 1;
    }
    std::ostringstream sink;
    null_reporter lister;
    lister.SetOutputStream(&sink);
    lister.SetErrorStream(&sink);
    total = benchmark::RunSpecifiedBenchmarks(&lister);
  }
  initialize(args, "--benchmark_list_tests=false");
  benchmark::AddCustomContext("phyr_mode", phyr_bench::mode_name());  // report.py reads it
  progress_reporter progress(total);
  benchmark::RunSpecifiedBenchmarks(&progress);
  benchmark::Shutdown();
  // Errors fail the report step (bench/report.py), which names them; the run itself succeeded.
  return 0;
}
