"""Video in and out: frames streamed one at a time, never the whole video in memory.

:func:`open_video` reads any video OpenCV's FFmpeg backend reads (mp4, avi, mov, mkv, webm, ...) or a
folder of frame images (sorted by name with numbers compared as numbers, so ``frame2.png`` comes
before ``frame10.png``), and yields :class:`Frame` objects: index, time in seconds, RGB uint8 image.

Unreadable frames are reported and skipped, and the run goes on: each report goes to ``on_skip``
(default: a :class:`FrameSkippedWarning`). In a video, a frame the decoder rejects is detected by a
failed grab; the frame's index comes from the next good frame's timestamp, so the indices of the
frames after it stay those of the video. A video that declares more frames than could be read
reports the missing tail. In a folder, a file that is not a readable image, or whose size differs
from the first frame's, is skipped. A missing path, a file that is not a video, a folder without
images, or a source without a single readable frame raise :class:`PosekitError`.

FFmpeg's and OpenCV's own messages about damaged or unknown files are silenced
(``OPENCV_FFMPEG_LOGLEVEL``, unless the user set it), since posekit reports those itself.

:class:`VideoWriter` writes RGB frames to an MP4 file with the ``mp4v`` (MPEG-4 Part 2) codec, the one
the opencv-python wheels can encode; it plays in VLC, mpv and most players (not in every browser).
"""
from __future__ import annotations

import math
import os
import re
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from posekit.errors import PosekitError
from posekit.io.images import IMAGE_EXTENSIONS, load_image

DEFAULT_FRAME_RATE = 30.0       # for folders of frames, and videos that declare no rate
# Consecutive failed grabs tried before a video is taken to have ended: while frames declared by
# the container are still to come, and otherwise.
MAX_GRAB_RETRIES = 30
MAX_GRAB_RETRIES_UNKNOWN_LENGTH = 3
FFMPEG_QUIET = "-8"             # AV_LOG_QUIET


class FrameSkippedWarning(UserWarning):
    """A frame could not be read and was skipped."""


@dataclass(frozen=True)
class VideoInfo:
    """What the source says about itself. ``frame_count`` is the container's declared count (exact
    for mp4/avi, estimated from the duration for some formats, 0 if unknown) or the number of files."""

    source: str
    kind: str            # "video" or "frames"
    fps: float
    width: int
    height: int
    frame_count: int


@dataclass
class Frame:
    index: int           # position in the video (skipped frames keep their numbers)
    time: float          # seconds from the start
    image: np.ndarray    # H x W x 3 RGB uint8


def _natural_key(path: Path):
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def _warn(message: str):
    warnings.warn(message, FrameSkippedWarning, stacklevel=3)


