"""The paper's update rule (section 5) and the parameter groups the released code uses.

Section 5 of the paper, with epsilon the learning rate:

    v <- 0.9 v - 0.0005 epsilon w - epsilon dL/dw
    w <- w + v

The learning rate sits inside the velocity. torch.optim.SGD keeps the velocity in gradient
units and multiplies by the *current* rate when it steps, b <- m b + (g + lambda w);
w <- w - epsilon b. While epsilon is constant the two are the same sequence of weights; after
the rate is divided by 10 the paper's velocity still carries steps taken at the old rate and
decays them away, while torch's shrinks them tenfold at once. `optim.name: torch_sgd`
keeps torch's rule available for comparison.

For large batches (You, Gitman and Ginsburg 2017, "Large Batch Training of Convolutional
Networks"; Goyal et al. 2017, "Accurate, Large Minibatch SGD"): `LARS`, the layer-wise rate,
and `scaled_lr`, the rate grown with the batch.
"""

from __future__ import annotations

import torch
from torch import nn

from alexnet.core.checks import ConfigError
from alexnet.core.errors import UserError
from alexnet.kernels.update import paper_sgd_, updatable
from alexnet.nn.local import LocallyConnected2d
from alexnet.train.config import OPTIMIZERS, OptimConfig

#: the layers whose `weight` and `bias` are the weights and biases of parameter_groups
LEARNED_LAYERS = (nn.Conv2d, nn.Linear, LocallyConnected2d)


def _evaluate(closure):
    """The loss of an optimizer's closure (with gradients on), or None without one."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


def _velocity(state: dict, p: torch.Tensor) -> torch.Tensor:
    """A parameter's velocity in its optimizer state, zeros at first."""
    if "velocity" not in state:
        state["velocity"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    return state["velocity"]


class PaperSGD(torch.optim.Optimizer):
    """Momentum SGD with the paper's update: the velocity holds the learning rate.

    On a CPU each weight tensor is updated in one pass (`alexnet.kernels.update`); other
    tensors (a GPU's, the DTensor slices of hybrid parallelism) in four foreach passes. With
    working copies (`keep_copies`, `alexnet.train.copies`) a weight's gradient is its bf16
    copy's, and the pass writes the copy too."""

    def __init__(self, params, lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 5e-4):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise UserError(
                f"lr, momentum and weight_decay must be 0 or more, got {lr}, {momentum}, "
                f"{weight_decay}"
            )
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))
        self.copies: dict[torch.Tensor, torch.Tensor] = {}

    def keep_copies(self, copies: dict[torch.Tensor, torch.Tensor]) -> None:
        """Update these bf16 copies of the weights with them, from the copies' gradients."""
        self.copies = copies

    def zero_grad(self, set_to_none: bool = True) -> None:
        super().zero_grad(set_to_none)
        for copy in self.copies.values():
            if copy.grad is not None:
                copy.grad = None if set_to_none else copy.grad.zero_()

    def _grad(self, p: torch.Tensor) -> torch.Tensor | None:
        copy = self.copies.get(p)
        return p.grad if copy is None else copy.grad

    @torch.no_grad()
    def step(self, closure=None):
        loss = _evaluate(closure)
        for group in self.param_groups:
            lr, momentum, decay = group["lr"], group["momentum"], group["weight_decay"]
            rest = []
            for p in group["params"]:
                g = self._grad(p)
                if g is None:
                    continue
                v, copy = _velocity(self.state[p], p), self.copies.get(p)
                if updatable(p, g, v, copy):
                    paper_sgd_(p, g, v, lr, momentum, decay, copy)
                else:
                    rest.append(p)
            if rest:
                self._foreach_step(rest, lr, momentum, decay)
        return loss

    def _foreach_step(self, params: list[torch.Tensor], lr, momentum, decay) -> None:
        velocities = [_velocity(self.state[p], p) for p in params]
        # foreach ops take one kind of tensor at a time: plain tensors, and DTensors (the
        # fully connected layers' slices under hybrid parallelism, alexnet.train.hybrid)
        for kind in dict.fromkeys(type(p) for p in params):
            chosen = [i for i, p in enumerate(params) if type(p) is kind]
            ws, vs = [params[i] for i in chosen], [velocities[i] for i in chosen]
            # a working copy's gradient widened (its copy is made again from the weight
            # before the next forward pass: the weight's version changed)
            gs = [self._grad(params[i]).to(params[i].dtype) for i in chosen]
            # v <- momentum v - decay lr w - lr g, in three passes over each tensor
            torch._foreach_mul_(vs, momentum)
            if decay:
                torch._foreach_add_(vs, ws, alpha=-decay * lr)
            torch._foreach_add_(vs, gs, alpha=-lr)
            torch._foreach_add_(ws, vs)  # w <- w + v


