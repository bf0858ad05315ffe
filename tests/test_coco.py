"""COCO keypoint files and OKS AP/AR, checked against pycocotools run on the same data."""
import contextlib
import copy
import io
import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from posekit.data.coco import read_coco_keypoints, read_coco_results, to_coco_dict, write_coco_results
from posekit.data.structures import PoseInstances
from posekit.errors import PosekitError
from posekit.metrics import coco_keypoint_eval, keypoint_oks
from posekit.skeletons import get_skeleton

pycocotools_coco = pytest.importorskip("pycocotools.coco")
pycocotools_eval = pytest.importorskip("pycocotools.cocoeval")

NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
COCO17 = get_skeleton("coco17")


# ---------------------------------------------------------------- pycocotools as the reference

def pycocotools_stats(gt: dict, results: list, sigmas=None, max_dets=20) -> dict:
    """The ten summary numbers of pycocotools' COCOeval('keypoints') on the person category."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = pycocotools_coco.COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        if results:
            coco_dt = coco_gt.loadRes(copy.deepcopy(results))
        else:  # loadRes cannot take an empty list
            coco_dt = pycocotools_coco.COCO()
            coco_dt.dataset = {"images": gt["images"], "categories": gt["categories"], "annotations": []}
            coco_dt.createIndex()
        ev = pycocotools_eval.COCOeval(coco_gt, coco_dt, "keypoints")
        ev.params.catIds = [1]
        ev.params.maxDets = [max_dets]
        if sigmas is not None:
            ev.params.kpt_oks_sigmas = np.asarray(sigmas)
        ev.evaluate()
        ev.accumulate()
        if max_dets == 20:
            ev.summarize()
            return dict(zip(NAMES, ev.stats))
    # summarize() only knows maxDets=20; read the same averages from the accumulated arrays.
    precision, recall = ev.eval["precision"][:, :, 0, :, 0], ev.eval["recall"][:, 0, :, 0]

    def mean(s):
        s = s[s > -1]
        return float(np.mean(s)) if s.size else -1.0

    return {"AP": mean(precision[..., 0]), "AP50": mean(precision[0, :, 0]),
            "AP75": mean(precision[5, :, 0]), "APm": mean(precision[..., 1]),
            "APl": mean(precision[..., 2]), "AR": mean(recall[:, 0]), "AR50": mean(recall[0, 0]),
            "AR75": mean(recall[5, 0]), "ARm": mean(recall[:, 1]), "ARl": mean(recall[:, 2])}


def posekit_stats(gt: dict, results: list, sigmas=None, max_dets=20) -> dict:
    truth = read_coco_keypoints(gt)
    predictions = read_coco_results(results, truth.skeleton, truth.images)
    return coco_keypoint_eval(truth, predictions, sigmas=sigmas, max_dets=max_dets)


def assert_same(ours: dict, reference: dict):
    assert tuple(ours) == NAMES
    for name in NAMES:
        assert ours[name] == pytest.approx(reference[name], abs=1e-9), name


# ---------------------------------------------------------------- the real sample

@pytest.fixture
def coco_sample(test_data) -> dict:
    return json.loads((test_data / "coco" / "test_coco.json").read_text())


def jittered_predictions(gt: dict, rng) -> list:
    """Predictions made from the ground truth: jitter, dropped keypoints, duplicates, false positives."""
    results = []
    for ann in gt["annotations"]:
        kp = np.array(ann["keypoints"], dtype=float).reshape(-1, 3)
        x, y, w, h = ann["bbox"]
        for _ in range(1 + (rng.random() < 0.4)):
            pred = kp.copy()
            unlabelled = pred[:, 2] == 0
            pred[unlabelled, 0] = rng.uniform(x, x + w, unlabelled.sum())
            pred[unlabelled, 1] = rng.uniform(y, y + h, unlabelled.sum())
            pred[:, :2] += rng.normal(0, math.sqrt(ann["area"]) * rng.uniform(0.01, 0.15), (len(kp), 2))
            dropped = rng.random(len(kp)) < 0.15
            pred[dropped, :2] = 0.0
            pred[:, 2] = np.where(dropped, 0.0, rng.uniform(0.2, 1.0, len(kp)))
            results.append({"image_id": ann["image_id"], "category_id": 1,
                            "keypoints": pred.ravel().tolist(), "score": float(rng.uniform(0.3, 1.0))})
    for image in gt["images"]:
        for _ in range(rng.integers(0, 3)):
            pred = np.column_stack([rng.uniform(0, image["width"], (17, 2)), rng.random(17)])
            results.append({"image_id": image["id"], "category_id": 1,
                            "keypoints": pred.ravel().tolist(), "score": float(rng.uniform(0, 0.6))})
    return results


def test_real_sample_jittered_predictions_match_pycocotools(coco_sample):
    rng = np.random.default_rng(1)
    for _ in range(5):
        results = jittered_predictions(coco_sample, rng)
        ours, reference = posekit_stats(coco_sample, results), pycocotools_stats(coco_sample, results)
        assert_same(ours, reference)
        assert 0 < reference["AP"] < 1


def test_real_sample_ground_truth_as_predictions_is_perfect(coco_sample):
    results = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
               for a in coco_sample["annotations"] if a["num_keypoints"] > 0]
    ours = posekit_stats(coco_sample, results)
    assert_same(ours, pycocotools_stats(coco_sample, results))
    assert all(ours[name] == 1.0 for name in NAMES)


def test_real_sample_reads_as_coco17(coco_sample, test_data):
    truth = read_coco_keypoints(test_data / "coco" / "test_coco.json")
    assert truth.skeleton.name == "coco17"
    assert len(truth) == 14 and len(truth.images) == 4
    first = coco_sample["annotations"][0]
    row = np.flatnonzero(truth.ids == first["id"])[0]
    kp = np.array(first["keypoints"], dtype=float).reshape(17, 3)
    np.testing.assert_array_equal(truth.keypoints[row], kp[:, :2])
    np.testing.assert_array_equal(truth.visibility[row], kp[:, 2])
    assert truth.areas[row] == first["area"] and truth.boxes[row].tolist() == first["bbox"]
    assert truth.images[first["image_id"]].file_name == "000000000785.jpg"


def test_posetrack_names_pick_posetrack18(shared_real):
    truth = read_coco_keypoints(shared_real / "posetrack18" / "annotations" / "test_posetrack18_val.json")
    assert truth.skeleton.name == "posetrack18"
    assert len(truth) == 14 and (truth.track_ids >= 0).all()
    assert np.isnan(truth.areas).all()  # PoseTrack gives no segment areas


# ---------------------------------------------------------------- randomized cases

def random_case(rng):
    """A COCO ground truth dict, results, sigmas (or None) and max_dets, stressing the edge cases."""
    n_images = int(rng.integers(1, 9))
    image_ids = rng.choice(np.arange(1, 10_000), n_images, replace=False).tolist()
    size_mode = rng.choice(["mixed", "small", "no_large", "large"], p=[0.55, 0.15, 0.15, 0.15])
    width_range = {"mixed": (4, 400), "small": (3, 30), "no_large": (3, 80), "large": (120, 400)}[size_mode]
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 640, "height": 480} for i in image_ids]
    annotations, next_id = [], int(rng.integers(1, 1000))
    for image_id in image_ids:
        n_gt = 0 if rng.random() < 0.2 else int(rng.integers(1, 7))
        for _ in range(n_gt):
            w = float(np.exp(rng.uniform(*np.log(width_range))))
            h = w * rng.uniform(1.0, 2.5)
            x, y = rng.uniform(0, 500), rng.uniform(0, 400)
            kp = np.zeros((17, 3))
            kind = rng.random()
            crowd = kind < 0.08
            if kind > 0.08 + 0.08 or (crowd and rng.random() < 0.3):  # labelled person (or labelled crowd)
                labelled = rng.random(17) < rng.uniform(0.2, 1.0)
                kp[labelled, 0] = rng.uniform(x, x + w, labelled.sum())
                kp[labelled, 1] = rng.uniform(y, y + h, labelled.sum())
                kp[labelled, 2] = rng.integers(1, 3, labelled.sum())
            ann = {"id": next_id, "image_id": image_id, "category_id": 1, "iscrowd": int(crowd),
                   "keypoints": np.round(kp, 2).ravel().tolist(), "num_keypoints": int((kp[:, 2] > 0).sum()),
                   "bbox": [round(x, 2), round(y, 2), round(w, 2), round(h, 2)],
                   "area": round(w * h * rng.uniform(0.3, 0.9), 3)}
            if rng.random() < 0.1:  # exactly on an area range bound (bounds are inclusive)
                ann["area"] = float(rng.choice([32 ** 2, 96 ** 2]))
            annotations.append(ann)
            next_id += int(rng.integers(1, 5))
            if rng.random() < 0.1:  # a copy with another area or fewer labels: OKS ties for exact predictions
                copy_kp = np.array(ann["keypoints"]).reshape(17, 3)
                copy_kp[rng.random(17) < 0.3] = 0.0
                annotations.append({**ann, "id": next_id, "area": ann["area"] * float(rng.choice([1.0, 0.3, 3.0])),
                                    "keypoints": copy_kp.ravel().tolist(),
                                    "num_keypoints": int((copy_kp[:, 2] > 0).sum())})
                next_id += 1
    if rng.random() < 0.2:  # another category, which both evaluators leave out
        annotations.append({"id": next_id, "image_id": image_ids[0], "category_id": 2, "iscrowd": 0,
                            "bbox": [1, 1, 5, 5], "area": 25.0})
    rng.shuffle(annotations)
    gt = {"images": images, "annotations": annotations,
          "categories": [{"id": 1, "name": "person", "supercategory": "person",
                          "keypoints": list(COCO17.joints)}, {"id": 2, "name": "dog"}]}

    results = []
    tied_scores = rng.random() < 0.3
    with_boxes = rng.random() < 0.3

    def score():
        return float(rng.choice([0.25, 0.5, 0.75])) if tied_scores else float(rng.random())

    def add(image_id, kp):
        result = {"image_id": image_id, "category_id": 1, "keypoints": np.round(kp, 3).ravel().tolist(),
                  "score": score()}
        if with_boxes:
            lo, hi = kp[:, :2].min(axis=0), kp[:, :2].max(axis=0)
            size = (hi - lo) * 1.1 if rng.random() < 0.8 else np.full(2, float(rng.choice([32, 96])))
            result["bbox"] = [float(lo[0]), float(lo[1]), float(size[0]), float(size[1])]
        results.append(result)

    if rng.random() > 0.05:
        for ann in annotations:
            if ann["category_id"] != 1 or rng.random() < 0.15:
                continue
            x, y, w, h = ann["bbox"]
            base = np.array(ann["keypoints"]).reshape(17, 3)
            for _ in range(int(rng.integers(1, 3))):
                kp = base.copy()
                kp[:, 0] = np.where(kp[:, 2] > 0, kp[:, 0], rng.uniform(x, x + w, 17))
                kp[:, 1] = np.where(kp[:, 2] > 0, kp[:, 1], rng.uniform(y, y + h, 17))
                if rng.random() < 0.8:  # else exact: OKS 1 (ties between duplicates and crowds)
                    kp[:, :2] += rng.normal(0, math.sqrt(ann["area"]) * rng.uniform(0.0, 0.3), (17, 2))
                kp[:, 2] = rng.random(17)
                add(ann["image_id"], kp)
                if rng.random() < 0.1:  # the very same detection twice
                    results.append(dict(results[-1]))
        crowded = image_ids[int(rng.integers(n_images))] if rng.random() < 0.15 else None
        for image_id in image_ids:
            n_false = int(rng.integers(0, 4)) + (25 if image_id == crowded else 0)
            for _ in range(n_false):
                x, y = rng.uniform(0, 500), rng.uniform(0, 400)
                w = float(np.exp(rng.uniform(*np.log(width_range))))
                kp = np.column_stack([rng.uniform(x, x + w, 17), rng.uniform(y, y + 2 * w, 17),
                                      rng.random(17)])
                add(image_id, kp)
        rng.shuffle(results)
    sigmas = rng.uniform(0.02, 0.12, 17).tolist() if rng.random() < 0.3 else None
    max_dets = int(rng.choice([20, 20, 20, 5, 10]))
    return gt, results, sigmas, max_dets


def test_random_cases_match_pycocotools():
    rng = np.random.default_rng(2024)
    seen = {"ignored_range": 0, "crowd": 0, "zero_keypoints": 0, "no_results": 0, "many_dets": 0,
            "image_without_gt": 0, "tied_scores": 0, "custom_sigmas": 0}
    for case in range(240):
        gt, results, sigmas, max_dets = random_case(rng)
        reference = pycocotools_stats(gt, results, sigmas, max_dets)
        ours = posekit_stats(gt, results, sigmas, max_dets)
        try:
            assert_same(ours, reference)
        except AssertionError as exc:
            raise AssertionError(f"random case {case}: {exc}") from None
        persons = [a for a in gt["annotations"] if a["category_id"] == 1]
        seen["ignored_range"] += reference["APm"] == -1 or reference["APl"] == -1
        seen["crowd"] += any(a["iscrowd"] for a in persons)
        seen["zero_keypoints"] += any(a["num_keypoints"] == 0 and not a["iscrowd"] for a in persons)
        seen["no_results"] += not results
        counts = np.unique([r["image_id"] for r in results], return_counts=True)[1]
        seen["many_dets"] += bool(len(counts)) and counts.max() > max_dets
        seen["image_without_gt"] += len({a["image_id"] for a in persons}) < len(gt["images"])
        scores = [r["score"] for r in results]
        seen["tied_scores"] += len(set(scores)) < len(scores)
        seen["custom_sigmas"] += sigmas is not None
    assert min(seen.values()) >= 5, seen


# ---------------------------------------------------------------- hand-computed OKS and AP

def test_oks_of_a_simple_pair_by_hand():
    skeleton = get_skeleton("coco17")
    sigmas = np.full(17, 0.1)  # (2 sigma)^2 = 0.04
    gt = np.zeros((1, 17, 2))
    vis = np.zeros((1, 17))
    vis[0, :2] = 2  # only the first two keypoints are labelled
    pred = np.zeros((1, 17, 2))
    pred[0, 0] = (2.0, 0.0)        # d^2 = 4:  e = 4 / 0.04 / 100 / 2 = 0.5
    pred[0, 1] = (0.0, 0.0)        # d^2 = 0:  e = 0
    pred[0, 2:] = 1000.0           # unlabelled: not counted
    expected = (math.exp(-0.5) + 1.0) / 2
    oks = keypoint_oks(pred, gt, vis, [100.0], sigmas)
    assert oks.shape == (1, 1) and oks[0, 0] == pytest.approx(expected, rel=1e-12)

    truth = PoseInstances(skeleton, gt, vis, [7], boxes=[[0, 0, 10, 10]], areas=[100.0], ids=[1])
    prediction = PoseInstances(skeleton, pred, np.ones((1, 17)), [7], scores=[0.9])
    stats = coco_keypoint_eval(truth, prediction, sigmas=sigmas)
    # OKS 0.803 is a hit at thresholds 0.50 .. 0.80 (7 of 10): precision 1 there, 0 elsewhere.
    assert stats["AP"] == pytest.approx(0.7) and stats["AR"] == pytest.approx(0.7)
    assert stats["AP50"] == pytest.approx(1.0) and stats["AP75"] == pytest.approx(1.0)
    assert stats["APm"] == stats["APl"] == stats["ARm"] == stats["ARl"] == -1  # area 100 is small


def one_image_gt(annotations: list) -> dict:
    return {"images": [{"id": 1, "width": 640, "height": 480}], "annotations": annotations,
            "categories": [{"id": 1, "name": "person", "keypoints": list(COCO17.joints)}]}


def person(ann_id: int, kp: np.ndarray, area: float = 5000.0) -> dict:
    return {"id": ann_id, "image_id": 1, "category_id": 1, "iscrowd": 0, "keypoints": kp.ravel().tolist(),
            "num_keypoints": int((kp[:, 2] > 0).sum()), "bbox": [0, 0, 100, 100], "area": area}


def test_oks_exactly_at_a_threshold_is_a_match():
    kp = np.zeros((17, 3))
    kp[:2] = [[50, 50, 2], [60, 60, 2]]
    pred = kp.copy()
    pred[1, :2] = [400, 400]  # one keypoint exact, one far: OKS = (1 + 0) / 2 = 0.5 exactly
    gt = one_image_gt([person(1, kp)])
    results = [{"image_id": 1, "category_id": 1, "keypoints": pred.ravel().tolist(), "score": 0.5}]
    ours = posekit_stats(gt, results)
    assert_same(ours, pycocotools_stats(gt, results))
    assert ours["AR50"] == 1.0 and ours["AR"] == pytest.approx(0.1)


def test_oks_ties_go_to_the_later_ground_truth():
    full = np.column_stack([np.linspace(10, 90, 17), np.linspace(20, 80, 17), np.full(17, 2)])
    head_only = full.copy()
    head_only[5:] = 0  # the same person with only the five head keypoints labelled
    exact = full.copy()
    shifted = full.copy()
    shifted[5:, :2] += 6  # still exact on the head: OKS 1 to head_only, lower to full
    results = [{"image_id": 1, "category_id": 1, "keypoints": exact.ravel().tolist(), "score": 0.9},
               {"image_id": 1, "category_id": 1, "keypoints": shifted.ravel().tolist(), "score": 0.8}]
    stats = []
    for order in ([person(1, full), person(2, head_only)], [person(2, head_only), person(1, full)]):
        gt = one_image_gt(order)
        stats.append(posekit_stats(gt, results))
        assert_same(stats[-1], pycocotools_stats(gt, results))
    # The exact detection has OKS 1 to both; whichever it takes decides what the second one gets.
    assert stats[0]["AR"] < stats[1]["AR"] == 1.0


def test_oks_to_a_ground_truth_without_labels_uses_the_enlarged_box():
    sigmas = np.full(17, 0.1)
    box = [10.0, 20.0, 10.0, 10.0]  # enlarged: x 0..30, y 10..40
    pred = np.full((1, 17, 2), 15.0)
    pred[0, 0] = (33.0, 6.0)         # 3 right of it, 4 above: d^2 = 25, e = 25 / 0.04 / 50 / 2 = 6.25
    expected = (16 + math.exp(-6.25)) / 17
    oks = keypoint_oks(pred, np.zeros((1, 17, 2)), np.zeros((1, 17)), [50.0], sigmas, gt_boxes=[box])
    assert oks[0, 0] == pytest.approx(expected, rel=1e-12)


# ---------------------------------------------------------------- evaluator input checks

def test_evaluator_rejects_bad_inputs(coco_sample):
    truth = read_coco_keypoints(coco_sample)
    pred = read_coco_results([], "coco17")
    with pytest.raises(PosekitError, match="sigmas"):
        coco_keypoint_eval(truth, pred, sigmas=[0.1] * 3)
    with pytest.raises(PosekitError, match="max_dets"):
        coco_keypoint_eval(truth, pred, max_dets=0)
    with pytest.raises(PosekitError, match="different joints"):
        coco_keypoint_eval(truth, read_coco_results([], "posetrack18"))
    stray = read_coco_results([{"image_id": 5, "keypoints": [0.0] * 51, "score": 1.0}], "coco17")
    with pytest.raises(PosekitError, match="image_id 5"):
        coco_keypoint_eval(truth, stray)
    no_area = truth.select(np.arange(len(truth)))
    no_area.areas[3] = np.nan
    with pytest.raises(PosekitError, match=f"annotation id {truth.ids[3]}.*area"):
        coco_keypoint_eval(no_area, pred)
    assert coco_keypoint_eval(truth, pred)["AP"] == 0.0


# ---------------------------------------------------------------- reader errors

def small_gt() -> dict:
    return {"images": [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10}],
            "annotations": [{"id": 9, "image_id": 1, "category_id": 1, "keypoints": [1, 2, 2] * 17,
                             "num_keypoints": 17, "bbox": [0, 0, 5, 5], "area": 20.0, "iscrowd": 0}],
            "categories": [{"id": 1, "name": "person", "keypoints": list(COCO17.joints)}]}


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["annotations"][0].update(keypoints=[1, 2, 2] * 16),
     "annotation id 9: 'keypoints' must have 51"),
    (lambda d: d["annotations"][0].update(area=-1.0), "annotation id 9: 'area' must not be negative"),
    (lambda d: d["annotations"][0].update(area=float("nan")), "annotation id 9: 'area' must be finite"),
    (lambda d: d["annotations"][0].update(num_keypoints=3), "annotation id 9: 'num_keypoints' is 3"),
    (lambda d: d["annotations"][0].update(image_id=2), "image_id 2 is not in 'images'"),
    (lambda d: d["annotations"][0].pop("keypoints"), "annotation id 9: missing 'keypoints'"),
    (lambda d: d["annotations"][0].update(bbox=[0, 0, -1, 5]), "'bbox' must have a non-negative"),
    (lambda d: d["annotations"][0].update(iscrowd=2), "'iscrowd' must be 0 or 1"),
    (lambda d: d["categories"][0].update(keypoints=["a"] * 17), "match no known skeleton"),
    (lambda d: d.pop("images"), "missing 'images'"),
])
def test_ground_truth_errors_name_the_fault(edit, message):
    data = small_gt()
    edit(data)
    with pytest.raises(PosekitError, match=message):
        read_coco_keypoints(data)


def test_file_errors(tmp_path):
    with pytest.raises(PosekitError, match="no such file"):
        read_coco_keypoints(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"images": [')
    with pytest.raises(PosekitError, match="broken.json: not valid JSON"):
        read_coco_keypoints(broken)
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(PosekitError, match="not UTF-8"):
        read_coco_results(binary, "coco17")


def test_result_errors_name_the_result():
    good = {"image_id": 1, "category_id": 1, "keypoints": [1.0, 2.0, 0.5] * 17, "score": 0.5}
    with pytest.raises(PosekitError, match="result 1: 'keypoints' must have 51"):
        read_coco_results([good, {**good, "keypoints": [1.0] * 50}], "coco17")
    with pytest.raises(PosekitError, match="result 0: 'score' must be finite"):
        read_coco_results([{**good, "score": float("inf")}], "coco17")
    with pytest.raises(PosekitError, match="result 1: image_id 3 is not an image"):
        read_coco_results([good, {**good, "image_id": 3}], "coco17", image_ids={1, 2})
    assert len(read_coco_results([], "coco17")) == 0
    assert len(read_coco_results([good, {**good, "category_id": 2}], "coco17")) == 1
    with pytest.raises(PosekitError, match="no result has category_id 1 \\(found 2\\)"):
        read_coco_results([{**good, "category_id": 2}], "coco17")
    assert len(read_coco_results([{**good, "category_id": 2}], "coco17", category_id=2)) == 1


def test_results_file_round_trip(tmp_path):
    results = [{"image_id": 4, "category_id": 1, "keypoints": [1.5, 2.25, 0.5] * 17, "score": 0.75,
                "bbox": [1.0, 2.0, 3.0, 4.0]},
               {"image_id": 5, "keypoints": [0.1, 0.2, 1.0] * 17, "score": 0.1}]
    first = read_coco_results(results, "coco17")
    write_coco_results(first, tmp_path / "res.json")
    again = read_coco_results(tmp_path / "res.json", "coco17")
    assert_instances_equal(first, again)
    assert np.isnan(again.boxes[1]).all() and again.boxes[0].tolist() == [1.0, 2.0, 3.0, 4.0]


# ---------------------------------------------------------------- fuzzing the readers

def assert_instances_equal(a: PoseInstances, b: PoseInstances):
    assert a.skeleton.name == b.skeleton.name
    for name in ("keypoints", "visibility", "image_ids", "boxes", "scores", "areas", "iscrowd",
                 "track_ids", "ids"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.images == b.images


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 2 ** 64), st.text(max_size=3),
                         st.floats(allow_nan=True, allow_infinity=True))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=3), inner, max_size=3), max_leaves=6)
odd_numbers = st.sampled_from([float("nan"), float("inf"), -1, -0.5, 0, 3, 2 ** 70, 1e308, True])


def random_keypoints(rng, third) -> list:
    kp = np.column_stack([rng.uniform(-100, 1000, (17, 2)).round(rng.integers(0, 4)), third])
    return [int(v) if v.is_integer() and rng.random() < 0.5 else float(v) for v in kp.ravel()]


@st.composite
def ground_truths(draw):
    """Valid COCO ground truth; content from a drawn seed, which keeps generation fast."""
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    n_images = draw(st.integers(1, 3))
    images = [{"id": i + 1, "file_name": f"{i}.jpg", "width": 640, "height": 480} for i in range(n_images)]
    annotations = []
    for i in range(draw(st.integers(0, 3))):
        flags = rng.integers(0, 3, 17) * (rng.random(17) < rng.random())
        ann = {"id": 100 + i, "image_id": int(rng.integers(1, n_images + 1)), "category_id": 1,
               "keypoints": random_keypoints(rng, flags), "num_keypoints": int(np.count_nonzero(flags)),
               "iscrowd": [0, 1, False][rng.integers(3)], "bbox": rng.uniform(0, 500, 4).tolist(),
               "area": float(rng.uniform(0, 1e5)), "track_id": int(rng.integers(0, 5))}
        for optional in ("bbox", "area", "iscrowd", "num_keypoints", "track_id"):
            if rng.random() < 0.2:
                del ann[optional]
        annotations.append(ann)
    if draw(st.booleans()):
        annotations.append({"id": 1, "image_id": 99, "category_id": 7})  # another category: skipped
    return {"images": images, "annotations": annotations,
            "categories": [{"id": 1, "name": "person", "keypoints": list(COCO17.joints)}, {"id": 7}]}


@st.composite
def results_lists(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    out = []
    for i in range(draw(st.integers(0, 3))):
        result = {"image_id": int(rng.integers(1, 3)), "category_id": int(rng.choice([1, 1, 1, 2])),
                  "keypoints": random_keypoints(rng, rng.random(17)), "score": float(rng.random())}
        if rng.random() < 0.3:
            del result["category_id"]
        if rng.random() < 0.5:
            result["bbox"] = rng.uniform(0, 500, 4).tolist()
        out.append(result)
    return out


def is_flat(node: list) -> bool:
    return not any(isinstance(v, (dict, list)) for v in node)


def node_paths(node, path=()):
    """Every place in a JSON document, a list of plain values counted once (not per value)."""
    yield path
    if isinstance(node, dict):
        for key, value in node.items():
            yield from node_paths(value, path + (key,))
    elif isinstance(node, list) and not is_flat(node):
        for i, value in enumerate(node):
            yield from node_paths(value, path + (i,))


@st.composite
def mutated(draw, valid):
    """A valid document, then up to three edits anywhere in it: replace, remove or append."""
    doc = copy.deepcopy(draw(valid))
    for _ in range(draw(st.integers(0, 3))):
        path = list(draw(st.sampled_from(list(node_paths(doc)))))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        node = parent[path[-1]] if path else doc
        if isinstance(node, list) and node and is_flat(node) and draw(st.booleans()):
            parent, path = node, path + [draw(st.integers(0, len(node) - 1))]
        edit = draw(st.sampled_from(["replace", "odd_number", "remove", "append"]))
        if edit == "append" and isinstance(parent[path[-1]] if path else doc, list):
            (parent[path[-1]] if path else doc).append(draw(json_values))
        elif not path:
            doc = draw(json_values) if edit == "replace" else doc
        elif edit == "remove":
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(json_values if edit == "replace" else odd_numbers)
    return doc


def run_fuzz(strategy, check, examples=1000):
    calls = []

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(strategy)
    def fuzz(doc):
        calls.append(1)
        check(doc)

    fuzz()
    assert len(calls) >= examples


def test_fuzz_ground_truth_reader():
    def check(doc):
        try:
            truth = read_coco_keypoints(doc)
        except PosekitError as exc:
            assert "\n" not in str(exc)
            return
        assert_instances_equal(truth, read_coco_keypoints(json.loads(json.dumps(to_coco_dict(truth)))))

    run_fuzz(mutated(ground_truths()), check)


def test_fuzz_results_reader(tmp_path):
    def check(doc):
        try:
            predictions = read_coco_results(doc, "coco17", image_ids={1, 2, 99})
        except PosekitError as exc:
            assert "\n" not in str(exc)
            return
        write_coco_results(predictions, tmp_path / "res.json")
        assert_instances_equal(predictions, read_coco_results(tmp_path / "res.json", "coco17"))

    run_fuzz(mutated(results_lists()), check)


@settings(max_examples=200, deadline=None, database=None)
@given(st.binary(max_size=60))
def test_fuzz_raw_bytes(tmp_path_factory, raw):
    path = tmp_path_factory.getbasetemp() / "raw.json"
    path.write_bytes(raw)
    for read in (read_coco_keypoints, lambda p: read_coco_results(p, "coco17")):
        try:
            read(path)
        except PosekitError:
            pass
