"""The agent and batches of tests/data/agent_state_0.1.0.pt (written by dvdf 0.1.0, commit 9334170,
with this module): an otdf agent (VAE constraint, so the noise generator's state matters too)."""

from __future__ import annotations

import torch

from dvdf.algos.filtered_iql import FilteredIQL
from dvdf.config import FilterConfig, IQLConfig
from dvdf.nets import BehaviorVAE, seeded_generators

OBS, ACT, B = 4, 2, 16


def agent_v2(**iql) -> FilteredIQL:
    vae = BehaviorVAE(OBS, ACT, hidden=8, generators=seeded_generators(0)).requires_grad_(False)
    return FilteredIQL(OBS, ACT, IQLConfig(hidden=8, steps=10, **iql), FilterConfig(method="otdf"), "cpu", seed=5,
                       behavior_vae=vae, constraint_weight=0.1)


def batches() -> list[tuple[dict, dict]]:
    gen = torch.Generator().manual_seed(9)

    def one(source: bool) -> dict:
        batch = {"observations": torch.randn(B, OBS, generator=gen),
                 "actions": torch.rand(B, ACT, generator=gen) * 2 - 1,
                 "rewards": torch.randn(B, generator=gen),
                 "next_observations": torch.randn(B, OBS, generator=gen),
                 "dones": (torch.rand(B, generator=gen) < 0.1).float()}
        if source:
            batch["dyn_score"] = torch.randn(B, generator=gen)
        return batch

    return [(one(True), one(False)) for _ in range(4)]
