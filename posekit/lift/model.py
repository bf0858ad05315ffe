"""Monocular 3D pose machine: 2D-to-3D transformer (FC + stacked LSTM) and the 3D-to-2D projector.

Two transformer front ends share the temporal part (:class:`TemporalRegressor`):

* :class:`KeypointLifter`: 2D keypoints (normalised by :func:`normalize_keypoints`) -> FC -> LSTMs -> 3K.
* :class:`FeaturePoseMachine3D`: CPM/VGG trunk of Table 1 (368x368 crop -> 128x46x46 features), two
  5x5 stride-2 convs of 128 (padding 2, the paper gives none) and one 2x2 max-pool -> 128x6x6 -> FC -> LSTMs.

Both return (3D pose, LSTM state): the state of the last frame can be passed with the next clip of the same
sequence, so a long sequence can be processed clip by clip exactly as in one pass (the paper's H_{t-1}).

Coordinates: the 3D output is root-relative (pelvis at 0) in metres, camera axes (x right, y down,
z forward); :data:`METRES` converts to millimetres. The projector (:class:`Projector`) is Psi_C (2 FC,
3K -> hidden -> 3K) and Psi_P (4 FC: 3K -> width, two width layers with an identity shortcut, -> 2K),
ReLU + batch norm after each hidden FC; it maps a 3D pose to the normalised 2D keypoints.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from posekit.errors import PosekitError
from posekit.skeletons import get_skeleton

METRES = 1000.0  # network 3D unit (m) -> output unit (mm)
SKELETON = "h36m17"
ROOT = "pelvis"


def normalize_keypoints(keypoints, scores, image_size, skeleton=SKELETON) -> np.ndarray:
    """Network input (..., 3K + 2) float32 from pixels (..., K, 2), scores (..., K), image (width, height).

    Per frame: the pelvis (or, when it is missing, the mean of the visible joints) is subtracted and the
    coordinates are divided by the root-mean-square distance of the visible joints from it, so the input
    does not depend on where the person stands or how large they appear. Missing joints (score 0 or
    non-finite) become (0, 0) and their score 0. The last two values are the root's offset from the image
    centre divided by the image width, the only hint of the viewing direction left after the normalisation.
    Layout: x1, y1, ..., xK, yK, s1, ..., sK, root_x, root_y.
    """
    skeleton = get_skeleton(skeleton)
    kp = np.asarray(keypoints, dtype=np.float64)
    sc = np.asarray(scores, dtype=np.float64)
    visible = (sc > 0) & np.isfinite(kp).all(axis=-1)
    kp = np.where(visible[..., None], kp, 0.0)
    count = np.maximum(visible.sum(axis=-1, keepdims=True), 1)
    mean = kp.sum(axis=-2) / count
    root_index = skeleton.index(ROOT)
    root = np.where(visible[..., root_index, None], kp[..., root_index, :], mean)
    centred = np.where(visible[..., None], kp - root[..., None, :], 0.0)
    rms = np.sqrt((centred ** 2).sum(axis=(-1, -2)) / count[..., 0])
    scale = np.where(rms > 1e-6, rms, 1.0)
    unit = centred / scale[..., None, None]
    width, height = float(image_size[0]), float(image_size[1])
    offset = (root - np.array([(width - 1) / 2, (height - 1) / 2])) / width
    offset = np.where((visible.any(axis=-1))[..., None], offset, 0.0)
    flat = unit.reshape(*unit.shape[:-2], -1)
    return np.concatenate([flat, np.where(visible, sc, 0.0).clip(0, 1), offset], axis=-1).astype(np.float32)


def mirror_inputs(inputs: torch.Tensor, skeleton=SKELETON) -> torch.Tensor:
    """The network input of the horizontally mirrored image: x negated, left and right joints swapped
    (scores too), the root's horizontal offset negated (layout of :func:`normalize_keypoints`)."""
    flip = torch.as_tensor(get_skeleton(skeleton).flip_indices, device=inputs.device)
    joints = len(flip)
    coords = inputs[..., :2 * joints].unflatten(-1, (joints, 2)).index_select(-2, flip)
    coords = coords * torch.tensor([-1.0, 1.0], device=inputs.device, dtype=inputs.dtype)
    scores = inputs[..., 2 * joints:3 * joints].index_select(-1, flip)
    offset = inputs[..., 3 * joints:] * torch.tensor([-1.0, 1.0], device=inputs.device, dtype=inputs.dtype)
    return torch.cat([coords.flatten(-2), scores, offset], dim=-1)


