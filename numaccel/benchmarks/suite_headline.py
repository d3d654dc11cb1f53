r"""The headline cases of ``numaccel bench``: a pytest-benchmark suite, run by that command.

CSR at 90 % unstructured sparsity and int8 with per-channel scales (weight-only and W8A8), 4096 x 4096, at
batch 1 and 64, "cold" weights (every call reads the next of enough copies to exceed twice the host's
last-level cache, :class:`~numaccel.benchmarks.rotation.Rotation`), against dense NumPy and the anchors that
are installed: scipy.sparse, sparse_dot_mkl and torch (``torch.sparse`` for CSR, dynamic int8 on the fbgemm
and onednn engines for int8); CUDA cases where ``numba.cuda.is_available()``. Every implementation computes
``y = x @ W.T``; batch 1 passes ``x`` as a vector (NumPy then runs sgemv). Each result is checked against
the dense product once, before it is timed.

The file is not named ``test_*.py``: the main test run does not collect it, pytest does when it is named on
the command line. It imports pytest only inside its functions. ``numaccel bench`` runs it once per library
and round, each in a fresh process (torch's and MKL's thread pools slow numaccel's next parallel calls in a
shared process), with ``-p numaccel.benchmarks.plugin`` to record the host and its roofline; by hand::

    NUMACCEL_BENCH_IMPLS=numaccel python -m pytest numaccel/benchmarks/suite_headline.py \\
        -p numaccel.benchmarks.plugin -p no:cacheprovider -q --benchmark-json=/tmp/numaccel.json

Environment:

* ``NUMACCEL_BENCH_IMPLS``: comma-separated libraries to time, of ``numaccel`` (CSR, int8 weight-only,
  W8A8), ``numpy``, ``scipy``, ``mkl``, ``torch`` and ``cuda`` (numaccel on the GPU); default all.
* ``NUMACCEL_BENCH_SHAPE``: ``N`` or ``NxK`` (default 4096); a small shape checks the suite in seconds.
* ``NUMACCEL_BENCH_WEIGHTS``: ``cold`` (default) or ``hot`` (one copy, reused: weights in cache).
* ``NUMACCEL_BENCH_TARGET``: seconds of timed calls per case (default 0.25).

``extra_info`` follows the schema of :mod:`numaccel.benchmarks.report` (``family``, ``impl``, ``N``, ``K``,
``batch``, ``dtype``, ``sparsity``, ``group_size``, ``weights``, ``threads``, ``device``, ``host``) plus
``nbytes`` (the bytes of one copy of the weight the call reads), ``ops`` (the operations the call does:
``2 * nnz * B`` for CSR, ``2 * N * K * B`` for dense and int8), ``compute`` (the unit whose peak bounds it
when it is compute-bound: ``fp32``, ``int8-vnni`` or ``int8-amx``), ``copies`` and, for the int8
activation-quantized implementations, ``rel_err`` against the float64 product with the float weights.
"""

from __future__ import annotations

import glob
import os
import sys
import time

import numba
import numpy as np

import numaccel as na
from numaccel import _config
from numaccel.benchmarks import host
from numaccel.benchmarks.rotation import Rotation, call_seconds

__all__ = ["CASES", "LIBRARIES", "SPARSITY", "pytest_generate_tests", "settings", "test_headline"]

SPARSITY = 0.9
BATCHES = (1, 64)
# library -> the (family, impl) pairs it times; one process per library
CASES = {
    "numaccel": (("csr", "numaccel"), ("int8", "numaccel"), ("int8", "numaccel-w8a8")),
    "numpy": (("csr", "numpy"), ("int8", "numpy")),
    "scipy": (("csr", "scipy"),),
    "mkl": (("csr", "mkl"),),
    "torch": (("csr", "torch"), ("int8", "torch-dynamic-int8"), ("int8", "torch-onednn-int8")),
    "cuda": (("csr", "numaccel-cuda"), ("int8", "numaccel-cuda"), ("int8", "numaccel-w8a8-cuda")),
}
LIBRARIES = tuple(CASES)
_ENGINES = {"torch-dynamic-int8": "fbgemm", "torch-onednn-int8": "onednn"}
CAP_SECONDS = 2.0  # an implementation slower than this per call is skipped (the size cap)


def _parse_shape(text: str) -> tuple[int, int]:
    parts = text.lower().replace("×", "x").split("x")
    try:
        dims = [int(p) for p in parts]
    except ValueError:
        dims = []
    if len(dims) == 1:
        dims = dims * 2
    if len(dims) != 2 or min(dims) < 16:
        raise ValueError(f"shape must be N or NxK with N, K >= 16 (for example 4096 or 11008x4096), got {text!r}")
    return dims[0], dims[1]


