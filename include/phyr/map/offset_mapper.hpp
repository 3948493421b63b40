/// `offset_mapper<Bus>`: DMA address = physical address + a per-window offset, the way SoC
/// interconnects and PCI host bridges with dma-ranges translate (the kernel's bus_dma_region
/// table). The output is an owned, coalesced `range_list<dma_range<Bus>>`.
///
///   struct soc_dma {};
///   phyr::offset_mapper<soc_dma> m;
///   // RAM at phys 0x8000'0000 appears to the device at bus address 0x0 (1 GiB window).
///   phyr::must(m.try_add_window(phyr::phys_addr{0x8000'0000}, phyr::dma_addr<soc_dma>{0},
///                               1ull << 30));
///   phyr::must(m.try_set_dma_mask(32));
///   auto mp = m.try_map(cpu_list, phyr::dma_direction::to_device);
///   if (!mp) return mp.error();  // not_mapped, straddles_boundary, not_addressable, out_of_memory
///   for (const phyr::dma_range<soc_dma>& r : *mp) write_descriptor(r);
///   phyr::must(m.try_unmap(std::move(*mp)));
///
/// Every range must lie inside one window: a range outside all windows is `not_mapped`, one
/// that runs past the end of its window is `straddles_boundary` (even into a neighbouring
/// window: the bus gives no guarantee that two windows are contiguous for the device), and one
/// whose DMA image ends above the mask is `not_addressable`. Adjacent outputs with equal flags
/// are merged by the output list. A failed map allocates nothing that survives.
///
/// Windows live inline (up to `MaxWindows`, 16 by default: real dma-ranges tables have a
/// handful), so the mapper itself never allocates; only mappings do, through `Alloc`.
/// Lifetime: a mapping owns its DMA list and frees it when destroyed (RAII, the rule of
/// map/mapper.hpp); it does not point to the mapper.
/// Thread safety: `try_map`/`try_unmap` only read the mapper and may run concurrently if `Alloc` is
/// thread-safe (default_allocator is); configuring windows or the mask may not.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>
#include <utility>

#include <phyr/container/range_list.hpp>
#include <phyr/core/address.hpp>
#include <phyr/core/allocator.hpp>
#include <phyr/core/error.hpp>
#include <phyr/core/range.hpp>
#include <phyr/map/mapper.hpp>

namespace phyr::inline v0 {

/// One translation window: `len` bytes from `cpu_addr` appear at `device_addr` on bus `Bus`.
template <class Bus>
struct dma_window {
  phys_addr cpu_addr;
  dma_addr<Bus> device_addr;
  std::uint64_t len = 0;

  /// The last CPU / device byte of the window (the window is non-empty and does not wrap).
  [[nodiscard]] constexpr std::uint64_t cpu_last() const noexcept {
    return cpu_addr.value() + (len - 1);
  }
  [[nodiscard]] constexpr std::uint64_t device_last() const noexcept {
    return device_addr.value() + (len - 1);
  }
  friend constexpr bool operator==(const dma_window&, const dma_window&) noexcept = default;
};

template <class Bus, segment_allocator Alloc, std::size_t MaxWindows>
class offset_mapper;

/// What `offset_mapper` returns: an owned list of DMA ranges. Move-only; an empty
/// (default-built, moved-from or unmapped) mapping is foreign to every mapper.
template <class Bus, segment_allocator Alloc = default_allocator>
class offset_mapping : public detail::owned_dma_list<Bus, Alloc> {
  using base = detail::owned_dma_list<Bus, Alloc>;

 public:
  offset_mapping() noexcept = default;

 private:
  template <class, segment_allocator, std::size_t>
  friend class offset_mapper;
  offset_mapping(typename base::list_type&& l, std::uint64_t owner) noexcept
      : base(std::move(l), owner) {}
};

/// The bus-offset mapper of bus `Bus`. Default-constructed with no windows (every map is
/// `not_mapped` until one is added) and a 64-bit DMA mask.
template <class Bus, segment_allocator Alloc = default_allocator, std::size_t MaxWindows = 16>
class offset_mapper : public detail::mapper_names<Bus, cpu_phys> {
  static_assert(MaxWindows > 0);

 public:
  using mapping = offset_mapping<Bus, Alloc>;
  using window = dma_window<Bus>;
  static constexpr std::size_t max_windows = MaxWindows;

  offset_mapper() noexcept requires std::is_nothrow_default_constructible_v<Alloc>
  = default;
  explicit offset_mapper(Alloc a) noexcept : alloc_(a) {}

  /// A mapper with `windows` and `mask_bits`; the first bad window's error otherwise.
  [[nodiscard]] static result<offset_mapper> create(std::span<const window> windows,
                                                    unsigned mask_bits = 64,
                                                    Alloc a = Alloc{}) noexcept {
    offset_mapper m{a};
    if (auto r = m.try_set_dma_mask(mask_bits); !r) return r.error();
    for (const window& w : windows) {
      if (auto r = m.try_add_window(w.cpu_addr, w.device_addr, w.len); !r) return r.error();
    }
    return m;
  }

