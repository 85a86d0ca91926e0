"""Numbers that stay in the docs' prose, outside the generated tables, checked against the
records they come from: each check computes the number from its record (independently of
the tables' code) and finds it, formatted as the page writes it, on its page."""

from __future__ import annotations

import json
import math
import statistics

import pytest

from fixtures import ROOT


def record(path: str):
    text = (ROOT / path).read_text()
    if path.endswith(".jsonl"):
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return json.loads(text)


def bench(path: str, model: str, mode: str, dtype: str) -> dict:
    return next(r for r in record(path)["results"]
                if (r["model"], r["mode"], r["dtype"]) == (model, mode, dtype))  # fmt: skip


def fm_holdout_missed() -> str:
    top1 = record("docs/runs/fashion-mnist-holdout/test-val-ten-crop/eval.json")["top1_error"]
    return f"missed by {100 * (0.93 - (1 - top1)):.2f} points"


def fm_standard_error() -> str:
    return f"is {100 * math.sqrt(0.93 * 0.07 / 10_000):.2f} points"


def demo_steps() -> str:
    last = record("docs/runs/demo/metrics.jsonl")[-1]
    return (f"after {last['step']} steps of 128 images ({128 * last['step']:,} images, about half "
            f"an\nepoch, {last['images_per_s']:.0f} images/s in bf16)")  # fmt: skip


def tiny_budget() -> str:
    lines = record("docs/runs/tiny-imagenet-60min/metrics.jsonl")
    best = min(lines, key=lambda m: m["val_top1_error"])
    top1, top5 = best["val_top1_error"], best["val_top5_error"]
    return (f"**{100 * (1 - top1):.1f}% top-1 accuracy ({100 * top1:.1f}% error), "
            f"{100 * (1 - top5):.1f}% top-5**")  # fmt: skip


def large_batch_gap() -> str:
    runs = {
        r["run"]: r["test_top1_error"] for r in record("docs/runs/large-batch/summary.json")["runs"]
    }
    big = statistics.fmean([runs["b2048-linear-s0"], runs["b2048-linear-s1"]])
    small = statistics.fmean([runs["b128-s0"], runs["b128-s1"]])
    return f"({100 * big:.1f}% against {100 * small:.1f}%, two seeds each)"


def lars_rates() -> str:
    best = {r["run"]: r["best_held_out_top1_error"]
            for r in record("docs/runs/large-batch/summary.json")["runs"]}  # fmt: skip
    rates = {rate: 100 * best[f"b2048-lars-lr{rate}-s0"] for rate in ("0.25", "1", "4")}
    return " ".join(f"{rate}: {error:.1f}%," for rate, error in rates.items()).rstrip(",")


def share_of_limit() -> str:
    train = [bench("docs/bench/bench-model.json", "alexnet2012", "train", d)["fraction_of_limit"]
             for d in ("fp32", "bf16")]  # fmt: skip
    return f"Training uses {100 * train[0]:.0f}% (fp32) and {100 * train[1]:.0f}% (bf16)"


def model_targets() -> list[str]:
    """benchmarks-model.md's limits and targets paragraph, from the run it names."""
    run = record("docs/bench/bench-model.json")
    limit = run["matmul_flops_per_s"]
    e = {(mode, d): bench("docs/bench/bench-model.json", "alexnet2012", mode, d)
         for mode in ("train", "infer") for d in ("fp32", "bf16")}  # fmt: skip
    ratio = lambda mode, d: e[mode, d]["ratio_to_reference"]  # noqa: E731
    share = lambda d: 100 * e["train", d]["fraction_of_limit"]  # noqa: E731
    return [
        f"fp32 {limit['fp32']['median'] / 1e9:.0f} GFLOP/s (1x1 convolution; `torch.mm` "
        f"{limit['fp32']['mm']['median'] / 1e9:.0f}), bf16 {limit['bf16']['median'] / 1e9:.0f}",
        f"met, {ratio('infer', 'fp32'):.2f}x in fp32 and {ratio('infer', 'bf16'):.2f}x in bf16",
        f"bf16 met ({ratio('train', 'bf16'):.2f}x); fp32 at {ratio('train', 'fp32'):.2f}x",
        f"met in fp32 ({share('fp32'):.1f}%) and in bf16 ({share('bf16'):.1f}%)",
    ]


