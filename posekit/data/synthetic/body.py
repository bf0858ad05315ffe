"""A renderable body built from ``cmu_mocap`` joint positions, and keypoints of any skeleton on it.

Body parts (:data:`PARTS`) are simple solids sized from the subject's own bone lengths, so a scaled
skeleton gets a proportionally scaled body; :class:`BodyShape` adds girth and head-size variation.
Default sizes (mm) are those of the average CMU subject (bone lengths in
:data:`~posekit.data.synthetic.postures.DEFAULT_BONE_LENGTHS`):

* limbs are round cones (tapered capsules) between joint centres: thigh r 78 -> 50, shank 48 -> 32,
  upper arm 46 -> 36, forearm 35 -> 26, foot 34 -> 24 (heel to toes); a shoulder cone joins the base
  of the neck to the upper-arm joint; the neck is a cone from Neck to Head;
* hands are flat ellipsoids (wrist to fingertip, widened towards the thumb);
* the torso is three overlapping ellipsoids (pelvis, abdomen, chest) oriented by the pelvis and chest
  frames (left, up, forward) and set 20-35 mm in front of the spine joints, which lie near the back;
* the head is an ellipsoid (half-axes 76 lateral, 112 vertical, 95 front-back) whose top is 30 mm above
  ``Head_End`` (the end of the CMU head bone, a little below the top of the skull). Its vertical axis
  runs from ``Head`` to ``Head_End``; its forward axis is the chest's forward axis made orthogonal to
  it: joint positions carry no head yaw, so the face turns with the chest.

Keypoints (:func:`keypoint_recipes`) are joint centres, except the face points and the head top, which
lie on the head surface: nose, eyes, ears and head_top are the points of the head ellipsoid in the
directions :data:`HEAD_LANDMARK_DIRECTIONS` (head frame: left, up, forward) from its centre, set
:data:`SURFACE_INSET` under the surface;
head_bottom (PoseTrack) is a point inside the base of the head (:data:`HEAD_INTERIOR_LANDMARKS`). A target
skeleton's joint is found, in this order: a head landmark of that name; the mapping file
``cmu_mocap_to_<skeleton>``; a ``cmu_mocap`` joint of that name; a joint of that name in any other
``cmu_mocap_to_*`` mapping (so a custom skeleton that uses the usual names, e.g. ``left_wrist``, works
without a mapping of its own).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from posekit.data.synthetic.motion import SKELETON, chest_frame, frame_from_axes, pelvis_frame
from posekit.errors import PosekitError
from posekit.skeletons import Skeleton, get_mapping, get_skeleton, list_mappings

SIDES = ("left", "right")
LIMBS = ("shoulder", "upper_arm", "forearm", "hand", "thigh", "shank", "foot")
PARTS = ("head", "neck", "chest", "abdomen", "pelvis") + tuple(
    f"{side}_{limb}" for side in SIDES for limb in LIMBS)
"""Body parts in id order: a part id is its index here."""

# Joints that define each part (the keypoints at these joints count the part as their own).
_CMU_SIDE = {"left": {"Arm": "LeftArm", "ForeArm": "LeftForeArm", "Hand": "LeftHand", "UpLeg": "LeftUpLeg",
                      "Leg": "LeftLeg", "Foot": "LeftFoot", "ToeBase": "LeftToeBase",
                      "ToeEnd": "LeftToeBase_End", "Shoulder": "LeftShoulder", "HipJoint": "LHipJoint",
                      "FingerBase": "LeftFingerBase", "Index": "LeftHandIndex1",
                      "IndexEnd": "LeftHandIndex1_End", "Thumb": "LThumb", "ThumbEnd": "LThumb_End"},
             "right": {"Arm": "RightArm", "ForeArm": "RightForeArm", "Hand": "RightHand",
                       "UpLeg": "RightUpLeg", "Leg": "RightLeg", "Foot": "RightFoot",
                       "ToeBase": "RightToeBase", "ToeEnd": "RightToeBase_End",
                       "Shoulder": "RightShoulder", "HipJoint": "RHipJoint",
                       "FingerBase": "RightFingerBase", "Index": "RightHandIndex1",
                       "IndexEnd": "RightHandIndex1_End", "Thumb": "RThumb", "ThumbEnd": "RThumb_End"}}


def _part_joints() -> dict[str, tuple[str, ...]]:
    out = {"head": ("Head", "Head_End"), "neck": ("Neck", "Neck1", "Head"),
           "chest": ("Spine1", "Neck", "LeftShoulder", "RightShoulder", "LeftArm", "RightArm"),
           "abdomen": ("Hips", "LowerBack", "Spine", "Spine1"),
           "pelvis": ("Hips", "LowerBack", "LHipJoint", "RHipJoint", "LeftUpLeg", "RightUpLeg")}
    for side in SIDES:
        j = _CMU_SIDE[side]
        out[f"{side}_shoulder"] = (j["Shoulder"], j["Arm"])
        out[f"{side}_upper_arm"] = (j["Arm"], j["ForeArm"])
        out[f"{side}_forearm"] = (j["ForeArm"], j["Hand"])
        out[f"{side}_hand"] = (j["Hand"], j["FingerBase"], j["Index"], j["IndexEnd"], j["Thumb"],
                               j["ThumbEnd"])
        out[f"{side}_thigh"] = (j["UpLeg"], j["Leg"])
        out[f"{side}_shank"] = (j["Leg"], j["Foot"])
        out[f"{side}_foot"] = (j["Foot"], j["ToeBase"], j["ToeEnd"])
    return out


PART_JOINTS = _part_joints()

HEAD_RADII = np.array([76.0, 112.0, 95.0])
"""Head ellipsoid half-axes (lateral, vertical, front-back), mm, at head size 1."""
HEAD_TOP_ABOVE_HEAD_END = 30.0

HEAD_LANDMARK_DIRECTIONS = {
    "nose": (0.0, -0.2, 1.0),
    "left_eye": (31.0, 8.0, 80.0),
    "right_eye": (-31.0, 8.0, 80.0),
    "left_ear": (1.0, 0.02, 0.0),
    "right_ear": (-1.0, 0.02, 0.0),
    "head_top": (0.0, 1.0, 0.0),
}
"""Directions from the head centre (head frame: left, up, forward) of the surface landmarks."""

LANDMARK_PROTRUSION = {"nose": 15.0, "left_ear": 25.0, "right_ear": 25.0}
"""mm the nose and ears stand out of the skull ellipsoid; added to their depth tolerance, so an ear is
visible from the front and from behind, as it is on a person."""

SURFACE_INSET = 8.0
"""mm: surface landmarks sit this far under the head surface, so that their pixel lies inside the
head's outline even where the surface turns away from the camera (ears, head top)."""

