"""3D skeleton animations: the MP4 is decoded with OpenCV and checked pixel by pixel against a view
transform computed here; the HTML page's embedded data is parsed back, and its script is run under
Node.js (when installed) with a stand-in for the browser's canvas."""
import json
import re
import shutil
import subprocess

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from posekit.errors import PosekitError
from posekit.skeletons import get_skeleton
from posekit.viz.skeleton3d import (BACKGROUND_RGB, LEFT_RGB, scene_view, write_animation_html,
                                    write_animation_mp4)

H36M = get_skeleton("h36m17")
STANDING = {"pelvis": (0, 0, 0), "right_hip": (-100, 0, 0), "right_knee": (-100, 420, 0),
            "right_ankle": (-100, 840, 0), "left_hip": (100, 0, 0), "left_knee": (100, 420, 0),
            "left_ankle": (100, 840, 0), "spine": (0, -230, 0), "thorax": (0, -480, 0),
            "neck_nose": (0, -580, 0), "head": (0, -700, 0), "left_shoulder": (170, -450, 0),
            "left_elbow": (170, -180, 60), "left_wrist": (170, 60, 120), "right_shoulder": (-170, -450, 0),
            "right_elbow": (-170, -180, 0), "right_wrist": (-170, 60, 0)}
POSE = np.array([STANDING[name] for name in H36M.joints], dtype=float)   # camera axes, y down


def walking(frames: int) -> np.ndarray:
    """A standing pose whose legs swing forward and back."""
    poses = np.repeat(POSE[None], frames, axis=0)
    swing = 300.0 * np.sin(np.linspace(0, 2 * np.pi, frames))
    for side, sign in (("left", 1.0), ("right", -1.0)):
        for joint, share in (("knee", 0.5), ("ankle", 1.0)):
            poses[:, H36M.index(f"{side}_{joint}"), 2] += sign * share * swing
    return poses