def slow_host() -> str:
    slow = record("docs/bench/bench-model-cpu-slow-host.json")
    fast = record("docs/bench/bench-model.json")
    run = bench("docs/bench/bench-model-cpu-slow-host.json", "alexnet2012", "train", "bf16")
    slow_limit = slow["matmul_flops_per_s"]["bf16"]["median"] / 1e9
    fast_limit = fast["matmul_flops_per_s"]["bf16"]["median"] / 1e9
    return (f"ran at {slow_limit:.0f} GFLOP/s against {fast_limit:.0f} on the host above, and "
            f"bf16 training at {run['images_per_s']['median']:.0f} images/s, still "
            f"{100 * run['fraction_of_limit']:.0f}% of that host's limit")  # fmt: skip


def compiled_h100() -> str:
    ours = bench("docs/bench/bench-model-h100-compile.json", "alexnet2012", "train", "bf16")
    owt = bench("docs/bench/bench-model-h100-compile.json", "alexnet_owt", "train", "bf16")
    rate = ours["images_per_s"]["median"]
    return (
        f"{rate:,.0f} images/s ({rate / owt['images_per_s']['median']:.2f}x a compiled reference)"
    )


def overload_span() -> str:
    phases = [p for path in ("docs/bench/bench-serve-8.json", "docs/bench/bench-serve-16.json")
              for p in record(path)["overload"]["phases"]]  # fmt: skip

    def span(name):
        values = [p["vs_capacity"] for p in phases if p["phase"].startswith(name)]
        return f"{min(values):.2f}-{max(values):.2f}"

    return f"{span('open loop 3x')} at 3x,\n{span('open loop 10x')} at 10x, {span('retry storm')}"


def overload_p99_span() -> str:
    ratios = [p["admitted_p99_vs_unloaded"]
              for path in ("docs/bench/bench-serve-8.json", "docs/bench/bench-serve-16.json")
              for p in record(path)["overload"]["phases"]]  # fmt: skip
    return f"p99 is\n{min(ratios):.2f}-{max(ratios):.2f}x the unloaded one"


def overload_view_times() -> str:
    """A view's forward pass at 8 clients: the closed-loop rounds' median, then each phase."""
    serve = record("docs/bench/bench-serve-8.json")
    rounds = sorted(r["batches"]["forward_ms"] / r["batches"]["views_per_batch"]
                    for r in serve["load"]["rounds"])  # fmt: skip
    each = [p["batches"]["forward_ms"] / p["batches"]["views_per_batch"]
            for p in serve["overload"]["phases"]]  # fmt: skip
    paths = ("docs/bench/bench-serve-8.json", "docs/bench/bench-serve-16.json")
    offered = max(p["offered_vs_capacity"] * record(path)["overload"]["capacity_per_s"]
                  for path in paths for p in record(path)["overload"]["phases"]
                  if p["offered_vs_capacity"])  # fmt: skip
    return [
        f"refusing up to {offered:,.0f} requests a second",
        f"a view in {rounds[len(rounds) // 2]:.1f} ms under the closed-loop load at 8 clients, "
        f"and in {each[0]:.1f} ms at 3x, {each[1]:.1f} ms at 10x and {each[2]:.1f} ms in the storm",
    ]


def openvino_ratios() -> list[str]:
    """OpenVINO's images/s over the package's on alexnet2012, by dtype and batch."""
    rows = record("docs/bench/bench-runtimes-amd-avx512bf16.json")["runtimes"]
    ratio = {(r["dtype"], r["batch"]): r["openvino_vs_package"] for r in rows
             if r["model"] == "alexnet2012"}  # fmt: skip
    return [
        f"at batch 8 and 128 in fp32 (OpenVINO at {ratio['fp32', 8]:.2f}x and "
        f"{ratio['fp32', 128]:.2f}x) and at batch 128 in\nbf16 ({ratio['bf16', 128]:.2f}x)",
        f"one photo at a time ({ratio['fp32', 1]:.2f}x in fp32, {ratio['bf16', 1]:.2f}x in "
        f"bf16) and at\nbatch 8 in bf16 ({ratio['bf16', 8]:.2f}x)",
    ]


