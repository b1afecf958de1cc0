"""``dvdf bench``: the one bench command - its arguments, validation and printing. What it measures
lives in :mod:`dvdf.bench`; each thread count runs in a fresh process (``dvdf bench --worker``)."""

from __future__ import annotations

import argparse

MODES = ("off", "losses", "step")   # iql.compile values the --members section can time


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench", help="measure training-step, contrastive-step and evaluation speed",
        description="Steps/s of one dvdf-igdf gradient step (128 source + 128 target, hopper sizes): eager, "
                    "compiled whole step and the authors' step side by side, and the default mode's ratio to "
                    "the authors'; also with K seeds as one batched model (--members), eager and compiled "
                    "(--compile); steps/s of one contrastive-scorer step; seconds for 10 hopper evaluation "
                    "episodes. Each thread count runs in a fresh process.")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], metavar="N",
                        help="torch intra-op thread counts to measure (default: 1 2)")
    parser.add_argument("--steps", type=int, default=300, help="timed steps per round (default: 300)")
    parser.add_argument("--warmup", type=int, default=50, help="untimed steps first (default: 50)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed rounds; the fastest counts (default: 3)")
    parser.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:N (default: cpu)")
    parser.add_argument("--members", type=int, nargs="+", default=[], metavar="K",
                        help="also time K seeds as one batched model, e.g. --members 1 8 32")
    parser.add_argument("--compile", action="store_true",
                        help="time the --members steps compiled as well as eager: iql.compile losses "
                             "(forward, losses, backward) and step (the whole update)")
    parser.add_argument("--train-modes", nargs="+", choices=("off", "step"), default=["off", "step"],
                        metavar="MODE", help="iql.compile modes of the training-step table, timed beside the "
                                             "authors' step (default: off step; step needs a C++ compiler or a GPU)")
    parser.add_argument("--no-evaluation", action="store_true", help="skip the evaluation timing")
    parser.add_argument("--no-simulation", action="store_true",
                        help="skip the domain-build and replay-check timings")
    parser.add_argument("--sac", action="store_true",
                        help="also time the behaviour-policy SAC update (batch 256, 2x256; eager and compiled) "
                             "and the env-steps/s of data collection with 1 and 2 rollout workers")
    # Internal: one measurement in this process (run_benchmark starts one per thread count).
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--compile-modes", nargs="+", choices=MODES, default=None, help=argparse.SUPPRESS)
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from dvdf.errors import DvdfError

    if any(n < 1 for n in args.threads):
        raise DvdfError(f"bench --threads must be >= 1, got {args.threads}")
    if any(k < 1 for k in args.members):
        raise DvdfError(f"bench --members must be >= 1, got {args.members}")
    if args.steps < 1 or args.repeats < 1 or args.warmup < 0:
        raise DvdfError("bench --steps and --repeats must be >= 1 and --warmup >= 0")
    import torch

    try:
        torch.device(args.device)
    except RuntimeError as exc:
        raise DvdfError(f"bench --device: {exc}") from None
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        raise DvdfError(f"bench --device {args.device}: CUDA is not available")

    from dvdf import bench

    modes = args.compile_modes or (MODES if args.compile else ("off",))
    unavailable = bench.compile_available(args.device)
    train_modes = [m for m in args.train_modes if m == "off" or not unavailable]   # the table says why not
    if unavailable and set(modes) - {"off"}:
        raise DvdfError(f"bench --compile on {args.device}: {unavailable}")
    if args.worker:
        import json

        print(json.dumps(bench.measure(args.threads[0], args.steps, args.warmup, args.repeats, args.device,
                                       args.members, modes, not args.no_evaluation, train_modes)))
        return 0
    result = bench.run_benchmark(args.threads, args.steps, args.warmup, args.repeats, args.device,
                                 simulation=not args.no_simulation, members=args.members, compile_modes=modes,
                                 evaluation=not args.no_evaluation, train_modes=train_modes)
    if args.sac:
        from dvdf.bench_sac import run_sac_benchmark

        sac_modes = ("off",) if unavailable else ("off", "step")
        result["sac"] = run_sac_benchmark(args.threads, args.steps, args.warmup, args.repeats, args.device,
                                          modes=sac_modes)
    if args.json:
        from dvdf.commands._common import print_json

        print_json(result)
        return 0
    print_result(result, args)
    return 0


