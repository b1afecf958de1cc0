"""The per-study searcher, trial aggregation and results tables, without starting Ray."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import pytest
import yaml

pytest.importorskip("ray")

from ray.tune.search import Searcher  # noqa: E402

from dvdf.errors import DvdfError  # noqa: E402
from dvdf.tune.callbacks import hparams_of  # noqa: E402
from dvdf.tune.results import collect, format_table, results_rows, summarize, write_tables  # noqa: E402
from dvdf.tune.searcher import StudySearcher  # noqa: E402
from dvdf.tune.spec import sweep_from_dict  # noqa: E402
from dvdf.tune.storage import ExperimentDir  # noqa: E402
from dvdf.tune.trainable import combine_reports, lockstep  # noqa: E402

TWO_GROUPS = {
    "groups": [{"robots": ["hopper"], "shifts": ["kinematic", "morph"], "qualities": ["medium"]}],
    "search": {"mode": "optuna", "num_samples": 4, "startup_trials": 2},
    "seeds": [1, 2],
}


def make_sweep(**changes):
    raw = yaml.safe_load(yaml.safe_dump(TWO_GROUPS))
    raw.update(changes)
    return sweep_from_dict(raw, source="test.yaml", check_domains=False)


def objective(config: dict) -> float:
    # A smooth score with its optimum away from the paper default, different per group.
    centre = 0.3 if "kinematic" in config["group"] else 0.9
    return 100.0 - 100.0 * ((config["tradeoff"] - centre) ** 2 + (config["keep_ratio"] - 0.4) ** 2)


def drain(searcher: StudySearcher, start: int = 0, limit: int = 1000) -> list[tuple[str, dict]]:
    out = []
    for i in range(start, start + limit):
        config = searcher.suggest(f"t{i}")
        if config == Searcher.FINISHED:
            break
        out.append((f"t{i}", config))
        searcher.on_trial_complete(f"t{i}", {"normalized_score": objective(config)})
    return out


def test_one_study_per_group_round_robin_default_first():
    sweep = make_sweep()
    trials = drain(StudySearcher(sweep))
    assert len(trials) == sweep.num_trials == 8
    studies = [c["study"] for _, c in trials]
    assert studies[:2] == [s.name for s in sweep.studies] and studies[2:4] == studies[:2]
    for study in sweep.studies:
        points = [(c["tradeoff"], c["keep_ratio"]) for _, c in trials if c["study"] == study.name]
        assert points[0] == (0.7, 0.5)                   # the paper default first
        assert len(set(points)) == 4
        assert all(0.0 <= t <= 1.0 and 0.1 <= k <= 1.0 for t, k in points)
    first = trials[0][1]
    assert {k: first[k] for k in ("robot", "shift", "quality", "method", "seeds")} == {
        "robot": "hopper", "shift": "kinematic", "quality": "medium", "method": "dvdf-igdf", "seeds": [1, 2]}


def test_groups_get_different_suggestions_and_runs_are_reproducible():
    a = drain(StudySearcher(make_sweep()))
    b = drain(StudySearcher(make_sweep()))
    assert [c for _, c in a] == [c for _, c in b]
    kin = [(c["tradeoff"], c["keep_ratio"]) for _, c in a if "kinematic" in c["study"]]
    morph = [(c["tradeoff"], c["keep_ratio"]) for _, c in a if "morph" in c["study"]]
    assert kin[1:] != morph[1:]


def test_optuna_is_told_the_results_and_failures():
    searcher = StudySearcher(make_sweep(search={"mode": "optuna", "num_samples": 2}))
    c0, c1 = searcher.suggest("a"), searcher.suggest("b")
    searcher.on_trial_complete("a", {"normalized_score": 42.0})
    searcher.on_trial_complete("b", None, error=True)
    studies = searcher.optuna_studies
    assert studies[c0["study"]].trials[0].value == 42.0
    assert studies[c1["study"]].trials[0].state.name == "FAIL"
    # The errored trial finishes after a resume: its value is added to the study's history.
    searcher.on_trial_complete("b", {"normalized_score": 7.0})
    assert [t.value for t in studies[c1["study"]].trials if t.state.name == "COMPLETE"] == [7.0]


def finish_restored_run(restored: StudySearcher, state, sweep, part, pending, uninterrupted) -> None:
    """Restore ``state`` into ``restored``, report the pending trial ("t3") and drain the rest: the
    suggestions must be the uninterrupted run's, and the first study's history its 4 trials."""
    restored.restore(str(state))
    restored.on_trial_complete("t3", {"normalized_score": objective(pending)})
    rest = drain(restored, start=4)
    assert [c for _, c in part] + [pending] + [c for _, c in rest] == [c for _, c in uninterrupted]
    history = restored.optuna_studies[sweep.studies[0].name].trials
    assert len(history) == 4 and all(t.state.name == "COMPLETE" for t in history)


def test_state_survives_save_and_restore(tmp_path):
    sweep = make_sweep()
    uninterrupted = drain(StudySearcher(sweep))
    first = StudySearcher(sweep)
    part = drain(first, limit=3)
    pending = first.suggest("t3")            # handed out, result not yet known
    first.save(str(tmp_path / "state.pkl"))
    restored = StudySearcher(sweep)
    finish_restored_run(restored, tmp_path / "state.pkl", sweep, part, pending, uninterrupted)
    with pytest.raises(RuntimeError, match="another sweep"):
        StudySearcher(make_sweep(groups=[{"robots": ["ant"], "shifts": ["morph"], "qualities": ["expert"]}])
                      ).restore(str(tmp_path / "state.pkl"))


# --- the Optuna RDB storage ---------------------------------------------------------------------
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path}/optuna.db"


def test_studies_live_in_the_sqlite_storage_named_like_the_study(tmp_path):
    import optuna

    sweep = make_sweep()
    url = sqlite_url(tmp_path)
    searcher = StudySearcher(sweep, storage=url)
    # created up front, with the paper default enqueued: the dashboard shows them before any result
    assert sorted(optuna.get_all_study_names(url)) == sorted(s.name for s in sweep.studies)
    trials = drain(searcher)
    for study in sweep.studies:
        stored = optuna.load_study(study_name=study.name, storage=url).trials   # a second reader
        expected = [objective(c) for _, c in trials if c["study"] == study.name]
        assert [t.state.name for t in stored] == ["COMPLETE"] * 4
        assert [t.value for t in stored] == pytest.approx(expected)
        assert stored[0].params == {"tradeoff": 0.7, "keep_ratio": 0.5}
    # the suggestions are the same as with in-memory studies
    assert [c for _, c in trials] == [c for _, c in drain(StudySearcher(sweep))]


def test_storage_state_survives_save_and_restore(tmp_path):
    import pickle

    sweep = make_sweep()
    uninterrupted = drain(StudySearcher(sweep))
    url = sqlite_url(tmp_path)
    first = StudySearcher(sweep, storage=url)
    part = drain(first, limit=3)
    pending = first.suggest("t3")
    first.save(str(tmp_path / "state.pkl"))
    # Ray pickles the searcher into tuner.pkl and restores its state into the unpickled copy
    restored = pickle.loads(pickle.dumps(StudySearcher(sweep, storage=url, resume=True)))
    finish_restored_run(restored, tmp_path / "state.pkl", sweep, part, pending, uninterrupted)


def test_killed_driver_keeps_the_history_and_fails_lost_asks(tmp_path):
    import optuna

    sweep = make_sweep()
    url = sqlite_url(tmp_path)
    first = StudySearcher(sweep, storage=url)
    drain(first, limit=2)                          # one finished trial per study
    first.save(str(tmp_path / "state.pkl"))        # Ray's last checkpoint before the kill
    lost_done = first.suggest("t2")                # after it: one trial finishes, one never reports
    first.on_trial_complete("t2", {"normalized_score": 55.0})
    first.suggest("t3")
    del first                                      # the driver dies here
    restored = StudySearcher(sweep, storage=url, resume=True)
    restored.restore(str(tmp_path / "state.pkl"))
    drain(restored, start=10)
    for study in sweep.studies:
        states = [t.state.name for t in optuna.load_study(study_name=study.name, storage=url).trials]
        assert "RUNNING" not in states             # the lost ask is marked failed, not left waiting
        if study.name == lost_done["study"]:
            values = [t.value for t in optuna.load_study(study_name=study.name, storage=url).trials]
            assert 55.0 in values                  # a result told after the checkpoint is kept
        else:
            assert states.count("FAIL") == 1
        assert states.count("COMPLETE") >= study.num_trials


def test_a_fresh_sweep_refuses_a_storage_that_already_holds_its_studies(tmp_path):
    sweep = make_sweep()
    url = sqlite_url(tmp_path)
    drain(StudySearcher(sweep, storage=url), limit=2)
    with pytest.raises(DvdfError, match=r"already holds study 'hopper-kinematic-medium.dvdf-igdf' with 1 trial"):
        StudySearcher(sweep, storage=url)
    resumed = StudySearcher(sweep, storage=url, resume=True)   # loads; the default is not enqueued twice
    assert len(resumed.optuna_studies[sweep.studies[0].name].trials) == 1


def test_a_database_url_in_the_file_prefixes_the_sweep_name(tmp_path):
    import optuna

    from dvdf.tune.searcher import dashboard_line, optuna_storage_url

    url = sqlite_url(tmp_path)
    sweep = make_sweep(name="labsweep", search={"mode": "optuna", "num_samples": 2, "storage": url})
    assert optuna_storage_url(sweep, "/results/labsweep") == url
    drain(StudySearcher(sweep, storage=url))
    assert sorted(optuna.get_all_study_names(url)) == sorted(f"labsweep/{s.name}" for s in sweep.studies)
    default = make_sweep()
    assert optuna_storage_url(default, "/results/x") == "sqlite:////results/x/optuna.db"
    assert optuna_storage_url(default, "s3://bucket/x") is None
    assert dashboard_line(default, "/results/x") == "Optuna dashboard (live): optuna-dashboard sqlite:////results/x/optuna.db"
    secret = make_sweep(search={"mode": "optuna", "num_samples": 2, "storage": "postgresql://me:hunter2@db/optuna"})
    assert "hunter2" not in dashboard_line(secret, "/results/x") and "postgresql://me:***@db/optuna" in \
        dashboard_line(secret, "/results/x")
    # a database that cannot be opened is one line, without the password
    with pytest.raises(DvdfError, match=r"cannot open Optuna storage postgresql://me:\*\*\*@127.0.0.1:1/optuna") as info:
        StudySearcher(secret, storage="postgresql://me:hunter2@127.0.0.1:1/optuna")
    assert "hunter2" not in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(DvdfError, match="'search.storage' must be a database URL"):
        make_sweep(search={"mode": "optuna", "num_samples": 2, "storage": "results/optuna.db"})
    with pytest.raises(DvdfError, match="'search.storage' is not used with mode: grid"):
        make_sweep(search={"mode": "grid", "tradeoff": [0.5], "keep_ratio": [0.5], "storage": url})


def test_grid_and_fixed_points():
    grid = make_sweep(search={"mode": "grid", "tradeoff": [0.0, 1.0], "keep_ratio": [0.2, 0.5, 0.8]},
                      methods=["dvdf-igdf", "iql-mix"])
    trials = drain(StudySearcher(grid))
    per_study = {}
    for _, c in trials:
        per_study.setdefault(c["study"], []).append((c["tradeoff"], c["keep_ratio"]))
    assert {k: len(v) for k, v in per_study.items()} == {
        "hopper-kinematic-medium.dvdf-igdf": 6, "hopper-morph-medium.dvdf-igdf": 6,
        "hopper-kinematic-medium.iql-mix": 1, "hopper-morph-medium.iql-mix": 1}
    assert set(per_study["hopper-morph-medium.dvdf-igdf"]) == {(t, k) for t in (0.0, 1.0) for k in (0.2, 0.5, 0.8)}
    fixed = make_sweep(search={"mode": "fixed"}, methods=["otdf", "dvdf-otdf"], method_params={"otdf": {"keep_ratio": 0.8}},
                       base={"filter": {"tradeoff": 0.6, "keep_ratio": 0.4}})
    points = {c["study"]: (c["tradeoff"], c["keep_ratio"]) for _, c in drain(StudySearcher(fixed))}
    assert points["hopper-kinematic-medium.otdf"][1] == 0.8
    assert points["hopper-kinematic-medium.dvdf-otdf"] == (0.6, 0.4)


# --- trainable aggregation ---------------------------------------------------------------------
@dataclass
class FakeReport:
    step: int
    metrics: dict
    done: bool
    members: dict


def fake_run(scores, every=100, seed=0):
    for i, score in enumerate(scores):
        step = (i + 1) * every
        # A run's own normalized_score_std is over its episodes; the trial's is over seeds.
        metrics = {"step": float(step), "normalized_score": score, "normalized_score_std": 99.0, "q_loss": score / 10}
        yield FakeReport(step, metrics, i == len(scores) - 1, {seed: metrics})


def test_lockstep_reports_mean_and_std_over_seeds():
    runs = {1: fake_run([10.0, 30.0], seed=1), 2: fake_run([20.0, 50.0], seed=2)}
    results = [combine_reports(r.values()) for r in lockstep(runs)]
    assert [r["step"] for r in results] == [100, 200]
    assert results[0]["normalized_score"] == 15.0 and results[0]["normalized_score_std"] == 5.0
    assert results[1]["normalized_score_seed1"] == 30.0 and results[1]["normalized_score_seed2"] == 50.0
    assert results[1]["q_loss"] == pytest.approx(4.0)
    assert [r["finished"] for r in results] == [0.0, 1.0]
    with pytest.raises(RuntimeError, match="different evaluations"):
        list(lockstep({1: fake_run([1.0, 2.0]), 2: fake_run([1.0])}))
    with pytest.raises(RuntimeError, match="out of step"):
        list(lockstep({1: fake_run([1.0], every=100), 2: fake_run([1.0], every=50)}))


def test_hparams_hold_every_distinguishing_value():
    sweep = make_sweep()
    config = StudySearcher(sweep).suggest("x")
    values = hparams_of(config)
    for key in ("robot", "shift", "quality", "target", "method", "tradeoff", "keep_ratio", "group", "study"):
        assert values[key] == config[key]
    assert values["seeds"] == "1,2"


# --- results tables from a directory -----------------------------------------------------------
def write_trial(root, name, config, results, error=False):
    trial = root / name
    trial.mkdir(parents=True)
    (trial / "params.json").write_text(json.dumps(config))
    (trial / "result.json").write_text("".join(json.dumps(r) + "\n" for r in results))
    if error:
        (trial / "error.txt").write_text("Traceback ...")


def test_results_table_from_the_experiment_directory(tmp_path):
    sweep = make_sweep()
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({**TWO_GROUPS, "name": "t"}))
    searcher = StudySearcher(sweep)
    configs = [searcher.suggest(f"id{i}") for i in range(6)]
    for i, config in enumerate(configs):
        score = objective(config)
        finished = i != 5
        rows = [{"step": 100, "normalized_score": score - 5, "normalized_score_std": 1.0, "finished": 0.0,
                 "trial_id": f"id{i}"}]
        if finished:
            rows.append({"step": 200, "normalized_score": score, "normalized_score_std": 2.0, "finished": 1.0,
                         "normalized_score_seed1": score - 2, "normalized_score_seed2": score + 2, "trial_id": f"id{i}"})
        write_trial(tmp_path, f"{config['study']}_id{i}", config, rows, error=(i == 5))
    exp = ExperimentDir(str(tmp_path))
    records = collect(exp)
    assert sorted(r.status for r in records) == ["failed"] + ["finished"] * 5
    summaries = summarize(sweep, records)
    kin = next(s for s in summaries if "kinematic" in s.study)
    kin_configs = [c for c in configs[:5] if c["study"] == kin.study]
    best = max(kin_configs, key=objective)
    assert kin.best.config == best and kin.best.score == pytest.approx(objective(best))
    assert (kin.default.config["tradeoff"], kin.default.config["keep_ratio"]) == (0.7, 0.5)
    assert (kin.trials, kin.finished) == (3, 3)
    morph = next(s for s in summaries if "morph" in s.study)
    assert (morph.trials, morph.finished) == (3, 2)
    row = next(r for r in results_rows(summaries) if r["study"] == kin.study)
    assert float(row["best_score_mean"]) == pytest.approx(objective(best), rel=1e-5)
    table = format_table(summaries)
    assert kin.study in table and f"{objective(best):.1f} +- 2.0" in table
    written = write_tables(str(tmp_path))
    assert len(written) == 2
    csv_lines = (tmp_path / "results.csv").read_text().splitlines()
    assert csv_lines[0].startswith("study,group,robot,shift,quality,target,method,trials,finished,best_tradeoff")
    assert len(csv_lines) == 3
    trials_csv = (tmp_path / "trials.csv").read_text().splitlines()
    assert len(trials_csv) == 7 and "normalized_score_seed2" in trials_csv[0]
    assert not math.isnan(kin.best.score)


# --- ASHA within studies -----------------------------------------------------------------------
@dataclass(eq=False)
class FakeTrial:
    trial_id: str
    config: dict


def test_asha_compares_trials_only_within_their_study():
    from ray.tune.schedulers import TrialScheduler

    from dvdf.tune.scheduler import PerStudyASHA
    from dvdf.tune.spec import AshaSpec

    asha = PerStudyASHA(AshaSpec(grace_period=1, reduction_factor=2), max_t=4, metric="normalized_score")
    strong = [FakeTrial(f"a{i}", {"study": "easy.dvdf-igdf"}) for i in range(3)]
    weak = FakeTrial("b0", {"study": "hard.dvdf-igdf"})
    for trial in strong + [weak]:
        asha.on_trial_add(None, trial)
    decisions = [asha.on_trial_result(None, t, {"training_iteration": 1, "normalized_score": s})
                 for t, s in zip(strong, (80.0, 90.0, 10.0))]
    assert decisions[-1] == TrialScheduler.STOP          # 10 is the worst of its own study
    # 5 is far below every score of the other study, but it is alone in its own: it continues.
    assert asha.on_trial_result(None, weak, {"training_iteration": 1, "normalized_score": 5.0}) == TrialScheduler.CONTINUE
    # A trial that reaches max_t is not stopped by ASHA: it finishes its own run.
    assert asha.on_trial_result(None, strong[1], {"training_iteration": 4, "normalized_score": 95.0}) == TrialScheduler.CONTINUE


def test_trials_request_their_fractional_gpu():
    from dvdf.tune.runner import build_trainable

    sweep = make_sweep(resources={"cpus": 2, "gpu": 0.25})
    assert build_trainable(sweep)._resources.required_resources == {"CPU": 2.0, "GPU": 0.25}
