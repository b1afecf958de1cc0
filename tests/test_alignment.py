"""Value-alignment measurements (dvdf.alignment): kept composition per method, advantage ROC AUC."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from conftest import tiny_experiment_overrides

from dvdf.alignment import advantage_auc, discounted_return_to_go, kept_shares, roc_auc
from dvdf.config import load_experiment_config
from dvdf.errors import DvdfError
from dvdf.filtering.select import keep_count
from dvdf.stages import build_stages, load_experiment_data


def _config(data_dir, cache_dir, method, *extra):
    return load_experiment_config(None, tiny_experiment_overrides(data_dir, cache_dir, method) + list(extra))


def test_roc_auc_is_the_pairwise_win_rate():
    rng = np.random.default_rng(0)
    scores = np.round(rng.normal(size=40), 1)            # rounded: ties occur
    positive = rng.random(40) < 0.4
    pairs = list(itertools.product(scores[positive], scores[~positive]))
    brute = np.mean([1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs])
    assert roc_auc(scores, positive) == pytest.approx(brute)
    assert roc_auc(np.arange(6.0), np.arange(6) >= 3) == 1.0      # perfect ranking
    assert roc_auc(np.arange(6.0), np.arange(6) < 3) == 0.0
    with pytest.raises(DvdfError, match="both classes"):
        roc_auc(np.ones(3), np.ones(3, dtype=bool))


def test_return_to_go_restarts_at_every_episode_end():
    # Three episodes in file order: a terminal at row 1, a cut (successor is not the next row's
    # state) at row 3, and the last row.
    obs = np.arange(7, dtype=np.float32)[:, None]
    next_obs = obs + 1
    next_obs[3] = -1.0                                   # a timeout: the episode does not continue
    source = {"observations": obs, "next_observations": next_obs,
              "rewards": np.array([1, 2, 3, 4, 5, 6, 7], dtype=np.float32),
              "dones": np.array([0, 1, 0, 0, 0, 0, 0], dtype=np.float32)}
    g = 0.5
    expected = [1 + g * 2, 2, 3 + g * 4, 4, 5 + g * 6 + g * g * 7, 6 + g * 7, 7]
    assert discounted_return_to_go(source, g) == pytest.approx(expected)


def test_kept_shares_follow_each_methods_score(tiny_data_dir, tmp_path):
    cache = tmp_path / "cache"
    configs = [_config(tiny_data_dir, cache, "igdf"),
               _config(tiny_data_dir, cache, "dvdf-igdf", "filter.tradeoff=0.7"),
               _config(tiny_data_dir, cache, "dvdf-igdf", "filter.tradeoff=0.0")]   # value only
    shares = kept_shares(configs, batches=200, seed=3)
    assert [s.policy for s in shares] == ["uniform", "damped"] * 3
    batch = configs[0].iql.batch_size
    rate = keep_count(batch, 0.5) / batch
    # Per config: kept shares sum to 1, the source shares are the drawn composition, and the
    # policies' keep rates average (weighted by their rows) to the method's xi exactly.
    for start in range(0, len(shares), 2):
        pair = shares[start:start + 2]
        assert sum(s.kept_share for s in pair) == pytest.approx(1.0)
        assert sum(s.source_share for s in pair) == pytest.approx(1.0)
        assert sum(s.keep_rate * s.source_share for s in pair) == pytest.approx(rate)
    # Value only (lambda = 0): the kept rows are each batch's top advantages, so the policy with
    # the higher advantage of the two is over-represented among them.
    data = load_experiment_data(configs[2])
    advantage = build_stages(configs[2], data, torch.device("cpu")).advantage.numpy()
    labels = np.asarray(data.source["provenance"])
    better = data.provenance_names[int(advantage[labels == 1].mean() > advantage[labels == 0].mean())]
    value_only = {s.policy: s for s in shares[4:6]}
    assert value_only[better].kept_share > value_only[better].source_share + 0.05
    # The return-to-go of the drawn rows is the method-independent batch mean; of the kept rows,
    # the mean over exactly the rows that method kept.
    return_to_go = discounted_return_to_go(data.source, configs[0].iql.discount)
    for label, name in enumerate(data.provenance_names):
        drawn = {s.source_return_to_go for s in shares if s.policy == name}
        assert len(drawn) == 1
        assert min(return_to_go[labels == label]) <= drawn.pop() <= max(return_to_go[labels == label])
    assert all(np.isfinite(s.kept_return_to_go) for s in shares)
    # Keeping every row (xi = 1), the kept rows are the drawn ones.
    keep_all = kept_shares([_config(tiny_data_dir, cache, "igdf", "filter.keep_ratio=1.0")], batches=200, seed=3)
    for share in keep_all:
        assert share.kept_return_to_go == pytest.approx(share.source_return_to_go)
        assert share.kept_share == pytest.approx(share.source_share)


def test_kept_shares_rejects_a_method_without_selection(tiny_data_dir, tmp_path):
    with pytest.raises(DvdfError, match="keeps every source row"):
        kept_shares([_config(tiny_data_dir, tmp_path, "iql-mix")], batches=2)


def test_advantage_auc_per_model_and_length(tiny_data_dir, tmp_path):
    cache = tmp_path / "cache"
    sql = advantage_auc(_config(tiny_data_dir, cache, "dvdf-igdf"), "damped", "uniform", steps=[50, 100])
    iql = advantage_auc(_config(tiny_data_dir, cache, "dvdf-iql-adv"), "damped", "uniform", steps=[50])
    assert [(a.model, a.steps) for a in sql + iql] == [("sql", 50), ("sql", 100), ("iql", 50)]
    for result in sql + iql:
        assert 0.0 <= result.auc <= 1.0
        assert result.n_positive + result.n_negative == 3000
    # Each length is its own cached stage-1 artifact: the sweep's own (100 steps here) among them.
    data = load_experiment_data(_config(tiny_data_dir, cache, "dvdf-igdf"))
    labels = np.asarray(data.source["provenance"])
    stage = build_stages(_config(tiny_data_dir, cache, "dvdf-igdf", "value.steps=100"), data, torch.device("cpu"))
    assert sql[1].auc == pytest.approx(roc_auc(stage.advantage.numpy(), labels == 1))
    with pytest.raises(DvdfError, match="no rows of expert"):
        advantage_auc(_config(tiny_data_dir, cache, "dvdf-igdf"), "expert", "uniform", steps=[50])
