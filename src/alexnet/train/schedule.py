"""Learning-rate schedules (section 5): the paper's plateau rule and the released code's epochs.

The paper: "divide the learning rate by 10 when the validation error rate stopped improving
with the current learning rate ... reduced three times prior to termination". The released
code dropped it at fixed epochs instead: 25, 51 and 79 of 91.

Both are stepped once per epoch with that epoch's validation error and report the rate for
the next epoch. Their state is plain numbers, saved in checkpoints.
"""

from __future__ import annotations

from alexnet.core.errors import UserError
from alexnet.train.config import SCHEDULES, ScheduleConfig


class Plateau:
    """Divide by 1/factor when the error has not improved for `patience` epochs in a row.

    An epoch improves when its error is below the best so far by more than `threshold`
    (absolute, in the error's units). After a drop the count starts again, and the best is
    kept. At most `max_drops` drops (the paper's three); after that the rate stays.
    """

    def __init__(
        self,
        lr: float,
        factor: float = 0.1,
        patience: int = 1,
        max_drops: int = 3,
        threshold: float = 0.0,
    ):
        if not 0 < factor < 1:
            raise UserError(f"schedule.factor must be between 0 and 1, got {factor}")
        if patience < 1:
            raise UserError(f"schedule.patience must be 1 or more epochs, got {patience}")
        self.lr, self.factor, self.patience = lr, factor, patience
        self.max_drops, self.threshold = max_drops, threshold
        self.best: float | None = None
        self.bad_epochs = 0
        self.drops = 0

    def step(self, epoch: int, error: float | None) -> float:
        """Record the error of epoch `epoch` (0-based); returns the rate for the next one."""
        if error is None:
            return self.lr
        if self.best is None or error < self.best - self.threshold:
            self.best, self.bad_epochs = error, 0
        else:
            self.bad_epochs += 1
        if self.bad_epochs >= self.patience and self.drops < self.max_drops:
            self.lr *= self.factor
            self.drops += 1
            self.bad_epochs = 0
        return self.lr

    @property
    def exhausted(self) -> bool:
        """All drops made, and no improvement for `patience` epochs since the last one."""
        return self.drops >= self.max_drops and self.bad_epochs >= self.patience

    def state_dict(self) -> dict:
        return dict(lr=self.lr, best=self.best, bad_epochs=self.bad_epochs, drops=self.drops)

    def load_state_dict(self, state: dict) -> None:
        self.lr, self.best = state["lr"], state["best"]
        self.bad_epochs, self.drops = state["bad_epochs"], state["drops"]


class Milestones:
    """Multiply by `factor` after each listed epoch (1-based epoch counts, as the released
    code's 25/51/79: epochs 26-51 run at lr/10)."""

    def __init__(self, lr: float, milestones=(25, 51, 79), factor: float = 0.1):
        if list(milestones) != sorted(milestones) or any(m < 1 for m in milestones):
            raise UserError(
                f"schedule.milestones must be increasing epoch numbers, got {milestones}"
            )
        self.base_lr, self.milestones, self.factor = lr, list(milestones), factor
        self.lr = lr

    def step(self, epoch: int, error: float | None = None) -> float:
        done = epoch + 1  # epochs completed
        self.lr = self.base_lr * self.factor ** sum(done >= m for m in self.milestones)
        return self.lr

    def state_dict(self) -> dict:
        return dict(lr=self.lr)

    def load_state_dict(self, state: dict) -> None:
        self.lr = state["lr"]


class Constant:
    def __init__(self, lr: float):
        self.lr = lr

    def step(self, epoch: int, error: float | None = None) -> float:
        return self.lr

    def state_dict(self) -> dict:
        return dict(lr=self.lr)

    def load_state_dict(self, state: dict) -> None:
        self.lr = state["lr"]


class Warmup:
    """Goyal et al. (2017)'s gradual warmup: over the first `epochs` epochs the rate rises
    linearly, each step, from `start` (the rate of batch 128) to `end` (the scaled rate);
    after them the schedule's rate holds. `rate(epoch, step, steps)`: the rate of step
    `step` (0-based) of epoch `epoch` (0-based) of `steps` steps, or None past the warmup."""

    def __init__(self, start: float, end: float, epochs: float):
        self.start, self.end, self.epochs = start, end, epochs

    def rate(self, epoch: int, step: int, steps: int) -> float | None:
        if self.epochs <= 0 or steps <= 0:
            return None
        done = (epoch * steps + step) / (self.epochs * steps)  # the share of warmup done
        if done >= 1:
            return None
        return self.start + (self.end - self.start) * done


def make_schedule(schedule: ScheduleConfig, lr: float):
    """The recipe's schedule (its `schedule` section) from the rate `lr` (optim.lr)."""
    s = schedule
    if s.kind == "plateau":
        return Plateau(lr, factor=s.factor, patience=s.patience, max_drops=s.max_drops,
                       threshold=s.threshold)  # fmt: skip
    if s.kind == "milestones":
        return Milestones(lr, milestones=s.milestones, factor=s.factor)
    if s.kind == "constant":
        return Constant(lr)
    raise UserError(f"schedule.kind must be one of {', '.join(SCHEDULES)}, got {s.kind!r}")
