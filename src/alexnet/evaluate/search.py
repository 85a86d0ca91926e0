"""Exact nearest neighbors, in Euclidean distance and in Hamming distance of binary codes,
and how good they are (section 6.1 of the paper: retrieval with fc7).

- `nearest`: exact k-nearest neighbors in Euclidean distance, by matrix products in blocks.
- `pack_bits`, `hamming_nearest`: exact k-nearest codes by Hamming distance (XOR and
  popcount, in numpy), codes packed 64 to a word.
- `precision_at_k`: the share of each query's k neighbors with the query's label.
"""

from __future__ import annotations

import numpy as np
import torch


def nearest(
    queries: torch.Tensor, base: torch.Tensor, k: int, chunk: int = 1024, base_chunk: int = 16384
):
    """(distances, indices) of the k rows of `base` nearest each query, Euclidean, nearest
    first (up to float32 rounding). Squared distances as |q|^2 + |x|^2 - 2 q.x, a block of
    queries against a block of the base at a time, so a uint8 base (pixels) is widened a
    block at a time and memory stays bounded whatever the base's size."""
    k = min(k, len(base))
    distances, indices = [], []
    for start in range(0, len(queries), chunk):
        q = queries[start : start + chunk].float()
        q_sq = q.square().sum(1, keepdim=True)
        best_d = best_i = None
        for first in range(0, len(base), base_chunk):
            block = base[first : first + base_chunk].float()
            d2 = (q_sq + block.square().sum(1)[None] - 2 * q @ block.T).clamp_min(0)
            d, i = d2.topk(min(k, len(block)), dim=1, largest=False)
            if best_d is not None:
                d, i = torch.cat([best_d, d], 1), torch.cat([best_i, i + first], 1)
                d, pick = d.topk(min(k, d.shape[1]), dim=1, largest=False)
                i = i.gather(1, pick)
            best_d, best_i = d, i
        order = best_d.argsort(dim=1)
        distances.append(best_d.gather(1, order).sqrt())
        indices.append(best_i.gather(1, order))
    return torch.cat(distances), torch.cat(indices)


def pack_bits(bits: torch.Tensor) -> torch.Tensor:
    """(N, B) of 0/1 -> (N, ceil(B / 64)) int64 words, zeros past bit B."""
    n, b = bits.shape
    padded = torch.zeros(n, -(-b // 64) * 64, dtype=torch.int64)
    padded[:, :b] = bits.to(torch.int64)
    shifts = torch.arange(64, dtype=torch.int64)
    return (padded.view(n, -1, 64) << shifts).sum(-1)  # bit j of word w: code bit 64 w + j


def hamming_distances(queries: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """(Q, N) Hamming distances between packed codes, word by word: XOR, then numpy's
    popcount (one instruction per word where the CPU has it; torch has no popcount)."""
    q, b = queries.numpy().view(np.uint64), base.numpy().view(np.uint64)
    total = np.zeros((len(q), len(b)), np.int64)
    for w in range(q.shape[1]):
        total += np.bitwise_count(q[:, w, None] ^ b[None, :, w])
    return torch.from_numpy(total)


def hamming_nearest(queries: torch.Tensor, base: torch.Tensor, k: int, chunk: int = 256):
    """(distances, indices) of the k packed codes of `base` nearest each packed query in
    Hamming distance, nearest first; ties in the order of `base`."""
    k = min(k, len(base))
    position = torch.arange(len(base), dtype=torch.int64)
    distances, indices = [], []
    for start in range(0, len(queries), chunk):
        d = hamming_distances(queries[start : start + chunk], base)
        # One key per pair, distance above position: the k smallest keys are the nearest
        # codes, ties in base order, without sorting the whole row.
        keys = (d << 32 | position).topk(k, dim=1, largest=False).values
        distances.append(keys >> 32)
        indices.append(keys & 0xFFFFFFFF)
    return torch.cat(distances), torch.cat(indices)


def precision_at_k(neighbor_labels: np.ndarray, query_labels: np.ndarray) -> float:
    """Mean over queries of the share of their neighbors that have the query's label."""
    return float((neighbor_labels == query_labels[:, None]).mean())
