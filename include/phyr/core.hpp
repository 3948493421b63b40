/// All of core/: address spaces, addresses, ranges, errors, allocators.
///
///   #include <phyr/core.hpp>
///   auto r = phyr::phys_range::create(phyr::phys_addr{0x1000}, 4096);
#pragma once

#include "config.hpp"
#include "core/accessor.hpp"
#include "core/address.hpp"
#include "core/address_space.hpp"
#include "core/allocator.hpp"
#include "core/error.hpp"
#include "core/range.hpp"
