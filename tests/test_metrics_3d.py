"""3D pose errors against known geometry and an independent per-frame implementation."""
import numpy as np
import pytest
from scipy.optimize import minimize_scalar
from scipy.spatial.transform import Rotation

from posekit.errors import PosekitError
from posekit.metrics.pose3d import (actionwise, auc_3d, evaluate_pose3d, mpjpe, mpjve, n_mpjpe,
                                    p_mpjpe, pck_3d, per_action)

RNG = np.random.default_rng(7)


def random_poses(n=6, j=17):
    return RNG.normal(scale=300.0, size=(n, j, 3))


def kabsch_p_mpjpe(pred, gt):
    """Straightforward per-frame similarity Procrustes (Umeyama) with the reflection excluded."""
    errors = []
    for x, y in zip(pred, gt):
        mx, my = x.mean(0), y.mean(0)
        x0, y0 = x - mx, y - my
        u, s, vt = np.linalg.svd(x0.T @ y0)
        d = np.sign(np.linalg.det(vt.T @ u.T))
        fix = np.diag([1.0, 1.0, d])
        r = vt.T @ fix @ u.T
        scale = np.trace(np.diag(s) @ fix) / (x0 ** 2).sum()
        aligned = scale * x0 @ r.T + my
        errors.append(np.linalg.norm(aligned - y, axis=1))
    return np.mean(errors)


def test_mpjpe_by_hand():
    gt = np.zeros((2, 2, 3))
    pred = np.array([[[3, 4, 0], [0, 0, 1]], [[0, 0, 2], [1, 2, 2]]], float)
    assert mpjpe(pred, gt) == pytest.approx((5 + 1 + 2 + 3) / 4)


def test_shifted_pose():
    gt = random_poses()
    shift = np.array([30.0, -40.0, 120.0])
    pred = gt + shift
    assert mpjpe(pred, gt) == pytest.approx(130.0)
    assert p_mpjpe(pred, gt) == pytest.approx(0.0, abs=1e-9)


def test_rotated_and_scaled_pose():
    gt = random_poses()
    rot = Rotation.from_euler("xyz", [20, -35, 60], degrees=True).as_matrix()
    pred = 1.7 * gt @ rot.T + [5.0, 6.0, 7.0]
    assert p_mpjpe(pred, gt) == pytest.approx(0.0, abs=1e-8)
    assert n_mpjpe(pred, gt) > 10.0                           # scale alone cannot undo a rotation


def test_scaled_pose_is_undone_by_n_mpjpe():
    gt = random_poses()
    pred = gt * np.array([2.0, 0.5, 3.0, 1.0, 0.25, 4.0])[:, None, None]   # a scale per frame
    assert n_mpjpe(pred, gt) == pytest.approx(0.0, abs=1e-9)
    assert mpjpe(pred, gt) > 100.0


def test_mirrored_pose_is_not_aligned_away():
    gt = random_poses()
    pred = gt * [-1.0, 1.0, 1.0]
    err = p_mpjpe(pred, gt)
    assert err > 50.0
    assert err == pytest.approx(kabsch_p_mpjpe(pred, gt), rel=1e-9)


def test_p_mpjpe_agrees_with_a_per_frame_loop_on_random_data():
    for _ in range(5):
        gt = random_poses(8, 17)
        pred = gt + RNG.normal(scale=40.0, size=gt.shape)
        assert p_mpjpe(pred, gt) == pytest.approx(kabsch_p_mpjpe(pred, gt), rel=1e-9)


def test_n_mpjpe_scale_is_the_least_squares_optimum():
    gt = random_poses(4, 17)
    pred = gt * 1.3 + RNG.normal(scale=50.0, size=gt.shape)
    expected = []
    for x, y in zip(pred, gt):
        best = minimize_scalar(lambda s: ((s * x - y) ** 2).sum(), bounds=(0.1, 10), method="bounded",
                               options={"xatol": 1e-10})
        expected.append(np.linalg.norm(best.x * x - y, axis=1))
    assert n_mpjpe(pred, gt) == pytest.approx(np.mean(expected), rel=1e-6)


