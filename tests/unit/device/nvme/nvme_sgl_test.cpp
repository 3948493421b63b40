// device/nvme/sgl.hpp: try_build_sgl against SPDK's published cases, the descriptor encoding,
// segment chaining, a model on seeded random lists, and a canary around the descriptor memory.
#include <array>
#include <catch2/catch.hpp>
#include <cstdint>
#include <phyr/container/range_list.hpp>
#include <phyr/device/nvme.hpp>
#include <random>
#include <span>
#include <utility>
#include <vector>

#include "nvme_test_pool.hpp"

namespace {
using phyr::errc;
namespace nvme = phyr::nvme;
using namespace nvme_test;
using nvme::sgl_type;

phyr::result<std::vector<piece>> walk(const nvme::sgl_result<nvme0>& r, const pool& p,
                                      bool dword = false) {
  std::vector<piece> v;
  auto w = nvme::walk_sgl(
      r.sgl1, r.bytes, dword, [&](std::uint64_t a) { return p.read(a); },
      [&](std::uint64_t a, std::uint64_t n) { push_coalesced(v, a, n); });
  if (!w) return w.error();
  return v;
}
}  // namespace

// ---- SPDK test/unit/lib/nvme/nvme_pcie.c/nvme_pcie_ut.c, test_build_contig_hw_sgl_request -----
// vtophys is mocked to 0xDEADBEEF with a mapping length of 100, 60 or 1000 bytes; descriptors
// go to tr->u.sgl at tr->prp_sgl_bus_addr. SPDK's 0xFF0FF is not quadword aligned, which an SGL
// segment must be (phyr checks, shown below); 0xFF100 stands in for it.

TEST_CASE("sgl: SPDK build_contig_hw_sgl, one mapping goes inline into SGL1") {
  pool p(32, 0xFF100);
  // Test 1 (payload covered by a single mapping) and test 2 (the same at an offset) both
  // describe 100 bytes at 0xDEADBEEF; byte granularity (dword_aligned = false).
  auto r = nvme::try_build_sgl(dlist{dr(0xDEADBEEF, 100)}, nvme::sgl_config{}, p.span(), p.at());
  REQUIRE(r);
  CHECK(r->sgl1.type() == sgl_type::data_block);
  CHECK(r->sgl1.subtype() == 0);
  CHECK(r->sgl1.address == 0xDEADBEEF);
  CHECK(r->sgl1.length == 100);
  CHECK(r->psdt == nvme::psdt::sgl_mptr_contig);
  CHECK(r->words_used == 0);
  CHECK(p.untouched_from(0) == 0);
}

TEST_CASE("sgl: SPDK build_contig_hw_sgl, two mappings make one last segment of two blocks") {
  // Test 3: 100 bytes over mappings of 60 bytes: blocks of 60 and 40, both at 0xDEADBEEF (the
  // mock returns the same address, so they are not contiguous and do not merge).
  pool p(32, 0xFF100);
  auto r = nvme::try_build_sgl(dlist{dr(0xDEADBEEF, 60), dr(0xDEADBEEF, 40)}, nvme::sgl_config{},
                               p.span(), p.at());
  REQUIRE(r);
  CHECK(r->sgl1.type() == sgl_type::last_segment);
  CHECK(r->sgl1.address == 0xFF100);
  CHECK(r->sgl1.length == 2 * 16);
  CHECK(p.desc(0) == nvme::sgl_descriptor{0xDEADBEEF, 60, 0x00});
  CHECK(p.desc(1) == nvme::sgl_descriptor{0xDEADBEEF, 40, 0x00});
  CHECK(r->words_used == 4);
  CHECK(p.untouched_from(4) == 0);
  // SPDK's own address for the segment, 0xFF0FF, is refused.
  pool q(32, 0xFF0FF);
  CHECK(nvme::try_build_sgl(dlist{dr(0xDEADBEEF, 60), dr(0xDEADBEEF, 40)}, nvme::sgl_config{},
                            q.span(), q.at())
            .error() == errc::invalid_argument);
  CHECK(q.untouched_from(0) == 0);
}

