"""What bounds batch-1 CSR and pruned-int8 here: fetching the sixteen activations of every sixteen nonzeros.

On one thread, sums 2**20 activations picked by random column ids from a 4096-float table (16 KB, in L1):
with bare ``vgatherdps`` (four accumulators), with scalar loads, and with numaccel's own batch-1 inner
loops on uint16 ids: ``gather`` (``csr_cpu._row_dot16_gather``: ids widened, gather, int8 codes converted,
FMA, prefetch) and ``lanes-prefetch`` (``csr_cpu._row_dot16_pf``: four ids per 64-bit load, sixteen loads
inserted into the lanes of a vector, codes or float32 values, FMA, prefetch), the ids streamed (4 MB, 1 MB
as uint16) or held in L1 (16 KB). Prints nanoseconds per element and cycles
per sixteen at the nominal clock; compare the rows of one run (the machine's speed drifts).

    python bench/gather_micro.py
"""

import statistics
import time

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from numaccel._kernels.csr_cpu import _PTR8, _row_dot16_gather, _row_dot16_pf
from numaccel.benchmarks import host

I32, I64 = ir.IntType(32), ir.IntType(64)
V16F = ir.VectorType(ir.FloatType(), 16)
V16I = ir.VectorType(I32, 16)
V16M = ir.VectorType(ir.IntType(1), 16)


@intrinsic
def _gather_sum(typingctx, idx, x, n):
    """Sum of ``x[idx[p]]`` over ``p < n`` (a multiple of 64): one ``vgatherdps`` per sixteen, four chains."""
    sig = types.float32(idx, x, types.int64)

    def codegen(context, builder, signature, args):
        ia = context.make_array(signature.args[0])(context, builder, args[0])
        xa = context.make_array(signature.args[1])(context, builder, args[1])
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(V16F, [V16F, _PTR8, V16I, V16M, I32]),
                                            "llvm.x86.avx512.mask.gather.dps.512")
        accs = [cgutils.alloca_once_value(builder, ir.Constant(V16F, None)) for _ in range(4)]
        base = builder.bitcast(xa.data, _PTR8)
        with cgutils.for_range(builder, builder.ashr(args[2], ir.Constant(I64, 6))) as loop:
            p = builder.shl(loop.index, ir.Constant(I64, 6))
            for a in range(4):
                ptr = builder.gep(ia.data, [builder.add(p, ir.Constant(I64, 16 * a))])
                iv = builder.load(builder.bitcast(ptr, V16I.as_pointer()), align=4)
                g = builder.call(fn, [ir.Constant(V16F, None), base, iv, ir.Constant(V16M, [1] * 16),
                                      ir.Constant(I32, 4)])
                builder.store(builder.fadd(builder.load(accs[a]), g), accs[a])
        vals = [builder.load(a) for a in accs]
        t = builder.fadd(builder.fadd(vals[0], vals[1]), builder.fadd(vals[2], vals[3]))
        return builder.extract_element(t, ir.Constant(I32, 0))

    return sig, codegen


@njit
def gather(idx, x, codes):
    return _gather_sum(idx, x, idx.size)


@njit(fastmath=True)
def scalar(idx, x, codes):
    s0 = s1 = s2 = s3 = np.float32(0)
    for p in range(0, idx.size, 4):
        s0 += x[idx[p]]
        s1 += x[idx[p + 1]]
        s2 += x[idx[p + 2]]
        s3 += x[idx[p + 3]]
    return s0 + s1 + s2 + s3


@njit
def numaccel_int8_row(idx, x, codes):
    return _row_dot16_gather(idx, codes, 0, idx.size, x)


@njit
def numaccel_int8_lanes(idx, x, codes):
    return _row_dot16_pf(idx, codes, 0, idx.size, x)


@njit
def numaccel_fp32_lanes(idx, x, values):
    return _row_dot16_pf(idx, values, 0, idx.size, x)


def main() -> None:
    print(host.line())
    ghz = (host.describe().get("mhz") or 2100.0) / 1000
    rng = np.random.default_rng(0)
    x = rng.standard_normal(4096).astype(np.float32)
    codes = rng.integers(-127, 128, 1 << 20).astype(np.int8)
    values = rng.standard_normal(1 << 20).astype(np.float32)
    idx = rng.integers(0, 4096, 1 << 20).astype(np.int32)
    cases = [("ids streamed", idx), ("ids in L1", idx[: 1 << 12].copy())]
    for name, ids in cases:
        u16 = ids.astype(np.uint16)
        for fn, a, v in ((gather, ids, codes), (scalar, ids, codes), (numaccel_int8_row, u16, codes),
                         (numaccel_int8_lanes, u16, codes), (numaccel_fp32_lanes, u16, values)):
            fn(a, x, v)
            reps = max(1, (1 << 22) // a.size)
            ts = []
            for _ in range(15):
                t0 = time.perf_counter()
                for _ in range(reps):
                    fn(a, x, v)
                ts.append((time.perf_counter() - t0) / reps)
            per16 = statistics.median(ts) / (a.size / 16)
            print(f"{name}, {fn.__name__}: {per16 / 16 * 1e9:.3f} ns per element, {per16 * ghz * 1e9:.1f} cycles "
                  f"per sixteen at {ghz:.1f} GHz [fastest {min(ts) / (a.size / 16) * ghz * 1e9:.1f}]")


if __name__ == "__main__":
    main()