def settings(environ=None) -> dict:
    """Return the suite's settings from the environment (see the module docstring), validated.

    Parameters
    ----------
    environ : mapping, optional
        The environment to read; ``os.environ`` by default.

    Returns
    -------
    dict
        ``libraries`` (tuple), ``shape`` ``(N, K)``, ``weights`` (``"cold"`` or ``"hot"``), ``target``
        (seconds) and ``batches``.

    Raises
    ------
    ValueError
        If a variable holds an unknown library, a malformed shape, another ``weights`` or a target <= 0.

    Examples
    --------
    >>> from numaccel.benchmarks import suite_headline as s
    >>> s.settings({"NUMACCEL_BENCH_IMPLS": "numaccel,numpy", "NUMACCEL_BENCH_SHAPE": "256"})["shape"]
    (256, 256)
    """
    env = os.environ if environ is None else environ
    libs = tuple(x.strip() for x in env.get("NUMACCEL_BENCH_IMPLS", ",".join(LIBRARIES)).split(",") if x.strip())
    unknown = sorted(set(libs) - set(LIBRARIES))
    if unknown or not libs:
        raise ValueError(f"NUMACCEL_BENCH_IMPLS must name some of {', '.join(LIBRARIES)}, got "
                         f"{env.get('NUMACCEL_BENCH_IMPLS')!r}")
    weights = env.get("NUMACCEL_BENCH_WEIGHTS", "cold")
    if weights not in ("cold", "hot"):
        raise ValueError(f"NUMACCEL_BENCH_WEIGHTS must be 'cold' or 'hot', got {weights!r}")
    try:
        target = float(env.get("NUMACCEL_BENCH_TARGET", "0.25"))
    except ValueError:
        target = -1.0
    if not target > 0:
        raise ValueError(f"NUMACCEL_BENCH_TARGET must be a positive number of seconds, "
                         f"got {env.get('NUMACCEL_BENCH_TARGET')!r}")
    return {"libraries": libs, "shape": _parse_shape(env.get("NUMACCEL_BENCH_SHAPE", "4096")), "weights": weights,
            "target": target, "batches": BATCHES}


def pytest_generate_tests(metafunc):
    """Parametrise :func:`test_headline` by ``(family, impl, batch)`` for the libraries the settings name."""
    if metafunc.function.__name__ != "test_headline":
        return
    cfg = settings()
    n, k = cfg["shape"]
    params, ids = [], []
    for lib in cfg["libraries"]:
        for family, impl in CASES[lib]:
            for b in cfg["batches"]:
                params.append((family, impl, b))
                ids.append(f"{impl}-{family}-{n}x{k}-B{b}-{cfg['weights']}")
    metafunc.parametrize(("family", "impl", "batch"), params, ids=ids)


_OPTIONAL: dict = {}


def _torch():
    """Return torch, imported on first use (None when absent): its thread pool starts only where it is timed."""
    if "torch" not in _OPTIONAL:
        try:
            import torch

            torch.set_num_threads(numba.get_num_threads())
        except ImportError:
            torch = None
        _OPTIONAL["torch"] = torch
    return _OPTIONAL["torch"]


def _scipy_sparse():
    if "scipy" not in _OPTIONAL:
        try:
            import scipy.sparse as sp
        except ImportError:
            sp = None
        _OPTIONAL["scipy"] = sp
    return _OPTIONAL["scipy"]


def _mkl_dot():
    """Return sparse_dot_mkl's ``dot_product_mkl``, imported on first use (None when absent).

    The ``mkl`` wheel puts libmkl_rt in <prefix>/lib, where sparse_dot_mkl does not look: point MKL_RT at it.
    """
    if "mkl" not in _OPTIONAL:
        if "MKL_RT" not in os.environ:
            found = sorted(glob.glob(os.path.join(sys.prefix, "lib", "libmkl_rt.so*")))
            if found:
                os.environ["MKL_RT"] = found[0]
        try:
            from sparse_dot_mkl import dot_product_mkl
        except (ImportError, OSError):
            dot_product_mkl = None
        _OPTIONAL["mkl"] = dot_product_mkl
    return _OPTIONAL["mkl"]


def _cuda():
    """Return numba.cuda where a GPU is usable, else None."""
    if "cuda" not in _OPTIONAL:
        try:
            from numba import config, cuda

            # the simulator is no GPU to time
            _OPTIONAL["cuda"] = cuda if cuda.is_available() and not config.ENABLE_CUDASIM else None
        except Exception:  # noqa: BLE001 - no numba-cuda, no driver: no CUDA cases
            _OPTIONAL["cuda"] = None
    return _OPTIONAL["cuda"]


