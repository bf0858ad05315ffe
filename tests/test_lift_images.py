"""The image path of 3D Human Pose Machines on Human3.6M (posekit.lift.images, ``lift.frontend: cpm``)."""
import csv
import json
import math

import cv2
import numpy as np
import pytest
import torch
from helpers import run_cli

from posekit.data.transforms import apply_affine
from posekit.engine.checkpoint import load_weights
from posekit.engine.config import load_config
from posekit.engine.tasks import build_task
from posekit.errors import PosekitError
from posekit.lift.images import (H36MClips, H36MSequenceSet, ImagePoseMachine3D, action_label, cpm_input,
                                 crop_frame, crop_matrix, group_sequences, load_crop, load_h36m_frames, make_clips,
                                 max_min_denormalize, max_min_normalize, max_min_stats, mirror_2d, normalized_2d,
                                 protocol_runs, subsample_runs)
from posekit.lift.task import score_image_records
from posekit.skeletons import get_skeleton

SKELETON = get_skeleton("h36m17")
PELVIS = SKELETON.index("pelvis")
CONFIG = "configs/lift/pose_machine3d_h36m_protocol1.yaml"
TINY_MODEL = "lift.model={width: 16, layers: 2, temporal: lstm, projector_hidden: 8, projector_width: 8}"


def image_name(subject, action, camera, frame, ext="png"):
    folder = f"{subject}_{action}.{camera}"
    return f"{subject}/{folder}/{folder}_{frame:06d}.{ext}"


def write_annotations(path, names, images=None, size=(48, 40), **replace):
    """An MMPose-layout npz for ``names``: boxes centred in the image, the pelvis 5 m in front of the
    camera and joint j of frame i at (i + j) mm from it along x; blank images under ``images``."""
    n, k = len(names), len(SKELETON)
    frame = np.arange(n)[:, None]
    joint = np.arange(k)[None, :]
    body = np.zeros((n, k, 4))
    body[..., 0] = (frame + joint) / 1000.0
    body[..., 2] = 5.0
    body[..., 3] = 1.0
    part = np.ones((n, k, 3))
    part[..., 0] = 10 + joint + frame
    part[..., 1] = 12 + 0.5 * joint
    arrays = {"imgname": np.array(names), "center": np.tile([size[0] / 2, size[1] / 2], (n, 1)),
              "scale": np.full(n, 0.2), "part": part, "S": body}
    arrays.update(replace)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    if images is not None:
        for name in names:
            (images / name).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(images / name), np.zeros((size[1], size[0], 3), np.uint8))
    return path


def test_crop_matrix_and_pixels_by_hand(tmp_path):
    # Side 20 around (20.5, 15.5) onto 20 pixels: crop = image - (11, 6) (centre -> (20 - 1) / 2 = 9.5).
    np.testing.assert_allclose(crop_matrix((20.5, 15.5), 20, 20), [[1, 0, -11], [0, 1, -6]], atol=1e-12)
    # Side 40 onto 20 pixels: half size, (20.5, 15.5) -> 9.5 and (30.5, 20.5) -> (9.5 + 5, 9.5 + 2.5).
    matrix = crop_matrix((20.5, 15.5), 40, 20)
    np.testing.assert_allclose(apply_affine([[20.5, 15.5], [30.5, 20.5]], matrix), [[9.5, 9.5], [14.5, 12.0]])
    image = np.zeros((50, 60, 3), np.uint8)
    image[18, 25] = (10, 20, 30)  # RGB
    crop = crop_frame(image, (20.5, 15.5), 20, 20)
    assert crop[12, 14].tolist() == [10, 20, 30] and crop.sum() == 60
    # A window reaching past the image is grey there, which the network input maps to 0.
    corner = crop_frame(image, (0.0, 0.0), 20, 20)
    assert corner[0, 0].tolist() == [128, 128, 128] and corner[15, 15].tolist() == [0, 0, 0]
    # From a file: BGR order (CPM's), then pixel / 256 - 0.5, channels first.
    cv2.imwrite(str(tmp_path / "frame.png"), image[..., ::-1])  # OpenCV writes BGR
    bgr = load_crop(tmp_path / "frame.png", (20.5, 15.5), 20, 20)
    assert bgr[12, 14].tolist() == [30, 20, 10]
    net = cpm_input(torch.from_numpy(np.stack([bgr, corner])))
    assert net.shape == (2, 3, 20, 20)
    assert net[0, :, 12, 14].tolist() == [30 / 256 - 0.5, 20 / 256 - 0.5, 10 / 256 - 0.5]
    assert net[1, :, 0, 0].tolist() == [0.0, 0.0, 0.0]


