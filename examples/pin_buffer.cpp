// Pin a 4 MiB buffer and print the physical ranges behind it: once with plain 4 KiB pages and
// once asking for transparent huge pages. Unprivileged, the kernel hides frame numbers and
// phyr says so (permission_denied) instead of returning zeros; both outcomes exit 0.
//
//   $ ./pin_buffer
//   4 KiB pages: 4194304 bytes pinned in 911 entries (list: 16.0 bytes per 4 KiB page)
//     [0] 0x1d3a4000 + 0x1000 pinned
//   ...
#include <sys/mman.h>

#include <cstdint>
#include <cstdio>
#include <phyr/os/linux/pagemap.hpp>

namespace {

constexpr std::size_t buffer_bytes = 4 << 20;
constexpr std::size_t huge_bytes = 2 << 20;

// Explains the errors the environment (not a bug) can cause; returns false for the others.
bool explain(phyr::errc e) {
  switch (e) {
    case phyr::errc::permission_denied:
      std::printf(
          "  permission_denied: this process is not shown physical frame numbers\n"
          "  (/proc/self/pagemap needs CAP_SYS_ADMIN since Linux 4.2; unprivileged readers get\n"
          "  PFN 0) or may not lock memory at all. Run as root to see the ranges.\n");
      return true;
    case phyr::errc::exhausted:
      std::printf("  exhausted: the buffer exceeds RLIMIT_MEMLOCK (see `ulimit -l`).\n");
      return true;
    case phyr::errc::not_supported:
      std::printf("  not_supported: no /proc/self/pagemap or a base page size other than 4 KiB.\n");
      return true;
    default:
      std::printf("  unexpected error: %s\n", phyr::to_string(e));
      return false;
  }
}

bool pin_and_print(const char* what, void* buf, std::size_t len) {
  std::printf("%s:", what);
  auto pb = phyr::pinned_buffer<>::try_pin(buf, len);
  if (!pb) {
    std::printf("\n");
    return explain(pb.error());
  }
  const auto& l = pb->ranges();
  const std::size_t pages = len / 4096;
  std::printf(" %llu bytes pinned in %zu entries (list: %.1f bytes per 4 KiB page)\n",
              static_cast<unsigned long long>(l.total_bytes()), l.size(),
              static_cast<double>(l.bytes_used()) / static_cast<double>(pages));
  std::size_t i = 0;
  for (const phyr::phys_range& r : l) {
    if (i == 4) {
      std::printf("  ... %zu more\n", l.size() - 4);
      break;
    }
    std::printf("  [%zu] 0x%llx + 0x%llx%s\n", i++,
                static_cast<unsigned long long>(r.addr().value()),
                static_cast<unsigned long long>(r.len()),
                phyr::has_flags(r.flags(), phyr::range_flags::pinned) ? " pinned" : "");
  }
  return true;  // ~pinned_buffer munlocks here
}

}  // namespace

int main() {
  // Room to align the second buffer to a huge page.
  const std::size_t map_bytes = buffer_bytes + huge_bytes;
  void* m = ::mmap(nullptr, map_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) {
    std::printf("mmap failed\n");
    return 1;
  }
  char* const base = static_cast<char*>(m);
  (void)::madvise(base, map_bytes, MADV_NOHUGEPAGE);
  bool ok = pin_and_print("4 KiB pages", base, buffer_bytes);
  ::munmap(m, map_bytes);

  m = ::mmap(nullptr, map_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) {
    std::printf("mmap failed\n");
    return 1;
  }
  char* const huge = reinterpret_cast<char*>(
      (reinterpret_cast<std::uintptr_t>(m) + huge_bytes - 1) & ~std::uintptr_t{huge_bytes - 1});
  const bool thp = ::madvise(huge, buffer_bytes, MADV_HUGEPAGE) == 0;
  ok = pin_and_print(thp ? "transparent huge pages (if granted)" : "no THP support, 4 KiB pages",
                     huge, buffer_bytes) &&
       ok;
  ::munmap(m, map_bytes);
  return ok ? 0 : 1;
}
