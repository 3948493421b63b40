/// `detail::try_vector<T, Alloc>`: a growable array whose growth can fail, for phyr's own
/// bookkeeping (topology nodes, sysfs scan results, memo tables, lock plans).
///
///   phyr::detail::try_vector<pci_bdf, phyr::default_allocator> v;
///   if (auto r = v.try_push_back(bdf); !r) return r.error();   // out_of_memory / too_long
///   for (const pci_bdf& b : v) use(b);
///
/// Why not std::vector: its growth throws, and phyr builds with -fno-exceptions for code that
/// must report allocation failure as a value. Strong guarantee on every try_* call: a failure
/// leaves size, capacity, contents and the allocator's live blocks exactly as they were.
/// Elements must be nothrow move constructible and nothrow destructible (growth moves them).
/// Not thread-safe; the owner synchronises.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <phyr/config.hpp>
#include <phyr/core/allocator.hpp>
#include <phyr/core/error.hpp>
#include <type_traits>
#include <utility>

namespace phyr::inline v0::detail {

template <class T, segment_allocator Alloc>
class try_vector {
  static_assert(std::is_nothrow_move_constructible_v<T> && std::is_nothrow_destructible_v<T>,
                "try_vector moves elements when it grows, which must not fail");

 public:
  using value_type = T;
  using size_type = std::size_t;
  using allocator_type = Alloc;
  /// The most elements: a byte count that fits size_t with room to double.
  static constexpr size_type max_size = (~size_type{0} / 4) / sizeof(T);

  constexpr try_vector() noexcept = default;
  constexpr explicit try_vector(Alloc alloc) noexcept : alloc_(alloc) {}
  try_vector(const try_vector&) = delete;
  try_vector& operator=(const try_vector&) = delete;
  try_vector(try_vector&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)),
        size_(std::exchange(o.size_, 0)),
        cap_(std::exchange(o.cap_, 0)),
        alloc_(o.alloc_) {}
  /// Frees this vector's storage and takes `o`'s (with its allocator).
  try_vector& operator=(try_vector&& o) noexcept {
    if (this != &o) {
      release();
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
      cap_ = std::exchange(o.cap_, 0);
      alloc_ = o.alloc_;
    }
    return *this;
  }
  ~try_vector() { release(); }

  [[nodiscard]] size_type size() const noexcept { return size_; }
  [[nodiscard]] size_type capacity() const noexcept { return cap_; }
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
  [[nodiscard]] T* data() noexcept { return data_; }
  [[nodiscard]] const T* data() const noexcept { return data_; }
  [[nodiscard]] T* begin() noexcept { return data_; }
  [[nodiscard]] T* end() noexcept { return data_ + size_; }
  [[nodiscard]] const T* begin() const noexcept { return data_; }
  [[nodiscard]] const T* end() const noexcept { return data_ + size_; }
  [[nodiscard]] T& operator[](size_type i) noexcept {
    PHYR_ASSERT(i < size_, "try_vector index out of range");
    return data_[i];
  }
  [[nodiscard]] const T& operator[](size_type i) const noexcept {
    PHYR_ASSERT(i < size_, "try_vector index out of range");
    return data_[i];
  }
  [[nodiscard]] T& back() noexcept {
    PHYR_ASSERT(size_ != 0, "try_vector::back on an empty vector");
    return data_[size_ - 1];
  }
  [[nodiscard]] const T& back() const noexcept {
    PHYR_ASSERT(size_ != 0, "try_vector::back on an empty vector");
    return data_[size_ - 1];
  }
  [[nodiscard]] Alloc get_allocator() const noexcept { return alloc_; }

  /// Makes room for `n` elements in total. too_long above max_size, out_of_memory when the
  /// allocator fails; either way nothing changes.
  [[nodiscard]] result<void> try_reserve(size_type n) noexcept {
    if (n <= cap_) return {};
    if (n > max_size) return errc::too_long;
    void* p = alloc_.allocate(n * sizeof(T), alignof(T));
    if (p == nullptr) return errc::out_of_memory;
    T* fresh = static_cast<T*>(p);
    for (size_type i = 0; i < size_; ++i) {
      ::new (static_cast<void*>(fresh + i)) T(std::move(data_[i]));
      data_[i].~T();
    }
    if (data_ != nullptr) alloc_.deallocate(data_, cap_ * sizeof(T), alignof(T));
    data_ = fresh;
    cap_ = n;
    return {};
  }

  /// Appends a copy (or a move) of `v`, doubling the capacity when full (at least 8 slots).
  template <class U = T>
  [[nodiscard]] result<void> try_push_back(U&& v) noexcept {
    static_assert(std::is_nothrow_constructible_v<T, U&&>, "the element must construct nothrow");
    if (size_ == cap_) {
      if (size_ == max_size) return errc::too_long;
      const size_type want = cap_ < 8 ? 8 : (cap_ > max_size / 2 ? max_size : cap_ * 2);
      if (result<void> r = try_reserve(want); !r) return r;
    }
    ::new (static_cast<void*>(data_ + size_)) T(std::forward<U>(v));
    ++size_;
    return {};
  }

  /// Inserts `v` before position `i` (i <= size()), shifting the tail up by one.
  template <class U = T>
  [[nodiscard]] result<void> try_insert(size_type i, U&& v) noexcept {
    PHYR_ASSERT(i <= size_, "try_vector::try_insert past the end");
    if (result<void> r = try_push_back(std::forward<U>(v)); !r) return r;
    for (size_type j = size_ - 1; j > i; --j) std::swap(data_[j], data_[j - 1]);
    return {};
  }

  void pop_back() noexcept {
    PHYR_ASSERT(size_ != 0, "try_vector::pop_back on an empty vector");
    data_[--size_].~T();
  }
  /// Destroys the elements; keeps the capacity.
  void clear() noexcept {
    while (size_ != 0) data_[--size_].~T();
  }
  /// Destroys the elements and frees the storage.
  void release() noexcept {
    clear();
    if (data_ != nullptr) alloc_.deallocate(data_, cap_ * sizeof(T), alignof(T));
    data_ = nullptr;
    cap_ = 0;
  }

 private:
  T* data_ = nullptr;
  size_type size_ = 0;
  size_type cap_ = 0;
  [[no_unique_address]] Alloc alloc_{};
};

}  // namespace phyr::inline v0::detail
