"""Calibrated multi-camera datasets: CMU Panoptic Studio, and Campus/Shelf.

CMU Panoptic (panoptic-toolbox layout), world unit centimetres, converted here to **millimetres**:

- ``calibration_<sequence>.json``: ``{"cameras": [{"name": "00_01", "type": "hd"|"vga"|"kinect-color",
  "resolution": [w, h], "K", "distCoef" (OpenCV k1, k2, p1, p2, k3), "R", "t"}]}`` with ``Xc = R X + t``.
- ``hdPose3d_stage1_coco19/body3DScene_<frame>.json``: ``{"univTime", "bodies": [{"id", "joints19":
  [x, y, z, c] * 19}]}``, joints in the ``panoptic19`` order. A confidence of -1 marks a joint that was not
  reconstructed: its position is NaN here (the file has zeros).

Campus and Shelf (Belagiannis et al.; calibration as distributed with VoxelPose):

- ``calibration_campus.json`` / ``calibration_shelf.json``: ``{"0": {"R", "T", "fx", "fy", "cx", "cy",
  "k", "p"}, ...}`` with ``Xc = R (X - T)``: ``T`` is the camera centre, in millimetres.
- ``actorsGT.mat``: ``actor3D`` (actors x frames cell array of 14 x 3 poses in **metres**, empty where the
  actor is not annotated) and ``actor2D`` (the same per camera, 14 x 2 pixels). The 14 joints, in the
  order of the dataset's README, are :data:`CAMPUS_JOINTS`; posekit has no skeleton file for them, so
  :func:`read_campus_gt` returns the names with the arrays.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from posekit.data.safe_pickle import describe, numeric, read_json, read_mat, require
from posekit.errors import PosekitError
from posekit.geometry.camera import Camera
from posekit.skeletons import get_skeleton

CM_TO_MM = 10.0
METRES_TO_MM = 1000.0
PANOPTIC_MISSING = -1.0  # joints19 confidence of a joint that was not reconstructed

CAMPUS_JOINTS = ("right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
                 "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow",
                 "left_wrist", "head_bottom", "head_top")


# ----------------------------------------------------------------------------- CMU Panoptic

def read_panoptic_calibration(path, types=None) -> dict[str, Camera]:
    """Panoptic calibration JSON -> {camera name: Camera} (world in millimetres).

    ``types``: a camera type or a collection of them (``"hd"``, ``"vga"``, ``"kinect-color"``) to keep;
    ``None`` keeps all. Asking for a type the file does not have is an error (it is usually a typo).
    """
    path = Path(path)
    cameras = require(read_json(path), "cameras", str(path))
    if not isinstance(cameras, list):
        raise PosekitError(f"{path}: field 'cameras' must be a list")
    wanted = _camera_types(types)
    found_types, out = set(), {}
    for i, entry in enumerate(cameras):
        where = f"{path}: cameras[{i}]"
        kind = require(entry, "type", where)
        name = require(entry, "name", where)
        if not isinstance(kind, str) or not isinstance(name, str):
            raise PosekitError(f"{where}: fields 'type' and 'name' must be strings")
        found_types.add(kind)
        if wanted is not None and kind not in wanted:
            continue
        if name in out:
            raise PosekitError(f"{where}: duplicate camera name {name!r}")
        for key in ("K", "R", "t", "distCoef"):
            require(entry, key, where)
        out[name] = _camera(entry, where, length_scale=CM_TO_MM)
    if wanted is not None and not wanted <= found_types:
        raise PosekitError(f"{path}: no cameras of type {describe(sorted(wanted - found_types))} "
                           f"(the file has: {describe(sorted(found_types))})")
    return out


def _camera_types(types) -> set[str] | None:
    if types is None:
        return None
    wanted = [types] if isinstance(types, str) else types
    try:
        wanted = set(wanted)
    except TypeError:
        wanted = None
    if not wanted or not all(isinstance(kind, str) for kind in wanted):
        raise PosekitError(f"types: expected a camera type or a list of them, got {describe(types)}")
    return wanted


def read_panoptic_body3d(path) -> dict:
    """One ``body3DScene_*.json`` -> ``{"skeleton": panoptic19, "ids": (P,), "joints": (P, 19, 3) mm,
    "confidence": (P, 19), "univ_time": float | None}``; missing joints (confidence -1) are NaN."""
    path = Path(path)
    skeleton = get_skeleton("panoptic19")
    k = len(skeleton)
    data = read_json(path)
    bodies = require(data, "bodies", str(path))
    if not isinstance(bodies, list):
        raise PosekitError(f"{path}: field 'bodies' must be a list")
    ids = np.zeros(len(bodies), dtype=np.int64)
    joints, confidence = np.zeros((len(bodies), k, 3)), np.zeros((len(bodies), k))
    for i, body in enumerate(bodies):
        where = f"{path}: bodies[{i}]"
        if isinstance(body, dict) and "joints19" not in body and "joints15" in body:
            raise PosekitError(f"{where}: only the 19-joint layout ('joints19') is supported, found 'joints15'")
        flat = numeric(require(body, "joints19", where), f"{where}: field 'joints19'", (None,))
        if flat.size != 4 * k:
            raise PosekitError(f"{where}: field 'joints19' must hold {4 * k} numbers (x, y, z, c for {k} "
                               f"joints), got {flat.size}")
        ident = float(numeric(require(body, "id", where), f"{where}: field 'id'", ()))
        if not ident.is_integer() or abs(ident) >= 2**63:
            raise PosekitError(f"{where}: field 'id' must be an integer")
        ids[i] = int(ident)
        joints[i], confidence[i] = flat.reshape(k, 4)[:, :3] * CM_TO_MM, flat.reshape(k, 4)[:, 3]
    joints[confidence <= PANOPTIC_MISSING] = np.nan
    univ_time = data.get("univTime")
    if univ_time is not None:
        univ_time = float(numeric(univ_time, f"{path}: field 'univTime'", ()))
    return {"skeleton": skeleton, "ids": ids, "joints": joints, "confidence": confidence,
            "univ_time": univ_time}


def _camera(entry: dict, where: str, **options) -> Camera:
    """``Camera.from_dict`` with its message kept to one line (it may quote a multi-line value)."""
    try:
        return Camera.from_dict(entry, where=where, **options)
    except PosekitError as exc:
        raise PosekitError(" ".join(str(exc).split())) from None


# ----------------------------------------------------------------------------- Campus / Shelf

def read_campus_calibration(path) -> dict[str, Camera]:
    """Campus/Shelf calibration JSON -> {camera id ("0", "1", ...): Camera} (world in millimetres)."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict) or not data:
        raise PosekitError(f"{path}: expected a JSON object of cameras keyed by id")
    out = {}
    for name, entry in data.items():
        where = f"{path}: camera {name!r}"
        for key in ("R", "T", "fx", "fy", "cx", "cy"):
            require(entry, key, where)
        out[name] = _camera(entry, str(path), name=name)
    return out


