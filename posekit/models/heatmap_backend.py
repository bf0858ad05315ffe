"""Trained heatmap models (HRNet, SimpleBaseline, DITN) as a keypoint backend: from a name and a weights file to
keypoints in image pixels.

:func:`load_heatmap_model` resolves what to run:

* ``.onnx`` (written by ``posekit export onnx``): run with ONNX Runtime; the file's metadata gives
  the model, its keypoint set and its input size. A file without posekit metadata needs a model
  name, and its keypoint set is read from its output channels (17: ``coco17``, 16: ``mpii16``).
* a posekit checkpoint (``last.pt``, ``best.safetensors``): the training config stored in it gives
  the model, its options, keypoint set and input size. A model name given as well must agree
  (the family ``hrnet``/``ditn`` or the full name), otherwise the error names both.
* a plain state dict (the official ``pose_hrnet_w32_256x192.pth``, MMPose releases, any
  ``model.state_dict()``): the name given is used; a family name or an unknown keypoint set is
  settled by the weights' own layout, trying each architecture of the family with ``coco17`` and
  ``mpii16`` (on PyTorch's ``meta`` device: no memory, no arithmetic) and keeping the one every
  tensor fits. Weights that fit no model, or miss or add tensors, are an error naming the first
  few keys: a wrong file never runs as a half-random model.

The input size (height, width) is the caller's ``input_size``, else the checkpoint's, else the
papers' size for the keypoint set (256x192 COCO, 256x256 MPII). Crops are normalised as in
training (:func:`posekit.data.topdown.normalize_array`) and decoded by the same codec
(:class:`posekit.codecs.heatmap.HeatmapCodec`), heatmaps being a quarter of the input size.
"""
from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import numpy as np

from posekit.errors import PosekitError
from posekit.skeletons import Skeleton, get_skeleton

HEATMAP_STRIDE = 4                      # every registry model's heatmaps are 1/4 of the input crop
PLAIN_KEYPOINT_SETS = ("coco17", "mpii16")  # tried for weights that record no keypoint set
DEFAULT_SIGMA = 2.0                     # target Gaussian width (heatmap pixels) where none is recorded: DARK's blur
DEFAULT_BATCH = 8                       # person crops per model run (twice that with the flip test)
SHOWN_KEYS = 3                          # mismatched weight names quoted in an error


def model_names() -> tuple[str, ...]:
    """The heatmap models that can be named: every full name and every family."""
    from posekit.models.registry import MODEL_NAMES

    return tuple(dict.fromkeys([n.split("-", 1)[0] for n in MODEL_NAMES] + list(MODEL_NAMES)))


def _check_model_name(model: str | None) -> None:
    names = model_names()
    if model is not None and model not in names:
        raise PosekitError(f"unknown pose model {model!r}; available: blazepose, {', '.join(names)}")


def _family(name: str) -> str:
    return name.split("-", 1)[0]


def _agrees(requested: str | None, found: str) -> bool:
    """A requested name (None, a family or a full name) agrees with a model's full name."""
    return requested is None or requested == found or requested == _family(found)


def parse_input_size(value) -> tuple[int, int] | None:
    """(height, width) from "256x192", (256, 192) or None; sides are positive multiples of 32."""
    from posekit.models.registry import parse_size

    if value is None:
        return None
    if isinstance(value, str):
        return parse_size(value, "input size")
    try:
        h, w = value
    except (TypeError, ValueError):
        raise PosekitError(f"input size must be (height, width) or 'HxW', got {value!r}") from None
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (h, w)):
        raise PosekitError(f"input size must be two integers (height, width), got {value!r}")
    return parse_size(f"{h}x{w}", "input size")


