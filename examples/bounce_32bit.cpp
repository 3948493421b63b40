// A 32-bit DMA device on a machine with RAM above 4 GiB: the buffer's pages below 4 GiB go to
// the device as they are, the pages above it bounce through a pool of low memory.
//
// A model, not hardware: two host buffers stand in for physical memory (one for RAM around
// 4 GiB, one for the bounce pool at 16 MiB), reached through phyr::phys_accessor windows, and
// "the device" is this program writing at the DMA addresses it was given. On a real system the
// accessors would be the kernel's direct map (or mmap'd memory) and the device would do the
// writing; the phyr calls are the same.
#include <cinttypes>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include <phyr/container/range_list.hpp>
#include <phyr/core/accessor.hpp>
#include <phyr/map/bounce_mapper.hpp>
#include <phyr/map/identity_mapper.hpp>

namespace {
struct dev32 {};  // the device's bus: DMA address == physical address, 32 address bits

constexpr std::uint64_t ram_base = 0xffff0000;   // 64 KiB below 4 GiB, 64 KiB above
constexpr std::uint64_t ram_len = 0x20000;
constexpr std::uint64_t pool_base = 0x01000000;  // 16 MiB: every 32-bit device reaches it
constexpr std::uint64_t pool_len = 8 * phyr::page_size;
}  // namespace

int main() {
  std::vector<std::byte> ram(ram_len), low(pool_len);
  const phyr::phys_accessor ram_acc{ram.data(), phyr::phys_addr{ram_base}, ram_len};
  const phyr::phys_accessor pool_acc{low.data(), phyr::phys_addr{pool_base}, pool_len};

  // The I/O buffer: 4 pages below 4 GiB and 4 above, physically contiguous (one entry).
  phyr::range_list<phyr::phys_range> buffer;
  if (!buffer.try_append(phyr::phys_range{phyr::phys_addr{0xffffc000}, 0x8000})) return 1;

  // The pool: memory the device can reach, with its own phys list, cut into page slots.
  phyr::range_list<phyr::phys_range> pool_memory;
  if (!pool_memory.try_append(phyr::phys_range{phyr::phys_addr{pool_base}, pool_len})) return 1;
  auto pool = phyr::bounce_pool<>::create(pool_memory, pool_acc);
  if (!pool) return 1;

  auto direct = phyr::identity_mapper<dev32>::create(32);
  if (!direct) return 1;
  auto bm = phyr::bounce_mapper<phyr::identity_mapper<dev32>>::create(
      *direct, *pool, ram_acc, phyr::dma_constraints{.dma_mask = 0xffffffff});
  if (!bm) return 1;

  auto mp = bm->try_map(buffer, phyr::dma_direction::from_device);
  if (!mp) return 1;
  std::printf("DMA list for the device (%" PRIu64 " of %" PRIu64 " bytes bounced):\n",
              mp->bounced_bytes(), mp->total_bytes());
  for (const phyr::dma_range<dev32> r : *mp)
    std::printf("  dma 0x%09" PRIx64 " +0x%" PRIx64 "\n", r.addr().value(), r.len());

  // "The device" fills the I/O with 'A'..'H', one letter per page, at the DMA addresses: the
  // low half lands in RAM directly, the high half in the pool (through the pool's accessor).
  std::uint64_t io = 0;
  for (const phyr::dma_range<dev32> r : *mp) {
    const phyr::phys_range target{phyr::phys_addr{r.addr().value()}, r.len()};
    const bool in_pool = r.addr().value() >= pool_base && r.addr().value() < pool_base + pool_len;
    auto p = in_pool ? pool->accessor().try_cpu_pointer(target) : ram_acc.try_cpu_pointer(target);
    if (!p) return 1;
    for (std::uint64_t i = 0; i < r.len(); ++i)
      (*p)[i] = std::byte(static_cast<unsigned char>('A' + (io + i) / phyr::page_size));
    io += r.len();
  }

  // The transfer is complete: make it visible to the CPU (copies the bounced pages back).
  if (!bm->try_sync_for_cpu(*mp)) return 1;
  if (!bm->try_unmap(std::move(*mp))) return 1;

  std::printf("the caller's buffer, one letter per page: ");
  bool ok = true;
  for (std::uint64_t pg = 0; pg < 8; ++pg) {
    char c = 0;
    const phyr::phys_range page{phyr::phys_addr{0xffffc000 + pg * phyr::page_size},
                                phyr::page_size};
    if (!ram_acc.try_copy_from(page, phyr::page_size - 1, &c, 1)) return 1;
    std::printf("%c", c);
    ok = ok && c == 'A' + static_cast<char>(pg);
  }
  std::printf("\n%s; pool slots free again: %" PRIu64 " of %" PRIu64 "\n",
              ok ? "all data arrived" : "DATA MISSING", pool->free_slots(), pool->capacity());
  return ok && pool->free_slots() == pool->capacity() ? 0 : 1;
}