def read_campus_gt(path) -> dict:
    """Campus/Shelf ``actorsGT.mat`` -> arrays over actors and frames.

    Returns ``{"joint_names": CAMPUS_JOINTS, "positions": (A, F, 14, 3) world millimetres (the file is in
    metres), NaN where not annotated, "annotated": (A, F) bool, "keypoints_2d": (A, F, C, 14, 2) pixels per
    camera, NaN where not annotated (None when the file has no ``actor2D``)}``.
    """
    path = Path(path)
    mat = read_mat(path)
    k = len(CAMPUS_JOINTS)
    cells = _actor_frames(mat, "actor3D", path)
    n_actors, n_frames = cells.shape
    positions = np.full((n_actors, n_frames, k, 3), np.nan)
    for (a, f), pose in np.ndenumerate(cells):
        if pose.size:
            positions[a, f] = numeric(pose, f"{path}: actor3D{{{a + 1}}}{{{f + 1}}}", (k, 3)) * METRES_TO_MM
    annotated = np.isfinite(positions).all(axis=(2, 3))
    keypoints_2d = None
    if "actor2D" in mat:
        cells_2d = _actor_frames(mat, "actor2D", path)
        if cells_2d.shape != cells.shape:
            raise PosekitError(f"{path}: actor2D has {cells_2d.shape} actors x frames, actor3D {cells.shape}")
        views = [_views(cell, path, a, f) for (a, f), cell in np.ndenumerate(cells_2d)]
        n_cameras = max((len(v) for v in views), default=0)
        keypoints_2d = np.full((n_actors, n_frames, n_cameras, k, 2), np.nan)
        for index, view_list in enumerate(views):
            a, f = divmod(index, n_frames)
            for c, pose in enumerate(view_list):
                if pose.size:
                    keypoints_2d[a, f, c] = numeric(pose, f"{path}: actor2D{{{a + 1}}}{{{f + 1}}}{{{c + 1}}}",
                                                    (k, 2))
    return {"joint_names": CAMPUS_JOINTS, "positions": positions, "annotated": annotated,
            "keypoints_2d": keypoints_2d}


def _actor_frames(mat: dict, key: str, path: Path) -> np.ndarray:
    """The (actors, frames) object array of a ``{actor}{frame}`` MATLAB cell array."""
    if key not in mat:
        raise PosekitError(f"{path}: no {key!r} variable")
    actors = mat[key]
    if actors.dtype != object or actors.size == 0:
        raise PosekitError(f"{path}: {key!r} must be a cell array of actors")
    frames = list(actors.ravel())
    if any(cell.dtype != object for cell in frames) or len({cell.size for cell in frames}) != 1:
        raise PosekitError(f"{path}: each actor of {key!r} must be a cell array of frames, all of one length")
    return np.stack([cell.ravel() for cell in frames])


def _views(cell: np.ndarray, path: Path, actor: int, frame: int) -> list[np.ndarray]:
    """The per-camera 2D poses of one actor2D cell (1 x C cell array, each 14 x 2 or empty)."""
    if cell.dtype != object:
        if cell.size:
            raise PosekitError(f"{path}: actor2D{{{actor + 1}}}{{{frame + 1}}} must be a cell array of cameras")
        return []
    return list(cell.ravel())


__all__ = ["read_panoptic_calibration", "read_panoptic_body3d", "read_campus_calibration", "read_campus_gt",
           "CAMPUS_JOINTS"]