HEAD_INTERIOR_LANDMARKS = {"head_bottom": (0.0, -0.8, 0.1)}
"""Points inside the head (head frame, in units of the half-axes): head_bottom is the base of the head
above the neck, where PoseTrack places it."""

VISIBILITY_MARGIN = 15.0
"""mm added to a joint's flesh radius to give its depth tolerance (see :func:`keypoint_recipes`)."""


@dataclass
class BodyShape:
    """Per-person body build: ``girth`` scales every limb and torso radius, ``head`` the head,
    ``belly`` the depth of the abdomen."""

    girth: float = 1.0
    head: float = 1.0
    belly: float = 1.0


def sample_shape(rng: np.random.Generator) -> BodyShape:
    return BodyShape(girth=float(rng.uniform(0.85, 1.2)), head=float(rng.uniform(0.93, 1.07)),
                     belly=float(rng.uniform(0.9, 1.25)))


@dataclass
class Primitive:
    """One solid: ``kind`` "cone" (a, b, r1, r2) or "ellipsoid" (center, axes columns, radii)."""

    kind: str
    part: int
    a: np.ndarray | None = None
    b: np.ndarray | None = None
    r1: float = 0.0
    r2: float = 0.0
    center: np.ndarray | None = None
    axes: np.ndarray | None = None
    radii: np.ndarray | None = None

    def transformed(self, rotation: np.ndarray, translation: np.ndarray) -> "Primitive":
        """The primitive after ``x -> R x + t`` (e.g. world -> camera)."""
        if self.kind == "cone":
            return Primitive("cone", self.part, rotation @ self.a + translation, rotation @ self.b + translation,
                             self.r1, self.r2)
        return Primitive(self.kind, self.part, center=rotation @ self.center + translation,
                         axes=rotation @ self.axes, radii=self.radii)

    def translated(self, offset) -> "Primitive":
        if self.kind == "cone":
            return Primitive("cone", self.part, self.a + offset, self.b + offset, self.r1, self.r2)
        return Primitive(self.kind, self.part, center=self.center + offset, axes=self.axes, radii=self.radii)

    def lowest(self, up=np.array([0.0, 1.0, 0.0])) -> float:
        """Lowest height of the solid along ``up``."""
        if self.kind == "cone":
            return min(float(self.a @ up) - self.r1, float(self.b @ up) - self.r2)
        extent = np.sqrt(np.sum((self.axes.T @ up) ** 2 * self.radii ** 2))
        return float(self.center @ up - extent)

    def flesh_radius(self) -> float:
        return max(self.r1, self.r2) if self.kind == "cone" else float(np.min(self.radii))


