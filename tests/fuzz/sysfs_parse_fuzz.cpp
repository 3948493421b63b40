// libFuzzer target: the pure sysfs parsers (no file system) against models written from the
// formats:
// - pci_bdf::parse: "dddd:bb:dd.f", 4..8 hex digits of domain, device <= 31, function <= 7; a
//   parsed name formats back to the same text up to case and leading domain zeros;
// - the host-bridge component "pciDDDD:BB" (4..8 + exactly 2 hex digits, nothing after);
// - the `resource` file: lines of three "0x" + 1..16 hex digit fields separated by blanks, a
//   start above the end or [0, 2^64) refused, the first six lines are the BARs;
// - `config` bytes: the PCIe port type and ACS state, checked on planted capability chains
//   and, for arbitrary bytes, for staying inside the buffer and in range.
// The first byte picks the parser; the rest is its input.
#include <fuzzer/FuzzedDataProvider.h>

#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <phyr/os/linux/pci_sysfs.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_common.hpp"

namespace {

using u64 = std::uint64_t;

// Hex digits at the front of `s` (at most `max`), their value, and how many.
std::size_t take_hex(std::string_view& s, std::size_t max, u64& v) {
  std::size_t d = 0;
  v = 0;
  while (d < max && d < s.size() && std::isxdigit(static_cast<unsigned char>(s[d]))) {
    const char c = static_cast<char>(std::tolower(static_cast<unsigned char>(s[d])));
    v = v * 16 + static_cast<u64>(c <= '9' ? c - '0' : c - 'a' + 10);
    ++d;
  }
  s.remove_prefix(d);
  return d;
}

bool more_hex(std::string_view s) {
  return !s.empty() && std::isxdigit(static_cast<unsigned char>(s[0]));
}

std::optional<phyr::pci_bdf> model_bdf(std::string_view s) {
  u64 dom, bus, dev, fn;
  if (take_hex(s, 8, dom) < 4 || s.empty() || s[0] != ':') return std::nullopt;
  s.remove_prefix(1);
  if (take_hex(s, 2, bus) != 2 || s.empty() || s[0] != ':') return std::nullopt;
  s.remove_prefix(1);
  if (take_hex(s, 2, dev) != 2 || s.empty() || s[0] != '.') return std::nullopt;
  s.remove_prefix(1);
  if (take_hex(s, 1, fn) != 1 || !s.empty()) return std::nullopt;
  if (dev > 31 || fn > 7) return std::nullopt;
  return phyr::pci_bdf{static_cast<std::uint32_t>(dom), static_cast<std::uint8_t>(bus),
                       static_cast<std::uint8_t>(dev), static_cast<std::uint8_t>(fn)};
}

void check_bdf(std::string_view s) {
  const auto got = phyr::pci_bdf::parse(s.data(), s.size());
  const auto want = model_bdf(s);
  FUZZ_CHECK(got.has_value() == want.has_value());
  if (!want) {
    FUZZ_CHECK(got.error() == phyr::errc::parse_error);
    return;
  }
  FUZZ_CHECK(*got == *want);
  char buf[24];
  const std::size_t n = got->format(buf, sizeof buf);
  FUZZ_CHECK(n != 0);
  const auto again = phyr::pci_bdf::parse(buf, n);
  FUZZ_CHECK(again && *again == *got);
}

void check_host(std::string_view s) {
  std::uint32_t dom = 0;
  std::uint8_t bus = 0;
  const bool got = phyr::detail::parse_host_component(s.data(), s.size(), dom, bus);
  bool ok = false;
  u64 d = 0, b = 0;
  std::string_view t = s;
  if (t.substr(0, 3) == "pci") {
    t.remove_prefix(3);
    ok = take_hex(t, 8, d) >= 4 && !more_hex(t) && !t.empty() && t[0] == ':';
    if (ok) {
      t.remove_prefix(1);
      ok = take_hex(t, 2, b) == 2 && t.empty();
    }
  }
  FUZZ_CHECK(got == ok);
  if (ok) FUZZ_CHECK(dom == d && bus == b);
}

// The resource format, line by line.
struct model_bar {
  u64 start = 0, size = 0, flags = 0;
};
std::optional<std::vector<model_bar>> model_resource(std::string_view s) {
  if (s.empty()) return std::nullopt;
  std::vector<model_bar> lines;
  while (!s.empty()) {
    u64 v[3];
    for (int k = 0; k < 3; ++k) {
      if (k > 0)
        while (!s.empty() && (s[0] == ' ' || s[0] == '\t')) s.remove_prefix(1);
      if (s.size() < 2 || s[0] != '0' || (s[1] != 'x' && s[1] != 'X')) return std::nullopt;
      s.remove_prefix(2);
      const std::size_t d = take_hex(s, 16, v[k]);
      if (d == 0 || more_hex(s)) return std::nullopt;
    }
    while (!s.empty() && (s[0] == ' ' || s[0] == '\t')) s.remove_prefix(1);
    if (!s.empty() && s[0] != '\n') return std::nullopt;
    if (!s.empty()) s.remove_prefix(1);
    model_bar b;
    b.flags = v[2];
    if (!(v[0] == 0 && v[1] == 0)) {
      if (v[0] > v[1]) return std::nullopt;
      if (v[0] == 0 && v[1] == ~u64{0}) return std::nullopt;
      b.start = v[0];
      b.size = v[1] - v[0] + 1;
    }
    lines.push_back(b);
  }
  return lines;
}

void check_resource(std::string_view s) {
  phyr::pci_bar bars[6];
  phyr::pci_sysfs_error err;
  const auto got = phyr::detail::sysfs_parse_resource(s.data(), s.size(), "resource", bars, &err);
  const auto want = model_resource(s);
  FUZZ_CHECK(got.has_value() == want.has_value());
  if (!want) {
    FUZZ_CHECK(got.error() == phyr::errc::parse_error && err.code == phyr::errc::parse_error);
    FUZZ_CHECK(std::memchr(err.message, '\0', sizeof err.message) != nullptr);
    return;
  }
  for (std::size_t i = 0; i < 6 && i < want->size(); ++i) {
    FUZZ_CHECK(bars[i].size == (*want)[i].size && bars[i].flags == (*want)[i].flags);
    if (bars[i].size != 0) FUZZ_CHECK(bars[i].start == (*want)[i].start);
  }
}

// Config space: arbitrary bytes stay in range; planted chains are found.
void check_config(FuzzedDataProvider& in) {
  std::vector<unsigned char> c = in.ConsumeBytes<unsigned char>(in.ConsumeIntegralInRange(0, 4096));
  const bool plant = in.ConsumeBool() && c.size() >= 0x44;
  int want_port = -1, want_acs = -2;  // -2: not planted
  if (plant) {
    c[0x06] = static_cast<unsigned char>(c[0x06] | 0x10);
    // A chain of 0..5 other capabilities, then PCIe at a distinct dword-aligned offset.
    const std::size_t slots = (std::min<std::size_t>(c.size(), 256) - 0x40) / 4;
    std::vector<std::size_t> pos;
    const std::size_t hops = in.ConsumeIntegralInRange<std::size_t>(1, 6);
    for (std::size_t k = 0; k < hops && slots >= 1; ++k) {
      const std::size_t p = 0x40 + 4 * in.ConsumeIntegralInRange<std::size_t>(0, slots - 1);
      bool dup = false;
      for (std::size_t q : pos) dup = dup || q == p;
      if (!dup) pos.push_back(p);
    }
    c[0x34] = static_cast<unsigned char>(pos[0]);
    for (std::size_t k = 0; k < pos.size(); ++k) {
      const bool last = k + 1 == pos.size();
      c[pos[k]] = last ? 0x10 : static_cast<unsigned char>(0x01 + (k % 0x0f));  // not 0x10
      c[pos[k] + 1] = last ? 0 : static_cast<unsigned char>(pos[k + 1]);
    }
    if (pos.back() + 4 <= c.size())
      want_port = (c[pos.back() + 2] >> 4) & 0xf;
    else
      want_port = -1;
    // ACS as the first extended capability, when the buffer holds it.
    if (c.size() >= 0x108 && in.ConsumeBool()) {
      const std::uint16_t ctrl = in.ConsumeIntegral<std::uint16_t>();
      c[0x100] = 0x0d;
      c[0x101] = 0x00;
      c[0x102] = 0x01;
      c[0x103] = 0x00;  // version 1, next 0
      c[0x106] = static_cast<unsigned char>(ctrl);
      c[0x107] = static_cast<unsigned char>(ctrl >> 8);
      want_acs = (ctrl & 0x2c) != 0 ? 1 : 0;
    }
  }
  const auto info = phyr::detail::sysfs_parse_config(c.data(), c.size());
  FUZZ_CHECK(info.port_type >= -1 && info.port_type <= 15);
  FUZZ_CHECK(info.acs_redirect >= -1 && info.acs_redirect <= 1);
  if (c.size() < 64) FUZZ_CHECK(info.port_type == -1 && info.acs_redirect == -1);
  if (c.size() >= 0x104) FUZZ_CHECK(info.acs_redirect >= 0);
  if (c.size() >= 64 && c.size() < 0x104) FUZZ_CHECK(info.acs_redirect == -1);
  if (plant && want_port >= 0) FUZZ_CHECK(info.port_type == want_port);
  if (want_acs != -2) FUZZ_CHECK(info.acs_redirect == want_acs);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view text{reinterpret_cast<const char*>(data + 1), size - 1};
  switch (data[0] % 4) {
    case 0:
      check_bdf(text);
      break;
    case 1:
      check_host(text);
      break;
    case 2:
      check_resource(text);
      break;
    default: {
      FuzzedDataProvider in(data + 1, size - 1);
      check_config(in);
    }
  }
  return 0;
}
