// libFuzzer target for the packed encoding (packed/packed_list.hpp).
//
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude \
//       tests/fuzz/packed_fuzz.cpp -o packed_fuzz && ./packed_fuzz -max_total_time=60
//
// The first byte picks a mode; the rest is the input:
//   0  arbitrary bytes as a header + 32-bit words: from_words must either reject them with an
//      errc or accept them; accepted lists must decode to exactly what the validator saw,
//      re-export words that decode to the same ranges, and cut into blocks consistently.
//   1  arbitrary bytes as a sequence of ranges (address, length, flags): appended to a
//      packed_list, they must decode to the coalesced sequence (the std::vector model),
//      round-trip through words and through range_list, and take exactly the smallest size.
//   2  arbitrary bytes as a pfn array plus offsets: try_append_pages must agree with
//      range_list::try_append_pages (success or failure, and the ranges).
// Any disagreement traps. Undefined behaviour is caught by the sanitizers.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <phyr/container/range_list.hpp>
#include <phyr/packed/packed_list.hpp>
#include <vector>

#include "../unit/packed/packed_model.hpp"
#include "fuzz_common.hpp"

namespace {

using phyr::phys_addr;
using phyr::phys_range;
using phyr::range_flags;
using list = phyr::packed_list<phyr::cpu_phys>;
constexpr std::uint64_t max_len = phys_range::max_len;

using fuzz::reader;
using packed_model::model_append;

// The iterators and for_each agree.
std::vector<phys_range> ranges_of(const list& l) {
  std::vector<phys_range> v = packed_model::ranges_of(l);
  std::vector<phys_range> w;
  l.for_each([&](const phys_range& r) { w.push_back(r); });
  FUZZ_CHECK(v == w);
  FUZZ_CHECK(v.size() == l.size());
  return v;
}

std::vector<std::uint32_t> words_of(const list& l) {
  std::vector<std::uint32_t> w(l.word_count());
  auto n = l.try_copy_words(w);
  FUZZ_CHECK(n && *n == w.size());
  return w;
}

// Stored form, range_list and blocks agree with `want`.
void check_list(const list& l, const std::vector<phys_range>& want) {
  FUZZ_CHECK(ranges_of(l) == want);
  const auto w = words_of(l);
  FUZZ_CHECK(w.size() * 4 == l.entry_bytes());
  auto back = list::from_words(l.header(), w);
  FUZZ_CHECK(back.has_value());
  FUZZ_CHECK(ranges_of(*back) == want);
  FUZZ_CHECK(words_of(*back) == w);
  auto rl = l.try_to_range_list();
  FUZZ_CHECK(rl.has_value());
  std::vector<phys_range> rv;
  for (const phys_range& r : *rl) rv.push_back(r);
  FUZZ_CHECK(rv == want);
  // Blocks at the largest size the list allows (capped so the walk stays short).
  const std::uint64_t bs = l.alignment() < (std::uint64_t{1} << 40) ? l.alignment()
                                                                     : std::uint64_t{1} << 40;
  auto b = l.try_blocks(bs);
  FUZZ_CHECK(b.has_value());
  if (b->size() < 4096) {
    std::uint64_t k = 0;
    for (auto it = b->begin(); it != b->end(); ++it) ++k;
    FUZZ_CHECK(k == b->size());
  }
}

void decode_arbitrary(reader in) {
  phyr::packed_header h;
  std::uint8_t a = 0;
  if (!in.get(h.first_offset) || !in.get(h.total_len) || !in.get(h.entry_count) || !in.get(a))
    return;
  h.min_align_log2 = a;
  std::vector<std::uint32_t> words(in.n / 4);
  if (!words.empty()) std::memcpy(words.data(), in.p, words.size() * 4);
  std::vector<phys_range> seen;
  const phyr::result<void> parsed = phyr::detail::parse_packed(
      h, words, [&](std::uint64_t s, std::uint64_t len, std::uint8_t f) {
        seen.emplace_back(phys_addr{s}, len, static_cast<range_flags>(f));
      });
  auto l = list::from_words(h, words);
  FUZZ_CHECK(l.has_value() == parsed.has_value());
  if (!l) return;
  FUZZ_CHECK(l->total_bytes() == h.total_len);
  FUZZ_CHECK(l->min_alignment() == (std::uint64_t{1} << h.min_align_log2));
  check_list(*l, seen);
}

void round_trip_ranges(reader in) {
  list l;
  std::vector<phys_range> model;
  std::uint64_t total = 0;
  std::uint64_t a = 0, len = 0;
  std::uint8_t f = 0, how = 0;
  phys_range prev{};
  while (in.get(how) && in.get(a) && in.get(len) && in.get(f)) {
    // Steer part of the input toward merges and page-aligned shapes.
    if ((how & 3) == 1 && prev.len() != 0 && prev.last().value() != ~std::uint64_t{0})
      a = prev.last().value() + 1;
    if ((how & 12) == 4) {
      a &= ~std::uint64_t{0xfff};
      len = (len & 0xffffffffffull) << 12;
    }
    len &= max_len;
    if (len == 0) len = 1;
    if (len - 1 > ~a) len = ~a + 1;
    const phys_range r{phys_addr{a}, len, static_cast<range_flags>(f)};
    auto res = l.try_append(r);
    if (r.len() > ~total) {
      FUZZ_CHECK(!res && res.error() == phyr::errc::overflow);
      continue;
    }
    FUZZ_CHECK(res.has_value());
    total += r.len();
    model_append(model, r);
    prev = r;
  }
  FUZZ_CHECK(l.total_bytes() == total);
  check_list(l, model);
  // The smallest encoding: each range's own minimum (proved on small windows by the tests).
  FUZZ_CHECK(l.entry_bytes() == packed_model::expected_entry_bytes(model));
}

void pages(reader in) {
  std::uint16_t off = 0, cut = 0;
  std::uint8_t f = 0;
  if (!in.get(off) || !in.get(cut) || !in.get(f)) return;
  std::vector<std::uint64_t> pfns;
  std::uint64_t next = 0;
  std::uint32_t v = 0;
  // Each 4 bytes: low 2 bits say continue / jump / raw (can exceed 2^52).
  while (in.get(v) && pfns.size() < 4096) {
    if ((v & 3) == 0 && !pfns.empty()) {
      next = pfns.back() + 1;
    } else if ((v & 3) == 3) {
      next = (std::uint64_t{v} << 22) | v;  // sometimes >= 2^52
    } else {
      next = v >> 2;
    }
    pfns.push_back(next);
  }
  if (pfns.empty()) return;
  const std::uint64_t first = off % 4096;
  const std::uint64_t span = pfns.size() * 4096;
  std::uint64_t total = span - first - (cut % 4096);
  if (total == 0) total = 1;
  list l;
  phyr::range_list<phys_range> rl;
  auto x = l.try_append_pages(pfns, first, total, static_cast<range_flags>(f));
  auto y = rl.try_append_pages(pfns, first, total, static_cast<range_flags>(f));
  FUZZ_CHECK(x.has_value() == y.has_value());
  if (!x) {
    FUZZ_CHECK(x.error() == y.error());
    FUZZ_CHECK(l.empty());
    return;
  }
  std::vector<phys_range> want;
  for (const phys_range& r : rl) want.push_back(r);
  check_list(l, want);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const reader in{data + 1, size - 1};
  switch (data[0] % 3) {
    case 0: decode_arbitrary(in); break;
    case 1: round_trip_ranges(in); break;
    default: pages(in); break;
  }
  return 0;
}
