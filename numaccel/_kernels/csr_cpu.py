"""CSR kernels for the CPU.

Contract shared by every kernel here (inputs validated by the caller):
``indptr`` int32/int64 (M+1,), ``indices`` uint16/int32 (nnz,) sorted within each row and in range,
``data`` float32 (nnz,), ``bounds`` int64 row boundaries of the thread chunks (balanced by nonzeros),
activations float32/float64 C-contiguous, ``out`` C-contiguous of the activations' dtype, every element
written. Each ``prange`` iteration owns the output rows ``bounds[c]:bounds[c+1]`` (and its own row of
``scratch``); there are no cross-thread reductions. A row's reduction order depends only on the row and
the kernel family, never on the thread count or the chunk boundaries, so a result is bitwise the same
whatever the number of threads or processes that computed it (on one host, for the same call).

Four families:

- ``_spmv_csr_vec``: one float32 vector (batch 1) on x86 with AVX-512: per row, sixteen activations
  gathered into the lanes of a vector and one vector FMA with sixteen values (``_row_dot16``).
- ``_spmv_csr_rows``: one vector, the portable path (float64, or no AVX-512). Row slices indexed from 0,
  four scalar accumulators.
- ``_spmm_csr_tiles``: float32 batches on x86 with AVX-512. The activations are packed into slabs of
  ``W`` columns (``_pack_rows_tiles`` / ``_pack_cols_tiles``, shape ``(T, K, W)``, zero padded); for each
  weight row, ``_tile_fma_W`` runs the row's nonzeros over one slab with the ``W``-column output tile held
  in ``<16 x float>`` (or ``<8 x float>``) registers, one ``llvm.fma`` per vector and nonzero, the value
  broadcast, ``TILE_ACC_SETS`` sets of accumulators taking the nonzeros in turn, the weight
  stream prefetched ``PREFETCH_NNZ`` nonzeros ahead. A chunk's rows are taken in blocks of
  ``block_rows``; every slab visits a block before the next block starts (``_config.CSR_BLOCK_ROWS``,
  ``_config.CSR_TILE_MAX_WIDTH`` hold the choices: 32-column slabs, one block per chunk).
- ``_spmm_csr_rows``: the portable path (float64, or no AVX-512): ``b`` as ``(K, P)`` C-contiguous, each
  nonzero an axpy over ``P`` contiguous values, four nonzeros per step.

The ``transposed`` flag of the batched kernels selects the output layout: ``out[i, j]`` (``spmm``: ``out``
is ``(M, P)``) or ``out[j, i]`` (``linear``: ``out`` is ``(P, M)``, the transpose fused into the store).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from .._config import FASTMATH, cpu_features


def _emit_prefetch(builder, ptr) -> None:
    """Emit a read prefetch of the cache line holding ``ptr`` into all cache levels (a hint: it never
    faults, so it may point past the end of an array)."""
    i32 = ir.IntType(32)
    i8p = ir.IntType(8).as_pointer()
    fn = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]), "llvm.prefetch.p0"
    )
    builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])


# --------------------------------------------------------------------------------------------------
# Register-tile intrinsics: acc[0:W] = sum_p data[p] * xs[indices[p], 0:W] over p in [start, end).


def _make_tile_fma(vw: int, nv: int, nsets: int, prefetch: int):
    """Build the intrinsic for a tile of ``nv`` vectors of ``vw`` float32 lanes (width ``vw * nv``).

    ``data`` may be float32 values or int8 codes (converted exactly to float32 as they are read: the
    caller scales the tile).

    ``nsets`` (a power of two) sets of ``nv`` accumulators take the nonzeros in turn, so that
    ``nsets * nv`` independent FMA chains hide the FMA latency; the sets are added at the end. Once per
    ``nsets`` nonzeros the values and column ids ``prefetch`` nonzeros ahead are prefetched (0: never):
    the loads of activation rows keep the caches so busy that the hardware prefetcher alone leaves the
    weight stream waiting on memory.
    """
    if nsets < 1 or nsets & (nsets - 1):
        raise ValueError(f"nsets must be a power of two, got {nsets}")
    width = vw * nv

    @intrinsic
    def tile_fma(typingctx, indices, data, start, end, xs, acc):
        if not (
            isinstance(indices, types.Array) and indices.ndim == 1
            and isinstance(indices.dtype, types.Integer)
            and isinstance(data, types.Array) and data.dtype in (types.float32, types.int8)
            and isinstance(xs, types.Array) and xs.ndim == 2 and xs.dtype == types.float32
            and isinstance(acc, types.Array) and acc.dtype == types.float32
        ):
            return None
        sig = types.void(indices, data, types.int64, types.int64, xs, acc)

        def codegen(context, builder, signature, args):
            idx_t, data_t, _, _, xs_t, acc_t = signature.args
            ia = context.make_array(idx_t)(context, builder, args[0])
            da = context.make_array(data_t)(context, builder, args[1])
            start_v, end_v = args[2], args[3]
            xa = context.make_array(xs_t)(context, builder, args[4])
            oa = context.make_array(acc_t)(context, builder, args[5])

            i64 = ir.IntType(64)
            f32 = ir.FloatType()
            vty = ir.VectorType(f32, vw)
            fma = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vty, [vty, vty, vty]), f"llvm.fma.v{vw}f32"
            )
            zero_mask = ir.Constant(ir.VectorType(ir.IntType(32), vw), [0] * vw)
            undef = ir.Constant(vty, ir.Undefined)
            ext = builder.sext if idx_t.dtype.signed else builder.zext
            xbase = xa.data
            accs = []
            for _ in range(nsets):
                row = []
                for _ in range(nv):
                    slot = cgutils.alloca_once(builder, vty)
                    builder.store(ir.Constant(vty, None), slot)
                    row.append(slot)
                accs.append(row)

            codes = data_t.dtype == types.int8  # int8 codes: converted exactly to float32 as they are read

            def step(p, slots, converted=None):
                if converted is not None:  # a code already converted, in the float32 buffer
                    v = builder.load(converted)
                else:
                    v = builder.load(builder.gep(da.data, [p]))
                    if codes:
                        v = builder.sitofp(v, f32)
                vb = builder.shuffle_vector(builder.insert_element(undef, v, ir.Constant(i64, 0)), undef,
                                            zero_mask)
                k = ext(builder.load(builder.gep(ia.data, [p])), i64)
                rowp = builder.gep(xbase, [builder.mul(k, ir.Constant(i64, width))])
                for j in range(nv):
                    vp = builder.bitcast(builder.gep(rowp, [ir.Constant(i64, j * vw)]), vty.as_pointer())
                    xv = builder.load(vp, align=4)
                    builder.store(builder.call(fma, [vb, xv, builder.load(slots[j])]), slots[j])

            n = builder.sub(end_v, start_v)
            if codes:
                # Sixteen codes at a time are converted with one vector instruction into a float32 buffer
                # (in L1), from which each value is broadcast like a float32 value straight from memory:
                # converting and broadcasting each code on its own costs a shuffle per nonzero.
                v16 = ir.VectorType(f32, 16)
                buf = cgutils.alloca_once(builder, v16)
                bufp = builder.bitcast(buf, f32.as_pointer())
                wide = builder.ashr(n, ir.Constant(i64, 4))
                with cgutils.for_range(builder, wide) as loop:
                    p = builder.add(start_v, builder.shl(loop.index, ir.Constant(i64, 4)))
                    if prefetch:
                        ahead = builder.add(p, ir.Constant(i64, prefetch))
                        _emit_prefetch(builder, builder.gep(da.data, [ahead]))
                        _emit_prefetch(builder, builder.gep(ia.data, [ahead]))
                    cv = builder.load(builder.bitcast(builder.gep(da.data, [p]),
                                                      ir.VectorType(ir.IntType(8), 16).as_pointer()), align=1)
                    builder.store(builder.sitofp(cv, v16), buf)
                    for u in range(16):
                        step(builder.add(p, ir.Constant(i64, u)), accs[u % nsets],
                             builder.gep(bufp, [ir.Constant(i64, u)]))
                start_g = builder.add(start_v, builder.shl(wide, ir.Constant(i64, 4)))
                n = builder.sub(end_v, start_g)
            else:
                start_g = start_v
            shift = ir.Constant(i64, nsets.bit_length() - 1)
            groups = builder.ashr(n, shift)
            with cgutils.for_range(builder, groups) as loop:
                p = builder.add(start_g, builder.shl(loop.index, shift))
                if prefetch:
                    ahead = builder.add(p, ir.Constant(i64, prefetch))
                    _emit_prefetch(builder, builder.gep(da.data, [ahead]))
                    _emit_prefetch(builder, builder.gep(ia.data, [ahead]))
                for u in range(nsets):
                    step(builder.add(p, ir.Constant(i64, u)), accs[u])
            rest = builder.sub(n, builder.shl(groups, shift))
            tail = builder.sub(end_v, rest)
            with cgutils.for_range(builder, rest) as loop:
                step(builder.add(tail, loop.index), accs[0])
            for j in range(nv):
                vals = [builder.load(accs[u][j]) for u in range(nsets)]
                while len(vals) > 1:
                    vals = [builder.fadd(vals[q], vals[q + 1]) for q in range(0, len(vals), 2)]
                total = vals[0]
                op = builder.bitcast(builder.gep(oa.data, [ir.Constant(i64, j * vw)]), vty.as_pointer())
                builder.store(total, op, align=4)
            return context.get_dummy_value()

        return sig, codegen

    return tile_fma


# Accumulator sets of the register-tile kernel (a power of two): this many nonzeros in a row run as
# independent FMA chains; and how far ahead (in nonzeros) it prefetches the weight values and column ids.
# Both change the compiled code, so they live here: editing this file invalidates Numba's cached kernels.
# Why these values: docs/performance.md ("Tunables").
TILE_ACC_SETS = 4
PREFETCH_NNZ = 2048

_tile_fma_8 = _make_tile_fma(8, 1, TILE_ACC_SETS, PREFETCH_NNZ)
_tile_fma_16 = _make_tile_fma(16, 1, TILE_ACC_SETS, PREFETCH_NNZ)
_tile_fma_32 = _make_tile_fma(16, 2, TILE_ACC_SETS, PREFETCH_NNZ)
_tile_fma_64 = _make_tile_fma(16, 4, TILE_ACC_SETS, PREFETCH_NNZ)

#: Slab widths the tile kernel supports, narrowest first.
TILE_WIDTHS = (8, 16, 32, 64)


@njit(inline="always", fastmath=FASTMATH)
def _pack_rows_job(x, slabs, job, nkb):
    """One job of ``_pack_rows_tiles``: slab ``job // nkb``, input features of block ``job % nkb``."""
    T, K, W = slabs.shape
    B = x.shape[0]
    kb = 256
    t = job // nkb
    k0 = (job % nkb) * kb
    k1 = min(k0 + kb, K)
    s = slabs[t]
    nb = min(W, B - t * W)
    for k in range(k0, k1):
        srow = s[k]
        for j in range(nb, W):
            srow[j] = 0
    for j in range(nb):
        xrow = x[t * W + j]
        for k in range(k0, k1):
            s[k, j] = xrow[k]


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH)
def _pack_rows_tiles(x, slabs):
    """``slabs[t, k, j] = x[t*W + j, k]`` (zero past the last row of ``x``); x (B, K), slabs (T, K, W)."""
    nkb = (slabs.shape[1] + 255) // 256
    for job in prange(slabs.shape[0] * nkb):
        _pack_rows_job(x, slabs, job, nkb)


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _pack_rows_tiles_serial(x, slabs):
    """``_pack_rows_tiles`` on the calling thread (small inputs, where a thread-team start costs more)."""
    nkb = (slabs.shape[1] + 255) // 256
    for job in range(slabs.shape[0] * nkb):
        _pack_rows_job(x, slabs, job, nkb)


