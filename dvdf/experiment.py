"""One DVDF experiment: prepare stages, train filtered IQL, evaluate periodically.

``run_experiment`` is plain Python (no Ray): ``dvdf train`` iterates it directly and the Ray
Tune trainable is a thin wrapper around it. It yields an :class:`EvalReport` after every
evaluation; ``report.save(dir)`` writes a checkpoint from which ``run_experiment(config,
resume=dir)`` continues bit-for-bit (same metrics as an uninterrupted run on CPU).

Hot loop: row indices are drawn on the device with a seeded ``torch.Generator`` per seed; the
update runs eagerly (``FilteredIQL.update`` on the gathered batches) or, with ``iql.compile: step``,
as one compiled function from the indices (:class:`~dvdf.algos.whole_step.WholeStep`) - both draw
the same rows. Training statistics are summed on the device and read back once per evaluation
(no per-step host sync).
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import torch

from dvdf.atomic import atomic_path, atomic_write_text
from dvdf.config import ExperimentConfig, config_to_yaml
from dvdf.errors import DvdfError
from dvdf.stages import ExperimentData, StageOutputs, build_stages, load_experiment_data

CHECKPOINT_FILE = "experiment_state.pt"
CHECKPOINT_FORMAT = 2          # 2: one optimiser for all networks; per-member samplers
SCORE = "normalized_score"


@dataclass
class EvalReport:
    """What one evaluation produced. ``metrics`` always holds step and normalized_score.

    A batched run (``seeds=[...]``) reports each seed's metrics in ``members`` and their combination
    (:func:`combine_member_metrics`) in ``metrics``; a single run has ``members = {seed: metrics}``.
    """

    step: int
    metrics: dict[str, float]
    done: bool
    members: dict[int, dict[str, float]] = field(default_factory=dict)
    _state: dict[str, Any] = field(repr=False, default_factory=dict)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write a checkpoint of the run as of this report into ``directory`` (atomic)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(directory / CHECKPOINT_FILE) as tmp:
            torch.save(self._state, tmp)
        return directory / CHECKPOINT_FILE


def member_dir(seed: int) -> str:
    """Where member ``seed`` of a batched run writes its files, under the run's out_dir."""
    return f"seed_{seed}"


def combine_member_metrics(per_seed: dict[int, dict[str, float]]) -> dict[str, float]:
    """One result from several seeds' metrics.

    normalized_score is the mean over seeds, normalized_score_std their standard deviation
    (population, ddof = 0), normalized_score_seed<N> each seed's; every other numeric metric
    present for all seeds is averaged, except those defined here (a run's own
    normalized_score_std is over its evaluation episodes: it stays in that seed's metrics.jsonl).
    """
    seeds = list(per_seed)
    scores = np.array([float(per_seed[s][SCORE]) for s in seeds], dtype=np.float64)
    metrics: dict[str, float] = {"step": int(per_seed[seeds[0]]["step"]), SCORE: float(scores.mean()),
                                 f"{SCORE}_std": float(scores.std())}
    for seed, score in zip(seeds, scores):
        metrics[f"{SCORE}_seed{seed}"] = float(score)
    shared = set.intersection(*(set(m) for m in per_seed.values())) - set(metrics)
    for key in sorted(shared):
        values = [per_seed[s][key] for s in seeds]
        if all(isinstance(v, (int, float, np.floating, np.integer)) for v in values):
            metrics[key] = float(np.mean(values))
    return metrics


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DvdfError(f"device: '{name}' requested but CUDA is not available (use 'auto' or 'cpu')")
    try:
        return torch.device(name)
    except RuntimeError:
        raise DvdfError(f"device: unknown device '{name}' (auto, cpu, cuda, cuda:N)") from None


