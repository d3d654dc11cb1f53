"""Table of the interleaved W8A8 rounds of ``bench/amx_rounds.sh``: per batch, each implementation's median
time over the rounds (the spread of the rounds' medians beside it), int8 TOP/s, the ratios the AMX
targets are stated in, and each numaccel figure's fraction of the host's ceiling (the roofline the suite's
processes recorded in ``machine_info``, :func:`numaccel.benchmarks.report.fraction`).

    python bench/amx_report.py bench/results/amx-rounds --out bench/results/amx.md
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

from numaccel.benchmarks import host as _host
from numaccel.benchmarks import report
from numaccel.benchmarks.roofline import describe

IMPLS = ["numaccel-w8a8-amx", "numaccel-w8a8-vnni", "torch-onednn", "torch-fbgemm"]
OURS = ["numaccel-w8a8-amx", "numaccel-w8a8-vnni"]


def load(folder: Path) -> tuple[dict, dict, dict]:
    """Per-round medians ``{(impl, batch): [s]}``, the recorded extra_info per (impl, batch), the host."""
    times: dict = defaultdict(list)
    extra: dict = {}
    desc = {}
    for path in sorted(folder.glob("amx_*_r*.json")):
        doc = json.loads(path.read_text())
        for bench in doc.get("benchmarks", []):
            info = bench["extra_info"]
            desc = info.get("host", desc)
            times[(info["impl"], info["batch"])].append(bench["stats"]["median"])
            extra[(info["impl"], info["batch"])] = info
    return times, extra, desc


def fmt(t: float) -> str:
    return f"{t * 1e3:.3f} ms" if t < 1 else f"{t:.2f} s"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    times, extra, desc = load(args.folder)
    machine = report.load_machine(sorted(args.folder.glob("amx_*_r*.json")))
    roof = machine["roofline"]
    batches = sorted({b for _, b in times})
    med = {key: statistics.median(v) for key, v in times.items()}
    rounds = max((len(v) for v in times.values()), default=0)
    lines = ["# W8A8 on AMX: 4096 x 4096, per-channel scales, cold weights", "",
             f"Host: {_host.line(machine['host'] or desc)}.",
             f"{rounds} interleaved rounds, one process per implementation and round; each cell the median of the "
             "rounds' medians, [lowest - highest round] beside it."]
    if roof:
        lines += [f"Roofline, measured in the same run (median of {roof['measurements']} measurements): "
                  f"{describe(roof)}.", "", report.FRACTION_TEXT]
    else:  # an older run: the roofline printed by bench/roofline.py, if any, without fractions
        txt = args.folder / "roofline.txt"
        roof_text = txt.read_text().strip() if txt.exists() else "not recorded"
        lines += ["Roofline measured in the same run:", "", "```", roof_text, "```"]
    head = ["batch"] + IMPLS + ["AMX TOP/s", "AMX vs onednn", "AMX vs VNNI", "planner"]
    if roof:
        head += [f"{o} of ceiling" for o in OURS]
    lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for b in batches:
        cells = []
        for impl in IMPLS:
            v = times.get((impl, b))
            cells.append(f"{fmt(med[(impl, b)])} [{fmt(min(v))} - {fmt(max(v))}]" if v else "-")
        amx, vnni, one = med.get(("numaccel-w8a8-amx", b)), med.get(("numaccel-w8a8-vnni", b)), med.get(
            ("torch-onednn", b))
        tops = f"{2 * b * 4096 * 4096 / amx / 1e12:.2f}" if amx else "-"
        r1 = f"{one / amx:.2f}x" if amx and one else "-"
        r2 = f"{vnni / amx:.2f}x" if amx and vnni else "-"
        pick = "-" if not (amx and vnni) else ("AMX" if amx < vnni else "VNNI")
        cells += [tops, r1, r2, f"faster: {pick}"]
        if roof:
            for o in OURS:
                info = extra.get((o, b))
                row = None if info is None else {"median": med[(o, b)], "nbytes": info.get("nbytes"),
                                                 "ops": info.get("ops"), "compute": info.get("compute")}
                cells.append(report.fmt_fraction(report.fraction(info, row, roof)) if row else "-")
        lines.append(f"| {b} | " + " | ".join(cells) + " |")
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
