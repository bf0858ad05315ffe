"""COCO keypoint files: ground truth (``person_keypoints_*.json``) and results (predicted persons).

Ground truth: ``{"images": [...], "annotations": [...], "categories": [...]}``, each person annotation
with ``keypoints`` [x, y, v] * K (v: 0 unlabelled, 1 occluded, 2 visible), ``bbox`` x, y, w, h,
``area``, ``iscrowd`` and ``num_keypoints``. Results: a list of ``{"image_id", "category_id",
"keypoints": [x, y, score] * K, "score"}``. Every field used is checked, and a bad one raises
:class:`PosekitError` naming the file and the annotation (by id) or result (by position) at fault.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from posekit.data.safe_pickle import read_json
from posekit.data.structures import ImageInfo, PoseInstances
from posekit.errors import PosekitError
from posekit.skeletons import Skeleton, get_skeleton, list_skeletons

PERSON_CATEGORY_ID = 1
_INT64 = (-(2 ** 63), 2 ** 63)


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _load(source, what: str):
    """The parsed JSON and a name for messages; dicts and lists pass through."""
    if isinstance(source, (dict, list)):
        return source, f"COCO {what}"
    if not isinstance(source, (str, Path)):
        raise PosekitError(f"COCO {what}: expected a path, dict or list, got {type(source).__name__}")
    return read_json(source), str(source)


def _int(value, where: str) -> int:
    if type(value) is not int or not _INT64[0] <= value < _INT64[1]:
        raise PosekitError(f"{where} must be a 64-bit integer, got {_show(value)}")
    return value


def _number(value, where: str) -> float:
    if type(value) not in (int, float):
        raise PosekitError(f"{where} must be a number, got {_show(value)}")
    try:
        out = float(value)
    except OverflowError:
        raise PosekitError(f"{where} is too large") from None
    if not math.isfinite(out):
        raise PosekitError(f"{where} must be finite, got {_show(value)}")
    return out


def _numbers(value, length: int, where: str) -> np.ndarray:
    if not isinstance(value, list) or not set(map(type, value)) <= {int, float}:
        raise PosekitError(f"{where} must be a list of numbers")
    if len(value) != length:
        raise PosekitError(f"{where} must have {length} numbers, got {len(value)}")
    try:
        arr = np.array(value, dtype=float)
    except OverflowError:
        raise PosekitError(f"{where} holds a number too large") from None
    if not np.all(np.isfinite(arr)):
        raise PosekitError(f"{where} must hold finite numbers (no NaN or infinity)")
    return arr


def _box(value, where: str) -> np.ndarray:
    box = _numbers(value, 4, where)
    if box[2] < 0 or box[3] < 0:
        raise PosekitError(f"{where} must have a non-negative width and height")
    return box


def _field(record: dict, key: str, where: str):
    if key not in record:
        raise PosekitError(f"{where}: missing '{key}'")
    return record[key]


def _list_field(data: dict, key: str, origin: str) -> list:
    value = _field(data, key, origin)
    if not isinstance(value, list):
        raise PosekitError(f"{origin}: '{key}' must be a list")
    return value


def _person_category(categories: list, origin: str) -> dict:
    """The category named 'person', else the only one with keypoint names."""
    for i, cat in enumerate(categories):
        if not isinstance(cat, dict):
            raise PosekitError(f"{origin}: categories[{i}] must be an object")
    persons = [c for c in categories if c.get("name") == "person"]
    if len(persons) > 1:
        raise PosekitError(f"{origin}: several categories are named 'person'")
    if not persons:
        persons = [c for c in categories if "keypoints" in c]
        if len(persons) != 1:
            raise PosekitError(f"{origin}: no category named 'person' (nor a single one with 'keypoints')")
    return persons[0]


def _category_skeleton(category: dict, skeleton, origin: str) -> Skeleton:
    """The given skeleton (checked against the category), or the known one with the category's names."""
    names = category.get("keypoints")
    if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names)):
        raise PosekitError(f"{origin}: the person category's 'keypoints' must be a list of names")
    if skeleton is not None:
        skel = get_skeleton(skeleton)
        if names is not None and len(names) != len(skel):
            raise PosekitError(f"{origin}: the person category has {len(names)} keypoints, "
                               f"skeleton {skel.name!r} has {len(skel)}")
        return skel
    if names is None:
        raise PosekitError(f"{origin}: the person category has no 'keypoints' names; pass skeleton=")
    for name in list_skeletons():
        skel = get_skeleton(name)
        if skel.joints == tuple(names):
            return skel
    raise PosekitError(f"{origin}: the person category's keypoint names match no known skeleton "
                       f"({', '.join(list_skeletons())}); pass skeleton=")


