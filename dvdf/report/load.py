"""Read the runs and trials of an experiment directory into plain records.

A :class:`Run` is one training run (one seed): its resolved config, its evaluations
(``metrics.jsonl`` rows, sorted by step) and a status. Runs are grouped for the report by
:class:`Task` (robot, shift, quality - read from the config, never from directory names),
method (``filter.method``), the two DVDF knobs lambda (``filter.tradeoff``) and xi
(``filter.keep_ratio``) where the method uses them, and seed.

A :class:`Trial` is a Ray Tune trial directory (see :mod:`dvdf.report.discover`): it may hold
several runs (one per seed), none (pending, or failed before its first evaluation) and an
``error.txt``. Runs and trials are read by :mod:`dvdf.trials`, the reader ``dvdf sweep
--results-only`` uses too, so both give a trial the same status. Nothing here aborts on one
unreadable run: the problem is recorded in :attr:`Experiment.problems` and shown in the report.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from dvdf.config import QUALITIES, DataConfig, ExperimentConfig, experiment_config_from_dict
from dvdf.errors import DvdfError
from dvdf.layout import (
    DIVERGED,
    FAILED,
    FINISHED,
    PARTIAL,
    PENDING,
    RUN_CONFIG,
    RUN_METRICS,
    SCORE,
    STATUSES,
    STEP,
    SWEEP_FILE,
)
from dvdf.report.discover import discover
from dvdf.schema import flatten, to_dict
from dvdf.trials import Divergence, RunFiles, error_headline, read_run, read_trial
from dvdf.tune.storage import ExperimentDir

__all__ = ["DIVERGED", "FAILED", "FINISHED", "PARTIAL", "PENDING", "SCORE", "STATUSES", "Experiment", "Run",
           "Task", "Trial", "error_headline", "load_experiment", "task_of", "display_path"]

_DEFAULT_TARGET_FRACTION = DataConfig().target_fraction   # the paper's 10% of the target dataset

# Config fields that legitimately differ between the runs of one table cell (seeds, paths,
# hardware) or that are already part of the grouping key. Any *other* field that differs between
# runs of the experiment becomes part of the method label, so runs with different settings are
# never averaged together silently.
_NOT_VARIANT = {
    "name", "seed", "device", "cache_dir", "threads",
    "data.data_dir", "data.source_path", "data.target_path", "data.subsample_seed", "data.collect.seed",
    "data.source_domain", "data.target_domain", "data.quality", "data.target_transitions",
    "data.target_fraction", "filter.method", "filter.tradeoff", "filter.keep_ratio",
}


@dataclass(frozen=True)
class Task:
    """A (robot, shift, quality) dataset pair; the unit of the paper's per-task tables.

    ``shift`` is the shifted domain's name without the robot (``kinematic``,
    ``kinematic-footjnt-hard``, ``gravity-0.5``); ``shift_type`` its family (``kinematic``,
    ``morph``, ``gravity``, ``friction``). ``reversed`` is OTDF/ODRL's convention (the *target*
    is the shifted domain). The target data: ``target_size`` transitions (low-data setting), else
    ``target_fraction`` of the target dataset, named only when it is not the paper's 10%.
    Names follow ``dvdf sweep``'s group names (``-1000tr``, ``-frac0.2``, ``-rev``).
    """

    shift_type: str
    robot: str
    shift: str
    quality_rank: int
    quality: str
    target_size: Optional[int] = None
    target_fraction: Optional[float] = None
    reversed: bool = False

    @property
    def name(self) -> str:
        label = f"{self.robot}-{self.shift}-{self.quality}"
        if self.target_size is not None:
            label += f"-{self.target_size}tr"
        elif self.target_fraction is not None and self.target_fraction != _DEFAULT_TARGET_FRACTION:
            label += f"-frac{self.target_fraction:g}"
        if self.reversed:
            label += "-rev"
        return label

    def _key(self) -> tuple:
        return (self.shift_type, self.robot, self.shift, self.quality_rank, self.quality,
                -1 if self.target_size is None else self.target_size,
                -1.0 if self.target_fraction is None else self.target_fraction, self.reversed)

    def __lt__(self, other: "Task") -> bool:
        """Table order: shift type, robot, shift, quality (paper order), target data, direction."""
        return self._key() < other._key()


@dataclass
class Run:
    """One run directory: config, evaluations sorted by step, status (``dvdf.layout.STATUSES``)."""

    path: Path
    config: ExperimentConfig
    evals: list[dict[str, float]]
    status: str = PARTIAL
    trial: Optional[Path] = None
    variant: str = ""              # differing config fields, see _NOT_VARIANT
    summary: Optional[dict[str, Any]] = None
    divergence: Optional[Divergence] = None   # where it stopped on a non-finite value (status diverged)

    @property
    def task(self) -> Task:
        return task_of(self.config)

    @property
    def method(self) -> str:
        """filter.method, plus the differing config fields if runs of this method differ."""
        return f"{self.config.filter.method} [{self.variant}]" if self.variant else self.config.filter.method

    @property
    def tradeoff(self) -> Optional[float]:
        """lambda, only for methods that combine dynamics and value scores (dvdf-*)."""
        return self.config.filter.tradeoff if self.config.filter.uses_value else None

    @property
    def keep_ratio(self) -> Optional[float]:
        """xi, only for methods that filter the source batch."""
        return self.config.filter.keep_ratio if self.config.filter.dynamics_scorer else None

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def total_steps(self) -> int:
        return self.config.iql.steps

    @property
    def steps(self) -> list[int]:
        return [int(row[STEP]) for row in self.evals]

    @property
    def scores(self) -> list[float]:
        return [float(row[SCORE]) for row in self.evals]

    @property
    def last_step(self) -> int:
        return int(self.evals[-1][STEP]) if self.evals else 0

    @property
    def final_score(self) -> Optional[float]:
        """Normalized score at the last evaluation (the latest one while the run is going on)."""
        return float(self.evals[-1][SCORE]) if self.evals else None

    @property
    def best_score(self) -> Optional[float]:
        """Best-of-run: maximum normalized score over all evaluations so far (optimistic)."""
        return max(self.scores) if self.evals else None

    def last_k_score(self, k: int) -> Optional[float]:
        """Mean normalized score of the last k evaluations (all of them if the run has fewer)."""
        if not self.evals:
            return None
        tail = self.scores[-k:]
        return sum(tail) / len(tail)

    def metric_keys(self) -> set[str]:
        keys: set[str] = set()
        for row in self.evals:
            keys.update(row)
        return keys


@dataclass
class Trial:
    """A Ray Tune trial directory and what it produced; ``status`` is :func:`dvdf.trials.trial_status`'s."""

    path: Path
    params: dict[str, Any]
    status: str
    runs: list[Run] = field(default_factory=list)
    error: Optional[str] = None    # the line of error.txt naming the cause

    @property
    def name(self) -> str:
        return self.path.name


