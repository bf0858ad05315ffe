"""Export heatmap models to ONNX and check the file against PyTorch with ONNX Runtime.

The graph takes ``images`` (N, 3, H, W) float32 (normalised RGB, as the model was trained) with a
dynamic batch size N and returns ``heatmaps`` (N, K, H/4, W/4) and, for DITN, ``bone_heatmaps``.
The input size is fixed at export time. The file's metadata (``posekit.*`` properties) records the
model config, skeleton, input size and output names, so :class:`posekit.models.onnx_backend.OnnxPoseModel`
can run it without further arguments. The TorchScript-based exporter is used (``dynamo=False``):
it needs no extra packages and handles every layer here (DITN's per-sample kernels switch to a
batch-size-independent form while exporting, see ``posekit.models.ops.dynamic_depthwise_conv2d``).
"""
from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from posekit.errors import PosekitError

OUTPUT_ORDER = ("heatmaps", "bone_heatmaps")


class _TupleOutputs(nn.Module):
    """ONNX graphs return a tuple: the model's dict in a fixed order."""

    def __init__(self, model: nn.Module, names: tuple[str, ...]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, images):
        outputs = self.model(images)
        return tuple(outputs[name] for name in self.names)


def export_onnx(model: nn.Module, out: str | Path, input_size: tuple[int, int] = (256, 192),
                opset: int = 17, verify: bool = True, atol: float = 1e-4, metadata: dict | None = None) -> dict:
    """Write ``model`` to ``out`` for (height, width) = ``input_size`` crops.

    With ``verify`` the file is run with ONNX Runtime on a random batch of 3 (not the traced batch
    size, to prove the batch axis is dynamic) and compared with PyTorch (see :func:`verify_onnx`).
    Returns ``{"path", "input", "outputs", "max_abs_diff"}``."""
    h, w = (int(v) for v in input_size)
    model.eval()
    with torch.no_grad():
        names = tuple(n for n in OUTPUT_ORDER if n in model(torch.zeros(1, 3, h, w)))
    wrapper = _TupleOutputs(model, names).eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes about shape checks turned into constants
        torch.onnx.export(wrapper, (torch.zeros(2, 3, h, w),), buffer, input_names=["images"],
                          output_names=list(names), opset_version=opset, dynamo=False,
                          dynamic_axes={n: {0: "batch"} for n in ("images", *names)})
    wrapper.eval()  # the exporter restores the wrapper's mode recursively; keep the model in eval
    import onnx

    graph = onnx.load_from_string(buffer.getvalue())
    props = {"posekit.input_size": f"{h}x{w}", "posekit.outputs": ",".join(names)}
    config = getattr(model, "posekit_config", None)
    if config is not None:
        props["posekit.model"] = json.dumps(config, sort_keys=True)
        props["posekit.skeleton"] = str(config.get("skeleton", ""))
    props.update({f"posekit.{k}": str(v) for k, v in (metadata or {}).items()})
    for key, value in props.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(graph, str(out))
    except OSError as exc:
        raise PosekitError(f"{out}: cannot write the ONNX file ({exc.strerror or exc})") from None
    result = {"path": str(out), "input": [h, w], "outputs": list(names), "max_abs_diff": None}
    if verify:
        result["max_abs_diff"] = verify_onnx(model, out, (h, w), names, atol)
    return result


def verify_onnx(model: nn.Module, path: str | Path, input_size: tuple[int, int], names, atol: float = 1e-4,
                batch: int = 3, seed: int = 0) -> float:
    """Largest |ONNX Runtime - PyTorch| over all outputs on a random batch. Raises above ``atol``
    times the outputs' scale (their largest magnitude, at least 1): an absolute bound for heatmaps
    in [0, 1], a relative one for an untrained model whose outputs are large."""
    from posekit.models.onnx_backend import OnnxPoseModel

    h, w = input_size
    images = np.random.default_rng(seed).standard_normal((batch, 3, h, w)).astype(np.float32)
    with torch.no_grad():
        expected = model.eval()(torch.from_numpy(images))
    got = OnnxPoseModel(path)(images)
    diff = max(float(np.abs(got[n] - expected[n].numpy()).max()) for n in names)
    scale = max(1.0, *(float(expected[n].abs().max()) for n in names))
    if not diff <= atol * scale:
        raise RuntimeError(f"{path}: ONNX Runtime differs from PyTorch by {diff:.3g} "
                           f"(> {atol} x output scale {scale:.3g})")
    return diff
