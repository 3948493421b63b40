/// The `range_source` concept: anything whose const `begin()`/`end()` walk `range<Space>`
/// values. Containers, views, DMA mappings, spans and arrays of ranges all qualify, so code
/// that reads a list (device/, packed_list, the compat bridge) takes any of them.
///
///   static_assert(phyr::range_source<phyr::range_list<phyr::phys_range>>);
///   static_assert(phyr::range_source<std::span<const phyr::phys_range>>);
///   template <phyr::range_source L>
///   std::uint64_t bytes(const L& l) { std::uint64_t n = 0; for (auto r : l) n += r.len(); return n; }
#pragma once

#include <concepts>
#include <cstddef>
#include <span>
#include <type_traits>
#include <utility>

#include <phyr/config.hpp>
#include <phyr/container/range_list.hpp>
#include <phyr/core/range.hpp>
#include <phyr/core/unsatisfied.hpp>

namespace phyr::inline v0 {

namespace detail {

template <class L>
using source_iterator_t = decltype(std::declval<const L&>().begin());

template <class L>
using source_range_t = std::remove_cvref_t<decltype(*std::declval<const L&>().begin())>;

template <class L>
concept has_begin_end = requires(const L& l) {
  l.begin();
  l.end();
};

template <class L>
concept iterates_ranges =
    std::same_as<source_iterator_t<L>, decltype(std::declval<const L&>().end())> &&
    any_range<source_range_t<L>> && std::copyable<source_iterator_t<L>> &&
    std::default_initializable<source_iterator_t<L>> &&
    requires(source_iterator_t<L> it) {
      { ++it } -> std::same_as<source_iterator_t<L>&>;
      { it == it } -> std::convertible_to<bool>;
    };

}  // namespace detail

/// A type `L` is a range source if:
///  1. a `const L&` has `begin()` and `end()` of one iterator type (a common range);
///  2. dereferencing the iterator gives a `range<Space>` (by value or by reference);
///  3. the iterator is default-constructible, copyable, pre-incrementable and equality
///     comparable, and iterating twice gives the same ranges (multi-pass, not checked).
/// It does not check that lengths are non-zero; device/ functions report that as
/// `errc::invalid_argument`.
template <class L>
concept range_source =
    (detail::has_begin_end<L> && detail::iterates_ranges<L>) ||
    detail::unsatisfied<"range_source: needs const begin()/end() of one forward iterator "
                               "type whose elements are phyr::range<Space>",
                               L>();

/// The `range<Space>` type a source yields, and its address space.
template <range_source L>
using source_range_t = detail::source_range_t<L>;
template <range_source L>
using source_space_t = typename detail::source_range_t<L>::space_type;

/// True for source types whose iterators stay valid after the source object itself is gone
/// (views over storage owned elsewhere). Lazy device/ views store iterators, so they accept a
/// temporary source only when this is true; owning lists must be passed as lvalues.
/// Specialise it for other non-owning sources (e.g. an aliasing DMA mapping).
template <class L>
inline constexpr bool enable_borrowed_source = false;
template <any_range R>
inline constexpr bool enable_borrowed_source<range_list_view<R>> = true;
template <any_range R, std::size_t N>
inline constexpr bool enable_borrowed_source<std::span<R, N>> = true;
template <any_range R, std::size_t N>
inline constexpr bool enable_borrowed_source<std::span<const R, N>> = true;

/// True for source types whose `size()`, `total_bytes()` and `highest()` are kept exact as the
/// source changes, whose `gap_bits()` covers every gap (range_list::gap_bits), and whose ranges
/// are never empty: phyr's lists, their views and the identity mappings of them. device/ code
/// may then answer from those counters instead of walking (a try_split for a device that
/// limits only segment size and boundary is O(1), and so is planning PRPs for a list whose gaps
/// fall on page boundaries). Specialise it only for a source that keeps these promises.
template <class L>
inline constexpr bool enable_counted_source = false;
template <any_range R>
inline constexpr bool enable_counted_source<range_list_view<R>> = true;
template <any_range R, class A>
inline constexpr bool enable_counted_source<range_list<R, A>> = true;

namespace detail {

template <class It, class F>
concept has_segment_walk = requires(const It& a, F& f) {
  { walk_segments(a, a, f) } -> std::same_as<bool>;
};

}  // namespace detail

/// Calls `f(r)` for each range of [first, last) in order, stopping early when `f` returns
/// false (f may return void); returns whether it reached `last`. Iterators that know their
/// storage (range_list's, its views', the identity mapping's, split()'s) walk it with a loop
/// per heap segment, found by ADL as a hidden friend `walk_segments(first, last, f)`: the
/// compiler then keeps the walk's state in registers instead of stepping a five-word iterator
/// per entry, which is what every per-I/O pass (split planning, PRP and SGL building) pays per
/// range. Other iterators are stepped one by one. Same ranges, same order, either way.
template <class It, class F>
PHYR_ALWAYS_INLINE constexpr bool for_each_range(It first, It last, F&& f) noexcept {
  if constexpr (detail::has_segment_walk<It, std::remove_reference_t<F>>) {
    return walk_segments(first, last, f);
  } else {
    for (; first != last; ++first) {
      if (!detail::call_continue(f, *first)) return false;
    }
    return true;
  }
}
/// The same over a whole source.
template <range_source L, class F>
PHYR_ALWAYS_INLINE constexpr bool for_each_range(const L& list, F&& f) noexcept {
  return for_each_range(list.begin(), list.end(), f);
}

/// A source a lazy view may keep iterators into: an lvalue, or a borrowed temporary.
template <class L>
concept viewable_source =
    range_source<std::remove_cvref_t<L>> &&
    (std::is_lvalue_reference_v<L> || enable_borrowed_source<std::remove_cvref_t<L>>);


}  // namespace phyr::inline v0
