"""Sweep specification: the YAML behind ``dvdf sweep`` (no Ray import here).

A sweep file is a base experiment (the same schema as ``dvdf train``) plus the axes that vary::

    name: quickstart                  # experiment directory name (default: the file's stem)
    base: {...}                       # an ExperimentConfig mapping, shared by every trial
    groups:                           # a list of blocks; each block is a cartesian product
      - robots: [hopper]
        shifts: [kinematic, morph]    # suffixes ('kinematic', 'gravity-0.5') or full domain names
        qualities: [medium]
        target: [{fraction: 0.1}]     # or [{transitions: 5000}]; omitted = base.data settings
        source: shifted               # shifted (DVDF: source = shifted, target = original) | original
    methods: [dvdf-igdf]              # every method is searched separately in every group
    method_params: {otdf: {keep_ratio: 0.8}}   # values fixed per method (then not searched)
    search: {mode: optuna, num_samples: 8, tradeoff_range: [0, 1], keep_ratio_range: [0.1, 1]}
    seeds: [100, 200, 300]            # every trial trains all of them; reports mean and std
    batch_seeds: true                 # a trial's seeds as ONE batched model (members) in one process
    resources: {cpus: 1, gpu: 0.25, max_concurrent: 4}   # per trial, i.e. for all of its seeds
    asha: {grace_period: 2}           # optional early stopping, within a study
    storage: results                  # local dir, NFS path or s3:// / gs:// URI
    max_failures: 2
    cache_dir: dvdf_cache             # stage artifacts (overrides base.cache_dir)
    data_dir: dvdf_data               # datasets (overrides base.data.data_dir)

Terms used across dvdf.tune:

* a *group* is one (robot, shift, quality, target setting) problem: source domain
  ``<robot>-<shift>`` and target domain ``<robot>`` (swapped with ``source: original``);
* a *study* is one (group, method) pair: one search problem, one Optuna study, its own sampler
  seed derived from the study name;
* a *trial* is one point (lambda = ``filter.tradeoff``, xi = ``filter.keep_ratio``) of a study,
  trained for every seed in ``seeds``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional, Sequence

from dvdf.config import ExperimentConfig, Method, Quality
from dvdf.errors import DvdfError
from dvdf.methods import (
    KEEP_RATIO_INTERVAL,
    PAPER_KEEP_RATIO,
    PAPER_TRADEOFF,
    TRADEOFF_INTERVAL,
    check_keep_ratio,
    check_tradeoff,
    get_method,
    valid_keep_ratio,
    valid_tradeoff,
)
from dvdf.schema import apply_overrides, from_dict, load_yaml, to_dict
from dvdf.tune.trackers import Logger, MlflowSpec, WandbSpec

PAPER_DEFAULT_TRADEOFF = PAPER_TRADEOFF     # lambda (names kept for readers of this module)
PAPER_DEFAULT_KEEP_RATIO = PAPER_KEEP_RATIO  # xi
SEARCH_PARAMS = ("tradeoff", "keep_ratio")
SYMBOLS = {"tradeoff": "lambda", "keep_ratio": "xi"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")   # a sweep's name names its experiment directory
METRIC = "normalized_score"     # what a trial reports (mean over its seeds) and Optuna maximises


@dataclass(frozen=True)
class TargetSetting:
    """How much target data a group uses: a share of the target dataset or an exact count."""

    fraction: Optional[float] = None
    transitions: Optional[int] = None

    def __post_init__(self) -> None:
        if (self.fraction is None) == (self.transitions is None):
            raise DvdfError("a target setting needs exactly one of 'fraction' or 'transitions'")
        if self.fraction is not None and not 0.0 < self.fraction <= 1.0:
            raise DvdfError(f"target fraction must be in (0, 1], got {self.fraction}")
        if self.transitions is not None and self.transitions <= 0:
            raise DvdfError(f"target transitions must be > 0, got {self.transitions}")

    @property
    def label(self) -> str:
        return f"frac{self.fraction:g}" if self.fraction is not None else f"{self.transitions}tr"


@dataclass(frozen=True)
class GroupBlock:
    """A cartesian product robots x shifts x qualities x target settings."""

    robots: tuple[str, ...] = ()
    shifts: tuple[str, ...] = ()
    qualities: tuple[Quality, ...] = ()
    target: tuple[TargetSetting, ...] = ()
    source: Literal["shifted", "original"] = "shifted"


@dataclass(frozen=True)
class ParamPoint:
    """One (lambda, xi) point: tradeoff = lambda, keep_ratio = xi."""

    tradeoff: float = PAPER_DEFAULT_TRADEOFF
    keep_ratio: float = PAPER_DEFAULT_KEEP_RATIO


@dataclass(frozen=True)
class MethodParams:
    """Values fixed for one method (not searched), e.g. OTDF's own keep ratio 0.8."""

    tradeoff: Optional[float] = None
    keep_ratio: Optional[float] = None


