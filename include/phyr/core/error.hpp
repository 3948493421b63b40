/// Errors as values: `errc` and `result<T>`.
///
///   phyr::result<phyr::phys_range> r = phyr::phys_range::create(phyr::address<phyr::cpu_phys>{0x1000}, 4096);
///   if (!r) return r.error();          // errc::overflow, errc::invalid_argument, ...
///   use(*r);
///
/// `result` is spelled like `std::expected<T, errc>` so it can become one under C++23. The
/// difference: `value()` on an error asserts instead of throwing (no exceptions under include/).
/// There is no `ok` enumerator, so "success reported as an error" cannot be written.
///
/// OS back ends that must keep what the kernel said (os/linux/vfio) return
/// `result<T, sys_error>`: the `errc` plus the errno and the name of the failing call. Everyone
/// else keeps `result<T>` (= `result<T, errc>`), whose size does not change; a `sys_error`
/// converts to a plain `result<U>` error (the errno is dropped), so
/// `if (!r) return r.error();` works across the two.
#pragma once

#include <concepts>
#include <cstdint>
#include <new>
#include <type_traits>
#include <utility>

#include <phyr/config.hpp>

namespace phyr::inline v0 {

enum class errc : std::uint8_t {
  out_of_memory = 1,   ///< an allocator returned null
  overflow,            ///< address or length arithmetic would wrap
  invalid_argument,    ///< zero length, bad flags, malformed input
  too_long,            ///< a length above the representable maximum
  misaligned,          ///< input not aligned as the operation requires
  not_addressable,     ///< above the device's DMA mask
  out_of_range,        ///< offset/length outside the object
  exhausted,           ///< a fixed resource (IOVA space, pool) has no room
  not_mapped,          ///< address has no translation
  foreign_mapping,     ///< mapping does not belong to this mapper, or was already unmapped
  p2p_not_supported,   ///< no peer-to-peer path between provider and client
  straddles_boundary,  ///< a range crosses a window/provider boundary
  overlaps,            ///< a registration overlaps an existing one
  not_found,           ///< no such device/file/entry
  permission_denied,   ///< the OS refused (e.g. pagemap without CAP_SYS_ADMIN)
  io_error,            ///< an OS read/write failed
  parse_error,         ///< malformed text from sysfs/procfs
  not_supported,       ///< operation not available here
  busy,                ///< the OS holds the resource for someone else (EBUSY)
  page_gap,            ///< a boundary inside a transfer not on a device page (NVMe PRP)
  too_many_descriptors,  ///< more descriptors than the device or the caller's limit allows
  too_many_segments,   ///< more segments than the device takes (busdma's EFBIG)
  bounce_exhausted,    ///< the bounce pool has no free slots left for this I/O
};

/// Stable, allocation-free names for logs (`phyr/fmt.hpp` prints them).
[[nodiscard]] constexpr const char* to_string(errc e) noexcept {
  switch (e) {
    case errc::out_of_memory: return "out_of_memory";
    case errc::overflow: return "overflow";
    case errc::invalid_argument: return "invalid_argument";
    case errc::too_long: return "too_long";
    case errc::misaligned: return "misaligned";
    case errc::not_addressable: return "not_addressable";
    case errc::out_of_range: return "out_of_range";
    case errc::exhausted: return "exhausted";
    case errc::not_mapped: return "not_mapped";
    case errc::foreign_mapping: return "foreign_mapping";
    case errc::p2p_not_supported: return "p2p_not_supported";
    case errc::straddles_boundary: return "straddles_boundary";
    case errc::overlaps: return "overlaps";
    case errc::not_found: return "not_found";
    case errc::permission_denied: return "permission_denied";
    case errc::io_error: return "io_error";
    case errc::parse_error: return "parse_error";
    case errc::not_supported: return "not_supported";
    case errc::busy: return "busy";
    case errc::page_gap: return "page_gap";
    case errc::too_many_descriptors: return "too_many_descriptors";
    case errc::too_many_segments: return "too_many_segments";
    case errc::bounce_exhausted: return "bounce_exhausted";
  }
  return "unknown";
}

/// An `errc` with what the OS said: the errno of the failing system call (0 when the failure
/// is phyr's own check, not a system call) and a static name for that call (an ioctl name such
/// as "VFIO_IOMMU_MAP_DMA", or null). The error type of `result<T, sys_error>`.
struct sys_error {
  errc code{};
  int sys_errno = 0;
  const char* op = nullptr;