def refusal_cost() -> str:
    ms = [record(p)["overload"]["refusal"]["server_cpu_ms_per_refusal"]
          for p in ("docs/bench/bench-serve-8.json", "docs/bench/bench-serve-16.json")]  # fmt: skip
    return f"costs {ms[0]} ms of the server's CPU ({ms[1]} ms in the second run"


def transfer_claims() -> str:
    rows = {(r["method"], r["per_class"], r["study"]): r["top1_error"]["mean"]
            for r in record("docs/runs/transfer-compare/compare.json")["rows"]}  # fmt: skip
    scratch, fc8 = rows[("scratch", 450, None)], rows[("fc8", 450, "second")]
    return (f"from scratch ({100 * scratch:.2f}%, one seed) beats A's frozen features by "
            f"{100 * (fc8 - scratch):.0f} points (fc8: {100 * fc8:.2f}%)")  # fmt: skip


def first_pretraining_hours() -> str:
    last = record("docs/runs/tiny-a-first/metrics.jsonl")[-1]
    return f"The {last['epoch']} epochs took {last['elapsed_s'] / 3600:.1f} hours of training steps"


def malformed_answered() -> str:
    return f"The {record('docs/bench/serve-malformed.json')['statuses']['200']} answered are"


def serve_memory() -> str:
    memory = record("docs/bench/bench-serve-8.json")["load"]["memory"]
    return f"Memory: {memory['before']['rss_mib']:.0f} MiB resident after the warm-up"


def serve_peak_memory() -> str:
    memory = record("docs/bench/bench-serve-8.json")["load"]["memory"]
    return f"{memory['after']['peak_rss_mib']:,.0f} MiB at the peak"


def tiny_eigenvalues() -> str:
    values = record("docs/bench/tiny-imagenet-store.json")["eigenvalues"]
    return f"eigenvalues (0-255 scale): {values[0]:,.0f}, {values[1]:,.0f} and {values[2]:,.0f}"


def tiny_lighting_shifts() -> str:
    shift = record("docs/bench/tiny-imagenet-store.json")["lighting_shift_std"]
    return (f"is {shift['released']:.1f} levels for `released`, {shift['literal']:.1f} for "
            f"`literal` and {shift['fbresnet']:.1f} for `fbresnet`")  # fmt: skip


def paper_init_at_chance() -> str:
    error = record("docs/runs/init-paper-none/metrics.jsonl")[-1]["val_top1_error"]
    assert error >= 0.89, error  # ten classes: chance is 90% top-1 error
    return "The paper's start leaves the network at chance"


def torchvision_gap() -> str:
    result = record("docs/runs/ablate-torchvision-lr0.003/ablate.json")["variants"]
    ours, theirs = (v["val_top1_error_by_seed"] for v in result)
    gap = statistics.fmean(100 * (theirs[k] - ours[k]) for k in ours)
    assert all(theirs[k] > ours[k] for k in ours)  # "in both seeds"
    return f"{gap:.0f} points behind after 12 epochs, in both seeds"


def _compare() -> dict:
    return {(r["method"], r["per_class"], r["study"]): r
            for r in record("docs/runs/transfer-compare/compare.json")["rows"]}  # fmt: skip


def transfer_sources() -> list[str]:
    rows = _compare()
    second = 100 * rows[("probe", 450, "second")]["top1_error"]["mean"]
    third = 100 * rows[("probe", 450, "third")]["top1_error"]["mean"]
    return [f"differs by {second - third:.1f} points ({second:.2f}% on the second, "
            f"{third:.2f}% on the\nthird)"]  # fmt: skip


def transfer_plainly() -> list[str]:
    rows = _compare()

    def top1(method, n, study):
        return 100 * rows[(method, n, study)]["top1_error"]["mean"]

    return [
        f"({top1('fc8', 10, 'first'):.2f}% and {top1('fc8', 10, 'second'):.2f}% top-1 error "
        "from two pretrainings)",
        f"from scratch on B's 1,000 images ({top1('scratch', 10, None):.2f}%)",
        f"(every layer fine-tuned: {top1('all', 50, 'second'):.2f}% against "
        f"{top1('scratch', 50, None):.2f}%)",
        f"fine-tuning every layer now beats fc8 alone by "
        f"{top1('fc8', 50, 'second') - top1('all', 50, 'second'):.1f} points",
    ]


