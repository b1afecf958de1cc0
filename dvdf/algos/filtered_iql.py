"""Stage 3: filtered, weighted IQL on target + source data - the agent of every method.

:class:`FilteredIQL` holds what a run trains and resumes: the networks, the step state
(:class:`dvdf.algos.iql_step.IQLState`: parameters, Polyak target critic, Adam moments, step),
OTDF's VAE noise generator, and ``act``/``state_dict``. Its update is
:class:`dvdf.algos.iql_step.IQLStep` - the one function every ``iql.compile`` mode runs (selection,
losses, order, Adam, learning-rate schedule and Polyak are written there, once). ``update`` runs it
eagerly ("off") or with compiled losses ("losses"); ``iql.compile: step`` compiles it whole,
together with the batch gather, in :mod:`dvdf.algos.whole_step`.

With ``members=K`` the agent is K independent agents trained as one batched model: batches carry a
leading K dimension, ``(K, B, ...)``, and every info tensor has shape ``(K, ...)``.
"""

from __future__ import annotations

import copy
from typing import Optional, Sequence, Union

import torch
from torch import Tensor

from dvdf.algos.compile_mode import resolve_compile_mode
from dvdf.algos.iql_step import TRAINED, Batch, IQLState, IQLStep, cosine_factor, step_schedule
from dvdf.config import FilterConfig, IQLConfig
from dvdf.errors import DvdfError
from dvdf.nets import BehaviorVAE, TanhGaussianPolicy, TwinQ, ValueNet, seeded_generators

STATE_FORMAT = 3   # 3: IQLState (Adam moments by parameter name, one step count); 2: dvdf 0.1.0


