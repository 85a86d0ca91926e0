"""LRN and the released code's conv1 edges, against naive loops and torch's own layers."""

import importlib.util

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from alexnet.nn.conv import CeilConv2d, TowerConv2d, conv_output_size, pool_output_size
from alexnet.nn.lrn import LocalResponseNorm

from fixtures import ROOT
from references import activations, naive_lrn


def test_lrn_equals_naive_loop_of_paper_formula():
    a = activations(2, 7, 3, 4)
    assert torch.allclose(LocalResponseNorm()(a), naive_lrn(a), rtol=1e-12, atol=0)


def test_lrn_normalizes_each_tower_separately():
    a = activations(2, 12, 2, 3, seed=1)
    ours = LocalResponseNorm(groups=2)(a)
    assert torch.allclose(ours, naive_lrn(a, groups=2), rtol=1e-12, atol=0)
    # and differs from one LRN over all maps exactly at the towers' facing edges
    joint = LocalResponseNorm()(a)
    differs = (ours != joint).flatten(2).any(-1).any(0)
    assert differs.nonzero().flatten().tolist() == [4, 5, 6, 7]


def test_lrn_channel_edges_match_hand_computed_table():
    # All ones over 5 maps: the window holds 3, 4, 5, 4, 3 maps.
    a = torch.ones(1, 5, 1, 1, dtype=torch.float64)
    expected = [1 / (2 + 1e-4 * m) ** 0.75 for m in (3, 4, 5, 4, 3)]
    assert LocalResponseNorm()(a).flatten().tolist() == pytest.approx(expected, rel=1e-15)


def test_lrn_divided_by_n_equals_torch_local_response_norm():
    a = activations(2, 9, 5, 5, seed=2)
    for size, k in ((5, 2.0), (3, 1.0)):
        ours = LocalResponseNorm(size, 1e-4, 0.75, k, convention="divided_by_n")(a)
        theirs = nn.LocalResponseNorm(size, 1e-4, 0.75, k)(a)
        assert torch.allclose(ours, theirs, rtol=1e-12, atol=0)


def test_paper_alpha_is_n_times_the_divided_by_n_alpha():
    a = activations(1, 8, 3, 3, seed=3)
    paper = LocalResponseNorm(alpha=1e-4)(a)
    caffe = LocalResponseNorm(alpha=5e-4, convention="divided_by_n")(a)
    assert torch.allclose(paper, caffe, rtol=1e-12, atol=0)
    assert not torch.allclose(paper, LocalResponseNorm(convention="divided_by_n")(a))


def test_lrn_gradient_equals_naive_loop_gradient():
    a = activations(1, 6, 2, 2, seed=4).requires_grad_()
    b = a.detach().clone().requires_grad_()
    weights = torch.randn(1, 6, 2, 2, dtype=torch.float64)
    (LocalResponseNorm(groups=2)(a) * weights).sum().backward()
    (naive_lrn(b, groups=2) * weights).sum().backward()
    assert torch.allclose(a.grad, b.grad, rtol=1e-10, atol=1e-14)


def test_lrn_bf16_input_is_normalized_in_float32():
    a = activations(2, 16, 4, 4, seed=6).float()
    out = LocalResponseNorm(groups=2)(a.bfloat16())
    assert out.dtype == torch.bfloat16
    reference = LocalResponseNorm(groups=2)(a.bfloat16().float())
    # one bf16 rounding of the result, nothing more
    assert torch.allclose(out.float(), reference, rtol=2**-8, atol=0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(size=4), "odd"),
        (dict(convention="caffe"), "paper, divided_by_n"),
        (dict(groups=0), "groups"),
    ],
)
def test_lrn_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LocalResponseNorm(**kwargs)


def test_lrn_rejects_channels_that_do_not_split_into_towers():
    with pytest.raises(ValueError, match="divisible by 2, got 7"):
        LocalResponseNorm(groups=2)(torch.ones(1, 7, 2, 2))


def naive_conv_output(image, weight, y, x, stride):
    """One output of a convolution whose windows may run past the image, over zeros."""
    out_channels, _, kh, kw = weight.shape
    total = torch.zeros(out_channels, dtype=image.dtype)
    for dy in range(kh):
        for dx in range(kw):
            iy, ix = y * stride + dy, x * stride + dx
            if iy < image.shape[-2] and ix < image.shape[-1]:
                total += weight[:, :, dy, dx] @ image[0, :, iy, ix]
    return total


