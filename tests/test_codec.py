"""Heatmap codec: Gaussian and limb targets against closed forms, sub-pixel recovery of random
positions, flip-test identities derived from the image mirror, and bad input."""
import numpy as np
import pytest
import torch

from posekit.codecs import HeatmapCodec
from posekit.errors import PosekitError
from posekit.skeletons import get_skeleton

COCO = get_skeleton("coco17")


def one_joint(codec, xy, joint="left_wrist"):
    keypoints = np.zeros((len(codec.skeleton), 2))
    visibility = np.zeros(len(codec.skeleton))
    keypoints[codec.skeleton.index(joint)] = xy
    visibility[codec.skeleton.index(joint)] = 2
    return keypoints, visibility


def test_gaussian_target_values():
    codec = HeatmapCodec("coco17")  # 192x256 crop, 48x64 maps, stride 4, sigma 2
    out = codec.encode(*one_joint(codec, (40.0, 60.0)))
    k = COCO.index("left_wrist")
    hm = out["heatmaps"][k]
    assert out["heatmaps"].shape == (17, 64, 48) and out["heatmaps"].dtype == np.float32
    assert hm[15, 10] == pytest.approx(1.0)
    assert hm[15, 12] == pytest.approx(np.exp(-4 / 8))  # 2 px right: exp(-d^2 / (2 sigma^2))
    assert hm[17, 11] == pytest.approx(np.exp(-5 / 8))
    assert out["weights"][k] == 1 and out["weights"].sum() == 1
    assert np.count_nonzero(out["heatmaps"].sum(axis=(1, 2))) == 1  # unlabelled joints: zero maps
    # Sub-pixel centre (10.5, 15): the two pixels either side are equal.
    hm = codec.encode(*one_joint(codec, (42.0, 60.0)))["heatmaps"][k]
    assert hm[15, 10] == pytest.approx(np.exp(-0.25 / 8)) and hm[15, 10] == pytest.approx(hm[15, 11])


def test_weights_of_joints_off_the_map():
    codec = HeatmapCodec("coco17")
    k = COCO.index("left_wrist")
    near = codec.encode(*one_joint(codec, (-20.0, 60.0)))  # 5 heatmap px left: within 3 sigma
    far = codec.encode(*one_joint(codec, (-28.0, 60.0)))   # 7 px left: beyond 3 sigma
    assert near["weights"][k] == 1 and near["heatmaps"][k, 15, 0] == pytest.approx(np.exp(-25 / 8))
    assert far["weights"][k] == 0 and not far["heatmaps"].any()


def test_random_subpixel_positions_are_recovered():
    rng = np.random.default_rng(0)
    plain, dark = HeatmapCodec("coco17"), HeatmapCodec("coco17", dark=True)
    # 4000 keypoints at least 3 sigma (6 heatmap px = 24 input px) inside the map.
    keypoints = rng.uniform([24, 24], [192 - 28, 256 - 28], size=(250, 17, 2))
    heatmaps = np.stack([plain.encode(kp, np.ones(17))["heatmaps"] for kp in keypoints])
    decoded, scores = plain.decode(heatmaps)
    error = np.abs(decoded - keypoints) / 4  # in heatmap pixels
    assert error.max() <= 0.25 + 1e-6  # argmax + quarter offset: within a quarter pixel
    assert error.mean() > 0.05  # ... and not exact (the quarter step is a coarse correction)
    assert np.all(scores > np.exp(-0.5 / 8) - 1e-6)  # the peak pixel is within half a pixel per axis
    refined, _ = dark.decode(torch.from_numpy(heatmaps))
    assert np.abs(refined - keypoints).max() / 4 < 0.005


