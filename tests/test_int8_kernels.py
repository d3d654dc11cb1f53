"""Int8 kernels: weight-only parity, W8A8 parity and exact integer arithmetic (VNNI and portable paths)."""

import contextlib
import os
import subprocess
import sys

import numba
import numpy as np
import pytest
from conftest import run_in_threads
from reference import ref_int_matmul, ref_linear, ref_linear_w8a8

import numaccel as na
import numaccel.plan.int8 as quant
from numaccel._kernels import int8_tiles_x86

# (N, K, B): N not a multiple of the 64-row panel, odd K, K smaller than a group, B = 1, an empty batch,
# and a batch large enough for the activations to be copied into several blocks of the reduction axis
SHAPES = [(37, 301, 5), (130, 64, 1), (64, 200, 13), (70, 150, 7), (3, 20, 2), (1, 1, 1), (9, 40, 0),
          (70, 1101, 20)]
GROUPS = [None, 32, 64, 128, 100]
NO_VNNI = pytest.mark.skipif(not int8_tiles_x86.HAVE_VNNI, reason="no AVX-512 VNNI on the CPU Numba compiles for")
PATHS = [
    pytest.param(True, id="vnni", marks=NO_VNNI),
    pytest.param(False, id="portable"),
]


@pytest.fixture(params=PATHS)
def w8a8_path(request, monkeypatch):
    monkeypatch.setattr(quant, "_USE_VNNI", request.param)
    return request.param


def _case(rng, shape, group_size, symmetric, dtype):
    n, k, b = shape
    W = rng.standard_normal((n, k)).astype(np.float32)
    qw = na.quantize(W, group_size=group_size, symmetric=symmetric)
    x = rng.standard_normal((b, k)).astype(dtype)
    return W, qw, x


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("symmetric", [True, False], ids=["sym", "asym"])
@pytest.mark.parametrize("group_size", GROUPS, ids=lambda g: f"group={g}")
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "n={}-k={}-b={}".format(*s))
def test_weight_only_parity(rng, parity, shape, group_size, symmetric, dtype):
    _, qw, x = _case(rng, shape, group_size, symmetric, dtype)
    out = np.full((x.shape[0], qw.shape[0]), np.nan, dtype=dtype)
    y = na.linear(x, qw, out=out)
    assert y is out and y.dtype == dtype
    parity(y, ref_linear(x, qw))


@pytest.mark.parametrize("symmetric", [True, False], ids=["sym", "asym"])
@pytest.mark.parametrize("group_size", GROUPS, ids=lambda g: f"group={g}")
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "n={}-k={}-b={}".format(*s))
def test_w8a8_parity(rng, parity, w8a8_path, shape, group_size, symmetric):
    _, qw, x = _case(rng, shape, group_size, symmetric, np.float32)
    out = np.full((x.shape[0], qw.shape[0]), np.nan, dtype=np.float32)
    y = na.linear(x, qw, out=out, activation_quant="int8")
    parity(y, ref_linear_w8a8(x, qw))


