"""Build the 2D heatmap models by name or config, and load checkpoints into them.

Names: ``hrnet-w32``, ``hrnet-w48``, ``hrnet-w18-small`` (plain HRNet with its 1x1 heatmap layer),
``simplebaseline-r50``, ``-r101``, ``-r152`` (ResNet + deconvolutions + 1x1 heatmap layer) and
``ditn-w32``, ``ditn-w48``, ``ditn-w18-small``, ``ditn-r50``, ``ditn-r101``, ``ditn-r152`` (that
backbone + DITN head). A config is a dict with ``name`` plus ``skeleton`` (default ``coco17``),
``num_joints`` (HRNet and SimpleBaseline only, instead of a skeleton), ``ablation`` (DITN,
Table 5: ``mtl``, ``mtl+ditm``, ``mtl+ditm+cab``, ``mtl+ditm+sab``, ``full``) and any
:class:`posekit.models.ditn.DITNHead` option (``ditm``, ``cab``, ``sab``, ``merge``,
``adaptive_conv``, ``adapter_kernel``, ``kernel_size``, ``adapter_bn_relu``, ``attention_bn_relu``,
``decoder_out_bn_relu``, ``attention_gamma``). The built model carries the full config as
``model.posekit_config`` so it can be stored beside the weights.
"""
from __future__ import annotations

import inspect
import json
from pathlib import Path

import torch
from torch import nn

from posekit.errors import PosekitError
from posekit.models.ditn import DITN, DITNHead
from posekit.models.hrnet import ARCHS, PoseHRNet, backbone_state, convert_mmpose_hrnet
from posekit.models.resnet import DECONV_PREFIX, RESNET_LAYERS, PoseResNet, ResNet, resnet_backbone_state
from posekit.skeletons import Skeleton, get_skeleton

BACKBONES = {"hrnet": tuple(ARCHS), "simplebaseline": tuple(RESNET_LAYERS), "ditn": (*ARCHS, *RESNET_LAYERS)}
FAMILIES = tuple(BACKBONES)
MODEL_NAMES = tuple(f"{family}-{arch}" for family, archs in BACKBONES.items() for arch in archs)
ABLATIONS = {
    "mtl": dict(ditm=False, cab=False, sab=False),
    "mtl+ditm": dict(ditm=True, cab=False, sab=False),
    "mtl+ditm+cab": dict(ditm=True, cab=True, sab=False),
    "mtl+ditm+sab": dict(ditm=True, cab=False, sab=True),
    "full": dict(ditm=True, cab=True, sab=True),
}
HEAD_OPTIONS = tuple(p for p in inspect.signature(DITNHead.__init__).parameters
                     if p not in ("self", "in_channels", "skeleton"))
# The papers' input crops per keypoint set (height, width); other sets default to COCO's.
DEFAULT_INPUT = {"mpii16": (256, 256)}
STRIDE = 32  # HRNet's lowest-resolution branch, ResNet's layer4; input sides must be multiples of it.


