// os/linux/pagemap: raw pagemap words to lists (always runs, no privileges), the real page-frame
// traces, and pinned_buffer against this machine's kernel (checks whichever of "PFNs readable"
// or "PFNs hidden" holds here, and drops capabilities in a child to check the other paths).
#include <fcntl.h>
#include <linux/capability.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <optional>
#include <phyr/os/linux/pagemap.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace {
using phyr::errc;
using phyr::pagemap_present;
using phyr::pagemap_swapped;
using phyr::phys_range;
using phyr::range_flags;
using u64 = std::uint64_t;
constexpr u64 page = 4096;

constexpr u64 word(u64 pfn) { return pagemap_present | pfn; }

template <class L>
std::vector<phys_range> to_vec(const L& l) {
  std::vector<phys_range> v;
  for (const auto& r : l) v.push_back(r);
  return v;
}

phys_range pr(u64 addr, u64 len, range_flags f = range_flags::none) {
  return phys_range{phyr::phys_addr{addr}, len, f};
}

// The obvious per-page model: each page's bytes, merged with the previous entry when adjacent.
std::vector<phys_range> model(const std::vector<u64>& pfns, u64 off, u64 len, range_flags f) {
  std::vector<phys_range> v;
  for (std::size_t i = 0; i < pfns.size(); ++i) {
    const u64 lo = i == 0 ? off : 0;
    const u64 end = off + len - i * page;
    const u64 hi = end < page ? end : page;
    const u64 a = (pfns[i] << 12) + lo;
    if (!v.empty() && v.back().end().value() == a) {
      v.back() = pr(v.back().addr().value(), v.back().len() + (hi - lo), f);
    } else {
      v.push_back(pr(a, hi - lo, f));
    }
  }
  return v;
}

std::vector<u64> words_of(const std::vector<u64>& pfns) {
  std::vector<u64> w;
  for (u64 p : pfns) w.push_back(word(p));
  return w;
}

// ---- environment probes (POSIX directly, independent of the code under test) --------------------

std::optional<u64> vm_locked_kib() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmLck:", 0) == 0) {
      std::istringstream s(line.substr(6));
      u64 kib = 0;
      if (s >> kib) return kib;
    }
  }
  return std::nullopt;
}

// Pagemap words for [addr, addr + n pages), read with plain pread.
std::optional<std::vector<u64>> read_pagemap(const void* addr, std::size_t n) {
  const int fd = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::vector<u64> w(n);
  const auto off = static_cast<off_t>(reinterpret_cast<std::uintptr_t>(addr) / page * 8);
  const ssize_t got = ::pread(fd, w.data(), n * 8, off);
  ::close(fd);
  if (got != static_cast<ssize_t>(n * 8)) return std::nullopt;
  return w;
}

// Whether this process is shown PFNs: touch a page and look.
bool pfns_readable() {
  static const bool readable = [] {
    void* p = ::mmap(nullptr, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return false;
    *static_cast<volatile char*>(p) = 1;
    auto w = read_pagemap(p, 1);
    ::munmap(p, page);
    return w && ((*w)[0] & pagemap_present) && ((*w)[0] & phyr::pagemap_pfn_mask) != 0;
  }();
  return readable;
}

// The pin tests' preconditions: each says why the calling test is skipped when it fails.
bool pfns_readable_or_skip() {
  if (pfns_readable()) return true;
  WARN("skipped: this process is not shown PFNs (try_pin reports permission_denied)");
  return false;
}
std::optional<u64> vm_locked_kib_or_skip() {
  auto kib = vm_locked_kib();
  if (!kib) WARN("skipped: VmLck not readable");
  return kib;
}

// The AnonHugePages of the mapping containing `addr`, in KiB, from /proc/self/smaps.
std::optional<u64> anon_huge_kib(const void* addr) {
  std::ifstream f("/proc/self/smaps");
  std::string line;
  const auto a = reinterpret_cast<std::uintptr_t>(addr);
  bool in = false;
  while (std::getline(f, line)) {
    unsigned long lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2 && line.find('-') < 17) {
      in = a >= lo && a < hi;
      continue;
    }
    if (in && line.rfind("AnonHugePages:", 0) == 0) {
      std::istringstream s(line.substr(14));
      u64 kib = 0;
      if (s >> kib) return kib;
    }
  }
  return std::nullopt;
}

// An anonymous mapping that unmaps itself.
struct mapping {
  void* base = MAP_FAILED;
  std::size_t len = 0;
  explicit mapping(std::size_t n, int extra_flags = 0) : len(n) {
    base = ::mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | extra_flags, -1,
                  0);
  }
  ~mapping() {
    if (base != MAP_FAILED) ::munmap(base, len);
  }
  mapping(const mapping&) = delete;
  mapping& operator=(const mapping&) = delete;
  bool ok() const { return base != MAP_FAILED; }
  char* p() const { return static_cast<char*>(base); }
};

