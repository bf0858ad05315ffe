"""HRNet: the reference checkpoint layout, MMPose conversion, sizes and FLOPs against the papers,
checkpoint reading, and the model-info command."""
import re
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F

from posekit.errors import PosekitError
from posekit.models.flops import count_macs, count_params, gflops, module_costs
from posekit.models.hrnet import PoseHRNet, backbone_state, convert_mmpose_hrnet, to_mmpose_hrnet
from posekit.models.registry import build_model, load_weights, parse_size, read_state_dict

from helpers import run_cli

# Names and shapes of pose_hrnet_w32_256x192.pth as built by the reference lib/models/pose_hrnet.py
# with experiments/coco/hrnet/w32_256x192_adam_lr1e-3.yaml (17 joints, FINAL_CONV_KERNEL 1).
OFFICIAL_W32 = {
    "conv1.weight": (64, 3, 3, 3),
    "bn1.running_var": (64,),
    "bn1.num_batches_tracked": (),
    "conv2.weight": (64, 64, 3, 3),
    "bn2.bias": (64,),
    "layer1.0.conv1.weight": (64, 64, 1, 1),
    "layer1.0.conv2.weight": (64, 64, 3, 3),
    "layer1.0.conv3.weight": (256, 64, 1, 1),
    "layer1.0.bn3.weight": (256,),
    "layer1.0.downsample.0.weight": (256, 64, 1, 1),
    "layer1.0.downsample.1.running_mean": (256,),
    "layer1.3.conv1.weight": (64, 256, 1, 1),
    "transition1.0.0.weight": (32, 256, 3, 3),
    "transition1.0.1.weight": (32,),
    "transition1.1.0.0.weight": (64, 256, 3, 3),
    "transition1.1.0.1.running_var": (64,),
    "stage2.0.branches.0.0.conv1.weight": (32, 32, 3, 3),
    "stage2.0.branches.1.3.bn2.weight": (64,),
    "stage2.0.fuse_layers.0.1.0.weight": (32, 64, 1, 1),
    "stage2.0.fuse_layers.0.1.1.running_mean": (32,),
    "stage2.0.fuse_layers.1.0.0.0.weight": (64, 32, 3, 3),
    "stage2.0.fuse_layers.1.0.0.1.weight": (64,),
    "transition2.2.0.0.weight": (128, 64, 3, 3),
    "stage3.0.fuse_layers.0.2.0.weight": (32, 128, 1, 1),
    "stage3.0.fuse_layers.2.0.0.0.weight": (32, 32, 3, 3),
    "stage3.0.fuse_layers.2.0.1.0.weight": (128, 32, 3, 3),
    "stage3.3.fuse_layers.2.1.0.0.weight": (128, 64, 3, 3),
    "stage3.3.branches.2.3.conv2.weight": (128, 128, 3, 3),
    "transition3.3.0.0.weight": (256, 128, 3, 3),
    "stage4.0.fuse_layers.3.0.1.0.weight": (32, 32, 3, 3),
    "stage4.0.fuse_layers.3.0.2.0.weight": (256, 32, 3, 3),
    "stage4.2.branches.3.3.conv2.weight": (256, 256, 3, 3),
    "stage4.2.fuse_layers.0.3.0.weight": (32, 256, 1, 1),
    "stage4.2.fuse_layers.0.3.1.num_batches_tracked": (),
    "final_layer.weight": (17, 32, 1, 1),
    "final_layer.bias": (17,),
}
# Modules the reference leaves out (None entries, equal-width transitions, the last module's
# single-output fusion, bias-free convs).
OFFICIAL_ABSENT = ["transition2.0.0.weight", "transition3.1.0.weight", "stage2.0.fuse_layers.0.0.0.weight",
                   "stage4.2.fuse_layers.1.0.0.0.weight", "layer1.1.downsample.0.weight", "conv1.bias",
                   "stage2.0.branches.0.0.conv1.bias"]


@pytest.fixture(scope="module")
def w32():
    return PoseHRNet("w32", 17)


