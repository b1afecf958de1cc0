"""The report's index, ``README.md``: where the results came from and a link to every file."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

from dvdf import __version__
from dvdf.report.analysis import Analysis
from dvdf.report.load import DIVERGED, FAILED, FINISHED, PARTIAL, PENDING
from dvdf.report.stats import HEADLINE, score_label

CSV_DESCRIPTIONS = {
    "aggregates.csv": "per score and method: IQM and mean over tasks x seeds with 95% stratified-bootstrap CIs",
    "improvements.csv": "P(X > Y) with its 95% CI for each DVDF-variant/baseline pair and each --pair",
    "scores.csv": "per task and method: mean, std, n, 95% CI, fixed/tuned and tuning budget of each score "
                  "(last-k, final, best-of-run): the table cells",
    "settings.csv": "every (task, method, lambda, xi) with runs: last-k, final and best-of-run statistics",
    "totals.csv": "per shift type and method: sum of per-task means",
    "comparisons.csv": "dvdf-igdf vs igdf, dvdf-otdf vs otdf: totals, relative change, tasks won/lost/tied",
    "runs.csv": "every run directory: status, evaluations, last step, last-k, final and best score, divergence",
    "importances.csv": "Optuna parameter importances per sampled study",
}


@dataclass
class Written:
    """Files of the report, relative to its folder, by section."""

    tables: list[str] = field(default_factory=list)
    aggregate: list[tuple[str, str]] = field(default_factory=list)                # (what, file)
    tuning: list[tuple[str, str, str]] = field(default_factory=list)              # (task, method, file)
    learning_curves: list[tuple[str, str]] = field(default_factory=list)          # (task, file)
    diagnostics: list[tuple[str, str, str]] = field(default_factory=list)         # (task, method, file)
    sensitivity: list[tuple[str, str, list[tuple[str, str]]]] = field(default_factory=list)
    config_copy: Optional[str] = None

    @property
    def figures(self) -> list[str]:
        files = [f for _, f in self.aggregate] + [f for _, _, f in self.tuning]
        files += [f for _, f in self.learning_curves] + [f for _, _, f in self.diagnostics]
        files += [f for _, _, items in self.sensitivity for _, f in items]
        return files


def readme(analysis: Analysis, written: Written, config_text: Optional[str], config_description: str,
           where: str) -> str:
    """The report's index; ``where`` names the experiment folder (see ``Options.reproducible``)."""
    exp = analysis.experiment
    counts = analysis.status_counts
    sweep = analysis.sweep
    lines = [f"# dvdf report: {sweep.name if sweep else exp.root.name}", ""]
    kind = "a single `dvdf train` run" if exp.kind == "train" else "a sweep or a collection of runs"
    lines += [
        f"- Experiment: `{where}` ({kind})",
        f"- Report written by dvdf {__version__}" if analysis.options.reproducible else
        f"- Report written {time.strftime('%Y-%m-%d %H:%M:%S %Z')} by dvdf {__version__}",
        f"- Results produced by dvdf {exp.produced_by}" if exp.produced_by else
        "- dvdf version of the results: not recorded in the run files",
    ]
    if sweep is not None:
        lines.append(f"- Sweep `{sweep.name}`: search mode `{sweep.mode}`, {len(sweep.studies)} studies "
                     f"(task x method), seeds {', '.join(map(str, sweep.seeds))}")
    lines.append(f"- Runs (one seed each): {counts[FINISHED]} finished, {counts[DIVERGED]} diverged, "
                 f"{counts[PARTIAL]} partial, {counts[FAILED]} failed; {counts[PENDING]} pending (no evaluation yet)")
    lines.append(f"- Headline score: {score_label(HEADLINE, analysis.last_k)}; aggregates and P(improvement) by "
                 f"rliable with {analysis.options.reps} bootstrap resamples")
    if exp.trials:
        by_status: dict[str, int] = {}
        for trial in exp.trials:
            by_status[trial.status] = by_status.get(trial.status, 0) + 1
        lines.append("- Trials: " + ", ".join(f"{n} {status}" for status, n in sorted(by_status.items())))
    lines += [f"- Tasks: {len(analysis.tasks)}; methods: {', '.join(analysis.methods) or '-'}", ""]
    if counts[DIVERGED]:
        lines += [f"**Diverged runs**: {counts[DIVERGED]} run(s) stopped on a non-finite value. They have no "
                  "finished score: the tables leave them out of the numbers and mark the cells `‡`.", ""]
    if counts[PARTIAL] or counts[PENDING] or analysis.missing:
        lines += ["**Partial results**: some runs have not finished or not started; their cells are marked "
                  "and the numbers will change. Run `dvdf report` again later.", ""]

    lines += ["## Tables", "", "- [tables.md](tables.md): IQM and mean with 95% CIs, probability of "
              "improvement, per-task scores (last-k, final, best-of-run; fixed/tuned), totals per shift type, "
              "DVDF vs baseline, all settings"]
    lines += [f"- [{name}]({name}): {CSV_DESCRIPTIONS.get(name, '')}" for name in written.tables
              if name.endswith(".csv")]
    lines.append("")

    lines += ["## Aggregate figures", ""]
    if written.aggregate:
        lines += [f"{score_label(HEADLINE, analysis.last_k)} score over the tasks every method has (rliable).", ""]
        lines += [f"- [{what}]({path})" for what, path in written.aggregate]
    else:
        lines.append("No method has results yet.")
    lines.append("")

    lines += ["## Tuning budget", ""]
    if written.tuning:
        lines += ["Best score found vs number of trials (settings tried, in order), with the paper default's "
                  "score as a line: did the search help at all?", ""]
        lines += [f"- [{task} / {method}]({path})" for task, method, path in written.tuning]
    else:
        lines.append("No (task, method) ran more than one setting: every cell is `fixed`.")
    lines.append("")

    lines += ["## Learning curves", ""]
    if written.learning_curves:
        lines += ["Normalized score vs gradient steps, one line per method (the setting shown in the "
                  "final-score table), shaded ±1 std over seeds.", ""]
        lines += [f"- [{task}]({path})" for task, path in written.learning_curves]
    else:
        lines.append("No run has evaluated yet.")
    lines.append("")

    lines += ["## Filter diagnostics", ""]
    if written.diagnostics:
        lines += ["Kept share and keep rate per provenance label (behaviour policy), mean source weight, "
                  "dynamics score / advantage of kept vs dropped samples, over training.", ""]
        lines += [f"- [{task} / {method}]({path})" for task, method, path in written.diagnostics]
    else:
        lines.append("None recorded (no filtering method with filter statistics among the runs).")
    lines.append("")

    lines += ["## Sensitivity to lambda and xi", ""]
    if analysis.sensitivity:
        for study, (task, method, items) in zip(analysis.sensitivity, written.sensitivity):
            links = ", ".join(f"[{kind}]({path})" for kind, path in items)
            line = f"- {task} / {method} ({study.design}, {len(study.points)} settings): {links}"
            if study.importances:
                line += "; importances " + ", ".join(f"{k} {v:.2f}" for k, v in study.importances.items())
            elif study.importance_note:
                line += f"; {study.importance_note}"
            lines.append(line)
    else:
        lines.append("No (task, method) has results at two or more (lambda, xi) settings.")
    lines.append("")

    lines += ["## Failed, diverged, pending and unfinished trials", ""]
    if analysis.issues:
        rows = [[issue.status, issue.what, issue.task or "-", issue.method or "-", issue.detail]
                for issue in analysis.issues]
        lines += ["| status | trial / run | task | method | detail (first line of the error) |",
                  "| --- | --- | --- | --- | --- |"]
        lines += ["| " + " | ".join(_md(cell) for cell in row) + " |" for row in rows]
    else:
        lines.append("None: every trial finished.")
    lines.append("")
    if analysis.missing:
        lines += ["Table cells without results:", ""]
        lines += [f"- {task.name} / {method}: {why}" for (task, method), why in analysis.missing.items()]
        lines.append("")

    if analysis.notes:
        lines += ["## Notes", ""] + [f"- {_md(note)}" for note in analysis.notes] + [""]

    lines += ["## Configuration", ""]
    if config_text is not None:
        link = f" (copy: [{written.config_copy}]({written.config_copy}))" if written.config_copy else ""
        lines += [f"From {config_description}{link}:", "", "```yaml", config_text.rstrip(), "```", ""]
    else:
        lines += [config_description[0].upper() + config_description[1:] + ".", ""]
    return "\n".join(lines)


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