def validate_experiment(config: ExperimentConfig) -> None:
    """Checks that need more than the schema: known domains, compatible robots, given files exist."""
    from dvdf.envs import get_domain

    source = get_domain(config.data.source_domain)
    target = get_domain(config.data.target_domain)
    if (source.obs_dim, source.act_dim) != (target.obs_dim, target.act_dim):
        raise DvdfError(f"data: source domain '{source.name}' ({source.robot}) and target domain "
                        f"'{target.name}' ({target.robot}) have different observation/action spaces")
    for key in ("source_path", "target_path"):
        path = getattr(config.data, key)
        if path is not None and not Path(path).expanduser().is_file():
            raise DvdfError(f"data.{key}: {path}: no such file")
    device = resolve_device(config.device)
    if config.iql.compile not in ("off", "auto") and device.type == "cpu" and not _cpp_compiler():
        raise DvdfError("iql.compile: torch.compile on CPU needs a C++ compiler (g++ or clang++; set CXX), "
                        "none found; install one or set iql.compile: off")


def _cpp_compiler() -> Optional[str]:
    import shutil

    candidates = [os.environ["CXX"]] if os.environ.get("CXX") else ["g++", "c++", "clang++"]
    return next((path for path in map(shutil.which, candidates) if path), None)


def prepare_experiment(config: ExperimentConfig, progress: bool = False) -> None:
    """Make sure datasets and stage artifacts exist (idempotent, safe across processes)."""
    validate_experiment(config)
    device = resolve_device(config.device)
    data = load_experiment_data(config, progress=progress)
    build_stages(config, data, device, progress=progress)


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
    from dvdf.data import TransitionBuffer
    from dvdf.envs import get_domain
    from dvdf.evaluation import Evaluator

    validate_experiment(config)
    batched = seeds is not None
    run_seeds = _check_seeds(seeds) if batched else [config.seed]
    constraint = _constraint_weight(config)
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
    target_spec = get_domain(config.data.target_domain)
    source_buffer, target_buffer = _make_buffers(data, stages, device, TransitionBuffer,
                                                  config.filter.uses_source, batched)
    agent = FilteredIQL(target_spec.obs_dim, target_spec.act_dim, config.iql, config.filter, device=device,
                        seed=run_seeds if batched else config.seed, members=len(run_seeds) if batched else None,
                        behavior_vae=stages[0].behavior_vae, constraint_weight=constraint)
    samplers = [torch.Generator(device=device).manual_seed(s) for s in run_seeds]
    start_step, best = 0, [-math.inf] * len(run_seeds)
    if resume is not None:
        state = _load_state(resume, config, run_seeds)
        agent.load_state_dict(state["agent"])
        for sampler, sampler_state in zip(samplers, state["samplers"]):
            sampler.set_state(sampler_state.to(sampler.get_state().device))
        torch.set_rng_state(state["torch_rng"])
        start_step, best = state["step"], list(state["best_normalized_score"])

    resume_step = start_step if resume else None
    writers = [_RunWriter(None if out_dir is None else Path(out_dir) / member_dir(s) if batched else out_dir,
                          config.replace(seed=s), stage, resume_step) for s, stage in zip(run_seeds, stages)]
    overlap = config.eval.overlap
    evaluator = Evaluator(config.data.target_domain, config.eval.episodes, members=len(run_seeds),
                          threads=config.eval.threads or torch.get_num_threads(), one_torch_thread=not overlap)
    evaluations = _Evaluations(evaluator, agent.policy, device, len(run_seeds) if batched else None, overlap)
    stats = _StatAccumulator(data.provenance_names or [], device, len(run_seeds) if batched else None)
    total, every, batch = config.iql.steps, config.eval.every, config.iql.batch_size
    bar = _progress_bar(progress, total, start_step, config.name)
    t_last, steps_since = time.perf_counter(), 0

    # After any resume: with iql.compile: step it binds the optimiser state as loaded.
    train_step = make_train_step(agent, source_buffer, target_buffer, batch, samplers)

    def report_for(job: _EvalJob) -> EvalReport:
        """The report of an evaluation once it has finished: metrics per seed, best scores, files."""
        per_seed = {}
        for k, (seed, train_stats, result) in enumerate(zip(run_seeds, job.train_stats, job.results.result())):
            metrics = {**train_stats, "train_steps_per_s": job.steps_per_s, **result.metrics,
                       "step": float(job.step)}
            best[k] = max(best[k], metrics[SCORE])
            metrics["best_normalized_score"] = best[k]
            per_seed[seed] = metrics
        job.state["best_normalized_score"] = list(best)
        metrics = combine_member_metrics(per_seed) if batched else per_seed[config.seed]
        if bar is not None:
            bar.set_postfix(score=f"{metrics[SCORE]:.1f}", best=f"{max(best):.1f}")
        for writer, seed in zip(writers, run_seeds):
            writer.write(job.step, per_seed[seed])
        return EvalReport(step=job.step, metrics=metrics, done=job.step == total, members=per_seed,
                          _state=job.state)

    running: Optional[_EvalJob] = None     # eval.overlap: the evaluation going on beside training
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
            job = _EvalJob(step, stats.pop(), steps_per_s, _snapshot(agent, samplers, step, best, config, run_seeds),
                           evaluations.start([s + step for s in run_seeds]))
            if running is not None:
                yield report_for(running)
            running = job
            if not overlap or step == total:
                running = None
                yield report_for(job)
            t_last, steps_since = time.perf_counter(), 0
    finally:
        if bar is not None:
            bar.close()
        for writer in writers:
            writer.close()
        evaluations.close()    # waits for a running evaluation: its envs close next
        evaluator.close()


