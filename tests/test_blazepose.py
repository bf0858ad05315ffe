import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import posekit
from posekit.detect import BlazePoseDetector, Detections
from posekit.detect.blazepose import DETECTOR_PATH, decode_detections, ssd_anchors, tile_regions
from posekit.detect.boxes import iou_matrix, xywh_to_xyxy
from posekit.errors import PosekitError
from posekit.models.blazepose import (BlazePoseLandmarker, refine_with_heatmaps,
                                      rois_from_alignment_points)
from posekit.models.tflite import TFLiteModel
from posekit.skeletons import convert_keypoints, get_skeleton

ANNOTATIONS = Path(posekit.__file__).parent / "assets" / "coco_val_sample.json"
COCO_SIGMAS = get_skeleton("coco17").sigmas


def oks(pred, gt, area):
    """COCO object keypoint similarity of pred (17, 2) against gt (17, 3) over labelled joints:
    mean of exp(-d^2 / (2 s^2 k^2)) with s^2 = area and k = 2 sigma, as pycocotools computeOks."""
    labelled = gt[:, 2] > 0
    d2 = ((pred - gt[:, :2]) ** 2).sum(axis=1)
    return float(np.exp(-d2 / (2 * COCO_SIGMAS) ** 2 / (area + np.spacing(1)) / 2)[labelled].mean())


def load(test_data, name):
    image = cv2.cvtColor(cv2.imread(str(test_data / "images" / name)), cv2.COLOR_BGR2RGB)
    data = json.loads(ANNOTATIONS.read_text())
    image_id = next(im["id"] for im in data["images"] if im["file_name"] == name)
    persons = [a for a in data["annotations"] if a["image_id"] == image_id and a["num_keypoints"] > 0]
    return image, persons


def coco_oks_matrix(keypoints, scores, persons):
    """(persons, predictions) OKS after mapping the 33 landmarks to COCO-17."""
    coco, _ = convert_keypoints(keypoints, scores, "blazepose33", "coco17")
    return np.array([[oks(c, np.array(p["keypoints"], float).reshape(17, 3), p["area"]) for c in coco]
                     for p in persons]).reshape(len(persons), len(coco))


@pytest.fixture(scope="module")
def detector():
    return BlazePoseDetector()


@pytest.fixture(scope="module")
def landmarker():
    return BlazePoseLandmarker()


# ---- pure parts -------------------------------------------------------------------------------

def test_anchor_layout_matches_mediapipe_ssd_options():
    anchors = ssd_anchors()
    assert anchors.shape == (2254, 2)                          # 28*28*2 + 14*14*2 + 7*7*6
    # stride 8: 28 x 28 cells, row-major, two anchors per cell
    np.testing.assert_allclose(anchors[0], anchors[1])
    np.testing.assert_allclose(anchors[0], [0.5 / 28, 0.5 / 28])
    np.testing.assert_allclose(anchors[2], [1.5 / 28, 0.5 / 28])
    np.testing.assert_allclose(anchors[56], [0.5 / 28, 1.5 / 28])
    np.testing.assert_allclose(anchors[1567], [27.5 / 28, 27.5 / 28])
    # stride 16: 14 x 14 cells, two anchors per cell
    np.testing.assert_allclose(anchors[1568], [0.5 / 14, 0.5 / 14])
    np.testing.assert_allclose(anchors[1959], [13.5 / 14, 13.5 / 14])
    # three stride-32 layers share one 7 x 7 map: six anchors per cell
    np.testing.assert_allclose(anchors[1960:1966], np.tile([0.5 / 7, 0.5 / 7], (6, 1)))
    np.testing.assert_allclose(anchors[1966], [1.5 / 7, 0.5 / 7])
    np.testing.assert_allclose(anchors[-1], [6.5 / 7, 6.5 / 7])


def test_decode_by_hand():
    anchors = ssd_anchors()
    regressors = np.zeros((2254, 12))
    logits = np.full(2254, -10.0)
    regressors[1568] = [2, -3, 40, 20, 1, 1, 2, 2, 3, 3, 4, 4]   # anchor centre (8, 8) px
    logits[1568] = 0.0                                          # score 0.5: kept at threshold 0.5
    logits[7] = 1e6                                             # clipped to 100: score 1
    boxes, scores, points = decode_detections(regressors, logits, anchors, 0.5)
    assert scores.tolist() == pytest.approx([1.0, 0.5])
    np.testing.assert_allclose(boxes[1], [10 - 20, 5 - 10, 10 + 20, 5 + 10])
    np.testing.assert_allclose(points[1], [[9, 9], [10, 10], [11, 11], [12, 12]])
    centre7 = anchors[7] * 224
    np.testing.assert_allclose(points[0], np.tile(centre7, (4, 1)))


