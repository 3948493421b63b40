// A downstream program: what a user writes after find_package(phyr) or add_subdirectory(phyr).
// Exits non-zero when phyr does not behave; run by the package.* ctest tests.
#include <phyr/phyr.hpp>

#include <cstdio>
#include <cstring>

#if defined(PHYR_CONSUMER_WITH_FMT)
#  include <fmt/format.h>
#  if __has_include(<phyr/fmt.hpp>)
#    include <phyr/fmt.hpp>
#  endif
#endif

namespace {

// Appends through whichever spelling the container offers (`try_append` or `append`), and
// reports success whether it returns a result-like value or nothing.
template <class List, class Range>
bool append(List& list, const Range& r) {
  if constexpr (requires { list.try_append(r); }) {
    return static_cast<bool>(list.try_append(r));
  } else if constexpr (requires { static_cast<bool>(list.append(r)); }) {
    return static_cast<bool>(list.append(r));
  } else {
    list.append(r);
    return true;
  }
}

}  // namespace

int main() {
  phyr::range_list<phyr::phys_range> list;
  const auto r = phyr::phys_range::create(phyr::phys_addr{0x1000}, 0x2000);
  if (!r) {
    std::puts("consumer: phys_range::create failed");
    return 1;
  }
  if (!append(list, *r)) {
    std::puts("consumer: append failed");
    return 2;
  }
#if defined(PHYR_EXPECTED_VERSION)
  // The pkg-config consumer: the header's generated version must be the package's.
  char v[32];
  std::snprintf(v, sizeof v, "%d.%d.%d", PHYR_VERSION_MAJOR, PHYR_VERSION_MINOR, PHYR_VERSION_PATCH);
  if (std::strcmp(v, PHYR_EXPECTED_VERSION) != 0) {
    std::printf("consumer: header says %s, package says %s\n", v, PHYR_EXPECTED_VERSION);
    return 3;
  }
#endif
#if defined(PHYR_CONSUMER_WITH_FMT)
  std::puts(fmt::format("consumer: linked fmt {}", FMT_VERSION).c_str());
#endif
  std::puts("consumer: ok");
  return 0;
}
