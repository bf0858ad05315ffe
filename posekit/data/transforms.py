"""Affine crops: the one place where image pixels and crop pixels are related.

Pixel convention (the one OpenCV's ``warpAffine`` uses): integer coordinates are pixel *centres*,
so pixel ``(i, j)`` covers ``[i - 0.5, i + 0.5] x [j - 0.5, j + 0.5]`` and an image of width ``W``
spans ``[-0.5, W - 0.5]``. A crop of size ``s`` centred at ``c`` covers ``[c - s/2, c + s/2]`` and is
mapped edge to edge onto an output of ``W_out`` pixels: ``c`` lands on ``(W_out - 1) / 2`` and one
image pixel becomes ``W_out / s`` crop pixels.

Rotation (radians) follows MediaPipe's ``NormalizedRect.rotation``: a positive angle means the crop
window is turned clockwise as seen on screen (y points down), so the crop shows the content turned
counter-clockwise by that angle, exactly as ``cv2.getRotationMatrix2D(center, degrees(angle), scale)``.

Every matrix is a 2x3 float array mapping image points to crop points: ``q = M[:, :2] @ p + M[:, 2]``.
"""
from __future__ import annotations

import cv2
import numpy as np

from posekit.errors import PosekitError


def to_rgb_uint8(image) -> np.ndarray:
    """An H x W x 3 uint8 RGB view of ``image``: grayscale (H x W or H x W x 1) is repeated into
    three channels and an alpha channel (H x W x 4) is dropped; other layouts and dtypes are refused.
    """
    img = np.asarray(image)
    if img.dtype != np.uint8:
        raise PosekitError(f"image must be uint8 (0-255), got dtype {img.dtype}")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4) or img.shape[0] == 0 or img.shape[1] == 0:
        raise PosekitError(f"image must be H x W (gray), H x W x 3 (RGB) or H x W x 4 (RGBA), "
                           f"got shape {img.shape}")
    return np.ascontiguousarray(img[:, :, :3])


def _pair(value, name: str) -> np.ndarray:
    arr = np.broadcast_to(np.asarray(value, dtype=float), (2,)).copy()
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise PosekitError(f"{name} must be positive and finite, got {value!r}")
    return arr


def crop_transform(center, size, rotation_rad: float = 0.0, output_size=256) -> np.ndarray:
    """2x3 matrix taking image points into a (rotated) crop window.

    center: (x, y) in image pixels; size: side of a square window, or its (width, height);
    rotation_rad: window rotation (see the module docstring); output_size: side or (width, height)
    of the crop in pixels.
    """
    c = np.asarray(center, dtype=float).reshape(-1)
    if c.shape != (2,) or not np.all(np.isfinite(c)):
        raise PosekitError(f"crop center must be a finite (x, y) pair, got {center!r}")
    if not np.isfinite(rotation_rad):
        raise PosekitError(f"crop rotation must be finite, got {rotation_rad!r}")
    win, out = _pair(size, "crop size"), _pair(output_size, "crop output_size")
    sx, sy = out / win
    cos, sin = np.cos(rotation_rad), np.sin(rotation_rad)
    # Rows: the window's x axis (cos, sin) and y axis (-sin, cos) in the image, scaled to crop pixels.
    linear = np.array([[sx * cos, sx * sin], [-sy * sin, sy * cos]])
    offset = (out - 1.0) / 2.0 - linear @ c
    return np.column_stack([linear, offset])


def invert_affine(matrix) -> np.ndarray:
    """Inverse of a 2x3 affine matrix (crop points back to image points)."""
    m = np.asarray(matrix, dtype=float)
    if m.shape != (2, 3):
        raise PosekitError(f"affine matrix must be 2x3, got shape {m.shape}")
    linear = m[:, :2]
    det = np.linalg.det(linear)
    if not np.isfinite(det) or abs(det) < 1e-12:
        raise PosekitError("affine matrix is singular and has no inverse")
    inv = np.linalg.inv(linear)
    return np.column_stack([inv, -inv @ m[:, 2]])


def apply_affine(points, matrix) -> np.ndarray:
    """Map points ``(..., 2)`` with a 2x3 matrix (NaN points stay NaN)."""
    m = np.asarray(matrix, dtype=float)
    p = np.asarray(points, dtype=float)
    if m.shape != (2, 3):
        raise PosekitError(f"affine matrix must be 2x3, got shape {m.shape}")
    if p.ndim == 0 or p.shape[-1] != 2:
        raise PosekitError(f"points must have shape (..., 2), got {p.shape}")
    return p @ m[:, :2].T + m[:, 2]


def warp_crop(image: np.ndarray, matrix, output_size, *, border: str = "replicate",
              interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Cut the crop described by ``matrix`` out of ``image`` (H x W or H x W x C).

    border: "replicate" repeats the edge pixels, "zero" fills with 0, for windows reaching past
    the image.
    """
    img = np.asarray(image)
    if img.ndim not in (2, 3) or img.shape[0] == 0 or img.shape[1] == 0:
        raise PosekitError(f"image must be H x W or H x W x C, got shape {img.shape}")
    modes = {"replicate": cv2.BORDER_REPLICATE, "zero": cv2.BORDER_CONSTANT}
    if border not in modes:
        raise PosekitError(f"border must be one of {sorted(modes)}, got {border!r}")
    width, height = (int(round(v)) for v in _pair(output_size, "crop output_size"))
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (2, 3):
        raise PosekitError(f"affine matrix must be 2x3, got shape {m.shape}")
    return cv2.warpAffine(img, m, (width, height), flags=interpolation,
                          borderMode=modes[border], borderValue=0)


__all__ = ["to_rgb_uint8", "crop_transform", "invert_affine", "apply_affine", "warp_crop"]
