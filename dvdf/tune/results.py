"""Results of a sweep, rebuilt from its experiment directory alone (no Ray import).

:func:`collect` reads every trial directory through :func:`dvdf.trials.read_trial` - the reader
``dvdf report`` uses too, so both commands give a trial the same status (``dvdf.layout.STATUSES``:
finished, diverged, partial, failed, pending) - and the sweep definition (``sweep.yaml``);
:func:`summarize` picks, per study (group x method), the best point among finished trials and
the paper default's (lambda = 0.7, xi = 0.5) trial; a diverged trial is never picked and is
counted apart; :func:`write_tables` writes ``trials.csv`` and ``results.csv`` into the
experiment directory.
"""

from __future__ import annotations

import csv
import io
import math
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml

from dvdf import layout
from dvdf.errors import DvdfError
from dvdf.methods import PAPER_KEEP_RATIO, PAPER_TRADEOFF
from dvdf.trials import TrialFiles, read_trial
from dvdf.tune.spec import SEARCH_PARAMS, Sweep, searched_params, sweep_from_dict
from dvdf.tune.storage import ExperimentDir

SWEEP_FILE = layout.SWEEP_FILE
RESULTS_FILE = layout.RESULTS_TABLE
TRIALS_FILE = layout.TRIALS_TABLE
STATUSES = layout.STATUSES


@dataclass
class TrialRecord:
    """A trial as the results tables show it: its config (params.json), status and last report."""

    trial_dir: str
    config: dict
    status: str
    evaluations: int = 0
    last: dict = field(default_factory=dict)   # the last reported result
    files: Optional[TrialFiles] = None         # everything read from the trial folder

    @property
    def trial_id(self) -> str:
        return str(self.last.get("trial_id") or self.trial_dir.rsplit("_", 1)[-1])

    @property
    def score(self) -> Optional[float]:
        value = self.last.get(layout.SCORE)
        return float(value) if value is not None and math.isfinite(float(value)) else None

    @property
    def score_std(self) -> Optional[float]:
        value = self.last.get(layout.SCORE_STD)
        return float(value) if value is not None else None

    def seed_scores(self) -> dict[int, float]:
        return {int(s): float(self.last[layout.seed_score_key(s)]) for s in self.config.get("seeds", [])
                if layout.seed_score_key(s) in self.last}


@dataclass
class StudyResult:
    study: str
    config: dict                      # a representative trial config (group fields, method)
    used: tuple[str, ...]             # parameters the method uses (others are shown as '-')
    trials: int
    finished: int
    best: Optional[TrialRecord]
    default: Optional[TrialRecord]
    diverged: int = 0                 # trials that stopped on a non-finite value (never best/default)


def load_stored_sweep(exp: ExperimentDir) -> Sweep:
    if not exp.exists(SWEEP_FILE):
        raise DvdfError(f"{exp}: no {SWEEP_FILE}; not a dvdf sweep directory")
    raw = yaml.safe_load(exp.read_text(SWEEP_FILE))
    if not isinstance(raw, dict):
        raise DvdfError(f"{exp}/{SWEEP_FILE}: expected a mapping")
    return sweep_from_dict(raw, source=f"{exp}/{SWEEP_FILE}", default_name=raw.get("name") or "sweep",
                           check_domains=False)


def collect(exp: ExperimentDir) -> list[TrialRecord]:
    """Every trial directory of the experiment (those with a params.json), read by dvdf.trials."""
    records = []
    for name in exp.subdirs():
        if not exp.exists(name, layout.TRIAL_PARAMS):
            continue
        problems: list[str] = []
        files = read_trial(ExperimentDir(_join(exp, name)), problems, name)
        records.append(TrialRecord(trial_dir=name, config=files.params, status=files.status,
                                   evaluations=files.evaluations, last=files.last, files=files))
    return records


def _join(exp: ExperimentDir, name: str) -> str:
    return str(Path(exp.location, name)) if exp.is_local else posixpath.join(exp.location, name)


def _is_default(record: TrialRecord, used: tuple[str, ...]) -> bool:
    default = {"tradeoff": PAPER_TRADEOFF, "keep_ratio": PAPER_KEEP_RATIO}
    return all(math.isclose(float(record.config[p]), default[p], abs_tol=1e-9) for p in used)


