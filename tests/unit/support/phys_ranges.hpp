// The vocabulary most unit tests share: phyr's physical-range names, `pr` (the short way to write
// a phys_range in a test) and `list_of` (a range_list of a few of them). A test pulls them in
// with `using namespace phyr_test;` inside its own anonymous namespace and adds what only it
// needs (its list alias, its bus tags).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <phyr/container/range_list.hpp>
#include <phyr/core/error.hpp>
#include <phyr/core/range.hpp>

namespace phyr_test {

using phyr::errc;
using phyr::phys_addr;
using phyr::phys_range;
using phyr::range_flags;

/// `len` bytes of physical memory at `addr`.
inline phys_range pr(std::uint64_t addr, std::uint64_t len,
                     range_flags f = range_flags::none) noexcept {
  return phys_range{phys_addr{addr}, len, f};
}

/// A range_list of `rs`, appended in order (so adjacent ranges coalesce as they would for a
/// caller); a test that needs an append to fail builds its list by hand.
inline phyr::range_list<phys_range> list_of(std::initializer_list<phys_range> rs) {
  phyr::range_list<phys_range> l;
  for (const phys_range& r : rs) phyr::must(l.try_append(r));
  return l;
}

}  // namespace phyr_test
