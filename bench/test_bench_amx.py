"""W8A8 on Intel AMX against numaccel's AVX-512 VNNI path and torch's dynamic int8 (oneDNN, which uses AMX
on such hosts, and fbgemm), 4096 x 4096 per-channel weights, cold: every call reads the next of enough
copies to exceed twice the host's last-level cache (from sysfs).

One implementation per process (torch's and Numba's thread pools would otherwise compete), in interleaved
rounds (``bench/amx_rounds.sh``); the host, the roofline of the int8 units (``amx_peak``) and every
parameter go into ``extra_info``::

    bench/amx_rounds.sh 3 bench/results          # about 15 minutes on 2 cores
    NUMACCEL_BENCH_IMPLS=numaccel-w8a8-vnni NUMACCEL_BENCH_BATCHES=64 python -m pytest bench/test_bench_amx.py -q

``numaccel-w8a8`` is what ``linear(x, w, activation_quant="int8")`` runs (AMX from ``_config.AMX_MIN_BATCH`` rows,
VNNI below); ``numaccel-w8a8-amx`` forces AMX at every batch and ``numaccel-w8a8-vnni`` forces VNNI, to
find where the planner's line belongs.
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

N = K = 4096
BATCHES = [int(b) for b in os.environ.get("NUMACCEL_BENCH_BATCHES", "1,4,8,16,32,64,256").split(",")]
IMPLS = os.environ.get("NUMACCEL_BENCH_IMPLS",
                       "numaccel-w8a8,numaccel-w8a8-amx,numaccel-w8a8-vnni,torch-onednn,torch-fbgemm").split(",")
TARGET_SECONDS = 0.5

try:
    import torch

    torch.set_num_threads(numba.get_num_threads())
except ImportError:  # torch is optional
    torch = None

_WEIGHTS: dict = {}


def _ours():
    if "ours" not in _WEIGHTS:
        rng = np.random.default_rng(0)
        copies = host.cold_copies(N * K)
        _WEIGHTS["ours"] = [na.Int8Weight(rng.integers(-127, 128, (N, K), dtype=np.int8),
                                          rng.random(N, dtype=np.float32) * np.float32(1e-3)) for _ in range(copies)]
    return _WEIGHTS["ours"]


def _torch(engine: str):
    if engine not in _WEIGHTS:
        torch.backends.quantized.engine = engine
        rng = np.random.default_rng(0)
        models = []
        for _ in range(host.cold_copies(N * K)):
            lin = torch.nn.Linear(K, N, bias=False)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(rng.standard_normal((N, K), dtype=np.float32) * np.float32(0.02)))
            models.append(torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(lin), {torch.nn.Linear},
                                                                 dtype=torch.qint8))
        _WEIGHTS[engine] = models
    return _WEIGHTS[engine]


@pytest.mark.parametrize("batch", BATCHES, ids=[f"B{b}" for b in BATCHES])
@pytest.mark.parametrize("impl", IMPLS)
def test_w8a8(benchmark, monkeypatch, impl, batch):
    if impl.startswith("torch") and torch is None:
        pytest.skip("torch is not installed")
    if impl == "torch-onednn" and "onednn" not in torch.backends.quantized.supported_engines:
        pytest.skip("this torch has no onednn engine")
    if impl == "numaccel-w8a8-amx" and not _amx.usable():
        pytest.skip("no usable AMX on this host")
    if impl == "numaccel-w8a8-amx":
        monkeypatch.setattr(_config, "AMX_MIN_BATCH", 1)
    if impl == "numaccel-w8a8-vnni":
        monkeypatch.setattr(_config, "INT8_USE_AMX", False)
    x = np.random.default_rng(1).standard_normal((batch, K), dtype=np.float32)
    rotation = Rotation()
    pick = rotation.pick
    if impl.startswith("numaccel"):
        ws = _ours()
        out = np.empty((batch, N), np.float32)

        def fn():
            return na.linear(x, pick(ws), activation_quant="int8", out=out)
    else:
        engine = impl.split("-")[1]
        models = _torch(engine)
        torch.backends.quantized.engine = engine
        xt = torch.from_numpy(x)

        def fn():
            with torch.no_grad():
                return pick(models)(xt)

    copies = len(ws) if impl.startswith("numaccel") else len(models)
    for _ in range(copies + 1):  # untimed warm-up: compiles, packs every copy, starts the threads
        fn()
    rounds = int(min(300, max(10, TARGET_SECONDS / max(call_seconds(fn), 1e-5))))
    time.sleep(0.2)
    benchmark.group = f"w8a8-{N}x{K}-B{batch}-cold"
    benchmark.extra_info.update(dict(
        family="w8a8", impl=impl, N=N, K=K, batch=batch, dtype="float32", sparsity=None, group_size=None,
        weights="cold", copies=copies, threads=numba.get_num_threads(), device="cpu", host=host.describe(),
        ops=2 * batch * N * K,
        amx=impl == "numaccel-w8a8-amx"
        or (impl == "numaccel-w8a8" and batch >= _config.AMX_MIN_BATCH and _amx.usable()),
        nbytes=N * K + 4 * N,  # int8 codes and per-channel scales of one copy
    ))
    if impl.startswith("numaccel"):
        benchmark.extra_info["compute"] = "int8-amx" if benchmark.extra_info["amx"] else "int8-vnni"
    benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=1)
