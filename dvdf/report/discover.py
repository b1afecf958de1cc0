"""Find what an experiment directory holds: run directories and sweep trial directories.

Only the file system is consulted, and only files dvdf itself writes plus a few that every Ray
Tune trial directory has, so the report does not depend on Ray's internal state format:

* a **run directory** (one ``dvdf train`` run, or one seed of a sweep trial) holds
  ``config.yaml`` and ``metrics.jsonl`` written by ``run_experiment(out_dir=...)``; a run that
  started but has not evaluated yet holds ``config.yaml`` only and is found as well;
* a **trial directory** is Ray Tune's folder for one trial: it holds ``params.json`` (written
  when the trial starts) and, when the trial failed, ``error.txt``.

Directories that can only hold bulky artifacts (TensorBoard events, checkpoints) are not entered,
nor are report folders (this report's output, or an earlier report written elsewhere: its copy of
the configuration must not look like a run).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from dvdf.layout import RUN_CHECKPOINT_DIR, RUN_CONFIG, RUN_METRICS, RUN_TENSORBOARD, TRIAL_PARAMS

# Folders no run or trial directory lives in; skipping them keeps discovery fast on big sweeps.
_SKIP_DIRS = {RUN_TENSORBOARD, RUN_CHECKPOINT_DIR, "__pycache__", ".git"}
_SKIP_PREFIXES = ("checkpoint_", ".")
# Files that together mark a folder written by dvdf report (see dvdf.report.build).
REPORT_MARKERS = ("manifest.json", "tables.md")


@dataclass
class Discovery:
    """Paths found under an experiment directory (all absolute, sorted)."""

    root: Path
    run_dirs: list[Path] = field(default_factory=list)
    trial_dirs: list[Path] = field(default_factory=list)

    def trial_of(self, run_dir: Path) -> Optional[Path]:
        """The trial directory a run directory belongs to (itself or its nearest ancestor)."""
        trials = set(self.trial_dirs)
        for candidate in (run_dir, *run_dir.parents):
            if candidate in trials:
                return candidate
            if candidate == self.root:
                break
        return None


def discover(root: Path, exclude: Optional[Path] = None) -> Discovery:
    """Walk ``root`` recursively; ``exclude`` (the report folder) is not entered."""
    root = root.resolve()
    exclude = exclude.resolve() if exclude is not None else None
    found = Discovery(root)
    for current, dirs, files in os.walk(root, followlinks=False):
        here = Path(current)
        if all(marker in files for marker in REPORT_MARKERS):
            dirs[:] = []
            continue
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.startswith(_SKIP_PREFIXES)
                         and (exclude is None or here / d != exclude))
        names = set(files)
        if RUN_CONFIG in names and (RUN_METRICS in names or _is_experiment_config(here / RUN_CONFIG)):
            found.run_dirs.append(here)
        if TRIAL_PARAMS in names:
            found.trial_dirs.append(here)
    return found


def _is_experiment_config(path: Path) -> bool:
    """A config.yaml without metrics.jsonl is a run only if it is a resolved experiment config.

    The resolved config ``run_experiment`` writes always has these top-level sections; a sweep
    configuration (also possibly named config.yaml) does not have all of them.
    """
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and {"data", "filter", "iql", "eval"} <= set(data)
