"""Run a sweep: one Ray Tune ``Tuner`` for all groups, methods and points; resume; results table.

:func:`run_sweep` validates, prepares datasets and stages once (trials only load them), builds
the Tuner (:class:`~dvdf.tune.searcher.StudySearcher`, optional per-study ASHA, per-trial
resources, failure retries, checkpoints every evaluation, TensorBoard HParams) and writes the
results tables when it ends. ``resume=True`` continues an interrupted sweep with
``Tuner.restore``: finished trials are not rerun, unfinished and errored ones continue from
their last checkpoint, the Optuna studies keep their history (they live in an Optuna database,
see :mod:`dvdf.tune.searcher`).

Experiment directory layout: ``<storage>/<name>/`` (storage: a local path, an NFS mount or an
s3:// / gs:// URI; name: the sweep's ``name``, default the YAML file's stem)::

    sweep.yaml              the sweep as run (paths resolved); --resume checks the file against it
    results.csv             per study (group x method): trials, finished, best lambda/xi and its
                            mean/std normalized score, the paper default's (0.7, 0.5) score
    trials.csv              per trial: group fields, method, lambda, xi, seeds, status,
                            evaluations, final normalized score mean/std and per seed
    optuna.db               the Optuna studies (SQLite; not there with search.storage or on an
                            object store)
    mlruns/, wandb/         MLflow's file store and W&B's offline runs (loggers: mlflow, wandb)
    tuner.pkl, experiment_state-*.json, searcher-state-*.pkl, scheduler state
                            Ray's own state (what Tuner.restore reads)
    <study>_<trial_id>/     one directory per trial (study = <group>.<method>)
        params.json         the trial config: study, group, robot, shift, quality, target,
                            source_domain, target_domain, method, tradeoff, keep_ratio, seeds
        result.json         one JSON line per evaluation: normalized_score (mean over seeds),
        progress.csv          normalized_score_std, normalized_score_seed<N>, step, finished,
                            training statistics averaged over seeds, Ray's bookkeeping
        events.out.tfevents.*   TensorBoard: scalars ray/tune/<metric>, HParams (all trial values)
        checkpoint_NNNNNN/  the latest checkpoint: members/experiment_state.pt (the seeds as one
                            batched model, batch_seeds) or seed_<N>/experiment_state.pt (one per
                            seed run), plus a copy of every seed_<N>/metrics.jsonl
        seed_<N>/           each seed's own files (member or run of run_experiment): config.yaml,
                            metrics.jsonl, tb/ (TensorBoard losses, statistics, histograms)
        error.txt           only if the trial failed (Ray's traceback)

``dvdf.tune.results`` rebuilds results.csv / trials.csv from this directory alone.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import yaml

from dvdf.errors import DvdfError
from dvdf.layout import DIVERGED, FAILED, FINISHED, SWEEP_FILE
from dvdf.schema import to_dict
from dvdf.tune import prepare as prep
from dvdf.tune.results import StudyResult, collect, format_table, load_stored_sweep, write_tables
from dvdf.tune.spec import METRIC, Sweep
from dvdf.tune.storage import ExperimentDir, is_uri, resolve_storage
from dvdf.validation import check_directory

log = logging.getLogger(__name__)


@dataclass
class SweepOutcome:
    experiment_dir: str
    summaries: list[StudyResult]
    table: str
    total: int            # trials the sweep defines
    finished: int
    errored: int
    seconds: float
    diverged: int = 0     # ended early on a non-finite loss or state: final, not retried

    @property
    def complete(self) -> bool:
        return self.finished + self.diverged == self.total


def resolve_paths(sweep: Sweep) -> Sweep:
    """Absolute cache and data directories: trials run in their own working directories.

    Relative paths are taken from the current directory. The top-level ``cache_dir`` / ``data_dir``
    (which override base's when the file is loaded) get the same absolute values, so the sweep.yaml
    written from the result loads back to the same paths from any directory. Idempotent.
    """
    base = sweep.spec.base
    if is_uri(base.cache_dir) or is_uri(base.data.data_dir):
        raise DvdfError(f"{sweep.source}: cache_dir and data_dir must be file system paths "
                        "(an NFS mount on a cluster), not URIs")
    cache_dir, data_dir = resolve_storage(base.cache_dir), resolve_storage(base.data.data_dir)
    base = base.replace(cache_dir=cache_dir, data=dataclasses.replace(base.data, data_dir=data_dir))
    spec = dataclasses.replace(sweep.spec, base=base, cache_dir=cache_dir, data_dir=data_dir)
    return dataclasses.replace(sweep, spec=spec)


def check_locations(sweep: Sweep, location: str) -> None:
    """Directories the sweep writes to must be (or become) directories we can write; checked before
    anything is started or written."""
    base = sweep.spec.base
    check_directory(base.cache_dir, f"{sweep.source}: cache_dir")
    check_directory(base.data.data_dir, f"{sweep.source}: data_dir", writable=sweep.spec.collect_missing)
    if not is_uri(location):
        check_directory(location.rsplit("/", 1)[0], f"{sweep.source}: storage")


def experiment_location(sweep: Sweep, storage: Optional[str] = None) -> str:
    root = resolve_storage(storage or sweep.spec.storage)
    return f"{root}/{sweep.name}"


def _first_difference(a, b, prefix: str = "") -> Optional[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            found = _first_difference(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else str(key))
            if found:
                return found
        return None
    return None if a == b else (prefix or "top level")


def stored_sweep_text(sweep: Sweep) -> str:
    """What sweep.yaml holds: the sweep as run (paths resolved by :func:`resolve_paths`)."""
    return yaml.safe_dump({"name": sweep.name, **to_dict(resolve_paths(sweep).spec)}, sort_keys=False)


def check_resumable(sweep: Sweep, exp: ExperimentDir) -> None:
    """The file the user passes defines the same trials as the stored sweep.yaml.

    Both sides are compared with their paths resolved the same way (:func:`resolve_paths`): a file
    with relative cache_dir / data_dir resumes from the directory it was started in. (A sweep.yaml
    written before the top-level paths were stored resolved holds them relative; they are resolved
    from the current directory, as they were when it was written.)
    """
    if not exp.exists(SWEEP_FILE):
        raise DvdfError(f"nothing to resume: {exp} holds no sweep (start it without --resume)")
    stored = resolve_paths(load_stored_sweep(exp))
    sweep = resolve_paths(sweep)
    stored_def = yaml.safe_load(yaml.safe_dump(stored.trial_defining()))
    current_def = yaml.safe_load(yaml.safe_dump(sweep.trial_defining()))
    differing = _first_difference(stored_def, current_def)
    if differing:
        raise DvdfError(f"{sweep.source} differs from the sweep being resumed ({exp}/{SWEEP_FILE}) in "
                        f"'{differing}'; resume with the original settings or start a new sweep "
                        "(another name)")


def init_ray(sweep: Sweep, address: str, num_cpus: Optional[float], num_gpus: Optional[float]) -> None:
    """Start (address 'local') or join a Ray instance, unless this process has one already.

    A local instance gets a watcher (:mod:`dvdf.tune.reaper`) that ends its processes when this
    driver dies, even by SIGKILL; it is started before ``ray.init``, so it knows which are Ray's.
    """
    import ray

    if ray.is_initialized():
        return
    if address == "local":
        from dvdf.tune.reaper import watch_driver

        global _WATCHER
        _WATCHER = watch_driver()
    kwargs = dict(address=address, include_dashboard=False, log_to_driver=True)
    if address == "local":
        # A plain ray.init() switches token auth on and writes ~/.ray/auth_token (docs/SWEEPS.md,
        # "Where Ray runs").
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        if num_cpus is not None:
            kwargs["num_cpus"] = num_cpus
        if num_gpus is not None:
            kwargs["num_gpus"] = num_gpus
        if sweep.spec.object_store_memory is not None:
            kwargs["object_store_memory"] = sweep.spec.object_store_memory
    elif num_cpus is not None or num_gpus is not None or sweep.spec.object_store_memory is not None:
        log.warning("--num-cpus/--num-gpus/object_store_memory apply to a local Ray instance only; ignored")
    ray.init(**kwargs)


_WATCHER = None   # the reaper of the local Ray instance this process started (lives as long as we do)


def check_resources(sweep: Sweep, address: str) -> None:
    """A trial that can never be scheduled would make Ray wait forever: say so up front."""
    import ray

    available = ray.cluster_resources()
    res = sweep.spec.resources
    problems = []
    gpus, cpus = available.get("GPU", 0), available.get("CPU", 0)
    if res.gpu > gpus:
        problems.append(f"resources.gpu {res.gpu:g} per trial, but the Ray cluster has {gpus:g} GPU(s)")
    if res.cpus > cpus:
        problems.append(f"resources.cpus {res.cpus:g} per trial, but the Ray cluster has {cpus:g} CPU(s)")
    if not problems:
        return
    message = "; ".join(problems)
    if address == "local":
        raise DvdfError(f"{sweep.source}: {message} (on a CPU machine use gpu: 0, "
                        "or --num-gpus to declare GPUs)")
    log.warning("%s: %s; trials wait until an autoscaler adds such nodes", sweep.source, message)


def prepare_stages(sweep: Sweep, jobs: list, progress: Optional[bool] = None) -> None:
    """Stage preparation as Ray tasks with a trial's resources, in parallel where they fit.

    On a laptop this uses every core (one task per CPU a trial would get; small networks gain
    more from parallel tasks than from intra-op threads); on a cluster the stages are built on
    the nodes, into the shared cache directory. Jobs sharing an artifact wait on its lock.
    """
    import ray
    from tqdm import tqdm

    from dvdf.experiment import prepare_experiment

    res = sweep.spec.resources
    task = ray.remote(num_cpus=res.cpus, num_gpus=res.gpu,
                      max_retries=sweep.spec.max_failures)(prepare_experiment)
    pending = [task.remote(cfg) for cfg in jobs]
    show = sys.stderr.isatty() if progress is None else progress
    with tqdm(total=len(pending), desc="preparing stages", unit="run", disable=not show) as bar:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                ray.get(done)
            except ray.exceptions.RayTaskError as exc:
                # A user error inside a task (a bad dataset, ...) stays a one-line DvdfError.
                if isinstance(getattr(exc, "cause", None), DvdfError):
                    raise DvdfError(str(exc.cause)) from None
                raise
            bar.update(len(done))


def generate_datasets(sweep: Sweep, missing: list, echo: Callable[[str], None] = print) -> None:
    """Missing datasets as a collection suite of Ray tasks (SAC per domain, then each dataset)."""
    from dvdf.data.suite_ray import run_suite

    # SAC's small networks gain little from a GPU; use one only when the base config asks for CUDA.
    device = "cuda" if sweep.spec.base.device.startswith("cuda") else "cpu"
    suites = prep.missing_suites(sweep, missing, cpus_per_task=1.0, device=device)
    t0 = time.perf_counter()
    echo(f"{len(missing)} dataset(s) missing: generating them ({sum(len(s.domain_names()) for s in suites)} "
         "behaviour-policy SAC run(s) as Ray tasks)")
    for suite in suites:
        run_suite(suite, progress=sys.stderr.isatty())
    echo(f"generated {len(missing)} dataset(s) in {time.perf_counter() - t0:.0f} s")


def build_trainable(sweep: Sweep, trainable: Optional[Callable] = None):
    from ray import tune

    from dvdf.tune.trainable import train_trial

    res = sweep.spec.resources
    fn = tune.with_parameters(trainable or train_trial, sweep=sweep)
    return tune.with_resources(fn, {"cpu": res.cpus, "gpu": res.gpu})


def _trial_dirname(trial) -> str:
    return f"{trial.config.get('study', 'trial')}_{trial.trial_id}"


def _evaluations_per_run(sweep: Sweep) -> int:
    iql, every = sweep.spec.base.iql, sweep.spec.base.eval.every
    return -(-iql.steps // every)  # the last step is always evaluated


def build_tuner(sweep: Sweep, location: str, *, trainable: Optional[Callable] = None,
                callbacks: Sequence = (), verbose: int = 0, resume: bool = False):
    """A fresh Tuner for the sweep (``location`` = the experiment directory).

    verbose=0: one line per finished trial (TrialLinePrinter); 1 or 2: Ray's status tables.
    """
    from ray import tune

    from dvdf.tune.callbacks import HParamsLoggerCallback, TrialLinePrinter
    from dvdf.tune.scheduler import PerStudyASHA
    from dvdf.tune.searcher import StudySearcher, optuna_storage_url

    spec = sweep.spec
    scheduler = None
    if spec.asha is not None:
        max_t = spec.asha.max_t or _evaluations_per_run(sweep)
        scheduler = PerStudyASHA(spec.asha, max_t=max_t, metric=METRIC)
    storage, name = location.rsplit("/", 1)
    tune_config = tune.TuneConfig(
        metric=METRIC, mode="max", scheduler=scheduler,
        search_alg=StudySearcher(sweep, storage=optuna_storage_url(sweep, location), resume=resume),
        num_samples=sweep.num_trials, max_concurrent_trials=spec.resources.max_concurrent,
        trial_dirname_creator=_trial_dirname, trial_name_creator=_trial_dirname,
        # Reusing the worker process saves ~1-2 s per trial (an earlier measurement; no doc holds it).
        reuse_actors=True)
    run_config = tune.RunConfig(
        name=name, storage_path=storage,
        failure_config=tune.FailureConfig(max_failures=spec.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=spec.checkpoints_to_keep),
        # The seed runs' files live in the trial working directory; upload them with each checkpoint.
        sync_config=tune.SyncConfig(sync_artifacts=True),
        callbacks=[HParamsLoggerCallback(), *([] if verbose else [TrialLinePrinter(sweep.num_trials)]),
                   *callbacks],
        verbose=verbose)
    return tune.Tuner(build_trainable(sweep, trainable), tune_config=tune_config, run_config=run_config)


def restore_tuner(sweep: Sweep, location: str, *, trainable: Optional[Callable] = None):
    from ray import tune

    return tune.Tuner.restore(location, trainable=build_trainable(sweep, trainable),
                              resume_unfinished=True, resume_errored=True)


def run_sweep(sweep: Sweep, *, resume: bool = False, address: str = "local", storage: Optional[str] = None,
              num_cpus: Optional[float] = None, num_gpus: Optional[float] = None,
              progress: Optional[bool] = None, trainable: Optional[Callable] = None,
              callbacks: Sequence = (), verbose: int = 0,
              echo: Callable[[str], None] = print) -> SweepOutcome:
    """Run (or resume) a whole sweep; returns the outcome with the results table."""
    from ray import tune

    # Every evaluation checkpoints, so Ray snapshots the experiment state often and warns about
    # it; with evaluations minutes apart (real runs) the cost is negligible.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if verbose == 0:
        # Ray's new console output prints its header (with a TensorBoard path into /tmp) even at
        # verbose=0; the classic reporter stays silent and TrialLinePrinter reports instead.
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    started = time.perf_counter()
    sweep = resolve_paths(sweep)
    location = experiment_location(sweep, storage)
    check_locations(sweep, location)
    exp = ExperimentDir(location)
    if resume:
        check_resumable(sweep, exp)
    elif exp.has_content():
        raise DvdfError(f"{exp} already exists: continue it with --resume, or give the sweep another name "
                        "('name:' in the file or --name)")
    from dvdf.tune.trackers import tracker_callbacks

    trackers = tracker_callbacks(sweep, location)   # a missing package stops here, before any work
    missing = prep.check_datasets(sweep)
    init_ray(sweep, address, num_cpus, num_gpus)
    check_resources(sweep, address)
    if missing:
        generate_datasets(sweep, missing, echo)
    jobs = prep.stage_jobs(sweep)
    t0 = time.perf_counter()
    prepare_stages(sweep, jobs, progress)
    echo(f"prepared {len(jobs)} (study, seed) stage set(s) in {time.perf_counter() - t0:.1f} s")
    if not resume:
        # Written only now: a sweep stopped during preparation leaves nothing that blocks a rerun.
        exp.write_text(stored_sweep_text(sweep), SWEEP_FILE)
    echo(f"experiment directory: {exp}")
    echo(f"TensorBoard (live): tensorboard --logdir {exp}")
    from dvdf.tune.searcher import dashboard_line

    echo(dashboard_line(sweep, location))
    if resume and tune.Tuner.can_restore(location):
        tuner = restore_tuner(sweep, location, trainable=trainable)
    else:  # a fresh sweep, or one interrupted before Ray saved any state
        tuner = build_tuner(sweep, location, trainable=trainable, callbacks=[*trackers, *callbacks],
                            verbose=verbose, resume=resume)
    tuner.fit()
    summaries = write_tables(location)
    records = collect(exp)
    return SweepOutcome(experiment_dir=location, summaries=summaries, table=format_table(summaries),
                        total=sweep.num_trials, finished=sum(r.status == FINISHED for r in records),
                        errored=sum(r.status == FAILED for r in records),
                        diverged=sum(r.status == DIVERGED for r in records), seconds=time.perf_counter() - started)
