"""The host's own ceilings, timed in the same run as the figures read against them.

* ``sgemv_bandwidth()``: bytes per second NumPy's sgemv reaches on cold 4096 x 4096 float32 weights
  (copies rotated through more than twice the last-level cache), with all threads.
* ``amx_peak()``: int8 operations per second of back-to-back ``tdpbssd`` on all threads, tiles resident
  (no loads): the ceiling of the AMX kernels; None where AMX is not usable.
"""

from __future__ import annotations

import time

import host
import numba
import numpy as np
from numba import njit, prange


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def sgemv_bandwidth(n: int = 4096, k: int = 4096, repeats: int = 30) -> float:
    rng = np.random.default_rng(0)
    copies = host.cold_copies(4 * n * k)
    ws = [rng.standard_normal((n, k), dtype=np.float32) for _ in range(copies)]
    x = rng.standard_normal(k, dtype=np.float32)
    state = {"i": 0}

    def call():
        state["i"] += 1
        return ws[state["i"] % copies] @ x

    for _ in range(copies):
        call()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return 4 * n * k / float(np.median(times))


def _amx_peak_kernel():
    from numaccel._kernels.amx_x86 import (
        _dot_00,
        _dot_01,
        _dot_10,
        _dot_11,
        _load_config,
        _release,
        _tile_config,
        _zero_c0,
        _zero_c1,
        _zero_c2,
        _zero_c3,
    )

    @njit(parallel=True, nogil=True)
    def peak(threads, reps):
        for _t in prange(threads):
            cfg = _tile_config()
            _load_config(cfg)
            _zero_c0()
            _zero_c1()
            _zero_c2()
            _zero_c3()
            for _r in range(reps):
                _dot_00()
                _dot_01()
                _dot_10()
                _dot_11()
            _release()

    return peak


def amx_peak(reps: int = 200_000) -> float | None:
    from numaccel.plan import amx as _amx

    if not _amx.usable():
        return None
    peak = _amx_peak_kernel()
    threads = numba.get_num_threads()
    peak(threads, 10)
    dt = _best(lambda: peak(threads, reps), 5)
    return threads * reps * 4 * 2 * 16 * 16 * 64 / dt


if __name__ == "__main__":
    print(host.line())
    print(f"sgemv, cold: {sgemv_bandwidth() / 1e9:.1f} GB/s")
    p = amx_peak()
    print("AMX tdpbssd peak:", "n/a" if p is None else f"{p / 1e12:.2f} TOP/s on {numba.get_num_threads()} threads")
