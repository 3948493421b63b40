/// A 4-level I/O page table (x86-64 / ARM LPAE-like): 48-bit IOVA, 4 KiB tables of 512
/// 64-bit entries, and 4 KiB / 2 MiB / 1 GiB leaves chosen whenever alignment allows. Maps,
/// unmaps and lookups may run concurrently from any threads (see "Concurrency").
///
///   phyr::io_page_table<> pt;                                   // allocates nothing yet
///   auto r = pt.try_map(0x4000'0000, phyr::phys_addr{0x8000'0000}, 1 << 30, phyr::io_perm::read);
///   if (!r) return r.error();          // out_of_memory, overlaps, misaligned, ...
///   pt.translate(0x4000'1234);         // phys_addr{0x8000'1234}, through one 1 GiB leaf
///   pt.unmap(0x4000'0000, 1 << 30);    // returns the bytes unmapped; tables stay
///   pt.trim();                         // no operation in flight: frees the empty tables
///
/// Leaf choice: a 2 MiB or 1 GiB leaf needs an empty entry; where a table that has emptied
/// still stands (tables stay until `trim`), that span gets 4 KiB or 2 MiB leaves instead.
///
/// Entry layout (one u64): bit 0 present, bit 1 device may read, bit 2 device may write,
/// bit 7 leaf (in levels 1 and 2: a 2 MiB or 1 GiB block; level-0 entries are always leaves),
/// bits 51..12 the physical address of the page, block or next table. Level 3 (the root) is
/// indexed by IOVA bits 47..39, level 2 by 38..30, level 1 by 29..21, level 0 by 20..12.
///
/// Concurrency (the scheme of Linux's io-pgtable): `try_map`, `unmap`, `lookup` and
/// `translate` take no lock. A missing table is allocated and published with a
/// compare-exchange on its parent entry (or on the root pointer); the loser of a race frees
/// its own, unpublished table and uses the winner's. `try_map` installs each leaf with a
/// compare-exchange from empty, so two maps can never both claim a page: the one that finds
/// the entry taken fails with errc::overlaps and clears exactly the leaves it installed
/// itself (strong guarantee for the mappings; see Memory for its tables). `unmap` clears only
/// leaves, each with an atomic read-modify-write that takes the value it saw, so the bytes it
/// reports were really mapped and cleared by this call. A caller that owns its IOVA range (an
/// allocated block: every path of iommu_domain) uses `try_map_owned` / `unmap_owned`, which
/// write its leaves with plain atomic stores (no locked instruction per page) and still
/// publish tables with compare-exchange. Lookups are acquire loads from the root down: a
/// table is fully zeroed before it is published with release order.
///
/// Table reclamation rule: tables are never freed while other operations may run. `unmap`
/// leaves emptied tables in place (Linux does too), so a concurrent walk never reaches freed
/// memory and a map racing with an unmap under the same parent needs no reference count.
/// `trim()` frees every table that maps nothing, the root included; it requires that no other
/// operation runs on the table (`iommu_domain::trim` provides that: it waits for the
/// operations in flight and holds new ones back). The destructor frees everything.
///
/// Memory: tables come from a `segment_allocator` (4096 bytes, 4096-aligned; thread-safe when
/// the table is used from several threads). Tables exist from the first map under them until
/// `trim()` or destruction, so the memory is bounded by the IOVA span ever mapped; a table
/// that has emptied holds no mapping and is reused by the next map under it (what a standing
/// reservation or a per-I/O map/unmap cycle wants). A failed `try_map` leaves no leaf of its
/// own, but the tables it created stay (another map may already be using them) until `trim`:
/// after `trim()` the memory is exactly what it was.
///
/// Speed: a `walk_cache` remembers the last table reached at each level, so mapping a list
/// page by page does not walk from the root for every page.
#pragma once

#include <atomic>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <new>