// Runs `f` in a forked child and returns its exit code (f's return value), -1 if it died.
template <class F>
int in_child(F f) {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(f());
  int st = 0;
  if (pid < 0 || ::waitpid(pid, &st, 0) != pid) return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}
constexpr int child_skip = 99;  // the child could not set up (e.g. capset refused)
int code_of(errc e) { return 1 + static_cast<int>(e); }
constexpr int child_left_locks = 98;  // a failed pin changed VmLck

// A child's exit code for try_pin of a fresh 1 MiB mapping from byte `skip` on: 0 when it pins,
// the errc's code_of when it fails, child_left_locks when a failure changed VmLck.
int pin_fresh_mib(std::size_t skip) {
  mapping m(1 << 20);
  if (!m.ok()) return child_skip;
  auto before = vm_locked_kib();
  auto r = phyr::pinned_buffer<>::try_pin(m.p() + skip, (1 << 20) - skip);
  if (r) return 0;
  if (vm_locked_kib() != before) return child_left_locks;
  return code_of(r.error());
}

bool drop_effective_capability(unsigned cap) {
  __user_cap_header_struct h{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct d[2]{};
  if (::syscall(SYS_capget, &h, d) != 0) return false;
  d[cap / 32].effective &= ~(1u << (cap % 32));
  return ::syscall(SYS_capset, &h, d) == 0;
}

// The committed traces (tests/data/pagemap/README.md); nullopt only if the checkout is broken.
std::optional<std::vector<u64>> load_trace(const char* name) {
  std::ifstream f(std::string(PHYR_TEST_DATA_DIR) + "/pagemap/" + name, std::ios::binary);
  if (!f) return std::nullopt;
  std::vector<u64> v;
  u64 x = 0;
  while (f.read(reinterpret_cast<char*>(&x), sizeof x)) v.push_back(x);
  return v;
}

}  // namespace

// ---- raw words: always run ----------------------------------------------------------------------

TEST_CASE(
    "pagemap_entry_pfn: present words give their frame, and absent, swapped, hidden and "
    "malformed words are errors",
    "[pagemap]") {
  STATIC_REQUIRE(*phyr::pagemap_entry_pfn(word(0x1234)) == 0x1234);
  // Soft-dirty (55), exclusive (56), uffd-wp (57), guard (58) and file/shared (61) are ignored.
  STATIC_REQUIRE(*phyr::pagemap_entry_pfn(word(7) | (0x7full << 55)) == 7);
  STATIC_REQUIRE(*phyr::pagemap_entry_pfn(word((1ull << 52) - 1)) == (1ull << 52) - 1);
  STATIC_REQUIRE(phyr::pagemap_entry_pfn(0).error() == errc::not_mapped);
  STATIC_REQUIRE(phyr::pagemap_entry_pfn(0x1234).error() == errc::not_mapped);
  STATIC_REQUIRE(phyr::pagemap_entry_pfn(pagemap_swapped | 0x1234).error() == errc::not_mapped);
  STATIC_REQUIRE(phyr::pagemap_entry_pfn(pagemap_present).error() == errc::permission_denied);
  STATIC_REQUIRE(phyr::pagemap_entry_pfn(pagemap_present | (1ull << 56)).error() ==
                 errc::permission_denied);
  STATIC_REQUIRE(phyr::pagemap_entry_pfn(word(5) | pagemap_swapped).error() == errc::parse_error);
  STATIC_REQUIRE(phyr::pagemap_entry_pfn(word(1ull << 52)).error() == errc::parse_error);
}

TEST_CASE(
    "try_list_from_pagemap_entries: consecutive frames coalesce and each discontinuity "
    "starts a new entry",
    "[pagemap]") {
  const std::vector<u64> w = {word(10), word(11), word(12), word(40), word(41), word(9)};
  auto l = phyr::must(phyr::try_list_from_pagemap_entries(w, 0, 6 * page));
  CHECK(to_vec(l) == std::vector<phys_range>{pr(10 * page, 3 * page), pr(40 * page, 2 * page),
                                             pr(9 * page, page)});
  CHECK(l.total_bytes() == 6 * page);
  CHECK(l.lowest().value() == 9 * page);
  CHECK(l.highest().value() == 42 * page - 1);

  // The flags argument lands on every entry; the default is none (raw words say nothing about
  // pinning).
  auto f = phyr::must(phyr::try_list_from_pagemap_entries(
      w, 0, 6 * page, range_flags::pinned | range_flags::driver0));
  for (const phys_range& r : f) CHECK(r.flags() == (range_flags::pinned | range_flags::driver0));
}

