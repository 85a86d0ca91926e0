"""`alexnet bench data|model|fused|profile|train`."""

from __future__ import annotations

import argparse
import sys

from alexnet.cli.common import (
    AUTO_PRECISION_HELP,
    IMAGE_GRAD_MODES,
    LRN_BACKENDS,
    MODELS_HELP,
    TOWER_CONV_MODES,
    add_report_options,
    command_line,
    write_result,
)
from alexnet.models.registry import split_specs


def _bench_data(args: argparse.Namespace) -> None:
    from alexnet.bench.data import bench_data

    result = bench_data(photos=args.photos, images=args.images, repeats=args.repeats)
    write_result(args, result)


def _models_or_all(value: str | None) -> bool | tuple[str, ...]:
    """A flag's value: "all" (the flag alone), a comma-separated list of models, or absent."""
    if value is None:
        return False
    return True if value == "all" else tuple(value.split(","))


def _bench_dtypes(value: str, device: str, anyway: str = "--dtypes fp32,bf16") -> tuple[str, ...]:
    """The dtypes of `--dtypes`: as listed, or for "auto" fp32 and bf16 where the hardware
    computes in bf16 (saying so on stderr when bf16 is left out, and that `anyway` asks for
    it)."""
    from alexnet.bench.model import auto_dtypes

    if value != "auto":
        return tuple(value.split(","))
    dtypes, why = auto_dtypes(device)
    if why:
        print(f"bf16 left out: {why}; {anyway} measures it anyway", file=sys.stderr)
    return dtypes


def _bench_model(args: argparse.Namespace) -> None:
    from alexnet.bench.model import ModelBench, bench_model

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    bench = ModelBench(
        batch=args.batch,
        repeats=args.repeats,
        steps=args.steps,
        warmup=args.warmup,
        models=split_specs(args.models),
        dtypes=_bench_dtypes(args.dtypes, args.device),
        modes=tuple(args.modes.split(",")),
        device=args.device,
        channels_last=_models_or_all(args.channels_last),
        compile=_models_or_all(args.compile),
        **_network_options(args),
        malloc=args.malloc,
        in_process=args.in_process,
    )
    result = bench_model(bench)
    engines = [name for name in ("onnxruntime", "openvino") if getattr(args, name)]
    if engines:
        from alexnet.bench.runtimes import bench_runtimes, table

        batches = tuple(dict.fromkeys((1, 8, args.batch)))
        result["runtimes"] = bench_runtimes(split_specs(args.models), engines, bench.dtypes,
                                            batches, repeats=args.repeats)  # fmt: skip
        result["table"] += "\n" + table(result["runtimes"], engines)
    result["command"] = command_line()
    write_result(args, result)


def _bench_predict(args: argparse.Namespace) -> None:
    from alexnet.bench.predict import bench_predict

    result = bench_predict(args.folder, args.checkpoint, batch=args.batch, workers=args.workers,
                           images=args.images, repeats=args.repeats)  # fmt: skip
    result["command"] = command_line()
    write_result(args, result)


def _bench_features(args: argparse.Namespace) -> None:
    from alexnet.bench.predict import bench_features

    layers = [name.strip() for name in args.layers.split(",") if name.strip()]
    result = bench_features(args.data, args.checkpoint, layers, split=args.split,
                            batch=args.batch, images=args.images, workers=args.workers,
                            repeats=args.repeats)  # fmt: skip
    result["command"] = command_line()
    write_result(args, result)


def _bench_serve(args: argparse.Namespace) -> None:
    from alexnet.evaluate.predict import list_photos
    from alexnet.serve.load import bench_serve

    result = bench_serve(
        args.checkpoint,
        list_photos(args.images),
        clients=args.clients,
        requests=args.requests,
        seconds=args.seconds,
        overload_clients=args.overload_clients,
        overload_queue=args.overload_queue,
        overload_requests=args.overload_requests,
        overload_seconds=args.overload_seconds,
        server_options=tuple(args.server_option or ()),
        rounds=args.rounds,
        multiples=tuple(args.multiples),
        refusals=args.refusals,
    )
    result["command"] = command_line()
    if args.plot:
        from alexnet.serve.overload import draw

        draw(result["overload"], args.plot, f"alexnet serve past capacity: {result['device']}")
    write_result(args, result)


