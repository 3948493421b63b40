"""The chart of bench/report.py: report.svg, two panels and a legend at the top.

    from report_svg import svg
    open("report.svg", "w").write(svg(report))      # report: a report.Report

Panel 1, speedup vs scatterlist: for every operation and workload (1 GiB inputs, the traces at
256 MiB, every per-I/O size), how many times faster each phyr implementation is than its
scatterlist twin, as horizontal bars on a log axis with a heavy line at 1x (right of it phyr is
faster: higher is better). Panel 2, bytes per 4 KiB page: the CPU + DMA list after an identity
map, each implementation and the baseline, log axis (lower is better). Colours are the
Okabe-Ito palette, which readers with the common colour-vision deficiencies can tell apart; each
bar also carries its value as text. Python 3 standard library only.
"""

from __future__ import annotations

import math

# Okabe & Ito (2008), "Color Universal Design": distinguishable under protan, deutan, tritan.
COLORS = {
    "phyr_range_list": "#0072B2",  # blue
    "phyr_packed": "#009E73",      # bluish green
    "phyr_identity": "#56B4E9",    # sky blue
    "phyr_iommu": "#E69F00",       # orange
    "phyr_sg_bridge": "#CC79A7",   # reddish purple
    "scatterlist": "#D55E00",      # vermillion
}
EXTRA_COLORS = ["#000000", "#999999", "#F0E442"]  # the rest of Okabe-Ito, darkest first

OP_TITLE = {
    "io": "per-I/O (build, map, split, NVMe PRPs, unmap, free)",
    "build": "build from page frames",
    "walk": "walk every entry",
    "blocks4k": "4 KiB blocks (RDMA/PRP page list)",
    "blocks64k": "64 KiB blocks",
    "map": "DMA map (identity vs dma-direct)",
    "unmap": "DMA unmap",
    "map_iommu": "IOMMU map",
    "unmap_iommu": "IOMMU unmap",
    "blocks4k_iter": "4 KiB blocks, device/ block iterator",
    "blocks64k_iter": "64 KiB blocks, device/ block iterator",
}
BIG_SIZES = {"1GiB", "256MiB"}


def esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def fmt_magnitude(v, small_spec, suffix=""):
    """A positive value as the chart and the report print it: one decimal of scientific
    notation from 1e5, whole numbers from 100, below that `small_spec`; then `suffix`."""
    if v >= 1e5:
        return f"{v:.1e}{suffix}"
    if v >= 100:
        return f"{v:.0f}{suffix}"
    return f"{v:{small_spec}}{suffix}"


def fmt(v):
    return fmt_magnitude(v, ".3g")


def impl_rank(impl):
    """Bars and legend in one order: phyr's implementations as listed in COLORS, then others."""
    return (impl == "scatterlist", list(COLORS).index(impl) if impl in COLORS else 99, impl)


def color_for(impl, palette):
    if impl in COLORS:
        return COLORS[impl]
    if impl not in palette:
        palette[impl] = EXTRA_COLORS[len(palette) % len(EXTRA_COLORS)]
    return palette[impl]