def summarize(sweep: Sweep, records: list[TrialRecord]) -> list[StudyResult]:
    """Per study: best finished trial by mean normalized score (partial ones if none finished).

    A diverged trial is never the best or the default: its last score is not that of a trained
    policy. It is counted in ``StudyResult.diverged`` and shown in the tables.
    """
    by_study: dict[str, list[TrialRecord]] = {}
    for record in records:
        by_study.setdefault(record.config.get("study", "?"), []).append(record)
    summaries = []
    for study in sweep.studies:
        trials = by_study.get(study.name, [])
        used = searched_params(study.method)
        scored = [t for t in trials if t.score is not None and t.status != layout.DIVERGED]
        finished = [t for t in scored if t.status == layout.FINISHED]
        pool = finished or scored
        best = max(pool, key=lambda t: t.score) if pool else None
        defaults = [t for t in (finished or scored) if _is_default(t, used)]
        config = trials[0].config if trials else {"group": study.group.name, "method": study.method,
                                                  "robot": study.group.robot, "shift": study.group.shift,
                                                  "quality": study.group.quality,
                                                  "target": study.group.target_label}
        summaries.append(StudyResult(study=study.name, config=config, used=used, trials=len(trials),
                                     finished=sum(t.status == layout.FINISHED for t in trials), best=best,
                                     default=defaults[0] if defaults else None,
                                     diverged=sum(t.status == layout.DIVERGED for t in trials)))
    return summaries


# --- tables ---------------------------------------------------------------------------------
_GROUP_FIELDS = ("group", "robot", "shift", "quality", "target", "method")


def _num(value: Optional[float]) -> str:
    return "" if value is None else f"{value:.6g}"


def results_rows(summaries: list[StudyResult]) -> list[dict]:
    rows = []
    for s in summaries:
        row = {"study": s.study, **{k: s.config.get(k, "") for k in _GROUP_FIELDS},
               "trials": s.trials, "finished": s.finished}
        for prefix, record in (("best", s.best), ("default", s.default)):
            for param in SEARCH_PARAMS:
                row[f"{prefix}_{param}"] = (_num(float(record.config[param]))
                                            if record is not None and param in s.used else "")
            row[f"{prefix}_score_mean"] = _num(record.score) if record is not None else ""
            row[f"{prefix}_score_std"] = _num(record.score_std) if record is not None else ""
            row[f"{prefix}_status"] = record.status if record is not None else ""
        row["best_trial"] = s.best.trial_id if s.best is not None else ""
        row["diverged"] = s.diverged
        rows.append(row)
    return rows


def trials_rows(records: list[TrialRecord]) -> list[dict]:
    seeds = sorted({int(s) for r in records for s in r.config.get("seeds", [])})
    rows = []
    for r in sorted(records, key=lambda r: (r.config.get("study", ""), r.trial_dir)):
        row = {"trial_id": r.trial_id, "study": r.config.get("study", ""),
               **{k: r.config.get(k, "") for k in _GROUP_FIELDS},
               "tradeoff": r.config.get("tradeoff", ""), "keep_ratio": r.config.get("keep_ratio", ""),
               "seeds": ",".join(str(s) for s in r.config.get("seeds", [])),
               "status": r.status, "evaluations": r.evaluations, "step": r.last.get("step", ""),
               layout.SCORE: _num(r.score), layout.SCORE_STD: _num(r.score_std)}
        scores = r.seed_scores()
        for seed in seeds:
            row[layout.seed_score_key(seed)] = _num(scores.get(seed))
        row["trial_dir"] = r.trial_dir
        rows.append(row)
    return rows


def to_csv(rows: list[dict]) -> str:
    if not rows:
        return ""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _score(record: Optional[TrialRecord]) -> str:
    if record is None or record.score is None:
        return "-"
    mark = "" if record.status == layout.FINISHED else "*"
    return f"{record.score:.1f} +- {record.score_std or 0.0:.1f}{mark}"


def _param(record: Optional[TrialRecord], param: str, used: tuple[str, ...]) -> str:
    if record is None or param not in used:
        return "-"
    return f"{float(record.config[param]):.3f}"


def format_table(summaries: list[StudyResult]) -> str:
    """The terminal table: per study the best lambda/xi, its score, the default's score."""
    header = ("study", "finished", "diverged", "best lambda", "best xi", "best score",
              f"default ({PAPER_TRADEOFF:g}, {PAPER_KEEP_RATIO:g})")
    rows = [header]
    for s in summaries:
        rows.append((s.study, f"{s.finished}/{s.trials}", str(s.diverged), _param(s.best, "tradeoff", s.used),
                     _param(s.best, "keep_ratio", s.used), _score(s.best), _score(s.default)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    def line(row) -> str:  # first column left-aligned, numbers right-aligned
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    lines = [line(row) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("scores: mean +- std of the normalized score over the seeds at the trial's last report; "
                 "* = trial not finished; diverged trials (stopped on a non-finite value) are never the best "
                 "or the default")
    return "\n".join(lines)


def write_tables(location: str) -> list[StudyResult]:
    """Rebuild results.csv and trials.csv of an experiment directory; return the summaries."""
    exp = ExperimentDir(location)
    sweep = load_stored_sweep(exp)
    records = collect(exp)
    summaries = summarize(sweep, records)
    exp.write_text(to_csv(results_rows(summaries)), RESULTS_FILE)
    exp.write_text(to_csv(trials_rows(records)), TRIALS_FILE)
    return summaries
