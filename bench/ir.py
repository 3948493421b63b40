#!/usr/bin/env python3
"""Instructions per page and per I/O, counted by callgrind (valgrind) on phyr_bench_ir.

    python3 bench/ir.py build/bench/bench/phyr_bench_ir              # every case
    python3 bench/ir.py build/bench/bench/phyr_bench_ir 'io/.*/4KiB'  # cases matching a regex
    python3 bench/ir.py BIN CASE --annotate                           # and the inclusive profile

Timings on a shared machine move by tens of percent; instruction counts do not, so they show
what a change did. For each case this runs
    valgrind --tool=callgrind --collect-atstart=no phyr_bench_ir CASE REPS
(the driver collects only its measured loop, after an uncounted warm-up round) and prints
Ir per unit (a 4 KiB page for builds, one I/O for io rows) next to the scatterlist twin's.
Instruction counts are not time (a cache miss or a divide costs more than an add); they are
the part of the cost that code changes move and noise cannot. Python 3 standard library only.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile

# Repetitions per case: enough that a run costs millions of instructions, so the driver's few
# instructions per repetition vanish.
REPS = {"build": 4, "build_limited": 4, "io": 20000, "io_steps": 20000, "noop": 20000}


def run_case(binary, case, annotate):
    reps = REPS.get(case.split("/")[0], 1)
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "callgrind.out")
        p = subprocess.run(["valgrind", "--tool=callgrind", "--collect-atstart=no",
                            f"--callgrind-out-file={out}", binary, case, str(reps)],
                           capture_output=True, text=True, check=False)
        line = next((l for l in p.stdout.splitlines() if l.startswith(case + " ")), "")
        m = re.search(r"units=(\d+) unit=(\w+) ok=(\d)", line)
        if p.returncode != 0 or not m or m.group(3) != "1":
            raise RuntimeError(f"{case}: driver failed (rc {p.returncode}): {p.stdout}{p.stderr}")
        total = None
        with open(out, encoding="utf-8") as f:
            for l in f:
                if l.startswith("summary:") or l.startswith("totals:"):
                    total = int(l.split()[1])
        if total is None:
            raise RuntimeError(f"{case}: no totals in the callgrind output")
        profile = ""
        if annotate:
            profile = subprocess.run(["callgrind_annotate", "--inclusive=yes", out],
                                     capture_output=True, text=True, check=False).stdout
        return total / int(m.group(1)), m.group(2), profile


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("binary", help="phyr_bench_ir (built by the bench preset)")
    ap.add_argument("filter", nargs="?", default=".", help="regex over case names")
    ap.add_argument("--annotate", action="store_true",
                    help="print callgrind_annotate --inclusive=yes for each case")
    args = ap.parse_args(argv)
    names = subprocess.run([args.binary, "--list"], capture_output=True, text=True,
                           check=True).stdout.split()
    names = [n for n in names if re.search(args.filter, n)]
    if not names:
        print(f"ir.py: no case matches {args.filter}", file=sys.stderr)
        return 2
    res = {}
    for n in names:
        per, unit, profile = run_case(args.binary, n, args.annotate)
        res[n] = (per, unit)
        if profile:
            print(f"==== {n}\n{profile}")
    print("| case | Ir per unit | unit | scatterlist twin Ir | twin / phyr |")
    print("|---|---|---|---|---|")
    for n, (per, unit) in res.items():
        twin = "/".join(n.split("/")[:3] + ["scatterlist"])
        t = res.get(twin) if twin != n else None
        print(f"| {n} | {per:.2f} | {unit} | {f'{t[0]:.2f}' if t else '—'} | "
              f"{f'{t[0] / per:.2f}x' if t and per else '—'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
