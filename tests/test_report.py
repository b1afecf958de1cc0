"""dvdf report: table numbers, missing/partial/failed handling, figures, CLI errors.

Table math and edge cases run on small metrics.jsonl files written here (scores chosen by the
test, so every expected number is computed independently with numpy). The end-to-end tests
report on real results: tiny `run_experiment` runs, and a tiny real Ray Tune sweep (marked ray).
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dvdf.config import config_to_yaml, experiment_config_from_dict
from dvdf.errors import DvdfError
from dvdf.report import build_report
from dvdf.report.load import error_headline, load_experiment
from dvdf.report.sensitivity import GRID, SAMPLED, sensitivity_studies
from dvdf.report.stats import BEST, FINAL, group_settings, table_cells

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------ synthetic runs
def write_run(directory: Path, method: str, scores, *, seed=100, robot="hopper", shift="kinematic",
              quality="medium", tradeoff=0.7, keep_ratio=0.5, total_steps=None, every=100, extra=None) -> Path:
    """A run directory as run_experiment writes it, with the given score per evaluation."""
    directory.mkdir(parents=True, exist_ok=True)
    total_steps = total_steps or every * len(scores)
    config = experiment_config_from_dict({
        "seed": seed, "data": {"source_domain": f"{robot}-{shift}", "target_domain": robot, "quality": quality},
        "filter": {"method": method, "tradeoff": tradeoff, "keep_ratio": keep_ratio},
        "iql": {"steps": total_steps}, "eval": {"every": every}})
    (directory / "config.yaml").write_text(config_to_yaml(config))
    rows = []
    for i, score in enumerate(scores):
        row = {"step": every * (i + 1), "normalized_score": float(score), "return_mean": 10.0 * score}
        row.update(extra(i) if extra else {})
        rows.append(json.dumps(row))
    (directory / "metrics.jsonl").write_text("".join(line + "\n" for line in rows))
    return directory


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def paper_like_experiment(root: Path) -> dict:
    """Two shift types x two tasks x (igdf, dvdf-igdf) x 3 seeds, plus one partial and one missing cell.

    Returns the scores written, keyed (task, method) -> list of per-seed score lists.
    """
    rng = np.random.default_rng(0)
    written = {}
    for shift in ("kinematic", "morph"):
        for quality in ("medium", "expert"):
            task = f"hopper-{shift}-{quality}"
            for method, level in (("igdf", 40.0), ("dvdf-igdf", 50.0)):
                if (task, method) == ("hopper-morph-expert", "dvdf-igdf"):
                    continue  # a missing cell
                per_seed = []
                for seed in (100, 200, 300):
                    scores = list(level + rng.normal(0, 5, size=4))
                    partial = task == "hopper-kinematic-expert" and method == "igdf" and seed == 300
                    write_run(root / f"{task}-{method}-{seed}", method, scores[:2] if partial else scores, seed=seed,
                              shift=shift, quality=quality, total_steps=400)
                    per_seed.append(scores[:2] if partial else scores)
                written[(task, method)] = per_seed
    return written


# ------------------------------------------------------------------------------ table numbers
def test_table_numbers_equal_direct_computation(tmp_path):
    written = paper_like_experiment(tmp_path / "exp")
    summary = build_report(tmp_path / "exp", tmp_path / "out")
    rows = read_csv(tmp_path / "out" / "scores.csv")
    cells = {(r["score"], r["task"], r["method"]): r for r in rows}
    for (task, method), per_seed in written.items():
        for metric, pick in ((FINAL, lambda s: s[-1]), (BEST, max)):
            values = np.array([pick(s) for s in per_seed])
            row = cells[(metric, task, method)]
            assert float(row["mean"]) == pytest.approx(values.mean(), abs=1e-9)
            assert float(row["std"]) == pytest.approx(values.std(ddof=1), abs=1e-9)
            assert int(row["n_seeds"]) == 3
            assert row["partial"] == str(task == "hopper-kinematic-expert" and method == "igdf")
    missing = cells[(FINAL, "hopper-morph-expert", "dvdf-igdf")]
    assert missing["mean"] == "" and missing["missing_reason"]

    # Totals per shift type = sum of per-task means; comparisons on tasks both methods have.
    totals = {(r["score"], r["shift_type"], r["method"]): r for r in read_csv(tmp_path / "out" / "totals.csv")}
    final_mean = {key: np.mean([s[-1] for s in per_seed]) for key, per_seed in written.items()}
    kin_igdf = final_mean[("hopper-kinematic-medium", "igdf")] + final_mean[("hopper-kinematic-expert", "igdf")]
    assert float(totals[(FINAL, "kinematic", "igdf")]["total"]) == pytest.approx(kin_igdf)
    assert totals[(FINAL, "morph", "dvdf-igdf")]["tasks_with_results"] == "1"
    assert totals[(FINAL, "morph", "dvdf-igdf")]["tasks_in_shift"] == "2"
    comps = {(r["score"], r["shift_type"]): r for r in read_csv(tmp_path / "out" / "comparisons.csv")}
    kin = comps[(FINAL, "kinematic")]
    kin_dvdf = final_mean[("hopper-kinematic-medium", "dvdf-igdf")] + final_mean[("hopper-kinematic-expert", "dvdf-igdf")]
    assert float(kin["relative_change_pct"]) == pytest.approx(100 * (kin_dvdf - kin_igdf) / kin_igdf)
    wins = sum(final_mean[(t, "dvdf-igdf")] > final_mean[(t, "igdf")]
               for t in ("hopper-kinematic-medium", "hopper-kinematic-expert"))
    assert int(kin["won"]) == wins and int(kin["lost"]) == 2 - wins
    morph = comps[(FINAL, "morph")]
    assert morph["tasks"] == "1"  # hopper-morph-expert has no dvdf-igdf: not compared
    assert comps[(FINAL, "all")]["tasks"] == "3"

    md = (tmp_path / "out" / "tables.md").read_text()
    assert "Final score (normalized score at the last evaluation)" in md
    assert "Best-of-run score" in md
    assert "hopper-morph-expert / dvdf-igdf: no run of this method on this task" in md
    partial_cell = cells[(FINAL, "hopper-kinematic-expert", "igdf")]
    assert f"{float(partial_cell['mean']):.1f} ± {float(partial_cell['std']):.1f}*" in md
    assert summary["missing_cells"] == 1 and summary["runs"]["partial"] == 1


def test_best_setting_is_selected_and_stated(tmp_path):
    root = tmp_path / "exp"
    for tradeoff, level in ((0.3, 10.0), (0.7, 30.0), (1.0, 20.0)):
        for seed in (1, 2):
            write_run(root / f"l{tradeoff}-s{seed}", "dvdf-igdf", [level - 1, level + seed], seed=seed,
                      tradeoff=tradeoff)
    experiment = load_experiment(root)
    settings = group_settings(experiment.runs)
    assert len(settings) == 3
    cell = next(iter(table_cells(settings, FINAL).values()))
    assert cell.setting.tradeoff == 0.7 and cell.n_settings == 3
    assert cell.stats.mean == pytest.approx(31.5)
    build_report(root, tmp_path / "out")
    md = (tmp_path / "out" / "tables.md").read_text()
    assert "31.5 ± 0.7†" in md and "lambda=0.7, xi=0.5 (best of 3)" in md


def test_settings_that_differ_elsewhere_are_not_averaged(tmp_path):
    root = tmp_path / "exp"
    write_run(root / "a", "igdf", [10.0], every=100)
    write_run(root / "b", "igdf", [30.0], every=50)
    methods = {run.method for run in load_experiment(root).runs}
    assert methods == {"igdf [eval.every=100, iql.steps=100]", "igdf [eval.every=50, iql.steps=50]"}


# ------------------------------------------------------------------------------ reading runs
def test_incomplete_last_line_is_ignored_and_bad_lines_reported(tmp_path):
    run = write_run(tmp_path / "run", "igdf", [1.0, 2.0, 3.0])
    lines = (run / "metrics.jsonl").read_text().splitlines()
    lines.insert(1, "{not json")
    (run / "metrics.jsonl").write_text("\n".join(lines) + '\n{"step": 400, "normalized_sc')  # being written
    experiment = load_experiment(run)
    assert experiment.kind == "train"
    assert experiment.runs[0].scores == [1.0, 2.0, 3.0]
    assert experiment.problems == ["run/metrics.jsonl: line 2 skipped (not a JSON object with 'step' and "
                                   "'normalized_score')"]


def test_error_headline_finds_the_root_cause():
    text = ("Failure # 1 (occurred at 2025-01-01_00-00-00)\n"
            "ray::ImplicitFunc.train() (pid=1, ip=127.0.0.1)\n"
            "Traceback (most recent call last):\n  File \"x.py\", line 3, in f\n    raise DvdfError('bad')\n"
            "dvdf.errors.DvdfError: data.quality: 'bad' is not allowed\n")
    assert error_headline(text) == "dvdf.errors.DvdfError: data.quality: 'bad' is not allowed"
    assert error_headline("Failure # 2\nworker died unexpectedly\n") == "worker died unexpectedly"


def test_failed_and_pending_trials_are_listed(tmp_path):
    root = tmp_path / "sweep"
    ok = root / "g.igdf_00000"
    write_run(ok / "seed_100", "igdf", [5.0, 6.0])
    (ok / "params.json").write_text(json.dumps({"study": "g.igdf", "group": "g", "method": "igdf"}))
    failed = root / "g.igdf_00001"
    write_run(failed / "seed_100", "igdf", [7.0], total_steps=200)
    (failed / "params.json").write_text(json.dumps({"study": "g.igdf", "group": "g", "method": "igdf",
                                                    "tradeoff": 0.7, "keep_ratio": 0.3}))
    (failed / "error.txt").write_text("Failure # 1\nTraceback (most recent call last):\nRuntimeError: boom\n")
    pending = root / "g.igdf_00002"
    pending.mkdir()
    (pending / "params.json").write_text(json.dumps({"study": "g.igdf", "group": "g", "method": "igdf"}))
    summary = build_report(root, tmp_path / "out")
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "| failed | g.igdf_00001 (g.igdf; tradeoff=0.7, keep_ratio=0.3) |" in readme
    assert "RuntimeError: boom" in readme
    assert "| pending | g.igdf_00002 (g.igdf) | g | igdf |" in readme
    assert summary["failed_trials"] == ["g.igdf_00001 (g.igdf; tradeoff=0.7, keep_ratio=0.3)"]
    runs = {r["path"]: r for r in read_csv(tmp_path / "out" / "runs.csv")}
    assert runs["g.igdf_00001/seed_100"]["status"] == "failed"
    assert runs["g.igdf_00000/seed_100"]["status"] == "finished"


# ------------------------------------------------------------------------------ sensitivity
def test_grid_and_sampled_designs(tmp_path):
    root = tmp_path / "exp"
    for tradeoff in (0.3, 0.7):
        for keep_ratio in (0.25, 0.5, 0.75):
            write_run(root / f"grid-{tradeoff}-{keep_ratio}", "dvdf-igdf", [100 * tradeoff + keep_ratio],
                      tradeoff=tradeoff, keep_ratio=keep_ratio)
    rng = np.random.default_rng(3)
    for i in range(12):  # score decided by lambda alone: Optuna must rank lambda first
        tradeoff, keep_ratio = rng.uniform(0, 1), rng.uniform(0.1, 1)
        write_run(root / f"opt-{i}", "dvdf-otdf", [60 * tradeoff], tradeoff=tradeoff, keep_ratio=keep_ratio)
    for i in range(3):
        write_run(root / f"few-{i}", "dvdf-igdf", [float(i)], quality="expert", tradeoff=0.1 * i + 0.05,
                  keep_ratio=0.2 * i + 0.3)
    studies = {(s.task.quality, s.method): s for s in sensitivity_studies(group_settings(load_experiment(root).runs))}
    grid = studies[("medium", "dvdf-igdf")]
    assert grid.design == GRID
    lambdas, xis, cells = grid.grid()
    assert lambdas == [0.3, 0.7] and xis == [0.25, 0.5, 0.75]
    assert cells[2][1].stats.mean == pytest.approx(70.75)
    sampled = studies[("medium", "dvdf-otdf")]
    assert sampled.design == SAMPLED
    assert sampled.importances["tradeoff"] > sampled.importances["keep_ratio"]
    assert sum(sampled.importances.values()) == pytest.approx(1.0)
    few = studies[("expert", "dvdf-igdf")]
    assert few.importances == {} and "at least 6 scored points" in few.importance_note

    summary = build_report(root, tmp_path / "out")
    figures = set(summary["figures"])
    stem = "figures/sensitivity/hopper-kinematic-medium__"
    assert {f"{stem}dvdf-igdf_heatmap.png", f"{stem}dvdf-igdf_lines.png", f"{stem}dvdf-otdf_points.png",
            f"{stem}dvdf-otdf_importance.png"} <= figures
    for figure in figures:
        assert (tmp_path / "out" / figure).read_bytes()[:8] == PNG_MAGIC
    importances = read_csv(tmp_path / "out" / "importances.csv")
    assert {r["parameter"] for r in importances} == {"tradeoff", "keep_ratio"}
    assert "at least 6 scored points" in (tmp_path / "out" / "README.md").read_text()


# ------------------------------------------------------------------------------ output folder, CLI
def test_rerun_removes_only_its_own_stale_files(tmp_path):
    root = tmp_path / "exp"
    write_run(root / "a", "igdf", [1.0, 2.0], quality="medium")
    write_run(root / "b", "igdf", [1.0, 2.0], quality="expert")
    out = tmp_path / "out"
    first = build_report(root, out)
    (out / "notes-of-the-user.txt").write_text("keep me")
    import shutil
    shutil.rmtree(root / "b")
    second = build_report(root, out)
    gone = set(first["figures"]) - set(second["figures"])
    assert gone == {"figures/learning_curves/hopper-kinematic-expert.png"}
    assert not (out / next(iter(gone))).exists()
    assert (out / "notes-of-the-user.txt").read_text() == "keep me"
    assert not list(out.rglob(".*.tmp"))


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dvdf.cli", "report", *args], capture_output=True, text=True,
                          timeout=120)


def test_cli_bad_input_is_an_error_line(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    for target, message in ((tmp_path / "nope", "no such directory"), (tmp_path / "file.txt", "not a directory"),
                            (tmp_path / "empty", "no runs found")):
        result = _cli(str(target))
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("error: ") and message in result.stderr
        assert "Traceback" not in result.stderr
    with pytest.raises(DvdfError, match="no runs found"):
        build_report(tmp_path / "empty")
    assert not (tmp_path / "empty" / "report").exists()


def test_cli_json_prints_one_object(tmp_path):
    write_run(tmp_path / "run", "dvdf-igdf", [3.0, 4.0])
    result = _cli(str(tmp_path / "run"), "--json", "--out", str(tmp_path / "rep"))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["kind"] == "train" and summary["runs"]["finished"] == 1
    assert summary["index"] == str(tmp_path / "rep" / "README.md")
    for name in summary["tables"] + summary["figures"]:
        assert (tmp_path / "rep" / name).stat().st_size > 0


# ------------------------------------------------------------------------------ real results
def tiny_dataset(domain: str, seed: int, episodes: int = 10, length: int = 50):
    """Random hopper-shaped transitions from two 'behaviour policies' (provenance labels)."""
    from dvdf.data import Dataset

    rng = np.random.default_rng(seed)
    n = episodes * length
    states = rng.normal(size=(episodes, length + 1, 11)).astype(np.float32)
    timeouts = np.zeros((episodes, length), bool)
    timeouts[:, -1] = True
    return Dataset(states[:, :-1].reshape(n, 11), rng.uniform(-1, 1, (n, 3)).astype(np.float32),
                   rng.normal(size=n).astype(np.float32), np.zeros(n, bool), timeouts.reshape(n),
                   states[:, 1:].reshape(n, 11), {"provenance": np.repeat(np.arange(episodes) % 2, length)},
                   {"domain": domain, "quality": "medium", "provenance_names": json.dumps(["medium", "expert"])})


@pytest.fixture(scope="module")
def tiny_data_dir(tmp_path_factory) -> Path:
    from dvdf.data import write_dataset

    data_dir = tmp_path_factory.mktemp("data")
    for i, domain in enumerate(("hopper", "hopper-kinematic", "hopper-morph")):
        write_dataset(data_dir / f"{domain}-medium.hdf5", tiny_dataset(domain, seed=i))
    return data_dir


def tiny_base(data_dir: Path, cache_dir: Path) -> dict:
    """An experiment small enough for a test: tiny nets, 100 gradient steps, 1 evaluation episode."""
    return {"device": "cpu", "threads": 1, "cache_dir": str(cache_dir),
            "data": {"data_dir": str(data_dir)},
            "value": {"steps": 30, "hidden": 16}, "scorer": {"contrastive": {"steps": 30, "hidden": 16, "embed_dim": 8}},
            "iql": {"steps": 100, "hidden": 16, "batch_size": 32}, "eval": {"every": 50, "episodes": 1}}


def test_report_on_real_train_runs(tiny_data_dir, tmp_path):
    from dvdf.experiment import run_experiment

    root = tmp_path / "runs"
    for method in ("igdf", "dvdf-igdf"):
        for seed in (1, 2):
            raw = tiny_base(tiny_data_dir, tmp_path / "cache")
            config = experiment_config_from_dict({**raw, "seed": seed, "filter": {"method": method}})
            for _report in run_experiment(config, out_dir=root / f"{method}-{seed}"):
                # One run is cut after its first evaluation: a partial result (a run still going on).
                if (method, seed) == ("dvdf-igdf", 2):
                    break

    # The single-run layout first: `dvdf report RUN_DIR` on one `dvdf train`-style directory.
    single = build_report(root / "igdf-1")
    assert single["kind"] == "train" and single["runs"]["finished"] == 1
    assert Path(single["out"]) == root / "igdf-1" / "report"

    summary = build_report(root, tmp_path / "report")
    out = tmp_path / "report"
    assert summary["runs"] == {"finished": 3, "diverged": 0, "partial": 1, "failed": 0, "pending": 0}
    assert set(summary["figures"]) >= {"figures/learning_curves/hopper-kinematic-medium.png",
                                       "figures/filter/hopper-kinematic-medium__igdf.png",
                                       "figures/filter/hopper-kinematic-medium__dvdf-igdf.png"}
    for name in summary["figures"]:
        data = (out / name).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 5_000

    # Table numbers = the numbers in the runs' own metrics.jsonl.
    def scores(method):
        return [[json.loads(line)["normalized_score"] for line in (root / f"{method}-{seed}" / "metrics.jsonl")
                 .read_text().splitlines()] for seed in (1, 2)]

    rows = {(r["score"], r["method"]): r for r in read_csv(out / "scores.csv")}
    for method in ("igdf", "dvdf-igdf"):
        per_seed = scores(method)
        for metric, pick in ((FINAL, lambda s: s[-1]), (BEST, max)):
            values = np.array([pick(s) for s in per_seed])
            assert float(rows[(metric, method)]["mean"]) == pytest.approx(values.mean())
            assert float(rows[(metric, method)]["std"]) == pytest.approx(values.std(ddof=1))
    assert rows[(FINAL, "dvdf-igdf")]["partial"] == "True" and rows[(FINAL, "igdf")]["partial"] == "False"
    comparison = [r for r in read_csv(out / "comparisons.csv") if r["score"] == FINAL][0]
    igdf_final = np.mean([s[-1] for s in scores("igdf")])
    dvdf_final = np.mean([s[-1] for s in scores("dvdf-igdf")])
    if igdf_final != 0:
        assert float(comparison["relative_change_pct"]) == pytest.approx(100 * (dvdf_final - igdf_final)
                                                                         / abs(igdf_final))
    readme = (out / "README.md").read_text()
    assert "| partial | dvdf-igdf-2 | hopper-kinematic-medium | dvdf-igdf | step 50/100 |" in readme
    for name in summary["tables"] + summary["figures"]:
        assert f"]({name})" in readme


FAILING_POINT = {"group": "hopper-morph-medium", "tradeoff": 1.0, "keep_ratio": 1.0}


def flaky_trial(config: dict, *, sweep) -> None:
    """The sweep's trainable, except that one trial dies after its first evaluation."""
    from dvdf.tune.trainable import train_trial, tune_report

    if all(config[key] == value for key, value in FAILING_POINT.items()):
        def report(metrics, checkpoint_dir):
            tune_report(metrics, checkpoint_dir)
            raise RuntimeError("injected failure after the first evaluation")
        return train_trial(config, sweep=sweep, report=report)
    return train_trial(config, sweep=sweep)


