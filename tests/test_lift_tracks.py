"""Lifting every track of a posekit video JSON: segments, gap filling, skipped tracks, errors, CLI."""
import json
import re

import numpy as np
import pytest

from helpers import run_cli
from posekit.errors import PosekitError
from posekit.lift import lift_sequence, load_lifter
from posekit.lift.tracks import (MAX_GAP, MIN_TRACK_FRAMES, fill_gaps, lift_tracks, read_video_poses,
                                 split_segments, video_poses)
from posekit.skeletons import convert_keypoints, get_skeleton

COCO = get_skeleton("coco17")
H36M = get_skeleton("h36m17")
SIZE = (640, 480)
# A standing person facing the camera, pixels relative to the pelvis (image y down).
STANCE = {"nose": (0, -160), "left_eye": (6, -166), "right_eye": (-6, -166), "left_ear": (12, -162),
          "right_ear": (-12, -162), "left_shoulder": (30, -120), "right_shoulder": (-30, -120),
          "left_elbow": (38, -70), "right_elbow": (-38, -70), "left_wrist": (42, -25), "right_wrist": (-42, -25),
          "left_hip": (18, 0), "right_hip": (-18, 0), "left_knee": (20, 80), "right_knee": (-20, 80),
          "left_ankle": (20, 160), "right_ankle": (-20, 160)}


@pytest.fixture(scope="module")
def lifter():
    return load_lifter()


def pose(track: int, frame: int) -> np.ndarray:
    """(17, 2) coco17 pixels of a person walking right, swinging the left arm."""
    base = np.array([STANCE[name] for name in COCO.joints], dtype=float)
    base[COCO.index("left_wrist")] += (10 * np.sin(frame / 3), 0)
    return base + (150 + 120 * track + 4 * frame, 260)


def person(track: int, frame: int, missing=()) -> dict:
    rows = [[round(x, 2), round(y, 2), 0.9] for x, y in pose(track, frame)]
    for name in missing:
        rows[COCO.index(name)] = [None, None, 0.0]
    return {"track_id": track, "box": [0, 0, 1, 1], "score": 0.9, "keypoints": rows}


def video_doc(appearances: dict, frames: int, skeleton=COCO, missing=None) -> dict:
    """A posekit.video document: ``appearances`` maps track id -> the frames it is seen in."""
    missing = missing or {}
    return {"format": "posekit.video", "version": 1,
            "video": {"source": "walk.mp4", "kind": "video", "fps": 25.0, "width": SIZE[0], "height": SIZE[1],
                      "frame_count": frames},
            "skeleton": {"name": skeleton.name, "joints": list(skeleton.joints),
                         "bones": [[skeleton.joints[a], skeleton.joints[b]] for a, b in skeleton.bones]},
            "settings": {"detect_every": 10, "smoothing": None},
            "frames": [{"index": f, "time": f / 25.0,
                        "persons": [person(t, f, missing.get((t, f), ())) for t, seen in appearances.items()
                                    if f in seen]} for f in range(frames)],
            "summary": {"complete": True, "frames": frames}}


def write_json(path, doc):
    path.write_text(json.dumps(doc))
    return path


def h36m_input(track: int, frames, missing=None) -> tuple[np.ndarray, np.ndarray]:
    """The lifter's input for ``frames``, built with convert_keypoints from the same poses."""
    keypoints = np.array([pose(track, f) for f in frames]).round(2)
    scores = np.full(keypoints.shape[:2], 0.9)
    for (t, f), names in (missing or {}).items():
        if t == track and f in frames:
            for name in names:
                keypoints[list(frames).index(f), COCO.index(name)] = np.nan
                scores[list(frames).index(f), COCO.index(name)] = 0.0
    return convert_keypoints(keypoints, scores, "coco17", "h36m17")


