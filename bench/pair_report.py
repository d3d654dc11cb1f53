"""Report of interleaved rounds of two variants (bench/trees_rounds.sh: two source trees "before" and "after";
bench/csr_int8_rounds.sh: fp32 CSR "numaccel" and pruned-int8 "numaccel-int8"): per case, the median over
rounds of each variant's median time, the spread (min-max of the per-round medians) and the ratio B / A
(below 1: B is faster).

Files are ``<suite>_<variant>_r<round>.json`` (pytest-benchmark JSON). Cases are matched by benchmark
name with the variant's own implementation name removed.

Usage: ``python bench/pair_report.py DIR [A B]``  (default A = before, B = after)
"""

from __future__ import annotations

import glob
import json
import statistics
import sys
from collections import defaultdict

from numaccel.benchmarks import host


def main(directory: str, a: str = "before", b: str = "after") -> None:
    times = defaultdict(list)  # (case, variant) -> per-round medians (s)
    for variant in (a, b):
        for path in sorted(glob.glob(f"{directory}/*_{variant}_r*.json")):
            with open(path) as f:
                for bench in json.load(f)["benchmarks"]:
                    name = bench["name"]
                    impl = str(bench.get("extra_info", {}).get("impl", ""))
                    case = name.replace(f"[{impl}-", "[") if impl and variant not in ("before", "after") else name
                    times[(case, variant)].append(bench["stats"]["median"])
    cases = sorted({case for case, _ in times})
    print("Host: " + ", ".join(f"{k}={v}" for k, v in host.describe().items()) + "\n")
    print(f"| case | {a} (ms) | {b} (ms) | {b} / {a} |")
    print("|---|---|---|---|")
    ratios = []
    rounds = 0
    for case in cases:
        ta, tb = times.get((case, a), []), times.get((case, b), [])
        if not ta or not tb:
            continue
        rounds = max(rounds, len(ta), len(tb))
        ma, mb = statistics.median(ta), statistics.median(tb)
        ratios.append(mb / ma)
        print(f"| {case} | {1e3 * ma:.3f} ({1e3 * min(ta):.3f}-{1e3 * max(ta):.3f}) | "
              f"{1e3 * mb:.3f} ({1e3 * min(tb):.3f}-{1e3 * max(tb):.3f}) | {mb / ma:.2f} |")
    if ratios:
        print(f"\nRatios over {len(ratios)} cases: median {statistics.median(ratios):.2f}, "
              f"range {min(ratios):.2f}-{max(ratios):.2f}; rounds: {rounds}")


if __name__ == "__main__":
    main(*sys.argv[1:])
