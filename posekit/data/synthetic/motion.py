"""Source motion for the synthetic engine: the real CMU motion-capture trials, and procedural variation.

Motion lives in the ``cmu_mocap`` skeleton, millimetres, Y up (the CMU world), as
:func:`posekit.data.mocap.read_mocap` returns it. Variation works on joint positions and keeps every
bone a rigid segment:

* bone lengths: :func:`sample_bone_scales` draws one global scale per subject (0.85-1.15 by default) and
  a small per-bone factor shared by each left/right pair; :func:`scale_bones` re-chains the skeleton
  from the root with the scaled bone vectors, so directions stay and lengths change.
* joint angles: :func:`perturb_joint_angles` turns the descendants of a joint about that joint by a
  small rotation (its axis expressed in the pelvis frame of each frame, so the change follows the body
  when it turns); bone lengths are untouched.
* placement: :func:`rotate_about_vertical` (about +Y through a centre) and translation.
* mirroring: :func:`mirror` reflects X and swaps the left/right joints (``skeleton.flip_indices``), so
  the result is a correctly labelled person, the mirror image of the input.

Action labels come from the CMU trial of a file (:data:`CMU_ACTIONS`, the trials described in the
motion-capture README of the shared data); files are recognised by CMU trial names ``SS_TT*.amc`` /
``SS_TT*.bvh``.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from posekit.data.mocap import read_mocap
from posekit.data.structures import Motion
from posekit.errors import PosekitError
from posekit.geometry.rotations import axis_angle_to_matrix
from posekit.skeletons import Skeleton, get_skeleton

SKELETON = "cmu_mocap"
UP = np.array([0.0, 1.0, 0.0])
"""The vertical of the CMU world (and of every synthetic scene)."""

CMU_ACTIONS = {
    "01_01": "jump", "01_14": "climb", "02_01": "walk", "02_03": "run", "02_04": "jump",
    "02_05": "punch", "07_05": "walk", "09_06": "run", "131_04": "hop",
}
"""Action of each CMU trial available to posekit (CMU's descriptions: 01_01 forward jumps, 01_14 climb
and hang, 02_01 walk, 02_03 run/jog, 02_04 jump and balance, 02_05 punch/strike, 07_05 slow walk,
09_06 run, 131_04 start-hop-stop)."""

ACTIONS = ("walk", "run", "jump", "punch", "climb", "hop")

ROOT = get_skeleton(SKELETON).index("Hips")
"""Index of the root joint (the pelvis) in the cmu_mocap skeleton."""

_TRIAL = re.compile(r"(\d+)_(\d+)")


def trial_of(path) -> str | None:
    """The CMU trial ("02_01") a file name starts with, or None."""
    match = _TRIAL.match(Path(path).stem)
    return None if match is None else f"{match.group(1)}_{match.group(2)}"


def default_mocap_folder() -> Path | None:
    """The folder named by the environment variable ``POSEKIT_MOCAP``, or None."""
    value = os.environ.get("POSEKIT_MOCAP")
    return Path(value) if value else None


def load_mocap_library(folder) -> list[Motion]:
    """Every CMU trial under ``folder`` as a :class:`Motion` with ``meta["action"]`` and ``meta["trial"]``.

    ``SS_TT*.amc`` files are read with the subject's ``SS.asf`` found anywhere under the folder;
    ``SS_TT*.bvh`` files (cgspeed conversion) with their offsets rebuilt from that ASF when present.
    A trial found in both formats is read once, from the AMC. Trials are sorted by name so the library
    (and every draw from it) is the same on every machine.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise PosekitError(f"{folder}: no such motion-capture folder")
    asfs = {p.stem: p for p in sorted(folder.rglob("*.asf"))}
    chosen: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        trial = trial_of(path)
        if trial is None or path.suffix.lower() not in (".amc", ".bvh"):
            continue
        subject = trial.split("_")[0]
        if path.suffix.lower() == ".amc" and subject not in asfs:
            continue
        previous = chosen.get(path.stem)
        if previous is None or (previous.suffix.lower() == ".bvh" and path.suffix.lower() == ".amc"):
            chosen[path.stem] = path
    by_trial: dict[str, Path] = {}
    for stem in sorted(chosen):
        path = chosen[stem]
        key = trial_of(path)
        if key not in by_trial or (by_trial[key].suffix.lower() == ".bvh" and path.suffix.lower() == ".amc"):
            by_trial[key] = path
    motions = []
    for trial in sorted(by_trial):
        path = by_trial[trial]
        subject = trial.split("_")[0]
        if path.suffix.lower() == ".amc":
            motion = read_mocap(path, asf=asfs[subject])
        else:
            motion = read_mocap(path, rebuild_offsets_from=asfs.get(subject))
        motion.meta.update(trial=trial, action=CMU_ACTIONS.get(trial, "unknown"))
        motions.append(motion)
    if not motions:
        raise PosekitError(f"{folder}: no CMU motion-capture trials (SS_TT.amc with SS.asf, or SS_TT.bvh)")
    return motions


