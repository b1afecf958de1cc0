"""Read local Minari datasets (minari 0.5: HDF5, Arrow or Parquet storage) as dvdf Datasets.

A dataset is named ``minari:<dataset id>`` (looked up under ``$MINARI_DATASETS_PATH``, else
``~/.minari/datasets``, as ``minari.load_dataset`` does - never downloaded), ``minari:<path>``
or a plain path to the dataset's directory (the one holding ``data/``, or ``data/`` itself).

Minari stores episodes: T+1 observations, T actions, rewards, terminations and truncations.
Each episode becomes T rows whose ``next_observations`` are the episode's own next states, so
the q-learning view never pairs the last state of one episode with the first of the next
(the same rule as for D4RL files, see :mod:`dvdf.data.dataset`); the last row of every
episode is a terminal or a timeout. Observations are mapped to the dvdf domain's layout by
:mod:`dvdf.data.minari_layout`. Reference scores (``ref_min_score``, ``ref_max_score``) and
what identifies the data are kept in ``Dataset.metadata``.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path
from typing import Any, Optional

import numpy as np

from dvdf.data.dataset import PROVENANCE_KEY, PROVENANCE_NAMES_KEY, Dataset
from dvdf.data.minari_layout import LayoutMapping, map_minari_env
from dvdf.errors import DvdfError

PREFIX = "minari:"
EXTRA = "minari"
METADATA_FILE = "metadata.json"
# minari's own id grammar: (namespace/)name(-vN)
_DATASET_ID = re.compile(r"^(?:[-_\w][-_\w/]*[-_\w]+/)?[-_\w]+?(?:-v\d+)$")
# Minari metadata carried into Dataset.metadata (scalars only), under these names.
_KEPT_METADATA = {"dataset_id": "minari_dataset_id", "minari_version": "minari_version",
                  "data_format": "minari_data_format", "algorithm_name": "algorithm_name",
                  "ref_min_score": "ref_min_score", "ref_max_score": "ref_max_score",
                  "description": "description"}
DVDF_METADATA_KEY = "dvdf"   # what dvdf's export adds to a Minari dataset's metadata (a JSON object)


def is_minari_ref(path: Any) -> bool:
    """Whether ``path`` names a Minari dataset (``minari:...`` or a Minari dataset directory)."""
    text = os.fspath(path) if isinstance(path, os.PathLike) else str(path)
    if text.startswith(PREFIX):
        return True
    candidate = Path(text).expanduser()
    return candidate.is_dir() and ((candidate / METADATA_FILE).is_file()
                                   or (candidate / "data" / METADATA_FILE).is_file())


def datasets_root() -> Path:
    """Minari's local dataset directory: $MINARI_DATASETS_PATH, else ~/.minari/datasets."""
    configured = os.environ.get("MINARI_DATASETS_PATH")
    return Path(configured).expanduser() if configured else Path.home() / ".minari" / "datasets"


def resolve_ref(ref: str) -> Path:
    """The ``data/`` directory a reference names (checked to exist); DvdfError otherwise."""
    text = ref[len(PREFIX):] if ref.startswith(PREFIX) else ref
    if not text:
        raise DvdfError(f"{ref}: empty Minari dataset name (e.g. minari:mujoco/hopper/medium-v0)")
    looks_like_path = text.startswith(("/", ".", "~")) or not ref.startswith(PREFIX)
    if looks_like_path:
        base = Path(text).expanduser()
        where = str(base)
    else:
        if not _DATASET_ID.match(text):
            raise DvdfError(f"{ref}: malformed Minari dataset id {text!r} "
                            "(expected (namespace/)name-vN, e.g. mujoco/hopper/medium-v0)")
        base = datasets_root() / text
        origin = "MINARI_DATASETS_PATH" if os.environ.get("MINARI_DATASETS_PATH") else "default root"
        where = f"{base} ({origin} {datasets_root()})"
    for data_dir in (base / "data", base):
        if (data_dir / METADATA_FILE).is_file():
            return data_dir
    raise DvdfError(f"{ref}: no such local Minari dataset (no {METADATA_FILE} in {where} or its data/; "
                    "dvdf never downloads: fetch it with 'minari download' first)")


