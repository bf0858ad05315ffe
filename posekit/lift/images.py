"""Human3.6M images for the image front end of 3D Human Pose Machines (``lift.frontend: cpm``).

Annotations: MMPose's Human3.6M layout (``tools/dataset_converters/preprocess_h36m.py``), one or more
``.npz`` files with ``imgname``, ``center``, ``scale``, ``part`` (N, 17, 3) pixels + visibility and ``S``
(N, 17, 4) camera-frame metres + confidence, read by :func:`posekit.data.h36m.read_h36m_body3d`; images in
a folder where ``imgname`` is the relative path.

* Sequences. ``imgname`` reads ``S1/S1_Directions_1.54138969/S1_Directions_1.54138969_000001.jpg``:
  subject ``S1``, action ``Directions_1`` (action and trial; MMPose writes the dataset's "Directions 1"
  with ``_``), camera ``54138969``, frame ``1`` (the video frame index + 1). Every (subject, action,
  camera) is one sequence (the paper: "each viewpoint of a subject is a distinct sequence"), its frames
  ordered by frame number. Actions are scored under their name without the trial number, with S1's
  ``TakingPhoto`` and ``WalkingDog`` read as ``Photo`` and ``WalkDog`` (:data:`ACTION_ALIASES`).
* Subsampling. ``frame_step`` counts video frames: a sequence keeps the frames whose number differs from
  its first annotated frame by a multiple of ``frame_step`` (Protocol #1: 25, i.e. 50 -> 2 fps), whatever
  rate the annotation file was written at (MMPose's ``fps10`` files hold every 5th frame, ``fps50`` all);
  a step that is not a multiple of the file's frame spacing is an error, not a silently sparser set.
  Kept frames whose numbers differ by more than ``frame_step`` (frames absent from the file) split the
  sequence into runs.
* Clips. Each run is cut into consecutive non-overlapping clips of ``clip_length`` kept frames (the paper's
  "several small equal clips with N frames"); the frames left over at a run's end are not trained on.
  Evaluation runs each whole run through the LSTM, frame after frame.
* Crops. The square box ``center``, side ``scale`` x 200 px (MMPose's box is already 1.2 x the 2D joints'
  extent) is mapped edge to edge onto ``crop`` x ``crop`` pixels (368 in the paper) by
  :func:`posekit.data.topdown.window_matrix`, the aspect ratio kept; training multiplies the side by a
  factor drawn uniformly from ``scale_range`` (0.9-1.1), one factor per clip so a clip zooms steadily.
  Pixels outside the image are grey (128), which the network input maps to 0.
* Network input: CPM's Caffe convention, BGR channel order and ``pixel / 256 - 0.5`` (:func:`cpm_input`),
  so weights converted from CPM's models fit the trunk.
* 3D targets: ``S`` made root-relative (pelvis at 0), camera axes, metres; the transformer learns them
  max-min normalised to [0, 1] per coordinate (joint and axis) with the minimum and range of the training
  poses (:func:`max_min_stats`). Those statistics are buffers of :class:`ImagePoseMachine3D`, so they are
  saved inside every checkpoint and ``best.safetensors`` and evaluation uses the ones the weights were
  trained with; the model de-normalises its output before the projector and the metrics.
* 2D for the projector: ``part`` normalised as the keypoint front end's input (:func:`normalized_2d`:
  pelvis subtracted, divided by the RMS radius of the visible joints), with ``part``'s visibility as
  joint weights.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from posekit.data.h36m import read_h36m_body3d
from posekit.data.topdown import read_image, window_matrix
from posekit.errors import PosekitError
from posekit.lift.model import METRES, SKELETON, FeaturePoseMachine3D, PoseMachine3D, normalize_keypoints
from posekit.skeletons import get_skeleton

PAPER_CROP = 368
TRUNK_STRIDE = 8  # the three 2x2 max-pools of the CPM trunk
# The smallest crop: 40 // 8 = 5 trunk cells -> 3 -> 2 (5x5 stride-2 convs) -> 1 (2x2 pool).
MIN_CROP = 40
BORDER_VALUE = 128  # grey outside the image: 0 after cpm_input
ACTION_ALIASES = {"TakingPhoto": "Photo", "WalkingDog": "WalkDog"}
_TRIAL = re.compile(r"^(.*?)[ _]\d+$")


@dataclass
class H36MFrames:
    """Every annotated frame of the annotation files, one row each (see the module notes)."""

    paths: list[Path]
    centers: np.ndarray      # (N, 2) pixels
    sides: np.ndarray        # (N,) pixels, the square box's side
    keypoints: np.ndarray    # (N, K, 2) pixels
    visibility: np.ndarray   # (N, K)
    positions: np.ndarray    # (N, K, 3) camera-frame millimetres
    subjects: np.ndarray     # (N,) str
    actions: np.ndarray      # (N,) str, with the trial ("Directions_1")
    cameras: np.ndarray      # (N,) str
    frames: np.ndarray       # (N,) int, video frame index + 1

    def __len__(self) -> int:
        return len(self.paths)


def load_h36m_frames(annotations, images) -> H36MFrames:
    """The frames of one or more MMPose-layout ``.npz`` files, images looked up under ``images``."""
    parts, seen = [], {}
    for path in annotations:
        data = read_h36m_body3d(path)
        poses = data["poses_2d"]
        names = [poses.images[int(i)].file_name for i in poses.image_ids]
        for name in names:
            if name in seen:
                raise PosekitError(f"{path}: imgname {name!r} is also in {seen[name]}")
            seen[name] = path
        boxes = poses.boxes
        if not (boxes[:, 2] > 0).all():
            bad = int(np.argmin(boxes[:, 2] > 0))
            raise PosekitError(f"{path}: 'scale' of imgname {names[bad]!r} must be positive")
        parts.append(H36MFrames(
            [Path(images) / name for name in names], boxes[:, :2] + boxes[:, 2:] / 2, boxes[:, 2].copy(),
            poses.keypoints, poses.visibility, data["positions"], np.array(data["subjects"]),
            np.array(data["actions"]), np.array(data["cameras"]), np.array(data["frames"], dtype=np.int64)))
    if not parts:
        raise PosekitError("config data.h36m.annotations names no file")
    return H36MFrames(*([p for part in parts for p in part.paths],
                        *(np.concatenate([getattr(part, name) for part in parts])
                          for name in ("centers", "sides", "keypoints", "visibility", "positions", "subjects",
                                       "actions", "cameras", "frames"))))


def action_label(action: str) -> str:
    """The action a sequence is scored under: the trial number dropped, S1's spellings aliased."""
    match = _TRIAL.match(action)
    base = match[1] if match else action
    return ACTION_ALIASES.get(base, base)


