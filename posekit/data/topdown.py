"""Top-down 2D pose data: one sample per person box, cropped by an affine warp.

Boxes to crop windows (as HRNet and MMPose): the window is centred on the box, widened or heightened
to the network input's aspect ratio, then enlarged by ``box_padding`` (1.25) so the whole person and
some context fit. Training augmentation, in the order it is applied:

* half body (probability ``half_body_prob``, for persons with more than ``half_body_min_joints``
  labelled joints): the window is replaced by one around the labelled upper-body joints or the
  lower-body joints (each side chosen with probability 1/2 when it has more than two), aspect-fixed
  and enlarged by ``half_body_padding`` (1.5);
* scale: the window is multiplied by clip(1 + N(0, 1) * scale_std, *scale_range);
* rotation (probability ``rotation_prob``): clip(N(0, 1) * rotation_std, -rotation_max, rotation_max)
  degrees (HRNet's sampler, whose code clips at twice the factor);
* horizontal flip (probability ``flip_prob``): the crop is mirrored and left/right joints swapped
  with ``skeleton.flip_indices``.

All randomness comes from the generator passed to :meth:`TopDownDataset.sample`, so a sample is a
pure function of that generator's seed. Evaluation helpers: flip test, decoding back to image
pixels, MMPose's rescoring and OKS non-maximum suppression, COCO result and detection files.
PyTorch is imported where tensors are made, so the detection reader and the crop helpers serve the
image pipeline without loading it.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from posekit.data.structures import PoseInstances
from posekit.data.transforms import apply_affine, crop_transform, invert_affine, warp_crop
from posekit.errors import PosekitError
from posekit.skeletons import Skeleton

# Networks pretrained on ImageNet expect RGB in [0, 1] normalised with these.
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


@dataclass(frozen=True)
class Augmentation:
    """Training augmentation settings (see the module docstring); ``upper_body``: joint indices."""

    rotation_std: float = 30.0
    rotation_max: float = 30.0
    rotation_prob: float = 0.6
    scale_std: float = 0.35
    scale_range: tuple[float, float] = (0.65, 1.35)
    flip_prob: float = 0.5
    half_body_prob: float = 0.0
    half_body_min_joints: int = 8
    half_body_padding: float = 1.5
    upper_body: tuple[int, ...] = ()


def fix_aspect(sizes, aspect: float) -> np.ndarray:
    """Grow the shorter side of each (w, h) so that w / h == aspect."""
    s = np.array(sizes, dtype=float)
    wide = s[..., 0] > aspect * s[..., 1]
    s[..., 1] = np.where(wide, s[..., 0] / aspect, s[..., 1])
    s[..., 0] = np.where(wide, s[..., 0], s[..., 1] * aspect)
    return s


def box_windows(boxes, aspect: float, padding: float = 1.25) -> tuple[np.ndarray, np.ndarray]:
    """Crop windows (centres (N, 2), sizes (N, 2)) of x, y, w, h boxes (N, 4)."""
    b = np.asarray(boxes, dtype=float).reshape(-1, 4)
    centers = b[:, :2] + b[:, 2:] / 2
    return centers, fix_aspect(b[:, 2:], aspect) * padding


def half_body_window(keypoints, labelled, upper, aspect: float, padding: float, rng: np.random.Generator):
    """(centre, size) around the labelled upper- or lower-body joints, or None if too few."""
    upper_pts = keypoints[labelled & upper]
    lower_pts = keypoints[labelled & ~upper]
    if rng.random() < 0.5 and len(upper_pts) > 2:
        chosen = upper_pts
    else:
        chosen = lower_pts if len(lower_pts) > 2 else upper_pts
    if len(chosen) < 2:
        return None
    low, high = chosen.min(axis=0), chosen.max(axis=0)
    size = fix_aspect(high - low, aspect) * padding
    if not np.all(size > 0):
        return None
    return chosen.mean(axis=0), size


def window_matrix(center, size, rotation_deg: float, input_size, flip: bool = False) -> np.ndarray:
    """2x3 matrix from image pixels to crop pixels; ``flip`` mirrors the crop left-right."""
    m = crop_transform(center, size, np.deg2rad(rotation_deg), input_size)
    if flip:
        width = float(np.broadcast_to(input_size, (2,))[0])
        m = np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0]]) @ np.vstack([m, [0.0, 0.0, 1.0]])
    return m


def sample_augmentation(aug: Augmentation, rng: np.random.Generator) -> tuple[float, float, bool]:
    """(scale factor, rotation in degrees, flip) drawn as HRNet does."""
    low, high = aug.scale_range
    scale = float(np.clip(1.0 + rng.standard_normal() * aug.scale_std, low, high))
    rotation = 0.0
    if rng.random() < aug.rotation_prob:
        rotation = float(np.clip(rng.standard_normal() * aug.rotation_std, -aug.rotation_max, aug.rotation_max))
    return scale, rotation, bool(rng.random() < aug.flip_prob)


def normalize_array(crops: np.ndarray) -> np.ndarray:
    """(..., H, W, 3) uint8 RGB -> (..., 3, H, W) float32, ImageNet-normalised."""
    arr = (np.asarray(crops).astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(np.moveaxis(arr, -1, -3))


def normalize_image(crop: np.ndarray):
    """H x W x 3 uint8 RGB -> 3 x H x W float32 tensor, ImageNet-normalised."""
    import torch

    return torch.from_numpy(normalize_array(crop))


def read_image(path: Path) -> np.ndarray:
    """An image file as H x W x 3 uint8 RGB (EXIF orientation ignored: annotations use raw pixels)."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        raise PosekitError(f"{path}: cannot read the image (missing or not an image file)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class TopDownDataset:
    """Person crops with heatmap targets (training) or with their crop matrix (evaluation).

    instances: the persons (ground truth, or detections whose keypoints are unknown); only their
    ``keypoints``, ``visibility``, ``image_ids``, ``boxes`` and ``scores`` are used, row by row.
    image_root: folder of the images named by ``instances.images[id].file_name``.
    codec: a :class:`~posekit.codecs.heatmap.HeatmapCodec` (its ``input_size`` is the crop size).
    augment: an :class:`Augmentation` for training samples, or None.
    """

    def __init__(self, instances: PoseInstances, image_root, codec, *, augment: Augmentation | None = None,
                 box_padding: float = 1.25, cache_images: bool = False):
        self.instances = instances
        self.skeleton: Skeleton = instances.skeleton
        self.codec = codec
        self.input_size = tuple(int(v) for v in codec.input_size)
        self.augment = augment
        boxes = instances.boxes
        bad = ~(np.isfinite(boxes).all(axis=1) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0))
        if bad.any():
            raise PosekitError(f"person id {instances.ids[np.argmax(bad)]}: its box is missing or empty")
        self.aspect = self.input_size[0] / self.input_size[1]
        self.centers, self.sizes = box_windows(boxes, self.aspect, box_padding)
        self.upper = np.zeros(len(self.skeleton), dtype=bool)
        if augment is not None:
            self.upper[list(augment.upper_body)] = True
        root = Path(image_root)
        self.paths = {}
        for image_id in np.unique(instances.image_ids).tolist():
            info = instances.images.get(image_id)
            if info is None or not info.file_name:
                raise PosekitError(f"image id {image_id} has no file name in the annotations")
            self.paths[image_id] = root / info.file_name
        self._cache = {i: read_image(p) for i, p in self.paths.items()} if cache_images else None

    def __len__(self) -> int:
        return len(self.instances)

    def image(self, image_id: int) -> np.ndarray:
        if self._cache is not None:
            return self._cache[image_id]
        return read_image(self.paths[image_id])

    def window(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The un-augmented crop window (centre, size) of a person."""
        return self.centers[index], self.sizes[index]

    def sample(self, index: int, rng: np.random.Generator) -> dict:
        """An augmented training sample: ``image`` (3, H, W) and the codec's targets as tensors."""
        if self.augment is None:
            raise PosekitError("this dataset was built without augmentation settings (an evaluation set)")
        aug = self.augment
        keypoints = self.instances.keypoints[index]
        visibility = self.instances.visibility[index]
        labelled = visibility > 0
        center, size = self.window(index)
        if aug.half_body_prob > 0 and labelled.sum() > aug.half_body_min_joints and rng.random() < aug.half_body_prob:
            half = half_body_window(keypoints, labelled, self.upper, self.aspect, aug.half_body_padding, rng)
            if half is not None:
                center, size = half
        scale, rotation, flip = sample_augmentation(aug, rng)
        matrix = window_matrix(center, size * scale, rotation, self.input_size, flip)
        crop = warp_crop(self.image(int(self.instances.image_ids[index])), matrix, self.input_size, border="zero")
        points = apply_affine(np.where(labelled[:, None], keypoints, 0.0), matrix)
        if flip:
            order = self.skeleton.flip_indices
            points, visibility = points[order], visibility[order]
        targets = self.codec.encode(points, visibility)
        import torch

        return {"image": normalize_image(crop), **{k: torch.from_numpy(v) for k, v in targets.items()}}

    def __getitem__(self, index: int) -> dict:
        """An evaluation sample: ``image`` and the ``matrix`` (2, 3) that made the crop."""
        center, size = self.window(index)
        matrix = window_matrix(center, size, 0.0, self.input_size)
        crop = warp_crop(self.image(int(self.instances.image_ids[index])), matrix, self.input_size, border="zero")
        import torch

        return {"image": normalize_image(crop), "matrix": torch.from_numpy(matrix)}


def predict_keypoints(model, images, matrices, codec, *, flip_test: bool = True,
                      shift_heatmap: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints (N, K, 2) in image pixels and scores (N, K) for a batch of crops ``images``
    (N, 3, H, W), a torch tensor (a PyTorch model) or a numpy array (a model that takes numpy,
    such as :class:`posekit.models.heatmap_backend.HeatmapModel`).

    With ``flip_test`` the mirrored crops go through the model too and their heatmaps, mirrored
    back with left/right swapped, are averaged with the others (HRNet, SimpleBaseline).
    """
    n = len(images)
    if not flip_test:
        batch = images
    elif isinstance(images, np.ndarray):
        batch = np.concatenate([images, images[..., ::-1]])
    else:
        import torch

        batch = torch.cat([images, images.flip(-1)])
    heatmaps = model(batch)["heatmaps"]
    if flip_test:
        heatmaps = (heatmaps[:n] + codec.flip_heatmaps(heatmaps[n:], shift=shift_heatmap)) / 2
    crop_points, scores = codec.decode(heatmaps)
    m = np.asarray(matrices.cpu() if hasattr(matrices, "cpu") else matrices, dtype=float)
    points = np.stack([apply_affine(crop_points[i], invert_affine(m[i])) for i in range(n)])
    return points, scores


def rescore(keypoint_scores, box_scores, threshold: float = 0.2) -> np.ndarray:
    """Instance scores: box score x the mean of the keypoint scores above ``threshold`` (0 if none).

    MMPose's ``score_mode='bbox_keypoint'`` (HRNet's ``in_vis_thre``).
    """
    ks = np.asarray(keypoint_scores, dtype=float)
    confident = ks > threshold
    count = confident.sum(axis=1)
    mean = np.divide((ks * confident).sum(axis=1), count, out=np.zeros(len(ks)), where=count > 0)
    return np.asarray(box_scores, dtype=float) * mean


def read_detections(path, images=None, *, score_threshold: float = 0.0, category_id: int = 1):
    """Person boxes from a COCO detection results file ``[{image_id, bbox: [x, y, w, h], score,
    category_id}, ...]``: (image_ids (N,), boxes (N, 4) x, y, w, h, scores (N,)), in file order.

    The one reader of detection files (training evaluation, ``posekit infer --boxes FILE``):

    * ``category_id`` may be absent (files written for one class): the detection is a person.
      Detections of another category are skipped (a detector's file for all 80 COCO classes
      works as is), but a file with detections and none of ``category_id`` is an error, as is a
      ``category_id`` that is not an integer.
    * Every ``image_id`` must be an integer and, when ``images`` (the ground truth's ids) is
      given, one of them: a file for other images is an error, not an empty result.
    * ``bbox`` must be 4 finite numbers with width and height >= 0 and ``score`` a finite number;
      boxes of zero area and scores below ``score_threshold`` are skipped.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PosekitError(f"{path}: no such file") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise PosekitError(f"{path}: not a valid JSON file") from None
    except OSError as exc:
        raise PosekitError(f"{path}: cannot read ({exc.strerror or type(exc).__name__})") from None
    if not isinstance(data, list):
        raise PosekitError(f"{path}: expected a JSON list of detections [{{image_id, bbox, score, category_id}}]")
    known = None if images is None else set(images)
    ids, boxes, scores, other_categories = [], [], [], set()
    persons_listed = False
    for i, det in enumerate(data):
        where = f"{path}: detection {i}"
        if not isinstance(det, dict):
            raise PosekitError(f"{where} must be an object with 'image_id', 'bbox' and 'score'")
        for key in ("image_id", "bbox", "score"):
            if key not in det:
                raise PosekitError(f"{where}: missing {key!r}")
        category, image_id, box, score = det.get("category_id", category_id), det["image_id"], det["bbox"], det["score"]
        if type(category) is not int:
            raise PosekitError(f"{where}: 'category_id' must be an integer")
        if type(image_id) is not int:
            raise PosekitError(f"{where}: 'image_id' must be an integer")
        if known is not None and image_id not in known:
            raise PosekitError(f"{where}: image_id {image_id} is not an image of the annotations")
        if not (isinstance(box, list) and len(box) == 4 and all(_finite_number(v) for v in box)
                and box[2] >= 0 and box[3] >= 0):
            raise PosekitError(f"{where}: 'bbox' must be 4 finite numbers x, y, w, h with w, h >= 0")
        if not _finite_number(score):
            raise PosekitError(f"{where}: 'score' must be a finite number")
        if category != category_id:
            other_categories.add(category)
            continue
        persons_listed = True
        if score < score_threshold or min(box[2:]) == 0:
            continue
        ids.append(image_id)
        boxes.append([float(v) for v in box])
        scores.append(float(score))
    if data and not persons_listed:
        raise PosekitError(f"{path}: no detection of category {category_id} (person); the file has "
                           f"categories {', '.join(str(c) for c in sorted(other_categories)[:5])}")
    return np.array(ids, dtype=np.int64), np.array(boxes, dtype=float).reshape(-1, 4), np.array(scores, dtype=float)


def _finite_number(value) -> bool:
    """A JSON number (not a boolean, not a string) that is finite."""
    try:
        return type(value) in (int, float) and math.isfinite(value)
    except OverflowError:                          # an integer beyond float range
        return False


def training_persons(instances: PoseInstances) -> PoseInstances:
    """The persons worth training on: not crowds, at least one labelled joint, a box of positive
    area once clipped to the image (HRNet's COCO loader); boxes are clipped."""
    boxes = instances.boxes.copy()
    for i, image_id in enumerate(instances.image_ids.tolist()):
        info = instances.images.get(image_id)
        if info is not None and info.width > 0 and info.height > 0 and np.isfinite(boxes[i]).all():
            x1, y1 = np.clip(boxes[i, :2], 0, [info.width - 1, info.height - 1])
            x2, y2 = np.clip(boxes[i, :2] + boxes[i, 2:], 0, [info.width - 1, info.height - 1])
            boxes[i] = [x1, y1, x2 - x1, y2 - y1]
    keep = (~instances.iscrowd & (instances.visibility > 0).any(axis=1) & np.isfinite(boxes).all(axis=1)
            & (boxes[:, 2] > 0) & (boxes[:, 3] > 0))
    out = instances.select(keep)
    out.boxes = boxes[keep]
    return out


__all__ = ["Augmentation", "TopDownDataset", "IMAGENET_MEAN", "IMAGENET_STD", "fix_aspect", "box_windows",
           "half_body_window", "window_matrix", "sample_augmentation", "normalize_array", "normalize_image",
           "read_image", "predict_keypoints", "rescore", "read_detections", "training_persons"]
