/// `identity_mapper<Bus>`: DMA address == physical address (no IOMMU, or an IOMMU in
/// passthrough). Mapping costs O(1) whatever the list's length and allocates nothing: the
/// mapping *aliases* the CPU list and presents its entries as `dma_range<Bus>` on the fly.
///
///   struct nic0 {};
///   phyr::identity_mapper<nic0> m;                  // 64-bit DMA mask
///   phyr::must(m.try_set_dma_mask(32));                 // or a 32-bit device
///   auto mp = m.try_map(cpu_list, phyr::dma_direction::from_device);
///   if (!mp) return mp.error();                     // not_addressable: above the mask
///   for (phyr::dma_range<nic0> r : *mp) post_rx_buffer(r.addr().value(), r.len());
///   phyr::must(m.try_unmap(std::move(*mp)));
///
/// This is the "return a pointer to the first datastructure if there is no iommu" case of
/// Gunthorpe's 2022 sketch, literally: mapping a whole list gives an `identity_mapping`, two
/// pointers into the list and the mapper's stamp. Mapping a view (a slice) gives an
/// `identity_slice_mapping`, which copies the view, since a slice's bounds must live
/// somewhere (the mapper's `slice_mapping`; mapper.hpp). The mask check uses the tracked
/// highest address, so it too is O(1).
///
/// Lifetime: a mapping borrows the CPU list, which must outlive it and stay unchanged until the
/// mapping is unmapped or destroyed. Debug builds count the borrow on the list (acquired by
/// `try_map`, released by `unmap` or by the mapping's destructor) and the list asserts if it is
/// changed or destroyed while borrowed; release builds count nothing. Mapping a temporary list
/// does not compile. Dropping a mapping without `unmap` is fine: there is nothing to undo.
///
/// Thread safety: `try_map` and `unmap` only read the mapper and may run concurrently;
/// `try_set_dma_mask` may not run concurrently with them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <type_traits>
#include <utility>

#include <phyr/config.hpp>
#include <phyr/container/range_list.hpp>
#include <phyr/container/range_source.hpp>
#include <phyr/core/address.hpp>
#include <phyr/core/allocator.hpp>
#include <phyr/core/error.hpp>
#include <phyr/core/range.hpp>
#include <phyr/map/mapper.hpp>

namespace phyr::inline v0 {

template <class Bus>
class identity_mapper;

namespace detail {

/// The forward iterator of both identity mapping types: each CPU entry read as a
/// `dma_range<Bus>` (same address, length and flag bits: the one sanctioned phys -> DMA
/// conversion).
template <class Bus>
class identity_iterator {
  using cpu_iterator = range_list_view<phys_range>::iterator;

 public:
  using iterator_concept = std::forward_iterator_tag;
  using iterator_category = std::input_iterator_tag;  // reference is a value
  using value_type = dma_range<Bus>;
  using reference = dma_range<Bus>;
  using difference_type = std::ptrdiff_t;

  identity_iterator() noexcept = default;
  explicit identity_iterator(cpu_iterator it) noexcept : it_(it) {}
  [[nodiscard]] dma_range<Bus> operator*() const noexcept {
    // The CPU entry is a valid range already: re-checking it on every step of every walk
    // (split, PRPs, SGLs all read the mapping) would cost two compares and a branch each.
    const phys_range p = *it_;
    return dma_range<Bus>::make_unchecked(p.addr().value(), p.len(), p.flags());
  }
  identity_iterator& operator++() noexcept {
    ++it_;
    return *this;
  }
  identity_iterator operator++(int) noexcept {
    identity_iterator t = *this;
    ++it_;
    return t;
  }
  friend bool operator==(const identity_iterator& a, const identity_iterator& b) noexcept {
    return a.it_ == b.it_;
  }
  /// for_each_range's segment walk: the CPU list's, each entry read as a DMA range.
  template <class F>
  PHYR_ALWAYS_INLINE friend bool walk_segments(const identity_iterator& first,
                                               const identity_iterator& last, F& f) noexcept {
    as_dma<F> g{f};
    return walk_segments(first.it_, last.it_, g);
  }

