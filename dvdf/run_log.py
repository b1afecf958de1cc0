"""The run log: what one run (or one member of a batched run) writes into its ``out_dir``.

* ``config.yaml`` (layout.RUN_CONFIG): the resolved configuration, every default filled in;
* ``metrics.jsonl`` (layout.RUN_METRICS): one JSON object per evaluation, sorted by step;
* ``tb/`` (layout.RUN_TENSORBOARD): TensorBoard scalars of the same metrics (evaluation results
  under ``eval/``, training statistics under ``train/``) and, on a fresh run, histograms of the
  stage scores of the source data.

On resume the lines written after the checkpoint (a run that died after logging them) are dropped
and TensorBoard purges the same steps, so no evaluation appears twice.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

from dvdf.atomic import atomic_write_text
from dvdf.config import ExperimentConfig, config_to_yaml
from dvdf.layout import RUN_CONFIG, RUN_METRICS, RUN_TENSORBOARD, STEP
from dvdf.stages import StageOutputs


class RunLog:
    """Writes config.yaml, metrics.jsonl and TensorBoard events under ``out_dir`` (nothing if None).

    ``resume_step``: the step of the checkpoint this run continues from (None: a fresh run).
    """

    def __init__(self, out_dir: Optional[str | os.PathLike], config: ExperimentConfig, stages: StageOutputs,
                 resume_step: Optional[int]):
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.tb = None
        if self.out_dir is None:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.out_dir / RUN_CONFIG, config_to_yaml(config))
        if resume_step is not None:
            truncate_metrics(self.out_dir / RUN_METRICS, resume_step)
        from torch.utils.tensorboard import SummaryWriter
        self.tb = SummaryWriter(str(self.out_dir / RUN_TENSORBOARD),
                                purge_step=resume_step + 1 if resume_step else None)
        if resume_step is None:
            for name, values in (("source/dyn_score", stages.dyn_score), ("source/advantage", stages.advantage)):
                if values is not None:
                    self.tb.add_histogram(name, values.float().cpu(), global_step=0)

    def write(self, step: int, metrics: dict[str, float]) -> None:
        if self.out_dir is None:
            return
        with open(self.out_dir / RUN_METRICS, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(metrics) + "\n")
        for key, value in metrics.items():
            if key != STEP:
                self.tb.add_scalar(tensorboard_tag(key), value, step)
        self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def tensorboard_tag(key: str) -> str:
    """Group plain metric names: evaluation results under eval/, training statistics under train/."""
    if "/" in key:
        return key
    return f"eval/{key}" if "score" in key or "return" in key else f"train/{key}"


def truncate_metrics(path: Path, last_step: int) -> None:
    """Drop lines written after the checkpoint we resume from (the run died after logging them)."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line).get(STEP, 0) <= last_step]
    atomic_write_text(path, "".join(line + "\n" for line in kept))
