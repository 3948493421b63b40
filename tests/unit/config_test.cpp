// config.hpp: failed assertions speak; the version macros agree with each other.
#include <catch2/catch.hpp>

#include <csignal>
#include <string>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <phyr/config.hpp>
#include <phyr/version.hpp>

namespace {

struct death {
  bool signalled = false;
  int signal = 0;
  std::string stderr_text;
};

// Runs `f` in a child whose stderr is a pipe; reports how it died and what it printed.
template <class F>
death run_to_death(F f) {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::dup2(fds[1], 2);
    ::close(fds[0]);
    ::close(fds[1]);
    // Catch's handlers would report the abort as this test's failure; let it kill the child.
    std::signal(SIGABRT, SIG_DFL);
    std::signal(SIGILL, SIG_DFL);
    std::signal(SIGTRAP, SIG_DFL);
    f();
    ::_exit(0);
  }
  ::close(fds[1]);
  death d;
  char buf[512];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) d.stderr_text.append(buf, n);
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  d.signalled = WIFSIGNALED(status);
  d.signal = d.signalled ? WTERMSIG(status) : 0;
  return d;
}

}  // namespace

TEST_CASE("config: a failed PHYR_ASSERT prints file, line and message, then aborts") {
#if PHYR_DEBUG
  const int line = __LINE__ + 1;
  const death d = run_to_death([] { PHYR_ASSERT(1 + 1 == 3, "arithmetic is broken"); });
  CHECK(d.signalled);
  CHECK(d.signal == SIGABRT);
  CHECK(d.stderr_text.find("config_test.cpp:" + std::to_string(line) +
                           ": phyr assertion failed: arithmetic is broken") != std::string::npos);
#else
  // Release builds evaluate nothing: the child survives and prints nothing.
  const death d = run_to_death([] { PHYR_ASSERT(1 + 1 == 3, "arithmetic is broken"); });
  CHECK_FALSE(d.signalled);
  CHECK(d.stderr_text.empty());
#endif
}

TEST_CASE("config: a passing PHYR_ASSERT neither prints nor stops") {
  const death d = run_to_death([] { PHYR_ASSERT(2 + 2 == 4, "never printed"); });
  CHECK_FALSE(d.signalled);
  CHECK(d.stderr_text.empty());
}

TEST_CASE("config: PHYR_VERSION is the generated major.minor.patch as one number") {
  STATIC_REQUIRE(PHYR_VERSION ==
                 PHYR_VERSION_MAJOR * 10000 + PHYR_VERSION_MINOR * 100 + PHYR_VERSION_PATCH);
  STATIC_REQUIRE(PHYR_VERSION >= 100);  // 0.1.0 is the first version
}
