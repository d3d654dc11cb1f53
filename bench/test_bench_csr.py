"""Pruned (CSR) linear layers: numaccel against dense NumPy/BLAS, scipy.sparse, torch.sparse and MKL
(``sparse_dot_mkl``), each where installed, in the same parametrisation and process.

Full run: ``bench/csr_rounds.sh 3`` times every implementation in its own process, in interleaved
rounds (about 6 minutes a round on 2 cores), and reports each one's median over the rounds; this shared
machine's speed drifts by up to 1.8x over minutes, and interleaving makes the drift hit every
implementation alike. One round by hand (``NUMACCEL_BENCH_QUICK=1`` for a 4096×4096 tuning subset)::

    for impl in numaccel numpy scipy torch mkl; do
        env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m pytest bench/test_bench_csr.py -k "$impl" \
            --benchmark-json=/tmp/csr_$impl.json -p no:cacheprovider -q
    done
    # the dense anchor under the other BLAS configuration (faster at small batches):
    python -m pytest bench/test_bench_csr.py -k numpy --benchmark-json=/tmp/csr_numpy_blasenv.json \
        -p no:cacheprovider -q
    python bench/report.py /tmp/csr_{numaccel,numpy,scipy,torch,mkl,numpy_blasenv}.json --out /tmp/csr

Running everything in one process (one ``pytest`` call without ``-k``) also works, but on a 2-core machine
the thread pools that torch and MKL leave behind (OpenMP, TBB) slowed numaccel's next parallel calls up to
30-fold (batch 1: 8 ms instead of 0.25 ms) even after the 0.25 s pause, so the figures we quote come from
one process per implementation; torch and sparse_dot_mkl are imported only by the tests that time them.

Every implementation computes ``y = x @ W.T`` with ``W`` (N, K) pruned by magnitude to the given sparsity
(unstructured, whole tensor). Batch 1 passes ``x`` as a vector (NumPy then runs sgemv). The sparse anchors
get the activations already transposed where their natural product is ``W @ x.T`` (that copy is not
timed). "Cold" weights rotate through copies that together exceed twice the last-level cache (read from sysfs), as a
real model's layers do; "hot" reuse one weight. An anchor whose single call exceeds ``CAP_SECONDS`` is
skipped (the size cap), and so is one whose package is not installed.
"""

from __future__ import annotations

import os
import time

import numba
import numpy as np
import pytest

import numaccel as na
from numaccel.benchmarks import host
from numaccel.benchmarks.rotation import Rotation, call_seconds
from numaccel.benchmarks.suite_headline import _mkl_dot, _torch

QUICK = os.environ.get("NUMACCEL_BENCH_QUICK") == "1"
SPARSITIES = [0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99]
BATCHES = [1, 8, 64, 256]
L3_BYTES = host.llc_bytes()  # the host's last-level cache, from sysfs
TARGET_SECONDS = 0.25 if QUICK else 0.6  # measuring time per benchmark
CAP_SECONDS = 1.0
BLAS = "openblas-env-unset" if "OPENBLAS_CORETYPE" not in os.environ else "openblas-env-set"
IMPLS = ["numaccel", "numaccel-int8", "numaccel-int8-w8a8", "numpy", "scipy", "torch", "mkl"]

try:
    import scipy.sparse as sp
except ImportError:  # optional anchor
    sp = None

# the optional anchors, imported on first use (their thread pools start only where they are timed)
def _grid():
    """(N, K, sparsity, weights): the full sparsity sweep cold at 4096×4096, hot at 90 %, and the
    11008×4096 (LLaMA-7B MLP) shape at three sparsities."""
    yield from ((4096, 4096, s, "cold") for s in ([0.5, 0.6, 0.9, 0.99] if QUICK else SPARSITIES))
    yield 4096, 4096, 0.9, "hot"
    if not QUICK:
        yield from ((11008, 4096, s, "cold") for s in (0.7, 0.9, 0.99))


def _cases():
    for n, k, s, weights in _grid():
        for b in BATCHES:
            for impl in IMPLS:
                yield pytest.param(n, k, s, b, weights, impl, id=f"{impl}-{n}x{k}-s{s:.2f}-B{b}-{weights}")


_CACHE: dict = {}