def test_decoding_anywhere_on_the_map_stays_close():
    rng = np.random.default_rng(1)
    keypoints = rng.uniform([0, 0], [188, 252], size=(100, 17, 2))  # up to the last pixel centre
    plain, dark = HeatmapCodec("coco17"), HeatmapCodec("coco17", dark=True)
    heatmaps = np.stack([plain.encode(kp, np.ones(17))["heatmaps"] for kp in keypoints])
    plain_error = np.abs(plain.decode(heatmaps)[0] - keypoints) / 4
    dark_error = np.abs(dark.decode(heatmaps)[0] - keypoints) / 4
    # On a border pixel the quarter step is skipped (|error| <= 0.5); DARK's zero-padded blur is
    # biased near the border, its step is capped at half a pixel (|error| <= 1), and on the whole
    # it is still far better.
    assert plain_error.max() <= 0.5 + 1e-6
    assert dark_error.max() <= 1.0 + 1e-6
    assert dark_error.mean() < 0.5 * plain_error.mean()


def test_quarter_offset_by_hand():
    codec = HeatmapCodec("coco17", input_size=(40, 40), heatmap_size=(10, 10))
    hm = np.zeros((1, 17, 10, 10), np.float32)
    hm[0, 0, 5, 5] = 1.0
    hm[0, 0, 5, 6] = 0.6   # right neighbour larger: x + 0.25
    hm[0, 0, 5, 4] = 0.5
    hm[0, 0, 4, 5] = hm[0, 0, 6, 5] = 0.3  # equal vertical neighbours: no y shift
    hm[0, 1, 0, 9] = 0.7   # a peak on the border: no neighbour on one side, no shift
    hm[0, 1, 1, 9] = 0.2
    decoded, scores = codec.decode(hm)
    assert decoded[0, 0] == pytest.approx([5.25 * 4, 5 * 4])
    assert decoded[0, 1] == pytest.approx([9 * 4, 0])
    assert scores[0, 0] == pytest.approx(1.0) and scores[0, 1] == pytest.approx(0.7)


def test_unequal_strides_per_axis():
    rng = np.random.default_rng(2)
    codec = HeatmapCodec("mpii16", input_size=(256, 192), heatmap_size=(64, 24), sigma=1.5, dark=True)
    keypoints = rng.uniform([40, 60], [216, 132], size=(16, 2))
    decoded, _ = codec.decode(codec.encode(keypoints, np.ones(16))["heatmaps"][None])
    assert np.abs(decoded[0] - keypoints).max() < 0.05


def test_flip_identities():
    codec = HeatmapCodec("coco17", dark=True)
    flip = COCO.flip_indices
    rng = np.random.default_rng(3)
    keypoints = rng.uniform([30, 30], [160, 220], size=(17, 2))
    heatmaps = codec.encode(keypoints, np.ones(17))["heatmaps"][None]
    # Mirroring twice without the shift is the identity, for numpy and torch alike.
    np.testing.assert_array_equal(codec.flip_heatmaps(codec.flip_heatmaps(heatmaps, False), False), heatmaps)
    t = torch.from_numpy(heatmaps)
    assert torch.equal(codec.flip_heatmaps(codec.flip_heatmaps(t, False), False), t)
    # The mirrored crop: pixel x -> 191 - x, left and right joints exchanged.
    mirrored = keypoints[flip].copy()
    mirrored[:, 0] = 191 - mirrored[:, 0]
    predicted_on_mirror = codec.encode(mirrored, np.ones(17))["heatmaps"][None]
    back, _ = codec.decode(codec.flip_heatmaps(predicted_on_mirror, shift=False))
    # Without the shift a joint comes back (stride - 1) = 3 input px to the left; the one-pixel
    # shift (4 input px) leaves it 1 px to the right.
    np.testing.assert_allclose(back[0], keypoints - [3, 0], atol=0.02)
    shifted, _ = codec.decode(codec.flip_heatmaps(torch.from_numpy(predicted_on_mirror)))
    np.testing.assert_allclose(shifted[0], keypoints + [1, 0], atol=0.02)


def test_flip_swaps_left_and_right_channels():
    codec = HeatmapCodec("coco17", input_size=(40, 40), heatmap_size=(10, 10))
    hm = np.zeros((1, 17, 10, 10), np.float32)
    hm[0, COCO.index("left_wrist"), 2, 1] = 1.0
    hm[0, COCO.index("nose"), 3, 4] = 1.0
    out = codec.flip_heatmaps(hm, shift=False)
    assert out[0, COCO.index("right_wrist"), 2, 8] == 1.0
    assert out[0, COCO.index("nose"), 3, 5] == 1.0
    assert out.sum() == 2.0


