"""Dense products in NumPy's own OpenBLAS, one single-threaded call per Numba thread.

A model that mixes dense layers with numaccel layers alternates two thread pools: after each product
OpenBLAS's worker threads spin on the cores for a while, and the next numaccel kernel's threads wait for
them (docs/performance.md, "Dense layers beside numaccel layers"). Here a dense layer's output features
are split into one block per Numba thread, and each thread computes its block with one ``cblas_?gemm``
call of NumPy's OpenBLAS (``cblas_?gemv`` for one activation row: OpenBLAS's GEMM with one row is several
times slower than its GEMV) while that library is held at one thread: OpenBLAS's own workers are never
woken, so every layer of the model runs on the one pool that numaccel's kernels use. Each output element
is one single-threaded OpenBLAS reduction over ``K``, as in OpenBLAS's own threaded GEMM (which also
splits the outputs, never ``K``).

Used only where it is known to be safe: NumPy's OpenBLAS wheel build (the library in ``numpy.libs``, as
loaded into this process), 64-bit integers (``USE64BITINT``), the pthreads server, a compiling JIT. The
function addresses are given to LLVM as symbols (``llvmlite.binding.add_symbol``) and called as Numba
external functions, so the kernels cache like any other; they are compiled only after the symbols exist.
Anywhere else ``available()`` is False and the caller keeps ``numpy.matmul``.
"""

from __future__ import annotations

import ctypes
import os
import threading

import numpy as np

__all__ = ["available", "gemm", "int8_gemm"]

_SYMBOLS = {name: f"numaccel_openblas_{name}" for name in ("sgemm", "dgemm", "sgemv", "dgemv")}
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
_ALIGN = 16  # block boundaries on multiples of 16 output features (whole microkernel columns)

_state = None  # None: not looked up yet; False: unavailable; else a dict
_lock = threading.Lock()
_active = 0
_saved = 1
_kernels = None
_scratch = None  # the float32 blocks of int8_gemm, kept for the next call
_scratch_lock = threading.Lock()