def test_mpjve_by_hand():
    gt = np.zeros((3, 2, 3))
    pred = np.zeros((3, 2, 3))
    pred[1] += [3.0, 4.0, 0.0]
    pred[2] += [6.0, 8.0, 0.0]
    assert mpjve(pred, gt) == pytest.approx(5.0)
    assert mpjve(gt + [10.0, 0, 0], gt) == 0.0                # a constant offset has no velocity


def test_pck_3d_is_strict_and_auc_averages_31_thresholds():
    gt = np.zeros((1, 4, 3))
    pred = np.zeros((1, 4, 3))
    pred[0, :, 0] = [100.0, 149.9, 150.0, 200.0]
    assert pck_3d(pred, gt) == pytest.approx(50.0)
    assert pck_3d(pred, gt, thr=150.0001) == pytest.approx(75.0)
    assert auc_3d(gt, gt) == pytest.approx(100 * 30 / 31)     # 0 mm is not < 0
    pred10 = np.zeros((1, 1, 3))
    pred10[0, 0, 2] = 10.0
    # 0, 5 and 10 mm fail (10 < 10 is false), the 28 thresholds from 15 mm pass
    assert auc_3d(pred10, np.zeros((1, 1, 3))) == pytest.approx(100 * 28 / 31)


def test_actionwise_gives_each_action_the_same_weight():
    gt = np.zeros((4, 1, 3))
    pred = np.zeros((4, 1, 3))
    pred[:3, 0, 0] = 1.0
    pred[3, 0, 0] = 5.0
    actions = ["walk", "walk", "walk", "sit"]
    assert mpjpe(pred, gt) == pytest.approx(2.0)
    assert per_action(mpjpe, pred, gt, actions) == {"walk": 1.0, "sit": 5.0}
    assert actionwise(mpjpe, pred, gt, actions) == pytest.approx(3.0)


def test_mask_leaves_joints_out_and_may_hide_nan():
    gt = np.zeros((2, 3, 3))
    pred = np.zeros((2, 3, 3))
    pred[:, 0, 0] = 2.0
    pred[:, 2] = np.nan
    mask = np.array([True, True, False])
    assert mpjpe(pred, gt, mask=mask) == pytest.approx(1.0)
    frame_mask = np.array([[True, False, False], [False, True, False]])
    assert mpjpe(pred, gt, mask=frame_mask) == pytest.approx(1.0)
    res = evaluate_pose3d(pred, gt, mask=mask)
    assert res["mpjpe"] == pytest.approx(1.0) and res["mpjve"] == pytest.approx(0.0)


def test_p_mpjpe_with_a_mask_ignores_the_masked_joint_in_the_alignment():
    gt = random_poses(3, 10)
    pred = gt * 0.5 + [10.0, 0, 0]
    pred[:, 4] += 1000.0
    mask = np.ones(10, dtype=bool)
    mask[4] = False
    assert p_mpjpe(pred, gt, mask=mask) == pytest.approx(0.0, abs=1e-8)


def test_evaluate_pose3d_keys_and_single_frame():
    gt = random_poses(1, 5)
    res = evaluate_pose3d(gt + [1.0, 0, 0], gt)
    assert set(res) == {"mpjpe", "p_mpjpe", "n_mpjpe", "mpjve"}
    assert res["mpjpe"] == pytest.approx(1.0) and np.isnan(res["mpjve"])


@pytest.mark.parametrize("pred, gt", [
    (np.zeros((2, 3, 3)), np.zeros((2, 4, 3))),
    (np.zeros((2, 3, 2)), np.zeros((2, 3, 2))),
    (np.full((1, 2, 3), np.nan), np.zeros((1, 2, 3))),
    (np.zeros((0, 2, 3)), np.zeros((0, 2, 3))),
])
def test_bad_shapes_and_nan_are_errors(pred, gt):
    with pytest.raises(PosekitError):
        mpjpe(pred, gt)


def test_other_errors():
    with pytest.raises(PosekitError, match="2 frames"):
        mpjve(np.zeros((1, 2, 3)), np.zeros((1, 2, 3)))
    with pytest.raises(PosekitError, match="mask"):
        mpjpe(np.zeros((1, 2, 3)), np.zeros((1, 2, 3)), mask=np.zeros(2, bool))
    with pytest.raises(PosekitError, match="actions"):
        actionwise(mpjpe, np.zeros((2, 2, 3)), np.zeros((2, 2, 3)), ["a"])
