"""SimpleBaseline (ResNet + deconvolutions) and DITN on it: the reference checkpoint layout and
forward pass rebuilt here from the architecture description, torchvision ImageNet initialisation,
sizes and multiply-adds counted by hand against SimpleBaseline's published numbers, and training."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from posekit.codecs.heatmap import HeatmapCodec
from posekit.engine.config import load_config
from posekit.engine.tasks import build_task
from posekit.errors import PosekitError
from posekit.models.flops import count_macs, count_params
from posekit.models.losses import DITNLoss
from posekit.models.registry import build_model, load_pretrained_backbone, load_weights
from posekit.models.resnet import PoseResNet, resnet_layers
from posekit.skeletons import get_skeleton

from helpers import run_cli

BLOCKS = {"r50": (3, 4, 6, 3), "r101": (3, 4, 23, 3), "r152": (3, 8, 36, 3)}  # He et al., Table 1
WIDTHS = (64, 128, 256, 512)  # bottleneck widths of layer1..layer4; outputs are 4x these
DECONV = 256
CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "ditn"


def bn_entries(prefix, channels):
    return {f"{prefix}.weight": (channels,), f"{prefix}.bias": (channels,), f"{prefix}.running_mean": (channels,),
            f"{prefix}.running_var": (channels,), f"{prefix}.num_batches_tracked": ()}


def trunk_shapes(blocks):
    """Names and shapes of torchvision's ResNet trunk (= the reference pose_resnet's)."""
    shapes = {"conv1.weight": (64, 3, 7, 7), **bn_entries("bn1", 64)}
    cin = 64
    for number, (count, width) in enumerate(zip(blocks, WIDTHS), start=1):
        for b in range(count):
            p = f"layer{number}.{b}"
            shapes.update({f"{p}.conv1.weight": (width, cin, 1, 1), **bn_entries(f"{p}.bn1", width),
                           f"{p}.conv2.weight": (width, width, 3, 3), **bn_entries(f"{p}.bn2", width),
                           f"{p}.conv3.weight": (4 * width, width, 1, 1), **bn_entries(f"{p}.bn3", 4 * width)})
            if b == 0:
                shapes.update({f"{p}.downsample.0.weight": (4 * width, cin, 1, 1),
                               **bn_entries(f"{p}.downsample.1", 4 * width)})
            cin = 4 * width
    return shapes


def pose_resnet_shapes(blocks, joints):
    """pose_resnet_50_256x192.pth's names and shapes (lib/models/pose_resnet.py with the d256x3 configs:
    three 4x4 deconvolutions without bias, each followed by BN and ReLU, then a 1x1 final conv)."""
    shapes = trunk_shapes(blocks)
    cin = 2048
    for i in range(3):  # Sequential indices: deconv 3i, BN 3i + 1, ReLU 3i + 2
        shapes[f"deconv_layers.{3 * i}.weight"] = (cin, DECONV, 4, 4)  # ConvTranspose2d: (in, out, kh, kw)
        shapes.update(bn_entries(f"deconv_layers.{3 * i + 1}", DECONV))
        cin = DECONV
    shapes.update({"final_layer.weight": (joints, DECONV, 1, 1), "final_layer.bias": (joints,)})
    return shapes


def random_state(shapes, seed=0):
    """Values of a trained network's order of magnitude: positive BN variances, counters."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(1000)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=gen) + 0.5
        elif len(shape) == 4:  # conv (out, in, kh, kw); deconv (in, out, kh, kw)
            fan_in = shape[0 if key.startswith("deconv_layers.") else 1] * shape[2] * shape[3]
            state[key] = torch.randn(shape, generator=gen) * (2.0 / fan_in) ** 0.5
        else:  # BN scales near 1; BN shifts, running means and biases near 0
            state[key] = torch.randn(shape, generator=gen) * 0.1 + float(key.endswith(".weight"))
    return state


def params_by_hand(blocks, joints):
    """Parameter count from the architecture formula (BN: weight and bias per channel)."""
    total = 3 * 64 * 49 + 2 * 64
    cin = 64
    for count, width in zip(blocks, WIDTHS):
        block = width * width * 9 + width * 4 * width + 2 * (width + width + 4 * width)
        total += count * block + (count - 1) * 4 * width * width  # conv1 of the later blocks: 4w -> w
        total += cin * width + cin * 4 * width + 2 * 4 * width  # first block: conv1 cin -> w, downsample
        cin = 4 * width
    total += 2048 * DECONV * 16 + 2 * DECONV * DECONV * 16 + 3 * 2 * DECONV
    return total + DECONV * joints + joints


