"""The paper's augmentations and test views (section 4.1), each split into drawing its random
numbers and applying them, so a test can fix the numbers and check the pixels.

- Random 224x224 patches of the 256x256 image and their horizontal reflections.
- PCA lighting: add sum_i p_i * a_i * m_i to every pixel, a_i ~ N(0, 0.1) drawn once per image
  each time it is used. The paper writes m_i = lambda_i (the eigenvalue); on 0-255 pixels that
  shifts colours by about a thousand levels, so the default is the released code's
  m_i = sqrt(lambda_i) (about ten levels). The other readings are options, see LIGHTING.
- Subtraction of the per-pixel mean image, cropped and reflected with the image.
- Test views: the center patch, or the four corner patches, the center patch and their
  reflections (ten in all).

Crop, reflection, lighting and mean subtraction are applied in one pass per image by a small
compiled loop: uint8 in, float32 out (its rate per core: `alexnet bench data`,
docs/benchmarks.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from alexnet.core.errors import UserError

CROP_SIZE = 224
LIGHTING_STD = 0.1
# How the eigenvalue lambda_i (of the covariance of 0-255 pixel values) sets the step m_i.
LIGHTING = {
    # the released cuda-convnet code: the square root, a standard deviation (about 10 levels)
    "released": lambda eigenvalues: np.sqrt(eigenvalues),
    # the paper's text read literally: the eigenvalue itself (about 1,000 levels)
    "literal": lambda eigenvalues: eigenvalues,
    # fb.resnet.torch and descendants: eigenvalues of [0, 1] pixels, the shift scaled back
    # to 0-255: 255 * lambda / 255**2 (about 5 levels)
    "fbresnet": lambda eigenvalues: eigenvalues / 255.0,
}
DEFAULT_LIGHTING = "released"


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The random numbers of one image in one epoch. Keyed by the image's index, not by its
    position in a batch, a worker or a rank, so any sampler, any number of workers or
    processes and a run resumed mid-epoch all see the same augmentation."""
    return np.random.default_rng([seed, epoch, index])


@dataclass(frozen=True)
class Crop:
    top: int
    left: int
    flip: bool


class RandomCrop:
    """A uniformly placed size x size patch, reflected with probability 1/2.

    A 256 image has 33 x 33 positions for a 224 patch (the paper's "2048" counts 32 x 32 x 2).
    """

    def __init__(self, size: int = CROP_SIZE, image_size: int = 256, flip: bool = True) -> None:
        if not 0 < size <= image_size:
            raise UserError(f"crop size {size} must be between 1 and the image size {image_size}")
        self.size, self.image_size, self.flip = size, image_size, flip

    def draw(self, rng: np.random.Generator) -> Crop:
        top, left = rng.integers(0, self.image_size - self.size + 1, size=2)
        flip = bool(rng.random() < 0.5) if self.flip else False
        return Crop(int(top), int(left), flip)


def center_crop(size: int = CROP_SIZE, image_size: int = 256) -> Crop:
    """The central patch; an odd margin puts the extra pixel right/below (as `center_square`)."""
    margin = (image_size - size) // 2
    return Crop(margin, margin, False)


def ten_crops(size: int = CROP_SIZE, image_size: int = 256) -> list[Crop]:
    """Top-left, top-right, bottom-left, bottom-right, center, then the same reflected
    (torchvision's TenCrop order)."""
    far = image_size - size
    center = center_crop(size, image_size)
    five = [(0, 0), (0, far), (far, 0), (far, far), (center.top, center.left)]
    return [Crop(t, left, flip) for flip in (False, True) for t, left in five]


class PCALighting:
    def __init__(
        self,
        eigenvalues: np.ndarray,
        eigenvectors: np.ndarray,
        std: float = LIGHTING_STD,
        scale: str = DEFAULT_LIGHTING,
    ) -> None:
        if scale not in LIGHTING:
            raise UserError(f"lighting scale must be one of {', '.join(LIGHTING)}, got {scale!r}")
        self.eigenvectors = np.asarray(eigenvectors, dtype=np.float64)  # columns p_i
        self.magnitudes = LIGHTING[scale](np.asarray(eigenvalues, dtype=np.float64))
        self.std, self.scale = std, scale

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """a_i ~ N(0, std), one per principal component."""
        return rng.normal(0.0, self.std, size=len(self.magnitudes))

    def shift(self, alphas: np.ndarray) -> np.ndarray:
        """(n, C) alphas -> (n, C) RGB values added to every pixel: [p1 p2 p3][a_i m_i]^T."""
        return (np.asarray(alphas) * self.magnitudes) @ self.eigenvectors.T


