"""Dataset readers: MPII, PoseTrack18, Human3.6M/HumanEva (VideoPose3D + MMPose layouts), Panoptic, Campus.

References are independent of the readers: the raw files parsed with json/scipy in the test, numbers
worked out by hand, VideoPose3D's published camera parameters, the datasets' own 2D annotations, and
projection formulas written out here.
"""
import io
import json
import math
import os
import pickle
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from posekit.data.h36m import (
    H36M_SPLITS,
    read_h36m_2d,
    read_h36m_3d,
    read_h36m_body3d,
    read_h36m_cameras,
    read_humaneva_2d,
    read_humaneva_3d,
)
from posekit.data.mpii import read_mpii, read_mpii_predictions, write_mpii_predictions
from posekit.data.multiview import (
    CAMPUS_JOINTS,
    read_campus_calibration,
    read_campus_gt,
    read_panoptic_body3d,
    read_panoptic_calibration,
)
from posekit.data.posetrack import read_posetrack, read_posetrack_dir, write_posetrack
from posekit.data.safe_pickle import read_mat, safe_load_npz, safe_load_pickle
from posekit.errors import PosekitError
from posekit.geometry.rotations import quaternion_to_matrix


def read_quietly(reader, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return reader(*args, **kwargs)


# ============================================================================ MPII

@pytest.fixture(params=["repo", "shared"])
def mpii_json(request, test_data) -> Path:
    if request.param == "repo":
        return test_data / "mpii" / "test_mpii.json"
    return request.getfixturevalue("shared_real") / "mpii" / "test_mpii.json"


def test_mpii_keypoints_are_the_json_joints_shifted_to_0_based(mpii_json):
    raw = json.loads(mpii_json.read_text())
    with pytest.warns(UserWarning, match="approximation"):
        gt = read_mpii(mpii_json)
    assert len(gt) == 5 and gt.skeleton.name == "mpii16"
    for i, entry in enumerate(raw):
        vis = np.array(entry["joints_vis"])
        np.testing.assert_array_equal(gt.visibility[i], vis)
        np.testing.assert_allclose(gt.keypoints[i][vis == 1], np.array(entry["joints"])[vis == 1] - 1)
        assert np.isnan(gt.keypoints[i][vis == 0]).all()
        assert gt.images[gt.image_ids[i]].file_name == entry["image"]
    # entries 2 and 3 lack both ankles (joints 0 and 5 of the MPII order)
    assert gt.visibility[2, 0] == 0 and gt.visibility[2, 5] == 0 and gt.visibility[3].sum() == 14


def test_mpii_box_from_center_and_scale_by_hand(mpii_json):
    gt = read_quietly(read_mpii, mpii_json)
    # entry 1: center (316, 220), scale 1.761835 -> side 352.367 px; centre moved down 15 * scale, then -1
    side = 1.761835 * 200
    cx, cy = 316 - 1, 220 + 15 * 1.761835 - 1
    np.testing.assert_allclose(gt.boxes[1], [cx - side / 2, cy - side / 2, side, side])
    row = gt.select([1])                                     # per-row details follow the annotation id
    np.testing.assert_allclose(row.meta["centers"][row.ids[0]], [315, 219])
    np.testing.assert_allclose(row.meta["scales"][row.ids[0]], 1.761835)


def test_mpii_approximate_head_box_is_the_neck_to_head_top_square(mpii_json):
    with pytest.warns(UserWarning, match="official PCKh"):
        gt = read_mpii(mpii_json)
    assert gt.meta["head_boxes"] == "approximate"
    neck, top = np.array([329.9945, 162.1051]) - 1, np.array([347.0055, 105.8949]) - 1   # entry 1, by hand
    side = math.hypot(347.0055 - 329.9945, 105.8949 - 162.1051)
    mid = (neck + top) / 2
    np.testing.assert_allclose(gt.head_boxes[1], [mid[0] - side / 2, mid[1] - side / 2,
                                                  mid[0] + side / 2, mid[1] + side / 2])


def _gt_val_mat(path: Path, raw: list, headboxes: np.ndarray, missing: np.ndarray):
    """A file in the layout of MPII's mpii_gt_val.mat (1-based, joints x 2 x persons)."""
    pos = np.stack([np.array(e["joints"], dtype=float) for e in raw], axis=2)   # (16, 2, N)
    scipy.io.savemat(path, {"headboxes_src": headboxes, "pos_gt_src": pos, "jnt_missing": missing,
                            "dataset_joints": np.array(["rank"] * 16)})


def test_mpii_head_boxes_and_ground_truth_from_gt_val_mat(test_data, tmp_path):
    src = test_data / "mpii" / "test_mpii.json"
    raw = json.loads(src.read_text())
    headboxes = np.stack([[[10.0 + i, 20.0], [60.0 + i, 80.0]] for i in range(5)], axis=2)   # (2, 2, 5)
    missing = np.array([1 - np.array(e["joints_vis"]) for e in raw]).T                        # (16, 5)
    missing[9, 4] = 1      # the .mat may drop a joint the JSON has: the official evaluation follows the .mat
    _gt_val_mat(tmp_path / "mpii_gt_val.mat", raw, headboxes, missing)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gt = read_mpii(src, headboxes=tmp_path / "mpii_gt_val.mat")
    assert gt.meta["head_boxes"] == "mat"
    np.testing.assert_allclose(gt.head_boxes[3], [13 - 1, 20 - 1, 63 - 1, 80 - 1])
    assert gt.visibility[4, 9] == 0 and np.isnan(gt.keypoints[4, 9]).all()
    np.testing.assert_allclose(gt.keypoints[0], np.array(raw[0]["joints"]) - 1)


def test_mpii_gt_val_mat_that_does_not_align_is_refused(test_data, tmp_path):
    src = test_data / "mpii" / "test_mpii.json"
    raw = json.loads(src.read_text())
    headboxes = np.zeros((2, 2, 5))
    missing = np.zeros((16, 5))
    _gt_val_mat(tmp_path / "shuffled.mat", raw[::-1], headboxes, missing)
    with pytest.raises(PosekitError, match=r"entry 0 joint .* not aligned"):
        read_mpii(src, headboxes=tmp_path / "shuffled.mat")
    scipy.io.savemat(tmp_path / "short.mat", {"headboxes_src": np.zeros((2, 2, 4))})
    with pytest.raises(PosekitError, match=r"4 head boxes.*5 entries"):
        read_mpii(src, headboxes=tmp_path / "short.mat")


def test_mpii_head_box_fields_and_given_arrays(tmp_path, test_data):
    raw = json.loads((test_data / "mpii" / "test_mpii.json").read_text())
    for i, entry in enumerate(raw):
        entry["head_box"] = [100 + i, 50, 140 + i, 95]
    path = tmp_path / "with_heads.json"
    path.write_text(json.dumps(raw))
    gt = read_mpii(path)
    assert gt.meta["head_boxes"] == "annotated"
    np.testing.assert_allclose(gt.head_boxes[2], [101, 49, 141, 94])
    given = read_mpii(path, headboxes=np.ones((5, 4)))
    assert given.meta["head_boxes"] == "given" and (given.head_boxes == 1).all()
    del raw[3]["head_box"]
    path.write_text(json.dumps(raw))
    with pytest.raises(PosekitError, match="entry 3: missing field 'head_box'"):
        read_mpii(path)


def test_mpii_predictions_json_npy_mat_round_trip(test_data, tmp_path):
    gt = read_quietly(read_mpii, test_data / "mpii" / "test_mpii.json")
    preds = np.random.default_rng(0).uniform(0, 1000, (5, 16, 2))
    for name in ("p.json", "p.mat", "p.npy"):
        path = write_mpii_predictions(preds, tmp_path / name, gt)
        np.testing.assert_allclose(read_mpii_predictions(path, gt), preds)
    # the .mat is in the official evaluation's 1-based frame, the JSON names each image
    np.testing.assert_allclose(scipy.io.loadmat(tmp_path / "p.mat")["preds"], preds + 1)
    items = json.loads((tmp_path / "p.json").read_text())
    assert items[2]["image"] == "051423444.jpg"
    np.testing.assert_allclose(items[2]["joints"], preds[2] + 1)
    np.savez(tmp_path / "p.npz", preds=preds, other=np.zeros(3))
    np.testing.assert_allclose(read_mpii_predictions(tmp_path / "p.npz", gt), preds)
    (tmp_path / "bare.json").write_text(json.dumps((preds + 1).tolist()))
    np.testing.assert_allclose(read_mpii_predictions(tmp_path / "bare.json", gt), preds)


def test_mpii_prediction_errors_name_the_index(test_data, tmp_path):
    gt = read_quietly(read_mpii, test_data / "mpii" / "test_mpii.json")
    items = [{"image": gt.images[gt.image_ids[i]].file_name, "joints": [[1, 1]] * 16} for i in range(5)]
    items[3]["image"] = "000000001.jpg"
    (tmp_path / "p.json").write_text(json.dumps(items))
    with pytest.raises(PosekitError, match=r"entry 3: image '000000001\.jpg' does not match"):
        read_mpii_predictions(tmp_path / "p.json", gt)
    np.save(tmp_path / "p.npy", np.zeros((4, 16, 2)))
    with pytest.raises(PosekitError, match="4 predictions for 5"):
        read_mpii_predictions(tmp_path / "p.npy", gt)
    np.save(tmp_path / "k.npy", np.zeros((5, 17, 2)))
    with pytest.raises(PosekitError, match=r"expected shape \(N, 16, 2\)"):
        read_mpii_predictions(tmp_path / "k.npy", gt)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d[1].pop("joints_vis"), "entry 1: missing field 'joints_vis'"),
    (lambda d: d[2].__setitem__("joints", d[2]["joints"][:15]), r"entry 2: field 'joints': expected shape \(16, 2\)"),
    (lambda d: d[0]["joints"][4].__setitem__(0, float("nan")), "entry 0: field 'joints': contains NaN"),
    (lambda d: d[4].__setitem__("scale", -1), "entry 4: field 'scale' must be positive"),
    (lambda d: d[3].__setitem__("center", "middle"), "entry 3: field 'center': expected numbers"),
    (lambda d: d[0].__setitem__("joints_vis", [2] * 16), "entry 0: field 'joints_vis' must hold 0 or 1"),
])
def test_mpii_bad_entries_are_one_line_errors(test_data, tmp_path, mutate, message):
    raw = json.loads((test_data / "mpii" / "test_mpii.json").read_text())
    mutate(raw)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(PosekitError, match=message) as info:
        read_quietly(read_mpii, path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_mpii_missing_and_malformed_files(tmp_path):
    with pytest.raises(PosekitError, match="no such file"):
        read_mpii(tmp_path / "absent.json")
    (tmp_path / "cut.json").write_text('[{"image": "a.jpg", "joints"')
    with pytest.raises(PosekitError, match=r"not valid JSON \(line 1"):
        read_mpii(tmp_path / "cut.json")
    (tmp_path / "obj.json").write_text('{"image": "a.jpg"}')
    with pytest.raises(PosekitError, match="expected a JSON list"):
        read_mpii(tmp_path / "obj.json")


# ============================================================================ PoseTrack18

# Counted with json.load from the three real validation files.
POSETRACK_VAL = {
    "003418_mpii_test": dict(nframes=149, persons=1, tracks=[0], regions=[66, 13, 46, 18, 23, 13, 35, 26, 23],
                             labelled_points=11),
    "009473_mpii_test": dict(nframes=101, persons=2, tracks=[0, 1], regions=[25, 21], labelled_points=29),
    "012834_mpii_test": dict(nframes=140, persons=11, tracks=list(range(11)), regions=[152, 18, 28, 57],
                             labelled_points=142),
}


def _check_sequence(name: str, seq, raw: dict):
    expected = POSETRACK_VAL[name]
    assert len(seq) == expected["persons"] and seq.skeleton.name == "posetrack18"
    assert sorted(seq.track_ids.tolist()) == expected["tracks"]
    (info,) = seq.images.values()
    assert info.sequence == name and info.frame_index == 0 and info.is_labeled
    assert (info.width, info.height) == (1920, 1080)
    assert [len(r) for r in info.ignore_regions] == expected["regions"]
    assert seq.meta["nframes"] == {name: expected["nframes"]}
    assert int((seq.visibility > 0).sum()) == expected["labelled_points"]
    image = raw["images"][0]
    np.testing.assert_array_equal(info.ignore_regions[0][:, 0], image["ignore_regions_x"][0])
    np.testing.assert_array_equal(info.ignore_regions[0][:, 1], image["ignore_regions_y"][0])
    for i, ann in enumerate(raw["annotations"]):
        kp = np.array(ann["keypoints"]).reshape(17, 3)
        np.testing.assert_array_equal(seq.keypoints[i], kp[:, :2])
        np.testing.assert_array_equal(seq.visibility[i], kp[:, 2])
        x, y, w, h = ann["bbox_head"]
        np.testing.assert_array_equal(seq.head_boxes[i], [x, y, x + w, y + h])
        np.testing.assert_array_equal(seq.boxes[i], ann["bbox"])
        assert seq.ids[i] == ann["id"] and seq.image_ids[i] == ann["image_id"]


def test_posetrack_copy_in_the_repository(test_data):
    path = test_data / "posetrack18" / "012834_mpii_test.json"
    _check_sequence("012834_mpii_test", read_posetrack(path), json.loads(path.read_text()))


def test_posetrack_three_real_validation_sequences(shared_real):
    folder = shared_real / "posetrack18" / "annotations" / "val"
    sequences = read_posetrack_dir(folder)
    assert sorted(sequences) == sorted(POSETRACK_VAL)
    for name, seq in sequences.items():
        _check_sequence(name, seq, json.loads((folder / f"{name}.json").read_text()))
    merged = read_posetrack(shared_real / "posetrack18" / "annotations" / "test_posetrack18_val.json")
    assert len(merged) == 14 and sorted(merged.meta["nframes"]) == sorted(POSETRACK_VAL)
    assert sorted({i.sequence for i in merged.images.values()}) == sorted(POSETRACK_VAL)


def test_posetrack_predictions_use_keypoint_scores(test_data, tmp_path):
    raw = json.loads((test_data / "posetrack18" / "012834_mpii_test.json").read_text())
    scores = np.linspace(0.05, 0.95, 17)
    raw["annotations"][0]["scores"] = scores.tolist()
    raw["annotations"][0]["score"] = 0.75
    (tmp_path / "pred.json").write_text(json.dumps(raw))
    pred = read_posetrack(tmp_path / "pred.json")
    np.testing.assert_allclose(pred.visibility[0], scores)
    assert pred.scores[0] == 0.75 and pred.scores[1] == 1.0
    np.testing.assert_array_equal(pred.visibility[1], np.array(raw["annotations"][1]["keypoints"])[2::3])


def test_posetrack_write_read_round_trip(test_data, tmp_path):
    source = read_posetrack(test_data / "posetrack18" / "012834_mpii_test.json")
    written = json.loads(write_posetrack(source, tmp_path / "out.json").read_text())
    ann = written["annotations"][5]
    raw = json.loads((test_data / "posetrack18" / "012834_mpii_test.json").read_text())["annotations"][5]
    np.testing.assert_allclose(ann["bbox_head"], raw["bbox_head"])   # x, y, w, h again
    np.testing.assert_allclose(ann["keypoints"], raw["keypoints"])
    back = read_posetrack(tmp_path / "out.json")
    for field in ("keypoints", "visibility", "image_ids", "track_ids", "ids", "boxes", "head_boxes", "scores"):
        np.testing.assert_array_equal(getattr(back, field), getattr(source, field))
    (a,), (b,) = source.images.values(), back.images.values()
    assert (a.sequence, a.frame_index, a.is_labeled, a.width) == (b.sequence, b.frame_index, b.is_labeled, b.width)
    for ra, rb in zip(a.ignore_regions, b.ignore_regions, strict=True):
        np.testing.assert_array_equal(ra, rb)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["annotations"][3].__setitem__("keypoints", [1.0] * 48),
     r"annotations\[3\]: field 'keypoints' must hold 51 numbers"),
    (lambda d: d["annotations"][0].__setitem__("image_id", 7), r"annotations\[0\]: image_id 7 is not among"),
    (lambda d: d["images"].append(dict(d["images"][0])), r"images\[1\]: duplicate image id"),
    (lambda d: d["images"][0]["ignore_regions_x"].pop(), "ignore_regions_x' and 'ignore_regions_y' must be"),
    (lambda d: d["categories"][0]["keypoints"].reverse(), r"categories\[0\]: keypoints are not"),
    (lambda d: d["annotations"][2].__setitem__("track_id", 1.5),
     r"annotations\[2\]: field 'track_id': expected an integer"),
    (lambda d: d.pop("annotations"), "missing field 'annotations'"),
])
def test_posetrack_bad_files_are_one_line_errors(test_data, tmp_path, mutate, message):
    raw = json.loads((test_data / "posetrack18" / "012834_mpii_test.json").read_text())
    mutate(raw)
    (tmp_path / "bad.json").write_text(json.dumps(raw))
    with pytest.raises(PosekitError, match=message):
        read_posetrack(tmp_path / "bad.json")


