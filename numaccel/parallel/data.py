"""Data parallel: ``linear`` on a ``dask.array`` batch, one ordinary kernel call per chunk, lazily."""

from __future__ import annotations

import threading
import uuid
import weakref

import numpy as np

from .. import formats, ops
from .._validate import check_bias
from .sharded import ShardedWeight
from .threads import _current_worker, linear_block

__all__ = ["data_parallel"]

# Weights a worker has received with a data-parallel graph, by graph token, most recent last: a later
# computation with the same weight uses the object already here, whose planner caches (packed panels, row
# bounds) the first one built, instead of the fresh copy that came with its graph.
_RESIDENT_MAX = 8
_RESIDENT_MAX_BYTES = 512 * 2**20
_resident: dict = {}
_resident_lock = threading.Lock()


def _resident_weight(token, weight):
    """Return the weight this worker process holds under ``token`` (``weight`` itself the first time)."""
    if token is None or _current_worker() is None:
        return weight
    with _resident_lock:
        held = _resident.pop(token, None)
        if held is None:
            held = weight
        _resident[token] = held  # most recent last
        total = sum(formats.nbytes(w) for w in _resident.values())
        while _resident and (len(_resident) > _RESIDENT_MAX or total > _RESIDENT_MAX_BYTES):
            old = _resident.pop(next(iter(_resident)))
            total -= formats.nbytes(old)
    return held


def _linear_chunk(x, weight, bias, quant, device, token, n):
    """One task: the ordinary ``linear`` on one chunk ``(..., K)`` of the batch, giving ``(..., n)``."""
    weight = _resident_weight(token, weight)
    k = x.shape[-1]
    y = linear_block(x.reshape(-1, k), weight, bias, quant, device)
    return y.reshape(x.shape[:-1] + (n,))


_tokens: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _weight_token(weight) -> str:
    """Return a graph key name for a weight: content hash for (mutable) ndarrays, one id per immutable object."""
    if isinstance(weight, np.ndarray):
        from dask.base import tokenize

        return tokenize(weight)
    try:
        tok = _tokens.get(weight)
        if tok is None:
            tok = _tokens[weight] = uuid.uuid4().hex
        return tok
    except TypeError:  # not weak-referenceable: a fresh key, only cross-call reuse is lost
        return uuid.uuid4().hex


def _probe(weight, bias, k: int, dtype, quant, device) -> np.dtype:
    """Run the ordinary ``linear``'s checks here, before any task is built or sent; return the result dtype.

    The checks run on a zero-row input: no kernel runs, so no planner cache is built on this side.
    """
    return ops.linear(np.empty((0, k), dtype=dtype), weight, bias, activation_quant=quant, device=device).dtype


def data_parallel(x, weight, bias=None, *, out=None, device=None, quant=None, client=None):
    """``linear(x, weight, bias)`` for a ``dask.array`` ``x``: a lazy ``dask.array``.

    Called by :func:`numaccel.linear` when ``x`` is a dask array; its arguments are those of ``linear``
    (``quant`` is its ``activation_quant``).

    Parameters
    ----------
    x : dask.array.Array, shape (..., K), float32 or float64
        The batch, chunked along any leading axes; chunks along the features are joined first.
    weight : ndarray (N, K), a weight of a registered format, or ShardedWeight
    bias : ndarray (N,), optional
    out : None
        Refused: the result is lazy.
    device : {None, "cpu", "cuda"}
        Passed to every chunk's ``linear``.
    quant : {None, "int8"}
        ``activation_quant`` of every chunk's ``linear``.
    client : None
        Refused: the result runs on the scheduler that computes it.

    Returns
    -------
    dask.array.Array, shape (..., N)
        Same leading chunks as ``x``; one chunk along the outputs, or one per shard of a ShardedWeight.

    Raises
    ------
    TypeError
        ``out=`` given, ``x`` not float32/float64, an unregistered weight.
    ValueError
        ``client=`` given, ``x`` 0-D, feature count or bias shape wrong, anything the ordinary ``linear``
        refuses for these arguments (checked here, when the graph is built).

    Notes
    -----
    Chunk ``i`` of the result is ``linear(x_i, weight, bias)``; each weight (or shard) is one key of the
    graph, so it is sent to each worker once per computation, never embedded in every chunk's task.

    Examples
    --------
    >>> import numpy as np, dask.array as da, numaccel as na   # doctest: +SKIP
    >>> x = da.ones((6, 4), chunks=(2, 4), dtype=np.float32)   # doctest: +SKIP
    >>> na.linear(x, np.eye(4, dtype=np.float32)).compute(scheduler="threads").shape  # doctest: +SKIP
    (6, 4)
    """
    import dask
    import dask.array as da

    if out is not None:
        raise TypeError("out= is not supported when x is a dask array (the result is lazy); "
                        "use dask.array.store(y, out) or out[...] = y.compute()")
    if client is not None:
        raise ValueError("client= is not used when x is a dask array: the result is lazy and runs on the "
                         "scheduler that computes it; use client.compute(y) or y.compute() under a "
                         "default Client")
    if x.ndim < 1:
        raise ValueError("x must have at least 1 dimension (..., K), got a 0-D array")
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"x must be float32 or float64, got {x.dtype}; use x.astype(np.float32)")
    formats.spec_for(weight)
    if isinstance(weight, np.ndarray) and weight.ndim != 2:
        raise ValueError(f"weight must be 2-D (out_features, in_features), got shape {weight.shape}")
    n, k = (int(d) for d in weight.shape)
    if x.shape[-1] != k:
        raise ValueError(f"x must have {k} features (weight.shape[1]) in its last axis, got shape {x.shape}")
    bias = check_bias(bias, n)
    sharded = isinstance(weight, ShardedWeight)
    blocks = weight.shards if sharded else (weight,)
    bounds = [int(b) for b in weight.bounds] if sharded else [0, n]
    biases = [None if bias is None else np.array(bias[bounds[j]:bounds[j + 1]]) for j in range(len(blocks))]
    dtype = np.result_type(*[_probe(blk, bj, k, x.dtype, quant, device)
                             for blk, bj in zip(blocks, biases, strict=True)])

    last = x.ndim - 1
    if len(x.chunks[last]) > 1:
        x = x.rechunk({last: -1})
    parts = []
    for j, blk in enumerate(blocks):
        nj = bounds[j + 1] - bounds[j]
        token = f"numaccel-weight-{_weight_token(blk)}"
        wkey = dask.delayed(blk, name=token, pure=True, traverse=False)
        bj = biases[j]
        bkey = None if bj is None else dask.delayed(bj, name=f"numaccel-bias-{dask.base.tokenize(bj)}", pure=True)
        parts.append(da.map_blocks(
            _linear_chunk, x, wkey, bkey, quant, device, token, nj, chunks=x.chunks[:last] + ((nj,),),
            dtype=dtype, meta=np.empty((0,) * x.ndim, dtype=dtype), name=f"numaccel-linear-{uuid.uuid4().hex}",
        ))
    return parts[0] if len(parts) == 1 else da.concatenate(parts, axis=last)