@dataclass(frozen=True)
class SearchSpec:
    """How the points of a study are chosen.

    optuna: TPE, ``num_samples`` trials per study within ``*_range``, ``first_points`` tried first
            (the paper default lambda = 0.7, xi = 0.5 unless changed);
    grid:   every combination of the ``tradeoff`` x ``keep_ratio`` values;
    fixed:  one trial per study with base.filter's values (for tables of several methods).
    """

    mode: Literal["optuna", "grid", "fixed"] = "optuna"
    num_samples: Optional[int] = None
    tradeoff_range: Optional[tuple[float, ...]] = None
    keep_ratio_range: Optional[tuple[float, ...]] = None
    first_points: Optional[tuple[ParamPoint, ...]] = None
    startup_trials: Optional[int] = None   # TPE's random start (Optuna default 10)
    seed: int = 0                          # mixed into every study's sampler seed
    tradeoff: Optional[tuple[float, ...]] = None    # grid values
    keep_ratio: Optional[tuple[float, ...]] = None  # grid values
    # Optuna RDB storage URL (postgresql://..., mysql://..., sqlite:///...); default: the SQLite
    # file optuna.db in the experiment directory (see dvdf.tune.searcher)
    storage: Optional[str] = None

    def __post_init__(self) -> None:
        _check_search(self)


@dataclass(frozen=True)
class ResourceSpec:
    """Per-trial resources. ``gpu`` may be a fraction (scheduling only, no memory isolation)."""

    cpus: float = 1.0
    gpu: float = 0.0
    max_concurrent: Optional[int] = None   # None: as many as the cluster's resources allow

    def __post_init__(self) -> None:
        if self.cpus <= 0:
            raise DvdfError(f"'resources.cpus' must be > 0, got {self.cpus}")
        if self.gpu < 0 or (self.gpu > 1 and self.gpu != int(self.gpu)):
            raise DvdfError(f"'resources.gpu' must be a fraction in [0, 1] or a whole number, got {self.gpu}")
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise DvdfError(f"'resources.max_concurrent' must be >= 1, got {self.max_concurrent}")


@dataclass(frozen=True)
class AshaSpec:
    """Asynchronous successive halving within each study; time unit = one evaluation."""

    grace_period: int = 1
    reduction_factor: float = 3.0
    max_t: Optional[int] = None            # evaluations; default: all of a trial's evaluations

    def __post_init__(self) -> None:
        if self.grace_period < 1:
            raise DvdfError(f"'asha.grace_period' must be >= 1 evaluation, got {self.grace_period}")
        if self.reduction_factor <= 1:
            raise DvdfError(f"'asha.reduction_factor' must be > 1, got {self.reduction_factor}")
        if self.max_t is not None and self.max_t < self.grace_period:
            raise DvdfError("'asha.max_t' must be >= 'asha.grace_period'")


