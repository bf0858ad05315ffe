"""Posture templates from joint angles, and a posture classifier from joint angles.

The CMU trials have no sitting, squatting or lying, so those postures are made here: a neutral standing
``cmu_mocap`` skeleton (:func:`neutral_pose`, bone lengths of the average CMU subject or any given ones)
is posed by joint rotations (:func:`pose_from_angles`), and :func:`sample_posture` draws the angles of a
posture class from its template ranges, inside :data:`JOINT_LIMITS`.

Angle conventions (degrees; body axes of the neutral pose: x left, y up, z forward). Rotations are
applied from the hands and feet towards the root, each about axes of the neutral pose, which is forward
kinematics with joint-local axes:

* ``{side}_hip_flexion``: thigh forward (+) / backward; ``{side}_hip_abduction``: thigh out to the side.
* ``{side}_knee_flexion``: 0 straight; ``{side}_ankle_dorsiflexion``: toes up (+) / pointed (-).
* ``{side}_shoulder_abduction`` (arm out to the side, applied first), then ``{side}_shoulder_flexion``
  (the arm swung forward and up about the left-right axis): flexion 180 with abduction 0 is the arm
  straight overhead. ``{side}_elbow_flexion``: 0 straight.
* ``spine_flexion`` (forward bend of the trunk above the pelvis, half at the lumbar joint, half at the
  chest joint), ``spine_lateral`` (towards the left), ``spine_twist`` (about the trunk axis);
  ``neck_flexion`` (head forward).
* Whole body, about the pelvis: ``pelvis_pitch`` (forward tilt), ``pelvis_roll`` (towards the left),
  ``yaw`` (about the vertical).

:data:`JOINT_LIMITS` (degrees; sources: the usual clinical ranges of motion): hip flexion -20..130,
hip abduction -15..45, knee 0..150, ankle -45..40, shoulder flexion -50..180, shoulder abduction 0..180,
elbow 0..150, spine flexion -30..70, spine lateral -30..30, spine twist -40..40, neck -50..60.

Classifier (:func:`classify_posture`) on 3D joints of any skeleton with hips, knees, ankles, shoulders,
elbows and wrists (cmu_mocap, h36m17, coco17, mpii16, ...), given the world's up axis. Features
(:func:`posture_features`, degrees): trunk inclination (mid-hip -> mid-shoulder against up), knee flexion
(angle between thigh and shank), hip flexion (angle between the thigh and the trunk's downward axis),
thigh inclination (thigh against down), arm elevation (upper arm against the trunk's downward axis).
Rules, first match wins (:data:`POSTURE_THRESHOLDS`):

1. lie: trunk inclination >= 60 and mean thigh inclination >= 50 (trunk and thighs near horizontal);
2. squat: mean knee flexion >= 105 and trunk inclination < 60;
3. sit: both knees >= 45, both hips >= 50, trunk inclination < 45, mean thigh inclination >= 50;
4. bend_forward: trunk inclination >= 40, mean knee < 45, mean thigh inclination < 35;
5. arms_raised: trunk inclination < 30, mean knee < 45, both arm elevations >= 120;
6. stand: trunk inclination < 30, one knee < 40 (a supporting leg; a walking stride counts), both thigh
   inclinations < 45;
7. otherwise "other" (a lunge, a running stride, mid-air...).

The templates (:data:`TEMPLATES`) keep at least 5 degrees away from every rule's threshold.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from posekit.data.synthetic.motion import SKELETON, UP, rotate_subtree
from posekit.errors import PosekitError
from posekit.skeletons import Skeleton, convert_keypoints, get_skeleton, list_mappings

POSTURES = ("stand", "sit", "squat", "bend_forward", "arms_raised", "lie")
OTHER = "other"

DEFAULT_BONE_LENGTHS = {
    "LeftUpLeg": 137.8, "LeftLeg": 413.9, "LeftFoot": 414.4, "LeftToeBase": 124.8, "LeftToeBase_End": 62.6,
    "Spine": 116.1, "Spine1": 115.9, "Neck": 116.7, "Neck1": 92.2, "Head": 92.2, "Head_End": 94.3,
    "LeftShoulder": 116.7, "LeftArm": 194.9, "LeftForeArm": 284.4, "LeftHand": 193.6,
    "LeftFingerBase": 96.8, "LeftHandIndex1": 37.3, "LeftHandIndex1_End": 30.1, "LThumb": 96.8,
    "LThumb_End": 43.2,
}
"""Bone lengths (mm, the bone ending at each joint; right = left) of the average of the CMU subjects
01, 02, 07, 09 and 131 (their ASF/AMC trials, left and right averaged)."""

_NEUTRAL_DIRECTIONS = {
    "LeftUpLeg": (0.656, -0.714, 0.248), "LeftLeg": (-0.06, -0.998, 0.0), "LeftFoot": (0.0, -1.0, 0.0),
    "LeftToeBase": (0.05, -0.4, 0.915), "LeftToeBase_End": (0.0, -0.1, 0.995),
    "Spine": (0.0, 0.998, -0.07), "Spine1": (0.0, 1.0, -0.03), "Neck": (0.0, 1.0, 0.0),
    "Neck1": (0.0, 0.995, 0.096), "Head": (0.0, 0.998, -0.065), "Head_End": (0.0, 1.0, -0.03),
    "LeftShoulder": (0.0, 1.0, 0.0), "LeftArm": (0.968, 0.247, -0.047),
    "LeftForeArm": (0.105, -0.995, 0.0), "LeftHand": (0.05, -0.99, 0.12),
    "LeftFingerBase": (0.05, -0.99, 0.12), "LeftHandIndex1": (0.05, -0.99, 0.12),
    "LeftHandIndex1_End": (0.05, -0.99, 0.12), "LThumb": (0.05, -0.99, 0.12),
    "LThumb_End": (-0.05, -0.6, 0.8),
}
"""Bone directions of the neutral stance (x left, y up, z forward): pelvis, spine, neck and clavicle
from the rest pose of CMU subject 02's ASF; legs straight down (knees slightly inward), arms hanging
6 degrees out from the body, elbows bent 7 degrees, thumbs forward."""

JOINT_LIMITS = {
    "hip_flexion": (-20.0, 130.0), "hip_abduction": (-15.0, 45.0), "knee_flexion": (0.0, 150.0),
    "ankle_dorsiflexion": (-45.0, 40.0), "shoulder_flexion": (-50.0, 180.0),
    "shoulder_abduction": (0.0, 180.0), "elbow_flexion": (0.0, 150.0), "spine_flexion": (-30.0, 70.0),
    "spine_lateral": (-30.0, 30.0), "spine_twist": (-40.0, 40.0), "neck_flexion": (-50.0, 60.0),
}

POSTURE_THRESHOLDS = {
    "lie_trunk": 60.0, "lie_thigh": 50.0,
    "squat_knee": 105.0, "squat_trunk": 60.0,
    "sit_knee": 45.0, "sit_hip": 50.0, "sit_trunk": 45.0, "sit_thigh": 50.0,
    "bend_trunk": 40.0, "bend_knee": 45.0, "bend_thigh": 35.0,
    "raised_trunk": 30.0, "raised_knee": 45.0, "raised_arm": 120.0,
    "stand_trunk": 30.0, "stand_knee": 40.0, "stand_thigh": 45.0,
}


# ----------------------------------------------------------------------------------- neutral pose

def _side_name(name: str) -> str:
    """The right-side counterpart of a left joint name of cmu_mocap."""
    skeleton = get_skeleton(SKELETON)
    return skeleton.joints[skeleton.flip_indices[skeleton.index(name)]]


@lru_cache(maxsize=None)
def _neutral_tables() -> tuple[np.ndarray, np.ndarray]:
    """Unit directions (K, 3) and default lengths (K,) for every cmu_mocap joint's bone."""
    skeleton = get_skeleton(SKELETON)
    directions = np.zeros((len(skeleton), 3))
    lengths = np.zeros(len(skeleton))
    for name, direction in _NEUTRAL_DIRECTIONS.items():
        d = np.asarray(direction, dtype=float)
        d = d / np.linalg.norm(d)
        for target, sign in ((name, 1.0), (_side_name(name), -1.0)):
            directions[skeleton.index(target)] = d * np.array([sign, 1.0, 1.0])
            lengths[skeleton.index(target)] = DEFAULT_BONE_LENGTHS.get(name, 0.0)
    return directions, lengths


