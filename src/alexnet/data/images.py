"""Decoding one image file into the paper's input: RGB, shorter side rescaled, central square.

Section 2: "rescale so the shorter side is 256, take the central 256x256 patch". The paper does
not name a resampling filter; we use Pillow's antialiased bilinear, torchvision's default,
and name the others as options. ILSVRC-2012 holds CMYK JPEGs and a PNG saved as .JPEG, so
the format is read from the bytes, never from the file name.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from alexnet.core.errors import UserError

FILTERS = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
}
DEFAULT_FILTER = "bilinear"
# Pillow's own default limit. Larger images are refused as decompression bombs.
DEFAULT_MAX_PIXELS = 89_478_485
#: The formats a photo may have (Pillow's names): those of photo datasets and cameras.
#: Only their decoders ever look at a file's bytes, so a file in another format, or
#: pretending to be one, reaches none of Pillow's other parsers (its rarely used ones are
#: where most of its advisories have been).
PHOTO_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")
#: The formats a photo sent to the server may have: the web's.
WEB_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF")


class BadImage(Exception):
    """A file that cannot become a training image; the message is the quarantine reason."""


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode as 8-bit RGB.

    Transparent images are composited over white, as a viewer shows them (plain
    `convert("RGB")` would expose whatever colour hides under alpha 0). 16- and 32-bit
    grayscale keep their top 8 bits rather than being clipped at 255.
    """
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        pixels = np.asarray(image, dtype=np.int64)
        bits = 16 if image.mode.startswith("I;16") or pixels.max(initial=0) > 255 else 8
        pixels = np.clip(pixels >> (bits - 8), 0, 255).astype(np.uint8)
        return Image.fromarray(pixels).convert("RGB")
    if image.mode == "F":
        pixels = np.clip(np.asarray(image), 0, 255).astype(np.uint8)
        return Image.fromarray(pixels).convert("RGB")
    return image.convert("RGB")


def resize_shorter_side(image: Image.Image, size: int, resample: int) -> Image.Image:
    """Rescale so the shorter side is `size`, keeping the aspect ratio (longer side rounded)."""
    width, height = image.size
    scale = size / min(width, height)
    new = (max(size, round(width * scale)), max(size, round(height * scale)))
    if new == image.size:
        return image
    # reducing_gap=None: the exact antialiased filter, no coarse box pre-reduction.
    return image.resize(new, resample)


def center_square(image: Image.Image, size: int) -> Image.Image:
    """The central size x size patch; an odd margin leaves the extra pixel on the right/bottom."""
    width, height = image.size
    left, top = (width - size) // 2, (height - size) // 2
    return image.crop((left, top, left + size, top + size))


def decode(
    data: bytes | Image.Image,
    size: int | None = 256,
    *,
    channels: int = 3,
    filter: str = DEFAULT_FILTER,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft: bool = True,
    exif: bool = False,
    formats: tuple[str, ...] | None = PHOTO_FORMATS,
) -> np.ndarray:
    """Encoded image bytes, or an opened Pillow image -> uint8 array (size, size, channels).

    `exif`: turn the image upright as its EXIF orientation tag says (phones store photos
    rotated and tag them). `predict` does; `prepare` does not, so a training store holds
    the pixels as the dataset's files store them (ILSVRC-2012's JPEGs were released that
    way, and the published networks were trained on them so).

    `size=None` keeps the native size (the image must then be square, as in the small
    datasets). `draft` lets libjpeg decode a large JPEG at 1/2, 1/4 or 1/8 scale, but only
    while the result keeps at least twice the target side, so the antialiased filter still
    does the final reduction (Pillow's `thumbnail` does the same). `formats`: the only
    formats tried (Pillow's names); None tries every one Pillow reads. An animated image
    gives its first frame. A Pillow image that `Image.open` gave and nobody has loaded yet
    becomes exactly what its file's bytes do (draft decoding included); a loaded one is
    resized from its full pixels. Raises BadImage, whatever the bytes.
    """
    if channels not in (1, 3):
        raise UserError(f"channels must be 1 or 3, got {channels}")
    if isinstance(data, Image.Image):
        image = data
    else:
        if not data:
            raise BadImage("empty file (0 bytes)")
        with _refusing(formats):
            image = Image.open(io.BytesIO(data), formats=formats)
    with _refusing(formats):
        width, height = image.size
        if width * height > max_pixels:
            raise BadImage(
                f"decompression bomb: {width}x{height} = {width * height:,} pixels "
                f"exceeds the limit of {max_pixels:,}"
            )
        if draft and size is not None and image.format == "JPEG":
            image.draft(image.mode, (2 * size, 2 * size))
        image.load()
        if exif:
            image = ImageOps.exif_transpose(image)
    if size is None and image.width != image.height:
        raise BadImage(f"expected a square image, got {image.width}x{image.height}")
    try:
        if channels == 1:
            image = to_rgb(image).convert("L") if image.mode != "L" else image
        else:
            image = to_rgb(image)
        if size is not None:
            image = center_square(resize_shorter_side(image, size, FILTERS[filter]), size)
        pixels = np.asarray(image, dtype=np.uint8)
    except Exception as error:  # a mode or a size the converters cannot take
        raise BadImage(f"cannot convert the {image.mode} image of size {image.size} "
                       f"({type(error).__name__}: {error})"[:300]) from None  # fmt: skip
    return pixels.reshape(pixels.shape[0], pixels.shape[1], channels)


@contextlib.contextmanager
def _refusing(formats: tuple[str, ...] | None):
    """Whatever Pillow raises while it opens or decodes, as BadImage with its reason."""
    try:
        with warnings.catch_warnings():
            # Pillow only warns between 1x and 2x its limit; we refuse at 1x.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # a damaged file's complaints (corrupt EXIF, tags past the end): it decodes or
            # is refused, and says nothing in between
            warnings.simplefilter("ignore", UserWarning)
            yield
    except BadImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow itself refuses, on opening, what claims over twice its limit
        raise BadImage(f"decompression bomb: its header claims more than "
                       f"{2 * Image.MAX_IMAGE_PIXELS:,} pixels") from None  # fmt: skip
    except UnidentifiedImageError:
        if formats is not None:
            raise BadImage(f"not an image in an accepted format ({', '.join(formats)})") from None
        raise BadImage("not an image (no decoder recognises its contents)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise BadImage(f"corrupt or truncated image: {error}") from None
    except MemoryError:
        raise BadImage("decoding it takes more memory than there is") from None
    except Exception as error:  # a decoder tripped on damaged bytes (struct.error, IndexError)
        raise BadImage(f"corrupt image ({type(error).__name__}: {error})"[:300]) from None


def resize_pixels(pixels: np.ndarray, size: int, filter: str = DEFAULT_FILTER) -> np.ndarray:
    """A uint8 (h, w, channels) array rescaled and cut as `decode` does an encoded image."""
    channels = pixels.shape[-1]
    image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels)
    image = center_square(resize_shorter_side(image, size, FILTERS[filter]), size)
    return np.asarray(image, dtype=np.uint8).reshape(size, size, channels)
