"""The method registry: every stage-3 method dvdf runs, defined once.

Each entry says what the method needs from the pipeline - which dynamics scorer (stage 2), which
value model (stage 1), whether it selects the top xi of each source batch, whether it adds OTDF's
behaviour-VAE constraint - and which baseline a report compares it with. Every module asks the
registry (``get_method(name)``) instead of comparing method names as strings, so a new method is
one entry here plus its own code. The paper's defaults and the valid ranges of lambda and xi are
written here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from dvdf.errors import DvdfError

DynamicsScorer = Literal["contrastive", "ot"]

# The alignment coefficient lambda (``filter.tradeoff``) lies in [0, 1]: 1 = dynamics score only.
TRADEOFF_RANGE = (0.0, 1.0)
# The keep ratio xi (``filter.keep_ratio``) lies in (0, 1]; with a batch of B at least 1/B.
KEEP_RATIO_RANGE = (0.0, 1.0)
PAPER_TRADEOFF = 0.7     # lambda, the paper's default
PAPER_KEEP_RATIO = 0.5   # xi, the paper's default


@dataclass(frozen=True)
class Method:
    """One stage-3 method.

    Attributes:
        name: the configuration value (``filter.method``).
        uses_source: trains on source data at all (False only for iql-target).
        dynamics_scorer: stage-2 scorer whose score h (or the OT score c) ranks the source rows;
            None for methods that keep every source row or none.
        value_model: stage-1 value model whose advantage enters g = lambda h + (1 - lambda) An:
            None (dynamics only), "config" (``value.model``, SQL by default) or a fixed model name
            (the dvdf-iql-adv ablation forces "iql").
        behavior_constraint: OTDF's actor term -w log beta(pi(s)|s) with a VAE fitted on the target.
        baseline: the method a report compares this one with (None: none).
        summary: one line for tables and ``--help``.
    """

    name: str
    uses_source: bool
    dynamics_scorer: Optional[DynamicsScorer]
    value_model: Optional[str]
    behavior_constraint: bool
    baseline: Optional[str]
    summary: str

    @property
    def selects(self) -> bool:
        """Keeps the top floor(B xi) rows of each source batch (False: keeps all, or uses none)."""
        return self.dynamics_scorer is not None

    @property
    def uses_value(self) -> bool:
        return self.value_model is not None

    @property
    def uses_tradeoff(self) -> bool:
        """lambda matters: the method mixes a dynamics score with an advantage."""
        return self.selects and self.uses_value

    def value_model_for(self, configured: str) -> Optional[str]:
        """The stage-1 model this method uses, given ``value.model`` from the config."""
        if self.value_model is None:
            return None
        return configured if self.value_model == "config" else self.value_model


_REGISTRY: dict[str, Method] = {m.name: m for m in (
    Method("iql-target", uses_source=False, dynamics_scorer=None, value_model=None, behavior_constraint=False,
           baseline=None, summary="IQL on the target data alone"),
    Method("iql-mix", uses_source=True, dynamics_scorer=None, value_model=None, behavior_constraint=False,
           baseline=None, summary="IQL on target + all source data, weight 1"),
    Method("igdf", uses_source=True, dynamics_scorer="contrastive", value_model=None, behavior_constraint=False,
           baseline=None, summary="IGDF: top xi by the contrastive score h, weight exp(h)"),
    Method("otdf", uses_source=True, dynamics_scorer="ot", value_model=None, behavior_constraint=True,
           baseline=None, summary="OTDF: top xi by the OT score c, weight exp(c), VAE constraint"),
    Method("dvdf-igdf", uses_source=True, dynamics_scorer="contrastive", value_model="config",
           behavior_constraint=False, baseline="igdf",
           summary="DVDF on IGDF: top xi by g = lambda h + (1 - lambda) An, weight exp(h)"),
    Method("dvdf-otdf", uses_source=True, dynamics_scorer="ot", value_model="config", behavior_constraint=False,
           baseline="otdf", summary="DVDF on OTDF: top xi by g from the OT score, weight exp(c)"),
    Method("dvdf-iql-adv", uses_source=True, dynamics_scorer="contrastive", value_model="iql",
           behavior_constraint=False, baseline="dvdf-igdf",
           summary="ablation: dvdf-igdf with the advantage of an IQL (not SQL) value stage"),
)}

METHOD_NAMES: tuple[str, ...] = tuple(_REGISTRY)


def get_method(name: str) -> Method:
    """The registry entry of ``name``; an unknown name is a one-line DvdfError listing the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise DvdfError(f"unknown method {name!r} (choose from {', '.join(METHOD_NAMES)})") from None


