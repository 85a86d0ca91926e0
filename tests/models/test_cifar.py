"""The paper's CIFAR-10 nets (`alexnet.models.cifar`) against cuda-convnet's layer definitions,
each checked by a naive loop of the released code's formula."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from alexnet.models.cifar import CifarLocalConfig, CifarNet, CifarNetConfig, WithinMapNorm
from alexnet.models.registry import create_model
from alexnet.nn.local import LocallyConnected2d

from references import naive_rnorm


def naive_cmrnorm(u: torch.Tensor, size: int, scale: float, power: float) -> torch.Tensor:
    """cuda-convnet's cmrnorm: the same over `size` adjacent maps, scale divided by size."""
    c = u.shape[1]
    out = torch.empty_like(u)
    half = size // 2
    for f in range(c):
        window = u[:, max(0, f - half) : min(c, f - half + size)]
        out[:, f] = u[:, f] / (1 + scale / size * (window**2).sum(1)) ** power
    return out


def naive_pool(u: torch.Tensor, size: int, stride: int, kind: str) -> torch.Tensor:
    """cuda-convnet's pooling with start=0: ceil((n - size) / stride) + 1 outputs a side,
    each the max or the mean of the pixels its window covers inside the image."""
    n, c, h = u.shape[:3]  # square maps
    outs = math.ceil((h - size) / stride) + 1
    out = torch.empty(n, c, outs, outs, dtype=u.dtype)
    for y in range(outs):
        for x in range(outs):
            window = u[:, :, y * stride : y * stride + size, x * stride : x * stride + size]
            flat = window.reshape(n, c, -1)
            out[:, :, y, x] = flat.amax(-1) if kind == "max" else flat.mean(-1)
    return out


