"""Typed configuration of one experiment (``dvdf train``; the base of every sweep trial).

Frozen dataclasses with documented defaults from the paper (see METHOD.md). Load with
:func:`load_experiment_config`; the resolved config is written next to every run.
Paper symbols: lambda = ``filter.tradeoff``, xi = ``filter.keep_ratio``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional, Sequence

from dvdf.errors import DvdfError
from dvdf.methods import METHOD_NAMES, PAPER_KEEP_RATIO, PAPER_TRADEOFF, get_method
from dvdf.schema import apply_overrides, dump_yaml, from_dict, load_yaml

Method = Literal["iql-target", "iql-mix", "igdf", "otdf", "dvdf-igdf", "dvdf-otdf", "dvdf-iql-adv"]
Quality = Literal["random", "medium", "medium-replay", "medium-expert", "expert"]
QUALITIES: tuple[str, ...] = ("random", "medium", "medium-replay", "medium-expert", "expert")
METHODS: tuple[str, ...] = METHOD_NAMES   # the registry's order (dvdf.methods)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise DvdfError(message)


@dataclass(frozen=True)
class CollectConfig:
    """How a missing dataset is generated (behaviour-policy SAC + rollouts, D4RL's recipe)."""

    transitions: int = 1_000_000   # per quality (medium-expert: this many of each part)
    sac_steps: int = 1_000_000     # SAC training steps of the behaviour policy (expert = final)
    snapshot_every: int = 10_000   # SAC snapshots considered for 'medium' (return ~ 1/3 expert)
    eval_episodes: int = 5         # episodes per snapshot evaluation
    num_envs: int = 8              # vectorised rollouts
    rollout_workers: int = 0       # processes stepping the rollouts' envs; 0 = one per core (<= num_envs)
    seed: int = 0
    # The SAC update: auto (compiled where a C++ compiler or GPU is present and the run is long
    # enough), off (eager) or step (torch.compile of the whole update). Same math; not part of
    # the dataset's identity.
    sac_compile: Literal["auto", "off", "step"] = "auto"

    def __post_init__(self) -> None:
        _check(self.sac_compile in ("auto", "off", "step"),
               f"collect.sac_compile must be auto, off or step, got {self.sac_compile!r}")
        _check(self.transitions > 0, "collect.transitions must be > 0")
        _check(self.rollout_workers >= 0, "collect.rollout_workers must be >= 0 (0 = one per core)")
        _check(self.sac_steps > 0, "collect.sac_steps must be > 0")
        _check(0 < self.snapshot_every <= self.sac_steps, "collect.snapshot_every must be in (0, sac_steps]")


@dataclass(frozen=True)
class DataConfig:
    """Source and target datasets. Default roles follow DVDF: source = shifted, target = original.

    Swap the domains to get OTDF/ODRL's convention (source = original, target = shifted with
    ~5,000 transitions). Paths, when given, are used as they are; otherwise datasets are looked
    up (and generated if missing) in ``data_dir`` as ``<domain>-<quality>.hdf5``.
    """

    source_domain: str = "hopper-kinematic"
    target_domain: str = "hopper"
    quality: Quality = "medium"               # of both source and target data
    source_path: Optional[str] = None
    target_path: Optional[str] = None
    data_dir: str = "dvdf_data"
    target_fraction: float = 0.1              # share of the target dataset used (paper: 10%)
    target_transitions: Optional[int] = None  # exact count instead (low-data setting: 5000)
    target_with_replacement: bool = False     # the reference drew with replacement
    subsample_seed: int = 0
    collect: CollectConfig = field(default_factory=CollectConfig)

    def __post_init__(self) -> None:
        _check(0.0 < self.target_fraction <= 1.0, f"data.target_fraction must be in (0, 1], got {self.target_fraction}")
        _check(self.target_transitions is None or self.target_transitions > 0,
               f"data.target_transitions must be > 0, got {self.target_transitions}")


@dataclass(frozen=True)
class ValueStageConfig:
    """Stage 1: value model pre-trained on the source data (SQL by default, IQL = ablation)."""

    model: Literal["sql", "iql"] = "sql"
    steps: int = 1_000_000
    batch_size: int = 128
    lr: float = 3e-4
    discount: float = 0.99
    polyak: float = 0.005
    sql_alpha: Optional[float] = None   # SQL alpha; None = robot default (0.1, ant 0.2)
    expectile: float = 0.7              # for model = iql
    hidden: int = 256
    layers: int = 2

    def __post_init__(self) -> None:
        _check(self.steps > 0 and self.batch_size > 0, "value.steps and value.batch_size must be > 0")
        _check(self.sql_alpha is None or self.sql_alpha > 0, "value.sql_alpha must be > 0")
        _check(0.0 < self.expectile < 1.0, "value.expectile must be in (0, 1)")


@dataclass(frozen=True)
class ScorerConfig:
    """Stage 2: dynamics-alignment scorers (contrastive = IGDF, optimal transport = OTDF)."""

    contrastive_steps: int = 7_000
    contrastive_batch: int = 128
    contrastive_lr: float = 3e-4
    embed_dim: int = 64
    hidden: int = 256
    ot_chunk: int = 10_000          # source transitions per Sinkhorn problem
    ot_reg: float = 0.01            # entropic regularisation (cost scaled to [0, 1])
    ot_max_iter: int = 1_000
    vae_steps: int = 10_000         # OTDF behaviour VAE on the target data
    vae_hidden: int = 750
    vae_lr: float = 1e-3

    def __post_init__(self) -> None:
        _check(self.contrastive_steps > 0 and self.contrastive_batch > 1, "scorer.contrastive_* must be positive")
        _check(self.ot_chunk > 0 and self.ot_reg > 0, "scorer.ot_chunk and scorer.ot_reg must be > 0")


@dataclass(frozen=True)
class FilterConfig:
    """Stage 3 selection. g = lambda * h + (1 - lambda) * An; keep top floor(B * xi) per batch."""

    method: Method = "dvdf-igdf"
    tradeoff: float = PAPER_TRADEOFF     # lambda, the alignment coefficient; 1 = dynamics only (IGDF)
    keep_ratio: float = PAPER_KEEP_RATIO  # xi, share of each source batch kept
    weight_rule: Literal["exp_score", "exp_combined", "uniform"] = "exp_score"
    # exp_score: exp(h) (exp(c) for OT), as the released code; exp_combined: exp(g); uniform: 1
    otdf_constraint_weight: Optional[float] = None  # VAE term; None = 0.5 morph / 0.1 otherwise

    def __post_init__(self) -> None:
        _check(0.0 <= self.tradeoff <= 1.0, f"filter.tradeoff (lambda) must be in [0, 1], got {self.tradeoff}")
        _check(0.0 < self.keep_ratio <= 1.0, f"filter.keep_ratio (xi) must be in (0, 1], got {self.keep_ratio}")

    @property
    def spec(self):
        """This method's registry entry (:class:`dvdf.methods.Method`)."""
        return get_method(self.method)

    @property
    def uses_source(self) -> bool:
        return self.spec.uses_source

    @property
    def dynamics_scorer(self) -> Optional[str]:
        """'contrastive', 'ot' or None."""
        return self.spec.dynamics_scorer

    @property
    def uses_value(self) -> bool:
        return self.spec.uses_value


@dataclass(frozen=True)
class IQLConfig:
    """Stage 3 learner: IQL on target + kept source data (METHOD.md hyperparameters)."""

    steps: int = 1_000_000
    batch_size: int = 128        # per side: 128 source + 128 target
    lr: float = 3e-4             # Q and V
    actor_lr: float = 3e-4       # cosine-annealed to 0 over `steps`
    discount: float = 0.99
    expectile: float = 0.7       # tau
    beta: float = 3.0            # AWR inverse temperature
    exp_adv_max: float = 100.0
    polyak: float = 0.005
    hidden: int = 256
    layers: int = 2
    # torch.compile, same math: "off" (eager), "losses" (selection, forward, losses and their
    # backward as one graph), "step" (the whole update - batch gather, selection, losses, gradients,
    # Adam, Polyak - as one graph; on CUDA replayed as one CUDA graph). See dvdf/algos/whole_step.py.
    compile: Literal["off", "losses", "step"] = "off"

    def __post_init__(self) -> None:
        _check(self.steps > 0 and self.batch_size > 0, "iql.steps and iql.batch_size must be > 0")
        _check(0.0 < self.expectile < 1.0, "iql.expectile must be in (0, 1)")


@dataclass(frozen=True)
class EvalConfig:
    every: int = 10_000          # gradient steps between evaluations
    episodes: int = 10           # deterministic episodes in the target domain
    threads: Optional[int] = None    # env-stepping threads; None = the run's torch threads
    # Evaluate on a background thread while training goes on (a copy of the policy as of the
    # evaluation's step): each report then arrives one interval late, with the same numbers.
    overlap: bool = False

    def __post_init__(self) -> None:
        _check(self.every > 0 and self.episodes > 0, "eval.every and eval.episodes must be > 0")
        _check(self.threads is None or self.threads > 0, "eval.threads must be > 0")


@dataclass(frozen=True)
class ExperimentConfig:
    """One train-and-evaluate run: stages 1-2 (cached), filtered IQL, periodic evaluation."""

    name: str = "dvdf"
    seed: int = 100
    device: str = "auto"             # auto | cpu | cuda | cuda:N
    cache_dir: str = "dvdf_cache"    # stage artifacts (shared storage on a cluster)
    threads: Optional[int] = None    # torch intra-op threads; None = leave as is
    data: DataConfig = field(default_factory=DataConfig)
    value: ValueStageConfig = field(default_factory=ValueStageConfig)
    scorer: ScorerConfig = field(default_factory=ScorerConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    iql: IQLConfig = field(default_factory=IQLConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def replace(self, **changes) -> "ExperimentConfig":
        return dataclasses.replace(self, **changes)


def load_experiment_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Read an experiment YAML (or defaults when ``path`` is None) and apply ``--set`` overrides."""
    raw = load_yaml(path) if path is not None else {}
    raw = apply_overrides(raw, overrides)
    return from_dict(ExperimentConfig, raw, source=str(path) if path else "config")


def experiment_config_from_dict(raw: dict, source: str = "config") -> ExperimentConfig:
    return from_dict(ExperimentConfig, raw, source=source)


def config_to_yaml(config: ExperimentConfig) -> str:
    return dump_yaml(config)
