/// Two-step IOVA mapping: reserve one IOVA range for a known total size once, then link
/// physical ranges into it at chosen offsets, unlink them, and sync: Linux's
/// dma_iova_try_alloc / dma_iova_link / dma_iova_sync / dma_iova_unlink / dma_iova_destroy
/// (v6.16+, Documentation/core-api/dma-api.rst "Part Ie"), as an object the caller holds.
///
///   struct nvme0 {};
///   phyr::iommu_domain dom;
///   using resv = phyr::iova_reservation<nvme0, phyr::iommu_domain>;
///   auto q = resv::try_create(dom, 1 << 20);          // 1 MiB of IOVA for a queue's buffers
///   if (!q) return q.error();                         // exhausted, out_of_memory, ...
///   auto d = q->try_link(0x10000, page_range, phyr::dma_direction::to_device);
///   if (!d) return d.error();                         // overlaps, out_of_range, misaligned, ...
///   q->sync();                                        // from here the device may use the link
///   program(d->addr(), d->len());
///   phyr::must(q->try_unlink(0x10000, page_range.len()));  // the I/O is done
///   // destroying *q unlinks what is left and gives the IOVA back (RAII, map/mapper.hpp)
///
/// Why: per-I/O map/unmap allocates and frees IOVA every time; with a standing reservation an
/// I/O only writes and clears page-table entries (bench/iova_bench.cpp measures the ratio).
///
/// Offsets are bytes from `addr()`, the DMA address of offset 0. Rules, checked before any
/// state changes (a failed call leaves the reservation and the back end exactly as they were):
///  - a link lies inside the reservation: out_of_range otherwise;
///  - the merge-boundary rule (the kernel's): only offset 0 may start inside an IOMMU page
///    (its in-page offset is fixed at creation, `first_offset`, like dma_iova_try_alloc's
///    phys argument); every other link starts on a page, in IOVA and in memory: misaligned
///    otherwise. A link may end anywhere, but the rest of its last page is then unusable (the
///    next link must start on a page), so links form ONE contiguous DMA range exactly when
///    every interior boundary is page-aligned; otherwise the caller gets separate ranges;
///  - a page is linked at most once: linking over a linked page is overlaps;
///  - `try_link_all` links a whole list back to back as one link (one page-table operation
///    for the model);
///  - unlink takes whole links or runs of whole links (DPDK's rule for partial unmap of a
///    chunked mapping): a range that cuts a link is not_supported, one that covers a page
///    never linked (or already unlinked) is not_mapped. What remains stays mapped.
/// `try_create_at` reserves at a caller-chosen IOVA (iommufd's FIXED_IOVA) and fails with
/// overlaps, taking nothing, when any page of it is in use.
///
/// Sync: `sync()` is the point after which the device may use the links made so far (the
/// kernel's IOTLB sync). The page-table model translates links at once and only counts the
/// flush (`iommu_domain::stats().iotlb_syncs`); a real back end does its flush there.
///
/// Back ends: anything satisfying `iommu_backend` (below). `iommu_domain` is the in-process
/// page-table model; `vfio_mapper<Bus>` (os/linux/vfio/mapper.hpp) links through the real
/// IOMMU with one VFIO_IOMMU_MAP_DMA per link, taking ranges of its own source space (process
/// virtual addresses for VFIO type1): `iova_reservation<nvme0, vfio_mapper<nvme0>>`.
///
/// Memory: one bitmap pair (linked pages, link starts) sized for the reservation, allocated at
/// creation through `Alloc`; linking and unlinking never allocate in this object (the back end
/// may need page-table memory: out_of_memory then, state unchanged). The domain keeps the page
/// tables of unlinked pages (until `iommu_domain::trim`), so a standing reservation stops
/// allocating tables once warm.
/// Thread safety: one reservation is used by one thread at a time; different reservations of
/// one back end may be used concurrently (the back end is thread-safe).
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <utility>

#include <phyr/config.hpp>
#include <phyr/core/address.hpp>
#include <phyr/core/allocator.hpp>
#include <phyr/core/error.hpp>
#include <phyr/core/page.hpp>
#include <phyr/core/range.hpp>
#include <phyr/map/iommu/io_page_table.hpp>
#include <phyr/map/iommu/iova_allocator.hpp>
#include <phyr/map/mapper.hpp>

