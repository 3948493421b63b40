// The plain model the packed_list tests and the packed fuzz target (tests/fuzz/packed_fuzz.cpp)
// check against: a std::vector of ranges, filled the way range_list coalesces, and the encoded
// size such a list must have.
#pragma once

#include <cstddef>
#include <cstdint>
#include <phyr/core/range.hpp>
#include <phyr/packed/encoding.hpp>
#include <vector>

namespace packed_model {

// Every range a list yields through its iterators, in order.
template <class L>
std::vector<phyr::phys_range> ranges_of(const L& l) {
  std::vector<phyr::phys_range> v;
  for (phyr::phys_range r : l) v.push_back(r);
  return v;
}

// Appends `r` as range_list does with default limits: an adjacent range with equal flags fills
// the last one up to phys_range::max_len, and the rest starts a new range.
inline void model_append(std::vector<phyr::phys_range>& m, phyr::phys_range r) {
  using phyr::phys_range;
  if (!m.empty() && m.back().adjacent(r) && m.back().flags() == r.flags()) {
    const std::uint64_t room = phys_range::max_len - m.back().len();
    const std::uint64_t take = r.len() < room ? r.len() : room;
    m.back() = phys_range{m.back().addr(), m.back().len() + take, r.flags()};
    if (take == r.len()) return;
    r = phys_range{r.addr() + take, r.len() - take, r.flags()};
  }
  m.push_back(r);
}

// The size the encoding must have: each range's own smallest entry (minimality of that is
// checked by brute force in packed_encoding_test).
inline std::uint64_t expected_entry_bytes(const std::vector<phyr::phys_range>& m) {
  std::uint64_t b = 0;
  for (std::size_t i = 0; i < m.size(); ++i)
    b += phyr::packed_format::plan_entry(m[i].addr().value(), m[i].len(),
                                         static_cast<std::uint8_t>(m[i].flags()), i == 0,
                                         i + 1 == m.size())
             .bytes();
  return b;
}

}  // namespace packed_model
