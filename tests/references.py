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
