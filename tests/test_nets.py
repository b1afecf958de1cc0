"""The members dimension: member k of a batched model is exactly a single model with k's weights."""

from __future__ import annotations

import math

import pytest
import torch

from dvdf.nets import MLP, BatchedLinear, TanhGaussianPolicy, TwinQ, ValueNet, seeded_generators


def copy_member(batched: torch.nn.Module, single: torch.nn.Module, k: int) -> None:
    """Load member k's slice of every batched parameter into the single (members=None) model."""
    with torch.no_grad():
        for (_name, p_b), (_, p_s) in zip(batched.named_parameters(), single.named_parameters()):
            p_s.copy_(p_b[k:k + 1])


@pytest.mark.parametrize("out_dim", [2, 1])     # out_dim 1 takes the value-head code path
@pytest.mark.parametrize("members", [1, 3])
def test_batched_mlp_member_matches_single_model_outputs_and_grads(members, out_dim):
    torch.manual_seed(0)
    batched = MLP(5, out_dim, hidden=16, layers=2, members=members)
    x = torch.randn(members, 7, 5)
    out = batched(x)
    assert out.shape == (members, 7, out_dim)
    out.square().sum().backward()
    for k in range(members):
        single = MLP(5, out_dim, hidden=16, layers=2)
        copy_member(batched, single, k)
        ref = single(x[k])
        torch.testing.assert_close(out[k], ref)
        ref.square().sum().backward()
        for p_b, p_s in zip(batched.parameters(), single.parameters()):
            torch.testing.assert_close(p_b.grad[k:k + 1], p_s.grad)


def test_shared_input_equals_explicit_copies():
    layer = BatchedLinear(4, 3, members=2)
    x = torch.randn(6, 4)
    torch.testing.assert_close(layer(x), layer(x.expand(2, 6, 4).clone()))


def test_single_model_accepts_any_leading_shape():
    net = MLP(4, 3, hidden=8)
    x = torch.randn(2, 5, 4)
    torch.testing.assert_close(net(x), net(x.reshape(10, 4)).reshape(2, 5, 3))


def test_seeded_initialisation_is_deterministic_and_per_member():
    a = TwinQ(11, 3, members=None, generators=seeded_generators(7))
    b = TwinQ(11, 3, members=None, generators=seeded_generators(7))
    c = TwinQ(11, 3, members=None, generators=seeded_generators(8))
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb)
        assert not torch.equal(pa, pc)
    # Member k of a batch built from seeds [7, 8] starts exactly as the single model seeded 7 / 8.
    batch = TwinQ(11, 3, members=2, generators=seeded_generators([7, 8]))
    for k, single in enumerate((a, c)):
        for pb, ps in zip(batch.parameters(), single.parameters()):
            assert torch.equal(pb[2 * k:2 * k + 2], ps)


def test_init_matches_nn_linear_bound():
    layer = BatchedLinear(64, 32, generators=seeded_generators(0))
    bound = 1 / math.sqrt(64)
    assert layer.weight.abs().max() <= bound and layer.weight.abs().max() > 0.9 * bound


def test_twin_q_heads_are_one_batched_module():
    q = TwinQ(11, 3, hidden=32)
    assert sum(isinstance(m, MLP) for m in q.modules()) == 1
    obs, act = torch.randn(9, 11), torch.randn(9, 3)
    out = q(obs, act)
    assert out.shape == (2, 9)
    assert not torch.allclose(out[0], out[1])     # independent heads
    batched = TwinQ(11, 3, hidden=32, members=3)
    assert batched(obs.expand(3, 9, 11), act.expand(3, 9, 3)).shape == (3, 2, 9)


def test_twin_q_members_match_single_models():
    batched = TwinQ(4, 2, hidden=16, members=2, generators=seeded_generators([1, 2]))
    obs, act = torch.randn(2, 5, 4), torch.randn(2, 5, 2)
    out = batched(obs, act)
    for k, seed in enumerate((1, 2)):
        single = TwinQ(4, 2, hidden=16, generators=seeded_generators(seed))
        torch.testing.assert_close(out[k], single(obs[k], act[k]))


def test_value_net_shape():
    assert ValueNet(11, hidden=8)(torch.randn(4, 11)).shape == (4,)
    assert ValueNet(11, hidden=8, members=2)(torch.randn(2, 4, 11)).shape == (2, 4)


def test_policy_deterministic_action_and_log_std_clamp():
    policy = TanhGaussianPolicy(3, 2, hidden=8)
    with torch.no_grad():
        policy.net.layers[-1].bias[0, 2:] = 100.0    # push log-std far above the clamp
    obs = torch.randn(5, 3)
    mean, log_std = policy(obs)
    assert torch.all(log_std == 2.0)
    torch.testing.assert_close(policy.deterministic(obs), torch.tanh(mean))


def test_policy_sample_log_prob_matches_torch_distribution():
    policy = TanhGaussianPolicy(3, 2, hidden=8)
    obs = torch.randn(6, 3)
    action, log_prob = policy.sample(obs, torch.Generator().manual_seed(0))
    mean, log_std = policy(obs)
    dist = torch.distributions.TransformedDistribution(
        torch.distributions.Normal(mean, log_std.exp()), [torch.distributions.TanhTransform()])
    torch.testing.assert_close(log_prob, dist.log_prob(action).sum(-1), rtol=1e-4, atol=1e-4)
    assert action.abs().max() < 1