def mirror_pose(pose: np.ndarray, skeleton=SKELETON) -> np.ndarray:
    """A 3D pose (..., K, 3) in camera axes seen in the mirrored image: x negated, left/right swapped."""
    mirrored = np.asarray(pose)[..., list(get_skeleton(skeleton).flip_indices), :].copy()
    mirrored[..., 0] *= -1
    return mirrored


def input_size(joints: int) -> int:
    return 3 * joints + 2


class TemporalRegressor(nn.Module):
    """Adapted feature (B, T, width) -> 3K per frame: ``layers`` LSTMs (no peepholes) or, for the
    "w/o temporal" ablation, per-frame FC+ReLU layers of the same width."""

    def __init__(self, width: int, joints: int, layers: int = 2, temporal: str = "lstm"):
        super().__init__()
        if temporal not in ("lstm", "fc"):
            raise PosekitError(f"lift model: temporal must be lstm or fc, got {temporal!r}")
        self.temporal = temporal
        if temporal == "lstm":
            self.recurrent = nn.LSTM(width, width, num_layers=layers, batch_first=True)
        else:
            self.recurrent = nn.Sequential(*[m for _ in range(layers) for m in (nn.Linear(width, width), nn.ReLU())])
        self.output = nn.Linear(width, 3 * joints)

    def forward(self, features: torch.Tensor, state=None):
        if self.temporal == "lstm":
            hidden, state = self.recurrent(features, state)
        else:
            hidden, state = self.recurrent(features), None
        return self.output(hidden), state


class KeypointLifter(nn.Module):
    """Normalised 2D keypoints (B, T, 3K+2) -> root-relative 3D (B, T, K, 3) metres, and the LSTM state."""

    def __init__(self, joints: int = 17, width: int = 1024, layers: int = 2, temporal: str = "lstm"):
        super().__init__()
        self.joints = joints
        self.adapter = nn.Sequential(nn.Linear(input_size(joints), width), nn.ReLU())
        self.temporal = TemporalRegressor(width, joints, layers, temporal)

    def forward(self, inputs: torch.Tensor, state=None):
        out, state = self.temporal(self.adapter(inputs), state)
        return out.unflatten(-1, (self.joints, 3)), state


# Table 1: the CPM/VGG-19 trunk; "M" is a 2x2 stride-2 max-pool, numbers are 3x3 stride-1 conv channels.
CPM_TRUNK = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 256, 256, 256, 256, 128)


def cpm_trunk() -> nn.Sequential:
    """Table 1 layers with "same" padding and ReLU (not stated, as in CPM): 368x368 -> 128x46x46."""
    layers, channels = [], 3
    for item in CPM_TRUNK:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, item, 3, padding=1), nn.ReLU(inplace=True)]
            channels = item
    return nn.Sequential(*layers)