@njit(inline="always", fastmath=FASTMATH)
def _pack_cols_row(brow, slabs, k, P):
    T, K, W = slabs.shape
    for t in range(T):
        srow = slabs[t, k]
        nb = min(W, P - t * W)
        for j in range(nb):
            srow[j] = brow[t * W + j]
        for j in range(nb, W):
            srow[j] = 0


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH)
def _pack_cols_tiles(b, slabs):
    """``slabs[t, k, j] = b[k, t*W + j]`` (zero past the last column of ``b``); b (K, P), slabs (T, K, W)."""
    P = b.shape[1]
    for k in prange(slabs.shape[1]):
        _pack_cols_row(b[k], slabs, k, P)


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _pack_cols_tiles_serial(b, slabs):
    """``_pack_cols_tiles`` on the calling thread (small inputs)."""
    P = b.shape[1]
    for k in range(slabs.shape[1]):
        _pack_cols_row(b[k], slabs, k, P)


@njit(inline="always", fastmath=FASTMATH)
def _tile_row(indices, data, start, end, xs, acc, W):
    if W == 64:
        _tile_fma_64(indices, data, start, end, xs, acc)
    elif W == 32:
        _tile_fma_32(indices, data, start, end, xs, acc)
    elif W == 16:
        _tile_fma_16(indices, data, start, end, xs, acc)
    else:
        _tile_fma_8(indices, data, start, end, xs, acc)


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _spmm_tiles_chunk(indptr, indices, data, r0, r1, slabs, buf, block_rows, transposed, out):
    """Rows ``r0:r1`` of ``_spmm_csr_tiles``; ``buf`` (G, W) float32 holds the tiles of ``G`` rows.

    With ``transposed`` and ``G > 1`` the tiles of ``G`` consecutive rows are kept in ``buf`` and stored
    together, so that each output row receives ``G`` contiguous values per store pass: storing one weight
    row's tile alone writes ``W`` values ``M * 4`` bytes apart, which alias in the caches when ``M`` is a
    multiple of 1024 and cost more than the arithmetic for very sparse weights. ``G == 1`` stores each
    tile directly (cheaper for ``W == 8``: eight such lines fit in one cache set).
    """
    T = slabs.shape[0]
    W = slabs.shape[2]
    G = buf.shape[0]
    P = out.shape[0] if transposed else out.shape[1]
    for s0 in range(r0, r1, block_rows):
        s1 = min(s0 + block_rows, r1)
        for t in range(T):
            xs = slabs[t]
            b0 = t * W
            nb = min(W, P - b0)
            if transposed and G == 1:
                acc = buf[0]
                for i in range(s0, s1):
                    _tile_row(indices, data, np.int64(indptr[i]), np.int64(indptr[i + 1]), xs, acc, W)
                    for j in range(nb):
                        out[b0 + j, i] = acc[j]
            elif transposed:
                for g0 in range(s0, s1, G):
                    g1 = min(g0 + G, s1)
                    for i in range(g0, g1):
                        _tile_row(indices, data, np.int64(indptr[i]), np.int64(indptr[i + 1]), xs,
                                  buf[i - g0], W)
                    for j in range(nb):
                        orow = out[b0 + j, g0:g1]
                        for r in range(g1 - g0):
                            orow[r] = buf[r, j]
            else:
                acc = buf[0]
                for i in range(s0, s1):
                    _tile_row(indices, data, np.int64(indptr[i]), np.int64(indptr[i + 1]), xs, acc, W)
                    orow = out[i]
                    for j in range(nb):
                        orow[b0 + j] = acc[j]


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH)
def _spmm_csr_tiles(indptr, indices, data, bounds, slabs, scratch, block_rows, transposed, out):
    """``A @ X`` with X given as float32 slabs (T, K, W), W in TILE_WIDTHS; scratch (chunks, G, W) float32.

    ``out`` is (M, P) (``transposed`` False) or (P, M) (True), with ``P <= T * W`` columns of X used.
    For small weights the caller runs ``_spmm_tiles_chunk`` over all rows on its own thread instead.
    """
    for c in prange(bounds.size - 1):
        _spmm_tiles_chunk(indptr, indices, data, bounds[c], bounds[c + 1], slabs, scratch[c], block_rows,
                          transposed, out)


