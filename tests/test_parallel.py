"""Data- and model-parallel ``linear`` on real Dask: the threaded scheduler and a LocalCluster of two
worker processes on the loopback interface, shared by the whole module, with bounded timeouts; the
embedded threads cluster in this process and in a script run without a ``__main__`` guard."""

from __future__ import annotations

import copy
import logging
import os
import subprocess
import sys
import textwrap
import threading
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import dense64, ref_linear

import numaccel as na
from numaccel import formats, parallel
from numaccel.parallel import data, model, threads

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
import dask  # noqa: E402

TIMEOUT = 60  # seconds any single Dask wait may take before the test fails

KINDS = ["dense", "csr", "int8", "int8-g8-asym"]
DTYPES = [np.float32, np.float64]


def make_weight(kind: str, n: int, k: int, rng):
    W = rng.standard_normal((n, k)).astype(np.float32)
    if kind == "dense":
        return W
    if kind == "csr":
        W[3 % n] = 0.0  # an empty row
        return na.prune(W, 0.7)
    if kind == "int8":
        return na.quantize(W)
    if kind == "int8-g8-asym":
        return na.quantize(W, group_size=8, symmetric=False)
    raise AssertionError(kind)


def weight_for(kind, dtype, n, k, rng):
    w = make_weight(kind, n, k, rng)
    return w.astype(dtype) if isinstance(w, np.ndarray) else w


@pytest.fixture(scope="module")
def client():
    with warnings.catch_warnings():  # the scheduler's HTTP port moving off a busy 8787
        warnings.filterwarnings("ignore", message="Port .* is already in use")
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
            silence_logs=logging.CRITICAL,
        )
    c = distributed.Client(cluster, set_as_default=False, timeout=TIMEOUT)
    c.wait_for_workers(2, timeout=TIMEOUT)
    parallel.limit_threads(c, numba_threads=1, blas_threads=1)
    with dask.config.set({parallel.TIMEOUT_KEY: TIMEOUT}):
        yield c
    c.close()
    cluster.close()


def local_by_blocks(x, w, row_chunks=None, bias=None):
    """The same blocks computed here, one ordinary ``linear`` call each: row chunks of ``x`` for data
    parallel, or shards of a ``ShardedWeight`` for model parallel."""
    if isinstance(w, na.ShardedWeight):
        y = np.hstack([na.linear(x, s) for s in w.shards])
    else:
        ends = np.cumsum(row_chunks)
        y = np.vstack([na.linear(x[e - c:e], w) for c, e in zip(row_chunks, ends, strict=True)])
    return y if bias is None else y + bias


def assert_matches_local(out, local, kind, parity):
    """Results from worker processes against the same blocks computed here. numaccel's kernels give the
    same bits: each output row is reduced in an order fixed by the weight alone, whatever the thread count
    or the partition. BLAS may choose another kernel or blocking in another process (thread count,
    alignment), so dense results are compared within the parity tolerance."""
    if kind == "dense":
        parity(out, local)
    else:
        np.testing.assert_array_equal(out, local)


def healthy(client):
    client.wait_for_workers(2, timeout=TIMEOUT)
    return client


# --------------------------------------------------------------------------------------------------
# shard() and ShardedWeight
@pytest.mark.parametrize("kind", KINDS)
def test_shard_rows_in_order(kind, rng):
    w = make_weight(kind, 7, 19, rng)
    sw = na.shard(w, 3)
    assert sw.shape == (7, 19) and len(sw) == 3
    assert sw.bounds.tolist() == [0, 3, 5, 7]
    full = dense64(w)
    for j, s in enumerate(sw.shards):
        assert type(s) is type(w)
        np.testing.assert_array_equal(dense64(s), full[sw.bounds[j]:sw.bounds[j + 1]])
    if kind.startswith("int8"):
        np.testing.assert_array_equal(np.concatenate([s.scales for s in sw.shards]), w.scales)
        assert all(s.group_size == w.group_size for s in sw.shards)


