"""The host's own ceilings, timed in the same run as the figures read against them.

* :func:`sgemv_bandwidth`: bytes per second NumPy's sgemv reaches on cold 4096 x 4096 float32 weights
  (copies rotated through more than twice the last-level cache), with all threads: the practical ceiling
  of the memory-bound (small-batch) cases.
* :func:`fma_peak`: float32 FLOP/s of independent ``llvm.fma`` chains on registers (no memory) on all of
  Numba's threads: the ceiling of the float kernels at large batches (16 lanes with AVX-512, 8 with AVX2
  and FMA; None without either).
* :func:`vnni_peak`: int8 operations per second of independent ``vpdpbusd`` chains (AVX-512 VNNI) on all
  threads: the ceiling of the W8A8 VNNI kernel; None without AVX-512 VNNI.
* :func:`amx_peak`: int8 operations per second of back-to-back ``tdpbssd`` on all threads, tiles resident
  (no loads): the ceiling of the AMX kernels; None where AMX is not usable.

:func:`measure` runs all four and returns them in the units the tables print. An operation is a multiply
or an add: a fused multiply-add counts two, one ``vpdpbusd`` on 512 bits 128, one ``tdpbssd`` 32768.
``python -m numaccel.benchmarks.roofline`` prints them (``--quick`` for the short run, ``--json`` for
the dictionary).
"""

from __future__ import annotations

import time
from functools import partial

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from .. import _config
from .._kernels.amx_x86 import (  # intrinsics only: nothing compiles until _amx_peak is first called
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
from . import host

__all__ = ["amx_peak", "fma_peak", "measure", "sgemv_bandwidth", "vnni_peak"]

_CHAINS = 16  # independent accumulators per thread: more than latency x throughput of either unit


def _splat(builder, value, vty):
    undef = ir.Constant(vty, None)
    one = builder.insert_element(undef, value, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(one, undef, ir.Constant(ir.VectorType(ir.IntType(32), vty.count), [0] * vty.count))


def _make_fma_chains(lanes: int):
    """Build an intrinsic ``(reps, m) -> float32`` of ``_CHAINS`` FMA chains, ``lanes`` wide.

    Each chain runs ``acc = acc * m + 1`` in ``llvm.fma`` ``reps`` times; the chains are summed at the end
    (so nothing is dead). ``m`` is a runtime value (no folding); with ``|m| < 1`` every chain converges to
    ``1 / (1 - m)`` (no overflow, no subnormals).
    """

    @intrinsic
    def fma_chains(typingctx, reps, m):
        if not (isinstance(reps, types.Integer) and m == types.float32):
            return None
        sig = types.float32(reps, m)

        def codegen(context, builder, signature, args):
            count = context.cast(builder, args[0], signature.args[0], types.int64)
            f32 = ir.FloatType()
            vty = ir.VectorType(f32, lanes)
            fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty, vty, vty]),
                                                 f"llvm.fma.v{lanes}f32")
            mv = _splat(builder, args[1], vty)
            one = ir.Constant(vty, [1.0] * lanes)
            accs = [cgutils.alloca_once_value(builder, ir.Constant(vty, [float(c)] * lanes)) for c in range(_CHAINS)]
            with cgutils.for_range(builder, count):
                for acc in accs:
                    builder.store(builder.call(fma, [builder.load(acc), mv, one]), acc)
            total = builder.load(accs[0])
            for acc in accs[1:]:
                total = builder.fadd(total, builder.load(acc))
            out = builder.extract_element(total, ir.Constant(ir.IntType(32), 0))
            for lane in range(1, lanes):
                out = builder.fadd(out, builder.extract_element(total, ir.Constant(ir.IntType(32), lane)))
            return out

        return sig, codegen

    return fma_chains


