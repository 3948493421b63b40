// libFuzzer target: a whole generated sysfs tree through load_pci_sysfs.
//
// Each input describes up to 12 PCI functions (address, class, parent, BARs as valid lines or
// raw bytes, optional vendor/device/config files); the target writes them as a sysfs tree
// (devices/pciDDDD:BB/<chain>/<bdf> directories, bus/pci/devices/<bdf> symlinks) under a
// private directory in /dev/shm (tmpfs, so a run costs no disk I/O), loads it, and removes it.
// Checked, against what the generator knows it wrote:
// - a failure leaves the topology and registry exactly as they were, and the error record
//   carries the returned code and a terminated message;
// - a success lists exactly the generated functions, each under the generated parent, and
//   registers exactly the assigned memory BARs of endpoints, each a window of its function;
// - a tree generated clean (valid files, parents that are bridges, disjoint BARs) loads.
#include <fuzzer/FuzzedDataProvider.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <phyr/os/linux/pci_sysfs.hpp>
#include <string>
#include <vector>

#include "fuzz_common.hpp"

namespace {

using u64 = std::uint64_t;

struct gen_bar {
  u64 start = 0, size = 0, flags = 0;
};
struct gen_dev {
  phyr::pci_bdf bdf;
  int parent = -1;  // index, or -1 on the host bridge's root bus
  std::uint32_t cls = 0;
  std::vector<gen_bar> bars;  // as written, when `raw` is empty
  std::string raw;            // raw resource text instead
  std::string dir;            // relative to root
};

std::vector<std::string> created;  // paths to remove, in creation order

void put_file(const std::string& path, const std::string& text) {
  FILE* f = std::fopen(path.c_str(), "w");
  FUZZ_CHECK(f != nullptr);
  if (!text.empty()) FUZZ_CHECK(std::fwrite(text.data(), 1, text.size(), f) == text.size());
  std::fclose(f);
  created.push_back(path);
}
void put_dir(const std::string& path) {
  if (::mkdir(path.c_str(), 0755) == 0) created.push_back(path);
}
void remove_all() {
  for (auto it = created.rbegin(); it != created.rend(); ++it) {
    if (::unlink(it->c_str()) != 0) ::rmdir(it->c_str());
  }
  created.clear();
}

std::string hex(u64 v, int width) {
  char b[32];
  std::snprintf(b, sizeof b, "0x%0*llx", width, static_cast<unsigned long long>(v));
  return b;
}
std::string name_of(phyr::pci_bdf b) {
  char buf[24];
  FUZZ_CHECK(b.format(buf, sizeof buf) != 0);
  return buf;
}

// PHYR_FUZZ_STATS=1 prints how many trees loaded, failed, and were generated clean.
struct stats {
  long loaded = 0, failed = 0, clean = 0;
  ~stats() {
    if (std::getenv("PHYR_FUZZ_STATS") != nullptr)
      std::fprintf(stderr, "sysfs_tree_fuzz: %ld loaded, %ld failed, %ld clean\n", loaded, failed,
                   clean);
  }
} counts;

bool is_bridge_class(std::uint32_t cls) { return (cls >> 8) == 0x0604 || (cls >> 8) == 0x0609; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string base = [] {
    std::string b = "/dev/shm/phyr_sysfs_fuzz." + std::to_string(::getpid());
    ::mkdir(b.c_str(), 0755);
    return b;
  }();
  FuzzedDataProvider in(data, size);
  const std::string root = base + "/t";
  put_dir(root);
  put_dir(root + "/bus");
  put_dir(root + "/bus/pci");
  put_dir(root + "/bus/pci/devices");
  put_dir(root + "/devices");
  const std::uint8_t root_bus = in.ConsumeBool() ? 0 : in.ConsumeIntegral<std::uint8_t>();
  const std::string host = "pci0000:" + hex(root_bus, 2).substr(2);
  put_dir(root + "/devices/" + host);

  std::vector<gen_dev> devs;
  bool clean = true;
  u64 next_bar = u64{1} << 32;  // clean BARs are handed out from here, disjoint
  const std::size_t n = in.ConsumeIntegralInRange<std::size_t>(0, 12);
  for (std::size_t i = 0; i < n && in.remaining_bytes() != 0; ++i) {
    gen_dev d;
    d.bdf = phyr::pci_bdf{0, in.ConsumeIntegral<std::uint8_t>(),
                          in.ConsumeIntegralInRange<std::uint8_t>(0, 31),
                          in.ConsumeIntegralInRange<std::uint8_t>(0, 7)};
    bool dup = false;
    for (const auto& o : devs) dup = dup || o.bdf == d.bdf;
    if (dup) continue;
    const int choice = in.ConsumeIntegralInRange<int>(0, 3);
    d.cls = choice == 0   ? 0x060400
            : choice == 1 ? 0x010802
            : choice == 2 ? 0x030000
                          : in.ConsumeIntegralInRange<std::uint32_t>(0, 0xffffff);
    if (!devs.empty() && in.ConsumeBool()) {
      d.parent = in.ConsumeIntegralInRange<int>(0, static_cast<int>(devs.size()) - 1);
      if (!is_bridge_class(devs[d.parent].cls)) clean = false;
    }
    d.dir = d.parent < 0 ? "devices/" + host : devs[d.parent].dir;
    d.dir += "/" + name_of(d.bdf);
    put_dir(root + "/" + d.dir);
    // BARs: clean ones (disjoint, assigned memory, sometimes prefetchable or unused) or raw.
    if (in.ConsumeIntegralInRange<int>(0, 7) == 0) {
      d.raw = in.ConsumeRandomLengthString(300);
      clean = false;
    } else {
      const std::size_t lines = in.ConsumeIntegralInRange<std::size_t>(1, 8);
      for (std::size_t k = 0; k < lines; ++k) {
        gen_bar b;
        switch (in.ConsumeIntegralInRange<int>(0, 3)) {
          case 0:
            break;   // unused
          case 1: {  // clean memory BAR
            b.size = u64{1} << in.ConsumeIntegralInRange<unsigned>(12, 30);
            next_bar = (next_bar + b.size - 1) & ~(b.size - 1);
            b.start = next_bar;
            next_bar += b.size;
            b.flags = 0x200 | (in.ConsumeBool() ? 0x2000 : 0) | 0x100000;
            break;
          }
          case 2: {  // I/O port range
            b.start = in.ConsumeIntegralInRange<u64>(0x1000, 0xf000);
            b.size = 0x100;
            b.flags = 0x100;
            break;
          }
          default: {  // anything (may overlap, be disabled, or be refused)
            b.start = in.ConsumeIntegral<u64>();
            b.size = in.ConsumeIntegral<u64>();
            b.flags = in.ConsumeIntegral<u64>();
            clean = false;
          }
        }
        d.bars.push_back(b);
      }
    }
    std::string text = d.raw;
    if (d.raw.empty()) {
      for (const gen_bar& b : d.bars) {
        const u64 end = b.size == 0 ? 0 : b.start + (b.size - 1);
        text += hex(b.start, 16) + " " + hex(end, 16) + " " + hex(b.flags, 16) + "\n";
      }
    }
    put_file(root + "/" + d.dir + "/resource", text);
    put_file(root + "/" + d.dir + "/class", hex(d.cls, 6) + "\n");
    if (in.ConsumeBool()) put_file(root + "/" + d.dir + "/vendor", hex(0x8086, 4) + "\n");
    const std::string link = root + "/bus/pci/devices/" + name_of(d.bdf);
    FUZZ_CHECK(::symlink((root + "/" + d.dir).c_str(), link.c_str()) == 0);
    created.push_back(link);
    devs.push_back(d);
  }

  phyr::pci_topology<> topo;
  phyr::p2p_registry<> reg;
  phyr::pci_sysfs_error err;
  const auto r = phyr::load_pci_sysfs(root.c_str(), topo, reg, {}, &err);
  ++(r ? counts.loaded : counts.failed);
  counts.clean += clean;
  if (!r) {
    FUZZ_CHECK(err.code == r.error());
    FUZZ_CHECK(std::memchr(err.message, '\0', sizeof err.message) != nullptr);
    FUZZ_CHECK(std::memchr(err.path, '\0', sizeof err.path) != nullptr);
    FUZZ_CHECK(topo.size() == 0 && reg.size() == 0);
    FUZZ_CHECK(!clean);
  } else {
    FUZZ_CHECK(topo.size() == devs.size());
    std::size_t want_windows = 0;
    for (const gen_dev& d : devs) {
      const auto idx = topo.find(d.bdf);
      FUZZ_CHECK(idx != phyr::pci_topology<>::npos);
      if (d.parent >= 0) FUZZ_CHECK(topo.find(devs[d.parent].bdf) != phyr::pci_topology<>::npos);
      const bool bridge = is_bridge(topo.device(idx).kind);
      if (d.raw.empty() && !bridge) {
        for (std::size_t k = 0; k < d.bars.size() && k < 6; ++k) {
          const gen_bar& b = d.bars[k];
          if (b.size != 0 && (b.flags & 0x200) && !(b.flags & 0x30000000)) ++want_windows;
        }
      }
    }
    auto rd = reg.reader();
    if (clean) FUZZ_CHECK(rd.size() == want_windows);
    for (const phyr::p2p_window& w : rd.windows()) {
      const auto owner = phyr::pci_bdf::from_provider_id(w.provider());
      bool found = false;
      for (const gen_dev& d : devs) {
        if (!(d.bdf == owner)) continue;
        found = true;
        if (!d.raw.empty()) break;
        bool inside = false;
        for (std::size_t k = 0; k < d.bars.size() && k < 6; ++k)
          inside = inside || (d.bars[k].start == w.range().addr().value() &&
                              d.bars[k].size == w.range().len());
        FUZZ_CHECK(inside);
      }
      FUZZ_CHECK(found);
    }
  }
  remove_all();
  return 0;
}