def _image_info(record, where: str) -> ImageInfo:
    if not isinstance(record, dict):
        raise PosekitError(f"{where} must be an object")
    image_id = _int(_field(record, "id", where), f"{where}: 'id'")
    file_name = record.get("file_name", "")
    if not isinstance(file_name, str):
        raise PosekitError(f"{where}: 'file_name' must be a string")
    size = []
    for key in ("width", "height"):
        value = _int(record.get(key, 0), f"{where}: '{key}'")
        if value < 0:
            raise PosekitError(f"{where}: '{key}' must not be negative")
        size.append(value)
    return ImageInfo(id=image_id, file_name=file_name, width=size[0], height=size[1])


def read_coco_keypoints(source, skeleton=None) -> PoseInstances:
    """Read COCO keypoint ground truth (a path or the parsed dict) as :class:`PoseInstances`.

    The persons are the annotations of the category named 'person' (or of the only category with
    keypoint names); other categories are skipped. Its keypoint names pick the skeleton (coco17,
    posetrack18 or any registered one) unless ``skeleton`` is given. ``bbox``, ``area``,
    ``iscrowd``, ``num_keypoints`` and ``track_id`` are optional (NaN, NaN, 0, the labelled count,
    -1); a ``num_keypoints`` that disagrees with the labels is an error. Unlabelled keypoints keep the
    file's coordinates. ``meta`` holds the source and the person category id.
    """
    data, origin = _load(source, "annotations")
    if not isinstance(data, dict):
        raise PosekitError(f"{origin}: expected an object with 'images', 'annotations' and 'categories'")
    image_list = _list_field(data, "images", origin)
    annotations = _list_field(data, "annotations", origin)
    category = _person_category(_list_field(data, "categories", origin), origin)
    category_id = _int(_field(category, "id", f"{origin}: person category"),
                       f"{origin}: person category 'id'")
    skel = _category_skeleton(category, skeleton, origin)
    k = len(skel)

    images: dict[int, ImageInfo] = {}
    for i, record in enumerate(image_list):
        info = _image_info(record, f"{origin}: images[{i}]")
        if info.id in images:
            raise PosekitError(f"{origin}: image id {info.id} appears twice")
        images[info.id] = info

    columns = {name: [] for name in ("keypoints", "visibility", "image_ids", "boxes", "areas",
                                     "iscrowd", "track_ids", "ids")}
    seen_ids = set()
    for i, ann in enumerate(annotations):
        where = f"{origin}: annotations[{i}]"
        if not isinstance(ann, dict):
            raise PosekitError(f"{where} must be an object")
        if _int(_field(ann, "category_id", where), f"{where}: 'category_id'") != category_id:
            continue
        ann_id = _int(_field(ann, "id", where), f"{where}: 'id'")
        where = f"{origin}: annotation id {ann_id}"
        if ann_id in seen_ids:
            raise PosekitError(f"{where} appears twice")
        seen_ids.add(ann_id)
        image_id = _int(_field(ann, "image_id", where), f"{where}: 'image_id'")
        if image_id not in images:
            raise PosekitError(f"{where}: image_id {image_id} is not in 'images'")
        kp = _numbers(_field(ann, "keypoints", where), 3 * k, f"{where}: 'keypoints'").reshape(k, 3)
        flags = ann["keypoints"][2::3]
        if not set(flags) <= {0, 1, 2}:
            raise PosekitError(f"{where}: 'keypoints' visibility flags must be 0, 1 or 2")
        labelled = k - flags.count(0)
        if "num_keypoints" in ann and _int(ann["num_keypoints"], f"{where}: 'num_keypoints'") != labelled:
            raise PosekitError(f"{where}: 'num_keypoints' is {ann['num_keypoints']} but "
                               f"{labelled} keypoints are labelled")
        box = _box(ann["bbox"], f"{where}: 'bbox'") if "bbox" in ann else np.full(4, np.nan)
        area = _number(ann["area"], f"{where}: 'area'") if "area" in ann else np.nan
        if area < 0:
            raise PosekitError(f"{where}: 'area' must not be negative")
        crowd = ann.get("iscrowd", 0)
        if crowd not in (0, 1) or type(crowd) not in (int, bool):
            raise PosekitError(f"{where}: 'iscrowd' must be 0 or 1, got {_show(crowd)}")
        track = _int(ann.get("track_id", -1), f"{where}: 'track_id'")
        for name, value in (("keypoints", kp[:, :2]), ("visibility", kp[:, 2]), ("image_ids", image_id),
                            ("boxes", box), ("areas", area), ("iscrowd", bool(crowd)),
                            ("track_ids", track), ("ids", ann_id)):
            columns[name].append(value)
    n = len(columns["ids"])
    return PoseInstances(
        skel, np.reshape(columns["keypoints"], (n, k, 2)), np.reshape(columns["visibility"], (n, k)),
        np.array(columns["image_ids"], dtype=np.int64), boxes=np.reshape(columns["boxes"], (n, 4)),
        areas=np.array(columns["areas"], dtype=float), iscrowd=np.array(columns["iscrowd"], dtype=bool),
        track_ids=np.array(columns["track_ids"], dtype=np.int64),
        ids=np.array(columns["ids"], dtype=np.int64),
        images=images, meta={"source": origin, "category_id": category_id})


