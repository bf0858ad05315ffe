"""PoseTrack mAP / MOTA on hand-built sequences whose answers are worked out by hand."""
import numpy as np
import pytest

from posekit.data.structures import ImageInfo, PoseInstances
from posekit.errors import PosekitError
from posekit.metrics.posetrack import (POSEVAL_JOINTS, MotAccumulator, evaluate_posetrack,
                                       points_in_polygon, voc_average_precision)
from posekit.skeletons import get_skeleton

SKEL = get_skeleton("posetrack18")
K = len(SKEL)
# a person template: joints spread over 10 px steps; the head box below gives head size 30, so a
# joint matches within 15 px
TEMPLATE = np.stack([np.arange(K) * 10.0 % 70, np.arange(K) * 12.0], -1)
HEAD = np.array([-15.0, -20.0, 15.0, 20.0])


def person(cx, cy):
    return TEMPLATE + [cx, cy]


def sequence(frames, labelled=None, regions=None):
    """frames: list (one per frame) of lists of (track_id, (cx, cy)); returns ground truth."""
    kps, tracks, image_ids, heads = [], [], [], []
    images = {}
    for f, people in enumerate(frames):
        images[f] = ImageInfo(f, frame_index=f, is_labeled=True if labelled is None else labelled[f],
                              ignore_regions=(regions or {}).get(f, []))
        for track, (cx, cy) in people:
            kps.append(person(cx, cy))
            tracks.append(track)
            image_ids.append(f)
            heads.append(HEAD + [cx, cy, cx, cy])
    n = len(kps)
    return PoseInstances(SKEL, np.array(kps).reshape(n, K, 2), np.full((n, K), 2.0), image_ids,
                         track_ids=tracks, head_boxes=np.array(heads).reshape(n, 4), images=images)


def predictions(rows):
    """rows: (image_id, track_id, keypoints (K, 2), score scalar or (K,))."""
    n = len(rows)
    kp = np.array([r[2] for r in rows]).reshape(n, K, 2)
    sc = np.array([np.broadcast_to(r[3], (K,)) for r in rows]).reshape(n, K)
    return PoseInstances(SKEL, kp, sc, [r[0] for r in rows], track_ids=[r[1] for r in rows])


TWO_PEOPLE = [[(0, (100, 100)), (1, (400, 100))]] * 4


def perfect(gt, score=0.9, track_offset=0):
    return predictions([(int(i), int(t) + track_offset, k, score)
                        for i, t, k in zip(gt.image_ids, gt.track_ids, gt.keypoints)])


def test_perfect_prediction_is_100_everywhere():
    gt = sequence(TWO_PEOPLE)
    res = evaluate_posetrack([(gt, perfect(gt, track_offset=7))])
    assert res["mAP"] == 100.0
    assert all(v == 100.0 for v in res["ap_per_group"].values())
    assert set(res["ap_per_joint"]) == set(POSEVAL_JOINTS)      # ears are not evaluated
    for key in ("MOTA", "MOTP", "precision", "recall"):
        assert res[key] == pytest.approx(100.0)
    # 3 tracked frames (poseval leaves the last one out) x 2 people x 15 joints
    assert res["num_objects"] == 90 and res["num_switches"] == 0


def test_one_swapped_track_counts_two_switches_per_joint():
    gt = sequence(TWO_PEOPLE)
    pred = perfect(gt)
    swap = np.isin(pred.image_ids, [2, 3])
    pred.track_ids[swap] = 1 - pred.track_ids[swap]
    res = evaluate_posetrack([(gt, pred)])
    assert res["mAP"] == 100.0                                  # AP ignores identities
    # frames 0, 1, 2 tracked: at frame 2 both tracks switch -> 2 of 6 objects per joint
    assert res["num_switches"] == 2 * 15
    assert res["MOTA"] == pytest.approx(100 * (1 - 2 / 6))
    assert res["mota_per_group"]["Head"] == pytest.approx(100 * (1 - 2 / 6))
    assert res["precision"] == pytest.approx(100.0) and res["recall"] == pytest.approx(100.0)
    # scoring the last frame too: the new pairing continues there -> 2 switches in 8 objects
    res = evaluate_posetrack([(gt, pred)], skip_last_frame=False)
    assert res["num_switches"] == 30 and res["MOTA"] == pytest.approx(75.0)


