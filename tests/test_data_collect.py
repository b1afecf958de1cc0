"""Generation: SAC resume, the qualities with provenance, policy cache, `dvdf collect`, rollouts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dvdf.cli import main as cli_main
from dvdf.config import QUALITIES, CollectConfig
from dvdf.data import read_dataset
from dvdf.data.behaviour import SACConfig, load_replay, load_result, train_sac
from dvdf.data.catalogue import list_data_dir
from dvdf.data.collect import ensure_dataset, pick_medium, policy_run_dir
from dvdf.data.rollout import collect_rollouts
from dvdf.envs import make_vector_env
from dvdf.errors import DvdfError

# A few seconds of SAC: 4 snapshots between the random and the final policy.
TINY = CollectConfig(transitions=400, sac_steps=300, snapshot_every=60, eval_episodes=1, expert_eval_episodes=2,
                     num_envs=4, seed=1)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    torch.set_num_threads(1)
    data_dir = tmp_path_factory.mktemp("data")
    paths = {q: ensure_dataset("hopper", q, data_dir, TINY, progress=False) for q in QUALITIES}
    return data_dir, paths


def test_all_qualities_with_provenance(generated):
    data_dir, paths = generated
    datasets = {q: read_dataset(p, domain="hopper") for q, p in paths.items()}
    assert {q: p.name for q, p in paths.items()} == {q: f"hopper-{q}.hdf5" for q in QUALITIES}
    for quality, ds in datasets.items():
        assert ds.metadata["quality"] == quality and ds.metadata["domain"] == "hopper"
        assert ds.metadata["seed"] == TINY.seed
        assert "provenance" in ds.extras and len(ds.extras["provenance"]) == len(ds)
        names = ds.provenance_names()
        assert ds.extras["provenance"].max() < len(names)
        assert ds.next_observations is not None
    for quality in ("random", "medium", "expert"):
        assert len(datasets[quality]) == TINY.transitions
        assert datasets[quality].provenance_names() == [quality]
    # medium-expert = the medium and expert datasets, labelled by policy.
    me = datasets["medium-expert"]
    assert len(me) == 2 * TINY.transitions and me.provenance_names() == ["medium", "expert"]
    np.testing.assert_array_equal(me.observations[:TINY.transitions], datasets["medium"].observations)
    np.testing.assert_array_equal(me.observations[TINY.transitions:], datasets["expert"].observations)
    np.testing.assert_array_equal(np.bincount(me.extras["provenance"]), [TINY.transitions, TINY.transitions])
    # random-expert = the random and expert datasets, labelled by policy (parts read back from
    # the files made before it in QUALITIES' order; medium-expert above was rolled out afresh).
    re_ = datasets["random-expert"]
    assert re_.provenance_names() == ["random", "expert"]
    np.testing.assert_array_equal(re_.observations[:TINY.transitions], datasets["random"].observations)
    np.testing.assert_array_equal(re_.actions[TINY.transitions:], datasets["expert"].actions)
    np.testing.assert_array_equal(np.bincount(re_.extras["provenance"]), [TINY.transitions, TINY.transitions])
    assert re_.metadata["behaviour_policy_mean_return"] == pytest.approx(np.mean(
        [datasets[q].metadata["behaviour_policy_mean_return"] for q in ("random", "expert")]))
    # medium-replay = SAC's replay buffer up to the medium snapshot, labelled by interval.
    mr = datasets["medium-replay"]
    medium_step = datasets["medium"].metadata["behaviour_policy_steps"]
    assert mr.metadata["medium_snapshot_step"] == medium_step == len(mr)
    assert mr.provenance_names()[0] == "uniform-random-warmup"
    assert np.all(np.diff(mr.extras["provenance"]) >= 0)
    # Policies: random = step 0, expert = the snapshot chosen on a fresh evaluation (stored beside
    # the run, its returns recorded), medium before it.
    assert datasets["random"].metadata["behaviour_policy_steps"] == 0
    expert = datasets["expert"].metadata
    run_dir = policy_run_dir("hopper", SACConfig.from_collect(TINY), data_dir / "policies")
    chosen = json.loads((run_dir / "expert-best-2ep.json").read_text())
    assert expert["behaviour_policy_steps"] == expert["expert_snapshot_step"] == chosen["step"] > 0
    assert expert["behaviour_policy_mean_return"] == chosen["return_stochastic"] == expert["expert_return"]
    assert expert["expert_rule"] == "best"
    assert 0 < medium_step < chosen["step"]
    # Rollouts are stochastic: two rows with the same state would be a miracle, actions vary.
    assert datasets["expert"].actions.std(axis=0).min() > 0.01


def test_mixture_reads_existing_parts_instead_of_rolling_out(generated, tmp_path, monkeypatch):
    import shutil

    import dvdf.data.collect as collect_module

    data_dir, paths = generated
    for part in ("medium", "expert"):
        shutil.copy(paths[part], tmp_path / paths[part].name)
    shutil.copytree(data_dir / "policies", tmp_path / "policies")

    def no_rollouts(*args, **kwargs):
        raise AssertionError("a part on disk was rolled out again")

    monkeypatch.setattr(collect_module, "_rollouts", no_rollouts)
    made = read_dataset(ensure_dataset("hopper", "medium-expert", tmp_path, TINY, progress=False))
    rolled = read_dataset(paths["medium-expert"])
    for column in ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations"):
        np.testing.assert_array_equal(getattr(made, column), getattr(rolled, column))
    np.testing.assert_array_equal(made.extras["provenance"], rolled.extras["provenance"])
    # A part made with other collect settings is not what the rollouts would give: rolled out.
    other = CollectConfig(**{**TINY.__dict__, "eval_episodes": 2})
    with pytest.raises(AssertionError, match="rolled out again"):
        policy = load_result(policy_run_dir("hopper", SACConfig.from_collect(TINY), tmp_path / "policies"))
        collect_module.generate_dataset("hopper", "medium-expert", other, policy, progress=False,
                                        parts_dir=tmp_path)


def test_one_policy_shared_and_catalogued(generated):
    data_dir, paths = generated
    runs = [p for p in (data_dir / "policies").iterdir() if p.is_dir()]
    assert len(runs) == 1  # one SAC training for all the qualities
    entries = {e["file"]: e for e in list_data_dir(data_dir)}
    assert set(entries) == {p.name for p in paths.values()}
    assert all(e["status"] == "ok" for e in entries.values())
    catalogue = json.loads((data_dir / "catalogue.json").read_text())
    assert catalogue["datasets"]["hopper-medium.hdf5"]["quality"] == "medium"


def test_ensure_dataset_reuses_file_and_rejects_other_settings(generated):
    data_dir, paths = generated
    before = paths["expert"].stat().st_mtime_ns
    assert ensure_dataset("hopper", "expert", data_dir, TINY, progress=False) == paths["expert"]
    assert paths["expert"].stat().st_mtime_ns == before
    other = CollectConfig(**{**TINY.__dict__, "transitions": 700})
    with pytest.raises(DvdfError, match="transitions=400"):
        ensure_dataset("hopper", "expert", data_dir, other, progress=False)


def test_expert_rules_final_and_cached_best(generated, monkeypatch):
    import dvdf.data.expert as expert_module
    from dvdf.data.collect import expert_snapshot

    data_dir, _ = generated
    policy = load_result(policy_run_dir("hopper", SACConfig.from_collect(TINY), data_dir / "policies"))
    final = CollectConfig(**{**TINY.__dict__, "expert": "final"})
    assert expert_snapshot(policy, final) == policy.snapshots[-1]   # D4RL's rule: the last actor
    monkeypatch.setattr(expert_module, "_reevaluate_candidates",
                        lambda *a: pytest.fail("a stored expert choice was evaluated again"))
    assert expert_snapshot(policy, TINY)["step"] == read_dataset(
        data_dir / "hopper-expert.hdf5").metadata["expert_snapshot_step"]
    with pytest.raises(DvdfError, match="collect.expert"):
        CollectConfig(expert="median")


def test_file_made_before_the_expert_rule_was_recorded_reads_as_final(generated, tmp_path):
    from dvdf.data.collect import COLLECT_SETTINGS_KEY, _check_collect_settings
    from dvdf.data.hdf5 import write_dataset

    data_dir, paths = generated
    old = read_dataset(paths["random"])
    recorded = json.loads(old.metadata[COLLECT_SETTINGS_KEY])
    for key in ("expert", "expert_eval_episodes"):
        recorded.pop(key)
    old.metadata[COLLECT_SETTINGS_KEY] = json.dumps(recorded)
    path = write_dataset(tmp_path / "hopper-random.hdf5", old)
    _check_collect_settings(path, CollectConfig(**{**TINY.__dict__, "expert": "final"}))
    with pytest.raises(DvdfError, match="expert=final \\(config: best\\)"):
        _check_collect_settings(path, TINY)


def test_collect_cli_reuses_cached_policy(generated, tmp_path, capsys):
    data_dir, _ = generated
    cache = data_dir / "policies"
    run_dir = policy_run_dir("hopper", SACConfig.from_collect(TINY), cache)
    checkpoint_time = (run_dir / "checkpoint.pt").stat().st_mtime_ns
    out = tmp_path / "me.hdf5"
    code = cli_main(["collect", "--domain", "hopper", "--quality", "random", "--out", str(out),
                     "--transitions", "200", "--sac-steps", "300", "--snapshot-every", "60",
                     "--eval-episodes", "1", "--expert-eval-episodes", "2",
                     "--num-envs", "2", "--seed", "1", "--cache-dir", str(cache), "--no-progress", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["policy_dir"] == str(run_dir) and summary["transitions"] == 200
    assert (run_dir / "checkpoint.pt").stat().st_mtime_ns == checkpoint_time  # not retrained
    assert read_dataset(out).metadata["quality"] == "random"


def test_collect_cli_bad_input(tmp_path, capsys):
    out = str(tmp_path / "x.hdf5")
    assert cli_main(["collect", "--domain", "no-such-robot", "--quality", "medium", "--out", out,
                     "--cache-dir", str(tmp_path)]) == 2
    assert "no-such-robot" in capsys.readouterr().err
    assert cli_main(["collect", "--domain", "hopper", "--quality", "medium", "--out", out,
                     "--transitions", "0"]) == 2
    assert "--transitions" in capsys.readouterr().err
    assert not (tmp_path / "x.hdf5").exists()


def test_pick_medium_is_closest_to_a_third():
    curve = [(0, 5), (10, 400), (20, 1100), (30, 2000), (40, 3000)]
    snaps = [{"step": s, "return_stochastic": r} for s, r in curve]
    assert pick_medium(snaps)["step"] == 20   # 3000 / 3 = 1000: 1100 is closest
    with pytest.raises(DvdfError, match="snapshot_every"):
        pick_medium(snaps[:1] + snaps[-1:])


def test_sac_resume_continues_the_same_run(tmp_path):
    torch.set_num_threads(1)
    config = SACConfig(steps=300, snapshot_every=100, eval_episodes=1, start_steps=50, batch_size=32,
                       hidden=32)
    whole = train_sac("hopper", config, tmp_path / "whole", progress=False)
    assert train_sac("hopper", config, tmp_path / "split", progress=False, stop_at=150) is None
    assert not (tmp_path / "split" / "result.json").exists()
    resumed = train_sac("hopper", config, tmp_path / "split", progress=False)
    assert resumed.snapshots == whole.snapshots
    a = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=False)["agent"]
    b = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=False)["agent"]
    for part in ("actor", "critic", "critic_target"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)
    assert torch.equal(a["log_alpha"], b["log_alpha"])
    replay_a, replay_b = load_replay(tmp_path / "whole"), load_replay(tmp_path / "split")
    for key in replay_a:
        np.testing.assert_array_equal(replay_a[key], replay_b[key])
    # A completed run is loaded, not retrained.
    assert train_sac("hopper", config, tmp_path / "whole", progress=False).snapshots == whole.snapshots


def test_rollouts_keep_episodes_contiguous():
    envs = make_vector_env("hopper", 3)
    rng = np.random.default_rng(0)
    ds = collect_rollouts(envs, lambda obs: rng.uniform(-1, 1, (len(obs), 3)), 500, seed=0, label=2)
    envs.close()
    assert len(ds) == 500 and (ds.extras["provenance"] == 2).all()
    ends = ds.terminals | ds.timeouts
    # Inside an episode the next row starts where this one ended; across episodes it does not.
    follows = np.all(ds.next_observations[:-1] == ds.observations[1:], axis=1)
    assert np.all(follows[~ends[:-1]])
    assert not np.any(follows[ends[:-1]])
    assert ends[-1]


def test_parallel_rollouts_same_rows_for_any_worker_count():
    """Sub-environments sharded over 2 worker processes give the rows of 1 process (each sub-env has
    its own reset seed and noise stream), in the same env-major order - up to float rounding: the
    policy's forward pass over 3 rows and over 1-2 rows rounds differently."""
    from dvdf.data.rollout import parallel_rollouts
    from dvdf.nets import TanhGaussianPolicy, seeded_generators

    actor = TanhGaussianPolicy(11, 3, 32, 2, generators=seeded_generators(4)[0])
    one = parallel_rollouts("hopper", actor, 3, 301, seed=7, workers=1, label=1)
    two = parallel_rollouts("hopper", actor, 3, 301, seed=7, workers=2, label=1)
    assert len(one) == len(two) == 301
    for name in ("observations", "actions", "rewards", "next_observations"):
        np.testing.assert_allclose(getattr(one, name), getattr(two, name), rtol=1e-4, atol=1e-4, err_msg=name)
    for name in ("terminals", "timeouts"):
        np.testing.assert_array_equal(getattr(one, name), getattr(two, name), err_msg=name)
    np.testing.assert_array_equal(one.extras["provenance"], two.extras["provenance"])
    assert one.actions.std(axis=0).min() > 0.01   # stochastic