TEST_CASE("try_list_from_pagemap_entries: first_offset and len trim the first and last pages",
          "[pagemap]") {
  SECTION("one page, interior bytes") {
    const std::vector<u64> w = {word(100)};
    auto l = phyr::must(phyr::try_list_from_pagemap_entries(w, 0x123, 0x456));
    CHECK(to_vec(l) == std::vector<phys_range>{pr(100 * page + 0x123, 0x456)});
  }
  SECTION("contiguous pages: one entry from the offset to the last byte") {
    const std::vector<u64> w = {word(100), word(101), word(102)};
    auto l = phyr::must(phyr::try_list_from_pagemap_entries(w, 0x800, 2 * page + 1));
    CHECK(to_vec(l) == std::vector<phys_range>{pr(100 * page + 0x800, 2 * page + 1)});
  }
  SECTION("scattered pages: first entry starts at the offset, last ends at len") {
    const std::vector<u64> w = {word(7), word(3), word(5)};
    auto l = phyr::must(phyr::try_list_from_pagemap_entries(w, page - 1, 1 + page + 10));
    CHECK(to_vec(l) ==
          std::vector<phys_range>{pr(8 * page - 1, 1), pr(3 * page, page), pr(5 * page, 10)});
  }
}

TEST_CASE(
    "try_list_from_pagemap_entries: a present page with PFN 0 is permission_denied, never "
    "a range at address 0",
    "[pagemap]") {
  // What an unprivileged reader sees since Linux 4.2: present bit set, PFN field zeroed.
  std::vector<u64> hidden(3, pagemap_present | (1ull << 56));
  CHECK(phyr::try_list_from_pagemap_entries(hidden, 0, 3 * page).error() ==
        errc::permission_denied);
  // It wins over absent pages (touching them would not help) and over malformed words, and is
  // found in any batch, not only the first.
  std::vector<u64> w(1500, word(1000));
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = word(1000 + i);
  w[3] = 0;
  w[4] = word(9) | pagemap_swapped;
  w[1400] = pagemap_present;
  CHECK(phyr::try_list_from_pagemap_entries(w, 0, 1500 * page).error() == errc::permission_denied);
}

TEST_CASE(
    "try_list_from_pagemap_entries: absent or swapped-out pages are not_mapped and no list "
    "is returned",
    "[pagemap]") {
  std::vector<u64> w(1200);
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = word(5000 + i);
  SECTION("absent in the first page") { w[0] = 0; }
  SECTION("absent in a later batch") { w[1100] = 0; }
  SECTION("swapped out (the PFN field holds a swap entry)") { w[600] = pagemap_swapped | 0x3e1; }
  SECTION("absent last page") { w[1199] = 0x1234; }
  phyr::fault_state fs;
  auto r = phyr::try_list_from_pagemap_entries(w, 0, 1200 * page, range_flags::none,
                                               phyr::fault_injecting_allocator{&fs});
  CHECK(r.error() == errc::not_mapped);
  CHECK(fs.calls == 0);  // classified before anything is built
}

TEST_CASE("try_list_from_pagemap_entries: malformed words are parse_error", "[pagemap]") {
  std::vector<u64> w = {word(1), word(2), word(3)};
  SECTION("present and swapped at once") { w[1] |= pagemap_swapped; }
  SECTION("a frame whose byte address passes 2^64") { w[2] = word(1ull << 52); }
  CHECK(phyr::try_list_from_pagemap_entries(w, 0, 3 * page).error() == errc::parse_error);
  // An absent page elsewhere does not hide the malformed word.
  w[0] = 0;
  CHECK(phyr::try_list_from_pagemap_entries(w, 0, 3 * page).error() == errc::parse_error);
}

TEST_CASE("try_list_from_pagemap_entries: the words must be exactly the pages the buffer touches",
          "[pagemap]") {
  const std::vector<u64> w = {word(1), word(2)};
  const std::span<const u64> s{w};
  CHECK(phyr::try_list_from_pagemap_entries(s, 0, 0).error() == errc::invalid_argument);
  CHECK(phyr::try_list_from_pagemap_entries(s, page, page).error() == errc::invalid_argument);
  CHECK(phyr::try_list_from_pagemap_entries(s, 0, page).error() == errc::invalid_argument);
  CHECK(phyr::try_list_from_pagemap_entries(s, 0, 2 * page + 1).error() == errc::invalid_argument);
  CHECK(phyr::try_list_from_pagemap_entries(s, 1, 2 * page).error() == errc::invalid_argument);
  CHECK(phyr::try_list_from_pagemap_entries(s.first(0), 0, 1).error() == errc::invalid_argument);
  CHECK(phyr::try_list_from_pagemap_entries(s, 5, ~0ull - 4).error() == errc::overflow);
  CHECK(phyr::try_list_from_pagemap_entries(s, page - 1, 1 + page).has_value());
  CHECK(phyr::try_list_from_pagemap_entries(s, page - 1, 2).has_value());
}

