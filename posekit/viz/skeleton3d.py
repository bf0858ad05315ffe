"""3D skeleton animations: an MP4 drawn with OpenCV, and one self-contained interactive HTML page.

``tracks`` maps a track id to ``(frames, poses)``: frame indices (T_i,) and poses (T_i, K, 3) in
millimetres, posekit camera axes (x right, y down, z forward), root-relative, as :mod:`posekit.lift`
writes them; NaN joints are missing and the bones touching them are not drawn. Both views show the
scene Y-up: a camera-axes point ``(x, y, z)`` of the ``i``-th track stands at world
``(x + offsets[i], -y, -z)`` (X right, Y up, Z toward the recording camera), the tracks side by side
along X far enough apart that they never overlap, on a ground grid of 0.5 m cells under the lowest
joint. Bones are coloured by side (names ``left_*`` blue, ``right_*`` red, others light grey).

The view is orthographic: ``azimuth`` turns the viewer about the vertical axis from the front (0: seen
from the recording camera, people facing the viewer; positive: the viewer moves toward +X) and
``elevation`` raises it above the horizon (looking down). The whole scene, every frame, fits the image,
so the scale stays fixed while people move.
"""
from __future__ import annotations

import html
import json
import math
import numbers
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from posekit.errors import PosekitError
from posekit.io.video import VideoWriter
from posekit.skeletons import Skeleton, get_skeleton

LEFT_RGB = (66, 135, 245)
RIGHT_RGB = (235, 64, 52)
CENTRE_RGB = (225, 225, 225)
BACKGROUND_RGB = (28, 28, 32)
GRID_RGB = (72, 72, 80)
TEXT_RGB = (255, 255, 255)
GRID_CELL_MM = 500.0
HTML_UNIT_MM = 0.1                  # poses are embedded as integers of this many millimetres

_MARGIN = 0.85                      # share of the image the scene box may fill
_SPACING = 1.15                     # distance between tracks / twice the widest horizontal reach
_SHIFT = 4                          # sub-pixel bits for OpenCV drawing
_ONE = 1 << _SHIFT
_CAMERA_TO_WORLD = np.array([1.0, -1.0, -1.0])


@dataclass(frozen=True)
class _Track:
    label: str
    frames: np.ndarray      # (T,) sorted, unique
    poses: np.ndarray       # (T, K, 3) camera axes, mm


def _bone_colours(skeleton: Skeleton) -> list[tuple[int, int, int]]:
    """RGB of each bone of ``skeleton.bone_array``: the side of its outer joint, else of its inner."""
    sides = skeleton.sides
    colours = []
    for a, b in skeleton.bone_array:
        side = sides[b] if sides[b] else sides[a]
        colours.append(LEFT_RGB if side > 0 else RIGHT_RGB if side < 0 else CENTRE_RGB)
    return colours


def _check_tracks(tracks, skeleton: Skeleton) -> list[_Track]:
    """The tracks as sorted arrays, with a one-line error naming the track and field at fault."""
    if not hasattr(tracks, "items"):
        raise PosekitError(f"tracks: expected a mapping track id -> (frames, poses), got "
                           f"{type(tracks).__name__}")
    if not tracks:
        raise PosekitError("tracks: no track to draw (empty mapping)")
    checked, num_joints = [], len(skeleton)
    for track_id, value in tracks.items():
        where = f"tracks[{track_id!r}]"
        try:
            frames, poses = value
        except (TypeError, ValueError):
            raise PosekitError(f"{where}: expected a pair (frames, poses)") from None
        try:
            frames = np.asarray(frames, dtype=float)
            poses = np.asarray(poses, dtype=float)
        except (TypeError, ValueError):
            raise PosekitError(f"{where}: frames and poses must be numeric arrays") from None
        if frames.ndim != 1:
            raise PosekitError(f"{where}: frames must be a 1-D array, got shape {frames.shape}")
        if poses.shape != (len(frames), num_joints, 3):
            raise PosekitError(f"{where}: poses must be ({len(frames)}, {num_joints}, 3) for "
                               f"{len(frames)} frames of skeleton {skeleton.name!r}, got {poses.shape}")
        if not (np.isfinite(frames).all() and np.all(frames == np.round(frames))):
            raise PosekitError(f"{where}: frames must be whole numbers")
        if np.isinf(poses).any():
            raise PosekitError(f"{where}: poses hold infinite values (use NaN for missing joints)")
        frames = frames.astype(np.int64)
        order = np.argsort(frames, kind="stable")
        frames, poses = frames[order], poses[order]
        if np.any(np.diff(frames) == 0):
            repeated = int(frames[np.flatnonzero(np.diff(frames) == 0)[0]])
            raise PosekitError(f"{where}: frame {repeated} appears twice")
        checked.append(_Track(str(track_id), frames, poses))
    if not any(np.isfinite(t.poses).any() for t in checked):
        raise PosekitError("tracks: no joint to draw (every pose is NaN or every track is empty)")
    return checked


