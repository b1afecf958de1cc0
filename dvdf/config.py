"""Typed configuration of one experiment (``dvdf train``; the base of every sweep trial).

Frozen dataclasses with documented defaults from the paper (see docs/METHOD.md). Load with
:func:`load_experiment_config`; the resolved config is written next to every run.
Paper symbols: lambda = ``filter.tradeoff``, xi = ``filter.keep_ratio``.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal, Optional, Sequence, get_args

from dvdf.errors import DvdfError
from dvdf.methods import METHOD_NAMES, PAPER_KEEP_RATIO, PAPER_TRADEOFF, check_keep_ratio, check_tradeoff, get_method
from dvdf.schema import apply_overrides, dump_yaml, from_dict, load_yaml

Method = Literal[METHOD_NAMES]   # the registry's names (dvdf.methods), written once
# D4RL's five qualities, then dvdf's one addition: random-expert, a mixture of the two extremes
# for studying value alignment (a filter that reads returns should keep the expert half).
Quality = Literal["random", "medium", "medium-replay", "medium-expert", "expert", "random-expert"]
QUALITIES: tuple[str, ...] = get_args(Quality)   # the quality list, written once (above)
ExpertRule = Literal["best", "final"]            # which SAC snapshot is the expert (dvdf.data.expert)
EXPERT_RULES: tuple[str, ...] = get_args(ExpertRule)
D4RL_QUALITIES: tuple[str, ...] = QUALITIES[:5]   # what a data suite makes unless told otherwise
METHODS: tuple[str, ...] = METHOD_NAMES   # the registry's order (dvdf.methods)


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise DvdfError(message)


def _positive(section: str, config, *names: str) -> None:
    """Each named field of ``config`` is > 0 (counts, sizes, learning rates, weights)."""
    for name in names:
        value = getattr(config, name)
        _check(value > 0, f"{section}.{name} must be > 0, got {value}")


def _fraction(section: str, config, *names: str, open_low: bool = False, open_high: bool = False) -> None:
    """Each named field lies in [0, 1] (a discount, a Polyak rate), its ends excluded as asked."""
    for name in names:
        value = getattr(config, name)
        ok = (0.0 < value if open_low else 0.0 <= value) and (value < 1.0 if open_high else value <= 1.0)
        interval = ("(" if open_low else "[") + "0, 1" + (")" if open_high else "]")
        _check(ok, f"{section}.{name} must be in {interval}, got {value}")


@dataclass(frozen=True)
class CollectConfig:
    """How a missing dataset is generated (behaviour-policy SAC + rollouts, D4RL's recipe)."""

    transitions: int = 1_000_000   # per quality (the mixtures medium-expert, random-expert: per part)
    sac_steps: int = 1_000_000     # SAC training steps of the behaviour policy
    snapshot_every: int = 10_000   # SAC snapshots: the candidates for 'expert' and 'medium'
    eval_episodes: int = 5         # episodes per snapshot evaluation during SAC training
    # The expert snapshot: best (the best of the top-5 snapshots on expert_eval_episodes fresh
    # episodes) or final (D4RL's literal rule); see dvdf.data.expert.
    expert: ExpertRule = "best"
    expert_eval_episodes: int = 20
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
        _check(self.expert in EXPERT_RULES,
               f"collect.expert must be one of {', '.join(EXPERT_RULES)}, got {self.expert!r}")
        _positive("collect", self, "eval_episodes", "expert_eval_episodes", "num_envs")
        _check(self.seed >= 0, f"collect.seed must be >= 0, got {self.seed}")


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
        _check(self.subsample_seed >= 0, f"data.subsample_seed must be >= 0, got {self.subsample_seed}")


@dataclass(frozen=True)
class ValueStageConfig:
    """Stage 1: value model pre-trained on the source data (SQL by default, IQL = ablation).

    Hashed whole into the stage-1 cache key (dvdf/stages.py), so every field here is one the
    artifact depends on.
    """

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
    # Which critic's min(Q1, Q2) enters the cached advantage A(s, a) = min(Q1, Q2)(s, a) - V(s):
    # "online" (the trained critic; what the authors' code saves and loads) or "target" (its
    # Polyak average, dvdf 0.1.0's choice).
    advantage_critic: Literal["online", "target"] = "online"

    def __post_init__(self) -> None:
        _check(self.steps > 0 and self.batch_size > 0, "value.steps and value.batch_size must be > 0")
        _check(self.sql_alpha is None or self.sql_alpha > 0, "value.sql_alpha must be > 0")
        _check(0.0 < self.expectile < 1.0, "value.expectile must be in (0, 1)")
        _positive("value", self, "lr", "hidden", "layers")
        _fraction("value", self, "discount", open_high=True)
        _fraction("value", self, "polyak", open_low=True)


@dataclass(frozen=True)
class ContrastiveConfig:
    """IGDF's contrastive encoders phi(s, a), psi(s') (stage 2 of igdf, dvdf-igdf, dvdf-iql-adv)."""

    steps: int = 7_000
    batch_size: int = 128           # n target transitions against n - 1 source next states
    lr: float = 3e-4
    embed_dim: int = 64
    hidden: int = 256

    def __post_init__(self) -> None:
        _check(self.steps > 0, f"scorer.contrastive.steps must be > 0, got {self.steps}")
        _check(self.batch_size > 1, f"scorer.contrastive.batch_size must be > 1, got {self.batch_size}")
        _check(self.lr > 0, f"scorer.contrastive.lr must be > 0, got {self.lr}")
        _check(self.embed_dim > 0, f"scorer.contrastive.embed_dim must be > 0, got {self.embed_dim}")
        _check(self.hidden > 0, f"scorer.contrastive.hidden must be > 0, got {self.hidden}")


@dataclass(frozen=True)
class OTConfig:
    """OTDF's optimal-transport score (stage 2 of otdf, dvdf-otdf)."""

    chunk: int = 10_000             # source transitions per Sinkhorn problem
    reg: float = 0.01               # entropic regularisation (cost scaled to [0, 1])
    max_iter: int = 1_000

    def __post_init__(self) -> None:
        _check(self.chunk > 0, f"scorer.ot.chunk must be > 0, got {self.chunk}")
        _check(self.reg > 0, f"scorer.ot.reg must be > 0, got {self.reg}")
        _check(self.max_iter > 0, f"scorer.ot.max_iter must be > 0, got {self.max_iter}")


@dataclass(frozen=True)
class BehaviorVAEConfig:
    """OTDF's behaviour VAE beta(a|s), trained on the target data for its actor constraint."""

    steps: int = 10_000
    batch_size: int = 256
    hidden: int = 750
    lr: float = 1e-3

    def __post_init__(self) -> None:
        _check(self.steps > 0 and self.batch_size > 0,
               "scorer.vae.steps and scorer.vae.batch_size must be > 0")
        _check(self.hidden > 0 and self.lr > 0, "scorer.vae.hidden and scorer.vae.lr must be > 0")


@dataclass(frozen=True)
class ScorerConfig:
    """Stage 2: one section per artifact, each hashed whole into that artifact's cache key.

    Tuning one scorer never rebuilds another, and a field added to a section is part of its key
    without further code. Files written for dvdf 0.1.0 (flat ``scorer.contrastive_steps`` etc.)
    still load: :data:`RENAMED_KEYS` maps each old key to its new place.
    """

    # The 0.1.0 flat layout -> this one (dotted, relative to ``scorer``); read by dvdf.schema.
    RENAMED_KEYS: ClassVar[dict[str, str]] = {
        "contrastive_steps": "contrastive.steps", "contrastive_batch": "contrastive.batch_size",
        "contrastive_lr": "contrastive.lr", "embed_dim": "contrastive.embed_dim",
        "hidden": "contrastive.hidden", "ot_chunk": "ot.chunk", "ot_reg": "ot.reg",
        "ot_max_iter": "ot.max_iter", "vae_steps": "vae.steps", "vae_hidden": "vae.hidden",
        "vae_lr": "vae.lr",
    }

    contrastive: ContrastiveConfig = field(default_factory=ContrastiveConfig)
    ot: OTConfig = field(default_factory=OTConfig)
    vae: BehaviorVAEConfig = field(default_factory=BehaviorVAEConfig)


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
        check_tradeoff(self.tradeoff, "filter.tradeoff")
        check_keep_ratio(self.keep_ratio, "filter.keep_ratio")   # against the batch size: dvdf.validation
        _check(self.otdf_constraint_weight is None or self.otdf_constraint_weight >= 0,
               f"filter.otdf_constraint_weight must be >= 0, got {self.otdf_constraint_weight}")

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
    """Stage 3 learner: IQL on target + kept source data (docs/METHOD.md hyperparameters)."""

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
    # Adam, Polyak - as one graph; on CUDA replayed as one CUDA graph), "auto" ("step" where a C++
    # compiler (CPU) or a GPU is present and iql.steps repays the compile time, else "off"; see
    # dvdf.algos.compile_mode.resolve_compile_mode). See dvdf/algos/iql_step.py.
    compile: Literal["auto", "off", "losses", "step"] = "auto"
    # Order within one update (dvdf/algos/iql_step.py): "authors" (their released DV_IGDF.train: V
    # step, then the TD target from the UPDATED V, Q step, Polyak, actor step with the advantage from
    # before the V step) or "joint" (dvdf 0.1.0: the TD target from V before its update, one
    # backward and one Adam step for all three networks).
    step_order: Literal["authors", "joint"] = "authors"
    # AWR squared error over action dimensions: "mean" (the authors': mean over batch x action
    # elements) or "sum" (dvdf 0.1.0: ||pi(s) - a||^2).
    awr_reduction: Literal["mean", "sum"] = "mean"

    def __post_init__(self) -> None:
        _check(self.steps > 0 and self.batch_size > 0, "iql.steps and iql.batch_size must be > 0")
        _check(0.0 < self.expectile < 1.0, "iql.expectile must be in (0, 1)")
        _positive("iql", self, "lr", "actor_lr", "beta", "exp_adv_max", "hidden", "layers")
        _fraction("iql", self, "discount", open_high=True)
        _fraction("iql", self, "polyak", open_low=True)


@dataclass(frozen=True)
class EvalConfig:
    every: int = 10_000          # gradient steps between evaluations
    episodes: int = 10           # deterministic episodes in the target domain
    threads: Optional[int] = None    # env-stepping threads; None = the run's torch threads
    # Evaluate on a background thread while training goes on (a copy of the policy as of the
    # evaluation's step): each report then arrives one interval late, with the same numbers.
    overlap: bool = False
    # Warn (and flag q_bound_exceeded in the metrics) when an interval's mean |Q| or |V| passes this.
    # Healthy values stay below r_max / (1 - gamma): ~1,200 for the largest D4RL rewards (~12 per step,
    # halfcheetah) at gamma 0.99; 1e6 is ~1000x that, far above any real run, far below float overflow.
    q_bound: float = 1e6

    def __post_init__(self) -> None:
        _check(self.every > 0, f"eval.every must be > 0, got {self.every}")
        _check(self.episodes > 0, f"eval.episodes must be > 0, got {self.episodes}")
        _check(self.threads is None or self.threads > 0, f"eval.threads must be > 0, got {self.threads}")
        _check(self.q_bound > 0, f"eval.q_bound must be > 0, got {self.q_bound}")


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

    def __post_init__(self) -> None:
        _check(_NAME.fullmatch(self.name) is not None,
               f"name {self.name!r} must be letters, digits, '.', '_' or '-' (it names the output directory)")
        _check(self.seed >= 0, f"seed must be >= 0, got {self.seed}")
        _check(self.threads is None or self.threads > 0, f"threads must be > 0, got {self.threads}")
        _check(bool(self.cache_dir.strip()), "cache_dir is empty")
        _check(bool(self.data.data_dir.strip()), "data.data_dir is empty")

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
