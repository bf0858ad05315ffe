"""Top-down data: crops, augmentation, targets, flip test, and COCO/MPII scoring of the outputs."""
import contextlib
import copy
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from scipy.special import ndtr

from posekit.codecs.heatmap import HeatmapCodec
from posekit.data.coco import read_coco_keypoints
from posekit.data.topdown import (Augmentation, TopDownDataset, box_windows, fix_aspect, half_body_window,
                                  predict_keypoints, read_detections, rescore, sample_augmentation,
                                  training_persons, window_matrix)
from posekit.data.transforms import apply_affine, invert_affine
from posekit.detect.boxes import oks_nms
from posekit.engine.tasks import build_task
from posekit.errors import PosekitError
from posekit.skeletons import get_skeleton

COCO = get_skeleton("coco17")
INPUT, HEATMAP = (96, 128), (24, 32)

# A standing person, 160 px tall, facing the camera (its left on the image's right).
TEMPLATE = {"nose": (0, 12), "left_eye": (9, 0), "right_eye": (-9, 0), "left_ear": (22, 7),
            "right_ear": (-22, 7), "left_shoulder": (24, 34), "right_shoulder": (-24, 34),
            "left_elbow": (34, 64), "right_elbow": (-34, 64), "left_wrist": (40, 92),
            "right_wrist": (-40, 92), "left_hip": (14, 92), "right_hip": (-14, 92),
            "left_knee": (16, 126), "right_knee": (-16, 126), "left_ankle": (18, 158),
            "right_ankle": (-18, 158)}
RED, BLUE, GREEN = (255, 0, 0), (0, 0, 255), (0, 255, 0)


def joint_color(name):
    return RED if name.startswith("left") else BLUE if name.startswith("right") else GREEN


def person(dx, dy):
    return np.array([TEMPLATE[n] for n in COCO.joints], dtype=float) + (dx, dy)


def dots_image(people, size=(320, 240)):
    """RGB image (as written to disk: BGR file) with a coloured dot on every keypoint."""
    img = np.full((size[1], size[0], 3), 40, np.uint8)
    for kp in people:
        for name, (x, y) in zip(COCO.joints, kp):
            cv2.circle(img, (int(round(x * 16)), int(round(y * 16))), 4 * 16, joint_color(name), -1,
                       cv2.LINE_AA, shift=4)
    return img


def write_coco(tmp_path, people_per_image, size=(320, 240)):
    """A COCO keypoint file and its dot images; returns the annotation path."""
    images, annotations = [], []
    (tmp_path / "images").mkdir(exist_ok=True)
    for image_id, people in enumerate(people_per_image, start=1):
        name = f"{image_id:04d}.png"
        cv2.imwrite(str(tmp_path / "images" / name), cv2.cvtColor(dots_image(people, size), cv2.COLOR_RGB2BGR))
        images.append({"id": image_id, "file_name": name, "width": size[0], "height": size[1]})
        for kp in people:
            low, high = kp.min(axis=0) - 6, kp.max(axis=0) + 6
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                "keypoints": np.column_stack([kp, np.full(17, 2)]).ravel().tolist(), "num_keypoints": 17,
                "bbox": [*low.tolist(), *(high - low).tolist()], "area": float(np.prod(high - low) * 0.6)})
    path = tmp_path / "people.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": [
        {"id": 1, "name": "person", "keypoints": list(COCO.joints), "skeleton": []}]}))
    return path


def blob_centroid(crop, color, near):
    """Centroid of the dot of ``color`` nearest to ``near`` in an RGB crop, or None."""
    target = np.array(color, float)
    mask = (np.abs(crop.astype(float) - target).max(axis=2) < 90).astype(np.uint8)
    count, labels = cv2.connectedComponents(mask)
    best, best_d = None, np.inf
    for label in range(1, count):
        ys, xs = np.nonzero(labels == label)
        c = np.array([xs.mean(), ys.mean()])
        d = np.linalg.norm(c - near)
        if d < best_d:
            best, best_d = c, d
    return best


