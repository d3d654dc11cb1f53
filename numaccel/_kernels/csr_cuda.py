"""CSR kernels for CUDA (``numba.cuda``), twins of ``csr_cpu``.

Contract shared by every kernel here (inputs validated and moved to the device by ``numaccel._cuda.api``,
launched by ``numaccel._cuda.launch``):
``indptr`` int32/int64 (M+1,), ``indices`` uint16/int32 (nnz,) in range, ``data`` float32 (nnz,), dense
operands float32 device arrays of any strides, ``bias`` float32 (M,) read only when ``has_bias`` is 1 (a
one-element placeholder otherwise), ``out`` float32, every element in range written exactly once. No
kernel raises or allocates.

Lane reductions go through shared memory with ``syncthreads`` rather than warp shuffles, so the same code
runs on a GPU and under Numba's CUDA simulator (which has no shuffles); a row's partial sums are combined
once per row, so the cost is small next to the row's loads. Block sizes below are module constants, so
shared-array shapes are compile-time constants. Kernels are compiled without ``fastmath`` (NVVM already
fuses ``a * b + c`` into FMAs; fastmath would also flush denormals and approximate division), and with
``cache=True``.
"""

from __future__ import annotations

from numba import cuda, float32

# Threads per block of the row-split SpMV; ``lanes`` threads (a power of two, <= 32) share one row.
SPMV_THREADS = 128
# Batched kernel: a block is ``SPMM_LANES x SPMM_ROWS`` threads, one warp-wide row of lanes per sparse row;
# each lane owns ``SPMM_COLS`` output columns spaced ``SPMM_LANES`` apart, so a block streams
# ``SPMM_LANES * SPMM_COLS`` columns of the dense operand per nonzero it reads.
SPMM_LANES = 32
SPMM_ROWS = 4
SPMM_COLS = 4
SPMM_TILE = SPMM_LANES * SPMM_COLS
# Tiled transpose: TRANSPOSE_TILE x TRANSPOSE_TILE threads, the shared tile padded by one column.
TRANSPOSE_TILE = 16
TRANSPOSE_TILE_PAD = 17


@cuda.jit(device=True)
def _store_lane_sum(partial, tid, lane, lanes, acc, row, bias, has_bias, out):
    """Sum ``acc`` over each group of ``lanes`` consecutive threads (a power of two) through the shared
    array ``partial`` (one slot per thread), and let the group's lane 0 write ``out[row]`` (+ ``bias[row]``)
    when ``row`` is in range. Every thread of the block must call it: it synchronises the block."""
    partial[tid] = acc
    cuda.syncthreads()
    step = lanes // 2
    while step > 0:
        if lane < step:
            partial[tid] += partial[tid + step]
        cuda.syncthreads()
        step //= 2
    if lane == 0 and row < out.shape[0]:
        total = partial[tid]
        if has_bias:
            total += bias[row]
        out[row] = total


@cuda.jit(cache=True)
def _spmv_csr_cuda(indptr, indices, data, x, bias, has_bias, out, lanes):
    """``out[i] = sum_p data[p] * x[indices[p]] (+ bias[i])``; ``lanes`` threads per row.

    Launch: 1-D blocks of ``SPMV_THREADS`` threads, ``ceil(M / (SPMV_THREADS // lanes))`` blocks.
    """
    partial = cuda.shared.array(SPMV_THREADS, float32)
    tid = cuda.threadIdx.x
    lane = tid % lanes
    row = cuda.blockIdx.x * (SPMV_THREADS // lanes) + tid // lanes
    m = out.shape[0]
    acc = float32(0.0)
    if row < m:
        for p in range(indptr[row] + lane, indptr[row + 1], lanes):
            acc += data[p] * x[indices[p]]
    _store_lane_sum(partial, tid, lane, lanes, acc, row, bias, has_bias, out)


@cuda.jit(cache=True)
def _spmm_csr_cuda(indptr, indices, data, b, bias, has_bias, out):
    """``out[i, :] = sum_p data[p] * b[indices[p], :] (+ bias[i])``; ``b`` (K, P), ``out`` (M, P).

    Each nonzero is read once per ``SPMM_TILE`` columns (once in all for P <= SPMM_TILE) and multiplied
    into that many columns; consecutive lanes read consecutive columns, so a C-contiguous ``b`` is read
    in coalesced rows. Launch: blocks of (SPMM_LANES, SPMM_ROWS), grid
    ``(ceil(M / SPMM_ROWS), ceil(P / SPMM_TILE))``.
    """
    lane = cuda.threadIdx.x
    row = cuda.blockIdx.x * SPMM_ROWS + cuda.threadIdx.y
    col0 = cuda.blockIdx.y * SPMM_TILE + lane
    m, ncols = out.shape
    if row >= m:
        return
    acc = cuda.local.array(SPMM_COLS, float32)
    for c in range(SPMM_COLS):
        acc[c] = 0
    for p in range(indptr[row], indptr[row + 1]):
        v = data[p]
        brow = indices[p]
        for c in range(SPMM_COLS):
            j = col0 + c * SPMM_LANES
            if j < ncols:
                acc[c] += v * b[brow, j]
    shift = float32(0.0)
    if has_bias:
        shift = bias[row]
    for c in range(SPMM_COLS):
        j = col0 + c * SPMM_LANES
        if j < ncols:
            out[row, j] = acc[c] + shift


@cuda.jit(cache=True)
def _transpose_cuda(a, out):
    """``out = a.T`` for ``a`` (R, C) and ``out`` (C, R) through a shared tile (both sides coalesced).

    Launch: blocks of (TRANSPOSE_TILE, TRANSPOSE_TILE), grid ``(ceil(C / TILE), ceil(R / TILE))``.
    """
    tile = cuda.shared.array((TRANSPOSE_TILE, TRANSPOSE_TILE_PAD), float32)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    rows, cols = a.shape
    c = cuda.blockIdx.x * TRANSPOSE_TILE + tx
    r = cuda.blockIdx.y * TRANSPOSE_TILE + ty
    if r < rows and c < cols:
        tile[ty, tx] = a[r, c]
    cuda.syncthreads()
    c = cuda.blockIdx.x * TRANSPOSE_TILE + ty
    r = cuda.blockIdx.y * TRANSPOSE_TILE + tx
    if r < rows and c < cols:
        out[c, r] = tile[tx, ty]