# --------------------------------------------------------------------------------------------------
# Batch 1, float32 with AVX-512: sixteen nonzeros per vector FMA.


def _hsum(builder, v, lanes: int):
    """Sum of the ``lanes`` elements of vector ``v`` by halving (a fixed order)."""
    i32 = ir.IntType(32)
    while lanes > 1:
        half = lanes // 2
        lo = builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(i32, half), list(range(half))))
        hi = builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(i32, half), list(range(half, lanes))))
        v = builder.fadd(lo, hi)
        lanes = half
    return builder.extract_element(v, ir.Constant(i32, 0))


def _make_row_dot16(gather: bool, prefetch: bool):
    """An intrinsic ``(indices, data, start, end, x)``: ``sum_p data[p] * x[indices[p]]`` over ``p`` in
    ``[start, end)``, float32 (``data`` float32 values or int8 codes, converted exactly as they are read).

    Sixteen activations go into the lanes of a vector, either loaded one by one (``insertelement``,
    ``gather`` False) or fetched by one AVX-512 gather (``vgatherdps`` of the sixteen indices, ``gather``
    True; for indices below 2**31); the sixteen values come with one vector load, then one
    ``llvm.fma.v16f32`` into one vector accumulator (its latency is below a group's cost; two measured
    alike). The last 0-15 nonzeros run as one more group whose missing lanes add ``0 * 0``: with masked
    loads and a masked gather for ``gather``, without a branch (a tail of data-dependent length, as scalar
    FMAs, cost mispredicted branches: 6-9 % of the batch-1 time at 400 nonzeros per row), else with a
    full group's loads (sixteen stored values from the tail on lie inside the arrays for all rows but the
    last few) and the lanes past the row's end replaced by zeros, or lane by lane with clamped positions
    near the arrays' end. With uint16 column ids, four come in one 64-bit load and are split by ``bextr``
    where the host has BMI1. With ``prefetch``, each group of sixteen asks for the values and indices
    ``_PREFETCH_BYTES`` ahead (``llvm.prefetch``). Every variant adds the same products in the same order,
    so their results are equal; which is fastest depends on the host (docs/performance.md, "CSR at
    batch 1"), and the planner chooses (``numaccel.plan.wisdom``, choice ``csr-gemv``).
    """

    @intrinsic
    def row_dot16(typingctx, indices, data, start, end, x):
        return _row_dot16_typer(gather, prefetch, indices, data, start, end, x)

    return row_dot16


