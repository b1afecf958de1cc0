"""Minari datasets in and out: built locally with minari's own DataCollector, never downloaded."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

minari = pytest.importorskip("minari")
pytest.importorskip("jax", reason="minari's DataCollector needs minari[create] (jax)")

import gymnasium  # noqa: E402

import dvdf.envs  # noqa: E402,F401  (registers dvdf/<domain>-v0 with gymnasium)
from dvdf.cli import main  # noqa: E402
from dvdf.data import read_dataset  # noqa: E402
from dvdf.errors import DvdfError  # noqa: E402


def collect(env_id: str, dataset_id: str, steps: int, data_format: str = "hdf5", seed: int = 0,
            max_episode_steps: int = 40, **env_kwargs):
    """Random actions through minari.DataCollector; episodes cut at ``max_episode_steps``."""
    env = minari.DataCollector(gymnasium.make(env_id, max_episode_steps=max_episode_steps, **env_kwargs),
                               data_format=data_format)
    env.action_space.seed(seed)
    env.reset(seed=seed)
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # minari's advice on optional fields (author, ...)
        dataset = env.create_dataset(dataset_id, algorithm_name="random", ref_min_score=-20.0, ref_max_score=3000.0)
    env.close()
    return dataset


@pytest.fixture(scope="module")
def minari_root(tmp_path_factory):
    """A MINARI_DATASETS_PATH with stock Hopper-v5 (HDF5), a dvdf domain (Arrow) and Ant-v5 data."""
    root = tmp_path_factory.mktemp("minari")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(root))
        collect("Hopper-v5", "mujoco/hopper/random-v0", 400)
        collect("dvdf/hopper-kinematic-v0", "dvdf/hopper-kinematic/random-v0", 300, data_format="arrow")
        collect("Ant-v5", "mujoco/ant/random-v0", 60)
        collect("Ant-v5", "mujoco/ant/nocontact-v0", 60, include_cfrc_ext_in_observation=False)
    return root


@pytest.fixture
def on_root(minari_root, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(minari_root))
    return minari_root


def test_stock_hopper_v5_reads_as_episodes_without_crossing_them(on_root):
    source = minari.load_dataset("mujoco/hopper/random-v0")
    dataset = read_dataset("minari:mujoco/hopper/random-v0", domain="hopper")
    episodes = list(source.iterate_episodes())
    assert len(dataset) == source.total_steps == sum(len(e.actions) for e in episodes)
    assert dataset.obs_dim == 11 and dataset.act_dim == 3
    # one dvdf episode per Minari episode, each ending in a terminal or a timeout
    assert int(dataset.episode_ends().sum()) == len(episodes)
    assert np.all((dataset.terminals | dataset.timeouts)[np.flatnonzero(dataset.episode_ends())])
    # every s' is the episode's own next observation, never the next episode's first one
    t = dataset.transitions()
    row = 0
    for episode in episodes:
        steps = len(episode.actions)
        np.testing.assert_allclose(t["next_observations"][row:row + steps], episode.observations[1:], rtol=1e-6)
        np.testing.assert_array_equal(t["dones"][row:row + steps], episode.terminations.astype(np.float32))
        row += steps
    np.testing.assert_allclose(dataset.episode_returns(), [e.rewards.sum() for e in episodes], rtol=1e-5)
    meta = dataset.metadata
    assert meta["ref_min_score"] == -20.0 and meta["ref_max_score"] == 3000.0
    assert meta["domain"] == "hopper" and meta["d4rl_compat"] is False and meta["minari_env_id"] == "Hopper-v5"


def test_dvdf_domain_arrow_dataset_maps_to_its_domain(on_root):
    dataset = read_dataset("minari:dvdf/hopper-kinematic/random-v0", domain="hopper-kinematic")
    assert len(dataset) == 300
    assert dataset.metadata["domain"] == "hopper-kinematic" and dataset.metadata["d4rl_compat"] is True
    assert dataset.metadata["minari_data_format"] == "arrow"


def test_a_directory_path_reads_like_the_id(on_root):
    by_id = read_dataset("minari:mujoco/hopper/random-v0")
    by_dir = read_dataset(on_root / "mujoco" / "hopper" / "random-v0")
    np.testing.assert_array_equal(by_id.observations, by_dir.observations)


def test_ant_v5_contact_forces_are_refused_and_the_plain_layout_maps(on_root):
    with pytest.raises(DvdfError, match=r"105 dims .*78 contact forces.*111"):
        read_dataset("minari:mujoco/ant/random-v0")
    dataset = read_dataset("minari:mujoco/ant/nocontact-v0", domain="ant")
    assert dataset.obs_dim == 111
    assert not dataset.observations[:, 27:].any() and dataset.observations[:, :27].any()


def test_replay_check_uses_plain_mujoco_for_gymnasium_v5_data(on_root, capsys):
    # Data of stock Hopper-v5 replays in dvdf's hopper with plain MuJoCo masses (the dataset's
    # d4rl_compat=False), and visibly worse with the old-MuJoCo masses.
    assert main(["replay-check", "minari:mujoco/hopper/random-v0", "--domain", "hopper", "--json",
                 "--no-progress"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main(["replay-check", "minari:mujoco/hopper/random-v0", "--domain", "hopper", "--json",
                 "--no-progress", "--d4rl-compat"]) == 0
    old = json.loads(capsys.readouterr().out)
    print("plain:", plain, "old masses:", old)
    assert plain["d4rl_compat"] is False and old["d4rl_compat"] is True
    assert plain["median_error"] < 1e-5 < old["median_error"]
    assert plain["fraction_within_tol"] > old["fraction_within_tol"]


@pytest.mark.parametrize("ref, message", [
    ("minari:mujoco/hopper/expert-v0", "no such local Minari dataset"),
    ("minari:not an id", "malformed Minari dataset id"),
])
def test_bad_references_are_one_line_errors(on_root, capsys, ref, message):
    assert main(["data", "inspect", ref]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_wrong_domain_and_corrupt_data_are_one_line_errors(on_root, capsys, tmp_path):
    assert main(["data", "inspect", "minari:mujoco/hopper/random-v0", "--domain", "walker2d"]) == 2
    assert "observations have 11 dims, domain 'walker2d' has 17" in capsys.readouterr().err
    import shutil

    broken = tmp_path / "broken-v0"
    shutil.copytree(on_root / "mujoco" / "hopper" / "random-v0", broken)
    (broken / "data" / "main_data.hdf5").write_bytes(b"not hdf5 at all")
    assert main(["data", "inspect", str(broken)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {broken}") and "\n" not in err


def test_missing_minari_package_names_the_extra(monkeypatch, on_root):
    import builtins

    real_import = builtins.__import__

    def no_minari(name, *args, **kwargs):
        if name == "minari" or name.startswith("minari."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_minari)
    with pytest.raises(DvdfError, match=r"pip install 'dvdf\[minari\]'"):
        read_dataset("minari:mujoco/hopper/random-v0")


def test_training_config_accepts_a_minari_source(on_root, tmp_path):
    import dataclasses

    from dvdf.config import ExperimentConfig
    from dvdf.experiment import validate_experiment
    from dvdf.stages import load_experiment_data

    base = ExperimentConfig()
    data = dataclasses.replace(base.data, source_path="minari:mujoco/hopper/random-v0",
                               target_path="minari:dvdf/hopper-kinematic/random-v0",
                               source_domain="hopper", target_domain="hopper-kinematic", target_fraction=0.5)
    config = dataclasses.replace(base, data=data, iql=dataclasses.replace(base.iql, compile="off"))
    validate_experiment(config)   # no "no such file" for Minari references
    loaded = load_experiment_data(config)
    assert len(loaded.source["observations"]) == 400 and len(loaded.target["observations"]) == 150
    assert loaded.source_path == "minari:mujoco/hopper/random-v0"


def test_export_round_trip_loads_in_minari_and_back(tmp_path, capsys):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import write_tiny_dataset

    source = tmp_path / "hopper-medium.hdf5"
    write_tiny_dataset(source, "hopper", 600, seed=3)
    out = tmp_path / "minari_out"
    assert main(["data", "export", str(source), "--format", "minari", "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["dataset_id"] == "dvdf/hopper/medium-v0" and result["env_id"] == "dvdf/hopper-v0"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(out))
        loaded = minari.load_dataset("dvdf/hopper/medium-v0")
        assert loaded.total_steps == 600
        assert loaded.storage.metadata["ref_min_score"] == pytest.approx(-20.272305)
        assert loaded.storage.metadata["ref_max_score"] == pytest.approx(3234.3)
        dvdf_meta = loaded.storage.metadata["dvdf"]
        assert dvdf_meta["quality"] == "medium" and json.loads(dvdf_meta["provenance_names"]) == ["uniform", "damped"]
        assert minari.get_normalized_score(loaded, np.array(3234.3)) == pytest.approx(1.0)
        back = read_dataset("minari:dvdf/hopper/medium-v0", domain="hopper")
    original = read_dataset(source)
    for key in ("observations", "actions", "rewards", "next_observations", "terminals"):
        np.testing.assert_array_equal(getattr(back, key), getattr(original, key), err_msg=key)
    np.testing.assert_array_equal(back.extras["provenance"], original.extras["provenance"])
    assert back.provenance_names() == ["uniform", "damped"]
    np.testing.assert_allclose(back.episode_returns(), original.episode_returns(), rtol=1e-6)
    # the same id again is refused, and nothing half-written is left behind
    assert main(["data", "export", str(source), "--format", "minari", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
