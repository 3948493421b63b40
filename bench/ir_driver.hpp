/// What bench/ir_driver.cpp and bench/ir_steps.cpp share: one case of phyr_bench_ir. The step
/// cases live in their own translation unit so that their extra instantiations do not change
/// how the compiler inlines the whole-I/O and build cases (which would move their counts).
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace phyr_bench {

/// One case: `prepare()` builds the input and everything the check needs, and returns the
/// measured operation, which returns false when its result is wrong.
struct ir_case {
  std::string name;
  std::string unit;  // "page" or "io"
  std::function<std::function<bool()>(double& units)> prepare;
};

/// Appends the io_steps/... cases (ir_steps.cpp).
void add_step_cases(std::vector<ir_case>& out);

}  // namespace phyr_bench
