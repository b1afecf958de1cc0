"""dvdf.report.archive: a sweep's per-seed results copied into a small tree the report reads alike."""

from __future__ import annotations

from test_report import paper_like_experiment

from dvdf.report.analysis import Options, analyse
from dvdf.report.archive import archive_runs
from dvdf.report.build import statistics
from dvdf.report.load import load_experiment


def cells(root):
    """The report's per-(metric, task, method) cells, computed without writing a report."""
    stats = statistics(analyse(load_experiment(root), None, None, Options(reps=100)))
    return {(metric, c["task"], c["method"]): c for metric, rows in stats["cells"].items() for c in rows}


def test_archive_keeps_every_finished_run_and_the_same_statistics(tmp_path):
    sweep = tmp_path / "sweep"
    paper_like_experiment(sweep)
    (sweep / "hopper-kinematic-medium-igdf-100" / "tb").mkdir()   # not archived: only result files
    (sweep / "hopper-kinematic-medium-igdf-100" / "tb" / "events").write_text("x")
    archived = archive_runs(sweep, tmp_path / "archive")
    # 2 shifts x 2 qualities x 2 methods x 3 seeds, less the missing cell (3) and the partial run (1).
    assert len(archived.copied) == 20 and len(archived.skipped) == 1
    assert "partial" in archived.skipped[0]
    folder = tmp_path / "archive" / "hopper-kinematic-medium" / "igdf" / "seed_100"
    assert sorted(p.name for p in folder.iterdir()) == ["config.yaml", "metrics.jsonl"]
    original, copy = cells(sweep), cells(tmp_path / "archive")
    complete = {key: cell for key, cell in original.items() if not cell["partial"]}   # 3 scores x 6 cells
    assert len(complete) == 3 * 6 and {key: copy[key] for key in complete} == complete
    # Archiving again replaces the files in place (a re-run supersedes), nothing is duplicated.
    again = archive_runs(sweep, tmp_path / "archive")
    assert sorted(again.copied) == sorted(archived.copied)
    assert len(list((tmp_path / "archive").rglob("metrics.jsonl"))) == 20
