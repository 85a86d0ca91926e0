"""The datasets users have, as they have them, turned into a listing of images and labels.

A listing names every image by a *locator* a worker process can open without the others:
("file", path), ("tar", path, offset, size) for a member stored in a tar (nested tars
included: ILSVRC-2012's training tar of per-class tars), ("zip", path, member), or
("array", index) for datasets that ship as pixel arrays (Fashion-MNIST, CIFAR-10).
Labels are indices into `class_ids`, sorted WordNet ids where classes have them.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import re
import tarfile
import urllib.request
import zipfile
from pathlib import Path

import numpy as np

from alexnet.data.listing import (
    Listing,
    SourceError,
    Split,
    array_split,
    files_under,
    is_hidden,
    tar_members,
)

SOURCES = ("imagenet", "folder", "tiny-imagenet", "fashion-mnist", "cifar10")


# ---------------------------------------------------------------------------------------
# folder: one subfolder per class


def list_folder(root: Path) -> Listing:
    """`root/<class>/...` with an optional `root/val/<class>/...`, or `root/train/<class>/...`
    beside `root/val/<class>/...`. Every non-hidden file counts: one that is not an image is
    quarantined with its reason rather than silently ignored."""
    root = Path(root)
    if not root.is_dir():
        raise SourceError(f"{root} is not a folder; expected a folder with one subfolder per class")
    train_root = root / "train" if (root / "train").is_dir() else root
    classes = sorted(
        d.name
        for d in train_root.iterdir()
        if d.is_dir() and not is_hidden(d.name) and d.name not in ("train", "val", "test")
    )
    if not classes:
        raise SourceError(
            f"{train_root} has no class folders; expected one subfolder per class "
            f"(e.g. {train_root}/cat/001.jpg, {train_root}/dog/001.jpg)"
        )
    splits = {"train": _folder_split(train_root, classes, root)}
    if (root / "val").is_dir():
        val_classes = sorted(d.name for d in (root / "val").iterdir() if d.is_dir())
        unknown = sorted(set(val_classes) - set(classes))
        if unknown:
            raise SourceError(
                f"{root / 'val'} has class folders the training tree lacks: {unknown[:5]}"
            )
        splits["val"] = _folder_split(root / "val", classes, root)
    for name, split in splits.items():
        if not split:
            raise SourceError(f"the {name} split of {root} holds no files")
    return Listing("folder", classes, list(classes), splits, provenance={"src": str(root)})


def _folder_split(directory: Path, classes: list[str], root: Path) -> Split:
    split = Split()
    for label, name in enumerate(classes):
        if not (directory / name).is_dir():
            continue
        for path in files_under(directory / name):
            split.add(("file", str(path)), label, str(path.relative_to(root)))
    return split


# ---------------------------------------------------------------------------------------
# tiny-imagenet: the zip or its extracted folder


def list_tiny_imagenet(src: Path) -> Listing:
    src = Path(src)
    if src.is_file():
        return _tiny_imagenet(_ZipTree(src))
    if src.is_dir():
        inner = src / "tiny-imagenet-200"
        return _tiny_imagenet(_DirTree(inner if inner.is_dir() else src))
    raise SourceError(f"{src} does not exist; expected tiny-imagenet-200.zip or its folder")


class _DirTree:
    def __init__(self, root: Path) -> None:
        self.root, self.label = root, str(root)

    def text(self, name: str) -> str:
        path = self.root / name
        if not path.is_file():
            raise SourceError(f"{self.label} lacks {name}")
        return path.read_text(encoding="utf-8")

    def files(self, prefix: str) -> list[tuple[tuple, str]]:
        base = self.root / prefix
        if not base.is_dir():
            return []
        return [(("file", str(p)), str(p.relative_to(self.root))) for p in files_under(base)]


class _ZipTree:
    def __init__(self, path: Path) -> None:
        try:
            self.archive = zipfile.ZipFile(path)
        except zipfile.BadZipFile as error:
            raise SourceError(f"{path} is not a readable zip ({error})") from None
        self.path, self.label = str(path), str(path)
        names = [n for n in self.archive.namelist() if not n.endswith("/")]
        top = {n.split("/", 1)[0] for n in names}
        self.prefix = f"{top.pop()}/" if len(top) == 1 else ""
        self.names = sorted(n[len(self.prefix) :] for n in names if not is_hidden(n))

    def text(self, name: str) -> str:
        try:
            return self.archive.read(self.prefix + name).decode("utf-8")
        except KeyError:
            raise SourceError(f"{self.label} lacks {self.prefix}{name}") from None

    def files(self, prefix: str) -> list[tuple[tuple, str]]:
        return [
            (("zip", self.path, self.prefix + n), n) for n in self.names if n.startswith(prefix)
        ]


def _tiny_imagenet(tree) -> Listing:
    wnids = sorted(line.strip() for line in tree.text("wnids.txt").splitlines() if line.strip())
    words = dict(
        line.split("\t", 1) for line in tree.text("words.txt").splitlines() if "\t" in line
    )
    index = {w: i for i, w in enumerate(wnids)}
    train = Split()
    for locator, name in tree.files("train/"):
        parts = name.split("/")  # train/<wnid>/images/<file>
        if len(parts) == 4 and parts[2] == "images" and parts[1] in index:
            train.add(locator, index[parts[1]], name)
    val = Split()
    annotations = {}
    for line in tree.text("val/val_annotations.txt").splitlines():
        fields = line.split("\t")
        if len(fields) >= 2:
            annotations[fields[0]] = fields[1]
    val_files = tree.files("val/images/")
    if len(val_files) != len(annotations):
        raise SourceError(
            f"{tree.label}: val/val_annotations.txt labels {len(annotations)} images but "
            f"val/images holds {len(val_files)}"
        )
    for locator, name in val_files:
        wnid = annotations.get(name.rsplit("/", 1)[-1])
        if wnid not in index:
            raise SourceError(f"{tree.label}: {name} has no label in val/val_annotations.txt")
        val.add(locator, index[wnid], name)
    if not train:
        raise SourceError(f"{tree.label} has no train/<wnid>/images/*.JPEG files")
    names = [words.get(w, w).strip() for w in wnids]
    return Listing(
        "tiny-imagenet",
        wnids,
        names,
        {"train": train, "val": val},
        native_size=64,
        provenance={"src": tree.label},
    )


# ---------------------------------------------------------------------------------------
# imagenet: ILSVRC-2012 as distributed

TRAIN_TAR, VAL_TAR = "ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar"
DEVKIT = "ILSVRC2012_devkit_t12"
GROUND_TRUTH = "data/ILSVRC2012_validation_ground_truth.txt"


def read_devkit(root: Path) -> tuple[list[str], list[str], dict[int, str], list[int]]:
    """The devkit's 1000 leaf synsets and the validation ground truth.

    Returns (wnids sorted, their names, ILSVRC2012_ID -> wnid, ground-truth IDs in image
    order). The ground truth holds ILSVRC2012_IDs, which must go through meta.mat to become
    WordNet ids (the devkit's meta.mat): they are not positions in the sorted wnid list.
    """
    import scipy.io

    folder, archive = root / DEVKIT, root / f"{DEVKIT}.tar.gz"
    if folder.is_dir():
        meta_bytes = _read_or_fail(folder / "data/meta.mat")
        truth_bytes = _read_or_fail(folder / GROUND_TRUTH)
    elif archive.is_file():
        with tarfile.open(archive) as tar:
            members = {m.name.split("/", 1)[-1]: m for m in tar if m.isfile()}
            missing = [n for n in ("data/meta.mat", GROUND_TRUTH) if n not in members]
            if missing:
                raise SourceError(f"{archive} lacks {', '.join(missing)}")
            meta_bytes = tar.extractfile(members["data/meta.mat"]).read()
            truth_bytes = tar.extractfile(members[GROUND_TRUTH]).read()
    else:
        raise SourceError(
            f"missing the ILSVRC-2012 devkit: expected {archive} or {folder}/ "
            "(data/meta.mat and the validation ground truth; it gives class names and val labels)"
        )
    synsets = scipy.io.loadmat(io.BytesIO(meta_bytes), squeeze_me=True)["synsets"]
    leaves = [s for s in synsets if int(s["num_children"]) == 0]
    id_to_wnid = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in leaves}
    wnid_to_name = {str(s["WNID"]): str(s["words"]) for s in leaves}
    wnids = sorted(wnid_to_name)
    truth = [int(x) for x in truth_bytes.decode().split()]
    return wnids, [wnid_to_name[w] for w in wnids], id_to_wnid, truth


def _read_or_fail(path: Path) -> bytes:
    if not path.is_file():
        raise SourceError(f"the devkit lacks {path}")
    return path.read_bytes()


def list_imagenet(root: Path) -> Listing:
    root = Path(root)
    if not root.is_dir():
        raise SourceError(f"{root} is not a folder; expected one holding {TRAIN_TAR} or train/")
    wnids, names, id_to_wnid, truth = read_devkit(root)
    index = {w: i for i, w in enumerate(wnids)}
    splits = {}
    if (root / TRAIN_TAR).is_file() or (root / "train").is_dir():
        splits["train"] = _imagenet_train(root, index)
    if (root / VAL_TAR).is_file() or (root / "val").is_dir():
        splits["val"] = _imagenet_val(root, index, id_to_wnid, truth)
    if not splits:
        raise SourceError(
            f"{root} holds neither {TRAIN_TAR} nor train/, nor {VAL_TAR} nor val/; "
            "expected the ILSVRC-2012 files as downloaded"
        )
    return Listing("imagenet", wnids, names, splits, provenance={"src": str(root)})


def _imagenet_train(root: Path, index: dict[str, int]) -> Split:
    split = Split()
    seen = set()
    if (root / TRAIN_TAR).is_file():
        path = root / TRAIN_TAR
        with open(path, "rb") as handle:
            for outer in sorted(tar_members(path), key=lambda m: m.name):
                wnid = Path(outer.name).stem
                if not outer.name.endswith(".tar") or wnid not in index:
                    raise SourceError(f"{path}: unexpected member {outer.name}")
                handle.seek(outer.offset_data)
                for inner in sorted(tar_members(path, handle), key=lambda m: m.name):
                    # offsets are absolute: tarfile starts counting at the handle's position
                    split.add(
                        ("tar", str(path), inner.offset_data, inner.size),
                        index[wnid],
                        f"{wnid}/{inner.name}",
                    )
                seen.add(wnid)
    else:
        for folder in sorted((root / "train").iterdir()):
            if folder.is_dir() and not is_hidden(folder.name):
                if folder.name not in index:
                    raise SourceError(f"{folder} is not one of the devkit's 1000 synsets")
                for path in files_under(folder):
                    split.add(("file", str(path)), index[folder.name], f"{folder.name}/{path.name}")
                seen.add(folder.name)
    missing = sorted(set(index) - seen)
    if missing:
        raise SourceError(
            f"the training set has {len(seen)} classes, the devkit lists {len(index)}; "
            f"missing e.g. {missing[:3]}"
        )
    return split


_VAL_NUMBER = re.compile(r"ILSVRC2012_val_(\d+)")


def _imagenet_val(root: Path, index, id_to_wnid, truth) -> Split:
    if (root / VAL_TAR).is_file():
        path = root / VAL_TAR
        entries = [(("tar", str(path), m.offset_data, m.size), m.name) for m in tar_members(path)]
    else:
        entries = [
            (("file", str(p)), str(p.relative_to(root / "val"))) for p in files_under(root / "val")
        ]
    if len(entries) != len(truth):
        raise SourceError(
            f"the devkit's ground truth labels {len(truth)} validation images but "
            f"the validation set holds {len(entries)}"
        )
    split = Split()
    for locator, name in sorted(entries, key=lambda e: e[1]):
        match = _VAL_NUMBER.search(name)
        if not match:
            raise SourceError(f"{name}: expected ILSVRC2012_val_<number>.JPEG")
        ilsvrc_id = truth[int(match.group(1)) - 1]
        split.add(locator, index[id_to_wnid[ilsvrc_id]], name)
    return split


# ---------------------------------------------------------------------------------------
# fashion-mnist: idx files

FASHION_MNIST_DIRS = (Path("/usr/share/datasets/fashion-mnist"),)
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
# md5 of the official release's gzipped files (Debian recompresses, so its files differ).
FASHION_MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


def read_idx(path: Path) -> np.ndarray:
    """An idx file (gzipped or not) as an array; the header gives dtype and shape."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise SourceError(f"{path} is not an idx file of unsigned bytes")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise SourceError(f"{path} is truncated: header says {shape}, holds {body.size} bytes")
    return body.reshape(shape)


def _idx_file(folder: Path, stem: str) -> Path | None:
    for name in (stem, f"{stem}.gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def download(url: str, path: Path, md5: str) -> None:
    """Fetch `url` to `path` (any urllib scheme, file:// included) and check its md5."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
        while chunk := response.read(1 << 20):
            out.write(chunk)
    digest = hashlib.md5(partial.read_bytes()).hexdigest()
    if digest != md5:
        partial.unlink()
        raise SourceError(f"{url}: md5 {digest} does not match the release's {md5}")
    partial.replace(path)


def list_fashion_mnist(src: Path | None, download_to: Path | None = None) -> Listing:
    """From `src`, else Debian's package, else (with `download_to`) the official release."""
    candidates = [Path(src)] if src else list(FASHION_MNIST_DIRS)
    folder = next((c for c in candidates if _idx_file(c, "train-images-idx3-ubyte")), None)
    if folder is None and download_to is not None:
        for name, md5 in FASHION_MNIST_MD5.items():
            if not (download_to / name).is_file():
                download(FASHION_MNIST_URL + name, download_to / name, md5)
        folder = download_to
    if folder is None:
        raise SourceError(
            f"no Fashion-MNIST idx files in {', '.join(map(str, candidates))}; expected "
            "train-images-idx3-ubyte(.gz) and the three others (Debian: apt install "
            "dataset-fashion-mnist), or pass --download"
        )
    arrays, splits = {}, {}
    for split, stem in (("train", "train"), ("val", "t10k")):
        images_path = _idx_file(folder, f"{stem}-images-idx3-ubyte")
        labels_path = _idx_file(folder, f"{stem}-labels-idx1-ubyte")
        if images_path is None or labels_path is None:
            raise SourceError(f"{folder} lacks {stem}-images-idx3-ubyte or {stem}-labels-idx1")
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.ndim != 3 or len(images) != len(labels):
            raise SourceError(
                f"{images_path}: {len(images)} images of shape {images.shape[1:]} "
                f"but {len(labels)} labels"
            )
        arrays[split] = images[..., None]
        splits[split] = array_split(labels, f"{stem}-images-idx3-ubyte")
    return Listing(
        "fashion-mnist",
        [str(i) for i in range(10)],
        list(FASHION_MNIST_CLASSES),
        splits,
        channels=1,
        native_size=28,
        arrays=arrays,
        provenance={"src": str(folder)},
    )


# ---------------------------------------------------------------------------------------
# cifar10: the python-pickle batches or their tar.gz

CIFAR10_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]


def list_cifar10(src: Path) -> Listing:
    src = Path(src)
    if src.is_file():
        try:
            with tarfile.open(src) as tar:
                blobs = {Path(m.name).name: tar.extractfile(m).read() for m in tar if m.isfile()}
        except tarfile.ReadError as error:
            raise SourceError(f"{src} is not the cifar-10-python tar.gz ({error})") from None
    elif src.is_dir():
        folder = src / "cifar-10-batches-py" if (src / "cifar-10-batches-py").is_dir() else src
        blobs = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    else:
        raise SourceError(f"{src} does not exist; expected cifar-10-python.tar.gz or its folder")
    needed = [*CIFAR10_TRAIN, "test_batch", "batches.meta"]
    missing = [n for n in needed if n not in blobs]
    if missing:
        raise SourceError(f"{src} lacks the CIFAR-10 python batches {missing}")
    meta = pickle.loads(blobs["batches.meta"], encoding="latin1")
    arrays, splits = {}, {}
    for split, batches in (("train", CIFAR10_TRAIN), ("val", ["test_batch"])):
        images, labels = [], []
        for name in batches:
            batch = pickle.loads(blobs[name], encoding="latin1")
            images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.extend(batch["labels"])
        arrays[split] = np.concatenate(images).transpose(0, 2, 3, 1)
        splits[split] = array_split(np.asarray(labels), split)
    names = list(meta["label_names"])
    return Listing(
        "cifar10", names, names, splits, native_size=32, arrays=arrays, provenance={"src": str(src)}
    )


def list_source(source: str, src: Path | None, download_to: Path | None = None) -> Listing:
    if source not in SOURCES:
        raise SourceError(f"unknown source {source!r}; expected one of {', '.join(SOURCES)}")
    if src is None and source != "fashion-mnist":
        raise SourceError(f"--src is required for {source}")
    if source == "imagenet":
        return list_imagenet(src)
    if source == "folder":
        return list_folder(src)
    if source == "tiny-imagenet":
        return list_tiny_imagenet(src)
    if source == "fashion-mnist":
        return list_fashion_mnist(src, download_to)
    return list_cifar10(src)
