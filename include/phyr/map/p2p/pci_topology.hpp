/// `pci_topology`: PCI devices, their upstream bridges and host bridges, and the peer-to-peer
/// map type between a provider (the device whose BAR holds the memory) and a client (the device
/// doing the DMA).
///
///   using phyr::pci_device_kind;
///   phyr::pci_topology<> t;
///   auto hb = t.try_add_host_bridge(0, 0x00);                // pci0000:00
///   (void)t.try_add_device(*hb, {.bdf = {0, 0x00, 0x01, 0}, .kind = pci_device_kind::root_port});
///   ...                                                       // switch ports below it
///   (void)t.try_add_device_below(dsp, {.bdf = gpu});          // endpoint by default
///   auto p = t.path(gpu, nvme);                               // result<p2p_path>
///   if (p && p->type == phyr::p2p_map_type::bus_address) ...  // through the switch
///   t.try_set_host_bridge_policy(*hb, phyr::host_bridge_p2p::same_host_bridge);  // allowlist
///
/// The rules are the Linux kernel's (drivers/pci/p2pdma.c, calc_map_type_and_dist):
///  - Walk up from the provider (itself first) and find the first device that is also on the
///    client's upstream chain (the client itself first). The chains stop at the device on the
///    host bridge's root bus (a root port, or an integrated endpoint): the host bridge is not a
///    PCI device and never counts as a common upstream bridge.
///  - Found, and no device on the way has ACS redirection enabled (on the provider's side
///    including the common bridge, on the client's side excluding it): `bus_address`. Distance
///    is the number of hops: 0 for the same function, 2 for two functions of one device, 4 for
///    two devices below one switch.
///  - Otherwise the transaction goes through the host bridge: `through_host_bridge` when the
///    platform forwards P2P everywhere (`set_platform_p2p`, the kernel's "AMD Zen or newer"), or
///    the host bridges are allowlisted: the same host bridge with any allowlist entry, or two
///    host bridges that both allow cross-bridge traffic. Else `not_supported`.
///
/// Decisions are cached per (provider, client) pair in a 256-slot direct-mapped table of
/// atomic words: a hit is two atomic loads and takes no lock; a miss computes under the
/// topology's mutex (which also guards the policy and ACS state) and fills its slot. Policy
/// and ACS changes bump a generation that every cached word carries, so stale words stop
/// matching at once. Adding devices or host bridges is a set-up step: it must not run
/// concurrently with anything else. Everything else (queries, policy and ACS setters) is safe
/// from many threads.
#pragma once

#include <atomic>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <new>
#include <phyr/config.hpp>
#include <phyr/core/allocator.hpp>
#include <phyr/core/detail/try_vector.hpp>
#include <phyr/core/error.hpp>
#include <phyr/map/p2p/p2p_registry.hpp>

namespace phyr::inline v0 {

namespace detail {
/// Reads up to `max_digits` hex digits (either case) at s[i..n) into `out`, advancing `i`;
/// returns how many it read. Shared by the BDF parser and the sysfs file parser.
[[nodiscard]] constexpr std::size_t parse_hex_digits(const char* s, std::size_t n, std::size_t& i,
                                                     std::size_t max_digits,
                                                     std::uint64_t& out) noexcept {
  std::size_t d = 0;
  out = 0;
  for (; i < n && d < max_digits; ++i, ++d) {
    const char c = s[i];
    unsigned v;
    if (c >= '0' && c <= '9')
      v = static_cast<unsigned>(c - '0');
    else if (c >= 'a' && c <= 'f')
      v = static_cast<unsigned>(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F')
      v = static_cast<unsigned>(c - 'A' + 10);
    else
      break;
    out = (out << 4) | v;
  }
  return d;
}
}  // namespace detail

/// A PCI function address, domain:bus:device.function.
struct pci_bdf {
  std::uint32_t domain = 0;
  std::uint8_t bus = 0;
  std::uint8_t device = 0;    ///< 0..31
  std::uint8_t function = 0;  ///< 0..7

