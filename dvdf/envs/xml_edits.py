"""Shift edits: the stock gymnasium XML of a robot, parsed and edited for one domain.

Every shift in docs/DOMAINS.md is an edit of the XML that ships inside the installed gymnasium
package; nothing here is a copy of an XML file. Geometry for hopper and walker2d is given in
world coordinates (the frame of the original gym XMLs, where the shifts were specified) and
converted to the local frames of gymnasium's XMLs; halfcheetah and ant use local coordinates.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import lru_cache
from typing import Dict, Optional, Sequence

import numpy as np

from dvdf.envs.catalogue import ROBOTS, DomainSpec

MUJOCO_DEFAULT_FRICTION = (1.0, 0.005, 0.0001)   # MuJoCo's built-in geom friction
MUJOCO_DEFAULT_GRAVITY = (0.0, 0.0, -9.81)
MUJOCO_DEFAULT_DENSITY = 1000.0

# ODRL morph levels (easy, medium, hard); see docs/DOMAINS.md, "ODRL levels".
HOPPER_FOOT_SCALE = {"easy": 0.8, "medium": 0.6, "hard": 0.4}            # k
TORSO_TOP_AND_RADIUS = {"easy": (1.53, 0.075), "medium": (1.69, 0.10), "hard": (1.85, 0.125)}
WALKER_KNEE_Z = {"easy": 0.5, "medium": 0.35, "hard": 0.2}
CHEETAH_BACK_THIGH_END = {"easy": (0.11, -0.11), "medium": (0.08, -0.08), "hard": (0.02, -0.02)}
CHEETAH_FRONT_THIGH_END = {"easy": (-0.09, -0.10), "medium": (-0.07, -0.08), "hard": (-0.04, -0.05)}
CHEETAH_TORSO_HALF_LENGTH = {"easy": 0.4, "medium": 0.25, "hard": 0.1}
CHEETAH_LIMB_RADIUS = 0.046
ANT_LOWER_LEG_END = {"easy": 0.32, "medium": 0.2, "hard": 0.08}          # L
ANT_FRONT_LOWER_LEGS = ("left_ankle_geom", "right_ankle_geom")
ANT_ALL_LOWER_LEGS = ANT_FRONT_LOWER_LEGS + ("third_ankle_geom", "fourth_ankle_geom")
ANT_ANKLE_FIXED_END = 30.0   # degrees; ODRL ankle levels shrink the range towards this end


def stock_xml_path(robot: str) -> str:
    """Path of the robot's XML inside the installed gymnasium package."""
    import gymnasium

    return os.path.join(os.path.dirname(gymnasium.__file__), "envs", "mujoco", "assets",
                        ROBOTS[robot].asset)


@lru_cache(maxsize=None)
def _stock_xml_bytes(robot: str) -> bytes:
    with open(stock_xml_path(robot), "rb") as handle:
        return handle.read()


@dataclass(frozen=True)
class EditedXml:
    """An edited model description.

    ``total_mass``: the compiler's settotalmass, removed from the XML (MuJoCo 4 deprecates it
    and prints a warning on stdout) and applied after compiling with ``mj_setTotalmass``.
    ``densities``: geom name -> density, for the d4rl_compat mass recomputation.
    """

    text: str
    total_mass: Optional[float]
    densities: Dict[str, float]


def edited_xml(spec: DomainSpec) -> EditedXml:
    """Parse the robot's stock XML, apply the domain's shift, return the result."""
    root = ET.fromstring(_stock_xml_bytes(spec.robot))
    _check_single_default_class(root)
    total_mass = _pop_settotalmass(root)
    SHIFTS[spec.robot](root, spec)
    return EditedXml(ET.tostring(root, encoding="unicode"), total_mass, _geom_densities(root))


# ----------------------------------------------------------------------------- element helpers

def _find(root: ET.Element, tag: str, name: str) -> ET.Element:
    element = root.find(f".//{tag}[@name='{name}']")
    if element is None:
        raise KeyError(f"no <{tag} name='{name}'> in the stock XML")
    return element


def _floats(text: str) -> np.ndarray:
    return np.array([float(v) for v in text.split()], dtype=np.float64)


def _fmt(values: Sequence[float]) -> str:
    return " ".join(repr(float(v)) for v in values)


def _check_single_default_class(root: ET.Element) -> None:
    # Friction/density edits reason about one top-level default class; fail loudly otherwise.
    for default in root.iter("default"):
        if default.find("default") is not None or default.get("class"):
            raise NotImplementedError("nested default classes are not supported by the shift edits")


