"""ONNX Runtime beside the package: inference images/s of the same network with the same
weights, as `alexnet export --format onnx` writes it, at batch 1 (one photo at a time, as a
server sees it) and at a large batch. Round-robin like `bench model`, in this process, with
ONNX Runtime given as many threads as torch."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch

from alexnet.export.onnx import example_input, export_onnx, session
from alexnet.models import checkpoint as ckpt
from alexnet.models.registry import parse_spec
from alexnet.models.weights import untrained_checkpoint


def _checkpoint(spec: str) -> dict:
    """The network `spec` names with seeded weights and the paper's input."""
    name, options = parse_spec(spec)
    # inputs as the paper's: 0-255 minus the mean, no scale
    return untrained_checkpoint(name, **{"init": "paper", "scale": None, **options})


def bench_onnxruntime(
    models: tuple[str, ...], batches=(1, 128), repeats: int = 5, warmup: int = 2
) -> list[dict]:
    threads = torch.get_num_threads()
    cases = []
    with tempfile.TemporaryDirectory() as folder:
        for spec in models:
            checkpoint = _checkpoint(spec)
            path = export_onnx(checkpoint, Path(folder) / "net.onnx")
            runtime = session(path, threads=threads)
            name = runtime.get_inputs()[0].name
            model = ckpt.load_model(checkpoint)
            for batch in batches:
                x = example_input(checkpoint, batch)
                feed = {name: x.numpy()}
                steps = max(1, 32 // batch)  # batch 1: 32 images a timing
                package = _timer(lambda m=model, x=x: _infer(m, x), steps)
                onnx = _timer(lambda r=runtime, f=feed: r.run(None, f), steps)
                cases.append((spec, batch, steps, package, onnx))
        timings = {i: ([], []) for i in range(len(cases))}
        for _ in range(warmup):
            for _, _, _, package, onnx in cases:
                package(), onnx()
        for _ in range(repeats):  # one of each per round
            for i, (_, _, _, package, onnx) in enumerate(cases):
                timings[i][0].append(package())
                timings[i][1].append(onnx())
    results = []
    for i, (spec, batch, steps, _, _) in enumerate(cases):
        rates = [[batch * steps / t for t in times] for times in timings[i]]
        ours, theirs = (statistics.median(r) for r in rates)
        results.append({
            "model": spec, "batch": batch, "threads": threads,
            "package_images_per_s": _spread(rates[0]),
            "onnxruntime_images_per_s": _spread(rates[1]),
            "onnxruntime_vs_package": theirs / ours,
        })  # fmt: skip
    return results


def _infer(model, x) -> None:
    with torch.no_grad():
        model(x)


def _timer(step, steps: int):
    def timed() -> float:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        return time.perf_counter() - start

    return timed


def _spread(rates: list[float]) -> dict:
    return {"median": statistics.median(rates), "min": min(rates), "max": max(rates)}


def table(results: list[dict]) -> str:
    lines = [
        "",
        f"inference, fp32, {results[0]['threads']} thread(s): the package against ONNX Runtime "
        "(alexnet export --format onnx)",
        f"{'model':14} {'batch':>5} {'package img/s':>14} {'onnxruntime img/s':>18} {'ratio':>6}",
    ]
    for r in results:
        lines.append(
            f"{r['model']:14} {r['batch']:5d} {r['package_images_per_s']['median']:14,.1f} "
            f"{r['onnxruntime_images_per_s']['median']:18,.1f} "
            f"{r['onnxruntime_vs_package']:5.2f}x"
        )
    return "\n".join(lines)
