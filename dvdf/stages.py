"""Stages 1-2 of DVDF as cached artifacts, and the data an experiment trains on.

Stage 1 (value model on the source, SQL or IQL) and stage 2 (dynamics-alignment scores,
contrastive or optimal transport; OTDF's behaviour VAE) depend only on the datasets, the seed
and their own hyperparameters - never on lambda (``filter.tradeoff``) or xi
(``filter.keep_ratio``). Each is stored in the :class:`~dvdf.cache.ArtifactCache` under a key
built from exactly those inputs, so a sweep over lambda/xi computes them once per
(group, seed) and every trial loads them. What is cached is the *per-transition* output
(advantage A(s,a), score h(s,a,s')), computed once up front without gradients.

Which artifacts a run needs comes from the method registry (:func:`dvdf.methods.get_method`): its
dynamics scorer, its value model and whether it has OTDF's behaviour constraint. Each key hashes
its stage's config section whole (:func:`stage_inputs`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from dvdf.cache import ArtifactCache
from dvdf.config import ExperimentConfig, ValueStageConfig
from dvdf.methods import get_method
from dvdf.schema import to_dict

# Artifact kinds: the cache's sub-directories (the scorer kinds are dvdf.methods' scorer names).
VALUE, CONTRASTIVE, OT, VAE = "value", "contrastive", "ot", "vae"


@dataclass
class ExperimentData:
    """Q-learning views (dicts of numpy arrays) of the source and the (subsampled) target data."""

    source: dict[str, np.ndarray]
    target: dict[str, np.ndarray]
    source_key: str            # content checksum of the source dataset
    target_key: str            # checksum of the target dataset + how it was subsampled
    provenance_names: Optional[list[str]] = None   # label -> behaviour policy name, if recorded
    source_path: Optional[str] = None
    target_path: Optional[str] = None
    _on_device: dict = dataclasses.field(default_factory=dict, repr=False)

    def on_device(self, device: torch.device) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(source, target) transition columns as tensors on ``device``, copied once per device."""
        if device not in self._on_device:
            self._on_device[device] = (to_device(core_columns(self.source), device),
                                       to_device(core_columns(self.target), device))
        return self._on_device[device]


@dataclass
class StageOutputs:
    """Per-source-transition scores (torch, on the experiment device) and optional VAE."""

    advantage: Optional[torch.Tensor] = None    # A(s,a) = min(Q1,Q2)(s,a) - V(s), stage 1
    dyn_score: Optional[torch.Tensor] = None    # h (contrastive) or -OT deviation, stage 2
    behavior_vae: Optional[torch.nn.Module] = None
    artifact_dirs: dict[str, str] = dataclasses.field(default_factory=dict)


# ----------------------------------------------------------------------------------- data
def resolve_dataset_paths(config: ExperimentConfig, progress: bool = False) -> tuple[Path, Path]:
    """Explicit paths as given; otherwise ``<data_dir>/<domain>-<quality>.hdf5``, generated if missing."""
    from dvdf.data.collect import ensure_dataset

    data = config.data
    paths = []
    for explicit, domain in ((data.source_path, data.source_domain), (data.target_path, data.target_domain)):
        if explicit is not None:
            paths.append(Path(explicit).expanduser())
        else:
            paths.append(Path(ensure_dataset(domain, data.quality, data.data_dir, data.collect,
                                             progress=progress)))
    return paths[0], paths[1]


def load_experiment_data(config: ExperimentConfig, progress: bool = False) -> ExperimentData:
    from dvdf.data import read_dataset, subsample

    data = config.data
    source_path, target_path = resolve_dataset_paths(config, progress)
    source_ds = read_dataset(source_path, domain=data.source_domain)
    target_ds = read_dataset(target_path, domain=data.target_domain)
    fraction = None if data.target_transitions else data.target_fraction
    target = subsample(target_ds.transitions(), fraction=fraction,
                       count=data.target_transitions, seed=data.subsample_seed,
                       replace=data.target_with_replacement)
    target_key = _digest({"dataset": _content_checksum(target_ds), "fraction": data.target_fraction,
                          "count": data.target_transitions, "replace": data.target_with_replacement,
                          "seed": data.subsample_seed})
    names = source_ds.metadata.get("provenance_names")
    if isinstance(names, str):
        names = json.loads(names)
    return ExperimentData(source=source_ds.transitions(), target=target,
                          source_key=_content_checksum(source_ds), target_key=target_key,
                          provenance_names=list(names) if names else None,
                          source_path=str(source_path), target_path=str(target_path))


def _content_checksum(dataset) -> str:
    """The dataset's sha256: the recorded one when the file has it (read_dataset verified it
    against the content), so a 1M-transition file is not hashed a second time."""
    from dvdf.data import dataset_checksum
    from dvdf.data.hdf5 import CHECKSUM_KEY

    return dataset.metadata.get(CHECKSUM_KEY) or dataset_checksum(dataset)


