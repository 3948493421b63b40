/// `sg_bridge_mapper<Bus, MapSg, UnmapSg>`: runs a legacy scatterlist mapping function (a
/// `dma_map_sg`-style callback: an IOMMU driver, swiotlb, a vendor shim) on a temporary
/// scatterlist built from a phyr CPU list, and returns its result as a phyr mapping.
///
///   struct legacy_bus {};
///   auto map_sg = [&](phyr::compat::scatterlist* sgl, int nents, phyr::dma_direction d) {
///     return old_driver_map_sg(dev, sgl, nents, d);  // mapped count, 0 or -errno on failure
///   };
///   auto unmap_sg = [&](phyr::compat::scatterlist* sgl, int nents, phyr::dma_direction d) {
///     old_driver_unmap_sg(dev, sgl, nents, d);
///   };
///   phyr::sg_bridge_mapper<legacy_bus, decltype(map_sg), decltype(unmap_sg)> m{map_sg,
///                                                                              unmap_sg};
///   auto mp = m.try_map(cpu_list, phyr::dma_direction::to_device);
///   if (!mp) return mp.error();
///   for (const phyr::dma_range<legacy_bus>& r : *mp) program(r);
///   phyr::must(m.try_unmap(std::move(*mp)));                      // calls unmap_sg, frees the table
///
/// try_map builds one scatterlist entry per CPU range (a range longer than `max_segment` is cut),
/// calls `map_sg(sgl, nents, dir)`, and copies `sg_dma_address`/`sg_dma_len` of the entries it
/// reports mapped (stopping early at a zero dma length, as the kernel allows) into an owned,
/// coalesced `range_list<dma_range<Bus>>` (entries marked SG_DMA_BUS_ADDRESS get
/// `range_flags::bus_addr`; CPU-side flags do not survive a scatterlist). The table is kept: the
/// legacy layer may have state in it, and `unmap` must hand it back to `unmap_sg` with the
/// original entry count.
///
/// What the callback returns becomes the error: 0 or -EIO -> not_mapped (the legacy API gives no
/// reason), -ENOMEM -> out_of_memory, -EINVAL -> invalid_argument, -EREMOTEIO ->
/// p2p_not_supported, any other negative value -> not_mapped; a count above the entries passed in
/// (a broken callback) -> io_error after unmapping. Whenever map_sg succeeded but phyr fails
/// afterwards (allocation, a DMA range that wraps), unmap_sg is called before returning, so
/// every successful map_sg is paired with exactly one unmap_sg.
///
/// Lifetime (the rule of map/mapper.hpp): a mapping keeps its own copy of the `unmap_sg`
/// callback, so destroying a still-mapped mapping calls `unmap_sg` and frees the table exactly
/// as `try_unmap` does; whatever the callback refers to (the legacy device) must outlive the
/// mapping, the mapper need not. `UnmapSg` must therefore be nothrow copy constructible.
/// Thread safety: that of the callbacks and `Alloc`.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <new>
#include <type_traits>
#include <utility>

#include <phyr/compat/scatterlist.hpp>
#include <phyr/container/range_list.hpp>
#include <phyr/core/address.hpp>
#include <phyr/core/allocator.hpp>
#include <phyr/core/error.hpp>
#include <phyr/core/range.hpp>
#include <phyr/map/mapper.hpp>

namespace phyr::inline v0 {

/// An unmap callback for legacy mappers that hold nothing (dma-direct on a coherent device).
struct no_unmap_sg {
  void operator()(compat::scatterlist*, int, dma_direction) const noexcept {}
};

/// `F` can be called as a legacy map_sg: `int f(scatterlist*, int nents, dma_direction)`.
template <class F>
concept legacy_map_sg = std::is_invocable_r_v<int, F&, compat::scatterlist*, int, dma_direction>;
/// `F` can be called as a legacy unmap_sg: `f(scatterlist*, int nents, dma_direction)`.
template <class F>
concept legacy_unmap_sg = std::is_invocable_v<F&, compat::scatterlist*, int, dma_direction>;

template <class Bus, legacy_map_sg MapSg, legacy_unmap_sg UnmapSg, segment_allocator Alloc>
class sg_bridge_mapper;

/// What `sg_bridge_mapper` returns: the DMA list plus the scatterlist the legacy layer mapped,
/// and the callback that gives it back. Move-only; an empty (default-built, moved-from or
/// unmapped) mapping is foreign to every mapper. Destroying a live one calls `unmap_sg`.
template <class Bus, legacy_unmap_sg UnmapSg = no_unmap_sg,
          segment_allocator Alloc = default_allocator>
class sg_bridge_mapping : public detail::owned_dma_list<Bus, Alloc> {
  using base = detail::owned_dma_list<Bus, Alloc>;
  static_assert(std::is_nothrow_copy_constructible_v<UnmapSg> &&
                    std::is_nothrow_destructible_v<UnmapSg>,
                "sg_bridge: a mapping keeps a copy of unmap_sg, so it must copy without throwing");

