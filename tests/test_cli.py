"""The command line: contracts other tools rely on, and one-line errors for user mistakes."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from posekit import __version__

from helpers import pycocotools_stats, run_cli


def noisy_results(gt_path: Path, seed=0):
    data = json.loads(gt_path.read_text())
    rng = np.random.default_rng(seed)
    results = []
    for ann in data["annotations"]:
        if ann["num_keypoints"] == 0:
            continue
        kp = np.array(ann["keypoints"], float).reshape(-1, 3)
        kp[:, :2] += rng.normal(scale=6.0, size=(len(kp), 2))
        kp[:, 2] = rng.uniform(0.2, 1.0, len(kp))
        results.append({"image_id": ann["image_id"], "category_id": 1, "score": float(rng.uniform()),
                        "keypoints": kp.ravel().tolist()})
    return results


def test_version(capsys):
    code, out, _ = run_cli(["--version"], capsys)
    assert code == 0 and out.strip() == f"posekit {__version__}"


def test_eval_coco_json_equals_pycocotools(tmp_path, test_data, capsys):
    gt = test_data / "coco" / "test_coco.json"
    results = noisy_results(gt)
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(results))
    code, out, err = run_cli(["eval", "coco", "--gt", str(gt), "--pred", str(pred), "--json"], capsys)
    assert code == 0, err
    stats = json.loads(out)
    assert list(stats) == ["AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"]
    np.testing.assert_allclose(list(stats.values()), pycocotools_stats(gt, results), atol=1e-9, rtol=0)
    assert 0 < stats["AP"] < 1


def test_eval_coco_reports_minus_one_for_empty_area_range(tmp_path, test_data, capsys):
    data = json.loads((test_data / "coco" / "test_coco.json").read_text())
    data["annotations"] = [a for a in data["annotations"] if a["area"] > 96 ** 2]  # large persons only
    gt = tmp_path / "gt_large.json"
    gt.write_text(json.dumps(data))
    results = noisy_results(gt, seed=1)
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(results))
    code, out, _ = run_cli(["eval", "coco", "--gt", str(gt), "--pred", str(pred), "--json"], capsys)
    stats = json.loads(out)
    assert code == 0 and stats["APm"] == -1 and stats["ARm"] == -1
    np.testing.assert_allclose(list(stats.values()), pycocotools_stats(gt, results), atol=1e-9, rtol=0)


def test_eval_coco_custom_sigmas_change_the_score(tmp_path, test_data, capsys):
    gt = test_data / "coco" / "test_coco.json"
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(noisy_results(gt)))
    sigmas = tmp_path / "sigmas.json"
    sigmas.write_text(json.dumps([0.2] * 17))
    _, default_out, _ = run_cli(["eval", "coco", "--gt", str(gt), "--pred", str(pred), "--json"], capsys)
    code, wide_out, _ = run_cli(["eval", "coco", "--gt", str(gt), "--pred", str(pred), "--sigmas", str(sigmas),
                             "--json"], capsys)
    assert code == 0 and json.loads(wide_out)["AP"] > json.loads(default_out)["AP"]
    sigmas.write_text(json.dumps([0.2] * 5))
    code, _, err = run_cli(["eval", "coco", "--gt", str(gt), "--pred", str(pred), "--sigmas", str(sigmas)], capsys)
    assert code == 2 and "5 sigmas for 17 keypoints" in err


def test_eval_coco_empty_predictions_score_zero(tmp_path, test_data, capsys):
    pred = tmp_path / "empty.json"
    pred.write_text("[]")
    code, out, err = run_cli(["eval", "coco", "--gt", str(test_data / "coco" / "test_coco.json"),
                          "--pred", str(pred), "--json"], capsys)
    assert code == 0, err
    stats = json.loads(out)
    assert stats["AP"] == 0 and stats["AR"] == 0


def _bad_prediction_files(tmp_path, test_data):
    gt = json.loads((test_data / "coco" / "test_coco.json").read_text())
    good = {"image_id": gt["images"][0]["id"], "category_id": 1, "score": 0.9, "keypoints": [1.0] * 51}
    cases = {
        "missing": (None, "no such file"),
        "malformed": ("{not json", "JSON"),
        "short": ([dict(good, keypoints=[1.0] * 50)], "keypoints"),
        "nan": ([dict(good, keypoints=[float("nan")] * 51)], "NaN"),
        "image": ([dict(good, image_id=987654321)], "987654321"),
    }
    files = {}
    for name, (content, message) in cases.items():
        path = tmp_path / f"{name}.json"
        if content is not None:
            path.write_text(content if isinstance(content, str) else json.dumps(content).replace("NaN", "NaN"))
        files[name] = (path, message)
    return files


def test_eval_coco_bad_input_is_one_clear_line(tmp_path, test_data, capsys):
    gt = test_data / "coco" / "test_coco.json"
    for name, (path, message) in _bad_prediction_files(tmp_path, test_data).items():
        code, out, err = run_cli(["eval", "coco", "--gt", str(gt), "--pred", str(path), "--json"], capsys)
        assert code == 2, name
        assert out == "" and "Traceback" not in err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("posekit: error:"), (name, err)
        assert message.lower() in lines[0].lower(), (name, lines[0])
        assert str(path.name) in lines[0] or name == "image", (name, lines[0])


def test_console_script_exit_code_and_no_traceback(tmp_path):
    exe = shutil.which("posekit", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    assert exe, "the posekit console script is not installed"
    proc = subprocess.run([exe, "eval", "coco", "--gt", str(tmp_path / "nope.json"), "--pred", "x.json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [f"posekit: error: {tmp_path / 'nope.json'}: no such file"]


def test_eval_pose3d(tmp_path, capsys):
    rng = np.random.default_rng(0)
    gt = rng.normal(scale=200, size=(10, 17, 3))
    pred = gt + np.array([3.0, 4.0, 0.0])  # every joint off by exactly 5 units
    np.savez(tmp_path / "gt.npz", keypoints_3d=gt)
    np.savez(tmp_path / "pred.npz", keypoints_3d=pred)
    code, out, err = run_cli(["eval", "pose3d", "--gt", str(tmp_path / "gt.npz"), "--pred", str(tmp_path / "pred.npz"),
                          "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert set(result) == {"mpjpe", "p_mpjpe", "n_mpjpe", "mpjve"}
    assert result["mpjpe"] == pytest.approx(5.0) and result["mpjve"] == pytest.approx(0.0, abs=1e-9)
    assert result["p_mpjpe"] == pytest.approx(0.0, abs=1e-9)
    np.savez(tmp_path / "bad.npz", keypoints_3d=pred[:, :16])
    code, _, err = run_cli(["eval", "pose3d", "--gt", str(tmp_path / "gt.npz"), "--pred", str(tmp_path / "bad.npz")],
                       capsys)
    assert code == 2 and "bad.npz" in err and "shape" in err
    np.savez(tmp_path / "nokey.npz", poses=pred)
    code, _, err = run_cli(["eval", "pose3d", "--gt", str(tmp_path / "gt.npz"), "--pred", str(tmp_path / "nokey.npz")],
                       capsys)
    assert code == 2 and "keypoints_3d" in err


def test_eval_pckh_perfect_and_shifted(tmp_path, test_data, capsys):
    gt_path = test_data / "mpii" / "test_mpii.json"
    entries = json.loads(gt_path.read_text())
    perfect = tmp_path / "perfect.json"
    perfect.write_text(json.dumps([{"image": e["image"], "joints": e["joints"]} for e in entries]))
    with pytest.warns(UserWarning, match="head"):
        code, out, err = run_cli(["eval", "pckh", "--gt", str(gt_path), "--pred", str(perfect), "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["Mean"] == pytest.approx(100.0)
    far = tmp_path / "far.json"
    far.write_text(json.dumps([{"joints": (np.array(e["joints"]) + 500.0).tolist()} for e in entries]))
    with pytest.warns(UserWarning):
        code, out, _ = run_cli(["eval", "pckh", "--gt", str(gt_path), "--pred", str(far), "--json"], capsys)
    assert code == 0 and json.loads(out)["Mean"] == pytest.approx(0.0)
    short = tmp_path / "short.json"
    short.write_text(json.dumps([{"joints": e["joints"]} for e in entries[:-1]]))
    with pytest.warns(UserWarning):
        code, _, err = run_cli(["eval", "pckh", "--gt", str(gt_path), "--pred", str(short)], capsys)
    assert code == 2 and "short.json" in err


def test_eval_posetrack_ground_truth_scores_100(tmp_path, test_data, capsys):
    # The real sample has one labelled frame; repeat it as a 4-frame clip so tracking is scored too.
    seq = json.loads((test_data / "posetrack18" / "012834_mpii_test.json").read_text())
    image, anns = seq["images"][0], seq["annotations"]
    seq["images"] = [dict(image, id=image["id"] + f, frame_id=image["frame_id"] + f) for f in range(4)]
    seq["annotations"] = [dict(a, id=a["id"] * 10 + f, image_id=a["image_id"] + f) for f in range(4) for a in anns]
    gt_dir = tmp_path / "gt"
    gt_dir.mkdir()
    (gt_dir / "012834_mpii_test.json").write_text(json.dumps(seq))
    code, out, err = run_cli(["eval", "posetrack", "--gt", str(gt_dir), "--pred", str(gt_dir), "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["mAP"] == pytest.approx(100.0) and result["MOTA"] == pytest.approx(100.0)
    other = tmp_path / "pred"
    other.mkdir()
    code, _, err = run_cli(["eval", "posetrack", "--gt", str(gt_dir), "--pred", str(other)], capsys)
    assert code == 2 and "no .json sequence files" in err
    (other / "000001_other.json").write_text(json.dumps(seq))
    code, _, err = run_cli(["eval", "posetrack", "--gt", str(gt_dir), "--pred", str(other)], capsys)
    assert code == 2 and "012834_mpii_test" in err


def test_demo_writes_files_and_scores(tmp_path, capsys):
    from posekit.io.images import load_image
    from posekit.io.results import read_pose_result

    code, out, err = run_cli(["demo", "--out", str(tmp_path)], capsys)
    assert code == 0, err
    stems = sorted(p.stem for p in (tmp_path / "images").glob("*.json"))
    assert len(stems) == 3 and all((tmp_path / "images" / f"{s}.png").exists() for s in stems)
    persons = 0
    for stem in stems:
        result = read_pose_result(tmp_path / "images" / f"{stem}.json")
        assert load_image(tmp_path / "images" / f"{stem}.png").shape[:2] == result.image_size[::-1]
        persons += len(result)
    assert persons >= 9                                     # measured 10 (11 annotated persons)
    page = (tmp_path / "report.html").read_text()
    assert all(f"images/{s}.png" in page for s in stems)
    assert "COCO keypoint AP" in out and str(tmp_path / "report.html") in out
    stats = json.loads((tmp_path / "coco_eval.json").read_text())
    assert 0.35 < stats["AP"] < 1.0                         # measured 0.48
    np.testing.assert_allclose(list(stats.values()),
                               pycocotools_stats(tmp_path / "coco_gt.json",
                                                 json.loads((tmp_path / "coco_results.json").read_text())),
                               atol=1e-9, rtol=0)
