"""One-step replay: does a dataset's dynamics match a domain's simulator?

For each transition (s, a, s'): put the simulator in the state the observation s describes,
apply a for frame_skip physics steps, and compare the resulting observation with s'. Data from
the domain itself replays to within float32 precision (plus a small contact residual for hopper
and ant, see docs/DOMAINS.md); data from another dynamics does not, wherever the difference binds.

The observation omits the x position (ant: x and y); dynamics are invariant to it, so it is set
to 0. Ant's quaternion is renormalised (float32 storage leaves it slightly off unit length).
Hopper and walker2d observations clip velocities to +-10: a transition with a clipped velocity
(in s or s') does not determine the state, so it is counted as skipped rather than failed.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import mujoco
import numpy as np

from dvdf.envs.catalogue import ROBOTS, get_domain
from dvdf.envs.factory import shared_model
from dvdf.errors import DvdfError

DEFAULT_TOL = 1e-3
ANT_QUAT = slice(3, 7)   # qpos entries of the free joint's orientation


def replay_check(observations: np.ndarray, actions: np.ndarray, next_observations: np.ndarray,
                 domain: str, tol: float = DEFAULT_TOL, d4rl_compat: bool = True,
                 progress: Optional[bool] = None) -> Dict[str, Any]:
    """Replay transitions in ``domain``; report how many land within ``tol`` of s'.

    Returns ``transitions`` (given), ``checked`` (not skipped), ``skipped`` (clipped velocity),
    ``fraction_within_tol`` (of checked), ``median_error`` (median over checked of the max-abs
    error per transition; observed position and velocity dims only), ``max_error``, ``tol``,
    ``domain``. ``progress``: tqdm bar (None: only on a terminal).
    """
    spec = get_domain(domain)
    robot = ROBOTS[spec.robot]
    obs = np.asarray(observations, dtype=np.float64)
    act = np.asarray(actions, dtype=np.float64)
    nxt = np.asarray(next_observations, dtype=np.float64)
    _check_shapes(obs, act, nxt, spec)
    if not tol > 0:
        raise DvdfError(f"replay-check: tol must be positive, got {tol}")

    model = shared_model(spec.name, bool(d4rl_compat))
    data = mujoco.MjData(model)
    skip = robot.nq_skipped
    n_pos = model.nq - skip                 # observed qpos entries
    n_phys = n_pos + model.nv               # observed physical dims (ant: before the 84 zeros)
    skipped = _clipped_rows(obs, nxt, n_pos, n_phys, robot.clip_velocity)
    errors = np.full(len(obs), np.nan)
    predicted = np.empty(n_phys)

    rows = np.flatnonzero(~skipped)
    for i in _progress(rows, progress, spec.name):
        mujoco.mj_resetData(model, data)    # no warm start or activation carried between rows
        data.qpos[skip:] = obs[i, :n_pos]
        if spec.robot == "ant":
            quat = data.qpos[ANT_QUAT]
            quat /= np.linalg.norm(quat)
        data.qvel[:] = obs[i, n_pos:n_phys]
        data.ctrl[:] = act[i]
        mujoco.mj_step(model, data, nstep=spec.frame_skip)
        predicted[:n_pos] = data.qpos[skip:]
        predicted[n_pos:] = data.qvel
        if robot.clip_velocity is not None:
            np.clip(predicted[n_pos:], -robot.clip_velocity, robot.clip_velocity, out=predicted[n_pos:])
        errors[i] = np.max(np.abs(predicted - nxt[i, :n_phys]))

    checked = errors[rows]
    return {
        "domain": spec.name,
        "transitions": int(len(obs)),
        "checked": int(len(rows)),
        "skipped": int(skipped.sum()),
        "fraction_within_tol": float(np.mean(checked <= tol)) if len(rows) else float("nan"),
        "median_error": float(np.median(checked)) if len(rows) else float("nan"),
        "max_error": float(np.max(checked)) if len(rows) else float("nan"),
        "tol": float(tol),
        "d4rl_compat": bool(d4rl_compat),
    }


def replay_check_dataset(dataset, domain: str, tol: float = DEFAULT_TOL, d4rl_compat: bool = True,
                         progress: Optional[bool] = None) -> Dict[str, Any]:
    """:func:`replay_check` on a :class:`dvdf.data.dataset.Dataset`.

    With recorded next observations every row is a transition. Without, s' is the next row,
    and rows ending an episode (terminal or timeout) are left out: their next row is the start
    of another episode, not a successor state.
    """
    if dataset.next_observations is not None:
        obs, act, nxt = dataset.observations, dataset.actions, dataset.next_observations
    else:
        rows = dataset.transition_rows()
        rows = rows[~dataset.terminals[rows] & (rows + 1 < len(dataset))]
        obs, act, nxt = dataset.observations[rows], dataset.actions[rows], dataset.observations[rows + 1]
    result = replay_check(obs, act, nxt, domain, tol=tol, d4rl_compat=d4rl_compat, progress=progress)
    result["source"] = str(dataset.source)
    return result


def _check_shapes(obs: np.ndarray, act: np.ndarray, nxt: np.ndarray, spec) -> None:
    if obs.ndim != 2 or obs.shape[1] != spec.obs_dim:
        raise DvdfError(f"replay-check: observations have shape {obs.shape}, "
                        f"domain '{spec.name}' needs (N, {spec.obs_dim})")
    if nxt.shape != obs.shape:
        raise DvdfError(f"replay-check: next_observations have shape {nxt.shape}, expected {obs.shape}")
    if act.shape != (len(obs), spec.act_dim):
        raise DvdfError(f"replay-check: actions have shape {act.shape}, "
                        f"domain '{spec.name}' needs ({len(obs)}, {spec.act_dim})")
    if len(obs) == 0:
        raise DvdfError("replay-check: no transitions to check")


def _clipped_rows(obs: np.ndarray, nxt: np.ndarray, n_pos: int, n_phys: int,
                  clip: Optional[float]) -> np.ndarray:
    if clip is None:
        return np.zeros(len(obs), dtype=bool)
    velocities = np.concatenate((obs[:, n_pos:n_phys], nxt[:, n_pos:n_phys]), axis=1)
    return np.any(np.abs(velocities) >= clip, axis=1)


def _progress(rows: np.ndarray, progress: Optional[bool], name: str):
    import sys

    from tqdm import tqdm

    disable = not sys.stderr.isatty() if progress is None else not progress
    return tqdm(rows, desc=f"replay {name}", unit="tr", disable=disable, mininterval=0.5)