def decode(path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    images = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    capture.release()
    return images


def pixel_of(view, camera_point, elevation, azimuth):
    """Where a camera-axes point of the only track lands: world (x, -y, -z), turned by Ry(-azimuth)
    then Rx(elevation), orthographic, v up."""
    world = np.asarray(camera_point, dtype=float) * [1, -1, -1]
    u, v, _ = Rotation.from_euler("XY", [elevation, -azimuth], degrees=True).as_matrix() @ world
    width, height = view.size
    return (width / 2 + view.scale * (u - view.centre[0]), height / 2 - view.scale * (v - view.centre[1]))


def patch(image, xy, half=1):
    x, y = int(round(xy[0])), int(round(xy[1]))
    return image[y - half:y + half + 1, x - half:x + half + 1].reshape(-1, 3).astype(float).mean(axis=0)


def test_mp4_frames_and_size(tmp_path):
    tracks = {1: (np.arange(0, 10), walking(10)), 2: (np.arange(5, 15), walking(10)),
              "none yet": ([], np.zeros((0, 17, 3)))}
    path = tmp_path / "two.mp4"
    write_animation_mp4(path, tracks, fps=25.0, size=(320, 240))
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened()
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 15
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(25.0)
    capture.release()
    images = decode(path)
    assert len(images) == 15 and all(image.shape == (240, 320, 3) for image in images)


def test_mp4_draws_joints_where_the_view_puts_them(tmp_path):
    elevation, azimuth = 20.0, -35.0
    missing = POSE.copy()
    missing[H36M.index("left_elbow")] = np.nan
    tracks = {"a": ([0, 1], np.stack([POSE, missing]))}
    path = tmp_path / "pose.mp4"
    write_animation_mp4(path, tracks, size=(640, 480), elevation=elevation, azimuth=azimuth)
    view = scene_view(tracks, size=(640, 480), elevation=elevation, azimuth=azimuth)
    assert view.layout.offsets.tolist() == [0.0]
    full, partial = decode(path)
    background = np.array(BACKGROUND_RGB, dtype=float)
    for name in ("head", "left_wrist", "right_ankle", "right_elbow"):
        assert patch(full, pixel_of(view, POSE[H36M.index(name)], elevation, azimuth)).min() > 170, name
    upper_arm = (POSE[H36M.index("left_shoulder")] + POSE[H36M.index("left_elbow")]) / 2
    drawn = patch(full, pixel_of(view, upper_arm, elevation, azimuth), half=0)
    assert np.abs(drawn - LEFT_RGB).max() < 60                     # a left bone: blue
    gone = patch(partial, pixel_of(view, upper_arm, elevation, azimuth), half=0)
    assert np.abs(gone - background).max() < 25                     # its elbow is missing: not drawn
    shin = (POSE[H36M.index("left_knee")] + POSE[H36M.index("left_ankle")]) / 2
    assert np.abs(patch(partial, pixel_of(view, shin, elevation, azimuth), half=0) - LEFT_RGB).max() < 60


def test_mp4_people_stand_upright(tmp_path):
    """Front view of a head and two ankles only (camera y points down): in the image the head and its
    label are above the feet."""
    pose = np.full_like(POSE, np.nan)
    for name in ("head", "left_ankle", "right_ankle"):
        pose[H36M.index(name)] = POSE[H36M.index(name)]
    path = tmp_path / "upright.mp4"
    write_animation_mp4(path, {7: ([0], pose[None])}, elevation=0.0, azimuth=0.0)
    image = decode(path)[0]
    bright = np.argwhere(image.min(axis=2) > 150)                  # joints and label; grid and counter are dim
    middle = bright[np.abs(bright[:, 1] - 320) < 8]
    sides = bright[np.abs(bright[:, 1] - 320) > 15]
    assert len(middle) and len(sides)
    assert middle[:, 0].max() < sides[:, 0].min() - 100


def test_mp4_tracks_side_by_side(tmp_path):
    tracks = {k: (np.arange(3), walking(3)) for k in range(5)}
    view = scene_view(tracks)
    offsets = view.layout.offsets
    reach = np.hypot(POSE[:, 0], walking(3)[..., 2]).max()
    assert np.allclose(np.diff(offsets), offsets[1] - offsets[0]) and offsets[1] - offsets[0] > 2 * reach
    assert offsets.mean() == pytest.approx(0.0)
    write_animation_mp4(tmp_path / "five.mp4", tracks, size=(320, 240))
    assert len(decode(tmp_path / "five.mp4")) == 3


def test_progress_wraps_the_frames(tmp_path):
    seen = []

    def progress(frames):
        for frame in frames:
            seen.append(int(frame))
            yield frame

    write_animation_mp4(tmp_path / "p.mp4", {0: ([4, 2, 9], walking(3))}, size=(64, 48), progress=progress)
    assert seen == [2, 4, 9]


def embedded(path) -> dict:
    text = path.read_text(encoding="utf-8")
    block = re.search(r'<script type="application/json" id="posekit-data">(.*?)</script>', text, re.S)
    return json.loads(block.group(1))


def test_html_round_trip_size_and_no_network(tmp_path):
    rng = np.random.default_rng(0)
    poses = walking(1000) + rng.normal(scale=30.0, size=(1000, 17, 3))
    poses[10, H36M.index("left_wrist")] = np.nan
    path = tmp_path / "one.html"
    write_animation_html(path, {3: (np.arange(1000), poses)}, fps=50.0)
    text = path.read_text(encoding="utf-8")
    assert "http" not in text.lower()
    assert path.stat().st_size < 2_000_000
    data = embedded(path)
    assert data["fps"] == 50.0 and data["frames"] == list(range(1000)) and data["joints"] == list(H36M.joints)
    (track,) = data["tracks"]
    assert track["id"] == "3" and track["frames"] == list(range(1000))
    back = np.array([[np.nan if v is None else v * data["unit_mm"] for v in row] for row in track["poses"]])
    back = back.reshape(1000, 17, 3)
    assert np.array_equal(np.isnan(back), np.isnan(poses))
    assert np.nanmax(np.abs(back - poses)) <= 0.05 + 1e-9


def test_html_escapes_title_and_labels(tmp_path):
    title = '<script>alert("x")</script> & co {{DATA}}'
    path = tmp_path / "escaped.html"
    write_animation_html(path, {"</script><b>{{TITLE}}": ([0, 1], walking(2))}, title=title)
    text = path.read_text(encoding="utf-8")
    assert title not in text and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co {{DATA}}" in text
    assert text.count("</script>") == 2 and "<b>" not in text
    assert embedded(path)["tracks"][0]["id"] == "</script><b>{{TITLE}}"


@pytest.mark.parametrize("write", [write_animation_mp4, write_animation_html], ids=["mp4", "html"])
def test_unwritable_path(tmp_path, write):
    with pytest.raises(PosekitError, match="cannot write"):
        write(tmp_path / "no_such_folder" / "out", {1: ([0], POSE[None])})


FAKE_BROWSER = r"""
const fs = require("fs");
const page = fs.readFileSync(process.argv[1], "utf8");
const json = page.match(/<script type="application\/json" id="posekit-data">([\s\S]*?)<\/script>/)[1];
const code = page.match(/<script>\n([\s\S]*?)<\/script>/)[1];
const calls = {};
const context = new Proxy({}, {
  get: (t, k) => (k in t ? t[k] : () => { calls[k] = (calls[k] || 0) + 1; }),
  set: (t, k, v) => { t[k] = v; return true; } });
const listeners = {}, elements = {}, ticks = [];
const element = (id) => ({ textContent: id === "posekit-data" ? json : "", value: "0", max: "0",
  clientWidth: 640, clientHeight: 480, width: 0, height: 0, getContext: () => context,
  addEventListener: (type, fn) => { listeners[id + ":" + type] = fn; } });
global.document = { getElementById: (id) => (elements[id] = elements[id] || element(id)) };
global.window = { devicePixelRatio: 1, requestAnimationFrame: (fn) => ticks.push(fn),
  addEventListener: (type, fn) => { listeners["window:" + type] = fn; } };
eval(code);
for (let i = 0; i < 20; i++) { ticks.shift()(i * 100); }
listeners["view:mousedown"]({ clientX: 10, clientY: 10 });
listeners["window:mousemove"]({ clientX: 60, clientY: 30 });
listeners["view:wheel"]({ deltaY: 100, preventDefault() {} });
elements.slider.value = "2";
listeners["slider:input"]();
ticks.shift()(2000);
console.log(JSON.stringify({ calls, label: elements.frame.textContent, button: elements.play.textContent }));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js to run the page's script")
def test_html_script_runs(tmp_path):
    path = tmp_path / "run.html"
    poses = walking(4)
    poses[1, H36M.index("head")] = np.nan
    tracks = {0: ([0, 1, 2, 3], poses), 1: ([2, 3, 4], walking(3)), 2: ([], np.zeros((0, 17, 3)))}
    write_animation_html(path, tracks)
    result = subprocess.run(["node", "-e", FAKE_BROWSER, str(path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["label"] == "frame 2 (3/5)" and report["button"] == "Play"
    assert report["calls"]["lineTo"] > 20 * 16 and report["calls"]["fillText"] >= 20


WRITERS = [lambda path, tracks, **kw: write_animation_mp4(path.with_suffix(".mp4"), tracks, **kw),
           lambda path, tracks, **kw: write_animation_html(path.with_suffix(".html"), tracks, **kw)]


@pytest.mark.parametrize("write", WRITERS, ids=["mp4", "html"])
@pytest.mark.parametrize("tracks, kwargs, message", [
    ({}, {}, "empty mapping"),
    ([POSE], {}, "expected a mapping"),
    ({1: POSE}, {}, "expected a pair"),
    ({1: ([0, 1], POSE[None])}, {}, r"poses must be \(2, 17, 3\)"),
    ({1: ([0], POSE[None, :16])}, {}, r"poses must be \(1, 17, 3\)"),
    ({1: ([[0]], POSE[None])}, {}, "1-D"),
    ({1: ([0.5], POSE[None])}, {}, "whole numbers"),
    ({1: ([3, 3], walking(2))}, {}, "frame 3 appears twice"),
    ({1: ([0], np.full((1, 17, 3), np.inf))}, {}, "infinite"),
    ({1: ([0], np.full((1, 17, 3), np.nan))}, {}, "no joint to draw"),
    ({1: (["a"], POSE[None])}, {}, "numeric"),
    ({1: ([0], POSE[None])}, {"fps": 0.0}, "fps"),
    ({1: ([0], POSE[None])}, {"fps": float("nan")}, "fps"),
])
def test_bad_tracks(tmp_path, write, tracks, kwargs, message):
    with pytest.raises(PosekitError, match=message) as info:
        write(tmp_path / "bad", tracks, **kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("kwargs, message", [({"size": (641, 480)}, "size"), ({"size": "big"}, "size"),
                                             ({"elevation": float("nan")}, "elevation")])
def test_bad_view_settings(tmp_path, kwargs, message):
    with pytest.raises(PosekitError, match=message):
        write_animation_mp4(tmp_path / "bad.mp4", {1: ([0], POSE[None])}, **kwargs)