#include <phyr/core/page.hpp>
#include <phyr/config.hpp>
#include <phyr/core/address.hpp>
#include <phyr/core/allocator.hpp>
#include <phyr/core/detail/thread_slot.hpp>
#include <phyr/core/error.hpp>

namespace phyr::inline v0 {

/// What the device may do through a translation.
enum class io_perm : std::uint8_t { none = 0, read = 1, write = 2, read_write = 3 };

[[nodiscard]] constexpr io_perm operator|(io_perm a, io_perm b) noexcept {
  return static_cast<io_perm>(static_cast<std::uint8_t>(a) | static_cast<std::uint8_t>(b));
}
[[nodiscard]] constexpr io_perm operator&(io_perm a, io_perm b) noexcept {
  return static_cast<io_perm>(static_cast<std::uint8_t>(a) & static_cast<std::uint8_t>(b));
}

/// Live counts: tables, and leaves by size.
struct io_page_table_stats {
  std::uint64_t tables = 0;            ///< tables held now, the root included
  std::uint64_t leaves_4k = 0;         ///< 4 KiB leaves present now
  std::uint64_t leaves_2m = 0;         ///< 2 MiB leaves present now
  std::uint64_t leaves_1g = 0;         ///< 1 GiB leaves present now
  std::uint64_t tables_allocated = 0;  ///< tables ever allocated (a cumulative counter)

  [[nodiscard]] constexpr std::uint64_t mapped_bytes() const noexcept {
    return (leaves_4k << page_shift) + (leaves_2m << (page_shift + 9)) +
           (leaves_1g << (page_shift + 18));
  }
  [[nodiscard]] constexpr std::uint64_t leaves() const noexcept {
    return leaves_4k + leaves_2m + leaves_1g;
  }
  friend constexpr bool operator==(const io_page_table_stats&,
                                   const io_page_table_stats&) noexcept = default;
};

/// One successful walk.
struct io_translation {
  phys_addr phys;                ///< the byte the IOVA reaches
  std::uint64_t leaf_size = 0;   ///< 4 KiB, 2 MiB or 1 GiB
  io_perm perm = io_perm::none;  ///< from the leaf
};

namespace detail {
/// One table: a page of 512 entries (9 IOVA bits per level), each an atomic word.
struct alignas(page_size) io_table {
  std::atomic<std::uint64_t> e[page_size / sizeof(std::uint64_t)];
};
static_assert(sizeof(io_table) == page_size);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

/// Counters are spread over this many cache lines, one per thread slot, so that threads
/// counting their maps never write the same line. A thread's stripe is the slot it claimed,
/// `this_thread_slot<io_stripes>()` (core/detail/thread_slot.hpp): no two live threads share
/// one while at most io_stripes are alive.
inline constexpr unsigned io_stripes = 8;
}  // namespace detail

template <segment_allocator Alloc = default_allocator>
class io_page_table {
  using table = detail::io_table;

 public:
  using allocator_type = Alloc;

  static constexpr unsigned levels = 4;
  static constexpr unsigned page_shift = ::phyr::page_shift;  // smallest leaf: the base page
  static constexpr std::uint64_t page_size = ::phyr::page_size;
  static constexpr std::uint64_t size_2m = page_size << 9;   // a level-1 leaf
  static constexpr std::uint64_t size_1g = page_size << 18;  // a level-2 leaf
  static constexpr unsigned iova_bits = 48;
  static constexpr unsigned phys_bits = 52;  // the entry's address field: bits 51..12

  static constexpr std::uint64_t pte_present = 1u << 0;
  static constexpr std::uint64_t pte_read = 1u << 1;
  static constexpr std::uint64_t pte_write = 1u << 2;
  static constexpr std::uint64_t pte_leaf = 1u << 7;
  static constexpr std::uint64_t pte_addr_mask =
      ((std::uint64_t{1} << phys_bits) - 1) & ~(page_size - 1);

