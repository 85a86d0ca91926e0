"""The model record: `alexnet.load`, `record.transform` against predict, serve and a hand
reference, the layouts of earlier releases, provenance, and fine-tuning on the source's
preprocessing."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

import alexnet
from alexnet.core.digest import content_digest
from alexnet.data.images import BadImage
from alexnet.data.prepare import NoProgress, Settings, prepare
from alexnet.data.preprocess import Preprocessing
from alexnet.data.store import Store
from alexnet.evaluate.predict import Photos
from alexnet.export import metadata
from alexnet.models import checkpoint as ckpt
from alexnet.models.record import Classes, ModelRecord, Network, Source
from alexnet.models.weights import untrained_checkpoint
from alexnet.train.config import load_config
from alexnet.train.trainer import train

from fixtures import DEBUG, ROOT, cli, encode, image_folder, photo, write
from references import torchvision_state_dict

DATA = ROOT / "tests" / "models" / "data"
FROZEN = ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7"]
TINY = ROOT.parent / "shared" / "data" / "tiny-imagenet-200.zip"


def real_photos() -> dict[str, bytes]:
    """Photos of ImageNet (Tiny ImageNet's 64x64 JPEGs), and what cameras and archives make
    of such photos: larger than the stored size (so draft decoding and the filter act),
    tagged as rotated, grayscale, CMYK, a PNG."""
    if not TINY.is_file():
        pytest.skip(f"{TINY} is absent (../shared/data holds it in CI)")
    with zipfile.ZipFile(TINY) as archive:
        names = sorted(n for n in archive.namelist() if n.endswith(".JPEG"))[:40]
        files = {n: archive.read(n) for n in names}
    color = next(d for d in files.values() if Image.open(io.BytesIO(d)).mode == "RGB")
    gray = next((d for d in files.values() if Image.open(io.BytesIO(d)).mode == "L"), None)
    big = Image.open(io.BytesIO(color)).resize((640, 448), Image.Resampling.BICUBIC)
    exif = Image.Exif()
    exif[0x0112] = 6  # the stored pixels are to be turned 90 degrees clockwise
    made = {
        "photo.jpg": color,
        "large.jpg": encode(big, quality=92),
        "rotated.jpg": encode(big.transpose(Image.Transpose.ROTATE_90), quality=92, exif=exif),
        "grayscale.jpg": encode(big.convert("L"), quality=92),
        "cmyk.jpg": encode(big.convert("CMYK"), quality=92),
        "photo.png": encode(big.crop((0, 0, 300, 448)), "PNG"),
    }
    if gray is not None:
        made["gray.jpg"] = gray
    return made


def rgb_checkpoint(image_size=256, scale=1 / 60) -> dict:
    """A small RGB network with a mean image that is not flat, so that its cropping shows."""
    small = {"widths": (8, 16, 16, 16, 16), "fc_width": 32}
    checkpoint = untrained_checkpoint("alexnet2012", num_classes=3, image_size=image_size,
                                      scale=scale, **small)  # fmt: skip
    y, x = np.mgrid[0:image_size, 0:image_size]
    mean = np.stack([100 + 30 * np.sin(x / 9), 110 + 20 * np.cos(y / 7), 90 + x / 8], -1)
    pre = checkpoint["record"].preprocessing
    checkpoint["record"] = checkpoint["record"].replace(
        preprocessing=pre.replace(mean=torch.tensor(mean).float())
    )
    return checkpoint


def by_hand(data: bytes, mean: np.ndarray, scale, size=256, crop=224) -> np.ndarray:
    """The section-2 preparation written out with Pillow and numpy: upright, RGB, the shorter
    side to `size` (bilinear, antialiased; libjpeg's reduced decoding of a large JPEG to no
    less than twice that side first), the central square, the center `crop`, minus the mean
    image's center, times the scale. (C, crop, crop) float32."""
    image = Image.open(io.BytesIO(data))
    if image.format == "JPEG":
        image.draft(image.mode, (2 * size, 2 * size))
    image = ImageOps.exif_transpose(image).convert("RGB")
    w, h = image.size
    shorter = size / min(w, h)
    image = image.resize((max(size, round(w * shorter)), max(size, round(h * shorter))),
                         Image.Resampling.BILINEAR, reducing_gap=None)  # fmt: skip
    left, top = (image.width - size) // 2, (image.height - size) // 2
    pixels = np.asarray(image.crop((left, top, left + size, top + size)), np.float32)
    m = (size - crop) // 2
    view = pixels[m : m + crop, m : m + crop] - mean[m : m + crop, m : m + crop].astype(np.float32)
    return (view * np.float32(scale)).transpose(2, 0, 1)


def test_transform_is_what_predict_and_serve_feed_the_network_to_the_bit(tmp_path):
    from alexnet.data.images import WEB_FORMATS
    from alexnet.serve.engine import Engine

    checkpoint = rgb_checkpoint()
    ckpt.save(tmp_path / "net.pt", checkpoint)
    model, record = alexnet.load(tmp_path / "net.pt")
    engine = Engine(str(tmp_path / "net.pt"))
    photos = real_photos()
    files = [str(write(tmp_path / name, data)) for name, data in photos.items()]
    predicted = Photos(files, record.preprocessing, "center")
    ten = Photos(files, record.preprocessing, "ten-crop")
    mean = record.preprocessing.mean.numpy()
    for i, (path, data) in enumerate(zip(files, photos.values(), strict=True)):
        x = record.transform(Image.open(path))
        assert x.shape == (3, 224, 224) and x.dtype == torch.float32
        # predict's input, serve's, and the transform's from bytes, a path and a PIL image
        assert torch.equal(predicted[i][1], x), path
        assert torch.equal(record.transform(data), x) and torch.equal(record.transform(path), x)
        assert torch.equal(engine.prepare(data).views[0], x), path
        tens = record.transform(Image.open(path), views="ten-crop")
        assert tens.shape == (10, 3, 224, 224) and torch.equal(ten[i][1], tens)
        assert torch.equal(engine.prepare(data, "ten-crop").views, tens)
        assert torch.equal(tens[4], x) and torch.equal(tens[9], x.flip(-1))
        # and what section 2 says, written out by hand
        expected = torch.from_numpy(by_hand(data, mean, 1 / 60))
        assert (x - expected).abs().max() < 1e-5, path
    assert "JPEG" in WEB_FORMATS and model.training is False
    # upright by EXIF: the same photo but for JPEG's rounding of other blocks (2 levels)
    upright, rotated = (
        record.transform(photos["large.jpg"]),
        record.transform(photos["rotated.jpg"]),
    )
    assert (rotated - upright).abs().mean() < 2 / 60
    turned = Image.open(io.BytesIO(photos["large.jpg"])).transpose(Image.Transpose.ROTATE_90)
    assert (record.transform(encode(turned, quality=92)) - upright).abs().mean() > 10 / 60
    with pytest.raises(BadImage, match="not an image"):
        record.transform(b"not a photo")


def test_load_gives_the_network_in_eval_mode_and_its_record_from_each_kind_of_file(
    debug_run, tmp_path
):
    model, record = alexnet.load(debug_run, device="cpu")  # a run directory: its last.pt
    assert not model.training and isinstance(record, ModelRecord)
    assert record.network.name == "alexnet2012" and len(record.classes) == 10
    last = ckpt.load(debug_run / "checkpoints" / "last.pt")
    assert torch.equal(model.fc8.weight, last["state_dict"]["fc8.weight"])
    out = tmp_path / "net.safetensors"
    done = cli("export", "--checkpoint", debug_run, "--format", "safetensors", "--out", out)
    assert done.returncode == 0, done.stderr
    again, exported = alexnet.load(out)
    assert exported == record and torch.equal(again.fc8.weight, model.fc8.weight)
    x = record.transform(photo(4, (90, 70)))
    with torch.no_grad():
        assert torch.equal(model(x[None]), again(x[None]))
    with pytest.raises(ckpt.CheckpointError, match="no checkpoint"):
        alexnet.load(tmp_path / "missing.pt")


@pytest.mark.parametrize("name", ["checkpoint-v1.pt", "weights-v1.safetensors"])
def test_files_of_the_layout_before_the_record_load_and_predict_as_they_did(name):
    # written by the release before the typed record, with what its predict fed the network
    expected = torch.load(DATA / "photo-v1-inputs.pt", weights_only=True)
    model, record = alexnet.load(DATA / name)
    photo_file = DATA / "photo.jpg"
    x = record.transform(Image.open(photo_file))
    assert torch.equal(x, expected["center"])
    ten = record.transform(photo_file, views="ten-crop")
    assert content_digest(ten) == expected["ten_crop_sha256"]
    with torch.no_grad():
        assert torch.equal(model(x[None])[0], expected["logits"])
    # that release recorded no filter and decoded with draft: both are what it used
    assert (record.preprocessing.filter, record.preprocessing.draft) == ("bilinear", True)
    assert record.network.config["num_classes"] == len(record.classes) == 4
    assert record.provenance.package_version == "0.1.0"


def test_an_onnx_file_of_the_layout_before_the_record_reads_as_its_checkpoint():
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(DATA / "network-v1.onnx"))
    read = metadata.read({p.key: p.value for p in model.metadata_props}, "network-v1.onnx")
    _, record = alexnet.load(DATA / "checkpoint-v1.pt")
    assert read.preprocessing == record.preprocessing
    assert (read.classes, read.network) == (record.classes, record.network)


