"""2D/3D training pairs for lifting: real mocap sequences seen by random cameras, with detector-like noise.

A chunk is ``length`` consecutive frames of one CMU trial (resampled to ``fps``), varied like every
synthetic subject (bone lengths, joint angles, mirroring, turn), seen by one random static pinhole camera
(:func:`random_camera`). Keypoints of any skeleton come from the body model (joint centres, head points
on the head surface; see :mod:`posekit.data.synthetic.body`).

Noise model (:class:`NoiseModel`, :func:`apply_noise`), applied in this order:

1. Gaussian jitter: every coordinate + N(0, sigma) pixels.
2. Left/right swaps: for each left/right pair of the skeleton, an event starts on a frame with
   probability ``swap_rate`` and lasts 1..``max_event_frames`` frames; meanwhile the two joints'
   detections trade places (a detector confusing the sides).
3. Outliers: per joint, events as above with ``outlier_rate``; meanwhile the detection is a uniform
   random point of the person's box (clean keypoints' box, grown by 20 %).
4. Missing joints: per joint, events with ``missing_rate``; joints outside the image are missing too.
   A missing joint has score 0 and coordinates NaN.

Scores: clean or swapped detections ``0.95 - 0.1 |e| / sigma + N(0, 0.03)`` clipped to [0.3, 1] (e the
jitter, so worse points score lower); outliers U(0.05, 0.5); missing 0.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from posekit.data.structures import Motion
from posekit.data.synthetic.body import body_keypoints, build_body
from posekit.data.synthetic.files import write_npz
from posekit.data.synthetic.motion import apply_variation, resample, sample_variation
from posekit.data.synthetic.scenes import look_at, rng_for
from posekit.errors import PosekitError
from posekit.geometry.camera import Camera
from posekit.skeletons import get_skeleton


@dataclass
class NoiseModel:
    """Detector-like 2D noise (see the module notes); rates are per frame."""

    sigma: float = 2.0
    swap_rate: float = 0.005
    outlier_rate: float = 0.01
    missing_rate: float = 0.01
    max_event_frames: int = 5

    def __post_init__(self):
        for name in ("sigma", "swap_rate", "outlier_rate", "missing_rate"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0 or (name.endswith("rate") and value > 1):
                raise PosekitError(f"noise: {name} must be {'in [0, 1]' if name.endswith('rate') else '>= 0'}, "
                                   f"got {value}")
        if self.max_event_frames < 1:
            raise PosekitError(f"noise: max_event_frames must be at least 1, got {self.max_event_frames}")


def _events(rng: np.random.Generator, frames: int, channels: int, rate: float, max_len: int) -> np.ndarray:
    """(frames, channels) bool: events start with probability ``rate`` and last 1..max_len frames."""
    starts = rng.random((frames, channels)) < rate
    lengths = rng.integers(1, max_len + 1, (frames, channels))
    active = np.zeros((frames, channels), dtype=bool)
    for f, c in zip(*np.nonzero(starts)):
        active[f:f + lengths[f, c], c] = True
    return active


def apply_noise(keypoints, skeleton, rng: np.random.Generator, model: NoiseModel, image_size) -> dict:
    """Noisy detections of clean keypoints (T, J, 2) pixels: ``keypoints`` (T, J, 2) with NaN where
    missing, ``scores`` (T, J), and the bool masks ``swapped``, ``outlier``, ``missing`` (T, J)."""
    skeleton = get_skeleton(skeleton)
    clean = np.asarray(keypoints, dtype=float)
    if clean.ndim != 3 or clean.shape[1:] != (len(skeleton), 2):
        raise PosekitError(f"apply_noise: expected keypoints (T, {len(skeleton)}, 2), got {clean.shape}")
    frames, joints = clean.shape[:2]
    jitter = rng.normal(0.0, model.sigma, clean.shape)
    noisy = clean + jitter
    swapped = np.zeros((frames, joints), dtype=bool)
    pairs = np.array(skeleton.flip_pairs, dtype=int).reshape(-1, 2)
    if len(pairs):
        swap = _events(rng, frames, len(pairs), model.swap_rate, model.max_event_frames)
        for p, (left, right) in enumerate(pairs):
            rows = swap[:, p]
            noisy[rows, left], noisy[rows, right] = noisy[rows, right].copy(), noisy[rows, left].copy()
            swapped[rows, left] = swapped[rows, right] = True
    outlier = _events(rng, frames, joints, model.outlier_rate, model.max_event_frames)
    finite = np.where(np.isfinite(clean), clean, np.nan)
    with np.errstate(invalid="ignore"):
        lo, hi = np.nanmin(finite, axis=1), np.nanmax(finite, axis=1)
    grow = 0.1 * (hi - lo)
    lo, hi = lo - grow, hi + grow
    random_points = lo[:, None, :] + rng.random((frames, joints, 2)) * (hi - lo)[:, None, :]
    noisy = np.where(outlier[..., None], random_points, noisy)
    width, height = image_size
    outside = ~(np.isfinite(clean).all(axis=-1) & (clean[..., 0] >= 0) & (clean[..., 0] <= width - 1)
                & (clean[..., 1] >= 0) & (clean[..., 1] <= height - 1))
    missing = _events(rng, frames, joints, model.missing_rate, model.max_event_frames) | outside
    error = np.linalg.norm(jitter, axis=-1) / max(model.sigma, 1e-9)
    scores = np.clip(0.95 - 0.1 * error + rng.normal(0.0, 0.03, error.shape), 0.3, 1.0)
    scores = np.where(outlier, rng.uniform(0.05, 0.5, scores.shape), scores)
    scores = np.where(missing, 0.0, scores)
    noisy[missing] = np.nan
    return {"keypoints": noisy, "scores": scores, "swapped": swapped & ~missing, "outlier": outlier & ~missing,
            "missing": missing}


def random_camera(rng: np.random.Generator, points, width: int, height: int, *, distance=(3000.0, 7000.0),
                  eye_height=(300.0, 2500.0), focal=(0.6, 1.6)) -> Camera:
    """A pinhole camera looking at the middle of ``points`` (N, 3) from a random direction: distance from
    the middle ``distance`` mm (plus the points' own extent), height ``eye_height`` mm, focal length
    ``focal`` times the image width, principal point at the image centre, no distortion."""
    points = np.asarray(points, dtype=float)
    lo, hi = points.min(axis=0), points.max(axis=0)
    middle = (lo + hi) / 2
    angle = rng.uniform(0, 2 * np.pi)
    dist = rng.uniform(*distance) + 0.5 * float(np.linalg.norm((hi - lo)[[0, 2]]))
    eye = middle + np.array([np.sin(angle), 0.0, np.cos(angle)]) * dist
    eye[1] = rng.uniform(*eye_height)
    rotation, translation = look_at(eye, middle + rng.normal(0.0, 100.0, 3))
    f = rng.uniform(*focal) * width
    K = np.array([[f, 0.0, (width - 1) / 2], [0.0, f, (height - 1) / 2], [0.0, 0.0, 1.0]])
    return Camera(K=K, R=rotation, t=translation, width=width, height=height)


def sample_pair(motion: Motion, skeleton, length: int, rng: np.random.Generator, *, fps: float = 50.0,
                size=(1000, 1000), noise: NoiseModel | None = None) -> dict:
    """One chunk of ``length`` frames of ``motion`` (see the module notes) as a dict of arrays."""
    skeleton = get_skeleton(skeleton)
    positions = resample(motion.positions, motion.fps, fps) if fps != motion.fps else motion.positions
    if len(positions) < length:
        raise PosekitError(f"{motion.meta.get('source', 'motion')}: {len(positions)} frames at {fps} fps, "
                           f"fewer than the chunk length {length}")
    first = int(rng.integers(0, len(positions) - length + 1))
    world_joints = apply_variation(positions[first:first + length], sample_variation(rng))
    world = np.stack([body_keypoints(frame, build_body(frame), skeleton.name) for frame in world_joints])
    width, height = size
    camera = random_camera(rng, world.reshape(-1, 3), width, height)
    camera_points = camera.world_to_camera(world)
    clean = camera.project(world, distort=False)  # synthetic cameras have no lens distortion
    detections = apply_noise(clean, skeleton, rng, noise or NoiseModel(), (width, height))
    return {
        "keypoints": detections["keypoints"], "scores": detections["scores"],
        "keypoints_clean": clean, "keypoints_3d": camera_points, "keypoints_world": world,
        "swapped": detections["swapped"], "outlier": detections["outlier"], "missing": detections["missing"],
        "image_size": np.array([width, height]), "K": camera.K, "R": camera.R, "t": camera.t,
        "dist": camera.dist, "fps": np.array(float(fps)), "skeleton": np.array(skeleton.name),
        "action": np.array(motion.meta.get("action", "unknown")), "source": np.array(motion.meta.get("trial", "")),
        "frames": np.arange(first, first + length),
    }


def write_pairs(out, motions: list[Motion], count: int, seed: int, *, length: int = 81, skeleton="h36m17",
                fps: float = 50.0, size=(1000, 1000), noise: NoiseModel | None = None, progress=None) -> dict:
    """``count`` chunks as ``out/chunk_000000.npz`` ... (keys: ``keypoints`` (T, J, 2) noisy pixels,
    ``scores`` (T, J), ``keypoints_clean``, ``keypoints_3d`` (T, J, 3) camera coordinates mm,
    ``keypoints_world``, the masks ``swapped``/``outlier``/``missing``, ``image_size`` (width, height),
    camera ``K``, ``R``, ``t``, ``dist``, ``fps``, ``skeleton``, ``action``, ``source``, ``frames``)."""
    if count < 1 or length < 1:
        raise PosekitError(f"--n and --length must be at least 1, got {count} and {length}")
    if not motions:
        raise PosekitError("2D/3D pairs need motion capture: pass --mocap DIR (or set POSEKIT_MOCAP)")
    long_enough = [m for m in motions if (len(m) - 1) / m.fps * fps + 1 >= length]
    if not long_enough:
        raise PosekitError(f"no motion-capture trial has {length} frames at {fps} fps")
    out = Path(out)
    for index in range(count):
        rng = rng_for(seed, index)
        motion = long_enough[int(rng.integers(len(long_enough)))]
        write_npz(out / f"chunk_{index:06d}.npz",
                  **sample_pair(motion, skeleton, length, rng, fps=fps, size=size, noise=noise))
        if progress is not None:
            progress(index + 1, count)
    return {"chunks": count, "frames": count * length, "skeleton": get_skeleton(skeleton).name, "out": str(out)}
