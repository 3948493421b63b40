/// All of registry/: `mem_registry`, buffers registered once by virtual address and translated
/// to physical or DMA addresses per I/O.
///
///   #include <phyr/registry.hpp>
///   phyr::phys_registry reg;
///   (void)reg.try_register(*phyr::virt_range_of(buf, len), phyr::phys_addr{0x1000'0000});
///   auto t = reg.translate(phyr::virt_addr{reinterpret_cast<std::uintptr_t>(buf)}, 4096);
///
/// The Linux glue (pin and register, VFIO-map and register) is os/linux/registry_glue.hpp.
#pragma once

#include <phyr/config.hpp>
#include <phyr/registry/mem_registry.hpp>
