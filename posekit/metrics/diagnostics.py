"""Feature-map diagnostics of the pseudo-3D multi-view network: Hoyer sparsity and the average
Euclidean distance between channels (the pseudo-3D multi-view pose recognition paper, Eqs. 11-13).

* Hoyer sparsity (Eq. 11): S(x) = (sqrt(n) - ||x||_1 / ||x||_2) / (sqrt(n) - 1) over the n values
  of x. 1 for a single non-zero value, 0 when all values have the same magnitude. The paper does not
  say whether x is a whole C x H x W map or one channel; ``axis`` picks (default: all values).
* Average channel Euclidean distance (Eqs. 12-13): the Euclidean distance between two flattened
  channels, averaged over the c^2 - c ordered pairs of different channels (equal to the average
  over unordered pairs). It grows with the features' magnitude; ``normalize=True`` first scales
  each channel to unit L2 norm so only the channels' shapes are compared.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial.distance import pdist

from posekit.errors import PosekitError


def _as_features(x, where: str) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=float)
    except (TypeError, ValueError):
        raise PosekitError(f"{where}: features must be a numeric array") from None
    if not np.isfinite(arr).all():
        raise PosekitError(f"{where}: features contain NaN or inf")
    return arr


def hoyer_sparsity(x, axis=None):
    """Hoyer sparsity in [0, 1] over ``axis`` (None = all values); NaN where x is all zeros,
    for which the measure is undefined."""
    arr = _as_features(x, "hoyer_sparsity")
    try:
        n = arr.size if axis is None else int(np.prod([arr.shape[a] for a in np.atleast_1d(axis)]))
    except (IndexError, TypeError):
        raise PosekitError(f"hoyer_sparsity: axis {axis!r} does not fit shape {arr.shape}") from None
    if n < 2:
        raise PosekitError(f"hoyer_sparsity: needs at least 2 values, got {n}")
    l1 = np.abs(arr).sum(axis=axis)
    l2 = np.sqrt((arr ** 2).sum(axis=axis))
    ratio = np.divide(l1, l2, out=np.full(np.shape(l1), np.nan), where=l2 > 0)
    result = (np.sqrt(n) - ratio) / (np.sqrt(n) - 1.0)
    return float(result) if np.ndim(result) == 0 else result


def average_channel_distance(features, *, normalize: bool = False):
    """Mean Euclidean distance between different channels of (..., C, H, W) feature maps.

    Returns a float for one (C, H, W) map, else an array over the leading dimensions.
    """
    arr = _as_features(features, "average_channel_distance")
    if arr.ndim < 3 or arr.shape[-3] < 2:
        raise PosekitError("average_channel_distance: features must have shape (..., C, H, W) "
                           f"with C >= 2, got {arr.shape}")
    lead = arr.shape[:-3]
    flat = arr.reshape(-1, arr.shape[-3], arr.shape[-2] * arr.shape[-1])
    if normalize:
        norms = np.linalg.norm(flat, axis=-1, keepdims=True)
        flat = np.divide(flat, norms, out=np.zeros_like(flat), where=norms > 0)
    result = np.array([pdist(channels).mean() for channels in flat]).reshape(lead)
    return float(result) if result.ndim == 0 else result


__all__ = ["hoyer_sparsity", "average_channel_distance"]
