"""Sharded weights: a weight split by output features into row blocks, each in the weight's own format."""

from __future__ import annotations

import numbers

import numpy as np

from .. import formats
from .._validate import frozen

__all__ = ["ShardedWeight", "shard"]

_GATHER_HINT = "use the unsharded weight it was made from (or its .shards one by one)"


def _check_shardable(weight, name: str = "weight"):
    """Return ``weight`` if it can be split by rows.

    That is a 2-D float dense array or a host weight of a registered format that runs through the
    ordinary ``linear`` (not a sharded or device-resident weight).
    """
    if isinstance(weight, ShardedWeight):
        raise TypeError(f"{name} is already a ShardedWeight; shard the original weight instead")
    spec = formats.spec_for(weight, name)
    if isinstance(weight, np.ndarray):
        if weight.dtype not in (np.float32, np.float64):
            raise TypeError(f"{name} must be float32 or float64, got {weight.dtype}; use "
                            f"{name}.astype(np.float32)")
        if weight.ndim != 2:
            raise ValueError(f"{name} must be 2-D (out_features, in_features), got shape {weight.shape}")
        return weight
    if spec.device != "cpu":
        raise TypeError(f"{name} is resident on {spec.device!r} (format {spec.name!r}); shard the host "
                        f"weight it was copied from (shards run with device= on their workers)")
    if spec.call is not None:
        raise TypeError(f"{name} of format {spec.name!r} takes whole linear calls and cannot be split by rows; "
                        f"shard a weight of a row-wise format instead")
    return weight


class ShardedWeight(formats.WeightFormat):
    """A weight split by output features into row blocks (shards) that live on different Dask workers.

    Build one with :func:`shard`, or from blocks made elsewhere: ``ShardedWeight([w0, w1, ...])`` stacks
    the blocks' rows in order (all blocks must have one format and the same ``in_features``).

    Parameters
    ----------
    shards : sequence of ndarray or weights of one registered format
        The row blocks, in order; the full weight is their vertical concatenation.

    Attributes
    ----------
    shape : tuple of int
        ``(N, K)`` of the full weight.
    shards : tuple
        The blocks (kept here too: they are the copy a lost worker's shard is restored from).
    bounds : ndarray of int64, shape (len(shards) + 1,)
        Shard ``j`` holds output rows ``bounds[j]:bounds[j + 1]``.

    Raises
    ------
    ValueError
        No shards, or shards with different ``in_features``.
    TypeError
        A shard that cannot be split by rows (already sharded, device-resident, unregistered), or shards of
        several formats.

    See Also
    --------
    shard : split a weight into a ShardedWeight.

    Notes
    -----
    Registered as the format ``"sharded"``, which takes whole ``linear`` calls:
    ``linear(x, sharded, client=c)`` places shard ``j`` on worker ``j % workers`` of ``c`` the first time
    (``client.scatter``) and keeps it there for later calls; a shard whose worker is gone is placed again
    from the local copy and the call retried. ``x`` is sent once to each worker holding a shard and each
    worker returns its ``(B, N_j)`` block of the result. A ShardedWeight is not split by rows, saved or
    trained itself: those go through the unsharded weight.

    Examples
    --------
    >>> import numpy as np, numaccel as na
    >>> sw = na.ShardedWeight([np.ones((2, 3), np.float32), np.zeros((1, 3), np.float32)])
    >>> sw.shape, sw.bounds.tolist()
    ((3, 3), [0, 2, 3])
    """

    untrainable_hint = "train the unsharded weight, then shard it"

    def __init__(self, shards):
        shards = tuple(shards)
        if not shards:
            raise ValueError("shards must hold at least one weight block, got an empty sequence")
        for j, s in enumerate(shards):
            _check_shardable(s, f"shards[{j}]")
        k = shards[0].shape[1]
        for j, s in enumerate(shards):
            if s.shape[1] != k:
                raise ValueError(f"every shard must have in_features = shards[0].shape[1] = {k}; "
                                 f"shards[{j}] has shape {tuple(s.shape)}")
        names = {formats.name_of(s) for s in shards}
        if len(names) > 1:
            raise TypeError(f"shards must all have one format, got {', '.join(sorted(names))}")
        bounds = np.zeros(len(shards) + 1, dtype=np.int64)
        np.cumsum([s.shape[0] for s in shards], out=bounds[1:])
        self._shards = shards
        self._bounds = frozen(bounds)
        self._shape = (int(bounds[-1]), int(k))

    @property
    def shape(self) -> tuple[int, int]:
        """``(N, K)`` of the full weight."""
        return self._shape

    @property
    def shards(self) -> tuple:
        """The row blocks, in order."""
        return self._shards

    @property
    def bounds(self) -> np.ndarray:
        """Shard ``j`` holds output rows ``bounds[j]:bounds[j + 1]`` (read-only)."""
        return self._bounds

    @property
    def nbytes(self) -> int:
        """Bytes held by all shards (as stored)."""
        return int(sum(formats.nbytes(s) for s in self._shards))

    @property
    def density(self) -> float:
        """Fraction of the ``N * K`` entries stored, over all shards."""
        rows = np.diff(self._bounds)
        return float(sum(formats.density(s) * int(r) for s, r in zip(self._shards, rows, strict=True))
                     / self._shape[0])

    @property
    def dtype(self):
        """The dtype of dense shards (float32/float64); None for other formats."""
        s = self._shards[0]
        return s.dtype if isinstance(s, np.ndarray) else None

    @property
    def format(self) -> str:
        """The registered format name of the shards (``"dense"``, ``"csr"``, ``"int8"``, ...)."""
        return formats.name_of(self._shards[0])

    def result_dtype(self, x_dtype) -> np.dtype:
        """Return the dtype of ``linear(x, self)`` for ``x`` of ``x_dtype``: that of the shards."""
        s = self._shards[0]
        if isinstance(s, np.ndarray):
            return np.result_type(x_dtype, s.dtype)
        return s.result_dtype(x_dtype)

    def to_dense(self) -> np.ndarray:
        """Return the full weight as one dense ``(N, K)`` array: the shards' dense forms, stacked."""
        return np.concatenate([formats.to_dense(s) for s in self._shards], axis=0)

    def row_block(self, start: int, stop: int):
        """Refused (``TypeError``): a ShardedWeight is not split again; shard the unsharded weight."""
        raise TypeError(f"a ShardedWeight is not split by rows again; {_GATHER_HINT}, and shard that")

    def to_arrays(self):
        """Refused (``TypeError``): save the unsharded weight and shard it after loading."""
        raise TypeError(f"a ShardedWeight is not saved as such; {_GATHER_HINT}: save it and shard it after load")

    @classmethod
    def from_arrays(cls, arrays, params):
        """Refused (``TypeError``): load the unsharded weight and shard it."""
        raise TypeError("a ShardedWeight is not rebuilt from saved arrays; load the unsharded weight and shard it")

    def __len__(self) -> int:
        """Return the number of shards."""
        return len(self._shards)

    def __repr__(self) -> str:
        """Return a short description: the full shape, the number of shards and their format."""
        n, k = self._shape
        return f"ShardedWeight(shape=({n}, {k}), shards={len(self)}, format={self.format!r})"

    def __getstate__(self):
        """Pickle as the shards only; the shape and bounds are recomputed when unpickled."""
        return {"shards": self._shards}

    def __setstate__(self, state):
        """Rebuild from the pickled shards through the constructor (its checks included)."""
        self.__init__(state["shards"])