def test_tile_regions():
    regions = tile_regions(640, 480)
    assert len(regions) <= 10
    np.testing.assert_allclose(regions[0], [0, -80, 640])       # whole image, letterboxed
    tiles = regions[1:]
    side = tiles[0, 2]
    assert np.allclose(tiles[:, 2], side) and side == pytest.approx(0.7 * 480)
    # The tiles stay inside the image and every pixel lies in one.
    assert tiles[:, :2].min() >= 0 and np.all(tiles[:, :2] + side <= np.array([640, 480]) + 1e-9)
    ys, xs = np.mgrid[0:480:7, 0:640:7] + 0.5
    inside = ((xs[..., None] >= tiles[:, 0]) & (xs[..., None] <= tiles[:, 0] + side)
              & (ys[..., None] >= tiles[:, 1]) & (ys[..., None] <= tiles[:, 1] + side))
    assert inside.any(axis=-1).all()
    # Neighbours overlap by at least a quarter of the side.
    xs_unique = np.unique(tiles[:, 0])
    assert np.all(np.diff(xs_unique) <= 0.75 * side + 1e-9)
    assert len(tile_regions(640, 480, "none")) == 1
    assert len(tile_regions(100, 100)) == 1                     # tiles would be too small
    assert tile_regions(640, 480, (0.5,))[1, 2] == 240
    for bad in ["many", (1.5,), "x"]:
        with pytest.raises(PosekitError, match="tile"):
            tile_regions(640, 480, bad)
    with pytest.raises(PosekitError, match="overlap"):
        tile_regions(640, 480, "auto", overlap=1.0)


def test_rois_from_alignment_points_by_hand():
    hips = np.array([[100.0, 200.0]] * 4)
    scale_points = np.array([[100.0, 100.0],    # straight up: upright
                             [200.0, 200.0],    # to the right: window turned +90 degrees
                             [0.0, 200.0],      # to the left: -90 degrees
                             [100.0, 300.0]])   # down: upside down, wrapped to -180 degrees
    centres, sizes, rotations = rois_from_alignment_points(hips, scale_points)
    np.testing.assert_allclose(centres, hips)
    np.testing.assert_allclose(sizes, 2 * 100 * 1.25)
    np.testing.assert_allclose(rotations, [0, np.pi / 2, -np.pi / 2, -np.pi], atol=1e-12)


def test_heatmap_refinement_by_hand():
    heatmaps = np.full((64, 64, 3), -20.0)
    heatmaps[30, 20, 0] = heatmaps[30, 22, 0] = 20.0   # two confident cells, row 30
    heatmaps[10, 10, 1] = 0.0                          # sigmoid 0.5 at most: refined
    heatmaps[10, 11, 1] = -0.1
    points = np.array([[82.0, 121.0],                  # in cell (20, 30)
                       [42.0, 41.0],                   # in cell (10, 10)
                       [300.0, 10.0]])                 # outside the heatmap: unchanged
    refined = refine_with_heatmaps(points, heatmaps)
    np.testing.assert_allclose(refined[0], [21 * 4, 30 * 4], atol=1e-6)
    s0, s1 = 0.5, 1 / (1 + np.exp(0.1))
    np.testing.assert_allclose(refined[1], [(10 * s0 + 11 * s1) / (s0 + s1) * 4, 40], atol=1e-6)
    np.testing.assert_allclose(refined[2], points[2])
    heatmaps[10, 10, 1] = -0.1                         # below the 0.5 confidence: unchanged
    np.testing.assert_allclose(refine_with_heatmaps(points, heatmaps)[1], points[1])


def test_roi_from_boxes_is_an_upright_enlarged_square(landmarker):
    centres, sizes, rotations = landmarker.roi_from_boxes(np.array([[10.0, 20.0, 50.0, 120.0]]))
    np.testing.assert_allclose(centres, [[30, 70]])
    np.testing.assert_allclose(sizes, [100 * landmarker.box_scale])
    np.testing.assert_allclose(rotations, [0])
    from_detections = landmarker.roi_from_detections(Detections.from_boxes([[10, 20, 50, 120]]))
    np.testing.assert_allclose(from_detections[1], sizes)
    with pytest.raises(PosekitError, match="auxiliary"):
        landmarker.roi_from_landmarks(np.zeros((2, 33, 2)))


def test_tflite_runner_errors(tmp_path):
    with pytest.raises(PosekitError, match="no such model file"):
        TFLiteModel(tmp_path / "missing.tflite")
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(PosekitError, match="corrupt.tflite: not a readable TFLite model"):
        TFLiteModel(corrupt)
    with pytest.raises(PosekitError, match="no output tensor"):
        TFLiteModel(DETECTOR_PATH, {"scores": "Identity_9"})
    model = TFLiteModel(DETECTOR_PATH)
    with pytest.raises(PosekitError, match="input must have shape"):
        model(np.zeros((1, 128, 128, 3)))


# ---- real images --------------------------------------------------------------------------------

def test_detector_finds_the_skier(detector, test_data):
    image, persons = load(test_data, "000000000785.jpg")
    found = detector(image)
    assert len(found) == 1 and found.scores[0] >= 0.5
    assert iou_matrix(xywh_to_xyxy(np.array([persons[0]["bbox"]])), found.boxes)[0, 0] >= 0.5
    x, y, w, h = persons[0]["bbox"]
    hip = found.keypoints[0, 0]
    assert x < hip[0] < x + w and y < hip[1] < y + h


