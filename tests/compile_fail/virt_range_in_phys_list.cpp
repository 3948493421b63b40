// A virtual range is not a physical range: it cannot be appended to a physical list.
#include <phyr/container/range_list.hpp>

int main() {
  phyr::range_list<phyr::phys_range> phys;
  phyr::must(phys.try_append(phyr::phys_range{phyr::phys_addr{0x1000}, 0x1000}));  // control
#ifdef PHYR_COMPILE_FAIL
  phyr::must(phys.try_append(phyr::virt_range{phyr::virt_addr{0x1000}, 0x1000}));
#endif
  return phys.size() == 1 ? 0 : 1;
}