def macs_by_hand(blocks, joints, height, width, deconv_on_output=False):
    """Conv/deconv multiply-adds for one image. A 4x4 stride-2 deconvolution does in * out * 16 per
    input pixel; ``deconv_on_output=True`` counts per output pixel instead, as the reference
    ``get_model_summary`` (weight.numel() * output pixels for every Conv* module) does."""
    h, w = height // 2, width // 2
    total = 64 * 3 * 49 * h * w
    h, w = h // 2, w // 2  # max-pool
    cin = 64
    for number, (count, wd) in enumerate(zip(blocks, WIDTHS), start=1):
        for b in range(count):
            stride = 2 if (b == 0 and number > 1) else 1
            c = cin if b == 0 else 4 * wd
            total += c * wd * h * w  # 1x1 at the input resolution
            h, w = h // stride, w // stride
            total += (wd * wd * 9 + wd * 4 * wd) * h * w
            if b == 0:
                total += cin * 4 * wd * h * w
        cin = 4 * wd
    for i in range(3):
        pixels = (4 * h * w) if deconv_on_output else h * w
        total += (2048 if i == 0 else DECONV) * DECONV * 16 * pixels
        h, w = 2 * h, 2 * w
    return total + DECONV * joints * h * w


def reference_forward(state, images):
    """SimpleBaseline's forward pass written from the description (BN in inference mode): 7x7/2 conv,
    3x3/2 max-pool, bottlenecks with the stride on the 3x3 conv, three 4x4/2 deconvolutions, 1x1."""
    def bn(x, p, relu=True):
        y = F.batch_norm(x, state[f"{p}.running_mean"], state[f"{p}.running_var"], state[f"{p}.weight"],
                         state[f"{p}.bias"], training=False, eps=1e-5)
        return F.relu(y) if relu else y

    x = bn(F.conv2d(images, state["conv1.weight"], stride=2, padding=3), "bn1")
    x = F.max_pool2d(x, 3, 2, 1)
    for number in range(1, 5):
        b = 0
        while f"layer{number}.{b}.conv1.weight" in state:
            p, stride = f"layer{number}.{b}", (2 if b == 0 and number > 1 else 1)
            out = bn(F.conv2d(x, state[f"{p}.conv1.weight"]), f"{p}.bn1")
            out = bn(F.conv2d(out, state[f"{p}.conv2.weight"], stride=stride, padding=1), f"{p}.bn2")
            out = bn(F.conv2d(out, state[f"{p}.conv3.weight"]), f"{p}.bn3", relu=False)
            shortcut = x
            if b == 0:
                shortcut = bn(F.conv2d(x, state[f"{p}.downsample.0.weight"], stride=stride), f"{p}.downsample.1",
                              relu=False)
            x = F.relu(out + shortcut)
            b += 1
    for i in range(3):
        x = bn(F.conv_transpose2d(x, state[f"deconv_layers.{3 * i}.weight"], stride=2, padding=1),
               f"deconv_layers.{3 * i + 1}")
    return F.conv2d(x, state["final_layer.weight"], state["final_layer.bias"])


# -- layout and sizes --------------------------------------------------------------------------------

def test_reference_checkpoint_loads_strictly_and_computes_the_reference_forward():
    r50 = PoseResNet("r50", 17)
    shapes = pose_resnet_shapes(BLOCKS["r50"], 17)
    assert len(shapes) == len(r50.state_dict())
    official = random_state(shapes)
    r50.load_state_dict(official, strict=True)
    assert load_weights(r50, official) == {"missing_keys": [], "unexpected_keys": []}
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = r50.eval()(images)["heatmaps"]
        expected = reference_forward(official, images)
    assert out.shape == (2, 17, 16, 16)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())


def test_heatmaps_at_a_quarter_of_256x192():
    with torch.device("meta"):  # shapes only
        model = build_model("simplebaseline-r50").eval()
        assert model(torch.zeros(2, 3, 256, 192))["heatmaps"].shape == (2, 17, 64, 48)