@dataclass(frozen=True)
class SceneLayout:
    """Where the tracks stand (Y-up world, mm): X offset of each track, the floor height and the grid."""

    offsets: np.ndarray     # (N,) X shift of each track, in the order of the mapping
    floor: float            # height of the ground grid: the lowest joint of any frame
    top: float              # the highest joint of any frame
    x_range: tuple[float, float]
    z_range: tuple[float, float]


def _world(track: _Track, offset: float) -> np.ndarray:
    return track.poses * _CAMERA_TO_WORLD + np.array([offset, 0.0, 0.0])


def _layout(tracks: list[_Track]) -> SceneLayout:
    reach = max(float(np.nanmax(np.hypot(t.poses[..., 0], t.poses[..., 2])))
                for t in tracks if np.isfinite(t.poses).any())
    spacing = 2.0 * _SPACING * max(reach, 1.0)
    offsets = (np.arange(len(tracks)) - (len(tracks) - 1) / 2.0) * spacing
    heights = np.concatenate([-t.poses[..., 1][np.isfinite(t.poses[..., 1])] for t in tracks])
    half = spacing / 2.0

    def snapped(low: float, high: float) -> tuple[float, float]:
        return (math.floor(low / GRID_CELL_MM) * GRID_CELL_MM, math.ceil(high / GRID_CELL_MM) * GRID_CELL_MM)

    return SceneLayout(offsets=offsets, floor=float(heights.min()), top=float(heights.max()),
                       x_range=snapped(offsets[0] - half, offsets[-1] + half), z_range=snapped(-half, half))


