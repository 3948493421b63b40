// Building NVMe PRP lists from a DMA mapping with phyr::nvme::try_build_prp.
//
// NVMe describes a transfer with Physical Region Page entries (NVMe base spec, "PRP Entry" and
// "PRP List"): PRP1 points at the first byte and may carry a dword-aligned offset into its
// memory page; every other entry is a whole page. If the data ends within the second page, PRP2
// is that page; if it needs more, PRP2 points at a PRP list, a page of 8-byte entries whose last
// slot, when even more entries are needed, points at the next list page.
//
// try_build_prp checks the mapping against those rules (and MDTS) and writes the list pages into
// descriptor memory the driver owns: here a pretend DMA pool of four 4 KiB pages at a fixed bus
// address. The example then plays the controller with phyr::nvme::walk_prp (a model of the
// spec's reading, not a device) and checks that PRP1, PRP2 and the lists name exactly the bytes
// of the mapping.
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <phyr/container/range_list.hpp>
#include <phyr/device/nvme.hpp>
#include <phyr/map/identity_mapper.hpp>
#include <utility>
#include <vector>

namespace {

struct nvme0 {};  // the controller's bus
namespace nvme = phyr::nvme;

constexpr std::uint64_t ctrl_page = 4096;  // CC.MPS = 0
// MDTS = 10 in units of CAP.MPSMIN (4 KiB): 4 MiB per command.
constexpr nvme::prp_config limits{.page_size = ctrl_page,
                                  .max_transfer = nvme::mdts_bytes(10, 4096)};

// The descriptor pool: what a driver gets from a DMA-coherent allocation. Sized in closed form
// for the largest transfer the controller takes.
constexpr std::uint64_t pool_pages = nvme::prp_list_pages_max(limits.max_transfer, ctrl_page);
constexpr std::uint64_t pool_dma = 0xfee00000;
static_assert(pool_pages == 3);  // 1025 entries at worst: 511 + 511 + 2 list slots

struct span_bytes {
  std::uint64_t addr;
  std::uint64_t len;
};

void push_coalesced(std::vector<span_bytes>& v, std::uint64_t a, std::uint64_t n) {
  if (!v.empty() && v.back().addr + v.back().len == a) {
    v.back().len += n;
  } else {
    v.push_back({a, n});
  }
}

// A virtually contiguous buffer of `n` 4 KiB pages, scattered over physical memory.
std::vector<std::uint64_t> scattered_pfns(std::size_t n, std::uint64_t seed) {
  std::vector<std::uint64_t> pfns(n);
  for (std::size_t i = 0; i < n; ++i) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    pfns[i] = 0x100000 + ((seed >> 33) % 0x400000);                  // somewhere in 4..20 GiB
    if (i != 0 && (seed >> 20) % 4 == 0) pfns[i] = pfns[i - 1] + 1;  // some contiguity
  }
  return pfns;
}

// Maps one transfer, builds its PRPs, checks them as the controller would. False on failure.
bool transfer(const char* what, const std::vector<std::uint64_t>& pfns, std::uint64_t offset,
              std::uint64_t length, std::vector<std::uint64_t>& pool) {
  phyr::range_list<phyr::phys_range> cpu;
  if (!cpu.try_append_pages(pfns, offset, length, phyr::range_flags::pinned)) return false;
  phyr::identity_mapper<nvme0> iommu_off;
  auto m = iommu_off.try_map(cpu, phyr::dma_direction::from_device);
  if (!m) return false;

  const auto r = nvme::try_build_prp(*m, limits, pool, phyr::dma_addr<nvme0>{pool_dma});
  if (!r) {
    std::printf("  %-13s refused: %s\n", what, phyr::to_string(r.error()));
    phyr::must(iommu_off.try_unmap(std::move(*m)));
    return false;
  }

  std::vector<span_bytes> seen;
  const auto read = [&](std::uint64_t dma) -> phyr::result<std::uint64_t> {
    if (dma < pool_dma || dma - pool_dma >= pool.size() * 8) return phyr::errc::not_mapped;
    return pool[(dma - pool_dma) / 8];
  };
  const auto walked =
      nvme::walk_prp(r->prp1.value(), r->prp2.value(), length, ctrl_page, read,
                     [&](std::uint64_t a, std::uint64_t n) { push_coalesced(seen, a, n); });
  std::vector<span_bytes> want;
  for (const phyr::dma_range<nvme0> x : *m) push_coalesced(want, x.addr().value(), x.len());
  bool same = walked && seen.size() == want.size();
  for (std::size_t i = 0; same && i < seen.size(); ++i)
    same = seen[i].addr == want[i].addr && seen[i].len == want[i].len;

  const char* kind = r->prp2_kind == nvme::prp2_use::none   ? " (unused)"
                     : r->prp2_kind == nvme::prp2_use::data ? " (2nd page)"
                                                            : " (list)";
  std::printf("  %-13s %7" PRIu64 " bytes, %3zu ranges -> %3" PRIu64 " PRP entries: PRP1=%#" PRIx64
              " PRP2=%#" PRIx64 "%s, %" PRIu64 " list page%s  [%s]\n",
              what, length, m->size(), r->entries, r->prp1.value(), r->prp2.value(), kind,
              r->list_pages, r->list_pages == 1 ? "" : "s",
              same ? "controller walk matches" : "MISMATCH");
  phyr::must(iommu_off.try_unmap(std::move(*m)));
  return same;
}