  [[nodiscard]] constexpr bool valid() const noexcept { return device < 32 && function < 8; }
  [[nodiscard]] constexpr std::uint8_t devfn() const noexcept {
    return static_cast<std::uint8_t>((device << 3) | function);
  }
  /// domain << 16 | bus << 8 | devfn: orders like the kernel lists devices.
  [[nodiscard]] constexpr std::uint64_t key() const noexcept {
    return (std::uint64_t{domain} << 16) | (std::uint64_t{bus} << 8) | devfn();
  }
  [[nodiscard]] static constexpr pci_bdf from_key(std::uint64_t k) noexcept {
    return pci_bdf{static_cast<std::uint32_t>(k >> 16), static_cast<std::uint8_t>(k >> 8),
                   static_cast<std::uint8_t>((k >> 3) & 31), static_cast<std::uint8_t>(k & 7)};
  }
  /// The registry identity of this function's BARs.
  [[nodiscard]] constexpr p2p_provider_id provider_id() const noexcept {
    return p2p_provider_id{key()};
  }
  [[nodiscard]] static constexpr pci_bdf from_provider_id(p2p_provider_id id) noexcept {
    return from_key(id.value);
  }

  /// Parses sysfs's name, "dddd:bb:dd.f" (lower- or upper-case hex; the domain has 4 to 8
  /// digits, as VMD domains such as 10000 have 5). Errors: parse_error.
  [[nodiscard]] static constexpr result<pci_bdf> parse(const char* s, std::size_t n) noexcept {
    std::size_t i = 0;
    auto hex = [&](std::size_t min_digits, std::size_t max_digits,
                   std::uint64_t & out) constexpr noexcept {
      return detail::parse_hex_digits(s, n, i, max_digits, out) >= min_digits;
    };
    std::uint64_t dom = 0, bus = 0, dev = 0, fn = 0;
    if (!hex(4, 8, dom) || i >= n || s[i++] != ':') return errc::parse_error;
    if (!hex(2, 2, bus) || i >= n || s[i++] != ':') return errc::parse_error;
    if (!hex(2, 2, dev) || i >= n || s[i++] != '.') return errc::parse_error;
    if (!hex(1, 1, fn) || i != n) return errc::parse_error;
    if (dev > 31 || fn > 7 || dom > 0xffffffffu) return errc::parse_error;
    return pci_bdf{static_cast<std::uint32_t>(dom), static_cast<std::uint8_t>(bus),
                   static_cast<std::uint8_t>(dev), static_cast<std::uint8_t>(fn)};
  }

  /// Writes "dddd:bb:dd.f" and a NUL into `buf` (at least 18 bytes holds any domain); returns
  /// the length without the NUL, or 0 when `n` is too small.
  constexpr std::size_t format(char* buf, std::size_t n) const noexcept {
    constexpr const char* digits = "0123456789abcdef";
    char tmp[20] = {};
    std::size_t len = 0;
    int dom_digits = 4;
    while (dom_digits < 8 && (std::uint64_t{domain} >> (4 * dom_digits)) != 0) ++dom_digits;
    for (int d = dom_digits - 1; d >= 0; --d) tmp[len++] = digits[(domain >> (4 * d)) & 15];
    tmp[len++] = ':';
    tmp[len++] = digits[bus >> 4];
    tmp[len++] = digits[bus & 15];
    tmp[len++] = ':';
    tmp[len++] = digits[(device >> 4) & 15];
    tmp[len++] = digits[device & 15];
    tmp[len++] = '.';
    tmp[len++] = digits[function & 7];
    if (n < len + 1) return 0;
    for (std::size_t i = 0; i < len; ++i) buf[i] = tmp[i];
    buf[len] = '\0';
    return len;
  }

