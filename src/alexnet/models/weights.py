"""Weights from other codebases, mapped one to one onto the paper's layer names, and made
into checkpoints that the rest of the package takes as its own."""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources

import torch

from alexnet.core.errors import UserError
from alexnet.core.version import __version__
from alexnet.data.preprocess import Preprocessing
from alexnet.models.alexnet import AlexNet
from alexnet.models.record import Classes, ModelRecord, Network, Provenance, Source
from alexnet.models.registry import create_model

#: torchvision.models.AlexNet's parameter prefixes (its nn.Sequential indices) to ours.
TORCHVISION_LAYERS = {
    "features.0": "conv1",
    "features.3": "conv2",
    "features.6": "conv3",
    "features.8": "conv4",
    "features.10": "conv5",
    "classifier.1": "fc6",
    "classifier.4": "fc7",
    "classifier.6": "fc8",
}


def from_torchvision(state_dict: Mapping[str, torch.Tensor]) -> AlexNet:
    """An `alexnet_owt` model holding a torchvision AlexNet state dict, e.g. the file of
    torchvision's IMAGENET1K_V1 weights; its outputs are torchvision's.

    Every key must be one of torchvision's; the class count is read from the last layer.
    """
    renamed = {}
    for key, value in state_dict.items():
        prefix, _, kind = key.rpartition(".")
        if prefix not in TORCHVISION_LAYERS or kind not in ("weight", "bias"):
            raise UserError(
                f"key {key!r} is not one of torchvision's AlexNet keys "
                f"({', '.join(p + '.weight/bias' for p in TORCHVISION_LAYERS)})"
            )
        renamed[f"{TORCHVISION_LAYERS[prefix]}.{kind}"] = value
    if "fc8.weight" not in renamed or "conv1.weight" not in renamed:
        raise UserError(
            "state dict lacks classifier.6.weight or features.0.weight: "
            "not a torchvision AlexNet state dict"
        )
    num_classes, in_chans = renamed["fc8.weight"].shape[0], renamed["conv1.weight"].shape[1]
    model = create_model("alexnet_owt", num_classes=num_classes, in_chans=in_chans)
    model.load_state_dict(renamed)
    return model


#: torchvision's ImageNet preprocessing: inputs are (x / 255 - mean) / std per channel
TORCHVISION_MEAN = (0.485, 0.456, 0.406)
TORCHVISION_STD = (0.229, 0.224, 0.225)


def ilsvrc2012_classes() -> tuple[list[str], list[str]]:
    """The 1,000 ILSVRC-2012 class ids (WordNet ids, sorted: the class index order) and
    names, shipped with the package (models/data/ilsvrc2012_classes.tsv)."""
    text = (
        resources.files("alexnet.models")
        .joinpath("data/ilsvrc2012_classes.tsv")
        .read_text(encoding="utf-8")
    )
    rows = [line.split("\t", 1) for line in text.splitlines() if line and not line.startswith("#")]
    return [r[0] for r in rows], [r[1] for r in rows]


def torchvision_checkpoint(
    state_dict: Mapping[str, torch.Tensor], source: str = "", sha256: str | None = None
) -> dict:
    """A checkpoint of torchvision's AlexNet weights as `alexnet_owt`, with the ILSVRC-2012
    classes (for 1,000 outputs) and torchvision's preprocessing: the shorter side resized to
    256 (bilinear, antialiased), the center 224, then (x / 255 - mean) / std, which is x
    minus the color 255 x mean, times 1 / (255 x std) per channel. `source`, `sha256`: the
    file it was read from, for the record's provenance."""
    model = from_torchvision(state_dict)
    classes = model.config.num_classes
    if classes == 1000:
        ids, names = ilsvrc2012_classes()
    else:
        ids = names = [f"class {i}" for i in range(classes)]
    record = ModelRecord(
        network=Network.of(model),
        classes=Classes(ids, names),
        preprocessing=Preprocessing(
            channels=3,
            image_size=256,
            view_size=256,
            crop_size=224,
            mean=torch.tensor(TORCHVISION_MEAN) * 255,
            scale=tuple((1 / (torch.tensor(TORCHVISION_STD) * 255)).tolist()),
        ),
        provenance=Provenance(
            package_version=__version__, imported_from=Source(source, sha256, "torchvision")
        ),
    )
    return {"record": record, "state_dict": model.state_dict(), "alexnet_version": __version__}


def untrained_checkpoint(
    name: str, num_classes: int = 1000, image_size: int = 256, seed: int = 0,
    init: str = "kaiming", scale: float | None = 1 / 60, **options,
) -> dict:  # fmt: skip
    """A checkpoint of the network `name` with seeded fresh weights (He-initialized by
    default: logits of order 1 on unit-variance inputs) and the record a 3-channel store of
    `image_size` pixels would give (`scale`: each channel's multiplier, None for the
    paper's 0-255 inputs): for measurements and checks that need a whole checkpoint but no
    trained weights (export parity, speed)."""
    from alexnet.models.registry import VARIANTS

    torch.manual_seed(seed)
    model = create_model(name, num_classes=num_classes, init=init, **options).eval()
    record = ModelRecord(
        network=Network.of(model),
        classes=Classes(
            [f"c{i}" for i in range(num_classes)], [f"class {i}" for i in range(num_classes)]
        ),
        preprocessing=Preprocessing(
            channels=3,
            image_size=image_size,
            view_size=max(image_size, 256),
            crop_size=VARIANTS[name].input_size,
            mean=torch.full((image_size, image_size, 3), 110.0),
            scale=None if scale is None else (scale,) * 3,
        ),
        provenance=Provenance(package_version=__version__),
    )
    return {"record": record, "state_dict": model.state_dict(), "alexnet_version": __version__}
