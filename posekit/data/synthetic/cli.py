"""``posekit synth``: labelled synthetic data from real motion capture (images, video, multi-view groups,
2D/3D pairs, IMU signals, and a preview grid to look at).

Motion capture comes from ``--mocap DIR`` (or the environment variable ``POSEKIT_MOCAP``): a folder of CMU
trials (``SS_TT.amc`` with ``SS.asf``, or cgspeed ``SS_TT.bvh``). Without it, still images and multi-view
groups use posture templates only; video, pairs and IMU need it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from posekit.errors import PosekitError

synth_app = typer.Typer(no_args_is_help=True, help="Generate labelled synthetic data from real motion capture.")

_MOCAP_HELP = "Folder of CMU motion capture (SS_TT.amc + SS.asf, or SS_TT.bvh); default $POSEKIT_MOCAP."


def _motions(mocap: Optional[Path], required: bool):
    from posekit.data.synthetic.motion import default_mocap_folder, load_mocap_library

    folder = mocap or default_mocap_folder()
    if folder is None:
        if required:
            raise PosekitError("this command needs motion capture: pass --mocap DIR or set POSEKIT_MOCAP")
        return []
    return load_mocap_library(folder)


def _postures(text: str) -> tuple:
    from posekit.data.synthetic.postures import POSTURES

    names = tuple(n.strip() for n in text.split(",") if n.strip()) if text else POSTURES
    unknown = [n for n in names if n not in POSTURES]
    if unknown or not names:
        raise PosekitError(f"--postures: unknown {unknown}; choose from {', '.join(POSTURES)}")
    return names


def _fraction(value: float, option: str) -> float:
    if not 0.0 <= value <= 1.0:
        raise PosekitError(f"{option} must be between 0 and 1, got {value}")
    return value


def _report(summary: dict) -> None:
    typer.echo(json.dumps(summary))


@synth_app.command("images")
def images(out: Path = typer.Option(..., "--out", help="Output folder."),
           n: int = typer.Option(100, "--n", help="Number of images."),
           seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same files)."),
           size: str = typer.Option("256x256", "--size", help="Image size WIDTHxHEIGHT."),
           persons: str = typer.Option("1-3", "--persons", help="People per image, N or LO-HI."),
           skeleton: str = typer.Option("coco17", "--skeleton", help="Keypoint set of the labels."),
           mocap: Optional[Path] = typer.Option(None, "--mocap", help=_MOCAP_HELP),
           templates: float = typer.Option(0.3, "--templates",
                                           help="Share of people posed from posture templates (with mocap)."),
           occluders: float = typer.Option(0.4, "--occluders", help="Chance of occluding objects per image."),
           image_format: str = typer.Option("jpg", "--format", help="jpg or png."),
           workers: int = typer.Option(1, "--workers", help="Processes rendering in parallel (same files).")):
    """Labelled still images (COCO keypoints + masks + 3D labels)."""
    from posekit.data.synthetic.datasets import ImageConfig, parse_range, parse_size, write_image_dataset
    from posekit.data.synthetic.scenes import PoseSource
    from posekit.skeletons import get_skeleton

    width, height = parse_size(size)
    config = ImageConfig(width, height, parse_range(persons), get_skeleton(skeleton).name,
                         _fraction(occluders, "--occluders"), image_format)
    source = PoseSource(_motions(mocap, False), _fraction(templates, "--templates"))
    _report(write_image_dataset(out, n, seed, config, source, workers=workers))


@synth_app.command("video")
def video(out: Path = typer.Option(..., "--out", help="Output folder."),
          n: int = typer.Option(4, "--n", help="Number of sequences."),
          seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same files)."),
          frames: int = typer.Option(32, "--frames", help="Frames per sequence."),
          fps: float = typer.Option(30.0, "--fps", help="Frame rate."),
          size: str = typer.Option("320x240", "--size", help="Frame size WIDTHxHEIGHT."),
          persons: str = typer.Option("1-2", "--persons", help="People per sequence, N or LO-HI."),
          blur_samples: int = typer.Option(5, "--blur-samples",
                                           help="Renders averaged per frame for motion blur (odd; 1 = none)."),
          occluders: float = typer.Option(0.5, "--occluders", help="Chance of a passing occluder."),
          mp4: bool = typer.Option(False, "--mp4", help="Also write videos/<seq>.mp4."),
          image_format: str = typer.Option("jpg", "--format", help="jpg or png frames."),
          mocap: Optional[Path] = typer.Option(None, "--mocap", help=_MOCAP_HELP)):
    """Video sequences with PoseTrack18 labels and track ids, camera motion, motion blur, occluders."""
    from posekit.data.synthetic.datasets import VideoConfig, parse_range, parse_size, write_video_dataset
    from posekit.data.synthetic.scenes import PoseSource

    if not fps > 0:
        raise PosekitError(f"--fps must be positive, got {fps}")
    width, height = parse_size(size)
    config = VideoConfig(frames, fps, width, height, parse_range(persons), blur_samples,
                         occluder_probability=_fraction(occluders, "--occluders"), image_format=image_format,
                         mp4=mp4)
    _report(write_video_dataset(out, n, seed, config, PoseSource(_motions(mocap, True))))


@synth_app.command("multiview")
def multiview(out: Path = typer.Option(..., "--out", help="Output folder."),
              n: int = typer.Option(20, "--n", help="Number of groups (one pose seen by every camera)."),
              seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same files)."),
              cameras: int = typer.Option(8, "--cameras", help="Cameras on the ring (equal angles apart)."),
              radius: float = typer.Option(3500.0, "--radius", help="Ring radius, mm."),
              eye_height: float = typer.Option(1200.0, "--height", help="Camera height, mm."),
              size: str = typer.Option("256x256", "--size", help="Image size WIDTHxHEIGHT."),
              skeleton: str = typer.Option("coco17", "--skeleton", help="Keypoint set of the labels."),
              postures: str = typer.Option("", "--postures", help="Comma-separated posture classes (default all)."),
              templates: float = typer.Option(1.0, "--templates",
                                              help="Share of groups posed from posture templates (with mocap)."),
              image_format: str = typer.Option("jpg", "--format", help="jpg or png."),
              mocap: Optional[Path] = typer.Option(None, "--mocap", help=_MOCAP_HELP)):
    """Calibrated multi-view groups for posture recognition (default: 8 cameras 45 degrees apart at one
    height, all looking at the person, as in the pseudo-3D multi-view posture method)."""
    from posekit.data.synthetic.datasets import MultiviewConfig, parse_size, write_multiview_dataset
    from posekit.data.synthetic.scenes import PoseSource
    from posekit.skeletons import get_skeleton

    width, height = parse_size(size)
    classes = _postures(postures)
    config = MultiviewConfig(cameras, radius, eye_height, width=width, height=height,
                             skeleton=get_skeleton(skeleton).name, image_format=image_format, postures=classes)
    source = PoseSource(_motions(mocap, False), _fraction(templates, "--templates"), classes)
    _report(write_multiview_dataset(out, n, seed, config, source))


@synth_app.command("pairs")
def pairs(out: Path = typer.Option(..., "--out", help="Output folder (one .npz per chunk)."),
          n: int = typer.Option(100, "--n", help="Number of chunks."),
          seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same files)."),
          length: int = typer.Option(81, "--length", help="Frames per chunk."),
          fps: float = typer.Option(50.0, "--fps", help="Frame rate of the chunks."),
          skeleton: str = typer.Option("h36m17", "--skeleton", help="Keypoint set."),
          size: str = typer.Option("1000x1000", "--size", help="Image size WIDTHxHEIGHT of the cameras."),
          sigma: float = typer.Option(2.0, "--sigma", help="Gaussian jitter, pixels."),
          swap_rate: float = typer.Option(0.005, "--swap-rate", help="Left/right swap events per pair and frame."),
          outlier_rate: float = typer.Option(0.01, "--outlier-rate", help="Outlier events per joint and frame."),
          missing_rate: float = typer.Option(0.01, "--missing-rate", help="Missing events per joint and frame."),
          mocap: Optional[Path] = typer.Option(None, "--mocap", help=_MOCAP_HELP)):
    """2D/3D pairs for lifting: noisy detections, scores, camera-frame 3D, camera parameters."""
    from posekit.data.synthetic.datasets import parse_size
    from posekit.data.synthetic.pairs import NoiseModel, write_pairs

    if not fps > 0:
        raise PosekitError(f"--fps must be positive, got {fps}")
    noise = NoiseModel(sigma, swap_rate, outlier_rate, missing_rate)
    _report(write_pairs(out, _motions(mocap, True), n, seed, length=length, skeleton=skeleton, fps=fps,
                        size=parse_size(size), noise=noise))


@synth_app.command("imu")
def imu(out: Path = typer.Option(..., "--out", help="Output folder (one .npz per clip)."),
        n: int = typer.Option(20, "--n", help="Number of clips."),
        seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same files)."),
        seconds: float = typer.Option(4.0, "--seconds", help="Clip length, seconds."),
        rate: float = typer.Option(50.0, "--rate", help="Sensor sampling rate, Hz."),
        sensors: str = typer.Option("left_wrist,right_wrist,pelvis", "--sensors",
                                    help="Comma-separated sensor sites."),
        acc_noise: float = typer.Option(0.05, "--acc-noise", help="Accelerometer white noise, m/s^2."),
        gyro_noise: float = typer.Option(0.005, "--gyro-noise", help="Gyroscope white noise, rad/s."),
        acc_bias: float = typer.Option(0.05, "--acc-bias", help="Accelerometer bias spread, m/s^2."),
        gyro_bias: float = typer.Option(0.01, "--gyro-bias", help="Gyroscope bias spread, rad/s."),
        skeleton: str = typer.Option("coco17", "--skeleton", help="Keypoint set of the 3D skeleton stream."),
        mocap: Optional[Path] = typer.Option(None, "--mocap", help=_MOCAP_HELP)):
    """Accelerometer and gyroscope signals at body sites, with the matching 3D skeleton and action."""
    from posekit.data.synthetic.imu import ImuNoise, write_imu

    names = tuple(s.strip() for s in sensors.split(",") if s.strip())
    _report(write_imu(out, _motions(mocap, True), n, seed, seconds=seconds, rate=rate, sensors=names,
                      noise=ImuNoise(acc_noise, gyro_noise, acc_bias, gyro_bias), skeleton=skeleton))


@synth_app.command("preview")
def preview(out: Path = typer.Option(Path("synth_preview.png"), "--out", help="PNG file to write."),
            n: int = typer.Option(16, "--n", help="Number of images in the grid."),
            columns: int = typer.Option(4, "--columns", help="Images per row."),
            seed: int = typer.Option(0, "--seed", help="Random seed."),
            size: int = typer.Option(256, "--size", help="Side of each image, pixels."),
            skeleton: str = typer.Option("coco17", "--skeleton", help="Keypoint set drawn."),
            labels: bool = typer.Option(True, "--labels/--no-labels", help="Draw keypoints and postures."),
            mocap: Optional[Path] = typer.Option(None, "--mocap", help=_MOCAP_HELP)):
    """A PNG grid of synthetic images, to look at what the engine makes."""
    from posekit.data.synthetic.datasets import preview_grid
    from posekit.data.synthetic.files import encode_image, write
    from posekit.data.synthetic.scenes import PoseSource

    if not 16 <= size <= 2048:
        raise PosekitError(f"--size must be between 16 and 2048, got {size}")
    grid = preview_grid(PoseSource(_motions(mocap, False)), seed, n, columns, size, skeleton, labels)
    write(out, encode_image(grid, "png"))
    _report({"out": str(out), "images": n, "width": int(grid.shape[1]), "height": int(grid.shape[0])})
