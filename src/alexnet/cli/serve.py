"""`alexnet serve`."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from alexnet.cli.common import RUNTIME_CHOICES
from alexnet.core.errors import UserError

# How long a thread holds the GIL before another that waits for it takes it (Python's
# default: 5 ms).
GIL_SWITCH_SECONDS = 0.0005


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

    token = _token(args)
    limits = Limits(
        max_body=args.max_body_mib << 20,
        max_queue=args.max_queue,
        timeout=args.timeout,
        max_batch=args.max_batch,
        max_wait=args.max_wait_ms / 1000,
        decode_threads=args.decode_threads,
    )
    engine = Engine(args.checkpoint, runtime=args.runtime, precision=args.precision,
                    index=args.index, device=args.device)  # fmt: skip
    engine.warm_up()
    described = engine.describe()
    neighbors = f", neighbors from {described['neighbors']['index']}" if engine.index else ""
    print(f"serving {described['network']} ({len(described['classes'])} classes, "
          f"{engine.runtime}, {engine.precision}, {engine.device}) from {args.checkpoint}"
          f"{neighbors}")  # fmt: skip
    where = f"http://{args.host}:{args.port}/"
    print(f"open {where}{'#token=TOKEN' if token else ''} (API: /docs; Open Inference "
          "Protocol: /v2; metrics: /metrics)", flush=True)  # fmt: skip
    app = create_app(engine, limits, token=token, model_name=args.model_name)
    # The network's thread takes the GIL back between layers; with the event loop busy
    # (a retry storm), Python's default switch interval of 5 ms made each of those waits up
    # to 5 ms: a forward pass of 8 views took several times longer (docs/serving-load.md).
    sys.setswitchinterval(GIL_SWITCH_SECONDS)
    # h11 whatever else is installed: it bounds a request's head (16 KiB; httptools does not)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level,
                access_log=args.access_log, http="h11")  # fmt: skip


LOOPBACK = ("127.0.0.1", "localhost", "::1")
TOKEN_VARIABLE = "ALEXNET_SERVE_TOKEN"


def _token(args: argparse.Namespace) -> str | None:
    """The bearer token: from --token-file, else the environment; required to listen
    beyond this machine unless --no-auth says so on purpose."""
    token = None
    if args.token_file:
        try:
            token = Path(args.token_file).read_text(encoding="utf-8").strip()
        except OSError as error:
            raise UserError(f"cannot read the token file {args.token_file}: "
                             f"{error.strerror}") from None  # fmt: skip
        if not token:
            raise UserError(f"the token file {args.token_file} is empty")
    elif os.environ.get(TOKEN_VARIABLE, "").strip():
        token = os.environ[TOKEN_VARIABLE].strip()
    if token is not None and (len(token) < 16 or any(c.isspace() for c in token)):
        raise UserError(
            "the token must be at least 16 characters, without spaces: make one "
            "with python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    if token is not None and args.no_auth:
        raise UserError("--no-auth and a token contradict each other: give one")
    if args.host not in LOOPBACK and token is None and not args.no_auth:
        raise UserError(f"listening on {args.host} lets anyone who reaches this machine use "
                         f"the server: give a token (--token-file FILE, or {TOKEN_VARIABLE}), "
                         "or --no-auth to serve without one on purpose")  # fmt: skip
    if args.host not in LOOPBACK and token is None:
        logging.getLogger("alexnet.serve").warning(
            "listening on %s without a token (--no-auth): anyone who can reach this machine "
            "can use the server",
            args.host,
        )
    return token


def add_commands(commands) -> None:
    serve = commands.add_parser(
        "serve",
        help="an HTTP API and a web page: a photo's classes, Grad-CAM and nearest images",
        description="GET / is a page where a photo is picked or dropped; POST /v1/predict "
        "classifies one (JSON); GET /v1/model, /healthz, /docs. Concurrent requests are "
        "batched. The Open Inference Protocol (KServe v2) on /v2, Prometheus metrics on "
        "/metrics. Needs `pip install alexnet[serve]`.",
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
    serve.add_argument("--device", default="cpu", help="where the network runs with "
                       "--runtime torch: cpu, cuda, cuda:1, ...; default: %(default)s")  # fmt: skip
    serve.add_argument("--token-file", help="a file holding the bearer token that every "
                       f"request but the health checks must carry (or ${TOKEN_VARIABLE}); "
                       "needed to listen beyond 127.0.0.1")  # fmt: skip
    serve.add_argument("--no-auth", action="store_true", help="listen beyond 127.0.0.1 "
                       "without a token, on purpose (behind a gateway that checks)")  # fmt: skip
    serve.add_argument("--model-name", help="the model's name on the Open Inference "
                       "Protocol's /v2/models/{name}; default: the network's name")  # fmt: skip
    serve.add_argument("--max-batch", type=int, default=32, help="views per forward pass "
                       "(a ten-crop request counts 10); default: %(default)s")  # fmt: skip
    serve.add_argument("--max-wait-ms", type=float, default=20.0,
                       help="how long a batch waits at most for requests whose photos are "
                       "being read or decoded; default: %(default)s")  # fmt: skip
    serve.add_argument("--max-queue", type=int, default=64,
                       help="requests waiting for the network (being read, decoded or "
                       "queued; not the batch it computes); more get 503 at once; "
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
