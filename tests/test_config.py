"""Strict config loading: numbers as people write them, unknown keys named, ranges checked."""

import pytest

from dvdf.config import ExperimentConfig, load_experiment_config
from dvdf.errors import DvdfError
from dvdf.schema import apply_overrides, dump_yaml, flatten, load_yaml


def write(tmp_path, text):
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return path


def test_defaults_are_the_paper_defaults():
    config = load_experiment_config(None)
    assert config.filter.method == "dvdf-igdf"
    assert (config.filter.tradeoff, config.filter.keep_ratio) == (0.7, 0.5)
    assert config.iql.batch_size == 128 and config.iql.expectile == 0.7 and config.iql.beta == 3.0
    assert config.data.target_fraction == 0.1 and not config.data.target_with_replacement
    assert config.scorer.contrastive.steps == 7000 and config.scorer.contrastive.embed_dim == 64


def test_numbers_parse_as_numbers(tmp_path):
    # PyYAML reads 3e-4 as a *string* (YAML 1.1); 1e6 for an int field is accepted when integral.
    config = load_experiment_config(write(tmp_path, "iql:\n  lr: 3e-4\n  steps: 1e6\n  beta: '2.5'\n"))
    assert config.iql.lr == pytest.approx(3e-4) and isinstance(config.iql.lr, float)
    assert config.iql.steps == 1_000_000 and isinstance(config.iql.steps, int)
    assert config.iql.beta == 2.5


def test_unknown_key_is_named_with_its_path(tmp_path):
    with pytest.raises(DvdfError, match=r"exp.yaml: unknown key 'iql.stpes'"):
        load_experiment_config(write(tmp_path, "iql:\n  stpes: 10\n"))


@pytest.mark.parametrize("override, message", [
    ("filter.tradeoff=1.7", r"filter.tradeoff \(lambda\) must be in \[0, 1\], got 1.7"),
    ("filter.keep_ratio=0", r"filter.keep_ratio \(xi\) must be in \(0, 1\]"),
    ("filter.method=cql", r"'filter.method' must be one of"),
    ("iql.steps=1.5", r"'iql.steps' must be an integer"),
    ("iql.steps=abc", r"'iql.steps' must be a number"),
    ("data.target_with_replacement=maybe", r"must be true or false"),
    ("data=3", r"'data' must be a mapping"),
])
def test_bad_values_are_rejected_clearly(override, message):
    with pytest.raises(DvdfError, match=message):
        load_experiment_config(None, [override])


def test_booleans_are_never_truthy_strings():
    config = load_experiment_config(None, ["data.target_with_replacement=False"])
    assert config.data.target_with_replacement is False


def test_overrides_create_sections_and_pass_the_same_checks(tmp_path):
    config = load_experiment_config(write(tmp_path, "seed: 1\n"), ["filter.tradeoff=0.25", "seed=200"])
    assert config.filter.tradeoff == 0.25 and config.seed == 200
    with pytest.raises(DvdfError, match="expected dotted.key=value"):
        apply_overrides({}, ["novalue"])


def test_resolved_config_round_trips(tmp_path):
    config = load_experiment_config(None, ["filter.method=otdf", "data.target_transitions=5000"])
    path = tmp_path / "resolved.yaml"
    path.write_text(dump_yaml(config))
    assert load_experiment_config(path) == config


def test_file_errors_name_the_file(tmp_path):
    with pytest.raises(DvdfError, match="no such file"):
        load_yaml(tmp_path / "missing.yaml")
    bad = write(tmp_path, "iql: [unclosed\n")
    with pytest.raises(DvdfError, match=r"exp.yaml: line \d+ invalid YAML"):
        load_yaml(bad)
    with pytest.raises(DvdfError, match="expected a mapping"):
        load_yaml(write(tmp_path, "- 1\n- 2\n"))


def test_method_properties():
    assert ExperimentConfig().filter.dynamics_scorer == "contrastive"
    config = load_experiment_config(None, ["filter.method=dvdf-otdf"])
    assert config.filter.dynamics_scorer == "ot" and config.filter.uses_value
    config = load_experiment_config(None, ["filter.method=iql-target"])
    assert not config.filter.uses_source and config.filter.dynamics_scorer is None


def test_flatten():
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": 2}) == {"a.b": 1, "a.c.d": [1, 2], "e": 2}