def test_conv1_at_224_gives_55_with_windows_past_the_bottom_right_edge():
    torch.manual_seed(0)
    conv = CeilConv2d(3, 4, 11, stride=4, bias=False).double()
    image = torch.randn(1, 3, 224, 224, dtype=torch.float64)
    out = conv(image)
    assert out.shape == (1, 4, 55, 55)
    for y, x in ((0, 0), (54, 54), (54, 0), (0, 54), (20, 31)):
        expected = naive_conv_output(image, conv.weight, y, x, stride=4)
        assert torch.allclose(out[0, :, y, x], expected, rtol=1e-12, atol=1e-12)


def test_conv1_at_227_is_an_ordinary_convolution():
    torch.manual_seed(0)
    conv = CeilConv2d(3, 4, 11, stride=4)
    image = torch.randn(2, 3, 227, 227)
    assert torch.equal(conv(image), F.conv2d(image, conv.weight, conv.bias, stride=4))


def test_output_size_arithmetic_matches_torch_layers():
    for size in range(11, 80):
        conv = nn.Conv2d(1, 1, 11, stride=4, padding=2)
        got = conv(torch.zeros(1, 1, size, size)).shape[-1]
        assert conv_output_size(size, 11, 4, 2, ceil=False) == got
        ceil = CeilConv2d(1, 1, 11, stride=4)
        assert ceil.output_size(size) == ceil(torch.zeros(1, 1, size, size)).shape[-1]
    for size in range(3, 60):
        for kernel, stride, ceil_mode in ((3, 2, False), (3, 2, True), (2, 2, False)):
            pool = nn.MaxPool2d(kernel, stride, ceil_mode=ceil_mode)
            got = pool(torch.zeros(1, 1, size, size)).shape[-1]
            assert pool_output_size(size, kernel, stride, 0, ceil_mode) == got


def test_cuda_convnet_output_count_formula():
    # the released cuda-convnet: 1 + ceil((2 * pad + size - filter) / stride)
    assert conv_output_size(224, 11, 4, 0, ceil=True) == 55
    assert conv_output_size(224, 11, 4, 0, ceil=False) == 54
    assert conv_output_size(227, 11, 4, 0, ceil=False) == 55


@pytest.mark.parametrize(
    "size, kernel, stride, bias",
    [
        ((224, 224), 11, 4, True),  # conv1: ceil edges pad 3, the blocked kernel one more
        ((227, 227), 11, 4, True),  # Caffe's crop, an ordinary convolution
        ((30, 23), 5, 2, False),  # kernel not a multiple of the stride, no bias
        ((17, 21), 4, 4, True),  # kernel = stride: one block
        ((19, 19), 3, 5, True),  # stride past the kernel: pixels no window reads
    ],
)
def test_conv1_weight_gradient_through_space_to_depth_equals_direct(size, kernel, stride, bias):
    gen = torch.Generator().manual_seed(sum(size) + kernel)
    x = torch.randn(2, 3, *size, generator=gen, dtype=torch.float64)
    conv = CeilConv2d(3, 6, kernel, stride=stride, bias=bias, weight_grad="space-to-depth")
    conv = conv.double()
    direct = nn.Conv2d(3, 6, kernel, stride=stride, bias=bias).double()
    direct.load_state_dict(conv.state_dict())
    ours = conv(x)
    assert ours.grad_fn.name() == "_ImageConvBackward"  # the space-to-depth path was taken
    h, w = conv.output_size(size[0]), conv.output_size(size[1])
    padded = F.pad(x, (0, max(0, (w - 1) * stride + kernel - size[1]), 0, 0))
    padded = F.pad(padded, (0, 0, 0, max(0, (h - 1) * stride + kernel - size[0])))
    theirs = direct(padded)
    assert torch.equal(ours, theirs)
    grad = torch.randn(ours.shape, generator=gen, dtype=torch.float64)
    ours.backward(grad)
    theirs.backward(grad)
    assert torch.allclose(conv.weight.grad, direct.weight.grad, rtol=1e-10, atol=1e-12)
    if bias:
        assert torch.allclose(conv.bias.grad, direct.bias.grad, rtol=1e-10, atol=1e-12)


