"""Poses in video: every person in every frame, with a track id, smoothed, written as it goes.

Per frame, :class:`PoseTracker` does what MediaPipe does for one person, for many:

* Tracking frames: each person of the previous frame is re-estimated from its tracking points
  (:meth:`PoseEstimator.from_rois`), with no detector run. A person whose pose flag drops is lost.
* Detection frames, every ``detect_every`` frames, on the first frame, and on the frame after a
  person was lost: the multi-scale detector looks for everyone (frames with nobody tracked wait
  for the next periodic run, so empty stretches of video cost little). Previous persons it found again
  are taken from the detection; the others are still re-estimated from their tracking points (the
  detector misses some small or occluded persons that tracking keeps).
* Two estimates of one person (two crops that converged, or a detection and a tracked crop) are
  merged: OKS above ``DUPLICATE_OKS`` or box IoU above ``DUPLICATE_IOU``, the detection or the
  higher-scoring estimate wins.
* :class:`posekit.track.Tracker` gives track ids (box IoU + OKS, Hungarian assignment), and
  :class:`posekit.track.PoseSmoother` smooths each track's keypoints (One-Euro filter; boxes and
  scores are left as estimated).

Why not detect on every frame: on a 2-core CPU the detector takes about 58 ms on a 960 x 540 frame
(9 model runs over the image and its tiles), one person's landmarks about 9 ms.

:func:`process_video` streams a video through it and writes, next to each other:

``<stem>.json``::

    {"format": "posekit.video", "version": 1,
     "video": {"source", "kind": "video" | "frames", "fps", "width", "height", "frame_count"},
     "skeleton": {"name", "joints": [names], "bones": [[joint, joint], ...]},
     "settings": {"detect_every", "smoothing": null | {"min_cutoff", "beta", "d_cutoff"}},
     "frames": [{"index", "time", "persons": [{"track_id", "box": [x1, y1, x2, y2], "score",
                 "keypoints": [[x, y, score], ...]}, ...]}, ...],
     "summary": {"complete", "frames", "skipped", "persons", "tracks", "detector_runs", "seconds", "fps"}}

  Persons are written as in :mod:`posekit.io.results` (pixels, pixel centres at integers, 0.01 px,
  scores to 1e-4; a joint without an estimate has null x, y), times in seconds; ``frame_count`` is
  what the container declares. Skipped frames are absent from ``frames``; a frame with nobody has
  ``"persons": []``. The file is written frame by frame (memory stays flat), and
  ``summary`` comes last (``"complete": false`` when the run stopped early).

``<stem>.csv``: one row per person per frame, columns ``frame, time, track_id, score, x1, y1, x2,
y2`` then ``<joint>_x, <joint>_y, <joint>_score`` for each joint (empty where unknown). One row per
person keeps it a plain table: ``pandas.read_csv`` then ``df[df.track_id == 3]`` is one person's
trajectory, and a spreadsheet filters it the same way. Frames without persons have no rows.

``<stem>.mp4``: the video with skeletons, boxes and track ids drawn (``mp4v`` codec).

:func:`lift_video` (``posekit video --3d``) then lifts every track of ``<stem>.json`` to 3D
(:func:`posekit.lift.tracks.lift_tracks`: h36m17 joints, tracks seen in fewer than 5 frames skipped, gaps
of up to 10 frames bridged) and writes beside it:

``<stem>_3d.json``::

    {"format": "posekit.video3d", "version": 1, "source": "<stem>.json",
     "video": {as in <stem>.json},
     "skeleton": {"name": "h36m17", "joints": [names], "bones": [[joint, joint], ...]},
     "units": "mm", "axes": "camera: x right, y down, z forward; root-relative (pelvis at 0)",
     "settings": {"correction", "min_frames", "max_gap"},
     "tracks": [{"track_id", "frames", "first", "last", "segments"}, ...],
     "skipped_tracks": [{"track_id", "frames"}, ...],
     "frames": [{"index", "time", "persons": [{"track_id", "keypoints": [[x, y, z], ...],
                 "corrected"}, ...]}, ...]}

  ``frames`` lists the frames of ``<stem>.json``, each with the lifted persons seen in it (a skipped
  track's persons are absent); joints in millimetres to 0.1; ``corrected``: the test-time correction of
  that frame was kept; ``tracks[].frames``: how many frames the track was seen in, ``first``/``last``
  its first and last frame index, ``segments`` the lifter runs (a gap of more than 10 frames starts one).

``<stem>_3d.csv``: one row per lifted person per frame, columns ``frame, time, track_id`` then
``<joint>_x, <joint>_y, <joint>_z`` (mm) for the 17 joints.

``<stem>_3d.npz``: the same poses as arrays, one row per person per frame (layout in
:mod:`posekit.lift.io`), as ``posekit lift --input <stem>.json`` writes.

``<stem>_3d.mp4`` and ``<stem>_3d.html``: the tracks' 3D skeletons animated side by side
(:mod:`posekit.viz.skeleton3d`); ``<stem>_track<id>.bvh``: one BVH animation per lifted track
(:func:`posekit.data.mocap.write_bvh`), at the video's frame rate from the track's first frame to its
last, frames where the track was unseen holding the previous pose, the root in place (poses are
root-relative).
"""
from __future__ import annotations

