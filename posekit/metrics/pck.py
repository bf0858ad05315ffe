"""Percentage of Correct Keypoints for 2D poses: generic PCK, MPII PCKh and box-normalised PCK.

A keypoint is correct when its distance to the ground truth, divided by a per-person size, is at
most the threshold (``<=``, as the MPII MATLAB toolkit and HRNet's ``mpii.py`` count; MMPose's
``keypoint_pck_accuracy`` uses ``<``, which differs only for distances exactly at the threshold).
Only joints visible (labelled) in the ground truth are scored. Results are percentages.

A "mean" here pools all scored keypoints: correct / scored. For MPII this equals the reference's
per-joint PCKh weighted by each joint's count of labelled instances (``jnt_ratio``).
"""
from __future__ import annotations

import numpy as np

from posekit.errors import PosekitError
from posekit.skeletons import Skeleton, get_skeleton

MPII_SC_BIAS = 0.6
"""MPII head size = 0.6 x the diagonal of the annotated head rectangle."""

PCKH_CURVE_THRESHOLDS = np.round(np.arange(0.0, 0.5 + 1e-9, 0.01), 2)
"""Thresholds 0:0.01:0.5 of the MPII PCKh curve (51 values)."""

MPII_MEAN_EXCLUDED = ("pelvis", "thorax")
"""Joints left out of the MPII mean (the reference masks them out of ``jnt_ratio``)."""

MPII_GROUPS = {
    "Head": ("head_top",),
    "Shoulder": ("left_shoulder", "right_shoulder"),
    "Elbow": ("left_elbow", "right_elbow"),
    "Wrist": ("left_wrist", "right_wrist"),
    "Hip": ("left_hip", "right_hip"),
    "Knee": ("left_knee", "right_knee"),
    "Ankle": ("left_ankle", "right_ankle"),
}
"""The MPII table as HRNet (``lib/dataset/mpii.py``) and MMPose (``MpiiPCKAccuracy``) print it:
Head is head_top alone (the MATLAB toolkit's plots average upper_neck and head_top instead), and
every other group is the plain mean 0.5 * (left + right) of the two per-joint PCKh values."""


def _check_keypoint_pair(pred, gt, visible, where: str):
    """Validate (N, K, 2) predictions/ground truth and an (N, K) visibility; return arrays.

    Returns (pred, gt, vis) with ``vis`` boolean (visibility > 0) and coordinates of unscored
    keypoints replaced by 0, so NaN there is allowed; NaN/inf at a scored keypoint is an error.
    """
    p = _as_float(pred, f"{where}: pred")
    g = _as_float(gt, f"{where}: gt")
    v = _as_float(visible, f"{where}: visible")
    if g.ndim != 3 or g.shape[-1] != 2:
        raise PosekitError(f"{where}: gt must have shape (N, K, 2), got {g.shape}")
    if p.shape != g.shape:
        raise PosekitError(f"{where}: pred {p.shape} and gt {g.shape} must have the same shape")
    if v.shape != g.shape[:2]:
        raise PosekitError(f"{where}: visible must have shape {g.shape[:2]}, got {v.shape}")
    if np.isnan(v).any():
        raise PosekitError(f"{where}: visible contains NaN")
    vis = v > 0
    if not np.isfinite(g[vis]).all():
        raise PosekitError(f"{where}: gt has NaN/inf coordinates at a visible joint")
    if not np.isfinite(p[vis]).all():
        raise PosekitError(f"{where}: pred has NaN/inf coordinates at a visible joint")
    p = np.where(vis[..., None], p, 0.0)
    g = np.where(vis[..., None], g, 0.0)
    return p, g, vis


def _as_float(value, where: str) -> np.ndarray:
    try:
        return np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise PosekitError(f"{where}: expected numbers") from None


