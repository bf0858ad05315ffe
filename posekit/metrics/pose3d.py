"""3D pose errors: the Human3.6M protocols (MPJPE, P-MPJPE, N-MPJPE, MPJVE) and MPI-INF-3DHP PCK/AUC.

Inputs are (N, J, 3) arrays of N frames in any unit (usually millimetres); errors come back in the
same unit. Poses are compared as given: make them root-relative first where the protocol asks for
it (Human3.6M zeroes the root joint). An optional ``mask`` ((J,) or (N, J), True = scored) leaves
joints out; coordinates may be NaN only where the mask is False.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from posekit.errors import PosekitError
from posekit.geometry.procrustes import similarity_procrustes

PCK3D_THRESHOLD = 150.0
"""MPI-INF-3DHP: a joint is correct when its error is below 150 mm."""

AUC3D_THRESHOLDS = np.linspace(0.0, 150.0, 31)
"""MPI-INF-3DHP AUC thresholds 0:5:150 mm (31 values); the AUC is the mean PCK over them
(``mpii_compute_3d_pck.m``), so the threshold 0 point, always 0 %, is included."""


def check_pose_pair(pred, gt, mask=None, where: str = "pose3d"):
    """Validate (N, J, 3) pred/gt and an optional mask; return (pred, gt, mask) with unscored
    coordinates set to 0 and ``mask`` a boolean (N, J) array."""
    try:
        p = np.asarray(pred, dtype=float)
        g = np.asarray(gt, dtype=float)
    except (TypeError, ValueError):
        raise PosekitError(f"{where}: pred and gt must be numeric arrays") from None
    if g.ndim != 3 or g.shape[-1] != 3 or g.shape[0] == 0 or g.shape[1] == 0:
        raise PosekitError(f"{where}: gt must have shape (N, J, 3) with N, J >= 1, got {g.shape}")
    if p.shape != g.shape:
        raise PosekitError(f"{where}: pred {p.shape} and gt {g.shape} must have the same shape")
    if mask is None:
        m = np.ones(g.shape[:2], dtype=bool)
    else:
        m = np.asarray(mask)
        if m.shape not in (g.shape[1:2], g.shape[:2]) or m.dtype.kind not in "bui":
            raise PosekitError(f"{where}: mask must be a boolean ({g.shape[1]},) or {g.shape[:2]} "
                               f"array, got {m.dtype} {m.shape}")
        m = np.broadcast_to(m.astype(bool), g.shape[:2])
    if not m.any():
        raise PosekitError(f"{where}: the mask leaves no joint to score")
    if not (np.isfinite(p[m]).all() and np.isfinite(g[m]).all()):
        raise PosekitError(f"{where}: pred/gt contain NaN or inf at a scored joint")
    return np.where(m[..., None], p, 0.0), np.where(m[..., None], g, 0.0), m


def _joint_errors(p: np.ndarray, g: np.ndarray) -> np.ndarray:
    return np.linalg.norm(p - g, axis=-1)


def mpjpe(pred, gt, mask=None) -> float:
    """Protocol #1: mean Euclidean joint error."""
    p, g, m = check_pose_pair(pred, gt, mask, "mpjpe")
    return float(_joint_errors(p, g)[m].mean())


def p_mpjpe(pred, gt, mask=None) -> float:
    """Protocol #2: MPJPE after aligning each frame's prediction to the ground truth with the best
    similarity transform (scale, rotation without reflection, translation) over the scored joints."""
    p, g, m = check_pose_pair(pred, gt, mask, "p_mpjpe")
    aligned = similarity_procrustes(p, g, scale=True, weights=m.astype(float))[0]
    return float(_joint_errors(aligned, g)[m].mean())


def n_mpjpe(pred, gt, mask=None) -> float:
    """Protocol #3 (VideoPose3D ``n_mpjpe``): MPJPE after scaling each frame's prediction by the
    least-squares factor s = sum(gt . pred) / sum(pred . pred); no rotation or translation."""
    p, g, m = check_pose_pair(pred, gt, mask, "n_mpjpe")
    num = np.einsum("njd,njd->n", g, p)
    den = np.einsum("njd,njd->n", p, p)
    # An all-zero prediction stays zero under any scale; 1 stands in for the undefined factor.
    scale = np.divide(num, den, out=np.ones_like(num), where=den > 0)
    return float(_joint_errors(scale[:, None, None] * p, g)[m].mean())