def read_coco_results(source, skeleton, image_ids=None, *, category_id: int = PERSON_CATEGORY_ID
                      ) -> PoseInstances:
    """Read COCO keypoint results (a path or the parsed list) as :class:`PoseInstances`.

    Each result's keypoint scores become ``visibility``; ``bbox`` (optional) becomes ``boxes``.
    Results of another ``category_id`` are skipped, as pycocotools does (but a non-empty list with
    none of ``category_id`` is an error); a result without one counts as a person. ``ids`` are the
    results' ``id`` where given, else their 1-based position in the list.
    With ``image_ids`` (e.g. the ground truth's ``images``), a result on any other image is an error.
    An empty list gives no instances.
    """
    data, origin = _load(source, "results")
    skel = get_skeleton(skeleton)
    k = len(skel)
    if not isinstance(data, list):
        raise PosekitError(f"{origin}: expected a list of results")
    known_images = None if image_ids is None else set(image_ids)
    columns = {name: [] for name in ("keypoints", "image_ids", "scores", "boxes", "ids")}
    other_category = None
    for i, result in enumerate(data):
        where = f"{origin}: result {i}"
        if not isinstance(result, dict):
            raise PosekitError(f"{where} must be an object")
        result_category = _int(result.get("category_id", category_id), f"{where}: 'category_id'")
        if result_category != category_id:
            other_category = result_category
            continue
        image_id = _int(_field(result, "image_id", where), f"{where}: 'image_id'")
        if known_images is not None and image_id not in known_images:
            raise PosekitError(f"{where}: image_id {image_id} is not an image of the ground truth")
        columns["keypoints"].append(
            _numbers(_field(result, "keypoints", where), 3 * k, f"{where}: 'keypoints'").reshape(k, 3))
        columns["image_ids"].append(image_id)
        columns["scores"].append(_number(_field(result, "score", where), f"{where}: 'score'"))
        columns["boxes"].append(_box(result["bbox"], f"{where}: 'bbox'") if "bbox" in result
                                else np.full(4, np.nan))
        columns["ids"].append(_int(result.get("id", i + 1), f"{where}: 'id'"))
    n = len(columns["ids"])
    if n == 0 and other_category is not None:
        raise PosekitError(f"{origin}: no result has category_id {category_id} (found {other_category}); "
                           f"pass category_id=")
    kp = np.reshape(columns["keypoints"], (n, k, 3))
    return PoseInstances(
        skel, kp[:, :, :2], kp[:, :, 2], np.array(columns["image_ids"], dtype=np.int64),
        boxes=np.reshape(columns["boxes"], (n, 4)), scores=np.array(columns["scores"], dtype=float),
        ids=np.array(columns["ids"], dtype=np.int64), meta={"source": origin, "category_id": category_id})


