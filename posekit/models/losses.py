"""Heatmap losses: HRNet's weighted MSE, focal L2 (joints, DITN Eqs. 6-7), smooth L1 (bones,
Eqs. 8-9) and DITN's sum L = L_J + lambda * L_B (Eq. 10, lambda = 0.1).

Every loss averages over batch, channels and pixels (DITN's 1/(W*H*J)), with per-channel target
weights (N, K) multiplying the per-pixel terms, so unlabelled joints and bones contribute zero but
still count in the mean, as in HRNet.

Focal L2: the factor printed in DITN's Eq. 7 (1 - pred on background, the target value on
foreground) would up-weight the easy background. The cited source (Simple Pose, Li et al. AAAI
2020, ``focal_l2_loss`` in its public code) weights foreground pixels (target >= thre) by
|1 - pred| and background pixels by |pred|, i.e. it stresses the hard pixels like a focal loss.
posekit follows the source (``factor="simple_pose"``, default) and raises the factor to gamma = 2
as DITN's Eq. 6 states; ``factor="printed"`` gives Eq. 7 as printed, for comparison.

Smooth L1 with beta = 1 on heatmaps in [0, 1] is 0.5 * (pred - target)^2 wherever the prediction
is within 1 of the target: it differs from half the MSE only on outliers, which is its purpose.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from posekit.errors import PosekitError

FOCAL_FACTORS = ("simple_pose", "printed")


def _weights(weight: torch.Tensor | None, pred: torch.Tensor) -> torch.Tensor | float:
    if weight is None:
        return 1.0
    n, k = pred.shape[:2]
    if weight.numel() != n * k:
        raise PosekitError(f"target weights have shape {tuple(weight.shape)}; expected ({n}, {k})")
    return weight.reshape(n, k, 1, 1).to(pred.dtype)


def _check(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape or pred.dim() != 4:
        raise PosekitError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} must both "
                           "be (N, K, H, W)")


def joints_mse_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """HRNet's ``JointsMSELoss``: 0.5 * mean((w * pred - w * target)^2)."""
    _check(pred, target)
    w = _weights(weight, pred)
    return 0.5 * ((pred * w - target * w) ** 2).mean()


def focal_l2_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
                  gamma: float = 2.0, thre: float = 0.01, factor: str = "simple_pose") -> torch.Tensor:
    """mean((pred - target)^2 * FAC^gamma * w); FAC per ``factor`` (see the module docstring)."""
    _check(pred, target)
    foreground = target >= thre
    if factor == "simple_pose":
        fac = torch.where(foreground, (1 - pred).abs(), pred.abs())
    elif factor == "printed":
        fac = torch.where(foreground, target, 1 - pred)
    else:
        raise PosekitError(f"focal L2 factor must be one of {', '.join(FOCAL_FACTORS)}; got {factor!r}")
    return ((pred - target) ** 2 * fac ** gamma * _weights(weight, pred)).mean()


def smooth_l1_heatmap_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
                           beta: float = 1.0) -> torch.Tensor:
    """mean(SmoothL1(pred - target) * w) with the Fast R-CNN definition (beta = 1)."""
    _check(pred, target)
    per_pixel = F.smooth_l1_loss(pred, target, reduction="none", beta=beta)
    return (per_pixel * _weights(weight, pred)).mean()


class JointsMSELoss(nn.Module):
    def forward(self, pred, target, weight=None):
        return joints_mse_loss(pred, target, weight)


class FocalL2Loss(nn.Module):
    def __init__(self, gamma: float = 2.0, thre: float = 0.01, factor: str = "simple_pose"):
        super().__init__()
        if factor not in FOCAL_FACTORS:
            raise PosekitError(f"focal L2 factor must be one of {', '.join(FOCAL_FACTORS)}; got {factor!r}")
        self.gamma, self.thre, self.factor = float(gamma), float(thre), factor

    def forward(self, pred, target, weight=None):
        return focal_l2_loss(pred, target, weight, self.gamma, self.thre, self.factor)