  constexpr sys_error() noexcept = default;
  /// phyr's own checks (no system call involved): implicit, so `return errc::x;` works.
  constexpr sys_error(errc c) noexcept : code(c) {}  // NOLINT(google-explicit-constructor)
  constexpr sys_error(errc c, int e, const char* o) noexcept : code(c), sys_errno(e), op(o) {}

  friend constexpr bool operator==(const sys_error& a, errc b) noexcept { return a.code == b; }
  friend constexpr bool operator==(const sys_error&, const sys_error&) noexcept = default;
};

namespace detail {
[[nodiscard]] constexpr errc error_code_of(errc e) noexcept { return e; }
[[nodiscard]] constexpr errc error_code_of(const sys_error& e) noexcept { return e.code; }

/// The error types `result` carries: `errc`, or a richer trivially copyable value that names
/// its `errc` (found by `error_code_of`) and can be built from one.
template <class E>
concept result_error = std::is_trivially_copyable_v<E> && std::is_constructible_v<E, errc> &&
                       requires(const E& e) {
                         { error_code_of(e) } -> std::same_as<errc>;
                       };
}  // namespace detail

namespace detail {
// Two storages so result<T> of a trivially destructible T stays trivially destructible and
// copyable (returned in registers, usable in constant expressions); clang 14 lacks P0848
// conditionally-trivial destructors, hence the base-class split.
template <class T, class E, bool = std::is_trivially_destructible_v<T>>
struct result_storage {
  union {
    T val_;
    E err_;
  };
  bool has_;
  constexpr result_storage(E e) noexcept : err_(e), has_(false) {}
  template <class... A>
  constexpr result_storage(std::in_place_t, A&&... a) noexcept
      : val_(std::forward<A>(a)...), has_(true) {}
};

template <class T, class E>
struct result_storage<T, E, false> {
  union {
    T val_;
    E err_;
  };
  bool has_;
  constexpr result_storage(E e) noexcept : err_(e), has_(false) {}
  template <class... A>
  constexpr result_storage(std::in_place_t, A&&... a) noexcept
      : val_(std::forward<A>(a)...), has_(true) {}
  // Placement new, not std::construct_at: <memory> is not a freestanding header, and
  // owning payloads (lists, mappings) are never built in constant expressions anyway.
  result_storage(result_storage&& o) noexcept : err_(o.err_), has_(o.has_) {
    if (has_) ::new (static_cast<void*>(&val_)) T(std::move(o.val_));
  }
  result_storage(const result_storage& o) noexcept
    requires std::is_copy_constructible_v<T>
      : err_(o.err_), has_(o.has_) {
    if (has_) ::new (static_cast<void*>(&val_)) T(o.val_);
  }
  result_storage& operator=(const result_storage&) = delete;
  result_storage& operator=(result_storage&&) = delete;
  constexpr ~result_storage() {
    if (has_) val_.~T();
  }
};
}  // namespace detail

/// T or an error (an `errc` unless said otherwise). T must be nothrow move constructible
/// (every phyr type is).
template <class T, class E = errc>
class [[nodiscard]] result : private detail::result_storage<T, E> {
  using base = detail::result_storage<T, E>;
  static_assert(std::is_nothrow_move_constructible_v<T>);
  static_assert(!std::is_reference_v<T>, "result<T&> is not supported; return a pointer");
  static_assert(detail::result_error<E>);

