"""PCK / PCKh / box PCK against hand-computed tables."""
import numpy as np
import pytest

from posekit.errors import PosekitError
from posekit.metrics.pck import head_size, left_right_collapse, pck, pck_bbox, pckh
from posekit.skeletons import get_skeleton

MPII = get_skeleton("mpii16")
DIRECTION = np.array([0.6, 0.8])  # unit vector: offsets d * size * DIRECTION have length d * size


def _build(dist_table, visible_table, sizes, far=5.0):
    """Ground truth on a grid; predictions offset by normalised distance d * size; invisible
    joints get a far prediction that must be ignored."""
    n, k = len(dist_table), len(MPII)
    gt = np.stack(np.meshgrid(np.arange(k) * 50.0 + 100, np.arange(n) * 300.0 + 100), -1)
    gt = gt.reshape(n, k, 2)
    d = np.where(visible_table, dist_table, far)
    pred = gt + d[..., None] * np.asarray(sizes, float)[:, None, None] * DIRECTION
    return pred, gt


def _mpii_case():
    """Three people; see the expected tables in the tests (per-joint counts worked out by hand)."""
    ix = MPII.index
    k = len(MPII)
    dist = np.zeros((3, k))
    vis = np.ones((3, k), dtype=bool)
    # person A, head size 30: all visible
    dist[0] = 0.045
    dist[0, ix("right_ankle")] = 0.7
    dist[0, ix("head_top")] = 0.5            # exactly at the threshold: counts (<=)
    dist[0, ix("left_wrist")] = 0.195
    # person B, head size 60: left_ankle and right_wrist not labelled
    dist[1] = 0.195
    vis[1, [ix("left_ankle"), ix("right_wrist")]] = False
    dist[1, ix("pelvis")] = 0.9
    dist[1, ix("left_knee")] = 0.51
    # person C, head size 30: only head and shoulders labelled
    vis[2] = False
    for name in ("head_top", "upper_neck", "left_shoulder", "right_shoulder"):
        vis[2, ix(name)] = True
    dist[2] = 0.0
    dist[2, ix("head_top")] = 0.6
    heads = np.array([[0, 0, 30, 40], [10, 10, 70, 90], [5, 5, 35, 45]], float)  # sizes 30, 60, 30
    pred, gt = _build(dist, vis, [30, 60, 30])
    return pred, gt, vis, heads


def test_head_size_is_six_tenths_of_the_diagonal():
    assert head_size([[0, 0, 30, 40], [10, 10, 70, 90]]).tolist() == [30.0, 60.0]


def test_pckh_per_joint_table():
    pred, gt, vis, heads = _mpii_case()
    res = pckh(pred, gt, vis, heads)
    expected = {"right_ankle": 50, "right_knee": 100, "right_hip": 100, "left_hip": 100,
                "left_knee": 50, "left_ankle": 100, "pelvis": 50, "thorax": 100,
                "upper_neck": 100, "head_top": 200 / 3, "right_wrist": 100, "right_elbow": 100,
                "right_shoulder": 100, "left_shoulder": 100, "left_elbow": 100, "left_wrist": 100}
    assert res["per_joint"] == pytest.approx(expected)


def test_pckh_group_table_mean_and_auc():
    pred, gt, vis, heads = _mpii_case()
    res = pckh(pred, gt, vis, heads)
    # Ankle is 0.5 * (50 + 100) = 75, not the pooled 2/3 = 66.7 (the reference averages L and R).
    assert res["Head"] == pytest.approx(200 / 3)
    assert res["Shoulder"] == pytest.approx(100)
    assert res["Elbow"] == pytest.approx(100)
    assert res["Wrist"] == pytest.approx(100)
    assert res["Hip"] == pytest.approx(100)
    assert res["Knee"] == pytest.approx(75)
    assert res["Ankle"] == pytest.approx(75)
    # 30 scored joints outside pelvis/thorax: 3 wrong (A right_ankle, B left_knee, C head_top);
    # B's wrong pelvis is excluded from the mean.
    assert res["Mean"] == pytest.approx(90.0)
    # at 0.1: C's three exact joints + A's eleven joints at 0.045
    assert res["Mean@0.1"] == pytest.approx(1400 / 30)
    # curve: 10 % for t < 0.045 (5 points), 14/30 for 0.05..0.19 (15), 26/30 for 0.20..0.49 (30),
    # 27/30 at 0.5; trapezoids on the axis t / 0.5 (spacing 0.02)
    curve = [10.0] * 5 + [1400 / 30] * 15 + [2600 / 30] * 30 + [90.0]
    expected_auc = 0.02 * (sum(curve) - (curve[0] + curve[-1]) / 2)
    assert expected_auc == pytest.approx(67.8)
    assert res["AUC"] == pytest.approx(67.8)


def test_pckh_exactly_at_threshold_counts_and_just_above_does_not():
    gt = np.zeros((1, 16, 2)) + 100.0
    vis = np.zeros((1, 16))
    vis[0, MPII.index("head_top")] = 1
    heads = np.array([[0, 0, 30, 40]], float)        # head size 30 -> threshold 15 px
    at = gt.copy()
    at[0, :, 0] += 9.0
    at[0, :, 1] += 12.0                               # exactly 15 px
    assert pckh(at, gt, vis, heads)["per_joint"]["head_top"] == 100.0
    above = gt.copy()
    above[0, :, 0] += 15.000001
    assert pckh(above, gt, vis, heads)["per_joint"]["head_top"] == 0.0