@pytest.mark.parametrize("kind", KINDS)
def test_shard_one_output_row_per_shard(kind, rng):
    w = make_weight(kind, 5, 11, rng)
    sw = na.shard(w, 5)
    assert [s.shape for s in sw.shards] == [(1, 11)] * 5
    np.testing.assert_array_equal(np.vstack([dense64(s) for s in sw.shards]), dense64(w))


@pytest.mark.parametrize("kind", KINDS)
def test_shard_more_shards_than_rows_is_a_clear_error(kind, rng):
    w = make_weight(kind, 4, 9, rng)
    with pytest.raises(ValueError, match=r"n must be at most weight.shape\[0\] = 4 .*got n = 5"):
        na.shard(w, 5)


def test_shard_does_not_share_memory_with_the_caller(rng):
    W = rng.standard_normal((6, 4)).astype(np.float32)
    before = W.copy()
    sw = na.shard(W, 2)
    sw.shards[0][0, 0] = 99.0
    np.testing.assert_array_equal(W, before)


@given(n=st.one_of(st.integers(-3, 12), st.floats(), st.booleans(), st.none(), st.text(max_size=2)))
def test_shard_n_is_validated(n):
    w = np.ones((7, 3), np.float32)
    if isinstance(n, bool) or not isinstance(n, int):
        with pytest.raises(TypeError, match="n must be an integer"):
            na.shard(w, n)
    elif not 1 <= n <= 7:
        with pytest.raises(ValueError, match="n must be"):
            na.shard(w, n)
    else:
        sw = na.shard(w, n)
        sizes = np.diff(sw.bounds)
        assert len(sw) == n and sizes.sum() == 7 and sizes.max() - sizes.min() <= 1


@pytest.mark.parametrize(
    "weight, err, match",
    [
        (np.ones((3, 2), np.int64), TypeError, "float32 or float64"),
        (np.ones(3, np.float32), ValueError, "2-D"),
        ([[1.0, 2.0]], TypeError, "weight must be a numpy.ndarray or a weight of a registered format .*got list"),
        (na.shard(np.ones((2, 2), np.float32), 2), TypeError, "already a ShardedWeight"),
    ],
    ids=["int-dense", "1-D", "list", "sharded"],
)
def test_shard_bad_weights(weight, err, match):
    with pytest.raises(err, match=match):
        na.shard(weight, 1)


def test_sharded_weight_constructor_checks():
    with pytest.raises(ValueError, match="at least one"):
        na.ShardedWeight([])
    with pytest.raises(ValueError, match=r"shards\[1\] has shape \(2, 4\)"):
        na.ShardedWeight([np.ones((2, 3), np.float32), np.ones((2, 4), np.float32)])
    with pytest.raises(TypeError, match="one format"):
        na.ShardedWeight([np.ones((2, 3), np.float32), na.prune(np.ones((2, 3), np.float32), 0.5)])


def test_sharded_weight_copies_without_placements(rng):
    sw = na.shard(make_weight("csr", 6, 5, rng), 2)
    sw2 = copy.deepcopy(sw)
    assert sw2.shape == sw.shape and sw2.bounds.tolist() == sw.bounds.tolist()
    assert "ShardedWeight(shape=(6, 5), shards=2, format='csr')" == repr(sw2)
    assert sw2 not in model._placements  # a copy starts without placements


@pytest.mark.parametrize("kind", KINDS)
def test_sharded_weight_is_a_registered_format(kind, rng):
    w = make_weight(kind, 9, 14, rng)
    sw = na.shard(w, 4)
    spec = formats.spec_for(sw)
    assert isinstance(sw, formats.WeightFormat)
    assert spec.name == formats.name_of(sw) == "sharded" and spec.call is model.linear_sharded
    assert sw.format == formats.name_of(w)
    np.testing.assert_array_equal(formats.to_dense(sw), formats.to_dense(w))
    assert formats.nbytes(sw) == sum(formats.nbytes(s) for s in sw.shards)
    assert formats.density(sw) == pytest.approx(formats.density(w))
    assert not formats.is_trainable(sw) and "unsharded" in formats.untrainable_reason(sw)
    with pytest.raises(TypeError, match="not split by rows again; use the unsharded weight"):
        formats.row_block(sw, 0, 2)
    with pytest.raises(TypeError, match="not saved as such; use the unsharded weight"):
        formats.to_arrays(sw)
    with pytest.raises(TypeError, match="load the unsharded weight and shard it"):
        na.ShardedWeight.from_arrays({}, {})


