"""Each loss against a hand computation on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch

from dvdf.algos.iql import EXP_ADV_MAX, awr_actor_loss, expectile_value_loss, polyak_update, td_target, weighted_td_loss
from dvdf.algos.sql import default_sql_alpha, sparse_value_loss
from dvdf.algos.vae import vae_loss, vae_negative_elbo


def test_expectile_value_loss_by_hand():
    value = torch.tensor([1.0, 2.0, 0.0])
    target_q = torch.tensor([2.0, 1.0, 0.5])           # u = [1, -1, 0.5]
    loss, info = expectile_value_loss(value, target_q, expectile=0.7)
    expected = (0.7 * 1.0 + 0.3 * 1.0 + 0.7 * 0.25) / 3
    assert loss.item() == pytest.approx(expected)
    assert info["v_loss"].item() == pytest.approx(expected)
    assert not info["v_loss"].requires_grad


def test_expectile_loss_members_are_independent_means():
    value = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    target_q = torch.tensor([[2.0, 1.0], [1.0, -2.0]])
    loss, _ = expectile_value_loss(value, target_q, expectile=0.9)
    assert loss.shape == (2,)
    assert loss[0].item() == pytest.approx((0.9 * 1 + 0.1 * 1) / 2)
    assert loss[1].item() == pytest.approx((0.9 * 1 + 0.1 * 4) / 2)


def test_td_target_by_hand():
    y = td_target(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 1.0]), torch.tensor([10.0, 10.0]), 0.9)
    assert y.tolist() == pytest.approx([1.0 + 9.0, 2.0])


def test_weighted_td_loss_by_hand():
    q = torch.tensor([[1.0, 2.0], [0.0, 4.0]])          # heads x batch
    y = torch.tensor([2.0, 2.0])
    w = torch.tensor([2.0, 0.5])
    loss, _ = weighted_td_loss(q, y, w)
    # head 1: mean(2*1, 0.5*0) = 1; head 2: mean(2*4, 0.5*4) = 5
    assert loss.item() == pytest.approx(1.0 + 5.0)
    unweighted, _ = weighted_td_loss(q, y)
    assert unweighted.item() == pytest.approx((1 + 0) / 2 + (4 + 4) / 2)
    ones, _ = weighted_td_loss(q, y, torch.ones(2))
    assert ones.item() == pytest.approx(unweighted.item())


def test_awr_actor_loss_clips_exp_advantage():
    pred = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.5, 0.0]])
    act = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])   # ||.||^2 = 1, 2, 0.25
    adv = torch.tensor([0.0, 10.0, -1.0])                       # exp(3*10) is clipped to 100
    loss, info = awr_actor_loss(pred, act, adv, beta=3.0, reduction="sum")
    expected = (1.0 * 1 + EXP_ADV_MAX * 2 + math.exp(-3.0) * 0.25) / 3
    assert loss.item() == pytest.approx(expected)
    assert info["exp_adv_mean"].item() == pytest.approx((1 + 100 + math.exp(-3)) / 3)


def test_awr_actor_loss_default_averages_over_action_dimensions():
    """The authors' reduction: per-row weight times the mean squared error over action dims."""
    pred = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.5, 0.0]])
    act = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])   # mean sq. error per row: 0.5, 1, 0.125
    adv = torch.tensor([0.0, 10.0, -1.0])
    loss, info = awr_actor_loss(pred, act, adv, beta=3.0)
    assert loss.item() == pytest.approx((1.0 * 0.5 + EXP_ADV_MAX * 1.0 + math.exp(-3.0) * 0.125) / 3)
    assert info["bc_error"].item() == pytest.approx((0.5 + 1.0 + 0.125) / 3)
    with pytest.raises(ValueError, match="reduction"):
        awr_actor_loss(pred, act, adv, beta=3.0, reduction="max")


def test_sql_value_loss_by_hand():
    alpha = 0.5
    value = torch.tensor([0.0, 1.0])
    target_q = torch.tensor([1.0, -2.0])       # u = [1, -3]; z = 1 + u/(2 alpha) = [2, -2]
    loss, info = sparse_value_loss(value, target_q, alpha)
    expected = ((2.0 ** 2 + 0.0 / alpha) + (0.0 + 1.0 / alpha)) / 2
    assert loss.item() == pytest.approx(expected)
    assert info["sparsity"].item() == pytest.approx(0.5)


def test_sql_alpha_defaults():
    assert default_sql_alpha("hopper") == 0.1
    assert default_sql_alpha("ant") == 0.2


def test_polyak_update_by_hand():
    target = [torch.tensor([0.0, 10.0]), torch.tensor([[1.0]])]
    online = [torch.tensor([1.0, 0.0]), torch.tensor([[3.0]])]
    polyak_update(target, online, 0.25)
    assert target[0].tolist() == pytest.approx([0.25, 7.5])
    assert target[1].item() == pytest.approx(1.5)
    assert online[0].tolist() == [1.0, 0.0]


def test_vae_elbo_by_hand():
    recon = torch.tensor([[0.5, 0.0]])
    action = torch.tensor([[0.0, 1.0]])             # squared errors 0.25, 1 -> mean 0.625
    mean = torch.tensor([[1.0, 0.0]])
    log_std = torch.tensor([[0.0, math.log(2.0)]])
    # KL per latent dim: 0.5 (mu^2 + s^2 - 1 - 2 log s) -> 0.5, 0.5 (4 - 1 - 2 log 2)
    kl = (0.5 + 0.5 * (3.0 - 2.0 * math.log(2.0))) / 2
    per_sample = vae_negative_elbo(recon, action, mean, log_std, kl_weight=0.5)
    assert per_sample.item() == pytest.approx(0.625 + 0.5 * kl)
    loss, _ = vae_loss(recon, action, mean, log_std, kl_weight=0.5)
    assert loss.item() == pytest.approx(0.625 + 0.5 * kl)
