/// The controller's side: which bytes do PRP1/PRP2 or SGL1 name (`walk_prp`, `walk_sgl`).
///
///   auto read = [&](std::uint64_t dma) -> phyr::result<std::uint64_t> { ... };  // one LE word
///   auto r = phyr::nvme::walk_prp(cmd.prp1, cmd.prp2, length, 4096, read,
///                                 [&](std::uint64_t addr, std::uint64_t len) { log(addr, len); });
///
/// A model of a controller reading descriptors as the NVMe base specification describes it,
/// written independently of the builders (prp.hpp, sgl.hpp) so tests, fuzzers and drivers can
/// check a command before ringing the doorbell or log what a failed one named. It is not a
/// controller: it does not move data, and real controllers (and QEMU's model) may be more
/// lenient or stricter in corners the spec leaves open; where the builders avoid such a corner
/// their comments say so.
///
/// `read(dma)` returns the stored (little-endian) 64-bit word at a DMA address, or an error
/// (e.g. `errc::not_mapped`) that the walk passes on. `emit(addr, len)` receives each piece of
/// the transfer in order. Errors: `errc::misaligned` (a PRP offset where the spec wants none, a
/// non-dword PRP1, a non-quadword list or segment, a non-dword data block under dword
/// granularity), `errc::invalid_argument` (a malformed SGL: zero or non-multiple-of-16 segment
/// length, a segment descriptor not last in its segment or inside the last segment, a segment
/// chain that ends early, descriptors describing less than `length` when one is given),
/// `errc::not_supported` (SGL descriptor types and sub types a PCIe host buffer does not use).
#pragma once

#include <cstdint>
#include <phyr/core/error.hpp>
#include <phyr/device/nvme/common.hpp>
#include <phyr/device/nvme/sgl.hpp>

namespace phyr::inline v0::nvme {

/// Walks the PRP entries of a `length`-byte transfer (length > 0).
template <class Read, class Emit>
[[nodiscard]] constexpr result<void> walk_prp(std::uint64_t prp1, std::uint64_t prp2,
                                              std::uint64_t length, std::uint64_t page_size,
                                              Read&& read, Emit&& emit) noexcept {
  if (length == 0 || !valid_page_size(page_size)) return errc::invalid_argument;
  const std::uint64_t mask = page_size - 1;
  if ((prp1 & 3) != 0) return errc::misaligned;
  const std::uint64_t room = page_size - (prp1 & mask);
  const std::uint64_t n1 = length < room ? length : room;
  emit(prp1, n1);
  length -= n1;
  if (length == 0) return {};
  if (length <= page_size) {  // PRP2 is the second and last page
    if ((prp2 & mask) != 0) return errc::misaligned;
    emit(prp2, length);
    return {};
  }
  if ((prp2 & 7) != 0) return errc::misaligned;
  std::uint64_t ptr = prp2;
  bool chained = false;  // the previous slot was a chain pointer (a loop guard)
  while (length != 0) {
    auto w = read(ptr);
    if (!w) return w.error();
    const std::uint64_t e = detail::from_le64(*w);
    const bool last_slot = ((ptr + 8) & mask) == 0;
    if (last_slot && length > page_size) {  // more than one page left: this slot chains
      if ((e & mask) != 0 || chained) return errc::misaligned;
      ptr = e;
      chained = true;
      continue;
    }
    if ((e & mask) != 0) return errc::misaligned;
    const std::uint64_t n = length < page_size ? length : page_size;
    emit(e, n);
    length -= n;
    ptr += 8;
    chained = false;
  }
  return {};
}

/// Walks an SGL from SGL1. With `length` != 0 the walk stops once `length` bytes are named
/// (the last block may be longer: the command transfers only what its block count says) and
/// fails if fewer are named; with 0 every data block is emitted whole. `dword_granularity`
/// checks every data block as a controller reporting SGLS bits 1:0 = 10b would.
template <class Read, class Emit>
[[nodiscard]] constexpr result<void> walk_sgl(const sgl_descriptor& sgl1, std::uint64_t length,
                                              bool dword_granularity, Read&& read,
                                              Emit&& emit) noexcept {
  std::uint64_t left = length;
  const auto data = [&](const sgl_descriptor& d) noexcept -> result<void> {
    if (d.subtype() != 0) return errc::not_supported;
    if (dword_granularity && ((d.address | d.length) & 3) != 0) return errc::misaligned;
    std::uint64_t n = d.length;
    if (length != 0) {
      if (left == 0) return {};
      if (n > left) n = left;
      left -= n;
    }
    if (n != 0) emit(d.address, n);
    return {};
  };
  if (sgl1.type() == sgl_type::data_block) {
    if (auto r = data(sgl1); !r) return r;
    return left == 0 ? result<void>{} : result<void>{errc::invalid_argument};
  }
  sgl_descriptor seg = sgl1;
  // A chain that loops back on itself would never end; no real SGL has this many segments.
  for (std::uint64_t guard = 0;; ++guard) {
    if (guard == (std::uint64_t{1} << 24)) return errc::invalid_argument;
    if (seg.type() != sgl_type::segment && seg.type() != sgl_type::last_segment)
      return errc::not_supported;
    if (seg.subtype() != 0) return errc::not_supported;
    if (seg.length == 0 || seg.length % sgl_descriptor_bytes != 0) return errc::invalid_argument;
    if ((seg.address & 7) != 0) return errc::misaligned;
    const bool last = seg.type() == sgl_type::last_segment;
    const std::uint64_t n = seg.length / sgl_descriptor_bytes;
    bool has_next = false;
    sgl_descriptor next{};
    for (std::uint64_t i = 0; i < n; ++i) {
      const std::uint64_t at = seg.address + i * sgl_descriptor_bytes;
      auto w0 = read(at);
      if (!w0) return w0.error();
      auto w1 = read(at + 8);
      if (!w1) return w1.error();
      const sgl_descriptor d = sgl_descriptor::from_words(*w0, *w1);
      switch (d.type()) {
        case sgl_type::data_block:
          if (auto r = data(d); !r) return r;
          break;
        case sgl_type::segment:
        case sgl_type::last_segment:
          if (last || i + 1 != n) return errc::invalid_argument;
          has_next = true;
          next = d;
          break;
        default:
          return errc::not_supported;
      }
    }
    if (!has_next) {
      if (!last) return errc::invalid_argument;  // a Segment must lead to another segment
      break;
    }
    seg = next;
  }
  return left == 0 ? result<void>{} : result<void>{errc::invalid_argument};
}

}  // namespace phyr::inline v0::nvme
