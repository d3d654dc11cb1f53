"""W8A8 on Intel AMX tiles: exact int32 sums against the int64 oracle on odd shapes, the same results as the
VNNI path up to float rounding, thread safety, and the rules that keep AMX off where it cannot run."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest
from reference import ref_int_matmul, ref_linear_w8a8

import numaccel as na
from numaccel import _config
from numaccel.plan import amx as _amx
from numaccel.plan._buffers import aligned_empty

needs_amx = pytest.mark.skipif(
    not _amx.usable(),
    reason="needs Intel AMX (amx_tile and amx_int8), Numba compiling for the host and the kernel's tile permission",
)


@pytest.fixture
def amx_on(monkeypatch):
    monkeypatch.setattr(_config, "INT8_USE_AMX", True)
    monkeypatch.setattr(_config, "AMX_MIN_BATCH", 16)


def integer_case(rng, n, k, b):
    """Codes with unit scales and integer activations whose row maximum is 127: the activation codes are
    the activations themselves (scale exactly 1), so the result is the exact integer product."""
    q = rng.integers(-127, 128, (n, k)).astype(np.int8)
    x = rng.integers(-127, 128, (b, k)).astype(np.float32)
    x[:, rng.integers(0, k, b)] = 127.0
    return na.Int8Weight(q, np.ones(n, np.float32)), x, q


SHAPES = [(16, 64, 16), (17, 65, 17), (31, 100, 33), (33, 130, 47), (40, 200, 64), (50, 127, 70), (64, 640, 32)]


@needs_amx
@pytest.mark.parametrize("n, k, b", SHAPES, ids=[f"{n=}-{k=}-{b=}" for n, k, b in SHAPES])
def test_int32_sums_exact(rng, parity, amx_on, n, k, b):
    w, x, q = integer_case(rng, n, k, b)
    assert _amx.eligible(w, b)
    out = np.full((b, n), np.nan, np.float32)
    na.linear(x, w, activation_quant="int8", out=out)
    ref = ref_int_matmul(x.astype(np.int64), q)
    assert np.abs(ref).max() < 2**24  # every sum exact in float32
    parity(out.astype(np.int64), ref, exact=True)


@needs_amx
@pytest.mark.parametrize("group_size, symmetric", [(None, True), (None, False), (64, True), (128, False)],
                         ids=["channel", "channel-asym", "g64", "g128-asym"])
@pytest.mark.parametrize("n, k, b", SHAPES[1:5], ids=[f"{n=}-{k=}-{b=}" for n, k, b in SHAPES[1:5]])
def test_matches_the_w8a8_oracle_and_the_vnni_path(rng, parity, monkeypatch, n, k, b, group_size, symmetric):
    W = rng.standard_normal((n, k)).astype(np.float32)
    w = na.quantize(W, group_size=group_size, symmetric=symmetric)
    x = rng.standard_normal((b, k)).astype(np.float32)
    monkeypatch.setattr(_config, "AMX_MIN_BATCH", 16)
    monkeypatch.setattr(_config, "INT8_USE_AMX", True)
    assert _amx.eligible(w, b)
    y = na.linear(x, w, activation_quant="int8", out=np.full((b, n), np.nan, np.float32))
    parity(y, ref_linear_w8a8(x, w), dtype=np.float32)
    monkeypatch.setattr(_config, "INT8_USE_AMX", False)
    parity(y, na.linear(x, w, activation_quant="int8"), rtol=1e-6)
    x64 = x.astype(np.float64)
    monkeypatch.setattr(_config, "INT8_USE_AMX", True)
    parity(na.linear(x64, w, activation_quant="int8"), ref_linear_w8a8(x64, w), rtol=1e-5, dtype=np.float64)


@needs_amx
def test_group_sizes_amx_cannot_take_stay_on_vnni(rng, amx_on):
    W = rng.standard_normal((16, 96)).astype(np.float32)
    assert not _amx.eligible(na.quantize(W, group_size=32), 32)
    assert not _amx.eligible(na.quantize(W, group_size=96), 32)
    assert _amx.eligible(na.quantize(W, group_size=64), 32)
    assert not _amx.eligible(na.quantize(W), 15)


@needs_amx
def test_rows_with_nan_zero_and_tiny_values(rng, parity, amx_on):
    W = rng.standard_normal((20, 70)).astype(np.float32)
    w = na.quantize(W)
    x = rng.standard_normal((18, 70)).astype(np.float32)
    x[3] = 0.0
    x[5, 7] = np.nan
    x[6, 1] = np.inf
    x[7] *= 1e-30
    y = na.linear(x, w, activation_quant="int8")
    assert np.isnan(y[5]).all() and np.isnan(y[6]).all()
    assert (y[3] == 0).all()
    ok = [i for i in range(18) if i not in (5, 6)]
    ref = ref_linear_w8a8(x[ok], w)
    for row, want in zip(ok, ref, strict=True):  # row by row: the tiny row's error would hide in a norm
        parity(y[row], want, rtol=1e-5)


@needs_amx
@pytest.mark.parametrize("symmetric", [True, False], ids=["sym", "asym"])
def test_per_channel_reduction_longer_than_an_int32_sum_can_hold(amx_on, symmetric):
    """127 * 127 * K passes 2**31 at K = 133,144: the kernel sums segments of 131,072 features in int32 and
    adds the segments in float; with zero points a segment's corrected sum (127 * 255 per feature) passes
    2**31 too, and is formed in int64."""
    k = 140_000
    w = na.quantize(np.ones((16, k), np.float32), symmetric=symmetric)
    x = np.ones((16, k), np.float32)
    assert _amx.eligible(w, 16)
    np.testing.assert_allclose(na.linear(x, w, activation_quant="int8"), k, rtol=1e-6)
    x[:, ::2] = -1.0
    np.testing.assert_allclose(na.linear(x, w, activation_quant="int8"), 0.0, atol=1e-2)


@needs_amx
def test_eight_python_threads_at_once(rng, amx_on):
    weights = [na.quantize(rng.standard_normal((48, 130)).astype(np.float32), group_size=g)
               for g in (None, 64, None, 128)]
    xs = [rng.standard_normal((16 + 7 * i, 130)).astype(np.float32) for i in range(8)]
    want = [na.linear(x, weights[i % 4], activation_quant="int8") for i, x in enumerate(xs)]
    errors = []

    def work(i):
        try:
            for _ in range(20):
                y = na.linear(xs[i], weights[i % 4], activation_quant="int8")
                if not np.array_equal(y, want[i]):
                    errors.append((i, float(np.abs(y - want[i]).max())))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append((i, repr(exc)))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors


def test_generic_compile_target_never_uses_amx():
    """Portable caches (NUMBA_CPU_NAME=generic) must never hold an AMX kernel."""
    env = dict(os.environ, NUMBA_CPU_NAME="generic")
    code = "from numaccel.plan import amx as _amx; print(_amx.compiles_for_amx(), _amx.usable())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


def test_a_refused_permission_falls_back_with_one_warning(monkeypatch, rng):
    monkeypatch.setattr(_amx, "_verdict", None)
    monkeypatch.setattr(_amx, "compiles_for_amx", lambda: True)
    monkeypatch.setattr(_amx, "_request_permission", lambda: "arch_prctl(ARCH_REQ_XCOMP_PERM) failed: refused")
    w = na.quantize(rng.standard_normal((16, 64)).astype(np.float32))
    x = rng.standard_normal((32, 64)).astype(np.float32)
    with pytest.warns(RuntimeWarning, match="AMX is present but not usable .*refused.*VNNI"):
        y = na.linear(x, w, activation_quant="int8")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not _amx.usable()
        np.testing.assert_array_equal(na.linear(x, w, activation_quant="int8"), y)
    with pytest.raises(RuntimeError, match="AMX is not usable"):
        _amx.linear_w8a8(w, x, np.empty((32, 16), np.float32))


@needs_amx
def test_a_fresh_process_asks_for_the_permission_itself():
    """exec clears the tile permission (a Dask worker, a multiprocessing spawn): the first W8A8 call of a
    new interpreter asks for it, and the result matches the VNNI path."""
    code = (
        "import numpy as np, numaccel as na\n"
        "from numaccel import _config\n"
        "from numaccel.plan import amx as _amx\n"
        "rng = np.random.default_rng(0)\n"
        "w = na.quantize(rng.standard_normal((40, 130)).astype(np.float32))\n"
        "x = rng.standard_normal((33, 130)).astype(np.float32)\n"
        "assert _amx._verdict is None\n"
        "y = na.linear(x, w, activation_quant='int8')\n"
        "assert _amx._verdict is True\n"
        "_config.INT8_USE_AMX = False\n"
        "z = na.linear(x, w, activation_quant='int8')\n"
        "print(float(np.abs(y - z).max() / np.abs(z).max()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert float(out.stdout.strip()) < 1e-6


@pytest.mark.parametrize("n, k", [(16, 64), (40, 130), (33, 200)])
def test_packed_tiles_start_on_cache_lines_and_hold_the_vnni_layout(rng, n, k):
    """The packed B tiles (and every A-tile buffer) start on a 64-byte boundary, so no tile row straddles
    two cache lines; byte ``64 r + 4 c + i`` of tile (j, t) is ``q[16 j + c, 64 t + 4 r + i]``, zero past N, K."""
    w = na.quantize(rng.standard_normal((n, k)).astype(np.float32))
    p = _amx._Packed(w)
    assert p.wp.ctypes.data % 64 == 0 and p.wp.flags.c_contiguous
    nb, kt = 2 * -(-n // 32), -(-k // 64)
    tiles = p.wp.reshape(nb, kt, 16, 16, 4)
    q = np.zeros((16 * nb, 64 * kt), np.int8)
    q[:n, :k] = w.qweight
    for j, t, r, c, i in [(0, 0, 0, 0, 0), (nb - 1, kt - 1, 15, 15, 3), (0, kt - 1, 3, 7, 1), (nb - 1, 0, 9, 2, 2)]:
        assert tiles[j, t, r, c, i] == q[16 * j + c, 64 * t + 4 * r + i]
    np.testing.assert_array_equal(tiles.transpose(0, 3, 1, 2, 4).reshape(16 * nb, 64 * kt), q)
    for shape, dtype in [((3, 5, 16, 64), np.int8), (7, np.float32), ((2, 3), np.int32)]:
        a = aligned_empty(shape, dtype)
        assert a.ctypes.data % 64 == 0 and a.flags.c_contiguous and a.dtype == dtype
        assert a.shape == ((shape,) if isinstance(shape, int) else shape)
