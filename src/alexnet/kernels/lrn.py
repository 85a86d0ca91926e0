"""The LRN's kernels (section 3.3 of the paper) and the choice among them.

    b[i] = a[i] * s[i] ** -beta,   s[i] = k + c * sum_{j in W(i)} a[j] ** 2

where c is the coefficient in front of the sum (the paper's alpha; alpha / n under the
released code's convention: `alexnet.nn.lrn` converts) and W(i) the window of `size` maps
centred on map i, cut at the edges of i's group (tower). Differentiating,

    dL/da[i] = g[i] * s[i] ** -beta
               - 2 * c * beta * a[i] * sum_{j in W(i)} g[j] * a[j] * s[j] ** (-beta - 1)

because i is in W(j) exactly when j is in W(i). Autograd through the formula keeps half a
dozen activation-sized tensors and makes as many passes over memory; these kernels keep only
the input and recompute s in the backward pass, which is cheap next to a trip to memory.

Backends (`BACKENDS`, chosen by `lrn`):
- kernel: on CPU one fused numba kernel does each pass over a (group, image) block of maps
  while the block sits in cache, with beta = 0.75 (the paper's) taken through square roots
  rather than `pow`;
- triton: on a GPU, the Triton kernels of `alexnet.kernels.lrn_triton` do the same;
- torch: the same two formulas as a handful of torch operations, on any device.

All compute in float32 at least: bf16 or fp16 activations under autocast are widened for the
sum of squares and the power, and the result is rounded back to the input's dtype. Every
argument is required: the paper's values are written once, in `alexnet.nn.lrn`.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import torch
import torch.nn.functional as F

from alexnet.core.errors import UserError
from alexnet.kernels.ops import call, register_gradient

#: Backends: "auto" picks "kernel" on CPU, "triton" on CUDA when Triton can be imported
#: (except under torch.compile), and "torch" elsewhere.
BACKENDS = ("auto", "kernel", "torch", "triton")


def check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise UserError(f"LRN backend must be one of {', '.join(BACKENDS)}, got {backend!r}")


def lrn(
    x: torch.Tensor,
    size: int,
    coefficient: float,
    beta: float,
    k: float,
    groups: int,
    backend: str,
) -> torch.Tensor:
    """b = a * (k + coefficient * window sum of a^2) ** -beta over (N, C, ...) maps, each of
    `groups` towers normalized separately. Maps past a group's first or last map count as
    zero, the paper's max(0, .) and min(N - 1, .) bounds."""
    check_backend(backend)
    if backend == "auto":
        backend = _auto_backend(x.device)
    if backend == "kernel" and x.device.type != "cpu":
        raise UserError(f"the LRN kernel runs on CPU tensors, got one on {x.device}")
    if backend == "triton":
        # checked before Triton is imported: its kernels are compiled or interpreted as
        # TRITON_INTERPRET says when the module is first imported, once per process
        if x.device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
            raise UserError(
                f"the Triton LRN runs on CUDA tensors (or on CPU with TRITON_INTERPRET=1), "
                f"got one on {x.device}"
            )
        if not _triton_available():
            raise UserError("the LRN backend 'triton' needs the triton package")
    params = (size, float(coefficient), float(beta), float(k), groups)
    if backend == "torch":
        return _LRN.apply(x, *params)
    return call(torch.ops.alexnet.lrn, _lrn_forward, _lrn_backward, x, *params, backend)


