"""Weights from other codebases, mapped one to one onto the paper's layer names."""

from __future__ import annotations

from collections.abc import Mapping

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
