// A plain model of mem_registry for property tests and the fuzz target: one entry per virtual
// byte of a small window (registered?, target address, flags, owning registration's start).
// It is a model, slow and obviously right, not the real registry.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include <phyr/core/error.hpp>
#include <phyr/core/range.hpp>

namespace registry_model {

struct byte_entry {
  bool used = false;
  std::uint64_t target = 0;
  phyr::range_flags flags = phyr::range_flags::none;
  std::uint64_t owner = 0;
};

struct answer {
  std::uint64_t addr = 0;
  std::uint64_t len = 0;
  phyr::range_flags flags = phyr::range_flags::none;
};

class model {
 public:
  model(std::uint64_t base, std::uint64_t size) : base_(base), bytes_(size) {}

  [[nodiscard]] bool inside(std::uint64_t va, std::uint64_t len) const {
    return va >= base_ && len <= bytes_.size() && va - base_ <= bytes_.size() - len;
  }

  // pieces: (target address, length, flags) in virtual order.
  struct piece {
    std::uint64_t addr;
    std::uint64_t len;
    phyr::range_flags flags;
  };
  std::optional<phyr::errc> reg(std::uint64_t va, std::uint64_t len,
                                const std::vector<piece>& pieces) {
    std::uint64_t sum = 0;
    for (const piece& p : pieces) sum += p.len;
    if (pieces.empty() || sum != len) return phyr::errc::invalid_argument;
    for (std::uint64_t i = 0; i < len; ++i)
      if (bytes_[va - base_ + i].used) return phyr::errc::overlaps;
    std::uint64_t v = va;
    for (const piece& p : pieces) {
      for (std::uint64_t i = 0; i < p.len; ++i, ++v)
        bytes_[v - base_] = byte_entry{true, p.addr + i, p.flags, va};
    }
    return std::nullopt;
  }

  std::optional<phyr::errc> unreg(std::uint64_t va, std::uint64_t len) {
    const std::uint64_t lo = va - base_;
    const std::uint64_t hi = lo + len;  // exclusive
    bool any = false;
    for (std::uint64_t i = lo; i < hi; ++i) any = any || bytes_[i].used;
    if (!any) return phyr::errc::not_found;
    // Cut: a registration with a byte inside [lo, hi) has a byte outside it.
    std::vector<std::uint64_t> owners;
    for (std::uint64_t i = lo; i < hi; ++i)
      if (bytes_[i].used) owners.push_back(bytes_[i].owner);
    for (std::uint64_t i = 0; i < bytes_.size(); ++i) {
      if (i >= lo && i < hi) continue;
      if (!bytes_[i].used) continue;
      for (std::uint64_t o : owners)
        if (bytes_[i].owner == o) return phyr::errc::straddles_boundary;
    }
    for (std::uint64_t i = lo; i < hi; ++i)
      if (!bytes_[i].used) return phyr::errc::not_mapped;
    for (std::uint64_t i = lo; i < hi; ++i) bytes_[i] = byte_entry{};
    return std::nullopt;
  }

  // errc or the answer.
  std::optional<phyr::errc> translate(std::uint64_t va, std::uint64_t len, answer& out) const {
    if (len == 0) return phyr::errc::invalid_argument;
    if (va < base_ || va - base_ >= bytes_.size() || !bytes_[va - base_].used)
      return phyr::errc::not_mapped;
    const byte_entry& first = bytes_[va - base_];
    std::uint64_t n = 1;
    while (n < len && va - base_ + n < bytes_.size()) {
      const byte_entry& b = bytes_[va - base_ + n];
      if (!b.used || b.target != first.target + n || b.flags != first.flags) break;
      ++n;
    }
    out = answer{first.target, n, first.flags};
    return std::nullopt;
  }

  [[nodiscard]] std::uint64_t base() const { return base_; }
  [[nodiscard]] std::uint64_t size() const { return bytes_.size(); }
  [[nodiscard]] const byte_entry& at(std::uint64_t va) const { return bytes_[va - base_]; }

 private:
  std::uint64_t base_;
  std::vector<byte_entry> bytes_;
};

}  // namespace registry_model
