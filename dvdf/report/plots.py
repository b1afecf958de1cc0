"""The report's figures (PNG), drawn with matplotlib's object API on the Agg canvas.

No pyplot: figures are plain :class:`matplotlib.figure.Figure` objects, so nothing depends on the
user's backend or a display, and no global figure state leaks between figures. Every figure has
a title, axis labels with units, a legend or a colour bar with its label.

Seed aggregation (:func:`seed_curve`): at every evaluation step, the mean and sample standard
deviation over the seeds that reached that step (a partial run contributes to the steps it has).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import EngFormatter

from dvdf.atomic import atomic_path
from dvdf.methods import PAPER_KEEP_RATIO, PAPER_TRADEOFF
from dvdf.report.load import SCORE, STEP, Run, Task
from dvdf.report.reliable import CONFIDENCE, MIN_CI_RUNS, Aggregate, Profile
from dvdf.report.sensitivity import PARAM_LABELS, SensitivityStudy
from dvdf.report.stats import Cell, Setting

SCORE_LABEL = "normalized score (D4RL, 0-100)"
STEPS_LABEL = "gradient steps"
CMAP = "viridis"
DPI = 110
# Filter diagnostics panels: (title, y label, [(metric key or key prefix, legend label)]).
# A key ending in "/" is a prefix: one line per provenance label found after it.
DIAGNOSTIC_PANELS = (
    ("Share of kept source samples by behaviour policy", "share of kept samples (0-1)",
     [("filter/kept_share/", None)]),
    ("Keep rate by behaviour policy", "kept / seen samples of that policy (0-1)",
     [("filter/keep_rate/", None)]),
    ("Mean weight of kept source samples", "mean weight w (exp(h) by default)",
     [("source_weight_mean", "kept source samples")]),
    ("Dynamics score h: kept vs dropped", "mean dynamics score h",
     [("filter/kept_dyn_score", "kept"), ("filter/dropped_dyn_score", "dropped")]),
    ("Source advantage A: kept vs dropped", "mean advantage A(s,a)",
     [("filter/kept_advantage", "kept"), ("filter/dropped_advantage", "dropped")]),
    ("Selection score g: kept vs whole batch", "mean selection score",
     [("kept_score_mean", "kept"), ("batch_score_mean", "whole source batch")]),
)


@dataclass(frozen=True)
class Curve:
    steps: np.ndarray      # (T,) evaluation steps
    mean: np.ndarray       # (T,)
    std: np.ndarray        # (T,) sample std; NaN where fewer than two seeds reached the step
    count: np.ndarray      # (T,) seeds contributing


def seed_curve(runs: Sequence[Run], key: str = SCORE) -> Optional[Curve]:
    """Mean and spread of ``key`` over seeds at each evaluation step; None if no run has it."""
    by_step: dict[int, list[float]] = {}
    for run in runs:
        for row in run.evals:
            value = row.get(key)
            if isinstance(value, (int, float)):
                by_step.setdefault(int(row[STEP]), []).append(float(value))
    if not by_step:
        return None
    steps = np.array(sorted(by_step))
    groups = [np.array(by_step[s]) for s in steps]
    mean = np.array([g.mean() for g in groups])
    std = np.array([g.std(ddof=1) if g.size > 1 else np.nan for g in groups])
    return Curve(steps, mean, std, np.array([g.size for g in groups]))


def save_figure(fig: Figure, path: Path) -> Path:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return path


def method_colors(methods: Sequence[str]) -> dict[str, tuple]:
    from matplotlib import colormaps

    palette = colormaps["tab10"].colors
    return {method: palette[i % len(palette)] for i, method in enumerate(methods)}


def _plot_curve(ax, curve: Curve, label: str, color) -> None:
    # Markers only while they do not clutter: they show where the evaluations were.
    marker = "o" if len(curve.steps) < 15 else None
    ax.plot(curve.steps, curve.mean, color=color, label=label, linewidth=1.8, marker=marker, markersize=3)
    spread = ~np.isnan(curve.std)
    if spread.any():
        low = np.where(spread, curve.mean - curve.std, curve.mean)
        high = np.where(spread, curve.mean + curve.std, curve.mean)
        ax.fill_between(curve.steps, low, high, color=color, alpha=0.2, linewidth=0)


def _steps_axis(ax) -> None:
    ax.set_xlabel(STEPS_LABEL)
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    ax.grid(True, alpha=0.3)


# ------------------------------------------------------------------------------------ figures
def learning_curves(task: Task, entries: Sequence[tuple[str, Cell]], colors: dict[str, tuple],
                    path: Path) -> Path:
    """Normalized score vs gradient steps, one line per method, shaded +-1 std over seeds."""
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.add_subplot()
    for method, cell in entries:
        setting = cell.setting
        curve = seed_curve(setting.scored_runs)
        if curve is None:
            continue
        n = len(setting.scored_runs)
        detail = [setting.label] if setting.label != "-" else []
        if cell.n_settings > 1:
            detail[-1] += f": best of {cell.n_settings}"
        detail.append(f"{n} seed{'s' if n != 1 else ''}")
        if setting.partial:
            detail.append("partial")
        _plot_curve(ax, curve, f"{method} ({', '.join(detail)})", colors[method])
    _steps_axis(ax)
    ax.set_ylabel(SCORE_LABEL)
    ax.set_title(f"{task.name}: learning curves\n(line: mean over seeds, shaded: ±1 std)")
    ax.legend(loc="best", fontsize="small")
    return save_figure(fig, path)


def has_filter_diagnostics(runs: Sequence[Run]) -> bool:
    keys = set().union(*(run.metric_keys() for run in runs)) if runs else set()
    return any(key.startswith("filter/") for key in keys)


def filter_diagnostics(task: Task, method: str, setting: Setting, path: Path) -> Optional[Path]:
    """What the filter kept over training (panels for the metrics that were recorded)."""
    runs = setting.scored_runs
    keys = set().union(*(run.metric_keys() for run in runs)) if runs else set()
    panels = []
    for title, ylabel, series in DIAGNOSTIC_PANELS:
        lines = []
        for key, label in series:
            if key.endswith("/"):
                lines += [(k, k[len(key):]) for k in sorted(keys) if k.startswith(key)]
            elif key in keys:
                lines.append((key, label))
        if lines:
            panels.append((title, ylabel, lines))
    if not panels:
        return None
    cols = 2 if len(panels) > 1 else 1
    rows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(6.2 * cols, 3.6 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    from matplotlib import colormaps

    palette = colormaps["tab10"].colors
    for ax, (title, ylabel, lines) in zip(axes.flat, panels):
        for i, (key, label) in enumerate(lines):
            curve = seed_curve(runs, key)
            if curve is not None:
                _plot_curve(ax, curve, label, palette[i % len(palette)])
        ax.set_title(title, fontsize="medium")
        ax.set_ylabel(ylabel)
        _steps_axis(ax)
        ax.legend(loc="best", fontsize="small")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    n = len(runs)
    fig.suptitle(f"{task.name} / {method} ({setting.label}): filter diagnostics\n"
                 f"mean over {n} seed{'s' if n != 1 else ''} (shaded: ±1 std); averaged over the gradient "
                 "steps since the previous evaluation")
    return save_figure(fig, path)


def _title(study: SensitivityStudy, what: str) -> str:
    return f"{study.task.name} / {study.method}\n{what}"


def sensitivity_heatmap(study: SensitivityStudy, path: Path, score: str) -> Path:
    """Mean ``score`` per (lambda, xi) grid cell, annotated with the mean, the seed count n and the
    width of the 95% bootstrap CI of the mean (from 3 seeds on)."""
    lambdas, xis, grid = study.grid()
    values = np.array([[p.stats.mean if p is not None else np.nan for p in row] for row in grid])
    fig = Figure(figsize=(max(6.5, 1.1 * len(lambdas) + 3), max(4.0, 0.75 * len(xis) + 2.4)),
                 layout="constrained")
    ax = fig.add_subplot()
    masked = np.ma.masked_invalid(values)
    from matplotlib import colormaps

    cmap = colormaps[CMAP].with_extremes(bad="lightgrey")
    image = ax.imshow(masked, cmap=cmap, origin="lower", aspect="auto")
    bar = fig.colorbar(image, ax=ax)
    bar.set_label(f"mean {score} score\n{SCORE_LABEL}")
    finite = values[np.isfinite(values)]
    middle = (finite.min() + finite.max()) / 2 if finite.size else 0.0
    best = study.best
    for r, row in enumerate(grid):
        for c, point in enumerate(row):
            if point is None:
                ax.text(c, r, "no data", ha="center", va="center", fontsize="small", color="dimgrey")
                continue
            width = f"CI width {point.ci[1] - point.ci[0]:.1f}" if point.ci is not None else f"no CI (n<{MIN_CI_RUNS})"
            extra = (", partial" if point.stats.partial else "") + (
                f", {point.stats.diverged} diverged" if point.stats.diverged else "")
            text = f"{point.stats.mean:.1f}\nn={point.stats.n}{extra}\n{width}"
            ax.text(c, r, text, ha="center", va="center", fontsize="small",
                    color="black" if point.stats.mean > middle else "white")
            if point is best:
                ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2.5))
    ax.set_xticks(range(len(lambdas)), [_tick(v) for v in lambdas])
    ax.set_yticks(range(len(xis)), [_tick(v) for v in xis])
    ax.set_xlabel(PARAM_LABELS["tradeoff"] if lambdas != [None] else "lambda (not used by this method)")
    ax.set_ylabel(PARAM_LABELS["keep_ratio"] if xis != [None] else "xi (not used by this method)")
    ax.set_title(_title(study, f"mean {score} score over seeds (red frame: best)\n"
                               f"n = seeds; CI width = width of the {CONFIDENCE:.0%} bootstrap CI of the mean"),
                 fontsize="medium")
    return save_figure(fig, path)


def sensitivity_lines(study: SensitivityStudy, path: Path, score: str) -> Path:
    """``score`` over lambda (or xi if lambda is fixed), one line per value of the other, shaded with
    the 95% bootstrap CI of the mean where a point has 3 or more seeds."""
    x_param = "tradeoff" if "tradeoff" in study.varied else "keep_ratio"
    other = "keep_ratio" if x_param == "tradeoff" else "tradeoff"
    fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = fig.add_subplot()
    from matplotlib import colormaps

    others = study.values(other) or [None]
    cmap = colormaps["plasma"]
    for i, value in enumerate(others):
        points = sorted((p for p in study.points if p.value(other) == value and p.value(x_param) is not None),
                        key=lambda p: p.value(x_param))
        if not points:
            continue
        x = np.array([p.value(x_param) for p in points])
        mean = np.array([p.stats.mean for p in points])
        low = np.array([p.ci[0] if p.ci is not None else np.nan for p in points])
        high = np.array([p.ci[1] if p.ci is not None else np.nan for p in points])
        color = cmap(0.85 * i / max(len(others) - 1, 1))
        label = (f"{_tick(value)}" if value is not None else "mean over seeds") + \
            f" (n={'/'.join(sorted({str(p.stats.n) for p in points}))})"
        ax.plot(x, mean, marker="o", color=color, label=label)
        has = ~np.isnan(low)
        if has.any():
            ax.errorbar(x[has], mean[has], yerr=[mean[has] - low[has], high[has] - mean[has]], fmt="none",
                        ecolor=color, capsize=4, alpha=0.8)
            ax.fill_between(x, np.where(has, low, mean), np.where(has, high, mean), color=color,
                            alpha=0.15, linewidth=0)
    ax.set_xlabel(PARAM_LABELS[x_param])
    ax.set_ylabel(f"{score} {SCORE_LABEL}")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small", title=PARAM_LABELS[other] if others != [None] else None,
              title_fontsize="small")
    ax.set_title(_title(study, f"{score} score over {PARAM_LABELS[x_param].split(' ')[0]}, one line per "
                               f"{PARAM_LABELS[other].split(' ')[0]}\n(line: mean over seeds; bars and shade: "
                               f"{CONFIDENCE:.0%} bootstrap CI of the mean, n >= {MIN_CI_RUNS})"), fontsize="medium")
    return save_figure(fig, path)


def sampled_points(study: SensitivityStudy, path: Path, ranges: dict[str, tuple[float, float]], score: str) -> Path:
    """Optuna's sampled points coloured by their mean score (best starred, unfinished squares)."""
    from matplotlib.colors import Normalize

    fig = Figure(figsize=(7.5, 5.8), layout="constrained")
    ax = fig.add_subplot()
    scores = np.array([p.stats.mean for p in study.points])
    finite = scores[np.isfinite(scores)]
    norm = Normalize(vmin=finite.min(), vmax=finite.max()) if finite.size else Normalize(0, 100)
    partial = np.array([p.stats.partial for p in study.points])
    best = study.best
    two_d = len(study.varied) == 2
    x_param = "tradeoff" if two_d or not study.varied else study.varied[0]
    x = np.array([p.value(x_param) for p in study.points], dtype=float)
    y = np.array([p.keep_ratio for p in study.points], dtype=float) if two_d else scores
    if not two_d:
        err = np.array([p.stats.std if p.stats.std is not None else 0.0 for p in study.points])
        ax.errorbar(x, y, yerr=err, fmt="none", ecolor="grey", alpha=0.6)
    mappable = None
    for mask, marker, label in ((~partial, "o", "finished"), (partial, "s", "not finished (score so far)")):
        if mask.any():
            mappable = ax.scatter(x[mask], y[mask], c=scores[mask], cmap=CMAP, norm=norm, s=70, marker=marker,
                                  edgecolors="black", linewidths=0.6, zorder=3, label=label)
    bar = fig.colorbar(mappable, ax=ax)
    bar.set_label(f"mean {score} score\n{SCORE_LABEL}")
    point_label = ", ".join(f"{'lambda' if p == 'tradeoff' else 'xi'}={best.value(p):.3g}"
                            for p in study.varied)
    best_label = f"best: {best.stats.mean:.1f} ({point_label})"
    best_y = best.keep_ratio if two_d else best.stats.mean
    ax.scatter([best.value(x_param)], [best_y], marker="*", s=420, facecolors="none", edgecolors="red",
               linewidths=1.8, zorder=4, label=best_label)
    ax.set_xlabel(PARAM_LABELS[x_param])
    if two_d:
        ax.set_ylabel(PARAM_LABELS["keep_ratio"])
        for param, setter in (("tradeoff", ax.set_xlim), ("keep_ratio", ax.set_ylim)):
            if param in ranges:
                low, high = ranges[param]
                pad = 0.04 * (high - low or 1.0)
                setter(low - pad, high + pad)
    else:
        ax.set_ylabel(f"{score} {SCORE_LABEL}\n(bars: ±1 std over seeds)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncols=3, fontsize="small", frameon=False)
    ax.set_title(_title(study, f"{len(study.points)} sampled points (colour: mean {score} score over seeds)"))
    return save_figure(fig, path)


def importance_bars(study: SensitivityStudy, path: Path, score: str) -> Path:
    items = sorted(study.importances.items(), key=lambda kv: kv[1])
    fig = Figure(figsize=(6.5, 1.2 + 0.6 * len(items)), layout="constrained")
    ax = fig.add_subplot()
    bars = ax.barh([PARAM_LABELS.get(k, k) for k, _ in items], [v for _, v in items], color="tab:blue")
    ax.bar_label(bars, fmt="%.2f", padding=3)
    ax.set_xlim(0, 1.1)
    ax.set_xlabel(f"importance for the {score} score (normalised, sums to 1)")
    ax.set_title(_title(study, "parameter importance\n" + study.importance_note), fontsize="small")
    return save_figure(fig, path)


def _tick(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:g}"


# ------------------------------------------------------------------------- aggregate statistics
def performance_profile(profile: Profile, colors: dict[str, tuple], score: str, path: Path) -> Path:
    """Fraction of runs (all tasks x seeds) with a score above tau, per method, with 95% bands."""
    fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = fig.add_subplot()
    for method, curve in profile.curves.items():
        ax.plot(profile.taus, curve.point, color=colors[method], linewidth=1.8,
                label=f"{method} ({profile.runs[method]} runs)")
        ax.fill_between(profile.taus, curve.low, curve.high, color=colors[method], alpha=0.2, linewidth=0)
    ax.set_xlabel(f"tau: {score} {SCORE_LABEL}")
    ax.set_ylabel("fraction of runs with score > tau")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    ax.set_title(f"Performance profile ({score} score, tasks every method has)\n"
                 f"shaded: {CONFIDENCE:.0%} stratified-bootstrap band (rliable)")
    return save_figure(fig, path)


def aggregate_intervals(aggregates: Sequence[Aggregate], colors: dict[str, tuple], score: str, path: Path) -> Path:
    """IQM and mean per method as points with their 95% CIs (one panel each)."""
    fig = Figure(figsize=(9, 1.6 + 0.45 * len(aggregates)), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    names = [a.method for a in aggregates]
    y = np.arange(len(aggregates))[::-1]
    for ax, (title, pick) in zip(axes, (("IQM", lambda a: a.iqm), ("mean", lambda a: a.mean))):
        for yi, a in zip(y, aggregates):
            interval = pick(a)
            error = [[interval.point - interval.low], [interval.high - interval.point]]
            ax.errorbar([interval.point], [yi], xerr=error, fmt="o", color=colors[a.method], capsize=5, linewidth=2)
        ax.set_title(f"{title} [{CONFIDENCE:.0%} CI]")
        ax.set_xlabel(f"{score} {SCORE_LABEL}")
        ax.grid(True, axis="x", alpha=0.3)
    labels = [f"{n} ({a.tasks} tasks x {a.runs} runs" + (f", {a.tuned_cells} tuned" if a.tuned_cells else "") + ")"
              for n, a in zip(names, aggregates)]
    axes[0].set_yticks(y, labels)
    fig.suptitle(f"Aggregate over tasks and seeds ({score} score; stratified bootstrap, rliable)")
    return save_figure(fig, path)


def tuning_budget(study, score: str, path: Path) -> Path:
    """Best score found vs number of trials (settings tried, in order), with the default's score."""
    fig = Figure(figsize=(7.5, 4.6), layout="constrained")
    ax = fig.add_subplot()
    trials = np.arange(1, len(study.scores) + 1)
    scores = np.array([score_ for _, score_ in study.scores])
    ax.plot(trials, scores, "o", color="tab:grey", alpha=0.7, label="each trial's mean over seeds")
    ax.step(trials, study.best_so_far, where="post", color="tab:blue", linewidth=2, label="best found so far")
    if study.default is not None:
        ax.axhline(study.default, color="tab:red", linestyle="--",
                   label=f"paper default (lambda={PAPER_TRADEOFF:g}, xi={PAPER_KEEP_RATIO:g}): {study.default:.1f}")
    ax.set_xlabel(f"number of trials (settings tried, in order; each {study.seeds} seeds x {study.steps:,} steps)")
    ax.set_ylabel(f"{score} {SCORE_LABEL}")
    ax.set_xticks(trials)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    ax.set_title(f"{study.task.name} / {study.method}: tuning budget\n"
                 "did the search beat the default? (tuning on the target env is online tuning)")
    return save_figure(fig, path)


def behaviour_curves(curves: dict[str, list[dict]], medium_steps: dict[str, int], path: Path,
                     expert_steps: Optional[dict[str, int]] = None) -> Path:
    """SAC behaviour-policy learning curves, one panel per domain: episode return of the
    deterministic and the stochastic policy at every snapshot, the medium and expert snapshots marked."""
    fig = Figure(figsize=(5 * max(len(curves), 1), 4), layout="constrained")
    axes = fig.subplots(1, max(len(curves), 1), squeeze=False)[0]
    for ax, (domain, rows) in zip(axes, curves.items()):
        steps = np.array([row["step"] for row in rows])
        for key, label in (("return_deterministic", "deterministic (mean action)"),
                           ("return_stochastic", "stochastic (sampled action)")):
            ax.plot(steps, [row[key] for row in rows], label=label, linewidth=1.5)
        if domain in medium_steps:
            ax.axvline(medium_steps[domain], color="grey", linestyle="--", linewidth=1,
                       label=f"medium snapshot ({medium_steps[domain]:,} steps)")
        if expert_steps and domain in expert_steps:
            ax.axvline(expert_steps[domain], color="black", linestyle=":", linewidth=1,
                       label=f"expert snapshot ({expert_steps[domain]:,} steps)")
        ax.set_xlabel("SAC updates")
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.grid(True, alpha=0.3)
        ax.set_ylabel("episode return")
        ax.set_title(f"{domain}: behaviour policy (SAC)")
        ax.legend(loc="best", fontsize="small")
    return save_figure(fig, path)
