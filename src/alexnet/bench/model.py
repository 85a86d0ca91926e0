"""`alexnet bench model`: the networks' speed against each other and against the machine.

Three kinds of number, all measured in one run on the machine it runs on:
- the limit: matrix-multiply throughput of this machine's torch, fp32 and bf16;
- images/s of training steps (forward, loss, backward, optimizer step) and of inference,
  for each network and precision, on the same random batch;
- each as a ratio to the reference network (torchvision's architecture in plain eager
  PyTorch) and as a fraction of the limit, counting the multiply-adds each step computes
  (`step_macs`: a training step's backward has each layer's weight gradient, and the input
  gradient of every layer but conv1, whose input, the image, needs none).

Measurements go round-robin (one of each configuration per round) so that a slow spell on
a shared machine touches all of them alike; the median and spread are over rounds.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from alexnet.bench.common import device_name, machine
from alexnet.core.errors import UserError
from alexnet.core.runtime import keep_freed_memory
from alexnet.models.registry import VARIANTS, create_model, parse_spec
from alexnet.models.summary import summarize
from alexnet.nn.conv import CeilConv2d, TowerConv2d
from alexnet.nn.lrn import LocalResponseNorm
from alexnet.train.config import OptimConfig
from alexnet.train.copies import WorkingCopies
from alexnet.train.optim import make_optimizer

MODELS = ("alexnet2012", "alexnet_owt")
REFERENCE = "alexnet_owt"
DTYPES = ("fp32", "bf16")
MODES = ("train", "infer")
REFERENCE_OPTIMIZERS = ("torch_sgd", "paper")


@dataclass
class Case:
    model: str
    mode: str
    dtype: str


# The limit's matrix size per device type: large enough to reach full speed.
LIMIT_SIZE = {"cpu": 2048, "cuda": 8192}


def matmul_limit(dtype: str, device: torch.device, repeats: int, n: int = 0) -> dict:
    """FLOP/s of n x n x n matrix products (2 n^3 flops each), the most this torch gets.

    Measured two ways, and the faster counts: torch.mm (BLAS), and the same product as a
    1x1 convolution (on CPU, oneDNN, the library that runs the networks' convolutions;
    torch.mm on AMD CPUs may take a slower BLAS path)."""
    n = n or LIMIT_SIZE.get(device.type, LIMIT_SIZE["cpu"])
    kind = torch.bfloat16 if dtype == "bf16" else torch.float32
    a = torch.randn(n, n, device=device, dtype=kind)
    b = torch.randn(n, n, device=device, dtype=kind)
    x = b.reshape(1, n, n // 64, 64)
    w = a.reshape(n, n, 1, 1)
    ways = {"mm": lambda: a @ b, "conv1x1": lambda: F.conv2d(x, w)}
    result = {"n": n}
    for name, product in ways.items():
        rates = []
        for i in range(repeats + 1):
            _sync(device)
            start = time.perf_counter()
            for _ in range(3):
                product()
            _sync(device)
            if i:  # the first is a warm-up
                rates.append(2 * n**3 * 3 / (time.perf_counter() - start))
        result[name] = {"median": statistics.median(rates), "min": min(rates), "max": max(rates)}
    best = max(ways, key=lambda name: result[name]["median"])
    result.update(result[best], way=best)
    return result


def page_faults() -> int:
    """Minor page faults of this process so far (0 where `resource` is missing: Windows)."""
    try:
        import resource
    except ImportError:
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _runner(case: Case, batch: int, device: torch.device, options: dict):
    """A function that runs one step of `case`, with its model and inputs made once."""
    torch.manual_seed(0)
    name, model_options = parse_spec(case.model)
    size = VARIANTS[name].input_size
    model = create_model(name, **model_options).to(device)
    model.fuse = options["fuse"]
    for module in model.modules():
        if isinstance(module, LocalResponseNorm):
            module.backend = options["lrn_backend"]
        if isinstance(module, TowerConv2d):
            module.mode = options.get("tower_conv", "auto")
        if isinstance(module, CeilConv2d):
            module.weight_grad = options.get("conv1_grad", "auto")
    channels_last, compile = (case.model in options[key] for key in ("channels_last", "compile"))
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, 1000, (batch,), device=device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    net = torch.compile(model) if compile else model
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=case.dtype == "bf16")
    if case.mode == "infer":
        model.eval()

        def step():
            with torch.inference_mode(), autocast:
                net(x)
            _sync(device)

        return step
    model.train()
    if case.model == REFERENCE and options.get("reference_optimizer", "torch_sgd") == "torch_sgd":
        # torchvision's network trained as its users train it: torch's momentum SGD, its
        # defaults (on a CPU, a loop over the tensors), under autocast
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, weight_decay=5e-4)
    else:  # the paper's update rule, as `alexnet train` runs it
        optimizer = make_optimizer(model, OptimConfig(lr=1e-4, momentum=0.9, weight_decay=5e-4))
    forward = net
    copied = case.model != REFERENCE and options.get("bf16_copies", True) and not compile
    if case.dtype == "bf16" and device.type == "cpu" and copied:
        forward = WorkingCopies(model, optimizer)  # as `alexnet train` runs bf16 on a CPU

    def step():
        with autocast:
            loss = F.cross_entropy(forward(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        _sync(device)

    return step


@dataclass(frozen=True)
class ModelBench:
    """What `alexnet bench model` measures, and how (see `bench_model`)."""

    models: tuple[str, ...] = MODELS  # specs: a name and options, "alexnet2012:lrn=False"
    dtypes: tuple[str, ...] = DTYPES
    modes: tuple[str, ...] = MODES  # train (forward, backward, update) and infer
    batch: int = 128
    repeats: int = 5  # rounds, each model in turn; the median is reported
    steps: int = 1  # per round
    warmup: int = 2  # steps before the first round
    device: str = "cpu"
    channels_last: bool | tuple[str, ...] = False  # every model, or these
    compile: bool | tuple[str, ...] = False  # every model, or these
    fuse: bool = True  # the fused ReLU-LRN-pool
    lrn_backend: str = "auto"
    tower_conv: str = "auto"
    conv1_grad: str = "auto"
    bf16_copies: bool = True  # bf16 on a CPU: the weights' bf16 working copies
    # the reference's update: torch_sgd (torch.optim.SGD, as torchvision's users train) or
    # paper (the package's PaperSGD, the same update work for both networks)
    reference_optimizer: str = "torch_sgd"
    malloc: str = "keep"  # keep freed memory (alexnet.core.runtime.keep_freed_memory)
    in_process: bool = False  # every case in this process, not one process each


def bench_model(bench: ModelBench, progress=None) -> dict:
    """Images/s of every (model, mode, dtype), median over `repeats` rounds of `steps` steps.

    `fuse`, `lrn_backend`, `tower_conv`, `conv1_grad`, `bf16_copies` and `malloc` switch off
    this package's speed-ups one at a time (the fused ReLU-LRN-pool, the LRN kernels, the
    per-device choice of grouped or per-tower convolutions, of conv1's weight gradient, the
    bf16 working copies of `alexnet.train.copies`, `alexnet.core.runtime.keep_freed_memory`),
    to measure what each buys;
    the defaults are what `alexnet train` runs. `channels_last` and `compile`: True for every
    model, or the names of the models to run in channels_last memory or torch.compile.

    Each model and dtype runs in a process of its own, training and inference, as `alexnet
    train` runs one network in one precision; the rounds still alternate between them, and
    only one process runs at a time. In one process (`in_process`) the configurations'
    allocations interleave, and the heap the allocator is left with after one step need not
    fit the next: in such runs, steps of one network or the other were seen to fault in
    75-290 MB of fresh memory, which changed their speed by several percent."""
    models, dtypes, modes, device = bench.models, bench.dtypes, bench.modes, bench.device
    batch, repeats, steps, warmup = bench.batch, bench.repeats, bench.steps, bench.warmup
    malloc, in_process = bench.malloc, bench.in_process
    dev = check_cases(models, dtypes, device)
    if batch < 1 or repeats < 1 or steps < 1:
        raise UserError(f"batch, repeats and steps must be 1 or more: {batch}, {repeats}, {steps}")
    if bench.reference_optimizer not in REFERENCE_OPTIMIZERS:
        raise UserError(
            f"reference_optimizer must be one of {', '.join(REFERENCE_OPTIMIZERS)}, "
            f"got {bench.reference_optimizer!r}"
        )
    if malloc not in ("keep", "system"):
        raise UserError(f"malloc must be keep or system, got {malloc!r}")
    kept = keep_freed_memory() if malloc == "keep" else False
    channels_last, compile = (
        tuple(models) if chosen is True else tuple(chosen or ())
        for chosen in (bench.channels_last, bench.compile)
    )
    options = {
        "channels_last": channels_last,
        "compile": compile,
        "fuse": bench.fuse,
        "lrn_backend": bench.lrn_backend,
        "tower_conv": bench.tower_conv,
        "conv1_grad": bench.conv1_grad,
        "bf16_copies": bench.bf16_copies,
        "reference_optimizer": bench.reference_optimizer,
    }
    cases = [Case(m, mode, d) for m in models for mode in modes for d in dtypes]
    # forward, per image; made first, so that a bad option fails before the measurements
    macs_of = {spec: step_macs(spec) for spec in models}
    limit = {d: matmul_limit(d, dev, repeats) for d in dtypes}
    setup = (batch, str(dev), options, warmup, malloc, torch.get_num_threads())
    with _Workers(cases, setup, in_process) as workers:
        seconds: list[list[float]] = [[] for _ in cases]
        faults: list[list[int]] = [[] for _ in cases]  # minor page faults: memory not reused
        for r in range(repeats):
            for i in range(len(cases)):
                took, faulted = workers.run(i, steps)
                seconds[i].append(took)
                faults[i].append(faulted)
                if progress:
                    progress(r, i)
    result = {
        "machine": (host := machine()),
        "device": device_name(dev, host["cpu"]),
        "settings": {
            "batch": batch,
            "repeats": repeats,
            "steps": steps,
            "warmup": warmup,
            **options,
            "malloc_keeps_freed_memory": kept,
            "threads": torch.get_num_threads(),
            "processes": "this one" if in_process else "one per model and dtype",
        },
        "matmul_flops_per_s": limit,
        "counting": COUNTING,
        "results": [],
    }
    for case, times, faulted in zip(cases, seconds, faults, strict=True):
        rates = [batch * steps / t for t in times]
        macs = macs_of[case.model]
        median = statistics.median(rates)
        result["results"].append(
            {
                "model": case.model,
                "mode": case.mode,
                "dtype": case.dtype,
                "images_per_s": {"median": median, "min": min(rates), "max": max(rates)},
                "forward_macs_per_image": macs["infer"],
                "step_macs_per_image": macs[case.mode],
                "page_faults_per_step": statistics.median(faulted) / steps,
                "fraction_of_limit": median * 2 * macs[case.mode] / limit[case.dtype]["median"],
            }
        )
    for entry in result["results"]:
        ref = _find(result["results"], REFERENCE, entry["mode"], entry["dtype"])
        entry["ratio_to_reference"] = (
            entry["images_per_s"]["median"] / ref["images_per_s"]["median"] if ref else None
        )
    result["table"] = table(result)
    return result


def prepare_cases(cases: list[Case], setup: tuple) -> list:
    """The step functions of `cases`, warmed up, in this process."""
    batch, device, options, warmup, malloc, threads = setup
    if malloc == "keep":
        keep_freed_memory()
    torch.set_num_threads(threads)
    runners = [_runner(c, batch, torch.device(device), options) for c in cases]
    # warm-up: first-call allocation, kernel compilation, autotuning, and the optimizer's
    # momentum buffers, which the first step creates and the second step first touches
    for run in runners:
        for _ in range(warmup):
            run()
    return runners


def _timed(run, steps: int) -> tuple[float, int]:
    """Seconds and minor page faults of `steps` calls of `run`."""
    faulted = page_faults()
    start = time.perf_counter()
    for _ in range(steps):
        run()
    return time.perf_counter() - start, page_faults() - faulted


def _serve(conn, cases: list[Case], setup: tuple) -> None:  # pragma: no cover (a child)
    """A worker process: prepare `cases`, then time (case, steps) requests until None."""
    try:
        runners = prepare_cases(cases, setup)
        conn.send("ready")
        while (request := conn.recv()) is not None:
            index, steps = request
            conn.send(_timed(runners[index], steps))
    except Exception:
        import traceback

        conn.send(("error", traceback.format_exc()))


class _Workers:
    """Runs cases' steps on request: each (model, dtype)'s training and inference in a
    process of its own (spawned, so each starts with a fresh heap), as `alexnet train`
    runs one network in one precision and validates it; or all in this process."""

    def __init__(self, cases: list[Case], setup: tuple, in_process: bool) -> None:
        self.cases, self.setup, self.in_process = cases, setup, in_process
        self.runners: list = []
        self.procs: dict[tuple[str, str], tuple] = {}

    def __enter__(self) -> _Workers:
        if self.in_process:
            self.runners = prepare_cases(self.cases, self.setup)
            return self
        import multiprocessing

        spawn = multiprocessing.get_context("spawn")
        for key in dict.fromkeys((c.model, c.dtype) for c in self.cases):
            mine = [c for c in self.cases if (c.model, c.dtype) == key]
            conn, child = spawn.Pipe()
            proc = spawn.Process(target=_serve, args=(child, mine, self.setup), daemon=True)
            proc.start()
            child.close()
            self.procs[key] = (proc, conn, mine)
        for _, conn, _ in self.procs.values():
            self._answer(conn)
        return self

    def run(self, index: int, steps: int) -> tuple[float, int]:
        if self.in_process:
            return _timed(self.runners[index], steps)
        case = self.cases[index]
        _, conn, mine = self.procs[case.model, case.dtype]
        conn.send((mine.index(case), steps))
        return self._answer(conn)

    @staticmethod
    def _answer(conn):
        try:
            answer = conn.recv()
        except EOFError:
            raise RuntimeError("a benchmark process died (out of memory?)") from None
        if isinstance(answer, tuple) and answer[0] == "error":
            raise RuntimeError(f"a benchmark process failed:\n{answer[1]}")
        return answer

    def __exit__(self, *exc) -> None:
        for proc, conn, _ in self.procs.values():
            with contextlib.suppress(OSError):  # a worker that died has closed its end
                conn.send(None)
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()


def auto_dtypes(device: str) -> tuple[tuple[str, ...], str | None]:
    """The dtypes `--dtypes auto` measures: fp32, and bf16 where `precision: auto` would
    train in it; and why bf16 was left out, if it was. Without bf16 instructions bf16 runs
    many times slower than fp32: on such a CPU the bf16 limit alone ran past 21 minutes."""
    from alexnet.core.runtime import auto_precision

    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        return DTYPES, None  # check_cases says what is wrong
    chosen, why = auto_precision(dev)
    return (DTYPES, None) if chosen == "bf16" else (("fp32",), why)


def check_cases(models: tuple[str, ...], dtypes: tuple[str, ...], device: str) -> torch.device:
    """The device to run on, after checking the names a user gave (models: names of
    `alexnet.models.registry` with any options, "alexnet2012:lrn=False"; see `parse_spec`)."""
    for spec in models:
        parse_spec(spec)
    for dtype in dtypes:
        if dtype not in DTYPES:
            raise UserError(f"unknown dtype {dtype!r}; choose from {', '.join(DTYPES)}")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda, but this torch sees no CUDA device")
    return dev


COUNTING = (
    "2 flops per multiply-add; inference: the forward pass; training: the forward pass, "
    "every layer's weight gradient, and the input gradient of every layer but the first "
    "(the image needs none)"
)


def step_macs(spec: str) -> dict[str, int]:
    """Multiply-adds per image of an inference step and of a training step of the network
    `spec` names. Each layer's backward costs its forward's multiply-adds once for the
    weight gradient and once for the input gradient; the first layer's input gradient is
    not computed (the image does not require one), so training is 3x forward - conv1."""
    name, options = parse_spec(spec)
    rows = [r for r in summarize(name, **options).rows if r.macs]
    forward = sum(r.macs for r in rows)
    return {"infer": forward, "train": 3 * forward - rows[0].macs}


def recount(result: dict) -> dict:
    """A recorded `bench model` result with its fractions of the limit counted by
    `step_macs` (the measured rates and limits stay as they were)."""
    for entry in result["results"]:
        macs = step_macs(entry["model"])[entry["mode"]]
        limit = result["matmul_flops_per_s"][entry["dtype"]]["median"]
        entry["step_macs_per_image"] = macs
        entry["fraction_of_limit"] = entry["images_per_s"]["median"] * 2 * macs / limit
    result["counting"] = COUNTING
    result["table"] = table(result)
    return result


def _find(results: list[dict], model: str, mode: str, dtype: str) -> dict | None:
    for entry in results:
        if (entry["model"], entry["mode"], entry["dtype"]) == (model, mode, dtype):
            return entry
    return None


def _names(models: list[str] | bool) -> str:
    """The networks an option applies to (records before 0.1 hold true for all of them)."""
    return "all" if models is True else " ".join(models)


def table(result: dict) -> str:
    s = result["settings"]
    lines = [
        f"alexnet bench model on {result['device']}, torch {result['machine']['torch']}, "
        f"batch {s['batch']}, {s['repeats']} rounds of {s['steps']} step(s)"
        + (f", channels_last: {_names(s['channels_last'])}" if s["channels_last"] else "")
        + (f", torch.compile: {_names(s['compile'])}" if s["compile"] else "")
        + ("" if s["fuse"] else ", unfused")
        + ("" if s["lrn_backend"] == "auto" else f", LRN backend {s['lrn_backend']}")
        + ("" if s.get("tower_conv", "auto") == "auto" else f", tower convs {s['tower_conv']}")
        + ("" if s.get("conv1_grad", "auto") == "auto" else f", conv1 grad {s['conv1_grad']}")
        + ("" if s.get("bf16_copies", True) else ", no bf16 working copies")
        + ("" if s["malloc_keeps_freed_memory"] else ", glibc malloc defaults"),
        f"{REFERENCE} trains with "
        + ("torch.optim.SGD" if s.get("reference_optimizer") == "torch_sgd" else "PaperSGD")
        + " under autocast (bf16), the other networks as `alexnet train` runs them",
        "",
    ]
    for dtype, limit in result["matmul_flops_per_s"].items():
        lines.append(
            f"limit: {dtype} {limit['n']}x{limit['n']} matrix product: "
            f"{limit['median'] / 1e9:,.0f} GFLOP/s ({limit['way']}; torch.mm "
            f"{limit['mm']['median'] / 1e9:,.0f}, as a 1x1 convolution "
            f"{limit['conv1x1']['median'] / 1e9:,.0f})"
        )
    width = max([14, *(len(e["model"]) for e in result["results"])])
    lines += [
        "",
        f"{'model':{width}} {'mode':6} {'dtype':5} {'images/s':>9} {'min':>8} {'max':>8} "
        f"{'vs ' + REFERENCE:>15} {'of limit':>9} {'faults/step':>12}",
    ]
    for e in result["results"]:
        rate = e["images_per_s"]
        ratio = e["ratio_to_reference"]
        lines.append(
            f"{e['model']:{width}} {e['mode']:6} {e['dtype']:5} {rate['median']:9,.1f} "
            f"{rate['min']:8,.1f} {rate['max']:8,.1f} "
            f"{(f'{ratio:.2f}x' if ratio else '-'):>15} {e['fraction_of_limit']:9.0%} "
            f"{e['page_faults_per_step']:12,.0f}"
        )
    lines.append("")
    lines.append(
        "of limit: images/s x 2 x multiply-adds over the same dtype's limit; training counts\n"
        "the forward pass, each layer's weight gradient, and the input gradient of every layer\n"
        "but conv1 (3x forward - conv1). Above 100% means fewer multiplies than\n"
        "counted: oneDNN and cuDNN run 3x3 convolutions with Winograd's algorithm where it\n"
        "pays.\n"
        "faults/step: minor page faults (median over rounds), memory the step could not reuse."
    )
    return "\n".join(lines)
