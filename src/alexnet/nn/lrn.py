"""Local response normalization, section 3.3 of the paper.

    b[i] = a[i] / (k + alpha * sum_{j = max(0, i - n/2)}^{min(N - 1, i + n/2)} a[j]^2) ** beta

"The constants k, n, alpha and beta are hyper-parameters whose values are determined using a
validation set; we used k = 2, n = 5, alpha = 10^-4, and beta = 0.75." Those four values are
written here once (`PAPER_SIZE` ...); `AlexNetConfig` and this module's defaults read them.

The paper's alpha multiplies the sum as written. The released code, Caffe and
torch.nn.LocalResponseNorm divide their alpha by n first, so their alpha = 1e-4 is 2e-5 in
the paper's formula: `convention="divided_by_n"` reads alpha their way. Either way, what
reaches the kernels (`alexnet.kernels.lrn`) is the coefficient in front of the sum.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from alexnet.core.errors import UserError
from alexnet.kernels.lrn import check_backend, lrn

#: The paper's constants (section 3.3): n, alpha, beta and k.
PAPER_SIZE = 5
PAPER_ALPHA = 1e-4
PAPER_BETA = 0.75
PAPER_K = 2.0

#: How alpha enters the denominator. "paper": k + alpha * sum (the paper's formula);
#: "divided_by_n": k + alpha / n * sum (the released code, Caffe, torch.nn.LocalResponseNorm).
LRN_CONVENTIONS = ("paper", "divided_by_n")


def coefficient(alpha: float, size: int, convention: str) -> float:
    """The factor in front of the sum of squares, as the paper's formula writes it."""
    return alpha if convention == "paper" else alpha / size


def check_settings(size: int, groups: int, convention: str, backend: str) -> None:
    if size < 1 or size % 2 == 0:
        # The paper's window i - n/2 .. i + n/2 is n maps wide only for odd n; Caffe and
        # torch even disagree with each other about where an even window sits.
        raise UserError(f"LRN size must be a positive odd number, got {size}")
    if groups < 1:
        raise UserError(f"LRN groups must be at least 1, got {groups}")
    if convention not in LRN_CONVENTIONS:
        raise UserError(
            f"LRN convention must be one of {', '.join(LRN_CONVENTIONS)}, got {convention!r}"
        )
    check_backend(backend)


def local_response_norm(
    x: torch.Tensor, size: int = PAPER_SIZE, alpha: float = PAPER_ALPHA, beta: float = PAPER_BETA,
    k: float = PAPER_K, groups: int = 1, convention: str = "paper", backend: str = "auto"
) -> torch.Tensor:  # fmt: skip
    """The paper's LRN of (N, C, ...) maps, each of `groups` towers normalized separately, so
    no sum crosses from tower A into tower B."""
    check_settings(size, groups, convention, backend)
    return _normalize(x, size, alpha, beta, k, groups, convention, backend)


def _normalize(x, size, alpha, beta, k, groups, convention, backend) -> torch.Tensor:
    """`local_response_norm` with its settings already checked (the module checks them once)."""
    if x.dim() < 3:
        raise UserError(f"LocalResponseNorm expects (N, C, ...) input, got shape {tuple(x.shape)}")
    if x.shape[1] % groups:
        raise UserError(
            f"LocalResponseNorm with groups={groups} needs a channel count divisible "
            f"by {groups}, got {x.shape[1]}"
        )
    return lrn(x, size, coefficient(alpha, size, convention), beta, k, groups, backend)


class LocalResponseNorm(nn.Module):
    """Local response normalization across adjacent maps (section 3.3), as a module.

    Defaults are the paper's: n = 5, alpha = 1e-4, beta = 0.75, k = 2, alpha as written in
    the formula (`convention`). `groups` splits the maps into that many towers that are
    normalized separately. The arithmetic is `alexnet.kernels.lrn`'s: a fused kernel with the
    closed-form gradient on CPU, Triton or torch operations elsewhere (`backend` chooses).
    """

    def __init__(
        self,
        size: int = PAPER_SIZE,
        alpha: float = PAPER_ALPHA,
        beta: float = PAPER_BETA,
        k: float = PAPER_K,
        groups: int = 1,
        convention: str = "paper",
        backend: str = "auto",
    ) -> None:
        super().__init__()
        check_settings(size, groups, convention, backend)
        self.size = size
        self.alpha = alpha
        self.beta = beta
        self.k = k
        self.groups = groups
        self.convention = convention
        self.backend = backend

    @property
    def coefficient(self) -> float:
        """The factor in front of the sum of squares, as the paper's formula writes it."""
        return coefficient(self.alpha, self.size, self.convention)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _normalize(
            x, self.size, self.alpha, self.beta, self.k, self.groups, self.convention, self.backend
        )

    def extra_repr(self) -> str:
        return (
            f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}, "
            f"groups={self.groups}, convention={self.convention!r}"
        )


class WithinMapNorm(nn.Module):
    """cuda-convnet's `rnorm`: u / (1 + scale / size^2 * sum_{size x size} u^2) ** pow, the
    sum over the neighbourhood centred on each unit in its own map, cut at the edges. The
    paper's CIFAR-10 nets normalize this way, and the released 2012 code adds it after
    conv2's cross-map normalization (its `cnorm2`)."""

    def __init__(self, size: int = 3, scale: float = 5e-5, power: float = 0.75) -> None:
        super().__init__()
        self.size, self.scale, self.power = size, scale, power

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.size
        wide = x.double() if x.dtype == torch.float64 else x.float()  # bf16: sums in fp32
        # avg_pool2d with zero padding counted is the window's sum over n^2
        mean = F.avg_pool2d(wide**2, n, stride=1, padding=n // 2, count_include_pad=True)
        return (wide * (1.0 + self.scale * mean) ** -self.power).to(x.dtype)

    def extra_repr(self) -> str:
        return f"size={self.size}, scale={self.scale}, pow={self.power}"
