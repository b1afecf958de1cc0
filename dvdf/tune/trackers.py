"""Optional experiment trackers of a sweep (``loggers:`` in the sweep file), through Ray Tune's own
logger callbacks: :class:`ray.air.integrations.mlflow.MLflowLoggerCallback` and
:class:`ray.air.integrations.wandb.WandbLoggerCallback`. Off by default.

``loggers: [tensorboard, mlflow, wandb]``. TensorBoard is always written (Ray writes it with the
result files dvdf's tables are built from; dvdf adds complete HParams), so listing it only says
so. MLflow logs to a local file store inside the experiment directory (``<dir>/mlruns``, open it
with ``mlflow ui --backend-store-uri <dir>/mlruns``) unless ``mlflow.tracking_uri`` names a
server or database; the MLflow experiment is named like the sweep, one run per trial with the
trial's config as parameters. W&B runs offline (files under ``<dir>/wandb``; ``wandb sync``
uploads them later) unless ``wandb.mode: online``.

This module does not import Ray, MLflow or wandb at import time: :mod:`dvdf.tune.spec` takes the
field types from here, and a missing package is one error line naming the extra to install.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Literal, Optional

from dvdf.errors import DvdfError

Logger = Literal["tensorboard", "mlflow", "wandb"]
MLFLOW_DIR = "mlruns"
WANDB_DIR = "wandb"
# the package each tracker imports, and the dvdf extra that installs it
PACKAGES = {"mlflow": ("mlflow", "mlflow"), "wandb": ("wandb", "wandb")}


@dataclass(frozen=True)
class MlflowSpec:
    """Where MLflow logs: default the file store ``<experiment dir>/mlruns``."""

    tracking_uri: Optional[str] = None       # http://server:5000, sqlite:///..., file:///...
    experiment_name: Optional[str] = None    # default: the sweep's name
    save_artifact: bool = False              # copy each trial directory into MLflow at its end


@dataclass(frozen=True)
class WandbSpec:
    """W&B settings; offline unless ``mode: online`` (which needs an API key: ``wandb login``)."""

    project: Optional[str] = None            # default: the sweep's name
    group: Optional[str] = None
    entity: Optional[str] = None
    mode: Literal["offline", "online"] = "offline"


def check_available(loggers) -> None:
    """One DvdfError naming the extra when a listed tracker's package is not installed."""
    for logger in loggers:
        if logger in PACKAGES:
            module, extra = PACKAGES[logger]
            if importlib.util.find_spec(module) is None:
                raise DvdfError(f"loggers: {logger} needs the {module} package, which is not installed: "
                                f"pip install 'dvdf[{extra}]'")


def tracker_callbacks(sweep, location: str) -> list:
    """Ray Tune logger callbacks for the sweep's ``loggers`` (the experiment directory: ``location``)."""
    from dvdf.tune.storage import is_uri

    spec = sweep.spec
    check_available(spec.loggers)
    callbacks = []
    if "mlflow" in spec.loggers:
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        uri = spec.mlflow.tracking_uri
        if uri is None:
            if is_uri(location):
                raise DvdfError(f"{sweep.source}: 'mlflow.tracking_uri' is needed for a sweep stored at "
                                f"{location} (MLflow's file store needs a file system)")
            uri = f"file://{location}/{MLFLOW_DIR}"
        if uri.startswith("file:"):
            # MLflow 3 keeps its file store in maintenance mode and refuses it unless told otherwise;
            # it is the local, serverless default asked for here (set a sqlite:/// URI to avoid it).
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        callbacks.append(MLflowLoggerCallback(
            tracking_uri=uri, experiment_name=spec.mlflow.experiment_name or sweep.name,
            tags={"dvdf_sweep": sweep.name}, save_artifact=spec.mlflow.save_artifact))
    if "wandb" in spec.loggers:
        from ray.air.integrations.wandb import WandbLoggerCallback

        kwargs = {"mode": spec.wandb.mode}
        if spec.wandb.entity:
            kwargs["entity"] = spec.wandb.entity
        if not is_uri(location):
            kwargs["dir"] = os.path.join(location, WANDB_DIR)
        if spec.wandb.mode == "offline":
            # Ray asks for an API key unless W&B itself is set to offline.
            os.environ.setdefault("WANDB_MODE", "offline")
        callbacks.append(WandbLoggerCallback(project=spec.wandb.project or sweep.name,
                                             group=spec.wandb.group, **kwargs))
    return callbacks
