"""Int8 linear layers: numaccel weight-only and W8A8 against NumPy fp32, NumPy dequantize-then-matmul and
torch dynamic quantization (fbgemm, and onednn, which runs on AMX where the CPU has it), in the same
parametrisation and process.

Run (about 6 minutes on 2 cores; quick tuning subset with NUMACCEL_BENCH_QUICK=1)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m pytest bench/test_bench_int8.py \
        --benchmark-json=bench/results/int8.json -p no:cacheprovider -q
    # the dense anchor under the other BLAS configuration, merged by bench/report.py:
    python -m pytest bench/test_bench_int8.py -k numpy --benchmark-json=bench/results/int8_blasenv.json -q
    python bench/report.py bench/results/int8.json bench/results/int8_blasenv.json --out bench/results/int8

"Cold" weights rotate through copies that together exceed twice the last-level cache (read from sysfs), as
a real model's layers do; "hot" reuse one weight. The W8A8 benchmarks also record the relative error of the result
against the float64 product with the float weights (``rel_err``), for numaccel and torch on the same data.
"""

from __future__ import annotations

import os
import time

import numba
import numpy as np
import pytest

import numaccel as na
from numaccel import _config
from numaccel.benchmarks import host
from numaccel.benchmarks.rotation import Rotation, call_seconds
from numaccel.plan import amx as _amx

QUICK = os.environ.get("NUMACCEL_BENCH_QUICK") == "1"
SHAPES = [(4096, 4096)] if QUICK else [(4096, 4096), (11008, 4096)]
BATCHES = [1, 8, 64, 256, 1024]
LARGE_BATCH = 1024  # numaccel and dense NumPy only, 4096 x 4096 per-channel: "never slower than dense at any batch"
L3_BYTES = host.llc_bytes()  # the host's last-level cache, from sysfs
TARGET_SECONDS = 0.3 if QUICK else 0.8  # measuring time per benchmark
BLAS = "openblas-env-unset" if "OPENBLAS_CORETYPE" not in os.environ else "openblas-env-set"

try:
    import torch

    torch.set_num_threads(numba.get_num_threads())
except ImportError:  # torch is optional
    torch = None

IMPLS = ["numaccel", "numaccel-w8a8", "numpy", "numpy-dequant", "torch-dynamic-int8", "torch-onednn-int8"]
_ENGINES = {"torch-dynamic-int8": "fbgemm", "torch-onednn-int8": "onednn"}  # onednn uses AMX where present


def _cases():
    for n, k in SHAPES:
        groups = [None, 128] if (n, k) == (4096, 4096) and not QUICK else [None]
        for g in groups:
            for b in BATCHES:
                for weights in ("hot", "cold"):
                    for impl in IMPLS:
                        if g is not None and not impl.startswith("numaccel") and b != 64:
                            continue  # anchors of the grouped cases only where it adds a comparison
                        if b == LARGE_BATCH and (g is not None or (n, k) != (4096, 4096)
                                                 or impl not in ("numaccel", "numaccel-w8a8", "numpy")):
                            continue
                        name = f"{impl}-{n}x{k}-g{g}-B{b}-{weights}"
                        yield pytest.param(n, k, g, b, weights, impl, id=name)


_CACHE: dict = {}


def _weights(n, k, g, weights):
    """Float weights and their quantized forms, enough copies for ``weights='cold'`` (built once)."""
    key = (n, k, g, weights)
    if key not in _CACHE:
        _CACHE.clear()  # keep memory bounded: one parametrisation's weights at a time
        rng = np.random.default_rng(0)
        ncopy = 1 if weights == "hot" else max(2, -(-2 * L3_BYTES // (n * k)))
        W = [rng.standard_normal((n, k), dtype=np.float32) * np.float32(0.02) for _ in range(ncopy)]
        _CACHE[key] = {"W": W, "q": [na.quantize(w, group_size=g) for w in W], "torch": {}}
    return _CACHE[key]


def _torch_models(ws, engine: str):
    torch.backends.quantized.engine = engine
    if engine not in ws["torch"]:
        models = []
        for w in ws["W"]:
            lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(w))
            seq = torch.nn.Sequential(lin)
            models.append(torch.ao.quantization.quantize_dynamic(seq, {torch.nn.Linear}, dtype=torch.qint8))
        ws["torch"][engine] = models
    return ws["torch"][engine]


def _rel_err(y, ref) -> float:
    return float(np.linalg.norm(np.asarray(y, dtype=np.float64) - ref) / np.linalg.norm(ref))


@pytest.mark.parametrize(("n", "k", "group_size", "batch", "weights", "impl"), list(_cases()))
def test_int8_linear(benchmark, n, k, group_size, batch, weights, impl):
    if impl.startswith("torch") and torch is None:
        pytest.skip("torch is not installed")
    if impl.startswith("torch") and _ENGINES[impl] not in torch.backends.quantized.supported_engines:
        pytest.skip(f"this torch has no {_ENGINES[impl]} engine")
    ws = _weights(n, k, group_size, weights)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, k), dtype=np.float32)
    if batch == 1:
        x = x[0]  # a vector: NumPy then runs sgemv, its fastest B = 1 path
    info = dict(family="int8", impl=impl, host=host.describe(), N=n, K=k, batch=batch, dtype="float32", sparsity=None,
                group_size=group_size, weights=weights, threads=numba.get_num_threads(), device="cpu")
    if impl.startswith("numpy"):
        info["blas"] = BLAS
    rotation = Rotation()
    pick, last = rotation.pick, rotation.last

    if impl == "numaccel":
        def fn():
            return na.linear(x, pick(ws["q"]))
    elif impl == "numaccel-w8a8":
        def fn():
            return na.linear(x, pick(ws["q"]), activation_quant="int8")
    elif impl == "numpy":
        def fn():
            return x @ pick(ws["W"]).T
    elif impl == "numpy-dequant":
        def fn():
            return x @ pick(ws["q"]).dequantize().T
    else:
        models = _torch_models(ws, _ENGINES[impl])
        xt = torch.from_numpy(np.ascontiguousarray(x.reshape(-1, k)))

        def fn():
            with torch.no_grad():
                return pick(models)(xt)

    # what the fraction of the roofline needs: bytes of one copy of the weight read, operations, the unit
    info["nbytes"] = ws["q"][0].nbytes if impl.startswith("numaccel") else (
        4 * n * k if impl == "numpy" else n * k + 4 * n)
    info["ops"] = 2 * n * k * batch
    info["compute"] = "fp32" if impl in ("numaccel", "numpy", "numpy-dequant") else None
    if impl == "numaccel-w8a8":
        amx = _config.INT8_USE_AMX and batch >= _config.AMX_MIN_BATCH and _amx.usable()
        info["compute"] = "int8-amx" if amx else "int8-vnni"
    for _ in range(len(ws["W"]) + 1):  # untimed warm-up: compiles, packs every copy, starts threads
        y = fn()
    if impl == "numaccel-w8a8" or impl.startswith("torch"):
        ref = x.reshape(-1, k).astype(np.float64) @ last(ws["W"]).T.astype(np.float64)
        y = y.numpy() if torch is not None and isinstance(y, torch.Tensor) else y
        info["rel_err"] = _rel_err(np.reshape(y, ref.shape), ref)
    est = max(call_seconds(fn), 1e-5)
    rounds = int(min(400, max(5, TARGET_SECONDS / est)))
    time.sleep(0.25)  # let the previous library's spinning threads go idle
    benchmark.group = f"int8-{n}x{k}-g{group_size}-B{batch}-{weights}"
    benchmark.extra_info.update(info)
    benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=1)
