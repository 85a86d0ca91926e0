"""from_torchvision against torchvision's own AlexNet layout.

torchvision is not installable beside the CPU torch build here, so the reference is its
module tree rebuilt below, layer for layer as torchvision/models/alexnet.py defines it
(nn.Sequential indices included, since they make the state dict's key names).
"""

import re

import pytest
import torch
from torch import nn

from alexnet import from_torchvision
from alexnet.models.weights import TORCHVISION_LAYERS

from fixtures import ROOT


class TorchvisionAlexNet(nn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),  # features.0
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),  # features.3
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),  # features.6
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),  # features.8
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),  # features.10
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(0.5),
            nn.Linear(256 * 6 * 6, 4096),  # classifier.1
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(4096, 4096),  # classifier.4
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),  # classifier.6
        )

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


@pytest.fixture(scope="module")
def torchvision_net():
    torch.manual_seed(0)
    return TorchvisionAlexNet().eval()


def test_from_torchvision_maps_every_key_one_to_one(torchvision_net):
    theirs = torchvision_net.state_dict()
    ours = from_torchvision(theirs).state_dict()
    assert len(ours) == len(theirs) == 16
    for key, value in theirs.items():
        prefix, _, kind = key.rpartition(".")
        assert torch.equal(ours[f"{TORCHVISION_LAYERS[prefix]}.{kind}"], value), key


@pytest.mark.parametrize("size", [224, 227, 256])
def test_from_torchvision_gives_torchvision_outputs(torchvision_net, size):
    model = from_torchvision(torchvision_net.state_dict()).eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        assert torch.equal(model(x), torchvision_net(x))


def test_from_torchvision_reads_the_class_count():
    model = from_torchvision(TorchvisionAlexNet(num_classes=10).state_dict())
    assert model.config.num_classes == 10 and model.name == "alexnet_owt"


def test_from_torchvision_rejects_other_keys(torchvision_net):
    state = dict(torchvision_net.state_dict())
    state["features.2.weight"] = torch.zeros(1)
    with pytest.raises(
        ValueError, match=re.escape("'features.2.weight' is not one of torchvision's")
    ):
        from_torchvision(state)
    state = {k: v for k, v in torchvision_net.state_dict().items() if k != "features.8.bias"}
    with pytest.raises(ValueError, match=re.escape("missing keys: conv4.bias")):
        from_torchvision(state)
    state = {"module." + k: v for k, v in torchvision_net.state_dict().items()}
    with pytest.raises(ValueError, match=re.escape("'module.features.0.weight' is not one of")):
        from_torchvision(state)


def test_from_torchvision_names_a_wrongly_shaped_key(torchvision_net):
    state = dict(torchvision_net.state_dict())
    state["features.3.weight"] = torch.zeros(192, 32, 5, 5)
    with pytest.raises(ValueError, match=r"'conv2.weight' has shape \(192, 32, 5, 5\)"):
        from_torchvision(state)


def test_readme_python_example_runs(tmp_path, capsys):
    """README's "classify one photo", on a checkpoint of torchvision's layout (made-up
    weights) and a photo written here."""
    from alexnet.models import checkpoint as ckpt
    from alexnet.models.weights import torchvision_checkpoint

    from fixtures import photo
    from references import torchvision_state_dict

    readme = (ROOT / "README.md").read_text()
    example = readme.split("```python\n", 1)[1].split("```", 1)[0]
    assert len(example.strip().splitlines()) <= 5 and "alexnet.load(" in example
    ckpt.save(tmp_path / "tv.pt", torchvision_checkpoint(torchvision_state_dict()))
    photo(3, (320, 240)).save(tmp_path / "photo.jpg")
    example = example.replace('"runs/NAME"', repr(str(tmp_path / "tv.pt")))
    example = example.replace('"photo.jpg"', repr(str(tmp_path / "photo.jpg")))
    exec(example, {})
    printed = capsys.readouterr().out.strip()
    assert printed in ckpt.load(tmp_path / "tv.pt")["record"].classes.names


def test_from_torchvision_matches_the_real_torchvision():
    # Skips where torchvision is not installed (here: it needs a CUDA build of torch).
    models = pytest.importorskip("torchvision.models", reason="torchvision is not installed")
    torch.manual_seed(0)
    reference = models.alexnet(weights=None).eval()
    model = from_torchvision(reference.state_dict()).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))
