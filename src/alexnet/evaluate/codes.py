"""Short binary codes of fc7 for retrieval, as section 6.1 of the paper suggests: an
autoencoder fc7 -> BITS sigmoid units -> fc7, trained to reconstruct, with noise added
before the sigmoid so that the code units saturate (semantic hashing, Salakhutdinov and
Hinton 2009; Krizhevsky and Hinton 2011); a code is its units thresholded at 0.5, packed
64 to a word (alexnet.evaluate.search.pack_bits).
"""

from __future__ import annotations

import torch
from torch import nn

from alexnet.evaluate.search import pack_bits


class CodeAutoencoder(nn.Module):
    """fc7 (standardized) -> hidden -> `bits` code units -> hidden -> fc7."""

    def __init__(self, features: int = 4096, bits: int = 64, hidden: int = 1024) -> None:
        super().__init__()
        self.bits = bits
        self.encoder = nn.Sequential(
            nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, bits)
        )
        self.decoder = nn.Sequential(
            nn.Linear(bits, hidden), nn.ReLU(), nn.Linear(hidden, features)
        )

    def forward(self, x: torch.Tensor, noise: float = 0.0) -> torch.Tensor:
        logits = self.encoder(x)
        if noise:
            # Noise the code must outshout: the units are driven to 0 or 1.
            logits = logits + noise * torch.randn_like(logits)
        return self.decoder(torch.sigmoid(logits))

    @torch.no_grad()
    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """Binary codes (N, bits) of 0/1."""
        return (self.encoder(x) > 0).to(torch.uint8)


def train_autoencoder(
    features: torch.Tensor,
    bits: int,
    epochs: int = 10,
    batch: int = 256,
    noise: float = 4.0,
    seed: int = 0,
    progress=None,
) -> tuple:
    """A CodeAutoencoder fitted to `features` (standardized inside); returns it with the
    (mean, std) it standardizes with and the last epoch's reconstruction loss."""
    torch.manual_seed(seed)
    mean, std = features.mean(0), features.std(0).clamp_min(1e-6)
    x = (features - mean) / std
    model = CodeAutoencoder(x.shape[1], bits)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    loss = torch.tensor(float("nan"))
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        total = 0.0
        for start in range(0, len(x), batch):
            part = x[order[start : start + batch]]
            loss = nn.functional.mse_loss(model(part, noise), part)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(part)
        if progress is not None:
            progress(epoch + 1, total / len(x))
    model.eval()
    return model, (mean, std), total / len(x)


def binary_codes(model: CodeAutoencoder, norm: tuple, features: torch.Tensor) -> torch.Tensor:
    mean, std = norm
    return pack_bits(torch.cat([model.codes((f - mean) / std) for f in features.split(4096)]))
