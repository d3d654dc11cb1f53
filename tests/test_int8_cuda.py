"""CUDA int8 kernels (weight-only GEMV and tiled GEMM, W8A8 through dp4a) against the float64 oracles.

Runs under Numba's CUDA simulator where there is no GPU, with tiny odd shapes (K not a multiple of 4 or of
the group size, so the group-padded word layout is exercised).
"""

from __future__ import annotations

import numpy as np
import pytest
from cuda_support import CUDA_MARKS, cuda, fast_simulator, nan_filled  # noqa: F401
from reference import ref_int_matmul, ref_linear, ref_linear_w8a8

import numaccel as na

pytestmark = CUDA_MARKS

# (group_size, symmetric): per channel; groups of 8 with zero points; groups of 7 (not a multiple of 4)
FORMATS = [(None, True), (8, False), (7, True)]
FORMAT_IDS = [f"{gs=}-{'sym' if sym else 'asym'}" for gs, sym in FORMATS]


@pytest.mark.parametrize("group_size,symmetric", FORMATS, ids=FORMAT_IDS)
@pytest.mark.parametrize("b", [1, 5], ids=lambda b: f"{b=}")
def test_linear_int8_weight_only(rng, parity, group_size, symmetric, b):
    n, k = 13, 45
    qw = na.quantize(rng.standard_normal((n, k)), group_size=group_size, symmetric=symmetric)
    x = rng.standard_normal((b, k)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    out = nan_filled((b, n))
    na.linear(x, qw, bias, out=out, device="cuda")
    parity(out, ref_linear(x, qw, bias))


@pytest.mark.parametrize("group_size,symmetric", FORMATS, ids=FORMAT_IDS)
def test_linear_w8a8(rng, parity, group_size, symmetric):
    n, k, b = 11, 29, 3
    qw = na.quantize(rng.standard_normal((n, k)), group_size=group_size, symmetric=symmetric)
    x = rng.standard_normal((b, k)).astype(np.float32)
    x[1] = 0  # an all-zero row: scale 0, codes 0
    bias = rng.standard_normal(n).astype(np.float32)
    out = nan_filled((b, n))
    na.linear(x, qw, bias, out=out, device="cuda", activation_quant="int8")
    parity(out, ref_linear_w8a8(x, qw, bias), rtol=1e-4)


def test_w8a8_vector_on_device(rng, parity):
    qw = na.quantize(rng.standard_normal((6, 10)), group_size=4)
    x = rng.standard_normal(10).astype(np.float32)
    y = na.linear(cuda.to_device(x), qw.to_device(), activation_quant="int8")
    assert getattr(y, "__cuda_ndarray__", False)
    parity(y.copy_to_host(), ref_linear_w8a8(x, qw), rtol=1e-4)


def test_device_int8_weight(rng, parity):
    qw = na.quantize(rng.standard_normal((7, 9)), group_size=4, symmetric=False)
    dw = qw.to_device()
    assert dw.on_device and dw.shape == (7, 9) and dw.group_size == 4 and dw.to_host() is qw
    assert qw.to_device() is dw
    x = rng.standard_normal(9).astype(np.float32)
    dout = cuda.to_device(nan_filled(7))
    assert na.linear(cuda.to_device(x), dw, out=dout) is dout
    parity(dout.copy_to_host(), ref_linear(x, qw))


@pytest.mark.parametrize("case", ["1x1", "zero-weight", "k-below-4", "k0", "k0-grouped"])
def test_int8_edge_cases(rng, parity, case):
    if case == "1x1":
        qw = na.Int8Weight(np.array([[-128]], np.int8), np.array([0.5], np.float32))
    elif case == "zero-weight":
        qw = na.quantize(np.zeros((3, 5), np.float32), group_size=2)
    elif case == "k-below-4":
        qw = na.quantize(rng.standard_normal((4, 3)), symmetric=False)
    elif case == "k0":
        qw = na.Int8Weight(np.zeros((3, 0), np.int8), np.ones(3, np.float32))
    else:
        qw = na.Int8Weight(np.zeros((3, 0), np.int8), np.zeros((3, 0), np.float32), group_size=4)
    x = rng.standard_normal((2, qw.shape[1])).astype(np.float32)
    out = nan_filled((2, qw.shape[0]))
    na.linear(x, qw, out=out, device="cuda")
    parity(out, ref_linear(x, qw))
    out1 = nan_filled(qw.shape[0])
    na.linear(x[0], qw, out=out1, device="cuda")
    parity(out1, ref_linear(x[0], qw))


@pytest.mark.parametrize("group_size", [None, 3, 8], ids=lambda g: f"group_size={g}")
def test_packed_word_layout(rng, group_size):
    """The group-padded int32 words hold every code exactly, and zeros on the padding."""
    from numaccel._cuda.formats import _pack_int8

    q = rng.integers(-128, 128, size=(5, 11), dtype=np.int8)
    words, kmap, gs, gw = _pack_int8(q, group_size)
    codes = words.view(np.dtype("<i4")).view(np.int8).reshape(5, -1, 4 * gw)
    assert codes.shape[1] == (1 if group_size is None else -(-11 // group_size))
    flat = np.concatenate([codes[:, g, :gs] for g in range(codes.shape[1])], axis=1)[:, :11]
    np.testing.assert_array_equal(flat, q)
    assert int(np.abs(codes.astype(np.int64)).sum()) == int(np.abs(q.astype(np.int64)).sum())
    # kmap names the feature of every code position, -1 exactly where the padding is
    pos = codes.reshape(5, -1)
    np.testing.assert_array_equal(pos[:, kmap >= 0], q[:, kmap[kmap >= 0]])
    np.testing.assert_array_equal(np.sort(kmap[kmap >= 0]), np.arange(11))


def test_dp4a_stand_in_is_exact(rng):
    """The simulator's stand-in for PTX ``dp4a`` against an exact integer product (on a GPU the W8A8
    kernel tests check the instruction itself)."""
    from numaccel._kernels.int8_cuda import _dp4a_numpy

    a = rng.integers(-128, 128, size=(64, 4), dtype=np.int8)
    b = rng.integers(-128, 128, size=(64, 4), dtype=np.int8)
    c = rng.integers(-1000, 1000, size=64)
    wa = a.view(np.int32).ravel()
    wb = b.view(np.int32).ravel()
    got = np.array([int(_dp4a_numpy(wa[i], wb[i], c[i])) for i in range(64)])
    want = np.array([ref_int_matmul(a[i:i + 1], b[i:i + 1])[0, 0] for i in range(64)]) + c
    np.testing.assert_array_equal(got, want)


def test_int8_cuda_validation(rng):
    qw = na.quantize(rng.standard_normal((4, 6)))
    with pytest.raises(ValueError, match="activation_quant must be None or 'int8'"):
        na.linear(np.ones(6, np.float32), qw, device="cuda", activation_quant="int4")
    with pytest.raises(ValueError, match="x must have 6 features"):
        na.linear(np.ones(5, np.float32), qw, device="cuda")


@pytest.mark.parametrize(
    "n,k,b,group_size,activation_quant",
    [
        (3, 2100, 1, 7, None),  # GEMV over two shared-memory chunks of x, groups across the boundary
        (70, 9, 66, None, None),  # GEMM over 2 x 2 output tiles
        (70, 13, 3, 4, "int8"),  # W8A8 over two output tiles along N
    ],
    ids=lambda v: str(v),
)
def test_int8_multi_block(rng, parity, n, k, b, group_size, activation_quant):
    qw = na.quantize(rng.standard_normal((n, k)), group_size=group_size, symmetric=False)
    x = rng.standard_normal((b, k)).astype(np.float32)
    out = nan_filled((b, n))
    na.linear(x, qw, out=out, device="cuda", activation_quant=activation_quant)
    want = ref_linear(x, qw) if activation_quant is None else ref_linear_w8a8(x, qw)
    parity(out, want, rtol=1e-5 if activation_quant is None else 1e-4)


# ------------------------------------------------------------------------------------------------------
# range limits (their CPU twins and the limits at full size are in tests/test_limits.py)
def test_w8a8_long_rows_split_into_chunks(rng, parity, monkeypatch):
    """A row longer than W8A8's exact int32 limit is stored as equal chunks (same codes, the row's scale and
    zero point in each); the limit is lowered to 10 features so that the simulator can run it."""
    import numaccel.plan.int8 as plan_int8

    monkeypatch.setattr(plan_int8, "_W8A8_SUM_MAX", 127 * 255 * 10 + 3)
    n, k = 5, 30
    qw = na.quantize(rng.standard_normal((n, k)), symmetric=False)
    dw = qw.to_device()
    assert dw.gs == 8 and dw.scales.shape == (n, 4) and dw.zero_points.shape == (n, 4)
    np.testing.assert_array_equal(dw.scales.copy_to_host(), np.repeat(qw.scales[:, None], 4, axis=1))
    for b in (1, 3):
        x = rng.standard_normal((b, k)).astype(np.float32)
        out = nan_filled((b, n))
        na.linear(x, qw, out=out, device="cuda", activation_quant="int8")
        parity(out, ref_linear_w8a8(x, qw), rtol=1e-4)
        out = nan_filled((b, n))
        na.linear(x, qw, out=out, device="cuda")
        parity(out, ref_linear(x, qw))


def test_w8a8_refuses_several_long_groups(rng):
    limit = 66_311
    k = 2 * (limit + 1)
    q = rng.integers(-128, 128, size=(2, k)).astype(np.int8)
    qw = na.Int8Weight(q, np.ones((2, 2), np.float32), np.ones((2, 2), np.int8), group_size=limit + 1)
    with pytest.raises(ValueError, match=f"exact for groups of up to {limit} features with zero points"):
        na.linear(np.ones((1, k), np.float32), qw, device="cuda", activation_quant="int8")


def test_w8a8_nonfinite_activations_propagate(rng, parity):
    """A row holding NaN or inf gives NaN outputs (as on the CPU); the other rows are unaffected."""
    qw = na.quantize(rng.standard_normal((3, 8)), symmetric=False)
    x = rng.standard_normal((3, 8)).astype(np.float32)
    x[1, 2] = np.nan
    x[2, 3] = -np.inf
    y = na.linear(x, qw, device="cuda", activation_quant="int8")
    parity(y[0], ref_linear_w8a8(x[:1], qw)[0], rtol=1e-4)
    assert np.isnan(y[1:]).all()
    assert np.isnan(na.linear(x[2], qw, device="cuda", activation_quant="int8")).all()


def test_dp4a_stand_in_wraps_like_the_instruction():
    """``dp4a.s32`` keeps a 32-bit sum: past int32 it wraps, and so does the simulator's stand-in."""
    from numaccel._kernels.int8_cuda import _dp4a_numpy

    lo = np.full(4, -128, np.int8).view(np.int32)[0]
    hi = np.full(4, 127, np.int8).view(np.int32)[0]
    # four -128 * -128 products: 65536; four -128 * 127 products: -65024
    assert int(_dp4a_numpy(lo, lo, 2**31 - 1 - 65536)) == 2**31 - 1
    assert int(_dp4a_numpy(lo, lo, 2**31 - 65536)) == -(2**31)
    assert int(_dp4a_numpy(lo, hi, -(2**31) + 65024)) == -(2**31)
    assert int(_dp4a_numpy(lo, hi, -(2**31) + 65023)) == 2**31 - 1


def _codes_weight(k: int, scale: float, zero_points: bool):
    q = np.full((2, k), 127, np.int8)
    zps = np.full(2, -128, np.int8) if zero_points else None
    return na.Int8Weight(q, np.full(2, scale, np.float32), zps)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_weight_only_activation_bound(parity):
    """The GEMV scales the products of every 4 features: finite and right while ``4 * |q - z| * |x|`` stays
    below float32's maximum, inf past it where the float product is finite; the GEMM dequantizes every
    code first, so it has no such bound."""
    f32_max = float(np.finfo(np.float32).max)
    k = 8
    qw = _codes_weight(k, 1.0 / 255, True)
    edge = f32_max / (4 * 255)
    inside = np.full((1, k), edge * 0.999, np.float32)
    parity(na.linear(inside, qw, device="cuda"), ref_linear(inside, qw), rtol=1e-5)
    outside = np.full((2, k), edge * 1.001, np.float32)
    ref = ref_linear(outside, qw)
    assert np.isfinite(ref).all()
    with np.errstate(over="ignore", invalid="ignore"):
        assert not np.isfinite(na.linear(outside[0], qw, device="cuda")).any()
    parity(na.linear(outside, qw, device="cuda"), ref, rtol=1e-5)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_w8a8_weight_bound(parity):
    """W8A8 scales each group's integer sum by the weight scale before the activation scale: finite and
    right while ``scale * 127 * 127 * K`` stays below float32's maximum, inf past it."""
    f32_max = float(np.finfo(np.float32).max)
    k = 8
    x = np.ones((2, k), np.float32)
    edge = f32_max / (127 * 127 * k)
    inside = _codes_weight(k, edge * 0.999, False)
    parity(na.linear(x, inside, device="cuda", activation_quant="int8"), ref_linear_w8a8(x, inside), rtol=1e-4)
    outside = _codes_weight(k, edge * 1.001, False)
    assert np.isfinite(ref_linear_w8a8(x, outside)).all()
    with np.errstate(over="ignore"):
        assert np.isinf(na.linear(x, outside, device="cuda", activation_quant="int8")).all()


def test_int8_device_weight_in_the_registry(rng, parity):
    """(..., K) activations, device='cpu' refused for the device copy, float64 refused, W8A8 with a device
    weight, and the protocol of the copy (name, dense form, saved arrays)."""
    qw = na.quantize(rng.standard_normal((6, 10)), group_size=4, symmetric=False)
    dw = qw.to_device()
    assert na.formats.name_of(dw) == "cuda-int8"
    np.testing.assert_array_equal(na.formats.to_dense(dw), qw.to_dense())
    assert na.formats.to_arrays(dw)[1:] == na.formats.to_arrays(qw)[1:]
    x = rng.standard_normal((2, 1, 10)).astype(np.float32)
    for quant, ref, rtol in ((None, ref_linear, None), ("int8", ref_linear_w8a8, 1e-4)):
        y = na.linear(x, dw, activation_quant=quant)
        assert y.shape == (2, 1, 6)
        parity(y, ref(x.reshape(2, 10), qw).reshape(2, 1, 6), rtol=rtol)
    with pytest.raises(ValueError, match=r"device='cpu' .* weight.to_host\(\)"):
        na.linear(x, dw, device="cpu")
    with pytest.raises(TypeError, match=r"x must be float32 for device='cuda', got float64; use x.astype"):
        na.linear(x.astype(np.float64), dw)
