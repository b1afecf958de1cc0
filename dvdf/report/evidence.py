"""docs/EVIDENCE.md, generated from the measured files under docs/evidence/ (none typed in).

Inputs (each written by a step of ``scripts/evidence.py``; a missing one is reported as not run):

``<domain>_sac_curve.jsonl``   behaviour-policy learning curves (the SAC run's curve.jsonl)
``datasets.jsonl``             one line per generated dataset (dvdf collect's summary)
``datasets_regenerated.jsonl`` a dataset regenerated on another CPU whose rollouts differ
``alignment/kept_<q>.csv``     kept composition and return-to-go per method (:func:`dvdf.alignment.kept_shares`)
``alignment/auc_<q>.csv``      advantage ROC AUC per value model and length
``bench.json``                 ``dvdf bench`` of the trial's step (budget)
``runs/<task>/<method>/seed_<N>/``  per-seed results (:mod:`dvdf.report.archive`)
``timings.jsonl``              the command and wall time of every step

The result tables are the report's own statistics: the renderer builds ``dvdf report`` of the
runs into ``report/`` beside them (rliable intervals, learning curves, filter diagnostics) and
quotes its numbers and figures, so EVIDENCE.md and that report never disagree. The behaviour
curves are drawn into ``figures/``.
"""

from __future__ import annotations

import csv
import json
import os
import shlex
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from dvdf.atomic import atomic_write_text
from dvdf.report.reliable import DEFAULT_REPS

LAST_K = 5
# The claim under test first; then does borrowing help at all (against IQL on the target data
# alone), and the SQL-vs-IQL value-model ablation.
PAIRS = (("dvdf-igdf", "igdf"), ("igdf", "iql-target"), ("dvdf-igdf", "iql-target"),
         ("dvdf-igdf", "dvdf-iql-adv"))
METHOD_ORDER = ("iql-target", "iql-mix", "igdf", "dvdf-igdf", "dvdf-iql-adv")
SEED_STEPS_PER_CELL = 5 * 100_000     # 5 seeds x 100k steps (tune_configs/evidence_hopper.yaml)
CELLS = 3 * len(METHOD_ORDER)         # 3 source qualities x 5 methods


