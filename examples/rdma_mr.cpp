// Registering an RDMA memory region: pick the MR page size with phyr::try_best_page_size and
// produce the MR page list with phyr::try_blocks.
//
// A NIC translates an MR's IOVA through a page list of one page size, chosen per MR from the
// sizes it supports (mlx5 and friends: 4 KiB up to 1 GiB). The largest usable size is set by
// how the buffer's IOVA and its DMA addresses line up (ib_umem_find_best_pgsz in the kernel); a
// buffer on 2 MiB hugepages registered at a 2 MiB-aligned IOVA needs 512 times fewer entries
// than with 4 KiB pages. The example registers three synthetic buffers, prints their page lists,
// and plays the NIC: it translates IOVAs through the page list and checks every sampled byte
// lands where the mapping says.
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <phyr/container/range_list.hpp>
#include <phyr/device.hpp>
#include <phyr/map/identity_mapper.hpp>
#include <utility>
#include <vector>

namespace {

struct mlx0 {};  // the NIC's bus
using mapping = phyr::identity_mapping<mlx0>;

constexpr std::uint64_t kib4 = 1ull << 12;
constexpr std::uint64_t kib64 = 1ull << 16;
constexpr std::uint64_t mib2 = 1ull << 21;
constexpr std::uint64_t gib1 = 1ull << 30;
constexpr std::uint64_t nic_page_sizes = kib4 | kib64 | mib2 | gib1;

const char* size_name(std::uint64_t s) {
  switch (s) {
    case kib4: return "4 KiB";
    case kib64: return "64 KiB";
    case mib2: return "2 MiB";
    case gib1: return "1 GiB";
    default: return "?";
  }
}

// The DMA address of byte k of the mapping (linear scan; the example's reference).
std::uint64_t dma_of_byte(const mapping& m, std::uint64_t k) {
  for (const phyr::dma_range<mlx0> r : m) {
    if (k < r.len()) return r.addr().value() + k;
    k -= r.len();
  }
  return ~0ull;
}

// Registers `cpu` at `iova`, prints the MR, and checks the NIC's translation. False on failure.
bool register_mr(const char* what, const phyr::range_list<phyr::phys_range>& cpu,
                 std::uint64_t iova) {
  phyr::identity_mapper<mlx0> no_iommu;
  auto m = no_iommu.try_map(cpu, phyr::dma_direction::bidirectional);
  if (!m) return false;
  const auto pg = phyr::try_best_page_size(*m, nic_page_sizes, iova);
  if (!pg) {
    std::printf("  %s: no supported page size (%s)\n", what, phyr::to_string(pg.error()));
    return false;
  }
  const auto blocks = phyr::try_blocks(*m, *pg);  // cannot fail for the size just chosen
  if (!blocks) return false;
  std::vector<std::uint64_t> pages;
  pages.reserve(blocks->size());
  for (const phyr::dma_addr<mlx0> b : *blocks) pages.push_back(b.value());

  std::printf("  %-16s %" PRIu64 " KiB in %zu entries at IOVA %#" PRIx64 " -> %s pages, %zu "
              "page-list entries, first offset %#" PRIx64 "\n",
              what, m->total_bytes() >> 10, m->size(), iova, size_name(*pg), pages.size(),
              blocks->first_offset());
  for (std::size_t i = 0; i < pages.size() && i < 4; ++i)
    std::printf("      page[%zu] = %#" PRIx64 "\n", i, pages[i]);
  if (pages.size() > 4) std::printf("      ... %zu more\n", pages.size() - 4);

  // The NIC: IOVA -> (page index, offset) -> page list entry + offset.
  auto translates = [&](std::uint64_t k) {
    const std::uint64_t va = iova + k;
    const std::uint64_t idx = va / *pg - iova / *pg;
    return idx < pages.size() && pages[idx] + (va & (*pg - 1)) == dma_of_byte(*m, k);
  };
  const std::uint64_t len = m->total_bytes();
  bool ok = blocks->first_offset() == (iova & (*pg - 1)) && translates(len - 1);
  for (std::uint64_t k = 0; ok && k < len; k += 4099) ok = translates(k);
  std::printf("      NIC translation of sampled IOVAs: %s\n", ok ? "correct" : "WRONG");
  phyr::must(no_iommu.try_unmap(std::move(*m)));
  return ok;
}

}  // namespace

int main() {
  std::printf("rdma_mr: NIC supports 4 KiB, 64 KiB, 2 MiB and 1 GiB MR pages\n");
  bool ok = true;

  // 8 MiB on four 2 MiB hugepages scattered over physical memory.
  phyr::range_list<phyr::phys_range> huge;
  for (const std::uint64_t base : {0x1c0000000ull, 0x0a0000000ull, 0x2e0200000ull, 0x140600000ull})
    phyr::must(huge.try_append(phyr::phys_range{phyr::phys_addr{base}, mib2,
                                                phyr::range_flags::pinned}));
  ok &= register_mr("hugepage buffer", huge, 0x7f5ac0000000);
  // The same memory registered at an IOVA that is only 4 KiB-congruent: 4 KiB pages.
  ok &= register_mr("same, odd IOVA", huge, 0x7f5ac0001000);

  // 1 MiB of scattered 4 KiB pages, data starting 0x100 into the first page.
  std::vector<std::uint64_t> pfns;
  for (std::uint64_t i = 0; i < 257; ++i) pfns.push_back(0x300000 + (i * 7919) % 0x10000);
  phyr::range_list<phyr::phys_range> small;
  phyr::must(small.try_append_pages(pfns, 0x100, 256 * kib4, phyr::range_flags::pinned));
  ok &= register_mr("malloc buffer", small, 0x55d4a3e21100);

  std::printf("rdma_mr: %s\n", ok ? "all MRs translate correctly" : "FAILED");
  return ok ? 0 : 1;
}