namespace phyr::inline v0 {

/// A type `B` is an IOMMU back end for reservations if:
///  1. it names `source_space`, the space of what it links (cpu_phys for the page-table
///     model; VFIO type1 links process virtual addresses);
///  2. `try_reserve_iova(len, limits)` and `try_reserve_iova_at(addr, len)` return
///     `result<iova_block>` (page-granular blocks; `at` fails with overlaps when taken);
///  3. `release_iova(block)` unlinks whatever is still linked in the block and frees it;
///  4. `try_link_iova(iova, range<source_space>, io_perm)` maps a page-aligned range at a
///     page-aligned IOVA, all-or-nothing; `unlink_iova(iova, len)` undoes links and returns
///     the bytes that were linked; `sync_iova(iova, len)` makes links visible to the device.
/// All noexcept. It does not check thread safety (each back end documents it).
template <class B>
concept iommu_backend = requires(B& b, std::uint64_t u, const iova_limits& lim,
                                 const iova_block& blk, range<typename B::source_space> src,
                                 io_perm perm) {
  requires address_space<typename B::source_space>;
  { b.try_reserve_iova(u, lim) } noexcept -> std::same_as<result<iova_block>>;
  { b.try_reserve_iova_at(u, u) } noexcept -> std::same_as<result<iova_block>>;
  { b.release_iova(blk) } noexcept;
  { b.try_link_iova(u, src, perm) } noexcept -> std::same_as<result<void>>;
  { b.unlink_iova(u, u) } noexcept -> std::same_as<std::uint64_t>;
  { b.sync_iova(u, u) } noexcept;
};

/// A reserved IOVA range of bus `Bus` on back end `Backend` (see the file comment).
/// Move-only; destroying it (or `reset()`) unlinks everything and releases the IOVA.
template <class Bus, iommu_backend Backend, segment_allocator Alloc = default_allocator>
class iova_reservation {
 public:
  using bus_type = Bus;
  using space_type = dma_space<Bus>;
  using source_space = typename Backend::source_space;
  using source_range = range<source_space>;

  iova_reservation() noexcept requires std::default_initializable<Alloc> = default;
  iova_reservation(iova_reservation&& o) noexcept
      : be_(o.be_), block_(o.block_), first_offset_(o.first_offset_), len_(o.len_),
        bits_(o.bits_), words_(o.words_), linked_(o.linked_), unsynced_(o.unsynced_),
        alloc_(o.alloc_) {
    o.forget();
  }
  iova_reservation& operator=(iova_reservation&& o) noexcept {
    if (this != &o) {
      reset();
      be_ = o.be_;
      block_ = o.block_;
      first_offset_ = o.first_offset_;
      len_ = o.len_;
      bits_ = o.bits_;
      words_ = o.words_;
      linked_ = o.linked_;
      unsynced_ = o.unsynced_;
      alloc_ = o.alloc_;
      o.forget();
    }
    return *this;
  }
  iova_reservation(const iova_reservation&) = delete;
  iova_reservation& operator=(const iova_reservation&) = delete;
  ~iova_reservation() { reset(); }

  /// Reserves IOVA for `len` bytes whose first byte sits `first_offset` bytes into a page
  /// (the in-page offset of the first link; 0..page_size-1), inside the back end's limits and
  /// `lim`. Errors: invalid_argument (len 0, first_offset >= page_size), the back end's
  /// (exhausted, not_addressable, out_of_memory), out_of_memory for the bitmaps.
  [[nodiscard]] static result<iova_reservation> try_create(Backend& be, std::uint64_t len,
                                                           std::uint64_t first_offset = 0,
                                                           const iova_limits& lim = {},
                                                           Alloc a = Alloc{}) noexcept {
    if (len == 0 || first_offset >= page_size || len > ~std::uint64_t{0} - page_size * 2)
      return errc::invalid_argument;
    const std::uint64_t span = (first_offset + len + page_mask) & ~page_mask;
    result<iova_block> b = be.try_reserve_iova(span, lim);
    if (!b) return b.error();
    return finish(be, *b, first_offset, len, a);
  }
  /// Reserves exactly [addr, addr + len rounded up to pages) (iommufd's FIXED_IOVA): misaligned
  /// unless addr is page-aligned; overlaps when any page of it is taken; the back end's other
  /// errors (out_of_range outside its space, not_addressable outside its limits).
  [[nodiscard]] static result<iova_reservation> try_create_at(Backend& be, dma_addr<Bus> addr,
                                                              std::uint64_t len,
                                                              Alloc a = Alloc{}) noexcept {
    if (len == 0 || len > ~std::uint64_t{0} - page_size) return errc::invalid_argument;
    if ((addr.value() & page_mask) != 0) return errc::misaligned;
    result<iova_block> b = be.try_reserve_iova_at(addr.value(), (len + page_mask) & ~page_mask);
    if (!b) return b.error();
    return finish(be, *b, 0, len, a);
  }

