"""Independent references that several test files compare the code with: the paper's LRN
as a naive loop, and activations large enough for it to matter."""

from __future__ import annotations

import torch


def naive_lrn(a, n=5, alpha=1e-4, beta=0.75, k=2.0, groups=1):
    """The paper's formula, one neuron at a time, each tower on its own.

    b[i] = a[i] / (k + alpha * sum_{j=max(0, i-n/2)}^{min(N-1, i+n/2)} a[j]^2) ** beta
    """
    batch, channels, height, width = a.shape
    per_group = channels // groups
    b = torch.empty_like(a)
    for g in range(groups):
        first = g * per_group
        for i in range(per_group):
            lo, hi = max(0, i - n // 2), min(per_group - 1, i + n // 2)
            for y in range(height):
                for x in range(width):
                    for s in range(batch):
                        total = sum(a[s, first + j, y, x] ** 2 for j in range(lo, hi + 1))
                        b[s, first + i, y, x] = a[s, first + i, y, x] / (k + alpha * total) ** beta
    return b


def activations(*shape, seed=0):
    # Large enough that alpha * sum is comparable with k, so the normalization matters.
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=gen, dtype=torch.float64) * 60).relu()


def naive_rnorm(u: torch.Tensor, size: int, scale: float, power: float) -> torch.Tensor:
    """cuda-convnet's rnorm: u / (1 + scale / size^2 * sum of u^2 over the size x size
    neighbourhood in the same map, centred, cut at the edges) ** pow."""
    n, c, h, w = u.shape
    out = torch.empty_like(u)
    half = size // 2
    for b in range(n):
        for f in range(c):
            for y in range(h):
                for x in range(w):
                    total = 0.0
                    for yy in range(max(0, y - half), min(h, y - half + size)):
                        for xx in range(max(0, x - half), min(w, x - half + size)):
                            total += float(u[b, f, yy, xx]) ** 2
                    out[b, f, y, x] = u[b, f, y, x] / (1 + scale / size**2 * total) ** power
    return out