class _WholeCallFormat(formats.WeightFormat):
    """A format that takes whole linear calls (as device-resident weights do); never split by rows."""

    def __init__(self, n=4, k=3):
        self._shape = (n, k)

    shape = property(lambda self: self._shape)
    nbytes = property(lambda self: 0)

    def to_dense(self):
        return np.zeros(self._shape, np.float32)

    def row_block(self, start, stop):
        return type(self)(stop - start, self._shape[1])

    def to_arrays(self):
        return {}, {"n": self._shape[0], "k": self._shape[1]}

    @classmethod
    def from_arrays(cls, arrays, params):
        return cls(params["n"], params["k"])


class _OnDeviceFormat(_WholeCallFormat):
    pass


formats.register(_WholeCallFormat, name="test-parallel-whole-call",
                 call=lambda x, w, b, *, out, device, quant, client: np.zeros(w.shape[0]))
formats.register(_OnDeviceFormat, name="test-parallel-on-device", device="cuda",
                 call=lambda x, w, b, *, out, device, quant, client: np.zeros(w.shape[0]))


def test_shard_refuses_whole_call_and_device_resident_weights():
    with pytest.raises(TypeError, match="'test-parallel-whole-call' takes whole linear calls"):
        na.shard(_WholeCallFormat(), 2)
    with pytest.raises(TypeError, match=r"resident on 'cuda' \(format 'test-parallel-on-device'\)"):
        na.shard(_OnDeviceFormat(), 2)
    with pytest.raises(TypeError, match=r"shards\[0\] is resident on 'cuda'"):
        na.ShardedWeight([_OnDeviceFormat()])


def test_shard_reads_each_nonzero_a_bounded_number_of_times(monkeypatch):
    """shard(w, n) is O(nnz), not O(n * nnz): one row_block per shard, each allocating about its own
    block (measured with tracemalloc, which sees NumPy's allocations), never a full-size array."""
    W = np.random.default_rng(3).standard_normal((4000, 300)).astype(np.float32)
    w = na.prune(W, 0.9)  # 120 000 nonzeros
    n = 800
    calls = []
    real = formats.row_block

    def spy(weight, start, stop):
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        block = real(weight, start, stop)
        calls.append((start, stop, tracemalloc.get_traced_memory()[1] - before, formats.nbytes(block)))
        return block

    monkeypatch.setattr(formats, "row_block", spy)
    tracemalloc.start()
    try:
        sw = na.shard(w, n)
    finally:
        tracemalloc.stop()
    assert len(calls) == n and [c[:2] for c in calls] == list(zip(sw.bounds[:-1], sw.bounds[1:], strict=True))
    assert sum(sw.shards[j].nnz for j in range(n)) == w.nnz
    full = formats.nbytes(w)
    worst = max(peak - 4 * nbytes for _, _, peak, nbytes in calls)
    assert worst < full // 20, f"a row_block allocated {worst} bytes beyond 4x its block; the weight has {full}"
    total = sum(peak for _, _, peak, _ in calls)
    assert total < 4 * full + 4096 * n, f"shard allocated {total} bytes for a {full}-byte weight"


# --------------------------------------------------------------------------------------------------
# data parallel on the threaded scheduler
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("kind", KINDS)
def test_data_parallel_threaded(kind, dtype, rng, parity):
    w = weight_for(kind, dtype, 13, 21, rng)
    b = rng.standard_normal(13).astype(np.float32)
    x = rng.standard_normal((37, 21)).astype(dtype)
    xd = da.from_array(x, chunks=(10, 21))  # 10 does not divide 37
    y = na.linear(xd, w, b)
    assert isinstance(y, da.Array) and y.chunks == ((10, 10, 10, 7), (13,)) and y.dtype == dtype
    graph = dict(y.__dask_graph__())
    weight_keys = [key for key in graph if str(key).startswith("numaccel-weight-")]
    assert len(weight_keys) == 1, "the weight must be one key of the graph, not embedded in each chunk"
    out = y.compute(scheduler="threads", num_workers=2)
    assert out.dtype == dtype
    parity(out, ref_linear(x, w, b))


