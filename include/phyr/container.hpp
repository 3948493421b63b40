/// All of container/: the chained `range_list`, its views, and the `range_source` concept.
///
///   #include <phyr/container.hpp>
///   phyr::range_list<phyr::phys_range> l;
///   phyr::must(l.try_append_pages(pfns, /*first_offset=*/0, /*bytes=*/n * 4096));
///   static_assert(phyr::range_source<decltype(l)>);
#pragma once

#include <phyr/config.hpp>
#include <phyr/container/pfn_runs.hpp>
#include <phyr/container/range_list.hpp>
#include <phyr/container/range_source.hpp>