def view_rotation(elevation: float, azimuth: float) -> np.ndarray:
    """World (Y-up) -> view (u right, v up, w toward the viewer) rotation, ``Rx(elevation) @ Ry(-azimuth)``
    (degrees): the viewer stands at azimuth degrees around the vertical from +Z, elevation degrees up."""
    for name, value in (("elevation", elevation), ("azimuth", azimuth)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise PosekitError(f"{name}: expected a finite number of degrees, got {value!r}")
    el, az = math.radians(elevation), math.radians(azimuth)
    turn = np.array([[math.cos(az), 0.0, -math.sin(az)], [0.0, 1.0, 0.0], [math.sin(az), 0.0, math.cos(az)]])
    tilt = np.array([[1.0, 0.0, 0.0], [0.0, math.cos(el), -math.sin(el)], [0.0, math.sin(el), math.cos(el)]])
    return tilt @ turn


@dataclass(frozen=True)
class SceneView:
    """The orthographic view of an animation: pixel = image centre + scale * ((u, v) - centre), v up."""

    rotation: np.ndarray    # (3, 3) world -> view
    scale: float            # pixels per millimetre
    centre: np.ndarray      # (2,) view (u, v) drawn at the image centre
    size: tuple[int, int]   # (width, height)
    layout: SceneLayout

    def project(self, world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(pixels (..., 2), depth toward the viewer (...)) of world points (..., 3)."""
        view = world @ self.rotation.T
        width, height = self.size
        pixels = np.stack([width / 2.0 + self.scale * (view[..., 0] - self.centre[0]),
                           height / 2.0 - self.scale * (view[..., 1] - self.centre[1])], axis=-1)
        return pixels, view[..., 2]


def _check_size(size) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in size)
    except (TypeError, ValueError):
        raise PosekitError(f"size: expected (width, height) in pixels, got {size!r}") from None
    if width < 16 or height < 16 or width % 2 or height % 2 or tuple(size) != (width, height):
        raise PosekitError(f"size: expected even whole widths and heights of at least 16 pixels, got {size!r}")
    return width, height


def _scene_view(tracks: list[_Track], size, elevation: float, azimuth: float) -> SceneView:
    layout = _layout(tracks)
    rotation = view_rotation(elevation, azimuth)
    corners = np.array([[x, y, z] for x in layout.x_range for y in (layout.floor, layout.top)
                        for z in layout.z_range]) @ rotation.T
    low, high = corners[:, :2].min(axis=0), corners[:, :2].max(axis=0)
    extent = np.maximum(high - low, 1e-6)
    scale = _MARGIN * min(size[0] / extent[0], size[1] / extent[1])
    return SceneView(rotation, float(scale), (low + high) / 2.0, size, layout)


def scene_view(tracks, skeleton="h36m17", *, size=(640, 480), elevation: float = 15.0,
               azimuth: float = -60.0) -> SceneView:
    """The layout and view :func:`write_animation_mp4` uses for these tracks and settings."""
    skeleton = get_skeleton(skeleton)
    return _scene_view(_check_tracks(tracks, skeleton), _check_size(size), elevation, azimuth)


def _fixed(pixels: np.ndarray) -> np.ndarray:
    """Pixel coordinates as OpenCV sub-pixel integers (``_SHIFT`` fractional bits); NaN -> 0."""
    return np.round(np.nan_to_num(pixels) * _ONE).astype(np.int32)


def _background(view: SceneView) -> np.ndarray:
    width, height = view.size
    canvas = np.empty((height, width, 3), dtype=np.uint8)
    canvas[:] = BACKGROUND_RGB
    layout = view.layout
    (x0, x1), (z0, z1) = layout.x_range, layout.z_range
    lines = [((x, z0), (x, z1)) for x in np.arange(x0, x1 + GRID_CELL_MM / 2, GRID_CELL_MM)]
    lines += [((x0, z), (x1, z)) for z in np.arange(z0, z1 + GRID_CELL_MM / 2, GRID_CELL_MM)]
    ends = np.array([[[a[0], layout.floor, a[1]], [b[0], layout.floor, b[1]]] for a, b in lines])
    pixels = _fixed(view.project(ends)[0])
    for start, end in pixels:
        cv2.line(canvas, tuple(map(int, start)), tuple(map(int, end)), GRID_RGB, 1, cv2.LINE_AA, _SHIFT)
    return canvas


def _check_fps(fps) -> float:
    if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not math.isfinite(fps) or fps <= 0:
        raise PosekitError(f"fps: expected a positive frame rate, got {fps!r}")
    return float(fps)


def write_animation_mp4(path, tracks, skeleton="h36m17", fps: float = 30.0, *, size=(640, 480),
                        elevation: float = 15.0, azimuth: float = -60.0, progress=None) -> None:
    """Render the tracks (see the module docstring) to an MP4 (``mp4v``), one video frame per frame
    index of any track, in increasing order: bones, joints, each track's id above its highest joint
    and the frame index in a corner. ``progress`` wraps the frame iteration (a tqdm bar, say)."""
    skeleton = get_skeleton(skeleton)
    checked = _check_tracks(tracks, skeleton)
    rate = _check_fps(fps)
    view = _scene_view(checked, _check_size(size), elevation, azimuth)
    background = _background(view)
    thickness = max(1, round(min(view.size) / 240))
    radius = (thickness + 1) * _ONE
    font = 0.35 * thickness
    bones, colours = skeleton.bone_array, _bone_colours(skeleton)
    drawn = []
    for track, offset in zip(checked, view.layout.offsets):
        world = _world(track, offset)
        pixels, depth = view.project(world)
        finite = np.isfinite(world).all(axis=-1)
        heights = np.where(finite, world[..., 1], -np.inf)
        mean_depth = np.where(finite, depth, 0.0).sum(axis=1) / np.maximum(finite.sum(axis=1), 1)
        drawn.append((track, _fixed(pixels), finite, mean_depth, np.argmax(heights, axis=1)))
    frames = np.unique(np.concatenate([t.frames for t in checked]))
    with VideoWriter(path, rate, view.size) as writer:
        for frame in (progress(frames) if progress else frames):
            canvas = background.copy()
            people = []
            for track, pixels, finite, depth, top in drawn:
                row = int(np.searchsorted(track.frames, frame))
                if row < len(track.frames) and track.frames[row] == frame and finite[row].any():
                    people.append((depth[row], track.label, pixels[row], finite[row], top[row]))
            for _, label, pixels, finite, top in sorted(people, key=lambda p: p[0]):
                for (a, b), colour in zip(bones, colours):
                    if finite[a] and finite[b]:
                        cv2.line(canvas, tuple(map(int, pixels[a])), tuple(map(int, pixels[b])), colour,
                                 thickness, cv2.LINE_AA, _SHIFT)
                for joint in np.flatnonzero(finite):
                    cv2.circle(canvas, tuple(map(int, pixels[joint])), radius, TEXT_RGB, -1, cv2.LINE_AA,
                               _SHIFT)
                x, y = pixels[top] // _ONE
                (text_width, _), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font, 1)
                cv2.putText(canvas, label, (int(x) - text_width // 2, int(y) - 4 * thickness),
                            cv2.FONT_HERSHEY_SIMPLEX, font, TEXT_RGB, 1, cv2.LINE_AA)
            cv2.putText(canvas, f"frame {frame}", (6, 6 + int(20 * font)), cv2.FONT_HERSHEY_SIMPLEX, font,
                        GRID_RGB, 1, cv2.LINE_AA)
            writer.write(canvas)


def _html_data(tracks: list[_Track], skeleton: Skeleton, fps: float) -> dict:
    layout = _layout(tracks)
    sides = skeleton.sides
    bones = [[int(a), int(b), int(sides[b] if sides[b] else sides[a])] for a, b in skeleton.bone_array]
    embedded = []
    for track, offset in zip(tracks, layout.offsets):
        units = np.round(track.poses.reshape(len(track.frames), 3 * len(skeleton)) / HTML_UNIT_MM)
        values = [[None if math.isnan(v) else int(v) for v in row] for row in units.tolist()]
        embedded.append({"id": track.label, "offset": round(float(offset), 1),
                         "frames": track.frames.tolist(), "poses": values})
    return {"fps": fps, "unit_mm": HTML_UNIT_MM, "axes": "camera: x right, y down, z forward",
            "joints": list(skeleton.joints), "bones": bones,
            "colours": {"left": LEFT_RGB, "right": RIGHT_RGB, "centre": CENTRE_RGB,
                        "background": BACKGROUND_RGB, "grid": GRID_RGB},
            "frames": np.unique(np.concatenate([t.frames for t in tracks])).tolist(),
            "floor": round(layout.floor, 1), "top": round(layout.top, 1), "cell": GRID_CELL_MM,
            "x_range": list(layout.x_range), "z_range": list(layout.z_range), "tracks": embedded}


def write_animation_html(path, tracks, skeleton="h36m17", fps: float = 30.0, *,
                         title: str = "posekit 3D") -> None:
    """Write the tracks (see the module docstring) as one HTML page that needs no network: a canvas
    with play/pause, a frame slider, drag to turn the view, wheel to zoom. The poses are embedded as
    JSON in a ``<script type="application/json" id="posekit-data">`` block, as integers of 0.1 mm in
    the camera axes given (``null`` for a missing joint), one flat row of K*3 values per frame."""
    skeleton = get_skeleton(skeleton)
    checked = _check_tracks(tracks, skeleton)
    data = json.dumps(_html_data(checked, skeleton, _check_fps(fps)), separators=(",", ":"), allow_nan=False)
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    fields = {"TITLE": html.escape(str(title)), "DATA": data}
    page = re.sub(r"\{\{(TITLE|DATA)\}\}", lambda match: fields[match.group(1)], _PAGE)
    try:
        Path(path).write_text(page, encoding="utf-8")
    except OSError as exc:
        raise PosekitError(f"{path}: cannot write the HTML file ({exc.strerror or type(exc).__name__})"
                           ) from None


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{TITLE}}</title>
<style>
  html, body { margin: 0; height: 100%; background: #1c1c20; color: #ddd; font: 14px sans-serif; }
  #bar { display: flex; gap: 10px; align-items: center; padding: 6px 10px; height: 28px; }
  #slider { flex: 1; }
  #frame { min-width: 9em; font-variant-numeric: tabular-nums; }
  #view { display: block; width: 100%; height: calc(100% - 40px); cursor: grab; }
</style>
</head>
<body>
<div id="bar">
  <button id="play" type="button">Pause</button>
  <input id="slider" type="range" min="0" max="0" step="1" value="0">
  <span id="frame"></span>
  <strong>{{TITLE}}</strong>
</div>
<canvas id="view"></canvas>
<script type="application/json" id="posekit-data">{{DATA}}</script>
<script>
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("posekit-data").textContent);
  var canvas = document.getElementById("view");
  var context = canvas.getContext("2d");
  var slider = document.getElementById("slider");
  var button = document.getElementById("play");
  var label = document.getElementById("frame");
  var rgb = function (c) { return "rgb(" + c[0] + "," + c[1] + "," + c[2] + ")"; };
  var sideColour = function (side) {
    return rgb(side > 0 ? data.colours.left : side < 0 ? data.colours.right : data.colours.centre);
  };
  var joints = data.joints.length;
  var rows = data.tracks.map(function (track) {
    var row = new Map();
    track.frames.forEach(function (frame, index) { row.set(frame, index); });
    return row;
  });
  var azimuth = -60, elevation = 15, zoom = 1, position = 0, playing = data.frames.length > 1;
  var last = null;
  slider.max = String(data.frames.length - 1);

  // Camera axes (x right, y down, z forward) to Y-up world, shifted to the track's place.
  function world(track, values, joint) {
    var x = values[3 * joint], y = values[3 * joint + 1], z = values[3 * joint + 2];
    if (x === null || y === null || z === null) { return null; }
    return [x * data.unit_mm + track.offset, -y * data.unit_mm, -z * data.unit_mm];
  }

  // Orthographic view: Rx(elevation) Ry(-azimuth); returns [u, v, depth toward the viewer].
  function toView(p) {
    var a = azimuth * Math.PI / 180, e = elevation * Math.PI / 180;
    var x = Math.cos(a) * p[0] - Math.sin(a) * p[2];
    var z = Math.sin(a) * p[0] + Math.cos(a) * p[2];
    return [x, Math.cos(e) * p[1] - Math.sin(e) * z, Math.sin(e) * p[1] + Math.cos(e) * z];
  }

  var box = [];
  data.x_range.forEach(function (x) {
    [data.floor, data.top].forEach(function (y) {
      data.z_range.forEach(function (z) { box.push([x, y, z]); });
    });
  });
  var centre = [(data.x_range[0] + data.x_range[1]) / 2, (data.floor + data.top) / 2,
                (data.z_range[0] + data.z_range[1]) / 2];
  var radius = 1;
  box.forEach(function (p) {
    radius = Math.max(radius, Math.hypot(p[0] - centre[0], p[1] - centre[1], p[2] - centre[2]));
  });

  function draw() {
    var width = canvas.clientWidth, height = canvas.clientHeight, ratio = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    context.fillStyle = rgb(data.colours.background);
    context.fillRect(0, 0, width, height);
    var scale = 0.45 * zoom * Math.min(width, height) / radius;
    var middle = toView(centre);
    var screen = function (p) {
      var v = toView(p);
      return [width / 2 + scale * (v[0] - middle[0]), height / 2 - scale * (v[1] - middle[1]), v[2]];
    };
    context.strokeStyle = rgb(data.colours.grid);
    context.lineWidth = 1;
    context.beginPath();
    for (var gx = data.x_range[0]; gx <= data.x_range[1] + 1e-6; gx += data.cell) {
      var a = screen([gx, data.floor, data.z_range[0]]), b = screen([gx, data.floor, data.z_range[1]]);
      context.moveTo(a[0], a[1]); context.lineTo(b[0], b[1]);
    }
    for (var gz = data.z_range[0]; gz <= data.z_range[1] + 1e-6; gz += data.cell) {
      var c = screen([data.x_range[0], data.floor, gz]), d = screen([data.x_range[1], data.floor, gz]);
      context.moveTo(c[0], c[1]); context.lineTo(d[0], d[1]);
    }
    context.stroke();

    var index = Math.min(data.frames.length - 1, Math.floor(position));
    var frame = data.frames[index];
    var people = [];
    data.tracks.forEach(function (track, t) {
      var row = rows[t].get(frame);
      if (row === undefined) { return; }
      var points = [], depth = 0, count = 0, top = null;
      for (var j = 0; j < joints; j++) {
        var p = world(track, track.poses[row], j);
        points.push(p === null ? null : screen(p));
        if (p !== null) {
          depth += points[j][2]; count += 1;
          if (top === null || points[j][1] < top[1]) { top = points[j]; }
        }
      }
      if (count) { people.push({ id: track.id, points: points, depth: depth / count, top: top }); }
    });
    people.sort(function (p, q) { return p.depth - q.depth; });
    context.lineCap = "round";
    people.forEach(function (person) {
      context.lineWidth = 3;
      data.bones.forEach(function (bone) {
        var p = person.points[bone[0]], q = person.points[bone[1]];
        if (p === null || q === null) { return; }
        context.strokeStyle = sideColour(bone[2]);
        context.beginPath(); context.moveTo(p[0], p[1]); context.lineTo(q[0], q[1]); context.stroke();
      });
      context.fillStyle = "#fff";
      person.points.forEach(function (p) {
        if (p === null) { return; }
        context.beginPath(); context.arc(p[0], p[1], 3, 0, 2 * Math.PI); context.fill();
      });
      context.textAlign = "center";
      context.fillText(person.id, person.top[0], person.top[1] - 10);
    });
    slider.value = String(index);
    label.textContent = "frame " + frame + " (" + (index + 1) + "/" + data.frames.length + ")";
  }

  function tick(time) {
    if (playing && last !== null) {
      position = (position + (time - last) / 1000 * data.fps) % data.frames.length;
    }
    last = time;
    draw();
    window.requestAnimationFrame(tick);
  }

  button.addEventListener("click", function () {
    playing = !playing;
    button.textContent = playing ? "Pause" : "Play";
  });
  button.textContent = playing ? "Pause" : "Play";
  slider.addEventListener("input", function () {
    position = Number(slider.value);
    playing = false;
    button.textContent = "Play";
  });
  var drag = null;
  canvas.addEventListener("mousedown", function (event) { drag = [event.clientX, event.clientY]; });
  window.addEventListener("mouseup", function () { drag = null; });
  window.addEventListener("mousemove", function (event) {
    if (drag === null) { return; }
    azimuth -= 0.4 * (event.clientX - drag[0]);
    elevation = Math.max(-89, Math.min(89, elevation + 0.4 * (event.clientY - drag[1])));
    drag = [event.clientX, event.clientY];
  });
  canvas.addEventListener("wheel", function (event) {
    event.preventDefault();
    zoom = Math.max(0.1, Math.min(20, zoom * Math.exp(-0.001 * event.deltaY)));
  }, { passive: false });
  window.requestAnimationFrame(tick);
})();
</script>
</body>
</html>
"""

__all__ = ["write_animation_mp4", "write_animation_html", "scene_view", "view_rotation", "SceneView",
           "SceneLayout", "LEFT_RGB", "RIGHT_RGB", "CENTRE_RGB", "GRID_CELL_MM", "HTML_UNIT_MM"]
