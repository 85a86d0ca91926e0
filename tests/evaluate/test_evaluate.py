"""Evaluation and prediction: top-k counts, ten-crop and ensemble averaging, the commands."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from alexnet.data.dataset import StoreDataset
from alexnet.data.store import Store
from alexnet.evaluate.metrics import softmax_batches, summarize, topk_correct
from alexnet.evaluate.predict import predict
from alexnet.models import checkpoint as ckpt
from alexnet.train.config import load_config
from alexnet.train.trainer import train

from fixtures import DEBUG, cli


@pytest.fixture(scope="module")
def run(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("evalrun") / "run"
    train(load_config(DEBUG, [f"data.store={store}", "run.epochs=1"]), out)
    return out


def test_topk_error_equals_a_brute_force_count():
    rng = np.random.default_rng(0)
    probs = rng.random((200, 12))
    labels = rng.integers(0, 12, 200)
    counts = topk_correct(torch.tensor(probs), torch.tensor(labels), ks=(1, 3, 5))
    for k in (1, 3, 5):
        brute = sum(
            labels[i] in sorted(range(12), key=lambda c: -probs[i, c])[:k] for i in range(200)
        )
        assert counts[k] == brute


def test_summary_counts_each_class_and_confusion_by_hand():
    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]])
    labels = np.array([0, 1, 1, 0])
    result = summarize(probs, labels, ["a", "b", "c"])
    assert result["top1_error"] == 0.5  # images 2 and 3 wrong
    assert [c["top1_error"] for c in result["per_class"]] == [0.5, 0.5, None]
    assert result["confusion"].tolist() == [[1, 0, 1], [1, 1, 0], [0, 0, 0]]
    assert {(p["true"], p["predicted"]) for p in result["most_confused"]} == {
        ("a", "c"),
        ("b", "a"),
    }


class MeanLogits(nn.Module):
    """Logits that depend on each crop's pixels, so crops give different softmax outputs."""

    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def forward(self, x):
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([self.scale * m, -m, m * m], dim=1)


def test_ten_crops_and_ensembles_average_the_softmax():
    torch.manual_seed(0)
    images = torch.randn(3, 10, 1, 4, 4)
    labels = torch.tensor([0, 1, 2])
    models = [MeanLogits(1.0), MeanLogits(3.0)]
    ((probs, got_labels),) = list(softmax_batches(models, [(images, labels)], torch.device("cpu")))
    expected = torch.zeros(3, 3)
    for model in models:
        for i in range(3):
            crops = [torch.softmax(model(images[i, j : j + 1]), dim=1)[0] for j in range(10)]
            expected[i] += torch.stack(crops).mean(dim=0) / 2
    torch.testing.assert_close(probs, expected)
    assert torch.equal(got_labels, labels)


def test_ten_crops_go_through_the_network_a_batch_of_images_at_a_time():
    # a batch of 128 images is 1,280 crops: at once, ten times a center batch's memory
    seen = []

    class Counting(MeanLogits):
        def forward(self, x):
            seen.append(len(x))
            return super().forward(x)

    images = torch.randn(3, 10, 1, 4, 4)
    list(softmax_batches([Counting(1.0)], [(images, torch.arange(3))], torch.device("cpu")))
    assert seen == [3] * 10


def test_predict_prepares_a_photo_as_the_store_prepared_it(store, run, tmp_path):
    split = Store(store).split("val")
    path = tmp_path / "item.png"
    Image.fromarray(split.images[3][:, :, 0]).save(path)
    checkpoint = ckpt.load(run / "checkpoints" / "last.pt")
    pre = checkpoint["record"].preprocessing
    model = ckpt.load_model(checkpoint)

    # By hand: the stored 28x28 image and mean image upscaled to 256 by torch's bilinear
    # (half-pixel centers), the difference cropped (the ten crops of the hand table:
    # corners, center, reflections) and scaled per channel as the checkpoint records
    def upscaled(a):
        a = torch.as_tensor(np.asarray(a, np.float64)).reshape(1, 1, 28, 28)
        return F.interpolate(a, size=(256, 256), mode="bilinear", align_corners=False)[0]

    difference = upscaled(split.images[3]) - upscaled(pre.mean.double())
    difference = difference * torch.tensor(pre.scale, dtype=torch.float64)[:, None, None]
    corners = [(0, 0), (0, 32), (32, 0), (32, 32), (16, 16)]
    crops = [difference[:, t : t + 224, x : x + 224] for t, x in corners]
    crops += [c.flip(-1) for c in crops]
    for views, inputs in (("center", crops[4:5]), ("ten-crop", crops)):
        (got,) = predict([str(path)], str(run / "checkpoints" / "last.pt"), views=views, top=10)
        with torch.no_grad():
            logits = model(torch.stack(inputs).float())
        expected = torch.softmax(logits, dim=1).mean(dim=0)
        probs = {e["class"]: e["probability"] for e in got["top"]}
        assert list(probs.values()) == sorted(probs.values(), reverse=True)
        for c, p in probs.items():
            assert p == pytest.approx(float(expected[c]), rel=1e-4, abs=1e-6)