  /// The last table reached at levels 0..2 by one caller's maps: lets a run of maps that fill
  /// one table skip the walk from the root. Valid until the next `trim()` (tables do not move
  /// or disappear before); start a new one after. Belongs to one thread.
  /// It also gathers the leaf counts of its maps and adds them to `stats()` when destroyed
  /// (one atomic add per map run instead of one per page).
  class walk_cache {
   public:
    walk_cache() noexcept = default;
    walk_cache(const walk_cache&) = delete;
    walk_cache& operator=(const walk_cache&) = delete;
    ~walk_cache() {
      if (pt_ == nullptr) return;
      for (unsigned l = 0; l < 3; ++l)
        if (placed_[l] != 0) pt_->count_leaves(l, placed_[l]);
    }

   private:
    friend class io_page_table;
    std::uint64_t key_[levels - 1] = {~std::uint64_t{0}, ~std::uint64_t{0}, ~std::uint64_t{0}};
    table* tab_[levels - 1] = {};
    io_page_table* pt_ = nullptr;
    std::int64_t placed_[3] = {};
  };

  io_page_table() noexcept requires std::default_initializable<Alloc> : io_page_table(Alloc{}) {}
  explicit io_page_table(Alloc a) noexcept : alloc_(a) {}
  io_page_table(const io_page_table&) = delete;
  io_page_table& operator=(const io_page_table&) = delete;
  ~io_page_table() {
    table* r = root_.load(std::memory_order_acquire);
    if (r != nullptr) free_subtree(r, levels - 1);
  }

  /// Maps [iova, iova + len) to [phys, phys + len) with the largest leaves alignment allows.
  /// iova, phys and len must be 4 KiB multiples (misaligned), len non-zero and perm not none
  /// (invalid_argument), the IOVA inside 48 bits (out_of_range), phys below 2^52
  /// (not_addressable). errc::overlaps when a page is already mapped (or claimed first by a
  /// concurrent map), out_of_memory when a table cannot be allocated; either way no leaf of
  /// this call stays (tables it created stay until `trim`, see the file comment). Each leaf is
  /// claimed with a compare-exchange: exact whatever other threads map at the same time.
  [[nodiscard]] result<void> try_map(std::uint64_t iova, phys_addr phys, std::uint64_t len,
                                     io_perm perm) noexcept {
    walk_cache wc;
    return map_impl<false>(iova, phys, len, perm, wc);
  }
  /// try_map reusing (and updating) the caller's walk cache.
  [[nodiscard]] result<void> try_map(std::uint64_t iova, phys_addr phys, std::uint64_t len,
                                     io_perm perm, walk_cache& wc) noexcept {
    return map_impl<false>(iova, phys, len, perm, wc);
  }
  /// try_map for a caller that owns [iova, iova + len): no other thread maps or unmaps inside
  /// it meanwhile (it is an IOVA block the caller allocated, as for every mapper and
  /// reservation of iommu_domain). Leaves are then checked and written with plain atomic
  /// loads and stores instead of a locked read-modify-write each (Linux's io-pgtable writes
  /// leaves the same way); tables are still published with compare-exchange, since they are
  /// shared with neighbouring ranges. Overlap with anything mapped before the call is still
  /// detected; two threads mapping the same page at once breaks the precondition (the page
  /// table stays well-formed, but both calls may succeed and one leaf is lost).
  [[nodiscard]] result<void> try_map_owned(std::uint64_t iova, phys_addr phys, std::uint64_t len,
                                           io_perm perm, walk_cache& wc) noexcept {
    return map_impl<true>(iova, phys, len, perm, wc);
  }

