"""Uninitialised arrays whose data starts on a cache line."""

from __future__ import annotations

import numpy as np

LINE = 64


def aligned_empty(shape, dtype=np.int8, align: int = LINE) -> np.ndarray:
    """Return an uninitialised C-contiguous array whose data starts on an ``align``-byte boundary.

    NumPy only promises 16 bytes (large arrays typically start 16 bytes past a page). A 64-byte vector
    that straddles two cache lines costs a second line per load: for a tile row of AMX (Intel Xeon host,
    2 x 2 tile steps in L1 or L2: 38-41 against 40-59 ns per ``tdpbssd``) and for a row of CSR slabs
    (docs/performance.md, "Tunables").

    Examples
    --------
    >>> from numaccel.plan._buffers import aligned_empty
    >>> a = aligned_empty((3, 5), "float32")
    >>> a.shape, a.dtype.name, a.ctypes.data % 64
    ((3, 5), 'float32', 0)
    """
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    buf = np.empty(nbytes + align, dtype=np.uint8)
    off = -buf.ctypes.data % align
    return buf[off:off + nbytes].view(dtype).reshape(shape)
