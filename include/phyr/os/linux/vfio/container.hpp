/// VFIO type1v2 container and group as RAII objects.
///
///   auto c = phyr::vfio::container::try_open();     // /dev/vfio/vfio, API and type1v2 checked
///   if (!c) return c.error();                       // sys_error: errc + errno + call name
///   auto g = c->try_attach_group(12);               // /dev/vfio/12: viable? set container;
///   if (!g) return g.error();                       //   the first group sets the IOMMU type
///   c->iommu().min_page_size();                     // VFIO_IOMMU_GET_INFO, parsed
///   auto d = g->try_open_device("0000:00:04.0");    // see vfio/device.hpp
///
/// The sequence is the kernel's (Documentation/driver-api/vfio.rst): open the container, check
/// VFIO_GET_API_VERSION == VFIO_API_VERSION and VFIO_CHECK_EXTENSION(VFIO_TYPE1v2_IOMMU); open
/// the group, require VFIO_GROUP_FLAGS_VIABLE (every device of the IOMMU group bound to
/// vfio-pci or to no driver), VFIO_GROUP_SET_CONTAINER; for the first group VFIO_SET_IOMMU;
/// then, after every attach, VFIO_IOMMU_GET_INFO with its capability chain (a group's reserved
/// regions narrow the usable IOVA windows, so attach every group before making mappers: a
/// mapper takes its window when it is constructed). `try_iommu_group_of("0000:00:04.0")`
/// finds a device's group number through sysfs.
/// A failed attach closes the group fd, which detaches it again: the container is as before.
///
/// Lifetimes (RAII everywhere; checked by a user count):
/// - Groups, mappers (`vfio_mapper`) and their mappings point to the container, so it must
///   outlive them and must not move while any exists: `try_open` returns it by value once,
///   then keep it in place. Destroying or moving a container with users asserts in debug
///   builds (release builds: undefined, like any dangling pointer).
/// - Closing the last group makes the kernel drop the IOMMU context and every DMA mapping in
///   it, so mappers and mappings must go before the last group (asserted likewise).
/// - A device fd keeps its group alive inside the kernel; `vfio::device` has no such order.
/// Errors are `sys_error` values: the `errc`, the errno and the name of the failing call
/// (errno 0 for phyr's own checks, e.g. a group that is not viable: `errc::busy`).
/// Not thread-safe: attach groups from one thread; mapping through a mapper is thread-safe.
#pragma once

#include <linux/vfio.h>

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <utility>

#include <phyr/config.hpp>
#include <phyr/core/error.hpp>
#include <phyr/os/linux/vfio/iommu_info.hpp>
#include <phyr/os/linux/vfio/sys.hpp>

namespace phyr::inline v0::vfio {

class group;
class device;

/// A VFIO container (/dev/vfio/vfio) with the type1v2 IOMMU. Move-only, and only while unused.
class container {
 public:
  container(container&& o) noexcept
      : fd_(std::move(o.fd_)), info_(o.info_), groups_(o.groups_), iommu_set_(o.iommu_set_) {
    PHYR_ASSERT(o.users_.load(std::memory_order_relaxed) == 0,
                "moving a VFIO container that groups or mappers point to");
    o.groups_ = 0;
    o.iommu_set_ = false;
  }
  container& operator=(container&&) = delete;
  container(const container&) = delete;
  container& operator=(const container&) = delete;
  ~container() {
    PHYR_ASSERT(users_.load(std::memory_order_relaxed) == 0,
                "VFIO container destroyed before its groups, mappers or mappings");
  }

  /// Opens /dev/vfio/vfio and checks the API version and type1v2 support.
  /// Errors: not_found (no VFIO module), permission_denied, not_supported (another API
  /// version, or no type1v2: the sys_error then has errno 0).
  [[nodiscard]] static result<container, sys_error> try_open(
      const sys_ops& sys = linux_sys()) noexcept {
    auto fd = try_open_fd(sys, "/dev/vfio/vfio", "open(/dev/vfio/vfio)");
    if (!fd) return fd.error();
    auto v = fd->ioctl(VFIO_GET_API_VERSION, nullptr, "VFIO_GET_API_VERSION");
    if (!v) return v.error();
    if (*v != VFIO_API_VERSION) return sys_error{errc::not_supported, 0, "VFIO_GET_API_VERSION"};
    auto e = fd->ioctl(VFIO_CHECK_EXTENSION, reinterpret_cast<void*>(std::uintptr_t{VFIO_TYPE1v2_IOMMU}),
                       "VFIO_CHECK_EXTENSION");
    if (!e) return e.error();
    if (*e <= 0) return sys_error{errc::not_supported, 0, "VFIO_CHECK_EXTENSION(VFIO_TYPE1v2_IOMMU)"};
    return container{std::move(*fd)};
  }