def neutral_pose(bone_lengths=None) -> np.ndarray:
    """(K, 3) cmu_mocap joints of a neutral standing pose, pelvis (Hips) at the origin, facing +z.

    ``bone_lengths``: (K,) length of the bone ending at each joint (e.g. from a mocap subject, see
    :func:`posekit.data.synthetic.motion.bone_lengths`); default :data:`DEFAULT_BONE_LENGTHS`.
    """
    skeleton = get_skeleton(SKELETON)
    directions, lengths = _neutral_tables()
    if bone_lengths is not None:
        lengths = np.asarray(bone_lengths, dtype=float)
        if lengths.shape != (len(skeleton),) or not np.all(np.isfinite(lengths)) or np.any(lengths < 0):
            raise PosekitError(f"neutral_pose: bone_lengths must be {len(skeleton)} finite non-negative "
                               f"numbers, got shape {lengths.shape}")
    pos = np.zeros((len(skeleton), 3))
    for j in sorted(range(len(skeleton)), key=lambda joint: _depth(skeleton, joint)):
        p = skeleton.parents[j]
        if p >= 0:
            pos[j] = pos[p] + directions[j] * lengths[j]
    return pos


def _depth(skeleton: Skeleton, joint: int) -> int:
    d = 0
    while skeleton.parents[joint] >= 0:
        joint, d = skeleton.parents[joint], d + 1
    return d


