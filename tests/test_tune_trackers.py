"""A tiny real sweep with MLflow (local file store) and its Optuna studies in optuna.db, read back
the way a person would: MLflow's client, Optuna's storage API and optuna-dashboard's own API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("ray")

from conftest import TINY_SWEEP_BASE, write_random_medium_datasets  # noqa: E402

from dvdf.cli import main  # noqa: E402
from dvdf.errors import DvdfError  # noqa: E402
from dvdf.tune.results import collect  # noqa: E402
from dvdf.tune.spec import sweep_from_dict  # noqa: E402
from dvdf.tune.storage import ExperimentDir  # noqa: E402
from dvdf.tune.trackers import tracker_callbacks  # noqa: E402

DOMAINS = ("hopper", "hopper-kinematic")
TINY_BASE = TINY_SWEEP_BASE


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("trackers")
    write_random_medium_datasets(root / "data", DOMAINS, 600)
    return root


def tiny_raw(root: Path, name: str, **changes) -> dict:
    raw = {
        "name": name, "base": TINY_BASE,
        "groups": [{"robots": ["hopper"], "shifts": ["kinematic"], "qualities": ["medium"],
                    "target": [{"fraction": 0.5}, {"transitions": 200}]}],
        "search": {"mode": "optuna", "num_samples": 2, "startup_trials": 1},
        "seeds": [1], "resources": {"cpus": 1},
        "storage": str(root / "results"), "cache_dir": str(root / "cache"), "data_dir": str(root / "data"),
        "collect_missing": False,
    }
    raw.update(changes)
    return raw


def test_missing_tracker_package_is_one_line(tmp_path, monkeypatch, capsys):
    import importlib.util

    import yaml

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(tiny_raw(tmp_path, "s", loggers=["tensorboard", "mlflow"])))
    assert main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: loggers: mlflow needs the mlflow package, which is not installed: "
                   "pip install 'dvdf[mlflow]'")
    assert not (tmp_path / "results").exists()       # refused before anything was written


def test_tracker_settings_are_validated_and_off_by_default(tmp_path):
    sweep = sweep_from_dict(tiny_raw(tmp_path, "plain"), source="plain.yaml", check_domains=False)
    assert sweep.spec.loggers == ("tensorboard",) and tracker_callbacks(sweep, str(tmp_path)) == []
    with pytest.raises(DvdfError, match="'loggers' lists a logger twice"):
        sweep_from_dict(tiny_raw(tmp_path, "x", loggers=["mlflow", "mlflow"]), source="x.yaml", check_domains=False)
    with pytest.raises(DvdfError, match="loggers"):
        sweep_from_dict(tiny_raw(tmp_path, "x", loggers=["neptune"]), source="x.yaml", check_domains=False)


def test_wandb_runs_offline_unless_configured(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    sweep = sweep_from_dict(tiny_raw(tmp_path, "wb", loggers=["wandb"]), source="wb.yaml", check_domains=False)
    (callback,) = tracker_callbacks(sweep, str(tmp_path / "exp"))
    assert type(callback).__name__ == "WandbLoggerCallback"
    assert callback.project == "wb" and callback.kwargs["mode"] == "offline"
    assert callback.kwargs["dir"] == str(tmp_path / "exp" / "wandb")


@pytest.mark.ray
def test_sweep_logs_to_mlflow_and_keeps_its_studies_in_optuna_db(ray_session, tiny_root, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    import optuna

    from dvdf.tune.runner import run_sweep

    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    sweep = sweep_from_dict(tiny_raw(tiny_root, "tracked", loggers=["tensorboard", "mlflow"]),
                            source="tracked.yaml")
    lines: list[str] = []
    outcome = run_sweep(sweep, echo=lines.append)
    exp = tiny_root / "results" / "tracked"
    assert outcome.finished == outcome.total == 4
    url = f"sqlite:///{exp}/optuna.db"
    assert f"Optuna dashboard (live): optuna-dashboard {url}" in lines
    assert lines.index(f"Optuna dashboard (live): optuna-dashboard {url}") == \
        lines.index(f"TensorBoard (live): tensorboard --logdir {exp}") + 1

    # Optuna: one study per (group x method), named like it, every trial told its final score
    records = collect(ExperimentDir(str(exp)))
    assert sorted(optuna.get_all_study_names(url)) == sorted(s.name for s in sweep.studies)
    for study in sweep.studies:
        stored = optuna.load_study(study_name=study.name, storage=url).trials
        assert [t.state.name for t in stored] == ["COMPLETE"] * 2
        assert stored[0].params == {"tradeoff": 0.7, "keep_ratio": 0.5}
        finals = sorted(r.score for r in records if r.config["study"] == study.name)
        assert sorted(t.value for t in stored) == pytest.approx(finals)

    # MLflow: the local file store in the experiment directory, one run per trial
    client = mlflow.MlflowClient(f"file://{exp}/mlruns")
    experiment = client.get_experiment_by_name("tracked")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in runs)
    by_trial = {r.data.tags["trial_name"]: r for r in runs}
    for record in records:
        run = next(r for name, r in by_trial.items() if name.endswith(record.trial_id))
        assert float(run.data.params["tradeoff"]) == pytest.approx(record.config["tradeoff"])
        history = client.get_metric_history(run.info.run_id, "normalized_score")
        assert len(history) == 2 and history[-1].value == pytest.approx(record.score)

    # optuna-dashboard reads the same file (its JSON API, as the web page does)
    dashboard = pytest.importorskip("optuna_dashboard")
    app = dashboard.wsgi(url)
    status, body = _get(app, "/api/studies")
    assert status.startswith("200")
    names = sorted(s["study_name"] for s in json.loads(body)["study_summaries"])
    assert names == sorted(s.name for s in sweep.studies)


def _get(app, path: str) -> tuple[str, bytes]:
    """One GET through a WSGI app, without a server."""
    import io

    captured = {}
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "localhost",
               "SERVER_PORT": "80", "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(b""),
               "wsgi.errors": io.StringIO(), "wsgi.version": (1, 0), "wsgi.multithread": False,
               "wsgi.multiprocess": False, "wsgi.run_once": True}
    body = b"".join(app(environ, lambda status, headers, exc_info=None: captured.setdefault("status", status)))
    return captured["status"], body
