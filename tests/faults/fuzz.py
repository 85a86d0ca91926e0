"""Images to break decoders with: real files of each format, hypothesis's mutations of them,
and hand-made hard cases."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from hypothesis import strategies as st
from PIL import Image

from fixtures import bomb_png, encode, photo

FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP")


def seeds() -> dict[str, bytes]:
    """A small real file of each format (photo-like content, as decoders meet it)."""
    base = photo(11, (48, 40))
    return {
        "JPEG": encode(base, "JPEG", quality=90),
        "progressive JPEG": encode(base, "JPEG", progressive=True),
        "PNG": encode(base, "PNG"),
        "GIF": encode(base.convert("P"), "GIF"),
        "WEBP": encode(base, "WEBP"),
        "TIFF": encode(base, "TIFF"),
        "compressed TIFF": encode(base, "TIFF", compression="tiff_deflate"),
        "BMP": encode(base, "BMP"),
    }


@st.composite
def mutated(draw, seed: bytes) -> bytes:
    """The seed file with 1-8 mutations: bits flipped, bytes set to edge values, cut short,
    bytes inserted, deleted or a stretch repeated; half of the positions in the first 64
    bytes, where headers state sizes and counts."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 8))):
        if not data:
            break
        head = draw(st.booleans())
        at = draw(st.integers(0, min(63, len(data) - 1) if head else len(data) - 1))
        kind = draw(st.sampled_from(["flip", "edge", "cut", "insert", "delete", "repeat"]))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "edge":
            data[at] = draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF]))
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        else:
            length = draw(st.integers(1, 64))
            data[at:at] = data[at : at + length] * draw(st.integers(1, 8))
    return bytes(data)


def gif_frames(count: int) -> bytes:
    frames = [Image.new("P", (16, 16), i % 256) for i in range(count)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


def header_claiming_jpeg(width: int, height: int) -> bytes:
    """A small JPEG whose frame header (SOF0) claims width x height."""
    data = bytearray(encode(photo(3, (16, 16)), "JPEG"))
    at = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, at + 5, height, width)
    return bytes(data)


def hand_made() -> dict[str, tuple[bytes, bool]]:
    """name -> (bytes, whether it is a usable image)."""
    base = photo(5, (64, 48))
    rgba = base.convert("RGBA")
    rgba.putalpha(128)
    palette = base.convert("P")
    sixteen = Image.fromarray(np.asarray(base.convert("L"), np.uint16) * 257)
    progressive = encode(photo(6, (320, 240)), "JPEG", progressive=True)
    png = encode(Image.new("L", (8, 8)), "PNG")
    ihdr = struct.pack(">II", 65535, 65535) + png[24:29]
    huge_png = png[:16] + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)) + png[33:]
    return {
        "0 bytes": (b"", False),
        "1x1 pixel": (encode(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"), True),
        "PNG header claiming 65,535 x 65,535 pixels": (huge_png, False),
        "JPEG header claiming 65,535 x 65,535 pixels": (header_claiming_jpeg(65535, 65535), False),
        "PNG of 30,000 x 30,000 claimed": (bomb_png(), False),
        "palette with transparency": (encode(palette, "PNG", transparency=0), True),
        "GIF palette with transparency": (encode(palette, "GIF", transparency=3), True),
        "RGBA, half transparent": (encode(rgba, "PNG"), True),
        "16-bit gray PNG": (encode(sixteen, "PNG"), True),
        "16-bit gray TIFF": (encode(sixteen, "TIFF"), True),
        "CMYK JPEG": (encode(base.convert("CMYK"), "JPEG"), True),
        "CMYK TIFF": (encode(base.convert("CMYK"), "TIFF"), True),
        "HTML page named .jpg": (
            b"<!DOCTYPE html><html><head><title>404</title></head></html>",
            False,
        ),
        "truncated progressive JPEG": (progressive[: len(progressive) // 2], False),
        "a thousand-frame GIF": (gif_frames(1000), True),
        "SVG": (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', False),
        "PDF": (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n", False),
        "ICO (not an accepted format)": (encode(base, "ICO"), False),
        "PPM (not an accepted format)": (encode(base, "PPM"), False),
    }
