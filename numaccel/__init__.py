"""numaccel: hand-written Numba kernels for pruned (CSR) and int8 neural-network layers.

NumPy in, NumPy out. See :func:`linear`, :func:`prune`, :func:`quantize` and :mod:`numaccel.formats`.
"""

from . import formats, nn
from ._config import VERSION as __version__
from .compression import compress
from .distillation import distill, kd_loss
from .formats import CSRInt8Weight, CSRWeight, Int8Weight
from .io import load, save
from .ops import linear, spmm
from .optimization import optimize
from .parallel import ShardedWeight, shard
from .pruning import magnitude_mask, prune
from .quantization import quantize
from .training import train
from .tuning import tune

__all__ = ["CSRInt8Weight", "CSRWeight", "Int8Weight", "ShardedWeight", "__version__", "compress", "distill", "formats",
           "kd_loss", "linear", "load", "magnitude_mask", "nn", "optimize", "prune", "quantize", "save", "shard",
           "spmm", "train", "tune"]