def _check_normalizer(normalizer, vis: np.ndarray, where: str) -> np.ndarray:
    norm = _as_float(normalizer, f"{where}: normalizer")
    if norm.shape != vis.shape[:1]:
        raise PosekitError(f"{where}: normalizer must have shape ({len(vis)},), got {norm.shape}")
    scored = vis.any(axis=1)
    if not (np.isfinite(norm[scored]).all() and (norm[scored] > 0).all()):
        raise PosekitError(f"{where}: normalizer must be positive and finite for every person "
                           "with a visible joint")
    return np.where(scored, norm, 1.0)


def normalized_distances(pred, gt, visible, normalizer, *, where: str = "pck") -> np.ndarray:
    """Per-keypoint distance / per-person size, (N, K); NaN where the ground truth is not visible."""
    p, g, vis = _check_keypoint_pair(pred, gt, visible, where)
    norm = _check_normalizer(normalizer, vis, where)
    dist = np.linalg.norm(p - g, axis=-1) / norm[:, None]
    return np.where(vis, dist, np.nan)


def _pck_from_distances(dist: np.ndarray, thr: float, where: str):
    vis = ~np.isnan(dist)
    if not vis.any():
        raise PosekitError(f"{where}: no visible ground-truth joint to score")
    correct = (np.nan_to_num(dist, nan=np.inf) <= thr) & vis
    count = vis.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_joint = np.where(count > 0, 100.0 * correct.sum(axis=0) / count, np.nan)
    return per_joint, float(100.0 * correct.sum() / vis.sum())


def _check_thr(thr, where: str) -> float:
    try:
        value = float(thr)
    except (TypeError, ValueError):
        raise PosekitError(f"{where}: threshold must be a number, got {thr!r}") from None
    if not np.isfinite(value) or value < 0:
        raise PosekitError(f"{where}: threshold must be a finite number >= 0, got {thr!r}")
    return value


def pck(pred, gt, visible, normalizer, thr: float):
    """PCK with any per-person size: (per-joint %, mean %).

    pred, gt: (N, K, 2); visible: (N, K) ground-truth flags (> 0 = scored); normalizer: (N,)
    per-person size in pixels. Per-joint values are NaN for joints never visible.
    """
    thr = _check_thr(thr, "pck")
    return _pck_from_distances(normalized_distances(pred, gt, visible, normalizer), thr, "pck")


def bbox_size(boxes) -> np.ndarray:
    """Box-normalised PCK size: the longer side max(w, h) of each x, y, w, h box (MMPose)."""
    b = _as_float(boxes, "pck_bbox: boxes")
    if b.ndim != 2 or b.shape[1] != 4:
        raise PosekitError(f"pck_bbox: boxes must have shape (N, 4) x, y, w, h, got {b.shape}")
    return np.maximum(b[:, 2], b[:, 3])


def pck_bbox(pred, gt, visible, boxes, thr: float = 0.2):
    """PCK normalised by the ground-truth box's longer side (PCK@0.2 for COCO-style keypoints).

    boxes: (N, 4) x, y, w, h. Returns (per-joint %, mean %).
    """
    thr = _check_thr(thr, "pck_bbox")
    dist = normalized_distances(pred, gt, visible, bbox_size(boxes), where="pck_bbox")
    return _pck_from_distances(dist, thr, "pck_bbox")


def left_right_collapse(pred, gt, visible, normalizer, flip_pairs, *, apart: float = 0.2,
                        together: float = 0.1) -> float:
    """Share (%) of left/right joint pairs whose two predictions fall on one limb.

    Among the pairs (e.g. a person's two elbows) labelled in the ground truth more than ``apart``
    person sizes from each other, the share whose predictions lie within ``together`` of each
    other: a model that has found the limbs but not which one is the left puts both channels on the
    stronger one. PCK counts one of the two as a miss and forgiving swaps does not bring it back,
    so this names the failure where per-joint PCK only shows low limb scores. ``flip_pairs``:
    (left, right) index pairs (``Skeleton.flip_pairs``); NaN when no pair is far enough apart."""
    p, g, vis = _check_keypoint_pair(pred, gt, visible, "left_right_collapse")
    norm = _check_normalizer(normalizer, vis, "left_right_collapse")
    pairs = np.asarray(flip_pairs, dtype=int).reshape(-1, 2)
    if pairs.size and (pairs.min() < 0 or pairs.max() >= g.shape[1]):
        raise PosekitError(f"left_right_collapse: flip pairs {pairs.tolist()} do not fit {g.shape[1]} joints")
    left, right = pairs[:, 0], pairs[:, 1]
    gt_gap = np.linalg.norm(g[:, left] - g[:, right], axis=-1) / norm[:, None]
    pred_gap = np.linalg.norm(p[:, left] - p[:, right], axis=-1) / norm[:, None]
    counted = vis[:, left] & vis[:, right] & (gt_gap > apart)
    if not counted.any():
        return float("nan")
    return float(100.0 * (counted & (pred_gap <= together)).sum() / counted.sum())


