"""Threads inside one process: the blocks running at once share the kernel threads.

A *block* is one task of a parallel ``linear``: a batch chunk (data parallel) or a weight shard (model
parallel). Each block runs the ordinary :func:`numaccel.ops.linear` with a share of the Numba threads,
``budget // blocks running now`` (at least 1), counted per Dask worker (or, outside a worker, per process).
The budget is the worker's cap set by :func:`limit_threads`, else ``NUMBA_NUM_THREADS``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading

from .. import ops
from .._validate import as_positive_int

__all__ = ["limit_threads"]

_state_lock = threading.Lock()
_running: dict = {}  # worker id (None outside a Dask worker) -> blocks running there now
_caps: dict = {}  # worker id -> Numba threads per block budget, set by limit_threads' plugin
_PLUGIN_NAME = "numaccel-thread-caps"


def _cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def _current_worker():
    """Return the Dask worker running the current task, or None (no distributed, or not inside a task)."""
    mod = sys.modules.get("distributed")
    if mod is None:
        return None
    try:
        return mod.get_worker()
    except ValueError:
        return None


def _worker_key():
    worker = _current_worker()
    return None if worker is None else worker.id


@contextlib.contextmanager
def _thread_share():
    """Run one block with ``budget // blocks running now`` Numba threads (at least 1).

    ``numba.set_num_threads`` is per Python thread, so each block sets its own share. Blocks are counted
    per worker: the workers of a threads cluster share one process but each has its own budget. On the
    threaded scheduler with one Dask thread per core, every kernel thus runs single-threaded and the cores
    are not oversubscribed.
    """
    import numba

    key = _worker_key()
    with _state_lock:
        running = _running[key] = _running.get(key, 0) + 1
        cap = _caps.get(key)
    pool = numba.config.NUMBA_NUM_THREADS
    budget = min(pool, cap or pool)
    previous = numba.get_num_threads()
    numba.set_num_threads(max(1, budget // running))
    try:
        yield
    finally:
        numba.set_num_threads(previous)
        with _state_lock:
            left = _running[key] - 1
            if left:
                _running[key] = left
            else:
                del _running[key]


def linear_block(x, weight, bias, quant, device):
    """One block: the ordinary ``linear`` under this block's thread share."""
    with _thread_share():
        return ops.linear(x, weight, bias, activation_quant=quant, device=device)


def _set_worker_caps(worker_id, numba_threads, blas_threads) -> None:
    """Cap the Numba threads of the blocks ``worker_id`` runs and, if given, this process's BLAS threads."""
    with _state_lock:
        _caps[worker_id] = numba_threads
    if blas_threads is not None:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover - threadpoolctl is optional
            return
        threadpool_limits(limits=blas_threads, user_api="blas")


def _clear_worker_caps(worker_id) -> None:
    with _state_lock:
        _caps.pop(worker_id, None)


def limit_threads(client, numba_threads: int = 1, blas_threads: int | None = 1) -> None:
    """Cap the threads each worker's kernels use, on the workers of ``client`` now and later.

    Parameters
    ----------
    client : distributed.Client
        The cluster whose workers are capped.
    numba_threads : int
        Numba threads per worker, shared by the blocks it runs at once.
    blas_threads : int or None
        BLAS threads per worker process (through threadpoolctl); None leaves BLAS alone. The BLAS limit is
        process-wide: on a cluster of in-process (thread) workers it also limits the client's own process.

    Raises
    ------
    TypeError, ValueError
        A cap that is not a positive integer.

    See Also
    --------
    get_client : the embedded cluster, capped this way.

    Notes
    -----
    Keep ``workers per machine * numba_threads <= cores``. Registered as a worker plugin, so workers that
    join or restart later get the same caps. The Numba cap is applied by each block
    (``numba.set_num_threads`` is per thread), so it holds however the worker was started. Starting a
    worker with ``NUMBA_NUM_THREADS=t`` in its shell environment also sizes its Numba pool (Dask's nanny
    already sets ``OMP/MKL/OPENBLAS_NUM_THREADS=1``); setting it through ``Nanny(env=...)`` can come too
    late, after the spawned process has imported Numba.

    Examples
    --------
    >>> from distributed import Client                      # doctest: +SKIP
    >>> from numaccel.parallel import limit_threads
    >>> client = Client("tcp://scheduler:8786")             # doctest: +SKIP
    >>> limit_threads(client, numba_threads=8, blas_threads=1)  # doctest: +SKIP
    """
    from distributed.diagnostics.plugin import WorkerPlugin

    numba_threads = as_positive_int(numba_threads, "numba_threads")
    blas_threads = as_positive_int(blas_threads, "blas_threads", allow_none=True)

    class NumaccelThreadCaps(WorkerPlugin):
        def __init__(self, numba_threads, blas_threads):
            self.numba_threads = numba_threads
            self.blas_threads = blas_threads

        def setup(self, worker):
            from numaccel.parallel import threads

            threads._set_worker_caps(worker.id, self.numba_threads, self.blas_threads)

        def teardown(self, worker):
            from numaccel.parallel import threads

            threads._clear_worker_caps(worker.id)

    client.register_plugin(NumaccelThreadCaps(numba_threads, blas_threads), name=_PLUGIN_NAME)