@pytest.mark.ray
def test_report_on_a_real_sweep(ray_session, tiny_data_dir, tmp_path):
    """2 groups x a 2x2 (lambda, xi) grid x 2 seeds on Ray Tune; one trial fails mid-way."""
    from dvdf.tune.runner import run_sweep
    from dvdf.tune.spec import sweep_from_dict

    # Ray pickles the trainable; this test module is not importable on the workers.
    ray_session.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    base = tiny_base(tiny_data_dir, tmp_path / "cache")
    sweep = sweep_from_dict({
        "name": "tiny", "base": base,
        "groups": [{"robots": ["hopper"], "shifts": ["kinematic", "morph"], "qualities": ["medium"]}],
        "methods": ["dvdf-igdf"], "search": {"mode": "grid", "tradeoff": [0.5, 1.0], "keep_ratio": [0.5, 1.0]},
        "seeds": [1, 2], "resources": {"cpus": 1}, "max_failures": 0, "storage": str(tmp_path / "results"),
        "collect_missing": False}, source="tiny-sweep")
    outcome = run_sweep(sweep, trainable=flaky_trial, progress=False, echo=lambda line: None)
    assert outcome.errored == 1 and outcome.finished == 7
    exp = Path(outcome.experiment_dir)

    summary = build_report(exp)
    out = exp / "report"
    assert summary["kind"] == "sweep" and summary["trials"] == 8
    assert summary["runs"] == {"finished": 14, "diverged": 0, "partial": 0, "failed": 2, "pending": 0}
    assert len(summary["failed_trials"]) == 1 and "hopper-morph-medium.dvdf-igdf" in summary["failed_trials"][0]
    readme = (out / "README.md").read_text()
    assert "RuntimeError: injected failure after the first evaluation" in readme
    assert "search mode `grid`" in readme and "```yaml" in readme
    for name in summary["tables"] + summary["figures"]:
        assert f"]({name})" in readme
    for task in ("hopper-kinematic-medium", "hopper-morph-medium"):
        stem = f"figures/sensitivity/{task}__dvdf-igdf"
        assert {f"figures/learning_curves/{task}.png", f"figures/filter/{task}__dvdf-igdf.png",
                f"{stem}_heatmap.png", f"{stem}_lines.png"} <= set(summary["figures"])
    for name in summary["figures"]:
        data = (out / name).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 5_000

    # Every setting's numbers = those of the trial's own result.json (the trainable's per-seed
    # scores at its last report), and the table cell = the best setting's.
    settings = {(r["task"], float(r["tradeoff"]), float(r["keep_ratio"])): r
                for r in read_csv(out / "settings.csv")}
    best_final = {}
    for trial_dir in exp.iterdir():
        if not (trial_dir / "params.json").is_file():
            continue
        params = json.loads((trial_dir / "params.json").read_text())
        results = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines() if line]
        last = results[-1]
        per_seed = np.array([last[f"normalized_score_seed{seed}"] for seed in (1, 2)])
        best = np.array([max(r[f"normalized_score_seed{seed}"] for r in results) for seed in (1, 2)])
        row = settings[(params["group"], params["tradeoff"], params["keep_ratio"])]
        assert float(row["final_mean"]) == pytest.approx(per_seed.mean())
        assert float(row["final_mean"]) == pytest.approx(last["normalized_score"])
        assert float(row["final_std"]) == pytest.approx(per_seed.std(ddof=1))
        assert float(row["best_mean"]) == pytest.approx(best.mean())
        failed = all(params[key] == value for key, value in FAILING_POINT.items())
        assert row["finished_runs"] == ("0" if failed else "2")
        best_final[params["group"]] = max(best_final.get(params["group"], -math.inf), per_seed.mean())
    cells = {r["task"]: r for r in read_csv(out / "scores.csv") if r["score"] == FINAL}
    for task, value in best_final.items():
        assert float(cells[task]["mean"]) == pytest.approx(value)
        assert cells[task]["settings_with_results"] == "4"


