"""Render the analysis as Markdown (``tables.md``) and CSV files (the same numbers, unrounded).

The tables open with the aggregates over tasks and seeds (IQM and mean with 95%
stratified-bootstrap CIs, probability of improvement; dvdf.report.reliable), then the per-task
tables of each score kind - the headline last-k score first, then final and best-of-run, each
labelled (dvdf.report.stats.score_label). A per-task cell shows mean ± sample std over seeds with
one decimal, as the paper does, then ``(n=K; CI lo-hi)`` (the 95% bootstrap CI of the mean, from
3 seeds on) and ``fixed`` or ``tuned``. Markers: ``*`` partial (a seed is running, was stopped
early, failed or diverged), ``†`` tuned: the best of several (lambda, xi) settings chosen on this
score (its tuning budget is listed under the table), ``‡`` some seeds diverged (left out of the
numbers, counted in the cell), ``-`` no results (the reason is listed under the table). The best
mean of a row is bold.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from typing import Iterable, Optional

from dvdf.layout import DIVERGED, FINISHED
from dvdf.report.analysis import Analysis
from dvdf.report.load import Task, display_path
from dvdf.report.reliable import CONFIDENCE, MIN_CI_RUNS, Interval
from dvdf.report.stats import BEST, FINAL, HEADLINE, LAST_K, METRICS, Cell, SeedStats, Setting, score_label, score_title

PARTIAL_MARK, SELECTED_MARK, DIVERGED_MARK = "*", "†", "‡"
CSV_FILES = ("aggregates.csv", "improvements.csv", "scores.csv", "settings.csv", "totals.csv", "comparisons.csv",
             "runs.csv")
IMPORTANCES_CSV = "importances.csv"


def section_title(metric: str, last_k: int) -> str:
    title = score_title(metric, last_k)
    return title[0].upper() + title[1:] + (" - the headline score" if metric == HEADLINE else "")


def usual_seed_count(analysis: Analysis) -> int:
    """Seeds per cell the table expects: the sweep's seed list, else the most common count."""
    if analysis.sweep is not None:
        return len(analysis.sweep.seeds)
    counts = Counter(cell.stats.n for cell in analysis.cells[FINAL].values())
    return counts.most_common(1)[0][0] if counts else 1


def format_stats(stats: SeedStats, digits: int = 1) -> str:
    if stats.std is None:
        return f"{stats.mean:.{digits}f}"
    return f"{stats.mean:.{digits}f} ± {stats.std:.{digits}f}"


def format_interval(interval: Interval, digits: int = 1) -> str:
    return f"{interval.point:.{digits}f} [{interval.low:.{digits}f}, {interval.high:.{digits}f}]"


def format_cell(cell: Cell, usual_n: int) -> str:
    """``mean ± std`` + markers + ``(n=K; CI lo-hi; d diverged)`` + ``fixed`` / ``tuned``."""
    text = format_stats(cell.stats)
    if cell.stats.partial:
        text += PARTIAL_MARK
    if cell.n_settings > 1:
        text += SELECTED_MARK
    if cell.stats.diverged:
        text += DIVERGED_MARK
    details = [f"n={cell.stats.n}"]
    if cell.ci is not None:
        details.append(f"CI {cell.ci[0]:.1f}-{cell.ci[1]:.1f}")
    if cell.stats.diverged:
        details.append(f"{cell.stats.diverged} diverged")
    return f"{text} ({'; '.join(details)}) {cell.selection}"