def test_max_min_normalisation_by_hand_and_round_trip():
    poses = np.zeros((3, 17, 3), np.float32)
    poses[:, 1, 0] = [0.2, -0.4, 0.6]   # min -0.4, range 1.0
    poses[:, 2, 1] = [1.0, 2.0, 1.5]    # min 1.0, range 1.0
    poses[:, 3, 2] = [-0.1, -0.3, -0.2]
    low, span = max_min_stats(poses)
    assert low[1, 0] == pytest.approx(-0.4) and span[1, 0] == pytest.approx(1.0)
    assert low[3, 2] == pytest.approx(-0.3) and span[3, 2] == pytest.approx(0.2)
    assert span[PELVIS].tolist() == [1.0, 1.0, 1.0]  # constant coordinates keep range 1
    normalized = max_min_normalize(poses, low, span)
    np.testing.assert_allclose(normalized[:, 1, 0], [0.6, 0.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(normalized[:, 3, 2], [1.0, 0.0, 0.5], atol=1e-6)
    assert normalized.min() >= 0 and normalized.max() <= 1 + 1e-6
    np.testing.assert_allclose(max_min_denormalize(normalized, low, span), poses, atol=1e-6)
    model = ImagePoseMachine3D(width=8, projector_hidden=4, projector_width=4, crop=40)
    model.set_normalization(low, span)
    back = model.denormalize(model.normalize(torch.from_numpy(poses)))
    torch.testing.assert_close(back, torch.from_numpy(poses))
    assert {"target_min", "target_range"} <= set(model.state_dict())
    with pytest.raises(PosekitError, match="N >= 1"):
        max_min_stats(np.zeros((0, 17, 3)))


def test_sequences_subsampling_runs_and_clips_by_hand():
    subjects = ["S9", "S1", "S1", "S1", "S1"]
    actions = ["Walking_1", "Directions_1", "Directions_1", "Directions_1", "Directions_1"]
    cameras = ["54138969", "55011271", "54138969", "54138969", "54138969"]
    frames = [1, 1, 26, 1, 6]
    groups = group_sequences(subjects, actions, cameras, frames)
    assert list(groups) == [("S1", "Directions_1", "54138969"), ("S1", "Directions_1", "55011271"),
                            ("S9", "Walking_1", "54138969")]
    assert groups[("S1", "Directions_1", "54138969")].tolist() == [3, 4, 2]  # ordered by frame number
    # every 5th frame (MMPose fps10) from 1 to 101, step 25: frames 1, 26, 51, 76, 101
    fps10 = np.arange(1, 102, 5)
    assert [r.tolist() for r in subsample_runs(fps10, 25, "s")] == [[0, 5, 10, 15, 20]]
    gap = np.delete(fps10, 10)  # frame 51 absent: two runs
    assert [gap[r].tolist() for r in subsample_runs(gap, 25, "s")] == [[1, 26], [76, 101]]
    assert [r.tolist() for r in subsample_runs([7], 25, "s")] == [[0]]
    with pytest.raises(PosekitError, match="frame_step 12 is not a multiple of the annotation's frame spacing 5"):
        subsample_runs(fps10, 12, "s")
    with pytest.raises(PosekitError, match="frame 6 is annotated twice"):
        subsample_runs([1, 6, 6], 5, "s")
    runs = [np.arange(7), np.arange(10, 13), np.arange(20, 22)]
    assert [c.tolist() for c in make_clips(runs, 3)] == [[0, 1, 2], [3, 4, 5], [10, 11, 12]]
    assert action_label("Directions_1") == "Directions" and action_label("TakingPhoto 1") == "Photo"
    assert action_label("WalkingDog") == "WalkDog" and action_label("SittingDown") == "SittingDown"


def test_protocol_split_and_datasets_on_synthetic_files(tmp_path):
    names = ([image_name("S1", "Directions_1", "54138969", f) for f in (51, 1, 26, 76)]
             + [image_name("S5", "Walking", "55011271", f) for f in (1, 26)]
             + [image_name("S9", "TakingPhoto_1", "54138969", f) for f in (1, 26, 51)])
    path = write_annotations(tmp_path / "a.npz", names, tmp_path)
    frames = load_h36m_frames([path], tmp_path)
    assert frames.sides.tolist() == [40.0] * 9 and frames.centers[0].tolist() == [24.0, 20.0]
    train = protocol_runs(frames, ["S1", "S5"], 25, "data.h36m.train_subjects")
    assert [r.tolist() for r in train] == [[1, 2, 0, 3], [4, 5]]
    assert [r.tolist() for r in protocol_runs(frames, ["S1"], 50, "k")] == [[1, 0]]
    with pytest.raises(PosekitError, match="data.h36m.train_subjects: no frames of S6"):
        protocol_runs(frames, ["S1", "S6"], 25, "data.h36m.train_subjects")

    clips = H36MClips(frames, train, clip_length=2, crop=40, scale_range=(0.9, 1.1))
    assert [c.tolist() for c in clips.clips] == [[1, 2], [0, 3], [4, 5]]
    sample = clips.sample(1, np.random.default_rng(0))
    assert sample["images"].shape == (2, 3, 40, 40) and sample["images"].dtype == torch.float32
    # rows 0 and 3 of the file: joint j at (row + j) mm along x, so j mm from the pelvis
    np.testing.assert_allclose(sample["target"][..., 0], np.tile(np.arange(17) / 1000.0, (2, 1)), atol=1e-7)
    np.testing.assert_allclose(sample["target"][..., 1:], 0.0)
    np.testing.assert_allclose(sample["target_2d"], normalized_2d(frames.keypoints[[0, 3]], frames.visibility[[0, 3]]))
    assert sample["visibility"].tolist() == [[1.0] * 17] * 2

    test = H36MSequenceSet(frames, protocol_runs(frames, ["S9"], 25, "k"), crop=40)
    item = test[0]
    assert len(test) == 1 and item["sequence"] == "S9/TakingPhoto_1.54138969" and item["action"] == "Photo"
    assert item["crops"].shape == (3, 40, 40, 3) and item["crops"].dtype == torch.uint8


def test_one_zoom_per_clip(tmp_path):
    """All frames alike: the crops of one clip agree (one zoom), other clips differ (another zoom)."""
    names = [image_name("S1", "Walking", "54138969", f) for f in (1, 26, 51, 76)]
    path = write_annotations(tmp_path / "a.npz", names)
    picture = np.zeros((40, 48, 3), np.uint8)
    picture[10:30, 14:34] = 255
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / name), picture)
    frames = load_h36m_frames([path], tmp_path)
    clips = H36MClips(frames, protocol_runs(frames, ["S1"], 25, "k"), clip_length=2, crop=40)
    first = clips.sample(0, np.random.default_rng(1))["images"]
    second = clips.sample(1, np.random.default_rng(2))["images"]
    torch.testing.assert_close(first[0], first[1])
    torch.testing.assert_close(second[0], second[1])
    assert not torch.equal(first[0], second[0])


