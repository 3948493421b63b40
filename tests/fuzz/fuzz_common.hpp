// What the fuzz targets share: FUZZ_CHECK, which traps on a disagreement so libFuzzer keeps the
// input (it stays on with NDEBUG, unlike assert), and a reader taking typed values off the
// front of the input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#define FUZZ_CHECK(c)           \
  do {                          \
    if (!(c)) __builtin_trap(); \
  } while (0)

namespace fuzz {

// The input, consumed from the front; get() fails (and takes nothing) once too few bytes remain.
struct reader {
  const std::uint8_t* p;
  std::size_t n;
  template <class T>
  bool get(T& v) {
    if (n < sizeof(T)) return false;
    std::memcpy(&v, p, sizeof(T));
    p += sizeof(T);
    n -= sizeof(T);
    return true;
  }
};

}  // namespace fuzz