def test_an_earlier_report_folder_is_not_read_as_runs(tmp_path):
    root = tmp_path / "exp"
    write_run(root / "a", "igdf", [1.0, 2.0])
    build_report(root)                                   # exp/report, with a copy of config.yaml
    summary = build_report(root, tmp_path / "elsewhere")
    assert summary["runs"] == {"finished": 1, "diverged": 0, "partial": 0, "failed": 0, "pending": 0}


# ------------------------------------------------------------------- one reader, one vocabulary
AGREE_SWEEP = {
    "name": "agree",
    "base": {"data": {"source_domain": "hopper-kinematic", "target_domain": "hopper", "quality": "medium"},
             "iql": {"steps": 200}, "eval": {"every": 100}},
    "groups": [{"robots": ["hopper"], "shifts": ["kinematic"], "qualities": ["medium"]}],
    "methods": ["dvdf-igdf"],
    "search": {"mode": "grid", "tradeoff": [0.3, 0.5, 0.7, 0.9, 1.0], "keep_ratio": [0.5]},
    "seeds": [1, 2], "collect_missing": False,
}
# lambda -> the status its trial is written in (one trial per status of dvdf.layout.STATUSES)
AGREE_STATUS = {0.3: "finished", 0.5: "diverged", 0.7: "partial", 0.9: "failed", 1.0: "pending"}


