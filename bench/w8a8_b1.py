"""W8A8 (VNNI) at batch 1: one panel at a time per thread (``panels``) against four side by side (``streams``).

Both through ``na.linear(x, w, activation_quant="int8")`` with the variant forced (choice ``w8a8-gemv``),
on per-channel int8 weights, cold (each call reads the next of copies that together exceed twice the
last-level cache) and hot (one copy), in interleaved rounds in one process:

    python bench/w8a8_b1.py --rounds 7

Prints one line per case: the median over the rounds (each the median of its calls) with the range, and
the bytes of codes read per second.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import numaccel as na
from numaccel import _config
from numaccel.benchmarks import host
from numaccel.plan import int8 as plan_int8
from numaccel.plan import wisdom

VARIANTS = wisdom.CHOICES["w8a8-gemv"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=60)
    ap.add_argument("--shapes", default="4096x4096,1024x4096")
    args = ap.parse_args()
    if not plan_int8._USE_VNNI:
        raise SystemExit("this host has no AVX-512 VNNI: W8A8 runs the portable kernel, with no variants")
    print(host.line(), f"; {_config.num_threads()} threads")
    rng = np.random.default_rng(0)
    for shape in args.shapes.split(","):
        n, k = (int(s) for s in shape.split("x"))
        W = rng.standard_normal((n, k)).astype(np.float32)
        copies = [na.quantize(W) for _ in range(host.cold_copies(n * k))]
        x = rng.standard_normal((1, k)).astype(np.float32)

        def run(variant, w, x=x):
            with wisdom.forced({"w8a8-gemv": variant}):
                return na.linear(x, w, activation_quant="int8")

        first = [run(v, copies[0]) for v in VARIANTS]
        assert all(np.array_equal(first[0], o) for o in first[1:]), "the variants must agree bit for bit"
        res = {(m, v): [] for m in ("cold", "hot") for v in VARIANTS}
        i = 0
        for _ in range(args.rounds):
            for (mode, v), out in res.items():
                ts = []
                for _ in range(args.calls):
                    w = copies[i % len(copies)] if mode == "cold" else copies[0]
                    i += 1
                    t0 = time.perf_counter()
                    run(v, w)
                    ts.append(time.perf_counter() - t0)
                out.append(statistics.median(ts))
        for (mode, v), s in res.items():
            m = statistics.median(s)
            print(f"W8A8 B=1 {n}x{k} {mode} {v}: {m * 1e6:.0f} us [{min(s) * 1e6:.0f}-{max(s) * 1e6:.0f}], "
                  f"{n * k / m / 1e9:.1f} GB/s of codes")


if __name__ == "__main__":
    main()
