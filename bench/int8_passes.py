"""int8 at large batches: the batch in passes of a few hundred rows against one pass, and dense fp32.

4096 x 4096 per-channel codes, cold weights (copies exceeding twice the host's last-level cache), one
process. Each round runs every variant once, in alternating order; the passes are set through
``numaccel._config.INT8_ROWS_PER_PASS`` (weight-only) and ``INT8_ROWS_PER_PASS_U8`` (W8A8). Weight-only
batches also run variant "blas" of choice ``int8-panels`` (blocks of the weight dequantized to float32,
multiplied in OpenBLAS) where it can run; the pass variants force the panel kernels. Prints the host, then
per batch and variant the median time with its range and the median of the per-round ratios of the first
variant's time to this one's. The pass variants compute the same products: the script checks that their
results are equal bit for bit, and that "blas" is within float32 rounding of them.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/int8_passes.py [--w8a8] [BATCH ...]
        (default: 512 1024 2048; weight-only against dense numaccel.linear, which runs NumPy's BLAS)
"""

from __future__ import annotations

import sys
import time

import numpy as np

import numaccel as na
from numaccel import _config
from numaccel.benchmarks import host
from numaccel.plan import int8 as plan_int8
from numaccel.plan import wisdom

ONE_PASS = 1 << 30


def main(batches, w8a8: bool) -> None:
    rng = np.random.default_rng(0)
    n = k = 4096
    W = rng.standard_normal((n, k), dtype=np.float32)
    q = na.quantize(W)
    qs = [q] + [na.quantize(W) for _ in range(host.cold_copies(q.nbytes) - 1)]
    ds = [W] + [W.copy() for _ in range(host.cold_copies(W.nbytes) - 1)]
    knob = "INT8_ROWS_PER_PASS_U8" if w8a8 else "INT8_ROWS_PER_PASS"
    default = getattr(_config, knob)
    aq = "int8" if w8a8 else None
    print(host.line())
    for b in batches:
        x = rng.standard_normal((b, k), dtype=np.float32)

        panel = "convert" if b >= _config.INT8_CONVERT_MIN_B else "tiles"

        def passes(rows, x=x, panel=panel):
            def run(i):
                setattr(_config, knob, rows)
                try:
                    with wisdom.forced({"int8-panels": panel}):
                        return na.linear(x, qs[i % len(qs)], activation_quant=aq)
                finally:
                    setattr(_config, knob, default)
            return run

        def blas(i, x=x):
            with wisdom.forced({"int8-panels": "blas"}):
                return na.linear(x, qs[i % len(qs)])

        variants = {} if w8a8 else {"dense fp32": lambda i, x=x: na.linear(x, ds[i % len(ds)])}
        variants[f"{'W8A8' if w8a8 else 'int8'} one pass"] = passes(ONE_PASS)
        for rows in sorted({default, default // 2, 2 * default}):
            variants[f"{'W8A8' if w8a8 else 'int8'} passes of {rows}"] = passes(rows)
        if not w8a8 and plan_int8.blas_possible():
            variants["int8 blas (dequantized blocks)"] = blas
        ref = passes(ONE_PASS)(0)
        for name, f in variants.items():
            if "pass" in name and not np.array_equal(f(0), ref):
                raise AssertionError(f"{name} differs from one pass")
            if "blas" in name:
                np.testing.assert_allclose(f(0), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
        names = list(variants)
        times = {m: [] for m in names}
        for r in range(max(6, 4096 // b)):
            for m in names if r % 2 == 0 else names[::-1]:
                t0 = time.perf_counter()
                variants[m](r)
                times[m].append(time.perf_counter() - t0)
        base = np.array(times[names[0]])
        for m in names:
            t = np.array(times[m])
            rr = base / t
            print(f"B={b} {m}: {np.median(t) * 1e3:.1f} ms [{t.min() * 1e3:.1f}-{t.max() * 1e3:.1f}], "
                  f"{2 * b * n * k / np.median(t) / 1e9:.0f} G(FL)OP/s, {names[0]} / this {np.median(rr):.3f} "
                  f"[{rr.min():.3f}-{rr.max():.3f}]", flush=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    w8 = "--w8a8" in args
    main([int(v) for v in args if v != "--w8a8"] or [512, 1024, 2048], w8)
