"""Do numaccel's batch-1 calls slow down once torch has run in the process?

    python bench/torch_after.py

Times int8 and CSR 90 % ``linear`` on 4096 x 4096 weights (batch 1, medians of 200 back-to-back calls)
before torch is imported, after the import, and three times after one ``torch.nn.Linear(4096, 4096)``
forward call, half a second apart. Needs torch (``pip install torch==2.13.0``).
"""

from __future__ import annotations

import statistics
import time

import numpy as np

import numaccel as na
from numaccel import _config


def _median_us(x, w, n=200) -> float:
    na.linear(x, w)
    v = []
    for _ in range(n):
        t0 = time.perf_counter()
        na.linear(x, w)
        v.append(time.perf_counter() - t0)
    return statistics.median(v) * 1e6


def main() -> None:
    rng = np.random.default_rng(0)
    W = rng.standard_normal((4096, 4096), dtype=np.float32)
    q, s = na.quantize(W), na.prune(W, 0.9)
    x = rng.standard_normal((1, 4096), dtype=np.float32)
    print(f"host: {_config.cpu_model()}; int8 and CSR 90 %, 4096 x 4096, batch 1, median of 200 calls")
    print(f"before torch: int8 {_median_us(x, q):.0f} us, csr {_median_us(x, s):.0f} us")
    import torch

    print(f"after import: int8 {_median_us(x, q):.0f} us, csr {_median_us(x, s):.0f} us")
    lin = torch.nn.Linear(4096, 4096)
    with torch.no_grad():
        lin(torch.ones(1, 4096))
    for k in range(3):
        time.sleep(0.5)
        print(f"after a torch call (+{(k + 1) * 0.5:.1f} s): int8 {_median_us(x, q):.0f} us, "
              f"csr {_median_us(x, s):.0f} us")


if __name__ == "__main__":
    main()
