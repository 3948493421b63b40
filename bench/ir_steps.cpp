// The io_steps/... cases of phyr_bench_ir (bench/ir_driver.cpp): the 4 KiB I/O of
// bench/io_path.hpp run up to each step, so the difference between consecutive cases is that
// step's instructions.

#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "compare.hpp"
#include "io_path.hpp"
#include "ir_driver.hpp"

namespace phyr_bench {

void add_step_cases(std::vector<ir_case>& out) {
  // The 4 KiB I/O step by step: each case runs the path up to a step, so the difference
  // between consecutive cases is that step's cost (io_steps/<wl>/4KiB/<impl>_<n>).
  for (const char* wl : {"contig", "frag"}) {
    const std::string w = wl, size = "4KiB";
    const std::string stem = "io_steps/" + w + "/" + size + "/";
    auto phyr_case = [&]<int Upto>(std::integral_constant<int, Upto>) {
      out.push_back({stem + "phyr_range_list_" + std::to_string(Upto), "io",
                     [w, size](double& units) -> std::function<bool()> {
                       units = 1;
                       const input* in = &get_input(w, size);
                       auto m = std::make_shared<phyr::identity_mapper<bench_bus>>();
                       auto page = std::make_shared<prp_page>();
                       return [in, m, page] { return phyr_io<false, Upto>(*in, *m, *page).ok; };
                     }});
    };
    auto sg_case = [&]<int Upto>(std::integral_constant<int, Upto>) {
      out.push_back({stem + "scatterlist_" + std::to_string(Upto), "io",
                     [w, size](double& units) -> std::function<bool()> {
                       units = 1;
                       const input* in = &get_input(w, size);
                       return [in] {
                         bench_allocator b;
                         return scatterlist_io<false, Upto>(*in, b).ok;
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
