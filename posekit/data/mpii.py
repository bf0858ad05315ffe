"""MPII Human Pose in the HRNet/MMPose JSON layout, its head boxes, and PCKh prediction files.

Annotation file: a JSON list, one entry per person::

    {"image": "005808361.jpg", "joints": [[x, y] * 16], "joints_vis": [0|1] * 16,
     "center": [x, y], "scale": s}

Coordinates. MPII's annotations are MATLAB 1-based (the top-left pixel's centre is (1, 1)) and the JSON,
converted from them, keeps that frame: HRNet subtracts 1 from its joints and centres on loading and adds 1
to its predictions before scoring them against the official ``mpii_gt_val.mat`` (``pos_gt_src``,
``headboxes_src``, ``jnt_missing``; predictions as ``preds`` (N, 16, 2) in ``pred.mat``). posekit works in
0-based pixels (top-left pixel centre at (0, 0)) and does the same: the readers subtract 1 from joints,
centres and head boxes of MPII files, the writers add it back. (MMPose 1.x shifts only the centre and
still adds 1 to predictions.) ``.npy``/``.npz`` prediction arrays are posekit's own and stay 0-based.

Boxes. ``scale`` is the person height / 200 px. As MMPose does, the box is a ``scale * 200`` px square
around the centre moved down by ``15 * scale`` px (to keep the feet in); the 1.25 enlargement applied at
crop time is left to the transforms. ``center[0] == -1`` (no person position) gives a NaN box.

Head boxes (PCKh). PCKh normalises by 0.6 x the head-box diagonal, and only the annotated head rectangles
give the official numbers. They come, in this order of preference, from ``headboxes=`` (the
``mpii_gt_val.mat`` file, or an (N, 4) x1, y1, x2, y2 array in 0-based pixels), from a ``head_box`` or
``headbox`` field in every entry ([x1, y1, x2, y2] or [[x1, y1], [x2, y2]], 1-based like the joints), or,
failing both, from an approximation: a square centred on the upper_neck-head_top segment with that
segment's length as side. The approximation warns and is recorded as ``meta["head_boxes"] = "approximate"``;
PCKh computed with it is not comparable with published numbers.

Joints with ``joints_vis == 0`` are unlabelled: their keypoints are NaN and their visibility 0. A labelled
joint has visibility 1 (the JSON does not say whether it was occluded).
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import scipy.io

from posekit.data.safe_pickle import describe, numeric, read_json, read_mat, require, safe_load_npz
from posekit.data.structures import ImageInfo, PoseInstances
from posekit.errors import PosekitError
from posekit.skeletons import get_skeleton

PIXEL_STD = 200.0          # MPII scale unit: person height / 200 px
CENTER_SHIFT = 15.0        # MMPose/HRNet move the centre down by 15 * scale px
MATLAB_ORIGIN = 1.0        # MPII files count pixels from 1
ALIGNMENT_TOLERANCE = 1.0  # px: JSON joints and mpii_gt_val.mat pos_gt_src must agree this well


def read_mpii(path, headboxes=None) -> PoseInstances:
    """Read an MPII JSON annotation file (HRNet/MMPose layout) into 0-based :class:`PoseInstances`.

    Row ``i`` is entry ``i`` of the file (prediction files are aligned by that position). ``headboxes``:
    path to ``mpii_gt_val.mat`` or an (N, 4) array; see the module docstring. ``meta`` holds the file's
    ``centers`` (0-based, unshifted) and ``scales``, each a dict keyed by the row's annotation id (``ids``,
    1..N in file order, so they stay right after ``select``), and ``head_boxes`` (where they came from).
    With the ``.mat`` file, the keypoints and visibility are its ``pos_gt_src`` and ``jnt_missing`` (the
    ground truth of the official evaluation), checked against the JSON joints to catch misaligned files.
    """
    path = Path(path)
    skeleton = get_skeleton("mpii16")
    entries = read_json(path)
    if not isinstance(entries, list):
        raise PosekitError(f"{path}: expected a JSON list of persons, got {type(entries).__name__}")
    n, k = len(entries), len(skeleton)
    keypoints, visibility = np.full((n, k, 2), np.nan), np.zeros((n, k))
    centers, scales, head_fields = np.zeros((n, 2)), np.zeros(n), np.full((n, 4), np.nan)
    image_ids = np.zeros(n, dtype=np.int64)
    images: dict[int, ImageInfo] = {}
    ids_by_name: dict[str, int] = {}
    for i, entry in enumerate(entries):
        name, centers[i], scales[i], joints, vis, head_fields[i] = _entry(entry, f"{path}: entry {i}", k)
        if name not in ids_by_name:
            ids_by_name[name] = len(ids_by_name) + 1
            images[ids_by_name[name]] = ImageInfo(id=ids_by_name[name], file_name=name)
        image_ids[i] = ids_by_name[name]
        if vis is not None:
            keypoints[i, vis > 0] = joints[vis > 0] - MATLAB_ORIGIN
            visibility[i] = vis
    ids = np.arange(1, n + 1)
    meta = {"source": str(path), "centers": dict(zip(ids.tolist(), centers - MATLAB_ORIGIN, strict=True)),
            "scales": dict(zip(ids.tolist(), scales.tolist(), strict=True))}
    has_head = np.isfinite(head_fields).all(axis=1)
    if isinstance(headboxes, (str, Path)):
        mat = read_mat(headboxes)
        head_boxes = _mat_head_boxes(mat, n, Path(headboxes), path)
        keypoints, visibility = _official_ground_truth(mat, keypoints, visibility, Path(headboxes), path)
        meta["head_boxes"] = "mat"
    elif headboxes is not None:
        head_boxes, meta["head_boxes"] = numeric(headboxes, "headboxes", (None, 4)), "given"
        if len(head_boxes) != n:
            raise PosekitError(f"headboxes: {len(head_boxes)} boxes for the {n} entries of {path}")
    elif n and has_head.all():
        head_boxes, meta["head_boxes"] = head_fields - MATLAB_ORIGIN, "annotated"
    elif has_head.any():
        raise PosekitError(f"{path}: entry {int(np.flatnonzero(~has_head)[0])}: missing field 'head_box' "
                           f"(other entries have one)")
    else:
        head_boxes, meta["head_boxes"] = approximate_head_boxes(keypoints, skeleton), "approximate"
        if n:
            warnings.warn(f"{path}: no head boxes; using an approximation from the upper_neck-head_top "
                          f"segment (official PCKh needs the annotated head boxes, e.g. mpii_gt_val.mat)",
                          stacklevel=2)
    return PoseInstances(skeleton, keypoints, visibility, image_ids, boxes=_boxes(centers, scales),
                         head_boxes=head_boxes, ids=ids, images=images, meta=meta)


def _entry(entry, where: str, k: int):
    """(image name, center, scale, joints or None, joints_vis or None, head box or NaN) of one JSON entry."""
    name = require(entry, "image", where)
    if not isinstance(name, str) or not name:
        raise PosekitError(f"{where}: field 'image' must be a non-empty string")
    center = numeric(require(entry, "center", where), f"{where}: field 'center'", (2,))
    scale = float(numeric(require(entry, "scale", where), f"{where}: field 'scale'", ()))
    if scale <= 0:
        raise PosekitError(f"{where}: field 'scale' must be positive, got {scale}")
    joints = vis = None
    if "joints" in entry or "joints_vis" in entry:      # test-set files have neither
        joints = numeric(require(entry, "joints", where), f"{where}: field 'joints'", (k, 2))
        vis = numeric(require(entry, "joints_vis", where), f"{where}: field 'joints_vis'", (k,))
        if not np.all((vis == 0) | (vis == 1)):
            raise PosekitError(f"{where}: field 'joints_vis' must hold 0 or 1 per joint")
    head = np.full(4, np.nan)
    for key in ("head_box", "headbox"):
        if key in entry:
            box = numeric(entry[key], f"{where}: field {key!r}")
            if box.size != 4:
                raise PosekitError(f"{where}: field {key!r} must hold x1, y1, x2, y2, got shape {box.shape}")
            head = box.reshape(4)
    return name, center, scale, joints, vis, head


def _boxes(centers: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """MMPose's MPII box (x, y, w, h, 0-based) from the 1-based centre and scale."""
    side = scales * PIXEL_STD
    cx = centers[:, 0] - MATLAB_ORIGIN
    cy = centers[:, 1] + CENTER_SHIFT * scales - MATLAB_ORIGIN
    boxes = np.stack([cx - side / 2, cy - side / 2, side, side], axis=1)
    boxes[centers[:, 0] == -1] = np.nan
    return boxes


