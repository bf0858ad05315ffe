"""write_bvh: joint positions to a BVH rotation hierarchy.

Files are read back with posekit's BVH reader and forward kinematics (a separate code path) and
compared with positions built here from known bone lengths and rotations (scipy), by hand, or taken
from real CMU motion capture.
"""
import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from posekit.data.mocap import bvh_positions, read_bvh, read_mocap, write_bvh
from posekit.errors import PosekitError
from posekit.skeletons import Skeleton, convert_keypoints, get_skeleton

H36M = get_skeleton("h36m17")
FLIP = np.array([1.0, -1.0, -1.0])      # camera axes <-> Y-up (x, -y, -z); its own inverse


def read_back(path, skeleton=H36M):
    """(BvhMotion, joint positions (T, K, 3) mm in camera axes, rows in the skeleton's order)."""
    motion = read_bvh(path)
    points = bvh_positions(motion, include_end_sites=False, units_to_mm=1.0)
    return motion, points[:, [motion.names.index(n) for n in skeleton.joints]] * FLIP


def channels(motion, joint: str) -> np.ndarray:
    """(T, 3) rotation values of one joint about X, Y and Z, whatever their order in the file."""
    j = motion.names.index(joint)
    columns = [motion.channel_starts[j] + motion.channels[j].index(f"{axis}rotation") for axis in "XYZ"]
    return motion.motion[:, columns]


def forward_kinematics(offsets, rotations, parents):
    """Y-up joint positions (T, K, 3): each joint at its parent plus the parent's world rotation applied
    to its offset ((K, 3), or (T, K, 3) for lengths that change), local rotations (T, K, 3, 3)."""
    offsets = np.broadcast_to(offsets, rotations.shape[:2] + (3,))
    world = np.empty_like(rotations)
    points = np.zeros(rotations.shape[:2] + (3,))
    for j, p in enumerate(parents):
        if p < 0:
            world[:, j] = rotations[:, j]
        else:
            world[:, j] = world[:, p] @ rotations[:, j]
            points[:, j] = points[:, p] + np.einsum("tij,tj->ti", world[:, p], offsets[:, j])
    return points


def random_motion(frames: int, seed: int, offsets=None):
    """Camera-axes positions of H36M under random local rotations, and the (K, 3) offsets used."""
    rng = np.random.default_rng(seed)
    if offsets is None:
        offsets = rng.normal(size=(len(H36M), 3)) * 120.0
    rotations = Rotation.random(frames * len(H36M), random_state=seed).as_matrix()
    return forward_kinematics(offsets, rotations.reshape(frames, len(H36M), 3, 3), H36M.parents) * FLIP, offsets


def bone_vectors(points, parents):
    return np.stack([points[:, c] - points[:, p] for c, p in enumerate(parents) if p >= 0], axis=1)


def test_rigid_round_trip(tmp_path):
    positions, _ = random_motion(120, seed=1)
    translation = np.random.default_rng(2).normal(size=(120, 3)) * 1000.0
    path = tmp_path / "rigid.bvh"
    write_bvh(path, positions, "h36m17", fps=50.0, root_translation=translation)
    motion, back = read_back(path)
    assert motion.fps == 50.0 and motion.num_frames == 120
    assert motion.names[0] == "pelvis" and motion.parents[0] == -1
    error = np.linalg.norm(back - (positions + translation[:, None]), axis=-1)
    assert error.max() < 0.1