 public:
  sg_bridge_mapping() noexcept = default;
  sg_bridge_mapping(sg_bridge_mapping&& o) noexcept
      : base(std::move(o)), table_(std::move(o.table_)), dir_(o.dir_) {
    take_unmap(o);
  }
  sg_bridge_mapping& operator=(sg_bridge_mapping&& o) noexcept {
    if (this != &o) {
      release();
      base::operator=(std::move(o));
      table_ = std::move(o.table_);
      dir_ = o.dir_;
      take_unmap(o);
    }
    return *this;
  }
  /// Calls unmap_sg if still mapped (RAII; see map/mapper.hpp).
  ~sg_bridge_mapping() { release(); }

  /// The legacy table: `nents` is what map_sg returned, `orig_nents` what it was given.
  [[nodiscard]] const compat::sg_table& table() const noexcept { return table_.table(); }
  [[nodiscard]] dma_direction direction() const noexcept { return dir_; }

 private:
  template <class B, legacy_map_sg M, legacy_unmap_sg U, segment_allocator A>
  friend class sg_bridge_mapper;
  sg_bridge_mapping(compat::unique_sg_table<Alloc>&& t, typename base::list_type&& l,
                    dma_direction d, std::uint64_t owner, const UnmapSg& u) noexcept
      : base(std::move(l), owner), table_(std::move(t)), dir_(d) {
    ::new (static_cast<void*>(unmap_buf_)) UnmapSg(u);
    has_unmap_ = true;
  }
  UnmapSg& unmap_fn() noexcept { return *std::launder(reinterpret_cast<UnmapSg*>(unmap_buf_)); }
  void take_unmap(sg_bridge_mapping& o) noexcept {
    if (o.has_unmap_) {
      ::new (static_cast<void*>(unmap_buf_)) UnmapSg(o.unmap_fn());
      has_unmap_ = true;
      o.drop_unmap();
    }
  }
  void drop_unmap() noexcept {
    if (has_unmap_) unmap_fn().~UnmapSg();
    has_unmap_ = false;
  }
  /// Hands the table back to the legacy layer and frees everything, once.
  void release() noexcept {
    if (this->mapped() && has_unmap_) {
      compat::sg_table& t = table_.table();
      unmap_fn()(t.sgl, static_cast<int>(t.orig_nents), dir_);
    }
    drop_unmap();
    table_.reset();
    this->drop_list();
  }

  compat::unique_sg_table<Alloc> table_{};
  dma_direction dir_ = dma_direction::bidirectional;
  bool has_unmap_ = false;
  // Storage, not a member: a lambda capturing references has no default constructor, and an
  // empty mapping has no callback.
  alignas(UnmapSg) unsigned char unmap_buf_[sizeof(UnmapSg)];
};

/// The scatterlist bridge of bus `Bus`.
template <class Bus, legacy_map_sg MapSg, legacy_unmap_sg UnmapSg = no_unmap_sg,
          segment_allocator Alloc = default_allocator>
class sg_bridge_mapper : public detail::mapper_names<Bus, cpu_phys> {
 public:
  using mapping = sg_bridge_mapping<Bus, UnmapSg, Alloc>;

  /// Longest scatterlist entry built by default (2 GiB: fits `length`, keeps cuts aligned).
  static constexpr unsigned int default_max_segment = 1u << 31;

  explicit sg_bridge_mapper(MapSg map_sg, UnmapSg unmap_sg = UnmapSg{}, Alloc a = Alloc{},
                            unsigned int max_segment = default_max_segment) noexcept
      : map_(std::move(map_sg)),
        unmap_(std::move(unmap_sg)),
        alloc_(a),
        max_segment_(max_segment == 0 ? default_max_segment : max_segment) {}