def test_perfect_prediction_scores_100_everywhere():
    pred, gt, vis, heads = _mpii_case()
    res = pckh(gt.copy(), gt, vis, heads)
    assert res["Mean"] == 100.0 and res["Mean@0.1"] == 100.0
    # the curve is 100 from threshold 0 on (distance 0 <= 0)
    assert res["AUC"] == pytest.approx(100.0)


def test_pckh_joint_never_visible_is_nan_and_group_uses_the_other_side():
    pred, gt, vis, heads = _mpii_case()
    vis[:, MPII.index("left_ankle")] = False
    res = pckh(pred, gt, vis, heads)
    assert np.isnan(res["per_joint"]["left_ankle"])
    assert res["Ankle"] == pytest.approx(50.0)


def test_pckh_invisible_nan_predictions_are_ignored_but_visible_nan_is_an_error():
    pred, gt, vis, heads = _mpii_case()
    pred[2, MPII.index("left_ankle")] = np.nan       # not labelled for person C
    gt[2, MPII.index("left_ankle")] = np.nan
    assert pckh(pred, gt, vis, heads)["Mean"] == pytest.approx(90.0)
    pred[0, 0] = np.nan
    with pytest.raises(PosekitError, match="pred"):
        pckh(pred, gt, vis, heads)


@pytest.mark.parametrize("bad", [
    dict(heads=np.zeros((3, 4))),                               # zero head size
    dict(vis=np.ones((3, 15))),                                 # wrong visibility shape
    dict(gt=np.zeros((3, 16, 3))),                              # 3D ground truth
])
def test_pckh_rejects_bad_input(bad):
    pred, gt, vis, heads = _mpii_case()
    args = dict(pred=pred, gt=gt, vis=vis, heads=heads) | bad
    with pytest.raises(PosekitError):
        pckh(args["pred"], args["gt"], args["vis"], args["heads"])


def test_pckh_wrong_skeleton_size():
    pred, gt, vis, heads = _mpii_case()
    with pytest.raises(PosekitError, match="coco17"):
        pckh(pred, gt, vis, heads, skeleton="coco17")


def test_generic_pck_with_per_person_size():
    gt = np.zeros((2, 3, 2))
    pred = gt.copy()
    pred[0, 0] = [3.0, 4.0]     # 5 px of size 10 -> 0.5
    pred[0, 1] = [6.0, 8.0]     # 1.0
    pred[1, 0] = [0.0, 10.0]    # 10 px of size 40 -> 0.25
    pred[1, 2] = [30.0, 40.0]   # 1.25, but not visible
    vis = np.array([[1, 1, 0], [1, 2, 0]])
    per_joint, mean = pck(pred, gt, vis, [10.0, 40.0], thr=0.5)
    assert per_joint[:2].tolist() == [100.0, 50.0] and np.isnan(per_joint[2])
    assert mean == pytest.approx(100 * 3 / 4)
    per_joint, mean = pck(pred, gt, vis, [10.0, 40.0], thr=0.3)
    assert per_joint[:2].tolist() == [50.0, 50.0] and mean == pytest.approx(50.0)


def test_pck_bbox_uses_the_longer_box_side():
    gt = np.zeros((1, 2, 2))
    pred = gt.copy()
    pred[0, 0] = [12.0, 16.0]   # 20 px = 0.2 of the 100 px long side
    pred[0, 1] = [0.0, 20.5]
    boxes = np.array([[0.0, 0.0, 50.0, 100.0]])
    per_joint, mean = pck_bbox(pred, gt, np.ones((1, 2)), boxes, thr=0.2)
    assert per_joint.tolist() == [100.0, 0.0] and mean == 50.0


def test_pck_without_visible_joints_is_an_error():
    with pytest.raises(PosekitError, match="no visible"):
        pck(np.zeros((1, 2, 2)), np.zeros((1, 2, 2)), np.zeros((1, 2)), [1.0], 0.5)
    with pytest.raises(PosekitError, match="threshold"):
        pck(np.zeros((1, 2, 2)), np.zeros((1, 2, 2)), np.ones((1, 2)), [1.0], -1)


def test_left_right_collapse_counts_pairs_predicted_on_one_limb():
    # Joints: 0 centre, 1 left, 2 right; persons of size 100.
    gt = np.array([[[50, 0], [0, 50], [100, 50]],      # sides 100 apart: counted
                   [[50, 0], [0, 50], [100, 50]],      # counted
                   [[50, 0], [45, 50], [55, 50]],      # 10 apart (< 0.2): not counted
                   [[50, 0], [0, 50], [100, 50]]], float)  # right side unlabelled: not counted
    pred = gt.copy()
    pred[0, 2] = [5, 52]                  # both on the left limb: collapsed
    pred[1, 1], pred[1, 2] = gt[1, 2], gt[1, 1]   # swapped, still on two limbs: not a collapse
    pred[2, 2] = pred[2, 1]               # together, but the truth is not apart
    visible = np.ones((4, 3), bool)
    visible[3, 2] = False
    pred[3, 2] = pred[3, 1]
    assert left_right_collapse(pred, gt, visible, np.full(4, 100.0), [(1, 2)]) == pytest.approx(50.0)
    assert np.isnan(left_right_collapse(pred[2:3], gt[2:3], visible[2:3], [100.0], [(1, 2)]))  # nothing to count
    with pytest.raises(PosekitError, match="flip pairs"):
        left_right_collapse(pred, gt, visible, np.full(4, 100.0), [(1, 3)])