def _import_minari():
    try:
        import minari  # noqa: F401
        from minari import MinariDataset
    except ImportError:
        raise DvdfError(f"reading or writing Minari datasets needs the minari package: "
                        f"pip install 'dvdf[{EXTRA}]'") from None
    return MinariDataset


def read_minari(ref: str | os.PathLike) -> Dataset:
    """Load a Minari dataset as a :class:`Dataset` (not yet validated against a domain)."""
    ref = os.fspath(ref)
    data_dir = resolve_ref(ref)
    MinariDataset = _import_minari()
    try:
        raw_meta = json.loads((data_dir / METADATA_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DvdfError(f"{ref}: unreadable Minari metadata {data_dir / METADATA_FILE}: {exc}") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # minari warns about fields a local dataset may omit
            source = MinariDataset(str(data_dir))
            obs_space, act_space = source.observation_space, source.action_space
            env_spec = source.env_spec
    except Exception as exc:  # minari raises ValueError / KeyError / OSError / Arrow errors here
        raise DvdfError(f"{ref}: not a readable Minari dataset: {_one_line(exc)}") from None
    obs_dim, act_dim = _flat_box_dims(ref, obs_space, act_space)
    mapping = map_minari_env(ref, getattr(env_spec, "id", None), dict(getattr(env_spec, "kwargs", {}) or {}),
                             obs_dim, act_dim)
    try:
        columns = _episodes_to_rows(ref, source.iterate_episodes(), obs_dim, act_dim)
    except DvdfError:
        raise
    except Exception as exc:
        raise DvdfError(f"{ref}: cannot read Minari episodes (truncated or corrupt?): "
                        f"{_one_line(exc)}") from None
    return _build(ref, columns, mapping, raw_meta)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _flat_box_dims(ref: str, obs_space, act_space) -> tuple[int, int]:
    from gymnasium import spaces

    for role, space in (("observation", obs_space), ("action", act_space)):
        if not isinstance(space, spaces.Box) or len(space.shape) != 1:
            kind = type(space).__name__
            if isinstance(space, spaces.Box):
                kind += f" of shape {space.shape}"
            raise DvdfError(f"{ref}: the {role} space is a {kind}; dvdf needs flat Box "
                            f"{role}s (continuous control, vector observations)")
    return int(obs_space.shape[0]), int(act_space.shape[0])


def _episodes_to_rows(ref: str, episodes, obs_dim: int, act_dim: int) -> dict[str, np.ndarray]:
    parts: dict[str, list] = {k: [] for k in ("obs", "next", "act", "rew", "term", "trunc", "prov")}
    has_provenance = None
    for _index, episode in enumerate(episodes):
        obs = np.asarray(episode.observations)
        steps = len(episode.actions)
        if obs.ndim != 2 or obs.shape != (steps + 1, obs_dim):
            raise DvdfError(f"{ref}: episode {episode.id}: {steps} steps need {steps + 1} observations of "
                            f"{obs_dim} dims, got shape {obs.shape}")
        if steps == 0:
            continue
        columns = {"rewards": episode.rewards, "terminations": episode.terminations,
                   "truncations": episode.truncations}
        for key, column in columns.items():
            if len(column) != steps:
                raise DvdfError(f"{ref}: episode {episode.id}: {steps} actions but {len(column)} {key}")
        parts["obs"].append(obs[:-1])
        parts["next"].append(obs[1:])
        parts["act"].append(np.asarray(episode.actions).reshape(steps, act_dim))
        parts["rew"].append(np.asarray(episode.rewards, dtype=np.float64))
        term = np.asarray(episode.terminations, dtype=bool)
        trunc = np.asarray(episode.truncations, dtype=bool)
        # Every episode ends: a last step that is neither terminal nor truncated is cut here.
        trunc = trunc.copy()
        trunc[-1] |= not term[-1]
        parts["term"].append(term)
        parts["trunc"].append(trunc & ~term)
        # dvdf's export keeps the behaviour-policy label per step in infos (index t+1 = step t).
        labels = (episode.infos or {}).get(PROVENANCE_KEY) if isinstance(episode.infos, dict) else None
        this_has = labels is not None and len(labels) == steps + 1
        has_provenance = this_has if has_provenance is None else (has_provenance and this_has)
        if this_has:
            parts["prov"].append(np.asarray(labels)[1:].astype(np.int64))
    if not parts["obs"]:
        raise DvdfError(f"{ref}: empty dataset (0 transitions)")
    out = {"observations": np.concatenate(parts["obs"]), "next_observations": np.concatenate(parts["next"]),
           "actions": np.concatenate(parts["act"]), "rewards": np.concatenate(parts["rew"]),
           "terminals": np.concatenate(parts["term"]), "timeouts": np.concatenate(parts["trunc"])}
    if has_provenance:
        out[PROVENANCE_KEY] = np.concatenate(parts["prov"])
    return out


def _build(ref: str, columns: dict[str, np.ndarray], mapping: LayoutMapping, raw_meta: dict) -> Dataset:
    metadata: dict[str, Any] = {"format": "minari"}
    for key, name in _KEPT_METADATA.items():
        value = raw_meta.get(key)
        if isinstance(value, (str, int, float, bool)):
            metadata[name] = value
    if mapping.env_id is not None:
        metadata["minari_env_id"] = mapping.env_id
    if mapping.domain is not None:
        metadata["domain"] = mapping.domain
    if mapping.d4rl_compat is not None:
        metadata["d4rl_compat"] = mapping.d4rl_compat
    if mapping.physics:
        metadata["minari_physics"] = "; ".join(mapping.physics)
    if mapping.pad_zeros:
        metadata["minari_layout"] = f"{mapping.pad_zeros} always-zero contact dims appended"
    dvdf_meta = raw_meta.get(DVDF_METADATA_KEY)
    if isinstance(dvdf_meta, dict):   # written by dvdf's export: quality, provenance names, ...
        for key, value in dvdf_meta.items():
            if isinstance(value, (str, int, float, bool)) and key not in metadata:
                metadata[key] = value
    extras = {}
    if PROVENANCE_KEY in columns:
        extras[PROVENANCE_KEY] = columns[PROVENANCE_KEY]
    elif PROVENANCE_NAMES_KEY in metadata:
        del metadata[PROVENANCE_NAMES_KEY]   # names without labels would describe nothing
    for key in ("observations", "next_observations", "actions", "rewards"):
        if not np.issubdtype(columns[key].dtype, np.number):
            raise DvdfError(f"{ref}: '{key}' must be numeric, got dtype {columns[key].dtype}")
    return Dataset(
        observations=mapping.apply(columns["observations"].astype(np.float32)),
        actions=columns["actions"].astype(np.float32),
        rewards=columns["rewards"].astype(np.float32),
        terminals=columns["terminals"],
        timeouts=columns["timeouts"],
        next_observations=mapping.apply(columns["next_observations"].astype(np.float32)),
        extras=extras,
        metadata=metadata,
        source=ref,
    )


def reference_scores(dataset: Dataset) -> Optional[tuple[float, float]]:
    """(ref_min_score, ref_max_score) from a dataset's metadata, where both are present."""
    low, high = dataset.metadata.get("ref_min_score"), dataset.metadata.get("ref_max_score")
    if isinstance(low, (int, float)) and isinstance(high, (int, float)):
        return float(low), float(high)
    return None