def mpjve(pred, gt, mask=None) -> float:
    """Mean per-joint velocity error: mean |(pred[t+1] - pred[t]) - (gt[t+1] - gt[t])| over
    consecutive frames (VideoPose3D ``mean_velocity_error``); a velocity is scored where the joint is
    scored in both frames. Frames must be one time-ordered sequence."""
    p, g, m = check_pose_pair(pred, gt, mask, "mpjve")
    if len(p) < 2:
        raise PosekitError("mpjve: needs at least 2 frames")
    valid = m[1:] & m[:-1]
    if not valid.any():
        raise PosekitError("mpjve: no joint is scored in two consecutive frames")
    return float(_joint_errors(np.diff(p, axis=0), np.diff(g, axis=0))[valid].mean())


def pck_3d(pred, gt, thr: float = PCK3D_THRESHOLD, mask=None) -> float:
    """3D PCK (%): share of scored joints with error < ``thr`` (strict, as MPI-INF-3DHP's code)."""
    p, g, m = check_pose_pair(pred, gt, mask, "pck_3d")
    try:
        thr = float(thr)
    except (TypeError, ValueError):
        raise PosekitError(f"pck_3d: thr must be a number, got {thr!r}") from None
    return float(100.0 * (_joint_errors(p, g)[m] < thr).mean())


def auc_3d(pred, gt, mask=None, thresholds=AUC3D_THRESHOLDS) -> float:
    """3D PCK AUC (%): the mean of ``pck_3d`` over ``thresholds`` (default 0:5:150 mm)."""
    p, g, m = check_pose_pair(pred, gt, mask, "auc_3d")
    err = _joint_errors(p, g)[m]
    try:
        t = np.asarray(thresholds, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise PosekitError("auc_3d: thresholds must be numbers") from None
    if t.size == 0 or not np.isfinite(t).all():
        raise PosekitError("auc_3d: thresholds must be a non-empty list of finite numbers")
    return float(100.0 * (err[None, :] < t[:, None]).mean())


def evaluate_pose3d(pred, gt, mask=None) -> dict:
    """The Human3.6M protocols in one call: mpjpe, p_mpjpe, n_mpjpe and mpjve (NaN for a single
    frame, which has no velocity)."""
    check_pose_pair(pred, gt, mask, "evaluate_pose3d")
    return {"mpjpe": mpjpe(pred, gt, mask), "p_mpjpe": p_mpjpe(pred, gt, mask),
            "n_mpjpe": n_mpjpe(pred, gt, mask),
            "mpjve": mpjve(pred, gt, mask) if len(np.asarray(gt)) > 1 else float("nan")}


def per_action(metric_fn: Callable, pred, gt, actions, mask=None) -> dict:
    """``metric_fn`` on the frames of each action separately: {action: value}, in order of first
    appearance. ``actions``: (N,) labels, one per frame."""
    p, g, m = check_pose_pair(pred, gt, mask, "per_action")
    labels = np.asarray(actions)
    if labels.shape != (len(p),):
        raise PosekitError(f"per_action: actions must have shape ({len(p)},), got {labels.shape}")
    _, first = np.unique(labels, return_index=True)
    out = {}
    for label in labels[np.sort(first)]:
        sel = labels == label
        key = label.item() if isinstance(label, np.generic) else label
        out[key] = metric_fn(p[sel], g[sel], mask=m[sel])
    return out


def actionwise(metric_fn: Callable, pred, gt, actions, mask=None) -> float:
    """The protocol's action-wise average: the mean over actions of each action's metric, so every
    action weighs the same whatever its number of frames."""
    return float(np.mean(list(per_action(metric_fn, pred, gt, actions, mask).values())))


__all__ = ["mpjpe", "p_mpjpe", "n_mpjpe", "mpjve", "pck_3d", "auc_3d", "evaluate_pose3d",
           "per_action", "actionwise", "PCK3D_THRESHOLD", "AUC3D_THRESHOLDS"]
