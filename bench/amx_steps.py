"""What bounds the AMX inner loop on this host: one thread, tiles from L1 or L2, nanoseconds per ``tdpbssd``.

    python bench/amx_steps.py            # about a minute; exits 1 on a host without usable AMX

Prints, for buffers of 32 KiB (L1) and 256 KiB (L2) of A and B tiles:

* ``2x2``: the kernel's step (``_steps_2x2``: 2 A and 2 B tile loads, 4 products) with 64-byte aligned
  buffers, and ``2x2 misaligned`` with buffers 16 bytes off a cache line (NumPy's own guarantee);
* ``grouped``: the same step with its four loads issued before its four products;
* ``independent``: two tile loads per four products that do not read the loaded tiles;
* ``dots``: the four products alone, tiles resident;

and the bandwidth of tile loads alone by footprint.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from numba import njit

from numaccel.plan import amx

if not amx.usable():
    print("no usable AMX on this host")
    sys.exit(1)

from numaccel._kernels.amx_x86 import (  # noqa: E402  (compiled only where AMX is usable)
    TILE_BYTES,
    _dot_00,
    _dot_01,
    _dot_10,
    _dot_11,
    _load_a0,
    _load_a1,
    _load_b0,
    _load_b1,
    _load_config,
    _release,
    _steps_2x2,
    _tile_config,
    _zero_c0,
    _zero_c1,
    _zero_c2,
    _zero_c3,
)


@njit(inline="always")
def _start():
    _load_config(_tile_config())
    _zero_c0()
    _zero_c1()
    _zero_c2()
    _zero_c3()


@njit(nogil=True)
def step_2x2(wp, qx, kt, reps):
    _start()
    for _ in range(reps):
        _steps_2x2(wp, 0, kt * TILE_BYTES, qx, 0, kt * TILE_BYTES, 0, kt, (0, 0, 0))
    _release()


@njit(nogil=True)
def grouped(wp, qx, kt, reps):
    _start()
    for _ in range(reps):
        for t in range(kt):
            _load_a0(qx, t * TILE_BYTES, 64)
            _load_a1(qx, (kt + t) * TILE_BYTES, 64)
            _load_b0(wp, t * TILE_BYTES, 64)
            _load_b1(wp, (kt + t) * TILE_BYTES, 64)
            _dot_00()
            _dot_01()
            _dot_10()
            _dot_11()
    _release()


@njit(nogil=True)
def independent(wp, qx, kt, reps):
    _start()
    _load_a0(qx, 0, 64)
    _load_b0(wp, 0, 64)
    for _ in range(reps):
        for t in range(kt):
            _load_a1(qx, (kt + t) * TILE_BYTES, 64)
            _load_b1(wp, (kt + t) * TILE_BYTES, 64)
            _dot_00()
            _dot_00()
            _dot_00()
            _dot_00()
    _release()


@njit(nogil=True)
def dots(wp, qx, kt, reps):
    _start()
    _load_a0(qx, 0, 64)
    _load_a1(qx, TILE_BYTES, 64)
    _load_b0(wp, 0, 64)
    _load_b1(wp, TILE_BYTES, 64)
    for _ in range(reps):
        for _t in range(kt):
            _dot_00()
            _dot_01()
            _dot_10()
            _dot_11()
    _release()


@njit(nogil=True)
def loads(buf, ntiles, reps):
    _load_config(_tile_config())
    for _ in range(reps):
        for t in range(0, ntiles, 4):
            _load_a0(buf, t * TILE_BYTES, 64)
            _load_a1(buf, (t + 1) * TILE_BYTES, 64)
            _load_b0(buf, (t + 2) * TILE_BYTES, 64)
            _load_b1(buf, (t + 3) * TILE_BYTES, 64)
    _release()


def _buffer(nbytes, offset, rng):
    buf = np.empty(nbytes + 128, np.int8)
    start = -buf.ctypes.data % 64 + offset
    out = buf[start:start + nbytes]
    out[:] = rng.integers(-127, 128, nbytes, dtype=np.int8)
    return out


def _median_seconds(f, args, repeats=5):
    f(*args[:-1], 1)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f(*args)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main():
    rng = np.random.default_rng(0)
    cases = [("2x2", step_2x2, 0), ("2x2 misaligned", step_2x2, 16), ("grouped", grouped, 0),
             ("independent", independent, 0), ("dots", dots, 0)]
    for rnd in range(2):
        for kt in (8, 64):  # 2 * kt KiB of A and of B: 32 KiB in all (L1) or 256 KiB (L2)
            reps = 100000 // kt
            row = []
            for name, f, off in cases:
                wp, qx = _buffer(2 * kt * TILE_BYTES, off, rng), _buffer(2 * kt * TILE_BYTES, off, rng)
                per = _median_seconds(f, (wp, qx, kt, reps)) / (reps * kt * 4)
                row.append(f"{name} {per * 1e9:.1f}")
            print(f"round {rnd + 1}, {4 * kt} KiB of tiles, ns per tdpbssd: " + ", ".join(row), flush=True)
    buf = _buffer(1 << 20, 0, rng)
    row = []
    for kib in (16, 32, 40, 64, 256, 1024):
        reps = (1 << 24) // (kib * 1024)
        row.append(f"{kib} KiB {kib * 1024 * reps / _median_seconds(loads, (buf, kib, reps)) / 1e9:.0f} GB/s")
    print("tile loads alone, by footprint: " + ", ".join(row))


if __name__ == "__main__":
    main()