def to_rgb8(image_tensor):
    from posekit.data.topdown import IMAGENET_MEAN, IMAGENET_STD

    arr = image_tensor.numpy().transpose(1, 2, 0) * IMAGENET_STD + IMAGENET_MEAN
    return np.clip(np.round(arr * 255), 0, 255).astype(np.uint8)


# -- geometry --------------------------------------------------------------------------------------
def test_window_matrix_maps_crop_points_back_to_the_image():
    rng = np.random.default_rng(0)
    for _ in range(200):
        center = rng.uniform(-50, 700, 2)
        size = rng.uniform(10, 500, 2)
        m = window_matrix(center, size, rng.uniform(-90, 90), INPUT, flip=bool(rng.random() < 0.5))
        points = rng.uniform(-100, 800, (17, 2))
        back = apply_affine(apply_affine(points, m), invert_affine(m))
        np.testing.assert_allclose(back, points, atol=1e-6)
        # the window centre lands on the crop centre, whatever the rotation and flip
        np.testing.assert_allclose(apply_affine(center, m), [(INPUT[0] - 1) / 2, (INPUT[1] - 1) / 2], atol=1e-9)


def test_box_windows_fix_the_aspect_ratio_then_pad():
    centers, sizes = box_windows([[10, 20, 30, 80], [0, 0, 120, 40]], aspect=0.75, padding=1.25)
    np.testing.assert_allclose(centers, [[25, 60], [60, 20]])
    np.testing.assert_allclose(sizes, [[60 * 1.25, 80 * 1.25], [120 * 1.25, 160 * 1.25]])
    np.testing.assert_allclose(fix_aspect([[3, 4]], 1.0), [[4, 4]])


def test_half_body_window_by_hand():
    upper = np.isin(np.arange(17), COCO.indices(["nose", "left_eye", "right_eye", "left_ear", "right_ear",
                                                 "left_shoulder", "right_shoulder", "left_elbow",
                                                 "right_elbow", "left_wrist", "right_wrist"]))
    kp = person(100, 20)
    labelled = np.ones(17, bool)

    class Fixed:
        def __init__(self, value):
            self.value = value

        def random(self):
            return self.value

    center, size = half_body_window(kp, labelled, upper, 0.75, 1.5, Fixed(0.2))  # upper body
    pts = kp[upper]
    np.testing.assert_allclose(center, pts.mean(axis=0))
    extent = pts.max(axis=0) - pts.min(axis=0)  # 80 wide, 88 tall -> widen? 80 > 0.75 * 88
    np.testing.assert_allclose(size, [extent[0] * 1.5, extent[0] / 0.75 * 1.5])
    center, size = half_body_window(kp, labelled, upper, 0.75, 1.5, Fixed(0.7))  # lower body
    np.testing.assert_allclose(center, kp[~upper].mean(axis=0))
    only_two = labelled & ~upper
    only_two[np.flatnonzero(only_two)[2:]] = False
    assert half_body_window(kp, only_two, upper, 0.75, 1.5, Fixed(0.7)) is None


def test_augmentation_sampler_follows_hrnet():
    aug = Augmentation(rotation_std=30, rotation_max=30, rotation_prob=0.6, scale_std=0.35,
                       scale_range=(0.65, 1.35), flip_prob=0.5)
    rng = np.random.default_rng(7)
    draws = np.array([sample_augmentation(aug, rng) for _ in range(20000)])
    scale, rotation, flip = draws.T
    assert scale.min() == 0.65 and scale.max() == 1.35
    clipped = 2 * (1 - ndtr(1.0))  # P(|N(0, 1)| > 1): the mass put on the bounds
    assert abs(np.mean((scale == 0.65) | (scale == 1.35)) - clipped) < 0.015
    assert np.abs(rotation).max() == 30
    assert abs(np.mean(rotation == 0) - 0.4) < 0.015
    assert abs(np.mean(np.abs(rotation) == 30) - 0.6 * clipped) < 0.015
    assert abs(flip.mean() - 0.5) < 0.015


