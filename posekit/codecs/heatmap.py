"""Gaussian joint heatmaps and limb (bone) heatmaps: target encoding and prediction decoding.

Coordinates: a keypoint at input-crop pixel x maps to heatmap pixel x / stride with
stride = input_size / heatmap_size per axis, and pixel centres sit at integer coordinates in both
(the convention of HRNet's ``get_final_preds`` and MMPose's ``MSRAHeatmap``). Targets are
"unbiased": the Gaussian is centred at the exact sub-pixel position instead of the rounded one, so
decoding can recover sub-pixel locations.

Decoding is argmax plus HRNet's quarter offset (move 0.25 px towards the higher neighbour, per axis,
where both neighbours exist), or, with ``dark=True``, DARK (Zhang et al., CVPR 2020): blur the map
with a Gaussian of the target's width, take the log, and make one Newton step at the argmax.

Bone targets (DITN): for a bone (a, b) the map is exp(-d^2 / (2 sigma_b^2)), d being the distance
from the pixel to the segment a-b (the perpendicular distance where the foot of the perpendicular
falls on the segment, the distance to the nearer endpoint elsewhere), so the map peaks (value 1)
along the whole limb, falls off across it like a joint Gaussian and is rounded at the joints. A bone
with an unlabelled endpoint gets an all-zero map and weight 0.
"""
from __future__ import annotations

import numpy as np

from posekit.errors import PosekitError
from posekit.skeletons import Skeleton, get_skeleton


def gaussian_heatmaps(centers: np.ndarray, valid: np.ndarray, size: tuple[int, int], sigma: float) -> np.ndarray:
    """(K, h, w) float32 maps exp(-|p - c|^2 / (2 sigma^2)) for centres ``centers`` (K, 2) in heatmap
    pixels; rows with ``valid`` False are zero. ``size`` is (width, height)."""
    w, h = size
    xs = np.arange(w, dtype=np.float64)
    ys = np.arange(h, dtype=np.float64)
    out = np.zeros((len(centers), h, w), dtype=np.float32)
    for k in np.flatnonzero(valid):
        gx = np.exp(-((xs - centers[k, 0]) ** 2) / (2 * sigma ** 2))
        gy = np.exp(-((ys - centers[k, 1]) ** 2) / (2 * sigma ** 2))
        out[k] = np.outer(gy, gx)
    return out