  /// Adds a window. Errors: zero len -> invalid_argument; a window whose CPU or device end
  /// passes 2^64 -> overflow; one overlapping an existing window in CPU or DMA space ->
  /// overlaps; more than `MaxWindows` -> exhausted. Mappings already made are unaffected.
  [[nodiscard]] result<void> try_add_window(phys_addr cpu_addr, dma_addr<Bus> device_addr,
                                            std::uint64_t len) noexcept {
    if (len == 0) return errc::invalid_argument;
    if (len - 1 > ~cpu_addr.value() || len - 1 > ~device_addr.value()) return errc::overflow;
    const window w{cpu_addr, device_addr, len};
    for (std::size_t i = 0; i < count_; ++i) {
      const window& o = windows_[i];
      if (w.cpu_addr.value() <= o.cpu_last() && o.cpu_addr.value() <= w.cpu_last())
        return errc::overlaps;
      if (w.device_addr.value() <= o.device_last() && o.device_addr.value() <= w.device_last())
        return errc::overlaps;
    }
    if (count_ == MaxWindows) return errc::exhausted;
    // Kept sorted by CPU address so lookups can stop early.
    std::size_t pos = count_;
    while (pos > 0 && windows_[pos - 1].cpu_addr > w.cpu_addr) {
      windows_[pos] = windows_[pos - 1];
      --pos;
    }
    windows_[pos] = w;
    ++count_;
    return {};
  }
  [[nodiscard]] std::span<const window> windows() const noexcept { return {windows_, count_}; }

  /// DMA mask of `bits` address bits (1..64, else invalid_argument and the mask is kept).
  [[nodiscard]] result<void> try_set_dma_mask(unsigned bits) noexcept {
    return detail::assign_dma_mask(mask_, bits);
  }
  [[nodiscard]] std::uint64_t dma_mask() const noexcept { return mask_; }

  /// The DMA address of one physical byte: not_mapped outside every window, not_addressable
  /// above the mask.
  [[nodiscard]] result<dma_addr<Bus>> translate(phys_addr a) const noexcept {
    const window* w = find(a.value());
    if (w == nullptr) return errc::not_mapped;
    const std::uint64_t d = w->device_addr.value() + (a.value() - w->cpu_addr.value());
    if (d > mask_) return errc::not_addressable;
    return dma_addr<Bus>{d};
  }

  /// Maps every range of `list` through its window into a new coalesced DMA list.
  /// Errors: empty list or bad direction -> invalid_argument; then, for the first range that
  /// fails, not_mapped / straddles_boundary / not_addressable as described above;
  /// out_of_memory. On error nothing is kept.
  template <segment_allocator A>
  [[nodiscard]] result<mapping> try_map(const range_list<phys_range, A>& list,
                                        dma_direction dir) const noexcept {
    return map_impl(list, dir);
  }
  [[nodiscard]] result<mapping> try_map(range_list_view<phys_range> view,
                                        dma_direction dir) const noexcept {
    return map_impl(view, dir);
  }

  /// Frees `m`'s list now (destroying `m` would too). A mapping made by another mapper, or
  /// already unmapped, is foreign_mapping and left untouched.
  [[nodiscard]] result<void> try_unmap(mapping&& m) const noexcept {
    return id_.try_release(m.owner_, [&] { m.drop_list(); });
  }
  /// Whether `m` is a live mapping this mapper made (what try_unmap checks).
  [[nodiscard]] bool owns(const mapping& m) const noexcept { return id_.owns(m.owner_); }

 private:
  [[nodiscard]] const window* find(std::uint64_t a) const noexcept {
    for (std::size_t i = 0; i < count_; ++i) {
      const window& w = windows_[i];
      if (a < w.cpu_addr.value()) return nullptr;  // sorted: no later window starts lower
      if (a - w.cpu_addr.value() < w.len) return &w;
    }
    return nullptr;
  }

  template <class List>
  [[nodiscard]] result<mapping> map_impl(const List& list, dma_direction dir) const noexcept {
    if (!is_valid(dir) || list.empty()) return errc::invalid_argument;
    typename mapping::list_type out{alloc_};
    const window* w = nullptr;
    for (const phys_range r : list) {
      const std::uint64_t a = r.addr().value();
      // Consecutive ranges usually share a window: try the last one first.
      if (w == nullptr || a < w->cpu_addr.value() || a - w->cpu_addr.value() >= w->len) {
        w = find(a);
        if (w == nullptr) return errc::not_mapped;
      }
      const std::uint64_t off = a - w->cpu_addr.value();
      if (r.len() > w->len - off) return errc::straddles_boundary;
      const std::uint64_t d = w->device_addr.value() + off;
      if (d + (r.len() - 1) > mask_) return errc::not_addressable;
      if (auto ok = out.try_append(dma_range<Bus>{dma_addr<Bus>{d}, r.len(), r.flags()}); !ok)
        return ok.error();
    }
    return mapping{std::move(out), id_.value()};
  }

  window windows_[MaxWindows]{};
  std::size_t count_ = 0;
  std::uint64_t mask_ = ~std::uint64_t{0};
  Alloc alloc_{};
  detail::mapper_id id_{};
};

}  // namespace phyr