@pytest.mark.parametrize("group_size", [None, 32, 100], ids=lambda g: f"group={g}")
@pytest.mark.parametrize("symmetric", [True, False], ids=["sym", "asym"])
def test_w8a8_exact_integers(rng, w8a8_path, group_size, symmetric):
    """Integer-valued activations with max |x| = 127 per row and unit scales: the activation codes are x
    itself and every output must equal the int64 oracle of the same codes exactly (the kernels' int32
    group sums, the uint8 offset correction and the zero points all included)."""
    n, k, b = 70, 1102, 20
    q = rng.integers(-128, 128, size=(n, k)).astype(np.int8)
    g = 1 if group_size is None else -(-k // group_size)
    shape = (n,) if group_size is None else (n, g)
    zps = rng.integers(-128, 128, size=shape).astype(np.int8) if not symmetric else None
    qw = na.Int8Weight(q, np.ones(shape, np.float32), zps, group_size=group_size)
    x = rng.integers(-127, 128, size=(b, k)).astype(np.float32)
    x[:, 0] = 127
    x[3, 0] = -127
    y = na.linear(x, qw, activation_quant="int8")
    ref = ref_int_matmul(x.astype(np.int64), q)
    if zps is not None:
        zfull = np.repeat(zps.reshape(n, -1), group_size or k, axis=1)[:, :k]
        ref = ref - ref_int_matmul(x.astype(np.int64), zfull)
    np.testing.assert_array_equal(y.astype(np.int64), ref)


def test_nonfinite_activations_propagate(rng):
    qw = na.quantize(rng.standard_normal((10, 16)).astype(np.float32))
    x = rng.standard_normal((3, 16)).astype(np.float32)
    x[1, 4] = np.nan
    x[2, 5] = np.inf
    for act in (None, "int8"):
        y = na.linear(x, qw, activation_quant=act)
        assert np.isfinite(y[0]).all()
        assert np.isnan(y[1]).all() and not np.isfinite(y[2]).any()


def test_layouts_vector_and_bias(rng, parity):
    qw = na.quantize(rng.standard_normal((70, 90)).astype(np.float32), group_size=32)
    bias = rng.standard_normal(70).astype(np.float32)
    xf = np.asfortranarray(rng.standard_normal((6, 90)).astype(np.float32))
    parity(na.linear(xf, qw, bias), ref_linear(xf, qw, bias))
    xs = rng.standard_normal((6, 180)).astype(np.float32)[:, ::2]
    parity(na.linear(xs, qw), ref_linear(xs, qw))
    v = rng.standard_normal(90).astype(np.float32)
    y = na.linear(v, qw, bias, activation_quant="int8")
    assert y.shape == (70,)
    parity(y, ref_linear_w8a8(v, qw, bias))


def test_zero_features_and_bad_activations(rng):
    qw = na.Int8Weight(np.zeros((4, 0), np.int8), np.ones(4, np.float32))
    out = np.full((2, 4), np.nan, np.float32)
    np.testing.assert_array_equal(na.linear(np.zeros((2, 0), np.float32), qw, out=out), 0.0)
    qw = na.quantize(rng.standard_normal((4, 8)).astype(np.float32))
    with pytest.raises(ValueError, match="activation_quant must be None or .int8."):
        na.linear(np.ones((2, 8), np.float32), qw, activation_quant="int4")


def test_concurrent_calls_from_threads(rng):
    qw = na.quantize(rng.standard_normal((96, 128)).astype(np.float32))
    xs = [rng.standard_normal((4, 128)).astype(np.float32) for _ in range(4)]
    want = [na.linear(x, qw) for x in xs]
    got = [None] * len(xs)

    def work(i):
        for _ in range(20):
            got[i] = na.linear(xs[i], qw)

    run_in_threads(work, len(xs))
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)


def test_env_var_forces_portable_path():
    code = "import numaccel.plan.int8 as q; print(q._USE_VNNI)"
    env = dict(os.environ, NUMACCEL_NO_VNNI="1")
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "False"


@pytest.mark.torch
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
def test_w8a8_error_not_above_torch_dynamic(rng):
    """Per-row activation scales and per-channel weight scales: no less accurate than torch's dynamic
    quantization (fbgemm, per-tensor activations) on the same data."""
    torch = pytest.importorskip("torch")
    n, k, b = 256, 512, 16
    W = (rng.standard_normal((n, k)) * 0.02).astype(np.float32)
    x = rng.standard_normal((b, k)).astype(np.float32)
    lin = torch.nn.Linear(k, n, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(W))
    seq = torch.nn.Sequential(lin)
    model = torch.ao.quantization.quantize_dynamic(seq, {torch.nn.Linear}, dtype=torch.qint8)
    with torch.no_grad():
        y_torch = model(torch.from_numpy(x)).numpy()
    ref = ref_linear(x, W)
    y = na.linear(x, na.quantize(W), activation_quant="int8")
    err = np.linalg.norm(y - ref) / np.linalg.norm(ref)
    err_torch = np.linalg.norm(y_torch - ref) / np.linalg.norm(ref)
    assert err <= err_torch, (err, err_torch)


@pytest.mark.parametrize("shape", SHAPES + [(65, 129, 70)])
@pytest.mark.parametrize("group_size", [None, 32, 100])
@pytest.mark.parametrize("symmetric", [True, False])
def test_weight_only_block_conversion_is_the_same_product(rng, parity, monkeypatch, shape, group_size, symmetric):
    """Large batches convert each block of codes to float32 once: the same products, bit for bit."""
    from numaccel import _config

    _, qw, x = _case(rng, shape, group_size, symmetric, np.float32)
    monkeypatch.setattr(_config, "INT8_CONVERT_MIN_B", 1 << 30)
    in_tiles = na.linear(x, qw)
    monkeypatch.setattr(_config, "INT8_CONVERT_MIN_B", 1)
    for kc in (1, 16, 128):
        monkeypatch.setattr(_config, "INT8_KC_CONVERT", kc)
        out = np.full(in_tiles.shape, np.nan, np.float32)
        np.testing.assert_array_equal(na.linear(x, qw, out=out), in_tiles)
    if x.shape[0]:
        parity(in_tiles, ref_linear(x, qw))


