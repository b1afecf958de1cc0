"""Aggregate statistics over tasks and seeds, computed by the ``rliable`` package.

What a reviewer of an offline RL paper asks for beyond per-task means (Agarwal et al., "Deep RL at
the edge of the statistical precipice", 2021 - the estimators of the ``rliable`` package, which
this module calls and does not re-implement):

* per method, over tasks and seeds: the **interquartile mean** (IQM: the mean of the middle 50% of
  all run scores, robust to outlier runs) and the **mean** of normalized scores, each with a 95%
  **stratified-bootstrap** confidence interval (seeds resampled within each task);
* **performance profiles**: the fraction of runs scoring above tau, for every tau, with 95% bands;
* **probability of improvement** P(X > Y): for a random task, the probability that a random run of
  X beats a random run of Y (Mann-Whitney U / (n_X n_Y), averaged over tasks), with its 95% CI;
* for one table cell (a task, n >= 3 seeds): the bootstrap CI of the mean over its seeds.

Input is the report's table cells (:class:`dvdf.report.stats.Cell`, one per task and method): each
cell's per-seed scores of one score kind (final, last-k or best-of-run). rliable needs a
runs x tasks matrix per method, so a method's tasks are aligned on the seed count of its sparsest
task (the lowest seeds are kept; how many runs were left out is stated). Diverged runs have no
score (see dvdf.report.stats) and are counted, not silently averaged.

Reproducibility: rliable 1.2's stratified bootstraps draw their resampling indices from numpy's
*global* generator (``np.random.choice``), whatever ``random_state`` says. Every estimate here
therefore seeds the global generator with ``seed`` first (and puts its previous state back after),
so a report is reproducible and a test that seeds numpy the same way and calls rliable directly on
the same numbers gets the same intervals.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np

from dvdf.report.load import Task
from dvdf.report.stats import Cell

CONFIDENCE = 0.95
DEFAULT_REPS = 2000        # bootstrap replications (rliable's default for profiles)
DEFAULT_SEED = 0
MIN_CI_RUNS = 3            # a cell gets a CI from 3 seeds on; with fewer a bootstrap says nothing
PROFILE_POINTS = 101       # thresholds tau of a performance profile

CellMap = dict[tuple[Task, str], Cell]


@dataclass(frozen=True)
class Interval:
    """A point estimate with its 95% confidence interval."""

    point: float
    low: float
    high: float

    @property
    def width(self) -> float:
        return self.high - self.low


@dataclass(frozen=True)
class Aggregate:
    """IQM and mean of one method's normalized scores over ``tasks`` x ``runs`` (per task)."""

    method: str
    tasks: int
    runs: int                 # runs per task in the matrix
    iqm: Interval
    mean: Interval
    left_out: int             # runs not in the matrix (tasks with more seeds than the sparsest)
    diverged: int             # diverged runs on these tasks (no score; not in the matrix)
    tuned_cells: int          # cells of the matrix whose setting was chosen on the score


@dataclass(frozen=True)
class Improvement:
    """P(X > Y) over the tasks both methods have."""

    x: str
    y: str
    tasks: int
    runs_x: int
    runs_y: int
    probability: Interval


@dataclass(frozen=True)
class Profile:
    """Performance profile: fraction of runs with score > tau, per method, with 95% bands."""

    taus: np.ndarray
    curves: dict[str, Interval]    # each field an array over taus
    runs: dict[str, int]           # runs x tasks behind each curve


def _rng(seed: int) -> np.random.RandomState:
    return np.random.RandomState(seed)


def _estimates(score_dict: dict, func: Callable, reps: int, seed: int) -> tuple[dict, dict]:
    """rliable.library.get_interval_estimates with numpy's global generator seeded (see above)."""
    from rliable import library as rly

    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        with warnings.catch_warnings():
            # arch (rliable's bootstrap) warns that RandomState is deprecated; it is what rliable passes.
            warnings.simplefilter("ignore", FutureWarning)
            return rly.get_interval_estimates(score_dict, func, reps=reps, confidence_interval_size=CONFIDENCE,
                                              random_state=_rng(seed))
    finally:
        np.random.set_state(saved)


def iqm_and_mean(scores: np.ndarray) -> np.ndarray:
    """[IQM, mean] of a runs x tasks matrix (rliable.metrics)."""
    from rliable import metrics

    return np.array([metrics.aggregate_iqm(scores), metrics.aggregate_mean(scores)])


def score_matrix(cells: CellMap, tasks: Sequence[Task], method: str) -> tuple[np.ndarray, int]:
    """(runs x tasks matrix of ``method``'s per-seed scores, runs left out to make it rectangular)."""
    columns = [cells[(task, method)].stats.values for task in tasks]
    runs = min(len(c) for c in columns)
    left_out = sum(len(c) - runs for c in columns)
    return np.array([list(c[:runs]) for c in columns], dtype=float).T, left_out