@dataclass
class Experiment:
    """Everything the report is built from."""

    root: Path
    kind: str                                     # "train" (a single run directory) or "sweep"
    runs: list[Run]
    trials: list[Trial]
    problems: list[str] = field(default_factory=list)   # unreadable files, skipped lines
    sweep_config: Optional[Path] = None           # the sweep YAML the experiment came from
    produced_by: Optional[str] = None             # dvdf version recorded with the results

    @property
    def runs_with_evals(self) -> list[Run]:
        return [run for run in self.runs if run.evals]


# --------------------------------------------------------------------------------------------
def task_of(config: ExperimentConfig) -> Task:
    """The task a run belongs to, from its data section (names follow dvdf.envs' grammar)."""
    data = config.data
    source_robot, source_shift = _split_domain(data.source_domain)
    target_robot, target_shift = _split_domain(data.target_domain)
    reversed_roles = source_shift is None and target_shift is not None
    if source_shift is not None and target_shift is not None:
        shift = f"{source_shift}-to-{target_shift}"
    else:
        shift = source_shift or target_shift or "none"
    robot = source_robot if source_robot == target_robot else f"{source_robot}-to-{target_robot}"
    rank = QUALITIES.index(data.quality) if data.quality in QUALITIES else len(QUALITIES)
    fraction = None if data.target_transitions is not None else data.target_fraction
    return Task(shift_type=shift.split("-")[0], robot=robot, shift=shift, quality_rank=rank,
                quality=data.quality, target_size=data.target_transitions, target_fraction=fraction,
                reversed=reversed_roles)


def _split_domain(name: str) -> tuple[str, Optional[str]]:
    robot, _, shift = name.partition("-")
    return robot, (shift or None)