class _LRN(torch.autograd.Function):
    """The torch path: plain tensor operations, which torch.compile traces and fuses."""

    @staticmethod
    def forward(ctx, x, size, coefficient, beta, k, groups):
        ctx.params = (size, coefficient, beta, k, groups)
        ctx.save_for_backward(x)
        a = _blocks(x, groups)
        return _unblock(a * _power(k + coefficient * _window(a.square(), size), beta), x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        size, coefficient, beta, k, groups = ctx.params
        a, g = _blocks(x, groups), _blocks(grad, groups)
        s = k + coefficient * _window(a.square(), size)
        scale = _power(s, beta)
        t = _window(g * a * scale / s, size)
        out = g * scale - (2.0 * coefficient * beta) * a * t
        return _unblock(out, x), None, None, None, None, None


# The hand-written kernels as custom operators (`torch.ops.alexnet.lrn` and `lrn_backward`):
# torch.compile and export see one opaque operation with a known output, where they would
# otherwise try to trace into numba or Triton and fail.


def _lrn_forward(
    x: torch.Tensor, size: int, coefficient: float, beta: float, k: float, groups: int, backend: str
) -> torch.Tensor:
    if backend == "triton":
        return _triton().forward(_dense(x), size, coefficient, beta, k, groups)
    out = _run(_forward_kernel, _blocks(x, groups), size, coefficient, beta, k)
    return _unblock(out, x)


def _lrn_backward(
    x: torch.Tensor, grad: torch.Tensor, size: int, coefficient: float, beta: float, k: float,
    groups: int, backend: str
) -> torch.Tensor:  # fmt: skip
    if backend == "triton":
        return _triton().backward(_dense(x), grad, size, coefficient, beta, k, groups)
    out = _run(
        _backward_kernel, _blocks(x, groups), size, coefficient, beta, k, _blocks(grad, groups)
    )
    return _unblock(out, x)


_lrn_op = torch.library.custom_op("alexnet::lrn", _lrn_forward, mutates_args=())
_lrn_backward_op = torch.library.custom_op("alexnet::lrn_backward", _lrn_backward, mutates_args=())


def _output_like(x: torch.Tensor, backend: str) -> torch.Tensor:
    """An empty tensor with the layout the kernels return: the Triton kernels write NCHW or
    channels_last input in place of its layout, the CPU kernel writes NCHW."""
    if backend == "triton":
        return torch.empty_like(_dense(x))
    return x.new_empty(x.shape)


@_lrn_op.register_fake
def _(x, size, coefficient, beta, k, groups, backend):
    return _output_like(x, backend)


@_lrn_backward_op.register_fake
def _(x, grad, size, coefficient, beta, k, groups, backend):
    return _output_like(x, backend)


register_gradient(_lrn_op, torch.ops.alexnet.lrn_backward)


def _auto_backend(device: torch.device) -> str:
    if device.type == "cpu":
        return "kernel"
    if torch.compiler.is_compiling():
        # Under torch.compile the torch formulas become Inductor's own fused Triton kernels.
        # backend="triton" keeps the hand-written ones as an opaque operator in the graph;
        # which is faster compiled is yet to be measured on a GPU.
        return "torch"
    if device.type == "cuda":
        if _triton_available():
            return "triton"
        _warn_no_triton()
    return "torch"


@functools.cache
def _warn_no_triton() -> None:
    """Said once per process: the LRN on a GPU without Triton runs as torch operations."""
    logging.getLogger("alexnet").warning(
        "the LRN on CUDA runs as torch operations (slower, same result): the triton package "
        "does not import (torch's CUDA builds include it)"
    )


@functools.cache
def _triton_available() -> bool:
    try:
        _triton()
    except ImportError:
        return False
    return True


def _triton():
    from alexnet.kernels import lrn_triton  # imports triton, which CPU-only installs may lack

    return lrn_triton


def _dense(x: torch.Tensor) -> torch.Tensor:
    """x itself when NCHW or channels_last (the layouts the Triton kernels take), else a copy."""
    if x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last):
        return x
    return x.contiguous()


