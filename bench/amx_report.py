"""Table of the interleaved W8A8 rounds of ``bench/amx_rounds.sh``: per batch, each implementation's median
time over the rounds (the spread of the rounds' medians beside it), int8 TOP/s, and the ratios the AMX
targets are stated in.

    python bench/amx_report.py bench/results/amx-rounds --out bench/results/amx.md
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path


def load(folder: Path) -> tuple[dict, dict]:
    times: dict = defaultdict(list)
    host = {}
    for path in sorted(folder.glob("amx_*_r*.json")):
        doc = json.loads(path.read_text())
        for bench in doc.get("benchmarks", []):
            info = bench["extra_info"]
            host = info.get("host", host)
            times[(info["impl"], info["batch"])].append(bench["stats"]["median"])
    return times, host


def fmt(t: float) -> str:
    return f"{t * 1e3:.3f} ms" if t < 1 else f"{t:.2f} s"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    times, host = load(args.folder)
    impls = ["numaccel-w8a8-amx", "numaccel-w8a8-vnni", "torch-onednn", "torch-fbgemm"]
    batches = sorted({b for _, b in times})
    med = {key: statistics.median(v) for key, v in times.items()}
    rounds = max((len(v) for v in times.values()), default=0)
    roof = (args.folder / "roofline.txt").read_text().strip() if (args.folder / "roofline.txt").exists() else ""
    lines = ["# W8A8 on AMX: 4096 x 4096, per-channel scales, cold weights", "",
             f"Host: {host.get('cpu_model', '?')}, {host.get('logical_cpus', '?')} logical CPUs at "
             f"{host.get('mhz', 0):.0f} MHz, caches "
             f"{', '.join(f'{k} {v / 2**20:g} MiB' for k, v in host.get('caches', {}).items())}, "
             f"ISA {' '.join(host.get('isa', []))}.",
             f"{rounds} interleaved rounds, one process per implementation and round; each cell the median of the "
             f"rounds' medians, [lowest - highest round] beside it. Roofline measured in the same run:", "",
             "```", roof, "```", "",
             "| batch | " + " | ".join(impls) + " | AMX TOP/s | AMX vs onednn | AMX vs VNNI | planner |",
             "|" + "---|" * (len(impls) + 5)]
    for b in batches:
        cells = []
        for impl in impls:
            v = times.get((impl, b))
            cells.append(f"{fmt(med[(impl, b)])} [{fmt(min(v))} - {fmt(max(v))}]" if v else "-")
        amx, vnni, one = med.get(("numaccel-w8a8-amx", b)), med.get(("numaccel-w8a8-vnni", b)), med.get(
            ("torch-onednn", b))
        tops = f"{2 * b * 4096 * 4096 / amx / 1e12:.2f}" if amx else "-"
        r1 = f"{one / amx:.2f}x" if amx and one else "-"
        r2 = f"{vnni / amx:.2f}x" if amx and vnni else "-"
        pick = "-" if not (amx and vnni) else ("AMX" if amx < vnni else "VNNI")
        lines.append(f"| {b} | " + " | ".join(cells) + f" | {tops} | {r1} | {r2} | faster: {pick} |")
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
