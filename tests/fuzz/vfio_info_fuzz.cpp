// libFuzzer target for the VFIO_IOMMU_GET_INFO capability-chain parser
// (os/linux/vfio/iommu_info.hpp), directly and through container::try_attach_group against
// the recorded fake kernel of the unit tests.
//
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude \
//       tests/fuzz/vfio_info_fuzz.cpp -o vfio_info_fuzz && ./vfio_info_fuzz -max_total_time=60
//
// The first byte picks a mode; the rest is the input:
//   0  the whole reply (fixed header + chain) as bytes: parse_iommu_info must reject it with an
//      errc or return windows that are sorted, disjoint, non-inverted and at most 64, and a
//      min_page_size that is 0 or the lowest set bit of the page sizes.
//   1  the capability chain only, served by the fake kernel behind a real fixed header: the
//      attach must succeed with such windows or fail cleanly, leaving the container without
//      an IOMMU and only its own fd open.
// Any violation traps; out-of-bounds reads are caught by AddressSanitizer.

#include <cstddef>
#include <cstdint>
#include <phyr/os/linux/vfio.hpp>
#include <span>
#include <vector>

#include "../unit/os/linux/vfio_fake.hpp"

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

void check_info(const phyr::vfio::iommu_info& i) {
  const auto w = i.windows();
  check(!w.empty() && w.size() <= phyr::vfio::iommu_info::max_iova_windows);
  for (std::size_t k = 0; k < w.size(); ++k) {
    check(w[k].first <= w[k].last);
    if (k != 0) check(w[k - 1].last < w[k].first);
  }
  const std::uint64_t p = i.page_sizes();
  check(i.min_page_size() == (p & (~p + 1)));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const auto* bytes = reinterpret_cast<const std::byte*>(data + 1);
  const std::size_t n = size - 1;
  if (data[0] % 2 == 0) {
    // Copy so the parser sees a buffer of exactly n bytes (ASan catches a read past it).
    std::vector<std::byte> buf(bytes, bytes + n);
    auto r = phyr::vfio::parse_iommu_info(std::span<const std::byte>{buf.data(), buf.size()});
    if (r) check_info(*r);
    return 0;
  }
  vfio_fake::kernel k;
  k.raw_caps = std::vector<std::byte>(bytes, bytes + n);
  auto c = phyr::vfio::container::try_open(k.ops());
  check(c.has_value());
  {
    auto g = c->try_attach_group(12);
    if (g) {
      check(c->has_iommu());
      check_info(c->iommu());
    } else {
      check(!c->has_iommu() && k.open_fds() == 1);
    }
  }
  check(k.open_fds() == 1);
  return 0;
}
