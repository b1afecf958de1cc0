"""Dataset generation with D4RL's recipe: SAC behaviour policies + stochastic rollouts.

Qualities (D4RL definitions):

* ``random``        - the randomly initialised SAC actor (snapshot at step 0);
* ``expert``        - by default the snapshot that is best on a fresh evaluation; with
  ``collect.expert: final`` D4RL's literal rule, the actor at the end of SAC training
  (:mod:`dvdf.data.expert` says why the default differs);
* ``medium``        - the snapshot before the expert whose evaluated return is closest to 1/3 of
  the expert's;
* ``medium-replay`` - SAC's replay buffer up to the medium snapshot (its own size, not
  ``transitions``: every step SAC took until it reached the medium level);
* ``medium-expert`` - the medium and expert datasets concatenated (2 x ``transitions``);
* ``random-expert`` - dvdf's addition, not D4RL's: the random and expert datasets concatenated,
  the two extremes a value-aware filter should tell apart.

A mixture's parts are the very rollouts of the single-policy qualities (same seeds), so where
those files already exist beside the one being made, they are read instead of rolled out again.

Every row records the behaviour policy that produced it in an int ``provenance`` column; the
label names are in ``metadata/provenance_names`` (JSON list). The SAC run of a (domain, SAC
settings, seed) is trained once and cached; all qualities of the domain share it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Optional

import numpy as np

from dvdf.cache import artifact_key, file_lock
from dvdf.config import QUALITIES, CollectConfig
from dvdf.data.behaviour import SACConfig, SACResult, load_actor, load_replay, train_sac
from dvdf.data.catalogue import record_dataset
from dvdf.data.dataset import PROVENANCE_KEY, PROVENANCE_NAMES_KEY, Dataset, concatenate
from dvdf.data.expert import select_expert
from dvdf.data.hdf5 import read_dataset, read_summary, write_dataset
from dvdf.data.rollout import default_workers, parallel_rollouts
from dvdf.errors import DvdfError

# Named sizes for `dvdf collect --preset`; explicit flags override their values.
# tiny: CI and smoke tests (about a minute); small: quickstart (about 30 min of SAC per domain on
# one core); d4rl: D4RL's sizes, 1M SAC steps and 1M transitions per quality (a cluster job).
COLLECT_PRESETS: dict[str, CollectConfig] = {
    "tiny": CollectConfig(transitions=2_000, sac_steps=2_000, snapshot_every=200, eval_episodes=2),
    "small": CollectConfig(transitions=50_000, sac_steps=100_000, snapshot_every=5_000),
    "d4rl": CollectConfig(),
}
MEDIUM_FRACTION = 1.0 / 3.0     # D4RL: medium policy ~ one third of the expert's return
ROLLOUT_SEED_OFFSET = {"random": 1, "medium": 2, "expert": 3}  # distinct rollout streams per policy
MIXTURES: dict[str, tuple[str, ...]] = {"medium-expert": ("medium", "expert"),
                                        "random-expert": ("random", "expert")}
COLLECT_SETTINGS_KEY = "collect_settings"
# Identity settings added after the first datasets were written, with the value those older files
# were made with: a file that does not record one was made that way.
SETTINGS_BEFORE_THEY_WERE_RECORDED = {"expert": "final"}


# ------------------------------------------------------------------------------ policy cache
def default_policy_cache() -> Path:
    """``$DVDF_POLICY_CACHE`` or ``~/.cache/dvdf/policies``."""
    default = Path.home() / ".cache" / "dvdf" / "policies"
    return Path(os.environ.get("DVDF_POLICY_CACHE", default)).expanduser()


def policy_run_dir(domain: str, sac: SACConfig, cache_dir: str | os.PathLike) -> Path:
    """Where the SAC run of (domain, SAC settings, seed) lives: ``<cache>/<domain>-<key>``."""
    return Path(cache_dir).expanduser() / f"{domain}-{artifact_key(sac.identity(domain))}"


def ensure_policy(domain: str, collect: CollectConfig, cache_dir: str | os.PathLike, device: str = "cpu",
                  progress: bool = True) -> SACResult:
    """The completed SAC run for ``domain``: loaded from the cache, resumed, or trained.

    A lock file serialises concurrent callers (Ray tasks, several nodes on shared storage):
    the first trains, the others wait and then load its result.
    """
    from dvdf.envs import get_domain

    name = get_domain(domain).name
    sac = SACConfig.from_collect(collect)
    run_dir = policy_run_dir(name, sac, cache_dir)
    with file_lock(run_dir.parent / f".{run_dir.name}.lock"):
        result = train_sac(name, sac, run_dir, device=device, progress=progress)
    assert result is not None  # no stop_at: train_sac runs to completion
    return result


def pick_medium(snapshots: list[dict[str, Any]], expert: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """D4RL's rule: the snapshot whose evaluated return is closest to 1/3 of the expert's.

    Candidates are the snapshots strictly between the random initialisation and the expert
    (default: the final snapshot), so that medium-replay - the replay buffer up to the medium
    snapshot - never holds the expert's own training. Returns are those of the stochastic
    policy, the same policy that generates the data.
    """
    expert = snapshots[-1] if expert is None else expert
    candidates = [s for s in snapshots[1:] if s["step"] < expert["step"]]
    if not candidates:
        raise DvdfError(f"cannot pick a medium policy: SAC saved no snapshot between the random policy and the "
                        f"expert (step {expert['step']}); collect.snapshot_every must be < collect.sac_steps")
    goal = MEDIUM_FRACTION * expert["return_stochastic"]
    return min(candidates, key=lambda s: abs(s["return_stochastic"] - goal))


# ------------------------------------------------------------------------------ generation
def _rollouts(domain: str, policy: SACResult, snapshot: dict[str, Any], role: str, label: int,
              collect: CollectConfig, progress: bool) -> Dataset:
    seed = collect.seed * 10 + ROLLOUT_SEED_OFFSET[role]
    actor = load_actor(policy.run_dir, snapshot)
    workers = collect.rollout_workers or default_workers(collect.num_envs, collect.transitions)
    return parallel_rollouts(domain, actor, collect.num_envs, collect.transitions, seed=seed, workers=workers,
                             label=label, progress=progress, description=f"{domain} {role}")


def _reused_part(domain: str, role: str, label: int, collect: CollectConfig, policy: SACResult,
                 parts_dir: Optional[str | os.PathLike]) -> Optional[Dataset]:
    """The ``role`` rollouts read back from ``<parts_dir>/<domain>-<role>.hdf5``, relabelled
    ``label``, if that file holds exactly what :func:`_rollouts` would make now; else None."""
    if parts_dir is None:
        return None
    path = dataset_path(parts_dir, domain, role)
    if not path.exists():
        return None
    metadata = read_summary(path)["metadata"]
    same_run = metadata.get("sac_run") == policy.run_dir.name and metadata.get("quality") == role
    if not same_run or metadata.get(COLLECT_SETTINGS_KEY) != json.dumps(_identity_settings(collect), sort_keys=True):
        return None
    part = read_dataset(path, domain)
    part.extras[PROVENANCE_KEY] = np.full(len(part), label, dtype=np.int64)
    return part


def _identity_settings(collect: CollectConfig) -> dict[str, Any]:
    """The collect settings that define a dataset: how rollouts are batched and whether SAC's
    update was compiled do not, nor the selection's episode count when the expert is the final actor."""
    settings = dataclasses.asdict(collect)
    for how in ("num_envs", "rollout_workers", "sac_compile"):
        settings.pop(how)
    if collect.expert == "final":
        settings.pop("expert_eval_episodes")
    return settings