  friend constexpr bool operator==(pci_bdf a, pci_bdf b) noexcept { return a.key() == b.key(); }
  friend constexpr auto operator<=>(pci_bdf a, pci_bdf b) noexcept { return a.key() <=> b.key(); }
};

/// The role of a function in the tree. Only bridges may have devices below them.
enum class pci_device_kind : std::uint8_t {
  endpoint,         ///< anything that is not a bridge (GPU, NVMe, NIC, host-bridge function 00.0)
  root_port,        ///< PCIe root port (on the root bus)
  upstream_port,    ///< PCIe switch upstream port
  downstream_port,  ///< PCIe switch downstream port
  pci_bridge,       ///< any other PCI-to-PCI bridge (conventional PCI, or kind unknown)
};

[[nodiscard]] constexpr bool is_bridge(pci_device_kind k) noexcept {
  return k != pci_device_kind::endpoint;
}

[[nodiscard]] constexpr const char* to_string(pci_device_kind k) noexcept {
  switch (k) {
    case pci_device_kind::endpoint:
      return "endpoint";
    case pci_device_kind::root_port:
      return "root_port";
    case pci_device_kind::upstream_port:
      return "upstream_port";
    case pci_device_kind::downstream_port:
      return "downstream_port";
    case pci_device_kind::pci_bridge:
      return "pci_bridge";
  }
  return "unknown";
}

/// What a host bridge allows (the user's allowlist; the kernel's pci_p2pdma_whitelist).
enum class host_bridge_p2p : std::uint8_t {
  deny,              ///< not allowlisted: P2P through this host bridge is not supported
  same_host_bridge,  ///< forwards between its own root ports only (REQ_SAME_HOST_BRIDGE)
  any,               ///< also forwards to/from other allowlisted host bridges
};

/// How a client reaches a provider's memory.
enum class p2p_map_type : std::uint8_t {
  not_supported,        ///< no usable path: the caller must fall back (bounce through RAM)
  bus_address,          ///< through a common switch/bridge: DMA = phys + bus offset, no IOMMU
  through_host_bridge,  ///< via the root complex: mapped like RAM (IOMMU/identity)
};

[[nodiscard]] constexpr const char* to_string(p2p_map_type t) noexcept {
  switch (t) {
    case p2p_map_type::not_supported:
      return "not_supported";
    case p2p_map_type::bus_address:
      return "bus_address";
    case p2p_map_type::through_host_bridge:
      return "through_host_bridge";
  }
  return "unknown";
}

/// A decision and why: the distance (hops through the nearest common upstream bridge, or
/// through both root-bus devices when there is none) and whether ACS redirection forced the
/// host-bridge route.
struct p2p_path {
  static constexpr std::uint8_t max_distance = 127;
  p2p_map_type type = p2p_map_type::not_supported;
  std::uint8_t distance = 0;   ///< saturates at `max_distance` (127)
  bool common_bridge = false;  ///< a common upstream device exists
  bool acs_redirect = false;   ///< a device on the path redirects P2P upstream
  friend constexpr bool operator==(const p2p_path&, const p2p_path&) noexcept = default;
};

/// What a device is, as given to `try_add_device*`.
struct pci_device_info {
  pci_bdf bdf{};
  pci_device_kind kind = pci_device_kind::endpoint;
  bool acs_redirect = false;  ///< ACS P2P request/completion redirect or egress control set
  std::uint16_t vendor = 0xffff;
  std::uint16_t device = 0xffff;
  std::uint32_t class_code = 0;  ///< 24-bit class/subclass/prog-if, e.g. 0x010802 for NVMe
};

/// A host bridge (Linux "pciDDDD:BB"): the root of one PCI hierarchy; not a PCI function.
struct pci_host_bridge_info {
  std::uint32_t domain = 0;
  std::uint8_t root_bus = 0;
  host_bridge_p2p policy = host_bridge_p2p::deny;
};

template <segment_allocator Alloc = default_allocator>
class pci_topology {
 public:
  using allocator_type = Alloc;
  static constexpr std::uint32_t npos = ~std::uint32_t{0};
  /// Device and host bridge indices fit 20 bits (the cache packs two of them in one word).
  static constexpr std::uint32_t max_devices = 1u << 20;
  static constexpr std::size_t cache_slots = 256;

