/// One whole I/O, from page frames to the released list, on each side (issue 14 item 4): what
/// io_bench.cpp times and what ir_driver.cpp counts instructions of, so both measure the same code.
///
///   phyr_range_list  range_list::try_append_pages -> identity_mapper::try_map -> try_split to
///                    the device's limits (dma_constraints' defaults: 64 KiB segments, no segment
///                    across 4 GiB; checked once, not per I/O, and held as runtime values:
///                    `probed`), every segment read (split_view::for_each) ->
///                    nvme::try_build_prp into the command's own PRP list page -> unmap ->
///                    the list released
///   scatterlist      sg_alloc_table_from_pages_segment(max_segment = 64 KiB, the device's
///                    dma_get_max_seg_size) -> dma_direct_map_sg -> for_each_sg, every segment
///                    read -> nvme_pci_setup_prps walking the mapped list, its list pages from
///                    the dma_pool model (bench/baseline/nvme_prps.hpp) -> dma_pool_free of them
///                    -> dma_direct_unmap_sg (bench/baseline/swiotlb_unmap.hpp) -> sg_free_table
///
/// Descriptor memory differs as the two drivers differ: the kernel takes each PRP list page from
/// a dma_pool per I/O (modelled by one allocation from the benchmarks' recycling heap, which is
/// cheaper than the kernel's locked dma_pool_alloc), while a phyr driver hands try_build_prp
/// memory it owns per command (SPDK's layout: the PRP list inside the command tracker), so the
/// phyr side allocates nothing for it.
///
///   const io_tally want = expected(in);
///   const phyr::identity_mapper<bench_bus> m;
///   prp_page page;
///   io_tally got = phyr_io<true>(in, m, page);    // <true>: also read back the PRP list
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "baseline/nvme_prps.hpp"
#include "baseline/swiotlb_unmap.hpp"
#include "compare.hpp"
#include "phyr/device/constraints.hpp"
#include "phyr/device/nvme/prp.hpp"
#include "phyr/device/split.hpp"
#include "phyr/map/identity_mapper.hpp"

