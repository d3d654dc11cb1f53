"""Turn pytest-benchmark JSON files into a markdown table and a PNG plot.

Works for any suite that follows the shared benchmark schema: each benchmark's ``extra_info`` holds
``family``, ``impl``, ``N``, ``K``, ``batch``, ``dtype``, ``sparsity``, ``group_size``, ``weights``,
``threads`` and ``device`` (optionally ``blas``, the BLAS configuration a dense anchor ran under).

Implementations are sorted into three kinds by name: ``numaccel*`` (ours), ``numpy*`` (dense BLAS) and
everything else (anchors such as scipy, torch, mkl). For every parametrisation and every numaccel
implementation the table gives the speed-up over the fastest dense configuration and over the fastest
other anchor, computed from median times. Several JSON files may be given (for example a second run of
the dense anchors under another BLAS configuration); rows with the same parametrisation are merged and,
where the same implementation appears more than once, the faster median is kept, or with
``--combine median`` the median over the files (for interleaved rounds of every implementation on a
machine whose speed drifts: each round times every implementation, each round's drift hits all alike).

Usage::

    python bench/report.py bench/results/csr.json [more.json ...] --out bench/results/csr
    # writes bench/results/csr.md and bench/results/csr.png
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path

KEY_FIELDS = ("family", "device", "N", "K", "dtype", "weights", "threads", "group_size", "sparsity", "batch")


def impl_kind(impl: str) -> str:
    if impl.startswith("numaccel"):
        return "ours"
    if impl.startswith("numpy"):
        return "dense"
    return "anchor"


def impl_label(info: dict) -> str:
    impl = str(info.get("impl", "?"))
    blas = info.get("blas")
    return f"{impl}[{blas}]" if blas else impl


STAT = "median"  # the statistic the tables and plots compare; --stat min for a noisy, shared machine


def load(paths, stat: str = "median", combine: str = "best") -> dict:
    """``{param_key: {impl_label: stats}}`` where stats has median, min, rounds (seconds); ``median`` holds
    the statistic chosen by ``stat`` (the field every comparison reads). An implementation found in several
    files keeps its fastest entry (``combine="best"``) or the median of their statistics and the minimum
    of their minima (``combine="median"``)."""
    table: dict = defaultdict(dict)
    seen: dict = defaultdict(list)
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
        for bench in doc.get("benchmarks", []):
            info = bench.get("extra_info") or {}
            if "impl" not in info or "family" not in info:
                continue
            key = tuple(info.get(f) for f in KEY_FIELDS)
            label = impl_label(info)
            st = bench["stats"]
            row = {"median": st[stat], "min": st["min"], "rounds": st.get("rounds", 0)}
            row["impl"] = info["impl"]
            seen[key, label].append(row)
    for (key, label), rows in seen.items():
        if combine == "median":
            table[key][label] = {"median": statistics.median(r["median"] for r in rows),
                                 "min": min(r["min"] for r in rows),
                                 "rounds": sum(r["rounds"] for r in rows), "impl": rows[0]["impl"]}
        else:
            table[key][label] = min(rows, key=lambda r: r["median"])
    return table


def best(impls: dict, kind: str):
    cands = [(v["median"], name) for name, v in impls.items() if impl_kind(v["impl"]) == kind]
    return min(cands) if cands else (None, None)


def fmt_time(sec) -> str:
    if sec is None:
        return ""
    if sec < 1e-3:
        return f"{sec * 1e6:.0f} µs"
    if sec < 1:
        return f"{sec * 1e3:.3g} ms"
    return f"{sec:.3g} s"


def fmt_ratio(r) -> str:
    return "" if r is None else f"{r:.2f}×"


def speedups(table: dict):
    """Rows of (key, ours_label, ours_median, best_dense, dense_label, best_anchor, anchor_label)."""
    rows = []
    for key, impls in table.items():
        d_t, d_name = best(impls, "dense")
        a_t, a_name = best(impls, "anchor")
        for name, v in impls.items():
            if impl_kind(v["impl"]) != "ours":
                continue
            rows.append((key, name, v["median"], d_t, d_name, a_t, a_name))
    return rows


def _sort_key(key):
    return tuple(
        (0, "") if v is None else (1, v) if isinstance(v, (int, float)) else (2, str(v)) for v in key
    )


def markdown(table: dict, title: str, note: str = "") -> str:
    lines = [f"# {title}", ""]
    if note:
        lines += [note, ""]
    by_family = defaultdict(list)
    for key in table:
        by_family[key[0]].append(key)
    for family in sorted(by_family):
        keys = sorted(by_family[family], key=_sort_key)
        labels = sorted({name for k in keys for name in table[k]}, key=lambda n: (impl_kind(n), n))
        ours = [n for n in labels if impl_kind(n) == "ours"]
        lines += [f"## {family}", ""]
        lines.append(
            f"{STAT.capitalize()} time per call; speed-ups are ratios of {STAT} times against the fastest "
            "dense configuration (`numpy*`) and the fastest other anchor of the same row."
        )
        lines.append("")
        head = ["shape (N×K)", "dtype", "weights", "threads", "group", "sparsity", "batch"] + labels
        for o in ours:
            head += [f"{o} vs dense", f"{o} vs best anchor", "best anchor"]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for key in keys:
            info = dict(zip(KEY_FIELDS, key, strict=True))
            impls = table[key]
            sp = info["sparsity"]
            cells = [
                f"{info['N']}×{info['K']}",
                str(info["dtype"]),
                str(info["weights"]),
                str(info["threads"]),
                "" if info["group_size"] is None else str(info["group_size"]),
                "" if sp is None else f"{sp:.3g}",
                str(info["batch"]),
            ]
            cells += [fmt_time(impls[n]["median"]) if n in impls else "" for n in labels]
            d_t, _ = best(impls, "dense")
            a_t, a_name = best(impls, "anchor")
            for o in ours:
                t = impls.get(o, {}).get("median")
                cells.append(fmt_ratio(d_t / t) if t and d_t else "")
                cells.append(fmt_ratio(a_t / t) if t and a_t else "")
                cells.append(a_name or "")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot(table: dict, path: Path, title: str) -> bool:
    """Speed-up over the fastest dense configuration: vs sparsity, one panel per (family, batch); for a
    family without sparsity, vs batch, one panel. Returns False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot written", file=sys.stderr)
        return False
    panels = defaultdict(lambda: defaultdict(list))  # (family, batch|None) -> series -> [(x, y)]
    for key, impls in table.items():
        info = dict(zip(KEY_FIELDS, key, strict=True))
        d_t, _ = best(impls, "dense")
        if not d_t:
            continue
        by_sparsity = info["sparsity"] is not None
        panel = (info["family"], info["batch"] if by_sparsity else None)
        x = info["sparsity"] if by_sparsity else info["batch"]
        for name, v in impls.items():
            if impl_kind(v["impl"]) == "dense":
                continue
            extra = f", g={info['group_size']}" if info["group_size"] is not None else ""
            series = f"{name} {info['N']}×{info['K']} {info['weights']}{extra}"
            panels[panel][series].append((x, d_t / v["median"]))
    if not panels:
        return False
    names = sorted(panels, key=lambda p: (p[0], -1 if p[1] is None else p[1]))
    ncol = min(2, len(names))
    nrow = math.ceil(len(names) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(6.5 * ncol, 4.2 * nrow), squeeze=False)
    for ax, panel in zip(axes.flat, names, strict=False):
        family, batch = panel
        for series, pts in sorted(panels[panel].items()):
            pts.sort()
            xs, ys = zip(*pts, strict=True)
            ours = series.startswith("numaccel")
            ax.plot(xs, ys, marker="o" if ours else ".", lw=2.0 if ours else 1.0,
                    ls="-" if ours else "--", label=series)
        ax.axhline(1.0, color="gray", lw=0.8)
        ax.set_yscale("log")
        ax.set_ylabel("speed-up over fastest dense NumPy")
        if batch is None:
            ax.set_xscale("log", base=2)
            ax.set_xlabel("batch")
            ax.set_title(family)
        else:
            ax.set_xlabel("sparsity")
            ax.set_title(f"{family}, batch {batch}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json", nargs="+", help="pytest-benchmark JSON files (from --benchmark-json)")
    ap.add_argument("--out", required=True, help="output stem: writes STEM.md and STEM.png")
    ap.add_argument("--title", default="numaccel benchmarks")
    ap.add_argument("--note", default="", help="a paragraph placed under the title (conditions of the run)")
    ap.add_argument("--stat", choices=("median", "min"), default="median",
                    help="statistic compared (min resists interference on a shared machine)")
    ap.add_argument("--combine", choices=("best", "median"), default="best",
                    help="an implementation in several files: keep its fastest entry, or the median of them")
    args = ap.parse_args(argv)
    global STAT
    STAT = args.stat
    table = load(args.json, args.stat, args.combine)
    if not table:
        print("no benchmark with extra_info['impl'] and ['family'] found", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    md = markdown(table, args.title, args.note)
    out.with_suffix(".md").write_text(md + "\n", encoding="utf-8")
    wrote_png = plot(table, out.with_suffix(".png"), args.title)
    print(f"wrote {out.with_suffix('.md')}" + (f" and {out.with_suffix('.png')}" if wrote_png else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