def test_conv1_takes_the_direct_path_where_space_to_depth_does_not_pay():
    x = torch.randn(1, 3, 35, 35)
    # auto: space-to-depth only where torch runs AVX-512 kernels (slower on AVX2, measured)
    avx512 = torch.backends.cpu.get_cpu_capability().startswith("AVX512")
    for mode, taken in (("auto", avx512), ("direct", False), ("space-to-depth", True)):
        conv = CeilConv2d(3, 4, 11, stride=4, weight_grad=mode)
        assert (conv(x).grad_fn.name() == "_ImageConvBackward") == taken, mode
    with pytest.raises(ValueError, match="weight_grad must be one of"):
        CeilConv2d(3, 4, 11, stride=4, weight_grad="blocked")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert conv(x).grad_fn.name() != "_ImageConvBackward"
    assert conv(x.requires_grad_()).grad_fn.name() != "_ImageConvBackward"  # input gradient
    with torch.no_grad():
        assert conv(x).grad_fn is None


@pytest.mark.parametrize("bias", [True, False])
def test_tower_conv_split_per_tower_equals_grouped_forward_and_backward(bias):
    torch.manual_seed(0)
    grouped = TowerConv2d(8, 6, 3, padding=1, groups=2, bias=bias, mode="grouped").double()
    split = TowerConv2d(8, 6, 3, padding=1, groups=2, bias=bias, mode="split").double()
    split.load_state_dict(grouped.state_dict())
    x = torch.randn(2, 8, 5, 5, dtype=torch.float64)
    grad = torch.randn(2, 6, 5, 5, dtype=torch.float64)
    inputs = [x.clone().requires_grad_() for _ in range(2)]
    outs = [conv(t) for conv, t in zip((grouped, split), inputs, strict=True)]
    for out in outs:
        out.backward(grad)
    assert torch.allclose(outs[0], outs[1], rtol=1e-12, atol=1e-12)
    assert torch.allclose(inputs[0].grad, inputs[1].grad, rtol=1e-12, atol=1e-12)
    for a, b in zip(grouped.parameters(), split.parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, rtol=1e-12, atol=1e-12)
    # and the towers are the paper's: tower B's outputs do not see tower A's maps
    x_b = x.clone()
    x_b[:, :4] = 0
    assert torch.equal(split(x_b)[:, 3:], split(x)[:, 3:])
    # the weights are an ordinary grouped Conv2d's
    plain = nn.Conv2d(8, 6, 3, padding=1, groups=2, bias=bias).double()
    plain.load_state_dict(split.state_dict())
    assert torch.allclose(plain(x), outs[0], rtol=1e-12, atol=1e-12)


def test_tower_conv_auto_is_grouped_on_cpu_and_rejects_unknown_modes():
    conv = TowerConv2d(4, 4, 3, groups=2)
    assert conv.mode == "auto" and not conv._splits(torch.ones(1))
    with pytest.raises(ValueError, match="auto, grouped, split"):
        TowerConv2d(4, 4, 3, groups=2, mode="two")


def test_cli_spells_out_the_lrn_backends_and_tower_conv_modes():
    from alexnet.cli import common as cli
    from alexnet.kernels import lrn
    from alexnet.nn import conv as layers

    assert cli.LRN_BACKENDS == lrn.BACKENDS and cli.TOWER_CONV_MODES == layers.TOWER_CONV_MODES
    assert cli.IMAGE_GRAD_MODES == layers.IMAGE_GRAD_MODES


def _bench_conv1():
    """tools/bench_conv1.py, which measures ways of computing conv1 not yet in the network."""
    path = ROOT / "tools" / "bench_conv1.py"
    spec = importlib.util.spec_from_file_location("bench_conv1", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_way_of_computing_conv1_in_the_benchmark_equals_the_layer():
    errors = _bench_conv1().check(torch.device("cpu"))
    assert set(errors) == {"direct", "space-to-depth-grad", "space-to-depth", "pad4", "pad8"}
    assert max(errors.values()) < 1e-12, errors


@pytest.mark.parametrize(
    "size, kernel, stride", [((30, 23), 5, 2), ((17, 21), 4, 4), ((19, 19), 3, 5)]
)
def test_space_to_depth_convolution_equals_the_strided_one(size, kernel, stride):
    gen = torch.Generator().manual_seed(kernel)
    x = torch.randn(2, 3, *size, generator=gen, dtype=torch.float64)
    weight = torch.randn(4, 3, kernel, kernel, generator=gen, dtype=torch.float64)
    bias = torch.randn(4, generator=gen, dtype=torch.float64)
    ours = _bench_conv1().space_to_depth_conv2d(x, weight, bias, stride)
    assert torch.allclose(ours, F.conv2d(x, weight, bias, stride), rtol=1e-12, atol=1e-12)
