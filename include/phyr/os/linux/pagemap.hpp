/// Pinned user buffers resolved to physical ranges through `/proc/self/pagemap`.
///
///   auto pb = phyr::pinned_buffer<>::try_pin(buf, len);
///   if (!pb) return pb.error();   // permission_denied: PFNs hidden (no CAP_SYS_ADMIN) or no
///                                 //   mlock budget at all, or a page allows no access
///                                 //   (PROT_NONE); exhausted: RLIMIT_MEMLOCK too small;
///                                 //   not_mapped, out_of_memory, ...
///   for (const phyr::phys_range& r : pb->ranges()) program(r);   // every entry flagged pinned
///   // ~pinned_buffer (or pb->unpin()) munlocks the whole page-aligned range
///
///   // No privilege and no live buffer needed: raw pagemap words (traces, tests, other pids)
///   auto l = phyr::try_list_from_pagemap_entries(words, /*first_offset=*/0x80, len);
///
/// Pagemap gives one 64-bit word per 4 KiB virtual page (Documentation/admin-guide/mm/
/// pagemap.rst): bit 63 present, bit 62 swapped, bits 0..54 the page frame number when
/// present. Since Linux 4.2 a reader without CAP_SYS_ADMIN (checked against the opener's
/// credentials) gets the PFN field zeroed instead of an error. Frame 0 is never handed to user
/// memory (firmware owns it on every architecture Linux runs on), so "present with PFN 0" means
/// "hidden", and it is reported as `errc::permission_denied`: a list of zeros would send DMA to
/// physical address 0.
///
/// Error precedence for raw words: a present word with PFN 0 anywhere -> permission_denied
/// (retrying with the pages touched would not help); else a malformed word (present and
/// swapped, or a PFN whose byte address does not fit 64 bits) -> parse_error; else a page not
/// present (absent or swapped out) -> not_mapped. `try_pin` reads in batches of 512 pages and
/// applies the same rule per batch.
///
/// What mlock does and does not promise, and so what a pinned_buffer is:
/// - mlock faults every page in, with write faults on private writable mappings, which breaks
///   copy-on-write: the frames read afterwards are the ones the process writes to. No byte of
///   the buffer is read or written by phyr.
/// - Locks do not nest. Unpinning munlocks every page that holds a byte of the buffer, so two
///   pinned_buffers sharing a page (or memory the caller mlocked itself) unlock each other.
///   Pin page-aligned buffers, or one buffer per page set.
/// - mlocked pages are unevictable but may still be migrated by compaction unless
///   /proc/sys/vm/compact_unevictable_allowed is 0, and a fork() makes private pages
///   copy-on-write again (use MADV_DONTFORK on DMA buffers). The list is the layout at pin
///   time; long-term pins for DMA need a kernel driver (VFIO, FOLL_LONGTERM).
/// - Hugepage-backed memory (THP or hugetlbfs) has consecutive PFNs inside each huge page, so
///   it coalesces to one entry per huge page or fewer.
#pragma once

#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <phyr/config.hpp>
#include <phyr/container/range_list.hpp>
#include <phyr/core/allocator.hpp>
#include <phyr/core/detail/try_vector.hpp>
#include <phyr/core/error.hpp>
#include <phyr/core/page.hpp>
#include <phyr/core/range.hpp>
#include <phyr/os/linux/fd.hpp>
#include <span>
#include <string_view>
#include <utility>

