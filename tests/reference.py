"""Float64 NumPy oracles for every kernel, written the obvious way: densify, then ``@``.

No test writes its own oracle inline; every parity test compares with a function from this module.
"""

from __future__ import annotations

import numpy as np


def csr_to_dense64(indptr, indices, data, shape) -> np.ndarray:
    """Dense float64 matrix from raw CSR arrays (duplicates summed)."""
    out = np.zeros(shape, dtype=np.float64)
    indptr = np.asarray(indptr, dtype=np.int64)
    rows = np.repeat(np.arange(shape[0]), np.diff(indptr))
    np.add.at(out, (rows, np.asarray(indices, dtype=np.int64)), np.asarray(data, dtype=np.float64))
    return out


def csr_int8_values64(indptr, qdata, scales, group_size) -> np.ndarray:
    """The stored values ``qdata[p] * scale`` (nnz,) in float64 of a pruned-int8 weight's raw arrays.

    Row ``i`` holds the values ``indptr[i]:indptr[i + 1]``. With ``group_size=None`` it has one scale,
    ``scales[i]``; otherwise its values are cut into runs of ``group_size`` (the last one shorter), and the
    runs of all rows, in row order, take the scales one after another (an empty row takes none).
    """
    indptr = [int(v) for v in np.asarray(indptr)]
    q = np.asarray(qdata, dtype=np.float64)
    s = np.asarray(scales, dtype=np.float64)
    values = np.zeros(q.size, dtype=np.float64)
    g = 0  # the next unused scale (grouped)
    for i in range(len(indptr) - 1):
        for j, p in enumerate(range(indptr[i], indptr[i + 1])):
            if group_size is None:
                values[p] = q[p] * s[i]
            else:
                values[p] = q[p] * s[g + j // group_size]
        if group_size is not None:
            m = indptr[i + 1] - indptr[i]
            g += (m + group_size - 1) // group_size
    assert g == s.size or group_size is None, "scales do not match the groups"
    return values


def dense64(weight) -> np.ndarray:
    """Any weight (ndarray, CSRWeight, CSRInt8Weight, Int8Weight, scipy.sparse) as a float64 dense matrix."""
    from numaccel.formats import CSRInt8Weight, CSRWeight, Int8Weight

    if isinstance(weight, np.ndarray):
        return weight.astype(np.float64)
    if isinstance(weight, CSRWeight):
        return csr_to_dense64(weight.indptr, weight.indices, weight.data, weight.shape)
    if isinstance(weight, CSRInt8Weight):
        values = csr_int8_values64(weight.indptr, weight.qdata, weight.scales, weight.group_size)
        return csr_to_dense64(weight.indptr, weight.indices, values, weight.shape)
    if isinstance(weight, Int8Weight):
        return ref_dequantize(weight.qweight, weight.scales, weight.zero_points, weight.group_size)
    if hasattr(weight, "tocoo"):  # scipy.sparse
        m = weight.tocoo()
        out = np.zeros(m.shape, dtype=np.float64)
        np.add.at(out, (m.row, m.col), m.data.astype(np.float64))
        return out
    raise TypeError(type(weight))


def ref_linear(x, weight, bias=None) -> np.ndarray:
    """``x @ W.T + bias`` in float64."""
    y = np.asarray(x, dtype=np.float64) @ dense64(weight).T
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float64)
    return y


def ref_spmm(A, B) -> np.ndarray:
    """``A @ B`` in float64."""
    return dense64(A) @ np.asarray(B, dtype=np.float64)


def expand_groups(a: np.ndarray, group_size, k: int) -> np.ndarray:
    """Per-row or per-group parameters ``a`` (N,) or (N, G) broadcast to (N, K)."""
    a = np.asarray(a, dtype=np.float64)
    if group_size is None:
        return np.repeat(a.reshape(-1, 1), k, axis=1)
    return np.repeat(a, min(group_size, max(k, 1)), axis=1)[:, :k]  # a group longer than the row is the row


def ref_dequantize(qweight, scales, zero_points=None, group_size=None) -> np.ndarray:
    """``(q - zero_point) * scale`` in float64."""
    q = np.asarray(qweight, dtype=np.float64)
    k = q.shape[1]
    s = expand_groups(scales, group_size, k)
    z = 0.0 if zero_points is None else expand_groups(zero_points, group_size, k)
    return (q - z) * s


