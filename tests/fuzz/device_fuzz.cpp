// libFuzzer target: device/ (constraints, try_validate, split, try_blocks, best page size) on
// arbitrary lists and constraints, each against a brute-force model written from the
// documented rule:
// - validate(): the limits' own consistency rule;
// - try_validate: the first offending entry's error, else the segment count, which must equal
//   the number of segments split() yields and a greedy cut done one segment at a time;
// - split: the segments tile every input range exactly, in order, flags kept, none longer than
//   segment_limit() or crossing a multiple of segment_boundary_mask + 1, and each one but the
//   last of its range as long as the limits allow (greedy);
// - try_blocks: the block-aligned windows of each run of contiguous ranges, runs at gaps
//   aligned, else misaligned;
// - try_best_page_size: every supported size tried against the kernel rule
//   (ib_umem_find_best_pgsz), the largest that fits and is not larger than the smallest
//   covering size.
#include <fuzzer/FuzzedDataProvider.h>

#include <bit>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <phyr/core/range.hpp>
#include <phyr/device.hpp>
#include <span>
#include <vector>

namespace {

using phyr::errc;
using phyr::phys_addr;
using phyr::phys_range;
using u64 = std::uint64_t;

#define FUZZ_CHECK(c)           \
  do {                          \
    if (!(c)) __builtin_trap(); \
  } while (0)

constexpr u64 max_pieces = 1 << 16;  // skip inputs whose brute force would take too long

bool is_mask(u64 m) { return (m & (m + 1)) == 0; }

// The documented consistency rule of dma_constraints.
bool model_valid(const phyr::dma_constraints& c) {
  if (c.max_segment_size == 0) return false;
  if (c.alignment == 0 || !std::has_single_bit(c.alignment)) return false;
  if (c.segment_boundary_mask == 0 || !is_mask(c.segment_boundary_mask)) return false;
  if (!is_mask(c.virt_boundary_mask)) return false;
  if (c.alignment - 1 > c.segment_boundary_mask) return false;
  if (c.max_segment_size < c.alignment) return false;
  return true;
}

// Greedy cut of one range, one segment at a time.
template <class F>
void cut(u64 a, u64 len, u64 limit, u64 bmask, F&& emit) {
  while (len != 0) {
    const u64 room_m1 = bmask - (a & bmask);  // bytes to the next boundary, minus one
    u64 take = len < limit ? len : limit;
    if (take - 1 > room_m1) take = room_m1 + 1;
    emit(a, take);
    a += take;
    len -= take;
  }
}

u64 pieces_bound(std::span<const phys_range> l, u64 unit) {
  u64 n = 0;
  for (const phys_range& r : l) {
    n += r.len() / unit + 2;
    if (n > max_pieces) return n;
  }
  return n;
}

void check_validate_and_split(std::span<const phys_range> l, const phyr::dma_constraints& c,
                              phyr::gap_policy policy) {
  const auto st = phyr::try_validate(l, c, policy);
  if (!model_valid(c) || l.empty()) {
    FUZZ_CHECK(!st && st.error() == errc::invalid_argument);
    return;
  }
  const u64 limit = c.max_segment_size / c.alignment * c.alignment;
  FUZZ_CHECK(c.segment_limit() == limit);
  // The model of try_validate: first offending entry in list order.
  std::optional<errc> want_err;
  u64 total = 0, gaps = 0, first_gap = 0;
  for (std::size_t i = 0; i < l.size() && !want_err; ++i) {
    const phys_range& r = l[i];
    if (r.last().value() > c.dma_mask) {
      want_err = errc::not_addressable;
    } else if (r.addr().value() % c.alignment != 0) {
      want_err = errc::misaligned;
    } else if (r.len() > ~total) {
      want_err = errc::overflow;
    } else if (i != 0 && c.virt_boundary_mask != 0) {
      const u64 prev_last = l[i - 1].last().value();
      const bool contiguous = prev_last != ~u64{0} && r.addr().value() == prev_last + 1;
      const u64 unit = c.virt_boundary_mask;  // mask = unit - 1 of the block layer
      const bool prev_end_ok = prev_last == ~u64{0} || ((prev_last + 1) & unit) == 0;
      const bool start_ok = (r.addr().value() & unit) == 0;
      if (!contiguous && !(prev_end_ok && start_ok)) {
        if (policy == phyr::gap_policy::reject) {
          want_err = errc::misaligned;
        } else if (gaps++ == 0) {
          first_gap = i;
        }
      }
    }
    if (!want_err) total += r.len();
  }
  if (want_err) {
    FUZZ_CHECK(!st && st.error() == *want_err);
    return;
  }
  FUZZ_CHECK(st.has_value());
  FUZZ_CHECK(st->entries == l.size() && st->bytes == total && st->gaps == gaps);
  if (gaps != 0) FUZZ_CHECK(st->first_gap == first_gap);
  u64 unit = limit;
  if (c.segment_boundary_mask < unit) unit = c.segment_boundary_mask + 1;
  if (pieces_bound(l, unit) > max_pieces) return;

  // split() against the greedy cut, range by range.
  std::vector<phys_range> want;
  for (const phys_range& r : l)
    cut(r.addr().value(), r.len(), limit, c.segment_boundary_mask, [&](u64 a, u64 n) {
      want.push_back(phys_range{phys_addr{a}, n, r.flags()});
    });
  std::vector<phys_range> got;
  for (const phys_range s : phyr::split(l, c)) {
    FUZZ_CHECK(s.len() <= limit);
    FUZZ_CHECK((s.addr().value() & ~c.segment_boundary_mask) ==
               (s.last().value() & ~c.segment_boundary_mask));
    got.push_back(s);
    if (got.size() > want.size()) break;
  }
  FUZZ_CHECK(got == want);
  FUZZ_CHECK(st->segments == want.size());
  auto ts = phyr::try_split(l, c);
  if (policy == phyr::gap_policy::reject || gaps == 0) {
    FUZZ_CHECK(ts.has_value());
    std::size_t k = 0;
    for (const phys_range s : *ts) FUZZ_CHECK(k < want.size() && s == want[k++]);
    FUZZ_CHECK(k == want.size());
  } else {
    FUZZ_CHECK(!ts && ts.error() == errc::misaligned);
  }
}

void check_blocks(std::span<const phys_range> l, u64 bs) {
  auto b = phyr::try_blocks(l, bs);
  if (bs == 0 || !std::has_single_bit(bs) || l.empty()) {
    FUZZ_CHECK(!b && b.error() == errc::invalid_argument);
    return;
  }
  const u64 m = bs - 1;
  std::optional<errc> want_err;
  u64 total = 0;
  for (std::size_t i = 0; i < l.size() && !want_err; ++i) {
    const phys_range& r = l[i];
    if (r.len() > ~total) {
      want_err = errc::overflow;
      break;
    }
    total += r.len();
    if (i == 0) continue;
    const u64 prev_last = l[i - 1].last().value();
    const bool contiguous = prev_last != ~u64{0} && r.addr().value() == prev_last + 1;
    const bool end_ok = prev_last == ~u64{0} || ((prev_last + 1) & m) == 0;
    if (!contiguous && !(end_ok && (r.addr().value() & m) == 0)) want_err = errc::misaligned;
  }
  if (want_err) {
    FUZZ_CHECK(!b && b.error() == *want_err);
    return;
  }
  FUZZ_CHECK(b.has_value());
  FUZZ_CHECK(b->total_bytes() == total);
  FUZZ_CHECK(b->first_offset() == (l[0].addr().value() & m));
  // Brute force: runs of contiguous ranges, then every block from the run's first byte to its
  // last. Count first, so a huge answer is checked by count only.
  std::vector<std::pair<u64, u64>> runs;  // first byte, last byte
  for (std::size_t i = 0; i < l.size(); ++i) {
    const u64 a = l[i].addr().value();
    if (i != 0 && runs.back().second != ~u64{0} && a == runs.back().second + 1)
      runs.back().second = l[i].last().value();
    else
      runs.push_back({a, l[i].last().value()});
  }
  u64 count = 0;
  for (const auto& r : runs) count += ((r.second & ~m) - (r.first & ~m)) / bs + 1;
  FUZZ_CHECK(b->size() == count);
  if (count > max_pieces) return;
  std::vector<u64> want;
  for (const auto& r : runs)
    for (u64 x = r.first & ~m;; x += bs) {
      want.push_back(x);
      if (x == (r.second & ~m)) break;
    }
  std::vector<u64> got;
  for (const auto blk : *b) {
    got.push_back(blk.value());
    if (got.size() > want.size()) break;
  }
  FUZZ_CHECK(got == want);
}

void check_best_page_size(std::span<const phys_range> l, u64 sizes, u64 iova) {
  const auto r = phyr::try_best_page_size(l, sizes, iova);
  if (l.empty()) {
    FUZZ_CHECK(!r && r.error() == errc::invalid_argument);
    return;
  }
  u64 total = 0;
  for (const phys_range& x : l) {
    if (x.len() > ~total) {
      FUZZ_CHECK(!r && r.error() == errc::overflow);
      return;
    }
    total += x.len();
  }
  if (total - 1 > ~iova) {
    FUZZ_CHECK(!r && r.error() == errc::overflow);
    return;
  }
  // Runs with the IOVA each starts at.
  struct run {
    u64 addr, va;
  };
  std::vector<run> runs;
  u64 va = iova;
  for (std::size_t i = 0; i < l.size(); ++i) {
    const u64 a = l[i].addr().value();
    const bool contiguous =
        i != 0 && l[i - 1].last().value() != ~u64{0} && a == l[i - 1].last().value() + 1;
    if (!contiguous) runs.push_back({a, va});
    va += l[i].len();
  }
  const u64 last = iova + (total - 1);
  auto fits = [&](unsigned k) {
    const u64 m = (u64{1} << k) - 1;
    for (std::size_t i = 0; i < runs.size(); ++i) {
      if (((runs[i].addr ^ runs[i].va) & m) != 0) return false;
      if (i != 0 && (runs[i].va & m) != 0) return false;
    }
    return true;
  };
  // The smallest supported size of 2 bytes or more whose one page covers [iova, last].
  int cover = -1;
  for (unsigned k = 1; k < 64 && cover < 0; ++k)
    if ((sizes >> k & 1) && (iova >> k) == (last >> k)) cover = static_cast<int>(k);
  int best = -1;
  for (unsigned k = 0; k < 64; ++k) {
    if (!(sizes >> k & 1) || !fits(k)) continue;
    if (cover >= 0 && static_cast<int>(k) > cover) continue;
    best = static_cast<int>(k);
  }
  if (best < 0) {
    FUZZ_CHECK(!r && r.error() == errc::not_supported);
    FUZZ_CHECK(phyr::best_page_size(l, sizes, iova) == 0);
    return;
  }
  FUZZ_CHECK(r.has_value() && *r == (u64{1} << best));
  FUZZ_CHECK(phyr::best_page_size(l, sizes, iova) == *r);
  // The answer is usable as a block size.
  if (total / *r < max_pieces) FUZZ_CHECK(phyr::try_blocks(l, *r).has_value());
}

u64 some_mask(FuzzedDataProvider& in) {
  switch (in.ConsumeIntegralInRange<int>(0, 3)) {
    case 0:
      return ~u64{0};
    case 1:
      return in.ConsumeIntegral<u64>();  // often not 2^k - 1: validate must refuse
    default: {
      const unsigned k = in.ConsumeIntegralInRange<unsigned>(0, 64);
      return k == 64 ? ~u64{0} : (u64{1} << k) - 1;
    }
  }
}

u64 some_pow2(FuzzedDataProvider& in, unsigned lo, unsigned hi) {
  if (in.ConsumeIntegralInRange<int>(0, 15) == 0) return in.ConsumeIntegral<u64>();
  return u64{1} << in.ConsumeIntegralInRange<unsigned>(lo, hi);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  phyr::dma_constraints c;
  c.max_segment_size = in.ConsumeBool() ? in.ConsumeIntegral<u64>()
                                        : in.ConsumeIntegralInRange<u64>(0, u64{1} << 24);
  c.segment_boundary_mask = some_mask(in);
  c.alignment = some_pow2(in, 0, 16);
  c.virt_boundary_mask = in.ConsumeBool() ? 0 : some_mask(in);
  c.dma_mask = in.ConsumeBool() ? ~u64{0} : some_mask(in);
  FUZZ_CHECK(c.validate().has_value() == model_valid(c));
  const auto policy = in.ConsumeBool() ? phyr::gap_policy::reject : phyr::gap_policy::report;
  const u64 bs = some_pow2(in, 0, 40);
  const u64 sizes = in.ConsumeBool()
                        ? in.ConsumeIntegral<u64>()
                        : (u64{1} << 12) | (u64{1} << 16) | (u64{1} << 21) | (u64{1} << 30);
  const u64 iova = in.ConsumeBool() ? in.ConsumeIntegral<u64>()
                                    : in.ConsumeIntegralInRange<u64>(0, 1 << 22) << 9;

  // The list: arbitrary ranges, often contiguous with or near the previous one, often
  // page-shaped.
  std::vector<phys_range> l;
  const std::size_t n = in.ConsumeIntegralInRange<std::size_t>(0, 64);
  while (l.size() < n && in.remaining_bytes() != 0) {
    u64 a;
    switch (in.ConsumeIntegralInRange<int>(0, 3)) {
      case 0:
        a = in.ConsumeIntegral<u64>();
        break;
      case 1:
        a = in.ConsumeIntegralInRange<u64>(0, u64{1} << 40) << 12;
        break;
      default:
        a = l.empty() ? in.ConsumeIntegral<u64>() : l.back().end().value();
        if (in.ConsumeBool()) a += in.ConsumeIntegralInRange<u64>(0, 1 << 13);
    }
    const u64 len = in.ConsumeBool() ? in.ConsumeIntegralInRange<u64>(1, u64{1} << 22)
                                     : in.ConsumeIntegralInRange<u64>(1, phys_range::max_len);
    auto r = phys_range::create(phys_addr{a}, len, static_cast<phyr::range_flags>(l.size() & 3));
    if (r) l.push_back(*r);
  }
  const std::span<const phys_range> s{l};
  check_validate_and_split(s, c, policy);
  check_blocks(s, bs);
  check_best_page_size(s, sizes, iova);
  return 0;
}
