"""posekit video --3d: the real 2D pipeline on a short clip of a bundled photo, then every track lifted.

The clip (10 frames, a window sliding over posekit/assets/samples/000000040083.jpg, two seated persons)
runs once per module through the command line; each test checks one output against the 2D JSON and
against posekit.lift.lift_sequence called directly.
"""
import csv
import io
import json
import re
import shutil
from contextlib import redirect_stdout
from pathlib import Path

import cv2
import numpy as np
import pytest

from helpers import run_cli
from posekit.cli import main
from posekit.data.mocap import CAMERA_TO_Y_UP, bvh_positions, read_bvh
from posekit.io.video import open_video
from posekit.lift import lift_sequence, load_lifter
from posekit.lift.tracks import MIN_TRACK_FRAMES
from posekit.skeletons import convert_keypoints, get_skeleton
from posekit.video import lift_video

SAMPLE = Path(__file__).resolve().parents[1] / "posekit" / "assets" / "samples" / "000000040083.jpg"
H36M = get_skeleton("h36m17")
FRAMES, FPS = 10, 10.0


def sliding_clip(path: Path) -> Path:
    image = cv2.imread(str(SAMPLE))
    height, width = image.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (width - 40, height - 20))
    for t in range(FRAMES):
        writer.write(np.ascontiguousarray(image[10:height - 10, 2 * t:2 * t + width - 40]))
    writer.release()
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(stdout lines, output folder, parsed 2D JSON) of ``posekit video clip.mp4 --out DIR --every 5 --3d``."""
    folder = tmp_path_factory.mktemp("video3d")
    clip = sliding_clip(folder / "clip.mp4")
    stdout = io.StringIO()
    with redirect_stdout(stdout), pytest.raises(SystemExit) as exc:
        main(["video", str(clip), "--out", str(folder / "out"), "--every", "5", "--3d"])
    assert exc.value.code == 0
    out = folder / "out"
    return stdout.getvalue().strip().splitlines(), out, json.loads((out / "clip.json").read_text())


@pytest.fixture(scope="module")
def lifter():
    return load_lifter()


def tracks_2d(doc: dict) -> dict:
    """track id -> (frames, coco17 keypoints (T, 17, 2) with NaN where null, scores (T, 17)) from the 2D JSON."""
    tracks = {}
    for frame in doc["frames"]:
        for person in frame["persons"]:
            rows = np.array([[np.nan if v is None else v for v in row] for row in person["keypoints"]], float)
            entry = tracks.setdefault(person["track_id"], ([], [], []))
            entry[0].append(frame["index"])
            entry[1].append(rows[:, :2])
            entry[2].append(np.where(np.isfinite(rows[:, :2]).all(axis=1), rows[:, 2], 0.0))
    return {k: (np.array(f), np.array(kp), np.array(sc)) for k, (f, kp, sc) in tracks.items()}


def lifted_ids(doc: dict) -> list:
    return sorted(k for k, (frames, _, _) in tracks_2d(doc).items() if len(frames) >= MIN_TRACK_FRAMES)


def test_summary_lines_and_files(run):
    lines, out, doc = run
    ids = lifted_ids(doc)
    assert len(ids) >= 1
    skipped = len(tracks_2d(doc)) - len(ids)
    poses = sum(len(tracks_2d(doc)[k][0]) for k in ids)
    assert len(lines) == 2
    assert re.fullmatch(rf".*clip\.mp4: {FRAMES} frames \(0 skipped\), \d+ persons, \d+ tracks, [\d.]+ FPS -> .*clip\.json, "
                        rf"clip\.csv, clip\.mp4", lines[0])
    assert re.fullmatch(rf"3D: {len(ids)} tracks lifted \({skipped} too short\), {poses} poses, "
                        rf"\d+ ms per frame -> clip_3d\.npz, clip_3d\.json, clip_3d\.csv, clip_3d\.mp4, clip_3d\.html, "
                        rf"{len(ids)} BVH files?", lines[1])
    for name in ["clip.json", "clip.csv", "clip.mp4", "clip_3d.npz", "clip_3d.json", "clip_3d.csv", "clip_3d.mp4",
                 "clip_3d.html"] + [f"clip_track{k}.bvh" for k in ids]:
        assert (out / name).stat().st_size > 0, name


def test_3d_json_follows_the_2d_json(run):
    _, out, doc = run
    doc3d = json.loads((out / "clip_3d.json").read_text())
    assert (doc3d["format"], doc3d["version"], doc3d["source"], doc3d["units"]) == ("posekit.video3d", 1, "clip.json", "mm")
    assert doc3d["video"] == doc["video"] and doc3d["skeleton"]["joints"] == list(H36M.joints)
    assert doc3d["settings"] == {"correction": True, "min_frames": MIN_TRACK_FRAMES, "max_gap": 10}
    ids = set(lifted_ids(doc))
    assert [(f["index"], f["time"]) for f in doc3d["frames"]] == [(f["index"], f["time"]) for f in doc["frames"]]
    for frame2d, frame3d in zip(doc["frames"], doc3d["frames"]):
        assert [p["track_id"] for p in frame3d["persons"]] == sorted(p["track_id"] for p in frame2d["persons"]
                                                                      if p["track_id"] in ids)
        for person in frame3d["persons"]:
            assert np.array(person["keypoints"]).shape == (17, 3)
    seen = tracks_2d(doc)
    assert [t["track_id"] for t in doc3d["tracks"]] == sorted(ids)
    for t in doc3d["tracks"]:
        frames = seen[t["track_id"]][0]
        assert (t["frames"], t["first"], t["last"], t["segments"]) == (len(frames), frames[0], frames[-1], 1)
    assert doc3d["skipped_tracks"] == [{"track_id": k, "frames": len(seen[k][0])} for k in sorted(set(seen) - ids)]


def test_3d_poses_are_lift_sequence_on_the_2d_tracks(run, lifter):
    _, out, doc = run
    model, settings = lifter
    size = (doc["video"]["width"], doc["video"]["height"])
    with np.load(out / "clip_3d.npz") as data:
        arrays = {key: data[key] for key in data.files}
    doc3d = json.loads((out / "clip_3d.json").read_text())
    with open(out / "clip_3d.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    columns = [f"{j}_{c}" for j in H36M.joints for c in ("x", "y", "z")]
    assert list(rows[0]) == ["frame", "time", "track_id"] + columns
    for track in lifted_ids(doc):
        frames, keypoints, scores = tracks_2d(doc)[track]
        assert (np.diff(frames) == 1).all()               # one contiguous run: one lift_sequence call
        h36m, h36m_scores = convert_keypoints(keypoints, scores, doc["skeleton"]["name"], "h36m17")
        expected = lift_sequence(model, h36m, h36m_scores, size, settings=settings)
        mine = arrays["track_id"] == track
        assert arrays["frame"][mine].tolist() == frames.tolist()
        np.testing.assert_allclose(arrays["keypoints_3d"][mine], expected["keypoints_3d"], atol=1e-3)
        np.testing.assert_allclose(arrays["keypoints_3d_uncorrected"][mine], expected["uncorrected"], atol=1e-3)
        np.testing.assert_array_equal(arrays["corrected"][mine], expected["corrected"])
        np.testing.assert_allclose(arrays["keypoints_2d"][mine], h36m, atol=1e-4)
        in_json = np.array([p["keypoints"] for f in doc3d["frames"] for p in f["persons"] if p["track_id"] == track])
        np.testing.assert_allclose(in_json, expected["keypoints_3d"], atol=0.051)
        in_csv = np.array([[float(r[c]) for c in columns] for r in rows if r["track_id"] == str(track)])
        np.testing.assert_allclose(in_csv.reshape(-1, 17, 3), expected["keypoints_3d"], atol=0.051)
        assert [int(r["frame"]) for r in rows if r["track_id"] == str(track)] == frames.tolist()
        # Plausible people: pelvis at the origin, thigh bones of human size.
        np.testing.assert_allclose(expected["keypoints_3d"][:, H36M.index("pelvis")], 0.0, atol=1e-3)
        thigh = np.linalg.norm(expected["keypoints_3d"][:, H36M.index("left_knee")]
                               - expected["keypoints_3d"][:, H36M.index("left_hip")], axis=-1)
        assert 250 < np.median(thigh) < 600


def test_npz_layout(run):
    _, out, doc = run
    ids = lifted_ids(doc)
    times = {f["index"]: f["time"] for f in doc["frames"]}
    with np.load(out / "clip_3d.npz") as data:
        n = sum(len(tracks_2d(doc)[k][0]) for k in ids)
        assert data["keypoints_3d"].shape == (n, 17, 3) and data["keypoints_2d"].shape == (n, 17, 2)
        assert data["scores_2d"].shape == (n, 17) and data["corrected"].shape == (n,)
        assert data["tracks"].tolist() == ids and data["track_id"].tolist() == sorted(data["track_id"].tolist())
        np.testing.assert_allclose(data["time"], [times[f] for f in data["frame"].tolist()])
        assert data["image_size"].tolist() == [doc["video"]["width"], doc["video"]["height"]]
        assert float(data["fps"]) == FPS and str(data["skeleton"]) == "h36m17"


def test_bvh_per_track_holds_that_tracks_bones(run):
    _, out, doc = run
    with np.load(out / "clip_3d.npz") as data:
        track_id, poses = data["track_id"], data["keypoints_3d"].astype(float)
    for track in lifted_ids(doc):
        motion = read_bvh(out / f"clip_track{track}.bvh")
        frames = tracks_2d(doc)[track][0]
        assert motion.num_frames == frames[-1] - frames[0] + 1
        assert motion.frame_time == pytest.approx(1 / FPS) and sorted(motion.names) == sorted(H36M.joints)
        # Back to camera axes. BVH keeps median bone lengths and, at a branching joint (pelvis, thorax),
        # the median layout of its children: a bone below a one-child joint keeps its direction exactly,
        # the children of a branching joint closely.
        points = bvh_positions(motion, include_end_sites=False, units_to_mm=1.0) @ CAMERA_TO_Y_UP
        points = points[:, [motion.names.index(j) for j in H36M.joints]]
        mine = poses[track_id == track]
        children = np.bincount([p for p in H36M.parents if p >= 0], minlength=len(H36M))
        for child, parent in enumerate(H36M.parents):
            if parent < 0:
                continue
            file_dir, pose_dir = points[:, child] - points[:, parent], mine[:, child] - mine[:, parent]
            cosine = (file_dir * pose_dir).sum(-1) / np.linalg.norm(file_dir, axis=-1) / np.linalg.norm(pose_dir, axis=-1)
            assert cosine.min() > (0.9999 if children[parent] == 1 else 0.95), (track, H36M.joints[child], cosine.min())


def test_animations(run):
    _, out, doc = run
    frames = sorted({int(f) for k in lifted_ids(doc) for f in tracks_2d(doc)[k][0]})
    video = list(open_video(out / "clip_3d.mp4"))
    assert len(video) == len(frames) and video[0].image.shape == (480, 640, 3)
    assert open_video(out / "clip_3d.mp4").info.fps == FPS
    page = (out / "clip_3d.html").read_text()
    data = json.loads(re.search(r'<script type="application/json" id="posekit-data">(.*?)</script>', page, re.S)[1])
    assert [t["id"] for t in data["tracks"]] == [str(k) for k in lifted_ids(doc)] and data["frames"] == frames


def test_no_correction(run, tmp_path, capsys):
    _, out, doc = run
    shutil.copy(out / "clip.json", tmp_path / "clip.json")
    summary = lift_video(tmp_path / "clip.json", correct=False, progress=False)
    assert summary.tracks == len(lifted_ids(doc)) and summary.frames == FRAMES
    with np.load(tmp_path / "clip_3d.npz") as data:
        assert not data["corrected"].any()
        np.testing.assert_array_equal(data["keypoints_3d"], data["keypoints_3d_uncorrected"])
    doc3d = json.loads((tmp_path / "clip_3d.json").read_text())
    assert doc3d["settings"]["correction"] is False
    assert not any(p["corrected"] for f in doc3d["frames"] for p in f["persons"])
    assert capsys.readouterr().err == ""


def test_cli_usage_errors(tmp_path, capsys):
    clip = tmp_path / "c.mp4"
    code, _, err = run_cli(["video", str(clip), "--out", str(tmp_path / "o"), "--no-correction"], capsys)
    assert code == 2 and err.strip() == "posekit: error: --no-correction goes with --3d"
    code, _, err = run_cli(["video", str(clip), "--out", str(tmp_path / "o"), "--3d"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "c.mp4: no such file" in err


def test_a_video_with_nobody_to_lift_keeps_its_2d_results(tmp_path, capsys):
    clip = tmp_path / "noise.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 12.0, (64, 48))
    for i in range(6):
        writer.write(np.random.default_rng(i).integers(0, 255, (48, 64, 3), dtype=np.uint8))
    writer.release()
    code, out, err = run_cli(["video", str(clip), "--out", str(tmp_path / "o"), "--3d"], capsys)
    assert code == 2 and re.match(r".*noise\.mp4: 6 frames", out) and len(out.strip().splitlines()) == 1
    errors = [line for line in err.splitlines() if "posekit: error:" in line]     # after the progress bar
    assert len(errors) == 1 and re.fullmatch(r"posekit: error: .*noise\.json: (no person in any frame, nothing "
                                             r"to lift|no track to lift: .*)", errors[0])
    assert (tmp_path / "o" / "noise.json").exists() and not (tmp_path / "o" / "noise_3d.npz").exists()