  /// True while the reservation holds IOVA (not default-built, moved from or reset).
  [[nodiscard]] bool reserved() const noexcept { return be_ != nullptr; }
  /// DMA address of offset 0, and the reserved length in bytes.
  [[nodiscard]] dma_addr<Bus> addr() const noexcept {
    return dma_addr<Bus>{block_.addr + first_offset_};
  }
  [[nodiscard]] std::uint64_t len() const noexcept { return len_; }
  /// The whole reservation as one DMA range (what the device sees once every page is linked).
  [[nodiscard]] dma_range<Bus> as_range() const noexcept { return dma_range<Bus>{addr(), len_}; }
  /// Pages linked now, and links made since the last sync.
  [[nodiscard]] std::uint64_t linked_pages() const noexcept { return linked_; }
  [[nodiscard]] bool needs_sync() const noexcept { return unsynced_ != 0; }

  /// Links `src` at `offset` for `dir` and returns the DMA range it occupies. Errors (state
  /// unchanged): invalid_argument (not reserved, empty range, bad direction), out_of_range,
  /// misaligned (the merge-boundary rule), overlaps (a page already linked), and the back
  /// end's (out_of_memory, not_addressable for memory it cannot map).
  [[nodiscard]] result<dma_range<Bus>> try_link(std::uint64_t offset, source_range src,
                                                dma_direction dir) noexcept {
    if (be_ == nullptr || src.len() == 0 || !is_valid(dir)) return errc::invalid_argument;
    if (offset > len_ || src.len() > len_ - offset) return errc::out_of_range;
    const std::uint64_t pos = first_offset_ + offset;  // bytes from the block's first page
    const std::uint64_t pad = src.addr().value() & page_mask;
    if ((pos & page_mask) != pad || (offset != 0 && pad != 0)) return errc::misaligned;
    const std::uint64_t p0 = pos >> page_shift;
    const std::uint64_t p1 = (pos + src.len() - 1) >> page_shift;
    if (any_set(linked_bits(), p0, p1)) return errc::overlaps;
    const std::uint64_t n = p1 - p0 + 1;
    auto pages = source_range::create(address<source_space>{src.addr().value() - pad},
                                      n << page_shift, src.flags());
    if (!pages) return pages.error();
    if (auto r = be_->try_link_iova(block_.addr + (p0 << page_shift), *pages, perm_of(dir)); !r)
      return r.error();
    set_range(linked_bits(), p0, p1, true);
    set_bit(start_bits(), p0, true);
    linked_ += n;
    ++unsynced_;
    return dma_range<Bus>{dma_addr<Bus>{block_.addr + pos}, src.len(), src.flags()};
  }