@numba.njit(nogil=True, cache=True)
def _render(source, index, top, left, flip, mean, shift, out, channels_last):  # pragma: no cover
    """out[i] = crop(source[index[i]]) - crop(mean) + shift[i], both crops reflected when
    flip[i]; `out` is (n, h, w, C) if channels_last else (n, C, h, w). Any channel count."""
    channels = source.shape[3]
    height = out.shape[1] if channels_last else out.shape[2]
    width = out.shape[2] if channels_last else out.shape[3]
    for i in range(index.shape[0]):
        image = source[index[i]]
        step = -1 if flip[i] else 1
        start = left[i] + width - 1 if flip[i] else left[i]
        for y in range(height):
            row, mean_row = image[top[i] + y], mean[top[i] + y]
            for x in range(width):
                sx = start + step * x
                for c in range(channels):
                    value = np.float32(row[sx, c]) - mean_row[sx, c] + shift[i, c]
                    if channels_last:
                        out[i, y, x, c] = value
                    else:
                        out[i, c, y, x] = value


# The same for RGB with the channel loop unrolled and the layout fixed: faster than the
# generic loop, which the compiler cannot specialise.
@numba.njit(nogil=True, cache=True)
def _render_rgb(source, index, top, left, flip, mean, shift, out):  # pragma: no cover
    height, width = out.shape[2], out.shape[3]
    for i in range(index.shape[0]):
        image = source[index[i]]
        s0, s1, s2 = shift[i, 0], shift[i, 1], shift[i, 2]
        step = -1 if flip[i] else 1
        start = left[i] + width - 1 if flip[i] else left[i]
        for y in range(height):
            row, mean_row = image[top[i] + y], mean[top[i] + y]
            out0, out1, out2 = out[i, 0, y], out[i, 1, y], out[i, 2, y]
            for x in range(width):
                sx = start + step * x
                out0[x] = np.float32(row[sx, 0]) - mean_row[sx, 0] + s0
                out1[x] = np.float32(row[sx, 1]) - mean_row[sx, 1] + s1
                out2[x] = np.float32(row[sx, 2]) - mean_row[sx, 2] + s2


@numba.njit(nogil=True, cache=True)
def _render_rgb_channels_last(source, index, top, left, flip, mean, shift, out):  # pragma: no cover
    height, width = out.shape[1], out.shape[2]
    for i in range(index.shape[0]):
        image = source[index[i]]
        s0, s1, s2 = shift[i, 0], shift[i, 1], shift[i, 2]
        step = -1 if flip[i] else 1
        start = left[i] + width - 1 if flip[i] else left[i]
        for y in range(height):
            row, mean_row, out_row = image[top[i] + y], mean[top[i] + y], out[i, y]
            for x in range(width):
                sx = start + step * x
                out_row[x, 0] = np.float32(row[sx, 0]) - mean_row[sx, 0] + s0
                out_row[x, 1] = np.float32(row[sx, 1]) - mean_row[sx, 1] + s1
                out_row[x, 2] = np.float32(row[sx, 2]) - mean_row[sx, 2] + s2


def bilinear_taps(size: int, view_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each of the `view_size` output positions of a bilinear upscale of `size` pixels:
    the two source positions and the weight of the second. Half-pixel centers, edges
    clamped: torch's F.interpolate(mode="bilinear", align_corners=False)."""
    position = np.maximum((np.arange(view_size) + 0.5) * (size / view_size) - 0.5, 0.0)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, size - 1)
    return low, high, (position - low).astype(np.float32)


