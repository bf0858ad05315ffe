"""3D poses of every tracked person of a video: posekit's video JSON in, one lifted sequence per track.

:func:`read_video_poses` (or :func:`video_poses` for an already parsed document) checks a
``posekit.video`` JSON (written by :func:`posekit.video.process_video`, schema in
:mod:`posekit.video`) and turns its persons into arrays. :func:`lift_tracks` then, per track id:

* converts the 2D keypoints to h36m17 (:func:`posekit.skeletons.convert_keypoints`; the video's skeleton
  must have a mapping to h36m17, e.g. coco17 or blazepose33; joints h36m17 has and the source lacks,
  such as spine and head from COCO, are missing: score 0, masked by the lifter);
* skips tracks seen in fewer than ``MIN_TRACK_FRAMES`` frames (mostly spurious detections, and too
  short for the LSTM's temporal context) and reports them;
* splits the track where it is unseen for more than ``MAX_GAP`` frames: each part is lifted by its own
  :func:`posekit.lift.lift_sequence` call, from a fresh LSTM state;
* fills shorter gaps for the lifter with a per-joint linear interpolation between the frames either
  side, each filled joint taking the lower of the two scores (0, masked, where either side lacks it).
  The filled frames only carry the LSTM state across the gap: the results list the frames where the
  person was seen, no others.

Why interpolate rather than mask the gap (score 0 everywhere): the lifter was trained on sequences
where single joints go missing, never whole frames, and a masked frame is a zero input it has never
seen. P-MPJPE (mm) of the 25 frames after a gap starting at frame 30, shipped lifter, no correction,
CMU trials 01_01, 02_05, 07_05, 131_04 (first 100 frames at 30 fps), 5 random cameras each, 3 px
noise, scores uniform in [0.5, 1]; gaps of 3 / 5 / 10 / 16 / 24 frames: interpolated 42.1 / 42.1 /
42.4 / 41.9 / 43.7; masked 43.2 / 43.3 / 43.0 / 43.4 / 45.9; a fresh state after the gap 43.6 / 43.3 /
42.7 / 43.0 / 45.4; the same frames with no gap at all 41.8 / 42.1 / 42.2 / 42.0 / 44.0. Interpolation
costs nothing on this smooth motion; real people move less predictably while hidden, so ``MAX_GAP``
stays at 10 frames (a third of a second at 30 fps).
"""
from __future__ import annotations

import math
import numbers
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import numpy as np

from posekit.data.safe_pickle import read_json
from posekit.errors import PosekitError
from posekit.skeletons import Skeleton, convert_keypoints, get_mapping, get_skeleton, list_skeletons

LIFT_SKELETON = "h36m17"
MAX_GAP = 10            # unseen frames bridged by interpolation; a longer gap starts a new segment
MIN_TRACK_FRAMES = 5    # tracks seen in fewer frames are not lifted


@dataclass(frozen=True)
class VideoPoses:
    """The persons of a posekit video JSON, one row per person per frame (in file order).

    ``keypoints`` (N, K, 2) pixels, NaN where unknown; ``scores`` (N, K), 0 where unknown;
    ``frame`` / ``time`` / ``track_id`` (N,) per row; ``frame_indices`` / ``frame_times`` (F,) every
    frame the file lists, persons or not; ``video`` the file's ``video`` block as written.
    """

    source: str
    video: dict
    skeleton: Skeleton
    frame_indices: np.ndarray
    frame_times: np.ndarray
    frame: np.ndarray
    time: np.ndarray
    track_id: np.ndarray
    keypoints: np.ndarray
    scores: np.ndarray

    @property
    def fps(self) -> float:
        return float(self.video["fps"])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.video["width"]), int(self.video["height"])


