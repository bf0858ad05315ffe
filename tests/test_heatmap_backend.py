"""Trained heatmap models (HRNet, DITN) behind ``posekit infer`` and ``posekit video``: official
weights give the keypoints a hand-written top-down inference gives, ONNX Runtime agrees with
PyTorch, checkpoints name their model, and wrong files fail with one line."""
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

import posekit
from posekit.engine.checkpoint import save_checkpoint
from posekit.errors import PosekitError
from posekit.models.hrnet import PoseHRNet
from posekit.models.registry import build_model
from posekit.pipeline import PoseEstimator, PoseResult
from posekit.skeletons import get_skeleton

from helpers import run_cli

ANNOTATIONS = Path(posekit.__file__).parent / "assets" / "coco_val_sample.json"
IMAGE = "000000000785.jpg"
MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def calibrate(model, seed=0):
    """Batch-norm statistics of one random batch (the initial statistics shrink activations to
    denormal numbers, which CPUs compute 10x slower) and, for HRNet, a larger output layer:
    heatmaps of order one with distinct peaks, as a trained model's."""
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(torch.randn(2, 3, 128, 96))
        if isinstance(model, PoseHRNet):
            model.final_layer.weight.mul_(300)
    return model.eval()


def one_line_error(code, err, *fragments):
    assert code == 2 and "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("posekit: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("heatmap")


@pytest.fixture(scope="module")
def gt_785(work):
    """The COCO sample's annotations of one image (one person)."""
    data = json.loads(ANNOTATIONS.read_text())
    data["images"] = [im for im in data["images"] if im["file_name"] == IMAGE]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] == data["images"][0]["id"]]
    path = work / "gt_785.json"
    path.write_text(json.dumps(data))
    return path, data["annotations"][0]["bbox"]