@dataclass
class Body:
    """A posed body in world coordinates: its primitives (one per part, in :data:`PARTS` order), its
    head ellipsoid frame and the surface landmarks."""

    primitives: list
    head_center: np.ndarray
    head_axes: np.ndarray            # columns: left, up, forward
    head_radii: np.ndarray
    landmarks: dict
    _stacked: dict | None = field(default=None, repr=False)

    def stacked(self) -> dict:
        """The primitives as arrays by kind (for the renderer): cone_a, cone_b (C, 3), cone_r1, cone_r2,
        cone_part (C,); ell_center (E, 3), ell_axes (E, 3, 3), ell_radii (E, 3), ell_part (E,)."""
        if self._stacked is None:
            self._stacked = self._stack()
        return self._stacked

    def _stack(self) -> dict:
        cones = [p for p in self.primitives if p.kind == "cone"]
        ells = [p for p in self.primitives if p.kind != "cone"]
        return {"cone_a": np.array([p.a for p in cones]), "cone_b": np.array([p.b for p in cones]),
                "cone_r1": np.array([p.r1 for p in cones]), "cone_r2": np.array([p.r2 for p in cones]),
                "cone_part": np.array([p.part for p in cones]),
                "ell_center": np.array([p.center for p in ells]), "ell_axes": np.array([p.axes for p in ells]),
                "ell_radii": np.array([p.radii for p in ells]), "ell_part": np.array([p.part for p in ells])}


@lru_cache(maxsize=None)
def _reference_lengths() -> np.ndarray:
    from posekit.data.synthetic.postures import DEFAULT_BONE_LENGTHS
    skeleton = get_skeleton(SKELETON)
    return np.array([DEFAULT_BONE_LENGTHS.get(n, 0.0) for n in skeleton.joints])


def _length(pos, a: int, b: int) -> float:
    return float(np.linalg.norm(pos[a] - pos[b]))


def head_frame(positions, skeleton: Skeleton | str = SKELETON) -> np.ndarray:
    """Head frame (3, 3), columns (left, up, forward): up from Head to Head_End; forward is the chest's
    forward axis made orthogonal to up."""
    skeleton = get_skeleton(skeleton)
    pos = np.asarray(positions, dtype=float)
    up = pos[skeleton.index("Head_End")] - pos[skeleton.index("Head")]
    forward = chest_frame(pos, skeleton)[:, 2]
    frame = frame_from_axes(up, forward)            # columns: up, forward, up x forward (= left)
    return np.stack([frame[:, 2], frame[:, 0], frame[:, 1]], axis=1)


