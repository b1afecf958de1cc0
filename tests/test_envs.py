"""Domain catalogue: every domain builds and steps; each shift changes exactly what it should."""

from __future__ import annotations

import json
import os
import pickle
import re
import time
from pathlib import Path

import gymnasium
import mujoco
import numpy as np
import pytest

from dvdf.cli import main
from dvdf.envs import build_model, get_domain, list_domains, make_env, make_vector_env, normalized_score
from dvdf.envs.catalogue import ROBOTS
from dvdf.envs.xml_edits import stock_xml_path
from dvdf.errors import DvdfError

ALL = [spec.name for spec in list_domains()]
DEG = np.pi / 180.0

# Model arrays a shift may touch. A family's test states which of them must change; all the
# others must stay bit-for-bit equal to the original robot's.
DYNAMICS_FIELDS = ("jnt_range", "jnt_pos", "jnt_stiffness", "dof_damping", "dof_armature",
                   "actuator_gear", "actuator_ctrlrange", "geom_friction", "geom_type", "geom_size",
                   "geom_pos", "geom_quat", "body_pos", "body_quat", "body_mass", "body_ipos",
                   "body_inertia", "body_iquat", "qpos0", "opt.gravity", "opt.timestep",
                   "opt.integrator")
MASS_FIELDS = {"body_mass", "body_ipos", "body_inertia", "body_iquat"}
GEOMETRY_FIELDS = {"geom_size", "geom_pos", "geom_quat", "body_pos", "jnt_pos"} | MASS_FIELDS


def _field(model: mujoco.MjModel, field: str) -> np.ndarray:
    obj = model
    for part in field.split("."):
        obj = getattr(obj, part)
    return np.atleast_1d(np.asarray(obj, dtype=np.float64))


def changed_fields(a: mujoco.MjModel, b: mujoco.MjModel) -> set:
    return {f for f in DYNAMICS_FIELDS
            if _field(a, f).shape != _field(b, f).shape or not np.allclose(_field(a, f), _field(b, f),
                                                                             rtol=0, atol=1e-12)}


def _id(model, kind, name) -> int:
    index = mujoco.mj_name2id(model, kind, name)
    assert index >= 0, name
    return index


def joint_range(model, name) -> np.ndarray:
    return model.jnt_range[_id(model, mujoco.mjtObj.mjOBJ_JOINT, name)]


def at_rest(model):
    data = mujoco.MjData(model)
    mujoco.mj_kinematics(model, data)
    return data


def capsule(model, data, name, relative_to_body=None):
    """(end_a, end_b, radius) of a capsule at qpos0, optionally relative to a body's origin."""
    g = _id(model, mujoco.mjtObj.mjOBJ_GEOM, name)
    axis = data.geom_xmat[g].reshape(3, 3)[:, 2] * model.geom_size[g, 1]
    origin = 0.0 if relative_to_body is None else data.xpos[_id(model, mujoco.mjtObj.mjOBJ_BODY,
                                                                relative_to_body)]
    return data.geom_xpos[g] - axis - origin, data.geom_xpos[g] + axis - origin, model.geom_size[g, 0]


def assert_segment(ends, start, end, radius):
    a, b, r = ends
    if not np.allclose(a, start, atol=1e-9):        # fromto direction is not observable
        a, b = b, a
    np.testing.assert_allclose(a, start, atol=1e-9)
    np.testing.assert_allclose(b, end, atol=1e-9)
    assert r == pytest.approx(radius, abs=1e-12)


def body_offset(model, data, body, parent):
    ids = [_id(model, mujoco.mjtObj.mjOBJ_BODY, n) for n in (body, parent)]
    return data.xpos[ids[0]] - data.xpos[ids[1]]


def anchor(model, data, joint):
    return data.xanchor[_id(model, mujoco.mjtObj.mjOBJ_JOINT, joint)]


# ----------------------------------------------------------------------------- catalogue