@contextlib.contextmanager
def numba_threads(n):
    old = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        yield
    finally:
        numba.set_num_threads(old)


@pytest.mark.skipif(not quant.blas_possible(), reason="needs NumPy's OpenBLAS callable from Numba's threads")
@pytest.mark.parametrize("shape", [(70, 150, 23), (65, 129, 70), (300, 301, 33), (9, 40, 1), (1, 7, 3)])
@pytest.mark.parametrize("group_size", [None, 32, 100])
@pytest.mark.parametrize("symmetric", [True, False])
def test_weight_only_blas_blocks_are_the_dequantized_product(rng, parity, monkeypatch, shape, group_size,
                                                             symmetric):
    """Variant "blas" (blocks of the weight dequantized, then float32 GEMMs in OpenBLAS) computes
    ``x @ w.dequantize().T``: every output written and within float32 rounding of the float64 product, for
    one block per thread and for blocks of 16 rows (the smallest buffer), on one thread and on all. With one
    block per thread it is the same GEMM as numaccel's dense path on ``w.dequantize()``, so the results
    are equal bit for bit: every dequantized value (streamed or not) is exact."""
    from numaccel import _config
    from numaccel._kernels import dense_blas
    from numaccel.plan import wisdom

    _, qw, x = _case(rng, shape, group_size, symmetric, np.float32)
    ref = ref_linear(x, qw)
    dense = na.linear(x, qw.dequantize())
    for scratch in (1, 1 << 30):
        monkeypatch.setattr(_config, "INT8_BLAS_SCRATCH_BYTES", scratch)
        for threads in (1, numba.get_num_threads()):
            with wisdom.forced({"int8-panels": "blas"}), numba_threads(threads):
                out = np.full((x.shape[0], qw.shape[0]), np.nan, np.float32)
                y = na.linear(x, qw, out=out)
            assert y is out and np.isfinite(y).all()
            parity(y, ref)
            np.testing.assert_allclose(y, dense, rtol=1e-5, atol=1e-5 * np.abs(dense).max())
            if scratch > 1 and x.shape[0] > 1:  # (one row runs OpenBLAS's GEMV on the dense path)
                same = np.empty_like(y)
                dense_blas.gemm(x, qw.dequantize(), same, threads)
                np.testing.assert_array_equal(y, same)


def test_weight_only_blas_blocks_from_two_python_threads(rng, parity):
    """Two Python threads running variant "blas" at once (the second one with buffers of its own) both get
    their own products."""
    from numaccel.plan import wisdom

    if not quant.blas_possible():
        pytest.skip("needs NumPy's OpenBLAS callable from Numba's threads")
    qws = [na.quantize(rng.standard_normal((200, 300)).astype(np.float32)) for _ in range(2)]
    xs = [rng.standard_normal((40, 300)).astype(np.float32) for _ in range(2)]
    outs = [[], []]

    def work(i):
        with wisdom.forced({"int8-panels": "blas"}):
            for _ in range(20):
                outs[i].append(na.linear(xs[i], qws[i]))

    run_in_threads(work)
    for i in range(2):
        assert len(outs[i]) == 20
        for y in outs[i]:
            parity(y, ref_linear(xs[i], qws[i]))


def test_weight_only_large_batch_default():
    """On Intel CPUs where variant "blas" can run, weight-only batches of INT8_BLAS_MIN_B rows and more take
    it by default; "convert" from INT8_CONVERT_MIN_B rows elsewhere and below, "tiles" under that."""
    from numaccel import _config

    big = _config.INT8_BLAS_MIN_B
    blas = _config.cpu_vendor() == "GenuineIntel" and quant.blas_possible()
    assert quant.panels_default(big) == ("blas" if blas else "convert")
    assert quant.panels_default(big - 1) == ("convert" if big - 1 >= _config.INT8_CONVERT_MIN_B else "tiles")
    assert quant.panels_default(1) == "tiles"
    narrow = 16 * _config.num_threads() - 1  # too few features for a block on every thread
    assert quant.panels_default(big, narrow) == "convert"
    assert quant.panels_default(big, narrow + 1) == quant.panels_default(big)


