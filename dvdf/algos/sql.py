"""Sparse Q-Learning's value loss (Xu et al., ICLR 2023), the DVDF stage-1 value model.

The critic loss is the unweighted TD loss of :func:`dvdf.algos.iql.weighted_td_loss`.
"""

from __future__ import annotations

import torch
from torch import Tensor

SQL_ALPHA = 0.1        # docs/METHOD.md: alpha = 0.1 ...
SQL_ALPHA_ANT = 0.2    # ... and 0.2 for ant


def default_sql_alpha(robot: str) -> float:
    """The paper's alpha for a robot name ('hopper', 'ant', ...)."""
    return SQL_ALPHA_ANT if robot == "ant" else SQL_ALPHA


def sparse_value_loss(value: Tensor, target_q: Tensor, alpha: float) -> tuple[Tensor, dict]:
    """mean(1[1 + u/(2 alpha) > 0] (1 + u/(2 alpha))^2 + V(s)/alpha), u = min(Qt1, Qt2)(s, a) - V(s).

    Batch on the last dimension; returns a scalar, or ``(K,)`` for K members.
    """
    z = 1.0 + (target_q - value) / (2.0 * alpha)
    loss = (torch.where(z > 0, z.square(), torch.zeros_like(z)) + value / alpha).mean(-1)
    return loss, {"v_loss": loss.detach(), "v_mean": value.detach().mean(-1),
                  "sparsity": (z <= 0).float().mean(-1)}
