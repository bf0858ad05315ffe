"""Video streaming, unreadable frames, the tracking loop and the result files.

Most tests use generated clips (cv2.VideoWriter in tmp dirs) and a stub estimator that sees persons
as bright rectangles, so they check the plumbing fast and exactly; the slow ones run the real
estimator on the shared demo clip.
"""
import csv
import json
import re
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

import posekit.viz.draw
from posekit.cli import main
from posekit.detect.boxes import iou_matrix
from posekit.errors import PosekitError
from posekit.io.video import FrameSkippedWarning, VideoWriter, open_video
from posekit.pipeline import Person, PoseResult
from posekit.skeletons import get_skeleton
from posekit.video import PoseTracker, process_video

COCO = get_skeleton("coco17")
TEMPLATE = np.random.default_rng(0).uniform(0.1, 0.9, (17, 2))


class BlobEstimator:
    """Persons are bright rectangles on a dark frame; keypoints a fixed pattern inside each.

    ``__call__`` (the detector path) finds every rectangle; ``from_rois`` only those overlapping a
    previous person's box. ``jitter`` adds keypoint noise (pixels).
    """

    def __init__(self, jitter: float = 0.0):
        self.detector_frames: list[int] = []
        self.frames = 0
        self.jitter = jitter
        self.rng = np.random.default_rng(3)
        self._last = None

    def _count(self, image):
        if image is not self._last:
            self._last = image
            self.frames += 1

    def _persons(self, image):
        mask = (image[..., 0] > 128).astype(np.uint8)
        n, _, stats, _ = cv2.connectedComponentsWithStats(mask)
        persons = []
        for x, y, w, h, area in stats[1:]:
            if area < 20:
                continue
            box = np.array([x, y, x + w, y + h], dtype=float)
            kp = box[:2] + TEMPLATE * [w, h] + self.rng.normal(0, self.jitter, (17, 2)) * (self.jitter > 0)
            persons.append(Person(box=box, score=0.9, keypoints=kp, keypoint_scores=np.full(17, 0.9),
                                  tracking_points=np.array([box[:2], box[2:]])))
        return persons

    def __call__(self, image, boxes=None):
        self._count(image)
        self.detector_frames.append(self.frames - 1)
        return PoseResult(self._persons(image), COCO, (image.shape[1], image.shape[0]))

    def from_rois(self, image, previous):
        self._count(image)
        found = self._persons(image)
        old = previous.boxes()
        if len(found) and len(old):
            overlap = iou_matrix(np.array([p.box for p in found]), old).max(axis=1) > 0
            found = [p for p, o in zip(found, overlap) if o]
        else:
            found = []
        return PoseResult(found, COCO, (image.shape[1], image.shape[0]))


def scene(n_frames, size=(160, 120), persons=lambda t: []):
    """Frames (RGB) with bright rectangles (x, y, w, h) given per frame by ``persons(t)``."""
    for t in range(n_frames):
        image = np.full((size[1], size[0], 3), 20, np.uint8)
        for x, y, w, h in persons(t):
            image[int(y):int(y + h), int(x):int(x + w)] = 230
        yield image


def write_clip(path: Path, frames, fps=25.0, fourcc="mp4v") -> Path:
    frames = iter(frames)
    first = next(frames)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (first.shape[1], first.shape[0]))
    assert writer.isOpened()
    for image in (first, *frames):
        writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def two_walkers(t):
    return [(5 + 3 * t, 10, 14, 30), (140 - 3 * t, 70, 12, 28)]


def load_json(path: Path) -> dict:
    return json.loads(path.read_text())


# ---- reading --------------------------------------------------------------------------------------

def test_reads_every_frame_with_index_and_time(tmp_path):
    clip = write_clip(tmp_path / "c.mp4", scene(12, persons=two_walkers), fps=20.0)
    reader = open_video(clip)
    assert (reader.info.fps, reader.info.width, reader.info.height, reader.info.frame_count) == (20.0, 160, 120, 12)
    frames = list(reader)
    assert [f.index for f in frames] == list(range(12))
    np.testing.assert_allclose([f.time for f in frames], np.arange(12) / 20.0, atol=1e-6)
    assert frames[3].image.shape == (120, 160, 3) and frames[3].image.dtype == np.uint8
    # RGB: the bright rectangle is where the scene put it.
    assert frames[3].image[20, 16].min() > 180 and frames[3].image[5, 100].max() < 60


