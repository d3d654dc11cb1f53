"""Benchmark session set-up shared by the suites in bench/: the machine facts every result depends on go
into the JSON's ``machine_info`` (threads, threading layer, BLAS configuration, CPU features)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # report.py and friends importable from here


def pytest_benchmark_update_machine_info(config, machine_info):
    import numba

    from numaccel import _config

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
