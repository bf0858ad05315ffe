"""COCO keypoint AP/AR: posekit against pycocotools on the same synthetic val-sized set.

Generates (fixed seed) N images with about three persons each: small, medium and large people,
crowd regions, persons without labelled keypoints, noisy predictions for most persons, duplicates
and false positives. Checks that both tools give the same ten numbers (to 1e-9), then prints times.

Timed, best of --repeats runs each:
  pycocotools: COCOeval(gt, dt, 'keypoints') + evaluate() + accumulate() + summarize(), on COCO objects
               built beforehand (COCO index and loadRes not timed; its printing silenced).
  posekit:     coco_keypoint_eval(gt, pred) on PoseInstances read beforehand.
Also printed, outside the ratio: loading the same in-memory dicts (COCO.createIndex + loadRes
against read_coco_keypoints + read_coco_results).

    .venv/bin/python benchmarks/bench_coco_eval.py [--images 5000] [--repeats 3] [--seed 0]
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import io
import time

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from posekit.data.coco import read_coco_keypoints, read_coco_results
from posekit.metrics.coco import METRIC_NAMES, coco_keypoint_eval
from posekit.skeletons import get_skeleton


def make_dataset(n_images: int, seed: int) -> tuple[dict, list]:
    """Ground truth dict and results list, COCO-shaped, from a fixed seed."""
    rng = np.random.default_rng(seed)
    skeleton = get_skeleton("coco17")
    k = len(skeleton)
    images, annotations, results = [], [], []
    for image_id in range(1, n_images + 1):
        images.append({"id": image_id, "file_name": f"{image_id:012d}.jpg", "width": 640, "height": 480})
        for _ in range(rng.poisson(3)):
            w = float(np.exp(rng.uniform(np.log(8), np.log(350))))  # small, medium and large people
            h = w * rng.uniform(1.2, 2.5)
            x, y = rng.uniform(0, 600), rng.uniform(0, 450)
            crowd = rng.random() < 0.04
            kp = np.zeros((k, 3))
            if not crowd and rng.random() > 0.06:
                labelled = rng.random(k) < rng.uniform(0.4, 1.0)
                kp[labelled, 0] = rng.uniform(x, x + w, labelled.sum())
                kp[labelled, 1] = rng.uniform(y, y + h, labelled.sum())
                kp[labelled, 2] = rng.integers(1, 3, labelled.sum())
            area = w * h * rng.uniform(0.4, 0.8)
            ann = {"id": len(annotations) + 1, "image_id": image_id, "category_id": 1,
                   "iscrowd": int(crowd), "keypoints": kp.ravel().tolist(),
                   "num_keypoints": int((kp[:, 2] > 0).sum()), "bbox": [x, y, w, h], "area": area}
            annotations.append(ann)
            if crowd or rng.random() < 0.1:
                continue
            for _ in range(1 + (rng.random() < 0.15)):  # sometimes a duplicate detection
                pred = kp.copy()
                missing = pred[:, 2] == 0
                pred[missing, 0] = rng.uniform(x, x + w, missing.sum())
                pred[missing, 1] = rng.uniform(y, y + h, missing.sum())
                pred[:, :2] += rng.normal(0, np.sqrt(area) * rng.uniform(0.01, 0.1), (k, 2))
                pred[:, 2] = rng.random(k)
                results.append({"image_id": image_id, "category_id": 1, "keypoints": pred.ravel().tolist(),
                                "score": float(rng.random())})
        for _ in range(rng.poisson(0.7)):  # false positives
            x, y, w = rng.uniform(0, 600), rng.uniform(0, 450), rng.uniform(10, 200)
            pred = np.column_stack([rng.uniform(x, x + w, k), rng.uniform(y, y + 2 * w, k), rng.random(k)])
            results.append({"image_id": image_id, "category_id": 1, "keypoints": pred.ravel().tolist(),
                            "score": float(rng.random() * 0.7)})
    categories = [{"id": 1, "name": "person", "supercategory": "person", "keypoints": list(skeleton.joints),
                   "skeleton": [[a + 1, b + 1] for a, b in skeleton.bones]}]
    return {"images": images, "annotations": annotations, "categories": categories}, results


def best_time(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    gt_dict, results = make_dataset(args.images, args.seed)
    print(f"{len(gt_dict['images'])} images, {len(gt_dict['annotations'])} ground-truth persons "
          f"({sum(a['iscrowd'] for a in gt_dict['annotations'])} crowd), {len(results)} predictions")

    gt_copy, results_copy = copy.deepcopy(gt_dict), copy.deepcopy(results)  # pycocotools edits them

    def load_pycocotools():
        with contextlib.redirect_stdout(io.StringIO()):
            coco_gt = COCO()
            coco_gt.dataset = gt_copy
            coco_gt.createIndex()
            return coco_gt, coco_gt.loadRes(results_copy)

    def load_posekit():
        gt = read_coco_keypoints(gt_dict)
        return gt, read_coco_results(results, gt.skeleton, gt.images)

    load_ref_s, (coco_gt, coco_dt) = best_time(load_pycocotools, 1)
    load_ours_s, (gt, pred) = best_time(load_posekit, 1)

    def run_pycocotools():
        with contextlib.redirect_stdout(io.StringIO()):
            ev = COCOeval(coco_gt, coco_dt, "keypoints")
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        return dict(zip(METRIC_NAMES, ev.stats))

    ref_s, reference = best_time(run_pycocotools, args.repeats)
    ours_s, ours = best_time(lambda: coco_keypoint_eval(gt, pred), args.repeats)

    worst = max(abs(ours[name] - reference[name]) for name in METRIC_NAMES)
    assert worst <= 1e-9, f"posekit and pycocotools differ by {worst}: {ours} vs {reference}"
    print("  ".join(f"{name}={ours[name]:.4f}" for name in METRIC_NAMES))
    print(f"identical to pycocotools (largest difference {worst:.1e})")
    print(f"loading (not in the ratio): pycocotools COCO+loadRes {load_ref_s:.3f} s, "
          f"posekit readers {load_ours_s:.3f} s")
    print(f"evaluate+accumulate+summarize: pycocotools {ref_s:.3f} s, posekit {ours_s:.3f} s, "
          f"posekit is {ref_s / ours_s:.1f}x faster")


if __name__ == "__main__":
    main()