def test_best_expert_is_chosen_on_the_fresh_evaluation_not_the_lucky_estimate():
    from dvdf.data.expert import EXPERT_CANDIDATES, choose_expert

    # Training-time returns: step 30 looked best (a lucky 5-episode estimate); step 60 is final.
    training = [(0, 5), (10, 900), (20, 2500), (30, 3300), (40, 2900), (50, 3000), (60, 1500), (70, 2800)]
    snaps = [{"step": s, "return_stochastic": r, "return_deterministic": r + 10, "path": f"s{s}.pt"}
             for s, r in training]
    fresh = {30: 2400.0, 40: 2950.0, 50: 2700.0, 70: 2600.0, 20: 2500.0}
    evaluated = []

    def evaluate(snap):
        evaluated.append(snap["step"])
        return fresh[snap["step"]], fresh[snap["step"]] + 50

    choice = choose_expert(snaps, evaluate)
    # Candidates: the top 5 by training-time return; the winner: the best fresh return.
    assert sorted(evaluated) == [20, 30, 40, 50, 70] and len(evaluated) == EXPERT_CANDIDATES
    assert choice["step"] == 40 and choice["path"] == "s40.pt"
    assert choice["return_stochastic"] == 2950.0 and choice["return_deterministic"] == 3000.0
    assert {r["step"]: r["training_return_stochastic"] for r in choice["selection"]["candidates"]}[30] == 3300
    # Medium is picked before the expert, at a third of its (fresh) return.
    assert pick_medium(snaps, choice)["step"] == 10
    with pytest.raises(DvdfError, match="no SAC snapshot"):
        choose_expert(snaps[:1], evaluate)