def write_status_sweep(storage: Path) -> Path:
    """A sweep experiment directory as Ray Tune and the trainable leave it, one trial per status."""
    import yaml

    exp = storage / AGREE_SWEEP["name"]
    exp.mkdir(parents=True)
    (exp / "sweep.yaml").write_text(yaml.safe_dump(AGREE_SWEEP))
    study = "hopper-kinematic-medium.dvdf-igdf"
    for number, (tradeoff, status) in enumerate(AGREE_STATUS.items()):
        trial = exp / f"{study}_{number:05d}"
        trial.mkdir()
        (trial / "params.json").write_text(json.dumps({
            "study": study, "group": "hopper-kinematic-medium", "method": "dvdf-igdf", "robot": "hopper",
            "shift": "kinematic", "quality": "medium", "target": "base", "tradeoff": tradeoff, "keep_ratio": 0.5,
            "seeds": [1, 2]}))
        if status == "pending":
            continue
        # The diverged trial scored best at its first report: it must still never be "best".
        first = 90.0 if status == "diverged" else 10.0 * number
        reports = [{"step": 100, "normalized_score": first, "normalized_score_std": 1.0, "finished": 0.0,
                    "normalized_score_seed1": first - 1, "normalized_score_seed2": first + 1}]
        for seed in (1, 2):
            scores = [first + (seed - 1.5) * 2]
            if status == "finished":
                scores.append(scores[0] + 5)
            write_run(trial / f"seed_{seed}", "dvdf-igdf", scores, seed=seed, tradeoff=tradeoff, total_steps=200)
        if status == "finished":
            reports.append({"step": 200, "normalized_score": first + 5, "normalized_score_std": 1.0,
                            "finished": 1.0, "normalized_score_seed1": first + 4,
                            "normalized_score_seed2": first + 6})
            for seed in (1, 2):
                (trial / f"seed_{seed}" / "summary.json").write_text(json.dumps({"status": "finished"}))
        if status == "diverged":
            # The loop's contract: the last metrics line says diverged, summary.json says where and why.
            with open(trial / "seed_1" / "metrics.jsonl", "a") as handle:
                handle.write(json.dumps({"step": 150, "normalized_score": float("nan"), "diverged": 1.0}) + "\n")
            (trial / "seed_1" / "summary.json").write_text(json.dumps(
                {"status": "diverged", "diverged_step": 150, "diverged_quantity": "q_loss is nan"}))
            reports.append({"step": 150, "normalized_score": float("nan"), "diverged": 1.0, "finished": 0.0})
        (trial / "result.json").write_text("".join(json.dumps(r) + "\n" for r in reports))
        if status == "failed":
            (trial / "error.txt").write_text("Failure # 1\nTraceback (most recent call last):\nRuntimeError: died\n")
    return exp