def _pop_settotalmass(root: ET.Element) -> Optional[float]:
    compiler = root.find("compiler")
    if compiler is None or compiler.get("settotalmass") is None:
        return None
    return float(compiler.attrib.pop("settotalmass"))


def _default_geom(root: ET.Element) -> ET.Element:
    default = root.find("default")
    if default is None:
        default = ET.SubElement(root, "default")
    geom = default.find("geom")
    if geom is None:
        geom = ET.SubElement(default, "geom")
    return geom


def _geom_densities(root: ET.Element) -> Dict[str, float]:
    default_density = float(_default_geom(root).get("density", MUJOCO_DEFAULT_DENSITY))
    densities = {}
    for body in root.find("worldbody").iter("body"):
        for geom in body.findall("geom"):
            if geom.get("name") is None:
                raise ValueError("every robot geom needs a name for the mass recomputation")
            densities[geom.get("name")] = float(geom.get("density", default_density))
    return densities


def _body_origin(root: ET.Element, body: ET.Element) -> np.ndarray:
    """World position of a body frame (the robots' bodies carry no rotations)."""
    parents = {child: parent for parent in root.iter() for child in parent}
    origin = np.zeros(3)
    node = body
    while node.tag == "body":
        if any(node.get(key) for key in ("quat", "axisangle", "euler", "xyaxes", "zaxis")):
            raise NotImplementedError(f"rotated body {node.get('name')!r}")
        origin += _floats(node.get("pos", "0 0 0"))
        node = parents[node]
    return origin


def _owner_body(root: ET.Element, element: ET.Element) -> ET.Element:
    for body in root.iter("body"):
        if element in list(body):
            return body
    raise KeyError(f"{element.tag} {element.get('name')!r} is not inside a body")


def _set_capsule(geom: ET.Element, start, end, radius: float) -> None:
    """Make ``geom`` the capsule from ``start`` to ``end`` (local frame) with ``radius``."""
    for key in ("pos", "quat", "axisangle", "euler", "xyaxes", "zaxis"):
        geom.attrib.pop(key, None)
    geom.set("type", "capsule")
    geom.set("fromto", _fmt(list(start) + list(end)))
    geom.set("size", _fmt([radius]))


def _set_capsule_world(root: ET.Element, geom_name: str, start, end, radius: float) -> None:
    geom = _find(root, "geom", geom_name)
    origin = _body_origin(root, _owner_body(root, geom))
    _set_capsule(geom, np.asarray(start) - origin, np.asarray(end) - origin, radius)


def _set_joint_pos_world(root: ET.Element, joint_name: str, position) -> None:
    joint = _find(root, "joint", joint_name)
    origin = _body_origin(root, _owner_body(root, joint))
    joint.set("pos", _fmt(np.asarray(position) - origin))


def _set_radius(geom: ET.Element, radius: float) -> None:
    size = _floats(geom.get("size"))
    size[0] = radius
    geom.set("size", _fmt(size))


def _set_half_length(geom: ET.Element, half_length: float) -> None:
    if geom.get("fromto") is not None:
        raise ValueError("half length of a fromto capsule is set by its end points")
    size = _floats(geom.get("size"))
    geom.set("size", _fmt([size[0], half_length]))


def _scale_range(root: ET.Element, joint_name: str, factor: float) -> None:
    joint = _find(root, "joint", joint_name)
    joint.set("range", _fmt(_floats(joint.get("range")) * factor))


def _shrink_range_towards(root: ET.Element, joint_name: str, fixed_end: float, factor: float) -> None:
    """Keep the bound whose magnitude is ``fixed_end``; scale the range width by ``factor``."""
    joint = _find(root, "joint", joint_name)
    low, high = _floats(joint.get("range"))
    if np.isclose(abs(low), fixed_end):
        high = low + (high - low) * factor
    elif np.isclose(abs(high), fixed_end):
        low = high - (high - low) * factor
    else:
        raise ValueError(f"joint {joint_name!r} range has no end at +-{fixed_end}")
    joint.set("range", _fmt([low, high]))


def _set_body_pos(root: ET.Element, body_name: str, position) -> None:
    _find(root, "body", body_name).set("pos", _fmt(position))


def _scale_gravity(root: ET.Element, factor: float) -> None:
    option = root.find("option")
    if option is None:
        option = ET.SubElement(root, "option")
    gravity = _floats(option.get("gravity", _fmt(MUJOCO_DEFAULT_GRAVITY)))
    option.set("gravity", _fmt(gravity * factor))


