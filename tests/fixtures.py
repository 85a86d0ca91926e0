"""Image files, dataset layouts and stores made on the fly for the tests, the command line run
in the test's process, and the paths they share."""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import pickle
import struct
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path
from unittest import mock

import numpy as np
from PIL import Image

from alexnet.data.listing import Listing, array_split
from alexnet.data.prepare import NoProgress, Settings, prepare_listing
from alexnet.data.store import Store

#: The repository's root, and the tiny recipe the tests and CI train with.
ROOT = Path(__file__).resolve().parents[1]
DEBUG = ROOT / "configs" / "debug.yaml"


def photo(seed: int, size=(96, 72)) -> Image.Image:
    """A smooth colour image (JPEG-friendly), different for each seed."""
    rng = np.random.default_rng(seed)
    width, height = size
    y, x = np.mgrid[0:height, 0:width]
    channels = [
        127
        + 100 * np.sin(x / rng.uniform(5, 20) + rng.uniform(0, 6)) * np.cos(y / rng.uniform(5, 20))
        for _ in range(3)
    ]
    return Image.fromarray(np.clip(np.stack(channels, -1), 0, 255).astype(np.uint8))


def encode(image: Image.Image, fmt: str = "JPEG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def every_mode(seed: int = 0) -> dict[str, bytes]:
    """One file per image mode a dataset may hold, keyed by a description."""
    base = photo(seed)
    rgba = base.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(base.size))
    sixteen = Image.fromarray(np.asarray(base.convert("L"), np.uint16) * 257)  # I;16
    return {
        "rgb.jpg": encode(base),
        "cmyk.jpg": encode(base.convert("CMYK")),
        "gray.jpg": encode(base.convert("L")),
        "palette.png": encode(base.convert("P"), "PNG"),
        "palette-transparent.gif": encode(base.convert("P"), "GIF", transparency=0),
        "rgba.png": encode(rgba, "PNG"),
        "gray-alpha.png": encode(rgba.convert("LA"), "PNG"),
        "gray16.png": encode(sixteen, "PNG"),
        "bilevel.png": encode(base.convert("1"), "PNG"),
        "png-named.JPEG": encode(base, "PNG"),
        "bmp.bmp": encode(base, "BMP"),
    }


def bomb_png(width: int = 30_000, height: int = 30_000) -> bytes:
    """A tiny PNG whose header claims width x height pixels."""
    data = encode(Image.new("L", (8, 8)), "PNG")
    ihdr = struct.pack(">II", width, height) + data[24:29]
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return data[:16] + ihdr + crc + data[33:]


