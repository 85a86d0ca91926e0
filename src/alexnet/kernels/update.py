"""The paper's update (section 5) as one pass over each weight tensor on CPU:

    v <- momentum v - decay lr w - lr g
    w <- w + v

As torch operations (`torch._foreach_*`) that is four passes over the weights, reading and
writing 61M numbers each time; here each element is read once and written once, which takes
about 0.6 of the time on a 2-core CPU. With `copy`, the pass also writes the new w rounded to
bf16 (to nearest even, as torch rounds, a NaN staying a NaN) into the weights' bf16 working
copy, and the gradient may be that copy's bf16 gradient: the same numbers autocast computes,
without casting the 61M weights before each forward pass and their gradients back after each
backward pass (`alexnet.train.copies`).

The arithmetic is in the weights' precision (float32 or float64) and rounds as the four
torch passes round, step for step, so that the two give the same bits (tested):

    v <- v * momentum;  v <- v + (-decay lr) w;  v <- v + (-lr) g;  w <- w + v

where torch's CPU kernels compute each `x + alpha y` as one fused multiply-add (`_fma`) and
take the factors rounded to the weights' precision (-decay lr multiplied out in double first).
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from llvmlite import ir
from numba.core import cgutils
from numba.extending import intrinsic

from alexnet.kernels.lrn import run_blocks

NJIT = {"nogil": True, "cache": True, "error_model": "numpy"}

# elements a kernel works through at a time: its bf16 buffers stay in L1
_CHUNK = 2048
# tensors, not subclasses such as the DTensor slices of hybrid parallelism
_PLAIN = (torch.Tensor, torch.nn.Parameter)


def paper_sgd_(
    w: torch.Tensor,
    g: torch.Tensor,
    v: torch.Tensor,
    lr: float,
    momentum: float,
    decay: float,
    copy: torch.Tensor | None = None,
) -> None:
    """The update of `w` and its velocity `v` in place from gradient `g`; with `copy`, also
    copy <- bf16(new w). w and v: float32 or float64 CPU tensors of one dtype; g: w's dtype,
    or bf16 (a working copy's gradient); all of one shape and memory layout (`updatable`)."""
    if not updatable(w, g, v, copy):
        raise ValueError("paper_sgd_ takes dense CPU tensors of one shape and memory layout")
    real = np.float64 if w.dtype == torch.float64 else np.float32
    flat = [_flat(t) for t in (w, g, v)]
    # the factors as torch takes them: rounded from Python's doubles
    numbers = real(momentum), real(-decay * lr), real(-lr), decay != 0
    bf16_grad = g.dtype == torch.bfloat16
    out = _flat(copy) if copy is not None else flat[0][:0].view(np.uint16)
    blocks = -(-w.numel() // _CHUNK)
    run_blocks(_kernel, blocks, *flat, out, *numbers, bf16_grad, copy is not None, w.numel())


def updatable(w: torch.Tensor, g: torch.Tensor, v: torch.Tensor, copy=None) -> bool:
    """Whether `paper_sgd_` takes these tensors: plain dense CPU tensors, w and v float32 or
    float64, g of w's dtype or bf16, copy bf16, all of one shape and strides."""
    tensors = [t for t in (w, g, v, copy) if t is not None]
    if any(type(t) not in _PLAIN or t.device.type != "cpu" for t in tensors):
        return False
    if w.dtype not in (torch.float32, torch.float64) or v.dtype != w.dtype:
        return False
    if g.dtype not in (w.dtype, torch.bfloat16):
        return False
    if copy is not None and copy.dtype != torch.bfloat16:
        return False
    if (g.dtype == torch.bfloat16 or copy is not None) and w.dtype != torch.float32:
        return False
    return all(t.shape == w.shape and t.stride() == w.stride() and _dense(t) for t in tensors)


def _dense(t: torch.Tensor) -> bool:
    # non-overlapping and covering its span: contiguous in some order of its dimensions
    # (NCHW or channels_last), so its elements are one run of memory
    return t.is_contiguous() or t.is_contiguous(memory_format=torch.channels_last)


def _flat(t: torch.Tensor) -> np.ndarray:
    """t's elements as one run of memory, in storage order (a view, not a copy)."""
    run = t.detach().as_strided((t.numel(),), (1,))
    if t.dtype == torch.bfloat16:
        return run.view(torch.uint16).numpy()
    return run.numpy()


@intrinsic
def _fma(typingctx, x, y, z):
    """x * y + z rounded once (LLVM's fma; numba has no fused multiply-add of its own), in
    z's type (x and y are converted to it)."""

    def codegen(context, builder, signature, args):
        kind = args[0].type
        name = "llvm.fma.f32" if kind == ir.FloatType() else "llvm.fma.f64"
        function = ir.FunctionType(kind, [kind, kind, kind])
        return builder.call(cgutils.get_or_insert_function(builder.module, function, name), args)

    return z(z, z, z), codegen


@numba.njit(**NJIT, inline="always")
def _step(w, v, g, momentum, decay_factor, lr_factor, decays):
    """(w, v) after one update, rounded as torch's four passes (see the module's text)."""
    v = v * momentum
    if decays:
        v = _fma(w, decay_factor, v)
    v = _fma(g, lr_factor, v)
    return w + v, v


@numba.njit(**NJIT)
def _kernel(start, stop, w, g, v, out, momentum, decay_factor, lr_factor, decays, bf16_grad,
            copy, n):  # fmt: skip
    """Chunks [start, stop) of the flat tensors (`_CHUNK` elements each)."""
    grad = np.empty(_CHUNK, np.float32)
    grad_bits = grad.view(np.uint32)
    new = np.empty(_CHUNK, np.float32)
    new_bits = new.view(np.uint32)
    for chunk in range(start, stop):
        lo = chunk * _CHUNK
        hi = min(lo + _CHUNK, n)
        # slices indexed from 0: loops over them vectorize (an index lo + i does not)
        ws, vs, gs, outs = w[lo:hi], v[lo:hi], g[lo:hi], out[lo:hi] if copy else out
        m = hi - lo
        if bf16_grad:
            for i in range(m):  # bf16 widens exactly to float32 by a 16-bit shift
                grad_bits[i] = np.uint32(gs[i]) << 16
            for i in range(m):
                wi, vi = _step(ws[i], vs[i], grad[i], momentum, decay_factor, lr_factor, decays)
                ws[i], vs[i], new[i] = wi, vi, wi
        else:
            for i in range(m):
                wi, vi = _step(ws[i], vs[i], gs[i], momentum, decay_factor, lr_factor, decays)
                ws[i], vs[i] = wi, vi
                if copy:
                    new[i] = wi
        if copy:
            for i in range(m):  # a select, not a branch, so that the loop vectorizes
                bits = new_bits[i]
                rounded = np.uint16((bits + np.uint32(0x7FFF) + ((bits >> 16) & 1)) >> 16)
                outs[i] = rounded if new[i] == new[i] else np.uint16(0x7FC0)
