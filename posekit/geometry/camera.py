"""Pinhole cameras with OpenCV lens distortion, and the weak-perspective / orthographic models.

Conventions:

- World -> camera: ``Xc = R @ X + t`` (OpenCV, CMU Panoptic). ``t`` is in the length unit of the world
  points; the camera centre in the world is ``-R.T @ t``.
- Normalised image coordinates ``(x, y) = (Xc / Zc, Yc / Zc)``; pixels ``u = K @ (x_d, y_d, 1)`` after
  distortion. Pixel centres are at integer coordinates, as in OpenCV.
- Distortion is OpenCV's: ``(k1, k2, p1, p2, k3)`` Brown-Conrady, or the 8-coefficient rational model
  ``(k1, k2, p1, p2, k3, k4, k5, k6)``.
- Every function is batched over leading axes: points ``(..., 3)`` -> ``(..., 2)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.polynomial import Polynomial

from posekit.errors import PosekitError
from posekit.geometry.rotations import ROTATION_TOLERANCE, axis_angle_to_matrix, is_rotation_matrix

UNDISTORT_TOLERANCE = 1e-10
UNDISTORT_MAX_ITERATIONS = 50


# ----------------------------------------------------------------------------- validation helpers

def _numeric(value, field_name: str, where: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise PosekitError(f"{where}: field '{field_name}' is not numeric ({exc})") from None
    if not np.isfinite(arr).all():
        raise PosekitError(f"{where}: field '{field_name}' contains NaN or infinite values")
    return arr


def _fixed_shape(value, field_name: str, shape: tuple, where: str) -> np.ndarray:
    """Numeric array of exactly ``shape``; a column or row vector of the right size is flattened."""
    arr = _numeric(value, field_name, where)
    if len(shape) == 1 and arr.ndim == 2 and 1 in arr.shape:
        arr = arr.ravel()
    if arr.shape != shape:
        raise PosekitError(f"{where}: field '{field_name}' must have shape {shape}, got {arr.shape}")
    return arr


def _distortion_vector(value, field_name: str = "dist", where: str = "camera") -> np.ndarray:
    """0, 4, 5 or 8 OpenCV coefficients -> a (5,) or (8,) vector (missing ones are 0)."""
    arr = _numeric(value, field_name, where)
    if arr.ndim > 1 and sum(s > 1 for s in arr.shape) <= 1:
        arr = arr.ravel()
    if arr.ndim != 1 or arr.size not in (0, 4, 5, 8):
        raise PosekitError(f"{where}: field '{field_name}' must hold 0, 4, 5 or 8 OpenCV distortion "
                           f"coefficients (k1, k2, p1, p2[, k3[, k4, k5, k6]]), got shape {arr.shape}")
    if arr.size == 8:
        return arr.copy()
    return np.concatenate([arr, np.zeros(5 - arr.size)])


def _optional_size(value, field_name: str, where: str) -> int | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(value, (bool, np.bool_)) or not number.is_integer() or number <= 0:
        raise PosekitError(f"{where}: field '{field_name}' must be a positive integer, got {value!r}")
    return int(number)


def _as_float(values, name: str) -> np.ndarray:
    try:
        return np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise PosekitError(f"{name}: not numeric ({exc})") from None


def _points(values, size: int, name: str) -> np.ndarray:
    arr = _as_float(values, name)
    if arr.ndim < 1 or arr.shape[-1] != size:
        raise PosekitError(f"{name}: expected shape (..., {size}), got {arr.shape}")
    return arr


# ----------------------------------------------------------------------------- distortion (pure)

def _coefficients(dist: np.ndarray) -> tuple:
    d = np.zeros(8)
    d[:dist.size] = dist
    return tuple(d)


def _distort_with_jacobian(xy: np.ndarray, dist: np.ndarray, jacobian: bool):
    k1, k2, p1, p2, k3, k4, k5, k6 = _coefficients(dist)
    x, y = xy[..., 0], xy[..., 1]
    r2 = x * x + y * y
    num = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
    den = 1 + r2 * (k4 + r2 * (k5 + r2 * k6))
    radial = num / den
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    out = np.stack([xd, yd], axis=-1)
    if not jacobian:
        return out, None
    dnum = k1 + r2 * (2 * k2 + 3 * k3 * r2)
    dden = k4 + r2 * (2 * k5 + 3 * k6 * r2)
    dradial = (dnum * den - num * dden) / (den * den)          # d radial / d r2
    jxx = radial + 2 * x * x * dradial + 2 * p1 * y + 6 * p2 * x
    jyy = radial + 2 * y * y * dradial + 6 * p1 * y + 2 * p2 * x
    jxy = 2 * x * y * dradial + 2 * p1 * x + 2 * p2 * y       # equals d yd / d x
    return out, (jxx, jxy, jyy)


def fold_radius_squared(dist) -> float:
    """Squared radius where the lens model stops being one-to-one (``inf`` when it never does).

    The radial map ``r -> r * radial(r^2)`` must increase; beyond its first turning point (or a pole
    of the rational model) points fold back onto the image and the model describes nothing real.
    """
    k1, k2, _, _, k3, k4, k5, k6 = _coefficients(_distortion_vector(dist))
    s = Polynomial([0.0, 1.0])
    numerator, denominator = Polynomial([1.0, k1, k2, k3]), Polynomial([1.0, k4, k5, k6])
    slope = (numerator + 2 * s * numerator.deriv()) * denominator - 2 * s * numerator * denominator.deriv()
    roots = np.concatenate([slope.trim().roots(), denominator.trim().roots()])
    real = roots[np.abs(roots.imag) <= 1e-9 * np.maximum(1.0, np.abs(roots))].real
    positive = real[real > 0]
    return float(positive.min()) if positive.size else np.inf


def _distort_inside_fold(xy: np.ndarray, dist: np.ndarray) -> np.ndarray:
    out = _distort_with_jacobian(xy, dist, jacobian=False)[0]
    beyond = (xy ** 2).sum(-1) >= fold_radius_squared(dist)
    return np.where(beyond[..., None], np.nan, out)


def distort_normalized(xy, dist) -> np.ndarray:
    """Apply OpenCV distortion to normalised coordinates ``(..., 2)`` (``x = Xc/Zc``).

    Points beyond :func:`fold_radius_squared` come back as NaN.
    """
    return _distort_inside_fold(_points(xy, 2, "points"), _distortion_vector(dist))


def undistort_normalized(xy, dist, tol: float = UNDISTORT_TOLERANCE) -> np.ndarray:
    """Invert :func:`distort_normalized` by Newton iteration until ``|distort(x) - xy| <= tol``.

    A point with no preimage inside :func:`fold_radius_squared` (where the model is one-to-one), or a
    non-finite input, comes back as NaN rather than as a wrong coordinate.
    """
    target = _points(xy, 2, "points")
    d = _distortion_vector(dist)
    if not np.any(d):
        return target.copy()
    estimate = target.copy()
    polished = False          # one more Newton step once within tol: quadratic convergence -> ~1e-16
    with np.errstate(all="ignore"):
        for _ in range(UNDISTORT_MAX_ITERATIONS):
            current, (jxx, jxy, jyy) = _distort_with_jacobian(estimate, d, jacobian=True)
            residual = current - target
            within = not np.any(np.abs(residual).max(-1) > tol)
            if within and polished:
                break
            polished = within
            det = jxx * jyy - jxy * jxy
            step_x = (jyy * residual[..., 0] - jxy * residual[..., 1]) / det
            step_y = (jxx * residual[..., 1] - jxy * residual[..., 0]) / det
            estimate = estimate - np.stack([step_x, step_y], axis=-1)
        current = _distort_with_jacobian(estimate, d, jacobian=False)[0]
        converged = ((np.abs(current - target).max(-1) <= tol)
                     & ((estimate ** 2).sum(-1) < fold_radius_squared(d)))
    return np.where(converged[..., None], estimate, np.nan)


# ----------------------------------------------------------------------------- camera

@dataclass(eq=False)
class Camera:
    """A calibrated pinhole camera: intrinsics ``K``, OpenCV distortion, world->camera ``R``, ``t``.

    K: (3, 3) upper-triangular, ``K[2] = (0, 0, 1)``, positive focal lengths (skew allowed).
    R: (3, 3) rotation world -> camera; t: (3,) translation (``Xc = R X + t``), same unit as the world.
    dist: 0, 4, 5 or 8 OpenCV coefficients, stored as (5,) or (8,).
    width, height: image size in pixels (optional); name: free text.
    """

    K: np.ndarray
    R: np.ndarray
    t: np.ndarray
    dist: np.ndarray = field(default_factory=lambda: np.zeros(5))
    width: int | None = None
    height: int | None = None
    name: str = ""

    def __post_init__(self):
        where = f"camera {self.name!r}" if self.name else "camera"
        self.K = _fixed_shape(self.K, "K", (3, 3), where)
        k = self.K
        if not (np.allclose(k[2], (0, 0, 1), rtol=0, atol=1e-12) and abs(k[1, 0]) <= 1e-12
                and k[0, 0] > 0 and k[1, 1] > 0):
            raise PosekitError(f"{where}: field 'K' must be [[fx, s, cx], [0, fy, cy], [0, 0, 1]] "
                               f"with fx, fy > 0, got {k.tolist()}")
        self.R = _fixed_shape(self.R, "R", (3, 3), where)
        if not is_rotation_matrix(self.R):
            raise PosekitError(f"{where}: field 'R' is not a rotation matrix (R^T R = I and det R = +1 "
                               f"within {ROTATION_TOLERANCE})")
        self.t = _fixed_shape(self.t, "t", (3,), where)
        self.dist = _distortion_vector(self.dist, "dist", where)
        self.width = _optional_size(self.width, "width", where)
        self.height = _optional_size(self.height, "height", where)
        self.name = str(self.name)

    # -- frames

    @property
    def center(self) -> np.ndarray:
        """Camera position in world coordinates, ``-R.T @ t``."""
        return -self.R.T @ self.t

    @property
    def projection_matrix(self) -> np.ndarray:
        """The 3x4 ``P = K [R | t]`` of the undistorted pinhole model."""
        return self.K @ np.concatenate([self.R, self.t[:, None]], axis=1)

    def world_to_camera(self, points) -> np.ndarray:
        """World points ``(..., 3)`` -> camera coordinates ``(..., 3)`` (z forward)."""
        return _points(points, 3, "points") @ self.R.T + self.t

    def camera_to_world(self, points) -> np.ndarray:
        """Camera coordinates ``(..., 3)`` -> world points ``(..., 3)``."""
        return (_points(points, 3, "points") - self.t) @ self.R

    # -- image plane

    def _normalized_to_pixels(self, xy: np.ndarray) -> np.ndarray:
        k = self.K
        u = k[0, 0] * xy[..., 0] + k[0, 1] * xy[..., 1] + k[0, 2]
        v = k[1, 1] * xy[..., 1] + k[1, 2]
        return np.stack([u, v], axis=-1)

    def _pixels_to_normalized(self, uv: np.ndarray) -> np.ndarray:
        k = self.K
        y = (uv[..., 1] - k[1, 2]) / k[1, 1]
        x = (uv[..., 0] - k[0, 2] - k[0, 1] * y) / k[0, 0]
        return np.stack([x, y], axis=-1)

    def project(self, points, distort: bool = True) -> np.ndarray:
        """World points ``(..., 3)`` -> pixels ``(..., 2)``.

        Points on or behind the camera plane (``Zc <= 0``) have no image and come back as NaN, as do
        NaN inputs (missing joints) and, with ``distort``, points so far off-axis that the lens model
        folds back (see :func:`fold_radius_squared`) — OpenCV would place those inside the image.
        """
        cam = self.world_to_camera(points)
        z = cam[..., 2:3]
        with np.errstate(divide="ignore", invalid="ignore"):
            xy = np.where(z > 0, cam[..., :2] / z, np.nan)
        if distort:
            xy = _distort_inside_fold(xy, self.dist)
        return self._normalized_to_pixels(xy)

    def distort_points(self, points, pixels: bool = True) -> np.ndarray:
        """Ideal (undistorted) points ``(..., 2)`` -> where the lens images them.

        ``pixels=True``: pixel coordinates in and out; ``False``: normalised coordinates. Points beyond
        the lens model's fold are NaN.
        """
        p = _points(points, 2, "points")
        xy = self._pixels_to_normalized(p) if pixels else p
        out = _distort_inside_fold(xy, self.dist)
        return self._normalized_to_pixels(out) if pixels else out

    def undistort_points(self, points, pixels: bool = True) -> np.ndarray:
        """Observed (distorted) points ``(..., 2)`` -> ideal pinhole points, iterated to 1e-10.

        ``pixels=True``: pixel coordinates in and out (the pixels a distortion-free camera with the
        same ``K`` would see); ``False``: normalised coordinates. Points that cannot be undistorted
        are NaN (see :func:`undistort_normalized`).
        """
        p = _points(points, 2, "points")
        xy = self._pixels_to_normalized(p) if pixels else p
        out = undistort_normalized(xy, self.dist)
        return self._normalized_to_pixels(out) if pixels else out

    def pixel_to_ray(self, pixels, undistort: bool = True):
        """Back-project pixels ``(..., 2)`` to world rays: ``(origins (..., 3), unit directions (..., 3))``.

        The origin is the camera centre; the direction points into the scene (``Zc > 0``).
        """
        xy = self._pixels_to_normalized(_points(pixels, 2, "pixels"))
        if undistort:
            xy = undistort_normalized(xy, self.dist)
        rays_cam = np.concatenate([xy, np.ones(xy.shape[:-1] + (1,))], axis=-1)
        directions = rays_cam @ self.R
        directions = directions / np.linalg.norm(directions, axis=-1, keepdims=True)
        origins = np.broadcast_to(self.center, directions.shape).copy()
        return origins, directions

    # -- dictionaries

    @classmethod
    def from_dict(cls, d: dict, *, length_scale: float = 1.0, name: str | None = None,
                  where: str | None = None) -> "Camera":
        """Build a camera from the usual JSON spellings.

        Intrinsics: ``K`` (3x3) | ``fx, fy, cx, cy`` (optional ``skew``) | ``f`` (2,) and ``c`` (2,).
        Distortion: ``dist`` | ``distCoef`` (CMU Panoptic) | ``distCoeffs`` | ``k`` (k1, k2, k3[, k4, k5,
        k6]) with ``p`` (p1, p2) — all read as OpenCV coefficients; absent means none.
        Rotation: ``R`` (3x3, world -> camera) | ``rvec`` (Rodrigues vector).
        Position: ``t`` (3,) or (3, 1) translation, ``Xc = R X + t`` (OpenCV, CMU Panoptic) | ``T`` the
        camera centre in the world, ``Xc = R (X - T)`` — the Campus/Shelf and MMPose spelling.
        (Human3.6M's ``cameras.pkl`` stores the transposed R, camera -> world;
        ``posekit.data.h36m.read_h36m_cameras`` converts it.) Image size: ``width``/``height`` | ``w``/``h`` | ``resolution`` [w, h].
        ``length_scale`` multiplies the position (e.g. 10 turns Panoptic centimetres into mm).
        ``name`` overrides ``d["name"]`` (for files keyed by camera id); ``where`` prefixes error
        messages (e.g. the file name).
        """
        if name is None:
            name = d.get("name", "") if isinstance(d, dict) else ""
        name = str(name)
        label = f"camera {name!r}" if name else "camera"
        label = f"{where}: {label}" if where else label
        if not isinstance(d, dict):
            raise PosekitError(f"{label}: expected a dict of camera fields, got {type(d).__name__}")
        scale = _fixed_shape(length_scale, "length_scale", (), label)
        if scale <= 0:
            raise PosekitError(f"{label}: length_scale must be positive, got {length_scale!r}")

        kmat = cls._intrinsics_from_dict(d, label)
        rot = cls._rotation_from_dict(d, label)
        t = cls._translation_from_dict(d, rot, label) * scale
        dist = cls._distortion_from_dict(d, label)
        width, height = cls._size_from_dict(d, label)
        try:
            return cls(K=kmat, R=rot, t=t, dist=dist, width=width, height=height, name=name)
        except PosekitError as exc:
            if where:
                raise PosekitError(f"{where}: {exc}") from None
            raise

    @staticmethod
    def _intrinsics_from_dict(d: dict, where: str) -> np.ndarray:
        if "K" in d:
            return _fixed_shape(d["K"], "K", (3, 3), where)
        if all(key in d for key in ("fx", "fy", "cx", "cy")):
            fx, fy, cx, cy, skew = (float(_fixed_shape(d.get(key, 0.0), key, (), where))
                                    for key in ("fx", "fy", "cx", "cy", "skew"))
        elif "f" in d and "c" in d:
            fx, fy = _fixed_shape(d["f"], "f", (2,), where)
            cx, cy = _fixed_shape(d["c"], "c", (2,), where)
            skew = 0.0
        else:
            raise PosekitError(f"{where}: no intrinsics: give 'K', or 'fx', 'fy', 'cx', 'cy', or 'f' and 'c'")
        return np.array([[fx, skew, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])

    @staticmethod
    def _rotation_from_dict(d: dict, where: str) -> np.ndarray:
        from_rvec = None
        if "rvec" in d:
            from_rvec = axis_angle_to_matrix(_fixed_shape(d["rvec"], "rvec", (3,), where))
        if "R" not in d:
            if from_rvec is None:
                raise PosekitError(f"{where}: no rotation: give 'R' (3x3) or 'rvec' (Rodrigues vector)")
            return from_rvec
        rot = _fixed_shape(d["R"], "R", (3, 3), where)
        if from_rvec is not None and np.abs(rot - from_rvec).max() > ROTATION_TOLERANCE:
            raise PosekitError(f"{where}: fields 'R' and 'rvec' describe different rotations")
        return rot

    @staticmethod
    def _translation_from_dict(d: dict, rot: np.ndarray, where: str) -> np.ndarray:
        t = _fixed_shape(d["t"], "t", (3,), where) if "t" in d else None
        if "T" in d:
            center = _fixed_shape(d["T"], "T", (3,), where)
            from_center = -rot @ center
            if t is not None and np.abs(t - from_center).max() > 1e-6 * max(1.0, np.abs(t).max()):
                raise PosekitError(f"{where}: fields 't' (translation) and 'T' (camera centre) disagree")
            return from_center
        if t is None:
            raise PosekitError(f"{where}: no position: give 't' (translation) or 'T' (camera centre)")
        return t

    @staticmethod
    def _distortion_from_dict(d: dict, where: str) -> np.ndarray:
        for key in ("dist", "distCoef", "distCoeffs"):
            if key in d:
                return _distortion_vector(d[key], key, where)
        if "k" not in d and "p" not in d:
            return np.zeros(5)
        radial = _numeric(d.get("k", []), "k", where).ravel()
        tangential = _numeric(d.get("p", [0.0, 0.0]), "p", where).ravel()
        if radial.size not in (0, 1, 2, 3, 6) or tangential.size != 2:
            raise PosekitError(f"{where}: fields 'k' (up to 3 or 6 radial) and 'p' (2 tangential) have "
                               f"sizes {radial.size} and {tangential.size}")
        k = np.concatenate([radial, np.zeros(6 - radial.size)])
        coefficients = np.array([k[0], k[1], tangential[0], tangential[1], k[2], k[3], k[4], k[5]])
        return coefficients if radial.size == 6 else coefficients[:5]

    @staticmethod
    def _size_from_dict(d: dict, where: str):
        if "resolution" in d:
            res = _fixed_shape(d["resolution"], "resolution", (2,), where)
            return res[0], res[1]
        for wkey, hkey in (("width", "height"), ("w", "h")):
            if wkey in d or hkey in d:
                return d.get(wkey), d.get(hkey)
        return None, None

    def to_dict(self) -> dict:
        """Plain JSON-ready dict (``K``, ``dist``, ``R``, ``t``, size, name); ``from_dict`` reads it back."""
        out = {"name": self.name, "K": self.K.tolist(), "dist": self.dist.tolist(),
               "R": self.R.tolist(), "t": self.t.tolist()}
        if self.width is not None:
            out["width"] = self.width
        if self.height is not None:
            out["height"] = self.height
        return out


# ----------------------------------------------------------------------------- simple models

def _projection_rotation(rotation) -> np.ndarray | None:
    if rotation is None:
        return None
    r = _points(rotation, 3, "R")
    if r.ndim < 2 or r.shape[-2] not in (2, 3):
        raise PosekitError(f"R: expected shape (..., 3, 3) or (..., 2, 3), got {r.shape}")
    if not np.isfinite(r).all():
        raise PosekitError("R: contains NaN or infinite values")
    gram = r @ np.swapaxes(r, -1, -2)
    if np.abs(gram - np.eye(r.shape[-2])).max(initial=0.0) > ROTATION_TOLERANCE:
        raise PosekitError(f"R: rows are not orthonormal within {ROTATION_TOLERANCE}")
    if r.shape[-2] == 3 and np.any(np.abs(np.linalg.det(r) - 1) > ROTATION_TOLERANCE):
        raise PosekitError("R: det R must be +1 (a rotation, not a reflection)")
    return r


def orthographic_project(points, R=None) -> np.ndarray:
    """Orthographic camera: ``x = (R X)[:2]`` for point sets ``(..., J, 3)`` -> ``(..., J, 2)``.

    ``R``: (..., 3, 3) rotation or (..., 2, 3) orthonormal rows (the NRSfM camera), one per point set
    and broadcast over the leading axes; None is the identity (drop z).
    """
    X = _points(points, 3, "points")
    if X.ndim < 2:
        raise PosekitError(f"points: expected a point set (..., J, 3), got {X.shape}")
    r = _projection_rotation(R)
    if r is None:
        return X[..., :2].copy()
    try:
        return (X @ np.swapaxes(r, -1, -2))[..., :2]
    except ValueError:
        raise PosekitError(f"orthographic_project: R {r.shape} does not broadcast with the point sets "
                           f"{X.shape[:-2]}") from None


def weak_perspective_project(points, scale, R=None, t=None) -> np.ndarray:
    """Weak perspective (scaled orthographic): ``x = s * (R X)[:2] + t`` per point set.

    points (..., J, 3); scale (...) one per point set; R as in :func:`orthographic_project`; t (..., 2)
    image offset added after scaling (None = 0). Returns (..., J, 2). This is the camera of NRSfM and
    of lifting networks' 3D->2D reprojection: depth variation within the set is ignored.
    """
    x = orthographic_project(points, R)
    s = _as_float(scale, "scale")
    offset = np.zeros(2) if t is None else _points(t, 2, "t")
    if not (np.isfinite(s).all() and np.isfinite(offset).all()):
        raise PosekitError("weak_perspective_project: scale and t must be finite")
    try:
        return s[..., None, None] * x + offset[..., None, :]
    except ValueError:
        raise PosekitError(f"weak_perspective_project: scale {s.shape} and t {offset.shape} do not "
                           f"broadcast with the point sets {x.shape[:-2]}") from None
