// libFuzzer target: range_list building, slicing, splicing and cloning against a naive model.
//
// The input picks limits (max_segment, segment_boundary), then a sequence of operations on
// two lists: append an arbitrary range, append an arbitrary pfn array with offsets, append
// several ranges at once (try_append_all), slice, splice the second list onto the first,
// clone. After every step each list must equal the model, which is the rule written out the
// slow way (one greedy step at a time, no fast paths): coalesce with the tail while adjacent,
// same flags, within max_segment and not crossing a boundary; otherwise push the longest piece
// the limits allow. Also checked: no entry exceeds the limit or crosses a boundary,
// size/total/lowest/highest agree, a fresh page list never has more entries than the kernel's
// sg_alloc_table_from_pages_segment chunk count, failures leave the list unchanged, and
// slices are exactly the requested bytes.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <phyr/container/range_list.hpp>
#include <vector>

#include "fuzz_common.hpp"

namespace {

using phyr::phys_addr;
using phyr::phys_range;
using phyr::range_flags;
using list = phyr::range_list<phys_range>;
constexpr std::uint64_t page = 4096;

struct entry {
  std::uint64_t addr, len;
  std::uint8_t flags;
  bool operator==(const entry&) const = default;
};

// The rule, one byte-run at a time.
struct model {
  std::uint64_t max_seg = phys_range::max_len;  // 0 in set_max_segment means this
  std::uint64_t boundary = 0;
  std::vector<entry> e;

