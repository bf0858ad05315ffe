"""ONNX export: ONNX Runtime reproduces PyTorch for HRNet and DITN at any batch size, the file
describes itself, and the ``export onnx`` command reads posekit and reference checkpoints."""
import json

import numpy as np
import pytest
import torch

from posekit.errors import PosekitError
from posekit.export.onnx import export_onnx
from posekit.models.ditn import DITN
from posekit.models.heatmap_backend import load_heatmap_model
from posekit.models.hrnet import PoseHRNet
from posekit.models.onnx_backend import OnnxPoseModel
from posekit.models.registry import build_model

from helpers import TINY, calibrate, run_cli


@pytest.fixture(scope="module")
def tiny_hrnet_onnx(tmp_path_factory):
    model = calibrate(PoseHRNet(TINY, 16), (128, 96))
    path = tmp_path_factory.mktemp("onnx") / "hrnet.onnx"
    return model, path, export_onnx(model, path, (128, 96))


def check_against_pytorch(model, path):
    runner = OnnxPoseModel(path)
    assert runner.input_size == (128, 96)
    assert isinstance(runner.session.get_inputs()[0].shape[0], str)  # dynamic batch axis
    rng = np.random.default_rng(1)
    for batch in (1, 5):
        images = rng.standard_normal((batch, 3, 128, 96)).astype(np.float32)
        got = runner(images)
        with torch.no_grad():
            expected = model(torch.from_numpy(images))
        assert got.keys() == expected.keys()
        for name, value in expected.items():
            assert got[name].shape == tuple(value.shape)
            assert 0.1 < np.abs(value.numpy()).max() < 50  # outputs of order one: 1e-4 means something
            np.testing.assert_allclose(got[name], value.numpy(), atol=1e-4, rtol=0)


def test_hrnet_onnx_matches_pytorch(tiny_hrnet_onnx):
    model, path, result = tiny_hrnet_onnx
    assert result["outputs"] == ["heatmaps"] and result["max_abs_diff"] < 1e-4
    check_against_pytorch(model, path)


def test_ditn_onnx_matches_pytorch(tmp_path):
    model = calibrate(DITN("mpii16", TINY), (128, 96))
    result = export_onnx(model, tmp_path / "ditn.onnx", (128, 96))
    assert result["outputs"] == ["heatmaps", "bone_heatmaps"] and result["max_abs_diff"] < 1e-4
    check_against_pytorch(model, tmp_path / "ditn.onnx")
    assert model.training is False


def test_backend_rejects_bad_input(tiny_hrnet_onnx, tmp_path):
    runner = OnnxPoseModel(tiny_hrnet_onnx[1])
    assert runner.output_names == ["heatmaps"] and runner.config is None and runner.sigma is None
    with pytest.raises(PosekitError, match="exported for 128x96"):
        runner(np.zeros((1, 3, 64, 48), np.float32))
    with pytest.raises(PosekitError, match=r"\(N, 3, H, W\)"):
        runner(np.zeros((3, 128, 96), np.float32))
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    with pytest.raises(PosekitError, match="bad.onnx"):
        OnnxPoseModel(tmp_path / "bad.onnx")
    with pytest.raises(PosekitError, match="no such"):
        OnnxPoseModel(tmp_path / "absent.onnx")


def test_export_command_with_a_training_checkpoint(tmp_path, capsys):
    from safetensors.torch import save_file

    model = calibrate(build_model({"name": "hrnet-w18-small", "skeleton": "mpii16"}), (64, 64))
    with torch.no_grad():  # heatmap-sized outputs, as a trained model gives
        model.final_layer.weight.mul_(0.01)
    config = {"model": {"name": "hrnet-w18-small", "options": {}}, "data": {"skeleton": "mpii16"},
              "codec": {"input_size": [64, 64], "heatmap_size": [16, 16], "sigma": 1.5}}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "best.safetensors"),
              metadata={"config": json.dumps(config)})
    out = tmp_path / "pose.onnx"
    code, stdout, _ = run_cli(["export", "onnx", "--checkpoint", str(tmp_path / "best.safetensors"),
                           "--out", str(out), "--json"], capsys)
    assert code == 0
    result = json.loads(stdout)
    assert result["input"] == [64, 64] and result["max_abs_diff"] < 1e-4
    runner = OnnxPoseModel(out)
    assert runner.skeleton == "mpii16" and runner.config["name"] == "hrnet-w18-small"
    assert runner.sigma == 1.5 and load_heatmap_model(checkpoint=out).sigma == 1.5  # DARK's blur width
    images = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(images))["heatmaps"].numpy()
    np.testing.assert_allclose(runner(images)["heatmaps"], expected, atol=1e-4, rtol=0)
    # The same weights named as another model: a one-line error, exit status 2.
    code, _, err = run_cli(["export", "onnx", "--checkpoint", str(tmp_path / "best.safetensors"),
                        "--out", str(out), "--model", "hrnet-w32"], capsys)
    assert code == 2 and "best.safetensors" in err and len(err.strip().splitlines()) == 1
    # A plain state dict: the model is named, its keypoint set read off the head (16 joints: MPII).
    torch.save({"state_dict": model.state_dict()}, tmp_path / "plain.pth")
    code, stdout, _ = run_cli(["export", "onnx", "--checkpoint", str(tmp_path / "plain.pth"), "--out", str(out),
                           "--model", "hrnet-w18-small", "--input", "64x64", "--json"], capsys)
    assert code == 0 and json.loads(stdout)["max_abs_diff"] < 1e-4
    assert OnnxPoseModel(out).skeleton == "mpii16" and OnnxPoseModel(out).sigma == 2.0  # HRNet's default
    code, _, err = run_cli(["export", "onnx", "--checkpoint", str(tmp_path / "plain.pth"), "--out", str(out),
                        "--model", "hrnet-w18-small", "--skeleton", "coco17"], capsys)
    assert code == 2 and "do not fit" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(["export", "onnx", "--checkpoint", str(tmp_path / "plain.pth"), "--out", str(out)],
                       capsys)
    assert code == 2 and "--model" in err
