/// The `dma_mapper` concept: how a list of CPU ranges becomes a list of DMA ranges that one
/// device (one `Bus`) can use, and how that is undone.
///
///   struct nvme0 {};
///   phyr::identity_mapper<nvme0> m;        // a phyr::phys_dma_mapper
///   auto mp = m.try_map(cpu_list, phyr::dma_direction::to_device);
///   if (!mp) return mp.error();            // not_addressable, out_of_memory, ...
///   for (phyr::dma_range<nvme0> r : *mp) program_descriptor(r.addr().value(), r.len());
///   phyr::must(m.try_unmap(std::move(*mp)));  // or just let *mp go out of scope
///
/// A mapper is instantiated per bus, so its output lives in `dma_space<Bus>` and cannot be
/// handed to a device on another bus, nor mapped again. A mapper also names the space it takes,
/// `source_space`: `cpu_phys` for the mappers that program a translation from physical
/// addresses (identity, bus offset, IOMMU model, P2P, scatterlist bridge), `cpu_virt` for back
/// ends that pin and translate process memory themselves (VFIO type1). `try_map` exists only
/// for lists of that space, so a phys list handed to a virtual-address mapper, or a virtual
/// list to a physical one, does not compile (generic code asks for `phys_dma_mapper` or
/// `virt_dma_mapper`). Mappers are the only sanctioned place where a CPU address becomes a DMA
/// address.
///
/// What a mapping costs is the mapper's business, following Gunthorpe's 2022 sketch: without an
/// IOMMU it may alias the CPU list (no allocation at all), an IOMMU may return one entry for the
/// whole buffer, and only the awkward cases (bus offsets, legacy scatterlists) allocate a full
/// list. Callers see the same `dma_mapping` interface in every case.
///
/// Lifetimes (one rule for every phyr mapper, and for mappers written outside phyr):
///  - A mapping that OWNS something (IOVA space and page-table entries, an owned DMA list,
///    bounce buffers, a legacy layer's scatterlist state, a VFIO DMA mapping, an inner mapper's
///    mapping) is RAII: destroying a still-mapped mapping releases all of it, exactly once, the
///    same way `try_unmap` would. Dropping a mapping is therefore never a leak; `try_unmap` is
///    the explicit, early form of the same release. To do this a mapping holds a pointer to
///    what it must give back to (the IOMMU domain, the VFIO container, the bounce pool) or a
///    copy of the callback that releases it; it never points to the mapper object itself, so a
///    mapper may be moved or destroyed while its mappings live.
///  - What a mapping points to (domain, container, pool, a borrowed CPU list) must outlive it.
///    Back ends count their live mappings; destroying a back end with live mappings asserts in
///    debug builds, and the count is queryable (e.g. `iommu_domain::stats().live_mappings`) so
///    tests and release builds can report leaks of the back end's users.
///  - A mapping that only BORROWS (identity) releases its borrow on destruction too.
///  - `try_unmap(mapping&&)` returns `result<void>`: `errc::foreign_mapping` (and the mapping
///    left exactly as it was, still releasing itself when destroyed) when this mapper did not
///    make it or it is already unmapped or moved from. A foreign mapping is a caller's mistake,
///    but checking it costs one compare, is testable in every build, and with RAII ignoring the
///    error cannot leak. A failed `try_map` leaves nothing to release.
///  - Moves transfer ownership; a moved-from mapping is empty and releases nothing.
///  - IOVA reservations (map/iommu/iova_reservation.hpp) follow the same rule: destroying one
///    unlinks what is still linked and gives its IOVA back.
///
/// Who owns and who borrows (what each mapping releases when destroyed; what must outlive it):
///
///   mapping               owns                                   points to / borrows
///   identity_mapping      nothing                                the CPU list (debug borrow)
///   offset_mapping        its DMA list                           -
///   iommu_mapping         DMA list, IOVA block, page-table PTEs  the iommu_domain
///   iova_reservation      IOVA block, its links, two bitmaps     the back end (domain, VFIO)
///   sg_bridge_mapping     DMA list, the legacy scatterlist,      a copy of unmap_sg (and what
///                         the legacy layer's state (unmap_sg)    that refers to)
///   p2p_mapping           DMA list, scratch list, Inner's        the registry/topology (only
///                         mapping (released by Inner's rule)     while mapping), Inner's back end
///   vfio_mapping          DMA list, VFIO DMA chunks, IOVA block  see os/linux/vfio/mapper.hpp
///   bounce mappings       bounce slots                           see map/bounce_mapper.hpp
#pragma once

