"""``dvdf train CONFIG.yaml [--set k=v ...] [--out DIR] [--resume]``: one experiment, no Ray.

Output directory layout::

    config.yaml        the resolved configuration (every default filled in)
    metrics.jsonl      one JSON line per evaluation
    tb/                TensorBoard events (losses, Q/V/advantage stats, score, filter diagnostics)
    checkpoint/        the latest checkpoint (``--resume`` continues from it bit-for-bit)
    summary.json       status (finished | diverged), final and best normalized score, steps, wall time

A run whose losses or state become non-finite stops at the next evaluation with one line
``error: run diverged at step N: <quantity>`` and exit status 2; its last good checkpoint stays and
summary.json says ``"status": "diverged"`` with the step and the quantity.

With ``--seeds 100,200,300`` the seeds train as ONE batched model (one process, one batched
gradient step for all of them; each member equals the single run of its seed up to float
rounding). Each seed then writes config.yaml, metrics.jsonl and tb/ into ``seed_<seed>/``;
summary.json holds the mean over seeds and each seed's scores.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train and evaluate one experiment (no Ray)",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="experiment YAML (see tune_configs/ for examples)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set filter.tradeoff=0.5 (repeatable)")
    parser.add_argument("--out", default=None, help="output directory (default: runs/<name>-<time>)")
    parser.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--seeds", type=_seed_list, default=None, metavar="S1,S2,...",
                        help="train these seeds as one batched model instead of the config's seed")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    import math
    import sys
    import time
    from pathlib import Path

    from dvdf import __version__
    from dvdf.atomic import atomic_write_text
    from dvdf.config import load_experiment_config
    from dvdf.errors import DvdfError
    from dvdf.experiment import run_experiment
    from dvdf.layout import BEST_SCORE, CHECKPOINT_FILE, DIVERGED, FINISHED, RUN_CHECKPOINT_DIR, RUN_SUMMARY, SCORE
    from dvdf.validation import check_directory, validate_experiment

    config = load_experiment_config(args.config, args.overrides)
    validate_experiment(config)
    out = Path(args.out) if args.out else Path("runs") / f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    check_directory(str(out), "--out")
    checkpoint = out / RUN_CHECKPOINT_DIR
    if args.resume and not (checkpoint / CHECKPOINT_FILE).is_file():
        raise DvdfError(f"{out}: nothing to resume (no {checkpoint / CHECKPOINT_FILE})")
    if not args.resume and (checkpoint / CHECKPOINT_FILE).is_file():
        raise DvdfError(f"{out}: already holds a run; pass --resume to continue it or choose another --out")

    started = time.time()
    print(f"dvdf train: {config.filter.method} {config.data.source_domain} -> {config.data.target_domain} "
          f"({config.data.quality}){_filter_settings(config)}, out={out}", file=sys.stderr)
    from dvdf.algos.compile_mode import resolve_compile_mode
    from dvdf.experiment import resolve_device

    mode, reason = resolve_compile_mode(config.iql, resolve_device(config.device))
    print(f"  update: iql.compile {mode} ({reason}), iql.step_order {config.iql.step_order}", file=sys.stderr)
    last = None
    for report in run_experiment(config, resume=checkpoint if args.resume else None, out_dir=out,
                                 progress=not args.no_progress and sys.stderr.isatty(), seeds=args.seeds):
        last = report
        if report.diverged is not None:
            break
        report.save(checkpoint)
        if not sys.stderr.isatty() or args.no_progress:
            print(f"step {report.step}: normalized score {report.metrics[SCORE]:.2f}", file=sys.stderr)
    if last is None:  # resumed a run that had already finished
        print(f"{out}: run already complete", file=sys.stderr)
        return 0
    summary = {
        "status": FINISHED if last.diverged is None else DIVERGED,
        "final_normalized_score": last.metrics[SCORE],
        "best_normalized_score": last.metrics[BEST_SCORE],
        "steps": last.step,
        "wall_time_s": round(time.time() - started, 2),
        "method": config.filter.method,
        "tradeoff": config.filter.tradeoff,
        "keep_ratio": config.filter.keep_ratio,
        "seed": config.seed,
        "dvdf_version": __version__,
    }
    if args.seeds is not None:
        del summary["seed"]
        summary["seeds"] = {str(seed): {"final_normalized_score": m[SCORE], "best_normalized_score": m[BEST_SCORE]}
                            for seed, m in last.members.items()}
    for key, value in list(summary.items()):   # a diverged run: nan score, no best yet -> null (valid JSON)
        if isinstance(value, float) and not math.isfinite(value):
            summary[key] = None
    if last.diverged is not None:
        summary.update(diverged_step=last.diverged.step, diverged_quantity=last.diverged.quantity)
    atomic_write_text(out / RUN_SUMMARY, json.dumps(summary, indent=2) + "\n")
    if last.diverged is not None:
        raise DvdfError(last.diverged.message)
    print(json.dumps(summary))
    return 0


def _filter_settings(config) -> str:
    """Only the filter parameters the method uses: lambda for dvdf-*, xi for every filtering method."""
    method = config.filter.spec
    if not method.selects:
        return ""
    parts = [f"lambda={config.filter.tradeoff}"] if method.uses_tradeoff else []
    return ", " + " ".join(parts + [f"xi={config.filter.keep_ratio}"])


def _seed_list(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"expected distinct seeds, got {text!r}")
    return seeds
