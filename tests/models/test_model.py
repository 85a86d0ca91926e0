"""The networks against the paper's layer table (section 3.5, Figure 2, counted by hand) and a
reference written with torch primitives."""

import math
import re

import pytest
import torch
import torch.nn.functional as F

from alexnet import AlexNetConfig, create_model, list_models
from alexnet.models.alexnet import LAYER_NAMES
from alexnet.models.registry import VARIANTS

# Section 3.5 and Figure 2, parameters per layer, counted by hand.
PAPER_PARAMS = {
    "conv1": 34_944,
    "conv2": 307_456,
    "conv3": 885_120,
    "conv4": 663_936,
    "conv5": 442_624,
    "fc6": 37_752_832,
    "fc7": 16_781_312,
    "fc8": 4_097_000,
}

# Figure 2, maps per layer: (C, H, W) after each named module.
PAPER_SHAPES = {
    "conv1": (96, 55, 55),
    "norm1": (96, 55, 55),
    "pool1": (96, 27, 27),
    "conv2": (256, 27, 27),
    "norm2": (256, 27, 27),
    "pool2": (256, 13, 13),
    "conv3": (384, 13, 13),
    "conv4": (384, 13, 13),
    "conv5": (256, 13, 13),
    "pool5": (256, 6, 6),
    "fc6": (4096,),
    "fc7": (4096,),
    "fc8": (1000,),
}


def record(model, x, names):
    """Outputs of the named modules for input x (cloned: in-place ReLUs follow them)."""
    seen = {}
    handles = [
        getattr(model, n).register_forward_hook(
            lambda m, i, o, n=n: seen.__setitem__(n, o.detach().clone())
        )
        for n in names
    ]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return seen


def layer_params(model, name):
    return sum(p.numel() for p in getattr(model, name).parameters())


# --- A reference written from Figure 2 with torch's functional primitives. ---
# Towers are explicit halves here (chunk and cat), where the model uses groups=2.


def two_towers(x, weight, bias, **kwargs):
    xs, ws, bs = x.chunk(2, 1), weight.chunk(2, 0), bias.chunk(2, 0)
    return torch.cat([F.conv2d(a, w, b, **kwargs) for a, w, b in zip(xs, ws, bs, strict=True)], 1)


def paper_lrn(x):
    # torch divides alpha by n, so the paper's alpha = 1e-4 is torch's 5e-4; one per tower.
    return torch.cat([F.local_response_norm(t, 5, 5e-4, 0.75, 2.0) for t in x.chunk(2, 1)], 1)


def caffe_lrn(x):
    return F.local_response_norm(x, 5, 1e-4, 0.75, 1.0)  # Caffe's LRN is torch's, over all maps


def reference_head(p, x):
    x = torch.flatten(x, 1)
    x = F.relu(F.linear(x, p["fc6.weight"], p["fc6.bias"]))
    x = F.relu(F.linear(x, p["fc7.weight"], p["fc7.bias"]))
    return F.linear(x, p["fc8.weight"], p["fc8.bias"])


def reference_alexnet2012(model, x):
    p = dict(model.named_parameters())
    if x.shape[-1] == 224:  # the released code's windows run 3 pixels past, over zeros
        x = F.pad(x, (0, 3, 0, 3))
    x = F.relu(F.conv2d(x, p["conv1.weight"], p["conv1.bias"], stride=4))
    x = F.max_pool2d(paper_lrn(x), 3, 2)
    x = F.relu(two_towers(x, p["conv2.weight"], p["conv2.bias"], padding=2))
    x = F.max_pool2d(paper_lrn(x), 3, 2)
    x = F.relu(F.conv2d(x, p["conv3.weight"], p["conv3.bias"], padding=1))
    x = F.relu(two_towers(x, p["conv4.weight"], p["conv4.bias"], padding=1))
    x = F.relu(two_towers(x, p["conv5.weight"], p["conv5.bias"], padding=1))
    return reference_head(p, F.max_pool2d(x, 3, 2))


