"""Write a dvdf dataset as a Minari dataset (``dvdf data export FILE --format minari --out DIR``).

``DIR`` is a Minari dataset root: the dataset lands in ``DIR/<dataset id>/data`` and loads with
``MINARI_DATASETS_PATH=DIR`` + ``minari.load_dataset(<dataset id>)`` (or ``MinariDataset(path)``),
so other offline-RL libraries that read Minari read it. Rows are split into episodes at
:meth:`Dataset.episode_ends`; an episode's T+1 observations are its rows' observations plus
the last row's next observation. The environment spec is the dvdf domain's gymnasium id
(``dvdf/<domain>-v0``; recovering the env needs dvdf installed). The metadata carries the
domain's normalized-score references as ``ref_min_score`` / ``ref_max_score`` and, under
``dvdf``, where the data came from; the behaviour-policy label of each step goes into the step
infos as ``provenance`` (Minari's infos hold T+1 entries: entry t+1 belongs to step t).

The dataset is built in a hidden directory inside ``DIR`` and renamed into place, so an
interrupted export leaves no half-written dataset under the final id.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

from dvdf import __version__
from dvdf.data.dataset import PROVENANCE_KEY, PROVENANCE_NAMES_KEY, Dataset
from dvdf.data.hdf5 import CHECKSUM_KEY
from dvdf.data.minari_read import _DATASET_ID, DVDF_METADATA_KEY, _import_minari
from dvdf.errors import DvdfError

STORAGE_FORMATS = ("hdf5", "arrow")
# metadata of a dvdf file that travels into the Minari metadata's "dvdf" object
_CARRIED = ("domain", "quality", "seed", "behaviour_policy_steps", "behaviour_policy_mean_return",
            "created_at", "dvdf_version", PROVENANCE_NAMES_KEY)


def default_dataset_id(dataset: Dataset, path: str | os.PathLike) -> str:
    """``dvdf/<domain>/<quality>-v0`` when the file records both, else ``dvdf/<file stem>-v0``."""
    domain, quality = dataset.metadata.get("domain"), dataset.metadata.get("quality")
    if isinstance(domain, str) and isinstance(quality, str):
        return f"dvdf/{domain}/{quality}-v0"
    return f"dvdf/{Path(path).stem}-v0"


def episodes_of(dataset: Dataset) -> list[dict[str, np.ndarray]]:
    """Episodes as Minari wants them: T+1 observations, T actions/rewards/terminations/truncations."""
    data = dataset.with_next_observations()
    ends = np.flatnonzero(data.episode_ends())
    starts = np.concatenate(([0], ends[:-1] + 1))
    labels = data.extras.get(PROVENANCE_KEY)
    episodes = []
    for start, end in zip(starts, ends):
        rows = slice(start, end + 1)
        terminations = data.terminals[rows].copy()
        truncations = data.timeouts[rows].copy()
        truncations[-1] = not terminations[-1]     # every episode ends with one of the two
        episode = {
            "observations": np.concatenate((data.observations[rows], data.next_observations[end:end + 1])),
            "actions": data.actions[rows], "rewards": data.rewards[rows].astype(np.float64),
            "terminations": terminations, "truncations": truncations,
        }
        if labels is not None:
            steps = np.asarray(labels[rows], dtype=np.int64)
            episode["infos"] = {PROVENANCE_KEY: np.concatenate((steps[:1], steps))}
        episodes.append(episode)
    return episodes


@contextlib.contextmanager
def _datasets_root(root: Path) -> Iterator[None]:
    # minari's writers take the dataset root from MINARI_DATASETS_PATH only.
    previous = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = previous


def export_minari(dataset: Dataset, out_dir: str | os.PathLike, dataset_id: str, *,
                  source_path: Optional[str] = None, domain: Optional[str] = None,
                  storage: str = "hdf5") -> dict[str, Any]:
    """Write ``dataset`` as Minari dataset ``dataset_id`` under ``out_dir``; returns a summary."""
    _import_minari()
    from gymnasium import spaces
    from minari import create_dataset_from_buffers
    from minari.data_collector.episode_buffer import EpisodeBuffer

    if storage not in STORAGE_FORMATS:
        raise DvdfError(f"export: storage must be one of {', '.join(STORAGE_FORMATS)}, got {storage!r}")
    if not _DATASET_ID.match(dataset_id):
        raise DvdfError(f"export: malformed Minari dataset id {dataset_id!r} (expected (namespace/)name-vN)")
    out_dir = Path(out_dir).expanduser()
    final = out_dir / dataset_id
    if final.exists():
        raise DvdfError(f"export: {final} already exists (choose another --dataset-id or remove it)")
    domain = domain or dataset.metadata.get("domain")
    env_spec = None
    ref_min, ref_max = dataset.metadata.get("ref_min_score"), dataset.metadata.get("ref_max_score")
    if isinstance(domain, str):
        import gymnasium

        from dvdf.envs import get_domain

        spec = get_domain(domain)
        if (dataset.obs_dim, dataset.act_dim) != (spec.obs_dim, spec.act_dim):
            raise DvdfError(f"export: {source_path or dataset.source} has "
                            f"{dataset.obs_dim}/{dataset.act_dim} obs/action dims, domain '{spec.name}' "
                            f"has {spec.obs_dim}/{spec.act_dim}")
        env_spec = gymnasium.spec(spec.gym_id)
        if ref_min is None or ref_max is None:
            ref_min, ref_max = spec.ref_min, spec.ref_max
    provenance = {key: _plain(dataset.metadata[key]) for key in _CARRIED if key in dataset.metadata}
    provenance.update({"exported_by": f"dvdf {__version__}",
                       "source_file": str(source_path or dataset.source)})
    if CHECKSUM_KEY in dataset.metadata:
        provenance["source_checksum_sha256"] = dataset.metadata[CHECKSUM_KEY]
    episodes = episodes_of(dataset)
    buffers = [EpisodeBuffer(observations=e["observations"], actions=e["actions"], rewards=e["rewards"],
                             terminations=e["terminations"], truncations=e["truncations"],
                             infos=e.get("infos")) for e in episodes]
    box = lambda dim: spaces.Box(-np.inf, np.inf, shape=(dim,), dtype=np.float32)  # noqa: E731
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".dvdf-export-", dir=out_dir))
    try:
        with _datasets_root(staging), warnings.catch_warnings():
            warnings.simplefilter("ignore")   # minari warns about every optional field left empty
            create_dataset_from_buffers(
                dataset_id, buffers, env=env_spec, eval_env=env_spec,
                observation_space=box(dataset.obs_dim), action_space=box(dataset.act_dim),
                algorithm_name=str(dataset.metadata.get("algorithm_name",
                                                        "dvdf collect (SAC behaviour policies)")),
                author="dvdf", code_permalink=None,
                ref_min_score=None if ref_min is None else float(ref_min),
                ref_max_score=None if ref_max is None else float(ref_max),
                description=f"exported by dvdf from {Path(str(source_path or dataset.source)).name}",
                data_format=storage)
        _add_metadata(staging / dataset_id / "data", {DVDF_METADATA_KEY: provenance})
        final.parent.mkdir(parents=True, exist_ok=True)
        os.rename(staging / dataset_id, final)
        _copy_namespace_files(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"path": str(final), "dataset_id": dataset_id, "episodes": len(episodes),
            "steps": int(sum(len(e["actions"]) for e in episodes)), "storage": storage,
            "ref_min_score": ref_min, "ref_max_score": ref_max,
            "env_id": None if env_spec is None else env_spec.id}


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _add_metadata(data_dir: Path, extra: dict[str, Any]) -> None:
    # Through minari's own storage API (it rewrites metadata.json with the new keys).
    from minari.dataset.minari_storage import MinariStorage

    MinariStorage.read(data_dir).update_metadata(json.loads(json.dumps(extra, default=str)))


def _copy_namespace_files(staging: Path, out_dir: Path) -> None:
    """Minari's namespace_metadata.json files, where the destination has none yet."""
    for source in staging.rglob("namespace_metadata.json"):
        target = out_dir / source.relative_to(staging)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
