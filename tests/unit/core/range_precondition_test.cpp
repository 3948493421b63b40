// core/range: the constructor's preconditions hold in every build. PHYR_ASSERT is compiled
// out here, as in a release build, so only the constructor's own check can stop a bad range.
#define PHYR_ASSERT(cond, msg) ((void)sizeof(!(cond)))

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <phyr/core/range.hpp>

namespace {
using phyr::phys_addr;
using phyr::phys_range;

// Builds phys_range{addr, len} in a forked child: true when phyr's assertion handler stopped
// it (abort() in hosted builds, a trap instruction otherwise), false when the constructor
// returned.
bool construction_traps(std::uint64_t addr, std::uint64_t len) {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    // The child dies by the signal itself, not through Catch's handlers.
    for (int sig : {SIGABRT, SIGILL, SIGTRAP}) std::signal(sig, SIG_DFL);
    std::freopen("/dev/null", "w", stderr);  // the assertion message is expected
    volatile std::uint64_t a = addr, n = len;  // not constant-folded
    const phys_range r{phys_addr{a}, n};
    ::_exit(r.len() == n ? 0 : 1);
  }
  int st = 0;
  REQUIRE(pid > 0);
  REQUIRE(::waitpid(pid, &st, 0) == pid);
  if (WIFEXITED(st)) return false;
  return WIFSIGNALED(st) &&
         (WTERMSIG(st) == SIGABRT || WTERMSIG(st) == SIGILL || WTERMSIG(st) == SIGTRAP);
}
}  // namespace

TEST_CASE(
    "range constructor: an end past 2^64, a zero length or a length spilling into the flag "
    "bits traps even with PHYR_ASSERT compiled out",
    "[range]") {
  CHECK(construction_traps(~std::uint64_t{0}, 2));        // {~0, 2}: the end would wrap to 1
  CHECK(construction_traps(0x1000, 0));                   // zero length
  CHECK(construction_traps(0, phys_range::max_len + 1));  // 2^56: would read back as flags
  CHECK(construction_traps(0, ~std::uint64_t{0}));
  // The boundaries themselves are fine.
  CHECK_FALSE(construction_traps(~std::uint64_t{0}, 1));                       // ends at 2^64
  CHECK_FALSE(construction_traps(~std::uint64_t{0} - phys_range::max_len + 1,  // ends at 2^64
                                 phys_range::max_len));
  CHECK_FALSE(construction_traps(0, phys_range::max_len));
}

TEST_CASE("range::create reports what the constructor would trap on", "[range]") {
  CHECK(phys_range::create(phys_addr{~std::uint64_t{0}}, 2).error() == phyr::errc::overflow);
  CHECK(phys_range::create(phys_addr{0}, 0).error() == phyr::errc::invalid_argument);
  CHECK(phys_range::create(phys_addr{0}, phys_range::max_len + 1).error() == phyr::errc::too_long);
  // The constructor is usable in constant expressions, where a bad range does not compile.
  constexpr phys_range r{phys_addr{~std::uint64_t{0}}, 1};
  STATIC_REQUIRE(r.last().value() == ~std::uint64_t{0});
}