TEST_CASE(
    "try_list_from_pagemap_entries: huge-page runs give one entry per huge page or fewer, "
    "also across batch boundaries",
    "[pagemap]") {
  // Four 2 MiB pages (512 aligned frames each); the 2nd follows the 1st physically.
  const u64 starts[4] = {0x40000, 0x40200, 0x90000, 0x20000};
  std::vector<u64> pfns;
  for (u64 s : starts)
    for (u64 k = 0; k < 512; ++k) pfns.push_back(s + k);
  // An odd offset and a short last page, so no batch lines up with a huge page.
  const u64 off = 0x10, len = 4 * 512 * page - off - 0x20;
  auto l = phyr::must(phyr::try_list_from_pagemap_entries(words_of(pfns), off, len));
  CHECK(to_vec(l) == std::vector<phys_range>{pr((0x40000 << 12) + off, 2 * 512 * page - off),
                                             pr(0x90000ull << 12, 512 * page),
                                             pr(0x20000ull << 12, 512 * page - 0x20)});
  // A 1 GiB page's worth of frames, resolved by pagemap as 262144 consecutive words.
  std::vector<u64> gib(262144);
  for (std::size_t i = 0; i < gib.size(); ++i) gib[i] = word(0x100000 + i);
  auto g = phyr::must(phyr::try_list_from_pagemap_entries(gib, 0, gib.size() * page));
  REQUIRE(g.size() == 1);
  CHECK(g.front() == pr(0x100000ull << 12, 1ull << 30));
}

TEST_CASE("try_list_from_pagemap_entries: random layouts match a per-page model (seeded)",
          "[pagemap][property]") {
  std::mt19937_64 rng(0x9a6e3a9);
  for (int iter = 0; iter < 200; ++iter) {
    const std::size_t n = 1 + rng() % 2100;
    std::vector<u64> pfns;
    u64 next = 1 + rng() % 1000000;
    while (pfns.size() < n) {
      // Runs from 1 page to more than a batch; some continue the previous run physically.
      const u64 run = 1 + (rng() % 4 == 0 ? rng() % 1100 : rng() % 8);
      if (rng() % 3 != 0) next = 1 + rng() % (1ull << 40);
      for (u64 k = 0; k < run && pfns.size() < n; ++k) pfns.push_back(next++);
    }
    const u64 off = rng() % 2 ? rng() % page : 0;
    const u64 span = n * page - off;
    const u64 len = span - (n > 1 || span > 1 ? rng() % (span < page ? span : page) : 0);
    const range_flags f = rng() % 2 ? range_flags::pinned : range_flags::driver1;
    INFO("iter " << iter << " n " << n << " off " << off << " len " << len);
    auto l = phyr::must(phyr::try_list_from_pagemap_entries(words_of(pfns), off, len, f));
    const auto m = model(pfns, off, len, f);
    REQUIRE(to_vec(l) == m);
    REQUIRE(l.size() == m.size());
    REQUIRE(l.total_bytes() == len);
  }
}

TEST_CASE(
    "try_append_pagemap_entries: coalesces with the tail, keeps the list's limits, and "
    "leaves the list unchanged on error",
    "[pagemap]") {
  phyr::range_list<phys_range> l;
  phyr::must(l.try_append(pr(0x7000, 0x1000, range_flags::pinned)));
  const std::vector<u64> w = {word(8), word(9), word(20)};
  phyr::must(phyr::try_append_pagemap_entries(l, w, 0, 3 * page, range_flags::pinned));
  CHECK(to_vec(l) == std::vector<phys_range>{pr(0x7000, 3 * page, range_flags::pinned),
                                             pr(20 * page, page, range_flags::pinned)});

  const auto before = to_vec(l);
  const std::vector<u64> bad = {word(21), 0};
  CHECK(phyr::try_append_pagemap_entries(l, bad, 0, 2 * page, range_flags::pinned).error() ==
        errc::not_mapped);
  CHECK(to_vec(l) == before);

  phyr::range_list<phys_range> lim;
  phyr::must(lim.try_set_max_segment(2 * page));
  std::vector<u64> run(5);
  for (std::size_t i = 0; i < run.size(); ++i) run[i] = word(100 + i);
  phyr::must(phyr::try_append_pagemap_entries(lim, run, 0, 5 * page));
  CHECK(to_vec(lim) == std::vector<phys_range>{pr(100 * page, 2 * page), pr(102 * page, 2 * page),
                                               pr(104 * page, page)});
}

