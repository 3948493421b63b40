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
/// Gunthorpe's 2022 sketch. The mask check uses the list's tracked highest address, so it too
/// is O(1).
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

#include <phyr/container/range_list.hpp>
#include <phyr/core/address.hpp>
#include <phyr/core/allocator.hpp>
#include <phyr/core/error.hpp>
#include <phyr/core/range.hpp>
#include <phyr/map/mapper.hpp>

namespace phyr::inline v0 {

template <class Bus>
class identity_mapper;

/// What `identity_mapper<Bus>::try_map` returns: a view of the CPU list whose entries read as
/// `dma_range<Bus>`. Move-only; an empty (default-built, moved-from or unmapped) mapping has
/// no entries and is foreign to every mapper.
template <class Bus>
class identity_mapping {
  using cpu_view = range_list_view<phys_range>;
  using cpu_iterator = decltype(std::declval<const cpu_view&>().begin());

 public:
  using space_type = dma_space<Bus>;
  using value_type = dma_range<Bus>;

  /// Forward iterator producing each entry as a `dma_range<Bus>` value: same address, length
  /// and flag bits as the CPU entry (the one sanctioned phys -> DMA conversion).
  class iterator {
   public:
    using iterator_concept = std::forward_iterator_tag;
    using iterator_category = std::input_iterator_tag;  // reference is a value
    using value_type = dma_range<Bus>;
    using reference = dma_range<Bus>;
    using difference_type = std::ptrdiff_t;

    iterator() noexcept = default;
    [[nodiscard]] dma_range<Bus> operator*() const noexcept {
      // The CPU entry is a valid range already: re-checking it on every step of every walk
      // (split, PRPs, SGLs all read the mapping) would cost two compares and a branch each.
      const phys_range p = *it_;
      return dma_range<Bus>::make_unchecked(p.addr().value(), p.len(), p.flags());
    }
    iterator& operator++() noexcept {
      ++it_;
      return *this;
    }
    iterator operator++(int) noexcept {
      iterator t = *this;
      ++it_;
      return t;
    }
    friend bool operator==(const iterator& a, const iterator& b) noexcept { return a.it_ == b.it_; }
    /// for_each_range's segment walk: the CPU list's, each entry read as a DMA range.
    template <class F>
    PHYR_ALWAYS_INLINE friend bool walk_segments(const iterator& first, const iterator& last,
                                                 F& f) noexcept {
      auto as_dma = [&f](const phys_range& p) noexcept {
        return detail::call_continue(
            f, dma_range<Bus>::make_unchecked(p.addr().value(), p.len(), p.flags()));
      };
      return walk_segments(first.it_, last.it_, as_dma);
    }

   private:
    friend class identity_mapping;
    explicit iterator(cpu_iterator it) noexcept : it_(it) {}
    cpu_iterator it_{};
  };
  using const_iterator = iterator;

  identity_mapping() noexcept = default;
  identity_mapping(identity_mapping&& o) noexcept
      : cpu_(std::exchange(o.cpu_, cpu_view{})), owner_(std::exchange(o.owner_, 0)) {}
  identity_mapping& operator=(identity_mapping&& o) noexcept {
    if (this != &o) {
      release();
      cpu_ = std::exchange(o.cpu_, cpu_view{});
      owner_ = std::exchange(o.owner_, 0);
    }
    return *this;
  }
  identity_mapping(const identity_mapping&) = delete;
  identity_mapping& operator=(const identity_mapping&) = delete;
  ~identity_mapping() { release(); }

  [[nodiscard]] iterator begin() const noexcept { return iterator{cpu_.begin()}; }
  [[nodiscard]] iterator end() const noexcept { return iterator{cpu_.end()}; }
  [[nodiscard]] std::size_t size() const noexcept { return cpu_.size(); }
  [[nodiscard]] bool empty() const noexcept { return cpu_.empty(); }
  [[nodiscard]] std::uint64_t total_bytes() const noexcept { return cpu_.total_bytes(); }
  /// Smallest DMA address and largest last DMA byte (O(1)); the mapping must not be empty.
  [[nodiscard]] dma_addr<Bus> lowest() const noexcept {
    return dma_addr<Bus>{cpu_.lowest().value()};
  }
  [[nodiscard]] dma_addr<Bus> highest() const noexcept {
    return dma_addr<Bus>{cpu_.highest().value()};
  }
  /// True from a successful `try_map` until `unmap` (or a move away).
  [[nodiscard]] bool mapped() const noexcept { return owner_ != 0; }
  /// The CPU list this mapping aliases.
  [[nodiscard]] cpu_view cpu_ranges() const noexcept { return cpu_; }

 private:
  friend class identity_mapper<Bus>;
  identity_mapping(cpu_view v, std::uint64_t owner) noexcept : cpu_(v), owner_(owner) {
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

/// The identity mapper of bus `Bus`. Default-constructed with a 64-bit DMA mask.
template <class Bus>
class identity_mapper : public detail::mapper_names<Bus, cpu_phys> {
 public:
  using mapping = identity_mapping<Bus>;

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

  /// Maps `list` in O(1). Errors: empty list or bad direction -> invalid_argument; any byte
  /// above the DMA mask -> not_addressable.
  template <segment_allocator A>
  [[nodiscard]] result<mapping> try_map(const range_list<phys_range, A>& list,
                                        dma_direction dir) const noexcept {
    return try_map(list.view(), dir);
  }
  /// The same for a view (e.g. a slice); the borrow is on the list behind the view.
  [[nodiscard]] result<mapping> try_map(range_list_view<phys_range> view,
                                        dma_direction dir) const noexcept {
    if (!is_valid(dir) || view.empty()) return errc::invalid_argument;
    if (view.highest().value() > mask_) return errc::not_addressable;
    return mapping{view, id_.value()};
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
  /// Whether `m` is a live mapping this mapper made (what try_unmap checks).
  [[nodiscard]] bool owns(const mapping& m) const noexcept { return id_.owns(m.owner_); }

 private:
  std::uint64_t mask_ = ~std::uint64_t{0};
  detail::mapper_id id_{};
};

}  // namespace phyr
