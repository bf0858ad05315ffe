"""PoseTrack multi-person pose estimation (mAP) and tracking (MOTA) metrics, as poseval computes them.

Follows ``poseval`` (``eval_helpers.assignGTmulti``, ``evaluateAP.computeMetrics``,
``evaluateTracking.computeMetrics``) and py-motmetrics' ``MOTAccumulator``:

* Only labelled frames that have at least one ground-truth person are scored (poseval's
  ``cleanupData``); predictions on other frames are ignored.
* Ground-truth and predicted keypoints strictly inside an ignore-region polygon of the frame are
  removed (``removeIgnoredPoints``; a point on the polygon's border is kept, like shapely's
  ``contains``).
* Distances are divided by the ground-truth head size, 0.6 x the head-rectangle diagonal; a
  keypoint matches when the normalised distance is <= ``thr`` (0.5).
* Per frame, every prediction picks the ground truth with its highest PCKh (matched joints /
  labelled joints); every ground truth then keeps the best of the predictions that picked it.
  Unassigned predictions are false positives for all their joints.
* AP per joint: predicted joints are ranked by score over the whole data set, precision/recall
  are taken at every rank and AP is the area under the precision envelope (VOC style, ``VOCap``).
* MOTA per joint class: ground-truth and predicted joints of a frame within the threshold are
  candidates; previous (track, hypothesis) pairings are kept first, the rest are matched by
  minimum total distance among maximum-cardinality matchings, and a ground-truth track matched to
  a hypothesis other than its previous one is an identity switch. MOTA = 1 - (misses + switches +
  false positives) / ground-truth joints; MOTP = 1 - mean normalised distance of the matches.

poseval evaluates 15 joints in its own order: right_ankle, right_knee, right_hip, left_hip,
left_knee, left_ankle, right_wrist, right_elbow, right_shoulder, left_shoulder, left_elbow,
left_wrist, head_bottom (poseval's "neck"), nose, head_top. They are found by name in any skeleton
(PoseTrack18's file order is COCO's with the eyes replaced by head_bottom/head_top; its ears are
not evaluated). Results are percentages.

Deliberate differences from poseval, each only where poseval's result is an accident of its code:

* A frame with ground truth but no predictions counts every ground-truth joint as a miss (poseval
  enters one placeholder object and one placeholder hypothesis per joint, i.e. 1 miss and 1 false
  positive whatever the number of people).
* MOTP sums the distances of matches only (with recent py-motmetrics, poseval's
  ``events['D'].sum()`` also adds the ``RAW`` candidate events).
* A joint with no ground truth anywhere has AP NaN and is left out of the means (poseval reports
  0 or NaN depending on whether it was predicted).
* A predicted keypoint with score <= 0 is absent, as v = 0 marks a missing point in the PoseTrack
  format; so a ground-truth file scored as predictions gets 100 mAP and 100 MOTA.
* Ties in joint scores are ranked in input order (poseval reverses numpy's unstable argsort).

Kept on purpose: poseval leaves the last scored frame of every sequence out of the tracking
metrics (``imgidxs[:-1]``); ``skip_last_frame=False`` scores it. A joint class with no detections
has MOTP 0, as in poseval.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from posekit.data.structures import PoseInstances
from posekit.errors import PosekitError
from posekit.metrics.pck import head_size

POSEVAL_JOINTS = ("right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
                  "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow",
                  "left_wrist", "head_bottom", "nose", "head_top")

POSEVAL_GROUPS = {
    "Head": ("head_top", "head_bottom", "nose"),
    "Shoulder": ("right_shoulder", "left_shoulder"),
    "Elbow": ("right_elbow", "left_elbow"),
    "Wrist": ("right_wrist", "left_wrist"),
    "Hip": ("right_hip", "left_hip"),
    "Knee": ("right_knee", "left_knee"),
    "Ankle": ("right_ankle", "left_ankle"),
}


@dataclass
class _Frame:
    """One scored frame, keypoints in poseval's joint order; ``has_*`` marks present joints."""

    gt_xy: np.ndarray        # (G, J, 2)
    gt_has: np.ndarray       # (G, J) bool
    gt_head: np.ndarray      # (G,)
    gt_tracks: np.ndarray    # (G,)
    pr_xy: np.ndarray        # (P, J, 2)
    pr_has: np.ndarray       # (P, J) bool
    pr_score: np.ndarray     # (P, J)
    pr_tracks: np.ndarray    # (P,)