def test_data_parallel_vector_and_chunked_features(rng, parity):
    w = make_weight("csr", 9, 16, rng)
    x = rng.standard_normal((11, 16)).astype(np.float32)
    y = na.linear(da.from_array(x, chunks=(4, 5)), w)  # chunks along K are joined
    parity(y.compute(scheduler="threads"), ref_linear(x, w))
    v = na.linear(da.from_array(x[0], chunks=5), w)
    assert v.shape == (9,)
    parity(v.compute(scheduler="threads"), ref_linear(x[0], w))


@pytest.mark.parametrize("kind", ["dense", "csr", "int8"])
def test_data_parallel_with_sharded_weight(kind, rng, parity):
    w = make_weight(kind, 10, 12, rng)
    b = rng.standard_normal(10).astype(np.float32)
    x = rng.standard_normal((9, 12)).astype(np.float32)
    y = na.linear(da.from_array(x, chunks=(4, 12)), na.shard(w, 3), b)
    assert y.chunks == ((4, 4, 1), (4, 3, 3))
    parity(y.compute(scheduler="threads"), ref_linear(x, w, b))


@pytest.mark.parametrize("kind", ["dense", "csr"])
def test_data_parallel_leading_batch_dimensions(kind, rng, parity):
    w = make_weight(kind, 7, 10, rng)
    b = rng.standard_normal(7).astype(np.float32)
    x = rng.standard_normal((3, 5, 10)).astype(np.float32)
    y = na.linear(da.from_array(x, chunks=(2, 3, 4)), na.shard(w, 2), b)
    assert y.shape == (3, 5, 7) and y.chunks == ((2, 1), (3, 2), (4, 3))
    out = y.compute(scheduler="threads")
    assert out.dtype == np.float32
    parity(out, ref_linear(x, w, b))


_CSR_FOR_CHUNKS = na.prune(np.random.default_rng(7).standard_normal((11, 23)).astype(np.float32), 0.6)
_X_FOR_CHUNKS = np.random.default_rng(8).standard_normal((29, 23)).astype(np.float32)


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])  # parity is pure
@given(rows=st.lists(st.integers(1, 29), min_size=1, max_size=6), cols=st.integers(1, 23))
def test_data_parallel_any_chunking_equals_local(parity, rows, cols):
    """However the batch and the features are chunked, each chunk's rows are exactly what the local
    kernel gives for that chunk."""
    chunks = []
    left = 29
    for r in rows:
        if left == 0:
            break
        chunks.append(min(r, left))
        left -= chunks[-1]
    if left:
        chunks.append(left)
    x = da.from_array(_X_FOR_CHUNKS, chunks=(tuple(chunks), cols))
    y = na.linear(x, _CSR_FOR_CHUNKS).compute(scheduler="threads", num_workers=2)
    np.testing.assert_array_equal(y, local_by_blocks(_X_FOR_CHUNKS, _CSR_FOR_CHUNKS, chunks))
    parity(y, ref_linear(_X_FOR_CHUNKS, _CSR_FOR_CHUNKS))


def test_data_parallel_errors(rng):
    w = make_weight("csr", 4, 6, rng)
    x = da.zeros((5, 6), chunks=2, dtype=np.float32)
    with pytest.raises(TypeError, match="out= is not supported when x is a dask array"):
        na.linear(x, w, out=np.empty((5, 4), np.float32))
    with pytest.raises(ValueError, match="client= is not used when x is a dask array"):
        na.linear(x, w, client=object())
    with pytest.raises(TypeError, match="x must be float32 or float64, got int64"):
        na.linear(da.zeros((5, 6), dtype=np.int64), w)
    with pytest.raises(ValueError, match=r"x must have 6 features .* got shape \(5, 7\)"):
        na.linear(da.zeros((5, 7), dtype=np.float32), w)
    with pytest.raises(ValueError, match="at least 1 dimension"):
        na.linear(da.zeros((), dtype=np.float32), w)
    with pytest.raises(ValueError, match=r"bias must have shape \(4,\)"):
        na.linear(x, w, np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="activation_quant"):
        na.linear(x, w, activation_quant="int8")
    with pytest.raises(TypeError, match="weight must be"):
        na.linear(x, "W")
    with pytest.raises(ValueError, match="weight must be 2-D"):
        na.linear(x, np.ones(6, np.float32))