class Panel:
    """Horizontal bars on a log axis. groups: [(title, [(row label, [(impl, value)])])]."""

    LABEL_W, BAR_H, ROW_GAP, GROUP_GAP = 200, 10, 5, 14

    def __init__(self, title, subtitle, groups, unit, ref=None, cap=None):
        """ref: a value marked by a heavy line (1x); cap: the axis ends there, longer bars are
        cut with a notch and keep their value as text."""
        self.title, self.subtitle, self.groups, self.unit, self.ref, self.cap = (
            title, subtitle, groups, unit, ref, cap)

    def render(self, x0, y0, width, palette):
        vals = [v for _, rows in self.groups for _, bars in rows for _, v in bars if v and v > 0]
        if not vals:
            return "", 0
        lo = math.floor(math.log10(min(vals + ([self.ref] if self.ref else []))))
        hi = math.ceil(math.log10(max(vals + ([self.ref] if self.ref else []))))
        if self.cap:
            hi = min(hi, round(math.log10(self.cap)))
        hi = max(hi, lo + 1)
        wide = hi - lo > 4  # label decades only, or they collide
        plot_x = x0 + self.LABEL_W
        plot_w = width - self.LABEL_W - 120

        def xpos(v):
            return plot_x + (math.log10(v) - lo) / (hi - lo) * plot_w

        out = [f'<text x="{x0}" y="{y0 + 18}" font-size="17" font-weight="bold">'
               f'{esc(self.title)}</text>',
               f'<text x="{x0}" y="{y0 + 36}" font-size="12" fill="#333">'
               f'{esc(self.subtitle)}</text>']
        top = y0 + 80
        y = top
        bars_svg = []
        for gtitle, rows in self.groups:
            bars_svg.append(f'<text x="{x0}" y="{y + 10}" font-size="12" font-weight="bold">'
                            f'{esc(gtitle)}</text>')
            y += 16
            for label, bars in rows:
                h = max(1, len(bars)) * self.BAR_H
                bars_svg.append(f'<text x="{plot_x - 6}" y="{y + h / 2 + 4}" font-size="11" '
                                f'text-anchor="end">{esc(label)}</text>')
                for impl, v in bars:
                    if v and v > 0:
                        clipped = v > 10 ** hi
                        base = xpos(10 ** lo)
                        w = max(1.0, xpos(min(v, 10 ** hi)) - base)
                        bars_svg.append(
                            f'<rect x="{base:.1f}" y="{y}" width="{w:.1f}" '
                            f'height="{self.BAR_H - 1}" fill="{color_for(impl, palette)}">'
                            f'<title>{esc(impl)}: {fmt(v)} {esc(self.unit)}</title></rect>')
                        if clipped:  # a white notch says "the bar goes on"
                            nx = base + w - 8
                            bars_svg.append(f'<path d="M{nx:.1f},{y} l3,{self.BAR_H - 1} '
                                            f'l2,0 l-3,{-(self.BAR_H - 1)} z" fill="white"/>')
                        bars_svg.append(f'<text x="{base + w + 3:.1f}" y="{y + self.BAR_H - 1.5}" '
                                        f'font-size="9" fill="#222">{fmt(v)}'
                                        f'{" (off scale)" if clipped else ""}</text>')
                    y += self.BAR_H
                y += self.ROW_GAP
            y += self.GROUP_GAP - self.ROW_GAP
        bottom = y
        # Grid and tick labels (1, 2, 5 per decade), drawn under the bars.
        grid = []
        for e in range(lo, hi + 1):
            for m in (1, 2, 5):
                v = m * 10 ** e
                if v > 10 ** hi:
                    break
                x = xpos(v)
                grid.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{bottom}" '
                            f'stroke="{"#bbb" if m == 1 else "#e4e4e4"}" stroke-width="0.8"/>')
                if m == 1 or not wide:
                    label = f"{v:g}" if 1e-3 <= v < 1e5 else f"1e{e}"
                    grid.append(f'<text x="{x:.1f}" y="{top - 8}" font-size="10" '
                                f'text-anchor="middle">{esc(label)}</text>')
        if self.ref:
            x = xpos(self.ref)
            grid.append(f'<line x1="{x:.1f}" y1="{top - 22}" x2="{x:.1f}" y2="{bottom}" '
                        f'stroke="#000" stroke-width="2"/>')
            grid.append(f'<text x="{x + 4:.1f}" y="{top - 24}" font-size="11" '
                        f'font-weight="bold">1x: as fast as scatterlist; right of it phyr is '
                        f'faster</text>')
        axis = (f'<text x="{plot_x + plot_w / 2:.1f}" y="{bottom + 16}" font-size="11" '
                f'text-anchor="middle">{esc(self.unit)} (log scale)</text>')
        return "\n".join(out + grid + bars_svg + [axis]), bottom + 26 - y0