def _member_seeds(seed: Union[int, Sequence[int]], members: Optional[int]) -> list[int]:
    count = 1 if members is None else members
    if isinstance(seed, int):
        return [seed + k for k in range(count)]  # member k of a batch gets seed + k
    seeds = [int(s) for s in seed]
    if len(seeds) != count:
        raise ValueError(f"{count} members need {count} seeds, got {len(seeds)}")
    return seeds


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
        nets = {"q": self.q, "v": self.v, "policy": self.policy}
        params = {net: dict(nets[net].named_parameters()) for net in TRAINED}
        self.state = IQLState(
            params=params, q_target=dict(self.q_target.named_parameters()),
            exp_avg={net: {n: torch.zeros_like(p) for n, p in ps.items()} for net, ps in params.items()},
            exp_avg_sq={net: {n: torch.zeros_like(p) for n, p in ps.items()} for net, ps in params.items()},
            step=torch.zeros((), dtype=torch.int64, device=self.device),
            schedule=step_schedule(torch.zeros((), dtype=torch.int64, device=self.device), iql_cfg))
        self.noise_generator = torch.Generator(device=self.device).manual_seed(seeds[0])
        self.step = 0                      # host copy of state.step (no device read needed)
        # "auto" becomes "step" or "off" here (dvdf.algos.compile_mode); the reason goes in the run header.
        self.compile_mode, self.compile_reason = resolve_compile_mode(iql_cfg, self.device)
        self.step_fn = self.make_step(functional=False, compile_losses=self.compile_mode == "losses")

    def make_step(self, functional: bool, compile_losses: bool = False) -> IQLStep:
        """This agent's update function (:class:`IQLStep`) over its networks."""
        return IQLStep(self.q, self.v, self.policy, self.q_target, self.cfg, self.filter, self.behavior_vae,
                       self.constraint_weight, functional=functional, compile_losses=compile_losses)

    @property
    def critic_lr(self) -> float:
        return self.cfg.lr

    @property
    def actor_lr(self) -> float:
        """The actor's learning rate of the next update (cosine-annealed over ``iql.steps``)."""
        return self.cfg.actor_lr * float(cosine_factor(torch.tensor(self.step), self.cfg.steps))

    def kept_count(self, batch_size: int) -> int:
        """Source rows kept from a batch of ``batch_size``: floor(B xi), or all of them for iql-mix."""
        return self.step_fn.kept_count(batch_size)

    def constraint_noise(self, source_rows: Optional[int], target_shape: torch.Size) -> Optional[Tensor]:
        """OTDF's VAE latent noise for one update (None without the constraint): drawn here, outside
        the step function (a generator cannot enter a compiled graph), the same draw in every mode.
        ``target_shape``: the target batch's leading shape ``(..., B)``."""
        if self.behavior_vae is None:
            return None
        rows = self.step_fn.constraint_rows(source_rows, target_shape[-1])
        return torch.randn((*target_shape[:-1], rows, self.behavior_vae.latent_dim), generator=self.noise_generator,
                           device=self.device)

    def update(self, source: Optional[Batch], target: Batch) -> dict[str, Tensor]:
        """One gradient step on gathered batches; returns detached info tensors (no host synchronisation).

        ``source`` needs, besides the transition fields, 'dyn_score' (h, or the raw OT score for
        otdf methods) for filtered methods and 'advantage' (A) for dvdf-* methods. It is ignored
        (may be None) for iql-target. Rewards and dones are float tensors shaped like the batch.
        """
        if self.filter.uses_source and source is None:
            raise ValueError(f"method {self.filter.method!r} needs a source batch")
        source = source if self.filter.uses_source else None
        noise = self.constraint_noise(None if source is None else source["rewards"].shape[-1],
                                      target["rewards"].shape)
        _, info = self.step_fn(self.state, source, target, noise)
        self.step += 1
        return info

    # ----------------------------------------------------------------------------------------- acting
    @torch.no_grad()
    def act(self, obs: Tensor) -> Tensor:
        """Deterministic action tanh(mu(s)); ``(n, obs)`` -> ``(n, act)`` (``(K, n, act)`` for K members).

        ``obs`` is moved to the agent's device and float32 (environments hand out float64).
        """
        return self.policy.deterministic(obs.to(self.device, torch.float32))

    # ----------------------------------------------------------------------------------------- state
    def state_dict(self) -> dict:
        """Networks, target critic, Adam moments, noise generator and step: resume is exact."""
        return {
            "format": STATE_FORMAT,
            "q": self.q.state_dict(), "q_target": self.q_target.state_dict(), "v": self.v.state_dict(),
            "policy": self.policy.state_dict(),
            "exp_avg": {net: dict(m) for net, m in self.state.exp_avg.items()},
            "exp_avg_sq": {net: dict(m) for net, m in self.state.exp_avg_sq.items()},
            "noise_generator": self.noise_generator.get_state(), "step": self.step,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a ``state_dict`` of this version or of dvdf 0.1.0 (format 2, torch's optimiser
        state inside), copying into the agent's own tensors: they keep their addresses, so a
        compiled (or CUDA-graph) step built before the load goes on with the loaded values.
        Raises DvdfError (one line) for a state these networks cannot take."""
        version = state.get("format", 2 if "optimizer" in state else None)
        if version not in (2, STATE_FORMAT):
            raise DvdfError(f"agent state format {version!r} is not supported (this dvdf reads 2 and {STATE_FORMAT})")
        exp_avg, exp_avg_sq = _adam_moments_v2(state, self.state) if version == 2 else (
            state["exp_avg"], state["exp_avg_sq"])
        try:
            with torch.no_grad():
                for name, module in (("q", self.q), ("q_target", self.q_target), ("v", self.v),
                                     ("policy", self.policy)):
                    module.load_state_dict(state[name])
                for mine, theirs in ((self.state.exp_avg, exp_avg), (self.state.exp_avg_sq, exp_avg_sq)):
                    for net in TRAINED:
                        if mine[net].keys() != theirs[net].keys():
                            raise DvdfError(f"agent state: Adam moments of '{net}' do not match its parameters")
                        for key, tensor in mine[net].items():
                            tensor.copy_(theirs[net][key])
        except (RuntimeError, KeyError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DvdfError(f"agent state (format {version}) does not fit these networks: {first}") from None
        self.noise_generator.set_state(state["noise_generator"])
        self.step = int(state["step"])
        self.state.step.fill_(self.step)
        self.state.schedule.copy_(step_schedule(self.state.step, self.cfg))


def _adam_moments_v2(state: dict, mine: IQLState) -> tuple[dict, dict]:
    """Adam moments by parameter name from a dvdf 0.1.0 agent state: one torch optimiser, group 0 =
    Q's then V's parameters, group 1 = the policy's, each with its own step (all equal: every
    parameter was updated every step)."""
    names = [(net, name) for net in TRAINED for name in mine.params[net]]
    optimizer = state["optimizer"]
    indices = [i for group in optimizer["param_groups"] for i in group["params"]]
    if len(indices) != len(names):
        raise DvdfError(f"agent state (format 2): the optimiser holds {len(indices)} parameters, "
                        f"these networks {len(names)}")
    exp_avg = {net: {} for net in TRAINED}
    exp_avg_sq = {net: {} for net in TRAINED}
    for (net, name), index in zip(names, indices):
        entry = optimizer["state"].get(index)
        zeros = torch.zeros_like(mine.params[net][name], device="cpu")
        exp_avg[net][name] = zeros if entry is None else entry["exp_avg"]
        exp_avg_sq[net][name] = zeros if entry is None else entry["exp_avg_sq"]
        if entry is not None and int(entry["step"]) != int(state["step"]):
            raise DvdfError(f"agent state (format 2): optimiser step {int(entry['step'])} is not the agent's "
                            f"step {int(state['step'])}")
    return exp_avg, exp_avg_sq
