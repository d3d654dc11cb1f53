"""Benchmark JSON files to Markdown tables and plots: :mod:`numaccel.benchmarks.report` (its docstring has the usage).

    python bench/report.py bench/results/csr.json [more.json ...] --out bench/results/csr
"""
from numaccel.benchmarks.report import *  # noqa: F403
from numaccel.benchmarks.report import _sort_key, main  # noqa: F401  (bench/compare.py imports _sort_key)

if __name__ == "__main__":
    raise SystemExit(main())