class LARS(torch.optim.Optimizer):
    """You, Gitman and Ginsburg (2017), Algorithm 1, on the paper's update: for each weight
    tensor w with gradient g, the local rate

        lambda = trust ||w|| / (||g|| + beta ||w||)      (beta: the weight decay)
        v <- m v + lr lambda (g + beta w)
        w <- w - v

    Groups marked `"bias": True` (parameter_groups' biases) take neither the trust ratio nor
    weight decay (v <- m v + lr g), the reference implementations' practice. Where ||w|| or
    ||g|| is 0 (a tensor at zero, a layer without gradient) lambda is 1."""

    def __init__(self, params, lr: float = 0.01, momentum: float = 0.9,
                 weight_decay: float = 5e-4, trust: float = 0.001):  # fmt: skip
        if lr < 0 or momentum < 0 or weight_decay < 0 or trust <= 0:
            given = f"{lr}, {momentum}, {weight_decay}, {trust}"
            raise UserError(f"lr, momentum and weight_decay must be 0 or more and trust "
                             f"positive, got {given}")  # fmt: skip
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      trust=trust, bias=False))  # fmt: skip

    @torch.no_grad()
    def step(self, closure=None):
        loss = _evaluate(closure)
        for group in self.param_groups:
            lr, momentum = group["lr"], group["momentum"]
            decay = 0.0 if group["bias"] else group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g, v = p.grad, _velocity(self.state[p], p)
                local = 1.0
                if not group["bias"]:
                    w_norm, g_norm = _norm(p), _norm(g)
                    if w_norm > 0 and g_norm > 0:
                        local = group["trust"] * w_norm / (g_norm + decay * w_norm)
                # v <- m v + lr local (g + decay w); w <- w - v
                v.mul_(momentum).add_(g, alpha=lr * local)
                if decay:
                    v.add_(p, alpha=lr * local * decay)
                p.sub_(v)
        return loss


def _norm(tensor: torch.Tensor) -> float:
    """The whole tensor's L2 norm, also for a slice of one split over processes (a DTensor,
    run.parallel: hybrid), whose own norm is only its part of the whole."""
    norm = tensor.norm()
    if hasattr(norm, "full_tensor"):  # DTensor: the parts reduced across the ranks
        norm = norm.full_tensor()
    return float(norm)


def scaled_lr(optim: OptimConfig) -> float:
    """The rate of a step: optim.lr, or with optim.lr_scaling linear, optim.lr x
    batch_size / 128 (Goyal et al. 2017: the paper's 0.01 is the rate of batch 128)."""
    if optim.lr_scaling == "linear":
        return optim.lr * optim.batch_size / 128
    return optim.lr