# ============================================================================ Human3.6M / HumanEva (VideoPose3D)

# VideoPose3D common/h36m_dataset.py removes [4, 5, 9, 10, 11, 16, 20, 21, 22, 23, 24, 28, 29, 30, 31]
VP3D_KEPT = [0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27]
H36M_SYMMETRY = [[4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16]]        # VideoPose3D data_utils.h36m_metadata
COCO_SYMMETRY = [[1, 3, 5, 7, 9, 11, 13, 15], [2, 4, 6, 8, 10, 12, 14, 16]]
HUMANEVA_SYMMETRY = [[2, 3, 4, 8, 9, 10], [5, 6, 7, 11, 12, 13]]


def test_h36m_3d_archive_in_videopose3d_layout(tmp_path):
    rng = np.random.default_rng(1)
    # joint j of frame t sits at x = j metres, so the kept joints can be read back from the result
    walk = np.tile(np.arange(32, dtype=np.float32)[None, :, None], (6, 1, 3))
    data = {"S1": {"Walking": walk, "Eating 2": rng.normal(size=(3, 32, 3)).astype("float32")},
            "S9": {"Directions": rng.normal(size=(4, 32, 3)).astype("float32")}}
    np.savez_compressed(tmp_path / "data_3d_h36m.npz", positions_3d=data)
    motions = read_h36m_3d(tmp_path / "data_3d_h36m.npz")
    assert sorted(motions) == ["S1", "S9"] and sorted(motions["S1"]) == ["Eating 2", "Walking"]
    walking = motions["S1"]["Walking"]
    assert walking.skeleton.name == "h36m17" and walking.fps == 50 and walking.positions.shape == (6, 17, 3)
    np.testing.assert_array_equal(walking.positions[0, :, 0], np.array(VP3D_KEPT) * 1000.0)
    np.testing.assert_allclose(motions["S9"]["Directions"].positions,
                               data["S9"]["Directions"][:, VP3D_KEPT] * 1000.0, rtol=1e-6)
    assert motions["S9"]["Directions"].meta["subject"] == "S9" and set(H36M_SPLITS["test"]) == {"S9", "S11"}