def test_bad_files_and_settings(tmp_path):
    names = [image_name("S1", "Walking", "54138969", f) for f in (1, 6)]
    path = write_annotations(tmp_path / "a.npz", names)  # no images written
    frames = load_h36m_frames([path], tmp_path)
    with pytest.raises(PosekitError, match=r"S1_Walking\.54138969_000001\.png: image missing"):
        H36MClips(frames, protocol_runs(frames, ["S1"], 5, "k"), clip_length=1, crop=40)
    with pytest.raises(PosekitError, match="no training sequence has 3 frames"):
        H36MClips(frames, protocol_runs(frames, ["S1"], 5, "k"), clip_length=3, crop=40)
    with pytest.raises(PosekitError, match="no 'S' in the archive"):
        load_h36m_frames([write_annotations(tmp_path / "b.npz", names, S=None)], tmp_path)
    with pytest.raises(PosekitError, match=r"'part': expected shape \(2, 17, 3\)"):
        load_h36m_frames([write_annotations(tmp_path / "c.npz", names, part=np.zeros((2, 16, 3)))], tmp_path)
    with pytest.raises(PosekitError, match="'scale' of imgname .*000006.png' must be positive"):
        load_h36m_frames([write_annotations(tmp_path / "d.npz", names, scale=np.array([1.0, 0.0]))], tmp_path)
    with pytest.raises(PosekitError, match="is not <subject>_<action>.<camera>_<frame>.jpg"):
        load_h36m_frames([write_annotations(tmp_path / "e.npz", ["S1/frame_1.jpg"])], tmp_path)
    with pytest.raises(PosekitError, match="is also in"):
        load_h36m_frames([path, path], tmp_path)
    with pytest.raises(PosekitError, match="no such file"):
        load_h36m_frames([tmp_path / "missing.npz"], tmp_path)
    with pytest.raises(PosekitError, match="too small for the CPM trunk"):
        ImagePoseMachine3D(width=8, crop=32)
    base = ["data.h36m.root=/data", TINY_MODEL]
    for override, message in (("data.h36m.crop=32", "crop must be >= 40"),
                              ("data.h36m.scale_range=[1.1, 0.9]", r"scale_range must be \[low, high\]"),
                              ("data.h36m.root=null", "data.h36m.root must name"),
                              ("lift.frontend=images", "frontend must be one of keypoints, cpm")):
        with pytest.raises(PosekitError, match=message):
            build_task(load_config(CONFIG, base + [override]))
    with pytest.raises(PosekitError, match="at least 2 to train the projector"):
        build_task(load_config(CONFIG, base + ["lift.stage=projector", "train.batch_size=1", "data.clip_length=1"]))


