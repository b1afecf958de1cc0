"""The Tune trainable: a thin wrapper of :func:`dvdf.experiment.run_experiment`.

A trial trains its configuration for every seed of the sweep. With ``batch_seeds`` (the default)
the K seeds are the members of ONE batched model (``run_experiment(seeds=...)``): one process,
one batched gradient step for all of them. Otherwise (or for OTDF with its per-seed behaviour
VAE) the trial runs K single-seed runs in lockstep. Either way every seed trains to its next
evaluation, then the trial reports once (mean and std of the normalized score over the seeds,
each seed's score, the training statistics averaged over seeds) with a checkpoint holding every
seed's state. When Ray restarts the trial (a crash, a lost node, ``--resume``) it continues every
seed from that checkpoint.

Files: each seed run writes metrics.jsonl, TensorBoard events and its config.yaml into
``seed_<seed>/`` of the trial's working directory, which Ray syncs to the trial directory in
storage (``SyncConfig(sync_artifacts=True)``), so they survive on a multi-node cluster. A copy
of each metrics.jsonl travels in the checkpoint: a trial restarted on another node (an empty
working directory) puts it back before continuing, so the upload does not replace the full
history with the part written after the restart.

Divergence: when a seed run diverges (a non-finite loss or state, see :mod:`dvdf.divergence`) the
trial reports once more, with ``diverged: 1.0``, a nan score and no checkpoint (the last good one
stays), and then ends normally - Ray does not retry it: a deterministic divergence would repeat.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

from ray import tune

from dvdf.layout import CHECKPOINT_MEMBERS_DIR as BATCHED_DIR
from dvdf.layout import DIVERGED_METRIC, FINISHED_METRIC, RUN_METRICS
from dvdf.layout import member_dir as seed_dir
from dvdf.tune.spec import Sweep

ReportFn = Callable[[dict, Optional[Path]], None]
"""(metrics, checkpoint directory or None) -> None; the default hands both to ``tune.report``."""

FINISHED = FINISHED_METRIC   # 1.0 on the report after which every seed run is done


def tune_report(metrics: dict, checkpoint_dir: Optional[Path]) -> None:
    if checkpoint_dir is None:   # a diverged run's last report: the last good checkpoint stays
        tune.report(metrics)
        return
    tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(checkpoint_dir)))


def train_trial(config: dict, *, sweep: Sweep, report: Optional[ReportFn] = None) -> None:
    """Ray entry point (wrap with ``tune.with_parameters(train_trial, sweep=...)``).

    ``config`` is what :class:`~dvdf.tune.searcher.StudySearcher` suggested (see
    :func:`dvdf.tune.spec.trial_config`). ``report`` replaces ``tune.report`` (tests inject
    failures through it).
    """
    from dvdf.experiment import run_experiment, seeds_can_be_batched  # heavy: import in the worker only

    # Ray logs every checkpoint at INFO from the worker; one line per evaluation drowns the output.
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    report = report or tune_report
    study = sweep.study(config["study"])
    seeds = [int(s) for s in config["seeds"]]
    threads = sweep.spec.base.threads or max(1, int(sweep.spec.resources.cpus))
    workdir = Path(os.getcwd())  # Ray's trial working directory (synced as artifacts)
    checkpoint = tune.get_checkpoint()
    with ExitStack() as stack:
        restored = None
        if checkpoint is not None:
            # A private copy that lives as long as the runs: they may read it lazily.
            restored = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dvdf-restore-")))
            checkpoint.to_directory(str(restored))
        configs = {seed: sweep.experiment_config(study, seed, config["tradeoff"], config["keep_ratio"])
                   .replace(threads=threads) for seed in seeds}
        if restored is not None:
            for seed in seeds:
                _restore_metrics_log(restored / seed_dir(seed), workdir / seed_dir(seed))
        if sweep.spec.batch_seeds and len(seeds) > 1 and seeds_can_be_batched(configs[seeds[0]]):
            run = run_experiment(configs[seeds[0]], resume=restored / BATCHED_DIR if restored else None,
                                 out_dir=workdir, seeds=seeds)
            rounds = ({BATCHED_DIR: r} for r in run)
        else:
            runs = {seed: run_experiment(cfg, resume=restored / seed_dir(seed) if restored else None,
                                         out_dir=workdir / seed_dir(seed)) for seed, cfg in configs.items()}
            rounds = ({seed_dir(s): r for s, r in reports.items()} for reports in lockstep(runs))
        for reports in rounds:   # checkpoint subdirectory -> EvalReport
            if any(_diverged(r) for r in reports.values()):
                report(combine_reports(reports.values()), None)
                return
            with tempfile.TemporaryDirectory(prefix="dvdf-ckpt-") as tmp:
                for name, run_report in reports.items():
                    run_report.save(Path(tmp) / name)
                for seed in seeds:
                    log_file = workdir / seed_dir(seed) / RUN_METRICS
                    if log_file.is_file():
                        (Path(tmp) / seed_dir(seed)).mkdir(exist_ok=True)
                        shutil.copyfile(log_file, Path(tmp) / seed_dir(seed) / RUN_METRICS)
                report(combine_reports(reports.values()), Path(tmp))


def _restore_metrics_log(checkpoint_seed_dir: Path, out_dir: Path) -> None:
    """Put the checkpoint's metrics.jsonl back when the working directory has none (new node)."""
    saved, current = checkpoint_seed_dir / RUN_METRICS, out_dir / RUN_METRICS
    if saved.is_file() and not current.exists():
        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(saved, current)


def lockstep(runs: dict[int, Iterator]) -> Iterator[dict]:
    """Yield {seed: EvalReport} once per evaluation, advancing every run by one report."""
    while True:
        reports = {}
        for seed, run in runs.items():
            try:
                reports[seed] = next(run)
            except StopIteration:
                break
        if not reports:
            return
        if len(reports) != len(runs):
            raise RuntimeError(f"seed runs ended at different evaluations (got reports for {sorted(reports)} "
                               f"of {sorted(runs)})")
        steps = {r.step for r in reports.values()}
        if len(steps) != 1:
            raise RuntimeError(f"seed runs out of step: {dict((s, r.step) for s, r in reports.items())}")
        yield reports
        if all(r.done for r in reports.values()):
            return


def combine_reports(reports: Iterable) -> dict[str, float]:
    """One trial result from the EvalReports of one evaluation round (every seed's metrics, from
    lockstep runs or one batched run): :func:`dvdf.experiment.combine_member_metrics` plus
    ``finished`` = 1.0 once every seed run is done and ``diverged`` = 1.0 if any seed run diverged
    (then ``finished`` is 0.0: the trial stopped early)."""
    from dvdf.experiment import combine_member_metrics
    reports = list(reports)
    metrics = combine_member_metrics({seed: m for r in reports for seed, m in r.members.items()})
    diverged = any(_diverged(r) for r in reports)
    metrics[DIVERGED_METRIC] = float(diverged)
    metrics[FINISHED] = float(all(r.done for r in reports) and not diverged)
    return metrics


def _diverged(report) -> bool:
    """Whether a run's report is its diverged last one (reports without the field never are)."""
    return getattr(report, "diverged", None) is not None
