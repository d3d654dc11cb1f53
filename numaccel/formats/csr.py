"""The CSR weight format: a pruned weight's nonzeros in compressed sparse rows (data and validation only).

How it is executed lives in :mod:`numaccel.plan.csr`.
"""

from __future__ import annotations

import numbers

import numpy as np

from .. import _config
from .._validate import (
    as_index_array,
    as_value_array,
    as_weight_matrix,
    check_compressed,
    check_row_range,
    coordinates_to_csr,
    frozen,
    scipy_coordinates,
)
from ._registry import WeightFormat, spec_for

__all__ = ["CSRWeight"]

_INT32_MAX = np.iinfo(np.int32).max
_K_MAX = _INT32_MAX + 1  # the largest in_features whose column ids (0 .. K - 1) fit int32


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
    return int(n), _in_features(k)


def _in_features(k) -> int:
    """``k`` (in_features) as an int, refused past ``2**31``: column ids are stored as int32 at most."""
    k = int(k)
    if k > _K_MAX:
        raise ValueError(f"shape[1] (in_features) must be at most 2**31 = {_K_MAX} (column ids are stored as "
                         f"int32), got {k}")
    return k


class _RowPattern:
    """Attributes of a compressed-rows pattern (``_shape``, ``_indptr``, ``_kidx``), shared by the CSR formats."""

    __slots__ = ()

    @property
    def shape(self) -> tuple[int, int]:
        """``(N, K)`` = ``(out_features, in_features)``."""
        return self._shape

    @property
    def nnz(self) -> int:
        """Number of stored entries (explicitly stored zeros included)."""
        return int(self._kidx.size)

    @property
    def density(self) -> float:
        """Fraction ``nnz / (N * K)`` of the entries that are stored (0.0 for an empty shape)."""
        n, k = self._shape
        return self.nnz / (n * k) if n * k else 0.0

    @property
    def indptr(self) -> np.ndarray:
        """Row pointers as stored (read-only, no copy): int32, or int64 when ``nnz >= 2**31``."""
        return self._indptr

    @property
    def indices(self) -> np.ndarray:
        """Column ids as stored (read-only, no copy): uint16 when ``K <= 65536``, else int32."""
        return self._kidx


class CSRWeight(_RowPattern, WeightFormat):
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
    once, as uint16 when ``K <= 65536`` (6 bytes per nonzero with the value) and int32 otherwise (so
    ``K`` is at most ``2**31``), and the ``indices`` attribute returns them as stored.

    ``linear`` and ``spmm`` read the stored arrays directly (never a dense copy); which kernel runs is
    decided by :mod:`numaccel.plan.csr`. Results do not depend on the thread count.

    Examples
    --------
    >>> import numpy as np, numaccel as na
    >>> w = na.CSRWeight([0, 1, 1], [2], [5.0], shape=(2, 3))
    >>> w.to_dense()
    array([[0., 0., 5.],
           [0., 0., 0.]], dtype=float32)
    """

    __slots__ = ("_shape", "_indptr", "_kidx", "_data", "__weakref__")

    trainable = True

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
        self._indptr = frozen(indptr.astype(index_dtype))
        narrow = np.uint16 if k <= _config.NARROW_INDEX_MAX else np.int32
        self._kidx = frozen(indices.astype(narrow))
        self._data = frozen(data32)

    @classmethod
    def _trusted(cls, indptr, indices, data, shape) -> CSRWeight:
        """Wrap arrays numaccel built itself, already valid, without a second scan.

        ``indptr`` int32/int64, ``indices`` of the stored width for ``shape[1]`` (uint16 when
        ``K <= 65536``, else int32), ``data`` float32; the arrays are taken over (made read-only).
        """
        n, k = shape
        self = cls.__new__(cls)
        self._shape = (int(n), _in_features(k))
        nnz = int(data.size)
        self._indptr = frozen(np.asarray(indptr, dtype=np.int32 if nnz <= _INT32_MAX else np.int64))
        narrow = np.uint16 if k <= _config.NARROW_INDEX_MAX else np.int32
        self._kidx = frozen(np.asarray(indices, dtype=narrow))
        self._data = frozen(np.asarray(data, dtype=np.float32))
        return self

    # ----------------------------------------------------------------------------------------------
    # constructors and conversions
    def __reduce__(self):
        """Pickle as the format's arrays only, rebuilt and validated by the constructor.

        Used by Dask and multiprocessing: whatever a planner or a device keeps beside the weight stays
        behind.
        """
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
        rows, cols = np.nonzero(W)  # row-major order: column ids increase within each row
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
        return cls._trusted(indptr, cols, W[rows, cols], (n, k))  # W is finite float32 (as_weight_matrix)

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

        return sp.csr_array((self._data.copy(), self._kidx.astype(np.int32), self._indptr.astype(np.int32)),
                            shape=self._shape)

    def to_dense(self) -> np.ndarray:
        """Return the dense float32 ``(N, K)`` matrix."""
        out = np.zeros(self._shape, dtype=np.float32)
        rows = np.repeat(np.arange(self._shape[0]), np.diff(self._indptr))
        out[rows, self._kidx] = self._data
        return out

    def to_device(self):
        """Return a copy of this weight resident on the GPU (see ``numaccel.linear(..., device="cuda")``)."""
        return spec_for(self).to_device(self)

    def row_block(self, start: int, stop: int) -> CSRWeight:
        """Rows ``start:stop`` as a new CSRWeight (copies of that block's arrays), in O(its nonzeros)."""
        start, stop = check_row_range(start, stop, self._shape[0])
        lo, hi = int(self._indptr[start]), int(self._indptr[stop])
        return type(self)._trusted(self._indptr[start:stop + 1] - lo, self._kidx[lo:hi].copy(),
                                   self._data[lo:hi].copy(), (stop - start, self._shape[1]))

    def to_arrays(self):
        """Return the stored arrays (read-only) ``indptr``, ``indices``, ``data`` and ``{"shape": [N, K]}``."""
        n, k = self._shape
        return {"indptr": self._indptr, "indices": self._kidx, "data": self._data}, {"shape": [n, k]}

    @classmethod
    def from_arrays(cls, arrays, params) -> CSRWeight:
        """Rebuild from :meth:`to_arrays`'s arrays plus ``params["shape"]``, validated completely."""
        extra = set(arrays) - {"indptr", "indices", "data"}
        if extra:
            raise ValueError(f"a csr weight has arrays indptr, indices and data, got also {sorted(extra)}")
        missing = {"indptr", "indices", "data"} - set(arrays)
        if missing:
            raise ValueError(f"a csr weight needs the arrays {sorted(missing)}")
        return cls(arrays["indptr"], arrays["indices"], arrays["data"], params["shape"])

    @property
    def nbytes(self) -> int:
        """Bytes held in memory: ``indptr`` + column ids (as stored) + values."""
        return int(self._indptr.nbytes + self._kidx.nbytes + self._data.nbytes)

    @property
    def data(self) -> np.ndarray:
        """Values as stored (read-only, no copy), float32."""
        return self._data

    def __repr__(self) -> str:
        """Return a short description: the shape, the number of stored entries and the density."""
        n, k = self._shape
        return f"CSRWeight(shape=({n}, {k}), nnz={self.nnz}, density={self.density:.4g})"