def test_catalogue_has_92_domains_in_documented_families():
    specs = list_domains()
    assert len(specs) == len({s.name for s in specs}) == 92
    count = lambda pred: sum(1 for s in specs if pred(s))  # noqa: E731
    assert count(lambda s: s.family == "original") == 4
    assert count(lambda s: s.family in ("kinematic", "morph") and s.level is None) == 8
    assert count(lambda s: s.level is not None) == 48
    assert count(lambda s: s.family == "gravity") == count(lambda s: s.family == "friction") == 16
    pattern = re.compile(r"^(halfcheetah|hopper|walker2d|ant)(-(kinematic|morph)(-[a-z]+-(easy|medium|hard))?"
                         r"|-(gravity|friction)-(0\.1|0\.5|2\.0|5\.0))?$")
    assert all(pattern.match(s.name) for s in specs)
    spec = get_domain("ant-morph-halflegs-easy")
    assert (spec.robot, spec.family, spec.variant, spec.level) == ("ant", "morph", "halflegs", "easy")
    assert get_domain("hopper-kinematic-footjnt-hard").scale == 0.2
    assert get_domain("hopper-friction-2.0").scale == 2.0


@pytest.mark.parametrize("bad, expected", [
    ("hoper", r"unknown robot 'hoper' \(robots: halfcheetah, hopper, walker2d, ant\); did you mean hopper"),
    ("hopper-wind", r"unknown shift 'wind' \(shifts: kinematic, morph, gravity, friction\)"),
    ("hopper-kinematic-footjnt-extreme", r"variant in \{footjnt, legjnt\} and a level in \{easy, medium, hard\}"),
    ("ant-morph-legs-easy", r"variant in \{alllegs, halflegs\}"),
    ("walker2d-gravity-3.0", r"gravity scales are 0.1, 0.5, 2.0, 5.0"),
])
def test_unknown_names_list_the_valid_choices(bad, expected):
    with pytest.raises(DvdfError, match=expected) as info:
        get_domain(bad)
    assert "dvdf domains" in str(info.value)


def test_normalized_score_uses_d4rl_for_originals_odrl_for_shifts():
    assert normalized_score("hopper", 3234.3) == pytest.approx(100.0)
    assert normalized_score("hopper", -20.272305) == pytest.approx(0.0)
    assert normalized_score("hopper-kinematic", -26.336) == pytest.approx(0.0)
    assert normalized_score("ant-morph", 5139.832) == pytest.approx(100.0)
    assert normalized_score("ant", 3879.7) == pytest.approx(100.0)
    scores = normalized_score("walker2d-friction-0.5", np.array([10.0795, 4592.3]))
    np.testing.assert_allclose(scores, [0.0, 100.0])
    assert normalized_score("hopper", 50.0, ref_min=0.0, ref_max=100.0) == pytest.approx(50.0)
    with pytest.raises(DvdfError, match="ref_max"):
        normalized_score("hopper", 1.0, ref_min=5.0, ref_max=5.0)


# ----------------------------------------------------------------------------- every domain

@pytest.mark.parametrize("name", ALL)
def test_every_domain_builds_resets_and_steps(name):
    spec = get_domain(name)
    env = make_env(name)
    obs, _ = env.reset(seed=0)
    assert obs.shape == env.observation_space.shape == (spec.obs_dim,)
    assert env.action_space.shape == (spec.act_dim,)
    assert env.unwrapped.frame_skip == spec.frame_skip == ROBOTS[spec.robot].frame_skip
    for _ in range(3):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        assert obs.shape == (spec.obs_dim,) and np.isfinite(obs).all() and np.isfinite(reward)
    if spec.robot == "ant":                       # D4RL-era contact dims are exactly zero
        assert not obs[27:].any()


def test_documented_observation_dims_and_time_limit():
    assert {r: get_domain(r).obs_dim for r in ROBOTS} == {"halfcheetah": 17, "hopper": 11, "walker2d": 17,
                                                         "ant": 111}
    env = make_env("halfcheetah-gravity-2.0")
    env.reset(seed=1)
    steps = 0
    truncated = False
    while not truncated:
        _, _, terminated, truncated, _ = env.step(np.zeros(6, dtype=np.float32))
        steps += 1
        assert not terminated
    assert steps == 1000