def reference_caffenet(model, x):
    """bvlc_reference_caffenet's prototxt order: conv, relu, pool, norm."""
    p = dict(model.named_parameters())
    x = F.relu(F.conv2d(x, p["conv1.weight"], p["conv1.bias"], stride=4))
    x = caffe_lrn(F.max_pool2d(x, 3, 2, ceil_mode=True))
    x = F.relu(two_towers(x, p["conv2.weight"], p["conv2.bias"], padding=2))
    x = caffe_lrn(F.max_pool2d(x, 3, 2, ceil_mode=True))
    x = F.relu(F.conv2d(x, p["conv3.weight"], p["conv3.bias"], padding=1))
    x = F.relu(two_towers(x, p["conv4.weight"], p["conv4.bias"], padding=1))
    x = F.relu(two_towers(x, p["conv5.weight"], p["conv5.bias"], padding=1))
    return reference_head(p, F.max_pool2d(x, 3, 2, ceil_mode=True))


def scaled_inputs(model, size, batch=2):
    """Inputs and weights at the scale of mean-subtracted pixels and a trained net, so LRN
    and every ReLU are active (with N(0, 0.01^2) weights the activations would be tiny)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for name in ("conv1", "conv2", "conv3", "conv4", "conv5"):
            layer = getattr(model, name)
            fan_in = layer.weight[0].numel()
            layer.weight.normal_(0, math.sqrt(2 / fan_in) * 3)
    return torch.randn(batch, 3, size, size) * 60


@pytest.mark.parametrize("size", [224, 227])
def test_alexnet2012_equals_reference_built_from_the_paper(size):
    model = create_model("alexnet2012").eval()
    x = scaled_inputs(model, size).double()
    model.double()  # float64 on both sides, so only a real difference can exceed 1e-9
    lrn_input = record(model, x, ["act1"])["act1"]
    assert 1e-4 * 5 * lrn_input.square().mean() > 2  # the paper's alpha * sum: LRN matters
    with torch.no_grad():
        assert torch.allclose(model(x), reference_alexnet2012(model, x), rtol=1e-9, atol=1e-9)


def test_caffenet_equals_reference_in_caffe_layer_order():
    model = create_model("caffenet").eval().double()
    x = scaled_inputs(model, 227).double()
    with torch.no_grad():
        assert torch.allclose(model(x), reference_caffenet(model, x), rtol=1e-9, atol=1e-9)


def test_parameters_per_layer_equal_the_papers_table():
    model = create_model("alexnet2012")
    assert {n: layer_params(model, n) for n in LAYER_NAMES} == PAPER_PARAMS
    assert sum(p.numel() for p in model.parameters()) == 60_965_224


@pytest.mark.parametrize("size", [224, 227])
def test_shapes_per_layer_equal_the_papers_table(size):
    model = create_model("alexnet2012").eval()
    seen = record(model, torch.randn(1, 3, size, size), PAPER_SHAPES)
    assert {n: tuple(t.shape[1:]) for n, t in seen.items()} == PAPER_SHAPES


def test_towers_stay_independent_until_conv3():
    model = create_model("alexnet2012").eval()
    x = scaled_inputs(model, 224)
    names = ["conv1", "pool1", "conv2", "pool2", "conv3"]
    before = record(model, x, names)
    with torch.no_grad():  # change tower B's conv1 kernels only
        model.conv1.weight[48:] += 0.05 * torch.randn_like(model.conv1.weight[48:])
    after = record(model, x, names)
    for name, half in (("conv1", 48), ("pool1", 48), ("conv2", 128), ("pool2", 128)):
        assert torch.equal(before[name][:, :half], after[name][:, :half]), f"tower A, {name}"
        assert not torch.allclose(before[name][:, half:], after[name][:, half:]), name
    # conv3 sees both towers: tower A's conv3 maps change too
    assert not torch.allclose(before["conv3"][:, :192], after["conv3"][:, :192])


def test_one_lrn_across_towers_would_break_their_independence():
    # The same experiment with Caffe's LRN over all maps: the towers' facing maps mix.
    model = create_model("alexnet2012", lrn_across_towers=True).eval()
    x = scaled_inputs(model, 224)
    before = record(model, x, ["pool1"])["pool1"]
    with torch.no_grad():
        model.conv1.weight[48:] += 0.05 * torch.randn_like(model.conv1.weight[48:])
    after = record(model, x, ["pool1"])["pool1"]
    assert torch.equal(before[:, :46], after[:, :46])
    assert not torch.allclose(before[:, 46:48], after[:, 46:48])


# Section 5: N(0, 0.01^2) weights; biases 1 in conv2, conv4, conv5, fc6, fc7, else 0.
PAPER_BIASES = {"conv1": 0, "conv2": 1, "conv3": 0, "conv4": 1, "conv5": 1, "fc6": 1, "fc7": 1}
PAPER_BIASES["fc8"] = 0


def test_paper_initialization():
    torch.manual_seed(0)
    model = create_model("alexnet2012")
    for name in LAYER_NAMES:
        layer = getattr(model, name)
        w, n = layer.weight.double(), layer.weight.numel()
        assert abs(w.mean().item()) < 5 * 0.01 / math.sqrt(n), name  # five standard errors
        assert abs(w.std().item() - 0.01) < 5 * 0.01 / math.sqrt(2 * n), name
        assert torch.all(layer.bias == PAPER_BIASES[name]), name


def test_caffe_and_kaiming_initializations():
    torch.manual_seed(0)
    caffe = create_model("caffenet")
    assert abs(caffe.fc6.weight.std().item() - 0.005) < 1e-4
    assert abs(caffe.conv3.weight.std().item() - 0.01) < 1e-4
    assert {n: getattr(caffe, n).bias[0].item() for n in LAYER_NAMES} == pytest.approx(
        {n: 0.1 * b for n, b in PAPER_BIASES.items()}
    )
    he = create_model("alexnet2012", init="kaiming")
    fan_in = 48 * 5 * 5  # conv2 sees its own tower's 48 maps
    assert abs(he.conv2.weight.std().item() - math.sqrt(2 / fan_in)) < 1e-3
    assert all(torch.all(getattr(he, n).bias == 0) for n in LAYER_NAMES)


@pytest.mark.parametrize("name", list_models())
def test_every_registered_variant_runs_forward_and_backward(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=10).train()
    size = VARIANTS[name].input_size
    x = torch.randn(2, 3, size, size) * 50
    logits = model(x)
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    F.cross_entropy(logits, torch.tensor([1, 7])).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    classifier = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    assert classifier.weight.grad.abs().sum() > 0  # fc8, or cifar4's fc10


ABLATIONS = [
    dict(activation="tanh"),
    dict(lrn=False),
    dict(lrn_convention="divided_by_n"),
    dict(pool_size=2, pool_stride=2),
    dict(dropout=0.0),
    dict(towers=1),
    dict(remove_layer="conv3"),
    dict(remove_layer="conv4"),
    dict(init="kaiming"),
]


@pytest.mark.parametrize(
    "options", ABLATIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items())
)
def test_every_ablation_option_runs_forward_and_backward(options):
    torch.manual_seed(0)
    model = create_model("alexnet2012", num_classes=10, **options).train()
    features = model.forward_features(torch.randn(2, 3, 224, 224) * 50)
    assert features.shape == (2, 256, 6, 6)
    F.cross_entropy(model.forward_head(features), torch.tensor([1, 7])).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def conv_params(k, cin, cout, groups=1):
    return k * k * (cin // groups) * cout + cout


def test_ablation_parameter_counts_by_hand():
    one_tower = create_model("alexnet2012", towers=1)
    assert layer_params(one_tower, "conv2") == conv_params(5, 96, 256)
    assert layer_params(one_tower, "conv4") == conv_params(3, 384, 384)
    assert layer_params(one_tower, "conv5") == conv_params(3, 384, 256)
    no_conv3 = create_model("alexnet2012", remove_layer="conv3")
    assert no_conv3.conv3 is None and "conv3.weight" not in no_conv3.state_dict()
    assert layer_params(no_conv3, "conv4") == conv_params(3, 256, 384, groups=2)
    no_conv4 = create_model("alexnet2012", remove_layer="conv4")
    assert layer_params(no_conv4, "conv5") == PAPER_PARAMS["conv5"]  # conv3's 384 maps, own tower
    gpu1 = create_model("alexnet2012_1gpu")
    widths = (3, 48, 128, 192, 192, 256)
    kernels = (11, 5, 3, 3, 3)
    for i, name in enumerate(("conv1", "conv2", "conv3", "conv4", "conv5")):
        assert layer_params(gpu1, name) == conv_params(kernels[i], widths[i], widths[i + 1])
    assert layer_params(gpu1, "fc6") == PAPER_PARAMS["fc6"]


def test_non_overlapping_pooling_gives_the_same_map_sizes():
    # Paper section 3.4: z = s = 2 "produces output of equivalent dimensions".
    model = create_model("alexnet2012", pool_size=2, pool_stride=2).eval()
    seen = record(model, torch.randn(1, 3, 224, 224), ["pool1", "pool2", "pool5"])
    assert [t.shape[-1] for t in seen.values()] == [27, 13, 6]


def test_tanh_activation_gives_negative_features_relu_does_not():
    x = torch.randn(2, 3, 224, 224) * 50
    with torch.no_grad():  # zero biases: the paper's biases of 1 would push tanh positive
        tanh = create_model("alexnet2012", activation="tanh", init="kaiming").eval()
        relu = create_model("alexnet2012", init="kaiming").eval()
        tanh, relu = tanh.forward_features(x), relu.forward_features(x)
    assert tanh.min() < 0 <= relu.min()
    assert tanh.abs().max() <= 1


def head_order(model):
    """The order in which the head's layers run (every child module, hooked)."""
    order = []
    for name, module in model.named_children():
        module.register_forward_hook(lambda m, i, o, n=name: order.append(n))
    model.forward_head(torch.randn(2, model.config.widths[4], 6, 6))
    return order