@intrinsic
def _vnni_chains(typingctx, reps, seed):
    """Run ``_CHAINS`` chains ``acc = vpdpbusd(acc, a, b)`` on 512 bits ``reps`` times: ``(reps, seed) -> int64``.

    ``a`` and ``b`` are splats of the runtime ``seed``; the chains are summed at the end. Compiles only
    where AVX-512 VNNI does.
    """
    if not (isinstance(reps, types.Integer) and isinstance(seed, types.Integer)):
        return None
    sig = types.int64(reps, seed)

    def codegen(context, builder, signature, args):
        count = context.cast(builder, args[0], signature.args[0], types.int64)
        i32 = ir.IntType(32)
        s = context.cast(builder, args[1], signature.args[1], types.int32)
        vty = ir.VectorType(i32, 16)
        dot = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty, vty, vty]),
                                             "llvm.x86.avx512.vpdpbusd.512")
        av = _splat(builder, s, vty)
        bv = _splat(builder, builder.add(s, ir.Constant(i32, 0x01010101)), vty)
        accs = [cgutils.alloca_once_value(builder, ir.Constant(vty, [c] * 16)) for c in range(_CHAINS)]
        with cgutils.for_range(builder, count):
            for acc in accs:
                builder.store(builder.call(dot, [builder.load(acc), av, bv]), acc)
        total = builder.load(accs[0])
        for acc in accs[1:]:
            total = builder.add(total, builder.load(acc))
        out = builder.sext(builder.extract_element(total, ir.Constant(i32, 0)), ir.IntType(64))
        for lane in range(1, 16):
            out = builder.add(out, builder.sext(builder.extract_element(total, ir.Constant(i32, lane)), ir.IntType(64)))
        return out

    return sig, codegen


_fma16 = _make_fma_chains(16)
_fma8 = _make_fma_chains(8)


@njit(parallel=True, nogil=True, cache=True)
def _fma16_peak(threads, reps, m, out):
    """One chain set per thread; ``out`` float32 (threads,)."""
    for t in prange(threads):
        out[t] = _fma16(reps, m)


@njit(parallel=True, nogil=True, cache=True)
def _fma8_peak(threads, reps, m, out):
    for t in prange(threads):
        out[t] = _fma8(reps, m)


@njit(parallel=True, nogil=True, cache=True)
def _vnni_peak(threads, reps, seed, out):
    """One chain set per thread; ``out`` int64 (threads,). Only where AVX-512 VNNI compiles."""
    for t in prange(threads):
        out[t] = _vnni_chains(reps, seed + t)


@njit(parallel=True, nogil=True, cache=True)
def _amx_peak(threads, reps):
    """Four ``tdpbssd`` a step into four resident accumulator tiles, per thread. Only where AMX is usable."""
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


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _timed_peak(run, seconds: float, repeats: int) -> float:
    """Seconds per repetition of ``run(reps)``, best of ``repeats`` calls each lasting about ``seconds``."""
    run(16)  # compile (or load from the cache), start the threads
    reps = 1 << 12
    while True:
        dt = _best(partial(run, reps), 2)
        if dt >= seconds / 4 or reps >= 1 << 34:
            break
        reps *= 4
    reps = max(1, int(reps * seconds / max(dt, 1e-9)))
    return _best(partial(run, reps), repeats) / reps


def sgemv_bandwidth(n: int = 4096, k: int = 4096, repeats: int = 30) -> float:
    """Return the bytes per second NumPy's ``W @ x`` reads on cold float32 weights, all threads.

    Parameters
    ----------
    n, k : int
        Shape of the weight (4096 x 4096, 64 MiB).
    repeats : int
        Timed calls; the median is taken.

    Returns
    -------
    float
        ``4 * n * k / median seconds per call``. Every call reads the next of enough copies to exceed twice
        the last-level cache (:func:`numaccel.benchmarks.host.cold_copies`).

    Raises
    ------
    ValueError
        If a size or ``repeats`` is below 1.

    Examples
    --------
    >>> from numaccel.benchmarks import roofline
    >>> roofline.sgemv_bandwidth(repeats=3) > 0  # doctest: +SKIP
    True
    """
    if min(n, k, repeats) < 1:
        raise ValueError(f"n, k and repeats must be >= 1, got n={n}, k={k}, repeats={repeats}")
    rng = np.random.default_rng(0)
    copies = host.cold_copies(4 * n * k)
    w = rng.standard_normal((n, k), dtype=np.float32)
    ws = [w] + [w.copy() for _ in range(copies - 1)]  # written pages: every copy in memory of its own
    x = rng.standard_normal(k, dtype=np.float32)
    for m in ws:  # warm-up: BLAS threads started, the caches hold the last copies only
        m @ x
    times = []
    for i in range(repeats):
        m = ws[i % copies]
        t = time.perf_counter()
        m @ x
        times.append(time.perf_counter() - t)
    return 4 * n * k / float(np.median(times))


