"""scripts/evidence.py: the helpers that decide what lands in docs/evidence/."""

import csv
import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "evidence.py"


@pytest.fixture(scope="module")
def evidence():
    spec = importlib.util.spec_from_file_location("evidence_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_a_later_alignment_run_adds_rows_and_replaces_only_its_own(evidence, tmp_path):
    path = tmp_path / "auc_random-expert.csv"
    key = ("seed", "model", "steps")
    evidence._merge_csv(path, [{"seed": 100, "model": "sql", "steps": 10000, "auc": 0.85},
                               {"seed": 100, "model": "sql", "steps": 100000, "auc": 0.71}], key)
    # seed 200 at 100k only, and a remeasured seed-100 100k row
    evidence._merge_csv(path, [{"seed": 100, "model": "sql", "steps": 100000, "auc": 0.70},
                               {"seed": 200, "model": "sql", "steps": 100000, "auc": 0.66}], key)
    rows = {(r["seed"], r["steps"]): r["auc"] for r in _rows(path)}
    assert rows == {("100", "10000"): "0.85", ("100", "100000"): "0.7", ("200", "100000"): "0.66"}


RECORDED = {"path": "hopper-medium.hdf5", "policy_dir": "hopper-abc", "transitions": 1000, "episodes": 50,
            "behaviour_policy_steps": 40000, "return_mean": 400.0}


def test_a_regenerated_dataset_is_the_same_different_rollouts_or_wrong(evidence):
    from dvdf.errors import DvdfError

    assert evidence._check_regenerated(RECORDED, dict(RECORDED)) is True
    # Same policy and size, other float rounding on another CPU: other episodes, reported not fatal.
    assert evidence._check_regenerated(RECORDED, {**RECORDED, "episodes": 49, "return_mean": 395.0}) is False
    with pytest.raises(DvdfError, match="return_mean"):       # far off: not the same policy's data
        evidence._check_regenerated(RECORDED, {**RECORDED, "return_mean": 300.0})
    with pytest.raises(DvdfError, match="policy_dir"):
        evidence._check_regenerated(RECORDED, {**RECORDED, "policy_dir": "hopper-other"})


def test_the_sweep_timing_row_names_its_overrides(evidence, tmp_path, monkeypatch):
    """A sweep run on a subset of the methods must not read, in the commands table, as the full cell."""
    import json
    import subprocess
    import types

    import dvdf.report.archive as archive

    monkeypatch.setattr(evidence, "EVIDENCE", tmp_path)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: types.SimpleNamespace(returncode=0))
    monkeypatch.setattr(archive, "archive_runs", lambda *a: types.SimpleNamespace(copied=[1, 2], skipped=[]))
    args = types.SimpleNamespace(quality="random-expert", data_dir=str(tmp_path), cache_dir=str(tmp_path),
                                 storage=str(tmp_path / "results"), overrides=["methods=[igdf, dvdf-igdf]"])
    evidence.sweep(args)
    row = json.loads((tmp_path / "timings.jsonl").read_text().splitlines()[-1])
    assert row["command"] == "python scripts/evidence.py --set 'methods=[igdf, dvdf-igdf]' sweep random-expert"
    assert row["runs_archived"] == 2


def test_alignment_writes_each_seed_when_it_finishes_and_measures_only_the_chosen_methods(
        evidence, tmp_path, monkeypatch):
    """Seed 200 fails: seed 100's rows are already in the CSVs. Without dvdf-iql-adv no IQL value
    model is trained, and the timing row names the methods."""
    import json
    import types

    import dvdf.alignment as alignment
    from dvdf.alignment import AdvantageAUC, KeptShare

    def kept_shares(configs, batches, seed, progress):
        if seed == 200:
            raise RuntimeError("stopped")
        return [KeptShare(c.filter.method, "expert", 0.5, 0.25, 0.25, 1.0, 2.0) for c in configs]

    trained = []

    def advantage_auc(config, positive, negative, steps, progress):
        trained.append((config.seed, config.filter.method))
        return [AdvantageAUC("sql", n, positive, negative, 0.75, 10, 10) for n in steps]

    monkeypatch.setattr(evidence, "EVIDENCE", tmp_path)
    monkeypatch.setattr(alignment, "kept_shares", kept_shares)
    monkeypatch.setattr(alignment, "advantage_auc", advantage_auc)
    args = types.SimpleNamespace(quality="random-expert", data_dir=str(tmp_path), cache_dir=str(tmp_path),
                                 overrides=[], seeds=[100, 200], steps=[10_000, 100_000], batches=4,
                                 methods=["igdf", "dvdf-igdf"], no_progress=True)
    with pytest.raises(RuntimeError, match="stopped"):
        evidence.alignment(args)
    kept = _rows(tmp_path / "alignment" / "kept_random-expert.csv")
    assert [(r["seed"], r["method"]) for r in kept] == [("100", "igdf"), ("100", "dvdf-igdf")]
    assert [r["steps"] for r in _rows(tmp_path / "alignment" / "auc_random-expert.csv")] == ["10000", "100000"]
    assert trained == [(100, "dvdf-igdf")]
    row, = [json.loads(line) for line in (tmp_path / "timings.jsonl").read_text().splitlines()]
    assert row["command"] == ("python scripts/evidence.py alignment random-expert --seeds 100 "
                              "--methods igdf dvdf-igdf")