  /// Clears the leaves inside [iova, iova + len) and returns the bytes that were mapped there
  /// (and cleared by this call: each leaf is taken with an atomic exchange, so two threads
  /// unmapping one page count it once). A 2 MiB or 1 GiB leaf only partly inside the range is
  /// left mapped and not counted (the IOMMU cannot split it in place). Tables stay, empty or
  /// not, for the next map under them; `trim()` frees the empty ones.
  std::uint64_t unmap(std::uint64_t iova, std::uint64_t len) noexcept {
    return unmap_impl<false>(iova, len);
  }
  /// unmap for a caller that owns [iova, iova + len) (see try_map_owned): leaves are cleared
  /// with plain atomic stores.
  std::uint64_t unmap_owned(std::uint64_t iova, std::uint64_t len) noexcept {
    return unmap_impl<true>(iova, len);
  }

  /// Frees every table that maps nothing (the root too, so an empty table then holds no
  /// memory) and returns how many it freed. NOT concurrent with any other call on this table:
  /// the caller guarantees that no map, unmap or lookup runs meanwhile (iommu_domain::trim
  /// does). Walk caches made before it must not be used after it.
  std::uint64_t trim() noexcept {
    table* r = root_.load(std::memory_order_acquire);
    if (r == nullptr) return 0;
    std::uint64_t freed = 0;
    if (trim_in(r, levels - 1, freed)) {
      release_table(r);
      root_.store(nullptr, std::memory_order_release);
      ++freed;
    }
    return freed;
  }

  /// Walks the table for one IOVA: errc::not_mapped when nothing translates it. Lock-free.
  [[nodiscard]] result<io_translation> lookup(std::uint64_t iova) const noexcept {
    if (iova >= (std::uint64_t{1} << iova_bits)) return errc::not_mapped;
    const table* t = root_.load(std::memory_order_acquire);
    for (unsigned lvl = levels - 1; t != nullptr; --lvl) {
      const std::uint64_t e = t->e[index(iova, lvl)].load(std::memory_order_acquire);
      if ((e & pte_present) == 0) break;
      if (lvl == 0 || (e & pte_leaf) != 0) {
        const std::uint64_t size = entry_size(lvl);
        io_translation tr;
        tr.phys = phys_addr{(e & pte_addr_mask) + (iova & (size - 1))};
        tr.leaf_size = size;
        tr.perm = ((e & pte_read) != 0 ? io_perm::read : io_perm::none) |
                  ((e & pte_write) != 0 ? io_perm::write : io_perm::none);
        return tr;
      }
      t = as_table(e);
    }
    return errc::not_mapped;
  }
  [[nodiscard]] result<phys_addr> translate(std::uint64_t iova) const noexcept {
    result<io_translation> r = lookup(iova);
    if (!r) return r.error();
    return r->phys;
  }

  /// The live counts, summed over the threads' stripes: exact when no operation is in flight,
  /// a momentary estimate otherwise.
  [[nodiscard]] io_page_table_stats stats() const noexcept {
    io_page_table_stats s;
    std::int64_t n[3] = {};
    for (const stripe& st : stripes_)
      for (unsigned l = 0; l < 3; ++l) n[l] += st.leaves[l].load(std::memory_order_relaxed);
    s.leaves_4k = static_cast<std::uint64_t>(n[0]);
    s.leaves_2m = static_cast<std::uint64_t>(n[1]);
    s.leaves_1g = static_cast<std::uint64_t>(n[2]);
    s.tables = tables_.load(std::memory_order_relaxed);
    s.tables_allocated = tables_allocated_.load(std::memory_order_relaxed);
    return s;
  }
  /// True when the table holds no memory (nothing ever mapped, or trimmed since).
  [[nodiscard]] bool empty() const noexcept {
    return root_.load(std::memory_order_acquire) == nullptr;
  }

  /// Walks every table (for tests; O(tables); not concurrent with updates): every used entry
  /// is present, and the leaf and table counts match `stats()`. With `allow_empty` false,
  /// also that no table maps nothing (what `trim()` leaves).
  [[nodiscard]] bool check_invariants(bool allow_empty = true) const noexcept {
    const table* r = root_.load(std::memory_order_acquire);
    const io_page_table_stats st = stats();
    if (r == nullptr) return st.tables == 0 && st.leaves() == 0;
    io_page_table_stats seen;
    if (!check_table(r, levels - 1, seen, allow_empty)) return false;
    return seen.tables == st.tables && seen.leaves_4k == st.leaves_4k &&
           seen.leaves_2m == st.leaves_2m && seen.leaves_1g == st.leaves_1g;
  }