def test_sweep_results_and_report_agree_on_every_status(tmp_path):
    import yaml

    from dvdf.tune.results import collect
    from dvdf.tune.storage import ExperimentDir

    exp = write_status_sweep(tmp_path / "results")
    by_tradeoff = {r.config["tradeoff"]: r.status for r in collect(ExperimentDir(str(exp)))}
    assert by_tradeoff == AGREE_STATUS
    report_view = {trial.params["tradeoff"]: trial.status for trial in load_experiment(exp).trials}
    assert report_view == AGREE_STATUS

    # The two commands, as a user runs them.
    sweep_file = tmp_path / "agree.yaml"
    sweep_file.write_text(yaml.safe_dump(AGREE_SWEEP))
    result = subprocess.run([sys.executable, "-m", "dvdf.cli", "sweep", str(sweep_file), "--results-only",
                             "--storage", str(tmp_path / "results")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    trials_csv = {float(r["tradeoff"]): r["status"] for r in read_csv(exp / "trials.csv")}
    assert trials_csv == AGREE_STATUS
    results_row = read_csv(exp / "results.csv")[0]
    assert float(results_row["best_tradeoff"]) == 0.3 and results_row["best_status"] == "finished"
    assert results_row["diverged"] == "1" and results_row["finished"] == "1"
    header, _, first = result.stdout.splitlines()[:3]
    assert "diverged" in header and first.split()[1:3] == ["1/5", "1"]

    report = _cli(str(exp), "--json", "--bootstrap-reps", "200", "--out", str(tmp_path / "rep"))
    assert report.returncode == 0, report.stderr
    summary = json.loads(report.stdout)
    assert summary["runs"] == {"finished": 2, "diverged": 1, "partial": 3, "failed": 2, "pending": 1}
    readme = (tmp_path / "rep" / "README.md").read_text()
    study = "hopper-kinematic-medium.dvdf-igdf"
    for number, (tradeoff, status) in enumerate(AGREE_STATUS.items()):
        if status != "finished":
            assert f"| {status} | {study}_{number:05d} ({study}; tradeoff={tradeoff:g}, keep_ratio=0.5) |" in readme
    assert "seed 1: diverged at step 150 (q_loss is nan)" in readme
    runs = {r["path"]: r for r in read_csv(tmp_path / "rep" / "runs.csv")}
    assert runs[f"{study}_00001/seed_1"]["status"] == "diverged"
    assert runs[f"{study}_00001/seed_1"]["diverged_quantity"] == "q_loss is nan"
    # The diverged seed is not a finished score: the setting's numbers hold seed 2 only, and say so.
    setting = next(r for r in read_csv(tmp_path / "rep" / "settings.csv") if float(r["tradeoff"]) == 0.5)
    assert setting["final_n_seeds"] == "1" and setting["final_diverged"] == "1"
    assert float(setting["final_mean"]) == pytest.approx(91.0)
    assert "1 diverged" in (tmp_path / "rep" / "tables.md").read_text()


# ------------------------------------------------------------------------ statistics (rliable)
def rliable_experiment(root: Path, seeds=(1, 2, 3, 4)) -> dict:
    """3 tasks x 3 methods x 4 seeds, 7 evaluations each; returns (task, method) -> per-seed score lists."""
    rng = np.random.default_rng(7)
    written = {}
    for shift, quality in (("kinematic", "medium"), ("kinematic", "expert"), ("morph", "medium")):
        task = f"hopper-{shift}-{quality}"
        for method, level in (("iql-mix", 30.0), ("igdf", 40.0), ("dvdf-igdf", 45.0)):
            per_seed = []
            for seed in seeds:
                scores = list(level + rng.normal(0, 8, size=7))
                write_run(root / f"{task}-{method}-{seed}", method, scores, seed=seed, shift=shift, quality=quality)
                per_seed.append(scores)
            written[(task, method)] = per_seed
    return written


def test_statistics_equal_rliable_called_directly(tmp_path):
    from rliable import library as rly
    from rliable import metrics

    written = rliable_experiment(tmp_path / "exp")
    reps, k = 300, 3

    def seeded(seed=0):   # rliable's bootstrap draws from numpy's global generator (see dvdf.report.reliable)
        np.random.seed(seed)
        return np.random.RandomState(seed)

    result = _cli(str(tmp_path / "exp"), "--json", "--last-k", str(k), "--bootstrap-reps", str(reps),
                  "--pair", "iql-mix,igdf", "--out", str(tmp_path / "rep"))
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)["statistics"]
    assert stats["last_k"] == k and stats["headline_score"] == "last_k"
    assert stats["score_labels"] == {"last_k": "last-3 mean", "final": "final", "best": "best-of-run (optimistic)"}

    # The report's task order (shift type, robot, quality in the paper's order) is the matrix's columns.
    tasks = ["hopper-kinematic-medium", "hopper-kinematic-expert", "hopper-morph-medium"]
    assert stats["aggregates"]["last_k"]["tasks"] == tasks
    pick = {"last_k": lambda s: float(np.mean(s[-k:])), "final": lambda s: s[-1], "best": max}

    def matrix(metric, method):   # runs x tasks, seeds in order
        return np.array([[pick[metric](s) for s in written[(task, method)]] for task in tasks]).T

    for metric in ("last_k", "final", "best"):
        rows = {row["method"]: row for row in stats["aggregates"][metric]["methods"]}
        for method in ("iql-mix", "igdf", "dvdf-igdf"):
            point, interval = rly.get_interval_estimates(
                {method: matrix(metric, method)},
                lambda x: np.array([metrics.aggregate_iqm(x), metrics.aggregate_mean(x)]),
                reps=reps, random_state=seeded())
            row = rows[method]
            assert (row["tasks"], row["runs_per_task"]) == (3, 4)
            assert row["iqm"]["point"] == pytest.approx(point[method][0], abs=1e-9)
            assert row["mean"]["point"] == pytest.approx(point[method][1], abs=1e-9)
            assert [row["iqm"]["ci_low"], row["iqm"]["ci_high"]] == pytest.approx(interval[method][:, 0], abs=1e-9)
            assert [row["mean"]["ci_low"], row["mean"]["ci_high"]] == pytest.approx(interval[method][:, 1], abs=1e-9)
    csv_rows = {(r["score"], r["method"]): r for r in read_csv(tmp_path / "rep" / "aggregates.csv")}
    iqm = next(r for r in stats["aggregates"]["last_k"]["methods"] if r["method"] == "igdf")["iqm"]
    assert float(csv_rows[("last_k", "igdf")]["iqm_ci_low"]) == pytest.approx(iqm["ci_low"])
    assert csv_rows[("last_k", "igdf")]["score_label"] == "last-3 mean"

    # P(X > Y): the registry's pair (dvdf-igdf vs igdf) and the one named with --pair.
    pairs = {(p["x"], p["y"]): p for p in stats["probability_of_improvement"]["pairs"]}
    assert set(pairs) == {("dvdf-igdf", "igdf"), ("iql-mix", "igdf")}
    for (x, y), got in pairs.items():
        point, interval = rly.get_interval_estimates(
            {"p": [matrix("last_k", x), matrix("last_k", y)]}, metrics.probability_of_improvement,
            reps=reps, random_state=seeded())
        assert got["point"] == pytest.approx(point["p"], abs=1e-12)
        assert [got["ci_low"], got["ci_high"]] == pytest.approx(np.ravel(interval["p"]), abs=1e-12)

    # Performance profile: rliable's own profile function gives the same curve at the same taus.
    profile = stats["performance_profile"]
    taus = np.array(profile["taus"])
    curves, _ = rly.create_performance_profile({m: matrix("last_k", m) for m in ("iql-mix", "igdf", "dvdf-igdf")},
                                               taus, reps=100)
    for method, curve in curves.items():
        assert profile["methods"][method]["fraction_above"] == pytest.approx(curve, abs=1e-12)

    # A per-task cell: mean, std and n as before, and the bootstrap CI of the mean (n >= 3).
    cell = next(c for c in stats["cells"]["final"] if (c["task"], c["method"]) == (tasks[0], "igdf"))
    values = np.array([s[-1] for s in written[(tasks[0], "igdf")]])
    _, interval = rly.get_interval_estimates({"c": values[:, None]}, lambda x: np.array([metrics.aggregate_mean(x)]),
                                             reps=reps, random_state=seeded())
    assert cell["mean"] == pytest.approx(values.mean()) and cell["std"] == pytest.approx(values.std(ddof=1))
    assert cell["n"] == 4 and cell["ci"] == pytest.approx(interval["c"][:, 0], abs=1e-9)
    assert cell["selection"] == "fixed" and cell["tuning_budget"] is None

    md = (tmp_path / "rep" / "tables.md").read_text()
    for label in ("## Last-3 mean score", "## Final score", "## Best-of-run score", "best-of-run (optimistic)",
                  "IQM [95% CI]", "P(X > Y) [95% CI]", "| dvdf-igdf > igdf | 3 | 4 / 4 |"):
        assert label in md, label
    p = pairs[("dvdf-igdf", "igdf")]
    assert f"{p['point']:.2f} [{p['ci_low']:.2f}, {p['ci_high']:.2f}]" in md
    figures = set(json.loads(result.stdout)["figures"])
    assert {"figures/aggregate/profile.png", "figures/aggregate/intervals.png"} <= figures


def test_tuned_cells_carry_their_budget_and_a_tuning_figure(tmp_path):
    root = tmp_path / "exp"
    for tradeoff, level in ((0.3, 10.0), (0.7, 30.0), (1.0, 20.0)):
        for seed in (1, 2, 3):
            write_run(root / f"l{tradeoff}-s{seed}", "dvdf-igdf", [level - 1, level + seed], seed=seed,
                      tradeoff=tradeoff, total_steps=200)
    for seed in (1, 2, 3):
        write_run(root / f"igdf-s{seed}", "igdf", [5.0, 6.0 + seed], seed=seed, total_steps=200)
    summary = build_report(root, tmp_path / "out")
    cells = {(r["score"], r["method"]): r for r in read_csv(tmp_path / "out" / "scores.csv")}
    tuned = cells[("last_k", "dvdf-igdf")]
    assert tuned["selection"] == "tuned" and float(tuned["tradeoff"]) == 0.7
    assert (tuned["tuning_trials"], tuned["tuning_seeds"], tuned["tuning_steps"]) == ("3", "3", "200")
    assert cells[("last_k", "igdf")]["selection"] == "fixed" and cells[("last_k", "igdf")]["tuning_trials"] == ""
    md = (tmp_path / "out" / "tables.md").read_text()
    assert "tuning budget 3 trials x 3 seeds x 200 steps" in md
    assert "(n=3; CI" in md and ") tuned" in md and ") fixed" in md
    assert "figures/tuning/hopper-kinematic-medium__dvdf-igdf.png" in summary["figures"]
    from dvdf.report.analysis import tuning_studies

    study = tuning_studies(group_settings(load_experiment(root).runs), 5)[0]
    # The default (0.7, 0.5) has last-5 mean = mean over seeds of mean(29, 30 + seed) = 30.5.
    assert study.default == pytest.approx(30.5)
    assert study.best_so_far[-1] == pytest.approx(30.5) and len(study.scores) == 3


def test_protocol_presets():
    from dvdf.tune.spec import load_sweep

    root = Path(__file__).resolve().parent.parent / "tune_configs"
    for name in ("paper_kinematic", "paper_morph", "low_data_5k"):
        assert len(load_sweep(root / f"{name}.yaml").spec.seeds) == 5, name
    ablations = load_sweep(root / "ablations.yaml")
    assert len(ablations.spec.seeds) == 5
    studies = {(s.group.name, s.method): s for s in ablations.studies}
    assert {m for _, m in studies} == {"igdf", "dvdf-igdf", "dvdf-iql-adv"}
    assert ablations.spec.search.tradeoff == (0.0, 0.7, 1.0)
    for rule in ("exp_combined", "uniform"):   # the weight-rule runs its header gives
        variant = load_sweep(root / "ablations.yaml", [f"base.filter.weight_rule={rule}", "methods=[dvdf-igdf]",
                                                       "method_params={}", "search.tradeoff=[0.7]"])
        assert variant.spec.base.filter.weight_rule == rule and variant.num_trials == 3


def test_cli_bad_statistics_options_are_error_lines(tmp_path):
    write_run(tmp_path / "run", "igdf", [1.0, 2.0])
    for args, message in ((("--pair", "foo,igdf"), "unknown method 'foo'"), (("--pair", "igdf"), "expected two"),
                          (("--last-k", "0"), "--last-k 0: must be at least 1")):
        result = _cli(str(tmp_path / "run"), *args, "--out", str(tmp_path / "rep"))
        assert result.returncode == 2 and result.stderr.startswith("error: ") and message in result.stderr, args
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "rep").exists()


