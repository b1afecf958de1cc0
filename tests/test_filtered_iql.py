"""Stage-3 learner: every method's update, iql-target's independence from source, exact resume."""

from __future__ import annotations

import io
import math

import pytest
import torch

from dvdf.algos.filtered_iql import FilteredIQL
from dvdf.config import METHODS, FilterConfig, IQLConfig
from dvdf.filtering.select import keep_count
from dvdf.nets import BehaviorVAE, seeded_generators

OBS, ACT, B = 5, 2, 128
IQL = IQLConfig(hidden=32, steps=100)


def make_batch(gen: torch.Generator, source: bool, leading: tuple = ()) -> dict:
    shape = (*leading, B)
    batch = {"observations": torch.randn(*shape, OBS, generator=gen),
             "actions": torch.rand(*shape, ACT, generator=gen) * 2 - 1,
             "rewards": torch.randn(*shape, generator=gen),
             "next_observations": torch.randn(*shape, OBS, generator=gen),
             "dones": (torch.rand(*shape, generator=gen) < 0.1).float()}
    if source:
        batch["dyn_score"] = torch.rand(*shape, generator=gen) * 2 - 1
        batch["advantage"] = torch.randn(*shape, generator=gen)
    return batch


def frozen_vae() -> BehaviorVAE:
    return BehaviorVAE(OBS, ACT, hidden=16, generators=seeded_generators(0)).requires_grad_(False)


def make_agent(method: str, seed: int = 0, **filter_kwargs) -> FilteredIQL:
    extra = {"behavior_vae": frozen_vae(), "constraint_weight": 0.1} if method == "otdf" else {}
    return FilteredIQL(OBS, ACT, IQL, FilterConfig(method=method, **filter_kwargs), "cpu", seed, **extra)


def params(agent: FilteredIQL) -> list[torch.Tensor]:
    return [p.detach().clone() for net in (agent.q, agent.q_target, agent.v, agent.policy)
            for p in net.parameters()]


@pytest.mark.parametrize("method", METHODS)
def test_every_method_updates_with_finite_values(method):
    gen = torch.Generator().manual_seed(0)
    agent = make_agent(method)
    before = params(agent)
    for _ in range(3):
        info = agent.update(make_batch(gen, True), make_batch(gen, False))
    for key, value in info.items():
        assert not value.requires_grad, key
        if value.dtype != torch.bool:
            assert torch.isfinite(value).all(), key
    assert all(not torch.equal(a, b) for a, b in zip(before, params(agent)))
    for key in ("v_loss", "q_loss", "actor_loss", "q_mean", "v_mean", "advantage_mean"):
        assert info[key].shape == ()
    if method == "iql-target":
        assert "kept_mask" not in info
    else:
        expected = B if method == "iql-mix" else keep_count(B, 0.5)
        assert info["kept_mask"].shape == (B,) and int(info["kept_mask"].sum()) == expected
        assert info["kept_fraction"].item() == pytest.approx(expected / B)
    if method == "otdf":
        assert "behavior_nll" in info
    action = agent.act(torch.randn(7, OBS))
    assert action.shape == (7, ACT) and action.abs().max() < 1
    assert agent.act(torch.randn(7, OBS, dtype=torch.float64)).dtype == torch.float32


def test_iql_target_ignores_source():
    gen = torch.Generator().manual_seed(1)
    targets = [make_batch(gen, False) for _ in range(3)]
    a, b, c = (make_agent("iql-target", seed=5) for _ in range(3))
    for t in targets:
        a.update(None, t)
        b.update(make_batch(gen, True), t)
        c.update(make_batch(gen, True), t)
    for pa, pb, pc in zip(params(a), params(b), params(c)):
        assert torch.equal(pa, pb) and torch.equal(pa, pc)


