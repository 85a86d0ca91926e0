"""The network as predict, eval and serve run it (alexnet.core.runtime.InferenceNetwork)."""

from __future__ import annotations

import torch

from alexnet.core.runtime import InferenceNetwork, PackedLinear, autocast
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
