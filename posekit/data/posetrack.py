"""PoseTrack 2018 per-sequence JSON files (COCO-style video format), for ground truth and predictions.

One file per video sequence::

    {"images": [{"id", "file_name", "vid_id", "frame_id", "nframes", "is_labeled",
                 "ignore_regions_x": [[x, ...], ...], "ignore_regions_y": [[y, ...], ...], ...}],
     "annotations": [{"id", "image_id", "track_id", "keypoints": [x, y, v] * 17, "scores": [] | [s] * 17,
                      "bbox": [x, y, w, h], "bbox_head": [x, y, w, h], ...}],
     "categories": [{"keypoints": [17 names], ...}]}

Ground truth has ``v`` in {0, 1} (1 = labelled) and empty ``scores``; prediction files (what the PoseTrack
evaluation ``poseval`` reads) carry per-keypoint confidences in ``scores``, which then become the
visibility column; without them the ``v`` column is used. An instance score comes from an optional
``score`` field (1 otherwise). ``bbox_head`` (x, y, w, h) becomes ``head_boxes`` (x1, y1, x2, y2), the PCKh
normaliser of poseval. Coordinates are kept as in the file (0-based pixels).

Each image's ``sequence`` is the folder of its ``file_name`` (``images/val/009473_mpii_test/000000.jpg`` ->
``009473_mpii_test``, the name of the annotation file), or ``vid_id`` when the file name has no folder;
``frame_index`` is the number in the file name (``000000`` -> 0), or ``frame_id`` modulo 10000 (PoseTrack18
image ids are ``1`` + 6-digit video id + 4-digit frame) when the name is not a number. ``meta["nframes"]``
maps each sequence to its ``nframes`` (the video's length; only some frames are listed and labelled).
Unlabelled keypoints keep the file's placeholder coordinates (0, 0) with visibility 0.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from posekit.data.safe_pickle import describe, numeric, read_json, require
from posekit.data.structures import ImageInfo, PoseInstances
from posekit.errors import PosekitError
from posekit.skeletons import get_skeleton

FRAME_DIGITS = 10000  # PoseTrack18 image id = 10000000000 + video id * 10000 + frame


def read_posetrack(path) -> PoseInstances:
    """Read one PoseTrack18 JSON file (ground truth or predictions) into :class:`PoseInstances`."""
    path = Path(path)
    skeleton = get_skeleton("posetrack18")
    k = len(skeleton)
    data = read_json(path)
    where = str(path)
    images_json = require(data, "images", where)
    annotations = require(data, "annotations", where)
    if not isinstance(images_json, list) or not isinstance(annotations, list):
        raise PosekitError(f"{path}: fields 'images' and 'annotations' must be lists")
    _check_categories(data.get("categories"), skeleton, path)
    images, nframes = {}, {}
    for i, image in enumerate(images_json):
        info = _image_info(image, f"{path}: images[{i}]")
        if info.id in images:
            raise PosekitError(f"{path}: images[{i}]: duplicate image id {info.id}")
        images[info.id] = info
        if "nframes" in image:
            nframes[info.sequence] = _integer(image["nframes"], f"{path}: images[{i}]: field 'nframes'")

    n = len(annotations)
    keypoints, visibility = np.zeros((n, k, 2)), np.zeros((n, k))
    image_ids, track_ids, ids = (np.zeros(n, dtype=np.int64) for _ in range(3))
    boxes, head_boxes = np.full((n, 4), np.nan), np.full((n, 4), np.nan)
    scores, iscrowd = np.ones(n), np.zeros(n, dtype=bool)
    for i, ann in enumerate(annotations):
        where = f"{path}: annotations[{i}]"
        image_ids[i] = _integer(require(ann, "image_id", where), f"{where}: field 'image_id'")
        if image_ids[i] not in images:
            raise PosekitError(f"{where}: image_id {image_ids[i]} is not among the file's images")
        flat = numeric(require(ann, "keypoints", where), f"{where}: field 'keypoints'", (None,))
        if flat.size != 3 * k:
            raise PosekitError(f"{where}: field 'keypoints' must hold {3 * k} numbers (x, y, v for "
                               f"{k} joints), got {flat.size}")
        keypoints[i] = flat.reshape(k, 3)[:, :2]
        visibility[i] = flat.reshape(k, 3)[:, 2]
        point_scores = ann.get("scores")
        if point_scores is not None and point_scores != []:
            visibility[i] = numeric(point_scores, f"{where}: field 'scores'", (k,))
        ids[i] = _integer(ann.get("id", i + 1), f"{where}: field 'id'")
        track_ids[i] = _integer(ann.get("track_id", -1), f"{where}: field 'track_id'")
        if "bbox" in ann:
            boxes[i] = numeric(ann["bbox"], f"{where}: field 'bbox'", (4,))
        if "bbox_head" in ann:
            x, y, w, h = numeric(ann["bbox_head"], f"{where}: field 'bbox_head'", (4,))
            head_boxes[i] = (x, y, x + w, y + h)
        if "score" in ann:
            scores[i] = numeric(ann["score"], f"{where}: field 'score'", ())
        if "iscrowd" in ann:
            iscrowd[i] = _flag(ann["iscrowd"], f"{where}: field 'iscrowd'")
    has_head = any(isinstance(a, dict) and "bbox_head" in a for a in annotations)
    return PoseInstances(skeleton, keypoints, visibility, image_ids, boxes=boxes, scores=scores,
                         iscrowd=iscrowd, track_ids=track_ids, head_boxes=head_boxes if has_head else None,
                         ids=ids, images=images, meta={"source": str(path), "nframes": nframes})


def read_posetrack_dir(directory) -> dict[str, PoseInstances]:
    """Every ``*.json`` of a folder (one sequence each, e.g. ``annotations/val``), keyed by file stem."""
    directory = Path(directory)
    if not directory.is_dir():
        raise PosekitError(f"{directory}: no such folder")
    files = sorted(directory.glob("*.json"))
    if not files:
        raise PosekitError(f"{directory}: no .json sequence files")
    return {f.stem: read_posetrack(f) for f in files}


def _check_categories(categories, skeleton, path: Path):
    """A file that names its keypoints must name posetrack18's, in order."""
    if categories is None:
        return
    if not isinstance(categories, list):
        raise PosekitError(f"{path}: field 'categories' must be a list")
    for c, category in enumerate(categories):
        names = category.get("keypoints") if isinstance(category, dict) else None
        if names is not None and names != list(skeleton.joints):
            raise PosekitError(f"{path}: categories[{c}]: keypoints are not the {len(skeleton)} "
                               f"PoseTrack18 joints in order")


