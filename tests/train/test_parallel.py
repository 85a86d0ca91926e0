"""The paper's two-device tower split computes what the grouped (groups=2) network does."""

from __future__ import annotations

import pytest
import torch

from alexnet.models.registry import create_model
from alexnet.train.config import load_config
from alexnet.train.towers import TowerParallel
from alexnet.train.trainer import train

from fixtures import DEBUG

SMALL = dict(widths=(8, 16, 16, 16, 16), fc_width=32, init="kaiming")
DEVICES = [
    pytest.param(["cuda:0", "cuda:1"], id="two-gpus", marks=pytest.mark.skipif(
        torch.cuda.device_count() < 2, reason="needs two CUDA devices")),
    pytest.param(["cpu", "cpu"], id="cpu"),
]  # fmt: skip


@pytest.mark.parametrize("devices", DEVICES)
def test_two_device_towers_equal_the_grouped_model_forward_and_backward(devices):
    torch.manual_seed(0)
    model = create_model("alexnet2012", num_classes=7, in_chans=3, **SMALL).double()
    split = TowerParallel(model, devices)
    # the split holds the same numbers in another layout
    for key, value in model.state_dict().items():
        assert torch.equal(split.grouped_state_dict()[key], value), key
    model.eval()
    split.eval()
    x = torch.randn(3, 3, 224, 224, dtype=torch.float64) * 50
    expected = model(x)
    got = split(x)
    torch.testing.assert_close(got.cpu(), expected, rtol=1e-10, atol=1e-10)
    # gradients of every weight and bias, put back into the grouped layout
    expected.square().sum().backward()
    got.square().sum().backward()
    checked = set()
    for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7"):
        for kind in ("weight", "bias"):
            halves = [getattr(getattr(t, name), kind).grad.cpu() for t in split.towers]
            whole = getattr(getattr(model, name), kind).grad
            torch.testing.assert_close(torch.cat(halves), whole, rtol=1e-9, atol=1e-9,
                                       msg=f"{name}.{kind}")  # fmt: skip
            checked.add(f"{name}.{kind}")
    for kind in ("weight", "bias"):
        torch.testing.assert_close(getattr(split.fc8, kind).grad.cpu(),
                                   getattr(model.fc8, kind).grad, rtol=1e-9, atol=1e-9)  # fmt: skip
        checked.add(f"fc8.{kind}")
    assert checked == {n for n, p in model.named_parameters()}  # every parameter checked


def test_conv3_is_where_the_towers_meet():
    torch.manual_seed(0)
    model = create_model("alexnet2012", num_classes=7, **SMALL).double().eval()
    split = TowerParallel(model, ["cpu", "cpu"])
    tower_a, tower_b = split.towers
    assert tower_b.conv3.in_channels == 16  # conv3 reads both towers on each device
    assert tower_a.conv2.in_channels == 4 and tower_a.conv3.in_channels == 16
    assert tower_a.conv4.in_channels == 8 and tower_a.fc6.in_features == 16 * 36


def test_other_layouts_are_refused():
    with pytest.raises(ValueError, match="differs in: towers"):
        TowerParallel(create_model("alexnet2012_1gpu", num_classes=3), ["cpu", "cpu"])


def test_training_with_split_towers_writes_grouped_checkpoints(store, tmp_path):
    from alexnet.models import checkpoint as ckpt

    base = [f"data.store={store}", "run.epochs=1", "model.dropout=0.0"]
    train(load_config(DEBUG, base), tmp_path / "grouped")
    train(load_config(DEBUG, [*base, "run.tower_devices=[cpu, cpu]"]), tmp_path / "split")
    a = ckpt.load(tmp_path / "grouped" / "checkpoints" / "last.pt")["state_dict"]
    b = ckpt.load(tmp_path / "split" / "checkpoints" / "last.pt")["state_dict"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)
