"""The batched evaluator: members and threads change nothing but speed."""

import numpy as np
import pytest

from dvdf.data.rollout import deterministic_actor
from dvdf.evaluation import Evaluator
from dvdf.nets import TanhGaussianPolicy, seeded_generators


def policy_fn(seed: int):
    return deterministic_actor(TanhGaussianPolicy(11, 3, hidden=32, generators=seeded_generators(seed)))


def test_threads_and_members_give_the_single_evaluation():
    act_a, act_b = policy_fn(0), policy_fn(1)
    single = Evaluator("hopper", 3)
    expected = [single(act_a, seed=5), single(act_b, seed=9)]
    single.close()

    threaded = Evaluator("hopper", 3, threads=2)
    assert np.array_equal(threaded(act_a, seed=5).returns, expected[0].returns)
    threaded.close()

    def both(obs: np.ndarray) -> np.ndarray:   # member-major rows: 3 of member a, then 3 of b
        return np.concatenate([act_a(obs[:3]), act_b(obs[3:])])

    batched = Evaluator("hopper", 3, members=2, threads=2)
    results = batched.evaluate(both, [5, 9])
    for got, want in zip(results, expected):
        assert np.array_equal(got.returns, want.returns) and np.array_equal(got.lengths, want.lengths)
        assert got.metrics == want.metrics
    with pytest.raises(ValueError, match="expected 2 seeds"):
        batched.evaluate(both, [5])
    batched.close()


def test_episodes_end_at_termination_or_the_time_limit():
    evaluator = Evaluator("hopper", 2, env_kwargs={"terminate_when_unhealthy": False})
    result = evaluator(policy_fn(0), seed=0)
    evaluator.close()
    assert result.lengths.tolist() == [1000, 1000]
