"""Errors of non-rigid structure-from-motion reconstructions (F frames of P points, (F, P, 3)).

Two measures:

* ``shape_error_xi``: the MCM-RR article's Eq. 23, xi = (1/F) sum_t ||S~_t - S_t||_F^2, the mean
  squared Frobenius error over frames (not normalised; in squared input units). The article states
  no alignment, so ``align="none"`` computes it literally and "orthogonal"/"similarity" compute it
  after the per-frame alignment below. The article's tables give mean +- std; ``std`` is the
  population standard deviation of the per-frame errors.
* ``normalized_shape_error``: per frame ||S~_t - S_t||_F / ||S_t - mean(S_t)||_F after alignment,
  the relative error of Deep NRSfM's ``evaluate.py``. The denominator uses the centred ground
  truth, so the measure does not depend on where the shape sits, like the alignment.

Alignment is per frame: translation plus an orthogonal matrix (optionally times a scale) that may
be a reflection (det = -1). Under orthographic or weak-perspective projection a shape and its
mirror image through the image plane give the same 2D points, so NRSfM recovers shape only up to
that reflection and a fair error must not charge for it. The optional scale is the least-squares
factor (Umeyama), not Deep NRSfM's ratio of norms.
"""
from __future__ import annotations

import numpy as np

from posekit.errors import PosekitError
from posekit.geometry.procrustes import similarity_procrustes
from posekit.metrics.pose3d import check_pose_pair

_MIRROR = np.array([1.0, 1.0, -1.0])
_ALIGN_MODES = ("none", "orthogonal", "similarity")


def align_shapes(pred, gt, *, scale: bool = False) -> np.ndarray:
    """Each frame of ``pred`` moved onto ``gt`` by the best translation + rotation or reflection
    (+ scale with ``scale=True``), in the least-squares sense; returns (F, P, 3)."""
    p, g, _ = check_pose_pair(pred, gt, None, "align_shapes")
    proper = similarity_procrustes(p, g, scale=scale)[0]
    # Rotations of the mirrored shape are exactly the improper orthogonal maps of the original.
    mirrored = similarity_procrustes(p * _MIRROR, g, scale=scale)[0]
    use_mirror = ((mirrored - g) ** 2).sum(axis=(1, 2)) < ((proper - g) ** 2).sum(axis=(1, 2))
    return np.where(use_mirror[:, None, None], mirrored, proper)


def _aligned(pred, gt, align: str, where: str):
    if align not in _ALIGN_MODES:
        raise PosekitError(f"{where}: align must be one of {_ALIGN_MODES}, got {align!r}")
    p, g, _ = check_pose_pair(pred, gt, None, where)
    if align != "none":
        p = align_shapes(p, g, scale=align == "similarity")
    return p, g


def shape_error_xi(pred, gt, *, align: str = "none") -> dict:
    """MCM-RR Eq. 23: {"xi": mean_t ||S~_t - S_t||_F^2, "std": its spread, "per_frame": (F,)}."""
    p, g = _aligned(pred, gt, align, "shape_error_xi")
    per_frame = ((p - g) ** 2).sum(axis=(1, 2))
    return {"xi": float(per_frame.mean()), "std": float(per_frame.std()), "per_frame": per_frame}


def normalized_shape_error(pred, gt, *, scale: bool = False) -> dict:
    """Relative error after per-frame alignment: {"mean": float, "per_frame": (F,)}."""
    p, g = _aligned(pred, gt, "similarity" if scale else "orthogonal", "normalized_shape_error")
    spread = np.linalg.norm(g - g.mean(axis=1, keepdims=True), axis=(1, 2))
    if (spread <= 0).any():
        raise PosekitError("normalized_shape_error: a ground-truth frame has all points at one "
                           "location, so its relative error is undefined")
    per_frame = np.linalg.norm(p - g, axis=(1, 2)) / spread
    return {"mean": float(per_frame.mean()), "per_frame": per_frame}


__all__ = ["shape_error_xi", "normalized_shape_error", "align_shapes"]