def test_observation_layout_is_gym_v3():
    env = make_env("hopper")
    env.reset(seed=0)
    data = env.unwrapped.data
    data.qvel[:] = [0.5, -20.0, 3.0, 11.0, -1.0, 0.0]
    obs = env.unwrapped._get_obs()
    np.testing.assert_array_equal(obs[:5], data.qpos[1:])
    np.testing.assert_array_equal(obs[5:], [0.5, -10.0, 3.0, 10.0, -1.0, 0.0])
    ant = make_env("ant").unwrapped
    ant.reset(seed=0)
    obs = ant._get_obs()
    np.testing.assert_array_equal(obs[:13], ant.data.qpos[2:])
    np.testing.assert_array_equal(obs[13:27], ant.data.qvel)


def test_gymnasium_registration_and_pickling():
    env = gymnasium.make("dvdf/hopper-kinematic-v0")
    assert env.spec.max_episode_steps == 1000
    obs, _ = env.reset(seed=0)
    assert obs.shape == (11,)
    np.testing.assert_allclose(joint_range(env.unwrapped.model, "thigh_joint"), [-0.15 * DEG, 0.0])
    plain = gymnasium.make("dvdf/hopper-v0", d4rl_compat=False)
    assert plain.unwrapped.model.body_mass.sum() == pytest.approx(15.82, abs=0.01)
    clone = pickle.loads(pickle.dumps(make_env("walker2d-morph-leg-hard").unwrapped))
    assert clone.domain.name == "walker2d-morph-leg-hard" and clone.d4rl_compat
    with pytest.raises(DvdfError, match="xml_file"):
        make_env("hopper", xml_file="hopper.xml")


def test_vector_env_sync_and_async():
    for mode in ("auto", "async"):
        envs = make_vector_env("hopper-gravity-0.5", 2, vectorization=mode)
        try:
            obs, _ = envs.reset(seed=0)
            assert obs.shape == (2, 11)
            obs, rewards, *_ = envs.step(np.zeros((2, 3), dtype=np.float32))
            assert obs.shape == (2, 11) and rewards.shape == (2,)
        finally:
            envs.close()
    assert isinstance(make_vector_env("ant", 2), gymnasium.vector.SyncVectorEnv)
    with pytest.raises(DvdfError, match="num_envs"):
        make_vector_env("ant", 0)


def test_rebuilding_a_domain_is_fast_and_xml_stays_out_of_the_repo():
    make_env("walker2d-morph-torso-medium")                # first time: edit + compile + write
    start = time.perf_counter()
    env = make_env("walker2d-morph-torso-medium")
    env.reset(seed=0)
    assert time.perf_counter() - start < 0.3
    path = Path(env.unwrapped.fullpath)
    assert path.exists() and path.suffix == ".xml"
    repo = Path(__file__).resolve().parents[1]
    assert repo not in path.resolve().parents
    assert not list((repo / "dvdf").rglob("*.xml"))
    assert build_model("hopper") is not build_model("hopper")   # callers get private copies


# ----------------------------------------------------------------------------- d4rl_compat

def test_d4rl_compat_masses():
    assert build_model("hopper").body_mass.sum() == pytest.approx(15.27, abs=0.01)
    assert build_model("hopper", d4rl_compat=False).body_mass.sum() == pytest.approx(15.82, abs=0.01)
    assert build_model("walker2d").body_mass.sum() == pytest.approx(22.70, abs=0.01)
    assert build_model("walker2d", d4rl_compat=False).body_mass.sum() == pytest.approx(23.68, abs=0.01)
    assert build_model("ant").body_mass.sum() == pytest.approx(0.879, abs=0.001)
    assert build_model("ant", d4rl_compat=False).body_mass.sum() == pytest.approx(0.911, abs=0.001)
    for compat in (True, False):
        assert build_model("halfcheetah", compat).body_mass.sum() == pytest.approx(14.0, abs=1e-9)
    # halfcheetah keeps 14 kg but redistributed
    assert not np.allclose(build_model("halfcheetah").body_mass, build_model("halfcheetah", False).body_mass)