import csv
import json
import math
import sys
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from posekit.detect.boxes import iou_matrix
from posekit.errors import PosekitError
from posekit.io.video import Frame, FrameSkippedWarning, VideoInfo, VideoWriter, open_video
from posekit.skeletons import get_skeleton
from posekit.track.smoothing import PoseSmoother
from posekit.track.tracker import DEFAULT_SIGMA, Tracker, suppress_duplicates

# Frames per detector run. benchmarks/bench_video.py (150 frames; a 2-core CPU shared with other
# jobs, load average 6-9), CPU ms per frame and FPS for a run every 1 / 5 / 10 / 20 frames: one
# person 118 / 42 / 34 / 28 ms (7.7 / 19.4 / 24.9 / 24.5 FPS), five persons 258 / 137 / 122 / 114 ms
# (3.1 / 6.0 / 6.8 / 7.8 FPS). Beyond 10 the gain is small while newcomers wait longer to be found.
DEFAULT_DETECT_EVERY = 10
DUPLICATE_OKS = 0.6
DUPLICATE_IOU = 0.8
# A previous person whose box overlaps a new detection this much (IoU) was found again by it.
REDETECTED_IOU = 0.5
# Frames a track survives unseen beyond the detection interval: a person lost by tracking is
# looked for again by the next detector run, up to ``detect_every`` frames later.
EXTRA_TRACK_AGE = 5
SCORE_THRESHOLD = 0.3          # keypoints above this take part in OKS and smoothing
COORDINATE_DECIMALS = 2
SCORE_DECIMALS = 4


def _sigmas(skeleton) -> np.ndarray | None:
    return None if skeleton.sigmas is None else np.asarray(skeleton.sigmas, dtype=float)


