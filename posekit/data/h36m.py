"""Human3.6M and HumanEva-I in the VideoPose3D archive layouts, MMPose's Human3.6M sample and cameras.

VideoPose3D archives (``np.savez_compressed`` of pickled dicts, read here without ``allow_pickle``):

- ``data_3d_h36m.npz``: ``positions_3d`` = {subject: {action: (T, 32, 3) float32}}, world coordinates in
  **metres** (VideoPose3D divides the dataset's millimetres by 1000). :func:`read_h36m_3d` removes the 15
  joints VideoPose3D removes (:data:`H36M32_REMOVED`) to get ``h36m17`` and multiplies by 1000, so every
  :class:`Motion` is in millimetres, 50 fps. Archives already reduced to 17 joints are read as they are.
- ``data_2d_h36m_<detector>.npz``: ``positions_2d`` = {subject: {action: [(T, K, 2) per camera]}} in pixels,
  cameras in :data:`H36M_CAMERAS` order, and ``metadata`` = {``layout_name``, ``num_joints``,
  ``keypoints_symmetry``}. The layout picks the skeleton (``h36m`` -> h36m17, ``coco`` -> coco17 for
  Detectron's keypoints, ``mpii`` -> mpii16); without one (the ground-truth file) it is h36m17. The left/right
  lists of ``keypoints_symmetry`` are checked against the skeleton's flip pairs.
- HumanEva-I: ``data_3d_humaneva15.npz`` / ``data_2d_humaneva15_<detector>.npz``, the same structure with
  subjects ``Train/S1`` ... ``Validate/S3`` (and ``Unlabeled/...`` in detection files), actions such as
  ``Walking 1 chunk0`` (mocap dropouts split a take into chunks), 3 cameras (a missing one is ``None``),
  15 joints (``humaneva15``), metres -> millimetres, 60 fps.

MMPose's sample layout (``test_h36m_body3d.npz``: ``imgname``, ``center``, ``scale``, ``part`` (N, 17, 3) pixels
+ visibility, ``S`` (N, 17, 4) camera-frame metres + confidence) is read by :func:`read_h36m_body3d`, and
its ``cameras.pkl`` by :func:`read_h36m_cameras`. In that pickle ``R`` and ``T`` map camera to world,
``X_world = R X_cam + T`` with ``T`` (the camera centre) in metres -- the transpose of the Human3.6M/Campus
``Xc = R (X - T)`` spelling, as the sample's own 3D poses show (feet on the floor only this way). Its
distortion is Human3.6M's own model; posekit's OpenCV model with the same ``k``, ``p`` reproduces the sample's
2D keypoints to within 0.2 px.

Protocols (:data:`H36M_SPLITS`): train S1, S5, S6, S7, S8; test S9, S11 (S11 "Directions" is missing from
VideoPose3D's archives: its video is corrupt). Metrics, as VideoPose3D and MMPose number them
(:data:`H36M_PROTOCOL_METRICS`): Protocol #1 MPJPE after root alignment, #2 P-MPJPE (after similarity
Procrustes alignment, :func:`posekit.geometry.similarity_procrustes`), #3 N-MPJPE (scale-only alignment).
Older papers (e.g. 3D Human Pose Machines) use "Protocol #3" for a data split instead:
:data:`H36M_PROTOCOL3_SPLIT_3DPM` (train S1, S5, S6, S7, S8, S9; test every 64th frame of S11).
HumanEva-I (:data:`HUMANEVA_SPLITS`): train ``Train/S1-3``, test ``Validate/S1-3``, actions Walk, Jog, Box.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from posekit.data.safe_pickle import describe, numeric, safe_load_npz, safe_load_pickle
from posekit.data.structures import ImageInfo, Motion, PoseInstances
from posekit.errors import PosekitError
from posekit.geometry.camera import Camera
from posekit.skeletons import Skeleton, get_skeleton

METRES_TO_MM = 1000.0
H36M_FPS = 50.0
HUMANEVA_FPS = 60.0
PIXEL_STD = 200.0  # MMPose's box scale unit

# VideoPose3D common/h36m_dataset.py: joints of the 32-joint mocap skeleton dropped to get 17.
H36M32_REMOVED = (4, 5, 9, 10, 11, 16, 20, 21, 22, 23, 24, 28, 29, 30, 31)
H36M32_KEPT = tuple(j for j in range(32) if j not in H36M32_REMOVED)
H36M_CAMERAS = ("54138969", "55011271", "58860488", "60457274")
HUMANEVA_CAMERAS = ("C1", "C2", "C3")

H36M_SPLITS = {"train": ("S1", "S5", "S6", "S7", "S8"), "test": ("S9", "S11")}
H36M_PROTOCOL_METRICS = {1: "mpjpe", 2: "p-mpjpe", 3: "n-mpjpe"}
H36M_PROTOCOL3_SPLIT_3DPM = {"train": ("S1", "S5", "S6", "S7", "S8", "S9"), "test": ("S11",),
                             "test_frame_step": 64}
# "actions" are prefixes of the action names ("Walking 1 chunk0", "Jog 1 chunk1"...), as VideoPose3D's
# "-a Walk,Jog,Box" matches them.
HUMANEVA_SPLITS = {"train": ("Train/S1", "Train/S2", "Train/S3"),
                   "test": ("Validate/S1", "Validate/S2", "Validate/S3"),
                   "actions": ("Walk", "Jog", "Box")}

# metadata["layout_name"] of VideoPose3D 2D archives -> posekit skeleton
_LAYOUTS = {"h36m": "h36m17", "coco": "coco17", "mpii": "mpii16", "humaneva15": "humaneva15"}
_IMAGE_NAME = re.compile(r"^(S\d+)_(.+)\.(\d+)_(\d+)\.\w+$")


# ----------------------------------------------------------------------------- VideoPose3D archives

def read_h36m_3d(path) -> dict[str, dict[str, Motion]]:
    """``data_3d_h36m.npz`` -> {subject: {action: Motion (h36m17, millimetres, 50 fps)}}."""
    return _read_vp3d_3d(path, get_skeleton("h36m17"), H36M_FPS, reduce_32=True)


def read_humaneva_3d(path) -> dict[str, dict[str, Motion]]:
    """``data_3d_humaneva15.npz`` -> {``Train/S1``...: {``Walking 1 chunk0``...: Motion (humaneva15, mm, 60 fps)}}."""
    return _read_vp3d_3d(path, get_skeleton("humaneva15"), HUMANEVA_FPS, reduce_32=False)


def read_h36m_2d(path) -> dict:
    """``data_2d_h36m_<detector>.npz`` -> 2D keypoints per subject, action and camera, in pixels as stored.

    Returns ``{"skeleton": Skeleton (from the layout), "keypoints": {subject: {action: [(T, K, 2) array or
    None per camera, in H36M_CAMERAS order]}}, "scores": the same nesting with (T, K) confidences where the
    archive stores a third column (None otherwise), "metadata": the archive's metadata dict}``.
    """
    return _read_vp3d_2d(path, "h36m17", len(H36M_CAMERAS))


def read_humaneva_2d(path) -> dict:
    """``data_2d_humaneva15_<detector>.npz`` -> the same structure as :func:`read_h36m_2d` (3 cameras)."""
    return _read_vp3d_2d(path, "humaneva15", len(HUMANEVA_CAMERAS))


def _archive_dict(arrays: dict, key: str, path: Path) -> dict:
    """The dict VideoPose3D pickled under ``key`` (a 0-d object array)."""
    if key not in arrays:
        raise PosekitError(f"{path}: no {key!r} in the archive (found: {describe(list(arrays))})")
    value = arrays[key]
    if value.shape != () or not isinstance(value.item(), dict):
        raise PosekitError(f"{path}: {key!r} must be a pickled dict, got an array of shape {value.shape}")
    return value.item()


def _nested(mapping, path: Path, key: str):
    """(subject, action, value) for {subject: {action: value}}, with names checked to be strings."""
    for subject, actions in mapping.items():
        if not isinstance(subject, str) or not isinstance(actions, dict):
            raise PosekitError(f"{path}: {key!r} must map subject names to dicts of actions")
        for action, value in actions.items():
            if not isinstance(action, str):
                raise PosekitError(f"{path}: {key}[{subject!r}] has a non-string action name {describe(action)}")
            yield subject, action, value


def _read_vp3d_3d(path, skeleton: Skeleton, fps: float, reduce_32: bool):
    path = Path(path)
    data = _archive_dict(safe_load_npz(path), "positions_3d", path)
    k = len(skeleton)
    out: dict[str, dict[str, Motion]] = {}
    for subject, action, positions in _nested(data, path, "positions_3d"):
        where = f"{path}: positions_3d[{subject!r}][{action!r}]"
        arr = numeric(positions, where, (None, None, 3))
        if reduce_32 and arr.shape[1] == len(H36M32_KEPT) + len(H36M32_REMOVED):
            arr = arr[:, H36M32_KEPT]
        if arr.shape[1] != k:
            raise PosekitError(f"{where}: {arr.shape[1]} joints, expected {k} ({skeleton.name})"
                               + (" or 32" if reduce_32 else ""))
        out.setdefault(subject, {})[action] = Motion(
            skeleton, arr * METRES_TO_MM, fps,
            meta={"source": str(path), "subject": subject, "action": action, "frame": "world"})
    return out


def _read_vp3d_2d(path, default_skeleton: str, n_cameras: int) -> dict:
    """A VideoPose3D 2D archive; the skeleton comes from its metadata, else ``default_skeleton``."""
    path = Path(path)
    arrays = safe_load_npz(path)
    positions = _archive_dict(arrays, "positions_2d", path)
    metadata = _archive_dict(arrays, "metadata", path) if "metadata" in arrays else {}
    skeleton = _layout_skeleton(metadata, default_skeleton, path)
    k = len(skeleton)
    keypoints: dict = {}
    scores: dict = {}
    for subject, action, cameras in _nested(positions, path, "positions_2d"):
        where = f"{path}: positions_2d[{subject!r}][{action!r}]"
        if not isinstance(cameras, (list, tuple)) or not 1 <= len(cameras) <= n_cameras:
            raise PosekitError(f"{where}: expected a list of up to {n_cameras} per-camera arrays")
        kp_list, score_list = [], []
        for c, view in enumerate(cameras):
            if view is None:
                kp_list.append(None)
                score_list.append(None)
                continue
            arr = numeric(view, f"{where}[{c}]", (None, k, None))
            if arr.shape[2] not in (2, 3):
                raise PosekitError(f"{where}[{c}]: expected (T, {k}, 2) or (T, {k}, 3), got {arr.shape}")
            kp_list.append(arr[..., :2])
            score_list.append(arr[..., 2] if arr.shape[2] == 3 else None)
        keypoints.setdefault(subject, {})[action] = kp_list
        scores.setdefault(subject, {})[action] = score_list
    return {"skeleton": skeleton, "keypoints": keypoints, "scores": scores, "metadata": metadata}


def _layout_skeleton(metadata: dict, default: str, path: Path) -> Skeleton:
    layout = metadata.get("layout_name")
    if layout is None:
        skeleton = get_skeleton(default)
    elif isinstance(layout, str) and layout in _LAYOUTS:
        skeleton = get_skeleton(_LAYOUTS[layout])
    else:
        raise PosekitError(f"{path}: unknown keypoint layout {describe(layout)} (known: {', '.join(_LAYOUTS)})")
    if "num_joints" in metadata:
        count = metadata["num_joints"]
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count != len(skeleton):
            raise PosekitError(f"{path}: metadata says {describe(count)} joints, skeleton {skeleton.name!r} "
                               f"has {len(skeleton)}")
    if "keypoints_symmetry" in metadata:
        symmetry = metadata["keypoints_symmetry"]
        try:
            left, right = (np.asarray(side, dtype=int).ravel() for side in symmetry)
            pairs = {frozenset(map(int, p)) for p in zip(left, right, strict=True)}
        except (TypeError, ValueError, OverflowError):
            raise PosekitError(f"{path}: metadata 'keypoints_symmetry' must be two lists of joint "
                               f"indices (left, right)") from None
        if pairs != {frozenset(p) for p in skeleton.flip_pairs}:
            raise PosekitError(f"{path}: metadata 'keypoints_symmetry' does not match the left/right "
                               f"joints of skeleton {skeleton.name!r}")
    return skeleton


# ----------------------------------------------------------------------------- MMPose sample layout

def read_h36m_body3d(path) -> dict:
    """MMPose's ``test_h36m_body3d.npz`` layout -> 2D poses, camera-frame 3D poses and frame identities.

    Returns ``{"skeleton": h36m17, "poses_2d": PoseInstances (``part``: pixels, visibility; boxes from
    ``center`` and ``scale`` x 200 px), "positions": (N, 17, 3) camera-frame millimetres (``S`` is in
    metres), "confidence": (N, 17) (``S``'s 4th column), "subjects", "actions", "cameras", "frames":
    lists parsed from ``imgname`` (``S1/S1_Directions_1.54138969/S1_Directions_1.54138969_000001.jpg``
    -> S1, Directions_1, 54138969, 1)}``.
    """
    path = Path(path)
    skeleton = get_skeleton("h36m17")
    k = len(skeleton)
    arrays = safe_load_npz(path)
    for key in ("imgname", "center", "scale", "part", "S"):
        if key not in arrays:
            raise PosekitError(f"{path}: no {key!r} in the archive (found: {describe(list(arrays))})")
    names = arrays["imgname"]
    if names.dtype.kind != "U" or names.ndim != 1:
        raise PosekitError(f"{path}: 'imgname' must be a list of strings")
    n = len(names)
    center = numeric(arrays["center"], f"{path}: 'center'", (n, 2))
    scale = numeric(arrays["scale"], f"{path}: 'scale'", (n,))
    part = numeric(arrays["part"], f"{path}: 'part'", (n, k, 3))
    body = numeric(arrays["S"], f"{path}: 'S'", (n, k, 4))
    subjects, actions, cameras, frames = [], [], [], []
    for i, name in enumerate(names):
        match = _IMAGE_NAME.match(Path(str(name)).name)
        if match is None:
            raise PosekitError(f"{path}: imgname[{i}] {str(name)!r} is not <subject>_<action>.<camera>_<frame>.jpg")
        subjects.append(match[1])
        actions.append(match[2])
        cameras.append(match[3])
        frames.append(int(match[4]))
    side = scale * PIXEL_STD
    boxes = np.stack([center[:, 0] - side / 2, center[:, 1] - side / 2, side, side], axis=1)
    images = {i + 1: ImageInfo(id=i + 1, file_name=str(name), sequence=f"{s}_{a}.{c}", frame_index=f)
              for i, (name, s, a, c, f) in enumerate(zip(names, subjects, actions, cameras, frames, strict=True))}
    poses_2d = PoseInstances(skeleton, part[..., :2], part[..., 2], np.arange(1, n + 1), boxes=boxes,
                             images=images, meta={"source": str(path)})
    return {"skeleton": skeleton, "poses_2d": poses_2d, "positions": body[..., :3] * METRES_TO_MM,
            "confidence": body[..., 3], "subjects": subjects, "actions": actions, "cameras": cameras,
            "frames": frames}


def read_h36m_cameras(path) -> dict[tuple[str, str], Camera]:
    """MMPose's Human3.6M ``cameras.pkl`` -> {(subject, camera id): Camera} in millimetres.

    Each entry holds ``R``, ``T`` (camera -> world, ``T`` in metres), ``f``, ``c``, ``k`` (3 radial),
    ``p`` (2 tangential), ``w``, ``h``. The Camera maps world millimetres to pixels:
    ``R_cam = R.T``, ``t = -R.T @ T * 1000``; distortion ``(k1, k2, p1, p2, k3)``.
    The pickle is read with the restricted unpickler (numpy arrays and plain containers only).
    """
    path = Path(path)
    data = safe_load_pickle(path)
    if not isinstance(data, dict):
        raise PosekitError(f"{path}: expected a dict of cameras, got {type(data).__name__}")
    cameras = {}
    for key, entry in data.items():
        if not (isinstance(key, tuple) and len(key) == 2 and all(isinstance(x, str) for x in key)):
            raise PosekitError(f"{path}: camera keys must be (subject, camera id) pairs, got {describe(key)}")
        where = f"{path}: camera {key}"
        if not isinstance(entry, dict):
            raise PosekitError(f"{where}: expected a dict of parameters")
        fields = {}
        for name, shape in (("R", (3, 3)), ("T", (3, 1)), ("f", (2, 1)), ("c", (2, 1)), ("k", (3, 1)),
                            ("p", (2, 1))):
            if name not in entry:
                raise PosekitError(f"{where}: missing field {name!r}")
            fields[name] = numeric(entry[name], f"{where}: field {name!r}", shape)
        rotation, centre = fields["R"], fields["T"].ravel()
        if np.linalg.norm(centre) > 100:
            raise PosekitError(f"{where}: field 'T' is {np.linalg.norm(centre):.0f} from the origin; "
                               f"expected metres (Human3.6M cameras are about 5 m away)")
        (fx, fy), (cx, cy) = fields["f"].ravel(), fields["c"].ravel()
        k1, k2, k3 = fields["k"].ravel()
        p1, p2 = fields["p"].ravel()
        size = {name: float(numeric(entry[name], f"{where}: field {name!r}", ()))
                for name in ("w", "h") if name in entry}
        try:
            cameras[key] = Camera(
                K=[[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], R=rotation.T,
                t=-rotation.T @ centre * METRES_TO_MM, dist=[k1, k2, p1, p2, k3],
                width=size.get("w"), height=size.get("h"), name=f"{key[0]}/{key[1]}")
        except PosekitError as exc:
            raise PosekitError(f"{path}: {' '.join(str(exc).split())}") from None
    return cameras


__all__ = ["read_h36m_3d", "read_h36m_2d", "read_humaneva_3d", "read_humaneva_2d", "read_h36m_body3d",
           "read_h36m_cameras", "H36M_SPLITS", "H36M_PROTOCOL_METRICS", "H36M_PROTOCOL3_SPLIT_3DPM",
           "HUMANEVA_SPLITS", "H36M_CAMERAS", "HUMANEVA_CAMERAS", "H36M32_REMOVED", "H36M_FPS",
           "HUMANEVA_FPS"]
