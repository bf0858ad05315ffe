"""Synthetic engine, outputs: labelled images (against pycocotools and the depth buffer), multi-view
calibration (reprojection through Camera.from_dict), PoseTrack video, 2D/3D pairs and their noise,
IMU signals (hand-computed motions and integration back to the trajectory), determinism, the CLI."""
import json
from pathlib import Path

import numpy as np
import pytest

from posekit.cli import main
from posekit.data.coco import read_coco_keypoints
from posekit.data.multiview import read_campus_calibration
from posekit.data.posetrack import read_posetrack
from posekit.data.synthetic.body import PARTS, keypoint_recipes
from posekit.data.synthetic.datasets import (ImageConfig, MultiviewConfig, VideoConfig, preview_grid,
                                             synth_image, write_image_dataset, write_multiview_dataset,
                                             write_video_dataset)
from posekit.data.synthetic.files import rle_encode
from posekit.data.synthetic.imu import GRAVITY, SENSOR_SITES, ImuNoise, add_imu_noise, imu_signals
from posekit.data.synthetic.motion import CMU_ACTIONS, bone_lengths, load_mocap_library, rotate_about_vertical
from posekit.data.synthetic.pairs import NoiseModel, apply_noise, write_pairs
from posekit.data.synthetic.postures import neutral_pose
from posekit.data.synthetic.scenes import (Person, PoseSource, Solid, annotate_person, grounded,
                                           look_at, render_view, ring_cameras, sample_appearance,
                                           sample_lighting)
from posekit.data.synthetic.body import BodyShape
from posekit.errors import PosekitError
from posekit.geometry.camera import Camera
from posekit.skeletons import get_skeleton


@pytest.fixture(scope="module")
def motions():
    """The two short CMU clips shipped in tests/data/mocap (01_01 jump, 02_01 walk)."""
    return load_mocap_library(Path(__file__).parent / "data" / "mocap")


