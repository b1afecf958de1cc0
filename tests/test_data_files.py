"""File layer: D4RL / OTDF layouts, round trips, validation errors, atomic writes, q-learning view."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from dvdf.cli import main as cli_main
from dvdf.data import Dataset, dataset_checksum, read_dataset, subsample, write_dataset
from dvdf.errors import DvdfError

OBS, ACT = 11, 3  # hopper sizes


def make_dataset(episode_lengths=(5, 4, 6), terminal_last=(True, False, False), seed=0, with_next=True,
                 provenance=True) -> Dataset:
    """Episodes one after another; non-terminal episodes end with a timeout (D4RL layout)."""
    rng = np.random.default_rng(seed)
    obs, nxt, act, rew, term, tout, prov = [], [], [], [], [], [], []
    for e, (length, terminal) in enumerate(zip(episode_lengths, terminal_last)):
        states = rng.normal(size=(length + 1, OBS)).astype(np.float32)
        obs.append(states[:-1])
        nxt.append(states[1:])
        act.append(rng.uniform(-1, 1, size=(length, ACT)).astype(np.float32))
        rew.append(rng.normal(size=length).astype(np.float32))
        t = np.zeros(length, bool)
        o = np.zeros(length, bool)
        (t if terminal else o)[-1] = True
        term.append(t)
        tout.append(o)
        prov.append(np.full(length, e % 2, dtype=np.int64))
    extras = {"provenance": np.concatenate(prov)} if provenance else {}
    return Dataset(np.concatenate(obs), np.concatenate(act), np.concatenate(rew), np.concatenate(term),
                   np.concatenate(tout), np.concatenate(nxt) if with_next else None, extras,
                   {"domain": "hopper", "quality": "medium", "seed": 3,
                    "provenance_names": json.dumps(["medium", "expert"])})


def write_raw(path: Path, arrays: dict) -> Path:
    with h5py.File(path, "w") as handle:
        for key, value in arrays.items():
            handle.create_dataset(key, data=value)
    return path


def raw_arrays(ds: Dataset) -> dict:
    return {"observations": ds.observations, "actions": ds.actions, "rewards": ds.rewards,
            "terminals": ds.terminals, "timeouts": ds.timeouts}


# ------------------------------------------------------------------ round trip
def test_round_trip_arrays_and_metadata(tmp_path):
    ds = make_dataset()
    ds.extras["infos/qpos"] = np.arange(len(ds) * 6, dtype=np.float64).reshape(len(ds), 6)
    path = write_dataset(tmp_path / "d.hdf5", ds, metadata={"behaviour_policy_steps": 1234,
                                                           "behaviour_policy_mean_return": 12.5})
    back = read_dataset(path)
    for key in ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations"):
        np.testing.assert_array_equal(getattr(back, key), getattr(ds, key))
        assert getattr(back, key).dtype == getattr(ds, key).dtype
    assert set(back.extras) == {"provenance", "infos/qpos"}
    np.testing.assert_array_equal(back.extras["infos/qpos"], ds.extras["infos/qpos"])
    np.testing.assert_array_equal(back.extras["provenance"], ds.extras["provenance"])
    for key, value in ds.metadata.items():
        assert back.metadata[key] == value
    assert back.metadata["behaviour_policy_steps"] == 1234
    assert back.metadata["behaviour_policy_mean_return"] == 12.5
    assert back.metadata["checksum_sha256"] == dataset_checksum(ds) == dataset_checksum(back)
    assert "created_at" in back.metadata and "dvdf_version" in back.metadata
    assert back.provenance_names() == ["medium", "expert"]


def test_checksum_is_content_sensitive():
    a, b = make_dataset(), make_dataset()
    assert dataset_checksum(a) == dataset_checksum(b)
    b.rewards[3] += 1e-3
    assert dataset_checksum(a) != dataset_checksum(b)


def test_modified_file_fails_checksum(tmp_path):
    path = write_dataset(tmp_path / "d.hdf5", make_dataset())
    with h5py.File(path, "r+") as handle:
        handle["rewards"][0] = 99.0
    with pytest.raises(DvdfError, match="checksum"):
        read_dataset(path)


# ------------------------------------------------------------------ layouts
def test_otdf_layout_loads(tmp_path):
    ds = make_dataset()
    arrays = {"observations": ds.observations, "actions": ds.actions,
              "rewards": ds.rewards[:, None].astype(np.float32),
              "terminals": ds.terminals[:, None].astype(np.float64),
              "next_observations": ds.next_observations,
              "metadata/algorithm": "SAC", "metadata/seed": 7}
    back = read_dataset(write_raw(tmp_path / "otdf.hdf5", arrays))
    assert back.rewards.shape == (len(ds),) and back.terminals.dtype == bool
    np.testing.assert_array_equal(back.terminals, ds.terminals)
    assert not back.timeouts.any()
    assert back.metadata == {"algorithm": "SAC", "seed": 7}
    # Episode boundaries are recovered from next_observations (3 episodes in the fixture).
    assert back.episode_ends().sum() == 3
    t = back.transitions()
    np.testing.assert_array_equal(t["next_observations"], ds.next_observations)
    np.testing.assert_array_equal(t["dones"], ds.terminals.astype(np.float32))


def test_d4rl_layout_without_next_observations(tmp_path):
    ds = make_dataset(with_next=False)
    arrays = raw_arrays(ds) | {"infos/qpos": np.zeros((len(ds), 6)),
                               "metadata/policy/fc0/weight": np.ones((2, 2))}
    back = read_dataset(write_raw(tmp_path / "d4rl.hdf5", arrays))
    assert back.next_observations is None
    assert "infos/qpos" in back.extras
    np.testing.assert_array_equal(back.metadata["policy/fc0/weight"], np.ones((2, 2)))
    t = back.transitions()
    # Episodes 5 (terminal), 4 (timeout), 6 (timeout, last row): timeout rows and the last row dropped.
    assert len(t["observations"]) == 15 - 2
    assert t["dones"].sum() == 1
    assert set(t) == {"observations", "actions", "rewards", "next_observations", "dones", "infos/qpos"}


def test_transitions_never_cross_episodes():
    ds = make_dataset(episode_lengths=(3, 4, 2), terminal_last=(False, True, False), with_next=True)
    starts = {0, 3, 7}  # first rows of the episodes
    first_states = {ds.observations[i].tobytes() for i in starts}
    no_next = Dataset(ds.observations, ds.actions, ds.rewards, ds.terminals, ds.timeouts, None,
                      dict(ds.extras), {})
    for view in (ds.transitions(), no_next.transitions()):
        for _s, s_next, _done in zip(view["observations"], view["next_observations"], view["dones"]):
            assert s_next.tobytes() not in first_states
    # The next-row rule must agree with the recorded next states wherever it keeps a row.
    view = no_next.transitions()
    keep = no_next.transition_rows()
    live = view["dones"] == 0
    np.testing.assert_array_equal(view["next_observations"][live], ds.next_observations[keep][live])


def test_with_next_observations_keeps_boundaries():
    ds = make_dataset(with_next=False)
    full = ds.with_next_observations()
    assert full.next_observations is not None
    assert full.episode_ends().sum() == ds.episode_ends().sum()


# ------------------------------------------------------------------ validation
def bad_files(tmp_path: Path):
    ds = make_dataset()
    base = raw_arrays(ds)
    (tmp_path / "text.hdf5").write_text("not hdf5 at all\n")
    good = write_dataset(tmp_path / "good.hdf5", ds)
    truncated = tmp_path / "truncated.hdf5"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    nan_obs = dict(base, observations=ds.observations.copy())
    nan_obs["observations"][4, 2] = np.nan
    inf_act = dict(base, actions=ds.actions.copy())
    inf_act["actions"][2, 0] = np.inf
    return {
        "not an HDF5 file": tmp_path / "text.hdf5",
        "truncated": truncated,
        "missing key 'actions'": write_raw(tmp_path / "missing.hdf5",
                                           {k: v for k, v in base.items() if k != "actions"}),
        "length mismatch": write_raw(tmp_path / "len.hdf5", dict(base, rewards=ds.rewards[:-1])),
        "contains NaN or inf \\(first at row 4\\)": write_raw(tmp_path / "nan.hdf5", nan_obs),
        "'actions' contains NaN or inf": write_raw(tmp_path / "inf.hdf5", inf_act),
        "empty dataset": write_raw(tmp_path / "empty.hdf5", {k: v[:0] for k, v in base.items()}),
        "neither 'timeouts' nor 'next_observations'": write_raw(
            tmp_path / "noends.hdf5", {k: v for k, v in base.items() if k != "timeouts"}),
        "'terminals' must be 0 or 1": write_raw(tmp_path / "flags.hdf5",
                                                dict(base, terminals=np.full(len(ds), 0.5))),
        "no such file": tmp_path / "absent.hdf5",
        "observations have 11 dims, domain 'walker2d' has 17": (good, "walker2d"),
        "actions have 3 dims, domain 'walker2d' has 6": (write_dataset(tmp_path / "act.hdf5", Dataset(
            np.zeros((4, 17), np.float32), np.zeros((4, 3), np.float32), np.zeros(4, np.float32),
            np.zeros(4, bool), np.ones(4, bool))), "walker2d"),
    }


def cases(tmp_path):
    """(message, path, domain) for every bad input."""
    for message, case in bad_files(tmp_path).items():
        path, domain = case if isinstance(case, tuple) else (case, None)
        yield message, path, domain


def test_each_bad_file_gives_its_error(tmp_path):
    for message, path, domain in cases(tmp_path):
        with pytest.raises(DvdfError, match=message) as info:
            read_dataset(path, domain=domain)
        assert str(path) in str(info.value), message


def test_bad_inputs_exit_2_through_cli(tmp_path, capsys):
    for message, path, domain in cases(tmp_path):
        argv = ["data", "inspect", str(path)] + (["--domain", domain] if domain else [])
        assert cli_main(argv) == 2, message
        err = capsys.readouterr().err
        assert err.startswith("error: ") and str(path) in err, (message, err)
        assert re.search(message, err), (message, err)
        assert len(err.strip().splitlines()) == 1
    # The real process exit status, once.
    argv = [sys.executable, "-m", "dvdf.cli", "data", "inspect", str(tmp_path / "text.hdf5")]
    result = subprocess.run(argv, capture_output=True, text=True)
    assert result.returncode == 2 and "not an HDF5 file" in result.stderr and "Traceback" not in result.stderr


def test_inspect_reports_dataset(tmp_path, capsys):
    path = write_dataset(tmp_path / "d.hdf5", make_dataset())
    assert cli_main(["data", "inspect", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["transitions"] == 15 and info["episodes"] == 3
    assert info["obs_dim"] == OBS and info["act_dim"] == ACT
    assert info["terminals"] == 1 and info["timeouts"] == 2
    assert info["valid"] is True and info["metadata"]["quality"] == "medium"
    assert info["provenance"] == {"medium": 11, "expert": 4}  # episodes of 5 and 6 rows vs 4
    returns = make_dataset().episode_returns()
    assert info["return_mean"] == pytest.approx(returns.mean())
    assert info["return_std"] == pytest.approx(returns.std())
    assert cli_main(["data", "inspect", str(path)]) == 0
    assert "episodes" in capsys.readouterr().out


# ------------------------------------------------------------------ atomic writes
def test_interrupted_write_leaves_no_file(tmp_path, monkeypatch):
    target = tmp_path / "out.hdf5"
    ds = make_dataset()
    original = h5py.Group.create_dataset
    calls = []

    def failing_create(self, name, *args, **kwargs):
        calls.append(name)
        if name == "timeouts":
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-write
        return original(self, name, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", failing_create)
    with pytest.raises(KeyboardInterrupt):
        write_dataset(target, ds)
    assert "observations" in calls  # the write had started
    assert list(tmp_path.iterdir()) == []


def test_killed_write_leaves_no_complete_looking_file(tmp_path):
    """SIGKILL mid-write (no cleanup possible): only a hidden temp file, never the final name."""
    target = tmp_path / "out.hdf5"
    script = f"""
