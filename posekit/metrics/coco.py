"""COCO keypoint evaluation: OKS average precision and recall, with pycocotools' exact numbers.

The conventions are those of pycocotools ``COCOeval(iouType='keypoints')``:

* OKS = mean over the ground truth's labelled keypoints (v > 0) of exp(-d^2 / (2 * area * (2 sigma)^2)),
  with ``area`` the ground truth's segment area. A ground truth without labelled keypoints is compared
  through the distance of every predicted keypoint to its box enlarged to three times its size
  (x - w .. x + 2w), averaged over all keypoints.
* Ground truths that are crowds or have no labelled keypoints are "ignored": matching one neither
  counts as a hit nor as a false positive. Crowds may absorb any number of detections.
* Per image, the ``max_dets`` highest-scoring detections are kept (a stable sort, so ties keep their
  input order). Detections are matched greedily in score order, each to the unmatched ground truth
  with the highest OKS at or above the threshold (ties go to the later ground truth), regular ground
  truths before ignored ones.
* Area ranges (all, medium 32^2..96^2, large > 96^2, bounds inclusive) select ground truths by their
  ``area``; an unmatched detection outside the range is ignored, its area being its box's area when it
  has a box, else the area of its keypoints' bounding rectangle (as pycocotools' ``loadRes`` derives it).
* Precision is interpolated (running maximum from the right) at 101 recall points; AP averages it over
  the 10 OKS thresholds .50:.05:.95, AR averages the final recall. A range with no regular ground
  truth reports -1.

One difference: pycocotools marks a match by the matched annotation's id, so a ground truth with id 0
is never counted as matched there; here every ground truth can be matched.
"""
from __future__ import annotations

import numpy as np

from posekit.data.structures import PoseInstances
from posekit.errors import PosekitError

# The same floats as pycocotools' Params.setKpParams (np.linspace): OKS is compared with them exactly.
OKS_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
AREA_RANGES = {"all": (0.0, 1e5 ** 2), "medium": (32.0 ** 2, 96.0 ** 2), "large": (96.0 ** 2, 1e5 ** 2)}
METRIC_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")

_EPS = np.spacing(1)


def _pair_oks(pred_kp, gt_kp, gt_labelled, gt_area, gt_box, variances, pred_index, gt_index):
    """OKS of prediction ``pred_index[i]`` against ground truth ``gt_index[i]``, for every i.

    pred_kp (D, K, 2), gt_kp (G, K, 2), gt_labelled (G, K) bool, gt_area (G,), gt_box (G, 4) xywh.
    """
    px, py = pred_kp[:, :, 0][pred_index], pred_kp[:, :, 1][pred_index]
    dx, dy = px - gt_kp[:, :, 0][gt_index], py - gt_kp[:, :, 1][gt_index]
    counted = gt_labelled[gt_index]
    boxed = np.flatnonzero(~gt_labelled.any(axis=1)[gt_index])
    if len(boxed):  # no labelled keypoints: distance to the enlarged box, over all keypoints
        x, y, w, h = gt_box[gt_index[boxed]].T[..., None]
        px, py = px[boxed], py[boxed]
        dx[boxed] = np.maximum(0.0, (x - w) - px) + np.maximum(0.0, px - (x + w * 2))
        dy[boxed] = np.maximum(0.0, (y - h) - py) + np.maximum(0.0, py - (y + h * 2))
        counted[boxed] = True
    # The operation order of pycocotools' computeOks, so each term is the same float.
    e = np.square(dx)
    e += np.square(dy)
    e /= variances
    e /= gt_area[gt_index, None] + _EPS
    e /= -2
    np.exp(e, out=e)
    return np.where(counted, e, 0.0).sum(axis=1) / counted.sum(axis=1)


def _sigmas(sigmas, skeleton) -> np.ndarray:
    k = len(skeleton)
    if sigmas is None:
        if skeleton.sigmas is None:
            raise PosekitError(f"skeleton {skeleton.name!r} has no OKS sigmas; pass sigmas=")
        return np.asarray(skeleton.sigmas, dtype=float)
    try:
        arr = np.asarray(sigmas, dtype=float)
    except (TypeError, ValueError):
        raise PosekitError("sigmas must be numbers") from None
    if arr.shape != (k,) or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise PosekitError(f"sigmas must be {k} positive finite numbers (skeleton {skeleton.name!r}), "
                           f"got shape {arr.shape}")
    return arr


