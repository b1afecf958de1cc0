"""What the stage-3 learner is built from besides its config: the replay buffers and OTDF's
constraint weight.

The target buffer holds the target transitions; the source buffer the source transitions plus,
per seed, the stage scores the filter ranks them by: the dynamics score h (``dyn_score``, stage 2)
and the advantage A (``advantage``, stage 1) - one column each for a single run, a member column
per seed for a batched run. Methods without a scorer or value model get zeros there.
"""

from __future__ import annotations

import torch

from dvdf.config import ExperimentConfig
from dvdf.methods import behavior_constraint_weight
from dvdf.stages import ExperimentData, StageOutputs


def constraint_weight(config: ExperimentConfig) -> float:
    """OTDF's behaviour-VAE constraint weight for this run (0 for every other method)."""
    from dvdf.envs import get_domain

    families = {get_domain(config.data.source_domain).family, get_domain(config.data.target_domain).family}
    return behavior_constraint_weight(config.filter.method, config.filter.otdf_constraint_weight, families)


def seeds_can_be_batched(config: ExperimentConfig) -> bool:
    """False for OTDF with its dataset constraint: its behaviour VAE is fitted per seed."""
    return constraint_weight(config) == 0


def make_buffers(data: ExperimentData, stages: list[StageOutputs], device: torch.device, uses_source: bool,
                 batched: bool):
    """(source buffer or None for iql-target, target buffer); see the module docstring."""
    from dvdf.data import TransitionBuffer

    source_core, target_core = data.on_device(device)  # the copies the stages used, if any
    target = TransitionBuffer(target_core)
    if not uses_source:  # iql-target: the source data is never sampled
        return None, target
    source_cols = dict(source_core)  # scores are added below; keep the shared dict as it was
    if data.provenance_names and "provenance" in data.source:
        source_cols["provenance"] = torch.as_tensor(data.source["provenance"], device=device).long()
    n = source_cols["rewards"].shape[0]
    zeros = torch.zeros(n, device=device)
    scores = {"dyn_score": [st.dyn_score if st.dyn_score is not None else zeros for st in stages],
              "advantage": [st.advantage if st.advantage is not None else zeros for st in stages]}
    if not batched:
        return TransitionBuffer({**source_cols, **{name: values[0] for name, values in scores.items()}}), target
    source = TransitionBuffer(source_cols)
    for name, values in scores.items():
        source.add_member_column(name, torch.stack(values))
    return source, target