def _missing(impl: str) -> str | None:
    """Return why ``impl`` cannot run here, or None."""
    if impl == "scipy" and _scipy_sparse() is None:
        return "scipy is not installed"
    if impl == "mkl" and _mkl_dot() is None:
        return "sparse_dot_mkl is not installed (pip install sparse_dot_mkl mkl)"
    if impl.startswith("torch"):
        torch = _torch()
        if torch is None:
            return "torch is not installed"
        if impl in _ENGINES and _ENGINES[impl] not in torch.backends.quantized.supported_engines:
            return f"this torch has no {_ENGINES[impl]} engine"
    if impl.endswith("-cuda") and _cuda() is None:
        return "no usable CUDA GPU (numba.cuda.is_available() is False)"
    return None


_BASE: dict = {}


def _base(family: str, n: int, k: int) -> dict:
    """Return the float weight (pruned for ``csr``), its numaccel form and the dense reference, built once."""
    key = (family, n, k)
    if key not in _BASE:
        rng = np.random.default_rng(0)
        w = rng.standard_normal((n, k), dtype=np.float32)
        if family == "csr":
            fmt = na.prune(w, SPARSITY)
            dense = fmt.to_dense()
        else:
            w *= np.float32(0.02)
            fmt = na.quantize(w)
            dense = w
        _BASE[key] = {"weight": fmt, "dense": dense, "copies": {}}
    return _BASE[key]


def _ncopies(nbytes: int, weights: str, device: str = "cpu") -> int:
    if weights == "hot":
        return 1
    copies = host.cold_copies(nbytes)
    if device == "cuda":  # more than the largest GPU L2 as well
        copies = max(copies, -(-(512 << 20) // max(1, nbytes)))
    return copies


def _copies(base: dict, impl: str, weights: str):
    """Return ``(copies, nbytes of one copy)`` of the weight as ``impl`` reads it."""
    if impl in base["copies"]:
        return base["copies"][impl]
    w, dense = base["weight"], base["dense"]
    n, k = dense.shape
    if impl in ("numaccel", "numaccel-w8a8"):
        nbytes = w.nbytes
        made = [w] + [w.row_block(0, n) for _ in range(_ncopies(nbytes, weights) - 1)]
    elif impl == "numpy":
        nbytes = dense.nbytes
        made = [dense] + [dense.copy() for _ in range(_ncopies(nbytes, weights) - 1)]
    elif impl in ("scipy", "mkl"):
        m = w.to_scipy()
        nbytes = m.data.nbytes + m.indices.nbytes + m.indptr.nbytes
        made = [m] + [m.copy() for _ in range(_ncopies(nbytes, weights) - 1)]
    elif impl == "torch":
        torch = _torch()
        nnz = w.nnz
        nbytes = 8 * (n + 1) + 12 * nnz  # int64 row pointers and column ids, float32 values
        made = [torch.sparse_csr_tensor(torch.from_numpy(w.indptr.astype(np.int64)),
                                        torch.from_numpy(w.indices.astype(np.int64)),
                                        torch.from_numpy(w.data.copy()), size=w.shape)
                for _ in range(_ncopies(nbytes, weights))]
    elif impl in _ENGINES:
        torch = _torch()
        torch.backends.quantized.engine = _ENGINES[impl]
        nbytes = n * k + 4 * n  # int8 codes and a float32 scale per output (torch's packing may differ)
        made = []
        for _ in range(_ncopies(nbytes, weights)):
            lin = torch.nn.Linear(k, n, bias=False)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(dense))
            made.append(torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(lin), {torch.nn.Linear},
                                                               dtype=torch.qint8))
    else:  # numaccel on the GPU
        nbytes = w.nbytes
        dw = w.to_device()
        made = [dw] + [w.row_block(0, n).to_device() for _ in range(_ncopies(nbytes, weights, "cuda") - 1)]
    base["copies"][impl] = (made, nbytes)
    return made, nbytes


def _compute(family: str, impl: str, batch: int, weight) -> str | None:
    """Return the unit whose peak bounds ``impl`` when compute-bound (None where no ceiling is measured)."""
    if impl.endswith("-cuda"):
        return None
    if impl == "numaccel-w8a8":
        from numaccel.plan import amx

        if amx.eligible(weight, batch):  # the planner's own choice, wisdom included
            return "int8-amx"
        return "int8-vnni" if {"avx512vnni", "avx512bw"} <= _config.cpu_features() else None
    if impl in _ENGINES:
        return "int8-vnni"
    return "fp32"


