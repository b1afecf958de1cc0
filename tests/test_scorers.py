"""Dynamics scorers on synthetic data: two linear dynamics, the target's ranked above the source's."""

from __future__ import annotations

import pytest
import torch

from dvdf.algos.contrastive import ContrastiveScorer, fit_contrastive_scorer, nce_loss
from dvdf.algos.vae import behavior_log_prob_penalty, fit_behavior_vae, load_behavior_vae
from dvdf.algos.value_learner import ValueLearner, fit_value_model, source_advantages
from dvdf.config import BehaviorVAEConfig, ContrastiveConfig, OTConfig, ValueStageConfig
from dvdf.filtering.optimal_transport import ot_scores

OBS, ACT = 4, 2


def linear_transitions(n: int, dynamics: torch.Tensor, generator: torch.Generator) -> dict:
    """s' = [s, a] M + small noise, s ~ N(0, I), a ~ U(-1, 1)."""
    obs = torch.randn(n, OBS, generator=generator)
    act = torch.rand(n, ACT, generator=generator) * 2 - 1
    next_obs = torch.cat([obs, act], -1) @ dynamics + 0.05 * torch.randn(n, OBS, generator=generator)
    return {"observations": obs, "actions": act, "next_observations": next_obs,
            "rewards": torch.zeros(n), "dones": torch.zeros(n)}


