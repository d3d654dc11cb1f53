"""The CUDA side of ``linear`` and ``spmm``: the runtime probe, the device-resident weights, the kernel
launchers and the entry points.

- ``runtime``: ``_require_cuda``, which returns ``numba.cuda`` or raises ``RuntimeError`` saying why CUDA
  cannot run here (no numba-cuda, no driver, no NVVM, no device);
- ``formats``: :class:`DeviceCSRWeight`, :class:`DeviceInt8Weight`, :class:`DeviceCSRInt8Weight` and the
  cache of device copies;
- ``launch``: grid shapes and kernel sequences for ``numaccel._kernels.csr_cuda`` / ``int8_cuda`` /
  ``csr_int8_cuda``;
- ``api``: :func:`to_device`, :func:`linear`, :func:`spmm` and ``call``, the handler registered for the
  device weights.

Importing this package registers the device weights as the formats ``"cuda-csr"``, ``"cuda-int8"`` and
``"cuda-csr-int8"`` (``device="cuda"``). It is imported only when something asks for the GPU (``device="cuda"``,
``to_device``), and importing it does not import ``numba.cuda``: the first entry point does.
The computation is in float32; other dtypes are refused with a ``TypeError`` (no silent downcast).
"""

from __future__ import annotations

from .. import formats as _formats
from .api import call, linear, spmm, to_device
from .formats import DeviceCSRInt8Weight, DeviceCSRWeight, DeviceInt8Weight

__all__ = ["DeviceCSRInt8Weight", "DeviceCSRWeight", "DeviceInt8Weight", "linear", "spmm", "to_device"]


def _spmm(weight, B, out):
    """The registered ``spmm`` of ``"cuda-csr"`` and ``"cuda-csr-int8"``: ``spmm(weight, B, out)``, arguments
    unvalidated."""
    return spmm(weight, B, out=out)


_formats.register(DeviceCSRWeight, name="cuda-csr", device="cuda", call=call, spmm=_spmm, to_device=to_device)
_formats.register(DeviceInt8Weight, name="cuda-int8", device="cuda", call=call, to_device=to_device,
                  quant=("int8",))
_formats.register(DeviceCSRInt8Weight, name="cuda-csr-int8", device="cuda", call=call, spmm=_spmm,
                  to_device=to_device)
