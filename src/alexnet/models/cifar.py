"""The paper's four-layer CIFAR-10 network (section 3.1, Figure 1; section 3.3's CIFAR claim).

The paper does not describe it; its footnote points to the released cuda-convnet, whose
CIFAR-10 example `layers-18pct.cfg` ("18% error on CIFAR-10 in 20 minutes") is this net:
three 5x5 convolutional layers and a 10-way classifier, on whole 32x32 images.

    conv1  5x5, 32 kernels, pad 2          (no neuron: the ReLU sits on pool1)
    pool1  max 3/2, then ReLU
    rnorm1 response normalization within each map, 3x3 neighbourhood
    conv2  5x5, 32 kernels, pad 2, ReLU
    pool2  average 3/2
    rnorm2 as rnorm1
    conv3  5x5, 64 kernels, pad 2, ReLU
    pool3  average 3/2
    fc10   the classifier (logits; softmax is in the loss)

cuda-convnet's pooling rounds its output count up (outputsX = ceil((n - 3) / 2) + 1), so
32 -> 16 -> 8 -> 4, and an average window cut by the image's edge averages the pixels it
covers: `ceil_mode=True` in PyTorch does both. Its `rnorm` layer divides each unit by
(1 + scale / size^2 * sum of squares over the size x size neighbourhood in the same map)^pow,
the neighbourhood cut at the edges; `scale` = 0.00005 and `pow` = 0.75 come from
`layer-params-18pct.cfg`. Its cross-map `cmrnorm` divides scale by size instead: `lrn_kind`.

The paper's CIFAR-10 normalization claim ("13% test error without normalization and 11%
with") is cuda-convnet's `layers-conv-local-11pct.cfg` against `layers-conv-local-13pct.cfg`
("11% / 13% error on CIFAR-10 ... with image translations and horizontal reflections"): one
net, with and without its two cross-map normalization layers. `CifarLocalNet` is that net,
on 24x24 crops of the 32x32 images:

    conv1  5x5, 64 kernels, pad 2, ReLU
    rnorm1 cross-map over 5 maps, scale 0.001 (divided by 5), pow 0.75   (11pct only)
    pool1  max 3/2
    conv2  5x5, 64 kernels, pad 2, ReLU
    rnorm2 as rnorm1                                                     (11pct only)
    pool2  max 3/2
    local3 3x3, 32 unshared kernels per position, pad 1, ReLU
    local4 3x3, 32 unshared kernels per position, pad 1, ReLU
    fc10   the classifier
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import partial

import torch
import torch.nn as nn

from alexnet.core.checks import check_choice, check_type
from alexnet.core.errors import UserError
from alexnet.models.alexnet import ACTIVATIONS
from alexnet.nn.local import LocallyConnected2d
from alexnet.nn.lrn import LocalResponseNorm, WithinMapNorm

LRN_KINDS = ("within-map", "cross-map")
INITS = ("released", "kaiming", "torch")
#: layers-18pct.cfg's initW: the std of each layer's Gaussian initial weights.
RELEASED_INIT_STD = {"conv1": 1e-4, "conv2": 0.01, "conv3": 0.01, "fc10": 0.01}
#: layers-conv-local-11pct.cfg's (and 13pct's) initW.
LOCAL_INIT_STD = {"conv1": 1e-4, "conv2": 0.01, "local3": 0.04, "local4": 0.04, "fc10": 0.01}
MAX_INPUT_SIZE = 512


@dataclass(frozen=True)
class CifarNetConfig:
    """Architecture and initialization. Defaults: layers-18pct.cfg."""

    num_classes: int = 10
    in_chans: int = 3
    widths: tuple[int, int, int] = (32, 32, 64)  # kernels of conv1..conv3
    activation: str = "relu"  # relu | tanh (Figure 1)
    lrn: bool = True  # rnorm1 and rnorm2; False: the net without them (section 3.3)
    lrn_kind: str = "within-map"  # within-map: layers-18pct's rnorm | cross-map: cmrnorm
    lrn_size: int = 3  # the neighbourhood: size x size pixels, or size adjacent maps
    lrn_scale: float = 5e-5  # cuda-convnet's scale (divided by size^2, or by size)
    lrn_pow: float = 0.75
    pool_size: int = 3  # 3/2 overlaps, as in the released file; 2/2 does not
    pool_stride: int = 2
    # released: N(0, initW^2) with layers-18pct's initW per layer, biases 0;
    # kaiming: He-normal, biases 0; torch: PyTorch's defaults.
    init: str = "released"

    def __post_init__(self) -> None:
        _check_config(self, layers=3, positive=("num_classes", "in_chans"))
        check_choice("lrn_kind", self.lrn_kind, LRN_KINDS)

    @classmethod
    def option_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


@dataclass(frozen=True)
class CifarLocalConfig:
    """Architecture and initialization. Defaults: layers-conv-local-11pct.cfg; lrn=False is
    layers-conv-local-13pct.cfg."""

    num_classes: int = 10
    in_chans: int = 3
    widths: tuple[int, int, int, int] = (64, 64, 32, 32)  # conv1, conv2, local3, local4
    activation: str = "relu"  # relu | tanh
    lrn: bool = True  # rnorm1 and rnorm2 (11pct); False: without them (13pct)
    lrn_size: int = 5  # adjacent maps
    lrn_scale: float = 1e-3  # cuda-convnet's scale, divided by size
    lrn_pow: float = 0.75
    pool_size: int = 3
    pool_stride: int = 2
    input_size: int = 24  # the crops' side: the local layers have one kernel per position
    # released: N(0, initW^2) with the file's initW per layer, biases 0;
    # kaiming: He-normal, biases 0; torch: PyTorch's defaults (local layers: N(0, 0.01^2)).
    init: str = "released"

    def __post_init__(self) -> None:
        _check_config(self, layers=4, positive=("num_classes", "in_chans", "input_size"))

    @classmethod
    def option_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def _check_config(config, layers: int, positive: tuple[str, ...]) -> None:
    """The checks both nets' configs share: types, choices, widths, sizes."""
    object.__setattr__(config, "widths", tuple(config.widths))  # lists from YAML or JSON
    for f in fields(config):
        check_type(f.name, getattr(config, f.name), f.type)
    check_choice("activation", config.activation, ACTIVATIONS)
    check_choice("init", config.init, INITS)
    widths = config.widths
    if len(widths) != layers or any(not isinstance(w, int) or w < 1 for w in widths):
        raise UserError(f"widths must be {layers} positive integers, got {widths}")
    for name in (*positive, "pool_size", "pool_stride"):
        if getattr(config, name) < 1:
            raise UserError(f"{name} must be a positive integer, got {getattr(config, name)}")
    if config.lrn_size < 1 or config.lrn_size % 2 == 0:
        raise UserError(f"lrn_size must be a positive odd number, got {config.lrn_size}")


