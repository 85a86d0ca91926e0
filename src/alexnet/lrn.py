"""Local response normalization (SPEC section 1) with its closed-form gradient.

    b[i] = a[i] * s[i] ** -beta,   s[i] = k + alpha * sum_{j in W(i)} a[j] ** 2

where W(i) is the window of `size` maps centred on map i, cut at the edges of i's group
(tower). Differentiating,

    dL/da[i] = g[i] * s[i] ** -beta
               - 2 * alpha * beta * a[i] * sum_{j in W(i)} g[j] * a[j] * s[j] ** (-beta - 1)

because i is in W(j) exactly when j is in W(i). Autograd through the formula keeps half a
dozen activation-sized tensors and makes as many passes over memory; this module keeps only
the input and recomputes s in the backward pass, which is cheap next to a trip to memory.

On CPU one fused kernel (numba) does each pass over a (group, image) block of maps while the
block sits in cache, with beta = 0.75 (the paper's) taken through square roots rather than
`pow`. On a GPU, Triton kernels (`alexnet.lrn_triton`) do the same, when Triton is installed
(it comes with torch's CUDA builds). Elsewhere the same two formulas run as a handful of
torch operations. All compute in float32 at least: bf16 or fp16 activations under autocast
are widened for the sum of squares and the power, and the result is rounded back to the
input's dtype.
"""

from __future__ import annotations

import contextlib
import math
import os
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import torch
import torch.nn.functional as F

#: Backends: "auto" picks "kernel" on CPU, "triton" on CUDA when Triton can be imported
#: (except under torch.compile), and "torch" elsewhere.
BACKENDS = ("auto", "kernel", "torch", "triton")