@dataclass(frozen=True)
class LiftedTrack:
    """One person's 3D poses at the frames where the track was seen.

    ``keypoints_2d`` (T, 17, 2) pixels and ``scores`` (T, 17): the lifter's h36m17 input;
    ``keypoints_3d`` (T, 17, 3) mm, root-relative, camera axes (x right, y down, z forward);
    ``uncorrected``: the same before the test-time correction; ``corrected`` (T,) frames whose
    correction was kept; ``segments``: separate lifter runs (gaps longer than ``MAX_GAP``).
    """

    track_id: int
    frames: np.ndarray
    times: np.ndarray
    keypoints_2d: np.ndarray
    scores: np.ndarray
    keypoints_3d: np.ndarray
    uncorrected: np.ndarray
    corrected: np.ndarray
    segments: int


@dataclass(frozen=True)
class LiftedTracks:
    """The lifted tracks of one video (by track id) and those too short to lift (id -> frames seen)."""

    poses: VideoPoses
    tracks: list[LiftedTrack]
    skipped: dict[int, int]
    settings: dict

    @property
    def pose_count(self) -> int:
        """Poses lifted, over all tracks."""
        return sum(len(t.frames) for t in self.tracks)


# ---- reading the video JSON ----------------------------------------------------------------------

def read_video_poses(path) -> VideoPoses:
    """:class:`VideoPoses` from a ``posekit.video`` JSON file (see the module notes)."""
    doc = read_json(path)
    return video_poses(doc, str(path))


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and abs(value) < 2 ** 63


def video_poses(doc, source: str = "video JSON") -> VideoPoses:
    """:class:`VideoPoses` from a parsed ``posekit.video`` document; ``source`` names it in errors."""
    def fail(message: str):
        raise PosekitError(f"{source}: {message}")

    if not isinstance(doc, dict) or doc.get("format") != "posekit.video":
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        fail(f"not a posekit video JSON (format {found!r}, expected 'posekit.video', as written by "
             f"posekit video)")
    if doc.get("version") != 1:
        fail(f"field 'version': {doc.get('version')!r} is not supported (expected 1)")
    video = doc.get("video")
    if not isinstance(video, dict):
        fail("field 'video' must be an object")
    if not _is_number(video.get("fps")) or video["fps"] <= 0:
        fail(f"field 'video.fps' must be a number > 0, got {video.get('fps')!r}")
    for key in ("width", "height"):
        if not _is_int(video.get(key)) or video[key] <= 0:
            fail(f"field 'video.{key}' must be an integer > 0, got {video.get(key)!r}")
    skeleton = _skeleton(doc.get("skeleton"), fail)
    frames = doc.get("frames")
    if not isinstance(frames, list):
        fail("field 'frames' must be a list")

    k = len(skeleton)
    indices, times = [], []
    rows, row_frame, row_time, row_track = [], [], [], []
    for i, entry in enumerate(frames):
        where = f"frames[{i}]"
        if not isinstance(entry, dict):
            fail(f"{where} must be an object")
        index, time, persons = entry.get("index"), entry.get("time"), entry.get("persons")
        if not _is_int(index) or index < 0:
            fail(f"{where}.index must be an integer >= 0, got {index!r}")
        if indices and index <= indices[-1]:
            fail(f"{where}.index {index} does not follow {indices[-1]} (frames must be in increasing order)")
        if not _is_number(time):
            fail(f"{where}.time must be a number, got {time!r}")
        if not isinstance(persons, list):
            fail(f"{where}.persons must be a list")
        indices.append(index)
        times.append(float(time))
        seen = set()
        for j, person in enumerate(persons):
            at = f"{where}.persons[{j}]"
            if not isinstance(person, dict):
                fail(f"{at} must be an object")
            track = person.get("track_id")
            if not _is_int(track):
                fail(f"{at}.track_id must be an integer, got {track!r}")
            if track in seen:
                fail(f"{at}.track_id {track} appears twice in frame {index}")
            seen.add(track)
            keypoints = person.get("keypoints")
            if (not isinstance(keypoints, list) or len(keypoints) != k
                    or not all(isinstance(r, list) and len(r) == 3 for r in keypoints)
                    or not all(v is None or _is_number(v) for r in keypoints for v in r)):
                fail(f"{at}.keypoints must be {k} rows of [x, y, score] (finite numbers or null)")
            rows.append(keypoints)
            row_frame.append(index)
            row_time.append(float(time))
            row_track.append(track)
    table = np.array(rows, dtype=float).reshape(-1, k, 3)      # null -> NaN
    keypoints = table[..., :2]
    known = np.isfinite(keypoints).all(axis=-1) & np.isfinite(table[..., 2])
    if (table[..., 2][known] < 0).any():
        fail("keypoint scores must be >= 0")
    return VideoPoses(source=source, video=dict(video), skeleton=skeleton,
                      frame_indices=np.array(indices, dtype=np.int64), frame_times=np.array(times),
                      frame=np.array(row_frame, dtype=np.int64), time=np.array(row_time),
                      track_id=np.array(row_track, dtype=np.int64),
                      keypoints=np.where(known[..., None], keypoints, np.nan),
                      scores=np.where(known, table[..., 2], 0.0))


