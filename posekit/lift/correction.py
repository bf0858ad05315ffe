"""Test-time self-supervised correction (SSC, Eqs. 3-4 of 3D Human Pose Machines).

Every frame gets its own copy of the projector weights {omega_C, omega_P}; a few gradient steps make the
copy's 2D projection Psi_P(Psi_C(p3d)) match the frame's input 2D keypoints, and the frame's output is
Psi_C(p3d; omega_C^t). The copies are thrown away afterwards. All frames are corrected at once: the
copies are stacked along a leading frame axis, so one batched forward/backward updates every frame's
weights with that frame's own gradient (the frames' losses are independent).

Choices where the paper is silent (all in :class:`CorrectionSettings`):

* optimizer: per-element Adam (default; its first step moves every weight by about ``lr``, the paper's
  "small iteration number with large learning rate") or plain SGD; ``lr`` was chosen on held-out motion.
* loss: squared 2D error summed over the joints, each joint weighted by its detection score (missing
  joints weigh 0), in the normalised 2D space of the network input.
* stop / discard: after each step the robust joints (pelvis, shoulders, hips, by name) are compared in mm.
  Their mean displacement since the previous step below ``epsilon_mm`` stops the frame (converged); their
  mean displacement from the reference (``reference="initial"``: the uncorrected Psi_C output;
  ``"previous"``: the previous step) above ``tau_mm`` discards the correction and the frame keeps the
  uncorrected Psi_C output. At most ``steps`` updates (two by default, as in the paper).
* batch norm runs in inference mode (its running statistics are not per-frame); its scale and shift are
  part of the per-frame copies.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from posekit.errors import PosekitError
from posekit.lift.model import METRES, Projector
from posekit.skeletons import get_skeleton

ROBUST_JOINTS = ("pelvis", "left_shoulder", "right_shoulder", "left_hip", "right_hip")
_LAYERS_C = (("c_in", "c_bn"), ("c_out", None))
_LAYERS_P = (("p_in", "p_bn0"), ("p_fc1", "p_bn1"), ("p_fc2", "p_bn2"), ("p_out", None))


@dataclass
class CorrectionSettings:
    """Test-time correction options (see the module notes); the paper gives epsilon, tau and two steps."""

    steps: int = 2
    epsilon_mm: float = 5.0
    tau_mm: float = 20.0
    optimizer: str = "adam"
    lr: float = 1e-4
    reference: str = "initial"
    update: tuple = ("correct", "project")
    robust_joints: tuple = ROBUST_JOINTS
    chunk: int = 256

    def __post_init__(self):
        self.update, self.robust_joints = tuple(self.update), tuple(self.robust_joints)
        if self.optimizer not in ("adam", "sgd"):
            raise PosekitError(f"correction: optimizer must be adam or sgd, got {self.optimizer!r}")
        if self.reference not in ("initial", "previous"):
            raise PosekitError(f"correction: reference must be initial or previous, got {self.reference!r}")
        if not set(self.update) <= {"correct", "project"} or not self.update:
            raise PosekitError(f"correction: update must name correct and/or project, got {self.update!r}")
        if self.steps < 0 or self.chunk < 1:
            raise PosekitError(f"correction: steps must be >= 0 and chunk >= 1, got {self.steps}, {self.chunk}")
        for name in ("epsilon_mm", "tau_mm", "lr"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise PosekitError(f"correction: {name} must be a finite number >= 0, got {value}")


def _layer_params(projector: Projector, layers, frames: int, per_frame: bool) -> list[dict]:
    """Weights of ``layers`` as tensors; per-frame trainable copies (frames, ...) when ``per_frame``."""
    out = []
    for linear_name, bn_name in layers:
        linear = getattr(projector, linear_name)
        entry = {"W": linear.weight.detach(), "b": linear.bias.detach()}
        if bn_name is not None:
            bn = getattr(projector, bn_name)
            entry["inv_std"] = torch.rsqrt(bn.running_var.detach() + bn.eps)
            entry["mean"] = bn.running_mean.detach()
            entry["g"], entry["beta"] = bn.weight.detach(), bn.bias.detach()
        if per_frame:
            for key in ("W", "b", "g", "beta"):
                if key in entry:
                    entry[key] = entry[key].expand(frames, *entry[key].shape).clone().requires_grad_(True)
        out.append(entry)
    return out


def _apply(entry: dict, x: torch.Tensor) -> torch.Tensor:
    """One FC layer, followed by batch norm (inference mode) and ReLU where the projector has them."""
    W = entry["W"]
    y = (torch.einsum("foi,fi->fo", W, x) if W.dim() == 3 else x @ W.T) + entry["b"]
    if "g" in entry:
        y = torch.relu((y - entry["mean"]) * entry["inv_std"] * entry["g"] + entry["beta"])
    return y


def _correct(params_c: list[dict], p3d: torch.Tensor) -> torch.Tensor:
    return p3d + _apply(params_c[1], _apply(params_c[0], p3d))


def _project(params_p: list[dict], p3d: torch.Tensor) -> torch.Tensor:
    x = _apply(params_p[0], p3d)
    return _apply(params_p[3], x + _apply(params_p[2], _apply(params_p[1], x)))


def _trainable(params: list[dict]) -> list[torch.Tensor]:
    return [t for entry in params for t in entry.values() if t.requires_grad]


def _robust_move_mm(a: torch.Tensor, b: torch.Tensor, robust: torch.Tensor, joints: int) -> torch.Tensor:
    diff = (a - b).reshape(len(a), joints, 3)[:, robust]
    return diff.norm(dim=-1).mean(dim=-1) * METRES


def self_supervised_correction(projector: Projector, p3d, target_2d, weights=None,
                               settings: CorrectionSettings | None = None, skeleton="h36m17") -> dict:
    """Correct intermediate 3D poses ``p3d`` (F, K, 3) metres against 2D ``target_2d`` (F, K, 2) in the
    projector's normalised 2D space, joint ``weights`` (F, K) (default 1).

    Returns ``pose`` (F, K, 3) corrected (discarded frames: the uncorrected Psi_C output),
    ``initial`` (F, K, 3) the uncorrected Psi_C output, ``steps`` (F,) updates kept per frame,
    ``converged`` and ``discarded`` (F,) bool. The projector's own weights are not changed.
    """
    settings = settings or CorrectionSettings()
    skeleton = get_skeleton(skeleton)
    p3d = torch.as_tensor(p3d, dtype=torch.float32)
    target = torch.as_tensor(target_2d, dtype=torch.float32)
    frames, joints = p3d.shape[:2]
    if p3d.shape != (frames, joints, 3) or target.shape != (frames, joints, 2) or joints != projector.joints:
        raise PosekitError(f"correction: expected p3d (F, {projector.joints}, 3) and 2D (F, {projector.joints}, 2), "
                           f"got {tuple(p3d.shape)} and {tuple(target.shape)}")
    w = torch.ones(frames, joints) if weights is None else torch.as_tensor(weights, dtype=torch.float32)
    robust = torch.tensor([skeleton.index(name) for name in settings.robust_joints])
    results = [_correct_chunk(projector, p3d[i:i + settings.chunk], target[i:i + settings.chunk],
                              w[i:i + settings.chunk], settings, robust) for i in range(0, frames, settings.chunk)]
    if not results:
        raise PosekitError("correction: no frames to correct")
    return {key: torch.cat([r[key] for r in results]).numpy() for key in results[0]}


def _correct_chunk(projector, p3d, target, weights, settings: CorrectionSettings, robust) -> dict:
    frames, joints = p3d.shape[:2]
    flat3d = p3d.reshape(frames, -1)
    flat2d = target.reshape(frames, joints, 2)
    weights = torch.nan_to_num(weights, nan=0.0).clamp(min=0.0)
    params_c = _layer_params(projector, _LAYERS_C, frames, "correct" in settings.update)
    params_p = _layer_params(projector, _LAYERS_P, frames, "project" in settings.update)
    trainable = _trainable(params_c) + _trainable(params_p)
    moments = [(torch.zeros_like(t), torch.zeros_like(t)) for t in trainable]
    with torch.no_grad():
        initial = _correct(params_c, flat3d)
    current = initial.clone()
    active = torch.ones(frames, dtype=torch.bool)
    discarded = torch.zeros(frames, dtype=torch.bool)
    converged = torch.zeros(frames, dtype=torch.bool)
    steps = torch.zeros(frames, dtype=torch.long)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for step in range(1, settings.steps + 1):
        if not active.any():
            break
        with torch.enable_grad():
            projected = _project(params_p, _correct(params_c, flat3d)).reshape(frames, joints, 2)
            loss = (((projected - flat2d) ** 2).sum(-1) * weights).sum()
            grads = torch.autograd.grad(loss, trainable)
        with torch.no_grad():
            # Frames already stopped keep their output in ``current``; their copies may go on changing.
            bias1, bias2 = 1 - beta1 ** step, 1 - beta2 ** step
            for tensor, grad, (m, v) in zip(trainable, grads, moments):
                if settings.optimizer == "sgd":
                    tensor.sub_(grad, alpha=settings.lr)
                    continue
                m.mul_(beta1).add_(grad, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                tensor.addcdiv_(m, (v / bias2).sqrt_().add_(eps), value=-settings.lr / bias1)
            new = _correct(params_c, flat3d)
            move = _robust_move_mm(new, current, robust, joints)
            drift = _robust_move_mm(new, initial if settings.reference == "initial" else current, robust, joints)
            discard_now = active & (drift > settings.tau_mm)
            converge_now = active & ~discard_now & (move < settings.epsilon_mm)
            keep = active & ~discard_now
            current[keep] = new[keep]
            steps[keep] = step
            discarded |= discard_now
            converged |= converge_now
            active &= ~(discard_now | converge_now)
    pose = torch.where(discarded[:, None], initial, current)
    steps[discarded] = 0
    return {"pose": pose.reshape(frames, joints, 3), "initial": initial.reshape(frames, joints, 3),
            "steps": steps, "converged": converged, "discarded": discarded}


__all__ = ["CorrectionSettings", "ROBUST_JOINTS", "self_supervised_correction"]