def local_response_norm(
    x: torch.Tensor,
    size: int = 5,
    alpha: float = 1e-4,
    beta: float = 0.75,
    k: float = 2.0,
    groups: int = 1,
    backend: str = "auto",
) -> torch.Tensor:
    """The paper's LRN of (N, C, ...) maps, normalizing each of `groups` towers separately.

    `alpha` multiplies the sum as the paper writes it; callers that follow Caffe's and
    torch's convention pass alpha / size. Maps past a group's first or last map count as
    zero, the paper's max(0, .) and min(N - 1, .) bounds.
    """
    if backend not in BACKENDS:
        raise ValueError(f"LRN backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "auto":
        backend = _auto_backend(x.device)
    if backend == "kernel" and x.device.type != "cpu":
        raise ValueError(f"the LRN kernel runs on CPU tensors, got one on {x.device}")
    if backend == "triton":
        if not _triton_available():
            raise ValueError("the LRN backend 'triton' needs the triton package")
        if x.device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
            raise ValueError(
                f"the Triton LRN runs on CUDA tensors (or on CPU with TRITON_INTERPRET=1), "
                f"got one on {x.device}"
            )
    params = (size, float(alpha), float(beta), float(k), groups)
    if backend == "torch":
        return _LRN.apply(x, *params)
    return call(torch.ops.alexnet.lrn, _lrn_forward, _lrn_backward, x, *params, backend)


class _LRN(torch.autograd.Function):
    """The torch path: plain tensor operations, which torch.compile traces and fuses."""

    @staticmethod
    def forward(ctx, x, size, alpha, beta, k, groups):
        ctx.params = (size, alpha, beta, k, groups)
        ctx.save_for_backward(x)
        a = _blocks(x, groups)
        return _unblock(a * _power(k + alpha * _window(a.square(), size), beta), x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        size, alpha, beta, k, groups = ctx.params
        a, g = _blocks(x, groups), _blocks(grad, groups)
        s = k + alpha * _window(a.square(), size)
        scale = _power(s, beta)
        t = _window(g * a * scale / s, size)
        out = g * scale - (2.0 * alpha * beta) * a * t
        return _unblock(out, x), None, None, None, None, None


# The hand-written kernels as custom operators (`torch.ops.alexnet.lrn` and `lrn_backward`):
# torch.compile and export see one opaque operation with a known output, where they would
# otherwise try to trace into numba or Triton and fail.


def _lrn_forward(
    x: torch.Tensor, size: int, alpha: float, beta: float, k: float, groups: int, backend: str
) -> torch.Tensor:
    if backend == "triton":
        return _triton().forward(_dense(x), size, alpha, beta, k, groups)
    out = _run(_forward_kernel, _blocks(x, groups), size, alpha, beta, k)
    return _unblock(out, x)


def _lrn_backward(
    x: torch.Tensor,
    grad: torch.Tensor,
    size: int,
    alpha: float,
    beta: float,
    k: float,
    groups: int,
    backend: str,
) -> torch.Tensor:
    if backend == "triton":
        return _triton().backward(_dense(x), grad, size, alpha, beta, k, groups)
    out = _run(_backward_kernel, _blocks(x, groups), size, alpha, beta, k, _blocks(grad, groups))
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
def _(x, size, alpha, beta, k, groups, backend):
    return _output_like(x, backend)


@_lrn_backward_op.register_fake
def _(x, grad, size, alpha, beta, k, groups, backend):
    return _output_like(x, backend)


def register_gradient(op, backward_op) -> None:
    """Make backward_op(x, grad, *params) the gradient of op(x, *params) with respect to x,
    keeping only x for the backward pass (the other arguments are numbers and names)."""

    def setup_context(ctx, inputs, output):
        x, *params = inputs
        ctx.params = params
        ctx.save_for_backward(x)

    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return backward_op(x, grad, *ctx.params), *[None] * len(ctx.params)

    op.register_autograd(backward, setup_context=setup_context)


register_gradient(_lrn_op, torch.ops.alexnet.lrn_backward)


class _Direct(torch.autograd.Function):
    """A kernel pair called directly: forward(x, *params), and backward(x, grad, *params) its
    gradient with respect to x, keeping only x, as `register_gradient` does for operators.
    Profiles name them as they name the operators (`name` and `name`_backward)."""

    @staticmethod
    def forward(ctx, name, forward, backward, x, *params):
        ctx.name, ctx.backward, ctx.params = name, backward, params
        ctx.save_for_backward(x)
        with _profiled(name):
            return forward(x, *params)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        with _profiled(ctx.name + "_backward"):
            grad_x = ctx.backward(x, grad, *ctx.params)
        return None, None, None, grad_x, *[None] * len(ctx.params)


def _profiled(name: str):
    # record_function costs some 40 us a call, so only while a profiler listens
    if torch.autograd._profiler_enabled():
        return torch.profiler.record_function(name)
    return contextlib.nullcontext()


def call(op, forward, backward, x: torch.Tensor, *params) -> torch.Tensor:
    """op(x, *params), where op is the custom operator of the kernels forward and backward.

    In plain eager mode the kernels are called directly: an operator's first call imports
    torch._dynamo (custom_op guards its implementation against being traced), 1-2.5 s that
    `alexnet eval` and `predict` would otherwise pay for nothing, and each call costs some
    20 us of dispatch. Under torch.compile, export or jit tracing, and for tensor subclasses
    (fake tensors), the operator is what they must see."""
    traced = torch.compiler.is_compiling() or torch.jit.is_tracing()
    if type(x) is torch.Tensor and not traced:
        return _Direct.apply(op._qualified_op_name, forward, backward, x, *params)
    return op(x, *params)


def _auto_backend(device: torch.device) -> str:
    if device.type == "cpu":
        return "kernel"
    if torch.compiler.is_compiling():
        # Under torch.compile the torch formulas become Inductor's own fused Triton kernels.
        # backend="triton" keeps the hand-written ones as an opaque operator in the graph;
        # which is faster compiled is yet to be measured on a GPU.
        return "torch"
    return "triton" if device.type == "cuda" and _triton_available() else "torch"


def _triton_available() -> bool:
    try:
        _triton()
    except ImportError:
        return False
    return True


def _triton():
    from alexnet import lrn_triton  # imports triton, which CPU-only installs may lack

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
def _powers(s, beta, one):
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
def _forward_kernel(start, stop, a, out, half, alpha, beta, k, one):
    maps, pixels = a.shape[1], a.shape[2]
    acc = np.empty(pixels, a.dtype)
    for b in range(start, stop):
        for c in range(maps):
            _window_sums(a, b, c, half, acc)
            for p in range(pixels):
                acc[p] = k + alpha * acc[p]
            _powers(acc, beta, one)
            row, dst = a[b, c], out[b, c]
            for p in range(pixels):
                dst[p] = row[p] * acc[p]


@numba.njit(nogil=True, cache=True, error_model="numpy", fastmath={"contract"})
def _backward_kernel(start, stop, a, out, half, alpha, beta, k, one, g):
    maps, pixels = a.shape[1], a.shape[2]
    acc = np.empty(pixels, a.dtype)
    scale = np.empty((maps, pixels), a.dtype)  # s ** -beta of this block
    t = np.empty((maps, pixels), a.dtype)  # g * a * s ** (-beta - 1)
    coefficient = (alpha + alpha) * beta
    for b in range(start, stop):
        for c in range(maps):
            _window_sums(a, b, c, half, acc)
            sc = scale[c]
            for p in range(pixels):
                acc[p] = k + alpha * acc[p]
                sc[p] = acc[p]
            _powers(sc, beta, one)
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
                dst[p] = grow[p] * scale[c, p] - coefficient * row[p] * acc[p]


_pool: ThreadPoolExecutor | None = None
_pool_pid = 0


def _threads() -> int:
    return max(1, torch.get_num_threads())


def _run(kernel, a: torch.Tensor, size: int, alpha, beta, k, *extra) -> torch.Tensor:
    out = torch.empty_like(a)
    _run_blocks(kernel, a.shape[0], a, out, size // 2, *constants(a.dtype, alpha, beta, k), *extra)
    return out


def constants(dtype: torch.dtype, alpha: float, beta: float, k: float) -> tuple:
    """alpha, beta, k and 1 as numpy scalars of the kernels' arithmetic for `dtype`, so that
    float32 arithmetic stays float32 (a Python float would make it float64)."""
    real = np.float64 if dtype == torch.float64 else np.float32
    return real(alpha), real(beta), real(k), real(1.0)


def _run_blocks(kernel, blocks: int, *args) -> None:
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
