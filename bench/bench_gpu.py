"""GPU benchmarks: numaccel's CUDA kernels against cuBLAS, cuSPARSE and ``torch._int_mm``.

Families: ``int8`` / ``w8a8`` (Int8Weight), ``csr`` (CSRWeight), ``csr-int8`` (pruned int8, a CSRInt8Weight,
at CSR_INT8_CASES, beside the float32 CSR of the same pattern and cuSPARSE on its dequantized values) and
``transfer``.

Timed with CUDA events after a warm-up that includes the JIT compile, on device-resident operands, so
kernel time excludes transfers; host-to-device and device-to-host copies are timed separately (family
``transfer``). "Cold" weights: each timed call uses the next weight of a ring of copies that together
hold at least four times the L2 cache, so weights come from device memory as they do for the layers of a
real model. Before each timed run of calls the GPU is kept busy by a spin kernel while the host queues
the calls, so the events measure GPU execution, not Python launch overhead (``host_bound`` in
``extra_info`` says when the host could not keep up and the figure is launch-bound).

Results are written as pytest-benchmark-style JSON (``benchmarks[].stats`` and ``extra_info`` with
``family, impl, N, K, batch, dtype, sparsity, group_size, weights, threads, device``, the schema of
``bench/report.py``) after every configuration, so a run stopped by a time limit keeps what it measured,
plus a markdown table and a targets summary.

Usage (from the repository root, on a GPU machine; see bench/gpu_check.sh)::

    PYTHONPATH=. NUMACCEL_REAL_GPU=1 python bench/bench_gpu.py --out "$OUT" --budget 200

``--tiny`` runs a few minute shapes, for checking the script itself (also under NUMBA_ENABLE_CUDASIM=1).
"""

from __future__ import annotations

import argparse
import json
import math
import operator
import platform
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
from numba import cuda

import numaccel as na
from numaccel import _cuda
from numaccel._cuda.api import _bias
from numaccel._cuda.launch import _launch_spmm_csr_cuda, _launch_spmm_csr_int8_cuda
from numaccel._cuda.runtime import _require_cuda

SHAPES = [(4096, 4096), (11008, 4096)]
BATCHES = [1, 8, 64, 256]
SPARSITIES = [0.9, 0.99, 0.7]  # those the CPU suite (bench/test_bench_csr.py) runs at both shapes
GROUPS = [None, 128]
# Pruned int8 (CSRInt8Weight, per-row scales): (N, K, sparsity), at these batches.
CSR_INT8_CASES = [(4096, 4096, 0.9)]
CSR_INT8_BATCHES = [1, 64]
TINY_SHAPES = [(40, 24)]
TINY_BATCHES = [1, 4]

# Targets of the issue (H100/H200, cold weights, CUDA events).
TARGETS_TEXT = [
    "int8 GEMV 4096x4096 and 11008x4096 at B=1: >= 80 % of the device's measured copy bandwidth",
    "CSR 90 % sparse, B=64: >= 1.0x cuSPARSE and >= 1.5x dense fp32 cuBLAS",
    "W8A8 B=256: >= 0.5x torch._int_mm",
]


def log(*args):
    print(*args, flush=True)


@cuda.jit
def _spin(n):
    """Keep one GPU thread busy for about ``n`` microseconds."""
    for _ in range(n):
        cuda.nanosleep(1000)