def test_split_segments_and_fill_gaps_by_hand():
    frames = np.array([0, 1, 2, 5, 17, 18, 30])
    assert [(s.start, s.stop) for s in split_segments(frames, max_gap=10)] == [(0, 4), (4, 6), (6, 7)]
    assert [(s.start, s.stop) for s in split_segments(frames, max_gap=11)] == [(0, 7)]     # 11 unseen at most
    assert [(s.start, s.stop) for s in split_segments(frames, max_gap=1)] == [(0, 3), (3, 4), (4, 6), (6, 7)]
    assert [(s.start, s.stop) for s in split_segments(np.array([4]), max_gap=0)] == [(0, 1)]

    keypoints = np.array([[[0.0, 0.0], [10.0, 10.0]], [[4.0, 8.0], [np.nan, np.nan]]])
    scores = np.array([[0.8, 0.5], [0.6, 0.0]])
    filled, filled_scores, seen = fill_gaps(np.array([3, 7]), keypoints, scores)
    assert seen.tolist() == [True, False, False, False, True]
    np.testing.assert_allclose(filled[:, 0], [[0, 0], [1, 2], [2, 4], [3, 6], [4, 8]])
    np.testing.assert_allclose(filled_scores[:, 0], [0.8, 0.6, 0.6, 0.6, 0.6])
    # The second joint is unknown at frame 7: the gap has no estimate of it.
    assert np.isnan(filled[1:4, 1]).all() and (filled_scores[1:4, 1] == 0).all()
    np.testing.assert_allclose(filled[0, 1], [10, 10])


def test_two_tracks_a_gap_and_a_short_track(lifter):
    model, settings = lifter
    bridged = [f for f in range(12) if f not in (4, 5, 6)]         # 3 frames unseen: one segment
    split = list(range(6)) + list(range(6 + MAX_GAP + 3, 28))       # 12 unseen: two segments
    short = [2, 3, 4]                                               # fewer than MIN_TRACK_FRAMES
    assert len(short) < MIN_TRACK_FRAMES <= min(len(bridged), len(split))
    missing = {(0, 1): ("left_wrist",), (0, 8): ("left_hip", "nose")}
    doc = video_doc({0: bridged, 5: split, 2: short}, 28, missing=missing)
    lifted = lift_tracks(doc, model, settings)
    assert [t.track_id for t in lifted.tracks] == [0, 5] and lifted.skipped == {2: 3}
    assert lifted.pose_count == len(bridged) + len(split)
    first, second = lifted.tracks
    assert first.frames.tolist() == bridged and second.frames.tolist() == split
    assert (first.segments, second.segments) == (1, 2)
    np.testing.assert_allclose(second.times, np.array(split) / 25.0)

    # The conversion, by hand: the pelvis is the mid-hip, COCO has no spine or head, and a joint
    # missing in the file is missing in the input.
    hips = pose(5, 0)[[COCO.index("left_hip"), COCO.index("right_hip")]].round(2)
    np.testing.assert_allclose(second.keypoints_2d[0, H36M.index("pelvis")], hips.mean(axis=0), atol=1e-9)
    assert (second.scores[:, H36M.index("head")] == 0).all() and (second.scores[:, H36M.index("spine")] == 0).all()
    assert np.isnan(second.keypoints_2d[:, H36M.index("head")]).all()
    row = bridged.index(8)
    assert first.scores[row, H36M.index("pelvis")] == 0 and first.scores[row, H36M.index("neck_nose")] == 0
    assert first.scores[bridged.index(1), H36M.index("left_wrist")] == 0

    # Independent reference, track 0: frames 4-6 interpolated between frames 3 and 7 by hand
    # (weights 1/4, 2/4, 3/4), scores the lower of the two sides; one lift_sequence call.
    kp, sc = h36m_input(0, bridged, missing)
    before, after = kp[bridged.index(3)], kp[bridged.index(7)]
    low = np.minimum(sc[bridged.index(3)], sc[bridged.index(7)])
    gap = [before + w * (after - before) for w in (0.25, 0.5, 0.75)]
    full_kp = np.concatenate([kp[:4], gap, kp[4:]])
    full_sc = np.concatenate([sc[:4], [low] * 3, sc[4:]])
    expected = lift_sequence(model, full_kp, full_sc, SIZE, settings=settings)
    keep = np.r_[0:4, 7:12]
    np.testing.assert_allclose(first.keypoints_3d, expected["keypoints_3d"][keep], atol=1e-3)
    np.testing.assert_allclose(first.uncorrected, expected["uncorrected"][keep], atol=1e-3)
    np.testing.assert_array_equal(first.corrected, expected["corrected"][keep])

    # Track 5: two separate calls, the second from a fresh LSTM state.
    kp, sc = h36m_input(5, split)
    parts = [lift_sequence(model, kp[s], sc[s], SIZE, settings=settings)["keypoints_3d"]
             for s in (slice(0, 6), slice(6, None))]
    np.testing.assert_allclose(second.keypoints_3d, np.concatenate(parts), atol=1e-3)
    one_call = lift_sequence(model, kp, sc, SIZE, settings=settings)["keypoints_3d"]
    assert np.abs(one_call[6:] - second.keypoints_3d[6:]).max() > 1.0     # the split matters