TEST_CASE(
    "try_list_from_pagemap_entries and try_append_pagemap_entries: every allocation "
    "failure is out_of_memory and leaks nothing",
    "[pagemap][alloc]") {
  // ~3000 pages in short runs: a dozen segments.
  std::vector<u64> pfns;
  for (u64 i = 0; i < 3000; ++i) pfns.push_back(i % 3 == 0 ? 10 * i + 1000 : pfns.back() + 1);
  const auto w = words_of(pfns);
  const u64 off = 0x300, len = 3000 * page - off - 7;
  const auto expect = model(pfns, off, len, range_flags::pinned);

  bool done = false;
  for (u64 k = 1; !done && k < 1000; ++k) {
    phyr::fault_state fs{.fail_at = k};
    auto r = phyr::try_list_from_pagemap_entries(w, off, len, range_flags::pinned,
                                                 phyr::fault_injecting_allocator{&fs});
    if (r) {
      done = true;
      CHECK(to_vec(*r) == expect);
    } else {
      REQUIRE(r.error() == errc::out_of_memory);
      REQUIRE(fs.live == 0);
    }
  }
  CHECK(done);

  done = false;
  for (u64 k = 1; !done && k < 1000; ++k) {
    phyr::fault_state fs;  // the list is filled first without failures
    {
      phyr::range_list<phys_range, phyr::fault_injecting_allocator> l{
          phyr::fault_injecting_allocator{&fs}};
      for (u64 i = 0; i < 300; ++i) phyr::must(l.try_append(pr((2 * i + 1) << 20, page)));
      const auto before = to_vec(l);
      const std::int64_t live_before = fs.live;
      fs.fail_at = fs.calls + k;
      auto r = phyr::try_append_pagemap_entries(l, w, off, len, range_flags::pinned);
      if (r) {
        done = true;
        CHECK(l.size() == 300 + expect.size());
      } else {
        REQUIRE(r.error() == errc::out_of_memory);
        REQUIRE(to_vec(l) == before);
        REQUIRE(fs.live == live_before);
      }
    }
    REQUIRE(fs.live == 0);
  }
  CHECK(done);
}

// ---- real traces --------------------------------------------------------------------------------

TEST_CASE("real pagemap traces: the 256 MiB 4 KiB and THP buffers give 1556 and 49 entries",
          "[pagemap][trace]") {
  struct trace {
    const char* name;
    std::size_t entries;
  };
  for (const trace t :
       {trace{"pagemap-256MiB-4k.u64", 1556}, trace{"pagemap-256MiB-thp.u64", 49}}) {
    INFO(t.name);
    const auto pfns = load_trace(t.name);
    REQUIRE(pfns);
    REQUIRE(pfns->size() == 65536);
    const u64 len = 256ull << 20;
    // As a pfn array, the container's own page path.
    phyr::range_list<phys_range> a;
    phyr::must(a.try_append_pages(*pfns, 0, len, range_flags::pinned));
    CHECK(a.size() == t.entries);
    CHECK(a.total_bytes() == len);
    // As pagemap words, this header's path: the same list.
    auto b = phyr::must(
        phyr::try_list_from_pagemap_entries(words_of(*pfns), 0, len, range_flags::pinned));
    CHECK(b.size() == t.entries);
    CHECK(to_vec(b) == to_vec(a));
    CHECK(to_vec(b) == model(*pfns, 0, len, range_flags::pinned));
  }
}

// ---- pinned_buffer on this machine --------------------------------------------------------------

TEST_CASE("pinned_buffer::try_pin: bad arguments are reported before anything is locked",
          "[pagemap][pin]") {
  const auto before = vm_locked_kib();
  char buf[64];
  CHECK(phyr::pinned_buffer<>::try_pin(buf, 0).error() == errc::invalid_argument);
  CHECK(phyr::pinned_buffer<>::try_pin(nullptr, 64).error() == errc::invalid_argument);
  CHECK(phyr::pinned_buffer<>::try_pin(buf, ~std::size_t{0}).error() == errc::overflow);
  CHECK(phyr::pinned_buffer<>::try_pin(reinterpret_cast<void*>(~std::uintptr_t{0} - 100), 50)
            .error() == errc::overflow);
  CHECK(vm_locked_kib() == before);
}

TEST_CASE("pinned_buffer::try_pin: a hole in the range is not_mapped and nothing stays locked",
          "[pagemap][pin]") {
  mapping m(3 * page);
  REQUIRE(m.ok());
  REQUIRE(::munmap(m.p() + page, page) == 0);
  const auto before = vm_locked_kib();
  if (!before) WARN("VmLck not readable: lock accounting unchecked");
  // mlock locks the first page, then meets the hole; try_pin must undo the prefix. A process
  // that cannot see PFNs is told so first (and locks nothing).
  if (!pfns_readable()) WARN("this process is not shown PFNs: expecting permission_denied");
  CHECK(phyr::pinned_buffer<>::try_pin(m.p(), 3 * page).error() ==
        (pfns_readable() ? errc::not_mapped : errc::permission_denied));
  CHECK(vm_locked_kib() == before);
  ::munmap(m.p(), page);
  ::munmap(m.p() + 2 * page, page);
  m.base = MAP_FAILED;
}