namespace phyr_bench {

/// What one I/O handed the device.
struct io_tally {
  std::uint64_t segments = 0;
  std::uint64_t bytes = 0;
  std::uint64_t addr_sum = 0;  ///< sum of the segments' DMA addresses
  std::uint64_t prp1 = 0;
  std::uint64_t prp_entries = 0;  ///< PRP entries naming data (PRP1 included)
  std::uint64_t prp_sum = 0;      ///< sum of those entries (read back only when verifying)
  bool ok = false;
  friend bool operator==(const io_tally&, const io_tally&) = default;
};

/// The device limits both sides honour.
inline constexpr phyr::dma_constraints device_limits{};
static_assert(device_limits.max_segment_size == 64 * 1024);
/// The limits as each driver holds them after probe: runtime values in memory, which the
/// compiler cannot fold into the per-I/O path (constexpr limits let it drop checks a driver
/// pays: 27 of phyr's 206 instructions for a 4 KiB I/O, 47 of the scatterlist's 477). The phyr
/// side checked them once (checked_constraints); the scatterlist side reads the device's max
/// segment size and DMA mask, as sg_alloc_table_from_pages_segment's caller and
/// dma_direct_map_sg do. Never written after start-up.
struct probed_limits {
  phyr::checked_constraints checked;
  unsigned max_segment;   ///< dma_get_max_seg_size(dev)
  std::uint64_t dma_mask;  ///< *dev->dma_mask
};
inline probed_limits probed{*phyr::checked_constraints::create(device_limits),
                            static_cast<unsigned>(device_limits.max_segment_size),
                            device_limits.dma_mask};

/// The command's own PRP list page (phyr side): 4 KiB, page aligned, at a fixed DMA address
/// below the inputs (which start at 1 GiB).
struct prp_page {
  static constexpr std::uint64_t dma = 0x7f00'0000;
  alignas(4096) std::uint64_t words[baseline::nvme_ctrl_page / 8] = {};
};

/// The segments and PRP entries expected from the input: each run cut every 64 KiB (the
/// inputs' runs start aligned and never cross 4 GiB, so the boundary never cuts); one PRP entry
/// per page, as every input page is whole.
[[nodiscard]] inline io_tally expected(const input& in) noexcept {
  io_tally t;
  const std::uint64_t seg = device_limits.max_segment_size;
  std::uint64_t start = 0;
  std::uint64_t len = 0;
  auto flush = [&] {
    for (std::uint64_t off = 0; off < len; off += seg) {
      ++t.segments;
      t.bytes += len - off < seg ? len - off : seg;
      t.addr_sum += start + off;
    }
  };
  for (std::size_t i = 0; i < in.pfns.size(); ++i) {
    const std::uint64_t a = in.pfns[i] << phyr::page_shift;
    t.prp_sum += a;
    if (len != 0 && a == start + len) {
      len += phyr::page_size;
      continue;
    }
    flush();
    start = a;
    len = phyr::page_size;
  }
  flush();
  t.prp1 = in.pfns.empty() ? 0 : in.pfns[0] << phyr::page_shift;
  t.prp_entries = in.pfns.size();
  t.ok = true;
  return t;
}

/// The phyr side. `Verify`: also sum the PRP entries written (a check, not part of an I/O).
/// `Upto` < 4 stops after that many steps (1: build, 2: map and unmap, 3: split and read the
/// segments, 4: PRPs), for the per-step instruction counts of ir_driver.cpp; such a partial
/// I/O reports only whether its steps succeeded (`ok`).
template <bool Verify, int Upto = 4>
[[nodiscard]] io_tally phyr_io(const input& in, const phyr::identity_mapper<bench_bus>& m,
                               prp_page& page) noexcept {
  io_tally t;
  cpu_list l;
  if constexpr (Upto >= 1) {
    if (!l.try_append_pages(in.pfns, 0, in.bytes)) return t;
  }
  if constexpr (Upto >= 2) {
    auto mp = m.try_map(l, phyr::dma_direction::to_device);
    if (!mp) return t;
    if constexpr (Upto >= 3) {
      auto segs = phyr::try_split(*mp, probed.checked);
      if (!segs) return t;
      segs->for_each([&](const phyr::dma_range<bench_bus>& s) noexcept {
        ++t.segments;
        t.bytes += s.len();
        t.addr_sum += s.addr().value();
      });
    }
    if constexpr (Upto >= 4) {
      const auto prp = phyr::nvme::try_build_prp<bench_bus>(
          *mp, phyr::nvme::prp_config{}, std::span<std::uint64_t>(page.words),
          phyr::dma_addr<bench_bus>{prp_page::dma});
      if (!prp) return t;
      t.prp1 = prp->prp1.value();
      t.prp_entries = prp->entries;
      if constexpr (Verify) {
        t.prp_sum = t.prp1;
        if (prp->prp2_kind == phyr::nvme::prp2_use::data) t.prp_sum += prp->prp2.value();
        if (prp->prp2_kind == phyr::nvme::prp2_use::list) {
          for (std::uint64_t i = 0; i < prp->words_used; ++i) t.prp_sum += page.words[i];
        }
      }
    }
    if (!m.try_unmap(std::move(*mp))) return t;
  }
  t.ok = true;
  return t;
}

/// A 64 MiB bounce pool below 4 GiB, where x86-64 puts the default swiotlb; no input is there.
inline constexpr baseline::swiotlb_pool bounce_pool{0x8000000, 0xc000000};

/// The scatterlist side; `Verify` as for phyr_io. `Upto` < 4 stops after that many steps (0:
/// table allocated and freed, 1: map, 2: read the segments, 3: PRPs), the unmap walk being the
/// fourth.
template <bool Verify, int Upto = 4>
[[nodiscard]] io_tally scatterlist_io(const input& in, bench_allocator& a) noexcept {
  io_tally t;
  sg::sg_table table;
  if (!sg::sg_alloc_table_from_pages_segment(table, in.pages, 0, in.bytes, probed.max_segment,
                                              a))
    return t;
  int n = static_cast<int>(table.nents);
  if constexpr (Upto >= 1) {
    n = sg::dma_direct_map_sg(table.sgl, static_cast<int>(table.nents), probed.dma_mask);
  }
  if constexpr (Upto >= 2) {
    sg::for_each_sg(table.sgl, static_cast<unsigned>(n), [&](sg::scatterlist& s, unsigned) {
      ++t.segments;
      t.bytes += sg::sg_dma_len(&s);
      t.addr_sum += sg::sg_dma_address(&s);
    });
  }
  bool prp_ok = true;
  if constexpr (Upto >= 3) {
    // nvme_pci_setup_prps; list pages from the dma_pool model, their pointers kept as the
    // driver keeps them in the iod (a 1 MiB I/O needs one list page, a 2 MiB one two).
    constexpr std::size_t max_list_pages = 8;
    std::uint64_t* pages[max_list_pages];
    std::size_t list_bytes = 0;
    const baseline::prp_out prp = baseline::nvme_pci_setup_prps(
        table.sgl, in.bytes, [&](std::size_t i, std::size_t bytes) noexcept {
          if (i >= max_list_pages) return baseline::prp_list_page{};
          auto* p = static_cast<std::uint64_t*>(a.allocate(bytes, bytes));
          pages[i] = p;
          list_bytes = bytes;
          // The DMA address of pool memory: its own address in this model (identity-mapped).
          return baseline::prp_list_page{p, reinterpret_cast<std::uintptr_t>(p)};
        });
    t.prp1 = prp.prp1;
    t.prp_entries = prp.prp1 == 0 ? 0 : phyr::nvme::prp_entry_count(prp.prp1, in.bytes, 4096);
    if constexpr (Verify) {
      t.prp_sum = prp.prp1;
      if (prp.list_pages == 0) {
        t.prp_sum += prp.prp2;
      } else {
        // Data entries in order, following the chain pointer in each full page's last slot.
        std::uint64_t left = t.prp_entries - 1;
        for (std::size_t pg = 0; pg < prp.list_pages && left != 0; ++pg) {
          const std::uint64_t slots = baseline::nvme_ctrl_page / 8;
          const std::uint64_t data = left <= slots ? left : slots - 1;
          for (std::uint64_t i = 0; i < data; ++i) t.prp_sum += pages[pg][i];
          left -= data;
        }
      }
    }
    // nvme_free_prps: every list page back to its pool.
    for (unsigned i = 0; i < prp.list_pages; ++i) a.deallocate(pages[i], list_bytes, list_bytes);
    prp_ok = prp.prp1 != 0;
  }
  bool unmapped = true;
  if constexpr (Upto >= 4) unmapped = baseline::dma_direct_unmap_sg_walk(table.sgl, n, bounce_pool) == 0;
  t.ok = n > 0 && prp_ok && unmapped;
  sg::sg_free_table(table, a);
  return t;
}

}  // namespace phyr_bench