import os, signal, h5py, numpy as np
from tests.test_data_files import make_dataset
from dvdf.data import write_dataset
original = h5py.Group.create_dataset
def dying(self, name, *a, **k):
    if name == "terminals":
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, name, *a, **k)
h5py.Group.create_dataset = dying
write_dataset({str(target)!r}, make_dataset())
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parents[1])
    assert result.returncode == -9
    assert not target.exists()
    assert all(p.name.startswith(".") for p in tmp_path.iterdir())


# ------------------------------------------------------------------ subsampling
def test_subsample_fraction_count_seed_replacement():
    ds = make_dataset(episode_lengths=(50, 50), terminal_last=(False, False))
    t = ds.transitions()
    a = subsample(t, fraction=0.1, seed=1)
    assert len(a["observations"]) == 10
    assert len(np.unique(a["observations"], axis=0)) == 10
    b = subsample(t, fraction=0.1, seed=1)
    np.testing.assert_array_equal(a["observations"], b["observations"])
    c = subsample(t, fraction=0.1, seed=2)
    assert not np.array_equal(a["observations"], c["observations"])
    assert len(subsample(t, count=25)["actions"]) == 25
    assert len(subsample(t)["rewards"]) == 10  # default fraction 0.1
    with_rep = subsample(t, count=500, replace=True, seed=0)
    assert len(with_rep["observations"]) == 500
    with pytest.raises(DvdfError, match="without replacement"):
        subsample(t, count=500)
    with pytest.raises(DvdfError, match="fraction"):
        subsample(t, fraction=1.5)


def test_subsample_dataset_keeps_valid_transitions():
    ds = make_dataset(with_next=False)
    small = subsample(ds, count=5, seed=0)
    assert isinstance(small, Dataset) and len(small) == 5
    rows = {tuple(r) for r in ds.observations.tolist()}
    assert all(tuple(r) in rows for r in small.observations.tolist())
    assert small.next_observations is not None
    assert "provenance" in small.extras and len(small.extras["provenance"]) == 5