TEST_CASE("sgl: SPDK's NVME_MAX_SGL_DESCRIPTORS (250) as a descriptor limit") {
  const nvme::sgl_config cfg{.max_descriptors = 250};
  dlist l;
  for (std::uint64_t i = 0; i < 250; ++i) l.push_back(dr(0x10'0000 + i * 0x2000, 0x1000));
  pool p(1024, 0x40000);
  auto r = nvme::try_build_sgl(l, cfg, p.span(), p.at());
  REQUIRE(r);
  CHECK(r->data_descriptors == 250);
  CHECK(r->sgl1.type() == sgl_type::last_segment);
  CHECK(r->sgl1.length == 250 * 16);
  for (std::size_t i = 0; i < 250; ++i) CHECK(p.desc(i).address == 0x10'0000 + i * 0x2000);
  l.push_back(dr(0x90'0000, 0x1000));
  pool q(1024, 0x40000);
  auto t = nvme::try_build_sgl(l, cfg, q.span(), q.at());
  REQUIRE_FALSE(t);
  CHECK(t.error() == errc::too_many_descriptors);
  CHECK(q.untouched_from(0) == 0);
}

// ---- encoding -----------------------------------------------------------------------------------

TEST_CASE("sgl: descriptors are 16 bytes, identifier in byte 15 with the type in bits 7:4") {
  const auto d = nvme::sgl_descriptor::make(sgl_type::last_segment, 0x1122334455667788, 0xa0b0c0d0);
  const auto w = d.to_words();
  std::array<unsigned char, 16> b{};
  for (int i = 0; i < 8; ++i) {
    b[static_cast<std::size_t>(i)] =
        static_cast<unsigned char>(phyr::nvme::detail::from_le64(w[0]) >> (8 * i));
    b[static_cast<std::size_t>(8 + i)] =
        static_cast<unsigned char>(phyr::nvme::detail::from_le64(w[1]) >> (8 * i));
  }
  CHECK(b == std::array<unsigned char, 16>{0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0xd0,
                                           0xc0, 0xb0, 0xa0, 0, 0, 0, 0x30});
  STATIC_REQUIRE(nvme::sgl_descriptor::make(sgl_type::segment, 0, 0).id == 0x20);
  STATIC_REQUIRE(nvme::sgl_descriptor::make(sgl_type::data_block, 0, 0).id == 0x00);
  STATIC_REQUIRE(nvme::cdw0_psdt_bits(nvme::psdt::sgl_mptr_contig) == 0x4000);
  STATIC_REQUIRE(nvme::cdw0_psdt_bits(nvme::psdt::sgl_mptr_sgl) == 0x8000);
}

// ---- merging, splitting, alignment -----------------------------------------------------------

TEST_CASE("sgl: contiguous ranges merge into one block, inline when that is all") {
  pool p(16, 0x8000);
  auto r = nvme::try_build_sgl(dlist{dr(0x1000, 0x800), dr(0x1800, 0x1000), dr(0x2800, 3)},
                               nvme::sgl_config{}, p.span(), p.at());
  REQUIRE(r);
  CHECK(r->data_descriptors == 1);
  CHECK(r->sgl1 == nvme::sgl_descriptor{0x1000, 0x1803, 0});
  // Without merging each range is its own block.
  auto u = nvme::try_build_sgl(dlist{dr(0x1000, 0x800), dr(0x1800, 0x1000)},
                               nvme::sgl_config{.merge = false}, p.span(), p.at());
  REQUIRE(u);
  CHECK(u->data_descriptors == 2);
}

TEST_CASE("sgl: a range longer than the 32-bit Length field is split, merges stop at the limit") {
  pool p(16, 0x8000);
  const std::uint64_t big = 0x1'8000'0000;  // 6 GiB
  auto r = nvme::try_build_sgl(dlist{dr(0x1'0000'0000, big)}, nvme::sgl_config{}, p.span(), p.at());
  REQUIRE(r);
  CHECK(r->data_descriptors == 2);
  CHECK(p.desc(0) == nvme::sgl_descriptor{0x1'0000'0000, 0xffff'ffff, 0});
  CHECK(p.desc(1) == nvme::sgl_descriptor{0x1'0000'0000 + 0xffff'ffff, 0x8000'0001, 0});
  // Dword granularity keeps the split on a dword.
  auto d = nvme::try_build_sgl(dlist{dr(0x1'0000'0000, big)},
                               nvme::sgl_config{.dword_granularity = true}, p.span(), p.at());
  REQUIRE(d);
  CHECK(p.desc(0).length == 0xffff'fffc);
  CHECK(p.desc(1) == nvme::sgl_descriptor{0x1'0000'0000 + 0xffff'fffc, 0x8000'0004, 0});
  auto seen = walk(*d, p, true);
  REQUIRE(seen);
  CHECK(*seen == std::vector<piece>{{0x1'0000'0000, big}});
}

TEST_CASE("sgl: dword granularity refuses odd addresses and lengths as the controller sees them") {
  const nvme::sgl_config dw{.dword_granularity = true};
  pool p(16, 0x8000);
  CHECK(nvme::try_build_sgl(dlist{dr(0x1002, 0x100)}, dw, p.span(), p.at()).error() ==
        errc::misaligned);
  CHECK(nvme::try_build_sgl(dlist{dr(0x1000, 0x101), dr(0x3000, 0x100)}, dw, p.span(), p.at())
            .error() == errc::misaligned);
  // Odd pieces that merge into a dword-sized block are fine.
  CHECK(nvme::try_build_sgl(dlist{dr(0x1000, 0x101), dr(0x1101, 0x3)}, dw, p.span(), p.at()));
  // Byte granularity takes anything.
  CHECK(nvme::try_build_sgl(dlist{dr(0x1001, 0x101), dr(0x3003, 1)}, nvme::sgl_config{}, p.span(),
                            p.at()));
  CHECK(p.untouched_from(4) == 0);
}

TEST_CASE("sgl: MDTS, empty lists and bad configurations") {
  pool p(16, 0x8000);
  CHECK(nvme::try_build_sgl(dlist{dr(0x1000, 0x10000)}, nvme::sgl_config{.max_transfer = 0x8000},
                            p.span(), p.at())
            .error() == errc::too_long);
  CHECK(nvme::try_build_sgl(dlist{}, nvme::sgl_config{}, p.span(), p.at()).error() ==
        errc::invalid_argument);
  CHECK(nvme::try_build_sgl(dlist{dr(0x1000, 1), dr(0x3000, 1)},
                            nvme::sgl_config{.segment_descriptors = 1}, p.span(), p.at())
            .error() == errc::invalid_argument);
  CHECK(nvme::try_build_sgl(dlist{dr(0x1000, 1), dr(0x3000, 1)}, nvme::sgl_config{}, {}, dma{0})
            .error() == errc::exhausted);
  CHECK(p.untouched_from(0) == 0);
}

// ---- segments
// -------------------------------------------------------------------------------------

TEST_CASE("sgl: full segments chain through their last slot, Segment then Last Segment") {
  // 4 descriptors per segment, 10 blocks: 3 + ptr | 3 + ptr | 4 (last).
  const nvme::sgl_config cfg{.segment_descriptors = 4};
  dlist l;
  for (std::uint64_t i = 0; i < 10; ++i) l.push_back(dr(0x100000 + i * 0x10000, 0x200 + i));
  CHECK(nvme::sgl_segments(10, 4) == 3);
  CHECK(nvme::sgl_memory_descriptors(10, 4) == 12);
  pool p(40, 0x20000);
  auto r = nvme::try_build_sgl(l, cfg, p.span(), p.at());
  REQUIRE(r);
  CHECK(r->segments == 3);
  CHECK(r->words_used == 24);
  CHECK(p.untouched_from(24) == 0);
  CHECK(r->sgl1 == nvme::sgl_descriptor{0x20000, 64, 0x20});  // Segment, 4 descriptors
  CHECK(p.desc(3) == nvme::sgl_descriptor{0x20000 + 64, 64, 0x20});
  CHECK(p.desc(7) == nvme::sgl_descriptor{0x20000 + 128, 64, 0x30});  // Last Segment
  CHECK(p.desc(4).address == 0x100000 + 3 * 0x10000);
  CHECK(p.desc(11) == nvme::sgl_descriptor{0x100000 + 9 * 0x10000, 0x209, 0});
  auto seen = walk(*r, p);
  REQUIRE(seen);
  CHECK(*seen == bytes_of(l));
  // Memory for 11 descriptors is one short.
  pool q(22, 0x20000);
  CHECK(nvme::try_build_sgl(l, cfg, q.span(), q.at()).error() == errc::exhausted);
  CHECK(q.untouched_from(0) == 0);
}

TEST_CASE("sgl: separate chunks each hold their own segments; a too-small tail is skipped") {
  const nvme::sgl_config cfg{.segment_descriptors = 256};
  dlist l;
  for (std::uint64_t i = 0; i < 6; ++i) l.push_back(dr(0x100000 + i * 0x10000, 0x1000));
  // Chunk 0 holds 3 descriptors (+1 stray word), chunk 1 (page aligned) the rest.
  std::vector<std::uint64_t> w0(7, canary), w1(512, canary);
  const nvme::descriptor_chunk<nvme0> chunks[] = {{w0, dma{0x30008}}, {w1, dma{0x50000}}};
  auto r = nvme::try_build_sgl<nvme0>(l, cfg, chunks);
  REQUIRE(r);
  CHECK(r->segments == 2);
  CHECK(r->sgl1 == nvme::sgl_descriptor{0x30008, 48, 0x20});
  CHECK(nvme::sgl_descriptor::from_words(w0[4], w0[5]) ==
        nvme::sgl_descriptor{0x50000, 4 * 16, 0x30});
  CHECK(w0[6] == canary);
  CHECK(w1[8] == canary);
  CHECK(r->words_used == 6 + 8);
}

TEST_CASE("sgl: works in constant expressions") {
  constexpr auto built = [] {
    std::array<drange, 2> l{drange{dma{0x1000}, 0x10}, drange{dma{0x5000}, 0x20}};
    std::array<std::uint64_t, 8> mem{};
    auto r = nvme::try_build_sgl(l, nvme::sgl_config{}, std::span<std::uint64_t>(mem), dma{0x9000});
    return std::pair{r->sgl1, nvme::sgl_descriptor::from_words(mem[2], mem[3])};
  }();
  STATIC_REQUIRE(built.first == nvme::sgl_descriptor{0x9000, 32, 0x30});
  STATIC_REQUIRE(built.second == nvme::sgl_descriptor{0x5000, 0x20, 0});
}

// ---- property test ------------------------------------------------------------------------------

TEST_CASE("sgl: seeded random lists agree with a block model, walk back to the same bytes") {
  std::mt19937_64 rng(20261202);
  int built = 0, refused = 0;
  for (int iter = 0; iter < 4000; ++iter) {
    dlist l;
    const int n = 1 + static_cast<int>(rng() % 40);
    std::uint64_t at = (rng() % 0x100000) * 4 + (rng() % 4 == 0 ? rng() % 4 : 0);
    for (int i = 0; i < n; ++i) {
      const std::uint64_t len = 1 + (rng() % 3 == 0 ? rng() % 0x20 : rng() % 0x3000);
      l.push_back(dr(at, len));
      at = rng() % 3 == 0 ? at + len : (rng() % 0x100000) * 4 + (rng() % 8 == 0 ? 1 : 0);
    }
    const nvme::sgl_config cfg{.dword_granularity = rng() % 2 == 0,
                               .merge = rng() % 4 != 0,
                               .max_descriptors = rng() % 4 == 0 ? 1 + rng() % 30 : 0,
                               .segment_descriptors = 2 + rng() % 10};
    // Model: blocks = runs (merge) or ranges, each far below the split length.
    std::vector<piece> blocks;
    for (const drange& r : l) {
      if (cfg.merge)
        push_coalesced(blocks, r.addr().value(), r.len());
      else
        blocks.push_back({r.addr().value(), r.len()});
    }
    errc want{};
    if (cfg.dword_granularity)
      for (const piece& b : blocks)
        if (((b.a | b.n) & 3) != 0) want = errc::misaligned;
    if (want == errc{} && cfg.max_descriptors != 0 && blocks.size() > cfg.max_descriptors)
      want = errc::too_many_descriptors;
    const std::size_t words = rng() % 6 == 0 ? rng() % 16 : 256;
    const std::uint64_t mem_desc =
        nvme::sgl_memory_descriptors(blocks.size(), cfg.segment_descriptors);
    if (want == errc{} && mem_desc * 2 > words) want = errc::exhausted;
    pool p(words, 0x7'0000'0000);
    auto r = nvme::try_build_sgl(l, cfg, p.span(), p.at());
    CAPTURE(iter, l.size(), blocks.size(), cfg.segment_descriptors, words);
    if (want != errc{}) {
      REQUIRE_FALSE(r);
      CHECK(r.error() == want);
      CHECK(p.untouched_from(0) == 0);
      ++refused;
      continue;
    }
    REQUIRE(r);
    ++built;
    CHECK(r->data_descriptors == blocks.size());
    CHECK(r->segments == nvme::sgl_segments(blocks.size(), cfg.segment_descriptors));
    CHECK(r->words_used == mem_desc * 2);
    CHECK(p.untouched_from(static_cast<std::size_t>(r->words_used)) == 0);
    // The data descriptors, in order, skipping each full segment's trailing pointer.
    std::vector<piece> got;
    if (blocks.size() == 1) {
      got.push_back({r->sgl1.address, r->sgl1.length});
    } else {
      const std::uint64_t per = cfg.segment_descriptors;
      for (std::uint64_t i = 0; got.size() < blocks.size(); ++i) {
        const auto d = p.desc(static_cast<std::size_t>(i));
        if (d.type() == sgl_type::segment || d.type() == sgl_type::last_segment) {
          CHECK(i % per == per - 1);
          continue;
        }
        CHECK(d.type() == sgl_type::data_block);
        got.push_back({d.address, d.length});
      }
    }
    CHECK(got == blocks);
    auto seen = walk(*r, p, cfg.dword_granularity);
    REQUIRE(seen);
    CHECK(*seen == bytes_of(l));
  }
  CHECK(built > 1000);
  CHECK(refused > 300);
}
