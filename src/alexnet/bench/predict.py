"""`alexnet bench predict`: `alexnet predict` over a folder of real photos against the same
network's inference on prepared inputs at the same batch size. The difference is reading
and decoding the files and preparing their views; the rounds alternate the two."""

from __future__ import annotations

import statistics
import time

import torch

from alexnet.bench.common import device_name, machine
from alexnet.core.errors import UserError
from alexnet.evaluate.predict import list_photos, predict_files
from alexnet.models import checkpoint as ckpt


def bench_predict(
    folder: str, checkpoint: str, batch: int = 128, workers: int = 0, images: int | None = None,
    repeats: int = 3,
) -> dict:  # fmt: skip
    files = list_photos([folder])[:images]
    if not files:
        raise UserError(f"no images in {folder}")
    loaded = ckpt.load(checkpoint)

    def photos() -> float:
        start = time.perf_counter()
        failed = sum(row["error"] is not None for row in predict_files(
            files, loaded, batch_size=batch, workers=workers, device="cpu"))  # fmt: skip
        if failed:
            raise UserError(f"{failed} of the files in {folder} could not be read")
        return len(files) / (time.perf_counter() - start)

    inference = inference_rate(loaded, batch, len(files))
    settings = {"folder": folder, "images": len(files), "batch": batch, "workers": workers}
    result = _against_inference("predict", photos, inference, loaded, settings, repeats)
    spread = {"predict": result["predict_images_per_s"],
              "inference": result["inference_images_per_s"]}  # fmt: skip
    result["table"] = (
        f"alexnet bench predict on {result['device']}: {len(files):,} files, batch {batch}, "
        f"{workers} decoding worker(s)\n"
        f"predict (read, decode, views, network): {spread['predict']['median']:8,.1f} images/s\n"
        f"the network on prepared inputs:         {spread['inference']['median']:8,.1f} images/s\n"
        f"predict / inference:                    {result['predict_vs_inference']:8.2f}"
    )
    return result


def bench_features(
    data: str, checkpoint: str, layers: list[str], split: str = "val", batch: int = 128,
    images: int = 1024, workers: int = 0, repeats: int = 3,
) -> dict:  # fmt: skip
    """`alexnet features` over a store's split against the same network's inference on
    prepared inputs, same batch size, rounds alternating."""
    import tempfile

    from alexnet.evaluate.features import features

    loaded = ckpt.load(checkpoint)

    def extracting() -> float:
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            result = features(checkpoint, folder, layers, data=data, split=split, batch=batch,
                              workers=workers, limit=images, progress=False)  # fmt: skip
            return result["images"] / (time.perf_counter() - start)

    inference = inference_rate(loaded, batch, images)
    settings = {"data": data, "split": split, "images": images, "batch": batch,
                "workers": workers, "layers": layers}  # fmt: skip
    result = _against_inference("features", extracting, inference, loaded, settings, repeats)
    spread = {"features": result["features_images_per_s"],
              "inference": result["inference_images_per_s"]}  # fmt: skip
    result["table"] = (
        f"alexnet bench features on {result['device']}: {images:,} images of {data}, batch "
        f"{batch}, layers {','.join(layers)}\n"
        f"features (views, network, files):  {spread['features']['median']:8,.1f} images/s\n"
        f"the network on prepared inputs:    {spread['inference']['median']:8,.1f} images/s\n"
        f"features / inference:              {result['features_vs_inference']:8.2f}"
    )
    return result


def inference_rate(checkpoint: dict, batch: int, images: int):
    """A function that times the network on `images` prepared inputs, batch by batch, and
    returns images/s."""
    model = ckpt.load_model(checkpoint)
    pre = checkpoint["record"].preprocessing
    prepared = torch.randn(batch, pre.channels, pre.crop_size, pre.crop_size)
    steps = max(1, images // batch)

    def run() -> float:
        start = time.perf_counter()
        with torch.no_grad():
            for _ in range(steps):
                model(prepared)
        return steps * batch / (time.perf_counter() - start)

    return run


def _against_inference(name: str, timed, inference, checkpoint: dict, settings: dict,
                       repeats: int) -> dict:  # fmt: skip
    """`timed` and the network's `inference` alternating for `repeats` rounds (after one
    warm-up of the network): the record, with NAME_images_per_s, inference_images_per_s and
    NAME_vs_inference, the ratio of their medians."""
    inference()  # warm-up
    spread = _alternate({name: timed, "inference": inference}, repeats)
    return {
        "machine": (host := machine()),
        "device": device_name(torch.device("cpu"), host["cpu"]),
        "settings": {**settings, "repeats": repeats, "network": checkpoint["record"].network.name},
        f"{name}_images_per_s": spread[name],
        "inference_images_per_s": spread["inference"],
        f"{name}_vs_inference": spread[name]["median"] / spread["inference"]["median"],
    }


def _alternate(named: dict, repeats: int) -> dict:
    """Each of the timed functions once per round, `repeats` rounds; the spread of each."""
    rates = {name: [] for name in named}
    for _ in range(repeats):
        for name, timed in named.items():
            rates[name].append(timed())
    return {k: {"median": statistics.median(v), "min": min(v), "max": max(v)}
            for k, v in rates.items()}  # fmt: skip
