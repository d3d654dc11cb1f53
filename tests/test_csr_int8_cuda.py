"""CUDA pruned-int8 kernels (``linear``/``spmm`` with a CSRInt8Weight, ``device="cuda"``) against the float64
oracles (tests/reference.py: dequantized to dense float64, then ``@``).

Runs under Numba's CUDA simulator where there is no GPU (tests/conftest.py sets NUMBA_ENABLE_CUDASIM before
numba is imported), so shapes are tiny and odd: K not a multiple of 4 or 32, row lengths 0..69 around the
group sizes (5, 32) and the 32 lanes of the row-split kernel.
"""

from __future__ import annotations

import numpy as np
import pytest
from cuda_support import CUDA_MARKS, cuda, fast_simulator, nan_filled  # noqa: F401
from reference import ref_linear, ref_spmm

import numaccel as na
from numaccel.formats.csr_int8 import CSRInt8Weight

pytestmark = CUDA_MARKS

GROUPS = [None, 5, 32]


def _ragged(rng, group_size, *, k=71, lengths=range(70)):
    """A pruned-int8 weight with one row of each length in ``lengths`` (shuffled), K = ``k``."""
    lengths = rng.permutation(np.array(list(lengths)))
    indptr = np.concatenate(([0], np.cumsum(lengths))).astype(np.int32)
    indices = np.concatenate([np.sort(rng.choice(k, size=n, replace=False)) for n in lengths] + [[]])
    data = rng.standard_normal(indices.size).astype(np.float32)
    sw = na.CSRWeight(indptr, indices.astype(np.int32), data, (lengths.size, k))
    return na.quantize(sw, group_size=group_size)


@pytest.mark.parametrize("b", [1, 3], ids=lambda b: f"{b=}")
@pytest.mark.parametrize("group_size", GROUPS, ids=lambda g: f"group_size={g}")
def test_linear_csr_int8_ragged_rows(rng, parity, group_size, b):
    """Rows of every length 0..69 (K = 71), bias, the row-split kernel (B = 1) and the batched one."""
    w = _ragged(rng, group_size)
    x = rng.standard_normal((b, w.shape[1])).astype(np.float32)
    bias = rng.standard_normal(w.shape[0]).astype(np.float32)
    out = nan_filled((b, w.shape[0]))
    assert na.linear(x, w, bias, out=out, device="cuda") is out
    parity(out, ref_linear(x, w, bias))


@pytest.mark.parametrize(
    "case",
    ["nnz0-per-row-b3", "nnz0-groups-b1", "k0-b2", "1x1-b1", "1x1-b2", "wide-int32-indices", "two-column-tiles"],
)
def test_csr_int8_edge_cases(rng, parity, case):
    bias = None
    if case.startswith("nnz0"):
        gs = None if "per-row" in case else 4
        w = CSRInt8Weight(np.zeros(6, np.int32), np.zeros(0, np.int32), np.zeros(0, np.int8),
                          np.ones(5 if gs is None else 0, np.float32), (5, 4), group_size=gs)
        x = rng.standard_normal((3 if case.endswith("b3") else 1, 4)).astype(np.float32)
        bias = np.arange(5, dtype=np.float32)
    elif case == "k0-b2":
        w = CSRInt8Weight(np.zeros(4, np.int32), np.zeros(0, np.int32), np.zeros(0, np.int8),
                          np.ones(3, np.float32), (3, 0))
        x = np.zeros((2, 0), np.float32)
        bias = np.array([1.0, -2.0, 0.5], np.float32)
    elif case.startswith("1x1"):
        w = CSRInt8Weight([0, 1], [0], np.array([-100], np.int8), [0.025], (1, 1))
        x = np.full((int(case[-1]), 1), 3.0, np.float32)
    elif case == "wide-int32-indices":  # K above the uint16 range: int32 column ids
        k = 70_001
        w = CSRInt8Weight([0, 2, 2, 3], [0, k - 1, 40_000], np.array([127, -3, 64], np.int8),
                          [0.5, 0.25, 2.0], (3, k), group_size=1)
        assert w.indices.dtype == np.int32
        x = rng.standard_normal((1, k)).astype(np.float32)
    else:  # B above the batched kernel's 128 columns: two column tiles, groups of 2
        w = _ragged(rng, 2, k=7, lengths=[0, 7, 3, 1, 5])
        x = rng.standard_normal((130, 7)).astype(np.float32)
        bias = rng.standard_normal(5).astype(np.float32)
    out = nan_filled((x.shape[0], w.shape[0]))
    na.linear(x, w, bias, out=out, device="cuda")
    parity(out, ref_linear(x, w, bias))


