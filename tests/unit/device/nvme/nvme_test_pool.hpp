// What the NVMe PRP and SGL builder tests share: a controller bus, descriptor memory filled with
// a canary that the controller model reads back, and the byte pieces a list describes (the
// builders' output walked back must describe the same bytes as their input).
#pragma once

#include <cstddef>
#include <cstdint>
#include <phyr/core/address.hpp>
#include <phyr/core/error.hpp>
#include <phyr/core/range.hpp>
#include <phyr/device/nvme/sgl.hpp>
#include <span>
#include <vector>

namespace nvme_test {

struct nvme0 {};
using dma = phyr::dma_addr<nvme0>;
using drange = phyr::dma_range<nvme0>;
using dlist = std::vector<drange>;

inline constexpr std::uint64_t canary = 0xcafe'f00d'dead'beefull;

inline drange dr(std::uint64_t a, std::uint64_t len) { return drange{dma{a}, len}; }

// Descriptor memory at a pretend DMA address, prefilled with the canary.
struct pool {
  std::vector<std::uint64_t> words;
  std::uint64_t base;
  pool(std::size_t n, std::uint64_t dma_base) : words(n, canary), base(dma_base) {}
  std::span<std::uint64_t> span() { return words; }
  dma at() const { return dma{base}; }
  // The controller's read of one word; not_mapped outside the pool.
  phyr::result<std::uint64_t> read(std::uint64_t a) const {
    if (a < base || (a - base) / 8 >= words.size() || (a & 7) != 0) return phyr::errc::not_mapped;
    return words[(a - base) / 8];
  }
  // The i-th SGL descriptor (16 bytes) from the start of the pool.
  phyr::nvme::sgl_descriptor desc(std::size_t i) const {
    return phyr::nvme::sgl_descriptor::from_words(words[2 * i], words[2 * i + 1]);
  }
  // Words from index i on that no longer hold the canary.
  std::size_t untouched_from(std::size_t i) const {
    std::size_t bad = 0;
    for (; i < words.size(); ++i) bad += words[i] != canary ? 1 : 0;
    return bad;
  }
};

// A run of bytes; consecutive runs are merged, so two lists compare by the bytes they name.
struct piece {
  std::uint64_t a, n;
  friend bool operator==(const piece&, const piece&) = default;
};

inline void push_coalesced(std::vector<piece>& v, std::uint64_t a, std::uint64_t n) {
  if (!v.empty() && v.back().a + v.back().n == a) {
    v.back().n += n;
  } else {
    v.push_back({a, n});
  }
}

inline std::vector<piece> bytes_of(const dlist& l) {
  std::vector<piece> v;
  for (const drange& r : l) push_coalesced(v, r.addr().value(), r.len());
  return v;
}

}  // namespace nvme_test