def _skeleton(block, fail) -> Skeleton:
    """The built-in skeleton a video JSON names, checked against the joints it lists and for a way
    to h36m17."""
    if not isinstance(block, dict) or not isinstance(block.get("name"), str):
        fail("field 'skeleton.name' is missing")
    name = block["name"]
    if name not in list_skeletons():
        fail(f"skeleton {name!r} is not one posekit knows ({', '.join(list_skeletons())})")
    skeleton = get_skeleton(name)
    if block.get("joints") != list(skeleton.joints):
        fail(f"field 'skeleton.joints' differs from posekit's {name} joints")
    if name != LIFT_SKELETON:
        try:
            get_mapping(name, LIFT_SKELETON)
        except PosekitError:
            fail(f"skeleton {name!r} has no mapping to {LIFT_SKELETON}, the lifter's joints")
    return skeleton


# ---- tracks -----------------------------------------------------------------------------------------

def split_segments(frames, max_gap: int = MAX_GAP) -> list[slice]:
    """Slices of increasing frame indices, split where more than ``max_gap`` frames are missing."""
    frames = np.asarray(frames)
    breaks = np.flatnonzero(np.diff(frames) > max_gap + 1) + 1
    edges = [0, *breaks.tolist(), len(frames)]
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:])]


def fill_gaps(frames, keypoints, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every frame from the first to the last of ``frames`` (increasing): missing frames get each
    joint linearly interpolated between the frames either side, with the lower of their two scores
    (0 and NaN where either side lacks the joint). Returns (keypoints, scores, seen mask)."""
    frames = np.asarray(frames)
    offsets = frames - frames[0]
    span = int(offsets[-1]) + 1
    seen = np.zeros(span, dtype=bool)
    seen[offsets] = True
    full_kp = np.full((span,) + keypoints.shape[1:], np.nan)
    full_sc = np.zeros((span,) + scores.shape[1:])
    full_kp[offsets], full_sc[offsets] = keypoints, scores
    missing = np.flatnonzero(~seen)
    if len(missing):
        after = np.searchsorted(offsets, missing)          # next seen frame; the previous is after - 1
        before = after - 1
        weight = ((missing - offsets[before]) / (offsets[after] - offsets[before]))[:, None, None]
        full_kp[missing] = (1 - weight) * keypoints[before] + weight * keypoints[after]
        both = (scores[before] > 0) & (scores[after] > 0)
        full_sc[missing] = np.where(both, np.minimum(scores[before], scores[after]), 0.0)
        full_kp[missing] = np.where(both[..., None], full_kp[missing], np.nan)
    return full_kp, full_sc, seen


def track_keypoints(poses: VideoPoses) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Per track id (ascending): frames (T,), times (T,), h36m17 keypoints (T, 17, 2) and scores (T, 17)."""
    if poses.skeleton.name == LIFT_SKELETON:
        keypoints, scores = poses.keypoints, poses.scores
    else:
        keypoints, scores = convert_keypoints(poses.keypoints, poses.scores, poses.skeleton.name, LIFT_SKELETON)
        scores = np.where(np.isfinite(keypoints).all(axis=-1), scores, 0.0)
    out = {}
    for track in np.unique(poses.track_id):
        rows = np.flatnonzero(poses.track_id == track)      # file order: frames increase
        out[int(track)] = (poses.frame[rows], poses.time[rows], keypoints[rows], scores[rows])
    return out


def lift_tracks(poses, model=None, settings=None, *, correct: bool = True, flip: bool = True,
                min_frames: int = MIN_TRACK_FRAMES, max_gap: int = MAX_GAP,
                progress: Callable[[int, int], None] | None = None) -> LiftedTracks:
    """3D poses of every track of a video (see the module notes).

    poses: :class:`VideoPoses`, or a parsed ``posekit.video`` document; model, settings: from
    :func:`posekit.lift.load_lifter` (default: the shipped lifter); correct: test-time correction; flip:
    test-time flip (:func:`posekit.lift.lift_sequence`);
    progress: called after each segment with (frames lifted so far, frames to lift). Raises :class:`PosekitError`
    when no track has ``min_frames`` frames.
    """
    from posekit.lift import lift_sequence, load_lifter

    if not isinstance(poses, VideoPoses):
        poses = video_poses(poses)
    if type(min_frames) is not int or min_frames < 1 or type(max_gap) is not int or max_gap < 0:
        raise PosekitError(f"min_frames must be an integer >= 1 and max_gap >= 0, got {min_frames!r}, {max_gap!r}")
    sequences = track_keypoints(poses)
    skipped = {track: len(seq[0]) for track, seq in sequences.items() if len(seq[0]) < min_frames}
    if not sequences:
        raise PosekitError(f"{poses.source}: no person in any frame, nothing to lift")
    if len(skipped) == len(sequences):
        longest = max(skipped.values())
        raise PosekitError(f"{poses.source}: no track to lift: {len(sequences)} track(s), the longest seen in "
                           f"{longest} frame(s); lifting needs {min_frames} or more")
    if model is None:
        model, stored = load_lifter()
        settings = settings or stored
    tracks = []
    total = sum(len(seq[0]) for track, seq in sequences.items() if track not in skipped)
    done = 0
    for track, (frames, times, keypoints, scores) in sequences.items():
        if track in skipped:
            continue
        parts = []
        segments = split_segments(frames, max_gap)
        for part in segments:
            full_kp, full_sc, seen = fill_gaps(frames[part], keypoints[part], scores[part])
            result = lift_sequence(model, full_kp, full_sc, poses.image_size, correct=correct, settings=settings,
                                   flip=flip)
            parts.append({key: value[seen] for key, value in result.items()})
            done += int(seen.sum())
            if progress is not None:
                progress(done, total)
        tracks.append(LiftedTrack(
            track_id=track, frames=frames, times=times, keypoints_2d=keypoints, scores=scores,
            keypoints_3d=np.concatenate([p["keypoints_3d"] for p in parts]),
            uncorrected=np.concatenate([p["uncorrected"] for p in parts]),
            corrected=np.concatenate([p["corrected"] for p in parts]), segments=len(segments)))
    return LiftedTracks(poses, tracks, skipped,
                        {"correction": correct, "min_frames": min_frames, "max_gap": max_gap})


@contextmanager
def progress_bar(desc: str):
    """A ``progress`` callback for :func:`lift_tracks` that draws a tqdm bar of poses on stderr."""
    from tqdm import tqdm

    bar = None

    def advance(done: int, total: int):
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit="pose", file=sys.stderr, desc=desc, dynamic_ncols=True)
        bar.update(done - bar.n)

    try:
        yield advance
    finally:
        if bar is not None:
            bar.close()


__all__ = ["LIFT_SKELETON", "MAX_GAP", "MIN_TRACK_FRAMES", "VideoPoses", "LiftedTrack", "LiftedTracks",
           "read_video_poses", "video_poses", "split_segments", "fill_gaps", "track_keypoints", "lift_tracks",
           "progress_bar"]