# -- training samples ------------------------------------------------------------------------------
def make_dataset(tmp_path, augment, people=((80, 40), (220, 50)), dark=True):
    path = write_coco(tmp_path, [[person(dx, dy) for dx, dy in people]])
    codec = HeatmapCodec(COCO, input_size=INPUT, heatmap_size=HEATMAP, sigma=1.0, bones=True, dark=dark)
    return TopDownDataset(training_persons(read_coco_keypoints(path)), tmp_path / "images", codec, augment=augment)


@pytest.mark.parametrize("flip_prob", [0.0, 1.0])
def test_training_targets_peak_on_the_drawn_keypoints(tmp_path, flip_prob):
    """Decoded targets sit on the dot of the right colour in the crop: left joints on red dots
    unless the crop is mirrored, when the joint labelled left is the image's right one (blue)."""
    aug = Augmentation(rotation_std=30, rotation_max=30, rotation_prob=1.0, scale_std=0.35,
                       scale_range=(0.65, 1.35), flip_prob=flip_prob)
    dataset = make_dataset(tmp_path, aug)
    checked = 0
    for seed in range(6):
        sample = dataset.sample(seed % 2, np.random.default_rng(seed))
        crop = to_rgb8(sample["image"])
        assert sample["heatmaps"].shape == (17, HEATMAP[1], HEATMAP[0])
        assert sample["bone_heatmaps"].shape == (len(COCO.bones), HEATMAP[1], HEATMAP[0])
        points, _ = dataset.codec.decode(sample["heatmaps"][None].numpy())
        for j, name in enumerate(COCO.joints):
            x, y = points[0, j]
            margin = 8  # two heatmap pixels: decoding needs the peak's neighbours on the map
            if sample["weights"][j] == 0 or not (margin <= x <= INPUT[0] - 1 - margin
                                                 and margin <= y <= INPUT[1] - 1 - margin):
                continue
            drawn = name
            if flip_prob == 1.0:
                drawn = COCO.joints[COCO.flip_indices[j]]
            centroid = blob_centroid(crop, joint_color(drawn), points[0, j])
            assert centroid is not None and np.linalg.norm(centroid - points[0, j]) < 1.0, (seed, name)
            checked += 1
    assert checked > 60


def test_flipped_sample_is_the_mirrored_crop(tmp_path):
    plain = Augmentation(rotation_prob=0.0, scale_std=0.0, flip_prob=0.0)
    flipped = Augmentation(rotation_prob=0.0, scale_std=0.0, flip_prob=1.0)
    a = make_dataset(tmp_path, plain).sample(0, np.random.default_rng(1))
    b = make_dataset(tmp_path, flipped).sample(0, np.random.default_rng(1))
    diff = np.abs(to_rgb8(a["image"])[:, ::-1].astype(int) - to_rgb8(b["image"]).astype(int))
    assert np.percentile(diff, 99) <= 2
    # targets: channel j of the mirrored sample is channel flip_indices[j] of the plain one, mirrored
    codec = make_dataset(tmp_path, plain).codec
    pa, _ = codec.decode(a["heatmaps"][None].numpy())
    pb, _ = codec.decode(b["heatmaps"][None].numpy())
    expected = pa[0][COCO.flip_indices]
    expected[:, 0] = INPUT[0] - 1 - expected[:, 0]
    np.testing.assert_allclose(pb[0], expected, atol=0.3)


