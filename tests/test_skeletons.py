import json

import numpy as np
import pytest

from posekit.errors import PosekitError
from posekit.skeletons import (convert_keypoints, get_mapping, get_skeleton, list_mappings,
                               list_skeletons, load_skeleton, register_skeleton)


def test_coco17_matches_pycocotools_and_annotation_file(test_data):
    from pycocotools.cocoeval import Params

    coco = get_skeleton("coco17")
    np.testing.assert_allclose(coco.sigmas, Params(iouType="keypoints").kpt_oks_sigmas, rtol=1e-15)
    category = json.loads((test_data / "coco" / "test_coco.json").read_text())["categories"][0]
    assert list(coco.joints) == category["keypoints"]
    assert sorted(tuple(sorted(b)) for b in coco.bones) == \
        sorted(tuple(sorted((a - 1, b - 1))) for a, b in category["skeleton"])
    # The flip permutation every COCO codebase uses.
    np.testing.assert_array_equal(coco.flip_indices, [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15])
    # COCO's odd indices are left joints, even ones (but the nose) right.
    np.testing.assert_array_equal(coco.sides, [0] + [1, -1] * 8)


def test_posetrack18_matches_real_annotations(shared_real):
    path = shared_real / "posetrack18" / "annotations" / "test_posetrack18_val.json"
    category = json.loads(path.read_text())["categories"][0]
    pt = get_skeleton("posetrack18")
    assert list(pt.joints) == category["keypoints"]
    assert sorted(tuple(sorted(b)) for b in pt.bones) == \
        sorted(tuple(sorted((a - 1, b - 1))) for a, b in category["skeleton"])


def test_h36m17_and_humaneva15_follow_videopose3d():
    h36m = get_skeleton("h36m17")
    assert list(h36m.parents) == [-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15]
    left = sorted(i for i, _ in h36m.flip_pairs)
    right = sorted(j for _, j in h36m.flip_pairs)
    assert left == [4, 5, 6, 11, 12, 13] and right == [1, 2, 3, 14, 15, 16]
    he = get_skeleton("humaneva15")
    assert list(he.parents) == [-1, 0, 1, 2, 3, 1, 5, 6, 0, 8, 9, 0, 11, 12, 1]
    assert sorted(i for i, _ in he.flip_pairs) == [2, 3, 4, 8, 9, 10]


def test_mpii16_bone_list_is_the_kinematic_tree():
    mpii = get_skeleton("mpii16")
    assert len(mpii) == 16 and len(mpii.bones) == 15
    tree_edges = {frozenset((c, p)) for c, p in enumerate(mpii.parents) if p >= 0}
    assert {frozenset(b) for b in mpii.bones} == tree_edges
    # DITN group order: first the right lower leg, last the left lower arm.
    assert mpii.bones[0] == (mpii.index("right_ankle"), mpii.index("right_knee"))
    assert mpii.bones[-1] == (mpii.index("left_elbow"), mpii.index("left_wrist"))
    np.testing.assert_array_equal(mpii.flip_indices, [5, 4, 3, 2, 1, 0, 6, 7, 8, 9, 15, 14, 13, 12, 11, 10])


def test_blazepose_and_panoptic_sizes():
    bp = get_skeleton("blazepose33")
    assert len(bp) == 33 and len(bp.flip_pairs) == 16  # every landmark but the nose has a mirror
    assert bp.index("mouth_left") in dict(bp.flip_pairs)
    assert len(get_skeleton("panoptic19")) == 19


def test_every_mapping_loads_and_names_only_real_joints():
    assert ("blazepose33", "coco17") in list_mappings()
    for source, target in list_mappings():
        m = get_mapping(source, target)
        assert len(m.sources) == len(get_skeleton(target))
        assert all(0 <= i < len(get_skeleton(source)) for idx in m.sources for i in idx)
        rows = m.matrix.sum(axis=1)
        assert np.all((rows == 0) | np.isclose(rows, 1.0))


def test_convert_blazepose_to_coco_picks_named_landmarks():
    bp, coco = get_skeleton("blazepose33"), get_skeleton("coco17")
    kp = np.arange(33 * 2, dtype=float).reshape(33, 2)
    scores = np.linspace(0, 1, 33)
    out, out_scores = convert_keypoints(kp, scores, "blazepose33", "coco17")
    for name in ("nose", "left_ear", "right_wrist", "left_ankle"):
        np.testing.assert_array_equal(out[coco.index(name)], kp[bp.index(name)])
        assert out_scores[coco.index(name)] == scores[bp.index(name)]