def _weights(n, k, sparsity, weights):
    """The dense weight, its pruned CSR form and the anchors' copies, enough for ``weights='cold'``."""
    key = (n, k, sparsity, weights)
    if key not in _CACHE:
        _CACHE.clear()  # one parametrisation's weights at a time
        rng = np.random.default_rng(0)
        W = rng.standard_normal((n, k), dtype=np.float32)
        csr = na.prune(W, sparsity)
        W = csr.to_dense()

        def copies(nbytes):
            return 1 if weights == "hot" else max(2, -(-2 * L3_BYTES // max(nbytes, 1)))

        _CACHE[key] = {
            "dense": [W] + [W.copy() for _ in range(copies(W.nbytes) - 1)],
            "numaccel": [csr] + [na.CSRWeight(csr.indptr, csr.indices, csr.data, csr.shape)
                                 for _ in range(copies(csr.nbytes) - 1)],
            "csr": csr,
            "copies": copies,
        }
    return _CACHE[key]


def _anchor_copies(ws, impl):
    if impl not in ws:
        csr = ws["csr"]
        ncopy = len(ws["numaccel"])
        if impl == "numaccel-int8-w8a8":  # the same copies, run with activation_quant="int8"
            ws[impl] = _anchor_copies(ws, "numaccel-int8")
        elif impl == "numaccel-int8":  # pruned-int8: its own (smaller) copies fill the same rotation
            q = na.quantize(csr)
            ws[impl] = [q] + [q.row_block(0, q.shape[0]) for _ in range(ws["copies"](q.nbytes) - 1)]
        elif impl in ("scipy", "mkl"):
            ws[impl] = [csr.to_scipy() for _ in range(ncopy)]
        elif impl == "torch":
            torch = _torch()
            ws[impl] = [
                torch.sparse_csr_tensor(torch.from_numpy(csr.indptr.astype(np.int64)),
                                        torch.from_numpy(csr.indices.astype(np.int64)),
                                        torch.from_numpy(csr.data.copy()), size=csr.shape)
                for _ in range(ncopy)
            ]
    return ws[impl]


def _nbytes(ws, impl) -> int:
    """Bytes of one copy of the weight ``impl`` reads (the memory-bound fraction of the roofline)."""
    csr = ws["csr"]
    if impl == "numaccel":
        return csr.nbytes
    if impl.startswith("numaccel-int8"):
        return ws[impl][0].nbytes
    if impl == "numpy":
        return 4 * csr.shape[0] * csr.shape[1]
    if impl == "torch":
        return 8 * (csr.shape[0] + 1) + 12 * csr.nnz  # int64 row pointers and column ids, float32 values
    m = ws[impl][0]
    return m.data.nbytes + m.indices.nbytes + m.indptr.nbytes


@pytest.mark.parametrize(("n", "k", "sparsity", "batch", "weights", "impl"), list(_cases()))
def test_csr_linear(benchmark, n, k, sparsity, batch, weights, impl):
    if (impl == "scipy" and sp is None) or (impl == "torch" and _torch() is None) or (
        impl == "mkl" and _mkl_dot() is None
    ):
        pytest.skip(f"{impl} is not installed")
    if impl == "numaccel-int8-w8a8" and batch == 1:
        pytest.skip("W8A8 (activation_quant='int8') serves batched calls")
    ws = _weights(n, k, sparsity, weights)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, k), dtype=np.float32)
    if batch == 1:
        x = x[0]
    xt = np.ascontiguousarray(x.T) if batch > 1 else x  # (K, B) for the W @ x.T anchors
    info = dict(family="csr", impl=impl, host=host.describe(), N=n, K=k, batch=batch, dtype="float32",
                sparsity=sparsity, group_size=None, weights=weights, threads=numba.get_num_threads(), device="cpu")
    if impl == "numpy":
        info["blas"] = BLAS
    rotation = Rotation()
    pick, last = rotation.pick, rotation.last

    if impl == "numaccel":
        def fn():
            return na.linear(x, pick(ws["numaccel"]))
    elif impl == "numaccel-int8":
        mats = _anchor_copies(ws, impl)

        def fn():
            return na.linear(x, pick(mats))
    elif impl == "numaccel-int8-w8a8":
        mats = _anchor_copies(ws, impl)

        def fn():
            return na.linear(x, pick(mats), activation_quant="int8")
    elif impl == "numpy":
        def fn():
            return x @ pick(ws["dense"]).T
    elif impl == "scipy":
        mats = _anchor_copies(ws, "scipy")

        def fn():
            return (pick(mats) @ xt).T
    elif impl == "mkl":
        mats = _anchor_copies(ws, "mkl")
        dot_product_mkl = _mkl_dot()

        def fn():
            return dot_product_mkl(pick(mats), xt).T
    else:
        torch = _torch()
        mats = _anchor_copies(ws, "torch")
        tx = torch.from_numpy(xt.reshape(k, -1))

        def fn():
            with torch.no_grad():
                return torch.matmul(pick(mats), tx).T

    info.update(nbytes=_nbytes(ws, impl), ops=2 * ws["csr"].nnz * batch,  # for the fraction of the roofline
                compute="int8-vnni" if impl == "numaccel-int8-w8a8" else "fp32")
    t0 = time.perf_counter()
    y = fn()  # untimed warm-up (compile, thread start) and the size-cap estimate
    est = time.perf_counter() - t0
    if est > 5 * CAP_SECONDS:
        pytest.skip(f"{impl} over the size cap: one call took {est:.2f} s")
    # the anchors compute the same thing; pruned-int8 computes it with its dequantized weight, W8A8 also
    # with the activations quantized per row
    ref = ws["numaccel-int8"][0].to_dense() if impl.startswith("numaccel-int8") else last(ws["dense"])
    got = np.asarray(y).reshape(-1, n) if batch > 1 else np.asarray(y).reshape(n)
    xq = x
    if impl == "numaccel-int8-w8a8":
        sx = np.abs(x.astype(np.float64)).max(axis=-1, keepdims=True) / 127
        xq = np.rint(x / sx) * sx
    want = xq @ ref.T
    assert np.linalg.norm(got - want) <= 1e-4 * np.linalg.norm(want)
    for _ in range(min(len(ws["numaccel"]), 8)):
        fn()
    if impl == "numaccel-int8-w8a8":  # each copy's W8A8 group sums, made on its first W8A8 call, not timed
        for w in mats:
            na.linear(x, w, activation_quant="int8")
    est = max(call_seconds(fn, CAP_SECONDS), 1e-5)
    if est > CAP_SECONDS:
        pytest.skip(f"{impl} over the size cap: one call took {est:.2f} s")
    rounds = int(min(500, max(5, TARGET_SECONDS / est)))
    time.sleep(0.25)  # let the previous library's spinning threads go idle
    benchmark.group = f"csr-{n}x{k}-s{sparsity:.2f}-B{batch}-{weights}"
    benchmark.extra_info.update(info)
    benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=1)
