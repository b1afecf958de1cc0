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


# Every field of an experiment with a bad value: one line 'error: ...', exit 2, nothing written.
# {file} is an existing regular file, {ro} a path nothing can be written under (/proc).
BAD_TRAIN_INPUTS = [
    ("name=my run", "name 'my run' must be letters, digits"),
    ("seed=-1", "seed must be >= 0, got -1"),
    ("seed=abc", "'seed' must be a number, got 'abc'"),
    ("device=tpu", "unknown device 'tpu'"),
    ("cache_dir=", "cache_dir is empty"),
    ("cache_dir={file}", "cache_dir: {file} is a file, not a directory"),
    ("cache_dir={file}/cache", "cannot be created: {file} is a file"),
    ("cache_dir={ro}/dvdf_cache", "is not writable"),
    ("threads=0", "threads must be > 0, got 0"),
    ("data.source_domain=hopper-wobbly", "hopper-wobbly"),
    ("data.target_domain=walker2d", "different observation/action spaces"),
    ("data.quality=great", "'data.quality' must be one of"),
    ("data.source_path=/no/such.hdf5", "data.source_path: /no/such.hdf5: no such file"),
    ("data.data_dir={file}", "data.data_dir: {file} is a file, not a directory"),
    ("data.target_fraction=0", "data.target_fraction must be in (0, 1], got 0"),
    ("data.target_fraction=1.5", "data.target_fraction must be in (0, 1], got 1.5"),
    ("data.target_transitions=0", "data.target_transitions must be > 0"),
    ("data.target_with_replacement=maybe", "must be true or false"),
    ("data.subsample_seed=-3", "data.subsample_seed must be >= 0"),
    ("data.collect.num_envs=0", "collect.num_envs must be > 0"),
    ("data.collect=[1]", "'data.collect' must be a mapping"),
    ("filter.method=cql", "'filter.method' must be one of"),
    ("filter.tradeoff=1.7", "filter.tradeoff (lambda) must be in [0, 1], got 1.7"),
    ("filter.tradeoff=-0.1", "filter.tradeoff (lambda) must be in [0, 1], got -0.1"),
    ("filter.keep_ratio=0", "filter.keep_ratio (xi) must be in (0, 1], got 0"),
    ("filter.keep_ratio=1.5", "filter.keep_ratio (xi) must be in (0, 1], got 1.5"),
    ("filter.keep_ratio=0.005", "filter.keep_ratio (xi) 0.005 keeps no row of a source batch of 128 "
                                "(iql.batch_size); the smallest valid xi is 1/128 = 0.0078125"),
    ("filter.weight_rule=exp", "'filter.weight_rule' must be one of"),
    ("filter.otdf_constraint_weight=-1", "filter.otdf_constraint_weight must be >= 0"),
    ("value.steps=0", "value.steps and value.batch_size must be > 0"),
    ("value.lr=0", "value.lr must be > 0"),
    ("value.discount=1.2", "value.discount must be in [0, 1)"),
    ("value.model=cql", "'value.model' must be one of"),
    ("scorer.contrastive.embed_dim=0", "scorer.contrastive.embed_dim must be > 0"),
    ("scorer.embed_dim=0", "scorer.contrastive.embed_dim must be > 0"),     # the 0.1.0 key, renamed
    ("scorer.ot.reg=0", "scorer.ot.reg must be > 0"),
    ("iql.steps=0", "iql.steps and iql.batch_size must be > 0"),
    ("iql.steps=1.5", "'iql.steps' must be an integer"),
    ("iql.batch_size=-4", "iql.steps and iql.batch_size must be > 0"),
    ("iql.lr=-1", "iql.lr must be > 0, got -1.0"),
    ("iql.actor_lr=0", "iql.actor_lr must be > 0"),
    ("iql.discount=1", "iql.discount must be in [0, 1), got 1.0"),
    ("iql.polyak=0", "iql.polyak must be in (0, 1], got 0.0"),
    ("iql.expectile=1", "iql.expectile must be in (0, 1)"),
    ("iql.hidden=0", "iql.hidden must be > 0"),
    ("iql.compile=true", "'iql.compile' must be one of 'auto', 'off', 'losses', 'step'"),
    ("eval.every=0", "eval.every must be > 0, got 0"),
    ("eval.episodes=0", "eval.episodes must be > 0, got 0"),
    ("eval.threads=0", "eval.threads must be > 0"),
    ("eval.q_bound=0", "eval.q_bound must be > 0"),
    ("eval.overlap=1", "'eval.overlap' must be true or false"),
    ("iql.stpes=3", "unknown key 'iql.stpes'"),
]


@pytest.mark.parametrize("override, message", BAD_TRAIN_INPUTS, ids=[o for o, _ in BAD_TRAIN_INPUTS])
def test_every_bad_train_input_is_one_line_exit_2(override, message, tmp_path, capsys):
    from dvdf.cli import main

    plain = tmp_path / "plain.txt"
    plain.write_text("not a directory\n")
    fill = {"file": str(plain), "ro": "/proc"}
    cfg = write(tmp_path, f"data:\n  data_dir: {tmp_path / 'data'}\ncache_dir: {tmp_path / 'cache'}\n")
    out = tmp_path / "run"
    assert main(["train", str(cfg), "--set", override.format(**fill), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message.format(**fill) in err
    assert not out.exists() and not (tmp_path / "cache").exists() and not (tmp_path / "data").exists()
