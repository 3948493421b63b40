/// A 4-level I/O page table (x86-64 / ARM LPAE-like): 48-bit IOVA, 4 KiB tables of 512
/// 64-bit entries, and 4 KiB / 2 MiB / 1 GiB leaves chosen whenever alignment allows.
///
///   phyr::io_page_table<> pt;                                   // allocates nothing yet
///   auto r = pt.try_map(0x4000'0000, phyr::phys_addr{0x8000'0000}, 1 << 30, phyr::io_perm::read);
///   if (!r) return r.error();          // out_of_memory, overlaps, misaligned, ...
///   pt.translate(0x4000'1234);         // phys_addr{0x8000'1234}, through one 1 GiB leaf
///   pt.unmap(0x4000'0000, 1 << 30);    // returns the bytes unmapped; frees emptied tables
///
/// Entry layout (one u64): bit 0 present, bit 1 device may read, bit 2 device may write,
/// bit 7 leaf (in levels 1 and 2: a 2 MiB or 1 GiB block; level-0 entries are always leaves),
/// bits 51..12 the physical address of the page, block or next table. Level 3 (the root) is
/// indexed by IOVA bits 47..39, level 2 by 38..30, level 1 by 29..21, level 0 by 20..12.
/// An entry pointing to a table keeps, in bits 61..52 (ignored by the hardware walk, like
/// x86's software-available bits), how many entries of that table are in use: unmap knows in
/// O(1) when a table empties, instead of scanning its 512 entries.
///
/// Memory: tables come from a `segment_allocator` (4096 bytes, 4096-aligned) and exist only
/// while they hold something: `unmap` frees every table it empties, the root included, so an
/// empty page table holds no memory and a failed `map` leaves exactly the tables it found.
/// `try_map` is all-or-nothing (strong guarantee). Not thread-safe: `iommu_domain` serialises
/// it.
///
/// Speed: `try_map` remembers the last table it filled at each level, so mapping a list page by
/// page does not walk from the root for every page.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <new>