def common_tasks(cells: CellMap, tasks: Sequence[Task], methods: Sequence[str]) -> list[Task]:
    """The tasks on which every one of ``methods`` has results (an aggregate compares like with like)."""
    return [task for task in tasks if all((task, method) in cells for method in methods)]


def aggregates(cells: CellMap, tasks: Sequence[Task], methods: Sequence[str], *, reps: int = DEFAULT_REPS,
               seed: int = DEFAULT_SEED) -> tuple[list[Aggregate], list[Task]]:
    """IQM and mean with 95% stratified-bootstrap CIs per method, over the tasks all methods have.

    Returns (one Aggregate per method with results there, those tasks). Without a task common to
    all methods, each method is aggregated over its own tasks (the second value is then empty).
    """
    present = [m for m in methods if any((t, m) in cells for t in tasks)]
    shared = common_tasks(cells, tasks, present)
    out = []
    for method in present:
        own = shared or [t for t in tasks if (t, method) in cells]
        matrix, left_out = score_matrix(cells, own, method)
        point, interval = _estimates({method: matrix}, iqm_and_mean, reps, seed)
        (iqm, mean), ((iqm_low, mean_low), (iqm_high, mean_high)) = point[method], interval[method]
        used = [cells[(t, method)] for t in own]
        out.append(Aggregate(method=method, tasks=len(own), runs=matrix.shape[0],
                             iqm=Interval(float(iqm), float(iqm_low), float(iqm_high)),
                             mean=Interval(float(mean), float(mean_low), float(mean_high)), left_out=left_out,
                             diverged=sum(c.stats.diverged for c in used),
                             tuned_cells=sum(c.n_settings > 1 for c in used)))
    return out, shared


def improvements(cells: CellMap, tasks: Sequence[Task], pairs: Sequence[tuple[str, str]], *,
                 reps: int = DEFAULT_REPS, seed: int = DEFAULT_SEED) -> list[Improvement]:
    """P(X > Y) with its 95% CI for each pair, over the tasks both have (rliable.metrics)."""
    from rliable import metrics

    out = []
    for x, y in pairs:
        both = common_tasks(cells, tasks, (x, y))
        if not both:
            continue
        scores_x, _ = score_matrix(cells, both, x)
        scores_y, _ = score_matrix(cells, both, y)
        key = f"{x},{y}"
        point, interval = _estimates({key: [scores_x, scores_y]}, metrics.probability_of_improvement, reps, seed)
        low, high = np.ravel(interval[key])
        out.append(Improvement(x, y, len(both), scores_x.shape[0], scores_y.shape[0],
                               Interval(float(point[key]), float(low), float(high))))
    return out


def profile(cells: CellMap, tasks: Sequence[Task], methods: Sequence[str], *, reps: int = DEFAULT_REPS,
            seed: int = DEFAULT_SEED, taus: Optional[np.ndarray] = None) -> Optional[Profile]:
    """Score distributions (rliable.library.score_distributions) over the tasks all methods have."""
    from rliable import library as rly

    present = [m for m in methods if any((t, m) in cells for t in tasks)]
    shared = common_tasks(cells, tasks, present)
    if not present or not shared:
        return None
    matrices = {method: score_matrix(cells, shared, method)[0] for method in present}
    if taus is None:
        every = np.concatenate([m.ravel() for m in matrices.values()])
        every = every[np.isfinite(every)]
        # From 0 (or the lowest score) to just past the highest: the profile is flat outside.
        low = min(0.0, float(every.min())) if every.size else 0.0
        high = float(every.max()) if every.size else 100.0
        high += 0.05 * (high - low) or 1.0
        taus = np.linspace(low, high, PROFILE_POINTS)
    point, interval = _estimates(matrices, lambda scores: rly.score_distributions(scores, taus), reps, seed)
    curves = {m: Interval(point[m], interval[m][0], interval[m][1]) for m in present}   # type: ignore[arg-type]
    return Profile(taus=taus, curves=curves, runs={m: int(matrices[m].size) for m in present})


def mean_interval(values: Sequence[float], *, reps: int = DEFAULT_REPS,
                  seed: int = DEFAULT_SEED) -> Optional[tuple[float, float]]:
    """95% bootstrap CI of the mean of one cell's per-seed scores; None with fewer than 3 seeds."""
    from rliable import metrics

    if len(values) < MIN_CI_RUNS:
        return None
    _, interval = _estimates({"cell": np.asarray(values, dtype=float)[:, None]},
                             lambda s: np.array([metrics.aggregate_mean(s)]), reps, seed)
    low, high = interval["cell"][:, 0]
    return float(low), float(high)