def _scale_friction(root: ET.Element, factor: float) -> None:
    """Scale all three friction coefficients of every geom (floor included) by ``factor``.

    Geoms that give fewer than three numbers take the rest from the default class, which is
    scaled too, so every compiled coefficient ends up multiplied by ``factor``.
    """
    default = _default_geom(root)
    default.set("friction", _fmt(_floats(default.get("friction", _fmt(MUJOCO_DEFAULT_FRICTION))) * factor))
    for geom in root.find("worldbody").iter("geom"):
        if geom.get("friction") is not None:
            geom.set("friction", _fmt(_floats(geom.get("friction")) * factor))


def _apply_physics_shift(root: ET.Element, spec: DomainSpec) -> bool:
    if spec.family == "gravity":
        _scale_gravity(root, spec.scale)
    elif spec.family == "friction":
        _scale_friction(root, spec.scale)
    else:
        return spec.family == "original"
    return True


def _unknown(spec: DomainSpec) -> NotImplementedError:
    return NotImplementedError(f"no XML edit for domain {spec.name!r}")


# ----------------------------------------------------------------------------- per robot

def _torso_grows_upward(root: ET.Element, level: str) -> None:
    top, radius = TORSO_TOP_AND_RADIUS[level]
    _set_capsule_world(root, "torso_geom", (0, 0, 1.05), (0, 0, top), radius)


def _edit_hopper(root: ET.Element, spec: DomainSpec) -> None:
    if _apply_physics_shift(root, spec):
        return
    family, variant, level = spec.family, spec.variant, spec.level
    if family == "kinematic" and variant is None:        # paper: [-150,0] -> [-0.15,0]; +-45 -> +-18
        _scale_range(root, "thigh_joint", 0.001)
        _scale_range(root, "foot_joint", 0.4)
    elif family == "morph" and variant is None:          # paper: fat torso, thin thigh
        _set_radius(_find(root, "geom", "torso_geom"), 0.125)
        _set_radius(_find(root, "geom", "thigh_geom"), 0.04)
    elif family == "kinematic" and variant in ("footjnt", "legjnt"):
        _scale_range(root, {"footjnt": "foot_joint", "legjnt": "leg_joint"}[variant], spec.scale)
    elif family == "morph" and variant == "foot":
        k = HOPPER_FOOT_SCALE[level]
        _set_capsule_world(root, "foot_geom", (-0.13 * k, 0, 0.1), (0.26 * k, 0, 0.1), 0.06 * k)
    elif family == "morph" and variant == "torso":
        _torso_grows_upward(root, level)
    else:
        raise _unknown(spec)


def _walker_leg(root: ET.Element, side: str, knee_z: float, foot_z: float = 0.1) -> None:
    """Move one walker leg's knee to ``knee_z`` (and optionally its foot to ``foot_z``)."""
    _set_capsule_world(root, f"thigh{side}_geom", (0, 0, 1.05), (0, 0, knee_z), 0.05)
    _set_joint_pos_world(root, f"leg{side}_joint", (0, 0, knee_z))
    _set_capsule_world(root, f"leg{side}_geom", (0, 0, knee_z), (0, 0, foot_z), 0.04)


def _edit_walker2d(root: ET.Element, spec: DomainSpec) -> None:
    if _apply_physics_shift(root, spec):
        return
    family, variant, level = spec.family, spec.variant, spec.level
    if family == "kinematic" and variant is None:        # paper: right foot +-45 -> +-0.45
        _scale_range(root, "foot_joint", 0.01)
    elif family == "morph" and variant is None:          # paper: right leg, tiny thigh, foot at z 0.3
        knee_z, foot_z = 1.045, 0.3
        _walker_leg(root, "", knee_z, foot_z)
        _set_joint_pos_world(root, "foot_joint", (0, 0, foot_z))
        _set_capsule_world(root, "foot_geom", (0, 0, foot_z), (0.2, 0, foot_z), 0.06)
    elif family == "kinematic" and variant in ("footjnt", "thighjnt"):
        joint = {"footjnt": "foot", "thighjnt": "thigh"}[variant]
        _scale_range(root, f"{joint}_joint", spec.scale)
        _scale_range(root, f"{joint}_left_joint", spec.scale)
    elif family == "morph" and variant == "leg":
        for side in ("", "_left"):
            _walker_leg(root, side, WALKER_KNEE_Z[level])
    elif family == "morph" and variant == "torso":
        _torso_grows_upward(root, level)
    else:
        raise _unknown(spec)


