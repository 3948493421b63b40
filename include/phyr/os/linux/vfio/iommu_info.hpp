/// What `VFIO_IOMMU_GET_INFO` says about a type1 container, and the parser of its reply (the
/// fixed `vfio_iommu_type1_info` followed by a capability chain).
///
///   auto info = phyr::vfio::parse_iommu_info(std::span<const std::byte>{buf, len});
///   if (!info) return info.error();          // parse_error, too_long
///   info->min_page_size();                   // 4096 for page sizes 4K|2M|1G
///   for (const phyr::vfio::iova_window& w : info->windows()) use(w.first, w.last);
///
/// The reply (include/uapi/linux/vfio.h): argsz, flags, iova_pgsizes (valid with
/// VFIO_IOMMU_INFO_PGSIZES), cap_offset (valid with VFIO_IOMMU_INFO_CAPS, 0 when the buffer
/// was too small for the chain). Each capability starts with {u16 id, u16 version, u32 next};
/// offsets count from the start of the reply. The kernel appends capabilities in order, so
/// every `next` is larger than the offset of the capability holding it; the parser requires
/// that, which is also what makes a looping chain a clean `parse_error` instead of a hang.
///
/// Parsed capabilities: VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE (the usable IOVA windows, with
/// reserved regions such as the x86 MSI window 0xfee00000-0xfeefffff cut out; since Linux 5.4)
/// and VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL (how many more MAP_DMA calls the container allows;
/// since 5.10). Others are skipped. Malformed input of any kind (a capability or its array
/// past the end, an offset inside the fixed header, a `next` that does not move forward, an
/// empty, inverted, unsorted or overlapping window list, the same capability twice) is
/// `errc::parse_error`; more windows than `max_iova_windows` is `errc::too_long`. The parser
/// reads only inside the span (fuzzed: tests/fuzz/vfio_info_fuzz.cpp).
#pragma once

#include <linux/vfio.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include <phyr/config.hpp>
#include <phyr/core/error.hpp>

namespace phyr::inline v0::vfio {

/// One usable IOVA window, inclusive on both ends as VFIO reports it.
struct iova_window {
  std::uint64_t first = 0;
  std::uint64_t last = 0;
  friend constexpr bool operator==(const iova_window&, const iova_window&) noexcept = default;
};

/// The parsed reply of VFIO_IOMMU_GET_INFO.
class iommu_info {
 public:
  /// Real systems report a handful (below and above the MSI window, around RMRRs); more than
  /// this is refused, never truncated.
  static constexpr std::size_t max_iova_windows = 64;

  /// Bitmap of the IOMMU page sizes (bit k set: 2^k bytes). 0 when the kernel did not say.
  [[nodiscard]] std::uint64_t page_sizes() const noexcept { return page_sizes_; }
  /// The smallest IOMMU page: MAP_DMA needs vaddr, iova and size aligned to it. 0 when unknown.
  [[nodiscard]] std::uint64_t min_page_size() const noexcept {
    return page_sizes_ & (~page_sizes_ + 1);
  }
  /// Whether the kernel reported the IOVA-range capability. Without it (Linux < 5.4), every
  /// IOVA is presented as usable: `windows()` is then the single window [0, 2^64 - 1].
  [[nodiscard]] bool has_iova_ranges() const noexcept { return has_ranges_; }
  [[nodiscard]] std::span<const iova_window> windows() const noexcept {
    if (!has_ranges_) return {&everything_, 1};
    return {windows_, count_};
  }
  /// Whether the kernel reported DMA_AVAIL, and its value (further mappings allowed).
  [[nodiscard]] bool has_dma_avail() const noexcept { return has_avail_; }
  [[nodiscard]] std::uint32_t dma_avail() const noexcept { return avail_; }

 private:
  friend result<iommu_info> parse_iommu_info(std::span<const std::byte>) noexcept;

