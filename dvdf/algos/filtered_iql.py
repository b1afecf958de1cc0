"""Stage 3: filtered, weighted IQL on target + source data - one code path for every method.

Per step (METHOD.md), from a source batch of B and a target batch:
  1. per-method dynamics score of the source batch: h as given (contrastive) or the OT score
     min-max normalised to [-1, 0] per batch (OTDF);
  2. combined score g = lambda h + (1 - lambda) An (dvdf-* methods; An = per-batch min-max of the
     precomputed advantage A), or g = h (igdf, otdf);
  3. keep the top floor(B xi) source samples by g; weights w by ``filter.weight_rule``
     (exp(h) by default), target samples weight 1. iql-mix keeps all with w = 1; iql-target uses
     no source data at all;
  4. one IQL step on [kept source; target]: expectile V loss, w-weighted twin TD loss to
     r + gamma (1 - done) V(s'), AWR actor loss (plus OTDF's VAE constraint), Polyak target update.
The actor learning rate is cosine-annealed to 0 over ``iql.steps``. All three networks share ONE
Adam (two parameter groups: critics at ``iql.lr``, actor at the annealed rate): one fused optimiser
call per step instead of three (Adam is per-element, so this is exactly three separate Adams).
With ``iql.compile: losses`` the selection, the forward pass and the losses (and, through
AOTAutograd, their backward) run as one ``torch.compile``d graph; sampling and the optimiser stay
eager. ``iql.compile: step`` compiles the whole update, batch gather to Polyak, through
:class:`dvdf.algos.whole_step.WholeStep` (``update`` itself then runs eagerly).

Everything inside ``update`` is tensor work on the device: no ``.item()``, no branching on tensor
values; the kept count is a Python int from the config, so every step has the same shapes.

With ``members=K`` the agent is K independent agents trained as one batched model: batches carry a
leading K dimension, ``(K, B, ...)``, and every info tensor has shape ``(K, ...)``.
"""

from __future__ import annotations

import copy
import math
from typing import Optional, Sequence, Union

import torch
from torch import Tensor

from dvdf.algos.iql import awr_actor_loss, expectile_value_loss, polyak_update, td_target, weighted_td_loss
from dvdf.algos.optim import make_adam
from dvdf.algos.vae import behavior_log_prob_penalty
from dvdf.config import FilterConfig, IQLConfig
from dvdf.filtering.select import (combined_score, keep_count, kept_mask, ot_normalize, source_weights,
                                   top_k_indices)
from dvdf.nets import BehaviorVAE, TanhGaussianPolicy, TwinQ, ValueNet, seeded_generators

Batch = dict[str, Tensor]
FEATURE_KEYS = ("observations", "actions", "next_observations")
SCALAR_KEYS = ("rewards", "dones")


def _member_seeds(seed: Union[int, Sequence[int]], members: Optional[int]) -> list[int]:
    count = 1 if members is None else members
    if isinstance(seed, int):
        return [seed + k for k in range(count)]  # member k of a batch gets seed + k
    seeds = [int(s) for s in seed]
    if len(seeds) != count:
        raise ValueError(f"{count} members need {count} seeds, got {len(seeds)}")
    return seeds


def _take(batch: Batch, index: Tensor) -> Batch:
    """Rows ``index`` (``(..., k)``) of every field along the batch dimension."""
    out = {k: torch.take_along_dim(batch[k], index.unsqueeze(-1), dim=-2) for k in FEATURE_KEYS}
    out.update({k: torch.take_along_dim(batch[k], index, dim=-1) for k in SCALAR_KEYS})
    return out


def _concat(first: Batch, second: Batch) -> Batch:
    out = {k: torch.cat([first[k], second[k]], dim=-2) for k in FEATURE_KEYS}
    out.update({k: torch.cat([first[k], second[k]], dim=-1) for k in SCALAR_KEYS})
    return out


def _constant_rate(step: int) -> float:
    return 1.0


class _CosineRate:
    """Cosine annealing factor 0.5 (1 + cos(pi t / T)) (a class, not a lambda: it must pickle)."""

    def __init__(self, total_steps: int):
        self.total_steps = total_steps

    def __call__(self, step: int) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * min(step, self.total_steps) / self.total_steps))


