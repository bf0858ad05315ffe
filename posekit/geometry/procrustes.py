"""Similarity (Umeyama) Procrustes alignment, batched."""
from __future__ import annotations

import numpy as np

from posekit.errors import PosekitError


def similarity_procrustes(source, target, *, scale: bool = True, weights=None):
    """Align ``source`` to ``target`` with the best rotation (+ scale) + translation.

    source, target: (..., J, D) point sets; weights: optional (..., J) non-negative joint weights
    (0 drops a joint). Reflections are excluded: R is a proper rotation (det R = +1), the
    ``sign(det)`` fix of Umeyama (1991) and VideoPose3D's P-MPJPE.

    Returns (aligned, s, R, t) with aligned = s * source @ R.T + t; s (...,), R (..., D, D),
    t (..., D).
    """
    x = np.asarray(source, dtype=float)
    y = np.asarray(target, dtype=float)
    if x.shape != y.shape or x.ndim < 2:
        raise PosekitError(f"procrustes: source {x.shape} and target {y.shape} must both be (..., J, D)")
    w = np.ones(x.shape[:-1]) if weights is None else np.broadcast_to(
        np.asarray(weights, dtype=float), x.shape[:-1])
    wsum = np.maximum(w.sum(-1, keepdims=True), 1e-12)[..., None]        # (..., 1, 1)
    wn = (w[..., None] / wsum)                                            # (..., J, 1)
    mu_x = (wn * x).sum(-2, keepdims=True)
    mu_y = (wn * y).sum(-2, keepdims=True)
    x0, y0 = x - mu_x, y - mu_y
    h = np.swapaxes(wn * x0, -1, -2) @ y0                                # (..., D, D)
    u, sv, vt = np.linalg.svd(h)
    v = np.swapaxes(vt, -1, -2)
    d = np.sign(np.linalg.det(v @ np.swapaxes(u, -1, -2)))
    d = np.where(d == 0, 1.0, d)
    fix = np.ones(sv.shape)
    fix[..., -1] = d
    r = (v * fix[..., None, :]) @ np.swapaxes(u, -1, -2)
    if scale:
        var_x = (wn * x0 ** 2).sum((-1, -2))
        s = (sv * fix).sum(-1) / np.maximum(var_x, 1e-300)
    else:
        s = np.ones(x.shape[:-2])
    t = mu_y[..., 0, :] - s[..., None] * (mu_x @ np.swapaxes(r, -1, -2))[..., 0, :]
    aligned = s[..., None, None] * (x @ np.swapaxes(r, -1, -2)) + t[..., None, :]
    return aligned, s, r, t
