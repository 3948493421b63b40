// NVMe data pointers per I/O (device/nvme): PRP and SGL for 4 KiB, 128 KiB and 1 MiB transfers,
// against the Linux driver's loops over a DMA-mapped scatterlist:
//
//   nvme_prp/<wl>/<size>/phyr_nvme     nvme::try_build_prp on a DMA list (validation pass, then
//                                      the write pass into a caller-provided pool)
//   nvme_prp/<wl>/<size>/scatterlist   nvme_pci_setup_prps' loop (drivers/nvme/host/pci.c, the
//                                      form with chained list pages), transcribed over
//                                      compat/scatterlist.hpp entries, pool pages preallocated
//   nvme_sgl/<wl>/<size>/phyr_nvme     nvme::try_build_sgl (merging on, 256 per segment)
//   nvme_sgl/<wl>/<size>/scatterlist   nvme_pci_setup_sgls with nvme_pci_sgl_set_data/set_seg
//
// Workloads: `contig` (one physically contiguous, page-aligned buffer: one range, one sg entry)
// and `frag` (every 4 KiB page somewhere else: one range / sg entry per page). Neither baseline
// validates its input (the kernel relies on the block layer's virt_boundary splitting), so the
// rows show what phyr's checks cost on top. Each row checks its PRP2 / SGL1 and the last entry
// written, so a wrong result cannot look fast. cpu_time is per I/O; counters: pages (4 KiB of
// data) and entries (ranges in the DMA list).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>
#include <vector>

#include "baseline/nvme_prps.hpp"
#include "phyr/compat/scatterlist.hpp"
#include "phyr/device/nvme.hpp"
#include "workloads.hpp"

