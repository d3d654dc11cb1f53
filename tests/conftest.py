import os

# Numba reads this once, when it is first imported: set it before anything imports numba so the CUDA
# tests run under the simulator on machines without a GPU. CPU @njit kernels are unaffected.
if os.environ.get("NUMACCEL_REAL_GPU") != "1":
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
# The planner's wisdom file (numaccel.tune) would make kernel choices depend on what this machine's user
# tuned: the tests read none unless a test points NUMACCEL_WISDOM at a file of its own.
os.environ["NUMACCEL_WISDOM"] = "off"

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

# Hypothesis: the default profile is derandomized (the same examples on every run and every machine, no
# example database), so the suite's verdict does not depend on the run; `--hypothesis-profile explore`
# searches afresh each run, with more examples, for local hunting. The first example of a property test may
# trigger a Numba compile, so no deadline.
settings.register_profile("numaccel", deadline=None, max_examples=60, derandomize=True, database=None,
                          print_blob=True)
settings.register_profile("explore", deadline=None, max_examples=500, derandomize=False, print_blob=True)
settings.load_profile("numaccel")


@pytest.fixture
def rng():
    return np.random.default_rng(20261127)


def assert_parity(out, ref, *, rtol=None, dtype=None, exact=False):
    """Compare a kernel's result with its float64 oracle.

    Checks the shape; the dtype (``dtype`` when given, else any float32/float64 result); that every
    element was written (no NaN left from a NaN-filled ``out`` unless the oracle has NaN there); and the
    relative error ``||out - ref|| / ||ref||`` against ``rtol`` (1e-5 for float32, 1e-12 for float64).
    ``exact=True`` is for integer codes and integer accumulators: ``out`` must be of an integer dtype and
    equal ``ref`` elementwise.
    """
    out = np.asarray(out)
    ref = np.asarray(ref)
    assert out.shape == ref.shape, (out.shape, ref.shape)
    if dtype is not None:
        assert out.dtype == np.dtype(dtype), f"dtype {out.dtype}, expected {np.dtype(dtype)}"
    if exact:
        assert out.dtype.kind in "iu", f"exact parity is for integer results, got {out.dtype}"
        assert ref.dtype.kind in "iu" or np.array_equal(ref, np.rint(ref)), "the oracle is not integral"
        mismatch = out.astype(np.int64) != ref.astype(np.int64)
        assert not mismatch.any(), (
            f"{int(mismatch.sum())} of {out.size} elements differ; first at "
            f"{tuple(int(i) for i in np.argwhere(mismatch)[0])}"
        )
        return
    assert out.dtype in (np.float32, np.float64), f"a float32 or float64 result expected, got {out.dtype}"
    ref = ref.astype(np.float64)
    if rtol is None:
        rtol = 1e-5 if out.dtype == np.float32 else 1e-12
    unwritten = np.isnan(out) & ~np.isnan(ref)
    assert not unwritten.any(), f"{int(unwritten.sum())} output elements were not written (NaN left)"
    denom = np.linalg.norm(ref)
    err = np.linalg.norm(out.astype(np.float64) - ref)
    if denom == 0:
        assert err == 0, f"expected exact zeros, got max |out| = {np.abs(out).max()}"
    else:
        assert err / denom <= rtol, f"relative error {err / denom:.3g} > {rtol:g}"


@pytest.fixture
def parity():
    return assert_parity


@pytest.fixture(params=["serial", "parallel"])
def dispatch(request, monkeypatch):
    """Force the CSR kernels' calling-thread path or their parallel kernels whatever the size."""
    from numaccel import _config

    monkeypatch.setattr(_config, "CSR_SERIAL_WORK", 1 << 62 if request.param == "serial" else -1)
    return request.param


def run_in_threads(work, count=2):
    """Run ``work(i)`` for i in range(count), each on its own Python thread at once, and wait for all."""
    import threading

    threads = [threading.Thread(target=work, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def make_weight(rng, n, k, density, *, empty_rows=True):
    """A random CSRWeight of about ``density`` nonzeros, rows 1 and -1 empty (for n > 2) unless told not to."""
    import numaccel as na

    W = rng.standard_normal((n, k)).astype(np.float32)
    W[rng.random((n, k)) >= density] = 0
    if empty_rows and n > 2:
        W[1] = 0
        W[-1] = 0
    return na.CSRWeight.from_dense(W)
