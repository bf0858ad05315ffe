"""The NRSfM replication: discovery of categories, leave-one-sequence-out folds, the camera protocol,
figures, and the quick run on the shared CMU motion capture."""
import json

import numpy as np
import pytest

from posekit.errors import PosekitError
from posekit.geometry.rotations import is_rotation_matrix
from posekit.nrsfm.benchmark import (benchmark_protocol, discover, load_sequence, make_folds,
                                     project_sequence, random_rotations, read_manifest,
                                     run_benchmark, write_plots)


def walking_like(frames, seed, phase=0.0):
    """A 17-point figure whose limbs swing periodically (mm), different per seed."""
    rng = np.random.default_rng(seed)
    rest = np.random.default_rng(0).normal(size=(17, 3)) * 250
    swing = np.random.default_rng(1).normal(size=(17, 3)) * 120
    t = np.linspace(0, 4 * np.pi, frames) + phase
    return rest + np.sin(t)[:, None, None] * swing + rng.normal(scale=5, size=(frames, 17, 3))


@pytest.fixture
def category_folder(tmp_path):
    for category, seeds in (("sway", (1, 2)), ("bend", (3, 4))):
        (tmp_path / category).mkdir()
        for seed in seeds:
            np.savez(tmp_path / category / f"s{seed}.npz",
                     keypoints_3d=walking_like(40, seed, phase=seed if category == "bend" else 0))
    return tmp_path


def test_folder_per_category_and_leave_one_sequence_out(category_folder):
    specs, joint_set = discover(category_folder)
    assert sorted({s.category for s in specs}) == ["bend", "sway"] and len(specs) == 4
    sequences = [load_sequence(s, joint_set) for s in specs]
    folds = make_folds(sequences, benchmark_protocol())
    assert len(folds) == 4
    for fold in folds:
        assert fold.split == "leave-one-sequence-out"
        # No test frame is among the training frames.
        train = {row.tobytes() for row in fold.train_points}
        assert not any(row.tobytes() in train for row in fold.test_points)
        others = sum(len(s.points) for s in sequences if s is not fold.test)
        assert len(fold.train_points) == others


def test_quick_run_reports_every_category_and_method(category_folder, tmp_path):
    summary, results, protocol = run_benchmark(category_folder, quick=True)
    assert set(summary) == {"bend", "sway"}
    for methods in summary.values():
        assert set(methods) == {"cra", "cra-en", "cra-sc", "mcm-rr"}
        for stats in methods.values():
            assert set(stats) == {"xi", "xi_std", "normalized"}
            assert np.isfinite(list(stats.values())).all() and stats["normalized"] < 1.0
    assert all(len(r.fold.test_points) <= protocol["max_test_frames"] for r in results)
    written = write_plots(results[:1], tmp_path / "figures")
    assert len(written) == 2
    assert all(p.stat().st_size > 1000 and p.read_bytes()[:4] == b"\x89PNG" for p in written)


def test_single_sequence_pool_is_split_in_time(tmp_path):
    (tmp_path / "solo").mkdir()
    np.savez(tmp_path / "solo" / "only.npz", keypoints_3d=walking_like(40, 5))
    specs, joint_set = discover(tmp_path)
    fold = make_folds([load_sequence(specs[0], joint_set)], benchmark_protocol())[0]
    assert fold.split.startswith("temporal")
    assert len(fold.train_points) == 20 and len(fold.test_points) == 20


def test_camera_protocol_is_an_orthographic_view_of_a_rotated_shape():
    rng = np.random.default_rng(0)
    rotations = random_rotations(2000, rng)
    assert is_rotation_matrix(rotations).all()
    # Uniform over SO(3): the rotated z axis is uniform on the sphere (mean 0, E[z^2] = 1/3).
    axis = rotations[:, :, 2]
    np.testing.assert_allclose(axis.mean(axis=0), 0, atol=0.05)
    np.testing.assert_allclose((axis ** 2).mean(axis=0), 1 / 3, atol=0.03)
    points = walking_like(5, 1)
    keypoints, camera, used = project_sequence(points, np.random.default_rng(1))
    np.testing.assert_allclose(camera, points @ np.swapaxes(used, 1, 2))
    np.testing.assert_array_equal(keypoints, camera[..., :2])


