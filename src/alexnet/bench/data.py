"""`alexnet bench`: speeds measured on the machine it runs on, with median and spread."""

from __future__ import annotations

import io
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from alexnet.bench.common import machine, measure
from alexnet.core.errors import UserError


def make_photos(folder: Path, count: int = 96, seed: int = 0) -> list[Path]:
    """ImageNet-like JPEGs (500x375 and 375x500, quality 75-95) cut from scikit-image's
    sample photographs, for when no real photographs are at hand."""
    try:
        import skimage.data
    except ImportError:
        raise UserError(
            "the decoding benchmark needs photographs: pass --photos DIR (e.g. ILSVRC-2012 "
            "validation images), or `pip install scikit-image` for its sample photographs"
        ) from None
    from PIL import Image

    rng = np.random.default_rng(seed)
    names = ["astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "retina"]
    sources = [Image.fromarray(getattr(skimage.data, n)()).convert("RGB") for n in names]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(count):
        photo = sources[k % len(sources)]
        width, height = (500, 375) if k % 3 else (375, 500)
        scale = max(width / photo.width, height / photo.height) * rng.uniform(1.0, 1.6)
        big = photo.resize(
            (int(photo.width * scale) + 1, int(photo.height * scale) + 1), Image.BICUBIC
        )
        x = int(rng.integers(0, big.width - width + 1))
        y = int(rng.integers(0, big.height - height + 1))
        path = folder / f"photo_{k:03d}.JPEG"
        big.crop((x, y, x + width, y + height)).save(path, quality=int(rng.integers(75, 96)))
        paths.append(path)
    return paths


def _synthetic_store(folder: Path, count: int) -> Path:
    """A 256x256 store of random pixels: view speed does not depend on content."""
    from alexnet.data.listing import Listing, array_split
    from alexnet.data.prepare import NoProgress, Settings, prepare_listing

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(count, 256, 256, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=count)
    listing = Listing(
        "synthetic",
        [str(i) for i in range(10)],
        [str(i) for i in range(10)],
        {"train": array_split(labels, "synthetic")},
        native_size=256,
        arrays={"train": images},
    )
    settings = Settings("synthetic", None, None)
    prepare_listing(listing, settings, folder, progress=NoProgress)
    return folder


def bench_views(store: Path, images: int, repeats: int, batch: int = 128) -> dict:
    from alexnet.data.dataset import StoreDataset

    results = {}
    for views, label in (
        ("random", "random crop + flip + PCA lighting + mean, 256 -> 224"),
        ("center", "center crop + mean"),
        ("ten-crop", "ten crops + mean (per view)"),
    ):
        dataset = StoreDataset(store, "train", views=views)
        count = len(dataset)
        batches = [np.arange(start, start + batch) % count for start in range(0, images, batch)]
        per_item = 10 if views == "ten-crop" else 1

        def run(dataset=dataset, batches=batches):
            for index in batches:
                dataset.__getitems__(index)

        rate = measure(run, len(batches) * batch * per_item, repeats)
        results[views] = {"what": label, "images_per_s": rate}
    return results


def bench_decode(photos: list[Path], repeats: int) -> dict:
    from PIL import Image

    from alexnet.data.images import decode

    data = [p.read_bytes() for p in photos]
    sizes = [Image.open(io.BytesIO(b)).size for b in data]
    results = {
        "photos": len(data),
        "mean_side": [float(np.mean([s[0] for s in sizes])), float(np.mean([s[1] for s in sizes]))],
        "mean_kb": float(np.mean([len(b) for b in data]) / 1024),
    }

    def pillow(draft=True):
        for blob in data:
            decode(blob, 256, draft=draft)

    results["pillow"] = measure(pillow, len(data), repeats)
    results["pillow_no_draft"] = measure(lambda: pillow(False), len(data), repeats)
    try:
        import cv2
    except ImportError:
        return results
    cv2.setNumThreads(1)

    def opencv():
        for blob in data:
            image = cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_COLOR)
            height, width = image.shape[:2]
            scale = 256 / min(height, width)
            new = (max(256, round(width * scale)), max(256, round(height * scale)))
            image = cv2.resize(image, new, interpolation=cv2.INTER_AREA)
            top, left = (new[1] - 256) // 2, (new[0] - 256) // 2
            image = cv2.cvtColor(image[top : top + 256, left : left + 256], cv2.COLOR_BGR2RGB)

    results["opencv"] = measure(opencv, len(data), repeats)
    return results