def bad_files() -> dict[str, tuple[bytes, str]]:
    """name -> (bytes, a word the quarantine reason must contain)."""
    good = encode(photo(99))
    png = encode(photo(98), "PNG")
    corrupt = bytearray(png)
    corrupt[60:400] = bytes(340)  # inside the compressed data: zlib fails
    return {
        "empty.jpg": (b"", "empty"),
        "notes.txt": (b"these are not pixels\n", "not an image"),
        "truncated.jpg": (good[: len(good) // 2], "truncated"),
        "corrupt.png": (bytes(corrupt), "corrupt"),
        "bomb.png": (bomb_png(), "bomb"),
    }


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def image_folder(root: Path, classes=("cat", "dog", "fox"), per_class=4, val=2, bad=True):
    """root/<class>/*.jpg plus root/val/<class>/*.jpg, the bad files in the first class."""
    for c, name in enumerate(classes):
        for k in range(per_class):
            write(root / name / f"{k}.jpg", encode(photo(100 * c + k, (80 + 8 * k, 64))))
        for k in range(val):
            write(root / "val" / name / f"v{k}.jpg", encode(photo(1000 + 100 * c + k)))
    if bad:
        for name, (data, _) in bad_files().items():
            write(root / classes[0] / name, data)
    write(root / classes[1] / ".DS_Store", b"hidden files are ignored")
    return root


def _tar_add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def imagenet(root: Path, as_tars: bool = True, classes: int = 3) -> dict:
    """ILSVRC-2012 in miniature: 3 classes whose ILSVRC2012_IDs are NOT in sorted-wnid order,
    a CMYK JPEG and a PNG named .JPEG in the training set, and the devkit. `classes` above
    3 adds classes of one small training image each (1000: the real class count)."""
    import scipy.io

    wnids = ["n02000003", "n01000001", "n03000002"]  # ILSVRC2012_ID 1, 2, 3
    words = ["third sorted", "first sorted", "last sorted"]
    extra = [f"n04{k:06d}" for k in range(classes - 3)]  # ILSVRC2012_ID 4, 5, ...
    root.mkdir(parents=True, exist_ok=True)
    synsets = np.zeros(
        classes + 1,
        dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("num_children", "O")],
    )
    for i, (w, name) in enumerate(zip(wnids, words, strict=True)):
        synsets[i] = (i + 1, w, name, 0)
    for k, w in enumerate(extra):
        synsets[3 + k] = (4 + k, w, f"class {4 + k}", 0)
    synsets[classes] = (1001, "n09999999", "an inner node", 3)  # not a class
    meta = io.BytesIO()
    scipy.io.savemat(meta, {"synsets": synsets})
    # val image k (1-based) has ILSVRC2012_ID truth[k-1]
    truth = [3, 1, 2, 2, 1, 3]
    devkit = root / "ILSVRC2012_devkit_t12.tar.gz"
    with tarfile.open(devkit, "w:gz") as tar:
        _tar_add(tar, "ILSVRC2012_devkit_t12/data/meta.mat", meta.getvalue())
        _tar_add(
            tar,
            "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt",
            "".join(f"{t}\n" for t in truth).encode(),
        )
    train = {}
    for c, wnid in enumerate(wnids):
        files = {f"{wnid}_{k}.JPEG": encode(photo(10 * c + k, (120, 90))) for k in range(3)}
        train[wnid] = files
    train[wnids[0]][f"{wnids[0]}_cmyk.JPEG"] = encode(photo(77, (90, 120)).convert("CMYK"))
    train[wnids[1]][f"{wnids[1]}_png.JPEG"] = encode(photo(78), "PNG")
    tiny = encode(photo(79, (40, 30)))
    for w in extra:
        train[w] = {f"{w}_0.JPEG": tiny}
    val = {
        f"ILSVRC2012_val_{k:08d}.JPEG": encode(photo(500 + k, (100, 140)))
        for k in range(1, len(truth) + 1)
    }
    if as_tars:
        with tarfile.open(root / "ILSVRC2012_img_train.tar", "w") as outer:
            for wnid, files in train.items():
                inner = io.BytesIO()
                with tarfile.open(fileobj=inner, mode="w") as tar:
                    for name, data in files.items():
                        _tar_add(tar, name, data)
                _tar_add(outer, f"{wnid}.tar", inner.getvalue())
        with tarfile.open(root / "ILSVRC2012_img_val.tar", "w") as tar:
            for name, data in val.items():
                _tar_add(tar, name, data)
    else:
        for wnid, files in train.items():
            for name, data in files.items():
                write(root / "train" / wnid / name, data)
        for name, data in val.items():
            write(root / "val" / name, data)
    sorted_wnids = sorted(wnids + extra)
    words += [f"class {4 + k}" for k in range(len(extra))]
    wnids = wnids + extra
    return {
        "wnids": sorted_wnids,
        "names": [words[wnids.index(w)] for w in sorted_wnids],
        "val_labels": [sorted_wnids.index(wnids[t - 1]) for t in truth],
        "train_counts": {w: len(f) for w, f in train.items()},
    }


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def fashion_mnist(root: Path, train=12, test=5, gz=True) -> dict:
    rng = np.random.default_rng(0)
    arrays = {}
    for stem, count in (("train", train), ("t10k", test)):
        images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=count).astype(np.uint8)
        arrays[stem] = (images, labels)
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            data = idx_bytes(array)
            name = f"{stem}-{kind}-ubyte"
            write(root / (name + ".gz" if gz else name), gzip.compress(data) if gz else data)
    return arrays


def cifar10(root: Path, per_batch=4, as_tar=True) -> dict:
    rng = np.random.default_rng(1)
    blobs, arrays = {}, {}
    for name in [*[f"data_batch_{i}" for i in range(1, 6)], "test_batch"]:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [int(x) for x in rng.integers(0, 10, size=per_batch)]
        blobs[name] = pickle.dumps({"data": data, "labels": labels})
        arrays[name] = (data, labels)
    names = ["airplane", "automobile", "bird", "cat", "deer"]
    names += ["dog", "frog", "horse", "ship", "truck"]
    blobs["batches.meta"] = pickle.dumps({"label_names": names})
    if as_tar:
        path = root / "cifar-10-python.tar.gz"
        root.mkdir(parents=True, exist_ok=True)
        with tarfile.open(path, "w:gz") as tar:
            for name, data in blobs.items():
                _tar_add(tar, f"cifar-10-batches-py/{name}", data)
    else:
        for name, data in blobs.items():
            write(root / "cifar-10-batches-py" / name, data)
    return arrays