  pci_topology() noexcept = default;
  explicit pci_topology(Alloc a) noexcept : nodes_(a), sorted_(a), hosts_(a), alloc_(a) {}
  pci_topology(const pci_topology&) = delete;
  pci_topology& operator=(const pci_topology&) = delete;
  /// Moves the devices; the decision cache starts empty. Neither side may be in use.
  pci_topology(pci_topology&& o) noexcept
      : nodes_(std::move(o.nodes_)),
        sorted_(std::move(o.sorted_)),
        hosts_(std::move(o.hosts_)),
        count_(o.count_),
        platform_p2p_(o.platform_p2p_),
        alloc_(o.alloc_) {
    o.forget();
  }
  pci_topology& operator=(pci_topology&& o) noexcept {
    if (this != &o) {
      nodes_ = std::move(o.nodes_);
      sorted_ = std::move(o.sorted_);
      hosts_ = std::move(o.hosts_);
      count_ = o.count_;
      platform_p2p_ = o.platform_p2p_;
      alloc_ = o.alloc_;
      o.forget();
      clear_cache();
      generation_.fetch_add(1, std::memory_order_relaxed);
    }
    return *this;
  }
  ~pci_topology() = default;

  // ---- building (set-up time; not concurrent with anything) ----------------------------------

  /// Adds a host bridge; returns its index. Errors: overlaps (same domain and root bus),
  /// exhausted (max_devices), out_of_memory. Strong guarantee.
  result<std::uint32_t> try_add_host_bridge(
      std::uint32_t domain, std::uint8_t root_bus,
      host_bridge_p2p policy = host_bridge_p2p::deny) noexcept {
    for (const pci_host_bridge_info& h : hosts_) {
      if (h.domain == domain && h.root_bus == root_bus) return errc::overlaps;
    }
    if (hosts_.size() >= max_devices) return errc::exhausted;
    if (auto r = hosts_.try_push_back(pci_host_bridge_info{domain, root_bus, policy}); !r)
      return errc::out_of_memory;
    return static_cast<std::uint32_t>(hosts_.size() - 1);
  }

  /// Adds a device on host bridge `host`'s root bus (a root port, or an integrated endpoint).
  /// Errors: not_found (no such host bridge), invalid_argument (bad device/function number, or
  /// a domain different from the host bridge's), overlaps (bdf already present), exhausted,
  /// out_of_memory. Strong guarantee.
  result<std::uint32_t> try_add_device(std::uint32_t host, const pci_device_info& info) noexcept {
    if (host >= static_cast<std::uint32_t>(hosts_.size())) return errc::not_found;
    if (info.bdf.domain != hosts_[host].domain) return errc::invalid_argument;
    return add(info, npos, host);
  }

  /// Adds a device whose upstream bridge is `parent` (already added, and a bridge).
  /// Errors: not_found (no parent), invalid_argument (parent not a bridge, bad bdf, other
  /// domain), overlaps, exhausted, out_of_memory. Strong guarantee.
  result<std::uint32_t> try_add_device_below(pci_bdf parent, const pci_device_info& info) noexcept {
    const std::uint32_t p = find(parent);
    if (p == npos) return errc::not_found;
    if (!is_bridge(nodes_[p].info.kind)) return errc::invalid_argument;
    if (info.bdf.domain != parent.domain) return errc::invalid_argument;
    return add(info, p, nodes_[p].host);
  }

  // ---- policy (thread-safe; invalidates cached decisions) -------------------------------------