def _jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _csv(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def _f(value: Optional[float], digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


# ------------------------------------------------------------------------------------ sections
def policies_section(evidence: Path, doc_dir: Path) -> list[str]:
    from dvdf.envs.catalogue import normalized_score
    from dvdf.report.plots import behaviour_curves

    out = ["## 1. Behaviour policies (SAC)", ""]
    rows, curves, experts, candidates = [], {}, {}, []
    for path in sorted(evidence.glob("*_sac_curve.jsonl")):
        domain = path.name[: -len("_sac_curve.jsonl")]
        curve = _jsonl(path)
        if not curve:
            continue
        curves[domain] = curve
        last, best = curve[-1], max(curve, key=lambda r: r["return_deterministic"])
        choice_path = evidence / f"{domain}_expert_choice.json"
        if choice_path.exists():   # written by pack-policies under collect.expert: best
            choice = json.loads(choice_path.read_text())
            experts[domain] = choice["step"]
            episodes = choice["selection"]["episodes"]
            shortlist = len(choice["selection"]["candidates"])
            expert = [f"{choice['step']:,} (best of {shortlist}, {episodes} fresh episodes)",
                      _f(choice["return_deterministic"]), _f(normalized_score(domain, choice["return_deterministic"])),
                      _f(choice["return_stochastic"])]
            candidates += [[f"`{domain}`", f"{c['step']:,}", _f(c["training_return_stochastic"]),
                            _f(c["return_stochastic"]), _f(c["return_deterministic"]),
                            "**expert**" if c["step"] == choice["step"] else ""]
                           for c in choice["selection"]["candidates"]]
        else:                      # collect.expert: final, D4RL's rule
            experts[domain] = last["step"]
            expert = [f"{last['step']:,} (final)", _f(last["return_deterministic"]),
                      _f(normalized_score(domain, last["return_deterministic"])), _f(last["return_stochastic"])]
        rows.append([f"`{domain}`", f"{last['step']:,}", _f(last["return_deterministic"]), *expert,
                     f"{_f(best['return_deterministic'])} at {best['step']:,}"])
    if not rows:
        return out + ["Not run yet (`scripts/evidence.py datasets`).", ""]
    out += _table(["domain", "SAC steps", "final return (deterministic)", "expert snapshot",
                   "expert return (deterministic)", "normalized", "expert return (stochastic)",
                   "highest training-time evaluation (deterministic)"], rows)
    if candidates:
        out += ["", "The expert is the snapshot with the highest stochastic return on a fresh evaluation, "
                "among the candidates below: the snapshots with the highest training-time return "
                "(collect.expert: best, docs/DOMAINS.md).", ""]
        out += _table(["domain", "snapshot", "training-time return (stochastic, 5 episodes)",
                       "fresh return (stochastic)", "fresh return (deterministic)", ""], candidates)
    medium = {d["domain"]: d["behaviour_policy_steps"] for d in _jsonl(evidence / "datasets.jsonl")
              if d.get("quality") == "medium"}
    figure = behaviour_curves(curves, medium, evidence / "figures" / "sac_curves.png", experts)
    curve_files = f"{_relative(evidence, doc_dir)}/<domain>_sac_curve.jsonl"
    return out + ["", f"Every snapshot is in `{curve_files}` (returns over the run's "
                  "`eval_episodes` episodes during training).", "",
                  f"![SAC learning curves]({_relative(figure, doc_dir)})", ""]


def _dataset_row(d: dict) -> list[Any]:
    return [f"`{d['path']}`", f"{d['transitions']:,}", d["episodes"], _f(d["return_mean"]),
            _f(d.get("return_normalized")), f"{d['behaviour_policy_steps']:,}", _f(d["behaviour_policy_mean_return"])]


def datasets_section(evidence: Path) -> list[str]:
    header = ["file", "transitions", "episodes", "episode return (mean)", "normalized",
              "policy SAC step", "policy return (stochastic)"]
    rows = [_dataset_row(d) for d in _jsonl(evidence / "datasets.jsonl")]
    out = ["## 2. Datasets", ""]
    if not rows:
        return out + ["Not generated yet.", ""]
    out += _table(header, rows) + [""]
    regenerated = _jsonl(evidence / "datasets_regenerated.jsonl")
    if regenerated:
        out += ["Regenerated on another machine from the same policies, with other episodes (the actor's "
                "float rounding differs between CPU kernels and the hopper's contacts amplify it; see "
                "`docs/evidence/README.md`). A sweep run on that machine reads these files: the same "
                "policies' data, not the same rows (the runs' timings say where each cell ran):", ""]
        out += _table(header + ["CPU", "regenerated"],
                      [_dataset_row(d) + [d["cpu"], d["regenerated_at"]] for d in regenerated]) + [""]
    return out


def budget_section(evidence: Path, bench_file: Optional[Path] = None) -> list[str]:
    out = ["## 3. Budget", ""]
    bench_file = evidence / "bench.json" if bench_file is None else bench_file
    bench = json.loads(bench_file.read_text()) if bench_file.is_file() else None
    # dvdf bench --json --threads 1 --members 5 --compile: members[threads][K][mode]
    rate = (bench or {}).get("members", {}).get("1", {}).get("5", {}).get("compiled_step", {}).get(
        "member_steps_per_s")
    out += _sweep_rates(evidence / "runs")
    if rate is None:
        return out + ["No `dvdf bench` rate yet (`scripts/evidence.py bench`).", ""]
    core_h = SEED_STEPS_PER_CELL / rate / 3600
    rows = [["one cell (5 seeds x 100k steps)", f"{rate:,.0f}", _f(core_h, 2), _f(core_h / 2, 2)],
            [f"all {CELLS} cells", f"{rate:,.0f}", _f(CELLS * core_h, 1), _f(CELLS * core_h / 2, 1)]]
    load = bench.get("load_average_1min")
    return out + _table(["work", "seed-steps/s per core (measured)", "core-hours", "hours on 2 cores"], rows) + [
        "", f"`dvdf bench`: one thread, 5 seeds as one compiled batched step (1-min load average {load} on "
        f"{bench.get('cores')} cores when measured). Training only: stages 1-2 (value models, contrastive "
        "scorer) and evaluation come on top.", ""]


def _sweep_rates(runs: Path) -> list[str]:
    """The training rate the sweep itself reached, per cell: every run logs its step's
    ``train_steps_per_s`` (evaluation excluded) at each evaluation; the seeds of a trial share
    one batched step, so seed-steps/s = steps/s x seeds."""
    rows = []
    for method_dir in sorted(p for p in runs.glob("*/*") if p.is_dir()):
        seeds = sorted(method_dir.glob("seed_*/metrics.jsonl"))
        logged = _jsonl(seeds[0]) if seeds else []
        rates = [r["train_steps_per_s"] for r in logged if "train_steps_per_s" in r]
        if not rates:
            continue
        rate = float(np.median(rates))
        steps = max(int(r.get("step", 0)) for r in logged)
        rows.append([f"`{method_dir.parent.name}`", method_dir.name, len(seeds), f"{rate:,.1f}",
                     f"{rate * len(seeds):,.0f}", _f(steps / rate / 3600, 2)])
    if not rows:
        return []
    return ["Measured in the sweep (median over the run's evaluation intervals, on the shared 2-core machine with "
            "another trial beside it):", ""] + _table(
        ["task", "method", "seeds", "batched steps/s", "seed-steps/s", "training hours"], rows) + [""]


def results_section(evidence: Path, doc_dir: Path, reps: int = DEFAULT_REPS) -> tuple[list[str], Optional[dict]]:
    from dvdf.errors import DvdfError
    from dvdf.report.analysis import Options
    from dvdf.report.build import build_report
    from dvdf.report.stats import LAST_K as LAST_K_SCORE

    out = ["## 4. Results", ""]
    runs = evidence / "runs"
    try:   # no runs (or no folder) is a DvdfError of the loader, raised before anything is written
        options = Options(last_k=LAST_K, pairs=PAIRS, reps=reps, reproducible=True)
        report = build_report(runs, evidence / "report", options=options)
    except DvdfError:
        return out + ["No finished runs yet (`scripts/evidence.py sweep <quality>`).", ""], None
    stats = report["statistics"]
    cells = [c for c in stats["cells"][LAST_K_SCORE]]
    tasks = sorted({c["task"] for c in cells})
    by_key = {(c["task"], c["method"]): c for c in cells}
    methods = [m for m in METHOD_ORDER if any(c["method"] == m for c in cells)]
    rows = []
    for task in tasks:
        row = [f"`{task}`"]
        for method in methods:
            cell = by_key.get((task, method))
            row.append("-" if cell is None else f"{cell['mean']:.1f} +- {cell['std']:.1f} (n={cell['n']})"
                       + (" partial" if cell["partial"] else ""))
        rows.append(row)
    out += [f"Last-{LAST_K} mean normalized score (the mean of each seed's last {LAST_K} evaluations), "
            "mean +- std over seeds, fixed paper defaults (not tuned):", ""]
    out += _table(["task", *methods], rows) + [""]
    aggregate = stats["aggregates"][LAST_K_SCORE]
    if aggregate["methods"]:
        out += [f"IQM and mean over all runs of the tasks every method has ({len(aggregate['tasks'])} task(s)), "
                "95% stratified-bootstrap CIs (rliable):", ""]
        out += _table(["method", "IQM [95% CI]", "mean [95% CI]", "runs per task"],
                      [[a["method"], _interval(a["iqm"]), _interval(a["mean"]), a["runs_per_task"]]
                       for a in aggregate["methods"]]) + [""]
    found = {(p["x"], p["y"]): p for p in stats["probability_of_improvement"]["pairs"]}
    pairs = [found[pair] for pair in PAIRS if pair in found]
    if pairs:
        out += ["Probability of improvement P(X > Y) (a random run of X scores above a random run of Y, "
                "per task, averaged over tasks), 95% bootstrap CI:", ""]
        out += _table(["X", "Y", "P(X > Y) [95% CI]", "tasks", "runs per task (X vs Y)"],
                      [[p["x"], p["y"], _interval(p), p["tasks"], f"{p['runs_x']} vs {p['runs_y']}"]
                       for p in pairs]) + [""]
    out += _report_figures(Path(report["out"]), report["figures"], doc_dir)
    return out, {"stats": stats, "pairs": pairs, "cells": by_key}


def _report_figures(report: Path, figures: list[str], doc_dir: Path) -> list[str]:
    """The report's learning curves and filter diagnostics, embedded; the rest is linked."""
    link = _relative(report / "README.md", doc_dir)
    out = [f"The full report of these runs (tables as CSV, aggregate figures): [{link}]({link}).", ""]
    for prefix, title in (("figures/learning_curves/", "Learning curves"),
                          ("figures/filter/", "What the filter kept during training")):
        chosen = [f for f in figures if f.startswith(prefix)]
        if chosen:
            out += [f"{title}:", ""]
            out += [f"![{Path(f).stem}]({_relative(report / f, doc_dir)})" for f in chosen] + [""]
    return out


def _relative(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def _interval(interval: dict) -> str:
    return f"{interval['point']:.2f} [{interval['ci_low']:.2f}, {interval['ci_high']:.2f}]"


def alignment_section(evidence: Path) -> list[str]:
    out = ["## 5. Value alignment without policy training", ""]
    kept_files = sorted((evidence / "alignment").glob("kept_*.csv"))
    auc_files = sorted((evidence / "alignment").glob("auc_*.csv"))
    if not kept_files and not auc_files:
        return out + ["Not measured yet (`scripts/evidence.py alignment <quality>`).", ""]
    for path in kept_files:
        rows = _csv(path)
        quality = path.stem[len("kept_"):]
        seeds = sorted({r["seed"] for r in rows})
        out += [f"Kept composition, source `hopper-kinematic-{quality}`, seed(s) {', '.join(seeds)}: share of "
                "each behaviour policy among the kept rows of uniformly drawn source batches (top xi = 50% per "
                "batch of 128, the training step's rule), against its share in the batches:", ""]
        groups = _by(rows, ("method", "policy"))
        # Rows measured before the return-to-go was recorded have the column empty.
        with_return = all(r.get("kept_return_to_go") not in (None, "") for r in rows)
        extra = ["return-to-go, batch", "return-to-go, kept"] if with_return else []
        out += _table(["method", "policy", "share in batches", "share of kept", "keep rate", *extra],
                      [[method, policy, _spread(g, "source_share"), _spread(g, "kept_share"), _spread(g, "keep_rate"),
                        *([_spread(g, "source_return_to_go", 1), _spread(g, "kept_return_to_go", 1)]
                          if with_return else [])]
                       for (method, policy), g in groups.items()])
        note = ("; return-to-go: the Monte Carlo return from a row to its episode's end, discounted by the "
                "runs' iql.discount, in the source domain - a value no learned model estimates") if with_return else ""
        out += ["", f"(mean +- std over the seeds where more than one was measured{note})", ""]
        out += _alignment_data(evidence, quality, seeds)
        out += _paired_expert_gain(rows)
        if with_return:
            out += _paired_return_gain(rows)
    for path in auc_files:
        rows = _csv(path)
        quality = path.stem[len("auc_"):]
        out += [f"Advantage ROC AUC, source `hopper-kinematic-{quality}`: P(A of a random {rows[0]['positive']} row "
                f"> A of a random {rows[0]['negative']} row); 0.5 = no information:", ""]
        # by model, then length (runs of other seeds or lengths append rows in any order)
        groups = dict(sorted(_by(rows, ("model", "steps")).items(), key=lambda kv: (kv[0][0] != "sql", kv[0][0],
                                                                                      int(kv[0][1]))))
        out += _table(["value model", "pretraining steps", "seeds", "AUC"],
                      [[model, f"{int(steps):,}", ", ".join(r["seed"] for r in g), _spread(g, "auc")]
                       for (model, steps), g in groups.items()]) + [""]
        out += _alignment_data(evidence, quality, sorted({r["seed"] for r in rows}))
    return out


def _data_version(regenerated: list[dict], dataset: str, timing: dict) -> str:
    """Which version of ``dataset`` a timed step read: the latest regeneration (a
    datasets_regenerated.jsonl row) before it finished on the same CPU (a row without a CPU matches
    any), else the files as first written (datasets.jsonl). Not the data generation of
    docs/evidence/generation-*: that is the directory the rows are in."""
    done = [d["regenerated_at"] for d in regenerated
            if d["path"] == dataset and d["regenerated_at"] <= timing["finished_at"]
            and timing.get("cpu", d["cpu"]) == d["cpu"]]
    return f"regenerated {max(done)}" if done else "as first written (datasets.jsonl)"


def _step_argument(command: str, step: str, flag: Optional[str] = None) -> Optional[str]:
    """The positional argument after ``step`` in a timed command, or the value after ``flag``."""
    words = shlex.split(command)
    if step not in words:
        return None
    rest = words[words.index(step) + 1:]
    if flag is None:
        return rest[0] if rest else None
    return rest[rest.index(flag) + 1] if flag in rest[:-1] else None


def _alignment_data(evidence: Path, quality: str, seeds: list[str]) -> list[str]:
    """One line per version of the source file: which seeds' rows were measured on it (their latest timing)."""
    dataset = f"hopper-kinematic-{quality}.hdf5"
    latest: dict[str, dict] = {}
    for timing in _jsonl(evidence / "timings.jsonl"):
        if timing.get("step") == "alignment" and _step_argument(timing["command"], "alignment") == quality:
            latest[_step_argument(timing["command"], "alignment", "--seeds")] = timing
    regenerated = _jsonl(evidence / "datasets_regenerated.jsonl")
    by_version: dict[str, list[str]] = {}
    for seed in seeds:
        label = _data_version(regenerated, dataset, latest[seed]) if seed in latest else "not recorded"
        by_version.setdefault(label, []).append(seed)
    return [f"Source data `{dataset}` of these rows: "
            + "; ".join(f"seed(s) {', '.join(s)}: {label}" for label, s in by_version.items()), ""]


def _paired_summary(gains: np.ndarray, baseline: str, unit: str = "") -> str:
    """Seed-paired differences against ``baseline``: mean (+- std over seeds), how many are above,
    and their range."""
    spread = f" +- {gains.std(ddof=1):.1f}" if gains.size > 1 else ""
    return (f"{gains.mean():+.1f}{spread}{unit} ({int((gains > 0).sum())} of {gains.size} seeds above {baseline}; "
            f"range {gains.min():+.1f} to {gains.max():+.1f})")


def _paired_expert_gain(rows: list[dict], baseline: str = "igdf", policy: str = "expert") -> list[str]:
    """Each method's share of ``policy`` among kept rows minus the baseline's, paired by seed: the
    seeds share the contrastive scorer, so the pairing removes the scorer's seed-to-seed spread."""
    share = {(r["method"], r["seed"]): float(r["kept_share"]) for r in rows if r["policy"] == policy}
    seeds = sorted({seed for method, seed in share if method == baseline})
    lines = []
    for method in dict.fromkeys(m for m, _ in share):
        if method == baseline:
            continue
        gains = np.array([share[(method, s)] - share[(baseline, s)] for s in seeds if (method, s) in share]) * 100
        if gains.size:
            lines.append(f"- {method}: {_paired_summary(gains, baseline, ' points')}")
    if not lines:
        return []
    return [f"{policy.capitalize()} share of the kept rows minus {baseline}'s, paired by seed:", "", *lines, ""]


def _paired_return_gain(rows: list[dict], baseline: str = "igdf") -> list[str]:
    """Per behaviour policy, each method's mean return-to-go of its kept rows minus the baseline's,
    paired by seed: whether the method keeps the better transitions *within* one policy's data,
    which the shares by policy cannot show."""
    value = {(r["method"], r["policy"], r["seed"]): float(r["kept_return_to_go"]) for r in rows}
    lines = []
    for method, policy in dict.fromkeys((m, p) for m, p, _ in value):
        if method == baseline:
            continue
        gains = np.array([value[(method, policy, s)] - value[(baseline, policy, s)]
                          for m, p, s in value if (m, p) == (method, policy) and (baseline, policy, s) in value])
        if gains.size:
            lines.append(f"- {method}, {policy} rows: {_paired_summary(gains, baseline)}")
    if not lines:
        return []
    return [f"Return-to-go of the kept rows minus {baseline}'s, per behaviour policy, paired by seed:", "",
            *lines, ""]


def _by(rows: list[dict], keys: tuple[str, ...]) -> dict[tuple, list[dict]]:
    """Rows grouped by ``keys``, groups in first-appearance order."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in keys), []).append(row)
    return groups


def _spread(rows: list[dict], key: str, digits: int = 3) -> str:
    values = np.array([float(r[key]) for r in rows])
    if values.size == 1:
        return f"{values[0]:.{digits}f}"
    return f"{values.mean():.{digits}f} +- {values.std(ddof=1):.{digits}f}"


def commands_section(evidence: Path) -> list[str]:
    rows = [[f"`{t['command']}`" + _command_detail(t), _f(t["wall_s"] / 60, 1), t["finished_at"]]
            for t in _jsonl(evidence / "timings.jsonl")]
    out = ["## 7. Commands and wall times", "",
           "Run on the project's 2-core CPU machine, other jobs beside them at times, so wall times are not "
           "benchmarks.", ""]
    return out + (_table(["command", "minutes", "finished"], rows) if rows else ["None run yet."]) + [""]


def _command_detail(timing: dict) -> str:
    """`` (<dataset>)`` for a dataset step, saying when it was regenerated rather than first made."""
    if "dataset" not in timing:
        return ""
    regenerated = timing.get("step") == "datasets-regenerate"
    return f" ({timing['dataset']}{', regenerated from the packed policy and checked' if regenerated else ''})"


def conclusion_section(results: Optional[dict], evidence: Optional[Path] = None) -> list[str]:
    out = ["## 6. What the numbers say", ""]
    pairs = {(p["x"], p["y"]): p for p in (results or {}).get("pairs", [])}
    findings = _alignment_findings(evidence) if evidence is not None else []
    if findings:
        findings = ["", "What the filters keep (section 5, no policy training), per source quality:", "", *findings]
    if PAIRS[0] not in pairs:
        return out + [f"No comparison of {PAIRS[0][0]} with {PAIRS[0][1]} has finished yet, so this document makes "
                      "no claim about DVDF's performance. The sections above are the groundwork: policies, data, "
                      "and the value-alignment measurements.", *findings, ""]
    cells = results["cells"]
    for key in PAIRS:
        if key not in pairs:
            continue
        pair, (x, y) = pairs[key], key
        if pair["ci_low"] > 0.5:
            verdict = f"**{x} beats {y}** here: the 95% CI of P({x} > {y}) excludes 0.5"
        elif pair["ci_high"] < 0.5:
            verdict = f"**{y} beats {x}** here: the 95% CI of P({x} > {y}) lies below 0.5"
        else:
            verdict = f"**No significant difference between {x} and {y}** here: the 95% CI of P({x} > {y}) includes 0.5"
        gaps = [f"{task} {cells[(task, x)]['mean'] - cells[(task, y)]['mean']:+.1f}"
                for task in sorted({t for t, _ in cells}) if (task, x) in cells and (task, y) in cells]
        out += [f"- {verdict} ({pair['tasks']} of 3 source qualities finished; last-{LAST_K} mean difference "
                f"{x} - {y}, in normalized points: {', '.join(gaps)})."]
    return out + findings + [""]


def _fewer_seeds(rows: list[dict], seeds: int) -> str:
    """``n seed(s)`` where a method or model was measured on fewer seeds than the table, else ""."""
    n = len({r["seed"] for r in rows})
    return f"{n} seed{'s' if n > 1 else ''}" if n < seeds else ""


def _dynamics_only_verdict(rows: list[dict], policy: str) -> str:
    """Whether igdf's kept share of ``policy`` differs from its batch share by more than two standard
    errors over seeds (no verdict from one seed)."""
    if len(rows) < 2:
        return "; one seed, so no verdict on the dynamics score" if rows else ""
    gap = np.array([float(r["kept_share"]) - float(r["source_share"]) for r in rows])
    if abs(gap.mean()) <= 2 * gap.std(ddof=1) / np.sqrt(gap.size):
        return (f"; the dynamics score alone (igdf) keeps {policy} rows about as often as they occur "
                f"({gap.mean() * 100:+.1f} +- {gap.std(ddof=1) * 100:.1f} points)")
    return (f"; the dynamics score alone (igdf) keeps {policy} rows {'less' if gap.mean() < 0 else 'more'} often "
            f"than they occur ({gap.mean() * 100:+.1f} +- {gap.std(ddof=1) * 100:.1f} points over seeds)")


def _kept_return_clause(rows: list[dict]) -> str:
    """The mean return-to-go of all kept rows per method (policies weighted by their kept share,
    averaged over seeds) against that of the drawn batches; "" for rows measured without it."""
    if not rows or any(r.get("kept_return_to_go") in (None, "") for r in rows):
        return ""

    def mean_over_seeds(group: list[dict], share: str, value: str) -> float:
        by_seed = _by(group, ("seed",)).values()
        return float(np.mean([sum(float(r[share]) * float(r[value]) for r in g) for g in by_seed]))

    methods = _by(rows, ("method",))
    batch = mean_over_seeds(next(iter(methods.values())), "source_share", "source_return_to_go")
    kept = ", ".join(f"{method} {mean_over_seeds(g, 'kept_share', 'kept_return_to_go'):.1f}"
                     for (method,), g in methods.items())
    return f"; the kept rows' mean return-to-go is {kept} (the batches' {batch:.1f})"


def _alignment_findings(evidence: Path, policy: str = "expert", steps: int = 100_000) -> list[str]:
    """One line per measured source quality: the ``policy`` share of the batches and of each method's
    kept rows (means over seeds), and the advantage AUC of each value model at the sweep's length."""
    lines = []
    for path in sorted((evidence / "alignment").glob("kept_*.csv")):
        quality = path.stem[len("kept_"):]
        rows = [r for r in _csv(path) if r["policy"] == policy]
        if not rows:
            continue
        seeds = len({r["seed"] for r in rows})
        batch = float(np.mean([float(r["source_share"]) for r in rows]))
        shares = []
        for (method,), group in _by(rows, ("method",)).items():
            fewer = _fewer_seeds(group, seeds)
            shares.append(f"{method} {np.mean([float(r['kept_share']) for r in group]):.1%}"
                          + (f" ({fewer})" if fewer else ""))
        shares = ", ".join(shares)
        line = (f"- `{quality}` ({seeds} seed(s)): {policy} rows are {batch:.1%} of the source batches and "
                f"{shares} of the kept rows")
        line += _dynamics_only_verdict([r for r in rows if r["method"] == "igdf"], policy)
        line += _kept_return_clause(_csv(path))
        auc = [r for r in _csv(evidence / "alignment" / f"auc_{quality}.csv") if int(r["steps"]) == steps]
        models = []
        for (model,), group in _by(auc, ("model",)).items():
            label = ", ".join(filter(None, (model.upper(), _fewer_seeds(group, seeds))))
            models.append(f"{np.mean([float(r['auc']) for r in group]):.2f} ({label})")
        if models:
            line += (f"; the stage-1 advantage ranks {auc[0]['positive']} above {auc[0]['negative']} rows with "
                     f"ROC AUC {', '.join(models)} after {steps:,} steps")
        lines.append(line + ".")
    return lines


def _files_in(evidence: Path, doc_dir: Path) -> str:
    if evidence.resolve() == doc_dir.resolve():
        return "the files in this directory"
    return f"the files in `{_relative(evidence, doc_dir)}/` (beside this document)"


def generations_section(generations: Sequence[Path], doc_dir: Path) -> list[str]:
    """One entry per earlier data generation: what it was (the first paragraph of its README.md)
    and a link to its own EVIDENCE.md. Results on different datasets are never pooled."""
    if not generations:
        return []
    out = ["## Earlier data generations", "",
           "Runs on datasets made by an earlier recipe are kept with the files they were computed from, each "
           "in its own document. They are not pooled with the results above.", ""]
    for directory in generations:
        out += [f"- [{directory.name}]({_relative(directory / 'EVIDENCE.md', doc_dir)}): "
                f"{generation_summary(directory)}".rstrip()]
    return out + [""]


def generation_summary(directory: Path) -> str:
    """The first paragraph after the title of a generation's README.md (what sets it apart)."""
    readme = directory / "README.md"
    paragraphs = readme.read_text().split("\n\n") if readme.is_file() else []
    return paragraphs[1].replace("\n", " ").strip() if len(paragraphs) > 1 else ""


def render_evidence(evidence: str | Path, out: str | Path, reps: int = DEFAULT_REPS,
                    bench_file: Optional[Path] = None, generations: Sequence[Path] = (),
                    generation_note: str = "") -> Path:
    """Write ``out`` (docs/EVIDENCE.md) from ``evidence``; ``reps`` bootstrap resamples per CI.

    ``bench_file`` is the measured ``dvdf bench`` rate of the budget (default ``<evidence>/bench.json``);
    ``generations`` are directories of earlier data generations, linked from a closing section;
    ``generation_note`` (an earlier generation's own document) says under the title what sets it apart.
    """
    evidence, out = Path(evidence), Path(out)
    results_lines, results = results_section(evidence, out.parent, reps)
    lines = ["# Evidence: DVDF against IGDF at laptop scale", "",
             f"Generated by `python scripts/evidence.py render` from {_files_in(evidence, out.parent)}; every "
             "number below is computed from them. Protocol: `tune_configs/evidence_hopper.yaml` (source "
             "hopper-kinematic, target hopper with 5,000 transitions, lambda 0.7 and xi 0.5 fixed, 5 seeds, "
             "100k steps).", ""]
    if generation_note:
        lines += [f"**An earlier data generation.** {generation_note}", ""]
    lines += policies_section(evidence, out.parent) + datasets_section(evidence) + budget_section(evidence, bench_file)
    lines += results_lines + alignment_section(evidence) + conclusion_section(results, evidence)
    lines += commands_section(evidence) + generations_section(generations, out.parent)
    atomic_write_text(out, "\n".join(lines).rstrip() + "\n")
    return out
