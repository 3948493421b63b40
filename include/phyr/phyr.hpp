/// Everything in phyr except `fmt.hpp` (needs fmt) and `os/` (needs Linux).
///
///   #include <phyr/phyr.hpp>
///   phyr::range_list<phyr::phys_range> cpu;
///   phyr::must(cpu.try_append_pages(pfns, 0, bytes));
#pragma once

#include "config.hpp"
#include "core.hpp"
#include "container/range_list.hpp"
