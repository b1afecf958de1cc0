"""Tiny real sweeps on a local Ray: end to end, interrupt + resume, crash + retry, fractional GPUs.

Every trial runs the real run_experiment (a few hundred steps on tiny random-policy datasets);
stages are built once per module (shared cache directory) and reused by every sweep here.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("ray")

from conftest import TINY_SWEEP_BASE, write_random_medium_datasets  # noqa: E402
from ray import tune  # noqa: E402

from dvdf.cli import main  # noqa: E402
from dvdf.errors import DvdfError  # noqa: E402
from dvdf.tune.results import collect  # noqa: E402
from dvdf.tune.runner import run_sweep  # noqa: E402
from dvdf.tune.spec import sweep_from_dict  # noqa: E402
from dvdf.tune.storage import ExperimentDir  # noqa: E402
from dvdf.tune.trainable import train_trial, tune_report  # noqa: E402

pytestmark = pytest.mark.ray

# Ray workers cannot import this test module: ship its functions (the crashing trainable) by value.
from ray import cloudpickle  # noqa: E402

cloudpickle.register_pickle_by_value(sys.modules[__name__])

DOMAINS = ("hopper", "hopper-kinematic", "hopper-morph")
TINY_BASE = TINY_SWEEP_BASE


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    """Random-policy datasets of 1,000 transitions for hopper, its kinematic and morph shifts."""
    root = tmp_path_factory.mktemp("tune")
    write_random_medium_datasets(root / "data", DOMAINS, 1000)
    return root


def tiny_raw(root: Path, name: str, **changes) -> dict:
    raw = {
        "name": name,
        "base": TINY_BASE,
        "groups": [{"robots": ["hopper"], "shifts": ["kinematic", "morph"], "qualities": ["medium"]}],
        "search": {"mode": "optuna", "num_samples": 2, "startup_trials": 1},
        "seeds": [1, 2],
        "resources": {"cpus": 1},
        "storage": str(root / "results"),
        "cache_dir": str(root / "cache"),
        "data_dir": str(root / "data"),
        "collect_missing": False,
    }
    raw.update(changes)
    return raw


def tiny_sweep(root: Path, name: str, **changes):
    return sweep_from_dict(tiny_raw(root, name, **changes), source=f"{name}.yaml")


def results_of(trial_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines() if line.strip()]


def trial_dirs(exp: Path) -> list[Path]:
    return sorted(p for p in exp.iterdir() if (p / "params.json").exists())


def test_tiny_sweep_end_to_end(ray_session, tiny_root, capsys):
    path = tiny_root / "two_groups.yaml"
    path.write_text(yaml.safe_dump(tiny_raw(tiny_root, "two_groups")))
    assert main(["sweep", str(path), "--quiet"]) == 0
    out = capsys.readouterr().out
    exp = tiny_root / "results" / "two_groups"
    assert f"tensorboard --logdir {exp}" in out
    assert "hopper-kinematic-medium.dvdf-igdf" in out and "hopper-morph-medium.dvdf-igdf" in out

    dirs = trial_dirs(exp)
    assert len(dirs) == 4
    for trial in dirs:
        results = results_of(trial)
        assert [r["step"] for r in results] == [100, 200] and results[-1]["finished"] == 1.0
        seed_scores = [results[-1]["normalized_score_seed1"], results[-1]["normalized_score_seed2"]]
        assert results[-1]["normalized_score"] == pytest.approx(np.mean(seed_scores))
        assert results[-1]["normalized_score_std"] == pytest.approx(np.std(seed_scores))
        (checkpoint,) = trial.glob("checkpoint_*")
        assert (checkpoint / "members" / "experiment_state.pt").is_file()   # the seeds as one batched model
        for seed in (1, 2):
            assert (checkpoint / f"seed_{seed}" / "metrics.jsonl").is_file()
            metrics = [json.loads(line) for line in (trial / f"seed_{seed}" / "metrics.jsonl").read_text().splitlines()]
            assert [m["step"] for m in metrics] == [100, 200]
            assert list((trial / f"seed_{seed}" / "tb").glob("events.out.tfevents.*"))
        assert_hparams(trial)

    table = (exp / "results.csv").read_text().splitlines()
    assert len(table) == 3 and all(",2,2," in row for row in table[1:])   # trials, finished
    default_row = [row for row in table[1:] if ",0.7,0.5," in row]
    assert len(default_row) == 2   # the paper default was tried in both groups
    trials_csv = (exp / "trials.csv").read_text().splitlines()
    assert len(trials_csv) == 5


def assert_hparams(trial: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    (events,) = trial.glob("events.out.tfevents.*")
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    assert "ray/tune/normalized_score" in accumulator.Tags()["scalars"]
    content = accumulator.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    config = json.loads((trial / "params.json").read_text())
    for key in ("robot", "shift", "quality", "method", "group"):
        assert hparams[key].string_value == config[key]
    for key in ("tradeoff", "keep_ratio"):
        assert hparams[key].number_value == pytest.approx(config[key])
    assert hparams["seeds"].string_value == "1,2"


class InterruptOnce(tune.Callback):
    """Sends the driver SIGINT (Ctrl-C) when the first trial finishes, once per marker file."""

    def __init__(self, marker: str):
        self.marker = marker

    def on_trial_complete(self, iteration, trials, trial, **info):
        if not os.path.exists(self.marker):
            Path(self.marker).write_text(trial.trial_id)
            os.kill(os.getpid(), signal.SIGINT)


def test_interrupted_sweep_resumes_and_finishes_every_trial_once(ray_session, tiny_root):
    sweep = tiny_sweep(tiny_root, "resumable", seeds=[1])
    exp = tiny_root / "results" / "resumable"
    first = run_sweep(sweep, callbacks=[InterruptOnce(str(tiny_root / "interrupted"))])
    assert 1 <= first.finished < first.total == 4
    finished_before = {p.name: (p / "result.json").read_text() for p in trial_dirs(exp)
                       if results_of(p) and results_of(p)[-1]["finished"] == 1.0}
    with pytest.raises(DvdfError, match="already exists"):
        run_sweep(sweep)
    changed = tiny_sweep(tiny_root, "resumable", seeds=[1], search={"mode": "optuna", "num_samples": 3})
    with pytest.raises(DvdfError, match=r"differs from the sweep being resumed .* 'search\.num_samples'"):
        run_sweep(changed, resume=True)

    second = run_sweep(sweep, resume=True)
    assert second.finished == second.total == 4
    dirs = trial_dirs(exp)
    assert len(dirs) == 4
    for trial in dirs:
        steps = [r["step"] for r in results_of(trial)]
        assert steps == sorted(set(steps)) and steps[-1] == 200            # no evaluation ran twice
        assert sum(r["finished"] == 1.0 for r in results_of(trial)) == 1  # finished exactly once
    for name, before in finished_before.items():
        assert (exp / name / "result.json").read_text() == before          # not rerun
    state = max(exp.glob("searcher-state-*.pkl"))   # one per Tuner run, named by its start time
    studies = pickle.loads(state.read_bytes())["optuna"]
    for study in studies.values():                                        # history kept across the resume
        assert [t.state.name for t in study.trials] == ["COMPLETE"] * 2


def crash_after_first_report(config, *, sweep):
    """train_trial that dies right after its first report, once per trial (a marker file says so).

    It also empties its working directory, as if the retry ran on another node.
    """
    marker = Path(sweep.spec.storage) / f"crashed-{tune.get_context().get_trial_id()}"

    def report(metrics, checkpoint_dir):
        tune_report(metrics, checkpoint_dir)
        if not marker.exists():
            marker.write_text("crashed")
            shutil.rmtree(Path.cwd() / "seed_1")
            raise RuntimeError("injected crash after the first report")

    train_trial(config, sweep=sweep, report=report)


# Batched seeds (the evidence sweeps' setting) in the default run; one process per seed in make test-slow.
@pytest.mark.parametrize("batch_seeds", [True, pytest.param(False, marks=pytest.mark.slow)])
def test_crashed_trial_is_retried_from_its_checkpoint(ray_session, tiny_root, batch_seeds):
    name = f"crashing-{batch_seeds}"
    sweep = tiny_sweep(tiny_root, name, search={"mode": "fixed"}, max_failures=2, seeds=[1, 2],
                       batch_seeds=batch_seeds,
                       groups=[{"robots": ["hopper"], "shifts": ["kinematic"], "qualities": ["medium"]}])
    outcome = run_sweep(sweep, trainable=crash_after_first_report)
    assert outcome.finished == outcome.total == 1
    (trial,) = trial_dirs(tiny_root / "results" / name)
    assert "injected crash" in (trial / "error.txt").read_text()
    # Restarted from the checkpoint at step 100: the step-100 evaluation is not repeated.
    assert [r["step"] for r in results_of(trial)] == [100, 200]
    # The seed run's log is whole although the retry started in an empty working directory.
    metrics = (trial / "seed_1" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(m)["step"] for m in metrics] == [100, 200]


def test_gpu_request_without_gpus_is_refused(ray_session, tiny_root):
    sweep = tiny_sweep(tiny_root, "no_gpu", resources={"cpus": 1, "gpu": 0.5})
    with pytest.raises(DvdfError, match=r"resources\.gpu 0\.5 per trial, but the Ray cluster has 0 GPU"):
        run_sweep(sweep)
    assert not (tiny_root / "results" / "no_gpu").exists()


GPU_SCRIPT = """
import json, os, sys
import ray
from ray import tune
from dvdf.tune.runner import run_sweep
from dvdf.tune.spec import load_sweep
from dvdf.tune.trainable import train_trial

