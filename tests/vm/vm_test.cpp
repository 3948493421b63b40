// The program tests/vm/run.sh boots in the VM: the example's driver against QEMU's emulated NVMe
// controller behind an emulated Intel IOMMU, with every check printed as a `VM-TEST PASS|FAIL`
// line on the serial console. The disk image holds a known pattern (tests/vm/disk.py: keep the
// pattern functions and the written LBAs in step with it).
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
#include <string>
#include <vector>

#include "driver.hpp"

using namespace nvme_vfio;

namespace {

constexpr std::uint32_t block = 512;
constexpr std::uint64_t disk_blocks = 32768;
constexpr std::uint64_t prp_read_lba = 1000;
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
std::string fault_line(std::uint64_t iova) {
  char key[64];
  std::snprintf(key, sizeof key, "fault addr 0x%" PRIx64 " [", iova);
  const std::string log = kernel_log();
  const std::size_t at = log.find(key);
  if (at == std::string::npos) return {};
  const std::size_t b = log.rfind('\n', at);
  const std::size_t e = log.find('\n', at);
  std::string line = log.substr(b == std::string::npos ? 0 : b + 1,
                                e == std::string::npos ? std::string::npos : e - b - 1);
  const std::size_t d = line.find("DMAR:");
  return d == std::string::npos ? std::string{} : line.substr(d);
}
std::string wait_fault(std::uint64_t iova) {
  for (int i = 0; i < 40; ++i) {  // the fault interrupt is handled asynchronously
    std::string l = fault_line(iova);
    if (!l.empty()) return l;
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

void blocked_case(session& s, const char* what, std::uint64_t iova, const std::uint8_t* buf,
                  const pool& mem) {
  const bool before = !fault_line(iova).empty();
  // Snapshot the whole pool: a blocked DMA must change no byte anywhere.
  std::vector<std::uint8_t> snap(mem.base, mem.base + mem.pages * page);
  const int st = read_one_page(s, iova, 200);
  const std::string line = wait_fault(iova);
  const bool untouched = buf == nullptr ? true : all_sentinel(buf, page);
  const bool pool_same = std::memcmp(snap.data(), mem.base, snap.size()) == 0;
  verdict(!before && !line.empty() && untouched && pool_same,
          "blocked: %s iova 0x%" PRIx64 ": status 0x%x, buffer %s, fault %s: %s", what, iova, st,
          untouched && pool_same ? "untouched" : "CHANGED", line.empty() ? "NOT logged" : "logged",
          line.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::printf("usage: vm_test BDF\n");
    return 2;
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  session s;
  if (int e = s.open(argv[1])) {
    verdict(false, "open %s: %d (%s)", argv[1], e, e < 0 ? std::strerror(-e) : "NVMe status");
    std::printf("VM-TEST SUMMARY %d passed, %d failed\n", passed, failed);
    return 1;
  }
  const identity& id = s.id();
  verdict(id.block_size == block && id.ns_blocks == disk_blocks,
          "identify serial=%s model=%s namespace=%" PRIu64 "x%u sgls=0x%x mdts=%u", id.serial,
          id.model, id.ns_blocks, id.block_size, id.sgls, id.mdts);

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
    mapping m;
    data_pointer dp;
    int e = s.map(c, direction::from_device, m);
    if (e == 0) e = s.prp(m.dma, dp);
    if (e == 0) e = s.ctrl().rw(io_read, prp_read_lba, 64, dp);
    std::uint64_t bad = 0;
    const bool ok = e == 0 && matches(c, prp_read_lba, disk_word, &bad) &&
                    all_sentinel(mem.at(7), 0x200) && all_sentinel(mem.at(30) + 0x200, page - 0x200);
    verdict(ok,
            "prp read: 64 blocks at LBA %" PRIu64 " into %zu scattered pieces (%zu DMA ranges, PRP2 "
            "a list) match the disk pattern, bytes around them untouched (err %d, first bad byte %" PRIu64 ")",
            prp_read_lba, c.size(), m.dma.size(), e, bad);
    s.unmap(m);
  }

  // ---- WRITE through PRPs, FLUSH, read back into other scattered pages --------------------------
  {
    std::vector<vchunk> w, r{{mem.at(45) + 0x800, 0x800}};
    for (std::size_t p : {40, 33, 47, 36, 50, 31, 43, 38}) w.push_back({mem.at(p), page});
    for (std::size_t p : {60, 52, 57, 54, 62, 58, 53}) r.push_back({mem.at(p), page});
    r.push_back({mem.at(61), 0x800});
    fill(w, prp_write_lba, write_word);
    mapping mw, mr;
    data_pointer dw, dr;
    int e = s.map(w, direction::to_device, mw);
    if (e == 0) e = s.prp(mw.dma, dw);
    if (e == 0) e = s.ctrl().rw(io_write, prp_write_lba, 64, dw);
    if (e == 0) e = s.ctrl().flush();
    if (e == 0) e = s.map(r, direction::from_device, mr);
    if (e == 0) e = s.prp(mr.dma, dr);
    if (e == 0) e = s.ctrl().rw(io_read, prp_write_lba, 64, dr);
    std::uint64_t bad = 0;
    verdict(e == 0 && matches(r, prp_write_lba, write_word, &bad),
            "prp write+read-back: 64 blocks at LBA %" PRIu64 " written from %zu scattered pages, "
            "flushed, read back into %zu other pieces: identical (err %d)",
            prp_write_lba, w.size(), r.size(), e);
    s.unmap(mw);
    s.unmap(mr);
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
    mapping mw, mr;
    data_pointer dw, dr, probe;
    int e = s.map(w, direction::to_device, mw);
    const int prp_says = e == 0 ? s.prp(mw.dma, probe) : 0;
    if (e == 0) e = s.sgl(mw.dma, dw);
    if (e == 0) e = s.ctrl().rw(io_write, sgl_write_lba, 48, dw);
    if (e == 0) e = s.ctrl().flush();
    if (e == 0) e = s.map(r, direction::from_device, mr);
    if (e == 0) e = s.sgl(mr.dma, dr);
    if (e == 0) e = s.ctrl().rw(io_read, sgl_write_lba, 48, dr);
    std::uint64_t bad = 0;
    verdict(e == 0 && prp_says != 0 && matches(r, sgl_write_lba, write_word, &bad) &&
                all_sentinel(mem.at(84), 4) && all_sentinel(mem.at(90), 0x20),
            "sgl write+read-back: 48 blocks at LBA %" PRIu64 " from %zu unaligned pieces (PRP "
            "refuses them: %d), read back through %zu descriptors: identical (err %d)",
            sgl_write_lba, w.size(), prp_says, mr.dma.size(), e);
    s.unmap(mw);
    s.unmap(mr);
  }

  // ---- The IOMMU blocks what was not granted ----------------------------------------------------
  {
    blocked_case(s, "never-mapped", 0x40000000, nullptr, mem);

    std::uint8_t* v = mem.at(93);
    std::vector<vchunk> c{{v, page}};
    mapping m;
    int e = s.map(c, direction::from_device, m);
    const std::uint64_t iova = m.dma.empty() ? 0 : m.dma.front().addr().value();
    if (e == 0) e = read_one_page(s, iova, 300);  // mapped: the data arrives
    std::uint64_t bad = 0;
    const bool arrived = e == 0 && matches(c, 300, disk_word, &bad);
    s.unmap(m);
    std::memset(v, sentinel, page);
    if (!arrived) verdict(false, "blocked: after unmap: the mapped read before it failed (err %d)", e);
    blocked_case(s, "after unmap", iova, v, mem);

    std::uint8_t* ro = mem.at(94);
    std::vector<vchunk> c2{{ro, page}};
    mapping m2;
    e = s.map(c2, direction::to_device, m2);
    const std::uint64_t iova2 = m2.dma.empty() ? 0 : m2.dma.front().addr().value();
    if (e != 0) verdict(false, "blocked: to_device: map failed (err %d)", e);
    blocked_case(s, "device write into a to_device (read-only) mapping at", iova2, ro, mem);
    s.unmap(m2);
  }

  const int sd = s.shutdown();
  verdict(sd == 0, "shutdown: CC.SHN normal, CSTS.SHST complete (err %d)", sd);
  std::printf("VM-TEST SUMMARY %d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