def test_within_map_norm_equals_the_released_formula():
    torch.manual_seed(0)
    u = 40 * torch.randn(2, 3, 7, 6, dtype=torch.float64)  # 0-255-scale activations
    got = WithinMapNorm(3, 5e-5, 0.75)(u)
    torch.testing.assert_close(got, naive_rnorm(u, 3, 5e-5, 0.75), rtol=1e-12, atol=0)
    torch.testing.assert_close(
        WithinMapNorm(5, 1e-3, 0.5)(u), naive_rnorm(u, 5, 1e-3, 0.5), rtol=1e-12, atol=0
    )
    # the gradient of the torch formula against finite differences
    small = (4 * torch.randn(1, 2, 5, 5, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(WithinMapNorm(3, 0.05, 0.75), (small,))


def test_cross_map_norm_equals_cmrnorm():
    torch.manual_seed(1)
    model = create_model("cifar4", lrn_kind="cross-map", lrn_size=5, lrn_scale=1e-3)
    u = 30 * torch.randn(2, 32, 4, 4)
    torch.testing.assert_close(model.rnorm1(u), naive_cmrnorm(u, 5, 1e-3, 0.75))


@pytest.mark.parametrize("size,stride", [(3, 2), (2, 2)])
def test_pooling_equals_cuda_convnet(size, stride):
    torch.manual_seed(2)
    model = create_model("cifar4", pool_size=size, pool_stride=stride)
    for side in (32, 16, 15, 8):  # even and odd sides: windows cut by the edge
        u = torch.randn(2, 3, side, side, dtype=torch.float64)
        torch.testing.assert_close(model.pool1(u), naive_pool(u, size, stride, "max"))
        torch.testing.assert_close(model.pool2(u), naive_pool(u, size, stride, "avg"))


def layer_shapes(model: nn.Module, side: int) -> dict[str, tuple[int, ...]]:
    """Each child module's output shape (batch left out), in the order they run."""
    shapes = {}
    for name, module in model.named_children():
        module.register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(name, o.shape))
    model(torch.randn(2, 3, side, side))
    return {k: tuple(v[1:]) for k, v in shapes.items()}


def test_the_layers_of_layers_18pct():
    model = create_model("cifar4", num_classes=10)
    shapes = layer_shapes(model, 32)
    assert shapes == {
        "conv1": (32, 32, 32), "pool1": (32, 16, 16), "act1": (32, 16, 16),
        "rnorm1": (32, 16, 16), "conv2": (32, 16, 16), "act2": (32, 16, 16),
        "pool2": (32, 8, 8), "rnorm2": (32, 8, 8), "conv3": (64, 8, 8), "act3": (64, 8, 8),
        "pool3": (64, 4, 4), "fc10": (10,),
    }  # fmt: skip
    # the order of the file: conv1, pool1 (max) with the ReLU after it, rnorm1, conv2 with
    # its ReLU, pool2 (average), rnorm2, conv3 with its ReLU, pool3 (average), fc10
    assert list(shapes) == ["conv1", "pool1", "act1", "rnorm1", "conv2", "act2", "pool2",
                            "rnorm2", "conv3", "act3", "pool3", "fc10"]  # fmt: skip
    assert isinstance(model.pool1, nn.MaxPool2d) and isinstance(model.pool3, nn.AvgPool2d)
    # by hand: 5x5 kernels with biases, and the classifier over 64 maps of 4x4
    by_hand = (3 * 25 + 1) * 32 + (32 * 25 + 1) * 32 + (32 * 25 + 1) * 64 + (1024 + 1) * 10
    assert sum(p.numel() for p in model.parameters()) == by_hand == 89_578


def test_released_initialization_and_variants():
    torch.manual_seed(3)
    model = create_model("cifar4", widths=[64, 64, 64])  # wide enough for a sample std
    assert model.conv1.weight.std().item() == pytest.approx(1e-4, rel=0.05)
    for name in ("conv2", "conv3", "fc10"):
        assert getattr(model, name).weight.std().item() == pytest.approx(0.01, rel=0.05)
        assert not getattr(model, name).bias.any()
    tanh = create_model("cifar4", activation="tanh", lrn=False)
    assert all(isinstance(getattr(tanh, f"act{i}"), nn.Tanh) for i in (1, 2, 3))
    assert isinstance(tanh.rnorm1, nn.Identity) and isinstance(tanh.rnorm2, nn.Identity)
    # 2/2 pooling also leaves 4x4 maps of a 32x32 image
    assert create_model("cifar4", pool_size=2)(torch.randn(1, 3, 32, 32)).shape == (1, 1000)


def test_bad_settings_and_inputs_are_refused_with_a_reason():
    with pytest.raises(ValueError, match="3 positive integers"):
        CifarNetConfig(widths=(32, 32))
    with pytest.raises(ValueError, match="lrn_kind"):
        CifarNetConfig(lrn_kind="spatial")
    with pytest.raises(ValueError, match="unknown option 'towers'"):
        create_model("cifar4", towers=2)
    with pytest.raises(ValueError, match="32 to 39 pixels a side"):
        CifarNet()(torch.randn(1, 3, 224, 224))
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        CifarNet(CifarNetConfig(in_chans=1))(torch.randn(1, 3, 32, 32))


def test_cifar4_trains_on_a_32_pixel_store_and_keeps_training_error_per_fifth(store32, tmp_path):
    from alexnet.train.config import load_config
    from alexnet.train.rundir import read_metrics
    from alexnet.train.trainer import train

    config = load_config(
        "configs/cifar4.yaml",
        [f"data.store={store32}", "run.epochs=2", "optim.batch_size=10",
         "run.device=cpu"],
    )  # fmt: skip
    train(config, tmp_path / "run")
    records = read_metrics(tmp_path / "run")
    assert [r["epoch"] for r in records] == [1, 2]
    for record in records:
        parts = record["train_top1_error_parts"]
        # ten steps of ten images: two steps a fifth, so the mean of the parts is the epoch's
        assert len(parts) == 5 and all(0 <= x <= 1 for x in parts)
        assert sum(parts) / 5 == pytest.approx(record["train_top1_error"])


def naive_local(x, weight, bias, k: int, padding: int, stride: int):
    """cuda-convnet's unshared local layer: output (f, y, x) is bias (f, y, x) plus the sum,
    over the input maps and the k x k window at (y * stride - padding, x * stride - padding),
    of that position's own kernel times the input (zero outside the image)."""
    n, c, h, w = x.shape
    weight, bias = weight.detach(), bias.detach()
    positions, _, filters = weight.shape
    side = int(positions**0.5)
    out = torch.zeros(n, filters, side, side, dtype=x.dtype)
    for b in range(n):
        for f in range(filters):
            for oy in range(side):
                for ox in range(side):
                    kernel = weight[oy * side + ox, :, f].reshape(c, k, k)
                    total = bias[f, oy, ox].item()
                    for ch in range(c):
                        for dy in range(k):
                            for dx in range(k):
                                iy, ix = oy * stride - padding + dy, ox * stride - padding + dx
                                if 0 <= iy < h and 0 <= ix < w:
                                    total += float(kernel[ch, dy, dx] * x[b, ch, iy, ix])
                    out[b, f, oy, ox] = total
    return out


@pytest.mark.parametrize("side,k,padding,stride", [(6, 3, 1, 1), (7, 3, 0, 2), (5, 2, 1, 2)])
def test_locally_connected_layer_equals_a_naive_loop(side, k, padding, stride):
    torch.manual_seed(4)
    layer = LocallyConnected2d(3, 4, k, side, padding=padding, stride=stride).double()
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(2, 3, side, side, dtype=torch.float64)
    expected = naive_local(x, layer.weight, layer.bias, k, padding, stride)
    torch.testing.assert_close(layer(x), expected, rtol=1e-12, atol=1e-12)
    # each position's kernel is its own: changing one changes only that position's outputs
    before = layer(x).detach()
    with torch.no_grad():
        layer.weight[0].add_(1.0)
    changed = (layer(x) != before).flatten(2).any(0).any(0)
    assert changed.tolist() == [True] + [False] * (changed.numel() - 1)
    # the gradients for input, kernels and biases against finite differences
    small = LocallyConnected2d(2, 2, k, side, padding=padding, stride=stride).double()

    def call(x, weight, bias):
        return torch.func.functional_call(small, {"weight": weight, "bias": bias}, (x,))

    inputs = (torch.randn(1, 2, side, side, dtype=torch.float64), small.weight, small.bias)
    assert torch.autograd.gradcheck(call, tuple(t.detach().requires_grad_() for t in inputs))


def test_locally_connected_layer_refuses_other_shapes():
    with pytest.raises(ValueError, match="does not fit"):
        LocallyConnected2d(3, 4, 5, 3)
    with pytest.raises(ValueError, match=r"\(N, 3, 6, 6\) inputs, got \(1, 3, 7, 7\)"):
        LocallyConnected2d(3, 4, 3, 6, padding=1)(torch.randn(1, 3, 7, 7))


def test_the_layers_of_layers_conv_local_11pct_and_13pct():
    model = create_model("cifar_local", num_classes=10)
    # the file's order: conv1 with its ReLU, rnorm1, pool1, conv2 with its ReLU, rnorm2,
    # pool2, local3 and local4 with their ReLUs, fc10; pooling rounds up (24 -> 12 -> 6)
    assert list(layer_shapes(model, 24).items()) == [
        ("conv1", (64, 24, 24)), ("act1", (64, 24, 24)), ("rnorm1", (64, 24, 24)),
        ("pool1", (64, 12, 12)), ("conv2", (64, 12, 12)), ("act2", (64, 12, 12)),
        ("rnorm2", (64, 12, 12)), ("pool2", (64, 6, 6)), ("local3", (32, 6, 6)),
        ("act3", (32, 6, 6)), ("local4", (32, 6, 6)), ("act4", (32, 6, 6)), ("fc10", (10,)),
    ]  # fmt: skip
    # by hand: conv layers with shared biases; local layers with a 3x3 kernel per filter and
    # a bias per output unit at each of the 36 positions (cuda-convnet's modules x filters)
    by_hand = (
        (3 * 25 + 1) * 64
        + (64 * 25 + 1) * 64
        + 36 * (64 * 9) * 32 + 32 * 36
        + 36 * (32 * 9) * 32 + 32 * 36
        + (32 * 36 + 1) * 10
    )  # fmt: skip
    assert sum(p.numel() for p in model.parameters()) == by_hand == 1_116_490
    # cmrnorm over 5 maps with the file's scale 0.001 and pow 0.75
    u = 30 * torch.randn(2, 64, 3, 3)
    torch.testing.assert_close(model.rnorm1(u), naive_cmrnorm(u, 5, 1e-3, 0.75))
    # 13pct is the same net without the two normalization layers
    plain = create_model("cifar_local", lrn=False)
    assert isinstance(plain.rnorm1, nn.Identity) and isinstance(plain.rnorm2, nn.Identity)
    assert sum(p.numel() for p in plain.parameters()) == sum(
        p.numel() for p in create_model("cifar_local").parameters()
    )


def test_conv_local_released_initialization_and_inputs():
    torch.manual_seed(5)
    model = create_model("cifar_local", num_classes=10)
    expected = {"conv1": 1e-4, "conv2": 0.01, "local3": 0.04, "local4": 0.04, "fc10": 0.01}
    for name, std in expected.items():
        layer = getattr(model, name)
        assert layer.weight.std().item() == pytest.approx(std, rel=0.05)
        assert not layer.bias.any()
    he = create_model("cifar_local", init="kaiming")
    assert he.local3.weight.std().item() == pytest.approx((2 / (64 * 9)) ** 0.5, rel=0.05)
    # 24 to 27 pixels give local3's 6x6 maps; whole 32x32 images need input_size=32
    assert model(torch.randn(1, 3, 26, 26)).shape == (1, 10)
    with pytest.raises(ValueError, match="24 to 27 pixels a side"):
        model(torch.randn(1, 3, 32, 32))
    assert create_model("cifar_local", input_size=32)(torch.randn(1, 3, 32, 32)).shape[1] == 1000
    with pytest.raises(ValueError, match="4 positive integers"):
        CifarLocalConfig(widths=(64, 64, 32))
    with pytest.raises(ValueError, match="leaves nothing"):
        create_model("cifar_local", input_size=3, pool_size=3)


def test_cifar_local_trains_with_its_recipe_and_per_layer_weight_decay(store32, tmp_path):
    from alexnet.train.config import load_config
    from alexnet.train.optim import make_optimizer
    from alexnet.train.rundir import read_metrics
    from alexnet.train.trainer import train

    overrides = [f"data.store={store32}", "run.epochs=1", "optim.batch_size=10",
                 "run.device=cpu"]  # fmt: skip
    config = load_config("configs/cifar-local.yaml", overrides)
    optimizer = make_optimizer(create_model("cifar_local"), config.optim)
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert groups["conv1"]["weight_decay"] == groups["conv2"]["weight_decay"] == 0.0
    assert groups["weights"]["weight_decay"] == 0.004 and len(groups["weights"]["params"]) == 3
    assert groups["biases"]["weight_decay"] == 0.0 and groups["biases"]["lr_mult"] == 2
    train(config, tmp_path / "run")
    (record,) = read_metrics(tmp_path / "run")
    assert 0 <= record["val_top1_error"] <= 1