def build_body(positions, shape: BodyShape | None = None) -> Body:
    """The body for one pose (K, 3) of the ``cmu_mocap`` skeleton (millimetres)."""
    skeleton = get_skeleton(SKELETON)
    pos = np.asarray(positions, dtype=float)
    if pos.shape != (len(skeleton), 3):
        raise PosekitError(f"build_body: expected cmu_mocap positions ({len(skeleton)}, 3), got {pos.shape}")
    if not np.all(np.isfinite(pos)):
        raise PosekitError("build_body: joint positions must be finite")
    shape = shape or BodyShape()
    ref = _reference_lengths()
    j = skeleton.index
    g = shape.girth
    prims: list[Primitive] = [None] * len(PARTS)   # type: ignore[list-item]

    def ratio(joint: str) -> float:
        reference = ref[j(joint)]
        return _length(pos, j(joint), skeleton.parents[j(joint)]) / reference if reference > 0 else 1.0

    pelvis = pelvis_frame(pos, skeleton)
    chest = chest_frame(pos, skeleton)
    spine_ratio = _length(pos, j("Neck"), j("Hips")) / (ref[j("Spine")] + ref[j("Spine1")] + ref[j("Neck")])
    hip_ratio = _length(pos, j("LeftUpLeg"), j("RightUpLeg")) / (2 * ref[j("LeftUpLeg")] * 0.656)
    shoulder_ratio = _length(pos, j("LeftArm"), j("RightArm")) / (2 * ref[j("LeftArm")] * 0.968)

    def put(name: str, prim: Primitive):
        prims[PARTS.index(name)] = prim

    def cone(name, a, b, r1, r2):
        put(name, Primitive("cone", PARTS.index(name), np.asarray(a, float), np.asarray(b, float),
                            float(r1), float(r2)))

    def ellipsoid(name, center, axes, radii):
        put(name, Primitive("ellipsoid", PARTS.index(name), center=np.asarray(center, float),
                            axes=np.asarray(axes, float), radii=np.asarray(radii, float)))

    # torso
    ellipsoid("pelvis", pos[j("Hips")] + pelvis @ np.array([0.0, -30.0, 20.0]) * spine_ratio, pelvis,
              np.array([150.0 * hip_ratio, 120.0 * spine_ratio, 105.0]) * g)
    abdomen_axes = frame_from_axes(pelvis[:, 0] + chest[:, 0], pos[j("Neck")] - pos[j("Hips")])
    trunk_mid = (pos[j("Hips")] + pos[j("Neck")]) / 2
    ellipsoid("abdomen", trunk_mid + abdomen_axes @ np.array([0.0, -20.0, 38.0]), abdomen_axes,
              np.array([132.0 * (hip_ratio + shoulder_ratio) / 2, 205.0 * spine_ratio, 98.0 * shape.belly]) * g)
    chest_center = pos[j("Spine1")] + 0.55 * (pos[j("Neck")] - pos[j("Spine1")]) + chest[:, 2] * 30.0
    ellipsoid("chest", chest_center, chest,
              np.array([150.0 * shoulder_ratio, 135.0 * spine_ratio, 100.0]) * g)

    # head and neck
    up_head = head_frame(pos, skeleton)
    neck_ratio = ratio("Head")
    cone("neck", pos[j("Neck")], pos[j("Head")], 50.0 * g * neck_ratio, 44.0 * g * neck_ratio)
    head_radii = HEAD_RADII * shape.head
    head_center = (pos[j("Head_End")] + up_head[:, 1] * (HEAD_TOP_ABOVE_HEAD_END * shape.head - head_radii[1])
                   + up_head[:, 2] * 12.0 * shape.head)
    ellipsoid("head", head_center, up_head, head_radii)

    for side in SIDES:
        n = _CMU_SIDE[side]
        p = {key: pos[j(name)] for key, name in n.items()}
        base = pos[j("Neck")] + 0.25 * (p["Arm"] - pos[j("Neck")])
        cone(f"{side}_shoulder", base, p["Arm"], 52.0 * g * shoulder_ratio, 48.0 * g)
        r_arm = ratio(n["ForeArm"])
        cone(f"{side}_upper_arm", p["Arm"], p["ForeArm"], 46.0 * g * r_arm, 36.0 * g * r_arm)
        r_fore = ratio(n["Hand"])
        cone(f"{side}_forearm", p["ForeArm"], p["Hand"], 35.0 * g * r_fore, 26.0 * g * r_fore)
        hand_axis = p["IndexEnd"] - p["Hand"]
        hand_len = float(np.linalg.norm(hand_axis))
        hand_axes = frame_from_axes(hand_axis, p["ThumbEnd"] - p["Hand"])
        ellipsoid(f"{side}_hand", p["Hand"] + 0.5 * hand_axis, hand_axes,
                  np.array([0.5 * hand_len + 6.0, 0.2 * hand_len + 2.0, 0.09 * hand_len + 3.0]) * np.sqrt(g))
        r_thigh = ratio(n["Leg"])
        cone(f"{side}_thigh", p["UpLeg"], p["Leg"], 78.0 * g * r_thigh, 50.0 * g * r_thigh)
        r_shank = ratio(n["Foot"])
        cone(f"{side}_shank", p["Leg"], p["Foot"], 48.0 * g * r_shank, 32.0 * g * r_shank)
        foot_dir = p["ToeEnd"] - p["Foot"]
        foot_len = float(np.linalg.norm(foot_dir))
        foot_dir = foot_dir / max(foot_len, 1e-9)
        shank_dir = (p["Foot"] - p["Leg"]) / max(_length(pos, j(n["Foot"]), j(n["Leg"])), 1e-9)
        heel = p["Foot"] + shank_dir * 30.0 - foot_dir * 30.0
        toe = p["ToeEnd"] - foot_dir * 15.0
        cone(f"{side}_foot", heel, toe, 34.0 * np.sqrt(g), 24.0 * np.sqrt(g))

    landmarks = {name: _ellipsoid_point(head_center, up_head, head_radii, direction, SURFACE_INSET)
                 for name, direction in HEAD_LANDMARK_DIRECTIONS.items()}
    landmarks.update({name: head_center + up_head @ (np.asarray(fraction) * head_radii)
                      for name, fraction in HEAD_INTERIOR_LANDMARKS.items()})
    return Body(prims, head_center, up_head, head_radii, landmarks)