namespace {

namespace sg = phyr::compat;
namespace nvme = phyr::nvme;
namespace baseline = phyr_bench::baseline;
struct nvme0 {};
using dma = phyr::dma_addr<nvme0>;
using drange = phyr::dma_range<nvme0>;

constexpr std::uint64_t ctrl_page = 4096;
constexpr std::uint64_t pool_dma = 0x7f00'0000;

// The DMA list and its scatterlist twin (identity-mapped: dma_address = physical address).
struct io {
  std::vector<drange> list;
  std::vector<sg::scatterlist> sgl;
  std::uint64_t bytes = 0;
};

io make_io(bool frag, std::uint64_t bytes) {
  io x;
  x.bytes = bytes;
  std::uint64_t seed = 0x9e3779b97f4a7c15ull ^ bytes;
  if (!frag) {
    x.list.push_back(drange{dma{0x1'2340'0000}, bytes});
  } else {
    for (std::uint64_t off = 0; off < bytes; off += ctrl_page) {
      seed = seed * 6364136223846793005ull + 1442695040888963407ull;
      std::uint64_t pfn = 0x100000 + ((seed >> 33) % 0x400000);
      // Never the frame after the previous one: one entry per page on both sides.
      if (!x.list.empty() && pfn == (x.list.back().addr().value() >> 12) + 1) pfn += 1;
      x.list.push_back(drange{dma{pfn << 12}, ctrl_page});
    }
  }
  x.sgl.resize(x.list.size());
  for (std::size_t i = 0; i < x.list.size(); ++i) {
    sg::scatterlist& s = x.sgl[i];
    s = sg::scatterlist{};
    s.length = static_cast<unsigned int>(x.list[i].len());
    s.dma_address = x.list[i].addr().value();
    s.dma_length = s.length;
  }
  x.sgl.back().page_link |= sg::sg_end_bit;
  return x;
}

// ---- the baselines (own transcriptions of the Linux loops) -----------------------------------

// nvme_pci_setup_prps (bench/baseline/nvme_prps.hpp), list pages from a preallocated pool (a
// dma_pool stand-in: page i at pool_dma + i * page, no allocation per I/O on either side here).
baseline::prp_out linux_setup_prps(sg::scatterlist* s, std::uint64_t total, std::uint64_t* pool) {
  return baseline::nvme_pci_setup_prps(s, total, [&](std::size_t i, std::size_t) noexcept {
    return baseline::prp_list_page{pool + i * (ctrl_page / 8), pool_dma + i * ctrl_page};
  });
}

// nvme_pci_setup_sgls with set_data / set_seg (the form that chains full descriptor pages).
nvme::sgl_descriptor linux_setup_sgls(sg::scatterlist* s, unsigned entries, std::uint64_t* pool) {
  constexpr unsigned per_page = ctrl_page / 16;
  const auto set_data = [](std::uint64_t* d, const sg::scatterlist* x) {
    d[0] = sg::sg_dma_address(x);
    d[1] = sg::sg_dma_len(x);  // type 0 (data block) in byte 15
  };
  const auto set_seg = [](std::uint64_t* d, std::uint64_t addr, unsigned n) {
    d[0] = addr;
    d[1] = n < per_page ? (std::uint64_t{n} * 16) | (std::uint64_t{0x30} << 56)
                        : ctrl_page | (std::uint64_t{0x20} << 56);
  };
  if (entries == 1) return {sg::sg_dma_address(s), sg::sg_dma_len(s), 0};
  std::uint64_t* list = pool;
  std::uint64_t sgl1[2];
  set_seg(sgl1, pool_dma, entries);
  unsigned i = 0, pages = 1;
  do {
    if (i == per_page) {
      std::uint64_t* link = list + 2 * (i - 1);
      list = pool + pages * (ctrl_page / 8);
      const std::uint64_t dma_next = pool_dma + pages * ctrl_page;
      ++pages;
      i = 0;
      list[0] = link[0];
      list[1] = link[1];
      i = 1;
      set_seg(link, dma_next, entries);
    }
    set_data(list + 2 * i++, s);
    s = sg::sg_next(s);
  } while (--entries > 0);
  return nvme::sgl_descriptor::from_words(sgl1[0], sgl1[1]);
}

// ---- rows
// ----------------------------------------------------------------------------------------

void set_counters(benchmark::State& st, const io& x) {
  st.counters["pages"] = static_cast<double>(x.bytes / ctrl_page);
  st.counters["entries"] = static_cast<double>(x.list.size());
}

void prp_phyr(benchmark::State& st, bool frag, std::uint64_t bytes) {
  const io x = make_io(frag, bytes);
  std::vector<std::uint64_t> pool(4 * ctrl_page / 8);
  const auto want = linux_setup_prps(const_cast<sg::scatterlist*>(x.sgl.data()), x.bytes,
                                     std::vector<std::uint64_t>(pool.size()).data());
  for (auto _ : st) {
    auto r = nvme::try_build_prp(x.list, ctrl_page, pool, dma{pool_dma});
    benchmark::DoNotOptimize(r);
    if (!r || r->prp1.value() != want.prp1 || r->prp2.value() != want.prp2) {
      st.SkipWithError("wrong PRPs");
      break;
    }
  }
  set_counters(st, x);
}

void prp_linux(benchmark::State& st, bool frag, std::uint64_t bytes) {
  io x = make_io(frag, bytes);
  std::vector<std::uint64_t> pool(4 * ctrl_page / 8);
  for (auto _ : st) {
    const baseline::prp_out r = linux_setup_prps(x.sgl.data(), x.bytes, pool.data());
    benchmark::DoNotOptimize(r);
    benchmark::ClobberMemory();
    if (r.prp1 == 0) {
      st.SkipWithError("bad sgl");
      break;
    }
  }
  set_counters(st, x);
}

void sgl_phyr(benchmark::State& st, bool frag, std::uint64_t bytes) {
  const io x = make_io(frag, bytes);
  std::vector<std::uint64_t> pool(4 * ctrl_page / 8);
  const auto want = linux_setup_sgls(const_cast<sg::scatterlist*>(x.sgl.data()),
                                     static_cast<unsigned>(x.sgl.size()),
                                     std::vector<std::uint64_t>(pool.size()).data());
  for (auto _ : st) {
    auto r = nvme::try_build_sgl(x.list, nvme::sgl_config{}, pool, dma{pool_dma});
    benchmark::DoNotOptimize(r);
    if (!r || r->sgl1.address != want.address || r->sgl1.length != want.length) {
      st.SkipWithError("wrong SGL");
      break;
    }
  }
  set_counters(st, x);
}

void sgl_linux(benchmark::State& st, bool frag, std::uint64_t bytes) {
  io x = make_io(frag, bytes);
  std::vector<std::uint64_t> pool(4 * ctrl_page / 8);
  for (auto _ : st) {
    const auto r = linux_setup_sgls(x.sgl.data(), static_cast<unsigned>(x.sgl.size()), pool.data());
    benchmark::DoNotOptimize(r);
    benchmark::ClobberMemory();
  }
  set_counters(st, x);
}

const int registered = [] {
  struct size_case {
    const char* name;
    std::uint64_t bytes;
  };
  for (const size_case sz :
       {size_case{"4KiB", 4096}, size_case{"128KiB", 128 * 1024}, size_case{"1MiB", 1024 * 1024}}) {
    for (const bool frag : {false, true}) {
      const std::string wl = frag ? "frag" : "contig";
      const std::uint64_t b = sz.bytes;
      phyr_bench::apply_settings(benchmark::RegisterBenchmark(
          phyr_bench::bench_name("nvme_prp", wl, sz.name, "phyr_nvme").c_str(),
          [=](benchmark::State& st) { prp_phyr(st, frag, b); }));
      phyr_bench::apply_settings(benchmark::RegisterBenchmark(
          phyr_bench::bench_name("nvme_prp", wl, sz.name, "scatterlist").c_str(),
          [=](benchmark::State& st) { prp_linux(st, frag, b); }));
      phyr_bench::apply_settings(benchmark::RegisterBenchmark(
          phyr_bench::bench_name("nvme_sgl", wl, sz.name, "phyr_nvme").c_str(),
          [=](benchmark::State& st) { sgl_phyr(st, frag, b); }));
      phyr_bench::apply_settings(benchmark::RegisterBenchmark(
          phyr_bench::bench_name("nvme_sgl", wl, sz.name, "scatterlist").c_str(),
          [=](benchmark::State& st) { sgl_linux(st, frag, b); }));
    }
  }
  return 0;
}();

}  // namespace
