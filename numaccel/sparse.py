"""Magnitude pruning and the CSR weight format.

Validates, coerces, allocates and dispatches; the arithmetic lives in ``numaccel._kernels.csr_cpu``.
"""

from __future__ import annotations

import numbers
import threading

import numpy as np

from . import _config
from ._kernels import csr_cpu
from ._validate import (
    as_float_array,
    as_fraction,
    as_index_array,
    as_value_array,
    as_weight_matrix,
    check_compressed,
    check_device,
    check_out,
    coordinates_to_csr,
    is_scipy_sparse,
    scipy_coordinates,
)

__all__ = ["CSRWeight", "magnitude_mask", "prune", "spmm"]

_INT32_MAX = np.iinfo(np.int32).max


_slab_store = threading.local()
_HUGE_PAGE = 1 << 21


def _slab_array(shape: tuple[int, int, int]) -> np.ndarray:
    """An uninitialised float32 array for the packed activations.

    Sizes between ``_config.CSR_SLAB_KEEP_MIN`` and ``_config.CSR_SLAB_KEEP_BYTES`` come from a buffer
    kept per Python thread and aligned to 2 MiB, so that repeated calls neither fault its pages in again
    nor depend on where the allocator put it (NumPy asks for transparent huge pages on buffers of 4 MiB
    and more); other sizes get a fresh array.
    """
    count = shape[0] * shape[1] * shape[2]
    if not _config.CSR_SLAB_KEEP_MIN <= 4 * count <= _config.CSR_SLAB_KEEP_BYTES:
        return np.empty(shape, dtype=np.float32)
    base = getattr(_slab_store, "base", None)
    if base is None or base.size < count:
        raw = np.empty(4 * max(count, _HUGE_PAGE // 2) + _HUGE_PAGE, dtype=np.uint8)
        off = -raw.ctypes.data % _HUGE_PAGE
        base = _slab_store.base = raw[off:].view(np.float32)
    return base[:count].reshape(shape)


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def _as_shape(shape) -> tuple[int, int]:
    try:
        n, k = shape
    except (TypeError, ValueError):
        raise ValueError(f"shape must be a pair (out_features, in_features), got {shape!r}") from None
    for name, v in (("shape[0]", n), ("shape[1]", k)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise TypeError(f"{name} must be an integer, got {type(v).__name__}")
        if v < 0:
            raise ValueError(f"{name} must be non-negative, got {v}")
    return int(n), int(k)


class CSRWeight:
    """A pruned weight ``W`` of shape ``(N, K)`` = ``(out_features, in_features)`` in CSR form.

    Parameters
    ----------
    indptr : array of int, shape (N + 1,)
        Row pointers: row ``i`` holds the nonzeros ``indptr[i]:indptr[i + 1]``.
    indices : array of int, shape (nnz,)
        Column ids, ``0 <= indices < K``, strictly increasing within each row.
    data : array of float, shape (nnz,)
        Values, finite; stored as float32.
    shape : tuple of int
        ``(N, K)``.

    Raises
    ------
    TypeError
        If ``indptr`` or ``indices`` is not an integer array or ``data`` is not a floating array.
    ValueError
        If any CSR rule is broken; the message names the first offending position.

    Notes
    -----
    The arrays are validated completely once, copied and made read-only, so calls to the kernels cost
    O(1) in checks. ``indptr`` is kept as int32 (int64 when ``nnz >= 2**31``); the column ids are stored
    once, as uint16 when ``K <= 65536`` (6 bytes per nonzero with the value) and int32 otherwise; the
    ``indices`` attribute returns them as int32.

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

    Examples
    --------
    >>> import numpy as np, numaccel as na
    >>> w = na.CSRWeight([0, 1, 1], [2], [5.0], shape=(2, 3))
    >>> w.to_dense()
    array([[0., 0., 5.],
           [0., 0., 0.]], dtype=float32)
    """

    __slots__ = ("_shape", "_indptr", "_kidx", "_data", "_bounds", "_device", "__weakref__")

    def __init__(self, indptr, indices, data, shape):
        n, k = _as_shape(shape)
        indptr = as_index_array(indptr, "indptr")
        indices = as_index_array(indices, "indices")
        data = as_value_array(data, "data")
        nnz = check_compressed(indptr, indices, data.size, n, k)
        if nnz:
            idx64 = indices.astype(np.int64)
            row_start = np.zeros(nnz, dtype=bool)
            starts = indptr[:-1][indptr[:-1] < nnz]
            row_start[starts] = True
            bad = (np.diff(idx64) <= 0) & ~row_start[1:]
            if bad.any():
                p = int(np.argmax(bad)) + 1
                row = int(np.searchsorted(indptr, p, side="right")) - 1
                what = "duplicate" if idx64[p] == idx64[p - 1] else "unsorted"
                raise ValueError(
                    f"indices must be strictly increasing within each row; row {row} has {what} column ids "
                    f"indices[{p - 1}]={idx64[p - 1]}, indices[{p}]={idx64[p]}; use CSRWeight.from_scipy(m), "
                    f"which sums duplicates and sorts"
                )
        with np.errstate(over="ignore"):
            data32 = data.astype(np.float32)  # always a copy
        if nnz and not np.isfinite(data32).all():
            p = int(np.argmax(~np.isfinite(data32)))
            raise ValueError(f"data must be finite (as float32), got {data[p]} at data[{p}]")
        index_dtype = np.int32 if nnz <= _INT32_MAX else np.int64
        self._shape = (n, k)
        self._indptr = _frozen(indptr.astype(index_dtype))
        narrow = np.uint16 if k <= _config.NARROW_INDEX_MAX else np.int32
        self._kidx = _frozen(indices.astype(narrow))
        self._data = _frozen(data32)
        self._bounds = {}
        self._device = None

    # ----------------------------------------------------------------------------------------------
    # constructors and conversions
    def __reduce__(self):
        # Pickled (by Dask, multiprocessing) as its arrays only, rebuilt and validated by the constructor:
        # cached row partitions and any device copy stay behind.
        return (type(self), (self._indptr, self._kidx, self._data, self._shape))

    @classmethod
    def from_dense(cls, W) -> CSRWeight:
        """Build from a dense ``(N, K)`` array, dropping exact zeros.

        Examples
        --------
        >>> import numpy as np, numaccel as na
        >>> na.CSRWeight.from_dense(np.eye(3, dtype=np.float32)).nnz
        3
        """
        W = as_weight_matrix(W, "W")
        n, k = W.shape
        rows, cols = np.nonzero(W)
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
        return cls(indptr, cols, W[rows, cols], (n, k))

    @classmethod
    def from_scipy(cls, m) -> CSRWeight:
        """Build from any ``scipy.sparse`` matrix or array; the caller's object is never modified.

        Parameters
        ----------
        m : scipy.sparse matrix or array, shape (N, K)
            Any format (CSR, CSC, COO, BSR, DIA, LIL, DOK) with a floating-point dtype.

        Returns
        -------
        CSRWeight

        Raises
        ------
        TypeError
            ``m`` not a scipy.sparse object, or not of a floating-point dtype.
        ValueError
            Arrays that break the format's rules (lengths, ``indptr`` order, indices out of range), or
            values that are NaN or inf as float32; the message names the array and the position.

        Notes
        -----
        The matrix's raw arrays are validated by numaccel before anything else reads them: no SciPy
        method runs on them, since SciPy's compiled code trusts them and a matrix whose arrays were
        assigned by hand could crash the interpreter there. Duplicate entries are then summed (in
        float64, rounded once to float32) and column ids sorted, on copies. Explicitly stored zeros are
        kept: they are part of the structure the caller chose and change no result. The cost is O(nnz),
        plus a sort when the entries are not already in row-major order.

        Examples
        --------
        >>> import numpy as np, scipy.sparse as sp, numaccel as na
        >>> m = sp.coo_array((np.array([1.0, 2.0, 3.0]), (np.array([1, 0, 1]), np.array([0, 1, 0]))), shape=(2, 2))
        >>> na.CSRWeight.from_scipy(m).to_dense()
        array([[0., 2.],
               [4., 0.]], dtype=float32)
        """
        rows, cols, vals, (n, k) = scipy_coordinates(m, "m")
        indptr, indices, data = coordinates_to_csr(rows, cols, vals, n)
        return cls(indptr, indices, data, (n, k))

    def to_scipy(self):
        """Return a new ``scipy.sparse.csr_array`` (float32, int32 indices) holding copies of the arrays."""
        import scipy.sparse as sp

        return sp.csr_array((self._data.copy(), self.indices, self._indptr.copy()), shape=self._shape)

    def to_dense(self) -> np.ndarray:
        """Return the dense float32 ``(N, K)`` matrix."""
        out = np.zeros(self._shape, dtype=np.float32)
        rows = np.repeat(np.arange(self._shape[0]), np.diff(self._indptr))
        out[rows, self._kidx] = self._data
        return out

    def to_device(self):
        """Return a copy of this weight resident on the GPU (see ``numaccel.linear(..., device="cuda")``)."""
        from . import _cuda

        return _cuda.to_device(self)

    # ----------------------------------------------------------------------------------------------
    # attributes
    @property
    def shape(self) -> tuple[int, int]:
        return self._shape

    @property
    def nnz(self) -> int:
        return int(self._data.size)

    @property
    def density(self) -> float:
        n, k = self._shape
        return self.nnz / (n * k) if n * k else 0.0

    @property
    def nbytes(self) -> int:
        """Bytes held in memory: ``indptr`` + column ids (as stored) + values."""
        return int(self._indptr.nbytes + self._kidx.nbytes + self._data.nbytes)

    @property
    def indptr(self) -> np.ndarray:
        return self._indptr

    @property
    def indices(self) -> np.ndarray:
        """Column ids as int32 (a read-only array)."""
        if self._kidx.dtype == np.int32:
            return self._kidx
        return _frozen(self._kidx.astype(np.int32))

    @property
    def data(self) -> np.ndarray:
        return self._data

    def __repr__(self) -> str:
        n, k = self._shape
        return f"CSRWeight(shape=({n}, {k}), nnz={self.nnz}, density={self.density:.4g})"

    # ----------------------------------------------------------------------------------------------
    # kernels
    def _row_bounds(self, nchunks: int) -> np.ndarray:
        """Row boundaries of ``nchunks`` chunks of about equal cost (nonzeros + 2 per row), cached."""
        b = self._bounds.get(nchunks)
        if b is None:
            n = self._shape[0]
            cost = self._indptr.astype(np.int64) + 2 * np.arange(n + 1, dtype=np.int64)
            targets = np.linspace(0, cost[-1], nchunks + 1)
            b = np.searchsorted(cost, targets, side="left").astype(np.int64)
            b[0], b[-1] = 0, n
            b = _frozen(np.unique(b))
            if b.size == 1:  # n == 0
                b = _frozen(np.array([0, 0], dtype=np.int64))
            self._bounds[nchunks] = b
        return b

    def _chunk_bounds(self) -> np.ndarray:
        import numba

        return self._row_bounds(_config.CSR_CHUNKS_PER_THREAD * numba.get_num_threads())

    def _serial(self, p: int) -> bool:
        """True when a product with ``p`` activation columns is too small to gain from threads.

        The work estimate counts a nonzero once per 8 columns (the batched kernels handle 8 to 32
        columns per vector instruction) and every activation read and output written once.
        """
        n, k = self._shape
        return self.nnz * max(1, p // 8) + p * (k + n) <= _config.CSR_SERIAL_WORK

    def _batched_into(self, b: np.ndarray, out: np.ndarray, *, transposed: bool) -> None:
        """``self @ b`` for ``b`` given either as (K, P) (``transposed`` False; ``out`` (N, P)) or as the
        rows of ``b.T`` (``transposed`` True: ``b`` is x (P, K), ``out`` is (P, N))."""
        p = b.shape[0] if transposed else b.shape[1]
        n, k = self._shape
        serial = self._serial(p)
        nchunks = 1 if serial else self._chunk_bounds().size - 1
        if b.dtype == np.float32 and _config.CSR_USE_TILES:
            widths = [w for w in csr_cpu.TILE_WIDTHS if w <= _config.CSR_TILE_MAX_WIDTH] or [8]
            width = next((w for w in widths if w >= p), widths[-1])
            slabs = _slab_array((-(-p // width), k, width))
            group = _config.CSR_STORE_ROWS if transposed and width > 8 else 1
            scratch = np.empty((nchunks, group, width), dtype=np.float32)
            args = (self._indptr, self._kidx, self._data)
            if serial:
                if transposed:
                    csr_cpu._pack_rows_tiles_serial(b, slabs)
                else:
                    csr_cpu._pack_cols_tiles_serial(b, slabs)
                csr_cpu._spmm_tiles_chunk(*args, 0, n, slabs, scratch[0], _config.CSR_BLOCK_ROWS, transposed, out)
                return
            with _config.kernel_guard():
                if transposed:
                    csr_cpu._pack_rows_tiles(b, slabs)
                else:
                    csr_cpu._pack_cols_tiles(b, slabs)
                csr_cpu._spmm_csr_tiles(
                    *args, self._chunk_bounds(), slabs, scratch, _config.CSR_BLOCK_ROWS, transposed, out
                )
            return
        if transposed:
            b = np.ascontiguousarray(b.T)
        scratch = np.empty((nchunks, p), dtype=b.dtype)
        if serial:
            csr_cpu._spmm_rows_range(self._indptr, self._kidx, self._data, 0, n, b, scratch[0], transposed, out)
            return
        with _config.kernel_guard():
            csr_cpu._spmm_csr_rows(
                self._indptr, self._kidx, self._data, self._chunk_bounds(), b, scratch, transposed, out
            )

    def _matmul_into(self, b: np.ndarray, out: np.ndarray) -> None:
        """``out = self @ b`` for a C-contiguous ``b`` of shape (K,) or (K, P); ``out`` (N,) or (N, P)."""
        if b.ndim == 1:
            vec = b.dtype == np.float32 and _config.CSR_USE_TILES
            if self._serial(1):
                rows = csr_cpu._spmv_vec_range if vec else csr_cpu._spmv_rows_range
                rows(self._indptr, self._kidx, self._data, 0, self._shape[0], b, out)
                return
            kernel = csr_cpu._spmv_csr_vec if vec else csr_cpu._spmv_csr_rows
            with _config.kernel_guard():
                kernel(self._indptr, self._kidx, self._data, self._chunk_bounds(), b, out)
        else:
            self._batched_into(b, out, transposed=False)

    def _linear(self, x: np.ndarray, out: np.ndarray, *, activations=None) -> None:
        """``out = x @ self.T`` for validated ``x`` (B, K) and C-contiguous ``out`` (B, N)."""
        if activations is not None:
            raise ValueError(f"activations={activations!r} is not supported for CSRWeight; use None")
        if x.shape[0] == 1:
            self._matmul_into(np.ascontiguousarray(x[0]), out[0])
        else:
            self._batched_into(np.ascontiguousarray(x), out, transposed=True)


def _keep_top(a: np.ndarray, keep: int) -> np.ndarray:
    """Per row of ``a`` (non-negative), a mask keeping the ``keep`` largest values; among equal values the
    lowest column index wins, so the result is deterministic and the count exact."""
    rows, cols = a.shape
    if keep <= 0:
        return np.zeros(a.shape, dtype=bool)
    if keep >= cols:
        return np.ones(a.shape, dtype=bool)
    thr = np.partition(a, cols - keep, axis=1)[:, cols - keep][:, None]
    mask = a > thr
    need = keep - mask.sum(axis=1, keepdims=True)
    tie = a == thr
    mask |= tie & (np.cumsum(tie, axis=1) <= need)
    return mask


def magnitude_mask(W, sparsity: float, *, granularity: str = "tensor") -> np.ndarray:
    """Boolean mask keeping the largest-magnitude entries of ``W``.

    Parameters
    ----------
    W : array_like, shape (N, K)
        Floating-point weights, finite.
    sparsity : float
        Fraction of entries to zero, in [0, 1].
    granularity : {"tensor", "row"}, keyword-only
        ``"tensor"`` keeps ``round((1 - sparsity) * N * K)`` entries over the whole matrix; ``"row"`` keeps
        ``round((1 - sparsity) * K)`` in every row.

    Returns
    -------
    mask : ndarray of bool, shape (N, K)

    Raises
    ------
    TypeError, ValueError
        For a non-float or non-2-D ``W``, NaN/inf in ``W``, ``sparsity`` outside [0, 1] or an unknown
        ``granularity``.

    See Also
    --------
    prune : apply the mask and store the result as CSR.

    Notes
    -----
    The kept count is exact: among entries of equal magnitude the one earlier in row-major order is kept.

    Examples
    --------
    >>> import numpy as np, numaccel as na
    >>> na.magnitude_mask(np.array([[1., -3.], [2., 0.5]]), 0.5)
    array([[False,  True],
           [ True, False]])
    """
    W = as_weight_matrix(W, "W")
    sparsity = as_fraction(sparsity, "sparsity")
    a = np.abs(W)
    if granularity == "tensor":
        keep = int(round((1.0 - sparsity) * W.size))
        return _keep_top(a.reshape(1, -1), keep).reshape(W.shape)
    if granularity == "row":
        keep = int(round((1.0 - sparsity) * W.shape[1]))
        return _keep_top(a, keep)
    raise ValueError(f"granularity must be 'tensor' or 'row', got {granularity!r}")


def prune(W, sparsity: float, *, granularity: str = "tensor") -> CSRWeight:
    """Magnitude-prune ``W`` and return ``W * magnitude_mask(W, sparsity)`` as a :class:`CSRWeight`.

    Kept entries that are exactly zero are dropped from the CSR structure.

    Examples
    --------
    >>> import numpy as np, numaccel as na
    >>> W = np.arange(1, 13, dtype=np.float32).reshape(3, 4)
    >>> na.prune(W, sparsity=0.75).nnz
    3
    """
    W = as_weight_matrix(W, "W")
    mask = magnitude_mask(W, sparsity, granularity=granularity)
    return CSRWeight.from_dense(np.where(mask, W, np.float32(0)))


def as_csr(A, name: str = "A") -> CSRWeight:
    if isinstance(A, CSRWeight):
        return A
    if is_scipy_sparse(A):
        return CSRWeight.from_scipy(A)
    raise TypeError(f"{name} must be a CSRWeight or a scipy.sparse matrix, got {type(A).__name__}")


def spmm(A, B, *, out=None, device: str = "cpu"):
    """Sparse times dense: ``C = A @ B``.

    Parameters
    ----------
    A : CSRWeight or scipy.sparse matrix/array, shape (M, K)
        A SciPy input is validated and converted on every call; convert once with
        :meth:`CSRWeight.from_scipy` to multiply the same matrix repeatedly.
    B : ndarray, shape (K,) or (K, P), float32 or float64
        Any memory layout (copied to C order when needed).
    out : ndarray, optional, keyword-only
        C-contiguous, shape (M,) or (M, P), dtype of ``B``.
    device : {"cpu", "cuda"}, keyword-only

    Returns
    -------
    C : ndarray, shape (M,) or (M, P), dtype of ``B``

    Raises
    ------
    TypeError
        ``A`` not sparse, ``B`` not float32/float64, ``out`` of the wrong type.
    ValueError
        Mismatched shapes, a bad ``out``.

    See Also
    --------
    linear : ``x @ W.T + bias`` for a layer.

    Notes
    -----
    ``C[i] = sum_p data[p] * B[indices[p]]`` over the nonzeros ``p`` of row ``i``, accumulated in the dtype
    of ``B``. Rows are split among threads in chunks of about equal numbers of nonzeros.

    Examples
    --------
    >>> import numpy as np, numaccel as na
    >>> A = na.CSRWeight.from_dense(np.array([[1., 0.], [0., 2.]]))
    >>> na.spmm(A, np.array([[1., 2.], [3., 4.]], dtype=np.float32))
    array([[1., 2.],
           [6., 8.]], dtype=float32)
    """
    device = check_device(device)
    if device == "cuda" or getattr(A, "on_device", False):
        from . import _cuda

        return _cuda.spmm(A if getattr(A, "on_device", False) else as_csr(A, "A"), B, out=out)
    A = as_csr(A, "A")
    B = as_float_array(B, "B")
    m, k = A.shape
    if B.shape[0] != k:
        raise ValueError(f"B must have {k} rows (A.shape[1]), got shape {B.shape}")
    shape = (m,) + B.shape[1:]
    if out is None:
        out = np.empty(shape, dtype=B.dtype)
    else:
        check_out(out, shape, B.dtype, inputs={"B": B})
    if out.size:
        A._matmul_into(np.ascontiguousarray(B), out)
    return out