def approximate_head_boxes(keypoints: np.ndarray, skeleton="mpii16") -> np.ndarray:
    """Head boxes x1, y1, x2, y2 (N, 4) guessed from the upper_neck-head_top segment.

    A square of side ``|head_top - upper_neck|`` centred on the segment's midpoint (NaN where either
    joint is missing). Only a stand-in: the annotated MPII head rectangles are not squares.
    """
    skeleton = get_skeleton(skeleton)
    kp = np.asarray(keypoints, dtype=float)
    neck, top = kp[:, skeleton.index("upper_neck")], kp[:, skeleton.index("head_top")]
    half = np.linalg.norm(top - neck, axis=-1, keepdims=True) / 2
    middle = (neck + top) / 2
    return np.concatenate([middle - half, middle + half], axis=1)


def _mat_head_boxes(mat: dict, n: int, mat_path: Path, path: Path) -> np.ndarray:
    """mpii_gt_val.mat's ``headboxes_src`` (2 corners x 2 coordinates x N, 1-based) as (N, 4) 0-based."""
    src = numeric(require(mat, "headboxes_src", str(mat_path)), f"{mat_path}: 'headboxes_src'", (2, 2, None))
    if src.shape[2] != n:
        raise PosekitError(f"{mat_path}: 'headboxes_src' has {src.shape[2]} head boxes, {path} has {n} entries")
    return src.transpose(2, 0, 1).reshape(n, 4) - MATLAB_ORIGIN


