"""The catalogue of a data directory (``catalogue.json``) and its listing.

Every dataset that dvdf generates into a data directory is recorded there (domain, quality,
size, checksum, behaviour-policy return). Updates hold an ``fcntl`` lock and replace the file
atomically, so concurrent collections (Ray tasks, several nodes on shared storage) never lose
or half-write an entry.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dvdf.atomic import atomic_write_text
from dvdf.cache import file_lock
from dvdf.data.hdf5 import CHECKSUM_KEY, read_summary
from dvdf.errors import DvdfError

CATALOGUE_NAME = "catalogue.json"
CATALOGUE_VERSION = 1
_METADATA_FIELDS = ("domain", "quality", "seed", "behaviour_policy_steps", "behaviour_policy_mean_return",
                    "created_at", CHECKSUM_KEY)


def read_catalogue(data_dir: str | os.PathLike) -> dict[str, Any]:
    """The catalogue mapping (``{"version": 1, "datasets": {file name: entry}}``); empty if absent."""
    path = Path(data_dir) / CATALOGUE_NAME
    if not path.exists():
        return {"version": CATALOGUE_VERSION, "datasets": {}}
    try:
        catalogue = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DvdfError(f"{path}: unreadable catalogue ({exc})") from None
    if not isinstance(catalogue, dict) or not isinstance(catalogue.get("datasets"), dict):
        raise DvdfError(f"{path}: not a dvdf catalogue (expected a 'datasets' mapping)")
    return catalogue


def entry_for(path: str | os.PathLike) -> dict[str, Any]:
    """Catalogue entry of one dataset file (from its shapes and metadata, no arrays loaded)."""
    summary = read_summary(path)
    meta = summary["metadata"]
    entry = {"file": Path(path).name, "transitions": summary["transitions"], "obs_dim": summary["obs_dim"],
             "act_dim": summary["act_dim"]}
    entry.update({key: meta[key] for key in _METADATA_FIELDS if key in meta})
    return entry


def record_dataset(data_dir: str | os.PathLike, path: str | os.PathLike) -> dict[str, Any]:
    """Add (or refresh) ``path``'s entry in ``data_dir``'s catalogue; returns the entry."""
    data_dir = Path(data_dir)
    entry = entry_for(path)
    with file_lock(data_dir / f".{CATALOGUE_NAME}.lock"):
        catalogue = read_catalogue(data_dir)
        catalogue["version"] = CATALOGUE_VERSION
        catalogue["datasets"][entry["file"]] = entry
        catalogue["datasets"] = dict(sorted(catalogue["datasets"].items()))
        atomic_write_text(data_dir / CATALOGUE_NAME, json.dumps(catalogue, indent=2) + "\n")
    return entry


def list_data_dir(data_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Catalogued datasets plus any other ``*.hdf5`` in the directory, each with a ``status``.

    status: ``ok`` (catalogued, file present), ``missing`` (catalogued, file gone),
    ``uncatalogued`` (a file the catalogue does not know), ``unreadable`` (not a dataset).
    Temporary files of writes in progress (hidden dot-files) are ignored.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DvdfError(f"{data_dir}: no such directory")
    entries = {name: dict(entry, status="ok") for name, entry in read_catalogue(data_dir)["datasets"].items()}
    for name, entry in entries.items():
        if not (data_dir / name).is_file():
            entry["status"] = "missing"
    for path in sorted(data_dir.glob("*.hdf5")):
        if path.name in entries:
            continue
        try:
            entries[path.name] = dict(entry_for(path), status="uncatalogued")
        except DvdfError as exc:
            entries[path.name] = {"file": path.name, "status": "unreadable", "error": str(exc)}
    return [entries[name] for name in sorted(entries)]
