"""Model parallel: ``linear(x, sharded)`` runs each shard on the worker that holds it, gathers the blocks."""

from __future__ import annotations

import threading
import time
import weakref

import numpy as np

from .. import ops
from .._validate import as_float_array, check_bias, check_features, check_out
from .cluster import get_client
from .threads import linear_block

__all__ = ["linear_sharded", "TIMEOUT_KEY"]

# Attempts of a model-parallel call whose shards or inputs were lost with a worker.
_ATTEMPTS = 4
# Activations up to this size travel inside each shard's task instead of being scattered first.
_INLINE_X_BYTES = 64 * 1024
# Configuration key (dask.config) for the seconds a model-parallel call may wait for its results.
TIMEOUT_KEY = "numaccel.timeout"


class _Placements:
    """Where one ShardedWeight's shards live: ``{client id: [(worker address, future)] per shard}``."""

    __slots__ = ("lock", "by_client")

    def __init__(self):
        self.lock = threading.Lock()
        self.by_client: dict = {}


# One entry per ShardedWeight that ran here; dropped with the weight, which releases its futures (and so
# its shards on the cluster). Copies and unpickled weights start without placements.
_placements: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_placements_lock = threading.Lock()


def _placed(weight, client, *, verify: bool = False) -> list:
    """Return ``[(worker address, future)]`` per shard of ``weight`` on ``client``'s workers.

    Lost ones are placed again from the local copy, on the live workers, round robin.
    """
    with _placements_lock:
        entry = _placements.get(weight)
        if entry is None:
            entry = _placements[weight] = _Placements()
    shards = weight.shards
    with entry.lock:
        held = entry.by_client.get(client.id) or [(None, None)] * len(shards)
        if not verify and all(fut is not None and fut.status == "finished" for _, fut in held):
            return list(held)  # the common case: no round trip to the scheduler
        alive = sorted(client.nthreads())
        if not alive:
            raise RuntimeError("the Dask cluster has no workers; start some or pass another client=")
        placed = []
        for j, (addr, fut) in enumerate(held):
            if fut is None or fut.status != "finished" or addr not in alive:
                addr = alive[j % len(alive)]
                fut = client.scatter(shards[j], workers=[addr], hash=False)
            placed.append((addr, fut))
        entry.by_client[client.id] = placed
        return list(placed)


def _linear_shard(x, shard, quant, device):
    """One task: the ordinary ``linear`` of ``x`` (B, K) with one shard, on the worker holding it."""
    return linear_block(x, shard, None, quant, device)


def _lost_errors() -> tuple:
    import concurrent.futures

    from distributed.comm.core import CommClosedError
    from distributed.scheduler import KilledWorker

    return (concurrent.futures.CancelledError, KilledWorker, CommClosedError)


def _gather(client, futs, timeout):
    """Results of ``futs``; with a timeout (seconds) a ``TimeoutError`` once it has passed."""
    if timeout is None:
        return client.gather(futs)
    deadline = time.monotonic() + float(timeout)
    return [f.result(timeout=max(0.0, deadline - time.monotonic())) for f in futs]


def linear_sharded(x, weight, bias, *, out, device, quant, client):
    """``linear(x, weight, bias)`` for a ShardedWeight: the registered ``call`` of the ``"sharded"`` format.

    Validates here, then runs ``linear(x, shard_j)`` on the worker holding shard ``j`` (placed there on
    the first call), writes the ``(B, N_j)`` blocks into the result (``out`` if given) and adds the bias
    locally. ``x`` may be ``(..., K)``; the result is ``(..., N)`` of the dtype the ordinary ``linear``
    gives for the shards. A call whose workers were lost places the shards again and retries
    (:data:`_ATTEMPTS` times); with ``dask.config`` key ``"numaccel.timeout"`` set it raises
    ``TimeoutError`` after that many seconds.
    """
    import dask

    n, k = weight.shape
    x = check_features(as_float_array(x, "x", ndims=None), k, name="x")
    bias = check_bias(bias, n)
    shards, bounds = weight.shards, weight.bounds
    dtype = np.result_type(*[
        ops.linear(np.empty((0, k), x.dtype), s, None if bias is None else bias[bounds[j]:bounds[j + 1]],
                   activation_quant=quant, device=device).dtype
        for j, s in enumerate(shards)
    ])  # every shard's checks run here, on zero rows, before anything is sent
    shape = x.shape[:-1] + (n,)
    if out is not None:
        check_out(out, shape, dtype, inputs={"x": x, "bias": bias})
    result = np.empty(shape, dtype=dtype) if out is None else out
    if result.size == 0:
        return result
    x2 = np.ascontiguousarray(x.reshape(-1, k), dtype=dtype)  # as the ordinary linear: in the result dtype
    res2 = result.reshape(-1, n)  # a view: result is C-contiguous

    client = get_client(client)
    timeout = dask.config.get(TIMEOUT_KEY, None)
    lost = _lost_errors()
    last = None
    for attempt in range(_ATTEMPTS):
        try:
            if attempt:
                time.sleep(0.25 * attempt)  # let the scheduler notice the lost worker
            placed = _placed(weight, client, verify=attempt > 0)
            addrs = sorted({addr for addr, _ in placed})
            # A small x travels inside the tasks (one message less); a large one once to each worker.
            small = x2.nbytes <= _INLINE_X_BYTES
            xf = x2 if small else client.scatter(x2, workers=addrs, broadcast=True, hash=False)
            futs = [
                client.submit(_linear_shard, xf, fut, quant, device, workers=[addr], allow_other_workers=True,
                              pure=False)
                for addr, fut in placed
            ]
            blocks = _gather(client, futs, timeout)
        except lost as exc:
            last = exc
            continue
        for j, blk in enumerate(blocks):
            res2[:, bounds[j]:bounds[j + 1]] = blk
        if bias is not None:
            result += bias
        return result
    raise RuntimeError(
        f"model-parallel linear failed {_ATTEMPTS} times because workers were lost; last error: {last!r}"
    ) from last