def comparison_pairs() -> tuple[tuple[str, str], ...]:
    """(method, its baseline) for every method that names one, in registry order."""
    return tuple((m.name, m.baseline) for m in _REGISTRY.values() if m.baseline is not None)


# Membership in the ranges above, and how they read in messages, so every validator (the
# experiment config, the sweep's points and search ranges) applies one rule: lambda in a closed
# interval, xi open at 0 (keeping nothing is no filter).
TRADEOFF_INTERVAL = f"[{TRADEOFF_RANGE[0]:g}, {TRADEOFF_RANGE[1]:g}]"
KEEP_RATIO_INTERVAL = f"({KEEP_RATIO_RANGE[0]:g}, {KEEP_RATIO_RANGE[1]:g}]"


def valid_tradeoff(value: float) -> bool:
    """lambda (``filter.tradeoff``) lies in TRADEOFF_RANGE, both ends included."""
    return TRADEOFF_RANGE[0] <= value <= TRADEOFF_RANGE[1]


def valid_keep_ratio(value: float) -> bool:
    """xi (``filter.keep_ratio``) lies in KEEP_RATIO_RANGE, 0 excluded."""
    return KEEP_RATIO_RANGE[0] < value <= KEEP_RATIO_RANGE[1]


# OTDF's weight w of its behaviour-VAE term -w log beta(pi(s)|s), as the authors set it per shift.
OTDF_CONSTRAINT_WEIGHT_MORPH = 0.5
OTDF_CONSTRAINT_WEIGHT_OTHER = 0.1


def behavior_constraint_weight(method: str, configured: Optional[float], families: set[str]) -> float:
    """The constraint weight w a run of ``method`` uses (0 for methods without the constraint).

    ``configured``: ``filter.otdf_constraint_weight`` (None = the paper's rule: 0.5 when a morphology
    shift is involved, 0.1 otherwise); ``families``: the shift families of the source and target domains.
    """
    if not get_method(method).behavior_constraint:
        return 0.0
    if configured is not None:
        return configured
    return OTDF_CONSTRAINT_WEIGHT_MORPH if "morph" in families else OTDF_CONSTRAINT_WEIGHT_OTHER


def smallest_keep_ratio(batch_size: int) -> float:
    """The smallest xi that keeps a row of a source batch of ``batch_size``: floor(B xi) >= 1 iff xi >= 1/B."""
    return 1.0 / batch_size


def check_tradeoff(value: float, where: str) -> None:
    """lambda in TRADEOFF_RANGE (both ends allowed: 0 = advantage only, 1 = dynamics only)."""
    if not valid_tradeoff(value):
        raise DvdfError(f"{where} (lambda) must be in {TRADEOFF_INTERVAL}, got {value}")


def check_keep_ratio(value: float, where: str, batch_size: Optional[int] = None) -> None:
    """xi in KEEP_RATIO_RANGE (0 excluded: it would keep nothing) and, given the source batch size B,
    large enough that floor(B xi) keeps at least one row."""
    if not valid_keep_ratio(value):
        raise DvdfError(f"{where} (xi) must be in {KEEP_RATIO_INTERVAL}, got {value}")
    if batch_size is not None:
        from dvdf.filtering.select import keep_count

        if keep_count(batch_size, value) < 1:
            smallest = smallest_keep_ratio(batch_size)
            raise DvdfError(f"{where} (xi) {value} keeps no row of a source batch of {batch_size} "
                            f"(iql.batch_size); the smallest valid xi is 1/{batch_size} = {smallest:.6g}")
