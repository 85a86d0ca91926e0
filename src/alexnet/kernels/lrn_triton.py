"""The paper's LRN as Triton kernels: the GPU counterpart of `alexnet.kernels.lrn`'s CPU kernel.

The torch path of `alexnet.kernels.lrn` makes about a dozen passes over conv1's maps in each
direction (the window sum alone is five slices added in turn), and on an H100 those passes,
not the convolutions, were the largest share of a training step (docs/benchmarks.md). Here
each (image, tower) block of maps is swept channel by channel: the window's five loads of
one pixel column hit cache, so the forward pass reads x once and writes b once, and the
backward pass reads x and g twice and writes one float32 buffer and dL/dx.

Both kernels take the maps in place, in NCHW or channels_last, any float dtype, and compute
in float32 (float64 for float64 maps), as the other backends do. Formulas: see
`alexnet.kernels.lrn`.

`TRITON_INTERPRET=1` runs these kernels on CPU tensors, which is how the tests check them on
machines without a GPU.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from alexnet.core.errors import UserError

BLOCK = 256  # pixels per program: one vector of loads per channel


@triton.jit
def _power(s, beta, BETA_IS_075: tl.constexpr):
    """s ** -beta; the paper's 0.75 as rsqrt(s) * sqrt(rsqrt(s)), as `alexnet.kernels.lrn` does."""
    if BETA_IS_075:
        r = 1.0 / tl.sqrt(s)
        out = r * tl.sqrt(r)
    else:
        out = tl.exp2(-beta * tl.log2(s))
    return out


@triton.jit
def _params(params_ptr):
    """coefficient, beta, k in the compute dtype: a float argument would be float32 even for float64
    maps, and coefficient = 1e-4 in float32 is off by 2.5e-8."""
    return tl.load(params_ptr), tl.load(params_ptr + 1), tl.load(params_ptr + 2)


@triton.jit
def _window_sum(ptr, base, offs, stride_c, c, C: tl.constexpr, SIZE: tl.constexpr, mask,
                SQUARE: tl.constexpr, ACC: tl.constexpr):  # fmt: skip
    """Sum over the SIZE channels centred on channel c (of squares with SQUARE), zeros past
    the group's edges."""
    acc = tl.zeros(offs.shape, dtype=ACC)
    for j in tl.static_range(SIZE):
        cc = c + j - SIZE // 2
        # (broadcast first: Triton's CPU interpreter rejects a scalar & vector mask)
        chan = tl.full(mask.shape, cc, tl.int32)
        inside = mask & (chan >= 0) & (chan < C)
        v = tl.load(ptr + base + cc * stride_c + offs, mask=inside, other=0.0).to(ACC)
        if SQUARE:
            acc += v * v
        else:
            acc += v
    return acc


