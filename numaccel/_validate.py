"""Shared argument checks. Each raises ``TypeError`` for a wrong type or dtype and ``ValueError`` for a
wrong value or shape, with a message that names the argument, the rule, what was seen and the fix."""

from __future__ import annotations

import numbers
import sys

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def frozen(a: np.ndarray) -> np.ndarray:
    """``a`` read-only for good: a read-only view whose memory's owner is read-only too, so that
    ``setflags(write=True)`` on it raises (the kernels trust what a weight validated once).

    An array that is itself a view of another array is copied first (a view's flag could be set back
    while its owner stays writable); one this function returned is returned as it is.
    """
    base = a.base
    if isinstance(base, np.ndarray) and base.base is None and not base.flags.writeable and not a.flags.writeable:
        return a  # frozen already
    if base is not None:
        a = a.copy()
    a.setflags(write=False)
    view = a.view()
    view.setflags(write=False)
    return view


def plain_array(a, name: str):
    """``a`` itself, or for an ndarray subclass (``numpy.matrix``, ``numpy.memmap``) a plain ndarray view of
    it: the kernels take plain arrays only. A masked array is refused: its mask would be ignored."""
    if type(a) is np.ndarray or not isinstance(a, np.ndarray):
        return a
    if isinstance(a, np.ma.MaskedArray):
        raise TypeError(f"{name} is a numpy.ma.MaskedArray, whose mask numaccel would ignore; pass "
                        f"{name}.filled(value), or {name}.data to use the stored values as they are")
    return a.view(np.ndarray)


def as_float_array(x, name: str, *, ndims=(1, 2)) -> np.ndarray:
    """Return ``x`` as an ndarray of float32 or float64 (no casting) with ``ndim`` in ``ndims`` (None: any
    number of dimensions from 1)."""
    x = plain_array(x, name)
    if not isinstance(x, np.ndarray):
        if hasattr(x, "__cuda_array_interface__"):
            raise TypeError(f"{name} is a device array; pass device='cuda' or copy it to the host first")
        if hasattr(x, "toarray") or hasattr(x, "tocsr"):
            raise TypeError(f"{name} must be a dense array, got {type(x).__name__}; use {name}.toarray()")
        try:
            x = np.asarray(x)
        except Exception as exc:  # noqa: BLE001 - any failure to convert is a type problem
            raise TypeError(f"{name} must be array-like, got {type(x).__name__}") from exc
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {x.dtype}; use {name}.astype(np.float32)")
    if ndims is None:
        if x.ndim < 1:
            raise ValueError(f"{name} must be at least 1-D, got a 0-D array")
    elif x.ndim not in ndims:
        want = " or ".join(f"{d}-D" for d in ndims)
        raise ValueError(f"{name} must be {want}, got {x.ndim}-D with shape {x.shape}")
    return x


def is_scipy_sparse(a) -> bool:
    """Whether ``a`` is a scipy.sparse matrix or array (without importing SciPy: such an object means the
    module is loaded)."""
    sp = sys.modules.get("scipy.sparse")
    return sp is not None and sp.issparse(a)


def as_weight_matrix(w, name: str = "W") -> np.ndarray:
    """Return a dense 2-D floating weight (any float dtype) as float32, rejecting NaN/inf and other dtypes."""
    w = plain_array(w, name)
    if not isinstance(w, np.ndarray):
        if is_scipy_sparse(w):
            rows, cols, vals, shape = scipy_coordinates(w, name)
            dense = np.zeros(shape, dtype=np.float64 if vals.dtype.itemsize <= 8 else vals.dtype)
            np.add.at(dense, (rows, cols), vals)  # coordinates validated: in range
            w = dense
        else:
            try:
                w = np.asarray(w)
            except Exception as exc:  # noqa: BLE001 - any failure to convert is a type problem
                raise TypeError(f"{name} must be array-like, got {type(w).__name__}") from exc
    if w.dtype.kind != "f":
        raise TypeError(f"{name} must be a floating-point array, got {w.dtype}; use {name}.astype(np.float32)")
    if w.ndim != 2:
        raise ValueError(f"{name} must be 2-D (out_features, in_features), got {w.ndim}-D with shape {w.shape}")
    if w.dtype != np.float32:
        with np.errstate(over="ignore"):
            w = w.astype(np.float32)
    check_finite(w, name)
    return w