def test_a_diverged_train_run_is_shown_and_not_averaged(tmp_path):
    root = tmp_path / "exp"
    for seed, scores in ((1, [10.0, 20.0]), (2, [12.0, 22.0]), (3, [50.0])):
        write_run(root / f"s{seed}", "igdf", scores, seed=seed, total_steps=200)
    with open(root / "s3" / "metrics.jsonl", "a") as handle:   # the loop's last line of a diverged run
        handle.write(json.dumps({"step": 150, "normalized_score": float("nan"), "diverged": 1.0}) + "\n")
    (root / "s3" / "summary.json").write_text(json.dumps({"status": "diverged", "diverged_step": 150,
                                                           "diverged_quantity": "actor_loss is inf"}))
    summary = build_report(root, tmp_path / "out")
    assert summary["runs"]["diverged"] == 1 and summary["runs"]["finished"] == 2
    cell = next(c for c in summary["statistics"]["cells"]["final"])
    assert (cell["n"], cell["diverged"], cell["mean"]) == (2, 1, pytest.approx(21.0))
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "**Diverged runs**" in readme and "| diverged | s3 |" in readme
    assert "diverged at step 150 (actor_loss is inf) - no finished score" in readme
    assert "21.0 ± 1.4*‡ (n=2; 1 diverged) fixed" in (tmp_path / "out" / "tables.md").read_text()