def print_result(result: dict, args: argparse.Namespace) -> None:
    print(f"device: {result['device']}  (torch {result['torch']}; best of {args.repeats} x {args.steps} "
          f"steps; load average {result['load_average_1min']} on {result['cores']} cores)")
    print(f"{'threads':>8} {'training step/s':>16} {'(per CPU-s)':>12} {'x authors (per CPU-s)':>22}")
    for n, train in result["train"].items():
        for name, rate in train["steps_per_s"].items():
            ratio = train["vs_authors_per_s"].get(name)
            ratio_cpu = train["vs_authors_per_cpu_s"].get(name)
            mark = "  <- default" if name == train["default"] else ""
            times = f"{ratio:.2f}x ({ratio_cpu:.2f}x)" if ratio is not None else "1.00x"
            print(f"{n:>8} {name:>16}: {rate:>7.1f} {train['steps_per_cpu_s'][name]:>12.1f} {times:>22}{mark}")
        if "compile_s" in train:
            print(f"{'':>8} compiling the whole step took {train['compile_s']:.1f} s")
        if "compiled_step_unavailable" in train:
            print(f"{'':>8} compiled step not timed: {train['compiled_step_unavailable']}")
        print(f"{'':>8} default ({train['default_reason']})")
    for n in result["contrastive_step_per_s"]:
        print(f"{n:>8} threads: contrastive step {result['contrastive_step_per_s'][n]:.1f}/s "
              f"({result['contrastive_step_per_cpu_s'][n]:.1f} per CPU-s)")
    for n, by_k in result["members"].items():
        for k, modes in by_k.items():
            for mode, rates in modes.items():
                utilization = rates.get("gpu_utilization_percent")
                gpu = f", GPU busy {utilization:.0f}%" if utilization is not None else ""
                print(f"{n:>8} threads, K={k:>3} members, {mode:>15}: {rates['steps_per_s']:>8.1f} steps/s per member, "
                      f"{rates['member_steps_per_s']:>8.1f} seed-steps/s in total{gpu}")
    if result["gpu_utilization_error"]:
        print(f"GPU utilisation not measured: {result['gpu_utilization_error']} (needs nvidia-ml-py)")
    for n, ev in (result["evaluation"] or {}).items():
        print(f"{n:>8} threads: {ev['episodes']} hopper episodes ({ev['env_steps']} env steps) in "
              f"{ev['evaluator_s']:.2f} s; step-by-step loop {ev['step_by_step_s']:.2f} s ({ev['speedup']:.2f}x)")
    for n, by_mode in (result.get("sac") or {}).get("sac_update_per_s", {}).items():
        for mode, rates in by_mode.items():
            print(f"{n:>8} threads: SAC update {mode:>8}: {rates['updates_per_s']:>7.1f}/s "
                  f"({rates['updates_per_cpu_s']:.1f} per CPU-s)")
    for workers, rates in ((result.get("sac") or {}).get("collection_env_steps_per_s") or {}).items():
        print(f"{workers:>8} rollout workers: {rates['env_steps_per_s']:.0f} env steps/s")
    sim = result["simulation"]
    if sim:
        print(f"{sim['domain']}: build (cached XML) {sim['domain_build_s'] * 1000:.1f} ms; replay-check of "
              f"{sim['replay_check_transitions']} transitions {sim['replay_check_s']:.2f} s "
              f"(fraction within tol {sim['replay_check_fraction_within_tol']})")