def _official_ground_truth(mat: dict, keypoints, visibility, mat_path: Path, path: Path):
    """Keypoints/visibility from mpii_gt_val.mat's pos_gt_src/jnt_missing, checked against the JSON."""
    if "pos_gt_src" not in mat:
        return keypoints, visibility
    n, k = keypoints.shape[:2]
    where = str(mat_path)
    gt = numeric(mat["pos_gt_src"], f"{where}: 'pos_gt_src'", (k, 2, n), finite=False)
    gt = gt.transpose(2, 0, 1) - MATLAB_ORIGIN
    missing = ~np.isfinite(gt).all(-1)
    if "jnt_missing" in mat:
        missing |= numeric(mat["jnt_missing"], f"{where}: 'jnt_missing'", (k, n)).T > 0
    gt[missing] = np.nan
    distance = np.abs(gt - keypoints).max(-1)   # NaN where either file lacks the joint
    if np.any(distance > ALIGNMENT_TOLERANCE):
        i, j = np.argwhere(distance > ALIGNMENT_TOLERANCE)[0]
        raise PosekitError(f"{where}: 'pos_gt_src' of entry {i} joint {j} differs from {path} by more than "
                           f"{ALIGNMENT_TOLERANCE} px; the two files are not aligned")
    return gt, (~missing).astype(float)


