"""Batched policy evaluation in the target domain (D4RL normalized score).

Every episode of every member runs at once: one batched policy forward per time step for all
of them, then one environment step per live episode. The environments are stepped directly (the
raw MuJoCo env, no gymnasium wrappers or vector-env bookkeeping, which cost as much as the physics
here), and with ``threads > 1`` in parallel slices: MuJoCo releases the GIL while it integrates,
so the physics of different episodes overlaps.

Episodes are seeded from (seed, episode index), so an evaluation is a pure function of the
policy and the seed - a resumed run evaluates exactly as an uninterrupted one, and member k of a
batched run evaluates exactly as a single run with seed k would.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from dvdf.envs import get_domain, make_env, normalized_score

ActFn = Callable[[np.ndarray], np.ndarray]
"""float32 observations ``(members * episodes, obs_dim)``, member-major -> actions ``(n, act_dim)``."""


@dataclass(frozen=True)
class EvalResult:
    returns: np.ndarray            # (episodes,) undiscounted returns
    lengths: np.ndarray            # (episodes,) episode lengths
    normalized: np.ndarray         # (episodes,) D4RL normalized scores (0 = random, 100 = expert)

    @property
    def metrics(self) -> dict[str, float]:
        return {
            "normalized_score": float(self.normalized.mean()),
            "normalized_score_std": float(self.normalized.std()),
            "return_mean": float(self.returns.mean()),
            "return_std": float(self.returns.std()),
            "episode_length_mean": float(self.lengths.mean()),
        }


class Evaluator:
    """Runs ``episodes`` deterministic episodes per member of a policy in ``domain``, all in parallel.

    Args:
        members: how many policies are evaluated at once (a batched agent's members).
        threads: slices of environments stepped concurrently (1 = in the calling thread).
        env_kwargs: passed to :func:`dvdf.envs.make_env` (benchmarks turn termination off).
        one_torch_thread: run the policy with one torch thread while evaluating. torch's thread
            count is process-wide, so an evaluation beside training (``eval.overlap``) leaves it alone.
    """

    def __init__(self, domain: str, episodes: int, d4rl_compat: bool = True, members: int = 1,
                 threads: int = 1, env_kwargs: Optional[dict[str, Any]] = None, one_torch_thread: bool = True):
        self.domain = domain
        self.episodes = episodes
        self.members = members
        self.max_steps = get_domain(domain).max_episode_steps
        self.one_torch_thread = one_torch_thread
        # .unwrapped: the time limit is this loop's max_steps; the checker/order wrappers only cost.
        self._envs = [make_env(domain, d4rl_compat, **(env_kwargs or {})).unwrapped
                      for _ in range(episodes * members)]
        count = max(1, min(int(threads), len(self._envs)))
        # Thread t steps envs t, t + count, ...: interleaved, so each thread gets live episodes.
        self._parts = [np.arange(t, len(self._envs), count) for t in range(count)]
        self._pool = ThreadPoolExecutor(count, thread_name_prefix="dvdf-eval") if count > 1 else None

    def __call__(self, act: ActFn, seed: int) -> EvalResult:
        """One member's evaluation (``members`` must be 1)."""
        return self.evaluate(act, [seed])[0]

    def evaluate(self, act: ActFn, seeds: Sequence[int]) -> list[EvalResult]:
        """One result per member; member k's episodes are seeded ``seeds[k] * 1000 + i``."""
        if len(seeds) != self.members:
            raise ValueError(f"expected {self.members} seeds (one per member), got {len(seeds)}")
        n = len(self._envs)
        episode_seeds = [int(s) * 1000 + i for s in seeds for i in range(self.episodes)]
        obs = np.stack([env.reset(seed=s)[0] for env, s in zip(self._envs, episode_seeds)])
        returns = np.zeros(n, dtype=np.float64)
        lengths = np.zeros(n, dtype=np.int64)
        running = np.ones(n, dtype=bool)
        # Policy calls on a few dozen observations gain nothing from torch's intra-op threads, and
        # their idle OpenMP workers spin-wait on the cores the env threads need (measured: 2 torch
        # threads made a 2-thread evaluation 1.5x slower). One torch thread while evaluating.
        torch_threads = torch.get_num_threads()
        if self.one_torch_thread:
            torch.set_num_threads(1)
        try:
            for _ in range(self.max_steps):
                # Finished episodes keep their last observation: one static shape for the policy.
                actions = act(obs.astype(np.float32))
                self._step_all(actions, obs, returns, lengths, running)
                if not running.any():
                    break
        finally:
            if self.one_torch_thread:
                torch.set_num_threads(torch_threads)
        results = []
        for member in range(self.members):
            part = slice(member * self.episodes, (member + 1) * self.episodes)
            results.append(EvalResult(returns=returns[part].copy(), lengths=lengths[part].copy(),
                                      normalized=np.asarray(normalized_score(self.domain, returns[part]),
                                                            dtype=np.float64)))
        return results

    def _step_all(self, actions, obs, returns, lengths, running) -> None:
        def step_part(indices: np.ndarray) -> None:
            for i in indices[running[indices]]:
                observation, reward, terminated, _, _ = self._envs[i].step(actions[i])
                obs[i] = observation
                returns[i] += reward
                lengths[i] += 1
                running[i] = not terminated      # each index is written by one thread only

        if self._pool is None:
            step_part(self._parts[0])
        else:
            for future in [self._pool.submit(step_part, part) for part in self._parts]:
                future.result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
        for env in self._envs:
            env.close()