def keypoint_oks(pred_keypoints, gt_keypoints, gt_visibility, gt_areas, sigmas, gt_boxes=None):
    """OKS between every prediction (D, K, 2) and every ground truth (G, K, 2): a (D, G) array.

    ``gt_visibility`` (G, K) marks labelled keypoints (> 0); ``gt_areas`` (G,) are segment areas;
    ``gt_boxes`` (G, 4) xywh are needed only for ground truths without labelled keypoints.
    """
    pred = np.asarray(pred_keypoints, dtype=float)
    gt = np.asarray(gt_keypoints, dtype=float)
    sig = np.asarray(sigmas, dtype=float)
    k = len(sig)
    if pred.ndim != 3 or pred.shape[1:] != (k, 2) or gt.ndim != 3 or gt.shape[1:] != (k, 2):
        raise PosekitError(f"keypoint_oks: expected (D, {k}, 2) and (G, {k}, 2) keypoints, "
                           f"got {pred.shape} and {gt.shape}")
    g = len(gt)
    labelled = np.asarray(gt_visibility, dtype=float).reshape(g, k) > 0
    areas = np.asarray(gt_areas, dtype=float).reshape(g)
    boxes = np.full((g, 4), np.nan) if gt_boxes is None else np.asarray(gt_boxes, float).reshape(g, 4)
    if np.any(~labelled.any(axis=1) & ~np.all(np.isfinite(boxes), axis=1)):
        raise PosekitError("keypoint_oks: a ground truth without labelled keypoints needs a finite box")
    d = len(pred)
    oks = _pair_oks(pred, gt, labelled, areas, boxes, (2 * sig) ** 2, np.repeat(np.arange(d), g),
                    np.tile(np.arange(g), d))
    return oks.reshape(d, g)


def _validate(gt: PoseInstances, pred: PoseInstances, max_dets) -> np.ndarray:
    """Check what the evaluation relies on; returns the sorted ids of the evaluated images."""
    if gt.skeleton.joints != pred.skeleton.joints:
        raise PosekitError(f"ground truth skeleton {gt.skeleton.name!r} and prediction skeleton "
                           f"{pred.skeleton.name!r} have different joints")
    if type(max_dets) is not int or max_dets < 1:
        raise PosekitError(f"max_dets must be a positive integer, got {max_dets!r}")
    labelled = gt.visibility > 0
    checks = [
        (~np.isfinite(gt.areas) | (gt.areas < 0), "needs a finite, non-negative 'area'"),
        (np.any(labelled & ~np.isfinite(gt.keypoints).all(axis=-1), axis=1),
         "has a labelled keypoint that is not finite"),
        (~labelled.any(axis=1) & ~np.isfinite(gt.boxes).all(axis=1),
         "has no labelled keypoints and so needs a finite 'bbox'"),
    ]
    for bad, why in checks:
        if bad.any():
            raise PosekitError(f"ground truth annotation id {gt.ids[np.argmax(bad)]} {why}")
    if not np.isfinite(pred.keypoints).all() or not np.isfinite(pred.scores).all():
        raise PosekitError("predictions: keypoints and scores must be finite")
    images = np.unique(np.concatenate([np.fromiter(gt.images, np.int64, len(gt.images)),
                                       gt.image_ids]))
    unknown = ~np.isin(pred.image_ids, images)
    if unknown.any():
        raise PosekitError(f"predictions: image_id {pred.image_ids[np.argmax(unknown)]} is not an "
                           f"image of the ground truth")
    return images


def _detection_areas(pred: PoseInstances, rows: np.ndarray) -> np.ndarray:
    """Box area where the box is known, else the area of the keypoints' bounding rectangle."""
    boxes = pred.boxes[rows]
    areas = boxes[:, 2] * boxes[:, 3]
    unboxed = np.flatnonzero(~np.isfinite(boxes).all(axis=1))
    coords = np.ascontiguousarray(pred.keypoints[rows[unboxed]].swapaxes(1, 2))  # (N, 2, K)
    extent = coords.max(axis=2) - coords.min(axis=2)
    areas[unboxed] = extent[:, 0] * extent[:, 1]
    return areas


