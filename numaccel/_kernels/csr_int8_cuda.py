"""Pruned-int8 kernels for CUDA (``numba.cuda``): CSR structure, int8 codes, float32 scales per row or per
group of a row's consecutive stored values; the CUDA twins of the ``"csr-int8"`` CPU kernels.

Contract shared by every kernel here (inputs validated and moved to the device by ``numaccel._cuda.api``
and ``numaccel._cuda.formats``, launched by ``numaccel._cuda.launch``):

- ``indptr`` int32/int64 (M+1,), ``indices`` uint16/int32 (nnz,) in range, ``qdata`` int8 (nnz,);
- ``scales`` float32 (G,) and ``gptr`` int64 (M+1,), the scale pointer of
  ``numaccel.formats.csr_int8.group_pointer``: stored value ``p`` of row ``i`` has the scale
  ``scales[gptr[i] + (p - indptr[i]) // gs]``;
- ``gs`` the stored values per scale: the format's ``group_size``, or, for one scale per row
  (``gptr[i] = i``), any value at least the longest row (the device weight passes ``max(nnz, 1)``), so a
  row is a single group;
- dense operands float32 device arrays of any strides, ``bias`` float32 (M,) read only when ``has_bias``
  is 1 (a one-element placeholder otherwise), ``out`` float32, every element in range written exactly once.

Each code and column id is read once per thread that needs it; products ``code * x`` are summed in float32
within a group and each group's sum is multiplied by its scale once (a row's sum once, for per-row scales).
No kernel raises or allocates. Lane reductions go through shared memory (``csr_cuda._store_lane_sum``), as
Numba's CUDA simulator has no warp shuffles; block sizes are module constants, so shared-array shapes are
compile-time constants. Compiled without ``fastmath``, with ``cache=True``.
"""

from __future__ import annotations

from numba import cuda, float32

from .csr_cuda import _store_lane_sum

# Row-split SpMV (B = 1): 1-D blocks of SPMV_THREADS threads; ``lanes`` threads (a power of two, <= 32)
# share one row, lane ``l`` taking the row's stored values ``l, l + lanes, ...`` (coalesced reads).
SPMV_THREADS = 128
# Batched kernel: blocks of SPMM_LANES x SPMM_ROWS threads, one warp-wide row of lanes per sparse row; each
# lane owns SPMM_COLS output columns spaced SPMM_LANES apart, so the block applies every code it reads to
# SPMM_TILE = SPMM_LANES * SPMM_COLS activation rows (columns of the transposed operand).
SPMM_LANES = 32
SPMM_ROWS = 4
SPMM_COLS = 4
SPMM_TILE = SPMM_LANES * SPMM_COLS


@cuda.jit(cache=True)
def _spmv_csr_int8_cuda(indptr, indices, qdata, scales, gptr, gs, x, bias, has_bias, out, lanes):
    """``out[i] = sum_p scales[g(p)] * qdata[p] * x[indices[p]] (+ bias[i])``; ``x`` (K,), ``out`` (M,).

    Each lane sums ``qdata[p] * x[indices[p]]`` over its stored values of one group, and adds the sum times
    the group's scale when its next value lies in a later group (one integer division per group change,
    none per value) and after its last value. Launch: 1-D blocks of ``SPMV_THREADS`` threads,
    ``ceil(M / (SPMV_THREADS // lanes))`` blocks.
    """
    partial = cuda.shared.array(SPMV_THREADS, float32)
    tid = cuda.threadIdx.x
    lane = tid % lanes
    row = cuda.blockIdx.x * (SPMV_THREADS // lanes) + tid // lanes
    m = out.shape[0]
    acc = float32(0.0)
    if row < m:
        start = indptr[row]
        length = indptr[row + 1] - start
        g0 = gptr[row]
        gi = lane // gs  # the group of this lane's current value (its offset in the row // gs)
        g_end = (gi + 1) * gs  # first offset of the next group
        gacc = float32(0.0)
        for o in range(lane, length, lanes):
            if o >= g_end:
                acc += scales[g0 + gi] * gacc
                gacc = float32(0.0)
                gi = o // gs
                g_end = (gi + 1) * gs
            p = start + o
            gacc += float32(qdata[p]) * x[indices[p]]
        if lane < length:
            acc += scales[g0 + gi] * gacc
    _store_lane_sum(partial, tid, lane, lanes, acc, row, bias, has_bias, out)


@cuda.jit(cache=True)
def _spmm_csr_int8_cuda(indptr, indices, qdata, scales, gptr, gs, b, bias, has_bias, out):
    """``out[i, :] = sum_p scales[g(p)] * qdata[p] * b[indices[p], :] (+ bias[i])``; ``b`` (K, P) (the
    activations transposed), ``out`` (M, P).

    A row of lanes walks one sparse row in order, reading each code and column id once per SPMM_TILE
    columns (once in all for P <= SPMM_TILE) and applying it to that many columns; consecutive lanes read
    consecutive columns, so a C-contiguous ``b`` is read in coalesced rows. Per-group float32 sums in
    registers are scaled into the result when the group ends. Launch: blocks of (SPMM_LANES, SPMM_ROWS),
    grid ``(ceil(M / SPMM_ROWS), ceil(P / SPMM_TILE))``.
    """
    lane = cuda.threadIdx.x
    row = cuda.blockIdx.x * SPMM_ROWS + cuda.threadIdx.y
    col0 = cuda.blockIdx.y * SPMM_TILE + lane
    m, ncols = out.shape
    if row >= m:
        return
    acc = cuda.local.array(SPMM_COLS, float32)
    gacc = cuda.local.array(SPMM_COLS, float32)
    for c in range(SPMM_COLS):
        acc[c] = 0
        gacc[c] = 0
    start = indptr[row]
    end = indptr[row + 1]
    g = gptr[row]
    g_next = start + gs  # first stored value of the row's next group
    for p in range(start, end):
        if p == g_next:
            s = scales[g]
            for c in range(SPMM_COLS):
                acc[c] += s * gacc[c]
                gacc[c] = 0
            g += 1
            g_next += gs
        v = float32(qdata[p])
        brow = indices[p]
        for c in range(SPMM_COLS):
            j = col0 + c * SPMM_LANES
            if j < ncols:
                gacc[c] += v * b[brow, j]
    if end > start:
        s = scales[g]
        for c in range(SPMM_COLS):
            acc[c] += s * gacc[c]
    shift = float32(0.0)
    if has_bias:
        shift = bias[row]
    for c in range(SPMM_COLS):
        j = col0 + c * SPMM_LANES
        if j < ncols:
            out[row, j] = acc[c] + shift