def test_bone_maps_follow_the_segment():
    codec = HeatmapCodec("mpii16", input_size=(256, 256), heatmap_size=(64, 64), bones=True)
    skeleton = codec.skeleton
    bones = skeleton.bone_array
    assert len(bones) == 15
    keypoints = np.full((16, 2), 128.0)
    keypoints[skeleton.index("left_elbow")] = (40, 80)   # heatmap (10, 20)
    keypoints[skeleton.index("left_wrist")] = (120, 80)  # heatmap (30, 20)
    out = codec.encode(keypoints, np.ones(16))
    b = [tuple(e) for e in bones].index((skeleton.index("left_elbow"), skeleton.index("left_wrist")))
    bone = out["bone_heatmaps"][b]
    assert out["bone_heatmaps"].shape == (15, 64, 64) and out["bone_weights"].shape == (15,)
    np.testing.assert_allclose(bone[20, 10:31], 1.0)  # the whole limb peaks
    assert bone[23, 15] == pytest.approx(np.exp(-9 / 8))  # 3 px off the segment
    assert bone[20, 5] == pytest.approx(np.exp(-25 / 8))  # 5 px beyond the elbow, on the line
    assert bone[24, 33] == pytest.approx(np.exp(-25 / 8))  # 3-4-5 from the wrist, past the end


def test_diagonal_bone_and_unlabelled_endpoints():
    codec = HeatmapCodec("coco17", bones=True, bone_sigma=1.5)
    keypoints = np.full((17, 2), 96.0)
    a, b = COCO.index("left_shoulder"), COCO.index("left_elbow")
    keypoints[a], keypoints[b] = (40, 40), (120, 120)  # heatmap (10, 10) -> (30, 30)
    visibility = np.ones(17)
    visibility[COCO.index("right_wrist")] = 0
    out = codec.encode(keypoints, visibility)
    bones = [tuple(e) for e in COCO.bone_array]
    m = out["bone_heatmaps"][bones.index((a, b))]
    assert m[12, 16] == pytest.approx(np.exp(-8 / (2 * 1.5 ** 2)))  # (16, 12) is 2*sqrt(2) off y = x
    assert np.all(m.argmax(axis=1)[10:31] == np.arange(10, 31))  # each row peaks on the diagonal
    dead = bones.index((COCO.index("right_elbow"), COCO.index("right_wrist")))
    assert out["bone_weights"][dead] == 0 and not out["bone_heatmaps"][dead].any()
    assert out["bone_weights"].sum() == len(bones) - 1
    assert "bone_heatmaps" not in HeatmapCodec("coco17").encode(keypoints, visibility)


def test_bad_input_is_reported():
    codec = HeatmapCodec("coco17")
    with pytest.raises(PosekitError, match=r"\(17, 2\)"):
        codec.encode(np.zeros((16, 2)), np.ones(16))
    with pytest.raises(PosekitError, match="visibility"):
        codec.encode(np.zeros((17, 2)), np.ones(3))
    nan = np.zeros((17, 2))
    nan[3] = np.nan
    with pytest.raises(PosekitError, match="NaN"):
        codec.encode(nan, np.ones(17))
    visibility = np.ones(17)
    visibility[3] = 0
    assert codec.encode(nan, visibility)["weights"][3] == 0  # unlabelled NaN: fine
    with pytest.raises(PosekitError, match="heatmaps have shape"):
        codec.decode(np.zeros((1, 17, 48, 64)))
    with pytest.raises(PosekitError, match="NaN"):
        codec.decode(np.full((1, 17, 64, 48), np.nan))
    with pytest.raises(PosekitError, match="sigma"):
        HeatmapCodec("coco17", sigma=0)
    with pytest.raises(PosekitError, match="input_size"):
        HeatmapCodec("coco17", input_size=(192,))
    flat, scores = HeatmapCodec("coco17", dark=True).decode(np.zeros((1, 17, 64, 48)))
    assert np.all(np.isfinite(flat)) and np.all(scores == 0)