@pytest.mark.parametrize("n", [1, 64, 130, 200, 64 * 5 + 3, 64 * 8])
@pytest.mark.parametrize("group_size", [None, 32, 100])
@pytest.mark.parametrize("symmetric", [True, False])
def test_weight_only_batch_one_streams_are_the_same_product(rng, parity, n, group_size, symmetric):
    """At batch 1, "streams" (several panels side by side per thread) and "panels" (one at a time) compute
    the same products in the same order: equal bit for bit, every output written, for panel counts that
    are and are not multiples of the streams."""
    from numaccel.plan import wisdom

    _, qw, x = _case(rng, (n, 301, 1), group_size, symmetric, np.float32)
    outs = {}
    for variant in wisdom.CHOICES["int8-gemv"]:
        with wisdom.forced({"int8-gemv": variant}):
            out = np.full((1, n), np.nan, np.float32)
            outs[variant] = na.linear(x, qw, out=out)
    np.testing.assert_array_equal(outs["streams"], outs["panels"])
    assert np.isfinite(outs["streams"]).all()
    parity(outs["streams"], ref_linear(x, qw))


@pytest.mark.skipif(not quant._USE_VNNI, reason="W8A8 batch-1 variants need AVX-512 VNNI")
@pytest.mark.parametrize("n", [1, 64, 130, 64 * 4 + 3, 64 * 5 + 3, 64 * 9 + 1])
@pytest.mark.parametrize("group_size", [None, 32, 100])
@pytest.mark.parametrize("symmetric", [True, False])
def test_w8a8_batch_one_streams_are_the_same_product(rng, parity, n, group_size, symmetric):
    """At batch 1, W8A8's "streams" (several panels side by side per thread) and "panels" give the same
    exact int32 sums and the same scaling: equal bit for bit, every output written, for panel counts that
    leave a last group of 1 to 4 panels."""
    from numaccel.plan import wisdom

    _, qw, x = _case(rng, (n, 301, 1), group_size, symmetric, np.float32)
    outs = {}
    for variant in wisdom.CHOICES["w8a8-gemv"]:
        with wisdom.forced({"w8a8-gemv": variant}):
            out = np.full((1, n), np.nan, np.float32)
            outs[variant] = na.linear(x, qw, activation_quant="int8", out=out)
    np.testing.assert_array_equal(outs["streams"], outs["panels"])
    assert np.isfinite(outs["streams"]).all()
    parity(outs["streams"], ref_linear_w8a8(x, qw))


@pytest.mark.parametrize("shape", [(70, 150, 23), (65, 129, 70), (9, 40, 1)])
@pytest.mark.parametrize("group_size", [None, 32])
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("convert", [False, True], ids=["in-tiles", "converted"])
def test_weight_only_batch_passes_are_the_same_product(rng, parity, monkeypatch, shape, group_size, symmetric,
                                                       convert):
    """Large batches run in passes of at most INT8_ROWS_PER_PASS rows: each row's result is the same bit
    for bit however the batch is cut, and every output row is written."""
    from numaccel import _config

    _, qw, x = _case(rng, shape, group_size, symmetric, np.float32)
    monkeypatch.setattr(_config, "INT8_CONVERT_MIN_B", 1 if convert else 1 << 30)
    monkeypatch.setattr(_config, "INT8_ROWS_PER_PASS", 1 << 30)
    whole = na.linear(x, qw)
    for rows in (1, 4, 7, 16, 64):
        monkeypatch.setattr(_config, "INT8_ROWS_PER_PASS", rows)
        out = np.full(whole.shape, np.nan, np.float32)
        np.testing.assert_array_equal(na.linear(x, qw, out=out), whole)
    parity(whole, ref_linear(x, qw))


@pytest.mark.parametrize("shape", [(70, 150, 23), (65, 132, 9)])
@pytest.mark.parametrize("group_size", [None, 32])
def test_w8a8_batch_passes_are_the_same_product(rng, parity, monkeypatch, w8a8_path, shape, group_size):
    """W8A8 batches run in passes of at most INT8_ROWS_PER_PASS_U8 rows: the same result bit for bit."""
    from numaccel import _config

    _, qw, x = _case(rng, shape, group_size, True, np.float32)
    monkeypatch.setattr(_config, "INT8_ROWS_PER_PASS_U8", 1 << 30)
    whole = na.linear(x, qw, activation_quant="int8")
    for rows in (1, 3, 8):
        monkeypatch.setattr(_config, "INT8_ROWS_PER_PASS_U8", rows)
        out = np.full(whole.shape, np.nan, np.float32)
        np.testing.assert_array_equal(na.linear(x, qw, activation_quant="int8", out=out), whole)
    parity(whole, ref_linear_w8a8(x, qw))