def _ellipsoid_point(center, axes, radii, direction, inset: float = 0.0) -> np.ndarray:
    """The point of the ellipsoid surface in ``direction`` (ellipsoid frame) from its centre, moved
    ``inset`` along the inward normal."""
    d = np.asarray(direction, dtype=float)
    d = d / np.linalg.norm(d)
    point = d / np.sqrt(np.sum((d / radii) ** 2))
    normal = point / np.asarray(radii, dtype=float) ** 2
    point = point - inset * normal / np.linalg.norm(normal)
    return center + axes @ point


def surface_normal_in_frame(radii, direction) -> np.ndarray:
    """Unit outward normal (ellipsoid frame) at the surface point in ``direction`` from the centre."""
    d = np.asarray(direction, dtype=float)
    point = d / np.sqrt(np.sum((d / radii) ** 2))
    normal = point / np.asarray(radii, dtype=float) ** 2
    return normal / np.linalg.norm(normal)


# ----------------------------------------------------------------------------------- keypoints

@dataclass(frozen=True)
class KeypointRecipe:
    """How each keypoint of a skeleton is made from a body.

    sources[k]: cmu_mocap joint indices averaged for keypoint k (empty for a head landmark);
    landmark[k]: head landmark name or ""; surface[k]: True for a point on the head surface (its
    visibility uses depth alone); own_parts[k]: part ids the keypoint belongs to;
    tolerance[k] is computed per body (see :func:`keypoint_tolerances`).
    """

    skeleton: str
    sources: tuple
    landmark: tuple
    surface: tuple
    own_parts: tuple