def two_domains(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    target_dyn = torch.randn(OBS + ACT, OBS, generator=gen) / 2
    source_dyn = torch.randn(OBS + ACT, OBS, generator=gen) / 2
    return gen, target_dyn, source_dyn


def roc_auc(positive: torch.Tensor, negative: torch.Tensor) -> float:
    """P(score of a random positive > score of a random negative), ties counted half."""
    diff = positive[:, None] - negative[None, :]
    return ((diff > 0).float().mean() + 0.5 * (diff == 0).float().mean()).item()


def test_nce_loss_is_mean_bce_over_block():
    gen = torch.Generator().manual_seed(0)
    phi, psi_pos, psi_neg = (torch.randn(n, 3, generator=gen) for n in (4, 4, 3))
    loss, _ = nce_loss(phi, psi_pos, psi_neg)
    logits = torch.cat([(phi * psi_pos).sum(-1, keepdim=True), phi @ psi_neg.T], dim=1)   # 4 x 4 block
    labels = torch.zeros(4, 4)
    labels[:, 0] = 1
    ref = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
    torch.testing.assert_close(loss, ref)


def test_contrastive_scorer_ranks_target_dynamics_higher():
    gen, target_dyn, source_dyn = two_domains(0)
    target = linear_transitions(2000, target_dyn, gen)
    source = linear_transitions(4000, source_dyn, gen)
    cfg = ContrastiveConfig(steps=300, batch_size=64, embed_dim=16, hidden=64, lr=1e-3)
    scorer = fit_contrastive_scorer(source, target, cfg, seed=0, device="cpu")
    assert not any(p.requires_grad for p in scorer.parameters())

    held_out_target = linear_transitions(1000, target_dyn, gen)
    held_out_source = linear_transitions(1000, source_dyn, gen)
    h_target = scorer.score(held_out_target["observations"], held_out_target["actions"],
                            held_out_target["next_observations"], chunk=300)
    h_source = scorer.score(held_out_source["observations"], held_out_source["actions"],
                            held_out_source["next_observations"])
    assert h_target.shape == (1000,) and h_target.abs().max() <= 1 + 1e-6
    assert roc_auc(h_target, h_source) > 0.85


def test_contrastive_training_is_deterministic():
    gen, target_dyn, source_dyn = two_domains(1)
    target = linear_transitions(500, target_dyn, gen)
    source = linear_transitions(500, source_dyn, gen)
    cfg = ContrastiveConfig(steps=20, batch_size=16, embed_dim=8, hidden=16)
    a = fit_contrastive_scorer(source, target, cfg, seed=3, device="cpu")
    b = fit_contrastive_scorer(source, target, cfg, seed=3, device="cpu")
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert isinstance(a, ContrastiveScorer)


def test_ot_score_ranks_target_dynamics_higher():
    gen, target_dyn, source_dyn = two_domains(2)
    target = linear_transitions(400, target_dyn, gen)
    aligned = linear_transitions(300, target_dyn, gen)
    shifted = linear_transitions(300, source_dyn, gen)
    # The source set mixes both dynamics; chunks of 250 also exercise the chunking (last chunk 100).
    source = {k: torch.cat([aligned[k], shifted[k]]) for k in aligned}
    cfg = OTConfig(chunk=250, reg=0.01, max_iter=500)
    scores = ot_scores(source, target, cfg, device="cpu")
    assert scores.shape == (600,) and torch.isfinite(scores).all()
    assert roc_auc(scores[:300], scores[300:]) > 0.8


def bandit(n: int, seed: int) -> dict:
    """One-step episodes, r = -||a - tanh(s[:2])||^2: the advantage must rank transitions by reward."""
    gen = torch.Generator().manual_seed(seed)
    obs = torch.randn(n, 3, generator=gen)
    act = torch.rand(n, 2, generator=gen) * 2 - 1
    reward = -(act - torch.tanh(obs[:, :2])).square().sum(-1)
    return {"observations": obs, "actions": act, "rewards": reward,
            "next_observations": torch.randn(n, 3, generator=gen), "dones": torch.ones(n)}


@pytest.mark.parametrize("model", ["sql", "iql"])
def test_value_model_advantage_tracks_reward(model):
    data = bandit(4000, 0)
    cfg = ValueStageConfig(model=model, steps=300, hidden=64, lr=1e-3)
    learner = fit_value_model(data, cfg, robot="hopper", seed=0, device="cpu")
    assert learner.alpha == 0.1
    advantage = source_advantages(learner, data, chunk=1500)
    assert advantage.shape == (4000,)
    assert torch.corrcoef(torch.stack([advantage, data["rewards"]]))[0, 1] > 0.8
    # The state dict alone rebuilds the same frozen model.
    rebuilt = ValueLearner(3, 2, cfg, robot="hopper", seed=123)
    rebuilt.load_state_dict(learner.state_dict())
    torch.testing.assert_close(rebuilt.advantage(data["observations"], data["actions"]), advantage,
                               rtol=0, atol=0)


def test_advantage_reads_the_online_critic_by_default_as_the_authors():
    """A = min(Q1, Q2) - V of the ONLINE critic (the authors save and load it); the Polyak target
    critic only when asked for. A slow Polyak rate keeps the two critics apart."""
    data = bandit(600, 2)
    obs, act = data["observations"], data["actions"]
    cfg = ValueStageConfig(steps=50, hidden=16, lr=1e-2, polyak=0.01)
    assert cfg.advantage_critic == "online"
    learner = fit_value_model(data, cfg, robot="hopper", seed=0, device="cpu")
    with torch.no_grad():
        v = learner.v(obs)
        online = learner.q(obs, act).amin(-2) - v
        target = learner.q_target(obs, act).amin(-2) - v
    assert (online - target).abs().max() > 1e-2       # the two choices are told apart
    torch.testing.assert_close(source_advantages(learner, data, chunk=250), online, rtol=0, atol=0)
    # The target critic is still there as an option; training is the same, only A reads another critic.
    as_target = fit_value_model(data, ValueStageConfig(steps=50, hidden=16, lr=1e-2, polyak=0.01,
                                                       advantage_critic="target"),
                                robot="hopper", seed=0, device="cpu")
    torch.testing.assert_close(source_advantages(as_target, data), target, rtol=0, atol=0)


def test_value_model_is_deterministic_and_alpha_follows_robot():
    data = bandit(500, 1)
    cfg = ValueStageConfig(steps=10, hidden=16)
    a = fit_value_model(data, cfg, robot="ant", seed=4, device="cpu")
    b = fit_value_model(data, cfg, robot="ant", seed=4, device="cpu")
    assert a.alpha == 0.2
    assert torch.equal(a.advantage(data["observations"], data["actions"]),
                       b.advantage(data["observations"], data["actions"]))


def test_behavior_vae_learns_the_target_behaviour(tmp_path):
    gen = torch.Generator().manual_seed(5)
    obs = torch.randn(2000, OBS, generator=gen)
    act = torch.tanh(obs[:, :ACT])                       # deterministic behaviour a = tanh(s[:2])
    target = {"observations": obs, "actions": act}
    cfg = BehaviorVAEConfig(steps=300, hidden=64, lr=1e-3)
    vae = fit_behavior_vae(target, cfg, seed=0, device="cpu")
    assert not any(p.requires_grad for p in vae.parameters())
    noise = torch.Generator().manual_seed(0)
    in_behaviour = behavior_log_prob_penalty(vae, obs[:500], act[:500], noise).mean()
    off_behaviour = behavior_log_prob_penalty(vae, obs[:500], -act[:500], noise).mean()
    assert in_behaviour < off_behaviour / 3
    # Gradients reach the action (what the OTDF actor constraint needs), not the frozen VAE.
    action = act[:10].clone().requires_grad_(True)
    behavior_log_prob_penalty(vae, obs[:10], action, noise).sum().backward()
    assert action.grad is not None and action.grad.abs().sum() > 0
    # Saved and rebuilt from its state dict alone (sizes inferred from the weights).
    torch.save(vae.state_dict(), tmp_path / "vae.pt")
    loaded = load_behavior_vae(tmp_path / "vae.pt", cfg, device="cpu")
    assert not any(p.requires_grad for p in loaded.parameters())
    for name, value in vae.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[name]), name