def check_finite(a: np.ndarray, name: str) -> None:
    """Raise ``ValueError`` naming the first non-finite element of ``a``."""
    if a.size and not np.isfinite(a).all():
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
        where = ", ".join(map(str, bad))
        raise ValueError(f"{name} must be finite, got {a[bad]} at {name}[{where}]")


def as_fraction(value, name: str) -> float:
    """A real number in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number in [0, 1], got {type(value).__name__}")
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return value


def as_positive_int(value, name: str, *, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive integer, got {type(value).__name__}")
    value = int(value)
    if value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value}")
    return value


def check_row_range(start, stop, n: int) -> tuple[int, int]:
    """``(start, stop)`` as ints for a block of rows ``start:stop`` of a weight with ``n`` rows:
    integers with ``0 <= start < stop <= n`` (no negative or reversed bounds: a block is never empty)."""
    for name, v in (("start", start), ("stop", stop)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise TypeError(f"{name} must be an integer row index, got {type(v).__name__}")
    start, stop = int(start), int(stop)
    if not 0 <= start < stop <= n:
        raise ValueError(f"row block {start}:{stop} must satisfy 0 <= start < stop <= {n} (the weight's rows)")
    return start, stop


def check_out(out, shape: tuple, dtype: np.dtype, name: str = "out", *, inputs: dict | None = None) -> np.ndarray:
    """Validate a caller-supplied output array: exact shape and dtype, C-contiguous, writable, and sharing
    no memory with any of ``inputs`` (name -> array): a kernel that wrote into its own input would read
    values it had already overwritten."""
    if not isinstance(out, np.ndarray) or isinstance(out, (np.ma.MaskedArray, np.matrix)):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype}, got {out.dtype}")
    if out.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {out.shape}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous; allocate it with np.empty({tuple(shape)}, dtype=np.{dtype})")
    if not out.flags.writeable:
        raise ValueError(f"{name} must be writable")
    for other, a in (inputs or {}).items():
        if isinstance(a, np.ndarray) and np.may_share_memory(out, a):
            raise ValueError(f"{name} must not share memory with {other}; pass a separate array or out=None")
    return out


def check_device(device):
    """``device`` as given: None (follow the weight), ``"cpu"`` or ``"cuda"``."""
    if device is not None and (not isinstance(device, str) or device not in ("cpu", "cuda")):
        raise ValueError(f"device must be None, 'cpu' or 'cuda', got {device!r}")
    return device


def check_bias(bias, n: int, name: str = "bias"):
    """None, or a 1-D float32/float64 array of ``n`` values (no casting)."""
    if bias is None:
        return None
    bias = as_float_array(bias, name, ndims=(1,))
    if bias.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) (out_features), got {bias.shape}")
    return bias


def check_features(x: np.ndarray, k: int, name: str = "x") -> np.ndarray:
    """``x`` (already a float array of at least 1 dimension) with ``k`` features in its last axis."""
    if x.ndim == 0 or x.shape[-1] != k:
        raise ValueError(f"{name} must have {k} features (weight.shape[1]) in its last axis, got shape {x.shape}")
    return x


def as_index_array(a, name: str) -> np.ndarray:
    """``a`` as a 1-D integer ndarray (no casting); an empty list counts as integers."""
    a = plain_array(a, name)
    if not isinstance(a, np.ndarray):
        try:
            a = np.asarray(a)
        except Exception as exc:  # noqa: BLE001 - any failure to convert is a type problem
            raise TypeError(f"{name} must be an integer array, got {type(a).__name__}") from exc
        if a.size == 0 and a.dtype == np.float64:  # an empty list: no dtype to judge
            a = a.astype(np.int64)
    if a.dtype.kind not in "iu" or a.dtype == np.bool_:
        raise TypeError(f"{name} must be an integer array, got {a.dtype}; use {name}.astype(np.int32)")
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got {a.ndim}-D with shape {a.shape}")
    return a


def as_value_array(a, name: str, *, ndim: int = 1) -> np.ndarray:
    """``a`` as a floating-point ndarray with ``ndim`` dimensions (no casting)."""
    a = plain_array(a, name)
    if not isinstance(a, np.ndarray):
        try:
            a = np.asarray(a)
        except Exception as exc:  # noqa: BLE001
            raise TypeError(f"{name} must be a floating-point array, got {type(a).__name__}") from exc
    if a.dtype.kind != "f":
        raise TypeError(f"{name} must be a floating-point array, got {a.dtype}; use {name}.astype(np.float32)")
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got {a.ndim}-D with shape {a.shape}")
    return a


def check_compressed(indptr: np.ndarray, indices: np.ndarray, nvalues: int, major: int, minor: int, *,
                     names=("indptr", "indices", "data"), dims=("shape[0]", "shape[1]")) -> int:
    """Check the structure of compressed sparse arrays (CSR, or CSC read by columns); return ``nnz``.

    ``indptr`` and ``indices`` are integer 1-D arrays (see :func:`as_index_array`), ``nvalues`` the
    number of stored values. Checked: ``len(indptr) == major + 1``, ``indptr[0] == 0``, non-decreasing,
    ``indptr[-1] == len(indices) == nvalues`` and ``0 <= indices < minor``. Order and duplicates within a
    row are not checked here. Only NumPy reductions touch the arrays, so any input is safe to check.
    """
    ptr_name, idx_name, val_name = names
    if indptr.size != major + 1:
        raise ValueError(f"{ptr_name} must have length {dims[0]} + 1 = {major + 1}, got {indptr.size}")
    if indptr[0] != 0:
        raise ValueError(f"{ptr_name}[0] must be 0, got {indptr[0]}")
    if indptr.dtype == np.uint64 and indptr.max(initial=0) > np.iinfo(np.int64).max:
        p = int(np.argmax(indptr > np.iinfo(np.int64).max))
        raise ValueError(f"{ptr_name}[{p}] = {indptr[p]} is larger than any number of nonzeros")
    steps = np.diff(indptr.astype(np.int64))
    if steps.size and steps.min() < 0:
        i = int(np.argmax(steps < 0)) + 1
        raise ValueError(
            f"{ptr_name} must be non-decreasing; {ptr_name}[{i}]={indptr[i]} < {ptr_name}[{i - 1}]={indptr[i - 1]}"
        )
    nnz = int(indptr[-1])
    if indices.size != nnz or nvalues != nnz:
        raise ValueError(
            f"{ptr_name}[-1] = {nnz} must equal len({idx_name}) = {indices.size} and len({val_name}) = {nvalues}"
        )
    if nnz:
        lo, hi = indices.min(), indices.max()
        if lo < 0 or hi >= minor:
            p = int(np.argmax((indices < 0) | (indices >= minor)))
            raise ValueError(
                f"{idx_name} must be in [0, {minor}) ({dims[1]} = {minor}); {idx_name}[{p}] = {indices[p]}"
            )
    return nnz


def check_coordinates(index: np.ndarray, size: int, name: str, dim: str) -> None:
    """Every entry of the integer array ``index`` lies in ``[0, size)``."""
    if index.size and (index.min() < 0 or index.max() >= size):
        p = int(np.argmax((index < 0) | (index >= size)))
        raise ValueError(f"{name} must be in [0, {size}) ({dim} = {size}); {name}[{p}] = {index[p]}")


def _lists_to_arrays(rows, values, n: int, name: str):
    """The per-row lists of a LIL matrix (``rows[i]`` column ids, ``values[i]`` values) as flat arrays."""
    if len(rows) != n or len(values) != n:
        raise ValueError(f"{name}.rows and {name}.data must hold {n} lists (shape[0]), got {len(rows)} and "
                         f"{len(values)}")
    counts = np.empty(n, dtype=np.int64)
    for i in range(n):
        r, v = rows[i], values[i]
        if not isinstance(r, list) or not isinstance(v, list) or len(r) != len(v):
            raise ValueError(f"{name}.rows[{i}] and {name}.data[{i}] must be lists of equal length")
        counts[i] = len(r)
    cols = as_index_array([c for r in rows for c in r], f"{name}.rows")
    try:
        vals = np.array([x for v in values for x in v], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name}.data must hold real numbers") from exc
    return np.repeat(np.arange(n, dtype=np.int64), counts), cols.astype(np.int64), vals


def scipy_coordinates(m, name: str = "m"):  # noqa: C901 - one branch per scipy format
    """The entries of any ``scipy.sparse`` matrix or array, read from its raw arrays and validated.

    Returns ``(rows, cols, values, (n, k))``: int64 coordinates in range, floating values (not yet
    checked for NaN), duplicates and any order allowed. No method of ``m`` that runs SciPy's compiled code
    is called: that code trusts the arrays, and a matrix whose arrays were assigned by hand (a corrupt
    file, a buggy producer) could crash the interpreter there. The caller's object is not modified.
    """
    try:
        import scipy.sparse as sp
    except ImportError as exc:  # pragma: no cover - scipy is an optional extra
        raise ImportError("reading a scipy.sparse matrix needs SciPy: pip install 'numaccel[scipy]'") from exc
    if not sp.issparse(m):
        raise TypeError(f"{name} must be a scipy.sparse matrix or array, got {type(m).__name__}")
    shape = tuple(m.shape)
    if len(shape) != 2:
        raise ValueError(f"{name} must be 2-D, got {len(shape)}-D")
    n, k = (int(s) for s in shape)
    if n < 0 or k < 0:
        raise ValueError(f"{name}.shape must be non-negative, got {shape}")
    if np.dtype(m.dtype).kind != "f":
        raise TypeError(f"{name} must have a floating-point dtype, got {m.dtype}; use {name}.astype(np.float32)")
    fmt = m.format
    if fmt in ("csr", "csc"):
        ptr = as_index_array(m.indptr, f"{name}.indptr")
        idx = as_index_array(m.indices, f"{name}.indices")
        vals = as_value_array(m.data, f"{name}.data")
        major, minor = (n, k) if fmt == "csr" else (k, n)
        dims = ("shape[0]", "shape[1]") if fmt == "csr" else ("shape[1]", "shape[0]")
        check_compressed(ptr, idx, vals.size, major, minor,
                         names=(f"{name}.indptr", f"{name}.indices", f"{name}.data"), dims=dims)
        outer = np.repeat(np.arange(major, dtype=np.int64), np.diff(ptr.astype(np.int64)))
        inner = idx.astype(np.int64)
        rows, cols = (outer, inner) if fmt == "csr" else (inner, outer)
    elif fmt == "bsr":
        r, c = (int(b) for b in m.blocksize)
        vals = as_value_array(m.data, f"{name}.data", ndim=3)
        if r < 1 or c < 1 or n % r or k % c or vals.shape[1:] != (r, c):
            raise ValueError(f"{name}.blocksize {(r, c)} must divide shape {shape} and match "
                             f"{name}.data.shape[1:] = {vals.shape[1:]}")
        ptr = as_index_array(m.indptr, f"{name}.indptr")
        idx = as_index_array(m.indices, f"{name}.indices")
        check_compressed(ptr, idx, vals.shape[0], n // r, k // c,
                         names=(f"{name}.indptr", f"{name}.indices", f"{name}.data"),
                         dims=("shape[0] / blocksize[0]", "shape[1] / blocksize[1]"))
        brow = np.repeat(np.arange(n // r, dtype=np.int64), np.diff(ptr.astype(np.int64)))
        rows = (brow[:, None, None] * r + np.arange(r)[None, :, None] + np.zeros((1, 1, c), np.int64)).ravel()
        cols = (idx.astype(np.int64)[:, None, None] * c + np.zeros((1, r, 1), np.int64)
                + np.arange(c)[None, None, :]).ravel()
        vals = vals.reshape(-1)
    elif fmt == "coo":
        coords = getattr(m, "coords", None)
        if coords is None:
            coords = (m.row, m.col)
        if len(coords) != 2:
            raise ValueError(f"{name}.coords must hold 2 index arrays, got {len(coords)}")
        rows = as_index_array(coords[0], f"{name}.row")
        cols = as_index_array(coords[1], f"{name}.col")
        vals = as_value_array(m.data, f"{name}.data")
        if not rows.size == cols.size == vals.size:
            raise ValueError(f"{name}.row, {name}.col and {name}.data must have equal lengths, got "
                             f"{rows.size}, {cols.size} and {vals.size}")
        check_coordinates(rows, n, f"{name}.row", "shape[0]")
        check_coordinates(cols, k, f"{name}.col", "shape[1]")
        rows, cols = rows.astype(np.int64), cols.astype(np.int64)
    elif fmt == "dia":
        offsets = as_index_array(m.offsets, f"{name}.offsets")
        band = as_value_array(m.data, f"{name}.data", ndim=2)
        if band.shape[0] != offsets.size:
            raise ValueError(f"{name}.data must have one row per offset ({offsets.size}), got shape {band.shape}")
        width = min(band.shape[1], k)
        j = np.arange(width, dtype=np.int64)
        rows2 = j[None, :] - offsets.astype(np.int64)[:, None]
        keep = (rows2 >= 0) & (rows2 < n) & (band[:, :width] != 0)  # the band's padding is not stored
        rows = rows2[keep]
        cols = np.broadcast_to(j, rows2.shape)[keep]
        vals = band[:, :width][keep]
    elif fmt == "lil":
        rows, cols, vals = _lists_to_arrays(m.rows, m.data, n, name)
        check_coordinates(cols, k, f"{name}.rows", "shape[1]")
    elif fmt == "dok":
        items = list(m.items())
        if not all(isinstance(t, tuple) and len(t) == 2 for t, _ in items):
            raise ValueError(f"{name} must be keyed by (row, column) pairs")
        rows = as_index_array([t[0] for t, _ in items], f"{name} rows")
        cols = as_index_array([t[1] for t, _ in items], f"{name} columns")
        try:
            vals = np.array([v for _, v in items], dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must hold real numbers") from exc
        check_coordinates(rows, n, f"{name} rows", "shape[0]")
        check_coordinates(cols, k, f"{name} columns", "shape[1]")
        rows, cols = rows.astype(np.int64), cols.astype(np.int64)
    else:
        raise TypeError(f"{name} has the unsupported sparse format {fmt!r}; use {name}.tocsr()")
    return rows, cols, vals, (n, k)


def coordinates_to_csr(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, n: int):
    """Validated coordinates (int64, in range) as canonical CSR arrays ``(indptr, indices, data)`` for
    ``n`` rows: sorted by row, then column, duplicates summed (in float64 for float32 values, so a sum is
    rounded once). Explicit zeros are kept. Input already in that order is not sorted again."""
    if rows.size > 1:
        dr = np.diff(rows)
        if not bool(np.all((dr > 0) | ((dr == 0) & (cols[1:] > cols[:-1])))):
            order = np.lexsort((cols, rows))
            rows, cols, vals = rows[order], cols[order], vals[order]
            first = np.ones(rows.size, dtype=bool)
            first[1:] = (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1])
            starts = np.flatnonzero(first)
            acc = np.float64 if vals.dtype.itemsize <= 8 else vals.dtype
            vals = np.add.reduceat(vals.astype(acc), starts)
            rows, cols = rows[starts], cols[starts]
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    return indptr, cols, vals