def _image_info(image, where: str) -> ImageInfo:
    image_id = _integer(require(image, "id", where), f"{where}: field 'id'")
    file_name = require(image, "file_name", where)
    if not isinstance(file_name, str):
        raise PosekitError(f"{where}: field 'file_name' must be a string")
    name = Path(file_name)
    sequence = name.parent.name or None
    if sequence is None and "vid_id" in image:
        sequence = str(image["vid_id"])
    if name.stem.isascii() and name.stem.isdigit():
        frame_index = int(name.stem)
    elif "frame_id" in image:
        frame_index = _integer(image["frame_id"], f"{where}: field 'frame_id'") % FRAME_DIGITS
    else:
        frame_index = None
    regions = _ignore_regions(image, where)
    size = [_integer(image.get(key, 0), f"{where}: field {key!r}") for key in ("width", "height")]
    if min(size) < 0:
        raise PosekitError(f"{where}: fields 'width' and 'height' must not be negative")
    return ImageInfo(id=image_id, file_name=file_name, width=size[0], height=size[1], sequence=sequence,
                     frame_index=frame_index,
                     is_labeled=_flag(image.get("is_labeled", True), f"{where}: field 'is_labeled'"),
                     ignore_regions=regions)


def _ignore_regions(image: dict, where: str) -> list[np.ndarray]:
    xs, ys = image.get("ignore_regions_x", []), image.get("ignore_regions_y", [])
    if not isinstance(xs, list) or not isinstance(ys, list) or len(xs) != len(ys):
        raise PosekitError(f"{where}: fields 'ignore_regions_x' and 'ignore_regions_y' must be lists of "
                           f"the same length")
    regions = []
    for r, (x, y) in enumerate(zip(xs, ys, strict=True)):
        x = numeric(x, f"{where}: ignore_regions_x[{r}]", (None,))
        y = numeric(y, f"{where}: ignore_regions_y[{r}]", (None,))
        if len(x) != len(y):
            raise PosekitError(f"{where}: ignore region {r} has {len(x)} x and {len(y)} y coordinates")
        regions.append(np.stack([x, y], axis=1))
    return regions


