"""A linear probe: multinomial logistic regression on a layer's features (`alexnet probe`),
the standard measure of what a layer holds (Yosinski et al. 2014; Donahue et al.'s DeCAF).

Features are standardized with the training features' mean and standard deviation; the
weights minimize the mean cross-entropy plus l2/2 times their squared norm, full-batch, by
L-BFGS (torch), to convergence. The l2 strength is chosen from a grid on a held-out tenth
of the training features (per class, fixed seed), then the probe is refit on all of them;
the test features are looked at only to report top-1 and top-5 error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from alexnet.core.errors import UserError
from alexnet.core.progress import bar as progress_bar

L2_GRID = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


def fit(x: torch.Tensor, y: torch.Tensor, classes: int, l2: float, steps: int = 200):
    """Weights (d, classes) and biases of the probe, float64."""
    w = torch.zeros(x.shape[1], classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([w, b], lr=1, max_iter=steps, tolerance_grad=1e-9,
                                  tolerance_change=1e-12, history_size=20,
                                  line_search_fn="strong_wolfe")  # fmt: skip

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ w + b, y) + 0.5 * l2 * w.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return w.detach(), b.detach()


def errors(w, b, x, y) -> dict:
    logits = x @ w + b
    top = logits.topk(min(5, logits.shape[1]), dim=1).indices
    hits1 = (top[:, 0] == y).double().mean().item()
    hits5 = (top == y[:, None]).any(dim=1).double().mean().item()
    return {"top1_error": 1 - hits1, "top5_error": 1 - hits5, "images": len(y)}


def probe(
    train: str | Path,
    test: str | Path,
    layer: str = "fc7",
    seed: int = 0,
    rows=None,
    progress: bool = True,
) -> dict:
    """Fit on TRAIN/LAYER.npy with TRAIN/labels.npy (from `alexnet features --data`), choose
    l2 on a held-out tenth of them, report errors on TEST's. `rows`: only these rows of
    TRAIN (a subset of the images, as a training run would choose them). `progress`: a bar
    over the fits (one an l2, then the refit), which on 45,000 images of fc7 take minutes
    each."""
    from alexnet.data.loader import holdout

    def load(folder):
        folder = Path(folder)
        if not (folder / f"{layer}.npy").is_file() or not (folder / "labels.npy").is_file():
            raise UserError(f"{folder} lacks {layer}.npy or labels.npy: write them with "
                             f"`alexnet features --data STORE --layers {layer}`")  # fmt: skip
        x = np.load(folder / f"{layer}.npy").astype(np.float64)
        labels = torch.from_numpy(np.load(folder / "labels.npy"))
        return torch.from_numpy(x.reshape(len(x), -1)), labels

    x, y = load(train)
    if rows is not None:
        rows = torch.as_tensor(np.asarray(rows), dtype=torch.int64)
        x, y = x[rows], y[rows]
    x_test, y_test = load(test)
    classes = int(max(y.max(), y_test.max())) + 1
    mean, std = x.mean(0), x.std(0).clamp_min(1e-12)
    x, x_test = (x - mean) / std, (x_test - mean) / std
    held = torch.from_numpy(holdout(y.numpy(), 0.1, seed))
    rest = torch.from_numpy(np.setdiff1d(np.arange(len(y)), held.numpy()))
    scores = {}
    with progress_bar(len(L2_GRID) + 1, f"probe {layer}", "fit", show=progress) as fits:
        for l2 in L2_GRID:
            fits.set_postfix(l2=f"{l2:g}")
            w, b = fit(x[rest], y[rest], classes, l2)
            scores[l2] = errors(w, b, x[held], y[held])["top1_error"]
            fits.update(1)
        best = min(L2_GRID, key=lambda l2: (scores[l2], -l2))  # ties: the stronger penalty
        fits.set_postfix(l2=f"{best:g}", refit="all")
        w, b = fit(x, y, classes, best)
        fits.update(1)
    return {
        "layer": layer,
        "train": {"folder": str(train), "images": len(y), "features": x.shape[1]},
        "l2": best,
        "l2_heldout_top1_error": {str(k): v for k, v in scores.items()},
        "train_top1_error": errors(w, b, x, y)["top1_error"],
        "test": {"folder": str(test), **errors(w, b, x_test, y_test)},
    }
