"""Weight formats: the protocol, the registry, and numaccel's own formats (data and validation only).

See :class:`WeightFormat` for what a format provides and :func:`register` for adding one.
"""

import numpy as np

from ._registry import (
    FormatSpec,
    WeightFormat,
    density,
    from_arrays,
    is_trainable,
    lookup,
    name_of,
    nbytes,
    register,
    registered,
    row_block,
    spec_for,
    spec_of,
    to_arrays,
    to_dense,
    untrainable_reason,
)
from .csr import CSRWeight  # noqa: E402 - after the registry they subclass from
from .csr_int8 import CSRInt8Weight  # noqa: E402
from .int8 import Int8Weight  # noqa: E402

register(np.ndarray, name="dense")

__all__ = [
    "CSRInt8Weight", "CSRWeight", "Int8Weight", "FormatSpec", "WeightFormat", "density", "from_arrays",
    "is_trainable", "lookup",
    "name_of", "nbytes",
    "register", "registered", "row_block", "spec_for", "spec_of", "to_arrays", "to_dense", "untrainable_reason",
]
