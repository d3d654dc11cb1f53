"""numaccel: hand-written Numba kernels for pruned (CSR) and int8 neural-network layers.

NumPy in, NumPy out. See ``numaccel.linear``, ``numaccel.prune``, ``numaccel.quantize``.
"""

from . import nn
from .compress import compress
from .distill import distill, kd_loss
from .io import load, save
from .linear import linear
from .parallel import ShardedWeight, shard
from .quant import Int8Weight, quantize
from .sparse import CSRWeight, magnitude_mask, prune, spmm
from .train import train

__version__ = "0.1.0"

__all__ = ["CSRWeight", "Int8Weight", "quantize", "linear", "magnitude_mask", "prune", "spmm", "__version__",
           "ShardedWeight", "shard", "nn", "compress", "distill", "kd_loss", "load", "save", "train"]
