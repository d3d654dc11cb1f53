"""Magnitude pruning: ``magnitude_mask`` and ``prune`` (which stores the result as a CSRWeight)."""

from __future__ import annotations

import numpy as np

from ._validate import as_fraction, as_weight_matrix
from .formats import spec_of
from .formats.csr import CSRWeight

__all__ = ["magnitude_mask", "prune"]


def _keep_top(a: np.ndarray, keep: int) -> np.ndarray:
    """Per row of ``a`` (non-negative), a mask keeping the ``keep`` largest values.

    Among equal values the lowest column index wins, so the result is deterministic and the count exact.
    """
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


def _dense(W) -> np.ndarray:
    """``W`` as a dense float32 matrix; a weight already in a compressed format is refused, not densified."""
    if not isinstance(W, np.ndarray) and spec_of(W) is not None:
        raise TypeError(f"W must be a dense array, got a {type(W).__name__}; pass W.to_dense() to prune its "
                        f"dense form again")
    return as_weight_matrix(W, "W")


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
    W = _dense(W)
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
    W = _dense(W)
    mask = magnitude_mask(W, sparsity, granularity=granularity)
    return CSRWeight.from_dense(np.where(mask, W, np.float32(0)))
