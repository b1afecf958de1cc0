"""One DVDF experiment: prepare stages, train filtered IQL, evaluate periodically.

``run_experiment`` is plain Python (no Ray): ``dvdf train`` iterates it directly and the Ray
Tune trainable is a thin wrapper around it. It yields an :class:`EvalReport` after every
evaluation; ``report.save(dir)`` writes a checkpoint (:mod:`dvdf.checkpoint`) from which
``run_experiment(config, resume=dir)`` continues bit-for-bit (same metrics as an uninterrupted
run on CPU).

The loop draws row indices on the device (a seeded ``torch.Generator`` per seed) and runs the
update (``make_train_step``: eager, or compiled as one function); training statistics are summed
on the device and read back once per evaluation (:mod:`dvdf.diagnostics`), when the divergence
watch also looks at them (:mod:`dvdf.divergence`). Evaluations run in line or beside training
(:mod:`dvdf.eval_schedule`); each writes one line to the run log (:mod:`dvdf.run_log`).
A run that diverges yields a last report with ``diverged`` set and no checkpoint, and stops.
"""

from __future__ import annotations

import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import torch

from dvdf.checkpoint import load_checkpoint, restore, save_checkpoint, snapshot
from dvdf.config import ExperimentConfig
from dvdf.diagnostics import TrainingStats
from dvdf.divergence import Divergence, DivergenceWatch
from dvdf.errors import DvdfError
from dvdf.eval_schedule import EvalJob, EvalSchedule
from dvdf.layout import BEST_SCORE, DIVERGED_METRIC, SCORE, STEP, member_dir
from dvdf.learner_inputs import constraint_weight, make_buffers, seeds_can_be_batched
from dvdf.run_log import RunLog
from dvdf.stages import build_stages, load_experiment_data
from dvdf.validation import check_seeds, resolve_device, validate_experiment

__all__ = ["EvalReport", "run_experiment", "prepare_experiment", "combine_member_metrics", "member_dir",
           "seeds_can_be_batched"]


