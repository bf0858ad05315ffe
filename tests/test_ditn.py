"""DITN: sizes against the paper's Tables 3 and 8, dynamic kernels (per sample, with gradients, no
leakage across the batch), ablation switches, the shared ops (dynamic and deformable convolution
against direct references) and the losses against hand-computed values."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from posekit.errors import PosekitError
from posekit.models.ditn import DITN, DITNHead, adaptive_conv
from posekit.models.flops import count_params, gflops, module_costs
from posekit.models.hrnet import PoseHRNet
from posekit.models.losses import (DITNLoss, build_loss, focal_l2_loss, joints_mse_loss,
                                   smooth_l1_heatmap_loss)
from posekit.models.ops import deform_conv2d, dynamic_depthwise_conv2d
from posekit.models.registry import ABLATIONS, build_model
from posekit.skeletons import get_skeleton

from helpers import TINY, calibrate

MPII = get_skeleton("mpii16")


# -- sizes ------------------------------------------------------------------------------------------

def test_table8_module_sizes_on_mpii():
    head = DITNHead(32, "mpii16")
    params = {name: count_params(child) for name, child in head.named_children()}
    # 1x1 32->64 + BN, 3x3 64->32 + BN, 1x1 32->K with bias: Table 8 gives 21.2 k for each decoder.
    assert params["joint_decoder"] == 32 * 64 + 128 + 64 * 9 * 32 + 64 + 32 * 16 + 16 == 21200
    assert params["bone_decoder"] == 32 * 64 + 128 + 64 * 9 * 32 + 64 + 32 * 15 + 15
    assert params["adapter"] == 15 * 3 * (2 * 2 * 9) == 1620  # "1.6 k"
    assert params["spatial_attention"] == pytest.approx(4.0e3, abs=100)  # "4.0 k"
    assert params["channel_attention"] == pytest.approx(0.8e3, abs=150)  # "0.8 k" (1x1 excitation)
    # MACs at 64x64 maps (Table 8's components are counted at the MPII size); the adapter and the
    # spatial attention do not depend on the backbone width.
    costs = module_costs(DITN("mpii16", TINY), (256, 256), "head")
    assert costs["adapter"][1] / 1e6 == pytest.approx(0.6, abs=0.1)
    assert costs["spatial_attention"][1] / 1e6 == pytest.approx(16.1, rel=0.03)


def test_table3_totals_at_256x192_and_mpii_overhead():
    with torch.device("meta"):
        ditn = build_model({"name": "ditn-w32", "skeleton": "coco17"})
        ditn_mpii = build_model({"name": "ditn-w32", "skeleton": "mpii16"})
        hrnet_mpii = build_model({"name": "hrnet-w32", "skeleton": "mpii16"})
    assert count_params(ditn) == pytest.approx(28.6e6, rel=0.02)
    assert gflops(ditn, (256, 192)) == pytest.approx(7.26, rel=0.02)
    # Sec. 5: "+0.19 GFLOPs and +0.1 M params" over HRNet-W32 (MPII, 256x256).
    extra = gflops(ditn_mpii, (256, 256)) - gflops(hrnet_mpii, (256, 256))
    assert extra == pytest.approx(0.19, abs=0.02)
    assert 0.02e6 < count_params(ditn_mpii) - count_params(hrnet_mpii) < 0.15e6


# -- dynamic transfer -------------------------------------------------------------------------------

def test_dynamic_conv_equals_per_sample_convolution(monkeypatch):
    torch.manual_seed(0)
    x, k = torch.randn(3, 4, 9, 7), torch.randn(3, 4, 5, 3)
    expected = torch.cat([F.conv2d(x[n:n + 1], k[n].unsqueeze(1), padding=(2, 1), groups=4) for n in range(3)])
    # Channel multiplier 2: output o filters input o // 2 (PyTorch's grouped-conv convention).
    k2 = torch.randn(3, 8, 5, 3)
    expected2 = torch.cat([F.conv2d(x[n:n + 1], k2[n].unsqueeze(1), padding=(2, 1), groups=4) for n in range(3)])
    torch.testing.assert_close(dynamic_depthwise_conv2d(x, k), expected)
    torch.testing.assert_close(dynamic_depthwise_conv2d(x, k2), expected2)
    monkeypatch.setattr(torch.onnx, "is_in_onnx_export", lambda: True)  # the export form
    torch.testing.assert_close(dynamic_depthwise_conv2d(x, k), expected)
    torch.testing.assert_close(dynamic_depthwise_conv2d(x, k2), expected2)
    with pytest.raises(PosekitError, match="odd"):
        dynamic_depthwise_conv2d(x, torch.randn(3, 4, 4, 3))
    with pytest.raises(PosekitError, match="odd"):
        dynamic_depthwise_conv2d(x, torch.randn(3, 6, 5, 3))  # 6 kernels for 4 channels


def test_full_adaptive_conv_is_a_2_to_2_convolution():
    torch.manual_seed(1)
    groups, theta = torch.randn(2, 6, 8, 8), torch.randn(2, 6, 3, 3)
    got = adaptive_conv(groups, theta, "full")
    for n in range(2):
        for g in range(3):
            weight = theta[n, 2 * g:2 * g + 2].unsqueeze(1).expand(2, 2, 3, 3)  # kernel[o, i] = theta_o
            ref = F.conv2d(groups[n:n + 1, 2 * g:2 * g + 2], weight, padding=1)
            torch.testing.assert_close(got[n:n + 1, 2 * g:2 * g + 2], ref)
    depthwise = adaptive_conv(groups, theta, "depthwise")
    torch.testing.assert_close(depthwise[1, 4], F.conv2d(groups[1:2, 4:5], theta[1:2, 4:5], padding=1)[0, 0])


def test_kernels_are_per_sample_and_receive_gradients():
    model = calibrate(DITN("mpii16", TINY), (64, 64))
    images = torch.randn(2, 3, 64, 64)
    feature = model.backbone(images)
    theta = model.head.dynamic_kernels(model.head.bone_decoder(feature))
    assert theta.shape == (2, 30, 7, 7)  # 16x16 maps: 7 -> 3 -> 1, resized to Table 8's 7x7
    assert not torch.allclose(theta[0], theta[1])
    model.train()
    out = model(images)
    targets = {"heatmaps": torch.rand_like(out["heatmaps"]), "bone_heatmaps": torch.rand_like(out["bone_heatmaps"])}
    DITNLoss()(out, targets)["loss"].backward()
    for layer in (model.head.adapter.layers[0][0], model.head.adapter.layers[4][0], model.backbone.conv1,
                  model.head.transfer):
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0


def test_no_information_flows_between_samples():
    model = calibrate(DITN("coco17", TINY), (64, 64))
    images = torch.randn(3, 3, 64, 64, requires_grad=True)
    model(images)["heatmaps"][1].sum().backward()
    grad = images.grad.abs().sum(dim=(1, 2, 3))
    assert grad[1] > 0 and grad[0] == 0 and grad[2] == 0


def test_mean_merge_weights_follow_the_bone_list():
    head = DITNHead(8, "mpii16")
    weight = head.merge_weight[:, :, 0, 0]
    names = [(MPII.joints[a], MPII.joints[b]) for a, b in MPII.bone_array]
    thorax_bones = [i for i, pair in enumerate(names) if "thorax" in pair]
    assert len(thorax_bones) == 4
    row = weight[MPII.index("thorax")]
    assert torch.count_nonzero(row) == 4 and torch.allclose(row[row > 0], torch.tensor(0.25))
    assert weight[MPII.index("head_top")].sum() == 1 and weight.sum().item() == pytest.approx(16)
    learned = DITNHead(8, "mpii16", merge="learned")
    torch.testing.assert_close(learned.merge.weight[:, :, 0, 0], weight)


def test_ablation_switches():
    feature = torch.randn(2, 8, 16, 16)
    sizes = {}
    for name, flags in ABLATIONS.items():
        head = DITNHead(8, "mpii16", **flags).eval()
        out = head(feature)
        assert out["heatmaps"].shape == (2, 16, 16, 16) and out["bone_heatmaps"].shape == (2, 15, 16, 16)
        sizes[name] = count_params(head)
        if name == "mtl":
            torch.testing.assert_close(out["heatmaps"], head.joint_decoder(feature))
    assert sizes["mtl"] < sizes["mtl+ditm"] < sizes["mtl+ditm+cab"] < sizes["full"]
    assert sizes["mtl+ditm"] < sizes["mtl+ditm+sab"] < sizes["full"]
    with torch.device("meta"):
        model = build_model({"name": "ditn-w32", "ablation": "mtl+ditm+sab"})
    assert model.head.ditm and model.head.sab and not model.head.cab
    with pytest.raises(PosekitError, match="cab"):
        DITNHead(8, "mpii16", ditm=False, cab=True)
    with pytest.raises(PosekitError, match="merge"):
        DITNHead(8, "mpii16", merge="max")
    with pytest.raises(PosekitError, match="ablation"):
        build_model({"name": "ditn-w32", "ablation": "dit"})


def test_native_kernel_sizes():
    head = DITNHead(8, "coco17", adapter_kernel="native").eval()
    assert head.dynamic_kernels(torch.randn(1, 19, 64, 48)).shape[-2:] == (7, 5)  # COCO 256x192
    with pytest.raises(PosekitError, match="odd"):
        head(torch.randn(1, 8, 32, 24))  # 32x24 maps give a 3x2 kernel
    assert head(torch.randn(1, 8, 64, 48))["heatmaps"].shape == (1, 17, 64, 48)


def test_hrnet_and_ditn_share_backbone_names():
    hrnet, ditn = PoseHRNet(TINY, 17), DITN("coco17", TINY)
    backbone = {k for k in hrnet.state_dict() if not k.startswith("final_layer.")}
    assert {k[len("backbone."):] for k in ditn.state_dict() if k.startswith("backbone.")} == backbone


# -- deformable convolution -------------------------------------------------------------------------

def naive_deform_conv(x, offset, weight, stride, pad, dil, mask):
    """Direct loops over the DCN definition (bilinear, zero outside), in float64."""
    n, cin, h, w = x.shape
    cout, _, kh, kw = weight.shape
    ho, wo = offset.shape[2:]
    groups = offset.shape[1] // (2 * kh * kw)
    per = cin // groups
    out = np.zeros((n, cout, ho, wo))

    def sample(img, y, x_):
        y0, x0 = math.floor(y), math.floor(x_)
        value = 0.0
        for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
            for xx, wx in ((x0, 1 - (x_ - x0)), (x0 + 1, x_ - x0)):
                if 0 <= yy < h and 0 <= xx < w:
                    value += wy * wx * img[yy, xx]
        return value

    for b in range(n):
        for oy in range(ho):
            for ox in range(wo):
                for i in range(kh):
                    for j in range(kw):
                        for c in range(cin):
                            g = c // per
                            tap = g * kh * kw + i * kw + j
                            y = oy * stride - pad + i * dil + offset[b, 2 * tap, oy, ox]
                            x_ = ox * stride - pad + j * dil + offset[b, 2 * tap + 1, oy, ox]
                            v = sample(x[b, c], y, x_) * (1.0 if mask is None else mask[b, tap, oy, ox])
                            out[b, :, oy, ox] += weight[:, c, i, j] * v
    return out


@pytest.mark.parametrize("stride,pad,dil,groups,modulated", [(1, 1, 1, 1, False), (2, 2, 2, 2, True)])
def test_deform_conv_matches_the_definition(stride, pad, dil, groups, modulated):
    rng = np.random.default_rng(stride)
    x = rng.standard_normal((1, 4, 6, 5))
    weight = rng.standard_normal((3, 4, 3, 3))
    ho = (6 + 2 * pad - dil * 2 - 1) // stride + 1
    wo = (5 + 2 * pad - dil * 2 - 1) // stride + 1
    offset = rng.uniform(-2.5, 2.5, (1, 2 * groups * 9, ho, wo))
    mask = rng.uniform(0, 1, (1, groups * 9, ho, wo)) if modulated else None
    t = torch.from_numpy
    got = deform_conv2d(t(x), t(offset), t(weight), stride=stride, padding=pad, dilation=dil,
                        mask=None if mask is None else t(mask))
    np.testing.assert_allclose(got.numpy(), naive_deform_conv(x, offset, weight, stride, pad, dil, mask),
                               atol=1e-10)


def test_deform_conv_without_offsets_is_a_convolution():
    torch.manual_seed(2)
    x, w, b = torch.randn(2, 6, 9, 11), torch.randn(4, 3, 3, 3), torch.randn(4)
    ref = F.conv2d(x, w, b, stride=2, padding=2, dilation=2, groups=2)
    offset = torch.zeros(2, 18, *ref.shape[2:])
    torch.testing.assert_close(deform_conv2d(x, offset, w, b, 2, 2, 2), ref)
    with pytest.raises(PosekitError, match="offset"):
        deform_conv2d(x, torch.zeros(2, 17, *ref.shape[2:]), w, b, 2, 2, 2)


# -- losses -----------------------------------------------------------------------------------------

def test_losses_by_hand():
    pred = torch.tensor([0.2, 0.1, 0.9, 3.0]).view(1, 4, 1, 1)
    target = torch.tensor([0.5, 0.0, 1.0, 0.0]).view(1, 4, 1, 1)
    weight = torch.tensor([[1.0, 1.0, 0.0, 1.0]])
    # HRNet: 0.5 * mean((w p - w g)^2)
    assert joints_mse_loss(pred, target, weight).item() == pytest.approx(0.5 * (0.09 + 0.01 + 0 + 9) / 4)
    # Focal L2 after Simple Pose: foreground (g >= 0.01) x |1 - p|^2, background x |p|^2.
    fac = [0.09 * 0.8 ** 2, 0.01 * 0.1 ** 2, 0.0, 9 * 3.0 ** 2]
    assert focal_l2_loss(pred, target, weight).item() == pytest.approx(sum(fac) / 4)
    # As printed in DITN Eq. 7: foreground x g^2, background x (1 - p)^2.
    printed = [0.09 * 0.5 ** 2, 0.01 * 0.9 ** 2, 0.0, 9 * (1 - 3.0) ** 2]
    assert focal_l2_loss(pred, target, weight, factor="printed").item() == pytest.approx(sum(printed) / 4)
    # Smooth L1: 0.5 x^2 below 1, |x| - 0.5 above.
    smooth = [0.5 * 0.09, 0.5 * 0.01, 0.0, 3.0 - 0.5]
    assert smooth_l1_heatmap_loss(pred, target, weight).item() == pytest.approx(sum(smooth) / 4)


def test_ditn_loss_combines_and_ignores_unlabelled_bones():
    torch.manual_seed(3)
    out = {"heatmaps": torch.rand(2, 3, 4, 4), "bone_heatmaps": torch.rand(2, 2, 4, 4)}
    targets = {"heatmaps": torch.rand(2, 3, 4, 4), "weights": torch.ones(2, 3),
               "bone_heatmaps": torch.rand(2, 2, 4, 4), "bone_weights": torch.tensor([[1.0, 0.0], [1.0, 1.0]])}
    loss = DITNLoss()(out, targets)
    assert loss["loss"].item() == pytest.approx((loss["joint_loss"] + 0.1 * loss["bone_loss"]).item())
    changed = {**out, "bone_heatmaps": out["bone_heatmaps"].clone()}
    changed["bone_heatmaps"][0, 1] += 5.0  # the unlabelled bone of sample 0
    assert DITNLoss()(changed, targets)["loss"].item() == pytest.approx(loss["loss"].item())
    plain = build_loss("mse")(out, targets)
    assert "bone_loss" not in plain and plain["loss"].item() == pytest.approx(
        joints_mse_loss(out["heatmaps"], targets["heatmaps"]).item())
    with pytest.raises(PosekitError, match="unknown option"):
        build_loss({"joint": "mse", "lambda": 0.1})
    with pytest.raises(PosekitError, match="bone_heatmaps"):
        DITNLoss()({"heatmaps": out["heatmaps"]}, targets)
    with pytest.raises(PosekitError, match="target weights"):
        joints_mse_loss(out["heatmaps"], targets["heatmaps"], torch.ones(2, 4))


def _first_steps(attention_gamma: float, steps: int = 4) -> list[float]:
    """Focal-L2 + smooth-L1 losses of a freshly initialised DITN over a few AdamW steps at lr 1e-3."""
    torch.manual_seed(0)
    model = DITN(MPII, TINY, attention_gamma=attention_gamma)
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(24.0), indexing="ij")
    centres = torch.rand(8, len(MPII), 2) * torch.tensor([24.0, 32.0])
    heatmaps = torch.exp(-((xx - centres[..., 0, None, None]) ** 2 + (yy - centres[..., 1, None, None]) ** 2) / 2)
    bones = torch.as_tensor(MPII.bone_array)
    targets = {"heatmaps": heatmaps, "bone_heatmaps": torch.maximum(heatmaps[:, bones[:, 0]], heatmaps[:, bones[:, 1]])}
    images = torch.randn(8, 3, 128, 96)
    loss_fn = build_loss("ditn")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(steps):
        loss = loss_fn(model(images), targets)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_fresh_head_trains_stably_with_small_attention_gamma():
    # Table 8's BN on the attention blocks' K_3 renormalises the near-zero maps of a fresh head to unit
    # variance after the first update; with gamma = 1 the loss jumps by orders of magnitude.
    stable = _first_steps(0.01)
    assert max(stable) < 1.5 * stable[0]
    unstable = _first_steps(1.0)
    assert max(unstable) > 10 * unstable[0]
    with pytest.raises(PosekitError, match="attention_gamma"):
        DITN(MPII, TINY, attention_gamma=0.0)