  /// Opens `/dev/vfio/<group_no>` and adds it to this container (see the file comment).
  /// Errors: not_found (no such group), permission_denied, busy (the group is not viable:
  /// errno 0, or already in use: EBUSY), and any failing ioctl with its errno. On error the
  /// container is as before and the group fd is closed.
  [[nodiscard]] result<group, sys_error> try_attach_group(unsigned group_no) noexcept;

  /// Whether a group is attached (and so the IOMMU type set and `iommu()` valid).
  [[nodiscard]] bool has_iommu() const noexcept { return iommu_set_; }
  /// The parsed VFIO_IOMMU_GET_INFO of the first attach. Only meaningful when has_iommu().
  [[nodiscard]] const iommu_info& iommu() const noexcept { return info_; }
  /// Groups attached now.
  [[nodiscard]] unsigned groups() const noexcept { return groups_; }
  [[nodiscard]] int native_handle() const noexcept { return fd_.get(); }
  [[nodiscard]] const sys_ops& sys() const noexcept { return fd_.sys(); }

  /// ioctl on the container fd through the seam (for the mapper; also usable by callers that
  /// need a type1 call phyr does not wrap).
  [[nodiscard]] result<long, sys_error> ioctl(unsigned long request, void* arg,
                                              const char* op) const noexcept {
    return fd_.ioctl(request, arg, op);
  }

  /// Bookkeeping for the objects that point here (groups, mappers, mappings).
  void add_user() noexcept { users_.fetch_add(1, std::memory_order_relaxed); }
  void drop_user() noexcept { users_.fetch_sub(1, std::memory_order_relaxed); }
  [[nodiscard]] std::uint32_t users() const noexcept {
    return users_.load(std::memory_order_relaxed);
  }
  /// Mappers alive on this container (they need the IOMMU context, hence a group).
  void add_mapper() noexcept { mappers_.fetch_add(1, std::memory_order_relaxed); }
  void drop_mapper() noexcept { mappers_.fetch_sub(1, std::memory_order_relaxed); }

  /// At most this many IOVA windows claimed at once (one per mapper).
  static constexpr std::size_t max_claims = 16;

  /// Claims, for one mapper, the largest part of the usable IOVA windows that lies inside
  /// [lo, hi], is not claimed by another mapper, and is whole granules (a power of two); at
  /// most `max_bytes` of it (its lowest part) when that is not 0. All mappers of a container
  /// share one IOMMU context, so disjoint claims are what keeps their IOVAs from colliding.
  /// Errors: not_supported (no IOMMU yet), not_addressable (no usable IOVA in [lo, hi] at
  /// all), exhausted (all of it claimed, or `max_claims` claims out). Not thread-safe (like
  /// attaching groups: set mappers up from one thread).
  [[nodiscard]] result<iova_window> try_claim_iova(std::uint64_t lo, std::uint64_t hi,
                                                   std::uint64_t granule,
                                                   std::uint64_t max_bytes) noexcept {
    if (!iommu_set_) return errc::not_supported;
    bool any = false;
    iova_window best{};
    std::uint64_t best_len = 0;  // in granules
    const std::uint64_t gm = granule - 1;
    for (const iova_window& w : info_.windows()) {
      std::uint64_t a = w.first > lo ? w.first : lo;
      const std::uint64_t b = w.last < hi ? w.last : hi;
      if (a > b) continue;
      any = true;
      // Walk [a, b] around the claims (kept sorted and disjoint): each free piece is scored.
      const unsigned shift = static_cast<unsigned>(std::countr_zero(granule));
      auto score = [&](std::uint64_t x, std::uint64_t y) noexcept {  // whole granules of [x, y]
        const std::uint64_t first = (x >> shift) + ((x & gm) != 0 ? 1 : 0);
        const std::uint64_t stop = (y >> shift) + ((y & gm) == gm ? 1 : 0);
        if (stop > first && stop - first > best_len) {
          best_len = stop - first;
          best = {first << shift, 0};
        }
      };
      bool done = false;
      for (std::size_t i = 0; i < nclaims_ && !done; ++i) {
        const iova_window& c = claims_[i];
        if (c.last < a) continue;
        if (c.first > b) break;
        if (c.first > a) score(a, c.first - 1);
        if (c.last >= b) {
          done = true;
        } else {
          a = c.last + 1;
        }
      }
      if (!done) score(a, b);
    }
    if (!any) return errc::not_addressable;
    if (best_len == 0 || nclaims_ == max_claims) return errc::exhausted;
    std::uint64_t len = best_len;
    if (max_bytes != 0 && (max_bytes >> std::countr_zero(granule)) < len)
      len = max_bytes >> std::countr_zero(granule);
    if (len == 0) return errc::invalid_argument;
    best.last = best.first + ((len << std::countr_zero(granule)) - 1);
    std::size_t pos = 0;
    while (pos < nclaims_ && claims_[pos].first < best.first) ++pos;
    for (std::size_t i = nclaims_; i > pos; --i) claims_[i] = claims_[i - 1];
    claims_[pos] = best;
    ++nclaims_;
    return best;
  }
  /// Gives a claim back (the mapper that held it is gone).
  void release_iova(const iova_window& w) noexcept {
    for (std::size_t i = 0; i < nclaims_; ++i) {
      if (claims_[i] == w) {
        for (std::size_t j = i + 1; j < nclaims_; ++j) claims_[j - 1] = claims_[j];
        --nclaims_;
        return;
      }
    }
    PHYR_ASSERT(false, "releasing an IOVA claim this container never made");
  }