def test_d4rl_compat_is_the_old_cylinder_rule_and_touches_only_masses():
    model = build_model("hopper")
    leg = _id(model, mujoco.mjtObj.mjOBJ_BODY, "leg")     # one capsule: r 0.04, half-length 0.25
    r, h = 0.04, 0.25 + 0.04 / 2
    mass = 1000.0 * np.pi * r * r * 2 * h
    assert model.body_mass[leg] == pytest.approx(mass, rel=1e-12)
    np.testing.assert_allclose(np.sort(model.body_inertia[leg]),
                               np.sort([mass * r * r / 2, *[mass * (3 * r * r + 4 * h * h) / 12] * 2]),
                               rtol=1e-10)
    for name in ("hopper", "walker2d", "ant", "halfcheetah-morph-thigh-hard"):
        assert changed_fields(build_model(name), build_model(name, False)) <= MASS_FIELDS
    # Derived constants follow the new masses (mj_setConst ran).
    compat, plain = build_model("hopper"), build_model("hopper", False)
    assert compat.body_subtreemass[1] == pytest.approx(compat.body_mass[1:].sum())
    assert not np.allclose(compat.dof_invweight0, plain.dof_invweight0)


def test_original_domains_compile_like_the_stock_xml():
    for robot in ("hopper", "walker2d", "ant"):
        stock = mujoco.MjModel.from_xml_path(stock_xml_path(robot))
        assert changed_fields(build_model(robot, False), stock) == set()
    # walker2d uses walker2d.xml: right foot friction 0.9, not v5's 1.9
    model = build_model("walker2d", False)
    assert model.geom_friction[_id(model, mujoco.mjtObj.mjOBJ_GEOM, "foot_geom"), 0] == pytest.approx(0.9)


# ----------------------------------------------------------------------------- shift families

def _kinematic_expectations():
    """(domain, {joint: expected range in the model's units}) for every kinematic domain."""
    out = []
    odrl_joints = {
        ("hopper", "footjnt"): ["foot_joint"], ("hopper", "legjnt"): ["leg_joint"],
        ("walker2d", "footjnt"): ["foot_joint", "foot_left_joint"],
        ("walker2d", "thighjnt"): ["thigh_joint", "thigh_left_joint"],
        ("halfcheetah", "footjnt"): ["bfoot", "ffoot"], ("halfcheetah", "thighjnt"): ["bthigh", "fthigh"],
        ("ant", "hipjnt"): ["hip_1", "hip_2", "hip_3", "hip_4"],
    }
    for spec in list_domains():
        if spec.family != "kinematic":
            continue
        stock = build_model(spec.robot, False)
        if spec.variant == "anklejnt":
            s = spec.scale
            expected = {"ankle_1": [30, 30 + 40 * s], "ankle_2": [-30 - 40 * s, -30],
                        "ankle_3": [-30 - 40 * s, -30], "ankle_4": [30, 30 + 40 * s]}
            expected = {j: np.array(v) * DEG for j, v in expected.items()}
        elif spec.variant is not None:
            expected = {j: joint_range(stock, j) * spec.scale for j in odrl_joints[(spec.robot, spec.variant)]}
        else:
            expected = {
                "hopper": {"thigh_joint": np.array([-0.15, 0]) * DEG, "foot_joint": np.array([-18, 18]) * DEG},
                "walker2d": {"foot_joint": np.array([-0.45, 0.45]) * DEG},
                "halfcheetah": {"bthigh": np.array([-0.0052, 0.0105])},
                "ant": {"hip_1": np.array([-0.3, 0.3]) * DEG, "hip_2": np.array([-0.3, 0.3]) * DEG},
            }[spec.robot]
        out.append((spec.name, expected))
    return out