# ------------------------------------------------------------------------------------ Markdown
def markdown_tables(analysis: Analysis, where: str) -> str:
    """tables.md; ``where`` names the experiment folder (see ``Options.reproducible``)."""
    usual_n = usual_seed_count(analysis)
    k = analysis.last_k
    lines = [
        "# Results tables",
        "",
        f"Experiment: `{where}`.",
        "",
        "Scores are D4RL normalized scores (0-100 scale: 100 * (R - R_min) / (R_max - R_min)). Every run has "
        f"three scores, labelled wherever they appear: **{score_label(LAST_K, k)}** (mean of the last {k} "
        f"evaluations; the headline score), **{score_label(FINAL, k)}** (the last evaluation) and "
        f"**{score_label(BEST, k)}** (the maximum over the evaluations, chosen after seeing them).",
        "",
        "Per-task cells: mean ± sample standard deviation (n - 1) over seeds, then (n = seeds; CI = the 95% "
        f"bootstrap confidence interval of the mean, from {MIN_CI_RUNS} seeds on), then `fixed` (the only "
        "setting run for that task and method: chosen before the results) or `tuned` (the best of several "
        "settings, chosen on the reported score - optimistic; its tuning budget is listed under the table). "
        f"Each cell has {usual_n} seed(s) as planned unless its n says otherwise.",
        f"Markers: `{PARTIAL_MARK}` partial (a seed has not finished: running, stopped early by the scheduler, "
        f"failed or diverged), `{SELECTED_MARK}` tuned (all settings are in the last section and "
        f"`settings.csv`), `{DIVERGED_MARK}` some seeds diverged (stopped on a non-finite value: they have no "
        "finished score and are left out of the numbers, counted in the cell), `-` no results (reason under "
        "the table). Bold: best mean of the row.",
        "",
    ]
    lines += _aggregate_section(analysis)
    lines += _improvement_section(analysis)
    for metric in METRICS:
        lines += [f"## {section_title(metric, k)}", ""]
        lines += _per_task_section(analysis, metric, usual_n)
        lines += _totals_section(analysis, metric)
        lines += _comparison_section(analysis, metric)
    lines += _settings_section(analysis)
    return "\n".join(lines).rstrip() + "\n"


def _aggregate_section(analysis: Analysis) -> list[str]:
    k = analysis.last_k
    reps = analysis.options.reps
    lines = [f"## Aggregate over tasks and seeds: IQM and mean with {CONFIDENCE:.0%} CIs (rliable)", "",
             "IQM = interquartile mean (mean of the middle 50% of all run scores); CIs are "
             f"{CONFIDENCE:.0%} stratified-bootstrap intervals ({reps} resamples of the seeds within each task), "
             "computed by the `rliable` package. Shown as point [low, high]. With few seeds (3-5) a percentile "
             "bootstrap interval tends to be too narrow: read it as a lower bound on the uncertainty.", ""]
    for metric in METRICS:
        aggregates = analysis.aggregates.get(metric, [])
        if not aggregates:
            continue
        tasks = analysis.aggregate_tasks.get(metric, [])
        scope = (f"over the {len(tasks)} task(s) every method has" if tasks else
                 "each method over its own tasks (no task has results of every method: not comparable)")
        lines += [f"### {score_label(metric, k)} score, {scope}", ""]
        rows = []
        for a in aggregates:
            notes = []
            if a.tuned_cells:
                notes.append(f"{a.tuned_cells} tuned cell(s)")
            if a.diverged:
                notes.append(f"{a.diverged} diverged run(s) left out")
            if a.left_out:
                notes.append(f"{a.left_out} run(s) left out to align seeds")
            rows.append([a.method, str(a.tasks), str(a.runs), format_interval(a.iqm), format_interval(a.mean),
                         "; ".join(notes) or "-"])
        lines += _md_table(["method", "tasks", "runs per task", f"IQM [{CONFIDENCE:.0%} CI]",
                            f"mean [{CONFIDENCE:.0%} CI]", "notes"], rows, align_right_from=1)
    return lines