def test_h36m17_video_is_lifted_without_conversion(lifter):
    model, settings = lifter
    doc = video_doc({1: range(6)}, 6)
    kp, sc = h36m_input(1, range(6))
    doc["skeleton"] = {"name": "h36m17", "joints": list(H36M.joints), "bones": []}
    for frame in doc["frames"]:
        rows = [[None, None, 0.0] if np.isnan(x) else [x, y, s]
                for (x, y), s in zip(kp[frame["index"]].tolist(), sc[frame["index"]].tolist())]
        frame["persons"][0]["keypoints"] = rows
    lifted = lift_tracks(doc, model, settings, correct=False)
    expected = lift_sequence(model, kp, sc, SIZE, correct=False)["keypoints_3d"]
    np.testing.assert_allclose(lifted.tracks[0].keypoints_3d, expected, atol=1e-3)
    assert not lifted.tracks[0].corrected.any()


def test_cli_lifts_a_video_json(tmp_path, capsys, lifter):
    model, settings = lifter
    source = write_json(tmp_path / "walk.json", video_doc({3: range(8), 1: range(2, 10), 4: [9]}, 10))
    out = tmp_path / "walk_3d.npz"
    code, stdout, _ = run_cli(["lift", "--input", str(source), "--output", str(out)], capsys)
    assert code == 0
    assert re.fullmatch(r"tracks: 2 lifted, 1 skipped \(seen in fewer than 5 frames\); 16 poses over 10 frames "
                        r"\(\d+ corrected\) -> " + re.escape(str(out)), stdout.strip())
    with np.load(out) as data:
        assert data["tracks"].tolist() == [1, 3] and data["skipped_tracks"].tolist() == [4]
        assert data["track_id"].tolist() == [1] * 8 + [3] * 8
        assert data["frame"].tolist() == list(range(2, 10)) + list(range(8))
        np.testing.assert_allclose(data["time"], data["frame"] / 25.0)
        assert data["keypoints_3d"].shape == (16, 17, 3) and data["keypoints_2d"].shape == (16, 17, 2)
        assert data["image_size"].tolist() == list(SIZE) and float(data["fps"]) == 25.0
        assert str(data["skeleton"]) == "h36m17"
        kp, sc = h36m_input(3, range(8))
        expected = lift_sequence(model, kp, sc, SIZE, settings=settings)["keypoints_3d"]
        np.testing.assert_allclose(data["keypoints_3d"][data["track_id"] == 3], expected, atol=1e-3)
        np.testing.assert_allclose(data["keypoints_2d"][data["track_id"] == 3], kp, atol=1e-4)
    code, stdout, _ = run_cli(["lift", "--input", str(source), "--output", str(out), "--no-correction"], capsys)
    assert code == 0 and "(0 corrected)" in stdout
    with np.load(out) as data:
        np.testing.assert_array_equal(data["keypoints_3d"], data["keypoints_3d_uncorrected"])