@pytest.mark.parametrize("name, expected", _kinematic_expectations(), ids=lambda v: v if isinstance(v, str) else "")
def test_kinematic_shift_scales_exactly_the_intended_joint_ranges(name, expected):
    spec = get_domain(name)
    shifted, stock = build_model(name, False), build_model(spec.robot, False)
    assert changed_fields(shifted, stock) == {"jnt_range"}
    for joint in range(stock.njnt):
        joint_name = mujoco.mj_id2name(stock, mujoco.mjtObj.mjOBJ_JOINT, joint)
        want = expected.get(joint_name, stock.jnt_range[joint])
        np.testing.assert_allclose(shifted.jnt_range[joint], want, rtol=1e-12, atol=1e-15, err_msg=joint_name)
    # ODRL level values from docs/DOMAINS.md
    if name == "hopper-kinematic-footjnt-hard":
        np.testing.assert_allclose(joint_range(shifted, "foot_joint"), np.array([-9, 9]) * DEG)
    if name == "ant-kinematic-anklejnt-medium":
        np.testing.assert_allclose(joint_range(shifted, "ankle_1"), np.array([30, 50]) * DEG)


@pytest.mark.parametrize("name", [s.name for s in list_domains() if s.family in ("gravity", "friction")])
def test_gravity_and_friction_scale_only_their_parameter(name):
    spec = get_domain(name)
    shifted, stock = build_model(name, False), build_model(spec.robot, False)
    if spec.family == "gravity":
        assert changed_fields(shifted, stock) == {"opt.gravity"}
        np.testing.assert_allclose(shifted.opt.gravity, stock.opt.gravity * spec.scale, rtol=1e-12)
        assert shifted.opt.gravity[2] == pytest.approx(-9.81 * spec.scale)
    else:
        assert changed_fields(shifted, stock) == {"geom_friction"}
        np.testing.assert_allclose(shifted.geom_friction, stock.geom_friction * spec.scale, rtol=1e-12)


def _assert_morph_only_geometry(name):
    spec = get_domain(name)
    shifted, stock = build_model(name, False), build_model(spec.robot, False)
    changed = changed_fields(shifted, stock)
    assert changed and changed <= GEOMETRY_FIELDS, changed
    return shifted, at_rest(shifted)


@pytest.mark.parametrize("level, k", [("easy", 0.8), ("medium", 0.6), ("hard", 0.4)])
def test_hopper_morph_foot(level, k):
    model, data = _assert_morph_only_geometry(f"hopper-morph-foot-{level}")
    assert_segment(capsule(model, data, "foot_geom"), (-0.13 * k, 0, 0.1), (0.26 * k, 0, 0.1), 0.06 * k)
    assert_segment(capsule(model, data, "leg_geom"), (0, 0, 0.1), (0, 0, 0.6), 0.04)   # untouched


@pytest.mark.parametrize("robot", ["hopper", "walker2d"])
@pytest.mark.parametrize("level, top, radius", [("easy", 1.53, 0.075), ("medium", 1.69, 0.10), ("hard", 1.85, 0.125)])
def test_torso_morph_grows_upward(robot, level, top, radius):
    model, data = _assert_morph_only_geometry(f"{robot}-morph-torso-{level}")
    assert_segment(capsule(model, data, "torso_geom"), (0, 0, 1.05), (0, 0, top), radius)
    assert_segment(capsule(model, data, "thigh_geom"), (0, 0, 0.6), (0, 0, 1.05), 0.05)


def test_hopper_paper_morph():
    model, data = _assert_morph_only_geometry("hopper-morph")
    assert_segment(capsule(model, data, "torso_geom"), (0, 0, 1.05), (0, 0, 1.45), 0.125)
    assert_segment(capsule(model, data, "thigh_geom"), (0, 0, 0.6), (0, 0, 1.05), 0.04)


