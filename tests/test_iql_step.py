"""dvdf's default stage-3 step is the authors' released step: the same numbers as a plain-PyTorch
restatement of it (three torch Adams, one after another; dvdf/algos/reference_step.py) on identical
networks and batches; the 0.1.0 order stays available as iql.step_order: joint."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from dvdf.algos.filtered_iql import FilteredIQL
from dvdf.algos.reference_step import AuthorsStep
from dvdf.config import FilterConfig, IQLConfig

OBS, ACT, B, STEPS = 5, 3, 64, 8


class _Deterministic(nn.Module):
    def __init__(self, policy):
        super().__init__()
        self.policy = policy

    def forward(self, obs):
        return self.policy.deterministic(obs)


def batches(seed: int = 0) -> list[tuple[dict, dict]]:
    gen = torch.Generator().manual_seed(seed)

    def one(source: bool) -> dict:
        batch = {"observations": torch.randn(B, OBS, generator=gen),
                 "actions": torch.rand(B, ACT, generator=gen) * 2 - 1,
                 "rewards": torch.randn(B, generator=gen),
                 "next_observations": torch.randn(B, OBS, generator=gen),
                 "dones": (torch.rand(B, generator=gen) < 0.1).float()}
        if source:
            batch["dyn_score"] = torch.rand(B, generator=gen) * 2 - 1
            batch["advantage"] = torch.randn(B, generator=gen)
        return batch

    return [(one(True), one(False)) for _ in range(STEPS)]


def agent_and_reference(**iql) -> tuple[FilteredIQL, AuthorsStep]:
    # steps=STEPS: the actor's cosine schedule reaches 0 within the test, so it is checked too.
    cfg = IQLConfig(hidden=32, steps=STEPS, compile="off", **iql)
    agent = FilteredIQL(OBS, ACT, cfg, FilterConfig(method="dvdf-igdf"), "cpu", seed=3)
    reference = AuthorsStep(copy.deepcopy(agent.q), copy.deepcopy(agent.v), _Deterministic(copy.deepcopy(agent.policy)),
                            copy.deepcopy(agent.q_target), lr=cfg.lr, actor_lr=cfg.actor_lr, steps=cfg.steps,
                            discount=cfg.discount, expectile=cfg.expectile, beta=cfg.beta, polyak=cfg.polyak,
                            tradeoff=agent.filter.tradeoff, kept=agent.kept_count(B))
    return agent, reference


def networks(agent_or_reference) -> list[torch.Tensor]:
    x = agent_or_reference
    policy = x.policy if isinstance(x, FilteredIQL) else x.actor.policy
    return [p.detach().clone() for net in (x.q, x.q_target, x.v, policy) for p in net.parameters()]


def test_default_step_is_the_authors_step():
    agent, reference = agent_and_reference()
    for source, target in batches():
        info = agent.update(source, target)
        ref = reference(source, target)
        for key in ("v_loss", "q_loss", "actor_loss"):
            torch.testing.assert_close(info[key], ref[key], rtol=1e-5, atol=1e-6, msg=key)
    for mine, theirs in zip(networks(agent), networks(reference)):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)
    assert agent.actor_lr == pytest.approx(reference.actor_optimizer.param_groups[0]["lr"], abs=1e-12)


@pytest.mark.parametrize("option", [{"step_order": "joint"}, {"awr_reduction": "sum"}])
def test_each_old_choice_departs_from_the_authors_step(option):
    """Each 0.1.0 choice alone fails the comparison above (so it tells them apart). Under Adam the
    summed AWR error (act_dim x the mean) moves the actor almost as the mean does; its loss value,
    and its balance against OTDF's constraint, are what differ."""
    agent, reference = agent_and_reference(**option)
    worst = 0.0
    for source, target in batches():
        info, ref = agent.update(source, target), reference(source, target)
        worst = max(worst, *((info[k] - ref[k]).abs().item() / ref[k].abs().item() for k in ref))
    worst = max(worst, *((a - b).abs().max().item() for a, b in zip(networks(agent), networks(reference))))
    assert worst > 1e-3