class VideoReader:
    """Frames of a video file or a folder of frames; use :func:`open_video`. Iterate once.

    ``skipped`` counts the frames reported as unreadable so far.
    """

    def __init__(self, source, *, fps: float | None = None,
                 on_skip: Callable[[str], None] | None = None):
        if not isinstance(source, (str, Path)):
            raise PosekitError(f"video source must be a path, got {type(source).__name__}")
        if fps is not None and (not math.isfinite(fps) or fps <= 0):
            raise PosekitError(f"fps must be positive, got {fps!r}")
        self.path = Path(source)
        self.skipped = 0
        self._on_skip = on_skip or _warn
        self._capture = None
        if not self.path.exists():
            raise PosekitError(f"{self.path}: no such file or folder")
        if self.path.is_dir():
            self._files = sorted((p for p in self.path.iterdir()
                                  if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS), key=_natural_key)
            if not self._files:
                raise PosekitError(f"{self.path}: folder holds no frame images ({', '.join(IMAGE_EXTENSIONS)})")
            self._frames = self._folder_frames(fps or DEFAULT_FRAME_RATE)
        else:
            self._frames = self._open_video(fps)
        try:
            self._first = next(self._frames)
        except StopIteration:
            self.close()
            raise PosekitError(f"{self.path}: not a single frame could be read") from None
        height, width = self._first.image.shape[:2]
        if self.path.is_dir():
            self.info = VideoInfo(str(self.path), "frames", fps or DEFAULT_FRAME_RATE, width, height,
                                  len(self._files))
        else:  # the decoded size is the truth (some containers report none)
            self.info = replace(self.info, width=width, height=height)

    # sources ----------------------------------------------------------------------------------
    def _skip(self, message: str, count: int = 1):
        self.skipped += count
        self._on_skip(message)

    def _folder_frames(self, fps: float) -> Iterator[Frame]:
        size = None
        for index, file in enumerate(self._files):
            try:
                image = load_image(file)
            except PosekitError as exc:
                self._skip(f"frame {index} skipped: {exc}")
                continue
            if size is None:
                size = image.shape
            elif image.shape != size:
                self._skip(f"frame {index} skipped: {file} is {image.shape[1]}x{image.shape[0]}, "
                           f"the first frame {size[1]}x{size[0]}")
                continue
            yield Frame(index, index / fps, image)

    def _open_video(self, fps: float | None) -> Iterator[Frame]:
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", FFMPEG_QUIET)
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # no "can't open" warning line
        try:
            capture = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        finally:
            cv2.utils.logging.setLogLevel(level)
        if not capture.isOpened():
            capture.release()
            raise PosekitError(f"{self.path}: not a video OpenCV can read (unknown format or damaged file)")
        self._capture = capture
        declared_fps = capture.get(cv2.CAP_PROP_FPS)
        rate = fps or (declared_fps if math.isfinite(declared_fps) and 0 < declared_fps < 1000
                       else DEFAULT_FRAME_RATE)
        count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
        count = int(count) if math.isfinite(count) and count > 0 else 0
        width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.info = VideoInfo(str(self.path), "video", float(rate), width, height, count)
        return self._video_frames(capture, rate, count)

    def _video_frames(self, capture, fps: float, declared: int) -> Iterator[Frame]:
        next_index, failures, last_time = 0, 0, -math.inf
        while True:
            if not capture.grab():
                failures += 1
                limit = MAX_GRAB_RETRIES if next_index < declared else MAX_GRAB_RETRIES_UNKNOWN_LENGTH
                if failures <= limit and (declared == 0 or next_index < declared):
                    continue
                break
            ok, bgr = capture.retrieve()
            msec = capture.get(cv2.CAP_PROP_POS_MSEC)
            time = msec / 1000.0 if math.isfinite(msec) and msec >= 0 else math.nan
            if failures:  # the decoder rejected data: the timestamp tells how many frames were lost
                by_time = round(time * fps) if math.isfinite(time) else -1
                lost = by_time - next_index if by_time > next_index else failures
                last = next_index + lost - 1
                span = f"frame {next_index}" if lost == 1 else f"frames {next_index}-{last}"
                self._skip(f"{span} of {self.path} could not be decoded; skipped", lost)
                next_index, failures = last + 1, 0
            index = next_index
            next_index += 1
            if not ok or bgr is None or bgr.ndim != 3 or bgr.shape[2] != 3:   # OpenCV gives 8-bit BGR
                self._skip(f"frame {index} of {self.path} could not be decoded; skipped")
                continue
            if not math.isfinite(time) or time <= last_time:
                time = max(index / fps, last_time + 1e-6)
            last_time = time
            yield Frame(index, time, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        if next_index < declared:
            missing = declared - next_index
            self._skip(f"{self.path} declares {declared} frames but the last {missing} could not be "
                       f"read; skipped", missing)

    # protocol ---------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Frame]:
        if self._first is None:
            raise PosekitError(f"{self.path}: a video reader can be iterated only once")
        first, self._first = self._first, None
        try:
            yield first
            yield from self._frames
        finally:
            self.close()

    def close(self):
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc):
        self.close()


def open_video(source, *, fps: float | None = None,
               on_skip: Callable[[str], None] | None = None) -> VideoReader:
    """Open a video file or a folder of frames for streaming (see the module docstring).

    fps: frame rate of a folder of frames (default 30), or one that overrides the video's own;
    on_skip: called with a one-line message for each unreadable frame or run of frames.
    """
    return VideoReader(source, fps=fps, on_skip=on_skip)


class VideoWriter:
    """An MP4 (``mp4v``) file written one RGB frame at a time; every frame has the size given."""

    def __init__(self, path, fps: float, size: tuple[int, int], fourcc: str = "mp4v"):
        self.path = Path(path)
        self.size = (int(size[0]), int(size[1]))
        if not math.isfinite(fps) or fps <= 0:
            raise PosekitError(f"{self.path}: frame rate must be positive, got {fps!r}")
        self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*fourcc), float(fps), self.size)
        if not self._writer.isOpened():
            raise PosekitError(f"{self.path}: cannot write a {fourcc} video here (check the folder "
                               f"and the extension)")
        self.frames = 0

    def write(self, image_rgb: np.ndarray):
        image = np.asarray(image_rgb)
        if image.dtype != np.uint8 or image.shape != (self.size[1], self.size[0], 3):
            raise PosekitError(f"{self.path}: frames must be {self.size[1]} x {self.size[0]} x 3 uint8, "
                               f"got {image.dtype} {image.shape}")
        self._writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self):
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc):
        self.close()


__all__ = ["open_video", "VideoReader", "VideoWriter", "VideoInfo", "Frame", "FrameSkippedWarning",
           "DEFAULT_FRAME_RATE"]
