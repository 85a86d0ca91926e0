"""The page at / in a real browser (headless Chromium, driven through the DevTools
protocol): a photo picked in its file input brings the five classes, the Grad-CAM overlay
and the nearest training images, with nothing fetched from elsewhere."""

from __future__ import annotations

import numpy as np
from PIL import Image

from browser import use_page
from wire import predict


def test_a_photo_picked_on_the_page_shows_its_classes_overlay_and_neighbors(
    server, photos, tmp_path
):
    shot = tmp_path / "page.png"
    shown = use_page(server.url + "/", photos[4], shot)
    assert not shown["console"], shown["console"]
    assert shown["external"] == []
    expected = predict(server.port, photos[4].read_bytes(), "?top=5")[2]["top"]
    assert [name for name, _ in shown["top"]] == [r["name"] for r in expected]
    assert shown["overlay"] > 0 and shown["neighbors"] == 8
    assert "ms" in shown["status"]
    # the first bar is drawn in its color, as wide as its probability
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3).astype(int)
    assert (np.abs(pixels - [0x1F, 0x4F, 0xB0]).sum(1) < 20).sum() > 100