def _numpy_openblas() -> str | None:
    """The path of the OpenBLAS that NumPy's wheel ships, if this process has loaded it."""
    libs = os.path.realpath(os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs"))
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split(maxsplit=5)
                if len(parts) < 6:
                    continue
                p = parts[5].strip()
                if "openblas" in os.path.basename(p).lower() and os.path.dirname(os.path.realpath(p)) == libs:
                    return p
    except OSError:
        return None
    return None


def _lookup():
    from .. import _config

    if not _config.jit_enabled():
        return False
    path = _numpy_openblas()
    if path is None:
        return False
    try:
        lib = ctypes.CDLL(path)
    except OSError:
        return False
    for prefix in ("scipy_", ""):
        try:
            fns = {name: getattr(lib, f"{prefix}{name}64_") for name in (
                "cblas_sgemm", "cblas_dgemm", "cblas_sgemv", "cblas_dgemv", "openblas_set_num_threads",
                "openblas_get_num_threads", "openblas_get_config", "openblas_get_parallel")}
        except AttributeError:
            continue
        break
    else:
        return False
    fns["openblas_get_config"].restype = ctypes.c_char_p
    fns["openblas_get_config"].argtypes = []
    config = (fns["openblas_get_config"]() or b"").decode("ascii", "replace")
    fns["openblas_get_parallel"].restype = ctypes.c_int
    fns["openblas_get_parallel"].argtypes = []
    if "USE64BITINT" not in config or fns["openblas_get_parallel"]() != 1:  # 1: the pthreads server
        return False
    fns["openblas_get_num_threads"].restype = ctypes.c_int
    fns["openblas_get_num_threads"].argtypes = []
    fns["openblas_set_num_threads"].restype = None
    fns["openblas_set_num_threads"].argtypes = [ctypes.c_int]
    from llvmlite import binding as llvm

    for name in _SYMBOLS:
        llvm.add_symbol(_SYMBOLS[name], ctypes.cast(fns[f"cblas_{name}"], ctypes.c_void_p).value)
    return {"get": fns["openblas_get_num_threads"], "set": fns["openblas_set_num_threads"]}


def available() -> bool:
    """Whether dense products can run through :func:`gemm` in this process (looked up once)."""
    global _state
    if _state is None:
        with _lock:
            if _state is None:
                _state = _lookup()
    return bool(_state)


def _enter() -> None:
    global _active, _saved
    with _lock:
        if _active == 0:
            _saved = _state["get"]()
            if _saved != 1:
                _state["set"](1)
        _active += 1


def _leave() -> None:
    global _active
    with _lock:
        _active -= 1
        if _active == 0 and _saved != 1:
            _state["set"](_saved)


def _bounds(n: int, blocks: int) -> np.ndarray:
    """``blocks + 1`` boundaries over ``n`` output features, inner ones on multiples of ``_ALIGN``."""
    step = -(-n // blocks)
    step = -(-step // _ALIGN) * _ALIGN
    b = np.minimum(np.arange(blocks + 1, dtype=np.int64) * step, n)
    b[-1] = n
    return b


def gemm(x: np.ndarray, w: np.ndarray, out: np.ndarray, threads: int) -> None:
    """``out = x @ w.T`` for C-contiguous ``x`` (B, K), ``w`` (N, K), ``out`` (B, N), one dtype (float32
    or float64), B, N, K >= 1; the ``N`` features in ``threads`` blocks, one single-threaded OpenBLAS call
    each (GEMV for B = 1, else GEMM), on Numba's threads (``threads`` 1: on the calling thread). Needs
    :func:`available`."""
    global _kernels
    if _kernels is None:
        from . import dense_blas_kernels as _kernels
    n = w.shape[0]
    blocks = max(1, min(int(threads), -(-n // _ALIGN)))
    _enter()
    try:
        if blocks == 1:
            _kernels.gemm_block(x, w, 0, n, out)
        else:
            _kernels.gemm_blocks(x, w, _bounds(n, blocks), out)
    finally:
        _leave()


def int8_gemm(q: np.ndarray, s2: np.ndarray, z2: np.ndarray, gs: int, x: np.ndarray, out: np.ndarray,
              threads: int, scratch_bytes: int) -> None:
    """``out = x @ W.T`` for ``W = (q - z2) * s2`` (``Int8Weight.dequantize``: int8 codes ``q`` (N, K),
    float32 scales ``s2`` and int32 zero points ``z2`` (N, G) per group of ``gs`` features), float32
    C-contiguous ``x`` (B, K) and ``out`` (B, N), B, N, K >= 1. Needs :func:`available`.

    The ``N`` features in ``threads`` blocks, one per Numba thread; each thread dequantizes its block a
    part at a time into a float32 buffer of its own (rows padded to whole 64-byte lines and starting on
    them, written with non-temporal stores) and multiplies each part by one single-threaded
    ``cblas_sgemm`` call. The buffers of all threads together hold about ``scratch_bytes`` (at least 16
    rows each) and are kept for the next call; a call from a second Python thread while one runs uses
    buffers of its own.
    """
    global _kernels, _scratch
    if _kernels is None:
        from . import dense_blas_kernels as _kernels
    n, k = q.shape
    blocks = max(1, min(int(threads), -(-n // _ALIGN)))
    bounds = _bounds(n, blocks)
    longest = int(np.max(np.diff(bounds)))
    ld = -(-k // 16) * 16  # buffer rows of whole 64-byte lines, for the streamed stores
    rows = max(_ALIGN, scratch_bytes // (4 * ld * blocks) // _ALIGN * _ALIGN)
    rows = min(rows, longest)
    need = blocks * rows * ld + 16  # + 16: room to start on a 64-byte boundary
    own = _scratch_lock.acquire(blocking=False)
    try:
        buf = _scratch if own else None
        if buf is None or buf.size < need:
            buf = np.empty(need, dtype=np.float32)
            if own:
                _scratch = buf
        _enter()
        try:
            start = (-(buf.ctypes.data // 4)) % 16  # float32 arrays start on 4-byte boundaries
            blocks_buf = buf[start:start + need - 16].reshape(blocks, rows, ld)
            if blocks_buf.ctypes.data % 64:  # the streamed stores need it: never run misaligned
                raise RuntimeError("numaccel: the dequantization buffer is not 64-byte aligned")
            _kernels.int8_dequantized_gemm(q, s2, z2, gs, x, bounds, rows, blocks_buf, out)
        finally:
            _leave()
    finally:
        if own:
            _scratch_lock.release()