# --------------------------------------------------------------------------------------------------
# on a LocalCluster with two worker processes
@pytest.mark.parametrize("kind", ["dense", "csr", "int8"])
def test_data_parallel_on_cluster(client, kind, rng, parity):
    w = make_weight(kind, 24, 40, rng)
    b = rng.standard_normal(24).astype(np.float32)
    x = rng.standard_normal((50, 40)).astype(np.float32)
    y = na.linear(da.from_array(x, chunks=(16, 40)), w, b)
    out = client.compute(y).result(timeout=TIMEOUT)
    parity(out, ref_linear(x, w, b))
    assert_matches_local(out, local_by_blocks(x, w, (16, 16, 16, 2), b), kind, parity)


def resident_ids():
    from numaccel.parallel import data

    return {token: id(w) for token, w in data._resident.items()}


def test_data_parallel_weight_stays_resident_between_computations(client, rng, parity):
    w = make_weight("int8", 24, 40, rng)
    x = rng.standard_normal((64, 40)).astype(np.float32)
    xd = da.from_array(x, chunks=(16, 40))
    parity(client.compute(na.linear(xd, w)).result(timeout=TIMEOUT), ref_linear(x, w))
    first = client.run(resident_ids)
    parity(client.compute(na.linear(xd, w)).result(timeout=TIMEOUT), ref_linear(x, w))
    second = client.run(resident_ids)
    token = f"numaccel-weight-{data._weight_token(w)}"
    holders = [addr for addr, ids in first.items() if token in ids]
    assert holders, "no worker kept the weight"
    for addr in holders:  # the object that served the first computation served the second
        assert second[addr][token] == first[addr][token]
    assert all(len(ids) <= data._RESIDENT_MAX for ids in second.values())


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("kind", KINDS)
def test_model_parallel(client, kind, dtype, rng, parity):
    w = weight_for(kind, dtype, 17, 30, rng)
    b = rng.standard_normal(17).astype(np.float32)
    x = rng.standard_normal((13, 30)).astype(dtype)
    sw = na.shard(w, 3)
    out = np.full((13, 17), np.nan, dtype=dtype)
    y = na.linear(x, sw, b, out=out, client=client)
    assert y is out
    parity(out, ref_linear(x, w, b))
    parity(na.linear(x[4], sw, b, client=client), ref_linear(x[4], w, b))
    assert_matches_local(out, local_by_blocks(x, sw, bias=b), kind, parity)


def test_model_parallel_one_row_per_shard_on_both_workers(client, rng, parity):
    w = make_weight("csr", 5, 12, rng)
    x = rng.standard_normal((6, 12)).astype(np.float32)
    sw = na.shard(w, 5)
    parity(na.linear(x, sw, client=client), ref_linear(x, w))
    assert len({addr for addr, _ in model._placed(sw, client)}) == 2


def test_model_parallel_w8a8_matches_local(client, rng):
    w = make_weight("int8", 16, 32, rng)
    x = rng.standard_normal((5, 32)).astype(np.float32)
    y = na.linear(x, na.shard(w, 2), activation_quant="int8", client=client)
    np.testing.assert_allclose(y, na.linear(x, w, activation_quant="int8"), rtol=1e-6, atol=1e-6)
    q = na.quantize(make_weight("csr", 16, 32, rng))  # pruned-int8 W8A8 across worker processes
    np.testing.assert_allclose(na.linear(x, na.shard(q, 2), activation_quant="int8", client=client),
                               na.linear(x, q, activation_quant="int8"), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="activation_quant"):  # refused here, before any task is sent
        na.linear(x, na.shard(make_weight("csr", 16, 32, rng), 2), activation_quant="int8", client=client)


