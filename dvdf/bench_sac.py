"""Throughput of behaviour-policy generation: the SAC update, and the environment steps of collection.

* ``sac_update_per_s``: SAC updates per second at hopper sizes (obs 11, act 3, batch 256, 2 x 256
  ReLU MLPs, twin Q with target, automatic entropy; :mod:`dvdf.algos.sac`), per torch thread count
  and update mode (``off`` eager, ``step`` compiled), each thread count in a fresh interpreter
  (torch's intra-op pool cannot be resized reliably once it ran work). The replay holds 100k
  random rows on the device, as a training run's does.
* ``collection_env_steps_per_s``: environment steps per second of stochastic rollouts of a SAC
  actor in the vectorised envs (:func:`dvdf.data.rollout.collect_rollouts`), as ``dvdf collect``
  generates a quality's transitions - by number of rollout worker processes (1 = one core).

Each rate is the fastest of ``repeats`` timed rounds after a warm-up (the round least disturbed by
other processes on a shared machine), with the process-CPU-time rate beside it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Callable, Sequence

OBS_DIM, ACT_DIM = 11, 3          # hopper
REPLAY_ROWS = 100_000
UPDATE_MODES = ("off", "step")
MODE_LABELS = {"off": "eager", "step": "compiled_step"}


def make_sac_update(device: str = "cpu", compile: str = "off",
                    seed: int = 0) -> tuple[Callable[[], object], Callable[[], None]]:
    """(one SAC update at hopper sizes, a device sync) over a replay of random rows on ``device``."""
    import torch

    from dvdf.algos.sac import SACAgent, SACHyper, SACReplay

    replay = SACReplay(REPLAY_ROWS, OBS_DIM, ACT_DIM, device)
    gen = torch.Generator(device=device).manual_seed(seed)
    replay.data.normal_(generator=gen)
    replay.data[:, OBS_DIM + ACT_DIM + 1:OBS_DIM + ACT_DIM + 3] = 0.0   # terminal, timeout flags
    replay.size = REPLAY_ROWS
    agent = SACAgent(OBS_DIM, ACT_DIM, SACHyper(seed=seed), device, replay, compile=compile)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    return (lambda: agent.update(gen)), sync


def measure_sac_update(threads: int, updates: int = 300, warmup: int = 50, repeats: int = 3,
                       device: str = "cpu", modes: Sequence[str] = UPDATE_MODES) -> dict:
    """In this process: SAC updates/s per mode at ``threads`` torch threads (sets the thread count).

    The compiled mode's warm-up includes its compilation, reported as ``first_update_s``.
    """
    import torch

    from dvdf.algos.runtime import retain_freed_memory
    from dvdf.bench import _time_steps  # the shared timing loop of dvdf bench

    torch.set_num_threads(threads)
    retain_freed_memory()
    updates_by_mode, first_update_s = {}, {}
    for mode in modes:
        update, sync = make_sac_update(device, mode)
        began = time.perf_counter()
        update()
        sync()
        first_update_s[mode] = time.perf_counter() - began   # with compile: step, the compile time
        updates_by_mode[mode] = update
    # The modes' rounds interleave, so load that comes and goes hits them alike.
    rates = _time_steps(updates_by_mode, updates, warmup, repeats, sync)
    out = {}
    for mode, (per_s, per_cpu_s) in rates.items():
        out[MODE_LABELS[mode]] = {"updates_per_s": per_s, "updates_per_cpu_s": per_cpu_s,
                                  "first_update_s": first_update_s[mode]}
    return out


def sac_update_per_s(threads: Sequence[int] = (1, 2), updates: int = 300, warmup: int = 50, repeats: int = 3,
                     device: str = "cpu", modes: Sequence[str] = UPDATE_MODES) -> dict:
    """``{threads: {mode label: {updates_per_s, updates_per_cpu_s, first_update_s}}}``, each thread
    count measured in a fresh interpreter."""
    results = {}
    for n in threads:
        job = {"kind": "sac", "threads": n, "updates": updates, "warmup": warmup, "repeats": repeats,
               "device": device, "modes": list(modes)}
        results[str(n)] = _in_fresh_process(job)
    return results


def collection_env_steps_per_s(workers: Sequence[int] = (1, 2), transitions: int = 20_000, num_envs: int = 8,
                               domain: str = "hopper") -> dict:
    """``{workers: {env_steps_per_s, seconds}}`` of stochastic SAC-actor rollouts (a randomly
    initialised 2 x 256 actor, torch on one thread per worker), as ``dvdf collect`` runs them."""
    results = {}
    for n in workers:
        job = {"kind": "collect", "workers": n, "transitions": transitions, "num_envs": num_envs,
               "domain": domain}
        results[str(n)] = _in_fresh_process(job)
    return results


def measure_collection(workers: int, transitions: int, num_envs: int, domain: str) -> dict:
    import torch

    from dvdf.data.rollout import parallel_rollouts
    from dvdf.envs import get_domain
    from dvdf.nets import TanhGaussianPolicy, seeded_generators

    torch.set_num_threads(1)
    spec = get_domain(domain)
    actor = TanhGaussianPolicy(spec.obs_dim, spec.act_dim, generators=seeded_generators(0)[0])
    began = time.perf_counter()
    dataset = parallel_rollouts(spec.name, actor, num_envs, transitions, seed=0, workers=workers)
    seconds = time.perf_counter() - began
    return {"env_steps_per_s": len(dataset) / seconds, "seconds": seconds, "transitions": len(dataset),
            "num_envs": num_envs}


def run_sac_benchmark(threads: Sequence[int] = (1, 2), updates: int = 300, warmup: int = 50, repeats: int = 3,
                      device: str = "cpu", modes: Sequence[str] = UPDATE_MODES, collection: bool = True,
                      workers: Sequence[int] = (1, 2)) -> dict:
    """Everything above as one JSON-ready object (with the machine's load and the torch version)."""
    import torch

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return {
        "sac_update_per_s": sac_update_per_s(threads, updates, warmup, repeats, device, modes),
        "collection_env_steps_per_s": collection_env_steps_per_s(workers) if collection else None,
        "device": device, "torch": torch.__version__, "cores": os.cpu_count(),
        "load_average_1min": round(load, 2),
        "workload": {"obs_dim": OBS_DIM, "act_dim": ACT_DIM, "batch": 256, "hidden": 256, "layers": 2,
                     "replay_rows": REPLAY_ROWS},
    }


def _in_fresh_process(job: dict) -> dict:
    proc = subprocess.run([sys.executable, "-m", "dvdf.bench_sac", json.dumps(job)], capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"SAC benchmark worker {job} failed:\n{proc.stderr.strip()}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _worker(job: dict) -> dict:
    if job["kind"] == "sac":
        return measure_sac_update(job["threads"], job["updates"], job["warmup"], job["repeats"], job["device"],
                                  job["modes"])
    return measure_collection(job["workers"], job["transitions"], job["num_envs"], job["domain"])


if __name__ == "__main__":   # the fresh interpreter of one measurement: one JSON job in, one JSON line out
    print(json.dumps(_worker(json.loads(sys.argv[1]))))
