#!/usr/bin/env python3
"""Turn phyr_bench's Google Benchmark JSON into a comparison a driver engineer can act on.

    python3 bench/report.py build/bench/bench/results.json --out-dir build/bench/bench

Prints Markdown to stdout (also written to <out-dir>/report.md): one table per workload with
each phyr implementation against its scatterlist twin and the memcpy floor, a memory table,
and the issue #5 targets with MET / NOT MET and the numbers behind each verdict. Writes
<out-dir>/report.svg: ns per page and bytes per page, log scale. Python 3 standard library
only. Exits 1 when a benchmark reported an error (a broken build must not look fast), else 0.

Naming convention (bench/workloads.hpp defines it; keep the two in sync):

    <op>/<workload>/<size>/<impl>

    op        build, walk, blocks4k, blocks64k, map, unmap, map_iommu, unmap_iommu, memory, ...
    workload  frag, contig, 2m, 1g, dio512, trace_4k, trace_thp, ...
    size      16MiB, 1GiB, 8GiB, 256MiB, or an entry count (1entry, 1e6entries)
    impl      phyr_<name>  a phyr implementation (phyr_range_list, phyr_packed, phyr_identity, ...)
              scatterlist  the baseline twin of every phyr row with the same op/workload/size
              memcpy       memcpy of the input; build/<workload>/<size>/memcpy is the floor shown
                           for every op of that workload and size

Google Benchmark appends /min_time:..., /repeats:..., /iterations:... to names; those parts are
ignored. With repetitions the median aggregate is used; without, the median of the runs.

Columns: ns/page is CPU ns per 4 KiB page of data (cpu_time / the `pages` counter, else the
`ns_per_page` counter); speedup = scatterlist time / phyr time (above 1: phyr is faster);
x floor = phyr time / memcpy time (how far from copying the input once). Counters read:
pages, entries, bytes_per_page, cpu_bytes_per_page, dma_bytes_per_page, total_bytes_per_page,
entry_bytes_per_page (memory rows: the entries alone).
Rows whose names do not follow the convention are listed under "Other benchmarks".
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import sys
from dataclasses import dataclass, field

BASELINE = "scatterlist"
FLOOR = "memcpy"
WORKLOAD_ORDER = ["frag", "contig", "2m", "1g", "dio512", "trace_4k", "trace_thp"]
WORKLOAD_TITLE = {
    "frag": "fully fragmented 4 KiB pages",
    "contig": "fully contiguous",
    "2m": "2 MiB runs, aligned",
    "1g": "1 GiB hugepages",
    "dio512": "512-byte direct-I/O chunks",
    "trace_4k": "real trace, 256 MiB anonymous mmap, 4 KiB pages",
    "trace_thp": "real trace, 256 MiB anonymous mmap, transparent hugepages",
}
OP_ORDER = ["build", "walk", "blocks4k", "blocks64k", "map", "unmap", "map_iommu",
            "unmap_iommu", "memory"]
TIME_TO_NS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}
GB_SUFFIX = re.compile(r"^(min_time|min_warmup_time|repeats|iterations|threads|real_time|"
                       r"manual_time|process_time)(:.*)?$")


@dataclass
class Row:
    name: str                      # convention name without Google Benchmark's suffixes
    cpu_ns: float | None = None    # CPU ns per iteration
    real_ns: float | None = None
    counters: dict = field(default_factory=dict)
    error: str | None = None

    @property
    def parts(self):
        p = self.name.split("/")
        return p if len(p) == 4 else None

    def counter(self, key):
        v = self.counters.get(key)
        return v if isinstance(v, (int, float)) and math.isfinite(v) else None

    @property
    def ns_per_page(self):
        pages = self.counter("pages")
        if self.cpu_ns is not None and pages:
            return self.cpu_ns / pages
        return self.counter("ns_per_page")


def base_name(run_name: str) -> str:
    return "/".join(p for p in run_name.split("/") if not GB_SUFFIX.match(p))


def size_key(size: str):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(KiB|MiB|GiB)", size)
    if m:
        return (0, float(m.group(1)) * {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}[m.group(2)])
    m = re.fullmatch(r"(\d+(?:e\d+)?)entr(y|ies)", size)
    if m:
        return (1, float(m.group(1)))
    return (2, size)


def load(path: str):
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    groups: dict[str, dict] = {}
    order: list[str] = []
    for b in data.get("benchmarks", []):
        name = base_name(b.get("run_name", b.get("name", "")))
        g = groups.get(name)
        if g is None:
            g = groups[name] = {"median": None, "runs": [], "error": None}
            order.append(name)
        if b.get("error_occurred"):
            g["error"] = b.get("error_message", "error")
            continue
        if b.get("run_type") == "aggregate":
            if b.get("aggregate_name") == "median":
                g["median"] = b
        else:
            g["runs"].append(b)
    rows: dict[str, Row] = {}
    for name in order:
        g = groups[name]
        row = Row(name)
        if g["error"]:
            row.error = g["error"]
        src = [g["median"]] if g["median"] else g["runs"]
        if src:
            scale = TIME_TO_NS.get(src[0].get("time_unit", "ns"), 1.0)
            row.cpu_ns = statistics.median(s["cpu_time"] for s in src) * scale
            row.real_ns = statistics.median(s["real_time"] for s in src) * scale
            known = {"name", "run_name", "run_type", "family_index", "per_family_instance_index",
                     "repetitions", "repetition_index", "threads", "iterations", "real_time",
                     "cpu_time", "time_unit", "aggregate_name", "aggregate_unit", "label",
                     "error_occurred", "error_message"}
            keys = {k for s in src for k in s if k not in known}
            for k in keys:
                vals = [s[k] for s in src if isinstance(s.get(k), (int, float))]
                if vals:
                    row.counters[k] = statistics.median(vals)
        elif not row.error:
            row.error = "no measurements"
        rows[name] = row
    return data.get("context", {}), rows


# ---- formatting --------------------------------------------------------------------------------

def fmt_num(v, digits=3):
    if v is None:
        return "—"
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e5 or a < 1e-3:
        return f"{v:.2e}"
    if a >= 100:
        return f"{v:.0f}"
    return f"{v:.{digits}g}"


def fmt_ratio(v):
    if v is None:
        return "—"
    if v >= 1e5:
        return f"{v:.1e}x"
    if v >= 100:
        return f"{v:.0f}x"
    return f"{v:.2f}x"


def fmt_time(ns):
    if ns is None:
        return "—"
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def fmt_count(v):
    if v is None:
        return "—"
    v = float(v)
    if v >= 1e6:
        return f"{v / 1e6:.3g}M"
    if v >= 1e4:
        return f"{v / 1e3:.4g}k"
    return f"{v:.0f}"


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


# ---- the report --------------------------------------------------------------------------------

class Report:
    def __init__(self, context, rows):
        self.context = context
        self.rows = rows
        self.by_key: dict[tuple, Row] = {}
        self.other: list[Row] = []
        for r in rows.values():
            if r.parts:
                self.by_key[tuple(r.parts)] = r
        # A conventional row goes in the comparison tables when its op is one of the issue's
        # operations or it has a scatterlist twin; everything else is listed under "Other".
        ops_with_twin = {(k[0], k[1], k[2]) for k in self.by_key if k[3] == BASELINE}
        for r in rows.values():
            k = tuple(r.parts) if r.parts else None
            if k is None or (k[0] not in OP_ORDER and k[:3] not in ops_with_twin):
                self.other.append(r)
        self.in_tables = {k for k, r in self.by_key.items() if r not in self.other}

    def get(self, op, wl, size, impl):
        r = self.by_key.get((op, wl, size, impl))
        return r if r is not None and r.error is None else None

    def floor(self, wl, size):
        return self.get("build", wl, size, FLOOR)

    def workloads(self):
        seen = {k[1] for k in self.by_key}
        return [w for w in WORKLOAD_ORDER if w in seen] + sorted(seen - set(WORKLOAD_ORDER))

    def phyr_keys(self, wl):
        keys = [k for k in self.in_tables if k[1] == wl and k[3].startswith("phyr_") and
                k[0] != "memory"]
        op_rank = {o: i for i, o in enumerate(OP_ORDER)}
        return sorted(keys, key=lambda k: (op_rank.get(k[0], 99), k[0], size_key(k[2]), k[3]))

    def speedup(self, phyr, base):
        if phyr is None or base is None or not phyr.cpu_ns or base.cpu_ns is None:
            return None
        return base.cpu_ns / phyr.cpu_ns

    # -- sections --
    def header(self):
        c = self.context
        lines = ["# phyr vs scatterlist", ""]
        lines.append(
            f"Run {c.get('date', '?')} on {c.get('host_name', '?')}: {c.get('num_cpus', '?')} CPUs "
            f"at {c.get('mhz_per_cpu', '?')} MHz, load average "
            f"{', '.join(f'{x:.2f}' for x in c.get('load_avg', [])) or '?'}"
            f" (Google Benchmark library built as {c.get('library_build_type', '?')}).")
        lines.append("")
        lines.append(
            "Baseline: `scatterlist` = compat/scatterlist.hpp, the kernel's 32-byte entries in "
            "chained arrays of 128, built by sg_alloc_table_from_pages_segment and mapped by "
            "dma_direct_map_sg. Times are CPU time, the median of the repetitions. "
            "**speedup** = scatterlist time / phyr time (above 1: phyr is faster); "
            "**x floor** = phyr time / memcpy of the input (the page-frame array).")
        return "\n".join(lines)

    def workload_tables(self):
        out = []
        for wl in self.workloads():
            keys = self.phyr_keys(wl)
            if not keys:
                continue
            body = []
            for op, _, size, impl in keys:
                p = self.by_key[(op, wl, size, impl)]
                if p.error:
                    body.append([op, size, impl, "ERROR: " + p.error] + [""] * 9)
                    continue
                b = self.get(op, wl, size, BASELINE)
                f = self.floor(wl, size)
                body.append([
                    op, size, impl,
                    fmt_num(p.ns_per_page), fmt_time(p.cpu_ns),
                    BASELINE if b else "(no twin)",
                    fmt_num(b.ns_per_page) if b else "—",
                    fmt_ratio(self.speedup(p, b)),
                    fmt_num(f.ns_per_page) if f else "—",
                    fmt_ratio(p.cpu_ns / f.cpu_ns) if f and f.cpu_ns and p.cpu_ns else "—",
                    f"{fmt_count(p.counter('entries'))} / "
                    f"{fmt_count(b.counter('entries')) if b else '—'}",
                    f"{fmt_num(p.counter('bytes_per_page'))} / "
                    f"{fmt_num(b.counter('bytes_per_page')) if b else '—'}",
                ])
            out.append(f"## {wl}: {WORKLOAD_TITLE.get(wl, wl)}\n")
            out.append(table(["op", "size", "phyr", "phyr ns/page", "phyr time/op", "baseline",
                              "baseline ns/page", "speedup vs scatterlist", "memcpy ns/page",
                              "phyr x floor", "entries phyr / scatterlist",
                              "bytes/page phyr / scatterlist"], body))
            out.append("")
        return "\n".join(out)

    def memory_table(self):
        keys = sorted((k for k in self.by_key if k[0] == "memory"),
                      key=lambda k: (WORKLOAD_ORDER.index(k[1]) if k[1] in WORKLOAD_ORDER else 99,
                                     size_key(k[2]), k[3] != BASELINE, k[3]))
        if not keys:
            return ""
        body = []
        for _, wl, size, impl in keys:
            r = self.by_key[("memory", wl, size, impl)]
            if r.error:
                body.append([wl, size, impl, "ERROR: " + r.error, "", "", "", "", ""])
                continue
            b = self.get("memory", wl, size, BASELINE)
            tot = r.counter("total_bytes_per_page")
            btot = b.counter("total_bytes_per_page") if b else None
            ratio = btot / tot if impl != BASELINE and tot and btot is not None else None
            if impl == BASELINE:
                verdict = "(the baseline)"
            elif ratio is None:
                verdict = "—"
            elif ratio >= 1:
                verdict = f"{fmt_ratio(ratio)} smaller than {BASELINE}"
            else:
                verdict = f"{fmt_ratio(1 / ratio)} larger than {BASELINE}"
            body.append([wl, size, impl, fmt_num(r.counter("cpu_bytes_per_page")),
                         fmt_num(r.counter("dma_bytes_per_page")), fmt_num(tot),
                         fmt_num(r.counter("entry_bytes_per_page")),
                         fmt_count(r.counter("entries")), verdict])
        return ("## Memory: bytes per 4 KiB page after an identity map\n\n"
                "CPU list, DMA list, and both, everything counted (segment headers, slack, the "
                "list object). The scatterlist keeps both halves in one 32-byte entry: 16 bytes "
                "each. An identity mapping aliases the CPU range_list, so its DMA list is the "
                "mapping object alone; identity_mapper takes range_lists only, and with no IOMMU "
                "a packed_list is itself what the device is given (its blocks() are DMA "
                "addresses), so phyr_packed counts no DMA bytes. Small lists are dominated by "
                "fixed costs (the range_list object holds two entries inline; its heap segments "
                "are 4 KiB).\n\n" +
                table(["workload", "size", "impl", "CPU B/page", "DMA B/page", "total B/page",
                       "of which entries", "entries", "vs scatterlist"], body) + "\n")

    def other_table(self):
        if not self.other:
            return ""
        body = []
        shown = {"ns_per_page", "pages", "entries", "bytes_per_page"}
        for r in self.other:
            extra = ", ".join(f"{k}={fmt_num(v)}" for k, v in sorted(r.counters.items())
                              if k not in shown and isinstance(v, (int, float)))
            body.append([f"`{r.name}`", "ERROR: " + r.error if r.error else fmt_time(r.cpu_ns),
                         fmt_num(r.ns_per_page), fmt_count(r.counter("entries")),
                         fmt_num(r.counter("bytes_per_page")), extra or "—"])
        return ("## Other benchmarks (area checks, and rows without a scatterlist twin)\n\n" +
                table(["benchmark", "CPU time/op", "ns/page", "entries", "bytes/page",
                       "other counters"], body) + "\n")

    def errors(self):
        return [r for r in self.rows.values() if r.error]

    # -- targets --
    def targets(self):
        res = []  # (target, verdict, evidence)

        def verdict(ok):
            return "NOT MEASURED" if ok is None else ("MET" if ok else "NOT MET")

        # 1. memory
        m = {impl: self.get("memory", "frag", "1GiB", impl)
             for impl in ("phyr_packed", "phyr_range_list", BASELINE)}
        tot = {k: (v.counter("total_bytes_per_page") if v else None) for k, v in m.items()}
        limits = {"phyr_packed": ("<=", 8.0), "phyr_range_list": ("<=", 16.0), BASELINE: (">=", 32.0)}
        for impl, (op, lim) in limits.items():
            v = tot[impl]
            ok = None if v is None else (v <= lim if op == "<=" else v >= lim)
            e = m[impl].counter("entry_bytes_per_page") if m[impl] else None
            detail = f"{fmt_num(v)} B/page"
            if e is not None and v is not None:
                detail += (f" ({fmt_num(e)} in entries + {fmt_num(v - e)} of segment headers, "
                           f"slack and list object)")
            res.append((f"bytes/page CPU+DMA, identity map, frag 1GiB: {impl} {op} {lim:g}",
                        verdict(ok), detail))
        if tot["phyr_packed"] and tot[BASELINE]:
            r = tot[BASELINE] / tot["phyr_packed"]
            res.append(("bytes/page: phyr packed >= 4x better than scatterlist", verdict(r >= 4),
                        f"{fmt_ratio(r)} ({fmt_num(tot[BASELINE])} vs {fmt_num(tot['phyr_packed'])})"))
        else:
            res.append(("bytes/page: phyr packed >= 4x better than scatterlist", verdict(None),
                        "no memory/frag/1GiB/phyr_packed row"))

        # 2. build
        def build_rows(wl, impls=("phyr_range_list", "phyr_packed")):
            out = []
            for k in sorted((k for k in self.by_key if k[0] == "build" and k[1] == wl and
                             k[3] in impls), key=lambda k: (size_key(k[2]), k[3])):
                p = self.get(*k)
                b = self.get("build", wl, k[2], BASELINE)
                f = self.floor(wl, k[2])
                out.append((k, p, b, f))
            return out

        for impl in ("phyr_range_list", "phyr_packed"):
            rows = [x for x in build_rows("frag", (impl,)) if x[1] and x[2]]
            if rows:
                sp = [(x[0][2], self.speedup(x[1], x[2])) for x in rows]
                ok = all(s >= 3 for _, s in sp)
                res.append((f"build frag: {impl} >= 3x faster than scatterlist", verdict(ok),
                            ", ".join(f"{s}: {fmt_ratio(v)}" for s, v in sp)))
                fl = [(x[0][2], x[1].cpu_ns / x[3].cpu_ns) for x in rows if x[3] and x[3].cpu_ns]
                ok = all(v <= 4 for _, v in fl) if fl else None
                res.append((f"build frag: {impl} within 4x of memcpy", verdict(ok),
                            ", ".join(f"{s}: {fmt_ratio(v)} of memcpy" for s, v in fl)))
            else:
                res.append((f"build frag: {impl} >= 3x faster than scatterlist", verdict(None),
                            "no rows"))
            for wl in ("contig", "1g"):
                rows = [x for x in build_rows(wl, (impl,)) if x[1] and x[2]]
                sp = [(x[0][2], self.speedup(x[1], x[2])) for x in rows]
                ok = all(s >= 10 for _, s in sp) if sp else None
                res.append((f"build {wl}: {impl} >= 10x faster than scatterlist", verdict(ok),
                            ", ".join(f"{s}: {fmt_ratio(v)}" for s, v in sp) or "no rows"))

        # 3. identity map
        one = self.get("map", "frag", "1entry", "phyr_identity")
        mil = self.get("map", "frag", "1e6entries", "phyr_identity")
        if one and mil and one.cpu_ns and mil.cpu_ns:
            r = max(one.cpu_ns, mil.cpu_ns) / min(one.cpu_ns, mil.cpu_ns)
            res.append(("identity map O(1): 1 and 1e6 entries within 2x", verdict(r <= 2),
                        f"{fmt_time(one.cpu_ns)} vs {fmt_time(mil.cpu_ns)} per map ({r:.2f}x apart)"))
        else:
            res.append(("identity map O(1): 1 and 1e6 entries within 2x", verdict(None), "no rows"))
        p = self.get("map", "frag", "1GiB", "phyr_identity")
        b = self.get("map", "frag", "1GiB", BASELINE)
        s = self.speedup(p, b)
        res.append(("identity map >= 100x faster than scatterlist dma fill, frag 1GiB",
                    verdict(None if s is None else s >= 100),
                    f"{fmt_time(p.cpu_ns) if p else '—'} vs {fmt_time(b.cpu_ns) if b else '—'}: "
                    f"{fmt_ratio(s)}"))

        # 4. walk (rows where the baseline walks at least 1000 entries)
        for impl in ("phyr_range_list", "phyr_packed"):
            sp = []
            for k in sorted((k for k in self.by_key if k[0] == "walk" and k[3] == impl),
                            key=lambda k: (WORKLOAD_ORDER.index(k[1]) if k[1] in WORKLOAD_ORDER
                                           else 99, size_key(k[2]))):
                p, b = self.get(*k), self.get("walk", k[1], k[2], BASELINE)
                if p and b and (b.counter("entries") or 0) >= 1000:
                    sp.append((f"{k[1]} {k[2]}", self.speedup(p, b)))
            ok = all(v >= 2 for _, v in sp) if sp else None
            res.append((f"walk: {impl} >= 2x faster than for_each_sg (lists of >= 1000 entries)",
                        verdict(ok), ", ".join(f"{n}: {fmt_ratio(v)}" for n, v in sp) or "no rows"))
        return res

    def targets_section(self):
        t = self.targets()
        met = sum(1 for _, v, _ in t if v == "MET")
        unmet = sum(1 for _, v, _ in t if v == "NOT MET")
        none = len(t) - met - unmet
        return (f"## Targets (issue #5): {met} met, {unmet} not met"
                f"{f', {none} not measured' if none else ''}\n\n" +
                table(["target", "verdict", "measured"], [[a, f"**{v}**", e] for a, v, e in t]) +
                "\n")

    def missing(self):
        seen = {k[1] for k in self.by_key}
        gone = [w for w in WORKLOAD_ORDER if w not in seen]
        if not gone:
            return ""
        return ("Workloads with no results: " + ", ".join(gone) +
                ".\n")

    def markdown(self):
        parts = [self.header(), "", self.missing(), self.targets_section(), self.workload_tables(),
                 self.memory_table(), self.other_table()]
        errs = self.errors()
        if errs:
            parts.append("## Errors\n\n" + "\n".join(f"- `{r.name}`: {r.error}" for r in errs) +
                         "\n")
        return "\n".join(p for p in parts if p is not None) + "\n"


# ---- SVG ---------------------------------------------------------------------------------------

COLORS = {"scatterlist": "#d95f02", "memcpy": "#8c8c8c", "phyr_range_list": "#1b63b5",
          "phyr_packed": "#1b9e77"}
EXTRA_COLORS = ["#7570b3", "#e7298a", "#66a61e", "#17becf", "#e6ab02", "#3b3b6d", "#b15928"]


def esc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def color_for(impl, palette):
    if impl in COLORS:
        return COLORS[impl]
    if impl not in palette:
        palette[impl] = EXTRA_COLORS[len(palette) % len(EXTRA_COLORS)]
    return palette[impl]


def bar_panel(title, groups, x0, y0, width, palette, unit):
    """groups: [(label, [(impl, value)])]; log-scale horizontal bars. Returns (svg, height)."""
    vals = [v for _, bars in groups for _, v in bars if v and v > 0]
    if not vals:
        return "", 0
    lo = math.floor(math.log10(min(vals)))
    hi = math.ceil(math.log10(max(vals)))
    if hi == lo:
        hi += 1
    label_w, bar_h, gap = 250, 9, 8
    plot_w = width - label_w - 90
    def xpos(v):
        return x0 + label_w + (math.log10(v) - lo) / (hi - lo) * plot_w
    out = [f'<text x="{x0}" y="{y0 + 16}" font-size="15" font-weight="bold">{esc(title)}</text>']
    y = y0 + 40
    top = y
    for label, bars in groups:
        gh = max(1, len(bars)) * bar_h
        out.append(f'<text x="{x0 + label_w - 6}" y="{y + gh / 2 + 4}" font-size="11" '
                   f'text-anchor="end">{esc(label)}</text>')
        for impl, v in bars:
            c = color_for(impl, palette)
            if v and v > 0:
                w = max(1.0, xpos(v) - (x0 + label_w))
                out.append(f'<rect x="{x0 + label_w}" y="{y}" width="{w:.1f}" height="{bar_h - 1}" '
                           f'fill="{c}"><title>{esc(impl)}: {fmt_num(v)} {unit}</title></rect>')
                out.append(f'<text x="{x0 + label_w + w + 3:.1f}" y="{y + bar_h - 1.5}" '
                           f'font-size="8" fill="#333">{fmt_num(v)}</text>')
            y += bar_h
        y += gap
    bottom = y
    for e in range(lo, hi + 1):
        x = x0 + label_w + (e - lo) / (hi - lo) * plot_w
        out.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{bottom}" '
                   f'stroke="#ccc" stroke-width="0.7"/>')
        out.append(f'<text x="{x:.1f}" y="{top - 8}" font-size="10" text-anchor="middle">'
                   f'1e{e}</text>')
    out.append(f'<text x="{x0 + label_w + plot_w / 2}" y="{bottom + 16}" font-size="11" '
               f'text-anchor="middle">{esc(unit)} (log scale)</text>')
    return "\n".join(out), bottom + 24 - y0


def svg(report: Report):
    palette: dict[str, str] = {}
    big = {"1GiB", "256MiB"}
    op_rank = {o: i for i, o in enumerate(OP_ORDER)}
    # ns/page: every op at the 1 GiB size (the traces at their own size).
    keys = {(k[0], k[1], k[2]) for k in report.in_tables if k[2] in big and k[0] != "memory"}
    def wl_rank(w):
        return WORKLOAD_ORDER.index(w) if w in WORKLOAD_ORDER else 99
    time_groups = []
    for op, wl, size in sorted(keys, key=lambda k: (op_rank.get(k[0], 99), k[0], wl_rank(k[1]))):
        bars = []
        impls = sorted({k[3] for k in report.in_tables if k[:3] == (op, wl, size)},
                       key=lambda i: (i == FLOOR, i == BASELINE, i))
        for impl in impls:
            r = report.get(op, wl, size, impl)
            if r and impl != FLOOR:
                bars.append((impl, r.ns_per_page))
        if op == "build":
            f = report.floor(wl, size)
            if f:
                bars.append((FLOOR, f.ns_per_page))
        if any(impl.startswith("phyr_") for impl, _ in bars):
            time_groups.append((f"{op} {wl} {size}", bars))
    mem_groups = []
    for k in sorted({(k[1], k[2]) for k in report.by_key if k[0] == "memory"},
                    key=lambda k: (wl_rank(k[0]), size_key(k[1]))):
        bars = []
        for impl in sorted({x[3] for x in report.by_key if x[0] == "memory" and x[1:3] == k},
                           key=lambda i: (i == BASELINE, i)):
            r = report.get("memory", k[0], k[1], impl)
            if r:
                bars.append((impl, r.counter("total_bytes_per_page")))
        mem_groups.append((f"{k[0]} {k[1]}", bars))

    width = 900
    body = []
    y = 10
    s, h = bar_panel("Bytes per 4 KiB page, CPU + DMA list, after an identity map", mem_groups,
                     10, y, width, palette, "bytes/page")
    body.append(s)
    y += h + 20
    s, h = bar_panel("CPU ns per 4 KiB page (1 GiB inputs; traces 256 MiB)", time_groups, 10, y,
                     width, palette, "ns/page")
    body.append(s)
    y += h + 10
    legend = list(COLORS) + list(palette)
    lx = 10
    for impl in legend:
        c = color_for(impl, palette)
        w = 30 + 7 * len(impl)
        if lx + w > width - 10:
            lx = 10
            y += 18
        body.append(f'<rect x="{lx}" y="{y}" width="12" height="12" fill="{c}"/>'
                    f'<text x="{lx + 16}" y="{y + 10}" font-size="11">{esc(impl)}</text>')
        lx += w
    y += 24
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y}" '
            f'viewBox="0 0 {width} {y}" font-family="sans-serif">\n'
            f'<rect width="100%" height="100%" fill="white"/>\n' + "\n".join(body) + "\n</svg>\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", help="Google Benchmark JSON (--benchmark_out)")
    ap.add_argument("--out-dir", help="where report.md and report.svg go (default: beside the "
                                      "results file)")
    args = ap.parse_args(argv)
    try:
        context, rows = load(args.results)
    except (OSError, ValueError) as e:
        print(f"report.py: cannot read {args.results}: {e}", file=sys.stderr)
        return 2
    out_dir = args.out_dir or os.path.dirname(os.path.abspath(args.results))
    os.makedirs(out_dir, exist_ok=True)
    rep = Report(context, rows)
    md = rep.markdown()
    with open(os.path.join(out_dir, "report.md"), "w", encoding="utf-8") as f:
        f.write(md)
    with open(os.path.join(out_dir, "report.svg"), "w", encoding="utf-8") as f:
        f.write(svg(rep))
    sys.stdout.write(md)
    print(f"\n(written: {os.path.join(out_dir, 'report.md')}, "
          f"{os.path.join(out_dir, 'report.svg')})")
    errs = rep.errors()
    if errs:
        print(f"report.py: {len(errs)} benchmark(s) reported an error", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
