"""Sensitivity of the score to lambda (``filter.tradeoff``) and xi (``filter.keep_ratio``).

For every (task, method) with results at two or more (lambda, xi) settings:

* a **grid** design (every combination of the lambda values and xi values that were run - or the
  sweep said ``search.mode: grid``) is summarised as a lambda x xi matrix of seed means;
* a **sampled** design (Optuna) as the list of points, plus the parameter importances Optuna
  computes (PED-ANOVA, its default evaluator) on a study rebuilt from the points.

The score is the headline one, the mean of the last k evaluations (see dvdf.report.stats); each
point with 3 or more seeds carries the 95% bootstrap CI of its mean (dvdf.report.reliable).
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Optional

from dvdf.report import reliable
from dvdf.report.load import Task
from dvdf.report.stats import DEFAULT_LAST_K, HEADLINE, SeedStats, Setting

GRID, SAMPLED = "grid", "sampled"
PARAMS = ("tradeoff", "keep_ratio")
PARAM_LABELS = {"tradeoff": "lambda (tradeoff)", "keep_ratio": "xi (keep ratio)"}
# PED-ANOVA compares the parameter distribution of the top trials with the whole; Optuna's default
# top quantile (10%) holds a single trial in a small study and the importances are then noise
# (checked on synthetic scores where one parameter decides). Widen it to hold this many trials.
MIN_TOP_TRIALS = 5
MIN_IMPORTANCE_TRIALS = 6


@dataclass(frozen=True)
class Point:
    tradeoff: Optional[float]
    keep_ratio: Optional[float]
    stats: SeedStats
    ci: Optional[tuple[float, float]] = None   # 95% bootstrap CI of the mean over seeds (n >= 3)

    def value(self, param: str) -> Optional[float]:
        return self.tradeoff if param == "tradeoff" else self.keep_ratio


@dataclass
class SensitivityStudy:
    task: Task
    method: str
    design: str                          # GRID or SAMPLED
    points: list[Point]
    varied: tuple[str, ...]              # parameters with more than one value
    importances: dict[str, float] = field(default_factory=dict)
    importance_note: str = ""

    def values(self, param: str) -> list[float]:
        return sorted({p.value(param) for p in self.points if p.value(param) is not None})

    def grid(self) -> tuple[list[float], list[float], list[list[Optional[Point]]]]:
        """(lambdas, xis, rows[xi][lambda]); a cell is None where that combination has no results.

        A parameter the method does not use contributes a single None value, so a method that
        varies only xi gives one column.
        """
        lambdas = self.values("tradeoff") or [None]
        xis = self.values("keep_ratio") or [None]
        lookup = {(p.tradeoff, p.keep_ratio): p for p in self.points}
        return lambdas, xis, [[lookup.get((lam, xi)) for lam in lambdas] for xi in xis]

    @property
    def best(self) -> Point:
        return max(self.points, key=lambda p: -math.inf if math.isnan(p.stats.mean) else p.stats.mean)


def sensitivity_studies(settings: list[Setting], design_hint: Optional[str] = None,
                        ranges: Optional[dict[str, tuple[float, float]]] = None, *,
                        last_k: int = DEFAULT_LAST_K, reps: int = reliable.DEFAULT_REPS,
                        seed: int = reliable.DEFAULT_SEED) -> list[SensitivityStudy]:
    """One study per (task, method) with >= 2 scored settings that differ in lambda or xi.

    ``design_hint`` is the sweep's search mode when known ("grid" or "optuna"); ``ranges`` its
    search ranges per parameter (used as Optuna distributions; else the observed range).
    """
    by_key: dict[tuple[Task, str], list[Point]] = defaultdict(list)
    for setting in settings:
        if setting.tradeoff is None and setting.keep_ratio is None:
            continue
        stats = setting.stats(HEADLINE, last_k)
        if stats is not None:
            ci = reliable.mean_interval(stats.values, reps=reps, seed=seed)
            by_key[(setting.task, setting.method)].append(Point(setting.tradeoff, setting.keep_ratio, stats, ci))
    studies = []
    for (task, method), points in sorted(by_key.items(), key=lambda item: (item[0][0], item[0][1])):
        if len(points) < 2:
            continue
        varied = tuple(p for p in PARAMS if len({pt.value(p) for pt in points}) > 1)
        design = _design(points, varied, design_hint)
        study = SensitivityStudy(task, method, design, points, varied)
        if design == SAMPLED:
            study.importances, study.importance_note = param_importances(points, varied, ranges or {})
        studies.append(study)
    return studies


def _design(points: list[Point], varied: tuple[str, ...], hint: Optional[str]) -> str:
    if hint == "grid":
        return GRID
    if hint == "optuna":
        return SAMPLED
    combos = {(p.tradeoff, p.keep_ratio) for p in points}
    size = math.prod(len({p.value(param) for p in points}) for param in PARAMS)
    # A full Cartesian product is a grid; randomly sampled points practically never form one.
    return GRID if len(combos) == size and len(varied) >= 1 else SAMPLED


def param_importances(points: list[Point], varied: tuple[str, ...],
                      ranges: dict[str, tuple[float, float]]) -> tuple[dict[str, float], str]:
    """Optuna's importances of lambda and xi for the headline score, or ({}, why not)."""
    if len(varied) < 2:
        return {}, (f"importances need both lambda and xi varied; only {', '.join(varied) or 'neither'} "
                    "varied here")
    scored = [p for p in points if math.isfinite(p.stats.mean)]
    if len(scored) < MIN_IMPORTANCE_TRIALS:
        return {}, (f"importances need at least {MIN_IMPORTANCE_TRIALS} scored points, "
                    f"this study has {len(scored)}")
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.importance import PedAnovaImportanceEvaluator

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    distributions = {}
    for param in varied:
        observed = [p.value(param) for p in scored]
        low, high = ranges.get(param, (min(observed), max(observed)))
        distributions[param] = FloatDistribution(min(low, min(observed)), max(high, max(observed)))
    study = optuna.create_study(direction="maximize")
    for p in scored:
        study.add_trial(optuna.trial.create_trial(params={param: p.value(param) for param in varied},
                                                  distributions=distributions, value=p.stats.mean))
    quantile = min(0.5, max(0.1, MIN_TOP_TRIALS / len(scored)))
    evaluator = PedAnovaImportanceEvaluator(target_quantile=quantile)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # experimental-feature warnings
            importances = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (ValueError, RuntimeError) as exc:
        return {}, f"Optuna could not compute importances: {exc}"
    note = (f"PED-ANOVA (optuna.importance), top quantile {quantile:.2f} of {len(scored)} points, "
            "normalised to sum to 1")
    return {k: float(v) for k, v in importances.items()}, note
