"""The named networks: the paper's and the ones people compare it with.

Each is `AlexNet` with the settings that make it that network, except the paper's CIFAR-10
nets `cifar4` and `cifar_local` (`alexnet.models.cifar`); `create_model` takes any field of the
network's config (`AlexNetConfig`, `CifarNetConfig`, `CifarLocalConfig`) as an option on
top, for the paper's ablations.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from alexnet.core.checks import read_value
from alexnet.core.errors import UserError
from alexnet.models.alexnet import AlexNet, AlexNetConfig
from alexnet.models.cifar import CifarLocalConfig, CifarLocalNet, CifarNet, CifarNetConfig


@dataclass(frozen=True)
class Variant:
    summary: str  # one line: what it is
    differences: str  # how it differs from the paper's text
    options: dict = field(default_factory=dict)  # config fields it sets
    input_size: int = 224  # the side of the crops it was made for
    config_class: type = AlexNetConfig
    model_class: type = AlexNet

    def option_names(self) -> list[str]:
        """The options `create_model` takes for it (num_classes and in_chans apart)."""
        names = self.config_class.option_names()
        return [k for k in names if k not in ("num_classes", "in_chans")]


VARIANTS: dict[str, Variant] = {
    "alexnet2012": Variant(
        "The paper's two-GPU network (default).",
        "None: two towers, the paper's LRN (k=2, alpha not divided by n) within each tower, "
        "3/2 max-pooling, dropout on fc6 and fc7 outputs, the paper's initialization; "
        "224x224 input with the released code's edges (227x227 also accepted).",
    ),
    "alexnet2012_1gpu": Variant(
        "The paper's one-GPU comparison net (section 6's two-tower claim).",
        "One tower with half the kernels in conv1-conv4 (48-128-192-192-256); conv5 and the "
        "FC layers not halved.",
        dict(widths=(48, 128, 192, 192, 256), towers=1),
    ),
    "alexnet2012_6conv": Variant(
        "The paper's '1 CNN*' (section 6): the two-GPU network with a sixth convolutional "
        "layer over the last pooling layer.",
        "conv6 as the released code's layers-146 has it (the paper gives no shape): 256 3x3 "
        "kernels with padding 1 over pool5's 6x6 maps, reading both towers like conv3, then "
        "ReLU, biases starting at 1; fc6 still takes 9,216 inputs. Pretrain it on a large "
        "set, then fine-tune it (alexnet train --init-from) as the paper did with ImageNet "
        "Fall 2011 and ILSVRC-2012.",
        dict(conv6=256),
    ),
    "alexnet2012_released": Variant(
        "The network of the released 2012 code (cuda-convnet's layers-145.cfg, published by "
        "the Computer History Museum in 2022).",
        "conv1's output normalized before its ReLU (the ReLU acts on pool1); a within-map "
        "normalization after conv2's LRN (rnorm over 5x5 pixels, scale 0.001/25, power "
        "0.75); the LRN's alpha 1e-4 divided by n (2e-5 in the paper's formula), k=2; "
        "conv3-conv5 initialized N(0, 0.03^2). Its recipe (configs/released.yaml): biases at "
        "twice the rate without decay, the rate cut at epochs 25, 51 and 79 of 91.",
        dict(
            lrn_convention="divided_by_n", lrn_before_relu=True, conv2_map_norm=5, init="released"
        ),
    ),
    "alexnet_owt": Variant(
        "torchvision's alexnet: the single-tower net of 'One weird trick' (2014).",
        "64-192-384-256-256 kernels in one tower, conv1 padded by 2, no LRN, dropout on fc6 "
        "and fc7 inputs, adaptive 6x6 average pooling, PyTorch's default initialization.",
        dict(
            widths=(64, 192, 384, 256, 256),
            towers=1,
            lrn=False,
            conv1_padding=2,
            conv1_edges="floor",
            dropout_placement="owt",
            adaptive_pool=True,
            init="torch",
        ),
    ),
    "caffenet": Variant(
        "Caffe's bvlc_reference_caffenet.",
        "Pooling before LRN; Caffe's LRN (alpha divided by n, k=1) across both towers' maps; "
        "227x227 input with floor arithmetic and pooling rounded up; Caffe's initialization "
        "(std 0.005 in fc6/fc7, biases 0.1 where the paper has 1).",
        dict(
            lrn_convention="divided_by_n",
            lrn_k=1.0,
            lrn_across_towers=True,
            norm_before_pool=False,
            pool_ceil=True,
            conv1_edges="floor",
            init="caffe",
        ),
        input_size=227,
    ),
    "cifar4": Variant(
        "The paper's four-layer CIFAR-10 net (Figure 1): cuda-convnet's layers-18pct.cfg.",
        "Not the ImageNet network: three 5x5 conv layers (32-32-64) with max and average "
        "3/2 pooling and within-map response normalization, then a 10-way classifier, on "
        "whole 32x32 images.",
        config_class=CifarNetConfig,
        model_class=CifarNet,
        input_size=32,
    ),
    "cifar_local": Variant(
        "The paper's CIFAR-10 net of the 13% -> 11% LRN claim: cuda-convnet's "
        "layers-conv-local-11pct.cfg (lrn=False: -13pct.cfg).",
        "Not the ImageNet network: two 5x5 conv layers (64-64), each followed by cross-map "
        "response normalization (k=1, scale/size) and 3/2 max-pooling, two locally "
        "connected 3x3 layers (32-32, unshared kernels), then a 10-way classifier, on 24x24 "
        "crops.",
        config_class=CifarLocalConfig,
        model_class=CifarLocalNet,
        input_size=24,
    ),
}

DEFAULT_MODEL = "alexnet2012"


def list_models() -> list[str]:
    """Names accepted by `create_model`, the default first."""
    return list(VARIANTS)


def create_model(
    name: str = DEFAULT_MODEL, num_classes: int = 1000, in_chans: int = 3, **options
) -> AlexNet:
    """A network by name, with any `AlexNetConfig` field as an option.

    Example:
        ```python
        model = create_model("alexnet2012", num_classes=10, lrn=False, pool_size=2)
        ```
    """
    _check(name, options)
    variant = VARIANTS[name]
    settings = {**variant.options, **options}
    config = variant.config_class(num_classes=num_classes, in_chans=in_chans, **settings)
    return variant.model_class(config, name=name)


def option_value(name: str, key: str, raw: str) -> object:
    """A command line's value for the option `key` of the network `name`, read by the type
    of its config field (`alexnet.core.checks.read_value`: text stays text, "tanh";
    numbers, booleans, lists and tuples are read, 2, 0.5, false, (48, 128, 192, 192, 256))."""
    config = VARIANTS[name].config_class if name in VARIANTS else None
    types = {f.name: f.type for f in fields(config)} if config is not None else {}
    return read_value(raw, types.get(key, ""))


def split_specs(text: str) -> tuple[str, ...]:
    """A comma-separated list of model specs, commas inside brackets kept:
    "alexnet2012,alexnet2012:widths=(48,128,192,192,256)" is two specs."""
    specs, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += (char in "([") - (char in ")]")
        if char == "," and depth == 0:
            specs.append(text[start:i])
            start = i + 1
    specs.append(text[start:])
    return tuple(s.strip() for s in specs if s.strip())


def parse_spec(spec: str) -> tuple[str, dict]:
    """A network as the benchmarks name it: a registered name, then any config options as
    :KEY=VALUE. "alexnet2012:lrn=False" is the paper's network without its LRN layers.
    Raises ValueError for an unknown name or option."""
    name, *parts = spec.split(":")
    options = {}
    for part in parts:
        key, sep, raw = part.partition("=")
        if not sep or not key.strip():
            raise UserError(f"model {spec!r}: expected NAME:KEY=VALUE, got {part!r}")
        options[key.strip()] = option_value(name, key.strip(), raw.strip())
    _check(name, options)
    return name, options


def _check(name: str, options: dict) -> None:
    """Raises ValueError for a name not registered or an option its config does not have."""
    if name not in VARIANTS:
        raise UserError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    known = VARIANTS[name].option_names()
    for key in options:
        if key not in known:
            raise UserError(f"unknown option {key!r} for {name}; options are: {', '.join(known)}")