@pytest.mark.parametrize("arch, paper_params, paper_gflops", [("r50", 34.0e6, 8.9), ("r101", 53.0e6, 12.4),
                                                              ("r152", 68.6e6, 15.7)])
def test_sizes_against_the_formula_and_simplebaseline(arch, paper_params, paper_gflops):
    with torch.device("meta"):
        model = build_model({"name": f"simplebaseline-{arch}", "skeleton": "coco17"})
    blocks = BLOCKS[arch]
    assert count_params(model) == params_by_hand(blocks, 17)
    assert count_params(model) == pytest.approx(paper_params, rel=0.01)  # SimpleBaseline / DITN Table 2
    assert count_macs(model, (256, 192)) == macs_by_hand(blocks, 17, 256, 192)
    # The published GFLOPs count each 4x4 stride-2 deconvolution per output pixel (4x its work).
    published = macs_by_hand(blocks, 17, 256, 192, deconv_on_output=True) / 2 ** 30
    assert published == pytest.approx(paper_gflops, rel=0.02)


def test_model_info_reports_the_hand_counts(capsys):
    code, out, _ = run_cli(["model-info", "simplebaseline-r50", "--json"], capsys)
    assert code == 0
    info = json.loads(out)
    assert info["input"] == [256, 192] and info["params"] == params_by_hand(BLOCKS["r50"], 17)
    assert info["gflops"] == pytest.approx(macs_by_hand(BLOCKS["r50"], 17, 256, 192) / 2 ** 30, abs=1e-4)


# -- initialisation -----------------------------------------------------------------------------------

def test_initialisation_follows_the_reference():
    model = PoseResNet("r50", 16)
    for name in ("deconv_layers.0", "deconv_layers.3", "deconv_layers.6", "final_layer"):
        weight = model.get_submodule(name).weight
        assert weight.std().item() == pytest.approx(0.001, rel=0.05), name
    assert torch.equal(model.final_layer.bias, torch.zeros(16))
    assert torch.equal(model.deconv_layers[4].weight, torch.ones(256))
    # Trunk: Kaiming-normal fan-out, std sqrt(2 / (out * kh * kw)).
    conv2 = model.layer3[1].conv2.weight
    assert conv2.std().item() == pytest.approx((2 / (256 * 9)) ** 0.5, rel=0.05)


def test_torchvision_imagenet_weights_initialise_the_backbone():
    imagenet = random_state(trunk_shapes(BLOCKS["r50"]), seed=3)
    imagenet["fc.weight"] = torch.zeros(1000, 2048)
    imagenet["fc.bias"] = torch.zeros(1000)
    model = build_model({"name": "ditn-r50", "skeleton": "mpii16"})
    deconv_before = model.backbone.deconv_layers[0].weight.clone()
    report = load_pretrained_backbone(model, imagenet, "resnet50-19c8e357.pth")
    assert report["unexpected_keys"] == [] and len(report["missing_keys"]) == 3 * (1 + 4)
    assert all(k.startswith("deconv_layers.") for k in report["missing_keys"])
    state = model.backbone.state_dict()
    for key, value in imagenet.items():
        if not key.startswith("fc."):
            assert torch.equal(state[key], value), key
    assert torch.equal(model.backbone.deconv_layers[0].weight, deconv_before)  # keeps its N(0, 0.001) init
    del imagenet["layer3.5.bn2.running_mean"]
    with pytest.raises(PosekitError, match=r"partial.pth: backbone weight layer3.5.bn2.running_mean is missing"):
        load_pretrained_backbone(model, imagenet, "partial.pth")


def test_pose_checkpoint_initialises_ditn_backbone_with_its_deconvolutions():
    official = random_state(pose_resnet_shapes(BLOCKS["r50"], 17), seed=4)
    model = build_model({"name": "ditn-r50", "skeleton": "mpii16"})
    load_pretrained_backbone(model, official, "pose_resnet_50_256x192.pth")
    for key in ("deconv_layers.6.weight", "layer4.2.bn3.running_var", "conv1.weight"):
        assert torch.equal(model.backbone.state_dict()[key], official[key]), key
    del official["deconv_layers.4.weight"]  # some deconvolution weights but not all: refused
    with pytest.raises(PosekitError, match=r"pose_resnet_50_256x192.pth: backbone weight deconv_layers.4.weight"):
        load_pretrained_backbone(model, official, "pose_resnet_50_256x192.pth")