def test_corrupt_bytes_in_a_video_skip_a_frame_with_a_warning(tmp_path):
    rng = np.random.default_rng(0)

    def textured(t):
        image = np.full((64, 64, 3), (t * 4) % 255, np.uint8)
        image[10:30, t % 40:t % 40 + 10] = 255
        return image + rng.integers(0, 30, image.shape, dtype=np.uint8)

    clip = write_clip(tmp_path / "c.mp4", (textured(t) for t in range(60)))
    data = bytearray(clip.read_bytes())
    middle = len(data) // 2
    for k in range(middle, middle + 600):
        data[k] = (data[k] * 7 + 13) % 256
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    with pytest.warns(FrameSkippedWarning, match="could not be decoded"):
        reader = open_video(bad)
        frames = list(reader)
    assert reader.skipped >= 1 and len(frames) + reader.skipped == 60
    indices = [f.index for f in frames]
    assert indices == sorted(set(indices)) and indices[-1] == 59   # later frames keep their numbers
    # The frames after the damage are the video's own: their timestamps match their indices.
    np.testing.assert_allclose([f.time for f in frames], np.array(indices) / 25.0, atol=1e-6)


def test_folder_of_frames_natural_order_and_bad_files(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, image in enumerate(scene(11, persons=two_walkers)):
        cv2.imwrite(str(folder / f"f{i}.png"), image)
    (folder / "f4.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")          # corrupt
    cv2.imwrite(str(folder / "f7.png"), np.zeros((50, 50, 3), np.uint8))     # wrong size
    (folder / "notes.txt").write_text("not a frame")
    messages = []
    reader = open_video(folder, fps=10, on_skip=messages.append)
    frames = list(reader)
    assert [f.index for f in frames] == [0, 1, 2, 3, 5, 6, 8, 9, 10]          # f10 after f9
    np.testing.assert_allclose([f.time for f in frames], np.array([0, 1, 2, 3, 5, 6, 8, 9, 10]) / 10)
    assert reader.skipped == 2 and reader.info.kind == "frames" and reader.info.frame_count == 11
    assert "frame 4" in messages[0] and "f4.png" in messages[0]
    assert "frame 7" in messages[1] and "50x50" in messages[1]


def test_clear_errors(tmp_path):
    with pytest.raises(PosekitError, match="no such file"):
        open_video(tmp_path / "missing.mp4")
    text = tmp_path / "notes.mp4"
    text.write_text("hello, not a video")
    with pytest.raises(PosekitError, match="notes.mp4: not a video"):
        open_video(text)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PosekitError, match="empty: folder holds no frame images"):
        open_video(empty)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.warns(FrameSkippedWarning), pytest.raises(PosekitError, match="not a single frame"):
        open_video(broken)
    with pytest.raises(PosekitError, match="fps"):
        open_video(text, fps=0)


def test_writer_round_trip_and_size_check(tmp_path):
    path = tmp_path / "o.mp4"
    with VideoWriter(path, 15.0, (48, 32)) as writer:
        for image in scene(7, size=(48, 32), persons=lambda t: [(t, 5, 8, 8)]):
            writer.write(image)
        with pytest.raises(PosekitError, match="32 x 48 x 3"):
            writer.write(np.zeros((48, 32, 3), np.uint8))
    frames = list(open_video(path))
    assert len(frames) == 7 and frames[0].image.shape == (32, 48, 3)
    assert open_video(path).info.fps == 15.0


# ---- the tracking loop ------------------------------------------------------------------------------