def _improvement_section(analysis: Analysis) -> list[str]:
    k = analysis.last_k
    lines = [f"## Probability of improvement P(X > Y), {score_label(HEADLINE, k)} score (rliable)", ""]
    if not analysis.improvements:
        named = ", ".join(f"{x} vs {y}" for x, y in analysis.pairs) or "none"
        return lines + ["No pair to compare on a common task (pairs: each DVDF variant with its baseline from "
                        f"dvdf.methods, and those named with --pair; with results: {named}).", ""]
    lines += ["For a task drawn at random, the probability that a run of X scores higher than a run of Y "
              "(Mann-Whitney U / (n_X n_Y), averaged over the tasks both have; ties count one half), with its "
              f"{CONFIDENCE:.0%} stratified-bootstrap CI. 0.5 = no difference; a CI that excludes 0.5 is a "
              "difference the seeds support.", ""]
    rows = [[f"{i.x} > {i.y}", str(i.tasks), f"{i.runs_x} / {i.runs_y}", format_interval(i.probability, 2)]
            for i in analysis.improvements]
    lines += _md_table(["X > Y", "tasks", "runs per task (X / Y)", f"P(X > Y) [{CONFIDENCE:.0%} CI]"], rows)
    return lines


def _md_table(header: list[str], rows: list[list[str]], align_right_from: int = 1) -> list[str]:
    sep = ["---" if i < align_right_from else "---:" for i in range(len(header))]
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return out + [""]


def _per_task_section(analysis: Analysis, metric: str, usual_n: int) -> list[str]:
    cells = analysis.cells[metric]
    lines = []
    for shift_type in sorted({task.shift_type for task in analysis.tasks}):
        tasks = [task for task in analysis.tasks if task.shift_type == shift_type]
        lines += [f"### Per task, {shift_type} shift", ""]
        rows = []
        for task in tasks:
            present = [cells[(task, m)].stats.mean for m in analysis.methods if (task, m) in cells]
            finite = [v for v in present if math.isfinite(v)]
            top = max(finite) if len(finite) > 1 else None
            row = [task.name]
            for method in analysis.methods:
                cell = cells.get((task, method))
                if cell is None:
                    row.append("-")
                    continue
                text = format_cell(cell, usual_n)
                row.append(f"**{text}**" if top is not None and cell.stats.mean == top else text)
            rows.append(row)
        lines += _md_table(["task"] + analysis.methods, rows)
        missing = [(task, method, why) for (task, method), why in analysis.missing.items()
                   if task.shift_type == shift_type]
        if missing:
            lines += ["Missing cells:", ""]
            lines += [f"- {task.name} / {method}: {why}" for task, method, why in missing]
            lines.append("")
        chosen = [(key, cell) for key, cell in cells.items()
                  if key[0].shift_type == shift_type and cell.n_settings > 1]
        if chosen:
            lines += [f"Settings behind `{SELECTED_MARK}` (tuned) cells, with the tuning budget (trials x seeds x "
                      "steps; an Optuna or grid search over lambda and xi scored against the target "
                      "environment is online tuning):", ""]
            lines += [f"- {task.name} / {method}: {cell.setting.label} (best of {cell.n_settings}), tuning budget "
                      f"{cell.budget.describe() if cell.budget else '-'}"
                      for (task, method), cell in sorted(chosen, key=lambda kv: (kv[0][0], kv[0][1]))]
            lines.append("")
    return lines


def _totals_section(analysis: Analysis, metric: str) -> list[str]:
    totals = analysis.totals[metric]
    if not totals:
        return []
    lines = [f"### Totals per shift type (sum of per-task means, {score_label(metric, analysis.last_k)} score)", ""]
    rows = []
    for shift_type in sorted({t.shift_type for t in totals}):
        row = [shift_type]
        for method in analysis.methods:
            match = [t for t in totals if t.shift_type == shift_type and t.method == method]
            if not match:
                row.append("-")
                continue
            total = match[0]
            text = f"{total.total:.1f}"
            if total.partial:
                text += PARTIAL_MARK
            if not total.complete:
                text += f" ({total.tasks_with_results}/{total.tasks_in_shift} tasks)"
            row.append(text)
        rows.append(row)
    lines += _md_table(["shift type"] + analysis.methods, rows)
    if not all(t.complete for t in totals):
        lines += ["A total over fewer tasks than the shift type has, (k/n tasks), is not comparable with the "
                  "other columns; the comparison below uses only tasks both methods have.", ""]
    return lines


