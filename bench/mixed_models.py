"""Models that mix dense and numaccel layers: does the whole cost the sum of its parts?

    python bench/mixed_models.py [--batches 1 64] [--rounds 9] [--out bench/results/mixed_models.md]

MLP [1024, 4096, 4096, 10] (random weights, ReLU) with its layers stored uniformly (dense, int8, CSR 90 %)
and mixed (dense -> int8 -> dense, dense -> CSR 90 % -> dense). Per model and batch: the median latency
of a forward call over interleaved rounds (spread beside it), and the sum of the medians of its layers
timed alone (each layer called back to back, as in the model, weights hot: 84 MiB of dense weights fit a
300 MiB last-level cache, not a 32 MiB one). The ratio whole / sum is 1.0 when the layers do not slow each
other. Run it with ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE`` where those are set.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

import numaccel as na
from numaccel import _config
from numaccel.cli.demo import environment

SIZES = [1024, 4096, 4096, 10]


def _models():
    dense = na.nn.MLP.init(SIZES, seed=0)
    q = na.compress(dense, int8=True, format="int8")
    s = na.compress(dense, sparsity=0.9, format="csr")
    d = [layer.weight for layer in dense.linears]
    return {
        "dense": dense,
        "int8": q,
        "csr 90%": s,
        "dense -> int8 -> dense": dense.with_weights([d[0], q.linears[1].weight, d[2]]),
        "dense -> csr 90% -> dense": dense.with_weights([d[0], s.linears[1].weight, d[2]]),
    }


def _sample(fn, target=0.02) -> float:
    fn()
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t0
        if dt >= target or n >= 4096:
            return dt / n
        n *= 2


def run(batches, rounds):
    models = _models()
    rng = np.random.default_rng(0)
    rows = []
    for b in batches:
        x = rng.standard_normal((b, SIZES[0])).astype(np.float32)
        acts = {}
        for name, m in models.items():  # the inputs each layer sees in the model
            h, seen = x, []
            for layer in m.layers:
                if isinstance(layer, na.nn.Linear):
                    seen.append(h)
                h = layer(h)
            acts[name] = seen
        whole = {n: [] for n in models}
        parts = {n: [] for n in models}
        for _ in range(rounds):
            for name, m in models.items():
                time.sleep(0.25)  # let the previous model's spinning threads go to sleep
                whole[name].append(_sample(lambda m=m, x=x: m(x)))
                total = 0.0
                for layer, h in zip(m.linears, acts[name], strict=True):
                    time.sleep(0.25)
                    total += _sample(lambda layer=layer, h=h: layer(h))
                parts[name].append(total)
        for name in models:
            w, p = statistics.median(whole[name]), statistics.median(parts[name])
            rows.append((b, name, w, min(whole[name]), max(whole[name]), p, w / p))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--out", default=None)
    ap.add_argument("--blas-only", action="store_true", help="dense layers through BLAS at every batch")
    args = ap.parse_args(argv)
    if args.blas_only:
        _config.DENSE_USE_GEMV = False
    rows = run(args.batches, args.rounds)
    lines = ["# Mixed dense and numaccel layers (`python bench/mixed_models.py`)", "",
             f"Host: {_config.cpu_model()}; {environment()}; dense layers of at most "
             f"{_config.DENSE_GEMV_MAX_B} rows in numaccel's GEMV kernel: {_config.DENSE_USE_GEMV}", "",
             f"MLP {SIZES}, float32, {args.rounds} interleaved rounds, median [lowest-highest]", "",
             "| batch | model | whole model | sum of its layers alone | whole / sum |", "|---|---|---|---|---|"]
    for b, name, w, lo, hi, p, r in rows:
        lines.append(f"| {b} | {name} | {w * 1e3:.3f} ms [{lo * 1e3:.3f}-{hi * 1e3:.3f}] | {p * 1e3:.3f} ms | "
                     f"{r:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