def head_size(head_boxes) -> np.ndarray:
    """PCKh size from x1, y1, x2, y2 head rectangles: 0.6 x the rectangle's diagonal."""
    hb = _as_float(head_boxes, "head_boxes")
    if hb.ndim != 2 or hb.shape[1] != 4:
        raise PosekitError(f"head_boxes must have shape (N, 4) x1, y1, x2, y2, got {hb.shape}")
    return MPII_SC_BIAS * np.hypot(hb[:, 2] - hb[:, 0], hb[:, 3] - hb[:, 1])


def pckh(pred, gt, visible, head_boxes, skeleton: str | Skeleton = "mpii16", thr: float = 0.5) -> dict:
    """MPII PCKh: per-joint table, group table, Mean, Mean@0.1 and AUC, all in percent.

    pred, gt: (N, K, 2) in the same pixel convention (the reference adds 1 to 0-based predictions
    because its ground truth is 1-based; do that before calling when mixing the two).
    visible: (N, K) ground-truth flags, > 0 where the joint is labelled. head_boxes: (N, 4)
    x1, y1, x2, y2 ground-truth head rectangles.

    Mean pools all scored joints except pelvis and thorax; Mean@0.1 is the same at threshold 0.1
    (MMPose's ``pckAll[10]``; HRNet's ``mpii.py`` reads ``pckAll[11]``, i.e. 0.11). AUC is the
    area under the Mean curve over thresholds 0:0.01:0.5 with the threshold axis rescaled to
    [0, 1] (trapezoids), as the MPII toolkit's ``area_under_curve(scale01(range), pck)``, so a
    perfect prediction scores 100. Groups average the available sides (NaN if neither is labelled).
    """
    skel = get_skeleton(skeleton)
    thr = _check_thr(thr, "pckh")
    dist = normalized_distances(pred, gt, visible, head_size(head_boxes), where="pckh")
    if dist.shape[1] != len(skel):
        raise PosekitError(f"pckh: {dist.shape[1]} keypoints given for skeleton {skel.name!r} "
                           f"with {len(skel)} joints")
    per_joint, _ = _pck_from_distances(dist, thr, "pckh")
    in_mean = np.ones(len(skel), dtype=bool)
    for name in MPII_MEAN_EXCLUDED:
        if name in skel.joints:
            in_mean[skel.index(name)] = False
    kept = dist[:, in_mean]
    out: dict = {"per_joint": {name: float(v) for name, v in zip(skel.joints, per_joint)}}
    for group, names in MPII_GROUPS.items():
        if all(n in skel.joints for n in names):
            values = per_joint[skel.indices(names)]
            out[group] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
    out["Mean"] = _pck_from_distances(kept, thr, "pckh")[1]
    out["Mean@0.1"] = _pck_from_distances(kept, 0.1, "pckh")[1]
    curve = np.array([_pck_from_distances(kept, t, "pckh")[1] for t in PCKH_CURVE_THRESHOLDS])
    out["AUC"] = float(np.trapezoid(curve, PCKH_CURVE_THRESHOLDS / PCKH_CURVE_THRESHOLDS[-1]))
    return out


__all__ = ["pck", "pck_bbox", "pckh", "head_size", "bbox_size", "normalized_distances",
           "MPII_SC_BIAS", "MPII_GROUPS", "PCKH_CURVE_THRESHOLDS"]