 private:
  using entry = std::atomic<std::uint64_t>;

  static constexpr std::uint64_t attrs_of(io_perm perm) noexcept {
    return pte_present | ((perm & io_perm::read) != io_perm::none ? pte_read : 0) |
           ((perm & io_perm::write) != io_perm::none ? pte_write : 0);
  }

  /// Installs pte in an empty entry; returns what the entry held (0: installed). Owned: the
  /// caller owns the entry's span, so a load and a store do (see try_map_owned).
  template <bool Owned>
  static std::uint64_t claim(entry& a, std::uint64_t pte) noexcept {
    std::uint64_t seen = 0;
    if constexpr (Owned) {
      seen = a.load(std::memory_order_acquire);
      if (seen == 0) a.store(pte, std::memory_order_release);
    } else {
      a.compare_exchange_strong(seen, pte, std::memory_order_release, std::memory_order_acquire);
    }
    return seen;
  }

  template <bool Owned>
  result<void> map_impl(std::uint64_t iova, phys_addr phys, std::uint64_t len, io_perm perm,
                        walk_cache& wc) noexcept {
    // Fast path, small enough to inline: one page into the leaf table used last (a page list
    // is mapped page by page, 512 pages per table).
    const std::uint64_t pa = phys.value();
    if (len == page_size && wc.key_[0] == iova >> shift_of(1) && (pa & (page_size - 1)) == 0 &&
        (iova & (page_size - 1)) == 0 && pa < (std::uint64_t{1} << phys_bits) &&
        perm != io_perm::none) {
      if (claim<Owned>(wc.tab_[0]->e[index(iova, 0)], pa | attrs_of(perm)) != 0)
        return errc::overlaps;
      ++wc.placed_[0];
      return {};
    }
    PHYR_ASSERT(wc.pt_ == nullptr || wc.pt_ == this, "a walk_cache of another page table");
    wc.pt_ = this;
    return map_slow<Owned>(iova, pa, len, perm, wc);
  }

  template <bool Owned>
  std::uint64_t unmap_impl(std::uint64_t iova, std::uint64_t len) noexcept {
    constexpr std::uint64_t iova_limit = std::uint64_t{1} << iova_bits;
    table* r = root_.load(std::memory_order_acquire);
    if (r == nullptr || len == 0 || iova >= iova_limit) return 0;
    const std::uint64_t hi = len > iova_limit - iova ? iova_limit : iova + len;
    std::int64_t cleared[levels] = {};  // by level; the root (level 3) holds no leaves
    const std::uint64_t bytes = unmap_in<Owned>(r, levels - 1, 0, iova, hi, cleared);
    for (unsigned l = 0; l < 3; ++l)
      if (cleared[l] != 0) count_leaves(l, -cleared[l]);
    return bytes;
  }

