"""``dvdf collect`` and ``dvdf data inspect|export|list|suite``: generate, check, convert and catalogue
datasets."""

from __future__ import annotations

import argparse

from dvdf.config import EXPERT_RULES, QUALITIES


def register(subparsers) -> None:
    collect = subparsers.add_parser(
        "collect", help="generate one dataset (SAC behaviour policy + rollouts, D4RL's recipe)",
        description="Generate a D4RL-style dataset. The SAC behaviour policy of (domain, SAC settings, "
                    "seed) is trained once and reused from the policy cache by every quality.")
    collect.add_argument("--domain", required=True, help="domain name, e.g. hopper or hopper-kinematic")
    collect.add_argument("--quality", required=True, choices=QUALITIES)
    collect.add_argument("--out", required=True, help="output HDF5 path")
    collect.add_argument("--preset", choices=("tiny", "small", "d4rl"), default="d4rl",
                         help="sizes: tiny (2k SAC steps, 2k transitions), small (100k / 50k), "
                              "d4rl (1M / 1M, the default); the flags below override")
    collect.add_argument("--transitions", type=int, default=None, help="transitions per quality (default 1M)")
    collect.add_argument("--sac-steps", type=int, default=None, help="SAC training steps (default 1M)")
    collect.add_argument("--snapshot-every", type=int, default=None,
                         help="SAC steps between the snapshots considered for 'medium' "
                              "(default 10k, at most sac-steps / 10)")
    collect.add_argument("--eval-episodes", type=int, default=None, help="episodes per snapshot evaluation")
    collect.add_argument("--expert", choices=EXPERT_RULES, default=None,
                         help="the expert snapshot: best (default; the best of the top 5 on a fresh evaluation) "
                              "or final (D4RL's rule, the last actor)")
    collect.add_argument("--expert-eval-episodes", type=int, default=None,
                         help="fresh episodes per candidate when --expert is best (default 20)")
    collect.add_argument("--num-envs", type=int, default=None, help="vectorised rollout environments")
    collect.add_argument("--seed", type=int, default=None, help="seed of SAC and rollouts (default 0)")
    collect.add_argument("--cache-dir", default=None,
                         help="behaviour-policy cache "
                              "(default: $DVDF_POLICY_CACHE or ~/.cache/dvdf/policies)")
    collect.add_argument("--device", default="cpu", help="torch device of SAC training (cpu, cuda)")
    collect.add_argument("--threads", type=int, default=None,
                         help="torch intra-op threads (default: torch's choice; 1 is best on a busy machine)")
    collect.add_argument("--no-progress", action="store_true", help="no progress bars")
    collect.add_argument("--json", action="store_true", help="print a JSON summary")
    collect.set_defaults(func=_collect)

    data = subparsers.add_parser("data", help="inspect, list and mass-produce datasets")
    actions = data.add_subparsers(dest="data_command", metavar="ACTION")
    actions.required = True

    inspect = actions.add_parser("inspect", help="validate a dataset file and summarise it")
    inspect.add_argument("path", help="HDF5 file, minari:<dataset id> (local, under $MINARI_DATASETS_PATH) "
                                      "or a Minari dataset directory")
    inspect.add_argument("--domain", default=None, help="also check obs/action sizes against this domain")
    inspect.add_argument("--json", action="store_true")
    inspect.set_defaults(func=_inspect)

    export = actions.add_parser(
        "export", help="write a dataset in another format (Minari)",
        description="Write a dvdf dataset as a Minari dataset under DIR/<dataset id>/data, loadable with "
                    "MINARI_DATASETS_PATH=DIR and minari.load_dataset(<dataset id>). "
                    "Needs pip install 'dvdf[minari]'.")
    export.add_argument("path", help="dataset to export (HDF5 file or any source 'data inspect' reads)")
    export.add_argument("--format", required=True, choices=("minari",), help="output format")
    export.add_argument("--out", required=True, metavar="DIR", help="Minari dataset root to write into")
    export.add_argument("--dataset-id", default=None,
                        help="Minari id (default dvdf/<domain>/<quality>-v0 from the file's metadata, "
                             "else dvdf/<file stem>-v0)")
    export.add_argument("--domain", default=None,
                        help="dvdf domain of the data when the file does not record it (env spec, refs)")
    export.add_argument("--storage", choices=("hdf5", "arrow"), default="hdf5", help="Minari storage format")
    export.add_argument("--json", action="store_true")
    export.set_defaults(func=_export)

    listing = actions.add_parser("list", help="list the datasets of a data directory (its catalogue)")
    listing.add_argument("dir")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=_list)

    suite = actions.add_parser("suite", help="generate robots x domains x qualities as Ray tasks")
    suite.add_argument("spec", help="suite YAML (robots, domains, qualities, collect settings, data_dir)")
    suite.add_argument("--address", default=None, help="Ray cluster address (default: a local Ray instance)")
    suite.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    suite.add_argument("--json", action="store_true")
    suite.set_defaults(func=_suite)