def _bench_fused(args: argparse.Namespace) -> None:
    import torch

    from alexnet.bench.kernels import bench_fused

    if args.threads:
        torch.set_num_threads(args.threads)
    result = bench_fused(repeats=args.repeats, batch=args.batch)
    result["command"] = command_line()
    write_result(args, result)


def _bench_profile(args: argparse.Namespace) -> None:
    import torch

    from alexnet.bench.profile import bench_profile

    if args.threads:
        torch.set_num_threads(args.threads)
    result = bench_profile(
        models=split_specs(args.models),
        mode=args.mode,
        dtype=_bench_dtypes(args.dtype, args.device, anyway="--dtype bf16")[-1],
        batch=args.batch,
        steps=args.steps,
        warmup=args.warmup,
        device=args.device,
        channels_last=args.channels_last,
        compile=args.compile,
        **_network_options(args),
        top=args.top,
        trace_dir=args.trace,
        by_shape=args.by_shape,
    )
    result["command"] = command_line()
    write_result(args, result)


def _bench_train(args: argparse.Namespace) -> None:
    from alexnet.bench.train import bench_train
    from alexnet.train.config import load_config

    config = load_config(args.config, args.set)
    result = bench_train(config, steps=args.steps, rounds=args.rounds)
    result["command"] = command_line()
    write_result(args, result)


def _add_network_options(parser: argparse.ArgumentParser) -> None:
    """How the networks of `bench model` and `bench profile` run their layers."""
    parser.add_argument(
        "--no-fuse", action="store_true", help="run ReLU, LRN and pooling as separate layers"
    )
    parser.add_argument(
        "--lrn-backend",
        default="auto",
        choices=LRN_BACKENDS,
        help="torch: LRN as torch operations, also on CPU; triton: the GPU kernels "
        "(torch and triton imply --no-fuse)",
    )
    parser.add_argument(
        "--tower-conv",
        default="auto",
        choices=TOWER_CONV_MODES,
        help="conv2, conv4, conv5 as one grouped call or one call per tower (auto: grouped "
        "on CPU, split on CUDA)",
    )
    parser.add_argument(
        "--conv1-grad",
        default="auto",
        choices=IMAGE_GRAD_MODES,
        help="conv1's weight gradient on CPU in fp32 (auto: space-to-depth with AVX-512, "
        "direct elsewhere)",
    )
    parser.add_argument(
        "--no-bf16-copies",
        action="store_true",
        help="bf16 on CPU: autocast casting the weights in every step, not the bf16 copies "
        "the update keeps (alexnet train's default)",
    )
    parser.add_argument(
        "--reference-optimizer",
        default="torch_sgd",
        choices=("torch_sgd", "paper"),
        help="the update alexnet_owt trains with: torch.optim.SGD as torchvision's users "
        "run it (default), or the package's PaperSGD",
    )


def _network_options(args: argparse.Namespace) -> dict:
    return {
        "fuse": not args.no_fuse,
        "lrn_backend": args.lrn_backend,
        "tower_conv": args.tower_conv,
        "conv1_grad": args.conv1_grad,
        "bf16_copies": not args.no_bf16_copies,
        "reference_optimizer": args.reference_optimizer,
    }


