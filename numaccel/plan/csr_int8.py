"""How a pruned-int8 product runs on this host.

The CSR planner's decisions (serial or parallel, row chunks, slab widths, AVX-512 tiles or portable
loops) applied to int8 codes with per-row or per-group scales (:mod:`numaccel._kernels.csr_int8_cpu`).
"""

from __future__ import annotations

import numpy as np

from .. import _config
from .._kernels import csr_cpu, csr_int8_cpu
from ..formats.csr_int8 import group_pointer
from . import csr
from ._cache import PerWeight

__all__ = ["linear", "matmul"]

_NO_GROUPS = np.int64(2**62)


def _groups(w):
    """``(gptr, gs)`` for the kernels: the format's groups, or one group per row."""
    if w.group_size is None:
        return np.arange(w.shape[0] + 1, dtype=np.int64), _NO_GROUPS
    return group_pointer(w.indptr, w.group_size), np.int64(w.group_size)


_groups_of = PerWeight(_groups)


def _bounds(w, p: int):
    return None if csr.serial(w.nnz, w.shape, p) else csr.chunk_bounds(w)


def _vector(w, b: np.ndarray, out: np.ndarray) -> None:
    gptr, gs = _groups_of(w)
    name = csr.gemv_variant(w.shape, w.nnz, b.dtype, w.qdata.dtype)
    bounds = _bounds(w, 1)
    args = (w.indptr, w.indices, w.qdata, w.scales, gptr, gs)
    if bounds is None:
        if name == "scalar":
            csr_int8_cpu._spmv_q_range(*args, 0, w.shape[0], b, out)
        else:
            csr_int8_cpu._spmv_q_vec_range(*args, 0, w.shape[0], b, csr._GEMV_KERNEL[name], out)
        return
    with _config.kernel_guard():
        if name == "scalar":
            csr_int8_cpu._spmv_q(*args, bounds, b, out)
        else:
            csr_int8_cpu._spmv_q_vec(*args, bounds, b, csr._GEMV_KERNEL[name], out)


def _batched(w, b: np.ndarray, out: np.ndarray, *, transposed: bool) -> None:
    """``W @ b`` for ``b`` (K, P) (``out`` (N, P)) or, ``transposed``, x (P, K) (``out`` (P, N))."""
    p = b.shape[0] if transposed else b.shape[1]
    n, k = w.shape
    gptr, gs = _groups_of(w)
    args = (w.indptr, w.indices, w.qdata, w.scales, gptr, gs)
    bounds = _bounds(w, p)
    nchunks = 1 if bounds is None else bounds.size - 1
    if b.dtype == np.float32 and _config.CSR_USE_TILES:
        widths = [t for t in csr_cpu.TILE_WIDTHS if t <= _config.CSR_TILE_MAX_WIDTH] or [8]
        width = next((t for t in widths if t >= p), widths[-1])
        slabs = csr._slab_array((-(-p // width), k, width))
        group = _config.CSR_STORE_ROWS if transposed and width > 8 else 1
        scratch = np.empty((nchunks, group + 1, width), dtype=np.float32)
        if bounds is None:
            (csr_cpu._pack_rows_tiles_serial if transposed else csr_cpu._pack_cols_tiles_serial)(b, slabs)
            csr_int8_cpu._spmm_q_tiles_chunk(*args, 0, n, slabs, scratch[0], transposed, out)
            return
        with _config.kernel_guard():
            (csr_cpu._pack_rows_tiles if transposed else csr_cpu._pack_cols_tiles)(b, slabs)
            csr_int8_cpu._spmm_q_tiles(*args, bounds, slabs, scratch, transposed, out)
        return
    if transposed:
        b = np.ascontiguousarray(b.T)
    scratch = np.empty((nchunks, 2, p), dtype=out.dtype)
    if bounds is None:
        csr_int8_cpu._spmm_q_rows_range(*args, 0, n, b, scratch[0], transposed, out)
        return
    with _config.kernel_guard():
        csr_int8_cpu._spmm_q_rows(*args, bounds, b, scratch, transposed, out)


def matmul(w, b: np.ndarray, out: np.ndarray) -> None:
    """Compute ``out = w @ b`` for a CSRInt8Weight and C-contiguous ``b`` (K,) or (K, P) of ``out``'s dtype."""
    if b.ndim == 1:
        _vector(w, b, out)
    else:
        _batched(w, b, out, transposed=False)


def linear(w, x: np.ndarray, out: np.ndarray, quant) -> None:
    """Compute ``out = x @ w.T`` for a CSRInt8Weight, validated C-contiguous ``x`` (B, K), ``out`` (B, N)."""
    if quant is not None:
        raise ValueError(f"activation_quant={quant!r} is not supported for a CSRInt8Weight; use None")
    if x.shape[0] == 1:
        _vector(w, x[0], out[0])
    else:
        _batched(w, x, out, transposed=True)