def test_a_record_survives_every_file_format_equal(tmp_path):
    checkpoint = rgb_checkpoint()
    source = Source("runs/a #1/best.pt", "ab" * 32, "alexnet2012")
    record = checkpoint["record"].with_provenance(epoch=3, metrics={"val_top1_error": 0.25},
                                                  init_from=source, git_commit="abc")  # fmt: skip
    checkpoint["record"] = record
    ckpt.save(tmp_path / "a.pt", checkpoint)
    assert ckpt.load(tmp_path / "a.pt")["record"] == record
    values, mean = record.to_json()
    assert ModelRecord.from_json(json.loads(json.dumps(values)), mean) == record
    strings = metadata.as_strings(record)
    assert metadata.read(strings, "x.onnx") == record
    described = json.loads(strings["alexnet"])
    assert described["preprocessing"]["mean_shape"] == [256, 256, 3]
    assert described["provenance"]["init_from"]["path"] == "runs/a #1/best.pt"
    # a record is compared by value, its mean bit for bit
    changed = record.preprocessing.mean.clone()
    changed[0, 0, 0] += 1
    other = record.replace(preprocessing=record.preprocessing.replace(mean=changed))
    assert other != record


def test_a_record_refuses_facts_that_contradict_each_other():
    pre = Preprocessing(channels=3, image_size=256, view_size=256, crop_size=224, mean=None,
                        scale=None)  # fmt: skip
    network = Network("alexnet2012", {"num_classes": 3, "in_chans": 3})
    with pytest.raises(ValueError, match="3 outputs but the record names 2 classes"):
        ModelRecord(network, Classes(["a", "b"], ["A", "B"]), pre)
    with pytest.raises(ValueError, match="reads 1 channels"):
        ModelRecord(Network("x", {"num_classes": 2, "in_chans": 1}), Classes("ab", "AB"), pre)
    with pytest.raises(ValueError, match="2 class ids but 1 names"):
        Classes(["a", "b"], ["A"])
    with pytest.raises(ValueError, match="crop 300 <= view 256"):
        Preprocessing(3, 256, 256, 300, None, None)
    with pytest.raises(ValueError, match="filter must be one of"):
        Preprocessing(3, 256, 256, 224, None, None, filter="nearest")
    with pytest.raises(ValueError, match=r"mean must be per channel \(3,\)"):
        Preprocessing(3, 256, 256, 224, torch.zeros(4), None)
    with pytest.raises(ValueError, match="scale needs 3 values"):
        Preprocessing(3, 256, 256, 224, None, (1.0,))
    with pytest.raises(ValueError, match="uint8 of shape"):
        pre.decode(np.zeros((10, 10, 3), np.uint8))


