"""Data- and model-parallel execution on Dask.

Data parallel: ``linear(x, w)`` with ``x`` a ``dask.array`` chunked along the batch returns a lazy
``dask.array`` (:func:`data_parallel`); every chunk runs the ordinary kernel and the weight is one key of
the graph (sent to each worker once per computation, never embedded in every chunk's task).

Model parallel: :func:`shard` splits a weight by output features into row blocks, a
:class:`ShardedWeight` (the registered format ``"sharded"``); ``linear(x, sharded)`` places each block on
its own worker (once, then kept there), sends ``x`` to those workers, runs the blocks where they live and
concatenates the results. Without ``client=`` it runs on Dask's default client or on numaccel's embedded
threads cluster (:func:`get_client`), which needs no ``if __name__ == "__main__":`` guard.

Modules: ``threads`` (per-block Numba thread shares, :func:`limit_threads`), ``cluster``
(:func:`get_client`, :func:`shutdown`, the embedded cluster), ``sharded`` (:class:`ShardedWeight`,
:func:`shard`), ``data`` (:func:`data_parallel`), ``model`` (the sharded format's ``linear``).

Dask is imported only inside functions: ``import numaccel`` stays fast and works without it. See
``docs/parallel.md`` for running on a cluster, what moves over the network and a cost model.
"""

from .. import formats
from .cluster import get_client, shutdown
from .data import data_parallel
from .model import TIMEOUT_KEY, linear_sharded  # noqa: F401 - TIMEOUT_KEY: the dask.config key, kept here
from .sharded import ShardedWeight, shard
from .threads import limit_threads

formats.register(ShardedWeight, name="sharded", call=linear_sharded)

__all__ = ["ShardedWeight", "shard", "get_client", "limit_threads", "shutdown", "data_parallel"]