def _integer(value, where: str) -> int:
    """A JSON integer (an integral float is accepted; booleans, strings and fractions are not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or (isinstance(value, float) and not value.is_integer()) or not -2**63 <= value < 2**63:
        raise PosekitError(f"{where}: expected an integer, got {describe(value)}")
    return int(value)


def _flag(value, where: str) -> bool:
    if isinstance(value, bool) or value in (0, 1):
        return bool(value)
    raise PosekitError(f"{where}: expected true/false, got {describe(value)}")


def write_posetrack(instances: PoseInstances, path) -> Path:
    """Write :class:`PoseInstances` (posetrack18 skeleton) as one PoseTrack18 JSON file.

    The visibility column is written both as ``v`` and as per-keypoint ``scores``, so the file reads back
    the same and poseval finds the confidences it ranks predictions by.
    """
    path = Path(path)
    skeleton = get_skeleton("posetrack18")
    if instances.skeleton.name != skeleton.name:
        raise PosekitError(f"{path}: PoseTrack files hold the posetrack18 skeleton, got "
                           f"{instances.skeleton.name!r}")
    images = []
    for info in instances.images.values():
        item = {"id": int(info.id), "file_name": info.file_name, "is_labeled": bool(info.is_labeled),
                "ignore_regions_x": [r[:, 0].tolist() for r in info.ignore_regions],
                "ignore_regions_y": [r[:, 1].tolist() for r in info.ignore_regions]}
        if info.sequence in instances.meta.get("nframes", {}):
            item["nframes"] = instances.meta["nframes"][info.sequence]
        if info.width and info.height:
            item["width"], item["height"] = int(info.width), int(info.height)
        images.append(item)
    annotations = []
    for i in range(len(instances)):
        kp = np.concatenate([instances.keypoints[i], instances.visibility[i][:, None]], axis=1)
        item = {"id": int(instances.ids[i]), "image_id": int(instances.image_ids[i]),
                "track_id": int(instances.track_ids[i]), "keypoints": _finite(kp, path, i).ravel().tolist(),
                "scores": instances.visibility[i].tolist(), "score": float(instances.scores[i]),
                "iscrowd": bool(instances.iscrowd[i]), "category_id": 1}
        if np.all(np.isfinite(instances.boxes[i])):
            item["bbox"] = instances.boxes[i].tolist()
        if instances.head_boxes is not None and np.all(np.isfinite(instances.head_boxes[i])):
            x1, y1, x2, y2 = instances.head_boxes[i].tolist()
            item["bbox_head"] = [x1, y1, x2 - x1, y2 - y1]
        annotations.append(item)
    categories = [{"id": 1, "name": "person", "supercategory": "person",
                   "keypoints": list(skeleton.joints),
                   "skeleton": [[a + 1, b + 1] for a, b in skeleton.bones]}]
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def _finite(values: np.ndarray, path: Path, row: int) -> np.ndarray:
    if not np.all(np.isfinite(values)):
        raise PosekitError(f"{path}: person {row} has NaN keypoints; PoseTrack files need numbers "
                           f"(use visibility 0 for missing joints)")
    return values


__all__ = ["read_posetrack", "read_posetrack_dir", "write_posetrack"]