  template <bool Owned>
  [[gnu::noinline]] result<void> map_slow(std::uint64_t iova, std::uint64_t pa, std::uint64_t len,
                                          io_perm perm, walk_cache& wc) noexcept {
    if (len == 0 || perm == io_perm::none) return errc::invalid_argument;
    if (((iova | pa | len) & (page_size - 1)) != 0) return errc::misaligned;
    constexpr std::uint64_t iova_limit = std::uint64_t{1} << iova_bits;
    if (iova >= iova_limit || len > iova_limit - iova) return errc::out_of_range;
    constexpr std::uint64_t phys_limit = std::uint64_t{1} << phys_bits;
    if (pa >= phys_limit || len > phys_limit - pa) return errc::not_addressable;

    const std::uint64_t attrs = attrs_of(perm);
    std::uint64_t done = 0;
    std::int64_t placed[3] = {};
    errc err{};
    while (done < len) {
      const std::uint64_t va = iova + done;
      const std::uint64_t p = pa + done;
      const std::uint64_t rest = len - done;
      const std::uint64_t both = va | p;
      // A block goes where alignment allows, unless an (emptied) table still stands there:
      // then the smaller leaves go into that table (replacing a table that another thread
      // may be walking is what the reclamation rule forbids).
      if ((both & (size_1g - 1)) == 0 && rest >= size_1g) {
        const block_result b = place_block<Owned>(va, p | attrs | pte_leaf, 2, wc, err);
        if (b == block_result::failed) break;
        if (b == block_result::placed) {
          ++placed[2];
          done += size_1g;
          continue;
        }
      }
      if ((both & (size_2m - 1)) == 0 && rest >= size_2m) {
        const block_result b = place_block<Owned>(va, p | attrs | pte_leaf, 1, wc, err);
        if (b == block_result::failed) break;
        if (b == block_result::placed) {
          ++placed[1];
          done += size_2m;
          continue;
        }
      }
      table* t = table_for(va, 0, wc, err);
      if (t == nullptr) break;
      // Fill to the end of this table (a 2 MiB leaf can only start at its end) or of the range.
      const unsigned first = index(va, 0);
      const std::uint64_t room = 512 - first;
      const std::uint64_t pages = rest >> page_shift < room ? rest >> page_shift : room;
      entry* e = &t->e[first];
      std::uint64_t pte = p | attrs;
      std::uint64_t k = 0;
      for (; k < pages; ++k, pte += page_size)
        if (claim<Owned>(e[k], pte) != 0) break;
      placed[0] += static_cast<std::int64_t>(k);
      done += k << page_shift;
      if (k != pages) {
        err = errc::overlaps;
        break;
      }
    }
    for (unsigned l = 0; l < 3; ++l) wc.placed_[l] += placed[l];
    if (done == len) return {};
    // Everything this call installed is the prefix [iova, iova + done), each leaf claimed from
    // empty by this call: clearing that prefix removes exactly those.
    if (done != 0) unmap_impl<Owned>(iova, done);
    return err;
  }

  static constexpr unsigned shift_of(unsigned lvl) noexcept { return page_shift + 9 * lvl; }
  static constexpr std::uint64_t entry_size(unsigned lvl) noexcept {
    return std::uint64_t{1} << shift_of(lvl);
  }
  static constexpr unsigned index(std::uint64_t iova, unsigned lvl) noexcept {
    return static_cast<unsigned>((iova >> shift_of(lvl)) & 511);
  }
  static table* as_table(std::uint64_t e) noexcept {
    return reinterpret_cast<table*>(static_cast<std::uintptr_t>(e & pte_addr_mask));
  }
  static std::uint64_t table_entry(const table* t) noexcept {
    return static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(t)) | pte_present;
  }

  table* make_table() noexcept {
    void* p = alloc_.allocate(sizeof(table), alignof(table));
    if (p == nullptr) return nullptr;
    // The entry holds the table's address in bits 51..12; an allocator handing out memory
    // above that (no x86-64 or AArch64 user space does) is treated as out of memory.
    if ((reinterpret_cast<std::uintptr_t>(p) & ~pte_addr_mask) != 0) {
      alloc_.deallocate(p, sizeof(table), alignof(table));
      return nullptr;
    }
    tables_.fetch_add(1, std::memory_order_relaxed);
    tables_allocated_.fetch_add(1, std::memory_order_relaxed);
    return ::new (p) table{};  // every entry zero before the table can be published
  }
  void release_table(table* t) noexcept {
    tables_.fetch_sub(1, std::memory_order_relaxed);
    t->~table();
    alloc_.deallocate(t, sizeof(table), alignof(table));
  }