@numba.njit(nogil=True, cache=True, error_model="numpy")
def _render_upscaled(
    source, index, top, left, flip, low, high, weight, mean, shift, out, channels_last
):  # pragma: no cover
    """As _render, for a source smaller than the view: each pixel of the crop is read from the
    bilinear upscale of the source image, computed on the fly and separably. First each
    source row is resampled to the crop's columns (few rows: the source is small), then each
    crop row is interpolated between two of those, a loop over contiguous memory."""
    channels, source_height = source.shape[3], source.shape[1]
    height = out.shape[1] if channels_last else out.shape[2]
    width = out.shape[2] if channels_last else out.shape[3]
    one = np.float32(1)
    across = np.empty((source_height, channels, width), np.float32)
    for i in range(index.shape[0]):
        image = source[index[i]]
        y0, x0 = top[i], left[i]
        for sy in range(source_height):
            for x in range(width):
                vx = x0 + width - 1 - x if flip[i] else x0 + x  # reflected or not
                c0, c1, wx = low[vx], high[vx], weight[vx]
                for c in range(channels):
                    across[sy, c, x] = (one - wx) * image[sy, c0, c] + wx * image[sy, c1, c]
        for y in range(height):
            vy = y0 + y
            r0, r1, wy = low[vy], high[vy], weight[vy]
            mean_row = mean[vy]
            for c in range(channels):
                a, b, s = across[r0, c], across[r1, c], shift[i, c]
                if flip[i]:
                    end = x0 + width - 1
                    for x in range(width):
                        value = (one - wy) * a[x] + wy * b[x] - mean_row[end - x, c] + s
                        if channels_last:
                            out[i, y, x, c] = value
                        else:
                            out[i, c, y, x] = value
                else:
                    for x in range(width):
                        value = (one - wy) * a[x] + wy * b[x] - mean_row[x0 + x, c] + s
                        if channels_last:
                            out[i, y, x, c] = value
                        else:
                            out[i, c, y, x] = value


def upscale(images: np.ndarray, view_size: int) -> np.ndarray:
    """(N, h, w, C) -> (N, view_size, view_size, C) float64 by the same bilinear taps."""
    low, high, weight = bilinear_taps(images.shape[1], view_size)
    images = np.asarray(images, dtype=np.float64)
    w = weight.astype(np.float64)
    rows = images[:, low] * (1 - w)[None, :, None, None] + images[:, high] * w[None, :, None, None]
    return (
        rows[:, :, low] * (1 - w)[None, None, :, None] + rows[:, :, high] * w[None, None, :, None]
    )


def render(
    source: np.ndarray,
    index: np.ndarray,
    crops: list[Crop],
    crop_size: int,
    mean: np.ndarray | None = None,
    shift: np.ndarray | None = None,
    channels_last: bool = False,
    view_size: int | None = None,
) -> np.ndarray:
    """Apply drawn crops, reflections and lighting shifts, and subtract the mean image.

    source: (N, H, W, C) uint8 or float32; index: which image each view is of; mean: (H, W, C)
    or None; shift: (n, C) or None. With `view_size` larger than the source, crops are taken
    from the source upscaled bilinearly to view_size (and `mean` is view-sized). Returns
    float32 (n, C, h, w), or (n, h, w, C) when channels_last (the memory layout of a
    channels_last NCHW tensor).
    """
    n, channels = len(crops), source.shape[3]
    side = view_size or source.shape[1]
    for crop in crops:
        if not (0 <= crop.top <= side - crop_size and 0 <= crop.left <= side - crop_size):
            raise UserError(f"{crop} does not fit a {crop_size} patch in a {side} image")
    shape = (
        (n, crop_size, crop_size, channels)
        if channels_last
        else (n, channels, crop_size, crop_size)
    )
    out = np.empty(shape, dtype=np.float32)
    if mean is None:
        mean = np.zeros((side, side, channels), dtype=np.float32)
    if shift is None:
        shift = np.zeros((n, channels), dtype=np.float32)
    placement = (
        np.asarray(index, dtype=np.int64),
        np.array([c.top for c in crops], dtype=np.int64),
        np.array([c.left for c in crops], dtype=np.int64),
        np.array([c.flip for c in crops], dtype=np.bool_),
    )
    mean = np.ascontiguousarray(mean, dtype=np.float32)
    shift = np.ascontiguousarray(shift, dtype=np.float32)
    if side == source.shape[1] and channels == 3:
        kernel = _render_rgb_channels_last if channels_last else _render_rgb
        kernel(source, *placement, mean, shift, out)
    elif side == source.shape[1]:
        _render(source, *placement, mean, shift, out, channels_last)
    else:
        taps = bilinear_taps(source.shape[1], side)
        _render_upscaled(source, *placement, *taps, mean, shift, out, channels_last)
    return out
