"""Pruned-int8 against fp32 CSR in one process, call by call: 4096 x 4096, 90 % unstructured, cold weights.

Each format's copies together exceed twice the host's last-level cache (sysfs); a round times one call on
every copy of fp32 CSR, then on every copy of pruned-int8, so a drift of the shared machine's speed hits
both alike. Pruned-int8 runs weight-only and, at batch > 1, W8A8 (``activation_quant="int8"``, on the same
copies). Prints the host, and per batch the median over rounds of each round's median with its range,
and the per-round ratios against fp32 CSR.

    python bench/csr_int8_pair.py [BATCH ...]        (default: 1 64 256)
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np

import numaccel as na
from numaccel.benchmarks import host

ROUNDS = 5


def _copies(w) -> list:
    n = host.cold_copies(w.nbytes)
    return [w] + [w.row_block(0, w.shape[0]) for _ in range(n - 1)]


def main(batches) -> None:
    rng = np.random.default_rng(0)
    n = k = 4096
    c = na.prune(rng.standard_normal((n, k), dtype=np.float32), 0.9)
    qs = _copies(na.quantize(c))
    # name: (weights, activation_quant); W8A8 runs batched calls only (at batch 1 it is not what one picks)
    formats = {"fp32 CSR": (_copies(c), None), "pruned-int8": (qs, None), "pruned-int8 W8A8": (qs, "int8")}
    print(host.line())
    for b in batches:
        x = rng.standard_normal((b, k), dtype=np.float32)
        if b == 1:
            x = x[0]
        here = {name: f for name, f in formats.items() if b > 1 or f[1] is None}
        for ws, aq in here.values():
            for w in ws:
                na.linear(x, w, activation_quant=aq)
        res = {name: [] for name in here}
        for _ in range(ROUNDS):
            for name, (ws, aq) in here.items():
                ts = []
                for w in ws:
                    t0 = time.perf_counter()
                    na.linear(x, w, activation_quant=aq)
                    ts.append(time.perf_counter() - t0)
                res[name].append(statistics.median(ts))
        base, a = next(iter(res.items()))
        ma = statistics.median(a)
        parts = [f"B={b}: {base} {ma * 1e3:.3f} ms [{min(a) * 1e3:.3f}-{max(a) * 1e3:.3f}]"]
        for name, q in list(res.items())[1:]:
            mq = statistics.median(q)
            per = ", ".join(f"{ra / rq:.2f}" for ra, rq in zip(a, q, strict=True))
            parts.append(f"{name} {mq * 1e3:.3f} ms [{min(q) * 1e3:.3f}-{max(q) * 1e3:.3f}], speed-up "
                         f"{ma / mq:.2f}x (per round: {per})")
        print("; ".join(parts), flush=True)


if __name__ == "__main__":
    main([int(v) for v in sys.argv[1:]] or [1, 64, 256])
