"""The paper's convolutions in the forms PyTorch does not have (sections 3.2 and 3.5).

- `TowerConv2d`: the grouped convolutions of conv2, conv4 and conv5, each tower's kernels
  seeing only their tower's maps (section 3.2: "the GPUs communicate only in certain
  layers"), run as one grouped call or one call per tower, whichever the device runs faster.
- `CeilConv2d`: a convolution that counts its outputs as the released 2012 code
  (cuda-convnet) does, so a 224x224 crop gives conv1's 55x55 maps. Its weight gradient on
  CPU in float32 is computed through space-to-depth (`image_conv2d`), where that is faster.
- `conv_output_size`, `pool_output_size`: the arithmetic of both conventions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from alexnet.core.errors import UserError


def conv_output_size(size: int, kernel: int, stride: int, padding: int, ceil: bool) -> int:
    """Outputs along one axis: 1 + floor (PyTorch, Caffe) or ceil (cuda-convnet) of
    (size + 2 * padding - kernel) / stride; 0 when the kernel does not fit at all."""
    span = size + 2 * padding - kernel
    if span < 0:
        return 0
    return 1 + (-(-span // stride) if ceil else span // stride)


def side(value: int | tuple[int, ...]) -> int:
    """A square window's kernel, stride or padding along one axis, given as torch's layers
    hold it (an int, or a pair)."""
    return value if isinstance(value, int) else value[0]


def pool_output_size(size: int, kernel: int, stride: int, padding: int, ceil_mode: bool) -> int:
    """Outputs of torch's MaxPool2d along one axis.

    In ceil mode (Caffe's rounding) a last window that would start in the right padding is
    dropped; that never happens for 3/2 or 2/2 pooling without padding.
    """
    out = conv_output_size(size, kernel, stride, padding, ceil_mode)
    if ceil_mode and out > 0 and (out - 1) * stride >= size + padding:
        out -= 1
    return out


#: How a TowerConv2d runs: "grouped" (one call with groups=towers), "split" (one dense call
#: per tower, outputs concatenated), or "auto": grouped on CPU, split on CUDA. Measured
#: (docs/benchmarks.md): on this project's CPU oneDNN's grouped kernels were as fast as or
#: faster than two dense calls; on an H100, cuDNN ran the grouped weight gradient with a slow
#: generic engine, many times slower than one dense call per tower.
TOWER_CONV_MODES = ("auto", "grouped", "split")


class TowerConv2d(nn.Conv2d):
    """A convolution whose groups are the paper's towers, with nn.Conv2d's parameters and
    state dict: output maps [0, C/2) are tower A's and read only input maps [0, C/2).

    Both ways of running it compute the same sums; they differ only in which kernels the
    backend picks (`mode`, see TOWER_CONV_MODES).
    """

    def __init__(self, *args, mode: str = "auto", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if mode not in TOWER_CONV_MODES:
            raise UserError(f"mode must be one of {', '.join(TOWER_CONV_MODES)}, got {mode!r}")
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.groups == 1 or not self._splits(x):
            return super().forward(x)
        weights = self.weight.chunk(self.groups, 0)
        biases = self.bias.chunk(self.groups) if self.bias is not None else [None] * self.groups
        towers = [
            F.conv2d(maps, w, b, self.stride, self.padding, self.dilation)
            for maps, w, b in zip(x.chunk(self.groups, 1), weights, biases, strict=True)
        ]
        return torch.cat(towers, 1)

    def _splits(self, x: torch.Tensor) -> bool:
        if self.mode == "auto":
            return x.device.type == "cuda"
        return self.mode == "split"

    def extra_repr(self) -> str:
        return super().extra_repr() + ("" if self.mode == "auto" else f", mode={self.mode}")


#: How CeilConv2d (conv1) computes its weight gradient on CPU in float32 and float64, when
#: its input needs none (the image): "direct" (oneDNN's kernel for the 11x11 stride-4
#: shape), "space-to-depth" (`image_conv2d`), or "auto": space-to-depth where torch runs
#: AVX-512 kernels, direct elsewhere. Measured (docs/benchmarks.md): space-to-depth was
#: faster for conv1's forward and backward on the project's AVX-512 EPYC, and slower than
#: direct on an AVX2-only one.
IMAGE_GRAD_MODES = ("auto", "direct", "space-to-depth")
# read once: torch.compile cannot trace the call, which returns a string
_AVX512 = torch.backends.cpu.get_cpu_capability().startswith("AVX512")


class CeilConv2d(nn.Conv2d):
    """A convolution that counts outputs as the released 2012 code does.

    cuda-convnet gives 1 + ceil((2 * padding + size - kernel) / stride) outputs per axis
    (docs/paper.md, "Departures"). For conv1 on a 224x224 crop that is 1 + ceil(213 / 4) = 55;
    the last window runs 3 pixels past the bottom and right edges, over zeros. On 227x227 input
    (Caffe's crop) nothing is added and it is an ordinary convolution. The weights are an
    ordinary Conv2d's, so state dicts are interchangeable with nn.Conv2d. `weight_grad`: see
    IMAGE_GRAD_MODES.
    """

    def __init__(self, *args, weight_grad: str = "auto", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if weight_grad not in IMAGE_GRAD_MODES:
            raise UserError(
                f"weight_grad must be one of {', '.join(IMAGE_GRAD_MODES)}, got {weight_grad!r}"
            )
        self.weight_grad = weight_grad

    def output_size(self, size: int) -> int:
        return conv_output_size(
            size, self.kernel_size[0], self.stride[0], self.padding[0], ceil=True
        )

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """x with the zeros past its bottom and right edges that give the ceil count of
        outputs to an ordinary (floor) convolution."""
        pad_bottom = self._extra(x.shape[-2], 0)
        pad_right = self._extra(x.shape[-1], 1)
        if pad_bottom or pad_right:
            x = F.pad(x, (0, pad_right, 0, pad_bottom))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pad(x)
        if _space_to_depth_pays(self, x):
            return image_conv2d(x, self.weight, self.bias, self.stride[0])
        return super().forward(x)

    def extra_repr(self) -> str:
        extra = "" if self.weight_grad == "auto" else f", weight_grad={self.weight_grad}"
        return super().extra_repr() + extra

    def _extra(self, size: int, axis: int) -> int:
        """Zeros to add past the far edge so that floor arithmetic gives the ceil count."""
        k, s, p = self.kernel_size[axis], self.stride[axis], self.padding[axis]
        out = conv_output_size(size, k, s, p, ceil=True)
        return max(0, (out - 1) * s + k - (size + 2 * p))


def image_conv2d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int
) -> torch.Tensor:
    """F.conv2d(x, weight, bias, stride) of an input that needs no gradient (the image),
    with the weight gradient computed through space-to-depth.

    A k x k kernel at stride s is a ceil(k/s) x ceil(k/s) kernel at stride 1 over the input
    cut into s x s blocks, each block's pixels as channels; the kernel is zero-padded to a
    multiple of s. Its weight gradient is the same sum of products as the direct one, in
    another order, and oneDNN computes it faster in that shape on CPUs with AVX-512, in
    float32. In bf16 it is slower, so `CeilConv2d` uses it only in float32 and float64, and
    on an AVX2-only CPU it is slower in float32 too (IMAGE_GRAD_MODES; the timings are in
    docs/benchmarks.md).
    """
    return _ImageConv.apply(x, weight, bias, stride)


def _space_to_depth_pays(conv: CeilConv2d, x: torch.Tensor) -> bool:
    chosen = _AVX512 if conv.weight_grad == "auto" else conv.weight_grad == "space-to-depth"
    return (
        chosen
        and x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.float64)
        and not x.requires_grad
        and conv.weight.requires_grad
        and torch.is_grad_enabled()
        and not torch.is_autocast_enabled("cpu")
        and conv.stride[0] == conv.stride[1] > 1
        and conv.kernel_size[0] == conv.kernel_size[1]
        and conv.padding == (0, 0)
        and conv.dilation == (1, 1)
        and conv.groups == 1
    )


def space_to_depth(x: torch.Tensor, s: int, rows: int, cols: int) -> torch.Tensor:
    """(N, C, H, W) cut into s x s blocks, rows x cols of them, each block's pixels as maps:
    (N, C * s * s, rows, cols), map c * s * s + dy * s + dx holding pixel (dy, dx) of each
    block of map c. x is cut, or zero-padded past its far edges, to rows * s x cols * s."""
    n, maps = x.shape[:2]
    hs, ws = rows * s, cols * s
    x = x[:, :, :hs, :ws]
    x = F.pad(x, (0, ws - x.shape[3], 0, hs - x.shape[2]))
    x = x.reshape(n, maps, rows, s, cols, s).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(n, maps * s * s, rows, cols)


class _ImageConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, stride):
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.has_bias = stride, bias is not None
        return F.conv2d(x, weight, bias, stride=stride)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        s = ctx.stride
        out_maps, maps, k, _ = weight.shape
        ho, wo = grad.shape[2:]
        blocks = -(-k // s)  # the kernel's side in s x s blocks
        x = space_to_depth(x, s, ho - 1 + blocks, wo - 1 + blocks)
        blocked = weight.new_empty(out_maps, maps * s * s, blocks, blocks)  # only its shape
        _, grad_blocked, grad_bias = torch.ops.aten.convolution_backward(
            grad.contiguous(), x, blocked, [out_maps], [1, 1], [0, 0], [1, 1], False, [0, 0], 1,
            [False, True, ctx.has_bias],
        )  # fmt: skip
        grad_weight = grad_blocked.reshape(out_maps, maps, s, s, blocks, blocks)
        grad_weight = grad_weight.permute(0, 1, 4, 2, 5, 3)
        grad_weight = grad_weight.reshape(out_maps, maps, blocks * s, blocks * s)[:, :, :k, :k]
        return None, grad_weight.contiguous(), grad_bias, None