# ------------------------------------------------------------------------------------ posing

def _rx(deg):
    a = np.deg2rad(deg)
    return np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])


def _ry(deg):
    a = np.deg2rad(deg)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


def _rz(deg):
    a = np.deg2rad(deg)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])


ANGLE_NAMES = tuple(f"{side}_{name}" for side in ("left", "right") for name in (
    "hip_flexion", "hip_abduction", "knee_flexion", "ankle_dorsiflexion", "shoulder_flexion",
    "shoulder_abduction", "elbow_flexion")) + (
    "spine_flexion", "spine_lateral", "spine_twist", "neck_flexion", "pelvis_pitch", "pelvis_roll", "yaw")


def pose_from_angles(angles: dict, bone_lengths=None) -> np.ndarray:
    """(K, 3) cmu_mocap joints posed by ``angles`` (degrees, names in :data:`ANGLE_NAMES`; missing = 0),
    pelvis at the origin. See the module notes for the conventions."""
    unknown = set(angles) - set(ANGLE_NAMES)
    if unknown:
        raise PosekitError(f"pose_from_angles: unknown angle(s) {sorted(unknown)}; known: {', '.join(ANGLE_NAMES)}")
    a = {name: float(angles.get(name, 0.0)) for name in ANGLE_NAMES}
    pos = neutral_pose(bone_lengths)
    for side in ("left", "right"):
        sign = 1.0 if side == "left" else -1.0
        prefix = "Left" if side == "left" else "Right"
        pos = rotate_subtree(pos, f"{prefix}Foot", _rx(-a[f"{side}_ankle_dorsiflexion"]))
        pos = rotate_subtree(pos, f"{prefix}Leg", _rx(a[f"{side}_knee_flexion"]))
        pos = rotate_subtree(pos, f"{prefix}UpLeg",
                             _rx(-a[f"{side}_hip_flexion"]) @ _rz(sign * a[f"{side}_hip_abduction"]))
        pos = rotate_subtree(pos, f"{prefix}ForeArm", _rx(-a[f"{side}_elbow_flexion"]))
        pos = rotate_subtree(pos, f"{prefix}Arm",
                             _rx(-a[f"{side}_shoulder_flexion"]) @ _rz(sign * a[f"{side}_shoulder_abduction"]))
    pos = rotate_subtree(pos, "Neck", _rx(a["neck_flexion"]))
    half = _rx(a["spine_flexion"] / 2)
    pos = rotate_subtree(pos, "Spine1", half)
    pos = rotate_subtree(pos, "LowerBack", half @ _rz(-a["spine_lateral"]) @ _ry(a["spine_twist"]))
    whole = _ry(a["yaw"]) @ _rz(-a["pelvis_roll"]) @ _rx(a["pelvis_pitch"])
    return pos @ whole.T