 private:
  friend class group;
  explicit container(owned_fd fd) noexcept : fd_(std::move(fd)) {}

  /// VFIO_IOMMU_GET_INFO with the capability chain, into a 4 KiB buffer: the largest reply
  /// the parser accepts (64 windows plus the other capabilities) is about 1.1 KiB, so a
  /// kernel asking for more than 4 KiB (it writes the size it needs into argsz and leaves the
  /// chain out) is answered with too_long rather than a heap allocation and a second call.
  [[nodiscard]] result<iommu_info, sys_error> query_iommu() const noexcept {
    alignas(8) std::byte buf[4096] = {};
    auto r = get_info_into(buf, sizeof buf);
    if (!r) return r.error();
    if (*r > sizeof buf) return sys_error{errc::too_long, 0, "VFIO_IOMMU_GET_INFO"};
    return parse(buf, *r);
  }
  // Fills buf (argsz = n); returns the size the kernel says the full reply needs.
  [[nodiscard]] result<std::size_t, sys_error> get_info_into(std::byte* buf,
                                                             std::size_t n) const noexcept {
    vfio_iommu_type1_info hdr{};
    hdr.argsz = static_cast<std::uint32_t>(n);
    __builtin_memcpy(buf, &hdr, sizeof hdr);
    auto r = fd_.ioctl(VFIO_IOMMU_GET_INFO, buf, "VFIO_IOMMU_GET_INFO");
    if (!r) return r.error();
    __builtin_memcpy(&hdr, buf, sizeof hdr);
    return std::size_t{hdr.argsz} < sizeof hdr ? sizeof hdr : std::size_t{hdr.argsz};
  }
  [[nodiscard]] static result<iommu_info, sys_error> parse(const std::byte* buf,
                                                           std::size_t n) noexcept {
    auto p = parse_iommu_info(std::span<const std::byte>{buf, n});
    if (!p) return sys_error{p.error(), 0, "VFIO_IOMMU_GET_INFO (capability chain)"};
    return *p;
  }

  owned_fd fd_;
  iommu_info info_{};
  unsigned groups_ = 0;
  bool iommu_set_ = false;
  iova_window claims_[max_claims] = {};
  std::size_t nclaims_ = 0;
  std::atomic<std::uint32_t> users_{0};
  std::atomic<std::uint32_t> mappers_{0};
};

/// A VFIO group (/dev/vfio/N) attached to a container. Move-only; closing it detaches it.
class group {
 public:
  group(group&& o) noexcept : c_(std::exchange(o.c_, nullptr)), fd_(std::move(o.fd_)), no_(o.no_) {}
  group& operator=(group&& o) noexcept {
    if (this != &o) {
      release();
      c_ = std::exchange(o.c_, nullptr);
      fd_ = std::move(o.fd_);
      no_ = o.no_;
    }
    return *this;
  }
  group(const group&) = delete;
  group& operator=(const group&) = delete;
  ~group() { release(); }

