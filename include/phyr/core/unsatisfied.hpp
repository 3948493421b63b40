/// Readable concept diagnostics (mp-units' trick), shared by every concept in phyr.
///
///   ```
///   template <class M>
///   concept my_concept = (has_foo<M> && has_bar<M>) ||
///                        phyr::detail::unsatisfied<"my_concept: needs foo() and bar()", M>();
///   ```
///
/// Putting `|| unsatisfied<"why", T>()` last in a concept makes g++ and clang quote the sentence
/// (and the offending type) in their "constraints not satisfied" note, instead of only the
/// name of the first conjunct that failed.
#pragma once

#include <cstddef>

#include <phyr/config.hpp>

namespace phyr::inline v0::detail {

/// A string usable as a template argument, so a failed concept quotes its reason.
template <std::size_t N>
struct concept_message {
  char text[N];
  consteval concept_message(const char (&s)[N]) noexcept {  // NOLINT: implicit on purpose
    for (std::size_t i = 0; i < N; ++i) text[i] = s[i];
  }
};

/// Always false; its template arguments are the diagnostic.
template <concept_message Msg, class... T>
[[nodiscard]] consteval bool unsatisfied() noexcept {
  return false;
}

}  // namespace phyr::inline v0::detail
