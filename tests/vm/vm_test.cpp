// The program tests/vm/run.sh boots in the VM: the example's driver (examples/nvme_vfio) against
// QEMU's emulated NVMe controller behind an emulated Intel IOMMU, with every check printed as a
// `VM-TEST PASS|FAIL` line on the serial console:
//   identify       the serial run.sh gave QEMU, the namespace the size of the disk image
//   prp read       scattered pages with offsets at both ends; a PRP list
//   prp chained    600 pages: the PRP list needs two chained pages
//   prp write, sgl write   written, flushed, read back into other pieces; SGL for pieces no
//                  PRP can describe (the PRP builder must refuse them); the host checks the image
//   blocked        never-mapped IOVA, IOVA after unmap, device write to a to_device mapping
//   reservation    two-step IOVA (iova_reservation over vfio_mapper): link, READ, unlink, link
//                  other pages at the same IOVA, READ; after the last unlink the IOVA is blocked
//   p2p cmb        (with a second controller) a READ straight into the other's CMB
//   shutdown
// The disk image holds a known pattern (tests/vm/disk.py: keep the pattern functions and the
// written LBAs in step with it).
//
// QEMU completes a command whose DMA the IOMMU blocked with success status, so the blocked cases
// are judged by the data (the buffer is untouched) and by the guest kernel's DMAR fault line
// naming the exact IOVA, never by the completion status.
#include <sys/klog.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include <phyr/map/iommu/iova_reservation.hpp>
#include <phyr/map/p2p/p2p_registry.hpp>
#include <phyr/map/p2p/pci_topology.hpp>
#include <phyr/os/linux/pci_sysfs.hpp>

#include "driver.hpp"

using namespace nvme_vfio;

