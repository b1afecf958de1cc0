"""Per-batch selection and weighting of source samples (stage 3), as pure tensor functions.

Symbols (docs/METHOD.md): h = dynamics score, A = advantage, An = per-batch min-max normalised A,
lambda = ``tradeoff``, g = lambda h + (1 - lambda) An, xi = ``keep_ratio``. Every function works on
the last dimension (the batch), so leading member dimensions pass through.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Literal

import torch
from torch import Tensor

MINMAX_EPS = 1e-8
WeightRule = Literal["exp_score", "exp_combined", "uniform"]
WEIGHT_RULES: tuple[str, ...] = ("exp_score", "exp_combined", "uniform")


def minmax_normalize(x: Tensor, eps: float = MINMAX_EPS) -> Tensor:
    """(x - min x) / (max x - min x + eps) over the batch: An in [0, 1]."""
    lo = x.amin(-1, keepdim=True)
    hi = x.amax(-1, keepdim=True)
    return (x - lo) / (hi - lo + eps)


def ot_normalize(score: Tensor, eps: float = MINMAX_EPS) -> Tensor:
    """OTDF's per-batch normalisation of the OT score c to [-1, 0]."""
    return minmax_normalize(score, eps) - 1.0


def combined_score(dynamics_score: Tensor, advantage: Tensor, tradeoff: float) -> Tensor:
    """g = lambda h + (1 - lambda) An, with An the per-batch min-max of the advantage A."""
    return tradeoff * dynamics_score + (1.0 - tradeoff) * minmax_normalize(advantage)


@torch.compiler.assume_constant_result  # a config constant: no graph break on Fraction under compile
def keep_count(batch_size: int, keep_ratio: float) -> int:
    """floor(B * xi), exactly: xi is read as the decimal it was written as (0.29 * 100 -> 29, not 28)."""
    return math.floor(Fraction(repr(float(keep_ratio))) * batch_size)


def top_k_indices(score: Tensor, k: int) -> Tensor:
    """Indices of the k largest scores per batch, best first; ties go to the lower index.

    A stable descending sort makes ties deterministic on every device (``topk`` does not promise it).
    """
    order = torch.sort(score, dim=-1, descending=True, stable=True).indices
    return order[..., :k]


def kept_mask(indices: Tensor, batch_size: int) -> Tensor:
    """Boolean ``(..., B)`` mask with True at ``indices``."""
    mask = torch.zeros(*indices.shape[:-1], batch_size, dtype=torch.bool, device=indices.device)
    return mask.scatter_(-1, indices, True)


def source_weights(rule: WeightRule, dynamics_score: Tensor, combined: Tensor) -> Tensor:
    """Weights of kept source samples: exp(h) ('exp_score', the released code), exp(g), or 1."""
    if rule == "exp_score":
        return dynamics_score.exp()
    if rule == "exp_combined":
        return combined.exp()
    if rule == "uniform":
        return torch.ones_like(dynamics_score)
    raise ValueError(f"unknown weight rule {rule!r}; expected one of {WEIGHT_RULES}")