def _fma_lanes() -> int | None:
    feats = _config.cpu_features()
    if "avx512f" in feats:
        return 16
    if {"fma", "avx2"} <= feats:
        return 8
    return None


def fma_peak(*, seconds: float = 0.2, repeats: int = 5) -> float | None:
    """Return the float32 FLOP/s of register-resident FMA chains on all of Numba's threads.

    Parameters
    ----------
    seconds : float, keyword-only
        About how long each timed call lasts.
    repeats : int, keyword-only
        Timed calls; the fastest is taken.

    Returns
    -------
    float or None
        ``threads * reps * chains * 2 * lanes / seconds``; None where Numba compiles for neither AVX-512F nor
        AVX2 with FMA (or the JIT is disabled).

    Examples
    --------
    >>> from numaccel.benchmarks import roofline
    >>> peak = roofline.fma_peak(seconds=0.01, repeats=1)
    >>> peak is None or peak > 0
    True
    """
    lanes = _fma_lanes()
    if lanes is None:
        return None
    kernel = _fma16_peak if lanes == 16 else _fma8_peak
    threads = numba.get_num_threads()
    out = np.empty(threads, np.float32)
    m = np.float32(0.5)
    per_rep = _timed_peak(lambda reps: kernel(threads, reps, m, out), seconds, repeats)
    return threads * _CHAINS * 2 * lanes / per_rep


def vnni_peak(*, seconds: float = 0.2, repeats: int = 5) -> float | None:
    """Return the int8 operations per second of register-resident ``vpdpbusd`` chains on all threads.

    Parameters
    ----------
    seconds : float, keyword-only
        About how long each timed call lasts.
    repeats : int, keyword-only
        Timed calls; the fastest is taken.

    Returns
    -------
    float or None
        ``threads * reps * chains * 128 / seconds`` (64 multiply-adds per 512-bit ``vpdpbusd``); None where
        Numba does not compile for AVX-512 VNNI.

    Examples
    --------
    >>> from numaccel.benchmarks import roofline
    >>> peak = roofline.vnni_peak(seconds=0.01, repeats=1)
    >>> peak is None or peak > 0
    True
    """
    if not {"avx512vnni", "avx512bw"} <= _config.cpu_features():
        return None
    threads = numba.get_num_threads()
    out = np.empty(threads, np.int64)
    per_rep = _timed_peak(lambda reps: _vnni_peak(threads, reps, 3, out), seconds, repeats)
    return threads * _CHAINS * 128 / per_rep


def amx_peak(*, seconds: float = 0.2, repeats: int = 5) -> float | None:
    """Return the int8 operations per second of back-to-back ``tdpbssd`` on resident tiles, all threads.

    Parameters
    ----------
    seconds : float, keyword-only
        About how long each timed call lasts.
    repeats : int, keyword-only
        Timed calls; the fastest is taken.

    Returns
    -------
    float or None
        ``threads * reps * 4 * 2 * 16 * 16 * 64 / seconds``; None where AMX is not usable
        (:func:`numaccel.plan.amx.usable`: CPU, compile target and the kernel's permission).

    Examples
    --------
    >>> from numaccel.benchmarks import roofline
    >>> peak = roofline.amx_peak(seconds=0.01, repeats=1)
    >>> peak is None or peak > 0
    True
    """
    from ..plan import amx as _amx

    if not _amx.usable():
        return None
    threads = numba.get_num_threads()
    per_rep = _timed_peak(lambda reps: _amx_peak(threads, reps), seconds, repeats)
    return threads * 4 * 2 * 16 * 16 * 64 / per_rep