namespace phyr::inline v0 {

/// Bits of a `/proc/<pid>/pagemap` word.
inline constexpr std::uint64_t pagemap_present = std::uint64_t{1} << 63;
inline constexpr std::uint64_t pagemap_swapped = std::uint64_t{1} << 62;
inline constexpr std::uint64_t pagemap_pfn_mask = (std::uint64_t{1} << 55) - 1;
/// Pagemap describes base pages; phyr's page arrays are 4 KiB pages too.
inline constexpr std::uint64_t pagemap_page_size = page_size;

/// The frame number in one pagemap word: permission_denied (present, PFN hidden),
/// not_mapped (absent or swapped out), parse_error (present and swapped, or a frame whose byte
/// address would pass 2^64).
[[nodiscard]] constexpr result<std::uint64_t> pagemap_entry_pfn(std::uint64_t word) noexcept {
  if ((word & pagemap_present) == 0) return errc::not_mapped;
  if ((word & pagemap_swapped) != 0) return errc::parse_error;
  const std::uint64_t pfn = word & pagemap_pfn_mask;
  if (pfn == 0) return errc::permission_denied;
  if ((pfn >> pfn_bits) != 0) return errc::parse_error;
  return pfn;
}

namespace detail {

/// Pagemap words handled per batch: 4 KiB of stack, and one pread per 2 MiB of buffer.
inline constexpr std::size_t pagemap_batch = 512;

/// The number of 4 KiB pages holding [first_offset, first_offset + len) of a buffer whose first
/// page starts at 0. invalid_argument for an empty buffer or an offset outside the first page.
[[nodiscard]] constexpr result<std::uint64_t> pagemap_pages_spanned(std::uint64_t first_offset,
                                                                    std::uint64_t len) noexcept {
  if (len == 0 || first_offset >= pagemap_page_size) return errc::invalid_argument;
  if (len > ~std::uint64_t{0} - first_offset - (pagemap_page_size - 1)) return errc::overflow;
  return (first_offset + len + pagemap_page_size - 1) / pagemap_page_size;
}

/// True when every word is a present, unswapped page with a usable frame: the common case,
/// tested branch-free over the batch (classifying each word into a `result` was ~10x slower).
[[nodiscard]] constexpr bool pagemap_words_all_present(const std::uint64_t* w,
                                                       std::size_t n) noexcept {
  std::uint64_t bad = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint64_t pfn = w[i] & pagemap_pfn_mask;
    bad |= ((w[i] & (pagemap_present | pagemap_swapped)) ^ pagemap_present) | (pfn >> pfn_bits) |
           static_cast<std::uint64_t>(pfn == 0);
  }
  return bad == 0;
}

/// The error for words that are not all present, with the documented precedence.
[[nodiscard]] constexpr errc pagemap_words_error(const std::uint64_t* w, std::size_t n) noexcept {
  bool malformed = false;
  bool absent = false;
  for (std::size_t i = 0; i < n; ++i) {
    const result<std::uint64_t> pfn = pagemap_entry_pfn(w[i]);
    if (pfn) continue;
    if (pfn.error() == errc::permission_denied) return errc::permission_denied;
    (pfn.error() == errc::not_mapped ? absent : malformed) = true;
  }
  if (malformed) return errc::parse_error;
  PHYR_ASSERT(absent, "pagemap_words_error called on good words");
  return errc::not_mapped;
}

/// Checks `n` words and rewrites them in place as frame numbers.
[[nodiscard]] constexpr result<void> pagemap_words_to_pfns(std::uint64_t* w,
                                                           std::size_t n) noexcept {
  if (!pagemap_words_all_present(w, n)) return pagemap_words_error(w, n);
  for (std::size_t i = 0; i < n; ++i) w[i] &= pagemap_pfn_mask;
  return {};
}

/// Appends the pages of a buffer whose frame numbers `fill(buf, first_page, count)` supplies
/// (checked and masked: see pagemap_words_to_pfns), batch by batch. On failure the list may
/// hold a prefix: callers discard it (a fresh list) or append into a scratch list first.
template <class List, class Fill>
[[nodiscard]] result<void> append_pagemap_batches(List& l, Fill&& fill, std::uint64_t pages,
                                                  std::uint64_t first_offset, std::uint64_t len,
                                                  range_flags flags) noexcept {
  std::uint64_t buf[pagemap_batch];
  const std::uint64_t end = first_offset + len;  // relative to the first page; checked by caller
  for (std::uint64_t i = 0; i < pages;) {
    const std::size_t n =
        pages - i < pagemap_batch ? static_cast<std::size_t>(pages - i) : pagemap_batch;
    if (result<void> r = fill(buf, i, n); !r) return r;
    const std::uint64_t lo = i == 0 ? first_offset : i * pagemap_page_size;
    const std::uint64_t batch_end = (i + n) * pagemap_page_size;
    const std::uint64_t hi = end < batch_end ? end : batch_end;
    // Consecutive batches coalesce: try_append_pages merges its first run with the tail.
    if (result<void> r = l.try_append_pages(std::span<const std::uint64_t>{buf, n},
                                            lo % pagemap_page_size, hi - lo, flags);
        !r)
      return r;
    i += n;
  }
  return {};
}

template <class List>
[[nodiscard]] result<void> append_pagemap_words(List& l, std::span<const std::uint64_t> words,
                                                std::uint64_t first_offset, std::uint64_t len,
                                                range_flags flags) noexcept {
  const result<std::uint64_t> pages = pagemap_pages_spanned(first_offset, len);
  if (!pages) return pages.error();
  if (words.size() != *pages) return errc::invalid_argument;
  // The whole span is classified first so the precedence holds across batches (cheap: one
  // pass, no allocation) and a bad word is reported before anything is appended.
  const std::uint64_t* src = words.data();
  if (!pagemap_words_all_present(src, words.size())) return pagemap_words_error(src, words.size());
  return append_pagemap_batches(
      l,
      [src](std::uint64_t* buf, std::uint64_t first, std::size_t n) noexcept -> result<void> {
        // Checked above, as a whole.
        for (std::size_t k = 0; k < n; ++k) buf[k] = src[first + k] & pagemap_pfn_mask;
        return {};
      },
      *pages, first_offset, len, flags);
}

// mlock and munlock as system calls, not through libc: sanitizer runtimes (ASan, TSan, MSan)
// intercept mlock as a no-op that returns success, which would hand out frames of pages that
// are neither locked nor even faulted in.
[[nodiscard]] inline int sys_mlock(void* p, std::size_t n) noexcept {
  return static_cast<int>(::syscall(SYS_mlock, p, n));
}
inline int sys_munlock(void* p, std::size_t n) noexcept {
  return static_cast<int>(::syscall(SYS_munlock, p, n));
}

/// The errc for a failed mlock of [lo, lo + n) (both page-aligned).
[[nodiscard]] inline errc mlock_errc(int e, void* lo, std::size_t n) noexcept {
  switch (e) {
    case EPERM:
      return errc::permission_denied;  // no CAP_IPC_LOCK and a zero RLIMIT_MEMLOCK
    case EAGAIN:
      return errc::exhausted;  // some pages could not be locked
    case ENOMEM: {
      // ENOMEM means either "over RLIMIT_MEMLOCK" or "part of the range is not mapped";
      // msync(MS_ASYNC) does no I/O on Linux and fails with ENOMEM exactly on holes.
      if (::msync(lo, n, MS_ASYNC) != 0 && errno == ENOMEM) return errc::not_mapped;
      return errc::exhausted;
    }
    case EINVAL:
      return errc::invalid_argument;
    default:
      return errc::io_error;
  }
}

/// A page-aligned span of the pinned range that was already locked (VM_LOCKED) before try_pin.
struct locked_span {
  std::uintptr_t lo;
  std::uintptr_t hi;
};

/// One line of /proc/<pid>/maps (also the header line of each smaps entry):
/// "lo-hi perms offset dev inode [path]", addresses in lowercase hex. Fills `lo`, `hi` and
/// whether any of r/w/x is allowed; false for any other line (smaps' "Key: value" lines start
/// with an uppercase letter, never with a hex digit).
[[nodiscard]] constexpr bool parse_vma_line(std::string_view line, std::uintptr_t& lo,
                                            std::uintptr_t& hi, bool& accessible) noexcept {
  const auto hex = [](std::string_view& s, std::uintptr_t& v) noexcept {
    std::size_t i = 0;
    v = 0;
    for (; i < s.size() && i < 2 * sizeof(std::uintptr_t); ++i) {
      const char c = s[i];
      const int d = c >= '0' && c <= '9' ? c - '0' : (c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1);
      if (d < 0) break;
      v = (v << 4) | static_cast<std::uintptr_t>(d);
    }
    s.remove_prefix(i);
    return i != 0;
  };
  if (!hex(line, lo) || line.empty() || line.front() != '-') return false;
  line.remove_prefix(1);
  if (!hex(line, hi) || line.size() < 5 || line.front() != ' ' || hi <= lo) return false;
  accessible = line[1] != '-' || line[2] != '-' || line[3] != '-';
  return true;
}

/// What try_pin must know about [lo, hi) before it locks anything: whether all of it is
/// mapped and accessible, and which parts were already locked (so a failed pin unlocks only
/// what it locked itself). Locks are per VMA (VM_LOCKED), shown as "lo" in smaps' VmFlags;
/// smaps costs a page-table walk per VMA, so it is read only when VmLck says this process has
/// locked memory at all, and /proc/self/maps (no walk) otherwise.
template <class Spans>
[[nodiscard]] result<void> scan_before_lock(std::uintptr_t lo, std::uintptr_t hi,
                                            Spans& locked) noexcept {
  char buf[512];
  bool any_locked = true;  // unless VmLck says 0 kB
  {
    result<unique_fd> st = unique_fd::try_open("/proc/self/status", O_RDONLY);
    if (st) {
      (void)for_each_line(st->get(), buf, sizeof buf, [&](std::string_view l) noexcept {
        if (l.substr(0, 6) != "VmLck:") return true;
        l.remove_prefix(6);
        while (!l.empty() && (l.front() == ' ' || l.front() == '\t')) l.remove_prefix(1);
        any_locked = !(l.substr(0, 2) == "0 ");
        return false;
      });
    }
  }
  result<unique_fd> fd =
      unique_fd::try_open(any_locked ? "/proc/self/smaps" : "/proc/self/maps", O_RDONLY);
  if (!fd) return fd.error() == errc::not_found ? errc::not_supported : fd.error();
  std::uintptr_t covered = lo;  // [lo, covered) is known to be mapped
  bool inaccessible = false;
  bool pending = false;  // an smaps entry inside [lo, hi) waits for its VmFlags line
  std::uintptr_t vlo = 0, vhi = 0;
  result<void> err{};
  result<void> rd = for_each_line(fd->get(), buf, sizeof buf, [&](std::string_view l) noexcept {
    std::uintptr_t a = 0, b = 0;
    bool acc = false;
    if (parse_vma_line(l, a, b, acc)) {
      pending = false;
      if (b <= lo) return true;
      if (a >= hi) return false;      // VMAs are listed in address order
      if (a > covered) return false;  // a hole before this VMA
      covered = b;
      inaccessible = inaccessible || !acc;
      vlo = a < lo ? lo : a;
      vhi = b > hi ? hi : b;
      pending = any_locked;
      return covered < hi || pending;
    }
    if (!pending || l.substr(0, 8) != "VmFlags:") return true;
    pending = false;
    for (std::string_view f = l.substr(8); !f.empty();) {
      while (!f.empty() && f.front() == ' ') f.remove_prefix(1);
      const std::size_t n = f.find(' ');
      if (f.substr(0, n) == "lo") {
        if (!locked.empty() && locked.back().hi == vlo) {
          locked.back().hi = vhi;
        } else if (result<void> r = locked.try_push_back(locked_span{vlo, vhi}); !r) {
          err = r;
          return false;
        }
        break;
      }
      if (n == std::string_view::npos) break;
      f.remove_prefix(n);
    }
    return covered < hi;
  });
  if (!rd) return rd;
  if (!err) return err;
  if (covered < hi) return errc::not_mapped;
  if (inaccessible) return errc::permission_denied;
  return {};
}

/// Undoes a failed pin's mlock: munlocks [lo, hi) except the spans that were locked before.
/// munlock stops at a hole, as mlock did, so nothing past one is touched either way.
template <class Spans>
void munlock_except(std::uintptr_t lo, std::uintptr_t hi, const Spans& locked) noexcept {
  std::uintptr_t at = lo;
  for (const locked_span& s : locked) {
    if (s.lo > at) (void)sys_munlock(reinterpret_cast<void*>(at), s.lo - at);
    at = s.hi;
  }
  if (hi > at) (void)sys_munlock(reinterpret_cast<void*>(at), hi - at);
}

}  // namespace detail