def test_a_store_prepared_with_another_filter_is_predicted_with_it(tmp_path):
    # bicubic, not the default: the record says so, and a photo of the store's training set
    # given to predict becomes the very pixels the store holds for it
    src = image_folder(tmp_path / "src", per_class=3, val=1, bad=False)
    prepare(Settings("folder", str(src), 256, filter="bicubic"), tmp_path / "store",
            workers=1, progress=NoProgress)  # fmt: skip
    store = Store(tmp_path / "store")
    run = tmp_path / "run"
    train(load_config(DEBUG, [f"data.store={store.root}", "run.epochs=1",
                              "optim.batch_size=4"]), run)  # fmt: skip
    _, record = alexnet.load(run)
    assert (record.preprocessing.filter, record.preprocessing.draft) == ("bicubic", True)
    split = store.split("train")
    index = split.files.index(next(f for f in split.files if f.endswith("cat/1.jpg")))
    decoded = record.transform.decode(src / "cat" / "1.jpg")
    assert np.array_equal(decoded, np.asarray(split.images[index]))
    bilinear = record.preprocessing.replace(filter="bilinear")
    assert not np.array_equal(bilinear.decode(src / "cat" / "1.jpg"), decoded)


def test_a_checkpoint_says_where_it_came_from_wherever_it_is_copied(store, debug_run, tmp_path):
    source = debug_run / "checkpoints" / "last.pt"
    run = tmp_path / "tuned"
    train(load_config(DEBUG, [f"data.store={store}", "run.epochs=1", "data.train_images=16",
                              f"run.init_from={source}"]), run)  # fmt: skip
    copied = tmp_path / "elsewhere.pt"
    copied.write_bytes((run / "checkpoints" / "best.pt").read_bytes())
    _, record = alexnet.load(copied)
    p = record.provenance
    saved = ckpt.load(copied)
    assert p.recipe_sha256 == content_digest(saved["config"])
    manifest = (store / "manifest.json").read_bytes()
    assert p.store == str(store) and p.store_sha256 == hashlib.sha256(manifest).hexdigest()
    assert p.package_version == alexnet.__version__ and p.epoch == 1
    metrics = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert p.metrics["val_top1_error"] == metrics["val_top1_error"]
    assert p.metrics["val_top5_error"] == metrics["val_top5_error"]
    assert p.init_from == Source(str(source), hashlib.sha256(source.read_bytes()).hexdigest(),
                                 "alexnet2012")  # fmt: skip
    # and a run resumed from it keeps saying so
    train(load_config(run / "config.yaml", ["run.epochs=2"]), run, resume=True)
    _, resumed = alexnet.load(run)
    assert resumed.provenance.init_from == p.init_from and resumed.provenance.epoch == 2