def bench_prepare(photos: list[Path], copies: int, workers: int) -> dict:
    """The whole `prepare` (listing, decoding in `workers` processes, writing, statistics)."""
    from alexnet.data.prepare import NoProgress, Settings, prepare

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        for k in range(copies):
            folder = src / f"class{k % 4}"
            folder.mkdir(parents=True, exist_ok=True)
            for photo in photos:
                (folder / f"{k}_{photo.name}").symlink_to(photo.resolve())
        count = copies * len(photos)
        start = time.perf_counter()
        prepare(
            Settings("folder", str(src), 256),
            Path(tmp) / "store",
            workers=workers,
            progress=NoProgress,
        )
        seconds = time.perf_counter() - start
    return {
        "images": count,
        "workers": workers,
        "seconds": seconds,
        "images_per_s": count / seconds,
        "images_per_s_per_worker": count / seconds / workers,
    }


def bench_data(
    photos: str | None = None, images: int = 2048, repeats: int = 5, store_images: int = 1024
) -> dict:
    torch.set_num_threads(1)
    result = {"machine": machine(), "command": "alexnet bench data"}
    with tempfile.TemporaryDirectory() as tmp:
        store = _synthetic_store(Path(tmp) / "store", store_images)
        result["views_one_core"] = bench_views(store, images, repeats)
        if photos:
            paths = sorted(p for p in Path(photos).iterdir() if p.is_file())
            if not paths:
                raise UserError(f"{photos} holds no files")
        else:
            paths = make_photos(Path(tmp) / "photos")
        result["decode_one_core"] = bench_decode(paths, repeats)
        workers = result["machine"]["cores_given"] or 1
        result["prepare"] = bench_prepare(paths, max(1, 1024 // len(paths)), workers)
    result["table"] = table(result)
    return result


def table(result: dict) -> str:
    m = result["machine"]
    width = 70
    lines = [
        f"alexnet bench data on {m['cpu']} ({m['cores_given']} cores given), torch {m['torch']}",
        "",
        f"{'measurement (images/s)':{width}} {'median':>7} {'min':>7} {'max':>7}",
    ]

    def row(name, rate):
        lines.append(
            f"{name:{width}} {rate['median']:7,.0f} {rate['min']:7,.0f} {rate['max']:7,.0f}"
        )

    for entry in result["views_one_core"].values():
        row(f"views, 1 core: {entry['what']}", entry["images_per_s"])
    decode = result["decode_one_core"]
    side = decode["mean_side"]
    lines.append(f"decoding: {decode['photos']} JPEGs, mean {side[0]:.0f}x{side[1]:.0f} pixels")
    row(
        "decode to 256, 1 core, Pillow (draft JPEG scaling, antialiased bilinear)", decode["pillow"]
    )
    row("decode to 256, 1 core, Pillow without draft", decode["pillow_no_draft"])
    if "opencv" in decode:
        row("decode to 256, 1 core, OpenCV (for comparison)", decode["opencv"])
    p = result["prepare"]
    name = f"prepare, {p['workers']} workers, {p['images']} images, whole command"
    lines.append(
        f"{name:{width}} {p['images_per_s']:7,.0f}"
        f"  ({p['images_per_s_per_worker']:,.0f} per worker)"
    )
    return "\n".join(lines)
