"""The block after conv1 and conv2 (sections 3.3 and 3.4): the activation, then response
normalization, then overlapping max-pooling ("Response-normalization layers follow the first
and second convolutional layers. Max-pooling layers ... follow both response-normalization
layers").

On CPU the three run as one fused kernel (`alexnet.kernels.fused`) with the same arithmetic
when they are what the kernel computes: a ReLU, this package's LRN, and pooling without
padding that rounds down. Anything else (tanh, CaffeNet's pool-then-normalize, other
devices), or a forward hook on any of the three, runs the modules in turn, so that hooks
always see their own layer's output.
"""

from __future__ import annotations

import torch
from torch import nn

from alexnet.kernels.fused import relu_lrn_pool
from alexnet.nn.conv import side
from alexnet.nn.lrn import LocalResponseNorm


def activate_norm_pool(
    x: torch.Tensor,
    act: nn.Module,
    norm: nn.Module,
    pool: nn.MaxPool2d,
    norm_first: bool = True,
    fuse: bool = True,
) -> torch.Tensor:
    """pool(norm(act(x))), or norm(pool(act(x))) with `norm_first=False`; fused where it
    can be (`fuse=False`: never)."""
    if fuse and norm_first and fusable(x, act, norm, pool):
        return relu_lrn_pool(
            x, norm.size, norm.coefficient, norm.beta, norm.k, norm.groups,
            side(pool.kernel_size), side(pool.stride),
        )  # fmt: skip
    x = act(x)
    return pool(norm(x)) if norm_first else norm(pool(x))


def fusable(x: torch.Tensor, act: nn.Module, norm: nn.Module, pool: nn.MaxPool2d) -> bool:
    """Whether the fused kernel computes what act, norm and pool would, modules in turn."""
    return (
        x.device.type == "cpu"
        and isinstance(act, nn.ReLU)
        and isinstance(norm, LocalResponseNorm)
        and norm.backend in ("auto", "kernel")
        and isinstance(pool, nn.MaxPool2d)
        and not pool.ceil_mode
        and side(pool.padding) == 0
        and side(pool.dilation) == 1
        and not any(m._forward_hooks or m._forward_pre_hooks for m in (act, norm, pool))
    )
