"""When and where the loop's evaluations run: in line, or beside training (``eval.overlap``).

In line, an evaluation runs in the calling thread at its step and training waits. With overlap it
runs on a background thread, on a copy of the policy taken at its step, while training goes on to
the next evaluation; its report then arrives one interval late with the same numbers (episodes are
seeded by (seed + step, episode), see :mod:`dvdf.evaluation`).
"""

from __future__ import annotations

import copy
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch


@dataclass
class EvalJob:
    """An evaluation started at ``step``, with what its report needs from that moment."""
    step: int
    train_stats: list[dict[str, float]]
    steps_per_s: float
    state: dict[str, Any]    # the checkpoint as of ``step``
    results: Future          # -> one EvalResult per seed


class EvalSchedule:
    """Starts each evaluation: at once in the calling thread, or with ``overlap`` on a background
    thread, of a copy of the policy taken at the call - so training can go on meanwhile."""

    def __init__(self, evaluator, policy_net: torch.nn.Module, device: torch.device, members: Optional[int],
                 overlap: bool):
        self.evaluator = evaluator
        self.policy_net = policy_net
        self.copy = copy.deepcopy(policy_net).requires_grad_(False) if overlap else None
        self.act = numpy_policy(self.copy if overlap else policy_net, device, members)
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="dvdf-eval-overlap") if overlap else None

    def start(self, seeds: list[int]) -> Future:
        if self.pool is None:
            done: Future = Future()
            done.set_result(self.evaluator.evaluate(self.act, seeds))
            return done
        # In place: on CUDA the copy is queued before any later training kernel on the stream.
        self.copy.load_state_dict(self.policy_net.state_dict())
        return self.pool.submit(self.evaluator.evaluate, self.act, seeds)

    def close(self) -> None:
        """Waits for a running evaluation (its environments may be closed next)."""
        if self.pool is not None:
            self.pool.shutdown(wait=True)


def numpy_policy(policy_net: torch.nn.Module, device: torch.device, members: Optional[int]):
    """The deterministic action tanh(mu(s)) of ``policy_net`` as a numpy -> numpy function for the env.

    Observations arrive member-major, ``(members * episodes, obs)``; member k acts on its rows.
    """
    @torch.no_grad()
    def act(obs: np.ndarray) -> np.ndarray:
        obs_t = torch.as_tensor(obs, device=device, dtype=torch.float32)
        if members is not None:
            obs_t = obs_t.view(members, -1, obs_t.shape[-1])
        return policy_net.deterministic(obs_t).reshape(obs.shape[0], -1).cpu().numpy()
    return act
