"""Benchmark session set-up shared by the suites in bench/: the facts every result depends on (threads,
threading layer, BLAS configuration, CPU features, the host and its roofline, measured once per process)
go into the JSON's ``machine_info``; see :mod:`numaccel.benchmarks.plugin` (``NUMACCEL_BENCH_ROOFLINE=0``
skips the roofline, ``quick`` shortens it)."""

from __future__ import annotations

import sys
from pathlib import Path

from numaccel.benchmarks.plugin import pytest_benchmark_update_machine_info  # noqa: F401  (the hook)

sys.path.insert(0, str(Path(__file__).resolve().parent))  # report.py and friends importable from here
