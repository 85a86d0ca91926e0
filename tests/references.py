"""Independent references that several test files compare the code with: the paper's LRN
as a naive loop, and activations large enough for it to matter; torchvision's AlexNet
written out with functional operations, and made-up weights in its layout."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


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


def torchvision_state_dict(seed: int = 0) -> dict:
    """Made-up weights in torchvision's layout (features.N / classifier.N)."""
    g = torch.Generator().manual_seed(seed)
    shapes = {"features.0": (64, 3, 11, 11), "features.3": (192, 64, 5, 5),
              "features.6": (384, 192, 3, 3), "features.8": (256, 384, 3, 3),
              "features.10": (256, 256, 3, 3), "classifier.1": (4096, 9216),
              "classifier.4": (4096, 4096), "classifier.6": (1000, 4096)}  # fmt: skip
    state = {}
    for name, shape in shapes.items():
        fan_in = int(np.prod(shape[1:]))
        state[f"{name}.weight"] = torch.randn(shape, generator=g) * (2 / fan_in) ** 0.5
        state[f"{name}.bias"] = torch.randn(shape[0], generator=g) * 0.01
    return state


def torchvision_forward(state: dict, x: torch.Tensor) -> torch.Tensor:
    """torchvision's AlexNet written out with functional ops (its features, adaptive
    average pooling to 6x6, classifier with dropout, here in evaluation mode)."""
    s = state
    x = F.max_pool2d(F.relu(F.conv2d(x, s["features.0.weight"], s["features.0.bias"], 4, 2)), 3, 2)
    x = F.max_pool2d(F.relu(F.conv2d(x, s["features.3.weight"], s["features.3.bias"], 1, 2)), 3, 2)
    x = F.relu(F.conv2d(x, s["features.6.weight"], s["features.6.bias"], 1, 1))
    x = F.relu(F.conv2d(x, s["features.8.weight"], s["features.8.bias"], 1, 1))
    x = F.max_pool2d(
        F.relu(F.conv2d(x, s["features.10.weight"], s["features.10.bias"], 1, 1)), 3, 2
    )
    x = F.adaptive_avg_pool2d(x, 6).flatten(1)
    x = F.relu(F.linear(x, s["classifier.1.weight"], s["classifier.1.bias"]))
    x = F.relu(F.linear(x, s["classifier.4.weight"], s["classifier.4.bias"]))
    return F.linear(x, s["classifier.6.weight"], s["classifier.6.bias"])