def _u(rng, lo, hi):
    return float(rng.uniform(lo, hi))


def _arms(rng, flex=(-10, 30), abd=(3, 25), elbow=(5, 50)) -> dict:
    out = {}
    for side in ("left", "right"):
        out[f"{side}_shoulder_flexion"] = _u(rng, *flex)
        out[f"{side}_shoulder_abduction"] = _u(rng, *abd)
        out[f"{side}_elbow_flexion"] = _u(rng, *elbow)
    return out


def _legs(rng, pelvis_pitch, thigh_world, knee, abduction=(-3, 10)) -> dict:
    """Leg angles from the thigh's forward angle in the world and the knee angle, feet kept flat
    (dorsiflexion = forward tilt of the shin)."""
    out = {}
    for side in ("left", "right"):
        thigh, k = _u(rng, *thigh_world), _u(rng, *knee)
        out[f"{side}_hip_flexion"] = thigh + pelvis_pitch
        out[f"{side}_knee_flexion"] = k
        out[f"{side}_ankle_dorsiflexion"] = k - thigh
        out[f"{side}_hip_abduction"] = _u(rng, *abduction)
    return out


def _stand(rng) -> dict:
    pitch = _u(rng, -5, 5)
    return {"pelvis_pitch": pitch, "spine_flexion": _u(rng, -5, 10), "neck_flexion": _u(rng, -10, 20),
            "spine_lateral": _u(rng, -5, 5), "spine_twist": _u(rng, -10, 10),
            **_legs(rng, pitch, (-8, 12), (0, 15)), **_arms(rng)}


def _sit(rng) -> dict:
    pitch = _u(rng, -15, 5)
    return {"pelvis_pitch": pitch, "spine_flexion": _u(rng, 0, 25), "neck_flexion": _u(rng, -10, 25),
            "spine_twist": _u(rng, -10, 10), **_legs(rng, pitch, (75, 95), (60, 100), (0, 15)),
            **_arms(rng, (0, 45), (0, 20), (30, 100))}


def _squat(rng) -> dict:
    out = {"spine_flexion": _u(rng, 0, 15), "neck_flexion": _u(rng, -30, 10)}
    knees = [_u(rng, 112, 143) for _ in range(2)]
    shins = [_u(rng, max(15.0, k - 105.0), min(38.0, k - 75.0)) for k in knees]
    thighs = [k - s for k, s in zip(knees, shins)]
    pitch = _u(rng, 15, min(40.0, 128.0 - max(thighs)))
    out["pelvis_pitch"] = pitch
    for side, k, s, t in zip(("left", "right"), knees, shins, thighs):
        out.update({f"{side}_knee_flexion": k, f"{side}_ankle_dorsiflexion": s,
                    f"{side}_hip_flexion": t + pitch, f"{side}_hip_abduction": _u(rng, 10, 30)})
    out.update(_arms(rng, (20, 90), (0, 20), (0, 90)))
    return out


def _bend_forward(rng) -> dict:
    pitch, spine = _u(rng, 45, 85), _u(rng, 10, 35)
    out = {"pelvis_pitch": pitch, "spine_flexion": spine, "neck_flexion": _u(rng, -30, 20),
           **_legs(rng, pitch, (-10, 5), (0, 25), (0, 8))}
    trunk = pitch + spine
    out.update(_arms(rng, (0, 1), (0, 15), (0, 40)))
    for side in ("left", "right"):                  # arms hang under gravity
        out[f"{side}_shoulder_flexion"] = min(trunk + _u(rng, -20, 20), 175.0)
    return out


