"""Files of ``posekit lift``: 2D keypoint sequences in, 3D poses out (numpy ``.npz``).

Input keys: ``keypoints`` (T, K, 2) pixels in the skeleton's joint order (h36m17), optional ``scores``
(T, K) in [0, 1] (0: missing joint, its coordinates may be NaN; default 1), ``image_size`` (2,) =
(width, height) pixels. Output keys: ``keypoints_3d`` (T, K, 3) millimetres, root-relative (pelvis at 0),
camera axes (x right, y down, z forward); ``keypoints_3d_uncorrected`` (the projector's output before the
test-time correction), ``corrected`` (T,) bool (frames whose correction was kept), ``skeleton``.

The 3D poses of a video's tracks (``posekit lift --input <stem>.json``, ``posekit video --3d``) are one
row per person per frame, like the video CSV, so that ``rows = data["track_id"] == 3`` selects one
person's trajectory without any padding: ``track_id``, ``frame`` (video frame index), ``time`` (s)
(N,); ``keypoints_3d``, ``keypoints_3d_uncorrected`` (N, 17, 3) mm as above; ``corrected`` (N,);
``keypoints_2d`` (N, 17, 2) pixels and ``scores_2d`` (N, 17), the lifter's h36m17 input (NaN and 0
where a joint is unknown); rows sorted by track, then frame. Per file: ``tracks`` (M,) the lifted
track ids, ``skipped_tracks`` (S,) those too short to lift, ``fps``, ``image_size`` (width, height),
``skeleton``.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from posekit.errors import PosekitError


def read_lift_input(path, joints: int = 17) -> dict:
    """``{"keypoints", "scores", "image_size"}`` checked (see the module notes); NaN only where score is 0."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: np.asarray(data[key]) for key in data.files}
    except FileNotFoundError:
        raise PosekitError(f"{path}: no such file") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise PosekitError(f"{path}: not a readable .npz file ({type(exc).__name__})") from None
    for key in ("keypoints", "image_size"):
        if key not in arrays:
            raise PosekitError(f"{path}: missing field {key!r} (have: {', '.join(sorted(arrays)) or 'none'})")
    keypoints = _numeric(arrays["keypoints"], path, "keypoints")
    if keypoints.ndim != 3 or keypoints.shape[1:] != (joints, 2):
        raise PosekitError(f"{path}: field 'keypoints' must have shape (T, {joints}, 2), got {keypoints.shape}")
    frames = len(keypoints)
    if frames == 0:
        raise PosekitError(f"{path}: field 'keypoints' has no frames")
    if "scores" in arrays:
        scores = _numeric(arrays["scores"], path, "scores")
        if scores.shape != (frames, joints):
            raise PosekitError(f"{path}: field 'scores' must have shape ({frames}, {joints}), got {scores.shape}")
        if not np.isfinite(scores).all() or (scores < 0).any():
            raise PosekitError(f"{path}: field 'scores' must be finite and >= 0")
    else:
        scores = np.ones((frames, joints))
    bad = ~np.isfinite(keypoints).all(axis=-1) & (scores > 0)
    if bad.any():
        t, k = np.argwhere(bad)[0]
        raise PosekitError(f"{path}: field 'keypoints' is not finite at frame {t}, joint {k} "
                           f"(give such joints score 0)")
    size = _numeric(arrays["image_size"], path, "image_size").reshape(-1)
    if size.shape != (2,) or not np.isfinite(size).all() or (size <= 0).any():
        raise PosekitError(f"{path}: field 'image_size' must be (width, height) > 0, got {arrays['image_size']!r}")
    return {"keypoints": keypoints, "scores": scores, "image_size": size}


def _numeric(value: np.ndarray, path: Path, field: str) -> np.ndarray:
    if value.dtype.kind not in "biuf":
        raise PosekitError(f"{path}: field {field!r} must be numeric, got dtype {value.dtype}")
    return value.astype(np.float64)


def write_lift_output(path, keypoints_3d, uncorrected, corrected, skeleton: str = "h36m17") -> None:
    """Write the output ``.npz`` (see the module notes)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, keypoints_3d=np.asarray(keypoints_3d, dtype=np.float32),
                 keypoints_3d_uncorrected=np.asarray(uncorrected, dtype=np.float32),
                 corrected=np.asarray(corrected, dtype=bool), skeleton=np.array(skeleton))
    except OSError as exc:
        raise PosekitError(f"{path}: cannot write ({exc.strerror or type(exc).__name__})") from None


def write_tracks_output(path, lifted) -> None:
    """Write the 3D poses of a video's tracks, a :class:`posekit.lift.tracks.LiftedTracks` (layout in the
    module notes)."""
    path = Path(path)
    tracks = lifted.tracks

    def rows(name: str, dtype) -> np.ndarray:
        return np.concatenate([np.asarray(getattr(t, name), dtype=dtype) for t in tracks])

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, track_id=np.concatenate([np.full(len(t.frames), t.track_id, dtype=np.int64) for t in tracks]),
                 frame=rows("frames", np.int64), time=rows("times", np.float64),
                 keypoints_3d=rows("keypoints_3d", np.float32),
                 keypoints_3d_uncorrected=rows("uncorrected", np.float32),
                 corrected=rows("corrected", bool), keypoints_2d=rows("keypoints_2d", np.float32),
                 scores_2d=rows("scores", np.float32),
                 tracks=np.array([t.track_id for t in tracks], dtype=np.int64),
                 skipped_tracks=np.array(sorted(lifted.skipped), dtype=np.int64),
                 fps=np.float64(lifted.poses.fps), image_size=np.array(lifted.poses.image_size, dtype=np.int64),
                 skeleton=np.array("h36m17"))
    except OSError as exc:
        raise PosekitError(f"{path}: cannot write ({exc.strerror or type(exc).__name__})") from None


__all__ = ["read_lift_input", "write_lift_output", "write_tracks_output"]
