"""Per-layer output shapes, neurons, parameters and multiply-adds (`alexnet summary`).

Shapes come from running the model itself on the meta device (no memory, no arithmetic),
so the table cannot disagree with the network it describes.
"""

from __future__ import annotations

import textwrap
from dataclasses import asdict, dataclass

import torch
from torch import nn

from alexnet.models.alexnet import EXTRA_LAYERS, LAYER_NAMES
from alexnet.models.registry import DEFAULT_MODEL, VARIANTS, create_model
from alexnet.nn.local import LocallyConnected2d
from alexnet.nn.lrn import LocalResponseNorm, WithinMapNorm

#: Section 3.5: the neuron counts the paper quotes, layer by layer.
PAPER_NEURONS = {
    "input": 150_528,
    "conv1": 253_440,
    "conv2": 186_624,
    "conv3": 64_896,
    "conv4": 64_896,
    "conv5": 43_264,
    "fc6": 4096,
    "fc7": 4096,
    "fc8": 1000,
}


@dataclass
class LayerRow:
    name: str
    operation: str
    shape: tuple[int, ...]  # (C, H, W) or (features,)
    neurons: int | None  # outputs of the input, conv and fc layers, as the paper counts them
    params: int
    macs: int  # multiply-adds for one image


@dataclass
class Summary:
    model: str
    input_shape: tuple[int, int, int]
    rows: list[LayerRow]
    notes: list[str]

    @property
    def params(self) -> int:
        return sum(r.params for r in self.rows)

    @property
    def macs(self) -> int:
        return sum(r.macs for r in self.rows)

    @property
    def neurons(self) -> int:
        """Neurons of the layers, the input excluded (the paper's "650,000 neurons")."""
        return sum(r.neurons or 0 for r in self.rows if r.name != "input")

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "input_shape": list(self.input_shape),
            "layers": [asdict(r) | {"shape": list(r.shape)} for r in self.rows],
            "totals": {"params": self.params, "neurons": self.neurons, "macs": self.macs},
            "notes": self.notes,
        }

    def table(self) -> str:
        head = ("layer", "operation", "output", "neurons", "parameters", "multiply-adds")
        body = [
            (
                r.name,
                r.operation,
                "x".join(map(str, r.shape)),
                _count(r.neurons),
                _count(r.params) if r.params else "",
                _count(r.macs) if r.macs else "",
            )
            for r in self.rows
        ]
        total = ("total", "", "", _count(self.neurons), _count(self.params), _count(self.macs))
        widths = [max(len(row[i]) for row in (head, *body, total)) for i in range(len(head))]

        def line(row: tuple[str, ...]) -> str:
            left = [row[i].ljust(widths[i]) for i in range(3)]
            right = [row[i].rjust(widths[i]) for i in range(3, len(row))]
            return "  ".join(left + right).rstrip()

        rule = "-" * len(line(head))
        shape = "x".join(map(str, self.input_shape))
        out = [f"{self.model}, input {shape}", line(head), rule, *map(line, body), rule]
        out.append(line(total))
        out += [
            textwrap.fill(note, 100, initial_indent="* ", subsequent_indent="  ")
            for note in self.notes
        ]
        return "\n".join(out)


def _count(n: int | None) -> str:
    return "" if n is None else f"{n:,}"


def summarize(
    name: str = DEFAULT_MODEL,
    input_size: int | None = None,
    num_classes: int = 1000,
    in_chans: int = 3,
    **options,
) -> Summary:
    """The layer table of a registered model at `input_size` (its own crop size if None)."""
    with torch.device("meta"):
        model = create_model(name, num_classes=num_classes, in_chans=in_chans, **options)
    size = input_size or VARIANTS[name].input_size
    model.eval()
    rows = [LayerRow("input", "image", (in_chans, size, size), in_chans * size * size, 0, 0)]
    named = [(n, m) for n, m in model.named_children() if _is_row(m)]
    handles = [m.register_forward_hook(_recorder(n, rows)) for n, m in named]
    try:
        model(torch.empty(1, in_chans, size, size, device="meta"))
    finally:
        for h in handles:
            h.remove()
    return Summary(name, (in_chans, size, size), rows, _notes(rows))


def _is_row(module: nn.Module) -> bool:
    kinds = (nn.Conv2d, nn.Linear, LocallyConnected2d, nn.MaxPool2d, nn.AvgPool2d)
    return isinstance(module, (*kinds, LocalResponseNorm, WithinMapNorm))


def _recorder(name: str, rows: list[LayerRow]):
    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        shape = tuple(output.shape[1:])
        learned = name in (*LAYER_NAMES, *EXTRA_LAYERS) or isinstance(module, LocallyConnected2d)
        neurons = output[0].numel() if learned else None
        params = sum(p.numel() for p in module.parameters())
        macs = 0
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            macs = output[0].numel() * (module.in_channels // module.groups) * kh * kw
        elif isinstance(module, nn.Linear):
            macs = module.in_features * module.out_features
        elif isinstance(module, LocallyConnected2d):
            macs = output[0].numel() * module.fan_in
        rows.append(LayerRow(name, _operation(module), shape, neurons, params, macs))

    return hook


def _operation(module: nn.Module) -> str:
    if isinstance(module, nn.Conv2d):
        k, s = module.kernel_size[0], module.stride[0]
        towers = f", {module.groups} towers" if module.groups > 1 else ""
        return f"conv {k}x{k}/{s}{towers}"
    if isinstance(module, nn.Linear):
        return "fully connected"
    if isinstance(module, LocallyConnected2d):
        k, s = module.kernel_size, module.stride
        return f"local {k}x{k}/{s}, unshared"
    if isinstance(module, nn.MaxPool2d):
        return f"max-pool {module.kernel_size}/{module.stride}"
    if isinstance(module, nn.AvgPool2d):
        return f"avg-pool {module.kernel_size}/{module.stride}"
    if isinstance(module, WithinMapNorm):
        return f"norm {module.size}x{module.size} in-map"
    towers = f", {module.groups} towers" if module.groups > 1 else ""
    return f"LRN n={module.size}{towers}"


def _notes(rows: list[LayerRow]) -> list[str]:
    notes = []
    conv1 = next((r for r in rows if r.name == "conv1"), None)
    if conv1 and conv1.neurons == 290_400:
        notes.append(
            "conv1: the paper quotes 253,440 neurons, but its 96 maps of 55x55 hold "
            "55 x 55 x 96 = 290,400 (a known error in the paper: 253,440 = 55 x 48 x 96, "
            "as if one side were 48). The other layers' counts match the paper's: "
            + ", ".join(f"{k} {v:,}" for k, v in PAPER_NEURONS.items() if k != "conv1")
            + "."
        )
    return notes