def segment_distance(points: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Euclidean distance from each point (..., 2) to the closed segment start-end."""
    direction = end - start
    length2 = float(direction @ direction)
    rel = points - start
    t = np.zeros(points.shape[:-1]) if length2 == 0 else np.clip(rel @ direction / length2, 0.0, 1.0)
    return np.linalg.norm(rel - t[..., None] * direction, axis=-1)


def limb_heatmaps(starts: np.ndarray, ends: np.ndarray, valid: np.ndarray, size: tuple[int, int],
                  sigma: float) -> np.ndarray:
    """(B, h, w) float32 maps exp(-d^2 / (2 sigma^2)), d = distance to segment b (heatmap pixels)."""
    w, h = size
    grid = np.stack(np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64)), axis=-1)
    out = np.zeros((len(starts), h, w), dtype=np.float32)
    for b in np.flatnonzero(valid):
        d = segment_distance(grid, starts[b], ends[b])
        out[b] = np.exp(-(d ** 2) / (2 * sigma ** 2))
    return out


def argmax_keypoints(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer (x, y) of each map's maximum (N, K, 2) and the maximum value (N, K)."""
    n, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, k, h * w)
    index = flat.argmax(axis=2)
    coords = np.stack((index % w, index // w), axis=-1).astype(np.float64)
    return coords, np.take_along_axis(flat, index[..., None], axis=2)[..., 0].astype(np.float64)


def quarter_offset(heatmaps: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """HRNet's refinement: shift 0.25 px towards the larger neighbour on each axis that has both."""
    n, k, h, w = heatmaps.shape
    px, py = coords[..., 0].astype(int), coords[..., 1].astype(int)
    ni, ki = np.meshgrid(np.arange(n), np.arange(k), indexing="ij")
    out = coords.copy()
    inner_x = (px > 0) & (px < w - 1)
    inner_y = (py > 0) & (py < h - 1)
    dx = heatmaps[ni, ki, py, np.clip(px + 1, 0, w - 1)] - heatmaps[ni, ki, py, np.clip(px - 1, 0, w - 1)]
    dy = heatmaps[ni, ki, np.clip(py + 1, 0, h - 1), px] - heatmaps[ni, ki, np.clip(py - 1, 0, h - 1), px]
    out[..., 0] += np.where(inner_x, 0.25 * np.sign(dx), 0.0)
    out[..., 1] += np.where(inner_y, 0.25 * np.sign(dy), 0.0)
    return out


def dark_refine(heatmaps: np.ndarray, coords: np.ndarray, kernel: int) -> np.ndarray:
    """Distribution-aware refinement: one Newton step on the log of the blurred map at the argmax.

    DARK blurs each map with a Gaussian over a ``kernel``-wide window (zero border, the sigma OpenCV
    derives from that width) and rescales it to its old maximum; the rescaling does not change the
    derivatives of the log, and only the 3x3 neighbourhood of the argmax enters the Newton step, so
    the blur is evaluated there alone. The step is taken where the local Hessian is negative
    definite (a true peak) and moves at most half a pixel per axis (the sampled maximum of a unimodal
    peak lies within half a pixel of the true one); elsewhere the quarter offset is used, so a flat,
    noisy or border-clipped map cannot throw a keypoint."""
    n, k, h, w = heatmaps.shape
    radius = (kernel - 1) // 2
    sigma = 0.3 * (radius - 1) + 0.8
    taps = np.exp(-np.arange(-radius, radius + 1) ** 2 / (2 * sigma ** 2))
    taps /= taps.sum()
    span = np.arange(-radius - 1, radius + 2)
    ni, ki = np.meshgrid(np.arange(n), np.arange(k), indexing="ij")
    ys = coords[..., 1].astype(int)[..., None] + span
    xs = coords[..., 0].astype(int)[..., None] + span
    inside = ((ys >= 0) & (ys < h))[..., :, None] & ((xs >= 0) & (xs < w))[..., None, :]
    patch = heatmaps[ni[..., None, None], ki[..., None, None],
                     np.clip(ys, 0, h - 1)[..., :, None], np.clip(xs, 0, w - 1)[..., None, :]]
    patch = np.where(inside, patch.astype(np.float64), 0.0)
    rows = np.stack([patch[..., :, o:o + kernel] @ taps for o in range(3)], axis=-1)
    local = np.stack([np.einsum("...jx,j->...x", rows[..., o:o + kernel, :], taps) for o in range(3)], axis=-2)
    logs = np.log(np.clip(local, 1e-10, None))  # logs[..., 1 + dy, 1 + dx]

    gx = 0.5 * (logs[..., 1, 2] - logs[..., 1, 0])
    gy = 0.5 * (logs[..., 2, 1] - logs[..., 0, 1])
    hxx = logs[..., 1, 2] - 2 * logs[..., 1, 1] + logs[..., 1, 0]
    hyy = logs[..., 2, 1] - 2 * logs[..., 1, 1] + logs[..., 0, 1]
    hxy = 0.25 * (logs[..., 2, 2] - logs[..., 0, 2] - logs[..., 2, 0] + logs[..., 0, 0])
    det = hxx * hyy - hxy ** 2
    peak = (hxx < 0) & (det > 1e-12)
    safe = np.where(peak, det, 1.0)
    step_x = -(hyy * gx - hxy * gy) / safe
    step_y = -(hxx * gy - hxy * gx) / safe
    ok = peak & (np.abs(step_x) <= 0.5) & (np.abs(step_y) <= 0.5)
    refined = coords + np.stack((step_x, step_y), axis=-1)
    return np.where(ok[..., None], refined, quarter_offset(heatmaps, coords))


def flip_heatmaps(heatmaps, flip_indices, shift: bool = True):
    """Heatmaps predicted on a horizontally mirrored crop -> heatmaps for the original crop.

    Mirrors the width axis, swaps left/right channels (``flip_indices``; channel axis -3) and, with
    ``shift``, moves the maps one pixel right (HRNet's ``SHIFT_HEATMAP``). Why the shift: the image
    mirror sends input x to W - 1 - x but the heatmap mirror sends heatmap u to w - 1 - u, so a joint
    comes back at x/stride - (stride - 1)/stride; one pixel over-corrects that by 1/stride (0.25 px at
    stride 4, i.e. 1 input pixel to the right). Works on numpy arrays and torch tensors."""
    flip_indices = np.asarray(flip_indices)
    if hasattr(heatmaps, "flip") and not isinstance(heatmaps, np.ndarray):  # torch tensor
        import torch

        out = heatmaps.flip(-1).index_select(-3, torch.as_tensor(flip_indices, device=heatmaps.device))
        if shift:
            out = torch.cat((out[..., :1], out[..., :-1]), dim=-1)
        return out
    heatmaps = np.asarray(heatmaps)
    out = heatmaps[..., flip_indices, :, ::-1]
    if shift:
        out = np.concatenate((out[..., :1], out[..., :-1]), axis=-1)
    return np.ascontiguousarray(out)


class HeatmapCodec:
    """Encodes keypoints of one crop into heatmap targets and decodes predicted heatmaps back.

    Sizes are (width, height). ``bones=True`` also encodes one limb map per ``skeleton.bones``
    entry (DITN's bone branch). ``dark=True`` decodes with DARK instead of the quarter offset."""

    def __init__(self, skeleton: Skeleton | str, input_size=(192, 256), heatmap_size=(48, 64),
                 sigma: float = 2.0, bone_sigma: float | None = None, bones: bool = False,
                 dark: bool = False, blur_kernel: int | None = None):
        self.skeleton = get_skeleton(skeleton)
        self.input_size = _size("input_size", input_size)
        self.heatmap_size = _size("heatmap_size", heatmap_size)
        self.sigma = _positive("sigma", sigma)
        self.bone_sigma = self.sigma if bone_sigma is None else _positive("bone_sigma", bone_sigma)
        self.bones = bool(bones)
        if self.bones and len(self.skeleton.bones) == 0:
            raise PosekitError(f"skeleton {self.skeleton.name!r} lists no bones to encode")
        self.dark = bool(dark)
        self.blur_kernel = max(3, 2 * int(round(3 * self.sigma)) - 1) if blur_kernel is None else int(blur_kernel)
        if self.blur_kernel < 1 or self.blur_kernel % 2 == 0:
            raise PosekitError(f"blur_kernel must be a positive odd number, got {blur_kernel}")
        self.stride = np.array([self.input_size[0] / self.heatmap_size[0],
                                self.input_size[1] / self.heatmap_size[1]])

    def encode(self, keypoints, visibility) -> dict:
        """Keypoints (K, 2) in input-crop pixels and visibility (K,) (> 0 = labelled) ->
        ``heatmaps`` (K, h, w), ``weights`` (K,) and, with bones, ``bone_heatmaps`` (B, h, w) and
        ``bone_weights`` (B,). A joint's weight is 0 when unlabelled or more than 3 sigma outside
        the heatmap (no usable Gaussian on the map), as in HRNet."""
        k = len(self.skeleton)
        keypoints = np.asarray(keypoints, dtype=np.float64)
        visibility = np.asarray(visibility, dtype=np.float64)
        if keypoints.shape != (k, 2):
            raise PosekitError(f"keypoints have shape {keypoints.shape}; skeleton "
                               f"{self.skeleton.name!r} needs ({k}, 2)")
        if visibility.shape != (k,):
            raise PosekitError(f"visibility has shape {visibility.shape}; expected ({k},)")
        labelled = visibility > 0
        if not np.all(np.isfinite(keypoints[labelled])):
            raise PosekitError("a labelled keypoint (visibility > 0) has a NaN or infinite coordinate")
        centers = np.where(labelled[:, None], keypoints, 0.0) / self.stride
        w, h = self.heatmap_size
        margin = 3 * self.sigma
        on_map = ((centers[:, 0] >= -margin) & (centers[:, 0] <= w - 1 + margin)
                  & (centers[:, 1] >= -margin) & (centers[:, 1] <= h - 1 + margin))
        weights = (labelled & on_map).astype(np.float32)
        out = {"heatmaps": gaussian_heatmaps(centers, weights > 0, self.heatmap_size, self.sigma),
               "weights": weights}
        if self.bones:
            ends = self.skeleton.bone_array
            bone_valid = labelled[ends[:, 0]] & labelled[ends[:, 1]]
            out["bone_heatmaps"] = limb_heatmaps(centers[ends[:, 0]], centers[ends[:, 1]], bone_valid,
                                                 self.heatmap_size, self.bone_sigma)
            out["bone_weights"] = bone_valid.astype(np.float32)
        return out

    def decode(self, heatmaps) -> tuple[np.ndarray, np.ndarray]:
        """(N, K, h, w) heatmaps (numpy or torch) -> keypoints (N, K, 2) in input-crop pixels and
        scores (N, K) (the maps' maxima)."""
        if hasattr(heatmaps, "detach"):
            heatmaps = heatmaps.detach().cpu().numpy()
        heatmaps = np.asarray(heatmaps, dtype=np.float32)
        w, h = self.heatmap_size
        if heatmaps.ndim != 4 or heatmaps.shape[1:] != (len(self.skeleton), h, w):
            raise PosekitError(f"heatmaps have shape {heatmaps.shape}; expected (N, {len(self.skeleton)}, {h}, {w})")
        if not np.all(np.isfinite(heatmaps)):
            raise PosekitError("heatmaps contain NaN or infinite values")
        coords, scores = argmax_keypoints(heatmaps)
        if self.dark:
            coords = dark_refine(heatmaps, coords, self.blur_kernel)
        else:
            coords = quarter_offset(heatmaps, coords)
        return coords * self.stride, scores

    def flip_heatmaps(self, heatmaps, shift: bool = True):
        """See :func:`flip_heatmaps`; channels are swapped with ``skeleton.flip_indices``."""
        return flip_heatmaps(heatmaps, self.skeleton.flip_indices, shift=shift)


def _size(name: str, value) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in value)
    except (TypeError, ValueError):
        raise PosekitError(f"{name} must be (width, height), got {value!r}") from None
    if w < 1 or h < 1:
        raise PosekitError(f"{name} must be positive, got {value!r}")
    return w, h


def _positive(name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise PosekitError(f"{name} must be a number, got {value!r}") from None
    if not np.isfinite(v) or v <= 0:
        raise PosekitError(f"{name} must be positive, got {value!r}")
    return v