def _blocks(x: torch.Tensor, groups: int) -> torch.Tensor:
    """(N, C, ...) as contiguous (N * groups, C / groups, pixels), float32 at least."""
    n, c = x.shape[:2]
    a = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    return a.contiguous().reshape(n * groups, c // groups, -1)


def _unblock(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return out.reshape(x.shape).to(x.dtype)


# The torch path (any device).


def _window(squares: torch.Tensor, size: int) -> torch.Tensor:
    """Sum over the `size` maps centred on each map of (B, C, P), zeros past the edges."""
    half = size // 2
    padded = F.pad(squares, (0, 0, half, half))
    c = squares.shape[1]
    total = padded[:, 0:c].clone()
    for j in range(1, size):
        total += padded[:, j : j + c]
    return total


def _power(s: torch.Tensor, beta: float) -> torch.Tensor:
    """s ** -beta; the paper's 0.75 as s ** -0.5 * s ** -0.25, cheaper than pow."""
    if beta != 0.75:
        return s.pow(-beta)
    r = s.rsqrt()
    return r * r.sqrt()


# The CPU kernel: each call handles blocks [start, stop) of (blocks, C, P) arrays; threads
# split the blocks between them (the kernels release the GIL).


@numba.njit(nogil=True, cache=True, error_model="numpy", fastmath={"contract"})
def powers(s, beta, one):
    """s[:] = s ** -beta in place; beta = 0.75 through square roots, which vectorize.

    `one` is 1 in s's dtype: a literal 1.0 would make float32 arithmetic float64."""
    if beta == 0.75:
        for p in range(s.shape[0]):
            r = one / math.sqrt(s[p])
            s[p] = r * math.sqrt(r)
    else:
        for p in range(s.shape[0]):
            s[p] = math.exp(-beta * math.log(s[p]))


@numba.njit(nogil=True, cache=True, error_model="numpy", fastmath={"contract"})
def _window_sums(a, b, c, half, acc):
    """acc[:] = sum of a[b, j, :] ** 2 over the maps j of c's window."""
    maps = a.shape[1]
    acc[:] = 0.0
    for j in range(max(0, c - half), min(maps, c + half + 1)):
        row = a[b, j]
        for p in range(acc.shape[0]):
            acc[p] += row[p] * row[p]


@numba.njit(nogil=True, cache=True, error_model="numpy", fastmath={"contract"})
def _forward_kernel(start, stop, a, out, half, coefficient, beta, k, one):
    maps, pixels = a.shape[1], a.shape[2]
    acc = np.empty(pixels, a.dtype)
    for b in range(start, stop):
        for c in range(maps):
            _window_sums(a, b, c, half, acc)
            for p in range(pixels):
                acc[p] = k + coefficient * acc[p]
            powers(acc, beta, one)
            row, dst = a[b, c], out[b, c]
            for p in range(pixels):
                dst[p] = row[p] * acc[p]


@numba.njit(nogil=True, cache=True, error_model="numpy", fastmath={"contract"})
def _backward_kernel(start, stop, a, out, half, coefficient, beta, k, one, g):
    maps, pixels = a.shape[1], a.shape[2]
    acc = np.empty(pixels, a.dtype)
    scale = np.empty((maps, pixels), a.dtype)  # s ** -beta of this block
    t = np.empty((maps, pixels), a.dtype)  # g * a * s ** (-beta - 1)
    slope = (coefficient + coefficient) * beta
    for b in range(start, stop):
        for c in range(maps):
            _window_sums(a, b, c, half, acc)
            sc = scale[c]
            for p in range(pixels):
                acc[p] = k + coefficient * acc[p]
                sc[p] = acc[p]
            powers(sc, beta, one)
            row, grow, tc = a[b, c], g[b, c], t[c]
            for p in range(pixels):
                tc[p] = grow[p] * row[p] * sc[p] / acc[p]
        for c in range(maps):
            acc[:] = 0.0
            for j in range(max(0, c - half), min(maps, c + half + 1)):
                for p in range(pixels):
                    acc[p] += t[j, p]
            row, grow, dst = a[b, c], g[b, c], out[b, c]
            for p in range(pixels):
                dst[p] = grow[p] * scale[c, p] - slope * row[p] * acc[p]


_pool: ThreadPoolExecutor | None = None
_pool_pid = 0


def _threads() -> int:
    return max(1, torch.get_num_threads())


def _run(kernel, a: torch.Tensor, size: int, coefficient, beta, k, *extra) -> torch.Tensor:
    out = torch.empty_like(a)
    run_blocks(
        kernel, a.shape[0], a, out, size // 2, *constants(a.dtype, coefficient, beta, k), *extra
    )
    return out


def constants(dtype: torch.dtype, coefficient: float, beta: float, k: float) -> tuple:
    """coefficient, beta, k and 1 as numpy scalars of the kernels' arithmetic for `dtype`, so that
    float32 arithmetic stays float32 (a Python float would make it float64)."""
    real = np.float64 if dtype == torch.float64 else np.float32
    return real(coefficient), real(beta), real(k), real(1.0)


def run_blocks(kernel, blocks: int, *args) -> None:
    """kernel(start, stop, *args) over blocks [0, blocks) (the first axis of its arrays), one
    contiguous range per torch thread; tensors among args are passed as numpy arrays."""
    global _pool, _pool_pid
    args = tuple(a.detach().numpy() if isinstance(a, torch.Tensor) else a for a in args)
    threads = min(_threads(), blocks)

    def part(i: int) -> None:
        kernel(blocks * i // threads, blocks * (i + 1) // threads, *args)

    if threads <= 1:
        part(0)
        return
    if _pool is None or _pool_pid != os.getpid():  # a forked child gets its own pool
        _pool, _pool_pid = ThreadPoolExecutor(_threads(), thread_name_prefix="lrn"), os.getpid()
    for future in [_pool.submit(part, i) for i in range(threads)]:
        future.result()
