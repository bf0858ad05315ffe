"""Identities of persons across video frames: box IoU + keypoint similarity, Hungarian assignment.

Each track remembers its last box and keypoints and a velocity (the median displacement of the
keypoints confident in both of its last two sightings, or of the box centre when fewer than
``MIN_MOTION_KEYPOINTS`` are, averaged over time) to predict where the person is in the next frame.
A track is compared with the new frame's persons at its predicted position and, discounted by
``LAST_POSITION_WEIGHT``, at its last position; the better of the two counts. The prediction keeps
the identities of two people whose paths cross (where each one's new position can be the other's
last one, hence the discount); the last position those of a person whose estimate jumped (a box
that shrank or grew with a partial estimate gives a false velocity).

Similarity of a track and a person = ``iou_weight`` * box IoU + (1 - ``iou_weight``) * OKS, where OKS
(object keypoint similarity, COCO's form) is taken over the keypoints confident in both, with the
track's box area as the object scale. With no keypoint confident in both, the similarity is the
IoU alone. Pairs below ``min_similarity`` are never matched (gating); among the others the
assignment that maximises the total similarity wins (scipy's ``linear_sum_assignment``).
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from posekit.detect.boxes import box_area, iou_matrix
from posekit.errors import PosekitError

DEFAULT_SIGMA = 0.07          # per-keypoint OKS sigma when none is given (about COCO's mean)
MIN_MOTION_KEYPOINTS = 3      # keypoints confident in two sightings needed to measure motion by them
LAST_POSITION_WEIGHT = 0.8    # similarity at a track's last position counts this much
_FORBIDDEN = 1e6              # assignment cost of a gated pair


def keypoint_similarity(a_keypoints, a_scores, b_keypoints, b_scores, areas, sigmas,
                        score_threshold: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """OKS between every pose of ``a`` (N, K, 2) and every pose of ``b`` (M, K, 2).

    A keypoint counts where its score is above ``score_threshold`` in both poses; ``areas`` (M,)
    are the object scales (pixels squared) of ``b``. Returns (oks (N, M), counted (N, M) number of
    keypoints that counted); oks is 0 where none counted.
    """
    ka = np.asarray(a_keypoints, dtype=float)
    kb = np.asarray(b_keypoints, dtype=float)
    variances = (2 * np.asarray(sigmas, dtype=float)) ** 2                   # (K,)
    both = ((np.asarray(a_scores) > score_threshold)[:, None, :]
            & (np.asarray(b_scores) > score_threshold)[None, :, :])          # (N, M, K)
    d2 = np.sum((ka[:, None] - kb[None, :]) ** 2, axis=-1)                   # (N, M, K)
    scale = np.maximum(np.asarray(areas, dtype=float), np.spacing(1))[None, :, None]
    e = np.exp(-d2 / (2 * scale * variances))
    counted = both.sum(axis=-1)
    total = np.where(both, e, 0.0).sum(axis=-1)
    return np.divide(total, counted, out=np.zeros_like(total), where=counted > 0), counted


def pose_similarity(a_boxes, a_keypoints, a_scores, b_boxes, b_keypoints, b_scores, sigmas, *,
                    iou_weight: float = 0.5, score_threshold: float = 0.3) -> np.ndarray:
    """(N, M) similarity in [0, 1] of poses ``a`` and ``b``: the IoU/OKS blend described above."""
    iou = iou_matrix(a_boxes, b_boxes)
    oks, counted = keypoint_similarity(a_keypoints, a_scores, b_keypoints, b_scores,
                                       box_area(np.asarray(b_boxes, dtype=float).reshape(-1, 4)),
                                       sigmas, score_threshold)
    return np.where(counted > 0, iou_weight * iou + (1 - iou_weight) * oks, iou)


def suppress_duplicates(boxes, keypoints, scores, sigmas, *, iou_threshold: float = 0.6,
                        oks_threshold: float = 0.6, score_threshold: float = 0.3) -> np.ndarray:
    """Indices of the poses to keep, in input order: a pose is dropped when its box IoU or its OKS
    with an earlier kept pose exceeds the threshold. Put the preferred poses first."""
    b = np.asarray(boxes, dtype=float).reshape(-1, 4)
    iou = iou_matrix(b, b)
    oks, _ = keypoint_similarity(keypoints, scores, keypoints, scores, box_area(b), sigmas,
                                 score_threshold)
    duplicate = (iou > iou_threshold) | (oks > oks_threshold)
    keep: list[int] = []
    for i in range(len(b)):
        if not any(duplicate[i, j] or duplicate[j, i] for j in keep):
            keep.append(i)
    return np.array(keep, dtype=int)


class Tracker:
    """Give each person of each frame a track id; ids start at ``first_id`` and only increase.

    sigmas: per-keypoint OKS sigmas (the skeleton's), or None for ``DEFAULT_SIGMA`` everywhere.
    max_age: a track not matched in ``max_age`` consecutive frames ends; a person seen again
    after a gap of ``max_age - 1`` frames keeps the id, after a longer gap gets a new one.
    iou_weight: share of box IoU in the similarity (the rest is OKS).
    min_similarity: gate below which a track and a person are never matched.
    score_threshold: keypoint score above which a keypoint takes part in OKS.
    """

    def __init__(self, sigmas=None, *, max_age: int = 5, iou_weight: float = 0.5,
                 min_similarity: float = 0.2, score_threshold: float = 0.3, first_id: int = 0):
        if type(max_age) is not int or max_age < 1:
            raise PosekitError(f"max_age must be a positive integer, got {max_age!r}")
        if not 0 <= iou_weight <= 1 or not 0 < min_similarity <= 1:
            raise PosekitError("iou_weight must be in [0, 1] and min_similarity in (0, 1]")
        self.sigmas = None if sigmas is None else np.asarray(sigmas, dtype=float).reshape(-1)
        if self.sigmas is not None and (not np.all(np.isfinite(self.sigmas)) or np.any(self.sigmas <= 0)):
            raise PosekitError("sigmas must be positive and finite")
        self.max_age = max_age
        self.iou_weight = float(iou_weight)
        self.min_similarity = float(min_similarity)
        self.score_threshold = float(score_threshold)
        self.next_id = int(first_id)
        self.first_id = int(first_id)
        k = 0 if self.sigmas is None else len(self.sigmas)
        # One row per live track.
        self.ids = np.zeros(0, dtype=int)
        self.boxes = np.zeros((0, 4))
        self.keypoints = np.zeros((0, k, 2))
        self.scores = np.zeros((0, k))
        self.velocity = np.zeros((0, 2))      # pixels per frame
        self.misses = np.zeros(0, dtype=int)  # consecutive frames without a match
        self.matched = np.zeros(0, dtype=bool)  # seen at least twice: velocity is known

    @property
    def tracks_started(self) -> int:
        """Number of ids handed out so far."""
        return self.next_id - self.first_id

    def _check(self, boxes, keypoints, scores):
        b = np.asarray(boxes, dtype=float)
        if b.ndim != 2 or b.shape[1] != 4:
            raise PosekitError(f"tracker: boxes must have shape (N, 4), got {b.shape}")
        if not np.all(np.isfinite(b)):
            raise PosekitError("tracker: boxes must be finite")
        n, k_now = len(b), self.keypoints.shape[1]
        if keypoints is None:
            return b, np.zeros((n, k_now, 2)), np.zeros((n, k_now))
        kp = np.asarray(keypoints, dtype=float)
        if kp.ndim != 3 or kp.shape[0] != n or kp.shape[2] != 2:
            raise PosekitError(f"tracker: keypoints must have shape ({n}, K, 2), got {kp.shape}")
        k = kp.shape[1]
        sc = np.ones((n, k)) if scores is None else np.asarray(scores, dtype=float)
        if sc.shape != (n, k):
            raise PosekitError(f"tracker: scores must have shape ({n}, {k}), got {sc.shape}")
        if self.sigmas is None:
            self.sigmas = np.full(k, DEFAULT_SIGMA)
        if k != len(self.sigmas):
            raise PosekitError(f"tracker: {k} keypoints per person, but {len(self.sigmas)} sigmas")
        if k != k_now:
            if len(self.ids):
                raise PosekitError(f"tracker: {k} keypoints per person, earlier frames had {k_now}")
            self.keypoints, self.scores = np.zeros((0, k, 2)), np.zeros((0, k))
        finite = np.all(np.isfinite(kp), axis=-1)
        return b, np.where(finite[..., None], kp, 0.0), np.where(finite, np.nan_to_num(sc), 0.0)

    def _displacement(self, rows, boxes, keypoints, scores) -> np.ndarray:
        """(R, 2) motion of tracks ``rows`` to their new boxes and keypoints (see the module notes)."""
        centre = lambda x: (x[:, :2] + x[:, 2:]) / 2  # noqa: E731
        out = centre(boxes) - centre(self.boxes[rows])
        both = (scores > self.score_threshold) & (self.scores[rows] > self.score_threshold)
        for i in np.flatnonzero(both.sum(axis=1) >= MIN_MOTION_KEYPOINTS):
            out[i] = np.median(keypoints[i, both[i]] - self.keypoints[rows[i], both[i]], axis=0)
        return out

    def predict(self) -> tuple[np.ndarray, np.ndarray]:
        """Boxes (T, 4) and keypoints (T, K, 2) of the live tracks moved to the coming frame."""
        shift = self.velocity * (self.misses + 1)[:, None]
        return self.boxes + np.tile(shift, 2), self.keypoints + shift[:, None, :]

    def update(self, boxes, keypoints=None, scores=None) -> np.ndarray:
        """Track ids (N,) for this frame's persons: boxes (N, 4) x1 y1 x2 y2, keypoints (N, K, 2),
        keypoint scores (N, K). Non-finite keypoints do not count. Call once per frame, also for
        frames without persons, so that missed frames age the tracks."""
        b, kp, sc = self._check(boxes, keypoints, scores)
        pred_boxes, pred_kp = self.predict()
        sigmas = np.zeros(0) if self.sigmas is None else self.sigmas   # no keypoints yet
        options = dict(iou_weight=self.iou_weight, score_threshold=self.score_threshold)
        similarity = np.maximum(
            pose_similarity(pred_boxes, pred_kp, self.scores, b, kp, sc, sigmas, **options),
            LAST_POSITION_WEIGHT
            * pose_similarity(self.boxes, self.keypoints, self.scores, b, kp, sc, sigmas, **options))
        allowed = similarity >= self.min_similarity
        rows, cols = linear_sum_assignment(np.where(allowed, 1.0 - similarity, _FORBIDDEN))
        good = allowed[rows, cols]
        rows, cols = rows[good], cols[good]

        ids = np.full(len(b), -1, dtype=int)
        ids[cols] = self.ids[rows]
        new_velocity = self._displacement(rows, b[cols], kp[cols], sc[cols]) / (self.misses[rows] + 1)[:, None]
        self.velocity[rows] = np.where(self.matched[rows, None],
                                       0.5 * (self.velocity[rows] + new_velocity), new_velocity)
        self.boxes[rows], self.keypoints[rows], self.scores[rows] = b[cols], kp[cols], sc[cols]
        self.misses += 1
        self.misses[rows] = 0
        self.matched[rows] = True

        alive = self.misses < self.max_age
        new = np.setdiff1d(np.arange(len(b)), cols)
        new_ids = np.arange(self.next_id, self.next_id + len(new))
        self.next_id += len(new)
        ids[new] = new_ids
        self.ids = np.concatenate([self.ids[alive], new_ids])
        self.boxes = np.concatenate([self.boxes[alive], b[new]])
        self.keypoints = np.concatenate([self.keypoints[alive], kp[new]])
        self.scores = np.concatenate([self.scores[alive], sc[new]])
        self.velocity = np.concatenate([self.velocity[alive], np.zeros((len(new), 2))])
        self.misses = np.concatenate([self.misses[alive], np.zeros(len(new), dtype=int)])
        self.matched = np.concatenate([self.matched[alive], np.zeros(len(new), dtype=bool)])
        return ids


__all__ = ["Tracker", "pose_similarity", "keypoint_similarity", "suppress_duplicates", "DEFAULT_SIGMA"]
