"""What bounds int8 weight-only at batch 1: the kernel against plain streams of the same bytes.

One process per library (NumPy's OpenBLAS threads and Numba's pool would otherwise share the cores);
run each side a few times, alternating, and compare the medians:

    for r in 1 2 3; do
        env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/int8_b1_bound.py numpy
        python bench/int8_b1_bound.py numaccel
    done

``numpy``: cold sgemv on 4096 x 4096 float32 (67 MB, the ceiling ``numaccel bench`` uses) and on
1024 x 4096 (16.8 MB, the bytes of the int8 codes of a 4096 x 4096 weight), each call reading the next of
copies that together exceed twice the last-level cache.

``numaccel``: on the same 4096 x 4096 weight as per-channel int8 codes (16.8 MB), cold and hot (one copy):
``na.linear`` at batch 1 (its host default); the kernels alone, one panel at a time per thread
(``panels``) and four side by side (``streams``); and a read of the same panels on Numba's threads, one
panel at a time per thread, that only XORs their 64-byte lines together (one vector op per line, so it is
bound by memory and not by instructions): the bandwidth one stream per core reaches on those bytes.

Prints one line per case: median time over ``--rounds`` rounds (each the median of its calls) with the
range, and the bytes read per second.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from numaccel.benchmarks import host


def _rounds(fns, rounds: int, calls: int) -> list[float]:
    """Per round, the median seconds of ``calls`` calls, each call taking the next of ``fns``."""
    out = []
    i = 0
    for fn in fns:
        fn()
    for _ in range(rounds):
        ts = []
        for _ in range(calls):
            fn = fns[i % len(fns)]
            i += 1
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        out.append(statistics.median(ts))
    return out


def _report(name: str, secs: list[float], nbytes: int) -> None:
    m = statistics.median(secs)
    print(f"{name}: {m * 1e6:.0f} us [{min(secs) * 1e6:.0f}-{max(secs) * 1e6:.0f}], "
          f"{nbytes / m / 1e9:.1f} GB/s")


def _numpy(rounds: int, calls: int) -> None:
    rng = np.random.default_rng(0)
    for n in (4096, 1024):
        w = rng.standard_normal((n, 4096), dtype=np.float32)
        x = rng.standard_normal(4096, dtype=np.float32)
        ws = [w] + [w.copy() for _ in range(host.cold_copies(w.nbytes) - 1)]
        fns = [lambda a=a, x=x: a @ x for a in ws]
        _report(f"numpy sgemv {n} x 4096 cold", _rounds(fns, rounds, calls), w.nbytes)


def _numaccel(rounds: int, calls: int) -> None:
    import numba
    from numba import njit, prange

    import numaccel as na
    from numaccel import _config
    from numaccel._kernels import int8_cpu, int8_tiles_x86
    from numaccel.plan import int8 as plan_int8

    @njit(parallel=True, cache=False, nogil=True)
    def xor_lines(a, out):
        # a: uint64 (P, L, 8), one 64-byte line per (p, l)
        P, L, _ = a.shape
        for p in prange(P):
            acc = np.zeros(8, np.uint64)
            for line in range(L):
                for j in range(8):
                    acc[j] ^= a[p, line, j]
            for j in range(8):
                out[p, j] = acc[j]

    rng = np.random.default_rng(0)
    w = rng.standard_normal((4096, 4096), dtype=np.float32)
    x = rng.standard_normal((1, 4096), dtype=np.float32)
    qs = [na.quantize(w) for _ in range(host.cold_copies(4096 * 4096))]
    out = np.empty((1, 4096), np.float32)

    def parts(q):
        v = plan_int8._views_of(q)
        panels, sT, zT = plan_int8._panels(q, v)
        xsum = x.reshape(1, -1).sum(axis=1, dtype=np.float32).reshape(1, 1)
        return panels, sT, zT, v.gs, x.reshape(1, 1, -1), xsum

    ps = [parts(q) for q in qs]
    kc = _config.INT8_KC_F32

    def kernel(p):
        panels, sT, zT, gs, xp, xsum = p
        int8_cpu._qmm_int8_panels(panels, sT, zT, gs, xp, xsum, kc, False, out)

    def streams(p):
        panels, sT, zT, gs, xp, xsum = p
        int8_cpu._qmm_int8_panels_streams(panels, sT, zT, gs, xp, xsum, kc, int8_tiles_x86.MAX_STREAMS, out)

    xo = np.empty((64, 8), np.uint64)
    lines = [p[0].view(np.uint64).reshape(64, -1, 8) for p in ps]
    nbytes = qs[0].qweight.nbytes
    kernel(ps[0])  # starts Numba's threading layer, so that it can be named
    print(host.line(), f"numba {numba.__version__}, {numba.threading_layer()} layer,"
          f" {numba.get_num_threads()} threads")
    cases = {
        "na.linear int8 B=1 cold": [lambda q=q: na.linear(x, q) for q in qs],
        "na.linear int8 B=1 hot": [lambda: na.linear(x, qs[0])],
        "panel kernel B=1 cold": [lambda p=p: kernel(p) for p in ps],
        "panel kernel B=1 hot": [lambda: kernel(ps[0])],
        "streams kernel B=1 cold": [lambda p=p: streams(p) for p in ps],
        "streams kernel B=1 hot": [lambda: streams(ps[0])],
        "xor of the panels' lines (one stream) cold": [lambda a=a: xor_lines(a, xo) for a in lines],
        "xor of the panels' lines (one stream) hot": [lambda: xor_lines(lines[0], xo)],
    }
    results = {k: [] for k in cases}
    for _ in range(rounds):  # interleave the cases round by round
        for name, fns in cases.items():
            results[name] += _rounds(fns, 1, calls)
    for name, secs in results.items():
        _report(name, secs, nbytes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("side", choices=("numpy", "numaccel"))
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=100)
    a = ap.parse_args()
    if a.side == "numpy":
        print(host.line())
        _numpy(a.rounds, a.calls)
    else:
        _numaccel(a.rounds, a.calls)


if __name__ == "__main__":
    main()
