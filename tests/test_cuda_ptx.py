"""Every CUDA kernel compiles to PTX for sm_90 (H100/H200), and ``ptxas`` assembles it, without a GPU.

The simulator runs kernels as Python and does not type-check them (a shared-array shape written as an
expression, an int64 where int32 is needed, an unsupported call all pass there); compiling for a real
target catches those. The compile runs in a subprocess with the simulator off, because the test session
itself runs with ``NUMBA_ENABLE_CUDASIM=1``. Skipped, with the reason, where NVVM or NVRTC is missing
(NVRTC: ``pip install 'nvidia-cuda-nvrtc==13.*'``; NVVM and ``ptxas`` come with the CUDA toolkit).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP_EXIT = 3

pytestmark = pytest.mark.cuda


def _signatures():
    """(kernel module, kernel name, signature) for every kernel and the argument types its launchers pass."""
    f1c, f1a, f2c, f2a = "float32[::1]", "float32[:]", "float32[:, ::1]", "float32[:, :]"
    i2c = "int32[:, ::1]"
    sigs = []
    for indptr in ("int32[::1]", "int64[::1]"):
        for idx in ("uint16[::1]", "int32[::1]"):
            csr = f"{indptr}, {idx}, {f1c}"
            for x in (f1c, f1a):
                sigs.append(("csr_cuda", "_spmv_csr_cuda", f"void({csr}, {x}, {f1c}, int64, {f1c}, int64)"))
            for b in (f2c, f2a):
                sigs.append(("csr_cuda", "_spmm_csr_cuda", f"void({csr}, {b}, {f1c}, int64, {f2c})"))
            # pruned int8: codes, scales, the int64 scale pointer and the group length
            ci8 = f"{indptr}, {idx}, int8[::1], {f1c}, int64[::1], int64"
            for x in (f1c, f1a):
                sigs.append(("csr_int8_cuda", "_spmv_csr_int8_cuda",
                             f"void({ci8}, {x}, {f1c}, int64, {f1c}, int64)"))
            for b in (f2c, f2a):  # linear passes a C-contiguous transpose; spmm, B as given
                sigs.append(("csr_int8_cuda", "_spmm_csr_int8_cuda", f"void({ci8}, {b}, {f1c}, int64, {f2c})"))
    for a in (f2c, f2a):
        sigs.append(("csr_cuda", "_transpose_cuda", f"void({a}, {f2c})"))
    w = f"{i2c}, {f2c}, {i2c}"
    kmap = "int32[::1]"
    for x in (f1c, f1a):
        sigs.append(("int8_cuda", "_gemv_int8_cuda", f"void({w}, {kmap}, int64, {x}, {f1c}, int64, {f1c})"))
    for x in (f2c, f2a):
        sigs.append(("int8_cuda", "_gemm_int8_cuda", f"void({w}, {kmap}, int64, {x}, {f1c}, int64, {f2c})"))
        sigs.append(("int8_cuda", "_quantize_rows_cuda",
                     f"void({x}, {kmap}, int64, {i2c}, float64[::1], {i2c})"))
    sigs.append(("int8_cuda", "_w8a8_int8_cuda",
                 f"void({w}, int64, {i2c}, float64[::1], {i2c}, {f1c}, int64, {f2c})"))
    return sigs


def _compile_all(workdir: str) -> int:
    """Subprocess body: compile every signature, assemble with ptxas when present, print a JSON report."""
    from numba import cuda

    if not cuda.is_available():
        # Device functions ask the current device for its compute capability while they compile; with
        # no GPU, answer for the target being compiled (this process only compiles).
        import types

        from numba.cuda import dispatcher

        fake = types.SimpleNamespace(compute_capability=(9, 0))
        dispatcher.get_current_device = lambda: fake
    try:
        cuda.compile_ptx(lambda a: None, "void(float32[::1])", cc=(9, 0))
    except Exception as exc:  # noqa: BLE001 - any toolchain failure means "cannot test here"
        reason = " ".join(str(exc).split())[:300]
        print(f"CUDA toolchain unavailable for compile_ptx ({type(exc).__name__}: {reason})")
        return SKIP_EXIT
    import importlib

    ptxas = shutil.which("ptxas")
    report = []
    for mod_name, kernel, sig in _signatures():
        mod = importlib.import_module(f"numaccel._kernels.{mod_name}")
        ptx, _ = cuda.compile_ptx(getattr(mod, kernel).py_func, sig, cc=(9, 0))
        entry = {"kernel": kernel, "sig": sig, "ptx_lines": ptx.count("\n"), "dp4a": "dp4a.s32.s32" in ptx}
        if ptxas:
            path = os.path.join(workdir, f"{kernel}.ptx")
            with open(path, "w") as fh:
                fh.write(ptx)
            res = subprocess.run([ptxas, "-arch=sm_90", "-v", path, "-o", os.devnull],
                                 capture_output=True, text=True, timeout=120)
            entry["ptxas_rc"] = res.returncode
            info = res.stdout + res.stderr
            facts = re.findall(r"Used \d+ registers|\d+ bytes spill stores|\d+ bytes smem", info)
            entry["ptxas"] = "; ".join(facts)
            if res.returncode:
                entry["ptxas"] = info[-2000:]
        report.append(entry)
    print(json.dumps(report))
    return 0


def test_every_kernel_compiles_for_sm90():
    if importlib.util.find_spec("numba_cuda") is None:
        pytest.skip("numba-cuda is not installed")
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0", PYTHONPATH=str(ROOT))
    with tempfile.TemporaryDirectory() as tmp:
        res = subprocess.run([sys.executable, __file__, tmp], capture_output=True, text=True, env=env,
                             cwd=ROOT, timeout=540)
    if res.returncode == SKIP_EXIT:
        pytest.skip(res.stdout.strip() + " ; NVRTC: pip install 'nvidia-cuda-nvrtc==13.*'")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert len(report) == len(_signatures())
    for entry in report:
        assert entry["ptx_lines"] > 10, entry
        assert entry.get("ptxas_rc", 0) == 0, entry
    w8a8 = [e for e in report if e["kernel"] == "_w8a8_int8_cuda"]
    assert w8a8 and all(e["dp4a"] for e in w8a8), "the W8A8 kernel must use the dp4a instruction"


if __name__ == "__main__":
    sys.exit(_compile_all(sys.argv[1]))