@lru_cache(maxsize=None)
def keypoint_recipes(skeleton_name: str) -> KeypointRecipe:
    """The recipe of every joint of a skeleton (see the module notes for the search order)."""
    target = get_skeleton(skeleton_name)
    cmu = get_skeleton(SKELETON)
    direct = None
    if any(s == SKELETON and t == target.name for s, t in list_mappings()):
        mapping = get_mapping(SKELETON, target.name)
        direct = {target.joints[k]: src for k, src in enumerate(mapping.sources) if src}
    by_name: dict[str, tuple[int, ...]] = {}
    for source, other in list_mappings():
        if source == SKELETON and other != target.name:
            mapping = get_mapping(SKELETON, other)
            for k, src in enumerate(mapping.sources):
                if src:
                    by_name.setdefault(get_skeleton(other).joints[k], src)
    sources, landmarks, surface, own = [], [], [], []
    for name in target.joints:
        if name in HEAD_LANDMARK_DIRECTIONS or name in HEAD_INTERIOR_LANDMARKS:
            sources.append(())
            landmarks.append(name)
            surface.append(name in HEAD_LANDMARK_DIRECTIONS)
            own.append((PARTS.index("head"),) if surface[-1] else (PARTS.index("head"), PARTS.index("neck")))
            continue
        if direct is not None and name in direct:
            src = direct[name]
        elif name in cmu.joints:
            src = (cmu.index(name),)
        elif name in by_name:
            src = by_name[name]
        else:
            raise PosekitError(f"synthetic data: skeleton {target.name!r} joint {name!r} has no source on the "
                               f"body model; add a mapping posekit/skeletons/mappings/"
                               f"cmu_mocap_to_{target.name}.yaml")
        names = {cmu.joints[i] for i in src}
        parts = tuple(i for i, part in enumerate(PARTS) if names & set(PART_JOINTS[part]))
        sources.append(tuple(src))
        landmarks.append("")
        surface.append(False)
        own.append(parts)
    return KeypointRecipe(target.name, tuple(sources), tuple(landmarks), tuple(surface), tuple(own))


def body_keypoints(positions, body: Body, skeleton_name: str) -> np.ndarray:
    """(K, 3) world keypoints of a skeleton on one posed body."""
    recipe = keypoint_recipes(get_skeleton(skeleton_name).name)
    pos = np.asarray(positions, dtype=float)
    out = np.empty((len(recipe.sources), 3))
    for k, (src, landmark) in enumerate(zip(recipe.sources, recipe.landmark)):
        out[k] = body.landmarks[landmark] if landmark else pos[list(src)].mean(axis=0)
    return out


def keypoint_tolerances(body: Body, skeleton_name: str) -> np.ndarray:
    """Depth tolerance (mm) of each keypoint: the smallest flesh radius among its own parts plus
    :data:`VISIBILITY_MARGIN` for joint centres; for surface landmarks the inset, the margin and the
    feature's :data:`LANDMARK_PROTRUSION`."""
    recipe = keypoint_recipes(get_skeleton(skeleton_name).name)
    out = np.empty(len(recipe.sources))
    for k, (on_surface, parts, name) in enumerate(zip(recipe.surface, recipe.own_parts, recipe.landmark)):
        flesh = SURFACE_INSET + LANDMARK_PROTRUSION.get(name, 0.0) if on_surface else \
            min(body.primitives[p].flesh_radius() for p in parts)
        out[k] = flesh + VISIBILITY_MARGIN
    return out