  /// Links the ranges of `list`, in order, back to back from `offset`, as ONE link (one chunk
  /// for try_unlink) and one DMA range: the batch form of try_link (the domain maps it as one
  /// page-table operation). Each boundary between two ranges must be page-aligned on both
  /// sides (the merge-boundary rule; misaligned otherwise); the first range follows try_link's
  /// rule.
  /// Errors and guarantee as try_link's: on any error nothing of the list stays linked.
  template <class List>
    requires requires(const List& l) {
      { *l.begin() } -> std::convertible_to<source_range>;
      l.end();
    }
  [[nodiscard]] result<dma_range<Bus>> try_link_all(std::uint64_t offset, const List& list,
                                                    dma_direction dir) noexcept {
    if (be_ == nullptr || !is_valid(dir)) return errc::invalid_argument;
    // Pass 1: the rules, before anything changes.
    std::uint64_t total = 0;
    bool first = true;
    std::uint64_t prev_end = 0;
    for (const source_range r : list) {
      if (r.len() == 0) return errc::invalid_argument;
      const std::uint64_t a = r.addr().value();
      if (first) {
        const std::uint64_t pos = first_offset_ + offset;
        if ((pos & page_mask) != (a & page_mask) || (offset != 0 && (a & page_mask) != 0))
          return errc::misaligned;
      } else if (((prev_end | a) & page_mask) != 0) {
        return errc::misaligned;
      }
      if (r.len() > len_ || total > len_ - r.len()) return errc::out_of_range;
      total += r.len();
      prev_end = a + r.len();
      first = false;
    }
    if (first) return errc::invalid_argument;  // an empty list
    if (offset > len_ || total > len_ - offset) return errc::out_of_range;
    const std::uint64_t pos = first_offset_ + offset;
    const std::uint64_t p0 = pos >> page_shift;
    const std::uint64_t p1 = (pos + total - 1) >> page_shift;
    if (any_set(linked_bits(), p0, p1)) return errc::overlaps;
    // Pass 2: map each range at its page, as one batch when the back end offers it.
    const io_perm perm = perm_of(dir);
    std::uint64_t done = 0;  // bytes of IOVA pages mapped so far, from page p0
    auto link_all = [&](auto&& link) noexcept -> result<void> {
      for (const source_range r : list) {
        const std::uint64_t pad = r.addr().value() & page_mask;
        const std::uint64_t bytes = (pad + r.len() + page_mask) & ~page_mask;
        auto pages = source_range::create(address<source_space>{r.addr().value() - pad}, bytes,
                                          r.flags());
        if (!pages) return pages.error();
        if (auto x = link(block_.addr + (p0 << page_shift) + done, *pages, perm); !x)
          return x.error();
        done += bytes;
      }
      return {};
    };
    result<void> r;
    if constexpr (requires { be_->link_batch(link_all); }) {
      r = be_->link_batch(link_all);
    } else {
      r = link_all([this](std::uint64_t iova, source_range src, io_perm p) noexcept {
        return be_->try_link_iova(iova, src, p);
      });
    }
    if (!r) {
      if (done != 0) (void)be_->unlink_iova(block_.addr + (p0 << page_shift), done);
      return r.error();
    }
    set_range(linked_bits(), p0, p1, true);
    set_bit(start_bits(), p0, true);
    linked_ += p1 - p0 + 1;
    ++unsynced_;
    return dma_range<Bus>{dma_addr<Bus>{block_.addr + pos}, total};
  }

  /// Unlinks [offset, offset + len): whole links only (see the file comment). Errors (state
  /// unchanged): invalid_argument (not reserved, len 0), out_of_range, not_mapped (a page in
  /// it is not linked), not_supported (it cuts a link), io_error (the back end refused).
  [[nodiscard]] result<void> try_unlink(std::uint64_t offset, std::uint64_t len) noexcept {
    if (be_ == nullptr || len == 0) return errc::invalid_argument;
    if (offset > len_ || len > len_ - offset) return errc::out_of_range;
    const std::uint64_t pos = first_offset_ + offset;
    const std::uint64_t p0 = pos >> page_shift;
    const std::uint64_t p1 = (pos + len - 1) >> page_shift;
    if (!all_set(linked_bits(), p0, p1)) return errc::not_mapped;
    const std::uint64_t pages = pages_of_block();
    if (!get_bit(start_bits(), p0) ||
        (p1 + 1 < pages && get_bit(linked_bits(), p1 + 1) && !get_bit(start_bits(), p1 + 1)))
      return errc::not_supported;
    // A real back end can refuse (VFIO's UNMAP_DMA failing): it unmaps all or nothing, so the
    // links are still there and the state stays as it is.
    const std::uint64_t bytes =
        be_->unlink_iova(block_.addr + (p0 << page_shift), (p1 - p0 + 1) << page_shift);
    if (bytes != (p1 - p0 + 1) << page_shift) return errc::io_error;
    set_range(linked_bits(), p0, p1, false);
    set_range(start_bits(), p0, p1, false);
    linked_ -= p1 - p0 + 1;
    return {};
  }

  /// Makes the links made so far usable by the device (the IOTLB sync); no-op when nothing
  /// was linked since the last one.
  void sync() noexcept {
    if (be_ == nullptr || unsynced_ == 0) return;
    be_->sync_iova(block_.addr, block_.len);
    unsynced_ = 0;
  }

  /// Unlinks everything and gives the IOVA back (what the destructor does); the reservation is
  /// then empty. The kernel's dma_iova_destroy.
  void reset() noexcept {
    if (be_ == nullptr) return;
    be_->release_iova(block_);
    if (bits_ != nullptr) alloc_.deallocate(bits_, words_ * 2 * sizeof(std::uint64_t),
                                            alignof(std::uint64_t));
    forget();
  }