@pytest.fixture(scope="module")
def official_w32(work):
    """Random HRNet-W32 weights saved like the reference release: a plain state dict with the
    reference key names (pose_hrnet_w32_256x192.pth)."""
    model = calibrate(PoseHRNet("w32", 17))
    path = work / "pose_hrnet_w32_256x192.pth"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def w32_reference(official_w32):
    """A freshly built HRNet-W32 with the released file loaded strictly."""
    model = PoseHRNet("w32", 17)
    model.load_state_dict(torch.load(official_w32, weights_only=True), strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def ditn_training_checkpoint(work):
    """A posekit training checkpoint (last.pt) of DITN-W18-small trained on 128 x 96 COCO crops."""
    model = calibrate(build_model({"name": "ditn-w18-small", "skeleton": "coco17"}))
    config = {"task": "topdown2d", "model": {"name": "ditn-w18-small", "options": {}},
              "data": {"format": "coco", "skeleton": "coco17"},
              "codec": {"input_size": [96, 128], "heatmap_size": [24, 32], "sigma": 2.0}}
    path = work / "last.pt"
    save_checkpoint({"model": model.state_dict(), "optimizer": {}, "epoch": 3, "step": 30, "config": config}, path)
    return path, model


# ---- the reference, written out by hand -----------------------------------------------------------

def reference_crop(image, bbox, width=192, height=256, padding=1.25):
    """HRNet's test crop of a COCO box: centred on the box, aspect fixed to width:height, 1.25x larger;
    pixel centres at integers, so the window centre lands on ((width - 1) / 2, (height - 1) / 2)."""
    x, y, w, h = bbox
    cx, cy = x + w / 2, y + h / 2
    if w > h * width / height:
        h = w * height / width
    else:
        w = h * width / height
    s = width / (w * padding)
    matrix = np.array([[s, 0, (width - 1) / 2 - s * cx], [0, s, (height - 1) / 2 - s * cy]])
    crop = cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return crop, matrix


def reference_heatmaps(model, crop) -> np.ndarray:
    x = ((crop / 255.0 - MEAN) / STD).transpose(2, 0, 1)[None].astype(np.float32)
    with torch.no_grad():
        return model(torch.from_numpy(x))["heatmaps"][0].numpy().astype(np.float64)


def argmax_quarter_offset(heatmaps) -> np.ndarray:
    """HRNet's get_max_preds + the 0.25 px step towards the higher neighbour, in heatmap pixels."""
    points = []
    for hm in heatmaps:
        y, x = np.unravel_index(np.argmax(hm), hm.shape)
        px, py = float(x), float(y)
        if 0 < x < hm.shape[1] - 1:
            px += 0.25 * np.sign(hm[y, x + 1] - hm[y, x - 1])
        if 0 < y < hm.shape[0] - 1:
            py += 0.25 * np.sign(hm[y + 1, x] - hm[y - 1, x])
        points.append((px, py))
    return np.array(points)


def mirrored_back(heatmaps, joints) -> np.ndarray:
    """Heatmaps of the mirrored crop, mirrored back: columns reversed, left/right joints swapped
    (by name), shifted one column right (HRNet's SHIFT_HEATMAP, column 0 kept)."""
    swap = [joints.index(n.replace("left_", "@").replace("right_", "left_").replace("@", "right_")) for n in joints]
    out = heatmaps[swap, :, ::-1].copy()
    out[:, :, 1:] = out[:, :, :-1].copy()
    return out


def to_image(points_crop, matrix) -> np.ndarray:
    return (points_crop - matrix[:, 2]) / np.diag(matrix)


# ---- (a) official-layout weights end to end ---------------------------------------------------------

@pytest.mark.parametrize("flip", [False, True])
def test_official_hrnet_w32_weights_match_a_hand_written_inference(flip, official_w32, w32_reference, gt_785,
                                                                    test_data, work, capsys):
    gt_path, bbox = gt_785
    out = work / f"w32_flip{flip}.json"
    argv = ["infer", "--coco-ann", str(gt_path), "--img-dir", str(test_data / "images"), "--boxes", "gt",
            "--out", str(out), "--model", "hrnet-w32", "--checkpoint", str(official_w32), "--min-score", "0"]
    code, stdout, err = run_cli(argv + ([] if flip else ["--no-flip"]), capsys)
    assert code == 0, err
    results = json.loads(out.read_text())
    assert len(results) == 1
    got = np.array(results[0]["keypoints"]).reshape(17, 3)

    model = w32_reference
    image = cv2.cvtColor(cv2.imread(str(test_data / "images" / IMAGE)), cv2.COLOR_BGR2RGB)
    crop, matrix = reference_crop(image, bbox)
    heatmaps = reference_heatmaps(model, crop)
    if flip:
        joints = list(get_skeleton("coco17").joints)
        heatmaps = (heatmaps + mirrored_back(reference_heatmaps(model, crop[:, ::-1]), joints)) / 2
    expected = to_image(argmax_quarter_offset(heatmaps) * 4.0, matrix)     # 48 x 64 maps of a 192 x 256 crop
    assert np.abs(got[:, :2] - expected).max() < 0.5
    peaks = heatmaps.reshape(17, -1).max(axis=1)
    np.testing.assert_allclose(got[:, 2], peaks, rtol=0, atol=1e-5 * np.abs(heatmaps).max())  # float32 sums
    confident = peaks > 0.2
    assert results[0]["score"] == pytest.approx(peaks[confident].mean(), rel=1e-4)  # box score 1 x MMPose's rescoring


def test_checkpoint_resolution_from_the_weights_layout(official_w32, work):
    """A plain state dict and a family name: the architecture and keypoint set come from the tensors."""
    estimator = PoseEstimator(model="hrnet", checkpoint=official_w32, detector=None)
    assert estimator.heatmap_model.name == "hrnet-w32" and estimator.heatmap_model.input_size == (256, 192)
    assert estimator.skeleton.name == "coco17" and estimator.model_name == "hrnet-w32"
    mpii = calibrate(build_model({"name": "hrnet-w18-small", "skeleton": "mpii16"}))
    torch.save({"state_dict": {f"module.{k}": v for k, v in mpii.state_dict().items()}}, work / "mpii.pth")
    estimator = PoseEstimator(model="hrnet", checkpoint=work / "mpii.pth", detector=None)
    assert estimator.heatmap_model.name == "hrnet-w18-small" and estimator.skeleton.name == "mpii16"
    assert estimator.heatmap_model.input_size == (256, 256)         # the MPII paper setting
    estimator = PoseEstimator(model="hrnet", checkpoint=work / "mpii.pth", detector=None, input_size="128x96",
                              dark=True)
    assert estimator.heatmap_model.input_size == (128, 96) and estimator.codec.dark
    # MMPose 0.x names: the backbone under backbone., the 1x1 layer under keypoint_head.
    mmpose = {(f"keypoint_head.{k}" if k.startswith("final_layer.") else f"backbone.{k}"): v
              for k, v in mpii.state_dict().items()}
    torch.save({"meta": {"epoch": 210}, "state_dict": mmpose}, work / "mmpose.pth")
    estimator = PoseEstimator(model="hrnet-w18-small", checkpoint=work / "mmpose.pth", detector=None)
    assert estimator.heatmap_model.name == "hrnet-w18-small" and estimator.skeleton.name == "mpii16"


# ---- (b, c) training checkpoints and ONNX Runtime ------------------------------------------------------

def test_training_checkpoint_names_its_model_and_onnx_runtime_agrees(ditn_training_checkpoint, test_data, work,
                                                                      capsys):
    checkpoint, _ = ditn_training_checkpoint
    pytorch = PoseEstimator(checkpoint=checkpoint, min_person_score=0, duplicate_oks=1.0)
    assert pytorch.heatmap_model.name == "ditn-w18-small" and pytorch.heatmap_model.backend == "pytorch"
    assert pytorch.heatmap_model.input_size == (128, 96) and pytorch.skeleton.name == "coco17"

    onnx_path = work / "ditn.onnx"
    code, stdout, err = run_cli(["export", "onnx", "--checkpoint", str(checkpoint), "--out", str(onnx_path)], capsys)
    assert code == 0, err
    onnx = PoseEstimator(checkpoint=onnx_path, detector=None, min_person_score=0, duplicate_oks=1.0)
    assert onnx.heatmap_model.backend == "onnxruntime" and onnx.heatmap_model.name == "ditn-w18-small"
    assert onnx.heatmap_model.input_size == (128, 96) and onnx.skeleton.name == "coco17"

    # Four persons in one batch; box scores tell them apart (persons are sorted by score).
    photo = test_data / "images" / "000000196141.jpg"
    boxes = np.array([[250, 70, 420, 380], [550, 95, 610, 215], [450, 200, 635, 420], [30, 60, 70, 170]], float)
    scores = [0.9, 0.8, 0.7, 0.6]
    results = [estimator(photo, boxes=boxes, box_scores=scores) for estimator in (pytorch, onnx)]
    for result in results:
        assert sorted(p.box_score for p in result.persons) == sorted(scores)
    for person in results[1].persons:
        twin = next(p for p in results[0].persons if p.box_score == person.box_score)
        assert np.abs(person.keypoints - twin.keypoints).max() < 0.5
        np.testing.assert_allclose(person.keypoint_scores, twin.keypoint_scores, rtol=1e-3)

    # The command line with the detector, no --model: the file's metadata says what it holds.
    out = work / "infer_onnx"
    code, stdout, err = run_cli(["infer", str(test_data / "images" / IMAGE), "--out", str(out), "--checkpoint",
                                 str(onnx_path), "--min-score", "0", "--no-overlay"], capsys)
    assert code == 0, err
    written = json.loads((out / "000000000785.json").read_text())
    expected = pytorch(test_data / "images" / IMAGE)
    assert written["skeleton"]["name"] == "coco17" and len(written["persons"]) == len(expected) == 1
    got = np.array(written["persons"][0]["keypoints"], dtype=float)[:, :2]
    assert np.abs(got - expected.persons[0].keypoints).max() < 0.5


# ---- one reader of detection files --------------------------------------------------------------------

def test_one_detection_reader_for_training_and_inference(tmp_path, capsys):
    from posekit.data.topdown import read_detections
    from posekit.engine import topdown_task

    assert topdown_task.read_detections is read_detections
    path = tmp_path / "dets.json"
    path.write_text(json.dumps([
        {"image_id": 1, "bbox": [10, 20, 30, 40], "score": 0.9},                     # no category: a person
        {"image_id": 2, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5},
        {"image_id": 2, "category_id": 18, "bbox": [5, 5, 50, 50], "score": 0.99},  # a dog: skipped
        {"image_id": 2, "category_id": 1, "bbox": [1, 2, 0, 4], "score": 0.9},      # no area: skipped
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 9, 9], "score": 0.1}]))    # below the threshold
    ids, boxes, scores = read_detections(path, {1: None, 2: None}, score_threshold=0.2)
    np.testing.assert_array_equal(ids, [1, 2])
    np.testing.assert_array_equal(boxes, [[10, 20, 30, 40], [1, 2, 3, 4]])
    np.testing.assert_array_equal(scores, [0.9, 0.5])
    for entries, message in (
            ([{"image_id": 1, "category_id": 3, "bbox": [1, 2, 3, 4], "score": 0.9}], "no detection of category 1"),
            ([{"image_id": 1, "category_id": "1", "bbox": [1, 2, 3, 4], "score": 0.9}], "'category_id' must be"),
            ([{"image_id": 1, "bbox": [1, 2, -3, 4], "score": 0.9}], "detection 0: 'bbox'"),
            ([{"image_id": 1, "bbox": [1, 2, 3, 4], "score": True}], "detection 0: 'score'"),
            ([{"image_id": 1.0, "bbox": [1, 2, 3, 4], "score": 0.9}], "'image_id' must be an integer"),
            ([{"image_id": 9, "bbox": [1, 2, 3, 4], "score": 0.9}], "image_id 9 is not an image"),
            ([{"bbox": [1, 2, 3, 4], "score": 0.9}], "detection 0: missing 'image_id'"),
            ({"image_id": 1}, "expected a JSON list")):
        path.write_text(json.dumps(entries))
        with pytest.raises(PosekitError, match=re.escape(message)):
            read_detections(path, {1: None})
    path.write_text("[{")
    with pytest.raises(PosekitError, match="not a valid JSON file"):
        read_detections(path)


