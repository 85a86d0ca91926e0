"""`alexnet predict` over folders and lists: batched, streamed, with error rows."""

from __future__ import annotations

import csv
import json

import pytest
from PIL import Image

from alexnet.evaluate.predict import Photos, list_photos, predict
from alexnet.models import checkpoint as ckpt

from fixtures import cli, encode, photo, write


@pytest.fixture
def photos(tmp_path):
    """A folder of 7 photos (two in a subfolder, one PNG) and a broken one, and a list
    naming one of them and a file that does not exist."""
    root = tmp_path / "photos"
    for k in range(5):
        write(root / f"p{k}.jpg", encode(photo(k)))
    write(root / "sub" / "q.png", encode(photo(9), "PNG"))
    write(root / "sub" / "deeper" / "r.JPEG", encode(photo(10)))
    write(root / "broken.jpg", b"<html>not a photo</html>")
    write(root / "notes.md", b"not looked at: not an image name")
    listing = tmp_path / "more.txt"
    listing.write_text(f"# comment\n{root / 'p0.jpg'}\n\n{tmp_path / 'gone.jpg'}\n")
    return root, listing


def test_folders_are_searched_recursively_and_lists_read(photos):
    root, listing = photos
    files = list_photos([str(root), str(listing)])
    names = [f.replace(str(root.parent), "") for f in files]
    assert names == ["/photos/broken.jpg", *[f"/photos/p{k}.jpg" for k in range(5)],
                     "/photos/sub/deeper/r.JPEG", "/photos/sub/q.png",
                     "/photos/p0.jpg", "/gone.jpg"]  # fmt: skip


def test_every_file_gets_a_row_in_order_and_broken_ones_say_why(photos, debug_run, tmp_path):
    root, listing = photos
    out = tmp_path / "preds.csv"
    done = cli("predict", root, listing, "--checkpoint", debug_run, "--out", out, "--batch", "3",
               "--top", "3")  # fmt: skip
    assert done.returncode == 1  # some files failed
    assert "2 of 10 files gave no prediction" in done.stderr
    rows = list(csv.DictReader(out.open()))
    assert [r["file"] for r in rows] == list_photos([str(root), str(listing)])
    errors = {r["file"].rsplit("/", 1)[-1]: r["error"] for r in rows if r["error"]}
    assert errors.keys() == {"broken.jpg", "gone.jpg"}
    assert "not an image" in errors["broken.jpg"] and "cannot read" in errors["gone.jpg"]
    # the others as predict gives them one by one
    for row in rows:
        if row["error"]:
            assert row["top1_name"] == ""
            continue
        (alone,) = predict([row["file"]], str(debug_run), top=3)
        assert [row[f"top{k}_name"] for k in (1, 2, 3)] == [e["name"] for e in alone["top"]]
        assert float(row["top1_probability"]) == pytest.approx(alone["top"][0]["probability"],
                                                               rel=1e-5)  # fmt: skip
    # JSONL with decoding in 2 worker processes: the same rows
    jsonl = tmp_path / "preds.jsonl"
    cli("predict", root, listing, "--checkpoint", debug_run, "--out", jsonl, "--workers", "2",
        "--top", "3")  # fmt: skip
    lines = [json.loads(x) for x in jsonl.read_text().splitlines()]
    assert [x["file"] for x in lines] == [r["file"] for r in rows]
    assert [x["top"][0]["name"] if x["top"] else "" for x in lines] == [
        r["top1_name"] for r in rows
    ]
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_photo_is_turned_upright_by_its_exif_orientation(debug_run, tmp_path):
    upright = photo(3, (120, 60))
    # orientation 6: the stored pixels are to be turned 90 degrees clockwise to view
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    write(tmp_path / "tagged.jpg", encode(stored, quality=95, exif=exif))
    write(tmp_path / "upright.jpg", encode(upright, quality=95))
    write(tmp_path / "untagged.jpg", encode(stored, quality=95))
    pre = ckpt.load(debug_run / "checkpoints" / "last.pt")["record"].preprocessing
    files = [str(tmp_path / n) for n in ("tagged.jpg", "upright.jpg", "untagged.jpg")]
    dataset = Photos(files, pre, "center")
    tagged, straight, sideways = (dataset[i][1] for i in range(3))  # the network's inputs
    scale = pre.scale[0]  # inputs are in pixel levels times this
    assert (tagged - straight).abs().mean() < 2 * scale  # JPEG's rounding differs a little
    assert (sideways - straight).abs().mean() > 10 * scale


def test_predict_refuses_bad_output_names(debug_run, tmp_path):
    write(tmp_path / "a.jpg", encode(photo(1)))
    for out, message in ((tmp_path / "p.txt", "must end in .csv or .jsonl"),
                         (tmp_path / "no" / "p.csv", "does not exist")):  # fmt: skip
        done = cli("predict", tmp_path / "a.jpg", "--checkpoint", debug_run, "--out", out)
        assert done.returncode == 2 and message in done.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    done = cli("predict", empty, "--checkpoint", debug_run)
    assert done.returncode == 2 and "no images found" in done.stderr