def test_h36m_2d_archives_pick_the_skeleton_from_the_layout(tmp_path):
    rng = np.random.default_rng(2)
    views = [rng.uniform(0, 1000, (5, 17, 2)).astype("float32") for _ in range(4)]
    np.savez_compressed(tmp_path / "cpn.npz", positions_2d={"S1": {"Walking": views}},
                        metadata={"layout_name": "h36m", "num_joints": 17, "keypoints_symmetry": H36M_SYMMETRY})
    cpn = read_h36m_2d(tmp_path / "cpn.npz")
    assert cpn["skeleton"].name == "h36m17"
    for c in range(4):
        np.testing.assert_array_equal(cpn["keypoints"]["S1"]["Walking"][c], views[c])
        assert cpn["scores"]["S1"]["Walking"][c] is None
    with_scores = [np.concatenate([v, np.full((5, 17, 1), 0.5, "float32")], axis=-1) for v in views]
    np.savez_compressed(tmp_path / "detectron.npz", positions_2d={"S5": {"Sitting 1": with_scores}},
                        metadata={"layout_name": "coco", "num_joints": 17, "keypoints_symmetry": COCO_SYMMETRY})
    detectron = read_h36m_2d(tmp_path / "detectron.npz")
    assert detectron["skeleton"].name == "coco17"
    np.testing.assert_array_equal(detectron["scores"]["S5"]["Sitting 1"][3], 0.5)
    # VideoPose3D's ground-truth 2D file has no layout name
    np.savez_compressed(tmp_path / "gt.npz", positions_2d={"S1": {"Walking": views}},
                        metadata={"num_joints": 17, "keypoints_symmetry": H36M_SYMMETRY})
    assert read_h36m_2d(tmp_path / "gt.npz")["skeleton"].name == "h36m17"


