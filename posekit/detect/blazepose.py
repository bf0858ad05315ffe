"""Multi-person detection with the BlazePose detector (``pose_detection.tflite``, 224 x 224 SSD).

Pre- and post-processing follow MediaPipe's pose_detection graph: the input is a letterboxed
square scaled to [-1, 1] with black padding; 2254 anchors of fixed unit size; per anchor one score
logit (sigmoid of the logit clipped to +-100) and 12 regressors, offsets in input pixels from the
anchor centre: a face box, whose width and height come out as 0.2 of the input whatever the
face, and four alignment points (mid-hip, full-body scale point, mid-shoulder, upper-body scale
point). Detections of one model run are merged with weighted NMS on that face box, as MediaPipe
does. The mid-hip and its distance to the full-body scale point describe the circle around the
whole body, from which posekit derives a person box (:func:`person_boxes`, rough: a tight box
comes from the landmarks).

MediaPipe's graph runs the model once on the whole image and follows one person. A small person
shrinks to a few pixels at 224 x 224, so :class:`BlazePoseDetector` also searches overlapping square
tiles at a finer scale, maps their detections back to the image and merges them. On the COCO
sample (4 images, 12 persons with keypoints), the whole image alone gives landmarks with
OKS >= 0.5 for 4 persons, the default tiling (7 model runs on 640 x 480) for 10.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from posekit.data.transforms import apply_affine, crop_transform, invert_affine, to_rgb_uint8, warp_crop
from posekit.detect.boxes import Detections, coverage_matrix, weighted_nms
from posekit.errors import PosekitError
from posekit.models.tflite import TFLiteModel

DETECTOR_PATH = Path(__file__).resolve().parents[1] / "assets" / "blazepose" / "pose_detection.tflite"
INPUT_SIZE = 224
NUM_ANCHORS = 2254
# SsdAnchorsCalculator options of pose_detection_cpu.pbtxt.
ANCHOR_STRIDES = (8, 16, 32, 32, 32)
ANCHOR_OFFSET = 0.5
ANCHORS_PER_LAYER = 2           # aspect ratio 1.0 plus the interpolated-scale anchor
SCORE_CLIP = 100.0
# Person box: a rectangle around the mid-hip, BOX_HALF_LENGTH * r along the body axis and
# BOX_HALF_WIDTH * r across it, r being the distance from mid-hip to the full-body scale point.
BOX_HALF_LENGTH = 1.0
BOX_HALF_WIDTH = 0.5
# Default tiling: one level of tiles 0.7 of the short side (7 model runs on 640 x 480), skipped when
# it would zoom in less than 1/0.75 over the whole image or the tiles would be under 160 pixels.
# On the COCO sample, fractions 0.5 / 0.6 / 0.7 / 0.8 found 8 / 9 / 10 / 10 of 12 persons with
# 13.75 / 8.5 / 7 / 7 model runs per image.
AUTO_TILE_FRACTION = 0.7
AUTO_MAX_ZOOM_RATIO = 0.75
AUTO_MIN_TILE_SIDE = 160
# A tile detection whose person box lies less than this fraction inside its tile is cut by the tile.
CUT_INSIDE_FRACTION = 0.8
# A cut detection is dropped when this fraction of its box lies inside an uncut detection's box.
CUT_COVERED_FRACTION = 0.5


def ssd_anchors(input_size: int = INPUT_SIZE, strides=ANCHOR_STRIDES,
                anchors_per_layer: int = ANCHORS_PER_LAYER, offset: float = ANCHOR_OFFSET) -> np.ndarray:
    """Anchor centres (N, 2) as (x, y) fractions of the input, in the model's output order.

    Consecutive layers with the same stride share one feature map; for each map, rows then columns,
    each cell holds ``anchors_per_layer`` anchors per layer. For BlazePose: 28x28x2 + 14x14x2 +
    7x7x6 = 2254. The anchors have a fixed unit size, so their centres are all that decoding needs.
    """
    centres = []
    i = 0
    while i < len(strides):
        same = 1
        while i + same < len(strides) and strides[i + same] == strides[i]:
            same += 1
        cells = int(np.ceil(input_size / strides[i]))
        grid = (np.arange(cells) + offset) / cells
        ys, xs = np.meshgrid(grid, grid, indexing="ij")
        cell_centres = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(cell_centres, same * anchors_per_layer, axis=0))
        i += same
    return np.concatenate(centres)


def decode_detections(regressors, logits, anchors, score_threshold: float,
                      input_size: int = INPUT_SIZE):
    """Raw model outputs -> (boxes xyxy, scores, alignment points (N, 4, 2)) in input pixels.

    Pixels here are MediaPipe's: 0 is the input's left edge, ``input_size`` its right edge.
    """
    reg = np.asarray(regressors, dtype=float).reshape(-1, 12)
    scores = 1.0 / (1.0 + np.exp(-np.clip(np.asarray(logits, dtype=float).reshape(-1),
                                          -SCORE_CLIP, SCORE_CLIP)))
    keep = scores >= score_threshold
    reg, scores, origin = reg[keep], scores[keep], np.asarray(anchors)[keep] * input_size
    centre, size = reg[:, :2] + origin, reg[:, 2:4]
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
    points = reg[:, 4:].reshape(-1, 4, 2) + origin[:, None, :]
    return boxes, scores, points


def person_boxes(alignment_points) -> np.ndarray:
    """(N, 4) xyxy boxes around persons from their alignment points (N, 4, 2).

    The box bounds a rectangle on the body axis (mid-hip -> full-body scale point), centred on the
    mid-hip, ``2 * BOX_HALF_LENGTH * r`` long and ``2 * BOX_HALF_WIDTH * r`` wide.
    """
    p = np.asarray(alignment_points, dtype=float).reshape(-1, 4, 2)
    axis = p[:, 1] - p[:, 0]
    r = np.linalg.norm(axis, axis=1, keepdims=True)
    u = np.abs(np.divide(axis, r, out=np.zeros_like(axis), where=r > 0))
    half = r * (BOX_HALF_LENGTH * u + BOX_HALF_WIDTH * u[:, ::-1])
    return np.concatenate([p[:, 0] - half, p[:, 0] + half], axis=1)


def tile_regions(width: int, height: int, tiles="auto", overlap: float = 0.25) -> np.ndarray:
    """Square search regions (R, 3) as (x1, y1, side): the whole image first, then the tiles.

    (x1, y1) is the region's top-left corner with the image's top-left corner at (0, 0).

    tiles: "auto" (``AUTO_TILE_FRACTION`` of the short side, see the constants above), "none"
    (whole image only), or fractions of the short side, one per tile level. Tiles of a level
    overlap each other by at least ``overlap`` of their side and together cover the image.
    """
    bad_tiles = f"tiles must be 'auto', 'none' or fractions of the short side, got {tiles!r}"
    short, long = min(width, height), max(width, height)
    regions = [((width - long) / 2, (height - long) / 2, float(long))]  # letterboxed, centred
    if isinstance(tiles, str):
        if tiles == "none":
            fractions = ()
        elif tiles == "auto":
            side = AUTO_TILE_FRACTION * short
            useful = side <= AUTO_MAX_ZOOM_RATIO * long and side >= AUTO_MIN_TILE_SIDE
            fractions = (AUTO_TILE_FRACTION,) if useful else ()
        else:
            raise PosekitError(bad_tiles)
    else:
        try:
            fractions = tuple(float(f) for f in np.atleast_1d(tiles))
        except (TypeError, ValueError):
            raise PosekitError(bad_tiles) from None
        if not all(0 < f <= 1 for f in fractions):
            raise PosekitError(f"tile fractions must be in (0, 1], got {tiles!r}")
    if not 0 <= overlap < 1:
        raise PosekitError(f"tile overlap must be in [0, 1), got {overlap!r}")
    for fraction in fractions:
        side = fraction * short
        starts = [_tile_starts(extent, side, overlap) for extent in (width, height)]
        regions += [(x, y, side) for y in starts[1] for x in starts[0]]
    return np.array(regions, dtype=float)


def _tile_starts(extent: float, side: float, overlap: float) -> np.ndarray:
    if side >= extent:
        return np.array([0.0])
    count = int(np.ceil((extent - side) / (side * (1 - overlap)) - 1e-9)) + 1
    return np.linspace(0.0, extent - side, count)


class BlazePoseDetector:
    """Find every person in an RGB image (uint8 H x W x 3; gray is expanded, alpha dropped).

    score_threshold: minimum detector score; nms_threshold: IoU above which detections of one
    person are merged (MediaPipe's weighted NMS); tiles: see :func:`tile_regions`;
    num_threads: CPU threads of the interpreter.
    """

    def __init__(self, score_threshold: float = 0.5, nms_threshold: float = 0.3, tiles="auto",
                 num_threads: int = 2, tile_overlap: float = 0.25, model_path: str | Path = DETECTOR_PATH):
        if not 0 <= score_threshold <= 1 or not 0 <= nms_threshold <= 1:
            raise PosekitError("score_threshold and nms_threshold must be in [0, 1]")
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.tiles = tiles
        self.tile_overlap = tile_overlap
        tile_regions(INPUT_SIZE, INPUT_SIZE, tiles, tile_overlap)  # validate early
        self.model = TFLiteModel(model_path, {"regressors": "Identity", "logits": "Identity_1"},
                                 num_threads=num_threads)
        self.model.check_output_shapes({"regressors": (1, NUM_ANCHORS, 12), "logits": (1, NUM_ANCHORS, 1)})
        self.anchors = ssd_anchors()
        self.invocations = 0    # model runs so far, to measure what a tiling costs

    def regions(self, width: int, height: int) -> np.ndarray:
        return tile_regions(width, height, self.tiles, self.tile_overlap)

    def detect_region(self, image_rgb: np.ndarray, x1: float, y1: float, side: float):
        """One model run on the square (x1, y1, side) of the image, padded with black where it
        leaves the image. Returns (scores, alignment points (N, 4, 2) in image pixels), after
        MediaPipe's weighted NMS."""
        matrix = crop_transform((x1 + side / 2 - 0.5, y1 + side / 2 - 0.5), side, 0.0, INPUT_SIZE)
        crop = warp_crop(image_rgb, matrix, INPUT_SIZE, border="zero")
        tensor = (crop.astype(np.float32) / 127.5 - 1.0)[None]
        out = self.model(tensor)
        self.invocations += 1
        boxes, scores, points = decode_detections(out["regressors"][0], out["logits"][0],
                                                  self.anchors, self.score_threshold)
        _, scores, points = weighted_nms(boxes, scores, self.nms_threshold, points)
        # Model pixels count from the input's edge; ours from the first pixel's centre.
        return scores, apply_affine(points - 0.5, invert_affine(matrix))

    def __call__(self, image_rgb: np.ndarray) -> Detections:
        image = to_rgb_uint8(image_rgb)
        height, width = image.shape[:2]
        regions = self.regions(width, height)
        scores, points, region_index = [], [], []
        for r, (x1, y1, side) in enumerate(regions):
            s, p = self.detect_region(image, x1, y1, side)
            scores.append(s)
            points.append(p)
            region_index.append(np.full(len(s), r))
        scores, points = np.concatenate(scores), np.concatenate(points).reshape(-1, 4, 2)
        region_index = np.concatenate(region_index)
        return self._merge(scores, points, region_index, regions, width, height)

    def _merge(self, scores, points, region_index, regions, width, height) -> Detections:
        """Merge detections of all regions: drop persons cut by a tile edge where an uncut
        detection covers them, then merge the rest across regions with weighted NMS."""
        if len(scores) == 0:
            return Detections.empty()
        boxes = person_boxes(points)
        clipped = np.clip(boxes, 0, [width, height, width, height])
        region_xyxy = np.column_stack([regions[:, :2], regions[:, :2] + regions[:, 2:3]])
        inside = coverage_matrix(clipped, region_xyxy)[np.arange(len(boxes)), region_index]
        cut = (region_index > 0) & (inside < CUT_INSIDE_FRACTION)
        covered = coverage_matrix(boxes[cut], boxes[~cut]).max(axis=1, initial=0.0)
        keep = ~cut
        keep[np.flatnonzero(cut)[covered < CUT_COVERED_FRACTION]] = True
        boxes, scores, points = weighted_nms(boxes[keep], scores[keep], self.nms_threshold, points[keep])
        boxes = person_boxes(points)
        return Detections(boxes, scores, points)


__all__ = ["BlazePoseDetector", "ssd_anchors", "decode_detections", "person_boxes", "tile_regions",
           "DETECTOR_PATH"]
