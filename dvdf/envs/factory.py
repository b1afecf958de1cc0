"""From a domain name to a compiled MuJoCo model and a gymnasium environment.

``edited XML -> file in the cache dir (content-addressed) -> MjModel (compiled once per
process and d4rl_compat setting) -> copies for each environment``. Environments are gymnasium's
MuJoCo v5 classes, given the edited XML and the cached model, with the D4RL/gym-v3
observation layout.
"""

from __future__ import annotations

import copy
import hashlib
import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict

import gymnasium
import mujoco
import numpy as np
from gymnasium import utils
from gymnasium.envs.mujoco.ant_v5 import AntEnv
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
from gymnasium.envs.mujoco.hopper_v5 import HopperEnv
from gymnasium.envs.mujoco.walker2d_v5 import Walker2dEnv
from gymnasium.spaces import Box
from gymnasium.wrappers import TimeLimit

from dvdf.atomic import atomic_write_text
from dvdf.envs.catalogue import DomainSpec, get_domain, list_domains
from dvdf.envs.compat import apply_old_capsule_inertia
from dvdf.envs.xml_edits import edited_xml
from dvdf.errors import DvdfError

# D4RL-era Ant observations end with 84 contact-force dims that mujoco 2.x left at exactly 0.
ANT_ZERO_CONTACT_DIMS = 84
# gymnasium v5 arguments that give the gym-v3 behaviour D4RL data was collected with.
V3_LAYOUT_KWARGS: Dict[str, Dict[str, Any]] = {
    "hopper": {},
    "halfcheetah": {},
    "walker2d": {},
    "ant": {"include_cfrc_ext_in_observation": False, "contact_cost_weight": 0.0},
}
RESERVED_ENV_KWARGS = ("xml_file", "frame_skip")


def cache_dir() -> Path:
    """Where edited XML files go: $DVDF_CACHE_DIR, else $XDG_CACHE_HOME/dvdf, else ~/.cache/dvdf."""
    configured = os.environ.get("DVDF_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dvdf"


@lru_cache(maxsize=None)
def xml_path(name: str) -> str:
    """Path of the domain's edited XML, written once (atomically) under a content-hash name."""
    spec = get_domain(name)
    text = edited_xml(spec).text
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    for directory in (cache_dir() / "xml", Path(tempfile.gettempdir()) / f"dvdf-{os.getuid()}" / "xml"):
        path = directory / f"{spec.robot}-{digest}.xml"
        try:
            if not path.exists():
                atomic_write_text(path, text)
            return str(path)
        except OSError:
            continue   # read-only home (e.g. some cluster nodes): fall back to the temp dir
    raise DvdfError(f"cannot write the edited XML for {name!r} under {cache_dir()} or the temp dir")


@lru_cache(maxsize=None)
def shared_model(name: str, d4rl_compat: bool) -> mujoco.MjModel:
    """The compiled model shared by every env and replay of (name, d4rl_compat): never mutate it."""
    spec = get_domain(name)
    edited = edited_xml(spec)
    model = mujoco.MjModel.from_xml_path(xml_path(spec.name))
    if d4rl_compat:
        apply_old_capsule_inertia(model, edited.densities, edited.total_mass)
    elif edited.total_mass is not None:
        mujoco.mj_setTotalmass(model, edited.total_mass)
        mujoco.mj_setConst(model, mujoco.MjData(model))
    return model


def build_model(name: str, d4rl_compat: bool = True) -> mujoco.MjModel:
    """The domain's compiled MjModel (a private copy; compiled once per (name, d4rl_compat))."""
    return copy.copy(shared_model(get_domain(name).name, bool(d4rl_compat)))


class _DomainEnvMixin:
    """Builds a gymnasium v5 MuJoCo env on a domain's cached model instead of recompiling XML."""

    def __init__(self, domain: str, d4rl_compat: bool = True, **kwargs: Any) -> None:
        spec = get_domain(domain)
        clash = [key for key in RESERVED_ENV_KWARGS if key in kwargs]
        if clash:
            raise DvdfError(f"make_env({spec.name!r}): {', '.join(clash)} is set by the domain")
        self.domain: DomainSpec = spec
        self.d4rl_compat = bool(d4rl_compat)
        self._template_model = shared_model(spec.name, self.d4rl_compat)
        super().__init__(xml_file=xml_path(spec.name), frame_skip=spec.frame_skip,
                         **{**V3_LAYOUT_KWARGS[spec.robot], **kwargs})
        # The v5 constructor recorded its own arguments; pickling must rebuild this class.
        utils.EzPickle.__init__(self, spec.name, self.d4rl_compat, **kwargs)

    def _initialize_simulation(self):
        model = copy.copy(self._template_model)
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, self.width)
        model.vis.global_.offheight = max(model.vis.global_.offheight, self.height)
        return model, mujoco.MjData(model)

    def _step_mujoco_simulation(self, ctrl, n_frames):
        # gymnasium also runs mj_rnePostConstraint here to fill cfrc_ext; no D4RL-layout
        # observation or reward reads it (ant's contact cost weight is 0), so skip the work.
        self.data.ctrl[:] = ctrl
        mujoco.mj_step(self.model, self.data, nstep=n_frames)


