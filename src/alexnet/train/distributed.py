"""Several processes (torchrun): joining the process group, picking each rank's device, and
summing numbers over ranks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from alexnet.core.runtime import resolve_device


@dataclass
class Processes:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def start_processes(device_name: str) -> tuple[Processes, torch.device]:
    """Join torchrun's process group when launched by it; pick this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    procs = Processes(
        int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))
    )
    device = resolve_device(device_name, procs.local_rank if world > 1 else None)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return procs, device


def all_sum(values: list[float], procs: Processes, device: torch.device) -> list[float]:
    if procs.world == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()
