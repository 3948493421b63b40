/// `p2p_mapper<Bus, Inner>`: the `dma_mapper` of one PCI client device whose lists may hold
/// peer memory (a GPU's BAR, an NVMe CMB, a NIC's BAR) as well as RAM.
///
///   struct nvme0 {};
///   phyr::iommu_domain dom;
///   phyr::iommu_mapper<nvme0> iommu{dom};                        // or identity_mapper<nvme0>
///   auto m = phyr::p2p_mapper<nvme0, phyr::iommu_mapper<nvme0>>::create(
///       iommu, registry, topology, nvme_bdf);                    // not_found: unknown client
///   auto mp = m->try_map(list, phyr::dma_direction::to_device);
///   if (!mp && mp.error() == phyr::errc::p2p_not_supported) bounce_through_ram();
///   for (const phyr::dma_range<nvme0>& r : *mp)
///     program(r.addr().value(), r.len(), phyr::has_flags(r.flags(), phyr::range_flags::bus_addr));
///   phyr::must(m->try_unmap(std::move(*mp)));
///
/// Per input range (looked up in the `p2p_registry` once per range, never per page):
///  - RAM -> the Inner mapper (identity or IOMMU);
///  - a provider whose path to the client is `bus_address` (a common switch) -> DMA address =
///    phys + the window's bus offset, flagged `range_flags::bus_addr`, no IOMMU involved
///    (Logan's per-entry bus-address flag);
///  - a provider reached `through_host_bridge` -> the Inner mapper, like RAM;
///  - a provider with no path -> `errc::p2p_not_supported` and nothing mapped: a clean,
///    distinct refusal the caller can fall back on (Robin Murphy's point about callers that
///    retry forever). A range that straddles a window is `straddles_boundary`, a provider the
///    topology does not know is `not_found`, a bus address above the DMA mask `not_addressable`.
///
/// Output entries come in input order (coalesced like any range_list). Policies: `mixed`
/// (RAM and several providers, piecewise) or `single_source` (Logan's "all or nothing P2P
/// memory from a single device": the list is all RAM or all from one provider, else
/// invalid_argument).
///
/// How RAM reaches Inner: ONE Inner call per map, not one per RAM run. When the list is all
/// Inner-bound, Inner maps the caller's list itself (no copy). When it is mixed, the
/// Inner-bound ranges are copied, in order, into a list the mapping owns (at a stable heap
/// address, so an aliasing Inner such as identity_mapper can borrow it), Inner maps that list
/// once, and its output is cut back at the byte boundaries of the input ranges (Inner keeps the
/// byte order of what it maps, so the k-th Inner byte is the k-th Inner-bound input byte). Why:
/// an IOMMU then makes one IOVA block for all the RAM (fewer IOTLB entries, one allocation, one
/// unmap) instead of one per run, and range_list_view has no sub-view API to hand Inner the runs
/// without a copy anyway. `unmap` gives Inner back exactly the one mapping it made, and bus
/// address entries need no undoing.
///
/// Lifetime: the registry, topology and Inner mapper must outlive the p2p_mapper and its
/// mappings; when Inner aliases (identity) and the list is all RAM, the caller's list must too.
/// Thread safety: `try_map`/`unmap` only read the mapper; they may run concurrently with each
/// other if Inner allows it, and with registry registrations and topology policy changes (each
/// map classifies its whole list against one registry snapshot and decides each provider once).
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <phyr/config.hpp>
#include <phyr/container/range_list.hpp>
#include <phyr/core/address.hpp>
#include <phyr/core/allocator.hpp>
#include <phyr/core/detail/try_vector.hpp>
#include <phyr/core/error.hpp>
#include <phyr/core/range.hpp>
#include <phyr/map/mapper.hpp>
#include <phyr/map/p2p/p2p_registry.hpp>
#include <phyr/map/p2p/pci_topology.hpp>
#include <type_traits>
#include <utility>

