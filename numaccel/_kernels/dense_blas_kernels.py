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
