"""cuda-convnet's locally connected (`local`) layer, behind the paper's CIFAR-10 LRN figure
(section 3.3: 13% -> 11% test error).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from alexnet.core.errors import UserError
from alexnet.nn.conv import conv_output_size


class LocallyConnected2d(nn.Module):
    """cuda-convnet's unshared `local` layer: a convolution in which every output position
    has its own kernels and biases.

    weight: (positions, in_channels * k * k, out_channels), positions in row-major order, a
    kernel's taps in unfold's order (channel, row, column); bias: (out_channels, rows, cols),
    one per output unit as in cuda-convnet (modules x filters biases). The input side is
    fixed when the layer is made: there is one kernel per position.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        input_size: int,
        padding: int = 0,
        stride: int = 1,
    ) -> None:
        super().__init__()
        side = conv_output_size(input_size, kernel_size, stride, padding, ceil=False)
        if side < 1:
            raise UserError(
                f"a {kernel_size}x{kernel_size} kernel with padding {padding} does not fit "
                f"a {input_size}x{input_size} input"
            )
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.input_size = kernel_size, input_size
        self.padding, self.stride, self.output_size = padding, stride, side
        taps = in_channels * kernel_size * kernel_size
        self.weight = nn.Parameter(torch.empty(side * side, taps, out_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels, side, side))
        nn.init.normal_(self.weight, 0.0, 0.01)

    @property
    def fan_in(self) -> int:
        return self.weight.shape[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            x.dim() != 4
            or x.shape[1] != self.in_channels
            or x.shape[2:]
            != (
                self.input_size,
                self.input_size,
            )
        ):
            raise UserError(
                f"this locally connected layer takes (N, {self.in_channels}, "
                f"{self.input_size}, {self.input_size}) inputs, got {tuple(x.shape)}"
            )
        n, side = x.shape[0], self.output_size
        cols = F.unfold(x, self.kernel_size, padding=self.padding, stride=self.stride)
        # one (N, taps) x (taps, out) product per position, batched over positions
        out = torch.bmm(cols.permute(2, 0, 1), self.weight.to(cols.dtype))  # (P, N, out)
        out = out.permute(1, 2, 0).reshape(n, self.out_channels, side, side)
        return out + self.bias.to(out.dtype)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"input_size={self.input_size}, padding={self.padding}, stride={self.stride}"
        )