namespace phyr::inline v0 {

enum class p2p_policy : std::uint8_t {
  mixed,          ///< RAM and any number of providers in one list, mapped piecewise
  single_source,  ///< all RAM, or all from one provider; anything else is invalid_argument
};

namespace detail {

/// Per-map memo of provider decisions, so each provider is decided once per list and both
/// passes over the list see the same decision even if the topology's policy changes meanwhile.
/// 16 inline entries (a list rarely touches more providers); more spill to a try_vector.
template <segment_allocator Alloc>
class p2p_decision_memo {
 public:
  struct entry {
    p2p_provider_id id;
    p2p_map_type type;
  };
  explicit p2p_decision_memo(Alloc a) noexcept : spill_(a) {}
  p2p_decision_memo(const p2p_decision_memo&) = delete;
  p2p_decision_memo& operator=(const p2p_decision_memo&) = delete;

  [[nodiscard]] const entry* find(p2p_provider_id id) noexcept {
    if (n_ != 0 && at(last_).id == id) return &at(last_);
    for (std::size_t i = 0; i < n_; ++i) {
      if (at(i).id == id) {
        last_ = i;
        return &at(i);
      }
    }
    return nullptr;
  }
  /// out_of_memory when the spill cannot grow; the memo is then unchanged.
  [[nodiscard]] result<void> try_add(entry e) noexcept {
    if (n_ >= inline_cap) {
      if (auto r = spill_.try_push_back(e); !r) return r;
    } else {
      inline_[n_] = e;
    }
    last_ = n_++;
    return {};
  }

 private:
  static constexpr std::size_t inline_cap = 16;
  [[nodiscard]] entry& at(std::size_t i) noexcept {
    return i < inline_cap ? inline_[i] : spill_[i - inline_cap];
  }
  entry inline_[inline_cap]{};
  try_vector<entry, Alloc> spill_;
  std::size_t n_ = 0;
  std::size_t last_ = 0;
};

}  // namespace detail

template <class Bus, phys_dma_mapper Inner, class Registry, class Topology,
          segment_allocator Alloc>
class p2p_mapper;

/// The DMA list (owned) plus Inner's mapping of the RAM and host-bridge pieces, if any.
/// Move-only; an empty (default-built, moved-from or unmapped) mapping is foreign to every
/// mapper. Dropping it without `unmap` drops Inner's mapping the same way (see Inner's rule).
template <class Bus, phys_dma_mapper Inner, segment_allocator Alloc = default_allocator>
class p2p_mapping : public detail::owned_dma_list<Bus, Alloc> {
  using base = detail::owned_dma_list<Bus, Alloc>;
  using inner_mapping = slice_mapping_t<Inner>;  // Inner maps views (the caller's, or scratch)
  using scratch_list = range_list<phys_range, Alloc>;

 public:
  p2p_mapping() noexcept = default;
  p2p_mapping(p2p_mapping&& o) noexcept : base(std::move(o)), alloc_(o.alloc_) { take(o); }
  p2p_mapping& operator=(p2p_mapping&& o) noexcept {
    if (this != &o) {
      release();
      base::operator=(std::move(o));
      alloc_ = o.alloc_;
      take(o);
    }
    return *this;
  }
  ~p2p_mapping() { release(); }

  /// Inner's mapping of the RAM / host-bridge pieces, or null when the list had none.
  [[nodiscard]] const inner_mapping* inner_part() const noexcept {
    return has_inner_ ? &inner_const() : nullptr;
  }

 private:
  template <class, phys_dma_mapper, class, class, segment_allocator>
  friend class p2p_mapper;
  explicit p2p_mapping(Alloc a) noexcept : base(a), alloc_(a) {}
  [[nodiscard]] inner_mapping& inner() noexcept {
    return *std::launder(reinterpret_cast<inner_mapping*>(inner_buf_));
  }
  [[nodiscard]] const inner_mapping& inner_const() const noexcept {
    return *std::launder(reinterpret_cast<const inner_mapping*>(inner_buf_));
  }
  /// The scratch list and Inner's mapping of `o`, whose DMA list and stamp the base took; `o`
  /// keeps neither.
  void take(p2p_mapping& o) noexcept {
    scratch_ = std::exchange(o.scratch_, nullptr);
    has_inner_ = o.has_inner_;
    if (has_inner_) ::new (static_cast<void*>(inner_buf_)) inner_mapping(std::move(o.inner()));
    o.drop_inner();
  }
  void drop_inner() noexcept {
    if (has_inner_) inner().~inner_mapping();
    has_inner_ = false;
  }
  // Inner's mapping may borrow the scratch list, so it goes first.
  void release() noexcept {
    drop_inner();
    if (scratch_ != nullptr) {
      scratch_->~scratch_list();
      alloc_.deallocate(scratch_, sizeof(scratch_list), alignof(scratch_list));
      scratch_ = nullptr;
    }
    this->list_ = typename base::list_type{alloc_};
    this->owner_ = 0;
  }

