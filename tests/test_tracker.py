"""Track ids across frames: crossing paths, occlusion gaps, new persons, uniqueness, determinism."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posekit.errors import PosekitError
from posekit.skeletons import get_skeleton
from posekit.track.tracker import Tracker, keypoint_similarity, pose_similarity, suppress_duplicates

COCO = get_skeleton("coco17")
rng0 = np.random.default_rng(0)
TEMPLATE = rng0.uniform(0.1, 0.9, (17, 2))      # a fixed pose in unit-box coordinates


def person(cx, cy, w, h, noise=0.0, rng=None):
    """Box (4,) and keypoints (17, 2) of a synthetic person centred at (cx, cy)."""
    box = np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    kp = box[:2] + TEMPLATE * [w, h]
    if noise:
        kp = kp + rng.normal(0, noise, kp.shape)
    return box, kp


def frame(people):
    boxes = np.array([p[0] for p in people]).reshape(-1, 4)
    kps = np.array([p[1] for p in people]).reshape(-1, 17, 2)
    return boxes, kps, np.full(kps.shape[:2], 0.9)


def test_oks_by_hand():
    # Two keypoints with sigma 0.1: OKS = mean of exp(-d^2 / (2 * area * (2 sigma)^2)).
    a = np.array([[[0.0, 0.0], [10.0, 0.0]]])
    b = np.array([[[3.0, 4.0], [10.0, 0.0]]])
    oks, counted = keypoint_similarity(a, np.ones((1, 2)), b, np.ones((1, 2)), [100.0], [0.1, 0.1])
    assert counted[0, 0] == 2
    assert oks[0, 0] == pytest.approx((math.exp(-25 / (2 * 100 * 0.04)) + 1.0) / 2, rel=1e-12)
    # A keypoint below the score threshold in either pose does not count.
    oks, counted = keypoint_similarity(a, [[0.1, 1.0]], b, np.ones((1, 2)), [100.0], [0.1, 0.1])
    assert counted[0, 0] == 1 and oks[0, 0] == pytest.approx(1.0)


def test_similarity_blends_iou_and_oks_and_falls_back_to_iou():
    box_a = np.array([[0.0, 0.0, 10.0, 10.0]])
    box_b = np.array([[5.0, 0.0, 15.0, 10.0]])          # IoU = 50 / 150
    kp = np.zeros((1, 2, 2))
    s = pose_similarity(box_a, kp, np.ones((1, 2)), box_b, kp, np.ones((1, 2)), [0.1, 0.1], iou_weight=0.25)
    assert s[0, 0] == pytest.approx(0.25 / 3 + 0.75 * 1.0)
    s = pose_similarity(box_a, kp, np.zeros((1, 2)), box_b, kp, np.ones((1, 2)), [0.1, 0.1])
    assert s[0, 0] == pytest.approx(1 / 3)


def test_two_people_crossing_keep_their_ids():
    rng = np.random.default_rng(1)
    tracker = Tracker(COCO.sigmas)
    history = []
    for t in range(40):
        a = person(60 + 10 * t, 200, 60, 160, noise=2.0, rng=rng)           # walks right
        b = person(450 - 10 * t, 205, 55, 150, noise=2.0, rng=rng)          # walks left, crosses at t ~ 20
        order = [a, b] if t % 3 else [b, a]                                  # input order must not matter
        ids = tracker.update(*frame(order))
        history.append((ids[0], ids[1]) if t % 3 else (ids[1], ids[0]))
    ids_a, ids_b = zip(*history)
    assert set(ids_a) == {ids_a[0]} and set(ids_b) == {ids_b[0]} and ids_a[0] != ids_b[0]


def test_crossing_fails_without_motion_model_the_test_is_sharp():
    # The same scene where the two persons have identical size and pose: at the crossing frame
    # their boxes coincide, so only the predicted motion tells them apart. Without it
    # (the tracker's velocity forced to zero) the ids swap at least once over the seeds.
    def run(motion: bool, seed: int):
        rng = np.random.default_rng(seed)
        tracker = Tracker(COCO.sigmas)
        first = None
        for t in range(30):
            if not motion:
                tracker.velocity[:] = 0
            a = person(100 + 8 * t, 200, 60, 160, noise=3.0, rng=rng)
            b = person(332 - 8 * t, 200, 60, 160, noise=3.0, rng=rng)
            ids = tracker.update(*frame([a, b]))
            first = ids if first is None else first
            if not np.array_equal(ids, first):
                return False
        return True

    assert all(run(True, s) for s in range(6))
    assert not all(run(False, s) for s in range(6))


@pytest.mark.parametrize("max_age", [1, 3, 5])
def test_occlusion_gap_of_max_age_minus_one_keeps_the_id_longer_gets_a_new_one(max_age):
    for gap, same in ((max_age - 1, True), (max_age, False), (max_age + 2, False)):
        tracker = Tracker(COCO.sigmas, max_age=max_age)
        t = 0
        for _ in range(5):
            first = tracker.update(*frame([person(100 + 4 * t, 100, 50, 120)]))[0]
            t += 1
        for _ in range(gap):
            assert len(tracker.update(*frame([]))) == 0
            t += 1
        again = tracker.update(*frame([person(100 + 4 * t, 100, 50, 120)]))[0]
        assert bool(again == first) is same, (gap, max_age)


def test_new_person_gets_a_new_id_and_ids_increase():
    tracker = Tracker(COCO.sigmas, first_id=1)
    ids1 = tracker.update(*frame([person(100, 100, 50, 120)]))
    ids2 = tracker.update(*frame([person(102, 100, 50, 120), person(400, 100, 50, 120)]))
    ids3 = tracker.update(*frame([person(600, 300, 40, 100), person(104, 100, 50, 120),
                                  person(402, 100, 50, 120)]))
    assert ids1.tolist() == [1]
    assert ids2.tolist() == [1, 2]
    assert ids3.tolist() == [3, 1, 2]
    assert tracker.tracks_started == 3


def test_boxes_only_tracking_uses_iou():
    tracker = Tracker()
    assert tracker.update(np.array([[0, 0, 10, 10.0]])).tolist() == [0]
    assert tracker.update(np.array([[1, 0, 11, 10.0], [50, 50, 60, 60]])).tolist() == [0, 1]
    assert tracker.update(np.array([[30, 30, 40, 40.0]])).tolist() == [2]   # overlaps nobody


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 4))
def test_random_scenes_never_reuse_ids(seed, max_age):
    rng = np.random.default_rng(seed)
    tracker = Tracker(COCO.sigmas, max_age=max_age)
    seen = set()
    last_max = -1
    for _ in range(12):
        n = int(rng.integers(0, 5))
        people = [person(*rng.uniform(50, 300, 2), *rng.uniform(20, 80, 2), noise=1.0, rng=rng)
                  for _ in range(n)]
        ids = tracker.update(*frame(people))
        assert len(ids) == n and len(set(ids.tolist())) == n           # no id twice in a frame
        new = [i for i in ids.tolist() if i not in seen]
        assert all(i > last_max for i in new)                           # new ids only increase
        assert sorted(new) == new
        seen.update(new)
        last_max = max([last_max, *new])
    assert tracker.tracks_started == len(seen)


def test_deterministic():
    rng = np.random.default_rng(5)
    scenes = [[person(*rng.uniform(50, 300, 2), 40, 90, noise=3.0, rng=rng) for _ in range(4)]
              for _ in range(10)]
    runs = []
    for _ in range(2):
        tracker = Tracker(COCO.sigmas)
        runs.append([tracker.update(*frame(s)).tolist() for s in scenes])
    assert runs[0] == runs[1]


def test_non_finite_keypoints_do_not_count():
    tracker = Tracker(COCO.sigmas)
    box, kp = person(100, 100, 50, 120)
    tracker.update(box[None], kp[None], np.full((1, 17), 0.9))
    kp2 = kp.copy()
    kp2[:5] = np.nan
    assert tracker.update(box[None], kp2[None], np.full((1, 17), 0.9)).tolist() == [0]


def test_bad_input():
    tracker = Tracker(COCO.sigmas)
    with pytest.raises(PosekitError, match="boxes"):
        tracker.update(np.zeros((2, 3)))
    with pytest.raises(PosekitError, match="keypoints"):
        tracker.update(np.zeros((2, 4)), np.zeros((3, 17, 2)))
    with pytest.raises(PosekitError, match="sigmas"):
        tracker.update(np.zeros((1, 4)), np.zeros((1, 5, 2)))
    with pytest.raises(PosekitError, match="finite"):
        tracker.update(np.full((1, 4), np.nan))
    with pytest.raises(PosekitError, match="max_age"):
        Tracker(max_age=0)


def test_suppress_duplicates_keeps_the_first_of_each_person():
    a_box, a_kp = person(100, 100, 50, 120)
    b_box, b_kp = person(300, 100, 50, 120)
    boxes = np.array([a_box, b_box, a_box + 1, b_box + 30])
    kps = np.array([a_kp, b_kp, a_kp + 1, b_kp + 30])
    keep = suppress_duplicates(boxes, kps, np.full((4, 17), 0.9), COCO.sigmas)
    # a + 1 px is a duplicate of a; b moved by 30 px has IoU 0.29 and OKS well below 0.6.
    assert keep.tolist() == [0, 1, 3]