@triton.jit
def _forward_kernel(x_ptr, out_ptr, P, groups, stride_n, stride_c, stride_p,
                    params_ptr, C: tl.constexpr, SIZE: tl.constexpr,
                    BETA_IS_075: tl.constexpr, ACC: tl.constexpr,
                    BLOCK: tl.constexpr):  # fmt: skip
    coefficient, beta, k = _params(params_ptr)
    b = tl.program_id(0)
    pixels = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = pixels < P
    base = (b // groups).to(tl.int64) * stride_n + (b % groups) * C * stride_c
    offs = pixels.to(tl.int64) * stride_p
    for c in range(C):
        s = k + coefficient * _window_sum(x_ptr, base, offs, stride_c, c, C, SIZE, mask, True, ACC)
        at = x_ptr + base + c * stride_c + offs
        a = tl.load(at, mask=mask, other=0.0).to(ACC)
        b_ = a * _power(s, beta, BETA_IS_075)
        tl.store(out_ptr + base + c * stride_c + offs, b_.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _backward_kernel(x_ptr, g_ptr, u_ptr, out_ptr, P, groups, stride_n, stride_c, stride_p,
                     params_ptr, C: tl.constexpr, SIZE: tl.constexpr,
                     BETA_IS_075: tl.constexpr, ACC: tl.constexpr,
                     BLOCK: tl.constexpr):  # fmt: skip
    coefficient, beta, k = _params(params_ptr)
    b = tl.program_id(0)
    pixels = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = pixels < P
    base = (b // groups).to(tl.int64) * stride_n + (b % groups) * C * stride_c
    offs = pixels.to(tl.int64) * stride_p
    # u (ACC, contiguous (B, C, P)): g[j] * a[j] * s[j] ** (-beta - 1), which every
    # channel in j's window sums.
    u_base = b.to(tl.int64) * C * P
    u_offs = pixels.to(tl.int64)
    for c in range(C):
        s = k + coefficient * _window_sum(x_ptr, base, offs, stride_c, c, C, SIZE, mask, True, ACC)
        a = tl.load(x_ptr + base + c * stride_c + offs, mask=mask, other=0.0).to(ACC)
        g = tl.load(g_ptr + base + c * stride_c + offs, mask=mask, other=0.0).to(ACC)
        u = g * a * _power(s, beta, BETA_IS_075) / s
        tl.store(u_ptr + u_base + c * P + u_offs, u, mask=mask)
    # Each program reads back only the u it wrote (same b, same pixels), so a barrier between
    # the programs is not needed; this one orders the stores before the loads.
    tl.debug_barrier()
    for c in range(C):
        s = k + coefficient * _window_sum(x_ptr, base, offs, stride_c, c, C, SIZE, mask, True, ACC)
        t = _window_sum(u_ptr, u_base, u_offs, P, c, C, SIZE, mask, False, ACC)
        a = tl.load(x_ptr + base + c * stride_c + offs, mask=mask, other=0.0).to(ACC)
        g = tl.load(g_ptr + base + c * stride_c + offs, mask=mask, other=0.0).to(ACC)
        d = g * _power(s, beta, BETA_IS_075) - (2.0 * coefficient * beta) * a * t
        tl.store(out_ptr + base + c * stride_c + offs, d.to(out_ptr.dtype.element_ty), mask=mask)


def _acc(x: torch.Tensor):
    """The dtype the kernels compute in: float32, or float64 for float64 maps (gradcheck)."""
    return tl.float64 if x.dtype == torch.float64 else tl.float32


def _u_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _pack(x: torch.Tensor, coefficient: float, beta: float, k: float) -> torch.Tensor:
    return _constants(coefficient, beta, k, _u_dtype(x), x.device)


@functools.cache
def _constants(coefficient, beta, k, dtype, device) -> torch.Tensor:
    """Made once per setting: a fresh tensor would be a host-to-device copy every call."""
    return torch.tensor([coefficient, beta, k], dtype=dtype, device=device)


def _geometry(x: torch.Tensor, groups: int) -> tuple:
    """(blocks, pixels, strides) of x's (N, C, H, W) as (N * groups, C / groups, H * W) blocks,
    for either contiguous layout."""
    if x.dim() != 4:
        x = x.reshape(*x.shape[:2], -1, 1)
    n, c, h, w = x.shape
    if x.is_contiguous():
        stride_p = 1
    elif x.is_contiguous(memory_format=torch.channels_last):
        stride_p = c
    else:
        raise UserError("the Triton LRN takes NCHW or channels_last maps; call .contiguous()")
    return x, n * groups, h * w, (x.stride(0), x.stride(1), stride_p)


def forward(x: torch.Tensor, size: int, coefficient: float, beta: float, k: float, groups: int):
    x4, blocks, pixels, strides = _geometry(x, groups)
    out = torch.empty_like(x4)
    grid = (blocks, triton.cdiv(pixels, BLOCK))
    _forward_kernel[grid](
        x4, out, pixels, groups, *strides, _pack(x, coefficient, beta, k),
        C=x4.shape[1] // groups, SIZE=size, BETA_IS_075=beta == 0.75, ACC=_acc(x), BLOCK=BLOCK,
    )  # fmt: skip
    return out.reshape(x.shape)


def backward(x, grad, size: int, coefficient: float, beta: float, k: float, groups: int):
    x4, blocks, pixels, strides = _geometry(x, groups)
    # The incoming gradient in x's layout, so one set of strides serves both.
    g4 = grad.reshape(x4.shape).contiguous(
        memory_format=torch.channels_last if strides[2] != 1 else torch.contiguous_format
    )
    out = torch.empty_like(x4)
    u = torch.empty((blocks, x4.shape[1] // groups, pixels), dtype=_u_dtype(x), device=x.device)
    grid = (blocks, triton.cdiv(pixels, BLOCK))
    _backward_kernel[grid](
        x4, g4, u, out, pixels, groups, *strides, _pack(x, coefficient, beta, k),
        C=x4.shape[1] // groups, SIZE=size, BETA_IS_075=beta == 0.75, ACC=_acc(x), BLOCK=BLOCK,
    )  # fmt: skip
    return out.reshape(x.shape)
