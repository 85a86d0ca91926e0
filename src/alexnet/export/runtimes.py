"""The exported network run by another inference engine: ONNX Runtime or OpenVINO.

Both read the file `alexnet export --format onnx` writes (alexnet.export.onnx). A `Runtime`
is called like the package's network, on a float32 batch (N, C, crop, crop) prepared as the
record says, and gives float32 logits; `predict --runtime`, `serve --runtime` and
`bench model --onnxruntime --openvino` use it. Precision: fp32 in both; bf16 in OpenVINO
(its `INFERENCE_PRECISION_HINT`, which runs the convolutions and matrix products in bf16 on
CPUs that have the instructions). ONNX Runtime's CPU provider has no bf16 kernels for
these layers, so bf16 there is refused rather than emulated.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import numpy as np
import torch

from alexnet.core.errors import UserError

RUNTIMES = ("onnxruntime", "openvino")
PRECISIONS = {"onnxruntime": ("fp32",), "openvino": ("fp32", "bf16")}


def check_runtime(runtime: str, precision: str) -> None:
    """A runtime this module knows, with a precision it runs, installed."""
    if runtime not in RUNTIMES:
        raise UserError(f"runtime must be torch or one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if precision not in PRECISIONS[runtime]:
        raise UserError(f"{runtime} runs {' and '.join(PRECISIONS[runtime])} here, not {precision}")
    try:
        __import__(runtime)  # each runtime is the package of its name
    except ImportError:
        raise UserError(f"--runtime {runtime} needs the {runtime} package: pip install "
                        f"'alexnet[export]'") from None  # fmt: skip


class Runtime:
    """An ONNX file in ONNX Runtime or OpenVINO, called like the network: logits of a batch.
    `threads`: the engine's threads (None: its default)."""

    def __init__(self, path: str | Path, runtime: str, precision: str = "fp32",
                 threads: int | None = None) -> None:  # fmt: skip
        check_runtime(runtime, precision)
        self.path, self.runtime, self.precision = str(path), runtime, precision
        if runtime == "onnxruntime":
            from alexnet.export.onnx import session

            self._session = session(path, threads)
            self._input = self._session.get_inputs()[0].name
        else:
            import openvino as ov

            config = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32"}
            if threads:
                config["INFERENCE_NUM_THREADS"] = int(threads)
            # all three held here and let go in order (`close`): an infer request that
            # outlives its compiled model and core, as the garbage collector may leave it,
            # crashes the process when it is destroyed
            self._core = ov.Core()
            self._compiled = self._core.compile_model(str(path), "CPU", config)
            self._request = self._compiled.create_infer_request()
            self._output = self._compiled.output(0)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        if self.runtime == "onnxruntime":
            return torch.from_numpy(self._session.run(None, {self._input: array})[0])
        out = self._request.infer({0: array})[self._output]
        return torch.from_numpy(np.array(out, dtype=np.float32))

    def eval(self) -> Runtime:  # called as a network is: it has no training mode
        return self

    def close(self) -> None:
        """Let the engine go: OpenVINO's request, then its compiled model, then its core."""
        for name in ("_request", "_output", "_compiled", "_core", "_session"):
            if hasattr(self, name):
                delattr(self, name)

    def __del__(self) -> None:
        self.close()


def export_to(checkpoint: dict, runtime: str, precision: str = "fp32",
              threads: int | None = None) -> Runtime:  # fmt: skip
    """The checkpoint's network exported to ONNX and open in `runtime` (which keeps what it
    read: the file is gone when this returns)."""
    from alexnet.export.onnx import export_onnx

    check_runtime(runtime, precision)
    with tempfile.TemporaryDirectory() as folder:
        path = export_onnx(checkpoint, Path(folder) / "network.onnx")
        return Runtime(path, runtime, precision, threads)


@contextlib.contextmanager
def exported(checkpoint: dict, runtime: str, precision: str = "fp32",
             threads: int | None = None):  # fmt: skip
    """`export_to` for a `with` block, the engine let go at its end."""
    engine = export_to(checkpoint, runtime, precision, threads)
    try:
        yield engine
    finally:
        engine.close()