def recording_trial(config, *, sweep):
    with open("resources.json", "w") as handle:   # the trial's working directory (synced)
        json.dump({"gpu_ids": ray.get_gpu_ids(), "resources": tune.get_context().get_trial_resources().required_resources,
                   "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}, handle)
    train_trial(config, sweep=sweep)

# A CPU machine: declare one (fake) GPU to the local Ray instance, as --num-gpus 1 does.
outcome = run_sweep(load_sweep(sys.argv[1]), num_gpus=1, num_cpus=2, trainable=recording_trial)
sys.exit(0 if outcome.complete else 1)
"""


@pytest.mark.slow  # its own Ray instance: ~20 s on an idle 2-core machine
def test_fractional_gpu_trials_share_a_declared_gpu(tiny_root, tmp_path):
    """Own Ray instance in a subprocess (the session's has no GPU): two 0.5-GPU trials on one fake GPU.

    (The request itself is checked without Ray in test_tune_searcher.py.)
    """
    config = tmp_path / "gpu.yaml"
    config.write_text(yaml.safe_dump(tiny_raw(tiny_root, "fractional_gpu", search={"mode": "fixed"}, seeds=[1],
                                              resources={"cpus": 1, "gpu": 0.5, "max_concurrent": 2})))
    script = tmp_path / "run_gpu_sweep.py"
    script.write_text(textwrap.dedent(GPU_SCRIPT))
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.run([sys.executable, str(script), str(config)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    dirs = trial_dirs(tiny_root / "results" / "fractional_gpu")
    assert len(dirs) == 2
    for trial in dirs:
        recorded = json.loads((trial / "resources.json").read_text())
        assert recorded["resources"]["GPU"] == 0.5
        assert recorded["gpu_ids"] == [0] and recorded["cuda_visible_devices"] == "0"
        assert results_of(trial)[-1]["finished"] == 1.0
    records = collect(ExperimentDir(str(tiny_root / "results" / "fractional_gpu")))
    assert {r.status for r in records} == {"finished"}


def test_diverging_trial_reports_diverged_and_is_not_retried(ray_session, tiny_root):
    """A learning rate that blows the update up: the trial's last report says diverged, no error,
    no retry (max_failures 2 would allow two), the checkpoint kept is the last good one (if any)."""
    base = {**TINY_BASE, "iql": {**TINY_BASE["iql"], "lr": 1e8, "actor_lr": 1e8}}
    sweep = tiny_sweep(tiny_root, "diverging", base=base, search={"mode": "fixed"}, max_failures=2, seeds=[1, 2],
                       groups=[{"robots": ["hopper"], "shifts": ["kinematic"], "qualities": ["medium"]}])
    outcome = run_sweep(sweep)
    assert outcome.total == 1 and outcome.diverged == 1 and outcome.finished == 0 and outcome.complete
    (trial,) = trial_dirs(tiny_root / "results" / "diverging")
    assert not (trial / "error.txt").exists()
    results = results_of(trial)
    assert results[-1]["diverged"] == 1.0 and results[-1]["finished"] == 0.0
    assert [r["diverged"] for r in results[:-1]] == [0.0] * (len(results) - 1)
    steps = [r["step"] for r in results]
    assert steps == sorted(set(steps))                      # one attempt: no step reported twice
    for seed in (1, 2):
        lines = [json.loads(x) for x in (trial / f"seed_{seed}" / "metrics.jsonl").read_text().splitlines()]
        assert lines[-1]["diverged"] == 1.0 and lines[-1]["step"] == steps[-1]
    # checkpoints_to_keep 1: the last good one, none of the diverged report
    assert len(list(trial.glob("checkpoint_*"))) == min(1, len(results) - 1)


RESUME_FLOW_BASE = {**TINY_BASE, "iql": {**TINY_BASE["iql"], "steps": 400}}


@pytest.mark.slow  # two drivers with their own Ray instances: ~2-3 minutes on a loaded 2-core machine
def test_readme_flow_sigkill_then_resume_with_the_same_command(tiny_root, tmp_path):
    """The README's way back after a crash: a sweep file with relative paths, its driver killed with
    SIGKILL after the first report, the same command with --resume from the same directory. Every
    trial finishes once, no evaluation is logged twice, and the killed driver's Ray is gone."""
    from dvdf.tune.reaper import _alive, descendants

    shutil.copytree(tiny_root / "data", tmp_path / "data")
    raw = {**tiny_raw(tiny_root, "readme_flow", seeds=[1], base=RESUME_FLOW_BASE,
                      groups=[{"robots": ["hopper"], "shifts": ["kinematic"], "qualities": ["medium"]}],
                      search={"mode": "optuna", "num_samples": 3, "startup_trials": 1},
                      resources={"cpus": 1, "max_concurrent": 1}),
           "storage": "results", "cache_dir": "cache", "data_dir": "data"}
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(raw))
    command = [sys.executable, "-m", "dvdf.cli", "sweep", "sweep.yaml", "--quiet", "--num-cpus", "2"]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    exp = tmp_path / "results" / "readme_flow"
    log = (tmp_path / "first.log").open("w")
    driver = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while not any(p.stat().st_size for p in exp.glob("*/result.json")):
        assert driver.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "no trial reported within 300 s"
        time.sleep(0.5)
    started = descendants(driver.pid)          # Ray's processes (and the reaper) as the driver dies
    assert started
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    deadline = time.monotonic() + 30
    while [p for p, start in started.items() if _alive(p, start)] and time.monotonic() < deadline:
        time.sleep(0.5)
    left = [p for p, start in started.items() if _alive(p, start)]
    assert not left, [Path(f"/proc/{p}/cmdline").read_bytes()[:80] for p in left]
    assert not all(results_of(t)[-1]["finished"] == 1.0 for t in trial_dirs(exp) if results_of(t))

    resumed = subprocess.run(command + ["--resume"], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=500)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    dirs = trial_dirs(exp)
    assert len(dirs) == 3
    for trial in dirs:
        assert sum(r["finished"] == 1.0 for r in results_of(trial)) == 1       # finished exactly once
        steps = [json.loads(x)["step"] for x in (trial / "seed_1" / "metrics.jsonl").read_text().splitlines()]
        assert steps == [100, 200, 300, 400]                                  # no evaluation repeated