class FeaturePoseMachine3D(nn.Module):
    """Image crops (B, T, 3, 368, 368), or trunk features (B, T, 128, 46, 46) with ``features=True``,
    -> 3D (B, T, K, 3) metres and the LSTM state (the paper's Psi_T on top of Psi_R's conv layers)."""

    def __init__(self, joints: int = 17, width: int = 1024, layers: int = 2, temporal: str = "lstm",
                 feature_size: int = 46):
        super().__init__()
        self.joints = joints
        self.trunk = cpm_trunk()
        self.adapter_convs = nn.Sequential(
            nn.Conv2d(128, 128, 5, stride=2, padding=2), nn.ReLU(inplace=True),
            nn.Conv2d(128, 128, 5, stride=2, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2, 2))
        side = ((feature_size + 1) // 2 + 1) // 2 // 2
        self.adapter = nn.Sequential(nn.Flatten(), nn.Linear(128 * side * side, width), nn.ReLU())
        self.temporal = TemporalRegressor(width, joints, layers, temporal)

    def forward(self, inputs: torch.Tensor, state=None, features: bool = False):
        batch, frames = inputs.shape[:2]
        flat = inputs.flatten(0, 1)
        maps = flat if features else self.trunk(flat)
        adapted = self.adapter(self.adapter_convs(maps)).unflatten(0, (batch, frames))
        out, state = self.temporal(adapted, state)
        return out.unflatten(-1, (self.joints, 3)), state


class Projector(nn.Module):
    """{Psi_C, Psi_P}: ``correct(p3d)`` (N, 3K) -> corrected 3D (N, 3K); ``project(p3d)`` -> 2D (N, 2K)."""

    def __init__(self, joints: int = 17, hidden: int = 1024, width: int = 1024):
        super().__init__()
        self.joints = joints
        self.c_in = nn.Linear(3 * joints, hidden)
        self.c_bn = nn.BatchNorm1d(hidden)
        self.c_out = nn.Linear(hidden, 3 * joints)
        self.p_in = nn.Linear(3 * joints, width)
        self.p_bn0 = nn.BatchNorm1d(width)
        self.p_fc1 = nn.Linear(width, width)
        self.p_bn1 = nn.BatchNorm1d(width)
        self.p_fc2 = nn.Linear(width, width)
        self.p_bn2 = nn.BatchNorm1d(width)
        self.p_out = nn.Linear(width, 2 * joints)
        nn.init.zeros_(self.c_out.weight)  # Psi_C starts as the identity (it learns a residual)
        nn.init.zeros_(self.c_out.bias)

    def correct(self, p3d: torch.Tensor) -> torch.Tensor:
        return p3d + self.c_out(torch.relu(self.c_bn(self.c_in(p3d))))

    def project(self, p3d: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.p_bn0(self.p_in(p3d)))
        y = torch.relu(self.p_bn1(self.p_fc1(x)))
        y = torch.relu(self.p_bn2(self.p_fc2(y)))
        return self.p_out(x + y)

    def forward(self, p3d: torch.Tensor):
        corrected = self.correct(p3d)
        return corrected, self.project(corrected)


class PoseMachine3D(nn.Module):
    """Transformer + projector (the model the ``lift3d`` task trains and ``posekit lift`` runs)."""

    def __init__(self, joints: int = 17, width: int = 1024, layers: int = 2, temporal: str = "lstm",
                 projector_hidden: int = 1024, projector_width: int = 1024, frontend: str = "keypoints"):
        super().__init__()
        if frontend == "keypoints":
            self.transformer = KeypointLifter(joints, width, layers, temporal)
        elif frontend == "cpm":
            self.transformer = FeaturePoseMachine3D(joints, width, layers, temporal)
        else:
            raise PosekitError(f"lift model: frontend must be keypoints or cpm, got {frontend!r}")
        self.projector = Projector(joints, projector_hidden, projector_width)
        self.joints = joints

    def forward(self, inputs: torch.Tensor, state=None):
        """(intermediate 3D (B, T, K, 3), corrected 3D (B, T, K, 3), projected 2D (B, T, K, 2), state)."""
        p3d, state = self.transformer(inputs, state)
        flat = p3d.flatten(0, 1).flatten(1)
        corrected, projected = self.projector(flat)
        shape = p3d.shape[:2]
        return (p3d, corrected.reshape(*shape, self.joints, 3), projected.reshape(*shape, self.joints, 2),
                state)


def bone_lengths_mm(pose_mm: np.ndarray, skeleton=SKELETON) -> np.ndarray:
    """(..., B) lengths of the skeleton's bones for (..., K, 3) poses."""
    skeleton = get_skeleton(skeleton)
    bones = np.asarray(skeleton.bone_array)
    return np.linalg.norm(pose_mm[..., bones[:, 0], :] - pose_mm[..., bones[:, 1], :], axis=-1)


__all__ = ["METRES", "normalize_keypoints", "input_size", "TemporalRegressor", "KeypointLifter", "cpm_trunk",
           "FeaturePoseMachine3D", "Projector", "PoseMachine3D", "bone_lengths_mm"]
