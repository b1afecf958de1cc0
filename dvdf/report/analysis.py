"""Everything the report shows, computed once from the loaded experiment (no I/O, no plotting)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

from dvdf.methods import PAPER_KEEP_RATIO, PAPER_TRADEOFF
from dvdf.report import reliable
from dvdf.report.load import (
    DIVERGED,
    FAILED,
    FINISHED,
    PARTIAL,
    PENDING,
    STATUSES,
    Experiment,
    Run,
    Task,
    Trial,
    display_path,
)
from dvdf.report.reliable import Aggregate, Improvement, Profile
from dvdf.report.sensitivity import SensitivityStudy, sensitivity_studies
from dvdf.report.stats import (
    DEFAULT_LAST_K,
    HEADLINE,
    METRICS,
    Cell,
    Comparison,
    Setting,
    ShiftTotal,
    comparisons,
    duplicate_seeds,
    group_settings,
    method_order,
    method_pairs,
    shift_totals,
    table_cells,
)
from dvdf.report.sweep_info import SweepInfo


@dataclass(frozen=True)
class Options:
    """How the report computes its statistics (``dvdf report --last-k/--pair/--bootstrap-reps``)."""

    last_k: int = DEFAULT_LAST_K
    pairs: tuple[tuple[str, str], ...] = ()      # (X, Y) pairs named by the user, besides the registry's
    reps: int = reliable.DEFAULT_REPS
    seed: int = reliable.DEFAULT_SEED
    # A report committed beside its runs (docs/evidence/) names the runs relative to itself and
    # leaves out the time it was written, so regenerating it changes only what the numbers change.
    reproducible: bool = False


@dataclass(frozen=True)
class TuningStudy:
    """One (task, method) that ran several settings: the search as it went (headline score)."""

    task: Task
    method: str
    scores: list[tuple[Setting, float]]     # in the order the settings were tried
    default: Optional[float]                # the paper default's (lambda 0.7, xi 0.5) score, if it ran
    seeds: int
    steps: int

    @property
    def best_so_far(self) -> list[float]:
        best, out = -math.inf, []
        for _, score in self.scores:
            best = max(best, score) if math.isfinite(score) else best
            out.append(best)
        return out


@dataclass(frozen=True)
class Issue:
    """A trial or run without (complete) results, for the index's list."""

    what: str           # trial directory or run directory, relative to the experiment
    status: str         # failed | diverged | pending | partial (dvdf.layout)
    detail: str         # the error's first line, or what is known
    task: Optional[str] = None
    method: Optional[str] = None


@dataclass
class Analysis:
    experiment: Experiment
    sweep: Optional[SweepInfo]
    settings: list[Setting]
    tasks: list[Task]
    methods: list[str]
    cells: dict[str, dict[tuple[Task, str], Cell]]            # metric -> (task, method) -> cell
    totals: dict[str, list[ShiftTotal]]
    comparisons: dict[str, list[Comparison]]
    missing: dict[tuple[Task, str], str]                      # cells without results -> why
    sensitivity: list[SensitivityStudy]
    issues: list[Issue]
    notes: list[str] = field(default_factory=list)
    options: Options = field(default_factory=Options)
    aggregates: dict[str, list[Aggregate]] = field(default_factory=dict)     # metric -> per method
    aggregate_tasks: dict[str, list[Task]] = field(default_factory=dict)     # metric -> tasks used
    pairs: list[tuple[str, str]] = field(default_factory=list)
    improvements: list[Improvement] = field(default_factory=list)            # headline score
    profile: Optional[Profile] = None                                        # headline score
    tuning: list[TuningStudy] = field(default_factory=list)

    @property
    def last_k(self) -> int:
        return self.options.last_k

    @property
    def status_counts(self) -> dict[str, int]:
        """Runs per status (dvdf.layout.STATUSES); a trial without any run counts as one pending run."""
        counts = {status: 0 for status in STATUSES}
        for run in self.experiment.runs:
            counts[run.status] += 1
        counts[PENDING] += sum(1 for trial in self.experiment.trials if not trial.runs)
        return counts


def analyse(experiment: Experiment, sweep: Optional[SweepInfo], sweep_note: Optional[str] = None,
            options: Options = Options()) -> Analysis:
    settings = group_settings(experiment.runs)
    planned = sweep.studies if sweep is not None else {}
    tasks = sorted({s.task for s in settings} | {task for task, _ in planned})
    methods = sorted({s.method for s in settings} | {method for _, method in planned}, key=method_order)
    k = options.last_k
    cells = {metric: _with_intervals(table_cells(settings, metric, k), options) for metric in METRICS}
    # Every "-" of the task x method table gets a reason (a cell whose runs have not evaluated yet
    # counts as missing, like one never started).
    missing = {(task, method): _missing_reason((task, method), experiment, sweep)
               for task in tasks for method in methods if (task, method) not in cells[METRICS[0]]}
    notes = list(experiment.problems) + duplicate_seeds(settings)
    if sweep_note:
        notes.append(sweep_note)
    unknown = [f"{x},{y}" for x, y in options.pairs if x not in methods or y not in methods]
    if unknown:
        notes.append(f"--pair {', '.join(unknown)}: no results for one of the methods (methods with results: "
                     f"{', '.join(methods)}); not compared")
    design_hint = sweep.mode if sweep is not None else None
    aggregates, aggregate_tasks = {}, {}
    for metric in METRICS:
        aggregates[metric], aggregate_tasks[metric] = reliable.aggregates(cells[metric], tasks, methods,
                                                                          reps=options.reps, seed=options.seed)
    pairs = method_pairs(methods, options.pairs)
    headline = cells[HEADLINE]
    return Analysis(
        experiment=experiment, sweep=sweep, settings=settings, tasks=tasks, methods=methods, cells=cells,
        totals={metric: shift_totals(cells[metric], tasks, methods) for metric in METRICS},
        comparisons={metric: comparisons(cells[metric], tasks, methods) for metric in METRICS},
        missing=missing,
        sensitivity=sensitivity_studies(settings, design_hint, sweep.ranges if sweep is not None else None,
                                        last_k=k, reps=options.reps, seed=options.seed),
        issues=_issues(experiment, sweep), notes=notes, options=options,
        aggregates=aggregates, aggregate_tasks=aggregate_tasks, pairs=pairs,
        improvements=reliable.improvements(headline, tasks, pairs, reps=options.reps, seed=options.seed),
        profile=reliable.profile(headline, tasks, methods, reps=options.reps, seed=options.seed),
        tuning=tuning_studies(settings, k))


