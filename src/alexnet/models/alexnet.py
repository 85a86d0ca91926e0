"""The 2012 network (section 3.5, Figure 2) and the networks people compare it with, as one class.

Every way in which the paper's text, its released code, Caffe and torchvision differ is a
named field of `AlexNetConfig`, so the variants in `alexnet.models.registry` are the same code with
other settings. The defaults are the paper's text.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import partial

import torch
from torch import nn

from alexnet.core.checks import check_choice, check_type
from alexnet.core.errors import UserError
from alexnet.nn.block import activate_norm_pool
from alexnet.nn.conv import CeilConv2d, TowerConv2d, conv_output_size, pool_output_size, side
from alexnet.nn.lrn import (
    PAPER_ALPHA,
    PAPER_BETA,
    PAPER_K,
    PAPER_SIZE,
    LocalResponseNorm,
    WithinMapNorm,
    check_settings,
)

#: The paper's layers, in order; also the names of their modules and of Caffe's blobs.
LAYER_NAMES = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")
#: The sixth convolutional layer of the paper's "1 CNN*" (section 6), where it has one.
EXTRA_LAYERS = ("conv6",)
#: Each layer's ReLU module: what "a layer's output" means to features and Grad-CAM.
RECTIFIED_BY = {"conv1": "act1", "conv2": "act2", "conv3": "act3", "conv4": "act4",
                "conv5": "act5", "conv6": "act_conv6", "fc6": "act6", "fc7": "act7"}  # fmt: skip


def output_layers(model: nn.Module) -> list[str]:
    """The names whose outputs can be asked for (features, Grad-CAM), in the network's
    order: its layers, without the activations and dropouts, which a layer's name stands for
    (convN and fcN give their rectified outputs)."""
    return [name for name, module in model.named_children()
            if module is not None and not name.startswith(("act", "drop"))
            and name != "avgpool"]  # fmt: skip


def layer_output(model: nn.Module, name: str) -> nn.Module:
    """The module whose output is layer `name`'s: convN and fcN's activation (the rectified
    maps the next layer reads) where it has one, else the layer itself; ValueError listing
    the names for one the network does not have."""
    names = output_layers(model)
    if name not in names:
        raise UserError(f"no layer {name!r} in {getattr(model, 'name', 'the network')}; its "
                         f"layers: {', '.join(names)}")  # fmt: skip
    children = dict(model.named_children())
    rectified = RECTIFIED_BY.get(name)
    return children[rectified] if children.get(rectified) is not None else children[name]


#: fc6 sees a 6x6 map of each conv5 kernel (Figure 2: 9216 = 256x6x6).
FEATURE_MAP_SIZE = 6

#: Input sides are searched below this many pixels for the range a model accepts.
MAX_INPUT_SIZE = 4096

ACTIVATIONS = ("relu", "tanh")
CONV1_EDGES = ("released", "floor")
DROPOUT_PLACEMENTS = ("paper", "owt")
REMOVABLE_LAYERS = ("conv3", "conv4")
INITS = ("paper", "caffe", "kaiming", "torch", "released")

#: Layers whose biases the paper starts at 1, "so ReLUs start with positive input"
#: (conv6, where there is one, as the released layers-146 starts it).
BIAS_ONE_LAYERS = ("conv2", "conv4", "conv5", "conv6", "fc6", "fc7")


@dataclass(frozen=True)
class AlexNetConfig:
    """Architecture and initialization. Defaults: the paper's two-GPU network."""

    num_classes: int = 1000
    in_chans: int = 3  # 3 for RGB; 1 for grayscale data such as Fashion-MNIST
    # Kernels of conv1..conv5, both towers together. The one-GPU net: (48, 128, 192, 192, 256).
    widths: tuple[int, int, int, int, int] = (96, 256, 384, 384, 256)
    fc_width: int = 4096  # neurons of fc6 and fc7
    # 2: the paper's two GPUs. conv2, conv4 and conv5 see only their own tower's maps
    # (groups=2) and LRN normalizes within a tower. 1: every kernel sees every map.
    towers: int = 2
    activation: str = "relu"  # relu | tanh (the paper's Figure 1 comparison)
    lrn: bool = True  # LRN after conv1 and conv2 (paper section 3.3)
    lrn_convention: str = "paper"  # paper: k + alpha * sum; divided_by_n: k + alpha / n * sum
    lrn_size: int = PAPER_SIZE  # n, adjacent maps summed over (section 3.3's constants)
    lrn_alpha: float = PAPER_ALPHA  # as lrn_convention reads it
    lrn_beta: float = PAPER_BETA
    lrn_k: float = PAPER_K
    lrn_across_towers: bool = False  # Caffe: one LRN over all maps, whatever the towers
    norm_before_pool: bool = True  # False: pool, then LRN (CaffeNet)
    pool_size: int = 3  # z; 3 with stride 2 overlaps (paper section 3.4); 2/2 does not
    pool_stride: int = 2  # s
    pool_ceil: bool = False  # round pooling outputs up, as Caffe does
    conv1_padding: int = 0
    # released: 1 + ceil((n - 11) / 4) outputs, zeros past the bottom and right edges, so
    # 224 pixels give 55 (the released 2012 code); floor: PyTorch's and Caffe's arithmetic.
    conv1_edges: str = "released"
    dropout: float = 0.5  # probability of zeroing a hidden neuron during training
    # paper: drop fc6's and fc7's outputs; owt: drop fc6's and fc7's inputs (torchvision).
    dropout_placement: str = "paper"
    adaptive_pool: bool = False  # torchvision: AdaptiveAvgPool2d((6, 6)) before fc6
    remove_layer: str | None = None  # conv3 | conv4: the paper's depth ablation (section 6)
    # kernels of a sixth convolutional layer over the last pooling layer (3x3, padding 1,
    # reading both towers, ReLU), the paper's "1 CNN*" (section 6; the released
    # layers-146); 0: none
    conv6: int = 0
    # the released code (layers-145): conv1's output normalized before its ReLU, which acts
    # on the pooled maps (ReLU and max-pooling commute; the LRN and the ReLU do not)
    lrn_before_relu: bool = False
    # the released code's within-map normalization after conv2's LRN (cuda-convnet's rnorm
    # over size x size pixels of each map: u / (1 + scale / size^2 * sum u^2) ** power); 0: none
    conv2_map_norm: int = 0
    conv2_map_norm_scale: float = 0.001
    conv2_map_norm_power: float = 0.75
    # paper: N(0, 0.01^2), biases 1 in BIAS_ONE_LAYERS; caffe: bvlc_alexnet's fillers;
    # kaiming: He-normal, zero biases (learns within minutes); torch: PyTorch's defaults;
    # released: the paper's, but N(0, 0.03^2) in conv3-conv5 (layers-145's initW).
    init: str = "paper"

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(self.widths))  # lists from YAML or JSON
        for f in fields(self):
            check_type(f.name, getattr(self, f.name), f.type)
        check_choice("activation", self.activation, ACTIVATIONS)
        check_choice("conv1_edges", self.conv1_edges, CONV1_EDGES)
        check_choice("dropout_placement", self.dropout_placement, DROPOUT_PLACEMENTS)
        check_choice("remove_layer", self.remove_layer, (None, *REMOVABLE_LAYERS))
        check_choice("init", self.init, INITS)
        widths = self.widths
        if len(widths) != 5 or any(not isinstance(w, int) or w < 1 for w in widths):
            raise UserError(f"widths must be five positive integers (conv1..conv5), got {widths}")
        if self.conv6 < 0 or self.conv6 % self.towers:
            raise UserError(f"conv6 must be 0 or kernels divisible by {self.towers} towers, "
                             f"got {self.conv6}")  # fmt: skip
        for name in ("num_classes", "in_chans", "fc_width", "towers", "pool_size", "pool_stride"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if any(w % self.towers for w in widths):
            raise UserError(
                f"widths {widths} must split evenly into {self.towers} towers: "
                f"each must be divisible by {self.towers}"
            )
        check_settings(self.lrn_size, 1, self.lrn_convention, "auto")  # the LRN's own checks
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"dropout is a probability in [0, 1), got {self.dropout}")
        if self.conv1_padding < 0:
            raise UserError(f"conv1_padding must be 0 or more, got {self.conv1_padding}")

    @classmethod
    def option_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


