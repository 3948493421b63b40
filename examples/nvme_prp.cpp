// Building NVMe PRP lists from a DMA mapping with phyr::try_validate and phyr::try_blocks.
//
// NVMe describes a transfer with Physical Region Page entries (NVMe base spec, "PRP Entry" and
// "PRP List"): PRP1 points at the first byte and may carry an offset into its memory page (dword
// aligned); every other entry is a whole page. If the data ends within the second page, PRP2 is
// that page; if it needs more, PRP2 points at a PRP list, a page of 8-byte entries whose last
// slot, when even more entries are needed, points at the next list page. The Linux driver builds
// exactly this in nvme_pci_setup_prps, after the block layer has split requests on its
// virt_boundary_mask (controller page - 1) so that only the first page has an offset and only
// the last page is partial.
//
// phyr does the same in two steps: try_validate checks the mapping against the controller's
// constraints (4 KiB virtual boundary, dword alignment) in one pass over the entries, and
// try_blocks yields the 4 KiB pages. The example then plays the controller: it walks PRP1, PRP2
// and the list pages and checks that they name exactly the bytes of the mapping.
#include <array>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <phyr/container/range_list.hpp>
#include <phyr/device.hpp>
#include <phyr/map/identity_mapper.hpp>
#include <utility>
#include <vector>

namespace {

struct nvme0 {};  // the controller's bus
using mapping = phyr::identity_mapping<nvme0>;

constexpr std::uint64_t ctrl_page = 4096;  // CC.MPS = 0
constexpr std::size_t list_slots = ctrl_page / sizeof(std::uint64_t);

// What the controller needs: 4 KiB pages without gaps, dword-aligned PRP1, 64-bit addresses.
constexpr phyr::dma_constraints nvme_limits{.max_segment_size = 0xffffffff,
                                            .segment_boundary_mask = ~0ull,
                                            .alignment = 4,
                                            .virt_boundary_mask = ctrl_page - 1};

// One PRP list page: host memory plus the DMA address the controller reads it from (in a driver
// it comes from a dma_pool; here from a pretend pool at a fixed bus address).
struct prp_list_page {
  std::uint64_t dma = 0;
  std::array<std::uint64_t, list_slots> slot{};
};

struct prp_command {
  std::uint64_t prp1 = 0;
  std::uint64_t prp2 = 0;
  std::vector<prp_list_page> lists;
};

constexpr std::uint64_t pool_base = 0xfee00000;

prp_list_page& new_list_page(prp_command& c) {
  c.lists.emplace_back();
  c.lists.back().dma = pool_base + ctrl_page * (c.lists.size() - 1);
  return c.lists.back();
}

// PRP1/PRP2/list pages for `length` bytes described by `b` (4 KiB blocks of a validated
// mapping), following nvme_pci_setup_prps: when a list page is full and entries remain, its
// last entry moves to the next page and the slot becomes the chain pointer.
template <class Blocks>
prp_command build_prps(const Blocks& b, std::uint64_t length) {
  prp_command c;
  auto it = b.begin();
  c.prp1 = (*it).value() + b.first_offset();
  ++it;
  const std::uint64_t first_len = ctrl_page - b.first_offset();
  if (length <= first_len) return c;  // PRP2 unused
  if (length - first_len <= ctrl_page) {
    c.prp2 = (*it).value();  // the second and last page
    return c;
  }
  c.prp2 = new_list_page(c).dma;
  std::size_t i = 0;
  for (; it != b.end(); ++it) {
    if (i == list_slots) {
      const std::uint64_t moved = c.lists.back().slot[list_slots - 1];
      prp_list_page& next = new_list_page(c);
      c.lists[c.lists.size() - 2].slot[list_slots - 1] = next.dma;
      next.slot[0] = moved;
      i = 1;
    }
    c.lists.back().slot[i++] = (*it).value();
  }
  return c;
}

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

// The controller's side: which bytes do PRP1, PRP2 and the lists name? False on a malformed
// command (an offset where the spec requires none, an unknown list page).
bool controller_walk(const prp_command& c, std::uint64_t length, std::vector<span_bytes>& out) {
  if ((c.prp1 & 3) != 0) return false;
  const std::uint64_t off = c.prp1 & (ctrl_page - 1);
  const std::uint64_t n = length < ctrl_page - off ? length : ctrl_page - off;
  push_coalesced(out, c.prp1, n);
  length -= n;
  if (length == 0) return true;
  if (length <= ctrl_page) {
    if ((c.prp2 & (ctrl_page - 1)) != 0) return false;
    push_coalesced(out, c.prp2, length);
    return true;
  }
  auto find = [&](std::uint64_t dma) -> const prp_list_page* {
    for (const prp_list_page& p : c.lists)
      if (p.dma == dma) return &p;
    return nullptr;
  };
  const prp_list_page* page = find(c.prp2);
  std::size_t i = 0;
  while (length != 0) {
    if (page == nullptr) return false;
    if (i == list_slots - 1 && length > ctrl_page) {  // the last slot chains
      page = find(page->slot[i]);
      i = 0;
      continue;
    }
    const std::uint64_t e = page->slot[i++];
    if ((e & (ctrl_page - 1)) != 0) return false;
    const std::uint64_t len = length < ctrl_page ? length : ctrl_page;
    push_coalesced(out, e, len);
    length -= len;
  }
  return true;
}

std::vector<span_bytes> mapping_bytes(const mapping& m) {
  std::vector<span_bytes> v;
  for (const phyr::dma_range<nvme0> r : m) push_coalesced(v, r.addr().value(), r.len());
  return v;
}

// A virtually contiguous buffer of `n` 4 KiB pages, scattered over physical memory.
std::vector<std::uint64_t> scattered_pfns(std::size_t n, std::uint64_t seed) {
  std::vector<std::uint64_t> pfns(n);
  for (std::size_t i = 0; i < n; ++i) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    pfns[i] = 0x100000 + ((seed >> 33) % 0x400000);  // somewhere in 4..20 GiB
    if (i != 0 && (seed >> 20) % 4 == 0) pfns[i] = pfns[i - 1] + 1;  // some contiguity
  }
  return pfns;
}

