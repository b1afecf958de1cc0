"""What ``dvdf bench`` measures (the command and its one argparse: dvdf/commands/bench.py).

Training step (hopper sizes, docs/METHOD.md hyperparameters): a dvdf-igdf update on 128 source +
128 target transitions (obs 11, act 3, 2 x 256 MLPs), drawn from small random pools on the device
as the experiment loop draws them from its device-resident buffer, timed in three versions side by
side (rounds interleaved, so a busy machine slows all of them alike):

- ``eager``: ``iql.compile: off``; ``compiled_step``: ``iql.compile: step`` (where a C++ compiler
  or a GPU is present; ``compile_s`` is its first call, the compile time);
- ``authors``: the authors' released step restated in plain PyTorch
  (:mod:`dvdf.algos.reference_step`: their network layout, three torch Adams one after another);
- ``default``: whichever of the first two the default configuration (``iql.compile: auto`` for a
  paper-length run) resolves to, and its ratio to ``authors``.

With K members (``--members``) the agent is K seeds as one batched model (each member its own
batch): ``steps_per_s`` is batched steps (each member advances that many) and
``member_steps_per_s`` = K x that, the seed-steps done per second. On CUDA each of these also
reports the mean GPU utilisation during its timed rounds (NVML). One NCE step of the IGDF encoders
(128 target transitions + 127 source next states) is timed as well.

Evaluation: 10 hopper episodes of 1000 steps (termination off, as a policy that survives runs)
by :class:`dvdf.evaluation.Evaluator` against the plain loop (one episode after another, one
policy call and one ``env.step`` per time step).

Each thread count runs in a fresh interpreter (``dvdf bench --worker``), because torch's intra-op
pool cannot be resized reliably once it has run work. Each measurement warms up, then times
``repeats`` rounds of ``steps`` steps and keeps the fastest round: on a shared machine the fastest
round is the one least disturbed by other processes. Rates per process-CPU second are reported
too; with one thread they ignore time the process spent descheduled.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from typing import Callable, Optional, Sequence

OBS_DIM, ACT_DIM, BATCH = 11, 3, 128   # hopper
POOL = 4096                            # transitions per random pool
MODE_LABELS = {"off": "eager", "losses": "compiled_losses", "step": "compiled_step"}   # iql.compile -> key
AUTHORS = "authors"


def _random_transitions(n: int, device, generator) -> dict:
    import torch

    def randn(*shape):
        return torch.randn(*shape, generator=generator, device=device)

    return {"observations": randn(n, OBS_DIM), "actions": torch.tanh(randn(n, ACT_DIM)),
            "rewards": randn(n), "next_observations": randn(n, OBS_DIM),
            "dones": (torch.rand(n, generator=generator, device=device) < 0.01).float(),
            "dyn_score": torch.tanh(randn(n)), "advantage": randn(n)}


class UtilizationSampler:
    """Mean GPU utilisation while entered: NVML's percentage of time in which a kernel ran, read
    every ``interval`` seconds on a background thread by ``read`` (``torch.cuda.utilization``,
    which needs the nvidia-ml-py package). ``mean`` is None if nothing was read; ``error`` says why
    a read failed (sampling stops at the first failure)."""

    def __init__(self, read: Callable[[], float], interval: float = 0.05):
        self._read, self._interval = read, interval
        self._samples: list[float] = []
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.error: Optional[str] = None

    def __enter__(self) -> "UtilizationSampler":
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="gpu-utilization", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while self.error is None and not self._stop.wait(self._interval):
            try:
                self._samples.append(float(self._read()))
            except Exception as exc:  # noqa: BLE001 - reported, not raised: timing goes on without it
                self.error = f"{type(exc).__name__}: {exc}"

    @property
    def mean(self) -> Optional[float]:
        return sum(self._samples) / len(self._samples) if self._samples else None


def _time_steps(steps_by_name: dict[str, Callable[[], object]], steps: int, warmup: int, repeats: int,
                sync: Callable[[], None], monitor=None,
                clock: Callable[[], float] = time.perf_counter, cpu_clock: Callable[[], float] = time.process_time
                ) -> dict[str, tuple[float, float]]:
    """{name: (steps per wall second, steps per process-CPU second)} of each step's fastest round.

    Every step is warmed up first; then each of the ``repeats`` rounds times every step once, one
    after another, so load that comes and goes hits all of them alike. ``monitor`` (a context
    manager, or None) is entered around the timed rounds only; the clocks are parameters for tests.
    """
    for step in steps_by_name.values():
        for _ in range(warmup):
            step()
    sync()
    best = {name: [float("inf"), float("inf")] for name in steps_by_name}
    with monitor if monitor is not None else contextlib.nullcontext():
        for _ in range(repeats):
            for name, step in steps_by_name.items():
                wall, cpu = clock(), cpu_clock()
                for _ in range(steps):
                    step()
                sync()
                best[name][0] = min(best[name][0], clock() - wall)
                best[name][1] = min(best[name][1], cpu_clock() - cpu)
    return {name: (steps / max(w, 1e-9), steps / max(c, 1e-9)) for name, (w, c) in best.items()}


def compile_available(device) -> Optional[str]:
    """None where ``iql.compile: step`` can run on ``device``, else why not (one line)."""
    import torch

    from dvdf.algos.compile_mode import cpp_compiler

    if torch.device(device).type == "cpu" and cpp_compiler() is None:
        return "no C++ compiler (g++/clang++ or $CXX)"
    return None


def train_step_for(mode: str, device, pools, members: Optional[int] = None, seed: int = 0):
    """The experiment loop's training step (:func:`dvdf.algos.whole_step.make_train_step`) of a fresh
    dvdf-igdf agent in ``iql.compile`` ``mode`` on the bench's pools; (step, agent)."""
    import torch

    from dvdf.algos.filtered_iql import FilteredIQL
    from dvdf.algos.whole_step import make_train_step
    from dvdf.config import FilterConfig, IQLConfig

    dev = torch.device(device)
    agent = FilteredIQL(OBS_DIM, ACT_DIM, IQLConfig(compile=mode), FilterConfig(method="dvdf-igdf"), dev,
                        seed=seed, members=members)
    samplers = [torch.Generator(device=dev).manual_seed(seed + i) for i in range(members or 1)]
    return make_train_step(agent, *pools, BATCH, samplers), agent


