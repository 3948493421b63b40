// The usual VFIO bring-up on the fake kernel (vfio_fake.hpp) for Catch2 tests: a container
// opened and group 12 attached, each step REQUIRE'd. Kept apart from vfio_fake.hpp, which the
// fuzz targets use without Catch2.
#pragma once

#include <catch2/catch.hpp>
#include <optional>
#include <phyr/os/linux/vfio.hpp>
#include <utility>

#include "vfio_fake.hpp"

namespace vfio_fake {

struct rig {
  kernel k;
  std::optional<phyr::vfio::container> c;
  std::optional<phyr::vfio::group> g;
  void open() {
    auto cr = phyr::vfio::container::try_open(k.ops());
    REQUIRE(cr);
    c.emplace(std::move(*cr));
    auto gr = c->try_attach_group(12);
    REQUIRE(gr);
    g.emplace(std::move(*gr));
  }
  // open(), then a mapper of bus `Bus` on the container (returned as a prvalue: a mapper does
  // not move).
  template <class Bus, class Alloc = phyr::default_allocator>
  phyr::vfio_mapper<Bus, Alloc> open_mapper(phyr::vfio_mapper_limits limits = {},
                                            Alloc a = Alloc{}) {
    open();
    return phyr::vfio_mapper<Bus, Alloc>{*c, limits, a};
  }
};

}  // namespace vfio_fake
