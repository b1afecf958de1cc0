"""Read the runs and trials of an experiment directory: the one reader behind every results view.

``dvdf sweep --results-only`` (:mod:`dvdf.tune.results`) and ``dvdf report`` (:mod:`dvdf.report.load`)
both read trials through :func:`read_trial` and runs through :func:`read_run`, and both take a
trial's or a run's status from :func:`trial_status` / :func:`run_status`, so the two commands can
never disagree about a trial. File names, metric keys and status words come from :mod:`dvdf.layout`
(the layout is described in docs/ARCHITECTURE.md). No Ray import: a folder is read through
:class:`dvdf.tune.storage.ExperimentDir` (a local path, an NFS mount or an object-store URI).

* a **run** is one training run of one seed (``dvdf train``, or one seed folder of a trial):
  ``config.yaml``, ``metrics.jsonl`` (one row per evaluation) and, when it ended, ``summary.json``;
* a **trial** is a Ray Tune trial folder: ``params.json``, ``result.json`` (one row per report of
  the trainable: the mean over its seeds and each seed's score), ``error.txt`` when it raised, and
  one run folder per seed (``seed_<seed>/``).

Statuses (``dvdf.layout.STATUSES``): a run or trial is *diverged* when it stopped on a non-finite
value (``diverged: 1.0`` on its last metrics row or report, ``"status": "diverged"`` in
summary.json) - it is not retried and its scores are not finished scores; *finished* when it
trained every step; *failed* when its trial raised and it did not finish; *partial* when it has
evaluations but not all; *pending* when it has none yet.
"""

from __future__ import annotations

import json
import math
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from dvdf import layout
from dvdf.tune.storage import ExperimentDir, is_uri


@dataclass(frozen=True)
class Divergence:
    """Where a run stopped on a non-finite value (from summary.json, or its last metrics row)."""

    step: Optional[int]
    quantity: Optional[str]   # e.g. "q_loss is nan"; None when only the metrics row says so

    def describe(self) -> str:
        where = f" at step {self.step}" if self.step is not None else ""
        return f"diverged{where}" + (f" ({self.quantity})" if self.quantity else "")


@dataclass
class RunFiles:
    """One run folder as written: the raw config mapping, the evaluations, the summary, the status."""

    location: str                          # the folder (path or URI)
    config: Optional[dict]                 # config.yaml as a mapping; None if unreadable
    config_error: Optional[str] = None     # why config.yaml could not be read
    evals: list[dict[str, Any]] = field(default_factory=list)   # rows with step and score, by step
    summary: Optional[dict[str, Any]] = None
    divergence: Optional[Divergence] = None
    status: str = layout.PENDING

    @property
    def total_steps(self) -> Optional[int]:
        iql = (self.config or {}).get("iql")
        steps = iql.get("steps") if isinstance(iql, dict) else None
        return int(steps) if isinstance(steps, (int, float)) else None

    @property
    def last_step(self) -> int:
        return int(self.evals[-1][layout.STEP]) if self.evals else 0


@dataclass
class TrialFiles:
    """One Ray Tune trial folder as written, with its runs and its status."""

    location: str
    params: dict[str, Any]
    results: list[dict[str, Any]] = field(default_factory=list)   # result.json rows, in order
    error: Optional[str] = None            # the line of error.txt that names the cause
    runs: list[RunFiles] = field(default_factory=list)
    status: str = layout.PENDING

    @property
    def name(self) -> str:
        return posixpath.basename(self.location.rstrip("/"))

    @property
    def last(self) -> dict[str, Any]:
        return self.results[-1] if self.results else {}

    @property
    def evaluations(self) -> int:
        return len({row.get(layout.STEP) for row in self.results})


# ----------------------------------------------------------------------------------- statuses
def _flag(row: dict[str, Any], key: str) -> bool:
    value = row.get(key)
    return isinstance(value, (int, float)) and float(value) == 1.0


