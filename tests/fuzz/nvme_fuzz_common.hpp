// Shared by the NVMe fuzz targets: input reader, descriptor memory with guard words, and the
// controller's view of it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <phyr/device/nvme.hpp>
#include <span>
#include <vector>

#include "fuzz_common.hpp"

namespace nvme_fuzz {

struct bus {};
using dma = phyr::dma_addr<bus>;
using drange = phyr::dma_range<bus>;

constexpr std::uint64_t canary = 0x5a5a'a5a5'c3c3'3c3cull;
constexpr std::size_t guard = 8;  // words of canary on both sides of every chunk

using fuzz::reader;

// Chunks of descriptor memory, each inside a canary-guarded host buffer.
struct memory {
  std::vector<std::vector<std::uint64_t>> host;  // guard + words + guard
  std::vector<phyr::nvme::descriptor_chunk<bus>> chunks;

  // One chunk per (words, DMA address) pair.
  struct spec {
    std::size_t words;
    std::uint64_t dma;
  };
  explicit memory(const std::vector<spec>& specs) {
    host.reserve(specs.size());
    for (const spec& s : specs) host.emplace_back(s.words + 2 * guard, canary);
    for (std::size_t i = 0; i < specs.size(); ++i)
      chunks.push_back(
          {std::span<std::uint64_t>(host[i]).subspan(guard, specs[i].words), dma{specs[i].dma}});
  }
  // The canary words around every chunk are still there.
  bool guards_intact() const {
    for (const auto& h : host) {
      for (std::size_t i = 0; i < guard; ++i)
        if (h[i] != canary || h[h.size() - 1 - i] != canary) return false;
    }
    return true;
  }
  // Words in the chunks that no longer hold the canary.
  std::size_t written() const {
    std::size_t n = 0;
    for (const auto& c : chunks)
      for (std::uint64_t w : c.words) n += w != canary ? 1 : 0;
    return n;
  }
  phyr::result<std::uint64_t> read(std::uint64_t a) const {
    if ((a & 7) != 0) return phyr::errc::misaligned;
    for (const auto& c : chunks) {
      const std::uint64_t b = c.dma.value();
      if (a >= b && (a - b) / 8 < c.words.size()) return c.words[(a - b) / 8];
    }
    return phyr::errc::not_mapped;
  }
};

struct piece {
  std::uint64_t a, n;
  bool operator==(const piece&) const = default;
};
inline void push_coalesced(std::vector<piece>& v, std::uint64_t a, std::uint64_t n) {
  if (!v.empty() && v.back().a + v.back().n == a && a != 0) {
    v.back().n += n;
  } else {
    v.push_back({a, n});
  }
}

}  // namespace nvme_fuzz
