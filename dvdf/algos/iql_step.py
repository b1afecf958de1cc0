"""The stage-3 update, written once: :class:`IQLStep` maps (state, batches) to the next state.

Every ``iql.compile`` mode runs this one function: ``off`` calls it eagerly (gradients by
``torch.autograd.grad``), ``losses`` compiles its loss functions (forward and, through AOTAutograd,
their backward), ``step`` compiles all of it together with the batch gather
(:mod:`dvdf.algos.whole_step`; gradients by ``torch.func`` so the graph has no Python in it). The
state (:class:`IQLState`) is every tensor the update changes: the trained parameters (the
networks' own tensors), the Polyak target critic, Adam's first and second moments, the step count.

One step (docs/METHOD.md), from a source batch of B and a target batch:

1. select and weight the source rows (per method, from :mod:`dvdf.methods`): combined score
   g = lambda h + (1 - lambda) An (dvdf-*) or h (igdf, otdf; OTDF's c min-max normalised to [-1, 0]),
   keep the top floor(B xi), weights by ``filter.weight_rule``; target rows weigh 1; iql-mix keeps
   all, unweighted; iql-target uses no source data;
2. the IQL update on [kept source; target], in ``iql.step_order``:

   ``authors`` (default, the authors' released DV_IGDF.train): (a) u = min(Qt1, Qt2)(s, a) - V(s)
   with V before this step's update - the expectile V loss's residual and the actor's advantage;
   (b) Adam step of V; (c) y = r + gamma (1 - d) V(s') with the UPDATED V, the w-weighted twin TD
   loss, Adam step of Q; (d) Polyak average of the target critic; (e) the AWR loss with the
   advantage of (a) (plus OTDF's VAE constraint), Adam step of the actor.

   ``joint`` (dvdf 0.1.0): y from V(s') before the V update, all three losses from the same
   networks, one backward and one Adam step for all of them, then Polyak.

   The actor's loss depends on neither Q nor the V update, so in the authors' order its gradient
   is taken together with V's (one backward) and its Adam step runs with V's: the result is the
   authors' sequence exactly (Adam is per element).

The actor's learning rate is cosine-annealed, ``actor_lr * 0.5 (1 + cos(pi t / T))`` at step t of
T = ``iql.steps``, computed from the step tensor inside the step (no scheduler, no host value):
each step writes the next step's learning rate and Adam bias corrections into ``state.schedule``.
Nothing in the step reads a tensor on the host or branches on a tensor value; the kept count is a
Python int from the config, so every step has the same shapes.

With K members every parameter and batch has a leading K dimension and member losses are summed:
each member receives exactly its own gradient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value

from dvdf.algos.iql import awr_actor_loss, expectile_value_loss, polyak_update, td_target, weighted_td_loss
from dvdf.algos.optim import ADAM_BETAS, ADAM_EPS, adam_bias_corrections, adam_step_
from dvdf.algos.vae import behavior_log_prob_penalty
from dvdf.config import FilterConfig, IQLConfig
from dvdf.filtering.select import combined_score, keep_count, kept_mask, ot_normalize, source_weights, top_k_indices
from dvdf.nets import BehaviorVAE, TanhGaussianPolicy, TwinQ, ValueNet

Batch = dict[str, Tensor]
FEATURE_KEYS = ("observations", "actions", "next_observations")
SCALAR_KEYS = ("rewards", "dones")
TRAINED = ("q", "v", "policy")      # the trained networks, in the order of the 0.1.0 optimiser's groups


@dataclass
class IQLState:
    """Every tensor one update changes. ``params[net]``, ``exp_avg[net]`` and ``exp_avg_sq[net]``
    map parameter names of net 'q', 'v' or 'policy' to tensors; ``params`` holds the networks' own
    parameters (updated in place, so a module call sees the current values); ``q_target`` the
    Polyak target critic's; ``step`` the updates done (0-dim int64 on the device); ``schedule`` the
    coefficients of the next update, :func:`step_schedule` of ``step`` (a function of it, kept so
    that a compiled step computes them once per step, not once per parameter element)."""

    params: dict[str, dict[str, Tensor]]
    q_target: dict[str, Tensor]
    exp_avg: dict[str, dict[str, Tensor]]
    exp_avg_sq: dict[str, dict[str, Tensor]]
    step: Tensor
    schedule: Tensor

    def tensors(self) -> list[Tensor]:
        """Every state tensor (CUDA-graph replay needs them at fixed addresses)."""
        nested = (self.params, self.exp_avg, self.exp_avg_sq)
        return [t for tree in nested for net in tree.values() for t in net.values()] + [
            *self.q_target.values(), self.step, self.schedule]


def cosine_factor(step: Tensor, total_steps: int) -> Tensor:
    """0.5 (1 + cos(pi min(t, T) / T)) in float64: the actor's learning-rate factor at step t."""
    t = step.to(torch.float64).clamp(max=total_steps)
    return 0.5 * (1.0 + torch.cos(t * (math.pi / total_steps)))


