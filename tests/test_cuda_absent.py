"""Without CUDA, numaccel still imports and every CPU feature works, and ``device="cuda"`` raises a
``RuntimeError`` that says why: numba-cuda missing, no driver, no NVVM, or no GPU.

Each case runs in a fresh interpreter with the simulator off (the test session itself runs with
``NUMBA_ENABLE_CUDASIM=1``, which Numba reads once at import).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Run by the script for each case, after the CPU checks: how CUDA is made absent.
SETUPS = {
    # numba-cuda not installed: a None entry in sys.modules makes find_spec and import report it missing
    "no-numba-cuda": "import sys; sys.modules['numba_cuda'] = None",
    # the driver library cannot be loaded: real on a machine without one; on a GPU machine the driver's
    # state is set to what numba-cuda records when it finds no driver library
    "no-driver": textwrap.dedent("""
        from numba.cuda.cudadrv import driver as drv
        if drv.driver.initialization_error is None:
            drv.driver.is_initialized = True
            drv.driver.initialization_error = drv.DRIVER_NOT_FOUND_MSG
    """),
    # the driver loads, NVVM does not
    "no-nvvm": textwrap.dedent("""
        from numba import cuda
        from numba.cuda.cudadrv import nvvm
        cuda.is_available = lambda: False
        cuda.cuda_error = lambda: None
        nvvm.is_available = lambda: False
    """),
    # the driver and NVVM load, but there is no device
    "no-device": textwrap.dedent("""
        from numba import cuda
        from numba.cuda.cudadrv import nvvm
        cuda.is_available = lambda: False
        cuda.cuda_error = lambda: None
        nvvm.is_available = lambda: True
    """),
}
MESSAGES = {
    "no-numba-cuda": "needs the numba-cuda package",
    "no-driver": "needs an NVIDIA driver",
    "no-nvvm": "not NVVM",
    "no-device": "no usable GPU",
}

SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import numaccel as na

    W = np.array([[1.0, 0.0, 2.0], [0.0, 3.0, 0.0]], dtype=np.float32)
    x = np.ones((2, 3), dtype=np.float32)
    y_csr = na.linear(x, na.prune(W, 0.5))
    y_int8 = na.linear(x, na.quantize(W))
    assert np.allclose(y_csr, x @ W.T) and np.allclose(y_int8, x @ W.T, rtol=1e-2)
    cuda_mods = [m for m in sys.modules if m == "numba.cuda" or m.startswith("numba.cuda.")]
    assert not cuda_mods, f"import numaccel and CPU calls imported {cuda_mods[:3]}"
    SETUP
    for call in (lambda: na.linear(x, na.prune(W, 0.5), device="cuda"),
                 lambda: na.quantize(W).to_device(),
                 lambda: na.spmm(na.prune(W, 0.5), x.T, device="cuda")):
        try:
            call()
        except RuntimeError as exc:
            print("RuntimeError:", exc)
        else:
            raise SystemExit("device='cuda' did not raise")
""")


@pytest.mark.parametrize("case", list(SETUPS))
def test_cpu_works_and_cuda_raises(case):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    prefix, setup = (SETUPS[case], "") if case == "no-numba-cuda" else ("", SETUPS[case])
    script = prefix + "\n" + SCRIPT.replace("SETUP\n", setup.strip() + "\n")
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("RuntimeError:")]
    assert len(lines) == 3, res.stdout
    for line in lines:
        assert MESSAGES[case] in line and "device='cuda'" in line, line