def test_model_parallel_errors(client, rng):
    sw = na.shard(make_weight("dense", 6, 4, rng), 2)
    with pytest.raises(ValueError, match=r"x must have 4 features"):
        na.linear(np.ones((2, 5), np.float32), sw, client=client)
    with pytest.raises(ValueError, match=r"out must have shape \(2, 6\)"):
        na.linear(np.ones((2, 4), np.float32), sw, out=np.empty((2, 5), np.float32), client=client)
    with pytest.raises(TypeError, match="x must be float32 or float64, got int64"):
        na.linear(np.ones((2, 4), np.int64), sw, client=client)
    with pytest.raises(ValueError, match=r"bias must have shape \(6,\)"):
        na.linear(np.ones((2, 4), np.float32), sw, np.zeros(5, np.float32), client=client)
    with pytest.raises(TypeError, match="client= needs a sharded weight"):
        na.linear(np.ones((2, 4), np.float32), np.ones((6, 4), np.float32), client=client)


def test_model_parallel_follows_the_local_dtype_policy(client, rng, parity):
    W64 = rng.standard_normal((6, 4))
    x = rng.standard_normal((2, 4)).astype(np.float32)
    b64 = rng.standard_normal(6)
    for w, b in [(W64, None), (W64.astype(np.float32), b64), (make_weight("csr", 6, 4, rng), b64)]:
        local = na.linear(x, w, b)
        y = na.linear(x, na.shard(w, 2), b, client=client)
        assert y.dtype == local.dtype
        parity(y, ref_linear(x, w, b))
        with pytest.raises(TypeError, match=f"out must have dtype {local.dtype}"):
            na.linear(x, na.shard(w, 2), b, out=np.empty((2, 6), np.float16), client=client)


def test_model_parallel_leading_batch_dimensions(client, rng):
    w = make_weight("int8", 9, 16, rng)
    b = rng.standard_normal(9).astype(np.float32)
    x = rng.standard_normal((2, 3, 16)).astype(np.float32)
    sw = na.shard(w, 3)
    out = np.full((2, 3, 9), np.nan, np.float32)
    y = na.linear(x, sw, b, out=out, client=client)
    assert y is out
    np.testing.assert_array_equal(y, local_by_blocks(x.reshape(6, 16), sw, bias=b).reshape(2, 3, 9))
    assert na.linear(np.empty((0, 16), np.float32), sw, client=client).shape == (0, 9)


def test_model_parallel_timeout_is_bounded(client, rng):
    sw = na.shard(make_weight("dense", 64, 64, rng), 2)
    x = rng.standard_normal((128, 64)).astype(np.float32)
    na.linear(x, sw, client=client)  # shards placed
    with dask.config.set({parallel.TIMEOUT_KEY: 1e-6}), pytest.raises(TimeoutError):
        na.linear(x, sw, client=client)


def sharded_linear_without_client(x, sw):
    return na.linear(x, sw)


def test_sharded_linear_inside_a_task_needs_a_client(client, rng):
    sw = na.shard(make_weight("dense", 4, 3, rng), 2)
    fut = client.submit(sharded_linear_without_client, np.ones((1, 3), np.float32), sw, pure=False)
    with pytest.raises(RuntimeError, match="inside a Dask task needs client="):
        fut.result(timeout=TIMEOUT)


def test_mlp_with_sharded_layers(client, rng, parity):
    W1 = rng.standard_normal((32, 20)).astype(np.float32)
    W2 = na.prune(rng.standard_normal((7, 32)).astype(np.float32), 0.5)
    b1 = rng.standard_normal(32).astype(np.float32)
    local = na.nn.MLP.from_arrays([W1, W2], biases=[b1, None])
    sharded = na.nn.MLP.from_arrays([na.shard(W1, 2), na.shard(W2, 2)], biases=[b1, None])
    x = rng.standard_normal((8, 20)).astype(np.float32)
    parity(sharded(x, client=client), local(x).astype(np.float64))


def threads_in_a_block():
    import numba

    from numaccel.parallel import threads

    with threads._thread_share():
        return numba.get_num_threads()