class AlexNet(nn.Module):
    """Krizhevsky, Sutskever and Hinton (2012), Figure 2, with the layers named as in the paper.

    Each of conv1..conv5 and fc6..fc8 is one module, so weights map one to one onto the
    paper's layers and Caffe's blobs. The two towers are groups=2 convolutions: output maps
    [0, C/2) are tower A's (the paper's first GPU), [C/2, C) tower B's. They run as one
    grouped call on CPU and as one call per tower on CUDA (`TowerConv2d`), whichever the
    backend runs faster.

    On CPU, the ReLU, LRN and pooling after conv1 and conv2 run as one fused operation with
    the same arithmetic (`alexnet.nn.block`); set `model.fuse = False` to run the three
    modules in turn. The fused path is skipped while any of them has a forward hook, so hooks
    on act1, norm1 or pool1 always see their layer's output. On CUDA the LRN runs as Triton
    kernels when Triton is installed (`alexnet.nn.lrn` chooses).
    """

    def __init__(self, config: AlexNetConfig | None = None, name: str = "AlexNet") -> None:
        super().__init__()
        self.config = c = config or AlexNetConfig()
        self.name = name
        w1, w2, w3, w4, w5 = c.widths
        own = c.towers  # groups for the layers that see only their own tower's maps
        act = nn.Tanh if c.activation == "tanh" else partial(nn.ReLU, inplace=True)
        conv1 = CeilConv2d if c.conv1_edges == "released" else nn.Conv2d

        # Section 3.5 and Figure 2, one layer a line.
        self.conv1 = conv1(c.in_chans, w1, 11, stride=4, padding=c.conv1_padding)  # image
        self.act1 = act()
        self.norm1 = self._lrn()
        self.pool1 = self._pool()
        self.conv2 = TowerConv2d(w1, w2, 5, padding=2, groups=own)
        self.act2 = act()
        self.norm2 = self._lrn()
        self.map_norm2 = None
        if c.conv2_map_norm:  # the released code's cnorm2
            self.map_norm2 = WithinMapNorm(
                c.conv2_map_norm, c.conv2_map_norm_scale, c.conv2_map_norm_power
            )
        self.pool2 = self._pool()
        maps = w2
        self.conv3 = self.act3 = None
        if c.remove_layer != "conv3":
            self.conv3 = nn.Conv2d(maps, w3, 3, padding=1)  # both towers: the GPUs talk here
            self.act3 = act()
            maps = w3
        self.conv4 = self.act4 = None
        if c.remove_layer != "conv4":
            self.conv4 = TowerConv2d(maps, w4, 3, padding=1, groups=own)
            self.act4 = act()
            maps = w4
        self.conv5 = TowerConv2d(maps, w5, 3, padding=1, groups=own)
        self.act5 = act()
        self.pool5 = self._pool()
        self.conv6 = self.act_conv6 = None
        if c.conv6:  # 1 CNN*: over the last pooling layer, 6x6 maps in and out; like conv3
            # it reads both towers (the released layers-146: conv6a and conv6b each take
            # pool3a and pool3b)
            self.conv6 = nn.Conv2d(w5, c.conv6, 3, padding=1)
            self.act_conv6 = act()
        self.avgpool = nn.AdaptiveAvgPool2d(FEATURE_MAP_SIZE) if c.adaptive_pool else None
        owt = c.dropout_placement == "owt"
        self.drop5 = nn.Dropout(c.dropout) if owt else None  # torchvision drops fc6's input
        self.fc6 = nn.Linear((c.conv6 or w5) * FEATURE_MAP_SIZE**2, c.fc_width)  # both towers
        self.act6 = act()
        self.drop6 = nn.Dropout(c.dropout)  # fc6's output is fc7's input in both placements
        self.fc7 = nn.Linear(c.fc_width, c.fc_width)
        self.act7 = act()
        self.drop7 = None if owt else nn.Dropout(c.dropout)  # the paper drops fc7's output
        self.fc8 = nn.Linear(c.fc_width, c.num_classes)  # logits; softmax is in the loss

        init_weights(self, c.init)
        self.fuse = True
        self._input_sizes: tuple[int, int] | None = None
        if self.input_sizes()[0] == 0:
            raise UserError(
                f"with these settings no input of up to {MAX_INPUT_SIZE - 1} pixels gives the "
                f"{FEATURE_MAP_SIZE}x{FEATURE_MAP_SIZE} maps fc6 takes: {c}"
            )

    def _lrn(self) -> nn.Module:
        c = self.config
        if not c.lrn:
            return nn.Identity()
        return LocalResponseNorm(
            size=c.lrn_size,
            alpha=c.lrn_alpha,
            beta=c.lrn_beta,
            k=c.lrn_k,
            groups=1 if c.lrn_across_towers else c.towers,
            convention=c.lrn_convention,
        )

    def _pool(self) -> nn.MaxPool2d:
        c = self.config
        return nn.MaxPool2d(c.pool_size, c.pool_stride, ceil_mode=c.pool_ceil)

    def _norm_pool(self, x, act, norm, pool) -> torch.Tensor:
        """ReLU, LRN and overlapping pooling (sections 3.3-3.4), fused on CPU: `nn.block`."""
        return activate_norm_pool(x, act, norm, pool, self.config.norm_before_pool, self.fuse)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) to the map that fc6 takes: (B, 256, 6, 6) in the paper."""
        self._check_input(x)
        x = self.conv1(x)  # (B, 96, 55, 55)
        if self.config.lrn_before_relu:  # the released code's conv1
            x = self.act1(self.pool1(self.norm1(x)))
        else:
            x = self._norm_pool(x, self.act1, self.norm1, self.pool1)  # (B, 96, 27, 27)
        x = self.conv2(x)  # (B, 256, 27, 27)
        if self.map_norm2 is not None:  # the released code's conv2: LRN, then within maps
            x = self.pool2(self.map_norm2(self.norm2(self.act2(x))))
        else:
            x = self._norm_pool(x, self.act2, self.norm2, self.pool2)  # (B, 256, 13, 13)
        if self.conv3 is not None:
            x = self.act3(self.conv3(x))  # (B, 384, 13, 13)
        if self.conv4 is not None:
            x = self.act4(self.conv4(x))  # (B, 384, 13, 13)
        x = self.act5(self.conv5(x))  # (B, 256, 13, 13)
        x = self.pool5(x)  # (B, 256, 6, 6)
        if self.conv6 is not None:
            x = self.act_conv6(self.conv6(x))  # (B, conv6, 6, 6)
        if self.avgpool is not None:
            x = self.avgpool(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """The map before fc6 to logits (B, num_classes), or with `pre_logits` to what fc8
        receives: the 4096 fc7 activations (after dropout in training mode)."""
        expected = (self.config.conv6 or self.config.widths[4], FEATURE_MAP_SIZE, FEATURE_MAP_SIZE)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise UserError(
                f"{self.name}.forward_head expects features shaped (B, {expected[0]}, "
                f"{expected[1]}, {expected[2]}), got {tuple(x.shape)}"
            )
        x = torch.flatten(x, 1)  # (B, 9216)
        if self.drop5 is not None:
            x = self.drop5(x)
        x = self.drop6(self.act6(self.fc6(x)))  # (B, 4096)
        x = self.act7(self.fc7(x))  # (B, 4096)
        if self.drop7 is not None:
            x = self.drop7(x)
        return x if pre_logits else self.fc8(x)  # (B, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    # Input checks: a user's mistake gets a message, not a traceback from inside torch.

    def feature_map_size(self, size: int) -> int:
        """Side of the map before fc6 (before any adaptive pooling) for an input side of
        `size` pixels; 0 when the input is too small for some layer."""
        for layer in (
            *(self.conv1, self.pool1, self.conv2, self.pool2),
            *(self.conv3, self.conv4, self.conv5, self.pool5),
        ):
            size = _layer_output_size(layer, size)
        return size

    def input_sizes(self) -> tuple[int, int]:
        """The smallest and largest input sides this model accepts (largest 0: no bound;
        (0, 0): none below MAX_INPUT_SIZE)."""
        if self._input_sizes is None:
            # Each layer's output grows by at most 1 per input pixel, so the map size passes
            # through every value and the sides that give 6x6 form one range.
            low = high = 0
            for side in range(1, MAX_INPUT_SIZE):
                got = self.feature_map_size(side)
                if self.avgpool is not None and got >= 1:
                    low = side
                    break
                if got == FEATURE_MAP_SIZE:
                    low, high = low or side, side
                elif got > FEATURE_MAP_SIZE:
                    break
            self._input_sizes = (low, 0 if self.avgpool is not None else high)
        return self._input_sizes

    def _check_input(self, x: torch.Tensor) -> None:
        chans = self.config.in_chans
        if not x.is_floating_point():
            raise UserError(
                f"{self.name} expects floating-point images (mean-subtracted pixel values), "
                f"got {x.dtype}; convert with x.float()"
            )
        if x.dim() != 4:
            raise UserError(
                f"{self.name} expects a batch of images shaped (N, {chans}, H, W), got a "
                f"tensor of rank {x.dim()} with shape {tuple(x.shape)}"
                + ("; add a batch dimension with x.unsqueeze(0)" if x.dim() == 3 else "")
            )
        if x.shape[1] != chans:
            raise UserError(
                f"{self.name} expects {chans} input channel{'s' if chans > 1 else ''} "
                f"(create it with in_chans={x.shape[1]} for other data), got shape "
                f"{tuple(x.shape)}"
            )
        h, w = x.shape[-2:]
        if all(self._accepts(s) for s in (h, w)):
            return
        low, high = self.input_sizes()
        if high:
            want = f"{low} to {high} pixels a side, which give the 6x6 maps fc6 takes"
            if low <= 224 <= high and low <= 227 <= high:
                want += " (224 as in the paper, 227 as in Caffe)"
            got = self.feature_map_size(h), self.feature_map_size(w)
            detail = f", which gives {got[0]}x{got[1]}"
        else:
            want, detail = f"at least {low} pixels a side", ""
        raise UserError(f"{self.name} expects images of {want}, got {h}x{w}{detail}")

    def _accepts(self, size: int) -> bool:
        # The map only grows with the input, so the accepted sides form one range.
        low, high = self.input_sizes()
        return low <= size and (not high or size <= high)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """As nn.Module's, but a mismatch is a ValueError naming the first offending key."""
        own = self.state_dict()
        for key, value in own.items():
            theirs = state_dict.get(key)
            if theirs is not None and tuple(theirs.shape) != tuple(value.shape):
                raise UserError(
                    f"state dict key {key!r} has shape {tuple(theirs.shape)}, but {self.name} "
                    f"has {tuple(value.shape)} there (num_classes={self.config.num_classes}, "
                    f"in_chans={self.config.in_chans}, widths={self.config.widths})"
                )
        if strict:
            missing = [k for k in own if k not in state_dict]
            unexpected = [k for k in state_dict if k not in own]
            if missing or unexpected:
                parts = []
                if missing:
                    parts.append(f"missing keys: {', '.join(missing)}")
                if unexpected:
                    parts.append(f"unexpected keys: {', '.join(unexpected)}")
                raise UserError(f"state dict does not fit {self.name}: " + "; ".join(parts))
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


