// libFuzzer target for mem_registry (registry/mem_registry.hpp), checked against the byte
// model of tests/unit/registry/registry_model.hpp.
//
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude \
//       tests/fuzz/registry_fuzz.cpp -o registry_fuzz && ./registry_fuzz -max_total_time=60
//
// The input is a sequence of operations on a 1 KiB virtual window, 4 to 9 bytes each:
//   op % 3 == 0  register [va, va + len) with 1..4 pieces (target gaps and flags from the
//                input, so adjacent pieces and registrations are sometimes contiguous);
//   op % 3 == 1  unregister [va, va + len);
//   op % 3 == 2  translate (va, len), and the same bytes as a one-piece iovec.
// Success or failure, the errc, and every translation must equal the model's; any
// disagreement traps. Allocation failures are not injected here (the unit test does that).

#include <cstddef>
#include <cstdint>
#include <phyr/container/range_list.hpp>
#include <phyr/registry/mem_registry.hpp>
#include <vector>

#include "../unit/registry/registry_model.hpp"
#include "fuzz_common.hpp"

namespace {

constexpr std::uint64_t base = 0x7f00'0000'0000;
constexpr std::uint64_t window = 1024;

using fuzz::reader;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  reader in{data, size};
  registry_model::model m{base, window};
  phyr::phys_registry reg;
  std::uint64_t next_target = 0x1000'0000;
  std::uint8_t op = 0, a = 0, b = 0, l = 0;
  while (in.get(op) && in.get(a) && in.get(b) && in.get(l)) {
    const std::uint64_t off = (std::uint64_t{a} << 8 | b) % window;
    const std::uint64_t va = base + off;
    const std::uint64_t len = 1 + l % (window - off);
    if (op % 3 == 0) {
      std::uint8_t k = 0;
      (void)in.get(k);
      const unsigned pieces = 1 + k % 4;
      std::vector<registry_model::model::piece> mp;
      std::vector<phyr::phys_range> rp;
      std::uint64_t left = len;
      for (unsigned i = 0; i < pieces && left != 0; ++i) {
        std::uint8_t g = 0;
        (void)in.get(g);
        const std::uint64_t n = i + 1 == pieces ? left : 1 + (g % left);
        next_target += g & 0x0f;  // 0 keeps it contiguous
        const auto f = (g & 0x80) ? phyr::range_flags::driver0 : phyr::range_flags::none;
        mp.push_back({next_target, n, f});
        rp.push_back(phyr::phys_range{phyr::phys_addr{next_target}, n, f});
        next_target += n;
        left -= n;
      }
      const auto want = m.reg(va, len, mp);
      const auto got = reg.try_register(phyr::virt_range{phyr::virt_addr{va}, len},
                                        std::span<const phyr::phys_range>{rp});
      FUZZ_CHECK(got.has_value() == !want.has_value());
      if (want) FUZZ_CHECK(got.error() == *want);
    } else if (op % 3 == 1) {
      const auto want = m.unreg(va, len);
      const auto got = reg.try_unregister(phyr::virt_range{phyr::virt_addr{va}, len});
      FUZZ_CHECK(got.has_value() == !want.has_value());
      if (want) FUZZ_CHECK(got.error() == *want);
    } else {
      registry_model::answer ans;
      const auto want = m.translate(va, len, ans);
      const auto got = reg.translate(phyr::virt_addr{va}, len);
      FUZZ_CHECK(got.has_value() == !want.has_value());
      if (want) {
        FUZZ_CHECK(got.error() == *want);
      } else {
        FUZZ_CHECK(got->addr.value() == ans.addr && got->len == ans.len &&
                   got->flags == ans.flags);
      }
      // The iovec {[va, va + len)}: the list must be the model's walk, coalesced.
      const phyr::virt_range iov[] = {phyr::virt_range{phyr::virt_addr{va}, len}};
      phyr::range_list<phyr::phys_range> out;
      const auto r = reg.try_translate(std::span<const phyr::virt_range>{iov}, out);
      std::vector<phyr::phys_range> expect;
      bool ok = true;
      for (std::uint64_t v = va; v < va + len;) {
        registry_model::answer x;
        if (m.translate(v, va + len - v, x)) {
          ok = false;
          break;
        }
        const phyr::phys_range pr{phyr::phys_addr{x.addr}, x.len, x.flags};
        if (!expect.empty() && expect.back().can_merge(pr))
          expect.back() = phyr::phys_range{expect.back().addr(), expect.back().len() + x.len,
                                           x.flags};
        else
          expect.push_back(pr);
        v += x.len;
      }
      FUZZ_CHECK(r.has_value() == ok);
      if (ok) {
        FUZZ_CHECK(out.size() == expect.size());
        std::size_t i = 0;
        for (const phyr::phys_range& x : out) FUZZ_CHECK(x == expect[i++]);
      } else {
        FUZZ_CHECK(r.error() == phyr::errc::not_mapped && out.empty());
      }
    }
  }
  return 0;
}
