"""The pruned-int8 weight format: CSR structure, int8 values, symmetric float32 scales.

One scale per output row or one per group of a row's consecutive nonzeros (data and validation only).

How it is executed lives in :mod:`numaccel.plan.csr_int8`; :func:`numaccel.quantize` makes one from a
:class:`~numaccel.CSRWeight`.
"""

from __future__ import annotations

import numpy as np

from .._validate import as_index_array, check_compressed, check_finite, check_row_range, frozen, plain_array
from ._registry import WeightFormat, spec_for
from .csr import CSRWeight, _as_shape, _RowPattern
from .int8 import _as_group_size

__all__ = ["CSRInt8Weight", "group_pointer"]


def group_pointer(indptr: np.ndarray, group_size) -> np.ndarray:
    """Scale pointer ``gptr`` (N + 1,), int64: row ``i``'s scales are ``scales[gptr[i]:gptr[i + 1]]``.

    A row of ``m`` nonzeros has ``ceil(m / group_size)`` groups (one scale per row for ``group_size=None``,
    also for an empty row); nonzero ``p`` of row ``i`` belongs to group ``gptr[i] + (p - indptr[i]) //
    group_size``.
    """
    counts = np.diff(np.asarray(indptr, dtype=np.int64))
    per = np.ones_like(counts) if group_size is None else -(-counts // group_size)
    gptr = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(per, out=gptr[1:])
    return gptr


class CSRInt8Weight(_RowPattern, WeightFormat):
    """A pruned weight ``W`` of shape ``(N, K)`` whose stored values are int8 codes times a scale.

    Parameters
    ----------
    indptr, indices : array of int
        The CSR structure, with the rules of :class:`CSRWeight` (``indices`` strictly increasing within a
        row, in ``[0, K)``).
    qdata : ndarray of int8, shape (nnz,)
        The codes of the stored values.
    scales : array of float, shape (N,) or (G,)
        Non-negative, finite; stored as float32. One per row (``group_size=None``), or one per group of
        ``group_size`` consecutive stored values of a row (``G`` the sum over rows of
        ``ceil(nnz_i / group_size)``, rows in order; see :func:`group_pointer`).
    shape : tuple of int
        ``(N, K)``.
    group_size : int, optional, keyword-only

    Raises
    ------
    TypeError
        ``qdata`` not int8, ``scales`` not floating point, index arrays not integer.
    ValueError
        A CSR rule broken, ``qdata`` or ``scales`` of the wrong length, a negative or non-finite scale.

    See Also
    --------
    numaccel.quantize : makes one from a :class:`CSRWeight` (``quantize(prune(W, 0.9))``).

    Notes
    -----
    ``W[i, indices[p]] = qdata[p] * scales[g(p)]`` for the stored entries, 0 elsewhere: the zeros of the
    pattern stay exactly zero. Storage is one byte per code plus the column id (2 bytes when
    ``K <= 65536``), ``indptr`` and the scales: about 3 bytes per nonzero against 6 for float32 CSR. The
    arrays are validated once, copied and made read-only. :func:`numaccel.linear` computes straight from
    the codes: weight-only (float activations), or W8A8 with ``activation_quant="int8"`` (activations
    quantized per row, exact int32 sums; faster from about 64 rows per call).

    Examples
    --------
    >>> import numpy as np, numaccel as na
    >>> w = na.CSRInt8Weight([0, 2, 2], [0, 2], np.array([127, -64], np.int8), [0.5, 0.0], (2, 3))
    >>> w.to_dense()
    array([[ 63.5,   0. , -32. ],
           [  0. ,   0. ,   0. ]], dtype=float32)
    """

    __slots__ = ("_shape", "_indptr", "_kidx", "_q", "_scales", "_group_size", "__weakref__")

    untrainable_hint = ("fine-tune the pruned float model first (numaccel.train keeps a CSR weight's pattern), "
                        "then quantize it")

    def __init__(self, indptr, indices, qdata, scales, shape, *, group_size=None):
        n, k = _as_shape(shape)
        qdata = plain_array(qdata, "qdata")
        if not isinstance(qdata, np.ndarray):
            qdata = np.asarray(qdata)
        if qdata.dtype != np.int8:
            raise TypeError(f"qdata must be int8, got {qdata.dtype}; use qdata.astype(np.int8) after checking "
                            f"the codes fit in [-128, 127]")
        if qdata.ndim != 1:
            raise ValueError(f"qdata must be 1-D (one code per stored value), got shape {qdata.shape}")
        group_size = _as_group_size(group_size)
        indptr = as_index_array(indptr, "indptr")
        indices = as_index_array(indices, "indices")
        check_compressed(indptr, indices, qdata.size, n, k, names=("indptr", "indices", "qdata"))
        # the rest of the structure (order within rows), by CSRWeight's rules; its values are placeholders
        structure = CSRWeight(indptr, indices, np.zeros(qdata.size, np.float32), (n, k))
        scales = plain_array(scales, "scales")
        if not isinstance(scales, np.ndarray):
            scales = np.asarray(scales)
        if scales.dtype.kind != "f":
            raise TypeError(f"scales must be a floating-point array, got {scales.dtype}; use "
                            f"scales.astype(np.float32)")
        want = n if group_size is None else int(group_pointer(structure.indptr, group_size)[-1])
        rule = "(N,) for group_size=None" if group_size is None else \
            f"(sum of ceil(nnz_i / {group_size}) over rows,)"
        if scales.shape != (want,):
            raise ValueError(f"scales must have shape ({want},) {rule}, got {scales.shape}")
        with np.errstate(over="ignore"):
            scales32 = scales.astype(np.float32)  # always a copy
        if scales32.size:
            check_finite(scales32, "scales")
            if scales32.min() < 0:
                p = int(np.argmax(scales32 < 0))
                raise ValueError(f"scales must be non-negative, got {scales32[p]} at scales[{p}]")
        self._init(structure.indptr, structure.indices, np.array(qdata, dtype=np.int8), scales32, group_size,
                   (n, k))

    def _init(self, indptr, kidx, q, scales, group_size, shape):
        self._shape = (int(shape[0]), int(shape[1]))
        self._indptr = frozen(indptr)
        self._kidx = frozen(kidx)
        self._q = frozen(q)
        self._scales = frozen(scales)
        self._group_size = group_size

    @classmethod
    def _trusted(cls, indptr, indices, qdata, scales, shape, group_size) -> CSRInt8Weight:
        """Wrap arrays numaccel built itself (a CSRWeight's structure, int8 codes, float32 scales), unchecked."""
        self = cls.__new__(cls)
        self._init(indptr, indices, qdata, scales, group_size, shape)
        return self

    def __reduce__(self):
        """Pickle as the arrays only, rebuilt through the validating constructor."""
        return (_rebuild, (self._indptr, self._kidx, self._q, self._scales, self._shape, self._group_size))

    # ----------------------------------------------------------------------------------------------
    @property
    def nbytes(self) -> int:
        """Bytes of ``indptr``, the column ids (as stored), the codes and the scales."""
        return int(self._indptr.nbytes + self._kidx.nbytes + self._q.nbytes + self._scales.nbytes)

    @property
    def qdata(self) -> np.ndarray:
        """The int8 codes, one per stored value."""
        return self._q

    @property
    def scales(self) -> np.ndarray:
        """float32 scales: (N,) per row, or one per group (see :func:`group_pointer`)."""
        return self._scales

    @property
    def group_size(self):
        """Stored values per scale within a row; None for one scale per row."""
        return self._group_size

    def _value_scales(self) -> np.ndarray:
        """Return the scale of every stored value, (nnz,) float32."""
        counts = np.diff(self._indptr.astype(np.int64))
        if self._group_size is None:
            return np.repeat(self._scales, counts)
        gptr = group_pointer(self._indptr, self._group_size)
        row_of = np.repeat(np.arange(counts.size), counts)
        offset = np.arange(self.nnz, dtype=np.int64) - self._indptr.astype(np.int64)[row_of]
        return self._scales[gptr[row_of] + offset // self._group_size]

    def dequantize(self) -> CSRWeight:
        """Return the float32 pruned weight, ``qdata * scale`` on the same pattern, as a :class:`CSRWeight`."""
        data = self._q.astype(np.float32) * self._value_scales()
        return CSRWeight._trusted(self._indptr, self._kidx, data, self._shape)

    def to_dense(self) -> np.ndarray:
        """Return the dense float32 ``(N, K)`` matrix."""
        return self.dequantize().to_dense()

    def to_device(self):
        """Return a copy of this weight resident on the GPU (see ``numaccel.linear(..., device="cuda")``)."""
        return spec_for(self).to_device(self)

    def row_block(self, start: int, stop: int) -> CSRInt8Weight:
        """Return rows ``start:stop`` as a new weight (copies of that block's arrays)."""
        start, stop = check_row_range(start, stop, self._shape[0])
        lo, hi = int(self._indptr[start]), int(self._indptr[stop])
        if self._group_size is None:
            s = self._scales[start:stop].copy()
        else:
            gptr = group_pointer(self._indptr, self._group_size)
            s = self._scales[gptr[start]:gptr[stop]].copy()
        return type(self)._trusted(self._indptr[start:stop + 1] - lo, self._kidx[lo:hi].copy(),
                                   self._q[lo:hi].copy(), s, (stop - start, self._shape[1]), self._group_size)

    def to_arrays(self):
        """Return the arrays ``indptr``, ``indices``, ``qdata``, ``scales`` and the params shape, group_size."""
        n, k = self._shape
        return ({"indptr": self._indptr, "indices": self._kidx, "qdata": self._q, "scales": self._scales},
                {"shape": [n, k], "group_size": self._group_size})

    @classmethod
    def from_arrays(cls, arrays, params) -> CSRInt8Weight:
        """Rebuild from :meth:`to_arrays`'s arrays and params, validated completely."""
        names = {"indptr", "indices", "qdata", "scales"}
        if set(arrays) != names:
            raise ValueError(f"a csr-int8 weight has the arrays {sorted(names)}, got {sorted(arrays)}")
        return cls(arrays["indptr"], arrays["indices"], arrays["qdata"], arrays["scales"], params["shape"],
                   group_size=params.get("group_size"))

    def __repr__(self) -> str:
        """Return the shape, stored values, density and grouping."""
        n, k = self._shape
        return (f"CSRInt8Weight(shape=({n}, {k}), nnz={self.nnz}, density={self.density:.4g}, "
                f"group_size={self._group_size})")


def _rebuild(indptr, indices, qdata, scales, shape, group_size):
    return CSRInt8Weight(indptr, indices, qdata, scales, shape, group_size=group_size)