def tiny_imagenet_zip(path: Path, wnids=("n02000002", "n01000001"), per_class=3) -> Path:
    import zipfile

    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        top = "tiny-imagenet-200/"
        archive.writestr(top + "wnids.txt", "\n".join(wnids) + "\n")
        archive.writestr(top + "words.txt", "".join(f"{w}\tthing {w}\n" for w in wnids))
        for c, wnid in enumerate(wnids):
            for k in range(per_class):
                image = photo(10 * c + k, (64, 64))
                if k == 0:
                    image = image.convert("L")
                archive.writestr(f"{top}train/{wnid}/images/{wnid}_{k}.JPEG", encode(image))
        lines = []
        for k in range(4):
            archive.writestr(f"{top}val/images/val_{k}.JPEG", encode(photo(70 + k, (64, 64))))
            lines.append(f"val_{k}.JPEG\t{wnids[k % 2]}\t0\t0\t10\t10\n")
        archive.writestr(top + "val/val_annotations.txt", "".join(lines))
    return path


def cli(*args) -> subprocess.CompletedProcess:
    """`alexnet ARGS` run as the command line runs it, with progress bars off, but in this
    process: its exit code and what it printed.

    A new interpreter costs 4-6 s per command on a 2-core CI machine (importing torch, and
    torch._dynamo on the first custom operator call). `python -m alexnet` itself is tested
    in test_summary; tests about processes (killed, several ranks) start their own."""
    import torch

    from alexnet.cli import main

    argv = ["alexnet", *map(str, args)]  # the commands record sys.argv as their command line
    threads = torch.get_num_threads()  # `--threads` must not outlive its command
    out, err = io.StringIO(), io.StringIO()
    with (
        mock.patch.dict(os.environ, {"ALEXNET_PROGRESS": "0"}),
        mock.patch.object(sys, "argv", argv),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        try:
            code = main(argv[1:])
        except SystemExit as exit:  # argparse's usage errors
            code = exit.code if isinstance(exit.code, int) else int(exit.code is not None)
        finally:
            torch.set_num_threads(threads)
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


def make_store(path, count=24, side=256, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(count, side, side, channels), dtype=np.uint8)
    labels = np.arange(count) % 3
    listing = Listing(
        "test",
        ["a", "b", "c"],
        ["a", "b", "c"],
        {"train": array_split(labels, "t"), "val": array_split(labels[:6], "v")},
        channels=channels,
        native_size=side,
        arrays={"train": images, "val": images[:6]},
    )
    prepare_listing(listing, Settings("test", None, None), path, progress=NoProgress)
    return Store(path), images


def step_of(run: Path) -> int:
    """The global step of a run's last checkpoint; -1 while there is none (or it is being
    written)."""
    from alexnet.models import checkpoint as ckpt

    try:
        return ckpt.load(run / "checkpoints" / "last.pt")["progress"]["global_step"]
    except (ValueError, OSError, KeyError):
        return -1


def assert_runs_end_alike(whole: Path, other: Path) -> None:
    """Two runs' last checkpoints hold the same progress (but the seconds), weights and
    velocities, bit for bit, and their metrics the same training losses."""
    import json

    import torch

    from alexnet.models import checkpoint as ckpt

    a = ckpt.load(whole / "checkpoints" / "last.pt")
    b = ckpt.load(other / "checkpoints" / "last.pt")
    timing = ("elapsed", "wall")  # seconds, not state
    assert {k: v for k, v in a["progress"].items() if k not in timing} == {
        k: v for k, v in b["progress"].items() if k not in timing
    }
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    for key, state in a["optimizer"]["state"].items():
        assert torch.equal(state["velocity"], b["optimizer"]["state"][key]["velocity"])
    losses = [[json.loads(x)["train_loss"] for x in (r / "metrics.jsonl").read_text().splitlines()]
              for r in (whole, other)]  # fmt: skip
    assert losses[0] == losses[1]
