"""The evidence experiment's steps (docs/EVIDENCE.md), each timed into docs/evidence/timings.jsonl.

Run from the repository root with the project's interpreter, in this order (each step skips
what is already there, so an interrupted step is rerun with the same command)::

    .venv/bin/python scripts/evidence.py datasets           # SAC policies (cached) + every dataset
    .venv/bin/python scripts/evidence.py pack-policies      # the policies, trimmed, into docs/evidence
    .venv/bin/python scripts/evidence.py alignment random-expert   # kept shares + advantage AUC
    .venv/bin/python scripts/evidence.py bench              # measured seed-steps/s for the budget
    .venv/bin/python scripts/evidence.py sweep medium-expert        # one quality: sweep + archive
    .venv/bin/python scripts/evidence.py render             # docs/EVIDENCE.md from docs/evidence/

Datasets live in ``--data-dir`` (default ``dvdf_data``), stages in ``--cache-dir`` (default
``dvdf_cache``), behaviour policies in the policy cache (``$DVDF_POLICY_CACHE`` or
``~/.cache/dvdf/policies``). A later session on a fresh machine points the policy cache at the
packed policies (``DVDF_POLICY_CACHE=docs/evidence/policies``) and regenerates the datasets in
minutes instead of retraining SAC.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SWEEP_FILE = ROOT / "tune_configs" / "evidence_hopper.yaml"
EVIDENCE = ROOT / "docs" / "evidence"
DOMAINS = ("hopper-kinematic", "hopper")            # source, target
# Single-policy files first: the mixtures then read them instead of rolling out again.
DATASET_ORDER = ("random", "medium", "expert", "medium-expert", "random-expert", "medium-replay")
# Which two behaviour policies the advantage should tell apart, per source quality.
AUC_PAIRS = {"random-expert": ("expert", "random"), "medium-expert": ("expert", "medium")}
ALIGNMENT_METHODS = ("igdf", "dvdf-igdf", "dvdf-iql-adv")


def _record(step: str, argv: list[str], started: float, overrides: list[str] = (), **extra) -> None:
    """Append the step's timing row; its command names the ``--set`` overrides, which are part of
    what ran (e.g. a subset of the methods) and must not read as the full step."""
    sets = [f"--set {shlex.quote(o)}" for o in overrides]
    row = {"step": step, "command": " ".join(["python scripts/evidence.py", *sets, *argv]),
           "wall_s": round(time.perf_counter() - started, 1), "finished_at": time.strftime("%Y-%m-%d %H:%M:%S"),
           "cpus": os.cpu_count(), "cpu": _cpu(), **extra}
    EVIDENCE.mkdir(parents=True, exist_ok=True)
    with open(EVIDENCE / "timings.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps(row) + "\n")


def _sweep(args, quality: str | None = None):
    from dvdf.tune.spec import load_sweep

    overrides = [f"data_dir={args.data_dir}", f"cache_dir={args.cache_dir}", *args.overrides]
    sweep = load_sweep(SWEEP_FILE, overrides)
    return sweep, [g for g in sweep.groups if quality is None or g.quality == quality]


def _merge_csv(path: Path, rows: list[dict], key: tuple[str, ...]) -> None:
    """Write ``rows`` into ``path``, replacing the rows of the same ``key`` and keeping the others.

    A later run of one seed or one pretraining length thus adds to the file instead of dropping
    what earlier runs measured.
    """
    from dvdf.atomic import atomic_open

    merged: dict[tuple, dict] = {}
    if path.exists():
        with open(path, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                merged[tuple(str(row[k]) for k in key)] = row
    for row in rows:
        merged[tuple(str(row[k]) for k in key)] = row
    with atomic_open(path) as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(merged.values())


# ---------------------------------------------------------------------------------- steps
def datasets(args) -> None:
    from dvdf.data.collect import collect_dataset, dataset_path
    from dvdf.envs.catalogue import normalized_score
    from dvdf.errors import DvdfError

    sweep, groups = _sweep(args)
    collect = sweep.spec.base.data.collect
    qualities = {g.quality for g in groups}
    wanted = [q for q in DATASET_ORDER if q in qualities or q in ("random", "medium", "expert")]
    if args.qualities:
        wanted = [q for q in wanted if q in args.qualities]
    listed = {row["path"]: row for row in _jsonl_rows(EVIDENCE / "datasets.jsonl")}
    for domain in args.domains:
        for quality in wanted:
            path = dataset_path(args.data_dir, domain, quality)
            if path.name in listed and path.exists():
                continue
            started = time.perf_counter()
            if path.exists():   # made by an earlier command (e.g. dvdf collect): listed, not timed
                summary, started = _file_summary(path, domain), None
            else:
                summary = collect_dataset(domain, quality, path, collect, cache_dir=args.policy_cache,
                                          progress=not args.no_progress)
            summary["return_normalized"] = normalized_score(domain, summary["return_mean"])
            summary["policy_dir"] = Path(summary["policy_dir"]).name
            summary["path"] = path.name
            if path.name in listed:   # regenerated on a fresh machine: from the committed policies?
                try:
                    same = _check_regenerated(listed[path.name], summary)
                except DvdfError:
                    path.unlink()     # not the evidence's dataset: never left for a later step to use
                    raise
                _record("datasets-regenerate", ["datasets", "--domains", domain], started, args.overrides,
                        dataset=path.name, bitwise_same_rollouts=same)
                if same:
                    print(f"{path}: regenerated, matches docs/evidence/datasets.jsonl", flush=True)
                else:
                    with open(EVIDENCE / "datasets_regenerated.jsonl", "a", encoding="utf-8") as handle:
                        handle.write(json.dumps({**summary, "cpu": _cpu(),
                                                 "regenerated_at": time.strftime("%Y-%m-%d %H:%M:%S")}) + "\n")
                    print(f"{path}: regenerated from the same policy, but the rollouts differ from "
                          f"docs/evidence/datasets.jsonl (episodes {summary['episodes']} vs "
                          f"{listed[path.name]['episodes']}, mean return {summary['return_mean']:.1f} vs "
                          f"{listed[path.name]['return_mean']:.1f}); recorded in datasets_regenerated.jsonl",
                          flush=True)
                continue
            if started is not None:
                _record("datasets", ["datasets", "--domains", domain], started, args.overrides, dataset=path.name)
            with open(EVIDENCE / "datasets.jsonl", "a", encoding="utf-8") as handle:
                handle.write(json.dumps({**summary, "cpu": _cpu()}) + "\n")
            print(json.dumps(summary), flush=True)


# A regenerated dataset's mean return may differ this much from the recorded one before the
# policy itself is suspect (rollouts of a chaotic robot differ once float rounding does).
REGENERATED_RETURN_TOLERANCE = 0.10


def _check_regenerated(recorded: dict, summary: dict) -> bool:
    """Whether a dataset regenerated from the packed policies is bit for bit the recorded one.

    Policy, size and the policy's training step must match exactly (else it is an error). The
    rollouts are seeded, but on a CPU with other vector kernels (AVX-512/AMX dispatch in torch)
    the actor's outputs differ in the last bits and the hopper's chaotic dynamics turn that into
    other episodes: then the episode count and mean return differ a little, which is reported
    (False), and a mean return off by more than REGENERATED_RETURN_TOLERANCE is an error.
    """
    from dvdf.errors import DvdfError

    for key in ("policy_dir", "transitions", "behaviour_policy_steps"):
        if recorded[key] != summary[key]:
            raise DvdfError(f"{summary['path']}: regenerated {key}={summary[key]!r}, "
                            f"docs/evidence/datasets.jsonl has {recorded[key]!r}")
    gap = abs(recorded["return_mean"] - summary["return_mean"])
    scale = max(1.0, abs(recorded["return_mean"]))
    if gap > REGENERATED_RETURN_TOLERANCE * scale:
        raise DvdfError(f"{summary['path']}: regenerated return_mean={summary['return_mean']:.3f}, "
                        f"docs/evidence/datasets.jsonl has {recorded['return_mean']:.3f}")
    return recorded["episodes"] == summary["episodes"] and gap <= 1e-3 * scale


@functools.cache
def _cpu() -> str:
    """The CPU model and its widest vector extensions: what decides torch's kernels here."""
    model, flags = "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "unknown":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    extensions = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f in flags]
    return f"{model} ({', '.join(extensions) or 'no avx2'})"


