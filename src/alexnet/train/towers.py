"""The paper's model parallelism (section 3.2): tower A on one device, tower B on another.

"The GPUs communicate only in certain layers": each device holds half of the kernels of
every convolutional layer and half of the neurons of fc6 and fc7. A tower's conv2, conv4
and conv5 read only its own maps; conv3, fc6 and fc7 read both towers', so only their inputs
cross between devices. fc8 (the logits) runs on tower A's device, which also receives the
batch's labels.

`TowerParallel(model, devices)` takes the weights of an `AlexNet` with towers=2 (the groups=2
layout: maps [0, C/2) are tower A's) and computes exactly what that network computes.
`grouped_state_dict()` gives the weights back in the AlexNet layout, so checkpoints, `eval`
and `predict` do not depend on how a network was trained.
"""

from __future__ import annotations

from dataclasses import asdict

import torch
from torch import nn

from alexnet.core.errors import UserError
from alexnet.models.alexnet import AlexNet
from alexnet.models.record import Network
from alexnet.nn.lrn import LocalResponseNorm

# Layers split by output; the second number says whether the layer reads both towers' maps.
_SPLIT = {
    "conv1": False, "conv2": False, "conv3": True, "conv4": False, "conv5": False,
    "fc6": True, "fc7": True,
}  # fmt: skip


class Tower(nn.Module):
    """One device's half of conv1..conv5 and of fc6 and fc7."""

    def __init__(self, model: AlexNet, half: int, device: torch.device) -> None:
        super().__init__()
        for name in _SPLIT:
            layer = getattr(model, name)
            size = layer.out_channels if name.startswith("conv") else layer.out_features
            rows = slice(half * size // 2, (half + 1) * size // 2)
            part = _like(layer, size // 2)
            with torch.no_grad():
                part.weight.copy_(layer.weight[rows])
                part.bias.copy_(layer.bias[rows])
            setattr(self, name, part)
        for name in ("act1", "norm1", "pool1", "act2", "norm2", "pool2", "act3", "act4"):
            setattr(self, name, _per_tower(getattr(model, name)))
        for name in ("act5", "pool5", "act6", "drop6", "act7"):
            setattr(self, name, getattr(model, name))
        self.to(device)
        self.device = device


def _like(layer: nn.Module, outputs: int) -> nn.Module:
    """A layer as `layer` with `outputs` outputs and one group (a tower is one group)."""
    if isinstance(layer, nn.Linear):
        return nn.Linear(layer.in_features, outputs, dtype=layer.weight.dtype)
    inputs = layer.in_channels // layer.groups  # the maps each kernel reads
    return type(layer)(  # nn.Conv2d or CeilConv2d (conv1's released-code edges)
        inputs, outputs, layer.kernel_size, layer.stride, layer.padding,
        dtype=layer.weight.dtype,
    )  # fmt: skip


def _per_tower(module: nn.Module) -> nn.Module:
    """An activation or pooling module as it is; an LRN that normalizes one tower's maps."""
    if isinstance(module, LocalResponseNorm):
        m = module
        return LocalResponseNorm(m.size, m.alpha, m.beta, m.k, 1, m.convention, m.backend)
    return module


class TowerParallel(nn.Module):
    def __init__(self, model: AlexNet, devices: list[str | torch.device]) -> None:
        super().__init__()
        c = model.config
        unsupported = {
            "towers": c.towers != 2,
            "remove_layer": c.remove_layer is not None,
            "lrn_across_towers": c.lrn_across_towers,
            "norm_before_pool": not c.norm_before_pool,
            "adaptive_pool": c.adaptive_pool,
            "dropout_placement": c.dropout_placement != "paper",
        }
        bad = [k for k, v in unsupported.items() if v]
        if bad:
            raise UserError(
                f"the two-device tower split needs the paper's two-tower layout; "
                f"{model.name} differs in: {', '.join(bad)}"
            )
        if len(devices) != 2:
            raise UserError(f"give two devices, one per tower; got {devices}")
        self.devices = [torch.device(d) for d in devices]
        self.name, self.config = model.name, model.config
        self.towers = nn.ModuleList(Tower(model, t, d) for t, d in enumerate(self.devices))
        self.drop7 = model.drop7
        self.fc8 = _copy(model.fc8).to(self.devices[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.towers
        xa, xb = x.to(a.device), x.to(b.device)
        # each tower: conv1, conv2 on its own maps
        xa = self._own_maps(a, xa)  # (B, 128, 13, 13)
        xb = self._own_maps(b, xb)
        # conv3 reads both towers' maps: the first exchange
        both_a = torch.cat([xa, xb.to(a.device)], dim=1)  # (B, 256, 13, 13)
        both_b = torch.cat([xa.to(b.device), xb], dim=1)
        xa, xb = self._rest_conv(a, both_a), self._rest_conv(b, both_b)  # (B, 128, 6, 6)
        # fc6 reads every conv5 map (the second exchange), fc7 every fc6 neuron (the third)
        flat_a = torch.cat([xa, xb.to(a.device)], dim=1).flatten(1)  # (B, 9216)
        flat_b = torch.cat([xa.to(b.device), xb], dim=1).flatten(1)
        ha, hb = (t.drop6(t.act6(t.fc6(f))) for t, f in ((a, flat_a), (b, flat_b)))
        fa = torch.cat([ha, hb.to(a.device)], dim=1)  # (B, 4096)
        fb = torch.cat([ha.to(b.device), hb], dim=1)
        ha, hb = a.act7(a.fc7(fa)), b.act7(b.fc7(fb))
        h = torch.cat([ha, hb.to(a.device)], dim=1)  # (B, 4096) on tower A's device
        if self.drop7 is not None:
            h = self.drop7(h)
        return self.fc8(h)

    @staticmethod
    def _own_maps(t: Tower, x: torch.Tensor) -> torch.Tensor:
        x = t.pool1(t.norm1(t.act1(t.conv1(x))))
        return t.pool2(t.norm2(t.act2(t.conv2(x))))

    @staticmethod
    def _rest_conv(t: Tower, x: torch.Tensor) -> torch.Tensor:
        x = t.act3(t.conv3(x))
        x = t.act4(t.conv4(x))
        return t.pool5(t.act5(t.conv5(x)))

    def grouped_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights in AlexNet's layout (on the CPU): each split layer's halves stacked."""
        state = {}
        for name in _SPLIT:
            parts = [getattr(t, name) for t in self.towers]
            state[f"{name}.weight"] = torch.cat([p.weight.detach().cpu() for p in parts])
            state[f"{name}.bias"] = torch.cat([p.bias.detach().cpu() for p in parts])
        state["fc8.weight"] = self.fc8.weight.detach().cpu()
        state["fc8.bias"] = self.fc8.bias.detach().cpu()
        return state

    def load_grouped_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        model = Network(self.name, asdict(self.config)).build()
        model.load_state_dict(state)
        fresh = TowerParallel(model, self.devices)
        with torch.no_grad():
            for mine, theirs in zip(self.parameters(), fresh.parameters(), strict=True):
                mine.copy_(theirs)


def _copy(layer: nn.Linear) -> nn.Linear:
    out = nn.Linear(layer.in_features, layer.out_features, dtype=layer.weight.dtype)
    with torch.no_grad():
        out.weight.copy_(layer.weight)
        out.bias.copy_(layer.bias)
    return out