class PoseTracker:
    """Poses with track ids, frame after frame (see the module docstring).

    estimator: a :class:`posekit.pipeline.PoseEstimator` (or anything with its ``__call__`` and
    ``from_rois``); detect_every: frames between detector runs (1: every frame); smooth: One-Euro
    smoothing of the keypoints; max_age: frames a track survives unseen (default
    ``detect_every + EXTRA_TRACK_AGE``).
    """

    def __init__(self, estimator, *, detect_every: int = DEFAULT_DETECT_EVERY, smooth: bool = True,
                 max_age: int | None = None, smoother: PoseSmoother | None = None):
        if type(detect_every) is not int or detect_every < 1:
            raise PosekitError(f"detect_every must be a positive integer, got {detect_every!r}")
        self.estimator = estimator
        self.detect_every = detect_every
        self.max_age = detect_every + EXTRA_TRACK_AGE if max_age is None else max_age
        self.smoother = (smoother or PoseSmoother(score_threshold=SCORE_THRESHOLD)) if smooth else None
        self.tracker: Tracker | None = None      # made at the first frame, once the skeleton is known
        self.detector_runs = 0
        self._previous = None
        self._since_detection = 0
        self._lost = False

    def __call__(self, image, time: float, source: str = ""):
        """The persons of one RGB frame taken at ``time`` seconds, each with its ``track_id``;
        keypoints are smoothed when smoothing is on."""
        previous = self._previous
        detect = previous is None or self._lost or self._since_detection + 1 >= self.detect_every
        if detect:
            result = self.estimator(image)
            self.detector_runs += 1
            self._since_detection = 0
            candidates = list(result.persons)
            if previous is not None and previous.persons:
                rest = self._not_redetected(previous, result)
                if rest:
                    candidates += self.estimator.from_rois(image, replace(previous, persons=rest)).persons
        elif previous.persons:
            self._since_detection += 1
            result = self.estimator.from_rois(image, previous)
            candidates = sorted(result.persons, key=lambda p: -p.score)
        else:                                     # nobody to track, and no detector run due
            self._since_detection += 1
            result, candidates = previous, []
        persons = self._unique(candidates, result.skeleton)
        self._lost = not detect and previous is not None and len(persons) < len(previous.persons)

        if self.tracker is None:
            self.tracker = Tracker(_sigmas(result.skeleton), max_age=self.max_age,
                                   score_threshold=SCORE_THRESHOLD)
        k = len(result.skeleton)
        boxes = np.array([p.box for p in persons], dtype=float).reshape(-1, 4)
        keypoints = np.array([p.keypoints for p in persons], dtype=float).reshape(-1, k, 2)
        scores = np.array([p.keypoint_scores for p in persons], dtype=float).reshape(-1, k)
        ids = self.tracker.update(boxes, keypoints, scores)
        persons = [replace(p, track_id=int(i)) for p, i in zip(persons, ids)]
        tracked = replace(result, persons=persons, source=source)
        self._previous = tracked                  # raw estimates: the next crops come from them
        if self.smoother is None:
            return tracked
        smoothed = self.smoother(time, ids, keypoints, scores, boxes)
        self.smoother.retain(self.tracker.ids)
        return replace(tracked, persons=[replace(p, keypoints=kp) for p, kp in zip(persons, smoothed)])

    def _not_redetected(self, previous, detected) -> list:
        """Previous persons that no new detection overlaps by ``REDETECTED_IOU``."""
        old = previous.boxes()
        new = detected.boxes()
        if len(new) == 0:
            return list(previous.persons)
        found = iou_matrix(old, new).max(axis=1) >= REDETECTED_IOU
        return [p for p, f in zip(previous.persons, found) if not f]

    def _unique(self, persons: list, skeleton) -> list:
        if len(persons) < 2:
            return persons
        k = len(skeleton)
        sigmas = _sigmas(skeleton)
        keep = suppress_duplicates(
            np.array([p.box for p in persons], dtype=float),
            np.array([p.keypoints for p in persons], dtype=float).reshape(-1, k, 2),
            np.array([p.keypoint_scores for p in persons], dtype=float).reshape(-1, k),
            np.full(k, DEFAULT_SIGMA) if sigmas is None else sigmas,
            iou_threshold=DUPLICATE_IOU, oks_threshold=DUPLICATE_OKS, score_threshold=SCORE_THRESHOLD)
        return [persons[i] for i in keep]


# ---- result files ----------------------------------------------------------------------------------

def _keypoint_rows(keypoints, scores) -> list:
    """[[x, y, score], ...] rounded; x, y null where unknown (JSON has no NaN)."""
    xy = np.round(np.asarray(keypoints, dtype=float), COORDINATE_DECIMALS)
    sc = np.round(np.asarray(scores, dtype=float), SCORE_DECIMALS)
    known = np.isfinite(xy).all(axis=1)
    return [[x, y, s if math.isfinite(s) else None] if k else [None, None, s if math.isfinite(s) else None]
            for (x, y), s, k in zip(xy.tolist(), sc.tolist(), known)]


class PoseJsonWriter:
    """``<stem>.json`` (schema in the module docstring), written one frame at a time."""

    def __init__(self, path, info: VideoInfo, skeleton, settings: dict):
        self.path = Path(path)
        try:
            self._file = open(self.path, "w", encoding="utf-8")
        except OSError as exc:
            raise PosekitError(f"{self.path}: cannot write ({exc.strerror or type(exc).__name__})") from None
        header = {"format": "posekit.video", "version": 1,
                  "video": {"source": info.source, "kind": info.kind, "fps": info.fps,
                            "width": info.width, "height": info.height, "frame_count": info.frame_count},
                  "skeleton": {"name": skeleton.name, "joints": list(skeleton.joints),
                               "bones": [[skeleton.joints[a], skeleton.joints[b]] for a, b in skeleton.bones]},
                  "settings": settings}
        self._file.write(json.dumps(header)[:-1] + ', "frames": [\n')
        self._first = True

    def write(self, frame: Frame, result):
        persons = [{"track_id": p.track_id,
                    "box": np.round(np.asarray(p.box, dtype=float), COORDINATE_DECIMALS).tolist(),
                    "score": round(float(p.score), SCORE_DECIMALS),
                    "keypoints": _keypoint_rows(p.keypoints, p.keypoint_scores)}
                   for p in result.persons]
        entry = {"index": frame.index, "time": round(frame.time, 6), "persons": persons}
        self._file.write(("" if self._first else ",\n") + json.dumps(entry, allow_nan=False))
        self._first = False

    def close(self, summary: dict):
        self._file.write('\n], "summary": ' + json.dumps(summary, allow_nan=False) + "}\n")
        self._file.close()

    def abort(self, frames: int):
        """Close the file of a run that stopped early (an error, Ctrl-C): still valid JSON, with
        ``"complete": false`` in its summary."""
        self.close({"complete": False, "frames": frames})