class Timer:
    """CUDA-event timing of a list of calls run back to back on the default stream.

    Before each trial a one-thread spin kernel keeps the GPU busy for about three times as long as the host
    needs to queue the trial's calls, so the events bracket GPU execution only. A trial is flagged
    ``host_bound`` when the GPU had already reached the start event before the host finished queueing.
    """

    def __init__(self, cuda, *, calls_per_trial: int, trials: int):
        self.cuda = cuda
        self.calls_per_trial = calls_per_trial
        self.trials = trials
        self.spin, self.spin_s_per_iter = self._make_spin()

    def _make_spin(self):
        cuda = self.cuda
        spin = _spin
        try:
            spin[1, 1](1)
            cuda.synchronize()
            start, end = cuda.event(), cuda.event()
            start.record()
            spin[1, 1](2000)
            end.record()
            end.synchronize()
            per_iter = max(start.elapsed_time(end) / 1e3 / 2000, 1e-7)
        except Exception as exc:  # noqa: BLE001 - the simulator has no nanosleep
            log(f"  (no spin kernel: {type(exc).__name__}; timings include launch overhead)")
            return None, None
        log(f"  spin kernel: {per_iter * 1e6:.2f} us per iteration")
        return spin, per_iter

    def __call__(self, calls):
        """Seconds per call (median and min over trials), and whether the host was the bottleneck."""
        cuda = self.cuda
        n = self.calls_per_trial
        for fn in calls:  # warm-up: compiles, allocates
            fn()
        cuda.synchronize()
        t0 = time.perf_counter()
        for i in range(n):
            calls[i % len(calls)]()
        host_s = time.perf_counter() - t0
        cuda.synchronize()
        per_call = []
        host_bound = self.spin is None
        for _ in range(self.trials):
            if self.spin is not None:
                self.spin[1, 1](int(max(3 * host_s, 2e-3) / self.spin_s_per_iter))
            start, end = cuda.event(), cuda.event()
            start.record()
            for i in range(n):
                calls[i % len(calls)]()
            if self.spin is not None and start.query():
                host_bound = True  # the GPU waited for the host during this trial
            end.record()
            end.synchronize()
            per_call.append(start.elapsed_time(end) / 1e3 / n)
        return statistics.median(per_call), min(per_call), host_bound


def entry(family, impl, n, k, batch, median, best, *, trials, sparsity=None, group_size=None, weights="cold",
          dtype="float32", **extra):
    info = dict(family=family, impl=impl, N=n, K=k, batch=batch, dtype=dtype, sparsity=sparsity,
                group_size=group_size, weights=weights, threads=None, device="cuda", **extra)
    return {"name": f"{family}-{impl}-{n}x{k}-B{batch}-s{sparsity}-g{group_size}",
            "stats": {"median": median, "min": best, "rounds": trials}, "extra_info": info}


def matching(results, **where) -> list:
    """The results whose ``extra_info`` has every given field equal to the given value."""
    return [r for r in results if all(r["extra_info"].get(f) == v for f, v in where.items())]


def timings(results, **where) -> str:
    """The median times of the matching results, for the progress log."""
    return ", ".join(f"{r['extra_info']['family']}:{r['extra_info']['impl']} "
                     f"{r['stats']['median'] * 1e6:.1f} us" for r in matching(results, **where))


def rel_err(got, want) -> float:
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    denom = np.linalg.norm(want)
    return float(np.linalg.norm(got - want) / denom) if denom else float(np.linalg.norm(got))


class Anchors:
    """Optional GPU libraries: torch (cuBLAS, torch.sparse, _int_mm) and CuPy (cuBLAS, cuSPARSE)."""

    def __init__(self):
        self.torch = None
        self.cupy = None
        self.cusparse = None
        try:
            import torch

            if torch.cuda.is_available():
                torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32
                self.torch = torch
        except Exception as exc:  # noqa: BLE001 - optional
            log(f"torch unavailable: {exc}")
        try:
            import cupy
            import cupyx.scipy.sparse as cusparse

            cupy.cuda.runtime.getDeviceCount()
            self.cupy, self.cusparse = cupy, cusparse
        except Exception as exc:  # noqa: BLE001 - optional
            log(f"cupy unavailable: {type(exc).__name__}: {exc}")

    def versions(self) -> dict:
        out = {}
        if self.torch is not None:
            out["torch"] = self.torch.__version__
            out["torch_cuda"] = self.torch.version.cuda
        if self.cupy is not None:
            out["cupy"] = self.cupy.__version__
        return out

    def dense(self, host: np.ndarray, dtype: str):
        """A device copy of a host array in ``dtype`` ('float32'/'float16'), through torch or CuPy."""
        if self.torch is not None:
            t = self.torch.from_numpy(np.ascontiguousarray(host)).cuda()
            return t.half() if dtype == "float16" else t
        if self.cupy is not None:
            return self.cupy.asarray(host, dtype=np.float16 if dtype == "float16" else np.float32)
        return None

    def dense_rings(self, host: np.ndarray, l2: int) -> list:
        """``[(dtype, [device copies])]`` of a dense weight in fp32 and fp16 for the cuBLAS anchors."""
        rings = []
        for dtype in ("float32", "float16"):
            d = self.dense(host, dtype)
            if d is not None:
                copies = [d] + [d.clone() if hasattr(d, "clone") else d.copy()
                                for _ in range(ring_size(d.nbytes, l2) - 1)]
                rings.append((dtype, copies))
        return rings

    def lib(self) -> str:
        return "torch" if self.torch is not None else "cupy"


