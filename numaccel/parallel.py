"""Data- and model-parallel execution on Dask.

Data parallel: ``linear(x, w)`` with ``x`` a ``dask.array`` chunked along the batch returns a lazy
``dask.array``; every chunk runs the ordinary kernel and the weight is one key of the graph (sent to
each worker once per computation, never embedded in every chunk's task).

Model parallel: :func:`shard` splits a weight by output features into row blocks; ``linear(x, sharded)``
places each block on its own worker (once, then kept there), sends ``x`` to those workers, runs the
blocks where they live and concatenates the results.

Dask is imported only inside functions: ``import numaccel`` stays fast and works without it. See
``docs/parallel.md`` for running on a cluster, what moves over the network and a cost model.
"""

from __future__ import annotations

import atexit
import contextlib
import numbers
import os
import sys
import threading
import time
import uuid
import warnings
import weakref

import numpy as np

from ._validate import check_out
from .linear import check_activations, check_bias, linear, register_hook

__all__ = ["ShardedWeight", "shard", "get_client", "limit_threads", "shutdown"]

# Attempts of a model-parallel call whose shards or inputs were lost with a worker.
_ATTEMPTS = 4
# Activations up to this size travel inside each shard's task instead of being scattered first.
_INLINE_X_BYTES = 64 * 1024
# Configuration key (dask.config) for the seconds a model-parallel call may wait for its results.
TIMEOUT_KEY = "numaccel.timeout"


# --------------------------------------------------------------------------------------------------
# Threads inside one process: the chunks running at once share the process's kernel threads.
_state_lock = threading.Lock()
_active_blocks = 0
_process_threads = None  # set on a worker by limit_threads(); None means numba's NUMBA_NUM_THREADS