def test_fine_tuning_torchvisions_weights_keeps_torchvisions_input_scale(tmp_path):
    # a store of 224-pixel images cropped whole, neither reflected nor lit: each input of
    # the first batch is a stored image minus the mean, times the scale, with nothing drawn
    torch.save(torchvision_state_dict(), tmp_path / "alexnet.pth")
    done = cli("import", "torchvision", tmp_path / "alexnet.pth", "--out", tmp_path / "tv.pt")
    assert done.returncode == 0, done.stderr
    src = image_folder(tmp_path / "src", per_class=3, val=1, bad=False)
    prepare(Settings("folder", str(src), 224), tmp_path / "store", workers=1,
            progress=NoProgress)  # fmt: skip
    store = Store(tmp_path / "store")
    seen = []

    def recipe(*sets):
        return load_config(DEBUG, [
            f"data.store={store.root}", "run.epochs=1", "model.name=alexnet_owt",
            "model.widths=[64, 192, 384, 256, 256]", "model.fc_width=4096",
            f"run.init_from={tmp_path / 'tv.pt'}", "model.reinit=[fc8]", "data.crop_size=224",
            "data.flip=false", "data.lighting=none", "data.train_images=8", "data.val_images=3",
            "optim.batch_size=8", "data.normalize=none", f"optim.freeze={json.dumps(FROZEN)}",
            *sets,
        ])  # fmt: skip

    from alexnet.train.loop import Step

    original = Step.forward_backward

    class FirstBatchSeen(Exception):
        pass

    def spy(self, images, labels):
        seen.append(images.detach().clone())
        if len(seen) > 1:
            raise FirstBatchSeen  # the second run's first batch is all it is for
        return original(self, images, labels)

    Step.forward_backward = spy
    try:
        train(recipe(), tmp_path / "tuned")
        with pytest.raises(FirstBatchSeen):
            train(recipe("data.preprocessing=store"), tmp_path / "own")
    finally:
        Step.forward_backward = original
    first, own = seen[0], seen[1]
    # the 8 training images of 9, in some order (data.train_images draws them)
    stored = np.asarray(store.split("train").images[:], np.float32)
    # by hand, torchvision's preprocessing: (x / 255 - mean) / std per channel
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    expected = ((stored / 255 - mean) / std).transpose(0, 3, 1, 2)
    got = first.numpy()
    # the batch's images in some order: match each input to its stored image
    for x in got:
        assert min(np.abs(x - e).max() for e in expected) < 1e-4
    assert 0.5 < got.std() < 2  # unit scale, where the store's own would be 0-255
    assert own.std() > 20  # data.preprocessing=store: this store's mean image, no scale
    _, record = alexnet.load(tmp_path / "tuned")
    _, source = alexnet.load(tmp_path / "tv.pt")
    assert torch.equal(record.preprocessing.mean, source.preprocessing.mean)
    assert record.preprocessing.scale == source.preprocessing.scale
    log = (tmp_path / "tuned" / "train.log").read_text()
    assert "inputs made with the source's mean color" in log
    assert "data.preprocessing: store" in (tmp_path / "own" / "train.log").read_text()


