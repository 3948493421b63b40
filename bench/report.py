#!/usr/bin/env python3
"""Turn phyr_bench's Google Benchmark JSON into a comparison a driver engineer can act on.

    python3 bench/report.py build/bench/bench/results.json --out-dir build/bench/bench

Prints Markdown to stdout (also written to <out-dir>/report.md): a headline paragraph in plain
words (what phyr is faster or smaller at, by how much, against what, on which machine), the
targets (one declarative table, TARGETS below: each with its reason, the measured value and
MET / NOT MET), the per-I/O path, one table per workload with each phyr implementation against
its scatterlist twin and the memcpy floor, a memory table, and every other row. Writes
<out-dir>/report.svg (bench/report_svg.py): speedup vs scatterlist per operation and workload,
and bytes per page. Python 3 standard library only. Exits 1 when a benchmark reported an error
(a broken build must not look fast), else 0.

Naming convention (bench/workloads.hpp defines it; keep the two in sync):

    <op>/<workload>/<size>/<impl>

    op        io, build, walk, blocks4k, blocks64k, map, unmap, map_iommu, unmap_iommu, memory, ...
    workload  frag, contig, 2m, 1g, dio512, trace_4k, trace_thp, ...
    size      4KiB..1MiB (io), 16MiB, 1GiB, 8GiB, 256MiB, or an entry count (1entry, 1e6entries)
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

Paired rows (io_paired/..., build_limited_paired/...; workloads.hpp's time_paired) time two
sides in alternation, batch against batch, and carry the median of the batches' ratios as a
counter: the per-I/O and limited-build targets are judged on those ratios when the run has
them, since on a shared machine two rows timed seconds apart can differ by more than the
margin a target tests. iova_paired/... rows (iova_bench.cpp's time_scaling) do the same for
one thread against two, and the thread-scaling targets are judged on them. Their own times are
not used; they are listed under "Other benchmarks".
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

from report_svg import fmt_magnitude, svg

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
OP_ORDER = ["io", "build", "walk", "blocks4k", "blocks64k", "map", "unmap", "map_iommu",
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
    """The run's name without Google Benchmark's suffixes, except `threads:N` for N > 1: the
    rows of one benchmark run with 1 and 2 threads are different measurements."""
    return "/".join(p for p in run_name.split("/")
                    if not GB_SUFFIX.match(p) or (p.startswith("threads:") and p != "threads:1"))


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


# ---- targets: one declarative table ------------------------------------------------------------
# Each row: what is promised, why that number, the metric that measures it (a function of METRICS
# with its arguments), and the comparison. The report evaluates every row on every run.

@dataclass(frozen=True)
class Target:
    name: str
    reason: str
    metric: str
    args: tuple
    op: str
    limit: float


PAGE_SIZES = ("16MiB", "1GiB", "8GiB")
TARGETS = [
    Target("bytes/page CPU+DMA after an identity map, frag 1GiB: phyr_packed <= 8",
           "issue 5: one 8-byte packed word per isolated page is the encoding's worst case",
           "mem_total", ("frag", "1GiB", "phyr_packed"), "<=", 8),
    Target("bytes/page CPU+DMA after an identity map, frag 1GiB: phyr_range_list <= 16",
           "issue 5: one 16-byte phys_range per run, and the identity map adds nothing",
           "mem_total", ("frag", "1GiB", "phyr_range_list"), "<=", 16),
    Target("bytes/page CPU+DMA after an identity map, frag 1GiB: scatterlist >= 32",
           "a check on the baseline: the kernel's entry is 32 bytes (CPU and DMA halves)",
           "mem_total", ("frag", "1GiB", BASELINE), ">=", 32),
    Target("bytes/page: phyr_packed >= 4x smaller than scatterlist, frag 1GiB",
           "issue 5: 8 bytes against 32 per fragmented page",
           "mem_ratio", ("frag", "1GiB", "phyr_packed"), ">=", 4),
    Target("bytes/page: phyr_range_list within 1.1x of scatterlist on every list of >= 3 entries",
           "issue 14 item 2: short lists must not pay a whole 4 KiB segment",
           "mem_within", ("phyr_range_list", 3), "<=", 1.1),
    Target("build frag: phyr_range_list >= 3x faster than scatterlist",
           "issue 5: one 16-byte store per page against the kernel's 32-byte entry and two "
           "passes", "speedups", ("build", "frag", PAGE_SIZES, "phyr_range_list", 0), ">=", 3),
    Target("build frag: phyr_packed >= 3x faster than scatterlist",
           "issue 5: as above, with 8-byte words", "speedups",
           ("build", "frag", PAGE_SIZES, "phyr_packed", 0), ">=", 3),
    Target("build frag: phyr_range_list within 4x of memcpy of the frames",
           "issue 5: building should cost little more than reading the input once",
           "floor_ratio", ("build", "frag", PAGE_SIZES, "phyr_range_list"), "<=", 4),
    Target("build frag: phyr_packed within 4x of memcpy of the frames",
           "issue 5: as above", "floor_ratio", ("build", "frag", PAGE_SIZES, "phyr_packed"),
           "<=", 4),
    Target("build contig: phyr_range_list >= 10x faster than scatterlist",
           "issue 5: one entry for the whole input against the kernel's per-page merge test",
           "speedups", ("build", "contig", PAGE_SIZES, "phyr_range_list", 0), ">=", 10),
    Target("build contig: phyr_packed >= 10x faster than scatterlist", "issue 5: as above",
           "speedups", ("build", "contig", PAGE_SIZES, "phyr_packed", 0), ">=", 10),
    Target("build 1g: phyr_range_list >= 10x faster than scatterlist", "issue 5: as above",
           "speedups", ("build", "1g", PAGE_SIZES, "phyr_range_list", 0), ">=", 10),
    Target("build 1g: phyr_packed >= 10x faster than scatterlist", "issue 5: as above",
           "speedups", ("build", "1g", PAGE_SIZES, "phyr_packed", 0), ">=", 10),
    Target("identity map O(1): 1 and 1e6 entries within 2x",
           "issue 4: the mapping aliases the CPU list, whatever its length", "o1", (), "<=", 2),
    Target("identity map >= 100x faster than dma_direct_map_sg, frag 1GiB",
           "issue 4: O(1) against a write to every entry", "speedups",
           ("map", "frag", ("1GiB",), "phyr_identity", 0), ">=", 100),
    Target("walk: phyr_range_list >= 2x faster than for_each_sg (lists of >= 1000 entries)",
           "issue 5: 16-byte entries in 4 KiB segments against 32-byte entries and a chain test",
           "speedups", ("walk", None, None, "phyr_range_list", 1000), ">=", 2),
    Target("walk: phyr_packed >= 2x faster than for_each_sg on every workload",
           "issue 14 item 2: the packed decode must not lose to the kernel walk on short lists",
           "speedups", ("walk", None, None, "phyr_packed", 0), ">=", 2),
    Target("build under a 64 KiB max_segment (alone, and with a 4 GiB boundary), frag: "
           "phyr_range_list >= 3x faster than scatterlist with the same max_segment",
           "issue 14 item 1: most devices set a segment limit (64 KiB is the kernel's default "
           "dma_get_max_seg_size), so the limited build is the normal case",
           "limited_speedups", (("frag",),), ">=", 3),
    Target("build under a 64 KiB max_segment (alone, and with a 4 GiB boundary), frag: "
           "within 1.3x of the unlimited build",
           "issue 14 item 1: a limit must not take range_list off its fast path (a single page "
           "is one entry whatever the limits); judged on the paired rows, both builds timed in "
           "alternation",
           "limited_vs_unlimited", ("frag",), "<=", 1.3),
    Target("build under a 64 KiB max_segment (alone, and with a 4 GiB boundary), contig and 2m: "
           "phyr_range_list >= 2.5x faster than scatterlist with the same max_segment",
           "issue 14 item 1: long runs are cut into max_segment pieces on both sides; the "
           "kernel still tests every page",
           "limited_speedups", (("contig", "2m"),), ">=", 2.5),
    Target("one IOMMU domain, map + unmap of a 64 KiB I/O: 2 threads >= 1.7x the throughput of 1",
           "issue 13 item 5: maps of disjoint IOVA must not serialise (judged on the paired row, "
           "1 and 2 threads timed in alternation; this machine's ceiling for the same code is "
           "its own-domains row, where the threads share no phyr state)",
           "thread_scaling", ("iova/map_unmap_64KiB",), ">=", 1.7),
    Target("one IOMMU domain, link + sync + unlink of a 64 KiB I/O in a standing reservation: "
           "2 threads >= 1.7x the throughput of 1",
           "issue 13 item 5: as above, for the two-step path",
           "thread_scaling", ("iova/link_unlink_64KiB",), ">=", 1.7),
    Target("per-I/O: a 4 KiB I/O end to end < 25 ns",
           "issue 14 item 4: drivers run this millions of times a second",
           "io_ns", ("4KiB",), "<", 25),
    Target("per-I/O: zero heap allocations for I/Os whose runs fit the range_list inline",
           "issue 14 item 4: the common small I/O must not touch the allocator",
           "io_inline_allocs", (), "<=", 0),
    Target("per-I/O: >= 3x faster than the scatterlist path at every size",
           "issue 14 item 4: build, map, split, NVMe PRPs, unmap and free together (judged on "
           "the paired ratios: both paths timed in alternation)",
           "io_speedups", (), ">=", 3),
]

OPS = {"<=": lambda v, l: v <= l, "<": lambda v, l: v < l, ">=": lambda v, l: v >= l}


def _rows(report, op, wl, sizes, impl):
    """(key, phyr row, baseline row) for op/impl, every workload or `wl`, every size or `sizes`."""
    keys = [k for k in report.by_key if k[0] == op and (impl is None or k[3] == impl) and
            k[3] != BASELINE and
            (wl is None or k[1] == wl) and (sizes is None or k[2] in sizes)]
    keys.sort(key=lambda k: (WORKLOAD_ORDER.index(k[1]) if k[1] in WORKLOAD_ORDER else 99,
                             size_key(k[2])))
    return [(k, report.get(*k), report.get(op, k[1], k[2], BASELINE)) for k in keys]


def metric_speedups(report, op, wl, sizes, impl, min_entries):
    sp = [((k[2] if wl else f"{k[1]} {k[2]}"), report.speedup(p, b))
          for k, p, b in _rows(report, op, wl, sizes, impl)
          if p and b and (b.counter("entries") or 0) >= min_entries]
    sp = [(n, v) for n, v in sp if v is not None]
    if not sp:
        return None, "no rows"
    return min(v for _, v in sp), ", ".join(f"{n}: {fmt_ratio(v)}" for n, v in sp)


def metric_floor_ratio(report, op, wl, sizes, impl):
    fl = [(k[2], p.cpu_ns / f.cpu_ns) for k, p, _ in _rows(report, op, wl, sizes, impl)
          for f in [report.floor(k[1], k[2])] if p and f and f.cpu_ns and p.cpu_ns]
    if not fl:
        return None, "no rows"
    return max(v for _, v in fl), ", ".join(f"{n}: {fmt_ratio(v)} of memcpy" for n, v in fl)


def metric_mem_total(report, wl, size, impl):
    r = report.get("memory", wl, size, impl)
    v = r.counter("total_bytes_per_page") if r else None
    if v is None:
        return None, "no row"
    e = r.counter("entry_bytes_per_page")
    detail = f"{fmt_num(v)} B/page"
    if e is not None:
        detail += f" ({fmt_num(e)} in entries + {fmt_num(v - e)} of headers, slack, list object)"
    return v, detail


def metric_mem_ratio(report, wl, size, impl):
    r, b = report.get("memory", wl, size, impl), report.get("memory", wl, size, BASELINE)
    if not r or not b or not r.counter("total_bytes_per_page"):
        return None, "no rows"
    v = b.counter("total_bytes_per_page") / r.counter("total_bytes_per_page")
    return v, (f"{fmt_ratio(v)} ({fmt_num(b.counter('total_bytes_per_page'))} vs "
               f"{fmt_num(r.counter('total_bytes_per_page'))})")


def metric_mem_within(report, impl, min_entries):
    out = []
    for k, p, b in _rows(report, "memory", None, None, impl):
        if p and b and (b.counter("entries") or 0) >= min_entries and \
                b.counter("total_bytes_per_page"):
            out.append((f"{k[1]} {k[2]}", p.counter("total_bytes_per_page") /
                        b.counter("total_bytes_per_page")))
    if not out:
        return None, "no rows"
    worst = max(out, key=lambda x: x[1])
    over = [f"{n}: {fmt_ratio(v)}" for n, v in out if v > 1.1]
    return worst[1], (f"worst {worst[0]}: {fmt_ratio(worst[1])} of scatterlist over "
                      f"{len(out)} lists; " + (", ".join(over) if over else "none above 1.1x"))


def metric_o1(report):
    one = report.get("map", "frag", "1entry", "phyr_identity")
    mil = report.get("map", "frag", "1e6entries", "phyr_identity")
    if not (one and mil and one.cpu_ns and mil.cpu_ns):
        return None, "no rows"
    r = max(one.cpu_ns, mil.cpu_ns) / min(one.cpu_ns, mil.cpu_ns)
    return r, f"{fmt_time(one.cpu_ns)} vs {fmt_time(mil.cpu_ns)} per map ({r:.2f}x apart)"


def metric_io_ns(report, size):
    rows = [(wl, report.get("io", wl, size, "phyr_range_list")) for wl in ("contig", "frag")]
    rows = [(wl, r) for wl, r in rows if r and r.counter("ns_per_io") is not None]
    if not rows:
        return None, "no rows"
    return (max(r.counter("ns_per_io") for _, r in rows),
            ", ".join(f"{wl}: {fmt_num(r.counter('ns_per_io'))} ns" for wl, r in rows))


def metric_io_inline_allocs(report):
    rows = [(k, p) for k, p, _ in _rows(report, "io", None, None, "phyr_range_list")
            if p and p.counter("entries") is not None and p.counter("inline_entries") is not None]
    fit = [(k, p) for k, p in rows if p.counter("entries") <= p.counter("inline_entries")]
    if not fit:
        return None, "no rows"
    worst = max(p.counter("allocs_per_io") for _, p in fit)
    over = [(k, p) for k, p in rows if p.counter("entries") > p.counter("inline_entries")]
    return worst, (f"{fmt_num(worst)} per I/O at most over {len(fit)} I/Os of <= "
                   f"{fit[0][1].counter('inline_entries'):.0f} runs ("
                   + ", ".join(f"{k[1]} {k[2]}" for k, _ in fit) + ")"
                   + ("; larger ones: " + ", ".join(
                       f"{k[1]} {k[2]}: {fmt_num(p.counter('allocs_per_io'))}" for k, p in over)
                      if over else ""))


# The limited builds (bench/limits_bench.cpp): each against the kernel builder with the same
# max_segment, and against range_list's unlimited build of the same input (build_bench.cpp).
LIMITED_IMPLS = {"phyr_range_list": "64 KiB", "phyr_range_list_b4g": "64 KiB + 4 GiB boundary"}


def metric_limited_speedups(report, wls):
    sp = []
    for wl in wls:
        for k, p, b in _rows(report, "build_limited", wl, None, None):
            if k[3] in LIMITED_IMPLS and p and b:
                s = report.speedup(p, b)
                if s is not None:
                    sp.append((f"{wl} {k[2]} {LIMITED_IMPLS[k[3]]}", s))
    if not sp:
        return None, "no rows"
    return min(v for _, v in sp), ", ".join(f"{n}: {fmt_ratio(v)}" for n, v in sp)


def metric_limited_vs_unlimited(report, wl):
    """Limited build time over the unlimited build's: from the paired row (both builds timed
    in alternation) when the run has it, else from the two rows."""
    out = []
    for k, p, _ in _rows(report, "build_limited", wl, None, None):
        if k[3] not in LIMITED_IMPLS:
            continue
        name = f"{k[2]} {LIMITED_IMPLS[k[3]]}"
        pr = report.get("build_limited_paired", wl, k[2], k[3])
        v = pr.counter("limited_over_unlimited") if pr else None
        if v is not None:
            out.append((v, f"{name}: {fmt_num(pr.counter('ns_per_page_limited'))} vs "
                           f"{fmt_num(pr.counter('ns_per_page_unlimited'))} ns/page paired "
                           f"({fmt_ratio(v)})"))
            continue
        u = report.get("build", wl, k[2], "phyr_range_list")
        if p and u and u.cpu_ns and p.cpu_ns:
            v = p.cpu_ns / u.cpu_ns
            out.append((v, f"{name}: {fmt_num(p.ns_per_page)} vs {fmt_num(u.ns_per_page)} "
                           f"ns/page, rows timed apart ({fmt_ratio(v)})"))
    if not out:
        return None, "no rows"
    return max(v for v, _ in out), ", ".join(t for _, t in out)


def io_speedup(report, wl, size):
    """(paired speedup or None, speedup of the two rows or None) of one per-I/O size."""
    pr = report.get("io_paired", wl, size, "phyr_range_list")
    rows = report.speedup(report.get("io", wl, size, "phyr_range_list"),
                          report.get("io", wl, size, BASELINE))
    return (pr.counter("speedup") if pr else None), rows


def metric_io_speedups(report):
    sp = []
    for k, _, _ in _rows(report, "io", None, None, "phyr_range_list"):
        paired, rows = io_speedup(report, k[1], k[2])
        v = paired if paired is not None else rows
        if v is not None:
            sp.append((v, f"{k[1]} {k[2]}: {fmt_ratio(v)}" +
                       (f" (rows {fmt_ratio(rows)})" if paired is not None and rows else
                        " (rows only)")))
    if not sp:
        return None, "no rows"
    return min(v for v, _ in sp), ", ".join(t for _, t in sp)


def metric_thread_scaling(report, name):
    """2-thread over 1-thread throughput: from the paired row (iova_paired/..., both timed in
    alternation) when the run has it, else the two GB rows of one run. Beside it, the same
    code on a domain per thread (shares no phyr state: this machine's ceiling for that code)
    and the share-nothing loop."""
    def rows_ratio(n):
        one, two = report.rows.get(n), report.rows.get(n + "/threads:2")
        a = one.counter("items_per_second") if one else None
        b = two.counter("items_per_second") if two else None
        return (b / a, a, b) if a and b else (None, a, b)

    def paired(n):
        r = report.rows.get(n)
        return r.counter("scaling") if r and not r.error else None

    stem = name.split("/", 1)[1]
    v = paired("iova_paired/" + stem)
    own = paired("iova_paired/" + stem + "_own_domains")
    ref = paired("iova_paired/scaling_reference")
    rv, a, b = rows_ratio(name)
    if v is not None:
        r = report.rows["iova_paired/" + stem]
        text = (f"{fmt_num(r.counter('solo_m_per_s'))} -> {fmt_num(r.counter('duo_m_per_s'))} M/s "
                f"paired ({fmt_ratio(v)}")
        if r.counter("helper_over_main"):
            text += f", helper / main batch time {fmt_num(r.counter('helper_over_main'))}"
        text += ")"
        if own is not None:
            text += f"; each thread its own domain {fmt_ratio(own)}"
        if ref is not None:
            text += f"; share-nothing loop {fmt_ratio(ref)}"
        if rv is not None:
            text += f"; rows {fmt_ratio(rv)}"
        return v, text
    if rv is None:
        return None, "no rows"
    ref, _, _ = rows_ratio("iova/scaling_reference")
    return rv, (f"{fmt_num(a / 1e6)} -> {fmt_num(b / 1e6)} M/s ({fmt_ratio(rv)})" +
                (f"; share-nothing reference {fmt_ratio(ref)}" if ref else ""))


METRICS = {
    "thread_scaling": metric_thread_scaling,
    "limited_speedups": metric_limited_speedups,
    "limited_vs_unlimited": metric_limited_vs_unlimited,
    "speedups": metric_speedups, "floor_ratio": metric_floor_ratio, "mem_total": metric_mem_total,
    "mem_ratio": metric_mem_ratio, "mem_within": metric_mem_within, "o1": metric_o1,
    "io_ns": metric_io_ns, "io_inline_allocs": metric_io_inline_allocs,
    "io_speedups": metric_io_speedups,
}


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
    return fmt_magnitude(v, ".2f", "x")


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
                k[0] not in ("memory", "io")]
        op_rank = {o: i for i, o in enumerate(OP_ORDER)}
        return sorted(keys, key=lambda k: (op_rank.get(k[0], 99), k[0], size_key(k[2]), k[3]))

    def speedup(self, phyr, base):
        if phyr is None or base is None or not phyr.cpu_ns or base.cpu_ns is None:
            return None
        return base.cpu_ns / phyr.cpu_ns

    # -- sections --
    def header(self):
        c = self.context
        mode = ("quick (every benchmark once: indicative numbers only)"
                if c.get("phyr_mode") == "quick" else None)
        lines = ["# phyr vs the Linux 6.1 scatterlist", "", self.headline(), ""]
        lines.append(
            f"Run {c.get('date', '?')} on {c.get('host_name', '?')}: {c.get('num_cpus', '?')} CPUs "
            f"at {c.get('mhz_per_cpu', '?')} MHz, load average "
            f"{', '.join(f'{x:.2f}' for x in c.get('load_avg', [])) or '?'}"
            f"{f', {mode}' if mode else ''}. Times are CPU time, the median of the repetitions; "
            "the machine may be shared and noisy, so ratios move between runs (by up to ~20% on "
            "the development VM). **speedup** = scatterlist time / phyr time (above 1: phyr is "
            "faster); **x floor** = phyr time / memcpy of the input (the page-frame array). "
            "(Google Benchmark reports its library as built "
            f"{c.get('library_build_type', '?')}: see the README's Benchmarks section.)")
        return "\n".join(lines)

    def _speedups(self, op, impl, wls=None, min_entries=0):
        out = []
        for k in self.by_key:
            if k[0] == op and k[3] == impl and (wls is None or k[1] in wls):
                b = self.get(op, k[1], k[2], BASELINE)
                if b is None or (b.counter("entries") or 0) < min_entries:
                    continue
                s = self.speedup(self.get(*k), b)
                if s is not None:
                    out.append(s)
        return out

    def headline(self):
        """One paragraph in plain words: what phyr is faster or smaller at, by how much, against
        what, and where it was measured."""
        def span(v):
            if not v:
                return None
            lo, hi = min(v), max(v)
            return f"{lo:.1f}x" if abs(hi - lo) < 0.05 else f"{lo:.1f}–{hi:.1f}x"
        pages = [w for w in WORKLOAD_ORDER if w != "dio512"]
        parts = []
        b = span(self._speedups("build", "phyr_range_list", pages))
        w = span(self._speedups("walk", "phyr_range_list", pages, 1000))
        if b and w:
            parts.append(f"phyr's range_list builds a DMA list from page frames {b} faster than "
                         f"the scatterlist, and walks lists of 1000 entries or more {w} faster")
        pb = span(self._speedups("build", "phyr_packed", pages))
        if pb:
            parts.append(f"packed_list builds {pb} faster")
        io4 = [(self.get("io", wl, "4KiB", "phyr_range_list"), self.get("io", wl, "4KiB", BASELINE))
               for wl in ("contig", "frag")]
        io4 = [(p, q) for p, q in io4 if p and q]
        if io4:
            p, q = io4[0]
            parts.append(f"a whole 4 KiB I/O (build, map, split, NVMe PRPs, unmap, free) takes "
                         f"{fmt_num(p.counter('ns_per_io'))} ns against "
                         f"{fmt_num(q.counter('ns_per_io'))} ns "
                         f"({fmt_ratio(self.speedup(p, q))})")
        mem = {i: self.get("memory", "frag", "1GiB", i)
               for i in ("phyr_range_list", "phyr_packed", BASELINE)}
        if all(mem.values()):
            t = {i: r.counter("total_bytes_per_page") for i, r in mem.items()}
            parts.append(f"a list of fully fragmented pages takes {fmt_num(t['phyr_range_list'])} "
                         f"bytes per 4 KiB page ({fmt_num(t['phyr_packed'])} packed) against "
                         f"{fmt_num(t[BASELINE])}")
        c = self.context
        where = (f"{c.get('host_name', '?')}, {c.get('num_cpus', '?')} CPUs at "
                 f"{c.get('mhz_per_cpu', '?')} MHz")
        if not parts:
            return ("No comparison rows were measured in this run (see Errors below).")
        text = "; ".join(parts)
        return (f"**In one run on {where}: {text}.** The baseline, "
                "`compat/scatterlist.hpp`, is an in-process re-implementation of Linux 6.1's "
                "scatterlist code (lib/scatterlist.c's sg_alloc_table_from_pages_segment and "
                "for_each_sg, kernel/dma/direct.c's dma_direct_map_sg; the IOMMU and RDMA paths "
                "in bench/baseline/), built with the same compiler and flags into the same "
                "binary and run on identical inputs: it is a model of the kernel's code, not the "
                "kernel itself.")

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
                "fixed costs (the range_list object holds four entries inline; its heap segments "
                "grow from 96 bytes to 4 KiB).\n\n" +
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
        """Evaluates TARGETS: [(target, reason, verdict, measured)]."""
        out = []
        for t in TARGETS:
            value, shown = METRICS[t.metric](self, *t.args)
            if value is None:
                verdict = "NOT MEASURED"
            else:
                verdict = "MET" if OPS[t.op](value, t.limit) else "NOT MET"
            out.append((t.name, t.reason, verdict, shown))
        return out

    def targets_section(self):
        t = self.targets()
        met = sum(1 for *_, v, _ in t if v == "MET")
        unmet = sum(1 for *_, v, _ in t if v == "NOT MET")
        none = len(t) - met - unmet
        return (f"## Targets: {met} met, {unmet} not met"
                f"{f', {none} not measured' if none else ''}\n\n"
                "Every target is one row of `TARGETS` in bench/report.py, with the reason for its "
                "number; the verdict is computed from this run.\n\n" +
                table(["target", "why", "verdict", "measured"],
                      [[a, r, f"**{v}**", e] for a, r, v, e in t]) + "\n")

    # -- per-I/O --
    def io_table(self):
        keys = sorted((k for k in self.by_key if k[0] == "io" and k[3] != BASELINE),
                      key=lambda k: (WORKLOAD_ORDER.index(k[1]) if k[1] in WORKLOAD_ORDER
                                     else 99, size_key(k[2]), k[3]))
        if not keys:
            return ""
        body = []
        for _, wl, size, impl in keys:
            p = self.get("io", wl, size, impl)
            b = self.get("io", wl, size, BASELINE)
            if p is None:
                body.append([wl, size, impl, "ERROR: " + (self.by_key[("io", wl, size, impl)].error
                                                          or "?"), "", "", "", "", "", "", ""])
                continue
            pr = self.get("io_paired", wl, size, impl)
            body.append([
                WORKLOAD_TITLE.get(wl, wl), size, impl,
                fmt_num(p.counter("ns_per_io")), fmt_num(b.counter("ns_per_io")) if b else "—",
                fmt_ratio(self.speedup(p, b)),
                (f"{fmt_ratio(pr.counter('speedup'))} ({fmt_num(pr.counter('ns_per_io_phyr'))} / "
                 f"{fmt_num(pr.counter('ns_per_io_scatterlist'))} ns)") if pr else "—",
                f"{fmt_num(p.counter('allocs_per_io'))} / "
                f"{fmt_num(b.counter('allocs_per_io')) if b else '—'}",
                f"{fmt_count(p.counter('segments'))}",
                f"{fmt_count(p.counter('prp_entries'))}",
                f"{fmt_count(p.counter('entries'))} / "
                f"{fmt_count(b.counter('entries')) if b else '—'}"])
        inline = next((self.get(*k).counter("inline_entries") for k in keys if self.get(*k)), None)
        fits = (f"; a range_list holds {inline:.0f} entries inline, so an I/O of up to "
                f"{inline:.0f} physically contiguous runs needs no heap segment, and a larger one "
                f"counts its runs first and takes one segment of that size (up to 4 KiB)"
                if inline else "")
        return ("## Per-I/O path: build, map, split to device limits, NVMe PRPs, unmap, free\n\n"
                "One I/O per iteration, from the page frames to the released list "
                "(bench/io_path.hpp). phyr: range_list::try_append_pages, "
                "identity_mapper::try_map, try_split to 64 KiB segments (every segment read "
                "with split_view::for_each, the source's segment walk), "
                "nvme::try_build_prp into the command's own PRP list page (caller-owned "
                "descriptor memory, as SPDK keeps it in the command tracker), unmap, destroy. "
                "scatterlist: sg_alloc_table_from_pages_segment (max_segment 64 KiB), "
                "dma_direct_map_sg, for_each_sg, nvme_pci_setup_prps walking the mapped list "
                "with each PRP list page from a dma_pool model (one allocation from the same "
                "recycling heap, freed at the end as nvme_free_prps does: cheaper than the "
                "kernel's locked dma_pool_alloc), the dma_direct_unmap_sg walk, sg_free_table. "
                "Not modelled: the NVMe driver's single-segment shortcut (nvme_setup_prp_simple "
                "maps a one-segment request of at most two controller pages without any "
                "scatterlist). Allocations: calls into the structures' allocator plus global "
                "operator new, per I/O"
                f"{fits}. **paired**: the io_paired row, both I/Os timed in alternation in "
                "batches of the same count (the median batch ratio, and the median ns per I/O "
                "of each side): the VM's changes of pace move the two rows' ratio, not this "
                "one; the target is judged on it.\n\n" +
                table(["pages", "I/O size", "phyr", "phyr ns/I/O", "scatterlist ns/I/O",
                       "speedup", "speedup, paired (phyr / scatterlist ns)",
                       "allocations/I/O phyr / scatterlist", "device segments",
                       "PRP entries", "list entries phyr / scatterlist"], body) + "\n")

    def missing(self):
        seen = {k[1] for k in self.by_key}
        gone = [w for w in WORKLOAD_ORDER if w not in seen]
        if not gone:
            return ""
        return ("Workloads with no results: " + ", ".join(gone) +
                ".\n")

    def markdown(self):
        parts = [self.header(), "", self.missing(), self.targets_section(), self.io_table(),
                 self.workload_tables(), self.memory_table(), self.other_table()]
        errs = self.errors()
        if errs:
            parts.append("## Errors\n\n" + "\n".join(f"- `{r.name}`: {r.error}" for r in errs) +
                         "\n")
        return "\n".join(p for p in parts if p is not None) + "\n"


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
