"""Per-batch selection against a direct NumPy implementation of docs/METHOD.md stage 3."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dvdf.filtering.select import (
    combined_score,
    keep_count,
    kept_mask,
    minmax_normalize,
    ot_normalize,
    source_weights,
    top_k_indices,
)


def numpy_select(h, adv, tradeoff, keep_ratio, rule):
    """The stage-3 filter written out in NumPy, one batch at a time."""
    an = (adv - adv.min()) / (adv.max() - adv.min() + 1e-8)
    g = tradeoff * h + (1 - tradeoff) * an
    k = int(np.floor(len(h) * keep_ratio))
    order = np.argsort(-g, kind="stable")[:k]          # ties: lower index first
    weight = {"exp_score": np.exp(h[order]), "exp_combined": np.exp(g[order]),
              "uniform": np.ones(k)}[rule]
    return order, weight, g


def torch_select(h, adv, tradeoff, keep_ratio, rule):
    h_t, adv_t = torch.from_numpy(h), torch.from_numpy(adv)
    g = combined_score(h_t, adv_t, tradeoff)
    idx = top_k_indices(g, keep_count(h_t.shape[-1], keep_ratio))
    weight = source_weights(rule, h_t.gather(-1, idx), g.gather(-1, idx))
    return idx.numpy(), weight.numpy(), g.numpy()


@pytest.mark.parametrize("rule", ["exp_score", "exp_combined", "uniform"])
@pytest.mark.parametrize("tradeoff,keep_ratio", [(0.7, 0.5), (0.3, 0.25), (1.0, 0.8), (0.0, 1.0)])
def test_selection_matches_numpy(rule, tradeoff, keep_ratio):
    rng = np.random.default_rng(0)
    for _ in range(5):
        h = rng.uniform(-1, 1, 128)
        adv = rng.normal(0, 3, 128)
        idx, w, g = torch_select(h, adv, tradeoff, keep_ratio, rule)
        ref_idx, ref_w, ref_g = numpy_select(h, adv, tradeoff, keep_ratio, rule)
        np.testing.assert_allclose(g, ref_g, rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(idx, ref_idx)
        np.testing.assert_allclose(w, ref_w, rtol=1e-12)


def test_ties_are_broken_by_lower_index_and_deterministic():
    score = torch.tensor([0.5, 1.0, 0.5, 1.0, 0.5, 0.0])
    idx = top_k_indices(score, 4)
    assert idx.tolist() == [1, 3, 0, 2]
    ref = np.argsort(-score.numpy(), kind="stable")[:4]
    assert idx.tolist() == ref.tolist()
    constant = torch.zeros(128)
    assert top_k_indices(constant, 64).tolist() == list(range(64))


def test_keep_ratio_one_keeps_everything():
    score = torch.randn(128)
    idx = top_k_indices(score, keep_count(128, 1.0))
    assert sorted(idx.tolist()) == list(range(128))
    assert kept_mask(idx, 128).all()


@pytest.mark.parametrize("batch,ratio,expected", [(128, 0.5, 64), (128, 0.7, 89), (128, 0.8, 102),
                                                  (100, 0.29, 29), (128, 0.001, 0), (7, 0.5, 3)])
def test_keep_count_is_exact_floor(batch, ratio, expected):
    assert keep_count(batch, ratio) == expected
    if ratio != 0.29:   # 0.29 * 100 is 28.999... in binary floating point; decimal floor is 29
        assert keep_count(batch, ratio) == math.floor(batch * ratio)


def test_tradeoff_one_is_igdf_ranking():
    rng = np.random.default_rng(1)
    h = torch.from_numpy(rng.uniform(-1, 1, 128))
    adv = torch.from_numpy(rng.normal(size=128))
    g = combined_score(h, adv, 1.0)
    assert torch.equal(top_k_indices(g, 64), top_k_indices(h, 64))
    assert torch.equal(g, h)


def test_minmax_and_ot_normalisation_ranges():
    x = torch.tensor([[3.0, 1.0, 2.0], [5.0, 5.0, 5.0]])
    an = minmax_normalize(x)
    assert an[0].tolist() == pytest.approx([1.0, 0.0, 0.5])
    assert an[1].tolist() == [0.0, 0.0, 0.0]              # constant batch: eps keeps it finite
    c = ot_normalize(torch.tensor([-0.2, -0.6, -0.4]))
    assert c.tolist() == pytest.approx([0.0, -1.0, -0.5], abs=1e-6)


def test_selection_is_per_batch_with_leading_member_dim():
    rng = np.random.default_rng(2)
    h = rng.uniform(-1, 1, (3, 128))
    adv = rng.normal(size=(3, 128))
    g = combined_score(torch.from_numpy(h), torch.from_numpy(adv), 0.7)
    idx = top_k_indices(g, 64)
    mask = kept_mask(idx, 128)
    assert mask.shape == (3, 128) and mask.sum(-1).tolist() == [64, 64, 64]
    for m in range(3):
        ref_idx, _, _ = numpy_select(h[m], adv[m], 0.7, 0.5, "uniform")
        assert idx[m].tolist() == ref_idx.tolist()


def test_unknown_weight_rule_is_rejected():
    with pytest.raises(ValueError, match="weight rule"):
        source_weights("softmax", torch.zeros(2), torch.zeros(2))


def test_filtering_never_imports_algos():
    """Dependencies run one way: dvdf.algos uses dvdf.filtering (select), never the reverse."""
    import ast
    from pathlib import Path

    import dvdf.filtering

    offenders = []
    for path in sorted(Path(dvdf.filtering.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name}: {name}" for name in names
                          if name.split(".")[:2] == ["dvdf", "algos"]]
    assert offenders == []


def test_lambda_and_xi_ranges_one_rule():
    from dvdf.methods import KEEP_RATIO_INTERVAL, TRADEOFF_INTERVAL, valid_keep_ratio, valid_tradeoff

    assert (TRADEOFF_INTERVAL, KEEP_RATIO_INTERVAL) == ("[0, 1]", "(0, 1]")
    assert [valid_tradeoff(x) for x in (-0.01, 0.0, 0.7, 1.0, 1.01)] == [False, True, True, True, False]
    xi_valid = [valid_keep_ratio(x) for x in (0.0, 1e-9, 0.5, 1.0, 1.01)]
    assert xi_valid == [False, True, True, True, False]