def test_model_sizes_chunks_and_single_frames():
    torch.manual_seed(0)
    paper = ImagePoseMachine3D(width=8, projector_hidden=4, projector_width=4)
    assert paper.transformer.adapter[1].in_features == 128 * 6 * 6  # 368 -> 46 -> 23 -> 12 -> 6
    model = ImagePoseMachine3D(width=8, projector_hidden=4, projector_width=4, crop=64).eval()
    assert model.transformer.adapter[1].in_features == 128  # 64 -> 8 -> 4 -> 2 -> 1
    model.set_normalization(np.full((17, 3), -1.0), np.full((17, 3), 2.0))
    crops = torch.randint(0, 256, (5, 64, 64, 3), dtype=torch.uint8)
    with torch.no_grad():
        raw, _ = model.transformer(cpm_input(crops)[None])
        whole = model.lift_crops(crops, chunk=5)
        torch.testing.assert_close(whole, raw[0] * 2.0 - 1.0)  # de-normalised
        torch.testing.assert_close(model.lift_crops(crops, chunk=2), whole)  # the state carried over chunks
        single = model.lift_crops(crops, chunk=2, single_frame=True)
        alone, _ = model.transformer(cpm_input(crops[3:4])[None])
        torch.testing.assert_close(single[3], alone[0, 0] * 2.0 - 1.0)
        p3d, corrected, projected, _ = model(cpm_input(crops)[None])
    torch.testing.assert_close(p3d[0], whole)
    assert corrected.shape == (1, 5, 17, 3) and projected.shape == (1, 5, 17, 2)


