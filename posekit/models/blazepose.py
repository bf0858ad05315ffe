"""BlazePose Full landmarks (``pose_landmark_full.tflite``), top-down on rotated square crops.

Each person is cut out of the image as a square region of interest (ROI) turned so that the body
axis points up, scaled to 256 x 256 RGB in [0, 1] with replicated borders (MediaPipe's
pose_landmark_by_roi graph). The model returns 39 landmarks in crop pixels: the 33 BlazePose
landmarks and 6 auxiliary points, the first two of which (mid-hip and full-body scale point) give
the next frame's ROI when tracking. Visibility and presence logits pass through a sigmoid; a 64 x 64
heatmap per landmark can refine the coordinates (weighted mean of a 7 x 7 window around the
regressed point, kept where the window's peak confidence reaches 0.5).

ROI conventions (MediaPipe's pose_detection_to_roi / pose_landmarks_to_roi): the centre is the
mid-hip, the side is 2 * |scale point - mid-hip| * 1.25, and the rotation turns the mid-hip -> scale
point vector upright.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from posekit.data.transforms import apply_affine, crop_transform, invert_affine, to_rgb_uint8, warp_crop
from posekit.detect.boxes import Detections
from posekit.errors import PosekitError
from posekit.models.tflite import TFLiteModel
from posekit.skeletons import get_skeleton

LANDMARK_PATH = Path(__file__).resolve().parents[1] / "assets" / "blazepose" / "pose_landmark_full.tflite"
INPUT_SIZE = 256
NUM_OUTPUTS = 39             # 33 landmarks + 6 auxiliary points
NUM_LANDMARKS = 33
HEATMAP_SIZE = 64
HEATMAP_KERNEL = 7
HEATMAP_MIN_CONFIDENCE = 0.5
ROI_SCALE = 1.25             # MediaPipe's margin around the alignment-point square
# Square side of an external box's ROI over the box's long side. A box is tighter around the body
# than the detector's circle, and the box centre is only near the mid-hip: on the COCO sample with
# ground-truth boxes, mean OKS was 0.67 / 0.72 / 0.73 for 1.25 / 1.4 / 1.6, and on the PoseTrack
# sample 0.55 / 0.55 / 0.52.
BOX_ROI_SCALE = 1.4


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.clip(x, -80.0, 80.0)))


def rois_from_alignment_points(centre_points, scale_points, scale: float = ROI_SCALE):
    """Rotated square ROIs from (N, 2) mid-hip points and (N, 2) scale points.

    Returns (centres (N, 2), sizes (N,), rotations (N,) radians); the rotation is MediaPipe's:
    90 degrees minus the angle of the centre -> scale vector with y pointing up, wrapped to
    [-pi, pi).
    """
    c = np.asarray(centre_points, dtype=float).reshape(-1, 2)
    e = np.asarray(scale_points, dtype=float).reshape(-1, 2)
    d = e - c
    sizes = 2.0 * np.linalg.norm(d, axis=1) * scale
    angle = np.pi / 2 - np.arctan2(-d[:, 1], d[:, 0])
    rotations = (angle + np.pi) % (2 * np.pi) - np.pi
    return c.copy(), sizes, rotations


def refine_with_heatmaps(points, heatmaps, kernel: int = HEATMAP_KERNEL,
                         min_confidence: float = HEATMAP_MIN_CONFIDENCE, input_size: int = INPUT_SIZE):
    """Move each landmark (L, 2), in input pixels counted from the input's edge, to the
    confidence-weighted mean cell of a ``kernel`` x ``kernel`` window of its heatmap (H, W, L)
    logits, where the window's highest sigmoid confidence reaches ``min_confidence``.

    The window is centred on the cell holding the landmark and shrinks at the heatmap's edges;
    landmarks outside the heatmap stay where they are. A cell's position is its index times the
    cell size, as MediaPipe's RefineLandmarksFromHeatmapCalculator has it.
    """
    hm = np.asarray(heatmaps, dtype=float)
    height, width, count = hm.shape
    p = np.asarray(points, dtype=float).reshape(count, 2)
    cell = np.array([input_size / width, input_size / height])
    col_row = np.trunc(p / cell).astype(int)
    inside = np.all((col_row >= 0) & (col_row < [width, height]), axis=1)
    offsets = np.arange(kernel) - (kernel - 1) // 2
    cols = col_row[:, 0:1] + offsets                       # (L, k)
    rows = col_row[:, 1:2] + offsets
    valid = ((cols >= 0) & (cols < width))[:, None, :] & ((rows >= 0) & (rows < height))[:, :, None]
    landmark = np.arange(count)[:, None, None]
    conf = _sigmoid(hm[np.clip(rows, 0, height - 1)[:, :, None], np.clip(cols, 0, width - 1)[:, None, :],
                       landmark]) * valid                  # (L, k rows, k cols)
    total = conf.sum(axis=(1, 2))
    mean_col = (conf * cols[:, None, :]).sum(axis=(1, 2)) / np.maximum(total, 1e-12)
    mean_row = (conf * rows[:, :, None]).sum(axis=(1, 2)) / np.maximum(total, 1e-12)
    refine = inside & (conf.max(axis=(1, 2)) >= min_confidence) & (total > 0)
    out = p.copy()
    out[refine] = np.column_stack([mean_col, mean_row])[refine] * cell
    return out


@dataclass
class BlazePoseResult:
    """Landmarks of N persons (image pixels, the pixel-centre convention of posekit.data.transforms).

    keypoints    (N, 33, 2) blazepose33 landmarks
    scores       (N, 33) min(visibility, presence): MediaPipe draws a landmark only when both pass
    visibility   (N, 33) probability that the landmark is in view and not occluded
    presence     (N, 33) probability that the landmark is inside the image
    person_scores (N,) pose-presence flag of the crop (MediaPipe keeps a pose above 0.5)
    auxiliary    (N, 2, 2) mid-hip and full-body scale point, for :meth:`roi_from_landmarks`
    world        (N, 33, 3) metric landmarks (metres, origin between the hips), turned by the ROI
                 rotation so x and y follow the image axes
    rois         (centres (N, 2), sizes (N,), rotations (N,)) the crops used
    """

    keypoints: np.ndarray
    scores: np.ndarray
    visibility: np.ndarray
    presence: np.ndarray
    person_scores: np.ndarray
    auxiliary: np.ndarray
    world: np.ndarray
    rois: tuple[np.ndarray, np.ndarray, np.ndarray]

    def __len__(self) -> int:
        return len(self.keypoints)


class BlazePoseLandmarker:
    """33 BlazePose landmarks per person, from detections, boxes or the previous frame.

    refine_heatmaps: apply the heatmap refinement; box_scale: square side of an external box's
    ROI as a multiple of the box's long side; num_threads: CPU threads of the interpreter.
    """

    skeleton = get_skeleton("blazepose33")

    def __init__(self, refine_heatmaps: bool = True, box_scale: float = BOX_ROI_SCALE,
                 num_threads: int = 2, model_path: str | Path = LANDMARK_PATH):
        if not np.isfinite(box_scale) or box_scale <= 0:
            raise PosekitError(f"box_scale must be positive, got {box_scale!r}")
        self.refine_heatmaps = bool(refine_heatmaps)
        self.box_scale = float(box_scale)
        self.model = TFLiteModel(model_path, {"landmarks": "Identity", "pose_flag": "Identity_1",
                                              "heatmaps": "Identity_3", "world": "Identity_4"},
                                 num_threads=num_threads)
        self.model.check_output_shapes({
            "landmarks": (1, NUM_OUTPUTS * 5), "pose_flag": (1, 1),
            "heatmaps": (1, HEATMAP_SIZE, HEATMAP_SIZE, NUM_OUTPUTS), "world": (1, NUM_OUTPUTS * 3)})

    # ROIs -------------------------------------------------------------------------------------
    def roi_from_detections(self, detections: Detections):
        """MediaPipe's ROI from the detector's mid-hip and full-body scale point; upright box ROIs
        (:meth:`roi_from_boxes`) for detections without alignment points."""
        if detections.keypoints is None:
            return self.roi_from_boxes(detections.boxes)
        return rois_from_alignment_points(detections.keypoints[:, 0], detections.keypoints[:, 1])

    def roi_from_boxes(self, boxes):
        """Upright square ROIs around xyxy boxes (N, 4): centred on the box, side ``box_scale``
        times the box's long side (see ``BOX_ROI_SCALE``)."""
        b = np.asarray(boxes, dtype=float)
        if b.ndim != 2 or b.shape[1] != 4:
            raise PosekitError(f"boxes must have shape (N, 4), got {b.shape}")
        centres = (b[:, :2] + b[:, 2:]) / 2
        sizes = np.max(b[:, 2:] - b[:, :2], axis=1) * self.box_scale
        return centres, sizes, np.zeros(len(b))

    def roi_from_landmarks(self, auxiliary):
        """MediaPipe's tracking ROI for the next frame from a result's ``auxiliary`` points (N, 2, 2)."""
        aux = np.asarray(auxiliary, dtype=float)
        if aux.ndim != 3 or aux.shape[1:] != (2, 2):
            raise PosekitError(f"auxiliary points must have shape (N, 2, 2), got {aux.shape}")
        return rois_from_alignment_points(aux[:, 0], aux[:, 1])

    # inference --------------------------------------------------------------------------------
    def __call__(self, image_rgb: np.ndarray, detections: Detections):
        """(keypoints (N, 33, 2) pixels, scores (N, 33) in [0, 1], person_scores (N,))."""
        result = self.estimate(image_rgb, self.roi_from_detections(detections))
        return result.keypoints, result.scores, result.person_scores

    def estimate(self, image_rgb: np.ndarray, rois) -> BlazePoseResult:
        """Run the model on each ROI (centres (N, 2), sizes (N,), rotations (N,))."""
        image = to_rgb_uint8(image_rgb)
        centres, sizes, rotations = (np.asarray(v, dtype=float) for v in rois)
        n = len(centres)
        if centres.shape != (n, 2) or sizes.shape != (n,) or rotations.shape != (n,):
            raise PosekitError(f"rois must be centres (N, 2), sizes (N,), rotations (N,); got "
                               f"{centres.shape}, {sizes.shape}, {rotations.shape}")
        if np.any(~np.isfinite(sizes) | (sizes <= 0)):
            raise PosekitError("every ROI size must be positive and finite")
        raw = np.zeros((n, NUM_OUTPUTS, 5))
        world = np.zeros((n, NUM_OUTPUTS, 3))
        flags = np.zeros(n)
        points = np.zeros((n, NUM_OUTPUTS, 2))
        for i in range(n):
            matrix = crop_transform(centres[i], sizes[i], rotations[i], INPUT_SIZE)
            crop = warp_crop(image, matrix, INPUT_SIZE, border="replicate")
            out = self.model((crop.astype(np.float32) / 255.0)[None])
            raw[i] = out["landmarks"].reshape(NUM_OUTPUTS, 5)
            world[i] = out["world"].reshape(NUM_OUTPUTS, 3)
            flags[i] = float(out["pose_flag"].reshape(-1)[0])
            crop_points = raw[i, :, :2]
            if self.refine_heatmaps:
                crop_points = refine_with_heatmaps(crop_points, out["heatmaps"][0])
            # Model pixels count from the crop's edge; ours from the first pixel's centre.
            points[i] = apply_affine(crop_points - 0.5, invert_affine(matrix))
        visibility = _sigmoid(raw[:, :NUM_LANDMARKS, 3])
        presence = _sigmoid(raw[:, :NUM_LANDMARKS, 4])
        cos, sin = np.cos(rotations)[:, None], np.sin(rotations)[:, None]
        wx, wy = world[:, :NUM_LANDMARKS, 0], world[:, :NUM_LANDMARKS, 1]
        world_image = np.stack([cos * wx - sin * wy, sin * wx + cos * wy, world[:, :NUM_LANDMARKS, 2]], -1)
        return BlazePoseResult(
            keypoints=points[:, :NUM_LANDMARKS], scores=np.minimum(visibility, presence),
            visibility=visibility, presence=presence, person_scores=flags,
            auxiliary=points[:, NUM_LANDMARKS:NUM_LANDMARKS + 2], world=world_image,
            rois=(centres, sizes, rotations))


__all__ = ["BlazePoseLandmarker", "BlazePoseResult", "rois_from_alignment_points",
           "refine_with_heatmaps", "LANDMARK_PATH"]
