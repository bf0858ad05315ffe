"""``posekit infer``: folders of photos to JSON + overlays, COCO annotation files to COCO results,
one line per bad input and documented exit codes."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import posekit
from posekit.io.images import load_image
from posekit.io.results import read_pose_result

from helpers import pycocotools_stats, run_cli

ANNOTATIONS = Path(posekit.__file__).parent / "assets" / "coco_val_sample.json"
TEST_IMAGES = ("000000000785.jpg", "000000196141.jpg")


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("posekit: error:")]


@pytest.fixture
def photos(tmp_path, test_data):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in TEST_IMAGES:
        shutil.copy(test_data / "images" / name, folder / name)
    return folder


@pytest.fixture
def sample_gt(tmp_path):
    """The COCO sample's annotations, restricted to the two images in tests/data/images."""
    data = json.loads(ANNOTATIONS.read_text())
    ids = {im["id"] for im in data["images"] if im["file_name"] in TEST_IMAGES}
    data["images"] = [im for im in data["images"] if im["id"] in ids]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in ids]
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(data))
    return path


def test_folder_with_a_bad_file(photos, tmp_path, capsys):
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (photos / "notes.txt").write_text("ignored: not an image extension")
    out = tmp_path / "out"
    code, stdout, err = run_cli(["infer", str(photos), "--out", str(out), "--report"], capsys)
    assert code == 1 and "Traceback" not in err
    lines = error_lines(err)
    assert len(lines) == 1 and "broken.jpg" in lines[0]
    assert sorted(p.name for p in out.iterdir()) == ["000000000785.json", "000000000785.png", "000000196141.json",
                                                    "000000196141.png", "report.html"]
    assert stdout.startswith("posekit infer: 2 images, ") and "1 failed" in stdout
    for name in TEST_IMAGES:
        stem = Path(name).stem
        result = read_pose_result(out / f"{stem}.json")
        assert result.source == str(photos / name) and result.skeleton.name == "coco17" and len(result) >= 1
        overlay, original = load_image(out / f"{stem}.png"), load_image(photos / name)
        assert overlay.shape == original.shape and np.any(overlay != original)
        assert tuple(result.image_size) == (original.shape[1], original.shape[0])
    assert "broken.jpg" in (out / "report.html").read_text()