def test_reference_layout_names_and_shapes(w32):
    state = w32.state_dict()
    for key, shape in OFFICIAL_W32.items():
        assert key in state, key
        assert tuple(state[key].shape) == shape, key
    for key in OFFICIAL_ABSENT:
        assert key not in state, key
    assert {k.split(".")[0] for k in state} == {"conv1", "bn1", "conv2", "bn2", "layer1", "transition1", "stage2",
                                                "transition2", "stage3", "transition3", "stage4", "final_layer"}
    # Basic blocks: stage2 1 module x 2 branches x 4, stage3 4 x 3 x 4, stage4 3 x 4 x 4.
    blocks = {k for k in state if re.fullmatch(r"stage\d\.\d+\.branches\.\d+\.\d+\.conv1\.weight", k)}
    assert len(blocks) == 8 + 48 + 48
    # Fusion paths (i != j): stage2 2, stage3 4 modules x 6, stage4 2 x 12 + 3 (last: output 0 only).
    paths = {m.group(1) for k in state if (m := re.match(r"(stage\d\.\d+\.fuse_layers\.\d+\.\d+)\.", k))}
    assert len(paths) == 2 + 24 + 27


def test_sizes_and_gflops_match_the_papers(w32):
    # HRNet paper / DITN Table 3: W32 28.5 M and 7.10 GFLOPs at 256x192; W48 63.6 M and 14.6.
    assert count_params(w32) == pytest.approx(28.5e6, rel=0.02)
    assert gflops(w32, (256, 192)) == pytest.approx(7.10, rel=0.02)
    with torch.device("meta"):  # sizes only: no memory, no initialisation
        w48 = PoseHRNet("w48", 17)
    assert count_params(w48) == pytest.approx(63.6e6, rel=0.02)
    assert gflops(w48, (256, 192)) == pytest.approx(14.6, rel=0.02)


def test_strict_reload_of_a_saved_reference_checkpoint(w32, tmp_path):
    path = tmp_path / "pose_hrnet_w32_256x192.pth"
    torch.save(w32.state_dict(), path)
    fresh = PoseHRNet("w32", 17)
    fresh.load_state_dict(torch.load(path, weights_only=True), strict=True)
    reloaded = fresh.state_dict()
    assert all(torch.equal(value, reloaded[key]) for key, value in w32.state_dict().items())
    # Files written before BN counted its batches carry no num_batches_tracked: nothing is missing.
    old = OrderedDict((k, v) for k, v in w32.state_dict().items() if not k.endswith("num_batches_tracked"))
    report = load_weights(fresh, old)
    assert report == {"missing_keys": [], "unexpected_keys": []}


def test_mmpose_conversion_round_trips(w32):
    state = w32.state_dict()
    for head in ("keypoint_head", "head"):
        mm = to_mmpose_hrnet(state, head=head)
        assert f"{head}.final_layer.weight" in mm
        assert "backbone.stage2.0.fuse_layers.1.0.0.0.weight" in mm
        back = convert_mmpose_hrnet(mm)
        assert back.keys() == state.keys()
        assert all(back[k] is state[k] for k in state)
    report = load_weights(w32, to_mmpose_hrnet(state))
    assert report == {"missing_keys": [], "unexpected_keys": []}
    with pytest.raises(PosekitError, match="keypoint_head.deconv_layers"):
        convert_mmpose_hrnet({"keypoint_head.deconv_layers.0.weight": torch.zeros(1)})


def test_backbone_state_keeps_only_the_backbone(w32):
    state = dict(w32.state_dict())
    state["classifier.weight"] = torch.zeros(1000, 2048)  # an ImageNet HRNet's head
    kept = backbone_state(state)
    assert "final_layer.weight" not in kept and "classifier.weight" not in kept
    assert len(kept) == len(w32.state_dict()) - 2
    assert backbone_state(to_mmpose_hrnet(w32.state_dict())).keys() == kept.keys()


def test_mac_counter_on_layers_counted_by_hand():
    # conv: Cout * Cin/groups * kh * kw per output pixel; linear: in * out per row.
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.BatchNorm2d(8),
                              torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 5, padding=2, groups=8),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 4))
    expected = 8 * 3 * 9 * 16 * 12 + 8 * 1 * 25 * 16 * 12 + 8 * 4
    assert count_macs(net, (32, 24)) == expected
    assert count_macs(net, (32, 24), batch=3) == 3 * expected
    costs = module_costs(net, (32, 24))
    assert costs["0"] == (8 * 3 * 9 + 8, 8 * 3 * 9 * 16 * 12)
    assert costs["6"] == (8 * 4 + 4, 32)


