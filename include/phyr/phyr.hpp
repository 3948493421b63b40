/// Everything in phyr except `fmt.hpp` (needs fmt) and `os/` (needs Linux).
///
///   #include <phyr/phyr.hpp>
///   phyr::range_list<phyr::phys_range> cpu;
///   phyr::must(cpu.try_append_pages(pfns, 0, bytes));
///   phyr::identity_mapper<my_bus> dev;
///   auto dma = dev.try_map(cpu, phyr::dma_direction::to_device);
#pragma once

#include <phyr/config.hpp>
#include <phyr/compat/scatterlist.hpp>
#include <phyr/container.hpp>
#include <phyr/core.hpp>
#include <phyr/device.hpp>
#include <phyr/map.hpp>
#include <phyr/packed.hpp>
#include <phyr/registry.hpp>
