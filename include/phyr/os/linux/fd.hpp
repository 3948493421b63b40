/// POSIX file-descriptor helpers for the Linux sources: an owning descriptor and full reads
/// that turn errno into `errc`.
///
///   auto fd = phyr::detail::unique_fd::try_open("/proc/self/pagemap", O_RDONLY);
///   if (!fd) return fd.error();                  // permission_denied, not_found, ...
///   std::uint64_t e;
///   if (auto r = phyr::detail::pread_full(fd->get(), &e, sizeof e, off); !r) return r.error();
///
/// Why not `<fstream>`: os/ headers stay exception- and iostream-free like the rest of phyr, and
/// procfs files need pread at exact offsets (pagemap) and a retry on EINTR and short reads.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <phyr/config.hpp>
#include <phyr/core/error.hpp>
#include <string_view>
#include <utility>

namespace phyr::inline v0::detail {

/// The errc for an errno from open/read on procfs or sysfs.
[[nodiscard]] constexpr errc errc_from_errno(int e) noexcept {
  switch (e) {
    case EACCES:
    case EPERM:
      return errc::permission_denied;
    case ENOENT:
    case ENOTDIR:
      return errc::not_found;
    case ENOMEM:
      return errc::out_of_memory;
    case EMFILE:
    case ENFILE:
      return errc::exhausted;
    case EINVAL:
      return errc::invalid_argument;
    default:
      return errc::io_error;
  }
}

/// An owned file descriptor, closed on destruction. Move-only.
class unique_fd {
 public:
  constexpr unique_fd() noexcept = default;
  constexpr explicit unique_fd(int fd) noexcept : fd_(fd) {}
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  unique_fd(unique_fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  unique_fd& operator=(unique_fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  ~unique_fd() { reset(); }

  /// open(2) with O_CLOEXEC added (a forked-and-exec'd child must not inherit procfs handles).
  [[nodiscard]] static result<unique_fd> try_open(const char* path, int flags) noexcept {
    int fd;
    do {
      fd = ::open(path, flags | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) return errc_from_errno(errno);
    return unique_fd{fd};
  }

  [[nodiscard]] int get() const noexcept { return fd_; }
  [[nodiscard]] bool valid() const noexcept { return fd_ >= 0; }
  void reset() noexcept {
    // close() is not retried on EINTR: Linux releases the descriptor either way, and a retry
    // could close one another thread just opened.
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

/// Calls `on_line(std::string_view) -> bool` for each line of the file `fd` reads from its
/// current position, without the newline, until it returns false or the file ends. A line
/// longer than `cap` bytes is cut to its first `cap` bytes (the rest is skipped): callers parse
/// only a known-short prefix of such lines.
template <class OnLine>
[[nodiscard]] result<void> for_each_line(int fd, char* buf, std::size_t cap,
                                         OnLine&& on_line) noexcept {
  std::size_t used = 0;
  bool skipping = false;  // inside the overlong tail of a line already delivered
  for (;;) {
    const ssize_t got = ::read(fd, buf + used, cap - used);
    if (got < 0) {
      if (errno == EINTR) continue;
      return errc_from_errno(errno);
    }
    const std::size_t end = used + static_cast<std::size_t>(got);
    std::size_t start = 0;
    for (std::size_t i = used; i < end; ++i) {
      if (buf[i] != '\n') continue;
      if (!skipping && !on_line(std::string_view{buf + start, i - start})) return {};
      skipping = false;
      start = i + 1;
    }
    if (got == 0) {
      if (start < end && !skipping) (void)on_line(std::string_view{buf + start, end - start});
      return {};
    }
    used = end - start;
    if (used == cap) {  // one line fills the buffer: deliver its prefix, skip the rest
      if (!skipping && !on_line(std::string_view{buf, cap})) return {};
      skipping = true;
      used = 0;
    } else if (start != 0) {
      for (std::size_t k = 0; k < used; ++k) buf[k] = buf[start + k];
    }
  }
}

/// Reads exactly `n` bytes at `offset`, retrying EINTR and short reads. End of file before `n`
/// bytes is io_error: callers ask only for bytes that must exist.
[[nodiscard]] inline result<void> pread_full(int fd, void* buf, std::size_t n,
                                             std::uint64_t offset) noexcept {
  auto* p = static_cast<unsigned char*>(buf);
  while (n != 0) {
    if (offset > static_cast<std::uint64_t>(INT64_MAX)) return errc::out_of_range;
    const ssize_t got = ::pread(fd, p, n, static_cast<off_t>(offset));
    if (got < 0) {
      if (errno == EINTR) continue;
      return errc_from_errno(errno);
    }
    if (got == 0) return errc::io_error;
    p += got;
    n -= static_cast<std::size_t>(got);
    offset += static_cast<std::uint64_t>(got);
  }
  return {};
}

}  // namespace phyr::inline v0::detail
