"""HRNet (Sun et al., CVPR 2019) for top-down heatmap pose estimation.

The module tree reproduces the parameter names and shapes of the reference implementation
(deep-high-resolution-net.pytorch, ``lib/models/pose_hrnet.py``), so its released checkpoints such as
``pose_hrnet_w32_256x192.pth`` load with ``strict=True``: ``conv1``/``bn1``/``conv2``/``bn2`` (stem),
``layer1`` (four bottlenecks), ``transition1..3``, ``stage2..4`` (high-resolution modules with
``branches`` and ``fuse_layers``) and ``final_layer`` (1x1 conv with bias). Places where the reference
stores ``None`` in a ``ModuleList`` hold a parameter-free ``nn.Identity`` here, which leaves the key set
unchanged. MMPose checkpoints use the same backbone tree under ``backbone.`` and the head under
``keypoint_head.`` (0.x) or ``head.`` (1.x); :func:`convert_mmpose_hrnet` renames them.

Widths: W32 and W48 are the paper's pose models. ``w18-small`` follows HRNetV2-W18-Small-v2
(stem 64, two bottlenecks, stages of 1/3/2 modules with two basic blocks per branch, widths 18-144), a
3.9 M-parameter backbone that runs a 256x192 crop in tens of milliseconds on a laptop CPU.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from posekit.errors import PosekitError


@dataclass(frozen=True)
class StageSpec:
    """One HRNet stage: ``num_modules`` high-resolution modules over ``len(channels)`` branches."""

    num_modules: int
    num_blocks: tuple[int, ...]
    channels: tuple[int, ...]


@dataclass(frozen=True)
class HRNetSpec:
    """Backbone architecture (the ``MODEL.EXTRA`` block of the reference configs)."""

    stem_blocks: int
    stages: tuple[StageSpec, StageSpec, StageSpec]

    @property
    def width(self) -> int:
        """Channels of the highest-resolution branch (the feature the heads read)."""
        return self.stages[0].channels[0]


def _standard(width: int) -> HRNetSpec:
    w = width
    return HRNetSpec(stem_blocks=4, stages=(
        StageSpec(1, (4, 4), (w, 2 * w)),
        StageSpec(4, (4, 4, 4), (w, 2 * w, 4 * w)),
        StageSpec(3, (4, 4, 4, 4), (w, 2 * w, 4 * w, 8 * w))))


ARCHS: dict[str, HRNetSpec] = {
    "w32": _standard(32),
    "w48": _standard(48),
    "w18-small": HRNetSpec(stem_blocks=2, stages=(
        StageSpec(1, (2, 2), (18, 36)),
        StageSpec(3, (2, 2, 2), (18, 36, 72)),
        StageSpec(2, (2, 2, 2, 2), (18, 36, 72, 144)))),
}


def hrnet_spec(arch: str | HRNetSpec) -> HRNetSpec:
    if isinstance(arch, HRNetSpec):
        return arch
    try:
        return ARCHS[arch]
    except KeyError:
        raise PosekitError(f"unknown HRNet architecture {arch!r}; known: {', '.join(ARCHS)}") from None


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, momentum=0.1)


class BasicBlock(nn.Module):
    """Two 3x3 convs with an identity shortcut (the branch unit of stages 2-4)."""

    expansion = 1

    def __init__(self, in_channels: int, channels: int, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, 1, 1, bias=False)
        self.bn1 = _bn(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = _bn(channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + shortcut)


class Bottleneck(nn.Module):
    """1x1 - 3x3 - 1x1 (x4 expansion) residual unit: HRNet's stem ``layer1`` and the ResNet layers
    (posekit.models.resnet), which stride on the 3x3 conv as the reference and torchvision do."""

    expansion = 4

    def __init__(self, in_channels: int, channels: int, downsample: nn.Module | None = None, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = _bn(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride, 1, bias=False)
        self.bn2 = _bn(channels)
        self.conv3 = nn.Conv2d(channels, channels * 4, 1, bias=False)
        self.bn3 = _bn(channels * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + shortcut)


def _conv_bn(cin: int, cout: int, kernel: int, stride: int, relu: bool) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class HighResolutionModule(nn.Module):
    """Parallel branches followed by all-to-all fusion (upsample by 1x1+nearest, downsample by
    strided 3x3 chains). With ``multi_scale_output=False`` only the highest-resolution output is fused,
    as in the last module of stage 4."""

    def __init__(self, num_blocks: tuple[int, ...], channels: tuple[int, ...], multi_scale_output: bool):
        super().__init__()
        self.num_branches = len(channels)
        self.branches = nn.ModuleList(
            nn.Sequential(*[BasicBlock(c, c) for _ in range(n)]) for n, c in zip(num_blocks, channels))
        self.fuse_layers = nn.ModuleList()
        if self.num_branches == 1:
            return
        for i in range(self.num_branches if multi_scale_output else 1):
            row = nn.ModuleList()
            for j in range(self.num_branches):
                if j > i:
                    row.append(nn.Sequential(nn.Conv2d(channels[j], channels[i], 1, 1, 0, bias=False),
                                             nn.BatchNorm2d(channels[i]),
                                             nn.Upsample(scale_factor=2 ** (j - i), mode="nearest")))
                elif j == i:
                    row.append(nn.Identity())
                else:
                    steps = [_conv_bn(channels[j], channels[j], 3, 2, relu=True) for _ in range(i - j - 1)]
                    steps.append(_conv_bn(channels[j], channels[i], 3, 2, relu=False))
                    row.append(nn.Sequential(*steps))
            self.fuse_layers.append(row)
        self.relu = nn.ReLU(inplace=False)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        if self.num_branches == 1:
            return xs
        fused = []
        for row in self.fuse_layers:
            y = row[0](xs[0])
            for j in range(1, self.num_branches):
                y = y + row[j](xs[j])
            fused.append(self.relu(y))
        return fused


class HRNetBackbone(nn.Module):
    """Stem + four stages; ``forward`` returns the highest-resolution feature (stride 4)."""

    def __init__(self, arch: str | HRNetSpec = "w32"):
        super().__init__()
        spec = hrnet_spec(arch)
        self.spec = spec
        self.conv1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False)
        self.bn1 = _bn(64)
        self.conv2 = nn.Conv2d(64, 64, 3, 2, 1, bias=False)
        self.bn2 = _bn(64)
        self.relu = nn.ReLU(inplace=True)
        downsample = nn.Sequential(nn.Conv2d(64, 256, 1, bias=False), _bn(256))
        self.layer1 = nn.Sequential(Bottleneck(64, 64, downsample),
                                    *[Bottleneck(256, 64) for _ in range(spec.stem_blocks - 1)])
        previous = (256,)
        for number, stage in enumerate(spec.stages, start=2):
            setattr(self, f"transition{number - 1}", self._transition(previous, stage.channels))
            last = number == 4
            modules = [HighResolutionModule(stage.num_blocks, stage.channels,
                                            multi_scale_output=not (last and m == stage.num_modules - 1))
                       for m in range(stage.num_modules)]
            setattr(self, f"stage{number}", nn.Sequential(*modules))
            previous = stage.channels
        self.out_channels = spec.width

    @staticmethod
    def _transition(previous: tuple[int, ...], current: tuple[int, ...]) -> nn.ModuleList:
        layers = nn.ModuleList()
        for i, c in enumerate(current):
            if i < len(previous):
                layers.append(nn.Identity() if previous[i] == c else _conv_bn(previous[i], c, 3, 1, relu=True))
            else:
                steps = [_conv_bn(previous[-1], c if k == i - len(previous) else previous[-1], 3, 2, relu=True)
                         for k in range(i + 1 - len(previous))]
                layers.append(nn.Sequential(*steps))
        return layers

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(images)))
        x = self.relu(self.bn2(self.conv2(x)))
        xs = [self.layer1(x)]
        for transition, stage in ((self.transition1, self.stage2), (self.transition2, self.stage3),
                                  (self.transition3, self.stage4)):
            # New branches start from the lowest-resolution output of the previous stage.
            xs = [t(xs[i] if i < len(xs) else xs[-1]) for i, t in enumerate(transition)]
            xs = stage(xs)
        return xs[0]


class PoseHRNet(HRNetBackbone):
    """HRNet + ``final_layer`` (1x1 conv with bias): the reference pose model.

    ``forward`` returns ``{"heatmaps": (N, K, H/4, W/4)}``."""

    def __init__(self, arch: str | HRNetSpec = "w32", num_joints: int = 17):
        super().__init__(arch)
        self.num_joints = num_joints
        self.final_layer = nn.Conv2d(self.out_channels, num_joints, 1, 1, 0)
        init_pose_weights(self)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"heatmaps": self.final_layer(super().forward(images))}


def init_pose_weights(module: nn.Module) -> None:
    """The reference initialisation: conv and deconv weights N(0, 0.001), biases 0, BN weight 1 / bias 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, std=0.001)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


