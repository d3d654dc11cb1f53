"""The client a model-parallel call runs on, and numaccel's embedded cluster (used when there is none)."""

from __future__ import annotations

import atexit
import logging
import threading
import warnings

from .threads import _cores, limit_threads

__all__ = ["get_client", "shutdown"]

_embedded = None  # (cluster, client)
_embedded_lock = threading.Lock()


def _embedded_layout(cores: int) -> tuple[int, int]:
    """Return ``(workers, Numba threads per worker)`` for a machine with ``cores`` cores.

    One Dask thread per worker, at most 8 workers, and ``workers * threads <= cores``.
    """
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
    """Return the client a model-parallel call runs on.

    Parameters
    ----------
    client : distributed.Client, optional
        Returned as it is when given.

    Returns
    -------
    distributed.Client
        ``client``; else Dask's current default client (the last ``Client(...)`` created with
        ``set_as_default=True``, or the one inside ``with Client(...)``); else numaccel's embedded cluster,
        started on first use and reused until :func:`shutdown` or exit.

    Raises
    ------
    TypeError
        ``client`` is not a ``distributed.Client`` (an address string: connect with ``Client(address)``).
    ValueError
        ``client`` is closed.
    RuntimeError
        Called inside a Dask task without ``client=``: pass the task's ``distributed.worker_client()``
        (the call would wait for shard tasks that may need its own worker thread).
    ImportError
        ``distributed`` is not installed.

    See Also
    --------
    shutdown : close the embedded cluster.
    limit_threads : the thread caps of a cluster's workers.

    Notes
    -----
    The embedded cluster is a threads cluster: ``LocalCluster(processes=False)`` with ``min(cores, 8)``
    workers of one Dask thread each, all in this process (the kernels release the GIL, so they run in
    parallel), talking over in-process queues (no network port is opened). Each worker's blocks get at most
    ``cores // workers`` Numba threads (:func:`limit_threads`; BLAS is left alone, its limit being
    process-wide). It starts no process, so a script needs no ``if __name__ == "__main__":`` guard. Pass an
    explicit ``client=`` for a cluster of worker processes or machines.

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
        distributed = _import_distributed()
        if not isinstance(client, distributed.Client):
            hint = f"; for an address use client=distributed.Client({client!r})" if isinstance(client, str) else ""
            raise TypeError(f"client must be a distributed.Client, got {type(client).__name__}{hint}")
        if client.status != "running":
            raise ValueError(f"client is not connected (its status is {client.status!r}); pass a running client")
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
            workers, threads = _embedded_layout(_cores())
            with warnings.catch_warnings():  # the scheduler's HTTP port moving off a busy 8787
                warnings.filterwarnings("ignore", message="Port .* is already in use")
                cluster = distributed.LocalCluster(
                    n_workers=workers, threads_per_worker=1, processes=False, dashboard_address=None,
                    silence_logs=logging.ERROR,
                )
            cl = distributed.Client(cluster, set_as_default=False)
            limit_threads(cl, threads, None)
            if _embedded is None:  # registered after distributed's own exit hooks, so it runs before them
                atexit.register(shutdown)
            _embedded = (cluster, cl)
        return _embedded[1]


def shutdown() -> None:
    """Close the embedded cluster if it was started (it is also closed at interpreter exit).

    Examples
    --------
    >>> from numaccel.parallel import shutdown
    >>> shutdown()  # nothing to close: a no-op
    """
    global _embedded
    with _embedded_lock:
        if _embedded is not None:
            cluster, cl = _embedded
            _embedded = None
            cl.close()
            cluster.close()
