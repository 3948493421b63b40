/// CPU access to memory named by physical ranges, for spaces that allow it.
///
///   // A window of physical memory the CPU has mapped (a kernel direct map, a /dev/mem or
///   // VFIO BAR mmap, a test buffer standing in for RAM):
///   phyr::phys_accessor acc{mapped_ptr, phyr::phys_addr{0x100000000}, window_bytes};
///   std::byte hdr[64];
///   if (auto r = acc.try_copy_from(range, /*offset=*/0, hdr, sizeof hdr); !r) return r.error();
///
/// Only spaces that declare `cpu_accessible` compile here: a DMA address means something to
/// one device and nothing to the CPU, so copying "through" a dma_range is a type error, not
/// a runtime check (see the compile-fail tests).
///
/// Code that copies between physical ranges (the bounce mapper) takes any
/// `phys_memory_accessor`: a type that says where the CPU sees a range's bytes
/// (`try_cpu_pointer`). `basic_phys_accessor` is one window; a kernel's direct map, a set of
/// mmap'd windows or a test's fake RAM are others.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>

#include <phyr/core/address.hpp>
#include <phyr/core/address_space.hpp>
#include <phyr/core/error.hpp>
#include <phyr/core/range.hpp>

namespace phyr::inline v0 {

/// A type `A` is a physical-memory accessor for `Space` if:
///  1. `Space` is CPU accessible;
///  2. `a.try_cpu_pointer(r)` (const, noexcept) returns `result<std::byte*>`: where the CPU sees
///     all `r.len()` bytes of `r`, contiguously, or `errc::not_mapped` when it does not.
/// It does not check how long the pointer stays valid; each accessor documents that.
template <class A, class Space = cpu_phys>
concept phys_memory_accessor =
    cpu_accessible_space<Space> && requires(const A& a, const range<Space>& r) {
      { a.try_cpu_pointer(r) } noexcept -> std::same_as<result<std::byte*>>;
    };

template <cpu_accessible_space Space>
class basic_phys_accessor {
 public:
  using space_type = Space;

  constexpr basic_phys_accessor() noexcept = default;
  /// `window` bytes of physical memory starting at `base` are visible at `mapped`.
  constexpr basic_phys_accessor(void* mapped, address<Space> base, std::uint64_t window) noexcept
      : mapped_(static_cast<std::byte*>(mapped)), base_(base.value()), window_(window) {}

  /// Copies `n` bytes starting `offset` bytes into `r` to `dst`. Errors: out_of_range (the
  /// bytes are not inside `r`), not_mapped (not inside the accessor's window).
  [[nodiscard]] result<void> try_copy_from(const range<Space>& r, std::uint64_t offset, void* dst,
                                           std::size_t n) const noexcept {
    auto p = locate(r, offset, n);
    if (!p) return p.error();
    if (n != 0) __builtin_memcpy(dst, *p, n);
    return {};
  }
  /// Copies `n` bytes from `src` to `offset` bytes into `r`. Errors as try_copy_from.
  [[nodiscard]] result<void> try_copy_to(const range<Space>& r, std::uint64_t offset,
                                         const void* src, std::size_t n) const noexcept {
    auto p = locate(r, offset, n);
    if (!p) return p.error();
    if (n != 0) __builtin_memcpy(*p, src, n);
    return {};
  }
  /// Where the CPU sees all of `r`'s bytes; valid while the window stays mapped. Errors:
  /// not_mapped (some byte outside the window).
  [[nodiscard]] result<std::byte*> try_cpu_pointer(const range<Space>& r) const noexcept {
    return locate(r, 0, r.len());
  }

 private:
  [[nodiscard]] result<std::byte*> locate(const range<Space>& r, std::uint64_t offset,
                                          std::uint64_t n) const noexcept {
    if (offset > r.len() || n > r.len() - offset) return errc::out_of_range;
    const std::uint64_t a = r.addr().value() + offset;
    if (mapped_ == nullptr || a < base_ || a - base_ > window_ || n > window_ - (a - base_))
      return errc::not_mapped;
    return mapped_ + (a - base_);
  }

  std::byte* mapped_ = nullptr;
  std::uint64_t base_ = 0;
  std::uint64_t window_ = 0;
};

/// The accessor for CPU physical memory.
using phys_accessor = basic_phys_accessor<cpu_phys>;
/// The accessor for this process's virtual memory: the window is the identity (build it as
/// `virt_accessor{p, virt_addr{uintptr_t(p)}, n}`), so it checks bounds and nothing else.
using virt_accessor = basic_phys_accessor<cpu_virt>;
static_assert(phys_memory_accessor<phys_accessor>);

}  // namespace phyr