def _row_dot16_typer(gather, prefetch, indices, data, start, end, x):
    if not (
        isinstance(indices, types.Array) and indices.ndim == 1 and isinstance(indices.dtype, types.Integer)
        and isinstance(data, types.Array) and data.dtype in (types.float32, types.int8)
        and isinstance(x, types.Array) and x.ndim == 1 and x.dtype == types.float32
    ):
        return None
    sig = types.float32(indices, data, types.int64, types.int64, x)
    codes = data.dtype == types.int8

    def codegen(context, builder, signature, args):
        idx_t, data_t, _, _, x_t = signature.args
        ia = context.make_array(idx_t)(context, builder, args[0])
        da = context.make_array(data_t)(context, builder, args[1])
        xa = context.make_array(x_t)(context, builder, args[4])
        start_v, end_v = args[2], args[3]
        i64 = ir.IntType(64)
        i32 = ir.IntType(32)
        f32 = ir.FloatType()
        lanes = 16
        vty = ir.VectorType(f32, lanes)
        vi32 = ir.VectorType(i32, lanes)
        mty = ir.VectorType(ir.IntType(1), lanes)
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty, vty, vty]), "llvm.fma.v16f32")
        ext = builder.sext if idx_t.dtype.signed else builder.zext

        def xval(p):
            k = ext(builder.load(builder.gep(ia.data, [p])), i64)
            return builder.load(builder.gep(xa.data, [k]))

        def dval(p):
            v = builder.load(builder.gep(da.data, [p]))
            return builder.sitofp(v, f32) if codes else v

        def gathered(p):
            ity = ir.VectorType(ir.IntType(idx_t.dtype.bitwidth), lanes)
            iv = builder.load(builder.bitcast(builder.gep(ia.data, [p]), ity.as_pointer()), align=1)
            vi32 = ir.VectorType(i32, lanes)
            if idx_t.dtype.bitwidth < 32:
                iv = ext(iv, vi32)
            elif idx_t.dtype.bitwidth > 32:
                iv = builder.trunc(iv, vi32)
            mty = ir.VectorType(ir.IntType(1), lanes)
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vty, [vty, _PTR8, vi32, mty, i32]),
                "llvm.x86.avx512.mask.gather.dps.512")
            base = builder.bitcast(xa.data, _PTR8)
            return builder.call(fn, [ir.Constant(vty, None), base, iv, ir.Constant(mty, [1] * lanes),
                                     ir.Constant(i32, 4)])

        def lanes_x(p):
            """The sixteen activations of nonzeros ``p .. p + 15`` as the lanes of a vector."""
            xv = ir.Constant(vty, ir.Undefined)
            if idx_t.dtype.bitwidth == 16:
                # four 16-bit column ids per 64-bit load, split by shifts: 4 loads instead of 16
                base = builder.bitcast(builder.gep(ia.data, [p]), i64.as_pointer())
                bextr = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i64, [i64, i64]),
                                                       "llvm.x86.bmi.bextr.64") if _BEXTR else None
                for q in range(lanes // 4):
                    four = builder.load(builder.gep(base, [ir.Constant(i64, q)]), align=2)
                    for j in range(4):
                        if 0 < j < 3 and _BEXTR:  # one non-destructive instruction instead of mov, shift, mask
                            k = builder.call(bextr, [four, ir.Constant(i64, (16 << 8) | (16 * j))])
                        else:
                            k = builder.and_(builder.lshr(four, ir.Constant(i64, 16 * j)), ir.Constant(i64, 0xFFFF))
                        xk = builder.load(builder.gep(xa.data, [k]))
                        xv = builder.insert_element(xv, xk, ir.Constant(i32, 4 * q + j))
                return xv
            for j in range(lanes):
                xv = builder.insert_element(xv, xval(builder.add(p, ir.Constant(i64, j))), ir.Constant(i32, j))
            return xv

        def lanes_d(p):
            """The sixteen values of nonzeros ``p .. p + 15`` (float32) in one vector load."""
            if codes:
                cty = ir.VectorType(ir.IntType(8), lanes)
                cv = builder.load(builder.bitcast(builder.gep(da.data, [p]), cty.as_pointer()), align=1)
                return builder.sitofp(cv, vty)
            return builder.load(builder.bitcast(builder.gep(da.data, [p]), vty.as_pointer()), align=4)

        def group(p, slot):
            if prefetch:
                for arr, t in ((da, data_t), (ia, idx_t)):
                    ahead = builder.add(p, ir.Constant(i64, _PREFETCH_BYTES // (t.dtype.bitwidth // 8)))
                    _emit_prefetch(builder, builder.gep(arr.data, [ahead]))
            xv = gathered(p) if gather else lanes_x(p)
            builder.store(builder.call(fma, [lanes_d(p), xv, builder.load(slot)]), slot)

        def masked_load(arr, t, p, mask):
            ety = ir.IntType(t.dtype.bitwidth) if isinstance(t.dtype, types.Integer) else f32
            vt = ir.VectorType(ety, lanes)
            name = f"llvm.masked.load.v{lanes}{'i' + str(ety.width) if ety is not f32 else 'f32'}.p0"
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vt, [vt.as_pointer(), i32, mty, vt]),
                                                name)
            return builder.call(fn, [builder.bitcast(builder.gep(arr.data, [p]), vt.as_pointer()),
                                     ir.Constant(i32, 1), mask, ir.Constant(vt, None)])

        def tail(p, rest, slot):
            # the last 0-15 nonzeros as one group whose missing lanes add 0 * 0: lanes j < rest
            rv = builder.trunc(rest, i32)
            rv = builder.shuffle_vector(builder.insert_element(ir.Constant(vi32, ir.Undefined), rv,
                                                               ir.Constant(i32, 0)),
                                        ir.Constant(vi32, ir.Undefined), ir.Constant(vi32, [0] * lanes))
            mask = builder.icmp_signed("<", ir.Constant(vi32, list(range(lanes))), rv)
            if gather:  # masked loads and gather touch no masked-off lane: no branch, even for an empty row
                iv = masked_load(ia, idx_t, p, mask)
                iv = ext(iv, vi32) if idx_t.dtype.bitwidth < 32 else (
                    builder.trunc(iv, vi32) if idx_t.dtype.bitwidth > 32 else iv)
                fn = cgutils.get_or_insert_function(
                    builder.module, ir.FunctionType(vty, [vty, _PTR8, vi32, mty, i32]),
                    "llvm.x86.avx512.mask.gather.dps.512")
                xv = builder.call(fn, [ir.Constant(vty, None), builder.bitcast(xa.data, _PTR8), iv, mask,
                                       ir.Constant(i32, 4)])
                cv = masked_load(da, data_t, p, mask)
                dv = builder.sitofp(cv, vty) if codes else cv
                builder.store(builder.call(fma, [dv, xv, builder.load(slot)]), slot)
                return
            with builder.if_then(builder.icmp_signed(">", rest, ir.Constant(i64, 0))):
                # Lanes j >= rest add 0 * 0. Where sixteen stored values from p on lie inside both arrays
                # (all rows but the last few), the group reads them as a full group does (the values past
                # the row's end are those of the next rows, their column ids in range) and replaces the
                # lanes past the end by zeros: about 70 instructions instead of 210 per row.
                stored = builder.select(builder.icmp_signed("<", ia.nitems, da.nitems), ia.nitems, da.nitems)
                inside = builder.icmp_signed("<=", builder.add(p, ir.Constant(i64, lanes)), stored)
                with builder.if_else(inside) as (full, clamped):
                    with full:
                        zero = ir.Constant(vty, None)
                        xv = builder.select(mask, lanes_x(p), zero)
                        dv = builder.select(mask, lanes_d(p), zero)
                        builder.store(builder.call(fma, [dv, xv, builder.load(slot)]), slot)
                    with clamped:
                        clamped_tail(p, slot)

        def clamped_tail(p, slot):
            # the rows ending within sixteen values of an array's end: lanes past the row's end read its
            # last nonzero (valid) and are replaced by zeros
            last = builder.sub(end_v, ir.Constant(i64, 1))
            xv = ir.Constant(vty, ir.Undefined)
            dv = ir.Constant(vty, ir.Undefined)
            for j in range(lanes):
                pj = builder.add(p, ir.Constant(i64, j))
                have = builder.icmp_signed("<", pj, end_v)
                pj = builder.select(have, pj, last)
                zero = ir.Constant(f32, 0.0)
                xv = builder.insert_element(xv, builder.select(have, xval(pj), zero), ir.Constant(i32, j))
                dv = builder.insert_element(dv, builder.select(have, dval(pj), zero), ir.Constant(i32, j))
            builder.store(builder.call(fma, [dv, xv, builder.load(slot)]), slot)

        acc = cgutils.alloca_once_value(builder, ir.Constant(vty, None))
        n = builder.sub(end_v, start_v)
        groups = builder.ashr(n, ir.Constant(i64, 4))
        with cgutils.for_range(builder, groups) as loop:
            group(builder.add(start_v, builder.shl(loop.index, ir.Constant(i64, 4))), acc)
        p = builder.add(start_v, builder.shl(groups, ir.Constant(i64, 4)))
        tail(p, builder.sub(end_v, p), acc)
        return _hsum(builder, builder.load(acc), lanes)

    return sig, codegen


_PTR8 = ir.IntType(8).as_pointer()
_BEXTR = "bmi" in cpu_features()  # BMI1's bextr, on every AVX-512 CPU
_PREFETCH_BYTES = 4096  # Intel Xeon host, 4096 x 4096 at 90 %, cold: 1024-16384 bytes ahead all ran alike
_row_dot16 = _make_row_dot16(False, False)
_row_dot16_pf = _make_row_dot16(False, True)
_row_dot16_gather = _make_row_dot16(True, True)

# batch-1 variants, as the planner names them (numaccel.plan.wisdom, choice "csr-gemv")
GEMV_LANES, GEMV_LANES_PREFETCH, GEMV_GATHER = 0, 1, 2


@njit(inline="always", fastmath=FASTMATH)
def _row_dot16_variant(indices, data, start, end, x, variant):
    if variant == GEMV_GATHER:
        return _row_dot16_gather(indices, data, start, end, x)
    if variant == GEMV_LANES_PREFETCH:
        return _row_dot16_pf(indices, data, start, end, x)
    return _row_dot16(indices, data, start, end, x)


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _spmv_vec_range(indptr, indices, data, r0, r1, x, variant, out):
    """Rows ``r0:r1`` of ``_spmv_csr_vec`` (called alone for small weights: no thread-team start)."""
    for i in range(r0, r1):
        out[i] = _row_dot16_variant(indices, data, np.int64(indptr[i]), np.int64(indptr[i + 1]), x, variant)


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH)
def _spmv_csr_vec(indptr, indices, data, bounds, x, variant, out):
    """``_spmv_csr_rows`` for float32 ``x`` and ``data`` on x86 with AVX-512: ``variant`` one of the
    ``GEMV_*`` (see ``_make_row_dot16``)."""
    for c in prange(bounds.size - 1):
        _spmv_vec_range(indptr, indices, data, bounds[c], bounds[c + 1], x, variant, out)


