"""Keep a sweep's per-seed results small enough to commit: ``<dest>/<task>/<method>/seed_<N>/``.

A sweep directory holds Ray's trial folders, TensorBoard events and checkpoints (megabytes per
trial); what every table and figure of ``dvdf report`` is computed from is much smaller: each
run's ``config.yaml``, ``metrics.jsonl`` and ``summary.json``. :func:`archive_runs` copies
those files of every finished or diverged run into a plain tree that ``dvdf report`` reads as
it reads the sweep, named by what the run is (its task, method and seed) rather than by Ray's
trial ids, so results of several sweeps can sit side by side. Unfinished runs are not copied.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from dvdf.atomic import atomic_path
from dvdf.layout import DIVERGED, FINISHED, RUN_CONFIG, RUN_METRICS, RUN_SUMMARY, member_dir
from dvdf.report.load import load_experiment, task_of

ARCHIVED_FILES = (RUN_CONFIG, RUN_METRICS, RUN_SUMMARY)


@dataclass
class Archived:
    copied: list[Path] = field(default_factory=list)     # run folders written under dest
    skipped: list[str] = field(default_factory=list)     # "<run>: <status>" of runs left out


def run_folder(dest: Path, config) -> Path:
    """``<dest>/<task>/<method>/seed_<N>``: where one run's files go."""
    return dest / task_of(config).name / config.filter.method / member_dir(config.seed)


def archive_runs(experiment_dir: str | Path, dest: str | Path) -> Archived:
    """Copy the result files of every finished or diverged run below ``experiment_dir`` to ``dest``.

    A run already archived is replaced (a re-run of the same cell supersedes it); each file is
    written atomically, so an interrupted archive never leaves a half-copied file.
    """
    dest = Path(dest)
    experiment = load_experiment(experiment_dir, exclude=dest)
    out = Archived()
    for run in experiment.runs:
        if run.status not in (FINISHED, DIVERGED):
            out.skipped.append(f"{run.path}: {run.status}")
            continue
        folder = run_folder(dest, run.config)
        folder.mkdir(parents=True, exist_ok=True)
        for name in ARCHIVED_FILES:
            if (run.path / name).is_file():
                with atomic_path(folder / name) as tmp:
                    shutil.copyfile(run.path / name, tmp)
        out.copied.append(folder)
    return out