  /// Sets host bridge `host`'s allowlist entry. Errors: not_found.
  result<void> try_set_host_bridge_policy(std::uint32_t host, host_bridge_p2p p) noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    if (host >= static_cast<std::uint32_t>(hosts_.size())) return errc::not_found;
    hosts_[host].policy = p;
    invalidate_locked();
    return {};
  }
  /// The platform forwards P2P between any root ports (the kernel's cpu_supports_p2pdma()).
  void set_platform_p2p(bool on) noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    platform_p2p_ = on;
    invalidate_locked();
  }
  /// Sets a device's ACS redirect state (as read from its ACS control register).
  /// Errors: not_found.
  result<void> try_set_acs_redirect(pci_bdf b, bool on) noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    const std::uint32_t i = find(b);
    if (i == npos) return errc::not_found;
    nodes_[i].acs = on;
    invalidate_locked();
    return {};
  }

  // ---- queries -------------------------------------------------------------------------------

  /// Index of `b`, or npos. O(log N).
  [[nodiscard]] std::uint32_t find(pci_bdf b) const noexcept {
    const std::uint64_t k = b.key();
    std::uint32_t lo = 0, len = count_;
    while (len > 0) {
      const std::uint32_t half = len / 2;
      if (sorted_[lo + half].key < k) {
        lo += half + 1;
        len -= half + 1;
      } else {
        len = half;
      }
    }
    return (lo < count_ && sorted_[lo].key == k) ? sorted_[lo].index : npos;
  }
  [[nodiscard]] bool contains(pci_bdf b) const noexcept { return find(b) != npos; }

  [[nodiscard]] std::uint32_t size() const noexcept { return count_; }
  [[nodiscard]] std::uint32_t host_bridge_count() const noexcept {
    return static_cast<std::uint32_t>(hosts_.size());
  }
  /// Device `i` as added (ACS state as added; see `acs_redirect`).
  [[nodiscard]] const pci_device_info& device(std::uint32_t i) const noexcept {
    PHYR_ASSERT(i < count_, "device index out of range");
    return nodes_[i].info;
  }
  /// Index of device `i`'s upstream bridge, or npos on the root bus.
  [[nodiscard]] std::uint32_t upstream(std::uint32_t i) const noexcept {
    PHYR_ASSERT(i < count_, "device index out of range");
    return nodes_[i].parent;
  }
  [[nodiscard]] std::uint32_t host_bridge_of(std::uint32_t i) const noexcept {
    PHYR_ASSERT(i < count_, "device index out of range");
    return nodes_[i].host;
  }
  [[nodiscard]] pci_host_bridge_info host_bridge(std::uint32_t h) const noexcept {
    PHYR_ASSERT(h < static_cast<std::uint32_t>(hosts_.size()), "host bridge index out of range");
    std::lock_guard<std::mutex> lock(mutex_);
    return hosts_[h];
  }
  [[nodiscard]] bool acs_redirect(std::uint32_t i) const noexcept {
    PHYR_ASSERT(i < count_, "device index out of range");
    std::lock_guard<std::mutex> lock(mutex_);
    return nodes_[i].acs;
  }
  /// Host bridge index for (domain, root bus), or npos.
  [[nodiscard]] std::uint32_t find_host_bridge(std::uint32_t domain,
                                               std::uint8_t root_bus) const noexcept {
    for (std::uint32_t i = 0; i < static_cast<std::uint32_t>(hosts_.size()); ++i) {
      if (hosts_[i].domain == domain && hosts_[i].root_bus == root_bus) return i;
    }
    return npos;
  }

  /// The map type from `provider`'s memory to `client`'s DMA. Errors: not_found (either
  /// device unknown).
  [[nodiscard]] result<p2p_path> path(pci_bdf provider, pci_bdf client) const noexcept {
    const std::uint32_t p = find(provider);
    const std::uint32_t c = find(client);
    if (p == npos || c == npos) return errc::not_found;
    return path_by_index(p, c);
  }
  [[nodiscard]] result<p2p_map_type> map_type(pci_bdf provider, pci_bdf client) const noexcept {
    auto r = path(provider, client);
    if (!r) return r.error();
    return r->type;
  }

  /// `path` by device indices (both < size()). Cached: a hit is two atomic loads.
  [[nodiscard]] p2p_path path_by_index(std::uint32_t p, std::uint32_t c) const noexcept {
    PHYR_ASSERT(p < count_ && c < count_, "device index out of range");
    const std::uint64_t key = (std::uint64_t{p} << 20) | c;
    std::atomic<std::uint64_t>& slot = cache_[slot_of(key)];
    const std::uint64_t gen = generation_.load(std::memory_order_acquire);
    const std::uint64_t e = slot.load(std::memory_order_acquire);
    if ((e >> 63) != 0 && ((e >> 51) & gen_mask) == (gen & gen_mask) && (e & key_mask) == key)
      return unpack(e);
    return compute_and_cache(p, c, key);
  }

  [[nodiscard]] Alloc get_allocator() const noexcept { return alloc_; }

  /// Decisions computed on cache misses so far (tests and tuning).
  [[nodiscard]] std::uint64_t decisions_computed() const noexcept {
    return computed_.load(std::memory_order_relaxed);
  }

 private:
  struct node {
    pci_device_info info;
    std::uint32_t parent;
    std::uint32_t host;
    bool acs;  // guarded by mutex_ once queries may run
  };
  struct sorted_entry {
    std::uint64_t key;
    std::uint32_t index;
  };

  // Cache word: [63] valid | [62:51] generation (12 bits) | [50:49] type | [48] acs |
  // [47] common bridge | [46:40] distance (7 bits) | [39:20] provider | [19:0] client.
  static constexpr std::uint64_t gen_mask = 0xfff;
  static constexpr unsigned max_distance = p2p_path::max_distance;
  static constexpr std::uint64_t key_mask = (std::uint64_t{1} << 40) - 1;

  [[nodiscard]] static constexpr std::size_t slot_of(std::uint64_t key) noexcept {
    return static_cast<std::size_t>((key * 0x9E3779B97F4A7C15ull) >> 56) & (cache_slots - 1);
  }
  [[nodiscard]] static constexpr std::uint64_t pack(const p2p_path& pa, std::uint64_t gen,
                                                    std::uint64_t key) noexcept {
    const std::uint64_t dist = pa.distance;
    return (std::uint64_t{1} << 63) | ((gen & gen_mask) << 51) |
           (std::uint64_t{static_cast<std::uint8_t>(pa.type)} << 49) |
           (std::uint64_t{pa.acs_redirect} << 48) | (std::uint64_t{pa.common_bridge} << 47) |
           (dist << 40) | key;
  }
  [[nodiscard]] static constexpr p2p_path unpack(std::uint64_t e) noexcept {
    p2p_path pa;
    pa.type = static_cast<p2p_map_type>((e >> 49) & 3);
    pa.acs_redirect = ((e >> 48) & 1) != 0;
    pa.common_bridge = ((e >> 47) & 1) != 0;
    pa.distance = static_cast<std::uint8_t>((e >> 40) & 127);
    return pa;
  }

  // Misses compute and fill under the mutex that also guards the policy, so a slot is only
  // ever written with the generation its inputs belong to, and the generation wrap (which
  // clears every slot) cannot let an old word match again.
  [[gnu::noinline]] p2p_path compute_and_cache(std::uint32_t p, std::uint32_t c,
                                               std::uint64_t key) const noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    const std::uint64_t gen = generation_.load(std::memory_order_relaxed);
    p2p_path pa = compute(p, c);
    computed_.fetch_add(1, std::memory_order_relaxed);
    cache_[slot_of(key)].store(pack(pa, gen, key), std::memory_order_release);
    return pa;
  }

  // calc_map_type_and_dist, on indices. Caller holds mutex_.
  [[nodiscard]] p2p_path compute(std::uint32_t p, std::uint32_t c) const noexcept {
    p2p_path pa;
    unsigned dist_a = 0, dist_b = 0, acs = 0;
    std::uint32_t a = p;
    std::uint32_t common = npos;
    while (a != npos && common == npos) {
      dist_b = 0;
      if (nodes_[a].acs) ++acs;
      for (std::uint32_t bb = c; bb != npos; bb = nodes_[bb].parent, ++dist_b) {
        if (bb == a) {
          common = a;
          break;
        }
      }
      if (common == npos) {
        a = nodes_[a].parent;
        ++dist_a;
      }
    }
    const unsigned dist = dist_a + dist_b;
    pa.distance = static_cast<std::uint8_t>(dist > max_distance ? max_distance : dist);
    if (common != npos) {
      pa.common_bridge = true;
      for (std::uint32_t bb = c; bb != common; bb = nodes_[bb].parent) {
        if (nodes_[bb].acs) ++acs;
      }
      if (acs == 0) {
        pa.type = p2p_map_type::bus_address;
        return pa;
      }
      pa.acs_redirect = true;
    }
    pa.type = (platform_p2p_ || host_bridges_allow(nodes_[p].host, nodes_[c].host))
                  ? p2p_map_type::through_host_bridge
                  : p2p_map_type::not_supported;
    return pa;
  }

  [[nodiscard]] bool host_bridges_allow(std::uint32_t ha, std::uint32_t hb) const noexcept {
    if (ha == hb) return hosts_[ha].policy != host_bridge_p2p::deny;
    return hosts_[ha].policy == host_bridge_p2p::any && hosts_[hb].policy == host_bridge_p2p::any;
  }

  // Caller holds mutex_.
  void invalidate_locked() noexcept {
    const std::uint64_t g = generation_.load(std::memory_order_relaxed) + 1;
    if ((g & gen_mask) == 0) clear_cache();
    generation_.store(g, std::memory_order_release);
  }
  void clear_cache() noexcept {
    for (auto& s : cache_) s.store(0, std::memory_order_relaxed);
  }

  result<std::uint32_t> add(const pci_device_info& info, std::uint32_t parent,
                            std::uint32_t host) noexcept {
    if (!info.bdf.valid()) return errc::invalid_argument;
    if (find(info.bdf) != npos) return errc::overlaps;
    if (count_ >= max_devices) return errc::exhausted;
    // Room in both arrays first: a failure then leaves the topology unchanged (a bigger
    // capacity is not a change) and the appends below cannot fail.
    if (!nodes_.try_reserve(count_ + std::size_t{1}) ||
        !sorted_.try_reserve(count_ + std::size_t{1}))
      return errc::out_of_memory;
    const std::uint32_t idx = count_;
    must(nodes_.try_push_back(node{info, parent, host, info.acs_redirect}));
    const std::uint64_t k = info.bdf.key();
    std::uint32_t j = count_;
    while (j > 0 && sorted_[j - 1].key > k) --j;
    must(sorted_.try_insert(j, sorted_entry{k, idx}));
    ++count_;
    clear_cache();
    generation_.fetch_add(1, std::memory_order_relaxed);
    return idx;
  }

  // After a move: empty, with a fresh generation so no cached decision survives.
  void forget() noexcept {
    nodes_.release();
    sorted_.release();
    hosts_.release();
    count_ = 0;
    clear_cache();
    generation_.fetch_add(1, std::memory_order_relaxed);
  }

  detail::try_vector<node, Alloc> nodes_;
  detail::try_vector<sorted_entry, Alloc> sorted_;         // by key, for find()
  detail::try_vector<pci_host_bridge_info, Alloc> hosts_;  // policy fields guarded by mutex_
  std::uint32_t count_ = 0;
  bool platform_p2p_ = false;  // guarded by mutex_
  mutable std::mutex mutex_;
  std::atomic<std::uint64_t> generation_{1};
  mutable std::atomic<std::uint64_t> cache_[cache_slots] = {};
  mutable std::atomic<std::uint64_t> computed_{0};
  [[no_unique_address]] Alloc alloc_{};
};

}  // namespace phyr::inline v0