class PoseCsvWriter:
    """``<stem>.csv``: one row per person per frame (columns in the module docstring)."""

    def __init__(self, path, skeleton):
        self.path = Path(path)
        try:
            self._file = open(self.path, "w", encoding="utf-8", newline="")
        except OSError as exc:
            raise PosekitError(f"{self.path}: cannot write ({exc.strerror or type(exc).__name__})") from None
        self._csv = csv.writer(self._file)
        self._csv.writerow(["frame", "time", "track_id", "score", "x1", "y1", "x2", "y2"]
                           + [f"{j}_{c}" for j in skeleton.joints for c in ("x", "y", "score")])

    @staticmethod
    def _cells(values, decimals: int) -> list[str]:
        return [f"{v:.{decimals}f}" if math.isfinite(v) else "" for v in np.asarray(values, float).ravel()]

    def write(self, frame: Frame, result):
        for p in result.persons:
            joints = np.column_stack([np.asarray(p.keypoints, float), np.asarray(p.keypoint_scores, float)])
            row = [str(frame.index), f"{frame.time:.6f}", str(p.track_id), f"{p.score:.{SCORE_DECIMALS}f}"]
            row += self._cells(p.box, COORDINATE_DECIMALS)
            for x, y, s in joints:
                row += self._cells([x, y], COORDINATE_DECIMALS) + self._cells([s], SCORE_DECIMALS)
            self._csv.writerow(row)

    def close(self):
        self._file.close()

    def abort(self, frames: int):
        self.close()


# ---- the whole video ----------------------------------------------------------------------------------

@dataclass
class VideoSummary:
    source: str
    frames: int            # frames processed
    skipped: int           # frames that could not be read
    persons: int           # person detections over all frames
    tracks: int            # track ids handed out
    detector_runs: int
    seconds: float         # wall time of the frame loop (decoding to writing; not model loading)
    json_path: Path
    csv_path: Path
    video_path: Path

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        return {"complete": True, "frames": self.frames, "skipped": self.skipped, "persons": self.persons,
                "tracks": self.tracks, "detector_runs": self.detector_runs,
                "seconds": round(self.seconds, 3), "fps": round(self.fps, 2)}

    def line(self) -> str:
        return (f"{self.source}: {self.frames} frames ({self.skipped} skipped), {self.persons} persons, "
                f"{self.tracks} tracks, {self.fps:.1f} FPS -> {self.json_path}, {self.csv_path.name}, "
                f"{self.video_path.name}")


def _stem(path: Path) -> str:
    return (path.name if path.is_dir() else path.stem) or "video"