def run_status(evals: list[dict], total_steps: Optional[int], summary: Optional[dict],
               divergence: Optional[Divergence]) -> str:
    """diverged > finished (summary says so, or the last evaluation is at the last step) > partial > pending."""
    if divergence is not None:
        return layout.DIVERGED
    if summary and summary.get(layout.SUMMARY_STATUS) == layout.FINISHED:
        return layout.FINISHED
    if evals and total_steps is not None and int(evals[-1][layout.STEP]) >= total_steps:
        return layout.FINISHED
    return layout.PARTIAL if evals else layout.PENDING


def trial_status(results: list[dict], error: Optional[str], runs: list[RunFiles]) -> str:
    """The status of a trial, from its reports (result.json), its error.txt and its runs.

    diverged: the last report says ``diverged`` or a seed run diverged; finished: the last report
    says ``finished`` (or, without any report, every run finished); failed: error.txt and not
    finished (final once the sweep has ended; a retry may be running while it goes on); partial:
    some report or evaluation (stopped early by ASHA, interrupted, or still running); pending: none.
    """
    last = results[-1] if results else {}
    if _flag(last, layout.DIVERGED_METRIC) or any(run.status == layout.DIVERGED for run in runs):
        return layout.DIVERGED
    if _flag(last, layout.FINISHED_METRIC) or (not results and runs
                                               and all(run.status == layout.FINISHED for run in runs)):
        return layout.FINISHED
    if error is not None:
        return layout.FAILED
    if results or any(run.evals for run in runs):
        return layout.PARTIAL
    return layout.PENDING


# ------------------------------------------------------------------------------------ readers
def read_run(folder: ExperimentDir, problems: list[str], where: str) -> RunFiles:
    """The run in ``folder`` (``where`` names it in messages); unreadable parts go to ``problems``."""
    run = RunFiles(location=str(folder), config=None)
    try:
        raw = yaml.safe_load(folder.read_text(layout.RUN_CONFIG))
        if not isinstance(raw, dict):
            raise ValueError("not a mapping")
        run.config = raw
    except (OSError, yaml.YAMLError, ValueError, UnicodeDecodeError) as exc:
        run.config_error = _first_line(str(exc)) or type(exc).__name__
    diverged_row = None
    if folder.exists(layout.RUN_METRICS):
        try:
            text = folder.read_text(layout.RUN_METRICS)
        except OSError as exc:
            problems.append(f"{where}: cannot read {layout.RUN_METRICS} ({exc.strerror})")
            text = ""
        run.evals, diverged_row = parse_metrics(text, problems, where)
    if folder.exists(layout.RUN_SUMMARY):
        try:
            loaded = json.loads(folder.read_text(layout.RUN_SUMMARY))
            run.summary = loaded if isinstance(loaded, dict) else None
        except (OSError, ValueError):
            problems.append(f"{where}: unreadable {layout.RUN_SUMMARY} (ignored)")
    run.divergence = _divergence(run.summary, diverged_row)
    run.status = run_status(run.evals, run.total_steps, run.summary, run.divergence)
    return run


def parse_metrics(text: str, problems: list[str], where: str) -> tuple[list[dict], Optional[dict]]:
    """(rows with a finite step and a score, sorted by step - later rows win on a repeated step;
    the row that says ``diverged: 1.0``, if any).

    The writer appends one line per evaluation, so while a run is going on the last line may be
    incomplete: it is dropped silently. A bad line anywhere else is reported. A diverged run's
    last row may carry no score (or a non-finite one): it marks the run diverged either way.
    """
    lines = text.splitlines()
    by_step: dict[int, dict] = {}
    diverged_row = None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise TypeError("not an object")
            if _flag(row, layout.DIVERGED_METRIC):
                diverged_row = row
            step, score = float(row[layout.STEP]), float(row[layout.SCORE])
            if not math.isfinite(step):
                raise ValueError("non-finite step")
        except (ValueError, KeyError, TypeError):
            if number != len(lines) and diverged_row is not row:
                problems.append(f"{where}/{layout.RUN_METRICS}: line {number} skipped (not a JSON object with "
                                f"'{layout.STEP}' and '{layout.SCORE}')")
            continue
        if not math.isfinite(score):
            if diverged_row is row:
                continue   # the diverged row's score is not an evaluation of a trained policy
            problems.append(f"{where}/{layout.RUN_METRICS}: line {number} has a non-finite {layout.SCORE} (kept)")
        by_step[int(step)] = row
    return [by_step[step] for step in sorted(by_step)], diverged_row