 private:
  iova_reservation(Backend& be, iova_block b, std::uint64_t first_offset, std::uint64_t len,
                   std::uint64_t* bits, std::uint64_t words, Alloc a) noexcept
      : be_(&be), block_(b), first_offset_(first_offset), len_(len), bits_(bits), words_(words),
        alloc_(a) {}

  [[nodiscard]] static result<iova_reservation> finish(Backend& be, const iova_block& b,
                                                       std::uint64_t first_offset,
                                                       std::uint64_t len, Alloc a) noexcept {
    const std::uint64_t pages = b.len >> page_shift;
    const std::uint64_t words = (pages + 63) / 64;
    void* p = a.allocate(words * 2 * sizeof(std::uint64_t), alignof(std::uint64_t));
    if (p == nullptr) {
      be.release_iova(b);
      return errc::out_of_memory;
    }
    std::memset(p, 0, words * 2 * sizeof(std::uint64_t));
    return iova_reservation{be, b, first_offset, len, static_cast<std::uint64_t*>(p), words, a};
  }

  void forget() noexcept {
    be_ = nullptr;
    block_ = {};
    first_offset_ = len_ = 0;
    bits_ = nullptr;
    words_ = linked_ = unsynced_ = 0;
  }

  [[nodiscard]] static constexpr io_perm perm_of(dma_direction d) noexcept {
    return d == dma_direction::to_device     ? io_perm::read
           : d == dma_direction::from_device ? io_perm::write
                                             : io_perm::read_write;
  }

  [[nodiscard]] std::uint64_t pages_of_block() const noexcept { return block_.len >> page_shift; }
  [[nodiscard]] std::uint64_t* linked_bits() const noexcept { return bits_; }
  [[nodiscard]] std::uint64_t* start_bits() const noexcept { return bits_ + words_; }

  static bool get_bit(const std::uint64_t* w, std::uint64_t i) noexcept {
    return ((w[i / 64] >> (i % 64)) & 1) != 0;
  }
  static void set_bit(std::uint64_t* w, std::uint64_t i, bool v) noexcept {
    const std::uint64_t m = std::uint64_t{1} << (i % 64);
    w[i / 64] = v ? (w[i / 64] | m) : (w[i / 64] & ~m);
  }
  /// Mask of bits [lo, hi] of word i (lo/hi global indices clipped to the word).
  static std::uint64_t word_mask(std::uint64_t i, std::uint64_t lo, std::uint64_t hi) noexcept {
    const std::uint64_t a = lo > i * 64 ? lo - i * 64 : 0;
    const std::uint64_t b = hi < i * 64 + 63 ? hi - i * 64 : 63;
    const std::uint64_t upto = b == 63 ? ~std::uint64_t{0} : (std::uint64_t{1} << (b + 1)) - 1;
    return upto & ~((std::uint64_t{1} << a) - 1);
  }
  static bool any_set(const std::uint64_t* w, std::uint64_t lo, std::uint64_t hi) noexcept {
    for (std::uint64_t i = lo / 64; i <= hi / 64; ++i)
      if ((w[i] & word_mask(i, lo, hi)) != 0) return true;
    return false;
  }
  static bool all_set(const std::uint64_t* w, std::uint64_t lo, std::uint64_t hi) noexcept {
    for (std::uint64_t i = lo / 64; i <= hi / 64; ++i) {
      const std::uint64_t m = word_mask(i, lo, hi);
      if ((w[i] & m) != m) return false;
    }
    return true;
  }
  static void set_range(std::uint64_t* w, std::uint64_t lo, std::uint64_t hi, bool v) noexcept {
    for (std::uint64_t i = lo / 64; i <= hi / 64; ++i) {
      const std::uint64_t m = word_mask(i, lo, hi);
      w[i] = v ? (w[i] | m) : (w[i] & ~m);
    }
  }

  Backend* be_ = nullptr;
  iova_block block_{};
  std::uint64_t first_offset_ = 0;
  std::uint64_t len_ = 0;
  std::uint64_t* bits_ = nullptr;  // linked pages, then link starts: 2 * words_
  std::uint64_t words_ = 0;
  std::uint64_t linked_ = 0;
  std::uint64_t unsynced_ = 0;
  [[no_unique_address]] Alloc alloc_{};
};

}  // namespace phyr