def test_varying_bone_lengths_keep_directions_and_median_lengths(tmp_path):
    frames = 80
    rng = np.random.default_rng(3)
    unit = rng.normal(size=(len(H36M), 3))
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    lengths = rng.uniform(80.0, 450.0, size=len(H36M)) * rng.uniform(0.85, 1.15, size=(frames, len(H36M)))
    rotations = Rotation.random(frames * len(H36M), random_state=4).as_matrix().reshape(frames, -1, 3, 3)
    positions = forward_kinematics(unit * lengths[..., None], rotations, H36M.parents) * FLIP
    path = tmp_path / "lengths.bvh"
    write_bvh(path, positions)
    _, back = read_back(path)
    given, written = bone_vectors(positions, H36M.parents), bone_vectors(back, H36M.parents)
    cosine = np.sum(given * written, -1) / np.linalg.norm(given, axis=-1) / np.linalg.norm(written, axis=-1)
    assert np.degrees(np.arccos(np.clip(cosine, -1, 1))).max() < 0.1
    medians = np.median(lengths[:, [c for c, p in enumerate(H36M.parents) if p >= 0]], axis=0)
    np.testing.assert_allclose(np.linalg.norm(written, axis=-1), np.broadcast_to(medians, written.shape[:2]),
                               atol=1e-3)


STICK = Skeleton(name="stick", joints=("base", "tip"), parents=(-1, 0), bones=((0, 1),))


def test_two_joint_case_by_hand(tmp_path):
    # Tip seen straight up, +X, 60 deg from up toward the camera (+Z), 30 deg from up toward -X.
    # Camera axes are (x, -Y, -Z); the rest bone points up (+Y), so the smallest rotations are
    # none, Rz(-90), Rx(60), Rz(30): written as "Zrotation Xrotation Yrotation".
    s = math.sqrt(3.0) / 2.0
    tips = [(0, -100, 0), (100, 0, 0), (0, -50, -100 * s), (-50, -100 * s, 0)]
    positions = np.array([[(0, 0, 0), tip] for tip in tips], dtype=float)
    path = tmp_path / "stick.bvh"
    write_bvh(path, positions, STICK, fps=25.0)
    lines = path.read_text().splitlines()
    assert lines[:12] == ["HIERARCHY", "ROOT base", "{", "\tOFFSET 0.000000 0.000000 0.000000",
                          "\tCHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation",
                          "\tJOINT tip", "\t{", "\t\tOFFSET 0.000000 100.000000 0.000000",
                          "\t\tCHANNELS 3 Zrotation Xrotation Yrotation", "\t\tEnd Site", "\t\t{",
                          "\t\t\tOFFSET 0.000000 25.000000 0.000000"]
    start = lines.index("MOTION")
    assert lines[start + 1:start + 3] == ["Frames: 4", "Frame Time: 0.04"]
    table = np.array([[float(v) for v in line.split()] for line in lines[start + 3:]])
    expected = np.array([[0, 0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, -90, 0, 0, 0, 0, 0],
                         [0, 0, 0, 0, 60, 0, 0, 0, 0], [0, 0, 0, 30, 0, 0, 0, 0, 0]], dtype=float)
    np.testing.assert_allclose(table, expected, atol=1e-5)


def test_knees_and_elbows_are_hinges(tmp_path):
    """The hip and shoulder twist follows the plane of the limb, so the knee turns about its own X
    axis and the elbow about its Y axis (T-pose rest: legs down, arms sideways), by the bend angle."""
    positions, _ = random_motion(200, seed=5)
    path = tmp_path / "hinge.bvh"
    write_bvh(path, positions)
    motion = read_bvh(path)
    for upper, middle, lower, axis in [("right_hip", "right_knee", "right_ankle", 0),
                                       ("left_shoulder", "left_elbow", "left_wrist", 1)]:
        first = positions[:, H36M.index(middle)] - positions[:, H36M.index(upper)]
        second = positions[:, H36M.index(lower)] - positions[:, H36M.index(middle)]
        cosine = np.sum(first * second, -1) / np.linalg.norm(first, axis=-1) / np.linalg.norm(second, axis=-1)
        bend = np.degrees(np.arccos(np.clip(cosine, -1, 1)))
        bent = (bend > 10) & (bend < 170)
        assert bent.sum() > 100
        angles = channels(motion, middle)[bent]
        np.testing.assert_allclose(np.delete(angles, axis, axis=1), 0.0, atol=1e-3)
        np.testing.assert_allclose(np.abs(angles[:, axis]), bend[bent], atol=1e-3)