def block_threads(client) -> list:
    """The Numba threads a block (a chunk or shard task) gets on each worker."""
    workers = sorted(client.nthreads())
    futs = [client.submit(threads_in_a_block, workers=[w], pure=False) for w in workers]
    return client.gather(futs)


def test_limit_threads_caps_every_block(client):
    assert block_threads(client) == [1, 1]


# --------------------------------------------------------------------------------------------------
# a worker dies in the middle of a computation
def kill_first_worker_to_run(client, flag_path, name):
    """Register a worker plugin that ends (os._exit) the first worker whose task on ``linear`` starts
    executing: exactly once over the whole cluster (an O_EXCL flag file), so the task is cut short."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class KillOnce(WorkerPlugin):
        def __init__(self, path):
            self.path = path

        def transition(self, key, start, finish, **kwargs):
            if finish == "executing" and "linear" in str(key):
                try:
                    fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                except FileExistsError:
                    return
                os.close(fd)
                os._exit(1)

    client.register_plugin(KillOnce(str(flag_path)), name=name)


def test_worker_killed_during_model_parallel_call(client, tmp_path, rng, parity):
    healthy(client)
    w = make_weight("csr", 40, 64, rng)
    x = rng.standard_normal((30, 64)).astype(np.float32)
    sw = na.shard(w, 4)
    parity(na.linear(x, sw, client=client), ref_linear(x, w))  # shards placed on both workers
    before = set(client.nthreads())
    flag = tmp_path / "killed"
    kill_first_worker_to_run(client, flag, "kill-once-mp")
    try:
        y = na.linear(x, sw, client=client)
    finally:
        client.unregister_worker_plugin("kill-once-mp")
    assert flag.exists(), "no worker was killed"
    parity(y, ref_linear(x, w))
    healthy(client)
    assert set(client.nthreads()) != before


def test_worker_killed_during_data_parallel_compute(client, tmp_path, rng, parity):
    healthy(client)
    w = make_weight("int8", 32, 48, rng)
    x = rng.standard_normal((60, 48)).astype(np.float32)
    flag = tmp_path / "killed"
    kill_first_worker_to_run(client, flag, "kill-once-dp")
    try:
        out = client.compute(na.linear(da.from_array(x, chunks=(8, 48)), w)).result(timeout=TIMEOUT)
    finally:
        client.unregister_worker_plugin("kill-once-dp")
    assert flag.exists(), "no worker was killed"
    parity(out, ref_linear(x, w))
    healthy(client)


# --------------------------------------------------------------------------------------------------
# concurrency: Python threads calling linear (two of them on a shared ShardedWeight) while Dask computes
def test_eight_threads_while_dask_computes(client, rng, parity):
    weights = [make_weight(kind, 48, 64, rng) for kind in ("csr", "int8", "dense", "int8-g8-asym")]
    xs = [rng.standard_normal((b, 64)).astype(np.float32) for b in (1, 3, 16, 33)]
    refs = {(i, j): ref_linear(x, w) for i, w in enumerate(weights) for j, x in enumerate(xs)}
    sharded = na.shard(weights[0], 3)  # threads 6 and 7 share it: concurrent placement on the cluster
    errors = []
    start = threading.Barrier(9)

    def worker(t):
        try:
            start.wait(timeout=TIMEOUT)
            for r in range(12):
                i, j = (t + r) % len(weights), (t * 3 + r) % len(xs)
                if t >= 6 and r % 4 == 0:
                    parity(na.linear(xs[j], sharded, client=client), refs[0, j])
                else:
                    parity(na.linear(xs[j], weights[i]), refs[i, j])
        except Exception as exc:  # noqa: BLE001 - reported below with the thread's number
            errors.append((t, exc))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    xbig = rng.standard_normal((256, 64)).astype(np.float32)
    start.wait(timeout=TIMEOUT)
    local = na.linear(da.from_array(xbig, chunks=(16, 64)), weights[0]).compute(scheduler="threads")
    remote = client.compute(na.linear(da.from_array(xbig, chunks=(32, 64)), weights[1]))
    sharded_big = na.linear(xbig, na.shard(weights[2], 2), client=client)
    remote = remote.result(timeout=TIMEOUT)
    for t in threads:
        t.join(timeout=TIMEOUT)
    assert not any(t.is_alive() for t in threads), "a thread did not finish"
    assert not errors, errors
    parity(local, ref_linear(xbig, weights[0]))
    parity(remote, ref_linear(xbig, weights[1]))
    parity(sharded_big, ref_linear(xbig, weights[2]))


# --------------------------------------------------------------------------------------------------
# the embedded default cluster: threads in this process
def test_embedded_cluster_is_sized_to_the_machine_and_reused(rng, parity):
    try:
        distributed.default_client()
        pytest.skip("a default Dask client exists in this process; the embedded cluster is not used")
    except ValueError:
        pass
    w = make_weight("csr", 8, 10, rng)
    x = rng.standard_normal((3, 10)).astype(np.float32)
    try:
        sw = na.shard(w, 2)
        y = na.linear(x, sw)
        parity(y, ref_linear(x, w))
        np.testing.assert_array_equal(y, local_by_blocks(x, sw))
        c = parallel.get_client()
        assert parallel.get_client() is c
        cores = len(os.sched_getaffinity(0))
        nthreads = c.nthreads()
        assert len(nthreads) == min(cores, 8) and all(n == 1 for n in nthreads.values())
        assert all(a.startswith("inproc://") for a in nthreads), "the embedded workers must not listen on a port"
        assert c.run(os.getpid) == {a: os.getpid() for a in nthreads}, "the embedded workers must be threads here"
        per_block = block_threads(c)
        assert sum(per_block) <= max(cores, len(per_block)), per_block
    finally:
        parallel.shutdown()
    assert threads._caps == {}, "the workers' thread caps outlive the embedded cluster"


_SCRIPT = """
    import numpy as np
    import numaccel as na

    rng = np.random.default_rng(5)
    W = rng.standard_normal((12, 20)).astype(np.float32)
    x = rng.standard_normal((7, 20)).astype(np.float32)
    y = na.linear(x, na.shard(W, 2))
    ref = x.astype(np.float64) @ W.T.astype(np.float64)
    print("dense", float(np.linalg.norm(y - ref) / np.linalg.norm(ref)))
    w = na.prune(W, 0.6)
    ys = na.linear(x, na.shard(w, 3))
    ref = x.astype(np.float64) @ w.to_dense().T.astype(np.float64)
    print("csr", float(np.linalg.norm(ys - ref) / np.linalg.norm(ref)))
