// libFuzzer target for the NVMe PRP builder (device/nvme/prp.hpp).
//
//   clang++-19 -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude \
//       tests/fuzz/nvme_prp_fuzz.cpp -o nvme_prp_fuzz && ./nvme_prp_fuzz -max_total_time=60
//
// Input: a page size, an MDTS, a descriptor memory layout (1..3 chunks, sizes, offsets), then
// ranges (steered toward contiguity and page alignment so both acceptance and every refusal are
// reached). Invariants, any violation traps:
//   - acceptance and the error code agree with the rules restated independently below;
//   - accepted: walking PRP1/PRP2/lists as the spec's controller does (walk_prp) names exactly
//     the input's bytes in order; entries and list pages match the closed forms; no more words
//     written than words_used;
//   - refused: no descriptor word written;
//   - always: the canary words around every chunk are intact (ASan catches the rest).
#include "nvme_fuzz_common.hpp"

namespace {
using namespace nvme_fuzz;
namespace nvme = phyr::nvme;

phyr::errc expected_error(const std::vector<drange>& l, std::uint64_t page, std::uint64_t mdts) {
  if (l.empty()) return phyr::errc::invalid_argument;
  if ((l[0].addr().value() & 3) != 0) return phyr::errc::misaligned;
  unsigned __int128 total = 0;
  for (std::size_t i = 0; i < l.size(); ++i) {
    total += l[i].len();
    if (i == 0) continue;
    const unsigned __int128 prev_end =
        static_cast<unsigned __int128>(l[i - 1].addr().value()) + l[i - 1].len();
    const std::uint64_t a = l[i].addr().value();
    if (prev_end != a && (prev_end % page != 0 || a % page != 0)) return phyr::errc::page_gap;
  }
  if (total > ~std::uint64_t{0}) return phyr::errc::too_long;
  if (mdts != 0 && total > mdts) return phyr::errc::too_long;
  return phyr::errc{};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  reader in{data, size};
  std::uint8_t shape = 0, mps = 0, mdts = 0, nchunks = 0;
  if (!in.get(shape) || !in.get(mps) || !in.get(mdts) || !in.get(nchunks)) return 0;
  const std::uint64_t page = std::uint64_t{4096} << (mps % 5);  // 4K..64K
  const std::uint64_t max_transfer = (mdts & 0x80) != 0 ? nvme::mdts_bytes(mdts % 12, 4096) : 0;

  std::vector<memory::spec> specs;
  nchunks = static_cast<std::uint8_t>(nchunks % 4);
  for (std::uint8_t i = 0; i < nchunks; ++i) {
    std::uint16_t words = 0, off = 0;
    if (!in.get(words) || !in.get(off)) return 0;
    words = static_cast<std::uint16_t>(words % (3 * page / 8 + 2));
    if (words == 0) words = 1;
    std::uint64_t base = 0x1'0000'0000 + i * 0x100'0000;
    if (i == 0 || (shape & 0x40) != 0) base += (off % (page / 8)) * 8;  // maybe invalid for i > 0
    specs.push_back({words, base});
  }
  memory mem(specs);
  const bool page_shaped = nchunks != 0 && (specs[0].dma & (page - 1)) == 0;

  std::vector<drange> l;
  std::uint64_t at = 0;
  std::uint64_t a = 0;
  std::uint32_t len = 0;
  std::uint8_t how = 0;
  while (l.size() < 64 && in.get(how) && in.get(a) && in.get(len)) {
    std::uint64_t n = (len % (4 * page)) + 1;
    if ((how & 0x60) == 0x60) n = (len % 1100 + 1) * page;  // long: enough pages to chain
    switch (how % 4) {
      case 0:
        a = at;
        break;  // contiguous
      case 1:
        a = (a % (1ull << 40)) & ~(page - 1);
        break;  // page aligned
      case 2:
        a %= (1ull << 40);
        break;  // anywhere
      default:
        break;  // raw
    }
    if ((how & 0x10) != 0) n = ((a + n + page - 1) & ~(page - 1)) - a;  // end on a page
    if (n == 0) n = page;
    if (n - 1 > ~a) n = ~a + 1;
    if (n == 0) continue;
    l.push_back(drange{dma{a}, n});
    at = a + n;
  }

  const nvme::prp_config cfg{.page_size = page, .max_transfer = max_transfer};
  auto r = nvme::try_build_prp<bus>(l, cfg, mem.chunks);
  FUZZ_CHECK(mem.guards_intact());
  phyr::errc want = expected_error(l, page, max_transfer);
  if (!r) {
    FUZZ_CHECK(mem.written() == 0);
    if (want != phyr::errc{}) {
      FUZZ_CHECK(r.error() == want);
    } else {
      // The list is fine; only the descriptor memory can be the problem.
      FUZZ_CHECK(r.error() == phyr::errc::exhausted || r.error() == phyr::errc::invalid_argument);
    }
    return 0;
  }
  FUZZ_CHECK(want == phyr::errc{});
  FUZZ_CHECK(mem.written() <= r->words_used);
  FUZZ_CHECK(r->entries == nvme::prp_entry_count(l[0].addr().value(), r->bytes, page));
  if (page_shaped) FUZZ_CHECK(r->list_pages == nvme::prp_list_pages(r->entries, page));
  FUZZ_CHECK(r->list_pages <= nvme::prp_list_pages_max(r->bytes, page));

  std::vector<piece> seen, in_bytes;
  for (const drange& x : l) push_coalesced(in_bytes, x.addr().value(), x.len());
  auto w = nvme::walk_prp(
      r->prp1.value(), r->prp2.value(), r->bytes, page,
      [&](std::uint64_t x) { return mem.read(x); },
      [&](std::uint64_t x, std::uint64_t n) { push_coalesced(seen, x, n); });
  FUZZ_CHECK(w.has_value());
  FUZZ_CHECK(seen == in_bytes);
  return 0;
}
