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
        backend = "nccl" if device.type == "cuda" else "gloo"
        restart = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True" and restart != "0":
            dist.init_process_group(backend, store=_attempt_store(restart), rank=procs.rank,
                                    world_size=world)  # fmt: skip
        else:
            dist.init_process_group(backend)
    return procs, device


def _attempt_store(restart: str) -> dist.Store:
    """torchrun's store, seen under a prefix of its own for this restart.

    torchrun (--max-restarts) restarts the workers with the store its agent keeps, which
    still holds the first attempt's keys: gloo's rendezvous then reads the addresses of
    workers that are gone and waits on them forever (PyTorch issue 135712; setting
    TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 for torchrun avoids it too). Each attempt's keys
    under their own prefix start the group afresh."""
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]),
                          is_master=False)  # fmt: skip
    return dist.PrefixStore(f"alexnet/attempt-{restart}", store)


def all_sum(values: list[float], procs: Processes, device: torch.device) -> list[float]:
    if procs.world == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()
