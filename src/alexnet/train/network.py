"""A run's network: built seeded from the recipe, started from other weights where it says
(run.init_from, model.reinit), frozen where it says (optim.freeze), and placed: on its
device, split over two (run.tower_devices), wrapped for several processes, compiled.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from alexnet.core.checks import ConfigError
from alexnet.core.runtime import input_dtype
from alexnet.models import checkpoint as ckpt
from alexnet.models.record import ModelRecord, Network, Source
from alexnet.models.registry import create_model
from alexnet.models.transfer import load_layers, sha256
from alexnet.train.distributed import Processes
from alexnet.train.optim import freeze_layers

log = logging.getLogger("alexnet.train.trainer")


@dataclass
class Nets:
    """The network three ways: `plain` is what is saved, `model` what validates (wrapped
    for several processes), `step_model` what trains (compiled, if run.compile)."""

    plain: nn.Module
    model: nn.Module
    step_model: nn.Module
    network: Network  # its record: the variant and its config
    frozen: list[str]
    init: dict | None  # what run.init_from did: the source, its sha256, the layers copied
    source: ModelRecord | None  # the source's record (its preprocessing, for one)
    # run.parallel: hybrid: fc6-fc8 split over the ranks (DTensor); `replica` the whole
    # network each rank validates with, its weights gathered before each validation
    hybrid: bool = False
    replica: nn.Module | None = None

    @property
    def started_from(self) -> Source | None:
        if self.init is None:
            return None
        return Source(self.init["source"], self.init["sha256"], self.init["network"])

    def weights(self) -> dict:
        """The network's weights in AlexNet's layout, however it is split over devices
        (with hybrid parallelism every rank must ask: the slices are gathered)."""
        if self.hybrid:
            from alexnet.train.hybrid import full_state

            return full_state(self.plain)
        if hasattr(self.plain, "grouped_state_dict"):
            return self.plain.grouped_state_dict()
        return self.plain.state_dict()

    def load_weights(self, state: dict) -> None:
        if self.hybrid:
            from alexnet.train.hybrid import load_full_state

            load_full_state(self.plain, state)
        elif hasattr(self.plain, "load_grouped_state_dict"):
            self.plain.load_grouped_state_dict(state)
        else:
            self.plain.load_state_dict(state)

    def optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict:
        """What a checkpoint keeps of the optimizer: as one process's would be."""
        if self.hybrid:
            from alexnet.train.hybrid import full_optimizer_state

            return full_optimizer_state(optimizer)
        return optimizer.state_dict()

    def shard_optimizer_state(self, optimizer: torch.optim.Optimizer) -> None:
        if self.hybrid:
            from alexnet.train.hybrid import shard_optimizer_state

            shard_optimizer_state(optimizer)

    def for_validation(self) -> nn.Module:
        """The network validation runs: itself, or with hybrid parallelism a whole copy of
        it on each rank (every rank must ask), so that each validates its own images as
        under data parallelism."""
        if not self.hybrid:
            return self.plain
        self.replica.load_state_dict(self.weights())
        return self.replica


def build_network(
    config,
    num_classes: int,
    in_chans: int,
    checkpoint: dict | None,
    device: torch.device,
    procs: Processes,
) -> Nets:
    """The recipe's network. `checkpoint`: the one a resumed run continues from (checked to
    hold the same network; its weights are loaded later, with the rest of its state)."""
    run = config.run
    torch.manual_seed(run.seed)  # the initial weights
    # The run draws nothing from Python's or numpy's global generators (the views have
    # their own, seeded per image), but code it calls could: seeded too, so that every
    # generator a checkpoint records starts where the recipe says (a resumed run restores
    # them from the checkpoint instead)
    random.seed(run.seed)
    np.random.seed(run.seed)
    model = create_model(
        config.model_name, num_classes=num_classes, in_chans=in_chans, **config.model_options
    )
    if checkpoint is not None:
        ckpt.check_same_model(checkpoint, model)
    init = source = None
    if checkpoint is None and run.init_from:
        loaded = ckpt.load(run.init_from)
        done = load_layers(model, loaded, config.reinit)
        source = loaded["record"]
        init = {
            "source": str(run.init_from),
            "file": loaded["path"],
            "sha256": sha256(loaded["path"]),
            "network": source.network.name,
            **done,
        }
    elif config.reinit and not run.init_from:
        raise ConfigError(
            "model.reinit lists layers to start afresh, but run.init_from (--init-from) "
            "names no weights to start the others from"
        )
    frozen = freeze_layers(model, config.optim.freeze or [])
    network = Network.of(model)
    model.to(device, input_dtype(run.precision))
    if run.channels_last:
        model.to(memory_format=torch.channels_last)
    if run.tower_devices:
        from alexnet.train.towers import TowerParallel

        model = TowerParallel(model, run.tower_devices)
    plain = wrapped = model
    hybrid = procs.world > 1 and run.parallel == "hybrid"
    replica = None
    if hybrid:
        import copy

        from torch.distributed.device_mesh import init_device_mesh

        from alexnet.train.hybrid import parallelize

        replica = copy.deepcopy(model)  # before the split: a whole network to validate with
        plain = wrapped = parallelize(model, init_device_mesh(device.type, (procs.world,)))
    elif procs.world > 1:
        wrapped = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    # The training step runs the compiled network; validation and the saved state use the
    # network itself (compiling keeps its parameters, under other names).
    step_model = torch.compile(wrapped) if run.compile else wrapped
    return Nets(plain, wrapped, step_model, network, frozen, init, source, hybrid, replica)