def test_eval_writes_json_and_a_picture_and_an_ensemble_averages(store, run, tmp_path):
    last = run / "checkpoints" / "last.pt"
    result = cli("eval", "--checkpoint", last, last, "--data", store, "--views", "ten-crop",
                 "--out", tmp_path / "e", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    written = json.loads((tmp_path / "e" / "eval.json").read_text())
    assert (tmp_path / "e" / "eval.png").stat().st_size > 10_000
    assert printed["images"] == written["images"] == 24
    assert len(written["confusion"]) == 10 and len(written["checkpoints"]) == 2
    single = cli("eval", "--checkpoint", run, "--data", store, "--views", "ten-crop", "--json",
                 "--out", tmp_path / "f")  # fmt: skip
    # an ensemble of one network twice is that network
    assert json.loads(single.stdout)["top1_error"] == printed["top1_error"]
    # two different networks: their ten crops' softmaxes averaged, by hand
    other = tmp_path / "other"
    train(load_config(DEBUG, [f"data.store={store}", "run.epochs=1", "run.seed=1"]), other)
    pair = cli("eval", "--checkpoint", last, other, "--data", store, "--views", "ten-crop",
               "--out", tmp_path / "g", "--json")  # fmt: skip
    assert pair.returncode == 0, pair.stderr
    got = json.loads(pair.stdout)
    averaged = 0
    for path in (last, other / "checkpoints" / "last.pt"):
        loaded = ckpt.load(path)
        views = StoreDataset(store, "val", "ten-crop")
        views.normalized_as(*loaded["record"].preprocessing.normalization(256))
        x, labels = views.__getitems__(list(range(24)))  # (24, 10, 1, 224, 224)
        with torch.no_grad():
            logits = ckpt.load_model(loaded)(x.flatten(0, 1)).unflatten(0, (24, 10))
        averaged = averaged + torch.softmax(logits, dim=2).mean(dim=1) / 2
    guesses = averaged.argmax(dim=1)
    assert got["top1_error"] == pytest.approx(float((guesses != labels).float().mean()))
    confusion = np.zeros((10, 10), np.int64)
    np.add.at(confusion, (labels.numpy(), guesses.numpy()), 1)
    written = json.loads((tmp_path / "g" / "eval.json").read_text())
    assert np.array_equal(np.asarray(written["confusion"]), confusion)


def test_eval_precision_auto_records_what_it_chose(store, run, tmp_path, monkeypatch):
    import alexnet.core.runtime

    monkeypatch.setattr(alexnet.core.runtime, "cpu_has_bf16", lambda: False)
    result = cli("eval", "--checkpoint", run, "--data", store, "--precision", "auto",
                 "--out", tmp_path / "e")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "center views, fp32," in result.stdout
    assert json.loads((tmp_path / "e" / "eval.json").read_text())["precision"] == "fp32"


def test_eval_refuses_a_store_with_other_classes(run, tmp_path):
    from alexnet.data.prepare import NoProgress, Settings, prepare

    from fixtures import image_folder

    image_folder(tmp_path / "folder", bad=False)
    prepare(Settings("folder", str(tmp_path / "folder"), size=64), tmp_path / "three", workers=1,
            progress=NoProgress)  # fmt: skip
    result = cli("eval", "--checkpoint", run, "--data", tmp_path / "three")
    assert result.returncode == 2
    assert "predicts 10 classes but the store" in result.stderr and "has 3" in result.stderr


def test_predict_names_a_file_that_is_not_an_image(run, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("not a picture")
    result = cli("predict", bad, "--checkpoint", run)
    # an error row with the reason, and the exit status says a file failed
    assert result.returncode == 1 and "notes.jpg: error: not an image" in result.stdout
    assert "1 of 1 files gave no prediction" in result.stderr


def test_eval_scores_the_images_a_run_held_out_as_its_training_validated_them(store, tmp_path):
    import json

    from fixtures import cli

    run = tmp_path / "held"
    train(load_config(DEBUG, [f"data.store={store}", "run.epochs=1", "data.holdout=0.25"]), run)
    done = cli("eval", "--checkpoint", str(run / "checkpoints" / "last.pt"), "--data",
               str(store), "--holdout", str(run), "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    held = json.loads((run / "holdout.json").read_text())
    metrics = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert result["images"] == len(held["indices"]) == metrics["val_images"] == 40
    assert result["top1_error"] == pytest.approx(metrics["val_top1_error"], abs=1e-9)
    assert (run / "eval-holdout-center" / "eval.json").is_file()
    done = cli("eval", "--checkpoint", str(run), "--data", str(store), "--holdout",
               str(tmp_path))  # fmt: skip
    assert done.returncode == 2 and "no readable holdout.json" in done.stderr