class HeatmapModel:
    """A trained heatmap network over batches of crops: ``model(images)`` -> ``{"heatmaps": (N, K, h, w)}``
    with ``images`` (N, 3, H, W) float32 normalised crops, numpy in and out.

    name: the model (e.g. ``hrnet-w32``; a family for an ONNX file without metadata); skeleton: its
    keypoint set; input_size: (height, width) of its crops; backend: ``pytorch`` or
    ``onnxruntime``; source: the weights file; sigma: the training targets' Gaussian width.
    """

    def __init__(self, run, *, name: str, skeleton: Skeleton, input_size: tuple[int, int], backend: str,
                 source: str, sigma: float = DEFAULT_SIGMA, batch_size: int = DEFAULT_BATCH):
        self._run = run
        self.name, self.skeleton, self.input_size = name, skeleton, tuple(input_size)
        self.backend, self.source, self.sigma = backend, source, float(sigma)
        self.batch_size = batch_size

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        return {"heatmaps": self._run(np.ascontiguousarray(images, dtype=np.float32))}

    def codec(self, dark: bool = False):
        """The codec that decodes this model's heatmaps (DARK with ``dark``)."""
        from posekit.codecs.heatmap import HeatmapCodec

        h, w = self.input_size
        return HeatmapCodec(self.skeleton, input_size=(w, h), heatmap_size=(w // HEATMAP_STRIDE, h // HEATMAP_STRIDE),
                            sigma=self.sigma, dark=dark)

    def predict(self, crops: np.ndarray, matrices: np.ndarray, codec, *, flip_test: bool = True):
        """Keypoints (N, K, 2) in image pixels and scores (N, K) of crops (N, H, W, 3) uint8 RGB cut
        with the 2x3 matrices (N, 2, 3) (image -> crop), ``batch_size`` crops per model run."""
        from posekit.data.topdown import normalize_array, predict_keypoints

        n, k = len(crops), len(self.skeleton)
        points, scores = np.zeros((n, k, 2)), np.zeros((n, k))
        for start in range(0, n, self.batch_size):
            rows = slice(start, start + self.batch_size)
            points[rows], scores[rows] = predict_keypoints(self, normalize_array(crops[rows]), matrices[rows],
                                                           codec, flip_test=flip_test)
        return points, scores


def load_heatmap_model(model: str | None = None, checkpoint=None, *, input_size=None,
                       num_threads: int | None = None, batch_size: int = DEFAULT_BATCH) -> HeatmapModel:
    """A :class:`HeatmapModel` from a model name or family (None: the one the checkpoint records) and
    trained weights (see the module docstring for how they are matched)."""
    _check_model_name(model)
    if checkpoint is None:
        raise PosekitError(f"the {model} model needs trained weights (a checkpoint): posekit ships none for "
                           f"HRNet or DITN; train one (posekit train) or give an official HRNet .pth")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise PosekitError(f"batch_size must be a positive integer, got {batch_size!r}")
    path = Path(checkpoint)
    size = parse_input_size(input_size)
    if path.suffix.lower() == ".onnx":
        return _onnx_model(path, model, size, num_threads, batch_size)
    return _torch_model(path, model, size, num_threads, batch_size)


# ---- ONNX Runtime ------------------------------------------------------------------------------------

def _onnx_model(path: Path, requested, size, num_threads, batch_size) -> HeatmapModel:
    from posekit.models.onnx_backend import OnnxPoseModel
    from posekit.models.registry import default_input_size

    runner = OnnxPoseModel(path, num_threads=num_threads)
    if runner.config is not None:
        name = str(runner.config.get("name"))
        if not _agrees(requested, name):
            raise PosekitError(f"{path}: the file holds model {name!r} (its metadata), not {requested!r}")
        skeleton = get_skeleton(runner.skeleton or runner.config.get("skeleton") or "coco17")
    elif requested is None:
        raise PosekitError(f"{path}: has no posekit metadata (not written by posekit export onnx): "
                           f"give the model name (--model)")
    else:
        name = requested
        skeleton = _keypoint_set_of_outputs(path, runner.num_joints)
    if runner.num_joints is not None and runner.num_joints != len(skeleton):
        raise PosekitError(f"{path}: gives {runner.num_joints} heatmaps; its keypoint set {skeleton.name!r} "
                           f"has {len(skeleton)} joints")
    if runner.input_size is not None:
        if size is not None and size != runner.input_size:
            raise PosekitError(f"{path}: exported for {runner.input_size[0]}x{runner.input_size[1]} crops; "
                               f"the input size {size[0]}x{size[1]} needs another export")
        size = runner.input_size
    size = size or default_input_size(skeleton.name)

    def run(images):
        return runner(images)[runner.heatmap_output]

    return HeatmapModel(run, name=name, skeleton=skeleton, input_size=size, backend="onnxruntime",
                        source=str(path), sigma=runner.sigma or DEFAULT_SIGMA, batch_size=batch_size)


def _keypoint_set_of_outputs(path: Path, num_joints: int | None) -> Skeleton:
    by_count = {len(get_skeleton(s)): s for s in PLAIN_KEYPOINT_SETS}
    if num_joints not in by_count:
        raise PosekitError(f"{path}: has no posekit metadata and {num_joints} heatmap channels; known "
                           f"keypoint sets: " + ", ".join(f"{s} ({n})" for n, s in by_count.items()))
    return get_skeleton(by_count[num_joints])


# ---- PyTorch -----------------------------------------------------------------------------------------

def load_torch_model(checkpoint, model: str | None = None, skeleton: str | None = None):
    """The PyTorch model a weights file holds, its weights loaded exactly, in eval mode.

    ``model`` (a full name or a family) and ``skeleton`` (a keypoint set) are needed only where the
    file does not record them, and must agree with what it records. Returns (module, build config,
    recorded input size or None, the file's extra entries)."""
    from posekit.models.registry import build_model, checkpoint_model_spec, read_state_dict

    _check_model_name(model)
    path = Path(checkpoint)
    state, extra = read_state_dict(path)
    spec = checkpoint_model_spec(extra)
    recorded_size = spec.pop("input", None)
    recorded_skeleton = spec.get("skeleton")
    if skeleton is not None and recorded_skeleton is not None and get_skeleton(skeleton).name != recorded_skeleton:
        raise PosekitError(f"{path}: its training config records keypoint set {recorded_skeleton!r}, "
                           f"not {skeleton!r}")
    if "name" in spec:
        if not _agrees(model, spec["name"]):
            raise PosekitError(f"{path}: its training config names model {spec['name']!r}, not {model!r}")
        config = spec
    elif model is None:
        raise PosekitError(f"{path}: records no model (a plain state dict): give the model name (--model), "
                           f"e.g. hrnet-w32")
    else:
        config = _fitting_config(path, state, model, skeleton or recorded_skeleton)
    network = build_model(config)
    _load_exactly(network, state, path, config)
    return network.eval(), config, recorded_size, extra


def _torch_model(path: Path, requested, size, num_threads, batch_size) -> HeatmapModel:
    from posekit.models.registry import default_input_size

    model, config, recorded_size, extra = load_torch_model(path, requested)
    skeleton = get_skeleton(model.posekit_config["skeleton"])
    size = size or recorded_size or default_input_size(skeleton.name)

    def run(images):
        import torch

        with torch.no_grad(), _torch_threads(num_threads):
            return model(torch.from_numpy(images))["heatmaps"].numpy()

    return HeatmapModel(run, name=config["name"], skeleton=skeleton, input_size=size, backend="pytorch",
                        source=str(path), sigma=training_sigma(extra.get("config")), batch_size=batch_size)


def training_sigma(config) -> float:
    """The codec sigma a training config records (``DEFAULT_SIGMA`` where none)."""
    codec = config.get("codec") if isinstance(config, dict) else None
    sigma = codec.get("sigma") if isinstance(codec, dict) else None
    return float(sigma) if isinstance(sigma, (int, float)) and not isinstance(sigma, bool) and sigma > 0 \
        else DEFAULT_SIGMA


@contextlib.contextmanager
def _torch_threads(count: int | None):
    """PyTorch's intra-op thread count set to ``count`` for a block (a process-wide setting)."""
    import torch

    if not count:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(count))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _mismatch(model, state: dict, source: str) -> tuple[list, list, str | None]:
    """(missing keys, unexpected keys, shape error or None) of loading ``state`` into ``model``."""
    from posekit.models.registry import load_weights

    if any(t.is_meta for t in model.state_dict().values()):
        state = {k: v.to("meta") for k, v in state.items()}   # shapes only: nothing is copied
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # batch norm fills absent counters with real zeros: no-ops here
            report = load_weights(model, state, source)
    except PosekitError as exc:
        return [], [], str(exc)
    return report["missing_keys"], report["unexpected_keys"], None