/// Turns raw pagemap words (one per 4 KiB page, in virtual order) into a coalesced list. The
/// buffer starts `first_offset` bytes into the first page and is `len` bytes long; `words` must
/// hold exactly the pages it touches (else invalid_argument). Errors: see the header comment,
/// plus overflow and out_of_memory. Nothing is returned or leaked on failure.
template <segment_allocator Alloc = default_allocator>
[[nodiscard]] result<range_list<phys_range, Alloc>> try_list_from_pagemap_entries(
    std::span<const std::uint64_t> words, std::uint64_t first_offset, std::uint64_t len,
    range_flags flags = range_flags::none, Alloc alloc = Alloc{}) noexcept {
  range_list<phys_range, Alloc> l{alloc};
  if (result<void> r = detail::append_pagemap_words(l, words, first_offset, len, flags); !r)
    return r.error();
  return result<range_list<phys_range, Alloc>>{std::move(l)};
}

/// Like try_list_from_pagemap_entries, appending to `list` (coalescing with its tail, within
/// its limits). Strong guarantee: on failure `list` is unchanged.
template <segment_allocator Alloc>
[[nodiscard]] result<void> try_append_pagemap_entries(
    range_list<phys_range, Alloc>& list, std::span<const std::uint64_t> words,
    std::uint64_t first_offset, std::uint64_t len, range_flags flags = range_flags::none) noexcept {
  // Built aside and relinked, so a failure in a later batch cannot leave a prefix behind.
  range_list<phys_range, Alloc> scratch{list.get_allocator()};
  // `list` holds valid limits, so copying them cannot fail.
  (void)scratch.try_set_max_segment(list.max_segment());
  (void)scratch.try_set_segment_boundary(list.segment_boundary());
  if (result<void> r = detail::append_pagemap_words(scratch, words, first_offset, len, flags); !r)
    return r;
  return list.try_splice_back(std::move(scratch));
}

