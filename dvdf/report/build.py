"""``build_report``: experiment directory in, self-contained report folder out.

Layout of the folder (default ``<experiment>/report``)::

    README.md                    index: provenance, links to everything, failed/diverged/pending trials, config
    tables.md                    IQM/mean with CIs, P(improvement), per-task tables of the three scores,
                                 totals per shift type, DVDF vs baseline, all settings
    aggregates.csv improvements.csv scores.csv settings.csv totals.csv comparisons.csv runs.csv
    [importances.csv]
    figures/aggregate/{intervals,profile}.png         IQM/mean CIs, performance profile (rliable)
    figures/tuning/<task>__<method>.png               best score found vs trials, default's score
    figures/learning_curves/<task>.png
    figures/filter/<task>__<method>.png
    figures/sensitivity/<task>__<method>_{heatmap,lines,points,importance}.png
    config/<sweep.yaml | config.yaml>    copy of the configuration the results came from
    manifest.json                the files above (a rerun removes files of its own previous run only)

Every file is written atomically. Rerunning on a growing sweep refreshes the folder in place.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Optional

from dvdf.atomic import atomic_write_text
from dvdf.errors import DvdfError
from dvdf.layout import RUN_CONFIG
from dvdf.report import plots
from dvdf.report.analysis import Analysis, Options, analyse
from dvdf.report.discover import REPORT_MARKERS
from dvdf.report.index import Written, readme
from dvdf.report.load import Experiment, load_experiment
from dvdf.report.sensitivity import GRID, SAMPLED
from dvdf.report.stats import HEADLINE, METRICS, score_label
from dvdf.report.sweep_info import read_sweep_info
from dvdf.report.tables import csv_tables, markdown_tables

MANIFEST = REPORT_MARKERS[0]


def build_report(experiment_dir: str | Path, out_dir: str | Path | None = None, *,
                 progress: bool = False, options: Optional[Options] = None) -> dict[str, Any]:
    """Write the report of ``experiment_dir`` into ``out_dir``; return a summary of what was written
    (with the report's statistics: ``dvdf report --json`` prints it)."""
    options = options if options is not None else Options()
    if options.last_k < 1:
        raise DvdfError(f"--last-k {options.last_k}: must be at least 1")
    if options.reps < 100:
        raise DvdfError(f"--bootstrap-reps {options.reps}: use at least 100 resamples")
    root = Path(experiment_dir)
    out = Path(out_dir) if out_dir is not None else root / "report"
    if out.exists() and not out.is_dir():
        raise DvdfError(f"{out}: exists and is not a directory (--out must name a folder)")
    experiment = load_experiment(root, exclude=out)
    sweep, sweep_note = read_sweep_info(experiment.root)
    analysis = analyse(experiment, sweep, sweep_note, options)
    out.mkdir(parents=True, exist_ok=True)
    previous = _read_manifest(out)

    # How the report names the experiment: its absolute path, or (reproducible) the path from the report.
    where = os.path.relpath(experiment.root, out) if options.reproducible else str(experiment.root)
    written = Written()
    atomic_write_text(out / "tables.md", markdown_tables(analysis, where))
    written.tables.append("tables.md")
    for name, text in csv_tables(analysis).items():
        atomic_write_text(out / name, text)
        written.tables.append(name)
    _write_figures(analysis, out, written, progress)
    config_file, config_text, config_description = _configuration(experiment)
    if config_text is not None:
        written.config_copy = f"config/{config_file}"
        atomic_write_text(out / written.config_copy, config_text)
    atomic_write_text(out / "README.md", readme(analysis, written, config_text, config_description, where))

    files = ["README.md", *written.tables, *written.figures]
    if written.config_copy:
        files.append(written.config_copy)
    _remove_stale(out, previous, set(files))
    atomic_write_text(out / MANIFEST, json.dumps({"files": files}, indent=1) + "\n")
    counts = analysis.status_counts
    return {
        "out": str(out),
        "index": str(out / "README.md"),
        "kind": experiment.kind,
        "tasks": len(analysis.tasks),
        "methods": analysis.methods,
        "runs": {status: n for status, n in counts.items()},
        "trials": len(experiment.trials),
        "failed_trials": [issue.what for issue in analysis.issues if issue.status == "failed"],
        "missing_cells": len(analysis.missing),
        "tables": written.tables,
        "figures": written.figures,
        "notes": len(analysis.notes),
        "statistics": statistics(analysis),
    }


def _interval(interval) -> dict[str, float]:
    return {"point": interval.point, "ci_low": interval.low, "ci_high": interval.high}


def statistics(analysis: Analysis) -> dict[str, Any]:
    """The report's numbers as JSON: the same values tables.md and the CSV files show."""
    k = analysis.last_k
    out: dict[str, Any] = {
        "last_k": k, "headline_score": HEADLINE, "confidence": 0.95, "bootstrap_reps": analysis.options.reps,
        "score_labels": {metric: score_label(metric, k) for metric in METRICS},
        "aggregates": {}, "cells": {},
        "probability_of_improvement": {
            "score": HEADLINE,
            "pairs": [{"x": i.x, "y": i.y, "tasks": i.tasks, "runs_x": i.runs_x, "runs_y": i.runs_y,
                       **_interval(i.probability)} for i in analysis.improvements]},
    }
    if analysis.profile is not None:
        prof = analysis.profile
        out["performance_profile"] = {
            "score": HEADLINE, "taus": prof.taus.tolist(),
            "methods": {m: {"fraction_above": c.point.tolist(), "ci_low": c.low.tolist(), "ci_high": c.high.tolist(),
                            "runs": prof.runs[m]} for m, c in prof.curves.items()}}
    for metric in METRICS:
        out["aggregates"][metric] = {
            "tasks": [t.name for t in analysis.aggregate_tasks.get(metric, [])],
            "methods": [{"method": a.method, "tasks": a.tasks, "runs_per_task": a.runs, "iqm": _interval(a.iqm),
                         "mean": _interval(a.mean), "tuned_cells": a.tuned_cells, "diverged_runs": a.diverged,
                         "runs_left_out": a.left_out} for a in analysis.aggregates.get(metric, [])]}
        out["cells"][metric] = [
            {"task": task.name, "method": method, "mean": cell.stats.mean, "std": cell.stats.std, "n": cell.stats.n,
             "ci": list(cell.ci) if cell.ci else None, "selection": cell.selection,
             "tuning_budget": ({"trials": cell.budget.trials, "seeds": cell.budget.seeds, "steps": cell.budget.steps}
                               if cell.budget else None),
             "tradeoff": cell.setting.tradeoff, "keep_ratio": cell.setting.keep_ratio,
             "partial": cell.stats.partial, "diverged": cell.stats.diverged, "seeds": list(cell.stats.seeds)}
            for (task, method), cell in sorted(analysis.cells[metric].items(), key=lambda kv: (kv[0][0], kv[0][1]))]
    return out


def _write_figures(analysis: Analysis, out: Path, written: Written, progress: bool) -> None:
    jobs = []
    colors = plots.method_colors(analysis.methods)
    headline = score_label(HEADLINE, analysis.last_k)
    aggregates = analysis.aggregates.get(HEADLINE, [])
    if aggregates:
        path = "figures/aggregate/intervals.png"
        jobs.append(lambda a=aggregates, p=path: plots.aggregate_intervals(a, colors, headline, out / p))
        written.aggregate.append(("IQM and mean with 95% CIs", path))
    if analysis.profile is not None:
        path = "figures/aggregate/profile.png"
        jobs.append(lambda p=path: plots.performance_profile(analysis.profile, colors, headline, out / p))
        written.aggregate.append(("performance profile", path))
    for study in analysis.tuning:
        path = f"figures/tuning/{_slug(study.task.name)}__{_slug(study.method)}.png"
        jobs.append(lambda s=study, p=path: plots.tuning_budget(s, headline, out / p))
        written.tuning.append((study.task.name, study.method, path))
    cells = analysis.cells[HEADLINE]
    for task in analysis.tasks:
        entries = [(method, cells[(task, method)]) for method in analysis.methods if (task, method) in cells]
        if entries:
            path = f"figures/learning_curves/{_slug(task.name)}.png"
            jobs.append(lambda t=task, e=entries, p=path: plots.learning_curves(t, e, colors, out / p))
            written.learning_curves.append((task.name, path))
    for (task, method), cell in sorted(cells.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        runs = cell.setting.scored_runs
        # iql-mix keeps everything: kept-vs-dropped statistics of a filter that drops nothing mislead.
        if runs[0].config.filter.dynamics_scorer is None or not plots.has_filter_diagnostics(runs):
            continue
        path = f"figures/filter/{_slug(task.name)}__{_slug(method)}.png"
        setting = cell.setting
        jobs.append(lambda t=task, m=method, s=setting, p=path: plots.filter_diagnostics(t, m, s, out / p))
        written.diagnostics.append((task.name, method, path))
    ranges = analysis.sweep.ranges if analysis.sweep is not None else {}
    for study in analysis.sensitivity:
        stem = f"figures/sensitivity/{_slug(study.task.name)}__{_slug(study.method)}"
        items = []
        if study.design == GRID and len(study.varied) == 2:
            items.append(("heatmap", f"{stem}_heatmap.png",
                          lambda s=study, p=f"{stem}_heatmap.png": plots.sensitivity_heatmap(s, out / p, headline)))
        if study.design == GRID:
            items.append(("lines", f"{stem}_lines.png",
                          lambda s=study, p=f"{stem}_lines.png": plots.sensitivity_lines(s, out / p, headline)))
        elif study.design == SAMPLED:
            items.append(("sampled points", f"{stem}_points.png",
                          lambda s=study, p=f"{stem}_points.png": plots.sampled_points(s, out / p, ranges, headline)))
            if study.importances:
                items.append(("importances", f"{stem}_importance.png",
                              lambda s=study, p=f"{stem}_importance.png": plots.importance_bars(s, out / p,
                                                                                                headline)))
        jobs += [job for _, _, job in items]
        written.sensitivity.append((study.task.name, study.method, [(kind, path) for kind, path, _ in items]))
    bar = None
    if progress and jobs:
        from tqdm import tqdm
        bar = tqdm(total=len(jobs), desc="figures", unit="fig", dynamic_ncols=True)
    try:
        for job in jobs:
            job()
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()


def _configuration(experiment: Experiment) -> tuple[Optional[str], Optional[str], str]:
    """(file name, text, description) of the configuration the results came from."""
    if experiment.sweep_config is not None:
        name = experiment.sweep_config.name
        return name, experiment.sweep_config.read_text(encoding="utf-8"), f"the sweep definition `{name}`"
    if experiment.runs:
        run = experiment.runs[0]
        text = (run.path / RUN_CONFIG).read_text(encoding="utf-8")
        if experiment.kind == "train":
            return RUN_CONFIG, text, f"the resolved run configuration `{RUN_CONFIG}`"
        where = run.path.relative_to(experiment.root) if run.path != experiment.root else run.path.name
        return RUN_CONFIG, text, (f"the resolved `{RUN_CONFIG}` of `{where}`, one of the runs (no sweep "
                                  "definition found; the runs differ in task, method, lambda, xi or seed)")
    return None, None, "no configuration file found"


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _slug(text: str) -> str:
    """A file-name-safe form; long names (method variants) keep a hash so they stay unique."""
    slug = _UNSAFE.sub("_", text).strip("_") or "x"
    if len(slug) > 80:
        slug = f"{slug[:60]}_{hashlib.sha1(text.encode()).hexdigest()[:8]}"
    return slug


def _read_manifest(out: Path) -> list[str]:
    try:
        data = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    files = data.get("files") if isinstance(data, dict) else None
    return [f for f in files if isinstance(f, str)] if isinstance(files, list) else []


def _remove_stale(out: Path, previous: list[str], current: set[str]) -> None:
    """Delete files a previous report wrote that this one did not (never anything else)."""
    base = out.resolve()
    for name in previous:
        if name in current:
            continue
        path = (out / name).resolve()
        if base in path.parents and path.is_file():
            path.unlink()