def test_source_matters_for_filtered_methods():
    gen = torch.Generator().manual_seed(2)
    target = make_batch(gen, False)
    a, b = make_agent("dvdf-igdf", seed=5), make_agent("dvdf-igdf", seed=5)
    a.update(make_batch(gen, True), target)
    b.update(make_batch(gen, True), target)
    assert not all(torch.equal(pa, pb) for pa, pb in zip(params(a), params(b)))


def test_selection_follows_scores_and_weights():
    gen = torch.Generator().manual_seed(3)
    source = make_batch(gen, True)
    target = make_batch(gen, False)
    igdf = make_agent("igdf").update(source, target)
    top = torch.sort(source["dyn_score"], descending=True, stable=True).indices[:64]
    assert igdf["kept_mask"][top].all()
    expected_weight = source["dyn_score"][top].exp().mean().item()
    assert igdf["source_weight_mean"].item() == pytest.approx(expected_weight, rel=1e-6)
    # lambda = 1 makes DVDF's filter exactly IGDF's.
    dvdf_lambda1 = make_agent("dvdf-igdf", tradeoff=1.0).update(source, target)
    assert torch.equal(dvdf_lambda1["kept_mask"], igdf["kept_mask"])
    # lambda = 0 keeps the highest advantages.
    by_value = make_agent("dvdf-igdf", tradeoff=0.0).update(source, target)
    top_adv = torch.sort(source["advantage"], descending=True, stable=True).indices[:64]
    assert by_value["kept_mask"][top_adv].all()
    uniform = make_agent("dvdf-igdf", weight_rule="uniform").update(source, target)
    assert uniform["source_weight_mean"].item() == 1.0
    # OTDF: score normalised to [-1, 0] per batch, so weights exp(c) lie in [1/e, 1].
    otdf = make_agent("otdf", keep_ratio=0.8).update(source, target)
    assert int(otdf["kept_mask"].sum()) == keep_count(B, 0.8)
    assert math.exp(-1) <= otdf["source_weight_mean"].item() <= 1.0


