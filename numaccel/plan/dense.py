"""Dense weights: BLAS through ``numpy.matmul``."""

from __future__ import annotations

import numpy as np

__all__ = ["linear"]


def linear(w: np.ndarray, x: np.ndarray, out: np.ndarray, quant) -> None:
    """``out = x @ w.T`` (BLAS) for validated ``x`` (B, K) and ``out`` (B, N) of the result dtype."""
    if quant is not None:
        raise ValueError(f"activation_quant={quant!r} needs an Int8Weight; dense weights use None")
    np.matmul(x, w.T, out=out)