# ------------------------------------------------------------------------------ skeleton helpers

@lru_cache(maxsize=None)
def _descendants(name: str) -> tuple[tuple[int, ...], ...]:
    skeleton = get_skeleton(name)
    children: dict[int, list[int]] = {i: [] for i in range(len(skeleton))}
    for child, parent in enumerate(skeleton.parents):
        if parent >= 0:
            children[parent].append(child)
    out = []
    for joint in range(len(skeleton)):
        stack, found = list(children[joint]), []
        while stack:
            j = stack.pop()
            found.append(j)
            stack.extend(children[j])
        out.append(tuple(sorted(found)))
    return tuple(out)


def descendants(skeleton: Skeleton | str, joint: str) -> np.ndarray:
    """Indices of every joint below ``joint`` in the kinematic tree."""
    skeleton = get_skeleton(skeleton)
    return np.array(_descendants(skeleton.name)[skeleton.index(joint)], dtype=int)


@lru_cache(maxsize=None)
def _topological(name: str) -> tuple[int, ...]:
    parents = get_skeleton(name).parents
    depth = []
    for j in range(len(parents)):
        d, p = 0, parents[j]
        while p >= 0:
            d, p = d + 1, parents[p]
        depth.append(d)
    return tuple(int(j) for j in np.argsort(depth, kind="stable"))


def bone_lengths(positions, skeleton: Skeleton | str = SKELETON) -> np.ndarray:
    """Length of the bone ending at each joint, (..., K) (0 for the root)."""
    skeleton = get_skeleton(skeleton)
    pos = np.asarray(positions, dtype=float)
    parents = np.array(skeleton.parents)
    vectors = pos - pos[..., np.maximum(parents, 0), :]
    lengths = np.linalg.norm(vectors, axis=-1)
    lengths[..., parents < 0] = 0.0
    return lengths


def scale_bones(positions, factors, skeleton: Skeleton | str = SKELETON) -> np.ndarray:
    """Multiply the bone ending at joint k by ``factors[k]`` (root factor ignored), re-chaining the
    skeleton from the root: the root stays, every bone keeps its direction."""
    skeleton = get_skeleton(skeleton)
    pos = np.asarray(positions, dtype=float)
    factors = np.asarray(factors, dtype=float)
    out = pos.copy()
    for j in _topological(skeleton.name):
        p = skeleton.parents[j]
        if p >= 0:
            out[..., j, :] = out[..., p, :] + factors[j] * (pos[..., j, :] - pos[..., p, :])
    return out


def sample_bone_scales(rng: np.random.Generator, skeleton: Skeleton | str = SKELETON, *,
                       global_range=(0.85, 1.15), per_bone_sigma: float = 0.04,
                       per_bone_limit: float = 0.08) -> np.ndarray:
    """(K,) bone factors: one global scale ~ U(global_range) times ``1 + e_k``, e_k ~ N(0, sigma) clipped
    to +-limit, equal for the two bones of each left/right pair (bodies are symmetric)."""
    skeleton = get_skeleton(skeleton)
    noise = np.clip(rng.normal(0.0, per_bone_sigma, len(skeleton)), -per_bone_limit, per_bone_limit)
    noise = noise[np.minimum(np.arange(len(skeleton)), skeleton.flip_indices)]
    return rng.uniform(*global_range) * (1.0 + noise)


# --------------------------------------------------------------------------------- frames

def _unit(v):
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def frame_from_axes(primary, secondary) -> np.ndarray:
    """Right-handed frames (..., 3, 3) whose columns are ``primary`` (normalised), ``secondary``
    made orthogonal to it, and their cross product."""
    x = _unit(np.asarray(primary, dtype=float))
    s = np.asarray(secondary, dtype=float)
    y = _unit(s - np.sum(s * x, axis=-1, keepdims=True) * x)
    z = np.stack([x[..., 1] * y[..., 2] - x[..., 2] * y[..., 1], x[..., 2] * y[..., 0] - x[..., 0] * y[..., 2],
                  x[..., 0] * y[..., 1] - x[..., 1] * y[..., 0]], axis=-1)
    return np.stack([x, y, z], axis=-1)