def _cheetah_limbs(root: ET.Element, back_thigh_end, front_thigh_end, back_shin_end, front_shin_end) -> None:
    """Re-shape the thighs and shins as capsules in their bodies' frames; children follow."""
    r = CHEETAH_LIMB_RADIUS
    bx, bz = back_thigh_end
    fx, fz = front_thigh_end
    _set_capsule(_find(root, "geom", "bthigh"), (0, 0, 0), (bx, 0, bz), r)
    _set_body_pos(root, "bshin", (bx, 0, bz))
    _set_capsule(_find(root, "geom", "fthigh"), (0, 0, 0), (fx, 0, fz), r)
    _set_body_pos(root, "fshin", (fx, 0, fz))
    _set_capsule(_find(root, "geom", "bshin"), (0, 0, 0), back_shin_end, r)
    _set_body_pos(root, "bfoot", back_shin_end)
    _set_capsule(_find(root, "geom", "fshin"), (0, 0, 0), front_shin_end, r)
    _set_body_pos(root, "ffoot", front_shin_end)


def _edit_halfcheetah(root: ET.Element, spec: DomainSpec) -> None:
    if _apply_physics_shift(root, spec):
        return
    family, variant, level = spec.family, spec.variant, spec.level
    if family == "kinematic" and variant is None:        # paper: back thigh range x 0.01
        _scale_range(root, "bthigh", 0.01)
    elif family == "morph" and variant is None:          # paper: zero-length thighs, short back foot
        _cheetah_limbs(root, (-1e-4, -1e-4), (1e-4, 1e-4), (-0.13, 0, -0.15), (0.01, 0, -0.16))
        _set_half_length(_find(root, "geom", "bfoot"), 0.07)
    elif family == "kinematic" and variant in ("footjnt", "thighjnt"):
        for joint in {"footjnt": ("bfoot", "ffoot"), "thighjnt": ("bthigh", "fthigh")}[variant]:
            _scale_range(root, joint, spec.scale)
    elif family == "morph" and variant == "thigh":
        _cheetah_limbs(root, CHEETAH_BACK_THIGH_END[level], CHEETAH_FRONT_THIGH_END[level],
                       (-0.13, 0, -0.15), (0.11, 0, -0.13))
    elif family == "morph" and variant == "torso":
        h = CHEETAH_TORSO_HALF_LENGTH[level]
        _set_capsule(_find(root, "geom", "torso"), (-h, 0, 0), (h, 0, 0), CHEETAH_LIMB_RADIUS)
        head = _find(root, "geom", "head")
        head.set("pos", _fmt([h + 0.1] + list(_floats(head.get("pos"))[1:])))
        _set_body_pos(root, "bthigh", (-h, 0, 0))
        _set_body_pos(root, "fthigh", (h, 0, 0))
    else:
        raise _unknown(spec)


def _ant_lower_legs(root: ET.Element, geom_names: Sequence[str], length: float) -> None:
    """Lower-leg capsules end at (+-L, +-L, 0), keeping each leg's direction."""
    for name in geom_names:
        geom = _find(root, "geom", name)
        start_end = _floats(geom.get("fromto"))
        direction = np.sign(start_end[3:5])
        _set_capsule(geom, start_end[:3], (direction[0] * length, direction[1] * length, 0.0),
                     _floats(geom.get("size"))[0])


def _edit_ant(root: ET.Element, spec: DomainSpec) -> None:
    if _apply_physics_shift(root, spec):
        return
    family, variant, level = spec.family, spec.variant, spec.level
    if family == "kinematic" and variant is None:        # paper: front hips +-30 -> +-0.3
        _scale_range(root, "hip_1", 0.01)
        _scale_range(root, "hip_2", 0.01)
    elif family == "morph" and variant is None:          # paper: front lower legs 0.4 -> 0.1
        _ant_lower_legs(root, ANT_FRONT_LOWER_LEGS, 0.1)
    elif family == "kinematic" and variant == "hipjnt":
        for i in range(1, 5):
            _scale_range(root, f"hip_{i}", spec.scale)
    elif family == "kinematic" and variant == "anklejnt":
        for i in range(1, 5):
            _shrink_range_towards(root, f"ankle_{i}", ANT_ANKLE_FIXED_END, spec.scale)
    elif family == "morph" and variant in ("alllegs", "halflegs"):
        legs = ANT_ALL_LOWER_LEGS if variant == "alllegs" else ANT_FRONT_LOWER_LEGS
        _ant_lower_legs(root, legs, ANT_LOWER_LEG_END[level])
    else:
        raise _unknown(spec)


SHIFTS = {
    "hopper": _edit_hopper,
    "walker2d": _edit_walker2d,
    "halfcheetah": _edit_halfcheetah,
    "ant": _edit_ant,
}
