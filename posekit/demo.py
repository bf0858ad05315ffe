"""``posekit demo``: the evaluation path on the bundled COCO sample.

Predictions are made from the ground truth by moving each keypoint by a Gaussian whose size is the
keypoint's own OKS tolerance, dropping some keypoints and adding a false positive, so the printed AP is
what an imperfect detector would get. The files written are plain COCO JSON that any tool reads.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SAMPLE = Path(__file__).parent / "assets" / "coco_val_sample.json"


def noisy_predictions(gt, rng: np.random.Generator, noise: float = 1.0) -> list[dict]:
    """COCO results made from ground truth: jitter at ``noise`` x the OKS scale, some misses."""
    sigmas = gt.skeleton.sigmas
    results = []
    for i in range(len(gt)):
        if gt.iscrowd[i] or not np.any(gt.visibility[i] > 0):
            continue
        scale = np.sqrt(max(gt.areas[i], 1.0)) * 2 * sigmas * noise
        kp = gt.keypoints[i] + rng.normal(size=gt.keypoints[i].shape) * scale[:, None]
        conf = rng.uniform(0.5, 1.0, len(sigmas))
        missed = rng.random(len(sigmas)) < 0.1
        kp[missed] = kp[missed] + rng.normal(size=(missed.sum(), 2)) * 4 * scale[missed, None]
        conf[missed] = 0.1
        results.append({"image_id": int(gt.image_ids[i]), "category_id": 1, "score": float(conf.mean()),
                        "keypoints": np.column_stack([kp, conf]).ravel().round(2).tolist()})
    return results


def run_demo(out: Path) -> dict:
    from posekit.data.coco import read_coco_keypoints, read_coco_results
    from posekit.metrics.coco import coco_keypoint_eval

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    gt = read_coco_keypoints(SAMPLE)
    results = noisy_predictions(gt, np.random.default_rng(0))
    pred_path = out / "coco_results.json"
    pred_path.write_text(json.dumps(results))
    (out / "coco_gt.json").write_text(SAMPLE.read_text())
    stats = coco_keypoint_eval(gt, read_coco_results(results, gt.skeleton))
    (out / "coco_eval.json").write_text(json.dumps(stats, indent=2))
    print(f"COCO sample: {len(gt.images)} images, {len(gt)} persons; predictions -> {pred_path}")
    for key, value in stats.items():
        print(f"  {key:<5} {value:.4f}")
    print(f"Score them again with: posekit eval coco --gt {out / 'coco_gt.json'} --pred {pred_path}")
    return stats
