"""How a CSR product runs on this host: serial or parallel, row chunks, slab widths, kernel family.

The kernels are in :mod:`numaccel._kernels.csr_cpu`; this module decides which one runs, with which
row partition and buffers, and keeps what it derives from a weight (its row partitions) in a cache
keyed by the weight, so the format itself stays plain data.

``linear`` and ``spmm`` run hand-written parallel kernels on the stored arrays: rows are split among
threads in chunks of about equal numbers of nonzeros, each chunk owned by one thread. Batch 1 gathers
sixteen of a row's activations into the lanes of an AVX-512 vector and multiplies them by sixteen
values at once; larger float32 batches pack the activations into slabs of 8 to 32 columns and run
each row's nonzeros with the output tile held in AVX-512 registers, prefetching the weights ahead (a
portable kernel is used where AVX-512 is absent, and for float64). Products too small to gain from threads
(``_config.CSR_SERIAL_WORK``) run the same kernels on the calling thread. The kernels are safe to
call from several Python threads at once: Numba's ``tbb`` and ``omp`` threading layers allow it, and
under its ``workqueue`` fallback (no TBB or OpenMP runtime installed) numaccel serialises the calls
with a lock. Packed activations of 256 KiB to 32 MiB reuse a buffer kept per Python thread.
"""

from __future__ import annotations

import functools
import threading

import numpy as np

from .. import _config
from .._kernels import csr_cpu
from .._validate import frozen
from . import wisdom
from ._buffers import aligned_empty
from ._cache import PerWeight

__all__ = ["linear", "matmul", "matmul_arrays", "row_bounds", "chunk_bounds", "serial", "gemv_variant", "gemv_default",
           "gemv_case"]

_slab_store = threading.local()
_HUGE_PAGE = 1 << 21
_bounds_cache = PerWeight(lambda w: {})  # per weight: {chunks: row boundaries}