def step_schedule(step: Tensor, cfg: IQLConfig) -> Tensor:
    """float64 ``[actor learning rate, 1 - beta1^t, sqrt(1 - beta2^t)]`` of the update after
    ``step`` updates (Adam's step number t = step + 1); the critics' rate is ``cfg.lr`` throughout."""
    bias1, bias2_sqrt = adam_bias_corrections(step + 1)
    return torch.stack([cfg.actor_lr * cosine_factor(step, cfg.steps), bias1, bias2_sqrt])


def _take(batch: Batch, index: Tensor) -> Batch:
    """Rows ``index`` (``(..., k)``) of every field along the batch dimension."""
    out = {k: torch.take_along_dim(batch[k], index.unsqueeze(-1), dim=-2) for k in FEATURE_KEYS}
    out.update({k: torch.take_along_dim(batch[k], index, dim=-1) for k in SCALAR_KEYS})
    return out


def _concat(first: Batch, second: Batch) -> Batch:
    out = {k: torch.cat([first[k], second[k]], dim=-2) for k in FEATURE_KEYS}
    out.update({k: torch.cat([first[k], second[k]], dim=-1) for k in SCALAR_KEYS})
    return out


class _Networks(nn.Module):
    """The trained networks as one module, so ``functional_call`` can swap in any subset of their
    parameters ('q.<name>', 'v.<name>', 'policy.<name>') and run a loss function of the step."""

    def __init__(self, q: TwinQ, v: ValueNet, policy: TanhGaussianPolicy):
        super().__init__()
        self.q, self.v, self.policy = q, v, policy

    def forward(self, loss_fn: Callable, *args):
        return loss_fn(*args)