def build_model(spec: str | dict, **overrides) -> nn.Module:
    """A model from a name or a config dict (``overrides`` update the dict)."""
    cfg = {"name": spec} if isinstance(spec, str) else dict(spec) if isinstance(spec, dict) else None
    if cfg is None:
        raise PosekitError(f"model must be a name or a mapping with 'name'; got {spec!r}")
    cfg.update(overrides)
    name = cfg.get("name")
    if name not in MODEL_NAMES:
        raise PosekitError(f"unknown model {name!r}; known: {', '.join(MODEL_NAMES)}")
    family, arch = name.split("-", 1)
    options = {k: v for k, v in cfg.items() if k != "name"}
    skeleton_spec = options.pop("skeleton", "coco17")
    skeleton = get_skeleton(skeleton_spec)
    num_joints = options.pop("num_joints", None)
    if family in ("hrnet", "simplebaseline"):
        if options:
            raise PosekitError(f"model {name}: unknown option(s) {', '.join(sorted(options))}; "
                               "known: skeleton, num_joints")
        joints = len(skeleton) if num_joints is None else _positive_int("num_joints", num_joints)
        model = PoseHRNet(arch, joints) if family == "hrnet" else PoseResNet(arch, joints)
    else:
        if num_joints is not None and num_joints != len(skeleton):
            raise PosekitError(f"model {name}: num_joints={num_joints} but skeleton {skeleton.name!r} has "
                               f"{len(skeleton)} joints (DITN needs the skeleton for its bone groups)")
        ablation = options.pop("ablation", None)
        if ablation is not None:
            if ablation not in ABLATIONS:
                raise PosekitError(f"model {name}: ablation must be one of {', '.join(ABLATIONS)}; got {ablation!r}")
            options = {**ABLATIONS[ablation], **options}
        unknown = sorted(set(options) - set(HEAD_OPTIONS))
        if unknown:
            raise PosekitError(f"model {name}: unknown option(s) {', '.join(unknown)}; "
                               f"known: skeleton, ablation, {', '.join(HEAD_OPTIONS)}")
        model = DITN(skeleton, arch, **options)
    model.posekit_config = {**cfg, "name": name,
                            "skeleton": skeleton.name if isinstance(skeleton_spec, Skeleton) else str(skeleton_spec)}
    return model


def default_input_size(skeleton: str) -> tuple[int, int]:
    """(height, width) of the paper setting for a keypoint set: 256x256 MPII, 256x192 otherwise."""
    return DEFAULT_INPUT.get(skeleton, (256, 192))


def parse_size(text: str, what: str = "--input") -> tuple[int, int]:
    """'256x192' -> (256, 192) (height x width), both positive multiples of 32."""
    parts = str(text).lower().split("x")
    try:
        h, w = (int(p) for p in parts)
    except ValueError:
        raise PosekitError(f"{what} must be HEIGHTxWIDTH such as 256x192; got {text!r}") from None
    if h <= 0 or w <= 0 or h % STRIDE or w % STRIDE:
        raise PosekitError(f"{what} {text!r}: height and width must be positive multiples of {STRIDE}")
    return h, w


def read_state_dict(path: str | Path) -> tuple[dict, dict]:
    """Tensors of a checkpoint file and its other entries (e.g. a training ``config``).

    Reads ``.safetensors`` (metadata values parsed as JSON where they are JSON) or a ``.pth``/``.pt``
    file with ``torch.load(weights_only=True)``, which never unpickles code. The weights may be the
    whole file (a plain state dict), under ``state_dict`` (HRNet's training checkpoints, MMPose) or
    under ``model`` (posekit's ``last.pt``). A ``module.`` prefix (DataParallel) is removed."""
    path = Path(path)
    if not path.is_file():
        raise PosekitError(f"{path}: no such checkpoint file")
    extra: dict = {}
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open
            from safetensors.torch import load_file

            data = load_file(str(path))
            with safe_open(str(path), framework="pt") as handle:
                extra = {k: _maybe_json(v) for k, v in (handle.metadata() or {}).items()}
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any failure to read the file is the file's fault
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PosekitError(f"{path}: not a readable weights-only checkpoint ({reason[:200]})") from None
    if not isinstance(data, dict):
        raise PosekitError(f"{path}: expected a state dict (a mapping of tensors), got {type(data).__name__}")
    for key in ("state_dict", "model"):
        inner = data.get(key)
        if isinstance(inner, dict) and inner and all(torch.is_tensor(v) for v in inner.values()):
            extra = {k: v for k, v in data.items() if k != key}
            data = inner
            break
    bad = [k for k, v in data.items() if not isinstance(k, str) or not torch.is_tensor(v)]
    if bad:
        raise PosekitError(f"{path}: entry {bad[0]!r} is not a named tensor")
    if data and all(k.startswith("module.") for k in data):
        data = {k[len("module."):]: v for k, v in data.items()}
    return dict(data), extra


