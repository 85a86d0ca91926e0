"""`alexnet serve`."""

from __future__ import annotations

import argparse
import logging

from alexnet.cli.common import RUNTIME_CHOICES
from alexnet.core.errors import UserError


def _serve(args: argparse.Namespace) -> None:
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as error:
        missing = error.name
        raise UserError(f"alexnet serve needs {missing}: pip install 'alexnet[serve]' (FastAPI, "
                         "uvicorn, python-multipart, swagger-ui-bundle)") from None  # fmt: skip

    from alexnet.serve.app import Limits, create_app
    from alexnet.serve.engine import Engine

    if args.host not in ("127.0.0.1", "localhost", "::1"):
        logging.getLogger("alexnet.serve").warning(
            "listening on %s: anyone who can reach this machine can use the server", args.host
        )
    limits = Limits(
        max_body=args.max_body_mib << 20,
        max_queue=args.max_queue,
        timeout=args.timeout,
        max_batch=args.max_batch,
        max_wait=args.max_wait_ms / 1000,
        decode_threads=args.decode_threads,
    )
    engine = Engine(args.checkpoint, runtime=args.runtime, precision=args.precision,
                    index=args.index)  # fmt: skip
    engine.warm_up()
    described = engine.describe()
    neighbors = f", neighbors from {described['neighbors']['index']}" if engine.index else ""
    print(f"serving {described['network']} ({len(described['classes'])} classes, "
          f"{engine.runtime}, {engine.precision}) from {args.checkpoint}{neighbors}")  # fmt: skip
    print(f"open http://{args.host}:{args.port}/ (API: /docs)", flush=True)
    uvicorn.run(create_app(engine, limits), host=args.host, port=args.port,
                log_level=args.log_level, access_log=args.access_log)  # fmt: skip


def add_commands(commands) -> None:
    serve = commands.add_parser(
        "serve",
        help="an HTTP API and a web page: a photo's classes, Grad-CAM and nearest images",
        description="GET / is a page where a photo is picked or dropped; POST /v1/predict "
        "classifies one (JSON); GET /v1/model, /healthz, /docs. Concurrent requests are "
        "batched. Needs `pip install alexnet[serve]`.",
    )
    serve.add_argument("--checkpoint", required=True,
                       help="a checkpoint, run directory, .safetensors or .onnx file")  # fmt: skip
    serve.add_argument("--index", help="the fc7 index `alexnet neighbors` wrote (its folder or "
                       "file): enables the nearest training images")  # fmt: skip
    serve.add_argument(
        "--host", default="127.0.0.1", help="default: %(default)s (this machine only)"
    )
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--runtime", choices=RUNTIME_CHOICES,
                       default="torch", help="what runs the network: PyTorch, or the network "
                       "exported to ONNX in ONNX Runtime (fp32) or OpenVINO (fp32, bf16); "
                       "an .onnx file: onnxruntime unless openvino is named")  # fmt: skip
    serve.add_argument("--precision", choices=("fp32", "bf16", "auto"), default="fp32")
    serve.add_argument("--max-batch", type=int, default=32, help="views per forward pass "
                       "(a ten-crop request counts 10); default: %(default)s")  # fmt: skip
    serve.add_argument("--max-wait-ms", type=float, default=20.0,
                       help="how long a batch waits at most for requests whose photos are "
                       "being read or decoded; default: %(default)s")  # fmt: skip
    serve.add_argument("--max-queue", type=int, default=64,
                       help="requests inside the server at once; more get 503 at once; "
                       "default: %(default)s")  # fmt: skip
    serve.add_argument("--timeout", type=float, default=30.0,
                       help="seconds to answer a request, else 504; "
                       "default: %(default)s")  # fmt: skip
    serve.add_argument("--max-body-mib", type=int, default=8,
                       help="the largest request body, MiB (413 beyond); "
                       "default: %(default)s")  # fmt: skip
    serve.add_argument("--decode-threads", type=int, default=2)
    serve.add_argument("--log-level", default="warning",
                       choices=("critical", "error", "warning", "info", "debug"))  # fmt: skip
    serve.add_argument("--access-log", action="store_true", help="a line per request")
    serve.set_defaults(run=_serve)
