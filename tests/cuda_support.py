"""What the CUDA test modules share: the ``cuda`` module (or None), their marks and a simulator speed-up.

Under the simulator (tests/conftest.py sets NUMBA_ENABLE_CUDASIM unless NUMACCEL_REAL_GPU=1) ``cuda`` is
the simulator; on a GPU machine it is numba-cuda itself; it is None where numba-cuda is missing or no
device can run, and then the CUDA tests are skipped.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
import traceback

import numpy as np
import pytest


def _cuda_or_none():
    if importlib.util.find_spec("numba_cuda") is None:
        return None
    from numba import cuda

    return cuda if cuda.is_available() else None


def _lock_simulator_shared_arrays() -> None:
    """Make the simulator's ``cuda.shared.array`` safe for the block's threads.

    The simulator runs each thread of a block as a Python thread and finds a block's shared array by the
    calling line: ``get`` it, and if absent make one and store it. Two threads switched between those two
    steps (likelier with the short switch interval of ``fast_simulator``) each make their own array, so
    they no longer share memory and a kernel reads values it never wrote (a rare wrong result). The same
    steps under a lock.
    """
    from numba.cuda.simulator import kernelapi

    cls = kernelapi.FakeCUDAShared
    if getattr(cls, "_numaccel_locked", False):
        return
    unlocked = cls.array
    lock = threading.Lock()

    def array(self, shape, dtype, *args, **kwargs):
        if shape == 0 or args or kwargs:  # dynamic shared memory (one buffer), or what the original refuses
            return unlocked(self, shape, dtype, *args, **kwargs)
        if isinstance(dtype, kernelapi.types.Type):
            dtype = kernelapi.numpy_support.as_dtype(dtype)
        caller = traceback.extract_stack(sys._getframe())[-2][0:2]
        with lock:
            res = self._allocations.get(caller)
            if res is None:
                res = self._allocations[caller] = np.empty(shape, dtype)
        return res

    cls.array = array
    cls._numaccel_locked = True


cuda = _cuda_or_none()
if cuda is not None and os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    _lock_simulator_shared_arrays()

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