def test_pretrained_config_loads_imagenet_resnet(tmp_path):
    imagenet = random_state(trunk_shapes(BLOCKS["r50"]), seed=5)
    torch.save({**imagenet, "fc.weight": torch.zeros(1000, 2048)}, tmp_path / "resnet50.pth")
    config = {"task": "topdown2d",
              "model": {"name": "simplebaseline-r50", "pretrained": str(tmp_path / "resnet50.pth")},
              "codec": {"input_size": [64, 64], "heatmap_size": [16, 16]},
              "data": {"format": "mpii", "skeleton": "mpii16", "root": str(tmp_path),
                       "train": {"annotations": "a.json", "images": "imgs"}},
              "train": {"epochs": 1, "batch_size": 2, "optimizer": {"lr": 1e-3}}}
    model = build_task(config).build_model()
    assert torch.equal(model.layer2[3].conv3.weight, imagenet["layer2.3.conv3.weight"])
    assert torch.equal(model.layer4[0].downsample[1].running_var, imagenet["layer4.0.downsample.1.running_var"])
    torch.save({"fc.weight": torch.zeros(3)}, tmp_path / "other.pth")
    config["model"]["pretrained"] = str(tmp_path / "other.pth")
    with pytest.raises(PosekitError, match="other.pth: no ResNet backbone weights"):
        build_task(config).build_model()


def test_hrnet_weights_into_a_resnet_are_refused():
    from posekit.models.hrnet import HRNetBackbone

    with torch.device("meta"):
        hrnet_state = HRNetBackbone("w18-small").state_dict()
        model = build_model("simplebaseline-r50")
    with pytest.raises(PosekitError, match=r"hrnet.pth: conv1.weight has shape \(64, 3, 3, 3\)"):
        load_pretrained_backbone(model, hrnet_state, "hrnet.pth")


# -- DITN on ResNet-50 -------------------------------------------------------------------------------

def test_ditn_r50_outputs_and_size():
    mpii = get_skeleton("mpii16")
    model = build_model({"name": "ditn-r50", "skeleton": "mpii16"}).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    assert out["heatmaps"].shape == (2, 16, 16, 16)
    assert out["bone_heatmaps"].shape == (2, len(mpii.bones), 16, 16) == (2, 15, 16, 16)
    with torch.device("meta"):  # the paper's MPII size, shapes only
        out = build_model({"name": "ditn-r50", "skeleton": "mpii16"}).eval()(torch.zeros(2, 3, 256, 256))
    assert out["heatmaps"].shape == (2, 16, 64, 64) and out["bone_heatmaps"].shape == (2, 15, 64, 64)
    # Decoders read the 256-channel deconvolution output: 1x1 256->512 + BN, 3x3 512->256 + BN, 1x1 256->out.
    decoder = 256 * 512 + 2 * 512 + 512 * 9 * 256 + 2 * 256
    assert count_params(model.head.joint_decoder) == decoder + 256 * 16 + 16
    assert count_params(model.head.bone_decoder) == decoder + 256 * 15 + 15
    with torch.device("meta"):
        plain = build_model({"name": "simplebaseline-r50", "skeleton": "mpii16"})
    assert count_params(model.backbone) == count_params(plain) - (256 * 16 + 16)


def test_ditn_r50_ablation_mtl_is_the_joint_decoder():
    model = build_model("ditn-r50", ablation="mtl", skeleton="mpii16").eval()
    assert not hasattr(model.head, "adapter") and not hasattr(model.head, "spatial_attention")
    images = torch.randn(2, 3, 64, 64)  # the shapes of the tests above (no new kernel set-up)
    with torch.no_grad():
        out = model(images)
        torch.testing.assert_close(out["heatmaps"], model.head.joint_decoder(model.backbone(images)))


