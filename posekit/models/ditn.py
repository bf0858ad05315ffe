"""DITN: human pose estimation via dynamic information transfer (Li et al., Electronics 2023, 12, 695).

A backbone's stride-4 feature (C channels: HRNet's highest-resolution branch, C = 32 for W32, or
SimpleBaseline's deconvolution output, C = 256 for the ResNet-50 of Tables 6-7) feeds two residual decoders,
one giving a map per joint (F_J) and one a map per bone (F_B, also the predicted bone heatmaps).
Each bone b = (i, j) of the skeleton forms a group: the joint maps of i and j (2 channels) and the
bone map repeated twice. A per-group parameter adapter turns the bone group into a dynamic kernel
theta_b for every sample; an adaptive convolution filters the (1x1-convolved) joint group with it
(Eq. 2); channel attention refines the result and adds it to the joint group (Eq. 3); the group
outputs are merged back to one map per joint; spatial attention gives the joint heatmaps (Eq. 5).

The paper leaves several things open. Every choice below is a constructor switch; the defaults are
the reading that fits the text, the equations and the parameter/FLOP counts of Table 8 best
(docs/ditn.md discusses each):

* Decoders (Table 8 vs text): 1x1 conv C->2C, 3x3 conv 2C->C, residual add, ReLU, 1x1 output conv
  for both branches ("expanded to 2C"; 21.2 k parameters each only fit 2C). The output conv is a
  plain conv with bias like HRNet's final layer; ``decoder_out_bn_relu=True`` adds Table 8's BN+ReLU.
* ResNet backbone (Tables 6-7; the paper does not describe it): SimpleBaseline's three
  deconvolutions stay in the backbone and the decoders read their output, C = 256 (2C = 512).
* Groups: one per ``skeleton.bones`` entry (MPII: the 15 tree edges, COCO: the 19 annotation links).
* Transfer conv K_1 (Table 8 "16->16, Nums 15" fits neither reading): a 1x1 conv 2->2 per group.
* Adapter: per group conv3x3 s2 p0 -> maxpool 2 -> conv3x3 -> maxpool 2 -> conv3x3, 2->2 channels,
  no bias (1.6 k parameters for 15 groups). Table 8 has no BN/ReLU, the text says "always":
  ``adapter_bn_relu`` (default off, as the table and its parameter count).
* Kernel size: the adapter maps 64x64 heatmaps to 7x7 (Table 8's k7) but 64x48 (COCO) to 7x5.
  ``adapter_kernel="square"`` (default) resizes theta bilinearly to ``kernel_size`` x ``kernel_size``,
  so every input size works; ``"native"`` uses the adapter's own (odd) size.
* Adaptive conv (2->2, k7 in Table 8; the adapter gives 2x7x7 per group): ``adaptive_conv="full"``
  (default) convolves the sum of the group's two joint maps with theta's channel o to give output o,
  i.e. a 2->2 kernel whose taps are shared by both inputs -- it matches Table 8's 2->2 and its FLOPs
  and lets each joint receive the other's evidence along the bone; ``"depthwise"`` filters each
  joint map with its own channel of theta. No bias (stated).
* Channel attention (Eq. 4): 3x3 conv+BN+ReLU, global average pooling (Table 8's "k32" would not be
  global on 64x64 maps), 1x1 conv (Eq. 4; Table 8's 3x3 on a 1x1 map equals its centre tap), sigmoid.
* Spatial attention (Eq. 5 and Table 8): 3x3 conv+BN+ReLU, 1x1 conv+BN+ReLU, depthwise 9x9 conv,
  sigmoid. Table 8 puts BN+ReLU on the conv before each sigmoid, which confines the weights to
  [0.5, 1): ``attention_bn_relu`` (default off: plain conv with bias there).
* Initial BN scale of the attention blocks' K_3 (``attention_gamma``, default 0.01; the paper is
  silent). K_3 carries the heatmap signal itself, and its BN (Table 8) renormalises the near-zero
  maps of a fresh head to unit variance as soon as the first update lifts their variance above BN's
  epsilon: with gamma = 1 the focal-L2 loss jumps from 0.003 to 45 at step 2 and the gradient norm
  to 8e4. A small gamma starts the blocks near the small outputs of HRNet's initialisation.
* Merge of the 2B group channels into K joint maps (unstated): ``merge="mean"`` averages the
  channels that carry the same joint (each joint sits in 1-4 groups); ``"learned"`` is a 1x1 conv
  initialised to that mean. A joint in no bone keeps its decoder map.
* Ablations of Table 5: ``ditm=False`` is "MTL" (joint heatmaps straight from the joint decoder),
  ``cab`` / ``sab`` toggle the attention blocks.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from posekit.errors import PosekitError
from posekit.models.hrnet import HRNetBackbone, HRNetSpec, init_pose_weights
from posekit.models.ops import conv_bn_relu, dynamic_depthwise_conv2d
from posekit.models.resnet import RESNET_LAYERS, SimpleBaselineBackbone
from posekit.skeletons import Skeleton, get_skeleton

MERGES = ("mean", "learned")
ADAPTIVE_CONVS = ("full", "depthwise")
ADAPTER_KERNELS = ("square", "native")


class ResidualDecoder(nn.Module):
    """f -> 1x1 (C->2C) -> 3x3 (2C->C) -> + f -> ReLU -> 1x1 (C->out): the joint and bone decoders."""

    def __init__(self, in_channels: int, out_channels: int, out_bn_relu: bool = False):
        super().__init__()
        self.expand = conv_bn_relu(in_channels, 2 * in_channels, 1)
        self.reduce = conv_bn_relu(2 * in_channels, in_channels, 3, relu=False)
        self.relu = nn.ReLU(inplace=True)
        self.out = conv_bn_relu(in_channels, out_channels, 1, bn=out_bn_relu, relu=out_bn_relu)

    def forward(self, x):
        return self.out(self.relu(self.reduce(self.expand(x)) + x))


class ParameterAdapter(nn.Module):
    """One-shot learner: a bone group (N, 2B, H, W) -> dynamic kernels (N, 2B, kh, kw), one small
    conv/max-pool stack per group (grouped convs keep the groups' weights separate)."""

    def __init__(self, num_groups: int, bn_relu: bool = False):
        super().__init__()
        c = 2 * num_groups

        def conv(stride: int, padding: int) -> nn.Sequential:
            layers: list[nn.Module] = [nn.Conv2d(c, c, 3, stride, padding, groups=num_groups, bias=False)]
            if bn_relu:
                layers += [nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            return nn.Sequential(*layers)

        self.layers = nn.Sequential(conv(2, 0), nn.MaxPool2d(2, 2), conv(1, 1), nn.MaxPool2d(2, 2), conv(1, 1))

    def forward(self, bone_groups):
        return self.layers(bone_groups)


class GroupChannelAttention(nn.Module):
    """Eq. (4) per group: f = K3(x); out = (1 + sigmoid(K1(avgpool(f)))) * f."""

    def __init__(self, num_groups: int, bn_relu: bool = False, gamma: float = 0.01):
        super().__init__()
        c = 2 * num_groups
        self.residual = conv_bn_relu(c, c, 3, groups=num_groups)
        self.excite = conv_bn_relu(c, c, 1, groups=num_groups, bn=bn_relu, relu=bn_relu)
        init_pose_weights(self)
        nn.init.constant_(self.residual[1].weight, gamma)

    def forward(self, x):
        f = self.residual(x)
        return (1 + torch.sigmoid(self.excite(f.mean(dim=(2, 3), keepdim=True)))) * f


class SpatialAttention(nn.Module):
    """Eq. (5): f = K3(x); out = (1 + sigmoid(DW9(K1(f)))) * f, over all joint channels at once."""

    def __init__(self, channels: int, bn_relu: bool = False, kernel_size: int = 9, gamma: float = 0.01):
        super().__init__()
        self.residual = conv_bn_relu(channels, channels, 3)
        self.mix = conv_bn_relu(channels, channels, 1)
        self.spatial = conv_bn_relu(channels, channels, kernel_size, groups=channels, bn=bn_relu, relu=bn_relu)
        init_pose_weights(self)
        nn.init.constant_(self.residual[1].weight, gamma)

    def forward(self, x):
        f = self.residual(x)
        return (1 + torch.sigmoid(self.spatial(self.mix(f)))) * f


class DITNHead(nn.Module):
    """Decoders, grouping, DITM, attention and merge on a backbone feature (N, C, h, w).

    Returns ``{"heatmaps": (N, K, h, w), "bone_heatmaps": (N, B, h, w)}``."""

    def __init__(self, in_channels: int, skeleton: Skeleton | str, *, ditm: bool = True, cab: bool = True,
                 sab: bool = True, merge: str = "mean", adaptive_conv: str = "full",
                 adapter_kernel: str = "square", kernel_size: int = 7, adapter_bn_relu: bool = False,
                 attention_bn_relu: bool = False, decoder_out_bn_relu: bool = False,
                 attention_gamma: float = 0.01):
        super().__init__()
        skeleton = get_skeleton(skeleton)
        _check_choice("merge", merge, MERGES)
        _check_choice("adaptive_conv", adaptive_conv, ADAPTIVE_CONVS)
        _check_choice("adapter_kernel", adapter_kernel, ADAPTER_KERNELS)
        if cab and not ditm:
            raise PosekitError("DITN: the channel attention block (cab) refines the DITM output; "
                               "it needs ditm=True")
        if not attention_gamma > 0:
            raise PosekitError(f"DITN: attention_gamma must be positive, got {attention_gamma}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise PosekitError(f"DITN: kernel_size must be a positive odd number, got {kernel_size}")
        bones = skeleton.bone_array
        if len(bones) == 0:
            raise PosekitError(f"DITN: skeleton {skeleton.name!r} lists no bones to group joints by")
        num_joints, num_bones = len(skeleton), len(bones)
        self.skeleton_name = skeleton.name
        self.num_joints, self.num_bones = num_joints, num_bones
        self.ditm, self.cab, self.sab = ditm, cab, sab
        self.adaptive_conv, self.adapter_kernel, self.kernel_size = adaptive_conv, adapter_kernel, kernel_size

        self.joint_decoder = ResidualDecoder(in_channels, num_joints, decoder_out_bn_relu)
        self.bone_decoder = ResidualDecoder(in_channels, num_bones, decoder_out_bn_relu)
        # Channel 2b holds joint bones[b, 0] and 2b+1 joint bones[b, 1].
        self.register_buffer("group_joints", torch.as_tensor(bones.reshape(-1), dtype=torch.long),
                             persistent=False)
        mean = torch.zeros(num_joints, 2 * num_bones)
        mean[bones.reshape(-1), torch.arange(2 * num_bones)] = 1.0
        counts = mean.sum(1, keepdim=True)
        self.register_buffer("ungrouped", (counts == 0).float().view(1, -1, 1, 1), persistent=False)
        mean = mean / counts.clamp(min=1)
        init_pose_weights(self)
        if ditm:
            self.adapter = ParameterAdapter(num_bones, adapter_bn_relu)  # default (Kaiming) init
            self.transfer = nn.Conv2d(2 * num_bones, 2 * num_bones, 1, groups=num_bones)
            with torch.no_grad():  # starts as the identity: the joint group passes through unchanged
                self.transfer.weight.copy_(torch.eye(2).repeat(num_bones, 1)[:, :, None, None])
                self.transfer.bias.zero_()
            if cab:
                self.channel_attention = GroupChannelAttention(num_bones, attention_bn_relu, attention_gamma)
            if merge == "learned":
                self.merge = nn.Conv2d(2 * num_bones, num_joints, 1)
                with torch.no_grad():
                    self.merge.weight.copy_(mean[:, :, None, None])
                    self.merge.bias.zero_()
            else:
                self.register_buffer("merge_weight", mean[:, :, None, None], persistent=False)
        if sab:
            self.spatial_attention = SpatialAttention(num_joints, attention_bn_relu, gamma=attention_gamma)

    def dynamic_kernels(self, bone_maps: torch.Tensor) -> torch.Tensor:
        """theta (N, 2B, kh, kw) from the bone maps (N, B, h, w)."""
        theta = self.adapter(bone_maps.repeat_interleave(2, dim=1))
        kh, kw = theta.shape[-2:]
        if self.adapter_kernel == "square":
            if (kh, kw) != (self.kernel_size, self.kernel_size):
                theta = F.interpolate(theta, size=(self.kernel_size, self.kernel_size), mode="bilinear",
                                      align_corners=True)
        elif kh % 2 == 0 or kw % 2 == 0:
            raise PosekitError(f"DITN: heatmaps of {tuple(bone_maps.shape[-2:])} give a {kh}x{kw} dynamic "
                               "kernel; adapter_kernel='native' needs odd sizes (use 'square')")
        return theta

    def forward(self, feature: torch.Tensor) -> dict[str, torch.Tensor]:
        joint_maps = self.joint_decoder(feature)
        bone_maps = self.bone_decoder(feature)
        heatmaps = joint_maps
        if self.ditm:
            joint_groups = self.transfer(joint_maps.index_select(1, self.group_joints))
            theta = self.dynamic_kernels(bone_maps)
            transferred = adaptive_conv(joint_groups, theta, self.adaptive_conv)
            if self.cab:
                transferred = self.channel_attention(transferred)
            refined = joint_groups + transferred
            if hasattr(self, "merge"):
                merged = self.merge(refined)
            else:
                merged = F.conv2d(refined, self.merge_weight)
            heatmaps = merged + joint_maps * self.ungrouped
        if self.sab:
            heatmaps = self.spatial_attention(heatmaps)
        return {"heatmaps": heatmaps, "bone_heatmaps": bone_maps}


def adaptive_conv(joint_groups: torch.Tensor, theta: torch.Tensor, mode: str = "full") -> torch.Tensor:
    """AC of Eq. (2): filter each 2-channel joint group (N, 2B, h, w) with its sample's kernels theta
    (N, 2B, kh, kw), no bias. ``"full"``: a 2->2 conv whose kernel for output o is theta's channel o
    for both inputs, computed as theta_o * (x_0 + x_1); ``"depthwise"``: x_o * theta_o."""
    if mode == "full":
        n, c, h, w = joint_groups.shape
        pair_sum = joint_groups.view(n, c // 2, 2, h, w).sum(2)
        return dynamic_depthwise_conv2d(pair_sum, theta)   # each pair sum meets its group's 2 kernels
    return dynamic_depthwise_conv2d(joint_groups, theta)


class DITN(nn.Module):
    """Backbone + :class:`DITNHead`. ``forward(images)`` -> heatmaps and bone heatmaps.

    ``arch``: an HRNet (``w32``, ``w48``, ``w18-small`` or an :class:`HRNetSpec`; the head reads its
    highest-resolution branch) or a ResNet depth (``r50``, ``r101``, ``r152``; the head reads the
    256-channel output of SimpleBaseline's deconvolutions, which belong to the backbone here)."""

    def __init__(self, skeleton: Skeleton | str = "coco17", arch: str | HRNetSpec = "w32", **head_options):
        super().__init__()
        if isinstance(arch, str) and arch in RESNET_LAYERS:
            self.backbone = SimpleBaselineBackbone(arch)
        else:
            self.backbone = HRNetBackbone(arch)
            init_pose_weights(self.backbone)
        self.head = DITNHead(self.backbone.out_channels, skeleton, **head_options)
        self.num_joints = self.head.num_joints

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.head(self.backbone(images))


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise PosekitError(f"DITN: {name} must be one of {', '.join(choices)}; got {value!r}")
