// A hand-written mapper for the concept tests (map/mapper_test.cpp, core/virt_space_test.cpp):
// the minimum a third party must provide to satisfy dma_mapper. It maps nothing (try_map says
// not_supported); only the types matter. The tests derive from it to take one requirement away.
#pragma once

#include <cstddef>
#include <cstdint>
#include <phyr/container/range_list.hpp>
#include <phyr/core/error.hpp>
#include <phyr/core/range.hpp>
#include <phyr/map/mapper.hpp>

namespace test_mappers {

// A mapping that is just an owned list of `Bus` addresses.
template <class Bus>
struct toy_mapping {
  phyr::range_list<phyr::dma_range<Bus>> l;
  [[nodiscard]] auto begin() const noexcept { return l.begin(); }
  [[nodiscard]] auto end() const noexcept { return l.end(); }
  [[nodiscard]] std::size_t size() const noexcept { return l.size(); }
  [[nodiscard]] std::uint64_t total_bytes() const noexcept { return l.total_bytes(); }
};

// Takes lists of `Source` ranges to `Bus`; `Mapping` is what try_map would return.
template <class Source, class Bus, class Mapping = toy_mapping<Bus>>
struct toy_mapper {
  using mapper_concept = phyr::dma_mapper_tag;
  using source_space = Source;
  using bus_type = Bus;
  using space_type = phyr::dma_space<Bus>;
  using mapping = Mapping;
  phyr::result<mapping> try_map(const phyr::range_list<phyr::range<Source>>&,
                                phyr::dma_direction) noexcept {
    return phyr::errc::not_supported;
  }
  phyr::result<mapping> try_map(phyr::range_list_view<phyr::range<Source>>,
                                phyr::dma_direction) noexcept {
    return phyr::errc::not_supported;
  }
  phyr::result<void> try_unmap(mapping&&) noexcept { return phyr::errc::foreign_mapping; }
};

}  // namespace test_mappers