def authors_step_for(device, pools, seed: int = 0) -> Callable[[], object]:
    """The authors' step (:class:`dvdf.algos.reference_step.AuthorsStep`, their network layout) with
    the same draw from the same pools as :func:`train_step_for`."""
    import torch

    from dvdf.algos.reference_step import AuthorsStep, authors_networks
    from dvdf.config import FilterConfig, IQLConfig
    from dvdf.filtering.select import keep_count

    dev = torch.device(device)
    cfg, filter_cfg = IQLConfig(), FilterConfig(method="dvdf-igdf")
    q, v, actor = (net.to(dev) for net in authors_networks(OBS_DIM, ACT_DIM, cfg.hidden, cfg.layers, seed))
    step = AuthorsStep(q, v, actor, lr=cfg.lr, actor_lr=cfg.actor_lr, steps=cfg.steps, discount=cfg.discount,
                       expectile=cfg.expectile, beta=cfg.beta, polyak=cfg.polyak, tradeoff=filter_cfg.tradeoff,
                       kept=keep_count(BATCH, filter_cfg.keep_ratio))
    source, target = pools
    sampler = torch.Generator(device=dev).manual_seed(seed)
    return lambda: step(source.take(source.sample_indices(BATCH, sampler)),
                        target.take(target.sample_indices(BATCH, sampler)))


def measure_train_step(steps: int, warmup: int, repeats: int, device, pools, sync,
                       modes: Sequence[str] = ("off", "step")) -> dict:
    """The step in ``modes`` (``iql.compile`` "off" and/or "step") and the authors' step,
    interleaved; which mode is the default, and each one's ratio to the authors'."""
    from dvdf.algos.compile_mode import resolve_compile_mode
    from dvdf.config import IQLConfig

    candidates = {MODE_LABELS["off"]: train_step_for("off", device, pools)[0]} if "off" in modes else {}
    result: dict = {}
    unavailable = compile_available(device)
    if unavailable is None and "step" in modes:
        compiled, _ = train_step_for("step", device, pools)
        start = time.perf_counter()
        compiled()
        sync()
        result["compile_s"] = time.perf_counter() - start     # the first call compiles
        candidates[MODE_LABELS["step"]] = compiled
    elif unavailable is not None:
        result["compiled_step_unavailable"] = unavailable
    candidates[AUTHORS] = authors_step_for(device, pools)
    rates = _time_steps(candidates, steps, warmup, repeats, sync)
    default_mode, reason = resolve_compile_mode(IQLConfig(), device)
    default = MODE_LABELS[default_mode]
    result.update({"steps_per_s": {name: wall for name, (wall, _) in rates.items()},
                   "steps_per_cpu_s": {name: cpu for name, (_, cpu) in rates.items()},
                   "default": default, "default_reason": reason})
    for key in ("steps_per_s", "steps_per_cpu_s"):
        by_name = result[key]
        result[f"vs_authors_{key.removeprefix('steps_')}"] = {
            name: by_name[name] / by_name[AUTHORS] for name in by_name if name != AUTHORS}
    return result


