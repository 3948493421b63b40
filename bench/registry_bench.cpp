// registry/mem_registry: translating an I/O through registered buffers, against the obvious
// alternatives, in one run. One benchmark iteration is one I/O, so time per iteration is ns per
// I/O.
//
//   registry/guard_per_io/<io>/<regs>    reader() guard + translate loop (two atomic RMWs + one
//                                        binary search per contiguous piece)
//   registry/in_guard/<io>/<regs>        the same under one long-lived guard (a queue that takes
//                                        one guard per batch of I/Os)
//   std_map/<io>/<regs>                  std::map::upper_bound over the same segments, no lock
//                                        (what a single-threaded driver might write)
//   std_map_shared_mutex/<io>/<regs>     the same under a std::shared_mutex read lock
//   pagemap_per_io/<io>                  re-resolving a real mlocked buffer: pread of
//                                        /proc/self/pagemap for the I/O's pages + list build
//                                        (skipped with a message when PFNs are hidden)
//   registry/iovec32_to_dma/<regs>       an iovec of 32 x 4 KiB pieces -> coalesced DMA list
//
// Layout (synthetic, the registry never touches the memory): each registration is 256 KiB of
// virtual memory translating to four 64 KiB pieces at scattered targets (what pinning
// fragmented memory gives), so a 128 KiB I/O usually spans 2 or 3 pieces. I/Os start at random
// 4 KiB-aligned offsets inside random registrations (4096 precomputed, cycled).

#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <random>
#include <shared_mutex>
#include <vector>

#include "phyr/container/range_list.hpp"
#include "phyr/os/linux/pagemap.hpp"
#include "phyr/registry/mem_registry.hpp"

namespace {

constexpr std::uint64_t kib = 1024;
constexpr std::uint64_t reg_bytes = 256 * kib;
constexpr std::uint64_t piece_bytes = 64 * kib;
constexpr std::uint64_t va_base = 0x7f00'0000'0000;
constexpr std::uint64_t va_stride = 512 * kib;  // gaps between registrations
struct bench_bus {};

struct fixture {
  phyr::phys_registry reg;
  phyr::dma_registry<bench_bus> dma;
  struct seg {
    std::uint64_t len, target;
  };
  std::map<std::uint64_t, seg> map;
  std::vector<std::uint64_t> ios;  // start addresses

