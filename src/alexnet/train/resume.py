"""What a resumed run may change, and how each change takes effect.

`alexnet train --resume RUN --set KEY=VALUE` continues a run with its own recipe, changed
where the command says. Some keys can change on the way without making the run another one:
how long it goes on, how often it saves, where and how fast it runs, and the update rule's
constants, which then act from the next step on. Every other key (the data, the network,
the seed, the precision, the schedule's kind) makes a different run, and a resume that
changes one is refused with the keys named: start a new run, or `--init-from` this one.

    optim.lr            the rate the run goes on at; the schedule's later drops divide it
    optim.momentum      the velocity's decay, from the next step
    optim.weight_decay  from the next step (groups with a decay of their own keep it)
    optim.batch_size    only at an epoch's end: mid-epoch the images the epoch has left
                        were drawn in batches of the old size
    schedule.*          but `kind`: its counts (best error, epochs without improvement,
                        drops made) go on under the new settings
    run.epochs, run.budget_minutes, run.checkpoint_minutes, run.checkpoint_steps,
    run.log_every_steps, run.max_bad_steps, run.device, run.compile, run.eval_views,
    run.channels_last, data.workers, data.render
"""

from __future__ import annotations

from alexnet.core.checks import ConfigError

#: Keys a resumed run may change (section.key).
RESUMABLE = frozenset({
    "optim.lr", "optim.momentum", "optim.weight_decay", "optim.batch_size", "optim.accumulate",
    "schedule.factor", "schedule.patience", "schedule.max_drops", "schedule.threshold",
    "schedule.early_stop", "schedule.milestones",
    "run.epochs", "run.budget_minutes", "run.checkpoint_minutes", "run.checkpoint_steps",
    "run.log_every_steps", "run.max_bad_steps", "run.device", "run.compile",
    "run.eval_views", "run.channels_last", "data.workers", "data.render",
})  # fmt: skip


def _flat(config: dict) -> dict:
    """{"section.key": value} of a recipe's dict (the model section's keys as model.KEY)."""
    return {f"{section}.{key}": value
            for section, values in config.items() if isinstance(values, dict)
            for key, value in values.items()}  # fmt: skip


def changes(saved: dict, config: dict) -> dict[str, tuple]:
    """The keys whose value differs between the recipe a checkpoint was saved with and the
    one the run resumes with: {key: (saved, now)}. A key the saved recipe lacks (it was
    written before the key existed) counts as unchanged."""
    before, now = _flat(saved), _flat(config)
    # the network is compared whole by checkpoint.check_same_model
    return {k: (before[k], v) for k, v in now.items()
            if k in before and before[k] != v and not k.startswith("model.")}  # fmt: skip


def check(changed: dict[str, tuple], epoch: int, step: int) -> None:
    """Refuse, in one line, the changes a resumed run cannot take."""
    refused = {k: v for k, v in changed.items() if k not in RESUMABLE}
    if refused:
        listed = ", ".join(f"{k} ({old!r} -> {new!r})" for k, (old, new) in refused.items())
        raise ConfigError(
            f"a resumed run cannot change {listed}: that is another run; start one with "
            "--config (and --init-from this run's checkpoint to begin from its weights)"
        )
    if "optim.batch_size" in changed and step > 0:
        raise ConfigError(
            f"optim.batch_size can change on resume only at an epoch's end; this checkpoint "
            f"is at step {step} of epoch {epoch + 1}, whose remaining images were drawn in "
            f"batches of {changed['optim.batch_size'][0]}"
        )


def continue_at(schedule, lr: float, started_at: float) -> None:
    """Make the schedule's current rate `lr`, its later drops counted from there;
    `started_at`: the rate the run began with (the saved recipe's optim.lr)."""
    if hasattr(schedule, "base_lr"):  # milestones: the rate is base x factor^(passed)
        schedule.base_lr = lr * started_at / schedule.lr
    schedule.lr = lr