def _comparison_section(analysis: Analysis, metric: str) -> list[str]:
    comps = analysis.comparisons[metric]
    if not comps:
        return ["No DVDF/baseline pair (dvdf-igdf with igdf, dvdf-otdf with otdf) has results on a common "
                "task, so no relative change is reported.", ""]
    lines = [f"### DVDF vs the filter it extends ({score_label(metric, analysis.last_k)} score, tasks both have)", ""]
    rows = []
    for c in comps:
        change = "-" if c.relative_change is None else f"{c.relative_change:+.1f}%"
        mark = PARTIAL_MARK if c.partial else ""
        rows.append([c.shift_type, f"{c.method} vs {c.baseline}", str(c.tasks),
                     f"{c.baseline_total:.1f}{mark}", f"{c.method_total:.1f}{mark}", change,
                     f"{c.won} / {c.lost} / {c.tied}"])
    lines += _md_table(["shift type", "comparison", "tasks", "baseline total", "DVDF total",
                        "relative change", "won / lost / tied"], rows, align_right_from=2)
    lines += ["Relative change = (DVDF total - baseline total) / |baseline total|; won/lost/tied compare "
              "the per-task means.", ""]
    return lines


def _settings_section(analysis: Analysis) -> list[str]:
    k = analysis.last_k
    lines = ["## All settings (every task, method, lambda, xi that has runs)", ""]
    rows = []
    for setting in analysis.settings:
        scores = [setting.stats(metric, k) for metric in METRICS]
        finished = sum(run.status == FINISHED for run in setting.runs)
        diverged = sum(run.status == DIVERGED for run in setting.runs)
        runs = f"{finished}/{len(setting.runs)} finished" + (f", {diverged} diverged" if diverged else "")
        rows.append([setting.task.name, setting.method, _num(setting.tradeoff, "g"),
                     _num(setting.keep_ratio, "g"), _seed_list(setting),
                     *[format_stats(stats) if stats else "-" for stats in scores], runs])
    lines += _md_table(["task", "method", "lambda", "xi", "seeds", *[score_label(m, k) for m in METRICS], "runs"],
                       rows, align_right_from=2)
    lines += ["lambda / xi are `-` for methods that do not use them.", ""]
    return lines


def _seed_list(setting: Setting) -> str:
    return ", ".join(str(run.seed) for run in setting.scored_runs) or "-"


def _num(value: Optional[float], spec: str = ".6g") -> str:
    return "-" if value is None else format(value, spec)


# ----------------------------------------------------------------------------------------- CSV
def csv_tables(analysis: Analysis) -> dict[str, str]:
    """File name -> CSV text. Unrounded numbers; empty field = not applicable / no value."""
    files = {
        "aggregates.csv": _to_csv(_aggregate_rows(analysis), _AGGREGATE_COLUMNS),
        "improvements.csv": _to_csv(_improvement_rows(analysis), _IMPROVEMENT_COLUMNS),
        "scores.csv": _to_csv(_score_rows(analysis)),
        "settings.csv": _to_csv(_setting_rows(analysis)),
        "totals.csv": _to_csv(_total_rows(analysis), _TOTAL_COLUMNS),
        "comparisons.csv": _to_csv(_comparison_rows(analysis), _COMPARISON_COLUMNS),
        "runs.csv": _to_csv(_run_rows(analysis)),
    }
    importance_rows = [{"task": s.task.name, "method": s.method, "parameter": param, "importance": value,
                        "points": len(s.points), "evaluator": s.importance_note}
                       for s in analysis.sensitivity for param, value in s.importances.items()]
    if importance_rows:
        files[IMPORTANCES_CSV] = _to_csv(importance_rows)
    return files


