"""Summaries of datasets for ``dvdf data inspect``."""

from __future__ import annotations

import os
from typing import Any, Optional

import numpy as np

from dvdf.data.dataset import PROVENANCE_KEY, Dataset
from dvdf.data.hdf5 import read_dataset
from dvdf.data.minari_read import reference_scores


def describe(dataset: Dataset) -> dict[str, Any]:
    """Counts, dimensions, per-episode return statistics, provenance counts and metadata."""
    returns = dataset.episode_returns()
    info: dict[str, Any] = {
        "path": dataset.source,
        "transitions": len(dataset),
        "episodes": int(len(returns)),
        "obs_dim": dataset.obs_dim,
        "act_dim": dataset.act_dim,
        "return_mean": float(returns.mean()),
        "return_std": float(returns.std()),
        "return_min": float(returns.min()),
        "return_max": float(returns.max()),
        "terminals": int(dataset.terminals.sum()),
        "timeouts": int(dataset.timeouts.sum()),
        "has_next_observations": dataset.next_observations is not None,
        "q_learning_transitions": int(len(dataset.transition_rows())),
        "extras": {name: list(column.shape) for name, column in dataset.extras.items()},
    }
    if PROVENANCE_KEY in dataset.extras:
        labels, counts = np.unique(dataset.extras[PROVENANCE_KEY], return_counts=True)
        names = dataset.provenance_names()
        info["provenance"] = {(names[label] if 0 <= label < len(names) else str(label)): int(count)
                              for label, count in zip(labels.tolist(), counts.tolist())}
    refs = reference_scores(dataset)
    if refs is not None and refs[1] > refs[0]:
        # The dataset's own normalized-score references (Minari metadata), where it has them.
        info["reference_scores"] = list(refs)
        info["return_mean_normalized"] = 100.0 * (info["return_mean"] - refs[0]) / (refs[1] - refs[0])
    info["metadata"] = {key: _plain(value) for key, value in dataset.metadata.items()}
    return info


def inspect_file(path: str | os.PathLike, domain: Optional[str] = None) -> dict[str, Any]:
    """Read + validate (raises DvdfError on a bad file) and describe."""
    info = describe(read_dataset(path, domain=domain))
    info["valid"] = True
    return info


def _plain(value: Any) -> Any:
    # Large arrays in metadata (D4RL stores policy weights there) are shown by shape only.
    if isinstance(value, np.ndarray):
        return value.tolist() if value.size <= 16 else f"array{list(value.shape)} {value.dtype}"
    return value


def format_description(info: dict[str, Any]) -> str:
    lines = [
        f"{info['path']}",
        f"  transitions      {info['transitions']} ({info['q_learning_transitions']} usable for q-learning)",
        f"  episodes         {info['episodes']}",
        f"  obs / action dim {info['obs_dim']} / {info['act_dim']}",
        f"  episode return   mean {info['return_mean']:.2f}  std {info['return_std']:.2f}  "
        f"min {info['return_min']:.2f}  max {info['return_max']:.2f}",
        f"  terminals        {info['terminals']}",
        f"  timeouts         {info['timeouts']}",
        f"  next_observations {'yes' if info['has_next_observations'] else 'no (next row)'}",
    ]
    if "reference_scores" in info:
        low, high = info["reference_scores"]
        lines.append(f"  normalized return {info['return_mean_normalized']:.1f} (mean; dataset references "
                     f"{low:g} / {high:g})")
    if info["extras"]:
        lines.append("  extra columns    " + ", ".join(f"{k} {v}" for k, v in info["extras"].items()))
    if "provenance" in info:
        lines.append("  provenance       " + ", ".join(f"{k}: {v}" for k, v in info["provenance"].items()))
    if info["metadata"]:
        lines.append("  metadata")
        lines.extend(f"    {key}: {value}" for key, value in info["metadata"].items())
    lines.append(f"  validation       {'ok' if info.get('valid') else 'not run'}")
    return "\n".join(lines)