class IQLStep:
    """One stage-3 update as a function of (state, batches); see the module docstring.

    Args:
        q, v, policy, q_target: the networks (their parameters are ``state.params``/``q_target``).
        iql_cfg, filter_cfg: hyperparameters, method, step order, AWR reduction.
        behavior_vae, constraint_weight: OTDF's frozen beta(a|s) and the weight of -log beta(pi(s)|s).
        functional: take gradients with ``torch.func`` (for a compiled whole step) instead of
            ``torch.autograd.grad`` (faster eagerly). Same numbers.
        compile_losses: ``torch.compile`` the selection and the loss functions (``iql.compile: losses``).
    """

    def __init__(self, q: TwinQ, v: ValueNet, policy: TanhGaussianPolicy, q_target: TwinQ, iql_cfg: IQLConfig,
                 filter_cfg: FilterConfig, behavior_vae: Optional[BehaviorVAE] = None,
                 constraint_weight: float = 0.0, functional: bool = False, compile_losses: bool = False):
        self.cfg, self.filter, self.method = iql_cfg, filter_cfg, filter_cfg.spec
        self.networks = _Networks(q, v, policy)
        self.q, self.v, self.policy, self.q_target = q, v, policy, q_target
        self.behavior_vae = behavior_vae if constraint_weight > 0 else None
        self.constraint_weight = float(constraint_weight)
        self.functional = functional
        self.authors_order = iql_cfg.step_order == "authors"
        self._select, self._losses_before, self._q_loss = self.select, self.losses_before_v_update, self.q_loss
        if compile_losses:
            # cpp_wrapper: the compiled graph's kernel calls run from C++, not Python - on CPU the
            # per-op call overhead is a visible share of a step of these small networks.
            options = {"cpp_wrapper": True} if next(q.parameters()).device.type == "cpu" else {}
            self._select, self._losses_before, self._q_loss = (
                torch.compile(fn, dynamic=False, options=options)
                for fn in (self.select, self.losses_before_v_update, self.q_loss))

    # ------------------------------------------------------------------------------------ selection
    def kept_count(self, batch_size: int) -> int:
        """Source rows kept from a batch of ``batch_size``: floor(B xi), or all where the method keeps all."""
        return keep_count(batch_size, self.filter.keep_ratio) if self.method.selects else batch_size

    def constraint_rows(self, source_rows: Optional[int], target_rows: int) -> int:
        """Rows of the IQL batch (kept source + target): the VAE noise has one latent per row."""
        return target_rows + (0 if source_rows is None else self.kept_count(source_rows))

    def select(self, source: Optional[Batch], target: Batch) -> tuple[Batch, Optional[Tensor], dict]:
        """The IQL batch [kept source; target], its weights w (None: unweighted) and selection
        diagnostics (method-specific, no host sync)."""
        if source is None:
            return target, None, {}
        batch_size = source["rewards"].shape[-1]
        if not self.method.selects:                           # iql-mix: every row, weight 1
            weight = torch.ones_like(source["rewards"])
            info = {"kept_mask": torch.ones_like(source["rewards"], dtype=torch.bool),
                    "source_weight_mean": weight.mean(-1), "kept_fraction": weight[..., 0]}
            return _concat(source, target), None, info
        dynamics = source["dyn_score"]
        if self.filter.dynamics_scorer == "ot":
            dynamics = ot_normalize(dynamics)                    # c in [-1, 0]
        score = combined_score(dynamics, source["advantage"], self.filter.tradeoff) if self.method.uses_value \
            else dynamics                                         # IGDF / OTDF: lambda = 1
        kept = self.kept_count(batch_size)
        index = top_k_indices(score, kept)
        kept_dynamics = torch.take_along_dim(dynamics, index, dim=-1)
        kept_score = torch.take_along_dim(score, index, dim=-1)
        weight = source_weights(self.filter.weight_rule, kept_dynamics, kept_score)
        info = {"kept_mask": kept_mask(index, batch_size), "source_weight_mean": weight.mean(-1),
                "kept_score_mean": kept_score.mean(-1), "batch_score_mean": score.mean(-1),
                "kept_fraction": torch.full_like(weight[..., 0], kept / batch_size)}
        weight = torch.cat([weight, torch.ones_like(target["rewards"])], dim=-1)
        return _concat(_take(source, index), target), weight, info

    # ------------------------------------------------------------------------------------ losses
    def losses_before_v_update(self, batch: Batch, weight: Optional[Tensor], noise: Optional[Tensor],
                               y: Optional[Tensor]) -> tuple[Tensor, dict]:
        """V's expectile loss and the actor's AWR loss (+ OTDF's constraint) from the networks as
        they are before this step's update, and (``joint`` order, ``y`` given) the TD loss too:
        (sum over losses and members, info)."""
        cfg = self.cfg
        obs, act = batch["observations"], batch["actions"]
        with torch.no_grad():
            target_q = self.q_target(obs, act).amin(-2)
        value = self.v(obs)
        v_loss, v_info = expectile_value_loss(value, target_q, cfg.expectile)
        advantage = (target_q - value).detach()                       # u of step (a)
        pred_action = self.policy.deterministic(obs)
        actor_loss, actor_info = awr_actor_loss(pred_action, act, advantage, cfg.beta, cfg.exp_adv_max,
                                                cfg.awr_reduction)
        info = {**v_info, **actor_info, "advantage_mean": advantage.mean(-1), "target_q_mean": target_q.mean(-1)}
        total = (v_loss + actor_loss).sum()
        if self.behavior_vae is not None:
            penalty = behavior_log_prob_penalty(self.behavior_vae, obs, pred_action, noise=noise).mean(-1)
            info["behavior_nll"] = penalty.detach()
            total = total + self.constraint_weight * penalty.sum()
        if y is not None:
            q_total, q_info = self.q_loss(batch, weight, y)
            total = total + q_total
            info.update(q_info)
        return total, info

    def q_loss(self, batch: Batch, weight: Optional[Tensor], y: Tensor) -> tuple[Tensor, dict]:
        """The w-weighted twin TD loss to ``y``, summed over members."""
        q_loss, info = weighted_td_loss(self.q(batch["observations"], batch["actions"]), y, weight)
        return q_loss.sum(), info

    def _grads(self, loss_fn: Callable, nets: tuple[str, ...], state: IQLState, *args
               ) -> tuple[dict[str, dict[str, Tensor]], dict]:
        """Gradients of ``loss_fn(*args)``'s total with respect to the parameters of ``nets``."""
        if self.functional:
            params = {f"{net}.{name}": p for net in nets for name, p in state.params[net].items()}
            flat, (_, info) = grad_and_value(
                lambda p, *a: functional_call(self.networks, p, (loss_fn, *a)), has_aux=True)(params, *args)
            return {net: {name: flat[f"{net}.{name}"] for name in state.params[net]} for net in nets}, info
        total, info = loss_fn(*args)
        params = [p for net in nets for p in state.params[net].values()]
        flat = iter(torch.autograd.grad(total, params))
        return {net: {name: next(flat) for name in state.params[net]} for net in nets}, info

    # ------------------------------------------------------------------------------------ the step
    def __call__(self, state: IQLState, source: Optional[Batch], target: Batch, noise: Optional[Tensor] = None
                 ) -> tuple[IQLState, dict[str, Tensor]]:
        """One update: returns the next state (``state`` itself, its tensors updated in place - they
        keep their addresses, which CUDA-graph replay needs) and detached info tensors ``(K, ...)``
        (scalars for one agent). ``noise``: OTDF's VAE latent noise, one row per batch row."""
        cfg = self.cfg
        batch, weight, info = self._select(source, target)
        actor_lr, bias1, bias2_sqrt = state.schedule.unbind()
        lr = {"q": cfg.lr, "v": cfg.lr, "policy": actor_lr}
        t = ((state.step + 1).to(torch.float32), bias1, bias2_sqrt)         # Adam's step number t
        if self.authors_order:
            grads, loss_info = self._grads(self._losses_before, ("v", "policy"), state, batch, weight, noise, None)
            self._adam(state, grads, lr, t)                            # (b) V, and (e)'s actor step
            with torch.no_grad():                                      # (c) with the updated V
                y = td_target(batch["rewards"], batch["dones"], self.v(batch["next_observations"]), cfg.discount)
            q_grads, q_info = self._grads(self._q_loss, ("q",), state, batch, weight, y)
            self._adam(state, q_grads, lr, t)
            loss_info.update(q_info)
        else:
            with torch.no_grad():
                y = td_target(batch["rewards"], batch["dones"], self.v(batch["next_observations"]), cfg.discount)
            grads, loss_info = self._grads(self._losses_before, TRAINED, state, batch, weight, noise, y)
            self._adam(state, grads, lr, t)
        with torch.no_grad():
            polyak_update(state.q_target.values(), state.params["q"].values(), cfg.polyak)   # (d)
            state.step.add_(1)
            state.schedule.copy_(step_schedule(state.step, cfg))
        info.update(loss_info)
        return state, info

    @staticmethod
    @torch.no_grad()
    def _adam(state: IQLState, grads: dict[str, dict[str, Tensor]], lr: dict, t: tuple[Tensor, Tensor, Tensor]
              ) -> None:
        for net, net_grads in grads.items():
            names = list(net_grads)
            adam_step_([state.params[net][n] for n in names], [net_grads[n] for n in names],
                       [state.exp_avg[net][n] for n in names], [state.exp_avg_sq[net][n] for n in names],
                       lr[net], *t, *ADAM_BETAS, ADAM_EPS)