def _maybe_json(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def checkpoint_model_spec(extra: dict) -> dict:
    """``build_model`` config recorded in a checkpoint's training ``config`` (empty if none):
    the model name and options, the skeleton, and the crop size as ``input`` (height, width)."""
    config = extra.get("config")
    if not isinstance(config, dict):
        return {}
    spec: dict = {}
    model = config.get("model")
    if isinstance(model, dict) and isinstance(model.get("name"), str):
        spec = {"name": model["name"], **(model.get("options") or {})}
    data = config.get("data")
    if isinstance(data, dict) and isinstance(data.get("skeleton"), str):
        spec["skeleton"] = data["skeleton"]
    codec = config.get("codec")
    if isinstance(codec, dict) and isinstance(codec.get("input_size"), list) and len(codec["input_size"]) == 2:
        spec["input"] = (int(codec["input_size"][1]), int(codec["input_size"][0]))
    return spec


def load_weights(model: nn.Module, state_dict: dict, source: str = "checkpoint") -> dict[str, list[str]]:
    """Load what fits, report what does not: ``{"missing_keys": [...], "unexpected_keys": [...]}``.

    MMPose HRNet keys are renamed for a :class:`PoseHRNet`. A tensor whose shape differs from the
    model's raises (e.g. a 16-joint head into a 17-joint model). BN ``num_batches_tracked`` counters
    absent from old checkpoints are not reported as missing."""
    if isinstance(model, PoseHRNet) and any(k.startswith(("backbone.", "keypoint_head.", "head.")) for k in state_dict):
        state_dict = convert_mmpose_hrnet(state_dict)
    own = model.state_dict()
    for key, value in state_dict.items():
        if key in own and own[key].shape != value.shape:
            raise PosekitError(f"{source}: {key} has shape {tuple(value.shape)}, the model expects "
                               f"{tuple(own[key].shape)} (another keypoint set or width?)")
    result = model.load_state_dict(state_dict, strict=False)
    counters_absent = not any(k.endswith("num_batches_tracked") for k in state_dict)
    missing = [k for k in result.missing_keys if not (counters_absent and k.endswith("num_batches_tracked"))]
    return {"missing_keys": missing, "unexpected_keys": list(result.unexpected_keys)}


def load_pretrained_backbone(model: nn.Module, state_dict: dict, source: str = "pretrained") -> dict[str, list[str]]:
    """Initialise a model's backbone (``model.backbone``, else the model itself) from pretrained
    weights; returns :func:`load_weights`' report.

    Takes ImageNet classifiers (HRNet's ``hrnet_w32-36af842e.pth``, torchvision's ``resnet50``) and pose
    checkpoints (reference, ``backbone.``-prefixed, posekit's); their heads are left out. Every
    backbone weight must be in the file, except SimpleBaseline's deconvolutions when the file has
    none of them (an ImageNet ResNet): those keep their initialisation."""
    backbone = getattr(model, "backbone", model)
    if isinstance(backbone, ResNet):
        kind, select = "ResNet", resnet_backbone_state
    else:
        kind, select = "HRNet", backbone_state
    wanted = select(state_dict)
    if not wanted:
        raise PosekitError(f"{source}: no {kind} backbone weights in this file")
    report = load_weights(backbone, wanted, source=source)
    deconv_optional = not any(k.startswith(DECONV_PREFIX) for k in wanted)
    needed = select(backbone.state_dict())
    missing = [k for k in report["missing_keys"]
               if k in needed and not (deconv_optional and k.startswith(DECONV_PREFIX))]
    if missing:
        raise PosekitError(f"{source}: backbone weight {missing[0]} is missing ({len(missing)} in all)")
    return report


def _positive_int(name: str, value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise PosekitError(f"{name} must be a positive integer; got {value!r}")
    return value
