"""Checks of an experiment that need more than its own fields, made before anything is written.

A field's own rule (a range, a type) lives with the field: the config dataclasses check it when
they are built (:mod:`dvdf.config`; lambda/xi rules from :mod:`dvdf.methods`), so a YAML file, a
``--set`` override and a sweep trial all pass the same check. Here are the rules that look across
fields or at the machine: known domains with the same spaces, xi against the batch size, given
files that exist, directories that can be written, a device and a compiler that are there.
Each failure is one :class:`~dvdf.errors.DvdfError` naming the field.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Sequence

import torch

from dvdf.algos.compile_mode import cpp_compiler
from dvdf.config import ExperimentConfig
from dvdf.errors import DvdfError
from dvdf.methods import check_keep_ratio


def validate_experiment(config: ExperimentConfig) -> None:
    """Every check of a run that is not a single field's; raises the first failure."""
    from dvdf.data.minari_read import is_minari_ref
    from dvdf.envs import get_domain

    source = get_domain(config.data.source_domain)
    target = get_domain(config.data.target_domain)
    if (source.obs_dim, source.act_dim) != (target.obs_dim, target.act_dim):
        raise DvdfError(f"data: source domain '{source.name}' ({source.robot}) and target domain "
                        f"'{target.name}' ({target.robot}) have different observation/action spaces")
    if config.filter.spec.selects:
        check_keep_ratio(config.filter.keep_ratio, "filter.keep_ratio", config.iql.batch_size)
    for key in ("source_path", "target_path"):
        path = getattr(config.data, key)
        # A Minari reference (minari:<id>, a dataset directory) is checked when it is read.
        if path is not None and not is_minari_ref(path) and not Path(path).expanduser().is_file():
            raise DvdfError(f"data.{key}: {path}: no such file")
    check_directory(config.cache_dir, "cache_dir")                          # stage artifacts go here
    check_directory(config.data.data_dir, "data.data_dir", writable=False)  # may be a read-only share
    device = resolve_device(config.device)
    # "auto" falls back to eager without a compiler; an explicit mode must not (silently).
    if config.iql.compile not in ("off", "auto") and device.type == "cpu" and not cpp_compiler():
        raise DvdfError("iql.compile: torch.compile on CPU needs a C++ compiler (g++ or clang++; set CXX), "
                        "none found; install one or set iql.compile: off")


def check_directory(path: str, field: str, writable: bool = True) -> None:
    """``path`` is a directory (or can be one: nothing is created here) that, if ``writable``, we can
    write into."""
    if not str(path).strip():
        raise DvdfError(f"{field} is empty")
    target = Path(path).expanduser()
    existing = target
    while not existing.exists():   # the first ancestor that exists decides whether it can be made
        existing = existing.parent
    if not existing.is_dir():
        what = "is a file" if existing == target else f"cannot be created: {existing} is a file"
        raise DvdfError(f"{field}: {path} {what}, not a directory")
    if not writable:
        return
    try:  # a real probe: os.access says yes to root even where writing fails
        handle, probe = tempfile.mkstemp(prefix=".dvdf-probe-", dir=existing)
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        where = "" if existing == target else f" (in {existing})"
        raise DvdfError(f"{field}: {path} is not writable{where} ({exc.strerror})") from None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DvdfError(f"device: '{name}' requested but CUDA is not available (use 'auto' or 'cpu')")
    try:
        return torch.device(name)
    except RuntimeError:
        raise DvdfError(f"device: unknown device '{name}' (auto, cpu, cuda, cuda:N)") from None


def check_seeds(seeds: Sequence[int]) -> list[int]:
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise DvdfError(f"seeds: need at least one seed and no repeats, got {seeds}")
    return seeds