def _jsonl_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def _file_summary(path: Path, domain: str) -> dict:
    """The summary collect_dataset prints, read back from an existing file."""
    from dvdf.data import read_dataset

    dataset = read_dataset(path, domain=domain)
    returns, meta = dataset.episode_returns(), dataset.metadata
    return {"path": str(path), "domain": domain, "quality": meta["quality"], "transitions": len(dataset),
            "episodes": int(len(returns)), "return_mean": float(returns.mean()),
            "behaviour_policy_steps": int(meta["behaviour_policy_steps"]),
            "behaviour_policy_mean_return": float(meta["behaviour_policy_mean_return"]),
            "policy_dir": str(meta["sac_run"])}


def pack_policies(args) -> None:
    """Trim each domain's SAC run to what dataset generation reads, into docs/evidence/policies:
    settings, result and curve, the expert choice and its candidates' actors, the random, medium
    and final actors, and the replay rows up to the medium snapshot (for medium-replay) - the medium
    of both expert rules, so generation 1's datasets can be regenerated too. Checkpoints and the
    other snapshots are left out."""
    from dvdf.config import CollectConfig
    from dvdf.data.behaviour import SACConfig, load_result
    from dvdf.data.collect import expert_snapshot, pick_medium, policy_run_dir
    from dvdf.data.expert import selection_file

    sweep, _ = _sweep(args)
    collect: CollectConfig = sweep.spec.base.data.collect
    for domain in DOMAINS:
        run = policy_run_dir(domain, SACConfig.from_collect(collect), args.policy_cache)
        result = load_result(run)
        if result is None:
            raise SystemExit(f"{run}: SAC run not completed; run the datasets step first")
        expert = expert_snapshot(result, collect)
        medium = pick_medium(result.snapshots, expert)
        # Generation 1's medium (the final-actor rule) too, so its datasets stay reproducible.
        final_medium = pick_medium(result.snapshots)
        replay_upto = max(medium["step"], final_medium["step"])
        out = EVIDENCE / "policies" / run.name
        if out.exists():
            shutil.rmtree(out)   # a packed run of an earlier rule or training: replaced whole
        (out / "snapshots").mkdir(parents=True)
        (out / "replay").mkdir()
        names = ["settings.json", "result.json", "curve.jsonl"]
        chosen = selection_file(run, collect.expert_eval_episodes) if collect.expert == "best" else None
        if chosen is not None:
            names.append(chosen.name)
        for name in names:
            shutil.copyfile(run / name, out / name)
        candidates = expert.get("selection", {}).get("candidates", [])
        for snap in (result.random, medium, final_medium, expert, result.snapshots[-1], *candidates):
            shutil.copyfile(run / snap["path"], out / snap["path"])
        for chunk in sorted((run / "replay").glob("rows_*.pt")):
            first = int(chunk.stem.split("_")[1])
            if first < replay_upto:
                shutil.copyfile(chunk, out / "replay" / chunk.name)
        shutil.copyfile(run / "curve.jsonl", EVIDENCE / f"{domain}_sac_curve.jsonl")
        choice = EVIDENCE / f"{domain}_expert_choice.json"
        if chosen is not None:
            shutil.copyfile(chosen, choice)
        elif choice.exists():
            choice.unlink()   # the report reads its absence as the final-actor rule
        print(f"{out}: {sum(f.stat().st_size for f in out.rglob('*') if f.is_file()) / 1e6:.1f} MB")


