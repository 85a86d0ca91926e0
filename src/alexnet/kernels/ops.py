"""The custom-operator plumbing the kernels share: a kernel pair registered as a torch
operator with its gradient, and called directly in plain eager mode.
"""

from __future__ import annotations

import contextlib

import torch


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
    # record_function costs time on every call, so only while a profiler listens
    if torch.autograd._profiler_enabled():
        return torch.profiler.record_function(name)
    return contextlib.nullcontext()


def call(op, forward, backward, x: torch.Tensor, *params) -> torch.Tensor:
    """op(x, *params), where op is the custom operator of the kernels forward and backward.

    In plain eager mode the kernels are called directly: an operator's first call imports
    torch._dynamo (custom_op guards its implementation against being traced), seconds that
    `alexnet eval` and `predict` would otherwise pay for nothing, and each call costs a
    dispatch (docs/benchmarks.md, "why eager calls bypass the custom operators"). Under
    torch.compile, export or jit tracing, and for tensor subclasses (fake tensors), the
    operator is what they must see."""
    traced = torch.compiler.is_compiling() or torch.jit.is_tracing()
    if type(x) is torch.Tensor and not traced:
        return _Direct.apply(op._qualified_op_name, forward, backward, x, *params)
    return op(x, *params)