def load_experiment(root: str | Path, exclude: Optional[Path] = None) -> Experiment:
    """Discover and read all runs and trials under ``root`` (a train run or a sweep directory)."""
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", str(root)):
        raise DvdfError(f"{root}: dvdf report reads a local or mounted directory; copy the experiment from "
                        "object storage first (e.g. 'aws s3 sync' / 'gsutil rsync')")
    root = Path(root)
    if not root.exists():
        raise DvdfError(f"{root}: no such directory")
    if not root.is_dir():
        raise DvdfError(f"{root}: not a directory (expected a 'dvdf train' output or a sweep directory)")
    found = discover(root, exclude=exclude)
    problems: list[str] = []
    runs: list[Run] = []
    trials: list[Trial] = []
    in_trials: set[Path] = set()
    for trial_dir in found.trial_dirs:
        files = read_trial(ExperimentDir(str(trial_dir)), problems, display_path(trial_dir, found.root))
        trial = Trial(path=trial_dir, params=files.params, status=files.status, error=files.error)
        for run_files in files.runs:
            run = _run_of(run_files, problems, found.root)
            in_trials.add(Path(run_files.location))
            if run is not None:
                run.trial = trial_dir
                trial.runs.append(run)
                runs.append(run)
        trials.append(trial)
    for run_dir in found.run_dirs:
        if run_dir in in_trials:
            continue
        if found.trial_of(run_dir) is not None:
            problems.append(f"{display_path(run_dir, found.root)}: a run folder nested below its trial's seed "
                            "folders; not read (a trial's runs are its direct sub-folders)")
            continue
        where = display_path(run_dir, found.root)
        run = _run_of(read_run(ExperimentDir(str(run_dir)), problems, where), problems, found.root)
        if run is not None:
            runs.append(run)
    if not runs and not trials:
        unreadable = ""
        if problems:
            more = f" and {len(problems) - 1} more" if len(problems) > 1 else ""
            unreadable = f"; unreadable: {problems[0]}{more}"
        raise DvdfError(f"{root}: no runs found (no readable {RUN_CONFIG} + {RUN_METRICS} and no Ray trial "
                        f"directories below it){unreadable}")
    _assign_variants(runs)
    single = len(runs) == 1 and not trials and runs[0].path == found.root
    return Experiment(root=found.root, kind="train" if single else "sweep", runs=runs, trials=trials,
                      problems=problems, sweep_config=_find_sweep_config(found.root),
                      produced_by=_recorded_version(runs, found.root))


def display_path(path: Path, root: Path) -> str:
    """``path`` relative to the experiment root for messages and tables (the root: its own name)."""
    if path == root:
        return path.name
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _run_of(files: RunFiles, problems: list[str], root: Path) -> Optional[Run]:
    """The report's record of a run read by dvdf.trials (None when its config.yaml is unusable)."""
    path = Path(files.location)
    where = display_path(path, root)
    if files.config is None:
        problems.append(f"{where}: skipped, cannot read {RUN_CONFIG} ({files.config_error})")
        return None
    try:
        config = experiment_config_from_dict(files.config, source=f"{where}/{RUN_CONFIG}")
    except DvdfError as exc:
        problems.append(f"{where}: skipped, cannot read {RUN_CONFIG} ({_first_line(str(exc))})")
        return None
    return Run(path=path, config=config, evals=files.evals, status=files.status, summary=files.summary,
               divergence=files.divergence)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def _assign_variants(runs: list[Run]) -> None:
    flat = [flatten(to_dict(run.config)) for run in runs]
    keys = sorted({key for row in flat for key in row} - _NOT_VARIANT)
    differing = [key for key in keys if len({json.dumps(row.get(key), sort_keys=True) for row in flat}) > 1]
    for run, row in zip(runs, flat):
        run.variant = ", ".join(f"{key}={row.get(key)}" for key in differing)


# Where a sweep keeps its own configuration; the first that exists is shown in the index.
_SWEEP_CONFIG_NAMES = (SWEEP_FILE, "sweep_config.yaml", "sweep.yml")


def _find_sweep_config(root: Path) -> Optional[Path]:
    for name in _SWEEP_CONFIG_NAMES:
        if (root / name).is_file():
            return root / name
    return None


def _recorded_version(runs: list[Run], root: Path) -> Optional[str]:
    """The dvdf version recorded with the results (summary.json or the sweep's metadata), if any."""
    versions = {str(run.summary["dvdf_version"]) for run in runs
                if run.summary and "dvdf_version" in run.summary}
    for name in ("sweep_meta.json", "experiment.json"):
        if (root / name).is_file():
            try:
                meta = json.loads((root / name).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(meta, dict) and "dvdf_version" in meta:
                versions.add(str(meta["dvdf_version"]))
    return ", ".join(sorted(versions)) if versions else None