def process_video(input, out_dir, estimator=None, *, smooth: bool = True,
                  detect_every: int = DEFAULT_DETECT_EVERY, progress: bool = True,
                  fps: float | None = None) -> VideoSummary:
    """Poses of every person in a video file or folder of frames, with track ids, written to
    ``out_dir/<stem>.json``, ``.csv`` and ``.mp4`` (see the module docstring).

    estimator: a :class:`posekit.pipeline.PoseEstimator` (default: a new one, COCO-17 output);
    smooth: One-Euro smoothing; detect_every: frames between detector runs; progress: a progress
    bar on stderr, unreadable frames reported there (otherwise as :class:`FrameSkippedWarning`);
    fps: frame rate of a folder of frames (default 30) or one that overrides the video's.
    """
    from tqdm import tqdm

    from posekit.viz.draw import draw_poses

    source = Path(input)
    out = Path(out_dir)
    if type(detect_every) is not int or detect_every < 1:
        raise PosekitError(f"detect_every must be a positive integer, got {detect_every!r}")
    bar = None

    def report(message: str):
        if bar is not None:
            bar.write(f"posekit: warning: {message}", file=sys.stderr)
        else:
            warnings.warn(message, FrameSkippedWarning, stacklevel=2)

    reader = open_video(source, fps=fps, on_skip=report)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reader.close()
        raise PosekitError(f"{out}: cannot create the output folder ({exc.strerror or type(exc).__name__})") from None
    if estimator is None:
        from posekit.pipeline import PoseEstimator

        estimator = PoseEstimator()
    tracker = PoseTracker(estimator, detect_every=detect_every, smooth=smooth)
    stem = _stem(source)
    json_path, csv_path, video_path = out / f"{stem}.json", out / f"{stem}.csv", out / f"{stem}.mp4"
    if video_path.resolve() == source.resolve():
        reader.close()
        raise PosekitError(f"{video_path}: the overlay would overwrite the input; choose another --out")
    info = reader.info
    settings = {"detect_every": detect_every,
                "smoothing": None if tracker.smoother is None else dict(
                    zip(("min_cutoff", "beta", "d_cutoff"), tracker.smoother.params))}
    frames = persons = 0
    json_writer = csv_writer = None
    start = time.perf_counter()
    try:
        with reader, VideoWriter(video_path, info.fps, (info.width, info.height)) as overlay:
            bar = tqdm(total=info.frame_count or None, unit="frame", file=sys.stderr, desc=stem,
                       dynamic_ncols=True) if progress else None
            for frame in reader:
                result = tracker(frame.image, frame.time, source=f"frame {frame.index}")
                if json_writer is None:
                    json_writer = PoseJsonWriter(json_path, info, result.skeleton, settings)
                    csv_writer = PoseCsvWriter(csv_path, result.skeleton)
                json_writer.write(frame, result)
                csv_writer.write(frame, result)
                overlay.write(draw_poses(frame.image, result))
                frames += 1
                persons += len(result.persons)
                if bar is not None:
                    bar.update(1)
    except BaseException:
        for writer in (json_writer, csv_writer):
            if writer is not None:
                writer.abort(frames)
        raise
    finally:
        if bar is not None:
            bar.close()
        bar = None
    summary = VideoSummary(str(source), frames, reader.skipped, persons,
                           tracker.tracker.tracks_started if tracker.tracker else 0,
                           tracker.detector_runs, time.perf_counter() - start, json_path, csv_path, video_path)
    json_writer.close(summary.as_dict())
    csv_writer.close()
    return summary


# ---- 3D: every track lifted ------------------------------------------------------------------------

MILLIMETRE_DECIMALS = 1


@dataclass
class Video3DSummary:
    source: str            # the 2D JSON
    tracks: int            # tracks lifted
    skipped: int           # tracks too short to lift
    frames: int            # video frames listed in the 2D JSON
    poses: int             # persons lifted, over all frames
    seconds: float         # wall time: loading the lifter, lifting and writing every 3D file
    paths: list[Path]      # npz, json, csv, mp4, html, then one BVH per track

    def line(self) -> str:
        bvh = len(self.paths) - 5
        return (f"3D: {self.tracks} tracks lifted ({self.skipped} too short), {self.poses} poses, "
                f"{1000 * self.seconds / self.frames:.0f} ms per frame -> {', '.join(p.name for p in self.paths[:5])}, "
                f"{bvh} BVH file{'s' * (bvh != 1)}")


def _lifted_json(lifted, json_name: str) -> dict:
    skeleton = get_skeleton("h36m17")
    poses = lifted.poses
    by_frame: dict[int, list] = {}
    for track in lifted.tracks:
        joints = np.round(track.keypoints_3d.astype(float), MILLIMETRE_DECIMALS).tolist()
        for frame, keypoints, corrected in zip(track.frames.tolist(), joints, track.corrected.tolist()):
            by_frame.setdefault(frame, []).append({"track_id": track.track_id, "keypoints": keypoints,
                                                   "corrected": corrected})
    return {"format": "posekit.video3d", "version": 1, "source": json_name, "video": poses.video,
            "skeleton": {"name": skeleton.name, "joints": list(skeleton.joints),
                         "bones": [[skeleton.joints[a], skeleton.joints[b]] for a, b in skeleton.bones]},
            "units": "mm", "axes": "camera: x right, y down, z forward; root-relative (pelvis at 0)",
            "settings": lifted.settings,
            "tracks": [{"track_id": t.track_id, "frames": len(t.frames), "first": int(t.frames[0]),
                        "last": int(t.frames[-1]), "segments": t.segments} for t in lifted.tracks],
            "skipped_tracks": [{"track_id": k, "frames": n} for k, n in sorted(lifted.skipped.items())],
            "frames": [{"index": index, "time": seconds,
                        "persons": sorted(by_frame.get(index, []), key=lambda p: p["track_id"])}
                       for index, seconds in zip(poses.frame_indices.tolist(), poses.frame_times.tolist())]}