@pytest.mark.parametrize("metadata, message", [
    ({"layout_name": "h36m", "keypoints_symmetry": COCO_SYMMETRY}, "keypoints_symmetry' does not match"),
    ({"layout_name": "humaneva20"}, "unknown keypoint layout 'humaneva20'"),
    ({"layout_name": "h36m", "num_joints": 16}, "metadata says 16 joints"),
])
def test_h36m_2d_metadata_that_contradicts_the_layout_is_refused(tmp_path, metadata, message):
    views = [np.zeros((2, 17, 2), "float32")] * 4
    np.savez_compressed(tmp_path / "x.npz", positions_2d={"S1": {"A": views}}, metadata=metadata)
    with pytest.raises(PosekitError, match=message):
        read_h36m_2d(tmp_path / "x.npz")


def test_h36m_3d_wrong_joint_count_names_subject_and_action(tmp_path):
    np.savez_compressed(tmp_path / "x.npz", positions_3d={"S7": {"Phoning": np.zeros((3, 20, 3))}})
    with pytest.raises(PosekitError, match=r"positions_3d\['S7'\]\['Phoning'\]: 20 joints"):
        read_h36m_3d(tmp_path / "x.npz")


def test_humaneva_archives(tmp_path):
    rng = np.random.default_rng(3)
    walk = rng.normal(size=(8, 15, 3)).astype("float32")
    np.savez_compressed(tmp_path / "data_3d_humaneva15.npz",
                        positions_3d={"Train/S1": {"Walking 1 chunk0": walk},
                                      "Validate/S2": {"Box 1 chunk2": walk[:3]}})
    motions = read_humaneva_3d(tmp_path / "data_3d_humaneva15.npz")
    motion = motions["Train/S1"]["Walking 1 chunk0"]
    assert motion.skeleton.name == "humaneva15" and motion.fps == 60
    np.testing.assert_allclose(motion.positions, walk * 1000.0, rtol=1e-6)
    views = [rng.uniform(0, 600, (8, 15, 2)).astype("float32"), None, rng.uniform(0, 600, (8, 15, 2))]
    np.savez_compressed(tmp_path / "data_2d_humaneva15_gt.npz",
                        positions_2d={"Unlabeled/Train/S1": {"Walking 1 chunk1": views}},
                        metadata={"layout_name": "humaneva15", "num_joints": 15,
                                  "keypoints_symmetry": HUMANEVA_SYMMETRY})
    two_d = read_humaneva_2d(tmp_path / "data_2d_humaneva15_gt.npz")
    cams = two_d["keypoints"]["Unlabeled/Train/S1"]["Walking 1 chunk1"]
    assert two_d["skeleton"].name == "humaneva15" and cams[1] is None
    np.testing.assert_allclose(cams[2], views[2])


