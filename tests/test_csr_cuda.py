"""CUDA CSR kernels (``linear``/``spmm`` with ``device="cuda"``) against the float64 oracles.

Runs under Numba's CUDA simulator where there is no GPU (tests/conftest.py sets NUMBA_ENABLE_CUDASIM before
numba is imported), so shapes are tiny and odd: every simulated thread costs about 0.1 ms.
"""

from __future__ import annotations

import numpy as np
import pytest
from cuda_support import CUDA_MARKS, cuda, fast_simulator, nan_filled  # noqa: F401
from hypothesis import given
from hypothesis import strategies as st
from reference import ref_linear, ref_spmm

import numaccel as na

pytestmark = CUDA_MARKS


def _sparse(rng, n, k, density, *, empty_rows=()):
    W = rng.standard_normal((n, k)).astype(np.float32)
    W[rng.random((n, k)) >= density] = 0
    W[list(empty_rows)] = 0
    return na.CSRWeight.from_dense(W)


@pytest.mark.parametrize(
    "n,k,b,density",
    [(37, 45, 1, 0.3), (9, 300, 1, 0.5), (37, 45, 5, 0.3), (5, 7, 130, 0.5)],  # B > SPMM_TILE: two tiles
    ids=lambda v: str(v),
)
def test_linear_csr_parity(rng, parity, n, k, b, density):
    w = _sparse(rng, n, k, density, empty_rows=(0, n // 2))
    x = rng.standard_normal((b, k)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    out = nan_filled((b, n))
    y = na.linear(x, w, bias, out=out, device="cuda")
    assert y is out
    parity(out, ref_linear(x, w, bias))


def test_linear_csr_vector_and_noncontiguous(rng, parity):
    w = _sparse(rng, 21, 33, 0.4)
    x = rng.standard_normal((3, 66)).astype(np.float32)[1, ::2]  # strided 1-D view
    parity(na.linear(x, w, device="cuda"), ref_linear(x, w))


def test_spmm_csr_parity(rng, parity):
    A = _sparse(rng, 23, 19, 0.35, empty_rows=(3,))
    B = np.asfortranarray(rng.standard_normal((19, 7)).astype(np.float32))
    out = nan_filled((23, 7))
    na.spmm(A, B, out=out, device="cuda")
    parity(out, ref_spmm(A, B))
    v = rng.standard_normal(19).astype(np.float32)
    parity(na.spmm(A, v, device="cuda"), ref_spmm(A, v))
    dout = cuda.to_device(nan_filled((23, 7)))
    assert na.spmm(A, cuda.to_device(np.ascontiguousarray(B)), out=dout, device="cuda") is dout
    parity(dout.copy_to_host(), ref_spmm(A, B))
    # a device weight selects the GPU by itself; a SciPy matrix is converted first
    parity(na.spmm(A.to_device(), B), ref_spmm(A, B))
    parity(na.spmm(A.to_scipy(), B, device="cuda"), ref_spmm(A, B))


@pytest.mark.parametrize(
    "case",
    ["nnz0-batch3", "k0-batch2", "1x1", "wide-int32-indices"],
)
def test_csr_edge_cases(rng, parity, case):
    if case == "nnz0-batch3":
        w = na.CSRWeight(np.zeros(6, np.int32), np.zeros(0, np.int32), np.zeros(0, np.float32), (5, 4))
        x = rng.standard_normal((3, 4)).astype(np.float32)
        bias = np.arange(5, dtype=np.float32)
    elif case == "k0-batch2":
        w = na.CSRWeight(np.zeros(4, np.int32), np.zeros(0, np.int32), np.zeros(0, np.float32), (3, 0))
        x = np.zeros((2, 0), np.float32)
        bias = np.array([1.0, -2.0, 0.5], np.float32)
    elif case == "1x1":
        w = na.CSRWeight([0, 1], [0], [2.5], (1, 1))
        x = np.array([[3.0]], np.float32)
        bias = None
    else:  # K above the uint16 range: int32 column ids
        k = 70_001
        w = na.CSRWeight([0, 2, 2, 3], [0, k - 1, 40_000], [1.5, -2.0, 0.5], (3, k))
        assert w.indices.dtype == np.int32
        x = rng.standard_normal((1, k)).astype(np.float32)
        bias = None
    out = nan_filled((x.shape[0], w.shape[0]))
    na.linear(x, w, bias, out=out, device="cuda")
    parity(out, ref_linear(x, w, bias))


def test_device_weight_and_device_activations(rng, parity):
    w = _sparse(rng, 19, 27, 0.3)
    dw = w.to_device()
    assert dw.on_device and dw.shape == w.shape and dw.nnz == w.nnz and dw.to_host() is w
    assert w.to_device() is dw  # copied once
    x = rng.standard_normal((4, 27)).astype(np.float32)
    dx = cuda.to_device(x)
    dout = cuda.to_device(nan_filled((4, 19)))
    res = na.linear(dx, dw, out=dout)  # a device weight selects the GPU without device=
    assert res is dout
    parity(dout.copy_to_host(), ref_linear(x, w))
    # a device result when the activations are on the device and no out is given
    y = na.linear(dx[1], w, device="cuda")
    assert getattr(y, "__cuda_ndarray__", False)
    parity(y.copy_to_host(), ref_linear(x[1], w))


def test_cuda_validation_messages(rng):
    w = _sparse(rng, 5, 4, 0.5)
    x = np.ones((2, 4), np.float32)
    with pytest.raises(TypeError, match=r"x must be float32 for device='cuda', got float64; use x.astype"):
        na.linear(x.astype(np.float64), w, device="cuda")
    with pytest.raises(TypeError, match=r"B must be float32 for device='cuda', got float64; use B.astype"):
        na.spmm(w, np.ones((4, 2)), device="cuda")
    with pytest.raises(ValueError, match=r"x must have 4 features \(shape \(..., 4\)\)"):
        na.linear(np.ones((2, 3), np.float32), w, device="cuda")
    with pytest.raises(ValueError, match="activation_quant must be None for a CSRWeight"):
        na.linear(x, w, device="cuda", activation_quant="int8")
    with pytest.raises(TypeError):
        na.linear(x, np.ones((5, 4), np.float32), device="cuda")
    with pytest.raises(ValueError, match=r"out must have shape \(2, 5\)"):
        na.linear(x, w, device="cuda", out=np.empty((5, 2), np.float32))
    with pytest.raises(TypeError, match="out must be a device array"):
        na.linear(cuda.to_device(x), w, out=np.empty((2, 5), np.float32), device="cuda")
    with pytest.raises(ValueError, match="bias must have shape"):
        na.linear(x, w, np.ones(4, np.float32), device="cuda")
    with pytest.raises(ValueError, match="B must have 4 rows"):
        na.spmm(w, np.ones((5, 2), np.float32), device="cuda")


@given(k=st.integers(0, 9), b=st.integers(1, 3),
       dtype=st.sampled_from(["float32", "float64", "int32", "float16"]))
def test_cuda_rejects_bad_activations(k, b, dtype):
    """Any mismatched K or non-float32 dtype is a ValueError/TypeError before anything is launched."""
    w = na.CSRWeight(np.zeros(3, np.int32), np.zeros(0, np.int32), np.zeros(0, np.float32), (2, 5))
    x = np.ones((b, k), dtype=dtype)
    if k == 5 and dtype == "float32":
        return
    with pytest.raises((TypeError, ValueError)):
        na.linear(x, w, device="cuda")


@pytest.mark.parametrize("lib", ["torch", "cupy"])
def test_cuda_array_interface_activations(rng, parity, lib):
    """PyTorch and CuPy GPU arrays are taken as they are (``__cuda_array_interface__``), ``out`` included."""
    mod = pytest.importorskip(lib)
    if lib == "torch" and not mod.cuda.is_available():
        pytest.skip("PyTorch has no CUDA device here")
    w = _sparse(rng, 19, 27, 0.3)
    x = rng.standard_normal((4, 27)).astype(np.float32)
    if lib == "torch":
        dx, dout = mod.from_numpy(x).cuda(), mod.full((4, 19), float("nan"), device="cuda")
        back = dout.cpu
    else:
        dx, dout = mod.asarray(x), mod.full((4, 19), np.nan, dtype=np.float32)
        back = dout.get
    na.linear(dx, w, out=dout, device="cuda")
    parity(np.asarray(back()), ref_linear(x, w))
    parity(na.linear(dx, w, device="cuda").copy_to_host(), ref_linear(x, w))


# ------------------------------------------------------------------------------------------------------
# the device weights in the registry: device=, dtype policy, batch dimensions, the cache
def test_device_weight_refuses_cpu_and_client(rng):
    w = _sparse(rng, 5, 4, 0.5)
    dw = w.to_device()
    x = np.ones((2, 4), np.float32)
    with pytest.raises(ValueError, match=r"device='cpu' .* resident on the GPU .* weight.to_host\(\)"):
        na.linear(x, dw, device="cpu")
    with pytest.raises(TypeError, match="client= is for sharded weights"):
        na.formats.spec_for(dw).call(x, dw, None, out=None, device=None, quant=None, client=object())
    np.testing.assert_array_equal(na.linear(x, dw, device="cuda"), na.linear(x, dw))


@pytest.mark.parametrize("arg", ["x", "bias", "out"])
def test_float64_refused_never_downcast(rng, arg):
    """float64 operands are a TypeError naming the conversion, with the host or the device weight."""
    w = _sparse(rng, 5, 4, 0.5)
    args = {"x": np.ones((2, 4), np.float32), "bias": np.ones(5, np.float32), "out": np.empty((2, 5), np.float32)}
    args[arg] = args[arg].astype(np.float64)
    fix = "np.empty" if arg == "out" else f"{arg}.astype"
    for weight in (w, w.to_device()):
        with pytest.raises(TypeError, match=rf"{arg} must (be|have dtype) float32 for device='cuda'.*{fix}"):
            na.linear(args["x"], weight, args["bias"], out=args["out"], device="cuda")


def test_batch_dimensions(rng, parity):
    """x of shape (..., K) gives (..., N), into a new array or a given out."""
    w = _sparse(rng, 6, 5, 0.5)
    bias = rng.standard_normal(6).astype(np.float32)
    for shape in [(2, 3, 5), (1, 2, 1, 5), (0, 3, 5)]:
        x = rng.standard_normal(shape).astype(np.float32)
        y = na.linear(x, w, bias, device="cuda")
        assert y.shape == shape[:-1] + (6,)
        parity(y, ref_linear(x, w, bias))
    x = rng.standard_normal((2, 3, 5)).astype(np.float32)
    out = nan_filled((2, 3, 6))
    assert na.linear(x, w.to_device(), out=out) is out
    parity(out, ref_linear(x, w))
    with pytest.raises(ValueError, match=r"out must have shape \(2, 3, 6\)"):
        na.linear(x, w, device="cuda", out=np.empty((6, 6), np.float32))


def test_device_copy_cache_is_not_on_the_host_weight(rng, parity):
    """The cache of device copies refers to host weights weakly: a host weight with a copy is freed with
    its last reference, and the copy, kept alone, still runs and rebuilds its host weight."""
    import gc
    import weakref

    from numaccel._cuda import formats as device_formats

    w = _sparse(rng, 7, 6, 0.5)
    dense = w.to_dense()
    dw = w.to_device()
    assert w.to_device() is dw and device_formats._cache[w] is dw
    assert getattr(w, "_device", None) is None
    ref = weakref.ref(w)
    del w
    gc.collect()
    assert ref() is None
    x = rng.standard_normal((3, 6)).astype(np.float32)
    host = dw.to_host()
    assert isinstance(host, na.CSRWeight) and host is dw.to_host()
    np.testing.assert_array_equal(host.to_dense(), dense)
    parity(na.linear(x, dw), ref_linear(x, host))


def test_device_weight_protocol(rng):
    w = _sparse(rng, 5, 4, 0.5)
    dw = w.to_device()
    assert isinstance(dw, na.formats.WeightFormat)
    assert na.formats.name_of(dw) == "cuda-csr" and na.formats.spec_for(dw).device == "cuda"
    assert dw.nbytes == w.nbytes and dw.density == w.density and dw.nnz == w.nnz
    np.testing.assert_array_equal(na.formats.to_dense(dw), w.to_dense())
    _, arrays, params = na.formats.to_arrays(dw)
    _, host_arrays, host_params = na.formats.to_arrays(w)
    assert params == host_params and all(arrays[a] is host_arrays[a] for a in host_arrays)
    assert dw.result_dtype(np.float64) == np.float32
    with pytest.raises(TypeError, match="not split into row blocks"):
        na.formats.row_block(dw, 0, 2)
    with pytest.raises(TypeError, match=r"load the host weight and call .to_device\(\)"):
        na.formats.from_arrays("cuda-csr", arrays, params)


def test_simulator_threads_share_shared_arrays(monkeypatch):
    """Under the simulator, every thread of a block gets the same ``cuda.shared.array``, even when a thread
    switch falls between the simulator finding none and storing a new one (forced here by a slow
    ``np.empty``): without the lock of ``cuda_support``, threads made private arrays and kernels read
    values no thread wrote (rare wrong results in the CUDA tests)."""
    import os
    import time

    import cuda_support

    if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
        pytest.skip("a real GPU: the simulator is not in use")
    from numba import float32
    from numba.cuda.simulator import kernelapi

    class SlowEmpty:
        """NumPy, with an ``empty`` slow enough that the other threads run while it allocates."""

        def __getattr__(self, name):
            return getattr(np, name)

        @staticmethod
        def empty(*args, **kwargs):
            time.sleep(0.001)
            return np.empty(*args, **kwargs)

    monkeypatch.setattr(kernelapi, "np", SlowEmpty())  # the simulator's own allocation
    monkeypatch.setattr(cuda_support, "np", SlowEmpty())  # the locked one

    @cuda.jit
    def rotate(out):
        sh = cuda.shared.array(32, float32)
        t = cuda.threadIdx.x
        sh[t] = t
        cuda.syncthreads()
        out[t] = sh[(t + 1) % 32]

    for _ in range(3):
        out = np.full(32, -1, np.float32)
        rotate[1, 32](out)
        np.testing.assert_array_equal(out, (np.arange(32) + 1) % 32)
