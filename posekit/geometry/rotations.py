"""Rotation conversions among axis-angle, quaternion, matrix and Euler angles, batched over leading axes.

Conventions (one set, used across posekit):

- Matrices act on column vectors, ``x' = R @ x``; points stored as rows ``(..., 3)`` rotate as ``X @ R.T``.
- Axis-angle (rotation vector): unit axis times the angle in radians, shape ``(..., 3)``.
- Quaternions are scalar-first ``(w, x, y, z)``, shape ``(..., 4)``. Inputs are normalised (a zero
  quaternion is an error); outputs are unit quaternions with ``w >= 0``.
- Euler order strings follow scipy: three letters from ``xyz``; upper-case is intrinsic (each rotation
  about an axis of the already rotated frame), lower-case is extrinsic (fixed world axes). Angle ``i``
  goes with letter ``i``. Intrinsic ``'ZYX'`` with angles ``(a, b, c)`` is ``Rz(a) @ Ry(b) @ Rx(c)``:
  the letters multiply left to right, which is how BVH channel lists (``Zrotation Yrotation
  Xrotation``) and ASF/AMC ``axis`` / ``order`` fields read. Extrinsic ``'xyz'`` with ``(a, b, c)`` is
  ``Rz(c) @ Ry(b) @ Rx(a)``.

The arithmetic is scipy's ``Rotation``; this module gives it batched ``(..., k)`` numpy in/out, one
quaternion order and errors that name the bad argument.
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy.spatial.transform import Rotation

from posekit.errors import PosekitError

ROTATION_TOLERANCE = 1e-6


def _vectors(values, name: str, size: int) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise PosekitError(f"{name}: not numeric ({exc})") from None
    if arr.ndim < 1 or arr.shape[-1] != size:
        raise PosekitError(f"{name}: expected shape (..., {size}), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise PosekitError(f"{name}: contains NaN or infinite values")
    return arr


def _rotation_matrices(values, name: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise PosekitError(f"{name}: not numeric ({exc})") from None
    if arr.ndim < 2 or arr.shape[-2:] != (3, 3):
        raise PosekitError(f"{name}: expected shape (..., 3, 3), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise PosekitError(f"{name}: contains NaN or infinite values")
    ok = is_rotation_matrix(arr)
    if not np.all(ok):
        bad = np.argwhere(np.atleast_1d(~ok))[0]
        raise PosekitError(f"{name}: entry {tuple(int(i) for i in bad)} is not a rotation matrix "
                           f"(R^T R = I and det R = +1 within {ROTATION_TOLERANCE})")
    return arr


def _check_order(order) -> str:
    if not (isinstance(order, str) and len(order) == 3 and set(order.lower()) <= set("xyz")
            and (order.isupper() or order.islower())
            and order[0] != order[1] and order[1] != order[2]):
        raise PosekitError(f"euler order: {order!r} must be 3 letters from xyz, all upper-case "
                           "(intrinsic) or all lower-case (extrinsic), no axis twice in a row")
    return order


def _from_scipy(rotation: Rotation, batch: tuple, kind: str, **kwargs) -> np.ndarray:
    """Call ``rotation.<kind>(**kwargs)`` on the flattened batch and restore the leading axes."""
    out = getattr(rotation, kind)(**kwargs)
    return out.reshape(batch + out.shape[1:])


def is_rotation_matrix(matrix, atol: float = ROTATION_TOLERANCE) -> np.ndarray:
    """Per matrix of a ``(..., 3, 3)`` stack: orthonormal and det +1 within ``atol`` (bool ``(...)``)."""
    m = np.asarray(matrix, dtype=float)
    if m.ndim < 2 or m.shape[-2:] != (3, 3):
        return np.zeros(m.shape[:-2] if m.ndim >= 2 else (), dtype=bool)
    gram_error = np.abs(np.swapaxes(m, -1, -2) @ m - np.eye(3)).max(axis=(-1, -2))
    with np.errstate(invalid="ignore"):
        return (gram_error <= atol) & (np.abs(np.linalg.det(m) - 1.0) <= atol)


def rotation_matrix_from_euler(angles, order: str, degrees: bool = True) -> np.ndarray:
    """Euler angles ``(..., 3)`` in ``order`` (see module doc) -> matrices ``(..., 3, 3)``."""
    order = _check_order(order)
    a = _vectors(angles, "angles", 3)
    rot = Rotation.from_euler(order, a.reshape(-1, 3), degrees=degrees)
    return _from_scipy(rot, a.shape[:-1], "as_matrix")


def euler_from_rotation_matrix(matrix, order: str, degrees: bool = True) -> np.ndarray:
    """Matrices ``(..., 3, 3)`` -> Euler angles ``(..., 3)`` in ``order``.

    Angles 1 and 3 lie in [-180, 180]; angle 2 in [-90, 90] for Tait-Bryan orders ('XYZ') or
    [0, 180] for proper Euler orders ('ZXZ'). At gimbal lock the third angle is set to 0 (silently:
    the matrix is still reproduced exactly).
    """
    order = _check_order(order)
    m = _rotation_matrices(matrix, "matrix")
    rot = Rotation.from_matrix(m.reshape(-1, 3, 3))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Gimbal lock")
        return _from_scipy(rot, m.shape[:-2], "as_euler", seq=order, degrees=degrees)


def axis_angle_to_matrix(rotvec) -> np.ndarray:
    """Rotation vectors ``(..., 3)`` (axis * angle in radians) -> matrices ``(..., 3, 3)``."""
    v = _vectors(rotvec, "rotvec", 3)
    return _from_scipy(Rotation.from_rotvec(v.reshape(-1, 3)), v.shape[:-1], "as_matrix")


def matrix_to_axis_angle(matrix) -> np.ndarray:
    """Matrices ``(..., 3, 3)`` -> rotation vectors ``(..., 3)`` with angle in [0, pi]."""
    m = _rotation_matrices(matrix, "matrix")
    return _from_scipy(Rotation.from_matrix(m.reshape(-1, 3, 3)), m.shape[:-2], "as_rotvec")


def _scipy_quaternions(quaternion):
    """(w, x, y, z) input -> (scipy Rotation from its scalar-last (x, y, z, w), leading axes)."""
    q = _vectors(quaternion, "quaternion", 4)
    if np.any(np.linalg.norm(q, axis=-1) < 1e-12):
        raise PosekitError("quaternion: zero-length quaternion has no rotation")
    return Rotation.from_quat(q[..., [1, 2, 3, 0]].reshape(-1, 4)), q.shape[:-1]


def _quaternions_from_scipy(rotation: Rotation, batch: tuple) -> np.ndarray:
    """Unit quaternions (w, x, y, z) with w >= 0, reshaped to ``batch + (4,)``."""
    return rotation.as_quat(canonical=True)[:, [3, 0, 1, 2]].reshape(batch + (4,))


def quaternion_to_matrix(quaternion) -> np.ndarray:
    """Quaternions ``(..., 4)`` as ``(w, x, y, z)`` -> matrices ``(..., 3, 3)`` (input normalised)."""
    return _from_scipy(*_scipy_quaternions(quaternion), "as_matrix")


def matrix_to_quaternion(matrix) -> np.ndarray:
    """Matrices ``(..., 3, 3)`` -> unit quaternions ``(..., 4)`` as ``(w, x, y, z)`` with ``w >= 0``."""
    m = _rotation_matrices(matrix, "matrix")
    return _quaternions_from_scipy(Rotation.from_matrix(m.reshape(-1, 3, 3)), m.shape[:-2])


def axis_angle_to_quaternion(rotvec) -> np.ndarray:
    """Rotation vectors ``(..., 3)`` -> unit quaternions ``(..., 4)`` as ``(w, x, y, z)``, ``w >= 0``."""
    v = _vectors(rotvec, "rotvec", 3)
    return _quaternions_from_scipy(Rotation.from_rotvec(v.reshape(-1, 3)), v.shape[:-1])


def quaternion_to_axis_angle(quaternion) -> np.ndarray:
    """Quaternions ``(..., 4)`` as ``(w, x, y, z)`` -> rotation vectors ``(..., 3)``, angle in [0, pi]."""
    return _from_scipy(*_scipy_quaternions(quaternion), "as_rotvec")
