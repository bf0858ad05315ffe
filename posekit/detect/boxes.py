"""Axis-aligned boxes as plain numpy arrays, and the detections that carry them.

Formats (all float, pixels, continuous coordinates: a box's area is width * height, no "+1"):
``xyxy`` x1, y1, x2, y2; ``xywh`` x1, y1, width, height (COCO); ``cxcywh`` centre x, centre y,
width, height. Every function takes ``(..., 4)`` arrays.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from posekit.errors import PosekitError


def _boxes(boxes, name: str = "boxes") -> np.ndarray:
    b = np.asarray(boxes, dtype=float)
    if b.ndim == 0 or b.shape[-1] != 4:
        raise PosekitError(f"{name} must have shape (..., 4), got {b.shape}")
    return b


def xyxy_to_xywh(boxes) -> np.ndarray:
    b = _boxes(boxes)
    return np.concatenate([b[..., :2], b[..., 2:] - b[..., :2]], axis=-1)


def xywh_to_xyxy(boxes) -> np.ndarray:
    b = _boxes(boxes)
    return np.concatenate([b[..., :2], b[..., :2] + b[..., 2:]], axis=-1)


def xyxy_to_cxcywh(boxes) -> np.ndarray:
    b = _boxes(boxes)
    return np.concatenate([(b[..., :2] + b[..., 2:]) / 2, b[..., 2:] - b[..., :2]], axis=-1)


def cxcywh_to_xyxy(boxes) -> np.ndarray:
    b = _boxes(boxes)
    return np.concatenate([b[..., :2] - b[..., 2:] / 2, b[..., :2] + b[..., 2:] / 2], axis=-1)


def box_area(boxes) -> np.ndarray:
    """Area of xyxy boxes; inverted boxes count as empty."""
    b = _boxes(boxes)
    return np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)


def intersection_matrix(a, b) -> np.ndarray:
    """(N, M) intersection areas of xyxy boxes ``a`` (N, 4) and ``b`` (M, 4)."""
    a, b = _boxes(a, "a").reshape(-1, 4), _boxes(b, "b").reshape(-1, 4)
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(hi - lo, 0, None)
    return wh[..., 0] * wh[..., 1]


def iou_matrix(a, b) -> np.ndarray:
    """(N, M) intersection over union of xyxy boxes; 0 where both boxes are empty."""
    inter = intersection_matrix(a, b)
    union = box_area(a).reshape(-1, 1) + box_area(b).reshape(1, -1) - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def coverage_matrix(a, b) -> np.ndarray:
    """(N, M) fraction of each box ``a[i]`` that lies inside ``b[j]`` (intersection / area of a)."""
    inter = intersection_matrix(a, b)
    area = box_area(a).reshape(-1, 1)
    return np.divide(inter, area, out=np.zeros_like(inter), where=area > 0)


def _order(scores, n: int) -> np.ndarray:
    s = np.asarray(scores, dtype=float).reshape(-1)
    if s.shape != (n,):
        raise PosekitError(f"expected {n} scores, got {s.shape[0]}")
    return np.argsort(-s, kind="stable")


def nms(boxes, scores, iou_threshold: float) -> np.ndarray:
    """Greedy hard non-maximum suppression; indices of the kept boxes, best score first.

    A box is dropped when its IoU with a kept, higher-scoring box is greater than the threshold.
    """
    b = _boxes(boxes).reshape(-1, 4)
    order = _order(scores, len(b))
    overlaps = iou_matrix(b[order], b[order]) > iou_threshold
    alive = np.ones(len(b), dtype=bool)
    for i in range(len(b)):
        if alive[i]:
            alive[i + 1:] &= ~overlaps[i, i + 1:]
    return order[alive]


def weighted_nms(boxes, scores, iou_threshold: float, keypoints=None):
    """MediaPipe's weighted non-maximum suppression.

    The best remaining box and every remaining box overlapping it by IoU > ``iou_threshold`` form a
    cluster; the cluster is replaced by the score-weighted mean of its boxes (and keypoints), which
    keeps the best box's score. Averaging steadies the boxes of the many anchors that fire on one
    person. Returns (boxes (K, 4), scores (K,), keypoints (K, P, 2) or None), best score first.
    """
    b = _boxes(boxes).reshape(-1, 4)
    s = np.asarray(scores, dtype=float).reshape(-1)
    order = _order(s, len(b))
    kp = None if keypoints is None else np.asarray(keypoints, dtype=float)
    if kp is not None and (kp.ndim != 3 or kp.shape[0] != len(b) or kp.shape[2] != 2):
        raise PosekitError(f"keypoints must be ({len(b)}, P, 2), got {kp.shape}")
    overlaps = iou_matrix(b, b) > iou_threshold
    remaining = np.ones(len(b), dtype=bool)
    out_boxes, out_scores, out_kp = [], [], []
    for best in order:
        if not remaining[best]:
            continue
        cluster = remaining & overlaps[best]
        cluster[best] = True
        weights = s[cluster] / s[cluster].sum() if s[cluster].sum() > 0 else None
        out_boxes.append(np.average(b[cluster], axis=0, weights=weights))
        out_scores.append(s[best])
        if kp is not None:
            out_kp.append(np.average(kp[cluster], axis=0, weights=weights))
        remaining &= ~cluster
    n_points = 0 if kp is None else kp.shape[1]
    return (np.array(out_boxes).reshape(-1, 4), np.array(out_scores, dtype=float),
            None if kp is None else np.array(out_kp).reshape(-1, n_points, 2))


def oks_nms(keypoints, scores, areas, sigmas, threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression of poses by object keypoint similarity; indices kept, best
    score first (ties keep input order).

    keypoints (N, K, 2); scores (N,); areas (N,) object scales (pixels squared). A pose is dropped
    when its OKS with a kept, higher-scoring pose exceeds ``threshold``. OKS of two predictions is
    MMPose's/HRNet's ``oks_iou``: the mean over keypoints of exp(-d^2 / (2 s^2 (2 sigma)^2)), with s^2
    the mean of the two areas; keypoints that are NaN in either pose are left out (no keypoint in
    common: OKS 0).
    """
    kp = np.asarray(keypoints, dtype=float)
    n = len(kp)
    if n == 0:
        return np.zeros(0, dtype=int)
    a = np.asarray(areas, dtype=float).reshape(n)
    variances = (2 * np.asarray(sigmas, dtype=float)) ** 2
    d2 = np.sum((kp[:, None] - kp[None, :]) ** 2, axis=-1)                # (N, N, K)
    scale = np.maximum((a[:, None] + a[None, :]) / 2, np.spacing(1))[..., None]
    valid = np.isfinite(d2)
    similarity = np.where(valid, np.exp(-np.where(valid, d2, 0) / (2 * scale * variances)), 0.0)
    counted = valid.sum(axis=-1)
    oks = np.divide(similarity.sum(axis=-1), counted, out=np.zeros((n, n)), where=counted > 0)
    order = np.argsort(-np.asarray(scores, dtype=float).reshape(n), kind="stable")
    alive = np.ones(n, dtype=bool)
    keep = []
    for i in order:
        if alive[i]:
            keep.append(i)
            alive &= ~(oks[i] > threshold)
    return np.array(keep, dtype=int)