#include <atomic>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

#include <phyr/container/range_list.hpp>
#include <phyr/core/address_space.hpp>
#include <phyr/core/allocator.hpp>
#include <phyr/core/error.hpp>
#include <phyr/core/range.hpp>
#include <phyr/core/unsatisfied.hpp>

namespace phyr::inline v0 {

/// Which way the device moves data; IOMMU mappers turn it into page permissions, cache
/// maintenance layers into flush/invalidate choices.
enum class dma_direction : std::uint8_t {
  to_device,      ///< device reads memory (DMA_TO_DEVICE)
  from_device,    ///< device writes memory (DMA_FROM_DEVICE)
  bidirectional,  ///< both
};

[[nodiscard]] constexpr const char* to_string(dma_direction d) noexcept {
  switch (d) {
    case dma_direction::to_device:
      return "to_device";
    case dma_direction::from_device:
      return "from_device";
    case dma_direction::bidirectional:
      return "bidirectional";
  }
  return "unknown";
}

/// False for a value outside the enumeration (e.g. cast from a foreign integer); mappers reject
/// it with `errc::invalid_argument`.
[[nodiscard]] constexpr bool is_valid(dma_direction d) noexcept {
  return d == dma_direction::to_device || d == dma_direction::from_device ||
         d == dma_direction::bidirectional;
}

/// The opt-in marker every mapper names as `mapper_concept`.
struct dma_mapper_tag {};

/// The mask for a device that drives `bits` address lines (the kernel's DMA_BIT_MASK).
/// 1..64 bits; anything else is `errc::invalid_argument`.
[[nodiscard]] constexpr result<std::uint64_t> dma_mask_from_bits(unsigned bits) noexcept {
  if (bits == 0 || bits > 64) return errc::invalid_argument;
  return bits == 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << bits) - 1;
}

namespace detail {

/// The body of every mapper's `try_set_dma_mask`: a bad `bits` leaves `mask` as it was.
[[nodiscard]] constexpr result<void> assign_dma_mask(std::uint64_t& mask, unsigned bits) noexcept {
  auto m = dma_mask_from_bits(bits);
  if (!m) return m.error();
  mask = *m;
  return {};
}

template <class It, class Space>
concept yields_range_of = requires(It it) {
  requires std::same_as<std::remove_cvref_t<decltype(*it)>, range<Space>>;
  { ++it } -> std::same_as<It&>;
};

template <class Mp, class Space>
concept mapping_iterable = requires(const Mp& m) {
  m.begin();
  m.end();
  { m.begin() != m.end() } -> std::convertible_to<bool>;
  requires yields_range_of<decltype(m.begin()), Space>;
};

template <class Mp>
concept mapping_sized = requires(const Mp& m) {
  { m.size() } -> std::convertible_to<std::size_t>;
  { m.total_bytes() } -> std::convertible_to<std::uint64_t>;
};

template <class M>
concept mapper_opted_in = (requires { typename M::mapper_concept; } &&
                           std::same_as<typename M::mapper_concept, dma_mapper_tag>) ||
                          unsatisfied<
                              "dma_mapper: the type must opt in with "
                              "`using mapper_concept = phyr::dma_mapper_tag;`",
                              M>();

template <class M>
concept mapper_names_its_types =
    (requires {
      typename M::bus_type;
      typename M::space_type;
      typename M::mapping;
    } &&
     std::same_as<typename M::space_type, dma_space<typename M::bus_type>>) ||
    unsatisfied<
        "dma_mapper: the type must name `bus_type`, `space_type` "
        "(= phyr::dma_space<bus_type>) and `mapping`",
        M>();

template <class M>
concept mapper_names_its_source =
    (requires { typename M::source_space; } && cpu_accessible_space<typename M::source_space>) ||
    unsatisfied<
        "dma_mapper: the type must name the CPU space it maps as `source_space` "
        "(phyr::cpu_phys or phyr::cpu_virt)",
        M>();

}  // namespace detail