# ---- (d) errors ------------------------------------------------------------------------------------------

def test_wrong_files_and_names_are_one_line_errors(official_w32, ditn_training_checkpoint, test_data, work, capsys):
    checkpoint, _ = ditn_training_checkpoint
    image = str(test_data / "images" / IMAGE)
    bare = calibrate(PoseHRNet("w18-small", 17))          # no posekit config: an ONNX file without metadata
    from posekit.export.onnx import export_onnx

    export_onnx(bare, work / "bare.onnx", (128, 96), verify=False)
    cases = [
        (["--model", "hrnet-w48", "--checkpoint", official_w32], ["do not fit hrnet-w48", "transition1.0.0.weight"]),
        (["--model", "ditn-w32", "--checkpoint", official_w32], ["do not fit ditn-w32", "missing weights",
                                                                "unexpected weights (conv1.weight"]),
        (["--model", "hrnet", "--checkpoint", checkpoint], ["names model 'ditn-w18-small', not 'hrnet'"]),
        (["--model", "openpose", "--checkpoint", official_w32], ["unknown pose model 'openpose'"]),
        (["--checkpoint", official_w32], ["records no model", "--model"]),
        (["--checkpoint", work / "bare.onnx"], ["has no posekit metadata", "--model"]),
        (["--checkpoint", work / "missing.pth"], ["missing.pth: no such checkpoint file"]),
        (["--checkpoint", work / "missing.onnx"], ["missing.onnx: no such ONNX file"]),
        (["--model", "hrnet-w32"], ["needs trained weights"]),
        (["--model", "blazepose", "--checkpoint", official_w32], ["BlazePose weights ship with posekit"]),
        (["--no-flip"], ["go with --checkpoint"]),
        (["--checkpoint", checkpoint, "--skeleton", "mpii16"], ["no mapping from 'coco17' to 'mpii16'"]),
        (["--checkpoint", checkpoint, "--input", "100x75"], ["multiples of 32"]),
        (["--checkpoint", work / "bare.onnx", "--model", "hrnet", "--input", "256x192"], ["exported for 128x96"]),
    ]
    for args, fragments in cases:
        code, _, err = run_cli(["infer", image, "--out", str(work / "err")] + [str(a) for a in args], capsys)
        one_line_error(code, err, *fragments)
    # The same bare file with a model name runs: its 17 channels make it a COCO model.
    estimator = PoseEstimator(model="hrnet", checkpoint=work / "bare.onnx", detector=None)
    assert estimator.skeleton.name == "coco17" and estimator.heatmap_model.input_size == (128, 96)


