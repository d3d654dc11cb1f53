"""Benchmarks that ship with numaccel: the host's facts and ceilings, and the suite behind ``numaccel bench``.

* :mod:`numaccel.benchmarks.host`: the CPU model, logical CPUs, clock, caches and kernel-selecting ISA
  features every figure is read against, and how many weight copies make a rotation "cold";
* :mod:`numaccel.benchmarks.roofline`: the host's own ceilings (cold sgemv bandwidth, float32 FMA peak,
  AVX-512 VNNI and AMX int8 peaks), timed in the same run as the figures;
* :mod:`numaccel.benchmarks.rotation`: the weight rotation every suite times with;
* :mod:`numaccel.benchmarks.report`: pytest-benchmark JSON files to Markdown tables (with each figure's
  fraction of its ceiling) and plots;
* :mod:`numaccel.benchmarks.plugin`: the pytest plugin that records the host and the roofline in a run's
  ``machine_info``;
* :mod:`numaccel.benchmarks.command`: ``numaccel bench`` itself (the rounds, the processes, the table);
* ``suite_headline.py``: the headline cases (CSR 90 %, int8 weight-only and W8A8, batch 1 and 64), a
  pytest-benchmark suite that ``numaccel bench`` runs once per implementation and round.

Only NumPy and Numba are imported when these modules load; pytest, pytest-benchmark, SciPy, torch and
matplotlib are imported by the functions that use them.
"""