  /// A device of this group by its name in /sys/kernel/iommu_groups/N/devices (for PCI the
  /// address "DDDD:BB:DD.F"). See vfio/device.hpp.
  [[nodiscard]] result<device, sys_error> try_open_device(const char* name) const noexcept;

  [[nodiscard]] unsigned number() const noexcept { return no_; }
  [[nodiscard]] int native_handle() const noexcept { return fd_.get(); }
  [[nodiscard]] const sys_ops& sys() const noexcept { return fd_.sys(); }

 private:
  friend class container;
  group(container& c, owned_fd fd, unsigned no) noexcept : c_(&c), fd_(std::move(fd)), no_(no) {
    c.add_user();
    ++c.groups_;
  }
  void release() noexcept {
    if (c_ == nullptr) return;
    if (--c_->groups_ == 0) {
      PHYR_ASSERT(c_->mappers_.load(std::memory_order_relaxed) == 0,
                  "last VFIO group closed while mappers still use the container's IOMMU");
      c_->iommu_set_ = false;  // the kernel drops the IOMMU context with the last group
    }
    fd_.reset();
    c_->drop_user();
    c_ = nullptr;
  }

  container* c_ = nullptr;
  owned_fd fd_;
  unsigned no_ = 0;
};

/// The IOMMU group number of PCI device `bdf` ("DDDD:BB:DD.F"): the last component of the
/// `/sys/bus/pci/devices/<bdf>/iommu_group` link. Errors: invalid_argument (empty or overlong
/// name), not_found (no such device, or no IOMMU group: the IOMMU is off), parse_error (a link
/// that does not end in a number).
[[nodiscard]] inline result<unsigned, sys_error> try_iommu_group_of(
    const char* bdf, const sys_ops& sys = linux_sys()) noexcept {
  if (bdf == nullptr || *bdf == '\0' || std::strlen(bdf) > 64)
    return sys_error{errc::invalid_argument, 0, "iommu_group: device name"};
  char path[128];
  std::snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/iommu_group", bdf);
  char link[256];
  const long n = sys.readlink(sys.ctx, path, link, sizeof link - 1);
  if (n < 0) return failed_call(n, "readlink(/sys/bus/pci/devices/<bdf>/iommu_group)");
  link[n] = '\0';
  const char* last = link;
  for (const char* p = link; *p != '\0'; ++p)
    if (*p == '/') last = p + 1;
  if (*last == '\0') return sys_error{errc::parse_error, 0, "iommu_group link"};
  unsigned v = 0;
  for (const char* p = last; *p != '\0'; ++p) {
    if (*p < '0' || *p > '9' || v > 100000000u) return sys_error{errc::parse_error, 0, "iommu_group link"};
    v = v * 10 + static_cast<unsigned>(*p - '0');
  }
  return v;
}

inline result<group, sys_error> container::try_attach_group(unsigned group_no) noexcept {
  char path[32];
  std::snprintf(path, sizeof path, "/dev/vfio/%u", group_no);
  auto fd = try_open_fd(fd_.sys(), path, "open(/dev/vfio/<group>)");
  if (!fd) return fd.error();
  vfio_group_status st{};
  st.argsz = sizeof st;
  if (auto r = fd->ioctl(VFIO_GROUP_GET_STATUS, &st, "VFIO_GROUP_GET_STATUS"); !r)
    return r.error();
  if ((st.flags & VFIO_GROUP_FLAGS_VIABLE) == 0)
    return sys_error{errc::busy, 0, "VFIO_GROUP_GET_STATUS: group not viable (bind every device "
                                    "of the IOMMU group to vfio-pci)"};
  int cfd = fd_.get();
  if (auto r = fd->ioctl(VFIO_GROUP_SET_CONTAINER, &cfd, "VFIO_GROUP_SET_CONTAINER"); !r)
    return r.error();
  if (!iommu_set_) {
    // The first group chooses the IOMMU model. On any failure from here on the group fd
    // closes on return, detaching the group (and, for the only one, resetting the container),
    // so a later attach starts from where this one did.
    if (auto r = fd_.ioctl(VFIO_SET_IOMMU, reinterpret_cast<void*>(std::uintptr_t{VFIO_TYPE1v2_IOMMU}),
                           "VFIO_SET_IOMMU");
        !r)
      return r.error();
  }
  // Asked after every attach: a new group's reserved regions can narrow the usable windows.
  auto info = query_iommu();
  if (!info) return info.error();
  info_ = *info;
  iommu_set_ = true;
  return group{*this, std::move(*fd), group_no};
}

}  // namespace phyr::inline v0::vfio