def test_single_image_options_and_success_code(test_data, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, err = run_cli(["infer", str(test_data / "images" / TEST_IMAGES[0]), "--out", str(out),
                             "--skeleton", "blazepose33", "--no-overlay", "--tiles", "none"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["000000000785.json"]
    result = read_pose_result(out / "000000000785.json")
    assert result.skeleton.name == "blazepose33" and result.keypoints().shape == (1, 33, 2)
    assert stdout.strip().startswith("posekit infer: 1 image, 1 person -> ")


@pytest.mark.parametrize("args, message", [
    (["{empty}"], "folder holds no image files"),
    (["{photos}", "--tiles", "many"], "--tiles"),
    (["{photos}", "--skeleton", "mpii16"], "no mapping"),
    (["{photos}", "--img-dir", "{photos}"], "--coco-ann"),
    (["{photos}", "--coco-ann", "{gt}", "--img-dir", "{photos}"], "not both"),
    (["--coco-ann", "{gt}"], "--img-dir"),
    (["--coco-ann", "{photos}/missing.json", "--img-dir", "{photos}"], "no such file"),
    (["--coco-ann", "{gt}", "--img-dir", "{photos}", "--boxes", "{photos}/nope.json"], "nope.json: no such file"),
    (["--coco-ann", "{gt}", "--img-dir", "{photos}", "--boxes", "{bad_dets}"], "bad_dets.json: detection 1: 'bbox'"),
    (["--coco-ann", "{gt}", "--img-dir", "{photos}", "--boxes", "{other_dets}"], "image_id 5"),
])
def test_usage_errors_are_one_line_and_exit_2(args, message, photos, sample_gt, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad_dets.json").write_text(json.dumps([{"image_id": 785, "bbox": [1, 2, 3, 4], "score": 0.9},
                                                        {"image_id": 785, "bbox": [1, 2], "score": 0.9}]))
    (tmp_path / "other_dets.json").write_text(json.dumps([{"image_id": 5, "bbox": [1, 2, 3, 4], "score": 0.9}]))
    values = {"empty": tmp_path / "empty", "photos": photos, "gt": sample_gt, "bad_dets": tmp_path / "bad_dets.json",
              "other_dets": tmp_path / "other_dets.json"}
    argv = ["infer"] + [a.format(**values) for a in args] + ["--out", str(tmp_path / "out.json")]
    code, stdout, err = run_cli(argv, capsys)
    assert code == 2 and "Traceback" not in err, err
    assert err.strip().splitlines() == error_lines(err) and len(error_lines(err)) == 1
    assert message in err


def test_output_folder_that_is_a_file(photos, tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("a file")
    code, stdout, err = run_cli(["infer", str(photos), "--out", str(taken)], capsys)
    assert code == 2 and error_lines(err) == [f"posekit: error: {taken}: exists and is not a folder"]


def test_missing_image_is_reported_and_skipped(photos, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, err = run_cli(["infer", str(photos / "missing.jpg"), str(photos / TEST_IMAGES[0]), "--out", str(out),
                             "--no-overlay"], capsys)
    assert code == 1 and error_lines(err) == [f"posekit: error: {photos / 'missing.jpg'}: no such file"]
    assert (out / "000000000785.json").exists()


def test_coco_mode_with_ground_truth_boxes_scores_with_pycocotools(photos, sample_gt, tmp_path, capsys):
    pred = tmp_path / "pred.json"
    code, stdout, err = run_cli(["infer", "--coco-ann", str(sample_gt), "--img-dir", str(photos), "--boxes", "gt",
                             "--out", str(pred)], capsys)
    assert code == 0, err
    assert "2 of 2 images, 6 persons" in stdout       # every non-crowd box, labelled or not
    results = json.loads(pred.read_text())
    assert {r["image_id"] for r in results} == {785, 196141} and all(len(r["keypoints"]) == 51 for r in results)
    stats = pycocotools_stats(sample_gt, results)
    assert stats[0] > 0.6                      # measured AP 0.76 (AP50 1.0) on these 5 persons
    code, stdout, err = run_cli(["eval", "coco", "--gt", str(sample_gt), "--pred", str(pred), "--json"], capsys)
    assert code == 0 and json.loads(stdout)["AP"] == pytest.approx(stats[0], abs=1e-9)


def test_coco_mode_with_a_detection_file_and_with_the_detector(photos, sample_gt, tmp_path, capsys):
    gt = json.loads(sample_gt.read_text())
    detections = [{"image_id": a["image_id"], "bbox": a["bbox"], "score": 0.95, "category_id": 1}
                  for a in gt["annotations"] if a["num_keypoints"] >= 10]
    detections += [{"image_id": 785, "bbox": [0, 0, 50, 50], "score": 0.1, "category_id": 1},   # below --box-thr
                   {"image_id": 785, "bbox": [0, 0, 50, 50], "score": 0.99, "category_id": 3}]  # not a person
    det_path = tmp_path / "dets.json"
    det_path.write_text(json.dumps(detections))
    pred = tmp_path / "pred.json"
    code, stdout, err = run_cli(["infer", "--coco-ann", str(sample_gt), "--img-dir", str(photos), "--boxes",
                             str(det_path), "--out", str(pred)], capsys)
    assert code == 0, err
    results = json.loads(pred.read_text())
    assert len(results) == 5 and pycocotools_stats(sample_gt, results)[0] > 0.6
    code, stdout, err = run_cli(["infer", "--coco-ann", str(sample_gt), "--img-dir", str(photos), "--out", str(pred)],
                            capsys)
    assert code == 0, err
    assert pycocotools_stats(sample_gt, json.loads(pred.read_text()))[0] > 0.4   # measured 0.58 (4 of 5 found)


def test_coco_mode_missing_image_is_reported(photos, sample_gt, tmp_path, capsys):
    (photos / TEST_IMAGES[1]).unlink()
    pred = tmp_path / "pred.json"
    code, stdout, err = run_cli(["infer", "--coco-ann", str(sample_gt), "--img-dir", str(photos), "--boxes", "gt",
                             "--out", str(pred)], capsys)
    assert code == 1 and len(error_lines(err)) == 1 and TEST_IMAGES[1] in error_lines(err)[0]
    assert {r["image_id"] for r in json.loads(pred.read_text())} == {785}


def test_console_script_prints_only_posekit_lines(photos, tmp_path):
    """Native libraries (libpng, LiteRT) print to descriptor 2; the command keeps stderr to its own lines."""
    import os
    import subprocess
    import sys

    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    # A 40 x 40 RGB PNG whose pixel data stops after 100 bytes: libpng prints "Not enough image data".
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 40, 40, 8, 2, 0, 0, 0))
    png = b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(bytes(100))) + chunk(b"IEND", b"")
    (photos / "cut.png").write_bytes(png)
    exe = shutil.which("posekit", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    proc = subprocess.run([exe, "infer", str(photos), "--out", str(tmp_path / "out"), "--no-overlay"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"posekit: error: {photos / 'cut.png'}: not a readable image "
                                                f"(unknown format, or a corrupt or truncated file)"]
    assert proc.stdout.startswith("posekit infer: 2 images, ")
