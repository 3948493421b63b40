// Map one CPU list three ways and walk the DMA ranges a device would be given:
//   1. identity (no IOMMU / passthrough): the mapping aliases the CPU list, nothing allocated;
//   2. bus offset (an SoC whose DMA view of RAM is shifted), with a 32-bit device;
//   3. a legacy map_sg function (here the kernel-style dma-direct) through the scatterlist bridge.
// The same generic function prints all three: it only needs phyr::phys_dma_mapper.
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <iterator>
#include <phyr/compat/scatterlist.hpp>
#include <phyr/container/range_list.hpp>
#include <phyr/map/identity_mapper.hpp>
#include <phyr/map/mapper.hpp>
#include <phyr/map/offset_mapper.hpp>
#include <phyr/map/sg_bridge_mapper.hpp>

namespace {

struct nvme0 {};  // one tag per bus: DMA ranges of different buses never mix

// Any mapper: map, program "descriptors", unmap. Returns 0 on success.
template <phyr::phys_dma_mapper M>
int map_and_print(const char* what, M& mapper, const phyr::range_list<phyr::phys_range>& cpu) {
  auto mp = mapper.try_map(cpu, phyr::dma_direction::to_device);
  if (!mp) {
    std::printf("%s: map failed: %s\n", what, phyr::to_string(mp.error()));
    return 1;
  }
  std::printf("%s: %zu DMA range(s), %" PRIu64 " bytes\n", what, mp->size(), mp->total_bytes());
  for (const phyr::dma_range<typename M::bus_type> r : *mp)
    std::printf("  dma 0x%012" PRIx64 " len 0x%" PRIx64 "\n", r.addr().value(), r.len());
  if (auto u = mapper.try_unmap(std::move(*mp)); !u) {
    std::printf("%s: unmap failed: %s\n", what, phyr::to_string(u.error()));
    return 1;
  }
  return 0;
}

}  // namespace

int main() {
  // A 7-page buffer starting 0x200 bytes into its first page; frames 0x80010..0x80012 are
  // physically consecutive, so the list coalesces them.
  const std::uint64_t pfns[] = {0x80010, 0x80011, 0x80012, 0x90000, 0x90005, 0x90006, 0xa0000};
  phyr::range_list<phyr::phys_range> cpu;
  if (auto r = cpu.try_append_pages(pfns, 0x200, 7 * 4096 - 0x200 - 0x100); !r) {
    std::printf("building the CPU list failed: %s\n", phyr::to_string(r.error()));
    return 1;
  }
  std::printf("CPU list: %zu range(s) for %zu pages\n", cpu.size(), std::size(pfns));

  int rc = 0;

  // 1. No IOMMU: DMA address == physical address.
  phyr::identity_mapper<nvme0> identity;
  rc |= map_and_print("identity", identity, cpu);

  // 2. RAM at phys 0x8000'0000 (2 GiB) seen by the device at 0x0, and a 32-bit DMA mask.
  phyr::offset_mapper<nvme0> soc;
  if (!soc.try_add_window(phyr::phys_addr{0x8000'0000}, phyr::dma_addr<nvme0>{0}, 1ull << 30) ||
      !soc.try_set_dma_mask(32)) {
    std::printf("configuring the offset mapper failed\n");
    return 1;
  }
  rc |= map_and_print("offset", soc, cpu);

  // 3. A legacy map_sg function behind the bridge.
  auto map_sg = [](phyr::compat::scatterlist* sgl, int nents, phyr::dma_direction) noexcept {
    return phyr::compat::dma_direct_map_sg(sgl, nents, ~std::uint64_t{0});
  };
  phyr::sg_bridge_mapper<nvme0, decltype(map_sg)> bridge{map_sg};
  rc |= map_and_print("sg bridge", bridge, cpu);

  // A mapper refuses what its device cannot reach, and the list is left as it was.
  auto narrow = phyr::must(phyr::identity_mapper<nvme0>::create(28));
  auto refused = narrow.try_map(cpu, phyr::dma_direction::from_device);
  std::printf("identity with a 28-bit mask: %s\n",
              refused ? "mapped (unexpected)" : phyr::to_string(refused.error()));
  if (refused) rc = 1;
  return rc;
}
