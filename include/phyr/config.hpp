/// phyr configuration: version, assertions, ABI-changing debug checks.
///
///   #define PHYR_ASSERT(cond, msg) my_kernel_panic_if_not(cond, msg)  // before any phyr include
///   #define PHYR_ENABLE_BORROW_CHECKS 0   // optional: debug build, release-layout containers
///   #include <phyr/phyr.hpp>
///
/// PHYR_ASSERT follows {fmt}'s "use the provided definition" pattern so a kernel can route
/// assertion failures to its own panic. Without NDEBUG (or with PHYR_ENABLE_ASSERTS) a failed
/// assert in a hosted build prints "file:line: phyr assertion failed: message" to stderr and
/// aborts; a freestanding build (no stdio to print with) traps. In release builds asserts
/// type-check their condition and evaluate nothing.
///
/// Every phyr declaration lives in the inline namespace `phyr::v0`: code always names
/// `phyr::x`, but the mangled names carry the ABI version, so two incompatible phyr builds in
/// one program fail to link instead of silently mixing layouts.
///
/// PHYR_ENABLE_BORROW_CHECKS (default: on exactly when asserts are, i.e. from NDEBUG) adds a
/// borrow counter to range_list, which changes its size. Like LLVM's ABI_BREAKING_CHECKS, the
/// setting selects an inline namespace (PHYR_BORROW_ABI_NAMESPACE) around the affected types,
/// so a program whose translation units disagree fails to link (a function taking a
/// `range_list&` has a different mangled name in each) instead of silently reading one
/// layout as the other.
#pragma once

#if defined(_MSVC_LANG) ? _MSVC_LANG < 202002L : __cplusplus < 202002L
#  error "phyr needs C++20 (concepts, consteval, constexpr std::bit_cast): compile with -std=c++20 or newer"
#endif

#include <type_traits>

#include <phyr/version.hpp>

#if !defined(NDEBUG) || defined(PHYR_ENABLE_ASSERTS)
#  define PHYR_DEBUG 1
#else
#  define PHYR_DEBUG 0
#endif

#ifndef PHYR_ENABLE_BORROW_CHECKS
#  define PHYR_ENABLE_BORROW_CHECKS PHYR_DEBUG
#endif
#if PHYR_ENABLE_BORROW_CHECKS
#  define PHYR_BORROW_ABI_NAMESPACE borrow_checked
#else
#  define PHYR_BORROW_ABI_NAMESPACE borrow_unchecked
#endif

#if __STDC_HOSTED__
#  include <cstdio>
#  include <cstdlib>
#endif

namespace phyr::inline v0::detail {
/// Out of line and cold so the assert macro costs one compare-and-branch on hot paths.
/// No iostream and no exceptions: one fprintf (hosted builds only), then abort, so a failed
/// debug check reads as a sentence rather than "Illegal instruction".
[[noreturn, gnu::cold, gnu::noinline]] inline void assert_fail(const char* file, int line,
                                                               const char* msg) noexcept {
  // Kept in volatile locals so a core dump or debugger shows them.
  [[maybe_unused]] const char* volatile f = file;
  [[maybe_unused]] volatile int l = line;
  [[maybe_unused]] const char* volatile m = msg;
#if __STDC_HOSTED__
  std::fprintf(stderr, "%s:%d: phyr assertion failed: %s\n", file, line, msg);
  std::fflush(stderr);
  std::abort();
#else
  __builtin_trap();
#endif
}
}  // namespace phyr::inline v0::detail

#ifdef PHYR_ASSERT
// Use the provided definition.
#elif PHYR_DEBUG
#  define PHYR_ASSERT(cond, msg) \
    ((cond) ? (void)0 : ::phyr::detail::assert_fail(__FILE__, __LINE__, msg))
#else
#  define PHYR_ASSERT(cond, msg) ((void)sizeof(!(cond)))
#endif

#if defined(__GNUC__) || defined(__clang__)
#  define PHYR_LIKELY(x) __builtin_expect(!!(x), 1)
#  define PHYR_UNLIKELY(x) __builtin_expect(!!(x), 0)
// For a loop helper that takes a callback writing the caller's locals: inlined, the locals stay
// in registers; called, every write goes through memory.
#  define PHYR_ALWAYS_INLINE [[gnu::always_inline]] inline
// For a long pass behind a short common case: kept out of line, the caller inlines the short
// case instead of the compiler inlining both or neither.
#  define PHYR_NOINLINE [[gnu::noinline]]
#else
#  define PHYR_LIKELY(x) (x)
#  define PHYR_UNLIKELY(x) (x)
#  define PHYR_ALWAYS_INLINE inline
#  define PHYR_NOINLINE
#endif

namespace phyr::inline v0::detail {
/// `v`, passed through a general register, so the compiler cannot merge the load that produced
/// it with a neighbour's into one 16-byte vector load. Such a load of two fields that two 8-byte
/// stores wrote moments before (a list's counters right after an append) cannot take its data
/// from the store buffer on x86: forwarding fails and the load waits until both stores have
/// left it, some 10-15 cycles. Costs nothing else (an empty asm; nothing at compile time or on
/// other compilers).
template <class T>
[[nodiscard]] PHYR_ALWAYS_INLINE constexpr T keep_scalar(T v) noexcept {
#if defined(__GNUC__) || defined(__clang__)
  if (!std::is_constant_evaluated()) __asm__("" : "+r"(v));
#endif
  return v;
}
}  // namespace phyr::inline v0::detail
