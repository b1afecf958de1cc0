"""From the environment a Minari dataset was recorded in to a dvdf domain's observation layout.

Minari's MuJoCo datasets come from gymnasium's v5 environments, whose observations differ
from the D4RL / gym-v3 layout dvdf uses (docs/DOMAINS.md) in one place: Ant-v5 appends 78
contact-force dims (105 in all) where dvdf's ant has 84 dims that are always 0 (111 in all).
Hopper, HalfCheetah and Walker2d v5 observations are already in dvdf's layout. A mapping is
made only where it is exact, i.e. where every dvdf observation dim is determined by the
recorded one; otherwise :func:`map_minari_env` refuses with one line that says what differs.

Physics are another matter: gymnasium's envs run plain MuJoCo (exact capsule masses, no
``d4rl_compat``) and Walker2d-v5 its own XML (right-foot friction 1.9 instead of 0.9). That
changes no layout, so such data maps, and the differences are recorded with the dataset
(``minari_physics``) and its ``d4rl_compat`` flag says which masses replay it (dvdf's
replay-check uses that flag).

No MuJoCo import here: this is pure data about layouts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import numpy as np

from dvdf.envs.catalogue import ROBOTS, get_domain
from dvdf.errors import DvdfError

# gymnasium env name (without version) -> dvdf robot
GYM_ROBOTS = {"Hopper": "hopper", "HalfCheetah": "halfcheetah", "Walker2d": "walker2d", "Ant": "ant"}
ANT_PHYSICAL_DIMS = 27          # qpos[2:] (13) + qvel (14)
ANT_V5_CONTACT_DIMS = 78        # cfrc_ext of the 13 bodies except the world body, 6 each
_ENV_ID = re.compile(r"^(?:(?P<namespace>[\w:.-]+)/)?(?P<name>[\w:.-]+?)(?:-v(?P<version>\d+))?$")


@dataclass(frozen=True)
class LayoutMapping:
    """How a recorded observation becomes a dvdf one.

    ``domain``: the dvdf domain whose layout the data is in (None: an env dvdf does not know;
    the arrays are used as recorded). ``pad_zeros``: zeros appended to every observation (ant:
    84). ``d4rl_compat``: whether the data's physics used old-MuJoCo masses. ``physics``: what
    differs from the dvdf domain's simulator, for people reading the metadata.
    """

    domain: Optional[str]
    env_id: Optional[str]
    pad_zeros: int = 0
    d4rl_compat: Optional[bool] = None
    physics: tuple[str, ...] = field(default_factory=tuple)

    def apply(self, observations: np.ndarray) -> np.ndarray:
        if not self.pad_zeros:
            return observations
        pad = np.zeros((len(observations), self.pad_zeros), dtype=observations.dtype)
        return np.concatenate((observations, pad), axis=1)


def parse_env_id(env_id: str) -> tuple[Optional[str], str, Optional[int]]:
    """``namespace/Name-vN`` -> (namespace, Name, N); namespace and version may be absent."""
    match = _ENV_ID.match(env_id)
    if not match:
        return None, env_id, None
    version = match.group("version")
    return match.group("namespace"), match.group("name"), None if version is None else int(version)


def map_minari_env(where: str, env_id: Optional[str], env_kwargs: Mapping[str, Any],
                   obs_dim: int, act_dim: int) -> LayoutMapping:
    """The :class:`LayoutMapping` of data recorded in ``env_id``; DvdfError where it is not exact."""
    if env_id is None:
        return LayoutMapping(domain=None, env_id=None)
    namespace, name, version = parse_env_id(env_id)
    if namespace == "dvdf":
        return _map_dvdf_domain(where, env_id, name, env_kwargs, obs_dim, act_dim)
    if namespace is None and name in GYM_ROBOTS:
        return _map_gym_robot(where, env_id, GYM_ROBOTS[name], version, env_kwargs, obs_dim, act_dim)
    return LayoutMapping(domain=None, env_id=env_id)


def _map_dvdf_domain(where: str, env_id: str, name: str, kwargs: Mapping[str, Any],
                     obs_dim: int, act_dim: int) -> LayoutMapping:
    spec = get_domain(kwargs.get("domain", name))
    if (obs_dim, act_dim) != (spec.obs_dim, spec.act_dim):
        raise DvdfError(f"{where}: recorded in {env_id} but observations/actions have {obs_dim}/{act_dim} "
                        f"dims, domain '{spec.name}' has {spec.obs_dim}/{spec.act_dim}")
    return LayoutMapping(domain=spec.name, env_id=env_id, d4rl_compat=bool(kwargs.get("d4rl_compat", True)))


def _map_gym_robot(where: str, env_id: str, robot_name: str, version: Optional[int],
                   kwargs: Mapping[str, Any], obs_dim: int, act_dim: int) -> LayoutMapping:
    robot = ROBOTS[robot_name]
    head = f"{where}: recorded in {env_id}"
    if kwargs.get("exclude_current_positions_from_observation", True) is False:
        skipped = "x and y positions" if robot_name == "ant" else "x position"
        raise DvdfError(f"{head} with exclude_current_positions_from_observation=False: observations "
                        f"include the {skipped}, which dvdf's {robot_name} layout leaves out")
    frame_skip = kwargs.get("frame_skip", robot.frame_skip)
    if frame_skip != robot.frame_skip:
        raise DvdfError(f"{head} with frame_skip {frame_skip}: one step is {frame_skip} physics steps, "
                        f"dvdf's {robot_name} takes {robot.frame_skip}")
    if act_dim != robot.act_dim:
        raise DvdfError(f"{head}: actions have {act_dim} dims, dvdf's {robot_name} has {robot.act_dim}")
    pad = 0
    if robot_name == "ant":
        if obs_dim == ANT_PHYSICAL_DIMS:      # include_cfrc_ext_in_observation=False
            pad = robot.obs_dim - ANT_PHYSICAL_DIMS
        elif obs_dim == ANT_PHYSICAL_DIMS + ANT_V5_CONTACT_DIMS:
            raise DvdfError(f"{head}: observations have {obs_dim} dims ({ANT_PHYSICAL_DIMS} positions and "
                            f"velocities + {ANT_V5_CONTACT_DIMS} contact forces); dvdf's ant layout has "
                            f"{robot.obs_dim} ({ANT_PHYSICAL_DIMS} + 84 contact dims that are always 0), so "
                            "the contact forces have no place in it (data recorded with "
                            "include_cfrc_ext_in_observation=False maps exactly)")
        elif obs_dim != robot.obs_dim:
            raise DvdfError(f"{head}: observations have {obs_dim} dims, dvdf's ant layout has "
                            f"{robot.obs_dim} (or {ANT_PHYSICAL_DIMS} without contact forces)")
    elif obs_dim != robot.obs_dim:
        raise DvdfError(f"{head}: observations have {obs_dim} dims, dvdf's {robot_name} layout has "
                        f"{robot.obs_dim}")
    # gym v2/v3 ran on mujoco-py (old capsule masses, as D4RL); v4 and v5 on plain MuJoCo.
    old_mujoco = version is not None and version <= 3
    physics = [] if old_mujoco else ["plain MuJoCo masses (no d4rl_compat)"]
    xml_file = kwargs.get("xml_file")
    v5 = version is not None and version >= 5
    if robot_name == "walker2d" and v5 and xml_file in (None, "walker2d_v5.xml"):
        physics.append("walker2d_v5.xml: right foot friction 1.9 (dvdf's walker2d: 0.9)")
    elif xml_file is not None and xml_file != robot.asset:
        physics.append(f"xml_file {xml_file} (dvdf's {robot_name}: {robot.asset})")
    if robot_name == "ant" and v5 and kwargs.get("contact_cost_weight", 5e-4):
        physics.append("rewards include Ant-v5's contact cost")
    return LayoutMapping(domain=robot_name, env_id=env_id, pad_zeros=pad, d4rl_compat=old_mujoco,
                         physics=tuple(physics))