  static constexpr iova_window everything_{0, ~std::uint64_t{0}};
  std::uint64_t page_sizes_ = 0;
  iova_window windows_[max_iova_windows] = {};
  std::uint32_t count_ = 0;
  std::uint32_t avail_ = 0;
  bool has_ranges_ = false;
  bool has_avail_ = false;
};

namespace detail {
template <class T>
[[nodiscard]] T load_at(std::span<const std::byte> b, std::size_t off) noexcept {
  T v;
  std::memcpy(&v, b.data() + off, sizeof v);
  return v;
}
}  // namespace detail

/// Parses a VFIO_IOMMU_GET_INFO reply held in `reply` (only the bytes the caller received; the
/// reply's own argsz is not trusted to be within them). See the file comment for the rules.
[[nodiscard]] inline result<iommu_info> parse_iommu_info(std::span<const std::byte> reply) noexcept {
  using info_t = vfio_iommu_type1_info;
  constexpr std::size_t fixed_min = offsetof(info_t, iova_pgsizes) + sizeof(std::uint64_t);
  if (reply.size() < fixed_min) return errc::parse_error;
  const std::uint32_t flags = detail::load_at<std::uint32_t>(reply, offsetof(info_t, flags));
  iommu_info out;
  if ((flags & VFIO_IOMMU_INFO_PGSIZES) != 0)
    out.page_sizes_ = detail::load_at<std::uint64_t>(reply, offsetof(info_t, iova_pgsizes));
  if ((flags & VFIO_IOMMU_INFO_CAPS) == 0) return out;
  if (reply.size() < offsetof(info_t, cap_offset) + sizeof(std::uint32_t)) return out;
  std::uint64_t off = detail::load_at<std::uint32_t>(reply, offsetof(info_t, cap_offset));
  bool seen_ranges = false;
  bool seen_avail = false;
  while (off != 0) {
    // A capability lives after the fixed header and wholly inside the reply.
    if (off < sizeof(info_t) || off > reply.size() ||
        reply.size() - off < sizeof(vfio_info_cap_header))
      return errc::parse_error;
    const auto hdr = detail::load_at<vfio_info_cap_header>(reply, static_cast<std::size_t>(off));
    const std::size_t at = static_cast<std::size_t>(off);
    const std::size_t room = reply.size() - at;
    if (hdr.version == 0) return errc::parse_error;
    if (hdr.id == VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE) {
      using cap_t = vfio_iommu_type1_info_cap_iova_range;
      if (seen_ranges || room < sizeof(cap_t)) return errc::parse_error;
      seen_ranges = true;
      const auto nr = detail::load_at<std::uint32_t>(reply, at + offsetof(cap_t, nr_iovas));
      if (nr == 0) return errc::parse_error;
      if ((room - sizeof(cap_t)) / sizeof(vfio_iova_range) < nr) return errc::parse_error;
      if (nr > iommu_info::max_iova_windows) return errc::too_long;
      for (std::uint32_t i = 0; i < nr; ++i) {
        const auto r =
            detail::load_at<vfio_iova_range>(reply, at + sizeof(cap_t) + i * sizeof(vfio_iova_range));
        if (r.start > r.end) return errc::parse_error;
        if (i != 0 && r.start <= out.windows_[i - 1].last) return errc::parse_error;
        out.windows_[i] = iova_window{r.start, r.end};
      }
      out.count_ = nr;
      out.has_ranges_ = true;
    } else if (hdr.id == VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL) {
      using cap_t = vfio_iommu_type1_info_dma_avail;
      if (seen_avail || room < offsetof(cap_t, avail) + sizeof(std::uint32_t))
        return errc::parse_error;
      seen_avail = true;
      out.avail_ = detail::load_at<std::uint32_t>(reply, at + offsetof(cap_t, avail));
      out.has_avail_ = true;
    }
    if (hdr.next != 0 && hdr.next <= off) return errc::parse_error;  // loops, backward links
    off = hdr.next;
  }
  return out;
}

}  // namespace phyr::inline v0::vfio