def _npy_member(array: np.ndarray, protocol: int) -> bytes:
    """An .npy file whose object array is pickled with the given protocol (as older numpy versions did)."""
    header = {"descr": "|O", "fortran_order": False, "shape": array.shape}
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, header)
    return out.getvalue() + pickle.dumps(array, protocol=protocol)


def test_archives_pickled_with_protocol_2_are_read(tmp_path):
    data = np.empty((), dtype=object)
    data[()] = {"S11": {"Posing": np.full((2, 32, 3), 0.5, dtype=np.float32)}}
    with zipfile.ZipFile(tmp_path / "old.npz", "w") as archive:
        archive.writestr("positions_3d.npy", _npy_member(data, protocol=2))
    motion = read_h36m_3d(tmp_path / "old.npz")["S11"]["Posing"]
    np.testing.assert_array_equal(motion.positions, 500.0)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_npz_archive_with_code_inside_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "ran"
    payload = np.empty((), dtype=object)
    payload[()] = {"S1": {"Walking": _Exploit(marker)}}
    np.savez(tmp_path / "evil.npz", positions_3d=payload)
    with pytest.raises(PosekitError, match=r"evil.npz\['positions_3d'\]: pickle refers to '(posix|os)\.system'"):
        read_h36m_3d(tmp_path / "evil.npz")
    assert not marker.exists()


# ============================================================================ Human3.6M (MMPose sample + cameras)

@pytest.fixture(params=["repo", "shared"])
def h36m_dir(request, test_data) -> Path:
    if request.param == "repo":
        return test_data / "h36m"
    return request.getfixturevalue("shared_real") / "h36m"


def _h36m_distort_project(points_cam, f, c, k, p):
    """Human3.6M's own projection (3d-pose-baseline cameras.project_point_radial), written out here."""
    xy = points_cam[:, :2] / points_cam[:, 2:]
    r2 = (xy ** 2).sum(1)
    radial = 1 + k[0] * r2 + k[1] * r2 ** 2 + k[2] * r2 ** 3
    tangential = p[0] * xy[:, 1] + p[1] * xy[:, 0]
    distorted = xy * (radial + tangential)[:, None] + np.outer(r2, [p[1], p[0]])
    return distorted * f + c


def test_h36m_sample_units_and_names(h36m_dir):
    sample = read_h36m_body3d(h36m_dir / "test_h36m_body3d.npz")
    raw = np.load(h36m_dir / "test_h36m_body3d.npz")
    assert sample["subjects"] == ["S1", "S5", "S7", "S8"]
    assert sample["actions"] == ["Directions_1", "SittingDown", "Greeting", "WalkDog_1"]
    assert sample["cameras"] == ["54138969", "54138969", "55011271", "55011271"]
    assert sample["frames"] == [1, 2061, 396, 26]
    np.testing.assert_allclose(sample["positions"], raw["S"][..., :3] * 1000)
    depth = sample["positions"][..., 2]
    assert 3000 < depth.min() and depth.max() < 8000        # millimetres: the subjects are 4-7 m away
    poses = sample["poses_2d"]
    np.testing.assert_array_equal(poses.keypoints, raw["part"][..., :2])
    np.testing.assert_allclose(poses.boxes[0, 2], raw["scale"][0] * 200)
    np.testing.assert_allclose(poses.boxes[0, :2] + poses.boxes[0, 2:] / 2, raw["center"][0])


def test_h36m_sample_2d_is_the_projection_of_its_3d(h36m_dir):
    sample = read_h36m_body3d(h36m_dir / "test_h36m_body3d.npz")
    params = safe_load_pickle(h36m_dir / "cameras.pkl")
    for i in range(4):
        cam = params[(sample["subjects"][i], sample["cameras"][i])]
        uv = _h36m_distort_project(sample["positions"][i], cam["f"].ravel(), cam["c"].ravel(),
                                   cam["k"].ravel(), cam["p"].ravel())
        np.testing.assert_allclose(uv, sample["poses_2d"].keypoints[i], atol=1e-3)


def test_h36m_cameras_match_videopose3d_and_put_feet_on_the_floor(h36m_dir):
    cameras = read_h36m_cameras(h36m_dir / "cameras.pkl")
    assert len(cameras) == 44 and {s for s, _ in cameras} == {f"S{i}" for i in range(1, 12)}
    cam = cameras[("S1", "54138969")]
    # VideoPose3D h36m_dataset.py: S1 camera 0, orientation (w, x, y, z) maps camera to world, translation mm
    q = [0.1407056450843811, -0.1500701755285263, -0.755240797996521, 0.6223280429840088]
    np.testing.assert_allclose(cam.center, [1841.1070556640625, 4955.28466796875, 1563.4454345703125], atol=1e-3)
    np.testing.assert_allclose(cam.R, quaternion_to_matrix(np.array(q)).T, atol=1e-6)
    np.testing.assert_allclose(cam.K[[0, 1, 0, 1], [0, 1, 2, 2]],
                               [1145.0494384765625, 1143.7811279296875, 512.54150390625, 515.4514770507812], atol=1e-4)
    assert (cam.width, cam.height) == (1000, 1002)
    sample = read_h36m_body3d(h36m_dir / "test_h36m_body3d.npz")
    skeleton = sample["skeleton"]
    ankles = skeleton.indices(["left_ankle", "right_ankle"])
    for i in range(4):
        cam = cameras[(sample["subjects"][i], sample["cameras"][i])]
        world = cam.camera_to_world(sample["positions"][i])
        assert -100 < world[ankles, 2].min() < 200          # the lower ankle is on the floor (z up, mm)
        uv = cam.project(world)                              # OpenCV model vs Human3.6M's: < 0.2 px apart
        np.testing.assert_allclose(uv, sample["poses_2d"].keypoints[i], atol=0.2)
    standing = cameras[("S8", "55011271")].camera_to_world(sample["positions"][3])
    assert 1500 < standing[skeleton.index("head"), 2] < 1900