  /// Longest entry handed to map_sg (the device's max segment size); 0 is invalid_argument.
  [[nodiscard]] result<void> set_max_segment(unsigned int bytes) noexcept {
    if (bytes == 0) return errc::invalid_argument;
    max_segment_ = bytes;
    return {};
  }
  [[nodiscard]] unsigned int max_segment() const noexcept { return max_segment_; }

  /// Builds the table, calls map_sg, converts. Errors: empty list or bad direction ->
  /// invalid_argument; a range above the scatterlist model's 52 bits -> out_of_range; more than
  /// INT_MAX entries -> too_long; the callback's failure (see above); out_of_memory.
  template <segment_allocator A>
  [[nodiscard]] result<mapping> try_map(const range_list<phys_range, A>& list,
                                        dma_direction dir) noexcept {
    return map_impl(list, dir);
  }
  [[nodiscard]] result<mapping> try_map(range_list_view<phys_range> view,
                                        dma_direction dir) noexcept {
    return map_impl(view, dir);
  }

  /// Calls unmap_sg on the mapping's table and frees it (what destroying `m` would do, now).
  /// A mapping made by another mapper, or already unmapped, is foreign_mapping and left
  /// untouched.
  [[nodiscard]] result<void> try_unmap(mapping&& m) noexcept {
    return id_.try_release(m.owner_, [&] { m.release(); });
  }
  /// Whether `m` is a live mapping this mapper made (what try_unmap checks).
  [[nodiscard]] bool owns(const mapping& m) const noexcept { return id_.owns(m.owner_); }

 private:
  [[nodiscard]] static constexpr errc from_legacy(int rc) noexcept {
    switch (rc) {
      case -12:
        return errc::out_of_memory;  // ENOMEM
      case -22:
        return errc::invalid_argument;  // EINVAL
      case -121:
        return errc::p2p_not_supported;  // EREMOTEIO
      default:
        return errc::not_mapped;  // 0, EIO, anything else
    }
  }

  template <class List>
  [[nodiscard]] result<mapping> map_impl(const List& list, dma_direction dir) noexcept {
    if (!is_valid(dir) || list.empty()) return errc::invalid_argument;
    compat::unique_sg_table<Alloc> owned{alloc_};
    compat::sg_table& t = owned.table();
    if (auto r = compat::sg_alloc_table_from_ranges(t, list, max_segment_, owned.allocator()); !r)
      return r.error();
    if (t.orig_nents > static_cast<unsigned int>(std::numeric_limits<int>::max()))
      return errc::too_long;
    const int nents = static_cast<int>(t.orig_nents);
    const int n = static_cast<int>(map_(t.sgl, nents, dir));
    if (n <= 0) return from_legacy(n);
    if (n > nents) {
      unmap_(t.sgl, nents, dir);
      return errc::io_error;
    }
    t.nents = static_cast<unsigned int>(n);

    typename mapping::list_type out{alloc_};
    compat::scatterlist* sg = t.sgl;
    for (int i = 0; i < n; ++i, sg = compat::sg_next(sg)) {
      const unsigned int len = compat::sg_dma_len(sg);
      if (len == 0) break;
      // A bus address (P2P through a switch) is marked by the legacy layer in dma_flags.
      const range_flags f = (sg->dma_flags & compat::sg_dma_bus_address_flag) != 0
                                ? range_flags::bus_addr
                                : range_flags::none;
      auto r = dma_range<Bus>::create(dma_addr<Bus>{compat::sg_dma_address(sg)}, len, f);
      if (!r) {
        unmap_(t.sgl, nents, dir);
        return r.error();
      }
      if (auto ok = out.try_append(*r); !ok) {
        unmap_(t.sgl, nents, dir);
        return ok.error();
      }
    }
    if (out.empty()) {  // map_sg "succeeded" with nothing mapped
      unmap_(t.sgl, nents, dir);
      return errc::io_error;
    }
    return mapping{std::move(owned), std::move(out), dir, id_.value(), unmap_};
  }

  MapSg map_;
  UnmapSg unmap_;
  Alloc alloc_;
  unsigned int max_segment_;
  detail::mapper_id id_{};
};

}  // namespace phyr
