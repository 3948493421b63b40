/// All of map/: the `dma_mapper` concept and every mapper — identity (aliasing), bus offset,
/// bounce buffering, scatterlist bridge, the IOMMU model (map/iommu/) and PCI peer-to-peer (map/p2p/).
///
///   #include <phyr/map.hpp>
///   phyr::iommu_domain dom;                          // an in-process I/O page-table model
///   phyr::iommu_mapper<gpu0> m{dom};
///   auto mp = m.try_map(cpu_list, phyr::dma_direction::to_device);
///
/// The real VFIO back end needs Linux and lives in os/linux/.
#pragma once

#include <phyr/config.hpp>
#include <phyr/map/bounce_mapper.hpp>
#include <phyr/map/identity_mapper.hpp>
#include <phyr/map/iommu/domain.hpp>
#include <phyr/map/iommu/io_page_table.hpp>
#include <phyr/map/iommu/iommu_mapper.hpp>
#include <phyr/map/iommu/iova_allocator.hpp>
#include <phyr/map/mapper.hpp>
#include <phyr/map/offset_mapper.hpp>
#include <phyr/map/p2p/p2p_mapper.hpp>
#include <phyr/map/p2p/p2p_registry.hpp>
#include <phyr/map/p2p/pci_topology.hpp>
#include <phyr/map/sg_bridge_mapper.hpp>