/// A type `Mp` is a DMA mapping of `Space` if:
///  1. iterating it (const) yields `range<Space>` values, by value or by const reference;
///  2. `size()` gives the number of ranges and `total_bytes()` their summed length;
///  3. it is nothrow move constructible (it travels in `result<>`).
/// It does not check that the ranges are what the device may use; the mapper guarantees that.
template <class Mp, class Space>
concept dma_mapping = (address_space<Space> && std::is_nothrow_move_constructible_v<Mp> &&
                       detail::mapping_iterable<Mp, Space> && detail::mapping_sized<Mp>) ||
                      detail::unsatisfied<
                          "dma_mapping: needs begin()/end() yielding phyr::range<Space>, "
                          "size(), total_bytes(), and a noexcept move constructor",
                          Mp, Space>();

namespace detail {

template <class R, class T>
inline constexpr bool is_result_of_v = false;
template <class T, class E>
inline constexpr bool is_result_of_v<result<T, E>, T> = true;

/// `result<T>` or `result<T, E>` with a richer error (an OS back end's `sys_error`).
template <class R, class T>
concept result_of = is_result_of_v<R, T>;

/// The mapping a mapper gives for a view: its `slice_mapping` when it names one, else its
/// `mapping`.
template <class M>
struct slice_mapping_of {
  using type = typename M::mapping;
};
template <class M>
  requires requires { typename M::slice_mapping; }
struct slice_mapping_of<M> {
  using type = typename M::slice_mapping;
};

template <class M>
concept mapper_maps = requires(M& m, const range_list<range<typename M::source_space>>& list,
                               range_list_view<range<typename M::source_space>> view,
                               dma_direction dir) {
  { m.try_map(list, dir) }
  noexcept->result_of<typename M::mapping>;
  { m.try_map(view, dir) }
  noexcept->result_of<typename slice_mapping_of<M>::type>;
}
|| unsatisfied<
       "dma_mapper: needs noexcept `result<mapping> try_map(const "
       "range_list<range<source_space>>&, dma_direction)` and `result<slice_mapping>` (or "
       "`result<mapping>`) for range_list_view<range<source_space>>",
       M>();

template <class M>
concept mapper_unmaps = requires(M& m, typename M::mapping& mp,
                                 typename slice_mapping_of<M>::type& sp) {
  { m.try_unmap(std::move(mp)) }
  noexcept->result_of<void>;
  { m.try_unmap(std::move(sp)) }
  noexcept->result_of<void>;
}
|| unsatisfied<"dma_mapper: needs noexcept `result<void> try_unmap(mapping&&)` (and for "
               "slice_mapping&& when it names one)",
               M>();

template <class M>
concept mapper_output_is_mapping =
    (dma_mapping<typename M::mapping, typename M::space_type> &&
     dma_mapping<typename slice_mapping_of<M>::type, typename M::space_type>) ||
    unsatisfied<"dma_mapper: `mapping` (and `slice_mapping`, when named) must satisfy "
                "phyr::dma_mapping<..., space_type>",
                M>();

}  // namespace detail

/// A type `M` is a DMA mapper if:
///  1. it opts in with `using mapper_concept = phyr::dma_mapper_tag;`;
///  2. it names `bus_type`, `space_type` (= `dma_space<bus_type>`) and `mapping`;
///  3. it names `source_space`, a CPU-accessible space (`cpu_phys` or `cpu_virt`);
///  4. `mapping` (and `slice_mapping`, when it names one) is a `dma_mapping` of `space_type`;
///  5. `m.try_map(list, dir)` is noexcept and returns `result<mapping>` for a
///     `const range_list<range<source_space>>&` (real mappers take any allocator), and
///     `m.try_map(view, dir)` returns `result<slice_mapping_t<M>>` for a
///     `range_list_view<range<source_space>>`: the mapper's `slice_mapping` when it names one
///     (the identity mapper: a whole list maps to two pointers, a slice to a copy of the view),
///     else `mapping`; lists of no other space do not map;
///  6. `m.try_unmap(std::move(mp))` is noexcept and returns `result<void>` for both mapping
///     types; a mapping this mapper did not make, or already unmapped, gives
///     `errc::foreign_mapping` and is left as is.
/// In 5 and 6 the result may carry a richer error than `errc` (`result<mapping, sys_error>`
/// for an OS back end that keeps the errno); `if (!r) return r.error();` works either way.
/// It does not check thread safety, what a mapping borrows, or that destroying a mapping
/// releases it (the lifetime rule in the file comment; each mapper documents and tests it).
/// Conventions every phyr mapper follows: an empty list, or a direction that is not one of the
/// three enumerators, is `errc::invalid_argument`; an address above the device's DMA mask is
/// `errc::not_addressable`; a failed map changes nothing and leaks nothing.
template <class M>
concept dma_mapper = detail::mapper_opted_in<M> && detail::mapper_names_its_types<M> &&
    detail::mapper_names_its_source<M> && detail::mapper_output_is_mapping<M> &&
    detail::mapper_maps<M> && detail::mapper_unmaps<M>;