def test_dropout_placement_paper_vs_torchvision():
    # Paper: dropout on the outputs of fc6 and fc7 (after their ReLUs); torchvision: on the
    # inputs of fc6 and fc7.
    paper, owt = head_order(create_model("alexnet2012")), head_order(create_model("alexnet_owt"))
    assert paper == ["fc6", "act6", "drop6", "fc7", "act7", "drop7", "fc8"]
    assert owt == ["drop5", "fc6", "act6", "drop6", "fc7", "act7", "fc8"]


def test_dropout_zeroes_half_of_the_relu_outputs_of_fc6_and_fc7_in_training_only():
    torch.manual_seed(0)
    model = create_model("alexnet2012", num_classes=10)
    seen = {}
    for name in ("act6", "act7"):
        getattr(model, name).register_forward_hook(
            lambda m, i, o, n=name: seen.__setitem__(n, o.clone())
        )
    model.fc7.register_forward_pre_hook(lambda m, i: seen.__setitem__("fc7 in", i[0].clone()))
    features = torch.randn(64, 256, 6, 6)
    to_fc8 = model.train().forward_head(features, pre_logits=True)
    # what reaches fc7 and fc8 is each ReLU output either dropped or doubled (inverted
    # dropout: x2 in training, so x1 at test time), about half of each dropped
    for relu, after in ((seen["act6"], seen["fc7 in"]), (seen["act7"], to_fc8)):
        alive = relu > 0
        dropped = after[alive] == 0
        assert 0.48 < dropped.float().mean().item() < 0.52  # 100k+ neurons: 0.5 +- 0.002
        assert torch.equal(after[alive][~dropped], 2 * relu[alive][~dropped])
        assert torch.equal(after[~alive], relu[~alive])  # zeros stay zeros
    # at test time dropout is the identity: fc7 gets act6's output, fc8 act7's
    with torch.no_grad():
        to_fc8 = model.eval().forward_head(features, pre_logits=True)
    assert torch.equal(seen["fc7 in"], seen["act6"]) and torch.equal(to_fc8, seen["act7"])


