"""Models built from ``numaccel.linear``: ``Linear`` layers, activations, ``Sequential`` and ``MLP``.

A layer holds its weight as a dense ndarray or in any registered weight format (a
:class:`~numaccel.CSRWeight`, an :class:`~numaccel.Int8Weight`, a sharded weight, a format of your own
registered with :func:`numaccel.formats.register`); the forward pass is one ``linear`` call per layer, so
every format runs through the same dispatch. Models are plain Python objects holding NumPy arrays: no
PyTorch is needed to run them.

Submodules: ``layers`` (Linear, ReLU, GELU), ``containers`` (Sequential, MLP), ``torch`` (conversion from
PyTorch modules and state_dicts, behind :meth:`MLP.from_torch`).
"""

from .containers import MLP, Sequential
from .layers import GELU, Linear, ReLU

__all__ = ["GELU", "MLP", "Linear", "ReLU", "Sequential"]