# ------------------------------------------------------------------------------ internals
def _check_seeds(seeds: Sequence[int]) -> list[int]:
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise DvdfError(f"seeds: need at least one seed and no repeats, got {seeds}")
    return seeds


@dataclass
class _EvalJob:
    """An evaluation started at ``step``, with what its report needs from that moment."""
    step: int
    train_stats: list[dict[str, float]]
    steps_per_s: float
    state: dict[str, Any]
    results: Future          # -> one EvalResult per seed


class _Evaluations:
    """Starts each evaluation: at once in the calling thread, or with ``overlap`` on a background
    thread, of a copy of the policy taken at the call - so training can go on meanwhile."""

    def __init__(self, evaluator, policy_net: torch.nn.Module, device: torch.device, members: Optional[int],
                 overlap: bool):
        self.evaluator = evaluator
        self.policy_net = policy_net
        self.copy = copy.deepcopy(policy_net).requires_grad_(False) if overlap else None
        self.act = _numpy_policy(self.copy if overlap else policy_net, device, members)
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="dvdf-eval-overlap") if overlap else None

    def start(self, seeds: list[int]) -> Future:
        if self.pool is None:
            done: Future = Future()
            done.set_result(self.evaluator.evaluate(self.act, seeds))
            return done
        # In place: on CUDA the copy is queued before any later training kernel on the stream.
        self.copy.load_state_dict(self.policy_net.state_dict())
        return self.pool.submit(self.evaluator.evaluate, self.act, seeds)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)


def _numpy_policy(policy_net: torch.nn.Module, device: torch.device, members: Optional[int]):
    """The deterministic action tanh(mu(s)) of ``policy_net`` as a numpy -> numpy function for the env.

    Observations arrive member-major, ``(members * episodes, obs)``; member k acts on its rows.
    """
    @torch.no_grad()
    def act(obs: np.ndarray) -> np.ndarray:
        obs_t = torch.as_tensor(obs, device=device, dtype=torch.float32)
        if members is not None:
            obs_t = obs_t.view(members, -1, obs_t.shape[-1])
        return policy_net.deterministic(obs_t).reshape(obs.shape[0], -1).cpu().numpy()
    return act


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def seeds_can_be_batched(config: ExperimentConfig) -> bool:
    """False for OTDF with its dataset constraint: its behaviour VAE is fitted per seed."""
    return _constraint_weight(config) == 0


def _constraint_weight(config: ExperimentConfig) -> float:
    """OTDF's VAE dataset-constraint weight: 0.5 for morphology shifts, 0.1 otherwise."""
    if config.filter.method != "otdf":
        return 0.0
    if config.filter.otdf_constraint_weight is not None:
        return config.filter.otdf_constraint_weight
    from dvdf.envs import get_domain

    families = {get_domain(config.data.source_domain).family, get_domain(config.data.target_domain).family}
    return 0.5 if "morph" in families else 0.1