TEST_CASE(
    "pinned_buffer::try_pin: resolves a 4 MiB buffer to pinned ranges matching pagemap, or "
    "reports permission_denied when PFNs are hidden",
    "[pagemap][pin]") {
  mapping m(4 << 20);
  REQUIRE(m.ok());
  const auto before = vm_locked_kib();
  // An unaligned start and end: the list covers exactly the buffer's bytes.
  char* const buf = m.p() + 0x123;
  const std::size_t len = (4 << 20) - 0x123 - 0x45;
  auto pb = phyr::pinned_buffer<>::try_pin(buf, len);
  if (!pfns_readable()) {
    WARN("this process is not shown PFNs: checking the permission_denied path only");
    REQUIRE(!pb);
    CHECK(pb.error() == errc::permission_denied);
    CHECK(vm_locked_kib() == before);
    return;
  }
  REQUIRE(pb.has_value());
  CHECK(pb->pinned());
  CHECK(pb->data() == buf);
  CHECK(pb->size() == len);
  CHECK(pb->locked_bytes() == std::size_t{4} << 20);
  if (before) CHECK(*vm_locked_kib() == *before + 4096);

  const auto& l = pb->ranges();
  CHECK(l.total_bytes() == len);
  CHECK(l.size() <= 1024);
  for (const phys_range& r : l) CHECK(r.flags() == range_flags::pinned);
  // An independent reading of pagemap (pages are locked, so it is stable) gives the same list.
  const auto w = read_pagemap(m.p(), 1024);
  REQUIRE(w);
  std::vector<u64> pfns;
  for (u64 x : *w) pfns.push_back(x & phyr::pagemap_pfn_mask);
  CHECK(to_vec(l) == model(pfns, 0x123, len, range_flags::pinned));
  WARN("4 MiB plain anonymous buffer: " << l.size() << " entries, "
                                        << static_cast<double>(l.bytes_used()) / 1024.0
                                        << " bytes of list per 4 KiB page (1024 pages)");

  pb->unpin();
  CHECK(!pb->pinned());
  CHECK(pb->ranges().empty());
  if (before) CHECK(vm_locked_kib() == before);
  pb->unpin();  // idempotent
  if (before) CHECK(vm_locked_kib() == before);
}

TEST_CASE(
    "pinned_buffer: RAII unlocks the whole range on destruction and move-assignment, and a "
    "moved-from buffer unlocks nothing",
    "[pagemap][pin]") {
  if (!pfns_readable_or_skip()) return;
  const auto base = vm_locked_kib_or_skip();
  if (!base) return;
  mapping a(64 * page), b(32 * page);
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  {
    auto pa = phyr::must(phyr::pinned_buffer<>::try_pin(a.p(), 64 * page));
    CHECK(*vm_locked_kib() == *base + 256);
    auto moved = std::move(pa);
    CHECK(!pa.pinned());  // NOLINT(bugprone-use-after-move): the moved-from state is specified
    CHECK(pa.ranges().empty());
    CHECK(moved.pinned());
    CHECK(moved.ranges().total_bytes() == 64 * page);
    CHECK(*vm_locked_kib() == *base + 256);
    auto pb = phyr::must(phyr::pinned_buffer<>::try_pin(b.p(), 32 * page));
    CHECK(*vm_locked_kib() == *base + 384);
    moved = std::move(pb);  // a is unlocked, b stays locked
    CHECK(*vm_locked_kib() == *base + 128);
    CHECK(moved.data() == b.p());
  }
  CHECK(vm_locked_kib() == base);
}

TEST_CASE(
    "pinned_buffer::try_pin: transparent huge pages coalesce to one entry per huge page or "
    "fewer",
    "[pagemap][pin][hugepage]") {
  if (!pfns_readable_or_skip()) return;
  constexpr std::size_t huge = 2 << 20;
  mapping m(3 * huge);
  REQUIRE(m.ok());
  char* const a = reinterpret_cast<char*>((reinterpret_cast<std::uintptr_t>(m.p()) + huge - 1) &
                                          ~std::uintptr_t{huge - 1});
  if (::madvise(a, 2 * huge, MADV_HUGEPAGE) != 0) {
    WARN("skipped: madvise(MADV_HUGEPAGE) failed (no THP in this kernel)");
    return;
  }
  auto pb = phyr::must(phyr::pinned_buffer<>::try_pin(a, 2 * huge));
  CHECK(pb.ranges().total_bytes() == 2 * huge);
  const auto thp = anon_huge_kib(a);
  if (!thp || *thp < 2 * huge / 1024) {
    WARN("THP not granted for this buffer (AnonHugePages " << (thp ? *thp : 0)
                                                           << " KiB): coalescing unchecked");
    return;
  }
  CHECK(pb.ranges().size() <= 2);
  for (const phys_range& r : pb.ranges()) {
    CHECK(r.addr().is_aligned(huge));
    CHECK(r.len() % huge == 0);
  }
}

