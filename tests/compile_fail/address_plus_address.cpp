// Two points of one address space do not add: only point + displacement does.
#include <phyr/core/address.hpp>

int main() {
  const phyr::phys_addr a{0x1000};
  const phyr::phys_addr b{0x2000};
  auto ok = a + (b - a);  // control: point + displacement compiles
#ifdef PHYR_COMPILE_FAIL
  auto bad = a + b;
  (void)bad;
#endif
  return ok.value() == 0x2000 ? 0 : 1;
}