def test_tpose_rest_and_y_up(tmp_path):
    standing = {"pelvis": (0, 0, 0), "right_hip": (-100, 0, 0), "right_knee": (-100, 420, 0),
                "right_ankle": (-100, 840, 0), "left_hip": (100, 0, 0), "left_knee": (100, 420, 0),
                "left_ankle": (100, 840, 0), "spine": (0, -230, 0), "thorax": (0, -480, 0),
                "neck_nose": (0, -580, 0), "head": (0, -700, 0), "left_shoulder": (170, -450, 0),
                "left_elbow": (170, -180, 0), "left_wrist": (170, 60, 0), "right_shoulder": (-170, -450, 0),
                "right_elbow": (-170, -180, 0), "right_wrist": (-170, 60, 0)}
    pose = np.array([standing[name] for name in H36M.joints], dtype=float)
    path = tmp_path / "standing.bvh"
    write_bvh(path, pose[None])
    motion = read_bvh(path)
    offsets = dict(zip(motion.names, motion.offsets))
    for joint, direction in [("left_elbow", (1, 0, 0)), ("right_wrist", (-1, 0, 0)), ("left_knee", (0, -1, 0)),
                             ("right_ankle", (0, -1, 0)), ("spine", (0, 1, 0)), ("head", (0, 1, 0))]:
        np.testing.assert_allclose(offsets[joint] / np.linalg.norm(offsets[joint]), direction, atol=1e-9)
    y_up = bvh_positions(motion, False, units_to_mm=1.0)[0]
    assert y_up[motion.names.index("head"), 1] > 600 > -800 > y_up[motion.names.index("left_ankle"), 1]
    np.testing.assert_allclose(y_up[[motion.names.index(n) for n in H36M.joints]], pose * FLIP, atol=1e-4)


def test_missing_joints_keep_the_previous_rotation(tmp_path):
    positions, _ = random_motion(6, seed=6)
    positions[3, H36M.index("left_wrist")] = np.nan
    positions[0, H36M.index("right_knee")] = np.nan
    path = tmp_path / "missing.bvh"
    write_bvh(path, positions)
    assert "nan" not in path.read_text().lower()
    motion, back = read_back(path)
    np.testing.assert_array_equal(channels(motion, "left_elbow")[3], channels(motion, "left_elbow")[2])
    np.testing.assert_array_equal(channels(motion, "right_hip")[0], 0.0)
    np.testing.assert_array_equal(channels(motion, "right_knee")[0], 0.0)
    seen = np.isfinite(positions).all(axis=-1)
    seen[3, H36M.index("left_wrist")] = False
    seen[0, [H36M.index("right_knee"), H36M.index("right_ankle")]] = False
    assert np.linalg.norm(back - positions, axis=-1)[seen].max() < 0.1


def test_angles_are_unwrapped_over_time(tmp_path):
    """A body turning 10 degrees a frame about the vertical: no channel jumps by 360 degrees."""
    positions, offsets = random_motion(1, seed=7)
    turns = Rotation.from_euler("y", np.arange(100)[:, None] * 10.0, degrees=True).as_matrix()
    spinning = np.einsum("tij,kj->tki", turns, positions[0] * FLIP) * FLIP
    path = tmp_path / "spin.bvh"
    write_bvh(path, spinning)
    motion, back = read_back(path)
    assert np.abs(np.diff(motion.motion, axis=0)).max() < 30.0
    assert np.linalg.norm(back - spinning, axis=-1).max() < 0.1


