"""Decoding: every image mode to RGB, the shorter side to 256, bad files refused with a reason."""

import io

import numpy as np
import pytest
from PIL import Image

from alexnet.data.images import BadImage, decode

from fixtures import bad_files, encode, every_mode, photo


@pytest.mark.parametrize("name", sorted(every_mode()))
def test_every_mode_decodes_to_rgb_uint8(name):
    pixels = decode(every_mode()[name], 64)
    assert pixels.shape == (64, 64, 3) and pixels.dtype == np.uint8
    assert pixels.std() > 5  # an image, not a blank


def test_grayscale_comes_out_with_three_equal_channels():
    pixels = decode(every_mode()["gray.jpg"], 64)
    assert np.array_equal(pixels[..., 0], pixels[..., 1])
    assert np.array_equal(pixels[..., 1], pixels[..., 2])


def test_cmyk_matches_pillows_own_conversion():
    data = encode(photo(1, (64, 64)).convert("CMYK"))
    reference = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert np.array_equal(decode(data, None, draft=False), reference)


def test_transparent_pixels_are_white_and_opaque_ones_keep_their_colour():
    image = Image.new("RGBA", (4, 4), (10, 200, 30, 255))
    image.putpixel((0, 0), (0, 0, 0, 0))
    pixels = decode(encode(image, "PNG"), None)
    assert tuple(pixels[0, 0]) == (255, 255, 255)
    assert tuple(pixels[3, 3]) == (10, 200, 30)


def test_sixteen_bit_grayscale_keeps_its_top_byte():
    values = np.array([[0, 257 * 100], [257 * 200, 65535]], dtype=np.uint16)
    pixels = decode(encode(Image.fromarray(values), "PNG"), None)
    assert pixels[..., 0].tolist() == [[0, 100], [200, 255]]


def test_png_named_jpeg_is_read_by_its_contents():
    data = every_mode()["png-named.JPEG"]
    assert np.array_equal(decode(data, 64), decode(encode(photo(0), "PNG"), 64))


def test_shorter_side_rescaled_then_central_square_taken():
    image = photo(3, (300, 150))  # landscape: 150 -> 256, 300 -> 512
    pixels = decode(encode(image, "PNG"), 256)
    resized = image.resize((512, 256), Image.Resampling.BILINEAR)
    reference = np.asarray(resized)[:, 128:384]
    assert np.array_equal(pixels, reference)
    tall = photo(4, (100, 201))  # portrait: 100 -> 256, 201 -> round(514.56) = 515
    pixels = decode(encode(tall, "PNG"), 256)
    reference = np.asarray(tall.resize((256, 515), Image.Resampling.BILINEAR))[129:385]
    assert np.array_equal(pixels, reference)


def test_draft_decoding_stays_close_to_full_decoding():
    data = encode(photo(5, (1200, 900)), quality=95)
    fast, full = decode(data, 256), decode(data, 256, draft=False)
    assert np.abs(fast.astype(int) - full.astype(int)).mean() < 2.0


def test_one_channel_output_for_grayscale_datasets():
    pixels = decode(every_mode()["rgb.jpg"], 32, channels=1)
    assert pixels.shape == (32, 32, 1)


@pytest.mark.parametrize("name", sorted(bad_files()))
def test_bad_files_are_refused_with_their_reason(name):
    data, word = bad_files()[name]
    with pytest.raises(BadImage, match=word):
        decode(data, 256)


def test_pixel_limit_is_configurable():
    data = encode(photo(6, (200, 100)), "PNG")
    decode(data, 64, max_pixels=20_000)
    with pytest.raises(BadImage, match="decompression bomb"):
        decode(data, 64, max_pixels=19_999)