def test_small_backbone_runs_at_stride_4():
    model = build_model({"name": "hrnet-w18-small", "skeleton": "mpii16"}).eval()
    with torch.no_grad():
        out = model(torch.zeros(2, 3, 128, 96))
    assert out["heatmaps"].shape == (2, 16, 32, 24)
    assert count_params(model) < 4.5e6


def test_read_state_dict_layouts(tmp_path):
    state = {"a.weight": torch.ones(2), "b.bias": torch.zeros(3)}
    torch.save(state, tmp_path / "plain.pth")
    torch.save(state, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)  # torch < 1.6 files
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, tmp_path / "hrnet.pth")
    torch.save({"model": state, "config": {"model": {"name": "ditn-w32"}}}, tmp_path / "last.pt")
    from safetensors.torch import save_file

    save_file(state, str(tmp_path / "best.safetensors"), metadata={"config": '{"model": {"name": "x"}}'})
    for name in ("plain.pth", "legacy.pth", "hrnet.pth", "last.pt", "best.safetensors"):
        weights, _ = read_state_dict(tmp_path / name)
        assert weights.keys() == state.keys(), name
    assert read_state_dict(tmp_path / "hrnet.pth")[1] == {"epoch": 3}
    assert read_state_dict(tmp_path / "best.safetensors")[1] == {"config": {"model": {"name": "x"}}}


def test_read_state_dict_refuses_bad_files(tmp_path):
    (tmp_path / "text.pth").write_text("not a checkpoint")
    torch.save({"w": torch.ones(1), "note": "text"}, tmp_path / "mixed.pth")
    torch.save(F.relu, tmp_path / "code.pth")  # a pickled function: never unpickled
    for name in ("text.pth", "mixed.pth", "code.pth", "absent.pth"):
        with pytest.raises(PosekitError, match=name):
            read_state_dict(tmp_path / name)


def test_load_weights_rejects_another_keypoint_set():
    with torch.device("meta"):
        state, model = PoseHRNet("w32", 16).state_dict(), PoseHRNet("w32", 17)
    with pytest.raises(PosekitError, match=r"final_layer.weight has shape \(16, 32, 1, 1\)"):
        load_weights(model, state)


def test_build_model_errors():
    with pytest.raises(PosekitError, match="unknown model 'hrnet-w31'"):
        build_model("hrnet-w31")
    with pytest.raises(PosekitError, match="unknown option"):
        build_model({"name": "hrnet-w32", "width": 3})
    with pytest.raises(PosekitError, match="HEIGHTxWIDTH"):
        parse_size("256 by 192")
    assert parse_size("256x192") == (256, 192)


def test_model_info_command(tmp_path, capsys):
    import json

    code, out, _ = run_cli(["model-info", "hrnet-w18-small", "--input", "128x96", "--json"], capsys)
    assert code == 0
    info = json.loads(out)
    model = build_model("hrnet-w18-small")
    assert info["params"] == count_params(model) and info["input"] == [128, 96]
    assert info["gflops"] == pytest.approx(count_macs(model, (128, 96)) / 2 ** 30, abs=1e-4)
    state = model.state_dict()
    state.pop("final_layer.bias")
    state["extra.weight"] = torch.zeros(1)
    torch.save({"state_dict": state}, tmp_path / "ckpt.pth")
    code, out, _ = run_cli(["model-info", "hrnet-w18-small", "--checkpoint", str(tmp_path / "ckpt.pth"), "--json"], capsys)
    info = json.loads(out)
    assert code == 0 and info["missing_keys"] == ["final_layer.bias"] and info["unexpected_keys"] == ["extra.weight"]
    code, _, err = run_cli(["model-info", "posenet"], capsys)
    assert code == 2 and "unknown model 'posenet'" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "bad.pth").write_bytes(b"\x00\x01garbage")
    code, _, err = run_cli(["model-info", "hrnet-w32", "--checkpoint", str(tmp_path / "bad.pth")], capsys)
    assert code == 2 and "bad.pth" in err
