"""Dataset writers: labelled images (COCO), videos (PoseTrack), multi-view groups, and a preview grid.

Every item (image ``i``, sequence ``s``, group ``g``) draws from its own generator
``numpy.random.default_rng([seed, i])``, so an item does not depend on how many are made, and the same
seed writes byte-identical files (JPEG/PNG through OpenCV, JSON, and ``.npz`` archives written with fixed
zip timestamps).

Layouts (``out`` is the output folder):

images      ``images/000000.jpg`` ..., ``masks/000000.png`` (0 background, i + 1 the i-th person of the
            image's annotations, in order), ``annotations.json`` (COCO keypoints of the chosen skeleton,
            with ``segmentation`` as uncompressed RLE of the visible person mask and the extra fields
            ``posture``, ``action``, ``source``), ``labels.npz`` (exact projections, 3D keypoints in camera
            and world coordinates, cameras; see :func:`write_image_dataset`).
video       ``images/<seq>/000000.jpg`` ..., ``annotations/<seq>.json`` (PoseTrack18, one file per
            sequence, track ids), ``labels/<seq>.npz``, optionally ``videos/<seq>.mp4``.
multiview   ``calibration.json`` (one entry per camera: ``R``, ``t`` (OpenCV ``Xc = R X + t``), ``T``
            (camera centre), ``fx, fy, cx, cy``, ``k`` (radial), ``p`` (tangential), ``width``,
            ``height``; read by :meth:`posekit.geometry.Camera.from_dict` and by
            :func:`posekit.data.multiview.read_campus_calibration`), ``groups/000000/cam0.jpg`` and
            ``cam0_mask.png`` per view, ``annotations.json`` (COCO, every view, images carry ``group`` and
            ``camera``), ``groups.json`` (posture, action, world keypoints of each group).

Labels: keypoints are exact projections of the keypoint's 3D point (see
:mod:`posekit.data.synthetic.body`); COCO visibility 2 = visible, 1 = inside the image but hidden, 0 =
outside the image; in the COCO file a keypoint with flag 0 is written as (0, 0, 0). A person whose body
is not seen at all (fully hidden or outside) gets no annotation. Boxes and areas are those of the
visible mask.
"""
from __future__ import annotations

import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from posekit.data.coco import to_coco_dict
from posekit.data.posetrack import FRAME_DIGITS, write_posetrack
from posekit.data.structures import ImageInfo, PoseInstances
from posekit.data.synthetic.body import PARTS, BodyShape, sample_shape
from posekit.data.synthetic.files import encode_image, rle_encode, write, write_npz
from posekit.data.synthetic.motion import ROOT, UP, apply_variation, sample_variation
from posekit.data.synthetic.postures import POSTURES
from posekit.data.synthetic.render import make_background
from posekit.data.synthetic.scenes import (Appearance, Person, PersonLabel, PoseSource, Solid, annotate_person,
                                           clothing_texture, finish_image, framing_camera, look_at,
                                           people_points, place_people, random_occluder, render_view,
                                           ring_cameras, rng_for, sample_appearance, sample_lighting)
from posekit.errors import PosekitError
from posekit.geometry.camera import Camera
from posekit.skeletons import get_skeleton

# ----------------------------------------------------------------------------------- options

def parse_size(text: str) -> tuple[int, int]:
    """"256x192" -> (256, 192) (width, height)."""
    try:
        w, h = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise PosekitError(f"--size must look like 256x256 (width x height), got {text!r}") from None
    if not (8 <= w <= 8192 and 8 <= h <= 8192):
        raise PosekitError(f"--size must be between 8x8 and 8192x8192, got {text!r}")
    return w, h