def _finite_rows(instances: PoseInstances, what: str):
    for name in ("keypoints", "visibility", "scores"):
        values = getattr(instances, name)
        bad = ~np.isfinite(values).all(axis=tuple(range(1, values.ndim)))
        if bad.any():
            raise PosekitError(f"{what}: instance id {instances.ids[np.argmax(bad)]} has non-finite {name}")


def _interleave(keypoints: np.ndarray, third: np.ndarray) -> list:
    return np.concatenate([keypoints, third[:, None]], axis=1).ravel().tolist()


def _box_or_none(box: np.ndarray):
    return box.tolist() if np.isfinite(box).all() else None


def write_coco_results(instances: PoseInstances, path) -> None:
    """Write predictions as a COCO results JSON list (keypoint scores as the third value)."""
    _finite_rows(instances, str(path))
    category_id = int(instances.meta.get("category_id", PERSON_CATEGORY_ID))
    results = []
    for i in range(len(instances)):
        result = {"id": int(instances.ids[i]), "image_id": int(instances.image_ids[i]),
                  "category_id": category_id,
                  "keypoints": _interleave(instances.keypoints[i], instances.visibility[i]),
                  "score": float(instances.scores[i])}
        box = _box_or_none(instances.boxes[i])
        if box is not None:
            result["bbox"] = box
        results.append(result)
    try:
        Path(path).write_text(json.dumps(results), encoding="utf-8")
    except OSError as exc:
        raise PosekitError(f"{path}: cannot write ({exc.strerror or type(exc).__name__})") from None


def to_coco_dict(instances: PoseInstances) -> dict:
    """Ground truth as a COCO keypoints dict (what :func:`read_coco_keypoints` reads back).

    Visibility must hold COCO flags (0, 1, 2); NaN boxes and areas are left out, as are unknown
    track ids. Images without an ``ImageInfo`` get one with only their id.
    """
    what = "to_coco_dict"
    if not np.all(np.isin(instances.visibility, (0, 1, 2))):
        raise PosekitError(f"{what}: visibility must be COCO flags 0, 1 or 2")
    usable = (np.isfinite(instances.keypoints).all(axis=-1) | (instances.visibility == 0)).all(axis=1)
    if not usable.all():
        raise PosekitError(f"{what}: instance id {instances.ids[np.argmin(usable)]} "
                           f"has a labelled keypoint that is not finite")
    skel = instances.skeleton
    category_id = int(instances.meta.get("category_id", PERSON_CATEGORY_ID))
    images = dict(instances.images)
    for image_id in np.unique(instances.image_ids).tolist():
        images.setdefault(image_id, ImageInfo(id=image_id))
    annotations = []
    for i in range(len(instances)):
        vis = instances.visibility[i]
        ann = {"id": int(instances.ids[i]), "image_id": int(instances.image_ids[i]),
               "category_id": category_id,
               "keypoints": _interleave(np.nan_to_num(instances.keypoints[i], nan=0.0), vis),
               "num_keypoints": int(np.count_nonzero(vis)), "iscrowd": int(instances.iscrowd[i])}
        box = _box_or_none(instances.boxes[i])
        if box is not None:
            ann["bbox"] = box
        if np.isfinite(instances.areas[i]):
            ann["area"] = float(instances.areas[i])
        if instances.track_ids[i] >= 0:
            ann["track_id"] = int(instances.track_ids[i])
        annotations.append(ann)
    return {
        "images": [{"id": int(info.id), "file_name": info.file_name, "width": int(info.width),
                    "height": int(info.height)} for info in images.values()],
        "annotations": annotations,
        "categories": [{"id": category_id, "name": "person", "supercategory": "person",
                        "keypoints": list(skel.joints),
                        "skeleton": [[a + 1, b + 1] for a, b in skel.bones]}],
    }