  scratch_list* scratch_ = nullptr;  // heap: its address must not change while Inner borrows
  bool has_inner_ = false;
  alignas(inner_mapping) unsigned char inner_buf_[sizeof(inner_mapping)];
  [[no_unique_address]] Alloc alloc_{};
};

template <class Bus, phys_dma_mapper Inner, class Registry = p2p_registry<>,
          class Topology = pci_topology<>, segment_allocator Alloc = default_allocator>
class p2p_mapper : public detail::mapper_names<Bus, cpu_phys> {
  static_assert(std::is_same_v<typename Inner::bus_type, Bus>,
                "p2p_mapper: the Inner mapper must map for the same bus");
  using inner_mapping = slice_mapping_t<Inner>;  // Inner maps views (the caller's, or scratch)
  using scratch_list = range_list<phys_range, Alloc>;

 public:
  using inner_type = Inner;

  /// What try_map returns (p2p_mapping, at namespace scope like iommu_mapping).
  using mapping = p2p_mapping<Bus, Inner, Alloc>;

  /// A mapper for client device `client`. Errors: not_found (client not in `topo`).
  [[nodiscard]] static result<p2p_mapper> create(Inner& inner, const Registry& reg,
                                                 const Topology& topo, pci_bdf client,
                                                 p2p_policy policy = p2p_policy::mixed,
                                                 Alloc alloc = Alloc{}) noexcept {
    if (topo.find(client) == Topology::npos) return errc::not_found;
    return p2p_mapper{inner, reg, topo, client, policy, alloc};
  }

  /// The device address width for bus-address entries (Inner checks its own). 1..64 bits.
  [[nodiscard]] result<void> try_set_dma_mask(unsigned bits) noexcept {
    return detail::assign_dma_mask(mask_, bits);
  }
  [[nodiscard]] std::uint64_t dma_mask() const noexcept { return mask_; }
  [[nodiscard]] pci_bdf client() const noexcept { return client_; }
  [[nodiscard]] p2p_policy policy() const noexcept { return policy_; }
  [[nodiscard]] Inner& inner() const noexcept { return *inner_; }

