"""Turn pytest-benchmark JSON files into Markdown tables and PNG plots, each figure beside its host's ceiling.

Works for any suite that follows the shared benchmark schema: each benchmark's ``extra_info`` holds
``family``, ``impl``, ``N``, ``K``, ``batch``, ``dtype``, ``sparsity``, ``group_size``, ``weights``,
``threads`` and ``device`` (optionally ``blas``, the BLAS configuration a dense anchor ran under, and what a
fraction of the ceiling needs: ``nbytes``, ``ops`` and ``compute``, see :func:`fraction`).

Implementations are sorted into three kinds by name: ``numaccel*`` (ours), ``numpy*`` (dense BLAS) and
everything else (anchors such as scipy, torch, mkl). Several JSON files may be given (for example
interleaved rounds, or a second run of the dense anchors under another BLAS configuration); rows with the
same parametrisation are merged and, where the same implementation appears more than once, the faster
median is kept (``combine="best"``) or the median over the files (``combine="median"``: for interleaved
rounds of every implementation on a machine whose speed drifts, each round's drift hits all alike).

Every table starts with the host line (``machine_info["host"]``, else the benchmarks' ``extra_info``) and
the roofline measured in the same run (``machine_info["roofline"]``, see
:mod:`numaccel.benchmarks.plugin`; the median of each ceiling over the files that hold one). Beside each
numaccel figure it gives its fraction of the ceiling (:func:`fraction`); files without a roofline (older
results) render without that column.

``python -m numaccel.benchmarks.report FILE.json ... --out STEM`` writes ``STEM.md`` and ``STEM.png``
(``--headline``: ``numaccel bench``'s one table and bar plot; ``bench/report.py`` is the same command).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from . import host as _host

__all__ = ["KEY_FIELDS", "MEMORY_BOUND_MAX_BATCH", "best", "fmt_ratio", "fmt_time", "fraction", "headline",
           "impl_kind", "impl_label", "load", "load_machine", "main", "markdown", "plot", "plot_speedups",
           "speedups"]

KEY_FIELDS = ("family", "device", "N", "K", "dtype", "weights", "threads", "group_size", "sparsity", "batch")
MEMORY_BOUND_MAX_BATCH = 8  # up to this batch a case is read against the bandwidth, above against a peak
_CEILINGS = {  # compute -> (roofline key, its unit in operations per second, label)
    "fp32": ("fma_gflops", 1e9, "GFLOP/s"),
    "int8-vnni": ("vnni_gops", 1e9, "GOP/s"),
    "int8-amx": ("amx_tops", 1e12, "TOP/s"),
}
FRACTION_TEXT = (
    "Fraction of ceiling (numaccel only): at batch <= 8 (memory-bound) the bytes of the weight read per "
    "second, `nbytes / time`, over the cold sgemv bandwidth `sgemv_gbs`; at larger batches the operations "
    "per second, `ops / time`, over the peak of the unit the kernel uses: the float32 FMA peak for CSR "
    "(`ops = 2·N·K·B·density`) and weight-only int8 (`2·N·K·B`), the VNNI or AMX int8 peak for W8A8 "
    "(`2·N·K·B` int8 operations). The bandwidth ceiling is NumPy's own cold sgemv (the roofline's, or the "
    "run's dense batch-1 rows where they read faster), not the DRAM's specification: a kernel that streams "
    "faster than BLAS shows more than 100 %."
)


def impl_kind(impl: str) -> str:
    """Return ``"ours"`` (``numaccel*``), ``"dense"`` (``numpy*``) or ``"anchor"``.

    Parameters
    ----------
    impl : str
        An implementation name (``extra_info["impl"]``).

    Returns
    -------
    str
        Its kind.

    Examples
    --------
    >>> from numaccel.benchmarks.report import impl_kind
    >>> [impl_kind(i) for i in ("numaccel-w8a8", "numpy", "scipy")]
    ['ours', 'dense', 'anchor']
    """
    if impl.startswith("numaccel"):
        return "ours"
    if impl.startswith("numpy"):
        return "dense"
    return "anchor"


def impl_label(info: dict) -> str:
    """Return the column label of a benchmark: its ``impl``, with ``[blas]`` where it records one."""
    impl = str(info.get("impl", "?"))
    blas = info.get("blas")
    return f"{impl}[{blas}]" if blas else impl


def load(paths, stat: str = "median", combine: str = "best") -> dict:
    """Read benchmark JSON files into ``{param_key: {impl_label: row}}``.

    Parameters
    ----------
    paths : iterable of path-like
        pytest-benchmark JSON files (``--benchmark-json``).
    stat : {"median", "min"}
        The statistic every comparison reads (stored as the row's ``median``).
    combine : {"best", "median"}
        An implementation found in several files keeps its fastest entry, or the median of their statistics
        (and the minimum of their minima).

    Returns
    -------
    dict
        Keys are tuples of :data:`KEY_FIELDS`; each row holds ``median`` (the chosen statistic), ``min``,
        ``rounds``, ``impl``, ``runs`` (the statistic of every file, for the spread), ``nbytes``, ``ops``
        and ``compute`` (None where the suite did not record them).

    Raises
    ------
    ValueError
        If ``stat`` or ``combine`` is not one of the values above, or a file is not JSON.
    """
    if stat not in ("median", "min"):
        raise ValueError(f"stat must be 'median' or 'min', got {stat!r}")
    if combine not in ("best", "median"):
        raise ValueError(f"combine must be 'best' or 'median', got {combine!r}")
    table: dict = defaultdict(dict)
    seen: dict = defaultdict(list)
    for path in paths:
        doc = _read(path)
        for bench in doc.get("benchmarks", []):
            info = bench.get("extra_info") or {}
            if "impl" not in info or "family" not in info:
                continue
            key = tuple(info.get(f) for f in KEY_FIELDS)
            st = bench["stats"]
            seen[key, impl_label(info)].append({
                "median": st[stat], "min": st["min"], "rounds": st.get("rounds", 0), "impl": info["impl"],
                "nbytes": info.get("nbytes"), "ops": info.get("ops"), "compute": info.get("compute"),
            })
    for (key, label), rows in seen.items():
        runs = [r["median"] for r in rows]
        if combine == "median":
            row = dict(rows[0], median=statistics.median(runs), min=min(r["min"] for r in rows),
                       rounds=sum(r["rounds"] for r in rows))
        else:
            row = dict(min(rows, key=lambda r: r["median"]))
        row["runs"] = runs
        table[key][label] = row
    return table


def _read(path) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except ValueError as exc:
        raise ValueError(f"{path}: not a JSON file ({exc})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: a pytest-benchmark JSON holds an object, got {type(doc).__name__}")
    return doc


def load_machine(paths) -> dict:
    """Return the host and the roofline recorded in benchmark JSON files.

    Parameters
    ----------
    paths : iterable of path-like
        pytest-benchmark JSON files.

    Returns
    -------
    dict
        ``host``: the first :func:`numaccel.benchmarks.host.describe` found (``machine_info["host"]``, else a
        benchmark's ``extra_info["host"]``), or None; ``roofline``: each ceiling's median over the files
        whose ``machine_info`` holds a roofline (None for a ceiling no file measured), with ``measurements``
        (how many files), or None where no file has one. Where the files also time dense NumPy (``impl``
        ``"numpy"``, float32) at batch 1 on cold weights (the product the roofline's sgemv times, over more
        calls), the bandwidth ceiling ``sgemv_gbs`` is the higher of the roofline's and the fastest such
        case's (its median over the files), so that no figure is read against a ceiling the run itself
        exceeded; ``sgemv_gbs_roofline`` and ``sgemv_gbs_dense`` then keep both.
    """
    desc, roofs = None, []
    dense = defaultdict(list)  # case -> GB/s of dense NumPy at batch 1 on cold weights, one per file
    for path in paths:
        doc = _read(path)
        for b in doc.get("benchmarks", []):
            info, stats = b.get("extra_info") or {}, b.get("stats") or {}
            nbytes, t = info.get("nbytes"), stats.get("median")
            if (info.get("impl") == "numpy" and info.get("batch") == 1 and info.get("dtype") == "float32"
                    and info.get("weights") == "cold" and info.get("device", "cpu") == "cpu"
                    and isinstance(nbytes, (int, float)) and isinstance(t, (int, float)) and nbytes > 0 and t > 0):
                dense[(info.get("family"), info.get("N"), info.get("K"))].append(nbytes / t / 1e9)
        mi = doc.get("machine_info") or {}
        if desc is None:
            desc = mi.get("host") or next(((b.get("extra_info") or {}).get("host") for b in doc.get("benchmarks", [])
                                           if (b.get("extra_info") or {}).get("host")), None)
        if isinstance(mi.get("roofline"), dict):
            roofs.append(mi["roofline"])
    if not roofs:
        return {"host": desc, "roofline": None}
    roof: dict = {"host": roofs[0].get("host"), "threads": roofs[0].get("threads"),
                  "quick": any(r.get("quick") for r in roofs), "measurements": len(roofs)}
    for name in ("sgemv_gbs", "fma_gflops", "vnni_gops", "amx_tops"):
        values = [r[name] for r in roofs if isinstance(r.get(name), (int, float))]
        roof[name] = statistics.median(values) if values else None
    if dense:
        best_dense = max(statistics.median(v) for v in dense.values())
        if roof["sgemv_gbs"] is None or best_dense > roof["sgemv_gbs"]:
            roof["sgemv_gbs_roofline"], roof["sgemv_gbs_dense"] = roof["sgemv_gbs"], best_dense
            roof["sgemv_gbs"] = best_dense
    return {"host": desc, "roofline": roof}


def fraction(info: dict, row: dict, roof: dict | None):
    """Return a figure's fraction of its host's ceiling, and what it achieved.

    Parameters
    ----------
    info : dict
        The case: ``batch`` and ``device`` (a :data:`KEY_FIELDS` mapping).
    row : dict
        The implementation's row of :func:`load`: ``median`` (seconds per call), ``nbytes``, ``ops``,
        ``compute``.
    roof : dict or None
        The roofline (:func:`numaccel.benchmarks.roofline.measure`'s keys).

    Returns
    -------
    tuple or None
        ``(fraction, achieved, unit)``: at batch <= :data:`MEMORY_BOUND_MAX_BATCH`,
        ``(nbytes / t) / sgemv_gbs`` and GB/s; above it, ``(ops / t) / peak`` of the unit named by
        ``compute`` (``fp32``: the FMA peak, ``int8-vnni``, ``int8-amx``) in its unit. None without a
        roofline, off the CPU, or where the suite did not record what the fraction needs.

    Examples
    --------
    >>> from numaccel.benchmarks.report import fraction
    >>> fraction({"batch": 1, "device": "cpu"}, {"median": 1e-3, "nbytes": 20_000_000}, {"sgemv_gbs": 40.0})
    (0.5, 20.0, 'GB/s')
    """
    t = row.get("median")
    if not roof or not t or info.get("device", "cpu") != "cpu":
        return None
    if (info.get("batch") or 1) <= MEMORY_BOUND_MAX_BATCH:
        ceiling, nbytes = roof.get("sgemv_gbs"), row.get("nbytes")
        if not ceiling or not nbytes:
            return None
        achieved = nbytes / t / 1e9
        return achieved / ceiling, achieved, "GB/s"
    if row.get("compute") not in _CEILINGS or not row.get("ops"):
        return None
    name, scale, unit = _CEILINGS[row["compute"]]
    if not roof.get(name):
        return None
    achieved = row["ops"] / t / scale
    return achieved / roof[name], achieved, unit


def fmt_fraction(fr) -> str:
    """Return ``"83 % (43.1 GB/s)"`` for a :func:`fraction` result, ``""`` for None."""
    if fr is None:
        return ""
    value, achieved, unit = fr
    return f"{100 * value:.0f} % ({achieved:.3g} {unit})"


def best(impls: dict, kind: str):
    """Return ``(median, label)`` of the fastest implementation of ``kind`` in a row, ``(None, None)`` if none."""
    cands = [(v["median"], name) for name, v in impls.items() if impl_kind(v["impl"]) == kind]
    return min(cands) if cands else (None, None)


def fmt_time(sec) -> str:
    """Return seconds as ``"232 µs"``, ``"1.57 ms"`` or ``"2.1 s"`` (``""`` for None).

    Examples
    --------
    >>> from numaccel.benchmarks.report import fmt_time
    >>> fmt_time(2.32e-4), fmt_time(1.57e-3)
    ('232 µs', '1.57 ms')
    """
    if sec is None:
        return ""
    if sec < 1e-3:
        return f"{sec * 1e6:.0f} µs"
    if sec < 1:
        return f"{sec * 1e3:.3g} ms"
    return f"{sec:.3g} s"


def fmt_ratio(r) -> str:
    """Return a ratio as ``"5.60×"`` (``""`` for None)."""
    return "" if r is None else f"{r:.2f}×"


def _fmt_spread(row: dict) -> str:
    runs = row.get("runs") or []
    text = fmt_time(row["median"])
    if len(runs) > 1:
        text += f" [{fmt_time(min(runs))}–{fmt_time(max(runs))}]"
    return text


def speedups(table: dict):
    """Rows of ``(key, ours_label, ours_median, best_dense, dense_label, best_anchor, anchor_label)``."""
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


def _heading(title: str, note: str, machine: dict | None) -> list:
    """Return a table's first lines: the heading, the host and roofline lines, and the note."""
    lines = [f"# {title}", ""] + _preamble(machine)
    if note:
        lines += [note, ""]
    return lines


def _preamble(machine: dict | None) -> list:
    """Return the host line and the roofline, as the first lines under a table's title."""
    machine = machine or {}
    lines = []
    desc, roof = machine.get("host"), machine.get("roofline")
    if desc:
        lines.append(f"Host: {_host.line(desc)}.")
    elif roof and roof.get("host"):
        lines.append(f"Host: {roof['host']}.")
    if roof:
        from .roofline import describe  # imported here: reading a report needs no Numba kernels

        n = roof.get("measurements", 1)
        how = f"median of {n} measurements" if n > 1 else "one measurement"
        raised = roof.get("sgemv_gbs_dense") is not None
        shown = dict(roof, sgemv_gbs=roof.get("sgemv_gbs_roofline")) if raised else roof
        lines.append(f"Roofline, measured in the same run ({how}{', quick' if roof.get('quick') else ''}): "
                     f"{describe(shown)}.")
        if raised:
            lines[-1] += (f" The bandwidth ceiling is the {roof['sgemv_gbs_dense']:.3g} GB/s that dense NumPy's "
                          f"sgemv reached in this run's batch-1 rows on cold weights, above the roofline's own "
                          f"sgemv.")
    return lines + [""] if lines else []


def markdown(table: dict, title: str, note: str = "", *, stat: str = "median", machine: dict | None = None) -> str:
    """Return one Markdown table per family: every implementation's time, speed-ups and fractions of ceiling.

    Parameters
    ----------
    table : dict
        :func:`load`'s result.
    title : str
        The heading.
    note : str
        A paragraph under the heading (the conditions of the run).
    stat : {"median", "min"}, keyword-only
        The statistic the rows hold (named in the text).
    machine : dict, optional, keyword-only
        :func:`load_machine`'s result: the host line and the roofline go under the heading, and each
        numaccel implementation gets a column with its fraction of the ceiling (none without a roofline).

    Returns
    -------
    str
        The Markdown text.
    """
    roof = (machine or {}).get("roofline")
    lines = _heading(title, note, machine)
    by_family = defaultdict(list)
    for key in table:
        by_family[key[0]].append(key)
    for family in sorted(by_family):
        keys = sorted(by_family[family], key=_sort_key)
        labels = sorted({name for k in keys for name in table[k]}, key=lambda n: (impl_kind(n), n))
        ours = [n for n in labels if impl_kind(n) == "ours"]
        lines += [f"## {family}", ""]
        lines.append(
            f"{stat.capitalize()} time per call; speed-ups are ratios of {stat} times against the fastest "
            "dense configuration (`numpy*`) and the fastest other anchor of the same row."
        )
        if roof:
            lines += ["", FRACTION_TEXT]
        lines.append("")
        head = ["shape (N×K)", "dtype", "weights", "threads", "group", "sparsity", "batch"] + labels
        for o in ours:
            head += [f"{o} vs dense", f"{o} vs best anchor", "best anchor"]
            if roof:
                head.append(f"{o} of ceiling")
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
                if roof:
                    cells.append(fmt_fraction(fraction(info, impls[o], roof)) if o in impls else "")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


_NAMES = {  # (family, impl) -> the name the headline table prints
    ("csr", "numaccel"): "numaccel CSR",
    ("csr", "numaccel-cuda"): "numaccel CSR, CUDA",
    ("csr", "scipy"): "scipy.sparse",
    ("csr", "mkl"): "MKL (sparse_dot_mkl)",
    ("csr", "torch"): "torch.sparse",
    ("int8", "numaccel"): "numaccel int8 weight-only",
    ("int8", "numaccel-cuda"): "numaccel int8 weight-only, CUDA",
    ("int8", "numaccel-w8a8"): "numaccel W8A8",
    ("int8", "numaccel-w8a8-cuda"): "numaccel W8A8, CUDA",
    ("int8", "torch-dynamic-int8"): "torch dynamic int8 (fbgemm)",
    ("int8", "torch-onednn-int8"): "torch dynamic int8 (onednn)",
}


def _case(info: dict) -> str:
    shape = f"{info['N']}×{info['K']}"
    if info["family"] == "csr" and info["sparsity"] is not None:
        what = f"CSR {100 * info['sparsity']:g} % pruned"
    elif info["family"] == "int8":
        what = "int8 per-channel" if info["group_size"] is None else f"int8 groups of {info['group_size']}"
    else:
        what = str(info["family"])
    return f"{what}, {shape}, {info['weights']}"


def _display(family, row: dict, label: str) -> str:
    impl = row["impl"]
    if impl_kind(impl) == "dense":
        return "NumPy dense fp32"
    name = _NAMES.get((family, impl), label)
    return f"**{name}**" if impl_kind(impl) == "ours" else name


def headline(table: dict, title: str, note: str = "", *, machine: dict | None = None) -> str:
    """Return one Markdown table of every case and implementation, numaccel's rows first in each case.

    Columns: the case, the batch, the implementation, its time per call (median over the files, the
    lowest and highest file's statistic in brackets when there are several), its speed-up over dense NumPy
    (the same case on the CPU), for numaccel the speed-up over the fastest other library and the fraction of
    the host's ceiling (:func:`fraction`; the column is left out without a roofline).

    Parameters
    ----------
    table : dict
        :func:`load`'s result (``combine="median"`` for interleaved rounds).
    title : str
        The heading.
    note : str
        A paragraph under the heading.
    machine : dict, optional, keyword-only
        :func:`load_machine`'s result.

    Returns
    -------
    str
        The Markdown text.
    """
    roof = (machine or {}).get("roofline")
    lines = _heading(title, note, machine)
    lines.append("Time per call: the median over the rounds of each round's median, [fastest–slowest round]. "
                 "Speed-ups are ratios of those medians: over dense NumPy (float32 BLAS, sgemv at batch 1) in "
                 "the same case, and over the fastest other library.")
    if roof:
        lines += ["", FRACTION_TEXT]
    lines.append("")
    head = ["case", "batch", "implementation", "time per call", "vs NumPy", "vs fastest other library"]
    if roof:
        head.append("of ceiling")
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    order = {"ours": 0, "dense": 1, "anchor": 2}
    for key in sorted(table, key=lambda k: _sort_key((k[0], k[1] != "cpu") + k[2:])):
        info = dict(zip(KEY_FIELDS, key, strict=True))
        impls = table[key]
        cpu = table.get(tuple("cpu" if f == "device" else v for f, v in zip(KEY_FIELDS, key, strict=True)), {})
        d_t, _ = best(cpu, "dense")
        a_t, a_name = best(cpu, "anchor")
        first = True
        for label, row in sorted(impls.items(), key=lambda kv: (order[impl_kind(kv[1]["impl"])], kv[1]["median"])):
            kind = impl_kind(row["impl"])
            t = row["median"]
            cells = [_case(info) if first else "", str(info["batch"]) if first else "",
                     _display(info["family"], row, label), _fmt_spread(row),
                     fmt_ratio(d_t / t) if d_t and t and kind != "dense" else ""]
            if kind == "ours" and a_t and t:
                cells.append(f"{fmt_ratio(a_t / t)} ({_display(info['family'], cpu[a_name], a_name)})")
            else:
                cells.append("")
            if roof:
                cells.append(fmt_fraction(fraction(info, row, roof)) if kind == "ours" else "")
            lines.append("| " + " | ".join(cells) + " |")
            first = False
    lines.append("")
    return "\n".join(lines)


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def plot(table: dict, path: Path, title: str) -> bool:
    """Draw the speed-up over the fastest dense configuration into a PNG; False (nothing written) without matplotlib.

    Against sparsity, one panel per (family, batch); for a family without sparsity, against batch, one
    panel.
    """
    plt = _pyplot()
    if plt is None:
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


def plot_speedups(table: dict, path: Path, title: str) -> bool:
    """Draw every implementation's speed-up over dense NumPy, one group of bars per case and batch.

    Returns False (nothing written) without matplotlib or without a dense NumPy figure to divide by.
    """
    plt = _pyplot()
    if plt is None:
        return False
    groups, series = [], defaultdict(dict)
    for key in sorted(table, key=lambda k: _sort_key((k[0], k[1] != "cpu") + k[2:])):
        info = dict(zip(KEY_FIELDS, key, strict=True))
        cpu = table.get(tuple("cpu" if f == "device" else v for f, v in zip(KEY_FIELDS, key, strict=True)), {})
        d_t, _ = best(cpu, "dense")
        if not d_t:
            continue
        group = f"{_case(info).split(',')[0]}\nB={info['batch']}" + ("" if info["device"] == "cpu" else " (GPU)")
        groups.append(group)
        for label, row in table[key].items():
            if impl_kind(row["impl"]) != "dense":
                series[_display(info["family"], row, label).strip("*")][group] = d_t / row["median"]
    if not series:
        return False
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(groups)), 4.5))
    names = sorted(series, key=lambda name: (not name.startswith("numaccel"), name))
    colors = {name: f"C{i % 10}" for i, name in enumerate(names)}
    per_group = [[name for name in names if g in series[name]] for g in groups]
    width = 0.8 / max(len(p) for p in per_group)
    labelled = set()
    for x, (g, present) in enumerate(zip(groups, per_group, strict=True)):
        left = x - width * len(present) / 2
        for j, name in enumerate(present):
            ax.bar(left + width * (j + 0.5), series[name][g], width, color=colors[name],
                   edgecolor="black" if name.startswith("numaccel") else None,
                   label=None if name in labelled else name)
            labelled.add(name)
    ax.axhline(1.0, color="gray", lw=0.8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(groups)), groups, fontsize=8)
    ax.set_ylabel("speed-up over dense NumPy (median)")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv=None) -> int:
    """Command line: JSON files in, ``STEM.md`` and ``STEM.png`` out (``--help`` for the options)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json", nargs="+", help="pytest-benchmark JSON files (from --benchmark-json)")
    ap.add_argument("--out", required=True, help="output stem: writes STEM.md and STEM.png")
    ap.add_argument("--title", default="numaccel benchmarks")
    ap.add_argument("--note", default="", help="a paragraph placed under the title (conditions of the run)")
    ap.add_argument("--stat", choices=("median", "min"), default="median",
                    help="statistic compared (min resists interference on a shared machine)")
    ap.add_argument("--combine", choices=("best", "median"), default="best",
                    help="an implementation in several files: keep its fastest entry, or the median of them")
    ap.add_argument("--headline", action="store_true",
                    help="one table of every case (numaccel bench's layout) and a bar plot, instead of one table "
                         "per family")
    args = ap.parse_args(argv)
    try:
        table = load(args.json, args.stat, args.combine)
        machine = load_machine(args.json)
    except (OSError, ValueError) as exc:
        print(f"report: {exc}", file=sys.stderr)
        return 2
    if not table:
        print("no benchmark with extra_info['impl'] and ['family'] found", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.headline:
        md = headline(table, args.title, args.note, machine=machine)
    else:
        md = markdown(table, args.title, args.note, stat=args.stat, machine=machine)
    out.with_suffix(".md").write_text(md + "\n", encoding="utf-8")
    wrote_png = (plot_speedups if args.headline else plot)(table, out.with_suffix(".png"), args.title)
    print(f"wrote {out.with_suffix('.md')}" + (f" and {out.with_suffix('.png')}" if wrote_png else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
