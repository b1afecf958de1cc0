"""``dvdf bench``: steps per second of the training and contrastive-scorer steps; evaluation time."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench", help="measure training-step, contrastive-step and evaluation speed",
        description="Steps/s of one dvdf-igdf gradient step (128 source + 128 target, hopper sizes), also "
                    "with K seeds as one batched model (--members), eager and compiled (--compile); "
                    "steps/s of one contrastive-scorer step; seconds for 10 hopper evaluation episodes. "
                    "Each thread count runs in a fresh process.")
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
    parser.add_argument("--no-evaluation", action="store_true", help="skip the evaluation timing")
    parser.add_argument("--no-simulation", action="store_true",
                        help="skip the domain-build and replay-check timings")
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

    from dvdf.bench import run_benchmark
    from dvdf.commands._common import print_json

    result = run_benchmark(args.threads, args.steps, args.warmup, args.repeats, args.device,
                           simulation=not args.no_simulation, members=args.members,
                           compile_modes=("off", "losses", "step") if args.compile else ("off",),
                           evaluation=not args.no_evaluation)
    if args.json:
        print_json(result)
        return 0
    print(f"device: {result['device']}  (torch {result['torch']}; best of {args.repeats} x {args.steps} "
          f"steps; load average {result['load_average_1min']} on {result['cores']} cores)")
    print(f"{'threads':>8} {'train step/s':>14} {'(per CPU-s)':>12} {'contrastive step/s':>20} {'(per CPU-s)':>12}")
    for n in result["train_step_per_s"]:
        print(f"{n:>8} {result['train_step_per_s'][n]:>14.1f} {result['train_step_per_cpu_s'][n]:>12.1f} "
              f"{result['contrastive_step_per_s'][n]:>20.1f} {result['contrastive_step_per_cpu_s'][n]:>12.1f}")
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
    sim = result["simulation"]
    if sim:
        print(f"{sim['domain']}: build (cached XML) {sim['domain_build_s'] * 1000:.1f} ms; replay-check of "
              f"{sim['replay_check_transitions']} transitions {sim['replay_check_s']:.2f} s "
              f"(fraction within tol {sim['replay_check_fraction_within_tol']})")
    return 0
