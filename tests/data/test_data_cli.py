"""`alexnet data prepare`, `alexnet data show` and `alexnet bench data` from the command line."""

import json

import numpy as np

from alexnet.bench.data import bench_views, table
from alexnet.cli import main

from fixtures import ROOT, image_folder, make_store


def test_prepare_then_show(tmp_path, capsys):
    src = image_folder(tmp_path / "src")
    out = tmp_path / "store"
    args = ["data", "prepare", "--source", "folder", "--src", str(src), "--out", str(out)]
    assert main([*args, "--size", "48", "--workers", "2"]) == 0
    printed = capsys.readouterr().out
    assert "12 train, 6 val images, 5 quarantined" in printed
    assert "quarantine.jsonl" in printed
    assert main(["data", "show", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["classes"] == 3 and info["splits"]["val"]["images"] == 6
    shifts = info["lighting_shift_std"]
    assert shifts["literal"] > shifts["released"] > shifts["fbresnet"] > 0
    for picture in info["pictures"]:
        with open(picture, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert main(["data", "show", str(out)]) == 0
    assert "3 classes" in capsys.readouterr().out


def test_user_mistakes_give_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code = main(
        [
            "data",
            "prepare",
            "--source",
            "folder",
            "--src",
            str(tmp_path / "empty"),
            "--out",
            str(tmp_path / "s"),
        ]
    )
    assert code == 2
    error = capsys.readouterr().err
    assert "no class folders" in error and error.count("\n") == 1
    assert main(["data", "show", str(tmp_path / "empty")]) == 2
    assert "not a prepared store" in capsys.readouterr().err


def test_view_benchmark_reports_rates(tmp_path):
    make_store(tmp_path / "s", count=8)
    result = bench_views(tmp_path / "s", images=16, repeats=2, batch=8)
    for views in ("random", "center", "ten-crop"):
        rate = result[views]["images_per_s"]
        assert 0 < rate["min"] <= rate["median"] <= rate["max"]
    fake = {"median": 1.0, "min": 1.0, "max": 1.0}
    text = table(
        {
            "machine": {"cpu": "cpu", "cores_given": 2, "torch": "x"},
            "views_one_core": result,
            "decode_one_core": {
                "photos": 3,
                "mean_side": [500, 375],
                "pillow": fake,
                "pillow_no_draft": fake,
            },
            "prepare": {
                "workers": 2,
                "images": 10,
                "images_per_s": 5.0,
                "images_per_s_per_worker": 2.5,
            },
        }
    )
    assert "random crop + flip + PCA lighting" in text and np.isfinite(rate["median"])


def test_the_data_pages_example_runs(tmp_path, monkeypatch):
    from pathlib import Path

    readme = (ROOT / "docs" / "data.md").read_text()
    blocks = [b.split("```", 1)[0] for b in readme.split("```python\n")[1:]]
    example = next(b for b in blocks if "StoreDataset" in b)
    monkeypatch.chdir(tmp_path)
    make_store(Path("stores/tiny"), count=130)
    scope = {}
    exec(example, scope)
    assert scope["images"].shape == (128, 3, 224, 224) and scope["labels"].shape == (128,)
    assert scope["val"][0][0].shape == (10, 3, 224, 224)