def _layer_output_size(layer: nn.Module | None, size: int) -> int:
    """One spatial layer's output side for an input side of `size` (None: removed layer)."""
    if layer is None or size < 1:
        return size
    if isinstance(layer, nn.MaxPool2d):
        k, s, p = (side(v) for v in (layer.kernel_size, layer.stride, layer.padding))
        return pool_output_size(size, k, s, p, layer.ceil_mode)
    ceil = isinstance(layer, CeilConv2d)
    return conv_output_size(size, layer.kernel_size[0], layer.stride[0], layer.padding[0], ceil)


def init_weights(model: AlexNet, scheme: str) -> None:
    """Initialize conv1..fc8 by a named scheme (see AlexNetConfig.init)."""
    if scheme == "torch":
        return  # PyTorch's defaults, which torchvision's AlexNet keeps
    for name in (*LAYER_NAMES, *EXTRA_LAYERS):
        layer = getattr(model, name, None)
        if layer is None:
            continue
        with torch.no_grad():
            if scheme in ("paper", "released"):  # paper section 5; layers-145's initW
                wide = scheme == "released" and name in ("conv3", "conv4", "conv5", "conv6")
                nn.init.normal_(layer.weight, 0.0, 0.03 if wide else 0.01)
                layer.bias.fill_(1.0 if name in BIAS_ONE_LAYERS else 0.0)
            elif scheme == "caffe":  # bvlc_alexnet's train_val.prototxt fillers
                nn.init.normal_(layer.weight, 0.0, 0.005 if name in ("fc6", "fc7") else 0.01)
                layer.bias.fill_(0.1 if name in BIAS_ONE_LAYERS else 0.0)
            elif scheme == "kaiming":  # He et al. 2015, fan-in, for ReLU
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
                layer.bias.zero_()
            else:
                raise UserError(f"init must be one of {', '.join(INITS)}; got {scheme!r}")
