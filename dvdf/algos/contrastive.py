"""IGDF's contrastive dynamics score h(s, a, s') = cosine(phi(s, a), psi(s')).

Training (binary NCE): each step takes n target transitions (s_i, a_i, s'_i) and n - 1 source next
states. Row i of the n x n logit block holds phi(s_i, a_i) . psi(s'_i) (label 1) and
phi(s_i, a_i) . psi(source s'_j) for the n - 1 source next states (label 0); the loss is the
binary cross-entropy with logits averaged over all n x n entries. Only 2n - 1 distinct next states
exist, so each is encoded once and the negatives are one matmul (the reference encodes the
broadcast n x n block).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from dvdf.algos.optim import make_adam
from dvdf.config import ContrastiveConfig
from dvdf.nets import ContrastiveEncoders, seeded_generators

SCORE_CHUNK = 65_536  # transitions per no-grad scoring pass


def nce_loss(phi: Tensor, psi_positive: Tensor, psi_negative: Tensor) -> tuple[Tensor, dict]:
    """BCE-with-logits averaged over the n x n block: 1 positive and n - 1 negatives per row.

    ``phi``: (n, d) embeddings of target (s, a); ``psi_positive``: (n, d) of their true next states;
    ``psi_negative``: (n - 1, d) of source next states, shared by every row.
    """
    positive = (phi * psi_positive).sum(-1)             # (n,)
    negative = phi @ psi_negative.T                      # (n, n - 1)
    entries = positive.numel() + negative.numel()        # n * n
    # BCE(l, 1) = softplus(-l), BCE(l, 0) = softplus(l).
    loss = (F.softplus(-positive).sum() + F.softplus(negative).sum()) / entries
    accuracy = ((positive > 0).float().sum() + (negative < 0).float().sum()) / entries
    return loss, {"nce_loss": loss.detach(), "nce_accuracy": accuracy}


class ContrastiveScorer(nn.Module):
    """Frozen-after-training encoders with ``score(obs, act, next_obs) -> h`` in [-1, 1]."""

    def __init__(self, obs_dim: int, act_dim: int, embed_dim: int = 64, hidden: int = 256, seed: int = 0):
        super().__init__()
        self.encoders = ContrastiveEncoders(obs_dim, act_dim, embed_dim, hidden,
                                            generators=seeded_generators(seed))

    def loss(self, obs: Tensor, act: Tensor, next_obs: Tensor,
             source_next_obs: Tensor) -> tuple[Tensor, dict]:
        """NCE loss of n target transitions against n - 1 source next states (one encoding each)."""
        phi = self.encoders.encode_state_action(obs, act)
        psi = self.encoders.encode_next_state(torch.cat([next_obs, source_next_obs], dim=0))
        n = obs.shape[0]
        return nce_loss(phi, psi[:n], psi[n:])

    @torch.no_grad()
    def score(self, obs: Tensor, act: Tensor, next_obs: Tensor, chunk: int = SCORE_CHUNK) -> Tensor:
        """h = cosine(phi(s, a), psi(s')) for every transition, in chunks, without gradients."""
        parts = []
        for start in range(0, obs.shape[0], chunk):
            end = start + chunk
            phi = self.encoders.encode_state_action(obs[start:end], act[start:end])
            psi = self.encoders.encode_next_state(next_obs[start:end])
            parts.append(F.cosine_similarity(phi, psi, dim=-1))
        return torch.cat(parts) if parts else obs.new_zeros(0)


def make_contrastive_optimizer(scorer: ContrastiveScorer, lr: float) -> torch.optim.Optimizer:
    return make_adam(scorer.parameters(), lr)


def contrastive_update(scorer: ContrastiveScorer, optimizer: torch.optim.Optimizer, obs: Tensor, act: Tensor,
                       next_obs: Tensor, source_next_obs: Tensor) -> dict:
    """One NCE gradient step; returns detached info tensors."""
    loss, info = scorer.loss(obs, act, next_obs, source_next_obs)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return info


def fit_contrastive_scorer(source: dict[str, Tensor], target: dict[str, Tensor], cfg: ContrastiveConfig,
                           seed: int, device, progress: bool = False) -> ContrastiveScorer:
    """Train the IGDF encoders for ``cfg.steps`` Adam steps at ``cfg.lr``; return the frozen scorer.

    Each step: ``cfg.batch_size`` (n) target transitions and n - 1 source next states, drawn
    uniformly with a generator seeded from ``seed``.
    """
    device = torch.device(device)
    obs, act, next_obs = target["observations"], target["actions"], target["next_observations"]
    source_next = source["next_observations"]
    scorer = ContrastiveScorer(obs.shape[-1], act.shape[-1], cfg.embed_dim, cfg.hidden, seed).to(device)
    optimizer = make_contrastive_optimizer(scorer, cfg.lr)
    gen = torch.Generator(device=device).manual_seed(seed)
    n = cfg.batch_size
    for _ in tqdm(range(cfg.steps), desc="contrastive scorer", disable=not progress,
                  mininterval=1.0):
        t_idx = torch.randint(obs.shape[0], (n,), generator=gen, device=device)
        s_idx = torch.randint(source_next.shape[0], (n - 1,), generator=gen, device=device)
        contrastive_update(scorer, optimizer, obs[t_idx], act[t_idx], next_obs[t_idx], source_next[s_idx])
    scorer.requires_grad_(False)
    return scorer.eval()