def pelvis_frame(positions, skeleton: Skeleton | str = SKELETON) -> np.ndarray:
    """Body frame (..., 3, 3), columns (left, up, forward): left from the right to the left hip joint,
    up from the pelvis (Hips) to the chest (Spine1) made orthogonal to left, forward = left x up."""
    skeleton = get_skeleton(skeleton)
    pos = np.asarray(positions, dtype=float)
    left = pos[..., skeleton.index("LeftUpLeg"), :] - pos[..., skeleton.index("RightUpLeg"), :]
    up = pos[..., skeleton.index("Spine1"), :] - pos[..., skeleton.index("Hips"), :]
    return frame_from_axes(left, up)


def chest_frame(positions, skeleton: Skeleton | str = SKELETON) -> np.ndarray:
    """Chest frame (..., 3, 3), columns (left, up, forward): left from the right to the left shoulder
    joint (upper-arm joints), up from Spine1 to Neck made orthogonal to left."""
    skeleton = get_skeleton(skeleton)
    pos = np.asarray(positions, dtype=float)
    left = pos[..., skeleton.index("LeftArm"), :] - pos[..., skeleton.index("RightArm"), :]
    up = pos[..., skeleton.index("Neck"), :] - pos[..., skeleton.index("Spine1"), :]
    return frame_from_axes(left, up)


# ----------------------------------------------------------------------------- variation

def rotate_subtree(positions, joint: str, rotation, skeleton: Skeleton | str = SKELETON) -> np.ndarray:
    """Turn the descendants of ``joint`` about it by ``rotation`` ((3, 3) or (T, 3, 3) per frame)."""
    skeleton = get_skeleton(skeleton)
    pos = np.array(positions, dtype=float)
    below = descendants(skeleton, joint)
    if below.size == 0:
        return pos
    pivot = pos[..., skeleton.index(joint):skeleton.index(joint) + 1, :]
    rot = np.asarray(rotation, dtype=float)
    local = pos[..., below, :] - pivot
    pos[..., below, :] = np.einsum("...ij,...kj->...ki", rot, local) + pivot
    return pos


def perturbable_joints(skeleton: Skeleton | str = SKELETON) -> tuple[str, ...]:
    """Joints whose subtree :func:`perturb_joint_angles` turns: every non-root joint with a child bone
    of non-zero length in the CMU data (hips, knees, ankles, spine, neck, shoulders, elbows, wrists)."""
    skeleton = get_skeleton(skeleton)
    names = ("LeftUpLeg", "LeftLeg", "LeftFoot", "RightUpLeg", "RightLeg", "RightFoot", "LowerBack",
             "Spine", "Spine1", "Neck", "Neck1", "LeftShoulder", "LeftArm", "LeftForeArm", "LeftHand",
             "RightShoulder", "RightArm", "RightForeArm", "RightHand")
    return tuple(n for n in names if n in skeleton.joints)


def sample_joint_perturbations(rng: np.random.Generator, sigma_deg: float = 4.0,
                               skeleton: Skeleton | str = SKELETON) -> dict[str, np.ndarray]:
    """Small random rotations (rotation vectors in the pelvis frame, radians), one per joint of
    :func:`perturbable_joints`, angle ~ |N(0, sigma)| about a random axis."""
    out = {}
    for name in perturbable_joints(skeleton):
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        out[name] = axis * np.deg2rad(rng.normal(0.0, sigma_deg))
    return out


def perturb_joint_angles(positions, perturbations: dict, skeleton: Skeleton | str = SKELETON) -> np.ndarray:
    """Apply rotation vectors ``{joint: (3,) in the pelvis frame}`` root to leaves: the descendants of
    each joint turn about it by ``F R F^T`` (F the pelvis frame of each frame). Bone lengths are kept."""
    skeleton = get_skeleton(skeleton)
    pos = np.asarray(positions, dtype=float)
    frames = pelvis_frame(pos, skeleton)
    order = {j: i for i, j in enumerate(_topological(skeleton.name))}
    for name in sorted(perturbations, key=lambda n: order[skeleton.index(n)]):
        local = axis_angle_to_matrix(np.asarray(perturbations[name], dtype=float))
        world = frames @ local @ np.swapaxes(frames, -1, -2)
        pos = rotate_subtree(pos, name, world, skeleton)
    return pos