# --------------------------------------------------------------------------------------------------
# Batch 1 and the portable batched path.


@njit(inline="always", fastmath=FASTMATH)
def _spmv_row(idx, d, x):
    """Dot product of one CSR row (its indices and values, as slices) with the dense vector ``x``."""
    n = idx.size
    acc0 = x.dtype.type(0)
    acc1 = x.dtype.type(0)
    acc2 = x.dtype.type(0)
    acc3 = x.dtype.type(0)
    m = n - n % 4
    for p in range(0, m, 4):
        acc0 += d[p] * x[idx[p]]
        acc1 += d[p + 1] * x[idx[p + 1]]
        acc2 += d[p + 2] * x[idx[p + 2]]
        acc3 += d[p + 3] * x[idx[p + 3]]
    for p in range(m, n):
        acc0 += d[p] * x[idx[p]]
    return (acc0 + acc1) + (acc2 + acc3)


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _spmv_rows_range(indptr, indices, data, r0, r1, x, out):
    """Rows ``r0:r1`` of ``_spmv_csr_rows`` (called alone for small weights: no thread-team start)."""
    for i in range(r0, r1):
        start = indptr[i]
        end = indptr[i + 1]
        out[i] = _spmv_row(indices[start:end], data[start:end], x)


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH)
def _spmv_csr_rows(indptr, indices, data, bounds, x, out):
    """``out[i] = sum_p data[p] * x[indices[p]]`` over row ``i``'s nonzeros; x (K,), out (M,)."""
    for c in prange(bounds.size - 1):
        _spmv_rows_range(indptr, indices, data, bounds[c], bounds[c + 1], x, out)


