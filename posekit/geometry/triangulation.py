"""Multi-view triangulation by the direct linear transform (DLT), vectorised over all points."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from posekit.errors import PosekitError
from posekit.geometry.camera import Camera


def _float_array(values, name: str) -> np.ndarray:
    try:
        return np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise PosekitError(f"{name}: not numeric ({exc})") from None


def triangulate_dlt(points_2d, projections, weights=None) -> np.ndarray:
    """Triangulate pixels seen in V views into world points.

    points_2d: (V, ..., 2) pixels (undistorted, i.e. consistent with the pinhole ``P``);
    projections: (V, 3, 4) matrices ``P = K [R | t]``; weights: optional (V, ...) confidences,
    broadcast to the points' shape, >= 0.

    Each view contributes the two rows ``w * (u P[2] - P[0])`` and ``w * (v P[2] - P[1])``; the point is
    the right singular vector of the smallest singular value of the stacked (2V, 4) system
    (Hartley & Zisserman, section 12.2), solved for all points in one batched SVD. A weight of 0 or a
    non-finite 2D point removes that view for that point. Points left with fewer than two views, seen
    along one common ray (e.g. cameras sharing a centre), or whose solution lies at infinity, are
    NaN. Returns (..., 3) in the unit of the projections' ``t``.
    """
    P = _float_array(projections, "projections")
    if P.ndim != 3 or P.shape[1:] != (3, 4):
        raise PosekitError(f"projections: expected shape (V, 3, 4), got {P.shape}")
    if not np.isfinite(P).all():
        raise PosekitError("projections: contains NaN or infinite values")
    row_norms = np.linalg.norm(P[:, :, :3], axis=-1).prod(axis=-1)
    singular = np.abs(np.linalg.det(P[:, :, :3])) <= 1e-12 * row_norms
    if singular.any():
        raise PosekitError(f"projections: view {int(np.argmax(singular))} is not a finite camera "
                           "(its left 3x3 block K R is singular)")
    x = _float_array(points_2d, "points_2d")
    n_views = P.shape[0]
    if x.ndim < 2 or x.shape[0] != n_views or x.shape[-1] != 2:
        raise PosekitError(f"points_2d: expected shape ({n_views}, ..., 2) for {n_views} views, "
                           f"got {x.shape}")
    batch = x.shape[1:-1]
    if weights is None:
        w = np.ones(x.shape[:-1])
    else:
        w = _float_array(weights, "weights")
        try:
            w = np.broadcast_to(w, x.shape[:-1])
        except ValueError:
            raise PosekitError(f"weights: shape {w.shape} does not broadcast to the points' "
                               f"{x.shape[:-1]}") from None
        if not np.isfinite(w).all() or np.any(w < 0):
            raise PosekitError("weights: must be finite and >= 0")

    used = (w > 0) & np.isfinite(x).all(axis=-1)                       # (V, ...)
    w = np.where(used, w, 0.0).reshape(n_views, -1).T                  # (N, V)
    x = np.where(used[..., None], x, 0.0).reshape(n_views, -1, 2).transpose(1, 0, 2)  # (N, V, 2)

    rows_u = x[..., 0:1] * P[:, 2] - P[:, 0]                           # (N, V, 4)
    rows_v = x[..., 1:2] * P[:, 2] - P[:, 1]
    system = (np.stack([rows_u, rows_v], axis=2) * w[..., None, None]).reshape(len(x), 2 * n_views, 4)
    _, singular_values, vt = np.linalg.svd(system)
    homogeneous = vt[:, -1, :]                                          # (N, 4)

    scale = homogeneous[:, 3:]
    at_infinity = np.abs(scale[:, 0]) <= 1e-12 * np.abs(homogeneous).max(axis=1)
    too_few_views = used.reshape(n_views, -1).sum(axis=0) < 2
    # a second (near-)null direction: the rays coincide (no baseline), any point on them fits
    ambiguous = singular_values[:, 2] <= 1e-10 * singular_values[:, 0] if n_views >= 2 else too_few_views
    with np.errstate(divide="ignore", invalid="ignore"):
        points = homogeneous[:, :3] / scale
    points[at_infinity | too_few_views | ambiguous] = np.nan
    return points.reshape(batch + (3,))


def triangulate_cameras(points_2d, cameras: Sequence[Camera], weights=None,
                        undistort: bool = True) -> np.ndarray:
    """Triangulate observed pixels (V, ..., 2) from calibrated ``cameras`` (V of them).

    With ``undistort`` each view's pixels are first undistorted with its lens model, so the DLT sees
    ideal pinhole pixels; pixels that cannot be undistorted drop out like a zero weight.
    See :func:`triangulate_dlt` for weights, NaN rules and the result.
    """
    cameras = list(cameras)
    if not cameras or not all(isinstance(cam, Camera) for cam in cameras):
        raise PosekitError("cameras: expected a non-empty sequence of Camera objects")
    x = _float_array(points_2d, "points_2d")
    if x.ndim < 2 or x.shape[0] != len(cameras) or x.shape[-1] != 2:
        raise PosekitError(f"points_2d: expected shape ({len(cameras)}, ..., 2) for {len(cameras)} cameras, "
                           f"got {x.shape}")
    if undistort:
        x = np.stack([cam.undistort_points(view, pixels=True) for cam, view in zip(cameras, x)])
    projections = np.stack([cam.projection_matrix for cam in cameras])
    return triangulate_dlt(x, projections, weights)