 public:
  using value_type = T;
  using error_type = E;
  constexpr result(E e) noexcept : base(e) {
    PHYR_ASSERT(detail::error_code_of(e) != errc{}, "errc{} is not an error");
  }
  /// A plain errc into a richer error type (no system call involved).
  constexpr result(errc e) noexcept
    requires(!std::same_as<E, errc>)
      : result(E{e}) {}
  /// A richer error into a plain `result<T>`: keeps the errc, drops the rest.
  template <class E2>
    requires(std::same_as<E, errc> && !std::same_as<E2, errc> && detail::result_error<E2>)
  constexpr result(const E2& e) noexcept  // NOLINT(google-explicit-constructor)
      : result(detail::error_code_of(e)) {}
  constexpr result(const T& v) noexcept
    requires std::is_copy_constructible_v<T>
      : base(std::in_place, v) {}
  constexpr result(T&& v) noexcept : base(std::in_place, std::move(v)) {}
  template <class... A>
  constexpr explicit result(std::in_place_t, A&&... a) noexcept
      : base(std::in_place, std::forward<A>(a)...) {}

  [[nodiscard]] constexpr bool has_value() const noexcept { return this->has_; }
  constexpr explicit operator bool() const noexcept { return this->has_; }

  [[nodiscard]] constexpr E error() const noexcept {
    PHYR_ASSERT(!this->has_, "result::error() on a value");
    return this->err_;
  }
  [[nodiscard]] constexpr T& value() & noexcept {
    PHYR_ASSERT(this->has_, "result::value() on an error");
    return this->val_;
  }
  [[nodiscard]] constexpr const T& value() const& noexcept {
    PHYR_ASSERT(this->has_, "result::value() on an error");
    return this->val_;
  }
  /// From an rvalue the value is moved out and returned by value, so
  /// `for (auto x : *make_result())` iterates a live object, not a destroyed temporary.
  [[nodiscard]] constexpr T value() && noexcept {
    PHYR_ASSERT(this->has_, "result::value() on an error");
    return std::move(this->val_);
  }
  [[nodiscard]] constexpr T& operator*() & noexcept { return value(); }
  [[nodiscard]] constexpr const T& operator*() const& noexcept { return value(); }
  [[nodiscard]] constexpr T operator*() && noexcept { return std::move(*this).value(); }
  [[nodiscard]] constexpr T* operator->() noexcept { return &value(); }
  [[nodiscard]] constexpr const T* operator->() const noexcept { return &value(); }

  template <class U>
  [[nodiscard]] constexpr T value_or(U&& fallback) const& noexcept {
    return this->has_ ? this->val_ : static_cast<T>(std::forward<U>(fallback));
  }
};

/// Success-or-error for operations that produce nothing.
template <class E>
class [[nodiscard]] result<void, E> {
  static_assert(detail::result_error<E>);

 public:
  using value_type = void;
  using error_type = E;
  constexpr result() noexcept = default;
  constexpr result(E e) noexcept : err_(e) {
    PHYR_ASSERT(detail::error_code_of(e) != errc{}, "errc{} is not an error");
  }
  constexpr result(errc e) noexcept
    requires(!std::same_as<E, errc>)
      : result(E{e}) {}
  template <class E2>
    requires(std::same_as<E, errc> && !std::same_as<E2, errc> && detail::result_error<E2>)
  constexpr result(const E2& e) noexcept  // NOLINT(google-explicit-constructor)
      : result(detail::error_code_of(e)) {}
  [[nodiscard]] constexpr bool has_value() const noexcept {
    return detail::error_code_of(err_) == errc{};
  }
  constexpr explicit operator bool() const noexcept { return has_value(); }
  [[nodiscard]] constexpr E error() const noexcept {
    PHYR_ASSERT(!has_value(), "result::error() on a value");
    return err_;
  }
  constexpr void value() const noexcept { PHYR_ASSERT(has_value(), "result::value() on an error"); }

 private:
  E err_{};
};

/// Tests and examples only: unwrap or assert (Serenity's MUST). Library code never calls it.
template <class T, class E>
[[nodiscard]] constexpr T must(result<T, E>&& r) noexcept {
  PHYR_ASSERT(r.has_value(), "phyr::must on an error");
  return std::move(*r);
}
template <class E>
constexpr void must(result<void, E> r) noexcept {
  PHYR_ASSERT(r.has_value(), "phyr::must on an error");
}

}  // namespace phyr
