"""``posekit demo``: the main job, end to end, on real photos bundled with posekit.

Each part of the demo writes into ``--out`` and returns a summary; :func:`run_demo` runs the parts in
turn and returns {part: summary}. The parts:

* ``images`` (:func:`run_image_demo`): every person in three COCO photos (``assets/samples``, several
  people each), found and estimated by :class:`posekit.pipeline.PoseEstimator` with the bundled
  BlazePose models. Writes ``images/<stem>.json`` and ``images/<stem>.png`` (overlay) per photo,
  ``report.html`` (overlays and tables), and scores the keypoints against the photos' COCO
  annotations: ``coco_gt.json``, ``coco_results.json`` (plain COCO files any tool reads) and
  ``coco_eval.json`` (AP/AR).

A video part goes after the images part, in its own sub-folder.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

ASSETS = Path(__file__).parent / "assets"
SAMPLES = ASSETS / "samples"
SAMPLE_ANNOTATIONS = ASSETS / "coco_val_sample.json"


def run_image_demo(out: Path) -> dict:
    """The images part (see the module docstring). Returns the numbers it printed."""
    from posekit.data.coco import read_coco_keypoints, to_coco_dict, write_coco_results
    from posekit.metrics.coco import coco_keypoint_eval
    from posekit.pipeline import PoseEstimator, coco_predictions, infer_images
    from posekit.viz import write_html_report

    out = Path(out)
    paths = sorted(SAMPLES.glob("*.jpg"))
    items = infer_images(PoseEstimator(), paths, out / "images")
    report = write_html_report(out / "report.html", items, title="posekit demo: every person in the sample photos")

    gt = read_coco_keypoints(SAMPLE_ANNOTATIONS)
    ids_by_name = {info.file_name: image_id for image_id, info in gt.images.items()}
    image_ids = [ids_by_name[path.name] for path in paths]
    gt = gt.select(np.isin(gt.image_ids, image_ids))
    gt.images = {image_id: gt.images[image_id] for image_id in image_ids}
    predictions = coco_predictions(zip(image_ids, (item.result for item in items)), gt.skeleton, gt.images)
    (out / "coco_gt.json").write_text(json.dumps(to_coco_dict(gt)), encoding="utf-8")
    write_coco_results(predictions, out / "coco_results.json")
    stats = coco_keypoint_eval(gt, predictions)
    (out / "coco_eval.json").write_text(json.dumps(stats, indent=2), encoding="utf-8")

    annotated = int(np.count_nonzero((gt.visibility > 0).any(axis=1) & ~gt.iscrowd))
    print(f"posekit demo: {len(paths)} sample photos ({SAMPLES})")
    for item in items:
        scores = " ".join(f"{p.score:.2f}" for p in item.result.persons)
        print(f"  {Path(item.result.source).name}: {len(item.result.persons)} persons (scores {scores})")
    print(f"  COCO keypoint AP against the photos' {annotated} annotated persons: {stats['AP']:.3f} "
          f"(AP50 {stats['AP50']:.3f}, AR {stats['AR']:.3f})")
    print(f"  overlays and JSON: {out / 'images'}")
    print(f"  page: {report}")
    print(f"  score again with: posekit eval coco --gt {out / 'coco_gt.json'} --pred {out / 'coco_results.json'}")
    return {"photos": len(paths), "persons": sum(len(item.result.persons) for item in items), **stats}


def run_demo(out: Path) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return {"images": run_image_demo(out)}