  /// Maps `list` for the client (see the file comment). Errors: invalid_argument (empty list,
  /// bad direction, single_source violated), straddles_boundary, p2p_not_supported, not_found,
  /// not_addressable, out_of_memory, and whatever Inner reports. Strong guarantee: on error
  /// nothing is mapped and nothing allocated, and Inner is called only when nothing after it
  /// can fail, so a failed call leaves Inner's state (an IOMMU's caches and counters) as it
  /// was. The one exception: an Inner that returns more entries than it was given (none of
  /// phyr's mappers does) may need more output room after its map, and a failure there is
  /// undone through Inner's unmap.
  template <segment_allocator A>
  [[nodiscard]] result<mapping> try_map(const range_list<phys_range, A>& list,
                                        dma_direction dir) noexcept {
    return try_map(list.view(), dir);
  }
  [[nodiscard]] result<mapping> try_map(range_list_view<phys_range> view,
                                        dma_direction dir) noexcept {
    if (!is_valid(dir) || view.empty()) return errc::invalid_argument;
    auto rd = reg_->reader();
    detail::p2p_decision_memo<Alloc> memo{alloc_};
    std::uint32_t client_index = Topology::npos;

    // Pass 1: classify every range; refuse before anything is mapped.
    std::size_t inner_n = 0, bus_n = 0;
    bool saw_ram = false;
    p2p_provider_id first{};
    bool saw_provider = false;
    for (const phys_range r : view) {
      auto o = rd.lookup(r);
      if (!o) return o.error();
      if (o->is_ram()) {
        ++inner_n;
        saw_ram = true;
        if (policy_ == p2p_policy::single_source && saw_provider) return errc::invalid_argument;
        continue;
      }
      const p2p_window& w = o->window();
      if (policy_ == p2p_policy::single_source &&
          (saw_ram || (saw_provider && !(first == w.provider()))))
        return errc::invalid_argument;
      if (!saw_provider) first = w.provider();
      saw_provider = true;
      auto t = decide(memo, client_index, w.provider());
      if (!t) return t.error();
      if (*t == p2p_map_type::bus_address) {
        if (w.bus_address(r.last()) > mask_) return errc::not_addressable;
        ++bus_n;
      } else {
        ++inner_n;
      }
    }

    mapping m{alloc_};
    m.owner_ = id_.value();
    if (bus_n == 0) {
      // All Inner-bound: Inner maps the caller's list itself. Room for its output is made
      // first, so nothing after Inner's map can fail (see reserve_output).
      if (auto r = reserve_output(m, view.size()); !r) return r.error();
      if (auto r = map_inner(m, view, dir); !r) return undo(m, r.error());
      if (auto r = copy_inner(m); !r) return undo(m, r.error());
      m.list_.shrink_to_fit();
      return result<mapping>{std::move(m)};
    }
    if (inner_n == 0) {
      for (const phys_range r : view) {
        const p2p_window w = rd.lookup(r)->window();
        if (!m.list_.try_append(bus_range(w, r))) return undo(m, errc::out_of_memory);
      }
      return result<mapping>{std::move(m)};
    }

    // Mixed: the Inner-bound ranges, in order, into a list the mapping owns.
    void* p = alloc_.allocate(sizeof(scratch_list), alignof(scratch_list));
    if (p == nullptr) return errc::out_of_memory;
    m.scratch_ = ::new (p) scratch_list{alloc_};
    for (const phys_range r : view) {
      auto o = rd.lookup(r);
      if (o->is_provider() && memo.find(o->window().provider())->type == p2p_map_type::bus_address)
        continue;
      if (!m.scratch_->try_append(r)) return undo(m, errc::out_of_memory);
    }
    // Pass 2 emits at most one piece per input range plus one per Inner entry past the first
    // of each input range: view.size() + inner_n covers any Inner whose output has no more
    // entries than its input.
    if (auto r = reserve_output(m, view.size() + inner_n); !r) return undo(m, r.error());
    if (auto r = map_inner(m, m.scratch_->view(), dir); !r) return undo(m, r.error());
    if (m.inner().total_bytes() != m.scratch_->total_bytes()) {
      PHYR_ASSERT(false, "Inner mapper changed the byte count of what it mapped");
      return undo(m, errc::invalid_argument);
    }
    // Pass 2: input order; Inner's bytes are cut at the input ranges' boundaries.
    auto it = m.inner().begin();
    const auto end = m.inner().end();
    std::uint64_t used = 0;  // bytes of *it already emitted
    for (const phys_range r : view) {
      auto o = rd.lookup(r);
      if (o->is_provider() &&
          memo.find(o->window().provider())->type == p2p_map_type::bus_address) {
        if (!m.list_.try_append(bus_range(o->window(), r))) return undo(m, errc::out_of_memory);
        continue;
      }
      std::uint64_t need = r.len();
      while (need != 0) {
        PHYR_ASSERT(it != end, "Inner output shorter than its input");
        if (it == end) return undo(m, errc::invalid_argument);
        const dma_range<Bus> d = *it;
        const std::uint64_t take = d.len() - used < need ? d.len() - used : need;
        if (!m.list_.try_append(dma_range<Bus>{d.addr() + used, take, d.flags()}))
          return undo(m, errc::out_of_memory);
        need -= take;
        used += take;
        if (used == d.len()) {
          ++it;
          used = 0;
        }
      }
    }
    m.list_.shrink_to_fit();
    return result<mapping>{std::move(m)};
  }

  /// A temporary list cannot be mapped: an aliasing Inner would outlive it.
  template <segment_allocator A>
  result<mapping> try_map(range_list<phys_range, A>&&, dma_direction) noexcept = delete;
  template <segment_allocator A>
  result<mapping> try_map(const range_list<phys_range, A>&&, dma_direction) noexcept = delete;

  /// Gives Inner back its mapping (if any) and frees the DMA list. foreign_mapping, with `m`
  /// left as it was, for a mapping another mapper made or one already unmapped; an error from
  /// Inner's unmap is passed on, `m` again left as it was.
  [[nodiscard]] result<void> try_unmap(mapping&& m) noexcept {
    if (!id_.owns(m.owner_)) return errc::foreign_mapping;
    if (m.has_inner_) {
      if (auto r = inner_->try_unmap(std::move(m.inner())); !r) return r.error();
      m.drop_inner();
    }
    m.release();
    return {};
  }