/// A `dma_mapper` whose `source_space` is `Space`: generic code that hands the mapper lists of
/// `Space` asks for this (or one of the two names below), never for plain `dma_mapper`.
template <class M, class Space>
concept dma_mapper_from =
    dma_mapper<M> && (std::same_as<typename M::source_space, Space> ||
                      detail::unsatisfied<
                          "dma_mapper_from: the mapper takes lists of another address space "
                          "(its `source_space`)",
                          M, Space>());

/// Maps `range_list<phys_range>`: identity, bus offset, IOMMU model, P2P, scatterlist bridge.
template <class M>
concept phys_dma_mapper = dma_mapper_from<M, cpu_phys>;

/// Maps `range_list<virt_range>` (process memory): back ends that pin and translate in the
/// kernel, such as the VFIO type1 mapper of os/linux/vfio.
template <class M>
concept virt_dma_mapper = dma_mapper_from<M, cpu_virt>;

namespace detail {

/// Identity of a mapper object, stamped into each mapping so `unmap` can reject foreign
/// mappings in O(1). Not the object's address: a mapper that is moved keeps its identity
/// (its outstanding mappings stay valid), a copy is a new mapper with a new identity, and
/// 0 never names a mapper, so an unmapped or moved-from mapping carries 0.
class mapper_id {
 public:
  mapper_id() noexcept : v_(next()) {}
  mapper_id(const mapper_id&) noexcept : v_(next()) {}
  mapper_id(mapper_id&& o) noexcept : v_(o.v_) { o.v_ = next(); }
  mapper_id& operator=(const mapper_id& o) noexcept {
    if (this != &o) v_ = next();
    return *this;
  }
  mapper_id& operator=(mapper_id&& o) noexcept {
    if (this != &o) {
      v_ = o.v_;
      o.v_ = next();
    }
    return *this;
  }
  [[nodiscard]] std::uint64_t value() const noexcept { return v_; }
  /// Whether a mapping stamped `owner` was made by this mapper; an unstamped one (0) never is.
  [[nodiscard]] bool owns(std::uint64_t owner) const noexcept { return owner != 0 && owner == v_; }
  /// The body of a mapper's try_unmap (the lifetime rule above): calls `release()` for a
  /// mapping stamped `owner` by this mapper; any other is foreign_mapping and stays as it was.
  template <class Release>
  [[nodiscard]] result<void> try_release(std::uint64_t owner, Release release) const noexcept {
    if (!owns(owner)) return errc::foreign_mapping;
    release();
    return {};
  }

 private:
  static std::uint64_t next() noexcept {
    // Relaxed: only uniqueness matters, not ordering with other memory.
    static std::atomic<std::uint64_t> counter{0};
    return counter.fetch_add(1, std::memory_order_relaxed) + 1;
  }
  std::uint64_t v_;
};

/// The names the dma_mapper concept asks of a mapper for bus `Bus` that takes lists of
/// `Source` (the opt-in tag among them). phyr's mappers inherit them and name their `mapping`
/// themselves; a mapper written elsewhere may as well spell the four out.
template <class Bus, class Source>
struct mapper_names {
  using mapper_concept = dma_mapper_tag;
  using source_space = Source;
  using bus_type = Bus;
  using space_type = dma_space<Bus>;
};

/// What the mappings that own their DMA list share: the list, the stamp of the mapper that
/// made it, the read-only interface over both, and moves that leave the source unstamped (so
/// a moved-from mapping is foreign to every mapper). A public base, so the forwarding is the
/// mapping's own interface; only a mapping type builds one.
template <class Bus, segment_allocator Alloc>
class owned_dma_list {
 public:
  using space_type = dma_space<Bus>;
  using value_type = dma_range<Bus>;
  using list_type = range_list<dma_range<Bus>, Alloc>;
  using const_iterator = typename list_type::const_iterator;
  using iterator = const_iterator;

