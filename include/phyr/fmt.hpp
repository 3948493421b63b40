/// {fmt} formatters for phyr types. The only phyr header that includes fmt.
///
///   #include <phyr/fmt.hpp>
///   fmt::print("{}\n", range);     // phys[0x1000, +0x2000) pinned
///   fmt::print("{}\n", dma);       // dma<nvme0>[0x8000, +0x1000): the bus is part of the type
///   fmt::print("{}\n", addr);      // phys:0x1000
///   fmt::print("{}\n", list);      // range_list<phys>{3 entries, 0x5ef0 bytes: phys[...), ...}
///   fmt::print("{}\n", mapping);   // mapping<dma<nvme0>>{1 entries, 0x3000 bytes: ...}
///   fmt::print("{}\n", packed);    // packed_list<phys>{...}
///   fmt::print("{}\n", dir);       // to_device
///   fmt::print("{}\n", r.error()); // out_of_memory
///   fmt::print("{}\n", limits);    // dma_constraints{max_segment 0x10000, boundary 0xffffffff, ...}
///   fmt::print("{}\n", *plan);     // split_plan{3 entries, 5 segments, 0x5000 bytes}
///   fmt::print("{}\n", *resv);     // iova_reservation<dma<nvme0>>{[0xfef00000, +0x100000), 2 pages linked}
///
/// Specs are not accepted (an empty `{}` only): the output is for logs and test failures,
/// and one fixed shape keeps it greppable. A DMA address or range names its bus: the tag's
/// `static constexpr const char* name` when it has one, otherwise the tag's type name as the
/// compiler spells it (no RTTI involved).
///
/// phyr's lists and mappings are iterable, so <fmt/ranges.h> would also claim them and the
/// two formatters would be ambiguous. This header includes <fmt/ranges.h> itself and opts
/// phyr's list types out of fmt's range formatting (`range_format_kind` = disabled), so both
/// headers can be included in any order and phyr's shape is what prints.
#pragma once

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <concepts>
#include <cstddef>
#include <cstdint>

#include <string_view>
#include <type_traits>

#include <phyr/container/range_list.hpp>
#include <phyr/core/address.hpp>
#include <phyr/core/error.hpp>
#include <phyr/core/range.hpp>
#include <phyr/device/constraints.hpp>
#include <phyr/device/split.hpp>
#include <phyr/map/iommu/iova_reservation.hpp>
#include <phyr/map/mapper.hpp>
#include <phyr/packed/packed_list.hpp>

namespace phyr::inline v0::detail {
/// Parse step shared by every formatter: only `{}`.
struct no_spec_formatter {
  constexpr auto parse(fmt::format_parse_context& ctx) -> decltype(ctx.begin()) {
    auto it = ctx.begin();
    if (it != ctx.end() && *it != '}') ctx.on_error("phyr formatters take no format spec");
    return it;
  }
};

/// The name of type T as the compiler prints it, cut out of __PRETTY_FUNCTION__ (constexpr,
/// no RTTI). Only used for bus tags without a `name`.
template <class T>
constexpr std::string_view type_name() noexcept {
  std::string_view f = __PRETTY_FUNCTION__;
#if defined(__clang__)
  const auto b = f.find("T = ") + 4;
  const auto e = f.rfind(']');
#else
  const auto b = f.find("T = ") + 4;
  auto e = f.find(';', b);
  if (e == std::string_view::npos) e = f.rfind(']');
#endif
  std::string_view n = f.substr(b, e - b);
  // Drop a leading "{anonymous}::" / "(anonymous namespace)::" so test-local tags read well.
  for (std::string_view anon : {std::string_view{"{anonymous}::"},
                                std::string_view{"(anonymous namespace)::"}}) {
    if (n.substr(0, anon.size()) == anon) n.remove_prefix(anon.size());
  }
  return n;
}

template <class Bus>
concept named_bus = requires {
  { Bus::name } -> std::convertible_to<const char*>;
};

/// Writes a space's name: "phys", "virt", or "dma<bus>".
template <class Space, class Out>
Out format_space(Out out) {
  if constexpr (dma_address_space<Space>) {
    using bus = typename Space::bus_type;
    if constexpr (named_bus<bus>) {
      return fmt::format_to(out, "{}<{}>", Space::name, bus::name);
    } else {
      return fmt::format_to(out, "{}<{}>", Space::name, type_name<bus>());
    }
  } else {
    return fmt::format_to(out, "{}", Space::name);
  }
}

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
  out = format_space<Space>(out);
  out = fmt::format_to(out, "[{:#x}, +{:#x})", r.addr().value(), r.len());
  return format_flags(out, r.flags(), " ");
}

