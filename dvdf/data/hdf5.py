"""Read, validate and write D4RL-format HDF5 datasets.

Two layouts load:

* **D4RL**: ``observations`` (N,d), ``actions`` (N,a), ``rewards`` (N,), ``terminals`` (N,) bool,
  ``timeouts`` (N,) bool, optional ``next_observations``, ``infos/*``, ``metadata/*``;
* **OTDF/ODRL**: no ``timeouts``, ``rewards`` (N,1) float, ``terminals`` (N,1) float (0/1),
  ``next_observations`` present.

Every problem with a file is one :class:`~dvdf.errors.DvdfError` naming the file and what is
wrong. Writing produces the D4RL layout plus ``next_observations`` and ``metadata/*`` (with a
content checksum), atomically: a crash mid-write never leaves a file under the final name.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Mapping, Optional

import h5py
import numpy as np

from dvdf import __version__
from dvdf.atomic import atomic_path
from dvdf.data.dataset import PROVENANCE_KEY, Dataset, dataset_checksum
from dvdf.errors import DvdfError

REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals")
FLOAT_KEYS = ("observations", "actions", "rewards", "next_observations")
CHECKSUM_KEY = "checksum_sha256"
# Top-level groups/arrays carried through as per-row extras (besides the core keys).
EXTRA_GROUPS = ("infos",)
EXTRA_ARRAYS = (PROVENANCE_KEY,)


def read_dataset(path: str | os.PathLike, domain: Optional[str] = None) -> Dataset:
    """Load and validate ``path``; with ``domain``, also check obs/action sizes against it.

    ``path`` may also name a local Minari dataset (``minari:<id>``, or its directory): it is
    read by :mod:`dvdf.data.minari_read` and validated the same way.
    """
    from dvdf.data.minari_read import is_minari_ref, read_minari

    if is_minari_ref(path):
        dataset = read_minari(path)
        validate(dataset, domain=domain)
        return dataset
    path = Path(path)
    if not path.exists():
        raise DvdfError(f"{path}: no such file")
    if path.is_dir() or not h5py.is_hdf5(path):
        what = " (a directory, and no Minari dataset)" if path.is_dir() else ""
        raise DvdfError(f"{path}: not an HDF5 file{what}")
    try:
        with h5py.File(path, "r") as handle:
            raw = _read_raw(handle, path)
    except OSError as exc:  # truncated / corrupt: h5py raises OSError on open or on read
        raise DvdfError(f"{path}: cannot read HDF5 data (truncated or corrupt file?): {exc}") from None
    dataset = _build_dataset(raw, path)
    validate(dataset, domain=domain)
    return dataset


def _read_raw(handle: h5py.File, path: Path) -> dict[str, Any]:
    missing = [key for key in REQUIRED_KEYS if key not in handle]
    if missing:
        raise DvdfError(f"{path}: missing key '{missing[0]}' (a dataset needs {', '.join(REQUIRED_KEYS)})")
    raw: dict[str, Any] = {}
    for key in REQUIRED_KEYS + ("timeouts", "next_observations"):
        if key in handle:
            node = handle[key]
            if not isinstance(node, h5py.Dataset):
                raise DvdfError(f"{path}: '{key}' is a group, expected an array")
            raw[key] = node[()]
    extras: dict[str, np.ndarray] = {}
    for name in EXTRA_ARRAYS:
        if name in handle and isinstance(handle[name], h5py.Dataset):
            extras[name] = handle[name][()]
    for group in EXTRA_GROUPS:
        if group in handle and isinstance(handle[group], h5py.Group):
            handle[group].visititems(lambda name, node, g=group: _collect_array(extras, f"{g}/{name}", node))
    raw["extras"] = extras
    metadata: dict[str, Any] = {}
    if "metadata" in handle:
        if isinstance(handle["metadata"], h5py.Group):
            handle["metadata"].visititems(lambda name, node: _collect_metadata(metadata, name, node))
    raw["metadata"] = metadata
    return raw


def _collect_array(out: dict, name: str, node) -> None:
    if isinstance(node, h5py.Dataset):
        out[name] = node[()]


def _collect_metadata(out: dict, name: str, node) -> None:
    if not isinstance(node, h5py.Dataset):
        return
    value = node[()]
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    elif isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    elif isinstance(value, np.generic):
        value = value.item()
    out[name] = value


def _as_column(value: np.ndarray, key: str, path: Path) -> np.ndarray:
    """(N,) or (N,1) -> (N,); anything else is an error naming the key."""
    value = np.asarray(value)
    if value.ndim == 2 and value.shape[1] == 1:
        value = value[:, 0]
    if value.ndim != 1:
        raise DvdfError(f"{path}: '{key}' must have shape (N,) or (N, 1), got {value.shape}")
    return value


def _as_flags(value: np.ndarray, key: str, path: Path) -> np.ndarray:
    value = _as_column(value, key, path)
    if value.dtype == np.bool_:
        return value
    if not np.issubdtype(value.dtype, np.number):
        raise DvdfError(f"{path}: '{key}' must be boolean or 0/1 numbers, got dtype {value.dtype}")
    bad = ~np.isin(value, (0, 1))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DvdfError(f"{path}: '{key}' must be 0 or 1, row {row} is {value[row]!r}")
    return value.astype(bool)


def _build_dataset(raw: dict[str, Any], path: Path) -> Dataset:
    for key in ("observations", "actions", "next_observations"):
        if key in raw and np.asarray(raw[key]).ndim != 2:
            raise DvdfError(f"{path}: '{key}' must be 2-D (N, dim), got shape {np.shape(raw[key])}")
    for key in FLOAT_KEYS:
        if key in raw and not np.issubdtype(np.asarray(raw[key]).dtype, np.number):
            raise DvdfError(f"{path}: '{key}' must be numeric, got dtype {np.asarray(raw[key]).dtype}")
    rewards = _as_column(raw["rewards"], "rewards", path)
    lengths = {key: len(raw[key]) for key in REQUIRED_KEYS + ("timeouts", "next_observations") if key in raw}
    lengths.update({name: len(np.atleast_1d(value)) for name, value in raw["extras"].items()})
    n = lengths["observations"]
    mismatched = {key: length for key, length in lengths.items() if length != n}
    if mismatched:
        key, length = next(iter(mismatched.items()))
        raise DvdfError(f"{path}: length mismatch: 'observations' has {n} rows but '{key}' has {length}")
    if n == 0:
        raise DvdfError(f"{path}: empty dataset (0 transitions)")
    terminals = _as_flags(raw["terminals"], "terminals", path)
    if "timeouts" in raw:
        timeouts = _as_flags(raw["timeouts"], "timeouts", path)
    elif "next_observations" in raw:
        timeouts = np.zeros(n, dtype=bool)  # OTDF/ODRL layout: boundaries follow from next_observations
    else:
        raise DvdfError(f"{path}: has neither 'timeouts' nor 'next_observations': "
                        "episode boundaries are unknown")
    next_obs = raw.get("next_observations")
    if next_obs is not None and np.shape(next_obs) != np.shape(raw["observations"]):
        raise DvdfError(f"{path}: 'next_observations' has shape {np.shape(next_obs)}, "
                        f"'observations' {np.shape(raw['observations'])}")
    return Dataset(
        observations=np.asarray(raw["observations"], dtype=np.float32),
        actions=np.asarray(raw["actions"], dtype=np.float32),
        rewards=rewards.astype(np.float32),
        terminals=terminals,
        timeouts=timeouts,
        next_observations=None if next_obs is None else np.asarray(next_obs, dtype=np.float32),
        extras=raw["extras"],
        metadata=raw["metadata"],
        source=str(path),
    )


def validate(dataset: Dataset, domain: Optional[str] = None) -> None:
    """Raise a DvdfError naming ``dataset.source`` if the arrays are inconsistent or non-finite.

    Checks lengths, emptiness, NaN/inf, the stored checksum (files written by dvdf) and, with
    ``domain``, the observation and action sizes of that domain.
    """
    where = dataset.source
    n = len(dataset)
    if n == 0:
        raise DvdfError(f"{where}: empty dataset (0 transitions)")
    columns = {"observations": dataset.observations, "actions": dataset.actions, "rewards": dataset.rewards,
               "terminals": dataset.terminals, "timeouts": dataset.timeouts}
    if dataset.next_observations is not None:
        columns["next_observations"] = dataset.next_observations
    columns.update(dataset.extras)
    for key, column in columns.items():
        if len(column) != n:
            raise DvdfError(f"{where}: length mismatch: 'observations' has {n} rows "
                            f"but '{key}' has {len(column)}")
    for key in FLOAT_KEYS:
        column = columns.get(key)
        if column is None:
            continue
        finite = np.isfinite(column)
        if not finite.all():
            row = int(np.argwhere(~finite)[0][0])
            raise DvdfError(f"{where}: '{key}' contains NaN or inf (first at row {row})")
    if domain is not None:
        from dvdf.envs import get_domain  # imported lazily: reading files does not need MuJoCo

        spec = get_domain(domain)
        if dataset.obs_dim != spec.obs_dim:
            raise DvdfError(f"{where}: observations have {dataset.obs_dim} dims, "
                            f"domain '{domain}' has {spec.obs_dim}")
        if dataset.act_dim != spec.act_dim:
            raise DvdfError(f"{where}: actions have {dataset.act_dim} dims, "
                            f"domain '{domain}' has {spec.act_dim}")
    stored = dataset.metadata.get(CHECKSUM_KEY)
    if stored is not None and stored != dataset_checksum(dataset):
        raise DvdfError(f"{where}: content checksum does not match the recorded one "
                        "(file modified or corrupt)")


def write_dataset(path: str | os.PathLike, dataset: Dataset,
                  metadata: Optional[Mapping[str, Any]] = None) -> Path:
    """Write ``dataset`` (D4RL layout + next_observations + metadata) atomically; return the path.

    ``metadata`` entries are added to ``dataset.metadata`` (the dataset itself is not
    changed); dvdf adds ``dvdf_version``, ``created_at`` (UTC, ISO 8601) and the content
    checksum. Values are str / int / float / bool / arrays; None values are skipped.
    """
    path = Path(path)
    meta = dict(dataset.metadata)
    meta.update(metadata or {})
    meta.setdefault("dvdf_version", __version__)
    meta["created_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    meta[CHECKSUM_KEY] = dataset_checksum(dataset)
    with atomic_path(path, suffix=".hdf5") as tmp:
        with h5py.File(tmp, "w") as handle:
            handle.create_dataset("observations", data=np.asarray(dataset.observations, dtype=np.float32))
            handle.create_dataset("actions", data=np.asarray(dataset.actions, dtype=np.float32))
            handle.create_dataset("rewards", data=np.asarray(dataset.rewards, dtype=np.float32))
            handle.create_dataset("terminals", data=np.asarray(dataset.terminals, dtype=bool))
            handle.create_dataset("timeouts", data=np.asarray(dataset.timeouts, dtype=bool))
            if dataset.next_observations is not None:
                handle.create_dataset("next_observations",
                                      data=np.asarray(dataset.next_observations, dtype=np.float32))
            for name, column in dataset.extras.items():
                handle.create_dataset(name, data=column)
            group = handle.create_group("metadata")
            for name, value in meta.items():
                if value is None:
                    continue
                group.create_dataset(name, data=value)
        _fsync(tmp)
    return path


def _fsync(path: Path) -> None:
    # h5py closes without fsync; flush to disk before the rename makes the file visible.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_summary(path: str | os.PathLike) -> dict[str, Any]:
    """Cheap look at a file (shapes + metadata, no arrays loaded); for listings. Raises DvdfError."""
    path = Path(path)
    if not h5py.is_hdf5(path):
        raise DvdfError(f"{path}: not an HDF5 file")
    try:
        with h5py.File(path, "r") as handle:
            shapes = {key: tuple(handle[key].shape) for key in ("observations", "actions") if key in handle}
            metadata: dict[str, Any] = {}
            if "metadata" in handle and isinstance(handle["metadata"], h5py.Group):
                handle["metadata"].visititems(lambda name, node: _collect_metadata(metadata, name, node))
    except OSError as exc:
        raise DvdfError(f"{path}: cannot read HDF5 data (truncated or corrupt file?): {exc}") from None
    if "observations" not in shapes or "actions" not in shapes:
        raise DvdfError(f"{path}: missing key 'observations' or 'actions'")
    return {"transitions": shapes["observations"][0], "obs_dim": shapes["observations"][1],
            "act_dim": shapes["actions"][1], "metadata": metadata}
