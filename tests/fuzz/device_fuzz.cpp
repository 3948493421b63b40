// libFuzzer target: device/ (constraints, try_combine, try_plan_split, split, try_blocks, best
// page size) on arbitrary lists and constraints, each against a brute-force model written
// from the documented rule:
// - check(): the limits' own consistency rule; try_combine: the per-field intersection with
//   busdma's clamp, and whatever it returns passes check() and is at least as strict as both;
// - try_plan_split, both merge policies: the first offending entry's error in list order
//   (reach through the mask and the excluded windows, alignment, overflow, virtual-boundary
//   gaps, the transfer unit of every unit split() cuts), then max_total_bytes, then
//   max_segments with the count needed; else the segment count, which must equal the number
//   of segments split() yields and a greedy cut done one segment at a time (every piece a
//   whole number of transfer units);
// - split: the segments tile every input range (or merged run of contiguous, equal-flag
//   entries) exactly, in order, flags kept, none longer than segment_limit() or crossing a
//   multiple of segment_boundary_mask + 1, each one but the last of its range as long as the
//   limits allow (greedy);
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

#include "fuzz_common.hpp"

namespace {

using phyr::errc;
using phyr::phys_addr;
using phyr::phys_range;
using u64 = std::uint64_t;

constexpr u64 max_pieces = 1 << 16;  // skip inputs whose brute force would take too long

bool is_mask(u64 m) { return (m & (m + 1)) == 0; }

// The documented consistency rule of dma_constraints.
bool model_valid(const phyr::dma_constraints& c) {
  if (c.max_segment_size == 0 || c.max_segments == 0 || c.max_total_bytes == 0) return false;
  if (c.alignment == 0 || !std::has_single_bit(c.alignment)) return false;
  if (c.min_transfer_unit == 0 || !std::has_single_bit(c.min_transfer_unit)) return false;
  if (c.segment_boundary_mask == 0 || !is_mask(c.segment_boundary_mask)) return false;
  if (!is_mask(c.virt_boundary_mask)) return false;
  if (c.alignment - 1 > c.segment_boundary_mask) return false;
  if (c.min_transfer_unit - 1 > c.segment_boundary_mask) return false;
  if (c.max_segment_size < c.alignment || c.max_segment_size < c.min_transfer_unit) return false;
  if (c.alignment > phys_range::max_len || c.min_transfer_unit > phys_range::max_len) return false;
  for (const phyr::address_window& w : c.excluded)
    if (w.len == 0 || w.addr + (w.len - 1) < w.addr) return false;
  return true;
}

bool excluded_hit(const phyr::dma_constraints& c, u64 a, u64 last) {
  for (const phyr::address_window& w : c.excluded)
    if (a <= w.addr + (w.len - 1) && w.addr <= last) return true;
  return false;
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

// What split() cuts as one: each entry, or with merging each run of entries that follow each
// other contiguously with equal flags (and a total that fits in 64 bits).
struct unit_range {
  u64 a, len;
  phyr::range_flags flags;
  std::size_t last_entry;
};
std::vector<unit_range> units_of(std::span<const phys_range> l, bool merge) {
  std::vector<unit_range> u;
  for (std::size_t i = 0; i < l.size(); ++i) {
    const phys_range& r = l[i];
    if (merge && !u.empty()) {
      unit_range& b = u.back();
      const u64 last = b.a + (b.len - 1);
      if (last != ~u64{0} && r.addr().value() == last + 1 && r.flags() == b.flags &&
          r.len() <= ~b.len) {
        b.len += r.len();
        b.last_entry = i;
        continue;
      }
    }
    u.push_back({r.addr().value(), r.len(), r.flags(), i});
  }
  return u;
}

// The transfer-unit rule as documented: every piece split() cuts is a whole number of units,
// i.e. the length is, and the range starts on a unit or is never cut at a boundary.
bool whole_units_rule(u64 a, u64 len, u64 unit, u64 bmask) {
  if (len % unit != 0) return false;
  const u64 room_m1 = bmask - (a & bmask);
  return a % unit == 0 || len - 1 <= room_m1;
}

void check_plan_and_split(std::span<const phys_range> l, const phyr::dma_constraints& c,
                          phyr::gap_policy policy, bool merge) {
  const phyr::split_options opt{
      .gaps = policy,
      .merge = merge ? phyr::merge_policy::merge_contiguous : phyr::merge_policy::keep_entries};
  u64 needed = 0xdead;
  const auto st = phyr::try_plan_split(l, c, opt, &needed);
  if (!model_valid(c) || l.empty()) {
    FUZZ_CHECK(!st && st.error() == errc::invalid_argument);
    FUZZ_CHECK(needed == 0xdead);
    return;
  }
  const u64 unit = c.min_transfer_unit;
  const u64 most = c.max_segment_size < phys_range::max_len ? c.max_segment_size : phys_range::max_len;
  const u64 limit = most & ~((c.alignment > unit ? c.alignment : unit) - 1);
  FUZZ_CHECK(c.segment_limit() == limit);
  const std::vector<unit_range> units = units_of(l, merge);

  // The model of the per-entry checks, in list order. An entry continuing a merged run is
  // checked for reach and overflow only; a unit's transfer-unit rule is checked at its last
  // entry.
  std::optional<errc> want_err;
  u64 total = 0, gaps = 0, first_gap = 0;
  std::vector<std::size_t> unit_of(l.size());
  std::vector<bool> first_of_unit(l.size(), false);
  for (std::size_t k = 0, i = 0; k < units.size(); ++k) {
    first_of_unit[i] = true;
    for (; i <= units[k].last_entry; ++i) unit_of[i] = k;
  }
  for (std::size_t i = 0; i < l.size() && !want_err; ++i) {
    const phys_range& r = l[i];
    const std::size_t k = unit_of[i];
    const bool starts = first_of_unit[i];
    if (r.last().value() > c.dma_mask || excluded_hit(c, r.addr().value(), r.last().value())) {
      want_err = errc::not_addressable;
    } else if (starts && r.addr().value() % c.alignment != 0) {
      want_err = errc::misaligned;
    } else if (r.len() > ~total) {
      want_err = errc::overflow;
    } else if (starts && i != 0 && c.virt_boundary_mask != 0) {
      const u64 prev_last = l[i - 1].last().value();
      const bool contiguous = prev_last != ~u64{0} && r.addr().value() == prev_last + 1;
      const u64 vm = c.virt_boundary_mask;
      const bool prev_end_ok = prev_last == ~u64{0} || ((prev_last + 1) & vm) == 0;
      const bool start_ok = (r.addr().value() & vm) == 0;
      if (!contiguous && !(prev_end_ok && start_ok)) {
        if (policy == phyr::gap_policy::reject) {
          want_err = errc::misaligned;
        } else if (gaps++ == 0) {
          first_gap = i;
        }
      }
    }
    if (want_err) break;
    total += r.len();
    if (units[k].last_entry == i &&
        !whole_units_rule(units[k].a, units[k].len, unit, c.segment_boundary_mask))
      want_err = errc::misaligned;
  }
  if (want_err) {
    FUZZ_CHECK(!st && st.error() == *want_err);
    FUZZ_CHECK(needed == 0xdead);
    return;
  }
  if (total > c.max_total_bytes) {
    FUZZ_CHECK(!st && st.error() == errc::too_long);
    return;
  }
  u64 window = limit;
  if (c.segment_boundary_mask < window) window = c.segment_boundary_mask + 1;
  if (pieces_bound(l, window) > max_pieces) {
    // Too many segments to enumerate: only the outcome's kind is checked.
    FUZZ_CHECK(st.has_value() || st.error() == errc::too_many_segments);
    return;
  }

  // split() against the greedy cut, unit by unit; every piece a whole number of units.
  std::vector<phys_range> want;
  for (const unit_range& u : units)
    cut(u.a, u.len, limit, c.segment_boundary_mask, [&](u64 a, u64 n) {
      FUZZ_CHECK(n % unit == 0);
      want.push_back(phys_range{phys_addr{a}, n, u.flags});
    });
  if (want.size() > c.max_segments) {
    FUZZ_CHECK(!st && st.error() == errc::too_many_segments);
    FUZZ_CHECK(needed == want.size());
    return;
  }
  FUZZ_CHECK(st.has_value());
  FUZZ_CHECK(needed == 0xdead);
  FUZZ_CHECK(st->entries == l.size() && st->bytes == total && st->gaps == gaps);
  if (gaps != 0) FUZZ_CHECK(st->first_gap == first_gap);
  FUZZ_CHECK(st->segments == want.size());

  const auto checked = phyr::checked_constraints::create(c);
  FUZZ_CHECK(checked.has_value());
  auto compare = [&](auto&& view) {
    std::vector<phys_range> got;
    for (const phys_range s : view) {
      FUZZ_CHECK(s.len() <= limit);
      FUZZ_CHECK((s.addr().value() & ~c.segment_boundary_mask) ==
                 (s.last().value() & ~c.segment_boundary_mask));
      got.push_back(s);
      if (got.size() > want.size()) break;
    }
    FUZZ_CHECK(got == want);
  };
  if (merge) {
    compare(phyr::split<phyr::merge_policy::merge_contiguous>(l, *checked));
  } else {
    compare(phyr::split(l, *checked));
  }
  if (!merge) {
    auto t = phyr::try_split(l, c);
    if (policy == phyr::gap_policy::reject || gaps == 0) {
      FUZZ_CHECK(t.has_value());
      compare(*t);
    } else {
      FUZZ_CHECK(!t && t.error() == errc::misaligned);
    }
  }
}

// try_combine: the documented per-field intersection and clamp; the result passes check()
// and accepts nothing either input refuses.
void check_combine(const phyr::dma_constraints& p, const phyr::dma_constraints& ch) {
  const auto r = phyr::try_combine(p, ch);
  if (!model_valid(p) || !model_valid(ch)) {
    FUZZ_CHECK(!r && r.error() == errc::invalid_argument);
    return;
  }
  auto lo = [](u64 a, u64 b) { return a < b ? a : b; };
  auto hi = [](u64 a, u64 b) { return a < b ? b : a; };
  phyr::dma_constraints w;
  w.max_segment_size = lo(p.max_segment_size, ch.max_segment_size);
  w.segment_boundary_mask = lo(p.segment_boundary_mask, ch.segment_boundary_mask);
  w.alignment = hi(p.alignment, ch.alignment);
  w.virt_boundary_mask = hi(p.virt_boundary_mask, ch.virt_boundary_mask);
  w.dma_mask = lo(p.dma_mask, ch.dma_mask);
  w.max_segments = lo(p.max_segments, ch.max_segments);
  w.max_total_bytes = lo(p.max_total_bytes, ch.max_total_bytes);
  w.min_transfer_unit = hi(p.min_transfer_unit, ch.min_transfer_unit);
  if (w.segment_boundary_mask != ~u64{0} && w.max_segment_size > w.segment_boundary_mask + 1)
    w.max_segment_size = w.segment_boundary_mask + 1;
  std::vector<phyr::address_window> wins(ch.excluded.begin(), ch.excluded.end());
  for (const phyr::address_window& x : p.excluded) {
    bool dup = false;
    for (const phyr::address_window& y : wins) dup = dup || x == y;
    if (!dup) wins.push_back(x);
  }
  if (wins.size() > phyr::address_windows::capacity) {
    FUZZ_CHECK(!r && r.error() == errc::out_of_range);
    return;
  }
  for (const phyr::address_window& x : wins) FUZZ_CHECK(w.excluded.try_add(x).has_value());
  if (!model_valid(w)) {
    FUZZ_CHECK(!r && r.error() == errc::invalid_argument);
    return;
  }
  FUZZ_CHECK(r.has_value() && *r == w);
  FUZZ_CHECK(r->check().has_value());
  FUZZ_CHECK(r->segment_limit() <= p.max_segment_size && r->segment_limit() <= ch.max_segment_size);
  FUZZ_CHECK(r->dma_mask <= p.dma_mask && r->dma_mask <= ch.dma_mask);
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
      return in.ConsumeIntegral<u64>();  // often not 2^k - 1: check() must refuse
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

// Constraints from the input: often the kernel's kinds of values, sometimes anything.
phyr::dma_constraints some_constraints(FuzzedDataProvider& in) {
  phyr::dma_constraints c;
  c.max_segment_size = in.ConsumeBool() ? in.ConsumeIntegral<u64>()
                                        : in.ConsumeIntegralInRange<u64>(0, u64{1} << 24);
  c.segment_boundary_mask = some_mask(in);
  c.alignment = some_pow2(in, 0, 16);
  c.virt_boundary_mask = in.ConsumeBool() ? 0 : some_mask(in);
  c.dma_mask = in.ConsumeBool() ? ~u64{0} : some_mask(in);
  if (in.ConsumeBool()) {  // busdma's limits
    c.max_segments = in.ConsumeBool() ? in.ConsumeIntegralInRange<u64>(0, 70)
                                      : in.ConsumeIntegral<u64>();
    c.max_total_bytes = in.ConsumeBool() ? in.ConsumeIntegralInRange<u64>(0, u64{1} << 24)
                                         : in.ConsumeIntegral<u64>();
    c.min_transfer_unit = some_pow2(in, 0, 12);
    phyr::address_window w[4];
    const int nw = in.ConsumeIntegralInRange<int>(0, 4);
    for (int i = 0; i < nw; ++i) {
      w[i].addr = in.ConsumeBool() ? in.ConsumeIntegral<u64>()
                                   : in.ConsumeIntegralInRange<u64>(0, u64{1} << 28) << 12;
      w[i].len = in.ConsumeBool() ? in.ConsumeIntegral<u64>()
                                  : in.ConsumeIntegralInRange<u64>(0, u64{1} << 24);
    }
    switch (nw) {  // the initializer-list form takes windows as they are, invalid ones too
      case 1: c.excluded = {w[0]}; break;
      case 2: c.excluded = {w[0], w[1]}; break;
      case 3: c.excluded = {w[0], w[1], w[2]}; break;
      case 4: c.excluded = {w[0], w[1], w[2], w[3]}; break;
      default: break;
    }
  }
  return c;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  const phyr::dma_constraints c = some_constraints(in);
  FUZZ_CHECK(c.check().has_value() == model_valid(c));
  FUZZ_CHECK(phyr::checked_constraints::create(c).has_value() == model_valid(c));
  const auto policy = in.ConsumeBool() ? phyr::gap_policy::reject : phyr::gap_policy::report;
  const bool merge = in.ConsumeBool();
  const u64 bs = some_pow2(in, 0, 40);
  const u64 sizes = in.ConsumeBool()
                        ? in.ConsumeIntegral<u64>()
                        : (u64{1} << 12) | (u64{1} << 16) | (u64{1} << 21) | (u64{1} << 30);
  const u64 iova = in.ConsumeBool() ? in.ConsumeIntegral<u64>()
                                    : in.ConsumeIntegralInRange<u64>(0, 1 << 22) << 9;
  if (in.ConsumeIntegralInRange<int>(0, 7) == 0) check_combine(c, some_constraints(in));

  // The list: arbitrary ranges, often contiguous with or near the previous one, often
  // page-shaped; flags often equal to the previous entry's (so merging has runs to merge).
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
    const auto flags = !l.empty() && in.ConsumeBool()
                           ? l.back().flags()
                           : static_cast<phyr::range_flags>(l.size() & 3);
    auto r = phys_range::create(phys_addr{a}, len, flags);
    if (r) l.push_back(*r);
  }
  const std::span<const phys_range> s{l};
  check_plan_and_split(s, c, policy, merge);
  check_blocks(s, bs);
  check_best_page_size(s, sizes, iova);
  return 0;
}