@pytest.mark.parametrize("level, knee", [("easy", 0.5), ("medium", 0.35), ("hard", 0.2)])
def test_walker_morph_leg_moves_both_knees(level, knee):
    model, data = _assert_morph_only_geometry(f"walker2d-morph-leg-{level}")
    for side in ("", "_left"):
        assert_segment(capsule(model, data, f"thigh{side}_geom"), (0, 0, 1.05), (0, 0, knee), 0.05)
        assert_segment(capsule(model, data, f"leg{side}_geom"), (0, 0, knee), (0, 0, 0.1), 0.04)
        np.testing.assert_allclose(anchor(model, data, f"leg{side}_joint"), (0, 0, knee), atol=1e-12)


def test_walker_paper_morph_right_leg_only():
    model, data = _assert_morph_only_geometry("walker2d-morph")
    assert_segment(capsule(model, data, "thigh_geom"), (0, 0, 1.05), (0, 0, 1.045), 0.05)
    assert_segment(capsule(model, data, "leg_geom"), (0, 0, 1.045), (0, 0, 0.3), 0.04)
    assert_segment(capsule(model, data, "foot_geom"), (0, 0, 0.3), (0.2, 0, 0.3), 0.06)
    np.testing.assert_allclose(anchor(model, data, "leg_joint"), (0, 0, 1.045), atol=1e-12)
    np.testing.assert_allclose(anchor(model, data, "foot_joint"), (0, 0, 0.3), atol=1e-12)
    assert_segment(capsule(model, data, "leg_left_geom"), (0, 0, 0.6), (0, 0, 0.1), 0.04)
    assert_segment(capsule(model, data, "foot_left_geom"), (0, 0, 0.1), (0.2, 0, 0.1), 0.06)


@pytest.mark.parametrize("level, back, front", [("easy", (0.11, -0.11), (-0.09, -0.10)),
                                                ("medium", (0.08, -0.08), (-0.07, -0.08)),
                                                ("hard", (0.02, -0.02), (-0.04, -0.05))])
def test_halfcheetah_morph_thigh(level, back, front):
    model, data = _assert_morph_only_geometry(f"halfcheetah-morph-thigh-{level}")
    for thigh, shin, foot, end, shin_end in (("bthigh", "bshin", "bfoot", back, (-0.13, 0, -0.15)),
                                             ("fthigh", "fshin", "ffoot", front, (0.11, 0, -0.13))):
        end3 = (end[0], 0, end[1])
        assert_segment(capsule(model, data, thigh, thigh), (0, 0, 0), end3, 0.046)
        np.testing.assert_allclose(body_offset(model, data, shin, thigh), end3, atol=1e-12)
        assert_segment(capsule(model, data, shin, shin), (0, 0, 0), shin_end, 0.046)
        np.testing.assert_allclose(body_offset(model, data, foot, shin), shin_end, atol=1e-12)


@pytest.mark.parametrize("level, h", [("easy", 0.4), ("medium", 0.25), ("hard", 0.1)])
def test_halfcheetah_morph_torso(level, h):
    model, data = _assert_morph_only_geometry(f"halfcheetah-morph-torso-{level}")
    assert_segment(capsule(model, data, "torso", "torso"), (-h, 0, 0), (h, 0, 0), 0.046)
    head = _id(model, mujoco.mjtObj.mjOBJ_GEOM, "head")
    np.testing.assert_allclose(model.geom_pos[head], (h + 0.1, 0, 0.1), atol=1e-12)
    np.testing.assert_allclose(body_offset(model, data, "bthigh", "torso"), (-h, 0, 0), atol=1e-12)
    np.testing.assert_allclose(body_offset(model, data, "fthigh", "torso"), (h, 0, 0), atol=1e-12)