def _with_intervals(cells: dict[tuple[Task, str], Cell], options: Options) -> dict[tuple[Task, str], Cell]:
    """Each cell with the 95% bootstrap CI of its mean over seeds (from 3 seeds on)."""
    return {key: dataclasses.replace(cell, ci=reliable.mean_interval(cell.stats.values, reps=options.reps,
                                                                     seed=options.seed))
            for key, cell in cells.items()}


def tuning_studies(settings: Sequence[Setting], last_k: int) -> list[TuningStudy]:
    """Every (task, method) with two or more scored settings, its settings in the order tried."""
    by_key: dict[tuple[Task, str], list[Setting]] = {}
    for setting in settings:
        if setting.stats(HEADLINE, last_k) is not None:
            by_key.setdefault((setting.task, setting.method), []).append(setting)
    studies = []
    for (task, method), tried in sorted(by_key.items(), key=lambda kv: (kv[0][0], method_order(kv[0][1]))):
        if len(tried) < 2:
            continue
        tried.sort(key=lambda s: s.order)
        default = [s for s in tried if _is_default(s)]
        studies.append(TuningStudy(task, method, [(s, s.stats(HEADLINE, last_k).mean) for s in tried],
                                   default[0].stats(HEADLINE, last_k).mean if default else None,
                                   seeds=max(len(s.runs) for s in tried), steps=max(s.steps for s in tried)))
    return studies


def _is_default(setting: Setting) -> bool:
    return all(value is None or math.isclose(value, paper, abs_tol=1e-9)
               for value, paper in ((setting.tradeoff, PAPER_TRADEOFF), (setting.keep_ratio, PAPER_KEEP_RATIO)))


def _missing_reason(key: tuple[Task, str], experiment: Experiment, sweep: Optional[SweepInfo]) -> str:
    task, method = key
    runs = [run for run in experiment.runs if run.task == task and run.method == method]
    if runs:
        return f"{len(runs)} run(s) started, none has evaluated yet"
    if sweep is not None and key in sweep.studies:
        study = sweep.studies[key]
        trials = [t for t in experiment.trials if t.params.get("study") == study.name]
        failed = sum(t.status == FAILED for t in trials)
        parts = [f"study {study.name}: {len(trials)} of {study.num_trials} trial(s) started"]
        if failed:
            parts.append(f"{failed} failed")
        return ", ".join(parts)
    return "not part of the sweep" if sweep is not None else "no run of this method on this task"


def _issues(experiment: Experiment, sweep: Optional[SweepInfo]) -> list[Issue]:
    root = experiment.root
    issues = []
    for trial in experiment.trials:
        if trial.status == FINISHED:
            continue
        study = trial.params.get("study")
        task, method = _trial_task(trial, sweep)
        if trial.status == FAILED:
            detail = trial.error or "failed"
        elif trial.status == DIVERGED:
            detail = "; ".join(f"seed {run.seed}: {run.divergence.describe()}" for run in
                               sorted(trial.runs, key=lambda r: r.seed) if run.divergence is not None)
            detail = (detail or "diverged (the trial's last report says so)") + " - not retried; no finished score"
        elif trial.status == PENDING:
            detail = "no evaluation yet (pending, or stopped before its first evaluation)"
        else:
            steps = ", ".join(f"seed {run.seed}: step {run.last_step}/{run.total_steps}" for run in
                              sorted(trial.runs, key=lambda r: r.seed))
            detail = f"not finished (running, stopped early by the scheduler, or interrupted); {steps}"
        point = ", ".join(f"{key}={trial.params[key]:g}" for key in ("tradeoff", "keep_ratio")
                          if isinstance(trial.params.get(key), (int, float)))
        label = display_path(trial.path, root)
        if study:
            label += f" ({study}; {point})" if point else f" ({study})"
        issues.append(Issue(label, trial.status, detail, task, method))
    for run in experiment.runs:
        if run.trial is None and run.status != FINISHED:
            if run.divergence is not None:
                detail = run.divergence.describe() + " - no finished score"
            else:
                detail = f"step {run.last_step}/{run.total_steps}" if run.evals else "no evaluation yet"
            issues.append(Issue(display_path(run.path, root), run.status, detail, run.task.name, run.method))
    order = {FAILED: 0, DIVERGED: 1, PENDING: 2, PARTIAL: 3}
    issues.sort(key=lambda issue: (order.get(issue.status, 3), issue.what))
    return issues


def _trial_task(trial: Trial, sweep: Optional[SweepInfo]) -> tuple[Optional[str], Optional[str]]:
    if trial.runs:
        run: Run = trial.runs[0]
        return run.task.name, run.method
    if sweep is not None and trial.params.get("study"):
        planned = sweep.study_named(str(trial.params["study"]))
        if planned is not None:
            return planned.task.name, planned.method
    # Without a sweep definition, the trial's own parameters may still name its group and method.
    return trial.params.get("group"), trial.params.get("method")
