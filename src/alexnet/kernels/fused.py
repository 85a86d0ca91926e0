"""conv1's and conv2's ReLU -> LRN -> max-pool as one operation on CPU.

The paper applies ReLU, then response normalization, then overlapping pooling to the
outputs of conv1 and conv2 (sections 3.3-3.5). As three torch operations that is six passes
over the largest activations of the network (forward and backward) and two more tensors of
their size; they cost about as much as the convolutions around them. Here one kernel reads
each (image, tower) block of maps once while it sits in cache:

    forward:   a = relu(z);  b = a * s ** -beta  (s as in `alexnet.kernels.lrn`);  y = maxpool(b)
    backward:  dL/db = the pooled gradient routed to each window's maximum,
               dL/da = `alexnet.kernels.lrn`'s closed form,  dL/dz = dL/da where z > 0

Only z (the convolution's output) is kept for the backward pass; a, s and b are recomputed,
which costs less than storing and reloading them. The arithmetic is the same as the three
operations in sequence: ties in a pooling window go to the first maximum in row-major order
and a NaN wins, as in torch's max_pool2d, and a NaN passes the ReLU, so a diverging run
still shows a non-finite loss. `alexnet.nn.block` calls it for CPU tensors in training and
inference; other devices, other activations and pool-then-normalize run the layers in turn.
"""

from __future__ import annotations

import numba
import numpy as np
import torch

from alexnet.core.errors import UserError
from alexnet.kernels.lrn import constants, powers, run_blocks
from alexnet.kernels.ops import call, register_gradient

NJIT = {"nogil": True, "cache": True, "error_model": "numpy", "fastmath": {"contract"}}


def relu_lrn_pool(
    z: torch.Tensor,
    size: int,
    coefficient: float,
    beta: float,
    k: float,
    groups: int,
    pool_size: int,
    pool_stride: int,
) -> torch.Tensor:
    """max_pool2d(lrn(relu(z)), pool_size, pool_stride) of CPU maps (N, C, H, W).

    `coefficient` multiplies the sum of squares (`alexnet.kernels.lrn.lrn`); pooling has no
    padding and rounds its output count down (PyTorch's default, the paper's 55 -> 27 -> 13).
    """
    if z.device.type != "cpu" or z.dim() != 4:
        raise UserError(
            f"relu_lrn_pool takes CPU maps (N, C, H, W), got {tuple(z.shape)} on {z.device}"
        )
    h, w = z.shape[-2:]
    if h < pool_size or w < pool_size:
        raise UserError(f"maps of {h}x{w} are smaller than the {pool_size}x{pool_size} pool")
    params = (size, float(coefficient), float(beta), float(k), groups, pool_size, pool_stride)
    return call(torch.ops.alexnet.relu_lrn_pool, _forward, _backward, z, *params)


# The kernels as custom operators (`torch.ops.alexnet.relu_lrn_pool` and its backward), so
# that torch.compile and export keep them as single operations instead of tracing into numba.