def _task_fields(task: Task) -> dict:
    return {"task": task.name, "shift_type": task.shift_type, "robot": task.robot, "shift": task.shift,
            "quality": task.quality, "target_is_shifted": task.reversed,
            "target_transitions": "" if task.target_size is None else task.target_size,
            "target_fraction": "" if task.target_fraction is None else task.target_fraction}


def _stats_fields(prefix: str, stats: Optional[SeedStats]) -> dict:
    if stats is None:
        return {f"{prefix}mean": "", f"{prefix}std": "", f"{prefix}n_seeds": 0, f"{prefix}diverged": ""}
    return {f"{prefix}mean": _csv_num(stats.mean), f"{prefix}std": _csv_num(stats.std),
            f"{prefix}n_seeds": stats.n, f"{prefix}diverged": stats.diverged}


_AGGREGATE_COLUMNS = ("score", "score_label", "method", "tasks", "runs_per_task", "iqm", "iqm_ci_low",
                      "iqm_ci_high", "mean", "mean_ci_low", "mean_ci_high", "confidence", "bootstrap_reps",
                      "tuned_cells", "diverged_runs", "runs_left_out", "common_tasks")
_IMPROVEMENT_COLUMNS = ("score", "score_label", "x", "y", "tasks", "runs_x", "runs_y", "probability",
                        "ci_low", "ci_high", "confidence", "bootstrap_reps")


def _aggregate_rows(analysis: Analysis) -> list[dict]:
    k, reps = analysis.last_k, analysis.options.reps
    return [{"score": metric, "score_label": score_label(metric, k), "method": a.method, "tasks": a.tasks,
             "runs_per_task": a.runs, "iqm": _csv_num(a.iqm.point), "iqm_ci_low": _csv_num(a.iqm.low),
             "iqm_ci_high": _csv_num(a.iqm.high), "mean": _csv_num(a.mean.point),
             "mean_ci_low": _csv_num(a.mean.low), "mean_ci_high": _csv_num(a.mean.high), "confidence": CONFIDENCE,
             "bootstrap_reps": reps, "tuned_cells": a.tuned_cells, "diverged_runs": a.diverged,
             "runs_left_out": a.left_out, "common_tasks": bool(analysis.aggregate_tasks.get(metric))}
            for metric in METRICS for a in analysis.aggregates.get(metric, [])]


def _improvement_rows(analysis: Analysis) -> list[dict]:
    k, reps = analysis.last_k, analysis.options.reps
    return [{"score": HEADLINE, "score_label": score_label(HEADLINE, k), "x": i.x, "y": i.y, "tasks": i.tasks,
             "runs_x": i.runs_x, "runs_y": i.runs_y, "probability": _csv_num(i.probability.point),
             "ci_low": _csv_num(i.probability.low), "ci_high": _csv_num(i.probability.high),
             "confidence": CONFIDENCE, "bootstrap_reps": reps}
            for i in analysis.improvements]


def _score_rows(analysis: Analysis) -> list[dict]:
    rows = []
    for metric in METRICS:
        cells = analysis.cells[metric]
        for task in analysis.tasks:
            for method in analysis.methods:
                cell = cells.get((task, method))
                if cell is None and (task, method) not in analysis.missing:
                    continue
                row = {"score": metric, "score_label": score_label(metric, analysis.last_k), **_task_fields(task),
                       "method": method}
                row.update(_stats_fields("", cell.stats if cell else None))
                budget = cell.budget if cell else None
                row.update({
                    "ci_low": _csv_num(cell.ci[0]) if cell and cell.ci else "",
                    "ci_high": _csv_num(cell.ci[1]) if cell and cell.ci else "",
                    "seeds": " ".join(map(str, cell.stats.seeds)) if cell else "",
                    "partial": cell.stats.partial if cell else "",
                    "tradeoff": _csv_num(cell.setting.tradeoff) if cell else "",
                    "keep_ratio": _csv_num(cell.setting.keep_ratio) if cell else "",
                    "settings_with_results": cell.n_settings if cell else 0,
                    "selection": cell.selection if cell else "",
                    "tuning_trials": budget.trials if budget else "",
                    "tuning_seeds": budget.seeds if budget else "",
                    "tuning_steps": budget.steps if budget else "",
                    "missing_reason": analysis.missing.get((task, method), ""),
                })
                rows.append(row)
    return rows