#include <phyr/core/page.hpp>
#include <phyr/config.hpp>
#include <phyr/core/address.hpp>
#include <phyr/core/allocator.hpp>
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
/// One table: a page of 512 entries (9 IOVA bits per level).
struct alignas(page_size) io_table {
  std::uint64_t e[page_size / sizeof(std::uint64_t)];
};
static_assert(sizeof(io_table) == page_size);
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

  io_page_table() noexcept requires std::default_initializable<Alloc> : io_page_table(Alloc{}) {}
  explicit io_page_table(Alloc a) noexcept : alloc_(a) {}
  io_page_table(const io_page_table&) = delete;
  io_page_table& operator=(const io_page_table&) = delete;
  ~io_page_table() {
    if (root_ != nullptr) free_subtree(root_, levels - 1);
  }

  /// Maps [iova, iova + len) to [phys, phys + len) with the largest leaves alignment allows.
  /// iova, phys and len must be 4 KiB multiples (misaligned), len non-zero and perm not none
  /// (invalid_argument), the IOVA inside 48 bits (out_of_range), phys below 2^52
  /// (not_addressable). errc::overlaps when a page is already mapped, out_of_memory when a
  /// table cannot be allocated; either way nothing of this call stays mapped or allocated.
  [[nodiscard]] result<void> try_map(std::uint64_t iova, phys_addr phys, std::uint64_t len,
                                     io_perm perm) noexcept {
    // Fast path, small enough to inline: one page into the leaf table used last (a page list
    // is mapped page by page, 512 pages per table).
    const std::uint64_t pa = phys.value();
    if (len == page_size && hint_key_[0] == iova >> shift_of(1) && (pa & (page_size - 1)) == 0 &&
        (iova & (page_size - 1)) == 0 && pa < (std::uint64_t{1} << phys_bits) &&
        perm != io_perm::none) {
      std::uint64_t& e = hint_tab_[0]->e[index(iova, 0)];
      if (e == 0) {
        e = pa | attrs_of(perm);
        *hint_cnt_[0] += count_one;
        ++stats_.leaves_4k;
        return {};
      }
    }
    return map_slow(iova, pa, len, perm);
  }

  /// Clears the leaves inside [iova, iova + len) and frees every table left empty (the root
  /// too). Returns the bytes that were mapped there. A 2 MiB or 1 GiB leaf only partly inside
  /// the range is left mapped and not counted (the IOMMU cannot split it in place).
  /// With `keep_tables`, tables left empty stay (linked, counted in `stats().tables`) for the
  /// next map of the range: what a standing reservation wants, since its next link lands in
  /// the same tables (Linux's io-pgtable keeps tables the same way). A later unmap without
  /// keep_tables over their span frees them.
  std::uint64_t unmap(std::uint64_t iova, std::uint64_t len, bool keep_tables = false) noexcept {
    forget_hints();
    constexpr std::uint64_t iova_limit = std::uint64_t{1} << iova_bits;
    if (root_ == nullptr || len == 0 || iova >= iova_limit) return 0;
    const std::uint64_t hi = len > iova_limit - iova ? iova_limit : iova + len;
    const std::uint64_t bytes = unmap_in(root_, root_meta_, levels - 1, 0, iova, hi, keep_tables);
    if (!keep_tables && count_of(root_meta_) == 0) {
      release_table(root_);
      root_ = nullptr;
    }
    return bytes;
  }

  /// Walks the table for one IOVA: errc::not_mapped when nothing translates it.
  [[nodiscard]] result<io_translation> lookup(std::uint64_t iova) const noexcept {
    if (iova >= (std::uint64_t{1} << iova_bits)) return errc::not_mapped;
    const table* t = root_;
    for (unsigned lvl = levels - 1; t != nullptr; --lvl) {
      const std::uint64_t e = t->e[index(iova, lvl)];
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

  [[nodiscard]] const io_page_table_stats& stats() const noexcept { return stats_; }
  [[nodiscard]] bool empty() const noexcept { return root_ == nullptr; }

  /// Walks every table (for tests; O(tables)): each table's in-use count matches its entries,
  /// no table but an absent root is empty, and the leaf and table counts match `stats()`.
  /// `allow_empty`: tables kept by `unmap(..., keep_tables)` may be empty.
  [[nodiscard]] bool check_invariants(bool allow_empty = false) const noexcept {
    if (root_ == nullptr) return stats_.tables == 0 && stats_.leaves() == 0;
    io_page_table_stats seen;
    if (!check_table(root_, root_meta_, levels - 1, seen, allow_empty)) return false;
    return seen.tables == stats_.tables && seen.leaves_4k == stats_.leaves_4k &&
           seen.leaves_2m == stats_.leaves_2m && seen.leaves_1g == stats_.leaves_1g;
  }

 private:
  static constexpr std::uint64_t attrs_of(io_perm perm) noexcept {
    return pte_present | ((perm & io_perm::read) != io_perm::none ? pte_read : 0) |
           ((perm & io_perm::write) != io_perm::none ? pte_write : 0);
  }

  [[gnu::noinline]] result<void> map_slow(std::uint64_t iova, std::uint64_t pa, std::uint64_t len,
                                          io_perm perm) noexcept {
    if (len == 0 || perm == io_perm::none) return errc::invalid_argument;
    if (((iova | pa | len) & (page_size - 1)) != 0) return errc::misaligned;
    constexpr std::uint64_t iova_limit = std::uint64_t{1} << iova_bits;
    if (iova >= iova_limit || len > iova_limit - iova) return errc::out_of_range;
    constexpr std::uint64_t phys_limit = std::uint64_t{1} << phys_bits;
    if (pa >= phys_limit || len > phys_limit - pa) return errc::not_addressable;

    const std::uint64_t attrs = attrs_of(perm);
    std::uint64_t done = 0;
    errc err{};
    while (done < len) {
      const std::uint64_t va = iova + done;
      const std::uint64_t p = pa + done;
      const std::uint64_t rest = len - done;
      const std::uint64_t both = va | p;
      if ((both & (size_1g - 1)) == 0 && rest >= size_1g) {
        if (!place_block(va, p | attrs | pte_leaf, 2, err)) break;
        ++stats_.leaves_1g;
        done += size_1g;
        continue;
      }
      if ((both & (size_2m - 1)) == 0 && rest >= size_2m) {
        if (!place_block(va, p | attrs | pte_leaf, 1, err)) break;
        ++stats_.leaves_2m;
        done += size_2m;
        continue;
      }
      table* t = table_for(va, 0, err);
      if (t == nullptr) break;
      // Fill to the end of this table (a 2 MiB leaf can only start at its end) or of the range.
      const unsigned first = index(va, 0);
      const std::uint64_t room = 512 - first;
      const std::uint64_t pages = rest >> page_shift < room ? rest >> page_shift : room;
      std::uint64_t* e = &t->e[first];
      std::uint64_t pte = p | attrs;
      std::uint64_t k = 0;
      for (; k < pages; ++k, pte += page_size) {
        if (e[k] != 0) break;
        e[k] = pte;
      }
      *hint_cnt_[0] += k * count_one;
      stats_.leaves_4k += k;
      done += k << page_shift;
      if (k != pages) {
        err = errc::overlaps;
        break;
      }
    }
    if (done == len) return {};
    // Everything mapped by this call is a contiguous prefix; the tables it needed hold
    // nothing else (they were created for it) or held something before (and still do).
    if (done != 0) unmap(iova, done);
    return err;
  }

  // The in-use count of a table, kept in its parent's entry (root_meta_ for the root).
  static constexpr unsigned count_shift = phys_bits;  // just above the address field
  static constexpr std::uint64_t count_one = std::uint64_t{1} << count_shift;
  static constexpr std::uint64_t count_mask = std::uint64_t{0x3ff} << count_shift;
  static constexpr std::uint64_t count_of(std::uint64_t e) noexcept {
    return (e & count_mask) >> count_shift;
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

  table* make_table() noexcept {
    void* p = alloc_.allocate(sizeof(table), alignof(table));
    if (p == nullptr) return nullptr;
    // The entry holds the table's address in bits 51..12; an allocator handing out memory
    // above that (no x86-64 or AArch64 user space does) is treated as out of memory.
    if ((reinterpret_cast<std::uintptr_t>(p) & ~pte_addr_mask) != 0) {
      alloc_.deallocate(p, sizeof(table), alignof(table));
      return nullptr;
    }
    ++stats_.tables;
    ++stats_.tables_allocated;
    return ::new (p) table{};
  }
  void release_table(table* t) noexcept {
    --stats_.tables;
    alloc_.deallocate(t, sizeof(table), alignof(table));
  }

  void forget_hints() noexcept {
    for (unsigned l = 0; l < levels - 1; ++l) hint_key_[l] = ~std::uint64_t{0};
  }

  /// The level-`target` table covering va, created (with any missing ancestors) if needed.
  /// Null with err set: out_of_memory (nothing allocated stays), or overlaps when a larger
  /// leaf already covers va.
  table* table_for(std::uint64_t va, unsigned target, errc& err) noexcept {
    if (hint_key_[target] == va >> shift_of(target + 1)) return hint_tab_[target];
    return walk(va, target, err);
  }

  /// table_for without the hint: walks from the root (and records new hints).
  [[gnu::noinline]] table* walk(std::uint64_t va, unsigned target, errc& err) noexcept {
    // Walk down while the tables exist. cnt[l]: the word holding path[l]'s in-use count.
    table* path[levels] = {};
    std::uint64_t* cnt[levels] = {};
    unsigned lvl = levels - 1;
    table* t = root_;
    path[lvl] = t;
    cnt[lvl] = &root_meta_;
    while (t != nullptr && lvl > target) {
      std::uint64_t& e = t->e[index(va, lvl)];
      if ((e & pte_present) == 0) break;
      if ((e & pte_leaf) != 0) {
        err = errc::overlaps;
        return nullptr;
      }
      t = as_table(e);
      --lvl;
      path[lvl] = t;
      cnt[lvl] = &e;
    }
    if (t == nullptr || lvl > target) {
      // Tables missing from `lvl` (or from the root) down to `target`: allocate them all
      // before linking any, so a failure leaves nothing behind.
      const unsigned top = t == nullptr ? levels - 1 : lvl - 1;
      table* fresh[levels] = {};
      for (unsigned l = top + 1; l-- > target;) {
        fresh[l] = make_table();
        if (fresh[l] == nullptr) {
          for (unsigned m = l + 1; m <= top; ++m) release_table(fresh[m]);
          err = errc::out_of_memory;
          return nullptr;
        }
      }
      unsigned link_from = lvl;  // the level whose entry for va is empty
      if (t == nullptr) {
        root_ = fresh[levels - 1];
        root_meta_ = 0;
        path[levels - 1] = root_;
        link_from = levels - 1;
      }
      for (unsigned l = link_from; l > target; --l) {
        std::uint64_t& e = path[l]->e[index(va, l)];
        e = reinterpret_cast<std::uintptr_t>(fresh[l - 1]) | pte_present;
        *cnt[l] += count_one;
        path[l - 1] = fresh[l - 1];
        cnt[l - 1] = &e;
      }
    }
    for (unsigned l = target; l < levels - 1; ++l) {
      hint_key_[l] = va >> shift_of(l + 1);
      hint_tab_[l] = path[l];
      hint_cnt_[l] = cnt[l];
    }
    return path[target];
  }

  /// Writes a 2 MiB (lvl 1) or 1 GiB (lvl 2) leaf.
  bool place_block(std::uint64_t va, std::uint64_t pte, unsigned lvl, errc& err) noexcept {
    table* t = table_for(va, lvl, err);
    if (t == nullptr) return false;
    std::uint64_t& e = t->e[index(va, lvl)];
    if (e != 0) {
      err = errc::overlaps;
      return false;
    }
    e = pte;
    *hint_cnt_[lvl] += count_one;
    return true;
  }

  void count_leaf(unsigned lvl, std::int64_t n) noexcept {
    std::uint64_t& c = lvl == 0 ? stats_.leaves_4k : lvl == 1 ? stats_.leaves_2m : stats_.leaves_1g;
    c += static_cast<std::uint64_t>(n);
  }

  /// Frees t and everything below it; returns the bytes its leaves mapped.
  std::uint64_t free_subtree(table* t, unsigned lvl) noexcept {
    std::uint64_t bytes = 0;
    if (lvl == 0) {
      std::uint64_t n = 0;
      for (const std::uint64_t e : t->e) n += e & pte_present;
      stats_.leaves_4k -= n;
      bytes = n << page_shift;
    } else {
      for (const std::uint64_t e : t->e) {
        if ((e & pte_present) == 0) continue;
        if ((e & pte_leaf) != 0) {
          count_leaf(lvl, -1);
          bytes += entry_size(lvl);
        } else {
          bytes += free_subtree(as_table(e), lvl - 1);
        }
      }
    }
    release_table(t);
    return bytes;
  }

  static bool check_table(const table* t, std::uint64_t meta, unsigned lvl,
                          io_page_table_stats& seen, bool allow_empty) noexcept {
    ++seen.tables;
    std::uint64_t used = 0;
    for (const std::uint64_t e : t->e) {
      if (e == 0) continue;
      if ((e & pte_present) == 0) return false;  // stray bits in an unused entry
      ++used;
      if (lvl == 0 || (e & pte_leaf) != 0) {
        (lvl == 0 ? seen.leaves_4k : lvl == 1 ? seen.leaves_2m : seen.leaves_1g) += 1;
        if ((e & count_mask) != 0) return false;
      } else if (!check_table(as_table(e), e, lvl - 1, seen, allow_empty)) {
        return false;
      }
    }
    return (used != 0 || allow_empty) && used == count_of(meta);
  }

  /// Unmaps [lo, hi) inside t, a level-lvl table whose span starts at base and whose in-use
  /// count is in `meta` (the parent entry, or root_meta_).
  std::uint64_t unmap_in(table* t, std::uint64_t& meta, unsigned lvl, std::uint64_t base,
                         std::uint64_t lo, std::uint64_t hi, bool keep) noexcept {
    const std::uint64_t size = entry_size(lvl);
    std::uint64_t bytes = 0;
    std::uint64_t cleared = 0;
    const std::uint64_t i0 = (lo - base) >> shift_of(lvl);
    const std::uint64_t i1 = (hi - base + size - 1) >> shift_of(lvl);
    for (std::uint64_t i = i0; i < i1 && i < 512; ++i) {
      std::uint64_t& e = t->e[i];
      if ((e & pte_present) == 0) continue;
      const std::uint64_t eb = base + (i << shift_of(lvl));
      const bool whole = lo <= eb && hi - eb >= size;
      if (lvl == 0 || (e & pte_leaf) != 0) {
        if (!whole) continue;  // a block only partly inside: left alone
        e = 0;
        ++cleared;
        count_leaf(lvl, -1);
        bytes += size;
        continue;
      }
      table* child = as_table(e);
      if (whole && !keep) {
        bytes += free_subtree(child, lvl - 1);
        e = 0;
        ++cleared;
        continue;
      }
      bytes += unmap_in(child, e, lvl - 1, eb, lo > eb ? lo : eb, hi - eb < size ? hi : eb + size,
                        keep);
      if (!keep && count_of(e) == 0) {
        release_table(child);
        e = 0;
        ++cleared;
      }
    }
    meta -= cleared * count_one;
    return bytes;
  }

  [[no_unique_address]] Alloc alloc_;
  table* root_ = nullptr;
  io_page_table_stats stats_{};
  // Last table used at levels 0..2, keyed by the IOVA bits above that table's span.
  std::uint64_t root_meta_ = 0;  // the root's in-use count, in the entry count bits
  // Last table used at levels 0..2, keyed by the IOVA bits above that table's span, with the
  // word holding its in-use count.
  std::uint64_t hint_key_[levels - 1] = {~std::uint64_t{0}, ~std::uint64_t{0}, ~std::uint64_t{0}};
  table* hint_tab_[levels - 1] = {};
  std::uint64_t* hint_cnt_[levels - 1] = {};
};

}  // namespace phyr
