"""What the CUDA test modules share: the ``cuda`` module (or None), their marks and a simulator speed-up.

Under the simulator (tests/conftest.py sets NUMBA_ENABLE_CUDASIM unless NUMACCEL_REAL_GPU=1) ``cuda`` is
the simulator; on a GPU machine it is numba-cuda itself; it is None where numba-cuda is missing or no
device can run, and then the CUDA tests are skipped.
"""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest


def _cuda_or_none():
    if importlib.util.find_spec("numba_cuda") is None:
        return None
    from numba import cuda

    return cuda if cuda.is_available() else None


cuda = _cuda_or_none()

CUDA_MARKS = [
    pytest.mark.cuda,
    pytest.mark.skipif(cuda is None, reason="numba-cuda is missing, or no GPU and no simulator"),
]


@pytest.fixture(autouse=True, scope="module")
def fast_simulator():
    """Shorter thread switches make barrier-heavy kernels several times faster under the simulator."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(2e-4)
    yield
    sys.setswitchinterval(old)


def nan_filled(shape) -> np.ndarray:
    """A float32 ``out`` pre-filled with NaN, so that an element a kernel skipped shows."""
    return np.full(shape, np.nan, dtype=np.float32)
