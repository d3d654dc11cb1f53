"""Merge CPU and GPU benchmark results into one table and one plot: time per shape, numaccel on the CPU
vs numaccel on CUDA vs the best anchor on each side.

Reads pytest-benchmark-style JSON (the CPU suites' ``--benchmark-json`` files and bench/bench_gpu.py's
``gpu.json``): every benchmark whose ``extra_info`` has ``family``, ``impl`` and ``device``. Rows are
matched on (family, N, K, batch, sparsity, group_size), W8A8 implementations in rows of their own; within
a row, for each device, the fastest
``numaccel*`` implementation and the fastest other one (the anchor) are kept, by median time, preferring
cold-weight measurements where both exist.

Usage::

    python bench/compare.py --gpu bench/results/gpu/gpu.json [--cpu bench/results/*.json] \\
        [--out bench/results/compare]       # writes compare.md and compare.png
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from collections import defaultdict
from pathlib import Path

from report import _sort_key as sort_key  # bench/ is on the path when this runs as a script
from report import fmt_time

ROW_FIELDS = ("family", "N", "K", "batch", "sparsity", "group_size")
COLUMNS = ("numaccel cpu", "anchor cpu", "numaccel cuda", "anchor cuda")


def row_family(info: dict) -> str:
    """The row an implementation belongs to: W8A8 implementations (activations quantized too) get their
    own ``w8a8`` rows, whether a suite files them under ``int8`` (the CPU suite) or ``w8a8`` (bench_gpu)."""
    impl = str(info["impl"])
    if info["family"] == "int8" and any(tag in impl for tag in ("w8a8", "dynamic-int8", "int-mm")):
        return "w8a8"
    return str(info["family"])


def load(paths) -> dict:
    """``{row_key: {column: (median, min, impl, weights)}}`` over all files."""
    rows: dict = defaultdict(dict)
    for path in paths:
        try:
            with open(path, encoding="utf-8") as fh:
                doc = json.load(fh)
        except (OSError, ValueError) as exc:
            print(f"skipping {path}: {exc}", file=sys.stderr)
            continue
        for bench in doc.get("benchmarks", []) if isinstance(doc, dict) else []:
            info = bench.get("extra_info") or {}
            if not {"family", "impl", "device"} <= info.keys() or info["family"] == "transfer":
                continue
            device = "cuda" if str(info["device"]).startswith("cuda") else "cpu"
            ours = str(info["impl"]).startswith("numaccel")
            column = f"{'numaccel' if ours else 'anchor'} {device}"
            key = (row_family(info),) + tuple(info.get(f) for f in ROW_FIELDS[1:])
            stats = bench["stats"]
            cand = (stats["median"], stats["min"], str(info["impl"]), info.get("weights"))
            old = rows[key].get(column)
            if old is None or _better(cand, old):
                rows[key][column] = cand
    return rows


def _better(new, old) -> bool:
    cold_new, cold_old = new[3] == "cold", old[3] == "cold"
    if cold_new != cold_old:
        return cold_new
    return new[0] < old[0]


def markdown(rows: dict) -> str:
    lines = ["# CPU vs CUDA", "",
             "Median time per call, with the implementation in brackets. `numaccel` columns: the fastest "
             "numaccel implementation on that device; `anchor` columns: the fastest other library there. "
             "Speed-ups are median ratios.", "",
             "| family | N×K | batch | sparsity | group | numaccel cpu | anchor cpu | numaccel cuda "
             "| anchor cuda | cuda vs cpu | cuda vs anchor cuda |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for key in sorted(rows, key=sort_key):
        info = dict(zip(ROW_FIELDS, key, strict=True))
        cells = rows[key]
        out = [str(info["family"]), f"{info['N']}×{info['K']}", str(info["batch"]),
               "" if info["sparsity"] is None else f"{info['sparsity']:g}",
               "" if info["group_size"] is None else str(info["group_size"])]
        for col in COLUMNS:
            c = cells.get(col)
            out.append("" if c is None else f"{fmt_time(c[0])} ({c[2]})")
        ours_cpu, ours_gpu = cells.get("numaccel cpu"), cells.get("numaccel cuda")
        anchor_gpu = cells.get("anchor cuda")
        out.append(f"{ours_cpu[0] / ours_gpu[0]:.1f}×" if ours_cpu and ours_gpu else "")
        out.append(f"{anchor_gpu[0] / ours_gpu[0]:.2f}×" if anchor_gpu and ours_gpu else "")
        lines.append("| " + " | ".join(out) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: dict, path: Path) -> bool:
    """Time vs batch, one panel per (family, shape, sparsity/group); the four columns as lines."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot written", file=sys.stderr)
        return False
    panels = defaultdict(lambda: defaultdict(list))
    for key, cells in rows.items():
        info = dict(zip(ROW_FIELDS, key, strict=True))
        if not isinstance(info["batch"], (int, float)):
            continue
        panel = (info["family"], info["N"], info["K"], info["sparsity"], info["group_size"])
        for col, c in cells.items():
            panels[panel][col].append((info["batch"], c[0]))
    if not panels:
        return False
    names = sorted(panels, key=sort_key)
    ncol = min(3, len(names))
    nrow = -(-len(names) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(5.2 * ncol, 3.8 * nrow), squeeze=False)
    styles = {"numaccel cpu": ("tab:blue", "-", "o"), "anchor cpu": ("tab:blue", "--", "."),
              "numaccel cuda": ("tab:red", "-", "o"), "anchor cuda": ("tab:red", "--", ".")}
    for ax, panel in zip(axes.flat, names, strict=False):
        family, n, k, sparsity, group = panel
        for col in COLUMNS:
            pts = sorted(panels[panel].get(col, []))
            if pts:
                color, ls, marker = styles[col]
                ax.plot(*zip(*pts, strict=True), color=color, ls=ls, marker=marker, label=col)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch")
        ax.set_ylabel("time per call (s)")
        extra = (f", sparsity {sparsity:g}" if sparsity is not None else "") + \
            (f", group {group}" if group is not None else "")
        ax.set_title(f"{family} {n}×{k}{extra}", fontsize=9)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gpu", nargs="*", default=[], help="GPU result files (bench/bench_gpu.py's gpu.json)")
    ap.add_argument("--cpu", nargs="*", default=None,
                    help="CPU result files (default: bench/results/*.json)")
    ap.add_argument("--out", default="bench/results/compare", help="output path without extension")
    args = ap.parse_args(argv)
    cpu = args.cpu if args.cpu is not None else sorted(glob.glob("bench/results/*.json"))
    rows = load(list(cpu) + list(args.gpu))
    gpu_families = {key[0] for key, cells in rows.items() if {"numaccel cuda", "anchor cuda"} & cells.keys()}
    if gpu_families:  # CPU-only families (e.g. Dask scaling) have nothing to compare with
        rows = {key: cells for key, cells in rows.items() if key[0] in gpu_families}
    if not rows:
        print("no benchmark results with family/impl/device found", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(markdown(rows), encoding="utf-8")
    wrote_plot = plot(rows, out.with_suffix(".png"))
    print(f"wrote {out.with_suffix('.md')}" + (f" and {out.with_suffix('.png')}" if wrote_plot else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
