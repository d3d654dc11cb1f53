"""What the "blas" variant of int8 weight-only adds to a float32 GEMM: the dequantization of the weight.

Times, for 4096 x 4096 per-channel codes on all Numba threads, the dequantization loop of
``numaccel._kernels.dense_blas_kernels`` alone (non-temporal stores into 64-byte aligned rows): into one
block per thread (the default buffer of ``INT8_BLAS_SCRATCH_BYTES`` holds the whole weight here) and into
blocks of 128 rows. Medians of 9 calls with the range, after one warm-up call.

    python bench/int8_dequant.py
"""

from __future__ import annotations

import time

import numpy as np
from numba import njit, prange

import numaccel as na
from numaccel import _config
from numaccel._kernels import dense_blas
from numaccel.benchmarks import host
from numaccel.plan import int8 as plan_int8


def main() -> None:
    if not dense_blas.available():
        raise SystemExit("NumPy's OpenBLAS cannot be called from Numba's threads here")
    from numaccel._kernels import dense_blas_kernels as dk

    @njit(parallel=True)
    def dequantize(q, s2, z2, gs, rows, scratch):
        n = q.shape[0]
        blocks = scratch.shape[0]
        per = -(-n // blocks)
        for c in prange(blocks):
            for r0 in range(c * per, min(n, (c + 1) * per), rows):
                dk._dequantize_rows(q, s2, z2, gs, r0, min(r0 + rows, (c + 1) * per, n), scratch[c])

    rng = np.random.default_rng(0)
    n = k = 4096
    q = na.quantize(rng.standard_normal((n, k), dtype=np.float32))
    v = plan_int8._views_of(q)
    threads = _config.num_threads()
    per = -(-n // threads)
    print(host.line())
    for rows in (per, 128):
        raw = np.ones(threads * rows * k + 16, np.float32)  # k = 4096: rows of whole 64-byte lines
        start = (-(raw.ctypes.data // 4)) % 16  # the streamed stores need 64-byte aligned rows
        scratch = raw[start:start + threads * rows * k].reshape(threads, rows, k)
        assert scratch.ctypes.data % 64 == 0
        dequantize(q.qweight, v.s2, v.z2, v.gs, rows, scratch)
        ts = []
        for _ in range(9):
            t0 = time.perf_counter()
            dequantize(q.qweight, v.s2, v.z2, v.gs, rows, scratch)
            ts.append(time.perf_counter() - t0)
        t = np.array(ts)
        print(f"{threads} threads, blocks of {rows} rows ({rows * k * 4 >> 20} MiB per thread): "
              f"{np.median(t) * 1e3:.2f} ms [{t.min() * 1e3:.2f}-{t.max() * 1e3:.2f}], "
              f"{n * k * 4 / np.median(t) / 1e9:.1f} GB/s of float32 written", flush=True)


if __name__ == "__main__":
    main()