// A list the controller cannot take must be refused with the reason, and the pool untouched.
bool refused(const char* what, std::vector<phyr::phys_range> ranges, phyr::errc want,
             std::vector<std::uint64_t>& pool) {
  phyr::range_list<phyr::phys_range> cpu;
  for (const auto& x : ranges) phyr::must(cpu.try_append(x));
  phyr::identity_mapper<nvme0> iommu_off;
  auto m = phyr::must(iommu_off.try_map(cpu, phyr::dma_direction::to_device));
  const std::vector<std::uint64_t> before = pool;
  const auto r = nvme::try_build_prp(m, limits, pool, phyr::dma_addr<nvme0>{pool_dma});
  const bool ok = !r && r.error() == want && pool == before;
  std::printf("  %-13s %s  [%s]\n", what, r ? "ACCEPTED?!" : phyr::to_string(r.error()),
              ok ? "refused, pool untouched" : "WRONG");
  phyr::must(iommu_off.try_unmap(std::move(m)));
  return ok;
}

}  // namespace

int main() {
  std::printf("nvme_prp: %" PRIu64 "-byte controller pages, %" PRIu64
              " entries per PRP list page, MDTS %" PRIu64 " KiB -> %" PRIu64 " pool pages\n",
              ctrl_page, nvme::prp_slots_per_page(ctrl_page), limits.max_transfer / 1024,
              pool_pages);
  std::vector<std::uint64_t> pool(pool_pages * nvme::prp_slots_per_page(ctrl_page));
  bool ok = true;
  ok &= transfer("3 KiB read", scattered_pfns(1, 1), 0x200, 3072, pool);
  ok &= transfer("6 KiB read", scattered_pfns(2, 2), 0x800, 6144, pool);
  ok &= transfer("64 KiB write", scattered_pfns(17, 3), 0x400, 65536, pool);
  // 600 pages: 599 list entries, more than one list page holds, so the lists chain.
  ok &= transfer("2.3 MiB read", scattered_pfns(600, 4), 0x400, 600 * ctrl_page - 0x500, pool);

  using phyr::phys_addr;
  using phyr::phys_range;
  // Two 1.5 KiB pieces in different pages leave a hole inside the first page (an iovec from user
  // space can look like this): bounce it or use SGLs.
  ok &=
      refused("iovec 2x1.5K",
              {phys_range{phys_addr{0x12340000}, 0x600}, phys_range{phys_addr{0x56780000}, 0x600}},
              phyr::errc::page_gap, pool);
  ok &= refused("odd start", {phys_range{phys_addr{0x12340002}, 0x1000}}, phyr::errc::misaligned,
                pool);
  ok &= refused("8 MiB > MDTS", {phys_range{phys_addr{0x40000000}, 8u << 20}}, phyr::errc::too_long,
                pool);

  std::printf("nvme_prp: %s\n", ok ? "all PRP lists check out" : "FAILED");
  return ok ? 0 : 1;
}