def test_forward_is_features_then_head_and_pre_logits_is_fc7():
    torch.manual_seed(0)
    model = create_model("alexnet2012", num_classes=10).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        features = model.forward_features(x)
        fc7 = model.forward_head(features, pre_logits=True)
        assert features.shape == (2, 256, 6, 6) and fc7.shape == (2, 4096)
        assert torch.equal(model(x), model.fc8(fc7))
        assert torch.equal(fc7, record(model, x, ["act7"])["act7"])


def test_grayscale_input_and_other_class_counts():
    model = create_model("alexnet2012", num_classes=10, in_chans=1).eval()
    assert model(torch.randn(3, 1, 227, 227)).shape == (3, 10)


# --- A user's mistakes: one ValueError that says what was expected. ---


def test_unknown_model_name_lists_the_available_ones():
    with pytest.raises(ValueError, match="available: alexnet2012, alexnet2012_1gpu"):
        create_model("alexnet")


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(tower=1), "unknown option 'tower'.*towers"),
        (dict(activation="gelu"), "activation must be one of relu, tanh"),
        (dict(remove_layer="conv1"), "remove_layer must be one of None, conv3, conv4"),
        (dict(widths=(96, 256, 384, 384)), "five positive integers"),
        (dict(towers=3), "divisible by 3"),
        (dict(dropout=1.0), r"\[0, 1\)"),
        (dict(lrn_size=4), "odd"),
        (dict(lrn_alpha="1e-4"), r"lrn_alpha must be float, got '1e-4' \(str\)"),
        (dict(lrn=1), r"lrn must be bool, got 1 \(int\)"),
        (dict(towers=True), "towers must be int, got True"),
        (dict(num_classes=10.0), "num_classes must be int"),
        (dict(remove_layer=3), "remove_layer must be str or None"),
    ],
)
def test_bad_options_name_what_was_expected(options, message):
    with pytest.raises(ValueError, match=message):
        create_model("alexnet2012", **options)


