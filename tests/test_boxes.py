import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posekit.detect.boxes import (Detections, box_area, clip_boxes, coverage_matrix, cxcywh_to_xyxy,
                                  iou_matrix, nms, weighted_nms, xywh_to_xyxy, xyxy_to_cxcywh,
                                  xyxy_to_xywh)
from posekit.errors import PosekitError


def test_format_conversions_by_hand():
    xyxy = np.array([[10.0, 20.0, 50.0, 80.0]])
    np.testing.assert_array_equal(xyxy_to_xywh(xyxy), [[10, 20, 40, 60]])
    np.testing.assert_array_equal(xyxy_to_cxcywh(xyxy), [[30, 50, 40, 60]])
    np.testing.assert_array_equal(xywh_to_xyxy([[10, 20, 40, 60]]), xyxy)
    np.testing.assert_array_equal(cxcywh_to_xyxy([[30, 50, 40, 60]]), xyxy)
    np.testing.assert_array_equal(box_area([[0, 0, 2, 3], [5, 5, 4, 9]]), [6, 0])  # inverted box: empty
    with pytest.raises(PosekitError, match=r"\(\.\.\., 4\)"):
        xyxy_to_xywh(np.zeros((3, 5)))


def test_iou_hand_computed_cases():
    a = np.array([[0, 0, 2, 2], [0, 0, 4, 4], [0, 0, 1, 1]], dtype=float)
    b = np.array([[1, 1, 3, 3], [1, 1, 3, 3], [5, 5, 6, 6]], dtype=float)
    iou = iou_matrix(a, b)
    assert iou.shape == (3, 3)
    assert iou[0, 0] == pytest.approx(1 / 7)       # overlap 1, union 4 + 4 - 1
    assert iou[1, 1] == pytest.approx(4 / 16)      # b inside a
    assert iou[2, 2] == 0.0                        # disjoint
    assert iou_matrix(a, a).diagonal() == pytest.approx([1, 1, 1])
    # Two empty boxes: 0, not NaN.
    assert iou_matrix([[1, 1, 1, 1]], [[1, 1, 1, 1]])[0, 0] == 0.0
    cover = coverage_matrix(b[:1], a[:2])          # how much of [1,1,3,3] lies in each a
    np.testing.assert_allclose(cover, [[1 / 4, 1.0]])


def test_iou_matches_pycocotools_on_random_boxes():
    mask_utils = pytest.importorskip("pycocotools.mask")
    rng = np.random.default_rng(3)
    a = xywh_to_xyxy(np.column_stack([rng.uniform(0, 50, (20, 2)), rng.uniform(1, 40, (20, 2))]))
    b = xywh_to_xyxy(np.column_stack([rng.uniform(0, 50, (15, 2)), rng.uniform(1, 40, (15, 2))]))
    reference = mask_utils.iou(xyxy_to_xywh(a).tolist(), xyxy_to_xywh(b).tolist(), [0] * 15)
    np.testing.assert_allclose(iou_matrix(a, b), reference, rtol=1e-12, atol=1e-12)


def test_hard_nms_is_greedy():
    boxes = np.array([[0, 0, 10, 10],      # A 0.9
                      [3, 0, 13, 10],      # B 0.8, IoU(A, B) = 70 / 130 > 0.3: suppressed by A
                      [50, 50, 60, 60],    # C 0.7, far away
                      [8, 0, 18, 10]],     # D 0.6, IoU(A, D) = 0.11, IoU(B, D) = 0.33: kept (B is gone)
                     dtype=float)
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    assert nms(boxes, scores, 0.3).tolist() == [0, 2, 3]
    # Order of the input does not matter, the result is best score first.
    perm = np.array([3, 1, 0, 2])
    assert perm[nms(boxes[perm], scores[perm], 0.3)].tolist() == [0, 2, 3]
    # IoU exactly at the threshold does not suppress.
    assert nms([[0, 0, 2, 1], [1, 0, 3, 1]], [0.9, 0.8], 1 / 3).tolist() == [0, 1]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


def test_weighted_nms_averages_a_cluster_with_score_weights():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [40, 40, 50, 50]], dtype=float)
    scores = np.array([0.75, 0.25, 0.5])
    keypoints = np.array([[[0, 0]], [[4, 8]], [[45, 45]]], dtype=float)
    out_boxes, out_scores, out_kp = weighted_nms(boxes, scores, 0.3, keypoints)
    np.testing.assert_allclose(out_boxes, [[0.25, 0.25, 10.25, 10.25], [40, 40, 50, 50]])
    np.testing.assert_allclose(out_scores, [0.75, 0.5])            # the best member's score
    np.testing.assert_allclose(out_kp, [[[1, 2]], [[45, 45]]])
    b, s, k = weighted_nms(np.zeros((0, 4)), np.zeros(0), 0.3, np.zeros((0, 4, 2)))
    assert b.shape == (0, 4) and s.shape == (0,) and k.shape == (0, 4, 2)
    with pytest.raises(PosekitError, match="keypoints"):
        weighted_nms(boxes, scores, 0.3, np.zeros((2, 1, 2)))


boxes_strategy = st.lists(
    st.tuples(st.integers(0, 30), st.integers(0, 30), st.integers(1, 20), st.integers(1, 20),
              st.floats(0.01, 1.0)), min_size=0, max_size=12)


@settings(max_examples=300, deadline=None)
@given(boxes_strategy, st.sampled_from([0.1, 0.3, 0.5, 0.7]))
def test_nms_properties(rows, threshold):
    """Kept boxes never overlap each other above the threshold; every dropped box overlaps a kept
    box with a score at least as high."""
    data = np.array(rows, dtype=float).reshape(-1, 5)
    boxes, scores = xywh_to_xyxy(data[:, :4]), data[:, 4]
    keep = nms(boxes, scores, threshold)
    assert len(set(keep.tolist())) == len(keep)
    iou = iou_matrix(boxes, boxes)
    kept_iou = iou[np.ix_(keep, keep)] - np.eye(len(keep))
    assert np.all(kept_iou <= threshold)
    for i in set(range(len(boxes))) - set(keep.tolist()):
        assert np.any((iou[i, keep] > threshold) & (scores[keep] >= scores[i]))


def test_clip_boxes():
    np.testing.assert_array_equal(clip_boxes([[-5, 10, 700, 500]], 640, 480), [[0, 10, 640, 480]])


def test_detections_validation_and_external_boxes():
    det = Detections.from_boxes([[10, 20, 30, 40]], fmt="xywh")
    np.testing.assert_array_equal(det.boxes, [[10, 20, 40, 60]])
    assert det.keypoints is None and det.scores.tolist() == [1.0] and len(det) == 1
    assert len(Detections.empty()) == 0 and Detections.empty().keypoints.shape == (0, 4, 2)
    with pytest.raises(PosekitError, match="scores"):
        Detections(np.zeros((2, 4)), np.zeros(3))
    with pytest.raises(PosekitError, match="keypoints"):
        Detections(np.zeros((2, 4)), np.zeros(2), np.zeros((2, 3, 2)))
    with pytest.raises(PosekitError, match="finite"):
        Detections([[0, 0, np.nan, 1]], [1.0])
    with pytest.raises(PosekitError, match="format"):
        Detections.from_boxes([[0, 0, 1, 1]], fmt="yxyx")
    sub = Detections(np.arange(8.0).reshape(2, 4), [0.2, 0.9], np.zeros((2, 4, 2))).select([1])
    assert sub.scores.tolist() == [0.9] and sub.keypoints.shape == (1, 4, 2)
