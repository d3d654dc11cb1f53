"""Planners: for each format family, which kernel runs on this host, and how.

Each planner decides, for its format family, which kernel runs on this host, with how many threads,
which tiles and which packed copies. Importing this package registers the execution side of numaccel's
own formats (:func:`numaccel.formats.register`).
"""

from __future__ import annotations

import numpy as np

from ..formats import register
from ..formats.csr import CSRWeight
from ..formats.csr_int8 import CSRInt8Weight
from ..formats.int8 import Int8Weight
from . import csr, csr_int8, dense, int8


def _to_device(weight):
    from .. import _cuda  # numba.cuda is imported only when a device copy is asked for

    return _cuda.to_device(weight)


register(np.ndarray, name="dense", linear=dense.linear)
register(CSRWeight, name="csr", linear=csr.linear, spmm=csr.matmul, to_device=_to_device)
register(Int8Weight, name="int8", linear=int8.linear, to_device=_to_device, quant=("int8",))
register(CSRInt8Weight, name="csr-int8", linear=csr_int8.linear, spmm=csr_int8.matmul, to_device=_to_device,
         quant=("int8",))

__all__ = ["csr", "csr_int8", "dense", "int8"]