def measure(quick: bool = False) -> dict:
    """Return every ceiling of this host, measured now, with the host line.

    Parameters
    ----------
    quick : bool
        Fewer and shorter timed calls (about 2 s in all instead of 6); the sgemv rotation stays cold.

    Returns
    -------
    dict
        ``host`` (:func:`numaccel.benchmarks.host.line`), ``threads`` (Numba's), ``quick``,
        ``sgemv_gbs`` (GB/s), ``fma_gflops`` (GFLOP/s), ``vnni_gops`` (GOP/s) and ``amx_tops`` (TOP/s);
        each peak None where its ISA is absent.

    Examples
    --------
    >>> from numaccel.benchmarks import roofline
    >>> r = roofline.measure(quick=True)  # doctest: +SKIP
    >>> sorted(r)  # doctest: +SKIP
    ['amx_tops', 'fma_gflops', 'host', 'quick', 'sgemv_gbs', 'threads', 'vnni_gops']
    """
    seconds, repeats = (0.03, 3) if quick else (0.2, 5)
    fma = fma_peak(seconds=seconds, repeats=repeats)
    vnni = vnni_peak(seconds=seconds, repeats=repeats)
    amx = amx_peak(seconds=seconds, repeats=repeats)
    bw = sgemv_bandwidth(repeats=10 if quick else 30)
    return {
        "host": host.line(),
        "threads": numba.get_num_threads(),
        "quick": bool(quick),
        "sgemv_gbs": bw / 1e9,
        "fma_gflops": None if fma is None else fma / 1e9,
        "vnni_gops": None if vnni is None else vnni / 1e9,
        "amx_tops": None if amx is None else amx / 1e12,
    }


def describe(roof: dict) -> str:
    """Return the ceilings of a :func:`measure` result as one line, ``n/a`` for an absent ISA.

    Parameters
    ----------
    roof : dict
        A :func:`measure` result (or one read back from a benchmark JSON).

    Returns
    -------
    str
        ``"cold sgemv 27.5 GB/s; float32 FMA 150 GFLOP/s; VNNI 600 GOP/s; AMX 10.2 TOP/s; 2 threads"``.

    Examples
    --------
    >>> from numaccel.benchmarks import roofline
    >>> roofline.describe({"sgemv_gbs": 27.5, "fma_gflops": 150.0, "vnni_gops": None, "amx_tops": None,
    ...                    "threads": 2})
    'cold sgemv 27.5 GB/s; float32 FMA 150 GFLOP/s; VNNI n/a; AMX n/a; 2 threads'
    """

    def fmt(value, unit):
        if value is None:
            return "n/a"
        return f"{value:.0f} {unit}" if value >= 100 else f"{value:.3g} {unit}"

    return (f"cold sgemv {fmt(roof.get('sgemv_gbs'), 'GB/s')}; float32 FMA {fmt(roof.get('fma_gflops'), 'GFLOP/s')}; "
            f"VNNI {fmt(roof.get('vnni_gops'), 'GOP/s')}; AMX {fmt(roof.get('amx_tops'), 'TOP/s')}; "
            f"{roof.get('threads', '?')} threads")


def main(argv=None) -> int:
    """Print the host line and its ceilings (``--quick``: the short run; ``--json``: the dictionary)."""
    import argparse
    import json

    ap = argparse.ArgumentParser(prog="python -m numaccel.benchmarks.roofline", description=main.__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer, shorter timed calls")
    ap.add_argument("--json", action="store_true", help="print the measure() dictionary as JSON")
    args = ap.parse_args(argv)
    roof = measure(quick=args.quick)
    if args.json:
        print(json.dumps(roof, indent=1))
    else:
        print(roof["host"])
        print(describe(roof))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