  std::uint64_t room_to_boundary(std::uint64_t a) const {
    return boundary == 0 ? ~std::uint64_t{0} : boundary - a % boundary;
  }
  void append(std::uint64_t a, std::uint64_t len, std::uint8_t f) {
    if (!e.empty()) {
      entry& t = e.back();
      const std::uint64_t t_last = t.addr + (t.len - 1);
      if (t.flags == f && t_last != ~std::uint64_t{0} && t_last + 1 == a) {
        // How far the tail may grow: the limit, and the boundary its own start is under.
        std::uint64_t room = max_seg - t.len;
        const std::uint64_t b = room_to_boundary(t.addr);
        if (b != ~std::uint64_t{0}) room = std::min(room, b - t.len);
        const std::uint64_t take = std::min(len, room);
        t.len += take;
        a += take;
        len -= take;
      }
    }
    while (len != 0) {
      const std::uint64_t take = std::min({len, max_seg, room_to_boundary(a)});
      e.push_back({a, take, f});
      a += take;
      len -= take;
    }
  }
};

std::vector<entry> entries_of(const list& l) {
  std::vector<entry> v;
  for (const phys_range& r : l)
    v.push_back({r.addr().value(), r.len(), static_cast<std::uint8_t>(r.flags())});
  return v;
}

void check(const list& l, const model& m) {
  const auto v = entries_of(l);
  FUZZ_CHECK(v == m.e);
  FUZZ_CHECK(l.size() == m.e.size());
  std::uint64_t total = 0, lo = ~std::uint64_t{0}, hi = 0;
  for (const entry& x : v) {
    FUZZ_CHECK(x.len != 0 && x.len <= m.max_seg);
    if (m.boundary != 0) FUZZ_CHECK(x.addr / m.boundary == (x.addr + (x.len - 1)) / m.boundary);
    total += x.len;
    lo = std::min(lo, x.addr);
    hi = std::max(hi, x.addr + (x.len - 1));
  }
  FUZZ_CHECK(l.total_bytes() == total);
  if (!v.empty()) {
    FUZZ_CHECK(l.lowest().value() == lo);
    FUZZ_CHECK(l.highest().value() == hi);
  }
}

// The kernel's chunk count for a fresh table (lib/scatterlist.c,
// sg_alloc_append_table_from_pages: max_segment rounded down to pages, boundaries ignored).
std::uint64_t kernel_chunks(const std::vector<std::uint64_t>& pfns, std::uint64_t max_segment) {
  const std::uint64_t max = max_segment / page * page;
  std::uint64_t chunks = 1, seg_len = 0;
  for (std::size_t i = 1; i < pfns.size(); ++i) {
    seg_len += page;
    if (seg_len >= max || pfns[i] != pfns[i - 1] + 1) {
      ++chunks;
      seg_len = 0;
    }
  }
  return chunks;
}

// Whether appending `len` bytes could make more entries than a fuzz run should spend time on.
bool too_many_pieces(const model& m, std::uint64_t len) {
  std::uint64_t unit = m.max_seg;
  if (m.boundary != 0) unit = std::min(unit, m.boundary);
  return len / unit > 256;
}

// The setters refuse a limit below one page and a boundary that is not a power of two of at
// least one page (range_list.hpp); a refused setter leaves that limit as it was.
void set_limits(list& l, model& m, std::uint64_t max_seg, std::uint64_t boundary) {
  const bool seg_ok = max_seg == 0 || max_seg >= phyr::page_size;
  FUZZ_CHECK(l.try_set_max_segment(max_seg).has_value() == seg_ok);
  if (seg_ok)
    m.max_seg = (max_seg == 0 || max_seg > phys_range::max_len) ? phys_range::max_len : max_seg;
  const bool b_ok =
      boundary == 0 || (boundary >= phyr::page_size && (boundary & (boundary - 1)) == 0);
  FUZZ_CHECK(l.try_set_segment_boundary(boundary).has_value() == b_ok);
  if (b_ok) m.boundary = boundary;
  FUZZ_CHECK(l.max_segment() == m.max_seg && l.segment_boundary() == m.boundary);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  // Limits: none, or a max_segment of at least 512 bytes (the smallest a device declares)
  // and any boundary from 512 bytes up (powers of two, as hardware uses, or any value).
  std::uint64_t max_seg = 0, boundary = 0;
  if (in.ConsumeBool())
    max_seg = in.ConsumeIntegralInRange<std::uint64_t>(512, std::uint64_t{1} << 40);
  if (in.ConsumeBool()) {
    boundary = in.ConsumeBool() ? std::uint64_t{1} << in.ConsumeIntegralInRange<unsigned>(9, 63)
                                : in.ConsumeIntegralInRange<std::uint64_t>(512, ~std::uint64_t{0});
  }
  list a, b;
  model ma, mb;
  set_limits(a, ma, max_seg, boundary);
  set_limits(b, mb, max_seg, boundary);

  for (int step = 0; step < 32 && in.remaining_bytes() != 0; ++step) {
    const bool on_b = in.ConsumeBool();
    list& l = on_b ? b : a;
    model& m = on_b ? mb : ma;
    switch (in.ConsumeIntegralInRange<int>(0, 5)) {
      case 0: {  // an arbitrary range, near the last one or anywhere
        std::uint64_t addr = in.ConsumeIntegral<std::uint64_t>();
        if (!m.e.empty() && in.ConsumeBool())
          addr = m.e.back().addr + m.e.back().len + in.ConsumeIntegralInRange<std::uint64_t>(0, 2);
        const std::uint64_t len =
            in.ConsumeBool() ? in.ConsumeIntegralInRange<std::uint64_t>(1, 3 * page)
                             : in.ConsumeIntegralInRange<std::uint64_t>(1, phys_range::max_len);
        const auto f = static_cast<range_flags>(in.ConsumeIntegralInRange<int>(0, 3));
        auto r = phys_range::create(phys_addr{addr}, len, f);
        if (!r || too_many_pieces(m, len)) break;
        const std::uint64_t before_total = l.total_bytes();
        auto res = l.try_append(*r);
        if (!res) {
          FUZZ_CHECK(res.error() == phyr::errc::overflow);
          FUZZ_CHECK(len > ~before_total);
        } else {
          m.append(addr, len, static_cast<std::uint8_t>(f));
        }
        break;
      }
      case 1: {  // pages: arbitrary pfns (some runs), offset and length
        const std::size_t n = in.ConsumeIntegralInRange<std::size_t>(1, 300);
        std::vector<std::uint64_t> pfns;
        std::uint64_t next = in.ConsumeIntegralInRange<std::uint64_t>(0, (std::uint64_t{1} << 53));
        while (pfns.size() < n && in.remaining_bytes() != 0) {
          const int how = in.ConsumeIntegralInRange<int>(0, 3);
          if (how == 0)
            next = in.ConsumeIntegralInRange<std::uint64_t>(0, (std::uint64_t{1} << 52));
          if (how == 1) next = next - in.ConsumeIntegralInRange<std::uint64_t>(0, 3);
          const std::size_t run = in.ConsumeIntegralInRange<std::size_t>(1, 40);
          for (std::size_t k = 0; k < run && pfns.size() < n; ++k) pfns.push_back(next++);
        }
        if (pfns.empty()) break;
        const std::uint64_t span = pfns.size() * page;
        const std::uint64_t off = in.ConsumeIntegralInRange<std::uint64_t>(0, page - 1);
        std::uint64_t len = span - off - in.ConsumeIntegralInRange<std::uint64_t>(0, page - 1);
        if (in.ConsumeBool()) len = in.ConsumeIntegralInRange<std::uint64_t>(0, span + page);
        const auto f = static_cast<range_flags>(in.ConsumeIntegralInRange<int>(0, 3));
        const bool fresh = l.empty();
        const auto before = entries_of(l);
        if (too_many_pieces(m, len)) break;
        auto res = l.try_append_pages(pfns, off, len, f);
        bool valid = len != 0 && off < page && len <= span - off && len + off > span - page;
        bool pfn_ok = true;
        for (std::uint64_t p : pfns) pfn_ok = pfn_ok && (p >> 52) == 0;
        if (!valid || !pfn_ok) {
          FUZZ_CHECK(!res);
          FUZZ_CHECK(entries_of(l) == before);
          break;
        }
        if (!res) {  // only overflow of the list's byte total is left
          FUZZ_CHECK(res.error() == phyr::errc::overflow);
          FUZZ_CHECK(entries_of(l) == before);
          break;
        }
        // The model: page by page, each page's bytes appended.
        for (std::size_t i = 0; i < pfns.size(); ++i) {
          const std::uint64_t lo = i == 0 ? off : 0;
          const std::uint64_t end = off + len - i * page;
          const std::uint64_t hi = end < page ? end : page;
          m.append((pfns[i] << 12) + lo, hi - lo, static_cast<std::uint8_t>(f));
        }
        if (fresh && m.boundary == 0 && m.max_seg >= page)
          FUZZ_CHECK(l.size() <= kernel_chunks(pfns, m.max_seg));
        break;
      }
      case 2: {  // slice: exactly the requested bytes
        if (l.empty()) break;
        const std::uint64_t total = l.total_bytes();
        const std::uint64_t off = in.ConsumeIntegralInRange<std::uint64_t>(0, total);
        const std::uint64_t len = in.ConsumeIntegralInRange<std::uint64_t>(0, total - off + 1);
        auto v = l.try_slice(off, len);
        if (len == 0 || off >= total || len > total - off) {
          FUZZ_CHECK(!v);
          break;
        }
        FUZZ_CHECK(v.has_value());
        // The model's bytes [off, off + len), entry by entry.
        std::vector<entry> want;
        std::uint64_t pos = 0;
        for (const entry& x : m.e) {
          const std::uint64_t s = std::max(pos, off), t = std::min(pos + x.len, off + len);
          if (s < t) want.push_back({x.addr + (s - pos), t - s, x.flags});
          pos += x.len;
        }
        std::vector<entry> got;
        for (const phys_range& r : *v)
          got.push_back({r.addr().value(), r.len(), static_cast<std::uint8_t>(r.flags())});
        FUZZ_CHECK(got == want);
        FUZZ_CHECK(v->size() == want.size());
        FUZZ_CHECK(v->total_bytes() == len);
        std::uint64_t lo = ~std::uint64_t{0}, hi = 0;
        for (const entry& x : want) {
          lo = std::min(lo, x.addr);
          hi = std::max(hi, x.addr + (x.len - 1));
        }
        FUZZ_CHECK(v->lowest().value() == lo && v->highest().value() == hi);
        break;
      }
      case 3: {  // splice b onto a: the bytes in order, the limits kept, b empty
        if (b.total_bytes() > ~a.total_bytes()) break;
        const auto before_a = ma.e;
        const std::size_t na = a.size(), nb = b.size();
        auto res = a.try_splice_back(std::move(b));
        FUZZ_CHECK(res.has_value());
        FUZZ_CHECK(b.empty() && b.total_bytes() == 0);
        // The junction coalesces like an append; the rest of b moves as it was.
        for (const entry& x : mb.e) ma.append(x.addr, x.len, x.flags);
        mb.e.clear();
        // Relinked entries keep b's own cuts (equal to the model's except where a merge was
        // capped at max_len), so compare the bytes: both flattened to maximal runs.
        const auto got = entries_of(a);
        std::vector<entry> flat_got, flat_want;
        auto flatten = [](const std::vector<entry>& es, std::vector<entry>& out) {
          for (const entry& x : es) {
            if (!out.empty() && out.back().flags == x.flags &&
                out.back().addr + out.back().len == x.addr && out.back().addr + out.back().len != 0)
              out.back().len += x.len;
            else
              out.push_back(x);
          }
        };
        flatten(got, flat_got);
        flatten(ma.e, flat_want);
        FUZZ_CHECK(flat_got == flat_want);
        FUZZ_CHECK(got.size() <= na + nb);
        if (got.size() == ma.e.size()) FUZZ_CHECK(got == ma.e);
        ma.e = got;  // continue from the real cut points (check() still checks the limits)
        (void)before_a;
        check(a, ma);
        break;
      }
      case 5: {  // several ranges in one try_append_all: as appended one by one, or unchanged
        const std::size_t n = in.ConsumeIntegralInRange<std::size_t>(0, 40);
        std::vector<phys_range> rs;
        std::uint64_t addr = m.e.empty() ? in.ConsumeIntegral<std::uint64_t>()
                                         : m.e.back().addr + m.e.back().len;
        std::uint64_t sum = 0;
        bool sum_wraps = false, pieces_ok = true;
        while (rs.size() < n && in.remaining_bytes() != 0) {
          const int how = in.ConsumeIntegralInRange<int>(0, 3);
          if (how == 0) addr = in.ConsumeIntegral<std::uint64_t>();
          if (how == 1) addr += in.ConsumeIntegralInRange<std::uint64_t>(1, 3);
          const std::uint64_t len =
              in.ConsumeBool() ? in.ConsumeIntegralInRange<std::uint64_t>(0, 3 * page)
                               : in.ConsumeIntegralInRange<std::uint64_t>(1, phys_range::max_len);
          const auto f = static_cast<range_flags>(in.ConsumeIntegralInRange<int>(0, 1));
          // A zero length only through make_unchecked, as a bad caller would build it.
          if (len == 0) {
            rs.push_back(phys_range::make_unchecked(addr, 0, f));
            continue;
          }
          auto r = phys_range::create(phys_addr{addr}, len, f);
          if (!r) break;
          pieces_ok = pieces_ok && !too_many_pieces(m, len);
          sum_wraps = sum_wraps || len > ~sum;
          sum += len;
          rs.push_back(*r);
          addr += len;
        }
        if (!pieces_ok) break;
        const auto before = entries_of(l);
        const std::uint64_t before_total = l.total_bytes();
        const std::uint64_t before_gaps = l.gap_bits();
        bool has_zero = false;
        for (const phys_range& r : rs) has_zero = has_zero || r.len() == 0;
        auto res = l.try_append_all(rs);
        if (!res) {
          // The first bad range decides the error: a zero length, or the total past 2^64.
          FUZZ_CHECK(has_zero || sum_wraps || sum > ~before_total);
          FUZZ_CHECK(res.error() == phyr::errc::invalid_argument ||
                     res.error() == phyr::errc::overflow);
          FUZZ_CHECK(entries_of(l) == before);
          FUZZ_CHECK(l.total_bytes() == before_total && l.gap_bits() == before_gaps);
          break;
        }
        FUZZ_CHECK(!has_zero);
        for (const phys_range& r : rs)
          m.append(r.addr().value(), r.len(), static_cast<std::uint8_t>(r.flags()));
        break;
      }
      case 4: {  // clone: equal, same limits, independent
        auto c = l.try_clone();
        FUZZ_CHECK(c.has_value());
        FUZZ_CHECK(entries_of(*c) == m.e);
        FUZZ_CHECK(c->max_segment() == l.max_segment());
        FUZZ_CHECK(c->segment_boundary() == l.segment_boundary());
        if (!c->empty()) c->clear();
        FUZZ_CHECK(entries_of(l) == m.e);
        break;
      }
    }
    check(a, ma);
    check(b, mb);
  }
  return 0;
}
