"""posekit lift: input checks, CLI round trip, and the shipped weights on real motion capture."""
import numpy as np
import pytest
import torch

from posekit.cli import main
from posekit.data.mocap import read_mocap
from posekit.data.synthetic.pairs import random_camera
from posekit.errors import PosekitError
from posekit.lift import DEFAULT_WEIGHTS, lift_sequence, load_lifter
from posekit.lift.io import read_lift_input
from posekit.lift.model import bone_lengths_mm, mirror_inputs, mirror_pose, normalize_keypoints
from posekit.lift.task import h36m_positions
from posekit.metrics.pose3d import mpjpe, p_mpjpe
from posekit.skeletons import get_skeleton

SKELETON = get_skeleton("h36m17")


@pytest.fixture(scope="module")
def lifter():
    return load_lifter()


def real_view(shared_mocap, frames=60, seed=7):
    """A real CMU walk (02_01) as h36m17, seen by a random camera: (pixels, camera-frame 3D mm)."""
    folder = shared_mocap / "cmu_asfamc"
    world = h36m_positions(read_mocap(folder / "02_01.amc", asf=folder / "02.asf"), 50.0)[:frames]
    camera = random_camera(np.random.default_rng(seed), world.reshape(-1, 3), 1000, 1000)
    return camera.project(world, distort=False), camera.world_to_camera(world)


def write_input(path, **arrays):
    np.savez(path, **arrays)
    return path


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    err = capsys.readouterr().err.strip().splitlines()
    return exc.value.code, err


def test_read_lift_input_errors(tmp_path):
    good = np.zeros((4, 17, 2))
    with pytest.raises(PosekitError, match="image_size"):
        read_lift_input(write_input(tmp_path / "a.npz", keypoints=good))
    with pytest.raises(PosekitError, match=r"\(T, 17, 2\)"):
        read_lift_input(write_input(tmp_path / "b.npz", keypoints=np.zeros((4, 16, 2)), image_size=[640, 480]))
    with pytest.raises(PosekitError, match="no frames"):
        read_lift_input(write_input(tmp_path / "c.npz", keypoints=np.zeros((0, 17, 2)), image_size=[640, 480]))
    bad = good.copy()
    bad[2, 5, 0] = np.nan
    with pytest.raises(PosekitError, match="frame 2, joint 5"):
        read_lift_input(write_input(tmp_path / "d.npz", keypoints=bad, image_size=[640, 480]))
    scores = np.ones((4, 17))
    scores[2, 5] = 0
    data = read_lift_input(write_input(tmp_path / "e.npz", keypoints=bad, scores=scores, image_size=[640, 480]))
    assert data["scores"][2, 5] == 0 and data["image_size"].tolist() == [640, 480]
    with pytest.raises(PosekitError, match="'scores' must have shape"):
        read_lift_input(write_input(tmp_path / "f.npz", keypoints=good, scores=np.ones((4, 3)), image_size=[1, 1]))
    with pytest.raises(PosekitError, match="image_size"):
        read_lift_input(write_input(tmp_path / "g.npz", keypoints=good, image_size=[640, 0]))
    (tmp_path / "h.npz").write_bytes(b"not a zip")
    with pytest.raises(PosekitError, match="not a readable .npz"):
        read_lift_input(tmp_path / "h.npz")
    with pytest.raises(PosekitError, match="no such file"):
        read_lift_input(tmp_path / "missing.npz")


def test_cli_round_trip_and_missing_joints(tmp_path, capsys, shared_mocap):
    pixels, truth = real_view(shared_mocap, frames=40)
    scores = np.full(pixels.shape[:2], 0.9)
    pixels = pixels.copy()
    pixels[10:14, SKELETON.index("left_wrist")] = np.nan  # missing joints: score 0
    scores[10:14, SKELETON.index("left_wrist")] = 0
    source = write_input(tmp_path / "in.npz", keypoints=pixels, scores=scores, image_size=np.array([1000, 1000]))
    for extra in ([], ["--no-correction"]):
        out = tmp_path / f"out{len(extra)}.npz"
        with pytest.raises(SystemExit) as exc:
            main(["lift", "--input", str(source), "--output", str(out), *extra])
        assert exc.value.code == 0
        with np.load(out) as data:
            pose = data["keypoints_3d"]
            assert pose.shape == (40, 17, 3) and np.isfinite(pose).all()
            np.testing.assert_allclose(pose[:, SKELETON.index("pelvis")], 0.0, atol=1e-3)
            if extra:
                assert not data["corrected"].any()
                np.testing.assert_array_equal(pose, data["keypoints_3d_uncorrected"])
    assert "lifted 40 frames" in capsys.readouterr().out


