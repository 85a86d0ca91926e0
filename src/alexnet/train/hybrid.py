"""Krizhevsky's hybrid parallelism ("One weird trick for parallelizing convolutional neural
networks", 2014) on PyTorch's DeviceMesh and DTensor.

The convolutional layers hold about 4% of the parameters and most of the computation: they
are data parallel, each rank running its own share of the batch through them, their
gradients summed across ranks once a step. The fully connected layers hold the other 96%:
they are model parallel, each rank holding a slice of fc6, fc7 and fc8 and running the
whole batch through its slice, so that their weights' gradients never cross the network.

    conv1-conv5   replicated; each rank its b images; gradients all-reduced (summed)
    fc6           column-parallel: the ranks' conv5 maps gathered (N b rows), each rank a
                  slice of fc6's outputs
    fc7           row-parallel: its slice of the inputs, the partial sums all-reduced
    fc8           column-parallel, its outputs gathered: every rank the logits of all N b

Each rank then computes the loss of the whole batch (its labels gathered too), so the
gradients are those of one process training on the whole batch (tests/train/test_hybrid.py
checks it in float64, with 2 and 4 gloo processes). What a step sends is counted in
`bytes_per_step`, against plain data parallelism's all-reduce of every gradient.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from alexnet.core.errors import UserError

FC_LAYERS = ("fc6", "fc7", "fc8")


def parallelize(model: nn.Module, mesh) -> nn.Module:
    """Split `model`'s fc6-fc8 over the 1-D `mesh` (in place); the rest stays replicated."""
    from torch.distributed.tensor import Replicate, Shard
    from torch.distributed.tensor.parallel import (
        ColwiseParallel,
        RowwiseParallel,
        parallelize_module,
    )

    missing = [n for n in FC_LAYERS if not isinstance(getattr(model, n, None), nn.Linear)]
    if missing:
        name = getattr(model, "name", "this network")
        raise UserError(f"hybrid parallelism splits fc6, fc7 and fc8; {name} has no fully "
                        f"connected {', '.join(missing)}: use data parallelism")  # fmt: skip
    ranks = mesh.size()
    for name in ("fc6", "fc7", "fc8"):
        width = getattr(model, name).out_features if name != "fc7" else model.fc7.in_features
        if width % ranks:
            raise UserError(f"{name}'s {width} units do not split among {ranks} processes")
    for name in ("act6", "act7"):  # DTensor's outputs are views autograd must not see changed
        if hasattr(getattr(model, name, None), "inplace"):
            getattr(model, name).inplace = False
    plan = {
        "fc6": ColwiseParallel(input_layouts=Shard(0)),  # gather the batch, split the outputs
        "fc7": RowwiseParallel(),  # split inputs, partial sums all-reduced
        "fc8": ColwiseParallel(output_layouts=Replicate()),  # every rank every logit
    }
    return parallelize_module(model, mesh, plan)


def conv_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The replicated (data-parallel) parameters: all but fc6-fc8's slices."""
    from torch.distributed.tensor import DTensor

    return [p for p in model.parameters() if not isinstance(p, DTensor)]


def reduce_conv_gradients(model: nn.Module) -> None:
    """Sum the replicated layers' gradients across ranks, in one flat buffer: each rank's
    holds its own images' share of the whole batch's gradient."""
    grads = [p.grad for p in conv_parameters(model) if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    for g, part in zip(grads, flat.split([g.numel() for g in grads]), strict=True):
        g.copy_(part.view_as(g))


def loss_and_mistakes(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The whole batch's mean loss (`logits` of every rank's images, in rank order, as fc8
    gathers them) and this rank's own top-1 mistakes (so that a sum over ranks counts each
    image once)."""
    world, rank = dist.get_world_size(), dist.get_rank()
    gathered = [torch.empty_like(labels) for _ in range(world)]
    dist.all_gather(gathered, labels)
    loss = F.cross_entropy(logits, torch.cat(gathered))
    mine = logits.detach()[rank * len(labels) : (rank + 1) * len(labels)]
    return loss, int((mine.argmax(1) != labels).sum())


def bytes_per_step(ranks: int, batch: int, parameters: dict[str, int], widths: dict[str, int],
                   element: int = 4, gloo: bool = False) -> dict[str, float]:  # fmt: skip
    """What each rank sends per training step, by ring collectives, hybrid against data
    parallelism. `batch`: the global batch; `parameters`: {"conv": ..., "fc": ...};
    `widths`: fc6's inputs ("features"), fc7's inputs and outputs ("hidden"), fc8's
    outputs ("classes"). A ring all-gather or reduce-scatter of M values in all sends
    (N - 1) / N x M from each rank, an all-reduce twice that. `gloo`: the conv5 maps'
    gradient is reduced by an all-reduce there, as measured (gloo has no reduce-scatter
    for DTensor to use); NCCL reduce-scatters it."""
    n = ranks
    share = (n - 1) / n
    features = batch * widths["features"]  # the gathered conv5 maps
    hidden = batch * widths["hidden"]
    logits = batch * widths["classes"]
    hybrid = {
        "conv gradients (all-reduce)": 2 * share * parameters["conv"],
        "conv5 maps (all-gather; backward reduce-scatter)": (3 if gloo else 2) * share * features,
        "fc7 partial sums (all-reduce)": 2 * share * hidden,
        "fc8's input gradient (all-reduce, backward)": 2 * share * hidden,
        "logits (all-gather)": share * logits,
        "labels (all-gather, int64)": share * batch * 8 / element,
    }
    total = {k: v * element for k, v in hybrid.items()}
    return {
        "hybrid": total,
        "hybrid_total": sum(total.values()),
        "data_parallel_total": 2 * share * (parameters["conv"] + parameters["fc"]) * element,
    }


def full_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The network's weights whole, as one process holds them: each split layer's slices
    gathered (every rank must call it: the gathering is a collective)."""
    from torch.distributed.tensor import DTensor

    return {k: v.full_tensor() if isinstance(v, DTensor) else v
            for k, v in model.state_dict().items()}  # fmt: skip


def load_full_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Whole weights (a checkpoint's) into the split network: each rank keeps its slices."""
    from torch.distributed.tensor import DTensor

    with torch.no_grad():
        for key, value in model.state_dict().items():
            if isinstance(value, DTensor):
                value.to_local().copy_(shard_like(state[key], value).to_local())
            else:
                value.copy_(state[key])


def shard_like(whole: torch.Tensor, like):
    """`whole` split as the DTensor `like` is (its mesh and placements)."""
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(whole.to(like.device, like.dtype), like.device_mesh, like.placements)


def full_optimizer_state(optimizer: torch.optim.Optimizer) -> dict:
    """The optimizer's state_dict with every split tensor (a velocity) gathered whole, so
    that a checkpoint holds what one process's optimizer would."""
    from torch.distributed.tensor import DTensor

    state = optimizer.state_dict()
    for values in state["state"].values():
        for name, value in values.items():
            if isinstance(value, DTensor):
                values[name] = value.full_tensor()
    return state


def shard_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """After load_state_dict of whole tensors: each split parameter's state split as it is."""
    from torch.distributed.tensor import DTensor

    for group in optimizer.param_groups:
        for p in group["params"]:
            if not isinstance(p, DTensor):
                continue
            for name, value in optimizer.state.get(p, {}).items():
                whole = isinstance(value, torch.Tensor) and not isinstance(value, DTensor)
                if whole and value.shape == p.shape:
                    optimizer.state[p][name] = shard_like(value, p)
