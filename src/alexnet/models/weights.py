"""Weights from other codebases, mapped one to one onto the paper's layer names, and made
into checkpoints that the rest of the package takes as its own."""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources

import torch

from alexnet.models.alexnet import AlexNet
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
            raise ValueError(
                f"key {key!r} is not one of torchvision's AlexNet keys "
                f"({', '.join(p + '.weight/bias' for p in TORCHVISION_LAYERS)})"
            )
        renamed[f"{TORCHVISION_LAYERS[prefix]}.{kind}"] = value
    if "fc8.weight" not in renamed or "conv1.weight" not in renamed:
        raise ValueError(
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


def torchvision_checkpoint(state_dict: Mapping[str, torch.Tensor], source: str = "") -> dict:
    """A checkpoint of torchvision's AlexNet weights as `alexnet_owt`, with the ILSVRC-2012
    classes (for 1,000 outputs) and torchvision's preprocessing: the shorter side resized to
    256, the center 224, then (x / 255 - mean) / std, which is x minus a constant mean image
    of 255 x mean, times 1 / (255 x std) per channel."""
    from alexnet.models.checkpoint import model_record

    model = from_torchvision(state_dict)
    classes = model.config.num_classes
    if classes == 1000:
        ids, names = ilsvrc2012_classes()
    else:
        ids = names = [f"class {i}" for i in range(classes)]
    mean = torch.tensor(TORCHVISION_MEAN) * 255
    return {
        "model": model_record(model),
        "state_dict": model.state_dict(),
        "data": {
            "class_ids": ids,
            "class_names": names,
            "channels": 3,
            "image_size": 256,
            "view_size": 256,
            "crop_size": 224,
            "mean_image": mean.expand(256, 256, 3).clone(),
            "normalize": "std",
            "scale": 1 / (torch.tensor(TORCHVISION_STD) * 255),
            "preprocessing": "torchvision",
        },
        "imported": {"from": "torchvision", "file": source},
    }


def untrained_checkpoint(
    name: str, num_classes: int = 1000, image_size: int = 256, seed: int = 0,
    init: str = "kaiming", **options,
) -> dict:  # fmt: skip
    """A checkpoint of the network `name` with seeded fresh weights (He-initialized by
    default: logits of order 1 on unit-variance inputs) and the data record a 3-channel
    store of `image_size` pixels would give: for measurements and checks that need a whole
    checkpoint but no trained weights (export parity, speed)."""
    from alexnet.models.checkpoint import model_record
    from alexnet.models.registry import VARIANTS

    torch.manual_seed(seed)
    model = create_model(name, num_classes=num_classes, init=init, **options).eval()
    return {
        "model": model_record(model),
        "state_dict": model.state_dict(),
        "data": {
            "class_ids": [f"c{i}" for i in range(num_classes)],
            "class_names": [f"class {i}" for i in range(num_classes)],
            "channels": 3,
            "image_size": image_size,
            "view_size": max(image_size, 256),
            "crop_size": VARIANTS[name].input_size,
            "mean_image": torch.full((image_size, image_size, 3), 110.0),
            "normalize": "std",
            "scale": torch.full((3,), 1 / 60),
        },
    }