def test_every_command_that_takes_a_photo_feeds_the_network_what_transform_gives(
    tmp_path, monkeypatch
):
    # features, explain and neighbors' queries, and a runtime reading an exported file's
    # metadata, on real photos (rotated, CMYK, grayscale): the network's input, bit for bit
    import alexnet.evaluate.explain as explain
    import alexnet.evaluate.features as features
    import alexnet.evaluate.neighbors as neighbors

    checkpoint = rgb_checkpoint()
    ckpt.save(tmp_path / "net.pt", checkpoint)
    model, record = alexnet.load(tmp_path / "net.pt")
    photos = {k: v for k, v in real_photos().items() if k in ("rotated.jpg", "cmyk.jpg",
                                                              "grayscale.jpg")}  # fmt: skip
    files = [str(write(tmp_path / "in" / name, data)) for name, data in sorted(photos.items())]
    expected = torch.stack([record.transform(Image.open(f)) for f in files])
    seen = {"features": [], "explain": [], "neighbors": []}

    def extract(model, batches, count, layers, out, *args):
        seen["features"] += list(batches)
        return []

    def grad_cam(net, x, target, classes):
        seen["explain"].append(x.detach().clone())
        return torch.zeros(1, classes.shape[1], *x.shape[2:])

    def fc7_features(model, views, device, precision="fp32"):
        seen["neighbors"].append(views)
        return torch.zeros(len(views), 8)

    monkeypatch.setattr(features, "extract", extract)
    monkeypatch.setattr(explain, "grad_cam", grad_cam)
    monkeypatch.setattr(neighbors, "fc7_features", fc7_features)
    monkeypatch.setattr(features, "write_index", lambda *args: None)
    features.features(str(tmp_path / "net.pt"), tmp_path / "f", ["fc7"], paths=files,
                      batch=8, progress=False)  # fmt: skip
    explain.explain_files(files, str(tmp_path / "net.pt"), tmp_path, top=1)
    base, pixels = torch.zeros(3, 8), torch.zeros(3, 256 * 256 * 3, dtype=torch.uint8)
    neighbors._query_files(files, record, model, torch.device("cpu"), "fp32", base, pixels, 2)
    assert torch.equal(torch.cat(seen["features"]), expected)
    assert torch.equal(torch.cat(seen["explain"]), expected)
    assert torch.equal(torch.cat(seen["neighbors"]), expected)
    # what a runtime reads from an exported file's metadata prepares them alike
    exported = metadata.read(metadata.as_strings(record), "net.onnx")
    assert torch.equal(torch.stack([exported.transform(f) for f in files]), expected)
