"""Report of bench/trees_rounds.sh: per case, the median over rounds of each tree's median time, the spread
(min-max of the per-round medians) and the after/before ratio (below 1: the after tree is faster).

Usage: ``python bench/trees_report.py DIR``
"""

from __future__ import annotations

import glob
import json
import re
import statistics
import sys
from collections import defaultdict

import host


def main(directory: str) -> None:
    times = defaultdict(list)  # (case, tree) -> per-round medians (s)
    for path in sorted(glob.glob(f"{directory}/*_r*.json")):
        tree = re.search(r"_(before|after)_r\d+\.json$", path).group(1)
        with open(path) as f:
            for bench in json.load(f)["benchmarks"]:
                times[(bench["name"], tree)].append(bench["stats"]["median"])
    cases = sorted({case for case, _ in times})
    print("Host: " + ", ".join(f"{k}={v}" for k, v in host.describe().items()) + "\n")
    print("| case | before (ms) | after (ms) | after / before |")
    print("|---|---|---|---|")
    ratios = []
    for case in cases:
        b, a = times.get((case, "before"), []), times.get((case, "after"), [])
        if not b or not a:
            continue
        mb, ma = statistics.median(b), statistics.median(a)
        ratios.append(ma / mb)
        print(f"| {case} | {1e3 * mb:.3f} ({1e3 * min(b):.3f}-{1e3 * max(b):.3f}) | "
              f"{1e3 * ma:.3f} ({1e3 * min(a):.3f}-{1e3 * max(a):.3f}) | {ma / mb:.2f} |")
    if ratios:
        print(f"\nRatios over {len(ratios)} cases: median {statistics.median(ratios):.2f}, "
              f"range {min(ratios):.2f}-{max(ratios):.2f}; rounds: {len(b)}")


if __name__ == "__main__":
    main(sys.argv[1])