// Maps one transfer, builds its PRPs, checks them as the controller would. False on failure.
bool transfer(const char* what, const std::vector<std::uint64_t>& pfns, std::uint64_t offset,
              std::uint64_t length) {
  phyr::range_list<phyr::phys_range> cpu;
  if (!cpu.try_append_pages(pfns, offset, length, phyr::range_flags::pinned)) return false;
  phyr::identity_mapper<nvme0> iommu_off;
  auto m = iommu_off.try_map(cpu, phyr::dma_direction::from_device);
  if (!m) return false;

  const auto st = phyr::try_validate(*m, nvme_limits);
  if (!st) {
    std::printf("  %-13s refused: %s\n", what, phyr::to_string(st.error()));
    return false;
  }
  const auto blocks = phyr::try_blocks(*m, ctrl_page);
  if (!blocks) return false;
  const prp_command c = build_prps(*blocks, length);

  std::vector<span_bytes> seen;
  const bool ok = controller_walk(c, length, seen);
  const std::vector<span_bytes> want = mapping_bytes(*m);
  bool same = ok && seen.size() == want.size();
  for (std::size_t i = 0; same && i < seen.size(); ++i)
    same = seen[i].addr == want[i].addr && seen[i].len == want[i].len;

  std::printf("  %-13s %7" PRIu64 " bytes, %3zu entries -> %3" PRIu64
              " pages: PRP1=%#" PRIx64 " PRP2=%#" PRIx64 "%s, %zu list page%s  [%s]\n",
              what, length, m->size(), blocks->size(), c.prp1, c.prp2,
              c.lists.empty() ? (c.prp2 == 0 ? " (unused)" : " (2nd page)") : " (list)",
              c.lists.size(), c.lists.size() == 1 ? "" : "s",
              same ? "controller walk matches" : "MISMATCH");
  phyr::must(iommu_off.unmap(std::move(*m)));
  return same;
}

}  // namespace

int main() {
  std::printf("nvme_prp: %" PRIu64 "-byte controller pages, %zu entries per PRP list page\n",
              ctrl_page, list_slots);
  bool ok = true;
  ok &= transfer("3 KiB read", scattered_pfns(1, 1), 0x200, 3072);
  ok &= transfer("6 KiB read", scattered_pfns(2, 2), 0x800, 6144);
  ok &= transfer("64 KiB write", scattered_pfns(17, 3), 0x400, 65536);
  // 600 pages: 599 list entries, more than one list page holds, so the lists chain.
  ok &= transfer("2.3 MiB read", scattered_pfns(600, 4), 0x400, 600 * ctrl_page - 0x500);

  // A list the controller cannot take: two 1.5 KiB pieces in different pages leave a hole
  // inside the first page (an iovec from user space can look like this).
  phyr::range_list<phyr::phys_range> cpu;
  phyr::must(cpu.try_append(phyr::phys_range{phyr::phys_addr{0x12340000}, 0x600}));
  phyr::must(cpu.try_append(phyr::phys_range{phyr::phys_addr{0x56780000}, 0x600}));
  phyr::identity_mapper<nvme0> iommu_off;
  auto m = phyr::must(iommu_off.try_map(cpu, phyr::dma_direction::to_device));
  const auto strict = phyr::try_validate(m, nvme_limits);
  const auto report = phyr::try_validate(m, nvme_limits, phyr::gap_policy::report);
  const bool refused = !strict && strict.error() == phyr::errc::misaligned && report &&
                       report->needs_bounce() && report->first_gap == 1;
  std::printf("  %-13s %s (gap before entry %" PRIu64 "): bounce it or use SGLs  [%s]\n",
              "iovec 2x1.5K", refused ? "misaligned" : "ACCEPTED?!",
              report ? report->first_gap : 0, refused ? "as expected" : "WRONG");
  phyr::must(iommu_off.unmap(std::move(m)));
  ok &= refused;

  std::printf("nvme_prp: %s\n", ok ? "all PRP lists check out" : "FAILED");
  return ok ? 0 : 1;
}