/// Lists print their count, bytes and the first few entries: enough to recognise a list in a
/// log without flooding it with a million entries.
inline constexpr std::size_t list_preview = 4;

template <class Out, class List>
Out format_list(Out out, const char* kind, const List& l) {
  using space = typename List::space_type;
  out = fmt::format_to(out, "{}<", kind);
  out = format_space<space>(out);
  out = fmt::format_to(out, ">{{{} entries, {:#x} bytes", l.size(), l.total_bytes());
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
/// A mapping: a DMA-space list that knows whether it is mapped (every mapper's output type).
template <class M>
concept formattable_mapping = requires(const M& m) {
  typename M::space_type;
  { m.mapped() } -> std::convertible_to<bool>;
} && dma_mapping<M, typename M::space_type>;

/// The name a phyr list prints under; null for every other type.
template <class T>
inline constexpr const char* list_kind = nullptr;
template <class R, class A>
inline constexpr const char* list_kind<range_list<R, A>> = "range_list";
template <class R>
inline constexpr const char* list_kind<range_list_view<R>> = "range_list_view";
template <class S, class A>
inline constexpr const char* list_kind<packed_list<S, A>> = "packed_list";

template <class T>
concept phyr_list = list_kind<T> != nullptr;

/// The types this header formats as lists, which fmt/ranges.h must leave alone.
template <class T>
concept phyr_list_like = phyr_list<T> || formattable_mapping<T>;

/// The enumerations that print their `to_string` name.
template <class T>
concept named_enum = std::same_as<T, errc> || std::same_as<T, dma_direction>;
}  // namespace phyr::inline v0::detail

template <class T, class Char>
struct fmt::range_format_kind<T, Char, std::enable_if_t<phyr::detail::phyr_list_like<T>>>
    : std::integral_constant<fmt::range_format, fmt::range_format::disabled> {};

