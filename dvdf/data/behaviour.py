"""Behaviour policies for D4RL-style data: SAC trained in a domain, resumable, snapshotted.

The learner is :class:`dvdf.algos.sac.SACAgent` (standard SAC: twin Q, tanh-Gaussian actor,
automatic entropy tuning towards -|A|, 2x256 ReLU MLPs, Adam 3e-4, batch 256, gamma 0.99,
tau 0.005). This module is the run around it: uniform random actions for the first
``start_steps`` environment steps, then one gradient update per environment step; evaluation,
snapshots and checkpoints every ``snapshot_every`` steps.

A training run lives in a directory (see :func:`train_sac`):

``settings.json``    what the run is (its cache key is a hash of this)
``checkpoint.pt``    full training state every ``snapshot_every`` steps (networks, optimiser,
                     RNG, simulator state) - an interrupted run resumes exactly where it stopped
``replay/``          the replay buffer, appended in chunks at each checkpoint (medium-replay data)
``snapshots/``       actor weights + evaluated returns every ``snapshot_every`` steps (step 0 =
                     the randomly initialised actor; the last = the expert)
``curve.jsonl``      the learning curve: one line per snapshot (step, returns, updates/s, wall time)
``tensorboard/``     losses, temperature, Q values, evaluation returns
``result.json``      written when training completed
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Optional

import mujoco
import numpy as np
import torch
from tqdm.auto import tqdm

from dvdf import __version__
from dvdf.algos.sac import COMPILE_MODES, METRIC_NAMES, SACAgent, SACHyper, SACReplay, resolve_compile
from dvdf.atomic import atomic_path, atomic_write_text
from dvdf.data.rollout import deterministic_actor, stochastic_actor
from dvdf.errors import DvdfError
from dvdf.nets import TanhGaussianPolicy

DEFAULT_START_STEPS = 5_000
SETTINGS_FILE, CHECKPOINT_FILE, RESULT_FILE, CURVE_FILE = "settings.json", "checkpoint.pt", "result.json", "curve.jsonl"
# Version of a run directory's contents. 2: one optimiser and one backward pass per update
# (dvdf.algos.sac); a format-1 run is a different cache entry, never resumed by this code.
RUN_FORMAT = 2


@dataclass(frozen=True)
class SACConfig(SACHyper):
    """One behaviour-policy training: SAC's hyperparameters (the fields of
    :class:`~dvdf.algos.sac.SACHyper`, its standard values) plus the run's length and bookkeeping."""

    steps: int = 1_000_000
    start_steps: Optional[int] = None  # uniform random actions first; None = min(5000, steps // 10)
    snapshot_every: int = 10_000    # snapshot + evaluation + checkpoint interval
    eval_episodes: int = 5
    log_every: int = 1_000          # TensorBoard scalars
    compile: str = "auto"           # the update: auto | off (eager) | step (torch.compile), same math

    def __post_init__(self) -> None:
        if self.steps <= 0 or self.batch_size <= 0 or not 0 < self.snapshot_every <= self.steps:
            raise DvdfError("sac: steps, batch_size > 0 and snapshot_every in (0, steps] required")
        if self.compile not in COMPILE_MODES:
            raise DvdfError(f"sac: compile must be one of {', '.join(COMPILE_MODES)}, got {self.compile!r}")

    @property
    def resolved_start_steps(self) -> int:
        if self.start_steps is not None:
            return self.start_steps
        return min(DEFAULT_START_STEPS, max(1, self.steps // 10))

    @property
    def hyper(self) -> SACHyper:
        """The learner's hyperparameters alone."""
        return SACHyper(**{f.name: getattr(self, f.name) for f in fields(SACHyper)})

    @classmethod
    def from_collect(cls, collect) -> "SACConfig":
        """From a :class:`dvdf.config.CollectConfig`."""
        return cls(steps=collect.sac_steps, snapshot_every=collect.snapshot_every,
                   eval_episodes=collect.eval_episodes, seed=collect.seed, compile=collect.sac_compile)

    def identity(self, domain: str) -> dict[str, Any]:
        """Everything the trained policies depend on (the behaviour-policy cache key). The compile
        mode is not part of it: compiled and eager updates agree to float tolerance."""
        settings = asdict(self)
        settings.pop("log_every")
        settings.pop("compile")
        settings["start_steps"] = self.resolved_start_steps
        return {"kind": "sac-behaviour-policy", "format": RUN_FORMAT, "domain": domain, **settings}


def load_replay(run_dir: str | os.PathLike, upto: Optional[int] = None) -> dict[str, np.ndarray]:
    """The persisted replay buffer of a run (rows [0, upto)) as numpy columns."""
    run_dir = Path(run_dir)
    settings = json.loads((run_dir / SETTINGS_FILE).read_text())
    size = json.loads((run_dir / RESULT_FILE).read_text())["steps"] if upto is None else upto
    storage = SACReplay(size, settings["obs_dim"], settings["act_dim"], "cpu")
    storage.load(run_dir / "replay", size)
    return {key: value.numpy() for key, value in storage.split(storage.data).items()}


# ------------------------------------------------------------------------------ simulator state
def env_state(env) -> dict[str, Any]:
    """Everything needed to continue ``env`` (TimeLimit over a MuJoCo env) bit for bit."""
    base = env.unwrapped
    spec = mujoco.mjtState.mjSTATE_INTEGRATION  # qpos, qvel, act, warm start, time, ...
    state = np.empty(mujoco.mj_stateSize(base.model, spec))
    mujoco.mj_getState(base.model, base.data, state, spec)
    return {"physics": state, "elapsed_steps": env._elapsed_steps,
            "np_random": base.np_random.bit_generator.state}


def restore_env_state(env, saved: dict[str, Any]) -> None:
    base = env.unwrapped
    mujoco.mj_setState(base.model, base.data, saved["physics"], mujoco.mjtState.mjSTATE_INTEGRATION)
    mujoco.mj_forward(base.model, base.data)
    env._elapsed_steps = saved["elapsed_steps"]
    base.np_random.bit_generator.state = saved["np_random"]


# ------------------------------------------------------------------------------ training
@dataclass
class SACResult:
    run_dir: Path
    steps: int
    snapshots: list[dict[str, Any]]   # {"step", "return_stochastic", "return_deterministic", "path"}

    @property
    def expert(self) -> dict[str, Any]:
        return self.snapshots[-1]

    @property
    def random(self) -> dict[str, Any]:
        return self.snapshots[0]


def load_result(run_dir: str | os.PathLike) -> Optional[SACResult]:
    """The result of a completed run, or None if it has not completed."""
    path = Path(run_dir) / RESULT_FILE
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return SACResult(Path(run_dir), data["steps"], data["snapshots"])


def load_actor(run_dir: str | os.PathLike, snapshot: dict[str, Any], device: str | torch.device = "cpu"):
    settings = json.loads((Path(run_dir) / SETTINGS_FILE).read_text())
    actor = TanhGaussianPolicy(settings["obs_dim"], settings["act_dim"], settings["hidden"],
                               settings["layers"])
    state = torch.load(Path(run_dir) / snapshot["path"], map_location="cpu", weights_only=True)
    actor.load_state_dict(state["actor"])
    return actor.to(device).eval()


def train_sac(domain: str, config: SACConfig, run_dir: str | os.PathLike, device: str = "cpu",
              progress: bool = True, stop_at: Optional[int] = None) -> Optional[SACResult]:
    """Train (or resume, or just load) the SAC run of ``domain`` in ``run_dir``.

    A completed run is loaded, not retrained. An incomplete one resumes from its last
    checkpoint and continues the same run: same replay buffer, networks, optimiser moments,
    random streams and simulator state, so the result equals an uninterrupted run (in the same
    compile mode; across modes it agrees to float tolerance).
    ``stop_at`` ends this call after that many steps (checkpointed; returns None) - used to
    split a long training into jobs, and by the resume test.

    Prints one header line (the compile mode chosen and why) and, without ``progress``, one line
    per snapshot (step, returns, update rate) on stderr - the log of a background run.
    """
    from dvdf.envs import get_domain, make_env
    from dvdf.evaluation import Evaluator

    run_dir = Path(run_dir)
    done = load_result(run_dir)
    if done is not None:
        return done
    spec = get_domain(domain)
    device_t = torch.device(device)
    settings = {**config.identity(spec.name), "obs_dim": spec.obs_dim, "act_dim": spec.act_dim,
                "dvdf_version": __version__}
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / SETTINGS_FILE).exists():
        atomic_write_text(run_dir / SETTINGS_FILE, json.dumps(settings, indent=2) + "\n")

    start_steps = config.resolved_start_steps
    compile_mode, why = resolve_compile(config.compile, device_t, config.steps - start_steps)
    replay = SACReplay(config.steps, spec.obs_dim, spec.act_dim, device_t)
    agent = SACAgent(spec.obs_dim, spec.act_dim, config.hyper, device_t, replay, compile=compile_mode)
    generator = torch.Generator(device=device_t).manual_seed(config.seed)
    env = make_env(spec.name)
    obs, _ = env.reset(seed=config.seed)
    low = torch.as_tensor(env.action_space.low, device=device_t)
    high = torch.as_tensor(env.action_space.high, device=device_t)
    snapshots: list[dict[str, Any]] = []
    episode_return, episode_length, episodes_done = 0.0, 0, 0
    step = 0

    checkpoint_path = run_dir / CHECKPOINT_FILE
    if checkpoint_path.exists():
        # CPU first: generator states must be CPU tensors; load_state_dict moves the rest to device.
        ckpt = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        agent.load_state_dict(ckpt["agent"])
        generator.set_state(ckpt["generator"])
        replay.load(run_dir / "replay", ckpt["step"])
        restore_env_state(env, ckpt["env"])
        obs = ckpt["obs"]
        step, snapshots = ckpt["step"], ckpt["snapshots"]
        episode_return, episode_length, episodes_done = ckpt["episode"]
    print(f"SAC {spec.name}: step {step} of {config.steps}, update compile: {compile_mode} ({why}), "
          f"torch threads {torch.get_num_threads()}, device {device_t}", file=sys.stderr, flush=True)

    from torch.utils.tensorboard import SummaryWriter  # heavy import, only when training

    writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=step or None)
    evaluator = Evaluator(spec.name, config.eval_episodes)
    metric_sum = torch.zeros(len(METRIC_NAMES), device=device_t)
    metric_count = 0
    end = config.steps if stop_at is None else min(stop_at, config.steps)
    bar = tqdm(total=config.steps, initial=step, desc=f"SAC {spec.name}", unit="step",
               disable=None if progress else True)
    # Update rate of the interval since the last snapshot (updates only, evaluation excluded).
    interval = {"updates": 0, "update_s": 0.0, "started": time.perf_counter()}

    def snapshot() -> None:
        """Save + evaluate the current actor (step 0: the random policy; last: the expert)."""
        rng = torch.Generator(device=device_t).manual_seed(config.seed * 1_000_003 + step)
        eval_seed = 10_000 + config.seed  # same start states for every snapshot
        stochastic = evaluator(stochastic_actor(agent.actor, rng), seed=eval_seed).returns.mean()
        deterministic = evaluator(deterministic_actor(agent.actor, device_t), seed=eval_seed).returns.mean()
        relative = Path("snapshots") / f"step_{step:09d}.pt"
        (run_dir / "snapshots").mkdir(exist_ok=True)
        with atomic_path(run_dir / relative) as tmp:
            torch.save({"step": step, "actor": agent.actor.state_dict()}, tmp)
        snapshots.append({"step": step, "return_stochastic": float(stochastic),
                          "return_deterministic": float(deterministic), "path": str(relative)})
        writer.add_scalar("eval/return_stochastic", stochastic, step)
        writer.add_scalar("eval/return_deterministic", deterministic, step)
        rate = interval["updates"] / interval["update_s"] if interval["update_s"] > 0 else None
        line = {"step": step, "return_deterministic": round(float(deterministic), 2),
                "return_stochastic": round(float(stochastic), 2),
                "updates_per_s": None if rate is None else round(rate, 1),
                "interval_s": round(time.perf_counter() - interval["started"], 1), "time": time.time()}
        with open(run_dir / CURVE_FILE, "a") as curve:
            curve.write(json.dumps(line) + "\n")
        if not progress:
            print(f"SAC {spec.name} step {step}: return deterministic {deterministic:.1f}, stochastic "
                  f"{stochastic:.1f}; {line['updates_per_s']} updates/s", file=sys.stderr, flush=True)
        interval.update(updates=0, update_s=0.0, started=time.perf_counter())
        bar.set_postfix(ret=f"{deterministic:.0f}")

    def checkpoint() -> None:
        replay.save_new_rows(run_dir / "replay")
        state = {"step": step, "agent": agent.state_dict(), "generator": generator.get_state(),
                 "env": env_state(env), "obs": obs, "snapshots": snapshots,
                 "episode": (episode_return, episode_length, episodes_done)}
        with atomic_path(checkpoint_path) as tmp:
            torch.save(state, tmp)
        writer.flush()

    if step == 0:
        snapshot()
        checkpoint()
    while step < end:
        if step < start_steps:
            action_t = low + (high - low) * torch.rand(low.shape, generator=generator, device=device_t)
            action = action_t.cpu().numpy()
        else:
            action = agent.act(obs, generator)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        replay.add(obs, action, reward, terminated, truncated and not terminated, next_obs)
        episode_return += float(reward)
        episode_length += 1
        if terminated or truncated:
            writer.add_scalar("train/episode_return", episode_return, step + 1)
            episode_return, episode_length, episodes_done = 0.0, 0, episodes_done + 1
            obs, _ = env.reset()
        else:
            obs = next_obs
        if step >= start_steps:
            began = time.perf_counter()
            metric_sum += agent.update(generator)
            interval["update_s"] += time.perf_counter() - began
            interval["updates"] += 1
            metric_count += 1
        step += 1
        bar.update(1)
        if metric_count and step % config.log_every == 0:
            for name, value in zip(METRIC_NAMES, (metric_sum / metric_count).tolist()):
                writer.add_scalar(f"train/{name}", value, step)
            metric_sum.zero_()
            metric_count = 0
        if step % config.snapshot_every == 0 or step == config.steps:
            snapshot()
            checkpoint()
    bar.close()
    if step % config.snapshot_every != 0 and step != config.steps:
        checkpoint()  # stopped between intervals (stop_at): keep the progress
    evaluator.close()
    env.close()
    writer.close()
    if step < config.steps:
        return None
    result = {"steps": step, "snapshots": snapshots, "episodes": episodes_done, "start_steps": start_steps,
              "settings": settings}
    atomic_write_text(run_dir / RESULT_FILE, json.dumps(result, indent=2) + "\n")
    return SACResult(run_dir, step, snapshots)
