"""Implicit Q-Learning losses (Kostrikov et al., 2022), as pure functions returning (loss, info).

Shapes: the batch is the LAST dimension. Every loss is a mean over the batch, so it is a scalar for
a single model and a ``(K,)`` vector for K batched members (the learner sums members before
``backward`` so each member receives exactly its own gradient). ``info`` holds detached tensors.
"""

from __future__ import annotations

from typing import Iterable, Optional

import torch
from torch import Tensor

EXP_ADV_MAX = 100.0  # AWR clips exp(beta * advantage) here, as IQL's reference code


def expectile_value_loss(value: Tensor, target_q: Tensor, expectile: float) -> tuple[Tensor, dict]:
    """V loss mean(|tau - 1[u < 0]| u^2) with u = min(Qt1, Qt2)(s, a) - V(s), tau = ``expectile``."""
    diff = target_q - value
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    loss = (weight * diff.square()).mean(-1)
    return loss, {"v_loss": loss.detach(), "v_mean": value.detach().mean(-1)}


def td_target(reward: Tensor, done: Tensor, next_value: Tensor, discount: float) -> Tensor:
    """y = r + gamma (1 - done) V(s')."""
    return reward + discount * (1.0 - done) * next_value


def weighted_td_loss(q: Tensor, target: Tensor, weight: Optional[Tensor] = None) -> tuple[Tensor, dict]:
    """Twin critic loss mean(w (Q1 - y)^2) + mean(w (Q2 - y)^2).

    ``q``: ``(..., 2, B)`` (the heads of :class:`~dvdf.nets.TwinQ`); ``target``, ``weight``: ``(..., B)``.
    ``weight=None`` is the unweighted loss.
    """
    sq_err = (q - target.unsqueeze(-2)).square()
    if weight is not None:
        sq_err = sq_err * weight.unsqueeze(-2)
    loss = sq_err.mean(-1).sum(-1)
    return loss, {"q_loss": loss.detach(), "q_mean": q.detach().mean((-2, -1))}


def awr_actor_loss(pred_action: Tensor, action: Tensor, advantage: Tensor, beta: float,
                   exp_adv_max: float = EXP_ADV_MAX, reduction: str = "mean") -> tuple[Tensor, dict]:
    """Advantage-weighted regression mean_i(min(exp(beta u_i), 100) e_i) over the batch.

    ``pred_action`` is the deterministic action tanh(mu(s)), ``(..., B, act_dim)``; ``advantage`` u
    must be detached, ``(..., B)``. ``reduction`` says how the squared error over the action
    dimensions makes e_i: "mean" (the authors' code: the loss is the mean over all batch x action
    elements) or "sum" (||pi(s) - a||^2, dvdf 0.1.0; act_dim times the "mean" loss).
    """
    exp_adv = torch.exp(beta * advantage).clamp(max=exp_adv_max)
    sq_err = (pred_action - action).square()
    if reduction == "mean":
        bc_error = sq_err.mean(-1)
    elif reduction == "sum":
        bc_error = sq_err.sum(-1)
    else:
        raise ValueError(f"unknown AWR reduction {reduction!r}; expected 'mean' or 'sum'")
    loss = (exp_adv * bc_error).mean(-1)
    return loss, {"actor_loss": loss.detach(), "bc_error": bc_error.detach().mean(-1),
                  "exp_adv_mean": exp_adv.mean(-1)}


@torch.no_grad()
def polyak_update(target_params: Iterable[Tensor], online_params: Iterable[Tensor], tau: float) -> None:
    """target <- (1 - tau) target + tau online, for all parameters in one fused foreach call."""
    torch._foreach_lerp_(list(target_params), list(online_params), tau)
