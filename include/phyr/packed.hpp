/// All of packed/: the 8/12/16-byte encoding and `packed_list`, the dense long-term form.
///
///   #include <phyr/packed.hpp>
///   auto p = phyr::packed_list<>::from_ranges(cpu_list);   // result<packed_list<>>
///   p->for_each([](phyr::phys_range r) { use(r); });
#pragma once

#include <phyr/config.hpp>
#include <phyr/packed/bitfield.hpp>
#include <phyr/packed/encoding.hpp>
#include <phyr/packed/packed_list.hpp>