def _write_lifted_csv(path: Path, lifted) -> None:
    rows = [(int(frame), float(seconds), track.track_id, pose)
            for track in lifted.tracks
            for frame, seconds, pose in zip(track.frames, track.times, track.keypoints_3d)]
    rows.sort(key=lambda row: (row[0], row[2]))
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["frame", "time", "track_id"]
                        + [f"{j}_{c}" for j in get_skeleton("h36m17").joints for c in ("x", "y", "z")])
        for frame, seconds, track_id, pose in rows:
            writer.writerow([str(frame), f"{seconds:.6f}", str(track_id)]
                            + [f"{v:.{MILLIMETRE_DECIMALS}f}" for v in np.asarray(pose, float).ravel()])


def _track_span(track) -> np.ndarray:
    """(last - first + 1, 17, 3) poses over the track's whole span, NaN where it was unseen."""
    span = np.full((int(track.frames[-1] - track.frames[0]) + 1,) + track.keypoints_3d.shape[1:], np.nan)
    span[track.frames - track.frames[0]] = track.keypoints_3d
    return span


def _frame_bar(desc: str):
    from tqdm import tqdm

    return lambda frames: tqdm(frames, desc=desc, unit="frame", file=sys.stderr, dynamic_ncols=True)


def lift_video(json_path, *, correct: bool = True, weights=None, progress: bool = True) -> Video3DSummary:
    """3D poses of every track of a video's ``<stem>.json`` (from :func:`process_video`), written
    beside it as ``<stem>_3d.npz``, ``.json``, ``.csv``, ``.mp4``, ``.html`` and one
    ``<stem>_track<id>.bvh`` per track (see the module docstring).

    correct: test-time self-supervised correction; weights: lifter weights (default: the shipped
    model); progress: progress bars on stderr while lifting and drawing.
    """
    from contextlib import nullcontext

    from posekit.data.mocap import write_bvh
    from posekit.lift import load_lifter
    from posekit.lift.io import write_tracks_output
    from posekit.lift.tracks import lift_tracks, progress_bar, read_video_poses
    from posekit.viz.skeleton3d import write_animation_html, write_animation_mp4

    json_path = Path(json_path)
    start = time.perf_counter()
    poses = read_video_poses(json_path)
    model, settings = load_lifter(weights)
    stem = json_path.stem
    with progress_bar(f"{stem} 3D") if progress else nullcontext() as advance:
        lifted = lift_tracks(poses, model, settings, correct=correct, progress=advance)
    out = json_path.parent
    paths = [out / f"{stem}_3d.{suffix}" for suffix in ("npz", "json", "csv", "mp4", "html")]
    write_tracks_output(paths[0], lifted)
    try:
        paths[1].write_text(json.dumps(_lifted_json(lifted, json_path.name), allow_nan=False) + "\n",
                            encoding="utf-8")
        _write_lifted_csv(paths[2], lifted)
    except OSError as exc:
        raise PosekitError(f"{out}: cannot write the 3D results ({exc.strerror or type(exc).__name__})") from None
    animation = {t.track_id: (t.frames, t.keypoints_3d) for t in lifted.tracks}
    write_animation_mp4(paths[3], animation, "h36m17", poses.fps, progress=_frame_bar(f"{stem} 3D video") if progress else None)
    write_animation_html(paths[4], animation, "h36m17", poses.fps, title=f"{stem}: 3D poses")
    for track in lifted.tracks:
        paths.append(out / f"{stem}_track{track.track_id}.bvh")
        write_bvh(paths[-1], _track_span(track), "h36m17", poses.fps)
    return Video3DSummary(str(json_path), len(lifted.tracks), len(lifted.skipped), len(poses.frame_indices),
                          lifted.pose_count, time.perf_counter() - start, paths)


__all__ = ["process_video", "lift_video", "PoseTracker", "VideoSummary", "Video3DSummary", "PoseJsonWriter",
           "PoseCsvWriter", "DEFAULT_DETECT_EVERY"]