"""


def test_embedded_cluster_in_a_script_without_a_main_guard(tmp_path):
    """A plain script, no ``if __name__ == "__main__":``, no client=: the embedded cluster starts no
    process, so nothing re-imports the script (the old process cluster died with "bootstrapping phase")."""
    script = tmp_path / "plain_script.py"
    script.write_text(textwrap.dedent(_SCRIPT))
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "bootstrapping" not in proc.stderr and "Nanny failed" not in proc.stderr, proc.stderr[-4000:]
    errors = dict(line.split() for line in proc.stdout.splitlines())
    assert set(errors) == {"dense", "csr"}, proc.stdout
    assert all(float(e) < 1e-5 for e in errors.values()), errors


def test_client_must_be_a_running_client(rng):
    sw = na.shard(rng.standard_normal((6, 8)).astype(np.float32), 2)
    x = np.ones(8, np.float32)
    with pytest.raises(TypeError, match=r"client must be a distributed.Client, got str; for an address use"):
        na.linear(x, sw, client="tcp://127.0.0.1:8786")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None)
        closed = distributed.Client(cluster, set_as_default=False)
        closed.close()
        cluster.close()
    with pytest.raises(ValueError, match="client is not connected"):
        na.linear(x, sw, client=closed)


def test_a_model_mixing_sharded_and_local_layers_takes_a_client(client, rng, parity):
    w1 = rng.standard_normal((32, 24)).astype(np.float32)
    w2 = rng.standard_normal((5, 32)).astype(np.float32)
    net = na.nn.MLP.from_arrays([na.shard(w1, 2), w2])
    x = rng.standard_normal((3, 24)).astype(np.float32)
    parity(net(x, client=client), ref_linear(np.maximum(ref_linear(x, w1), 0), w2))