def shard(weight, n: int) -> ShardedWeight:
    """Split a weight by output features into ``n`` row blocks, for model-parallel execution.

    Parameters
    ----------
    weight : ndarray (N, K) float32/float64 or a weight of a registered format (CSRWeight, Int8Weight, ...)
        The full weight.
    n : int
        Number of shards, ``1 <= n <= N``. Shard sizes differ by at most one row (the first
        ``N % n`` shards get the extra row).

    Returns
    -------
    ShardedWeight
        Row blocks in the weight's own format (:func:`numaccel.formats.row_block`): dense blocks are
        copies, CSR blocks hold their rows' entries, int8 blocks keep their rows' scales and zero points.

    Raises
    ------
    TypeError
        ``weight`` of an unregistered type, already sharded or device-resident; ``n`` not an integer.
    ValueError
        ``n < 1`` or ``n > N`` (a shard needs at least one output row).

    See Also
    --------
    numaccel.linear : ``linear(x, sharded, client=...)`` runs the shards on Dask workers.

    Notes
    -----
    Concatenating the shards' outputs gives the full layer's output,
    ``y[:, bounds[j]:bounds[j + 1]] = x @ W[bounds[j]:bounds[j + 1]].T``: bit for bit for the CSR, int8
    and pruned-int8 formats (each output row is summed alone, in the same order); for a dense weight to
    the rounding of float32, as a smaller block may run another dense kernel (BLAS below a size, numaccel's
    GEMV above it) that sums in another order. The cost is one ``row_block``
    per shard, O(N + nnz) in all for the built-in formats.

    Examples
    --------
    >>> import numpy as np, numaccel as na
    >>> W = np.arange(12, dtype=np.float32).reshape(4, 3)
    >>> sw = na.shard(na.prune(W, 0.5), 3)
    >>> [s.shape for s in sw.shards]
    [(2, 3), (1, 3), (1, 3)]
    """
    weight = _check_shardable(weight)
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"n must be an integer number of shards, got {type(n).__name__}")
    n = int(n)
    rows = int(weight.shape[0])
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if n > rows:
        raise ValueError(
            f"n must be at most weight.shape[0] = {rows} (each shard needs at least one output row), "
            f"got n = {n}; use n <= {rows}"
        )
    sizes = np.full(n, rows // n, dtype=np.int64)
    sizes[: rows % n] += 1
    bounds = np.concatenate([[0], np.cumsum(sizes)]).tolist()
    return ShardedWeight([formats.row_block(weight, bounds[j], bounds[j + 1]) for j in range(n)])
