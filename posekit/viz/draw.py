"""Overlays: persons' skeletons, keypoints, boxes and labels drawn on a copy of the image.

Colours: a tracked person (``track_id >= 0``) keeps the colour of its track in every frame; untracked
persons get one colour each, in result order. Joints are filled with the person's colour, those
whose name says right (``right_knee``) with white ringed in it, so a left/right swap is visible at a
glance. Line widths
grow with the image so overlays of large photos stay readable.
"""
from __future__ import annotations

import cv2
import numpy as np

from posekit.data.transforms import to_rgb_uint8
from posekit.errors import PosekitError

# Tableau 10, RGB.
PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))
_SHIFT = 4                      # sub-pixel bits for OpenCV drawing
_ONE = 1 << _SHIFT


def person_colour(index: int, track_id: int = -1) -> tuple[int, int, int]:
    """RGB colour of a person: by track when tracked, else by position in the result."""
    return PALETTE[(track_id if track_id >= 0 else index) % len(PALETTE)]


def _fixed(point) -> tuple[int, int]:
    return int(round(point[0] * _ONE)), int(round(point[1] * _ONE))


def draw_poses(image_rgb: np.ndarray, result, *, kpt_thr: float = 0.3, boxes: bool = True,
               labels: bool = True) -> np.ndarray:
    """A copy of ``image_rgb`` (H x W x 3 uint8, the image ``result`` was estimated on) with every
    person drawn: bones from ``result.skeleton.bones`` between keypoints scoring at least
    ``kpt_thr``, those keypoints, the box and a label (track id or rank, and score)."""
    canvas = to_rgb_uint8(image_rgb).copy()
    height, width = canvas.shape[:2]
    if tuple(result.image_size) != (width, height):
        raise PosekitError(f"draw_poses: the result is for a {result.image_size[0]} x {result.image_size[1]} "
                           f"image, the image is {width} x {height}")
    if not 0 <= kpt_thr <= 1:
        raise PosekitError(f"kpt_thr must be in [0, 1], got {kpt_thr!r}")
    thickness = max(1, round(max(width, height) / 400))
    radius = thickness + 1
    skeleton = result.skeleton
    right = skeleton.sides < 0
    font_scale = 0.4 * thickness
    for index, person in enumerate(result.persons):
        colour = person_colour(index, person.track_id)
        kp = np.asarray(person.keypoints, dtype=float)
        shown = np.isfinite(kp).all(axis=1) & (np.asarray(person.keypoint_scores) >= kpt_thr)
        for a, b in skeleton.bone_array:
            if shown[a] and shown[b]:
                cv2.line(canvas, _fixed(kp[a]), _fixed(kp[b]), colour, thickness, cv2.LINE_AA, _SHIFT)
        for j in np.flatnonzero(shown):
            fill = (255, 255, 255) if right[j] else colour
            cv2.circle(canvas, _fixed(kp[j]), radius * _ONE, fill, -1, cv2.LINE_AA, _SHIFT)
            cv2.circle(canvas, _fixed(kp[j]), radius * _ONE, colour, max(1, thickness // 2), cv2.LINE_AA, _SHIFT)
        x1, y1, x2, y2 = np.asarray(person.box, dtype=float)
        if boxes:
            cv2.rectangle(canvas, _fixed((x1, y1)), _fixed((x2, y2)), colour, max(1, thickness // 2),
                          cv2.LINE_AA, _SHIFT)
        if labels:
            text = (f"id {person.track_id} " if person.track_id >= 0 else f"#{index + 1} ") + f"{person.score:.2f}"
            (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, max(1, thickness // 2))
            x = int(np.clip(x1, 0, max(0, width - tw)))
            y = int(np.clip(y1, th + base, height))
            cv2.rectangle(canvas, (x, y - th - base), (x + tw, y), colour, -1)
            cv2.putText(canvas, text, (x, y - base), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 255),
                        max(1, thickness // 2), cv2.LINE_AA)
    return canvas


__all__ = ["draw_poses", "person_colour", "PALETTE"]