def points_in_polygon(points, polygon) -> np.ndarray:
    """Which (M, 2) points lie strictly inside the (V, 2) polygon (even-odd rule, border excluded)."""
    pts = np.asarray(points, dtype=float).reshape(-1, 2)
    poly = np.asarray(polygon, dtype=float).reshape(-1, 2)
    if len(poly) < 3 or len(pts) == 0:
        return np.zeros(len(pts), dtype=bool)
    x, y = pts[:, :1], pts[:, 1:]
    x1, y1 = poly[:, 0][None], poly[:, 1][None]
    x2, y2 = np.roll(poly[:, 0], -1)[None], np.roll(poly[:, 1], -1)[None]
    straddles = (y1 > y) != (y2 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_cross = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
    inside = (np.count_nonzero(straddles & (x < x_cross), axis=1) % 2) == 1
    scale = max(float(np.abs(poly).max()), 1.0)
    cross = (x2 - x1) * (y - y1) - (y2 - y1) * (x - x1)
    on_border = ((np.abs(cross) <= 1e-12 * scale * scale)
                 & (x >= np.minimum(x1, x2)) & (x <= np.maximum(x1, x2))
                 & (y >= np.minimum(y1, y2)) & (y <= np.maximum(y1, y2))).any(axis=1)
    return inside & ~on_border


def _joint_columns(instances: PoseInstances, role: str) -> np.ndarray:
    names = instances.skeleton.joints
    missing = [n for n in POSEVAL_JOINTS if n not in names]
    if missing:
        raise PosekitError(f"posetrack: {role} skeleton {instances.skeleton.name!r} lacks the "
                           f"poseval joints {missing}")
    return instances.skeleton.indices(POSEVAL_JOINTS)


def _ignored(xy: np.ndarray, has: np.ndarray, regions, where: str) -> np.ndarray:
    """Mask of present keypoints that fall inside any ignore region."""
    hit = np.zeros(has.shape, dtype=bool)
    flat = xy.reshape(-1, 2)
    for k, region in enumerate(regions):
        poly = np.asarray(region, dtype=float)
        if poly.ndim != 2 or poly.shape[1] != 2 or not np.isfinite(poly).all():
            raise PosekitError(f"{where}: ignore_regions[{k}] must be a finite (P, 2) polygon")
        hit |= points_in_polygon(flat, poly).reshape(has.shape)
    return hit & has


def _unique_tracks(tracks: np.ndarray, where: str):
    if (tracks < 0).any():
        raise PosekitError(f"{where}: track_ids must be >= 0 for tracking metrics (-1 = unknown)")
    if len(np.unique(tracks)) != len(tracks):
        raise PosekitError(f"{where}: track_ids repeat within one frame")


def _sequence_frames(gt: PoseInstances, pred: PoseInstances, seq: int, tracking: bool) -> list[_Frame]:
    where = f"posetrack: sequence {seq}"
    if gt.head_boxes is None:
        raise PosekitError(f"{where}: ground truth needs head_boxes (x1, y1, x2, y2)")
    unknown = sorted(set(pred.image_ids.tolist()) - set(gt.images))
    if unknown:
        raise PosekitError(f"{where}: predictions refer to image ids {unknown[:5]} that are not "
                           "frames of the ground truth")
    gcols, pcols = _joint_columns(gt, "ground-truth"), _joint_columns(pred, "prediction")
    order = sorted(gt.images, key=lambda i: (gt.images[i].frame_index
                                             if gt.images[i].frame_index is not None else i, i))
    frames = []
    for image_id in order:
        info = gt.images[image_id]
        g_rows = np.flatnonzero(gt.image_ids == image_id)
        if not info.is_labeled or len(g_rows) == 0:
            continue
        fwhere = f"{where}, image {image_id}"
        p_rows = np.flatnonzero(pred.image_ids == image_id)
        g_xy = gt.keypoints[g_rows][:, gcols]
        g_vis = gt.visibility[g_rows][:, gcols]
        if np.isnan(g_vis).any():
            raise PosekitError(f"{fwhere}: ground-truth visibility contains NaN")
        g_has = g_vis > 0
        if not np.isfinite(g_xy[g_has]).all():
            raise PosekitError(f"{fwhere}: ground truth has NaN/inf at a labelled keypoint")
        heads = head_size(gt.head_boxes[g_rows])
        labelled = g_has.any(axis=1)
        if not (np.isfinite(heads[labelled]).all() and (heads[labelled] > 0).all()):
            raise PosekitError(f"{fwhere}: head_boxes must give a positive head size for every "
                               "labelled person")
        p_xy = pred.keypoints[p_rows][:, pcols]
        p_has = np.isfinite(p_xy).all(axis=-1)
        p_score = pred.visibility[p_rows][:, pcols]
        if not np.isfinite(p_score[p_has]).all():
            raise PosekitError(f"{fwhere}: predicted keypoint scores (visibility) contain NaN/inf")
        p_has &= p_score > 0  # score 0 (the format's v = 0) means "no keypoint predicted"
        g_has &= ~_ignored(g_xy, g_has, info.ignore_regions, fwhere)
        p_has &= ~_ignored(p_xy, p_has, info.ignore_regions, fwhere)
        g_tracks, p_tracks = gt.track_ids[g_rows], pred.track_ids[p_rows]
        if tracking:
            _unique_tracks(g_tracks[g_has.any(axis=1)], f"{fwhere}, ground truth")
            _unique_tracks(p_tracks[p_has.any(axis=1)], f"{fwhere}, predictions")
        frames.append(_Frame(np.where(g_has[..., None], g_xy, 0.0), g_has,
                             np.where(labelled, heads, 1.0), g_tracks,
                             np.where(p_has[..., None], p_xy, 0.0), p_has, p_score, p_tracks))
    return frames


def _frame_distances(f: _Frame, thr: float):
    """Normalised distances (P, G, J), inf where either joint is absent, and the match mask."""
    both = f.pr_has[:, None, :] & f.gt_has[None, :, :]
    dist = np.linalg.norm(f.pr_xy[:, None] - f.gt_xy[None], axis=-1) / f.gt_head[None, :, None]
    dist = np.where(both, dist, np.inf)
    return dist, dist <= thr


def _assign(match: np.ndarray, gt_has: np.ndarray) -> np.ndarray:
    """poseval's prediction -> ground-truth assignment; returns, per prediction, its GT or -1."""
    n_pr, n_gt = match.shape[:2]
    assigned = np.full(n_pr, -1)
    if n_pr == 0 or n_gt == 0:
        return assigned
    pckh = match.sum(axis=2) / np.maximum(gt_has.sum(axis=1), 1)[None, :]
    best_gt = pckh.argmax(axis=1)
    kept = np.zeros_like(pckh)
    kept[np.arange(n_pr), best_gt] = pckh[np.arange(n_pr), best_gt]
    best_pr, best_val = kept.argmax(axis=0), kept.max(axis=0)
    for g in np.flatnonzero(best_val > 0):
        assigned[best_pr[g]] = g
    return assigned


def voc_average_precision(scores, labels, n_positives: int) -> float:
    """AP (%) of ranked detections: area under the monotone precision envelope (poseval ``VOCap``)."""
    scores = np.asarray(scores, dtype=float)
    labels = np.asarray(labels, dtype=bool)
    if n_positives <= 0:
        return float("nan")
    if len(scores) == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(labels[order])
    recall = np.concatenate([[0.0], tp / n_positives, [1.0]])
    precision = np.concatenate([[0.0], tp / np.arange(1, len(tp) + 1), [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.flatnonzero(recall[1:] != recall[:-1]) + 1
    return float(100.0 * np.sum((recall[steps] - recall[steps - 1]) * precision[steps]))


def _min_cost_matching(cost: np.ndarray):
    """Minimum-cost matching among the maximum-cardinality ones; NaN marks forbidden pairs."""
    allowed = np.isfinite(cost)
    if not allowed.any():
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    # A forbidden pair costs more than any set of allowed pairs could save, so the solver uses
    # one only where no further allowed pair can be added; those pairs are dropped afterwards.
    bound = np.abs(cost[allowed]).max() + 1.0
    big = 2.0 * min(cost.shape) * bound + 1.0
    rows, cols = linear_sum_assignment(np.where(allowed, cost, big))
    keep = allowed[rows, cols]
    return rows[keep], cols[keep]


class MotAccumulator:
    """CLEAR-MOT event counts of one object class over one sequence, with py-motmetrics'
    ``MOTAccumulator.update`` rules: per frame, previous (object, hypothesis) pairings that are
    still allowed are kept; the remaining pairs are matched by ``_min_cost_matching``; a match that
    changes an object's previous hypothesis is an identity switch. ``matches`` counts every match,
    switches included (motmetrics' ``num_detections``)."""

    def __init__(self):
        self.pairing: dict[int, int] = {}
        self.objects = self.misses = self.false_positives = 0
        self.matches = self.switches = 0
        self.distance_sum = 0.0

    def update(self, oids: np.ndarray, hids: np.ndarray, dist: np.ndarray):
        """One frame: object ids (O,), hypothesis ids (H,), distances (O, H), NaN = may not pair."""
        o_done = np.zeros(len(oids), dtype=bool)
        h_done = np.zeros(len(hids), dtype=bool)
        if len(oids) and len(hids):
            for i, o in enumerate(oids):
                prev = self.pairing.get(int(o))
                if prev is None:
                    continue
                candidates = np.flatnonzero(~h_done & (hids == prev))
                if len(candidates) and np.isfinite(dist[i, candidates[0]]):
                    j = candidates[0]
                    self._matched(dist[i, j])
                    o_done[i] = h_done[j] = True
            free = np.where(o_done[:, None] | h_done[None, :], np.nan, dist)
            for i, j in zip(*_min_cost_matching(free)):
                o, h = int(oids[i]), int(hids[j])
                if o in self.pairing and self.pairing[o] != h:
                    self.switches += 1
                self._matched(dist[i, j])
                self.pairing[o] = h
                o_done[i] = h_done[j] = True
        self.objects += len(oids)
        self.misses += int((~o_done).sum())
        self.false_positives += int((~h_done).sum())

    def _matched(self, d: float):
        self.matches += 1
        self.distance_sum += float(d)


def _group_table(per_joint: np.ndarray) -> dict:
    index = {n: i for i, n in enumerate(POSEVAL_JOINTS)}
    table = {}
    for group, names in POSEVAL_GROUPS.items():
        values = per_joint[[index[n] for n in names]]
        table[group] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
    table["Total"] = _nanmean(per_joint)
    return table


def _nanmean(values: np.ndarray) -> float:
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def evaluate_posetrack(sequences, *, thr: float = 0.5, tracking: bool = True,
                       skip_last_frame: bool = True) -> dict:
    """poseval's mAP and (optionally) MOTA family over PoseTrack sequences.

    sequences: iterable of (gt, pred) PoseInstances pairs, one per video. gt: keypoints with
    visibility > 0 where labelled, head_boxes x1, y1, x2, y2, track_ids, and ``images`` with
    frame_index, is_labeled and ignore_regions. pred: keypoints (NaN where a joint is not
    predicted), per-keypoint scores in ``visibility``, track_ids (needed when ``tracking``).

    Returns mAP, ap_per_joint, ap_per_group (Head ... Ankle, Total) and, with ``tracking``, MOTA,
    mota_per_joint, mota_per_group, MOTP, precision, recall (joint averages, %) and the summed
    event counts num_objects, num_matches, num_misses, num_false_positives, num_switches.
    """
    try:
        thr = float(thr)
    except (TypeError, ValueError):
        raise PosekitError(f"posetrack: thr must be a number, got {thr!r}") from None
    if not np.isfinite(thr) or thr <= 0:
        raise PosekitError(f"posetrack: thr must be a positive number, got {thr!r}")
    n_joints = len(POSEVAL_JOINTS)
    scores: list[list[float]] = [[] for _ in range(n_joints)]
    labels: list[list[bool]] = [[] for _ in range(n_joints)]
    n_gt = np.zeros(n_joints, dtype=int)
    by_joint: list[list[MotAccumulator]] = [[] for _ in range(n_joints)]  # one per sequence
    n_sequences = 0
    for seq, pair in enumerate(sequences):
        try:
            gt, pred = pair
        except (TypeError, ValueError):
            raise PosekitError(f"posetrack: sequence {seq} must be a (gt, pred) pair") from None
        if not isinstance(gt, PoseInstances) or not isinstance(pred, PoseInstances):
            raise PosekitError(f"posetrack: sequence {seq} must hold two PoseInstances")
        n_sequences += 1
        frames = _sequence_frames(gt, pred, seq, tracking)
        accumulators = [MotAccumulator() for _ in range(n_joints)]
        for j in range(n_joints):
            by_joint[j].append(accumulators[j])
        n_tracked = len(frames) - 1 if skip_last_frame else len(frames)
        for k, frame in enumerate(frames):
            dist, match = _frame_distances(frame, thr)
            assigned = _assign(match, frame.gt_has)
            n_gt += frame.gt_has.sum(axis=0)
            for p, g in enumerate(assigned):
                hits = match[p, g] if g >= 0 else np.zeros(n_joints, dtype=bool)
                for j in np.flatnonzero(frame.pr_has[p]):
                    scores[j].append(frame.pr_score[p, j])
                    labels[j].append(hits[j])
            if tracking and k < n_tracked:
                for j in range(n_joints):
                    g_idx = np.flatnonzero(frame.gt_has[:, j])
                    p_idx = np.flatnonzero(frame.pr_has[:, j])
                    pair_dist = dist[:, :, j][np.ix_(p_idx, g_idx)].T          # (G_j, P_j)
                    candidate = np.where(pair_dist <= thr, pair_dist, np.nan)
                    accumulators[j].update(frame.gt_tracks[g_idx], frame.pr_tracks[p_idx], candidate)
    if n_sequences == 0:
        raise PosekitError("posetrack: no sequences given")
    if n_gt.sum() == 0:
        raise PosekitError("posetrack: no labelled ground-truth keypoint in any scored frame")
    ap = np.array([voc_average_precision(scores[j], labels[j], n_gt[j]) for j in range(n_joints)])
    result = {"mAP": _nanmean(ap), "ap_per_joint": dict(zip(POSEVAL_JOINTS, ap.tolist())),
              "ap_per_group": _group_table(ap)}
    if tracking:
        result.update(_tracking_summary(by_joint))
    return result


def _tracking_summary(by_joint: list[list[MotAccumulator]]) -> dict:
    """Per-joint MOT scores from the event counts summed over sequences, then joint averages."""
    names = ("objects", "misses", "false_positives", "matches", "switches", "distance_sum")
    counts = {name: np.array([sum(getattr(a, name) for a in accs) for accs in by_joint])
              for name in names}
    objects, matches, fps = counts["objects"], counts["matches"], counts["false_positives"]
    with np.errstate(divide="ignore", invalid="ignore"):
        mota = np.where(objects > 0, 100.0 * (1.0 - (counts["misses"] + counts["switches"] + fps)
                                              / objects), np.nan)
        recall = np.where(objects > 0, 100.0 * matches / objects, np.nan)
        motp = np.where(matches > 0, 100.0 * (1.0 - counts["distance_sum"] / matches), 0.0)
        precision = np.where(matches + fps > 0, 100.0 * matches / (matches + fps), np.nan)
    return {"MOTA": _nanmean(mota), "mota_per_joint": dict(zip(POSEVAL_JOINTS, mota.tolist())),
            "mota_per_group": _group_table(mota), "MOTP": _nanmean(motp),
            "precision": _nanmean(precision), "recall": _nanmean(recall),
            **{f"num_{name}": int(counts[name].sum()) for name in names[:-1]}}


__all__ = ["evaluate_posetrack", "voc_average_precision", "points_in_polygon", "MotAccumulator",
           "POSEVAL_JOINTS", "POSEVAL_GROUPS"]