@contextlib.contextmanager
def _thread_share():
    """Run one block with ``budget // blocks running now`` Numba threads (at least 1).

    ``numba.set_num_threads`` is per Python thread, so each block sets its own share; the budget is
    the worker's cap (:func:`limit_threads`) or ``NUMBA_NUM_THREADS``. On the threaded scheduler with
    one Dask thread per core, every kernel thus runs single-threaded and the cores are not oversubscribed.
    """
    global _active_blocks
    import numba

    with _state_lock:
        _active_blocks += 1
        running = _active_blocks
    pool = numba.config.NUMBA_NUM_THREADS
    budget = min(pool, _process_threads or pool)
    previous = numba.get_num_threads()
    numba.set_num_threads(max(1, budget // running))
    try:
        yield
    finally:
        numba.set_num_threads(previous)
        with _state_lock:
            _active_blocks -= 1


# Weights a worker process has received with a data-parallel graph, by graph token, most recent last:
# a later computation with the same weight uses the object already here, whose per-format caches (packed
# panels, row bounds) were built by the first one, instead of the fresh copy that came with its graph.
_RESIDENT_MAX = 8
_RESIDENT_MAX_BYTES = 512 * 2**20
_resident: dict = {}


def _in_worker() -> bool:
    mod = sys.modules.get("distributed")
    if mod is None:
        return False
    try:
        mod.get_worker()
    except ValueError:
        return False
    return True


def _resident_weight(token, weight):
    """The weight held in this worker process under ``token`` (``weight`` itself the first time)."""
    if token is None or not _in_worker():
        return weight
    with _state_lock:
        held = _resident.pop(token, None)
        if held is None:
            held = weight
        _resident[token] = held  # most recent last
        total = sum(int(getattr(w, "nbytes", 0)) for w in _resident.values())
        while _resident and (len(_resident) > _RESIDENT_MAX or total > _RESIDENT_MAX_BYTES):
            old = _resident.pop(next(iter(_resident)))
            total -= int(getattr(old, "nbytes", 0))
    return held


def _linear_block(x, weight, bias, activations, device, token=None):
    """One task: the ordinary ``linear`` on one block (a batch chunk or a weight shard)."""
    weight = _resident_weight(token, weight)
    with _thread_share():
        return linear(x, weight, bias, activations=activations, device=device)


def _apply_process_caps(numba_threads, blas_threads) -> None:
    """Cap this process's kernel threads (Numba, per block) and BLAS threads (process-wide)."""
    global _process_threads
    _process_threads = numba_threads
    if blas_threads is not None:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover - threadpoolctl is optional
            return
        threadpool_limits(limits=blas_threads, user_api="blas")


def limit_threads(client, numba_threads: int = 1, blas_threads: int | None = 1) -> None:
    """Cap the threads each worker's kernels use, on the workers of ``client`` now and later.

    Parameters
    ----------
    client : dask.distributed.Client
    numba_threads : int
        Numba threads per worker process, shared by the blocks it runs at once.
    blas_threads : int or None
        BLAS threads per worker process (through threadpoolctl); None leaves BLAS alone.

    Notes
    -----
    Keep ``workers per machine * numba_threads <= cores``. Registered as a worker plugin, so workers that
    join or restart later get the same caps. The Numba cap is applied by each block (``numba.set_num_threads``
    is per thread), so it holds however the worker process was started. Starting a worker with
    ``NUMBA_NUM_THREADS=t`` in its shell environment also sizes its Numba pool (Dask's nanny already sets
    ``OMP/MKL/OPENBLAS_NUM_THREADS=1``); setting it through ``Nanny(env=...)`` can come too late, after the
    spawned process has imported Numba.

    Examples
    --------
    >>> from distributed import Client                      # doctest: +SKIP
    >>> from numaccel.parallel import limit_threads
    >>> client = Client("tcp://scheduler:8786")             # doctest: +SKIP
    >>> limit_threads(client, numba_threads=8, blas_threads=1)  # doctest: +SKIP
    """
    from distributed.diagnostics.plugin import WorkerPlugin

    from ._validate import as_positive_int

    numba_threads = as_positive_int(numba_threads, "numba_threads")
    blas_threads = as_positive_int(blas_threads, "blas_threads", allow_none=True)

    class NumaccelThreadCaps(WorkerPlugin):
        def __init__(self, numba_threads, blas_threads):
            self.numba_threads = numba_threads
            self.blas_threads = blas_threads

        def setup(self, worker):
            from numaccel import parallel

            parallel._apply_process_caps(self.numba_threads, self.blas_threads)

    client.register_plugin(NumaccelThreadCaps(numba_threads, blas_threads), name="numaccel-thread-caps")


# --------------------------------------------------------------------------------------------------
# The cluster used when no client is given.
_embedded = None  # (cluster, client)
_embedded_lock = threading.Lock()


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def _embedded_layout(cores: int) -> tuple[int, int]:
    """(worker processes, Numba threads per worker) for a machine with ``cores`` cores: one Dask thread
    per worker, at most 8 workers, and ``workers * threads <= cores``."""
    workers = max(1, min(cores, 8))
    return workers, max(1, cores // workers)


def _import_distributed():
    try:
        import distributed
    except ImportError as exc:
        raise ImportError(
            "model-parallel execution needs Dask: pip install 'numaccel[dask]' (dask[array] and distributed)"
        ) from exc
    return distributed


def get_client(client=None):
    """The client a model-parallel call runs on.

    ``client`` if given; inside a Dask task, a ``RuntimeError`` (pass the task's
    ``distributed.worker_client()``); else Dask's current default client (the last ``Client(...)``
    created with ``set_as_default=True``, or the one inside ``with Client(...)``); else numaccel's
    embedded ``LocalCluster``, started on first use and reused until :func:`shutdown` or exit.

    The embedded cluster runs ``min(cores, 8)`` worker processes with one Dask thread each, listens on
    127.0.0.1 only, and caps each worker at ``cores // workers`` Numba threads and one BLAS thread
    (:func:`limit_threads`), so the workers never oversubscribe the cores. Scripts that start it must
    guard their entry point with ``if __name__ == "__main__":`` (worker processes are spawned).

    Examples
    --------
    >>> import numpy as np, numaccel as na
    >>> from numaccel.parallel import get_client, shutdown
    >>> client = get_client()                               # doctest: +SKIP
    >>> sw = na.shard(np.eye(4, dtype=np.float32), 2)
    >>> na.linear(np.ones(4, np.float32), sw, client=client)  # doctest: +SKIP
    array([1., 1., 1., 1.], dtype=float32)
    >>> shutdown()
    """
    if client is not None:
        return client
    distributed = _import_distributed()
    try:
        distributed.get_worker()
    except ValueError:  # not inside a Dask task: the usual case
        pass
    else:
        raise RuntimeError(
            "a sharded linear inside a Dask task needs client=: the task would wait for shard tasks that may "
            "need its own worker thread; use `with distributed.worker_client() as c: linear(x, w, client=c)`"
        )
    try:
        return distributed.default_client()
    except ValueError:
        pass
    global _embedded
    with _embedded_lock:
        if _embedded is None or _embedded[1].status in ("closed", "closing"):
            import logging

            workers, threads = _embedded_layout(_cores())
            with warnings.catch_warnings():  # the scheduler's HTTP port moving off a busy 8787
                warnings.filterwarnings("ignore", message="Port .* is already in use")
                cluster = distributed.LocalCluster(
                    n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                    dashboard_address=None, silence_logs=logging.ERROR,
                )
            cl = distributed.Client(cluster, set_as_default=False)
            limit_threads(cl, threads, 1)
            if _embedded is None:  # registered after distributed's own exit hooks, so it runs before them
                atexit.register(shutdown)
            _embedded = (cluster, cl)
        return _embedded[1]


def shutdown() -> None:
    """Close the embedded cluster if it was started (it is also closed at interpreter exit)."""
    global _embedded
    with _embedded_lock:
        if _embedded is not None:
            cluster, cl = _embedded
            _embedded = None
            cl.close()
            cluster.close()



# --------------------------------------------------------------------------------------------------
# Sharded weights
def _row_block(weight, a: int, b: int):
    """Rows ``a:b`` of a weight, in the weight's own format (a new, independent object)."""
    if isinstance(weight, np.ndarray):
        return np.array(weight[a:b], order="C")
    if hasattr(weight, "qweight") and hasattr(weight, "scales"):
        zps = weight.zero_points
        return type(weight)(
            weight.qweight[a:b], weight.scales[a:b], None if zps is None else zps[a:b],
            group_size=weight.group_size,
        )
    indptr = weight.indptr
    lo, hi = int(indptr[a]), int(indptr[b])
    return type(weight)(indptr[a:b + 1] - indptr[a], weight.indices[lo:hi], weight.data[lo:hi],
                        (b - a, weight.shape[1]))


def _check_shardable(weight, name: str = "weight"):
    if isinstance(weight, ShardedWeight):
        raise TypeError(f"{name} is already a ShardedWeight; shard the original weight instead")
    if isinstance(weight, np.ndarray):
        if weight.dtype not in (np.float32, np.float64):
            raise TypeError(f"{name} must be float32 or float64, got {weight.dtype}; use "
                            f"{name}.astype(np.float32)")
        if weight.ndim != 2:
            raise ValueError(f"{name} must be 2-D (out_features, in_features), got shape {weight.shape}")
        return weight
    known = (hasattr(weight, "qweight") and hasattr(weight, "scales")) or (
        hasattr(weight, "indptr") and hasattr(weight, "indices") and hasattr(weight, "data"))
    if not known or not hasattr(weight, "shape") or not hasattr(weight, "_linear"):
        raise TypeError(
            f"{name} must be a numpy.ndarray, CSRWeight or Int8Weight, got {type(weight).__name__}"
        )
    return weight


class ShardedWeight:
    """A weight split by output features into row blocks (shards) that live on different Dask workers.

    Build one with :func:`shard`, or from blocks made elsewhere: ``ShardedWeight([w0, w1, ...])`` stacks
    the blocks' rows in order (all blocks must have the same ``in_features``).

    Parameters
    ----------
    shards : sequence of ndarray | CSRWeight | Int8Weight
        The row blocks, in order; the full weight is their vertical concatenation.

    Attributes
    ----------
    shape : tuple of int
        ``(N, K)`` of the full weight.
    shards : tuple
        The blocks (kept here too: they are the copy a lost worker's shard is restored from).
    bounds : ndarray of int64, shape (len(shards) + 1,)
        Shard ``j`` holds output rows ``bounds[j]:bounds[j + 1]``.

    Notes
    -----
    ``linear(x, sharded, client=c)`` places shard ``j`` on worker ``j % workers`` of ``c`` the first time
    (``client.scatter``) and keeps it there for later calls; a shard whose worker is gone is placed
    again from the local copy and the call retried. ``x`` is sent once to each worker holding a shard
    and each worker returns its ``(B, N_j)`` block of the result.

    Examples
    --------
    >>> import numpy as np, numaccel as na
    >>> sw = na.ShardedWeight([np.ones((2, 3), np.float32), np.zeros((1, 3), np.float32)])
    >>> sw.shape, sw.bounds.tolist()
    ((3, 3), [0, 2, 3])
    """

    __slots__ = ("_shards", "_bounds", "_shape", "_placements", "_lock", "__weakref__")

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
        kinds = {type(s) for s in shards}
        if len(kinds) > 1:
            names = sorted(t.__name__ for t in kinds)
            raise TypeError(f"shards must all have one format, got {', '.join(names)}")
        bounds = np.zeros(len(shards) + 1, dtype=np.int64)
        np.cumsum([s.shape[0] for s in shards], out=bounds[1:])
        bounds.setflags(write=False)
        self._shards = shards
        self._bounds = bounds
        self._shape = (int(bounds[-1]), int(k))
        self._placements = {}
        self._lock = threading.Lock()

    @property
    def shape(self) -> tuple[int, int]:
        return self._shape

    @property
    def shards(self) -> tuple:
        return self._shards

    @property
    def bounds(self) -> np.ndarray:
        return self._bounds

    @property
    def nbytes(self) -> int:
        """Bytes held by all shards (as stored)."""
        return int(sum(int(s.nbytes) for s in self._shards))

    @property
    def dtype(self):
        """The dtype of dense shards (float32/float64); None for compressed formats."""
        s = self._shards[0]
        return s.dtype if isinstance(s, np.ndarray) else None

    def __len__(self) -> int:
        return len(self._shards)

    def __repr__(self) -> str:
        n, k = self._shape
        return f"ShardedWeight(shape=({n}, {k}), shards={len(self)}, format={type(self._shards[0]).__name__})"

    def __getstate__(self):
        return {"shards": self._shards}

    def __setstate__(self, state):
        self.__init__(state["shards"])

    # ----------------------------------------------------------------------------------------------
    def _placed(self, client, *, verify: bool = False) -> list:
        """``[(worker address, future)]`` per shard on ``client``'s workers; lost ones are placed again
        from the local copy, on the live workers, round robin."""
        with self._lock:
            entry = self._placements.get(client.id) or [(None, None)] * len(self._shards)
            if not verify and all(fut is not None and fut.status == "finished" for _, fut in entry):
                return list(entry)  # the common case: no round trip to the scheduler
            alive = sorted(client.nthreads())
            if not alive:
                raise RuntimeError("the Dask cluster has no workers; start some or pass another client=")
            placed = []
            for j, (addr, fut) in enumerate(entry):
                if fut is None or fut.status != "finished" or addr not in alive:
                    addr = alive[j % len(alive)]
                    fut = client.scatter(self._shards[j], workers=[addr], hash=False)
                placed.append((addr, fut))
            self._placements[client.id] = placed
            return list(placed)


def shard(weight, n: int) -> ShardedWeight:
    """Split a weight by output features into ``n`` row blocks, for model-parallel execution.

    Parameters
    ----------
    weight : ndarray (N, K) float32/float64 | CSRWeight | Int8Weight
    n : int
        Number of shards, ``1 <= n <= N``. Shard sizes differ by at most one row (the first
        ``N % n`` shards get the extra row).

    Returns
    -------
    ShardedWeight
        Row blocks in the weight's own format: dense blocks are copies, CSR blocks are rebuilt (and
        validated) through the ``CSRWeight`` constructor, int8 blocks keep their rows' scales and zero
        points.

    Raises
    ------
    TypeError
        ``weight`` of another type (or already sharded), ``n`` not an integer.
    ValueError
        ``n < 1`` or ``n > N`` (a shard needs at least one output row).

    See Also
    --------
    linear : ``linear(x, sharded, client=...)`` runs the shards on Dask workers.

    Notes
    -----
    Concatenating the shards' outputs gives the full layer's output exactly:
    ``y[:, bounds[j]:bounds[j + 1]] = x @ W[bounds[j]:bounds[j + 1]].T``.

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
    return ShardedWeight([_row_block(weight, bounds[j], bounds[j + 1]) for j in range(n)])


# --------------------------------------------------------------------------------------------------
# linear() for dask arrays and sharded weights
def _is_dask_array(x) -> bool:
    mod = sys.modules.get("dask.array")
    return mod is not None and isinstance(x, mod.Array)


def _wants_parallel(x, weight, client) -> bool:
    return isinstance(weight, ShardedWeight) or _is_dask_array(x)


_tokens: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _weight_token(weight) -> str:
    """A graph key name for a weight: content hash for (mutable) ndarrays, one id per immutable object."""
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


def _probe(weight, bias, k: int, dtype, activations, device) -> None:
    """Run the ordinary ``linear``'s checks here, before any task is built or sent: on a zero-row input
    (no kernel runs, so no per-format cache is built on this side), plus the ``activations`` rule."""
    if activations is not None:
        if activations != "int8":
            raise ValueError(f"activations must be None or 'int8', got {activations!r}")
        if not hasattr(weight, "qweight"):
            raise ValueError(f"activations='int8' needs an Int8Weight (or int8 shards), got "
                             f"{type(weight).__name__}; use activations=None")
    linear(np.empty((0, k), dtype=dtype), weight, bias, activations=activations, device=device)


def _data_parallel(x, weight, bias, *, out, device, activations, client):
    import dask
    import dask.array as da

    if out is not None:
        raise TypeError("out= is not supported when x is a dask array (the result is lazy); "
                        "use dask.array.store(y, out) or out[...] = y.compute()")
    if client is not None:
        raise ValueError("client= is not used when x is a dask array: the result is lazy and runs on the "
                         "scheduler that computes it; use client.compute(y) or y.compute() under a "
                         "default Client")
    if x.ndim not in (1, 2):
        raise ValueError(f"x must be 1-D or 2-D, got {x.ndim}-D with shape {x.shape}")
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"x must be float32 or float64, got {x.dtype}; use x.astype(np.float32)")
    blocks = weight.shards if isinstance(weight, ShardedWeight) else (weight,)
    if not hasattr(weight, "shape"):
        raise TypeError(f"weight must be a numpy.ndarray, CSRWeight, Int8Weight or ShardedWeight, "
                        f"got {type(weight).__name__}")
    n, k = weight.shape[0], weight.shape[-1]
    if x.shape[-1] != k:
        raise ValueError(f"x must have {k} features (weight.shape[1]) in its last axis, got shape {x.shape}")
    bias = check_bias(bias, n)
    bounds = weight.bounds if isinstance(weight, ShardedWeight) else (0, n)
    for j, blk in enumerate(blocks):
        bj = None if bias is None else bias[bounds[j]:bounds[j + 1]]
        _probe(blk, bj, k, x.dtype, activations, device)

    x2 = x[None, :] if x.ndim == 1 else x
    if len(x2.chunks[1]) > 1:
        x2 = x2.rechunk({1: -1})
    parts = []
    for j, blk in enumerate(blocks):
        nj = int(bounds[j + 1] - bounds[j])
        token = f"numaccel-weight-{_weight_token(blk)}"
        wkey = dask.delayed(blk, name=token, pure=True, traverse=False)
        args = [wkey]
        if bias is None:
            args.append(None)
        else:
            bj = np.array(bias[bounds[j]:bounds[j + 1]])
            args.append(dask.delayed(bj, name=f"numaccel-bias-{dask.base.tokenize(bj)}", pure=True))
        parts.append(da.map_blocks(
            _linear_block, x2, *args, activations, device, token, chunks=(x2.chunks[0], (nj,)),
            dtype=x.dtype, meta=np.empty((0, 0), dtype=x.dtype), name=f"numaccel-linear-{uuid.uuid4().hex}",
        ))
    y = parts[0] if len(parts) == 1 else da.concatenate(parts, axis=1)
    return y[0] if x.ndim == 1 else y


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


def _model_parallel(x, weight, bias, *, out, device, activations, client):
    import dask

    n, k = weight.shape
    x = check_activations(x, k)
    bias = check_bias(bias, n)
    shape = (x.shape[0], n) if x.ndim == 2 else (n,)
    if out is not None:
        check_out(out, shape, x.dtype, inputs={"x": x})
    for blk in weight.shards:
        _probe(blk, None, k, x.dtype, activations, device)
    result = np.empty(shape, dtype=x.dtype) if out is None else out
    if result.size == 0:
        return result
    x2 = np.ascontiguousarray(x if x.ndim == 2 else x[None, :])
    res2 = result if result.ndim == 2 else result[None, :]

    client = get_client(client)
    timeout = dask.config.get(TIMEOUT_KEY, None)
    lost = _lost_errors()
    last = None
    for attempt in range(_ATTEMPTS):
        try:
            if attempt:
                time.sleep(0.25 * attempt)  # let the scheduler notice the lost worker
            placed = weight._placed(client, verify=attempt > 0)
            addrs = sorted({addr for addr, _ in placed})
            # A small x travels inside the tasks (one message less); a large one once to each worker.
            small = x2.nbytes <= _INLINE_X_BYTES
            xf = x2 if small else client.scatter(x2, workers=addrs, broadcast=True, hash=False)
            futs = [
                client.submit(_linear_block, xf, fut, None, activations, device, workers=[addr],
                              allow_other_workers=True, pure=False)
                for addr, fut in placed
            ]
            blocks = _gather(client, futs, timeout)
        except lost as exc:
            last = exc
            continue
        for j, blk in enumerate(blocks):
            res2[:, weight.bounds[j]:weight.bounds[j + 1]] = blk
        if bias is not None:
            result += bias
        return result
    raise RuntimeError(
        f"model-parallel linear failed {_ATTEMPTS} times because workers were lost; last error: {last!r}"
    ) from last


def _parallel_linear(x, weight, bias=None, *, out=None, device="cpu", activations=None, client=None):
    if _is_dask_array(x):
        return _data_parallel(x, weight, bias, out=out, device=device, activations=activations, client=client)
    return _model_parallel(x, weight, bias, out=out, device=device, activations=activations, client=client)


register_hook(_wants_parallel, _parallel_linear)