def parse_range(text: str, what: str = "--persons") -> tuple[int, int]:
    """"1-3" -> (1, 3); "2" -> (2, 2)."""
    try:
        parts = [int(v) for v in str(text).split("-")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or min(parts) < 1 or parts[0] > parts[-1]:
        raise PosekitError(f"{what} must be N or LO-HI with 1 <= LO <= HI, got {text!r}")
    return parts[0], parts[-1]


def _json(data) -> str:
    return json.dumps(data, separators=(",", ":"), allow_nan=False)


def _coco_ready(label: PersonLabel) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints with (0, 0) where the flag is 0, and the flags."""
    keypoints = np.where(label.visibility[:, None] > 0, label.keypoints, 0.0)
    return keypoints, label.visibility.astype(float)


# ----------------------------------------------------------------------------------- images

@dataclass
class ImageConfig:
    """Settings of labelled still images."""

    width: int = 256
    height: int = 256
    persons: tuple = (1, 3)
    skeleton: str = "coco17"
    occluder_probability: float = 0.4
    image_format: str = "jpg"


@dataclass
class ImageSample:
    """One rendered image with its people, their labels (None for unseen people) and the camera."""

    image: np.ndarray
    people: list
    labels: list
    camera: Camera
    person_mask: np.ndarray            # (H, W) uint8: 0 background, i + 1 person i of ``labels``
    view: object = None


def synth_image(source: PoseSource, config: ImageConfig, seed: int, index: int) -> ImageSample:
    """Image ``index`` of the dataset with ``seed``."""
    rng = rng_for(seed, index)
    count = int(rng.integers(config.persons[0], config.persons[1] + 1))
    people = place_people([source.person(rng) for _ in range(count)], rng)
    camera = framing_camera(rng, people_points(people), config.width, config.height)
    solids = [s for person in people for s in person.props]
    if rng.random() < config.occluder_probability:
        solids.extend(random_occluder(rng, camera, people) for _ in range(int(rng.integers(1, 3))))
    background = make_background(rng, config.height, config.width)
    view = render_view(camera, people, solids, background, sample_lighting(rng),
                       clothing_texture(rng, config.height, config.width))
    image = finish_image(view.image, rng)
    labels, mask = [], np.zeros((config.height, config.width), dtype=np.uint8)
    for i, person in enumerate(people):
        label = annotate_person(camera, view, i, person, config.skeleton)
        if label.area == 0:
            labels.append(None)
            continue
        labels.append(label)
        mask[label.mask] = sum(lab is not None for lab in labels)
    return ImageSample(image, people, labels, camera, mask, view)


def _image_record(source: PoseSource, config: ImageConfig, seed: int, index: int) -> dict:
    """Everything written for one image: encoded image and mask, camera, annotations."""
    sample = synth_image(source, config, seed, index)
    annotations = []
    for person, label in zip(sample.people, sample.labels):
        if label is None:
            continue
        keypoints, flags = _coco_ready(label)
        annotations.append({
            "coco": (keypoints, flags, label.box, label.area, rle_encode(label.mask)),
            "extra": {"posture": person.posture, "action": person.action, "source": person.source},
            "rows": {"keypoints": label.keypoints, "visibility": label.visibility,
                     "keypoints_3d": label.keypoints_3d, "keypoints_world": label.keypoints_world}})
    return {"image": encode_image(sample.image, config.image_format),
            "mask": encode_image(sample.person_mask, "png"),
            "camera": (sample.camera.K, sample.camera.R, sample.camera.t), "annotations": annotations}


_WORKER: dict = {}


def _start_worker(source, config, seed) -> None:
    _WORKER.update(source=source, config=config, seed=seed)


def _worker_record(index: int) -> dict:
    return _image_record(_WORKER["source"], _WORKER["config"], _WORKER["seed"], index)


def _image_records(source, config, seed, count, workers):
    """Records of images 0..count-1 in order, made in ``workers`` processes (each image has its own
    random generator, so the result does not depend on the number of workers)."""
    if workers <= 1:
        for index in range(count):
            yield _image_record(source, config, seed, index)
        return
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                             initargs=(source, config, seed)) as pool:
        yield from pool.map(_worker_record, range(count), chunksize=4)


def write_image_dataset(out, count: int, seed: int, config: ImageConfig, source: PoseSource,
                        progress=None, workers: int = 1) -> dict:
    """Write ``count`` labelled images (layout in the module notes); returns a summary.

    ``labels.npz`` holds, per annotation (the order of ``annotations.json``): ``image_id``,
    ``keypoints`` (A, K, 2) exact projections (NaN behind the camera), ``visibility`` (A, K),
    ``keypoints_3d`` (A, K, 3) camera coordinates mm, ``keypoints_world`` (A, K, 3) mm, ``posture``,
    ``action``, ``source``; per image: ``image_ids``, ``K`` (N, 3, 3), ``R`` (N, 3, 3), ``t`` (N, 3)
    (world mm). ``workers`` > 1 renders in that many processes; the files are the same.
    """
    out = Path(out)
    if count < 1:
        raise PosekitError(f"--n must be at least 1, got {count}")
    if workers < 1:
        raise PosekitError(f"--workers must be at least 1, got {workers}")
    skeleton = get_skeleton(config.skeleton)
    encode_image(np.zeros((1, 1, 3), np.uint8), config.image_format)      # refuse a bad format early
    rows = {key: [] for key in ("image_id", "keypoints", "visibility", "keypoints_3d", "keypoints_world",
                                "posture", "action", "source")}
    cameras = {"image_ids": [], "K": [], "R": [], "t": []}
    images, coco_rows = {}, []
    for index, record in enumerate(_image_records(source, config, seed, count, workers)):
        image_id = index + 1
        name = f"{index:06d}.{config.image_format}"
        write(out / "images" / name, record["image"])
        write(out / "masks" / f"{index:06d}.png", record["mask"])
        images[image_id] = ImageInfo(id=image_id, file_name=name, width=config.width, height=config.height)
        cameras["image_ids"].append(image_id)
        for key, value in zip(("K", "R", "t"), record["camera"]):
            cameras[key].append(value)
        for annotation in record["annotations"]:
            coco_rows.append((image_id, annotation))
            rows["image_id"].append(image_id)
            for key, value in {**annotation["rows"], **annotation["extra"]}.items():
                rows[key].append(value)
        if progress is not None:
            progress(index + 1, count)
    k = len(skeleton)
    columns = list(zip(*[a["coco"] for _, a in coco_rows])) or [[], [], [], [], []]
    instances = PoseInstances(skeleton, np.array(columns[0]).reshape(-1, k, 2), np.array(columns[1]).reshape(-1, k),
                              np.array([i for i, _ in coco_rows], dtype=np.int64),
                              boxes=np.array(columns[2]).reshape(-1, 4), areas=np.array(columns[3], dtype=float),
                              images=images)
    coco = to_coco_dict(instances)
    for ann, (_, annotation), segmentation in zip(coco["annotations"], coco_rows, columns[4]):
        ann.update(segmentation=segmentation, **annotation["extra"])
    coco["info"] = {"description": "posekit synthetic images", "seed": int(seed), "skeleton": skeleton.name}
    write(out / "annotations.json", _json(coco))
    write_npz(out / "labels.npz",
              image_id=np.array(rows["image_id"], dtype=np.int64),
              keypoints=np.array(rows["keypoints"]).reshape(-1, k, 2),
              visibility=np.array(rows["visibility"], dtype=np.int64).reshape(-1, k),
              keypoints_3d=np.array(rows["keypoints_3d"]).reshape(-1, k, 3),
              keypoints_world=np.array(rows["keypoints_world"]).reshape(-1, k, 3),
              posture=np.array(rows["posture"], dtype=str), action=np.array(rows["action"], dtype=str),
              source=np.array(rows["source"], dtype=str),
              image_ids=np.array(cameras["image_ids"], dtype=np.int64), K=np.array(cameras["K"]),
              R=np.array(cameras["R"]), t=np.array(cameras["t"]))
    return {"images": count, "annotations": len(coco["annotations"]), "skeleton": skeleton.name, "out": str(out)}


# ----------------------------------------------------------------------------------- preview

def _draw_skeleton(image: np.ndarray, keypoints, flags, skeleton) -> None:
    scale = max(1, image.shape[0] // 160)
    for a, b in skeleton.bones:
        if flags[a] > 0 and flags[b] > 0:
            pa = tuple(int(round(v)) for v in keypoints[a])
            pb = tuple(int(round(v)) for v in keypoints[b])
            cv2.line(image, pa, pb, (255, 255, 255), scale, cv2.LINE_AA)
    for point, flag in zip(keypoints, flags):
        if flag > 0:
            colour = (40, 220, 40) if flag == 2 else (230, 40, 40)
            cv2.circle(image, tuple(int(round(v)) for v in point), 2 * scale, colour, -1, cv2.LINE_AA)


def preview_grid(source: PoseSource, seed: int, count: int = 16, columns: int = 4, size: int = 256,
                 skeleton: str = "coco17", draw_labels: bool = True) -> np.ndarray:
    """A grid (RGB uint8) of synthetic images; with ``draw_labels`` each person's skeleton is drawn
    (green: visible keypoint, red: hidden) and its posture written."""
    if count < 1 or columns < 1:
        raise PosekitError("preview: count and columns must be at least 1")
    config = ImageConfig(width=size, height=size, skeleton=skeleton)
    skel = get_skeleton(skeleton)
    tiles = []
    for index in range(count):
        sample = synth_image(source, config, seed, index)
        tile = sample.image.copy()
        if draw_labels:
            for person, label in zip(sample.people, sample.labels):
                if label is not None:
                    _draw_skeleton(tile, label.keypoints, label.visibility, skel)
            text = ", ".join(p.posture if p.action == "none" else f"{p.action}/{p.posture}" for p in sample.people)
            cv2.putText(tile, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 2, cv2.LINE_AA)
            cv2.putText(tile, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(tile)
    rows = -(-count // columns)
    blank = np.zeros_like(tiles[0])
    tiles += [blank] * (rows * columns - count)
    return np.concatenate([np.concatenate(tiles[r * columns:(r + 1) * columns], axis=1) for r in range(rows)])


# ----------------------------------------------------------------------------------- multi-view

@dataclass
class MultiviewConfig:
    """A ring rig: by default 8 cameras 45 degrees apart at one height, all looking at the subject (the
    capture rig of the pseudo-3D multi-view posture method)."""

    cameras: int = 8
    radius: float = 3500.0
    eye_height: float = 1200.0
    target_height: float = 900.0
    width: int = 256
    height: int = 256
    skeleton: str = "coco17"
    image_format: str = "jpg"
    postures: tuple = POSTURES


def calibration_dict(cameras: list[Camera]) -> dict:
    """Calibration JSON object: camera name -> R, t, T, fx, fy, cx, cy, k, p, width, height."""
    out = {}
    for camera in cameras:
        out[camera.name] = {"R": camera.R.tolist(), "t": camera.t.tolist(), "T": camera.center.tolist(),
                            "fx": float(camera.K[0, 0]), "fy": float(camera.K[1, 1]),
                            "cx": float(camera.K[0, 2]), "cy": float(camera.K[1, 2]),
                            "k": camera.dist[[0, 1, 4]].tolist(), "p": camera.dist[[2, 3]].tolist(),
                            "width": int(camera.width), "height": int(camera.height)}
    return out


def write_multiview_dataset(out, count: int, seed: int, config: MultiviewConfig, source: PoseSource,
                            progress=None) -> dict:
    """Write ``count`` groups: one person in one static pose, seen by every camera of the ring."""
    out = Path(out)
    if count < 1:
        raise PosekitError(f"--n must be at least 1, got {count}")
    skeleton = get_skeleton(config.skeleton)
    cameras = ring_cameras(config.cameras, radius=config.radius, eye_height=config.eye_height,
                           target=(0.0, config.target_height, 0.0), width=config.width, height=config.height)
    write(out / "calibration.json", _json(calibration_dict(cameras)))
    groups, images, extras, segmentations = [], {}, [], []
    coco_kp, coco_vis, image_ids, boxes, areas = [], [], [], [], []
    for group in range(count):
        rng = rng_for(seed, group)
        posture = config.postures[int(rng.integers(len(config.postures)))] \
            if rng.random() < source.template_probability else None
        person = source.person(rng, posture) if posture else source.person(rng)
        lighting = sample_lighting(rng)
        world = None
        for k, camera in enumerate(cameras):
            background = make_background(rng, config.height, config.width)
            view = render_view(camera, [person], person.props, background, lighting,
                               clothing_texture(rng, config.height, config.width))
            image = finish_image(view.image, rng, blur_probability=0.2)
            label = annotate_person(camera, view, 0, person, skeleton.name)
            world = label.keypoints_world
            image_id = group * len(cameras) + k + 1
            name = f"groups/{group:06d}/{camera.name}.{config.image_format}"
            write(out / name, encode_image(image, config.image_format))
            write(out / f"groups/{group:06d}/{camera.name}_mask.png",
                   encode_image(label.mask.astype(np.uint8), "png"))
            images[image_id] = ImageInfo(id=image_id, file_name=name, width=config.width, height=config.height)
            if label.area > 0:
                keypoints, flags = _coco_ready(label)
                coco_kp.append(keypoints)
                coco_vis.append(flags)
                image_ids.append(image_id)
                boxes.append(label.box)
                areas.append(label.area)
                segmentations.append(rle_encode(label.mask))
                extras.append({"posture": person.posture, "action": person.action, "group": group,
                               "camera": camera.name})
        groups.append({"group": group, "posture": person.posture, "action": person.action,
                       "source": person.source, "skeleton": skeleton.name,
                       "keypoints_world": world.tolist()})
        if progress is not None:
            progress(group + 1, count)
    k = len(skeleton)
    instances = PoseInstances(skeleton, np.array(coco_kp).reshape(-1, k, 2), np.array(coco_vis).reshape(-1, k),
                              np.array(image_ids, dtype=np.int64), boxes=np.array(boxes).reshape(-1, 4),
                              areas=np.array(areas, dtype=float), images=images)
    coco = to_coco_dict(instances)
    for ann, extra, segmentation in zip(coco["annotations"], extras, segmentations):
        ann.update(segmentation=segmentation, **extra)
    names = [c.name for c in cameras]
    for entry in coco["images"]:
        entry["group"] = (entry["id"] - 1) // len(cameras)
        entry["camera"] = names[(entry["id"] - 1) % len(cameras)]
    write(out / "annotations.json", _json(coco))
    write(out / "groups.json", _json({"skeleton": skeleton.name, "postures": list(POSTURES),
                                       "cameras": names, "groups": groups}))
    return {"groups": count, "views": count * len(cameras), "skeleton": skeleton.name, "out": str(out)}


# ----------------------------------------------------------------------------------- video

@dataclass
class VideoConfig:
    """Settings of synthetic video sequences."""

    frames: int = 32
    fps: float = 30.0
    width: int = 320
    height: int = 240
    persons: tuple = (1, 2)
    blur_samples: int = 3            # sub-frames averaged per frame (odd); 1 = no motion blur
    shutter: float = 0.5             # exposure as a fraction of the frame interval
    occluder_probability: float = 0.5
    image_format: str = "jpg"
    mp4: bool = False


@dataclass
class _Track:
    """One person over a sequence: positions at the mocap rate and the fixed look."""

    positions: np.ndarray            # (T, K, 3) world mm at ``fps``
    fps: float
    shape: BodyShape
    appearance: Appearance
    action: str
    source: str

    def at(self, time: float) -> np.ndarray:
        index = np.clip(time * self.fps, 0, len(self.positions) - 1)
        lo = int(np.floor(index))
        hi = min(lo + 1, len(self.positions) - 1)
        w = index - lo
        return self.positions[lo] * (1 - w) + self.positions[hi] * w


def _smooth_wobble(rng, amplitude: float, frequencies=(0.3, 2.0)):
    """A smooth random function of time: a sum of three sinusoids."""
    freq = rng.uniform(*frequencies, 3)
    phase = rng.uniform(0, 2 * np.pi, 3)
    amp = amplitude * rng.uniform(0.3, 1.0, 3) / 3
    return lambda t: float(np.sum(amp * np.sin(2 * np.pi * freq * t + phase)))


@dataclass
class _MovingSolid:
    """An occluder crossing the view at constant velocity."""

    solid: Solid
    velocity: np.ndarray
    mid_time: float

    def at(self, time: float) -> Solid:
        moved = Solid(**{**self.solid.__dict__})
        moved.center = self.solid.center + self.velocity * (time - self.mid_time)
        return moved


def _passing_occluder(rng, eye, centre, duration: float) -> _MovingSolid:
    """A box (a crate or a post) between the camera and the people, moving sideways across the view."""
    middle = eye + rng.uniform(0.35, 0.7) * (centre - eye)
    side = np.cross(centre - eye, UP)
    side /= np.linalg.norm(side)
    half = rng.uniform(80.0, 250.0, 3)
    if rng.random() < 0.5:
        half[1] = rng.uniform(600.0, 1200.0)
    middle[1] = half[1] + rng.uniform(0.0, 300.0)
    velocity = side * rng.uniform(800.0, 2000.0) * rng.choice([-1.0, 1.0])
    colour = sample_appearance(rng).albedo[PARTS.index("chest")]
    return _MovingSolid(Solid("box", colour, center=middle, axes=np.eye(3), size=half), velocity, duration / 2)


def synth_sequence(source: PoseSource, config: VideoConfig, seed: int, index: int):
    """Frames of sequence ``index``: yields (frame index, RGB image, camera, people, labels (posetrack18)).

    People follow mocap clips (each with its own variation and start, placed apart); the camera frames
    them at the first frame, then orbits slowly, follows the group and shakes a little (smooth random
    rotations of about a degree); the background pans with the camera. Motion blur averages
    ``blur_samples`` renders spread over the shutter time; labels come from the middle one.
    """
    if not source.motions:
        raise PosekitError("synthetic video needs motion capture: pass --mocap DIR (or set POSEKIT_MOCAP)")
    if config.blur_samples < 1 or config.blur_samples % 2 == 0:
        raise PosekitError(f"--blur-samples must be odd and positive, got {config.blur_samples}")
    rng = rng_for(seed, index)
    duration = (config.frames - 1) / config.fps + config.shutter / config.fps
    usable = [m for m in source.motions if (len(m) - 2) / m.fps >= duration]
    if not usable:
        raise PosekitError(f"no motion-capture trial lasts {duration:.2f} s; ask for fewer --frames")
    tracks = []
    for _ in range(int(rng.integers(config.persons[0], config.persons[1] + 1))):
        motion = usable[int(rng.integers(len(usable)))]
        length = int(np.ceil(duration * motion.fps)) + 2
        first = int(rng.integers(0, len(motion) - length + 1))
        clip = apply_variation(motion.positions[first:first + length], sample_variation(rng))
        tracks.append(_Track(clip, motion.fps, sample_shape(rng), sample_appearance(rng),
                             motion.meta.get("action", "unknown"), f"{motion.meta.get('trial', '')}:{first}"))
    placed = place_people([Person(t.at(0.0), t.shape, t.appearance, "", t.action, t.source, i + 1)
                           for i, t in enumerate(tracks)], rng, spread=1500.0, min_distance=900.0)
    offsets = [p.positions[ROOT] - t.at(0.0)[ROOT] for p, t in zip(placed, tracks)]

    def people_at(time: float) -> list[Person]:
        return [Person(t.at(time) + o, t.shape, t.appearance, "", t.action, t.source, i + 1)
                for i, (t, o) in enumerate(zip(tracks, offsets))]

    def group_centre(time: float) -> np.ndarray:
        return np.mean([t.at(time)[ROOT] + o for t, o in zip(tracks, offsets)], axis=0)

    points = people_points(placed)
    base = framing_camera(rng, points, config.width, config.height, fill=(0.35, 0.6), shift=0.05,
                          distance=(4000.0, 8000.0), eye_height=(800.0, 2000.0))
    eye0, target0 = base.center, (points.min(axis=0) + points.max(axis=0)) / 2
    centre0 = group_centre(0.0)
    orbit = rng.uniform(-0.25, 0.25)                         # rad/s about the group
    yaw_shake, pitch_shake, roll_shake = (_smooth_wobble(rng, np.deg2rad(1.0)) for _ in range(3))
    follow = rng.uniform(0.5, 1.0)
    margin = config.width // 2
    background = make_background(rng, config.height + margin, config.width + 2 * margin)
    lighting = sample_lighting(rng)
    defocus = rng.random() < 0.3
    occluder = _passing_occluder(rng, eye0, centre0, duration) if rng.random() < config.occluder_probability \
        else None

    def camera_at(time: float) -> Camera:
        moved = follow * (group_centre(time) - centre0)
        angle = orbit * time + yaw_shake(time)
        c, s = np.cos(angle), np.sin(angle)
        eye = target0 + np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]]) @ (eye0 - target0)
        eye = eye + moved * np.array([1.0, 0.0, 1.0])
        target = target0 + moved * np.array([1.0, 0.3, 1.0])
        target = target + UP * np.linalg.norm(target - eye) * np.tan(pitch_shake(time))
        rotation, translation = look_at(eye, target, roll_shake(time))
        return Camera(K=base.K, R=rotation, t=translation, width=config.width, height=config.height)

    yaw0 = np.arctan2(*(target0 - eye0)[[0, 2]])
    spread = [((s / (config.blur_samples - 1)) - 0.5) * config.shutter / config.fps if config.blur_samples > 1
              else 0.0 for s in range(config.blur_samples)]
    for frame in range(config.frames):
        accumulated, reference = None, None
        for sub, dt in enumerate(spread):
            time = frame / config.fps + config.shutter / (2 * config.fps) + dt
            people = people_at(time)
            camera = camera_at(time)
            yaw = np.arctan2(camera.R[2, 0], camera.R[2, 2])
            # turning towards +yaw turns the view to the left: the scene slides right in the image
            shift = int(np.clip(margin - base.K[0, 0] * _wrap(yaw - yaw0), 0, 2 * margin))
            crop = background[margin // 2:margin // 2 + config.height, shift:shift + config.width]
            solids = [occluder.at(time)] if occluder is not None else []
            view = render_view(camera, people, solids, crop, lighting)
            accumulated = view.image if accumulated is None else accumulated + view.image
            if sub == len(spread) // 2:
                reference = (camera, people, view)
        camera, people, view = reference
        image = finish_image(accumulated / len(spread), rng, blur_probability=1.0 if defocus else 0.0,
                             max_blur_sigma=1.0)
        labels = [annotate_person(camera, view, i, p, "posetrack18") for i, p in enumerate(people)]
        yield frame, image, camera, people, labels


def _wrap(angle: float) -> float:
    return float((angle + np.pi) % (2 * np.pi) - np.pi)


def _head_box(camera: Camera, person: Person) -> np.ndarray:
    """x1, y1, x2, y2 of the projected head ellipsoid (sampled on its surface)."""
    body = person.body
    u = np.linspace(0, np.pi, 7)
    v = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    sphere = np.stack([np.outer(np.sin(u), np.cos(v)), np.outer(np.cos(u), np.ones_like(v)),
                       np.outer(np.sin(u), np.sin(v))], axis=-1).reshape(-1, 3)
    points = body.head_center + (sphere * body.head_radii) @ body.head_axes.T
    pixels = camera.project(points, distort=False)  # synthetic cameras have no lens distortion
    if not np.all(np.isfinite(pixels)):
        return np.full(4, np.nan)
    return np.concatenate([pixels.min(axis=0), pixels.max(axis=0)])


def write_video_dataset(out, count: int, seed: int, config: VideoConfig, source: PoseSource,
                        progress=None) -> dict:
    """Write ``count`` sequences (layout in the module notes). ``labels/<seq>.npz`` holds per frame and
    track (F, P, ...): ``keypoints`` (exact projections), ``visibility`` (COCO flags), ``keypoints_3d``
    (camera mm), ``keypoints_world``; per track ``track_ids``, ``actions`` (the mocap trial's action),
    ``sources`` (trial:first frame); per frame ``K``, ``R``, ``t``; ``fps``."""
    out = Path(out)
    if count < 1:
        raise PosekitError(f"--n must be at least 1, got {count}")
    if config.frames < 1 or config.frames >= FRAME_DIGITS:
        raise PosekitError(f"--frames must be between 1 and {FRAME_DIGITS - 1}, got {config.frames}")
    skeleton = get_skeleton("posetrack18")
    k = len(skeleton)
    annotations = 0
    for index in range(count):
        name = f"synth_{index:06d}"
        writer = None
        rows = {key: [] for key in ("keypoints", "visibility", "keypoints_3d", "keypoints_world")}
        cams = {"K": [], "R": [], "t": []}
        kp, vis, image_ids, boxes, heads, tracks, images = [], [], [], [], [], [], {}
        track_ids = actions = sources = None
        for frame, image, camera, people, labels in synth_sequence(source, config, seed, index):
            file_name = f"images/{name}/{frame:06d}.{config.image_format}"
            write(out / file_name, encode_image(image, config.image_format))
            if config.mp4:
                if writer is None:
                    (out / "videos").mkdir(parents=True, exist_ok=True)
                    writer = cv2.VideoWriter(str(out / "videos" / f"{name}.mp4"),
                                             cv2.VideoWriter_fourcc(*"mp4v"), config.fps,
                                             (config.width, config.height))
                writer.write(np.ascontiguousarray(image[..., ::-1]))
            image_id = 10_000_000_000 + index * FRAME_DIGITS + frame
            images[image_id] = ImageInfo(id=image_id, file_name=file_name, width=config.width,
                                         height=config.height, sequence=name, frame_index=frame)
            track_ids, actions, sources = ([getattr(p, key) for p in people]
                                           for key in ("track_id", "action", "source"))
            for key in ("K", "R", "t"):
                cams[key].append(getattr(camera, key))
            for key in rows:
                rows[key].append([getattr(label, key) for label in labels])
            for person, label in zip(people, labels):
                if label.area == 0:
                    continue
                seen = label.visibility == 2
                kp.append(np.where(seen[:, None], label.keypoints, 0.0))
                vis.append(seen.astype(float))
                image_ids.append(image_id)
                boxes.append(label.box)
                heads.append(_head_box(camera, person))
                tracks.append(person.track_id)
        if writer is not None:
            writer.release()
        instances = PoseInstances(skeleton, np.array(kp).reshape(-1, k, 2), np.array(vis).reshape(-1, k),
                                  np.array(image_ids, dtype=np.int64), boxes=np.array(boxes).reshape(-1, 4),
                                  track_ids=np.array(tracks, dtype=np.int64),
                                  head_boxes=np.array(heads).reshape(-1, 4), images=images,
                                  meta={"nframes": {name: config.frames}})
        (out / "annotations").mkdir(parents=True, exist_ok=True)
        write_posetrack(instances, out / "annotations" / f"{name}.json")
        annotations += len(instances)
        write_npz(out / "labels" / f"{name}.npz",
                  keypoints=np.array(rows["keypoints"]), visibility=np.array(rows["visibility"], dtype=np.int64),
                  keypoints_3d=np.array(rows["keypoints_3d"]), keypoints_world=np.array(rows["keypoints_world"]),
                  track_ids=np.array(track_ids, dtype=np.int64), actions=np.array(actions, dtype=str),
                  sources=np.array(sources, dtype=str), K=np.array(cams["K"]), R=np.array(cams["R"]),
                  t=np.array(cams["t"]), fps=np.array(config.fps))
        if progress is not None:
            progress(index + 1, count)
    return {"sequences": count, "frames": count * config.frames, "annotations": annotations,
            "out": str(out)}


__all__ = ["ImageConfig", "MultiviewConfig", "VideoConfig", "calibration_dict", "encode_image", "parse_range",
           "parse_size", "preview_grid", "rle_encode", "synth_image", "synth_sequence", "write_image_dataset",
           "write_multiview_dataset", "write_npz", "write_video_dataset"]