template <phyr::address_space Space>
struct fmt::formatter<phyr::address<Space>> : phyr::detail::no_spec_formatter {
  template <class FormatContext>
  auto format(const phyr::address<Space>& a, FormatContext& ctx) const -> decltype(ctx.out()) {
    auto out = phyr::detail::format_space<Space>(ctx.out());
    return fmt::format_to(out, ":{:#x}", a.value());
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

/// errc and dma_direction: their to_string name.
template <phyr::detail::named_enum E>
struct fmt::formatter<E> : phyr::detail::no_spec_formatter {
  template <class FormatContext>
  auto format(E e, FormatContext& ctx) const -> decltype(ctx.out()) {
    return fmt::format_to(ctx.out(), "{}", phyr::to_string(e));
  }
};

/// range_list, range_list_view and packed_list, each under its own name.
template <phyr::detail::phyr_list L>
struct fmt::formatter<L> : phyr::detail::no_spec_formatter {
  template <class FormatContext>
  auto format(const L& l, FormatContext& ctx) const -> decltype(ctx.out()) {
    return phyr::detail::format_list(ctx.out(), phyr::detail::list_kind<L>, l);
  }
};

/// Every mapper's mapping type (identity, offset, IOMMU, P2P, bridge, ...): an unmapped one
/// prints as such rather than as an empty list.
template <phyr::detail::formattable_mapping M>
struct fmt::formatter<M> : phyr::detail::no_spec_formatter {
  template <class FormatContext>
  auto format(const M& m, FormatContext& ctx) const -> decltype(ctx.out()) {
    if (!m.mapped()) {
      auto out = fmt::format_to(ctx.out(), "mapping<");
      out = phyr::detail::format_space<typename M::space_type>(out);
      return fmt::format_to(out, ">{{unmapped}}");
    }
    return phyr::detail::format_list(ctx.out(), "mapping", m);
  }
};

/// Device limits: every field, with "none" for the ones at their no-limit value, so a log
/// line shows exactly what a device asked for.
template <>
struct fmt::formatter<phyr::dma_constraints> : phyr::detail::no_spec_formatter {
  template <class FormatContext>
  auto format(const phyr::dma_constraints& c, FormatContext& ctx) const -> decltype(ctx.out()) {
    constexpr std::uint64_t none = ~std::uint64_t{0};
    auto field = [](auto out, const char* name, std::uint64_t v, std::uint64_t unlimited) {
      return v == unlimited ? fmt::format_to(out, "{} none", name)
                            : fmt::format_to(out, "{} {:#x}", name, v);
    };
    auto out = fmt::format_to(ctx.out(), "dma_constraints{{");
    out = field(out, "max_segment", c.max_segment_size, none);
    out = field(fmt::format_to(out, ", "), "boundary", c.segment_boundary_mask, none);
    out = fmt::format_to(out, ", alignment {:#x}", c.alignment);
    out = field(fmt::format_to(out, ", "), "virt_boundary", c.virt_boundary_mask, 0);
    out = field(fmt::format_to(out, ", "), "dma_mask", c.dma_mask, none);
    out = field(fmt::format_to(out, ", "), "max_segments", c.max_segments, none);
    out = field(fmt::format_to(out, ", "), "max_total", c.max_total_bytes, none);
    out = fmt::format_to(out, ", transfer_unit {:#x}", c.min_transfer_unit);
    if (!c.excluded.empty()) {
      out = fmt::format_to(out, ", excluded");
      for (const phyr::address_window& w : c.excluded)
        out = fmt::format_to(out, " [{:#x}, +{:#x})", w.addr, w.len);
    }
    return fmt::format_to(out, "}}");
  }
};

template <>
struct fmt::formatter<phyr::checked_constraints> : fmt::formatter<phyr::dma_constraints> {
  template <class FormatContext>
  auto format(const phyr::checked_constraints& c, FormatContext& ctx) const
      -> decltype(ctx.out()) {
    return fmt::formatter<phyr::dma_constraints>::format(c.get(), ctx);
  }
};

/// What try_plan_split found; the gap part only when there are gaps.
template <>
struct fmt::formatter<phyr::split_plan> : phyr::detail::no_spec_formatter {
  template <class FormatContext>
  auto format(const phyr::split_plan& p, FormatContext& ctx) const -> decltype(ctx.out()) {
    auto out = fmt::format_to(ctx.out(), "split_plan{{{} entries, {} segments, {:#x} bytes",
                              p.entries, p.segments, p.bytes);
    if (p.gaps != 0)
      out = fmt::format_to(out, ", {} gaps from entry {} (bounce needed)", p.gaps, p.first_gap);
    return fmt::format_to(out, "}}");
  }
};

/// A reservation: its DMA range (the bus is named) and how much is linked; an empty one
/// (default-built, moved from or reset) says so.
template <class Bus, class Backend, class Alloc>
struct fmt::formatter<phyr::iova_reservation<Bus, Backend, Alloc>>
    : phyr::detail::no_spec_formatter {
  template <class FormatContext>
  auto format(const phyr::iova_reservation<Bus, Backend, Alloc>& r, FormatContext& ctx) const
      -> decltype(ctx.out()) {
    auto out = fmt::format_to(ctx.out(), "iova_reservation<");
    out = phyr::detail::format_space<phyr::dma_space<Bus>>(out);
    if (!r.reserved()) return fmt::format_to(out, ">{{released}}");
    out = fmt::format_to(out, ">{{[{:#x}, +{:#x}), {} pages linked{}}}", r.addr().value(),
                         r.len(), r.linked_pages(), r.needs_sync() ? ", sync pending" : "");
    return out;
  }
};