 private:
  // `f` reading CPU entries as DMA ranges; keeps f's walk_one_alone.
  template <class F>
  struct as_dma {
    static constexpr bool walk_one_alone = detail::walk_one_alone<F>;
    F& f;
    PHYR_ALWAYS_INLINE bool operator()(const phys_range& p) const noexcept {
      return detail::call_continue(
          f, dma_range<Bus>::make_unchecked(p.addr().value(), p.len(), p.flags()));
    }
  };

  cpu_iterator it_{};
};

}  // namespace detail

// A whole-list mapping's layout depends on PHYR_ENABLE_BORROW_CHECKS (it keeps the borrow
// counter's address only where borrows are counted), so both mappings live in the
// namespace that setting selects, as range_list does: mixing the two layouts fails to link.
inline namespace PHYR_BORROW_ABI_NAMESPACE {

/// What `identity_mapper<Bus>::try_map` returns for a whole list: the list itself, read as
/// `dma_range<Bus>` entries. Two pointers into the list and the mapper's stamp (24 bytes; a
/// debug build with borrow checks adds a third pointer): no entry and no counter is copied,
/// so a per-I/O map writes three words. Move-only; an empty (default-built, moved-from or
/// unmapped) mapping has no entries and is foreign to every mapper.
template <class Bus>
class identity_mapping {
 public:
  using space_type = dma_space<Bus>;
  using value_type = dma_range<Bus>;
  using iterator = detail::identity_iterator<Bus>;
  using const_iterator = iterator;

  identity_mapping() noexcept = default;
  identity_mapping(identity_mapping&& o) noexcept
      : core_(std::exchange(o.core_, core{})), owner_(std::exchange(o.owner_, 0)) {}
  identity_mapping& operator=(identity_mapping&& o) noexcept {
    if (this != &o) {
      release();
      core_ = std::exchange(o.core_, core{});
      owner_ = std::exchange(o.owner_, 0);
    }
    return *this;
  }
  identity_mapping(const identity_mapping&) = delete;
  identity_mapping& operator=(const identity_mapping&) = delete;
  ~identity_mapping() { release(); }

  [[nodiscard]] iterator begin() const noexcept {
    return iterator{range_list_view<phys_range>::begin_of(ref())};
  }
  [[nodiscard]] iterator end() const noexcept { return iterator{}; }
  [[nodiscard]] std::size_t size() const noexcept { return core_.n == nullptr ? 0 : core_.n->size; }
  [[nodiscard]] bool empty() const noexcept { return size() == 0; }
  [[nodiscard]] std::uint64_t total_bytes() const noexcept {
    return core_.n == nullptr ? 0 : core_.n->total;
  }
  /// The list's gap_bits() (range_list): its gaps are the mapping's.
  [[nodiscard]] std::uint64_t gap_bits() const noexcept {
    return core_.n == nullptr ? 0 : core_.n->gaps;
  }
  /// Smallest DMA address and largest last DMA byte (O(1)); the mapping must not be empty.
  [[nodiscard]] dma_addr<Bus> lowest() const noexcept {
    PHYR_ASSERT(!empty(), "lowest() of an empty mapping");
    return dma_addr<Bus>{core_.n->lowest};
  }
  [[nodiscard]] dma_addr<Bus> highest() const noexcept {
    PHYR_ASSERT(!empty(), "highest() of an empty mapping");
    return dma_addr<Bus>{core_.n->highest};
  }
  /// True from a successful `try_map` until `unmap` (or a move away).
  [[nodiscard]] bool mapped() const noexcept { return owner_ != 0; }
  /// The CPU list this mapping aliases, as a view. O(heap segments of the list).
  [[nodiscard]] range_list_view<phys_range> cpu_ranges() const noexcept {
    return range_list_view<phys_range>::whole(ref());
  }

 private:
  friend class identity_mapper<Bus>;
  // The list's entries and counters; the borrow counter only where borrows are counted.
  struct core {
    const detail::segment_header* head = nullptr;
    const detail::list_counters* n = nullptr;
#if PHYR_ENABLE_BORROW_CHECKS
    const detail::borrow_counter* borrows = nullptr;
#endif
  };
  identity_mapping(const detail::list_core_ref& c, std::uint64_t owner) noexcept
      : owner_(owner) {
    core_.head = c.head;
    core_.n = c.n;
#if PHYR_ENABLE_BORROW_CHECKS
    core_.borrows = c.borrows;
    core_.borrows->acquire();
#endif
  }
  [[nodiscard]] detail::list_core_ref ref() const noexcept {
#if PHYR_ENABLE_BORROW_CHECKS
    return {core_.head, core_.n, core_.borrows};
#else
    return {core_.head, core_.n, nullptr};
#endif
  }
  void release() noexcept {
#if PHYR_ENABLE_BORROW_CHECKS
    if (owner_ != 0 && core_.borrows != nullptr) core_.borrows->release();
#endif
    core_ = core{};
    owner_ = 0;
  }

  core core_{};
  std::uint64_t owner_ = 0;  // detail::mapper_id of the mapper that made it; 0 = none
};

/// What `identity_mapper<Bus>::try_map` returns for a view (a slice, or any view a caller
/// holds): a copy of the view, whose first and last entries may be trimmed, read as
/// `dma_range<Bus>` entries. Larger than a whole-list mapping (the view's eleven words), as
/// a slice's bounds and O(1) counters must live somewhere. Same lifetime and emptiness rules.
template <class Bus>
class identity_slice_mapping {
  using cpu_view = range_list_view<phys_range>;

 public:
  using space_type = dma_space<Bus>;
  using value_type = dma_range<Bus>;
  using iterator = detail::identity_iterator<Bus>;
  using const_iterator = iterator;

  identity_slice_mapping() noexcept = default;
  identity_slice_mapping(identity_slice_mapping&& o) noexcept
      : cpu_(std::exchange(o.cpu_, cpu_view{})), owner_(std::exchange(o.owner_, 0)) {}
  identity_slice_mapping& operator=(identity_slice_mapping&& o) noexcept {
    if (this != &o) {
      release();
      cpu_ = std::exchange(o.cpu_, cpu_view{});
      owner_ = std::exchange(o.owner_, 0);
    }
    return *this;
  }
  identity_slice_mapping(const identity_slice_mapping&) = delete;
  identity_slice_mapping& operator=(const identity_slice_mapping&) = delete;
  ~identity_slice_mapping() { release(); }

  [[nodiscard]] iterator begin() const noexcept { return iterator{cpu_.begin()}; }
  [[nodiscard]] iterator end() const noexcept { return iterator{cpu_.end()}; }
  [[nodiscard]] std::size_t size() const noexcept { return cpu_.size(); }
  [[nodiscard]] bool empty() const noexcept { return cpu_.empty(); }
  [[nodiscard]] std::uint64_t total_bytes() const noexcept { return cpu_.total_bytes(); }
  [[nodiscard]] std::uint64_t gap_bits() const noexcept { return cpu_.gap_bits(); }
  /// Smallest DMA address and largest last DMA byte (O(1)); the mapping must not be empty.
  [[nodiscard]] dma_addr<Bus> lowest() const noexcept {
    return dma_addr<Bus>{cpu_.lowest().value()};
  }
  [[nodiscard]] dma_addr<Bus> highest() const noexcept {
    return dma_addr<Bus>{cpu_.highest().value()};
  }
  /// True from a successful `try_map` until `unmap` (or a move away).
  [[nodiscard]] bool mapped() const noexcept { return owner_ != 0; }
  /// The CPU view this mapping aliases.
  [[nodiscard]] cpu_view cpu_ranges() const noexcept { return cpu_; }

 private:
  friend class identity_mapper<Bus>;
  identity_slice_mapping(cpu_view v, std::uint64_t owner) noexcept : cpu_(v), owner_(owner) {
    cpu_.debug_acquire_borrow();
  }
  void release() noexcept {
    if (owner_ != 0) cpu_.debug_release_borrow();
    cpu_ = cpu_view{};
    owner_ = 0;
  }

  cpu_view cpu_{};
  std::uint64_t owner_ = 0;  // detail::mapper_id of the mapper that made it; 0 = none
};

}  // namespace PHYR_BORROW_ABI_NAMESPACE

// Both alias a range_list (or a view of one) and read its counters.
template <class Bus>
inline constexpr bool enable_counted_source<identity_mapping<Bus>> = true;
template <class Bus>
inline constexpr bool enable_counted_source<identity_slice_mapping<Bus>> = true;

/// The identity mapper of bus `Bus`. Default-constructed with a 64-bit DMA mask.
template <class Bus>
class identity_mapper : public detail::mapper_names<Bus, cpu_phys> {
 public:
  using mapping = identity_mapping<Bus>;
  /// What mapping a view gives (mapper.hpp: slice_mapping_t).
  using slice_mapping = identity_slice_mapping<Bus>;