def test_mirror_and_scores_by_hand():
    left, right = SKELETON.index("left_hip"), SKELETON.index("right_hip")
    points = torch.zeros(1, 17, 2)
    points[0, left], points[0, right] = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0])
    mirrored = mirror_2d(points)
    assert mirrored[0, left].tolist() == [-3.0, 4.0] and mirrored[0, right].tolist() == [-1.0, 2.0]

    target = np.zeros((2, 17, 3))
    target[:, :, 0] = np.arange(17) / 100.0
    moved = target.copy()
    moved[:, 1, 0] += 0.034                 # one joint 34 mm off in both frames of the first sequence
    shifted = target[:1] + 0.5              # a translated pose: no error after root alignment
    records = [{"target": target, "action": "Walk", "nossc": moved},
               {"target": target[:1], "action": "Sit", "nossc": shifted}]
    metrics = score_image_records(records)
    assert metrics["mpjpe_nossc"] == pytest.approx(2 * 34 / 17 / 3)       # over the 3 frames
    assert metrics["mpjpe_actions_nossc"] == pytest.approx(34 / 17 / 2)   # Walk 2 mm, Sit 0 mm
    assert set(metrics) == {"mpjpe_nossc", "mpjpe_actions_nossc", "p_mpjpe_nossc", "p_mpjpe_actions_nossc"}


def test_train_two_steps_on_the_real_sample_through_the_cli(shared_real, tmp_path, capsys):
    root = shared_real / "h36m"
    args = [f"data.h36m.root={root}", "data.h36m.annotations=[test_h36m_body3d.npz]", "data.h36m.images=.",
            "data.h36m.train_subjects=[S1, S5]", "data.h36m.test_subjects=[S7, S8]", "data.h36m.crop=64",
            "data.clip_length=1", "train.batch_size=2", "train.epochs=2", "lift.stage=all", TINY_MODEL,
            "train.num_workers=0", "train.device=cpu", "eval.every=0", "data.val.flip=true"]
    sets = [x for a in args for x in ("--set", a)]
    code, out, err = run_cli(["train", CONFIG, "--out", str(tmp_path / "run"), *sets], capsys)
    assert code == 0, err
    assert "trained 2 epochs (2 steps)" in out
    with open(tmp_path / "run" / "train_log.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 and all(math.isfinite(float(r["loss"])) for r in rows)
    with open(tmp_path / "run" / "eval_log.csv") as handle:
        metrics = list(csv.DictReader(handle))[-1]
    for name in ("mpjpe", "p_mpjpe", "mpjpe_actions", "mpjpe_nossc", "p_mpjpe_transformer", "discarded"):
        assert math.isfinite(float(metrics[name])), name
    table = json.loads((tmp_path / "run" / "per_action.json").read_text())
    assert set(table["ssc"]["mpjpe"]) == {"Greeting", "WalkDog"}

    # The max-min statistics travel with the weights: those of the S1 and S5 frames, from the file itself.
    data = np.load(root / "test_h36m_body3d.npz")
    rows = [i for i, name in enumerate(data["imgname"]) if name.split("/")[0] in ("S1", "S5")]
    relative = data["S"][rows, :, :3] - data["S"][rows, PELVIS:PELVIS + 1, :3]
    state, _ = load_weights(tmp_path / "run" / "best.safetensors")
    np.testing.assert_allclose(state["target_min"].numpy(), relative.min(axis=0), atol=1e-6)
    span = relative.max(axis=0) - relative.min(axis=0)
    np.testing.assert_allclose(state["target_range"].numpy(), np.where(span > 0, span, 1.0), atol=1e-6)

    # Evaluating with other training subjects (other statistics) still uses the stored ones.
    other = [x for a in args + ["data.h36m.train_subjects=[S1]"] for x in ("--set", a)]
    code, out, err = run_cli(["test", CONFIG, "--checkpoint", str(tmp_path / "run" / "best.safetensors"),
                              "--out", str(tmp_path / "test"), "--json", *other], capsys)
    assert code == 0, err
    again = json.loads(out)
    assert again["mpjpe"] == pytest.approx(float(metrics["mpjpe"]), rel=1e-6)