def test_real_cmu_motion(tmp_path, shared_mocap):
    folder = shared_mocap / "cmu_asfamc"
    motion = read_mocap(folder / "02_01.amc", asf=folder / "02.asf")
    world = convert_keypoints(motion.positions, None, "cmu_mocap", "h36m17")[0]     # Y-up, mm
    camera = world * FLIP
    root = camera[:, H36M.index("pelvis")]
    path = tmp_path / "02_01.bvh"
    write_bvh(path, camera - root[:, None], fps=motion.fps, root_translation=root)
    written, back = read_back(path)
    assert written.fps == 120.0 and written.num_frames == len(camera)
    # Reference: the input with every bone scaled to its median length, directions kept.
    reference = np.empty_like(camera)
    for c, p in enumerate(H36M.parents):
        if p < 0:
            reference[:, c] = camera[:, c]
            continue
        bone = camera[:, c] - camera[:, p]
        length = np.linalg.norm(bone, axis=-1, keepdims=True)
        reference[:, c] = reference[:, p] + bone / length * np.median(length)
    error = np.linalg.norm(back - reference, axis=-1)
    assert error.mean() < 5.0 and error.max() < 25.0          # measured 3.4 and 14.4 mm
    # Bones whose parent joint has one child are put exactly along the observed direction.
    for c, p in enumerate(H36M.parents):
        if p >= 0 and H36M.parents.count(p) == 1:
            a, b = camera[:, c] - camera[:, p], back[:, c] - back[:, p]
            cosine = np.sum(a * b, -1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
            assert np.degrees(np.arccos(np.clip(cosine, -1, 1))).max() < 0.1


GOOD = random_motion(3, seed=8)[0]


@pytest.mark.parametrize("positions, kwargs, message", [
    (GOOD[:, :16], {}, "expected (T, 17, 3)"),
    (GOOD[..., :2], {}, "expected (T, 17, 3)"),
    (GOOD[0], {}, "expected (T, 17, 3)"),
    (np.zeros((0, 17, 3)), {}, "no frames"),
    (np.full((3, 17, 3), np.nan), {}, "every value is NaN"),
    (np.where(np.arange(17)[None, :, None] == 5, np.nan, GOOD), {}, "missing (NaN) in every frame"),
    (np.where(np.arange(17)[None, :, None] == 5, np.inf, GOOD), {}, "infinite"),
    (np.zeros((3, 17, 3)), {}, "zero length"),
    ([["a"]], {}, "not a numeric array"),
    (GOOD, {"fps": float("nan")}, "fps"),
    (GOOD, {"fps": 0}, "fps"),
    (GOOD, {"fps": "fast"}, "fps"),
    (GOOD, {"root_translation": np.zeros((2, 3))}, "root_translation"),
    (GOOD, {"root_translation": np.full((3, 3), np.nan)}, "root_translation"),
    (GOOD, {"skeleton": "coco17"}, "no kinematic tree"),
])
def test_bad_input(tmp_path, positions, kwargs, message):
    with pytest.raises(PosekitError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        write_bvh(tmp_path / "bad.bvh", positions, **kwargs)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "bad.bvh").exists()


def test_unwritable_path(tmp_path):
    with pytest.raises(PosekitError, match="cannot write"):
        write_bvh(tmp_path / "no_such_folder" / "out.bvh", GOOD)


def test_real_cmu_skeleton_round_trips_exactly(tmp_path, shared_mocap):
    """CMU's own 38-point skeleton is rigid, so it is reproduced exactly, although several of its joints
    coincide (hip and shoulder starts, end sites): zero-length bones and children along one bone."""
    folder = shared_mocap / "cmu_asfamc"
    motion = read_mocap(folder / "02_01.amc", asf=folder / "02.asf")
    camera = motion.positions * FLIP
    path = tmp_path / "02_01_cmu.bvh"
    write_bvh(path, camera, motion.skeleton, fps=motion.fps,
              root_translation=camera[:, motion.skeleton.index("Hips")])
    _, back = read_back(path, motion.skeleton)
    assert np.linalg.norm(back - camera, axis=-1).max() < 0.1
