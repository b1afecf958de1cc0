"""The checkpoint of a run: everything ``run_experiment(config, resume=dir)`` needs to continue
bit-for-bit, in one file (layout.CHECKPOINT_FILE, a ``torch.save`` of a plain dict).

Contents (format 2): the agent's state (:meth:`dvdf.algos.filtered_iql.FilteredIQL.state_dict`:
networks, target critic, Adam moments by parameter name, noise generator, step - the agent's own
format 3; a dvdf 0.1.0 agent state, format 2 with torch's optimiser state, still loads), every
member's sampler state, torch's global RNG, the step, the seeds, the best normalized score per seed
and the resolved config (for a human reading the file). Other checkpoint formats are refused with
one line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from dvdf.atomic import atomic_path
from dvdf.config import ExperimentConfig, config_to_yaml
from dvdf.errors import DvdfError
from dvdf.layout import CHECKPOINT_FILE

CHECKPOINT_FORMAT = 2


def snapshot(agent, samplers: list[torch.Generator], step: int, best: list[float], config: ExperimentConfig,
             seeds: list[int]) -> dict:
    """The state as of ``step``, as copies on the host: the caller may save it after training went on."""
    return {
        "format": CHECKPOINT_FORMAT,
        "agent": _clone(agent.state_dict()),
        "samplers": [sampler.get_state().clone() for sampler in samplers],
        "torch_rng": torch.get_rng_state().clone(),
        "step": step,
        "seeds": list(seeds),
        "best_normalized_score": list(best),
        "config_yaml": config_to_yaml(config),
    }


def save_checkpoint(state: dict, directory: str | os.PathLike) -> Path:
    """Write ``state`` into ``directory`` atomically (a crash leaves the previous checkpoint)."""
    path = Path(directory) / CHECKPOINT_FILE
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def load_checkpoint(resume: str | os.PathLike, config: ExperimentConfig, seeds: list[int]) -> dict:
    """Read a checkpoint (a directory or the file itself) and check it fits this run."""
    path = Path(resume)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    if not path.is_file():
        raise DvdfError(f"{path}: no checkpoint found to resume from")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for corrupt files
        raise DvdfError(f"{path}: cannot read checkpoint ({exc.__class__.__name__})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise DvdfError(f"{path}: unsupported checkpoint format {found!r}")
    if state["step"] > config.iql.steps:
        raise DvdfError(f"{path}: checkpoint is at step {state['step']} but iql.steps is {config.iql.steps}")
    if state["seeds"] != seeds:
        raise DvdfError(f"{path}: checkpoint trains seeds {state['seeds']}, this run {seeds}")
    return state


def restore(state: dict, agent, samplers: list[torch.Generator]) -> tuple[int, list[float]]:
    """Put a loaded checkpoint back into the agent, the samplers and torch's RNG.

    Returns (the step it was taken at, the best normalized score per seed).
    """
    agent.load_state_dict(state["agent"])
    for sampler, sampler_state in zip(samplers, state["samplers"]):
        sampler.set_state(sampler_state.to(sampler.get_state().device))
    torch.set_rng_state(state["torch_rng"])
    return state["step"], list(state["best_normalized_score"])


def _clone(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone().cpu()
    if isinstance(obj, dict):
        return {k: _clone(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_clone(v) for v in obj)
    return obj