def pretrainings_apart() -> list[str]:
    second, third = (record(f"docs/runs/{r}/test-val-ten-crop/eval.json")["top1_error"]
                     for r in ("tiny-a", "tiny-a3"))  # fmt: skip
    return [f"end {100 * abs(third - second):.2f} points apart, and the other way round "
            f"({100 * second:.2f}% and {100 * third:.2f}% with ten crops)"]  # fmt: skip


def large_batch_rules() -> list[str]:
    runs = {
        r["run"]: r["test_top1_error"] for r in record("docs/runs/large-batch/summary.json")["runs"]
    }

    def mean(setting):
        return 100 * statistics.fmean([runs[f"{setting}-s0"], runs[f"{setting}-s1"]])

    linear = mean("b2048-linear")
    return [f"ends {mean('b2048-warmup') - linear:.1f} points worse than the linear rule alone",
            f"at its best rate {mean('b2048-lars-lr1') - linear:.1f} points worse"]  # fmt: skip


def towers_verdict() -> list[str]:
    two, one = record("docs/runs/ablate-towers/ablate.json")["variants"]
    seeds = [100 * (one["val_top1_error_by_seed"][k] - two["val_top1_error_by_seed"][k])
             for k in two["val_top1_error_by_seed"]]  # fmt: skip
    top5 = 100 * (one["val_top5_error"]["mean"] - two["val_top5_error"]["mean"])
    train = 100 * (one["train_top1_error"]["mean"] - two["train_top1_error"]["mean"])
    return [f"{statistics.fmean(seeds):.1f} +- {statistics.stdev(seeds):.1f} points worse in "
            f"top-1 (the paper: 1.7) and {top5:.1f} in top-5",
            f"(training error {train:.1f} points higher)"]  # fmt: skip


def h100_steps() -> list[str]:
    cells = [("train", "fp32"), ("train", "bf16"), ("infer", "fp32"), ("infer", "bf16")]

    def rates(path):
        return [bench(f"docs/bench/{path}", "alexnet2012", *c)["images_per_s"]["median"]
                for c in cells]  # fmt: skip

    before, triton = rates("bench-model-h100-before.json"), rates("bench-model-h100-grouped.json")
    both = rates("bench-model-h100.json")
    bought = [t / b for t, b in zip(triton, before, strict=True)]
    split = [100 * (x / t - 1) for x, t in zip(both, triton, strict=True)]
    low, high = min(split), max(split)
    return [f"The Triton LRN bought {min(bought):.1f}-{max(bought):.1f}x; splitting the towers "
            f"bought {low:.1f}-{high:.0f}% on top ({split[1]:.0f}% in bf16"]  # fmt: skip


CHECKS = {
    "docs/results-fashion-mnist.md": [fm_holdout_missed, fm_standard_error],
    "docs/results.md": [demo_steps, tiny_budget, paper_init_at_chance],
    "docs/data.md": [tiny_eigenvalues, tiny_lighting_shifts],
    "docs/reproduction-more.md": [towers_verdict],
    "docs/benchmarks-gpu.md": [h100_steps],
    "docs/results-torchvision.md": [torchvision_gap],
    "docs/results-large-batch.md": [large_batch_gap, lars_rates, large_batch_rules],
    "docs/benchmarks.md": [share_of_limit, slow_host, compiled_h100],
    "docs/benchmarks-runtimes.md": [openvino_ratios],
    "docs/benchmarks-model.md": [model_targets],
    "docs/serving-load.md": [
        overload_span,
        overload_p99_span,
        overload_view_times,
        refusal_cost,
        malformed_answered,
        serve_memory,
        serve_peak_memory,
    ],
    "docs/runs/tiny-a-first/README.md": [first_pretraining_hours],
    "docs/results-transfer.md": [
        transfer_claims,
        transfer_sources,
        transfer_plainly,
        pretrainings_apart,
    ],
}


@pytest.mark.parametrize("page, check", [(p, c) for p, cs in CHECKS.items() for c in cs],
                         ids=lambda x: getattr(x, "__name__", x))  # fmt: skip
def test_a_number_in_the_prose_is_what_its_record_gives(page, check):
    expected = check()
    flat = " ".join((ROOT / page).read_text().split())
    for phrase in [expected] if isinstance(expected, str) else expected:
        assert " ".join(phrase.split()) in flat, f"{page}: expected {phrase!r}"
