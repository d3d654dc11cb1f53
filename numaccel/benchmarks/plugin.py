"""The pytest plugin of the benchmark suites: the facts every result depends on, in the JSON's ``machine_info``.

``bench/conftest.py`` uses it for the suites in ``bench/``; ``numaccel bench`` loads it with
``-p numaccel.benchmarks.plugin``. It records Numba's version, threads and threading layer, the CSR kernel
family, the OpenBLAS environment, the BLAS libraries (with threadpoolctl, where installed), the host
(:func:`numaccel.benchmarks.host.describe`) and its roofline (:func:`numaccel.benchmarks.roofline.measure`),
measured once per process. The environment variable ``NUMACCEL_BENCH_ROOFLINE`` chooses the roofline:
``0`` skips it, ``quick`` takes the short run (also with ``NUMACCEL_BENCH_QUICK=1``), anything else the
full one. Importing this module imports neither pytest nor pytest-benchmark.
"""

from __future__ import annotations

import os

__all__ = ["pytest_benchmark_update_machine_info", "roofline_mode", "update_machine_info"]

_ROOFLINE: dict = {}  # mode -> the measurement, once per process


def roofline_mode() -> str:
    """Return ``"off"``, ``"quick"`` or ``"full"``, from ``NUMACCEL_BENCH_ROOFLINE`` and ``NUMACCEL_BENCH_QUICK``.

    Returns
    -------
    str
        The roofline this process records.

    Examples
    --------
    >>> from numaccel.benchmarks import plugin
    >>> plugin.roofline_mode() in ("off", "quick", "full")
    True
    """
    value = os.environ.get("NUMACCEL_BENCH_ROOFLINE", "").strip().lower()
    if value in ("0", "off", "no", "false"):
        return "off"
    if value == "quick" or os.environ.get("NUMACCEL_BENCH_QUICK") == "1":
        return "quick"
    return "full"


def update_machine_info(machine_info: dict) -> dict:
    """Add the facts every figure depends on to ``machine_info`` (in place) and return it.

    Parameters
    ----------
    machine_info : dict
        pytest-benchmark's machine information.

    Returns
    -------
    dict
        ``machine_info`` with ``numba``, ``numba_threads``, ``threading_layer``, ``avx512``,
        ``csr_register_tiles``, ``openblas_env``, ``blas`` (where threadpoolctl is installed), ``host`` and,
        unless ``NUMACCEL_BENCH_ROOFLINE=0``, ``roofline``.
    """
    import numba

    from .. import _config
    from . import host

    machine_info["numba"] = numba.__version__
    machine_info["numba_threads"] = numba.get_num_threads()
    machine_info["threading_layer"] = _config.threading_layer()
    machine_info["avx512"] = "avx512f" in _config.cpu_features()
    machine_info["csr_register_tiles"] = _config.CSR_USE_TILES
    machine_info["openblas_env"] = {
        k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS")
        if k in os.environ
    }
    try:
        from threadpoolctl import threadpool_info

        machine_info["blas"] = [
            {k: d.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
            for d in threadpool_info()
        ]
    except ImportError:
        pass
    machine_info["host"] = host.describe()
    mode = roofline_mode()
    if mode != "off":
        if mode not in _ROOFLINE:
            from . import roofline

            _ROOFLINE[mode] = roofline.measure(quick=mode == "quick")
        machine_info["roofline"] = _ROOFLINE[mode]
    return machine_info


def pytest_benchmark_update_machine_info(config, machine_info):
    """pytest-benchmark hook: :func:`update_machine_info`."""
    update_machine_info(machine_info)