def read_mpii_predictions(path, gt: PoseInstances) -> np.ndarray:
    """Predictions aligned with the entries of ``gt`` (from :func:`read_mpii`), as (N, 16, 2) 0-based pixels.

    ``.json``: a list, one item per GT entry, each a bare 16x2 list or ``{"joints": ..., "image": ...}``
    (an ``image`` must name the GT entry's image), 1-based like the annotations. ``.mat``: ``preds``
    (N, 16, 2), 1-based (HRNet's ``pred.mat``). ``.npy``/``.npz``: an (N, 16, 2) array, 0-based (an npz
    holds one array or one named ``preds``).
    """
    path = Path(path)
    k = len(gt.skeleton)
    suffix = path.suffix.lower()
    if suffix == ".json":
        items = read_json(path)
        if not isinstance(items, list):
            raise PosekitError(f"{path}: expected a JSON list of predictions, got {type(items).__name__}")
        _check_count(len(items), gt, path)
        preds = np.empty((len(items), k, 2))
        for i, item in enumerate(items):
            where = f"{path}: entry {i}"
            if isinstance(item, dict):
                expected = _image_name(gt, i)
                if "image" in item and expected is not None and item["image"] != expected:
                    raise PosekitError(f"{where}: image {describe(item['image'])} does not match the "
                                       f"ground truth's {expected!r} at this index")
                item = require(item, "joints", where)
                where += ": field 'joints'"
            preds[i] = numeric(item, where, (k, 2)) - MATLAB_ORIGIN
        return preds
    if suffix == ".mat":
        preds = numeric(require(read_mat(path), "preds", str(path)), f"{path}: 'preds'", (None, k, 2))
        _check_count(len(preds), gt, path)
        return preds - MATLAB_ORIGIN
    if suffix in (".npy", ".npz"):
        preds = numeric(_load_numpy(path), str(path), (None, k, 2))
        _check_count(len(preds), gt, path)
        return preds
    raise PosekitError(f"{path}: unknown prediction file type {suffix!r} (use .json, .mat, .npy or .npz)")


def _image_name(gt: PoseInstances, row: int) -> str | None:
    info = gt.images.get(int(gt.image_ids[row]))
    return info.file_name if info is not None and info.file_name else None


def _check_count(count: int, gt: PoseInstances, path: Path):
    if count != len(gt):
        raise PosekitError(f"{path}: {count} predictions for {len(gt)} ground-truth entries")


def _load_numpy(path: Path) -> np.ndarray:
    """The array of a .npy file, or the one array (or the one named ``preds``) of a .npz file."""
    arrays = safe_load_npz(path)
    if "preds" in arrays:
        return arrays["preds"]
    if len(arrays) != 1:
        raise PosekitError(f"{path}: expected one array or one named 'preds', found {describe(list(arrays))}")
    return next(iter(arrays.values()))


def write_mpii_predictions(preds, path, gt: PoseInstances | None = None) -> Path:
    """Write (N, 16, 2) 0-based predictions; the suffix picks the layout read by :func:`read_mpii_predictions`.

    ``.json``: a list of ``{"image", "joints"}`` (``image`` from ``gt`` when given), 1-based. ``.mat``:
    ``preds``, 1-based, for the official MATLAB evaluation. ``.npy``: the array as is.
    """
    path = Path(path)
    k = len(get_skeleton("mpii16"))
    arr = numeric(preds, "predictions", (None, k, 2))
    if gt is not None:
        _check_count(len(arr), gt, path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        items = []
        for i, joints in enumerate(arr + MATLAB_ORIGIN):
            item = {"joints": joints.tolist()}
            name = None if gt is None else _image_name(gt, i)
            if name is not None:
                item = {"image": name, **item}
            items.append(item)
        path.write_text(json.dumps(items))
    elif suffix == ".mat":
        scipy.io.savemat(path, {"preds": arr + MATLAB_ORIGIN})
    elif suffix == ".npy":
        np.save(path, arr)
    else:
        raise PosekitError(f"{path}: unknown prediction file type {suffix!r} (use .json, .mat or .npy)")
    return path


__all__ = ["read_mpii", "read_mpii_predictions", "write_mpii_predictions", "approximate_head_boxes"]