def test_h36m_cameras_refuse_millimetre_centres(tmp_path, test_data):
    params = safe_load_pickle(test_data / "h36m" / "cameras.pkl")
    entry = dict(params[("S1", "54138969")])
    entry["T"] = entry["T"] * 1000
    (tmp_path / "mm.pkl").write_bytes(pickle.dumps({("S1", "54138969"): entry}))
    with pytest.raises(PosekitError, match="expected metres"):
        read_h36m_cameras(tmp_path / "mm.pkl")


# ============================================================================ safe pickle

def test_pickle_with_os_system_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "ran"
    for protocol in (0, 2, 5):
        data = pickle.dumps({"R": np.eye(3), "x": _Exploit(marker)}, protocol=protocol)
        with pytest.raises(PosekitError, match=r"'(posix|os)\.system', which is not allowed"):
            safe_load_pickle(data)
    (tmp_path / "evil.pkl").write_bytes(data)
    with pytest.raises(PosekitError, match=r"evil\.pkl: pickle refers to"):
        read_h36m_cameras(tmp_path / "evil.pkl")
    assert not marker.exists()


@pytest.mark.parametrize("payload", [
    b"cbuiltins\neval\n(S'1+1'\ntR.",                      # builtins.eval
    b"cbuiltins\ngetattr\n(cbuiltins\nlist\nS'append'\ntR.",  # builtins.getattr
    b"c_codecs\nencode\n(S'x'\nS'rot13'\ntR.",              # _codecs.encode with another codec
    b"\x80\x04\x95",                                       # truncated
    b"not a pickle at all",
])
def test_unsafe_or_broken_pickles_are_refused(payload):
    with pytest.raises(PosekitError):
        safe_load_pickle(payload, name="payload")


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_numpy_containers_round_trip_through_every_protocol(protocol):
    value = {("S1", "cam"): {"R": np.arange(9.0).reshape(3, 3), "n": np.int64(7), "names": ["a", "b"],
                             "obj": np.array([{"k": 1}, None], dtype=object), "f": np.float32(2.5),
                             "tuple": (1, 2.0), "set": {3}, "bytes": b"\x00\xff", "c": 1 + 2j}}
    back = safe_load_pickle(pickle.dumps(value, protocol=protocol))
    entry = back[("S1", "cam")]
    np.testing.assert_array_equal(entry["R"], value[("S1", "cam")]["R"])
    assert entry["n"] == 7 and entry["names"] == ["a", "b"] and entry["obj"][0] == {"k": 1}
    assert entry["f"] == np.float32(2.5) and entry["tuple"] == (1, 2.0) and entry["set"] == {3}
    assert entry["bytes"] == b"\x00\xff" and entry["c"] == 1 + 2j


def test_pickled_dtype_with_forged_flags_is_refused():
    # numpy writes float64's state with flags 0; 63 would mark it as holding Python objects
    forged = pickle.dumps(np.arange(3.0), protocol=0).replace(b"NNNI-1\nI-1\nI0\n", b"NNNI-1\nI-1\nI63\n")
    with pytest.raises(PosekitError, match="a state numpy would not write"):
        safe_load_pickle(forged)
    big_endian = safe_load_pickle(pickle.dumps(np.arange(4.0).astype(">f8"), protocol=2))
    np.testing.assert_array_equal(big_endian, [0.0, 1.0, 2.0, 3.0])


def test_object_array_with_too_few_items_is_refused():
    # numpy's own ndarray.__setstate__ reads past a short list (the process dies); the unpickler refuses it
    honest = pickle.dumps(np.array(["a", 1.0, None], dtype=object), protocol=2)
    assert honest.count(b"K\x01K\x03\x85") == 1                        # version 1, shape (3,)
    short = honest.replace(b"K\x01K\x03\x85", b"K\x01Ki\x85")          # shape (105,), still 3 items
    with pytest.raises(PosekitError, match="numpy would not write"):
        safe_load_pickle(short)
    assert safe_load_pickle(honest).tolist() == ["a", 1.0, None]


def test_safe_load_npz_checks_the_crc_of_streamed_members(tmp_path):
    np.savez(tmp_path / "stored.npz", x=np.arange(100.0))              # np.savez stores without compression
    raw = bytearray((tmp_path / "stored.npz").read_bytes())
    raw[raw.index(np.float64(50.0).tobytes()) + 3] ^= 0xFF               # one value changes, the size does not
    (tmp_path / "flipped.npz").write_bytes(bytes(raw))
    with pytest.raises(PosekitError, match=r"flipped.npz\['x'\].*BadZipFile"):
        safe_load_npz(tmp_path / "flipped.npz")


def test_safe_load_npz_matches_numpy_for_plain_arrays(tmp_path):
    arrays = {"a": np.arange(12).reshape(3, 4), "b": np.array(["x", "yz"]), "c": np.float16([1.5])}
    np.savez_compressed(tmp_path / "plain.npz", **arrays)
    loaded = safe_load_npz(tmp_path / "plain.npz")
    with np.load(tmp_path / "plain.npz", allow_pickle=False) as reference:
        assert sorted(loaded) == sorted(reference.files)
        for key in reference.files:
            np.testing.assert_array_equal(loaded[key], reference[key])
            assert loaded[key].dtype == reference[key].dtype


# ============================================================================ MATLAB files

def _same_as_scipy(mine, reference) -> bool:
    """Values equal to scipy.io.loadmat's (scipy keeps MATLAB's storage type, read_mat the array class)."""
    if reference.dtype == object:
        return mine.shape == reference.shape and all(_same_as_scipy(a, b) for a, b in
                                                     zip(mine.ravel(), reference.ravel(), strict=True))
    if reference.dtype.kind == "U":
        return mine.shape == reference.shape and bool((mine == reference).all())
    return mine.shape == reference.shape and np.array_equal(mine, reference.astype(reference.dtype.newbyteorder("=")),
                                                            equal_nan=True)