def clip_boxes(boxes, width: float, height: float) -> np.ndarray:
    """Clip xyxy boxes to the image rectangle [0, width] x [0, height]."""
    b = _boxes(boxes).copy()
    b[..., 0::2] = np.clip(b[..., 0::2], 0, width)
    b[..., 1::2] = np.clip(b[..., 1::2], 0, height)
    return b


@dataclass
class Detections:
    """Persons found in one image.

    boxes      (N, 4) x1, y1, x2, y2 in input-image pixels
    scores     (N,) detector confidence
    keypoints  (N, 4, 2) BlazePose alignment points in pixels (mid-hip, full-body scale point,
               mid-shoulder, upper-body scale point), or None for boxes from another source
    """

    boxes: np.ndarray
    scores: np.ndarray
    keypoints: np.ndarray | None = None

    def __post_init__(self):
        self.boxes = _boxes(self.boxes).reshape(-1, 4)
        n = len(self.boxes)
        self.scores = np.asarray(self.scores, dtype=float).reshape(-1)
        if self.scores.shape != (n,):
            raise PosekitError(f"Detections: {n} boxes but {self.scores.shape[0]} scores")
        if self.keypoints is not None:
            self.keypoints = np.asarray(self.keypoints, dtype=float)
            if self.keypoints.shape != (n, 4, 2):
                raise PosekitError(
                    f"Detections: keypoints must be ({n}, 4, 2), got {self.keypoints.shape}")
        if not np.all(np.isfinite(self.boxes)) or not np.all(np.isfinite(self.scores)):
            raise PosekitError("Detections: boxes and scores must be finite")

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def empty(cls, with_keypoints: bool = True) -> "Detections":
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 4, 2)) if with_keypoints else None)

    @classmethod
    def from_boxes(cls, boxes, scores=None, fmt: str = "xyxy") -> "Detections":
        """Boxes from another detector or from annotations (``fmt``: xyxy, xywh or cxcywh)."""
        converters = {"xyxy": np.asarray, "xywh": xywh_to_xyxy, "cxcywh": cxcywh_to_xyxy}
        if fmt not in converters:
            raise PosekitError(f"box format must be one of {sorted(converters)}, got {fmt!r}")
        b = _boxes(converters[fmt](_boxes(boxes))).reshape(-1, 4)
        return cls(b, np.ones(len(b)) if scores is None else scores, None)

    def select(self, index) -> "Detections":
        return Detections(self.boxes[index], self.scores[index],
                          None if self.keypoints is None else self.keypoints[index])


__all__ = ["Detections", "xyxy_to_xywh", "xywh_to_xyxy", "xyxy_to_cxcywh", "cxcywh_to_xyxy",
           "box_area", "intersection_matrix", "iou_matrix", "coverage_matrix", "nms",
           "weighted_nms", "oks_nms", "clip_boxes"]