def _arms_raised(rng) -> dict:
    pitch = _u(rng, -5, 5)
    out = {"pelvis_pitch": pitch, "spine_flexion": _u(rng, -5, 10), "neck_flexion": _u(rng, -20, 10),
           **_legs(rng, pitch, (-8, 12), (0, 15))}
    for side in ("left", "right"):
        if rng.random() < 0.5:
            flex, abd = _u(rng, 140, 180), _u(rng, 0, 25)
        else:
            flex, abd = _u(rng, -10, 20), _u(rng, 140, 178)
        out.update({f"{side}_shoulder_flexion": flex, f"{side}_shoulder_abduction": abd,
                    f"{side}_elbow_flexion": _u(rng, 0, 40)})
    return out


def _lie(rng) -> dict:
    out = {"spine_flexion": _u(rng, -5, 15), "neck_flexion": _u(rng, -10, 30),
           "spine_twist": _u(rng, -10, 10)}
    for side in ("left", "right"):
        out.update({f"{side}_hip_flexion": _u(rng, -5, 25), f"{side}_hip_abduction": _u(rng, 0, 10),
                    f"{side}_knee_flexion": _u(rng, 0, 30), f"{side}_ankle_dorsiflexion": _u(rng, -30, 0)})
    out.update(_arms(rng, (-20, 60), (0, 70), (0, 60)))
    kind = int(rng.integers(3))
    if kind == 0:                                   # on the back
        out.update(pelvis_pitch=-90 + _u(rng, -8, 8))
    elif kind == 1:                                 # face down
        out.update(pelvis_pitch=90 + _u(rng, -8, 8))
    else:                                           # on a side
        out.update(pelvis_roll=float(rng.choice([-90.0, 90.0])) + _u(rng, -8, 8), pelvis_pitch=_u(rng, -10, 10))
    return out


TEMPLATES = {"stand": _stand, "sit": _sit, "squat": _squat, "bend_forward": _bend_forward,
             "arms_raised": _arms_raised, "lie": _lie}
"""Angle samplers of each posture class (the ranges are in each function, in degrees)."""


def clip_to_limits(angles: dict) -> dict:
    """The angles with every joint angle clipped into :data:`JOINT_LIMITS`."""
    out = dict(angles)
    for name, value in angles.items():
        key = name.split("_", 1)[1] if name.startswith(("left_", "right_")) else name
        if key in JOINT_LIMITS:
            lo, hi = JOINT_LIMITS[key]
            out[name] = float(np.clip(value, lo, hi))
    return out


def sample_posture(posture: str, rng: np.random.Generator, bone_lengths=None) -> tuple[np.ndarray, dict]:
    """(positions (K, 3) cmu_mocap with the pelvis at the origin, angles) of one random ``posture``."""
    if posture not in TEMPLATES:
        raise PosekitError(f"unknown posture {posture!r}; choose from {', '.join(POSTURES)}")
    angles = clip_to_limits(TEMPLATES[posture](rng))
    return pose_from_angles(angles, bone_lengths), angles


# --------------------------------------------------------------------------------- classifier

_BODY = ("left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
         "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist")


def _body_joints(positions, skeleton: Skeleton) -> dict[str, np.ndarray]:
    pos = np.asarray(positions, dtype=float)
    if all(name in skeleton.joints for name in _BODY):
        return {name: pos[..., skeleton.index(name), :] for name in _BODY}
    if (skeleton.name, "coco17") in list_mappings():
        coco = get_skeleton("coco17")
        converted, _ = convert_keypoints(pos, None, skeleton, coco)
        return {name: converted[..., coco.index(name), :] for name in _BODY}
    raise PosekitError(f"posture: skeleton {skeleton.name!r} needs joints {', '.join(_BODY)} "
                       f"(or a mapping to coco17)")


