"""Dataset suites: robots x domains x qualities generated into one catalogued data directory.

A suite YAML::

    data_dir: dvdf_data                 # shared storage on a cluster
    robots: [hopper, walker2d]
    domains: [original, kinematic]      # shift names; 'original' is the robot itself
    qualities: [medium, medium-replay, expert]
    collect: {transitions: 1000000, sac_steps: 1000000}

becomes one SAC training per domain (shared by all its qualities) and one dataset job per
(domain, quality). This module is the plan and the work of each job, free of Ray; the Ray
dispatch is :mod:`dvdf.data.suite_ray`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

from dvdf.config import D4RL_QUALITIES, QUALITIES, CollectConfig
from dvdf.errors import DvdfError
from dvdf.schema import from_dict, load_yaml

ORIGINAL = "original"


@dataclass(frozen=True)
class SuiteSpec:
    """What to generate and where (see the module docstring)."""

    robots: tuple[str, ...]
    data_dir: str = "dvdf_data"
    domains: tuple[str, ...] = (ORIGINAL,)
    qualities: tuple[str, ...] = D4RL_QUALITIES
    collect: CollectConfig = field(default_factory=CollectConfig)
    policy_cache: Optional[str] = None   # default <data_dir>/policies
    cpus_per_task: float = 1.0
    device: str = "cpu"                  # torch device of SAC training in each task

    def __post_init__(self) -> None:
        if not self.robots:
            raise DvdfError("suite: 'robots' must list at least one robot")
        if not self.domains:
            raise DvdfError("suite: 'domains' must list at least one domain (e.g. original)")
        unknown = [q for q in self.qualities if q not in QUALITIES]
        if unknown or not self.qualities:
            raise DvdfError(f"suite: 'qualities' must be a non-empty subset of {', '.join(QUALITIES)}, "
                            f"got {list(self.qualities)}")
        if self.cpus_per_task <= 0:
            raise DvdfError("suite: 'cpus_per_task' must be > 0")

    def domain_names(self) -> list[str]:
        """Full domain names, robot-major: ``hopper``, ``hopper-kinematic``, ..."""
        return [robot if shift == ORIGINAL else f"{robot}-{shift}"
                for robot in self.robots for shift in self.domains]

    @property
    def resolved_data_dir(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()

    @property
    def resolved_policy_cache(self) -> Path:
        if self.policy_cache is None:
            return self.resolved_data_dir / "policies"
        return Path(self.policy_cache).expanduser().resolve()


def load_suite_spec(path: str | os.PathLike) -> SuiteSpec:
    """Read a suite YAML strictly; relative paths are relative to the YAML file's directory."""
    spec = from_dict(SuiteSpec, load_yaml(path), source=str(path))
    base = Path(path).resolve().parent
    data_dir = Path(spec.data_dir).expanduser()
    cache = None if spec.policy_cache is None else Path(spec.policy_cache).expanduser()
    if cache is not None and not cache.is_absolute():
        cache = base / cache
    spec = replace(spec, data_dir=str(data_dir if data_dir.is_absolute() else base / data_dir),
                   policy_cache=None if cache is None else str(cache))
    check_domains(spec, source=str(path))
    return spec


def check_domains(spec: SuiteSpec, source: str = "suite") -> None:
    """Every robot x domain must be a known domain (DvdfError naming the first that is not)."""
    from dvdf.envs import get_domain

    for name in spec.domain_names():
        try:
            get_domain(name)
        except DvdfError as exc:
            raise DvdfError(f"{source}: {exc}") from None


@dataclass(frozen=True)
class SuitePlan:
    data_dir: str
    policy_cache: str
    domains: tuple[str, ...]                    # one SAC training each
    datasets: tuple[tuple[str, str], ...]       # (domain, quality), one job each

    def to_dict(self) -> dict[str, Any]:
        return {"data_dir": self.data_dir, "policy_cache": self.policy_cache, "policies": list(self.domains),
                "datasets": [f"{domain}-{quality}.hdf5" for domain, quality in self.datasets]}

    def describe(self) -> str:
        lines = [f"data dir: {self.data_dir}", f"policy cache: {self.policy_cache}",
                 f"{len(self.domains)} SAC trainings:"]
        lines += [f"  {domain}" for domain in self.domains]
        lines.append(f"{len(self.datasets)} datasets:")
        lines += [f"  {domain}-{quality}.hdf5" for domain, quality in self.datasets]
        return "\n".join(lines)


def plan_suite(spec: SuiteSpec) -> SuitePlan:
    domains = tuple(spec.domain_names())
    return SuitePlan(str(spec.resolved_data_dir), str(spec.resolved_policy_cache), domains,
                     tuple((domain, quality) for domain in domains for quality in spec.qualities))


# ------------------------------------------------------------------------------ the jobs
def train_domain_policy(spec: SuiteSpec, domain: str, progress: bool = False) -> str:
    """Job 1 of a domain: its SAC behaviour policy (cached; returns the run directory)."""
    from dvdf.data.collect import ensure_policy

    result = ensure_policy(domain, spec.collect, spec.resolved_policy_cache, device=spec.device,
                           progress=progress)
    return str(result.run_dir)


def build_suite_dataset(spec: SuiteSpec, domain: str, quality: str, progress: bool = False) -> dict[str, Any]:
    """Job 2: one dataset into the data dir (recorded in the catalogue); returns its entry."""
    from dvdf.data.catalogue import entry_for
    from dvdf.data.collect import ensure_dataset

    path = ensure_dataset(domain, quality, spec.resolved_data_dir, spec.collect, progress=progress,
                          cache_dir=spec.resolved_policy_cache, device=spec.device)
    return entry_for(path)


def summarize_suite(spec: SuiteSpec) -> dict[str, Any]:
    from dvdf.data.catalogue import CATALOGUE_NAME, list_data_dir

    data_dir = spec.resolved_data_dir
    wanted = {f"{domain}-{quality}.hdf5" for domain, quality in plan_suite(spec).datasets}
    entries = [e for e in list_data_dir(data_dir) if e["file"] in wanted]
    return {"data_dir": str(data_dir), "catalogue": str(data_dir / CATALOGUE_NAME), "datasets": entries}
