"""numaccel calls alternating with the user's own NumPy products, call by call, in one process.

A user's code may call ``x @ W.T`` (NumPy's OpenBLAS, with its own threads) between numaccel calls. After
each call both thread pools spin on the cores for a while (docs/performance.md, "Dense layers beside
numaccel layers"), so the next call of the other library waits for a core. This script times, for batch-1
products on hot float32 weights of N x N and their int8 form, in a fresh process each:

- ``numpy``: NumPy's ``x @ W.T`` alone; ``int8``: ``numaccel.linear`` on the int8 weight alone;
- ``numpy+int8``: the two alternating call by call;
- ``na-dense+int8``: the same with the dense product through ``numaccel.linear(x, W)`` (numaccel's dense
  path, on Numba's threads);
- ``numpy+int8, spin off``: ``numpy+int8`` with ``GOMP_SPINCOUNT=0 OPENBLAS_THREAD_TIMEOUT=4`` in the
  environment (read when the libraries load, so only in a fresh process); ``int8, spin off``: what that
  costs numaccel alone.

Each figure is the median of 2000 calls after 200 warm-up calls.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/interleaved_numpy.py [N ...]   (default 1024 4096)
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

SPIN_OFF = {"GOMP_SPINCOUNT": "0", "OPENBLAS_THREAD_TIMEOUT": "4"}
CASES = [("numpy", "numpy", {}), ("int8", "int8", {}), ("numpy+int8", "numpy,int8", {}),
         ("na-dense+int8", "na-dense,int8", {}),
         ("numpy+int8, spin off", "numpy,int8", SPIN_OFF), ("int8, spin off", "int8", SPIN_OFF)]


def child(sel: str, n: int) -> None:
    import numpy as np

    import numaccel as na
    from numaccel.benchmarks import host

    rng = np.random.default_rng(0)
    w = rng.standard_normal((n, n), dtype=np.float32)
    q = na.quantize(w)
    x = rng.standard_normal((1, n), dtype=np.float32)
    out = np.empty((1, n), np.float32)
    fs = {"numpy": lambda: np.matmul(x, w.T, out=out), "na-dense": lambda: na.linear(x, w, out=out),
          "int8": lambda: na.linear(x, q, out=out)}
    keys = sel.split(",")
    for _ in range(200):
        for k in keys:
            fs[k]()
    t = {k: [] for k in keys}
    for _ in range(2000):
        for k in keys:
            t0 = time.perf_counter()
            fs[k]()
            t[k].append(time.perf_counter() - t0)
    cells = ", ".join(f"{k} {np.median(v) * 1e6:.1f} us" for k, v in t.items())
    print(f"{cells}  | {host.line()}")


def main(sizes) -> None:
    for n in sizes:
        for name, sel, env in CASES:
            r = subprocess.run([sys.executable, __file__, "--child", sel, str(n)], env={**os.environ, **env},
                               capture_output=True, text=True, check=True)
            line = r.stdout.strip().splitlines()[-1]
            cells, hostline = line.split("  | ")
            print(f"N={n} {name}: {cells}", flush=True)
    print(hostline)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], int(sys.argv[3]))
    else:
        main([int(v) for v in sys.argv[1:]] or [1024, 4096])