def ring_size(nbytes: int, l2: int) -> int:
    return int(min(32, max(2, math.ceil(4 * l2 / max(nbytes, 1)))))


def device_info(cuda) -> dict:
    dev = cuda.get_current_device()
    name = getattr(dev, "name", "?")
    info = {"name": name.decode() if isinstance(name, bytes) else str(name),
            "compute_capability": list(getattr(dev, "compute_capability", ()))}
    for attr in ("MULTIPROCESSOR_COUNT", "L2_CACHE_SIZE"):
        try:
            info[attr.lower()] = int(getattr(dev, attr))
        except Exception:  # noqa: BLE001 - not every backend has every attribute
            info[attr.lower()] = None
    try:
        info["memory_total"] = int(cuda.current_context().get_memory_info()[1])
    except Exception:  # noqa: BLE001
        info["memory_total"] = None
    return info


def copy_bandwidth(cuda, timer, nbytes: int) -> float:
    """Device-to-device copy bandwidth in bytes/s, counting bytes read plus bytes written."""
    a = cuda.device_array(nbytes // 4, dtype=np.float32)
    b = cuda.device_array(nbytes // 4, dtype=np.float32)
    med, _, _ = timer([lambda: b.copy_to_device(a)])
    return 2 * (nbytes // 4) * 4 / med


def csr_ring(sw, count: int, cuda):
    return [sw.to_device()] + [_cuda.DeviceCSRWeight(sw, cuda) for _ in range(count - 1)]


def int8_ring(qw, count: int, cuda):
    return [qw.to_device()] + [_cuda.DeviceInt8Weight(qw, cuda) for _ in range(count - 1)]


def csr_int8_ring(pw, count: int, cuda):
    return [pw.to_device()] + [_cuda.DeviceCSRInt8Weight(pw, cuda) for _ in range(count - 1)]


def bench_dense(timer, anchors, dense_ring, x, family, n, k, b, common, results):
    """cuBLAS anchors (fp32 and fp16) for ``x @ W.T`` with the dense weights of ``dense_ring``."""
    for dtype, mats in dense_ring:
        try:
            xa = anchors.dense(x, dtype)
            calls = [partial(operator.matmul, xa, m.T) for m in mats]
            med, best, hb = timer(calls)
            results.append(entry(family, f"cublas-{dtype}-{anchors.lib()}", n, k, b, med, best, host_bound=hb,
                                 **common))
        except Exception as exc:  # noqa: BLE001 - an anchor failing must not stop the run
            log(f"  cublas {dtype} failed: {type(exc).__name__}: {exc}")


def bench_csr(cuda, timer, anchors, n, k, sparsity, batches, l2, rng, results):
    W = rng.standard_normal((n, k)).astype(np.float32)
    sw = na.prune(W, sparsity)
    ring = csr_ring(sw, ring_size(sw.nbytes, l2), cuda)
    dense_ring = anchors.dense_rings(sw.to_dense(), l2)
    sparse_anchors = []
    if anchors.cusparse is not None:
        import scipy.sparse as sp

        m = anchors.cusparse.csr_matrix(sp.csr_matrix(sw.to_scipy()))
        count = ring_size(sw.nbytes, l2)
        sparse_anchors.append(("cusparse-cupy", [m] + [m.copy() for _ in range(count - 1)]))
    if anchors.torch is not None:
        torch = anchors.torch
        t = torch.sparse_csr_tensor(torch.from_numpy(sw.indptr.astype(np.int64)),
                                    torch.from_numpy(sw.indices.astype(np.int64)),
                                    torch.from_numpy(sw.data.copy()), size=sw.shape).cuda()
        count = ring_size(sw.nbytes, l2)
        sparse_anchors.append(("torch-sparse-csr", [t] + [t.clone() for _ in range(count - 1)]))
    for b in batches:
        x = rng.standard_normal((b, k)).astype(np.float32)
        ref = x.astype(np.float64) @ sw.to_dense().astype(np.float64).T
        dx = cuda.to_device(x)
        dxt = cuda.to_device(np.ascontiguousarray(x.T))
        dy = cuda.device_array((b, n), dtype=np.float32)
        dyt = cuda.device_array((n, b), dtype=np.float32)
        common = dict(trials=timer.trials, sparsity=sparsity)
        calls = [partial(na.linear, dx, w, out=dy) for w in ring]
        med, best, hb = timer(calls)
        err = rel_err(dy.copy_to_host(), ref)
        results.append(entry("csr", "numaccel-cuda", n, k, b, med, best, host_bound=hb, rel_err=err,
                             nnz=sw.nnz, **common))
        if b > 1:  # (K, B) in, (N, B) out: the batched kernel without the transposes of linear()
            no_bias, _ = _bias(None, n, cuda)
            calls = [partial(_launch_spmm_csr_cuda, w, dxt, no_bias, 0, dyt) for w in ring]
            med, best, hb = timer(calls)
            err = rel_err(dyt.copy_to_host().T, ref)
            results.append(entry("csr", "numaccel-cuda-spmm-kernel", n, k, b, med, best, host_bound=hb,
                                 rel_err=err, **common))
        for name, mats in sparse_anchors:
            try:
                xt_host = np.ascontiguousarray(x.T)
                if name.startswith("cusparse"):
                    xa = anchors.cupy.asarray(xt_host)
                else:
                    xa = anchors.torch.from_numpy(xt_host).cuda()
                calls = [partial(operator.matmul, m, xa) for m in mats]
                med, best, hb = timer(calls)
                got = calls[0]()
                got = got.cpu().numpy() if hasattr(got, "cpu") else anchors.cupy.asnumpy(got)
                results.append(entry("csr", name, n, k, b, med, best, host_bound=hb,
                                     rel_err=rel_err(got.T, ref), **common))
            except Exception as exc:  # noqa: BLE001 - an anchor failing must not stop the run
                log(f"  {name} failed: {type(exc).__name__}: {exc}")
        bench_dense(timer, anchors, dense_ring, x, "csr", n, k, b, common, results)
        log(f"  csr {n}x{k} sparsity={sparsity} B={b}: "
            + timings(results, family="csr", N=n, batch=b, sparsity=sparsity))


def bench_csr_int8(cuda, timer, anchors, n, k, sparsity, batches, l2, rng, results, copy_bw):
    """Pruned int8 (``quantize(prune(W, sparsity))``, per-row scales) against the float32 CSR of the same
    pattern and values (its dequantized weight, numaccel and cuSPARSE) and dense cuBLAS."""
    W = rng.standard_normal((n, k)).astype(np.float32)
    pw = na.quantize(na.prune(W, sparsity))
    ring = csr_int8_ring(pw, ring_size(pw.nbytes, l2), cuda)
    sw = pw.dequantize()
    float_ring = csr_ring(sw, ring_size(sw.nbytes, l2), cuda)
    deq = sw.to_dense()
    dense_ring = anchors.dense_rings(deq, l2)
    cusparse = None
    if anchors.cusparse is not None:
        import scipy.sparse as sp

        m = anchors.cusparse.csr_matrix(sp.csr_matrix(sw.to_scipy()))
        cusparse = [m] + [m.copy() for _ in range(ring_size(sw.nbytes, l2) - 1)]
    for b in batches:
        x = rng.standard_normal((b, k)).astype(np.float32)
        ref = x.astype(np.float64) @ deq.astype(np.float64).T
        dx = cuda.to_device(x)
        dy = cuda.device_array((b, n), dtype=np.float32)
        common = dict(trials=timer.trials, sparsity=sparsity, group_size=pw.group_size)
        calls = [partial(na.linear, dx, w, out=dy) for w in ring]
        med, best, hb = timer(calls)
        moved = pw.nbytes + 4 * (b * k + b * n)
        extra = {"bytes_per_s": moved / med, "nnz": pw.nnz}
        if copy_bw:
            extra["fraction_of_copy_bw"] = moved / med / copy_bw
        results.append(entry("csr-int8", "numaccel-cuda", n, k, b, med, best, host_bound=hb,
                             rel_err=rel_err(dy.copy_to_host(), ref), **common, **extra))
        if b > 1:  # (K, B) in, (N, B) out: the batched kernel without the transposes of linear()
            dxt = cuda.to_device(np.ascontiguousarray(x.T))
            dyt = cuda.device_array((n, b), dtype=np.float32)
            no_bias, _ = _bias(None, n, cuda)
            calls = [partial(_launch_spmm_csr_int8_cuda, w, dxt, no_bias, 0, dyt) for w in ring]
            med, best, hb = timer(calls)
            results.append(entry("csr-int8", "numaccel-cuda-spmm-kernel", n, k, b, med, best, host_bound=hb,
                                 rel_err=rel_err(dyt.copy_to_host().T, ref), **common))
        # the same pattern and values in float32 CSR: what the int8 codes save
        calls = [partial(na.linear, dx, w, out=dy) for w in float_ring]
        med, best, hb = timer(calls)
        results.append(entry("csr-int8", "numaccel-cuda-csr-float32", n, k, b, med, best, host_bound=hb,
                             rel_err=rel_err(dy.copy_to_host(), ref), **common))
        if cusparse is not None:
            try:
                xa = anchors.cupy.asarray(np.ascontiguousarray(x.T))
                calls = [partial(operator.matmul, m, xa) for m in cusparse]
                med, best, hb = timer(calls)
                got = anchors.cupy.asnumpy(calls[0]())
                results.append(entry("csr-int8", "cusparse-cupy-float32", n, k, b, med, best, host_bound=hb,
                                     rel_err=rel_err(got.T, ref), **common))
            except Exception as exc:  # noqa: BLE001 - an anchor failing must not stop the run
                log(f"  cusparse-cupy failed: {type(exc).__name__}: {exc}")
        bench_dense(timer, anchors, dense_ring, x, "csr-int8", n, k, b, common, results)
        log(f"  csr-int8 {n}x{k} sparsity={sparsity} B={b}: "
            + timings(results, family="csr-int8", N=n, batch=b, sparsity=sparsity))


def bench_int8(cuda, timer, anchors, n, k, group_size, batches, l2, rng, results, copy_bw):
    W = rng.standard_normal((n, k)).astype(np.float32)
    qw = na.quantize(W, group_size=group_size)
    ring = int8_ring(qw, ring_size(qw.nbytes, l2), cuda)
    deq = qw.dequantize()
    dense_ring = anchors.dense_rings(deq, l2)
    for b in batches:
        x = rng.standard_normal((b, k)).astype(np.float32)
        ref = x.astype(np.float64) @ deq.astype(np.float64).T
        dx = cuda.to_device(x)
        dy = cuda.device_array((b, n), dtype=np.float32)
        common = dict(trials=timer.trials, group_size=group_size)
        calls = [partial(na.linear, dx, w, out=dy) for w in ring]
        med, best, hb = timer(calls)
        moved = qw.nbytes + 4 * (b * k + b * n)
        gbps = moved / med
        extra = {"bytes_per_s": gbps}
        if copy_bw:
            extra["fraction_of_copy_bw"] = gbps / copy_bw
        results.append(entry("int8", "numaccel-cuda", n, k, b, med, best, host_bound=hb,
                             rel_err=rel_err(dy.copy_to_host(), ref), **common, **extra))
        if b == 1:  # the same weight every call: it stays in L2 when it fits
            med, best, hb = timer([partial(na.linear, dx, ring[0], out=dy)])
            results.append(entry("int8", "numaccel-cuda", n, k, b, med, best, host_bound=hb, weights="hot",
                                 **common))
        bench_dense(timer, anchors, dense_ring, x, "int8", n, k, b, common, results)
        # W8A8: activations quantized per row on the device, integer products through dp4a
        calls = [partial(na.linear, dx, w, out=dy, activation_quant="int8") for w in ring]
        med, best, hb = timer(calls)
        results.append(entry("w8a8", "numaccel-cuda", n, k, b, med, best, host_bound=hb,
                             rel_err=rel_err(dy.copy_to_host(), ref), **common))
        torch = anchors.torch
        if torch is not None and group_size is None and b > 16 and b % 8 == 0 and n % 8 == 0 and k % 8 == 0:
            try:
                qa = torch.randint(-127, 128, (b, k), dtype=torch.int8, device="cuda")
                mats = [torch.from_numpy(qw.qweight.copy()).cuda().t()]
                mats += [mats[0].clone() for _ in range(ring_size(qw.nbytes, l2) - 1)]
                calls = [partial(torch._int_mm, qa, m) for m in mats]
                med, best, hb = timer(calls)
                results.append(entry("w8a8", "torch-int-mm", n, k, b, med, best, host_bound=hb,
                                     note="int8 x int8 -> int32 only (no quantization, no scaling)",
                                     **common))
            except Exception as exc:  # noqa: BLE001
                log(f"  torch._int_mm failed: {type(exc).__name__}: {exc}")
        log(f"  int8/w8a8 {n}x{k} group_size={group_size} B={b}: "
            + timings(results, family="int8", N=n, batch=b, group_size=group_size) + "; "
            + timings(results, family="w8a8", N=n, batch=b, group_size=group_size))


def bench_transfers(cuda, timer, n, k, batches, results):
    for b in batches:
        x = np.ones((b, k), dtype=np.float32)
        y = np.empty((b, n), dtype=np.float32)
        dy = cuda.device_array((b, n), dtype=np.float32)
        med, best, hb = timer([partial(cuda.to_device, x)])
        results.append(entry("transfer", "host-to-device-x", n, k, b, med, best, trials=timer.trials,
                             host_bound=hb, weights=None, bytes=x.nbytes))
        med, best, hb = timer([partial(dy.copy_to_host, y)])
        results.append(entry("transfer", "device-to-host-y", n, k, b, med, best, trials=timer.trials,
                             host_bound=hb, weights=None, bytes=y.nbytes))


def pick(results, family=None, impl=None, **where):
    if family is not None:
        where["family"] = family
    found = matching(results, impl=impl, **where)
    return found[0] if found else None


def targets(results, copy_bw) -> list[str]:
    """One line per target: measured value, met/missed, or why it could not be evaluated."""
    lines = []
    for n, k in SHAPES:
        r = pick(results, "int8", "numaccel-cuda", N=n, K=k, batch=1, group_size=None, weights="cold")
        if r is None or not copy_bw:
            lines.append(f"int8 GEMV {n}x{k} B=1: not measured")
        else:
            f = r["extra_info"]["fraction_of_copy_bw"]
            lines.append(f"int8 GEMV {n}x{k} B=1: {f:.1%} of copy bandwidth ({copy_bw / 1e9:.0f} GB/s) "
                         f"-> {'met' if f >= 0.8 else 'missed'} (target 80 %)")
    for n, k in SHAPES:
        where = dict(family="csr", N=n, K=k, batch=64, sparsity=0.9, weights="cold")
        ours = [(label, pick(results, impl=impl, **where)) for label, impl in
                (("linear", "numaccel-cuda"), ("spmm kernel", "numaccel-cuda-spmm-kernel"))]
        for prefix, goal in (("cusparse", 1.0), ("cublas-float32", 1.5)):
            found = [r for r in matching(results, **where) if r["extra_info"]["impl"].startswith(prefix)]
            if not found or ours[0][1] is None:
                lines.append(f"CSR 90% {n}x{k} B=64 vs {prefix}: not measured")
                continue
            a = found[0]
            for label, r in ours:
                if r is None:
                    continue
                s = a["stats"]["median"] / r["stats"]["median"]
                lines.append(f"CSR 90% {n}x{k} B=64 ({label}) vs {a['extra_info']['impl']}: {s:.2f}x -> "
                             f"{'met' if s >= goal else 'missed'} (target {goal}x)")
    for n, k in SHAPES:
        ours = pick(results, "w8a8", "numaccel-cuda", N=n, K=k, batch=256, group_size=None, weights="cold")
        a = pick(results, "w8a8", "torch-int-mm", N=n, K=k, batch=256, group_size=None, weights="cold")
        if ours is None or a is None:
            lines.append(f"W8A8 {n}x{k} B=256 vs torch._int_mm: not measured")
            continue
        s = a["stats"]["median"] / ours["stats"]["median"]
        lines.append(f"W8A8 {n}x{k} B=256 vs torch._int_mm: {s:.2f}x -> {'met' if s >= 0.5 else 'missed'} "
                     f"(target 0.5x)")
    return lines


def markdown(results, machine) -> str:
    lines = ["# GPU benchmarks", "", f"Device: {machine.get('device', {}).get('name')}; "
             f"copy bandwidth {machine.get('copy_bytes_per_s', 0) / 1e9:.0f} GB/s (read + write); "
             "median of trials, CUDA events.", "",
             "| family | impl | N×K | batch | sparsity | group | weights | median | min | rel. error "
             "| launch-bound |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        i = r["extra_info"]
        err = i.get("rel_err")
        lines.append(f"| {i['family']} | {i['impl']} | {i['N']}×{i['K']} | {i['batch']} | "
                     f"{'' if i['sparsity'] is None else i['sparsity']} | "
                     f"{'' if i['group_size'] is None else i['group_size']} | {i.get('weights') or ''} | "
                     f"{r['stats']['median'] * 1e6:.1f} µs | {r['stats']['min'] * 1e6:.1f} µs | "
                     f"{'' if err is None else f'{err:.1e}'} | {'yes' if i.get('host_bound') else ''} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="bench/results/gpu", help="folder for gpu.json, gpu.md, targets.md")
    ap.add_argument("--budget", type=float, default=200.0, help="seconds; stop starting new shapes after it")
    ap.add_argument("--tiny", action="store_true", help="minute shapes, to check the script itself")
    ap.add_argument("--trials", type=int, default=7)
    ap.add_argument("--calls", type=int, default=20, help="calls per timed trial")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _require_cuda()  # a clear RuntimeError when CUDA cannot run here
    shapes, batches = (TINY_SHAPES, TINY_BATCHES) if args.tiny else (SHAPES, BATCHES)
    trials = 2 if args.tiny else args.trials
    timer = Timer(cuda, calls_per_trial=2 if args.tiny else args.calls, trials=trials)
    anchors = Anchors()
    import numba

    machine = {"python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__,
               "numaccel": na.__version__, "device": device_info(cuda), **anchors.versions()}
    try:
        import importlib.metadata as md

        machine["numba_cuda"] = md.version("numba-cuda")
    except Exception:  # noqa: BLE001
        pass
    log(json.dumps(machine))
    # weight rings hold >= 4x the L2 cache (50 MiB when the device does not say); --tiny: two copies
    l2 = 0 if args.tiny else machine["device"].get("l2_cache_size") or 50 * 2**20
    copy_bw = None if args.tiny else copy_bandwidth(cuda, timer, 1 << 30)
    machine["copy_bytes_per_s"] = copy_bw or 0
    log(f"copy bandwidth: {0 if copy_bw is None else copy_bw / 1e9:.0f} GB/s")
    results: list = []
    rng = np.random.default_rng(0)

    def save():
        doc = {"machine_info": machine, "benchmarks": results,
               "datetime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (out / "gpu.json").write_text(json.dumps(doc, indent=1))
        (out / "gpu.md").write_text(markdown(results, machine))
        summary = targets(results, copy_bw)
        (out / "targets.md").write_text("# Targets (measured by bench/bench_gpu.py)\n\n"
                                        + "\n".join(f"- {s}" for s in summary) + "\n")
        return summary

    plan = []
    for n, k in shapes:
        plan.append(("transfer", n, k, None))
        for g in GROUPS if not args.tiny else [None, 8]:
            plan.append(("int8", n, k, g))
        for s in SPARSITIES if not args.tiny else [0.5]:
            plan.append(("csr", n, k, s))
            if (n, k, s) in CSR_INT8_CASES or (args.tiny and s == 0.5):
                plan.append(("csr-int8", n, k, s))
    for what, n, k, p in plan:
        if time.perf_counter() - t_start > args.budget:
            log(f"budget of {args.budget:.0f} s spent: skipping {what} {n}x{k} {p}")
            continue
        try:
            if what == "transfer":
                bench_transfers(cuda, timer, n, k, batches, results)
            elif what == "int8":
                bench_int8(cuda, timer, anchors, n, k, p, batches, l2, rng, results, copy_bw)
            elif what == "csr-int8":
                bench_csr_int8(cuda, timer, anchors, n, k, p, batches if args.tiny else CSR_INT8_BATCHES, l2,
                               rng, results, copy_bw)
            else:
                bench_csr(cuda, timer, anchors, n, k, p, batches, l2, rng, results)
        except Exception as exc:  # noqa: BLE001 - keep what was measured
            log(f"{what} {n}x{k} {p} failed: {type(exc).__name__}: {exc}")
        save()
    for line in save():
        log(line)
    log(f"done in {time.perf_counter() - t_start:.0f} s; results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