def _files(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------ still images

def test_visible_keypoints_land_on_their_own_body_part(motions):
    source = PoseSource(motions, template_probability=0.4)
    for skeleton in ("coco17", "mpii16"):
        recipe = keypoint_recipes(skeleton)
        visible = on_own = occluded = 0
        for index in range(25):
            sample = synth_image(source, ImageConfig(skeleton=skeleton), 11, index)
            ids = sample.view.raster.ids
            for person, label in enumerate(sample.labels):
                if label is None:
                    continue
                for k in np.flatnonzero(label.visibility == 2):
                    u, v = np.round(label.keypoints[k]).astype(int)
                    seen = ids[v, u]
                    visible += 1
                    on_own += seen >= 0 and seen // len(PARTS) == person and seen % len(PARTS) in recipe.own_parts[k]
                occluded += int(np.sum(label.visibility == 1))
        assert visible > 300 and on_own / visible >= 0.95
        assert occluded > 20                        # self-occlusion and occluders do happen


def _single_person_view(camera_eye, solids=(), size=200, focal=260.0, target=(0.0, 900.0, 0.0)):
    pose = grounded(neutral_pose(), BodyShape())
    person = Person(pose, BodyShape(), sample_appearance(np.random.default_rng(0)), "stand")
    rotation, translation = look_at(camera_eye, np.array(target))
    K = np.array([[focal, 0.0, size / 2], [0.0, focal, size / 2], [0.0, 0.0, 1.0]])
    camera = Camera(K=K, R=rotation, t=translation, width=size, height=size)
    view = render_view(camera, [person], list(solids), np.zeros((size, size, 3), np.float32),
                       sample_lighting(np.random.default_rng(1)))
    return annotate_person(camera, view, 0, person, "coco17")


def test_visibility_from_the_depth_buffer_in_known_scenes():
    coco = get_skeleton("coco17")
    face = [coco.index(n) for n in ("nose", "left_eye", "right_eye")]
    front = _single_person_view([0.0, 1200.0, 4000.0])                      # the neutral pose faces +z
    assert (front.visibility == 2).all()
    back = _single_person_view([0.0, 1200.0, -4000.0])
    assert (back.visibility[face] == 1).all()                              # the head hides the face
    assert back.visibility[coco.index("left_hip")] == 2
    side = _single_person_view([4000.0, 1200.0, 0.0])                      # seen from the left
    assert side.visibility[coco.index("left_ear")] == 2 and side.visibility[coco.index("right_ear")] == 1
    assert side.visibility[coco.index("right_knee")] == 1                  # behind the left leg
    knee = grounded(neutral_pose(), BodyShape())[get_skeleton("cmu_mocap").index("LeftLeg")]
    eye = np.array([0.0, 1200.0, 4000.0])
    crate = Solid("box", np.ones(3), center=knee + 0.1 * (eye - knee), axes=np.eye(3), size=np.array([60.0] * 3))
    covered = _single_person_view(eye, [crate])
    assert covered.visibility[coco.index("left_knee")] == 1
    assert covered.visibility[coco.index("right_knee")] == 2
    close = _single_person_view([0.0, 1300.0, 1800.0], target=(0.0, 1200.0, 0.0))  # feet below the image
    assert close.visibility[coco.index("left_ankle")] == 0 and close.visibility[coco.index("nose")] == 2


def test_image_dataset_against_pycocotools_and_byte_identical(tmp_path, motions):
    mask_utils = pytest.importorskip("pycocotools.mask")
    from pycocotools.coco import COCO
    import cv2

    source = PoseSource(motions)
    config = ImageConfig(width=128, height=96, persons=(1, 3))
    first, again, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    summary = write_image_dataset(first, 6, 5, config, source)
    write_image_dataset(again, 6, 5, config, source)
    write_image_dataset(other, 6, 6, config, source)
    assert _files(first) == _files(again)
    assert _files(first)[first.joinpath("annotations.json").relative_to(first)] != \
        _files(other)[other.joinpath("annotations.json").relative_to(other)]
    coco = COCO(str(first / "annotations.json"))
    instances = read_coco_keypoints(first / "annotations.json")
    assert len(instances) == summary["annotations"] == len(coco.getAnnIds())
    for image_id in coco.getImgIds():
        info = coco.loadImgs(image_id)[0]
        masks = cv2.imread(str(first / "masks" / f"{image_id - 1:06d}.png"), cv2.IMREAD_UNCHANGED)
        assert cv2.imread(str(first / "images" / info["file_name"])).shape == (96, 128, 3)
        for order, ann in enumerate(coco.loadAnns(coco.getAnnIds(imgIds=image_id)), 1):
            mask = coco.annToMask(ann)
            np.testing.assert_array_equal(mask, masks == order)
            assert ann["area"] == mask.sum()
            rows, cols = np.nonzero(mask)
            assert ann["bbox"] == [cols.min(), rows.min(), cols.max() - cols.min() + 1, rows.max() - rows.min() + 1]
            assert mask_utils.area(mask_utils.encode(np.asfortranarray(mask))) == ann["area"]
    labels = np.load(first / "labels.npz")
    assert labels["keypoints_3d"].shape == (summary["annotations"], 17, 3)
    for row in range(summary["annotations"]):           # 3D (camera) -> 2D with the image's K
        camera = list(labels["image_ids"]).index(labels["image_id"][row])
        homogeneous = labels["keypoints_3d"][row] @ labels["K"][camera].T
        np.testing.assert_allclose(homogeneous[:, :2] / homogeneous[:, 2:], labels["keypoints"][row], atol=1e-9)


def test_rle_matches_pycocotools():
    mask_utils = pytest.importorskip("pycocotools.mask")
    rng = np.random.default_rng(0)
    for shape in ((5, 7), (31, 17), (1, 1)):
        mask = rng.random(shape) < 0.4
        mask[0, 0] = shape == (31, 17)
        rle = rle_encode(mask)
        decoded = mask_utils.decode(mask_utils.frPyObjects(rle, *shape))
        np.testing.assert_array_equal(decoded, mask)


def test_preview_grid_shape(motions):
    grid = preview_grid(PoseSource(motions), 0, count=3, columns=2, size=64)
    assert grid.shape == (128, 128, 3) and grid.dtype == np.uint8
    assert grid[64:, 64:].max() == 0                     # the empty fourth cell


# ------------------------------------------------------------------------------------ multi-view

def test_multiview_calibration_reprojects_the_labels(tmp_path):
    out = tmp_path / "mv"
    write_multiview_dataset(out, 2, 3, MultiviewConfig(width=96, height=96), PoseSource([]))
    calibration = json.loads((out / "calibration.json").read_text())
    groups = json.loads((out / "groups.json").read_text())["groups"]
    coco = json.loads((out / "annotations.json").read_text())
    cameras = {name: Camera.from_dict(entry, name=name) for name, entry in calibration.items()}
    campus = read_campus_calibration(out / "calibration.json")
    assert len(cameras) == 8 and set(campus) == set(cameras)
    for ann in coco["annotations"]:
        world = np.array(groups[ann["group"]]["keypoints_world"])
        points = np.array(ann["keypoints"]).reshape(-1, 3)
        labelled = points[:, 2] > 0
        for camera in (cameras[ann["camera"]], campus[ann["camera"]]):
            np.testing.assert_allclose(camera.project(world)[labelled], points[labelled, :2], atol=1e-6, rtol=0)
    # the ring: same height, 3.5 m from the subject's axis, 45 degrees apart, all looking at it
    centres = np.array([c.center for c in cameras.values()])
    np.testing.assert_allclose(centres[:, 1], 1200.0)
    np.testing.assert_allclose(np.hypot(centres[:, 0], centres[:, 2]), 3500.0)
    angles = np.degrees(np.arctan2(centres[:, 0], centres[:, 2])) % 360
    np.testing.assert_allclose(np.diff(angles) % 360, 45.0)
    for camera in cameras.values():
        np.testing.assert_allclose(camera.project(np.array([0.0, 900.0, 0.0])), [48.0, 48.0], atol=1e-9)
    assert {g["posture"] for g in groups} <= {"stand", "sit", "squat", "bend_forward", "arms_raised", "lie"}


def test_ring_cameras_refuse_an_empty_rig():
    with pytest.raises(PosekitError, match="at least one camera"):
        ring_cameras(0)


# ------------------------------------------------------------------------------------ video

def test_video_sequences_as_posetrack(tmp_path, motions):
    out = tmp_path / "video"
    config = VideoConfig(frames=6, width=96, height=72, persons=(2, 2), blur_samples=3)
    write_video_dataset(out, 1, 2, config, PoseSource(motions))
    write_video_dataset(tmp_path / "again", 1, 2, config, PoseSource(motions))
    assert _files(out) == _files(tmp_path / "again")
    sequence = read_posetrack(out / "annotations" / "synth_000000.json")
    assert len(sequence.images) == 6
    assert set(sequence.track_ids.tolist()) <= {1, 2}
    frames = sorted(info.frame_index for info in sequence.images.values())
    assert frames == list(range(6))
    labels = np.load(out / "labels" / "synth_000000.npz")
    assert labels["keypoints"].shape == (6, 2, 17, 2) and labels["R"].shape == (6, 3, 3)
    assert set(labels["actions"].tolist()) <= {"walk", "jump"} and labels["track_ids"].tolist() == [1, 2]
    # the camera moves: not every frame has the same rotation
    assert np.abs(labels["R"][0] - labels["R"][-1]).max() > 0
    assert len(list((out / "images" / "synth_000000").glob("*.jpg"))) == 6
    with pytest.raises(PosekitError, match="motion capture"):
        write_video_dataset(tmp_path / "none", 1, 0, config, PoseSource([]))


# ------------------------------------------------------------------------------------ 2D/3D pairs

def test_noise_model_statistics_and_events():
    skeleton = get_skeleton("h36m17")
    rng = np.random.default_rng(0)
    clean = rng.uniform(100, 900, (400, 17, 2))
    jitter_only = apply_noise(clean, skeleton, rng, NoiseModel(3.0, 0.0, 0.0, 0.0), (1000, 1000))
    residual = jitter_only["keypoints"] - clean
    assert residual.std() == pytest.approx(3.0, rel=0.03)
    assert not jitter_only["missing"].any() and (jitter_only["scores"] >= 0.3).all()
    swapped = apply_noise(clean, skeleton, rng, NoiseModel(0.0, 1.0, 0.0, 0.0), (1000, 1000))
    left, right = skeleton.index("left_wrist"), skeleton.index("right_wrist")
    np.testing.assert_array_equal(swapped["keypoints"][:, left], clean[:, right])
    assert swapped["swapped"][:, left].all() and not swapped["swapped"][:, skeleton.index("pelvis")].any()
    gone = apply_noise(clean, skeleton, rng, NoiseModel(1.0, 0.0, 0.0, 0.05, 4), (1000, 1000))
    assert 0.05 < gone["missing"].mean() < 0.25
    assert np.isnan(gone["keypoints"][gone["missing"]]).all() and (gone["scores"][gone["missing"]] == 0).all()
    outside = clean.copy()
    outside[:, 0] = [-5.0, 50.0]
    assert apply_noise(outside, skeleton, rng, NoiseModel(), (1000, 1000))["missing"][:, 0].all()
    with pytest.raises(PosekitError, match="swap_rate"):
        NoiseModel(swap_rate=2.0)


def test_pairs_files_project_consistently(tmp_path, motions):
    write_pairs(tmp_path, motions, 2, 0, length=12, skeleton="h36m17", fps=50.0)
    again = tmp_path / "again"
    write_pairs(again, motions, 2, 0, length=12, skeleton="h36m17", fps=50.0)
    assert (tmp_path / "chunk_000001.npz").read_bytes() == (again / "chunk_000001.npz").read_bytes()
    chunk = np.load(tmp_path / "chunk_000000.npz")
    assert chunk["keypoints"].shape == (12, 17, 2) and chunk["keypoints_3d"].shape == (12, 17, 3)
    projected = chunk["keypoints_3d"] @ chunk["K"].T
    np.testing.assert_allclose(projected[..., :2] / projected[..., 2:], chunk["keypoints_clean"], atol=1e-9)
    world = (chunk["keypoints_3d"] - chunk["t"]) @ chunk["R"]
    np.testing.assert_allclose(world, chunk["keypoints_world"], atol=1e-6)
    assert (chunk["keypoints_3d"][..., 2] > 0).all() and str(chunk["skeleton"]) == "h36m17"
    assert chunk["image_size"].tolist() == [1000, 1000]


# ------------------------------------------------------------------------------------ IMU

def test_imu_of_a_still_body_reads_gravity_only():
    pose = neutral_pose()
    still = np.repeat(pose[None], 240, axis=0)
    signals = imu_signals(still, 120.0, 60.0, tuple(SENSOR_SITES))
    np.testing.assert_allclose(signals["gyro"], 0.0, atol=1e-9)
    expected = np.einsum("nsji,j->nsi", signals["orientation"], -GRAVITY)
    np.testing.assert_allclose(signals["acc"], expected, atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(signals["acc"], axis=-1), 9.80665, atol=1e-9)
    # the pelvis sensor's x axis points up the spine: it reads about +g on x
    assert signals["acc"][0, list(SENSOR_SITES).index("pelvis"), 0] > 9.7


def test_imu_of_a_body_turning_at_constant_rate():
    rate = 1.5                                             # rad/s about the vertical
    fps = 120.0
    times = np.arange(360) / fps
    pose = neutral_pose() + [0.0, 1000.0, 0.0]
    turning = np.stack([rotate_about_vertical(pose, rate * t) for t in times])
    signals = imu_signals(turning, fps, 100.0, ("pelvis", "left_wrist"))
    inner = slice(50, -50)                                 # away from the filter's ends
    pelvis, wrist = signals["gyro"][inner, 0], signals["gyro"][inner, 1]
    # angular velocity (0, rate, 0) in the world, seen in each sensor frame: R^T w
    for s, gyro in ((0, pelvis), (1, wrist)):
        expected = np.einsum("nji,j->ni", signals["orientation"][inner, s], [0.0, rate, 0.0])
        np.testing.assert_allclose(gyro, expected, atol=2e-3)
    # a point at horizontal distance r from the axis: centripetal acceleration rate^2 r towards it
    position = signals["position"][inner, 1] / 1000.0
    radius = np.hypot(position[:, 0], position[:, 2])
    world = np.einsum("nij,nj->ni", signals["orientation"][inner, 1], signals["acc"][inner, 1]) + GRAVITY
    np.testing.assert_allclose(np.linalg.norm(world, axis=1), rate ** 2 * radius, rtol=2e-3)


def test_integrating_imu_signals_recovers_the_trajectory(motions):
    walk = motions[1]
    dt = 0.01
    signals = imu_signals(walk.positions, walk.fps, 1 / dt, ("left_wrist", "right_ankle", "pelvis"))
    first, last = 10, 40                                   # 0.3 s of walking
    for s in range(3):
        rotation, acc = signals["orientation"][first:last + 1, s], signals["acc"][first:last + 1, s]
        world = np.einsum("nij,nj->ni", rotation, acc) + GRAVITY           # m/s^2, gravity removed
        velocity = signals["velocity"][first, s] / 1000.0 + np.concatenate(
            [[np.zeros(3)], np.cumsum((world[1:] + world[:-1]) / 2 * dt, axis=0)])
        position = signals["position"][first, s] / 1000.0 + np.concatenate(
            [[np.zeros(3)], np.cumsum((velocity[1:] + velocity[:-1]) / 2 * dt, axis=0)])
        truth = signals["position"][first:last + 1, s] / 1000.0
        assert np.abs(position - truth).max() < 0.002                       # 2 mm
        assert np.ptp(truth, axis=0).max() > 0.1                           # it moved
        # integrating the gyroscope recovers the orientation
        from scipy.spatial.transform import Rotation
        current = rotation[0]
        gyro = signals["gyro"][first:last + 1, s]
        for k in range(last - first):
            current = current @ Rotation.from_rotvec((gyro[k] + gyro[k + 1]) / 2 * dt).as_matrix()
        assert np.degrees(np.linalg.norm(Rotation.from_matrix(current.T @ rotation[-1]).as_rotvec())) < 0.5


def test_full_cmu_library_and_a_second_of_imu_integration(shared_mocap):
    motions = {m.meta["trial"]: m for m in load_mocap_library(shared_mocap)}
    assert set(motions) == set(CMU_ACTIONS)
    assert all(m.meta["action"] == CMU_ACTIONS[trial] for trial, m in motions.items())
    assert motions["02_01"].meta["format"] == "asf/amc"                 # the AMC wins over the BVH
    climb = motions["01_14"]                                             # BVH only, offsets rebuilt
    assert climb.meta["format"] == "bvh" and climb.meta["rebuilt_offsets_from"].endswith("01.asf")
    np.testing.assert_allclose(bone_lengths(climb.positions[0]), bone_lengths(motions["01_01"].positions[0]),
                               atol=0.01)                                # same subject, same bones
    run = motions["09_06"]
    dt = 0.01
    signals = imu_signals(run.positions, run.fps, 1 / dt, ("left_wrist", "left_ankle"))
    for s in range(2):
        world = np.einsum("nij,nj->ni", signals["orientation"][10:111, s], signals["acc"][10:111, s]) + GRAVITY
        velocity = signals["velocity"][10, s] / 1000.0 + np.concatenate(
            [[np.zeros(3)], np.cumsum((world[1:] + world[:-1]) / 2 * dt, axis=0)])
        position = signals["position"][10, s] / 1000.0 + np.concatenate(
            [[np.zeros(3)], np.cumsum((velocity[1:] + velocity[:-1]) / 2 * dt, axis=0)])
        truth = signals["position"][10:111, s] / 1000.0
        assert np.ptp(truth, axis=0).max() > 2.0                           # a second of running
        assert np.abs(position - truth).max() < 0.01                        # 1 cm after 1 s


def test_imu_noise_and_bias():
    rng = np.random.default_rng(0)
    clean = {"acc": np.zeros((5000, 2, 3)), "gyro": np.zeros((5000, 2, 3))}
    noisy = add_imu_noise(clean, rng, ImuNoise(0.1, 0.01, 0.5, 0.2))
    np.testing.assert_allclose(noisy["acc"].mean(axis=0), noisy["acc_bias"], atol=0.01)
    assert (noisy["acc"] - noisy["acc_bias"]).std() == pytest.approx(0.1, rel=0.03)
    assert (noisy["gyro"] - noisy["gyro_bias"]).std() == pytest.approx(0.01, rel=0.03)
    with pytest.raises(PosekitError, match="unknown sensor"):
        imu_signals(np.zeros((100, 38, 3)), 120.0, 50.0, ("tail",))


# ------------------------------------------------------------------------------------ command line

def _cli(argv):
    """Run the CLI in-process and return its exit status."""
    try:
        main(argv)
    except SystemExit as exc:
        return exc.code
    return 0


def test_cli_writes_every_kind(tmp_path, capsys, test_data):
    mocap = str(test_data / "mocap")
    assert _cli(["synth", "images", "--out", str(tmp_path / "img"), "--n", "2", "--size", "64x48",
          "--skeleton", "mpii16", "--mocap", mocap]) == 0
    assert json.loads(capsys.readouterr().out)["skeleton"] == "mpii16"
    assert _cli(["synth", "multiview", "--out", str(tmp_path / "mv"), "--n", "1", "--cameras", "3",
                 "--size", "48x48", "--postures", "sit,squat"]) == 0
    assert json.loads((tmp_path / "mv" / "groups.json").read_text())["groups"][0]["posture"] in ("sit", "squat")
    assert _cli(["synth", "pairs", "--out", str(tmp_path / "pairs"), "--n", "1", "--length", "5",
                 "--mocap", mocap]) == 0
    assert _cli(["synth", "imu", "--out", str(tmp_path / "imu"), "--n", "1", "--seconds", "0.3", "--mocap", mocap,
                 "--sensors", "left_wrist,head"]) == 0
    imu = np.load(tmp_path / "imu" / "imu_000000.npz")
    assert imu["acc"].shape[1:] == (2, 3) and str(imu["action"]) in ("walk", "jump")
    assert _cli(["synth", "preview", "--out", str(tmp_path / "grid.png"), "--n", "2", "--size", "32"]) == 0
    assert (tmp_path / "grid.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("args, message", [
    (["images", "--n", "1", "--size", "64by64"], "--size"),
    (["images", "--n", "1", "--persons", "3-1"], "--persons"),
    (["images", "--n", "1", "--skeleton", "nope"], "unknown skeleton"),
    (["video", "--n", "1"], "motion capture"),
    (["multiview", "--n", "1", "--postures", "dance"], "--postures"),
])
def test_cli_errors_are_one_line(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.delenv("POSEKIT_MOCAP", raising=False)
    assert _cli(["synth", args[0], "--out", str(tmp_path / "x"), *args[1:]]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
