"""Keypoints of every person in an image, out of the box: detect, estimate landmarks, clean up.

:class:`PoseEstimator` runs the bundled BlazePose models (no download, no training) or, with
``model=`` and ``checkpoint=``, a trained heatmap model (HRNet, DITN; see "Heatmap models" below).
With BlazePose:

1. Persons are found by the multi-scale BlazePose detector (:class:`posekit.detect.BlazePoseDetector`),
   or taken from ``boxes=`` (another detector's, or annotations).
2. Each person's 33 landmarks come from the BlazePose Full model on a rotated crop
   (:class:`posekit.models.blazepose.BlazePoseLandmarker`). An external box gives only a rough upright
   crop, so its person is estimated twice: the second time on the crop that the first pass's
   alignment points define (MediaPipe's tracking crop). On the COCO sample with ground-truth boxes
   this raised the AP from 0.45 to 0.57 (with a 56-AP detector's boxes, from 0.45 to 0.50).
3. Persons whose pose flag (the landmark model's own confidence that a person fills the crop) is
   below ``min_person_score`` are dropped.
4. The landmarks are mapped to the output skeleton (``coco17`` by default) with
   :func:`posekit.skeletons.convert_keypoints`; all 33 stay on the :class:`Person`.
5. The person box bounds the landmarks whose score reaches ``BOX_LANDMARK_SCORE``, enlarged by
   ``BOX_MARGIN`` of its size on every side (a box around joints misses the head top, hands and
   feet). Without two such landmarks it is the detector's (or the given) box.
6. Two detections that converged on the same person are merged: object keypoint similarity
   (COCO's OKS on the 17 COCO landmarks) above ``DUPLICATE_OKS`` marks the lower-scoring one a
   duplicate (:func:`oks_nms`).
7. Persons are sorted by score (the pose flag), best first.

Large images. Crops are cut from an image pyramid (halved copies, area-averaged) at the level where
the crop shrinks by at most 2x, so bilinear sampling does not alias; detection runs on the first level
whose long side is at most ``MAX_DETECTION_SIDE``. Results are always in the input image's pixels.
On the COCO sample enlarged 6x with pixel noise (sigma 30 grey levels, standing in for the fine
texture of a 4000-pixel photo), AP was 0.37 with the pyramid and 0.13 without (posekit's detector),
0.53 and 0.42 with ground-truth boxes; an 8000 x 6000 photo takes about 0.3 s after decoding.

Heatmap models (``model="hrnet"``, ``"ditn-w32"``..., weights resolved by
:func:`posekit.models.heatmap_backend.load_heatmap_model`: PyTorch, or ONNX Runtime for ``.onnx``):

1. Persons come from the same detector, or from ``boxes=``.
2. Each box becomes a crop window as in training and HRNet's testing: centred on the box, widened
   or heightened to the model input's aspect ratio, enlarged by ``BOX_PADDING`` (1.25)
   (:func:`posekit.data.topdown.box_windows`); the crop is cut with a bilinear affine warp (zero
   border) from the pyramid level where it shrinks by less than 2x, normalised as in training, and
   run in batches. Heatmaps are decoded by the model's codec (quarter offset, or DARK with
   ``dark=True``), averaged with those of the mirrored crop by default (``flip_test``), and mapped
   back to image pixels.
3. Person score: MMPose's rescoring, the box score x the mean of the keypoint scores above
   ``RESCORE_THRESHOLD`` (:func:`posekit.data.topdown.rescore`); persons below ``min_person_score``
   (default ``HEATMAP_MIN_PERSON_SCORE``) are dropped. This score is also the score of a COCO result.
4. Person box: as with BlazePose, the box around the keypoints scoring at least
   ``KEYPOINT_BOX_SCORE``, enlarged by ``BOX_MARGIN``, else the detector's (or the given) box.
   Duplicates are removed with OKS-NMS on the model's keypoints (``duplicate_oks``).
5. Keypoints are in the model's keypoint set (``coco17`` or ``mpii16``), converted to ``skeleton``
   when it names another set with a mapping.
6. Video (:meth:`PoseEstimator.from_rois`): ``tracking_points`` are the person box's corners
   (x1, y1), (x2, y2) before clipping to the image; the next frame's crop is the window of that box,
   so a person is followed by a box around its own keypoints.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from posekit.data.transforms import to_rgb_uint8
from posekit.detect.blazepose import BlazePoseDetector
from posekit.detect.boxes import Detections, clip_boxes, oks_nms
from posekit.errors import PosekitError
from posekit.models.blazepose import INPUT_SIZE as LANDMARK_INPUT_SIZE
from posekit.models.blazepose import NUM_LANDMARKS, BlazePoseLandmarker
from posekit.skeletons import Skeleton, convert_keypoints, get_mapping, get_skeleton

LANDMARK_SKELETON = "blazepose33"
# Landmarks that count for the person box: score (min of visibility and presence) at least this.
BOX_LANDMARK_SCORE = 0.5
# Margin added on each side of the landmark box, as a fraction of its width / height. On the COCO
# sample (ground-truth boxes in, landmarks out), the mean IoU with the annotated boxes was
# 0.64 / 0.71 / 0.72 / 0.71 for margins 0 / 0.05 / 0.08 / 0.12.
BOX_MARGIN = 0.08
# Two persons whose keypoint similarity (OKS) exceeds this are one person seen twice. On the COCO
# sample, persons estimated from overlapping boxes of a 56-AP detector on the same annotated person
# scored OKS >= 0.66 (22 pairs, median 0.98), two different persons at most 0.23 (the real samples
# of COCO, MPII and PoseTrack, with posekit's detector and with those boxes).
DUPLICATE_OKS = 0.5
# Detection runs on the first pyramid level whose long side is at most this many pixels.
MAX_DETECTION_SIDE = 1280
# Heatmap models: crop window = box (aspect fixed to the model input) x this (HRNet, MMPose).
BOX_PADDING = 1.25
# Heatmap models: keypoint scores above this count in the person score (MMPose's rescoring).
RESCORE_THRESHOLD = 0.2
# Heatmap models: keypoints scoring at least this bound the person box (the drawing default).
KEYPOINT_BOX_SCORE = 0.3
# Heatmap models: lowest person score kept by default. A box the detector gives at its 0.5
# threshold keeps its person when the confident joints average 0.4 or more.
HEATMAP_MIN_PERSON_SCORE = 0.2


# ---- results -------------------------------------------------------------------------------------

@dataclass
class Person:
    """One person in one image. Coordinates are pixels of the input image (pixel centres at integers).

    box             (4,) x1, y1, x2, y2, from the landmarks when available, else the detector's box
    score           person confidence in [0, 1]: the landmark model's pose flag (BlazePose), or the
                    box score x the mean confident keypoint score (heatmap models, whose keypoint
                    scores are heatmap maxima: about [0, 1] for a trained model)
    keypoints       (K, 2) in the output skeleton (NaN for a joint BlazePose has no counterpart for)
    keypoint_scores (K,) in [0, 1]
    track_id        identity across video frames, -1 until a tracker sets it
    landmarks       (33, 2) BlazePose landmarks, all kept; landmark_scores (33,) (None with heatmap models)
    tracking_points (2, 2) what the next frame's crop is made from: mid-hip and full-body scale
                    point (BlazePose), the box corners (x1, y1), (x2, y2) (heatmap models)
    box_score       confidence of the box the person was found in: the detector's score, the score
                    given with an external box, 1 when none was given
    """

    box: np.ndarray
    score: float
    keypoints: np.ndarray
    keypoint_scores: np.ndarray
    track_id: int = -1
    landmarks: np.ndarray | None = None
    landmark_scores: np.ndarray | None = None
    tracking_points: np.ndarray | None = None
    box_score: float = 1.0


@dataclass
class PoseResult:
    """All persons of one image or video frame, with the skeleton of their keypoints."""

    persons: list[Person]
    skeleton: Skeleton
    image_size: tuple[int, int]          # (width, height)
    source: str = ""                     # file name or "frame 12"

    def __len__(self) -> int:
        return len(self.persons)

    def keypoints(self) -> np.ndarray:
        """(N, K, 2)"""
        k = len(self.skeleton)
        return np.array([p.keypoints for p in self.persons], dtype=float).reshape(-1, k, 2)

    def scores(self) -> np.ndarray:
        """(N, K) keypoint scores"""
        k = len(self.skeleton)
        return np.array([p.keypoint_scores for p in self.persons], dtype=float).reshape(-1, k)

    def boxes(self) -> np.ndarray:
        """(N, 4) x1, y1, x2, y2"""
        return np.array([p.box for p in self.persons], dtype=float).reshape(-1, 4)

    def person_scores(self) -> np.ndarray:
        """(N,)"""
        return np.array([p.score for p in self.persons], dtype=float)

    def track_ids(self) -> np.ndarray:
        """(N,) int, -1 where untracked"""
        return np.array([p.track_id for p in self.persons], dtype=np.int64)

    def to_dict(self) -> dict:
        """The JSON form documented in :mod:`posekit.io.results`."""
        from posekit.io.results import result_to_dict

        return result_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict, origin: str = "pose result") -> "PoseResult":
        from posekit.io.results import result_from_dict

        return result_from_dict(data, origin)


# ---- pure helpers ----------------------------------------------------------------------------------

def landmark_boxes(landmarks, scores, fallback, *, min_score: float = BOX_LANDMARK_SCORE,
                   margin: float = BOX_MARGIN) -> np.ndarray:
    """(N, 4) x1, y1, x2, y2 around the landmarks (N, L, 2) scoring at least ``min_score``,
    enlarged by ``margin`` of the width and height on each side; ``fallback`` (N, 4) where fewer
    than two landmarks qualify or they span no area."""
    lm = np.asarray(landmarks, dtype=float)
    sc = np.asarray(scores, dtype=float)
    out = np.asarray(fallback, dtype=float).reshape(len(lm), 4).copy()
    for i in range(len(lm)):
        points = lm[i][(sc[i] >= min_score) & np.isfinite(lm[i]).all(axis=1)]
        if len(points) < 2:
            continue
        lo, hi = points.min(axis=0), points.max(axis=0)
        if np.any(hi <= lo):
            continue
        pad = (hi - lo) * margin
        out[i] = np.concatenate([lo - pad, hi + pad])
    return out


class ImagePyramid:
    """Halved copies of an image, made on demand (area averaging, so no aliasing).

    Level ``l`` has size ceil(size / 2) of level ``l - 1``. A point ``p`` of level ``l`` is at
    ``(p + 0.5) * scale(l) - 0.5`` in the original (OpenCV's resize maps pixel centres that way),
    with ``scale(l)`` the original size over the level's size, per axis.
    """

    def __init__(self, image: np.ndarray):
        self._levels = [image]

    def __getitem__(self, level: int) -> np.ndarray:
        while len(self._levels) <= level:
            previous = self._levels[-1]
            h, w = previous.shape[:2]
            self._levels.append(cv2.resize(previous, ((w + 1) // 2, (h + 1) // 2),
                                           interpolation=cv2.INTER_AREA))
        return self._levels[level]

    def size(self, level: int) -> tuple[int, int]:
        """(width, height) of a level, without making it."""
        h, w = self._levels[0].shape[:2]
        for _ in range(level):
            w, h = (w + 1) // 2, (h + 1) // 2
        return w, h

    def scale(self, level: int) -> np.ndarray:
        """(sx, sy): original pixels per level pixel."""
        h, w = self._levels[0].shape[:2]
        return np.array([w, h], dtype=float) / np.array(self.size(level), dtype=float)

    def to_level(self, points, level: int) -> np.ndarray:
        return (np.asarray(points, dtype=float) + 0.5) / self.scale(level) - 0.5

    def from_level(self, points, level: int) -> np.ndarray:
        return (np.asarray(points, dtype=float) + 0.5) * self.scale(level) - 0.5

    def level_for_side(self, max_side: float) -> int:
        """The first level whose long side is at most ``max_side`` (or the 1-pixel level)."""
        level = 0
        while max(self.size(level)) > max_side and max(self.size(level)) > 1:
            level += 1
        return level

    def level_for_crop(self, side: float, output: int) -> int:
        """The deepest level on which a square crop of ``side`` original pixels still spans at
        least ``output`` level pixels (so cutting it shrinks by less than 2x)."""
        level = 0
        while (side / self.scale(level + 1).max() >= output and min(self.size(level + 1)) > 1):
            level += 1
        return level


# ---- the estimator -----------------------------------------------------------------------------------

class PoseEstimator:
    """Keypoints of every person in an image (see the module docstring for the steps).

    model: "blazepose" (the bundled BlazePose Full landmark model), a heatmap model's name or
    family ("hrnet-w32", "ditn", ...) with its ``checkpoint``, or None: BlazePose without a
    checkpoint, else the model the checkpoint names. skeleton: output keypoint set (a name, YAML
    path or :class:`Skeleton` with a mapping from the model's set; default ``coco17`` for
    BlazePose, the model's own set for heatmap models; ``blazepose33`` keeps the landmarks).
    detector: "blazepose" (multi-scale), None (``boxes=`` then required), or any callable that
    maps an RGB image to :class:`Detections`. tiles: the detector's tiling ("auto", "none" or
    fractions, see :func:`posekit.detect.blazepose.tile_regions`). min_person_score: lowest
    person score kept (default 0.5 for BlazePose's pose flag, ``HEATMAP_MIN_PERSON_SCORE`` for
    heatmap models). num_threads: CPU threads per model. refine_heatmaps: refine BlazePose
    landmarks with that model's heatmaps. detector_score: lowest detector score kept.
    duplicate_oks: OKS above which two persons are one (``DUPLICATE_OKS``). refine_boxes: second
    BlazePose pass for external boxes (module docstring, step 2).

    Heatmap models only: checkpoint: ``.pth``/``.pt``/``.safetensors`` weights or a posekit
    ``.onnx`` file; input_size: crop (height, width) or "HxW" (default: the checkpoint's, else
    256x192 COCO, 256x256 MPII); flip_test: average with the mirrored crop; dark: DARK decoding.
    """

    def __init__(self, model: str | None = None, skeleton=None, detector="blazepose", tiles="auto",
                 min_person_score: float | None = None, num_threads: int = 2, refine_heatmaps: bool = True, *,
                 checkpoint=None, input_size=None, flip_test: bool = True, dark: bool = False,
                 detector_score: float = 0.5, duplicate_oks: float = DUPLICATE_OKS,
                 refine_boxes: bool = True, max_detection_side: int = MAX_DETECTION_SIDE):
        if model is None:
            model = "blazepose" if checkpoint is None else None
        if model == "blazepose" and (checkpoint is not None or input_size is not None):
            raise PosekitError("the BlazePose weights ship with posekit: a checkpoint or input size goes with "
                               "a heatmap model (model='hrnet', 'ditn', ...)")
        if min_person_score is None:
            min_person_score = 0.5 if model == "blazepose" else HEATMAP_MIN_PERSON_SCORE
        for name, value in (("min_person_score", min_person_score), ("duplicate_oks", duplicate_oks)):
            if not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise PosekitError(f"{name} must be a number in [0, 1], got {value!r}")
        if not isinstance(max_detection_side, int) or max_detection_side < 64:
            raise PosekitError(f"max_detection_side must be an integer >= 64, got {max_detection_side!r}")
        self.heatmap_model = self.landmarker = None
        if model == "blazepose":
            self.skeleton = get_skeleton("coco17" if skeleton is None else skeleton)
            if self.skeleton.name != LANDMARK_SKELETON:
                get_mapping(LANDMARK_SKELETON, self.skeleton)     # fails early if there is none
            self.landmarker = BlazePoseLandmarker(refine_heatmaps=refine_heatmaps, num_threads=num_threads)
        else:
            from posekit.models.heatmap_backend import load_heatmap_model

            self.heatmap_model = load_heatmap_model(model, checkpoint, input_size=input_size,
                                                    num_threads=num_threads)
            self.codec = self.heatmap_model.codec(dark=bool(dark))
            self.flip_test = bool(flip_test)
            self.skeleton = get_skeleton(self.heatmap_model.skeleton if skeleton is None else skeleton)
            if self.skeleton.name != self.heatmap_model.skeleton.name:
                get_mapping(self.heatmap_model.skeleton, self.skeleton)
        self.model_name = model if self.heatmap_model is None else self.heatmap_model.name
        self.coco_sigmas = get_skeleton("coco17").sigmas
        self.min_person_score = float(min_person_score)
        self.duplicate_oks = float(duplicate_oks)
        self.refine_boxes = bool(refine_boxes)
        self.max_detection_side = max_detection_side
        if detector == "blazepose":
            self.detector = BlazePoseDetector(score_threshold=detector_score, tiles=tiles,
                                              num_threads=num_threads)
        elif detector is None or callable(detector):
            self.detector = detector
        else:
            raise PosekitError(f"detector must be 'blazepose', None or a callable returning Detections, "
                               f"got {detector!r}")

    # -- public ------------------------------------------------------------------------------------
    def __call__(self, image, boxes=None, *, box_scores=None, source: str | None = None) -> PoseResult:
        """Every person in ``image`` (an RGB uint8 array, or a path read with
        :func:`posekit.io.images.load_image`). ``boxes`` (N, 4) x1, y1, x2, y2 skips the detector;
        each box then yields at most one person, whose ``box_score`` is ``box_scores`` (N,) or 1."""
        rgb, name = self._image(image)
        pyramid = ImagePyramid(rgb)
        height, width = rgb.shape[:2]
        source = name if source is None else source
        if boxes is None:
            if box_scores is not None:
                raise PosekitError("box_scores go with boxes=")
            if self.detector is None:
                raise PosekitError("this PoseEstimator has no detector: pass boxes= (N, 4) x1, y1, x2, y2")
            detections = self._detect(pyramid)
            fallback, box_scores = detections.boxes, detections.scores
        else:
            fallback = check_boxes(boxes)
            box_scores = check_box_scores(box_scores, len(fallback))
        if self.heatmap_model is not None:
            return self._heatmap_result(pyramid, fallback, box_scores, None, source)
        if boxes is None:
            rois = self.landmarker.roi_from_detections(detections)
        else:
            rois = self.landmarker.roi_from_boxes(fallback)
        landmarks = self._landmarks(pyramid, rois)
        if boxes is not None and self.refine_boxes and len(fallback):
            landmarks = self._landmarks(pyramid, self.landmarker.roi_from_landmarks(landmarks[3]))
        return self._result(landmarks, fallback, box_scores, None, (width, height), source)

    def from_rois(self, image, previous: PoseResult, *, source: str | None = None) -> PoseResult:
        """Re-estimate the persons of the previous frame from their tracking points, without the
        detector (MediaPipe's tracking; for heatmap models, the window of each previous person box);
        each keeps its ``track_id``. Persons whose score falls below ``min_person_score`` are lost;
        two that converged on one person become one (the higher score's)."""
        rgb, name = self._image(image)
        height, width = rgb.shape[:2]
        if tuple(previous.image_size) != (width, height):
            raise PosekitError(f"from_rois: the previous result is for a {previous.image_size[0]} x "
                               f"{previous.image_size[1]} image, this one is {width} x {height}")
        tracked = [p for p in previous.persons if p.tracking_points is not None]
        points = np.array([p.tracking_points for p in tracked], dtype=float).reshape(-1, 2, 2)
        track_ids = np.array([p.track_id for p in tracked], dtype=np.int64)
        box_scores = np.array([p.box_score for p in tracked], dtype=float)
        source = name if source is None else source
        if self.heatmap_model is not None:
            boxes = points.reshape(-1, 4)
            if not (np.all(np.isfinite(boxes)) and np.all(boxes[:, 2:] > boxes[:, :2])):
                raise PosekitError("from_rois: a previous person's tracking_points are not box corners "
                                   "(x1, y1), (x2, y2): was that result made by this estimator?")
            return self._heatmap_result(ImagePyramid(rgb), boxes, box_scores, track_ids, source)
        landmarks = self._landmarks(ImagePyramid(rgb), self.landmarker.roi_from_landmarks(points))
        fallback = np.array([p.box for p in tracked], dtype=float).reshape(-1, 4)
        return self._result(landmarks, fallback, box_scores, track_ids, (width, height), source)

    def coco_score(self, person: Person) -> float:
        """The score of a person in a COCO results file: :func:`coco_score` for BlazePose, the
        person score (MMPose's rescoring) for heatmap models."""
        return coco_score(person) if self.heatmap_model is None else float(person.score)

    # -- steps -------------------------------------------------------------------------------------
    @staticmethod
    def _image(image) -> tuple[np.ndarray, str]:
        if isinstance(image, (str, Path)):
            from posekit.io.images import load_image

            return load_image(image), str(image)
        return to_rgb_uint8(image), ""

    def _detect(self, pyramid: ImagePyramid) -> Detections:
        level = pyramid.level_for_side(self.max_detection_side)
        found = self.detector(pyramid[level])
        if not isinstance(found, Detections):
            raise PosekitError(f"the detector returned {type(found).__name__}, expected Detections")
        if level == 0 or len(found) == 0:
            return found
        boxes = pyramid.from_level(found.boxes.reshape(-1, 2, 2), level).reshape(-1, 4)
        points = None if found.keypoints is None else pyramid.from_level(found.keypoints, level)
        return Detections(boxes, found.scores, points)

    def _landmarks(self, pyramid: ImagePyramid, rois):
        """Landmarks (N, 33, 2), scores (N, 33), pose flags (N,), tracking points (N, 2, 2) for
        ROIs in original pixels, each cut from its pyramid level."""
        centres, sizes, rotations = (np.asarray(v, dtype=float) for v in rois)
        n = len(centres)
        keypoints, scores = np.zeros((n, NUM_LANDMARKS, 2)), np.zeros((n, NUM_LANDMARKS))
        flags, auxiliary = np.zeros(n), np.zeros((n, 2, 2))
        if n and not (np.all(np.isfinite(sizes)) and np.all(sizes > 0)):
            raise PosekitError("every person crop must have a positive, finite size")
        levels = np.array([pyramid.level_for_crop(s, LANDMARK_INPUT_SIZE) for s in sizes], dtype=int)
        for level in np.unique(levels):
            rows = np.flatnonzero(levels == level)
            shrink = pyramid.scale(level).mean()
            result = self.landmarker.estimate(
                pyramid[level], (pyramid.to_level(centres[rows], level), sizes[rows] / shrink, rotations[rows]))
            keypoints[rows] = pyramid.from_level(result.keypoints, level)
            auxiliary[rows] = pyramid.from_level(result.auxiliary, level)
            scores[rows], flags[rows] = result.scores, result.person_scores
        return keypoints, scores, flags, auxiliary

    def _result(self, landmarks, fallback_boxes, box_scores, track_ids, image_size, source: str) -> PoseResult:
        keypoints33, scores33, flags, auxiliary = landmarks
        width, height = image_size
        keep = np.flatnonzero(flags >= self.min_person_score)
        keep = keep[np.argsort(-flags[keep], kind="stable")]
        boxes = clip_boxes(landmark_boxes(keypoints33[keep], scores33[keep], fallback_boxes[keep]),
                           width, height)
        coco, _ = convert_keypoints(keypoints33[keep], scores33[keep], LANDMARK_SKELETON, "coco17")
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        unique = oks_nms(coco, flags[keep], areas, self.coco_sigmas, self.duplicate_oks)
        keep, boxes = keep[unique], boxes[unique]
        if self.skeleton.name == LANDMARK_SKELETON:
            out_kp, out_sc = keypoints33[keep], scores33[keep]
        else:
            out_kp, out_sc = convert_keypoints(keypoints33[keep], scores33[keep], LANDMARK_SKELETON,
                                               self.skeleton)
        persons = [Person(box=boxes[j], score=float(flags[i]), keypoints=out_kp[j],
                          keypoint_scores=out_sc[j],
                          track_id=-1 if track_ids is None else int(track_ids[i]),
                          landmarks=keypoints33[i], landmark_scores=scores33[i],
                          tracking_points=auxiliary[i], box_score=float(box_scores[i]))
                   for j, i in enumerate(keep)]
        return PoseResult(persons, self.skeleton, (int(width), int(height)), source)

    def _topdown(self, pyramid: ImagePyramid, boxes) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints (N, K, 2) in original pixels and scores (N, K), in the model's keypoint set,
        of the persons in boxes (N, 4) x1, y1, x2, y2; each crop is cut from its pyramid level."""
        from posekit.data.topdown import box_windows, window_matrix
        from posekit.data.transforms import warp_crop
        from posekit.detect.boxes import xyxy_to_xywh

        height, width = self.heatmap_model.input_size
        centers, sizes = box_windows(xyxy_to_xywh(boxes), width / height, BOX_PADDING)
        n = len(centers)
        if n and not (np.all(np.isfinite(sizes)) and np.all(sizes > 0)):
            raise PosekitError("every person box must have a positive, finite size")
        crops = np.zeros((n, height, width, 3), np.uint8)
        matrices = np.zeros((n, 2, 3))
        for i in range(n):
            level = pyramid.level_for_crop(sizes[i, 0], width)   # sizes have the input's aspect
            scale = pyramid.scale(level)
            to_crop = window_matrix(pyramid.to_level(centers[i], level), sizes[i] / scale, 0.0, (width, height))
            crops[i] = warp_crop(pyramid[level], to_crop, (width, height), border="zero")
            # image -> level pixels is p / scale + (0.5 / scale - 0.5) (ImagePyramid.to_level)
            linear, offset = to_crop[:, :2], to_crop[:, 2]
            matrices[i] = np.column_stack([linear / scale, linear @ (0.5 / scale - 0.5) + offset])
        return self.heatmap_model.predict(crops, matrices, self.codec, flip_test=self.flip_test)

    def _heatmap_result(self, pyramid: ImagePyramid, boxes, box_scores, track_ids, source: str) -> PoseResult:
        """Persons from a heatmap model in boxes (N, 4) x1, y1, x2, y2 (module docstring, heatmap steps)."""
        from posekit.data.topdown import rescore
        from posekit.track.tracker import DEFAULT_SIGMA

        width, height = pyramid.size(0)
        keypoints, scores = self._topdown(pyramid, boxes)
        person_scores = rescore(scores, box_scores, RESCORE_THRESHOLD)
        keep = np.flatnonzero(person_scores >= self.min_person_score)
        keep = keep[np.argsort(-person_scores[keep], kind="stable")]
        person_boxes = landmark_boxes(keypoints[keep], scores[keep], boxes[keep], min_score=KEYPOINT_BOX_SCORE)
        shown_boxes = clip_boxes(person_boxes, width, height)
        areas = (shown_boxes[:, 2] - shown_boxes[:, 0]) * (shown_boxes[:, 3] - shown_boxes[:, 1])
        model_skeleton = self.heatmap_model.skeleton
        sigmas = np.full(len(model_skeleton), DEFAULT_SIGMA) if model_skeleton.sigmas is None else model_skeleton.sigmas
        unique = oks_nms(keypoints[keep], person_scores[keep], areas, sigmas, self.duplicate_oks)
        keep, person_boxes, shown_boxes = keep[unique], person_boxes[unique], shown_boxes[unique]
        if self.skeleton.name == model_skeleton.name:
            out_kp, out_sc = keypoints[keep], scores[keep]
        else:
            out_kp, out_sc = convert_keypoints(keypoints[keep], scores[keep], model_skeleton, self.skeleton)
        persons = [Person(box=shown_boxes[j], score=float(person_scores[i]), keypoints=out_kp[j],
                          keypoint_scores=out_sc[j], track_id=-1 if track_ids is None else int(track_ids[i]),
                          tracking_points=person_boxes[j].reshape(2, 2), box_score=float(box_scores[i]))
                   for j, i in enumerate(keep)]
        return PoseResult(persons, self.skeleton, (int(width), int(height)), source)


def check_boxes(boxes) -> np.ndarray:
    """External person boxes as a checked (N, 4) x1, y1, x2, y2 float array."""
    try:
        b = np.asarray(boxes, dtype=float)
    except (TypeError, ValueError):
        raise PosekitError("boxes must be numbers, shape (N, 4) x1, y1, x2, y2") from None
    if b.size == 0:
        return np.zeros((0, 4))
    if b.ndim == 1 and b.shape == (4,):
        b = b[None]
    if b.ndim != 2 or b.shape[1] != 4:
        raise PosekitError(f"boxes must have shape (N, 4) x1, y1, x2, y2, got {b.shape}")
    if not np.all(np.isfinite(b)):
        raise PosekitError("boxes must be finite (no NaN or infinity)")
    if np.any(b[:, 2:] <= b[:, :2]):
        raise PosekitError(f"box {int(np.argmax(np.any(b[:, 2:] <= b[:, :2], axis=1)))} has no area "
                           f"(boxes are x1, y1, x2, y2 with x2 > x1 and y2 > y1)")
    return b


def check_box_scores(scores, n: int) -> np.ndarray:
    """Scores of ``n`` external boxes: (n,) finite numbers, or ones when None."""
    if scores is None:
        return np.ones(n)
    try:
        s = np.asarray(scores, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise PosekitError("box_scores must be numbers") from None
    if s.shape != (n,) or not np.all(np.isfinite(s)):
        raise PosekitError(f"box_scores must be {n} finite numbers, one per box, got shape {s.shape}")
    return s


# ---- batches: folders of images, COCO annotation files --------------------------------------------

def output_stems(paths) -> list[str]:
    """One output name per input: its stem, with ``_2``, ``_3``... where stems repeat."""
    seen: dict[str, int] = {}
    stems = []
    for path in paths:
        stem = Path(path).stem or "image"
        count = seen.get(stem.lower(), 0) + 1
        seen[stem.lower()] = count
        stems.append(stem if count == 1 else f"{stem}_{count}")
    return stems


def infer_images(estimator: PoseEstimator, paths, out_dir, *, overlays: bool = True, kpt_thr: float = 0.3,
                 on_error=None, progress=None) -> list:
    """Estimate every image of ``paths`` and write (creating ``out_dir``) ``out_dir/<stem>.json`` (:mod:`posekit.io.results`)
    and, with ``overlays``, ``out_dir/<stem>.png``. Returns one :class:`posekit.viz.ReportItem` per
    image done. An image that cannot be read raises, or is passed to ``on_error(path, error)`` and
    skipped. ``progress`` wraps the iteration (e.g. a tqdm bar)."""
    from posekit.io.images import load_image, save_image
    from posekit.io.results import write_pose_result
    from posekit.viz import ReportItem, draw_poses

    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise PosekitError(f"{out_dir}: exists and is not a folder") from None
    except OSError as exc:
        raise PosekitError(f"{out_dir}: cannot create the folder ({exc.strerror or type(exc).__name__})") from None
    paths = [Path(p) for p in paths]
    items = []
    pairs = list(zip(paths, output_stems(paths)))
    for path, stem in (progress(pairs) if progress else pairs):
        try:
            image = load_image(path)
            result = estimator(image, source=str(path))
        except PosekitError as exc:
            if on_error is None:
                raise
            on_error(path, exc)
            continue
        json_path = write_pose_result(result, out_dir / f"{stem}.json")
        overlay = save_image(out_dir / f"{stem}.png", draw_poses(image, result, kpt_thr=kpt_thr)) if overlays else None
        items.append(ReportItem(result, overlay, json_path))
    return items


def coco_score(person: Person) -> float:
    """Score of a person in a COCO results file: box score x person score x mean keypoint score.

    The keypoint factor ranks complete, confident poses above partial ones, as AP needs (MMPose's
    default rescoring multiplies the box score by the mean of the keypoint scores above 0.2; here
    every keypoint counts and the pose flag joins in). On the COCO sample with ground-truth boxes,
    AP was 0.539 with the pose flag alone and 0.575 with this product.
    """
    return float(person.box_score * person.score * np.mean(person.keypoint_scores))


def coco_predictions(results, skeleton, images=None, *, score=coco_score):
    """COCO keypoint predictions (:class:`PoseInstances`) from ``(image_id, PoseResult)`` pairs,
    scored by ``score(person)`` (:func:`coco_score`; :meth:`PoseEstimator.coco_score` for the
    estimator's own rule). Joints without a counterpart in the output skeleton (NaN) are put at
    the box centre with score 0, so the file stays valid COCO."""
    from posekit.data.structures import PoseInstances
    from posekit.detect.boxes import xyxy_to_xywh

    skeleton = get_skeleton(skeleton)
    rows = {"keypoints": [], "scores": [], "image_ids": [], "boxes": [], "person_scores": []}
    for image_id, result in results:
        if result.skeleton.joints != skeleton.joints:
            raise PosekitError(f"coco_predictions: a result has {result.skeleton.name!r} keypoints, "
                               f"expected {skeleton.name!r}")
        for person in result.persons:
            kp, sc = person.keypoints.copy(), person.keypoint_scores.copy()
            unknown = ~np.isfinite(kp).all(axis=1)
            kp[unknown] = (person.box[:2] + person.box[2:]) / 2
            sc[unknown] = 0.0
            rows["keypoints"].append(kp)
            rows["scores"].append(sc)
            rows["image_ids"].append(image_id)
            rows["boxes"].append(xyxy_to_xywh(person.box))
            rows["person_scores"].append(score(person))
    n, k = len(rows["image_ids"]), len(skeleton)
    return PoseInstances(skeleton, np.reshape(rows["keypoints"], (n, k, 2)), np.reshape(rows["scores"], (n, k)),
                         np.array(rows["image_ids"], dtype=np.int64), boxes=np.reshape(rows["boxes"], (n, 4)),
                         scores=np.array(rows["person_scores"], dtype=float), images=dict(images or {}))


def predict_coco(estimator: PoseEstimator, gt, image_dir, boxes="detect", *, box_threshold: float = 0.3,
                 on_error=None, progress=None):
    """COCO keypoint predictions (:func:`coco_predictions`) for every image of the ground truth
    ``gt`` (:func:`posekit.data.coco.read_coco_keypoints`), read from ``image_dir / file_name``.

    boxes: "detect" (posekit's detector), "gt" (the annotated boxes of non-crowd persons) or the
    path of a COCO detection results file (boxes scoring at least ``box_threshold``, read by
    :func:`posekit.data.topdown.read_detections`). Images that cannot be read raise, or go to
    ``on_error(path, error)`` and are skipped.
    """
    from posekit.data.topdown import read_detections
    from posekit.detect.boxes import xywh_to_xyxy

    if estimator.skeleton.joints != gt.skeleton.joints:
        raise PosekitError(f"the estimator gives {estimator.skeleton.name!r} keypoints, the annotations "
                           f"have {gt.skeleton.name!r}")
    if isinstance(boxes, str) and boxes in ("detect", "gt"):
        source = boxes
    else:
        ids, found, scores = read_detections(boxes, gt.images, score_threshold=box_threshold)
        source = {i: (xywh_to_xyxy(found[ids == i]), scores[ids == i]) for i in np.unique(ids).tolist()}
    image_ids = sorted(gt.images)
    results = []
    for image_id in (progress(image_ids) if progress else image_ids):
        path = Path(image_dir) / gt.images[image_id].file_name
        try:
            if source == "detect":
                result = estimator(path)
            elif source == "gt":
                mine = (gt.image_ids == image_id) & ~gt.iscrowd & (gt.boxes[:, 2:] > 0).all(axis=1)
                result = estimator(path, boxes=xywh_to_xyxy(gt.boxes[mine]))
            else:
                given, given_scores = source.get(image_id, (np.zeros((0, 4)), np.zeros(0)))
                result = estimator(path, boxes=given, box_scores=given_scores)
        except PosekitError as exc:
            if on_error is None:
                raise
            on_error(path, exc)
            continue
        results.append((image_id, result))
    predictions = coco_predictions(results, gt.skeleton, gt.images, score=estimator.coco_score)
    predictions.meta["category_id"] = gt.meta.get("category_id", 1)
    return predictions


__all__ = ["PoseEstimator", "PoseResult", "Person", "landmark_boxes", "check_boxes", "check_box_scores",
           "ImagePyramid", "infer_images", "output_stems", "predict_coco", "coco_predictions", "coco_score",
           "BOX_MARGIN", "BOX_PADDING", "DUPLICATE_OKS", "HEATMAP_MIN_PERSON_SCORE", "KEYPOINT_BOX_SCORE",
           "MAX_DETECTION_SIDE", "RESCORE_THRESHOLD"]
