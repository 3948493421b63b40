/// What the NVMe PRP and SGL builders share: descriptor memory, controller limits, byte order.
///
///   struct nvme0 {};                                        // the controller's bus
///   alignas(4096) std::uint64_t pool[512];                  // one 4 KiB descriptor page
///   phyr::nvme::descriptor_chunk<nvme0> mem{pool, phyr::dma_addr<nvme0>{0x8000'0000}};
///   auto ps = phyr::nvme::try_page_size_from_mps(0);        // CC.MPS = 0 -> 4096
///   auto mdts = phyr::nvme::mdts_bytes(5, 4096);            // MDTS = 5, CAP.MPSMIN 4 KiB -> 128
///   KiB
///
/// Descriptor memory is what the controller reads PRP lists and SGL segments from. The caller
/// owns it (a DMA pool, a slot of a per-command tracker) and hands the builders its CPU view
/// (`words`, written by the builder) together with the DMA address the controller uses for
/// `words[0]`, typed in the controller's DMA space: a CPU physical address does not convert, so
/// it cannot be passed by mistake. The builders never allocate and never write outside `words`.
///
/// Several chunks may be given (e.g. separate pool pages); they are used in order, each
/// contiguous in both views. Every chunk's DMA address is a multiple of 8 (PRP list pointers
/// and SGL segments are quadword aligned), and every chunk after the first starts on a
/// controller page boundary (a chained PRP list page must), else `errc::invalid_argument`.
///
/// Entries are stored little-endian (the NVMe byte order) whatever the host's order.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <phyr/core/address.hpp>
#include <phyr/core/address_space.hpp>
#include <phyr/core/error.hpp>
#include <span>

namespace phyr::inline v0::nvme {

/// A piece of descriptor memory: the CPU's view and the controller's DMA address of word 0.
template <class Bus>
struct descriptor_chunk {
  std::span<std::uint64_t> words;
  dma_addr<Bus> dma{};
};

namespace detail {
/// The builders' one-piece convenience form: one chunk, seen as a span of zero chunks when
/// it holds no words (so "no memory" reads the same as an empty chunk list).
template <class Bus>
struct single_chunk {
  descriptor_chunk<Bus> c;
  [[nodiscard]] constexpr std::span<const descriptor_chunk<Bus>> chunks() const noexcept {
    return {&c, c.words.empty() ? 0u : 1u};
  }
};
}  // namespace detail

/// Smallest and largest controller memory page: CC.MPS 0..15 gives 2^(12 + MPS) bytes.
inline constexpr std::uint64_t min_page_size = std::uint64_t{1} << 12;
inline constexpr std::uint64_t max_page_size = std::uint64_t{1} << 27;

/// The memory page size a CC.MPS value selects (4 KiB << mps); invalid_argument above 15.
[[nodiscard]] constexpr result<std::uint64_t> try_page_size_from_mps(unsigned mps) noexcept {
  if (mps > 15) return errc::invalid_argument;
  return min_page_size << mps;
}

/// True for a page size a controller can be configured with (a power of two, 4 KiB..128 MiB).
[[nodiscard]] constexpr bool valid_page_size(std::uint64_t page_size) noexcept {
  return page_size >= min_page_size && page_size <= max_page_size &&
         (page_size & (page_size - 1)) == 0;
}

/// Identify Controller's MDTS in bytes: 0 means no limit (returned as 0); otherwise the limit is
/// 2^MDTS units of the *minimum* memory page size (CAP.MPSMIN), not of CC.MPS. Saturates at
/// 2^63 so a nonsense field cannot wrap.
[[nodiscard]] constexpr std::uint64_t mdts_bytes(unsigned mdts,
                                                 std::uint64_t mpsmin_page_size) noexcept {
  if (mdts == 0) return 0;
  const unsigned shift = static_cast<unsigned>(std::countr_zero(mpsmin_page_size)) + mdts;
  return shift >= 63 ? std::uint64_t{1} << 63 : std::uint64_t{1} << shift;
}

/// The PSDT field (command dword 0, bits 15:14): how DPTR is to be read.
enum class psdt : std::uint8_t {
  prp = 0,              ///< PRP1/PRP2
  sgl_mptr_contig = 1,  ///< SGL1; MPTR (metadata) is a contiguous buffer
  sgl_mptr_sgl = 2,     ///< SGL1; MPTR points at an SGL segment
};

/// `psdt` placed at its bits of command dword 0, to OR into the opcode/flags dword.
[[nodiscard]] constexpr std::uint32_t cdw0_psdt_bits(psdt p) noexcept {
  return std::uint32_t{static_cast<std::uint8_t>(p)} << 14;
}

namespace detail {

/// NVMe structures are little-endian; a byte swap only on big-endian hosts.
[[nodiscard]] constexpr std::uint64_t to_le64(std::uint64_t v) noexcept {
  if constexpr (std::endian::native == std::endian::little) {
    return v;
  } else {
    std::uint64_t r = 0;
    for (int i = 0; i < 8; ++i) r = (r << 8) | ((v >> (8 * i)) & 0xff);
    return r;
  }
}
[[nodiscard]] constexpr std::uint64_t from_le64(std::uint64_t v) noexcept { return to_le64(v); }

/// invalid_argument unless every chunk is non-empty, quadword aligned, and every chunk after
/// the first starts on a `page_size` boundary (see the file comment).
template <class Bus>
[[nodiscard]] constexpr result<void> check_chunks(std::span<const descriptor_chunk<Bus>> chunks,
                                                  std::uint64_t page_size) noexcept {
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    const std::uint64_t a = chunks[i].dma.value();
    if (chunks[i].words.empty() || (a & 7) != 0) return errc::invalid_argument;
    if (i != 0 && (a & (page_size - 1)) != 0) return errc::invalid_argument;
    // The chunk's last byte must not wrap past 2^64 in DMA space.
    if (chunks[i].words.size() > (~a >> 3)) return errc::invalid_argument;
  }
  return {};
}

}  // namespace detail

}  // namespace phyr::inline v0::nvme
