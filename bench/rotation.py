"""The weight rotation of the suites: :mod:`numaccel.benchmarks.rotation`, importable from bench/."""
from numaccel.benchmarks.rotation import *  # noqa: F403