def alignment(args) -> None:
    """Kept shares and advantage AUCs of ``--methods``, one seed at a time: each finished seed's rows
    are merged into the CSVs at once, so a run stopped midway keeps them."""
    from dvdf.alignment import advantage_auc, kept_shares
    from dvdf.methods import get_method

    sweep, groups = _sweep(args, args.quality)
    if not groups:
        raise SystemExit(f"{args.quality}: not a quality of {SWEEP_FILE.name}")
    group = groups[0]
    out = EVIDENCE / "alignment"
    out.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        started = time.perf_counter()
        configs = {s.method: sweep.experiment_config(s, seed, s.fixed.get("tradeoff", 0.7),
                                                     s.fixed.get("keep_ratio", 0.5))
                   for s in sweep.studies if s.group == group and s.method in args.methods}
        kept_rows = [{"quality": args.quality, "seed": seed, **dataclasses.asdict(share)}
                     for share in kept_shares([configs[m] for m in args.methods], batches=args.batches, seed=seed,
                                              progress=not args.no_progress)]
        auc_rows = []
        if args.quality in AUC_PAIRS:
            positive, negative = AUC_PAIRS[args.quality]
            for method in (m for m in args.methods if get_method(m).uses_value):
                for auc in advantage_auc(configs[method], positive, negative, args.steps,
                                         progress=not args.no_progress):
                    auc_rows.append({"quality": args.quality, "seed": seed, **dataclasses.asdict(auc)})
        _merge_csv(out / f"kept_{args.quality}.csv", kept_rows, ("quality", "seed", "method", "policy"))
        if auc_rows:
            _merge_csv(out / f"auc_{args.quality}.csv", auc_rows, ("quality", "seed", "model", "steps"))
        argv = ["alignment", args.quality, "--seeds", str(seed)]
        if tuple(args.methods) != ALIGNMENT_METHODS:
            argv += ["--methods", *args.methods]
        _record("alignment", argv, started, args.overrides)
        print(f"seed {seed}: written to {out}", flush=True)


def bench(args) -> None:
    """Seed-steps/s of the evidence trial's step (5 seeds batched, compiled) on one thread."""
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "dvdf.cli", "bench", "--json", "--threads", "1",
                             "--members", "5", "--compile", "--no-evaluation", "--no-simulation"],
                            check=True, capture_output=True, text=True, cwd=ROOT)
    measured = json.loads(result.stdout)
    _record("bench", ["bench"], started)
    from dvdf.atomic import atomic_write_text

    atomic_write_text(EVIDENCE / "bench.json", json.dumps(measured, indent=1) + "\n")
    print(f"written: {EVIDENCE / 'bench.json'}")


