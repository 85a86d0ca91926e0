"""The network as predict, eval and serve run it (alexnet.core.runtime.InferenceNetwork)."""

from __future__ import annotations

import pytest
import torch

from alexnet.core.runtime import InferenceNetwork, PackedConv2d, PackedLinear, autocast
from alexnet.models.registry import create_model

CPU = torch.device("cpu")


def test_the_inference_network_answers_as_the_network_does():
    torch.manual_seed(0)
    network = create_model("alexnet2012", num_classes=10, init="kaiming").eval()
    before = {k: v.clone() for k, v in network.state_dict().items()}
    x = torch.randn(3, 3, 224, 224) * 60  # 0-255 pixels minus the mean: the LRN acts
    with torch.inference_mode():
        ours = network(x)
        with autocast(CPU, "bf16"):
            theirs = network(x).float()
        fp32 = InferenceNetwork(network, CPU, "fp32")
        bf16 = InferenceNetwork(network, CPU, "bf16")
        # oneDNN's inner product on packed weights, by hand: the same layer's arithmetic
        assert type(fp32.network.fc6) is PackedLinear and type(bf16.network.fc8) is PackedLinear
        features = torch.randn(5, 9216)
        expected = torch.nn.functional.linear(features, network.fc6.weight, network.fc6.bias)
        torch.testing.assert_close(fp32.network.fc6(features), expected, rtol=1e-5, atol=1e-4)
        size = ours.abs().max()
        assert (fp32(x) - ours).abs().max() <= 1e-5 * size  # fp32: float rounding apart
        assert (bf16(x).float() - theirs).abs().max() <= 2e-2 * size  # bf16's rounding
    # the network given is left as it was (a copy answers)
    assert all(torch.equal(v, network.state_dict()[k]) for k, v in before.items())
    assert type(network.fc6) is torch.nn.Linear


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_packed_convolutions_compute_what_the_layers_do_bit_for_bit(dtype):
    """Weights reordered once run oneDNN's same kernel: each layer's output (conv1 with its
    released-code padding, the towers' grouped convolutions) equals the layer's own, at
    batches and sizes the weights were not packed for."""
    torch.manual_seed(1)
    network = create_model("alexnet2012", num_classes=10, init="kaiming").eval()
    inference = InferenceNetwork(network, CPU, "bf16" if dtype == torch.bfloat16 else "fp32")
    layers = ("conv1", "conv2", "conv3", "conv4", "conv5")
    assert all(type(getattr(inference.network, n)) is PackedConv2d for n in layers)
    reference = network.to(dtype, memory_format=torch.channels_last)
    inputs = {"conv1": 3, "conv2": 96, "conv3": 256, "conv4": 384, "conv5": 384}
    with torch.inference_mode():
        for name in layers:
            for batch, side in ((1, 27), (3, 13), (2, 31)):
                side = 224 if name == "conv1" and side == 27 else side
                x = (torch.randn(batch, inputs[name], side, side) * 30).to(dtype)
                for layout in (torch.contiguous_format, torch.channels_last):
                    x = x.contiguous(memory_format=layout)  # the image comes in NCHW
                    ours = getattr(inference.network, name)(x)
                    theirs = getattr(reference, name)(x)
                    assert ours.shape == theirs.shape and torch.equal(ours, theirs), (name, batch)