@pytest.mark.parametrize("compress", [False, True])
def test_read_mat_agrees_with_scipy_on_written_files(tmp_path, compress):
    cells = np.empty(6, dtype=object)
    for i, value in enumerate([np.arange(6.0).reshape(2, 3), "rank", np.zeros((0, 0)), np.array([[True, False]]),
                               np.int16([[-3, 4]]), np.array([[1 + 2j]])]):
        cells[i] = value
    cells = cells.reshape((2, 3), order="F")
    nested = np.empty((1, 1), dtype=object)
    nested[0, 0] = cells
    variables = {"headboxes_src": np.random.default_rng(4).normal(size=(2, 2, 7)), "jnt_missing": np.eye(3, 4),
                 "cells": cells, "nested": nested, "name": "head", "big": np.uint64([[2**63 + 5]]),
                 "single": np.float32([[1.5, -2.25]])}
    scipy.io.savemat(tmp_path / "v.mat", variables, do_compression=compress)
    mine, reference = read_mat(tmp_path / "v.mat"), scipy.io.loadmat(tmp_path / "v.mat")
    assert sorted(mine) == sorted(variables)
    for key in variables:
        assert _same_as_scipy(mine[key], reference[key]), key
    assert mine["headboxes_src"].shape == (2, 2, 7) and mine["cells"][1, 1].dtype == bool
    assert mine["cells"][1, 0].tolist() == ["rank"] and mine["name"].tolist() == ["head"]


def test_read_mat_agrees_with_scipy_on_its_test_files():
    folder = Path(scipy.io.__file__).parent / "matlab" / "tests" / "data"
    files = sorted(folder.glob("test*_7.4_GLNX86.mat"))
    if not files:
        pytest.skip("scipy's MATLAB test files are not installed")
    compared = 0
    for path in files:
        try:
            mine = read_mat(path)
        except PosekitError as exc:
            assert any(kind in str(exc) for kind in ("struct", "object", "sparse", "function", "version 0x0200"))
            continue
        reference = scipy.io.loadmat(path)
        for key in mine:
            assert _same_as_scipy(mine[key], reference[key]), (path.name, key)
            compared += 1
    assert compared >= 15


def test_read_mat_refuses_the_type_codes_that_crash_scipy(tmp_path):
    scipy.io.savemat(tmp_path / "ok.mat", {"x": np.array([[1.5, 2.5]])})
    raw = bytearray((tmp_path / "ok.mat").read_bytes())
    data_tag = raw.rindex(np.uint32(9).tobytes() + np.uint32(16).tobytes())   # miDOUBLE, 16 bytes
    for code in (8, 14, 40):      # a NULL slot, a matrix where numbers belong, past the end of scipy's table
        raw[data_tag:data_tag + 4] = np.uint32(code).tobytes()
        (tmp_path / "bad.mat").write_bytes(bytes(raw))
        with pytest.raises(PosekitError, match=f"values of 'x' stored as type {code}"):
            read_mat(tmp_path / "bad.mat")
    scipy.io.savemat(tmp_path / "struct.mat", {"s": {"a": 1}})
    with pytest.raises(PosekitError, match="'s' is a MATLAB struct"):
        read_mat(tmp_path / "struct.mat")


# ============================================================================ CMU Panoptic

@pytest.fixture(params=["repo", "shared"])
def panoptic_files(request, test_data) -> tuple[Path, Path]:
    if request.param == "repo":
        folder = test_data / "panoptic"
        return folder / "calibration_160906_band1.json", folder / "body3DScene_00000168.json"
    folder = request.getfixturevalue("shared_real") / "panoptic_body3d" / "160906_band1"
    return folder / "calibration_160906_band1.json", folder / "hdPose3d_stage1_coco19" / "body3DScene_00000168.json"


def _panoptic_project_cm(point_cm, cam):
    """panoptic-toolbox projectPoints, written out: x = R X + t, OpenCV distortion, K (all in cm)."""
    k1, k2, p1, p2, k3 = cam["distCoef"]
    x = np.array(cam["R"]) @ point_cm + np.array(cam["t"]).ravel()
    a, b = x[0] / x[2], x[1] / x[2]
    r2 = a * a + b * b
    radial = 1 + k1 * r2 + k2 * r2 ** 2 + k3 * r2 ** 3
    ad = a * radial + 2 * p1 * a * b + p2 * (r2 + 2 * a * a)
    bd = b * radial + p1 * (r2 + 2 * b * b) + 2 * p2 * a * b
    K = np.array(cam["K"])
    return np.array([K[0, 0] * ad + K[0, 1] * bd + K[0, 2], K[1, 1] * bd + K[1, 2]])


def test_panoptic_calibration_types_units_and_projection(panoptic_files):
    calibration, _ = panoptic_files
    raw = {c["name"]: c for c in json.loads(calibration.read_text())["cameras"]}
    everything = read_panoptic_calibration(calibration)
    assert len(everything) == 520
    hd = read_panoptic_calibration(calibration, types="hd")
    assert len(hd) == 31 and all(name.startswith("00_") for name in hd)
    assert len(read_panoptic_calibration(calibration, types=["vga", "kinect-color"])) == 479 + 10
    cam = hd["00_16"]
    assert (cam.width, cam.height) == (1920, 1080)
    np.testing.assert_allclose(cam.t, np.array(raw["00_16"]["t"]).ravel() * 10)
    point_cm = np.array([20.0, -120.0, 15.0])
    for name in ("00_16", "01_01", "50_03"):
        np.testing.assert_allclose(everything[name].project(point_cm * 10), _panoptic_project_cm(point_cm, raw[name]),
                                   atol=1e-6)
    expected = r"no cameras of type \['kinect-depth'\] \(the file has: \['hd', 'kinect-color', 'vga'\]\)"
    with pytest.raises(PosekitError, match=expected):
        read_panoptic_calibration(calibration, types="kinect-depth")


