"""Plot of bench/csr_int8_rounds.sh: speed-up of pruned-int8 (weight-only and W8A8) over fp32 CSR per batch.

Per batch, the median over rounds of fp32 CSR's median time over the variant's (each round's ratio pairs
the two processes of that round), with the range of the per-round ratios as the error bar.

    python bench/csr_int8_plot.py DIR OUT.png        (DIR as written by bench/csr_int8_rounds.sh)
"""

from __future__ import annotations

import glob
import json
import re
import statistics
import sys
from collections import defaultdict

from numaccel.benchmarks import host

VARIANTS = {"numaccel-int8": "pruned-int8, weight-only", "numaccel-int8-w8a8": "pruned-int8, W8A8"}


def _medians(directory: str, variant: str) -> dict:
    """``{batch: {round: median seconds}}`` of one implementation."""
    out = defaultdict(dict)
    for path in glob.glob(f"{directory}/csr_{variant}_r*.json"):
        r = int(re.search(r"_r(\d+)\.json$", path).group(1))
        with open(path) as f:
            for bench in json.load(f)["benchmarks"]:
                out[int(bench["extra_info"]["batch"])][r] = bench["stats"]["median"]
    return out


def main(directory: str, target: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = _medians(directory, "numaccel")
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for variant, label in VARIANTS.items():
        got = _medians(directory, variant)
        batches, mid, lo, hi = [], [], [], []
        for b in sorted(got):
            per = [base[b][r] / t for r, t in got[b].items() if r in base.get(b, {})]
            if per:
                batches.append(b)
                m = statistics.median(per)
                mid.append(m)
                lo.append(m - min(per))
                hi.append(max(per) - m)
        ax.errorbar(batches, mid, yerr=[lo, hi], marker="o", capsize=3, label=label)
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch (rows per call)")
    ax.set_ylabel("speed-up over fp32 CSR")
    d = host.describe()
    ax.set_title(f"4096 x 4096, 90 %, cold; {d['cpu_model']}, {d['logical_cpus']} CPUs", fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(target, dpi=110)
    print(f"wrote {target}")


if __name__ == "__main__":
    main(*sys.argv[1:])