  fixture(std::uint64_t n, std::uint64_t io_len) {
    std::mt19937_64 rng{42};
    for (std::uint64_t i = 0; i < n; ++i) {
      const std::uint64_t va = va_base + i * va_stride;
      phyr::phys_range pieces[4];
      for (std::uint64_t p = 0; p < 4; ++p) {
        const std::uint64_t target = (rng() % (1u << 24)) * piece_bytes;
        pieces[p] = phyr::phys_range{phyr::phys_addr{target}, piece_bytes};
        map.emplace(va + p * piece_bytes, seg{piece_bytes, target});
      }
      (void)reg.try_register(phyr::virt_range{phyr::virt_addr{va}, reg_bytes},
                             std::span<const phyr::phys_range>{pieces});
      (void)dma.try_register(phyr::virt_range{phyr::virt_addr{va}, reg_bytes},
                             phyr::dma_addr<bench_bus>{0x1'0000'0000 + i * reg_bytes});
    }
    for (int k = 0; k < 4096; ++k) {
      const std::uint64_t r = rng() % n;
      const std::uint64_t off = (rng() % ((reg_bytes - io_len) / 4096 + 1)) * 4096;
      ios.push_back(va_base + r * va_stride + off);
    }
  }
};

void bm_registry(benchmark::State& state, bool guard_per_io) {
  const std::uint64_t io = static_cast<std::uint64_t>(state.range(0));
  fixture f(static_cast<std::uint64_t>(state.range(1)), io);
  std::size_t k = 0;
  std::uint64_t pieces = 0;
  auto run = [&](const phyr::phys_registry::read_guard& g) {
    std::uint64_t va = f.ios[k++ & 4095];
    std::uint64_t left = io;
    while (left != 0) {
      auto t = g.translate(phyr::virt_addr{va}, left);
      if (!t) return false;
      benchmark::DoNotOptimize(t->addr);
      ++pieces;
      va += t->len;
      left -= t->len;
    }
    return true;
  };
  if (guard_per_io) {
    for (auto _ : state) {
      if (!run(f.reg.reader())) return state.SkipWithError("translate failed");
    }
  } else {
    auto g = f.reg.reader();
    for (auto _ : state) {
      if (!run(g)) return state.SkipWithError("translate failed");
    }
  }
  state.counters["pieces_per_io"] =
      static_cast<double>(pieces) / static_cast<double>(state.iterations());
}

template <class Lock>
void bm_std_map(benchmark::State& state, Lock* mu) {
  const std::uint64_t io = static_cast<std::uint64_t>(state.range(0));
  fixture f(static_cast<std::uint64_t>(state.range(1)), io);
  std::size_t k = 0;
  for (auto _ : state) {
    std::shared_lock<std::shared_mutex> lock;
    if (mu != nullptr) lock = std::shared_lock<std::shared_mutex>{*mu};
    std::uint64_t va = f.ios[k++ & 4095];
    std::uint64_t left = io;
    while (left != 0) {
      auto it = f.map.upper_bound(va);
      if (it == f.map.begin()) return state.SkipWithError("not mapped");
      --it;
      const std::uint64_t off = va - it->first;
      if (off >= it->second.len) return state.SkipWithError("not mapped");
      std::uint64_t n = it->second.len - off;
      // Run on across target-contiguous neighbours, as the registry does.
      for (auto nx = std::next(it), pv = it; n < left && nx != f.map.end(); pv = nx++) {
        if (nx->first != pv->first + pv->second.len ||
            nx->second.target != pv->second.target + pv->second.len)
          break;
        n += nx->second.len;
      }
      if (n > left) n = left;
      benchmark::DoNotOptimize(it->second.target + off);
      va += n;
      left -= n;
    }
  }
}

void bm_pagemap(benchmark::State& state) {
  const std::uint64_t io = static_cast<std::uint64_t>(state.range(0));
  const std::uint64_t bytes = 4 * 1024 * kib;
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return state.SkipWithError("mmap failed");
  auto pb = phyr::pinned_buffer<>::try_pin(p, bytes);
  if (!pb) {
    ::munmap(p, bytes);
    return state.SkipWithError("pagemap PFNs not readable (needs CAP_SYS_ADMIN) or mlock refused");
  }
  const int fd = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  std::mt19937_64 rng{42};
  std::vector<std::uint64_t> ios;
  for (int k = 0; k < 4096; ++k) ios.push_back((rng() % ((bytes - io) / 4096 + 1)) * 4096);
  std::vector<std::uint64_t> words(io / 4096);
  std::size_t k = 0;
  for (auto _ : state) {
    const std::uint64_t va = reinterpret_cast<std::uint64_t>(p) + ios[k++ & 4095];
    const auto want = static_cast<ssize_t>(words.size() * 8);
    if (::pread(fd, words.data(), words.size() * 8, static_cast<off_t>(va / 4096 * 8)) != want)
      return state.SkipWithError("pread of pagemap failed");
    auto l = phyr::try_list_from_pagemap_entries(std::span<const std::uint64_t>{words}, 0, io);
    if (!l) return state.SkipWithError("pagemap words rejected");
    benchmark::DoNotOptimize(l->size());
  }
  ::close(fd);
  pb->unpin();
  ::munmap(p, bytes);
}

void bm_iovec(benchmark::State& state) {
  fixture f(static_cast<std::uint64_t>(state.range(0)), 4096);
  std::vector<phyr::virt_range> iov;
  for (int i = 0; i < 32; ++i)
    iov.push_back(phyr::virt_range{phyr::virt_addr{f.ios[static_cast<std::size_t>(i)]}, 4096});
  phyr::range_list<phyr::dma_range<bench_bus>> out;
  std::size_t entries = 0;
  for (auto _ : state) {
    out.clear();
    if (!f.dma.try_translate(std::span<const phyr::virt_range>{iov}, out))
      return state.SkipWithError("iovec translate failed");
    entries = out.size();
    benchmark::DoNotOptimize(entries);
  }
  state.counters["dma_entries"] = static_cast<double>(entries);
}

std::shared_mutex g_mu;

void io_args(benchmark::internal::Benchmark* b) {
  for (std::int64_t io : {4096, 128 * 1024})
    for (std::int64_t n : {1, 100, 10000}) b->Args({io, n});
}

BENCHMARK_CAPTURE(bm_registry, guard_per_io, true)->Apply(io_args);
BENCHMARK_CAPTURE(bm_registry, in_guard, false)->Apply(io_args);
BENCHMARK_CAPTURE(bm_std_map, no_lock, static_cast<std::shared_mutex*>(nullptr))->Apply(io_args);
BENCHMARK_CAPTURE(bm_std_map, shared_mutex, &g_mu)->Apply(io_args);
BENCHMARK(bm_pagemap)->Arg(4096)->Arg(128 * 1024);
BENCHMARK(bm_iovec)->Arg(1)->Arg(100)->Arg(10000);

}  // namespace