def group_sequences(subjects, actions, cameras, frames) -> dict[tuple[str, str, str], np.ndarray]:
    """{(subject, action, camera): row indices ordered by frame number}, keys sorted."""
    frames = np.asarray(frames)
    groups: dict[tuple[str, str, str], list[int]] = {}
    for row, key in enumerate(zip(subjects, actions, cameras, strict=True)):
        groups.setdefault(tuple(str(k) for k in key), []).append(row)
    return {key: np.array(sorted(rows, key=lambda r: frames[r]), dtype=np.int64)
            for key, rows in sorted(groups.items())}


def subsample_runs(frames, step: int, where: str) -> list[np.ndarray]:
    """Positions (into ``frames``, one sequence's frame numbers in increasing order) of the frames kept
    with ``step``, split into runs of frames exactly ``step`` apart (see the module notes)."""
    frames = np.asarray(frames, dtype=np.int64)
    gaps = np.diff(frames)
    if (gaps <= 0).any():
        raise PosekitError(f"{where}: frame {int(frames[1:][gaps <= 0][0])} is annotated twice")
    spacing = int(np.gcd.reduce(gaps)) if len(gaps) else 1
    if step % spacing:
        raise PosekitError(f"{where}: data.h36m.frame_step {step} is not a multiple of the annotation's "
                           f"frame spacing {spacing}")
    kept = np.flatnonzero((frames - frames[0]) % step == 0)
    breaks = np.flatnonzero(np.diff(frames[kept]) != step) + 1
    return np.split(kept, breaks)