def parameter_groups(
    model: nn.Module,
    bias_lr_mult: float = 1.0,
    bias_weight_decay: bool = True,
    layer_weight_decay: dict[str, float] | None = None,
    layer_lr_mult: dict[str, float] | None = None,
    freeze: list[str] | None = None,
) -> list[dict]:
    """Weights and biases of the learned layers, chosen by module type, not by name.

    The paper treats all parameters alike (the defaults). The released code gives biases
    twice the weights' rate and no weight decay: bias_lr_mult=2, bias_weight_decay=False.
    Its CIFAR-10 parameter files also give each layer its own weight decay (`wc`):
    `layer_weight_decay` maps a layer's name (as in `model.named_modules()`) to the decay of
    that layer's weights, each such layer a group of its own after the shared groups.
    Fine-tuning adds `layer_lr_mult` (Caffe's lr_mult: the layer's weights, and its biases
    with bias_lr_mult on top, in groups of their own) and `freeze` (layers left out of
    every group; the trainer also stops their gradients).
    Each group carries `lr_mult`, which the training loop multiplies into the schedule's rate.
    """
    layer_weight_decay = dict(layer_weight_decay or {})
    layer_lr_mult = dict(layer_lr_mult or {})
    frozen = set(freeze or [])
    named = dict(model.named_modules())
    learned = [n for n, m in named.items() if isinstance(m, LEARNED_LAYERS)]
    for key, names in (("layer_weight_decay", layer_weight_decay), ("layer_lr_mult",
                       layer_lr_mult), ("freeze", frozen)):  # fmt: skip
        for name in names:
            if name not in learned:
                raise ConfigError(
                    f"optim.{key} names {name!r}, which is not a learned layer of this "
                    f"network; its layers are: {', '.join(learned)}"
                )
    # in the order the recipe names them
    own_layers = [
        n for n in dict.fromkeys([*layer_weight_decay, *layer_lr_mult]) if n not in frozen
    ]
    weights, biases = [], []
    own = {name: [] for name in own_layers}
    own_biases = {name: [] for name in own_layers if name in layer_lr_mult}
    skipped = set()
    for name in learned:
        module = named[name]
        params = [module.weight] + ([module.bias] if module.bias is not None else [])
        if name in frozen:
            skipped.update(id(p) for p in params)
            continue
        own.get(name, weights).append(module.weight)
        if module.bias is not None:
            own_biases.get(name, biases).append(module.bias)
    chosen = [*weights, *biases, *(p for ps in own.values() for p in ps),
              *(p for ps in own_biases.values() for p in ps)]  # fmt: skip
    seen = {id(p) for p in chosen} | skipped
    others = [p for p in model.parameters() if id(p) not in seen]
    groups = [{"params": weights, "lr_mult": 1.0, "name": "weights"}]
    if biases:
        group = {"params": biases, "lr_mult": bias_lr_mult, "name": "biases", "bias": True}
        if not bias_weight_decay:
            group["weight_decay"] = 0.0
        groups.append(group)
    if others:
        groups.append({"params": others, "lr_mult": 1.0, "name": "other"})
    for name, params in own.items():
        group = {"params": params, "lr_mult": float(layer_lr_mult.get(name, 1.0)), "name": name}
        if name in layer_weight_decay:
            group["weight_decay"] = float(layer_weight_decay[name])
        groups.append(group)
        if own_biases.get(name):
            bias = {"params": own_biases[name], "name": f"{name}.bias", "bias": True,
                    "lr_mult": float(layer_lr_mult[name]) * bias_lr_mult}  # fmt: skip
            if not bias_weight_decay:
                bias["weight_decay"] = 0.0
            groups.append(bias)
    return groups


def freeze_layers(model: nn.Module, names: list[str]) -> list[str]:
    """Stop the named learned layers' gradients (fine-tuning's frozen layers)."""
    named = dict(model.named_modules())
    learned = [n for n, m in named.items() if isinstance(m, LEARNED_LAYERS)]
    for name in names:
        if name not in learned:
            raise ConfigError(
                f"optim.freeze names {name!r}, which is not a learned layer of this network; "
                f"its layers are: {', '.join(learned)}"
            )
        named[name].requires_grad_(False)
    return list(names)


def make_optimizer(model: nn.Module, optim: OptimConfig) -> torch.optim.Optimizer:
    """The recipe's update rule (its `optim` section, alexnet.train.config.OptimConfig)
    over `model`'s parameter groups."""
    o = optim
    groups = parameter_groups(model, o.bias_lr_mult, o.bias_weight_decay,
                              o.layer_weight_decay, o.layer_lr_mult, o.freeze)  # fmt: skip
    groups = [g for g in groups if g["params"]]  # every layer of a kind may be frozen
    lr = scaled_lr(o)
    for group in groups:
        group["lr"] = lr * group["lr_mult"]
    if o.name == "lars":
        return LARS(groups, lr=lr, momentum=o.momentum, weight_decay=o.weight_decay,
                    trust=o.trust)  # fmt: skip
    for group in groups:  # a mark only LARS reads
        group.pop("bias", None)
    if o.name == "paper":
        return PaperSGD(groups, lr=lr, momentum=o.momentum, weight_decay=o.weight_decay)
    if o.name == "torch_sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=o.momentum, weight_decay=o.weight_decay)
    raise UserError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {o.name!r}")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the base rate; each group keeps its multiplier (the released code's 2x biases)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_mult", 1.0)