def sweep(args) -> None:
    from dvdf.report.archive import archive_runs

    _, groups = _sweep(args, args.quality)
    if not groups:
        raise SystemExit(f"{args.quality}: not a quality of {SWEEP_FILE.name}")
    name = f"evidence_hopper-{args.quality}"
    group = ("groups=[{robots: [hopper], shifts: [kinematic], qualities: [" + args.quality
             + "], target: [{transitions: 5000}]}]")
    command = [sys.executable, "-m", "dvdf.cli", "sweep", str(SWEEP_FILE), "--name", name, "--set", group,
               "--set", f"data_dir={args.data_dir}", "--set", f"cache_dir={args.cache_dir}",
               "--storage", str(args.storage), *[f"--set={o}" for o in args.overrides]]
    if (Path(args.storage) / name).exists():
        command.append("--resume")
    started = time.perf_counter()
    code = subprocess.run(command, cwd=ROOT).returncode
    archived = archive_runs(Path(args.storage) / name, EVIDENCE / "runs")
    _record("sweep", ["sweep", args.quality], started, args.overrides, exit_code=code,
            runs_archived=len(archived.copied), runs_unfinished=len(archived.skipped))
    print(f"archived {len(archived.copied)} run(s) into {EVIDENCE / 'runs'}; unfinished: {len(archived.skipped)}")
    if code:
        raise SystemExit(code)


def render(args) -> None:
    """docs/EVIDENCE.md from docs/evidence/, and each earlier data generation's own EVIDENCE.md
    from its directory (docs/evidence/generation-*/), linked from the main one. Not timed: it
    only reads."""
    from dvdf.report.evidence import generation_summary, render_evidence

    bench = EVIDENCE / "bench.json"   # the machine's measured rate, shared by the generations
    generations = sorted(EVIDENCE.glob("generation-*/"))
    for directory in generations:
        path = render_evidence(directory, directory / "EVIDENCE.md", bench_file=bench,
                               generation_note=generation_summary(directory))
        print(f"written: {path}")
    out = ROOT / "docs" / "EVIDENCE.md" if args.evidence_dir is None else EVIDENCE.parent / "EVIDENCE.md"
    print(f"written: {render_evidence(EVIDENCE, out, generations=generations)}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="dvdf_data")
    parser.add_argument("--cache-dir", default="dvdf_cache", help="stage cache (value models, scores)")
    parser.add_argument("--policy-cache", default=None,
                        help="behaviour-policy cache (default: $DVDF_POLICY_CACHE or ~/.cache/dvdf/policies)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default 1: run one step per core side by side)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a value of the sweep file (a smaller trial of the pipeline)")
    parser.add_argument("--evidence-dir", default=None, help="where the measured files go (default docs/evidence)")
    steps = parser.add_subparsers(dest="step", required=True)
    make = steps.add_parser("datasets")
    make.add_argument("--domains", nargs="+", default=list(DOMAINS), choices=DOMAINS,
                      help="one per process to generate the domains side by side")
    make.add_argument("--qualities", nargs="+", choices=DATASET_ORDER, default=None,
                      help="only these qualities (a mixture reads its parts, so list them too)")
    make.set_defaults(func=datasets)
    steps.add_parser("pack-policies").set_defaults(func=pack_policies)
    align = steps.add_parser("alignment")
    align.add_argument("quality")
    align.add_argument("--seeds", type=int, nargs="+", default=[100])
    align.add_argument("--steps", type=int, nargs="+", default=[10_000, 30_000, 100_000],
                       help="value-model lengths of the advantage-AUC curve (the sweep's own is 100k)")
    align.add_argument("--batches", type=int, default=2000)
    align.add_argument("--methods", nargs="+", choices=ALIGNMENT_METHODS, default=list(ALIGNMENT_METHODS),
                       help="measure only these (dvdf-iql-adv trains an IQL value model per length: the slow one)")
    align.set_defaults(func=alignment)
    steps.add_parser("bench").set_defaults(func=bench)
    run = steps.add_parser("sweep")
    run.add_argument("quality")
    run.add_argument("--storage", default="results")
    run.set_defaults(func=sweep)
    steps.add_parser("render").set_defaults(func=render)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    global EVIDENCE
    EVIDENCE = Path(args.evidence_dir) if args.evidence_dir else EVIDENCE
    if args.policy_cache is None:
        from dvdf.data.collect import default_policy_cache
        args.policy_cache = str(default_policy_cache())
    from dvdf.errors import DvdfError

    try:
        args.func(args)
    except DvdfError as exc:   # bad input: one line, exit status 2, as the dvdf command line does
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