def core_columns(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The (s, a, r, s', done) columns of a transitions dict, without extras like provenance."""
    from dvdf.data.dataset import TRANSITION_KEYS

    return {k: columns[k] for k in TRANSITION_KEYS}


def to_device(columns: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: torch.as_tensor(np.ascontiguousarray(v), device=device) for k, v in columns.items()}


# --------------------------------------------------------------------------------- stages
def value_stage_config(config: ExperimentConfig) -> Optional[ValueStageConfig]:
    """The stage-1 config this run's method trains, with ``model`` the one the method uses
    (``value.model``, or IQL for the dvdf-iql-adv ablation); None when the method uses no value."""
    kind = get_method(config.filter.method).value_model_for(config.value.model)
    return None if kind is None else dataclasses.replace(config.value, model=kind)


def stage_inputs(config: ExperimentConfig, data: ExperimentData) -> dict[str, dict[str, Any]]:
    """Cache-key inputs of every artifact the configured method needs, by artifact kind.

    Each holds the data checksums it reads, the seed where it is trained, and its stage's config
    section hashed WHOLE (``to_dict``), so any field of that section - present or added later -
    changes the key, and no other section does. lambda and xi are in none of them.
    """
    method = get_method(config.filter.method)
    inputs: dict[str, dict[str, Any]] = {}
    if not method.uses_source:
        return inputs
    value = value_stage_config(config)
    if value is not None:
        from dvdf.envs import get_domain
        robot = get_domain(config.data.source_domain).robot   # SQL's default alpha depends on it
        inputs[VALUE] = {"source": data.source_key, "seed": config.seed, "robot": robot,
                         "value": to_dict(value)}
    if method.dynamics_scorer == CONTRASTIVE:
        inputs[CONTRASTIVE] = {"source": data.source_key, "target": data.target_key, "seed": config.seed,
                               "scorer": to_dict(config.scorer.contrastive)}
    elif method.dynamics_scorer == OT:   # deterministic: no seed
        inputs[OT] = {"source": data.source_key, "target": data.target_key,
                      "scorer": to_dict(config.scorer.ot)}
    if method.behavior_constraint:
        inputs[VAE] = {"target": data.target_key, "seed": config.seed, "scorer": to_dict(config.scorer.vae)}
    return inputs


def build_stages(config: ExperimentConfig, data: ExperimentData, device: torch.device,
                 progress: bool = False) -> StageOutputs:
    """Build (or load from the cache) every artifact the configured method needs."""
    out = StageOutputs()
    inputs = stage_inputs(config, data)
    if not inputs:
        return out
    cache = ArtifactCache(config.cache_dir)

    def tensors():  # moved to the device only if something must be built
        return data.on_device(device)

    if VALUE in inputs:
        value_cfg = value_stage_config(config)

        def build_value(directory: Path) -> None:
            from dvdf.algos import fit_value_model, source_advantages
            src, _ = tensors()
            learner = fit_value_model(src, value_cfg, robot=inputs[VALUE]["robot"], seed=config.seed,
                                      device=device, progress=progress)
            torch.save(learner.state_dict(), directory / "value_model.pt")
            torch.save(source_advantages(learner, src).float().cpu(), directory / "advantage.pt")

        path = cache.get_or_build(VALUE, inputs[VALUE], build_value)
        out.advantage = torch.load(path / "advantage.pt", map_location=device)
        out.artifact_dirs[VALUE] = str(path)

    if CONTRASTIVE in inputs:
        def build_contrastive(directory: Path) -> None:
            from dvdf.algos import fit_contrastive_scorer
            src, tgt = tensors()
            model = fit_contrastive_scorer(src, tgt, config.scorer.contrastive, seed=config.seed,
                                           device=device, progress=progress)
            torch.save(model.state_dict(), directory / "scorer.pt")
            scores = model.score(src["observations"], src["actions"], src["next_observations"])
            torch.save(scores.float().cpu(), directory / "dyn_score.pt")

        path = cache.get_or_build(CONTRASTIVE, inputs[CONTRASTIVE], build_contrastive)
        out.dyn_score = torch.load(path / "dyn_score.pt", map_location=device)
        out.artifact_dirs[CONTRASTIVE] = str(path)
    elif OT in inputs:
        def build_ot(directory: Path) -> None:
            from dvdf.filtering import ot_scores
            src, tgt = tensors()
            torch.save(ot_scores(src, tgt, config.scorer.ot, device=device, progress=progress).float().cpu(),
                       directory / "dyn_score.pt")

        path = cache.get_or_build(OT, inputs[OT], build_ot)
        out.dyn_score = torch.load(path / "dyn_score.pt", map_location=device)
        out.artifact_dirs[OT] = str(path)

    if VAE in inputs:
        def build_vae(directory: Path) -> None:
            from dvdf.algos import fit_behavior_vae
            _, tgt = tensors()
            vae = fit_behavior_vae(tgt, config.scorer.vae, seed=config.seed, device=device, progress=progress)
            torch.save(vae.state_dict(), directory / "vae.pt")

        path = cache.get_or_build(VAE, inputs[VAE], build_vae)
        from dvdf.algos import load_behavior_vae
        out.behavior_vae = load_behavior_vae(path / "vae.pt", config.scorer.vae, device=device)
        out.artifact_dirs[VAE] = str(path)
    return out


# -------------------------------------------------------------------------------- helpers
def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:32]