def test_actor_lr_is_cosine_annealed():
    gen = torch.Generator().manual_seed(4)
    agent = make_agent("iql-target")
    for _ in range(IQL.steps // 2):
        agent.update(None, make_batch(gen, False))
    assert agent.actor_lr == pytest.approx(IQL.actor_lr / 2)
    assert agent.critic_lr == IQL.lr


@pytest.mark.parametrize("method", ["dvdf-igdf", "otdf"])
def test_state_dict_round_trip_gives_bit_identical_updates(method):
    gen = torch.Generator().manual_seed(6)
    batches = [(make_batch(gen, True), make_batch(gen, False)) for _ in range(6)]
    original = make_agent(method, seed=11)
    for s, t in batches[:3]:
        original.update(s, t)
    buffer = io.BytesIO()
    torch.save(original.state_dict(), buffer)
    buffer.seek(0)
    resumed = make_agent(method, seed=99)           # different init: everything must come from the state
    resumed.load_state_dict(torch.load(buffer, weights_only=False))
    for s, t in batches[3:]:
        info_a = original.update(s, t)
        info_b = resumed.update(s, t)
        for key in info_a:
            assert torch.equal(info_a[key], info_b[key]), key
    for pa, pb in zip(params(original), params(resumed)):
        assert torch.equal(pa, pb)
    assert resumed.step == original.step == 6
    assert resumed.actor_lr == original.actor_lr


def test_batched_members_train_like_single_agents():
    gen = torch.Generator().manual_seed(7)
    batches = [(make_batch(gen, True, (2,)), make_batch(gen, False, (2,))) for _ in range(3)]
    batched = FilteredIQL(OBS, ACT, IQL, FilterConfig(method="dvdf-igdf"), "cpu", seed=[3, 4], members=2)
    singles = [make_agent("dvdf-igdf", seed=s) for s in (3, 4)]
    for s, t in batches:
        info = batched.update(s, t)
        for k, agent in enumerate(singles):
            ref = agent.update({key: v[k] for key, v in s.items()}, {key: v[k] for key, v in t.items()})
            assert torch.equal(info["kept_mask"][k], ref["kept_mask"])
            torch.testing.assert_close(info["q_loss"][k], ref["q_loss"], rtol=1e-4, atol=1e-5)
    obs = torch.randn(5, OBS)
    actions = batched.act(obs)
    for k, agent in enumerate(singles):
        torch.testing.assert_close(actions[k], agent.act(obs), rtol=1e-4, atol=1e-5)


def test_constraint_weight_needs_a_vae():
    with pytest.raises(ValueError, match="behavior_vae"):
        FilteredIQL(OBS, ACT, IQL, FilterConfig(method="otdf"), "cpu", 0, constraint_weight=0.5)
    with pytest.raises(ValueError, match="source batch"):
        make_agent("igdf").update(None, make_batch(torch.Generator().manual_seed(0), False))


# Each case compiles for ~20 s: batched members (the sweeps' setting) by default, one member in make test-slow.
@pytest.mark.parametrize("members", [3, pytest.param(None, marks=pytest.mark.slow)])
def test_compiled_step_matches_eager(members):
    """iql.compile: losses runs the same math: parameters and statistics agree within float tolerance."""
    gen = torch.Generator().manual_seed(8)
    leading = () if members is None else (members,)
    batches = [(make_batch(gen, True, leading), make_batch(gen, False, leading)) for _ in range(4)]
    agents = [FilteredIQL(OBS, ACT, IQLConfig(hidden=32, steps=100, compile="losses" if compiled else "off"),
                          FilterConfig(method="dvdf-igdf"), "cpu", seed=3, members=members)
              for compiled in (False, True)]
    for s, t in batches:
        eager_info, compiled_info = (agent.update(s, t) for agent in agents)
        for key, value in eager_info.items():
            if value.dtype == torch.bool:
                assert torch.equal(value, compiled_info[key]), key
            else:
                torch.testing.assert_close(compiled_info[key], value, rtol=1e-4, atol=1e-5, msg=key)
    for pa, pb in zip(params(agents[0]), params(agents[1])):
        torch.testing.assert_close(pb, pa, rtol=1e-4, atol=1e-5)


def test_a_0_1_0_agent_state_resumes_exactly_in_the_0_1_0_order():
    """tests/data/agent_state_0.1.0.pt holds a state written by dvdf 0.1.0 (torch's optimiser state
    inside) and the parameters 0.1.0 reached one update later: loaded into this version with the
    0.1.0 step (iql.step_order: joint, iql.awr_reduction: sum), the same update gives them."""
    from pathlib import Path

    from v2_fixture import agent_v2, batches

    saved = torch.load(Path(__file__).parent / "data" / "agent_state_0.1.0.pt", weights_only=False)
    agent = agent_v2(step_order="joint", awr_reduction="sum")
    agent.load_state_dict(saved["agent"])
    assert agent.step == 3
    agent.update(*batches()[3])
    for net in ("q", "q_target", "v", "policy"):
        for name, p in getattr(agent, net).named_parameters(prefix=net):
            torch.testing.assert_close(p.detach(), saved["after_one_more_update"][name], rtol=1e-5, atol=1e-6,
                                       msg=name)
    resumed = agent_v2()                                  # the default (authors') step from the same state
    resumed.load_state_dict(saved["agent"])
    resumed.update(*batches()[3])


def test_an_agent_state_that_does_not_fit_fails_with_one_line():
    from dvdf.errors import DvdfError

    state = make_agent("dvdf-igdf").state_dict()
    other = FilteredIQL(OBS, ACT, IQLConfig(hidden=16, steps=100), FilterConfig(method="dvdf-igdf"), "cpu", 0)
    with pytest.raises(DvdfError, match="does not fit") as error:
        other.load_state_dict(state)
    assert "\n" not in str(error.value)
    with pytest.raises(DvdfError, match="format 7"):
        other.load_state_dict({**state, "format": 7})