def bad_docs():
    good = video_doc({0: range(6)}, 6)

    def edit(change):
        doc = json.loads(json.dumps(good))
        change(doc)
        return doc

    mpii = get_skeleton("mpii16")
    return [
        ([1, 2, 3], "not a posekit video JSON"),
        ({"images": [], "annotations": []}, "not a posekit video JSON"),
        (edit(lambda d: d.update(version=2)), "'version'"),
        (edit(lambda d: d["video"].update(width=0)), "video.width"),
        (edit(lambda d: d["video"].pop("fps")), "video.fps"),
        (edit(lambda d: d.update(skeleton={"name": "mpii16", "joints": list(mpii.joints)})), "no mapping to h36m17"),
        (edit(lambda d: d.update(skeleton={"name": "my_rig", "joints": []})), "'my_rig' is not one posekit knows"),
        (edit(lambda d: d["skeleton"].update(name="x.yaml")), "'x.yaml' is not one posekit knows"),
        (edit(lambda d: d["skeleton"]["joints"].reverse()), "skeleton.joints"),
        (edit(lambda d: d.update(frames={})), "'frames' must be a list"),
        (edit(lambda d: d["frames"][3].update(index=1)), "frames[3].index 1 does not follow 2"),
        (edit(lambda d: d["frames"][2].update(time="0.1")), "frames[2].time"),
        (edit(lambda d: d["frames"][1]["persons"][0].pop("track_id")), "frames[1].persons[0].track_id"),
        (edit(lambda d: d["frames"][1]["persons"][0].update(track_id=True)), "frames[1].persons[0].track_id"),
        (edit(lambda d: d["frames"][1]["persons"][0].update(track_id=2 ** 64)), "frames[1].persons[0].track_id"),
        (edit(lambda d: d["frames"][1]["persons"].append(d["frames"][1]["persons"][0])), "appears twice"),
        (edit(lambda d: d["frames"][4]["persons"][0]["keypoints"].pop()), "frames[4].persons[0].keypoints"),
        (edit(lambda d: d["frames"][4]["persons"][0]["keypoints"][2].__setitem__(0, "12")), "frames[4].persons[0]"),
        (edit(lambda d: d["frames"][4]["persons"][0]["keypoints"][2].__setitem__(2, -1)), "scores must be >= 0"),
    ]


def test_read_video_poses_errors_name_the_file_and_field(tmp_path):
    for i, (doc, text) in enumerate(bad_docs()):
        path = write_json(tmp_path / f"bad{i}.json", doc)
        with pytest.raises(PosekitError) as exc:
            read_video_poses(path)
        message = str(exc.value)
        assert text in message and f"bad{i}.json" in message and "\n" not in message, (text, message)
    (tmp_path / "broken.json").write_text('{"format": "posekit.video", ')
    with pytest.raises(PosekitError, match=r"broken.json: not valid JSON \(line 1"):
        read_video_poses(tmp_path / "broken.json")
    (tmp_path / "latin.json").write_bytes(b'{"a": "\xe9"}')
    with pytest.raises(PosekitError, match="latin.json: not UTF-8 text"):
        read_video_poses(tmp_path / "latin.json")
    (tmp_path / "deep.json").write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(PosekitError, match="deep.json: JSON nested too deeply"):
        read_video_poses(tmp_path / "deep.json")
    with pytest.raises(PosekitError, match="missing.json: no such file"):
        read_video_poses(tmp_path / "missing.json")
    with pytest.raises(PosekitError, match="is a folder"):
        read_video_poses(tmp_path)


def test_no_track_long_enough(lifter):
    model, settings = lifter
    doc = video_doc({0: range(4), 1: [6, 7]}, 8)
    with pytest.raises(PosekitError, match=r"no track to lift: 2 track\(s\), the longest seen in 4 frame\(s\); "
                                           r"lifting needs 5 or more"):
        lift_tracks(video_poses(doc, "short.json"), model, settings)
    with pytest.raises(PosekitError, match="video JSON: no person in any frame, nothing to lift"):
        lift_tracks(video_doc({}, 3), model, settings)
    assert len(lift_tracks(doc, model, settings, min_frames=4).tracks) == 1


def test_cli_errors_are_one_line(tmp_path, capsys):
    cases = [(write_json(tmp_path / "coco.json", {"images": []}), "not a posekit video JSON"),
             (write_json(tmp_path / "short.json", video_doc({0: range(3)}, 3)), "no track to lift"),
             (write_json(tmp_path / "mpii.json", {**video_doc({}, 1), "skeleton": {
                 "name": "mpii16", "joints": list(get_skeleton("mpii16").joints)}}), "no mapping to h36m17")]
    for path, text in cases:
        code, _, err = run_cli(["lift", "--input", str(path), "--output", str(tmp_path / "o.npz")], capsys)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("posekit: error:")
        assert text in lines[0] and path.name in lines[0]
    assert not (tmp_path / "o.npz").exists()
