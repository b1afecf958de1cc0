"""OTDF's optimal-transport dynamics score (Lyu et al., ICLR 2025).

Every transition is a point u = [s, a, s']. For each chunk of source points, the cost to the whole
target set is the cosine distance scaled by its maximum, and an entropic OT plan P with uniform
marginals is solved with Sinkhorn (POT, torch backend: it runs wherever the tensors live, GPU
included). The deviation of source point i is d_i = sum_j P_ij C_ij and its score is -d_i
(larger = better aligned with the target dynamics).

One deliberate normalisation: d_i is divided by its row mass 1 / n_chunk (i.e. it is the expected
cost of moving point i), so the last, smaller chunk is on the same scale as the others. With equal
chunks this is a constant factor, which the per-batch min-max of stage 3 removes anyway.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from dvdf.config import OTConfig

MIN_PLAIN_SINKHORN_REG = 1.0 / 700.0  # exp(-1/reg) above float64's smallest normal number
UNUSED_POT_BACKENDS = ("POT_BACKEND_DISABLE_JAX", "POT_BACKEND_DISABLE_TENSORFLOW", "POT_BACKEND_DISABLE_CUPY")


def _pot():
    """POT, imported on first use: only OTDF needs it, and importing it costs every other process
    seconds (it imports each array library it finds - JAX, TensorFlow, CuPy - to register backends).
    Those backends are switched off unless the user set the variables: dvdf hands POT torch tensors."""
    for key in UNUSED_POT_BACKENDS:
        os.environ.setdefault(key, "1")
    import ot

    return ot


def transition_points(data: dict[str, Tensor]) -> Tensor:
    """u = [s, a, s'] per transition."""
    return torch.cat([data["observations"], data["actions"], data["next_observations"]], dim=-1)


def scaled_cosine_cost(x: Tensor, y: Tensor) -> Tensor:
    """C_ij = 1 - cos(x_i, y_j), divided by max C (so C is in [0, 1])."""
    cost = 1.0 - F.normalize(x, dim=-1) @ F.normalize(y, dim=-1).T
    return cost / cost.max().clamp_min(torch.finfo(cost.dtype).tiny)


def chunk_deviation(source_points: Tensor, target_points: Tensor, reg: float, max_iter: int) -> Tensor:
    """Expected transport cost n * sum_j P_ij C_ij of each source point under the Sinkhorn plan.

    Solved in float64: the Gibbs kernel exp(-C / reg) (C in [0, 1]) then stays representable for
    reg >= 1/700, where plain Sinkhorn gives the log-domain answer ~10x faster; smaller reg falls
    back to log-domain iterations.
    """
    cost = scaled_cosine_cost(source_points.double(), target_points.double())
    n, m = cost.shape
    a = torch.full((n,), 1.0 / n, dtype=cost.dtype, device=cost.device)
    b = torch.full((m,), 1.0 / m, dtype=cost.dtype, device=cost.device)
    method = "sinkhorn" if reg >= MIN_PLAIN_SINKHORN_REG else "sinkhorn_log"
    plan = _pot().sinkhorn(a, b, cost, reg, method=method, numItermax=max_iter, warn=False)
    return (n * (plan * cost).sum(-1)).to(source_points.dtype)


@torch.no_grad()
def ot_scores(source: dict[str, Tensor], target: dict[str, Tensor], cfg: OTConfig, device,
              progress: bool = False) -> Tensor:
    """OT score -d_i of every source transition, shape ``(N_source,)``, on ``device``.

    Source points are solved ``cfg.chunk`` at a time against all target points (entropic
    regularisation ``cfg.reg``, at most ``cfg.max_iter`` Sinkhorn iterations).
    Memory: a chunk needs a few ``chunk x N_target`` matrices.
    """
    device = torch.device(device)
    src = transition_points(source).to(device)
    tgt = transition_points(target).to(device)
    chunks = range(0, src.shape[0], cfg.chunk)
    scores = [-chunk_deviation(src[start:start + cfg.chunk], tgt, cfg.reg, cfg.max_iter)
              for start in tqdm(chunks, desc="OT scores", disable=not progress)]
    return torch.cat(scores) if scores else src.new_zeros(0)