def speedup_groups(report):
    """[(op title, [(workload size, [(impl, speedup)])])] for every op with a scatterlist twin."""
    from report import BASELINE, OP_ORDER, WORKLOAD_ORDER, size_key

    def wl_rank(w):
        return WORKLOAD_ORDER.index(w) if w in WORKLOAD_ORDER else 99

    groups = []
    ops = sorted({k[0] for k in report.in_tables if k[0] != "memory"},
                 key=lambda o: (OP_ORDER.index(o) if o in OP_ORDER else 99, o))
    for op in ops:
        cells = sorted({(k[1], k[2]) for k in report.in_tables if k[0] == op and
                        (op == "io" or k[2] in BIG_SIZES)},
                       key=lambda c: (wl_rank(c[0]), size_key(c[1])))
        rows = []
        for wl, size in cells:
            base = report.get(op, wl, size, BASELINE)
            impls = sorted((k[3] for k in report.in_tables
                            if k[:3] == (op, wl, size) and k[3].startswith("phyr_")),
                           key=impl_rank)
            bars = [(i, report.speedup(report.get(op, wl, size, i), base)) for i in impls]
            bars = [(i, v) for i, v in bars if v]
            if bars:
                rows.append((f"{wl} {size}", bars))
        if rows:
            groups.append((OP_TITLE.get(op, op), rows))
    return groups


def memory_groups(report):
    from report import BASELINE, WORKLOAD_ORDER, size_key
    cells = sorted({(k[1], k[2]) for k in report.by_key if k[0] == "memory"},
                   key=lambda c: (WORKLOAD_ORDER.index(c[0]) if c[0] in WORKLOAD_ORDER else 99,
                                  size_key(c[1])))
    rows = []
    for wl, size in cells:
        impls = sorted({k[3] for k in report.by_key if k[0] == "memory" and k[1:3] == (wl, size)},
                       key=impl_rank)
        bars = []
        for i in impls:
            r = report.get("memory", wl, size, i)
            if r and r.counter("total_bytes_per_page"):
                bars.append((i, r.counter("total_bytes_per_page")))
        if bars:
            rows.append((f"{wl} {size}", bars))
    return [("CPU + DMA list after an identity map", rows)] if rows else []


def svg(report):
    palette: dict[str, str] = {}
    width = 980
    body = []
    y = 10
    # Legend first, at the top: every implementation that appears below.
    panels = [
        Panel("Speedup vs scatterlist (higher is better)",
              "scatterlist time / phyr time, CPU time medians; 1 GiB inputs, traces 256 MiB, "
              "every per-I/O size", speedup_groups(report), "x faster than scatterlist", ref=1.0,
              cap=1000),
        Panel("Bytes per 4 KiB page (lower is better)",
              "everything counted: entries, segment headers, slack, the list object",
              memory_groups(report), "bytes per 4 KiB page"),
    ]
    impls = []
    for p in panels:
        for _, rows in p.groups:
            for _, bars in rows:
                for i, _ in bars:
                    if i not in impls:
                        impls.append(i)
    impls.sort(key=impl_rank)
    body.append(f'<text x="10" y="{y + 14}" font-size="13" font-weight="bold">Legend:</text>')
    lx = 75
    for impl in impls:
        c = color_for(impl, palette)
        w = 34 + 7 * len(impl)
        if lx + w > width - 10:
            lx = 75
            y += 20
        body.append(f'<rect x="{lx}" y="{y + 3}" width="14" height="14" fill="{c}"/>'
                    f'<text x="{lx + 19}" y="{y + 14}" font-size="12">{esc(impl)}</text>')
        lx += w
    y += 34
    for p in panels:
        s, h = p.render(10, y, width, palette)
        body.append(s)
        y += h + 16
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y}" '
            f'viewBox="0 0 {width} {y}" font-family="DejaVu Sans, sans-serif">\n'
            f'<rect width="100%" height="100%" fill="white"/>\n' + "\n".join(body) + "\n</svg>\n")
