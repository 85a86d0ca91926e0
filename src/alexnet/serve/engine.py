"""The network behind the server.

`Engine` holds one network: a checkpoint of ours, an imported one (`alexnet import`), a
safetensors file (`alexnet export --format safetensors`), or an ONNX file run by ONNX
Runtime, whose preprocessing is read from the file's metadata. It prepares a photo exactly as
`alexnet predict` does (the record's preprocessing, alexnet.data.preprocess: the stored size,
the view size, the center or the ten crops, minus the mean), runs batches of views, and
averages each photo's softmax over its views (section 4.1 of the paper). For one photo it
also gives the Grad-CAM overlay of the top class (alexnet.evaluate.explain) and its nearest
training images in fc7 space (section 6.1, Figure 4; the index `alexnet neighbors` builds).

The micro-batcher that feeds it is alexnet.serve.batcher; the pictures it draws,
alexnet.serve.pictures.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from alexnet.core.errors import UserError
from alexnet.core.runtime import InferenceNetwork, autocast, resolve_precision, widened
from alexnet.core.version import __version__
from alexnet.data.images import WEB_FORMATS
from alexnet.export import metadata
from alexnet.export.runtimes import RUNTIMES as ENGINES
from alexnet.models.record import ModelRecord
from alexnet.serve.pictures import overlay, png_data_uri, sample_png, thumbnail

log = logging.getLogger("alexnet.serve")

VIEWS = ("center", "ten-crop")
RUNTIMES = ("torch", *ENGINES)


@dataclass
class Prepared:
    """A photo as the network sees it: its views (V, C, h, w), and the decoded picture at
    the stored size (H, W, C) uint8 for the Grad-CAM overlay."""

    views: torch.Tensor
    picture: np.ndarray


class Engine:
    """One network, ready for photos. `source`: a checkpoint file, a run directory, a
    .safetensors file or a .onnx file. `runtime`: torch, or onnxruntime or openvino, which
    run the network exported to ONNX on start (alexnet.export.runtimes); an ONNX file is run
    by onnxruntime unless openvino is named. Grad-CAM and neighbors need the network's
    weights, so an ONNX file serves classification only."""

    def __init__(
        self,
        source: str,
        runtime: str = "torch",
        precision: str = "fp32",
        index: str | None = None,
        threads: int | None = None,
        device: str = "cpu",
    ) -> None:
        if runtime not in RUNTIMES:
            raise UserError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
        onnx = str(source).endswith(".onnx")
        if onnx and runtime == "torch":
            runtime = "onnxruntime"
        self.source, self.runtime = str(source), runtime
        self.device = _device(device, runtime)
        if runtime == "onnxruntime" and precision == "auto":
            precision = "fp32"  # the only one its CPU provider runs
        self.precision = resolve_precision(precision, self.device, log)
        self.model = self.session = None
        if onnx:
            self._open_onnx(source, threads)
        else:
            from alexnet.models import checkpoint as ckpt

            loaded = ckpt.load(source)
            self.record: ModelRecord = loaded["record"]
            self.model = ckpt.load_model(loaded)
            self.model.to(self.device)
            if runtime != "torch":
                self._export_onnx(loaded, threads)
        self.preprocessing = self.record.preprocessing
        self.explainer = self.layer = None
        if self.model is not None:
            from alexnet.evaluate.explain import explainable, feature_layer

            self.explainer = explainable(self.model)  # a copy in fp32, for the gradients
            self.layer = "conv5"
            self.target = feature_layer(self.explainer, self.layer)
            # the network that answers, in the precision asked: the server's one copy
            self.network = InferenceNetwork(self.model, self.device, self.precision, copy=False)
        self.index = None if index is None else self._open_index(index)

    # Loading.

    def _open_onnx(self, path: str, threads: int | None) -> None:
        import onnx

        from alexnet.export.runtimes import Runtime, check_runtime

        if not Path(path).is_file():
            raise UserError(f"no ONNX file at {path}")
        check_runtime(self.runtime, self.precision)
        try:
            meta = {p.key: p.value for p in onnx.load(path, load_external_data=False)
                    .metadata_props}  # fmt: skip
            self.session = Runtime(path, self.runtime, self.precision, threads)
        except Exception as error:  # the runtimes' and onnx's own exception types
            raise UserError(f"{path} is not a readable ONNX file ({error})") from None
        self.record = metadata.read(meta, path)

    def _export_onnx(self, loaded: dict, threads: int | None) -> None:
        from alexnet.export.runtimes import export_to

        self.session = export_to(loaded, self.runtime, self.precision, threads)

    def _open_index(self, index: str) -> dict:
        """The fc7 vectors of a store's training images that `alexnet neighbors` saved
        (a file, or the folder holding one), checked to be this network's."""
        from alexnet.data.store import Store

        if self.model is None:
            raise UserError("--index needs the network's weights: serve a checkpoint, not ONNX")
        path = Path(index)
        if path.is_dir():
            found = sorted(path.glob("fc7-train-*.pt"), key=lambda p: int(p.stem.split("-")[-1]))
            if not found:
                raise UserError(f"{index} holds no fc7 index (fc7-train-N.pt, from "
                                 "`alexnet neighbors`)")  # fmt: skip
            path = found[-1]
        try:
            saved = torch.load(path, weights_only=True)
            key = json.loads(saved["key"])
            store = Store(key["store"])
        except Exception as error:
            raise UserError(f"{path} is not a readable fc7 index ({error})") from None
        train = store.split("train")
        features, indices = saved["features"], saved["indices"]
        # The index must hold this network's vectors: recompute two of them.
        check = [0, len(indices) - 1]
        pictures = [np.asarray(train.images[int(indices[i])]) for i in check]
        mine = self.fc7(torch.cat([self.preprocessing.views(p) for p in pictures]))
        theirs = features[check]
        error = float((mine - theirs).norm() / theirs.norm().clamp_min(1e-12))
        if error > 0.05:
            raise UserError(
                f"{path} holds another network's fc7 vectors (relative difference {error:.2f} "
                f"on two training images): build it with `alexnet neighbors --checkpoint "
                f"{self.source}`"
            )
        log.info("neighbors from %s: %d training images of %s", path, len(indices), key["store"])
        return {
            "path": str(path),
            "store": key["store"],
            "features": features,
            "labels": saved["labels"],
            "indices": indices,
            "images": train.images,
            "class_names": store.class_names,
        }

    # Photos to views.

    def prepare(self, data: bytes, views: str = "center") -> Prepared:
        """Encoded bytes -> Prepared; BadImage says why a photo cannot be used."""
        if views not in VIEWS:
            raise UserError(f"views must be one of {', '.join(VIEWS)}")
        # decode raises BadImage, with its reason, whatever the bytes
        picture = self.preprocessing.decode(data, formats=WEB_FORMATS)
        return Prepared(self.preprocessing.views(picture, views), picture)

    # The network.

    @torch.inference_mode()
    def logits(self, batches: list[torch.Tensor]) -> list[torch.Tensor]:
        """The logits (V, num_classes) of each request's views, float32 on the CPU; the
        views of all the requests go through the network as one batch."""
        x = torch.cat(batches)
        out = self.session(x) if self.session is not None else self.network(x)
        return list(widened(out).float().cpu().split([len(b) for b in batches]))

    def probabilities(self, batches: list[torch.Tensor]) -> list[torch.Tensor]:
        """Each photo's softmax (num_classes,), averaged over its views (section 4.1)."""
        return [mean_softmax(logits) for logits in self.logits(batches)]

    @torch.inference_mode()
    def fc7(self, views: torch.Tensor) -> torch.Tensor:
        """fc7 (the 4096 activations fc8 reads) of a batch of views, float32."""
        views = views.to(self.device)
        with autocast(self.device, self.precision):
            out = self.model.forward_head(self.model.forward_features(views), pre_logits=True)
        return out.float().cpu()

    def top(self, probs: torch.Tensor, k: int) -> list[dict]:
        values, classes = probs.topk(min(k, probs.shape[0]))
        return [
            {
                "class": int(c),
                "id": self.record.classes.ids[int(c)],
                "name": self.record.classes.names[int(c)],
                "probability": float(v),
            }
            for v, c in zip(values, classes, strict=True)
        ]

    def explain(self, prepared: Prepared) -> dict:
        """Grad-CAM (conv5) of the top class on the center crop, as a PNG overlay."""
        from alexnet.evaluate.explain import grad_cam

        if self.explainer is None:
            raise UserError("explain needs the network's weights: serve a checkpoint, not ONNX")
        x = prepared.views[:1] if len(prepared.views) == 1 else _center_of(prepared, self)
        x = x.to(self.device)
        with torch.no_grad():
            probs = torch.softmax(self.explainer(x), dim=1).cpu()
        value, chosen = probs.topk(1, dim=1)
        cam = grad_cam(self.explainer, x, self.target, chosen.to(self.device))[0, 0]
        cam = cam.cpu().numpy()
        crop = self.preprocessing.center_picture(prepared.picture)
        return {
            "layer": self.layer,
            "class": int(chosen[0, 0]),
            "name": self.record.classes.names[int(chosen[0, 0])],
            "probability": float(value[0, 0]),
            "overlay": png_data_uri(overlay(crop, cam)),
        }

    def neighbors(self, prepared: Prepared, k: int = 8) -> list[dict]:
        """The k training images nearest the photo's center view in fc7 space."""
        from alexnet.evaluate.search import nearest

        if self.index is None:
            raise UserError("no neighbor index: start the server with --index")
        x = prepared.views[:1] if len(prepared.views) == 1 else _center_of(prepared, self)
        distances, found = nearest(self.fc7(x), self.index["features"], k)
        rows = []
        for d, j in zip(distances[0].tolist(), found[0].tolist(), strict=True):
            image = int(self.index["indices"][j])
            label = int(self.index["labels"][j])
            rows.append({
                "index": image, "class": label, "name": self.index["class_names"][label],
                "distance": round(d, 4),
                "image": png_data_uri(thumbnail(np.asarray(self.index["images"][image]))),
            })  # fmt: skip
        return rows

    def warm_up(self) -> None:
        """One photo through every path, so that the first request does not pay for
        compilation (numba's view kernels) and first-touch allocation."""
        picture = sample_png(self.preprocessing.image_size, self.preprocessing.channels)
        prepared = self.prepare(picture, "ten-crop")
        self.probabilities([prepared.views, prepared.views[:1]])
        if self.explainer is not None:
            self.explain(prepared)
        if self.index is not None:
            self.neighbors(prepared, 1)

    def describe(self) -> dict:
        """GET /v1/model: the network, its classes, its preprocessing, where it came from,
        this version."""
        described = metadata.describe(self.record)
        classes = self.record.classes
        return {
            "network": self.record.network.name,
            "model": described["network"],
            "classes": [
                {"class": i, "id": c, "name": n}
                for i, (c, n) in enumerate(zip(classes.ids, classes.names, strict=True))
            ],
            "preprocessing": described["preprocessing"],
            "provenance": described["provenance"],
            "source": self.source,
            "runtime": self.runtime,
            "device": str(self.device),
            "precision": self.precision,
            "explain": self.explainer is not None,
            "neighbors": None
            if self.index is None
            else {
                "index": self.index["path"],
                "store": self.index["store"],
                "images": len(self.index["indices"]),
            },
            "version": __version__,
        }


def _device(name: str, runtime: str) -> torch.device:
    """The device a server's network runs on: the CPU, or an accelerator PyTorch sees (the
    runtimes run on the CPU)."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"{name!r} is not a device (cpu, cuda, cuda:1, ...)") from None
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"--device {name}: the server runs on cpu or cuda")
    if device.type != "cpu" and runtime != "torch":
        raise UserError(f"--runtime {runtime} runs on the CPU; --device {name} needs "
                         "--runtime torch")  # fmt: skip
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: this PyTorch sees no CUDA device")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise UserError(f"--device {name}: there are {torch.cuda.device_count()} CUDA "
                         "devices")  # fmt: skip
    return device


def mean_softmax(logits: torch.Tensor) -> torch.Tensor:
    """A photo's class probabilities from its views' logits (V, classes): the softmax of
    each view, averaged (section 4.1 of the paper)."""
    return torch.softmax(logits, dim=1).mean(0)


def _center_of(prepared: Prepared, engine: Engine) -> torch.Tensor:
    return engine.preprocessing.views(prepared.picture, "center")
