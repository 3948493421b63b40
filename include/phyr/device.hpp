/// All of device/: what a device accepts and how lists are fed to it.
///
///   #include <phyr/device.hpp>
///   phyr::dma_constraints c{.max_segment_size = 1u << 20, .virt_boundary_mask = phyr::page_mask};
///   auto segs = phyr::try_split(mapping, c);                         // streaming engines
///   for (auto seg : *segs) post(seg);
///   auto pg = phyr::try_best_page_size(mapping, sizes, iova);        // random-access engines
///   auto blocks = phyr::try_blocks(mapping, *pg);   // keep the result: `for (x : *try_...())`
///   for (auto blk : *blocks) mr_page(blk);          // would iterate a destroyed temporary
///
/// NVMe PRP/SGL builders live in `phyr::nvme` (device/nvme.hpp).
///
/// Every function takes any `range_source` (a range_list, a view, a DMA mapping, a span of
/// ranges), so the same code serves CPU lists and DMA mappings.
#pragma once

#include <phyr/config.hpp>
#include <phyr/device/blocks.hpp>
#include <phyr/device/constraints.hpp>
#include <phyr/device/page_size.hpp>
#include <phyr/device/split.hpp>
#include <phyr/device/nvme.hpp>