@dataclass
class EvalReport:
    """What one evaluation produced. ``metrics`` always holds step and normalized_score.

    A batched run (``seeds=[...]``) reports each seed's metrics in ``members`` and their combination
    (:func:`combine_member_metrics`) in ``metrics``; a single run has ``members = {seed: metrics}``.
    ``diverged``: set on the last report of a run that diverged (its score is nan, it has no checkpoint).
    """

    step: int
    metrics: dict[str, float]
    done: bool
    members: dict[int, dict[str, float]] = field(default_factory=dict)
    diverged: Optional[Divergence] = None
    _state: dict[str, Any] = field(repr=False, default_factory=dict)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write a checkpoint of the run as of this report into ``directory`` (atomic)."""
        if self.diverged is not None:
            raise RuntimeError(f"no checkpoint of a diverged run ({self.diverged.message})")
        return save_checkpoint(self._state, directory)


def combine_member_metrics(per_seed: dict[int, dict[str, float]]) -> dict[str, float]:
    """One result from several seeds' metrics.

    normalized_score is the mean over seeds, normalized_score_std their standard deviation
    (population, ddof = 0), normalized_score_seed<N> each seed's; every other numeric metric
    present for all seeds is averaged, except those defined here (a run's own
    normalized_score_std is over its evaluation episodes: it stays in that seed's metrics.jsonl).
    """
    seeds = list(per_seed)
    scores = np.array([float(per_seed[s][SCORE]) for s in seeds], dtype=np.float64)
    metrics: dict[str, float] = {STEP: int(per_seed[seeds[0]][STEP]), SCORE: float(scores.mean()),
                                 f"{SCORE}_std": float(scores.std())}
    for seed, score in zip(seeds, scores):
        metrics[f"{SCORE}_seed{seed}"] = float(score)
    shared = set.intersection(*(set(m) for m in per_seed.values())) - set(metrics)
    for key in sorted(shared):
        values = [per_seed[s][key] for s in seeds]
        if all(isinstance(v, (int, float, np.floating, np.integer)) for v in values):
            metrics[key] = float(np.mean(values))
    return metrics


def prepare_experiment(config: ExperimentConfig, progress: bool = False) -> None:
    """Make sure datasets and stage artifacts exist (idempotent, safe across processes)."""
    validate_experiment(config)
    data = load_experiment_data(config, progress=progress)
    build_stages(config, data, resolve_device(config.device), progress=progress)


def run_experiment(config: ExperimentConfig, resume: str | os.PathLike | None = None, *,
                   out_dir: str | os.PathLike | None = None, progress: bool = False,
                   seeds: Optional[Sequence[int]] = None) -> Iterator[EvalReport]:
    """Train and evaluate; yield one :class:`EvalReport` per evaluation (see module docstring).

    ``seeds``: train these seeds as ONE batched model (``FilteredIQL(members=K)``) instead of the
    single ``config.seed``. Member k is the run ``config.replace(seed=seeds[k])`` would be (its own
    stages, initialisation, batches and evaluation episodes; equal up to float rounding) and writes
    its files into ``out_dir/seed_<seed>/``.
    """
    from dvdf.algos import FilteredIQL, retain_freed_memory
    from dvdf.algos.whole_step import make_train_step
    from dvdf.envs import get_domain
    from dvdf.evaluation import Evaluator

    validate_experiment(config)
    batched = seeds is not None
    run_seeds = check_seeds(seeds) if batched else [config.seed]
    members = len(run_seeds) if batched else None
    if batched and not seeds_can_be_batched(config):
        raise DvdfError("filter.method otdf: its behaviour-VAE constraint is fitted per seed and cannot be "
                        "batched; train seeds separately or set filter.otdf_constraint_weight: 0")
    retain_freed_memory()  # keep freed step buffers in the heap instead of page-faulting them back
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    _seed_everything(run_seeds[0])

    data = load_experiment_data(config, progress=progress)
    stages = [build_stages(config.replace(seed=s), data, device, progress=progress) for s in run_seeds]
    spec = get_domain(config.data.target_domain)
    source_buffer, target_buffer = make_buffers(data, stages, device, config.filter.uses_source, batched)
    agent = FilteredIQL(spec.obs_dim, spec.act_dim, config.iql, config.filter, device=device,
                        seed=run_seeds if batched else config.seed, members=members,
                        behavior_vae=stages[0].behavior_vae, constraint_weight=constraint_weight(config))
    samplers = [torch.Generator(device=device).manual_seed(s) for s in run_seeds]
    start_step, best = 0, [-math.inf] * len(run_seeds)
    if resume is not None:
        start_step, best = restore(load_checkpoint(resume, config, run_seeds), agent, samplers)

    logs = [RunLog(None if out_dir is None else Path(out_dir) / member_dir(s) if batched else out_dir,
                   config.replace(seed=s), stage, start_step if resume else None)
            for s, stage in zip(run_seeds, stages)]
    overlap = config.eval.overlap
    evaluator = Evaluator(config.data.target_domain, config.eval.episodes, members=len(run_seeds),
                          threads=config.eval.threads or torch.get_num_threads(), one_torch_thread=not overlap)
    evaluations = EvalSchedule(evaluator, agent.policy, device, members, overlap)
    stats = TrainingStats(data.provenance_names or [], device, members)
    watch = DivergenceWatch(run_seeds, batched, config.eval.q_bound)
    total, every = config.iql.steps, config.eval.every
    bar = _progress_bar(progress, total, start_step, config.name)
    t_last, steps_since = time.perf_counter(), 0
    # After any resume: with iql.compile: step it binds the optimiser state as loaded.
    train_step = make_train_step(agent, source_buffer, target_buffer, config.iql.batch_size, samplers)

    def report(step: int, train_stats: list[dict], results: list[dict], state: dict,
               diverged: Optional[Divergence] = None) -> EvalReport:
        """Metrics per seed (training statistics, evaluation results, best score) -> the log and a report."""
        per_seed = {}
        for k, (seed, train, result) in enumerate(zip(run_seeds, train_stats, results)):
            metrics = {**train, **result, STEP: float(step)}
            best[k] = max(best[k], metrics[SCORE])   # a diverged run's nan score leaves it as it was
            per_seed[seed] = {**metrics, BEST_SCORE: best[k]}
        state["best_normalized_score"] = list(best)
        metrics = combine_member_metrics(per_seed) if batched else per_seed[config.seed]
        if bar is not None:
            bar.set_postfix(score=f"{metrics[SCORE]:.1f}", best=f"{max(best):.1f}")
        for log, seed in zip(logs, run_seeds):
            log.write(step, per_seed[seed])
        return EvalReport(step=step, metrics=metrics, done=step == total or diverged is not None,
                          members=per_seed, diverged=diverged, _state=state)

    def finished(job: EvalJob) -> EvalReport:
        results = [{"train_steps_per_s": job.steps_per_s, **r.metrics} for r in job.results.result()]
        return report(job.step, job.train_stats, results, job.state)

    running: Optional[EvalJob] = None     # eval.overlap: the evaluation going on beside training
    try:
        for step in range(start_step + 1, total + 1):
            info, source_batch = train_step()
            stats.add(info, source_batch)
            steps_since += 1
            if step % every and step != total:
                continue
            steps_per_s = steps_since / max(time.perf_counter() - t_last, 1e-9)
            if bar is not None:
                bar.update(steps_since)
            train_stats = stats.pop()
            diverged = watch.check(step, train_stats, agent.state_dict())
            if diverged is not None:   # no evaluation of a broken policy; the last checkpoint stays
                if running is not None:
                    yield finished(running)
                nothing = {SCORE: math.nan, DIVERGED_METRIC: 1.0}
                yield report(step, train_stats, [nothing] * len(run_seeds), {}, diverged)
                return
            job = EvalJob(step, train_stats, steps_per_s, snapshot(agent, samplers, step, best, config, run_seeds),
                          evaluations.start([s + step for s in run_seeds]))
            if running is not None:
                yield finished(running)
            running = job
            if not overlap or step == total:
                running = None
                yield finished(job)
            t_last, steps_since = time.perf_counter(), 0
    finally:
        if bar is not None:
            bar.close()
        for log in logs:
            log.close()
        evaluations.close()    # waits for a running evaluation: its envs close next
        evaluator.close()


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _progress_bar(enabled: bool, total: int, initial: int, name: str):
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, desc=name, unit="step", dynamic_ncols=True, smoothing=0.1)