def test_detector_runs_every_n_frames_and_after_a_loss():
    def people(t):
        walkers = two_walkers(t)
        return walkers if not 13 <= t < 15 else walkers[:1]   # the second walker vanishes for 2 frames

    stub = BlobEstimator()
    tracker = PoseTracker(stub, detect_every=5, smooth=False)
    ids = []
    for t, image in enumerate(scene(24, persons=people)):
        result = tracker(image, t / 25)
        ids.append(sorted(p.track_id for p in result.persons))
    # Periodic runs at 0, 5, 10, 15 (loss seen at 13 -> run at 14, counter restarts -> 19).
    assert stub.detector_frames == [0, 5, 10, 14, 19]
    assert tracker.detector_runs == 5
    # Tracking loses walker 2 at 13; the run at 14 still misses it, the one at 19 finds it again
    # and the track (max_age 5 + 5 frames) gives it back its id.
    assert ids[:13] == [[0, 1]] * 13 and ids[13:19] == [[0]] * 6 and ids[19:] == [[0, 1]] * 5


def test_detection_frames_add_new_people_and_merge_duplicates():
    def people(t):
        return [(10 + t, 10, 14, 30)] + ([(100, 60, 14, 30)] if t >= 3 else [])

    stub = BlobEstimator()
    tracker = PoseTracker(stub, detect_every=4, smooth=False)
    counts = [len(tracker(image, t / 25).persons) for t, image in enumerate(scene(9, persons=people))]
    # The newcomer of frame 3 is picked up at the next detector run (frame 4); tracked and
    # re-detected estimates of person 1 are merged, never doubled.
    assert counts == [1, 1, 1, 1, 2, 2, 2, 2, 2]
    assert tracker.tracker.tracks_started == 2


def test_smoothing_reduces_jitter_of_a_still_person():
    # Jitter of 1.5 px on a 60 x 100 person (2 % of its size), 30 fps.
    raw, smooth = [], []
    for on, out in ((False, raw), (True, smooth)):
        tracker = PoseTracker(BlobEstimator(jitter=1.5), detect_every=10, smooth=on)
        for t, image in enumerate(scene(60, size=(160, 120), persons=lambda t: [(50, 10, 60, 100)])):
            out.append(tracker(image, t / 30).persons[0].keypoints)
    raw, smooth = np.array(raw)[10:], np.array(smooth)[10:]
    assert smooth.std(axis=0).mean() < 0.6 * raw.std(axis=0).mean()
    np.testing.assert_allclose(smooth.mean(axis=0), raw.mean(axis=0), atol=1.0)


# ---- process_video ------------------------------------------------------------------------------------