  [[nodiscard]] const_iterator begin() const noexcept { return list_.begin(); }
  [[nodiscard]] const_iterator end() const noexcept { return list_.end(); }
  [[nodiscard]] std::size_t size() const noexcept { return list_.size(); }
  [[nodiscard]] bool empty() const noexcept { return list_.empty(); }
  [[nodiscard]] std::uint64_t total_bytes() const noexcept { return list_.total_bytes(); }
  /// True from a successful `try_map` until `try_unmap`, destruction or a move away.
  [[nodiscard]] bool mapped() const noexcept { return owner_ != 0; }
  /// The DMA list itself (e.g. to slice it or take a view).
  [[nodiscard]] const list_type& ranges() const noexcept { return list_; }

 protected:
  owned_dma_list() noexcept = default;
  explicit owned_dma_list(Alloc a) noexcept : list_(a) {}
  owned_dma_list(list_type&& l, std::uint64_t owner) noexcept
      : list_(std::move(l)), owner_(owner) {}
  owned_dma_list(owned_dma_list&& o) noexcept : list_(std::move(o.list_)), owner_(o.owner_) {
    o.owner_ = 0;
  }
  owned_dma_list& operator=(owned_dma_list&& o) noexcept {
    if (this != &o) {
      list_ = std::move(o.list_);
      owner_ = o.owner_;
      o.owner_ = 0;
    }
    return *this;
  }
  owned_dma_list(const owned_dma_list&) = delete;
  owned_dma_list& operator=(const owned_dma_list&) = delete;
  ~owned_dma_list() = default;

  /// Frees the list now (moved out, so its segments go back to the allocator on return) and
  /// unstamps the mapping: the last step of an unmap.
  void drop_list() noexcept {
    [[maybe_unused]] const list_type freed = std::move(list_);
    owner_ = 0;
  }

  list_type list_{};
  std::uint64_t owner_ = 0;  // detail::mapper_id of the mapper that made it; 0 = none
};

}  // namespace detail

/// The mapping type of mapper `M`.
template <dma_mapper M>
using mapping_t = typename M::mapping;
/// What `M` gives for a view: its `slice_mapping` if it names one, else `mapping_t<M>`.
template <dma_mapper M>
using slice_mapping_t = typename detail::slice_mapping_of<M>::type;
/// The CPU space mapper `M` takes lists of.
template <dma_mapper M>
using mapper_source_space_t = typename M::source_space;

// ---- DMA sync -------------------------------------------------------------------------------
//
// When a driver must call which (the Linux DMA API's rule, which busdma and NetBSD share):
//  - After a successful try_map the mapping is ready for the device: nothing to call.
//  - The CPU wrote the buffer after try_map and the device is to read it (a long-lived
//    to_device or bidirectional mapping reused for another I/O): `try_sync_for_device` first.
//  - The device wrote (from_device or bidirectional) and the CPU is to read: `try_sync_for_cpu`
//    first, or `try_unmap`, which does the same before releasing.
//  - The CPU looked and the device is to write again: `try_sync_for_device`.
// A byte sub-range (NetBSD's offset + length) limits the work to those bytes of the mapping.
// Coherent mappers (identity, offset, IOMMU on x86, ...) need none of this: for them both calls
// compile to nothing (tests/codegen checks the generated code). Only a mapper that declares
// `try_sync_for_device` / `try_sync_for_cpu` members does anything: the bounce mapper copies,
// and a mapper for a non-coherent platform runs its `cache_policy` hooks.

/// The bytes of a mapping a sync covers: `len` bytes from `offset` into the mapping's data in
/// list order. The default is the whole mapping.
struct dma_sync_range {
  std::uint64_t offset = 0;
  std::uint64_t len = ~std::uint64_t{0};  ///< ~0 = to the end of the mapping
};