@pytest.mark.parametrize(
    "shape, message",
    [
        ((3, 224, 224), r"shaped \(N, 3, H, W\).*rank 3.*unsqueeze"),
        ((2, 1, 224, 224), "expects 3 input channels"),
        ((2, 3, 256, 256), "224 to 255 pixels.*224 as in the paper, 227 as in Caffe.*7x7"),
        ((2, 3, 32, 32), "224 to 255 pixels"),
        ((2, 3, 224, 200), "got 224x200"),
        ((2, 3, 224, 224, "uint8"), "floating-point images.*torch.uint8.*x.float()"),
    ],
)
def test_wrong_input_raises_value_error_naming_what_was_expected(shape, message):
    model = create_model("alexnet2012").eval()
    dtype = getattr(torch, shape[-1]) if isinstance(shape[-1], str) else torch.float32
    with pytest.raises(ValueError, match=message):
        model(torch.zeros([d for d in shape if isinstance(d, int)], dtype=dtype))


@pytest.mark.parametrize(
    "name, options",
    [("alexnet2012", {}), ("caffenet", {}), ("alexnet2012", dict(pool_size=2, pool_stride=2))],
)
def test_accepted_input_range_equals_a_brute_force_scan(name, options):
    with torch.device("meta"):
        model = create_model(name, **options)
    fits = [s for s in range(1, 1024) if model.feature_map_size(s) == 6]
    assert model.input_sizes() == (fits[0], fits[-1])
    assert fits == list(range(fits[0], fits[-1] + 1))


def test_settings_that_no_input_size_fits_fail_at_construction():
    with pytest.raises(ValueError, match="no input of up to 4095 pixels gives the 6x6 maps"):
        create_model("alexnet2012", pool_size=8, pool_stride=8)


def test_torchvision_net_takes_any_size_large_enough():
    model = create_model("alexnet_owt", num_classes=5).eval()
    assert model(torch.randn(1, 3, 300, 260)).shape == (1, 5)
    with pytest.raises(ValueError, match="at least 63 pixels"):
        model(torch.randn(1, 3, 62, 62))


def test_state_dict_of_wrong_shape_names_the_first_mismatching_key():
    theirs = create_model("alexnet2012", num_classes=10).state_dict()
    model = create_model("alexnet2012")
    with pytest.raises(ValueError, match=r"'fc8.weight' has shape \(10, 4096\).*\(1000, 4096\)"):
        model.load_state_dict(theirs)
    gray = create_model("alexnet2012", in_chans=1).state_dict()
    with pytest.raises(ValueError, match=r"'conv1.weight' has shape \(96, 1, 11, 11\)"):
        model.load_state_dict(gray)
    del theirs["fc8.weight"], theirs["fc8.bias"]
    theirs["fc9.weight"] = torch.zeros(1)
    with pytest.raises(
        ValueError, match=re.escape("missing keys: fc8.weight, fc8.bias; unexpected keys: fc9")
    ):
        model.load_state_dict(theirs)


def test_state_dict_round_trip():
    torch.manual_seed(0)
    source = create_model("alexnet2012", num_classes=10).eval()
    target = create_model("alexnet2012", num_classes=10).eval()
    target.load_state_dict(source.state_dict())
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(source(x), target(x))


def test_config_accepts_lists_as_from_yaml():
    config = AlexNetConfig(widths=[48, 128, 192, 192, 256], towers=1)
    assert config.widths == (48, 128, 192, 192, 256)


