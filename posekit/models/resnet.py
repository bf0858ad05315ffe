"""SimpleBaseline (Xiao, Wu, Wei, ECCV 2018): a ResNet followed by three deconvolutions, for
top-down heatmap pose estimation.

The module tree reproduces the parameter names and shapes of the reference ``lib/models/pose_resnet.py``
(human-pose-estimation.pytorch, deep-high-resolution-net.pytorch), so its released checkpoints such
as ``pose_resnet_50_256x192.pth`` load with ``strict=True``:

* ``conv1`` (7x7 stride 2, no bias) / ``bn1``, then a 3x3 stride-2 max-pool;
* ``layer1``..``layer4``: bottlenecks (3-4-6-3 for ResNet-50, 3-4-23-3 for 101, 3-8-36-3 for 152) of
  widths 64-128-256-512 (x4 out), stride 1-2-2-2 on the 3x3 conv of the first block, whose shortcut
  is ``downsample`` = 1x1 strided conv + BN;
* ``deconv_layers``: 3 x [ConvTranspose2d 4x4 stride 2 padding 1, no bias, 256 channels; BN; ReLU]
  (indices 0-1, 3-4, 6-7): stride 32 back to stride 4;
* ``final_layer``: 1x1 conv with bias to the K heatmaps.

The trunk's names are torchvision's, so an ImageNet ``resnet50`` state dict (its ``fc`` left out)
initialises it as it is (:func:`resnet_backbone_state`). Initialisation without pretrained weights:
the trunk as torchvision's ResNet (Kaiming-normal fan-out convs, BN 1/0); the deconvolutions and the
final layer as the reference (N(0, 0.001), BN 1/0, bias 0).
"""
from __future__ import annotations

import torch
from torch import nn

from posekit.errors import PosekitError
from posekit.models.hrnet import Bottleneck, init_pose_weights

RESNET_LAYERS: dict[str, tuple[int, int, int, int]] = {
    "r50": (3, 4, 6, 3),
    "r101": (3, 4, 23, 3),
    "r152": (3, 8, 36, 3),
}
LAYER_WIDTHS = (64, 128, 256, 512)
DECONV_CHANNELS = 256
NUM_DECONV_LAYERS = 3
TRUNK_PREFIXES = ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4.")
DECONV_PREFIX = "deconv_layers."


def resnet_layers(arch: str) -> tuple[int, int, int, int]:
    """Bottleneck counts of ``layer1``..``layer4`` for ``r50`` / ``r101`` / ``r152``."""
    try:
        return RESNET_LAYERS[arch]
    except (KeyError, TypeError):
        raise PosekitError(f"unknown ResNet architecture {arch!r}; known: {', '.join(RESNET_LAYERS)}") from None


class ResNet(nn.Module):
    """The ImageNet ResNet trunk without its pooling and classifier: ``forward`` returns the
    stride-32 feature (2048 channels)."""

    def __init__(self, arch: str = "r50"):
        super().__init__()
        blocks = resnet_layers(arch)
        self.arch = arch
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        channels = 64
        for number, (count, width) in enumerate(zip(blocks, LAYER_WIDTHS), start=1):
            stride = 1 if number == 1 else 2
            out = width * Bottleneck.expansion
            downsample = nn.Sequential(nn.Conv2d(channels, out, 1, stride, bias=False), nn.BatchNorm2d(out))
            layer = [Bottleneck(channels, width, downsample, stride)]
            layer += [Bottleneck(out, width) for _ in range(count - 1)]
            setattr(self, f"layer{number}", nn.Sequential(*layer))
            channels = out
        self.trunk_channels = channels
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class SimpleBaselineBackbone(ResNet):
    """ResNet + ``deconv_layers``: a 256-channel stride-4 feature, what the 1x1 heatmap layer (or
    DITN's decoders) read."""

    def __init__(self, arch: str = "r50"):
        super().__init__(arch)
        layers: list[nn.Module] = []
        channels = self.trunk_channels
        for _ in range(NUM_DECONV_LAYERS):
            layers += [nn.ConvTranspose2d(channels, DECONV_CHANNELS, 4, stride=2, padding=1, output_padding=0,
                                          bias=False),
                       nn.BatchNorm2d(DECONV_CHANNELS), nn.ReLU(inplace=True)]
            channels = DECONV_CHANNELS
        self.deconv_layers = nn.Sequential(*layers)
        self.out_channels = DECONV_CHANNELS
        init_pose_weights(self.deconv_layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.deconv_layers(super().forward(images))


class PoseResNet(SimpleBaselineBackbone):
    """SimpleBaseline: ResNet + deconvolutions + ``final_layer`` (1x1 conv with bias).

    ``forward`` returns ``{"heatmaps": (N, K, H/4, W/4)}``."""

    def __init__(self, arch: str = "r50", num_joints: int = 17):
        super().__init__(arch)
        self.num_joints = num_joints
        self.final_layer = nn.Conv2d(self.out_channels, num_joints, 1, 1, 0)
        init_pose_weights(self.final_layer)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"heatmaps": self.final_layer(super().forward(images))}


def resnet_backbone_state(state_dict: dict) -> dict:
    """The ResNet trunk and deconvolutions of a state dict, in the reference names, for initialising a
    backbone: torchvision ImageNet weights (``fc`` left out) and SimpleBaseline pose checkpoints
    (``final_layer`` left out) as well as checkpoints that keep the backbone under ``backbone.``
    (posekit's DITN)."""
    out = {}
    for key, value in state_dict.items():
        name = key[len("backbone."):] if key.startswith("backbone.") else key
        if name.startswith((*TRUNK_PREFIXES, DECONV_PREFIX)):
            out[name] = value
    return out