TEST_CASE(
    "pinned_buffer::try_pin: hugetlbfs pages (MAP_HUGETLB) coalesce to one entry per huge "
    "page or fewer",
    "[pagemap][pin][hugepage]") {
  if (!pfns_readable_or_skip()) return;
  constexpr std::size_t huge = 2 << 20;
  mapping m(2 * huge, MAP_HUGETLB);
  if (!m.ok()) {
    WARN("skipped: no 2 MiB hugetlbfs pages reserved (vm.nr_hugepages)");
    return;
  }
  auto pb = phyr::must(phyr::pinned_buffer<>::try_pin(m.p(), 2 * huge));
  CHECK(pb.ranges().total_bytes() == 2 * huge);
  CHECK(pb.ranges().size() <= 2);
}

TEST_CASE(
    "pinned_buffer::try_pin: every allocation failure is out_of_memory, leaks nothing and "
    "leaves nothing locked",
    "[pagemap][pin][alloc]") {
  if (!pfns_readable_or_skip()) return;
  const auto base = vm_locked_kib();
  // 8 MiB of small pages: fragmented enough to need heap segments on most machines.
  mapping m(8 << 20);
  REQUIRE(m.ok());
  (void)::madvise(m.p(), 8 << 20, MADV_NOHUGEPAGE);
  bool done = false;
  u64 failures = 0;
  for (u64 k = 1; !done && k < 1000; ++k) {
    phyr::fault_state fs{.fail_at = k};
    {
      auto r = phyr::pinned_buffer<phyr::fault_injecting_allocator>::try_pin(
          m.p() + 8, (8 << 20) - 8, {}, phyr::fault_injecting_allocator{&fs});
      if (r) {
        done = true;
        CHECK(r->ranges().total_bytes() == (8u << 20) - 8);
      } else {
        ++failures;
        REQUIRE(r.error() == errc::out_of_memory);
        REQUIRE(fs.live == 0);
        if (base) REQUIRE(vm_locked_kib() == base);
      }
    }
    REQUIRE(fs.live == 0);
    if (base) REQUIRE(vm_locked_kib() == base);
  }
  CHECK(done);
  if (failures == 0) WARN("the list fit inline: no allocation to fail on this machine");
}

TEST_CASE("pinned_buffer::try_pin: options add flags and limits to the list", "[pagemap][pin]") {
  if (!pfns_readable_or_skip()) return;
  mapping m(64 * page);
  REQUIRE(m.ok());
  phyr::pin_options o;
  o.flags = range_flags::driver2;
  o.max_segment = page;
  auto pb = phyr::must(phyr::pinned_buffer<>::try_pin(m.p(), 64 * page, o));
  CHECK(pb.ranges().size() == 64);
  for (const phys_range& r : pb.ranges()) {
    CHECK(r.flags() == (range_flags::pinned | range_flags::driver2));
    CHECK(r.len() == page);
  }
  CHECK(pb.ranges().max_segment() == page);
}

// ---- the other privilege levels, in children with capabilities dropped --------------------------

TEST_CASE(
    "pinned_buffer::try_pin: without CAP_SYS_ADMIN it is permission_denied (never zeros), "
    "even over RLIMIT_MEMLOCK, and nothing stays locked",
    "[pagemap][pin][privilege]") {
  for (const bool tight_rlimit : {false, true}) {
    const int code = in_child([tight_rlimit] {
      if (!drop_effective_capability(CAP_SYS_ADMIN)) return child_skip;
      if (tight_rlimit) {
        const rlimit rl{64 << 10, 64 << 10};
        if (!drop_effective_capability(CAP_IPC_LOCK) || ::setrlimit(RLIMIT_MEMLOCK, &rl) != 0)
          return child_skip;
      }
      return pin_fresh_mib(100);
    });
    if (code == child_skip) {
      WARN("skipped: cannot drop CAP_SYS_ADMIN (or set RLIMIT_MEMLOCK) here");
      return;
    }
    INFO("RLIMIT_MEMLOCK 64 KiB: " << tight_rlimit);
    CHECK(code == code_of(errc::permission_denied));
  }
}

TEST_CASE(
    "pinned_buffer::try_pin: over RLIMIT_MEMLOCK it is exhausted, with no mlock budget at "
    "all permission_denied",
    "[pagemap][pin][privilege]") {
  for (const rlim_t limit : {rlim_t{64} << 10, rlim_t{0}}) {
    const int code = in_child([limit] {
      if (!drop_effective_capability(CAP_IPC_LOCK)) return child_skip;
      const rlimit rl{limit, limit};
      if (::setrlimit(RLIMIT_MEMLOCK, &rl) != 0) return child_skip;
      return pin_fresh_mib(0);
    });
    if (code == child_skip) {
      WARN("skipped: cannot drop CAP_IPC_LOCK or set RLIMIT_MEMLOCK here");
      return;
    }
    INFO("RLIMIT_MEMLOCK " << limit);
    // Hidden PFNs are reported first, whatever the budget: the list could never be built.
    CHECK(code ==
          code_of(limit == 0 || !pfns_readable() ? errc::permission_denied : errc::exhausted));
  }
}

