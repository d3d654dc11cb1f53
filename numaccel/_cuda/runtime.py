"""Whether CUDA can run here: ``_require_cuda`` returns ``numba.cuda`` or raises ``RuntimeError`` saying why not
(no numba-cuda, no driver, no NVVM, no device). ``numba.cuda`` is imported only by the first call."""

from __future__ import annotations

import importlib.util

__all__ = ["_require_cuda"]

_state: dict = {}


def _require_cuda():
    """Return ``numba.cuda`` once CUDA is known to work here; otherwise raise ``RuntimeError`` saying why."""
    cuda = _state.get("cuda")
    if cuda is not None:
        return cuda
    if importlib.util.find_spec("numba_cuda") is None:
        raise RuntimeError(
            "device='cuda' needs the numba-cuda package, which is not installed; "
            "pip install 'numaccel[cuda]' (or use device='cpu')"
        )
    from numba import cuda

    if not cuda.is_available():
        err = cuda.cuda_error()
        if err is not None:
            reason = " ".join(str(err).split())
            raise RuntimeError(
                f"device='cuda' needs an NVIDIA driver, and the CUDA driver could not be loaded ({reason}); "
                f"use device='cpu'"
            )
        try:
            from numba.cuda.cudadrv import nvvm

            has_nvvm = nvvm.is_available()
        except Exception:  # noqa: BLE001 - any failure to find NVVM means it is missing
            has_nvvm = False
        if not has_nvvm:
            raise RuntimeError(
                "device='cuda' found the CUDA driver but not NVVM, the CUDA compiler library; pip install "
                "'numaccel[cuda]' (numba-cuda with the CUDA 13 toolkit wheels) or use device='cpu'"
            )
        raise RuntimeError(
            "device='cuda' found the CUDA driver but no usable GPU (check CUDA_VISIBLE_DEVICES); "
            "use device='cpu'"
        )
    _state["cuda"] = cuda
    return cuda
