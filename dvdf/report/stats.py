"""The numbers of the report: per-seed scores aggregated into the paper's tables.

Pure functions of :class:`~dvdf.report.load.Run` records, no I/O:

* every run has three scores, each labelled wherever it appears (:func:`score_label`): the
  *final* score (last evaluation), the *last-k* score (mean of the last k evaluations, k = 5 by
  default: the headline score, less noisy than one evaluation) and the *best-of-run* score
  (maximum over evaluations - optimistic, since it picks the evaluation after seeing it);
* a **setting** is one (task, method, lambda, xi); its seeds are aggregated into mean and sample
  standard deviation (n - 1 in the denominator). A diverged run (stopped on a non-finite value,
  see dvdf.trials) has no finished score: it is left out of the mean and counted in ``diverged``,
  which every table shows;
* a **cell** of the per-task table is one (task, method): the single setting that was run
  (``fixed``: the paper default, or a setting chosen before seeing results), or - when a sweep
  ran several - the setting with the highest mean of the tabulated score (``tuned``: chosen on
  the reported score, with its tuning budget trials x seeds x steps);
* **totals** per shift type are sums of per-task means, as the paper reports them;
* **comparisons** set DVDF against the filter it builds on (dvdf-igdf vs igdf, dvdf-otdf vs otdf)
  on the tasks both have: relative change of the totals and tasks won / lost / tied.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Iterable, Optional

from dvdf.layout import RUN_CONFIG
from dvdf.methods import METHOD_NAMES, comparison_pairs
from dvdf.report.load import DIVERGED, FINISHED, Run, Task

FINAL, LAST_K, BEST = "final", "last_k", "best"
METRICS = (LAST_K, FINAL, BEST)      # the headline score first
HEADLINE = LAST_K
DEFAULT_LAST_K = 5
FIXED, TUNED = "fixed", "tuned"


def score_label(metric: str, last_k: int) -> str:
    """The short label of a score, as every table and figure writes it."""
    return {FINAL: "final", LAST_K: f"last-{last_k} mean", BEST: "best-of-run (optimistic)"}[metric]


def score_title(metric: str, last_k: int) -> str:
    """The label with what it means, for section titles."""
    return {
        FINAL: "final score (normalized score at the last evaluation)",
        LAST_K: f"last-{last_k} mean score (mean normalized score of the last {last_k} evaluations)",
        BEST: "best-of-run score (maximum normalized score over the evaluations; optimistic)",
    }[metric]


@dataclass(frozen=True)
class SeedStats:
    """Aggregate of one score over the seeds of a setting."""

    mean: float
    std: Optional[float]     # sample std (ddof = 1); None with a single seed
    n: int
    partial: bool            # some seed has not finished (running, stopped early, failed or diverged)
    seeds: tuple[int, ...]
    values: tuple[float, ...] = ()   # the per-seed scores, in seed order
    diverged: int = 0        # seeds of the setting that diverged (not in the values)


def seed_stats(values: Iterable[float], seeds: Iterable[int], partial: bool, diverged: int = 0) -> SeedStats:
    values = [float(v) for v in values]
    if not values:
        raise ValueError("seed_stats needs at least one value")
    n = len(values)
    mean = math.fsum(values) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return SeedStats(mean=mean, std=std, n=n, partial=partial, seeds=tuple(seeds), values=tuple(values),
                     diverged=diverged)


def run_score(run: Run, metric: str, last_k: int = DEFAULT_LAST_K) -> Optional[float]:
    if metric == FINAL:
        return run.final_score
    if metric == LAST_K:
        return run.last_k_score(last_k)
    return run.best_score


@dataclass
class Setting:
    """All runs (seeds) of one (task, method, lambda, xi)."""

    task: Task
    method: str
    tradeoff: Optional[float]     # lambda
    keep_ratio: Optional[float]   # xi
    runs: list[Run]

    @property
    def scored_runs(self) -> list[Run]:
        """Runs with evaluations that did not diverge, by seed: the ones the statistics use."""
        return sorted((run for run in self.runs if run.evals and run.status != DIVERGED),
                      key=lambda run: (run.seed, str(run.path)))

    @property
    def diverged_runs(self) -> list[Run]:
        return sorted((run for run in self.runs if run.status == DIVERGED), key=lambda run: run.seed)

    @property
    def partial(self) -> bool:
        return any(run.status != FINISHED for run in self.runs)

    @property
    def steps(self) -> int:
        """Gradient steps each run of the setting is configured for."""
        return max(run.total_steps for run in self.runs)

    @property
    def order(self) -> tuple:
        """When the setting was tried: its trial's number in a sweep (Ray names trials
        <study>_<number>), else when its first run was configured (config.yaml's time)."""
        numbers = []
        for run in self.runs:
            tail = run.trial.name.rsplit("_", 1)[-1] if run.trial is not None else ""
            if tail.isdigit():
                numbers.append(int(tail))
        if numbers:
            return (0, min(numbers))
        times = []
        for run in self.runs:
            try:
                times.append((run.path / RUN_CONFIG).stat().st_mtime)
            except OSError:
                pass
        return (1, min(times) if times else 0.0, str(min(run.path for run in self.runs)))

    def stats(self, metric: str, last_k: int = DEFAULT_LAST_K) -> Optional[SeedStats]:
        runs = self.scored_runs
        if not runs:
            return None
        return seed_stats([run_score(run, metric, last_k) for run in runs], [run.seed for run in runs],
                          self.partial, diverged=len(self.diverged_runs))

    @property
    def label(self) -> str:
        parts = []
        if self.tradeoff is not None:
            parts.append(f"lambda={self.tradeoff:g}")
        if self.keep_ratio is not None:
            parts.append(f"xi={self.keep_ratio:g}")
        return ", ".join(parts) or "-"


def group_settings(runs: Iterable[Run]) -> list[Setting]:
    """Group runs by (task, method, lambda, xi); sorted by task, method order, lambda, xi."""
    groups: dict[tuple, list[Run]] = defaultdict(list)
    for run in runs:
        groups[(run.task, run.method, run.tradeoff, run.keep_ratio)].append(run)
    settings = [Setting(task, method, lam, xi, members)
                for (task, method, lam, xi), members in groups.items()]
    settings.sort(key=lambda s: (s.task, method_order(s.method), _none_last(s.tradeoff),
                                 _none_last(s.keep_ratio)))
    return settings


def duplicate_seeds(settings: Iterable[Setting]) -> list[str]:
    """Settings holding the same seed twice (e.g. a sweep run twice into one directory)."""
    notes = []
    for setting in settings:
        counts = Counter(run.seed for run in setting.runs)
        for seed, count in sorted(counts.items()):
            if count > 1:
                notes.append(f"{setting.task.name} {setting.method} ({setting.label}): seed {seed} appears "
                             f"{count} times; every copy counts as one sample")
    return notes


def method_order(method: str) -> tuple[int, str]:
    """Paper order (iql-target ... dvdf-iql-adv), variants after their base, unknown ones last."""
    base = method.split(" [")[0]
    return (METHOD_NAMES.index(base) if base in METHOD_NAMES else len(METHOD_NAMES), method)


def _rank(mean: float) -> float:
    return -math.inf if math.isnan(mean) else mean


def _none_last(value: Optional[float]) -> tuple[int, float]:
    return (1, 0.0) if value is None else (0, value)


# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TuningBudget:
    """What choosing a tuned cell cost: trials (settings run) x seeds x gradient steps each."""

    trials: int
    seeds: int
    steps: int

    def describe(self) -> str:
        return f"{self.trials} trials x {self.seeds} seeds x {self.steps:,} steps"


@dataclass(frozen=True)
class Cell:
    """One entry of the per-task table."""

    setting: Setting
    stats: SeedStats
    n_settings: int       # settings of this (task, method) that have results; > 1 = best one chosen
    budget: Optional[TuningBudget] = None          # tuned cells: what the selection cost
    ci: Optional[tuple[float, float]] = None       # 95% bootstrap CI of the mean (n >= 3), see reliable

    @property
    def selection(self) -> str:
        """``fixed`` (the only setting run: chosen before the results) or ``tuned`` (the best of several)."""
        return TUNED if self.n_settings > 1 else FIXED


def table_cells(settings: Iterable[Setting], metric: str,
                last_k: int = DEFAULT_LAST_K) -> dict[tuple[Task, str], Cell]:
    """(task, method) -> cell: the setting with the highest mean ``metric`` among those with results."""
    candidates: dict[tuple[Task, str], list[tuple[Setting, SeedStats]]] = defaultdict(list)
    tried: dict[tuple[Task, str], list[Setting]] = defaultdict(list)
    for setting in settings:
        tried[(setting.task, setting.method)].append(setting)
        stats = setting.stats(metric, last_k)
        if stats is not None:
            candidates[(setting.task, setting.method)].append((setting, stats))
    cells = {}
    for key, options in candidates.items():
        # NaN means never win the selection; ties keep the first in sort order (lambda, xi ascending).
        setting, stats = max(options, key=lambda pair: _rank(pair[1].mean))
        budget = None
        if len(options) > 1:
            every = tried[key]
            budget = TuningBudget(trials=len(every), seeds=max(len(s.runs) for s in every),
                                  steps=max(s.steps for s in every))
        cells[key] = Cell(setting=setting, stats=stats, n_settings=len(options), budget=budget)
    return cells


@dataclass(frozen=True)
class ShiftTotal:
    """Sum over the tasks of one shift type of a method's per-task means."""

    shift_type: str
    method: str
    total: float
    tasks_with_results: int
    tasks_in_shift: int
    partial: bool

    @property
    def complete(self) -> bool:
        return self.tasks_with_results == self.tasks_in_shift


CellMap = dict[tuple[Task, str], Cell]


def shift_totals(cells: CellMap, tasks: list[Task], methods: list[str]) -> list[ShiftTotal]:
    totals = []
    for shift_type in sorted({task.shift_type for task in tasks}):
        shift_tasks = [task for task in tasks if task.shift_type == shift_type]
        for method in methods:
            present = [cells[(task, method)] for task in shift_tasks if (task, method) in cells]
            if not present:
                continue
            total = math.fsum(c.stats.mean for c in present)
            totals.append(ShiftTotal(shift_type, method, total, len(present), len(shift_tasks),
                                     any(c.stats.partial for c in present)))
    return totals


@dataclass(frozen=True)
class Comparison:
    """DVDF variant vs its baseline filter over the tasks (of one shift type) both have."""

    shift_type: str                 # a shift type, or "all"
    method: str
    baseline: str
    tasks: int
    method_total: float
    baseline_total: float
    won: int
    lost: int
    tied: int
    partial: bool

    @property
    def relative_change(self) -> Optional[float]:
        """(total - baseline total) / |baseline total| in percent; None when the baseline sums to 0."""
        if self.baseline_total == 0:
            return None
        return 100.0 * (self.method_total - self.baseline_total) / abs(self.baseline_total)


def comparisons(cells: CellMap, tasks: list[Task], methods: list[str]) -> list[Comparison]:
    out = []
    shift_types = sorted({task.shift_type for task in tasks})
    scopes = [(shift, [t for t in tasks if t.shift_type == shift]) for shift in shift_types]
    if len(shift_types) > 1:
        scopes.append(("all", list(tasks)))
    for method in methods:
        baseline = _baseline_of(method)
        if baseline is None or baseline not in methods:
            continue
        for scope, scope_tasks in scopes:
            both = [t for t in scope_tasks if (t, method) in cells and (t, baseline) in cells]
            if not both:
                continue
            ours = [cells[(t, method)].stats for t in both]
            theirs = [cells[(t, baseline)].stats for t in both]
            won = sum(a.mean > b.mean for a, b in zip(ours, theirs))
            lost = sum(a.mean < b.mean for a, b in zip(ours, theirs))
            out.append(Comparison(scope, method, baseline, len(both), math.fsum(a.mean for a in ours),
                                  math.fsum(b.mean for b in theirs), won, lost, len(both) - won - lost,
                                  any(s.partial for s in ours + theirs)))
    return out


def _baseline_of(method: str) -> Optional[str]:
    """'dvdf-igdf [x=1]' -> 'igdf [x=1]': the baseline with the same differing config fields."""
    base, bracket, rest = method.partition(" [")
    for ours, theirs in comparison_pairs():
        if base == ours:
            return theirs + (bracket + rest if bracket else "")
    return None


def method_pairs(methods: list[str], named: Iterable[tuple[str, str]] = ()) -> list[tuple[str, str]]:
    """(X, Y) pairs to compare: each method with its registry baseline (dvdf.methods), then the
    pairs the user named; only pairs whose both methods have results, each once."""
    pairs = []
    for method in methods:
        baseline = _baseline_of(method)
        if baseline is not None and baseline in methods:
            pairs.append((method, baseline))
    for x, y in named:
        if x in methods and y in methods and (x, y) not in pairs and x != y:
            pairs.append((x, y))
    return pairs
