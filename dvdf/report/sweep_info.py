"""What the sweep definition stored with an experiment says the experiment should contain.

``dvdf sweep`` keeps its YAML as ``sweep.yaml`` in the experiment directory. Read through
:mod:`dvdf.tune.results` / :mod:`dvdf.tune.spec` (plain Python, no Ray), it tells the report
the search mode (grid or Optuna, and Optuna's ranges), the seeds, and every (task, method)
study the sweep plans - so a cell without results yet is reported as missing instead of being
silently absent. Without a readable sweep.yaml (a ``dvdf train`` run, a hand-collected folder)
the report falls back to what the runs themselves show.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from dvdf.errors import DvdfError
from dvdf.layout import SWEEP_FILE
from dvdf.report.load import Task, task_of


@dataclass(frozen=True)
class PlannedStudy:
    name: str           # the sweep's study name (group.method)
    task: Task
    method: str
    num_trials: int


@dataclass
class SweepInfo:
    path: Path
    name: str
    mode: str                                   # optuna | grid | fixed
    seeds: tuple[int, ...]
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)   # Optuna search ranges
    studies: dict[tuple[Task, str], PlannedStudy] = field(default_factory=dict)

    def study_named(self, name: str) -> Optional[PlannedStudy]:
        for study in self.studies.values():
            if study.name == name:
                return study
        return None


def read_sweep_info(root: Path) -> tuple[Optional[SweepInfo], Optional[str]]:
    """(info, None), (None, None) when there is no sweep.yaml, or (None, why it was not usable)."""
    path = root / SWEEP_FILE
    if not path.is_file():
        return None, None
    try:
        from dvdf.tune.results import load_stored_sweep
        from dvdf.tune.spec import default_range
        from dvdf.tune.storage import ExperimentDir
    except ImportError as exc:
        return None, f"{SWEEP_FILE} not interpreted (dvdf.tune unavailable: {exc})"
    try:
        sweep = load_stored_sweep(ExperimentDir(str(root)))
    except DvdfError as exc:
        return None, f"{SWEEP_FILE} not interpreted ({exc})"
    search = sweep.spec.search
    info = SweepInfo(path=path, name=sweep.name, mode=search.mode, seeds=tuple(sweep.spec.seeds))
    if search.mode == "optuna":
        for param in ("tradeoff", "keep_ratio"):
            low, high = getattr(search, f"{param}_range") or default_range(param)
            info.ranges[param] = (float(low), float(high))
    for study in sweep.studies:
        point = {"tradeoff": study.fixed.get("tradeoff", sweep.spec.base.filter.tradeoff),
                 "keep_ratio": study.fixed.get("keep_ratio", sweep.spec.base.filter.keep_ratio)}
        config = sweep.experiment_config(study, sweep.spec.seeds[0], point["tradeoff"], point["keep_ratio"])
        task = task_of(config)
        info.studies[(task, study.method)] = PlannedStudy(study.name, task, study.method, study.num_trials)
    return info, None
