/// One-call registration of real buffers: pin (pagemap) and register, or map into a VFIO
/// container and register the IOVAs; unregistering undoes both, in the right order.
///
///   phyr::phys_registry phys;
///   auto pr = phyr::try_pin_and_register(phys, buf, len);     // errors of try_pin / try_register
///   if (!pr) return pr.error();
///   // ... per I/O: phys.reader().translate(...) ...
///   (void)pr->try_unregister();                               // or ~pinned_registration
///
///   phyr::dma_registry<nvme0> dma;
///   auto vr = phyr::try_map_and_register(dma, mapper, buf, len,
///                                        phyr::dma_direction::bidirectional);
///   if (!vr) return vr.error();                               // sys_error (errno of MAP_DMA)
///
/// Order: pin/map first, then register (so the registry never translates to memory that is not
/// pinned or mapped); unregister first, then unpin/unmap (so no new translation hands out an
/// address that is about to go). If registering fails the pin or mapping is released before
/// returning. If unregistering fails (out_of_memory building the new snapshot) the buffer stays
/// registered AND pinned/mapped, and the object keeps owning both: dropping the pin under a live
/// registration would let translations point at memory the kernel may reuse.
#pragma once

#include <cstddef>
#include <type_traits>
#include <utility>

#include <phyr/config.hpp>
#include <phyr/container/range_list.hpp>
#include <phyr/core/address_space.hpp>
#include <phyr/core/error.hpp>
#include <phyr/core/range.hpp>
#include <phyr/map/mapper.hpp>
#include <phyr/os/linux/pagemap.hpp>
#include <phyr/os/linux/vfio/mapper.hpp>
#include <phyr/registry/mem_registry.hpp>

namespace phyr::inline v0 {

/// A pinned buffer registered in a physical registry. Move-only; the destructor unregisters
/// and unpins (asserting in debug builds that unregistering worked).
template <class Registry, segment_allocator PinAlloc = default_allocator>
class pinned_registration {
  static_assert(std::is_same_v<typename Registry::target_space, cpu_phys>,
                "pinned_registration needs a registry translating to cpu_phys");

 public:
  pinned_registration(pinned_registration&& o) noexcept
      : reg_(std::exchange(o.reg_, nullptr)), buf_(std::move(o.buf_)), va_(o.va_) {}
  pinned_registration& operator=(pinned_registration&&) = delete;
  pinned_registration(const pinned_registration&) = delete;
  pinned_registration& operator=(const pinned_registration&) = delete;
  ~pinned_registration() {
    const result<void> r = try_unregister();
    PHYR_ASSERT(r.has_value(), "pinned_registration: unregister failed in destructor");
    (void)r;
  }

  /// Unregisters, then unpins. Errors: out_of_memory (still registered and pinned).
  /// A second call is a no-op.
  result<void> try_unregister() noexcept {
    if (reg_ == nullptr) return {};
    if (auto r = reg_->try_unregister(va_); !r) return r.error();
    reg_ = nullptr;
    buf_.unpin();
    return {};
  }
  [[nodiscard]] bool registered() const noexcept { return reg_ != nullptr; }
  [[nodiscard]] const virt_range& va() const noexcept { return va_; }
  [[nodiscard]] const pinned_buffer<PinAlloc>& buffer() const noexcept { return buf_; }