def test_a_false_positive_lowers_precision_and_mota_by_a_known_amount():
    gt = sequence([[(0, (100, 100))]] * 3)
    fp_row = (1, 5, person(400, 100), 0.3)
    pred = predictions([(int(i), 0, k, 0.9) for i, k in zip(gt.image_ids, gt.keypoints)] + [fp_row])
    res = evaluate_posetrack([(gt, pred)])
    # tracked frames 0 and 1: 2 matches, 1 false positive per joint
    assert res["precision"] == pytest.approx(100 * 2 / 3)
    assert res["recall"] == pytest.approx(100.0)
    assert res["MOTA"] == pytest.approx(50.0)
    assert res["num_false_positives"] == 15
    # the false positive ranks below every true joint: AP stays 100
    assert res["mAP"] == pytest.approx(100.0)
    # ranked above them it costs AP: precision 0, 1/2, 2/3, 3/4 at recall 0, 1/3, 2/3, 1 -> 75
    pred.visibility[-1] = 0.95
    assert evaluate_posetrack([(gt, pred)])["mAP"] == pytest.approx(75.0)


def test_a_ground_truth_keeps_only_its_best_prediction():
    gt = sequence([[(0, (100, 100))]])
    half = person(100, 100)
    half[SKEL.indices(POSEVAL_JOINTS[:8])] += 100.0             # 8 of 15 joints far off
    pred = predictions([(0, 0, person(100, 100), 0.6), (0, 1, half, 0.9)])
    res = evaluate_posetrack([(gt, pred)], tracking=False)
    # the full match (PCKh 1) takes the ground truth; the half match is a false positive for
    # all its joints, including the 7 correct ones, and it is ranked first: AP = 50 everywhere
    assert res["mAP"] == pytest.approx(50.0)
    assert "MOTA" not in res


def test_points_in_ignore_regions_are_removed():
    region = np.array([[200.0, 0.0], [300.0, 0.0], [300.0, 300.0], [200.0, 300.0]])
    frames = [[(0, (100, 100))]] * 2
    wrist = SKEL.index("left_wrist")
    gt = sequence(frames)
    gt.keypoints[1, wrist] = [250.0, 100.0]                      # inside the region in frame 1
    pred = perfect(gt)
    pred.keypoints[1, wrist] = [250.0, 140.0]                    # 40 px off (head size 30): wrong
    pred.visibility[1, wrist] = 0.5
    without = evaluate_posetrack([(gt, pred)], tracking=False)
    # left_wrist: a true positive (0.9) then a false positive (0.5), 2 ground truths -> AP 50
    assert without["ap_per_joint"]["left_wrist"] == pytest.approx(50.0)
    gt_r = sequence(frames, regions={1: [region]})
    gt_r.keypoints[:] = gt.keypoints
    with_region = evaluate_posetrack([(gt_r, pred)], tracking=False)
    assert with_region["ap_per_joint"]["left_wrist"] == pytest.approx(100.0)
    assert with_region["mAP"] == pytest.approx(100.0)


def test_a_false_positive_person_inside_an_ignore_region_is_dropped():
    region = np.array([[300.0, 0.0], [600.0, 0.0], [600.0, 400.0], [300.0, 400.0]])
    gt = sequence([[(0, (100, 100))]] * 3, regions={1: [region]})
    pred = perfect(gt)
    pred = predictions([(int(i), 0, k, 0.9) for i, k in zip(pred.image_ids, pred.keypoints)]
                       + [(1, 5, person(400, 100), 0.95)])
    res = evaluate_posetrack([(gt, pred)])
    assert res["mAP"] == pytest.approx(100.0) and res["precision"] == pytest.approx(100.0)


def test_unlabelled_frames_are_not_scored():
    gt = sequence([[(0, (100, 100))], [], [(0, (100, 100))], [(0, (100, 100))]],
                  labelled=[True, False, True, True])
    pred = perfect(gt)
    junk = predictions([(int(i), 0, k, 0.9) for i, k in zip(pred.image_ids, pred.keypoints)]
                       + [(1, 3, person(500, 500), 0.99)])
    assert evaluate_posetrack([(gt, junk)])["mAP"] == pytest.approx(100.0)
    assert evaluate_posetrack([(gt, junk)])["precision"] == pytest.approx(100.0)