def test_cli_errors_are_one_line(tmp_path, capsys):
    cases = [
        (write_input(tmp_path / "k.npz", keypoints=np.zeros((3, 14, 2)), image_size=[10, 10]), "(T, 17, 2)"),
        (write_input(tmp_path / "n.npz", keypoints=np.full((3, 17, 2), np.nan), image_size=[10, 10]), "not finite"),
        (write_input(tmp_path / "z.npz", keypoints=np.zeros((0, 17, 2)), image_size=[10, 10]), "no frames"),
        (write_input(tmp_path / "s.npz", keypoints=np.zeros((3, 17, 2))), "image_size"),
    ]
    for path, text in cases:
        code, err = run_cli(["lift", "--input", str(path), "--output", str(tmp_path / "o.npz")], capsys)
        assert code == 2 and len(err) == 1 and err[0].startswith("posekit: error:")
        assert text in err[0] and path.name in err[0]
    valid = write_input(tmp_path / "v.npz", keypoints=np.zeros((3, 17, 2)), image_size=[10, 10])
    code, err = run_cli(["lift", "--input", str(valid), "--output", str(tmp_path / "o.npz"),
                         "--weights", str(tmp_path / "none.safetensors")], capsys)
    assert code == 2 and len(err) == 1 and "none.safetensors" in err[0]


def test_shipped_weights_give_plausible_poses(lifter, shared_mocap):
    assert DEFAULT_WEIGHTS.stat().st_size < 8e6
    model, settings = lifter
    pixels, truth = real_view(shared_mocap)
    result = lift_sequence(model, pixels, np.ones(pixels.shape[:2]), (1000, 1000), settings=settings)
    pose = result["keypoints_3d"]
    assert np.isfinite(pose).all()
    bones = bone_lengths_mm(pose)
    assert bones.min() > 30 and bones.max() < 600  # human bones: ~50 mm (neck) .. ~500 mm (thigh)
    true_bones = bone_lengths_mm(truth)
    assert abs(np.median(bones / true_bones) - 1) < 0.3
    root = SKELETON.index("pelvis")
    gt = truth - truth[:, root:root + 1]
    assert p_mpjpe(pose, gt) < 120.0  # a held-in walk of a real subject (a frozen zero pose scores ~300)
    # camera axes: y down, so the head is above (smaller y than) the ankles
    assert (pose[:, SKELETON.index("head"), 1] < pose[:, SKELETON.index("left_ankle"), 1]).all()


def test_projector_is_consistent_with_the_camera(lifter, shared_mocap):
    """Psi_P maps true 3D poses (camera frame) close to their true normalised projections, much closer
    than the same poses turned by 90 degrees about the camera's vertical axis."""
    model, _ = lifter
    root = SKELETON.index("pelvis")
    turn = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])
    for seed in (3, 5):
        pixels, truth = real_view(shared_mocap, frames=40, seed=seed)
        target = normalize_keypoints(pixels, np.ones(pixels.shape[:2]), (1000, 1000))[:, :34].reshape(-1, 17, 2)
        errors = []
        for pose in (truth, truth @ turn.T):
            gt = torch.tensor((pose - pose[:, root:root + 1]) / 1000.0, dtype=torch.float32)
            with torch.no_grad():
                projected = model.projector.project(gt.flatten(1)).reshape(-1, 17, 2).numpy()
            errors.append(np.linalg.norm(projected - target, axis=-1).mean())
        assert errors[0] < 0.15 and errors[0] < errors[1] / 2


def test_mirrored_input_is_the_input_of_the_mirrored_image():
    rng = np.random.default_rng(3)
    pixels = rng.uniform(100, 500, (4, 17, 2))
    scores = rng.uniform(0.2, 1.0, (4, 17))
    scores[1, 5] = 0.0
    width, height = 640, 480
    flip = [SKELETON.index(n.replace("left_", "@").replace("right_", "left_").replace("@", "right_"))
            for n in SKELETON.joints]  # swap sides by name
    mirrored = pixels[:, flip].copy()
    mirrored[..., 0] = (width - 1) - mirrored[..., 0]
    direct = torch.from_numpy(normalize_keypoints(pixels, scores, (width, height)))
    expected = normalize_keypoints(mirrored, scores[:, flip], (width, height))
    np.testing.assert_allclose(mirror_inputs(direct).numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(mirror_inputs(mirror_inputs(direct)).numpy(), direct.numpy())
    pose = rng.standard_normal((4, 17, 3))
    expected_pose = pose[:, flip] * np.array([-1.0, 1.0, 1.0])
    np.testing.assert_allclose(mirror_pose(pose), expected_pose)


def test_flip_test_averages_the_mirrored_sequence(lifter, shared_mocap):
    model, settings = lifter
    pixels, truth = real_view(shared_mocap, frames=40)
    scores = np.ones(pixels.shape[:2])
    flip = list(SKELETON.flip_indices)
    mirrored = pixels[:, flip].copy()
    mirrored[..., 0] = 999 - mirrored[..., 0]
    direct = lift_sequence(model, pixels, scores, (1000, 1000), correct=False, flip=False)["keypoints_3d"]
    other = lift_sequence(model, mirrored, scores, (1000, 1000), correct=False, flip=False)["keypoints_3d"]
    other = other[:, flip] * np.array([-1.0, 1.0, 1.0])
    both = lift_sequence(model, pixels, scores, (1000, 1000), correct=False)["keypoints_3d"]
    np.testing.assert_allclose(both, (direct + other) / 2, atol=1e-3)
    root = SKELETON.index("pelvis")
    gt = truth - truth[:, root:root + 1]
    assert mpjpe(both, gt) <= 0.5 * (mpjpe(direct, gt) + mpjpe(other, gt)) + 1e-6