def test_estimator_options_are_checked(official_w32):
    with pytest.raises(PosekitError, match="input size"):
        PoseEstimator(model="hrnet-w32", checkpoint=official_w32, input_size=(256, "192"))
    with pytest.raises(PosekitError, match="min_person_score"):
        PoseEstimator(model="hrnet-w32", checkpoint=official_w32, min_person_score=1.5)


# ---- (e) video -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def flat_model(work):
    """HRNet-W18-small whose heatmaps are the constant 0.8: every joint decodes to the crop's top-left
    pixel (the first maximum, no offset at the border) with score 0.8, so where a crop was cut can be
    read off its keypoints."""
    model = calibrate(build_model({"name": "hrnet-w18-small", "skeleton": "coco17"}))
    with torch.no_grad():
        model.final_layer.weight.zero_()
        model.final_layer.bias.fill_(0.8)
    path = work / "flat.pth"
    torch.save(model.state_dict(), path)
    return path


def test_from_rois_crops_the_window_of_the_previous_box(flat_model, test_data):
    estimator = PoseEstimator(model="hrnet-w18-small", checkpoint=flat_model, detector=None)
    image = cv2.cvtColor(cv2.imread(str(test_data / "images" / IMAGE)), cv2.COLOR_BGR2RGB)
    box = np.array([300.0, 40.0, 480.0, 400.0])                          # 180 x 360: height rules
    first = estimator(image, boxes=box[None], box_scores=[0.9])
    person = first.persons[0]
    # Window: 0.75 * 360 = 270 wide, 360 high, x 1.25 -> 337.5 x 450 around (390, 220), cut to 192 x 256.
    corner = np.array([390 - 337.5 / 2 + 337.5 / 192 / 2, 220 - 450 / 2 + 450 / 256 / 2])
    np.testing.assert_allclose(person.keypoints, np.tile(corner, (17, 1)), atol=1e-9)
    np.testing.assert_allclose(person.keypoint_scores, 0.8, rtol=1e-6)
    assert person.score == pytest.approx(0.9 * 0.8) and person.box_score == 0.9
    np.testing.assert_allclose(person.tracking_points.ravel(), box)      # no keypoint box: the given box
    # A window 2.9x the crop is cut from the half-size copy of the image: the same corner, in image pixels.
    large = estimator(image, boxes=[[100.0, -100.0, 400.0, 500.0]]).persons[0]   # 450 x 600 -> 562.5 x 750
    np.testing.assert_allclose(large.keypoints[0], [250 - 562.5 / 2 + 562.5 / 192 / 2, 200 - 750 / 2 + 750 / 256 / 2],
                               atol=1e-9)
    person.track_id = 4
    moved = PoseResult([person], first.skeleton, first.image_size)
    moved.persons[0].tracking_points = np.array([[100.0, 50.0], [190.0, 230.0]])   # 90 x 180
    second = estimator.from_rois(image, moved, source="frame 2")
    corner = np.array([145 - 168.75 / 2 + 168.75 / 192 / 2, 140 - 225 / 2 + 225 / 256 / 2])
    assert second.source == "frame 2" and second.persons[0].track_id == 4
    np.testing.assert_allclose(second.persons[0].keypoints, np.tile(corner, (17, 1)), atol=1e-9)
    strict = PoseEstimator(model="hrnet-w18-small", checkpoint=flat_model, detector=None, min_person_score=0.8)
    assert len(strict.from_rois(image, moved)) == 0                     # 0.9 x 0.8 < 0.8: lost
    moved.persons[0].tracking_points = np.array([[100.0, 50.0], [90.0, 230.0]])
    with pytest.raises(PosekitError, match="not box corners"):
        estimator.from_rois(image, moved)


def test_video_with_a_heatmap_model_keeps_track_ids(flat_model, test_data, tmp_path, capsys):
    image = cv2.imread(str(test_data / "images" / IMAGE))
    clip = tmp_path / "still.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (image.shape[1], image.shape[0]))
    for _ in range(6):
        writer.write(image)
    writer.release()
    code, stdout, err = run_cli(["video", str(clip), "--out", str(tmp_path / "out"), "--every", "3", "--no-smooth",
                                 "--model", "hrnet-w18-small", "--checkpoint", str(flat_model)], capsys)
    assert code == 0, err
    assert re.search(r"still\.mp4: 6 frames \(0 skipped\), 6 persons, 1 tracks", stdout), stdout
    doc = json.loads((tmp_path / "out" / "still.json").read_text())
    assert doc["skeleton"]["name"] == "coco17" and doc["summary"]["detector_runs"] == 2
    assert [[p["track_id"] for p in f["persons"]] for f in doc["frames"]] == [[0]] * 6
    boxes = np.array([f["persons"][0]["box"] for f in doc["frames"]])
    for detected in (0, 3):                  # tracked frames crop the detection frame's box again
        np.testing.assert_allclose(boxes[detected + 1:detected + 3], boxes[[detected, detected]], atol=0.01)
