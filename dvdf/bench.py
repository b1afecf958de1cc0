"""Throughput of the hot loops: the stage-3 gradient step, the contrastive-scorer step, evaluation.

Workload (hopper sizes, METHOD.md hyperparameters): a dvdf-igdf update on 128 source + 128 target
transitions (obs 11, act 3, 2 x 256 MLPs), and one NCE step of the IGDF encoders on 128 target
transitions + 127 source next states. Batches are drawn from small random pools on the device, as
the experiment loop draws them from its device-resident buffer. With K members the agent is K
seeds as one batched model (each member its own batch): ``steps_per_s`` is batched steps (each
member advances that many) and ``member_steps_per_s`` = K x that, the seed-steps done per second.
On CUDA each of these also reports the mean GPU utilisation during its timed rounds (NVML).

Evaluation: 10 hopper episodes of 1000 steps (termination off, as a policy that survives runs)
by :class:`dvdf.evaluation.Evaluator` against the plain loop (one episode after another, one
policy call and one ``env.step`` per time step).

Each thread count runs in a fresh interpreter (``python -m dvdf.bench --worker``), because torch's
intra-op pool cannot be resized reliably once it has run work. Each measurement warms up, then
times ``repeats`` rounds of ``steps`` steps and keeps the fastest round: on a shared machine the
fastest round is the one least disturbed by other processes.
"""

from __future__ import annotations

import argparse
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


def _time_steps(step: Callable[[], None], steps: int, warmup: int, repeats: int,
                sync: Callable[[], None], monitor=contextlib.nullcontext()) -> tuple[float, float]:
    """(steps per wall second, steps per process-CPU second) of the fastest of ``repeats`` rounds.

    The CPU-time rate ignores time the process spent descheduled, so on a busy machine it is the
    better estimate of single-thread throughput (with several threads it sums over threads).
    ``monitor`` (a context manager) is entered around the timed rounds only.
    """
    for _ in range(warmup):
        step()
    sync()
    best_wall, best_cpu = float("inf"), float("inf")
    with monitor:
        for _ in range(repeats):
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(steps):
                step()
            sync()
            best_wall = min(best_wall, time.perf_counter() - wall)
            best_cpu = min(best_cpu, time.process_time() - cpu)
    return steps / best_wall, steps / max(best_cpu, 1e-9)


def measure(threads: int, steps: int, warmup: int, repeats: int, device: str = "cpu",
            members: Sequence[int] = (), compile_modes: Sequence[str] = ("off",),
            evaluation: bool = False) -> dict:
    """The throughputs with ``threads`` intra-op threads in THIS process.

    ``members``: also time the batched step for these K (steps scaled down as 1/K, at least 20), in
    each of ``compile_modes`` (``iql.compile`` values; reported under :data:`MODE_LABELS`).
    """
    import torch

    from dvdf.algos.filtered_iql import FilteredIQL
    from dvdf.algos.runtime import retain_freed_memory
    from dvdf.algos.whole_step import make_train_step
    from dvdf.algos.contrastive import ContrastiveScorer, contrastive_update, make_contrastive_optimizer
    from dvdf.config import ContrastiveConfig, FilterConfig, IQLConfig
    from dvdf.data import TransitionBuffer

    retain_freed_memory()   # as the experiment process does; see dvdf.algos.runtime
    torch.set_num_threads(threads)
    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    gen = torch.Generator(device=dev).manual_seed(0)
    source = _random_transitions(POOL, dev, gen)
    target = _random_transitions(POOL, dev, gen)

    source_buffer, target_buffer = TransitionBuffer(source), TransitionBuffer(target)

    def time_agent(k: Optional[int], mode: str, n_steps: int, monitor=contextlib.nullcontext()
                   ) -> tuple[float, float]:
        """The experiment loop's step: draw row indices per member, then update (iql.compile ``mode``)."""
        agent = FilteredIQL(OBS_DIM, ACT_DIM, IQLConfig(compile=mode), FilterConfig(method="dvdf-igdf"),
                            dev, seed=0, members=k)
        samplers = [torch.Generator(device=dev).manual_seed(i) for i in range(k or 1)]
        step = make_train_step(agent, source_buffer, target_buffer, BATCH, samplers)
        return _time_steps(step, n_steps, warmup, repeats, sync, monitor)

    train, train_cpu = time_agent(None, "off", steps)
    by_members: dict[str, dict] = {}
    utilization_error = None
    for k in members:
        n_steps = max(20, steps // k)
        by_members[str(k)] = {}
        for mode in compile_modes:
            sampler = UtilizationSampler(lambda: torch.cuda.utilization(dev)) if dev.type == "cuda" else None
            rate, _ = time_agent(None if k == 1 else k, mode, n_steps,   # K=1: the single-model path
                                 sampler or contextlib.nullcontext())
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

    contrastive, contrastive_cpu = _time_steps(contrastive_step, steps, warmup, repeats, sync)
    result = {"threads": threads, "train_step_per_s": train, "contrastive_step_per_s": contrastive,
              "train_step_per_cpu_s": train_cpu, "contrastive_step_per_cpu_s": contrastive_cpu,
              "members": by_members}
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
                  compile_modes: Sequence[str] = ("off",), evaluation: bool = True) -> dict:
    """Measure each thread count in a fresh subprocess; one result object for ``dvdf bench --json``."""
    import torch

    from dvdf.config import ContrastiveConfig

    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    results = []
    for n in threads:
        cmd = [sys.executable, "-m", "dvdf.bench", "--worker", "--threads", str(n), "--steps", str(steps),
               "--warmup", str(warmup), "--repeats", str(repeats), "--device", device,
               "--members", *map(str, members), "--compile-modes", *compile_modes]
        if evaluation:
            cmd.append("--evaluation")
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"benchmark worker ({n} threads) failed:\n{proc.stderr.strip()}")
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))

    def table(key: str) -> dict:
        return {str(r["threads"]): round(r[key], 1) for r in results}

    return {
        "train_step_per_s": table("train_step_per_s"),
        "contrastive_step_per_s": table("contrastive_step_per_s"),
        "train_step_per_cpu_s": table("train_step_per_cpu_s"),
        "contrastive_step_per_cpu_s": table("contrastive_step_per_cpu_s"),
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
        return round(obj, 1)
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


def _worker_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one dvdf bench measurement (internal)")
    parser.add_argument("--worker", action="store_true", required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--warmup", type=int, required=True)
    parser.add_argument("--repeats", type=int, required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--members", type=int, nargs="*", default=[])
    parser.add_argument("--compile-modes", nargs="*", choices=list(MODE_LABELS), default=["off"])
    parser.add_argument("--evaluation", action="store_true")
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.threads, args.steps, args.warmup, args.repeats, args.device, args.members,
                             args.compile_modes, args.evaluation)))
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main())