class SmoothL1HeatmapLoss(nn.Module):
    def __init__(self, beta: float = 1.0):
        super().__init__()
        self.beta = float(beta)

    def forward(self, pred, target, weight=None):
        return smooth_l1_heatmap_loss(pred, target, weight, self.beta)


def heatmap_loss(name: str, gamma: float = 2.0, thre: float = 0.01, factor: str = "simple_pose",
                 beta: float = 1.0) -> nn.Module:
    """One elementary loss by name: ``mse`` | ``focal_l2`` | ``smooth_l1``."""
    if name == "mse":
        return JointsMSELoss()
    if name == "focal_l2":
        return FocalL2Loss(gamma, thre, factor)
    if name == "smooth_l1":
        return SmoothL1HeatmapLoss(beta)
    raise PosekitError(f"unknown heatmap loss {name!r}; known: mse, focal_l2, smooth_l1")


class DITNLoss(nn.Module):
    """L = L_J + bone_weight * L_B on a model's outputs and the codec's targets.

    ``forward(outputs, targets)`` reads ``outputs["heatmaps"]`` / ``targets["heatmaps"]`` and
    ``targets["weights"]`` and, when ``bone`` is not None, ``outputs["bone_heatmaps"]`` /
    ``targets["bone_heatmaps"]`` / ``targets["bone_weights"]``; it returns ``{"loss", "joint_loss"}``
    plus ``"bone_loss"``. ``bone=None`` is the plain HRNet objective. Table 6's settings are
    (joint, bone) = (mse, mse), (focal_l2, focal_l2) and (focal_l2, smooth_l1) (the default)."""

    def __init__(self, joint: str = "focal_l2", bone: str | None = "smooth_l1", bone_weight: float = 0.1,
                 gamma: float = 2.0, thre: float = 0.01, focal_factor: str = "simple_pose", beta: float = 1.0):
        super().__init__()
        self.joint = heatmap_loss(joint, gamma, thre, focal_factor, beta)
        self.bone = None if bone is None else heatmap_loss(bone, gamma, thre, focal_factor, beta)
        self.bone_weight = float(bone_weight)

    def forward(self, outputs: dict, targets: dict) -> dict[str, torch.Tensor]:
        joint = self.joint(outputs["heatmaps"], targets["heatmaps"], targets.get("weights"))
        out = {"joint_loss": joint, "loss": joint}
        if self.bone is not None:
            if "bone_heatmaps" not in outputs or "bone_heatmaps" not in targets:
                raise PosekitError("the bone loss needs 'bone_heatmaps' from the model (a DITN model) and "
                                   "the targets (a codec built with bones=True)")
            bone = self.bone(outputs["bone_heatmaps"], targets["bone_heatmaps"], targets.get("bone_weights"))
            out["bone_loss"] = bone
            out["loss"] = joint + self.bone_weight * bone
        return out


LOSS_OPTIONS = ("joint", "bone", "bone_weight", "gamma", "thre", "focal_factor", "beta")


def build_loss(cfg: str | dict) -> DITNLoss:
    """``"mse"`` (HRNet baseline), ``"ditn"`` (focal L2 + 0.1 * smooth L1), or a dict of
    :class:`DITNLoss` options (``joint``, ``bone``, ``bone_weight``, ``gamma``, ``thre``,
    ``focal_factor``, ``beta``)."""
    if cfg == "mse":
        return DITNLoss(joint="mse", bone=None)
    if cfg == "ditn":
        return DITNLoss()
    if not isinstance(cfg, dict):
        raise PosekitError(f"loss must be 'mse', 'ditn' or a mapping of options; got {cfg!r}")
    unknown = sorted(set(cfg) - set(LOSS_OPTIONS))
    if unknown:
        raise PosekitError(f"loss: unknown option(s) {', '.join(unknown)}; known: {', '.join(LOSS_OPTIONS)}")
    return DITNLoss(**cfg)