  identity_mapper() noexcept = default;

  /// A mapper for a device with `mask_bits` address bits (1..64, else invalid_argument).
  [[nodiscard]] static result<identity_mapper> create(unsigned mask_bits) noexcept {
    identity_mapper m;
    if (auto r = m.try_set_dma_mask(mask_bits); !r) return r.error();
    return m;
  }

  /// Sets the DMA mask to `bits` address bits (1..64); other values are invalid_argument and
  /// keep the old mask. Affects later maps only.
  [[nodiscard]] result<void> try_set_dma_mask(unsigned bits) noexcept {
    return detail::assign_dma_mask(mask_, bits);
  }
  [[nodiscard]] std::uint64_t dma_mask() const noexcept { return mask_; }

  /// Maps `list` in O(1): the mapping keeps pointers to the list's entries and counters.
  /// Errors: empty list or bad direction -> invalid_argument; any byte above the DMA mask ->
  /// not_addressable.
  template <segment_allocator A>
  [[nodiscard]] result<mapping> try_map(const range_list<phys_range, A>& list,
                                        dma_direction dir) const noexcept {
    if (!is_valid(dir) || list.empty()) return errc::invalid_argument;
    if (list.highest().value() > mask_) return errc::not_addressable;
    return mapping{list.core_ref(), id_.value()};
  }
  /// The same for a view (e.g. a slice), which the mapping copies; the borrow is on the list
  /// behind the view.
  [[nodiscard]] result<slice_mapping> try_map(range_list_view<phys_range> view,
                                              dma_direction dir) const noexcept {
    if (!is_valid(dir) || view.empty()) return errc::invalid_argument;
    if (view.highest().value() > mask_) return errc::not_addressable;
    return slice_mapping{view, id_.value()};
  }
  /// A mapping must not outlive its list, so a temporary list cannot be mapped.
  template <segment_allocator A>
  result<mapping> try_map(range_list<phys_range, A>&&, dma_direction) const noexcept = delete;
  template <segment_allocator A>
  result<mapping> try_map(const range_list<phys_range, A>&&, dma_direction) const noexcept = delete;

  /// Ends `m`'s borrow of its CPU list and empties it (destroying `m` would too). A mapping
  /// made by another mapper, or already unmapped, is `foreign_mapping` and left untouched.
  [[nodiscard]] result<void> try_unmap(mapping&& m) const noexcept {
    if (!id_.owns(m.owner_)) return errc::foreign_mapping;
    m.release();
    return {};
  }
  [[nodiscard]] result<void> try_unmap(slice_mapping&& m) const noexcept {
    if (!id_.owns(m.owner_)) return errc::foreign_mapping;
    m.release();
    return {};
  }
  /// Whether `m` is a live mapping this mapper made (what try_unmap checks).
  [[nodiscard]] bool owns(const mapping& m) const noexcept { return id_.owns(m.owner_); }
  [[nodiscard]] bool owns(const slice_mapping& m) const noexcept { return id_.owns(m.owner_); }

 private:
  std::uint64_t mask_ = ~std::uint64_t{0};
  detail::mapper_id id_{};
};

}  // namespace phyr