def make_clips(runs: list[np.ndarray], length: int) -> list[np.ndarray]:
    """Consecutive non-overlapping windows of ``length`` items of each run (leftovers dropped)."""
    return [run[start:start + length] for run in runs for start in range(0, len(run) - length + 1, length)]


def protocol_runs(frames: H36MFrames, subjects, step: int, key: str) -> list[np.ndarray]:
    """Row indices of every run of the named subjects' subsampled sequences (``key``: the config key
    that named the subjects, for errors)."""
    wanted = [str(s) for s in subjects]
    present = set(frames.subjects.tolist())
    for subject in wanted:
        if subject not in present:
            raise PosekitError(f"config {key}: no frames of {subject} in data.h36m.annotations")
    runs = []
    for (subject, action, camera), rows in group_sequences(frames.subjects, frames.actions, frames.cameras,
                                                           frames.frames).items():
        if subject in wanted:
            where = f"sequence {subject}/{action}.{camera}"
            runs += [rows[run] for run in subsample_runs(frames.frames[rows], step, where)]
    return runs


def check_images(paths) -> None:
    """Stop before any training when an image the run needs is missing."""
    for path in paths:
        if not path.is_file():
            raise PosekitError(f"{path}: image missing (an imgname of data.h36m.annotations, looked up "
                               f"under data.h36m.images)")


def crop_matrix(center, side: float, crop: int) -> np.ndarray:
    """2x3 matrix from image pixels to crop pixels of the square window ``side`` around ``center``."""
    return window_matrix(center, side, 0.0, crop)


def crop_frame(image: np.ndarray, center, side: float, crop: int) -> np.ndarray:
    """The ``crop`` x ``crop`` x 3 uint8 crop of an H x W x 3 image, grey where the window leaves it."""
    return cv2.warpAffine(image, crop_matrix(center, side, crop), (crop, crop), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(BORDER_VALUE,) * 3)


def load_crop(path: Path, center, side: float, crop: int) -> np.ndarray:
    """A frame's crop in BGR order (CPM's channel order), uint8."""
    return np.ascontiguousarray(crop_frame(read_image(path), center, side, crop)[..., ::-1])


def cpm_input(crops: torch.Tensor) -> torch.Tensor:
    """(..., H, W, 3) uint8 BGR crops -> (..., 3, H, W) float32 ``pixel / 256 - 0.5`` (CPM's input)."""
    return crops.movedim(-1, -3).float().div(256.0).sub(0.5)


def root_relative_metres(positions_mm, skeleton=SKELETON) -> np.ndarray:
    """(..., K, 3) millimetres -> float32 metres with the pelvis at the origin."""
    root = get_skeleton(skeleton).index("pelvis")
    pose = np.asarray(positions_mm, dtype=np.float64)
    return ((pose - pose[..., root:root + 1, :]) / METRES).astype(np.float32)


def max_min_stats(poses) -> tuple[np.ndarray, np.ndarray]:
    """Per-coordinate (minimum, range) of training poses (N, K, 3); a coordinate that never varies
    (the pelvis, 0 after root-centring) gets range 1, so it normalises to 0 instead of dividing by 0."""
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 3 or not len(poses):
        raise PosekitError(f"max-min statistics need poses (N, K, 3) with N >= 1, got shape {poses.shape}")
    low, high = poses.min(axis=0), poses.max(axis=0)
    span = high - low
    return low.astype(np.float32), np.where(span > 1e-9, span, 1.0).astype(np.float32)


def max_min_normalize(poses, minimum, span):
    """Poses mapped so the training poses fill [0, 1] per coordinate (numpy or torch)."""
    return (poses - minimum) / span


def max_min_denormalize(values, minimum, span):
    """The inverse of :func:`max_min_normalize` (numpy or torch)."""
    return values * span + minimum