def test_a_frame_without_predictions_counts_every_ground_truth_joint_as_missed():
    gt = sequence([[(0, (100, 100)), (1, (400, 100))]] * 3)
    pred = perfect(gt).select(gt.image_ids != 1)
    res = evaluate_posetrack([(gt, pred)])
    # frames 0 and 1 tracked: 4 objects per joint, 2 missed
    assert res["num_misses"] == 30 and res["num_false_positives"] == 0
    assert res["MOTA"] == pytest.approx(50.0) and res["recall"] == pytest.approx(50.0)


def test_sequences_are_pooled_and_tracks_do_not_mix_across_them():
    gt = sequence(TWO_PEOPLE)
    pred = perfect(gt)
    res = evaluate_posetrack([(gt, pred), (gt, pred)])
    assert res["num_switches"] == 0 and res["num_objects"] == 180


def test_mot_accumulator_follows_the_motmetrics_readme_example():
    acc = MotAccumulator()
    acc.update(np.array([1, 2]), np.array([1, 2, 3]),
               np.array([[0.1, np.nan, 0.3], [0.5, 0.2, 0.3]]))      # 2 matches, 1 false alarm
    acc.update(np.array([1, 2]), np.array([1]), np.array([[0.2], [0.4]]))  # 1 match, 1 miss
    acc.update(np.array([1, 2]), np.array([1, 3]),
               np.array([[0.6, 0.2], [0.1, 0.6]]))                   # 1 match, 1 switch
    assert (acc.matches, acc.switches, acc.misses, acc.false_positives, acc.objects) == (5, 1, 1, 1, 6)
    assert acc.distance_sum == pytest.approx(0.1 + 0.2 + 0.2 + 0.6 + 0.6)


def test_hungarian_prefers_more_matches_over_a_cheaper_single_match():
    acc = MotAccumulator()
    acc.update(np.array([1, 2]), np.array([1, 2]), np.array([[0.1, 0.2], [0.05, np.nan]]))
    assert acc.matches == 2 and acc.misses == 0 and acc.distance_sum == pytest.approx(0.25)


def test_voc_average_precision_by_hand():
    assert voc_average_precision([0.9, 0.8], [1, 0], 2) == pytest.approx(50.0)
    assert voc_average_precision([0.8, 0.9], [1, 0], 2) == pytest.approx(25.0)
    assert voc_average_precision([0.9, 0.5, 0.7], [1, 1, 0], 2) == pytest.approx(100 * (0.5 + 0.5 * 2 / 3))
    assert voc_average_precision([], [], 3) == 0.0
    assert np.isnan(voc_average_precision([0.5], [0], 0))


def test_points_on_the_polygon_border_are_kept():
    square = [[0, 0], [10, 0], [10, 10], [0, 10]]
    inside = points_in_polygon([[5, 5], [10, 5], [0, 0], [11, 5], [5, 10]], square)
    assert inside.tolist() == [True, False, False, False, False]
    triangle = [[0, 0], [10, 0], [0, 10]]
    assert points_in_polygon([[2, 2], [6, 6], [5, 5]], triangle).tolist() == [True, False, False]


def test_bad_input_is_reported():
    gt = sequence(TWO_PEOPLE)
    pred = perfect(gt)
    pred.track_ids[:] = 3
    with pytest.raises(PosekitError, match="track_ids repeat"):
        evaluate_posetrack([(gt, pred)])
    no_heads = sequence(TWO_PEOPLE)
    no_heads.head_boxes = None
    with pytest.raises(PosekitError, match="head_boxes"):
        evaluate_posetrack([(no_heads, perfect(gt))])
    stray = predictions([(99, 0, person(0, 0), 0.5)])
    with pytest.raises(PosekitError, match="image ids"):
        evaluate_posetrack([(gt, stray)])
    with pytest.raises(PosekitError, match="skeleton"):
        evaluate_posetrack([(gt, PoseInstances("coco17", np.zeros((0, 17, 2)), np.zeros((0, 17)),
                                               np.zeros(0)))])
    with pytest.raises(PosekitError, match="pair"):
        evaluate_posetrack([gt])
    with pytest.raises(PosekitError, match="no sequences"):
        evaluate_posetrack([])