def _describe(missing: list, unexpected: list) -> str:
    parts = []
    for keys, what in ((missing, "missing"), (unexpected, "unexpected")):
        if keys:
            shown = ", ".join(keys[:SHOWN_KEYS]) + (", ..." if len(keys) > SHOWN_KEYS else "")
            parts.append(f"{len(keys)} {what} weight{'s' * (len(keys) != 1)} ({shown})")
    return " and ".join(parts)


def _fitting_config(path: Path, state: dict, requested: str, skeleton: str | None) -> dict:
    """The first build config whose every tensor matches the weights, among the requested name (or
    the family's names) with the recorded keypoint set (or each of ``PLAIN_KEYPOINT_SETS``)."""
    import torch

    from posekit.models.registry import MODEL_NAMES, build_model

    names = [requested] if requested in MODEL_NAMES else [n for n in MODEL_NAMES if _family(n) == requested]
    sets = [skeleton] if skeleton else list(PLAIN_KEYPOINT_SETS)
    misfits = []
    for name in names:
        for keypoints in sets:
            config = {"name": name, "skeleton": keypoints}
            with torch.device("meta"):
                candidate = build_model(config)
            missing, unexpected, shape_error = _mismatch(candidate, state, str(path))
            if shape_error is None and not missing and not unexpected:
                return config              # two different models never share every name and shape
            if shape_error is None:
                misfits.append((len(missing) + len(unexpected), config, _describe(missing, unexpected)))
            else:
                misfits.append((np.inf, config, shape_error.removeprefix(f"{path}: ")))
    _, config, reason = min(misfits, key=lambda m: m[0])
    raise PosekitError(f"{path}: the weights do not fit {config['name']} ({config['skeleton']}): {reason}; "
                       f"check --model")


def _load_exactly(model, state: dict, path: Path, config: dict) -> None:
    missing, unexpected, shape_error = _mismatch(model, state, str(path))
    if shape_error is not None:
        raise PosekitError(f"{shape_error}; check --model")
    if missing or unexpected:
        raise PosekitError(f"{path}: the weights do not fit {config['name']} "
                           f"({config.get('skeleton', 'coco17')}): {_describe(missing, unexpected)}; check --model")


__all__ = ["HeatmapModel", "load_heatmap_model", "load_torch_model", "training_sigma", "model_names",
           "parse_input_size", "HEATMAP_STRIDE",
           "PLAIN_KEYPOINT_SETS"]