def test_half_body_crops_hold_only_half_the_joints(tmp_path):
    aug = Augmentation(rotation_prob=0.0, scale_std=0.0, flip_prob=0.0, half_body_prob=1.0, half_body_min_joints=8,
                       upper_body=tuple(COCO.indices(["nose", "left_eye", "right_eye", "left_ear", "right_ear",
                                                      "left_shoulder", "right_shoulder", "left_elbow",
                                                      "right_elbow", "left_wrist", "right_wrist"])))
    dataset = make_dataset(tmp_path, aug, people=((160, 30),))
    ankles, nose = COCO.indices(["left_ankle", "right_ankle"]), COCO.index("nose")
    kinds = set()
    for seed in range(8):
        sample = dataset.sample(0, np.random.default_rng(seed))
        points, _ = dataset.codec.decode(sample["heatmaps"][None].numpy())
        inside = ((sample["weights"].numpy() > 0) & (points[0] >= 0).all(axis=1)
                  & (points[0, :, 0] <= INPUT[0] - 1) & (points[0, :, 1] <= INPUT[1] - 1))
        assert not (inside[ankles].any() and inside[nose])
        kinds.add("upper" if inside[nose] else "lower")
    assert kinds == {"upper", "lower"}


def test_dataset_refuses_bad_boxes_and_missing_images(tmp_path):
    path = write_coco(tmp_path, [[person(80, 40)]])
    gt = read_coco_keypoints(path)
    codec = HeatmapCodec(COCO, input_size=INPUT, heatmap_size=HEATMAP)
    gt.boxes[0] = np.nan
    with pytest.raises(PosekitError, match="box is missing or empty"):
        TopDownDataset(gt, tmp_path / "images", codec)
    gt = read_coco_keypoints(path)
    with pytest.raises(PosekitError, match="cannot read the image"):
        TopDownDataset(gt, tmp_path / "elsewhere", codec)[0]


# -- evaluation ------------------------------------------------------------------------------------
def test_rescore_and_oks_nms_by_hand():
    scores = rescore([[0.1, 0.5, 0.9], [0.1, 0.15, 0.2]], [0.8, 1.0], threshold=0.2)
    np.testing.assert_allclose(scores, [0.8 * 0.7, 0.0])

    sigmas = np.array([0.05, 0.1])
    a = np.array([[0.0, 0.0], [10.0, 0.0]])
    poses = np.stack([a, a + [0.3, 0.0], a + [3.0, 0.0], a + [50.0, 50.0]])
    areas = np.array([100.0, 100.0, 300.0, 100.0])
    # OKS of poses 0 and 2 (3 px apart, mean area 200): mean of exp(-9 / (2 * 200 * (2 sigma)^2))
    oks02 = np.mean(np.exp(-9 / (2 * 200 * (2 * sigmas) ** 2)))
    oks01 = np.mean(np.exp(-0.09 / (2 * 100 * (2 * sigmas) ** 2)))
    assert oks01 > 0.9 > oks02
    keep = oks_nms(poses, [0.9, 0.8, 0.7, 0.6], areas, sigmas, threshold=0.9)
    np.testing.assert_array_equal(keep, [0, 2, 3])
    keep = oks_nms(poses, [0.9, 0.8, 0.7, 0.6], areas, sigmas, threshold=oks02 - 1e-9)
    np.testing.assert_array_equal(keep, [0, 3])


def test_read_detections(tmp_path):
    images = {1: None, 2: None}
    path = tmp_path / "det.json"
    path.write_text(json.dumps([
        {"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.9},
        {"image_id": 2, "category_id": 1, "bbox": [5, 6, 7, 8], "score": 0.1},
        {"image_id": 2, "category_id": 3, "bbox": [5, 6, 7, 8], "score": 0.9},
        {"image_id": 2, "category_id": 1, "bbox": [5, 6, 0, 8], "score": 0.9}]))
    ids, boxes, scores = read_detections(path, images, score_threshold=0.2)
    np.testing.assert_array_equal(ids, [1])
    np.testing.assert_array_equal(boxes, [[1, 2, 3, 4]])
    path.write_text(json.dumps([{"image_id": 7, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.9}]))
    with pytest.raises(PosekitError, match="image_id 7"):
        read_detections(path, images)
    path.write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3], "score": 0.9}]))
    with pytest.raises(PosekitError, match="detection 0"):
        read_detections(path, images)


