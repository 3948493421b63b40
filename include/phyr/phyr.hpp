/// Everything in phyr except `fmt.hpp` (needs fmt) and `os/` (needs Linux).
///
///   #include <phyr/phyr.hpp>
///   phyr::range_list<phyr::phys_range> cpu;
///   phyr::must(cpu.try_append_pages(pfns, 0, bytes));
///   phyr::identity_mapper<my_bus> dev;
///   auto dma = dev.try_map(cpu, phyr::dma_direction::to_device);
#pragma once

#include "config.hpp"
#include "core.hpp"
#include "container/range_list.hpp"
#include "packed/bitfield.hpp"
#include "packed/encoding.hpp"
#include "packed/packed_list.hpp"
#include "map/mapper.hpp"
#include "map/identity_mapper.hpp"
#include "map/offset_mapper.hpp"
#include "map/iova_allocator.hpp"
#include "map/io_page_table.hpp"
#include "map/iommu.hpp"
#include "map/sg_bridge_mapper.hpp"
#include "map/p2p_registry.hpp"
#include "map/pci_topology.hpp"
#include "map/p2p_mapper.hpp"
#include "compat/scatterlist.hpp"
#include "device.hpp"
