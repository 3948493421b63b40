/// All of core/: address spaces, addresses, ranges, errors, allocators.
///
///   #include <phyr/core.hpp>
///   auto r = phyr::phys_range::create(phyr::phys_addr{0x1000}, 4096);
#pragma once

#include <phyr/config.hpp>
#include <phyr/core/accessor.hpp>
#include <phyr/core/address.hpp>
#include <phyr/core/address_space.hpp>
#include <phyr/core/unsatisfied.hpp>
#include <phyr/core/allocator.hpp>
#include <phyr/core/error.hpp>
#include <phyr/core/page.hpp>
#include <phyr/core/range.hpp>