def _setting_rows(analysis: Analysis) -> list[dict]:
    rows = []
    for s in analysis.settings:
        row = {**_task_fields(s.task), "method": s.method, "tradeoff": _csv_num(s.tradeoff),
               "keep_ratio": _csv_num(s.keep_ratio)}
        row.update(_stats_fields("last_k_", s.stats(LAST_K, analysis.last_k)))
        row.update(_stats_fields("final_", s.stats(FINAL)))
        row.update(_stats_fields("best_", s.stats(BEST)))
        row["last_k"] = analysis.last_k
        row["runs"] = len(s.runs)
        row["finished_runs"] = sum(run.status == FINISHED for run in s.runs)
        row["diverged_runs"] = sum(run.status == DIVERGED for run in s.runs)
        rows.append(row)
    return rows


_TOTAL_COLUMNS = ("score", "shift_type", "method", "total", "tasks_with_results", "tasks_in_shift", "partial")
_COMPARISON_COLUMNS = ("score", "shift_type", "method", "baseline", "tasks", "method_total", "baseline_total",
                       "relative_change_pct", "won", "lost", "tied", "partial")


def _total_rows(analysis: Analysis) -> list[dict]:
    return [{"score": metric, "shift_type": t.shift_type, "method": t.method, "total": _csv_num(t.total),
             "tasks_with_results": t.tasks_with_results, "tasks_in_shift": t.tasks_in_shift,
             "partial": t.partial}
            for metric in METRICS for t in analysis.totals[metric]]


def _comparison_rows(analysis: Analysis) -> list[dict]:
    return [{"score": metric, "shift_type": c.shift_type, "method": c.method, "baseline": c.baseline,
             "tasks": c.tasks, "method_total": _csv_num(c.method_total),
             "baseline_total": _csv_num(c.baseline_total),
             "relative_change_pct": _csv_num(c.relative_change), "won": c.won, "lost": c.lost, "tied": c.tied,
             "partial": c.partial}
            for metric in METRICS for c in analysis.comparisons[metric]]


def _run_rows(analysis: Analysis) -> list[dict]:
    root = analysis.experiment.root
    rows = []
    for run in sorted(analysis.experiment.runs, key=lambda r: (r.task, r.method, str(r.path))):
        rows.append({**_task_fields(run.task), "method": run.method, "tradeoff": _csv_num(run.tradeoff),
                     "keep_ratio": _csv_num(run.keep_ratio), "seed": run.seed, "status": run.status,
                     "evaluations": len(run.evals), "last_step": run.last_step,
                     "total_steps": run.total_steps,
                     f"last_{analysis.last_k}_score": _csv_num(run.last_k_score(analysis.last_k)),
                     "final_score": _csv_num(run.final_score), "best_score": _csv_num(run.best_score),
                     "diverged_step": "" if run.divergence is None or run.divergence.step is None
                     else run.divergence.step,
                     "diverged_quantity": (run.divergence.quantity or "") if run.divergence else "",
                     "path": display_path(run.path, root)})
    return rows


def _csv_num(value: Optional[float]) -> str:
    return "" if value is None else repr(float(value))


def _to_csv(rows: Iterable[dict], header: Iterable[str] = ()) -> str:
    """CSV text; with no rows, just the ``header`` line (so every file has its columns)."""
    rows = list(rows)
    fields: list[str] = list(header)
    for row in rows:
        fields += [key for key in row if key not in fields]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