def _divergence(summary: Optional[dict], diverged_row: Optional[dict]) -> Optional[Divergence]:
    if summary and summary.get(layout.SUMMARY_STATUS) == layout.DIVERGED:
        step = summary.get(layout.SUMMARY_DIVERGED_STEP)
        quantity = summary.get(layout.SUMMARY_DIVERGED_QUANTITY)
        return Divergence(int(step) if isinstance(step, (int, float)) else None,
                          str(quantity) if quantity is not None else None)
    if diverged_row is not None:
        step = diverged_row.get(layout.STEP)
        return Divergence(int(step) if isinstance(step, (int, float)) and math.isfinite(step) else None, None)
    return None


def read_trial(folder: ExperimentDir, problems: list[str], where: str) -> TrialFiles:
    """The Ray Tune trial in ``folder``: params, reports, error, its seed runs and its status.

    The runs are the sub-folders holding a config.yaml (``seed_<seed>/`` as the trainable writes
    them) and the trial folder itself if it holds one.
    """
    trial = TrialFiles(location=str(folder), params={})
    try:
        loaded = json.loads(folder.read_text(layout.TRIAL_PARAMS))
        trial.params = loaded if isinstance(loaded, dict) else {}
    except (OSError, ValueError):
        problems.append(f"{where}: unreadable {layout.TRIAL_PARAMS}")
    if folder.exists(layout.TRIAL_RESULT):
        for line in folder.read_text(layout.TRIAL_RESULT).splitlines():
            line = line.strip()
            if line:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:   # a line cut by a killed driver
                    continue
                if isinstance(row, dict):
                    trial.results.append(row)
    if folder.exists(layout.TRIAL_ERROR):
        trial.error = error_headline(folder.read_text(layout.TRIAL_ERROR))
    if folder.exists(layout.RUN_CONFIG):
        trial.runs.append(read_run(folder, problems, where))
    for name in folder.subdirs():
        if folder.exists(name, layout.RUN_CONFIG):
            trial.runs.append(read_run(ExperimentDir(_join(folder.location, name)), problems, f"{where}/{name}"))
    trial.status = trial_status(trial.results, trial.error, trial.runs)
    if trial.status == layout.FAILED:
        # An error before a run wrote anything, or a run that died: its unfinished runs failed.
        for run in trial.runs:
            if run.status not in (layout.FINISHED, layout.DIVERGED):
                run.status = layout.FAILED
    return trial


def trial_score(trial: TrialFiles) -> Optional[float]:
    """The trial's last reported score (mean over its seeds); None if it has none or it is not finite."""
    value = trial.last.get(layout.SCORE)
    return float(value) if isinstance(value, (int, float)) and math.isfinite(float(value)) else None


def _join(location: str, name: str) -> str:
    return posixpath.join(location, name) if is_uri(location) else str(Path(location, name))


_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)|\w+Error)(\(|:|$)")


def error_headline(text: str) -> str:
    """The line that says what went wrong, out of a Ray error.txt (a header, then a traceback).

    The last line naming an exception is the root cause as Python prints it ("DvdfError: ...");
    without one, the first non-empty line that is not Ray's "Failure # N" header.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    exception_lines = [line for line in lines if _EXCEPTION_LINE.match(line)]
    if exception_lines:
        return exception_lines[-1]
    body = [line for line in lines if not line.startswith("Failure #")]
    return (body or lines or ["(empty error.txt)"])[0]


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text