def test_one_training_step_reduces_the_loss():
    torch.manual_seed(0)
    model = build_model({"name": "ditn-r50", "skeleton": "mpii16"}).train()
    codec = HeatmapCodec("mpii16", input_size=(64, 64), heatmap_size=(16, 16), sigma=1.0, bones=True)
    rng = np.random.default_rng(0)
    targets = [codec.encode(rng.uniform(8, 56, (16, 2)), np.ones(16)) for _ in range(2)]
    batch = {k: torch.as_tensor(np.stack([t[k] for t in targets]), dtype=torch.float32) for k in targets[0]}
    images = torch.randn(2, 3, 64, 64)
    loss_fn = DITNLoss()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    before = loss_fn(model(images), batch)["loss"]
    optimizer.zero_grad()
    before.backward()
    optimizer.step()
    after = loss_fn(model(images), batch)["loss"]
    assert after.item() < before.item()


def test_bad_names_and_options():
    for name in ("simplebaseline-r34", "ditn-r18", "resnet50", "simplebaseline"):
        with pytest.raises(PosekitError, match=f"unknown model '{name}'"):
            build_model(name)
    with pytest.raises(PosekitError, match="unknown ResNet architecture 'r51'"):
        resnet_layers("r51")
    with pytest.raises(PosekitError, match="unknown ResNet architecture"):
        PoseResNet("w32")
    with pytest.raises(PosekitError, match="unknown option"):
        build_model({"name": "simplebaseline-r50", "ablation": "mtl"})
    with pytest.raises(PosekitError, match="num_joints must be a positive integer"):
        build_model({"name": "simplebaseline-r50", "num_joints": 0})
    with pytest.raises(PosekitError, match="ablation must be one of"):
        build_model("ditn-r50", ablation="none")
    with torch.device("meta"):
        assert build_model("simplebaseline-r50", num_joints=3).final_layer.out_channels == 3


# (joint loss, bone loss, lambda) of DITN's Table 6 rows and Table 7 columns, ResNet-50 on MPII.
PAPER_ROWS = {
    "ditn_r50_mpii-256x256.yaml": ("focal_l2", "smooth_l1", 0.10),  # Table 6 row 3, Table 7 0.10
    "ditn_r50_mpii-256x256_loss-mse-mse.yaml": ("mse", "mse", 0.10),
    "ditn_r50_mpii-256x256_loss-focal-focal.yaml": ("focal_l2", "focal_l2", 0.10),
    "ditn_r50_mpii-256x256_lambda-0.05.yaml": ("focal_l2", "smooth_l1", 0.05),
    "ditn_r50_mpii-256x256_lambda-0.15.yaml": ("focal_l2", "smooth_l1", 0.15),
}


@pytest.mark.parametrize("name", sorted(PAPER_ROWS))
def test_ablation_configs_follow_tables_6_and_7(name):
    config = build_task(load_config(CONFIGS / name)).config
    joint, bone, weight = PAPER_ROWS[name]
    assert (config["loss"]["joint"], config["loss"]["bone"], config["loss"]["bone_weight"]) == (joint, bone, weight)
    assert config["model"]["name"] == "ditn-r50" and config["model"]["options"] == {}
    assert config["model"]["pretrained"].endswith("resnet50-19c8e357.pth")
    # The paper's MPII recipe (section 4.1.2): 256x256 crops, 64x64 maps, AdamW 1e-3 with decay 1e-4,
    # x0.1 at epochs 130 and 160 of 210, batch 32, rotation +-30 degrees, scale 0.65-1.35.
    assert config["codec"]["input_size"] == [256, 256] and config["codec"]["heatmap_size"] == [64, 64]
    assert config["data"]["format"] == "mpii" and config["data"]["skeleton"] == "mpii16"
    train = config["train"]
    assert (train["epochs"], train["batch_size"], train["lr_schedule"]["milestones"]) == (210, 32, [130, 160])
    assert (train["optimizer"]["name"], train["optimizer"]["lr"], train["optimizer"]["weight_decay"]) == \
        ("adamw", 1e-3, 1e-4)
    augment = config["data"]["augment"]
    assert augment["rotation_max"] == 30.0 and augment["scale_range"] == [0.65, 1.35]


def test_simplebaseline_config_follows_its_reference_recipe():
    config = build_task(load_config(CONFIGS / "simplebaseline-r50_mpii-256x256.yaml")).config
    assert config["model"]["name"] == "simplebaseline-r50" and config["loss"]["bone"] is None
    train = config["train"]
    assert (train["epochs"], train["batch_size"], train["lr_schedule"]["milestones"]) == (140, 128, [90, 120])
    assert config["data"]["augment"]["scale_range"] == [0.75, 1.25]
