"""`alexnet serve --device DEVICE` against the same server on the CPU, for a session lent a
GPU (tools/gpu_session.sh serve): the same top-5 for the same photos, probabilities within
1e-3 (cuDNN may run fp32 convolutions in TF32), and the answered rate of 8 clients.

    python tools/serve_gpu_check.py --device cuda --output $OUT/serve-gpu.json

The network is torchvision's architecture with random weights (what `alexnet import
torchvision` gives, from tests/references.py), so that no data or download is needed.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import sys
import tempfile
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from PIL import Image  # noqa: E402

from alexnet.models import checkpoint as ckpt  # noqa: E402
from alexnet.models.weights import torchvision_checkpoint  # noqa: E402
from alexnet.serve.traffic import Server, request_bytes, run_clients, summarize  # noqa: E402

from references import torchvision_state_dict  # noqa: E402


def photos(count: int = 8) -> list[bytes]:
    generator = np.random.default_rng(0)
    out = []
    for _ in range(count):
        pixels = generator.integers(0, 256, (300, 400, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def answers(server: Server, data: list[bytes]) -> list[list[dict]]:
    out = []
    for photo in data:
        request = urllib.request.Request(f"{server.url}/v1/predict?top=5", data=photo,
                                         headers={"Content-Type": "image/jpeg"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=60) as response:
            out.append(json.loads(response.read())["top"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    data = photos()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tv.pt"
        ckpt.save(path, torchvision_checkpoint(torchvision_state_dict()))
        with Server(path) as cpu:
            expected = answers(cpu, data)
        with Server(path, "--device", args.device) as device:
            got = answers(device, data)
            model = json.loads(urllib.request.urlopen(device.url + "/v1/model").read())
            wire = [request_bytes("/v1/predict", p, "image/jpeg", device.port) for p in data]
            results, wall = asyncio.run(run_clients(device.port, wire, 8, 2000, 20))
    same_top5 = all([r["class"] for r in a] == [r["class"] for r in b]
                    for a, b in zip(expected, got, strict=True))  # fmt: skip
    pairs = [(x, y) for a, b in zip(expected, got, strict=True)
             for x, y in zip(a, b, strict=True)]  # fmt: skip
    largest = max(abs(x["probability"] - y["probability"]) for x, y in pairs)
    result = {
        "command": "python " + " ".join(sys.argv),
        "device": model["device"],
        "same_top5": same_top5,
        "largest_probability_difference": largest,
        "load_8_clients": summarize(results, wall),
    }
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if not same_top5 or largest > 1e-3:
        sys.exit(1)


if __name__ == "__main__":
    main()