// ---- a failed pin leaves the process's locks as they were (issue 11, items 2 and 7) ----------------

TEST_CASE(
    "pinned_buffer::try_pin: a hole after a page the caller locked fails without unlocking "
    "the caller's page",
    "[pagemap][pin]") {
  mapping m(3 * page);
  REQUIRE(m.ok());
  REQUIRE(::munmap(m.p() + 2 * page, page) == 0);
  const auto base = vm_locked_kib_or_skip();
  if (!base) return;
  if (::mlock(m.p(), page) != 0) {
    WARN("skipped: this process cannot mlock a page");
    return;
  }
  if (vm_locked_kib() != *base + 4) {
    // AddressSanitizer's runtime intercepts mlock and ignores it, so VmLck cannot show locks.
    WARN("skipped: mlock does not show in VmLck here (sanitizer runtime?)");
    return;
  }
  auto r = phyr::pinned_buffer<>::try_pin(m.p(), 3 * page);
  CHECK(r.error() == (pfns_readable() ? errc::not_mapped : errc::permission_denied));
  CHECK(vm_locked_kib() == *base + 4);  // the caller's lock survives the failed pin
  ::munlock(m.p(), page);
  ::munmap(m.p(), 2 * page);
  m.base = MAP_FAILED;
}

TEST_CASE(
    "pinned_buffer::try_pin: a failure after mlock unlocks only what it locked, not the "
    "pages another live pinned_buffer or the caller locked",
    "[pagemap][pin][alloc]") {
  if (!pfns_readable_or_skip()) return;
  const auto base = vm_locked_kib_or_skip();
  if (!base) return;
  // 256 pages: the caller locks page 3, a live pinned_buffer holds pages 8..9, then a pin over
  // all of them fails at each of its first allocations (one entry per page cannot fit inline).
  constexpr std::size_t n = 256;
  mapping m(n * page);
  REQUIRE(m.ok());
  (void)::madvise(m.p(), n * page, MADV_NOHUGEPAGE);
  if (::mlock(m.p() + 3 * page, page) != 0) {
    WARN("skipped: this process cannot mlock a page");
    return;
  }
  if (vm_locked_kib() != *base + 4) {
    // AddressSanitizer's runtime intercepts mlock and ignores it, so VmLck cannot show locks.
    (void)::munlock(m.p() + 3 * page, page);
    WARN("skipped: mlock does not show in VmLck here (sanitizer runtime?)");
    return;
  }
  auto held = phyr::must(phyr::pinned_buffer<>::try_pin(m.p() + 8 * page, 2 * page));
  REQUIRE(vm_locked_kib() == *base + 12);
  phyr::pin_options o;
  o.max_segment = page;  // one entry per page
  u64 failures = 0;
  for (u64 k = 1; k < 64; ++k) {
    phyr::fault_state fs{.fail_at = k};
    auto r = phyr::pinned_buffer<phyr::fault_injecting_allocator>::try_pin(
        m.p(), n * page, o, phyr::fault_injecting_allocator{&fs});
    // Success unlocks all 256 pages when it ends (locks do not nest): checked elsewhere.
    if (r) break;
    ++failures;
    INFO("allocation " << k << " fails");
    CHECK(r.error() == errc::out_of_memory);
    CHECK(fs.live == 0);
    CHECK(vm_locked_kib() == *base + 12);
    if (k == 1) {
      held.unpin();
      CHECK(vm_locked_kib() == *base + 4);
      held = phyr::must(phyr::pinned_buffer<>::try_pin(m.p() + 8 * page, 2 * page));
    }
  }
  CHECK(failures >= 1);
  held.unpin();
  ::munlock(m.p() + 3 * page, page);
  CHECK(vm_locked_kib() == *base);
}

TEST_CASE(
    "pinned_buffer::try_pin: a PROT_NONE page cannot be accessed: permission_denied, not "
    "exhausted, and nothing is locked",
    "[pagemap][pin]") {
  mapping m(4 * page);
  REQUIRE(m.ok());
  REQUIRE(::mprotect(m.p() + page, page, PROT_NONE) == 0);
  const auto base = vm_locked_kib();
  auto r = phyr::pinned_buffer<>::try_pin(m.p(), 4 * page);
  REQUIRE(!r);
  CHECK(r.error() == errc::permission_denied);
  if (base) CHECK(vm_locked_kib() == base);
  // The accessible pages alone still pin (when PFNs are shown).
  if (pfns_readable()) {
    auto ok = phyr::pinned_buffer<>::try_pin(m.p() + 2 * page, 2 * page);
    CHECK(ok.has_value());
  }
}
