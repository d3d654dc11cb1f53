"""W8A8 for the pruned-int8 format (``linear(x, CSRInt8Weight, activation_quant="int8")``): bitwise against
the int64 oracle of ``reference.py`` on the VNNI kernel (where the host has it) and the portable one, over
the CSR edge cases, groups, batch sizes around every slab width, float64 activations, long rows whose int32
sums wrap, NaN rows; and the refusals.

Shapes stay small: this file also runs under ``NUMBA_BOUNDSCHECK=1``.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import make_weight
from reference import dense64, ref_linear, ref_linear_w8a8, ref_linear_w8a8_csr_int8

import numaccel as na
from numaccel import nn
from numaccel._kernels import int8_tiles_x86
from numaccel.plan import csr_int8 as plan

NO_VNNI = pytest.mark.skipif(not (int8_tiles_x86.HAVE_VNNI and plan._USE_VNNI),
                             reason="no AVX-512 VNNI on the CPU Numba compiles for (or the JIT is off)")


@pytest.fixture(params=[pytest.param(True, id="vnni", marks=NO_VNNI), pytest.param(False, id="portable")])
def kernel(request, monkeypatch):
    monkeypatch.setattr(plan, "_USE_VNNI", request.param)
    return request.param


def oracle(x, w, chunk=None):
    return ref_linear_w8a8_csr_int8(x, w.indptr, w.indices, w.qdata, w.scales, w.group_size, chunk)


def run(x, w):
    """``linear`` into an ``out`` full of NaN, so that an element left unwritten shows."""
    out = np.full(x.shape[:-1] + (w.shape[0],), np.nan, dtype=x.dtype)
    y = na.linear(x, w, activation_quant="int8", out=out)
    assert y is out
    return y


def staircase(rng, k=97, rows=70) -> na.CSRWeight:
    """Row ``i`` holds ``i`` nonzeros (0..69): every length a group of four, a slab or a group meets."""
    W = np.zeros((rows, k), np.float32)
    for i in range(rows):
        W[i, rng.choice(k, size=i, replace=False)] = rng.standard_normal(i).astype(np.float32) + 3
    return na.CSRWeight.from_dense(W)


@pytest.mark.parametrize("group_size", [None, 5, 32])
@pytest.mark.parametrize("batch", [1, 3, 16, 17, 33, 64, 65, 130])
def test_parity_staircase(kernel, rng, batch, group_size):
    w = na.quantize(staircase(rng), group_size=group_size)
    x = rng.standard_normal((batch, w.shape[1])).astype(np.float32)
    y = run(x, w)
    np.testing.assert_array_equal(y, oracle(x, w).astype(np.float32))
    ref = ref_linear(x, dense64(w))
    assert np.linalg.norm(y - ref) / np.linalg.norm(ref) < 2e-2  # the activation quantization error


@pytest.mark.parametrize("shape,density", [((1, 1), 1.0), ((7, 5), 0.0), ((130, 300), 0.2), ((64, 1000), 0.05)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_parity_shapes(kernel, rng, shape, density, dtype):
    w = na.quantize(make_weight(rng, *shape, density))
    x = rng.standard_normal((40, shape[1])).astype(dtype)
    y = run(x, w)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, oracle(x, w).astype(dtype))
    ref = ref_linear_w8a8(x, dense64(w))  # the dense oracle of the same quantized math
    assert np.linalg.norm(y - ref) <= 1e-6 * max(np.linalg.norm(ref), 1e-30)


def test_thread_team_and_vector_x(kernel, rng):
    """A weight large enough for the thread team; x of shape (..., K) and (K,)."""
    w = na.quantize(make_weight(rng, 600, 700, 0.3), group_size=64)
    x = rng.standard_normal((2, 35, 700)).astype(np.float32)
    y = run(x, w)
    np.testing.assert_array_equal(y.reshape(70, 600), oracle(x.reshape(70, 700), w).astype(np.float32))
    v = na.linear(x[0, 0], w, activation_quant="int8")
    np.testing.assert_array_equal(v, y[0, 0])


def test_bias_and_layer(kernel, rng):
    w = na.quantize(make_weight(rng, 50, 80, 0.3))
    bias = rng.standard_normal(50).astype(np.float32)
    x = rng.standard_normal((20, 80)).astype(np.float32)
    want = (oracle(x, w).astype(np.float32) + bias)
    np.testing.assert_array_equal(na.linear(x, w, bias, activation_quant="int8"), want)
    np.testing.assert_array_equal(nn.Linear(w, bias, activation_quant="int8")(x), want)


def test_kernels_agree_bitwise(rng, monkeypatch):
    if not (int8_tiles_x86.HAVE_VNNI and plan._USE_VNNI):
        pytest.skip("one kernel only on this host")
    w = na.quantize(make_weight(rng, 300, 500, 0.2), group_size=7)
    x = rng.standard_normal((70, 500)).astype(np.float32)
    a = na.linear(x, w, activation_quant="int8")
    monkeypatch.setattr(plan, "_USE_VNNI", False)
    np.testing.assert_array_equal(na.linear(x, w, activation_quant="int8"), a)


@pytest.mark.parametrize("batch", [3, 40, 130])
def test_activation_slab_starts_on_a_cache_line(kernel, rng, monkeypatch, batch):
    """The quantized activations are packed into a uint8 array starting on a 64-byte line (NumPy promises
    16 bytes; a slab row straddling two lines costs a second line per load)."""
    made = []
    aligned_empty = plan.aligned_empty

    def spy(shape, dtype):
        a = aligned_empty(shape, dtype)
        made.append(a)
        return a

    monkeypatch.setattr(plan, "aligned_empty", spy)
    w = na.quantize(make_weight(rng, 60, 300, 0.2))
    x = rng.standard_normal((batch, 300)).astype(np.float32)
    np.testing.assert_array_equal(run(x, w), oracle(x, w).astype(np.float32))
    assert len(made) == 1 and made[0].dtype == np.uint8 and made[0].ctypes.data % 64 == 0


def test_nan_and_zero_rows(kernel, rng):
    """A row of x holding NaN or inf gives NaN in every output (as for an Int8Weight); a zero row, zeros."""
    w = na.quantize(make_weight(rng, 40, 90, 0.3))
    x = rng.standard_normal((6, 90)).astype(np.float32)
    x[1, 3] = np.nan
    x[2, 0] = -np.inf
    x[4] = 0
    y = run(x, w)
    assert np.isnan(y[1]).all() and np.isnan(y[2]).all()
    assert (y[4] == 0).all()
    keep = [0, 3, 5]
    np.testing.assert_array_equal(y[keep], oracle(x[keep], w).astype(np.float32))


def test_long_row_wraps_exactly(kernel):
    """One row of 70 000 codes of -128 and activations at +max: the offset sums pass 2**31, the corrected
    int32 sum (-128 * 127 * 70 000) does not, and it is exact."""
    k = 70_000
    w = na.CSRInt8Weight([0, k], np.arange(k), np.full(k, -128, np.int8), [0.5], (1, k))
    x = np.ones((2, k), np.float32)
    x[1, ::2] = -1
    y = run(x, w)
    np.testing.assert_array_equal(y, oracle(x, w).astype(np.float32))
    assert y[0, 0] == np.float32(0.5 * -128 * 127 * k / 127)


def test_long_rows_split_in_chunks(kernel, rng, monkeypatch):
    """Rows with one scale longer than the exact int32 limit are summed in chunks (limits shrunk here)."""
    monkeypatch.setattr(plan, "W8A8_MAX_GROUP", 9)
    monkeypatch.setattr(plan, "_W8A8_CHUNK", 8)
    w = na.quantize(staircase(rng))
    x = rng.standard_normal((20, w.shape[1])).astype(np.float32)
    np.testing.assert_array_equal(run(x, w), oracle(x, w, chunk=8).astype(np.float32))


def test_groups_too_long_refused(rng, monkeypatch):
    monkeypatch.setattr(plan, "W8A8_MAX_GROUP", 9)
    w = na.quantize(staircase(rng), group_size=12)
    x = rng.standard_normal((3, w.shape[1])).astype(np.float32)
    with pytest.raises(ValueError, match="group_size <= 9"):
        na.linear(x, w, activation_quant="int8")
    assert na.linear(x, na.quantize(staircase(rng), group_size=9), activation_quant="int8").shape == (3, 70)


def test_env_var_forces_portable_kernel():
    code = "import numaccel.plan.csr_int8 as p; print(p._USE_VNNI)"
    env = dict(os.environ, NUMACCEL_NO_VNNI="1")
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "False"


def test_bad_activation_quant(rng):
    w = na.quantize(make_weight(rng, 5, 6, 0.5))
    with pytest.raises(ValueError, match="activation_quant"):
        na.linear(np.ones((2, 6), np.float32), w, activation_quant="int4")
    with pytest.raises(ValueError, match="activation_quant"):
        nn.Linear(w, activation_quant="fp8")
