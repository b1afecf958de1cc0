"""dvdf's SAC update against Stable-Baselines3's SAC ``train()``, interleaved in one sitting.

Stable-Baselines3 is not a dvdf dependency: install it in a scratch virtualenv and name its
interpreter, e.g.::

    python3 -m venv /tmp/sb3venv
    /tmp/sb3venv/bin/pip install torch==2.13.0 stable-baselines3 "gymnasium[mujoco]"
    PYTHONPATH=. .venv/bin/python scripts/compare_sb3_sac.py --sb3-python /tmp/sb3venv/bin/python

Same workload on both sides: Hopper-v5 sizes (obs 11, act 3), batch 256, 2 x 256 ReLU MLPs, twin
Q with a Polyak target (tau 0.005), automatic entropy tuning (target -|A|), Adam 3e-4, one
gradient update per call. SB3 samples from its replay buffer of 10k transitions it collected on
Hopper-v5 with random actions; dvdf from a device-resident replay of random rows.

Each side runs in its own long-lived worker process (this file, in the matching interpreter);
the driver asks them in turn for one timed round of ``--updates`` updates, ``--rounds`` times, so
both see the same machine load. Prints one JSON object: per thread count and side, the best and
median round (updates per wall second and per process-CPU second), and the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


# ------------------------------------------------------------------------------ workers
def _sb3_update_fn(threads: int):
    import gymnasium as gym
    import torch
    from stable_baselines3 import SAC

    torch.set_num_threads(threads)
    env = gym.make("Hopper-v5")
    model = SAC("MlpPolicy", env, batch_size=256, buffer_size=100_000, learning_starts=10_000,
                policy_kwargs={"net_arch": [256, 256]}, device="cpu", seed=0, verbose=0)
    model.learn(total_timesteps=10_000)   # fills the buffer (no update before learning_starts)
    return lambda n: model.train(gradient_steps=n, batch_size=256)


def _dvdf_update_fn(threads: int, mode: str):
    import torch

    from dvdf.algos.runtime import retain_freed_memory
    from dvdf.bench_sac import make_sac_update

    torch.set_num_threads(threads)
    retain_freed_memory()
    update, _ = make_sac_update("cpu", mode)

    def run(n: int) -> None:
        for _ in range(n):
            metrics = update()
        float(metrics[0])   # the last update's result on the host: every update has finished
    return run


def _worker(side: str, threads: int) -> None:
    """Reads a number of updates per line on stdin, runs them, answers {"wall", "cpu"} per line."""
    run = _sb3_update_fn(threads) if side == "sb3" else _dvdf_update_fn(threads, side.split(":")[1])
    run(30)   # warm-up (the compiled mode compiles here)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        n = int(line)
        wall, cpu = time.perf_counter(), time.process_time()
        run(n)
        print(json.dumps({"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}), flush=True)


# ------------------------------------------------------------------------------ driver
def _start(side: str, threads: int, sb3_python: str) -> subprocess.Popen:
    python = sb3_python if side == "sb3" else sys.executable
    return subprocess.Popen([python, os.path.abspath(__file__), "--worker", side, "--threads", str(threads)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def _ask(proc: subprocess.Popen, line: str | None = None) -> dict:
    if line is not None:
        proc.stdin.write(line + "\n")
        proc.stdin.flush()
    answer = proc.stdout.readline()
    if not answer:
        raise RuntimeError(f"worker {proc.args} ended (exit status {proc.wait()})")
    return json.loads(answer)


def compare(threads: list[int], sides: list[str], updates: int, rounds: int, sb3_python: str) -> dict:
    result = {"load_average_1min_before": round(os.getloadavg()[0], 2), "cores": os.cpu_count(),
              "updates_per_round": updates, "rounds": rounds, "threads": {}}
    for n in threads:
        procs = {side: _start(side, n, sb3_python) for side in sides}
        try:
            for proc in procs.values():
                _ask(proc)                       # ready (warmed up, compiled)
            times = {side: [] for side in sides}
            for _ in range(rounds):              # interleaved: A, B, C, A, B, C, ...
                for side, proc in procs.items():
                    times[side].append(_ask(proc, str(updates)))
        finally:
            for proc in procs.values():
                proc.stdin.close()
                proc.wait()
        table = {}
        for side, rows in times.items():
            walls, cpus = [r["wall"] for r in rows], [r["cpu"] for r in rows]
            table[side] = {"best_updates_per_s": round(updates / min(walls), 1),
                           "median_updates_per_s": round(updates / statistics.median(walls), 1),
                           "best_updates_per_cpu_s": round(updates / min(cpus), 1)}
        if "sb3" in table:
            for side in sides:
                if side != "sb3":
                    table[side]["ratio_to_sb3_best"] = round(table[side]["best_updates_per_s"]
                                                             / table["sb3"]["best_updates_per_s"], 2)
                    table[side]["ratio_to_sb3_median"] = round(table[side]["median_updates_per_s"]
                                                               / table["sb3"]["median_updates_per_s"], 2)
                    table[side]["ratio_to_sb3_cpu"] = round(table[side]["best_updates_per_cpu_s"]
                                                            / table["sb3"]["best_updates_per_cpu_s"], 2)
        result["threads"][str(n)] = table
    result["load_average_1min_after"] = round(os.getloadavg()[0], 2)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sb3-python", default="/tmp/sb3venv/bin/python",
                        help="interpreter of a virtualenv with stable-baselines3 and gymnasium[mujoco]")
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--modes", nargs="+", default=["off", "step"], choices=["off", "step"],
                        help="dvdf update modes to compare (eager, compiled)")
    parser.add_argument("--updates", type=int, default=200, help="updates per timed round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args.worker, args.threads[0])
        return 0
    sides = [f"dvdf:{mode}" for mode in args.modes] + ["sb3"]
    print(json.dumps(compare(args.threads, sides, args.updates, args.rounds, args.sb3_python), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
