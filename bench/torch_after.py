"""Do numaccel's batch-1 calls slow down once torch or MKL has run in the process?

    python bench/torch_after.py [--rounds 5]

Times int8 and CSR 90 % ``linear`` on 4096 x 4096 weights (batch 1; a round is the median of 200
back-to-back calls) in three phases of one process: before torch is imported; after torch, each round
preceded by one ``torch.nn.Linear(4096, 4096)`` forward call and half a second's pause; after MKL, each round
preceded by one ``sparse_dot_mkl.dot_product_mkl`` call on a 4096 x 4096 CSR matrix and the same pause.
Prints each phase's median of rounds with its range and its ratio to the first phase. Needs torch
(``pip install torch==2.13.0``); the MKL phase runs where sparse_dot_mkl loads (the ``mkl`` wheel's
libmkl_rt is found as in ``numaccel bench``).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import numaccel as na
from numaccel import _config


def _median_us(x, w, n=200) -> float:
    na.linear(x, w)
    v = []
    for _ in range(n):
        t0 = time.perf_counter()
        na.linear(x, w)
        v.append(time.perf_counter() - t0)
    return statistics.median(v) * 1e6


def _phase(name, rounds, x, q, s, before=None, base=None):
    res = {"int8": [], "csr": []}
    for _ in range(rounds):
        if before is not None:
            before()
            time.sleep(0.5)
        res["int8"].append(_median_us(x, q))
        res["csr"].append(_median_us(x, s))
    med = {k: statistics.median(v) for k, v in res.items()}
    parts = []
    for k, v in res.items():
        ratio = f", {med[k] / base[k]:.2f}x" if base else ""
        parts.append(f"{k} {med[k]:.0f} us [{min(v):.0f}-{max(v):.0f}]{ratio}")
    print(f"{name}: " + "; ".join(parts))
    return med


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    W = rng.standard_normal((4096, 4096), dtype=np.float32)
    q, s = na.quantize(W), na.prune(W, 0.9)
    x = rng.standard_normal((1, 4096), dtype=np.float32)
    print(f"host: {_config.cpu_model()}, {_config.llc_bytes() >> 20} MiB LLC; int8 and CSR 90 %, 4096 x 4096, "
          f"batch 1; per phase the median of {args.rounds} rounds (each the median of 200 calls) [range], "
          "and its ratio to the first phase")
    base = _phase("before torch", args.rounds, x, q, s)
    import torch

    lin = torch.nn.Linear(4096, 4096)

    def torch_call():
        with torch.no_grad():
            lin(torch.ones(1, 4096))

    _phase("after a torch call", args.rounds, x, q, s, torch_call, base)
    from numaccel.benchmarks.suite_headline import _mkl_dot

    dot = _mkl_dot()
    if dot is None:
        print("after an MKL call: skipped (sparse_dot_mkl does not load)")
        return
    a = s.to_scipy()
    xm = np.ascontiguousarray(x.T)
    _phase("after an MKL call", args.rounds, x, q, s, lambda: dot(a, xm), base)


if __name__ == "__main__":
    main()
