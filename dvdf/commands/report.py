"""``dvdf report EXPERIMENT_DIR [--out DIR] [--last-k K] [--pair X,Y ...] [--json]``: tables and figures.

EXPERIMENT_DIR is a ``dvdf train`` output directory or a sweep's experiment directory (finished,
still running, or with failed or diverged trials). The report is a self-contained folder (default
EXPERIMENT_DIR/report) whose README.md links every table and figure:

    tables.md, *.csv     IQM and mean over tasks x seeds with 95% stratified-bootstrap CIs and the
                         probability of improvement P(X > Y) of each DVDF variant over its baseline
                         (rliable); per-task scores - last-k mean (headline), final, best-of-run
                         (optimistic) - as mean +- std, n, 95% CI, fixed/tuned with the tuning budget;
                         totals per shift type, DVDF vs IGDF/OTDF (relative change, tasks won/lost)
    figures/             IQM/mean intervals, performance profile, tuning budget per study, learning
                         curves per task, filter diagnostics, lambda/xi heatmaps and lines with CIs
"""

from __future__ import annotations

import argparse

from dvdf.errors import DvdfError


def _pair(text: str) -> tuple[str, str]:
    from dvdf.methods import get_method

    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
        raise DvdfError(f"--pair {text!r}: expected two different methods as X,Y (e.g. dvdf-igdf,iql-mix)")
    for name in parts:
        get_method(name.split(" [")[0])
    return parts[0], parts[1]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("report", help="tables and figures of a run or a sweep",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", metavar="EXPERIMENT_DIR",
                        help="a 'dvdf train' run or a sweep directory")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="output folder (default: EXPERIMENT_DIR/report)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object describing what was written")
    parser.add_argument("--last-k", type=int, default=5, metavar="K",
                        help="the headline score is the mean of each run's last K evaluations (default 5)")
    parser.add_argument("--pair", action="append", default=[], metavar="X,Y",
                        help="also report P(X > Y) for these two methods (repeatable); each DVDF variant is "
                             "compared with its baseline anyway")
    parser.add_argument("--bootstrap-reps", type=int, default=2000, metavar="N",
                        help="bootstrap resamples for the confidence intervals (default 2000)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from dvdf.commands._common import print_json
    from dvdf.report import build_report
    from dvdf.report.analysis import Options

    options = Options(last_k=args.last_k, pairs=tuple(_pair(text) for text in args.pair), reps=args.bootstrap_reps)
    summary = build_report(args.experiment, args.out, options=options,
                           progress=not args.no_progress and not args.json and sys.stderr.isatty())
    if args.json:
        print_json(summary)
        return 0
    runs = summary["runs"]
    print(f"report written to {summary['index']}: {summary['tasks']} task(s), "
          f"{len(summary['methods'])} method(s), {len(summary['figures'])} figure(s); runs: "
          f"{runs['finished']} finished, {runs['diverged']} diverged, {runs['partial']} partial, "
          f"{runs['failed']} failed, {runs['pending']} pending")
    if summary["failed_trials"]:
        print(f"{len(summary['failed_trials'])} failed trial(s) are listed in the README", file=sys.stderr)
    return 0
