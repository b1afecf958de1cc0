"""``dvdf domains`` and ``dvdf replay-check``."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    domains = subparsers.add_parser(
        "domains", help="list every domain (robot, shift family, variant, level, dims)",
        description="List every domain: robot, shift family, variant, level, obs/action dims.")
    domains.add_argument("--json", action="store_true", help="print one JSON object")
    domains.set_defaults(func=run_domains)

    replay = subparsers.add_parser(
        "replay-check", help="one-step replay fidelity of a dataset in a domain",
        description="Replay each transition of DATASET in the domain's simulator from the state its "
                    "observation describes, and report how many land within TOL of the recorded next "
                    "observation. Reads D4RL and OTDF/ODRL layouts.")
    replay.add_argument("dataset", metavar="DATASET",
                        help="HDF5 dataset file, minari:<dataset id> or a Minari dataset directory")
    replay.add_argument("--domain", required=True, metavar="NAME", help="domain name (see 'dvdf domains')")
    replay.add_argument("--tol", type=float, default=1e-3, help="max-abs error tolerance (default 1e-3)")
    replay.add_argument("--no-d4rl-compat", dest="d4rl_compat", action="store_const", const=False,
                        default=None,
                        help="plain MuJoCo 4 masses instead of the old-MuJoCo ones (default: what the "
                             "dataset records, e.g. Minari's gymnasium-v5 data; old-MuJoCo masses otherwise)")
    replay.add_argument("--d4rl-compat", dest="d4rl_compat", action="store_const", const=True,
                        help="old-MuJoCo masses even where the dataset records plain MuJoCo physics")
    replay.add_argument("--json", action="store_true", help="print one JSON object")
    replay.add_argument("--no-progress", dest="progress", action="store_false", default=None,
                        help="no progress bar")
    replay.set_defaults(func=run_replay_check)


def run_domains(args: argparse.Namespace) -> int:
    from dvdf.envs.catalogue import list_domains

    specs = list_domains()
    if args.json:
        from dvdf.commands._common import print_json

        print_json({"count": len(specs), "domains": [spec.to_dict() for spec in specs]})
        return 0
    header = ("name", "robot", "family", "variant", "level", "scale", "obs", "act")
    rows = [(s.name, s.robot, s.family, s.variant or "-", s.level or "-",
             "-" if s.scale is None else str(s.scale), str(s.obs_dim), str(s.act_dim)) for s in specs]
    widths = [max(len(row[i]) for row in rows + [header]) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    print(f"{len(specs)} domains")
    return 0


def run_replay_check(args: argparse.Namespace) -> int:
    from dvdf.data.hdf5 import read_dataset
    from dvdf.envs.catalogue import get_domain
    from dvdf.envs.replay import replay_check_dataset

    spec = get_domain(args.domain)          # unknown domain: error before touching the file
    dataset = read_dataset(args.dataset, domain=spec.name)
    d4rl_compat = args.d4rl_compat
    if d4rl_compat is None:
        d4rl_compat = bool(dataset.metadata.get("d4rl_compat", True))
    result = replay_check_dataset(dataset, spec.name, tol=args.tol, d4rl_compat=d4rl_compat,
                                  progress=args.progress)   # the bar goes to stderr, never into --json
    if args.json:
        from dvdf.commands._common import print_json

        print_json(result)
        return 0
    print(f"{result['source']} in {result['domain']}: {result['transitions']} transitions, "
          f"{result['checked']} checked, {result['skipped']} skipped (clipped velocity)")
    print(f"within tol {result['tol']:g}: {100 * result['fraction_within_tol']:.2f}%  "
          f"median error {result['median_error']:.3g}  max error {result['max_error']:.3g}")
    return 0