def _angle(u, v) -> np.ndarray:
    cos = np.sum(u * v, axis=-1) / np.maximum(np.linalg.norm(u, axis=-1) * np.linalg.norm(v, axis=-1), 1e-12)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def posture_features(positions, skeleton: Skeleton | str = SKELETON, up=UP) -> dict[str, np.ndarray]:
    """Joint-angle features (degrees, arrays over the leading axes of ``positions`` (..., K, 3))."""
    skeleton = get_skeleton(skeleton)
    pos = np.asarray(positions, dtype=float)
    if pos.ndim < 2 or pos.shape[-2:] != (len(skeleton), 3):
        raise PosekitError(f"posture: expected 3D joints (..., {len(skeleton)}, 3) for skeleton "
                           f"{skeleton.name!r}, got {pos.shape}")
    up = np.asarray(up, dtype=float)
    up = up / np.linalg.norm(up)
    j = _body_joints(pos, skeleton)
    mid_hip = (j["left_hip"] + j["right_hip"]) / 2
    mid_shoulder = (j["left_shoulder"] + j["right_shoulder"]) / 2
    trunk_up = mid_shoulder - mid_hip
    features = {"trunk_inclination": _angle(trunk_up, up)}
    for side in ("left", "right"):
        thigh = j[f"{side}_knee"] - j[f"{side}_hip"]
        shank = j[f"{side}_ankle"] - j[f"{side}_knee"]
        upper = j[f"{side}_elbow"] - j[f"{side}_shoulder"]
        fore = j[f"{side}_wrist"] - j[f"{side}_elbow"]
        features[f"{side}_knee_flexion"] = _angle(thigh, shank)
        features[f"{side}_hip_flexion"] = _angle(thigh, -trunk_up)
        features[f"{side}_thigh_inclination"] = _angle(thigh, -up)
        features[f"{side}_arm_elevation"] = _angle(upper, -trunk_up)
        features[f"{side}_elbow_flexion"] = _angle(upper, fore)
    return features


def classify_features(features: dict) -> np.ndarray:
    """Posture names (an array of str over the leading axes) from :func:`posture_features`."""
    f, t = features, POSTURE_THRESHOLDS
    trunk = f["trunk_inclination"]
    knee = (f["left_knee_flexion"] + f["right_knee_flexion"]) / 2
    knee_min = np.minimum(f["left_knee_flexion"], f["right_knee_flexion"])
    hip_min = np.minimum(f["left_hip_flexion"], f["right_hip_flexion"])
    thigh = (f["left_thigh_inclination"] + f["right_thigh_inclination"]) / 2
    thigh_max = np.maximum(f["left_thigh_inclination"], f["right_thigh_inclination"])
    arm_min = np.minimum(f["left_arm_elevation"], f["right_arm_elevation"])
    rules = [
        ("lie", (trunk >= t["lie_trunk"]) & (thigh >= t["lie_thigh"])),
        ("squat", (knee >= t["squat_knee"]) & (trunk < t["squat_trunk"])),
        ("sit", (knee_min >= t["sit_knee"]) & (hip_min >= t["sit_hip"]) & (trunk < t["sit_trunk"])
         & (thigh >= t["sit_thigh"])),
        ("bend_forward", (trunk >= t["bend_trunk"]) & (knee < t["bend_knee"]) & (thigh < t["bend_thigh"])),
        ("arms_raised", (trunk < t["raised_trunk"]) & (knee < t["raised_knee"]) & (arm_min >= t["raised_arm"])),
        ("stand", (trunk < t["stand_trunk"]) & (knee_min < t["stand_knee"]) & (thigh_max < t["stand_thigh"])),
    ]
    out = np.full(np.shape(trunk), OTHER, dtype=object)
    decided = np.zeros(np.shape(trunk), dtype=bool)
    for name, hit in rules:
        take = hit & ~decided
        out[take] = name
        decided |= take
    return out


def classify_posture(positions, skeleton: Skeleton | str = SKELETON, up=UP):
    """Posture class of 3D joints (K, 3) -> str, or (..., K, 3) -> array of str (see the module notes)."""
    labels = classify_features(posture_features(positions, skeleton, up))
    return str(labels.item()) if labels.ndim == 0 else labels
