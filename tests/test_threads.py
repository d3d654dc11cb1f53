"""CSR kernels called from several Python threads at once, under the default threading layer and under
Numba's ``workqueue`` fallback (where ``_config.kernel_guard`` serialises the calls)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from reference import ref_linear

import numaccel as na
from numaccel import _config

ROOT = Path(__file__).resolve().parents[1]


def test_eight_threads_at_once(rng):
    W = rng.standard_normal((300, 257)).astype(np.float32)
    w = na.prune(W, 0.8)
    xs = [rng.standard_normal((b, 257)).astype(np.float32) for b in (1, 3, 8, 16, 40, 64, 1, 100)]
    refs = [ref_linear(x, w) for x in xs]
    for x in xs:  # compile outside the race
        na.linear(x, w)

    def work(i):
        x = xs[i % len(xs)]
        for _ in range(20):
            y = na.linear(x, w)
        return i, y

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(work, range(16)))
    for i, y in results:
        ref = refs[i % len(xs)]
        assert np.linalg.norm(y - ref) <= 1e-5 * np.linalg.norm(ref)
    assert _config.threading_layer() in ("tbb", "omp", "workqueue")


SCRIPT = textwrap.dedent(
    """
    import numpy as np, numba
    from concurrent.futures import ThreadPoolExecutor
    import numaccel as na
    from numaccel import _config

    rng = np.random.default_rng(0)
    w = na.prune(rng.standard_normal((200, 130)).astype(np.float32), 0.7)
    d = w.to_dense().astype(np.float64)
    xs = [rng.standard_normal((b, 130)).astype(np.float32) for b in (1, 8, 33, 64)]
    for x in xs:
        na.linear(x, w)
    assert numba.threading_layer() == "workqueue", numba.threading_layer()
    assert _config._needs_lock

    def work(i):
        x = xs[i % len(xs)]
        for _ in range(25):
            y = na.linear(x, w)
        ref = x.astype(np.float64) @ d.T
        return float(np.linalg.norm(y - ref) / np.linalg.norm(ref))

    with ThreadPoolExecutor(max_workers=8) as pool:
        errs = list(pool.map(work, range(16)))
    assert max(errs) < 1e-5, errs
    print("workqueue-ok")
    """
)


def test_workqueue_fallback_lock(tmp_path):
    env = dict(os.environ)
    env["NUMBA_THREADING_LAYER"] = "workqueue"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "workqueue-ok" in proc.stdout


def test_num_threads_follows_numba_in_every_python_thread():
    import numba

    total = numba.config.NUMBA_NUM_THREADS
    before = numba.get_num_threads()
    try:
        assert _config.num_threads() == before
        numba.set_num_threads(1)
        assert _config.num_threads() == 1

        def other():  # the count is per Python thread: a new thread starts from the default
            seen = [_config.num_threads() == numba.get_num_threads()]
            numba.set_num_threads(1)
            seen.append(_config.num_threads() == 1)
            return seen

        with ThreadPoolExecutor(max_workers=1) as pool:
            assert pool.submit(other).result() == [True, True]
        numba.set_num_threads(total)
        assert _config.num_threads() == total == numba.get_num_threads()
    finally:
        numba.set_num_threads(before)