/// How `pinned_buffer::try_pin` builds its list.
struct pin_options {
  range_flags flags = range_flags::none;  ///< added to range_flags::pinned on every entry
  std::uint64_t max_segment = 0;          ///< range_list::try_set_max_segment (0 = no limit)
  std::uint64_t segment_boundary = 0;     ///< range_list::try_set_segment_boundary (0 = none)
};

/// A user buffer locked in memory (mlock) with the physical ranges behind it. Move-only; the
/// destructor or `unpin()` munlocks every page holding a byte of the buffer. The list is
/// read-only: it describes the pages as they were at pin time.
template <segment_allocator Alloc = default_allocator>
class pinned_buffer {
 public:
  using list_type = range_list<phys_range, Alloc>;

  /// Locks the pages of [addr, addr + len) (mlock also faults them in), and reads their frames
  /// from /proc/self/pagemap. Errors:
  /// - invalid_argument: len == 0, addr null, or limits in `opt` that range_list rejects;
  ///   overflow: the range wraps;
  /// - not_supported: the base page size is not 4 KiB, or there is no /proc/self/pagemap;
  /// - permission_denied: the PFNs are hidden from this process (no CAP_SYS_ADMIN), mlock
  ///   is not allowed at all (RLIMIT_MEMLOCK 0 without CAP_IPC_LOCK), or a page of the range
  ///   cannot be accessed (PROT_NONE: the kernel will not fault it in);
  /// - exhausted: the buffer exceeds what RLIMIT_MEMLOCK still allows (or the kernel could not
  ///   lock some pages); not_mapped: part of the range is unmapped, or a page stayed absent
  ///   (e.g. a VM_IO mapping nobody has touched);
  /// - out_of_memory (the allocator), io_error, parse_error.
  /// On any failure nothing leaks and the process's locks are as they were: pages this call
  /// locked are unlocked, pages locked before (by the caller, another pinned_buffer, or
  /// mlockall) stay locked. Not atomic against another thread changing locks on the same pages
  /// during the call.
  [[nodiscard]] static result<pinned_buffer> try_pin(void* addr, std::size_t len,
                                                     const pin_options& opt = {},
                                                     Alloc alloc = Alloc{}) noexcept {
    if (len == 0 || addr == nullptr) return errc::invalid_argument;
    const auto a = reinterpret_cast<std::uintptr_t>(addr);
    constexpr std::uintptr_t page_mask = pagemap_page_size - 1;
    // The last page must also end below 2^64 for its page-aligned length to be representable.
    if (len - 1 > ~std::uintptr_t{0} - a || ((a + (len - 1)) | page_mask) == ~std::uintptr_t{0})
      return errc::overflow;
    if (::sysconf(_SC_PAGESIZE) != static_cast<long>(pagemap_page_size)) return errc::not_supported;
    const std::uintptr_t lo = a & ~page_mask;
    const std::size_t lock_len = (((a + (len - 1)) | page_mask) + 1) - lo;
    const std::uint64_t pages = lock_len / pagemap_page_size;
    const std::uint64_t first_offset = a - lo;

    list_type l{alloc};
    if (result<void> r = l.try_set_max_segment(opt.max_segment); !r) return r.error();
    if (result<void> r = l.try_set_segment_boundary(opt.segment_boundary); !r) return r.error();

    // Opened before locking so a missing procfs costs no lock/unlock; the PFN privilege is
    // fixed at open time (the kernel checks the opener's credentials).
    result<detail::unique_fd> fd = detail::unique_fd::try_open("/proc/self/pagemap", O_RDONLY);
    if (!fd) return fd.error() == errc::not_found ? errc::not_supported : fd.error();

    const int raw = fd->get();
    // Probe the privilege on a page certainly present (this frame's stack) so a process that
    // cannot see PFNs gets permission_denied, whatever its mlock budget, without locking.
    {
      volatile std::uint64_t probe = 0;
      probe = 1;
      const auto pa = reinterpret_cast<std::uintptr_t>(&probe);
      std::uint64_t w = 0;
      if (detail::pread_full(raw, &w, sizeof w, pa / pagemap_page_size * sizeof w)) {
        const result<std::uint64_t> pfn = pagemap_entry_pfn(w);
        if (!pfn && pfn.error() == errc::permission_denied) return errc::permission_denied;
      }
    }

    // What was locked before, so a failure undoes only this call's locks; holes and PROT_NONE
    // pages are reported here, before anything is locked.
    detail::try_vector<detail::locked_span, Alloc> prior{alloc};
    if (result<void> r = detail::scan_before_lock(lo, lo + lock_len, prior); !r) return r.error();

    void* const lock_addr = reinterpret_cast<void*>(lo);
    if (detail::sys_mlock(lock_addr, lock_len) != 0) {
      const int e = errno;
      // mlock can fail after locking a prefix (a hole in the range, a failed fault).
      detail::munlock_except(lo, lo + lock_len, prior);
      return detail::mlock_errc(e, lock_addr, lock_len);
    }
    const std::uint64_t first_word = (lo / pagemap_page_size) * sizeof(std::uint64_t);
    result<void> r = detail::append_pagemap_batches(
        l,
        [raw, first_word](std::uint64_t* buf, std::uint64_t first,
                          std::size_t n) noexcept -> result<void> {
          if (result<void> rd = detail::pread_full(raw, buf, n * sizeof(std::uint64_t),
                                                   first_word + first * sizeof(std::uint64_t));
              !rd)
            return rd;
          return detail::pagemap_words_to_pfns(buf, n);
        },
        pages, first_offset, len, range_flags::pinned | opt.flags);
    if (!r) {
      detail::munlock_except(lo, lo + lock_len, prior);
      return r.error();
    }
    return pinned_buffer{std::move(l), addr, len, lock_addr, lock_len};
  }

