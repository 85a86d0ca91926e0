"""Training-set statistics the paper uses: the mean image and the PCA of RGB values.

Section 2: subtract "the mean over the training set of each pixel" (a 256x256x3 image), and
"PCA on the set of RGB values of all training pixels". Both are computed exactly while the
store is written: uint8 pixels summed in int64 cannot overflow below 3.6e13 images, and the
covariance is formed from integer sums in Python's exact integers, so the result does not
depend on chunking or order and equals numpy's covariance of all the pixels at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from alexnet.core.errors import UserError


@numba.njit(nogil=True, cache=True)
def _outer_sum(pixels):  # pragma: no cover
    """sum over rows of x x^T for (P, C) uint8 pixels, in int64 scalars the compiler keeps
    in registers (a numpy float64 matmul needs an 8x larger copy first, and is slower)."""
    channels = pixels.shape[1]
    outer = np.zeros((channels, channels), dtype=np.int64)
    if channels == 3:
        s00 = s01 = s02 = s11 = s12 = s22 = np.int64(0)
        for p in range(pixels.shape[0]):
            r, g, b = np.int64(pixels[p, 0]), np.int64(pixels[p, 1]), np.int64(pixels[p, 2])
            s00 += r * r
            s01 += r * g
            s02 += r * b
            s11 += g * g
            s12 += g * b
            s22 += b * b
        outer[0, 0], outer[0, 1], outer[0, 2] = s00, s01, s02
        outer[1, 1], outer[1, 2], outer[2, 2] = s11, s12, s22
    else:
        for p in range(pixels.shape[0]):
            for i in range(channels):
                for j in range(i, channels):
                    outer[i, j] += np.int64(pixels[p, i]) * np.int64(pixels[p, j])
    for i in range(channels):
        for j in range(i):
            outer[i, j] = outer[j, i]
    return outer


class PixelSums:
    """Exact running sums over uint8 images of shape (H, W, C)."""

    def __init__(self, shape: tuple[int, int, int]) -> None:
        channels = shape[-1]
        self.images = 0
        self.pixel_sum = np.zeros(shape, dtype=np.int64)  # per pixel and channel
        self.outer = np.zeros((channels, channels), dtype=np.int64)  # sum of x x^T over pixels

    def add(self, batch: np.ndarray) -> None:
        """Accumulate a (N, H, W, C) uint8 batch."""
        if len(batch) == 0:
            return
        if batch.dtype != np.uint8 or batch.shape[1:] != self.pixel_sum.shape:
            raise UserError(f"expected uint8 images of shape {self.pixel_sum.shape}")
        self.images += len(batch)
        self.pixel_sum += batch.sum(axis=0, dtype=np.int64)
        self.outer += _outer_sum(np.ascontiguousarray(batch).reshape(-1, batch.shape[-1]))

    def merge(self, other: PixelSums) -> None:
        self.images += other.images
        self.pixel_sum += other.pixel_sum
        self.outer += other.outer

    def state(self) -> dict[str, np.ndarray]:
        return {"images": np.int64(self.images), "pixel_sum": self.pixel_sum, "outer": self.outer}

    @classmethod
    def from_state(cls, state) -> PixelSums:
        sums = cls(tuple(state["pixel_sum"].shape))
        sums.images = int(state["images"])
        sums.pixel_sum[...] = state["pixel_sum"]
        sums.outer[...] = state["outer"]
        return sums

    def finish(self) -> PixelStats:
        if self.images == 0:
            raise UserError("no training images to compute statistics from")
        height, width, channels = self.pixel_sum.shape
        n = self.images * height * width  # pixels
        channel_sum = [int(s) for s in self.pixel_sum.reshape(-1, channels).sum(axis=0)]
        # Unbiased covariance (numpy's np.cov default), from exact integers:
        # cov = (n * sum(x x^T) - sum(x) sum(x)^T) / (n (n - 1)).
        denominator = n * (n - 1) if n > 1 else 1
        covariance = np.array(
            [
                [
                    (n * int(self.outer[i, j]) - channel_sum[i] * channel_sum[j]) / denominator
                    for j in range(channels)
                ]
                for i in range(channels)
            ]
        )
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)
        order = np.argsort(eigenvalues)[::-1]  # largest first, as the paper's p1, p2, p3
        eigenvalues, eigenvectors = eigenvalues[order], eigenvectors[:, order]
        # Fix each eigenvector's sign (largest component positive) so results are reproducible.
        signs = np.sign(eigenvectors[np.abs(eigenvectors).argmax(axis=0), range(channels)])
        eigenvectors = eigenvectors * np.where(signs == 0, 1, signs)
        return PixelStats(
            images=self.images,
            mean_image=self.pixel_sum / self.images,
            channel_mean=np.array(channel_sum) / n,
            covariance=covariance,
            eigenvalues=np.clip(eigenvalues, 0, None),
            eigenvectors=eigenvectors,
        )


@dataclass
class PixelStats:
    """Pixel values are on the 0-255 scale. eigenvectors[:, i] is the paper's p_i."""

    images: int
    mean_image: np.ndarray  # (H, W, C) float64
    channel_mean: np.ndarray  # (C,)
    covariance: np.ndarray  # (C, C)
    eigenvalues: np.ndarray  # (C,) descending
    eigenvectors: np.ndarray  # (C, C), columns

    def save(self, path) -> None:
        np.savez(path, **{k: np.asarray(v) for k, v in self.__dict__.items()})

    @classmethod
    def load(cls, path) -> PixelStats:
        with np.load(path) as data:
            values = {k: data[k] for k in data.files}
        values["images"] = int(values["images"])
        return cls(**values)