def test_halfcheetah_paper_morph():
    model, data = _assert_morph_only_geometry("halfcheetah-morph")
    assert_segment(capsule(model, data, "bthigh", "bthigh"), (0, 0, 0), (-1e-4, 0, -1e-4), 0.046)
    assert_segment(capsule(model, data, "fthigh", "fthigh"), (0, 0, 0), (1e-4, 0, 1e-4), 0.046)
    assert_segment(capsule(model, data, "bshin", "bshin"), (0, 0, 0), (-0.13, 0, -0.15), 0.046)
    assert_segment(capsule(model, data, "fshin", "fshin"), (0, 0, 0), (0.01, 0, -0.16), 0.046)
    np.testing.assert_allclose(body_offset(model, data, "bfoot", "bshin"), (-0.13, 0, -0.15), atol=1e-12)
    np.testing.assert_allclose(body_offset(model, data, "ffoot", "fshin"), (0.01, 0, -0.16), atol=1e-12)
    assert model.geom_size[_id(model, mujoco.mjtObj.mjOBJ_GEOM, "bfoot"), 1] == pytest.approx(0.07)


ANT_LEGS = {"left_ankle_geom": (1, 1), "right_ankle_geom": (-1, 1),
            "third_ankle_geom": (-1, -1), "fourth_ankle_geom": (1, -1)}


@pytest.mark.parametrize("name, shortened, length", [
    ("ant-morph", ("left_ankle_geom", "right_ankle_geom"), 0.1),
    *[(f"ant-morph-alllegs-{lv}", tuple(ANT_LEGS), L) for lv, L in (("easy", .32), ("medium", .2), ("hard", .08))],
    *[(f"ant-morph-halflegs-{lv}", ("left_ankle_geom", "right_ankle_geom"), L)
      for lv, L in (("easy", .32), ("medium", .2), ("hard", .08))],
])
def test_ant_morph_lower_legs(name, shortened, length):
    model, data = _assert_morph_only_geometry(name)
    for geom, (sx, sy) in ANT_LEGS.items():
        L = length if geom in shortened else 0.4
        start = data.xpos[model.geom_bodyid[_id(model, mujoco.mjtObj.mjOBJ_GEOM, geom)]]
        assert_segment(capsule(model, data, geom), start, start + (sx * L, sy * L, 0), 0.08)


def test_morph_domains_all_keep_joint_limits_friction_and_gravity():
    for spec in list_domains():
        if spec.family == "morph":
            changed = changed_fields(build_model(spec.name, False), build_model(spec.robot, False))
            assert changed <= GEOMETRY_FIELDS, (spec.name, changed)


# ----------------------------------------------------------------------------- CLI

def test_cli_domains_json_is_one_object(capfd):
    assert main(["domains", "--json"]) == 0
    out, err = capfd.readouterr()
    payload = json.loads(out)                       # exactly one JSON document on stdout
    assert payload["count"] == 92 and len(payload["domains"]) == 92
    row = next(d for d in payload["domains"] if d["name"] == "ant-morph-halflegs-easy")
    assert row == {**row, "robot": "ant", "family": "morph", "variant": "halflegs", "level": "easy",
                   "obs_dim": 111, "act_dim": 8}


def test_cli_domains_table(capsys):
    assert main(["domains"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:5] == ["name", "robot", "family", "variant", "level"]
    assert lines[-1] == "92 domains" and len(lines) == 94
    assert any(line.split()[0] == "hopper-gravity-0.5" for line in lines[1:-1])


def test_cli_unknown_domain_exits_2_with_one_error_line(capsys, tmp_path):
    assert main(["replay-check", str(tmp_path / "x.h5"), "--domain", "hopper-kinematik"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown domain 'hopper-kinematik'")
    assert "hopper-kinematic" in lines[0]


def test_cache_dir_override(tmp_path, monkeypatch):
    from dvdf.envs import factory

    monkeypatch.setenv("DVDF_CACHE_DIR", str(tmp_path))
    assert factory.cache_dir() == tmp_path
    monkeypatch.delenv("DVDF_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert factory.cache_dir() == tmp_path / "xdg" / "dvdf"
    assert os.path.basename(stock_xml_path("walker2d")) == "walker2d.xml"