  void count_leaves(unsigned lvl, std::int64_t n) noexcept {
    stripes_[detail::this_thread_slot<detail::io_stripes>()].leaves[lvl].fetch_add(
        n, std::memory_order_relaxed);
  }

  /// The level-`target` table covering va, created (with any missing ancestors) if needed.
  /// Null with err set: out_of_memory, or overlaps when a larger leaf already covers va.
  table* table_for(std::uint64_t va, unsigned target, walk_cache& wc, errc& err) noexcept {
    if (wc.key_[target] == va >> shift_of(target + 1)) return wc.tab_[target];
    return walk(va, target, wc, err);
  }

  /// table_for without the hint for `target`: walks from the lowest cached ancestor (or the
  /// root), publishing missing tables, and records what it passed in the cache.
  [[gnu::noinline]] table* walk(std::uint64_t va, unsigned target, walk_cache& wc,
                                errc& err) noexcept {
    unsigned lvl = levels - 1;
    table* t = nullptr;
    for (unsigned l = target + 1; l < levels - 1; ++l) {
      if (wc.key_[l] == va >> shift_of(l + 1)) {
        lvl = l;
        t = wc.tab_[l];
        break;
      }
    }
    if (t == nullptr) {
      t = root_.load(std::memory_order_acquire);
      if (t == nullptr) {
        table* fresh = make_table();
        if (fresh == nullptr) {
          err = errc::out_of_memory;
          return nullptr;
        }
        if (root_.compare_exchange_strong(t, fresh, std::memory_order_acq_rel,
                                          std::memory_order_acquire)) {
          t = fresh;
        } else {
          release_table(fresh);  // another map published a root first: use that one
        }
      }
    }
    for (; lvl > target; --lvl) {
      entry& e = t->e[index(va, lvl)];
      std::uint64_t v = e.load(std::memory_order_acquire);
      if (v == 0) {
        table* fresh = make_table();
        if (fresh == nullptr) {
          err = errc::out_of_memory;
          return nullptr;
        }
        const std::uint64_t mine = table_entry(fresh);
        if (e.compare_exchange_strong(v, mine, std::memory_order_acq_rel,
                                      std::memory_order_acquire)) {
          v = mine;
        } else {
          release_table(fresh);  // lost the race: v is the winner's entry
        }
      }
      if ((v & pte_leaf) != 0) {
        err = errc::overlaps;
        return nullptr;
      }
      t = as_table(v);
      wc.key_[lvl - 1] = va >> shift_of(lvl);
      wc.tab_[lvl - 1] = t;
    }
    return t;
  }

  enum class block_result { placed, table_there, failed };

  /// Installs a 2 MiB (lvl 1) or 1 GiB (lvl 2) leaf in an empty entry. table_there: the entry
  /// holds a table (the caller maps the span with smaller leaves in it); failed with err set.
  template <bool Owned>
  block_result place_block(std::uint64_t va, std::uint64_t pte, unsigned lvl, walk_cache& wc,
                           errc& err) noexcept {
    table* t = table_for(va, lvl, wc, err);
    if (t == nullptr) return block_result::failed;
    const std::uint64_t seen = claim<Owned>(t->e[index(va, lvl)], pte);
    if (seen == 0) return block_result::placed;
    if ((seen & pte_leaf) == 0) return block_result::table_there;
    err = errc::overlaps;
    return block_result::failed;
  }

  /// Frees t and everything below it (the destructor: nothing else runs).
  void free_subtree(table* t, unsigned lvl) noexcept {
    if (lvl != 0) {
      for (const entry& a : t->e) {
        const std::uint64_t e = a.load(std::memory_order_relaxed);
        if ((e & pte_present) != 0 && (e & pte_leaf) == 0) free_subtree(as_table(e), lvl - 1);
      }
    }
    release_table(t);
  }