class _CifarBase(nn.Module):
    """What the CIFAR nets share: initialization from a table of stds, the classifier head,
    the input check."""

    config: CifarNetConfig | CifarLocalConfig
    name: str
    fc10: nn.Linear
    _input_sizes: tuple[int, int]

    def _act(self) -> nn.Module:
        return nn.Tanh() if self.config.activation == "tanh" else nn.ReLU(inplace=True)

    def _init(self, scheme: str, stds: dict[str, float]) -> None:
        if scheme == "torch":
            return
        for name, std in stds.items():
            layer = getattr(self, name)
            with torch.no_grad():
                if scheme == "released":
                    nn.init.normal_(layer.weight, 0.0, std)
                elif isinstance(layer, LocallyConnected2d):  # He: std sqrt(2 / fan_in)
                    nn.init.normal_(layer.weight, 0.0, (2.0 / layer.fan_in) ** 0.5)
                else:
                    nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
                layer.bias.zero_()

    def input_sizes(self) -> tuple[int, int]:
        """The smallest and largest input sides that give the maps the classifier takes."""
        return self._input_sizes

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """The last feature maps to logits, or with `pre_logits` to what fc10 receives."""
        x = torch.flatten(x, 1)
        return x if pre_logits else self.fc10(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def _check_input(self, x: torch.Tensor) -> None:
        chans = self.config.in_chans
        if x.dim() != 4 or x.shape[1] != chans or not x.is_floating_point():
            raise UserError(
                f"{self.name} expects floating-point images shaped (N, {chans}, H, W), got "
                f"{x.dtype} of shape {tuple(x.shape)}"
            )
        low, high = self.input_sizes()
        if not all(low <= s <= high for s in x.shape[-2:]):
            raise UserError(
                f"{self.name} expects images of {low} to {high} pixels a side, got "
                f"{x.shape[-2]}x{x.shape[-1]}"
            )


def _pooled(size: int, k: int, s: int, times: int) -> int:
    """The side after `times` of cuda-convnet's k/s poolings (output count rounded up)."""
    for _ in range(times):
        size = -(-(size - k) // s) + 1 if size >= k else 0
    return size


class CifarNet(_CifarBase):
    """layers-18pct.cfg, with the layers named as there."""

    def __init__(self, config: CifarNetConfig | None = None, name: str = "cifar4") -> None:
        super().__init__()
        self.config = c = config or CifarNetConfig()
        self.name = name
        w1, w2, w3 = c.widths
        pool = partial(nn.MaxPool2d, c.pool_size, c.pool_stride, ceil_mode=True)
        avg = partial(nn.AvgPool2d, c.pool_size, c.pool_stride, ceil_mode=True)
        self.conv1 = nn.Conv2d(c.in_chans, w1, 5, padding=2)
        self.pool1 = pool()
        self.act1 = self._act()
        self.rnorm1 = self._norm(w1)
        self.conv2 = nn.Conv2d(w1, w2, 5, padding=2)
        self.act2 = self._act()
        self.pool2 = avg()
        self.rnorm2 = self._norm(w2)
        self.conv3 = nn.Conv2d(w2, w3, 5, padding=2)
        self.act3 = self._act()
        self.pool3 = avg()
        side = self.feature_map_size(32)
        if side < 1:
            raise UserError(f"pooling {c.pool_size}/{c.pool_stride} leaves nothing of 32x32")
        self.feature_side = side  # the classifier is sized for 32x32 images
        sides = [n for n in range(1, MAX_INPUT_SIZE) if self.feature_map_size(n) == side]
        self._input_sizes = (sides[0], sides[-1])
        self.fc10 = nn.Linear(w3 * side * side, c.num_classes)
        self._init(c.init, RELEASED_INIT_STD)

    def _norm(self, maps: int) -> nn.Module:
        c = self.config
        if not c.lrn:
            return nn.Identity()
        if c.lrn_kind == "within-map":
            return WithinMapNorm(c.lrn_size, c.lrn_scale, c.lrn_pow)
        return cross_map_norm(c)

    def feature_map_size(self, size: int) -> int:
        """Side of pool3's maps for an input side of `size` (convolutions keep the size)."""
        return _pooled(size, self.config.pool_size, self.config.pool_stride, 3)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, 32, 32) to pool3's maps (B, 64, 4, 4)."""
        self._check_input(x)
        x = self.rnorm1(self.act1(self.pool1(self.conv1(x))))  # (B, 32, 16, 16)
        x = self.rnorm2(self.pool2(self.act2(self.conv2(x))))  # (B, 32, 8, 8)
        return self.pool3(self.act3(self.conv3(x)))  # (B, 64, 4, 4)


def cross_map_norm(c: CifarNetConfig | CifarLocalConfig) -> nn.Module:
    """cuda-convnet's cmrnorm: u / (1 + scale / size * sum over size adjacent maps) ** pow."""
    return LocalResponseNorm(c.lrn_size, c.lrn_scale, c.lrn_pow, k=1.0, convention="divided_by_n")


class CifarLocalNet(_CifarBase):
    """layers-conv-local-11pct.cfg (lrn=True) and -13pct.cfg (lrn=False), layers named as
    there."""

    def __init__(self, config: CifarLocalConfig | None = None, name: str = "cifar_local") -> None:
        super().__init__()
        self.config = c = config or CifarLocalConfig()
        self.name = name
        w1, w2, w3, w4 = c.widths
        side = _pooled(c.input_size, c.pool_size, c.pool_stride, 2)
        if side < 1:
            raise UserError(
                f"pooling {c.pool_size}/{c.pool_stride} twice leaves nothing of "
                f"{c.input_size}x{c.input_size}"
            )
        pool = partial(nn.MaxPool2d, c.pool_size, c.pool_stride, ceil_mode=True)
        norm = (lambda: cross_map_norm(c)) if c.lrn else nn.Identity
        self.conv1 = nn.Conv2d(c.in_chans, w1, 5, padding=2)
        self.act1 = self._act()
        self.rnorm1 = norm()
        self.pool1 = pool()
        self.conv2 = nn.Conv2d(w1, w2, 5, padding=2)
        self.act2 = self._act()
        self.rnorm2 = norm()
        self.pool2 = pool()
        self.local3 = LocallyConnected2d(w2, w3, 3, side, padding=1)
        self.act3 = self._act()
        self.local4 = LocallyConnected2d(w3, w4, 3, side, padding=1)
        self.act4 = self._act()
        self.feature_side = side
        self.fc10 = nn.Linear(w4 * side * side, c.num_classes)
        k, s = c.pool_size, c.pool_stride
        sides = [n for n in range(1, MAX_INPUT_SIZE) if _pooled(n, k, s, 2) == side]
        self._input_sizes = (sides[0], sides[-1])
        self._init(c.init, LOCAL_INIT_STD)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Crops (B, C, 24, 24) to local4's maps (B, 32, 6, 6)."""
        self._check_input(x)
        x = self.pool1(self.rnorm1(self.act1(self.conv1(x))))  # (B, 64, 12, 12)
        x = self.pool2(self.rnorm2(self.act2(self.conv2(x))))  # (B, 64, 6, 6)
        x = self.act3(self.local3(x))  # (B, 32, 6, 6)
        return self.act4(self.local4(x))  # (B, 32, 6, 6)