def add_commands(commands) -> None:
    bench = commands.add_parser("bench", help="measure speed on this machine")
    bench_commands = bench.add_subparsers(dest="bench_command", required=True, metavar="WHAT")
    bench_data = bench_commands.add_parser(
        "data", help="views from a store, and prepare's decoding, per core"
    )
    bench_data.add_argument(
        "--photos",
        help="a folder of ImageNet-sized JPEGs for the decoding benchmark (default: made from "
        "scikit-image's sample photographs when it is installed)",
    )
    bench_data.add_argument("--images", type=int, default=2048, help="views per measurement")
    bench_data.add_argument("--repeats", type=int, default=5)
    add_report_options(bench_data)
    bench_data.set_defaults(run=_bench_data)

    from alexnet.bench.model import DTYPES, MODELS, MODES

    bench_model = bench_commands.add_parser(
        "model",
        help="training and inference images/s of the networks, against the matmul limit",
        description="Images/s of training steps and inference for each network and precision, "
        "as a ratio to alexnet_owt (torchvision's architecture, plain eager PyTorch) and as a "
        "fraction of this machine's measured matrix-multiply throughput.",
    )
    bench_model.add_argument("--batch", type=int, default=128)
    bench_model.add_argument("--repeats", type=int, default=5, help="rounds (default: 5)")
    bench_model.add_argument("--steps", type=int, default=1, help="steps timed per round")
    bench_model.add_argument(
        "--warmup", type=int, default=2, help="untimed steps per configuration first (default: 2)"
    )
    bench_model.add_argument("--models", default=",".join(MODELS), help=MODELS_HELP)
    bench_model.add_argument(
        "--dtypes",
        default="auto",
        help="fp32,bf16; auto (default): fp32, and bf16 where the hardware has bf16 "
        "instructions (without them bf16 runs many times slower)",
    )
    bench_model.add_argument("--modes", default=",".join(MODES), help="train,infer")
    bench_model.add_argument("--device", default="cpu", help="cpu or cuda")
    bench_model.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    bench_model.add_argument(
        "--channels-last",
        nargs="?",
        const="all",
        metavar="MODELS",
        help="channels_last memory for every model, or for these (comma-separated)",
    )
    bench_model.add_argument(
        "--compile",
        nargs="?",
        const="all",
        metavar="MODELS",
        help="torch.compile every model, or these (comma-separated)",
    )
    _add_network_options(bench_model)
    bench_model.add_argument(
        "--malloc",
        default="keep",
        choices=("keep", "system"),
        help="system: glibc's defaults, which page-fault every step's activations afresh",
    )
    bench_model.add_argument(
        "--in-process",
        action="store_true",
        help="run every configuration in this process (default: a process per model and "
        "dtype, as training runs one; their allocations then do not interleave)",
    )
    bench_model.add_argument(
        "--onnxruntime",
        action="store_true",
        help="also time inference of each network exported to ONNX, in ONNX Runtime (fp32) "
        "against the package, at batch 1, 8 and --batch (needs the [export] extra)",
    )
    bench_model.add_argument(
        "--openvino",
        action="store_true",
        help="the same in OpenVINO (fp32 and bf16, as --dtypes says)",
    )
    add_report_options(bench_model)
    bench_model.set_defaults(run=_bench_model)

    bench_predict = bench_commands.add_parser(
        "predict",
        help="alexnet predict over a folder of photos against inference on prepared inputs",
    )
    bench_predict.add_argument("folder", help="a folder of images (searched recursively)")
    bench_predict.add_argument("--checkpoint", required=True)
    bench_predict.add_argument("--batch", type=int, default=128)
    bench_predict.add_argument("--workers", type=int, default=0, help="decoding processes")
    bench_predict.add_argument("--images", type=int, help="only the first N images")
    bench_predict.add_argument("--repeats", type=int, default=3)
    add_report_options(bench_predict)
    bench_predict.set_defaults(run=_bench_predict)

    bench_features = bench_commands.add_parser(
        "features",
        help="alexnet features over a store against inference on prepared inputs",
    )
    bench_features.add_argument("data", help="a prepared store")
    bench_features.add_argument("--checkpoint", required=True)
    bench_features.add_argument("--layers", default="fc7")
    bench_features.add_argument("--split", default="val")
    bench_features.add_argument("--batch", type=int, default=128)
    bench_features.add_argument("--images", type=int, default=1024)
    bench_features.add_argument("--workers", type=int, default=0)
    bench_features.add_argument("--repeats", type=int, default=3)
    add_report_options(bench_features)
    bench_features.set_defaults(run=_bench_features)

    bench_serve = bench_commands.add_parser(
        "serve",
        help="alexnet serve under load on 127.0.0.1: requests/s, latency, memory, overload",
        description="Starts `alexnet serve` in a child process on the loopback address, sends "
        "the photos from CLIENTS clients (at most REQUESTS requests or SECONDS seconds), then "
        "offers a server with a small queue 3x and 10x what it answered (open loop) and a "
        "retry storm, and times a refusal; compares the rate with the same network on "
        "prepared inputs. Every phase stops by itself.",
    )
    bench_serve.add_argument("images", nargs="+", help="photos to send: files or folders")
    bench_serve.add_argument("--checkpoint", required=True)
    bench_serve.add_argument("--clients", type=int, default=8)
    bench_serve.add_argument("--requests", type=int, default=2000, help="per round")
    bench_serve.add_argument("--seconds", type=float, default=60, help="per round")
    bench_serve.add_argument("--rounds", type=int, default=3,
                             help="load rounds, each after a reference timing")  # fmt: skip
    bench_serve.add_argument("--overload-clients", type=int, default=64,
                             help="the retry storm's clients")  # fmt: skip
    bench_serve.add_argument("--overload-queue", type=int,
                             help="requests the overloaded server lets wait (its --max-queue); "
                             "default: --clients (the next batch forms while one "
                             "computes)")  # fmt: skip
    bench_serve.add_argument("--overload-requests", type=int, default=20000)
    bench_serve.add_argument("--overload-seconds", type=float, default=20, help="per phase")
    bench_serve.add_argument("--multiples", type=float, nargs="+", default=[3.0, 10.0],
                             help="open-loop arrival rates, as multiples of the capacity the "
                             "load measured; default: 3 10")  # fmt: skip
    bench_serve.add_argument("--refusals", type=int, default=5000,
                             help="requests refused to time a refusal's CPU")  # fmt: skip
    bench_serve.add_argument("--plot", help="a PNG of the overload curve")
    bench_serve.add_argument(
        "--server-option",
        action="append",
        metavar="OPTION",
        help="an option for `alexnet serve`, e.g. --server-option=--max-batch=16 (repeatable)",
    )
    add_report_options(bench_serve)
    bench_serve.set_defaults(run=_bench_serve)

    bench_fused = bench_commands.add_parser(
        "fused",
        help="the fused ReLU-LRN-pool kernel alone, forward and backward, on conv1's and "
        "conv2's blocks",
    )
    bench_fused.add_argument("--batch", type=int, default=128)
    bench_fused.add_argument("--repeats", type=int, default=7)
    bench_fused.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    add_report_options(bench_fused)
    bench_fused.set_defaults(run=_bench_fused)

    bench_profile = bench_commands.add_parser(
        "profile",
        help="where a step's time goes, operation by operation (torch.profiler)",
        description="The steps of `alexnet bench model`, recorded with torch.profiler: for "
        "each network the operations that take the most time per step (device time on a "
        "GPU, each operation's own CPU time on the CPU).",
    )
    bench_profile.add_argument("--models", default=",".join(MODELS), help=MODELS_HELP)
    bench_profile.add_argument("--mode", default="train", choices=MODES)
    bench_profile.add_argument(
        "--dtype",
        default="auto",
        choices=("auto", *DTYPES),
        help=AUTO_PRECISION_HELP + " (the default)",
    )
    bench_profile.add_argument("--batch", type=int, default=128)
    bench_profile.add_argument("--steps", type=int, default=5, help="steps recorded")
    bench_profile.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    bench_profile.add_argument("--device", default="cpu", help="cpu or cuda")
    bench_profile.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    bench_profile.add_argument("--channels-last", action="store_true")
    bench_profile.add_argument("--compile", action="store_true", help="torch.compile the models")
    _add_network_options(bench_profile)
    bench_profile.add_argument("--top", type=int, default=15, help="operations listed per model")
    bench_profile.add_argument("--trace", metavar="DIR", help="also write Chrome traces here")
    bench_profile.add_argument(
        "--by-shape", action="store_true", help="a row per operation and input shapes"
    )
    add_report_options(bench_profile)
    bench_profile.set_defaults(run=_bench_profile)

    bench_train = bench_commands.add_parser(
        "train",
        help="training from the store against the same steps on synthetic input",
        description="Alternating rounds of a recipe's training step fed by the real loader "
        "and by one batch held in memory; their ratio is what the data path costs.",
    )
    bench_train.add_argument(
        "--config", required=True, help="a recipe, e.g. configs/fashion-mnist.yaml"
    )
    bench_train.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    bench_train.add_argument("--steps", type=int, default=20, help="timed steps per round")
    bench_train.add_argument("--rounds", type=int, default=3)
    add_report_options(bench_train)
    bench_train.set_defaults(run=_bench_train)
