"""``posekit nrsfm``: fit-bases -> reconstruct round trip on small generated files, and one-line errors."""
import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from posekit.metrics.nrsfm import normalized_shape_error

from helpers import run_cli


def generated_shapes(frames, seed, points=17, k=5):
    """Shapes (mm) drawn from a fixed set of 5 prototype shapes with non-negative weights."""
    prototypes = np.random.default_rng(0).normal(size=(k, points, 3)) * 300
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.full(k, 0.5), size=frames)
    return np.einsum("fk,kpj->fpj", weights, prototypes) + rng.uniform(-500, 500, (frames, 1, 3))


@pytest.fixture
def files(tmp_path):
    np.savez(tmp_path / "a.npz", keypoints_3d=generated_shapes(120, 1))
    np.savez(tmp_path / "b.npz", keypoints_3d=generated_shapes(100, 2),
             joint_names=np.array([f"j{i}" for i in range(17)]))
    test = generated_shapes(20, 3)
    rotations = Rotation.random(20, random_state=4).as_matrix()
    camera = test @ np.swapaxes(rotations, 1, 2)
    keypoints = camera[..., :2].copy()
    keypoints[::4, 3] = np.nan
    np.savez(tmp_path / "seq2d.npz", keypoints=keypoints)
    return tmp_path, camera


@pytest.mark.parametrize("fit_method,methods", [("mcm-rr", ["mcm-rr", "cra-en"]),
                                                 ("cra", ["cra", "cra-sc"])])
def test_fit_bases_then_reconstruct(files, capsys, fit_method, methods):
    folder, camera = files
    bases = folder / f"bases_{fit_method}.npz"
    code, out, err = run_cli(["nrsfm", "fit-bases", "--train", str(folder / "a.npz"), str(folder / "b.npz"),
                          "--out", str(bases), "--method", fit_method, "--k", "12", "--json"], capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["k"], summary["joints"], summary["training_frames"]) == (12, 17, 220)
    assert summary["coding"] == ("elastic-net" if fit_method == "mcm-rr" else "sparse-coding")
    for method in methods:
        output = folder / f"out_{method}.npz"
        code, out, err = run_cli(["nrsfm", "reconstruct", "--bases", str(bases), "--input",
                              str(folder / "seq2d.npz"), "--output", str(output), "--method", method,
                              "--json"], capsys)
        assert code == 0, err
        assert json.loads(out)["frames"] == 20
        with np.load(output) as result:
            shapes = result["keypoints_3d"]
            assert shapes.shape == (20, 17, 3) and np.isfinite(shapes).all()
            assert result["rotations"].shape == (20, 3, 3)
            assert str(result["method"]) == method
            if fit_method == "mcm-rr":
                assert result["joint_names"].tolist() == [f"j{i}" for i in range(17)]
        truth = camera - camera.mean(axis=1, keepdims=True)
        # The shapes come from the training distribution, so the error is small (a wrong depth
        # for every point would give about 1).
        assert normalized_shape_error(shapes, truth)["mean"] < 0.15


def test_errors_are_one_line_with_exit_status_2(files, capsys):
    folder, _ = files
    bases = folder / "bases.npz"
    assert run_cli(["nrsfm", "fit-bases", "--train", str(folder / "a.npz"), "--out", str(bases),
                "--k", "8"], capsys)[0] == 0
    np.savez(folder / "fifteen.npz", keypoints=np.zeros((3, 15, 2)))
    np.savez(folder / "nan3d.npz", keypoints_3d=np.full((4, 17, 3), np.nan))
    np.savez(folder / "flat.npz", keypoints_3d=np.zeros((4, 16, 3)))
    cases = [
        (["reconstruct", "--bases", str(bases), "--input", str(folder / "fifteen.npz"),
          "--output", str(folder / "o.npz")], "15 joints but the bases"),
        (["reconstruct", "--bases", str(bases), "--input", str(folder / "absent.npz"),
          "--output", str(folder / "o.npz")], "no such file"),
        (["reconstruct", "--bases", str(bases), "--input", str(folder / "seq2d.npz"),
          "--output", str(folder / "o.npz"), "--method", "cra"], "needs sparse-coding bases"),
        (["reconstruct", "--bases", str(folder / "a.npz"), "--input", str(folder / "seq2d.npz"),
          "--output", str(folder / "o.npz")], "no array 'bases'"),
        (["fit-bases", "--train", str(folder / "nan3d.npz"), "--out", str(bases)], "NaN"),
        (["fit-bases", "--train", str(folder / "a.npz"), str(folder / "flat.npz"), "--out",
          str(bases)], "16 joints"),
        (["fit-bases", "--train", str(folder / "a.npz"), "--out", str(bases), "--method", "pca"],
         "--method must be one of"),
        (["fit-bases", "--train", str(folder / "a.npz"), "--out", str(bases), "--k", "500"],
         "k must be an integer"),
        (["benchmark", "--mocap", str(folder / "nowhere")], "no such folder"),
    ]
    for argv, message in cases:
        code, out, err = run_cli(["nrsfm"] + argv, capsys)
        assert code == 2, (argv, err)
        assert message in err and err.startswith("posekit: error:") and err.count("\n") == 1, err