def _rel_err(y, ref) -> float:
    return float(np.linalg.norm(np.asarray(y, dtype=np.float64) - ref) / np.linalg.norm(ref))


def test_headline(benchmark, family, impl, batch):
    """Time one implementation on one headline case (one untimed warm-up pass over every copy first)."""
    import pytest

    why = _missing(impl)
    if why:
        pytest.skip(why)
    cfg = settings()
    n, k = cfg["shape"]
    weights = cfg["weights"]
    base = _base(family, n, k)
    mats, nbytes = _copies(base, impl, weights)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, k), dtype=np.float32)
    if batch == 1:
        x = x[0]
    device = "cuda" if impl.endswith("-cuda") else "cpu"
    density = base["weight"].density if family == "csr" else 1.0
    info = dict(family=family, impl=impl, host=host.describe(), N=n, K=k, batch=batch, dtype="float32",
                sparsity=SPARSITY if family == "csr" else None, group_size=None, weights=weights,
                threads=numba.get_num_threads(), device=device, nbytes=int(nbytes), copies=len(mats),
                ops=int(round(2 * n * k * batch * density)), compute=_compute(family, impl, batch, base["weight"]))
    if impl == "numpy":
        info["blas"] = "openblas-env-unset" if "OPENBLAS_CORETYPE" not in os.environ else "openblas-env-set"
    rotation = Rotation()
    pick, last = rotation.pick, rotation.last
    quant = "int8" if impl.startswith("numaccel-w8a8") else None

    if impl in ("numaccel", "numaccel-w8a8"):
        def fn():
            return na.linear(x, pick(mats), activation_quant=quant)
    elif impl == "numpy":
        def fn():
            return x @ pick(mats).T
    elif impl in ("scipy", "mkl"):
        xt = np.ascontiguousarray(x.T) if batch > 1 else x
        dot = _mkl_dot() if impl == "mkl" else (lambda m, v: m @ v)

        def fn():
            return dot(pick(mats), xt).T
    elif impl == "torch":
        torch = _torch()
        tx = torch.from_numpy(np.ascontiguousarray(x.reshape(-1, k).T))

        def fn():
            with torch.no_grad():
                return torch.matmul(pick(mats), tx).T
    elif impl in _ENGINES:
        torch = _torch()
        torch.backends.quantized.engine = _ENGINES[impl]
        tx = torch.from_numpy(np.ascontiguousarray(x.reshape(-1, k)))

        def fn():
            with torch.no_grad():
                return pick(mats)(tx)
    else:
        cuda = _cuda()
        xd = cuda.to_device(x)

        def fn():
            y = na.linear(xd, pick(mats), activation_quant=quant)
            cuda.synchronize()
            return y

    t0 = time.perf_counter()
    y = fn()  # untimed warm-up (compile, thread start) and the size-cap estimate
    if time.perf_counter() - t0 > 5 * CAP_SECONDS:
        pytest.skip(f"{impl} over the size cap: one call took {time.perf_counter() - t0:.2f} s")
    for _ in range(len(mats)):  # every copy once: packs W8A8 copies, faults their pages in
        y = fn()
    got = y.copy_to_host() if hasattr(y, "copy_to_host") else np.asarray(y.detach() if hasattr(y, "detach") else y)
    got = got.reshape(-1, n)
    ref_w = last(mats)
    if impl in ("numaccel", "numaccel-cuda") and family == "int8":
        ref_w = base["weight"].dequantize()
    elif not isinstance(ref_w, np.ndarray):
        ref_w = base["dense"]
    want = x.reshape(-1, k).astype(np.float64) @ ref_w.T.astype(np.float64)
    err = _rel_err(got, want)
    if quant or impl in _ENGINES:
        info["rel_err"] = err
        assert err < 0.1, f"{impl}: relative error {err:.3g} against the float product"
    else:
        assert err < 1e-4, f"{impl}: relative error {err:.3g} against the dense product"
    est = max(call_seconds(fn, CAP_SECONDS), 1e-6)
    if est > CAP_SECONDS:
        pytest.skip(f"{impl} over the size cap: one call took {est:.2f} s")
    rounds = int(min(500, max(5, cfg["target"] / est)))
    time.sleep(min(0.25, cfg["target"]))  # let the previous case's spinning threads go idle
    benchmark.group = f"{family}-{n}x{k}-B{batch}-{weights}"
    benchmark.extra_info.update(info)
    benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=1)