def topdown_config(tmp_path, annotations, images, **data):
    return {"task": "topdown2d",
            "model": {"name": "hrnet-w18-small"},
            "codec": {"input_size": [96, 128], "heatmap_size": [24, 32], "sigma": 1.0, "dark": True},
            "loss": {"joint": "mse", "bone": None},
            "data": {"format": "coco", "root": str(tmp_path), "train": {"annotations": str(annotations),
                                                                        "images": str(images)},
                     "val": {"annotations": str(annotations), "images": str(images)}, **data},
            "train": {"epochs": 1, "batch_size": 2, "optimizer": {"lr": 1e-3}},
            "eval": {"flip_test": False}}


def blank_images(tmp_path, gt_path):
    """Uniform images with the sizes the annotations give (their content plays no part)."""
    folder = tmp_path / "blank"
    folder.mkdir()
    for image in json.loads(Path(gt_path).read_text())["images"]:
        cv2.imwrite(str(folder / image["file_name"]), np.full((image["height"], image["width"], 3), 90, np.uint8))
    return folder


def pycocotools_ap(gt_path, results_path):
    from pycocotools.coco import COCO as CocoApi
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = CocoApi(str(gt_path))
        ev = COCOeval(coco, coco.loadRes(str(results_path)), "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats[0]


class HeatmapOracle(torch.nn.Module):
    """A stand-in network that returns given heatmaps, batch after batch."""

    def __init__(self, heatmaps):
        super().__init__()
        self.queue = list(heatmaps)

    def forward(self, images):
        n = len(images)
        out, self.queue = self.queue[:n], self.queue[n:]
        return {"heatmaps": torch.stack(out)}


def run_predictions(task, dataset, heatmaps_of):
    """Records for the whole evaluation set, as the engine gathers them."""
    records = []
    for start in range(0, len(dataset), 4):
        samples = [dataset[i] for i in range(start, min(start + 4, len(dataset)))]
        batch = task.collate(samples)
        model = HeatmapOracle([heatmaps_of(start + i, s) for i, s in enumerate(samples)])
        records.extend(task.predict(model, batch))
    return records


def test_coco_scoring_of_ground_truth_is_perfect(tmp_path, test_data):
    """Ground-truth keypoints as predictions score AP 1 here and in pycocotools."""
    gt_path = test_data / "coco" / "test_coco.json"
    task = build_task(topdown_config(tmp_path, gt_path, blank_images(tmp_path, gt_path)))
    dataset = task.val_dataset()
    persons = task._val[1]
    assert len(persons) == 12  # 14 annotations, 2 without labelled keypoints
    records = [(persons.keypoints[i], np.where(persons.visibility[i] > 0, 0.9, 0.1)) for i in range(len(dataset))]
    out = tmp_path / "out"
    out.mkdir()
    metrics = task.score(records, out)
    assert metrics["AP"] == 1.0 and metrics["AR"] == 1.0
    assert pycocotools_ap(gt_path, out / "keypoint_results.json") == 1.0
    results = json.loads((out / "keypoint_results.json").read_text())
    assert len(results) == 12 and all(r["score"] == pytest.approx(0.9) for r in results)


def test_decoded_heatmaps_map_back_to_image_keypoints(tmp_path, test_data):
    """Heatmaps encoded from each crop's true keypoints come back, through decoding and the inverse
    crop, to the annotated image keypoints (a fraction of a pixel), and score AP 1."""
    gt_path = test_data / "coco" / "test_coco.json"
    task = build_task(topdown_config(tmp_path, gt_path, blank_images(tmp_path, gt_path)))
    dataset = task.val_dataset()
    persons = task._val[1]
    codec = task.codec

    def oracle(index, sample):
        crop_points = apply_affine(persons.keypoints[index], sample["matrix"].numpy())
        return torch.from_numpy(codec.encode(crop_points, persons.visibility[index])["heatmaps"])

    records = run_predictions(task, dataset, oracle)
    labelled = persons.visibility > 0
    crop_scale = INPUT[1] / dataset.sizes[:, 1]  # crop pixels per image pixel
    checked = 0
    for i, (points, scores) in enumerate(records):
        crop = apply_affine(persons.keypoints[i], dataset[i]["matrix"].numpy())
        margin = 8  # two heatmap pixels: decoding needs the peak's neighbours on the map
        inner = labelled[i] & (crop >= margin).all(axis=1) & (crop <= np.array(INPUT) - 1 - margin).all(axis=1)
        err = np.linalg.norm(points - persons.keypoints[i], axis=1)[inner]
        assert err.max() * crop_scale[i] < 0.1  # a tenth of a crop pixel with DARK decoding
        checked += inner.sum()
    assert checked > 150
    out = tmp_path / "out"
    out.mkdir()
    assert task.score(records, out)["AP"] == 1.0


def test_flip_test_averages_the_mirrored_prediction(tmp_path, test_data):
    """With flip test, a network that is exact on both crops gives keypoints within HRNet's
    one-heatmap-pixel shift bias (stride / 2 input pixels after averaging) of the truth."""
    gt_path = test_data / "coco" / "test_coco.json"
    config = topdown_config(tmp_path, gt_path, blank_images(tmp_path, gt_path))
    config["eval"]["flip_test"] = True
    task = build_task(config)
    dataset = task.val_dataset()
    persons = task._val[1]
    codec = task.codec
    flip = COCO.flip_indices

    def heatmaps(index, matrix):
        crop = apply_affine(persons.keypoints[index], matrix)
        plain = codec.encode(crop, persons.visibility[index])["heatmaps"]
        mirrored = crop[flip].copy()
        mirrored[:, 0] = INPUT[0] - 1 - mirrored[:, 0]
        return plain, codec.encode(mirrored, persons.visibility[index][flip])["heatmaps"]

    records = []
    for start in range(0, len(dataset), 4):
        idx = list(range(start, min(start + 4, len(dataset))))
        samples = [dataset[i] for i in idx]
        pairs = [heatmaps(i, s["matrix"].numpy()) for i, s in zip(idx, samples)]
        model = HeatmapOracle([torch.from_numpy(p) for p, _ in pairs] + [torch.from_numpy(m) for _, m in pairs])
        batch = task.collate(samples)
        points, _ = predict_keypoints(model, batch["image"], batch["matrix"], codec, flip_test=True)
        records.extend(points)
    stride = INPUT[0] / HEATMAP[0]
    for i, points in enumerate(records):
        m = dataset[i]["matrix"].numpy()
        crop_err = apply_affine(points, m) - apply_affine(persons.keypoints[i], m)
        crop = apply_affine(persons.keypoints[i], m)
        inner = ((persons.visibility[i] > 0) & (crop >= 2 * stride).all(axis=1)
                 & (crop <= np.array(INPUT) - 1 - 2 * stride).all(axis=1))
        np.testing.assert_allclose(crop_err[inner, 0], 0.5, atol=0.15)  # + half an input pixel in x
        np.testing.assert_allclose(crop_err[inner, 1], 0.0, atol=0.15)


def test_detected_boxes_with_duplicates_are_suppressed(tmp_path, shared_real):
    """Evaluation on a detection file: a duplicate box of a person gives the same pose, which OKS-NMS
    removes, so ground-truth poses still score AP 1."""
    gt_path = shared_real / "coco" / "test_coco.json"
    gt = read_coco_keypoints(gt_path)
    keep = ~gt.iscrowd & (gt.visibility > 0).any(axis=1)
    dets = [{"image_id": int(gt.image_ids[i]), "category_id": 1, "bbox": gt.boxes[i].tolist(), "score": 0.95}
            for i in np.flatnonzero(keep)]
    dets.append(dict(dets[0], bbox=(gt.boxes[np.flatnonzero(keep)[0]] * [1, 1, 1.1, 1.1]).tolist(), score=0.5))
    (tmp_path / "det.json").write_text(json.dumps(dets))
    config = topdown_config(tmp_path, gt_path, shared_real / "coco", val={
        "annotations": str(gt_path), "images": str(shared_real / "coco"), "boxes": str(tmp_path / "det.json")})
    task = build_task(config)
    dataset = task.val_dataset()
    assert len(dataset) == 13
    rows = list(np.flatnonzero(keep)) + [np.flatnonzero(keep)[0]]
    records = [(gt.keypoints[r], np.full(17, 0.9)) for r in rows]
    out = tmp_path / "out"
    out.mkdir()
    metrics = task.score(records, out)
    assert metrics["AP"] == 1.0
    assert len(json.loads((out / "keypoint_results.json").read_text())) == 12


def test_mpii_scoring_of_ground_truth_is_perfect(tmp_path, shared_real):
    config = topdown_config(tmp_path, shared_real / "mpii" / "test_mpii.json", shared_real / "mpii")
    config["data"].update(format="mpii", skeleton="mpii16")
    config["codec"].update(input_size=[128, 128], heatmap_size=[32, 32])
    task = build_task(config)
    with pytest.warns(UserWarning, match="approximation"):
        dataset = task.val_dataset()
    gt = task._val[0]
    assert len(dataset) == 5
    out = tmp_path / "out"
    out.mkdir()
    metrics = task.score([(np.nan_to_num(gt.keypoints[i]), np.ones(16)) for i in range(5)], out)
    assert metrics["PCKh"] == 100.0 and metrics["Wrist"] == 100.0
    np.testing.assert_allclose(np.load(out / "mpii_predictions.npy"), np.nan_to_num(gt.keypoints))


def test_topdown_config_errors(tmp_path):
    config = topdown_config(tmp_path, "a.json", "imgs")
    config["data"]["augment"] = {"half_body_prob": 0.3}
    with pytest.raises(PosekitError, match="data.augment.upper_body"):
        build_task(config)
    config["data"]["augment"] = {"upper_body": ["left_shoulder", "left_sholder"]}
    with pytest.raises(PosekitError, match="left_sholder"):
        build_task(config)
    config["data"]["augment"] = {}
    config["loss"]["joint"] = "l1"
    with pytest.raises(PosekitError, match="loss.joint"):
        build_task(config)


@pytest.mark.slow
def test_cli_trains_resumes_and_tests_a_small_ditn(tmp_path, capsys):
    """End to end through the command line: posekit train, train --resume, posekit test."""
    from posekit.cli import main

    path = write_coco(tmp_path, [[person(40 + 120 * k, 30 + 10 * j) for k in range(2)] for j in range(4)])
    config = tmp_path / "small.yaml"
    config.write_text(f"""
base: {Path(__file__).resolve().parents[1] / 'configs' / 'ditn' / 'ditn_small_synth-96x64.yaml'}
codec: {{input_size: [64, 64], heatmap_size: [16, 16]}}
data:
  root: {tmp_path}
  train: {{annotations: {path.name}, images: images}}
  val: {{annotations: {path.name}, images: images}}
train: {{epochs: 2, batch_size: 4, num_workers: 0, log_every: 1}}
eval: {{every: 1, batch_size: 8}}
""")
    run = tmp_path / "run"

    def cli(*args):
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            assert exc.code in (0, None), capsys.readouterr().err
        return capsys.readouterr().out

    assert "trained 2 epochs (4 steps)" in cli("train", config, "--out", run)
    rows = (run / "train_log.csv").read_text().splitlines()
    assert rows[0].split(",")[:7] == ["epoch", "step", "lr", "loss", "grad_norm", "joint_loss", "bone_loss"]
    assert len(rows) == 5
    assert "trained 3 epochs (6 steps)" in cli("train", config, "--out", run, "--resume", "--set", "train.epochs=3")
    assert len((run / "train_log.csv").read_text().splitlines()) == 7
    metrics = json.loads(cli("test", config, "--checkpoint", run / "best.safetensors", "--json").strip().splitlines()[-1])
    assert set(metrics) == {"AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl",
                            "PCK@0.1", "PCK@0.2", "LR-collapse"}
    assert 0.0 <= metrics["AP"] <= 1.0
    results = json.loads((run / "test" / "keypoint_results.json").read_text())
    assert len(results) == 8 and {r["image_id"] for r in results} == {1, 2, 3, 4}


def test_mmpose_hrnet_weights_load_into_the_task_model(tmp_path):
    from posekit.engine.checkpoint import load_weights
    from posekit.models.hrnet import to_mmpose_hrnet

    task = build_task(topdown_config(tmp_path, "a.json", "imgs"))
    source = task.build_model()
    torch.save({"state_dict": to_mmpose_hrnet(source.state_dict())}, tmp_path / "mmpose.pth")
    target = copy.deepcopy(source)
    with torch.no_grad():
        for p in target.parameters():
            p.add_(1.0)
    state, _ = load_weights(tmp_path / "mmpose.pth")
    task.load_weights(target, state, "mmpose.pth")
    for key, value in source.state_dict().items():
        assert torch.equal(value, target.state_dict()[key]), key
    state.pop(next(k for k in state if k.startswith("head.")))
    with pytest.raises(PosekitError, match="missing keys: final_layer"):
        task.load_weights(target, state, "mmpose.pth")


def test_mpii_training_samples(tmp_path, shared_real):
    config = topdown_config(tmp_path, shared_real / "mpii" / "test_mpii.json", shared_real / "mpii")
    config["data"].update(format="mpii", skeleton="mpii16")
    config["codec"].update(input_size=[128, 128], heatmap_size=[32, 32])
    config["loss"].update(joint="focal_l2", bone="smooth_l1")
    task = build_task(config)
    dataset = task.train_dataset()
    assert len(dataset) == 5
    sample = dataset.sample(0, np.random.default_rng(0))
    assert sample["image"].shape == (3, 128, 128)
    assert sample["heatmaps"].shape == (16, 32, 32) and sample["bone_heatmaps"].shape == (15, 32, 32)
    # MPII boxes are squares of scale * 200 px: with the 1.25 padding the crop spans 250 * scale
    gt = task._read(config["data"]["train"]["annotations"], for_training=True)
    np.testing.assert_allclose(dataset.sizes[:, 0], [250 * gt.meta["scales"][i] for i in gt.ids.tolist()])


def test_pretrained_backbone_is_loaded_into_ditn(tmp_path):
    """An ImageNet HRNet file (backbone keys plus a classifier) initialises DITN's backbone only."""
    from posekit.models.hrnet import HRNetBackbone

    imagenet = HRNetBackbone("w18-small")
    with torch.no_grad():
        for p in imagenet.parameters():
            p.uniform_(-1, 1)
    state = {**imagenet.state_dict(), "classifier.weight": torch.zeros(1000, 2048)}
    torch.save(state, tmp_path / "hrnet_imagenet.pth")
    config = topdown_config(tmp_path, "a.json", "imgs")
    config["model"] = {"name": "ditn-w18-small", "pretrained": str(tmp_path / "hrnet_imagenet.pth")}
    config["loss"].update(joint="focal_l2", bone="smooth_l1")
    model = build_task(config).build_model()
    for key, value in imagenet.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[key], value), key
    torch.save({"fc.weight": torch.zeros(3)}, tmp_path / "other.pth")
    config["model"]["pretrained"] = str(tmp_path / "other.pth")
    with pytest.raises(PosekitError, match="no HRNet backbone weights"):
        build_task(config).build_model()