def test_process_video_writes_json_csv_and_overlay(tmp_path, capsys):
    def people(t):
        return [] if t < 3 else two_walkers(t)            # nobody in the first 3 frames

    clip = write_clip(tmp_path / "walk.mp4", scene(30, persons=people), fps=25.0)
    summary = process_video(clip, tmp_path / "out", estimator=BlobEstimator(), detect_every=10, progress=True)
    # The walkers enter at frame 3 and are found by the detector run of frame 10.
    assert (summary.frames, summary.skipped, summary.persons, summary.tracks) == (30, 0, 40, 2)
    assert summary.detector_runs == 3 and summary.fps > 0
    err = capsys.readouterr().err
    assert "walk" in err and "30/30" in err                    # the progress bar

    doc = load_json(tmp_path / "out" / "walk.json")
    assert doc["format"] == "posekit.video" and doc["video"]["fps"] == 25.0
    assert (doc["video"]["width"], doc["video"]["height"], doc["video"]["frame_count"]) == (160, 120, 30)
    assert doc["skeleton"]["joints"] == list(COCO.joints)
    assert doc["summary"]["complete"] and doc["summary"]["frames"] == 30
    assert [f["index"] for f in doc["frames"]] == list(range(30))
    assert all(f["persons"] == [] for f in doc["frames"][:10])
    assert all(len(f["persons"]) == 2 for f in doc["frames"][10:])
    first = doc["frames"][10]["persons"][0]
    assert set(first) == {"track_id", "box", "score", "keypoints"} and len(first["keypoints"]) == 17
    # Identities: the person on top walks right, the one below walks left, each with one id.
    by_id = {}
    for f in doc["frames"]:
        for p in f["persons"]:
            by_id.setdefault(p["track_id"], []).append(p["box"])
    assert len(by_id) == 2
    for boxes in by_id.values():
        boxes = np.array(boxes)
        assert np.ptp(boxes[:, 1]) < 3                          # stays in its row
        steps = np.diff(boxes[:, 0])
        assert np.all(steps > 0) or np.all(steps < 0)

    with open(tmp_path / "out" / "walk.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 40 and len(rows[0]) == 8 + 17 * 3
    row = next(r for r in rows if r["frame"] == "10" and r["track_id"] == str(first["track_id"]))
    assert float(row["left_knee_x"]) == first["keypoints"][COCO.index("left_knee")][0]
    assert float(row["x2"]) == first["box"][2]

    overlay = list(open_video(tmp_path / "out" / "walk.mp4"))
    assert len(overlay) == 30 and overlay[0].image.shape == (120, 160, 3)


def test_process_video_reports_bad_frames_and_completes(tmp_path, capsys):
    folder = tmp_path / "seq"
    folder.mkdir()
    for i, image in enumerate(scene(8, persons=two_walkers)):
        cv2.imwrite(str(folder / f"{i:03d}.jpg"), image)
    (folder / "005.jpg").write_bytes((folder / "005.jpg").read_bytes()[:200])       # truncated
    summary = process_video(folder, tmp_path / "out", estimator=BlobEstimator(), progress=True)
    assert (summary.frames, summary.skipped) == (7, 1)
    err = capsys.readouterr().err
    assert re.search(r"posekit: warning: frame 5 skipped: .*005\.jpg", err)
    doc = load_json(tmp_path / "out" / "seq.json")
    assert [f["index"] for f in doc["frames"]] == [0, 1, 2, 3, 4, 6, 7]
    assert doc["video"]["kind"] == "frames" and doc["video"]["fps"] == 30.0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        process_video(folder, tmp_path / "out2", estimator=BlobEstimator(), progress=False)
    assert [w.category for w in caught] == [FrameSkippedWarning]


def test_unsmoothed_output_is_the_estimators(tmp_path):
    clip = write_clip(tmp_path / "c.mp4", scene(6, persons=lambda t: [(30 + t, 30, 20, 40)]))
    stub = BlobEstimator()
    process_video(clip, tmp_path / "out", estimator=stub, smooth=False, progress=False)
    doc = load_json(tmp_path / "out" / "c.json")
    decoded = list(open_video(clip))
    expected = BlobEstimator()._persons(decoded[4].image)[0].keypoints
    got = np.array(doc["frames"][4]["persons"][0]["keypoints"])[:, :2]
    np.testing.assert_allclose(got, expected, atol=0.006)
    assert doc["settings"] == {"detect_every": 10, "smoothing": None}


def test_errors_are_posekit_errors(tmp_path):
    with pytest.raises(PosekitError, match="no such file"):
        process_video(tmp_path / "nope.mp4", tmp_path / "out", estimator=BlobEstimator(), progress=False)
    clip = write_clip(tmp_path / "c.mp4", scene(3))
    with pytest.raises(PosekitError, match="detect_every"):
        process_video(clip, tmp_path / "out", estimator=BlobEstimator(), detect_every=0)
    with pytest.raises(PosekitError, match="overwrite the input"):
        process_video(clip, tmp_path, estimator=BlobEstimator(), progress=False)
    with pytest.raises(PosekitError, match="cannot create the output folder"):
        process_video(clip, clip, estimator=BlobEstimator(), progress=False)


def test_cli_video_error_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["video", str(tmp_path / "missing.mp4"), "--out", str(tmp_path / "o")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("posekit: error:") and "missing.mp4" in err[0]


def vm_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    pytest.skip("no /proc/self/status VmRSS on this system")


@pytest.mark.slow
def test_memory_stays_flat_on_a_long_video(tmp_path, monkeypatch):
    # Keeping each frame's persons as JSON-ready objects would add about 8 MB here, frames far more.
    def people(t):   # someone walks through in every other 100-frame block
        return [(t % 100 * 0.5, 20, 10, 24)] if (t // 100) % 2 == 0 else []

    clip = write_clip(tmp_path / "long.mp4", scene(5000, size=(64, 64), persons=people), fps=50.0)
    rss = {}
    draw = posekit.viz.draw.draw_poses

    def draw_and_measure(image, result):             # called once per frame
        rss[len(rss) + 1] = vm_rss_mb() if len(rss) + 1 in (500, 5000) else None
        return draw(image, result)

    monkeypatch.setattr(posekit.viz.draw, "draw_poses", draw_and_measure)
    summary = process_video(clip, tmp_path / "out", estimator=BlobEstimator(), progress=False)
    assert summary.frames == 5000 and summary.persons > 2000
    growth = rss[5000] - rss[500]
    assert growth < 5, f"RSS grew by {growth:.1f} MB between frames 500 and 5000"
    doc = load_json(tmp_path / "out" / "long.json")
    assert len(doc["frames"]) == 5000 and doc["summary"]["tracks"] == summary.tracks


def test_cli_video_with_the_real_estimator(tmp_path, capsys):
    clip = write_clip(tmp_path / "noise.mp4", (np.random.default_rng(i).integers(0, 255, (48, 64, 3), dtype=np.uint8)
                                               for i in range(6)), fps=12.0)
    with pytest.raises(SystemExit) as exc:
        main(["video", str(clip), "--out", str(tmp_path / "o"), "--every", "3", "--no-smooth"])
    assert exc.value.code == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and re.search(r"noise\.mp4: 6 frames \(0 skipped\), \d+ persons, \d+ tracks, [\d.]+ FPS", out[0])
    doc = load_json(tmp_path / "o" / "noise.json")
    assert doc["settings"] == {"detect_every": 3, "smoothing": None} and doc["video"]["fps"] == 12.0
    assert [f["index"] for f in doc["frames"]] == list(range(6))
    assert (tmp_path / "o" / "noise.csv").exists() and len(list(open_video(tmp_path / "o" / "noise.mp4"))) == 6


# ---- the real estimator on the real demo clip -----------------------------------------------------------

@pytest.mark.slow
def test_demo_clip_end_to_end(shared_real, tmp_path, capsys):
    clip = shared_real / "video" / "demo.mp4"
    with pytest.raises(SystemExit) as exc:
        main(["video", str(clip), "--out", str(tmp_path)])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert re.search(r"5 frames \(0 skipped\), \d+ persons, \d+ tracks", out)
    doc = load_json(tmp_path / "demo.json")
    assert len(doc["frames"]) == 5 and doc["summary"]["complete"]
    counts = [len(f["persons"]) for f in doc["frames"]]
    ids_per_frame = [{p["track_id"] for p in f["persons"]} for f in doc["frames"]]
    all_ids = set().union(*ids_per_frame)
    # The people walking in the clip are found in every frame and keep their ids: every id seen
    # in the first frame is still there in the last, and hardly any new id appears.
    assert min(counts) >= 3
    assert ids_per_frame[0] <= ids_per_frame[-1]
    assert len(all_ids) <= max(counts) + 1
    with open(tmp_path / "demo.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == sum(counts)
    assert len(list(open_video(tmp_path / "demo.mp4"))) == 5


@pytest.mark.slow
def test_folder_of_real_frames_end_to_end(shared_real, tmp_path):
    # Five consecutive PoseTrack frames (1280 x 720) with two people.
    folder = shared_real / "posetrack18" / "videos" / "000001_mpiinew_test"
    summary = process_video(folder, tmp_path, progress=False)
    assert (summary.frames, summary.skipped, summary.tracks) == (5, 0, 2)
    doc = load_json(tmp_path / "000001_mpiinew_test.json")
    assert [sorted(p["track_id"] for p in f["persons"]) for f in doc["frames"]] == [[0, 1]] * 5
