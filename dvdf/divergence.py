"""Divergence watch: stop a run whose losses or state became non-finite, flag one that explodes.

Checked once per evaluation, never per step: the interval's training statistics (means of every
loss and Q/V statistic, already read back for the log) must be finite, and one reduction on the
device over the agent's state (network parameters, target critic, optimiser moments) says whether
any of it holds a nan or an inf - a single small host transfer. A non-finite mean means a
non-finite value at some step of the interval (nan and inf propagate through the sum).

Finite but exploding values are only flagged: when the interval's mean |Q| or |V| (q_mean,
target_q_mean, v_mean) exceeds ``eval.q_bound`` the run logs a warning and its metrics carry
``q_bound_exceeded: 1.0`` (layout.VALUE_BOUND_METRIC; 0.0 otherwise).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Optional

import torch

from dvdf.layout import VALUE_BOUND_METRIC

log = logging.getLogger(__name__)

LOSSES_FIRST = ("q_loss", "v_loss", "actor_loss")   # named first when several are non-finite
VALUE_STATS = ("q_mean", "target_q_mean", "v_mean")


@dataclass(frozen=True)
class Divergence:
    """Where a run diverged: the evaluation step that noticed it and the quantity, e.g. 'q_loss is nan'."""
    step: int
    quantity: str

    @property
    def message(self) -> str:
        return f"run diverged at step {self.step}: {self.quantity}"


def _kind(value: float) -> str:
    return "nan" if math.isnan(value) else "inf"


def nonfinite_state(state: dict) -> list[tuple[str, str]]:
    """(part, 'nan' | 'inf') for every top-level part of an agent ``state_dict`` holding a non-finite
    float; one device reduction per part and one transfer to the host for all of them."""
    parts, flags = [], []
    for name, value in state.items():
        tensors = [t for t in _tensors(value) if t.is_floating_point()]
        if tensors:
            parts.append(name)
            flags.append(torch.stack([torch.stack([t.isnan().any(), t.isinf().any()]) for t in tensors]).any(0))
    if not flags:
        return []
    table = torch.stack(flags).cpu().tolist()
    return [(name, "nan" if has_nan else "inf") for name, (has_nan, has_inf) in zip(parts, table)
            if has_nan or has_inf]


def _tensors(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)


class DivergenceWatch:
    """Checks each evaluation's statistics and the agent's state; see the module docstring."""

    def __init__(self, seeds: list[int], batched: bool, q_bound: float):
        self.seeds = seeds
        self.batched = batched
        self.q_bound = q_bound

    def check(self, step: int, train_stats: list[dict[str, float]], agent_state: dict) -> Optional[Divergence]:
        """The divergence, if any; otherwise adds the value-bound flag to every member's statistics."""
        for seed, stats in zip(self.seeds, train_stats):
            bad = [key for key, value in stats.items() if not math.isfinite(value)]
            if bad:
                key = min(bad, key=lambda k: LOSSES_FIRST.index(k) if k in LOSSES_FIRST else len(LOSSES_FIRST))
                return Divergence(step, f"{key} is {_kind(stats[key])}{self._of(seed)}")
        broken = nonfinite_state(agent_state)
        if broken:
            part, kind = broken[0]
            return Divergence(step, f"{part} state is {kind}")
        for seed, stats in zip(self.seeds, train_stats):
            largest = max((abs(stats[k]) for k in VALUE_STATS if k in stats), default=0.0)
            stats[VALUE_BOUND_METRIC] = float(largest > self.q_bound)
            if largest > self.q_bound:
                log.warning("warning: step %d%s: mean |Q| or |V| is %.3g, above eval.q_bound %g: "
                            "values are exploding", step, self._of(seed), largest, self.q_bound)
        return None

    def _of(self, seed: int) -> str:
        return f" (seed {seed})" if self.batched else ""
