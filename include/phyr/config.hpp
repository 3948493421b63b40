/// phyr configuration: version, assertions.
///
///   #define PHYR_ASSERT(cond, msg) my_kernel_panic_if_not(cond, msg)  // before any phyr include
///   #include <phyr/phyr.hpp>
///
/// PHYR_ASSERT follows {fmt}'s "use the provided definition" pattern so a kernel can route
/// assertion failures to its own panic. Without NDEBUG (or with PHYR_ENABLE_ASSERTS) asserts
/// trap; in release builds they type-check their condition and evaluate nothing.
#pragma once

#define PHYR_VERSION_MAJOR 0
#define PHYR_VERSION_MINOR 1
#define PHYR_VERSION_PATCH 0

#if !defined(NDEBUG) || defined(PHYR_ENABLE_ASSERTS)
#  define PHYR_DEBUG 1
#else
#  define PHYR_DEBUG 0
#endif

namespace phyr::inline v0::detail {
/// Out of line and cold so the assert macro costs one compare-and-branch on hot paths.
/// No iostream and no exceptions: the message is for a debugger, the trap stops the program.
[[noreturn, gnu::cold, gnu::noinline]] inline void assert_fail(const char* file, int line,
                                                               const char* msg) noexcept {
  // Kept in volatile locals so a core dump or debugger shows them.
  [[maybe_unused]] const char* volatile f = file;
  [[maybe_unused]] volatile int l = line;
  [[maybe_unused]] const char* volatile m = msg;
  __builtin_trap();
}
}  // namespace phyr::detail

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
#else
#  define PHYR_LIKELY(x) (x)
#  define PHYR_UNLIKELY(x) (x)
#endif
