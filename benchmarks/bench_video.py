"""End-to-end video speed: ``process_video`` (decode, estimate, track, smooth, write JSON/CSV/MP4).

Clips (made in a temporary folder, nothing downloaded):
  demo      the shared real clip (shared/data/real/video/demo.mp4, 960 x 540, 5 frames), played
            forwards and backwards to --frames frames;
  1 person  a real COCO photo with one person (000000000785.jpg, 640 x 425) under a slow
            synthetic camera motion (pan and zoom), --frames frames at 30 FPS;
  5 persons the same with five real persons side by side (1280 x 480): the best-scoring person
            of five photos (COCO, MPII, PoseTrack samples), cut out and scaled to 256 x 480 each.

With ``mediapipe`` importable (the separate venv of bench_2d_accuracy.py), MediaPipe's Pose solution
in video mode (Full model, one person by design) runs on the same clips and the FPS ratio is printed.

For each clip and each detector interval (--every), prints frames per second of the frame loop
(model loading excluded), CPU time per frame (all threads of this process), detector runs, persons
per frame and tracks (a stable run has as many tracks as persons in view). The load average is
printed before and after: other processes on the machine slow the wall-clock numbers down, while
the CPU time per frame hardly depends on them; 1000 / (CPU ms per frame) is the FPS this process
would reach on an idle machine without any parallelism, the true figure lies between it and twice
it on 2 cores.

    .venv/bin/python benchmarks/bench_video.py [--frames 150] [--every 1 5 10 20] [--shared ../shared]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from posekit.io.images import load_image
from posekit.io.video import open_video
from posekit.pipeline import PoseEstimator
from posekit.video import process_video

REPO = Path(__file__).resolve().parents[1]


def write(path: Path, frames, fps: float) -> Path:
    writer = None
    for image in frames:
        if writer is None:
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                     (image.shape[1], image.shape[0]))
        writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def ping_pong(clip: Path, n: int):
    frames = [f.image for f in open_video(clip)]
    order = list(range(len(frames))) + list(range(len(frames) - 2, 0, -1))
    for i in range(n):
        yield frames[order[i % len(order)]]


def five_people(real: Path, estimator: PoseEstimator) -> np.ndarray:
    photos = [real / "coco" / "000000000785.jpg", real / "mpii" / "004645041.jpg", real / "mpii" / "051423444.jpg",
              real / "posetrack18" / "images" / "val" / "003418_mpii_test" / "000000.jpg",
              real / "coco" / "000000040083.jpg"]
    tiles = []
    for photo in photos:
        image = load_image(photo)
        x1, y1, x2, y2 = estimator(image).persons[0].box
        cx, cy, half_h = (x1 + x2) / 2, (y1 + y2) / 2, 0.6 * max(y2 - y1, (x2 - x1) * 480 / 256)
        matrix = cv2.getAffineTransform(
            np.float32([[cx - half_h * 256 / 480, cy - half_h], [cx + half_h * 256 / 480, cy - half_h],
                        [cx - half_h * 256 / 480, cy + half_h]]),
            np.float32([[0, 0], [256, 0], [0, 480]]))
        tiles.append(cv2.warpAffine(image, matrix, (256, 480), borderMode=cv2.BORDER_REPLICATE))
    return np.concatenate(tiles, axis=1)


def camera_motion(image: np.ndarray, n: int, fps: float = 30.0):
    """A still picture seen by a slowly panning and zooming camera."""
    h, w = image.shape[:2]
    for i in range(n):
        t = i / fps
        scale = 1.06 + 0.04 * np.sin(2 * np.pi * 0.2 * t)
        shift = (18 * np.sin(2 * np.pi * 0.3 * t), 8 * np.sin(2 * np.pi * 0.17 * t))
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), 0.0, scale)
        matrix[:, 2] += shift
        yield cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def mediapipe_fps(clip: Path):
    """(FPS, frames with a person) of MediaPipe's Pose solution in video mode, decode included."""
    try:
        import mediapipe as mp
    except ImportError:
        return None
    with mp.solutions.pose.Pose(static_image_mode=False, model_complexity=1) as pose:
        capture = cv2.VideoCapture(str(clip))
        frames = found = 0
        start = time.perf_counter()
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            found += pose.process(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)).pose_landmarks is not None
            frames += 1
        elapsed = time.perf_counter() - start
        capture.release()
    return frames / elapsed, found


def load() -> str:
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--every", type=int, nargs="+", default=[1, 5, 10, 20])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    args = parser.parse_args()
    real = args.shared / "data" / "real"
    estimator = PoseEstimator()
    print(load(), f"({os.cpu_count()} CPUs)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clips = {
            "demo": write(tmp / "demo.mp4", ping_pong(real / "video" / "demo.mp4", args.frames), 25.0),
            "1 person": write(tmp / "one.mp4", camera_motion(load_image(real / "coco" / "000000000785.jpg"),
                                                             args.frames), 30.0),
            "5 persons": write(tmp / "five.mp4", camera_motion(five_people(real, estimator), args.frames), 30.0),
        }
        print(f"{'clip':<10} {'every':>5} {'FPS':>6} {'CPU ms/frame':>12} {'detector runs':>13} "
              f"{'persons/frame':>13} {'tracks':>6}")
        for name, clip in clips.items():
            fps = {}
            for every in args.every:
                cpu = time.process_time()
                s = process_video(clip, tmp / "out", estimator, detect_every=every, progress=False)
                cpu_ms = (time.process_time() - cpu) * 1000 / s.frames
                fps[every] = s.fps
                print(f"{name:<10} {every:>5} {s.fps:>6.1f} {cpu_ms:>12.1f} {s.detector_runs:>13} "
                      f"{s.persons / s.frames:>13.2f} {s.tracks:>6}", flush=True)
            reference = mediapipe_fps(clip)
            if reference is None:
                print(f"{name:<10} MediaPipe: not installed, comparison skipped")
            else:
                mp_fps, found = reference
                ours = fps.get(10, max(fps.values()))
                print(f"{name:<10} MediaPipe Pose (video mode): {mp_fps:.1f} FPS, a person in {found} frames "
                      f"(one at most); posekit / MediaPipe FPS ratio {ours / mp_fps:.2f}", flush=True)
    print(load())


if __name__ == "__main__":
    main()