  pinned_buffer(const pinned_buffer&) = delete;
  pinned_buffer& operator=(const pinned_buffer&) = delete;
  pinned_buffer(pinned_buffer&& o) noexcept
      : list_(std::move(o.list_)),
        addr_(std::exchange(o.addr_, nullptr)),
        len_(std::exchange(o.len_, 0)),
        lock_addr_(std::exchange(o.lock_addr_, nullptr)),
        lock_len_(std::exchange(o.lock_len_, 0)) {}
  pinned_buffer& operator=(pinned_buffer&& o) noexcept {
    if (this != &o) {
      unpin();
      list_ = std::move(o.list_);
      addr_ = std::exchange(o.addr_, nullptr);
      len_ = std::exchange(o.len_, 0);
      lock_addr_ = std::exchange(o.lock_addr_, nullptr);
      lock_len_ = std::exchange(o.lock_len_, 0);
    }
    return *this;
  }
  ~pinned_buffer() { unpin(); }

  /// Unlocks the pages and empties the list now (idempotent). The list must not be borrowed
  /// by a live mapping (debug builds trap).
  void unpin() noexcept {
    list_.clear();
    list_.shrink_to_fit();
    if (lock_len_ != 0) (void)detail::sys_munlock(lock_addr_, lock_len_);
    addr_ = nullptr;
    len_ = 0;
    lock_addr_ = nullptr;
    lock_len_ = 0;
  }

  /// False after unpin() or a move.
  [[nodiscard]] bool pinned() const noexcept { return lock_len_ != 0; }
  /// One entry per physically contiguous chunk, in buffer order, each flagged pinned.
  [[nodiscard]] const list_type& ranges() const noexcept { return list_; }
  [[nodiscard]] range_list_view<phys_range> view() const noexcept { return list_.view(); }
  [[nodiscard]] void* data() const noexcept { return addr_; }
  [[nodiscard]] std::size_t size() const noexcept { return len_; }
  /// Bytes locked: the buffer rounded out to whole pages.
  [[nodiscard]] std::size_t locked_bytes() const noexcept { return lock_len_; }

 private:
  pinned_buffer(list_type&& l, void* addr, std::size_t len, void* lock_addr,
                std::size_t lock_len) noexcept
      : list_(std::move(l)), addr_(addr), len_(len), lock_addr_(lock_addr), lock_len_(lock_len) {}

  list_type list_;
  void* addr_ = nullptr;
  std::size_t len_ = 0;
  void* lock_addr_ = nullptr;
  std::size_t lock_len_ = 0;
};

}  // namespace phyr::inline v0
