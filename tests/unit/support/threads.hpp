// Threads for the concurrency tests: `start_threads(n, body)` runs `body(stop_token, index)` on
// n std::jthreads; the test stops and joins them with `.clear()` (or by leaving scope). Leaving
// scope includes a failed REQUIRE in the test's own thread, which then reports the failure
// instead of terminating on a joinable std::thread.
#pragma once

#include <stop_token>
#include <thread>
#include <vector>

namespace phyr_test {

/// Starts `n` threads running `body(stop, i)` for i in [0, n); each body loops until
/// `stop.stop_requested()`.
template <class Body>
std::vector<std::jthread> start_threads(int n, Body body) {
  std::vector<std::jthread> threads;
  threads.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) threads.emplace_back(body, i);
  return threads;
}

}  // namespace phyr_test
