"""Batched rollouts of a fixed policy in a vector env, recorded as D4RL rows.

One policy forward per vector step serves every sub-environment. Each sub-environment's rows
are kept together, so the result has whole episodes one after another (the D4RL layout); an
episode cut by the transition budget ends with ``timeouts = True``, as in D4RL's files.

:func:`parallel_rollouts` shards the sub-environments over worker processes so collection keeps
every core busy (one MuJoCo step costs less than an inter-process round trip, so each worker
steps its shard in-process and only the finished rows travel). Sub-environment i has its own
reset seed and its own action-noise stream, so the rows do not depend on the number of workers -
up to float rounding: the policy's forward pass over a different number of rows rounds
differently, and the simulator can amplify that over a long episode.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from dvdf.data.dataset import Dataset

ActFn = Callable[[np.ndarray], np.ndarray]


def stochastic_actor(actor: torch.nn.Module, generator: torch.Generator) -> ActFn:
    """Observations (n, d) -> actions sampled from the tanh-Gaussian ``actor`` (D4RL's rollouts)."""
    device = generator.device

    @torch.inference_mode()
    def act(obs: np.ndarray) -> np.ndarray:
        # tanh(mu + sigma * eps): the policy's sample without its log-probability (not needed here).
        mean, log_std = actor(torch.from_numpy(np.asarray(obs, dtype=np.float32)).to(device))
        noise = torch.randn(mean.shape, generator=generator, device=device)
        return torch.tanh(mean + log_std.exp() * noise).cpu().numpy()

    return act


def per_env_stochastic_actor(actor: torch.nn.Module, generators: Sequence[torch.Generator]) -> ActFn:
    """As :func:`stochastic_actor`, with row i's noise drawn from ``generators[i]`` (one stream per
    sub-environment, so a shard of the envs draws exactly the noise it would draw unsharded)."""

    @torch.inference_mode()
    def act(obs: np.ndarray) -> np.ndarray:
        mean, log_std = actor(torch.from_numpy(np.asarray(obs, dtype=np.float32)))
        noise = torch.stack([torch.randn(mean.shape[-1], generator=g) for g in generators])
        return torch.tanh(mean + log_std.exp() * noise).numpy()

    return act


def deterministic_actor(actor: torch.nn.Module, device: str | torch.device = "cpu") -> ActFn:
    @torch.inference_mode()
    def act(obs: np.ndarray) -> np.ndarray:
        obs_t = torch.from_numpy(np.asarray(obs, dtype=np.float32)).to(device)
        return actor.deterministic(obs_t).cpu().numpy()

    return act


def _autoreset_mode(envs) -> str:
    mode = envs.metadata.get("autoreset_mode", "NextStep")
    return getattr(mode, "value", str(mode))


def env_quotas(transitions: int, total_envs: int) -> np.ndarray:
    """Rows per sub-environment: the budget split evenly, the first ones taking the remainder."""
    quota = np.full(total_envs, transitions // total_envs)
    quota[: transitions % total_envs] += 1
    return quota


def collect_rollouts(envs, act: ActFn, transitions: int, seed: int, progress: bool = False,
                     label: Optional[int] = None, description: str = "rollouts", first_env: int = 0,
                     total_envs: Optional[int] = None) -> Dataset:
    """Run ``act`` in the vector env ``envs`` until ``transitions`` rows are recorded.

    The budget is split evenly over the sub-environments (sub-env i reset with seed
    ``seed*1000 + i``). ``envs`` may be a shard: sub-environments ``first_env, ...`` of
    ``total_envs``, recording their share of the budget. With ``label``, an int ``provenance``
    column holding it is added.
    """
    num_envs = envs.num_envs
    total_envs = num_envs if total_envs is None else total_envs
    quota = env_quotas(transitions, total_envs)[first_env:first_env + num_envs]
    mode = _autoreset_mode(envs)
    if mode not in ("NextStep", "SameStep"):
        raise ValueError(f"collect_rollouts: unsupported vector-env autoreset mode {mode!r}")

    obs, _ = envs.reset(seed=[seed * 1000 + first_env + i for i in range(num_envs)])
    recorded = np.zeros(num_envs, dtype=np.int64)
    resetting = np.zeros(num_envs, dtype=bool)  # NextStep: this step only resets the sub-env
    steps: list[tuple[np.ndarray, ...]] = []
    bar = tqdm(total=int(quota.sum()), desc=description, disable=None if progress else True, unit="tr",
               leave=False)
    while (recorded < quota).any():
        action = act(obs).astype(np.float32, copy=False)
        next_obs, reward, terminated, truncated, info = envs.step(action)
        recorded_next = next_obs
        if mode == "SameStep" and (terminated | truncated).any():
            # The returned observation is already the next episode's first state.
            recorded_next = next_obs.copy()
            for i in np.flatnonzero(terminated | truncated):
                recorded_next[i] = info["final_obs"][i]
        valid = ~resetting & (recorded < quota)
        steps.append((obs, action, reward, terminated, truncated, recorded_next, valid))
        recorded += valid
        bar.update(int(valid.sum()))
        if mode == "NextStep":
            resetting = terminated | truncated
        obs = next_obs
    bar.close()

    columns = [np.stack(column, axis=1) for column in zip(*steps)]  # each (num_envs, T, ...)
    obs_a, act_a, rew_a, term_a, trunc_a, next_a, valid_a = columns
    rows = [np.flatnonzero(valid_a[i]) for i in range(num_envs)]
    env_major = lambda x: np.concatenate([x[i, r] for i, r in enumerate(rows)])  # noqa: E731
    terminals = env_major(term_a).astype(bool)
    timeouts = env_major(trunc_a).astype(bool) & ~terminals
    # The last row of each sub-environment's stream ends an episode cut by the budget.
    ends = np.cumsum([len(r) for r in rows]) - 1
    timeouts[ends] |= ~terminals[ends]
    dataset = Dataset(
        observations=env_major(obs_a).astype(np.float32),
        actions=env_major(act_a).astype(np.float32),
        rewards=env_major(rew_a).astype(np.float32),
        terminals=terminals,
        timeouts=timeouts,
        next_observations=env_major(next_a).astype(np.float32),
    )
    if label is not None:
        dataset.extras["provenance"] = np.full(len(dataset), label, dtype=np.int64)
    return dataset


# ------------------------------------------------------------------------------ parallel
# Starting a worker process (interpreter, torch, MuJoCo) costs seconds; below this many transitions
# per quality the rollouts run in this process.
PARALLEL_MIN_TRANSITIONS = 100_000


def default_workers(num_envs: int, transitions: int) -> int:
    """One rollout worker per core this process may use, at most one per sub-environment; one for
    budgets too small to repay starting workers."""
    if transitions < PARALLEL_MIN_TRANSITIONS:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, num_envs))