def _scale32(span: float, edge: float) -> np.float32:
    """A group's float32 scale: ``span`` rounded to nearest, except that a scale among float32's
    subnormals is rounded up when rounding went down (so the group's range still fits the codes), and a
    group whose largest magnitude ``edge`` is within 1 % of float32's maximum takes
    ``edge / floor(edge / span)``, rounded down (so that no code dequantizes past float32's range)."""
    if edge > 0.99 * float(np.finfo(np.float32).max):
        span = edge / np.floor(edge / span + 1e-9)
        s = np.float32(span)
        return np.nextafter(s, np.float32(0)) if np.float64(s) > span else s
    s = np.float32(span)
    if s < np.finfo(np.float32).tiny and np.float64(s) < span:
        s = np.nextafter(s, np.float32(np.inf))
    return s


def ref_quantize(W, group_size=None, symmetric=True):
    """The quantization rules of design.md, in float64: returns (q int8, scales float32, zero_points)."""
    W = np.asarray(W, dtype=np.float64)
    n, k = W.shape
    g = k if group_size is None else group_size
    ngroups = 1 if group_size is None else -(-k // g)
    q = np.zeros((n, k), dtype=np.int8)
    scales = np.zeros((n, ngroups), dtype=np.float32)
    zps = None if symmetric else np.zeros((n, ngroups), dtype=np.int8)
    for i in range(n):
        for j in range(ngroups):
            blk = W[i, j * g:(j + 1) * g]
            if blk.size == 0:
                continue
            if symmetric:
                s = _scale32(np.abs(blk).max() / 127.0, np.abs(blk).max())
                scales[i, j] = s
                if s > 0:
                    q[i, j * g:(j + 1) * g] = np.clip(np.rint(blk / np.float64(s)), -127, 127)
            else:
                lo, hi = min(blk.min(), 0.0), max(blk.max(), 0.0)
                s = _scale32((hi - lo) / 255.0, max(-lo, hi))
                scales[i, j] = s
                if s > 0:
                    z = int(np.clip(np.rint(-128 - lo / np.float64(s)), -128, 127))
                    zps[i, j] = z
                    q[i, j * g:(j + 1) * g] = np.clip(np.rint(blk / np.float64(s)) + z, -128, 127)
    if group_size is None:
        scales = scales[:, 0]
        zps = None if zps is None else zps[:, 0]
    return q, scales, zps


def ref_quantize_csr(indptr, data, group_size=None):
    """Symmetric quantization of a pruned weight's stored values ``data`` (CSR rows by ``indptr``), in float64:
    returns (codes int8 (nnz,), scales float32). Each row, or each run of ``group_size`` consecutive stored
    values of a row, gets ``scale = max|v| / 127`` (rounded as :func:`_scale32`) and
    ``q = clip(rint(v / scale), -127, 127)``; an empty row has one scale, 0, without groups and none with them."""
    indptr = [int(v) for v in np.asarray(indptr)]
    data = np.asarray(data, dtype=np.float64)
    codes = np.zeros(data.size, dtype=np.int8)
    scales = []
    for i in range(len(indptr) - 1):
        lo, hi = indptr[i], indptr[i + 1]
        step = max(hi - lo, 1) if group_size is None else group_size
        starts = [lo] if group_size is None else range(lo, hi, step)
        for a in starts:
            blk = data[a:min(a + step, hi)]
            edge = float(np.abs(blk).max()) if blk.size else 0.0
            s = _scale32(edge / 127.0, edge)
            scales.append(s)
            if s > 0:
                codes[a:a + blk.size] = np.clip(np.rint(blk / np.float64(s)), -127, 127)
    return codes, np.array(scales, dtype=np.float32)


def ref_quantize_rows_uint8(x):
    """Per-row symmetric activation quantization used by W8A8: codes in [-127, 127] and float64 scales,
    ``s = max|x| / 127`` and ``q = rint(x * (1 / s))`` in float64, as the kernels round (multiplying by the
    reciprocal can round a value at a half step differently from dividing by ``s``)."""
    x = np.asarray(x, dtype=np.float64)
    amax = np.abs(x).max(axis=1)
    s = amax / 127.0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        inv = np.where(s > 0, 1.0 / s, 0.0)
        # a scale below 1 / float64 max (float64 rows with max|x| < 7.1e-307): 1 / s is inf, divide instead
        scaled = np.where(np.isinf(inv)[:, None], x / np.where(s > 0, s, 1.0)[:, None], x * inv[:, None])
        q = np.where(s[:, None] > 0, np.clip(np.rint(scaled), -127, 127), 0).astype(np.int64)
    return q, s


def ref_int_matmul(qx, qw) -> np.ndarray:
    """Exact integer product ``qx @ qw.T`` in int64."""
    return np.asarray(qx, dtype=np.int64) @ np.asarray(qw, dtype=np.int64).T


def ref_linear_w8a8(x, weight, bias=None) -> np.ndarray:
    """W8A8 ``linear``: rows of ``x`` quantized by ``ref_quantize_rows_uint8``, then
    ``(qx * sx) @ W.T + bias`` in float64 with the weight's dequantized values (what an exact int8 kernel
    computes, up to rounding)."""
    x = np.asarray(x, dtype=np.float64)
    qx, sx = ref_quantize_rows_uint8(x.reshape(-1, x.shape[-1]))
    y = ref_linear(qx * sx[:, None], weight, bias)
    return y.reshape(x.shape[:-1] + y.shape[-1:])


def ref_linear_w8a8_csr_int8(x, indptr, indices, qdata, scales, group_size, chunk=None) -> np.ndarray:
    """W8A8 ``linear`` of a pruned-int8 weight's raw arrays, as the kernels define it, in float64.

    Rows of ``x`` quantized by ``ref_quantize_rows_uint8``; each group's (or, ``group_size=None``, each
    row's, or each ``chunk`` of a row's) sum ``sum_p qdata[p] * qx[b, indices[p]]`` exact in int64; then
    ``y[b, i] = sx[b] * sum_g scales[g] * sum_g`` in float64, groups in order (the kernels' rounding).
    """
    x = np.asarray(x, dtype=np.float64)
    qx, sx = ref_quantize_rows_uint8(x)
    indptr = [int(v) for v in np.asarray(indptr)]
    idx = np.asarray(indices, dtype=np.int64)
    q = np.asarray(qdata, dtype=np.int64)
    s = np.asarray(scales, dtype=np.float32)
    n = len(indptr) - 1
    y = np.empty((x.shape[0], n), dtype=np.float64)
    g = 0
    for i in range(n):
        lo, hi = indptr[i], indptr[i + 1]
        step = group_size if group_size is not None else (chunk or max(hi - lo, 1))
        tot = np.zeros(x.shape[0], dtype=np.float64)
        for a in range(lo, hi, step):
            b = min(a + step, hi)
            isum = qx[:, idx[a:b]] @ q[a:b]  # exact: int64
            scale = s[g] if group_size is not None else s[i]
            tot = tot + np.float64(scale) * isum.astype(np.float64)
            g += 1
        y[:, i] = sx * tot
    return y


def ref_log_softmax(z) -> np.ndarray:
    """``log(softmax(z))`` over the last axis, in float64 (row maximum subtracted)."""
    z = np.asarray(z, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def ref_cross_entropy(logits, labels) -> float:
    """Mean softmax cross-entropy against class ids, in float64."""
    logp = ref_log_softmax(logits)
    return float(-np.mean([logp[i, c] for i, c in enumerate(labels)]))


def ref_kd_loss(student_logits, teacher_logits, labels, temperature, alpha) -> float:
    """Hinton et al. (2015): ``alpha T^2 KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) CE``, batch mean."""
    T = float(temperature)
    log_qs = ref_log_softmax(np.asarray(student_logits, dtype=np.float64) / T)
    log_qt = ref_log_softmax(np.asarray(teacher_logits, dtype=np.float64) / T)
    kl = np.mean(np.sum(np.exp(log_qt) * (log_qt - log_qs), axis=-1))
    return float(alpha * T * T * kl + (1.0 - alpha) * ref_cross_entropy(student_logits, labels))


def ref_activation(name: str, x) -> np.ndarray:
    """ReLU, exact GELU (``x * Phi(x)`` through ``math.erf``) or tanh GELU, in float64."""
    import math

    x = np.asarray(x, dtype=np.float64)
    if name == "relu":
        return np.maximum(x, 0.0)
    if name == "gelu":
        return x * 0.5 * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))
    if name == "gelu_tanh":
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
    raise ValueError(name)


def ref_mlp(x, weights, biases, activation: str) -> np.ndarray:
    """An MLP's forward pass in float64: ``linear`` layers (any weight format, densified) with the activation
    between consecutive ones."""
    h = np.asarray(x, dtype=np.float64)
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        if i:
            h = ref_activation(activation, h)
        h = ref_linear(h, w, b)
    return h