def normalized_2d(keypoints, visibility, skeleton=SKELETON) -> np.ndarray:
    """(..., K, 2) pixels -> the 2D the projector works with: the coordinates of
    :func:`posekit.lift.model.normalize_keypoints` (pelvis subtracted, divided by the RMS radius of the
    visible joints; invisible joints 0). They do not depend on the image size, so none is needed."""
    joints = np.asarray(keypoints).shape[-2]
    flat = normalize_keypoints(keypoints, visibility, (1, 1), skeleton)[..., :2 * joints]
    return flat.reshape(*flat.shape[:-1], joints, 2)


def mirror_2d(points: torch.Tensor, skeleton=SKELETON) -> torch.Tensor:
    """Normalised 2D (..., K, 2) of the mirrored image: x negated, left and right joints swapped."""
    flip = torch.as_tensor(get_skeleton(skeleton).flip_indices, device=points.device)
    return points.index_select(-2, flip) * torch.tensor([-1.0, 1.0], device=points.device, dtype=points.dtype)


class _FrameTargets:
    """The per-frame arrays both datasets read: 3D targets, projector 2D, visibility, crop windows."""

    def __init__(self, frames: H36MFrames, rows: np.ndarray, crop: int):
        rows = np.unique(rows)
        self.position = {int(r): i for i, r in enumerate(rows)}
        self.paths = [frames.paths[r] for r in rows]
        self.centers, self.sides = frames.centers[rows], frames.sides[rows]
        self.target = root_relative_metres(frames.positions[rows])
        self.target_2d = normalized_2d(frames.keypoints[rows], frames.visibility[rows]).astype(np.float32)
        self.visibility = np.clip(frames.visibility[rows], 0.0, 1.0).astype(np.float32)
        self.crop = crop
        check_images(self.paths)

    def arrays(self, rows) -> dict:
        at = [self.position[int(r)] for r in rows]
        return {"target": torch.from_numpy(self.target[at]), "target_2d": torch.from_numpy(self.target_2d[at]),
                "visibility": torch.from_numpy(self.visibility[at])}

    def crops(self, rows, zoom: float = 1.0) -> np.ndarray:
        """(T, crop, crop, 3) uint8 BGR crops of ``rows``, each box's side times ``zoom``."""
        at = [self.position[int(r)] for r in rows]
        return np.stack([load_crop(self.paths[i], self.centers[i], self.sides[i] * zoom, self.crop) for i in at])


class H36MClips:
    """Training clips: ``images`` (T, 3, crop, crop) network input, ``target`` (T, K, 3) root-relative
    metres, ``target_2d`` (T, K, 2) normalised 2D, ``visibility`` (T, K)."""

    def __init__(self, frames: H36MFrames, runs: list[np.ndarray], clip_length: int, crop: int,
                 scale_range=(0.9, 1.1)):
        self.clips = make_clips(runs, clip_length)
        if not self.clips:
            raise PosekitError(f"config data.clip_length: no training sequence has {clip_length} frames "
                               f"after subsampling (data.h36m.frame_step)")
        self.scale_range = tuple(float(v) for v in scale_range)
        self.frames = _FrameTargets(frames, np.concatenate(self.clips), crop)

    def __len__(self) -> int:
        return len(self.clips)

    def sample(self, index: int, rng: np.random.Generator) -> dict:
        rows = self.clips[index]
        zoom = float(rng.uniform(*self.scale_range))
        images = cpm_input(torch.from_numpy(self.frames.crops(rows, zoom)))
        return {"images": images, **self.frames.arrays(rows)}


class H36MSequenceSet:
    """Evaluation: one item per run of consecutive subsampled frames, un-augmented: ``crops`` (T, crop,
    crop, 3) uint8 BGR (made network input in chunks by the model), targets as :class:`H36MClips`,
    ``sequence`` (``S9/Directions_1.54138969``) and ``action`` (the scored action name)."""

    def __init__(self, frames: H36MFrames, runs: list[np.ndarray], crop: int):
        if not runs:
            raise PosekitError("config data.h36m.test_subjects: no evaluation frames")
        self.runs = runs
        self.names = [f"{frames.subjects[r[0]]}/{frames.actions[r[0]]}.{frames.cameras[r[0]]}" for r in runs]
        self.actions = [action_label(str(frames.actions[r[0]])) for r in runs]
        self.frames = _FrameTargets(frames, np.concatenate(runs), crop)

    def __len__(self) -> int:
        return len(self.runs)

    def __getitem__(self, index: int) -> dict:
        rows = self.runs[index]
        return {"crops": torch.from_numpy(self.frames.crops(rows)), **self.frames.arrays(rows),
                "sequence": self.names[index], "action": self.actions[index]}


