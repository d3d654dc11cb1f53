import os

# Numba reads this once, when it is first imported: set it before anything imports numba so the CUDA
# tests run under the simulator on machines without a GPU. CPU @njit kernels are unaffected.
if os.environ.get("NUMACCEL_REAL_GPU") != "1":
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

# The first example of a property test may trigger a Numba compile.
settings.register_profile("numaccel", deadline=None, max_examples=60)
settings.load_profile("numaccel")


@pytest.fixture
def rng():
    return np.random.default_rng(20261127)


def assert_parity(out, ref, *, rtol=None):
    """Shape, dtype-appropriate relative error ``||out - ref|| / ||ref||``, and every element finite/written."""
    out = np.asarray(out)
    ref = np.asarray(ref, dtype=np.float64)
    assert out.shape == ref.shape, (out.shape, ref.shape)
    if rtol is None:
        rtol = 1e-5 if out.dtype == np.float32 else 1e-12
    assert not np.isnan(out).any() or np.isnan(ref).any(), "an output element was not written (NaN left)"
    denom = np.linalg.norm(ref)
    err = np.linalg.norm(out.astype(np.float64) - ref)
    if denom == 0:
        assert err == 0, f"expected exact zeros, got max |out| = {np.abs(out).max()}"
    else:
        assert err / denom <= rtol, f"relative error {err / denom:.3g} > {rtol:g}"


@pytest.fixture
def parity():
    return assert_parity