def expert_snapshot(policy: SACResult, collect: CollectConfig, device: str = "cpu") -> dict[str, Any]:
    """The expert of the SAC run ``policy`` under ``collect.expert`` (computed once, then read)."""
    return select_expert(policy, collect.expert, collect.expert_eval_episodes, collect.seed, device)


def _replay_dataset(policy: SACResult, upto: int, snapshot_every: int) -> Dataset:
    """SAC's replay rows [0, upto), labelled by the training interval that produced them."""
    columns = load_replay(policy.run_dir, upto=upto)
    start_steps = json.loads((policy.run_dir / "result.json").read_text())["start_steps"]
    terminals = columns["terminals"] > 0.5
    timeouts = (columns["timeouts"] > 0.5) & ~terminals
    if not (terminals[-1] or timeouts[-1]):
        timeouts[-1] = True  # the buffer is cut mid-episode at the medium snapshot
    step = np.arange(upto)
    # Label 0: uniform random warm-up actions; label k >= 1: the actor during interval k - 1.
    labels = np.where(step < start_steps, 0, 1 + step // snapshot_every).astype(np.int64)
    names = ["uniform-random-warmup"] + [f"sac-steps-{k * snapshot_every}-{(k + 1) * snapshot_every}"
                                         for k in range(int(labels.max()))]
    return Dataset(columns["observations"], columns["actions"], columns["rewards"], terminals, timeouts,
                   columns["next_observations"], {PROVENANCE_KEY: labels},
                   {PROVENANCE_NAMES_KEY: json.dumps(names)})


def generate_dataset(domain: str, quality: str, collect: CollectConfig, policy: SACResult,
                     progress: bool = True, parts_dir: Optional[str | os.PathLike] = None) -> Dataset:
    """Build the ``quality`` dataset of ``domain`` from the completed SAC run ``policy``.

    For a mixture, a part whose single-policy file ``<parts_dir>/<domain>-<part>.hdf5`` was made
    from this SAC run with these collect settings is read rather than rolled out again.
    """
    if quality not in QUALITIES:
        raise DvdfError(f"unknown quality {quality!r} (choose from {', '.join(QUALITIES)})")
    roles = MIXTURES.get(quality, (quality,))   # the behaviour policies whose rollouts it holds
    expert = expert_snapshot(policy, collect)
    medium = pick_medium(policy.snapshots, expert) if quality == "medium-replay" or "medium" in roles else None
    snapshots = {"random": policy.random, "medium": medium, "expert": expert}

    if quality == "medium-replay":
        dataset, behaviour = _replay_dataset(policy, medium["step"], collect.snapshot_every), medium
        names = dataset.provenance_names()
    elif quality in MIXTURES:  # the parts' datasets (same seeds as alone), one after another
        names = list(roles)
        parts = []
        for label, role in enumerate(roles):
            part = _reused_part(domain, role, label, collect, policy, parts_dir)
            if part is None:
                part = _rollouts(domain, policy, snapshots[role], role, label, collect, progress)
            parts.append(part)
        dataset, behaviour = concatenate(parts), expert
    else:
        behaviour = snapshots[quality]
        dataset = _rollouts(domain, policy, behaviour, quality, 0, collect, progress)
        names = [quality]

    settings = _identity_settings(collect)
    metadata: dict[str, Any] = {
        "domain": domain,
        "quality": quality,
        "seed": collect.seed,
        "behaviour_policy_steps": int(behaviour["step"]),
        "behaviour_policy_mean_return": float(behaviour["return_stochastic"]),
        "behaviour_policy_mean_return_deterministic": float(behaviour["return_deterministic"]),
        "expert_snapshot_step": int(expert["step"]),
        "expert_return": float(expert["return_stochastic"]),
        "expert_return_deterministic": float(expert["return_deterministic"]),
        "expert_rule": collect.expert,
        "sac_run": policy.run_dir.name,
        PROVENANCE_NAMES_KEY: json.dumps(names),
        COLLECT_SETTINGS_KEY: json.dumps(settings, sort_keys=True),
    }
    if medium is not None:
        metadata["medium_snapshot_step"] = int(medium["step"])
        metadata["medium_return"] = float(medium["return_stochastic"])
    if quality in MIXTURES:
        metadata["behaviour_policy_mean_return"] = float(np.mean([snapshots[role]["return_stochastic"]
                                                                  for role in roles]))
    dataset.metadata = metadata
    dataset.source = f"<{domain}-{quality}>"
    return dataset


# ------------------------------------------------------------------------------ entry points
def collect_dataset(domain: str, quality: str, out: str | os.PathLike, collect: CollectConfig,
                    cache_dir: Optional[str | os.PathLike] = None, device: str = "cpu",
                    progress: bool = True) -> dict[str, Any]:
    """``dvdf collect``: train or reuse the behaviour policy, generate, write ``out``; summary dict."""
    from dvdf.envs import get_domain

    name = get_domain(domain).name  # unknown domain -> DvdfError before any work
    if quality not in QUALITIES:
        raise DvdfError(f"unknown quality {quality!r} (choose from {', '.join(QUALITIES)})")
    cache_dir = cache_dir or default_policy_cache()
    policy = ensure_policy(name, collect, cache_dir, device=device, progress=progress)
    # Mixture parts already made beside ``out`` are read, not rolled out again.
    dataset = generate_dataset(name, quality, collect, policy, progress=progress, parts_dir=Path(out).parent)
    path = write_dataset(out, dataset)
    returns = dataset.episode_returns()
    return {"path": str(path), "domain": name, "quality": quality, "transitions": len(dataset),
            "episodes": int(len(returns)), "return_mean": float(returns.mean()),
            "behaviour_policy_steps": dataset.metadata["behaviour_policy_steps"],
            "behaviour_policy_mean_return": dataset.metadata["behaviour_policy_mean_return"],
            "policy_dir": str(policy.run_dir)}


def dataset_path(data_dir: str | os.PathLike, domain: str, quality: str) -> Path:
    return Path(data_dir) / f"{domain}-{quality}.hdf5"


def ensure_dataset(domain: str, quality: str, data_dir: str | os.PathLike, collect_cfg: CollectConfig,
                   progress: bool = True, cache_dir: Optional[str | os.PathLike] = None,
                   device: str = "cpu") -> Path:
    """``<data_dir>/<domain>-<quality>.hdf5``, generated (with its SAC policy) if missing.

    The policy cache defaults to ``<data_dir>/policies`` so that on a cluster it sits on the
    same shared storage as the data. Concurrent callers generate a file once (lock per file).
    An existing file generated by dvdf with other collect settings is an error rather than a
    silent mismatch; third-party files (no dvdf collect settings) are used as they are.
    """
    from dvdf.envs import get_domain

    name = get_domain(domain).name
    path = dataset_path(data_dir, name, quality)
    with file_lock(Path(data_dir) / f".{path.name}.lock"):
        if not path.exists():
            policy = ensure_policy(name, collect_cfg, cache_dir or Path(data_dir) / "policies", device=device,
                                   progress=progress)
            dataset = generate_dataset(name, quality, collect_cfg, policy, progress=progress, parts_dir=data_dir)
            write_dataset(path, dataset)
            record_dataset(data_dir, path)
    _check_collect_settings(path, collect_cfg)
    return path


def _check_collect_settings(path: Path, collect: CollectConfig) -> None:
    recorded = read_summary(path)["metadata"].get(COLLECT_SETTINGS_KEY)
    if recorded is None:
        return
    wanted = _identity_settings(collect)
    recorded = {**SETTINGS_BEFORE_THEY_WERE_RECORDED, **json.loads(recorded)}
    # Only what defines a dataset now is compared (older files also recorded e.g. num_envs).
    differing = {key: (value, wanted[key]) for key, value in recorded.items() if key in wanted and wanted[key] != value}
    if differing:
        details = ", ".join(f"{key}={old} (config: {new})" for key, (old, new) in differing.items())
        raise DvdfError(f"{path}: generated with other collect settings: {details}; "
                        f"delete the file or set data.collect to match")
