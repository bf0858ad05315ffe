"""The plain structures every reader returns and every stage consumes.

``PoseInstances``: 2D persons in a set of images or video frames, one row per person.
``Motion``: 3D joint positions of one subject over time.
Both carry their skeleton, so joint order is never implicit.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from posekit.errors import PosekitError
from posekit.skeletons import Skeleton, get_skeleton


@dataclass
class ImageInfo:
    """One image or video frame."""

    id: int
    file_name: str = ""
    width: int = 0
    height: int = 0
    sequence: str | None = None          # video / sequence name (PoseTrack)
    frame_index: int | None = None       # position in the sequence
    is_labeled: bool = True              # PoseTrack: frames without labels are not scored
    ignore_regions: list[np.ndarray] = field(default_factory=list)  # polygons, each (P, 2) x, y


@dataclass
class PoseInstances:
    """Persons in images (ground truth or predictions), one row per person.

    keypoints   (N, K, 2) float, pixels
    visibility  (N, K) float: COCO flag (0 unlabelled, 1 occluded, 2 visible) for ground truth,
                per-keypoint confidence in [0, 1] for predictions
    image_ids   (N,) int
    boxes       (N, 4) float, x, y, w, h (NaN where unknown)
    scores      (N,) float, instance score (1 for ground truth)
    areas       (N,) float, COCO segment area (NaN where unknown)
    iscrowd     (N,) bool
    track_ids   (N,) int, -1 where unknown
    head_boxes  (N, 4) float x1, y1, x2, y2, or None (MPII/PoseTrack head rectangles for PCKh)
    ids         (N,) int, annotation ids
    images      {image_id: ImageInfo}
    """

    skeleton: Skeleton
    keypoints: np.ndarray
    visibility: np.ndarray
    image_ids: np.ndarray
    boxes: np.ndarray | None = None
    scores: np.ndarray | None = None
    areas: np.ndarray | None = None
    iscrowd: np.ndarray | None = None
    track_ids: np.ndarray | None = None
    head_boxes: np.ndarray | None = None
    ids: np.ndarray | None = None
    images: dict[int, ImageInfo] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.skeleton = get_skeleton(self.skeleton)
        k = len(self.skeleton)
        self.keypoints = np.asarray(self.keypoints, dtype=float).reshape(-1, k, 2)
        n = len(self.keypoints)
        self.visibility = np.asarray(self.visibility, dtype=float).reshape(n, k)
        self.image_ids = np.asarray(self.image_ids, dtype=np.int64).reshape(n)

        def column(value, shape, fill, dtype=float):
            if value is None:
                return np.full(shape, fill, dtype=dtype)
            arr = np.asarray(value, dtype=dtype)
            if arr.shape != shape:
                raise PosekitError(f"PoseInstances: expected shape {shape}, got {arr.shape}")
            return arr

        self.boxes = column(self.boxes, (n, 4), np.nan)
        self.scores = column(self.scores, (n,), 1.0)
        self.areas = column(self.areas, (n,), np.nan)
        self.iscrowd = column(self.iscrowd, (n,), False, bool)
        self.track_ids = column(self.track_ids, (n,), -1, np.int64)
        self.ids = column(self.ids, (n,), 0, np.int64) if self.ids is not None else np.arange(1, n + 1)
        if self.head_boxes is not None:
            self.head_boxes = column(self.head_boxes, (n, 4), np.nan)

    def __len__(self) -> int:
        return len(self.keypoints)

    def select(self, mask) -> "PoseInstances":
        """The rows where ``mask`` is true (or the given indices), with the same images."""
        idx = np.asarray(mask)
        return PoseInstances(
            self.skeleton, self.keypoints[idx], self.visibility[idx], self.image_ids[idx],
            self.boxes[idx], self.scores[idx], self.areas[idx], self.iscrowd[idx],
            self.track_ids[idx], None if self.head_boxes is None else self.head_boxes[idx],
            self.ids[idx], self.images, dict(self.meta))


@dataclass
class Motion:
    """3D joint positions of one subject over time.

    positions (T, K, 3) float, millimetres; fps: frames per second; meta: source file, subject,
    action and any reader-specific details.
    """

    skeleton: Skeleton
    positions: np.ndarray
    fps: float
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.skeleton = get_skeleton(self.skeleton)
        self.positions = np.asarray(self.positions, dtype=float)
        k = len(self.skeleton)
        if self.positions.ndim != 3 or self.positions.shape[1:] != (k, 3):
            raise PosekitError(f"Motion: expected positions (T, {k}, 3) for skeleton "
                               f"{self.skeleton.name!r}, got {self.positions.shape}")

    def __len__(self) -> int:
        return len(self.positions)