class DomainHopperEnv(_DomainEnvMixin, HopperEnv):
    """Hopper: obs = qpos[1:] (5) + clip(qvel, +-10) (6) = 11."""


class DomainHalfCheetahEnv(_DomainEnvMixin, HalfCheetahEnv):
    """HalfCheetah: obs = qpos[1:] (8) + qvel (9) = 17."""


class DomainWalker2dEnv(_DomainEnvMixin, Walker2dEnv):
    """Walker2d: obs = qpos[1:] (8) + clip(qvel, +-10) (9) = 17."""


class DomainAntEnv(_DomainEnvMixin, AntEnv):
    """Ant: obs = qpos[2:] (13) + qvel (14) + 84 zeros = 111, the D4RL-era layout."""

    def __init__(self, domain: str, d4rl_compat: bool = True, **kwargs: Any) -> None:
        super().__init__(domain, d4rl_compat, **kwargs)
        self._zero_contacts = np.zeros(ANT_ZERO_CONTACT_DIMS)
        size = self.observation_space.shape[0] + ANT_ZERO_CONTACT_DIMS
        self.observation_space = Box(low=-np.inf, high=np.inf, shape=(size,), dtype=np.float64)
        self.observation_structure["cfrc_ext"] = ANT_ZERO_CONTACT_DIMS

    def _get_obs(self):
        return np.concatenate((super()._get_obs(), self._zero_contacts))


ENV_CLASSES = {
    "hopper": DomainHopperEnv,
    "halfcheetah": DomainHalfCheetahEnv,
    "walker2d": DomainWalker2dEnv,
    "ant": DomainAntEnv,
}


def make_env(name: str, d4rl_compat: bool = True, **kwargs: Any) -> gymnasium.Env:
    """The domain as a gymnasium env, 1000-step TimeLimit; ``kwargs`` go to the v5 class."""
    spec = get_domain(name)
    env = ENV_CLASSES[spec.robot](spec.name, d4rl_compat, **kwargs)
    return TimeLimit(env, max_episode_steps=spec.max_episode_steps)


class _EnvFactory:
    """A picklable ``make_env`` call (AsyncVectorEnv ships it to worker processes)."""

    def __init__(self, name: str, d4rl_compat: bool, kwargs: Dict[str, Any]) -> None:
        self.name, self.d4rl_compat, self.kwargs = name, d4rl_compat, kwargs

    def __call__(self) -> gymnasium.Env:
        return make_env(self.name, self.d4rl_compat, **self.kwargs)


# 'auto' means in-process (SyncVectorEnv). Measured on 2 cores, hopper 4/16/64 envs: sync
# 7.2k/8.1k/7.7k env-steps/s vs async 4.6k/4.1k/3.3k; ant: sync 3.9k/2.4k/3.5k vs async
# 1.8k/1.5k/1.9k. One MuJoCo step of these robots costs less than an inter-process round trip,
# and gymnasium's AsyncVectorEnv runs one process per env; 'async' stays available by name.
AUTO_VECTORIZATION = "sync"


def make_vector_env(name: str, num_envs: int, d4rl_compat: bool = True,
                    vectorization: str = "auto", **kwargs: Any) -> gymnasium.vector.VectorEnv:
    """``num_envs`` copies of the domain as one vector env.

    ``vectorization``: 'sync' (one process), 'async' (one worker process per env) or 'auto'
    (``AUTO_VECTORIZATION``, the faster one measured for these robots).
    """
    spec = get_domain(name)
    if int(num_envs) < 1:
        raise DvdfError(f"make_vector_env: num_envs must be >= 1, got {num_envs}")
    if vectorization == "auto":
        vectorization = AUTO_VECTORIZATION
    factories = [_EnvFactory(spec.name, bool(d4rl_compat), dict(kwargs)) for _ in range(int(num_envs))]
    if vectorization == "sync":
        return gymnasium.vector.SyncVectorEnv(factories)
    if vectorization == "async":
        return gymnasium.vector.AsyncVectorEnv(factories)
    raise DvdfError(f"make_vector_env: vectorization must be auto, sync or async, got {vectorization!r}")


def register_domains() -> None:
    """Register every domain with gymnasium as ``dvdf/<name>-v0`` (idempotent)."""
    for spec in list_domains():
        if spec.gym_id in gymnasium.registry:
            continue
        # A "module:Class" string, not the class: gymnasium serialises only such specs to JSON,
        # and Minari stores the spec of the env a dataset was recorded in.
        env_class = ENV_CLASSES[spec.robot]
        gymnasium.register(id=spec.gym_id, entry_point=f"{env_class.__module__}:{env_class.__name__}",
                           max_episode_steps=spec.max_episode_steps, kwargs={"domain": spec.name})