def _forward(
    z: torch.Tensor, size: int, coefficient: float, beta: float, k: float, groups: int,
    pool_size: int, pool_stride: int
) -> torch.Tensor:  # fmt: skip
    n, c, h, w = z.shape
    ho, wo = _pooled(h, pool_size, pool_stride), _pooled(w, pool_size, pool_stride)
    raw = _raw(z, groups)
    real = torch.float64 if z.dtype == torch.float64 else torch.float32
    # written in z's dtype by the kernel (bf16 rounded as torch rounds it): a conversion
    # pass over the output afterwards cost as much as a third of the kernel
    out = torch.empty(n * groups, c // groups, ho, wo, dtype=z.dtype if z.dtype in _RAW else real)
    run_blocks(
        _forward_kernel, raw.shape[0], raw, _raw(out, 1), size // 2,
        *constants(real, coefficient, beta, k), pool_size, pool_stride, z.dtype == torch.bfloat16,
    )  # fmt: skip
    return out.reshape(n, c, ho, wo).to(z.dtype)


def _backward(
    z: torch.Tensor, grad: torch.Tensor, size: int, coefficient: float, beta: float, k: float,
    groups: int, pool_size: int, pool_stride: int
) -> torch.Tensor:  # fmt: skip
    raw = _raw(z, groups)
    real = torch.float64 if z.dtype == torch.float64 else torch.float32
    # the incoming gradient as z's kernels read z (bf16 widened inside, map by map)
    g = _raw(grad.to(z.dtype if z.dtype in _RAW else real), groups)
    g = g.reshape(raw.shape[0], raw.shape[1], *grad.shape[-2:])
    out = torch.empty(z.shape, dtype=z.dtype if z.dtype in _RAW else real)
    run_blocks(
        _backward_kernel, raw.shape[0], raw, _raw(out, groups), size // 2,
        *constants(real, coefficient, beta, k), pool_size, pool_stride,
        z.dtype == torch.bfloat16, g,
    )  # fmt: skip
    return out.to(z.dtype)


def _pooled(side: int, pool_size: int, pool_stride: int) -> int:
    """Windows along one axis: no padding, the count rounded down (the paper's 55 -> 27)."""
    return (side - pool_size) // pool_stride + 1


_forward_op = torch.library.custom_op(
    "alexnet::relu_lrn_pool", _forward, mutates_args=(), device_types="cpu"
)
_backward_op = torch.library.custom_op(
    "alexnet::relu_lrn_pool_backward", _backward, mutates_args=(), device_types="cpu"
)


@_forward_op.register_fake
def _(z, size, coefficient, beta, k, groups, pool_size, pool_stride):
    n, c, h, w = z.shape
    return z.new_empty(n, c, _pooled(h, pool_size, pool_stride), _pooled(w, pool_size, pool_stride))


@_backward_op.register_fake
def _(z, grad, size, coefficient, beta, k, groups, pool_size, pool_stride):
    return z.new_empty(z.shape)


register_gradient(_forward_op, torch.ops.alexnet.relu_lrn_pool_backward)


#: Dtypes the kernels read and write directly; others (fp16) are computed in float32.
_RAW = (torch.float32, torch.float64, torch.bfloat16)


def _raw(x: torch.Tensor, groups: int) -> np.ndarray:
    """(N, C, H, W) as a contiguous numpy array (N * groups, C / groups, H, W) sharing x's
    memory when x is contiguous: float32 or float64, or bf16 as its uint16 bit patterns."""
    if x.dtype not in _RAW:
        x = x.float()
    n, c, h, w = x.shape
    x = x.detach().contiguous().reshape(n * groups, c // groups, h, w)
    if x.dtype == torch.bfloat16:
        return x.view(torch.int16).numpy().view(np.uint16)
    return x.numpy()


@numba.njit(**NJIT)
def _load(raw, b, block, bf16):
    """block[:] = the maps of raw[b] (maps, pixels) in block's precision; bf16 bit patterns
    (`bf16`: raw is uint16) widen exactly to float32 by a 16-bit shift."""
    src = raw[b].reshape(block.shape)
    if bf16:
        bits = block.view(np.uint32)
        for c in range(block.shape[0]):
            for p in range(block.shape[1]):
                bits[c, p] = np.uint32(src[c, p]) << 16
    else:
        for c in range(block.shape[0]):
            for p in range(block.shape[1]):
                block[c, p] = src[c, p]


@numba.njit(**NJIT)
def _store(block, raw, b, bf16):
    """raw[b] = block, rounded to the nearest even bf16 when raw holds bf16 bit patterns
    (torch's rounding; a NaN stays a NaN)."""
    dst = raw[b].reshape(block.shape)
    if bf16:
        bits = block.view(np.uint32)
        for c in range(block.shape[0]):
            for p in range(block.shape[1]):
                v = bits[c, p]
                if block[c, p] != block[c, p]:
                    dst[c, p] = np.uint16(0x7FC0)
                else:
                    dst[c, p] = np.uint16((v + np.uint32(0x7FFF) + ((v >> 16) & 1)) >> 16)
    else:
        for c in range(block.shape[0]):
            for p in range(block.shape[1]):
                dst[c, p] = block[c, p]


@numba.njit(**NJIT)
def _squares(block, half, zero, sq):
    """sq[half + c] = relu(block[c]) ** 2; sq's first and last `half` rows stay zero, so every
    map's window is `size` whole rows of sq, also at the edges."""
    for c in range(block.shape[0]):
        row, out = block[c], sq[half + c]
        for p in range(row.shape[0]):
            v = row[p]
            out[p] = v * v if (v > zero) | (v != v) else zero  # a NaN passes, as torch.relu


@numba.njit(**NJIT)
def _window(rows, c, size, acc):
    """acc[:] = rows[c] + ... + rows[c + size - 1], added in that order. For the paper's
    n = 5 the five rows are added in one pass over acc, not five."""
    if size == 5:
        r0, r1, r2, r3, r4 = rows[c], rows[c + 1], rows[c + 2], rows[c + 3], rows[c + 4]
        for p in range(acc.shape[0]):
            acc[p] = (((r0[p] + r1[p]) + r2[p]) + r3[p]) + r4[p]
    else:
        acc[:] = rows[c]
        for j in range(c + 1, c + size):
            row = rows[j]
            for p in range(acc.shape[0]):
                acc[p] += row[p]


@numba.njit(**NJIT)
def _normalized(block, sq, c, half, coefficient, beta, k, one, acc, scale, out):
    """out[:] = LRN(relu(block))[c] and scale[:] = s ** -beta; acc[:] = s."""
    zero = one - one
    _window(sq, c, half + half + 1, acc)
    for p in range(acc.shape[0]):
        acc[p] = k + coefficient * acc[p]
        scale[p] = acc[p]
    powers(scale, beta, one)
    row = block[c]
    for p in range(acc.shape[0]):
        v = row[p]
        out[p] = (v if (v > zero) | (v != v) else zero) * scale[p]


# The pooling below is written for SIMD. Each step is a select over contiguous memory, and
# no index is a signed sum: numba checks a signed index for wraparound, and that check alone
# kept these loops scalar, and the whole backward pass slower.


@numba.njit(**NJIT)
def _column_max(image, pool_size, pool_stride, rows):
    """rows[oy, x] = the maximum down column x of output row oy's windows; a NaN wins."""
    ho, w = rows.shape
    for oy in range(ho):
        top = oy * pool_stride
        r, line = rows[oy], image[top]
        for x in range(w):
            r[x] = line[x]
        for dy in range(1, pool_size):
            line = image[top + dy]
            for x in range(w):
                v, m = line[x], r[x]
                r[x] = v if (v > m) | (v != v) else m


@numba.njit(**NJIT)
def _column_argmax(image, pool_size, pool_stride, rows, at):
    """`_column_max`, and at[oy, x] = where that maximum is, as a flat index into image: its
    first row going down (a NaN counts as the maximum)."""
    ho, w = rows.shape
    for oy in range(ho):
        top = oy * pool_stride
        r, a, line = rows[oy], at[oy], image[top]
        start = np.int32(top * w)
        for x in range(w):
            r[x] = line[x]
            a[x] = start + np.int32(x)
        for dy in range(1, pool_size):
            line = image[top + dy]
            start = np.int32((top + dy) * w)
            for x in range(w):
                v, m = line[x], r[x]
                up = (v > m) | ((v != v) & (m == m))
                r[x] = v if up else m
                a[x] = start + np.int32(x) if up else a[x]


@numba.njit(**NJIT)
def _deinterleave(rows, pool_stride, phases):
    """phases[ph, oy, i] = rows[oy, i * pool_stride + ph]. Column ox * stride + dx of window
    ox is then phases[dx % stride, oy, ox + dx // stride]: for one dx, the windows of all
    rows read one contiguous run (phases has a spare row for the run's end)."""
    ho, w = rows.shape
    step = np.uint64(pool_stride)
    for ph in range(pool_stride):
        phase = np.uint64(ph)
        for oy in range(ho):
            src, dst = rows[oy], phases[ph, oy]
            for i in range(np.uint64((w - ph + pool_stride - 1) // pool_stride)):
                dst[i] = src[i * step + phase]


@numba.njit(**NJIT)
def _pool_max(image, pool_size, pool_stride, rows, phases, best, out):
    """out[oy, ox] = the maximum of each window of image (h, w); a NaN wins, as in torch.

    Separable: down each window's rows first (into rows (ho, w)), then across its columns
    through the de-interleaved phases. best holds one value per (oy, phase column); the
    columns past the last window are computed and ignored."""
    ho, wo = out.shape
    _column_max(image, pool_size, pool_stride, rows)
    _deinterleave(rows, pool_stride, phases)
    split = phases.shape[2]
    n = ho * split
    m, first = best[:n], phases[0].reshape(-1)
    for q in range(n):
        m[q] = first[q]
    for dx in range(1, pool_size):
        shift = dx // pool_stride
        column = phases[dx % pool_stride].reshape(-1)[shift : shift + n]
        for q in range(n):
            v, mq = column[q], m[q]
            m[q] = v if (v > mq) | (v != v) else mq
    for oy in range(ho):
        o, mo = out[oy], m[oy * split : oy * split + wo]
        for ox in range(wo):
            o[ox] = mo[ox]


@numba.njit(**NJIT)
def _route(image, grad, pool_size, pool_stride, rows, at, phases, phases_at, best, best_at, out):
    """out[:] = grad (ho, wo) routed to each window's first maximum in row-major order, as
    torch's max_pool2d routes it (a NaN counts as the maximum); out is image's flattening.

    Separable, as `_pool_max`, carrying each maximum's flat index: across columns a larger
    value wins, and an equal one only from a lower index, which is row-major order."""
    ho, wo = grad.shape
    _column_argmax(image, pool_size, pool_stride, rows, at)
    _deinterleave(rows, pool_stride, phases)
    _deinterleave(at, pool_stride, phases_at)
    split = phases.shape[2]
    n = ho * split
    m, a = best[:n], best_at[:n]
    first, first_at = phases[0].reshape(-1), phases_at[0].reshape(-1)
    for q in range(n):
        m[q] = first[q]
        a[q] = first_at[q]
    for dx in range(1, pool_size):
        shift = dx // pool_stride
        column = phases[dx % pool_stride].reshape(-1)[shift : shift + n]
        column_at = phases_at[dx % pool_stride].reshape(-1)[shift : shift + n]
        for q in range(n):
            v, va, mq, aq = column[q], column_at[q], m[q], a[q]
            up = (mq == mq) & ((v > mq) | (v != v) | ((v == mq) & (va < aq)))
            m[q] = v if up else mq
            a[q] = va if up else aq
    out[:] = 0
    for oy in range(ho):
        g, ao = grad[oy], a[oy * split : oy * split + wo]
        for ox in range(wo):
            out[np.uint64(ao[ox])] += g[ox]


@numba.njit(**NJIT)
def _forward_kernel(
    start, stop, raw, out, half, coefficient, beta, k, one, pool_size, pool_stride, bf16
):
    maps, h, w = raw.shape[1], raw.shape[2], raw.shape[3]
    block = np.full((maps, h * w), one)  # the block's maps in the arithmetic's precision
    acc, scale, normed = np.full(h * w, one), np.full(h * w, one), np.full(h * w, one)
    ho, split = out.shape[2], (w + pool_stride - 1) // pool_stride
    rows, phases = np.full((ho, w), one), np.full((pool_stride, ho + 1, split), one)
    best = np.full((ho + 1) * split, one)
    sq = np.zeros((maps + 2 * half, h * w), block.dtype)
    pooled = np.full((ho, out.shape[3]), one)
    for b in range(start, stop):
        _load(raw, b, block, bf16)
        _squares(block, half, one - one, sq)
        for c in range(maps):
            _normalized(block, sq, c, half, coefficient, beta, k, one, acc, scale, normed)
            _pool_max(normed.reshape(h, w), pool_size, pool_stride, rows, phases, best, pooled)
            _store(pooled, out[b], c, bf16)


@numba.njit(**NJIT)
def _backward_kernel(
    start, stop, raw, out, half, coefficient, beta, k, one, pool_size, pool_stride, bf16, g
):
    maps, h, w = raw.shape[1], raw.shape[2], raw.shape[3]
    ho = g.shape[2]
    pixels = h * w
    zero = one - one
    slope = (coefficient + coefficient) * beta
    block = np.full((maps, pixels), one)
    grad = np.full((maps, pixels), one)  # dL/dz of the block
    # t[half + c] = dL/db * a * s ** (-beta - 1) of map c, and sq the squares, both with
    # `half` zero rows on either side (see `_squares`)
    t = np.zeros((maps + 2 * half, pixels), block.dtype)
    sq = np.zeros((maps + 2 * half, pixels), block.dtype)
    acc, scale = np.full(pixels, one), np.full(pixels, one)
    normed, grad_b = np.full(pixels, one), np.full(pixels, one)
    split = (w + pool_stride - 1) // pool_stride
    rows, at = np.full((ho, w), one), np.zeros((ho, w), np.int32)
    phases = np.full((pool_stride, ho + 1, split), one)
    phases_at = np.zeros((pool_stride, ho + 1, split), np.int32)
    best, best_at = np.full((ho + 1) * split, one), np.zeros((ho + 1) * split, np.int32)
    pooled_grad = np.full((ho, g.shape[3]), one)
    for b in range(start, stop):
        _load(raw, b, block, bf16)
        _squares(block, half, zero, sq)
        for c in range(maps):
            _normalized(block, sq, c, half, coefficient, beta, k, one, acc, scale, normed)
            _load(g[b], c, pooled_grad, bf16)
            _route(
                normed.reshape(h, w), pooled_grad, pool_size, pool_stride,
                rows, at, phases, phases_at, best, best_at, grad_b,
            )  # fmt: skip
            row, tc, gc = block[c], t[half + c], grad[c]
            for p in range(pixels):
                v = row[p]
                a = v if v > zero or v != v else zero
                tc[p] = grad_b[p] * a * scale[p] / acc[p]
                gc[p] = grad_b[p] * scale[p]
        for c in range(maps):
            _window(t, c, half + half + 1, acc)
            row, gc = block[c], grad[c]
            for p in range(pixels):
                v = row[p]
                gc[p] = gc[p] - slope * v * acc[p] if v > zero or v != v else zero
        _store(grad, out, b, bf16)
