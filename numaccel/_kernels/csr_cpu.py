"""CSR kernels for the CPU.

Contract shared by every kernel here (inputs validated by the caller):
``indptr`` int32/int64 (M+1,), ``indices`` uint16/int32 (nnz,) sorted within each row and in range,
``data`` float32 (nnz,), ``bounds`` int64 row boundaries of the thread chunks (balanced by nonzeros),
activations float32/float64 C-contiguous, ``out`` C-contiguous of the activations' dtype, every element
written. Each ``prange`` iteration owns the output rows ``bounds[c]:bounds[c+1]``.
"""

from __future__ import annotations

from numba import njit, prange

from .._config import FASTMATH


@njit(inline="always", fastmath=FASTMATH)
def _spmv_row(idx, d, x):
    """Dot product of one CSR row (its indices and values, as slices) with the dense vector ``x``."""
    n = idx.size
    acc0 = x.dtype.type(0)
    acc1 = x.dtype.type(0)
    acc2 = x.dtype.type(0)
    acc3 = x.dtype.type(0)
    m = n - n % 4
    for p in range(0, m, 4):
        acc0 += d[p] * x[idx[p]]
        acc1 += d[p + 1] * x[idx[p + 1]]
        acc2 += d[p + 2] * x[idx[p + 2]]
        acc3 += d[p + 3] * x[idx[p + 3]]
    for p in range(m, n):
        acc0 += d[p] * x[idx[p]]
    return (acc0 + acc1) + (acc2 + acc3)


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH)
def _spmv_csr_rows(indptr, indices, data, bounds, x, out):
    """``out[i] = sum_p data[p] * x[indices[p]]`` over row ``i``'s nonzeros; x (K,), out (M,)."""
    for c in prange(bounds.size - 1):
        for i in range(bounds[c], bounds[c + 1]):
            start = indptr[i]
            end = indptr[i + 1]
            out[i] = _spmv_row(indices[start:end], data[start:end], x)


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH)
def _spmm_csr_rows(indptr, indices, data, bounds, b, out):
    """``out = A @ b`` for CSR ``A`` (M, K), dense ``b`` (K, P) C-contiguous, ``out`` (M, P)."""
    P = b.shape[1]
    for c in prange(bounds.size - 1):
        for i in range(bounds[c], bounds[c + 1]):
            orow = out[i]
            for j in range(P):
                orow[j] = 0
            start = indptr[i]
            end = indptr[i + 1]
            idx = indices[start:end]
            d = data[start:end]
            for p in range(idx.size):
                v = d[p]
                brow = b[idx[p]]
                for j in range(P):
                    orow[j] += v * brow[j]