def parallel_rollouts(domain: str, actor, num_envs: int, transitions: int, seed: int, workers: int = 1,
                      label: Optional[int] = None, progress: bool = False,
                      description: str = "rollouts") -> Dataset:
    """Stochastic rollouts of the tanh-Gaussian ``actor`` (a :class:`dvdf.nets.TanhGaussianPolicy`)
    in ``num_envs`` sub-environments of ``domain``, sharded over ``workers`` processes (torch on one
    thread each). The rows are the same for every ``workers`` up to float rounding (see the module
    docstring); ``workers=1`` runs in this process."""
    from dvdf.data.dataset import concatenate

    workers = max(1, min(int(workers), num_envs))
    bounds = np.linspace(0, num_envs, workers + 1).round().astype(int)
    shards = [(int(a), int(b - a)) for a, b in zip(bounds[:-1], bounds[1:])]
    spec = {"obs_dim": actor.net.layers[0].in_features, "act_dim": actor.act_dim,
            "hidden": actor.net.layers[0].out_features, "layers": len(actor.net.layers) - 1}
    state = {k: v.detach().cpu() for k, v in actor.state_dict().items()}
    jobs = [(domain, spec, state, first, count, num_envs, transitions, seed, label) for first, count in shards]
    if workers == 1:
        return _rollout_shard(*jobs[0], progress=progress, description=description)
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        parts = list(pool.map(_rollout_shard, *zip(*jobs)))
    # Each shard's last row already ends an episode (the budget cut), as the unsharded rows do.
    return concatenate(parts, source=f"<{description}>")


def _rollout_shard(domain: str, spec: dict, state: dict, first_env: int, count: int, total_envs: int,
                   transitions: int, seed: int, label: Optional[int], progress: bool = False,
                   description: str = "rollouts") -> Dataset:
    """Sub-environments ``[first_env, first_env + count)``: their rows (also a worker process's job)."""
    from dvdf.envs import make_vector_env
    from dvdf.nets import TanhGaussianPolicy

    if first_env > 0 or count < total_envs:
        torch.set_num_threads(1)   # a worker process: one core each
    actor = TanhGaussianPolicy(spec["obs_dim"], spec["act_dim"], spec["hidden"], spec["layers"])
    actor.load_state_dict(state)
    actor.eval()
    generators = [torch.Generator().manual_seed(seed * 1000 + first_env + i) for i in range(count)]
    envs = make_vector_env(domain, count)
    try:
        return collect_rollouts(envs, per_env_stochastic_actor(actor, generators), transitions, seed,
                                progress=progress, label=label, description=description, first_env=first_env,
                                total_envs=total_envs)
    finally:
        envs.close()