def measure(threads: int, steps: int, warmup: int, repeats: int, device: str = "cpu",
            members: Sequence[int] = (), compile_modes: Sequence[str] = ("off",),
            evaluation: bool = False, train_modes: Sequence[str] = ("off", "step")) -> dict:
    """The throughputs with ``threads`` intra-op threads in THIS process.

    ``train_modes``: the ``iql.compile`` modes of the training-step table (:func:`measure_train_step`).
    ``members``: also time the batched step for these K (steps scaled down as 1/K, at least 20), in
    each of ``compile_modes`` (``iql.compile`` values; reported under :data:`MODE_LABELS`).
    """
    import torch

    from dvdf.algos.contrastive import ContrastiveScorer, contrastive_update, make_contrastive_optimizer
    from dvdf.algos.runtime import retain_freed_memory
    from dvdf.config import ContrastiveConfig
    from dvdf.data import TransitionBuffer

    retain_freed_memory()   # as the experiment process does; see dvdf.algos.runtime
    torch.set_num_threads(threads)
    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    gen = torch.Generator(device=dev).manual_seed(0)
    source_buffer = TransitionBuffer(_random_transitions(POOL, dev, gen))
    target_buffer = TransitionBuffer(_random_transitions(POOL, dev, gen))
    pools = (source_buffer, target_buffer)

    train = measure_train_step(steps, warmup, repeats, dev, pools, sync, train_modes)
    by_members: dict[str, dict] = {}
    utilization_error = None
    for k in members:
        n_steps = max(20, steps // k)
        by_members[str(k)] = {}
        for mode in compile_modes:
            sampler = UtilizationSampler(lambda: torch.cuda.utilization(dev)) if dev.type == "cuda" else None
            step, _ = train_step_for(mode, dev, pools, None if k == 1 else k)   # K=1: the single-model path
            (rate, _), = _time_steps({mode: step}, n_steps, warmup, repeats, sync,
                                     sampler or contextlib.nullcontext()).values()
            rates = {"steps_per_s": rate, "member_steps_per_s": rate * k}
            if sampler is not None:
                rates["gpu_utilization_percent"] = sampler.mean
                utilization_error = utilization_error or sampler.error
            by_members[str(k)][MODE_LABELS[mode]] = rates

    cfg = ContrastiveConfig()
    scorer = ContrastiveScorer(OBS_DIM, ACT_DIM, cfg.embed_dim, cfg.hidden, seed=0).to(dev)
    optimizer = make_contrastive_optimizer(scorer, cfg.lr)

    def contrastive_step() -> None:
        t_batch = target_buffer.sample(cfg.batch_size, gen)
        s_next = source_buffer.sample(cfg.batch_size - 1, gen, ["next_observations"])["next_observations"]
        contrastive_update(scorer, optimizer, t_batch["observations"], t_batch["actions"],
                           t_batch["next_observations"], s_next)

    (contrastive, contrastive_cpu), = _time_steps({"contrastive": contrastive_step}, steps, warmup, repeats,
                                                  sync).values()
    result = {"threads": threads, "train": train, "contrastive_step_per_s": contrastive,
              "contrastive_step_per_cpu_s": contrastive_cpu, "members": by_members}
    if utilization_error:
        result["gpu_utilization_error"] = utilization_error
    if evaluation:
        result["evaluation"] = measure_evaluation(threads, device)
    return result


def measure_evaluation(threads: int, device: str = "cpu", episodes: int = 10, domain: str = "hopper") -> dict:
    """Seconds for ``episodes`` full-length episodes: the Evaluator vs a step-by-step loop."""
    from dvdf.data.rollout import deterministic_actor
    from dvdf.envs import get_domain, make_env
    from dvdf.evaluation import Evaluator
    from dvdf.nets import TanhGaussianPolicy, seeded_generators

    spec = get_domain(domain)
    policy = TanhGaussianPolicy(spec.obs_dim, spec.act_dim, generators=seeded_generators(0)).to(device)
    act = deterministic_actor(policy, device)
    env_kwargs = {"terminate_when_unhealthy": False}

    env = make_env(domain, **env_kwargs)
    start = time.perf_counter()
    for episode in range(episodes):
        obs, _ = env.reset(seed=episode)
        done = False
        while not done:
            obs, _, terminated, truncated, _ = env.step(act(obs[None])[0])
            done = terminated or truncated
    loop_s = time.perf_counter() - start
    env.close()
    evaluator = Evaluator(domain, episodes, threads=threads, env_kwargs=env_kwargs)
    start = time.perf_counter()
    result = evaluator(act, seed=0)
    evaluator_s = time.perf_counter() - start
    evaluator.close()
    return {"episodes": episodes, "env_steps": int(result.lengths.sum()), "evaluator_s": round(evaluator_s, 3),
            "step_by_step_s": round(loop_s, 3), "speedup": round(loop_s / evaluator_s, 2)}


def measure_simulation(domain: str = "hopper-kinematic", transitions: int = 5000) -> dict:
    """Domain construction (cached XML + compile + env) and one-step replay check speeds, one thread.

    Replay data: random-action rollouts recorded in ``domain`` itself, so every transition is
    checked (none skipped for clipped velocities) - the same work as checking a real dataset.
    """
    import numpy as np

    from dvdf.data.rollout import collect_rollouts
    from dvdf.envs import make_env, make_vector_env, replay_check

    make_env(domain).close()  # first build: XML edit + compile + cache
    builds = []
    for _ in range(5):
        start = time.perf_counter()
        env = make_env(domain)
        env.reset(seed=0)
        builds.append(time.perf_counter() - start)
        env.close()
    envs = make_vector_env(domain, 4)
    rng = np.random.default_rng(0)
    low, high = envs.single_action_space.low, envs.single_action_space.high
    data = collect_rollouts(envs, lambda obs: rng.uniform(low, high, (obs.shape[0], low.shape[0])),
                            transitions, seed=0)
    envs.close()
    t = data.transitions()
    start = time.perf_counter()
    result = replay_check(t["observations"], t["actions"], t["next_observations"], domain)
    replay_s = time.perf_counter() - start
    return {"domain": domain, "domain_build_s": round(float(np.median(builds)), 4),
            "replay_check_transitions": int(result["transitions"]),
            "replay_check_s": round(replay_s, 3),
            "replay_check_fraction_within_tol": round(float(result["fraction_within_tol"]), 4)}


def run_benchmark(threads: Sequence[int] = (1, 2), steps: int = 300, warmup: int = 50, repeats: int = 3,
                  device: str = "cpu", simulation: bool = True, members: Sequence[int] = (),
                  compile_modes: Sequence[str] = ("off",), evaluation: bool = True,
                  train_modes: Sequence[str] = ("off", "step")) -> dict:
    """Measure each thread count in a fresh subprocess; one result object for ``dvdf bench --json``."""
    import torch

    from dvdf.config import ContrastiveConfig

    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    results = []
    for n in threads:
        cmd = [sys.executable, "-m", "dvdf.cli", "bench", "--worker", "--threads", str(n), "--steps", str(steps),
               "--warmup", str(warmup), "--repeats", str(repeats), "--device", device,
               "--compile-modes", *compile_modes, "--train-modes", *train_modes]
        if members:
            cmd += ["--members", *map(str, members)]
        if not evaluation:
            cmd.append("--no-evaluation")
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"benchmark worker ({n} threads) failed:\n{proc.stderr.strip()}")
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))

    return {
        "train": {str(r["threads"]): _rounded(r["train"]) for r in results},
        "contrastive_step_per_s": {str(r["threads"]): round(r["contrastive_step_per_s"], 1) for r in results},
        "contrastive_step_per_cpu_s": {str(r["threads"]): round(r["contrastive_step_per_cpu_s"], 1) for r in results},
        "members": {str(r["threads"]): _rounded(r["members"]) for r in results},
        # On CUDA each members entry has gpu_utilization_percent (None where NVML could not be read):
        "gpu_utilization_error": next((r["gpu_utilization_error"] for r in results
                                       if r.get("gpu_utilization_error")), None),
        "evaluation": {str(r["threads"]): r["evaluation"] for r in results} if evaluation else None,
        "device": device if device != "cpu" else f"cpu ({_cpu_name()})",
        "torch": torch.__version__,
        "load_average_1min": round(load_before, 2),   # > cores: other processes compete
        "cores": os.cpu_count(),
        "steps": steps, "warmup": warmup, "repeats": repeats,
        "workload": {"obs_dim": OBS_DIM, "act_dim": ACT_DIM, "source_batch": BATCH, "target_batch": BATCH,
                     "method": "dvdf-igdf", "contrastive_batch": ContrastiveConfig().batch_size},
        "simulation": measure_simulation() if simulation else None,
    }


def _rounded(obj):
    if isinstance(obj, float):
        return round(obj, 2) if abs(obj) < 10 else round(obj, 1)
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    return obj


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown"
