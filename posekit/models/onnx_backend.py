"""Run an exported heatmap model with ONNX Runtime (no PyTorch needed at inference)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from posekit.errors import PosekitError


class OnnxPoseModel:
    """A session over a posekit ONNX file: ``model(images)`` -> ``{"heatmaps": ..., ...}``.

    ``images`` is (N, 3, H, W) float32 at the exported ``input_size`` (height, width), normalised
    the way the model was trained. ``skeleton`` and ``config`` come from the file's metadata when it
    was written by :func:`posekit.export.onnx.export_onnx` (None otherwise), and so does ``sigma``,
    the width of the training targets, when ``posekit export onnx`` wrote the file."""

    def __init__(self, path: str | Path, num_threads: int | None = None, providers: list[str] | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise PosekitError(f"{self.path}: no such ONNX file")
        options = ort.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = int(num_threads)
        # ONNX Runtime's threads spin between runs by default; beside the detector's, PyTorch's or
        # another session's threads they then steal the cores (HRNet-W32, 2 cores, batch 1: 82 ms
        # per crop without spinning, 110-140 ms with it while another pool was active; alone, the same).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(self.path), options,
                                                providers=providers or ["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types for unreadable models
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise PosekitError(f"{self.path}: not a loadable ONNX model ({reason})") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise PosekitError(f"{self.path}: expected one (N, 3, H, W) image input")
        self.input_name = inputs[0].name
        shape = inputs[0].shape
        self.input_size = (int(shape[2]), int(shape[3])) if all(isinstance(s, int) for s in shape[2:]) else None
        outputs = self.session.get_outputs()
        self.output_names = [o.name for o in outputs]
        self.heatmap_output = "heatmaps" if "heatmaps" in self.output_names else self.output_names[0]
        heatmap_shape = outputs[self.output_names.index(self.heatmap_output)].shape
        self.num_joints = heatmap_shape[1] if len(heatmap_shape) == 4 and isinstance(heatmap_shape[1], int) else None
        meta = self.session.get_modelmeta().custom_metadata_map
        self.config = None
        if "posekit.model" in meta:
            try:
                self.config = json.loads(meta["posekit.model"])
            except ValueError:
                self.config = None
            if not isinstance(self.config, dict) or not isinstance(self.config.get("name"), str):
                raise PosekitError(f"{self.path}: its posekit.model metadata is not a model config with a name")
        self.skeleton = meta.get("posekit.skeleton") or None
        try:  # the training targets' Gaussian width, which DARK decoding blurs with
            self.sigma = float(meta["posekit.sigma"]) if "posekit.sigma" in meta else None
        except ValueError:
            raise PosekitError(f"{self.path}: its posekit.sigma metadata is not a number") from None

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[1] != 3:
            raise PosekitError(f"images have shape {images.shape}; expected (N, 3, H, W)")
        if self.input_size is not None and images.shape[2:] != self.input_size:
            raise PosekitError(f"images are {images.shape[2]}x{images.shape[3]}; {self.path.name} was "
                               f"exported for {self.input_size[0]}x{self.input_size[1]}")
        outputs = self.session.run(None, {self.input_name: np.ascontiguousarray(images, dtype=np.float32)})
        return dict(zip(self.output_names, outputs))