def _make_buffers(data: ExperimentData, stages: list[StageOutputs], device: torch.device, buffer_cls,
                  uses_source: bool, batched: bool):
    """Target and source buffers; the source carries each seed's scores (member columns if batched)."""
    source_core, target_core = data.on_device(device)  # the copies the stages used, if any
    target = buffer_cls(target_core)
    if not uses_source:  # iql-target: the source data is never sampled
        return None, target
    source_cols = dict(source_core)  # scores are added below; keep the shared dict as it was
    if data.provenance_names and "provenance" in data.source:
        source_cols["provenance"] = torch.as_tensor(data.source["provenance"], device=device).long()
    n = source_cols["rewards"].shape[0]
    zeros = torch.zeros(n, device=device)
    scores = {"dyn_score": [st.dyn_score if st.dyn_score is not None else zeros for st in stages],
              "advantage": [st.advantage if st.advantage is not None else zeros for st in stages]}
    if not batched:
        source = buffer_cls({**source_cols, **{name: values[0] for name, values in scores.items()}})
        return source, target
    source = buffer_cls(source_cols)
    for name, values in scores.items():
        source.add_member_column(name, torch.stack(values))
    return source, target


def _snapshot(agent, samplers: list[torch.Generator], step: int, best: list[float], config: ExperimentConfig,
              seeds: list[int]) -> dict:
    # Copies (not references): the consumer may save the report after training went on.
    return {
        "format": CHECKPOINT_FORMAT,
        "agent": _clone(agent.state_dict()),
        "samplers": [sampler.get_state().clone() for sampler in samplers],
        "torch_rng": torch.get_rng_state().clone(),
        "step": step,
        "seeds": list(seeds),
        "best_normalized_score": list(best),
        "config_yaml": config_to_yaml(config),
    }


