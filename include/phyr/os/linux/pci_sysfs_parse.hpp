/// The pure parsers of Linux PCI sysfs text and config space: no file system, so tests and
/// fuzzers feed them bytes directly. `pci_sysfs.hpp` reads the files and builds from these.
///
///   phyr::pci_bar bars[6];
///   phyr::pci_sysfs_error err;
///   if (auto r = phyr::detail::sysfs_parse_resource(text, n, "resource", bars, &err); !r)
///     report(err.line, err.message);                // parse_error, with the offending line
///   auto cfg = phyr::detail::sysfs_parse_config(bytes, len);   // port type, ACS (-1 unknown)
///
/// Hex fields are read with std::from_chars (no locale, no allocation); the one hand-written
/// digit reader left is pci_bdf::parse's, which must stay constexpr.
#pragma once

#include <charconv>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <phyr/config.hpp>
#include <phyr/core/error.hpp>

namespace phyr::inline v0 {

/// Why a sysfs read failed. Fixed buffers: filling it never allocates. Long paths keep their
/// tail (the part that names the device) and start with "...".
struct pci_sysfs_error {
  errc code{};
  int sys_errno = 0;    ///< errno of the failing call, 0 for parse errors
  unsigned line = 0;    ///< 1-based line in `path`, 0 when the error is not about a line
  char path[256] = {};  ///< the offending file or directory
  char message[160] = {};
};

/// One BAR as sysfs shows it (CPU physical addresses).
struct pci_bar {
  static constexpr std::uint64_t flag_io = 0x100;         // IORESOURCE_IO
  static constexpr std::uint64_t flag_mem = 0x200;        // IORESOURCE_MEM
  static constexpr std::uint64_t flag_prefetch = 0x2000;  // IORESOURCE_PREFETCH
  static constexpr std::uint64_t flag_mem_64 = 0x100000;  // IORESOURCE_MEM_64
  static constexpr std::uint64_t flag_disabled = 0x10000000;
  static constexpr std::uint64_t flag_unset = 0x20000000;

  std::uint64_t start = 0;
  std::uint64_t size = 0;  ///< 0 = unused
  std::uint64_t flags = 0;

