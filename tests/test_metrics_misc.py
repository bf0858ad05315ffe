"""NRSfM errors, classification scores and feature-map diagnostics, all against hand computations."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from posekit.errors import PosekitError
from posekit.metrics.classification import accuracy, classification_report, confusion_matrix
from posekit.metrics.diagnostics import average_channel_distance, hoyer_sparsity
from posekit.metrics.nrsfm import align_shapes, normalized_shape_error, shape_error_xi

# a non-planar, centred 4-point shape (a tetrahedron)
SHAPE = np.array([[1.0, 1.0, 1.0], [-1.0, -1.0, 1.0], [-1.0, 1.0, -1.0], [1.0, -1.0, -1.0]])


# ---------------------------------------------------------------- NRSfM

def test_xi_is_the_mean_squared_frobenius_error():
    gt = np.stack([SHAPE, SHAPE])
    pred = gt.copy()
    pred[0] += [1.0, 0.0, 0.0]           # 4 points x 1^2 = 4
    pred[1] += [0.0, 2.0, 0.0]           # 4 points x 2^2 = 16
    res = shape_error_xi(pred, gt)
    assert res["per_frame"].tolist() == [4.0, 16.0]
    assert res["xi"] == 10.0 and res["std"] == 6.0
    # the translations are aligned away
    assert shape_error_xi(pred, gt, align="orthogonal")["xi"] == pytest.approx(0.0, abs=1e-20)


def test_a_half_turn_costs_raw_error_but_not_aligned_error():
    gt = SHAPE[None]
    pred = gt * [-1.0, -1.0, 1.0]        # 180 degrees about z: each point moves 2 * sqrt(x^2 + y^2)
    assert shape_error_xi(pred, gt)["xi"] == pytest.approx(4 * 4 * 2.0)
    assert normalized_shape_error(pred, gt)["mean"] == pytest.approx(0.0, abs=1e-12)


def test_the_depth_reflection_is_not_charged():
    gt = np.stack([SHAPE, SHAPE @ Rotation.from_euler("y", 40, degrees=True).as_matrix().T])
    pred = gt * [1.0, 1.0, -1.0]         # same image under orthographic projection
    assert normalized_shape_error(pred, gt)["per_frame"] == pytest.approx([0.0, 0.0], abs=1e-12)
    assert np.allclose(align_shapes(pred, gt), gt)


def test_scale_is_charged_unless_asked_for():
    gt = SHAPE[None] + [5.0, 0.0, 0.0]
    pred = (gt - gt.mean(axis=1, keepdims=True)) * 2.0
    # best orthogonal fit of 2S to S is the identity: residual ||S||, relative error exactly 1
    assert normalized_shape_error(pred, gt)["mean"] == pytest.approx(1.0)
    assert normalized_shape_error(pred, gt, scale=True)["mean"] == pytest.approx(0.0, abs=1e-12)
    assert shape_error_xi(pred, gt, align="similarity")["xi"] == pytest.approx(0.0, abs=1e-20)


def test_a_collapsed_reconstruction_has_relative_error_one():
    gt = np.stack([SHAPE, 3.0 * SHAPE])
    res = normalized_shape_error(np.zeros_like(gt), gt)
    assert res["per_frame"] == pytest.approx([1.0, 1.0])


def test_nrsfm_errors():
    with pytest.raises(PosekitError, match="align"):
        shape_error_xi(SHAPE[None], SHAPE[None], align="affine")
    with pytest.raises(PosekitError, match="undefined"):
        normalized_shape_error(np.zeros((1, 4, 3)), np.ones((1, 4, 3)))
    with pytest.raises(PosekitError):
        shape_error_xi(SHAPE, SHAPE)


# ---------------------------------------------------------------- classification

Y_TRUE = [0, 0, 0, 1, 1, 2, 2, 2, 2]
Y_PRED = [0, 1, 0, 1, 1, 2, 0, 0, 2]


def test_confusion_matrix_rows_true_columns_predicted():
    assert confusion_matrix(Y_TRUE, Y_PRED).tolist() == [[2, 1, 0], [0, 2, 0], [2, 0, 2]]
    assert confusion_matrix([0, 1], [1, 1], num_classes=4).shape == (4, 4)


def test_report_by_hand():
    rep = classification_report(Y_TRUE, Y_PRED)
    # precision: 2/4, 2/3, 2/2; recall: 2/3, 2/2, 2/4
    assert rep["precision"] == pytest.approx([0.5, 2 / 3, 1.0])
    assert rep["recall"] == pytest.approx([2 / 3, 1.0, 0.5])
    f1 = [2 * 0.5 * (2 / 3) / (0.5 + 2 / 3), 2 * (2 / 3) / (2 / 3 + 1), 2 * 0.5 / 1.5]
    assert rep["f1"] == pytest.approx(f1)
    assert rep["support"].tolist() == [3, 2, 4]
    assert rep["accuracy"] == pytest.approx(6 / 9) and accuracy(Y_TRUE, Y_PRED) == pytest.approx(6 / 9)
    assert rep["macro"]["precision"] == pytest.approx((0.5 + 2 / 3 + 1) / 3)
    assert rep["weighted"]["recall"] == pytest.approx((3 * 2 / 3 + 2 * 1 + 4 * 0.5) / 9)
    assert rep["weighted"]["f1"] == pytest.approx((3 * f1[0] + 2 * f1[1] + 4 * f1[2]) / 9)


def test_zero_division_gives_zero():
    rep = classification_report([0, 0, 1], [0, 0, 0], num_classes=3)
    # class 1 never predicted, class 2 absent everywhere: their ratios are 0
    assert rep["precision"] == pytest.approx([2 / 3, 0.0, 0.0])
    assert rep["recall"] == pytest.approx([1.0, 0.0, 0.0])
    assert rep["f1"] == pytest.approx([0.8, 0.0, 0.0])
    assert rep["macro"]["f1"] == pytest.approx(0.8 / 3)


@pytest.mark.parametrize("y_true, y_pred, kw", [
    ([0, 1], [0], {}), ([], [], {}), ([0, -1], [0, 0], {}), ([0, 1.5], [0, 1], {}),
    ([0, 3], [0, 1], {"num_classes": 3}), ([[0]], [[0]], {}), (["a"], ["b"], {}),
])
def test_classification_bad_labels(y_true, y_pred, kw):
    with pytest.raises(PosekitError):
        classification_report(y_true, y_pred, **kw)


# ---------------------------------------------------------------- diagnostics

def test_hoyer_by_hand():
    assert hoyer_sparsity([0.0, 0.0, 5.0, 0.0]) == pytest.approx(1.0)
    assert hoyer_sparsity(np.full((3, 4, 4), -2.0)) == pytest.approx(0.0)
    # n = 4, L1 = 7, L2 = 5: (2 - 7/5) / (2 - 1)
    assert hoyer_sparsity([3.0, -4.0, 0.0, 0.0]) == pytest.approx(0.6)
    assert np.isnan(hoyer_sparsity(np.zeros(5)))


def test_hoyer_per_channel():
    x = np.zeros((2, 2, 2))
    x[0, 0, 0] = 1.0                      # channel 0: one-hot
    x[1] = 3.0                            # channel 1: constant
    assert hoyer_sparsity(x, axis=(1, 2)).tolist() == pytest.approx([1.0, 0.0])


def test_average_channel_distance_by_hand():
    fmap = np.array([[[0.0, 0.0]], [[3.0, 4.0]], [[6.0, 8.0]]])      # (C=3, H=1, W=2)
    assert average_channel_distance(fmap) == pytest.approx((5 + 10 + 5) / 3)
    # unit-normalised channels: 0, (0.6, 0.8), (0.6, 0.8) -> distances 1, 1, 0
    assert average_channel_distance(fmap, normalize=True) == pytest.approx(2 / 3)
    batch = np.stack([fmap, 2 * fmap])
    assert average_channel_distance(batch) == pytest.approx([20 / 3, 40 / 3])


def test_diagnostics_errors():
    with pytest.raises(PosekitError):
        hoyer_sparsity([1.0])
    with pytest.raises(PosekitError):
        hoyer_sparsity([1.0, np.nan])
    with pytest.raises(PosekitError):
        hoyer_sparsity(np.ones((2, 2)), axis=3)
    with pytest.raises(PosekitError):
        average_channel_distance(np.ones((1, 4, 4)))
    with pytest.raises(PosekitError):
        average_channel_distance(np.ones((4, 4)))