class FilteredIQL:
    """The stage-3 agent of every method (``filter_cfg.method``).

    Args:
        obs_dim, act_dim: space sizes.
        iql_cfg: IQL hyperparameters (nets, learning rates, tau, beta, gamma, Polyak, steps for the
            actor's cosine schedule).
        filter_cfg: method, tradeoff (lambda), keep_ratio (xi), weight_rule.
        device: where the networks live.
        seed: int, or one per member; member k of an int-seeded batch is seeded ``seed + k``.
        members: None for one agent with ``(B, ...)`` batches; K for K batched agents.
        behavior_vae: OTDF's frozen behaviour model beta(a|s) (method 'otdf' with a constraint).
            Not part of ``state_dict`` (it is a cached stage artifact): pass the same one on resume.
        constraint_weight: OTDF's reg weight on -log beta(pi(s)|s) (0.5 morph, 0.1 kinematic).
    """

    def __init__(self, obs_dim: int, act_dim: int, iql_cfg: IQLConfig, filter_cfg: FilterConfig,
                 device="cpu", seed: Union[int, Sequence[int]] = 0, members: Optional[int] = None,
                 behavior_vae: Optional[BehaviorVAE] = None, constraint_weight: float = 0.0):
        if constraint_weight > 0 and behavior_vae is None:
            raise ValueError("constraint_weight > 0 needs a behavior_vae")
        self.cfg = iql_cfg
        self.filter = filter_cfg
        self.device = torch.device(device)
        self.members = members
        self.behavior_vae = behavior_vae if constraint_weight > 0 else None
        self.constraint_weight = float(constraint_weight)
        seeds = _member_seeds(seed, members)

        # One generator per member, consumed in a fixed order (Q, V, policy): member k of a batched
        # agent starts from exactly the weights of a single agent seeded seeds[k].
        gens = seeded_generators(seeds)
        net_args = dict(hidden=iql_cfg.hidden, layers=iql_cfg.layers, members=members, generators=gens)
        self.q = TwinQ(obs_dim, act_dim, **net_args).to(self.device)
        self.v = ValueNet(obs_dim, **net_args).to(self.device)
        self.policy = TanhGaussianPolicy(obs_dim, act_dim, **net_args).to(self.device)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)

        self.optimizer = make_adam([
            {"params": [*self.q.parameters(), *self.v.parameters()], "lr": iql_cfg.lr},
            {"params": list(self.policy.parameters()), "lr": iql_cfg.actor_lr},
        ], iql_cfg.lr)
        # Group 0 (critics) keeps its rate; group 1 (actor) follows 0.5 (1 + cos(pi t / T)).
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, [_constant_rate, _CosineRate(iql_cfg.steps)])
        self.noise_generator = torch.Generator(device=self.device).manual_seed(seeds[0])
        self.step = 0
        self._forward = self.selected_losses
        if iql_cfg.compile == "losses":
            # cpp_wrapper: the compiled graph's kernel calls run from C++, not Python - on CPU the
            # per-op call overhead is a visible share of a step of these small networks.
            options = {"cpp_wrapper": True} if self.device.type == "cpu" else {}
            self._forward = torch.compile(self.selected_losses, dynamic=False, options=options)

    @property
    def critic_lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    @property
    def actor_lr(self) -> float:
        return self.optimizer.param_groups[1]["lr"]

    # ----------------------------------------------------------------------------------------- selection
    def kept_count(self, batch_size: int) -> int:
        """Source rows kept from a batch of ``batch_size``: floor(B xi), or all of them for iql-mix."""
        return batch_size if self.filter.method == "iql-mix" else keep_count(batch_size, self.filter.keep_ratio)

    def select_source(self, source: Batch) -> tuple[Batch, Tensor, dict]:
        """Kept source rows, their weights and selection diagnostics (method-specific, no host sync)."""
        method = self.filter.method
        batch_size = source["observations"].shape[-2]
        if method == "iql-mix":
            weight = torch.ones_like(source["rewards"])
            mask = torch.ones_like(source["rewards"], dtype=torch.bool)
            return source, weight, {"kept_mask": mask, "source_weight_mean": weight.mean(-1)}

        dynamics = source["dyn_score"]
        if self.filter.dynamics_scorer == "ot":
            dynamics = ot_normalize(dynamics)                    # c in [-1, 0]
        if self.filter.uses_value:
            score = combined_score(dynamics, source["advantage"], self.filter.tradeoff)   # g
        else:
            score = dynamics                                      # IGDF / OTDF: lambda = 1
        index = top_k_indices(score, self.kept_count(batch_size))
        kept_dynamics = torch.take_along_dim(dynamics, index, dim=-1)
        kept_score = torch.take_along_dim(score, index, dim=-1)
        weight = source_weights(self.filter.weight_rule, kept_dynamics, kept_score)
        info = {"kept_mask": kept_mask(index, batch_size), "source_weight_mean": weight.mean(-1),
                "kept_score_mean": kept_score.mean(-1), "batch_score_mean": score.mean(-1)}
        return _take(source, index), weight, info

    # ----------------------------------------------------------------------------------------- update
    def update(self, source: Optional[Batch], target: Batch) -> dict[str, Tensor]:
        """One gradient step; returns detached info tensors (no host synchronisation).

        ``source`` needs, besides the transition fields, 'dyn_score' (h, or the raw OT score for
        otdf methods) for filtered methods and 'advantage' (A) for dvdf-* methods. It is ignored
        (may be None) for iql-target. Rewards and dones are float tensors shaped like the batch.
        """
        if self.filter.uses_source and source is None:
            raise ValueError(f"method {self.filter.method!r} needs a source batch")
        total, pred_action, obs, info = self._forward(source if self.filter.uses_source else None, target)
        if self.behavior_vae is not None:
            # Outside the compiled graph: it draws from a torch.Generator.
            total = total + self.constraint_penalty(obs, pred_action, info)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        self.scheduler.step()
        polyak_update(self.q_target.parameters(), self.q.parameters(), self.cfg.polyak)
        self.step += 1
        return info

    def constraint_penalty(self, obs: Tensor, pred_action: Tensor, info: dict, noise: Optional[Tensor] = None
                           ) -> Tensor:
        """OTDF's actor constraint: weight x mean -log beta(pi(s)|s), summed over members; adds
        ``behavior_nll`` to ``info``. The VAE's latent noise comes from ``noise_generator`` unless given."""
        penalty = behavior_log_prob_penalty(self.behavior_vae, obs, pred_action, self.noise_generator,
                                            noise).mean(-1)
        info["behavior_nll"] = penalty.detach()
        return self.constraint_weight * penalty.sum()

    def selected_losses(self, source: Optional[Batch], target: Batch) -> tuple[Tensor, Tensor, Tensor, dict]:
        """Selection, the IQL batch and its losses: (summed loss, pi(s), s, info). Compiled as one
        static-shape graph with ``iql.compile: losses`` (the kept count is fixed by the config)."""
        info: dict[str, Tensor] = {}
        if source is not None:
            kept, source_weight, select_info = self.select_source(source)
            info.update(select_info)
            share = kept["rewards"].shape[-1] / source["rewards"].shape[-1]
            info["kept_fraction"] = torch.full_like(source_weight[..., 0], share)
            batch = _concat(kept, target)
            weight = None if self.filter.method == "iql-mix" else torch.cat(
                [source_weight, torch.ones_like(target["rewards"])], dim=-1)
        else:
            batch, weight = target, None
        total, pred_action, loss_info = self._iql_losses(batch, weight)
        info.update(loss_info)
        return total, pred_action, batch["observations"], info

    def _iql_losses(self, batch: Batch, weight: Optional[Tensor]) -> tuple[Tensor, Tensor, dict]:
        """(V + Q + AWR loss summed over members, the policy's deterministic action, info)."""
        cfg = self.cfg
        obs, act = batch["observations"], batch["actions"]
        with torch.no_grad():
            target_q = self.q_target(obs, act).amin(-2)
            # V(s') from the V network before this step's update (as CORL's IQL).
            y = td_target(batch["rewards"], batch["dones"], self.v(batch["next_observations"]), cfg.discount)

        value = self.v(obs)
        v_loss, v_info = expectile_value_loss(value, target_q, cfg.expectile)
        advantage = (target_q - value).detach()
        q_loss, q_info = weighted_td_loss(self.q(obs, act), y, weight)
        pred_action = self.policy.deterministic(obs)
        actor_loss, actor_info = awr_actor_loss(pred_action, act, advantage, cfg.beta, cfg.exp_adv_max)
        # The three graphs are disjoint (targets and advantage detached), so one backward of the
        # sum gives each network exactly its own loss's gradient; members are summed likewise.
        total = (v_loss + q_loss + actor_loss).sum()
        return total, pred_action, {**v_info, **q_info, **actor_info, "advantage_mean": advantage.mean(-1),
                                    "target_q_mean": target_q.mean(-1)}

    # ----------------------------------------------------------------------------------------- acting
    @torch.no_grad()
    def act(self, obs: Tensor) -> Tensor:
        """Deterministic action tanh(mu(s)); ``(n, obs)`` -> ``(n, act)`` (``(K, n, act)`` for K members).

        ``obs`` is moved to the agent's device and float32 (environments hand out float64).
        """
        return self.policy.deterministic(obs.to(self.device, torch.float32))

    # ----------------------------------------------------------------------------------------- state
    def state_dict(self) -> dict:
        """Networks, target critic, optimisers, scheduler, noise generator and step: resume is exact."""
        return {
            "q": self.q.state_dict(), "q_target": self.q_target.state_dict(), "v": self.v.state_dict(),
            "policy": self.policy.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "noise_generator": self.noise_generator.get_state(), "step": self.step,
        }

    def load_state_dict(self, state: dict) -> None:
        self.q.load_state_dict(state["q"])
        self.q_target.load_state_dict(state["q_target"])
        self.v.load_state_dict(state["v"])
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.noise_generator.set_state(state["noise_generator"])
        self.step = int(state["step"])