def rotation_about_vertical(angle: float) -> np.ndarray:
    """Rotation by ``angle`` radians about +Y (right-handed: +Z turns towards +X)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rotate_about_vertical(positions, angle: float, center=None) -> np.ndarray:
    """Turn points (..., 3) by ``angle`` radians about the vertical through ``center`` (default origin)."""
    pos = np.asarray(positions, dtype=float)
    c = np.zeros(3) if center is None else np.asarray(center, dtype=float)
    return (pos - c) @ rotation_about_vertical(angle).T + c


def mirror(positions, skeleton: Skeleton | str = SKELETON) -> np.ndarray:
    """Mirror image through the plane X = 0, with left and right joints relabelled."""
    skeleton = get_skeleton(skeleton)
    pos = np.array(positions, dtype=float)
    pos[..., 0] = -pos[..., 0]
    return pos[..., skeleton.flip_indices, :]


@dataclass
class Variation:
    """One synthetic subject's variation of a source motion (see the module notes)."""

    bone_scales: np.ndarray
    perturbations: dict = field(default_factory=dict)
    mirrored: bool = False
    yaw: float = 0.0                                   # radians about +Y, through the origin
    translation: np.ndarray = field(default_factory=lambda: np.zeros(3))


def sample_variation(rng: np.random.Generator, *, scale_range=(0.85, 1.15), angle_sigma_deg: float = 4.0,
                     mirror_probability: float = 0.5) -> Variation:
    """Random :class:`Variation` (translation zero: the scene places the person)."""
    return Variation(bone_scales=sample_bone_scales(rng, global_range=scale_range),
                     perturbations=sample_joint_perturbations(rng, angle_sigma_deg),
                     mirrored=bool(rng.random() < mirror_probability),
                     yaw=float(rng.uniform(0, 2 * np.pi)))


def apply_variation(positions, variation: Variation, skeleton: Skeleton | str = SKELETON) -> np.ndarray:
    """A varied copy of ``positions`` (K, 3) or (T, K, 3), the floor (Y = 0) kept under the feet.

    The body relative to the root gets the bone scales and the joint perturbations; the root path,
    taken relative to the first frame's horizontal position, is scaled by the change of leg length
    (stride and pelvis height follow the legs). Then the mirror image (if chosen), the turn about the
    vertical through the origin and the translation.
    """
    skeleton = get_skeleton(skeleton)
    pos = np.asarray(positions, dtype=float)
    hips = skeleton.index("Hips")
    root = pos[..., hips:hips + 1, :]
    start = pos.reshape(-1, len(skeleton), 3)[0, hips] * np.array([1.0, 0.0, 1.0])
    body = scale_bones(pos - root, variation.bone_scales, skeleton)
    body = perturb_joint_angles(body, variation.perturbations, skeleton)
    legs = skeleton.indices(["LeftLeg", "LeftFoot", "RightLeg", "RightFoot"])
    before = bone_lengths(pos, skeleton)[..., legs].sum(axis=-1)
    after = bone_lengths(body, skeleton)[..., legs].sum(axis=-1)
    leg_scale = float(np.mean(after / before))
    out = body + (root - start) * leg_scale
    if variation.mirrored:
        out = mirror(out, skeleton)
    return rotate_about_vertical(out, variation.yaw) + np.asarray(variation.translation, dtype=float)


def resample(positions, source_fps: float, target_fps: float) -> np.ndarray:
    """Positions (T, K, 3) at ``target_fps`` by linear interpolation in time (start frame kept)."""
    pos = np.asarray(positions, dtype=float)
    if source_fps <= 0 or target_fps <= 0:
        raise PosekitError(f"frame rates must be positive, got {source_fps} and {target_fps}")
    duration = (len(pos) - 1) / source_fps
    times = np.arange(int(np.floor(duration * target_fps + 1e-9)) + 1) / target_fps
    index = times * source_fps
    lo = np.minimum(np.floor(index).astype(int), len(pos) - 1)
    hi = np.minimum(lo + 1, len(pos) - 1)
    w = (index - lo)[:, None, None]
    return pos[lo] * (1 - w) + pos[hi] * w