@dataclass(frozen=True)
class SweepFile:
    """The YAML as written (parsed strictly); :func:`load_sweep` turns it into a :class:`Sweep`."""

    name: Optional[str] = None
    base: ExperimentConfig = field(default_factory=ExperimentConfig)
    groups: tuple[GroupBlock, ...] = ()
    methods: tuple[Method, ...] = ("dvdf-igdf",)
    method_params: dict[str, MethodParams] = field(default_factory=dict)
    search: SearchSpec = field(default_factory=SearchSpec)
    seeds: tuple[int, ...] = (100,)
    # True: a trial trains its K seeds as one batched model (FilteredIQL members): one process,
    # one batched step for all K, its `resources` shared by them. False: K models in lockstep.
    # OTDF with its behaviour-VAE constraint always runs the seeds separately (one VAE per seed).
    batch_seeds: bool = True
    resources: ResourceSpec = field(default_factory=ResourceSpec)
    asha: Optional[AshaSpec] = None
    storage: str = "results"
    max_failures: int = 2
    checkpoints_to_keep: int = 1
    cache_dir: Optional[str] = None
    data_dir: Optional[str] = None
    collect_missing: bool = True           # generate missing datasets (base.data.collect settings)
    object_store_memory: Optional[int] = None  # bytes, for a local Ray instance
    # experiment trackers through Ray Tune's logger callbacks (dvdf.tune.trackers); off by default
    loggers: tuple[Logger, ...] = ("tensorboard",)
    mlflow: MlflowSpec = field(default_factory=MlflowSpec)
    wandb: WandbSpec = field(default_factory=WandbSpec)

    def __post_init__(self) -> None:
        if self.name is not None and not _NAME.fullmatch(self.name):
            raise DvdfError(f"'name' {self.name!r} must be letters, digits, '.', '_' or '-'")
        if not self.methods:
            raise DvdfError("'methods' is empty")
        if len(set(self.methods)) != len(self.methods):
            raise DvdfError(f"'methods' lists a method twice: {list(self.methods)}")
        if not self.seeds:
            raise DvdfError("'seeds' is empty: a trial needs at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise DvdfError(f"'seeds' lists a seed twice: {list(self.seeds)}")
        if any(seed < 0 for seed in self.seeds):
            raise DvdfError(f"'seeds' must be >= 0, got {list(self.seeds)}")
        if self.max_failures < 0:
            raise DvdfError(f"'max_failures' must be >= 0, got {self.max_failures}")
        if self.checkpoints_to_keep < 1:
            raise DvdfError(f"'checkpoints_to_keep' must be >= 1, got {self.checkpoints_to_keep}")
        if self.object_store_memory is not None and self.object_store_memory < 78 * 1024 * 1024:
            raise DvdfError(f"'object_store_memory' is in bytes and Ray needs at least 78 MB, "
                            f"got {self.object_store_memory}")
        for key in ("storage", "cache_dir", "data_dir"):
            value = getattr(self, key)
            if value is not None and not value.strip():
                raise DvdfError(f"'{key}' is empty")
        if len(set(self.loggers)) != len(self.loggers):
            raise DvdfError(f"'loggers' lists a logger twice: {list(self.loggers)}")


# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Group:
    """One search problem's data: (robot, shift, quality, target setting)."""

    name: str
    robot: str
    shift: str
    quality: str
    source_domain: str
    target_domain: str
    target: Optional[TargetSetting]   # None: base.data's target_fraction / target_transitions

    @property
    def target_label(self) -> str:
        return self.target.label if self.target is not None else "base"


@dataclass(frozen=True)
class Study:
    """One (group, method): the unit of search. ``searched`` names the free parameters."""

    name: str
    group: Group
    method: str
    searched: tuple[str, ...]
    fixed: dict[str, float]            # values of the parameters not searched
    num_trials: int

    @property
    def sampler_seed(self) -> int:
        return study_seed(self.name)


@dataclass(frozen=True)
class Sweep:
    """A validated sweep: the file plus its expansion into groups and studies."""

    spec: SweepFile
    name: str
    source: str                        # the file it came from (for messages)
    groups: tuple[Group, ...]
    studies: tuple[Study, ...]

    @property
    def num_trials(self) -> int:
        return sum(study.num_trials for study in self.studies)

    def study(self, name: str) -> Study:
        for study in self.studies:
            if study.name == name:
                return study
        raise DvdfError(f"sweep {self.name!r} has no study {name!r}")

    def experiment_config(self, study: Study, seed: int, tradeoff: float,
                          keep_ratio: float) -> ExperimentConfig:
        """The ExperimentConfig one seed of a trial trains (base + group + method + point + seed)."""
        return experiment_config(self.spec.base, study, seed, tradeoff, keep_ratio)

    def trial_defining(self) -> dict:
        """The parts of the file that decide which trials exist and what they train.

        ``--resume`` refuses a file that differs here from the one the sweep started with;
        resources, storage and retries may change between runs.
        """
        raw = to_dict(self.spec)
        return {key: raw[key] for key in ("base", "groups", "methods", "method_params", "search", "seeds",
                                              "batch_seeds")}


def study_seed(name: str, salt: int = 0) -> int:
    """A sampler seed derived from the study name, so groups do not share suggestion sequences."""
    digest = hashlib.sha256(f"{salt}:{name}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def searched_params(method: str) -> tuple[str, ...]:
    """The filter parameters a method actually uses (lambda only with a value model)."""
    spec = get_method(method)
    return tuple(p for p, used in (("tradeoff", spec.uses_tradeoff), ("keep_ratio", spec.selects)) if used)


def experiment_config(base: ExperimentConfig, study: Study, seed: int, tradeoff: float,
                      keep_ratio: float) -> ExperimentConfig:
    group = study.group
    data = dataclasses.replace(base.data, source_domain=group.source_domain,
                               target_domain=group.target_domain, quality=group.quality)
    if group.target is not None:
        if group.target.fraction is not None:
            data = dataclasses.replace(data, target_fraction=group.target.fraction, target_transitions=None)
        else:
            data = dataclasses.replace(data, target_transitions=group.target.transitions)
    filt = dataclasses.replace(base.filter, method=study.method, tradeoff=float(tradeoff),
                               keep_ratio=float(keep_ratio))
    return base.replace(seed=int(seed), data=data, filter=filt)


# --------------------------------------------------------------------------------------------
def load_sweep(path: str | Path, overrides: Sequence[str] = (), *, check_domains: bool = True) -> Sweep:
    """Read, parse strictly and validate a sweep YAML; ``overrides`` are ``dotted.key=value``."""
    path = Path(path)
    raw = apply_overrides(load_yaml(path), overrides)
    return sweep_from_dict(raw, source=str(path), default_name=path.stem, check_domains=check_domains)


def sweep_from_dict(raw: dict, source: str = "sweep", default_name: str = "sweep", *,
                    check_domains: bool = True) -> Sweep:
    spec = from_dict(SweepFile, raw, source=source)
    _validate_file(spec, source)
    base = spec.base
    if spec.cache_dir is not None:
        base = base.replace(cache_dir=spec.cache_dir)
    if spec.data_dir is not None:
        base = base.replace(data=dataclasses.replace(base.data, data_dir=spec.data_dir))
    spec = dataclasses.replace(spec, base=base)
    groups = expand_groups(spec, source, check_domains=check_domains)
    studies = tuple(_plan_study(spec, group, method, source) for group in groups for method in spec.methods)
    name = spec.name or default_name
    if not _NAME.fullmatch(name):
        raise DvdfError(f"{source}: 'name' {name!r} must be letters, digits, '.', '_' or '-'")
    return Sweep(spec=spec, name=name, source=source, groups=groups, studies=studies)


def expand_groups(spec: SweepFile, source: str = "sweep", *, check_domains: bool = True) -> tuple[Group, ...]:
    if not spec.groups:
        raise DvdfError(f"{source}: 'groups' is empty: give at least one block with robots, shifts "
                        "and qualities")
    if check_domains:
        from dvdf.envs import get_domain  # the domain catalogue; raises DvdfError for unknown names
    groups: dict[str, Group] = {}
    for index, block in enumerate(spec.groups):
        where = f"groups[{index}]"
        for key in ("robots", "shifts", "qualities"):
            if not getattr(block, key):
                raise DvdfError(f"{source}: '{where}.{key}' is empty (each block is a product of "
                                "robots x shifts x qualities)")
        targets: tuple[Optional[TargetSetting], ...] = block.target or (None,)
        combos = itertools.product(block.robots, block.shifts, block.qualities, targets)
        for robot, shift, quality, target in combos:
            shifted = shift if shift.startswith(f"{robot}-") else f"{robot}-{shift}"
            if check_domains:
                for domain, what in ((robot, "robots"), (shifted, "shifts")):
                    try:
                        get_domain(domain)
                    except DvdfError as exc:
                        raise DvdfError(f"{source}: '{where}.{what}': {exc}") from None
            label = shifted[len(robot) + 1:]
            if block.source == "shifted":
                source_domain, target_domain = shifted, robot
            else:
                source_domain, target_domain = robot, shifted
            name = f"{robot}-{label}-{quality}"
            if target is not None:
                name += f"-{target.label}"
            if block.source == "original":
                name += "-rev"
            if name in groups:
                raise DvdfError(f"{source}: group '{name}' appears twice in 'groups'")
            groups[name] = Group(name=name, robot=robot, shift=label, quality=quality,
                                 source_domain=source_domain, target_domain=target_domain, target=target)
    return tuple(groups.values())


def _plan_study(spec: SweepFile, group: Group, method: str, source: str) -> Study:
    search = spec.search
    fixed_for_method = spec.method_params.get(method, MethodParams())
    fixed = {"tradeoff": spec.base.filter.tradeoff, "keep_ratio": spec.base.filter.keep_ratio}
    for param in SEARCH_PARAMS:
        value = getattr(fixed_for_method, param)
        if value is not None:
            fixed[param] = value
    searched = tuple(p for p in searched_params(method) if getattr(fixed_for_method, p) is None)
    if search.mode == "fixed":
        searched = ()
    if not searched:
        num_trials = 1
    elif search.mode == "optuna":
        num_trials = search.num_samples
    else:
        num_trials = math.prod(len(getattr(search, p)) for p in searched)
    return Study(name=f"{group.name}.{method}", group=group, method=method, searched=searched,
                 fixed={p: v for p, v in fixed.items() if p not in searched}, num_trials=num_trials)


def _validate_file(spec: SweepFile, source: str) -> None:
    """Rules across sections (each section's own rules run when it is parsed: ``__post_init__``)."""
    def fail(message: str) -> None:
        raise DvdfError(f"{source}: {message}")

    for role in ("source_path", "target_path"):
        if getattr(spec.base.data, role) is not None:
            fail(f"'base.data.{role}' cannot be used in a sweep (the groups choose the domains); "
                 "put the files in data_dir as <domain>-<quality>.hdf5")
    for method, params in spec.method_params.items():
        if method not in spec.methods:
            fail(f"'method_params.{method}' names a method that is not in 'methods' {list(spec.methods)}")
        try:
            for param, check in (("tradeoff", check_tradeoff), ("keep_ratio", check_keep_ratio)):
                if getattr(params, param) is not None:
                    check(getattr(params, param), f"method_params.{method}.{param}")
        except DvdfError as exc:
            fail(str(exc))
    # Every xi a trial can get must keep at least one row of a source batch (floor(B xi) >= 1).
    batch = spec.base.iql.batch_size
    selecting = [m for m in spec.methods if get_method(m).selects]
    candidates = [("base.filter.keep_ratio", spec.base.filter.keep_ratio)]
    candidates += [(f"method_params.{m}.keep_ratio", p.keep_ratio) for m, p in spec.method_params.items()
                   if m in selecting and p.keep_ratio is not None]
    search = spec.search
    if search.mode == "optuna":
        candidates.append(("search.keep_ratio_range[0]", (search.keep_ratio_range or default_range("keep_ratio"))[0]))
        candidates += [(f"search.first_points[{i}].keep_ratio", p.keep_ratio)
                       for i, p in enumerate(first_points(search))]
    elif search.mode == "grid":
        candidates += [(f"search.keep_ratio[{i}]", v) for i, v in enumerate(search.keep_ratio)]
    if selecting:
        for where, value in candidates:
            try:
                check_keep_ratio(value, where, batch)
            except DvdfError as exc:
                fail(str(exc))


def _check_search(search: SearchSpec) -> None:
    """SearchSpec's own rules: the fields of its mode only, valid ranges, values and first points."""
    allowed = {
        "optuna": {"num_samples", "tradeoff_range", "keep_ratio_range", "first_points", "startup_trials",
                   "storage"},
        "grid": {"tradeoff", "keep_ratio"},
        "fixed": set(),
    }[search.mode]
    mode_fields = {"num_samples", "tradeoff_range", "keep_ratio_range", "first_points", "startup_trials",
                   "tradeoff", "keep_ratio", "storage"}
    for name in sorted(mode_fields - allowed):
        if getattr(search, name) is not None:
            raise DvdfError(f"'search.{name}' is not used with mode: {search.mode}")
    if search.mode == "optuna":
        if search.num_samples is None or search.num_samples < 1:
            raise DvdfError(f"'search.num_samples' (trials per study) must be >= 1 with mode: optuna, "
                            f"got {search.num_samples}")
        # lambda may be exactly 0 (value only) or 1 (IGDF); xi = 0 would keep nothing.
        for param, valid, interval in (("tradeoff", valid_tradeoff, TRADEOFF_INTERVAL),
                                       ("keep_ratio", valid_keep_ratio, KEEP_RATIO_INTERVAL)):
            bounds = getattr(search, f"{param}_range")
            if bounds is None:
                continue
            symbol = SYMBOLS[param]
            if len(bounds) != 2 or bounds[0] > bounds[1]:
                raise DvdfError(f"'search.{param}_range' ({symbol}) must be [low, high] with low <= high, "
                                f"got {list(bounds)}")
            if not (valid(bounds[0]) and valid(bounds[1])):
                raise DvdfError(f"'search.{param}_range' ({symbol}) must lie in {interval}, got {list(bounds)}")
        if search.startup_trials is not None and search.startup_trials < 0:
            raise DvdfError(f"'search.startup_trials' must be >= 0, got {search.startup_trials}")
        for i, point in enumerate(first_points(search)):
            check_tradeoff(point.tradeoff, f"search.first_points[{i}].tradeoff")
            check_keep_ratio(point.keep_ratio, f"search.first_points[{i}].keep_ratio")
            for param in SEARCH_PARAMS:
                bounds = getattr(search, f"{param}_range") or default_range(param)
                value = getattr(point, param)
                if not bounds[0] <= value <= bounds[1]:
                    default = "" if search.first_points is not None else (
                        " (the paper default, tried first; set search.first_points to [] or to points "
                        "inside the ranges)")
                    raise DvdfError(f"'search.first_points[{i}].{param}' {value} lies outside "
                                    f"search.{param}_range {list(bounds)}{default}")
    elif search.mode == "grid":
        for param, check in (("tradeoff", check_tradeoff), ("keep_ratio", check_keep_ratio)):
            values = getattr(search, param)
            if not values:
                raise DvdfError(f"'search.{param}' must list at least one value with mode: grid")
            if len(set(values)) != len(values):
                raise DvdfError(f"'search.{param}' lists a value twice: {list(values)}")
            for i, value in enumerate(values):
                check(value, f"search.{param}[{i}]")
    if search.storage is not None and not re.match(r"^[a-z][a-z0-9+]*://", search.storage):
        raise DvdfError(f"'search.storage' must be a database URL such as postgresql://user@host/db or "
                        f"sqlite:////abs/path/optuna.db, got {search.storage!r}")


def default_range(param: str) -> tuple[float, float]:
    """Optuna's range when the file gives none: lambda in [0, 1], xi in [0.1, 1]."""
    return (0.0, 1.0) if param == "tradeoff" else (0.1, 1.0)


def first_points(search: SearchSpec) -> tuple[ParamPoint, ...]:
    """Points an Optuna study tries first (default: the paper's lambda = 0.7, xi = 0.5)."""
    return search.first_points if search.first_points is not None else (ParamPoint(),)


def grid_points(search: SearchSpec, study: Study) -> list[dict[str, float]]:
    """All points of a grid study (only its searched parameters vary)."""
    axes = [[(param, float(v)) for v in getattr(search, param)] for param in study.searched]
    return [dict(combo) for combo in itertools.product(*axes)]


def describe(sweep: Sweep) -> str:
    """A few lines for the terminal: what this sweep will run."""
    spec = sweep.spec
    lines = [f"sweep {sweep.name}: {len(sweep.groups)} group(s) x {len(spec.methods)} method(s) = "
             f"{len(sweep.studies)} studies, {sweep.num_trials} trials x {len(spec.seeds)} seed(s), "
             f"search {spec.search.mode}"]
    for study in sweep.studies:
        searched = ", ".join(study.searched) or "nothing searched"
        lines.append(f"  {study.name}: {study.num_trials} trial(s) ({searched})")
    return "\n".join(lines)



def trial_config(sweep: Sweep, study: Study, point: dict[str, float]) -> dict:
    """What Ray stores as a trial's config: the study, the point and every value that tells
    trials apart (these become TensorBoard HParams and the columns of trials.csv)."""
    values = {**study.fixed, **{p: float(v) for p, v in point.items()}}
    group = study.group
    return {
        "study": study.name,
        "group": group.name,
        "robot": group.robot,
        "shift": group.shift,
        "quality": group.quality,
        "target": group.target_label,
        "source_domain": group.source_domain,
        "target_domain": group.target_domain,
        "method": study.method,
        "tradeoff": float(values["tradeoff"]),
        "keep_ratio": float(values["keep_ratio"]),
        "seeds": list(sweep.spec.seeds),
    }
