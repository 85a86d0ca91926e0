"""Inference engines beside the package: images/s of the same network with the same weights,
as `alexnet export --format onnx` writes it, run by ONNX Runtime and OpenVINO
(alexnet.export.runtimes), at batch 1 (one photo at a time, as a server sees it) and at
larger batches, in fp32 and, where the engine runs it, bf16. Round-robin like `bench
model`, in this process, each engine given as many threads as torch: one timing of each
engine per round, the package's in the same rounds at the same precision, run as predict
and serve run it (alexnet.core.runtime.InferenceNetwork)."""

from __future__ import annotations

import contextlib
import statistics
import time

import torch

from alexnet.core.runtime import InferenceNetwork
from alexnet.export.onnx import example_input
from alexnet.export.runtimes import PRECISIONS, exported
from alexnet.models import checkpoint as ckpt
from alexnet.models.registry import parse_spec
from alexnet.models.weights import untrained_checkpoint


def seeded_checkpoint(spec: str) -> dict:
    """The network `spec` names with seeded weights and the paper's input."""
    name, options = parse_spec(spec)
    # inputs as the paper's: 0-255 minus the mean, no scale
    return untrained_checkpoint(name, **{"init": "paper", "scale": None, **options})


def bench_runtimes(
    models: tuple[str, ...], runtimes=("onnxruntime",), dtypes=("fp32",), batches=(1, 128),
    repeats: int = 5, warmup: int = 2,
) -> list[dict]:  # fmt: skip
    """A row per (model, dtype, batch): the package's images/s and each runtime's that runs
    the dtype, with its ratio to the package's."""
    threads = torch.get_num_threads()
    cases = []  # (spec, dtype, batch, steps, {name: timer})
    with contextlib.ExitStack() as stack:
        for spec in models:
            checkpoint = seeded_checkpoint(spec)
            model = ckpt.load_model(checkpoint)
            for dtype in dtypes:
                # the package as predict and serve run it
                network = InferenceNetwork(model, torch.device("cpu"), dtype)
                engines = {
                    r: stack.enter_context(exported(checkpoint, r, dtype, threads))
                    for r in runtimes
                    if dtype in PRECISIONS[r]
                }
                for batch in batches:
                    x = example_input(checkpoint, batch)
                    steps = max(1, 32 // batch)  # batch 1: 32 images a timing
                    ours = lambda n=network, x=x: _infer(n, x)  # noqa: E731
                    timers = {"package": _timer(ours, steps)}
                    for name, engine in engines.items():
                        timers[name] = _timer(lambda e=engine, x=x: e(x), steps)
                    cases.append((spec, dtype, batch, steps, timers))
        timings = [{name: [] for name in timers} for *_, timers in cases]
        for _ in range(warmup):
            for *_, timers in cases:
                for timed in timers.values():
                    timed()
        for _ in range(repeats):  # one of each per round
            for i, (*_, timers) in enumerate(cases):
                for name, timed in timers.items():
                    timings[i][name].append(timed())
    results = []
    for (spec, dtype, batch, steps, _), times in zip(cases, timings, strict=True):
        rates = {name: [batch * steps / t for t in ts] for name, ts in times.items()}
        ours = statistics.median(rates["package"])
        row = {"model": spec, "dtype": dtype, "batch": batch, "threads": threads}
        for name, values in rates.items():
            row[f"{name}_images_per_s"] = _spread(values)
            if name != "package":
                row[f"{name}_vs_package"] = statistics.median(values) / ours
        results.append(row)
    return results


def _infer(network, x) -> None:
    with torch.inference_mode():
        network(x)


def _timer(step, steps: int):
    def timed() -> float:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        return time.perf_counter() - start

    return timed


def _spread(rates: list[float]) -> dict:
    return {"median": statistics.median(rates), "min": min(rates), "max": max(rates)}


def table(results: list[dict], runtimes) -> str:
    lines = [
        "",
        f"inference, {results[0]['threads']} thread(s): the package against "
        f"{' and '.join(runtimes)} (alexnet export --format onnx); images/s, runtime/package",
        f"{'model':14} {'dtype':5} {'batch':>5} {'package':>9}"
        + "".join(f" {name:>12} {'ratio':>6}" for name in runtimes),
    ]
    for r in results:
        line = (f"{r['model']:14} {r['dtype']:5} {r['batch']:5d} "
                f"{r['package_images_per_s']['median']:9,.1f}")  # fmt: skip
        for name in runtimes:
            if f"{name}_images_per_s" in r:
                line += (f" {r[f'{name}_images_per_s']['median']:12,.1f} "
                         f"{r[f'{name}_vs_package']:5.2f}x")  # fmt: skip
            else:
                line += f" {'-':>12} {'':>6}"
        lines.append(line)
    return "\n".join(lines)
