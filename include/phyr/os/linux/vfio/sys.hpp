/// The system-call seam of the VFIO back end: every open/close/ioctl/mmap/munmap/pread/pwrite/
/// readlink the VFIO objects make goes through one `vfio::sys_ops` table.
///
///   auto c = phyr::vfio::container::try_open();              // the real calls (linux_sys())
///   auto t = phyr::vfio::container::try_open(fake.ops());    // a recorded fake (unit tests)
///
/// Why a table of function pointers and not a template policy: the VFIO objects stay plain
/// types (`vfio::container`, not `container<Sys>`), a driver never spells the seam, and the
/// cost (one indirect call) is nothing next to a system call. Every entry returns the kernel's
/// convention, a non-negative value or `-errno`, so the fake needs no thread-local errno and
/// the callers never read a stale one. `linux_sys()` retries EINTR where the call is
/// restartable (open, ioctl, pread, pwrite) and never retries close.
#pragma once

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <utility>

#include <phyr/config.hpp>
#include <phyr/core/error.hpp>

namespace phyr::inline v0::vfio {

/// The calls the VFIO objects make. Each returns >= 0 on success and -errno on failure.
/// `ctx` is passed back unchanged (the fake's state; null for the real calls).
struct sys_ops {
  void* ctx = nullptr;
  int (*open)(void* ctx, const char* path, int flags) noexcept = nullptr;  ///< a new fd
  int (*close)(void* ctx, int fd) noexcept = nullptr;
  long (*ioctl)(void* ctx, int fd, unsigned long request, void* arg) noexcept = nullptr;
  /// mmap(NULL, len, prot, flags, fd, offset); the address goes to `*out`.
  int (*mmap)(void* ctx, void** out, std::size_t len, int prot, int flags, int fd,
              std::uint64_t offset) noexcept = nullptr;
  int (*munmap)(void* ctx, void* addr, std::size_t len) noexcept = nullptr;
  long (*pread)(void* ctx, int fd, void* buf, std::size_t n, std::uint64_t offset) noexcept =
      nullptr;  ///< bytes read
  long (*pwrite)(void* ctx, int fd, const void* buf, std::size_t n,
                 std::uint64_t offset) noexcept = nullptr;  ///< bytes written
  /// readlink(path, buf, n): bytes placed in buf (not NUL-terminated).
  long (*readlink)(void* ctx, const char* path, char* buf, std::size_t n) noexcept = nullptr;
};

namespace detail {
inline int neg_errno() noexcept { return errno > 0 ? -errno : -EIO; }

inline int real_open(void*, const char* path, int flags) noexcept {
  int fd;
  do {
    fd = ::open(path, flags | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  return fd < 0 ? neg_errno() : fd;
}
inline int real_close(void*, int fd) noexcept {
  // Not retried on EINTR: Linux releases the descriptor either way.
  return ::close(fd) < 0 ? neg_errno() : 0;
}
inline long real_ioctl(void*, int fd, unsigned long request, void* arg) noexcept {
  int r;
  do {
    r = ::ioctl(fd, request, arg);
  } while (r < 0 && errno == EINTR);
  return r < 0 ? neg_errno() : r;
}
inline int real_mmap(void*, void** out, std::size_t len, int prot, int flags, int fd,
                     std::uint64_t offset) noexcept {
  if (offset > static_cast<std::uint64_t>(INT64_MAX)) return -EOVERFLOW;
  void* p = ::mmap(nullptr, len, prot, flags, fd, static_cast<off_t>(offset));
  if (p == MAP_FAILED) return neg_errno();
  *out = p;
  return 0;
}
inline int real_munmap(void*, void* addr, std::size_t len) noexcept {
  return ::munmap(addr, len) < 0 ? neg_errno() : 0;
}
inline long real_pread(void*, int fd, void* buf, std::size_t n, std::uint64_t offset) noexcept {
  if (offset > static_cast<std::uint64_t>(INT64_MAX)) return -EOVERFLOW;
  ssize_t r;
  do {
    r = ::pread(fd, buf, n, static_cast<off_t>(offset));
  } while (r < 0 && errno == EINTR);
  return r < 0 ? neg_errno() : static_cast<long>(r);
}
inline long real_pwrite(void*, int fd, const void* buf, std::size_t n,
                        std::uint64_t offset) noexcept {
  if (offset > static_cast<std::uint64_t>(INT64_MAX)) return -EOVERFLOW;
  ssize_t r;
  do {
    r = ::pwrite(fd, buf, n, static_cast<off_t>(offset));
  } while (r < 0 && errno == EINTR);
  return r < 0 ? neg_errno() : static_cast<long>(r);
}
inline long real_readlink(void*, const char* path, char* buf, std::size_t n) noexcept {
  const ssize_t r = ::readlink(path, buf, n);
  return r < 0 ? neg_errno() : static_cast<long>(r);
}
}  // namespace detail

/// The real system calls.
[[nodiscard]] inline const sys_ops& linux_sys() noexcept {
  static constexpr sys_ops ops{nullptr,
                               &detail::real_open,
                               &detail::real_close,
                               &detail::real_ioctl,
                               &detail::real_mmap,
                               &detail::real_munmap,
                               &detail::real_pread,
                               &detail::real_pwrite,
                               &detail::real_readlink};
  return ops;
}

/// The errc for an errno from a VFIO call. The errno itself travels beside it in `sys_error`.
///  - EPERM, EACCES: permission_denied (no access to /dev/vfio/N, or RLIMIT_MEMLOCK too small
///    to pin: type1 returns ENOMEM for that, see below);
///  - ENOENT, ENODEV, ENXIO: not_found (no such group or device, VFIO not loaded);
///  - EBUSY: busy (a group owned by another container or process, a device already open);
///  - EEXIST: overlaps (MAP_DMA over an IOVA already mapped);
///  - ENOSPC: exhausted (type1's limit on the number of mappings, dma_entry_limit);
///  - ENOMEM: out_of_memory (type1 also says ENOMEM when pinning exceeds RLIMIT_MEMLOCK);
///  - EFAULT: not_mapped (MAP_DMA of a virtual range the process has not mapped);
///  - EINVAL: invalid_argument; ENOTTY, EOPNOTSUPP: not_supported; anything else: io_error.
[[nodiscard]] constexpr errc errc_from_errno(int e) noexcept {
  switch (e) {
    case EPERM:
    case EACCES:
      return errc::permission_denied;
    case ENOENT:
    case ENODEV:
    case ENXIO:
      return errc::not_found;
    case EBUSY:
      return errc::busy;
    case EEXIST:
      return errc::overlaps;
    case ENOSPC:
    case EMFILE:
    case ENFILE:
      return errc::exhausted;
    case ENOMEM:
      return errc::out_of_memory;
    case EFAULT:
      return errc::not_mapped;
    case EINVAL:
      return errc::invalid_argument;
    case ENOTTY:
    case EOPNOTSUPP:
      return errc::not_supported;
    default:
      return errc::io_error;
  }
}

/// The sys_error for a call that returned `-e` (e > 0).
[[nodiscard]] constexpr sys_error failed_call(long neg, const char* op) noexcept {
  const int e = neg < 0 ? static_cast<int>(-neg) : EIO;
  return sys_error{errc_from_errno(e), e, op};
}

/// A file descriptor closed through its `sys_ops` on destruction. Move-only.
class owned_fd {
 public:
  owned_fd() noexcept = default;
  owned_fd(const sys_ops& sys, int fd) noexcept : sys_(&sys), fd_(fd) {}
  owned_fd(owned_fd&& o) noexcept : sys_(o.sys_), fd_(std::exchange(o.fd_, -1)) {}
  owned_fd& operator=(owned_fd&& o) noexcept {
    if (this != &o) {
      reset();
      sys_ = o.sys_;
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  owned_fd(const owned_fd&) = delete;
  owned_fd& operator=(const owned_fd&) = delete;
  ~owned_fd() { reset(); }

  [[nodiscard]] int get() const noexcept { return fd_; }
  [[nodiscard]] bool valid() const noexcept { return fd_ >= 0; }
  [[nodiscard]] const sys_ops& sys() const noexcept { return *sys_; }
  void reset() noexcept {
    // A failed close still releases the descriptor on Linux; there is nothing to retry.
    if (fd_ >= 0) (void)sys_->close(sys_->ctx, fd_);
    fd_ = -1;
  }

  /// ioctl through the seam: the return value, or the sys_error naming `op`.
  [[nodiscard]] result<long, sys_error> ioctl(unsigned long request, void* arg,
                                              const char* op) const noexcept {
    const long r = sys_->ioctl(sys_->ctx, fd_, request, arg);
    if (r < 0) return failed_call(r, op);
    return r;
  }

 private:
  const sys_ops* sys_ = &linux_sys();
  int fd_ = -1;
};

/// Opens `path` read-write through the seam.
[[nodiscard]] inline result<owned_fd, sys_error> try_open_fd(const sys_ops& sys, const char* path,
                                                             const char* op) noexcept {
  const int fd = sys.open(sys.ctx, path, O_RDWR);
  if (fd < 0) return failed_call(fd, op);
  return owned_fd{sys, fd};
}

}  // namespace phyr::inline v0::vfio
