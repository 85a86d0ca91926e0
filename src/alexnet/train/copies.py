"""bf16 working copies of the weights, for bf16 training on a CPU.

Under autocast every forward pass casts each weight and bias of the convolutional and fully
connected layers to bf16 (61M numbers for AlexNet), and every backward pass casts their bf16
gradients back to float32 (`aten::copy_`: about 0.1 of a bf16 training step on a 2-core
CPU, docs/benchmarks.md). Here the network's float32 weights stay the masters the optimizer
updates and a checkpoint saves, and each has a bf16 copy that the forward pass reads in its
place: `PaperSGD` writes the copy in the same pass as the update (`alexnet.kernels.update`)
and reads the copy's bf16 gradient directly.

The numbers are autocast's, bit for bit: autocast rounds each weight to the nearest bf16,
which is what the copy holds, and the gradient it casts back to float32 is the bf16 one the
copy receives, widened exactly. A test trains the same steps both ways and compares every
weight and velocity with `torch.equal`.

Where it applies (`applies`): bf16 on a CPU, one process, the paper's update, one micro-batch
a step (summed micro-batch gradients would add in bf16, not float32), neither compiled nor
split over devices. Elsewhere the step runs autocast as it did.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

#: the layers whose weight and bias autocast casts to bf16 (conv2d and linear are on its
#: bf16 list; the locally connected layers' operations may not be, so they keep theirs)
CAST_LAYERS = (nn.Conv2d, nn.Linear)


def applies(config, device: torch.device, world: int) -> bool:
    """Whether a run of `config` trains on working copies (see the module's text)."""
    run, optim = config.run, config.optim
    return (
        run.precision == "bf16"
        and device.type == "cpu"
        and world == 1
        and optim.name == "paper"
        and optim.accumulate == 1
        and not run.compile
        and not run.tower_devices
    )


class WorkingCopies:
    """The network run on bf16 copies of its layers' weights: `copies(x)` is `model(x)` with
    each float32 weight and bias of a convolutional or fully connected layer replaced by its
    copy. A copy is made again from its master whenever the master was changed by anything
    but the optimizer's pass (loading a checkpoint, say: torch counts a tensor's in-place
    changes, and the optimizer's pass is not one of them)."""

    def __init__(self, model: nn.Module, optimizer) -> None:
        self.model = model
        self.names: list[str] = []
        self.masters: list[torch.Tensor] = []
        for prefix, module in model.named_modules():
            if not isinstance(module, CAST_LAYERS):
                continue
            for name, p in module.named_parameters(recurse=False):
                if p.dtype == torch.float32:
                    self.names.append(f"{prefix}.{name}" if prefix else name)
                    self.masters.append(p)
        self.copies = [self._copy(p) for p in self.masters]
        self.versions = [p._version for p in self.masters]
        optimizer.keep_copies(dict(zip(self.masters, self.copies, strict=True)))

    @staticmethod
    def _copy(p: torch.Tensor) -> torch.Tensor:
        copy = p.detach().to(torch.bfloat16, memory_format=torch.preserve_format)
        return copy.requires_grad_(p.requires_grad)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.refresh()
        return functional_call(self.model, dict(zip(self.names, self.copies, strict=True)), (x,))

    @torch.no_grad()
    def refresh(self) -> None:
        """Copy again every master changed since its copy was written."""
        for i, p in enumerate(self.masters):
            if p._version != self.versions[i]:
                self.copies[i].copy_(p)
                self.versions[i] = p._version