 private:
  template <class R, segment_allocator A>
  friend result<pinned_registration<R, A>> try_pin_and_register(R&, void*, std::size_t,
                                                                 pin_options) noexcept;
  pinned_registration(Registry* reg, pinned_buffer<PinAlloc>&& b, virt_range va) noexcept
      : reg_(reg), buf_(std::move(b)), va_(va) {}
  Registry* reg_;
  pinned_buffer<PinAlloc> buf_;
  virt_range va_;
};

/// Pins [p, p + n) and registers it with the physical pieces pagemap reported (flagged
/// `pinned`). Errors: those of `pinned_buffer::try_pin` (permission_denied without
/// CAP_SYS_ADMIN, ...) and of `try_register` (overlaps, ...); on failure nothing stays pinned.
template <class Registry, segment_allocator PinAlloc = default_allocator>
[[nodiscard]] result<pinned_registration<Registry, PinAlloc>> try_pin_and_register(
    Registry& reg, void* p, std::size_t n, pin_options opt = {}) noexcept {
  auto va = virt_range_of(p, n);
  if (!va) return va.error();
  auto pb = pinned_buffer<PinAlloc>::try_pin(p, n, opt);
  if (!pb) return pb.error();
  if (auto r = reg.try_register(*va, pb->ranges()); !r) return r.error();  // ~pb unpins
  return pinned_registration<Registry, PinAlloc>{&reg, std::move(*pb), *va};
}

/// A buffer mapped through a `vfio_mapper` and registered in a DMA registry. Move-only; the
/// destructor unregisters and then unmaps.
template <class Registry, class Bus, segment_allocator MapAlloc = default_allocator>
class vfio_registration {
  static_assert(std::is_same_v<typename Registry::target_space, dma_space<Bus>>,
                "vfio_registration needs a registry translating to the mapper's DMA space");

 public:
  using mapping_type = vfio_mapping<Bus, MapAlloc>;
  vfio_registration(vfio_registration&& o) noexcept
      : reg_(std::exchange(o.reg_, nullptr)),
        mapper_(o.mapper_),
        map_(std::move(o.map_)),
        va_(o.va_) {}
  vfio_registration& operator=(vfio_registration&&) = delete;
  vfio_registration(const vfio_registration&) = delete;
  vfio_registration& operator=(const vfio_registration&) = delete;
  ~vfio_registration() {
    const auto r = try_unregister();
    PHYR_ASSERT(r.has_value(), "vfio_registration: unregister failed in destructor");
    (void)r;
  }

  /// Unregisters, then unmaps (one VFIO_IOMMU_UNMAP_DMA per chunk). Errors: out_of_memory
  /// (still registered and mapped); an unmap error (the registration is gone, the mapper
  /// quarantined the IOVAs). A second call is a no-op.
  result<void, sys_error> try_unregister() noexcept {
    if (reg_ == nullptr) return {};
    if (auto r = reg_->try_unregister(va_); !r) return sys_error{r.error()};
    reg_ = nullptr;
    return mapper_->try_unmap(std::move(map_));
  }
  [[nodiscard]] bool registered() const noexcept { return reg_ != nullptr; }
  [[nodiscard]] const virt_range& va() const noexcept { return va_; }
  [[nodiscard]] const mapping_type& mapping() const noexcept { return map_; }

 private:
  template <class R, class B, segment_allocator A>
  friend result<vfio_registration<R, B, A>, sys_error> try_map_and_register(
      R&, vfio_mapper<B, A>&, void*, std::size_t, dma_direction) noexcept;
  vfio_registration(Registry* reg, vfio_mapper<Bus, MapAlloc>* m, mapping_type&& mp,
                    virt_range va) noexcept
      : reg_(reg), mapper_(m), map_(std::move(mp)), va_(va) {}
  Registry* reg_;
  vfio_mapper<Bus, MapAlloc>* mapper_ = nullptr;
  mapping_type map_;
  virt_range va_;
};

/// Maps [p, p + n) into the mapper's container (VFIO_IOMMU_MAP_DMA) and registers the IOVAs
/// it got. Errors: those of `vfio_mapper::try_map` (with errno) and of `try_register`; on
/// failure nothing stays mapped.
template <class Registry, class Bus, segment_allocator MapAlloc>
[[nodiscard]] result<vfio_registration<Registry, Bus, MapAlloc>, sys_error> try_map_and_register(
    Registry& reg, vfio_mapper<Bus, MapAlloc>& m, void* p, std::size_t n,
    dma_direction dir) noexcept {
  auto va = virt_range_of(p, n);
  if (!va) return sys_error{va.error()};
  range_list<virt_range> one;
  if (auto r = one.try_append(*va); !r) return sys_error{r.error()};
  auto mp = m.try_map(one, dir);
  if (!mp) return mp.error();
  if (auto r = reg.try_register(*va, *mp); !r) return sys_error{r.error()};  // ~mapping unmaps
  return vfio_registration<Registry, Bus, MapAlloc>{&reg, &m, std::move(*mp), *va};
}

}  // namespace phyr::inline v0