def test_manifest_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sequences: [{file: x.npz}]\n")
    with pytest.raises(PosekitError, match="'category'"):
        read_manifest(bad)
    bad.write_text("sequences: [{category: walk, file: x.npz, colour: red}]\n")
    with pytest.raises(PosekitError, match="unknown field"):
        read_manifest(bad)
    bad.write_text("[1, 2")
    with pytest.raises(PosekitError, match="not a readable YAML"):
        read_manifest(bad)
    with pytest.raises(PosekitError, match="no such manifest"):
        read_manifest(tmp_path / "absent.yaml")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PosekitError, match="no sequences found"):
        discover(tmp_path / "empty")
    np.savez(tmp_path / "p17.npz", keypoints_3d=walking_like(10, 1))
    np.savez(tmp_path / "p9.npz", keypoints_3d=walking_like(10, 2)[:, :9])
    bad.write_text("sequences: [{category: a, file: p17.npz, pool: x},\n"
                   "            {category: b, file: p9.npz, pool: x}]\n")
    specs, joint_set = read_manifest(bad)
    with pytest.raises(PosekitError, match="give them different pools"):
        make_folds([load_sequence(s, joint_set) for s in specs], benchmark_protocol())


def test_user_categories_join_the_shared_layout(tmp_path):
    """A new category needs no code: a sub-folder beside the shared layout, or a manifest."""
    mocap, elsewhere = tmp_path / "mocap", tmp_path / "elsewhere"
    (mocap / "cmu_bvh").mkdir(parents=True)
    (mocap / "sit").mkdir()
    elsewhere.mkdir()
    np.savez(mocap / "sit" / "143_18.npz", keypoints_3d=walking_like(30, 7))
    np.savez(elsewhere / "b.npz", keypoints_3d=walking_like(30, 8))
    manifest = elsewhere / "extra.yaml"
    manifest.write_text("sequences:\n  - {category: basketball, file: b.npz, paper_row: basketball}\n")
    specs, _ = discover(mocap, manifests=[manifest])
    categories = [s.category for s in specs]
    assert {"walk", "climb", "drink", "sit", "basketball"} <= set(categories)
    assert "cmu_bvh" not in categories
    extra = specs[categories.index("basketball")]
    assert extra.path == elsewhere / "b.npz" and extra.paper_row == "basketball"


def test_shared_layout_lists_the_cmu_and_akhter_categories(shared_mocap):
    specs, joint_set = discover(shared_mocap)
    assert joint_set == "h36m17"
    assert [s.category for s in specs if s.path.suffix == ".mat"] == ["drink", "pickup", "stretch",
                                                                       "yoga"]
    assert {"walk", "run", "jump", "climb", "box"} <= {s.category for s in specs}
    assert all(s.path.is_file() for s in specs)


@pytest.mark.slow
def test_quick_benchmark_on_cmu_motion_capture(shared_mocap, capsys):
    from posekit.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["nrsfm", "benchmark", "--mocap", str(shared_mocap), "--quick", "--json"])
    assert exit_info.value.code == 0
    summary = json.loads(capsys.readouterr().out)
    assert {"walk", "run", "jump", "climb", "box", "drink", "pickup", "stretch", "yoga"} <= set(summary)
    cmu = ("walk", "run", "jump", "climb", "box")
    mean = {m: np.mean([summary[c][m]["xi"] for c in cmu]) for m in ("cra", "mcm-rr")}
    assert mean["mcm-rr"] <= mean["cra"]
    for category in summary.values():
        assert all(np.isfinite(v["xi"]) and v["normalized"] < 1 for v in category.values())
