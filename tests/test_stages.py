"""Stage artifacts: which ones a method needs (from the registry) and what their cache keys hash.

The key of each artifact hashes its stage's config section whole, so the test walks every field
of every section (a field added later is walked too): changing it must change that artifact's
key - else a cache would hand back an artifact built with the old value - and no other key.
"""

from __future__ import annotations

import dataclasses
import typing

import numpy as np
import pytest

from dvdf.cache import artifact_key
from dvdf.config import ExperimentConfig, ScorerConfig, ValueStageConfig, experiment_config_from_dict
from dvdf.errors import DvdfError
from dvdf.methods import METHOD_NAMES, get_method
from dvdf.stages import CONTRASTIVE, OT, VAE, VALUE, ExperimentData, stage_inputs

EMPTY = {"observations": np.zeros((1, 1))}
DATA = ExperimentData(source=EMPTY, target=EMPTY, source_key="src-sha", target_key="tgt-sha")
# A method that builds each artifact, and the config section the artifact is keyed on.
SECTIONS = {
    VALUE: ("dvdf-igdf", lambda cfg: cfg.value, lambda cfg, new: cfg.replace(value=new)),
    CONTRASTIVE: ("igdf", lambda cfg: cfg.scorer.contrastive,
                  lambda cfg, new: cfg.replace(scorer=dataclasses.replace(cfg.scorer, contrastive=new))),
    OT: ("otdf", lambda cfg: cfg.scorer.ot,
         lambda cfg, new: cfg.replace(scorer=dataclasses.replace(cfg.scorer, ot=new))),
    VAE: ("otdf", lambda cfg: cfg.scorer.vae,
          lambda cfg, new: cfg.replace(scorer=dataclasses.replace(cfg.scorer, vae=new))),
}


def with_method(method: str, **changes) -> ExperimentConfig:
    base = ExperimentConfig()
    return base.replace(filter=dataclasses.replace(base.filter, method=method), **changes)


def keys(config: ExperimentConfig) -> dict[str, str]:
    return {kind: artifact_key(inputs) for kind, inputs in stage_inputs(config, DATA).items()}


def other_valid_value(section, name: str):
    """A different value of ``section.name`` that still passes the section's checks."""
    value = getattr(section, name)
    hint = typing.get_type_hints(type(section))[name]
    if typing.get_origin(hint) is typing.Literal:
        return next(choice for choice in typing.get_args(hint) if choice != value)
    if value is None:
        return 0.3
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value / 2
    raise AssertionError(f"no rule to change {type(section).__name__}.{name} ({value!r})")


CASES = [(kind, field.name) for kind, (_, section, _) in SECTIONS.items()
         for field in dataclasses.fields(section(ExperimentConfig()))]


@pytest.mark.parametrize("kind, name", CASES, ids=[f"{k}.{n}" for k, n in CASES])
def test_every_field_of_a_stage_section_changes_its_key_and_no_other(kind, name):
    method, section_of, with_section = SECTIONS[kind]
    base = with_method(method)
    section = section_of(base)
    changed = with_section(base, dataclasses.replace(section, **{name: other_valid_value(section, name)}))
    before, after = keys(base), keys(changed)
    assert before.keys() == after.keys() and kind in before
    assert after[kind] != before[kind], f"{kind} artifact key ignores {type(section).__name__}.{name}"
    assert {k: v for k, v in after.items() if k != kind} == {k: v for k, v in before.items() if k != kind}


def test_every_scorer_section_is_walked():
    # ScorerConfig's sections are exactly the three scorer artifacts above (a new section needs a key).
    assert [f.name for f in dataclasses.fields(ScorerConfig)] == ["contrastive", "ot", "vae"]


def test_lambda_xi_and_the_weighting_are_in_no_key():
    base = ExperimentConfig()
    for changes in ({"tradeoff": 0.2}, {"keep_ratio": 0.9}, {"weight_rule": "uniform"}):
        assert keys(base.replace(filter=dataclasses.replace(base.filter, **changes))) == keys(base)


def test_artifacts_follow_the_method_registry():
    for name in METHOD_NAMES:
        method = get_method(name)
        built = set(stage_inputs(with_method(name), DATA))
        expected = set()
        if method.uses_source:
            expected |= {VALUE} if method.uses_value else set()
            expected |= {method.dynamics_scorer} if method.dynamics_scorer else set()
            expected |= {VAE} if method.behavior_constraint else set()
        assert built == expected, name


def test_the_iql_ablation_keys_an_iql_value_stage_whatever_value_model_says():
    def value_inputs(method: str, model: str) -> dict:
        return stage_inputs(with_method(method, value=ValueStageConfig(model=model)), DATA)[VALUE]

    assert value_inputs("dvdf-iql-adv", "sql") == value_inputs("dvdf-iql-adv", "iql")
    assert value_inputs("dvdf-iql-adv", "sql") == value_inputs("dvdf-igdf", "iql")
    assert value_inputs("dvdf-iql-adv", "sql")["value"]["model"] == "iql"
    assert value_inputs("dvdf-igdf", "sql") != value_inputs("dvdf-igdf", "iql")


@pytest.mark.parametrize("old, new", sorted(ScorerConfig.RENAMED_KEYS.items()))
def test_old_flat_scorer_keys_load_into_the_sections(old, new):
    """Files (and stored run configs) of dvdf 0.1.0 still load, each old key landing in its section."""
    section_name, name = new.split(".")
    section = getattr(ScorerConfig(), section_name)
    value = other_valid_value(section, name)
    loaded = experiment_config_from_dict({"scorer": {old: value}}).scorer
    moved = dataclasses.replace(section, **{name: value})
    expected = dataclasses.replace(ScorerConfig(), **{section_name: moved})
    assert loaded == expected
    assert loaded == experiment_config_from_dict({"scorer": {section_name: {name: value}}}).scorer


def test_an_old_key_and_its_new_name_together_are_one_clear_error():
    with pytest.raises(DvdfError, match=r"exp.yaml: 'scorer.contrastive_steps' is the old name of "
                                        r"'scorer.contrastive.steps'; give only the new one"):
        experiment_config_from_dict({"scorer": {"contrastive_steps": 5, "contrastive": {"steps": 6}}},
                                    source="exp.yaml")
