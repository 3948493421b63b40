/// File I/O for the sysfs reader: bounded path building and whole-file reads into caller
/// buffers, with errno turned into `errc` and the error record filled.
///
///   phyr::detail::sysfs_path p;
///   if (!p.set(root, "/bus/pci/devices")) return errc::too_long;
///   char text[4096];
///   auto n = phyr::detail::sysfs_read_file(p.buf, text, sizeof text, &err, /*optional=*/false);
///   if (!n) return n.error();                       // not_found, permission_denied, io_error
///
/// Kept apart from the parsers (pci_sysfs_parse.hpp), which never touch a file, and from the
/// scan that walks the tree (pci_sysfs.hpp).
#pragma once

#include <fcntl.h>
#include <limits.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <phyr/config.hpp>
#include <phyr/core/error.hpp>
#include <phyr/os/linux/fd.hpp>
#include <phyr/os/linux/pci_sysfs_parse.hpp>

namespace phyr::inline v0::detail {

/// Path buffer with checked appends.
struct sysfs_path {
  char buf[PATH_MAX];
  std::size_t len = 0;
  [[nodiscard]] bool set(const char* a, const char* b = nullptr, const char* c = nullptr) noexcept {
    const int n =
        std::snprintf(buf, sizeof buf, "%s%s%s", a, b == nullptr ? "" : b, c == nullptr ? "" : c);
    if (n < 0 || static_cast<std::size_t>(n) >= sizeof buf) return false;
    len = static_cast<std::size_t>(n);
    return true;
  }
};

/// Reads a whole (small) file. Returns bytes read, or an errc (with the error record filled
/// unless the file is optional and merely absent or unreadable).
inline result<std::size_t> sysfs_read_file(const char* path, char* buf, std::size_t cap,
                                           pci_sysfs_error* err, bool optional_file) noexcept {
  auto fd = unique_fd::try_open(path, O_RDONLY);
  if (!fd) {
    const int e = errno;
    if (!optional_file)
      sysfs_set_error(err, fd.error(), e, path, 0, "cannot open: %s", std::strerror(e));
    return fd.error();
  }
  std::size_t got = 0;
  for (;;) {
    if (got == cap) {
      // One more byte tells "exactly full" from "too big".
      char extra;
      ssize_t m;
      do {
        m = ::read(fd->get(), &extra, 1);
      } while (m < 0 && errno == EINTR);
      if (m > 0) {
        sysfs_set_error(err, errc::parse_error, 0, path, 0, "file larger than %zu bytes", cap);
        return errc::parse_error;
      }
      break;
    }
    const ssize_t m = ::read(fd->get(), buf + got, cap - got);
    if (m < 0) {
      const int e = errno;
      if (e == EINTR) continue;
      if (!optional_file)
        sysfs_set_error(err, errc_from_errno(e), e, path, 0, "read failed: %s", std::strerror(e));
      return errc_from_errno(e);
    }
    if (m == 0) break;
    got += static_cast<std::size_t>(m);
  }
  return got;
}

/// A file holding one hex number ("0x030000\n"), at most `max`.
[[nodiscard]] inline result<std::uint64_t> sysfs_read_hex_file(const char* path, std::uint64_t max,
                                                               pci_sysfs_error* err,
                                                               bool optional_file) noexcept {
  char buf[64];
  auto n = sysfs_read_file(path, buf, sizeof buf, err, optional_file);
  if (!n) return n.error();
  return sysfs_parse_hex_text(buf, *n, max, path, err);
}

}  // namespace phyr::inline v0::detail