def test_the_six_conv_network_adds_conv6_over_pool5_across_both_towers():
    torch.manual_seed(0)
    model = create_model("alexnet2012_6conv", num_classes=10).eval()
    # by hand (the released layers-146): 256 kernels of 3x3 over both towers' 256 maps, plus
    # biases, started at 1
    assert model.conv6.weight.numel() + model.conv6.bias.numel() == 256 * 256 * 9 + 256
    assert torch.all(model.conv6.bias == 1) and model.fc6.in_features == 9216
    x = torch.randn(2, 3, 224, 224) * 50
    five = create_model("alexnet2012", num_classes=10).eval()
    five.load_state_dict({k: v for k, v in model.state_dict().items() if "conv6" not in k})
    with torch.no_grad():
        pool5 = five.forward_features(x)  # the five-conv network's output is conv6's input
        expected = torch.relu(torch.nn.functional.conv2d(
            pool5, model.conv6.weight, model.conv6.bias, padding=1))  # fmt: skip
        torch.testing.assert_close(model.forward_features(x), expected)
    # its layer names reach features and Grad-CAM as the rectified output
    from alexnet.evaluate.explain import feature_layer
    from alexnet.models.alexnet import layer_output

    assert feature_layer(model, "conv6") is model.act_conv6
    assert layer_output(model, "conv6") is model.act_conv6
    assert feature_layer(model, "fc6") is model.act6


def test_the_released_network_is_layers_145_written_out():
    # cuda-convnet's layers-145.cfg, layer by layer, in float64: conv1 -> cmrnorm (alpha
    # 1e-4 divided by 5, k=2, within each tower) -> max-pool -> ReLU; conv2 -> ReLU ->
    # cmrnorm -> rnorm (5x5 in each map, scale 0.001 / 25, pow 0.75) -> max-pool; conv3-5
    # with ReLU; max-pool; fc6 and fc7 with ReLU; fc8
    from references import naive_lrn, naive_rnorm

    torch.manual_seed(0)
    small = dict(widths=(8, 16, 16, 16, 16), fc_width=32, num_classes=10)
    model = create_model("alexnet2012_released", **small).double().eval()
    m = model
    x = torch.randn(1, 3, 224, 224, dtype=torch.float64) * 60
    with torch.no_grad():
        a = F.pad(x, (0, 3, 0, 3))  # the released edges: 224 -> 55
        a = F.conv2d(a, m.conv1.weight, m.conv1.bias, stride=4)
        a = F.relu(F.max_pool2d(naive_lrn(a, 5, 1e-4 / 5, 0.75, 2.0, groups=2), 3, 2))
        a = F.relu(F.conv2d(a, m.conv2.weight, m.conv2.bias, padding=2, groups=2))
        a = naive_rnorm(naive_lrn(a, 5, 1e-4 / 5, 0.75, 2.0, groups=2), 5, 0.001, 0.75)
        a = F.max_pool2d(a, 3, 2)
        a = F.relu(F.conv2d(a, m.conv3.weight, m.conv3.bias, padding=1))
        a = F.relu(F.conv2d(a, m.conv4.weight, m.conv4.bias, padding=1, groups=2))
        a = F.max_pool2d(F.relu(F.conv2d(a, m.conv5.weight, m.conv5.bias, padding=1, groups=2)),
                         3, 2)  # fmt: skip
        a = F.relu(F.linear(a.flatten(1), m.fc6.weight, m.fc6.bias))
        a = F.relu(F.linear(a, m.fc7.weight, m.fc7.bias))
        expected = F.linear(a, m.fc8.weight, m.fc8.bias)
        torch.testing.assert_close(model(x), expected, rtol=1e-9, atol=1e-9)
    # layers-145's initW: 0.01, but 0.03 in conv3-conv5; initB 1 in conv2, conv4, conv5, fc6, fc7
    big = create_model("alexnet2012_released")
    for name, std in (("conv1", 0.01), ("conv3", 0.03), ("conv5", 0.03), ("fc6", 0.01)):
        assert abs(getattr(big, name).weight.std().item() - std) < 0.03 * std, name
    assert [getattr(big, n).bias[0].item() for n in ("conv1", "conv2", "conv3", "conv4")] == [
        0.0, 1.0, 0.0, 1.0,
    ]  # fmt: skip