def test_nothing_in_blank_noise_or_tiny_images(detector, landmarker):
    rng = np.random.default_rng(1)
    for image in (np.zeros((480, 640, 3), np.uint8), rng.integers(0, 256, (480, 640, 3), dtype=np.uint8),
                  rng.integers(0, 256, (10, 10, 3), dtype=np.uint8)):
        found = detector(image)
        assert len(found) == 0 and found.keypoints.shape == (0, 4, 2)
        keypoints, scores, person_scores = landmarker(image, found)
        assert keypoints.shape == (0, 33, 2) and scores.shape == (0, 33) and person_scores.shape == (0,)


def test_gray_and_rgba_are_converted_float_is_refused(detector, landmarker, test_data):
    image, _ = load(test_data, "000000000785.jpg")
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    from_gray, from_stacked = detector(gray), detector(np.dstack([gray] * 3))
    np.testing.assert_array_equal(from_gray.keypoints, from_stacked.keypoints)
    assert len(from_gray) == 1
    rgba = np.dstack([image, np.full(image.shape[:2], 255, np.uint8)])
    np.testing.assert_array_equal(detector(rgba).keypoints, detector(image).keypoints)
    with pytest.raises(PosekitError, match="uint8"):
        detector(image.astype(np.float32))
    with pytest.raises(PosekitError, match="uint8"):
        landmarker(image.astype(np.float32), from_gray)


def test_landmarks_with_ground_truth_boxes(landmarker, test_data):
    # Measured: 0.88 for the skier; 0.79, 0.83, 0.71, 0.88 for the baseball players.
    image, persons = load(test_data, "000000000785.jpg")
    keypoints, scores, person_scores = landmarker(image, Detections.from_boxes(
        [p["bbox"] for p in persons], fmt="xywh"))
    assert coco_oks_matrix(keypoints, scores, persons)[0, 0] >= 0.8
    assert person_scores[0] >= 0.5 and np.all((scores >= 0) & (scores <= 1))
    image, persons = load(test_data, "000000196141.jpg")
    keypoints, scores, _ = landmarker(image, Detections.from_boxes([p["bbox"] for p in persons], fmt="xywh"))
    per_person = coco_oks_matrix(keypoints, scores, persons).diagonal()
    assert per_person.mean() >= 0.7 and per_person.min() >= 0.55


def test_rotated_image_uses_a_rotated_roi(detector, landmarker, test_data):
    image, persons = load(test_data, "000000000785.jpg")
    gt = np.array(persons[0]["keypoints"], float).reshape(17, 3)
    turned = np.ascontiguousarray(np.rot90(image))            # 90 degrees counter-clockwise
    gt_turned = gt.copy()
    gt_turned[:, :2] = np.column_stack([gt[:, 1], image.shape[1] - 1 - gt[:, 0]])
    found = detector(turned)
    assert len(found) == 1
    result = landmarker.estimate(turned, landmarker.roi_from_detections(found))
    assert abs(abs(result.rois[2][0]) - np.pi / 2) < np.radians(30)   # the body lies on its side
    gt_person = dict(persons[0], keypoints=gt_turned.ravel().tolist())
    assert coco_oks_matrix(result.keypoints, result.scores, [gt_person])[0, 0] >= 0.8


def test_multi_scale_finds_more_people(detector, landmarker, test_data):
    image, persons = load(test_data, "000000196141.jpg")   # 4 labelled players, 3 of them small
    counts = {}
    for tiles in ("none", "auto"):
        single = BlazePoseDetector(tiles=tiles) if tiles == "none" else detector
        keypoints, scores, _ = landmarker(image, single(image))
        counts[tiles] = int((coco_oks_matrix(keypoints, scores, persons).max(axis=1, initial=0) >= 0.5).sum())
    assert counts["auto"] >= 3 and counts["auto"] > counts["none"]


def test_tracking_roi_follows_the_person(landmarker, test_data):
    image, persons = load(test_data, "000000000785.jpg")
    box = xywh_to_xyxy(np.array([persons[0]["bbox"]]))
    first = landmarker.estimate(image, landmarker.roi_from_boxes(box))
    centres, sizes, rotations = landmarker.roi_from_landmarks(first.auxiliary)
    skeleton = landmarker.skeleton
    mid_hip = first.keypoints[0, skeleton.indices(["left_hip", "right_hip"])].mean(axis=0)
    assert np.linalg.norm(centres[0] - mid_hip) < 0.1 * sizes[0]
    # The square around the ROI centre holds every landmark.
    assert np.all(np.abs(first.keypoints[0] - centres[0]) < sizes[0] / 2 * np.sqrt(2))
    second = landmarker.estimate(image, (centres, sizes, rotations))
    assert coco_oks_matrix(second.keypoints, second.scores, persons)[0, 0] >= 0.8
    assert second.world.shape == (1, 33, 3) and np.all(np.isfinite(second.world))
