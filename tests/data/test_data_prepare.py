"""prepare: each source, bad files quarantined, exact statistics, interruption and resume."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import alexnet.data.prepare as prepare_module
from alexnet.data.images import decode
from alexnet.data.listing import SourceError
from alexnet.data.prepare import NoProgress, PrepareError, Settings, prepare
from alexnet.data.store import Store, StoreError

from fixtures import (
    ROOT,
    bad_files,
    cifar10,
    fashion_mnist,
    image_folder,
    imagenet,
    tiny_imagenet_zip,
)

SHARED_TINY = ROOT.parent / "shared/data/tiny-imagenet-200.zip"


Silent = NoProgress


def run(source, src, out, size=64, **kwargs):
    settings = Settings(source, str(src) if src else None, size)
    kwargs.setdefault("workers", 1)
    return prepare(settings, out, progress=Silent, **kwargs)


def test_folder_store_holds_every_good_image_with_its_label(tmp_path):
    src = image_folder(tmp_path / "src")
    report = run("folder", src, tmp_path / "store", workers=2)
    store = Store(tmp_path / "store")
    assert store.class_ids == ["cat", "dog", "fox"]
    assert report.counts == {"train": 12, "val": 6}
    train = store.split("train")
    assert train.images.shape == (12, 64, 64, 3)
    assert train.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    for k in (0, 5, 11):  # each stored image is the decoded file it names
        expected = decode((src / train.files[k]).read_bytes(), 64)
        assert np.array_equal(train.images[k], expected)
    assert store.split("val").labels.tolist() == [0, 0, 1, 1, 2, 2]


def test_bad_files_are_quarantined_with_their_reasons(tmp_path):
    run("folder", image_folder(tmp_path / "src"), tmp_path / "store")
    store = Store(tmp_path / "store")
    reasons = {Path(q["file"]).name: q["reason"] for q in store.quarantine()}
    assert set(reasons) == set(bad_files())
    for name, (_, word) in bad_files().items():
        assert word in reasons[name]
    assert store.manifest["quarantined"] == 5
    assert store.manifest["splits"]["train"] == {"images": 12, "listed": 17, "quarantined": 5}


def test_strict_stops_at_the_first_bad_file(tmp_path):
    with pytest.raises(PrepareError, match="--strict"):
        run("folder", image_folder(tmp_path / "src"), tmp_path / "store", strict=True)
    with pytest.raises(StoreError, match="unfinished"):
        Store(tmp_path / "store")


def test_mean_image_and_pca_equal_direct_computation(tmp_path):
    src = image_folder(tmp_path / "src", bad=False)
    run("folder", src, tmp_path / "store", size=32)
    store = Store(tmp_path / "store")
    pixels = np.stack([decode((src / f).read_bytes(), 32) for f in store.split("train").files])
    stats = store.stats
    assert np.allclose(stats.mean_image, pixels.astype(np.float64).mean(axis=0), rtol=0, atol=1e-9)
    covariance = np.cov(pixels.reshape(-1, 3).T.astype(np.float64))
    assert np.allclose(stats.covariance, covariance, rtol=1e-12)
    values, vectors = np.linalg.eigh(covariance)
    assert np.allclose(stats.eigenvalues, values[::-1], rtol=1e-10)
    for i in range(3):  # same directions, up to sign
        assert abs(abs(stats.eigenvectors[:, i] @ vectors[:, 2 - i]) - 1) < 1e-9
    assert np.allclose(stats.eigenvectors.T @ stats.eigenvectors, np.eye(3), atol=1e-12)


def test_imagenet_val_labels_go_through_meta_mat(tmp_path):
    expected = imagenet(tmp_path / "ilsvrc")
    run("imagenet", tmp_path / "ilsvrc", tmp_path / "store", workers=2)
    store = Store(tmp_path / "store")
    assert store.class_ids == expected["wnids"]
    assert store.class_names == expected["names"]
    assert store.split("val").labels.tolist() == expected["val_labels"]
    train = store.split("train")
    counts = np.bincount(train.labels, minlength=3)
    assert counts.tolist() == [expected["train_counts"][w] for w in expected["wnids"]]
    assert store.manifest["quarantined"] == 0  # the CMYK JPEG and the PNG named .JPEG included
    assert any("cmyk" in f for f in train.files) and any("png" in f for f in train.files)


def test_imagenet_extracted_folders_give_the_same_store(tmp_path):
    imagenet(tmp_path / "tars")
    imagenet(tmp_path / "folders", as_tars=False)
    run("imagenet", tmp_path / "tars", tmp_path / "a")
    run("imagenet", tmp_path / "folders", tmp_path / "b")
    a, b = Store(tmp_path / "a"), Store(tmp_path / "b")
    for split in ("train", "val"):
        assert np.array_equal(a.split(split).images, b.split(split).images)
        assert np.array_equal(a.split(split).labels, b.split(split).labels)


def test_imagenet_problems_are_named(tmp_path):
    imagenet(tmp_path / "ilsvrc")
    (tmp_path / "ilsvrc/ILSVRC2012_devkit_t12.tar.gz").rename(tmp_path / "elsewhere.tar.gz")
    with pytest.raises(SourceError, match="missing the ILSVRC-2012 devkit"):
        run("imagenet", tmp_path / "ilsvrc", tmp_path / "s1")
    imagenet(tmp_path / "short", as_tars=False)
    next((tmp_path / "short/val").iterdir()).unlink()
    with pytest.raises(
        SourceError, match="labels 6 validation images but the validation set holds 5"
    ):
        run("imagenet", tmp_path / "short", tmp_path / "s2")


def test_tiny_imagenet_zip_and_folder(tmp_path):
    path = tiny_imagenet_zip(tmp_path / "tiny.zip")
    run("tiny-imagenet", path, tmp_path / "store", size=None)
    store = Store(tmp_path / "store")
    assert store.image_size == 64 and store.view_size == 256 and store.channels == 3
    assert store.class_ids == ["n01000001", "n02000002"]
    assert store.class_names == ["thing n01000001", "thing n02000002"]
    assert store.split("val").labels.tolist() == [1, 0, 1, 0]
    train = store.split("train")
    gray = [k for k in range(len(train)) if np.ptp(train.images[k].astype(int), axis=-1).max() == 0]
    assert len(gray) == 2  # one grayscale JPEG per class, read as RGB


def test_fashion_mnist_from_idx_files(tmp_path):
    arrays = fashion_mnist(tmp_path / "fm")
    run("fashion-mnist", tmp_path / "fm", tmp_path / "store", size=None)
    store = Store(tmp_path / "store")
    assert store.channels == 1 and store.image_size == 28 and store.view_size == 256
    assert np.array_equal(store.split("train").images[..., 0], arrays["train"][0])
    assert np.array_equal(store.split("val").labels, arrays["t10k"][1])
    assert store.class_names[9] == "Ankle boot"


def test_fashion_mnist_download_checks_the_md5(tmp_path, monkeypatch):
    from alexnet.data import sources

    fashion_mnist(tmp_path / "mirror")
    digests = {
        n: __import__("hashlib").md5((tmp_path / "mirror" / n).read_bytes()).hexdigest()
        for n in sources.FASHION_MNIST_MD5
    }
    monkeypatch.setattr(sources, "FASHION_MNIST_URL", (tmp_path / "mirror").as_uri() + "/")
    monkeypatch.setattr(sources, "FASHION_MNIST_DIRS", (tmp_path / "nowhere",))
    monkeypatch.setattr(sources, "FASHION_MNIST_MD5", digests)
    listing = sources.list_fashion_mnist(None, tmp_path / "download")
    assert len(listing.splits["train"]) == 12
    bad = dict(digests, **{"t10k-labels-idx1-ubyte.gz": "0" * 32})
    monkeypatch.setattr(sources, "FASHION_MNIST_MD5", bad)
    with pytest.raises(SourceError, match="does not match"):
        sources.list_fashion_mnist(None, tmp_path / "download2")
    assert not list((tmp_path / "download2").glob("t10k-labels*"))


@pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").exists(),
    reason="Debian's dataset-fashion-mnist package is not installed",
)
def test_fashion_mnist_from_the_debian_package():
    from alexnet.data.sources import list_fashion_mnist

    listing = list_fashion_mnist(None)
    assert len(listing.splits["train"]) == 60_000 and len(listing.splits["val"]) == 10_000
    assert listing.arrays["train"].shape == (60_000, 28, 28, 1)


@pytest.mark.parametrize("as_tar", [True, False])
def test_cifar10_batches(tmp_path, as_tar):
    arrays = cifar10(tmp_path / "c", as_tar=as_tar)
    run(
        "cifar10",
        tmp_path / "c" / ("cifar-10-python.tar.gz" if as_tar else ""),
        tmp_path / "s",
        size=None,
    )
    store = Store(tmp_path / "s")
    assert store.split("train").images.shape == (20, 32, 32, 3)
    first = arrays["data_batch_1"][0][0].reshape(3, 32, 32).transpose(1, 2, 0)
    assert np.array_equal(store.split("train").images[0], first)
    assert store.split("val").labels.tolist() == arrays["test_batch"][1]
    assert store.class_names[0] == "airplane"


def test_empty_or_malformed_sources_give_one_clear_message(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no class folders"):
        run("folder", tmp_path / "empty", tmp_path / "s")
    (tmp_path / "noimages/cat").mkdir(parents=True)
    with pytest.raises(SourceError, match="holds no files"):
        run("folder", tmp_path / "noimages", tmp_path / "s")
    with pytest.raises(SourceError, match="does not exist"):
        run("tiny-imagenet", tmp_path / "missing.zip", tmp_path / "s")
    with pytest.raises(SourceError, match="no Fashion-MNIST idx files"):
        run("fashion-mnist", tmp_path / "empty", tmp_path / "s")
    with pytest.raises(SourceError, match="lacks the CIFAR-10"):
        run("cifar10", tmp_path / "empty", tmp_path / "s")


def test_an_interrupted_prepare_resumes_to_the_same_store(tmp_path, monkeypatch):
    src = image_folder(tmp_path / "src", per_class=10)
    run("folder", src, tmp_path / "reference")
    monkeypatch.setattr(prepare_module, "CHUNK", 4)
    monkeypatch.setattr(prepare_module, "CHECKPOINT_SECONDS", 0.0)

    class Interrupting(Silent):
        seen = 0

        def update(self, n):
            Interrupting.seen += n
            if Interrupting.seen >= 12:
                raise KeyboardInterrupt

    settings = Settings("folder", str(src), 64)
    with pytest.raises(KeyboardInterrupt):
        prepare(settings, tmp_path / "store", workers=1, progress=Interrupting)
    with pytest.raises(StoreError, match="unfinished"):
        Store(tmp_path / "store")
    # rows written after the last checkpoint, as a kill would leave them, are cut back
    with open(tmp_path / "store/train/images.u8.partial", "ab") as f:
        f.write(b"\xff" * 5000)
    run("folder", src, tmp_path / "store")
    a, b = Store(tmp_path / "reference"), Store(tmp_path / "store")
    for split in ("train", "val"):
        assert np.array_equal(a.split(split).images, b.split(split).images)
        assert a.split(split).files == b.split(split).files
    assert np.array_equal(a.stats.covariance, b.stats.covariance)
    assert a.quarantine() == b.quarantine()
    assert not (tmp_path / "store/.partial").exists()


def test_a_killed_prepare_process_resumes(tmp_path):
    src = image_folder(tmp_path / "src", per_class=150, val=0, bad=False)
    out = tmp_path / "store"
    command = [
        sys.executable,
        "-m",
        "alexnet",
        "data",
        "prepare",
        "--source",
        "folder",
        "--src",
        str(src),
        "--out",
        str(out),
        "--size",
        "64",
        "--workers",
        "1",
    ]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    progress_file = out / ".partial/train.progress.npz"
    for line in process.stderr:  # tqdm's output: kill once a checkpoint exists mid-way
        if progress_file.exists() and "/450" in line and " 0/450" not in line:
            process.send_signal(signal.SIGKILL)
            break
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (out / "manifest.json").exists()
    finished = subprocess.run(command, capture_output=True, text=True, check=True)
    assert "450 train images" in finished.stdout
    run("folder", src, tmp_path / "reference")
    assert np.array_equal(
        Store(out).split("train").images, Store(tmp_path / "reference").split("train").images
    )


def test_an_existing_store_is_kept(tmp_path):
    src = image_folder(tmp_path / "src", bad=False)
    run("folder", src, tmp_path / "store")
    before = (tmp_path / "store/train/images.u8").read_bytes()
    assert run("folder", src, tmp_path / "store").already_done
    with pytest.raises(PrepareError, match="other settings"):
        run("folder", src, tmp_path / "store", size=32)
    assert (tmp_path / "store/train/images.u8").read_bytes() == before
    run("folder", src, tmp_path / "store", size=32, overwrite=True)
    assert Store(tmp_path / "store").image_size == 32
    (tmp_path / "other").mkdir()
    (tmp_path / "other/precious.txt").write_text("mine")
    with pytest.raises(PrepareError, match="not a store"):
        run("folder", src, tmp_path / "other")


def equal_channels(images: np.ndarray, chunk: int = 4096) -> list[int]:
    """Indices of the (N, H, W, 3) images whose three channels are equal everywhere."""
    found = []
    for start in range(0, len(images), chunk):
        part = np.asarray(images[start : start + chunk])
        same = ((part[..., 0] == part[..., 1]) & (part[..., 1] == part[..., 2])).all(axis=(1, 2))
        found += (start + np.flatnonzero(same)).tolist()
    return found


@pytest.mark.skipif(not SHARED_TINY.exists(), reason=f"{SHARED_TINY} is absent")
def test_the_real_tiny_imagenet(tmp_path):
    report = run("tiny-imagenet", SHARED_TINY, tmp_path / "tiny", size=None, workers=None)
    store = Store(tmp_path / "tiny")
    assert report.counts == {"train": 100_000, "val": 10_000}
    assert store.num_classes == 200 and store.manifest["quarantined"] == 0
    val = store.split("val")
    first = val.files.index("val/images/val_0.JPEG")
    assert store.class_ids[val.labels[first]] == "n03444034"
    import zipfile

    from PIL import Image

    # The grayscale files (mode "L") must come out as RGB with equal channels. Tiny ImageNet
    # has 1,989 of them (a count made by opening all 110,000 files, 26 s on a 2-core
    # machine). Every image with equal channels in the store is opened again from the zip;
    # those that are grayscale there must number 1,989, so none of them came out otherwise.
    # (Some color JPEGs have no chroma and come out with equal channels too: 135 of them.)
    equal = {name: equal_channels(store.split(name).images) for name in ("train", "val")}
    gray = {}
    with zipfile.ZipFile(SHARED_TINY) as archive:
        for name, found in equal.items():
            files = store.split(name).files
            gray[name] = []
            for k in found:
                with archive.open(f"tiny-imagenet-200/{files[k]}") as f:
                    if Image.open(f).mode == "L":
                        gray[name].append(k)
    assert len(gray["train"]) + len(gray["val"]) == 1_989
    assert len(gray["val"]) == 168 and len(equal["train"]) + len(equal["val"]) == 1_989 + 135
    assert val.images.shape[-1] == 3
    # the PCA of all training pixels' RGB values, recomputed here in float64 (every sum is
    # an integer below 2^53, so exact) and diagonalized by numpy
    images = store.split("train").images
    total, outer, count = np.zeros(3), np.zeros((3, 3)), 0
    for start in range(0, len(images), 2048):
        pixels = np.asarray(images[start : start + 2048], dtype=np.float64).reshape(-1, 3)
        total += pixels.sum(axis=0)
        outer += pixels.T @ pixels
        count += len(pixels)
    mean = total / count
    covariance = (outer - count * np.outer(mean, mean)) / (count - 1)
    expected = np.linalg.eigvalsh(covariance)[::-1]
    np.testing.assert_allclose(sorted(store.stats.eigenvalues, reverse=True), expected, rtol=1e-9)
    assert json.loads((tmp_path / "tiny/manifest.json").read_text())["native"] is True
