"""Per-image pose results as JSON: what ``posekit infer`` writes, and reads back.

One file per image::

    {
      "format": "posekit.pose_result", "version": 1,
      "source": "photos/beach.jpg",                 # file name, or e.g. "frame 12"
      "image_size": [640, 480],                     # width, height in pixels
      "skeleton": {"name": "coco17", "joints": ["nose", ...], "bones": [["left_ankle", "left_knee"], ...]},
      "landmark_skeleton": {"name": "blazepose33", "joints": [...]},   # only when persons carry landmarks
      "persons": [                                  # best score first
        {"box": [x1, y1, x2, y2],                   # pixels
         "score": 0.998,                            # person confidence in [0, 1]
         "box_score": 0.93,                         # confidence of the box it was found in
         "track_id": -1,                            # -1: not tracked
         "keypoints": [[x, y, score], ...],         # one per skeleton joint; x, y null when unknown
         "landmarks": [[x, y, score], ...],         # the 33 BlazePose landmarks (BlazePose only)
         "tracking_points": [[x, y], [x, y]]}       # next crop: mid-hip + scale point (BlazePose) or box corners
      ]
    }

Pixels follow posekit's convention: integer coordinates are pixel centres, the image spans
[-0.5, width - 0.5]. Coordinates are written to 0.01 px and scores to 1e-4. The skeleton travels with
the file, so another tool needs no posekit to know the joint order; a custom skeleton (not built
in) is rebuilt from its names and bones when read back.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from posekit.data.safe_pickle import read_json
from posekit.errors import PosekitError
from posekit.pipeline import Person, PoseResult
from posekit.skeletons import Skeleton, get_skeleton, list_skeletons, skeleton_from_dict

FORMAT = "posekit.pose_result"
VERSION = 1
COORDINATE_DECIMALS = 2
SCORE_DECIMALS = 4


def _points(points: np.ndarray, scores: np.ndarray | None = None) -> list:
    """[[x, y(, score)], ...] with NaN coordinates as null."""
    rows = []
    for i, (x, y) in enumerate(np.asarray(points, dtype=float)):
        xy = [None, None] if not (math.isfinite(x) and math.isfinite(y)) else \
            [round(float(x), COORDINATE_DECIMALS), round(float(y), COORDINATE_DECIMALS)]
        rows.append(xy if scores is None else xy + [round(float(scores[i]), SCORE_DECIMALS)])
    return rows


def _skeleton_dict(skeleton: Skeleton) -> dict:
    return {"name": skeleton.name, "joints": list(skeleton.joints),
            "bones": [[skeleton.joints[a], skeleton.joints[b]] for a, b in skeleton.bones]}


def result_to_dict(result: PoseResult) -> dict:
    """The JSON form of one :class:`PoseResult` (see the module docstring)."""
    out = {"format": FORMAT, "version": VERSION, "source": str(result.source),
           "image_size": [int(result.image_size[0]), int(result.image_size[1])],
           "skeleton": _skeleton_dict(result.skeleton)}
    persons = []
    landmark_skeleton = None
    for person in result.persons:
        entry = {"box": [round(float(v), COORDINATE_DECIMALS) for v in person.box],
                 "score": round(float(person.score), SCORE_DECIMALS),
                 "box_score": round(float(person.box_score), SCORE_DECIMALS),
                 "track_id": int(person.track_id),
                 "keypoints": _points(person.keypoints, person.keypoint_scores)}
        if person.landmarks is not None:
            landmark_skeleton = get_skeleton("blazepose33")
            entry["landmarks"] = _points(person.landmarks, person.landmark_scores)
        if person.tracking_points is not None:
            entry["tracking_points"] = _points(person.tracking_points)
        persons.append(entry)
    if landmark_skeleton is not None:
        out["landmark_skeleton"] = _skeleton_dict(landmark_skeleton)
    out["persons"] = persons
    return out


def write_pose_result(result: PoseResult, path) -> Path:
    """Write one result as a JSON file (the form of :func:`result_to_dict`)."""
    path = Path(path)
    try:
        path.write_text(json.dumps(result_to_dict(result), allow_nan=False), encoding="utf-8")
    except OSError as exc:
        raise PosekitError(f"{path}: cannot write ({exc.strerror or type(exc).__name__})") from None
    return path


# ---- reading ---------------------------------------------------------------------------------------

def _field(record, key: str, where: str):
    if not isinstance(record, dict):
        raise PosekitError(f"{where} must be an object")
    if key not in record:
        raise PosekitError(f"{where}: missing '{key}'")
    return record[key]


def _number(value, where: str, low: float = -math.inf, high: float = math.inf) -> float:
    try:
        good = type(value) in (int, float) and math.isfinite(value) and low <= value <= high
    except OverflowError:                          # an integer beyond float range
        good = False
    if not good:
        bounds = "" if (low, high) == (-math.inf, math.inf) else f" in [{low:g}, {high:g}]"
        raise PosekitError(f"{where} must be a finite number{bounds}, got {repr(value)[:40]}")
    return float(value)


def _skeleton(spec, where: str) -> Skeleton:
    name, joints = _field(spec, "name", where), _field(spec, "joints", where)
    bones = spec.get("bones") or []
    if not isinstance(name, str) or not isinstance(joints, list) or not isinstance(bones, list):
        raise PosekitError(f"{where}: 'name' must be a string, 'joints' a list of names and 'bones' a list "
                           f"of name pairs")
    if name in list_skeletons() and get_skeleton(name).joints == tuple(joints):
        return get_skeleton(name)
    return skeleton_from_dict({"name": name, "joints": joints, "bones": bones}, where)


def _point_rows(value, count: int, with_score: bool, where: str) -> tuple[np.ndarray, np.ndarray]:
    width = 3 if with_score else 2
    if not isinstance(value, list) or len(value) != count:
        raise PosekitError(f"{where} must be a list of {count} [x, y{', score' if with_score else ''}] rows")
    points, scores = np.full((count, 2), np.nan), np.zeros(count)
    for i, row in enumerate(value):
        if not isinstance(row, list) or len(row) != width:
            raise PosekitError(f"{where}[{i}] must be [x, y{', score' if with_score else ''}]")
        if row[0] is not None or row[1] is not None:
            points[i] = [_number(row[0], f"{where}[{i}] x"), _number(row[1], f"{where}[{i}] y")]
        if with_score:
            scores[i] = _number(row[2], f"{where}[{i}] score", 0.0, 1.0)
    return points, scores


def _person(entry, skeleton: Skeleton, landmark_count: int | None, where: str) -> Person:
    box = _field(entry, "box", where)
    if not isinstance(box, list) or len(box) != 4:
        raise PosekitError(f"{where}: 'box' must be [x1, y1, x2, y2]")
    box = np.array([_number(v, f"{where}: 'box'") for v in box])
    track_id = _field(entry, "track_id", where) if "track_id" in entry else -1
    if type(track_id) is not int:
        raise PosekitError(f"{where}: 'track_id' must be an integer")
    keypoints, keypoint_scores = _point_rows(_field(entry, "keypoints", where), len(skeleton), True,
                                             f"{where}: 'keypoints'")
    person = Person(box=box, score=_number(_field(entry, "score", where), f"{where}: 'score'", 0.0, 1.0),
                    keypoints=keypoints, keypoint_scores=keypoint_scores, track_id=track_id,
                    box_score=_number(entry.get("box_score", 1.0), f"{where}: 'box_score'"))
    if "landmarks" in entry:
        if landmark_count is None:
            raise PosekitError(f"{where}: has 'landmarks' but the file has no 'landmark_skeleton'")
        person.landmarks, person.landmark_scores = _point_rows(entry["landmarks"], landmark_count, True,
                                                               f"{where}: 'landmarks'")
    if "tracking_points" in entry:
        person.tracking_points, _ = _point_rows(entry["tracking_points"], 2, False, f"{where}: 'tracking_points'")
    return person


def result_from_dict(data, origin: str = "pose result") -> PoseResult:
    """A :class:`PoseResult` from its JSON form; a bad field raises PosekitError naming it."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise PosekitError(f"{origin}: not a posekit pose result (expected \"format\": \"{FORMAT}\")")
    if data.get("version") != VERSION:
        raise PosekitError(f"{origin}: unsupported version {repr(data.get('version'))[:20]} (this posekit "
                           f"reads version {VERSION})")
    size = _field(data, "image_size", origin)
    if (not isinstance(size, list) or len(size) != 2 or any(type(v) is not int or v < 1 for v in size)):
        raise PosekitError(f"{origin}: 'image_size' must be [width, height], positive integers")
    source = data.get("source", "")
    if not isinstance(source, str):
        raise PosekitError(f"{origin}: 'source' must be a string")
    skeleton = _skeleton(_field(data, "skeleton", origin), f"{origin}: 'skeleton'")
    landmark_count = None
    if "landmark_skeleton" in data:
        landmark_count = len(_skeleton(data["landmark_skeleton"], f"{origin}: 'landmark_skeleton'"))
    persons = _field(data, "persons", origin)
    if not isinstance(persons, list):
        raise PosekitError(f"{origin}: 'persons' must be a list")
    return PoseResult([_person(p, skeleton, landmark_count, f"{origin}: persons[{i}]")
                       for i, p in enumerate(persons)], skeleton, (size[0], size[1]), source)


def read_pose_result(path) -> PoseResult:
    """Read a file written by :func:`write_pose_result`."""
    data = read_json(path)
    return result_from_dict(data, str(path))


__all__ = ["result_to_dict", "result_from_dict", "write_pose_result", "read_pose_result", "FORMAT", "VERSION"]