def test_panoptic_bodies_in_millimetres(panoptic_files):
    _, scene = panoptic_files
    raw = json.loads(scene.read_text())["bodies"]
    bodies = read_panoptic_body3d(scene)
    assert bodies["skeleton"].name == "panoptic19" and bodies["ids"].tolist() == [0, 1, 2]
    assert bodies["univ_time"] == 47896.621
    for i, body in enumerate(raw):
        flat = np.array(body["joints19"]).reshape(19, 4)
        valid = flat[:, 3] >= 0
        np.testing.assert_allclose(bodies["joints"][i][valid], flat[valid, :3] * 10)
        assert np.isnan(bodies["joints"][i][~valid]).all()
        np.testing.assert_array_equal(bodies["confidence"][i], flat[:, 3])
    # missing joints (c = -1): person 0's left ankle, person 2's right hip, knee and ankle
    skeleton = bodies["skeleton"]
    assert np.isnan(bodies["joints"][0, skeleton.index("left_ankle")]).all()
    assert np.isnan(bodies["joints"][2, skeleton.indices(["right_hip", "right_knee", "right_ankle"])]).all()
    shoulders = bodies["joints"][:, skeleton.indices(["left_shoulder", "right_shoulder"])]
    width = np.linalg.norm(shoulders[:, 0] - shoulders[:, 1], axis=-1)
    assert np.all((250 < width) & (width < 450))             # adult shoulder widths, in mm


def test_panoptic_bad_files(tmp_path):
    (tmp_path / "cal.json").write_text(json.dumps({"cameras": [{"name": "00_00", "type": "hd", "R": np.eye(3).tolist(),
                                                                "t": [0, 0, 1], "distCoef": [0] * 5}]}))
    with pytest.raises(PosekitError, match=r"cameras\[0\]: missing field 'K'"):
        read_panoptic_calibration(tmp_path / "cal.json")
    (tmp_path / "body.json").write_text(json.dumps({"bodies": [{"id": 0, "joints19": [0.0] * 75}]}))
    with pytest.raises(PosekitError, match=r"bodies\[0\]: field 'joints19' must hold 76 numbers"):
        read_panoptic_body3d(tmp_path / "body.json")
    (tmp_path / "old.json").write_text(json.dumps({"bodies": [{"id": 0, "joints15": [0.0] * 60}]}))
    with pytest.raises(PosekitError, match="only the 19-joint layout"):
        read_panoptic_body3d(tmp_path / "old.json")


# ============================================================================ Campus

@pytest.fixture(params=["repo", "shared"])
def campus_dir(request, test_data) -> Path:
    if request.param == "repo":
        return test_data / "campus"
    return request.getfixturevalue("shared_real") / "campus"


def test_campus_ground_truth_layout_and_units(campus_dir):
    gt = read_campus_gt(campus_dir / "actorsGT.mat")
    raw = scipy.io.loadmat(campus_dir / "actorsGT.mat")["actor3D"][0]
    assert gt["positions"].shape == (3, 3, 14, 3) and gt["keypoints_2d"].shape == (3, 3, 3, 14, 2)
    assert gt["annotated"].tolist() == [[True] * 3, [False] * 3, [False] * 3]
    for f in range(3):
        np.testing.assert_allclose(gt["positions"][0, f], raw[0][f][0] * 1000)
    assert np.isnan(gt["positions"][1:]).all() and np.isnan(gt["keypoints_2d"][1:]).all()
    # z is up: the joint names order the body from the floor to the top of the head
    z = dict(zip(CAMPUS_JOINTS, gt["positions"][0, 0, :, 2], strict=True))
    for lower, upper in [("right_ankle", "right_knee"), ("right_knee", "right_hip"), ("left_ankle", "left_knee"),
                         ("left_knee", "left_hip"), ("left_hip", "left_shoulder"), ("right_hip", "right_shoulder"),
                         ("right_shoulder", "head_bottom"), ("head_bottom", "head_top")]:
        assert z[lower] < z[upper]
    assert 1800 < z["head_top"] < 2100 and z["right_ankle"] < 150


def test_campus_calibration_reprojects_the_annotated_2d(campus_dir):
    cameras = read_campus_calibration(campus_dir / "calibration_campus.json")
    gt = read_campus_gt(campus_dir / "actorsGT.mat")
    assert sorted(cameras) == ["0", "1", "2"]
    raw = json.loads((campus_dir / "calibration_campus.json").read_text())
    np.testing.assert_allclose(cameras["1"].center, np.array(raw["1"]["T"]).ravel())
    for c, name in enumerate(["0", "1", "2"]):
        projected = cameras[name].project(gt["positions"][0])
        # the dataset's 2D annotation: whole pixels for cameras 0 and 1, exact projections for camera 2
        np.testing.assert_allclose(projected, gt["keypoints_2d"][0, :, c], atol=3.0 if c < 2 else 1e-6)


def test_campus_bad_files(tmp_path):
    scipy.io.savemat(tmp_path / "other.mat", {"poses": np.zeros((3, 3))})
    with pytest.raises(PosekitError, match="no 'actor3D' variable"):
        read_campus_gt(tmp_path / "other.mat")
    (tmp_path / "garbage.mat").write_bytes(b"MATLAB 5.0 MAT-file" + bytes(200))
    with pytest.raises(PosekitError, match="not a MATLAB 5"):
        read_campus_gt(tmp_path / "garbage.mat")
    (tmp_path / "cal.json").write_text(json.dumps({"0": {"R": np.eye(3).tolist(), "fx": 1, "fy": 1, "cx": 0, "cy": 0}}))
    with pytest.raises(PosekitError, match="camera '0': missing field 'T'"):
        read_campus_calibration(tmp_path / "cal.json")