class ImagePoseMachine3D(PoseMachine3D):
    """:class:`PoseMachine3D` with the CPM image front end for ``crop`` x ``crop`` inputs, and the
    max-min normalisation of its 3D output (buffers ``target_min``, ``target_range`` (K, 3) metres).

    ``transformer`` outputs normalised values; :meth:`denormalize` gives root-relative metres, which
    is what the projector, the test-time correction and the metrics work with."""

    def __init__(self, joints: int = 17, width: int = 1024, layers: int = 2, temporal: str = "lstm",
                 projector_hidden: int = 1024, projector_width: int = 1024, crop: int = PAPER_CROP):
        super().__init__(joints, width, layers, temporal, projector_hidden, projector_width, frontend="cpm")
        if crop < MIN_CROP:
            raise PosekitError(f"config data.h36m.crop {crop} is too small for the CPM trunk (at least {MIN_CROP})")
        if crop != PAPER_CROP:  # PoseMachine3D builds the adapter for 368-pixel crops
            self.transformer = FeaturePoseMachine3D(joints, width, layers, temporal,
                                                    feature_size=crop // TRUNK_STRIDE)
        self.crop = crop
        self.register_buffer("target_min", torch.zeros(joints, 3))
        self.register_buffer("target_range", torch.ones(joints, 3))

    def set_normalization(self, minimum, span) -> None:
        self.target_min.copy_(torch.as_tensor(minimum))
        self.target_range.copy_(torch.as_tensor(span))

    def normalize(self, pose: torch.Tensor) -> torch.Tensor:
        return max_min_normalize(pose, self.target_min, self.target_range)

    def denormalize(self, values: torch.Tensor) -> torch.Tensor:
        return max_min_denormalize(values, self.target_min, self.target_range)

    def forward(self, inputs: torch.Tensor, state=None):
        """Network input (B, T, 3, crop, crop) -> (3D metres (B, T, K, 3), corrected 3D, projected 2D, state)."""
        raw, state = self.transformer(inputs, state)
        p3d = self.denormalize(raw)
        corrected, projected = self.projector(p3d.flatten(0, 1).flatten(1))
        shape = p3d.shape[:2]
        return (p3d, corrected.reshape(*shape, self.joints, 3), projected.reshape(*shape, self.joints, 2), state)

    def lift_crops(self, crops: torch.Tensor, chunk: int, single_frame: bool = False) -> torch.Tensor:
        """3D (T, K, 3) metres of one sequence's uint8 crops (T, crop, crop, 3), ``chunk`` frames per pass
        with the LSTM state carried over (the same as one pass); ``single_frame``: every frame alone."""
        outputs, state = [], None
        for start in range(0, len(crops), chunk):
            inputs = cpm_input(crops[start:start + chunk])
            if single_frame:
                raw, _ = self.transformer(inputs[:, None])
                outputs.append(raw[:, 0])
            else:
                raw, state = self.transformer(inputs[None], state)
                outputs.append(raw[0])
        return self.denormalize(torch.cat(outputs))


__all__ = ["H36MFrames", "load_h36m_frames", "action_label", "group_sequences", "subsample_runs", "make_clips",
           "protocol_runs", "check_images", "crop_matrix", "crop_frame", "load_crop", "cpm_input",
           "root_relative_metres", "max_min_stats", "max_min_normalize", "max_min_denormalize", "normalized_2d",
           "mirror_2d", "H36MClips", "H36MSequenceSet", "ImagePoseMachine3D", "ACTION_ALIASES", "PAPER_CROP",
           "MIN_CROP"]