  [[nodiscard]] constexpr bool used() const noexcept { return size != 0; }
  [[nodiscard]] constexpr bool is_memory() const noexcept { return (flags & flag_mem) != 0; }
  [[nodiscard]] constexpr bool is_prefetchable() const noexcept {
    return (flags & flag_prefetch) != 0;
  }
  [[nodiscard]] constexpr bool is_64bit() const noexcept { return (flags & flag_mem_64) != 0; }
  /// Assigned memory that can be a P2P provider window.
  [[nodiscard]] constexpr bool is_assigned_memory() const noexcept {
    return used() && is_memory() && (flags & (flag_disabled | flag_unset)) == 0;
  }
};

namespace detail {

inline void sysfs_set_error(pci_sysfs_error* e, errc code, int sys_errno, const char* path,
                            unsigned line, const char* fmt, ...) noexcept
    __attribute__((format(printf, 6, 7)));

inline void sysfs_set_error(pci_sysfs_error* e, errc code, int sys_errno, const char* path,
                            unsigned line, const char* fmt, ...) noexcept {
  if (e == nullptr) return;
  e->code = code;
  e->sys_errno = sys_errno;
  e->line = line;
  const std::size_t n = path == nullptr ? 0 : std::strlen(path);
  if (n < sizeof e->path) {
    if (n != 0) std::memcpy(e->path, path, n);
    e->path[n] = '\0';
  } else {
    // Keep the tail: it names the device and file.
    const std::size_t keep = sizeof e->path - 4;
    std::memcpy(e->path, "...", 3);
    std::memcpy(e->path + 3, path + (n - keep), keep);
    e->path[sizeof e->path - 1] = '\0';
  }
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(e->message, sizeof e->message, fmt, ap);
  va_end(ap);
}

/// Hex digits at [p, end) with std::from_chars: their value and how many there were; advances
/// p past them. False when there is no digit or the value passes 2^64 - 1.
[[nodiscard]] inline bool parse_hex_run(const char*& p, const char* end, std::uint64_t& out,
                                        std::size_t& digits) noexcept {
  const auto [q, ec] = std::from_chars(p, end, out, 16);
  if (ec != std::errc{}) return false;
  digits = static_cast<std::size_t>(q - p);
  p = q;
  return true;
}

/// Parses "0x" + 1..16 hex digits at s[i..]; advances i.
[[nodiscard]] inline bool sysfs_parse_hex(const char* s, std::size_t n, std::size_t& i,
                                          std::uint64_t& out) noexcept {
  if (i + 2 > n || s[i] != '0' || (s[i + 1] != 'x' && s[i + 1] != 'X')) return false;
  const char* p = s + i + 2;
  std::size_t digits = 0;
  // Leading zeros past 16 digits are refused too, as the kernel never writes them.
  if (!parse_hex_run(p, s + n, out, digits) || digits > 16) return false;
  i = static_cast<std::size_t>(p - s);
  return true;
}

/// The text of a file holding one hex number ("0x030000\n", trailing blanks and newlines
/// allowed), at most `max`. parse_error (with `*err` naming `path`) otherwise.
[[nodiscard]] inline result<std::uint64_t> sysfs_parse_hex_text(const char* buf, std::size_t n,
                                                                std::uint64_t max, const char* path,
                                                                pci_sysfs_error* err) noexcept {
  std::size_t i = 0;
  std::uint64_t v = 0;
  std::size_t end = n;
  while (end > 0 && (buf[end - 1] == '\n' || buf[end - 1] == ' ')) --end;
  if (!sysfs_parse_hex(buf, end, i, v) || i != end) {
    sysfs_set_error(err, errc::parse_error, 0, path, 1, "expected one hex number like 0x%llx",
                    static_cast<unsigned long long>(max));
    return errc::parse_error;
  }
  if (v > max) {
    sysfs_set_error(err, errc::parse_error, 0, path, 1, "value 0x%llx above 0x%llx",
                    static_cast<unsigned long long>(v), static_cast<unsigned long long>(max));
    return errc::parse_error;
  }
  return v;
}

/// Parses a `resource` file into the six BARs.
[[nodiscard]] inline result<void> sysfs_parse_resource(const char* text, std::size_t n,
                                                       const char* path, pci_bar (&bars)[6],
                                                       pci_sysfs_error* err) noexcept {
  if (n == 0) {
    sysfs_set_error(err, errc::parse_error, 0, path, 0, "empty resource file");
    return errc::parse_error;
  }
  std::size_t i = 0;
  unsigned line = 0;
  while (i < n) {
    ++line;
    std::uint64_t v[3];
    for (int k = 0; k < 3; ++k) {
      while (k > 0 && i < n && (text[i] == ' ' || text[i] == '\t')) ++i;
      if (!sysfs_parse_hex(text, n, i, v[k])) {
        sysfs_set_error(err, errc::parse_error, 0, path, line,
                        "expected \"0x<start> 0x<end> 0x<flags>\", field %d is not a hex number",
                        k + 1);
        return errc::parse_error;
      }
    }
    while (i < n && (text[i] == ' ' || text[i] == '\t')) ++i;
    if (i < n && text[i] != '\n') {
      sysfs_set_error(err, errc::parse_error, 0, path, line, "trailing characters after flags");
      return errc::parse_error;
    }
    if (i < n) ++i;  // the newline
    const std::uint64_t start = v[0], end = v[1], flags = v[2];
    pci_bar b;
    b.flags = flags;
    if (start == 0 && end == 0) {
      b.size = 0;  // unused
    } else if (start > end) {
      sysfs_set_error(err, errc::parse_error, 0, path, line, "start 0x%llx above end 0x%llx",
                      static_cast<unsigned long long>(start), static_cast<unsigned long long>(end));
      return errc::parse_error;
    } else if (start == 0 && end == ~std::uint64_t{0}) {
      sysfs_set_error(err, errc::parse_error, 0, path, line, "resource covers all of 2^64");
      return errc::parse_error;
    } else {
      b.start = start;
      b.size = end - start + 1;
    }
    if (line <= 6) bars[line - 1] = b;
  }
  return {};
}

/// From `config` bytes: PCIe port type (-1 unknown) and ACS redirect (-1 unknown).
struct sysfs_config_info {
  int port_type = -1;
  int acs_redirect = -1;
};

[[nodiscard]] inline std::uint32_t cfg_read(const unsigned char* c, std::size_t at,
                                            std::size_t width) noexcept {
  std::uint32_t v = 0;
  for (std::size_t k = 0; k < width; ++k) v |= std::uint32_t{c[at + k]} << (8 * k);
  return v;
}

[[nodiscard]] inline sysfs_config_info sysfs_parse_config(const unsigned char* c,
                                                          std::size_t n) noexcept {
  sysfs_config_info out;
  if (n < 64) return out;
  // Standard capability list (status bit 4), at most 48 entries (cycle guard).
  if ((cfg_read(c, 0x06, 2) & 0x10) != 0) {
    std::size_t pos = cfg_read(c, 0x34, 1) & 0xfc;
    for (int guard = 0; guard < 48 && pos >= 0x40 && pos + 4 <= n && pos < 256; ++guard) {
      if (cfg_read(c, pos, 1) == 0x10) {  // PCI Express
        out.port_type = static_cast<int>((cfg_read(c, pos + 2, 2) >> 4) & 0xf);
        break;
      }
      pos = cfg_read(c, pos + 1, 1) & 0xfc;
    }
  }
  // Extended capabilities from 0x100 (root only sees them).
  if (n >= 0x104) {
    std::size_t pos = 0x100;
    for (int guard = 0; guard < 512 && pos >= 0x100 && pos + 8 <= n; ++guard) {
      const std::uint32_t h = cfg_read(c, pos, 4);
      if (h == 0 || h == 0xffffffffu) break;
      if ((h & 0xffff) == 0x000d) {  // ACS
        const std::uint32_t ctrl = cfg_read(c, pos + 6, 2);
        // Request redirect, completion redirect, egress control (PCI_ACS_RR | CR | EC).
        out.acs_redirect = (ctrl & 0x2cu) != 0 ? 1 : 0;
        break;
      }
      const std::size_t next = (h >> 20) & 0xffc;
      if (next <= pos) break;
      pos = next;
    }
    if (out.acs_redirect < 0) out.acs_redirect = 0;  // full config, no ACS capability
  }
  return out;
}

[[nodiscard]] constexpr bool class_is_bridge(std::uint32_t class_code) noexcept {
  const std::uint32_t cls = class_code >> 8;  // base class + subclass
  return cls == 0x0604 || cls == 0x0609;      // PCI-to-PCI, semi-transparent PCI-to-PCI
}

/// "pciDDDD:BB" (4 to 8 hex digits of domain, exactly 2 of bus) -> host bridge.
[[nodiscard]] inline bool parse_host_component(const char* s, std::size_t n, std::uint32_t& dom,
                                               std::uint8_t& bus) noexcept {
  if (n < 3 || std::memcmp(s, "pci", 3) != 0) return false;
  const char* const end = s + n;
  std::uint64_t d = 0, b = 0;
  std::size_t digits = 0;
  const char* p = s + 3;
  if (!parse_hex_run(p, end, d, digits) || digits < 4 || digits > 8) return false;
  if (p == end || *p != ':') return false;
  ++p;
  if (!parse_hex_run(p, end, b, digits) || digits != 2 || p != end) return false;
  dom = static_cast<std::uint32_t>(d);
  bus = static_cast<std::uint8_t>(b);
  return true;
}

}  // namespace detail

}  // namespace phyr::inline v0
