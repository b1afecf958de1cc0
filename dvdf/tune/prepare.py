"""Everything a sweep's trials load, made once before the first trial starts (no Ray import).

1. Missing datasets: :func:`missing_suites` turns them into dataset suites
   (:mod:`dvdf.data.suite`), which the runner generates as Ray tasks (one SAC run per domain,
   then one task per dataset) with :func:`dvdf.data.suite_ray.run_suite`.
2. Stages 1-2 (value model, dynamics scores, OTDF's VAE) depend on the data, the seed and their
   own hyperparameters, never on lambda or xi: one :func:`dvdf.experiment.prepare_experiment`
   call per (study, seed) at the study's base point builds or finds them (the stage cache
   deduplicates what studies of one group share); the runner runs them as Ray tasks
   (:func:`dvdf.tune.runner.prepare_stages`). Trials then only load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from dvdf.config import ExperimentConfig
from dvdf.errors import DvdfError
from dvdf.tune.spec import Sweep


def stage_jobs(sweep: Sweep) -> list[ExperimentConfig]:
    """One experiment config per (study, seed) at the base point; stages never depend on the point."""
    base_filter = sweep.spec.base.filter
    return [sweep.experiment_config(study, seed, study.fixed.get("tradeoff", base_filter.tradeoff),
                                    study.fixed.get("keep_ratio", base_filter.keep_ratio))
            for study in sweep.studies for seed in sweep.spec.seeds]


def required_datasets(sweep: Sweep) -> list[Path]:
    """Every dataset file the sweep reads, in first-use order."""
    return list(_dataset_roles(sweep))


def _dataset_roles(sweep: Sweep) -> dict[Path, tuple[str, str, str]]:
    """Dataset file -> (robot, suite domain: 'original' or the shift, quality)."""
    from dvdf.data.collect import dataset_path
    from dvdf.data.suite import ORIGINAL

    data_dir = sweep.spec.base.data.data_dir
    roles: dict[Path, tuple[str, str, str]] = {}
    for group in sweep.groups:
        roles[dataset_path(data_dir, group.robot, group.quality)] = (group.robot, ORIGINAL, group.quality)
        shifted = f"{group.robot}-{group.shift}"
        roles[dataset_path(data_dir, shifted, group.quality)] = (group.robot, group.shift, group.quality)
    return roles


def missing_suites(sweep: Sweep, missing: Iterable[Path], cpus_per_task: float = 1.0,
                   device: str = "cpu") -> list:
    """Dataset suites that generate exactly the ``missing`` files (with base.data.collect).

    One suite (every SAC run and dataset in parallel) when the missing files form a
    robots x domains x qualities product - the usual case -, else one suite per domain.
    """
    from dvdf.data.suite import SuiteSpec

    roles = _dataset_roles(sweep)
    wanted = sorted({roles[Path(p)] for p in missing})
    if not wanted:
        return []
    robots, domains, qualities = (tuple(dict.fromkeys(w[i] for w in wanted)) for i in range(3))
    common = dict(data_dir=sweep.spec.base.data.data_dir, collect=sweep.spec.base.data.collect,
                  cpus_per_task=cpus_per_task, device=device)
    if len(robots) * len(domains) * len(qualities) == len(wanted):
        return [SuiteSpec(robots=robots, domains=domains, qualities=qualities, **common)]
    per_domain: dict[tuple[str, str], list[str]] = {}
    for robot, domain, quality in wanted:
        per_domain.setdefault((robot, domain), []).append(quality)
    return [SuiteSpec(robots=(robot,), domains=(domain,), qualities=tuple(qs), **common)
            for (robot, domain), qs in per_domain.items()]


def check_datasets(sweep: Sweep) -> list[Path]:
    """Missing dataset files; an error when they are missing and the sweep may not collect them."""
    missing = [path for path in required_datasets(sweep) if not path.exists()]
    if missing and not sweep.spec.collect_missing:
        shown = ", ".join(str(p) for p in missing[:3])
        if len(missing) > 3:
            shown += f" and {len(missing) - 3} more"
        raise DvdfError(f"{sweep.source}: missing dataset(s) {shown} and 'collect_missing' is false; "
                        "generate them (dvdf collect / dvdf data suite) or set collect_missing: true")
    return missing