def _collect(args: argparse.Namespace) -> int:
    import dataclasses

    from dvdf.commands._common import print_json
    from dvdf.data.collect import COLLECT_PRESETS, collect_dataset
    from dvdf.errors import DvdfError

    overrides = {"transitions": args.transitions, "sac_steps": args.sac_steps,
                 "snapshot_every": args.snapshot_every, "eval_episodes": args.eval_episodes,
                 "expert_eval_episodes": args.expert_eval_episodes, "num_envs": args.num_envs, "seed": args.seed}
    overrides = {key: value for key, value in overrides.items() if value is not None}
    defaults = COLLECT_PRESETS[args.preset]
    if "sac_steps" in overrides and "snapshot_every" not in overrides:
        # Keep ~10 snapshots or more, so that 'medium' has candidates between random and expert.
        overrides["snapshot_every"] = min(defaults.snapshot_every, max(1, overrides["sac_steps"] // 10))
    for key, value in overrides.items():
        if value <= 0 and key != "seed":
            raise DvdfError(f"--{key.replace('_', '-')} must be > 0, got {value}")
    if args.threads is not None:
        if args.threads < 1:
            raise DvdfError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    if args.expert is not None:
        overrides["expert"] = args.expert
    config = dataclasses.replace(defaults, **overrides)
    result = collect_dataset(args.domain, args.quality, args.out, config, cache_dir=args.cache_dir,
                             device=args.device, progress=not args.no_progress)
    if args.json:
        print_json(result)
    else:
        print(f"wrote {result['path']}: {result['transitions']} transitions, {result['episodes']} episodes, "
              f"mean return {result['return_mean']:.1f} (behaviour policy: {result['policy_dir']})")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from dvdf.commands._common import print_json
    from dvdf.data.inspect import format_description, inspect_file

    info = inspect_file(args.path, domain=args.domain)
    if args.json:
        print_json(info)
    else:
        print(format_description(info))
    return 0


def _export(args: argparse.Namespace) -> int:
    from dvdf.commands._common import print_json
    from dvdf.data.hdf5 import read_dataset
    from dvdf.data.minari_export import default_dataset_id, export_minari

    dataset = read_dataset(args.path, domain=args.domain)
    dataset_id = args.dataset_id or default_dataset_id(dataset, args.path)
    result = export_minari(dataset, args.out, dataset_id, source_path=args.path, domain=args.domain,
                           storage=args.storage)
    if args.json:
        print_json(result)
    else:
        print(f"wrote Minari dataset {result['dataset_id']} ({result['episodes']} episodes, "
              f"{result['steps']} steps, {result['storage']}) to {result['path']}; load it with "
              f"MINARI_DATASETS_PATH={args.out} and minari.load_dataset('{result['dataset_id']}')")
    return 0


def _list(args: argparse.Namespace) -> int:
    from dvdf.commands._common import print_json
    from dvdf.data.catalogue import list_data_dir

    entries = list_data_dir(args.dir)
    if args.json:
        print_json({"dir": args.dir, "datasets": entries})
        return 0
    if not entries:
        print(f"{args.dir}: no datasets")
        return 0
    header = (f"{'file':40s} {'domain':28s} {'quality':14s} {'transitions':>11s} "
              f"{'policy return':>13s}  status")
    print(header)
    for e in entries:
        ret = e.get("behaviour_policy_mean_return")
        ret_text = f"{ret:13.1f}" if isinstance(ret, (int, float)) else f"{'-':>13s}"
        print(f"{e['file']:40s} {str(e.get('domain', '-')):28s} {str(e.get('quality', '-')):14s} "
              f"{str(e.get('transitions', '-')):>11s} {ret_text}  {e['status']}")
    return 0


def _suite(args: argparse.Namespace) -> int:
    from dvdf.commands._common import print_json
    from dvdf.data.suite import load_suite_spec, plan_suite

    spec = load_suite_spec(args.spec)
    plan = plan_suite(spec)
    if args.dry_run:
        if args.json:
            print_json(plan.to_dict())
        else:
            print(plan.describe())
        return 0
    from dvdf.data.suite_ray import run_suite

    result = run_suite(spec, address=args.address, progress=not args.json)
    if args.json:
        print_json(result)
    else:
        print(f"{len(result['datasets'])} datasets in {result['data_dir']} "
              f"(catalogue: {result['catalogue']})")
    return 0
