// libFuzzer target for the NVMe SGL builder (device/nvme/sgl.hpp).
//
//   clang++-19 -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude \
//       tests/fuzz/nvme_sgl_fuzz.cpp -o nvme_sgl_fuzz && ./nvme_sgl_fuzz -max_total_time=60
//
// Input: configuration bits (dword granularity, merging, descriptor limits, segment size), a
// descriptor memory layout (0..3 chunks), then ranges. Invariants, any violation traps:
//   - accepted: walking SGL1 and the segments as the spec's controller does (walk_sgl, with the
//     same granularity) names exactly the input's bytes in order; the data descriptor count is
//     the merged/split count restated below, within max_descriptors; segment descriptors sit
//     only in the last slot of a segment (walk_sgl checks); segments match the closed form for
//     a single chunk; no more words written than words_used;
//   - refused: no descriptor word written, and the error is the one the rules predict (memory
//     errors only when the list itself is acceptable);
//   - always: the canary words around every chunk are intact.
#include "nvme_fuzz_common.hpp"

namespace {
using namespace nvme_fuzz;
namespace nvme = phyr::nvme;
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  reader in{data, size};
  std::uint8_t bits = 0, maxd = 0, per = 0, nchunks = 0;
  if (!in.get(bits) || !in.get(maxd) || !in.get(per) || !in.get(nchunks)) return 0;
  const nvme::sgl_config cfg{
      .dword_granularity = (bits & 1) != 0,
      .merge = (bits & 2) == 0,
      .max_descriptors = (bits & 4) != 0 ? std::uint64_t{maxd} : 0,
      .segment_descriptors = static_cast<std::uint64_t>(per % 40),  // 0, 1 invalid
      .max_transfer = (bits & 8) != 0 ? std::uint64_t{maxd} << 12 : 0};
  const bool split_small = (bits & 0x10) != 0;  // exercise 32-bit splitting with big ranges

  std::vector<memory::spec> specs;
  nchunks = static_cast<std::uint8_t>(nchunks % 4);
  for (std::uint8_t i = 0; i < nchunks; ++i) {
    std::uint16_t words = 0, off = 0;
    if (!in.get(words) || !in.get(off)) return 0;
    words = static_cast<std::uint16_t>(words % 300 + 1);
    std::uint64_t base = 0x1'0000'0000 + i * 0x100'0000;
    if (i == 0 || (bits & 0x20) != 0) base += (off % 512) * 8;
    if ((bits & 0x40) != 0 && i == 0) base += 4;  // not quadword aligned: invalid
    specs.push_back({words, base});
  }
  memory mem(specs);

  std::vector<drange> l;
  std::uint64_t at = 0, a = 0;
  std::uint32_t len = 0;
  std::uint8_t how = 0;
  while (l.size() < 600 && in.get(how) && in.get(a) && in.get(len)) {
    std::uint64_t n = split_small && (how & 0x80) != 0 ? (std::uint64_t{len} << 4) + len : len;
    if ((how & 3) == 0) a = at;
    if ((how & 4) != 0) a &= ~std::uint64_t{3};
    if ((how & 8) != 0) n &= ~std::uint64_t{3};
    if (n == 0) n = 4;
    if (n - 1 > ~a) n = ~a + 1;
    if (n == 0) continue;
    l.push_back(drange{dma{a}, n});
    at = a + n;
  }

  auto r = nvme::try_build_sgl<bus>(l, cfg, mem.chunks);
  FUZZ_CHECK(mem.guards_intact());

  // The rules restated: blocks after merging and splitting, then each limit in order.
  const std::uint64_t block_max = cfg.dword_granularity ? 0xffff'fffcull : 0xffff'ffffull;
  std::vector<piece> blocks;
  unsigned __int128 total = 0;
  for (const drange& x : l) {
    std::uint64_t p = x.addr().value(), n = x.len();
    total += n;
    if (cfg.merge && !blocks.empty() && blocks.back().a + blocks.back().n == p &&
        blocks.back().a + blocks.back().n != 0 && blocks.back().n < block_max) {
      const std::uint64_t take = n < block_max - blocks.back().n ? n : block_max - blocks.back().n;
      blocks.back().n += take;
      p += take;
      n -= take;
    }
    while (n != 0) {
      const std::uint64_t take = n < block_max ? n : block_max;
      blocks.push_back({p, take});
      p += take;
      n -= take;
    }
  }
  phyr::errc want{};
  if (cfg.segment_descriptors < 2) want = phyr::errc::invalid_argument;
  if (want == phyr::errc{} && cfg.dword_granularity)
    for (const piece& b : blocks)
      if (((b.a | b.n) & 3) != 0) want = phyr::errc::misaligned;
  if (want == phyr::errc{} && total > ~std::uint64_t{0}) want = phyr::errc::too_long;
  if (want == phyr::errc{} && blocks.empty()) want = phyr::errc::invalid_argument;
  if (want == phyr::errc{} && cfg.max_transfer != 0 && total > cfg.max_transfer)
    want = phyr::errc::too_long;
  if (want == phyr::errc{} && cfg.max_descriptors != 0 && blocks.size() > cfg.max_descriptors)
    want = phyr::errc::too_many_descriptors;

  if (!r) {
    FUZZ_CHECK(mem.written() == 0);
    if (want != phyr::errc{}) {
      FUZZ_CHECK(r.error() == want);
    } else {
      FUZZ_CHECK(blocks.size() > 1);
      FUZZ_CHECK(r.error() == phyr::errc::exhausted || r.error() == phyr::errc::invalid_argument);
    }
    return 0;
  }
  FUZZ_CHECK(want == phyr::errc{});
  FUZZ_CHECK(r->data_descriptors == blocks.size());
  FUZZ_CHECK(mem.written() <= r->words_used);
  if (blocks.size() == 1) {
    FUZZ_CHECK(r->sgl1.type() == nvme::sgl_type::data_block);
    FUZZ_CHECK(r->words_used == 0);
  } else {
    FUZZ_CHECK(r->words_used ==
               2 * (blocks.size() + r->segments - 1));  // every data block + one per chain
    if (nchunks == 1)  // one chunk is never skipped over: the closed form holds
      FUZZ_CHECK(r->segments == nvme::sgl_segments(blocks.size(), cfg.segment_descriptors));
  }

  std::vector<piece> seen, in_bytes, desc;
  for (const drange& x : l) push_coalesced(in_bytes, x.addr().value(), x.len());
  auto w = nvme::walk_sgl(
      r->sgl1, r->bytes, cfg.dword_granularity, [&](std::uint64_t x) { return mem.read(x); },
      [&](std::uint64_t x, std::uint64_t n) {
        push_coalesced(seen, x, n);
        desc.push_back({x, n});
      });
  FUZZ_CHECK(w.has_value());
  FUZZ_CHECK(seen == in_bytes);
  FUZZ_CHECK(desc == blocks);
  return 0;
}