def test_batch_dimensions_and_vector(rng, parity):
    """x of shape (..., K) gives (..., N), into a new array or a given out; a 1-D x gives (N,)."""
    w = _ragged(rng, 5, k=9, lengths=[0, 9, 6, 5, 1, 4])
    bias = rng.standard_normal(6).astype(np.float32)
    for shape in [(2, 3, 9), (1, 2, 1, 9), (0, 3, 9)]:
        x = rng.standard_normal(shape).astype(np.float32)
        y = na.linear(x, w, bias, device="cuda")
        assert y.shape == shape[:-1] + (6,) and y.dtype == np.float32
        parity(y, ref_linear(x, w, bias))
    x = rng.standard_normal(9).astype(np.float32)
    out = nan_filled(6)
    assert na.linear(x, w.to_device(), out=out) is out
    parity(out, ref_linear(x, w))
    with pytest.raises(ValueError, match=r"out must have shape \(2, 3, 6\)"):
        na.linear(rng.standard_normal((2, 3, 9)).astype(np.float32), w, device="cuda",
                  out=np.empty((6, 6), np.float32))


def test_spmm_csr_int8(rng, parity):
    """``spmm(A, B)`` with a pruned-int8 ``A``: (K, P) and (K,) operands, on the host and on the device."""
    A = _ragged(rng, 5, k=9, lengths=[0, 9, 6, 5, 1, 4])
    B = np.asfortranarray(rng.standard_normal((9, 3)).astype(np.float32))
    out = nan_filled((6, 3))
    assert na.spmm(A, B, out=out, device="cuda") is out
    parity(out, ref_spmm(A, B))
    v = rng.standard_normal(9).astype(np.float32)
    parity(na.spmm(A.to_device(), v), ref_spmm(A, v))
    dout = cuda.to_device(nan_filled((6, 3)))
    assert na.spmm(A, cuda.to_device(B), out=dout, device="cuda") is dout  # a strided device B
    parity(dout.copy_to_host(), ref_spmm(A, B))


def test_device_weight_and_device_activations(rng, parity):
    w = _ragged(rng, 32, k=40, lengths=[33, 0, 2, 40])
    dw = w.to_device()
    assert dw.on_device and dw.shape == w.shape and dw.nnz == w.nnz and dw.group_size == 32
    assert dw.to_host() is w and w.to_device() is dw  # copied once
    assert na.formats.name_of(dw) == "cuda-csr-int8" and na.formats.spec_for(dw).device == "cuda"
    assert dw.nbytes == w.nbytes and dw.density == w.density
    np.testing.assert_array_equal(dw.to_dense(), w.to_dense())
    x = rng.standard_normal((2, 40)).astype(np.float32)
    dout = cuda.to_device(nan_filled((2, 4)))
    assert na.linear(cuda.to_device(x), dw, out=dout) is dout  # a device weight selects the GPU
    parity(dout.copy_to_host(), ref_linear(x, w))
    y = na.linear(cuda.to_device(x[1]), w, device="cuda")  # device activations: a device result
    assert getattr(y, "__cuda_ndarray__", False)
    parity(y.copy_to_host(), ref_linear(x[1], w))


def test_refusals(rng):
    """device='cpu' with the device weight, W8A8, float64 operands: refused before anything is launched."""
    w = _ragged(rng, None, k=4, lengths=[3, 0, 4])
    dw = w.to_device()
    x = np.ones((2, 4), np.float32)
    with pytest.raises(ValueError, match=r"device='cpu' .* resident on the GPU .* weight.to_host\(\)"):
        na.linear(x, dw, device="cpu")
    for weight in (w, dw):
        with pytest.raises(ValueError, match="activation_quant must be None for a CSRInt8Weight"):
            na.linear(x, weight, device="cuda", activation_quant="int8")
    args = {"x": x, "bias": np.ones(3, np.float32), "out": np.empty((2, 3), np.float32)}
    for arg in args:
        bad = dict(args, **{arg: args[arg].astype(np.float64)})
        fix = "np.empty" if arg == "out" else f"{arg}.astype"
        for weight in (w, dw):
            with pytest.raises(TypeError, match=rf"{arg} must (be|have dtype) float32 for device='cuda'.*{fix}"):
                na.linear(bad["x"], weight, bad["bias"], out=bad["out"], device="cuda")
    with pytest.raises(ValueError, match=r"x must have 4 features"):
        na.linear(np.ones((2, 5), np.float32), w, device="cuda")