/// Cache maintenance on a platform where devices do not snoop CPU caches: a policy type with
/// `static constexpr bool coherent`, `for_device(range, dir)` (before the device touches the
/// bytes: write back dirty lines, and drop them for from_device) and `for_cpu(range, dir)`
/// (before the CPU reads what the device wrote: drop stale lines). x86 and every other
/// cache-coherent DMA platform use `coherent_cache`, whose hooks are empty and never called.
template <class P>
concept cache_policy = requires(const phys_range& r, dma_direction d) {
  { P::coherent } -> std::convertible_to<bool>;
  { P::for_device(r, d) } noexcept;
  { P::for_cpu(r, d) } noexcept;
};

/// The policy of cache-coherent DMA (x86, and Arm systems with coherent interconnects).
struct coherent_cache {
  static constexpr bool coherent = true;
  static constexpr void for_device(const phys_range&, dma_direction) noexcept {}
  static constexpr void for_cpu(const phys_range&, dma_direction) noexcept {}
};
static_assert(cache_policy<coherent_cache>);

namespace detail {
template <class M>
concept mapper_syncs = requires(const M& m, const typename M::mapping& mp, dma_sync_range r) {
  { m.try_sync_for_device(mp, r) } noexcept -> std::same_as<result<void>>;
  { m.try_sync_for_cpu(mp, r) } noexcept -> std::same_as<result<void>>;
};

/// Who is to see the bytes after a sync.
enum class sync_for : bool { device, cpu };

/// The body of both free sync calls: the mapper's own member when it has sync members; for
/// any other mapper nothing at all, not even a range check.
template <sync_for To, class M, class Mp>
[[nodiscard]] constexpr result<void> sync(const M& m, const Mp& mp, dma_sync_range r) noexcept {
  if constexpr (!mapper_syncs<M>) {
    (void)m, (void)mp, (void)r;
    return {};
  } else if constexpr (To == sync_for::device) {
    return m.try_sync_for_device(mp, r);
  } else {
    return m.try_sync_for_cpu(mp, r);
  }
}
}  // namespace detail

/// Whether mappings of `M` ever need a sync call (false: every sync on them is a no-op).
template <dma_mapper M>
inline constexpr bool needs_dma_sync = detail::mapper_syncs<M>;

/// Makes `r`'s bytes of `mp` visible to the device (see the rule above). For a mapper without
/// sync members this is nothing at all, not even a range check; a syncing mapper reports
/// foreign_mapping and out_of_range (a sub-range past the mapping) as its members document.
template <dma_mapper M>
[[nodiscard]] constexpr result<void> try_sync_for_device(const M& m, const mapping_t<M>& mp,
                                                         dma_sync_range r = {}) noexcept {
  return detail::sync<detail::sync_for::device>(m, mp, r);
}
/// The same for a mapping of a view, when the mapper gives those their own type.
template <dma_mapper M>
  requires(!std::same_as<slice_mapping_t<M>, mapping_t<M>>)
[[nodiscard]] constexpr result<void> try_sync_for_device(const M& m, const slice_mapping_t<M>& mp,
                                                         dma_sync_range r = {}) noexcept {
  return detail::sync<detail::sync_for::device>(m, mp, r);
}

/// Makes `r`'s bytes the device wrote visible to the CPU (see the rule above). Same contract
/// as try_sync_for_device.
template <dma_mapper M>
[[nodiscard]] constexpr result<void> try_sync_for_cpu(const M& m, const mapping_t<M>& mp,
                                                      dma_sync_range r = {}) noexcept {
  return detail::sync<detail::sync_for::cpu>(m, mp, r);
}
/// The same for a mapping of a view, when the mapper gives those their own type.
template <dma_mapper M>
  requires(!std::same_as<slice_mapping_t<M>, mapping_t<M>>)
[[nodiscard]] constexpr result<void> try_sync_for_cpu(const M& m, const slice_mapping_t<M>& mp,
                                                      dma_sync_range r = {}) noexcept {
  return detail::sync<detail::sync_for::cpu>(m, mp, r);
}

}  // namespace phyr