def _segments(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For runs of equal keys: the start index of each run, and each element's run number."""
    is_start = np.r_[True, keys[1:] != keys[:-1]]
    return np.flatnonzero(is_start), np.cumsum(is_start) - 1


def coco_keypoint_eval(gt: PoseInstances, pred: PoseInstances, sigmas=None, max_dets: int = 20) -> dict:
    """COCO keypoint AP/AR of ``pred`` against ``gt``: the ten numbers pycocotools' summarize() prints.

    ``sigmas`` defaults to the skeleton's OKS sigmas. Returns {AP, AP50, AP75, APm, APl, AR, AR50,
    AR75, ARm, ARl}; -1 where an area range has no regular (non-ignored) ground truth.
    """
    images = _validate(gt, pred, max_dets)
    variances = (_sigmas(sigmas, gt.skeleton) * 2) ** 2
    n_thr, n_rng = len(OKS_THRESHOLDS), len(AREA_RANGES)
    lows, highs = (np.array(v)[:, None] for v in zip(*AREA_RANGES.values()))

    # Ground truths grouped by image, file order kept within an image.
    gt_rows = np.argsort(np.searchsorted(images, gt.image_ids), kind="stable")
    gt_image = np.searchsorted(images, gt.image_ids[gt_rows])
    gt_area = gt.areas[gt_rows]
    gt_crowd = gt.iscrowd[gt_rows]
    gt_unlabelled = ~(gt.visibility[gt_rows] > 0).any(axis=1)
    gt_ignored = (gt_crowd | gt_unlabelled)[None] | (gt_area < lows) | (gt_area > highs)
    per_image_gt = np.bincount(gt_image, minlength=len(images))
    first_gt = np.cumsum(per_image_gt) - per_image_gt

    # Detections: per image by descending score (stable), the first max_dets kept.
    det_image_all = np.searchsorted(images, pred.image_ids)
    order = np.lexsort((-pred.scores, det_image_all))
    sorted_image = det_image_all[order]
    rank = np.arange(len(order)) - np.searchsorted(sorted_image, sorted_image)
    kept = rank < max_dets
    det_rows, det_image, det_rank = order[kept], sorted_image[kept], rank[kept]
    det_scores = pred.scores[det_rows]
    n_det = len(det_rows)

    # Every (detection, ground truth) pair of the same image, with its OKS.
    pairs_per_det = per_image_gt[det_image]
    pair_det = np.repeat(np.arange(n_det), pairs_per_det)
    offsets = np.arange(len(pair_det)) - np.repeat(np.cumsum(pairs_per_det) - pairs_per_det, pairs_per_det)
    pair_gt = first_gt[det_image[pair_det]] + offsets
    pair_oks = _pair_oks(pred.keypoints, gt.keypoints, gt.visibility > 0, gt.areas, gt.boxes, variances,
                         det_rows[pair_det], gt_rows[pair_gt])
    # Only pairs at or above the lowest threshold can match. Matching runs rank by rank: the
    # detections of one rank are in different images, so they are matched independently.
    close = np.flatnonzero(pair_oks >= OKS_THRESHOLDS[0])
    by_rank = close[np.argsort(det_rank[pair_det[close]], kind="stable")]
    pair_det, pair_gt, pair_oks = pair_det[by_rank], pair_gt[by_rank], pair_oks[by_rank]

    gt_free = np.ones((n_thr, n_rng, len(gt_rows)), dtype=bool)
    det_matched = np.zeros((n_thr, n_rng, n_det), dtype=bool)
    det_on_ignored = np.zeros((n_thr, n_rng, n_det), dtype=bool)
    thresholds = OKS_THRESHOLDS[:, None, None]
    pair_rank = det_rank[pair_det]
    n_ranks = pair_rank[-1] + 1 if len(pair_rank) else 0
    bounds = np.searchsorted(pair_rank, np.arange(n_ranks + 1))
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        if lo == hi:
            continue
        dets, gts, oks = pair_det[lo:hi], pair_gt[lo:hi], pair_oks[lo:hi]
        starts, segment = _segments(dets)
        ignored = gt_ignored[:, gts][None]
        candidate = (oks >= thresholds) & gt_free[:, :, gts]
        has_regular = np.logical_or.reduceat(candidate & ~ignored, starts, axis=2)
        candidate &= ~(ignored & has_regular[:, :, segment])
        score = np.where(candidate, oks, -1.0)
        best = np.maximum.reduceat(score, starts, axis=2)
        last_best = np.where(candidate & (score == best[:, :, segment]), np.arange(hi - lo), -1)
        choice = np.maximum.reduceat(last_best, starts, axis=2)
        t, a, s = np.nonzero(choice >= 0)
        chosen = choice[t, a, s]
        g, d = gts[chosen], dets[chosen]
        det_matched[t, a, d] = True
        det_on_ignored[t, a, d] = gt_ignored[a, g]
        gt_free[t, a, g] = gt_crowd[g]

    det_area = _detection_areas(pred, det_rows)
    det_ignored = det_on_ignored | (~det_matched & ((det_area < lows) | (det_area > highs))[None])
    # All images together, by descending score; ties keep image order, then rank.
    by_score = np.argsort(-det_scores, kind="stable")
    counted = ~det_ignored[:, :, by_score]
    hits = det_matched[:, :, by_score]
    tp = np.cumsum(hits & counted, axis=2).astype(float)
    fp = np.cumsum(~hits & counted, axis=2).astype(float)
    n_regular = np.count_nonzero(~gt_ignored, axis=1)

    precision = np.full((n_thr, len(RECALL_THRESHOLDS), n_rng), -1.0)
    recall = np.full((n_thr, n_rng), -1.0)
    for a in np.flatnonzero(n_regular):
        if n_det == 0:
            precision[:, :, a], recall[:, a] = 0.0, 0.0
            continue
        rc = tp[:, a] / n_regular[a]
        pr = tp[:, a] / (fp[:, a] + tp[:, a] + _EPS)
        pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
        recall[:, a] = rc[:, -1]
        for t in range(n_thr):
            at = np.searchsorted(rc[t], RECALL_THRESHOLDS, side="left")
            precision[t, :, a] = np.where(at < n_det, pr[t, np.minimum(at, n_det - 1)], 0.0)

    def mean(values):
        values = values[values > -1]
        return float(np.mean(values)) if values.size else -1.0

    at_50, at_75 = np.flatnonzero(OKS_THRESHOLDS == 0.5)[0], np.flatnonzero(OKS_THRESHOLDS == 0.75)[0]
    stats = []
    for table in (precision, recall):
        stats += [mean(table[..., 0]), mean(table[at_50, ..., 0]), mean(table[at_75, ..., 0]),
                  mean(table[..., 1]), mean(table[..., 2])]
    return dict(zip(METRIC_NAMES, stats))
