"""`alexnet bench profile`: where a training or inference step's time goes, op by op.

The same steps as `alexnet bench model` (same models, inputs, settings and update rule),
recorded with torch.profiler after a warm-up: for each network, the operations that take
the most time, in milliseconds per step and as a share of the step. Each network is
profiled in a fresh process of its own, as `bench model` times it. On a GPU the time is
the device's (kernels); on the CPU it is each operation's own CPU time. Side by side, the
two networks' tables show where the faithful one spends more than the reference.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from alexnet.bench.common import device_name, machine
from alexnet.bench.model import MODELS, MODES, Case, check_cases, prepare_cases
from alexnet.core.errors import UserError


def _self_time(event, device: bool) -> float:
    """Microseconds of an averaged event's own time, on the device or on the CPU."""
    if not device:
        return event.self_cpu_time_total
    for name in ("self_device_time_total", "self_cuda_time_total"):  # torch renamed it
        if hasattr(event, name):
            return getattr(event, name)
    return 0.0


def profile_step(
    run, steps: int, device: torch.device, trace: Path | None = None, by_shape: bool = False
) -> list[dict]:
    """Operations of `steps` calls of `run`, most time first: name, calls and milliseconds
    per step, and share of all the operations' own time. by_shape: one row per operation
    and input shapes (which convolution is which layer), with the shapes."""
    activities = [ProfilerActivity.CPU]
    on_device = device.type == "cuda"
    if on_device:
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities, record_shapes=by_shape) as prof:
        for _ in range(steps):
            run()
    if trace is not None:
        prof.export_chrome_trace(str(trace))
    averages = prof.key_averages(group_by_input_shape=by_shape)
    events = [(e, _self_time(e, on_device)) for e in averages]
    total = sum(t for _, t in events) or 1.0
    rows = [
        {
            "op": e.key,
            "calls_per_step": e.count / steps,
            "ms_per_step": t / 1000 / steps,
            "share": t / total,
            **({"shapes": str(e.input_shapes)} if by_shape else {}),
        }
        for e, t in events
        if t > 0
    ]
    return sorted(rows, key=lambda r: -r["ms_per_step"])


def _profile_case(case: Case, setup: tuple, steps: int, trace, by_shape: bool) -> list[dict]:
    """profile_step of one case, prepared and warmed up as `bench model` does, in a worker
    process."""
    (run,) = prepare_cases([case], setup)
    return profile_step(run, steps, torch.device(setup[1]), trace, by_shape)


def bench_profile(
    models: tuple[str, ...] = MODELS,
    mode: str = "train",
    dtype: str = "bf16",
    batch: int = 128,
    steps: int = 5,
    warmup: int = 3,
    device: str = "cpu",
    channels_last: bool = False,
    compile: bool = False,
    fuse: bool = True,
    lrn_backend: str = "auto",
    tower_conv: str = "auto",
    conv1_grad: str = "auto",
    bf16_copies: bool = True,
    reference_optimizer: str = "torch_sgd",
    top: int = 15,
    trace_dir: str | None = None,
    by_shape: bool = False,
) -> dict:
    if mode not in MODES:
        raise UserError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    dev = check_cases(models, (dtype,), device)
    options = {
        "channels_last": tuple(models) if channels_last else (),
        "compile": tuple(models) if compile else (),
        "fuse": fuse,
        "lrn_backend": lrn_backend,
        "tower_conv": tower_conv,
        "conv1_grad": conv1_grad,
        "bf16_copies": bf16_copies,
        "reference_optimizer": reference_optimizer,
    }
    result = {
        "machine": (host := machine()),
        "device": device_name(dev, host["cpu"]),
        "settings": {
            "mode": mode,
            "dtype": dtype,
            "batch": batch,
            "steps": steps,
            "warmup": warmup,
            **options,
            "threads": torch.get_num_threads(),
            "by_shape": by_shape,
            "time": "device (kernels)" if dev.type == "cuda" else "CPU, each op's own",
        },
        "profiles": {},
    }
    if trace_dir:
        Path(trace_dir).mkdir(parents=True, exist_ok=True)
    spawn = multiprocessing.get_context("spawn")
    setup = (batch, str(dev), options, warmup, "keep", torch.get_num_threads())
    for name in models:
        trace = Path(trace_dir) / f"{name}-{mode}-{dtype}.json" if trace_dir else None
        # each network in a fresh process, as `bench model` measures it: in a shared one,
        # the other network's freed blocks can leave this one faulting in new memory
        with ProcessPoolExecutor(1, mp_context=spawn) as pool:
            case = Case(name, mode, dtype)
            rows = pool.submit(_profile_case, case, setup, steps, trace, by_shape).result()
        result["profiles"][name] = {
            "ms_per_step": sum(r["ms_per_step"] for r in rows),
            "ops": rows[:top],
        }
    result["table"] = table(result)
    return result


def table(result: dict) -> str:
    s = result["settings"]
    lines = [
        f"alexnet bench profile on {result['device']}, torch {result['machine']['torch']}: "
        f"{s['mode']} {s['dtype']}, batch {s['batch']}, {s['steps']} steps after "
        f"{s['warmup']}; time: {s['time']}"
    ]
    for name, p in result["profiles"].items():
        lines += [
            "",
            f"{name}: {p['ms_per_step']:.1f} ms per step in all",
            f"  {'operation':58} {'calls':>6} {'ms/step':>9} {'share':>6}",
        ]
        for r in p["ops"]:
            lines.append(
                f"  {r['op'][:58]:58} {r['calls_per_step']:6.0f} {r['ms_per_step']:9.2f} "
                f"{r['share']:6.1%}"
            )
            if "shapes" in r:
                lines.append(f"    {r['shapes'][:96]}")
    return "\n".join(lines)