@njit(inline="always", fastmath=FASTMATH)
def _store_row(acc, i, P, transposed, out):
    """Row ``i``'s ``P`` results from ``acc`` into ``out`` (N, P), or its column ``i`` when ``transposed``."""
    if transposed:
        for j in range(P):
            out[j, i] = acc[j]
    else:
        orow = out[i]
        for j in range(P):
            orow[j] = acc[j]


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _spmm_rows_range(indptr, indices, data, r0, r1, b, acc, transposed, out):
    """Rows ``r0:r1`` of ``_spmm_csr_rows``; ``acc`` (P,) of b's dtype (called alone for small weights)."""
    P = b.shape[1]
    for i in range(r0, r1):
        for j in range(P):
            acc[j] = 0
        start = indptr[i]
        end = indptr[i + 1]
        idx = indices[start:end]
        d = data[start:end]
        n = idx.size
        m = n - n % 4
        for p in range(0, m, 4):
            v0 = d[p]
            v1 = d[p + 1]
            v2 = d[p + 2]
            v3 = d[p + 3]
            r0_ = b[idx[p]]
            r1_ = b[idx[p + 1]]
            r2_ = b[idx[p + 2]]
            r3_ = b[idx[p + 3]]
            for j in range(P):
                acc[j] += ((v0 * r0_[j] + v1 * r1_[j]) + (v2 * r2_[j] + v3 * r3_[j]))
        for p in range(m, n):
            v = d[p]
            r = b[idx[p]]
            for j in range(P):
                acc[j] += v * r[j]
        _store_row(acc, i, P, transposed, out)


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH)
def _spmm_csr_rows(indptr, indices, data, bounds, b, scratch, transposed, out):
    """``A @ b`` for dense ``b`` (K, P) C-contiguous; scratch (chunks, P) of b's dtype.

    ``out`` is (M, P) (``transposed`` False) or (P, M) (True).
    """
    for c in prange(bounds.size - 1):
        _spmm_rows_range(indptr, indices, data, bounds[c], bounds[c + 1], b, scratch[c], transposed, out)
