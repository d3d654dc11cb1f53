"""Models that mix dense and numaccel layers: does the whole cost the sum of its parts?

    python bench/mixed_models.py [--batches 1 64] [--rounds 9] [--weights cold|hot] [--out FILE]

MLP [1024, 4096, 4096, 10] (random weights, ReLU) with its layers stored uniformly (dense, int8, CSR 90 %)
and mixed (dense -> int8 -> dense, dense -> CSR 90 % -> dense). Per model and batch: the median latency
of a forward call over interleaved rounds (spread beside it), and the sum of the medians of its layers
timed alone (each layer called back to back, as in the model). The ratio whole / sum is 1.0 when the
layers do not slow each other.

Whole and parts must meet their weights in the same state, or the ratio measures the cache instead of the
threads: a mixed model's weights (34 MB for dense -> int8 -> dense) overflow a 32 MiB last-level cache
while each layer alone fits it. ``--weights cold`` (the default) rotates every call through copies of the
model that together exceed twice the host's last-level cache (sysfs), the whole model's and each layer's
alike, so every weight comes from memory in both; ``--weights hot`` calls one copy. Run it with
``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE`` where those are set.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import statistics
import sys
import time

import numpy as np

import numaccel as na
from numaccel import _config
from numaccel.benchmarks import host
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


def _sample(fns, target=0.02) -> float:
    """Seconds per call, calling ``fns`` in turn (a different weight copy each call) for at least ``target``."""
    for fn in fns:
        fn()
    calls = itertools.cycle(fns)
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            next(calls)()
        dt = time.perf_counter() - t0
        if dt >= target or n >= 4096:
            return dt / n
        n *= 2


def _nbytes(model) -> int:
    return sum(layer.weight.nbytes for layer in model.linears)


def run(batches, rounds, weights="cold"):
    models = _models()
    copies = {}
    for name, m in models.items():
        n = host.cold_copies(_nbytes(m)) if weights == "cold" else 1
        copies[name] = [m] + [copy.deepcopy(m) for _ in range(n - 1)]
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
            for name in models:
                time.sleep(0.25)  # let the previous model's spinning threads go to sleep
                whole[name].append(_sample([lambda c=c, x=x: c(x) for c in copies[name]]))
                total = 0.0
                for i, h in enumerate(acts[name]):
                    time.sleep(0.25)
                    total += _sample([lambda layer=c.linears[i], h=h: layer(h) for c in copies[name]])
                parts[name].append(total)
        for name in models:
            w, p = statistics.median(whole[name]), statistics.median(parts[name])
            rows.append((b, name, w, min(whole[name]), max(whole[name]), p, w / p))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--weights", choices=("cold", "hot"), default="cold")
    ap.add_argument("--out", default=None)
    ap.add_argument("--blas-only", action="store_true",
                    help="dense layers through numpy.matmul (BLAS's own threads) at every batch")
    args = ap.parse_args(argv)
    if args.blas_only:
        _config.DENSE_USE_GEMV = False
        _config.DENSE_SPLIT_BLAS = False
    rows = run(args.batches, args.rounds, args.weights)
    lines = ["# Mixed dense and numaccel layers (`python bench/mixed_models.py`)", "",
             f"Host: {_config.cpu_model()}; {environment()}; dense layers of at most "
             f"{_config.DENSE_GEMV_MAX_B} rows in numaccel's GEMV kernel: {_config.DENSE_USE_GEMV}; larger ones in "
             f"single-threaded OpenBLAS calls on Numba's threads: {_config.DENSE_SPLIT_BLAS}", "",
             f"MLP {SIZES}, float32, {args.weights} weights, {args.rounds} interleaved rounds, "
             "median [lowest-highest]", "",
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