BACKBONE_PREFIXES = ("conv1.", "bn1.", "conv2.", "bn2.", "layer1.", "transition1.", "stage2.",
                     "transition2.", "stage3.", "transition3.", "stage4.")


def convert_mmpose_hrnet(state_dict: dict) -> dict:
    """Rename an MMPose top-down HRNet checkpoint to the reference layout.

    ``backbone.X`` becomes ``X``; ``keypoint_head.final_layer.*`` (MMPose 0.x) and
    ``head.final_layer.*`` (MMPose 1.x) become ``final_layer.*``. A key that fits neither (e.g. a head
    with deconvolution layers) raises, since silently dropping weights would give a wrong model."""
    out = {}
    for key, value in state_dict.items():
        if key.startswith("backbone."):
            out[key[len("backbone."):]] = value
            continue
        for head in ("keypoint_head.final_layer.", "head.final_layer."):
            if key.startswith(head):
                out["final_layer." + key[len(head):]] = value
                break
        else:
            raise PosekitError(f"checkpoint key {key!r} is not part of an MMPose HRNet heatmap model")
    return out


def to_mmpose_hrnet(state_dict: dict, head: str = "head") -> dict:
    """Inverse of :func:`convert_mmpose_hrnet` (``head`` = ``"head"`` for 1.x, ``"keypoint_head"`` for 0.x)."""
    if head not in ("head", "keypoint_head"):
        raise PosekitError(f"head must be 'head' or 'keypoint_head', got {head!r}")
    return {(f"{head}.{k}" if k.startswith("final_layer.") else f"backbone.{k}"): v
            for k, v in state_dict.items()}


def backbone_state(state_dict: dict) -> dict:
    """The HRNet backbone part of a state dict, in the reference names, for initialising a backbone:
    reference pose and ImageNet checkpoints (their heads are left out) as well as checkpoints that
    keep the backbone under ``backbone.`` (MMPose, posekit's DITN)."""
    out = {}
    for key, value in state_dict.items():
        name = key[len("backbone."):] if key.startswith("backbone.") else key
        if name.startswith(BACKBONE_PREFIXES):
            out[name] = value
    return out