  /// Frees the empty tables below t; true when t itself maps nothing afterwards.
  bool trim_in(table* t, unsigned lvl, std::uint64_t& freed) noexcept {
    bool empty = true;
    for (entry& a : t->e) {
      const std::uint64_t e = a.load(std::memory_order_relaxed);
      if (e == 0) continue;
      if (lvl != 0 && (e & pte_leaf) == 0 && trim_in(as_table(e), lvl - 1, freed)) {
        release_table(as_table(e));
        a.store(0, std::memory_order_relaxed);
        ++freed;
        continue;
      }
      empty = false;
    }
    return empty;
  }

  static bool check_table(const table* t, unsigned lvl, io_page_table_stats& seen,
                          bool allow_empty) noexcept {
    ++seen.tables;
    std::uint64_t used = 0;
    for (const entry& a : t->e) {
      const std::uint64_t e = a.load(std::memory_order_relaxed);
      if (e == 0) continue;
      if ((e & pte_present) == 0) return false;  // stray bits in an unused entry
      ++used;
      if (lvl == 0 || (e & pte_leaf) != 0) {
        (lvl == 0 ? seen.leaves_4k : lvl == 1 ? seen.leaves_2m : seen.leaves_1g) += 1;
      } else if (!check_table(as_table(e), lvl - 1, seen, allow_empty)) {
        return false;
      }
    }
    return used != 0 || allow_empty;
  }

  /// Clears the leaves inside [lo, hi) under t, a level-lvl table whose span starts at base.
  /// cleared[l]: leaves of level l this call cleared.
  template <bool Owned>
  std::uint64_t unmap_in(table* t, unsigned lvl, std::uint64_t base, std::uint64_t lo,
                         std::uint64_t hi, std::int64_t (&cleared)[levels]) noexcept {
    const std::uint64_t size = entry_size(lvl);
    std::uint64_t bytes = 0;
    const std::uint64_t i0 = (lo - base) >> shift_of(lvl);
    const std::uint64_t i1 = (hi - base + size - 1) >> shift_of(lvl);
    for (std::uint64_t i = i0; i < i1 && i < 512; ++i) {
      entry& a = t->e[i];
      std::uint64_t e = a.load(std::memory_order_acquire);
      if ((e & pte_present) == 0) continue;
      const std::uint64_t eb = base + (i << shift_of(lvl));
      if (lvl == 0) {
        if (Owned) {
          a.store(0, std::memory_order_release);
        } else if (a.exchange(0, std::memory_order_acq_rel) == 0) {
          continue;
        }
        ++cleared[0];
        bytes += size;
        continue;
      }
      if ((e & pte_leaf) != 0) {
        if (lo > eb || hi - eb < size) continue;  // a block only partly inside: left alone
        // Clears the block seen, never a table that replaced it meanwhile.
        if (Owned) {
          a.store(0, std::memory_order_release);
          ++cleared[lvl];
          bytes += size;
          continue;
        }
        if (a.compare_exchange_strong(e, 0, std::memory_order_acq_rel,
                                      std::memory_order_acquire)) {
          ++cleared[lvl];
          bytes += size;
          continue;
        }
        if ((e & pte_present) == 0 || (e & pte_leaf) != 0) continue;  // someone else's now
      }
      bytes += unmap_in<Owned>(as_table(e), lvl - 1, eb, lo > eb ? lo : eb,
                               hi - eb < size ? hi : eb + size, cleared);
    }
    return bytes;
  }

  /// Leaf counts of the threads of one stripe (they may go negative: a page mapped by one
  /// thread and unmapped by another is counted in two stripes).
  struct alignas(64) stripe {
    std::atomic<std::int64_t> leaves[3] = {};
  };

  [[no_unique_address]] Alloc alloc_;
  std::atomic<table*> root_{nullptr};
  std::atomic<std::uint64_t> tables_{0};
  std::atomic<std::uint64_t> tables_allocated_{0};
  stripe stripes_[detail::io_stripes];
};

}  // namespace phyr