def _clone(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone().cpu()
    if isinstance(obj, dict):
        return {k: _clone(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_clone(v) for v in obj)
    return obj


def _load_state(resume: str | os.PathLike, config: ExperimentConfig, seeds: list[int]) -> dict:
    path = Path(resume)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    if not path.is_file():
        raise DvdfError(f"{path}: no checkpoint found to resume from")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for corrupt files
        raise DvdfError(f"{path}: cannot read checkpoint ({exc.__class__.__name__})") from None
    if state.get("format") != CHECKPOINT_FORMAT:
        raise DvdfError(f"{path}: unsupported checkpoint format {state.get('format')!r}")
    if state["step"] > config.iql.steps:
        raise DvdfError(f"{path}: checkpoint is at step {state['step']} but iql.steps is {config.iql.steps}")
    if state["seeds"] != seeds:
        raise DvdfError(f"{path}: checkpoint trains seeds {state['seeds']}, this run {seeds}")
    return state


class _StatAccumulator:
    """Sums training statistics on the device; one host transfer per evaluation.

    ``members=K``: every statistic has a leading K dimension and :meth:`pop` returns K dicts.
    """

    def __init__(self, labels: list[str], device: torch.device, members: Optional[int] = None):
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0
        self.labels = labels              # provenance label -> behaviour-policy name
        self.num_labels = len(labels)
        self.lead = () if members is None else (members,)
        self.kept_by_label = torch.zeros(*self.lead, self.num_labels, device=device)
        self.seen_by_label = torch.zeros(*self.lead, self.num_labels, device=device)

    def _add(self, key: str, value: torch.Tensor) -> None:
        self.sums[key] = self.sums[key] + value if key in self.sums else value.detach().clone()

    def add(self, info: dict[str, torch.Tensor], source_batch: Optional[dict[str, torch.Tensor]]) -> None:
        for key, value in info.items():
            if key != "kept_mask" and value.ndim == len(self.lead):
                self._add(key, value)
        kept = info.get("kept_mask")
        if kept is not None and source_batch is not None:
            kept = kept.float()
            dropped = 1 - kept
            score, adv = source_batch["dyn_score"], source_batch["advantage"]
            n_kept, n_drop = kept.sum(-1).clamp_min(1), dropped.sum(-1).clamp_min(1)
            # Diagnostics none of the reference implementations report: what did the filter keep?
            self._add("filter/kept_dyn_score", (score * kept).sum(-1) / n_kept)
            self._add("filter/dropped_dyn_score", (score * dropped).sum(-1) / n_drop)
            self._add("filter/kept_advantage", (adv * kept).sum(-1) / n_kept)
            self._add("filter/dropped_advantage", (adv * dropped).sum(-1) / n_drop)
            if self.num_labels and "provenance" in source_batch:
                onehot = torch.nn.functional.one_hot(source_batch["provenance"], self.num_labels).float()
                self.kept_by_label += (kept.unsqueeze(-1) * onehot).sum(-2)
                self.seen_by_label += onehot.sum(-2)
        self.count += 1

    def pop(self) -> list[dict[str, float]]:
        """The means since the last pop, one dict per member (one dict for a single run)."""
        members = self.lead[0] if self.lead else 1
        if not self.sums:
            return [{} for _ in range(members)]
        keys = list(self.sums)
        table = (torch.stack([self.sums[k].float() for k in keys]) / max(self.count, 1)).reshape(len(keys), members)
        out = [dict(zip(keys, column)) for column in table.T.tolist()]
        if self.num_labels and self.seen_by_label.sum() > 0:  # no source batches (iql-target): no shares
            kept = self.kept_by_label.reshape(members, -1).tolist()
            seen = self.seen_by_label.reshape(members, -1).tolist()
            for member_out, member_kept, member_seen in zip(out, kept, seen):
                total_kept = max(sum(member_kept), 1e-9)
                for label, name in enumerate(self.labels):
                    member_out[f"filter/kept_share/{name}"] = member_kept[label] / total_kept
                    member_out[f"filter/keep_rate/{name}"] = member_kept[label] / max(member_seen[label], 1e-9)
            self.kept_by_label.zero_()
            self.seen_by_label.zero_()
        self.sums, self.count = {}, 0
        return out


class _RunWriter:
    """metrics.jsonl, TensorBoard events and the resolved config under ``out_dir`` (if given)."""

    def __init__(self, out_dir, config: ExperimentConfig, stages: StageOutputs, resume_step: Optional[int]):
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.tb = None
        if self.out_dir is None:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.out_dir / "config.yaml", config_to_yaml(config))
        if resume_step is not None:
            _truncate_metrics(self.out_dir / "metrics.jsonl", resume_step)
        from torch.utils.tensorboard import SummaryWriter
        self.tb = SummaryWriter(str(self.out_dir / "tb"), purge_step=resume_step + 1 if resume_step else None)
        if resume_step is None:
            for name, values in (("source/dyn_score", stages.dyn_score), ("source/advantage", stages.advantage)):
                if values is not None:
                    self.tb.add_histogram(name, values.float().cpu(), global_step=0)

    def write(self, step: int, metrics: dict[str, float]) -> None:
        if self.out_dir is None:
            return
        with open(self.out_dir / "metrics.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(metrics) + "\n")
        for key, value in metrics.items():
            if key != "step":
                self.tb.add_scalar(_tensorboard_tag(key), value, step)
        self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _tensorboard_tag(key: str) -> str:
    """Group plain metric names: evaluation results under eval/, training statistics under train/."""
    if "/" in key:
        return key
    return f"eval/{key}" if "score" in key or "return" in key else f"train/{key}"


def _truncate_metrics(path: Path, last_step: int) -> None:
    """Drop lines written after the checkpoint we resume from (the run died after logging them)."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= last_step]
    atomic_write_text(path, "".join(line + "\n" for line in kept))


def _progress_bar(enabled: bool, total: int, initial: int, name: str):
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, desc=name, unit="step", dynamic_ncols=True, smoothing=0.1)