namespace {

constexpr std::uint32_t block = 512;
constexpr std::uint64_t disk_blocks = 32768;
constexpr std::uint64_t prp_read_lba = 1000;
constexpr std::uint64_t chain_lba = 8192;
constexpr std::uint64_t prp_write_lba = 4096;  // disk.py WRITTEN[0]: 64 blocks
constexpr std::uint64_t sgl_write_lba = 6144;  // disk.py WRITTEN[1]: 48 blocks
constexpr std::uint8_t sentinel = 0xee;

std::uint64_t disk_word(std::uint64_t lba, std::uint64_t i) {
  return 0x7068797200000000ull | (lba << 8) | i;
}
std::uint64_t write_word(std::uint64_t lba, std::uint64_t i) {
  return 0x5752495400000000ull | (lba << 8) | i;
}

int passed = 0, failed = 0;

void verdict(bool ok, const char* fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  std::printf("VM-TEST %s %s\n", ok ? "PASS" : "FAIL", msg);
  std::fflush(stdout);
  (ok ? passed : failed)++;
}

// Pages of this process, deliberately picked out of order from one pool.
struct pool {
  std::uint8_t* base = nullptr;
  std::size_t pages = 0;
  bool init(std::size_t n) {
    void* m = mmap(nullptr, n * page, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (m == MAP_FAILED) return false;
    base = static_cast<std::uint8_t*>(m);
    pages = n;
    std::memset(base, sentinel, n * page);
    return true;
  }
  std::uint8_t* at(std::size_t i) const { return base + i * page; }
};

// The bytes of `chunks` in order, as one stream: word `w` of block `lba0 + w / 64`.
template <class Fn>
void fill(std::span<const vchunk> chunks, std::uint64_t lba0, Fn word) {
  std::uint64_t off = 0;
  for (const vchunk& c : chunks) {
    for (std::size_t i = 0; i < c.len; i += 8, off += 8) {
      const std::uint64_t v = word(lba0 + off / block, (off % block) / 8);
      std::memcpy(c.p + i, &v, 8);
    }
  }
}
template <class Fn>
bool matches(std::span<const vchunk> chunks, std::uint64_t lba0, Fn word, std::uint64_t* bad_off) {
  std::uint64_t off = 0;
  for (const vchunk& c : chunks) {
    for (std::size_t i = 0; i < c.len; i += 8, off += 8) {
      std::uint64_t v;
      std::memcpy(&v, c.p + i, 8);
      if (v != word(lba0 + off / block, (off % block) / 8)) {
        *bad_off = off;
        return false;
      }
    }
  }
  return true;
}
bool all_sentinel(const std::uint8_t* p, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i)
    if (p[i] != sentinel) return false;
  return true;
}

std::string kernel_log() {
  std::string s(1 << 20, '\0');
  const int n = klogctl(3 /* SYSLOG_ACTION_READ_ALL */, s.data(), static_cast<int>(s.size()));
  s.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
  return s;
}
// The guest kernel's line for an IOMMU fault at `iova` (drivers/iommu/intel/dmar.c prints
// "DMAR: [DMA Write NO_PASID] Request device [..] fault addr 0x... [fault reason ..] ...").
// How many such lines the log holds (an IOVA may be handed out again after an unmap), and the
// last of them.
std::size_t fault_lines(std::uint64_t iova, std::string* last = nullptr) {
  char key[64];
  std::snprintf(key, sizeof key, "fault addr 0x%" PRIx64 " [", iova);
  const std::string log = kernel_log();
  std::size_t n = 0, at = std::string::npos;
  for (std::size_t p = log.find(key); p != std::string::npos; p = log.find(key, p + 1)) {
    ++n;
    at = p;
  }
  if (n == 0 || last == nullptr) return n;
  const std::size_t b = log.rfind('\n', at);
  const std::size_t e = log.find('\n', at);
  std::string line = log.substr(b == std::string::npos ? 0 : b + 1,
                                e == std::string::npos ? std::string::npos : e - b - 1);
  const std::size_t d = line.find("DMAR:");
  *last = d == std::string::npos ? std::string{} : line.substr(d);
  return n;
}
// Waits for a fault line beyond the `before` already there; empty if none comes.
std::string wait_new_fault(std::uint64_t iova, std::size_t before) {
  for (int i = 0; i < 100; ++i) {  // the fault interrupt is handled asynchronously
    std::string l;
    if (fault_lines(iova, &l) > before && !l.empty()) return l;
    usleep(50000);
  }
  return {};
}

// One controller page of READ into whatever `iova` reaches, described by PRP1 alone.
int read_one_page(session& s, std::uint64_t iova, std::uint64_t lba) {
  data_pointer dp;
  dp.dptr[0] = iova;
  return s.ctrl().rw(io_read, lba, page / block, dp);
}

const char* why(const session& s) {
  static char buf[160];
  const failure& f = s.error();
  if (f.nvme_status) {
    std::snprintf(buf, sizeof buf, "NVMe status 0x%x", f.nvme_status);
  } else {
    std::snprintf(buf, sizeof buf, "%s%s%s%s%s", phyr::to_string(f.code), f.op ? " in " : "",
                  f.op ? f.op : "", f.sys_errno ? ": " : "", f.sys_errno ? std::strerror(f.sys_errno) : "");
  }
  return buf;
}

void blocked_case(session& s, const char* what, std::uint64_t iova, const std::uint8_t* buf,
                  const pool& mem) {
  const std::size_t before = fault_lines(iova);
  // Snapshot the whole pool: a blocked DMA must change no byte anywhere.
  std::vector<std::uint8_t> snap(mem.base, mem.base + mem.pages * page);
  const int st = read_one_page(s, iova, 200);
  const std::string line = wait_new_fault(iova, before);
  const bool untouched = buf == nullptr ? true : all_sentinel(buf, page);
  const bool pool_same = std::memcmp(snap.data(), mem.base, snap.size()) == 0;
  verdict(!line.empty() && untouched && pool_same,
          "blocked: %s iova 0x%" PRIx64 ": status 0x%x, buffer %s, fault %s: %s", what, iova, st,
          untouched && pool_same ? "untouched" : "CHANGED", line.empty() ? "NOT logged" : "logged",
          line.c_str());
}

// Stretch: controller A reads from its disk straight into controller B's Controller Memory
// Buffer (BAR 2 of B), peer to peer. phyr decides the path from the real PCI tree in sysfs
// (pci_sysfs + pci_topology + p2p_registry: B's BAR is a registered provider, and the two
// endpoints on q35's root bus talk through the host bridge, which QEMU forwards, so the test
// allowlists it); "through the host bridge" means mapped like RAM by the IOMMU, which under
// VFIO is the vfio_mapper mapping B's BAR as mmapped into this process. The data is checked by
// reading the CMB through B's BAR with the CPU.
void cmb_p2p(session& s, const char* client, const char* cmb) {
  const auto client_bdf = phyr::pci_bdf::parse(client, std::strlen(client));
  const auto cmb_bdf = phyr::pci_bdf::parse(cmb, std::strlen(cmb));
  if (!client_bdf || !cmb_bdf) {
    verdict(false, "p2p: cannot parse %s / %s", client, cmb);
    return;
  }
  // B joins A's container: one IOMMU context for both, so A can reach what B exposes.
  auto group_no = phyr::vfio::try_iommu_group_of(cmb);
  auto g = group_no ? s.container().try_attach_group(*group_no)
                    : phyr::result<phyr::vfio::group, phyr::sys_error>(group_no.error());
  if (!g) {
    s.fail(g.error());
    verdict(false, "p2p: attach %s: %s", cmb, why(s));
    return;
  }
  auto d = g->try_open_device(cmb);
  auto regs = d ? d->try_map_bar(0) : phyr::result<phyr::vfio::mapped_bar, phyr::sys_error>(d.error());
  auto bar2 = d ? d->try_map_bar(2) : phyr::result<phyr::vfio::mapped_bar, phyr::sys_error>(d.error());
  if (!regs || !bar2) {
    s.fail(!regs ? regs.error() : bar2.error());
    verdict(false, "p2p: BARs of %s: %s", cmb, why(s));
    return;
  }
  // CMBMSC.CRE makes CMBLOC/CMBSZ readable (NVMe 1.4+; QEMU without legacy-cmb).
  regs->store64(0x50, 1);
  const std::uint32_t cmbloc = regs->load32(0x38), cmbsz = regs->load32(0x3c);
  const std::uint64_t cmb_bytes = std::uint64_t{cmbsz >> 12} << (12 + 4 * ((cmbsz >> 8) & 0xf));
  std::printf("vm: %s CMB in BAR %u at offset 0x%x, %" PRIu64 " bytes (CMBSZ 0x%x), BAR 2 is %zu bytes\n",
              cmb, cmbloc & 7, cmbloc & ~0xfffu, cmb_bytes, cmbsz, bar2->size());

  // B's BAR 2 in CPU physical space, from sysfs (line 3 of `resource`).
  char path[128];
  std::snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/resource", cmb);
  unsigned long long start = 0, end = 0, flags = 0;
  if (FILE* f = std::fopen(path, "r")) {
    for (int i = 0; i < 3; ++i)
      if (std::fscanf(f, "%llx %llx %llx", &start, &end, &flags) != 3) start = end = 0;
    std::fclose(f);
  }
  phyr::pci_topology<> topo;
  phyr::p2p_registry<> reg;
  phyr::pci_sysfs_error err;
  const phyr::pci_host_bridge_rule allow[] = {{0x8086, 0x29c0, phyr::host_bridge_p2p::any}};
  phyr::pci_sysfs_options opt{.allowlist = allow};
  auto loaded = phyr::load_pci_sysfs("/sys", topo, reg, opt, &err);
  auto bar_phys = phyr::phys_range::create(phyr::phys_addr{start}, end - start + 1);
  auto owner = loaded && bar_phys ? reg.lookup(*bar_phys) : phyr::result<phyr::p2p_owner>(phyr::errc::not_found);
  auto type = loaded ? topo.map_type(*cmb_bdf, *client_bdf) : phyr::result<phyr::p2p_map_type>(phyr::errc::not_found);
  const bool provider_ok = owner && owner->is_provider() &&
                           owner->window().provider() == cmb_bdf->provider_id();
  if (!loaded || !provider_ok || !type || *type != phyr::p2p_map_type::through_host_bridge) {
    verdict(false, "p2p: phyr's view of the PCI tree: load %s (%s), BAR provider %s, map type %s",
            loaded ? "ok" : phyr::to_string(loaded.error()), err.message,
            provider_ok ? "found" : "NOT found", type ? phyr::to_string(*type) : "error");
    return;
  }

  // Clear 32 KiB of the CMB through the CPU, map it for A (A writes it), READ 64 blocks into it.
  constexpr std::uint64_t bytes = 0x8000, lba = 2000;
  auto* cmb_words = static_cast<volatile std::uint64_t*>(bar2->data());
  for (std::uint64_t i = 0; i < bytes / 8; ++i) cmb_words[i] = 0;
  const vchunk c{static_cast<std::uint8_t*>(bar2->data()), bytes};
  auto m = s.map({&c, 1}, dma_direction::from_device);
  data_pointer dp;
  const bool io = m && s.prp(*m, dp) && s.nvme_ok(s.ctrl().rw(io_read, lba, bytes / block, dp));
  std::uint64_t bad = bytes;
  for (std::uint64_t i = 0; io && i < bytes / 8; ++i) {
    if (cmb_words[i] != disk_word(lba + i / 64, i % 64)) {
      bad = i * 8;
      break;
    }
  }
  verdict(io && bad == bytes && cmb_bytes >= bytes,
          "p2p cmb: %s read 64 blocks at LBA %" PRIu64 " straight into the CMB of %s (BAR 2 at "
          "phys 0x%llx, a registered provider; phyr's map type: %s; IOVA 0x%" PRIx64 "): the CPU "
          "reads the disk pattern back from the CMB (%s)",
          client, lba, cmb, start, phyr::to_string(*type), m ? m->begin()->addr().value() : 0,
          io ? (bad == bytes ? "ok" : "data differs") : why(s));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::printf("usage: vm_test BDF [CMB-BDF]\n");
    return 2;
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  session s;
  if (!s.open(argv[1])) {
    verdict(false, "open %s: %s", argv[1], why(s));
    std::printf("VM-TEST SUMMARY %d passed, %d failed\n", passed, failed);
    return 1;
  }
  const identity& id = s.id();
  verdict(id.block_size == block && id.ns_blocks == disk_blocks,
          "identify serial=%s model=%s namespace=%" PRIu64 "x%u sgls=0x%x mdts=%u", id.serial,
          id.model, id.ns_blocks, id.block_size, id.sgls, id.mdts);
  const phyr::vfio::iova_window win = s.mapper().window();
  std::printf("vm: IOMMU page %" PRIu64 ", mapper window [0x%" PRIx64 ", 0x%" PRIx64 "]\n",
              s.mapper().granule(), win.first, win.last);

  pool mem;
  if (!mem.init(96)) {
    verdict(false, "mmap of the page pool");
    return 1;
  }

  // ---- READ through a PRP list into scattered pages -------------------------------------------
  {
    // 0xe00 bytes at the end of page 7, seven whole pages out of order, 0x200 bytes of page 30.
    std::vector<vchunk> c{{mem.at(7) + 0x200, 0xe00}};
    for (std::size_t p : {2, 19, 11, 4, 23, 15, 9}) c.push_back({mem.at(p), page});
    c.push_back({mem.at(30), 0x200});
    auto m = s.map(c, dma_direction::from_device);
    data_pointer dp;
    const bool io = m && s.prp(*m, dp) && s.nvme_ok(s.ctrl().rw(io_read, prp_read_lba, 64, dp));
    std::uint64_t bad = 0;
    const bool ok = io && matches(c, prp_read_lba, disk_word, &bad) &&
                    all_sentinel(mem.at(7), 0x200) && all_sentinel(mem.at(30) + 0x200, page - 0x200);
    verdict(ok,
            "prp read: 64 blocks at LBA %" PRIu64 " into %zu scattered pieces of memory (one "
            "IOVA range of 0x%" PRIx64 " bytes; PRP1 at offset 0x%" PRIx64 ", PRP2 a list) match "
            "the disk pattern, bytes around them untouched (%s)",
            prp_read_lba, c.size(), m ? m->total_bytes() : 0, dp.dptr[0] & (page - 1),
            io ? "ok" : why(s));
  }

  // ---- A READ long enough that the PRP list pages chain ---------------------------------------
  {
    // 600 pages (2400 KiB, 1.17 list pages of 512 slots) picked 7 apart around a 640-page pool:
    // every piece is its own virtual run, and the PRP list needs a second, chained page.
    // run.sh gives QEMU's controller mdts=10 (4 MiB) so one command may carry it.
    pool big;
    constexpr std::size_t n = 600, span = 640;
    std::vector<vchunk> c;
    if (big.init(span))
      for (std::size_t i = 0; i < n; ++i) c.push_back({big.at((i * 7) % span), page});
    auto m = c.empty() ? std::nullopt : s.map(c, dma_direction::from_device);
    data_pointer dp;
    const auto blocks = static_cast<std::uint32_t>(n * page / block);
    const bool io = m && s.prp(*m, dp) && s.nvme_ok(s.ctrl().rw(io_read, chain_lba, blocks, dp));
    std::uint64_t bad = 0;
    verdict(io && s.last_prp_list_pages() == 2 && matches(c, chain_lba, disk_word, &bad),
            "prp chained: %u blocks at LBA %" PRIu64 " into %zu scattered pages, %" PRIu64
            " PRP entries in %" PRIu64 " chained list pages, match the disk pattern (%s)",
            blocks, chain_lba, c.size(), s.last_prp_entries(), s.last_prp_list_pages(),
            io ? "ok" : why(s));
    if (big.base) munmap(big.base, span * page);
  }

  // ---- WRITE through PRPs, FLUSH, read back into other scattered pages --------------------------
  {
    std::vector<vchunk> w, r{{mem.at(45) + 0x800, 0x800}};
    for (std::size_t p : {40, 33, 47, 36, 50, 31, 43, 38}) w.push_back({mem.at(p), page});
    for (std::size_t p : {60, 52, 57, 54, 62, 58, 53}) r.push_back({mem.at(p), page});
    r.push_back({mem.at(61), 0x800});
    fill(w, prp_write_lba, write_word);
    data_pointer dw, dr;
    auto mw = s.map(w, dma_direction::to_device);
    bool io = mw && s.prp(*mw, dw) && s.nvme_ok(s.ctrl().rw(io_write, prp_write_lba, 64, dw)) &&
              s.nvme_ok(s.ctrl().flush());
    auto mr = io ? s.map(r, dma_direction::from_device) : std::nullopt;
    io = io && mr && s.prp(*mr, dr) && s.nvme_ok(s.ctrl().rw(io_read, prp_write_lba, 64, dr));
    std::uint64_t bad = 0;
    verdict(io && matches(r, prp_write_lba, write_word, &bad),
            "prp write+read-back: 64 blocks at LBA %" PRIu64 " written from %zu scattered pages, "
            "flushed, read back into %zu other pieces: identical (%s)",
            prp_write_lba, w.size(), r.size(), io ? "ok" : why(s));
  }

  // ---- SGL: pieces no PRP can describe (unaligned starts and lengths) --------------------------
  if ((id.sgls & 3) == 0) {
    verdict(false, "sgl: the controller reports no SGL support (SGLS 0x%x)", id.sgls);
  } else {
    std::vector<vchunk> w{{mem.at(70) + 0x100, 0xf00},
                          {mem.at(72) + 0x40, 0x1fc0},
                          {mem.at(76) + 0x300, 0xa00},
                          {mem.at(80) + 0x10, 0x2740}};
    std::vector<vchunk> r{{mem.at(84) + 0x4, 0x3000}, {mem.at(90) + 0x20, 0x3000}};
    fill(w, sgl_write_lba, write_word);
    data_pointer dw, dr, probe;
    auto mw = s.map(w, dma_direction::to_device);
    const bool prp_ok = mw && s.prp(*mw, probe);
    const phyr::errc prp_says = s.error().code;
    bool io = mw && s.sgl(*mw, dw) && s.nvme_ok(s.ctrl().rw(io_write, sgl_write_lba, 48, dw)) &&
              s.nvme_ok(s.ctrl().flush());
    auto mr = io ? s.map(r, dma_direction::from_device) : std::nullopt;
    io = io && mr && s.sgl(*mr, dr) && s.nvme_ok(s.ctrl().rw(io_read, sgl_write_lba, 48, dr));
    std::uint64_t bad = 0;
    verdict(io && !prp_ok && matches(r, sgl_write_lba, write_word, &bad) &&
                all_sentinel(mem.at(84), 4) && all_sentinel(mem.at(90), 0x20),
            "sgl write+read-back: 48 blocks at LBA %" PRIu64 " from %zu unaligned pieces (%zu "
            "DMA ranges; the PRP builder refuses them: %s), read back through %zu more: "
            "identical (%s)",
            sgl_write_lba, w.size(), mw ? mw->size() : 0,
            prp_ok ? "NOT REFUSED" : phyr::to_string(prp_says), mr ? mr->size() : 0,
            io ? "ok" : why(s));
  }

  // ---- The IOMMU blocks what was not granted ----------------------------------------------------
  {
    // Outside the window the mapper allocates from, so no mapping of this run ever covered it.
    const std::uint64_t never = 0x40000000;
    if (never >= win.first && never <= win.last) {
      verdict(false, "blocked: never-mapped: 0x%" PRIx64 " lies inside the mapper's window", never);
    } else {
      blocked_case(s, "never-mapped", never, nullptr, mem);
    }

    std::uint8_t* v = mem.at(93);
    std::vector<vchunk> c{{v, page}};
    auto m = s.map(c, dma_direction::from_device);
    const std::uint64_t iova = m ? m->begin()->addr().value() : 0;
    std::uint64_t bad = 0;
    const bool arrived = m && s.nvme_ok(read_one_page(s, iova, 300)) && matches(c, 300, disk_word, &bad);
    if (m) m->reset();  // VFIO_IOMMU_UNMAP_DMA
    std::memset(v, sentinel, page);
    if (!arrived) {
      verdict(false, "blocked: after unmap: the read before the unmap failed (%s)", why(s));
    } else {
      blocked_case(s, "after unmap", iova, v, mem);
    }

    std::uint8_t* ro = mem.at(94);
    std::vector<vchunk> c2{{ro, page}};
    auto m2 = s.map(c2, dma_direction::to_device);
    // First the write the IOMMU must refuse, then proof that the device may read the mapping:
    // a WRITE from it puts the bytes the PRP test wrote at LBA 4096 there again (the host
    // checks them). In this order because QEMU's VT-d model reports a permission fault only
    // on a page walk: once a read has cached the read-only IOTLB entry, a write through it is
    // still refused but no longer logged.
    if (!m2) {
      verdict(false, "blocked: to_device: map failed (%s)", why(s));
    } else {
      blocked_case(s, "device write into a to_device (read-only) mapping at",
                   m2->begin()->addr().value(), ro, mem);
      fill(c2, prp_write_lba, write_word);
      data_pointer dp;
      const bool readable = s.prp(*m2, dp) &&
                            s.nvme_ok(s.ctrl().rw(io_write, prp_write_lba, page / block, dp)) &&
                            s.nvme_ok(s.ctrl().flush());
      verdict(readable, "to_device mapping at iova 0x%" PRIx64 " is readable by the device: "
              "WRITE of 8 blocks from it (%s)", m2->begin()->addr().value(), readable ? "ok" : why(s));
    }
  }

  // ---- Two-step IOVA through the real IOMMU: one standing reservation, links per I/O ---------
  {
    // Linux 6.16's dma_iova_* flow over VFIO: reserve once, link an I/O's pages at chosen
    // offsets (one MAP_DMA each), READ through the linked IOVA, unlink, then link other pages
    // at the same offsets for the next I/O. After the unlink the same IOVA must be blocked.
    using resv = phyr::iova_reservation<nvme_bus, mapper_type>;
    auto q = resv::try_create(s.mapper(), 16 * page);
    auto link2 = [&](std::size_t p0, std::size_t p1) {
      auto a = q->try_link(0, phyr::virt_range{phyr::virt_addr{reinterpret_cast<std::uintptr_t>(mem.at(p0))}, page},
                           dma_direction::from_device);
      auto b = a ? q->try_link(page, phyr::virt_range{phyr::virt_addr{reinterpret_cast<std::uintptr_t>(mem.at(p1))}, page},
                               dma_direction::from_device)
                 : phyr::result<phyr::dma_range<nvme_bus>>{a.error()};
      if (b) q->sync();
      return a && b;
    };
    auto read2 = [&](std::uint64_t lba) {
      data_pointer dp;
      dp.dptr[0] = q->addr().value();
      dp.dptr[1] = q->addr().value() + page;  // two pages: PRP2 is the second page itself
      return s.nvme_ok(s.ctrl().rw(io_read, lba, 2 * page / block, dp));
    };
    constexpr std::uint64_t lba1 = 400, lba2 = 500;
    std::vector<vchunk> c1{{mem.at(24), page}, {mem.at(26), page}};
    std::vector<vchunk> c2{{mem.at(25), page}, {mem.at(27), page}};
    std::uint64_t bad = 0;
    const bool io1 = q && link2(24, 26) && read2(lba1) && matches(c1, lba1, disk_word, &bad);
    const bool unlinked = io1 && q->try_unlink(0, 2 * page).has_value();
    const bool io2 = unlinked && link2(25, 27) && read2(lba2) && matches(c2, lba2, disk_word, &bad);
    verdict(io1 && unlinked && io2,
            "reservation: 16 pages of IOVA at 0x%" PRIx64 " reserved once; I/O 1 linked 2 pages "
            "(2 MAP_DMA), READ at LBA %" PRIu64 " matches, unlinked; I/O 2 linked 2 other pages "
            "at the same IOVA, READ at LBA %" PRIu64 " matches (%s)",
            q ? q->addr().value() : 0, lba1, lba2, q ? (io2 ? "ok" : why(s)) : phyr::to_string(q.error()));
    if (io2 && q->try_unlink(0, 2 * page)) {
      std::memset(mem.at(25), sentinel, page);
      // The guest kernel prints DMAR faults under one ratelimit (drivers/iommu/intel/dmar.c,
      // dmar_fault: burst 10 per 5 s, and each fault takes three of them: the status line, the
      // record, the loop's last look). The three blocked cases above used nine, so the record
      // of a fourth within 5 s would be suppressed: wait the window out.
      sleep(6);
      blocked_case(s, "after unlink from a reservation", q->addr().value(), mem.at(25), mem);
    } else {
      verdict(false, "blocked: after unlink from a reservation: could not unlink (%s)", why(s));
    }
    const std::uint64_t live = s.mapper().stats().live_mappings;
    if (q) q->reset();  // dma_iova_destroy: the IOVA goes back
    verdict(q && s.mapper().stats().live_mappings + 1 == live,
            "reservation released: live mappings %" PRIu64 " -> %" PRIu64, live,
            s.mapper().stats().live_mappings);
  }

  if (argc > 2) cmb_p2p(s, argv[1], argv[2]);

  const bool sd = s.shutdown();
  verdict(sd, "shutdown: CC.SHN normal, CSTS.SHST complete (%s)", sd ? "ok" : why(s));
  std::printf("VM-TEST SUMMARY %d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