def _slab_array(shape: tuple[int, int, int]) -> np.ndarray:
    """Return an uninitialised float32 array for the packed activations.

    Sizes between ``_config.CSR_SLAB_KEEP_MIN`` and ``_config.CSR_SLAB_KEEP_BYTES`` come from a buffer
    kept per Python thread and aligned to 2 MiB, so that repeated calls neither fault its pages in again
    nor depend on where the allocator put it (NumPy asks for transparent huge pages on buffers of 4 MiB
    and more); other sizes get a fresh array starting on a cache line (a slab row that straddles two
    lines costs a second line per load: docs/performance.md, "Tunables").
    """
    count = shape[0] * shape[1] * shape[2]
    if not _config.CSR_SLAB_KEEP_MIN <= 4 * count <= _config.CSR_SLAB_KEEP_BYTES:
        return aligned_empty(shape, np.float32)
    base = getattr(_slab_store, "base", None)
    if base is None or base.size < count:
        raw = np.empty(4 * max(count, _HUGE_PAGE // 2) + _HUGE_PAGE, dtype=np.uint8)
        off = -raw.ctypes.data % _HUGE_PAGE
        base = _slab_store.base = raw[off:].view(np.float32)
    return base[:count].reshape(shape)


def _partition(indptr: np.ndarray, nchunks: int) -> np.ndarray:
    """Row boundaries of ``nchunks`` chunks of about equal cost (nonzeros + 2 per row)."""
    n = indptr.size - 1
    cost = indptr.astype(np.int64) + 2 * np.arange(n + 1, dtype=np.int64)
    targets = np.linspace(0, cost[-1], nchunks + 1)
    b = np.searchsorted(cost, targets, side="left").astype(np.int64)
    b[0], b[-1] = 0, n
    b = np.unique(b)
    if b.size == 1:  # n == 0
        b = np.array([0, 0], dtype=np.int64)
    return frozen(b)


def row_bounds(w, nchunks: int) -> np.ndarray:
    """Row boundaries of ``nchunks`` chunks of about equal cost for the CSRWeight ``w`` (cached per weight)."""
    per = _bounds_cache(w)
    b = per.get(nchunks)
    if b is None:
        b = per[nchunks] = _partition(w.indptr, nchunks)
    return b


def _nchunks() -> int:
    return _config.CSR_CHUNKS_PER_THREAD * _config.num_threads()


def chunk_bounds(w) -> np.ndarray:
    """Return the row partition the parallel kernels use for ``w`` at the current thread count."""
    return row_bounds(w, _nchunks())


def serial(nnz: int, shape: tuple[int, int], p: int) -> bool:
    """Return True when a product with ``p`` activation columns is too small to gain from threads.

    The work estimate counts a nonzero once per 8 columns (the batched kernels handle 8 to 32 columns
    per vector instruction) and every activation read and output written once.
    """
    n, k = shape
    return nnz * max(1, p // 8) + p * (k + n) <= _config.CSR_SERIAL_WORK


def _batched(indptr, kidx, data, shape, bounds, b, out, *, transposed: bool) -> None:
    """Compute ``A @ b`` into ``out``, for ``b`` given either as (K, P) or as the rows of ``b.T``.

    With ``transposed`` False, ``b`` is (K, P) and ``out`` (N, P); with ``transposed`` True, ``b`` is
    x (P, K) and ``out`` is (P, N). ``bounds`` None: serial.
    """
    p = b.shape[0] if transposed else b.shape[1]
    n, k = shape
    nchunks = 1 if bounds is None else bounds.size - 1
    if b.dtype == np.float32 and data.dtype == np.float32 and _config.CSR_USE_TILES:
        widths = [w for w in csr_cpu.TILE_WIDTHS if w <= _config.CSR_TILE_MAX_WIDTH] or [8]
        width = next((w for w in widths if w >= p), widths[-1])
        slabs = _slab_array((-(-p // width), k, width))
        group = _config.CSR_STORE_ROWS if transposed and width > 8 else 1
        scratch = np.empty((nchunks, group, width), dtype=np.float32)
        if bounds is None:
            if transposed:
                csr_cpu._pack_rows_tiles_serial(b, slabs)
            else:
                csr_cpu._pack_cols_tiles_serial(b, slabs)
            csr_cpu._spmm_tiles_chunk(indptr, kidx, data, 0, n, slabs, scratch[0], _config.CSR_BLOCK_ROWS,
                                      transposed, out)
            return
        with _config.kernel_guard():
            if transposed:
                csr_cpu._pack_rows_tiles(b, slabs)
            else:
                csr_cpu._pack_cols_tiles(b, slabs)
            csr_cpu._spmm_csr_tiles(indptr, kidx, data, bounds, slabs, scratch, _config.CSR_BLOCK_ROWS,
                                    transposed, out)
        return
    if transposed:
        b = np.ascontiguousarray(b.T)
    scratch = np.empty((nchunks, p), dtype=out.dtype)
    if bounds is None:
        csr_cpu._spmm_rows_range(indptr, kidx, data, 0, n, b, scratch[0], transposed, out)
        return
    with _config.kernel_guard():
        csr_cpu._spmm_csr_rows(indptr, kidx, data, bounds, b, scratch, transposed, out)


_GEMV_KERNEL = {"lanes": csr_cpu.GEMV_LANES, "lanes-prefetch": csr_cpu.GEMV_LANES_PREFETCH,
                "gather": csr_cpu.GEMV_GATHER}


@functools.lru_cache(maxsize=1)
def gemv_default() -> str:
    """Return the batch-1 variant chosen by host features (choice ``csr-gemv``).

    AVX-512 gathers (with prefetch) on Intel, where they were faster; the lane-insert loop with the
    prefetch on AMD family 25 (Zen 4: as fast as without it on hot weights, up to 10 % faster cold); the
    lane-insert loop elsewhere (measured fastest on AMD Zen 5, before the prefetch existed). See
    docs/performance.md, "CSR at batch 1".
    """
    if _config.cpu_vendor() == "GenuineIntel":
        return "gather"
    if _config.cpu_vendor() == "AuthenticAMD" and _config.cpu_family() == 25:
        return "lanes-prefetch"
    return "lanes"


def gemv_variant(shape, nnz: int, b_dtype, data_dtype) -> str:
    """Return the batch-1 kernel of a CSR or pruned-int8 product.

    One of ``"scalar"`` (portable), ``"lanes"``, ``"lanes-prefetch"`` or ``"gather"`` (AVX-512, float32
    activations): choice ``csr-gemv`` of :mod:`numaccel.plan.wisdom`.
    """
    vec = b_dtype == np.float32 and data_dtype in (np.float32, np.int8) and _config.CSR_USE_TILES
    if not vec:
        return "scalar"
    return wisdom.choose("csr-gemv", lambda: gemv_case(shape, nnz, data_dtype), gemv_default(),
                         lambda v: v != "gather" or shape[1] < 2**31)


def gemv_case(shape, nnz: int, data_dtype) -> str:
    """Return the wisdom case of a batch-1 CSR (float32 values) or pruned-int8 (int8 codes) product."""
    n, k = shape
    fmt = "csr-int8" if data_dtype == np.int8 else "csr"
    return wisdom.case_key(fmt, shape, 1, nnz / (n * k) if n * k else 0.0)


def _vector(indptr, kidx, data, shape, bounds, b, out) -> None:
    name = gemv_variant(shape, data.size, b.dtype, data.dtype) if data.dtype == np.float32 else "scalar"
    if bounds is None:
        if name == "scalar":
            csr_cpu._spmv_rows_range(indptr, kidx, data, 0, shape[0], b, out)
        else:
            csr_cpu._spmv_vec_range(indptr, kidx, data, 0, shape[0], b, _GEMV_KERNEL[name], out)
        return
    with _config.kernel_guard():
        if name == "scalar":
            csr_cpu._spmv_csr_rows(indptr, kidx, data, bounds, b, out)
        else:
            csr_cpu._spmv_csr_vec(indptr, kidx, data, bounds, b, _GEMV_KERNEL[name], out)


def matmul(w, b: np.ndarray, out: np.ndarray) -> None:
    """``out = w @ b`` for a CSRWeight ``w`` and C-contiguous ``b`` (K,) or (K, P) of ``out``'s dtype."""
    p = 1 if b.ndim == 1 else b.shape[1]
    bounds = None if serial(w.nnz, w.shape, p) else chunk_bounds(w)
    args = (w.indptr, w.indices, w.data, w.shape, bounds)
    if b.ndim == 1:
        _vector(*args, b, out)
    else:
        _batched(*args, b, out, transposed=False)


def matmul_arrays(indptr, indices, data, shape, b: np.ndarray, out: np.ndarray) -> None:
    """``out = A @ b`` for validated CSR arrays (any float ``data``: float64 stays float64), uncached."""
    p = 1 if b.ndim == 1 else b.shape[1]
    bounds = None if serial(data.size, shape, p) else _partition(indptr, _nchunks())
    if b.ndim == 1:
        _vector(indptr, indices, data, shape, bounds, b, out)
    else:
        _batched(indptr, indices, data, shape, bounds, b, out, transposed=False)


def linear(w, x: np.ndarray, out: np.ndarray, quant) -> None:
    """``out = x @ w.T`` for a CSRWeight ``w``, validated C-contiguous ``x`` (B, K) and ``out`` (B, N)."""
    if quant is not None:
        raise ValueError(f"activation_quant={quant!r} is not supported for a CSRWeight; use None")
    if x.shape[0] == 1:
        matmul(w, x[0], out[0])
        return
    bounds = None if serial(w.nnz, w.shape, x.shape[0]) else chunk_bounds(w)
    _batched(w.indptr, w.indices, w.data, w.shape, bounds, x, out, transposed=True)
