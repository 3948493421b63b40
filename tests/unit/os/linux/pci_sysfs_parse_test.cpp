// os/linux/pci_sysfs_parse: the sysfs text parsers on their own, no file system needed.
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <phyr/os/linux/pci_sysfs_parse.hpp>
#include <string>

using phyr::errc;

namespace {
bool host(const std::string& s, std::uint32_t& d, std::uint8_t& b) {
  return phyr::detail::parse_host_component(s.data(), s.size(), d, b);
}
phyr::result<std::uint64_t> hex_text(const std::string& s) {
  return phyr::detail::sysfs_parse_hex_text(s.data(), s.size(), 0xffffff, "class", nullptr);
}
}  // namespace

TEST_CASE("parse_host_component: pci + 4..8 hex digits of domain + : + exactly 2 of bus",
          "[pci_sysfs]") {
  std::uint32_t d = 0;
  std::uint8_t b = 0;
  CHECK(host("pci0000:00", d, b));
  CHECK((d == 0 && b == 0));
  CHECK(host("pci10000:e1", d, b));
  CHECK((d == 0x10000 && b == 0xe1));
  CHECK(host("pciFFFFFFFF:AB", d, b));
  CHECK((d == 0xffffffffu && b == 0xab));
  CHECK_FALSE(host("pci000:00", d, b));        // 3 domain digits
  CHECK_FALSE(host("pci123456789:00", d, b));  // 9 domain digits
  CHECK_FALSE(host("pci0000:0", d, b));        // 1 bus digit
  CHECK_FALSE(host("pci0000:000", d, b));      // 3 bus digits
  CHECK_FALSE(host("pci0000:00 ", d, b));
  CHECK_FALSE(host("pci0000-00", d, b));
  CHECK_FALSE(host("pcI0000:00", d, b));
  CHECK_FALSE(host("pci+000:00", d, b));
  CHECK_FALSE(host("pci", d, b));
}

TEST_CASE("sysfs_parse_hex_text: one 0x number of 1..16 digits, trailing newline allowed",
          "[pci_sysfs]") {
  CHECK(hex_text("0x030000\n").value() == 0x030000);
  CHECK(hex_text("0X1").value() == 1);
  CHECK(hex_text("0xABCdef \n\n").value() == 0xabcdef);
  CHECK(hex_text("0x").error() == errc::parse_error);
  CHECK(hex_text("030000").error() == errc::parse_error);
  CHECK(hex_text("0x-1").error() == errc::parse_error);
  CHECK(hex_text("0x+1").error() == errc::parse_error);
  CHECK(hex_text("0x1000000").error() == errc::parse_error);  // above the max
  CHECK(hex_text("0x12 0x13").error() == errc::parse_error);
  std::uint64_t v = 0;
  std::size_t i = 0;
  const char* sixteen = "0xffffffffffffffff";
  CHECK(phyr::detail::sysfs_parse_hex(sixteen, std::strlen(sixteen), i, v));
  CHECK(v == ~std::uint64_t{0});
  i = 0;
  const char* padded = "0x00000000000000001";  // 17 digits: refused even though the value fits
  CHECK_FALSE(phyr::detail::sysfs_parse_hex(padded, std::strlen(padded), i, v));
  i = 0;
  const char* big = "0x10000000000000000";
  CHECK_FALSE(phyr::detail::sysfs_parse_hex(big, std::strlen(big), i, v));
}

TEST_CASE("sysfs_parse_resource: six BARs from the first six lines; errors name the line",
          "[pci_sysfs]") {
  const std::string text =
      "0x00000000fb000000 0x00000000fbffffff 0x0000000000040200\n"
      "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
      "0x0000003800000000 0x000000380fffffff 0x000000000014220c\n";
  phyr::pci_bar bars[6];
  REQUIRE(phyr::detail::sysfs_parse_resource(text.data(), text.size(), "resource", bars, nullptr));
  CHECK((bars[0].start == 0xfb000000 && bars[0].size == 0x1000000));
  CHECK_FALSE(bars[1].used());
  CHECK((bars[2].start == 0x3800000000 && bars[2].is_prefetchable() && bars[2].is_64bit()));
  phyr::pci_sysfs_error err;
  const std::string bad = text + "0x10 0x0f 0x200\n";
  CHECK(
      phyr::detail::sysfs_parse_resource(bad.data(), bad.size(), "resource", bars, &err).error() ==
      errc::parse_error);
  CHECK(err.line == 4);
  CHECK(std::string(err.path) == "resource");
}
