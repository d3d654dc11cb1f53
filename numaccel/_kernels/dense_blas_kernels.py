"""The Numba kernels of :mod:`numaccel._kernels.dense_blas` (imported only after its symbols exist)."""

from __future__ import annotations

import numpy as np
from numba import njit, prange, types

from .dense_blas import _NO_TRANS, _ROW_MAJOR, _SYMBOLS, _TRANS

_I32, _I64, _PTR = types.int32, types.int64, types.uintp


def _declare(name, real):
    """The ``cblas_?gemm`` (``name`` ending in ``gemm``) or ``cblas_?gemv`` signature, ``real`` its scalars."""
    if name.endswith("gemm"):  # order, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc
        args = (_I32, _I32, _I32, _I64, _I64, _I64, real, _PTR, _I64, _PTR, _I64, real, _PTR, _I64)
    else:  # order, trans, m, n, alpha, a, lda, x, incx, beta, y, incy
        args = (_I32, _I32, _I64, _I64, real, _PTR, _I64, _PTR, _I64, real, _PTR, _I64)
    return types.ExternalFunction(_SYMBOLS[name], types.void(*args))


_sgemm = _declare("sgemm", types.float32)
_dgemm = _declare("dgemm", types.float64)
_sgemv = _declare("sgemv", types.float32)
_dgemv = _declare("dgemv", types.float64)


@njit(cache=True, nogil=True)
def gemm_block(x, w, n0, n1, out):
    """``out[:, n0:n1] = x @ w[n0:n1].T`` by one ``cblas_?gemv`` (one row of ``x``) or ``cblas_?gemm`` call
    (row-major, ``w`` transposed)."""
    b, k = x.shape
    n = w.shape[0]
    if n1 <= n0:
        return
    size = x.itemsize
    wp = w.ctypes.data + np.uint64(n0 * k * size)
    op = out.ctypes.data + np.uint64(n0 * size)
    if b == 1:
        if size == 4:
            _sgemv(np.int32(_ROW_MAJOR), np.int32(_NO_TRANS), np.int64(n1 - n0), np.int64(k), np.float32(1.0),
                   wp, np.int64(k), x.ctypes.data, np.int64(1), np.float32(0.0), op, np.int64(1))
        else:
            _dgemv(np.int32(_ROW_MAJOR), np.int32(_NO_TRANS), np.int64(n1 - n0), np.int64(k), np.float64(1.0),
                   wp, np.int64(k), x.ctypes.data, np.int64(1), np.float64(0.0), op, np.int64(1))
    elif size == 4:  # float32 (the caller passes float32 or float64 only)
        _sgemm(np.int32(_ROW_MAJOR), np.int32(_NO_TRANS), np.int32(_TRANS), np.int64(b), np.int64(n1 - n0),
               np.int64(k), np.float32(1.0), x.ctypes.data, np.int64(k), wp, np.int64(k), np.float32(0.0), op,
               np.int64(n))
    else:
        _dgemm(np.int32(_ROW_MAJOR), np.int32(_NO_TRANS), np.int32(_TRANS), np.int64(b), np.int64(n1 - n0),
               np.int64(k), np.float64(1.0), x.ctypes.data, np.int64(k), wp, np.int64(k), np.float64(0.0), op,
               np.int64(n))


@njit(parallel=True, cache=True, nogil=True)
def gemm_blocks(x, w, bounds, out):
    """``gemm_block`` of each ``bounds[c]:bounds[c + 1]``, one block per Numba thread."""
    for c in prange(bounds.size - 1):
        gemm_block(x, w, bounds[c], bounds[c + 1], out)


@njit(cache=True, nogil=True, inline="always")
def _dequantize_rows(q, s2, z2, gs, r0, r1, buf):
    """``buf[:r1 - r0] = (q[r0:r1] - z) * s`` in float32, as ``Int8Weight.dequantize`` computes it."""
    k = q.shape[1]
    g = s2.shape[1]
    for i in range(r1 - r0):
        r = r0 + i
        for gi in range(g):
            j0 = gi * gs
            j1 = min(j0 + gs, k)
            z = np.float32(z2[r, gi])
            s = s2[r, gi]
            src = q[r, j0:j1]  # slices with indices from 0: the loop compiles to vector converts
            dst = buf[i, j0:j1]
            for j in range(src.size):
                dst[j] = (np.float32(src[j]) - z) * s


@njit(parallel=True, cache=True, nogil=True)
def int8_dequantized_gemm(q, s2, z2, gs, x, bounds, rows, scratch, out):
    """``out = x @ dequantize(q).T`` for float32 ``x`` (B, K), int8 codes ``q`` (N, K), scales ``s2`` and
    zero points ``z2`` (N, G): each Numba thread takes the features ``bounds[c]:bounds[c + 1]`` and, ``rows``
    at a time, dequantizes them into its own ``scratch[c]`` (rows, K) and multiplies them by one
    single-threaded ``cblas_sgemm`` call."""
    b, k = x.shape
    n = q.shape[0]
    for c in prange(bounds.size - 1):
        buf = scratch[c]
        for r0 in range(bounds[c], bounds[c + 1], rows):
            r1 = min(r0 + rows, bounds[c + 1])
            _dequantize_rows(q, s2, z2, gs, r0, r1, buf)
            op = out.ctypes.data + np.uint64(r0 * 4)
            _sgemm(np.int32(_ROW_MAJOR), np.int32(_NO_TRANS), np.int32(_TRANS), np.int64(b), np.int64(r1 - r0),
                   np.int64(k), np.float32(1.0), x.ctypes.data, np.int64(k), buf.ctypes.data, np.int64(k),
                   np.float32(0.0), op, np.int64(n))
