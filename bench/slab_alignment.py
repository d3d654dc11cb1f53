"""Packed activations of the CSR kernels on a cache line against where NumPy puts them.

The tile kernels load each nonzero's row of a slab of packed activations (8 to 64 float32, or 4-byte
groups of uint8 for pruned-int8 W8A8) as 64-byte vectors. NumPy promises 16-byte alignment only, so a row
may straddle two cache lines and cost a second line per load. The slabs now start on a line; variant
"numpy" allocates them with ``np.empty`` as before. Cold weights (copies exceeding twice the host's
last-level cache), one process, alternating rounds of 20 calls; prints per case the median call time of
the rounds with their range and the median of the per-round ratios numpy / aligned.

    python bench/slab_alignment.py
"""

from __future__ import annotations

import time
import types

import numpy as np

import numaccel as na
from numaccel.benchmarks import host
from numaccel.plan import csr as plan_csr
from numaccel.plan import csr_int8 as plan_csr_int8

CASES = [  # (N, K, batch, format); 90 % sparsity
    (4096, 4096, 8, "csr"),
    (4096, 1024, 16, "csr"),
    (1024, 1024, 32, "csr"),
    (4096, 4096, 64, "csr-int8 w8a8"),
    (1024, 1024, 32, "csr-int8 w8a8"),
]


def _numpy_slabs(shape):
    count = shape[0] * shape[1] * shape[2]
    if not plan_csr._config.CSR_SLAB_KEEP_MIN <= 4 * count <= plan_csr._config.CSR_SLAB_KEEP_BYTES:
        return np.empty(shape, dtype=np.float32)
    return _aligned_slabs(shape)


_aligned_slabs = plan_csr._slab_array
_numpy_module = types.SimpleNamespace(**{a: getattr(np, a) for a in dir(np) if not a.startswith("__")})
_aligned_u8 = plan_csr_int8.aligned_empty


def _use(variant: str) -> None:
    numpy = variant == "numpy"
    plan_csr._slab_array = _numpy_slabs if numpy else _aligned_slabs
    plan_csr_int8.aligned_empty = (lambda shape, dtype: np.empty(shape, dtype)) if numpy else _aligned_u8


def main() -> None:
    rng = np.random.default_rng(0)
    print(host.line())
    for n, k, b, fmt in CASES:
        dense = rng.standard_normal((n, k), dtype=np.float32)
        w8a8 = fmt != "csr"

        def make(dense=dense, w8a8=w8a8):
            w = na.prune(dense, 0.9)
            return na.quantize(w) if w8a8 else w

        w = make()
        nbytes = sum(a.nbytes for a in (w.indptr, w.indices, w.qdata if w8a8 else w.data))
        ws = [w] + [make() for _ in range(host.cold_copies(nbytes) - 1)]
        x = rng.standard_normal((b, k), dtype=np.float32)
        aq = "int8" if w8a8 else None
        _use("numpy")
        ref = na.linear(x, w, activation_quant=aq)
        _use("aligned")
        if not np.array_equal(na.linear(x, w, activation_quant=aq), ref):
            raise AssertionError("aligned slabs changed the result")
        times = {"numpy": [], "aligned": []}
        calls = 0
        for r in range(12):
            for v in list(times) if r % 2 == 0 else list(times)[::-1]:
                _use(v)
                ts = []
                for _ in range(20):
                    calls += 1
                    t0 = time.perf_counter()
                    na.linear(x, ws[calls % len(ws)], activation_quant=aq)
                    ts.append(time.perf_counter() - t0)
                times[v].append(np.median(ts))
        _use("aligned")
        ratio = np.array(times["numpy"]) / np.array(times["aligned"])
        cells = ", ".join(f"{v} {np.median(t) * 1e6:.0f} us [{min(t) * 1e6:.0f}-{max(t) * 1e6:.0f}]"
                          for v, t in times.items())
        print(f"{fmt} {n}x{k} B={b} cold ({len(ws)} copies): {cells}; numpy / aligned {np.median(ratio):.2f} "
              f"[{ratio.min():.2f}-{ratio.max():.2f}]", flush=True)


if __name__ == "__main__":
    main()