def test_convert_coco_to_h36m_means_and_missing_joints():
    coco, h36m = get_skeleton("coco17"), get_skeleton("h36m17")
    rng = np.random.default_rng(0)
    kp = rng.normal(size=(4, 17, 2))
    scores = rng.uniform(size=(4, 17))
    out, out_scores = convert_keypoints(kp, scores, coco, h36m)
    assert out.shape == (4, 17, 2)
    lh, rh = coco.index("left_hip"), coco.index("right_hip")
    np.testing.assert_allclose(out[:, h36m.index("pelvis")], (kp[:, lh] + kp[:, rh]) / 2)
    np.testing.assert_allclose(out_scores[:, h36m.index("pelvis")], np.minimum(scores[:, lh], scores[:, rh]))
    assert np.all(np.isnan(out[:, h36m.index("spine")])) and np.all(out_scores[:, h36m.index("spine")] == 0)
    with pytest.raises(PosekitError, match="expected keypoints"):
        convert_keypoints(kp[:, :16], scores[:, :16], coco, h36m)


def test_custom_skeleton_yaml_is_usable_everywhere(tmp_path):
    path = tmp_path / "hand3.yaml"
    path.write_text("name: finger3\njoints: [base, middle, tip_left, tip_right]\n"
                    "parents: [null, base, middle, middle]\nsigmas: [0.1, 0.1, 0.05, 0.05]\n")
    sk = load_skeleton(path)
    assert sk.bones == ((0, 1), (1, 2), (1, 3))  # derived from the parents
    assert sk.flip_pairs == ((2, 3),)
    assert get_skeleton(path).name == "finger3"
    register_skeleton(sk)
    assert "finger3" in list_skeletons() and get_skeleton("finger3") is sk
    from posekit.data.structures import PoseInstances
    inst = PoseInstances("finger3", np.zeros((2, 4, 2)), np.ones((2, 4)), [1, 1])
    assert inst.skeleton is sk and inst.keypoints.shape == (2, 4, 2)


@pytest.mark.parametrize("text, message", [
    ("joints: [a, b]", "'name'"),
    ("name: x\njoints: [a, a]", "unique"),
    ("name: x\njoints: [a, b]\nbones: [[a, c]]", "unknown joint 'c'"),
    ("name: x\njoints: [a, b]\nparents: [null, null]", "exactly one root"),
    ("name: x\njoints: [a, b, c]\nparents: [null, c, b]", "cycle"),
    ("name: x\njoints: [a, b]\nsigmas: [0.1]", "2 joints"),
    ("name: x\njoints: [a, b]\nsigmas: [0.1, -1]", "positive"),
    ("name: [unclosed", "not a readable YAML"),
])
def test_bad_skeleton_files_give_clear_errors(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(PosekitError, match=message):
        load_skeleton(path)


def test_unknown_names_give_clear_errors():
    with pytest.raises(PosekitError, match="unknown skeleton 'coco18'"):
        get_skeleton("coco18")
    with pytest.raises(PosekitError, match="no joint 'tail'"):
        get_skeleton("coco17").index("tail")
    with pytest.raises(PosekitError, match="no mapping from 'mpii16' to 'coco17'"):
        get_mapping("mpii16", "coco17")


def test_explicit_flip_pairs_and_extra_fields_are_kept(tmp_path):
    path = tmp_path / "lr.yaml"
    path.write_text("name: lr\njoints: [root, LArm, RArm]\nflip_pairs: [[LArm, RArm]]\nnotes: {source: test}\n")
    sk = load_skeleton(path)
    assert sk.flip_pairs == ((1, 2),) and sk.meta == {"notes": {"source": "test"}}
    np.testing.assert_array_equal(sk.flip_indices, [0, 2, 1])
    cmu = get_skeleton("cmu_mocap")
    assert (cmu.index("LThumb"), cmu.index("RThumb")) in cmu.flip_pairs
    assert len(cmu.flip_pairs) == 15 and "asf_points" in cmu.meta
