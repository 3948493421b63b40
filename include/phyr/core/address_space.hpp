/// Address spaces as types.
///
///   struct nvme0 {};                                   // one tag per bus / device instance
///   using nvme_space = phyr::dma_space<nvme0>;
///   static_assert(phyr::address_space<nvme_space>);
///   static_assert(!phyr::cpu_accessible_space<nvme_space>);
///
/// A space is a tag type that opts in with `using address_space_concept = address_space_tag;`
/// (stdexec's receiver_concept idea), so an unrelated type never matches by accident. The tag
/// says whether the CPU may load/store through addresses of the space, given a window where
/// they are visible (`basic_phys_accessor`): `cpu_phys` (through a direct map or a BAR/devmem
/// mmap) and `cpu_virt` (this process's own virtual memory, where the window is the identity:
/// the address is the pointer) do; a DMA address is meaningful to one device only and never
/// does.
///
/// Three kinds of space, three roles: `cpu_phys` lists come from pinning (pagemap) or from BAR
/// windows and feed the mappers that program a translation themselves (identity, bus offset,
/// IOMMU model, P2P); `cpu_virt` lists are what a user-space driver holds (buffers, iovecs) and
/// feed back ends that pin and translate in the kernel (VFIO type1); `dma_space<Bus>` lists are
/// what one device may use. A mapper names the space it takes as `source_space`
/// (map/mapper.hpp), so a phys list handed to a virtual-address mapper, or the reverse, does
/// not compile.
#pragma once

#include <concepts>
#include <type_traits>

namespace phyr::inline v0 {

/// The opt-in marker every address space names as `address_space_concept`.
struct address_space_tag {};

namespace detail {
template <class S>
concept declares_address_space_tag =
    requires { typename S::address_space_concept; } &&
    std::same_as<typename S::address_space_concept, address_space_tag>;

template <class S>
concept declares_cpu_access = requires {
  { S::cpu_accessible } -> std::convertible_to<bool>;
};
}  // namespace detail

/// A type `S` is an address space if:
///  1. it names `address_space_tag` as `S::address_space_concept` (opt-in), and
///  2. it has a constant `S::cpu_accessible` saying whether the CPU may access it, and
///  3. it has a short `S::name` for diagnostics and formatting.
/// It does not check that two spaces are distinct; distinct tag types are distinct spaces.
template <class S>
concept address_space = detail::declares_address_space_tag<S> && detail::declares_cpu_access<S> &&
                        requires {
                          { S::name } -> std::convertible_to<const char*>;
                        };

/// Spaces whose addresses the CPU may read and write (through a `phys_accessor`).
template <class S>
concept cpu_accessible_space = address_space<S> && S::cpu_accessible;

/// The CPU physical address space.
struct cpu_phys {
  using address_space_concept = address_space_tag;
  static constexpr bool cpu_accessible = true;
  static constexpr const char* name = "phys";
};

/// The virtual address space of the current process (user space: what `mmap`/`malloc` return).
/// The CPU accesses it directly, so it is `cpu_accessible`; it says nothing about where the
/// bytes are physically or whether they are resident (pinning or a VFIO map finds out). An
/// address of another process, or a kernel virtual address, is not in this space.
struct cpu_virt {
  using address_space_concept = address_space_tag;
  static constexpr bool cpu_accessible = true;
  static constexpr const char* name = "virt";
};

/// The DMA (bus) address space of the device or bus `Bus`. `Bus` is any user type; two
/// different `Bus` types give two spaces whose addresses and ranges never mix.
template <class Bus>
struct dma_space {
  using address_space_concept = address_space_tag;
  using bus_type = Bus;
  static constexpr bool cpu_accessible = false;
  static constexpr const char* name = "dma";
};

template <class S>
inline constexpr bool is_dma_space_v = false;
template <class Bus>
inline constexpr bool is_dma_space_v<dma_space<Bus>> = true;

/// A DMA space of some bus.
template <class S>
concept dma_address_space = address_space<S> && is_dma_space_v<S>;

}  // namespace phyr