 private:
  p2p_mapper(Inner& inner, const Registry& reg, const Topology& topo, pci_bdf client,
             p2p_policy policy, Alloc alloc) noexcept
      : inner_(&inner), reg_(&reg), topo_(&topo), client_(client), policy_(policy), alloc_(alloc) {}

  // The client's index is looked up per map (once, at its first peer range), not cached in
  // the mapper: a topology replaced by a reload (load_pci_sysfs move-assigns it) renumbers
  // its devices.
  [[nodiscard]] result<p2p_map_type> decide(detail::p2p_decision_memo<Alloc>& memo,
                                            std::uint32_t& client_index,
                                            p2p_provider_id id) const noexcept {
    if (const auto* e = memo.find(id)) {
      if (e->type == p2p_map_type::not_supported) return errc::p2p_not_supported;
      return e->type;
    }
    if (client_index == Topology::npos) {
      client_index = topo_->find(client_);
      if (client_index == Topology::npos) return errc::not_found;
    }
    const auto pi = topo_->find(pci_bdf::from_provider_id(id));
    if (pi == Topology::npos) return errc::not_found;
    const p2p_map_type t = topo_->path_by_index(pi, client_index).type;
    if (t == p2p_map_type::not_supported) return errc::p2p_not_supported;
    if (auto r = memo.try_add({id, t}); !r) return r.error();
    return t;
  }

  [[nodiscard]] static dma_range<Bus> bus_range(const p2p_window& w, const phys_range& r) noexcept {
    return dma_range<Bus>{dma_addr<Bus>{w.bus_address(r.addr())}, r.len(),
                          r.flags() | range_flags::bus_addr};
  }

  template <class L>
  [[nodiscard]] result<void> map_inner(mapping& m, const L& what, dma_direction dir) noexcept {
    auto r = inner_->try_map(what, dir);
    if (!r) return r.error();
    ::new (static_cast<void*>(m.inner_buf_)) inner_mapping(std::move(*r));
    m.has_inner_ = true;
    return {};
  }

  [[nodiscard]] static result<void> copy_inner(mapping& m) noexcept {
    for (const dma_range<Bus> d : m.inner()) {
      if (!m.list_.try_append(d)) return errc::out_of_memory;
    }
    return {};
  }

  // Makes room in the (empty) output list for `n` entries before Inner maps anything: n
  // entries that never coalesce (1 byte each, 1 byte apart) are appended and cleared, and
  // clear() keeps the segments for the appends that follow. Why: once Inner has mapped, the
  // only undo is Inner's unmap, which is not free of side effects (an IOMMU parks the IOVA
  // block in its per-thread cache and counts a map and an unmap), so every allocation a
  // successful map needs comes first. Unused room is returned by shrink_to_fit at the end.
  [[nodiscard]] static result<void> reserve_output(mapping& m, std::size_t n) noexcept {
    for (std::size_t i = 0; i < n; ++i) {
      if (!m.list_.try_append(
              dma_range<Bus>{dma_addr<Bus>{2 * static_cast<std::uint64_t>(i)}, 1})) {
        m.list_.clear();
        m.list_.shrink_to_fit();
        return errc::out_of_memory;
      }
    }
    m.list_.clear();
    return {};
  }

  // Rolls back a partly built mapping: Inner's part is unmapped, everything freed.
  [[nodiscard]] errc undo(mapping& m, errc e) noexcept {
    if (m.has_inner_) {
      [[maybe_unused]] auto r = inner_->try_unmap(std::move(m.inner()));
      PHYR_ASSERT(r.has_value(), "Inner refused to unmap its own fresh mapping");
      m.drop_inner();
    }
    m.release();
    return e;
  }

  Inner* inner_;
  const Registry* reg_;
  const Topology* topo_;
  pci_bdf client_;
  p2p_policy policy_;
  std::uint64_t mask_ = ~std::uint64_t{0};
  detail::mapper_id id_{};
  [[no_unique_address]] Alloc alloc_{};
};

}  // namespace phyr::inline v0
