/// {fmt} formatters for phyr types. The only phyr header that includes fmt.
///
///   #include <phyr/fmt.hpp>
///   fmt::print("{}\n", range);   // phys[0x1000, +0x2000) pinned
///   fmt::print("{}\n", addr);    // phys:0x1000
///   fmt::print("{}\n", list);    // range_list<phys>{3 entries, 0x5ef0 bytes: phys[...), ...}
///   fmt::print("{}\n", r.error());  // out_of_memory
///
/// Specs are not accepted (an empty `{}` only): the output is for logs and test failures,
/// and one fixed shape keeps it greppable.
#pragma once

#include <fmt/format.h>

#include <cstddef>
#include <cstdint>

#include <phyr/container/range_list.hpp>
#include <phyr/core/address.hpp>
#include <phyr/core/error.hpp>
#include <phyr/core/range.hpp>

namespace phyr::inline v0::detail {
/// Parse step shared by every formatter: only `{}`.
struct no_spec_formatter {
  constexpr auto parse(fmt::format_parse_context& ctx) -> decltype(ctx.begin()) {
    auto it = ctx.begin();
    if (it != ctx.end() && *it != '}') ctx.on_error("phyr formatters take no format spec");
    return it;
  }
};

inline constexpr const char* flag_names[8] = {"pinned",  "bus_addr", "driver0", "driver1",
                                              "driver2", "driver3",  "driver4", "driver5"};

template <class Out>
Out format_flags(Out out, range_flags f, const char* lead) {
  const auto bits = static_cast<std::uint8_t>(f);
  bool first = true;
  for (unsigned i = 0; i < 8; ++i) {
    if ((bits & (1u << i)) == 0) continue;
    out = fmt::format_to(out, "{}{}", first ? lead : "|", flag_names[i]);
    first = false;
  }
  return out;
}

template <class Out, class Space>
Out format_range(Out out, const range<Space>& r) {
  out = fmt::format_to(out, "{}[{:#x}, +{:#x})", Space::name, r.addr().value(), r.len());
  return format_flags(out, r.flags(), " ");
}

/// Lists print their count, bytes and the first few entries: enough to recognise a list in a
/// log without flooding it with a million entries.
inline constexpr std::size_t list_preview = 4;

template <class Out, class List>
Out format_list(Out out, const char* kind, const List& l) {
  using space = typename List::space_type;
  out = fmt::format_to(out, "{}<{}>{{{} entries, {:#x} bytes", kind, space::name, l.size(),
                       l.total_bytes());
  std::size_t i = 0;
  for (const auto& r : l) {
    if (i == list_preview) {
      out = fmt::format_to(out, ", ...");
      break;
    }
    out = fmt::format_to(out, "{}", i == 0 ? ": " : ", ");
    out = format_range(out, r);
    ++i;
  }
  return fmt::format_to(out, "}}");
}
}  // namespace phyr::detail

template <phyr::address_space Space>
struct fmt::formatter<phyr::address<Space>> : phyr::detail::no_spec_formatter {
  template <class FormatContext>
  auto format(const phyr::address<Space>& a, FormatContext& ctx) const -> decltype(ctx.out()) {
    return fmt::format_to(ctx.out(), "{}:{:#x}", Space::name, a.value());
  }
};

template <phyr::address_space Space>
struct fmt::formatter<phyr::range<Space>> : phyr::detail::no_spec_formatter {
  template <class FormatContext>
  auto format(const phyr::range<Space>& r, FormatContext& ctx) const -> decltype(ctx.out()) {
    return phyr::detail::format_range(ctx.out(), r);
  }
};

template <>
struct fmt::formatter<phyr::range_flags> : phyr::detail::no_spec_formatter {
  template <class FormatContext>
  auto format(phyr::range_flags f, FormatContext& ctx) const -> decltype(ctx.out()) {
    if (f == phyr::range_flags::none) return fmt::format_to(ctx.out(), "none");
    return phyr::detail::format_flags(ctx.out(), f, "");
  }
};

template <>
struct fmt::formatter<phyr::errc> : phyr::detail::no_spec_formatter {
  template <class FormatContext>
  auto format(phyr::errc e, FormatContext& ctx) const -> decltype(ctx.out()) {
    return fmt::format_to(ctx.out(), "{}", phyr::to_string(e));
  }
};

template <class Range, class Alloc>
struct fmt::formatter<phyr::range_list<Range, Alloc>> : phyr::detail::no_spec_formatter {
  template <class FormatContext>
  auto format(const phyr::range_list<Range, Alloc>& l, FormatContext& ctx) const
      -> decltype(ctx.out()) {
    return phyr::detail::format_list(ctx.out(), "range_list", l);
  }
};

template <class Range>
struct fmt::formatter<phyr::range_list_view<Range>> : phyr::detail::no_spec_formatter {
  template <class FormatContext>
  auto format(const phyr::range_list_view<Range>& v, FormatContext& ctx) const
      -> decltype(ctx.out()) {
    return phyr::detail::format_list(ctx.out(), "range_list_view", v);
  }
};
